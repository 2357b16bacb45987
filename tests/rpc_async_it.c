/*
 * rpc_async_it.c - asynchronous calls (rpc_channel_call_async) against real servers over
 * inproc:// and ipc://: many calls in flight on one channel, each done exactly once with its
 * own reply; errors, deadlines and closing while calls are in flight; bad arguments refused
 * before anything starts. And the client's reading of reply envelopes in place (shared by
 * blocking and asynchronous calls), against a fake server's crafted replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "haven/clock.h"
#include "haven/log.h"
#include "haven/rpc.h"
#include "testutil.h"

#include "haven/diag/v1/diag.pb-c.h"
#include "haven/rpc/v1/rpc.pb-c.h"
#include "haven/testing/v1/testing.pb-c.h"

#define M_ECHO    "haven.diag.v1.Diagnostics/Echo"
#define M_SLEEP   "haven.testing.v1.Testing/Sleep"
#define M_NOTIMPL "haven.testing.v1.Testing/NotImplemented"
#define M_NOSUCH  "haven.testing.v1.Testing/NoSuchMethod"

static char tmp[512];

/* ---- a server with a Sleep method ------------------------------------------------------ */

static hv_status
t_sleep(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Testing__V1__SleepRequest *in = (const void *) req;
	Haven__Testing__V1__Empty              *out;
	struct timespec                         ts = { .tv_sec = in->ms / 1000,
		                        .tv_nsec = (long) (in->ms % 1000) * 1000000L };

	(void) svc;
	if (in->ms > 5000) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "sleep too long"));
	}
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__testing__v1__empty__init(out);
	*reply = &out->base;
	return (HV_OK);
}

static const rpc_method_impl testing_methods[] = {
	{ .name = "Sleep", .handler = t_sleep, .roles = RPC_ROLES_ANY },
};

static rpc_server *
start_server(const char *url)
{
	rpc_server *srv;

	assert_int_equal(rpc_server_open(&srv, NULL), HV_OK);
	assert_int_equal(rpc_server_add_service(srv, &haven__testing__v1__testing__descriptor,
	                     testing_methods, 1, NULL),
	    HV_OK);
	assert_int_equal(rpc_server_listen(srv, url), HV_OK);
	assert_int_equal(rpc_server_start(srv), HV_OK);
	return (srv);
}

/* ---- completions ------------------------------------------------------------------------ */

/* What the done functions of a batch of calls saw; the test waits on it. */
typedef struct batch {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	int             done;                   /* done functions run */
	int             ok;                     /* replies that matched their request */
	int             bad;                    /* failed calls that came with a reply anyway */
	int             statuses[32];           /* calls ended with each status */
	char            errmsg[RPC_ERRMSG_MAX]; /* the last error message */
} batch;

/* One call of a batch: its payload, to check that each reply is its own. */
typedef struct one_call {
	batch  *b;
	uint8_t payload[64];
	size_t  len;
	int     runs; /* done functions run for this call: must end at 1 */
} one_call;

static void
batch_init(batch *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->mtx, NULL);
	assert_int_equal(hv_clock_cond_init(&b->cv),
	    0); /* the monotonic clock of hv_clock_deadline */
}

static void
batch_destroy(batch *b)
{
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mtx);
}

/* Waits (10 s at most: a loaded machine) until n done functions ran. */
static void
batch_wait(batch *b, int n)
{
	struct timespec until;

	hv_clock_deadline(&until, 10000);
	pthread_mutex_lock(&b->mtx);
	while (b->done < n) {
		if (pthread_cond_timedwait(&b->cv, &b->mtx, &until) != 0) {
			break;
		}
	}
	pthread_mutex_unlock(&b->mtx);
	assert_int_equal(b->done, n);
	assert_int_equal(b->bad, 0);
}

