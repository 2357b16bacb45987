/*
 * soak_bench.c - a real haven-node under a mixed partner load for minutes (issue 17).
 *
 *   haven-bench soak MINUTES [REFERRERS]
 *
 * Makes a PKI with deploy/pki.sh and a fresh data directory under $TMPDIR (or /tmp), starts
 * the haven-node of this build (HAVEN_NODE overrides the path) and sets up, with the haven CLI
 * (HAVEN_CLI), a referrer, two shelters, a municipality and 20 subjects with consent. Then
 * runs, for MINUTES (1..1440) over ipc://, each client on its own channel signed in with its
 * organisation's key (auth_login, again every 200 calls): REFERRERS (default 2) referrers
 * creating referrals with idempotency keys and checking consent, two shelters listing their
 * open offers, accepting one, marking it placed and freeing a place again, and a municipality
 * asking for statistics and the summary. Every call must answer OK. Prints per method
 *
 *   soak method=M calls=N errors=E p50_us=X p99_us=Y
 *
 * and one summary line
 *
 *   soak minutes=M calls=N calls_per_s=R errors=E rss_kb_start=A rss_kb_warm=B rss_kb_end=C
 *        anon_kb_start=.. anon_kb_warm=.. anon_kb_end=.. anon_growth_after_warmup_pct=G
 *        store_bytes=S fds_start=F fds_end=H
 *
 * RSS, anonymous memory and fds are the node's (/proc), warm = after the first minute (or a
 * tenth of a shorter run), store = data.mdb's size on disk at the end. RSS counts the pages of
 * the store's map LMDB has touched, so it grows with the store; a leak shows in RssAnon (heap
 * and stacks). anon_kb_warm and anon_kb_end are means of a sample a second over the minute
 * after warm-up and over the last minute (tenths of a shorter run), since the allocator's
 * free memory comes and goes within a minute. Samples go to stderr once a minute. Exit 0 when
 * no call failed, 1 otherwise. SIGINT or SIGTERM ends it early without figures, its node
 * stopped and its directory removed; a SIGKILL leaves the directory, and the node ends with it.
 */
#include "bench.h"

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/pbjson.h"
#include "haven/rpc.h"

#include "haven/capacity/v1/capacity.pb-c.h"
#include "haven/consent/v1/consent.pb-c.h"
#include "haven/referral/v1/referral.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SUBJECTS     20
#define RELOGIN      200
#define MAX_CLIENTS  16
#define CALL_TIMEOUT 30000

enum { M_LOGIN, M_CREATE, M_CHECK, M_LIST, M_ACCEPT, M_PLACED, M_FREE, M_STATS, M_SUMMARY, M_N };

static const struct {
	const char                       *name;
	const char                       *method;
	const ProtobufCMessageDescriptor *req, *rep;
} methods[M_N] = {
	[M_LOGIN]   = { "Login", NULL, NULL, NULL },
	[M_CREATE]  = { "CreateReferral", "haven.referral.v1.Referrals/CreateReferral",
	     &haven__referral__v1__create_referral_request__descriptor,
	     &haven__referral__v1__referral__descriptor },
	[M_CHECK]   = { "Consent.Check", "haven.consent.v1.Consent/Check",
	      &haven__consent__v1__check_request__descriptor,
	      &haven__consent__v1__check_response__descriptor },
	[M_LIST]    = { "ListOffers", "haven.referral.v1.Referrals/ListOffers",
	       &haven__referral__v1__list_offers_request__descriptor,
	       &haven__referral__v1__list_offers_response__descriptor },
	[M_ACCEPT]  = { "AcceptOffer", "haven.referral.v1.Referrals/AcceptOffer",
	     &haven__referral__v1__offer_action_request__descriptor,
	     &haven__referral__v1__offer__descriptor },
	[M_PLACED]  = { "MarkPlaced", "haven.referral.v1.Referrals/MarkPlaced",
	     &haven__referral__v1__placement_request__descriptor,
	     &haven__referral__v1__offer__descriptor },
	[M_FREE]    = { "ChangeAvailability", "haven.capacity.v1.Capacity/ChangeAvailability",
	       &haven__capacity__v1__change_availability_request__descriptor,
	       &haven__capacity__v1__service_view__descriptor },
	[M_STATS]   = { "Statistics", "haven.referral.v1.Referrals/Statistics",
	      &haven__referral__v1__statistics_request__descriptor,
	      &haven__referral__v1__statistics_response__descriptor },
	[M_SUMMARY] = { "Summary", "haven.capacity.v1.Capacity/Summary",
	    &haven__capacity__v1__summary_request__descriptor,
	    &haven__capacity__v1__summary_response__descriptor },
};

