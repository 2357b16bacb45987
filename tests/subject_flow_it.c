/*
 * subject_flow_it.c - what the consent service decides about a person, carried through the
 * referral loop, with the real services: capacity, consent and referral over one store, served
 * over inproc:// with organisation tokens and wired as haven-node wires them (the accepting
 * provider, the end of her referrals at erasure, the minor flag for routing).
 *
 * Checked here: erasing a subject with an open offer ends it before EraseSubject answers
 * (offer withdrawn, hold released, the provider cannot accept any more); erasure racing the
 * provider's acceptance, many times, leaves no place held for a need that is not offered and
 * nothing accepted for an erased person unless it was accepted first; a minor is offered only
 * to a service that takes minors (none: she waits), whose provider, once it accepted, sees her
 * guardian with the rest consent covers, and the holder's correction of the flag
 * (UpdateSubject) routes her next referral as an adult's. After every scenario: held places
 * equal open offers, and available + held never exceed the service's maximum.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/ids.h"
#include "haven/log.h"
#include "haven/rpc.h"
#include "haven/store.h"
#include "testutil.h"

#include "capacity.h"
#include "consent.h"
#include "referral.h"

#define M_CREATE "haven.referral.v1.Referrals/CreateReferral"
#define M_GET    "haven.referral.v1.Referrals/GetReferral"
#define M_ACCEPT "haven.referral.v1.Referrals/AcceptOffer"
#define M_AVAIL  "haven.capacity.v1.Capacity/UpdateAvailability"
#define M_ERASE  "haven.consent.v1.Consent/EraseSubject"
#define M_UPDATE "haven.consent.v1.Consent/UpdateSubject"
#define M_SHOW   "haven.consent.v1.Consent/GetSubject"

#define ST(x)  HAVEN__CAPACITY__V1__SERVICE_TYPE__##x
#define POP(x) HAVEN__CAPACITY__V1__POPULATION__##x
#define NS(x)  HAVEN__REFERRAL__V1__NEED_STATE__##x

#define REFERRER  "ngo-ams"
#define PROVIDER  "shelter-a" /* sh-ams: women, Amsterdam */
#define PROVIDER2 "shelter-m" /* sh-min: women and minors, Rotterdam */

typedef Haven__Referral__V1__Referral Referral;

enum { C_REFERRER, C_PROVIDER, C_PROVIDER2, C_N };

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

static int test_no;

/* The consent service's clock: the wall clock moved on by skew_ms (tests of expiry). */
static _Atomic int64_t skew_ms;

static int64_t
fake_now(void *arg)
{
	(void) arg;
	return (hv_clock_wall_ms() + atomic_load(&skew_ms));
}

/* ---- the node's wiring (services/node/main.c) -------------------------------------------- */

static hv_status
accepting_provider(void *arg, store_txn *txn, const char *subject, const char *org_id, bool *yes)
{
	ref_service *rs = *(ref_service **) arg;

	*yes = false;
	return (rs != NULL ? ref_is_accepting_provider(rs, txn, subject, org_id, yes) : HV_OK);
}

static hv_status
subject_erased(void *arg, const char *subject, bool expired)
{
	ref_service *rs = *(ref_service **) arg;

	return (rs != NULL ? ref_consent_withdrawn(rs, subject, expired, NULL) : HV_OK);
}

