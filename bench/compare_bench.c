/*
 * compare_bench.c - `haven-bench compare [CALLS] [SIZE] [ROUNDS]`: haven's Echo against the
 * plain nng echo (nng_bench.c) in one run, so both see the same machine load.
 *
 * Each server runs in a child process of its own (this binary with "--serve"), listening on
 * ipc:// in a private directory, as haven-node and a plain server would. Per round and per
 * 1, 8 and 32 calls in flight it runs the plain echo, then haven's, CALLS calls in all, and
 * prints one line:
 *   compare inflight=F size=S calls=N nng_qps=Q nng_p50_us=X rpc_qps=Q rpc_p50_us=X
 *       rpc_vs_nng=R
 * Rounds alternate the two so that a load change on the shared machine hits both.
 */
#include "bench.h"

#include "haven/clock.h"
#include "haven/log.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const int compare_inflight[] = { 1, 8, 32 };

/* Starts "haven-bench MODE --serve URL" and waits until URL answers a dial (5 s at most). */
static pid_t
start_server(const char *mode, const char *url)
{
	pid_t pid = fork();

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

/* One line: the plain echo then haven's at inflight calls in flight. */
static int
compare_one(const char *nurl, const char *rurl, int inflight, int calls, size_t size)
{
	bench_result n = { 0 }, r = { 0 };
	int          each = calls / inflight > 0 ? calls / inflight : 1;

	if (bench_nng_run(nurl, inflight, each, size, 1, &n) != 0 ||
	    bench_rpc_run(rurl, inflight, each, size, 1, &r) != 0) {
		return (1);
	}
	printf("compare inflight=%d size=%zu calls=%zu nng_qps=%.0f nng_p50_us=%lld rpc_qps=%.0f "
	       "rpc_p50_us=%lld rpc_vs_nng=%.2f%s\n",
	    inflight, size, r.calls, n.qps, (long long) n.p50_us, r.qps, (long long) r.p50_us,
	    n.qps > 0 ? r.qps / n.qps : 0, n.errors + r.errors ? " ERRORS" : "");
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
			rc = compare_one(nurl, rurl, compare_inflight[k], calls, (size_t) size);
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
