/*
 * retention_test.c - retention of personal data after referrals close, with the real services:
 * capacity, consent (the vault, crypto-shredding erasure) and referral over one store, the
 * referral service served over inproc:// with organisation tokens, and a clock the tests move.
 *
 * A referral is closed when every need is COMPLETED, CANCELLED or FAILED; PLACED is open (the
 * person is with the provider). The sweep erases a subject only when all of its referrals
 * closed before the cutoff; afterwards the consent service answers NOT_FOUND for it. Checked
 * here: old closed -> erased; open (also PLACED), recently closed, or one old closed with one
 * open -> kept; idempotent sweeps with exact counts; a failed erasure retried; a crash between
 * erasure and marking finished by the next sweep; the background thread's sweeps at start and
 * on its interval; and ref.closed filled from the referrals of a store older than it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "capacity.h"
#include "consent.h"
#include "ref_internal.h"

#define M_CREATE   "haven.referral.v1.Referrals/CreateReferral"
#define M_GET      "haven.referral.v1.Referrals/GetReferral"
#define M_CANCEL   "haven.referral.v1.Referrals/CancelReferral"
#define M_DECLINE  "haven.referral.v1.Referrals/DeclineOffer"
#define M_OFFERS   "haven.referral.v1.Referrals/ListOffers"
#define M_ACCEPT   "haven.referral.v1.Referrals/AcceptOffer"
#define M_PLACED   "haven.referral.v1.Referrals/MarkPlaced"
#define M_COMPLETE "haven.referral.v1.Referrals/CompletePlacement"
#define M_AVAIL    "haven.capacity.v1.Capacity/UpdateAvailability"

#define ST(x)   HAVEN__CAPACITY__V1__SERVICE_TYPE__##x
#define POP(x)  HAVEN__CAPACITY__V1__POPULATION__##x
#define DAYS(n) ((int64_t) (n) *REF_DAY_MS)

#define REFERRER "ngo-ams"
#define PROVIDER "shelter-a"

enum { C_REFERRER, C_PROVIDER, C_N };

typedef struct fixture {
	char             dir[512];
	char             url[64];
	store           *st;
	region_map      *rm;
	cap_service     *cs;
	consent_service *cns;
	ref_service     *rs;
	auth            *au;
	rpc_server      *srv;
	rpc_channel     *ch[C_N];
} fixture;

static _Atomic int64_t clock_ms;
static atomic_int      erase_calls;
static atomic_int      erase_fail; /* the next erasures fail with UNAVAILABLE */
static int             test_no;
static char            errbuf[RPC_ERRMSG_MAX];

static int64_t
fake_now(void *arg)
{
	return (atomic_load(&clock_ms));
}

static void
advance(int64_t ms)
{
	atomic_fetch_add(&clock_ms, ms);
}

/* The node's hooks: consent_erase_subject_deferred with the node as the caller, and one key
 * rotation after a sweep. */
static hv_status
erase_hook(void *arg, const char *subject)
{
	static const rpc_caller node = { .role = RPC_ROLE_OPERATOR };

	hv_status st;

	if (atomic_load(&erase_fail) > 0) {
		atomic_fetch_sub(&erase_fail, 1);
		st = HV_UNAVAILABLE;
	} else {
		st = consent_erase_subject_deferred(arg, &node, subject, NULL);
	}
	atomic_fetch_add(&erase_calls, 1); /* counted when done: tests wait for it */
	return (st);
}

static atomic_int rotations;

static hv_status
erase_done_hook(void *arg)
{
	atomic_fetch_add(&rotations, 1);
	return (consent_rotate_kek(arg, NULL, NULL));
}

/* ---- the node under test --------------------------------------------------------------------- */

static hv_status
add_orgs_fn(store_txn *txn, void *arg)
{
	fixture                          *f   = arg;
	Haven__Capacity__V1__Organisation o   = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	Haven__Capacity__V1__Service      svc = HAVEN__CAPACITY__V1__SERVICE__INIT;
	Haven__Capacity__V1__Population   pop = POP(WOMEN);
	char                              err[256], id[CAP_ID_MAX];
	hv_status                         st;

	o.id     = REFERRER;
	o.name   = REFERRER;
	o.role   = HAVEN__CAPACITY__V1__ROLE__REFERRER;
	o.region = "Amsterdam";
	if ((st = cap_add_organisation(f->cs, txn, &o, err, sizeof(err))) != HV_OK) {
		return (st);
	}
	o.id   = PROVIDER;
	o.name = PROVIDER;
	o.role = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
	if ((st = cap_add_organisation(f->cs, txn, &o, err, sizeof(err))) != HV_OK) {
		return (st);
	}
	svc.id                 = "sh-ams";
	svc.org_id             = PROVIDER;
	svc.name               = "sh-ams";
	svc.type               = ST(SHELTER);
	svc.service_area       = "Amsterdam";
	svc.n_populations      = 1;
	svc.populations        = &pop;
	svc.maximum            = 50;
	svc.available          = 50;
	svc.front_door_contact = "intake desk";
	return (cap_add_service(f->cs, txn, &svc, id, err, sizeof(err)));
}

/* Opens the referral service (retention after 90 days) and serves it; manual: no threads. */
static void
open_ref(fixture *f, bool manual, uint32_t interval_s)
{
	ref_options        ro = { 0 };
	rpc_server_options so = { .workers = 2 };
	char               tok[AUTH_TOKEN_MAX];
	static const struct {
		const char *org;
		rpc_role    role;
	} who[C_N] = { [C_REFERRER] = { REFERRER, RPC_ROLE_REFERRER },
		[C_PROVIDER]        = { PROVIDER, RPC_ROLE_PROVIDER } };

	ro.store                = f->st;
	ro.regions              = f->rm;
	ro.capacity             = f->cs;
	ro.consent              = consent_ref_check;
	ro.consent_arg          = f->cns;
	ro.seal                 = consent_ref_seal;
	ro.unseal               = consent_ref_open;
	ro.now_ms               = fake_now;
	ro.manual               = manual;
	ro.erase                = erase_hook;
	ro.erase_done           = erase_done_hook;
	ro.erase_arg            = f->cns;
	ro.retention_days       = 90;
	ro.retention_interval_s = interval_s;
	assert_int_equal(ref_open(&f->rs, &ro), HV_OK);

	so.auth = f->au;
	assert_int_equal(rpc_server_open(&f->srv, &so), HV_OK);
	assert_int_equal(cap_register(f->cs, f->srv), HV_OK);
	assert_int_equal(ref_register(f->rs, f->srv), HV_OK);
	snprintf(f->url, sizeof(f->url), "inproc://retention-%d-%d", getpid(), ++test_no);
	assert_int_equal(rpc_server_listen(f->srv, f->url), HV_OK);
	assert_int_equal(rpc_server_start(f->srv), HV_OK);
	for (int i = 0; i < C_N; i++) {
		assert_int_equal(rpc_channel_open(&f->ch[i], f->url, NULL), HV_OK);
		assert_int_equal(auth_issue_token(f->au, who[i].org, who[i].role,
		                     hv_clock_wall_ms(), tok, NULL),
		    HV_OK);
		assert_int_equal(rpc_channel_set_token(f->ch[i], tok), HV_OK);
	}
}