static void
call_done(void *arg, hv_status st, ProtobufCMessage *reply, const char *errmsg)
{
	one_call                      *c  = arg;
	Haven__Diag__V1__EchoResponse *er = (void *) reply;
	batch                         *b  = c->b;

	pthread_mutex_lock(&b->mtx);
	c->runs++;
	b->statuses[st < 32 ? st : 31]++;
	if (st == HV_OK && reply->descriptor == &haven__diag__v1__echo_response__descriptor &&
	    er->payload.len == c->len &&
	    (c->len == 0 || memcmp(er->payload.data, c->payload, c->len) == 0)) {
		b->ok++;
	}
	if (st != HV_OK) {
		b->bad += reply != NULL; /* checked by the test's thread: no asserts on nng's */
		snprintf(b->errmsg, sizeof(b->errmsg), "%s", errmsg);
	}
	b->done++;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mtx);
	protobuf_c_message_free_unpacked(reply, NULL);
}

static hv_status
echo_async(rpc_channel *ch, one_call *c, uint32_t timeout_ms)
{
	Haven__Diag__V1__EchoRequest req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	rpc_call_options             o   = { .timeout_ms = timeout_ms };

	req.payload.data = c->payload;
	req.payload.len  = c->len;
	return (rpc_channel_call_async(ch, M_ECHO, &req.base,
	    &haven__diag__v1__echo_response__descriptor, &o, call_done, c));
}

static hv_status
sleep_async(rpc_channel *ch, one_call *c, unsigned ms, uint32_t timeout_ms)
{
	Haven__Testing__V1__SleepRequest req = HAVEN__TESTING__V1__SLEEP_REQUEST__INIT;
	rpc_call_options                 o   = { .timeout_ms = timeout_ms };

	req.ms = ms;
	return (rpc_channel_call_async(ch, M_SLEEP, &req.base,
	    &haven__testing__v1__empty__descriptor, &o, call_done, c));
}

/* ---- tests ----------------------------------------------------------------------------- */

#define MANY 600

/* MANY Echo calls started at once on one channel (more than the server's contexts), on
 * inproc:// and ipc://: each done runs once, with its own payload back. */
static void
run_many(const char *url)
{
	rpc_server  *srv = start_server(url);
	rpc_channel *ch;
	one_call    *calls = calloc(MANY, sizeof(*calls));
	batch        b;

	assert_non_null(calls);
	batch_init(&b);
	assert_int_equal(rpc_channel_open(&ch, url, NULL), HV_OK);
	for (int i = 0; i < MANY; i++) {
		calls[i].b   = &b;
		calls[i].len = (size_t) (i % 64);
		for (size_t k = 0; k < calls[i].len; k++) {
			calls[i].payload[k] = (uint8_t) (i * 7 + (int) k);
		}
		assert_int_equal(echo_async(ch, &calls[i], 10000), HV_OK);
	}
	batch_wait(&b, MANY);
	/* A full queue answers RESOURCE_EXHAUSTED, never a wrong or a second reply. */
	assert_int_equal(b.ok + b.statuses[HV_RESOURCE_EXHAUSTED], MANY);
	assert_true(b.ok > 0);
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(calls[i].runs, 1);
	}
	rpc_channel_close(ch);
	rpc_server_close(srv);
	batch_destroy(&b);
	free(calls);
}

static void
test_many_in_flight(void **state)
{
	char url[600];

	(void) state;
	run_many("inproc://async-many");
	snprintf(url, sizeof(url), "ipc://%s/many.sock", tmp);
	run_many(url);
}

/* A status from the server reaches done with its message; a call past its deadline ends
 * DEADLINE_EXCEEDED, and its slot serves the next call with that call's own reply. */
