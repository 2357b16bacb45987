/*
 * rpc_it.c - the RPC layer end to end: real servers and clients over inproc://, ipc:// and
 * tls+tcp://, many clients at once, and every kind of bad input and failure the server must
 * answer with a status instead of crashing or stalling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/rpc.h"
#include "testutil.h"

#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"
#include "haven/rpc/v1/rpc.pb-c.h"
#include "haven/testing/v1/testing.pb-c.h"

#define M_ECHO     "haven.diag.v1.Diagnostics/Echo"
#define M_HEALTH   "haven.health.v1.Health/Check"
#define M_SLEEP    "haven.testing.v1.Testing/Sleep"
#define M_WHOAMI   "haven.testing.v1.Testing/WhoAmI"
#define M_ADMIN    "haven.testing.v1.Testing/AdminOnly"
#define M_NESTED   "haven.testing.v1.Testing/Nested"
#define M_NOTIMPL  "haven.testing.v1.Testing/NotImplemented"
#define M_UNKNOWNS "haven.testing.v1.Testing/Unknowns"

typedef Haven__Testing__V1__Tree tree_t;

#define PB_DEEP 70 /* past the server's nesting limit of 64 */

static char tmp[512];

/* ---- the Testing service ----------------------------------------------------------- */

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* How many Sleep handlers have started (atomic): a test waits on it to know the worker is
 * busy, instead of sleeping a while and hoping. */
static unsigned sleeps_started;

/* Waits (up to 10 s, generous for a loaded machine) until n Sleep handlers have started. */
static void
wait_sleeps_started(unsigned n)
{
	int64_t until = hv_clock_mono_ms() + 10000;

	while (
	    __atomic_load_n(&sleeps_started, __ATOMIC_ACQUIRE) < n && hv_clock_mono_ms() < until) {
		sleep_ms(1);
	}
	assert_true(__atomic_load_n(&sleeps_started, __ATOMIC_ACQUIRE) >= n);
}

/* The length of the Sleep handler that started last (atomic). */
static unsigned last_sleep_ms;

/* Waits (up to 10 s) until a Sleep handler of ms milliseconds has started: a test that needs
 * one particular call's handler running gives that call a length of its own. (Counting
 * starts is not enough where an earlier call may or may not run: the server drops a queued
 * call whose deadline has passed without running its handler.) */
static void
wait_sleep_of(unsigned ms)
{
	int64_t until = hv_clock_mono_ms() + 10000;

	while (
	    __atomic_load_n(&last_sleep_ms, __ATOMIC_ACQUIRE) != ms && hv_clock_mono_ms() < until) {
		sleep_ms(1);
	}
	assert_int_equal(__atomic_load_n(&last_sleep_ms, __ATOMIC_ACQUIRE), ms);
}

static hv_status
t_sleep(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Testing__V1__SleepRequest *in = (const void *) req;
	Haven__Testing__V1__Empty              *out;

	if (in->ms > 5000) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "sleep too long"));
	}
	__atomic_store_n(&last_sleep_ms, in->ms, __ATOMIC_RELEASE);
	__atomic_add_fetch(&sleeps_started, 1, __ATOMIC_ACQ_REL);
	sleep_ms(in->ms);
	out = rpc_call_alloc(call, sizeof(*out));
	haven__testing__v1__empty__init(out);
	*reply = &out->base;
	return (HV_OK);
}

static Haven__Testing__V1__WhoAmIResponse *
whoami_reply(rpc_call *call)
{
	const rpc_caller                   *c   = rpc_call_caller(call);
	Haven__Testing__V1__WhoAmIResponse *out = rpc_call_alloc(call, sizeof(*out));
	const char                         *tr  = rpc_call_metadata(call, "x-trace");

	haven__testing__v1__who_am_iresponse__init(out);
	out->role            = rpc_call_strdup(call, rpc_role_name(c->role));
	out->org_id          = rpc_call_strdup(call, c->org_id);
	out->transport       = (uint32_t) c->transport;
	out->remaining_ms    = rpc_call_remaining_ms(call);
	out->idempotency_key = rpc_call_strdup(call, rpc_call_idempotency_key(call));
	out->trace           = rpc_call_strdup(call, tr != NULL ? tr : "");
	return (out);
}

static hv_status
t_whoami(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	*reply = &whoami_reply(call)->base;
	return (HV_OK);
}

/* Calls WhoAmI on another server, passing on the remaining deadline and a trace header. */
static hv_status
t_nested(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Testing__V1__NestedRequest *in = (const void *) req;
	Haven__Testing__V1__Empty                e  = HAVEN__TESTING__V1__EMPTY__INIT;
	ProtobufCMessage                        *r  = NULL;
	rpc_channel                             *ch;
	rpc_metadata                             md = { "x-trace", "nested-1" };
	rpc_call_options                         o  = { 0 };
	Haven__Testing__V1__WhoAmIResponse      *out;
	char                                     err[RPC_ERRMSG_MAX];
	hv_status                                st;

	if ((st = rpc_channel_open(&ch, in->url, NULL)) != HV_OK) {
		return (rpc_call_error(call, st, "cannot open channel"));
	}
	o.timeout_ms = rpc_call_remaining_ms(call);
	o.metadata   = &md;
	o.n_metadata = 1;
	st           = rpc_channel_call(ch, M_WHOAMI, &e.base,
	              &haven__testing__v1__who_am_iresponse__descriptor, &r, &o, err, sizeof(err));
	rpc_channel_close(ch);
	if (st != HV_OK) {
		return (rpc_call_error(call, st, "nested call failed: %s", err));
	}
	out               = whoami_reply(call);
	out->remaining_ms = ((Haven__Testing__V1__WhoAmIResponse *) r)->remaining_ms;
	out->trace = rpc_call_strdup(call, ((Haven__Testing__V1__WhoAmIResponse *) r)->trace);
	protobuf_c_message_free_unpacked(r, NULL);
	*reply = &out->base;
	return (HV_OK);
}

/* Unknown fields in a tree, at every depth. */
static unsigned
tree_unknowns(const tree_t *t)
{
	unsigned n;

	if (t == NULL) {
		return (0);
	}
	n = t->base.n_unknown_fields + tree_unknowns(t->child);
	for (size_t i = 0; i < t->n_kids; i++) {
		n += tree_unknowns(t->kids[i]);
	}
	if (t->pick_case == HAVEN__TESTING__V1__TREE__PICK_LEFT) {
		n += tree_unknowns(t->left);
	}
	return (n);
}