static void
close_ref(fixture *f)
{
	for (int i = 0; i < C_N; i++) {
		rpc_channel_close(f->ch[i]);
		f->ch[i] = NULL;
	}
	rpc_server_close(f->srv);
	f->srv = NULL;
	ref_close(f->rs);
	f->rs = NULL;
}

static int
setup_fixture(void **state, bool manual)
{
	fixture        *f    = calloc(1, sizeof(*f));
	store_options   so   = { .no_sync = true };
	cap_options     co   = { 0 };
	consent_options no   = { 0 };
	auth_options    ao   = { .lookup = cap_lookup_org };
	const char     *base = getenv("HAVEN_TEST_TMP");

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/retention-XXXXXX", base != NULL ? base : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	atomic_store(&clock_ms, (int64_t) 1700000000000LL);
	atomic_store(&erase_calls, 0);
	atomic_store(&erase_fail, 0);
	assert_int_equal(store_open(&f->st, f->dir, &so), HV_OK);
	assert_int_equal(region_map_default(&f->rm), HV_OK);
	co.store         = f->st;
	co.regions       = f->rm;
	co.now_ms        = fake_now;
	co.manual_expiry = true;
	assert_int_equal(cap_open(&f->cs, &co), HV_OK);
	no.store    = f->st;
	no.data_dir = f->dir;
	no.now_ms   = fake_now;
	assert_int_equal(consent_open(&f->cns, &no), HV_OK);
	ao.lookup_arg = f->cs;
	memset(ao.secret, 0x42, sizeof(ao.secret));
	assert_int_equal(auth_open(&f->au, &ao), HV_OK);
	assert_int_equal(store_write(f->st, add_orgs_fn, f), HV_OK);
	open_ref(f, manual, 1);
	*state = f;
	return (0);
}

static int
setup(void **state)
{
	return (setup_fixture(state, true));
}

