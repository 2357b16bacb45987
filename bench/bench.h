/*
 * bench.h - the benchmarks of haven-bench, one function per subcommand. Each takes the
 * arguments after its subcommand name and prints its figures as one line on stdout.
 */
#ifndef HAVEN_BENCH_H
#define HAVEN_BENCH_H

int bench_rpc(int argc, char **argv);
int bench_nng(int argc, char **argv);
int bench_store(int argc, char **argv);
int bench_capacity(int argc, char **argv);
int bench_consent(int argc, char **argv);
int bench_referral(int argc, char **argv);
int bench_kdf(int argc, char **argv);
int bench_json(int argc, char **argv);
int bench_http(int argc, char **argv);
int bench_compare(int argc, char **argv);
int bench_alerts(int argc, char **argv);
int bench_soak(int argc, char **argv);

/* ---- shared by the echo benches (rpc_bench.c, nng_bench.c) ---------------------------- */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One echo run: calls finished, calls/s, latency percentiles and failed calls. */
typedef struct bench_result {
	size_t  calls;
	double  qps;
	int64_t p50_us;
	int64_t p99_us;
	int     errors;
} bench_result;

/* Sorts lat (n latencies) and fills out from it and the run's elapsed time. */
void bench_result_fill(bench_result *out, int64_t *lat, size_t n, int64_t elapsed_us, int errors);

/* Blocks SIGTERM and SIGINT in this thread (and the threads it starts), then waits for one. */
void bench_block_signals(void);
void bench_wait_for_signal(void);

/* fork(), with the child sent SIGTERM when the parent ends (a server or node a bench starts
 * must not outlive a bench that was killed). */
#include <sys/types.h>
pid_t bench_fork(void);

/* Echo runs against a server at url: inflight calls at a time, each of the inflight callers
 * making calls calls of size bytes, over conns connections. 0, or 1 when the client could
 * not be set up (a message on stderr). */
int bench_rpc_run(const char *url, int inflight, int calls, size_t size, int conns,
    bench_result *out);
/* bench_rpc_run with asynchronous calls (blocking false) or a thread per call in flight. */
int bench_rpc_run_mode(const char *url, int inflight, int calls, size_t size, int conns,
    bool blocking, bench_result *out);
int bench_nng_run(const char *url, int inflight, int calls, size_t size, int conns,
    bench_result *out);

/* Parses URL THREADS CALLS SIZE [CONNS] (label "haven" or "nng"), runs, prints one line. */
int bench_echo_main(const char *label, int argc, char **argv);

/* The servers, until SIGTERM or SIGINT. */
int bench_rpc_serve(const char *url, unsigned workers);
int bench_nng_serve(const char *url, unsigned contexts);

#endif