static ProtobufCMessageUnknownField *
one_unknown(rpc_call *call)
{
	ProtobufCMessageUnknownField *u = rpc_call_alloc(call, sizeof(*u));
	uint8_t                      *v = rpc_call_alloc(call, 1);

	v[0]         = 1;
	u->tag       = 77;
	u->wire_type = PROTOBUF_C_WIRE_TYPE_VARINT;
	u->len       = 1;
	u->data      = v;
	return (u);
}

/* Says how many unknown fields its request reached it with, and answers with the request and
 * unknown fields of its own at two depths (which the server must leave off the reply). */
static hv_status
t_unknowns(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	tree_t                               *in  = (void *) req; /* the call's own */
	Haven__Testing__V1__UnknownsResponse *out = rpc_call_alloc(call, sizeof(*out));

	haven__testing__v1__unknowns_response__init(out);
	out->seen                  = tree_unknowns(in);
	out->tree                  = in;
	out->base.n_unknown_fields = 1;
	out->base.unknown_fields   = one_unknown(call);
	in->base.n_unknown_fields  = 1;
	in->base.unknown_fields    = one_unknown(call);
	*reply                     = &out->base;
	return (HV_OK);
}

static const rpc_method_impl testing_methods[] = {
	{ .name = "Sleep", .handler = t_sleep, .roles = RPC_ROLES_ANY },
	{ .name = "WhoAmI", .handler = t_whoami, .roles = RPC_ROLES_AUTHENTICATED },
	{ .name = "AdminOnly", .handler = t_whoami, .roles = RPC_ROLE_ADMIN },
	{ .name = "Nested", .handler = t_nested, .roles = RPC_ROLES_AUTHENTICATED },
	{ .name = "Unknowns", .handler = t_unknowns, .roles = RPC_ROLES_ANY },
};

static rpc_server *
start_server(const rpc_server_options *o, const char *url)
{
	rpc_server *srv;

	assert_int_equal(rpc_server_open(&srv, o), HV_OK);
	assert_int_equal(rpc_server_add_service(srv, &haven__testing__v1__testing__descriptor,
	                     testing_methods, sizeof(testing_methods) / sizeof(testing_methods[0]),
	                     NULL),
	    HV_OK);
	assert_int_equal(rpc_server_listen(srv, url), HV_OK);
	assert_int_equal(rpc_server_start(srv), HV_OK);
	return (srv);
}

/* ---- client helpers ---------------------------------------------------------------- */