static void
test_errors_and_deadlines(void **state)
{
	rpc_server                  *srv = start_server("inproc://async-errors");
	rpc_channel                 *ch;
	one_call                     c[4];
	batch                        b;
	Haven__Diag__V1__EchoRequest req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;

	(void) state;
	memset(c, 0, sizeof(c));
	batch_init(&b);
	for (int i = 0; i < 4; i++) {
		c[i].b = &b;
	}
	assert_int_equal(rpc_channel_open(&ch, "inproc://async-errors", NULL), HV_OK);

	assert_int_equal(rpc_channel_call_async(ch, M_NOSUCH, &req.base,
	                     &haven__diag__v1__echo_response__descriptor, NULL, call_done, &c[0]),
	    HV_OK);
	batch_wait(&b, 1);
	assert_int_equal(b.statuses[HV_UNIMPLEMENTED], 1);
	assert_non_null(strstr(b.errmsg, "unknown method"));

	/* Sleep 600 ms with 100 ms to live: the deadline ends it, not the reply. */
	assert_int_equal(sleep_async(ch, &c[1], 600, 100), HV_OK);
	batch_wait(&b, 2);
	assert_int_equal(b.statuses[HV_DEADLINE_EXCEEDED], 1);
	assert_non_null(strstr(b.errmsg, "within the timeout"));

	/* The late Sleep reply arrives while this call is in flight on the reused slot. */
	c[2].len = 5;
	memcpy(c[2].payload, "later", 5);
	assert_int_equal(echo_async(ch, &c[2], 5000), HV_OK);
	batch_wait(&b, 3);
	assert_int_equal(b.ok, 1);

	rpc_channel_close(ch);
	rpc_server_close(srv);
	batch_destroy(&b);
}

/* No server: the call ends UNAVAILABLE within its timeout. Closing a channel with calls in
 * flight ends each of them once, before close returns, and new calls are refused. */
static void
test_unavailable_and_close(void **state)
{
	rpc_server  *srv;
	rpc_channel *ch;
	one_call     c[8];
	batch        b;
	char         url[600];
	int64_t      t0;

	(void) state;
	memset(c, 0, sizeof(c));
	batch_init(&b);
	for (int i = 0; i < 8; i++) {
		c[i].b = &b;
	}
	snprintf(url, sizeof(url), "ipc://%s/none.sock", tmp);
	assert_int_equal(rpc_channel_open(&ch, url, NULL), HV_OK);
	t0 = hv_clock_mono_ms();
	assert_int_equal(echo_async(ch, &c[0], 200), HV_OK);
	batch_wait(&b, 1);
	assert_int_equal(b.statuses[HV_UNAVAILABLE], 1);
	assert_true(hv_clock_mono_ms() - t0 < 5000);
	assert_non_null(strstr(b.errmsg, "no connection"));
	rpc_channel_close(ch);

	srv = start_server("inproc://async-close");
	assert_int_equal(rpc_channel_open(&ch, "inproc://async-close", NULL), HV_OK);
	for (int i = 1; i < 8; i++) {
		assert_int_equal(sleep_async(ch, &c[i], 300, 5000), HV_OK);
	}
	rpc_channel_close(ch); /* the seven Sleeps are still running on the server */
	assert_int_equal(b.done, 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(c[i].runs, 1);
	}
	assert_int_equal(b.statuses[HV_UNAVAILABLE], 8);
	rpc_server_close(srv);
	batch_destroy(&b);
}

