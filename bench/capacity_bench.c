/*
 * capacity_bench.c - the capacity registry under load, on a durable store.
 *
 *   haven-bench capacity [SERVICES] [SECONDS] [THREADS]
 *
 * Loads SERVICES (default 10000) services of mixed types and populations over the ten Dutch
 * police regions (500 per write transaction), then measures
 *   - the aggregate query: what Summary does on the server (a read transaction and
 *     cap_summary over every region), 2000 times in this process, for p50 and p99;
 *   - durable UpdateAvailability calls through the whole RPC stack (inproc://, 16 handler
 *     threads): THREADS (default 16) clients, each on services of its own, for SECONDS
 *     (default 5), each call based on the version the previous reply gave; every call is
 *     acknowledged only after its commit was synced (group commit shares the syncs).
 * and prints one line:
 *   capacity services=N query_p50_us=X query_p99_us=Y updates_per_s=U update_p99_us=Z
 *
 * The store lives in a fresh directory under $TMPDIR (or /tmp), removed afterwards.
 */
#include "bench.h"

#include "capacity.h"
#include "haven/clock.h"
#include "haven/log.h"

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CAP_BENCH_SERVICES 10000
#define CAP_BENCH_SECONDS  5
#define CAP_BENCH_THREADS  16
#define CAP_BENCH_BATCH    500
#define CAP_BENCH_QUERIES  2000
#define CAP_BENCH_MAX_THR  64
#define CAP_BENCH_URL      "inproc://haven-bench-capacity"
#define CAP_BENCH_PER_THR  4 /* services each client cycles through */

typedef Haven__Capacity__V1__Service service_t;

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a;
	int64_t y = *(const int64_t *) b;

	return ((x > y) - (x < y));
}

/* The q-th percentile (0..100) of n sorted latencies in ns, in microseconds. */
static double
pct_us(const int64_t *sorted, size_t n, unsigned q)
{
	size_t i = n * q / 100;

	if (n == 0) {
		return (0);
	}
	if (i >= n) {
		i = n - 1;
	}
	return ((double) sorted[i] / 1000.0);
}

static void
remove_tree(const char *dir)
{
	DIR           *d;
	struct dirent *e;
	char           path[1024];

	if ((d = opendir(dir)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
				snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
				if (unlink(path) != 0) {
					remove_tree(path);
				}
			}
		}
		closedir(d);
	}
	(void) rmdir(dir);
}

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct load_job {
	cap_service      *lj_cs;
	const region_map *lj_map;
	size_t            lj_first;
	size_t            lj_n;
	char              lj_err[256];
} load_job;