static hv_status
echo(rpc_channel *ch, const uint8_t *data, size_t n, uint32_t timeout_ms)
{
	Haven__Diag__V1__EchoRequest req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	ProtobufCMessage            *r   = NULL;
	rpc_call_options             o   = { .timeout_ms = timeout_ms };
	char                         err[RPC_ERRMSG_MAX];
	hv_status                    st;

	req.payload.data = (uint8_t *) data;
	req.payload.len  = n;
	st = rpc_channel_call(ch, M_ECHO, &req.base, &haven__diag__v1__echo_response__descriptor,
	    &r, &o, err, sizeof(err));
	if (st == HV_OK) {
		Haven__Diag__V1__EchoResponse *resp = (void *) r;
		if (resp->payload.len != n || (n > 0 && memcmp(resp->payload.data, data, n) != 0)) {
			st = HV_DATA_LOSS;
		}
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

static hv_status
whoami(rpc_channel *ch, const char *method, Haven__Testing__V1__WhoAmIResponse **out,
    const rpc_call_options *o, char *err)
{
	Haven__Testing__V1__Empty e = HAVEN__TESTING__V1__EMPTY__INIT;
	ProtobufCMessage         *r = NULL;
	hv_status                 st;

	st   = rpc_channel_call(ch, method, &e.base,
	      &haven__testing__v1__who_am_iresponse__descriptor, &r, o, err, RPC_ERRMSG_MAX);
	*out = (void *) r;
	return (st);
}

static hv_status
call_sleep(rpc_channel *ch, unsigned ms, uint32_t timeout_ms)
{
	Haven__Testing__V1__SleepRequest req = HAVEN__TESTING__V1__SLEEP_REQUEST__INIT;
	ProtobufCMessage                *r   = NULL;
	rpc_call_options                 o   = { .timeout_ms = timeout_ms };
	hv_status                        st;

	req.ms = ms;
	st = rpc_channel_call(ch, M_SLEEP, &req.base, &haven__testing__v1__empty__descriptor, &r,
	    &o, NULL, 0);
	if (r != NULL) {
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

/* Sends raw bytes and decodes the reply envelope; returns its code (or the transport's). */
static hv_status
raw_call(rpc_channel *ch, const void *buf, size_t n, uint32_t timeout_ms, char *msg, size_t msgsz)
{
	void                  *rep = NULL;
	size_t                 rlen;
	Haven__Rpc__V1__Reply *env;
	hv_status              st;

	if ((st = rpc_channel_call_raw(ch, buf, n, &rep, &rlen, timeout_ms)) != HV_OK) {
		return (st);
	}
	env = haven__rpc__v1__reply__unpack(NULL, rlen, rep);
	free(rep);
	assert_non_null(env); /* the server always answers with a valid envelope */
	st = (hv_status) env->code;
	if (msg != NULL) {
		snprintf(msg, msgsz, "%s", env->message);
	}
	haven__rpc__v1__reply__free_unpacked(env, NULL);
	return (st);
}

/* Packs an envelope for method with the given payload and options. */
static size_t
pack_env(uint8_t *buf, size_t cap, const char *method, const void *payload, size_t plen,
    uint32_t timeout_ms, size_t n_md, const char *md_key)
{
	Haven__Rpc__V1__Request   env = HAVEN__RPC__V1__REQUEST__INIT;
	Haven__Rpc__V1__Metadata  md[40];
	Haven__Rpc__V1__Metadata *mdp[40];
	size_t                    n;

	assert_true(n_md <= 40);
	for (size_t i = 0; i < n_md; i++) {
		haven__rpc__v1__metadata__init(&md[i]);
		md[i].key   = (char *) md_key;
		md[i].value = "v";
		mdp[i]      = &md[i];
	}
	env.method       = (char *) method;
	env.request_id   = 7;
	env.timeout_ms   = timeout_ms;
	env.payload.data = (uint8_t *) payload;
	env.payload.len  = plen;
	env.n_metadata   = n_md;
	env.metadata     = mdp;
	n                = haven__rpc__v1__request__get_packed_size(&env);
	assert_true(n <= cap);
	haven__rpc__v1__request__pack(&env, buf);
	return (n);
}

/* ---- concurrency helper ------------------------------------------------------------ */

typedef struct echo_job {
	rpc_channel *ch;
	int          calls;
	int          seed;
	int          failures;
} echo_job;

static void *
echo_worker(void *arg)
{
	echo_job *j = arg;
	uint8_t   buf[512];

	for (int i = 0; i < j->calls; i++) {
		size_t n = (size_t) ((j->seed * 131 + i * 17) % (int) sizeof(buf));
		for (size_t k = 0; k < n; k++) {
			buf[k] = (uint8_t) (j->seed + i + (int) k);
		}
		if (echo(j->ch, buf, n, 10000) != HV_OK) {
			j->failures++;
		}
	}
	return (NULL);
}

static void
run_concurrent_echo(rpc_channel *ch, int threads, int calls)
{
	pthread_t th[16];
	echo_job  jobs[16];

	assert_true(threads <= 16);
	for (int i = 0; i < threads; i++) {
		jobs[i] = (echo_job) { .ch = ch, .calls = calls, .seed = i + 1 };
		assert_int_equal(pthread_create(&th[i], NULL, echo_worker, &jobs[i]), 0);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(jobs[i].failures, 0);
	}
}

/* ---- tests ------------------------------------------------------------------------- */

static void
test_inproc_health_echo_concurrent(void **state)
{
	rpc_server                           *srv = start_server(NULL, "inproc://t-basic");
	rpc_channel                          *ch;
	Haven__Health__V1__HealthCheckRequest hreq = HAVEN__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Haven__Health__V1__HealthCheckResponse *hr = NULL;
	char                                    err[RPC_ERRMSG_MAX];

	assert_int_equal(rpc_channel_open(&ch, "inproc://t-basic", NULL), HV_OK);
	assert_int_equal(rpc_channel_call(ch, M_HEALTH, &hreq.base,
	                     &haven__health__v1__health_check_response__descriptor,
	                     (ProtobufCMessage **) &hr, NULL, err, sizeof(err)),
	    HV_OK);
	assert_int_equal(hr->status,
	    HAVEN__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	protobuf_c_message_free_unpacked(&hr->base, NULL);

	hreq.service = "haven.testing.v1.Testing";
	assert_int_equal(rpc_channel_call(ch, M_HEALTH, &hreq.base,
	                     &haven__health__v1__health_check_response__descriptor,
	                     (ProtobufCMessage **) &hr, NULL, err, sizeof(err)),
	    HV_OK);
	assert_int_equal(hr->status,
	    HAVEN__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	protobuf_c_message_free_unpacked(&hr->base, NULL);

	rpc_server_set_serving(srv, "haven.testing.v1.Testing", false);
	assert_int_equal(rpc_channel_call(ch, M_HEALTH, &hreq.base,
	                     &haven__health__v1__health_check_response__descriptor,
	                     (ProtobufCMessage **) &hr, NULL, err, sizeof(err)),
	    HV_OK);
	assert_int_equal(hr->status,
	    HAVEN__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	protobuf_c_message_free_unpacked(&hr->base, NULL);

	hreq.service = "haven.nope.v1.Nope";
	assert_int_equal(rpc_channel_call(ch, M_HEALTH, &hreq.base,
	                     &haven__health__v1__health_check_response__descriptor,
	                     (ProtobufCMessage **) &hr, NULL, err, sizeof(err)),
	    HV_NOT_FOUND);
	assert_non_null(strstr(err, "unknown service"));

	/* Echo: empty, small, and the limit. */
	static uint8_t big[64 * 1024 + 1];
	assert_int_equal(echo(ch, NULL, 0, 2000), HV_OK);
	assert_int_equal(echo(ch, (const uint8_t *) "hello", 5, 2000), HV_OK);
	assert_int_equal(echo(ch, big, 64 * 1024, 2000), HV_OK);
	assert_int_equal(echo(ch, big, sizeof(big), 2000), HV_INVALID_ARGUMENT);

	run_concurrent_echo(ch, 8, 300);
	rpc_channel_close(ch);
	rpc_server_close(srv);
}

static void
test_ipc_identity_and_permissions(void **state)
{
	char                                dir[600], url[1000], path[900], open_dir[600];
	rpc_server                         *srv, *srv2;
	rpc_channel                        *ch;
	Haven__Testing__V1__WhoAmIResponse *who;
	struct stat                         sb;
	char                                err[RPC_ERRMSG_MAX];

	snprintf(dir, sizeof(dir), "%s/ipc", tmp);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/node.sock", dir);
	snprintf(url, sizeof(url), "ipc://%s", path);
	srv = start_server(NULL, url);

	/* The socket is closed to others. */
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	/* A second node on the same path is refused, the first keeps serving. */
	assert_int_equal(rpc_server_open(&srv2, NULL), HV_OK);
	assert_int_equal(rpc_server_listen(srv2, url), HV_ALREADY_EXISTS);
	rpc_server_close(srv2);

	/* A directory others can enter is refused. */
	snprintf(open_dir, sizeof(open_dir), "%s/open", tmp);
	assert_int_equal(mkdir(open_dir, 0755), 0);
	chmod(open_dir, 0755);
	snprintf(path, sizeof(path), "ipc://%s/node.sock", open_dir);
	assert_int_equal(rpc_server_open(&srv2, NULL), HV_OK);
	assert_int_equal(rpc_server_listen(srv2, path), HV_PERMISSION_DENIED);
	rpc_server_close(srv2);

	/* The node's own user is the local operator. */
	assert_int_equal(rpc_channel_open(&ch, url, NULL), HV_OK);
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_OK);
	assert_string_equal(who->role, "operator");
	assert_int_equal(who->transport, RPC_TRANSPORT_IPC);
	protobuf_c_message_free_unpacked(&who->base, NULL);
	/* The operator is not an admin organisation. */
	assert_int_equal(whoami(ch, M_ADMIN, &who, NULL, err), HV_PERMISSION_DENIED);
	assert_non_null(strstr(err, "role operator may not call"));

	run_concurrent_echo(ch, 8, 200);
	rpc_channel_close(ch);
	rpc_server_close(srv);
}

static void
test_plain_tcp_needs_insecure_flag(void **state)
{
	rpc_server                         *srv;
	rpc_channel                        *ch;
	rpc_server_options                  o  = { .insecure_tcp = true };
	rpc_channel_options                 co = { .insecure_tcp = true };
	char                                url[64];
	Haven__Testing__V1__WhoAmIResponse *who;
	char                                err[RPC_ERRMSG_MAX];

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", 20000 + (int) (getpid() % 20000));
	assert_int_equal(rpc_server_open(&srv, NULL), HV_OK);
	assert_int_equal(rpc_server_listen(srv, url), HV_PERMISSION_DENIED);
	assert_int_equal(rpc_server_listen(srv, "udp://127.0.0.1:1"), HV_INVALID_ARGUMENT);
	rpc_server_close(srv);
	assert_int_equal(rpc_channel_open(&ch, url, NULL), HV_PERMISSION_DENIED);

	srv = start_server(&o, url);
	assert_int_equal(rpc_channel_open(&ch, url, &co), HV_OK);
	/* Over plain TCP without a token nobody is trusted. */
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_PERMISSION_DENIED);
	assert_non_null(strstr(err, "role anonymous"));
	assert_int_equal(echo(ch, (const uint8_t *) "x", 1, 2000), HV_PERMISSION_DENIED);
	rpc_channel_close(ch);
	rpc_server_close(srv);
}

static void
test_malformed_input(void **state)
{
	rpc_server_options o   = { .max_msg = 64 * 1024 };
	rpc_server        *srv = start_server(&o, "inproc://t-bad");
	rpc_channel       *ch;
	static uint8_t     buf[200 * 1024];
	char               msg[RPC_ERRMSG_MAX];
	char               longname[400];
	size_t             n;
	rpc_server_stats   stats;

	assert_int_equal(rpc_channel_open(&ch, "inproc://t-bad", NULL), HV_OK);

	/* Not an envelope at all. */
	memcpy(buf, "\xff\xff\xff\xff\xff\x01garbage", 13);
	assert_int_equal(raw_call(ch, buf, 13, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "haven.rpc.v1.Request"));
	/* Empty message: an envelope with no method. */
	assert_int_equal(raw_call(ch, buf, 0, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);

	/* A good envelope whose payload is not the method's request. */
	n = pack_env(buf, sizeof(buf), M_ECHO, "\x0a\xff\xff\xff\x0f", 5, 0, 0, NULL);
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "haven.diag.v1.EchoRequest"));

	/* Unknown methods, and a declared method without a handler. */
	n = pack_env(buf, sizeof(buf), "haven.nope.v1.Nope/Nothing", NULL, 0, 0, 0, NULL);
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_UNIMPLEMENTED);
	assert_non_null(strstr(msg, "haven.nope.v1.Nope/Nothing"));
	n = pack_env(buf, sizeof(buf), M_NOTIMPL, NULL, 0, 0, 0, NULL);
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_UNIMPLEMENTED);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	n                              = pack_env(buf, sizeof(buf), longname, NULL, 0, 0, 0, NULL);
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);

	/* Metadata over the limits. */
	n = pack_env(buf, sizeof(buf), M_ECHO, NULL, 0, 0, 17, "k");
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	n = pack_env(buf, sizeof(buf), M_ECHO, NULL, 0, 0, 1, "Bad Key");
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);

	/* Over the receive limit: nng drops the message (and the connection); no reply, no
	 * crash, and the server goes on serving. */
	memset(buf, 0, sizeof(buf));
	assert_int_not_equal(raw_call(ch, buf, sizeof(buf), 300, NULL, 0), HV_OK);
	assert_int_equal(echo(ch, (const uint8_t *) "still here", 10, 5000), HV_OK);

	/* Random bytes and mutated envelopes: every one gets an answer, none crashes. */
	srand(42);
	for (int i = 0; i < 3000; i++) {
		size_t len;
		if (i % 2 == 0) {
			len = (size_t) (rand() % 300);
			for (size_t k = 0; k < len; k++) {
				buf[k] = (uint8_t) rand();
			}
		} else {
			len = pack_env(buf, sizeof(buf), M_ECHO,
			    "\x0a\x03"
			    "abc",
			    5, 0, 2, "k");
			for (int k = 0; k < 3; k++) {
				buf[(size_t) rand() % len] = (uint8_t) rand();
			}
		}
		hv_status st = raw_call(ch, buf, len, 5000, NULL, 0);
		assert_true(st <= HV_STATUS_MAX);
		assert_int_not_equal(st, HV_DEADLINE_EXCEEDED);
	}
	assert_int_equal(echo(ch, (const uint8_t *) "after fuzz", 10, 5000), HV_OK);
	rpc_server_get_stats(srv, &stats);
	assert_true(stats.malformed > 1000);

	rpc_channel_close(ch);
	rpc_server_close(srv);
}