static hv_status
add_orgs_fn(store_txn *txn, void *arg)
{
	static const struct {
		const char *id, *org, *region;
		int         npop;
	} svcs[]                                      = { { "sh-ams", PROVIDER, "Amsterdam", 1 },
		                                     { "sh-min", PROVIDER2, "Rotterdam", 2 } };
	static Haven__Capacity__V1__Population pops[] = { POP(WOMEN), POP(MINORS) };
	fixture                               *f      = arg;
	Haven__Capacity__V1__Organisation      o      = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	const char                            *orgs[] = { REFERRER, PROVIDER, PROVIDER2 };
	char                                   err[256], id[CAP_ID_MAX];
	hv_status                              st;

	for (int i = 0; i < 3; i++) {
		o.id     = (char *) orgs[i];
		o.name   = (char *) orgs[i];
		o.role   = i == 0 ? HAVEN__CAPACITY__V1__ROLE__REFERRER
		                  : HAVEN__CAPACITY__V1__ROLE__PROVIDER;
		o.region = i == 2 ? "Rotterdam" : "Amsterdam";
		if ((st = cap_add_organisation(f->cs, txn, &o, err, sizeof(err))) != HV_OK) {
			return (st);
		}
	}
	for (size_t i = 0; i < sizeof(svcs) / sizeof(svcs[0]); i++) {
		Haven__Capacity__V1__Service svc = HAVEN__CAPACITY__V1__SERVICE__INIT;
		svc.id                           = (char *) svcs[i].id;
		svc.org_id                       = (char *) svcs[i].org;
		svc.name                         = (char *) svcs[i].id;
		svc.type                         = ST(SHELTER);
		svc.service_area                 = (char *) svcs[i].region;
		svc.n_populations                = (size_t) svcs[i].npop;
		svc.populations                  = pops;
		svc.maximum                      = 10;
		svc.available                    = 10;
		svc.front_door_contact           = "intake desk";
		if ((st = cap_add_service(f->cs, txn, &svc, id, err, sizeof(err))) != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

static void
serve(fixture *f)
{
	rpc_server_options so = { .workers = 4 };
	char               tok[AUTH_TOKEN_MAX];
	static const struct {
		const char *org;
		rpc_role    role;
	} who[C_N] = { [C_REFERRER] = { REFERRER, RPC_ROLE_REFERRER },
		[C_PROVIDER]        = { PROVIDER, RPC_ROLE_PROVIDER },
		[C_PROVIDER2]       = { PROVIDER2, RPC_ROLE_PROVIDER } };

	so.auth = f->au;
	assert_int_equal(rpc_server_open(&f->srv, &so), HV_OK);
	assert_int_equal(cap_register(f->cs, f->srv), HV_OK);
	assert_int_equal(consent_register(f->cns, f->srv), HV_OK);
	assert_int_equal(ref_register(f->rs, f->srv), HV_OK);
	snprintf(f->url, sizeof(f->url), "inproc://subject-flow-%d-%d", getpid(), ++test_no);
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

static int
setup(void **state)
{
	fixture        *f  = calloc(1, sizeof(*f));
	store_options   so = { .no_sync = true };
	cap_options     co = { 0 };
	consent_options no = { 0 };
	ref_options     ro = { 0 };
	auth_options    ao = { .lookup = cap_lookup_org };

	assert_non_null(f);
	log_init("subject-flow-test", LOG_LEVEL_WARN);
	tu_tmpdir(f->dir, sizeof(f->dir), "subject-flow");
	assert_int_equal(store_open(&f->st, f->dir, &so), HV_OK);
	assert_int_equal(region_map_default(&f->rm), HV_OK);
	co.store         = f->st;
	co.regions       = f->rm;
	co.manual_expiry = true;
	assert_int_equal(cap_open(&f->cs, &co), HV_OK);
	no.store              = f->st;
	no.data_dir           = f->dir;
	no.org_role           = cap_org_role;
	no.org_arg            = f->cs;
	no.accepting_provider = accepting_provider;
	no.accepting_arg      = &f->rs;
	no.subject_erased     = subject_erased;
	no.now_ms             = fake_now;
	atomic_store(&skew_ms, 0);
	no.erased_arg = &f->rs;
	assert_int_equal(consent_open(&f->cns, &no), HV_OK);
	ao.lookup_arg = f->cs;
	memset(ao.secret, 0x42, sizeof(ao.secret));
	assert_int_equal(auth_open(&f->au, &ao), HV_OK);
	assert_int_equal(store_write(f->st, add_orgs_fn, f), HV_OK);
	ro.store       = f->st;
	ro.regions     = f->rm;
	ro.capacity    = f->cs;
	ro.consent     = consent_ref_check;
	ro.consent_arg = f->cns;
	ro.seal        = consent_ref_seal;
	ro.unseal      = consent_ref_open;
	ro.minor       = consent_ref_minor;
	ro.manual      = true;
	assert_int_equal(ref_open(&f->rs, &ro), HV_OK);
	serve(f);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	fixture *f = *state;
	char     cmd[600];

	for (int i = 0; i < C_N; i++) {
		rpc_channel_close(f->ch[i]);
	}
	rpc_server_close(f->srv);
	ref_close(f->rs);
	consent_close(f->cns);
	cap_close(f->cs);
	auth_close(f->au);
	store_close(f->st);
	region_map_free(f->rm);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return (0);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static _Thread_local char errbuf[RPC_ERRMSG_MAX];

static hv_status
call(fixture *f, int who, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, void *out)
{
	static atomic_int seq;
	char              key[32];
	rpc_call_options  o = { .timeout_ms = 10000, .idempotency_key = key };
	ProtobufCMessage *r = NULL;
	hv_status         st;

	snprintf(key, sizeof(key), "key-%d", atomic_fetch_add(&seq, 1));
	errbuf[0] = '\0';
	st        = rpc_channel_call(f->ch[who], method, req, rd, &r, &o, errbuf, sizeof(errbuf));
	if (out != NULL) {
		*(ProtobufCMessage **) out = r;
	} else if (r != NULL) {
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

typedef struct subject_job {
	fixture *f;
	bool     minor;
	int64_t  valid_ms; /* how long the consent is valid; 0: one day */
	char     id[CONSENT_ID_HEX];
	char     err[CONSENT_MSG_MAX];
} subject_job;

/* A subject with consent to be referred, to share her identity with the accepting provider and
 * to let it contact her; a minor's consent given by her guardian. */
static hv_status
subject_fn(store_txn *txn, void *arg)
{
	static const rpc_caller          ngo    = { .role = RPC_ROLE_REFERRER, .org_id = REFERRER };
	subject_job                     *j      = arg;
	Haven__Consent__V1__PersonalData p      = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__GrantRequest g      = HAVEN__CONSENT__V1__GRANT_REQUEST__INIT;
	Haven__Consent__V1__Purpose  purposes[] = { HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL,
		 HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
		 HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT };
	Haven__Consent__V1__Category cats[]     = { HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY,
		    HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT };
	hv_status                    st;

	p.name     = "Test Person";
	p.guardian = j->minor ? "Test Guardian, at the front desk" : "";
	if ((st = consent_create_subject_txn(j->f->cns, txn, &ngo, &p, j->minor, j->id)) != HV_OK) {
		return (st);
	}
	g.subject            = j->id;
	g.purposes           = purposes;
	g.n_purposes         = 3;
	g.categories         = cats;
	g.n_categories       = 2;
	g.given_by           = j->minor ? HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_GUARDIAN
	                                : HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT;
	g.method             = HAVEN__CONSENT__V1__METHOD__METHOD_WRITTEN;
	g.language           = "nl";
	g.accepting_provider = true;
	g.expires_ms         = fake_now(NULL) + (j->valid_ms != 0 ? j->valid_ms : 86400000LL);
	return (consent_grant_txn(j->f->cns, txn, &ngo, &g, NULL, j->err, sizeof(j->err)));
}

static void
new_subject(fixture *f, bool minor, char id[CONSENT_ID_HEX])
{
	subject_job j = { .f = f, .minor = minor };

	if (store_write(f->st, subject_fn, &j) != HV_OK) {
		fail_msg("new subject: %s", j.err);
	}
	memcpy(id, j.id, CONSENT_ID_HEX);
}

/* A referral for one shelter place for women; *r is the caller's to free. */
static hv_status
refer(fixture *f, const char *subject, Referral **r)
{
	Haven__Referral__V1__CreateReferralRequest req =
	    HAVEN__REFERRAL__V1__CREATE_REFERRAL_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest  need = HAVEN__REFERRAL__V1__NEED_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest *np   = &need;

	need.type        = ST(SHELTER);
	need.population  = POP(WOMEN);
	req.subject      = (char *) subject;
	req.urgency      = HAVEN__REFERRAL__V1__URGENCY__URGENT;
	req.exploitation = HAVEN__REFERRAL__V1__EXPLOITATION__LABOUR;
	req.n_needs      = 1;
	req.needs        = &np;
	return (call(f, C_REFERRER, M_CREATE, &req.base, &haven__referral__v1__referral__descriptor,
	    r));
}

static Referral *
get(fixture *f, const char *id)
{
	Haven__Referral__V1__GetReferralRequest req =
	    HAVEN__REFERRAL__V1__GET_REFERRAL_REQUEST__INIT;
	Referral *r = NULL;

	req.id = (char *) id;
	if (call(f, C_REFERRER, M_GET, &req.base, &haven__referral__v1__referral__descriptor, &r) !=
	    HV_OK) {
		fail_msg("get %s: %s", id, errbuf);
	}
	return (r);
}

static hv_status
erase(fixture *f, const char *subject)
{
	Haven__Consent__V1__EraseSubjectRequest req =
	    HAVEN__CONSENT__V1__ERASE_SUBJECT_REQUEST__INIT;

	req.id = (char *) subject;
	return (call(f, C_REFERRER, M_ERASE, &req.base,
	    &haven__consent__v1__erase_subject_response__descriptor, NULL));
}

static hv_status
accept_as(fixture *f, int who, const char *offer)
{
	Haven__Referral__V1__OfferActionRequest a = HAVEN__REFERRAL__V1__OFFER_ACTION_REQUEST__INIT;

	a.offer_id = (char *) offer;
	return (call(f, who, M_ACCEPT, &a.base, &haven__referral__v1__offer__descriptor, NULL));
}

static void
places(fixture *f, const char *svc_id, uint32_t *available, uint32_t *held, uint32_t *occupied)
{
	Haven__Capacity__V1__Service *svc = NULL;
	store_txn                    *txn;

	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(cap_get_service(f->cs, txn, svc_id, &svc), HV_OK);
	store_read_end(txn);
	*available = svc->available;
	*held      = svc->held;
	*occupied  = svc->occupied;
	haven__capacity__v1__service__free_unpacked(svc, NULL);
}

/* The invariant: a service holds exactly as many places as it has open offers (offered is
 * the count the test knows of), held within available, available + occupied within the
 * maximum. */
static void
check_places(fixture *f, const char *svc_id, uint32_t offered)
{
	uint32_t available, held, occupied;

	places(f, svc_id, &available, &held, &occupied);
	assert_int_equal(held, offered);
	assert_true(held <= available);
	assert_true(available + occupied <= 10);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Erased with an open offer: the offer is withdrawn and the hold released before EraseSubject
 * answers; the provider can neither accept nor read her afterwards. */
static void
test_erase_ends_open_offer(void **state)
{
	fixture  *f = *state;
	Referral *r = NULL;
	char      subject[CONSENT_ID_HEX], offer[IDS_MAX], id[IDS_MAX];

	new_subject(f, false, subject);
	assert_int_equal(refer(f, subject, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	snprintf(offer, sizeof(offer), "%s", r->needs[0]->offer_id);
	snprintf(id, sizeof(id), "%s", r->id);
	haven__referral__v1__referral__free_unpacked(r, NULL);
	check_places(f, "sh-ams", 1);

	assert_int_equal(erase(f, subject), HV_OK);
	/* At once: no wait for an event. */
	check_places(f, "sh-ams", 0);
	r = get(f, id);
	assert_int_not_equal(r->needs[0]->state, NS(OFFERED));
	assert_int_not_equal(r->needs[0]->state, NS(ACCEPTED));
	haven__referral__v1__referral__free_unpacked(r, NULL);
	assert_int_not_equal(accept_as(f, C_PROVIDER, offer), HV_OK);
	check_places(f, "sh-ams", 0);
	{
		Haven__Consent__V1__GetSubjectRequest g =
		    HAVEN__CONSENT__V1__GET_SUBJECT_REQUEST__INIT;

		g.id = subject;
		assert_int_equal(call(f, C_PROVIDER, M_SHOW, &g.base,
		                     &haven__consent__v1__subject__descriptor, NULL),
		    HV_PERMISSION_DENIED);
	}
	/* No new referral for her. */
	assert_int_not_equal(refer(f, subject, &r), HV_OK);
}

/* A consent that expires acts at once, like a withdrawal (issue 14): the sweep withdraws the
 * open offer of the subject whose only consent expired and releases its hold, exactly once
 * (a second sweep finds nothing); a subject whose consent is still valid is untouched. */
static void
test_expiry_ends_open_offer(void **state)
{
	fixture    *f = *state;
	subject_job a = { .f = f }, b = { .f = f, .valid_ms = 3 * 86400000LL };
	Referral   *r = NULL;
	char        offer[IDS_MAX], id_a[IDS_MAX], id_b[IDS_MAX];
	unsigned    applied = 99;

	assert_int_equal(store_write(f->st, subject_fn, &a), HV_OK);
	assert_int_equal(store_write(f->st, subject_fn, &b), HV_OK);
	assert_int_equal(refer(f, a.id, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	snprintf(offer, sizeof(offer), "%s", r->needs[0]->offer_id);
	snprintf(id_a, sizeof(id_a), "%s", r->id);
	haven__referral__v1__referral__free_unpacked(r, NULL);
	assert_int_equal(refer(f, b.id, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ams"); /* two places held there */
	snprintf(id_b, sizeof(id_b), "%s", r->id);
	haven__referral__v1__referral__free_unpacked(r, NULL);

	/* Nothing expired yet: the sweep changes nothing. */
	assert_int_equal(consent_expiry_sweep(f->cns, &applied), HV_OK);
	assert_int_equal(applied, 0);
	check_places(f, "sh-ams", 2);

	atomic_store(&skew_ms, 2 * 86400000LL); /* a's consent expired, b's not */
	assert_int_equal(consent_expiry_sweep(f->cns, &applied), HV_OK);
	assert_int_equal(applied, 1);
	check_places(f, "sh-ams", 1); /* a's hold released, b's kept */
	r = get(f, id_a);
	assert_int_equal(r->needs[0]->state, NS(CANCELLED));
	/* in the trail as what it was: an expiry, not the person's withdrawal */
	assert_string_equal(r->events[r->n_events - 1]->reason, "consent expired");
	haven__referral__v1__referral__free_unpacked(r, NULL);
	r = get(f, id_b);
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	haven__referral__v1__referral__free_unpacked(r, NULL);
	assert_int_not_equal(accept_as(f, C_PROVIDER, offer), HV_OK);

	/* Once: the second sweep finds it applied. */
	assert_int_equal(consent_expiry_sweep(f->cns, &applied), HV_OK);
	assert_int_equal(applied, 0);
	check_places(f, "sh-ams", 1);
	assert_int_equal(consent_expiry_sweep(NULL, &applied), HV_INVALID_ARGUMENT);
}

typedef struct racer {
	fixture    *f;
	const char *subject, *offer;
	hv_status   st;
} racer;

static void *
erase_thread(void *arg)
{
	racer *x = arg;

	x->st = erase(x->f, x->subject);
	return (NULL);
}

static void *
accept_thread(void *arg)
{
	racer *x = arg;

	x->st = accept_as(x->f, C_PROVIDER, x->offer);
	return (NULL);
}

/* Erasure racing the provider's acceptance: whichever commits first decides; never a place
 * held for a need that is not offered, never an acceptance after the erasure. */
static void
test_erase_races_acceptance(void **state)
{
	fixture *f        = *state;
	int      accepted = 0;

	for (int round = 0; round < 12; round++) {
		Referral *r = NULL;
		pthread_t te, ta;
		char      subject[CONSENT_ID_HEX], offer[IDS_MAX], id[IDS_MAX];
		racer     e, a;

		new_subject(f, false, subject);
		assert_int_equal(refer(f, subject, &r), HV_OK);
		assert_int_equal(r->needs[0]->state, NS(OFFERED));
		snprintf(offer, sizeof(offer), "%s", r->needs[0]->offer_id);
		snprintf(id, sizeof(id), "%s", r->id);
		haven__referral__v1__referral__free_unpacked(r, NULL);
		e = (racer) { f, subject, offer, HV_UNKNOWN };
		a = e;
		assert_int_equal(pthread_create(&te, NULL, erase_thread, &e), 0);
		assert_int_equal(pthread_create(&ta, NULL, accept_thread, &a), 0);
		pthread_join(te, NULL);
		pthread_join(ta, NULL);
		assert_int_equal(e.st, HV_OK);
		accepted += a.st == HV_OK;
		r = get(f, id);
		/* Accepted first: the place is the provider's (told of the erasure); else the offer
		 * was withdrawn. Either way nothing is held. */
		if (a.st == HV_OK) {
			assert_true(r->needs[0]->state == NS(ACCEPTED));
		} else {
			assert_true(r->needs[0]->state != NS(OFFERED) &&
			    r->needs[0]->state != NS(ACCEPTED));
		}
		haven__referral__v1__referral__free_unpacked(r, NULL);
		check_places(f, "sh-ams", 0);
		/* After the erasure, no acceptance. */
		assert_int_not_equal(accept_as(f, C_PROVIDER, offer), HV_OK);
	}
	print_message("erase vs accept: accepted first in %d of 12 rounds\n", accepted);
}

/* A minor goes to the service that takes minors, though another is nearer; with none free she
 * waits; once the holder corrects the flag, her next referral is an adult's. */
static void
test_minor_routed_to_minors(void **state)
{
	fixture  *f = *state;
	Referral *r = NULL;
	char      minor[CONSENT_ID_HEX], adult[CONSENT_ID_HEX], offer[IDS_MAX];

	new_subject(f, false, adult);
	assert_int_equal(refer(f, adult, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ams"); /* the nearest */
	haven__referral__v1__referral__free_unpacked(r, NULL);

	new_subject(f, true, minor);
	assert_int_equal(refer(f, minor, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	assert_string_equal(r->needs[0]->service_id, "sh-min");
	snprintf(offer, sizeof(offer), "%s", r->needs[0]->offer_id);
	haven__referral__v1__referral__free_unpacked(r, NULL);
	check_places(f, "sh-ams", 1);
	check_places(f, "sh-min", 1);

	/* Accepted: the shelter learns whom to call about her, her guardian; no other does. */
	assert_int_equal(accept_as(f, C_PROVIDER2, offer), HV_OK);
	{
		Haven__Consent__V1__GetSubjectRequest g =
		    HAVEN__CONSENT__V1__GET_SUBJECT_REQUEST__INIT;
		Haven__Consent__V1__Subject *sub = NULL;

		g.id = minor;
		assert_int_equal(call(f, C_PROVIDER2, M_SHOW, &g.base,
		                     &haven__consent__v1__subject__descriptor, &sub),
		    HV_OK);
		assert_true(sub->minor);
		assert_string_equal(sub->personal->guardian, "Test Guardian, at the front desk");
		assert_string_equal(sub->personal->name, "Test Person");
		protobuf_c_message_free_unpacked(&sub->base, NULL);
		assert_int_equal(call(f, C_PROVIDER, M_SHOW, &g.base,
		                     &haven__consent__v1__subject__descriptor, NULL),
		    HV_PERMISSION_DENIED);
	}
	check_places(f, "sh-min", 0);

	/* No room at the only service for minors: she waits rather than go to sh-ams. */
	{
		Haven__Capacity__V1__UpdateAvailabilityRequest u =
		    HAVEN__CAPACITY__V1__UPDATE_AVAILABILITY_REQUEST__INIT;
		Haven__Capacity__V1__ServiceView *v   = NULL;
		Haven__Capacity__V1__Service     *svc = NULL;
		store_txn                        *txn;

		assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
		assert_int_equal(cap_get_service(f->cs, txn, "sh-min", &svc), HV_OK);
		store_read_end(txn);
		u.based_on_version = svc->version;
		haven__capacity__v1__service__free_unpacked(svc, NULL);
		u.service_id = "sh-min";
		u.available  = 0; /* her place is taken (occupied): none free */
		if (call(f, C_PROVIDER2, M_AVAIL, &u.base,
		        &haven__capacity__v1__service_view__descriptor, &v) != HV_OK) {
			fail_msg("update availability: %s", errbuf);
		}
		protobuf_c_message_free_unpacked(&v->base, NULL);
	}
	assert_int_equal(refer(f, minor, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(WAITING));
	haven__referral__v1__referral__free_unpacked(r, NULL);
	check_places(f, "sh-ams", 1);

	/* The flag was wrong: corrected by the holder, she is routed as an adult. */
	{
		Haven__Consent__V1__UpdateSubjectRequest u =
		    HAVEN__CONSENT__V1__UPDATE_SUBJECT_REQUEST__INIT;
		char *mask[] = { "minor" };

		u.id            = minor;
		u.minor         = false;
		u.n_update_mask = 1;
		u.update_mask   = mask;
		assert_int_equal(call(f, C_REFERRER, M_UPDATE, &u.base,
		                     &haven__consent__v1__subject__descriptor, NULL),
		    HV_OK);
	}
	assert_int_equal(refer(f, minor, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	haven__referral__v1__referral__free_unpacked(r, NULL);
	check_places(f, "sh-ams", 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_erase_ends_open_offer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_erase_races_acceptance, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_ends_open_offer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_minor_routed_to_minors, setup, teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
