/*
 * consent_bench.c - Check() through the whole stack, against Echo on the same server.
 *
 *   haven-bench consent [SUBJECTS] [SECONDS] [WORKERS] [durable] [cold]
 *
 * Loads SUBJECTS (default 100000) subjects, each with sealed personal data and one signed
 * consent (share-with-provider and referral, to one provider, identity and contact), in
 * batched store_writes without RPC. Then serves the consent service over ipc:// (a 0700
 * directory) with WORKERS handler threads (default 8) and runs 8 clients, each with its own
 * channel, as the node's operator: Check() of random subjects and Diagnostics/Echo of 256
 * bytes, in alternating half-second slices, SECONDS (default 5) of each in all, on the same
 * server and channels.
 *
 * By default Check runs as the node runs it: its audit entries go through the audit writer
 * (check_audit = queued), and every subject is checked once before the measurement, so that
 * the consent service's cache holds every subject's view (a node that has run a while with no
 * consent changing). "durable" appends each Check's entry in a durable transaction of its own
 * instead (check_audit = durable). "cold" skips the warming: most Checks of the measurement
 * are then a subject's first and read the store. Also prints, on stderr, the process's CPU
 * time per call (all threads), the machine's idle share during each kind of slice
 * (/proc/stat) and the voluntary context switches per call, which tell CPU cost from waiting.
 * Prints
 *
 *   consent subjects=N checks_per_s=C check_p99_us=Y echo_per_s=E
 *
 * Every Check is audited (an append to the hash chain), and the store has its default options:
 * commits wait for fdatasync. The store lives in a fresh directory under $TMPDIR (or /tmp),
 * removed afterwards.
 */
#include "bench.h"

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "consent.h"

#include "haven/diag/v1/diag.pb-c.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CB_SUBJECTS 100000
#define CB_SECONDS  5
#define CB_WORKERS  8
#define CB_CLIENTS  8
#define CB_BATCH    500
#define CB_ECHO     256
#define CB_PROVIDER "shelter-a"
#define CB_SLICE_US 500000 /* Check and Echo alternate in slices of this */

typedef struct client {
	rpc_channel *cl_ch;
	char (*cl_ids)[CONSENT_ID_HEX];
	size_t    cl_nids;
	uint64_t  cl_rand;
	bool      cl_echo; /* this slice: Echo, else Check */
	bool      cl_warm; /* warming: Check each subject once (warm_next), then stop */
	int64_t   cl_until_us;
	size_t    cl_calls; /* calls answered in this slice */
	int64_t  *cl_lat;   /* Check latencies (us) over all slices */
	size_t    cl_nlat, cl_cap;
	size_t    cl_failed;
	size_t    cl_denied;
	size_t    cl_busy; /* answered RESOURCE_EXHAUSTED: backed off and tried again */
	hv_status cl_status;
} client;

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

	return ((x > y) - (x < y));
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

/* xorshift64: a fixed sequence per client, so runs are comparable. */
static uint64_t
next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return (*x);
}

/* ---- loading ---------------------------------------------------------------------------- */

typedef struct load_job {
	consent_service *lj_cs;
	char (*lj_ids)[CONSENT_ID_HEX];
	size_t lj_first, lj_n;
	char   lj_err[CONSENT_MSG_MAX];
} load_job;