typedef struct sleep_job {
	rpc_channel *ch;
	unsigned     ms;
	uint32_t     timeout;
	hv_status    st;
} sleep_job;

static void *
sleep_worker(void *arg)
{
	sleep_job *j = arg;
	j->st        = call_sleep(j->ch, j->ms, j->timeout);
	return (NULL);
}

static void
test_deadlines(void **state)
{
	rpc_server_options                  o   = { .workers = 1, .queue = 8 };
	rpc_server                         *srv = start_server(&o, "inproc://t-deadline");
	rpc_server                         *srv2;
	rpc_channel                        *ch;
	pthread_t                           th;
	sleep_job                           job;
	uint8_t                             buf[256];
	char                                msg[RPC_ERRMSG_MAX];
	size_t                              n;
	int64_t                             t0;
	Haven__Testing__V1__NestedRequest   nreq = HAVEN__TESTING__V1__NESTED_REQUEST__INIT;
	Haven__Testing__V1__WhoAmIResponse *who  = NULL;
	rpc_call_options                    co   = { .timeout_ms = 1000 };

	assert_int_equal(rpc_channel_open(&ch, "inproc://t-deadline", NULL), HV_OK);

	/* The client gives up at its own timeout (60 ms), long before the handler (1 s) ends. */
	t0 = hv_clock_mono_ms();
	assert_int_equal(call_sleep(ch, 1000, 60), HV_DEADLINE_EXCEEDED);
	assert_true(hv_clock_mono_ms() - t0 < 800);

	/* A call whose deadline passes while it waits for the (one, busy) worker is answered
	 * DEADLINE_EXCEEDED without running its handler. The worker is busy once the job's
	 * handler (1001 ms, a length of its own) has started: the one above may have run first
	 * or, on a loaded machine, been dropped in the queue when its 60 ms had passed. */
	job = (sleep_job) { .ch = ch, .ms = 1001, .timeout = 8000 };
	assert_int_equal(pthread_create(&th, NULL, sleep_worker, &job), 0);
	wait_sleep_of(1001);
	n = pack_env(buf, sizeof(buf), M_WHOAMI, NULL, 0, 20, 0, NULL);
	assert_int_equal(raw_call(ch, buf, n, 3000, msg, sizeof(msg)), HV_DEADLINE_EXCEEDED);
	assert_non_null(strstr(msg, "queued"));
	pthread_join(th, NULL);
	assert_int_equal(job.st, HV_OK);

	/* Nested calls get what is left of the deadline, and the metadata the handler adds. */
	srv2     = start_server(NULL, "inproc://t-deadline-inner");
	nreq.url = "inproc://t-deadline-inner";
	assert_int_equal(rpc_channel_call(ch, M_NESTED, &nreq.base,
	                     &haven__testing__v1__who_am_iresponse__descriptor,
	                     (ProtobufCMessage **) &who, &co, msg, sizeof(msg)),
	    HV_OK);
	assert_true(who->remaining_ms > 0 && who->remaining_ms <= 1000);
	assert_string_equal(who->trace, "nested-1");
	protobuf_c_message_free_unpacked(&who->base, NULL);

	rpc_channel_close(ch);
	rpc_server_close(srv2);
	rpc_server_close(srv);
}

