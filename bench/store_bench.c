/*
 * store_bench.c - durable puts and random gets on the LMDB store, from one thread, then
 * durable puts from many threads at once (group commit).
 *
 *   haven-bench store [N]      N puts (default 2000), each its own durable store_write of a
 *                              256-byte value, then N gets of random keys, each in its own
 *                              read transaction; prints
 *       store puts=N put_per_s=X put_p50_us=A put_p99_us=B gets=N get_per_s=Y get_p50_us=C
 *       get_p99_us=D
 *                              then 16 threads do the same durable puts for 3 seconds, each
 *                              store_write waiting for the commit that carries it; prints
 *       store_concurrent threads=16 puts_per_s=X put_p50_us=A put_p99_us=B commits_per_s=C
 *
 * The store lives in a fresh directory under $TMPDIR (or /tmp), removed afterwards; its
 * options are the defaults, so every put waits for fdatasync like a real write does.
 */
#include "bench.h"

#include "haven/clock.h"
#include "haven/store.h"

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STORE_BENCH_DEFAULT_N 2000
#define STORE_BENCH_MAX_N     10000000L
#define STORE_BENCH_VALUE     256
#define STORE_BENCH_THREADS   16
#define STORE_BENCH_CONC_NS   ((int64_t) 3 * 1000000000) /* how long the threads put */
#define STORE_BENCH_LAT_MAX   ((size_t) 1 << 22)         /* latencies kept per thread */

typedef struct put_job {
	store_table pj_table;
	char        pj_key[16];
	uint8_t     pj_val[STORE_BENCH_VALUE];
} put_job;

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a;
	int64_t y = *(const int64_t *) b;

	return ((x > y) - (x < y));
}

/* The q-th percentile (0..100) of n sorted latencies, in microseconds. */
static double
pct_us(const int64_t *sorted, size_t n, unsigned q)
{
	size_t i = n * q / 100;

	if (i >= n) {
		i = n - 1;
	}
	return ((double) sorted[i] / 1000.0);
}

static hv_status
put_fn(store_txn *txn, void *arg)
{
	put_job *j = arg;

	return (store_put(txn, j->pj_table, j->pj_key, strlen(j->pj_key), j->pj_val,
	    sizeof(j->pj_val)));
}

/* xorshift64: a fixed sequence, so runs are comparable. */
static uint64_t
next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return (*x);
}

/* The concurrent writers wait here until the clock starts (or the bench is called off). */
typedef struct conc_start {
	pthread_mutex_t cs_lock;
	pthread_cond_t  cs_cond;
	bool            cs_go;
	int64_t         cs_until; /* monotonic ns; written before cs_go */
} conc_start;

/* One of the concurrent writers: puts its own keys until cs_until. */
typedef struct conc_worker {
	store      *cw_store;
	conc_start *cw_start;
	int         cw_who;
	put_job     cw_job;
	int64_t    *cw_ns; /* latency of each put, grown as needed */
	size_t      cw_n;
	size_t      cw_cap;
	hv_status   cw_rv; /* the failure that stopped it */
} conc_worker;

static void *
conc_main(void *arg)
{
	conc_worker *w = arg;
	int64_t     *grown;
	int64_t      until;

	pthread_mutex_lock(&w->cw_start->cs_lock);
	while (!w->cw_start->cs_go) {
		pthread_cond_wait(&w->cw_start->cs_cond, &w->cw_start->cs_lock);
	}
	until = w->cw_start->cs_until;
	pthread_mutex_unlock(&w->cw_start->cs_lock);

	while (hv_clock_mono_ns() < until && w->cw_n < STORE_BENCH_LAT_MAX) {
		int64_t t = hv_clock_mono_ns();
		snprintf(w->cw_job.pj_key, sizeof(w->cw_job.pj_key), "t%02d-%08zu", w->cw_who,
		    w->cw_n);
		if ((w->cw_rv = store_write(w->cw_store, put_fn, &w->cw_job)) != HV_OK) {
			break;
		}
		if (w->cw_n == w->cw_cap) {
			size_t cap = w->cw_cap == 0 ? 4096 : w->cw_cap * 2;
			if ((grown = realloc(w->cw_ns, cap * sizeof(*grown))) == NULL) {
				w->cw_rv = HV_RESOURCE_EXHAUSTED;
				break;
			}
			w->cw_ns  = grown;
			w->cw_cap = cap;
		}
		w->cw_ns[w->cw_n++] = hv_clock_mono_ns() - t;
	}
	return (NULL);
}

