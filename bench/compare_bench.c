/*
 * compare_bench.c - `haven-bench compare [CALLS] [SIZE] [ROUNDS]`: haven's Echo against the
 * plain nng echo (nng_bench.c) in one run, so both see the same machine load.
 *
 * Each server runs in a child process of its own (this binary with "--serve"), listening on
 * ipc:// in a private directory, as haven-node and a plain server would. Per round and per
 * 1, 8 and 32 calls in flight it runs the plain echo and haven's (asynchronous calls, as the
 * plain client makes them), alternating in four slices, CALLS calls each in all, and prints
 * one line:
 *   compare inflight=F size=S calls=N nng_qps=Q nng_p50_us=X rpc_qps=Q rpc_p50_us=X
 *       rpc_vs_nng=R nng_cpu_us=SERVER/CLIENT rpc_cpu_us=SERVER/CLIENT
 * (the CPU time per call of the server process and of this one, user + system; p50 the
 * median of the slices'). The slices alternate the two so that a load change on the shared
 * machine hits both.
 */
#include "bench.h"

#include "haven/clock.h"
#include "haven/log.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const int compare_inflight[] = { 1, 8, 32 };

/* Starts "haven-bench MODE --serve URL" and waits until URL answers a dial (5 s at most). */
static pid_t
start_server(const char *mode, const char *url)
{
	pid_t pid = bench_fork();

	if (pid < 0) {
		return (-1);
	}
	if (pid == 0) {
		execl("/proc/self/exe", "haven-bench", mode, "--serve", url, (char *) NULL);
		_exit(127);
	}
	for (int64_t until = hv_clock_mono_ms() + 5000; hv_clock_mono_ms() < until;) {
		nng_socket s;
		int        rv = -1;
		if (nng_req0_open(&s) == 0) {
			rv = nng_dial(s, url, NULL, 0);
			nng_close(s);
		}
		if (rv == 0) {
			return (pid);
		}
		usleep(20000);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return (-1);
}

static void
stop_server(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}

/* CPU time (user + system) of process pid in microseconds, from /proc; -1 when unreadable. */
static int64_t
proc_cpu_us(pid_t pid)
{
	char               path[64], buf[1024], *p;
	FILE              *f;
	unsigned long long ut = 0, stt = 0;
	size_t             n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	if ((f = fopen(path, "r")) == NULL) {
		return (-1);
	}
	n      = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	/* Fields after the command's closing parenthesis: state is 3rd, utime 14th, stime 15th. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) !=
	        2) {
		return (-1);
	}
	return ((int64_t) ((ut + stt) * 1000000ULL / (unsigned long long) sysconf(_SC_CLK_TCK)));
}

/* This process's CPU time in microseconds (every thread: the client and nng's). */
static int64_t
self_cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* One run against one server: its result and the CPU per call of server and client. */
static int
measured_run(bool raw, pid_t srv, const char *url, int inflight, int each, size_t size,
    bench_result *r, double *srv_us, double *cli_us)
{
	int64_t s0 = proc_cpu_us(srv), c0 = self_cpu_us();
	int     rc = raw ? bench_nng_run(url, inflight, each, size, 1, r)
	                 : bench_rpc_run(url, inflight, each, size, 1, r);
	int64_t s1 = proc_cpu_us(srv), c1 = self_cpu_us();

	if (rc == 0 && r->calls > 0) {
		*srv_us = s0 < 0 || s1 < 0 ? 0 : (double) (s1 - s0) / (double) r->calls;
		*cli_us = (double) (c1 - c0) / (double) r->calls;
	}
	return (rc);
}

/* Both echoes alternate in this many slices per line, so that a change of the shared
 * machine's load falls on both alike instead of on whichever ran second. */
#define COMPARE_SLICES 4

/* Sums of the slices of one side: calls, elapsed time, CPU time and each slice's p50. */
typedef struct side {
	size_t  calls;
	double  elapsed_us;
	double  srv_us, cli_us; /* CPU in all, not per call */
	int64_t p50[COMPARE_SLICES];
	int     errors;
} side;

static int
slice_run(bool raw, pid_t pid, const char *url, int inflight, int each, size_t size, side *sd,
    int k)
{
	bench_result r  = { 0 };
	double       su = 0, cu = 0;

	if (measured_run(raw, pid, url, inflight, each, size, &r, &su, &cu) != 0) {
		return (1);
	}
	sd->calls += r.calls;
	sd->elapsed_us += r.qps > 0 ? (double) r.calls * 1e6 / r.qps : 0;
	sd->srv_us += su * (double) r.calls;
	sd->cli_us += cu * (double) r.calls;
	sd->p50[k] = r.p50_us;
	sd->errors += r.errors;
	return (0);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
	return ((x > y) - (x < y));
}

/* One line: the plain echo and haven's at inflight calls in flight, alternating in slices;
 * calls/s over all slices, the median of the slices' p50. Under load a machine's calls/s
 * swing; the CPU per call (server, client) says what each side costs. */
static int
compare_one(const char *nurl, pid_t np, const char *rurl, pid_t rp, int inflight, int calls,
    size_t size)
{
	side   n = { 0 }, r = { 0 };
	int    each = calls / inflight / COMPARE_SLICES > 0 ? calls / inflight / COMPARE_SLICES : 1;
	double nq, rq;

	for (int k = 0; k < COMPARE_SLICES; k++) {
		if (slice_run(true, np, nurl, inflight, each, size, &n, k) != 0 ||
		    slice_run(false, rp, rurl, inflight, each, size, &r, k) != 0) {
			return (1);
		}
	}
	qsort(n.p50, COMPARE_SLICES, sizeof(int64_t), cmp_i64);
	qsort(r.p50, COMPARE_SLICES, sizeof(int64_t), cmp_i64);
	nq = n.elapsed_us > 0 ? (double) n.calls * 1e6 / n.elapsed_us : 0;
	rq = r.elapsed_us > 0 ? (double) r.calls * 1e6 / r.elapsed_us : 0;
	printf("compare inflight=%d size=%zu calls=%zu nng_qps=%.0f nng_p50_us=%lld rpc_qps=%.0f "
	       "rpc_p50_us=%lld rpc_vs_nng=%.2f nng_cpu_us=%.1f/%.1f rpc_cpu_us=%.1f/%.1f%s\n",
	    inflight, size, r.calls, nq, (long long) n.p50[COMPARE_SLICES / 2], rq,
	    (long long) r.p50[COMPARE_SLICES / 2], nq > 0 ? rq / nq : 0,
	    n.calls ? n.srv_us / (double) n.calls : 0, n.calls ? n.cli_us / (double) n.calls : 0,
	    r.calls ? r.srv_us / (double) r.calls : 0, r.calls ? r.cli_us / (double) r.calls : 0,
	    n.errors + r.errors ? " ERRORS" : "");
	fflush(stdout);
	return (n.errors + r.errors ? 1 : 0);
}

int
bench_compare(int argc, char **argv)
{
	int   calls  = argc >= 1 ? atoi(argv[0]) : 20000;
	int   size   = argc >= 2 ? atoi(argv[1]) : 256;
	int   rounds = argc >= 3 ? atoi(argv[2]) : 3;
	char  dir[]  = "/tmp/haven-compare-XXXXXX";
	char  nurl[64], rurl[64];
	pid_t np, rp;
	int   rc = 0;

	if (argc > 3 || calls < 32 || size < 0 || size > (1 << 20) || rounds < 1 || rounds > 100) {
		fprintf(stderr, "usage: haven-bench compare [CALLS >= 32] [SIZE] [ROUNDS]\n");
		return (2);
	}
	log_init("bench", LOG_LEVEL_WARN);
	if (mkdtemp(dir) == NULL) { /* mode 0700, as ipc:// listeners require */
		fprintf(stderr, "haven-bench: cannot make a directory in /tmp\n");
		return (1);
	}
	snprintf(nurl, sizeof(nurl), "ipc://%s/nng.sock", dir);
	snprintf(rurl, sizeof(rurl), "ipc://%s/rpc.sock", dir);
	np = start_server("nng", nurl);
	rp = start_server("rpc", rurl);
	if (np < 0 || rp < 0) {
		fprintf(stderr, "haven-bench: cannot start the echo servers\n");
		rc = 1;
	}
	for (int i = 0; rc == 0 && i < rounds; i++) {
		for (size_t k = 0; rc == 0 && k < sizeof(compare_inflight) / sizeof(int); k++) {
			rc = compare_one(nurl, np, rurl, rp, compare_inflight[k], calls,
			    (size_t) size);
		}
	}
	stop_server(np);
	stop_server(rp);
	unlink(nurl + strlen("ipc://"));
	unlink(rurl + strlen("ipc://"));
	snprintf(nurl, sizeof(nurl), "%s/rpc.sock.lock", dir);
	unlink(nurl);
	rmdir(dir);
	return (rc);
}