static void
test_full_queue_is_resource_exhausted(void **state)
{
	rpc_server_options o   = { .workers = 1, .queue = 2, .contexts = 32 };
	rpc_server        *srv = start_server(&o, "inproc://t-full");
	rpc_channel       *ch;
	pthread_t          th[12];
	sleep_job          jobs[12];
	int                ok = 0, busy = 0;
	rpc_server_stats   stats;

	assert_int_equal(rpc_channel_open(&ch, "inproc://t-full", NULL), HV_OK);
	for (int i = 0; i < 12; i++) {
		jobs[i] = (sleep_job) { .ch = ch, .ms = 200, .timeout = 10000 };
		assert_int_equal(pthread_create(&th[i], NULL, sleep_worker, &jobs[i]), 0);
	}
	for (int i = 0; i < 12; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].st == HV_OK) {
			ok++;
		} else if (jobs[i].st == HV_RESOURCE_EXHAUSTED) {
			busy++;
		} else {
			fail_msg("unexpected status %s", hv_status_name(jobs[i].st));
		}
	}
	/* At least the queue's two places are taken before anything is refused (whether the
	 * worker has already taken the first call off the queue at that moment is a race, so a
	 * third is not guaranteed); every call got one of the two answers. */
	assert_true(ok >= 2);
	assert_int_equal(ok + busy, 12);
	assert_true(busy >= 1);
	rpc_server_get_stats(srv, &stats);
	assert_int_equal(stats.rejected, (uint64_t) busy);
	/* And the server is fine afterwards. */
	assert_int_equal(echo(ch, (const uint8_t *) "ok", 2, 2000), HV_OK);
	rpc_channel_close(ch);
	rpc_server_close(srv);
}

static void
test_session_tokens_and_roles(void **state)
{
	static tu_org orgs[] = {
		{ "acme-ngo", RPC_ROLE_REFERRER, 1, NULL },
		{ "city-admin", RPC_ROLE_ADMIN, 1, NULL },
		{ "gone-ngo", RPC_ROLE_REFERRER, 1, NULL },
		{ NULL, 0, 0, NULL },
	};
	auth_options                        ao = { .lookup = tu_lookup, .lookup_arg = orgs };
	auth                               *a;
	rpc_server_options                  o = { .insecure_tcp = true };
	rpc_server                         *srv;
	rpc_channel                        *ch;
	char                                tok[AUTH_TOKEN_MAX], bad[AUTH_TOKEN_MAX], url[64];
	uint64_t                            exp;
	rpc_channel_options                 co = { .insecure_tcp = true };
	Haven__Testing__V1__WhoAmIResponse *who;
	char                                err[RPC_ERRMSG_MAX];

	memset(ao.secret, 0x5a, sizeof(ao.secret));
	assert_int_equal(auth_open(&a, &ao), HV_OK);
	o.auth = a;
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", 20000 + (int) ((getpid() + 7) % 20000));
	srv = start_server(&o, url);
	assert_int_equal(rpc_channel_open(&ch, url, &co), HV_OK);

	/* A referrer's token: who it is comes from the token, checked against the directory. */
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, hv_clock_wall_ms(), tok,
	                     &exp),
	    HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, tok), HV_OK);
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_OK);
	assert_string_equal(who->role, "referrer");
	assert_string_equal(who->org_id, "acme-ngo");
	protobuf_c_message_free_unpacked(&who->base, NULL);
	/* ... and a referrer may not call an admin method. */
	assert_int_equal(whoami(ch, M_ADMIN, &who, NULL, err), HV_PERMISSION_DENIED);
	assert_non_null(
	    strstr(err, "role referrer may not call haven.testing.v1.Testing/AdminOnly"));

	/* An admin may. */
	assert_int_equal(auth_issue_token(a, "city-admin", RPC_ROLE_ADMIN, hv_clock_wall_ms(), tok,
	                     &exp),
	    HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, tok), HV_OK);
	assert_int_equal(whoami(ch, M_ADMIN, &who, NULL, err), HV_OK);
	assert_string_equal(who->org_id, "city-admin");
	protobuf_c_message_free_unpacked(&who->base, NULL);

	/* Altered: one character of the token changed. */
	snprintf(bad, sizeof(bad), "%s", tok);
	bad[5] = bad[5] == 'A' ? 'B' : 'A';
	assert_int_equal(rpc_channel_set_token(ch, bad), HV_OK);
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_UNAUTHENTICATED);
	/* Forged: a token made with another secret. */
	{
		auth_options ao2 = ao;
		auth        *a2;
		memset(ao2.secret, 0x11, sizeof(ao2.secret));
		assert_int_equal(auth_open(&a2, &ao2), HV_OK);
		assert_int_equal(auth_issue_token(a2, "city-admin", RPC_ROLE_ADMIN,
		                     hv_clock_wall_ms(), bad, &exp),
		    HV_OK);
		auth_close(a2);
	}
	assert_int_equal(rpc_channel_set_token(ch, bad), HV_OK);
	assert_int_equal(whoami(ch, M_ADMIN, &who, NULL, err), HV_UNAUTHENTICATED);
	assert_non_null(strstr(err, "session token"));
	/* Garbage. */
	assert_int_equal(rpc_channel_set_token(ch, "v1.not-a-token"), HV_OK);
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_UNAUTHENTICATED);
	/* Expired: issued two hours ago with a one-hour lifetime. */
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER,
	                     hv_clock_wall_ms() - 2 * 3600 * 1000, bad, &exp),
	    HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, bad), HV_OK);
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_UNAUTHENTICATED);
	/* Revoked: the organisation was disabled after it got its token. */
	assert_int_equal(auth_issue_token(a, "gone-ngo", RPC_ROLE_REFERRER, hv_clock_wall_ms(), tok,
	                     &exp),
	    HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, tok), HV_OK);
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_OK);
	protobuf_c_message_free_unpacked(&who->base, NULL);
	orgs[2].enabled = 0;
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_UNAUTHENTICATED);

	/* A token on a server without an authenticator is refused too. */
	rpc_channel_close(ch);
	rpc_server_close(srv);
	srv = start_server(NULL, "inproc://t-noauth");
	assert_int_equal(rpc_channel_open(&ch, "inproc://t-noauth", NULL), HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, tok), HV_OK);
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_UNAUTHENTICATED);
	rpc_channel_close(ch);
	rpc_server_close(srv);
	auth_close(a);
}