static hv_status
load_orgs_fn(store_txn *txn, void *arg)
{
	load_job *j = arg;

	for (size_t r = 0; r < region_map_count(j->lj_map); r++) {
		Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
		char                              id[32];
		hv_status                         st;

		snprintf(id, sizeof(id), "provider-%02zu", r);
		o.id     = id;
		o.name   = "Bench provider";
		o.role   = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
		o.region = (char *) region_map_name(j->lj_map, r);
		if ((st = cap_add_organisation(j->lj_cs, txn, &o, j->lj_err, sizeof(j->lj_err))) !=
		    HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

static hv_status
load_services_fn(store_txn *txn, void *arg)
{
	static Haven__Capacity__V1__Population pops[][2] = {
		{ HAVEN__CAPACITY__V1__POPULATION__WOMEN, HAVEN__CAPACITY__V1__POPULATION__MINORS },
		{ HAVEN__CAPACITY__V1__POPULATION__MEN, HAVEN__CAPACITY__V1__POPULATION__WOMEN },
		{ HAVEN__CAPACITY__V1__POPULATION__FAMILIES,
		    HAVEN__CAPACITY__V1__POPULATION__MINORS },
		{ HAVEN__CAPACITY__V1__POPULATION__NON_BINARY,
		    HAVEN__CAPACITY__V1__POPULATION__MEN },
	};
	static char *langs[] = { "nl", "en", "ro", "pl" };
	load_job    *j       = arg;
	size_t       nreg    = region_map_count(j->lj_map);

	for (size_t i = j->lj_first; i < j->lj_first + j->lj_n; i++) {
		service_t s = HAVEN__CAPACITY__V1__SERVICE__INIT;
		char      id[32], org[32], got[CAP_ID_MAX];
		hv_status st;

		snprintf(id, sizeof(id), "svc-%06zu", i);
		snprintf(org, sizeof(org), "provider-%02zu", i % nreg);
		s.id                 = id;
		s.org_id             = org;
		s.name               = "Bench service";
		s.type               = (Haven__Capacity__V1__ServiceType) (1 + (i / nreg) % 6);
		s.service_area       = (char *) region_map_name(j->lj_map, i % nreg);
		s.populations        = pops[(i / 7) % 4];
		s.n_populations      = 1 + i % 2;
		s.languages          = langs;
		s.n_languages        = 1 + i % 4;
		s.maximum            = (uint32_t) (5 + i % 40);
		s.available          = (uint32_t) (i % (s.maximum + 1));
		s.report_interval_s  = i % 5 == 0 ? 3600 : 86400;
		s.front_door_contact = "intake desk";
		if ((st = cap_add_service(j->lj_cs, txn, &s, got, j->lj_err, sizeof(j->lj_err))) !=
		    HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

/* ---- the update clients ------------------------------------------------------------------- */

typedef struct client {
	rpc_channel *cl_ch;
	size_t       cl_first; /* its services: cl_first + k * stride */
	size_t       cl_stride;
	int64_t      cl_until_ns;
	int64_t     *cl_lat;
	size_t       cl_n;
	size_t       cl_cap;
	unsigned     cl_failed;
	hv_status    cl_status;
} client;

static void *
client_main(void *arg)
{
	client  *cl = arg;
	uint64_t version[CAP_BENCH_PER_THR];
	uint32_t avail[CAP_BENCH_PER_THR];
	char     ids[CAP_BENCH_PER_THR][32];
	unsigned k = 0;

	for (unsigned i = 0; i < CAP_BENCH_PER_THR; i++) {
		snprintf(ids[i], sizeof(ids[i]), "svc-%06zu", cl->cl_first + i * cl->cl_stride);
		version[i] = 1; /* as loaded */
		avail[i]   = 0;
	}
	while (hv_clock_mono_ns() < cl->cl_until_ns) {
		Haven__Capacity__V1__UpdateAvailabilityRequest req =
		    HAVEN__CAPACITY__V1__UPDATE_AVAILABILITY_REQUEST__INIT;
		ProtobufCMessage *rep = NULL;
		rpc_call_options  o   = { .timeout_ms = 30000 };
		int64_t           t0;
		hv_status         st;

		req.service_id = ids[k];
		req.available = avail[k] = (avail[k] + 1) % 5;
		req.based_on_version     = version[k];
		t0                       = hv_clock_mono_ns();
		st = rpc_channel_call(cl->cl_ch, "haven.capacity.v1.Capacity/UpdateAvailability",
		    &req.base, &haven__capacity__v1__service_view__descriptor, &rep, &o, NULL, 0);
		if (st != HV_OK) {
			cl->cl_status = st;
			cl->cl_failed++;
			break;
		}
		version[k] = ((Haven__Capacity__V1__ServiceView *) rep)->service->version;
		protobuf_c_message_free_unpacked(rep, NULL);
		if (cl->cl_n == cl->cl_cap) {
			size_t   cap = cl->cl_cap == 0 ? 4096 : cl->cl_cap * 2;
			int64_t *p   = realloc(cl->cl_lat, cap * sizeof(*p));
			if (p == NULL) {
				cl->cl_status = HV_RESOURCE_EXHAUSTED;
				cl->cl_failed++;
				break;
			}
			cl->cl_lat = p;
			cl->cl_cap = cap;
		}
		cl->cl_lat[cl->cl_n++] = hv_clock_mono_ns() - t0;
		k                      = (k + 1) % CAP_BENCH_PER_THR;
	}
	return (NULL);
}

static int
parse_arg(const char *s, long min, long max, long *out)
{
	char *end;
	long  v = strtol(s, &end, 10);

	if (*end != '\0' || v < min || v > max) {
		return (-1);
	}
	*out = v;
	return (0);
}

int
bench_capacity(int argc, char **argv)
{
	const char        *tmp = getenv("TMPDIR");
	char               dir[512];
	bool               made = false;
	store             *st   = NULL;
	region_map        *map  = NULL;
	cap_service       *cs   = NULL;
	rpc_server        *srv  = NULL;
	cap_options        co   = { 0 };
	rpc_server_options so   = { .workers = 16, .name = "bench" };
	load_job           lj;
	long               n        = CAP_BENCH_SERVICES;
	long               seconds  = CAP_BENCH_SECONDS;
	long               nthreads = CAP_BENCH_THREADS;
	int64_t           *qlat     = NULL;
	int64_t           *all      = NULL;
	client             cl[CAP_BENCH_MAX_THR];
	pthread_t          th[CAP_BENCH_MAX_THR];
	size_t             total = 0;
	int64_t            t0, elapsed;
	hv_status          rv;
	int                code = 1;

	memset(cl, 0, sizeof(cl));
	if ((argc >= 1 && parse_arg(argv[0], 100, 1000000, &n) != 0) ||
	    (argc >= 2 && parse_arg(argv[1], 1, 600, &seconds) != 0) ||
	    (argc >= 3 && parse_arg(argv[2], 1, CAP_BENCH_MAX_THR, &nthreads) != 0) || argc > 3 ||
	    n < nthreads * CAP_BENCH_PER_THR) {
		fprintf(stderr,
		    "usage: haven-bench capacity [SERVICES 100..1000000] [SECONDS 1..600] "
		    "[THREADS 1..%d]\n",
		    CAP_BENCH_MAX_THR);
		return (2);
	}
	log_init("bench", LOG_LEVEL_WARN);
	if (tmp == NULL || tmp[0] == '\0') {
		tmp = "/tmp";
	}
	snprintf(dir, sizeof(dir), "%s/haven-capacity-bench.XXXXXX", tmp);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "haven-bench: cannot create a directory under %s\n", tmp);
		goto out;
	}
	made = true;
	if ((rv = store_open(&st, dir, NULL)) != HV_OK ||
	    (rv = region_map_default(&map)) != HV_OK) {
		fprintf(stderr, "haven-bench: cannot open the store: %s\n", hv_status_name(rv));
		goto out;
	}
	co.store         = st;
	co.regions       = map;
	co.manual_expiry = true;
	if ((rv = cap_open(&cs, &co)) != HV_OK) {
		fprintf(stderr, "haven-bench: cap_open: %s\n", hv_status_name(rv));
		goto out;
	}

	/* Load. */
	memset(&lj, 0, sizeof(lj));
	lj.lj_cs  = cs;
	lj.lj_map = map;
	if ((rv = store_write(st, load_orgs_fn, &lj)) != HV_OK) {
		fprintf(stderr, "haven-bench: organisations: %s %s\n", hv_status_name(rv),
		    lj.lj_err);
		goto out;
	}
	for (size_t first = 0; first < (size_t) n; first += CAP_BENCH_BATCH) {
		lj.lj_first = first;
		lj.lj_n =
		    (size_t) n - first < CAP_BENCH_BATCH ? (size_t) n - first : CAP_BENCH_BATCH;
		if ((rv = store_write(st, load_services_fn, &lj)) != HV_OK) {
			fprintf(stderr, "haven-bench: services: %s %s\n", hv_status_name(rv),
			    lj.lj_err);
			goto out;
		}
	}

	/* (a) The aggregate, as the Summary handler computes it. */
	if ((qlat = calloc(CAP_BENCH_QUERIES, sizeof(*qlat))) == NULL) {
		goto out;
	}
	for (size_t i = 0; i < CAP_BENCH_QUERIES; i++) {
		store_txn *txn;
		cap_cell  *cells = NULL;
		size_t     ncell;

		t0 = hv_clock_mono_ns();
		if ((rv = store_read_begin(st, &txn)) != HV_OK) {
			fprintf(stderr, "haven-bench: read: %s\n", hv_status_name(rv));
			goto out;
		}
		rv = cap_summary(cs, txn, 0, cap_now_ms(cs), &cells, &ncell);
		store_read_end(txn);
		free(cells);
		if (rv != HV_OK || ncell == 0) {
			fprintf(stderr, "haven-bench: summary: %s\n", hv_status_name(rv));
			goto out;
		}
		qlat[i] = hv_clock_mono_ns() - t0;
	}
	qsort(qlat, CAP_BENCH_QUERIES, sizeof(*qlat), cmp_i64);

	/* (b) Durable updates from concurrent clients through RPC. */
	if ((rv = rpc_server_open(&srv, &so)) != HV_OK || (rv = cap_register(cs, srv)) != HV_OK ||
	    (rv = rpc_server_listen(srv, CAP_BENCH_URL)) != HV_OK ||
	    (rv = rpc_server_start(srv)) != HV_OK) {
		fprintf(stderr, "haven-bench: server: %s\n", hv_status_name(rv));
		goto out;
	}
	for (long i = 0; i < nthreads; i++) {
		if ((rv = rpc_channel_open(&cl[i].cl_ch, CAP_BENCH_URL, NULL)) != HV_OK) {
			fprintf(stderr, "haven-bench: channel: %s\n", hv_status_name(rv));
			goto out;
		}
		cl[i].cl_first  = (size_t) i;
		cl[i].cl_stride = (size_t) nthreads;
	}
	t0 = hv_clock_mono_ns();
	for (long i = 0; i < nthreads; i++) {
		cl[i].cl_until_ns = t0 + (int64_t) seconds * 1000000000;
		if (pthread_create(&th[i], NULL, client_main, &cl[i]) != 0) {
			nthreads = i;
			fprintf(stderr, "haven-bench: cannot start client threads\n");
			break;
		}
	}
	for (long i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		total += cl[i].cl_n;
	}
	elapsed = hv_clock_mono_ns() - t0;
	for (long i = 0; i < nthreads; i++) {
		if (cl[i].cl_failed > 0) {
			fprintf(stderr, "haven-bench: client %ld: %s\n", i,
			    hv_status_name(cl[i].cl_status));
			goto out;
		}
	}
	if (total == 0 || (all = malloc(total * sizeof(*all))) == NULL) {
		goto out;
	}
	total = 0;
	for (long i = 0; i < nthreads; i++) {
		memcpy(all + total, cl[i].cl_lat, cl[i].cl_n * sizeof(*all));
		total += cl[i].cl_n;
	}
	qsort(all, total, sizeof(*all), cmp_i64);

	printf("capacity services=%ld query_p50_us=%.1f query_p99_us=%.1f updates_per_s=%.0f "
	       "update_p99_us=%.1f\n",
	    n, pct_us(qlat, CAP_BENCH_QUERIES, 50), pct_us(qlat, CAP_BENCH_QUERIES, 99),
	    (double) total * 1e9 / (double) elapsed, pct_us(all, total, 99));
	fflush(stdout);
	code = 0;
out:
	for (long i = 0; i < CAP_BENCH_MAX_THR; i++) {
		rpc_channel_close(cl[i].cl_ch);
		free(cl[i].cl_lat);
	}
	rpc_server_close(srv);
	cap_close(cs);
	store_close(st);
	region_map_free(map);
	if (made) {
		remove_tree(dir);
	}
	free(qlat);
	free(all);
	return (code);
}
