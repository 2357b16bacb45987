/*
 * capacity_test.c - the capacity registry without RPC: ids, the checks of every field, adding
 * organisations and services, holds (place, release, confirm, expire, the expiry thread), the
 * brief table (and its rebuild for another region map), iteration, the aggregate, and the
 * directory lookup auth uses. The RPC handlers are tested over inproc:// in
 * tests/capacity_it.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cap_internal.h"
#include "haven/clock.h"
#include "haven/ids.h"
#include "haven/log.h"
#include "haven/text.h"

typedef Haven__Capacity__V1__Service      service_t;
typedef Haven__Capacity__V1__Organisation org_t;

#define T_SHELTER   HAVEN__CAPACITY__V1__SERVICE_TYPE__SHELTER
#define T_LEGAL_AID HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID
#define P_WOMEN     HAVEN__CAPACITY__V1__POPULATION__WOMEN
#define P_MEN       HAVEN__CAPACITY__V1__POPULATION__MEN
#define P_MINORS    HAVEN__CAPACITY__V1__POPULATION__MINORS
#define R_PROVIDER  HAVEN__CAPACITY__V1__ROLE__PROVIDER
#define R_REFERRER  HAVEN__CAPACITY__V1__ROLE__REFERRER

static char tmp[512];
static int  dirs;

/* The test clock: real time plus an offset the tests move. */
static _Atomic int64_t clock_offset;

static int64_t
test_now(void *arg)
{
	(void) arg;
	return (hv_clock_wall_ms() + atomic_load(&clock_offset));
}

typedef struct fixture {
	char         dir[600];
	store       *st;
	region_map  *map;
	cap_service *cs;
} fixture;

static void
fixture_open(fixture *f, bool manual_expiry)
{
	cap_options o = { 0 };

	snprintf(f->dir, sizeof(f->dir), "%s/s%d", tmp, dirs++);
	assert_int_equal(store_open(&f->st, f->dir, NULL), HV_OK);
	assert_int_equal(region_map_default(&f->map), HV_OK);
	o.store         = f->st;
	o.regions       = f->map;
	o.now_ms        = test_now;
	o.manual_expiry = manual_expiry;
	assert_int_equal(cap_open(&f->cs, &o), HV_OK);
	atomic_store(&clock_offset, 0);
}

static void
fixture_close(fixture *f)
{
	cap_close(f->cs);
	store_close(f->st);
	region_map_free(f->map);
	f->cs  = NULL;
	f->st  = NULL;
	f->map = NULL;
}

/* ---- write jobs ---------------------------------------------------------------------- */

typedef struct job {
	cap_service     *cs;
	const org_t     *org;
	const service_t *svc;
	const char      *id; /* service or hold id */
	uint32_t         ttl_s;
	const char      *owner;
	char             out[CAP_ID_MAX];
	char             err[256];
	unsigned         released;
	int64_t          now;
} job;

static hv_status
add_org_fn(store_txn *txn, void *arg)
{
	job *j = arg;
	return (cap_add_organisation(j->cs, txn, j->org, j->err, sizeof(j->err)));
}

static hv_status
add_service_fn(store_txn *txn, void *arg)
{
	job *j = arg;
	return (cap_add_service(j->cs, txn, j->svc, j->out, j->err, sizeof(j->err)));
}

static hv_status
hold_fn(store_txn *txn, void *arg)
{
	job *j = arg;
	return (cap_hold_place(j->cs, txn, j->id, j->ttl_s, j->owner, j->out));
}

static hv_status
release_fn(store_txn *txn, void *arg)
{
	job *j = arg;
	return (cap_hold_release(j->cs, txn, j->id));
}

static hv_status
confirm_fn(store_txn *txn, void *arg)
{
	job *j = arg;
	return (cap_hold_confirm(j->cs, txn, j->id));
}

static hv_status
expire_fn(store_txn *txn, void *arg)
{
	job *j = arg;
	return (cap_expire_holds(j->cs, txn, j->now, &j->released));
}

static hv_status
add_org(fixture *f, const char *id, Haven__Capacity__V1__Role role, const char *region)
{
	org_t o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	job   j = { .cs = f->cs, .org = &o };

	o.id     = (char *) id;
	o.name   = "Test organisation";
	o.role   = role;
	o.region = (char *) region;
	return (store_write(f->st, add_org_fn, &j));
}

static Haven__Capacity__V1__Population pops_women[]        = { P_WOMEN };
static Haven__Capacity__V1__Population pops_women_minors[] = { P_WOMEN, P_MINORS };
static char                           *langs_nl_en[]       = { "nl", "en" };

static void
svc_init(service_t *s, const char *id, const char *org, Haven__Capacity__V1__ServiceType type,
    const char *region, uint32_t maximum, uint32_t available)
{
	haven__capacity__v1__service__init(s);
	s->id                 = (char *) id;
	s->org_id             = (char *) org;
	s->type               = type;
	s->service_area       = (char *) region;
	s->n_populations      = 1;
	s->populations        = pops_women;
	s->n_languages        = 2;
	s->languages          = langs_nl_en;
	s->maximum            = maximum;
	s->available          = available;
	s->front_door_contact = "intake desk, 088 000 0000";
}

static hv_status
add_service(fixture *f, const service_t *s, char id[CAP_ID_MAX])
{
	job       j = { .cs = f->cs, .svc = s };
	hv_status st;

	st = store_write(f->st, add_service_fn, &j);
	if (id != NULL) {
		memcpy(id, j.out, CAP_ID_MAX);
	}
	return (st);
}

