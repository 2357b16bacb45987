/*
 * haven-bench - benchmarks that print their figures. See each bench_*.c for its arguments.
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *args;
} benches[] = {
	{ "rpc", bench_rpc, "--serve URL [WORKERS] | URL THREADS CALLS SIZE [CONNS]" },
	{ "nng", bench_nng, "--serve URL [CONTEXTS] | URL INFLIGHT CALLS SIZE [CONNS]" },
	{ "compare", bench_compare, "[CALLS] [SIZE] [ROUNDS]" },
	{ "store", bench_store, "[N]" },
	{ "capacity", bench_capacity, "[SERVICES] [SECONDS] [THREADS]" },
	{ "consent", bench_consent, "[SUBJECTS] [SECONDS] [WORKERS] [durable] [cold]" },
	{ "referral", bench_referral, "[PEOPLE] [PROVIDERS] [THREADS]" },
	{ "kdf", bench_kdf, "[HASHES] [SECONDS]" },
	{ "json", bench_json, "[N]" },
	{ "http", bench_http, "[THREADS] [CALLS] [SIZE]" },
	{ "alerts", bench_alerts, "[N] [GAP_MS] [RECEIVER]" },
	{ "soak", bench_soak, "MINUTES [REFERRERS]" },
};

int
main(int argc, char **argv)
{
	if (argc >= 2) {
		for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++) {
			if (strcmp(argv[1], benches[i].name) == 0) {
				return (benches[i].fn(argc - 2, argv + 2));
			}
		}
	}
	fprintf(stderr, "usage:\n");
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++) {
		fprintf(stderr, "  haven-bench %s %s\n", benches[i].name, benches[i].args);
	}
	return (2);
}
