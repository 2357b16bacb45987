/*
 * rpc_bench.c - Echo through the whole RPC stack (envelope, dispatch, identity, limits). The
 * plain nng baseline it is held against is nng_bench.c; `haven-bench compare` runs both.
 *
 *   haven-bench rpc --serve URL [WORKERS]           serve Diagnostics/Echo until killed
 *   haven-bench rpc URL INFLIGHT CALLS SIZE [CONNS] [blocking]  INFLIGHT calls at a time, CALLS
 *       calls each, over CONNS connections; prints
 *       haven threads=T size=S calls=N qps=Q p50_us=X p99_us=Y
 *
 * By default the calls are asynchronous (rpc_channel_call_async): INFLIGHT calls kept going
 * from their completions, as the plain nng client (nng_bench.c) keeps its contexts busy, so
 * both measure the same calling model. "blocking" makes INFLIGHT threads of rpc_channel_call
 * each instead, as the CLI and the services' handlers call.
 */
#include "bench.h"

#include "haven/clock.h"
#include "haven/log.h"
#include "haven/rpc.h"

#include "haven/diag/v1/diag.pb-c.h"

#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

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

pid_t
bench_fork(void)
{
	pid_t parent = getpid();
	pid_t pid    = fork();

	if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)) {
		_exit(126); /* the parent is gone already */
	}
	return (pid);
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

/* ---- the asynchronous client: INFLIGHT calls kept going from their completions ---------- */

typedef struct async_run async_run;

typedef struct async_slot {
	async_run *run;
	int        left;   /* calls still to make */
	int64_t    t0;     /* the current call's start */
	int64_t   *lat_us; /* one entry per call answered */
	size_t     nlat;
	int        errors;
} async_slot;

struct async_run {
	rpc_channel                 *ch;
	Haven__Diag__V1__EchoRequest req;
	pthread_mutex_t              mtx;
	pthread_cond_t               cv;
	int                          running; /* slots not yet done */
};

static void async_next(async_slot *s);

static void
async_done(void *arg, hv_status st, ProtobufCMessage *reply, const char *errmsg)
{
	async_slot *s = arg;

	(void) errmsg;
	if (st != HV_OK) {
		s->errors++;
	} else {
		protobuf_c_message_free_unpacked(reply, NULL);
		s->lat_us[s->nlat++] = hv_clock_mono_us() - s->t0;
	}
	async_next(s);
}

/* Starts the slot's next call, or reports it done. */
static void
async_next(async_slot *s)
{
	rpc_call_options o = { .timeout_ms = 10000 };

	while (s->left > 0) {
		s->left--;
		s->t0 = hv_clock_mono_us();
		if (rpc_channel_call_async(s->run->ch, "haven.diag.v1.Diagnostics/Echo",
		        &s->run->req.base, &haven__diag__v1__echo_response__descriptor, &o,
		        async_done, s) == HV_OK) {
			return;
		}
		s->errors++;
	}
	pthread_mutex_lock(&s->run->mtx);
	if (--s->run->running == 0) {
		pthread_cond_signal(&s->run->cv);
	}
	pthread_mutex_unlock(&s->run->mtx);
}

/* Runs n slots' calls and waits for all of them; returns the elapsed time. */
static int64_t
async_go(async_run *run, async_slot *slots, int n)
{
	int64_t t0 = hv_clock_mono_us();

	run->running = n;
	for (int i = 0; i < n; i++) {
		async_next(&slots[i]);
	}
	pthread_mutex_lock(&run->mtx);
	while (run->running > 0) {
		pthread_cond_wait(&run->cv, &run->mtx);
	}
	pthread_mutex_unlock(&run->mtx);
	return (hv_clock_mono_us() - t0);
}