/* Latencies of one method in one client, grown as needed. */
typedef struct lat {
	int64_t *l_us;
	size_t   l_n, l_cap;
	unsigned l_err;
} lat;

typedef struct soak {
	char        s_dir[512];
	char        s_url[700];
	char        s_subjects[SUBJECTS][128];
	char        s_period[16];
	pid_t       s_node;
	atomic_bool s_stop;
} soak;

typedef enum { K_REFERRER, K_SHELTER, K_MUNI } kind;

typedef struct client {
	pthread_t    c_thread;
	soak        *c_soak;
	kind         c_kind;
	const char  *c_org;
	const char  *c_service; /* a shelter's own service */
	unsigned     c_id;
	unsigned     c_seed;
	rpc_channel *c_ch;
	char        *c_key; /* the organisation's private key (PEM) */
	size_t       c_keylen;
	unsigned     c_calls;
	unsigned     c_since; /* calls since the last sign-in */
	lat          c_lat[M_N];
	char         c_err[RPC_ERRMSG_MAX];
} client;

static const char *const orgs[] = { "soak-ngo", "soak-shelter-a", "soak-shelter-b", "soak-muni" };

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

	return ((x > y) - (x < y));
}

static void
lat_add(lat *l, int64_t us, bool ok)
{
	if (!ok) {
		l->l_err++;
	}
	if (l->l_n == l->l_cap) {
		size_t   cap = l->l_cap ? l->l_cap * 2 : 1024;
		int64_t *n   = realloc(l->l_us, cap * sizeof(*n));
		if (n == NULL) {
			return;
		}
		l->l_us  = n;
		l->l_cap = cap;
	}
	l->l_us[l->l_n++] = us;
}

/* Runs a shell command; 0 when it exited 0. Its output goes to out (when not NULL, up to
 * outsz bytes, the last newline cut). */
static int
run(const char *cmd, char *out, size_t outsz)
{
	FILE  *f = popen(cmd, "r");
	size_t n = 0;

	if (f == NULL) {
		return (-1);
	}
	if (out != NULL) {
		n      = fread(out, 1, outsz - 1, f);
		out[n] = '\0';
		while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) {
			out[--n] = '\0';
		}
	} else {
		char buf[512];
		while (fread(buf, 1, sizeof(buf), f) > 0) {
		}
	}
	return (pclose(f) == 0 ? 0 : -1);
}

/* One call: the request from JSON, the reply freed unless out takes it. */
static bool
call(client *c, int m, const char *json, ProtobufCMessage **out)
{
	ProtobufCMessage *req = NULL, *rep = NULL;
	rpc_call_options  o = { .timeout_ms = CALL_TIMEOUT };
	char              key[64];
	int64_t           t0;
	hv_status         st;

	if ((st = pbjson_decode(methods[m].req, json, strlen(json), NULL, NULL, &req, c->c_err,
	         sizeof(c->c_err))) != HV_OK) {
		fprintf(stderr, "soak: %s: bad request %s: %s\n", methods[m].name, json, c->c_err);
		lat_add(&c->c_lat[m], 0, false);
		return (false);
	}
	if (m == M_CREATE) {
		snprintf(key, sizeof(key), "soak-%u-%u", c->c_id, c->c_calls);
		o.idempotency_key = key;
	}
	t0 = hv_clock_mono_us();
	st = rpc_channel_call(c->c_ch, methods[m].method, req, methods[m].rep, &rep, &o, c->c_err,
	    sizeof(c->c_err));
	lat_add(&c->c_lat[m], hv_clock_mono_us() - t0, st == HV_OK);
	protobuf_c_message_free_unpacked(req, NULL);
	if (st != HV_OK) {
		if (c->c_lat[m].l_err <= 3) {
			fprintf(stderr, "soak: %s as %s: %s: %s\n", methods[m].name, c->c_org,
			    hv_status_name(st), c->c_err);
		}
		return (false);
	}
	c->c_calls++;
	c->c_since++;
	if (out != NULL) {
		*out = rep;
	} else {
		protobuf_c_message_free_unpacked(rep, NULL);
	}
	return (true);
}