static service_t *
get_service(fixture *f, const char *id)
{
	store_txn *txn;
	service_t *s = NULL;

	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(cap_get_service(f->cs, txn, id, &s), HV_OK);
	store_read_end(txn);
	return (s);
}

static hv_status
hold(fixture *f, const char *service_id, uint32_t ttl_s, char hold_id[CAP_ID_MAX])
{
	job       j = { .cs = f->cs, .id = service_id, .ttl_s = ttl_s, .owner = "ref-1/need-1" };
	hv_status st;

	st = store_write(f->st, hold_fn, &j);
	if (hold_id != NULL) {
		memcpy(hold_id, j.out, CAP_ID_MAX);
	}
	return (st);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void
test_ids(void **state)
{
	char id[IDS_MAX];
	char other[IDS_MAX];
	char long_id[80];

	assert_true(ids_valid("svc-1"));
	assert_true(ids_valid("a.b_c-d9"));
	assert_false(ids_valid(""));
	assert_false(ids_valid(NULL));
	assert_false(ids_valid("Upper"));
	assert_false(ids_valid("sp ace"));
	assert_false(ids_valid("slash/"));
	memset(long_id, 'a', sizeof(long_id));
	long_id[63] = '\0';
	assert_true(ids_valid(long_id));
	long_id[63] = 'a';
	long_id[64] = '\0';
	assert_false(ids_valid(long_id));

	assert_int_equal(ids_generate(id, sizeof(id), "svc-", 12), HV_OK);
	assert_int_equal(strlen(id), 16);
	assert_memory_equal(id, "svc-", 4);
	assert_true(ids_valid(id));
	assert_int_equal(ids_generate(other, sizeof(other), "svc-", 12), HV_OK);
	assert_string_not_equal(id, other);
	assert_int_equal(ids_generate(id, sizeof(id), "hold-", 16), HV_OK);
	assert_int_equal(strlen(id), 21);
	assert_int_equal(ids_generate(id, sizeof(id), "Bad-", 4), HV_INVALID_ARGUMENT);
	assert_string_equal(id, "");
	assert_int_equal(ids_generate(id, sizeof(id), "x", 63), HV_INVALID_ARGUMENT);
	assert_int_equal(ids_generate(id, 8, "svc-", 4), HV_INVALID_ARGUMENT);
	assert_int_equal(ids_generate(id, sizeof(id), "svc-", 0), HV_INVALID_ARGUMENT);
	assert_int_equal(ids_generate(id, sizeof(id), NULL, 5), HV_OK);
	assert_int_equal(strlen(id), 5);
}

static void
test_text_and_roles(void **state)
{
	assert_true(text_free_ok("Blijf Groep", 1, 200));
	assert_true(text_free_ok("Stichting Ça va \xe2\x82\xac", 1, 200)); /* Ç, € */
	assert_false(text_free_ok("", 1, 200));
	assert_true(text_free_ok("", 0, 200));
	assert_false(text_free_ok("tab\there", 1, 200));
	assert_false(text_free_ok("nl\n", 1, 200));
	assert_false(text_free_ok("del\x7f", 1, 200));
	assert_false(text_free_ok("c1 \xc2\x85", 1, 200));       /* U+0085 NEL */
	assert_false(text_free_ok("overlong \xc0\xaf", 1, 200)); /* '/' in two bytes */
	assert_false(text_free_ok("surrogate \xed\xa0\x80", 1, 200));
	assert_false(text_free_ok("cut \xe2\x82", 1, 200));
	assert_false(text_free_ok("past \xf4\x90\x80\x80", 1, 200));
	assert_false(text_free_ok("abcdef", 1, 5));

	for (int r = 1; r <= 6; r++) {
		rpc_role rr = cap_role_to_rpc((Haven__Capacity__V1__Role) r);
		assert_int_not_equal(rr, 0);
		assert_int_equal(cap_role_from_rpc(rr), r);
	}
	/* A peer-support group signs in as a provider; a provider is a provider. */
	assert_int_equal(cap_role_to_rpc(HAVEN__CAPACITY__V1__ROLE__PEER_SUPPORT_GROUP),
	    RPC_ROLE_PROVIDER);
	assert_int_equal(cap_role_from_rpc(RPC_ROLE_PROVIDER), HAVEN__CAPACITY__V1__ROLE__PROVIDER);
	assert_int_equal(cap_role_to_rpc(HAVEN__CAPACITY__V1__ROLE__ROLE_UNSPECIFIED), 0);
	assert_int_equal(cap_role_to_rpc((Haven__Capacity__V1__Role) 99), 0);
	assert_int_equal(cap_role_from_rpc(RPC_ROLE_OPERATOR), 0);
	assert_true(
	    cap_enum_ok(&haven__capacity__v1__population__descriptor, P_MEN, CAP_POPULATIONS));
	assert_false(cap_enum_ok(&haven__capacity__v1__population__descriptor, 0, CAP_POPULATIONS));
	assert_false(cap_enum_ok(&haven__capacity__v1__population__descriptor, 42, 1 << 30));
	/* Known, but past the registry's tables. */
	assert_false(cap_enum_ok(&haven__capacity__v1__population__descriptor, P_MEN, P_MEN));
}

/* Every bound of a service, one at a time, each with a message naming the field. */
static void
test_service_checks(void **state)
{
	fixture                           f;
	service_t                         s;
	char                              err[256];
	char                              big[300];
	char                             *many[20];
	Haven__Capacity__V1__Population   pops[9];
	Haven__Capacity__V1__Exploitation ex[2];

	fixture_open(&f, true);
	memset(big, 'x', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 20; i++) {
		many[i] = "nl";
	}

#define EXPECT_BAD(what, field)                                                                    \
	do {                                                                                       \
		svc_init(&s, "svc-a", "org-a", T_SHELTER, "Amsterdam", 10, 3);                     \
		what;                                                                              \
		err[0] = '\0';                                                                     \
		assert_int_equal(cap_check_new_service(f.cs, &s, err, sizeof(err)),                \
		    HV_INVALID_ARGUMENT);                                                          \
		if (strstr(err, field) == NULL) {                                                  \
			fail_msg("message '%s' does not name %s", err, field);                     \
		}                                                                                  \
	} while (0)

	svc_init(&s, "svc-a", "org-a", T_SHELTER, "Amsterdam", 10, 3);
	assert_int_equal(cap_check_new_service(f.cs, &s, err, sizeof(err)), HV_OK);
	s.id = "";
	assert_int_equal(cap_check_new_service(f.cs, &s, err, sizeof(err)), HV_OK);

	EXPECT_BAD(s.id = "Bad Id", "service id");
	EXPECT_BAD(s.org_id = "", "org_id");
	EXPECT_BAD(s.name = big, "name");
	EXPECT_BAD(s.name = "bell\a", "name");
	EXPECT_BAD(s.type = 0, "type");
	EXPECT_BAD(s.type = (Haven__Capacity__V1__ServiceType) 99, "type 99");
	EXPECT_BAD(s.service_area = "Atlantis", "service_area 'Atlantis'");
	EXPECT_BAD(s.service_area = "amsterdam", "service_area"); /* exact names only */
	EXPECT_BAD(s.service_area = "", "service_area is required");
	EXPECT_BAD(s.n_populations = 0, "populations");
	pops[0] = P_WOMEN;
	pops[1] = (Haven__Capacity__V1__Population) 77;
	EXPECT_BAD((s.populations = pops, s.n_populations = 2), "populations: 77");
	pops[1] = P_WOMEN;
	EXPECT_BAD((s.populations = pops, s.n_populations = 2), "populations lists women twice");
	for (int i = 0; i < 9; i++) {
		pops[i] = P_MEN;
	}
	EXPECT_BAD((s.populations = pops, s.n_populations = 9), "populations must have 1 to 8");
	EXPECT_BAD((s.languages = many, s.n_languages = 17), "languages has 17");
	many[0] = "x";
	EXPECT_BAD((s.languages = many, s.n_languages = 1), "languages: entry 1");
	many[0] = "nl_NL";
	EXPECT_BAD((s.languages = many, s.n_languages = 1), "languages: entry 1");
	/* The one rule of haven/text.h: what a person's language may be, a service's may be. */
	many[0] = "12--";
	EXPECT_BAD((s.languages = many, s.n_languages = 1), "languages: entry 1 must be a BCP 47");
	many[0] = "nl";
	many[1] = "NL";
	EXPECT_BAD((s.languages = many, s.n_languages = 2), "languages lists NL twice");
	many[1] = "nl";
	EXPECT_BAD((s.accessibility = many, s.n_accessibility = 17), "accessibility has 17");
	many[0] = "Wheel Chair";
	EXPECT_BAD((s.accessibility = many, s.n_accessibility = 1), "accessibility: entry 1");
	many[0] = "nl";
	ex[0]   = (Haven__Capacity__V1__Exploitation) 9;
	EXPECT_BAD((s.specialisations = ex, s.n_specialisations = 1), "specialisations: 9");
	ex[0] = HAVEN__CAPACITY__V1__EXPLOITATION__LABOUR;
	ex[1] = HAVEN__CAPACITY__V1__EXPLOITATION__LABOUR;
	EXPECT_BAD((s.specialisations = ex, s.n_specialisations = 2),
	    "specialisations lists labour");
	EXPECT_BAD((s.maximum = 0, s.available = 0), "maximum must be 1 to 100000");
	EXPECT_BAD(s.maximum = 100001, "maximum must be 1 to 100000 places, not 100001");
	EXPECT_BAD(s.available = 11, "available 11 is over the maximum of 10 places");
	EXPECT_BAD(s.available = 4000000000u, "available 4000000000 is over the maximum of 10");
	EXPECT_BAD(s.unit = big, "unit");
	EXPECT_BAD(s.report_interval_s = 59, "report_interval_s");
	EXPECT_BAD(s.report_interval_s = 604801, "report_interval_s");
	EXPECT_BAD(s.front_door_contact = "", "front_door_contact");
	EXPECT_BAD(s.front_door_contact = big, "front_door_contact");
#undef EXPECT_BAD
	/* No message repeats a text field's value. */
	svc_init(&s, "svc-a", "org-a", T_SHELTER, "Amsterdam", 10, 3);
	s.front_door_contact = "call 06-12345678\n";
	assert_int_equal(cap_check_new_service(f.cs, &s, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_null(strstr(err, "06-1234"));
	fixture_close(&f);
}

static void
test_org_checks(void **state)
{
	fixture f;
	org_t   o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	char    err[256], fp[65];
	char   *bigcert;

	fixture_open(&f, true);
	o.id     = "blijf-groep";
	o.name   = "Blijf Groep";
	o.role   = R_PROVIDER;
	o.region = "Amsterdam";
	assert_int_equal(cap_check_org(f.cs, &o, fp, err, sizeof(err)), HV_OK);
	assert_string_equal(fp, "");
	/* A node without a CA cannot check a certificate, so it registers none. */
	assert_int_equal(cap_check_cert(f.cs, "blijf-groep", "-----BEGIN CERTIFICATE-----\n",
	                     cap_now_ms(f.cs) / 1000, err, sizeof(err)),
	    HV_FAILED_PRECONDITION);
	assert_non_null(strstr(err, "no CA configured (tls_ca)"));
	o.id = "Blijf";
	assert_int_equal(cap_check_org(f.cs, &o, fp, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "organisation id"));
	o.id   = "blijf-groep";
	o.role = (Haven__Capacity__V1__Role) 8;
	assert_int_equal(cap_check_org(f.cs, &o, fp, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "role"));
	o.role = 0;
	assert_int_equal(cap_check_org(f.cs, &o, fp, err, sizeof(err)), HV_INVALID_ARGUMENT);
	o.role   = R_PROVIDER;
	o.region = "Gotham";
	assert_int_equal(cap_check_org(f.cs, &o, fp, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "region 'Gotham'"));
	o.region   = "Amsterdam";
	o.cert_pem = "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n";
	assert_int_equal(cap_check_org(f.cs, &o, fp, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "cert_pem is not a PEM certificate"));
	bigcert = malloc(CAP_CERT_MAX + 2);
	memset(bigcert, 'A', CAP_CERT_MAX + 1);
	bigcert[CAP_CERT_MAX + 1] = '\0';
	o.cert_pem                = bigcert;
	assert_int_equal(cap_check_org(f.cs, &o, fp, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "cert_pem is over 16384 bytes"));
	free(bigcert);
	assert_int_equal(cap_check_org(f.cs, NULL, fp, err, sizeof(err)), HV_INVALID_ARGUMENT);
	fixture_close(&f);
}

static void
test_add_and_lookup(void **state)
{
	fixture    f;
	service_t  s;
	service_t *got;
	char       id[CAP_ID_MAX];
	auth_org   ao;
	job        j;

	fixture_open(&f, true);
	assert_int_equal(add_org(&f, "shelter-a", R_PROVIDER, "Amsterdam"), HV_OK);
	assert_int_equal(add_org(&f, "shelter-a", R_PROVIDER, "Amsterdam"), HV_ALREADY_EXISTS);
	assert_int_equal(add_org(&f, "ngo-b", R_REFERRER, "Rotterdam"), HV_OK);

	/* The directory as auth sees it. */
	assert_int_equal(cap_lookup_org(f.cs, "shelter-a", &ao), HV_OK);
	assert_int_equal(ao.role, RPC_ROLE_PROVIDER);
	assert_true(ao.enabled);
	assert_null(ao.cert_pem);
	assert_int_equal(cap_lookup_org(f.cs, "nobody", &ao), HV_NOT_FOUND);
	assert_int_equal(cap_lookup_org(f.cs, "Bad Id", &ao), HV_NOT_FOUND);

	/* A generated id, the registry's own fields, the name defaulting to the id. */
	svc_init(&s, "", "shelter-a", T_SHELTER, "Amsterdam", 10, 4);
	s.held    = 7;  /* ignored */
	s.version = 42; /* ignored */
	assert_int_equal(add_service(&f, &s, id), HV_OK);
	assert_memory_equal(id, "svc-", 4);
	assert_int_equal(strlen(id), 16);
	got = get_service(&f, id);
	assert_string_equal(got->name, id);
	assert_string_equal(got->unit, "places");
	assert_int_equal(got->report_interval_s, 86400);
	assert_int_equal(got->held, 0);
	assert_int_equal(got->version, 1);
	assert_int_equal(got->available, 4);
	assert_true(got->updated_ms > 0 && got->updated_ms == got->created_ms);
	assert_true(cap_service_fresh(got, test_now(NULL)));
	haven__capacity__v1__service__free_unpacked(got, NULL);

	/* A given id, once. */
	svc_init(&s, "svc-given", "shelter-a", T_SHELTER, "Amsterdam", 10, 4);
	assert_int_equal(add_service(&f, &s, id), HV_OK);
	assert_string_equal(id, "svc-given");
	j = (job) { .cs = f.cs, .svc = &s };
	assert_int_equal(store_write(f.st, add_service_fn, &j), HV_ALREADY_EXISTS);
	assert_non_null(strstr(j.err, "service svc-given exists already"));
	/* Only providers run services, and only enabled ones. */
	svc_init(&s, "svc-x", "ngo-b", T_SHELTER, "Rotterdam", 10, 4);
	j = (job) { .cs = f.cs, .svc = &s };
	assert_int_equal(store_write(f.st, add_service_fn, &j), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(j.err, "not a provider"));
	svc_init(&s, "svc-x", "nobody", T_SHELTER, "Rotterdam", 10, 4);
	j = (job) { .cs = f.cs, .svc = &s };
	assert_int_equal(store_write(f.st, add_service_fn, &j), HV_NOT_FOUND);
	assert_non_null(strstr(j.err, "no organisation nobody"));
	{
		store_txn *txn;
		assert_int_equal(store_read_begin(f.st, &txn), HV_OK);
		assert_int_equal(cap_get_service(f.cs, txn, "svc-x", &got), HV_NOT_FOUND);
		assert_null(got);
		store_read_end(txn);
	}
	fixture_close(&f);
}

static void
test_holds(void **state)
{
	fixture    f;
	service_t  s;
	service_t *got;
	char       sid[CAP_ID_MAX], h1[CAP_ID_MAX], h2[CAP_ID_MAX], h3[CAP_ID_MAX];
	job        j;
	char       longowner[300];

	fixture_open(&f, true);
	assert_int_equal(add_org(&f, "shelter-a", R_PROVIDER, "Amsterdam"), HV_OK);
	svc_init(&s, "svc-h", "shelter-a", T_SHELTER, "Amsterdam", 10, 2);
	assert_int_equal(add_service(&f, &s, sid), HV_OK);

	assert_int_equal(hold(&f, "svc-h", 600, h1), HV_OK);
	assert_memory_equal(h1, "hold-", 5);
	assert_int_equal(strlen(h1), 21);
	assert_int_equal(hold(&f, "svc-h", 600, h2), HV_OK);
	assert_string_not_equal(h1, h2);
	/* Two places, two holds: no third. */
	assert_int_equal(hold(&f, "svc-h", 600, h3), HV_FAILED_PRECONDITION);
	assert_string_equal(h3, "");
	got = get_service(&f, "svc-h");
	assert_int_equal(got->held, 2);
	assert_int_equal(got->available, 2);
	assert_int_equal(got->version, 3);
	assert_int_equal(cap_free_places(got, test_now(NULL), NULL), 0);
	haven__capacity__v1__service__free_unpacked(got, NULL);

	/* Release gives the place back; confirm keeps it taken. */
	j = (job) { .cs = f.cs, .id = h1 };
	assert_int_equal(store_write(f.st, release_fn, &j), HV_OK);
	assert_int_equal(store_write(f.st, release_fn, &j), HV_NOT_FOUND);
	assert_int_equal(store_write(f.st, confirm_fn, &j), HV_NOT_FOUND);
	j = (job) { .cs = f.cs, .id = h2 };
	assert_int_equal(store_write(f.st, confirm_fn, &j), HV_OK);
	got = get_service(&f, "svc-h");
	assert_int_equal(got->held, 0);
	assert_int_equal(got->available, 1);
	assert_int_equal(got->version, 5);
	assert_int_equal(cap_free_places(got, test_now(NULL), NULL), 1);
	haven__capacity__v1__service__free_unpacked(got, NULL);
	j = (job) { .cs = f.cs, .id = "not a hold id" };
	assert_int_equal(store_write(f.st, release_fn, &j), HV_NOT_FOUND);

	/* Bad arguments. */
	assert_int_equal(hold(&f, "svc-h", 0, h3), HV_INVALID_ARGUMENT);
	assert_int_equal(hold(&f, "svc-h", 24 * 3600 + 1, h3), HV_INVALID_ARGUMENT);
	assert_int_equal(hold(&f, "Bad", 60, h3), HV_INVALID_ARGUMENT);
	assert_int_equal(hold(&f, "svc-nope", 60, h3), HV_NOT_FOUND);
	memset(longowner, 'o', sizeof(longowner));
	longowner[sizeof(longowner) - 1] = '\0';
	j = (job) { .cs = f.cs, .id = "svc-h", .ttl_s = 60, .owner = longowner };
	assert_int_equal(store_write(f.st, hold_fn, &j), HV_INVALID_ARGUMENT);

	/* A stale figure holds nothing. */
	atomic_store(&clock_offset, (int64_t) 86401 * 1000);
	assert_int_equal(hold(&f, "svc-h", 60, h3), HV_FAILED_PRECONDITION);
	atomic_store(&clock_offset, 0);
	fixture_close(&f);
}

static void
test_expire(void **state)
{
	fixture    f;
	service_t  s;
	service_t *got;
	char       h[4][CAP_ID_MAX];
	job        j;

	fixture_open(&f, true);
	assert_int_equal(add_org(&f, "shelter-a", R_PROVIDER, "Amsterdam"), HV_OK);
	svc_init(&s, "svc-e", "shelter-a", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	assert_int_equal(hold(&f, "svc-e", 60, h[0]), HV_OK);
	assert_int_equal(hold(&f, "svc-e", 120, h[1]), HV_OK);
	assert_int_equal(hold(&f, "svc-e", 120, h[2]), HV_OK);
	assert_int_equal(hold(&f, "svc-e", 3600, h[3]), HV_OK);

	j = (job) { .cs = f.cs, .now = test_now(NULL) };
	assert_int_equal(store_write(f.st, expire_fn, &j), HV_OK);
	assert_int_equal(j.released, 0);
	j.now = test_now(NULL) + 61 * 1000;
	assert_int_equal(store_write(f.st, expire_fn, &j), HV_OK);
	assert_int_equal(j.released, 1);
	j.now = test_now(NULL) + 200 * 1000;
	assert_int_equal(store_write(f.st, expire_fn, &j), HV_OK);
	assert_int_equal(j.released, 2);
	got = get_service(&f, "svc-e");
	assert_int_equal(got->held, 1);
	assert_int_equal(got->available, 5);
	haven__capacity__v1__service__free_unpacked(got, NULL);
	/* An expired hold is gone for its owner too. */
	j = (job) { .cs = f.cs, .id = h[0] };
	assert_int_equal(store_write(f.st, confirm_fn, &j), HV_NOT_FOUND);
	j = (job) { .cs = f.cs, .id = h[3] };
	assert_int_equal(store_write(f.st, confirm_fn, &j), HV_OK);
	fixture_close(&f);
}

/* Many holds expire in batches; the thread does it on its own within a few seconds. */
static void
test_expiry_thread(void **state)
{
	fixture    f;
	service_t  s;
	service_t *got;
	int        waited;

	fixture_open(&f, false);
	assert_int_equal(add_org(&f, "shelter-a", R_PROVIDER, "Amsterdam"), HV_OK);
	svc_init(&s, "svc-t", "shelter-a", T_SHELTER, "Amsterdam", 200, 150);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	for (int i = 0; i < 130; i++) {
		assert_int_equal(hold(&f, "svc-t", 1, NULL), HV_OK);
	}
	/* More than one batch (64) expires: the thread loops until none is left. */
	atomic_store(&clock_offset, 5000);
	for (waited = 0; waited < 50; waited++) {
		got           = get_service(&f, "svc-t");
		unsigned held = got->held;
		haven__capacity__v1__service__free_unpacked(got, NULL);
		if (held == 0) {
			break;
		}
		usleep(100 * 1000);
	}
	assert_true(waited < 50);
	fixture_close(&f);
}

typedef struct collect {
	int  n;
	int  fresh;
	char ids[8][CAP_ID_MAX];
	int  stop_after;
} collect;

static int
collect_fn(void *arg, const service_t *svc, bool fresh)
{
	collect *c = arg;

	if (c->n < 8) {
		snprintf(c->ids[c->n], CAP_ID_MAX, "%s", svc->id);
	}
	c->n++;
	c->fresh += fresh;
	return (c->stop_after != 0 && c->n >= c->stop_after);
}

static int
route_fn(void *arg, const cap_route_entry *e)
{
	collect *c = arg;

	if (c->n < 8) {
		snprintf(c->ids[c->n], CAP_ID_MAX, "%s", e->id);
	}
	c->n++;
	c->fresh += e->fresh;
	return (0);
}

/* The entries of (type, region) in the routing index, read in a transaction of their own. */
static void
route_read(fixture *f, int type, const char *region, collect *c)
{
	store_txn *txn;

	memset(c, 0, sizeof(*c));
	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(cap_route_foreach(f->cs, txn, type,
	                     (unsigned) region_map_find(f->map, region), 0, route_fn, c),
	    HV_OK);
	store_read_end(txn);
}

/* The routing index follows every change in the service's transaction: a service whose last
 * place is held leaves it and comes back when the hold is released; other types and regions
 * are apart; a bad type or region is refused. */
static void
test_route_index(void **state)
{
	fixture    f;
	service_t  s;
	collect    c;
	store_txn *txn;
	char       h1[CAP_ID_MAX], h2[CAP_ID_MAX];

	(void) state;
	fixture_open(&f, true);
	assert_int_equal(add_org(&f, "p-a", R_PROVIDER, "Amsterdam"), HV_OK);
	svc_init(&s, "a1", "p-a", T_SHELTER, "Amsterdam", 10, 2);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	svc_init(&s, "a2", "p-a", T_SHELTER, "Amsterdam", 10, 0);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	svc_init(&s, "a3", "p-a", T_LEGAL_AID, "Amsterdam", 10, 5);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	svc_init(&s, "r1", "p-a", T_SHELTER, "Rotterdam", 10, 5);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);

	route_read(&f, T_SHELTER, "Amsterdam", &c);
	assert_int_equal(c.n, 1); /* a2 has no free place */
	assert_string_equal(c.ids[0], "a1");
	assert_int_equal(c.fresh, 1);
	route_read(&f, T_LEGAL_AID, "Amsterdam", &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.ids[0], "a3");
	route_read(&f, T_SHELTER, "Rotterdam", &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.ids[0], "r1");

	assert_int_equal(hold(&f, "a1", 600, h1), HV_OK);
	route_read(&f, T_SHELTER, "Amsterdam", &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(hold(&f, "a1", 600, h2), HV_OK);
	route_read(&f, T_SHELTER, "Amsterdam", &c);
	assert_int_equal(c.n, 0);
	{
		job j = { .cs = f.cs, .id = h1 };
		assert_int_equal(store_write(f.st, release_fn, &j), HV_OK);
	}
	route_read(&f, T_SHELTER, "Amsterdam", &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.ids[0], "a1");

	assert_int_equal(store_read_begin(f.st, &txn), HV_OK);
	/* The population filter: a1 takes women, not minors. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cap_route_foreach(f.cs, txn, T_SHELTER,
	                     (unsigned) region_map_find(f.map, "Amsterdam"),
	                     (uint8_t) (1u << P_WOMEN), route_fn, &c),
	    HV_OK);
	assert_int_equal(c.n, 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cap_route_foreach(f.cs, txn, T_SHELTER,
	                     (unsigned) region_map_find(f.map, "Amsterdam"),
	                     (uint8_t) ((1u << P_WOMEN) | (1u << P_MINORS)), route_fn, &c),
	    HV_OK);
	assert_int_equal(c.n, 0);
	assert_int_equal(cap_route_foreach(f.cs, txn, 0, 0, 0, route_fn, &c), HV_INVALID_ARGUMENT);
	assert_int_equal(cap_route_foreach(f.cs, txn, T_SHELTER, REGIONS_MAX, 0, route_fn, &c),
	    HV_INVALID_ARGUMENT);
	store_read_end(txn);
	fixture_close(&f);
}

static const cap_cell *
find_cell(const cap_cell *cells, size_t n, const region_map *m, const char *region, int type,
    int pop)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(region_map_name(m, cells[i].cc_region), region) == 0 &&
		    (int) cells[i].cc_type == type && (int) cells[i].cc_population == pop) {
			return (&cells[i]);
		}
	}
	return (NULL);
}

static void
test_foreach_and_summary(void **state)
{
	fixture         f;
	service_t       s;
	store_txn      *txn;
	collect         c;
	cap_cell       *cells;
	size_t          n;
	const cap_cell *cell;
	char            h[CAP_ID_MAX];

	fixture_open(&f, true);
	assert_int_equal(add_org(&f, "p-a", R_PROVIDER, "Amsterdam"), HV_OK);
	assert_int_equal(add_org(&f, "p-r", R_PROVIDER, "Rotterdam"), HV_OK);
	svc_init(&s, "a1", "p-a", T_SHELTER, "Amsterdam", 10, 4);
	s.populations   = pops_women_minors;
	s.n_populations = 2;
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	svc_init(&s, "a2", "p-a", T_SHELTER, "Amsterdam", 6, 6);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	svc_init(&s, "a3", "p-a", T_LEGAL_AID, "Amsterdam", 20, 20);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	svc_init(&s, "r1", "p-r", T_SHELTER, "Rotterdam", 8, 8);
	s.report_interval_s = 3600;
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	assert_int_equal(hold(&f, "a2", 600, h), HV_OK);

	/* r1 goes stale after an hour; the others report daily. */
	atomic_store(&clock_offset, 3601 * 1000);
	assert_int_equal(store_read_begin(f.st, &txn), HV_OK);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cap_foreach_service(f.cs, txn, T_SHELTER, collect_fn, &c), HV_OK);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.fresh, 2);
	assert_string_equal(c.ids[0], "a1");
	assert_string_equal(c.ids[2], "r1");
	memset(&c, 0, sizeof(c));
	assert_int_equal(cap_foreach_service(f.cs, txn, 0, collect_fn, &c), HV_OK);
	assert_int_equal(c.n, 4);
	memset(&c, 0, sizeof(c));
	c.stop_after = 1;
	assert_int_equal(cap_foreach_service(f.cs, txn, 0, collect_fn, &c), HV_OK);
	assert_int_equal(c.n, 1);

	assert_int_equal(cap_summary(f.cs, txn, 0, test_now(NULL), &cells, &n), HV_OK);
	/* Amsterdam shelter women (a1, a2), minors (a1), legal aid women (a3), Rotterdam
	 * shelter women (r1). */
	assert_int_equal(n, 4);
	cell = find_cell(cells, n, f.map, "Amsterdam", T_SHELTER, P_WOMEN);
	assert_non_null(cell);
	assert_int_equal(cell->cc_services, 2);
	assert_int_equal(cell->cc_maximum, 16);
	assert_int_equal(cell->cc_free, 4 + 5); /* a2 has one place held */
	assert_int_equal(cell->cc_stale_services, 0);
	cell = find_cell(cells, n, f.map, "Amsterdam", T_SHELTER, P_MINORS);
	assert_non_null(cell);
	assert_int_equal(cell->cc_services, 1);
	assert_int_equal(cell->cc_free, 4);
	cell = find_cell(cells, n, f.map, "Rotterdam", T_SHELTER, P_WOMEN);
	assert_non_null(cell);
	assert_int_equal(cell->cc_free, 0); /* stale: unknown, never available */
	assert_int_equal(cell->cc_stale_services, 1);
	assert_int_equal(cell->cc_maximum, 8);
	free(cells);
	/* Only Rotterdam. */
	assert_int_equal(cap_summary(f.cs, txn, (uint64_t) 1 << region_map_find(f.map, "Rotterdam"),
	                     test_now(NULL), &cells, &n),
	    HV_OK);
	assert_int_equal(n, 1);
	free(cells);
	/* A region without services: nothing. */
	assert_int_equal(cap_summary(f.cs, txn, (uint64_t) 1 << region_map_find(f.map, "Limburg"),
	                     test_now(NULL), &cells, &n),
	    HV_OK);
	assert_int_equal(n, 0);
	assert_null(cells);
	store_read_end(txn);
	fixture_close(&f);
}

/* The brief table stores region indices: a store opened with another map is rebuilt. */
static void
test_brief_rebuild(void **state)
{
	fixture     f;
	service_t   s;
	region_map *other;
	cap_options o = { 0 };
	store_txn  *txn;
	cap_cell   *cells;
	size_t      n;
	char        err[128];

	fixture_open(&f, true);
	assert_int_equal(add_org(&f, "p-l", R_PROVIDER, "Limburg"), HV_OK);
	svc_init(&s, "l1", "p-l", T_SHELTER, "Limburg", 5, 5);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	svc_init(&s, "l2", "p-l", T_SHELTER, "Oost-Brabant", 5, 5);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	cap_close(f.cs);

	/* Limburg first, and no Oost-Brabant. */
	assert_int_equal(region_map_parse("Limburg: Noord\nNoord: Limburg\n", &other, err,
	                     sizeof(err)),
	    HV_OK);
	o.store         = f.st;
	o.regions       = other;
	o.manual_expiry = true;
	assert_int_equal(cap_open(&f.cs, &o), HV_OK);
	assert_int_equal(store_read_begin(f.st, &txn), HV_OK);
	assert_int_equal(cap_summary(f.cs, txn, 0, test_now(NULL), &cells, &n), HV_OK);
	assert_int_equal(n, 1);
	assert_string_equal(region_map_name(other, cells[0].cc_region), "Limburg");
	assert_int_equal(cells[0].cc_services, 1);
	free(cells);
	store_read_end(txn);
	cap_close(f.cs);

	/* And back. */
	o.regions = f.map;
	assert_int_equal(cap_open(&f.cs, &o), HV_OK);
	assert_int_equal(store_read_begin(f.st, &txn), HV_OK);
	assert_int_equal(cap_summary(f.cs, txn, 0, test_now(NULL), &cells, &n), HV_OK);
	assert_int_equal(n, 2);
	free(cells);
	store_read_end(txn);
	region_map_free(other);
	fixture_close(&f);
}

/* The brief table's region map fingerprint as cap.meta holds it (32 bytes), or "" when none. */
static void
meta_fingerprint(store *st, uint8_t out[32], bool *present)
{
	store_table t;
	store_txn  *txn;
	const void *v;
	size_t      vl;

	assert_int_equal(store_table_open(st, "cap.meta", &t), HV_OK);
	assert_int_equal(store_read_begin(st, &txn), HV_OK);
	*present = store_get(txn, t, "brief_route_regions", 19, &v, &vl) == HV_OK && vl == 32;
	if (*present) {
		memcpy(out, v, 32);
	}
	store_read_end(txn);
}

/* A store-functions-only open runs nothing of its own: no expiry thread (holds stay until a
 * caller expires them), no migration of the brief table, no pub socket. */
static void
test_store_only(void **state)
{
	fixture     f;
	service_t   s;
	service_t  *got;
	cap_options o = { 0 };
	region_map *other;
	uint8_t     before[32], after[32];
	bool        had, has;
	job         j;
	char        err[128];

	(void) state;
	fixture_open(&f, true);
	assert_int_equal(add_org(&f, "shelter-s", R_PROVIDER, "Amsterdam"), HV_OK);
	svc_init(&s, "svc-s", "shelter-s", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(add_service(&f, &s, NULL), HV_OK);
	meta_fingerprint(f.st, before, &had);
	assert_true(had);
	cap_close(f.cs);

	o.store      = f.st;
	o.regions    = f.map;
	o.now_ms     = test_now;
	o.store_only = true;
	o.pub_url    = "inproc://cap-store-only";
	assert_int_equal(cap_open(&f.cs, &o), HV_INVALID_ARGUMENT);
	assert_null(f.cs);
	o.pub_url = NULL;

	/* Another region map: a full open would rebuild the brief; store-only leaves it. */
	assert_int_equal(region_map_parse("Limburg: Noord\nNoord: Limburg\n", &other, err,
	                     sizeof(err)),
	    HV_OK);
	o.regions = other;
	assert_int_equal(cap_open(&f.cs, &o), HV_OK);
	meta_fingerprint(f.st, after, &has);
	assert_true(has);
	assert_memory_equal(before, after, 32);
	assert_null(f.cs->cs_expiry);
	assert_false(f.cs->cs_pub_open);
	cap_close(f.cs);

	/* The store functions work; a hold past its time stays until a caller expires it. */
	o.regions = f.map;
	assert_int_equal(cap_open(&f.cs, &o), HV_OK);
	assert_int_equal(hold(&f, "svc-s", 1, NULL), HV_OK);
	atomic_store(&clock_offset, 5000);
	usleep(1500 * 1000); /* longer than the expiry job's period (1 s) */
	got = get_service(&f, "svc-s");
	assert_int_equal(got->held, 1);
	haven__capacity__v1__service__free_unpacked(got, NULL);
	j = (job) { .cs = f.cs, .now = test_now(NULL) };
	assert_int_equal(store_write(f.st, expire_fn, &j), HV_OK);
	assert_int_equal(j.released, 1);
	region_map_free(other);
	fixture_close(&f);
}

static void
test_open_arguments(void **state)
{
	cap_service *cs;
	cap_options  o = { 0 };
	fixture      f;

	assert_int_equal(cap_open(&cs, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(cap_open(&cs, &o), HV_INVALID_ARGUMENT);
	assert_int_equal(cap_open(NULL, &o), HV_INVALID_ARGUMENT);
	cap_close(NULL);
	cap_stop(NULL);
	fixture_open(&f, true);
	o.store   = f.st;
	o.regions = f.map;
	o.pub_url = "nonsense://x";
	assert_int_not_equal(cap_open(&cs, &o), HV_OK);
	fixture_close(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_text_and_roles),
		cmocka_unit_test(test_service_checks),
		cmocka_unit_test(test_org_checks),
		cmocka_unit_test(test_add_and_lookup),
		cmocka_unit_test(test_holds),
		cmocka_unit_test(test_expire),
		cmocka_unit_test(test_expiry_thread),
		cmocka_unit_test(test_foreach_and_summary),
		cmocka_unit_test(test_route_index),
		cmocka_unit_test(test_brief_rebuild),
		cmocka_unit_test(test_open_arguments),
		cmocka_unit_test(test_store_only),
	};
	const char *base = getenv("HAVEN_TEST_TMP");

	log_init("capacity_unit_test", LOG_LEVEL_ERROR);
	snprintf(tmp, sizeof(tmp), "%s/capunit-XXXXXX", base != NULL ? base : "/tmp");
	mkdir(base != NULL ? base : "/tmp", 0700);
	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
