/*
 * kdf_bench.c - the cost of a person's login credentials: password hashes at the current
 * scrypt costs, and TOTP verifications.
 *
 *   haven-bench kdf [HASHES] [SECONDS]   HASHES password hashes (default 10) with crypto_pwhash,
 *                                        one after another, then crypto_totp_verify calls (a
 *                                        wrong code, so every step of the window is computed)
 *                                        for SECONDS (default 1); prints
 *       kdf alg=scrypt ln=L r=R p=P hashes=N hash_ms=M hash_max_ms=X hash_cpu_ms=C mem_kib=K
 *       rss_peak_kib=S totp_verify_per_s=V
 *
 * hash_ms is the median and hash_max_ms the slowest hash (wall clock), hash_cpu_ms the median
 * CPU time of the hashing thread (what a hash costs on a machine shared with others);
 * mem_kib is what scrypt allocates for one hash (128 * r * (2^ln + p + 2) bytes) and
 * rss_peak_kib how much the process's peak resident size grew while hashing (getrusage), so
 * the two can be compared.
 */
#include "bench.h"

#include "haven/clock.h"
#include "haven/crypto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define KDF_BENCH_MAX_HASHES 1000

/* CPU time of the calling thread: a hash's own cost, whatever else the machine runs. */
static int64_t
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ((int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec);
}

static long
maxrss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_maxrss); /* KiB on Linux */
}

static int
parse_arg(const char *s, long min, long max, long *out)
{
	char *end;
	long  v = strtol(s, &end, 10);

	if (*end == '\0' && end != s && v >= min && v <= max) {
		*out = v;
		return (0);
	}
	return (-1);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a;
	int64_t y = *(const int64_t *) b;

	return ((x > y) - (x < y));
}

/* TOTP verifications per second of a wrong code over seconds; -1 on an unexpected status. */
static long
totp_rate(long seconds)
{
	uint8_t  secret[CRYPTO_TOTP_SECRET_LEN];
	uint64_t step;
	int64_t  start = hv_clock_mono_ns();
	int64_t  end   = start + seconds * 1000000000;
	int64_t  t     = start;
	long     n     = 0;

	if (crypto_random(secret, sizeof(secret)) != HV_OK) {
		return (-1);
	}
	while (t < end) {
		for (int i = 0; i < 100; i++, n++) {
			/* A wrong code in practice (one chance in 10^6 per step to match). */
			hv_status st = crypto_totp_verify(&step, secret, sizeof(secret), "000000",
			    6, 1700000000 + n, 0);
			if (st != HV_UNAUTHENTICATED && st != HV_OK) {
				return (-1);
			}
		}
		t = hv_clock_mono_ns();
	}
	crypto_wipe(secret, sizeof(secret));
	return ((long) ((double) n * 1e9 / (double) (t - start)));
}

int
bench_kdf(int argc, char **argv)
{
	char     enc[CRYPTO_PWHASH_MAX];
	int64_t  ns[KDF_BENCH_MAX_HASHES];
	int64_t  cpu[KDF_BENCH_MAX_HASHES];
	long     hashes  = 10;
	long     seconds = 1;
	long     rss0;
	long     rate;
	uint64_t mem = (uint64_t) 128 * CRYPTO_PWHASH_R *
	    (((uint64_t) 1 << CRYPTO_PWHASH_LN) + CRYPTO_PWHASH_P + 2);

	if ((argc >= 1 && parse_arg(argv[0], 1, KDF_BENCH_MAX_HASHES, &hashes) != 0) ||
	    (argc >= 2 && parse_arg(argv[1], 1, 600, &seconds) != 0) || argc > 2) {
		fprintf(stderr, "usage: haven-bench kdf [HASHES] [SECONDS]  (1..%d, 1..600)\n",
		    KDF_BENCH_MAX_HASHES);
		return (2);
	}
	rss0 = maxrss_kib();
	for (long i = 0; i < hashes; i++) {
		int64_t t0 = hv_clock_mono_ns();
		int64_t c0 = cpu_ns();
		if (crypto_pwhash(enc, "correct horse battery staple", 28) != HV_OK) {
			fprintf(stderr, "haven-bench: crypto_pwhash failed\n");
			return (1);
		}
		cpu[i] = cpu_ns() - c0;
		ns[i]  = hv_clock_mono_ns() - t0;
	}
	qsort(ns, (size_t) hashes, sizeof(ns[0]), cmp_i64);
	qsort(cpu, (size_t) hashes, sizeof(cpu[0]), cmp_i64);
	if ((rate = totp_rate(seconds)) < 0) {
		fprintf(stderr, "haven-bench: crypto_totp_verify failed\n");
		return (1);
	}
	printf("kdf alg=scrypt ln=%d r=%d p=%d hashes=%ld hash_ms=%.1f hash_max_ms=%.1f "
	       "hash_cpu_ms=%.1f mem_kib=%llu rss_peak_kib=%ld totp_verify_per_s=%ld\n",
	    CRYPTO_PWHASH_LN, CRYPTO_PWHASH_R, CRYPTO_PWHASH_P, hashes,
	    (double) ns[hashes / 2] / 1e6, (double) ns[hashes - 1] / 1e6,
	    (double) cpu[hashes / 2] / 1e6, (unsigned long long) (mem / 1024), maxrss_kib() - rss0,
	    rate);
	return (0);
}