/* A raw TLS client without a certificate of its own: the server must not serve it. */
static int
tls_without_client_cert(const char *url, const char *ca)
{
	nng_socket      s;
	nng_dialer      d;
	nng_tls_config *cfg;
	nng_msg        *m;
	int             rv;

	assert_int_equal(nng_req0_open(&s), 0);
	assert_int_equal(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT), 0);
	assert_int_equal(nng_tls_config_ca_file(cfg, ca), 0);
	assert_int_equal(nng_tls_config_server_name(cfg, "localhost"), 0);
	assert_int_equal(nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED), 0);
	assert_int_equal(nng_dialer_create(&d, s, url), 0);
	assert_int_equal(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg), 0);
	assert_int_equal(nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 700), 0);
	assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 700), 0);
	nng_dialer_start(d, NNG_FLAG_NONBLOCK);
	assert_int_equal(nng_msg_alloc(&m, 0), 0);
	rv = nng_sendmsg(s, m, 0);
	if (rv != 0) {
		nng_msg_free(m);
	} else {
		rv = nng_recvmsg(s, &m, 0);
		if (rv == 0) {
			nng_msg_free(m);
		}
	}
	nng_close(s);
	nng_tls_config_free(cfg);
	return (rv);
}

static void
test_tls_mutual_auth_and_login(void **state)
{
	static const char *const names[] = { "acme-ngo", "shelter-one" };
	char                     pki[600], rogue[600], url[64], f1[700], f2[700], f3[700];
	char                     ca[700], cert[700], key[700];
	tu_org                   orgs[3];
	auth_options             ao = { .lookup = tu_lookup };
	auth                    *a;
	rpc_server              *srv;
	rpc_channel             *ch;
	char                     err[RPC_ERRMSG_MAX];
	Haven__Testing__V1__WhoAmIResponse *who;
	size_t                              keylen;
	char                               *keypem;

	snprintf(pki, sizeof(pki), "%s/pki", tmp);
	snprintf(rogue, sizeof(rogue), "%s/rogue", tmp);
	tu_pki(pki, names, 2);
	tu_pki(rogue, names, 1);
	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	snprintf(f1, sizeof(f1), "%s/acme-ngo.pem", pki);
	snprintf(f2, sizeof(f2), "%s/shelter-one.pem", pki);
	orgs[0]       = (tu_org) { "acme-ngo", RPC_ROLE_REFERRER, 1, f1 };
	orgs[1]       = (tu_org) { "shelter-one", RPC_ROLE_PROVIDER, 1, f2 };
	orgs[2]       = (tu_org) { NULL, 0, 0, NULL };
	ao.lookup_arg = orgs;
	ao.ca_file    = ca; /* registered certificates are checked against the node CA */
	assert_int_equal(crypto_random(ao.secret, sizeof(ao.secret)), HV_OK);
	assert_int_equal(auth_open(&a, &ao), HV_OK);

	{
		rpc_server_options o = { .auth = a };
		char               scert[700], skey[700];
		snprintf(scert, sizeof(scert), "%s/server.pem", pki);
		snprintf(skey, sizeof(skey), "%s/server.key", pki);
		o.tls_ca_file   = ca;
		o.tls_cert_file = scert;
		o.tls_key_file  = skey;
		snprintf(url, sizeof(url), "tls+tcp://127.0.0.1:%d",
		    20000 + (int) ((getpid() + 13) % 20000));
		assert_int_equal(rpc_server_open(&srv, &o), HV_OK);
		assert_int_equal(auth_register(a, srv), HV_OK);
		assert_int_equal(rpc_server_add_service(srv,
		                     &haven__testing__v1__testing__descriptor, testing_methods, 4,
		                     NULL),
		    HV_OK);
		assert_int_equal(rpc_server_listen(srv, url), HV_OK);
		assert_int_equal(rpc_server_start(srv), HV_OK);
	}

	/* A partner with a certificate from the node's CA connects ... */
	snprintf(cert, sizeof(cert), "%s/acme-ngo.pem", pki);
	snprintf(key, sizeof(key), "%s/acme-ngo.key", pki);
	{
		rpc_channel_options co = { .tls_ca_file = ca,
			.tls_cert_file                  = cert,
			.tls_key_file                   = key,
			.tls_server_name                = "localhost" };
		assert_int_equal(rpc_channel_open(&ch, url, &co), HV_OK);
	}
	assert_int_equal(echo(ch, (const uint8_t *) "x", 1, 5000), HV_PERMISSION_DENIED);
	/* ... but is nobody until it proves which organisation it is. */
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_PERMISSION_DENIED);
	keypem = tu_slurp(key, &keylen);
	/* Claiming another organisation with this key fails. */
	assert_int_equal(auth_login(ch, "shelter-one", keypem, keylen, 5000, err, sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_int_equal(auth_login(ch, "nobody", keypem, keylen, 5000, err, sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_int_equal(auth_login(ch, "bad id!", keypem, keylen, 5000, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(auth_login(ch, "acme-ngo", keypem, keylen, 5000, err, sizeof(err)), HV_OK);
	free(keypem);
	assert_int_equal(whoami(ch, M_WHOAMI, &who, NULL, err), HV_OK);
	assert_string_equal(who->role, "referrer");
	assert_string_equal(who->org_id, "acme-ngo");
	assert_int_equal(who->transport, RPC_TRANSPORT_TLS);
	protobuf_c_message_free_unpacked(&who->base, NULL);
	run_concurrent_echo(ch, 8, 100);
	rpc_channel_close(ch);

	/* A certificate from another CA is refused at the handshake: no call gets through. */
	snprintf(cert, sizeof(cert), "%s/acme-ngo.pem", rogue);
	snprintf(key, sizeof(key), "%s/acme-ngo.key", rogue);
	snprintf(f3, sizeof(f3), "%s/ca.pem", rogue);
	{
		/* Trusting the real CA for the server, presenting a rogue client certificate. */
		rpc_channel_options co = { .tls_ca_file = ca,
			.tls_cert_file                  = cert,
			.tls_key_file                   = key,
			.tls_server_name                = "localhost" };
		assert_int_equal(rpc_channel_open(&ch, url, &co), HV_OK);
		assert_int_equal(echo(ch, (const uint8_t *) "x", 1, 700), HV_UNAVAILABLE);
		rpc_channel_close(ch);
	}
	/* No client certificate at all. */
	assert_int_not_equal(tls_without_client_cert(url, ca), 0);
	/* A key file others can read is refused before anything is sent. */
	chmod(key, 0644);
	{
		rpc_channel_options co = { .tls_ca_file = f3,
			.tls_cert_file                  = cert,
			.tls_key_file                   = key,
			.tls_server_name                = "localhost" };
		assert_int_equal(rpc_channel_open(&ch, url, &co), HV_PERMISSION_DENIED);
	}

	rpc_server_close(srv);
	auth_close(a);
}

static void *
start_late(void *arg)
{
	rpc_server **out = arg;
	sleep_ms(300);
	*out = start_server(NULL, "inproc://t-late");
	return (NULL);
}

static void
test_retry_only_when_safe(void **state)
{
	rpc_channel                        *ch;
	rpc_server                         *srv = NULL;
	pthread_t                           th;
	Haven__Testing__V1__WhoAmIResponse *who;
	char                                err[RPC_ERRMSG_MAX];
	rpc_call_options                    o = { .timeout_ms = 250 };
	int64_t                             t0;

	/* Nobody listening: a plain call fails UNAVAILABLE at its timeout. */
	assert_int_equal(rpc_channel_open(&ch, "inproc://t-late", NULL), HV_OK);
	t0 = hv_clock_mono_ms();
	assert_int_equal(whoami(ch, M_WHOAMI, &who, &o, err), HV_UNAVAILABLE);
	assert_true(hv_clock_mono_ms() - t0 >= 240);
	assert_non_null(strstr(err, "no connection"));

	/* A call with an idempotency key waits for the server and gets through, and the key
	 * reaches the handler. */
	assert_int_equal(pthread_create(&th, NULL, start_late, &srv), 0);
	o.timeout_ms      = 5000;
	o.idempotency_key = "ref-123-create";
	assert_int_equal(whoami(ch, M_WHOAMI, &who, &o, err), HV_OK);
	assert_string_equal(who->idempotency_key, "ref-123-create");
	protobuf_c_message_free_unpacked(&who->base, NULL);
	pthread_join(th, NULL);
	rpc_channel_close(ch);
	rpc_server_close(srv);
}

static void
test_close_finishes_inflight_calls(void **state)
{
	rpc_server  *srv = start_server(NULL, "inproc://t-close");
	rpc_channel *ch;
	pthread_t    th;
	sleep_job    job;
	unsigned     started = __atomic_load_n(&sleeps_started, __ATOMIC_ACQUIRE);

	assert_int_equal(rpc_channel_open(&ch, "inproc://t-close", NULL), HV_OK);
	job = (sleep_job) { .ch = ch, .ms = 300, .timeout = 5000 };
	assert_int_equal(pthread_create(&th, NULL, sleep_worker, &job), 0);
	wait_sleeps_started(started + 1); /* in flight: its handler runs */
	rpc_server_close(srv);
	pthread_join(th, NULL);
	assert_int_equal(job.st, HV_OK);
	rpc_channel_close(ch);
}

/* Fields the .proto does not define never reach a handler nor leave in a reply, at any depth;
 * a field numbered 0 and a string holding a NUL are refused, in the envelope and the payload. */
static void
test_unknown_fields_dropped(void **state)
{
	rpc_server                           *srv = start_server(NULL, "inproc://t-unknown");
	rpc_channel                          *ch;
	tree_t                                top, child, kid0, kid1, left, deep[PB_DEEP];
	tree_t                               *kids[] = { &kid0, &kid1 };
	ProtobufCMessageUnknownField          u      = { .tag = 99,
		              .wire_type                      = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
		              .len                            = 6,
		              .data = (uint8_t *) "\x05hello" }; /* data: length and bytes */
	Haven__Testing__V1__UnknownsResponse *r      = NULL;
	static uint8_t                        buf[8192];
	uint8_t                               payload[4096];
	char                                  msg[RPC_ERRMSG_MAX];
	size_t                                n, plen;

	assert_int_equal(rpc_channel_open(&ch, "inproc://t-unknown", NULL), HV_OK);
	tree_t *all[] = { &top, &child, &kid0, &kid1, &left };
	for (size_t i = 0; i < 5; i++) {
		haven__testing__v1__tree__init(all[i]);
	}
	top.name      = "top";
	child.name    = "child";
	kid1.name     = "kid1";
	left.name     = "left";
	top.child     = &child;
	top.n_kids    = 2;
	top.kids      = kids;
	top.pick_case = HAVEN__TESTING__V1__TREE__PICK_LEFT;
	top.left      = &left;
	for (size_t i = 0; i < 5; i++) {
		if (all[i] != &kid0) {
			all[i]->base.n_unknown_fields = 1;
			all[i]->base.unknown_fields   = &u;
		}
	}
	/* protobuf-c packs them as it decodes them: the handler would see 4. */
	assert_int_equal(rpc_channel_call(ch, M_UNKNOWNS, &top.base,
	                     &haven__testing__v1__unknowns_response__descriptor,
	                     (ProtobufCMessage **) &r, NULL, msg, sizeof(msg)),
	    HV_OK);
	assert_int_equal(r->seen, 0);
	/* The handler added some to its reply: the server left them off. */
	assert_int_equal(r->base.n_unknown_fields, 0);
	assert_int_equal(r->tree->base.n_unknown_fields, 0);
	assert_string_equal(r->tree->name, "top");
	assert_string_equal(r->tree->child->name, "child");
	assert_int_equal(r->tree->n_kids, 2);
	assert_string_equal(r->tree->kids[1]->name, "kid1");
	assert_int_equal(r->tree->pick_case, HAVEN__TESTING__V1__TREE__PICK_LEFT);
	assert_string_equal(r->tree->left->name, "left");
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* A field numbered 0 (a two-byte tag, which protobuf-c decodes as an unknown field and
	 * then cannot decode once packed again): at the top, nested, and in the envelope. */
	static const uint8_t top0[]    = { 0x0a, 0x01, 'x', 0x80, 0x00, 0x05 };
	static const uint8_t nested0[] = { 0x0a, 0x01, 'x', 0x12, 0x03, 0x80, 0x00, 0x05 };
	n = pack_env(buf, sizeof(buf), M_UNKNOWNS, top0, sizeof(top0), 0, 0, NULL);
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "haven.testing.v1.Tree holds a field numbered 0"));
	n = pack_env(buf, sizeof(buf), M_UNKNOWNS, nested0, sizeof(nested0), 0, 0, NULL);
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "numbered 0"));
	n = pack_env(buf, sizeof(buf), M_ECHO, NULL, 0, 0, 0, NULL);
	memcpy(buf + n, "\x80\x00\x05", 3);
	assert_int_equal(raw_call(ch, buf, n + 3, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "haven.rpc.v1.Request holds a field numbered 0"));
	/* An unknown field in the envelope is dropped, the call goes on. */
	memcpy(buf + n, "\x98\x06\x07", 3);
	assert_int_equal(raw_call(ch, buf, n + 3, 2000, msg, sizeof(msg)), HV_OK);

	/* A method name with a NUL byte is not read as the name before it. */
	static const char nul_method[] = "haven.health.v1.Health/Check\0x";
	buf[0]                         = 0x0a;
	buf[1]                         = (uint8_t) (sizeof(nul_method) - 1);
	memcpy(buf + 2, nul_method, sizeof(nul_method) - 1);
	assert_int_equal(raw_call(ch, buf, sizeof(nul_method) + 1, 2000, msg, sizeof(msg)),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "string field method of haven.rpc.v1.Request holds a NUL"));
	/* Nor a string of the request, at any depth. */
	static const uint8_t nul_name[] = { 0x12, 0x05, 0x0a, 0x03, 'a', 0x00, 'b' };
	n = pack_env(buf, sizeof(buf), M_UNKNOWNS, nul_name, sizeof(nul_name), 0, 0, NULL);
	assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "string field name of haven.testing.v1.Tree"));

	/* Nesting is followed to a depth of 64 and refused past it. */
	for (int depth = 60; depth <= PB_DEEP; depth += PB_DEEP - 60) {
		for (int i = 0; i < depth; i++) {
			haven__testing__v1__tree__init(&deep[i]);
			deep[i].child = i + 1 < depth ? &deep[i + 1] : NULL;
		}
		plen = haven__testing__v1__tree__pack(&deep[0], payload);
		n    = pack_env(buf, sizeof(buf), M_UNKNOWNS, payload, plen, 0, 0, NULL);
		assert_int_equal(raw_call(ch, buf, n, 2000, msg, sizeof(msg)),
		    depth == PB_DEEP ? HV_INVALID_ARGUMENT : HV_OK);
	}
	assert_non_null(strstr(msg, "nested deeper than 64"));

	rpc_channel_close(ch);
	rpc_server_close(srv);
}