/* STORE_BENCH_THREADS threads put durably for STORE_BENCH_CONC_NS; prints their line. */
static int
bench_concurrent(store *s, const put_job *proto)
{
	conc_start  start = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 };
	conc_worker w[STORE_BENCH_THREADS];
	pthread_t   th[STORE_BENCH_THREADS];
	int64_t    *all = NULL;
	int64_t     t0;
	int64_t     total_ns;
	uint64_t    commits;
	size_t      n       = 0;
	int         started = 0;
	int         code    = 1;

	memset(w, 0, sizeof(w));
	for (int i = 0; i < STORE_BENCH_THREADS; i++) {
		w[i].cw_store = s;
		w[i].cw_start = &start;
		w[i].cw_who   = i;
		w[i].cw_job   = *proto;
		w[i].cw_rv    = HV_OK;
		if (pthread_create(&th[i], NULL, conc_main, &w[i]) != 0) {
			break;
		}
		started++;
	}
	commits = store_commit_count(s);
	t0      = hv_clock_mono_ns();
	pthread_mutex_lock(&start.cs_lock);
	/* Called off (an already passed deadline) when not every thread started. */
	start.cs_until = started == STORE_BENCH_THREADS ? t0 + STORE_BENCH_CONC_NS : t0;
	start.cs_go    = true;
	pthread_cond_broadcast(&start.cs_cond);
	pthread_mutex_unlock(&start.cs_lock);
	for (int i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
	}
	total_ns = hv_clock_mono_ns() - t0;
	commits  = store_commit_count(s) - commits;
	if (started < STORE_BENCH_THREADS) {
		fprintf(stderr, "haven-bench: cannot start %d threads\n", STORE_BENCH_THREADS);
		goto out;
	}

	for (int i = 0; i < STORE_BENCH_THREADS; i++) {
		if (w[i].cw_rv != HV_OK) {
			fprintf(stderr, "haven-bench: concurrent put: %s\n",
			    hv_status_name(w[i].cw_rv));
			goto out;
		}
		n += w[i].cw_n;
	}
	if (n == 0 || (all = calloc(n, sizeof(*all))) == NULL) {
		fprintf(stderr, "haven-bench: no concurrent puts\n");
		goto out;
	}
	n = 0;
	for (int i = 0; i < STORE_BENCH_THREADS; i++) {
		memcpy(all + n, w[i].cw_ns, w[i].cw_n * sizeof(*all));
		n += w[i].cw_n;
	}
	qsort(all, n, sizeof(*all), cmp_i64);
	printf("store_concurrent threads=%d puts_per_s=%.0f put_p50_us=%.1f put_p99_us=%.1f "
	       "commits_per_s=%.0f\n",
	    STORE_BENCH_THREADS, (double) n * 1e9 / (double) total_ns, pct_us(all, n, 50),
	    pct_us(all, n, 99), (double) commits * 1e9 / (double) total_ns);
	code = 0;
out:
	for (int i = 0; i < STORE_BENCH_THREADS; i++) {
		free(w[i].cw_ns);
	}
	free(all);
	return (code);
}

/* Removes the files of the bench directory (the store's two files) and the directory. */
static void
remove_dir(const char *dir)
{
	DIR           *d;
	struct dirent *e;
	char           path[1024];

	if ((d = opendir(dir)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
				snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
				(void) unlink(path);
			}
		}
		closedir(d);
	}
	(void) rmdir(dir);
}