/* Bad arguments and requests over the limits are refused at once; done never runs. */
static void
test_bad_arguments(void **state)
{
	rpc_server                       *srv = start_server("inproc://async-bad");
	rpc_channel                      *ch;
	Haven__Diag__V1__EchoRequest      req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	const ProtobufCMessageDescriptor *rd  = &haven__diag__v1__echo_response__descriptor;
	rpc_metadata                      md[RPC_METADATA_MAX + 1];
	rpc_call_options o = { .metadata = md, .n_metadata = RPC_METADATA_MAX + 1 };
	one_call         c = { 0 };
	batch            b;
	static uint8_t   big[2 * 1024 * 1024];

	(void) state;
	batch_init(&b);
	c.b = &b;
	for (size_t i = 0; i < RPC_METADATA_MAX + 1; i++) {
		md[i] = (rpc_metadata) { .key = "x-key", .value = "v" };
	}
	assert_int_equal(rpc_channel_open(&ch, "inproc://async-bad", NULL), HV_OK);
	assert_int_equal(rpc_channel_call_async(NULL, M_ECHO, &req.base, rd, NULL, call_done, &c),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_channel_call_async(ch, NULL, &req.base, rd, NULL, call_done, &c),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_channel_call_async(ch, M_ECHO, NULL, rd, NULL, call_done, &c),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_channel_call_async(ch, M_ECHO, &req.base, NULL, NULL, call_done, &c),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_channel_call_async(ch, M_ECHO, &req.base, rd, NULL, NULL, &c),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_channel_call_async(ch, M_ECHO, &req.base, rd, &o, call_done, &c),
	    HV_INVALID_ARGUMENT);
	req.payload.data = big;
	req.payload.len  = sizeof(big); /* over the channel's 1 MiB */
	assert_int_equal(rpc_channel_call_async(ch, M_ECHO, &req.base, rd, NULL, call_done, &c),
	    HV_INVALID_ARGUMENT);
	/* The channel still works, and nothing ran. */
	assert_int_equal(echo_async(ch, &c, 5000), HV_OK);
	batch_wait(&b, 1);
	assert_int_equal(b.ok, 1);
	assert_int_equal(c.runs, 1);
	rpc_channel_close(ch);
	rpc_server_close(srv);
	batch_destroy(&b);
}

/* ---- reply envelopes read in place (rpc_client.c) ---------------------------------------- */

/* A fake server's answers: one case per request, built around the request's id. */
typedef struct fake {
	nng_socket sock;
	int        cases;
} fake;

static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t) (v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t) v;
	return (n);
}

static size_t
put_key(uint8_t *p, unsigned field, unsigned wt)
{
	return (put_varint(p, ((uint64_t) field << 3) | wt));
}

/* The reply of case k for a request numbered id, into buf; returns its length. */
static size_t
craft(int k, uint64_t id, uint8_t *buf)
{
	static const uint8_t echo_hi[] = { 0x0a, 2, 'h', 'i' }; /* EchoResponse{payload: "hi"} */
	size_t               n         = 0;

	switch (k) {
	case 0: /* any order, unknown fields of every wire type: OK, "hi" */
		n += put_key(buf + n, 3, 2);
		n += put_varint(buf + n, sizeof(echo_hi));
		memcpy(buf + n, echo_hi, sizeof(echo_hi));
		n += sizeof(echo_hi);
		n += put_key(buf + n, 9, 0);
		n += put_varint(buf + n, 300);
		n += put_key(buf + n, 10, 1);
		memset(buf + n, 7, 8), n += 8;
		n += put_key(buf + n, 11, 5);
		memset(buf + n, 7, 4), n += 4;
		n += put_key(buf + n, 12, 2);
		n += put_varint(buf + n, 3);
		memcpy(buf + n, "abc", 3), n += 3;
		n += put_key(buf + n, 4, 0);
		n += put_varint(buf + n, id);
		break;
	case 1: /* the code as bytes: not a Reply */
		n += put_key(buf + n, 4, 0);
		n += put_varint(buf + n, id);
		n += put_key(buf + n, 1, 2);
		n += put_varint(buf + n, 1);
		buf[n++] = 0;
		break;
	case 2: /* a payload longer than what follows */
		n += put_key(buf + n, 4, 0);
		n += put_varint(buf + n, id);
		n += put_key(buf + n, 3, 2);
		n += put_varint(buf + n, 10);
		buf[n++] = 0x0a;
		break;
	case 3: /* another request's id */
		n += put_key(buf + n, 4, 0);
		n += put_varint(buf + n, id + 1);
		break;
	case 4: /* NOT_FOUND with its message */
		n += put_key(buf + n, 2, 2);
		n += put_varint(buf + n, 4);
		memcpy(buf + n, "gone", 4), n += 4;
		n += put_key(buf + n, 1, 0);
		n += put_varint(buf + n, HV_NOT_FOUND);
		n += put_key(buf + n, 4, 0);
		n += put_varint(buf + n, id);
		break;
	case 5: /* no id, an error: the server could not read the envelope; the status stands */
		n += put_key(buf + n, 1, 0);
		n += put_varint(buf + n, HV_RESOURCE_EXHAUSTED);
		break;
	case 6: /* a group */
		n += put_key(buf + n, 4, 0);
		n += put_varint(buf + n, id);
		n += put_key(buf + n, 7, 3);
		break;
	default: /* field number 0 */
		n += put_key(buf + n, 0, 0);
		buf[n++] = 1;
		n += put_key(buf + n, 4, 0);
		n += put_varint(buf + n, id);
		break;
	}
	return (n);
}