static bool
login(client *c)
{
	int64_t   t0 = hv_clock_mono_us();
	hv_status st = auth_login(c->c_ch, c->c_org, c->c_key, c->c_keylen, CALL_TIMEOUT, c->c_err,
	    sizeof(c->c_err));

	lat_add(&c->c_lat[M_LOGIN], hv_clock_mono_us() - t0, st == HV_OK);
	if (st != HV_OK) {
		fprintf(stderr, "soak: login as %s: %s: %s\n", c->c_org, hv_status_name(st),
		    c->c_err);
	}
	return (st == HV_OK);
}

/* A shelter: its newest open offer accepted and the person placed, then a place freed. */
static void
shelter_step(client *c)
{
	ProtobufCMessage                        *rep = NULL;
	Haven__Referral__V1__ListOffersResponse *lo;
	char                                     json[256];

	if (!call(c, M_LIST, "{\"openOnly\": true, \"pageSize\": 5}", &rep)) {
		return;
	}
	lo = (Haven__Referral__V1__ListOffersResponse *) rep;
	if (lo->n_offers > 0) {
		snprintf(json, sizeof(json), "{\"offerId\": \"%s\"}", lo->offers[0]->id);
		if (call(c, M_ACCEPT, json, NULL) && call(c, M_PLACED, json, NULL)) {
			snprintf(json, sizeof(json), "{\"serviceId\": \"%s\", \"delta\": 1}",
			    c->c_service);
			(void) call(c, M_FREE, json, NULL);
		}
	} else {
		usleep(20000);
	}
	protobuf_c_message_free_unpacked(rep, NULL);
}

static void *
client_main(void *arg)
{
	client *c = arg;
	soak   *s = c->c_soak;
	char    json[512];

	while (!atomic_load(&s->s_stop)) {
		if (c->c_lat[M_LOGIN].l_n == 0 || c->c_since >= RELOGIN) {
			c->c_since = 0;
			if (!login(c)) {
				sleep(1);
				continue;
			}
		}
		switch (c->c_kind) {
		case K_REFERRER: {
			const char *subj = s->s_subjects[rand_r(&c->c_seed) % SUBJECTS];
			snprintf(json, sizeof(json),
			    "{\"subject\": \"%s\", \"urgency\": \"URGENT\", \"exploitation\": "
			    "\"LABOUR\", \"needs\": [{\"type\": \"SHELTER\", \"population\": "
			    "\"WOMEN\"}]}",
			    subj);
			(void) call(c, M_CREATE, json, NULL);
			snprintf(json, sizeof(json),
			    "{\"subject\": \"%s\", \"purpose\": \"PURPOSE_REFERRAL\"}", subj);
			(void) call(c, M_CHECK, json, NULL);
			break;
		}
		case K_SHELTER:
			shelter_step(c);
			break;
		case K_MUNI:
			snprintf(json, sizeof(json), "{\"period\": \"%s\"}", s->s_period);
			(void) call(c, M_STATS, json, NULL);
			(void) call(c, M_SUMMARY, "{}", NULL);
			usleep(100000);
			break;
		}
	}
	return (NULL);
}

/* ---- the node ------------------------------------------------------------------------------ */

/* A field of /proc/PID/status in kB: VmRSS (all resident pages, LMDB's mapped file included)
 * or RssAnon (the heap and stacks: what a leak grows). */