static hv_status
load_fn(store_txn *txn, void *arg)
{
	static const rpc_caller          op     = { .role = RPC_ROLE_OPERATOR };
	load_job                        *j      = arg;
	Haven__Consent__V1__PersonalData p      = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__GrantRequest g      = HAVEN__CONSENT__V1__GRANT_REQUEST__INIT;
	Haven__Consent__V1__Purpose  purposes[] = { HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL,
		 HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER };
	Haven__Consent__V1__Category cats[]     = { HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY,
		    HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT };
	char                        *recips[]   = { CB_PROVIDER };
	char                        *langs[]    = { "ro", "en" };
	char                         name[64];
	hv_status                    st;

	p.name          = name;
	p.date_of_birth = "1990-06-15";
	p.nationality   = "Romanian";
	p.languages     = langs;
	p.n_languages   = 2;
	p.contact       = "+40 700 000 000";
	g.purposes      = purposes;
	g.n_purposes    = 2;
	g.recipients    = recips;
	g.n_recipients  = 1;
	g.categories    = cats;
	g.n_categories  = 2;
	g.given_by      = HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT;
	g.method        = HAVEN__CONSENT__V1__METHOD__METHOD_WRITTEN;
	g.language      = "ro";
	for (size_t i = j->lj_first; i < j->lj_first + j->lj_n; i++) {
		snprintf(name, sizeof(name), "Bench Person %zu", i);
		if ((st = consent_create_subject_txn(j->lj_cs, txn, &op, &p, false,
		         j->lj_ids[i])) != HV_OK) {
			return (st);
		}
		g.subject    = j->lj_ids[i];
		g.expires_ms = hv_clock_wall_ms() + 365LL * 86400000;
		if ((st = consent_grant_txn(j->lj_cs, txn, &op, &g, NULL, j->lj_err,
		         sizeof(j->lj_err))) != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

/* ---- clients ---------------------------------------------------------------------------- */

static void
lat_add(client *c, int64_t us)
{
	if (c->cl_nlat == c->cl_cap) {
		size_t   cap = c->cl_cap != 0 ? c->cl_cap * 2 : 65536;
		int64_t *p   = realloc(c->cl_lat, cap * sizeof(*p));
		if (p == NULL) {
			return;
		}
		c->cl_lat = p;
		c->cl_cap = cap;
	}
	c->cl_lat[c->cl_nlat++] = us;
}

static size_t warm_next; /* the next subject to warm (atomic) */

static void *
client_main(void *arg)
{
	client                          *c  = arg;
	rpc_call_options                 o  = { .timeout_ms = 10000 };
	Haven__Consent__V1__CheckRequest cr = HAVEN__CONSENT__V1__CHECK_REQUEST__INIT;
	Haven__Diag__V1__EchoRequest     er = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	uint8_t                          payload[CB_ECHO];

	memset(payload, 'x', sizeof(payload));
	er.payload.data = payload;
	er.payload.len  = sizeof(payload);
	cr.purpose      = HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER;
	cr.recipient    = CB_PROVIDER;
	cr.category     = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY;
	while (hv_clock_mono_us() < c->cl_until_us) {
		ProtobufCMessage *rep = NULL;
		int64_t           t0  = hv_clock_mono_us();
		hv_status         st;

		if (c->cl_echo) {
			st = rpc_channel_call(c->cl_ch, "haven.diag.v1.Diagnostics/Echo", &er.base,
			    &haven__diag__v1__echo_response__descriptor, &rep, &o, NULL, 0);
		} else if (c->cl_warm) {
			size_t k = __atomic_fetch_add(&warm_next, 1, __ATOMIC_RELAXED);
			if (k >= c->cl_nids) {
				break;
			}
			cr.subject = c->cl_ids[k];
			st = rpc_channel_call(c->cl_ch, "haven.consent.v1.Consent/Check", &cr.base,
			    &haven__consent__v1__check_response__descriptor, &rep, &o, NULL, 0);
		} else {
			cr.subject = c->cl_ids[next_rand(&c->cl_rand) % c->cl_nids];
			st = rpc_channel_call(c->cl_ch, "haven.consent.v1.Consent/Check", &cr.base,
			    &haven__consent__v1__check_response__descriptor, &rep, &o, NULL, 0);
		}
		if (st == HV_RESOURCE_EXHAUSTED) {
			/* Back-pressure (a full queue or an audit writer behind on a busy disk): a
			 * client backs off and tries again, as the server asks; it is not a
			 * failure. */
			c->cl_busy++;
			usleep(1000);
			continue;
		}
		if (st != HV_OK) {
			c->cl_failed++;
			c->cl_status = st;
			continue;
		}
		if (!c->cl_echo && !((Haven__Consent__V1__CheckResponse *) rep)->allowed) {
			c->cl_denied++;
		}
		protobuf_c_message_free_unpacked(rep, NULL);
		c->cl_calls++;
		if (!c->cl_echo) {
			lat_add(c, hv_clock_mono_us() - t0);
		}
	}
	return (NULL);
}

/* CPU time of the whole process (clients, server, audit writer), for a figure that a busy
 * machine disturbs less than calls per second: CPU microseconds per call. */
static int64_t check_cpu_us, echo_cpu_us;

static int64_t check_csw, echo_csw; /* voluntary context switches (all threads) */
static int64_t check_flt, echo_flt; /* minor page faults (all threads) */

static int64_t
minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t) ru.ru_minflt);
}

static int64_t
csw(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t) ru.ru_nvcsw);
}

