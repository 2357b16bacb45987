/*
 * rpc_bench.c - Echo through the whole RPC stack (envelope, dispatch, identity, limits). The
 * plain nng baseline it is held against is nng_bench.c; `haven-bench compare` runs both.
 *
 *   haven-bench rpc --serve URL [WORKERS]           serve Diagnostics/Echo until killed
 *   haven-bench rpc URL THREADS CALLS SIZE [CONNS]  THREADS callers of CALLS calls each over
 *       CONNS connections; prints
 *       haven threads=T size=S calls=N qps=Q p50_us=X p99_us=Y
 */
#include "bench.h"

#include "haven/clock.h"
#include "haven/log.h"
#include "haven/rpc.h"

#include "haven/diag/v1/diag.pb-c.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
	rpc_channel *ch;
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

void
bench_result_fill(bench_result *out, int64_t *lat, size_t n, int64_t elapsed_us, int errors)
{
	qsort(lat, n, sizeof(*lat), cmp_i64);
	out->calls  = n;
	out->qps    = elapsed_us > 0 ? (double) n * 1e6 / (double) elapsed_us : 0;
	out->p50_us = n > 0 ? lat[n / 2] : 0;
	out->p99_us = n > 0 ? lat[(n * 99) / 100] : 0;
	out->errors = errors;
}

void
bench_block_signals(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGINT);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
}

void
bench_wait_for_signal(void)
{
	sigset_t s;
	int      sig;

	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGINT);
	sigwait(&s, &sig);
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

int
bench_rpc_run(const char *url, int threads, int calls, size_t size, int conns, bench_result *out)
{
	job         *jobs;
	pthread_t   *th;
	int64_t     *all;
	int64_t      t0, elapsed;
	rpc_channel *ch     = NULL;
	int          errors = 0;

	if (rpc_channel_open(&ch, url, &(rpc_channel_options) { .connections = (unsigned) conns }) !=
	    HV_OK) {
		fprintf(stderr, "haven-bench: cannot open %s\n", url);
		return (1);
	}
	jobs = calloc((size_t) threads, sizeof(*jobs));
	th   = calloc((size_t) threads, sizeof(*th));
	all  = calloc((size_t) threads * (size_t) calls, sizeof(*all));
	if (jobs == NULL || th == NULL || all == NULL) {
		fprintf(stderr, "haven-bench: out of memory\n");
		free(jobs), free(th), free(all);
		rpc_channel_close(ch);
		return (1);
	}
	for (int i = 0; i < threads; i++) {
		jobs[i] = (job) { .ch = ch, .calls = calls, .size = size,
			.lat_us = all + (size_t) i * (size_t) calls };
	}
	/* Warm up: connect every connection and touch every code path. */
	{
		job     w = jobs[0];
		int64_t lat[64];
		w.calls  = 16 * conns < 64 ? 16 * conns : 64;
		w.lat_us = lat;
		haven_client(&w);
	}
	t0 = hv_clock_mono_us();
	for (int i = 0; i < threads; i++) {
		pthread_create(&th[i], NULL, haven_client, &jobs[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		errors += jobs[i].errors;
	}
	elapsed = hv_clock_mono_us() - t0;
	bench_result_fill(out, all, (size_t) threads * (size_t) calls, elapsed, errors);
	free(all);
	free(th);
	free(jobs);
	rpc_channel_close(ch);
	return (0);
}

int
bench_rpc_serve(const char *url, unsigned workers)
{
	rpc_server        *srv;
	rpc_server_options o = { .workers = workers, .name = "bench" };

	bench_block_signals();
	if (rpc_server_open(&srv, &o) != HV_OK || rpc_server_listen(srv, url) != HV_OK ||
	    rpc_server_start(srv) != HV_OK) {
		fprintf(stderr, "haven-bench: cannot serve on %s\n", url);
		return (1);
	}
	fprintf(stderr, "haven-bench: haven echo on %s\n", url);
	bench_wait_for_signal();
	rpc_server_close(srv);
	return (0);
}

/* Parses URL THREADS CALLS SIZE [CONNS], runs and prints "LABEL threads=..." */
int
bench_echo_main(const char *label, int argc, char **argv)
{
	int          threads, calls, conns = 1;
	bench_result r;
	int          rc;

	if (argc == 5) {
		conns = atoi(argv[4]);
		argc  = 4;
	}
	if (argc != 4 || conns < 1 || conns > 64 || (threads = atoi(argv[1])) < 1 || threads > 256 ||
	    (calls = atoi(argv[2])) < 1 || atoi(argv[3]) < 0 || atoi(argv[3]) > (1 << 20)) {
		fprintf(stderr, "usage: haven-bench %s URL THREADS CALLS SIZE [CONNS]\n",
		    strcmp(label, "nng") == 0 ? "nng" : "rpc");
		return (2);
	}
	rc = strcmp(label, "nng") == 0
	         ? bench_nng_run(argv[0], threads, calls, (size_t) atoi(argv[3]), conns, &r)
	         : bench_rpc_run(argv[0], threads, calls, (size_t) atoi(argv[3]), conns, &r);
	if (rc != 0) {
		return (rc);
	}
	printf("%s threads=%d size=%d calls=%zu qps=%.0f p50_us=%lld p99_us=%lld%s\n", label,
	    threads, atoi(argv[3]), r.calls, r.qps, (long long) r.p50_us, (long long) r.p99_us,
	    r.errors ? " ERRORS" : "");
	if (r.errors) {
		fprintf(stderr, "haven-bench: %d calls failed\n", r.errors);
	}
	return (r.errors ? 1 : 0);
}

int
bench_rpc(int argc, char **argv)
{
	log_init("bench", LOG_LEVEL_WARN);
	if (argc >= 2 && strcmp(argv[0], "--serve") == 0) {
		return (bench_rpc_serve(argv[1], argc >= 3 ? (unsigned) atoi(argv[2]) : 0));
	}
	return (bench_echo_main("haven", argc, argv));
}