/* A flood of refused calls writes a bounded number of log lines; every call is counted. */
static void
test_refusal_log_is_rate_limited(void **state)
{
	rpc_server      *srv = start_server(NULL, "inproc://t-flood");
	rpc_channel     *ch;
	rpc_server_stats stats;
	uint8_t          buf[256];
	char             path[600];
	char            *text, *p;
	size_t           n, lines = 0, summaries = 0;
	int              fd, saved;
	int64_t          t0;
	double           secs;
	const int        calls = 3000;

	assert_int_equal(rpc_channel_open(&ch, "inproc://t-flood", NULL), HV_OK);
	snprintf(path, sizeof(path), "%s/flood.log", tmp);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	log_init("rpc_test", LOG_LEVEL_INFO);

	t0 = hv_clock_mono_ms();
	n  = pack_env(buf, sizeof(buf), "haven.nope.v1.Nope/Nothing", NULL, 0, 0, 0, NULL);
	for (int i = 0; i < calls; i++) {
		assert_int_equal(raw_call(ch, buf, n, 5000, NULL, 0), HV_UNIMPLEMENTED);
	}
	secs = (double) (hv_clock_mono_ms() - t0) / 1000.0;
	/* A line written after a pause (a token refilled) comes with the count of those left out.
	 */
	sleep_ms(1100);
	assert_int_equal(raw_call(ch, buf, n, 5000, NULL, 0), HV_UNIMPLEMENTED);

	log_init("rpc_test", LOG_LEVEL_WARN);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(fd);

	text = tu_slurp(path, NULL);
	for (p = text; (p = strchr(p, '\n')) != NULL; p++) {
		lines++;
	}
	for (p = text;
	     (p = strstr(p, "similar lines suppressed (calls ending UNIMPLEMENTED)")) != NULL;
	     p++) {
		summaries++;
	}
	free(text);
	/* 20 at once, 1 a second after, each possibly with its summary line. */
	if ((double) lines > 2 * (20 + 1 * (secs + 0.5) + 2)) {
		fail_msg("%zu log lines for %d refused calls in %.2f s", lines, calls, secs);
	}
	assert_true(summaries >= 1);
	rpc_server_get_stats(srv, &stats);
	assert_true(stats.calls >= (uint64_t) calls + 1);

	rpc_channel_close(ch);
	rpc_server_close(srv);
}

