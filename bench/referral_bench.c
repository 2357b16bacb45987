/*
 * referral_bench.c - a raid: many people found at once, each referred with a shelter and a
 * legal-aid need, routed over thousands of provider services in one go.
 *
 *   haven-bench referral [PEOPLE] [PROVIDERS] [THREADS] [nosync]
 *
 * PEOPLE (default 200) CreateReferral calls, each with a shelter need and a legal-aid need, a
 * random population and language and one random excluded region, from THREADS (default 8)
 * client threads at once over inproc:// to a server with the referral service, with
 * organisation tokens as partners use them. PROVIDERS (default 2000) services, half shelters
 * and half legal aid, spread over the ten default regions, 20% of them full. Routing is
 * synchronous: a need is offered (a place held) or waiting when its CreateReferral returns, so
 * the time until every need is routed is the time until the last call returned; the bench
 * checks that every need is offered or waiting. Prints
 *
 *   referral people=P needs=N providers=S all_routed_ms=T create_p50_us=X create_p99_us=Y
 *
 * and on stderr how many needs were offered and how many wait. The store lives in a fresh
 * directory under $TMPDIR (or /tmp), removed afterwards, and commits durably (fdatasync)
 * like a node's does; "nosync" leaves the fdatasync out (store_options.no_sync), to tell how
 * much of the latency is the disk's (never how a node runs).
 */
#include "bench.h"

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/regions.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "capacity.h"
#include "referral.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PEOPLE    200
#define DEFAULT_PROVIDERS 2000
#define DEFAULT_THREADS   8
#define SERVICES_PER_ORG  10
#define FULL_PERCENT      20
#define REFERRER_ORG      "bench-ngo"
#define REFERRER_REGION   "Amsterdam"
#define URL               "inproc://bench-referral"

static const char *const langs[] = { "nl", "en", "ro", "pl", "bg", "ar", "uk", "vi" };
#define N_LANGS (sizeof(langs) / sizeof(langs[0]))

typedef struct setup_job {
	cap_service      *sj_cs;
	const region_map *sj_regions;
	unsigned          sj_from, sj_to; /* services [from, to) */
	unsigned          sj_seed;
} setup_job;

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a;
	int64_t y = *(const int64_t *) b;

	return ((x > y) - (x < y));
}