int
bench_store(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR");
	char        dir[512];
	bool        made = false;
	store      *s    = NULL;
	put_job     job;
	int64_t    *put_ns = NULL;
	int64_t    *get_ns = NULL;
	int64_t     t0;
	int64_t     put_total;
	int64_t     get_total;
	uint64_t    rnd = 0x9e3779b97f4a7c15ULL;
	size_t      n   = STORE_BENCH_DEFAULT_N;
	hv_status   rv;
	int         code = 1;

	if (argc >= 1) {
		char *end;
		long  v = strtol(argv[0], &end, 10);
		if (*end != '\0' || v < 1 || v > STORE_BENCH_MAX_N) {
			fprintf(stderr, "usage: haven-bench store [N]  (1..%ld)\n",
			    STORE_BENCH_MAX_N);
			return (2);
		}
		n = (size_t) v;
	}
	if (tmp == NULL || tmp[0] == '\0') {
		tmp = "/tmp";
	}
	snprintf(dir, sizeof(dir), "%s/haven-store-bench.XXXXXX", tmp);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "haven-bench: cannot create a directory under %s\n", tmp);
		goto out;
	}
	made = true;
	if ((put_ns = calloc(n, sizeof(*put_ns))) == NULL ||
	    (get_ns = calloc(n, sizeof(*get_ns))) == NULL) {
		fprintf(stderr, "haven-bench: out of memory\n");
		goto out;
	}
	if ((rv = store_open(&s, dir, NULL)) != HV_OK ||
	    (rv = store_table_open(s, "bench", &job.pj_table)) != HV_OK) {
		fprintf(stderr, "haven-bench: cannot open the store: %s\n", hv_status_name(rv));
		goto out;
	}
	for (size_t i = 0; i < sizeof(job.pj_val); i++) {
		job.pj_val[i] = (uint8_t) (i * 31);
	}

	t0 = hv_clock_mono_ns();
	for (size_t i = 0; i < n; i++) {
		int64_t t = hv_clock_mono_ns();
		snprintf(job.pj_key, sizeof(job.pj_key), "k%08zu", i);
		if ((rv = store_write(s, put_fn, &job)) != HV_OK) {
			fprintf(stderr, "haven-bench: put %zu: %s\n", i, hv_status_name(rv));
			goto out;
		}
		put_ns[i] = hv_clock_mono_ns() - t;
	}
	put_total = hv_clock_mono_ns() - t0;

	t0 = hv_clock_mono_ns();
	for (size_t i = 0; i < n; i++) {
		int64_t     t = hv_clock_mono_ns();
		store_txn  *txn;
		const void *v;
		size_t      vl;
		char        key[16];

		snprintf(key, sizeof(key), "k%08zu", (size_t) (next_rand(&rnd) % n));
		if ((rv = store_read_begin(s, &txn)) != HV_OK) {
			fprintf(stderr, "haven-bench: read: %s\n", hv_status_name(rv));
			goto out;
		}
		rv = store_get(txn, job.pj_table, key, strlen(key), &v, &vl);
		store_read_end(txn);
		if (rv != HV_OK || vl != STORE_BENCH_VALUE) {
			fprintf(stderr, "haven-bench: get %s: %s\n", key, hv_status_name(rv));
			goto out;
		}
		get_ns[i] = hv_clock_mono_ns() - t;
	}
	get_total = hv_clock_mono_ns() - t0;

	qsort(put_ns, n, sizeof(*put_ns), cmp_i64);
	qsort(get_ns, n, sizeof(*get_ns), cmp_i64);
	printf("store puts=%zu put_per_s=%.0f put_p50_us=%.1f put_p99_us=%.1f gets=%zu "
	       "get_per_s=%.0f get_p50_us=%.1f get_p99_us=%.1f\n",
	    n, (double) n * 1e9 / (double) put_total, pct_us(put_ns, n, 50), pct_us(put_ns, n, 99),
	    n, (double) n * 1e9 / (double) get_total, pct_us(get_ns, n, 50), pct_us(get_ns, n, 99));
	fflush(stdout);
	code = bench_concurrent(s, &job);
out:
	store_close(s);
	if (made) {
		remove_dir(dir);
	}
	free(put_ns);
	free(get_ns);
	return (code);
}