static void
test_bad_arguments(void **state)
{
	rpc_server                  *srv;
	rpc_channel                 *ch;
	static const rpc_method_impl wrong[] = {
		{ .name = "NoSuchMethod", .handler = t_whoami, .roles = RPC_ROLES_ANY },
	};

	assert_int_equal(rpc_server_open(NULL, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_server_open(&srv, NULL), HV_OK);
	assert_int_equal(rpc_server_add_service(srv, &haven__testing__v1__testing__descriptor,
	                     wrong, 1, NULL),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_server_listen(srv, "ipc://relative.sock"), HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_server_listen(srv, "nonsense"), HV_INVALID_ARGUMENT);
	rpc_server_close(srv);
	assert_int_equal(rpc_channel_open(&ch, "nonsense", NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_channel_open(&ch, "tls+tcp://127.0.0.1:1", NULL), HV_INVALID_ARGUMENT);
	rpc_server_close(NULL);
	rpc_channel_close(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inproc_health_echo_concurrent),
		cmocka_unit_test(test_ipc_identity_and_permissions),
		cmocka_unit_test(test_plain_tcp_needs_insecure_flag),
		cmocka_unit_test(test_malformed_input),
		cmocka_unit_test(test_deadlines),
		cmocka_unit_test(test_full_queue_is_resource_exhausted),
		cmocka_unit_test(test_session_tokens_and_roles),
		cmocka_unit_test(test_tls_mutual_auth_and_login),
		cmocka_unit_test(test_retry_only_when_safe),
		cmocka_unit_test(test_close_finishes_inflight_calls),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_unknown_fields_dropped),
		cmocka_unit_test(test_refusal_log_is_rate_limited),
	};

	log_init("rpc_test", LOG_LEVEL_WARN);
	tu_tmpdir(tmp, sizeof(tmp), "rpc");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