static long
proc_kb(pid_t pid, const char *field)
{
	char  path[64], line[256];
	long  kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
	if ((f = fopen(path, "re")) == NULL) {
		return (-1);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, field, strlen(field)) == 0 &&
		    sscanf(line + strlen(field), " %ld kB", &kb) == 1) {
			break;
		}
	}
	fclose(f);
	return (kb);
}

static long
proc_fds(pid_t pid)
{
	char           path[64];
	long           n = 0;
	DIR           *d;
	struct dirent *e;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
	if ((d = opendir(path)) == NULL) {
		return (-1);
	}
	while ((e = readdir(d)) != NULL) {
		n += e->d_name[0] != '.';
	}
	closedir(d);
	return (n);
}

static const char *
path_of(const char *env, const char *def)
{
	const char *v = getenv(env);

	return (v != NULL && v[0] != '\0' ? v : def);
}

static int
start_node(soak *s)
{
	char log[600], data[600], url[700], ca[600], cert[600], key[600];
	int  status;

	snprintf(log, sizeof(log), "%s/node.log", s->s_dir);
	snprintf(data, sizeof(data), "%s/data", s->s_dir);
	snprintf(url, sizeof(url), "ipc://%s/data/run/haven.sock", s->s_dir);
	snprintf(ca, sizeof(ca), "%s/pki/ca.pem", s->s_dir);
	snprintf(cert, sizeof(cert), "%s/pki/server.pem", s->s_dir);
	snprintf(key, sizeof(key), "%s/pki/server.key", s->s_dir);
	snprintf(s->s_url, sizeof(s->s_url), "%s", url);
	if (mkdir(data, 0700) != 0) {
		return (-1);
	}
	if ((s->s_node = bench_fork()) == 0) {
		FILE *f = freopen(log, "a", stdout);
		if (f == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0) {
			_exit(127);
		}
		execl(path_of("HAVEN_NODE", HAVEN_NODE_PATH), "haven-node", "--data-dir", data,
		    "--listen", url, "--tls-ca", ca, "--tls-cert", cert, "--tls-key", key,
		    (char *) NULL);
		_exit(127);
	}
	if (s->s_node < 0) {
		return (-1);
	}
	for (int i = 0; i < 300; i++) {
		char cmd[1400];
		snprintf(cmd, sizeof(cmd), "'%s' --url '%s' --timeout 1000 health 2>/dev/null",
		    path_of("HAVEN_CLI", HAVEN_CLI_PATH), url);
		if (run(cmd, NULL, 0) == 0) {
			return (0);
		}
		if (waitpid(s->s_node, &status, WNOHANG) == s->s_node) {
			s->s_node = 0;
			return (-1);
		}
		usleep(50000);
	}
	return (-1);
}