/* Removes the store's files and the directory (no subdirectories are made). */
static void
remove_dir(const char *dir)
{
	DIR           *d = opendir(dir);
	struct dirent *e;
	char           path[1024];

	if (d != NULL) {
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

static hv_status
consent_allow(void *arg, store_txn *txn, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, const char *recipient, bool accepting, bool *allowed)
{
	*allowed = true;
	return (HV_OK);
}

/* The referrer and one provider organisation per SERVICES_PER_ORG services. */
static hv_status
orgs_fn(store_txn *txn, void *arg)
{
	setup_job                        *j = arg;
	Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	char                              id[32], err[256];
	hv_status                         st;

	o.id     = REFERRER_ORG;
	o.name   = "bench referrer";
	o.role   = HAVEN__CAPACITY__V1__ROLE__REFERRER;
	o.region = REFERRER_REGION;
	if ((st = cap_add_organisation(j->sj_cs, txn, &o, err, sizeof(err))) != HV_OK) {
		fprintf(stderr, "referral bench: %s\n", err);
		return (st);
	}
	for (unsigned i = 0; i < j->sj_to; i += SERVICES_PER_ORG) {
		snprintf(id, sizeof(id), "prov-%04u", i / SERVICES_PER_ORG);
		o.id     = id;
		o.name   = id;
		o.role   = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
		o.region = (char *) region_map_name(j->sj_regions,
		    (i / SERVICES_PER_ORG) % region_map_count(j->sj_regions));
		if ((st = cap_add_organisation(j->sj_cs, txn, &o, err, sizeof(err))) != HV_OK) {
			fprintf(stderr, "referral bench: %s\n", err);
			return (st);
		}
	}
	return (HV_OK);
}

static hv_status
services_fn(store_txn *txn, void *arg)
{
	setup_job *j    = arg;
	unsigned   seed = j->sj_seed;
	char       err[256], id[CAP_ID_MAX], sid[32], org[32];
	hv_status  st;

	for (unsigned i = j->sj_from; i < j->sj_to; i++) {
		Haven__Capacity__V1__Service    s       = HAVEN__CAPACITY__V1__SERVICE__INIT;
		Haven__Capacity__V1__Population pops[2] = { HAVEN__CAPACITY__V1__POPULATION__WOMEN,
			HAVEN__CAPACITY__V1__POPULATION__MEN };
		Haven__Capacity__V1__Exploitation spec =
		    (Haven__Capacity__V1__Exploitation) (1 + rand_r(&seed) % 4);
		char *l[2] = { "nl", (char *) langs[1 + rand_r(&seed) % (N_LANGS - 1)] };

		snprintf(sid, sizeof(sid), "svc-bench-%05u", i);
		snprintf(org, sizeof(org), "prov-%04u", i / SERVICES_PER_ORG);
		s.id           = sid;
		s.org_id       = org;
		s.name         = sid;
		s.type         = i % 2 == 0 ? HAVEN__CAPACITY__V1__SERVICE_TYPE__SHELTER
		                            : HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID;
		s.service_area = (char *) region_map_name(j->sj_regions,
		    (i / SERVICES_PER_ORG) % region_map_count(j->sj_regions));
		/* A shelter takes women or men (a third both); legal aid everyone. */
		if (s.type == HAVEN__CAPACITY__V1__SERVICE_TYPE__SHELTER &&
		    rand_r(&seed) % 3 != 0) {
			s.n_populations = 1;
			pops[0] = rand_r(&seed) % 2 == 0 ? HAVEN__CAPACITY__V1__POPULATION__WOMEN
			                                 : HAVEN__CAPACITY__V1__POPULATION__MEN;
		} else {
			s.n_populations = 2;
		}
		s.populations       = pops;
		s.n_languages       = 2;
		s.languages         = l;
		s.n_specialisations = 1;
		s.specialisations   = &spec;
		s.maximum           = 10;
		s.available = rand_r(&seed) % 100 < FULL_PERCENT ? 0 : 1 + rand_r(&seed) % 5;
		s.front_door_contact = "intake desk";
		if ((st = cap_add_service(j->sj_cs, txn, &s, id, err, sizeof(err))) != HV_OK) {
			fprintf(stderr, "referral bench: %s\n", err);
			return (st);
		}
	}
	return (HV_OK);
}

typedef struct client {
	pthread_t         c_thread;
	rpc_channel      *c_ch;
	unsigned          c_first, c_count; /* people [first, first + count) */
	unsigned          c_seed;
	int64_t          *c_lat;
	unsigned          c_failed;
	const region_map *c_regions;
	atomic_int       *c_start;
} client;

static void *
client_main(void *arg)
{
	client *c = arg;

	while (atomic_load(c->c_start) == 0) {
	}
	for (unsigned i = 0; i < c->c_count; i++) {
		Haven__Referral__V1__CreateReferralRequest req =
		    HAVEN__REFERRAL__V1__CREATE_REFERRAL_REQUEST__INIT;
		Haven__Referral__V1__NeedRequest  needs[2];
		Haven__Referral__V1__NeedRequest *np[2] = { &needs[0], &needs[1] };
		char             *lang[1] = { (char *) langs[rand_r(&c->c_seed) % N_LANGS] };
		char             *excluded[1];
		char              subject[33], key[32];
		uint8_t           rnd[16];
		rpc_call_options  o   = { .timeout_ms = 30000 };
		ProtobufCMessage *rep = NULL;
		char              err[RPC_ERRMSG_MAX];
		int64_t           t0;
		hv_status         st;

		(void) crypto_random(rnd, sizeof(rnd));
		for (size_t k = 0; k < sizeof(rnd); k++) {
			snprintf(subject + 2 * k, 3, "%02x", rnd[k]);
		}
		snprintf(key, sizeof(key), "raid-%u", c->c_first + i);
		excluded[0] = (char *) region_map_name(c->c_regions,
		    rand_r(&c->c_seed) % region_map_count(c->c_regions));
		for (int k = 0; k < 2; k++) {
			haven__referral__v1__need_request__init(&needs[k]);
			needs[k].type        = k == 0 ? HAVEN__CAPACITY__V1__SERVICE_TYPE__SHELTER
			                              : HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID;
			needs[k].population  = (c->c_first + i) % 2 == 0
			     ? HAVEN__CAPACITY__V1__POPULATION__WOMEN
			     : HAVEN__CAPACITY__V1__POPULATION__MEN;
			needs[k].n_languages = 1;
			needs[k].languages   = lang;
		}
		req.subject      = subject;
		req.urgency      = HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE;
		req.exploitation = (Haven__Referral__V1__Exploitation) (1 + rand_r(&c->c_seed) % 5);
		req.n_needs      = 2;
		req.needs        = np;
		req.n_excluded_regions = 1;
		req.excluded_regions   = excluded;
		o.idempotency_key      = key;
		t0                     = hv_clock_mono_us();
		st = rpc_channel_call(c->c_ch, "haven.referral.v1.Referrals/CreateReferral",
		    &req.base, &haven__referral__v1__referral__descriptor, &rep, &o, err,
		    sizeof(err));
		c->c_lat[i] = hv_clock_mono_us() - t0;
		if (st != HV_OK) {
			if (c->c_failed++ == 0) {
				fprintf(stderr, "referral bench: CreateReferral: %s: %s\n",
				    hv_status_name(st), err);
			}
			continue;
		}
		protobuf_c_message_free_unpacked(rep, NULL);
	}
	return (NULL);
}

/* Counts the needs of every referral by state, from the store. */
static hv_status
count_needs(store *st, unsigned *offered, unsigned *waiting, unsigned *other)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	store_table   t;
	const void   *v;
	size_t        vl;
	hv_status     s;

	*offered = *waiting = *other = 0;
	if ((s = store_table_open(st, "ref.referrals", &t)) != HV_OK ||
	    (s = store_read_begin(st, &txn)) != HV_OK ||
	    (s = store_cursor_open(txn, t, &c)) != HV_OK) {
		goto out;
	}
	for (s = store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl); s == HV_OK;
	     s = store_cursor_next(c, NULL, NULL, &v, &vl)) {
		Haven__Referral__V1__Referral *r =
		    haven__referral__v1__referral__unpack(NULL, vl, v);
		if (r == NULL) {
			s = HV_DATA_LOSS;
			goto out;
		}
		for (size_t i = 0; i < r->n_needs; i++) {
			switch (r->needs[i]->state) {
			case HAVEN__REFERRAL__V1__NEED_STATE__OFFERED:
				(*offered)++;
				break;
			case HAVEN__REFERRAL__V1__NEED_STATE__WAITING:
				(*waiting)++;
				break;
			default:
				(*other)++;
			}
		}
		haven__referral__v1__referral__free_unpacked(r, NULL);
	}
	s = s == HV_NOT_FOUND ? HV_OK : s;
out:
	store_cursor_close(c);
	store_read_end(txn);
	return (s);
}