static int64_t
cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The machine's idle and total CPU time so far (/proc/stat, in clock ticks); zeros when it
 * cannot be read. */
static void
machine_ticks(uint64_t *idle, uint64_t *total)
{
	unsigned long long v[8] = { 0 };
	FILE              *f    = fopen("/proc/stat", "r");

	*idle = *total = 0;
	if (f == NULL) {
		return;
	}
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	        &v[4], &v[5], &v[6], &v[7]) == 8) {
		*idle = v[3] + v[4];
		for (int i = 0; i < 8; i++) {
			*total += v[i];
		}
	}
	fclose(f);
}

static uint64_t check_idle, check_ticks, echo_idle, echo_ticks;

/* Runs every client for one slice of Check or Echo; adds the calls answered and the time
 * taken to *calls and *us. Returns the calls that failed (or, for Check, were denied). */
static size_t
run_slice(client *cl, int n, bool echo, int64_t slice_us, size_t *calls, int64_t *us)
{
	pthread_t th[CB_CLIENTS];
	int64_t   t0     = hv_clock_mono_us();
	size_t    failed = 0;
	int       started;
	int64_t   cpu0 = cpu_us(), csw0 = csw(), flt0 = minflt();
	uint64_t  idle0, total0, idle1, total1;

	machine_ticks(&idle0, &total0);

	for (started = 0; started < n; started++) {
		cl[started].cl_echo     = echo;
		cl[started].cl_calls    = 0;
		cl[started].cl_until_us = t0 + slice_us;
		if (pthread_create(&th[started], NULL, client_main, &cl[started]) != 0) {
			failed++;
			break;
		}
	}
	for (int i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		*calls += cl[i].cl_calls;
		failed += cl[i].cl_failed + cl[i].cl_denied;
	}
	*us += hv_clock_mono_us() - t0;
	machine_ticks(&idle1, &total1);
	if (echo) {
		echo_cpu_us += cpu_us() - cpu0;
		echo_csw += csw() - csw0;
		echo_flt += minflt() - flt0;
		echo_idle += idle1 - idle0;
		echo_ticks += total1 - total0;
	} else {
		check_cpu_us += cpu_us() - cpu0;
		check_csw += csw() - csw0;
		check_flt += minflt() - flt0;
		check_idle += idle1 - idle0;
		check_ticks += total1 - total0;
	}
	return (failed);
}

/* The 99th percentile of the Check latencies of every client, in us. */
static double
check_p99(client *cl, int n)
{
	int64_t *all;
	size_t   total = 0, o = 0;
	double   p;

	for (int i = 0; i < n; i++) {
		total += cl[i].cl_nlat;
	}
	if (total == 0 || (all = malloc(total * sizeof(*all))) == NULL) {
		return (0);
	}
	for (int i = 0; i < n; i++) {
		memcpy(all + o, cl[i].cl_lat, cl[i].cl_nlat * sizeof(*all));
		o += cl[i].cl_nlat;
	}
	qsort(all, total, sizeof(*all), cmp_i64);
	p = (double) all[total * 99 / 100];
	free(all);
	return (p);
}