/* PKI, organisations, services and subjects with consent, through deploy/pki.sh and the CLI. */
static int
setup(soak *s)
{
	const char        *cli = path_of("HAVEN_CLI", HAVEN_CLI_PATH);
	const char        *pki = path_of("HAVEN_PKI_SH", HAVEN_SOURCE_DIR "/deploy/pki.sh");
	char               cmd[4096], out[256], id[sizeof(s->s_subjects[0])];
	static const char *roles[]   = { "referrer", "provider", "provider", "municipality" };
	static const char *regions[] = { "Rotterdam", "Rotterdam", "Zeeland-West-Brabant",
		"Rotterdam" };

	snprintf(cmd, sizeof(cmd),
	    "sh '%s' '%s/pki' ca && sh '%s' '%s/pki' server localhost && for o in %s %s %s %s; "
	    "do sh '%s' '%s/pki' client $o || exit 1; done",
	    pki, s->s_dir, pki, s->s_dir, orgs[0], orgs[1], orgs[2], orgs[3], pki, s->s_dir);
	if (run(cmd, NULL, 0) != 0) {
		fprintf(stderr, "soak: %s failed\n", pki);
		return (-1);
	}
	if (start_node(s) != 0) {
		fprintf(stderr, "soak: the node did not start (log: %s/node.log)\n", s->s_dir);
		return (-1);
	}
	for (int i = 0; i < 4; i++) {
		snprintf(cmd, sizeof(cmd),
		    "'%s' --url '%s' org register %s --name %s --role %s --region %s --cert "
		    "'%s/pki/%s.pem'",
		    cli, s->s_url, orgs[i], orgs[i], roles[i], regions[i], s->s_dir, orgs[i]);
		if (run(cmd, NULL, 0) != 0) {
			fprintf(stderr, "soak: cannot register %s\n", orgs[i]);
			return (-1);
		}
	}
	for (int i = 1; i <= 2; i++) {
		snprintf(cmd, sizeof(cmd),
		    "'%s' --url '%s' service register --id svc-%s --org %s --type shelter --region "
		    "%s --population women,men --total 100000 --available 50 --contact desk",
		    cli, s->s_url, orgs[i], orgs[i], regions[i]);
		if (run(cmd, NULL, 0) != 0) {
			fprintf(stderr, "soak: cannot register the service of %s\n", orgs[i]);
			return (-1);
		}
	}
	for (int i = 0; i < SUBJECTS; i++) {
		char as[2048];
		snprintf(as, sizeof(as), "'%s' --url '%s' --org %s --key '%s/pki/%s.key'", cli,
		    s->s_url, orgs[0], s->s_dir, orgs[0]);
		snprintf(cmd, sizeof(cmd), "%s subject create --name 'Soak Person' --language nl",
		    as);
		if (run(cmd, id, sizeof(id)) != 0 || id[0] == '\0') {
			fprintf(stderr, "soak: cannot create a subject\n");
			return (-1);
		}
		snprintf(cmd, sizeof(cmd),
		    "%s consent grant %s --purpose referral,share-with-provider "
		    "--accepting-provider "
		    "--category identity,contact --given-by subject --method verbal --language nl",
		    as, id);
		if (run(cmd, out, sizeof(out)) != 0) {
			fprintf(stderr, "soak: cannot grant consent\n");
			return (-1);
		}
		snprintf(s->s_subjects[i], sizeof(s->s_subjects[i]), "%s", id);
	}
	return (0);
}

static void
report(client *cl, unsigned n, int minutes, const long rss[3], const long anon[3], long fd0,
    long fd1, const soak *s, unsigned *errors)
{
	uint64_t    all = 0;
	char        path[600];
	struct stat sb;

	*errors = 0;
	for (int m = 0; m < M_N; m++) {
		size_t   k = 0, at = 0;
		unsigned err = 0;
		int64_t *v;
		for (unsigned i = 0; i < n; i++) {
			k += cl[i].c_lat[m].l_n;
			err += cl[i].c_lat[m].l_err;
		}
		if (k == 0 || (v = malloc(k * sizeof(*v))) == NULL) {
			continue;
		}
		for (unsigned i = 0; i < n; i++) {
			memcpy(v + at, cl[i].c_lat[m].l_us, cl[i].c_lat[m].l_n * sizeof(*v));
			at += cl[i].c_lat[m].l_n;
		}
		qsort(v, k, sizeof(*v), cmp_i64);
		printf("soak method=%s calls=%zu errors=%u p50_us=%lld p99_us=%lld\n",
		    methods[m].name, k, err, (long long) v[(k - 1) / 2],
		    (long long) v[(k * 99 + 99) / 100 - 1]);
		free(v);
		all += k;
		*errors += err;
	}
	snprintf(path, sizeof(path), "%s/data/store/data.mdb", s->s_dir);
	printf("soak minutes=%d calls=%llu calls_per_s=%.0f errors=%u rss_kb_start=%ld "
	       "rss_kb_warm=%ld rss_kb_end=%ld anon_kb_start=%ld anon_kb_warm=%ld anon_kb_end=%ld "
	       "anon_growth_after_warmup_pct=%.1f store_bytes=%lld fds_start=%ld fds_end=%ld\n",
	    minutes, (unsigned long long) all, (double) all / (minutes * 60.0), *errors, rss[0],
	    rss[1], rss[2], anon[0], anon[1], anon[2],
	    anon[1] > 0 ? 100.0 * (double) (anon[2] - anon[1]) / (double) anon[1] : 0.0,
	    stat(path, &sb) == 0 ? (long long) sb.st_blocks * 512 : -1LL, fd0, fd1);
}