static void *
fake_serve(void *arg)
{
	fake *f = arg;

	for (int k = 0; k < f->cases; k++) {
		Haven__Rpc__V1__Request *req;
		uint8_t                  buf[256];
		nng_msg                 *m;
		size_t                   n;

		if (nng_recvmsg(f->sock, &m, 0) != 0) {
			return (NULL);
		}
		req = haven__rpc__v1__request__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
		n   = craft(k, req != NULL ? req->request_id : 0, buf);
		haven__rpc__v1__request__free_unpacked(req, NULL);
		nng_msg_clear(m);
		if (nng_msg_append(m, buf, n) != 0 || nng_sendmsg(f->sock, m, 0) != 0) {
			nng_msg_free(m);
			return (NULL);
		}
	}
	return (NULL);
}

/* Replies as protobuf allows them (any order, unknown fields) are read; anything that is not
 * a Reply for this request is DATA_LOSS, never a crash or another call's answer. */
static void
test_reply_envelopes(void **state)
{
	static const hv_status       want[] = { HV_OK, HV_DATA_LOSS, HV_DATA_LOSS, HV_DATA_LOSS,
		      HV_NOT_FOUND, HV_RESOURCE_EXHAUSTED, HV_DATA_LOSS, HV_DATA_LOSS };
	fake                         f      = { .cases = 8 };
	Haven__Diag__V1__EchoRequest req    = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	rpc_call_options             o      = { .timeout_ms = 5000 };
	rpc_channel                 *ch;
	pthread_t                    th;
	char                         err[RPC_ERRMSG_MAX];

	(void) state;
	assert_int_equal(nng_rep0_open(&f.sock), 0);
	assert_int_equal(nng_listen(f.sock, "inproc://async-fake", NULL, 0), 0);
	assert_int_equal(pthread_create(&th, NULL, fake_serve, &f), 0);
	assert_int_equal(rpc_channel_open(&ch, "inproc://async-fake", NULL), HV_OK);
	for (int k = 0; k < f.cases; k++) {
		ProtobufCMessage *rep = NULL;

		assert_int_equal(rpc_channel_call(ch, M_ECHO, &req.base,
		                     &haven__diag__v1__echo_response__descriptor, &rep, &o, err,
		                     sizeof(err)),
		    want[k]);
		if (k == 0) {
			Haven__Diag__V1__EchoResponse *er = (void *) rep;
			assert_int_equal(er->payload.len, 2);
			assert_memory_equal(er->payload.data, "hi", 2);
		} else {
			assert_null(rep);
		}
		if (k == 4) {
			assert_string_equal(err, "gone");
		}
		if (want[k] == HV_DATA_LOSS) {
			assert_non_null(strstr(err, "not a valid haven.rpc.v1.Reply"));
		}
		protobuf_c_message_free_unpacked(rep, NULL);
	}
	pthread_join(th, NULL);
	rpc_channel_close(ch);
	nng_close(f.sock);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_in_flight),
		cmocka_unit_test(test_errors_and_deadlines),
		cmocka_unit_test(test_unavailable_and_close),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_reply_envelopes),
	};

	log_init("rpc_async_test", LOG_LEVEL_WARN);
	tu_tmpdir(tmp, sizeof(tmp), "rpcasync");
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
