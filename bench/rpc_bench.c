/*
 * rpc_bench.c - Echo through the whole RPC stack (envelope, dispatch, identity, limits), and
 * the same echo over raw nng REQ/REP as the baseline.
 *
 *   haven-bench rpc --serve URL [WORKERS]       serve Diagnostics/Echo until killed
 *   haven-bench rpc URL THREADS CALLS SIZE [CONNS]  call it over CONNS connections; prints
 *       haven threads=T size=S calls=N qps=Q p50_us=X p99_us=Y
 *   haven-bench nng --serve URL                  raw nng REP echo (one context per thread)
 *   haven-bench nng URL THREADS CALLS SIZE       raw nng REQ echo; prints the same line
 *                                                with "nng" first
 */
#include "bench.h"

#include "haven/clock.h"
#include "haven/log.h"
#include "haven/rpc.h"

#include "haven/diag/v1/diag.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct job {
	const char  *url;
	rpc_channel *ch;     /* haven */
	nng_socket   sock;   /* raw nng */
	int          calls;
	size_t       size;
	int64_t     *lat_us; /* calls entries */
	int          errors;
} job;

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
	return ((x > y) - (x < y));
}

static void
wait_for_signal(void)
{
	sigset_t s;
	int      sig;

	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGINT);
	sigwait(&s, &sig);
}

static void
block_signals(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGINT);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static void *
haven_client(void *arg)
{
	job                         *j   = arg;
	Haven__Diag__V1__EchoRequest req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	uint8_t                     *buf = malloc(j->size + 1);
	rpc_call_options             o   = { .timeout_ms = 10000 };

	memset(buf, 'x', j->size);
	req.payload.data = buf;
	req.payload.len  = j->size;
	for (int i = 0; i < j->calls; i++) {
		ProtobufCMessage *rep = NULL;
		int64_t           t0  = hv_clock_mono_us();
		if (rpc_channel_call(j->ch, "haven.diag.v1.Diagnostics/Echo", &req.base,
		        &haven__diag__v1__echo_response__descriptor, &rep, &o, NULL, 0) != HV_OK) {
			j->errors++;
		} else {
			protobuf_c_message_free_unpacked(rep, NULL);
		}
		j->lat_us[i] = hv_clock_mono_us() - t0;
	}
	free(buf);
	return (NULL);
}

static void *
nng_client(void *arg)
{
	job     *j = arg;
	nng_ctx  ctx;
	nng_aio *aio;

	nng_ctx_open(&ctx, j->sock);
	nng_aio_alloc(&aio, NULL, NULL);
	nng_aio_set_timeout(aio, 10000);
	for (int i = 0; i < j->calls; i++) {
		nng_msg *m;
		int64_t  t0 = hv_clock_mono_us();
		nng_msg_alloc(&m, j->size);
		memset(nng_msg_body(m), 'x', j->size);
		nng_aio_set_msg(aio, m);
		nng_ctx_send(ctx, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0) {
			nng_msg_free(m);
			j->errors++;
			continue;
		}
		nng_ctx_recv(ctx, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0) {
			j->errors++;
			continue;
		}
		nng_msg_free(nng_aio_get_msg(aio));
		j->lat_us[i] = hv_clock_mono_us() - t0;
	}
	nng_aio_free(aio);
	nng_ctx_close(ctx);
	return (NULL);
}