static int
parse_arg(int argc, char **argv, int i, unsigned def, unsigned max, unsigned *out)
{
	char         *end;
	unsigned long v;

	*out = def;
	if (argc <= i) {
		return (0);
	}
	v = strtoul(argv[i], &end, 10);
	if (*end != '\0' || v < 1 || v > max) {
		fprintf(stderr, "haven-bench referral: argument %d must be 1..%u\n", i + 1, max);
		return (-1);
	}
	*out = (unsigned) v;
	return (0);
}

int
bench_referral(int argc, char **argv)
{
	unsigned           people, providers, threads;
	const char        *base = getenv("TMPDIR");
	char               dir[512];
	store             *st       = NULL;
	region_map        *rm       = NULL;
	cap_service       *cs       = NULL;
	ref_service       *rs       = NULL;
	auth              *au       = NULL;
	rpc_server        *srv      = NULL;
	rpc_channel       *ch       = NULL;
	client            *cl       = NULL;
	int64_t           *lat      = NULL;
	cap_options        co       = { 0 };
	ref_options        ro       = { 0 };
	auth_options       ao       = { .lookup = cap_lookup_org };
	rpc_server_options so       = { .workers = 8, .name = "bench" };
	store_options      so_store = { 0 };
	setup_job          sj;
	char               tok[AUTH_TOKEN_MAX];
	atomic_int         start  = 0;
	unsigned           failed = 0, offered, waiting, other;
	int64_t            t0, all_us;
	int                ret      = 1;
	bool               made_dir = false;

	if (parse_arg(argc, argv, 0, DEFAULT_PEOPLE, 100000, &people) != 0 ||
	    parse_arg(argc, argv, 1, DEFAULT_PROVIDERS, 1000000, &providers) != 0 ||
	    parse_arg(argc, argv, 2, DEFAULT_THREADS, 256, &threads) != 0) {
		return (2);
	}
	if (argc > 4 || (argc == 4 && strcmp(argv[3], "nosync") != 0)) {
		fprintf(stderr,
		    "usage: haven-bench referral [PEOPLE] [PROVIDERS] [THREADS] [nosync]\n");
		return (2);
	}
	so_store.no_sync = argc == 4;
	log_init("bench", LOG_LEVEL_WARN);
	snprintf(dir, sizeof(dir), "%s/haven-bench-referral-XXXXXX", base != NULL ? base : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	made_dir = true;
	if (store_open(&st, dir, &so_store) != HV_OK || region_map_default(&rm) != HV_OK) {
		fprintf(stderr, "referral bench: cannot open the store\n");
		goto out;
	}
	co.store   = st;
	co.regions = rm;
	if (cap_open(&cs, &co) != HV_OK) {
		fprintf(stderr, "referral bench: cannot open capacity\n");
		goto out;
	}
	sj = (setup_job) { cs, rm, 0, providers, 42 };
	if (store_write(st, orgs_fn, &sj) != HV_OK) {
		goto out;
	}
	for (unsigned i = 0; i < providers; i += 500) {
		sj.sj_from = i;
		sj.sj_to   = i + 500 < providers ? i + 500 : providers;
		sj.sj_seed = 1000 + i;
		if (store_write(st, services_fn, &sj) != HV_OK) {
			goto out;
		}
	}
	ro.store    = st;
	ro.regions  = rm;
	ro.capacity = cs;
	ro.consent  = consent_allow;
	if (ref_open(&rs, &ro) != HV_OK) {
		fprintf(stderr, "referral bench: cannot open the referral service\n");
		goto out;
	}
	ao.lookup_arg = cs;
	if (crypto_random(ao.secret, sizeof(ao.secret)) != HV_OK || auth_open(&au, &ao) != HV_OK) {
		goto out;
	}
	so.auth = au;
	if (rpc_server_open(&srv, &so) != HV_OK || ref_register(rs, srv) != HV_OK ||
	    rpc_server_listen(srv, URL) != HV_OK || rpc_server_start(srv) != HV_OK ||
	    rpc_channel_open(&ch, URL, NULL) != HV_OK ||
	    auth_issue_token(au, REFERRER_ORG, RPC_ROLE_REFERRER, hv_clock_wall_ms(), tok, NULL) !=
	        HV_OK ||
	    rpc_channel_set_token(ch, tok) != HV_OK) {
		fprintf(stderr, "referral bench: cannot start the server\n");
		goto out;
	}

	if ((cl = calloc(threads, sizeof(*cl))) == NULL ||
	    (lat = calloc(people, sizeof(*lat))) == NULL) {
		goto out;
	}
	for (unsigned t = 0, first = 0; t < threads; t++) {
		unsigned n = people / threads + (t < people % threads ? 1 : 0);
		cl[t]      = (client) { .c_ch = ch,
			     .c_first         = first,
			     .c_count         = n,
			     .c_seed          = 7 + t,
			     .c_lat           = lat + first,
			     .c_regions       = rm,
			     .c_start         = &start };
		first += n;
		if (pthread_create(&cl[t].c_thread, NULL, client_main, &cl[t]) != 0) {
			fprintf(stderr, "referral bench: cannot start thread\n");
			atomic_store(&start, 1);
			for (unsigned k = 0; k < t; k++) {
				pthread_join(cl[k].c_thread, NULL);
			}
			goto out;
		}
	}
	t0 = hv_clock_mono_us();
	atomic_store(&start, 1);
	for (unsigned t = 0; t < threads; t++) {
		pthread_join(cl[t].c_thread, NULL);
		failed += cl[t].c_failed;
	}
	all_us = hv_clock_mono_us() - t0;

	if (count_needs(st, &offered, &waiting, &other) != HV_OK) {
		fprintf(stderr, "referral bench: cannot read the referrals back\n");
		goto out;
	}
	fprintf(stderr, "referral bench: %u needs offered, %u waiting, %u other, %u calls failed\n",
	    offered, waiting, other, failed);
	if (failed > 0 || offered + waiting != 2 * people) {
		fprintf(stderr, "referral bench: not every need was routed\n");
		goto out;
	}
	qsort(lat, people, sizeof(*lat), cmp_i64);
	printf("referral people=%u needs=%u providers=%u all_routed_ms=%lld create_p50_us=%lld "
	       "create_p99_us=%lld\n",
	    people, 2 * people, providers, (long long) (all_us / 1000),
	    (long long) lat[(people - 1) / 2], (long long) lat[(people * 99 + 99) / 100 - 1]);
	fflush(stdout);
	ret = 0;
out:
	rpc_channel_close(ch);
	rpc_server_close(srv);
	ref_close(rs);
	cap_close(cs);
	auth_close(au);
	store_close(st);
	region_map_free(rm);
	free(cl);
	free(lat);
	if (made_dir) {
		remove_dir(dir);
	}
	return (ret);
}