static int
async_run_all(rpc_channel *ch, int inflight, int calls, size_t size, int64_t *all,
    bench_result *out)
{
	async_run   run = { .ch = ch, .req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT };
	async_slot *slots;
	uint8_t    *buf = malloc(size + 1);
	int64_t     elapsed, warm[64];
	size_t      n      = 0;
	int         errors = 0;

	if ((slots = calloc((size_t) inflight, sizeof(*slots))) == NULL || buf == NULL) {
		free(slots), free(buf);
		return (1);
	}
	memset(buf, 'x', size);
	run.req.payload.data = buf;
	run.req.payload.len  = size;
	pthread_mutex_init(&run.mtx, NULL);
	pthread_cond_init(&run.cv, NULL);
	/* Warm up on one slot: connection up, code paths touched. */
	slots[0] = (async_slot) { .run = &run, .left = 64, .lat_us = warm };
	(void) async_go(&run, slots, 1);
	for (int i = 0; i < inflight; i++) {
		slots[i] = (async_slot) { .run = &run,
			.left                  = calls,
			.lat_us                = all + (size_t) i * (size_t) calls };
	}
	elapsed = async_go(&run, slots, inflight);
	/* Latencies of failed calls are not recorded: pack the recorded ones. */
	for (int i = 0; i < inflight; i++) {
		memmove(all + n, slots[i].lat_us, slots[i].nlat * sizeof(*all));
		n += slots[i].nlat;
		errors += slots[i].errors;
	}
	bench_result_fill(out, all, n, elapsed, errors);
	pthread_cond_destroy(&run.cv);
	pthread_mutex_destroy(&run.mtx);
	free(slots);
	free(buf);
	return (0);
}

/* ---- the blocking client: a thread per call in flight ------------------------------------ */

static int
blocking_run_all(rpc_channel *ch, int threads, int calls, size_t size, int conns, int64_t *all,
    bench_result *out)
{
	job       *jobs = calloc((size_t) threads, sizeof(*jobs));
	pthread_t *th   = calloc((size_t) threads, sizeof(*th));
	int64_t    t0, elapsed;
	int        errors = 0;

	if (jobs == NULL || th == NULL) {
		free(jobs), free(th);
		return (1);
	}
	for (int i = 0; i < threads; i++) {
		jobs[i] = (job) { .ch = ch,
			.calls        = calls,
			.size         = size,
			.lat_us       = all + (size_t) i * (size_t) calls };
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
	free(th);
	free(jobs);
	return (0);
}

int
bench_rpc_run_mode(const char *url, int inflight, int calls, size_t size, int conns, bool blocking,
    bench_result *out)
{
	int64_t     *all;
	rpc_channel *ch = NULL;
	int          rc;

	if (rpc_channel_open(&ch, url,
	        &(rpc_channel_options) { .connections = (unsigned) conns }) != HV_OK) {
		fprintf(stderr, "haven-bench: cannot open %s\n", url);
		return (1);
	}
	if ((all = calloc((size_t) inflight * (size_t) calls, sizeof(*all))) == NULL) {
		rc = 1;
	} else if (blocking) {
		rc = blocking_run_all(ch, inflight, calls, size, conns, all, out);
	} else {
		rc = async_run_all(ch, inflight, calls, size, all, out);
	}
	if (rc != 0) {
		fprintf(stderr, "haven-bench: out of memory\n");
	}
	free(all);
	rpc_channel_close(ch);
	return (rc);
}

int
bench_rpc_run(const char *url, int inflight, int calls, size_t size, int conns, bench_result *out)
{
	return (bench_rpc_run_mode(url, inflight, calls, size, conns, false, out));
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
	bool         blocking = false;
	bench_result r;
	int          rc;

	if (argc >= 5 && strcmp(label, "haven") == 0 && strcmp(argv[argc - 1], "blocking") == 0) {
		blocking = true;
		argc--;
	}
	if (argc == 5) {
		conns = atoi(argv[4]);
		argc  = 4;
	}
	if (argc != 4 || conns < 1 || conns > 64 || (threads = atoi(argv[1])) < 1 ||
	    threads > 256 || (calls = atoi(argv[2])) < 1 || atoi(argv[3]) < 0 ||
	    atoi(argv[3]) > (1 << 20)) {
		fprintf(stderr, "usage: haven-bench %s URL INFLIGHT CALLS SIZE [CONNS]%s\n",
		    strcmp(label, "nng") == 0 ? "nng" : "rpc",
		    strcmp(label, "nng") == 0 ? "" : " [blocking]");
		return (2);
	}
	rc = strcmp(label, "nng") == 0
	    ? bench_nng_run(argv[0], threads, calls, (size_t) atoi(argv[3]), conns, &r)
	    : bench_rpc_run_mode(argv[0], threads, calls, (size_t) atoi(argv[3]), conns, blocking,
	          &r);
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