/* Runs THREADS clients of CALLS calls each and prints the result line. */
static int
run_clients(const char *label, int argc, char **argv, bool raw)
{
	int          threads, calls;
	size_t       size;
	job         *jobs;
	pthread_t   *th;
	int64_t     *all;
	int64_t      t0, elapsed;
	rpc_channel *ch = NULL;
	nng_socket   sock;
	int          errors = 0;
	int          conns  = 1;

	if (argc == 5) {
		conns = atoi(argv[4]);
		argc  = 4;
	}
	if (argc != 4 || conns < 1 || conns > 64 || (threads = atoi(argv[1])) < 1 || threads > 256 ||
	    (calls = atoi(argv[2])) < 1 || atoi(argv[3]) < 0) {
		fprintf(stderr, "usage: haven-bench %s URL THREADS CALLS SIZE\n", label);
		return (2);
	}
	size = (size_t) atoi(argv[3]);
	if (raw) {
		nng_req0_open(&sock);
		nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
		for (int i = 0; i < conns; i++) {
			if (nng_dial(sock, argv[0], NULL, 0) != 0) {
				fprintf(stderr, "haven-bench: cannot dial %s\n", argv[0]);
				return (1);
			}
		}
	} else if (rpc_channel_open(&ch, argv[0],
	               &(rpc_channel_options) { .connections = (unsigned) conns }) != HV_OK) {
		fprintf(stderr, "haven-bench: cannot open %s\n", argv[0]);
		return (1);
	}
	jobs = calloc((size_t) threads, sizeof(*jobs));
	th   = calloc((size_t) threads, sizeof(*th));
	all  = calloc((size_t) threads * (size_t) calls, sizeof(*all));
	for (int i = 0; i < threads; i++) {
		jobs[i] = (job) { .url = argv[0], .ch = ch, .sock = sock, .calls = calls, .size = size,
			.lat_us = all + (size_t) i * (size_t) calls };
	}
	/* Warm up: connect and touch every code path once. */
	{
		job w = jobs[0];
		int64_t lat[16];
		w.calls  = 16;
		w.lat_us = lat;
		raw ? nng_client(&w) : haven_client(&w);
	}
	t0 = hv_clock_mono_us();
	for (int i = 0; i < threads; i++) {
		pthread_create(&th[i], NULL, raw ? nng_client : haven_client, &jobs[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		errors += jobs[i].errors;
	}
	elapsed = hv_clock_mono_us() - t0;
	qsort(all, (size_t) threads * (size_t) calls, sizeof(*all), cmp_i64);
	{
		size_t n = (size_t) threads * (size_t) calls;
		printf("%s threads=%d size=%zu calls=%zu qps=%.0f p50_us=%lld p99_us=%lld%s\n", label,
		    threads, size, n, (double) n * 1e6 / (double) elapsed, (long long) all[n / 2],
		    (long long) all[(n * 99) / 100], errors ? " ERRORS" : "");
		if (errors) {
			fprintf(stderr, "haven-bench: %d calls failed\n", errors);
		}
	}
	free(all);
	free(th);
	free(jobs);
	if (raw) {
		nng_close(sock);
	} else {
		rpc_channel_close(ch);
	}
	return (errors ? 1 : 0);
}

static void
raw_echo_cb(void *arg);

typedef struct raw_slot {
	nng_ctx  ctx;
	nng_aio *aio;
	int      sending;
} raw_slot;

static void
raw_echo_cb(void *arg)
{
	raw_slot *s = arg;

	if (nng_aio_result(s->aio) != 0) {
		if (s->sending) {
			nng_msg_free(nng_aio_get_msg(s->aio));
		} else if (nng_aio_result(s->aio) == NNG_ECLOSED) {
			return;
		}
		s->sending = 0;
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	if (s->sending) {
		s->sending = 0;
		nng_ctx_recv(s->ctx, s->aio);
	} else {
		s->sending = 1;
		nng_ctx_send(s->ctx, s->aio); /* the received message goes back as it is */
	}
}

static int
serve_raw(const char *url)
{
	nng_socket sock;
	raw_slot   slots[64];

	block_signals();
	if (nng_rep0_open(&sock) != 0 || nng_listen(sock, url, NULL, 0) != 0) {
		fprintf(stderr, "haven-bench: cannot listen on %s\n", url);
		return (1);
	}
	for (int i = 0; i < 64; i++) {
		slots[i].sending = 0;
		nng_aio_alloc(&slots[i].aio, raw_echo_cb, &slots[i]);
		nng_ctx_open(&slots[i].ctx, sock);
		nng_ctx_recv(slots[i].ctx, slots[i].aio);
	}
	fprintf(stderr, "haven-bench: raw nng echo on %s\n", url);
	wait_for_signal();
	nng_close(sock);
	for (int i = 0; i < 64; i++) {
		nng_aio_free(slots[i].aio);
	}
	return (0);
}

static int
serve_haven(const char *url, unsigned workers)
{
	rpc_server        *srv;
	rpc_server_options o = { .workers = workers, .name = "bench" };

	block_signals();
	if (rpc_server_open(&srv, &o) != HV_OK || rpc_server_listen(srv, url) != HV_OK ||
	    rpc_server_start(srv) != HV_OK) {
		fprintf(stderr, "haven-bench: cannot serve on %s\n", url);
		return (1);
	}
	fprintf(stderr, "haven-bench: haven echo on %s\n", url);
	wait_for_signal();
	rpc_server_close(srv);
	return (0);
}

int
bench_rpc(int argc, char **argv)
{
	log_init("bench", LOG_LEVEL_WARN);
	if (argc >= 2 && strcmp(argv[0], "--serve") == 0) {
		return (serve_haven(argv[1], argc >= 3 ? (unsigned) atoi(argv[2]) : 0));
	}
	return (run_clients("haven", argc, argv, false));
}

int
bench_nng(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[0], "--serve") == 0) {
		return (serve_raw(argv[1]));
	}
	return (run_clients("nng", argc, argv, true));
}