int
bench_consent(int argc, char **argv)
{
	const char        *tmp = getenv("TMPDIR");
	char               dir[512], run[600], url[700];
	bool               made = false;
	store             *st   = NULL;
	consent_service   *cs   = NULL;
	rpc_server        *srv  = NULL;
	consent_options    co   = { 0 };
	rpc_server_options so   = { .name = "bench" };
	load_job           lj;
	long               n = CB_SUBJECTS, seconds = CB_SECONDS, workers = CB_WORKERS;
	client             cl[CB_CLIENTS];
	char(*ids)[CONSENT_ID_HEX] = NULL;
	size_t    checks = 0, echoes = 0, failed = 0;
	int64_t   check_us = 0, echo_us = 0;
	int64_t   t0;
	uint64_t  commits;
	hv_status rv;
	int       code = 1;
	bool      warm = true;

	memset(cl, 0, sizeof(cl));
	co.check_audit_async = true; /* the node's default, check_audit = queued */
	while (argc >= 1 &&
	    (strcmp(argv[argc - 1], "durable") == 0 || strcmp(argv[argc - 1], "cold") == 0)) {
		if (strcmp(argv[argc - 1], "durable") == 0) {
			co.check_audit_async = false;
		} else {
			warm = false;
		}
		argc--;
	}
	if ((argc >= 1 && parse_arg(argv[0], 1, 10000000, &n) != 0) ||
	    (argc >= 2 && parse_arg(argv[1], 1, 600, &seconds) != 0) ||
	    (argc >= 3 && parse_arg(argv[2], 1, 256, &workers) != 0) || argc > 3) {
		fprintf(stderr,
		    "usage: haven-bench consent [SUBJECTS] [SECONDS] [WORKERS] [durable] [cold]\n");
		return (2);
	}
	log_init("bench", LOG_LEVEL_WARN);
	if (tmp == NULL || tmp[0] == '\0') {
		tmp = "/tmp";
	}
	snprintf(dir, sizeof(dir), "%s/haven-consent-bench.XXXXXX", tmp);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "haven-bench: cannot create a directory under %s\n", tmp);
		goto out;
	}
	made = true;
	snprintf(run, sizeof(run), "%s/run", dir);
	snprintf(url, sizeof(url), "ipc://%s/consent.sock", run);
	if (mkdir(run, 0700) != 0) {
		goto out;
	}
	{
		char sdir[600];
		snprintf(sdir, sizeof(sdir), "%s/store", dir);
		if ((rv = store_open(&st, sdir, NULL)) != HV_OK) {
			fprintf(stderr, "haven-bench: cannot open the store: %s\n",
			    hv_status_name(rv));
			goto out;
		}
	}
	co.store    = st;
	co.data_dir = dir;
	if ((rv = consent_open(&cs, &co)) != HV_OK) {
		fprintf(stderr, "haven-bench: consent_open: %s\n", hv_status_name(rv));
		goto out;
	}
	if ((ids = calloc((size_t) n, sizeof(*ids))) == NULL) {
		goto out;
	}

	/* Load, without RPC. */
	t0 = hv_clock_mono_us();
	memset(&lj, 0, sizeof(lj));
	lj.lj_cs  = cs;
	lj.lj_ids = ids;
	for (size_t first = 0; first < (size_t) n; first += CB_BATCH) {
		lj.lj_first = first;
		lj.lj_n     = (size_t) n - first < CB_BATCH ? (size_t) n - first : CB_BATCH;
		if ((rv = store_write(st, load_fn, &lj)) != HV_OK) {
			fprintf(stderr, "haven-bench: load: %s %s\n", hv_status_name(rv),
			    lj.lj_err);
			goto out;
		}
	}
	fprintf(stderr, "haven-bench: loaded %ld subjects with a consent each in %.1f s\n", n,
	    (double) (hv_clock_mono_us() - t0) / 1e6);
	{
		/* The expiry sweep the service runs every minute, with nothing due (every consent
		 * expires in a year): its cost is the index's, not the number of consents. */
		unsigned applied = 0;

		t0 = hv_clock_mono_us();
		rv = consent_expiry_sweep(cs, &applied);
		fprintf(stderr, "haven-bench: an expiry sweep (%s, %u due) took %lld us\n",
		    hv_status_name(rv), applied, (long long) (hv_clock_mono_us() - t0));
	}

	so.workers = (unsigned) workers;
	if ((rv = rpc_server_open(&srv, &so)) != HV_OK ||
	    (rv = consent_register(cs, srv)) != HV_OK ||
	    (rv = rpc_server_listen(srv, url)) != HV_OK || (rv = rpc_server_start(srv)) != HV_OK) {
		fprintf(stderr, "haven-bench: server: %s\n", hv_status_name(rv));
		goto out;
	}
	for (int i = 0; i < CB_CLIENTS; i++) {
		if ((rv = rpc_channel_open(&cl[i].cl_ch, url, NULL)) != HV_OK) {
			fprintf(stderr, "haven-bench: channel: %s\n", hv_status_name(rv));
			goto out;
		}
		cl[i].cl_ids  = ids;
		cl[i].cl_nids = (size_t) n;
		cl[i].cl_rand = 0x9e3779b97f4a7c15ULL * (uint64_t) (i + 1);
	}
	/* Warm up: connect every channel and touch both paths. */
	(void) run_slice(cl, CB_CLIENTS, false, CB_SLICE_US, &checks, &check_us);
	(void) run_slice(cl, CB_CLIENTS, true, CB_SLICE_US, &echoes, &echo_us);
	if (warm) {
		/* Every subject checked once, so that each one's view is in the consent service's
		 * cache (the state of a node that has run for a while without consents changing).
		 */
		int64_t w0  = hv_clock_mono_us();
		size_t  wc  = 0;
		int64_t wus = 0;

		for (int i = 0; i < CB_CLIENTS; i++) {
			cl[i].cl_warm = true;
		}
		failed += run_slice(cl, CB_CLIENTS, false, INT64_MAX / 4, &wc, &wus);
		for (int i = 0; i < CB_CLIENTS; i++) {
			cl[i].cl_warm = false;
		}
		fprintf(stderr, "haven-bench: warmed: %zu checks, one per subject, in %.1f s\n", wc,
		    (double) (hv_clock_mono_us() - w0) / 1e6);
	}
	for (int i = 0; i < CB_CLIENTS; i++) {
		cl[i].cl_nlat = cl[i].cl_failed = cl[i].cl_denied = 0;
	}

	/* Check and Echo in alternating slices, SECONDS of each in all: the drift of a shared
	 * machine (other tenants, clock frequency) then weighs on both alike. */
	checks = echoes = 0;
	check_us = echo_us = 0;
	check_cpu_us = echo_cpu_us = 0;
	check_idle = check_ticks = echo_idle = echo_ticks = 0;
	check_csw = echo_csw = 0;
	check_flt = echo_flt = 0;
	commits              = store_commit_count(st);
	for (long i = 0; i < seconds * 1000000 / CB_SLICE_US; i++) {
		failed += run_slice(cl, CB_CLIENTS, false, CB_SLICE_US, &checks, &check_us);
		failed += run_slice(cl, CB_CLIENTS, true, CB_SLICE_US, &echoes, &echo_us);
	}
	commits = store_commit_count(st) - commits;
	{
		size_t busy = 0;
		for (int i = 0; i < CB_CLIENTS; i++) {
			busy += cl[i].cl_busy;
		}
		if (busy > 0) {
			fprintf(stderr,
			    "haven-bench: %zu calls answered RESOURCE_EXHAUSTED and were tried "
			    "again after 1 ms\n",
			    busy);
		}
	}
	if (failed > 0 || checks == 0 || echoes == 0) {
		for (int i = 0; i < CB_CLIENTS; i++) {
			if (cl[i].cl_failed > 0) {
				fprintf(stderr, "haven-bench: client %d: %s\n", i,
				    hv_status_name(cl[i].cl_status));
			}
		}
		fprintf(stderr, "haven-bench: %zu calls failed or checks were denied\n", failed);
		goto out;
	}
	fprintf(stderr,
	    "haven-bench: %zu checks in %llu commits (%.1f per commit), %ld workers, audit %s\n",
	    checks, (unsigned long long) commits,
	    commits > 0 ? (double) checks / (double) commits : 0.0, workers,
	    co.check_audit_async ? "queued" : "durable, in each Check's transaction");
	fprintf(stderr,
	    "haven-bench: CPU per call (all threads): check %.1f us, echo %.1f us; minor page "
	    "faults per call: check %.2f, echo %.2f\n",
	    (double) check_cpu_us / (double) checks, (double) echo_cpu_us / (double) echoes,
	    (double) check_flt / (double) checks, (double) echo_flt / (double) echoes);
	fprintf(stderr,
	    "haven-bench: machine idle: %.0f%% during checks, %.0f%% during echoes; voluntary "
	    "context switches per call: check %.2f, echo %.2f\n",
	    check_ticks > 0 ? 100.0 * (double) check_idle / (double) check_ticks : 0.0,
	    echo_ticks > 0 ? 100.0 * (double) echo_idle / (double) echo_ticks : 0.0,
	    (double) check_csw / (double) checks, (double) echo_csw / (double) echoes);
	printf("consent subjects=%ld checks_per_s=%.0f check_p99_us=%.0f echo_per_s=%.0f\n", n,
	    (double) checks * 1e6 / (double) check_us, check_p99(cl, CB_CLIENTS),
	    (double) echoes * 1e6 / (double) echo_us);
	fflush(stdout);
	code = 0;
out:
	for (int i = 0; i < CB_CLIENTS; i++) {
		rpc_channel_close(cl[i].cl_ch);
		free(cl[i].cl_lat);
	}
	consent_stop(cs);
	rpc_server_close(srv);
	consent_close(cs);
	store_close(st);
	free(ids);
	if (made) {
		remove_tree(dir);
	}
	return (code);
}