static int
teardown(void **state)
{
	fixture *f = *state;

	close_ref(f);
	consent_close(f->cns);
	cap_close(f->cs);
	auth_close(f->au);
	store_close(f->st);
	region_map_free(f->rm);
	free(f);
	return (0);
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

typedef struct subject_job {
	fixture *f;
	char     id[CONSENT_ID_HEX];
	char     err[CONSENT_MSG_MAX];
} subject_job;

static hv_status
subject_fn(store_txn *txn, void *arg)
{
	static const rpc_caller          ngo = { .role = RPC_ROLE_REFERRER, .org_id = REFERRER };
	subject_job                     *j   = arg;
	Haven__Consent__V1__PersonalData p   = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__GrantRequest g   = HAVEN__CONSENT__V1__GRANT_REQUEST__INIT;
	Haven__Consent__V1__Purpose      purpose = HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL;
	Haven__Consent__V1__Category     cat     = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY;
	hv_status                        st;

	p.name = "Test Person";
	if ((st = consent_create_subject_txn(j->f->cns, txn, &ngo, &p, false, j->id)) != HV_OK) {
		return (st);
	}
	g.subject            = j->id;
	g.purposes           = &purpose;
	g.n_purposes         = 1;
	g.categories         = &cat;
	g.n_categories       = 1;
	g.given_by           = HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT;
	g.method             = HAVEN__CONSENT__V1__METHOD__METHOD_WRITTEN;
	g.language           = "nl";
	g.accepting_provider = true;
	g.expires_ms         = atomic_load(&clock_ms) + DAYS(5 * 365);
	return (consent_grant_txn(j->f->cns, txn, &ngo, &g, NULL, j->err, sizeof(j->err)));
}

/* A new subject with personal data and consent for referral. */
static void
new_subject(fixture *f, char id[CONSENT_ID_HEX])
{
	subject_job j = { .f = f };

	if (store_write(f->st, subject_fn, &j) != HV_OK) {
		fail_msg("new subject: %s", j.err);
	}
	memcpy(id, j.id, CONSENT_ID_HEX);
}

/* HV_OK while the subject's personal data exists, HV_NOT_FOUND once erased. */
static hv_status
subject_state(fixture *f, const char *id)
{
	store_txn *txn;
	bool       minor;
	hv_status  st;

	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	st = consent_subject_minor_txn(f->cns, txn, id, &minor);
	store_read_end(txn);
	return (st);
}

static hv_status
call(fixture *f, int who, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, void *out, const char *key)
{
	rpc_call_options  o = { .timeout_ms = 10000, .idempotency_key = key };
	ProtobufCMessage *r = NULL;
	hv_status         st;

	errbuf[0] = '\0';
	st        = rpc_channel_call(f->ch[who], method, req, rd, &r, &o, errbuf, sizeof(errbuf));
	if (out != NULL) {
		*(ProtobufCMessage **) out = r;
	} else if (r != NULL) {
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

/* The provider confirms its figure (months pass in these tests: it would be stale). */
static void
confirm_places(fixture *f)
{
	Haven__Capacity__V1__UpdateAvailabilityRequest req =
	    HAVEN__CAPACITY__V1__UPDATE_AVAILABILITY_REQUEST__INIT;
	Haven__Capacity__V1__Service *svc = NULL;
	store_txn                    *txn;

	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(cap_get_service(f->cs, txn, "sh-ams", &svc), HV_OK);
	store_read_end(txn);
	req.service_id       = "sh-ams";
	req.available        = 50;
	req.based_on_version = svc->version;
	haven__capacity__v1__service__free_unpacked(svc, NULL);
	if (call(f, C_PROVIDER, M_AVAIL, &req.base, &haven__capacity__v1__service_view__descriptor,
	        NULL, NULL) != HV_OK) {
		fail_msg("update availability: %s", errbuf);
	}
}

/* A referral for one shelter place with a note: offered at once to sh-ams. id: the
 * referral's id, offer: its offer's (both REF_ID sized). */
static void
refer_note(fixture *f, const char *subject, const char *note, char id[IDS_MAX], char offer[IDS_MAX])
{
	Haven__Referral__V1__CreateReferralRequest req =
	    HAVEN__REFERRAL__V1__CREATE_REFERRAL_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest  need = HAVEN__REFERRAL__V1__NEED_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest *np   = &need;
	Referral                         *r    = NULL;
	char                              key[64];
	static int                        seq;

	need.type        = ST(SHELTER);
	need.population  = POP(WOMEN);
	req.subject      = (char *) subject;
	req.urgency      = HAVEN__REFERRAL__V1__URGENCY__URGENT;
	req.exploitation = HAVEN__REFERRAL__V1__EXPLOITATION__LABOUR;
	req.n_needs      = 1;
	req.needs        = &np;
	req.note         = (char *) note;
	snprintf(key, sizeof(key), "key-%d", ++seq);
	confirm_places(f);
	if (call(f, C_REFERRER, M_CREATE, &req.base, &haven__referral__v1__referral__descriptor, &r,
	        key) != HV_OK) {
		fail_msg("create: %s", errbuf);
	}
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	snprintf(id, IDS_MAX, "%s", r->id);
	snprintf(offer, IDS_MAX, "%s", r->needs[0]->offer_id);
	haven__referral__v1__referral__free_unpacked(r, NULL);
}

static void
refer(fixture *f, const char *subject, char id[IDS_MAX], char offer[IDS_MAX])
{
	refer_note(f, subject, "met at the station", id, offer);
}

static void
cancel_reason(fixture *f, const char *id, const char *reason)
{
	Haven__Referral__V1__CancelReferralRequest req =
	    HAVEN__REFERRAL__V1__CANCEL_REFERRAL_REQUEST__INIT;

	req.id     = (char *) id;
	req.reason = (char *) reason;
	if (call(f, C_REFERRER, M_CANCEL, &req.base, &haven__referral__v1__referral__descriptor,
	        NULL, NULL) != HV_OK) {
		fail_msg("cancel: %s", errbuf);
	}
}

static void
cancel(fixture *f, const char *id)
{
	cancel_reason(f, id, "no longer needed");
}

/* The provider accepts and marks the person placed (the referral stays open). */
static void
place(fixture *f, const char *offer)
{
	Haven__Referral__V1__OfferActionRequest a = HAVEN__REFERRAL__V1__OFFER_ACTION_REQUEST__INIT;
	Haven__Referral__V1__PlacementRequest   p = HAVEN__REFERRAL__V1__PLACEMENT_REQUEST__INIT;

	a.offer_id = (char *) offer;
	p.offer_id = (char *) offer;
	assert_int_equal(call(f, C_PROVIDER, M_ACCEPT, &a.base,
	                     &haven__referral__v1__offer__descriptor, NULL, NULL),
	    HV_OK);
	assert_int_equal(call(f, C_PROVIDER, M_PLACED, &p.base,
	                     &haven__referral__v1__offer__descriptor, NULL, NULL),
	    HV_OK);
}

static void
complete(fixture *f, const char *offer)
{
	Haven__Referral__V1__PlacementRequest p = HAVEN__REFERRAL__V1__PLACEMENT_REQUEST__INIT;

	p.offer_id = (char *) offer;
	assert_int_equal(call(f, C_PROVIDER, M_COMPLETE, &p.base,
	                     &haven__referral__v1__offer__descriptor, NULL, NULL),
	    HV_OK);
}

static Referral *
get(fixture *f, const char *id)
{
	Haven__Referral__V1__GetReferralRequest req =
	    HAVEN__REFERRAL__V1__GET_REFERRAL_REQUEST__INIT;
	Referral *r = NULL;

	req.id = (char *) id;
	assert_int_equal(call(f, C_REFERRER, M_GET, &req.base,
	                     &haven__referral__v1__referral__descriptor, &r, NULL),
	    HV_OK);
	return (r);
}

/* Asserts a referral's retention fields: closed (at closed_ms, or any time when -1) or open
 * (0), and whether retention erased its subject. */
static void
expect_ref(fixture *f, const char *id, int64_t closed_ms, bool erased)
{
	Referral *r = get(f, id);

	if (closed_ms < 0) {
		assert_true(r->closed_ms > 0);
	} else {
		assert_int_equal(r->closed_ms, closed_ms);
	}
	if (erased) {
		assert_true(r->subject_erased_ms > 0);
		assert_string_equal(r->note, "");
		assert_string_equal(r->events[r->n_events - 1]->reason, REF_ERASED_REASON);
		assert_int_equal(r->version, r->n_events);
	} else {
		assert_int_equal(r->subject_erased_ms, 0);
		assert_string_equal(r->note, "met at the station");
	}
	haven__referral__v1__referral__free_unpacked(r, NULL);
}

typedef struct due_list {
	char     subjects[16][REF_SUBJECT_LEN + 1];
	unsigned n;
} due_list;

static hv_status
due_collect(void *arg, const char *subject, bool *stop)
{
	due_list *d = arg;

	assert_true(d->n < 16);
	snprintf(d->subjects[d->n++], REF_SUBJECT_LEN + 1, "%s", subject);
	return (HV_OK);
}

/* The subjects due at the service's retention cutoff now. */
static void
due_now(fixture *f, due_list *d)
{
	store_txn *txn;

	memset(d, 0, sizeof(*d));
	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(ref_retention_due(f->rs, txn, atomic_load(&clock_ms) - DAYS(90),
	                     due_collect, d),
	    HV_OK);
	store_read_end(txn);
}

static bool
due_has(const due_list *d, const char *subject)
{
	for (unsigned i = 0; i < d->n; i++) {
		if (strcmp(d->subjects[i], subject) == 0) {
			return (true);
		}
	}
	return (false);
}

static void
sweep(fixture *f, unsigned subjects, unsigned referrals, unsigned kept, unsigned failed)
{
	ref_retention_stats s;

	assert_int_equal(ref_retention_run(f->rs, &s), HV_OK);
	assert_int_equal(s.rr_cutoff_ms, atomic_load(&clock_ms) - DAYS(90));
	assert_int_equal(s.rr_subjects, subjects);
	assert_int_equal(s.rr_referrals, referrals);
	assert_int_equal(s.rr_kept, kept);
	assert_int_equal(s.rr_failed, failed);
}

/* ---- scenarios ------------------------------------------------------------------------------- */

static void
test_closed_means_final(void **state)
{
	Need      n1 = HAVEN__REFERRAL__V1__NEED__INIT, n2 = n1;
	Need     *needs[2] = { &n1, &n2 };
	Referral  r        = HAVEN__REFERRAL__V1__REFERRAL__INIT;
	NeedState open[]   = { NS(WAITING), NS(OFFERED), NS(ACCEPTED), NS(PLACED), NS(ON_HOLD) };
	NeedState fin[]    = { NS(COMPLETED), NS(CANCELLED), NS(FAILED) };

	assert_false(ref_referral_closed(&r)); /* no needs */
	r.needs   = needs;
	r.n_needs = 2;
	for (size_t i = 0; i < 3; i++) {
		for (size_t k = 0; k < 3; k++) {
			n1.state = fin[i];
			n2.state = fin[k];
			assert_true(ref_referral_closed(&r));
		}
		for (size_t k = 0; k < 5; k++) {
			n1.state = fin[i];
			n2.state = open[k];
			assert_false(ref_need_final(&n2));
			assert_false(ref_referral_closed(&r));
		}
	}
}

static void
test_sweep(void **state)
{
	fixture *f  = *state;
	int64_t  t0 = atomic_load(&clock_ms);
	char     sa[CONSENT_ID_HEX], sb[CONSENT_ID_HEX], sc[CONSENT_ID_HEX], sd[CONSENT_ID_HEX],
	    se[CONSENT_ID_HEX];
	char ra[IDS_MAX], rb1[IDS_MAX], rb2[IDS_MAX], rc[IDS_MAX], rd[IDS_MAX], re1[IDS_MAX],
	    re2[IDS_MAX];
	char oa[IDS_MAX], ob1[IDS_MAX], ob2[IDS_MAX], oc[IDS_MAX], od[IDS_MAX], oe1[IDS_MAX],
	    oe2[IDS_MAX];
	due_list d;

	/* Nothing closed yet: nothing due, and a sweep says so. */
	sweep(f, 0, 0, 0, 0);

	/* A: one referral, cancelled now. */
	new_subject(f, sa);
	refer(f, sa, ra, oa);
	cancel(f, ra);
	expect_ref(f, ra, t0, false);
	/* B: one cancelled now, one placed (open: the person is with the provider). */
	new_subject(f, sb);
	refer(f, sb, rb1, ob1);
	cancel(f, rb1);
	refer(f, sb, rb2, ob2);
	place(f, ob2);
	expect_ref(f, rb2, 0, false);
	/* C: placed now and never completed. */
	new_subject(f, sc);
	refer(f, sc, rc, oc);
	place(f, oc);
	/* E: two referrals, one cancelled, one completed. */
	new_subject(f, se);
	refer(f, se, re1, oe1);
	refer(f, se, re2, oe2);
	cancel(f, re1);
	place(f, oe2);
	advance(1000);
	complete(f, oe2);
	expect_ref(f, re2, t0 + 1000, false);
	/* D: closed 80 days later. */
	advance(DAYS(80));
	new_subject(f, sd);
	refer(f, sd, rd, od);
	cancel(f, rd);

	/* Day 80: nothing closed 90 days ago yet. */
	due_now(f, &d);
	assert_int_equal(d.n, 0);
	sweep(f, 0, 0, 0, 0);
	assert_int_equal(atomic_load(&erase_calls), 0);

	/* Day 91: A and E are due (E once for its two referrals); B is kept for its open
	 * referral, C is open, D closed 11 days ago. */
	advance(DAYS(11));
	due_now(f, &d);
	assert_int_equal(d.n, 2);
	assert_true(due_has(&d, sa));
	assert_true(due_has(&d, se));
	sweep(f, 2, 3, 1, 0);
	assert_int_equal(atomic_load(&erase_calls), 2);
	assert_int_equal(subject_state(f, sa), HV_NOT_FOUND);
	assert_int_equal(subject_state(f, se), HV_NOT_FOUND);
	assert_int_equal(subject_state(f, sb), HV_OK);
	assert_int_equal(subject_state(f, sc), HV_OK);
	assert_int_equal(subject_state(f, sd), HV_OK);
	expect_ref(f, ra, t0, true);
	expect_ref(f, re1, t0, true);
	expect_ref(f, re2, t0 + 1000, true);
	expect_ref(f, rb1, t0, false);
	expect_ref(f, rb2, 0, false);
	expect_ref(f, rc, 0, false);
	expect_ref(f, rd, -1, false);

	/* Idempotent: the same sweep again erases nothing and asks the hook nothing. */
	sweep(f, 0, 0, 1, 0);
	assert_int_equal(atomic_load(&erase_calls), 2);
	due_now(f, &d);
	assert_int_equal(d.n, 0);

	/* B's placement ends now: both closed, but one recently, so B is still kept. */
	complete(f, ob2);
	sweep(f, 0, 0, 1, 0);
	assert_int_equal(subject_state(f, sb), HV_OK);

	/* 91 days on: B (two referrals) and D are due; C is still placed. */
	advance(DAYS(91));
	sweep(f, 2, 3, 0, 0);
	assert_int_equal(subject_state(f, sb), HV_NOT_FOUND);
	assert_int_equal(subject_state(f, sd), HV_NOT_FOUND);
	assert_int_equal(subject_state(f, sc), HV_OK);
	expect_ref(f, rb1, t0, true);
	expect_ref(f, rb2, -1, true);
	expect_ref(f, rd, -1, true);
	expect_ref(f, rc, 0, false);
	assert_int_equal(atomic_load(&erase_calls), 4);

	/* C completes; 91 days on its erasure fails once: kept, counted, tried again. */
	complete(f, oc);
	advance(DAYS(91));
	atomic_store(&erase_fail, 1);
	sweep(f, 0, 0, 0, 1);
	assert_int_equal(subject_state(f, sc), HV_OK);
	expect_ref(f, rc, -1, false);
	sweep(f, 1, 1, 0, 0);
	assert_int_equal(subject_state(f, sc), HV_NOT_FOUND);
	expect_ref(f, rc, -1, true);
	sweep(f, 0, 0, 0, 0);
	assert_int_equal(atomic_load(&erase_calls), 6);
}

/* Erased in the consent service but not marked (a crash in between, or an operator's
 * EraseSubject): the next sweep marks it without erasing anything. */
static void
test_erased_elsewhere(void **state)
{
	fixture                *f  = *state;
	static const rpc_caller op = { .role = RPC_ROLE_OPERATOR };
	char                    s[CONSENT_ID_HEX], r[IDS_MAX], o[IDS_MAX];

	new_subject(f, s);
	refer(f, s, r, o);
	cancel(f, r);
	assert_int_equal(consent_erase_subject(f->cns, &op, s, NULL, NULL), HV_OK);
	advance(DAYS(90) + 1);
	sweep(f, 1, 1, 0, 0);
	assert_int_equal(atomic_load(&erase_calls), 1); /* it answered NOT_FOUND */
	expect_ref(f, r, -1, true);
	sweep(f, 0, 0, 0, 0);
	assert_int_equal(atomic_load(&erase_calls), 1);
}

/* More due subjects than one batch: every one erased in one sweep. */
static void
test_many(void **state)
{
	fixture *f = *state;
	enum { N = REF_BATCH + 5 };
	char s[N][CONSENT_ID_HEX], r[IDS_MAX], o[IDS_MAX];

	for (int i = 0; i < N; i++) {
		new_subject(f, s[i]);
		refer(f, s[i], r, o);
		cancel(f, r);
		advance(1);
	}
	advance(DAYS(90));
	/* One key rotation for the whole sweep, not one per subject: the generation moves by
	 * one between two rotations of the test's own. */
	int r0 = atomic_load(&rotations);
	{
		uint64_t g0, g1;
		assert_int_equal(consent_rotate_kek(f->cns, &g0, NULL), HV_OK);
		sweep(f, N, N, 0, 0);
		assert_int_equal(consent_rotate_kek(f->cns, &g1, NULL), HV_OK);
		assert_int_equal(g1, g0 + 2);
		assert_int_equal(atomic_load(&rotations), r0 + 1);
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(subject_state(f, s[i]), HV_NOT_FOUND);
	}
	sweep(f, 0, 0, 0, 0); /* nothing erased: no rotation */
	assert_int_equal(atomic_load(&rotations), r0 + 1);
}

static void
wait_erase_calls(int n)
{
	for (int i = 0; i < 3000 && atomic_load(&erase_calls) < n; i++) {
		usleep(10000);
	}
	assert_int_equal(atomic_load(&erase_calls), n);
}

/* The background thread sweeps at start and then on its interval (1 s here). */
static void
test_thread(void **state)
{
	fixture *f = *state;
	char     s1[CONSENT_ID_HEX], s2[CONSENT_ID_HEX], r[IDS_MAX], o[IDS_MAX];

	new_subject(f, s1);
	refer(f, s1, r, o);
	cancel(f, r);
	advance(DAYS(91));
	/* A restart: the sweep at start erases s1. */
	close_ref(f);
	open_ref(f, false, 1);
	wait_erase_calls(1);
	assert_int_equal(subject_state(f, s1), HV_NOT_FOUND);
	/* Then each interval. */
	new_subject(f, s2);
	refer(f, s2, r, o);
	cancel(f, r);
	advance(DAYS(91));
	wait_erase_calls(2);
	assert_int_equal(subject_state(f, s2), HV_NOT_FOUND);
	for (int i = 0; i < 3000; i++) {
		Referral *x      = get(f, r);
		bool      marked = x->subject_erased_ms != 0;
		haven__referral__v1__referral__free_unpacked(x, NULL);
		if (marked) {
			break;
		}
		usleep(10000);
	}
	expect_ref(f, r, -1, true);
}

/* ---- free text: sealed under the subject's key, shredded by erasure ----------------------- */

/* Markers that cannot occur in the store by chance. */
#define MARK_NOTE    "Sentinel-note-Qx7"
#define MARK_CANCEL  "Sentinel-cancel-Qx7"
#define MARK_DECLINE "Sentinel-decline-Qx7"

static bool
file_has(const char *path, const char *what)
{
	FILE  *fp = fopen(path, "rb");
	size_t n = strlen(what), len = 0, cap = 0;
	char  *buf   = NULL;
	bool   found = false;
	int    c;

	assert_non_null(fp);
	while ((c = fgetc(fp)) != EOF) {
		if (len == cap) {
			cap = cap > 0 ? 2 * cap : 1 << 20;
			assert_non_null(buf = realloc(buf, cap));
		}
		buf[len++] = (char) c;
	}
	fclose(fp);
	for (size_t i = 0; !found && i + n <= len; i++) {
		found = memcmp(buf + i, what, n) == 0;
	}
	free(buf);
	return (found);
}

/* No marker in the store's data file, nor in a backup made now (the admin backup's copy). */
static void
expect_no_plaintext(fixture *f, bool check_data_file)
{
	static int               backups;
	static const char *const marks[] = { MARK_NOTE, MARK_CANCEL, MARK_DECLINE };
	char                     path[700];

	snprintf(path, sizeof(path), "%s/backup-%d", f->dir, ++backups);
	assert_int_equal(store_backup(f->st, path), HV_OK);
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/data.mdb");
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		char data[700];

		snprintf(data, sizeof(data), "%s/data.mdb", f->dir);
		if (check_data_file && file_has(data, marks[i])) {
			fail_msg("'%s' found in the store's data file", marks[i]);
		}
		if (file_has(path, marks[i])) {
			fail_msg("'%s' found in the backup", marks[i]);
		}
	}
}

static void
decline_other(fixture *f, const char *offer, const char *text)
{
	Haven__Referral__V1__OfferActionRequest a = HAVEN__REFERRAL__V1__OFFER_ACTION_REQUEST__INIT;

	a.offer_id       = (char *) offer;
	a.decline_reason = HAVEN__REFERRAL__V1__DECLINE_REASON__DECLINE_OTHER;
	a.text           = (char *) text;
	if (call(f, C_PROVIDER, M_DECLINE, &a.base, &haven__referral__v1__offer__descriptor, NULL,
	        NULL) != HV_OK) {
		fail_msg("decline: %s", errbuf);
	}
}

/* The decline text of the provider's offer, as ListOffers shows it to the provider. */
static void
expect_decline_text(fixture *f, const char *offer, const char *text)
{
	Haven__Referral__V1__ListOffersRequest req = HAVEN__REFERRAL__V1__LIST_OFFERS_REQUEST__INIT;
	Haven__Referral__V1__ListOffersResponse *resp = NULL;
	bool                                     seen = false;

	assert_int_equal(call(f, C_PROVIDER, M_OFFERS, &req.base,
	                     &haven__referral__v1__list_offers_response__descriptor, &resp, NULL),
	    HV_OK);
	for (size_t i = 0; i < resp->n_offers; i++) {
		if (strcmp(resp->offers[i]->id, offer) == 0) {
			assert_string_equal(resp->offers[i]->decline_text, text);
			assert_int_equal(resp->offers[i]->sealed_decline_text.len, 0);
			seen = true;
		}
	}
	assert_true(seen);
	haven__referral__v1__list_offers_response__free_unpacked(resp, NULL);
}

/* The referral's events as the referrer sees them: the decline's and the cancel's reasons. */
static void
expect_texts(fixture *f, const char *id, const char *note, const char *declined,
    const char *cancelled)
{
	Referral *r           = get(f, id);
	bool      saw_decline = false;

	assert_string_equal(r->note, note);
	assert_int_equal(r->sealed_note.len, 0);
	for (size_t i = 0; i < r->n_events; i++) {
		assert_int_equal(r->events[i]->sealed_text.len, 0);
		if (strncmp(r->events[i]->reason, "declined: ", 10) == 0) {
			assert_string_equal(r->events[i]->reason, declined);
			saw_decline = true;
		}
		if (strncmp(r->events[i]->reason, "cancelled", 9) == 0) {
			assert_string_equal(r->events[i]->reason, cancelled);
		}
	}
	assert_true(saw_decline);
	haven__referral__v1__referral__free_unpacked(r, NULL);
}

/* The stored form of a referral (for checks of what is at rest). */
static Referral *
stored(fixture *f, const char *id)
{
	store_table t;
	store_txn  *txn;
	Referral   *r = NULL;

	assert_int_equal(store_table_open(f->st, "ref.referrals", &t), HV_OK);
	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(store_get_msg(txn, t, id, strlen(id),
	                     &haven__referral__v1__referral__descriptor, NULL,
	                     (ProtobufCMessage **) &r),
	    HV_OK);
	store_read_end(txn);
	return (r);
}

/* A note, a decline text and a cancel reason round-trip for the referrer (and the decline
 * text for its provider), yet none is in the store file or a backup; after EraseSubject they
 * read as "" (a reason keeps its code) without an error, and are still nowhere. */
static void
test_text_sealed_then_erased(void **state)
{
	fixture                *f  = *state;
	static const rpc_caller op = { .role = RPC_ROLE_OPERATOR };
	char                    s[CONSENT_ID_HEX], r[IDS_MAX], o[IDS_MAX], r2[IDS_MAX], o2[IDS_MAX];
	Referral               *x;

	new_subject(f, s);
	refer_note(f, s, "note " MARK_NOTE, r2, o2); /* still open at the erasure */
	refer_note(f, s, "note " MARK_NOTE, r, o);
	decline_other(f, o, MARK_DECLINE);
	cancel_reason(f, r, "reason " MARK_CANCEL);
	expect_texts(f, r, "note " MARK_NOTE, "declined: decline-other: " MARK_DECLINE,
	    "cancelled: reason " MARK_CANCEL);
	expect_decline_text(f, o, MARK_DECLINE);
	expect_no_plaintext(f, true);
	x = stored(f, r);
	assert_string_equal(x->note, "");
	assert_true(x->sealed_note.len > strlen("note " MARK_NOTE));
	assert_string_equal(x->events[x->n_events - 1]->reason, "cancelled");
	haven__referral__v1__referral__free_unpacked(x, NULL);

	assert_int_equal(consent_erase_subject(f->cns, &op, s, NULL, NULL), HV_OK);
	expect_texts(f, r, "", "declined: decline-other", "cancelled");
	expect_decline_text(f, o, "");
	expect_no_plaintext(f, true);
	/* Cancelling the open one still works; its reason about the erased person is not kept. */
	cancel_reason(f, r2, "reason " MARK_CANCEL);
	x = get(f, r2);
	assert_string_equal(x->note, "");
	assert_string_equal(x->events[x->n_events - 1]->reason, "cancelled");
	haven__referral__v1__referral__free_unpacked(x, NULL);
	x = stored(f, r2);
	assert_int_equal(x->events[x->n_events - 1]->sealed_text.len, 0);
	haven__referral__v1__referral__free_unpacked(x, NULL);
	expect_no_plaintext(f, true);
}

/* Retention's erasure: the text reads as "" and its sealed form is dropped from the record. */
static void
test_text_retention(void **state)
{
	fixture  *f = *state;
	char      s[CONSENT_ID_HEX], r[IDS_MAX], o[IDS_MAX];
	Referral *x;

	new_subject(f, s);
	refer_note(f, s, "note " MARK_NOTE, r, o);
	decline_other(f, o, MARK_DECLINE);
	cancel_reason(f, r, "reason " MARK_CANCEL);
	advance(DAYS(90) + 1);
	sweep(f, 1, 1, 0, 0);
	expect_texts(f, r, "", "declined: decline-other", "cancelled");
	expect_ref(f, r, -1, true);
	x = stored(f, r);
	assert_int_equal(x->sealed_note.len, 0);
	for (size_t i = 0; i < x->n_events; i++) {
		assert_int_equal(x->events[i]->sealed_text.len, 0);
	}
	haven__referral__v1__referral__free_unpacked(x, NULL);
	expect_no_plaintext(f, true);
}

typedef struct move_job {
	const char *from, *to;
	store_table t;
} move_job;

/* Copies the sealed note of one referral into another, as someone writing to the store
 * file could. */
static hv_status
move_note_fn(store_txn *txn, void *arg)
{
	move_job   *j = arg;
	store_table t = j->t;
	Referral   *a = NULL, *b = NULL;
	hv_status   st;

	if ((st = store_get_msg(txn, t, j->from, strlen(j->from),
	         &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &a)) ==
	        HV_OK &&
	    (st = store_get_msg(txn, t, j->to, strlen(j->to),
	         &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &b)) ==
	        HV_OK) {
		ProtobufCBinaryData keep = b->sealed_note;

		b->sealed_note = a->sealed_note;
		st             = store_put_msg(txn, t, j->to, strlen(j->to), &b->base);
		b->sealed_note = keep;
	}
	if (a != NULL) {
		haven__referral__v1__referral__free_unpacked(a, NULL);
	}
	if (b != NULL) {
		haven__referral__v1__referral__free_unpacked(b, NULL);
	}
	return (st);
}

/* A sealed note moved to another referral of the same subject, or to another subject's, does
 * not open there: DATA_LOSS, never the text. */
static void
test_text_bound_to_place(void **state)
{
	fixture                                *f = *state;
	char                                    sa[CONSENT_ID_HEX], sb[CONSENT_ID_HEX];
	char                                    ra1[IDS_MAX], ra2[IDS_MAX], rb[IDS_MAX], o[IDS_MAX];
	Haven__Referral__V1__GetReferralRequest req =
	    HAVEN__REFERRAL__V1__GET_REFERRAL_REQUEST__INIT;
	move_job    j;
	Referral   *x;
	store_table t;

	new_subject(f, sa);
	new_subject(f, sb);
	refer_note(f, sa, "note " MARK_NOTE, ra1, o);
	refer_note(f, sa, "another note", ra2, o);
	refer_note(f, sb, "b's note", rb, o);
	assert_int_equal(store_table_open(f->st, "ref.referrals", &t), HV_OK);
	j = (move_job) { ra1, ra2, t };
	assert_int_equal(store_write(f->st, move_note_fn, &j), HV_OK);
	j = (move_job) { ra1, rb, t };
	assert_int_equal(store_write(f->st, move_note_fn, &j), HV_OK);
	req.id = ra2;
	assert_int_equal(call(f, C_REFERRER, M_GET, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_DATA_LOSS);
	assert_null(strstr(errbuf, MARK_NOTE));
	req.id = rb;
	assert_int_equal(call(f, C_REFERRER, M_GET, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_DATA_LOSS);
	x = get(f, ra1); /* its own place still opens */
	assert_string_equal(x->note, "note " MARK_NOTE);
	haven__referral__v1__referral__free_unpacked(x, NULL);
}

/* A store written before sealing: free text in the clear (the note, "cancelled: <text>",
 * "declined: <code>: <text>", an offer's decline_text), and no REF_META_SEALED. */
typedef struct plain_job {
	const char *id, *offer;
	store_table referrals, offers, meta;
} plain_job;

static hv_status
make_plain_fn(store_txn *txn, void *arg)
{
	plain_job          *j = arg;
	Referral           *r = NULL;
	Offer              *o = NULL;
	char               *keep_reason[64];
	ProtobufCBinaryData keep_text[64], keep_note, keep_decline;
	char               *keep_str, *keep_dstr;
	hv_status           st;

	if ((st = store_get_msg(txn, j->referrals, j->id, strlen(j->id),
	         &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r)) !=
	        HV_OK ||
	    (st = store_get_msg(txn, j->offers, j->offer, strlen(j->offer),
	         &haven__referral__v1__offer__descriptor, NULL, (ProtobufCMessage **) &o)) !=
	        HV_OK) {
		goto out;
	}
	/* Plaintext in place of the sealed fields, packed, then the unpacked values put back
	 * for free_unpacked. */
	assert_true(r->n_events <= 64);
	keep_str       = r->note;
	keep_note      = r->sealed_note;
	r->note        = "note " MARK_NOTE;
	r->sealed_note = (ProtobufCBinaryData) { 0 };
	for (size_t i = 0; i < r->n_events; i++) {
		Event *e       = r->events[i];
		keep_reason[i] = e->reason;
		keep_text[i]   = e->sealed_text;
		if (strcmp(e->reason, "cancelled") == 0) {
			e->reason = "cancelled: reason " MARK_CANCEL;
		} else if (strcmp(e->reason, "declined: decline-other") == 0) {
			e->reason = "declined: decline-other: " MARK_DECLINE;
		}
		e->sealed_text = (ProtobufCBinaryData) { 0 };
	}
	keep_dstr              = o->decline_text;
	keep_decline           = o->sealed_decline_text;
	o->decline_text        = MARK_DECLINE;
	o->sealed_decline_text = (ProtobufCBinaryData) { 0 };
	if ((st = store_put_msg(txn, j->referrals, j->id, strlen(j->id), &r->base)) == HV_OK &&
	    (st = store_put_msg(txn, j->offers, j->offer, strlen(j->offer), &o->base)) == HV_OK) {
		st = store_del(txn, j->meta, REF_META_SEALED, strlen(REF_META_SEALED));
		st = st == HV_NOT_FOUND ? HV_OK : st;
	}
	r->note        = keep_str;
	r->sealed_note = keep_note;
	for (size_t i = 0; i < r->n_events; i++) {
		r->events[i]->reason      = keep_reason[i];
		r->events[i]->sealed_text = keep_text[i];
	}
	o->decline_text        = keep_dstr;
	o->sealed_decline_text = keep_decline;
out:
	if (r != NULL) {
		haven__referral__v1__referral__free_unpacked(r, NULL);
	}
	if (o != NULL) {
		haven__referral__v1__offer__free_unpacked(o, NULL);
	}
	return (st);
}

static void
make_plain(fixture *f, const char *id, const char *offer)
{
	plain_job j = { .id = id, .offer = offer };

	assert_int_equal(store_table_open(f->st, "ref.referrals", &j.referrals), HV_OK);
	assert_int_equal(store_table_open(f->st, "ref.offers", &j.offers), HV_OK);
	assert_int_equal(store_table_open(f->st, "ref.meta", &j.meta), HV_OK);
	assert_int_equal(store_write(f->st, make_plain_fn, &j), HV_OK);
}

/* Opening the service seals the plaintext of an older store (and drops that of a subject
 * erased meanwhile): answers are as before, the record holds only sealed text, and a backup
 * has none of it. */
static void
test_text_migrated(void **state)
{
	fixture                *f  = *state;
	static const rpc_caller op = { .role = RPC_ROLE_OPERATOR };
	char                    s[CONSENT_ID_HEX], r[IDS_MAX], o[IDS_MAX];
	char                    s2[CONSENT_ID_HEX], r2[IDS_MAX], o2[IDS_MAX];
	char                    data[700];
	Referral               *x;

	new_subject(f, s);
	refer_note(f, s, "note", r, o);
	decline_other(f, o, "x");
	cancel_reason(f, r, "y");
	new_subject(f, s2);
	refer_note(f, s2, "note", r2, o2);
	decline_other(f, o2, "x");
	cancel_reason(f, r2, "y");
	make_plain(f, r, o);
	make_plain(f, r2, o2);
	snprintf(data, sizeof(data), "%s/data.mdb", f->dir);
	assert_true(file_has(data, MARK_NOTE)); /* the grep sees plaintext when it is there */
	assert_int_equal(consent_erase_subject(f->cns, &op, s2, NULL, NULL), HV_OK);

	close_ref(f);
	open_ref(f, true, 0);
	expect_texts(f, r, "note " MARK_NOTE, "declined: decline-other: " MARK_DECLINE,
	    "cancelled: reason " MARK_CANCEL);
	expect_decline_text(f, o, MARK_DECLINE);
	expect_texts(f, r2, "", "declined: decline-other", "cancelled");
	x = stored(f, r);
	assert_string_equal(x->note, "");
	assert_true(x->sealed_note.len > 0);
	assert_string_equal(x->events[x->n_events - 1]->reason, "cancelled");
	assert_true(x->events[x->n_events - 1]->sealed_text.len > 0);
	haven__referral__v1__referral__free_unpacked(x, NULL);
	x = stored(f, r2);
	assert_string_equal(x->note, "");
	assert_int_equal(x->sealed_note.len, 0);
	haven__referral__v1__referral__free_unpacked(x, NULL);
	/* Free pages of the data file may keep the old plaintext until reused; a backup, which
	 * copies live pages only, has none. */
	expect_no_plaintext(f, false);
	/* Once: a second open changes nothing. */
	close_ref(f);
	open_ref(f, true, 0);
	expect_texts(f, r, "note " MARK_NOTE, "declined: decline-other: " MARK_DECLINE,
	    "cancelled: reason " MARK_CANCEL);
}

/* A store written before ref.closed existed: referrals closed without closed_ms or an index
 * entry. Opening the service fills both from the event trail. */
typedef struct old_job {
	ref_service *rs;
	const char  *id;
	store_table  referrals, closed, meta;
} old_job;

static hv_status
make_old_fn(store_txn *txn, void *arg)
{
	old_job  *j = arg;
	Referral *r = NULL;
	uint8_t   key[REF_KEY_MAX];
	hv_status st;

	if ((st = store_get_msg(txn, j->referrals, j->id, strlen(j->id),
	         &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r)) !=
	    HV_OK) {
		return (st);
	}
	assert_int_equal(store_del(txn, j->closed, key, ref_key_closed(key, r->closed_ms, r->id)),
	    HV_OK);
	r->closed_ms = 0;
	st           = store_put_msg(txn, j->referrals, j->id, strlen(j->id), &r->base);
	haven__referral__v1__referral__free_unpacked(r, NULL);
	if (st == HV_OK) {
		st = store_del(txn, j->meta, REF_META_CLOSED, strlen(REF_META_CLOSED));
	}
	return (st);
}

static void
test_backfill(void **state)
{
	fixture *f  = *state;
	int64_t  t0 = atomic_load(&clock_ms);
	char     s[CONSENT_ID_HEX], r[IDS_MAX], o[IDS_MAX], s2[CONSENT_ID_HEX], r2[IDS_MAX];
	old_job  j = { 0 };
	due_list d;

	new_subject(f, s);
	refer(f, s, r, o);
	advance(5000);
	cancel(f, r);
	new_subject(f, s2);
	refer(f, s2, r2, o); /* open: not indexed */
	j.id = r;
	assert_int_equal(store_table_open(f->st, "ref.referrals", &j.referrals), HV_OK);
	assert_int_equal(store_table_open(f->st, "ref.closed", &j.closed), HV_OK);
	assert_int_equal(store_table_open(f->st, "ref.meta", &j.meta), HV_OK);
	assert_int_equal(store_write(f->st, make_old_fn, &j), HV_OK);
	expect_ref(f, r, 0, false);

	close_ref(f);
	open_ref(f, true, 0);
	expect_ref(f, r, t0 + 5000, false); /* the time of the cancel event */
	expect_ref(f, r2, 0, false);
	advance(DAYS(90) + 1);
	due_now(f, &d);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.subjects[0], s);
	sweep(f, 1, 1, 0, 0);
	/* Filled once: a second open changes nothing. */
	close_ref(f);
	open_ref(f, true, 0);
	sweep(f, 0, 0, 0, 0);
}

static void
test_options(void **state)
{
	fixture            *f  = *state;
	ref_options         ro = { 0 };
	ref_service        *rs = NULL;
	ref_retention_stats s;
	store_txn          *txn;

	/* Without the hook or a period there is no retention to run. */
	ro.store    = f->st;
	ro.regions  = f->rm;
	ro.capacity = f->cs;
	ro.manual   = true;
	assert_int_equal(ref_open(&rs, &ro), HV_OK);
	assert_int_equal(ref_retention_run(rs, &s), HV_FAILED_PRECONDITION);
	assert_int_equal(s.rr_subjects, 0);
	ref_close(rs);
	ro.erase = erase_hook;
	assert_int_equal(ref_open(&rs, &ro), HV_OK);
	assert_int_equal(ref_retention_run(rs, NULL), HV_FAILED_PRECONDITION);
	ref_close(rs);
	assert_int_equal(ref_retention_run(NULL, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(ref_retention_due(f->rs, txn, 0, NULL, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(ref_retention_due(NULL, txn, 0, due_collect, NULL), HV_INVALID_ARGUMENT);
	store_read_end(txn);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_closed_means_final),
		cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_erased_elsewhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backfill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_sealed_then_erased, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_bound_to_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_migrated, setup, teardown),
	};

	log_init("retention_test", LOG_LEVEL_OFF);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