static int
read_key(client *c, const soak *s)
{
	char  path[700];
	FILE *f;
	long  n;

	snprintf(path, sizeof(path), "%s/pki/%s.key", s->s_dir, c->c_org);
	if ((f = fopen(path, "re")) == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (c->c_key = malloc((size_t) n + 1)) == NULL ||
	    fread(c->c_key, 1, (size_t) n, f) != (size_t) n) {
		if (f != NULL) {
			fclose(f);
		}
		return (-1);
	}
	fclose(f);
	c->c_key[n] = '\0';
	c->c_keylen = (size_t) n;
	return (0);
}

/* SIGINT or SIGTERM: the soak stops early, with no figures, and still stops its node and
 * removes its directory (a store of a gigabyte after ten minutes). */
static volatile sig_atomic_t soak_interrupted;

static void
soak_interrupt(int sig)
{
	(void) sig;
	soak_interrupted = 1;
}

int
bench_soak(int argc, char **argv)
{
	static soak s;
	client      cl[MAX_CLIENTS];
	unsigned    n = 0, referrers = 2, errors = 0;
	long        minutes, rss0 = -1, rssw = -1, rss1 = -1, fd0 = -1, fd1 = -1;
	long        anon[3]  = { -1, -1, -1 }; /* RssAnon at the start, after warm-up, at the end */
	long        warm_sum = 0, warm_n = 0, end_sum = 0, end_n = 0;
	const char *base = getenv("TMPDIR");
	char       *end;
	char        cmd[700];
	time_t      now = time(NULL);
	struct tm   tm;
	int64_t     t0, warm_ms;
	int         ret     = 1, status;
	struct sigaction sa = { 0 };

	memset(cl, 0, sizeof(cl));
	if (argc < 1 || argc > 2 || (minutes = strtol(argv[0], &end, 10), *end != '\0') ||
	    minutes < 1 || minutes > 1440) {
		fprintf(stderr,
		    "usage: haven-bench soak MINUTES [REFERRERS]: MINUTES is 1..1440\n");
		return (2);
	}
	if (argc == 2) {
		long r = strtol(argv[1], &end, 10);
		if (*end != '\0' || r < 1 || r > MAX_CLIENTS - 3) {
			fprintf(stderr,
			    "usage: haven-bench soak MINUTES [REFERRERS]: REFERRERS is 1..%d\n",
			    MAX_CLIENTS - 3);
			return (2);
		}
		referrers = (unsigned) r;
	}
	log_init("bench", LOG_LEVEL_WARN);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sa.sa_mask);
	/* The main loop looks at the flag after every sleep(1), which a signal ends early;
	 * SA_RESTART keeps the setup's reads of its tools' output whole. */
	sa.sa_handler = soak_interrupt;
	sa.sa_flags   = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* Statistics answer finished periods: last month. */
	now -= 32 * 86400;
	gmtime_r(&now, &tm);
	strftime(s.s_period, sizeof(s.s_period), "%Y-%m", &tm);
	snprintf(s.s_dir, sizeof(s.s_dir), "%s/haven-soak-XXXXXX", base != NULL ? base : "/tmp");
	if (strlen(s.s_dir) > 70 || mkdtemp(s.s_dir) == NULL) {
		fprintf(stderr, "soak: cannot make a directory under %s (a short path: ipc://)\n",
		    base != NULL ? base : "/tmp");
		return (1);
	}
	if (setup(&s) != 0) {
		goto stop; /* its node may be running */
	}
	for (unsigned i = 0; i < referrers + 3; i++) {
		client *c = &cl[n];
		c->c_soak = &s;
		c->c_id   = i;
		c->c_seed = 17 + i;
		if (i < referrers) {
			c->c_kind = K_REFERRER;
			c->c_org  = orgs[0];
		} else if (i < referrers + 2) {
			c->c_kind    = K_SHELTER;
			c->c_org     = orgs[1 + i - referrers];
			c->c_service = i == referrers ? "svc-soak-shelter-a" : "svc-soak-shelter-b";
		} else {
			c->c_kind = K_MUNI;
			c->c_org  = orgs[3];
		}
		if (read_key(c, &s) != 0 || rpc_channel_open(&c->c_ch, s.s_url, NULL) != HV_OK) {
			fprintf(stderr, "soak: cannot open a channel for %s\n", c->c_org);
			goto stop;
		}
		n++;
	}
	rss0    = proc_kb(s.s_node, "VmRSS:");
	anon[0] = proc_kb(s.s_node, "RssAnon:");
	fd0     = proc_fds(s.s_node);
	for (unsigned i = 0; i < n; i++) {
		if (pthread_create(&cl[i].c_thread, NULL, client_main, &cl[i]) != 0) {
			atomic_store(&s.s_stop, true);
			for (unsigned k = 0; k < i; k++) {
				pthread_join(cl[k].c_thread, NULL);
			}
			n = i;
			goto stop;
		}
	}
	t0      = hv_clock_mono_ms();
	warm_ms = minutes >= 10 ? 60000 : minutes * 6000;
	for (long el = 0; el < minutes * 60000 && !soak_interrupted; el = hv_clock_mono_ms() - t0) {
		long a;
		sleep(1);
		el = hv_clock_mono_ms() - t0;
		a  = proc_kb(s.s_node, "RssAnon:");
		if (rssw < 0 && el >= warm_ms) {
			rssw = proc_kb(s.s_node, "VmRSS:");
		}
		/* Anonymous memory is averaged over a window after warm-up and over the last one
		 * (each warm_ms long, a sample a second): the allocator's arenas rise and fall
		 * within a minute (the node gives free memory back every minute, host_wait), and
		 * one sample each would measure where in that cycle it fell. */
		if (a >= 0 && el >= warm_ms && el < 2 * warm_ms) {
			warm_sum += a;
			warm_n++;
		}
		if (a >= 0 && el >= minutes * 60000 - warm_ms) {
			end_sum += a;
			end_n++;
		}
		if ((el / 1000) % 60 == 0) {
			fprintf(stderr,
			    "soak: %ld min: node rss %ld kB (anonymous %ld kB), %ld fds\n",
			    el / 60000, proc_kb(s.s_node, "VmRSS:"), proc_kb(s.s_node, "RssAnon:"),
			    proc_fds(s.s_node));
		}
	}
	rss1    = proc_kb(s.s_node, "VmRSS:");
	anon[1] = warm_n > 0 ? warm_sum / warm_n : -1;
	anon[2] = end_n > 0 ? end_sum / end_n : -1;
	fd1     = proc_fds(s.s_node);
	atomic_store(&s.s_stop, true);
	for (unsigned i = 0; i < n; i++) {
		pthread_join(cl[i].c_thread, NULL);
	}
	if (soak_interrupted) {
		fprintf(stderr, "soak: interrupted after %lld s: no figures\n",
		    (long long) (hv_clock_mono_ms() - t0) / 1000);
		goto stop;
	}
	report(cl, n, (int) minutes, (long[]) { rss0, rssw, rss1 }, anon, fd0, fd1, &s, &errors);
	ret = errors == 0 ? 0 : 1;
stop:
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		rpc_channel_close(cl[i].c_ch);
		free(cl[i].c_key);
		for (int m = 0; m < M_N; m++) {
			free(cl[i].c_lat[m].l_us);
		}
	}
	if (s.s_node > 0) {
		kill(s.s_node, SIGTERM);
		if (waitpid(s.s_node, &status, 0) == s.s_node &&
		    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			fprintf(stderr, "soak: the node did not stop cleanly\n");
			ret = 1;
		}
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s.s_dir);
	(void) run(cmd, NULL, 0);
	return (ret);
}
