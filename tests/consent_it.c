/*
 * consent_it.c - haven-consent end to end over RPC (inproc://), with session tokens of
 * organisations in each role: who may create, see, erase, grant, withdraw and check; minors;
 * expired and withdrawn consent; receipts that verify and stop verifying after any change;
 * withdrawal events on the pub socket; audit entries for every read, and audit verification
 * that finds tampering. Bad input and faults get a clear status and a message with ids only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "haven/audit.h"
#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/metrics.h"
#include "haven/rpc.h"
#include "haven/store.h"
#include "testutil.h"

#include "alerts.h"
#include "capacity.h"
#include "consent.h"

#include "haven/consent/v1/audit.pb-c.h"
#include "haven/consent/v1/consent.pb-c.h"

#define M        "haven.consent.v1.Consent/"
#define M_AUDIT  "haven.audit.v1.Audit/"
#define NAME     "Ioana Sentinel-Popescu"
#define NOTES    "Sentinel notes: met at the bus station."
#define GUARDIAN "Sentinel aunt, +40 711 GUARDIAN"

static tu_org orgs[] = {
	{ "acme-ngo", RPC_ROLE_REFERRER, 1, NULL },
	{ "other-ngo", RPC_ROLE_REFERRER, 1, NULL },
	{ "shelter-a", RPC_ROLE_PROVIDER, 1, NULL },
	{ "shelter-b", RPC_ROLE_PROVIDER, 1, NULL },
	{ "coord-west", RPC_ROLE_COORDINATOR, 1, NULL },
	{ "city-hall", RPC_ROLE_MUNICIPALITY, 1, NULL },
	{ "node-admin", RPC_ROLE_ADMIN, 1, NULL },
	{ NULL, 0, 0, NULL },
};

/* One channel per identity; index into orgs, and the operator (no token) last. */
enum { ACME, OTHER, SHELTER_A, SHELTER_B, COORD, CITY, ADMIN, OPERATOR, N_CALLERS };

static int64_t clock_ms;

typedef struct world {
	char             dir[512];
	store           *s;
	auth            *a;
	consent_service *cs;
	region_map      *map;
	cap_service     *cap; /* the directory the alerts service reads */
	alerts_service  *al;  /* a withdrawal's alerts (manual: nothing is sent) */
	rpc_server      *srv;
	rpc_channel     *ch[N_CALLERS];
	char             pub_url[64];
} world;

static world w;

static int64_t
test_now(void *arg)
{
	(void) arg;
	return (clock_ms);
}

static rpc_role
org_role(void *arg, const char *org_id)
{
	for (const tu_org *o = arg; o->id != NULL; o++) {
		if (strcmp(o->id, org_id) == 0) {
			return (o->role);
		}
	}
	return (0);
}

/* The referral service's part, as these tests play it: shelter-a has accepted a referral of
 * every subject unless a test says otherwise. A provider reads a subject only while it has
 * (docs/authority.md, "accepted"); the consents decide what it reads then. */
static atomic_bool shelter_a_accepted = true;

static hv_status
accepting_provider(void *arg, store_txn *txn, const char *subject, const char *org_id, bool *yes)
{
	(void) arg;
	(void) txn;
	(void) subject;
	*yes = strcmp(org_id, "shelter-a") == 0 && atomic_load(&shelter_a_accepted);
	return (HV_OK);
}

/* The organisations the alerts service must find in the directory. */
static hv_status
add_orgs_fn(store_txn *txn, void *arg)
{
	char      err[256];
	hv_status st = HV_OK;

	for (int i = 0; orgs[i].id != NULL && st == HV_OK; i++) {
		Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;

		o.id     = (char *) orgs[i].id;
		o.name   = (char *) orgs[i].id;
		o.role   = orgs[i].role == RPC_ROLE_PROVIDER ? HAVEN__CAPACITY__V1__ROLE__PROVIDER
		                                             : HAVEN__CAPACITY__V1__ROLE__REFERRER;
		o.region = "Amsterdam";
		st       = cap_add_organisation(arg, txn, &o, err, sizeof(err));
	}
	return (st);
}

static int
world_up(void **state)
{
	auth_options       ao = { .lookup = tu_lookup, .lookup_arg = orgs };
	rpc_server_options ro = { .workers = 4 };
	consent_options    co = { 0 };
	store_options      so = { .no_sync = true };
	char               path[600], url[64];

	(void) state;
	log_init("consent-test", LOG_LEVEL_WARN);
	clock_ms = hv_clock_wall_ms();
	tu_tmpdir(w.dir, sizeof(w.dir), "consent");
	snprintf(path, sizeof(path), "%s/store", w.dir);
	assert_int_equal(store_open(&w.s, path, &so), HV_OK);
	assert_int_equal(crypto_random(ao.secret, sizeof(ao.secret)), HV_OK);
	assert_int_equal(auth_open(&w.a, &ao), HV_OK);
	snprintf(w.pub_url, sizeof(w.pub_url), "inproc://consent-events-%d", (int) getpid());
	co.store              = w.s;
	co.data_dir           = w.dir;
	co.pub_url            = w.pub_url;
	co.now_ms             = test_now;
	co.org_role           = org_role;
	co.org_arg            = orgs;
	co.accepting_provider = accepting_provider;
	{
		cap_options    capo = { .store = w.s, .manual_expiry = true };
		alerts_options alo  = { .store = w.s, .manual = true, .now_ms = test_now };

		assert_int_equal(region_map_default(&w.map), HV_OK);
		capo.regions = w.map;
		assert_int_equal(cap_open(&w.cap, &capo), HV_OK);
		assert_int_equal(store_write(w.s, add_orgs_fn, w.cap), HV_OK);
		alo.capacity = w.cap;
		assert_int_equal(alerts_open(&w.al, &alo), HV_OK);
		co.alerts = w.al;
	}
	assert_int_equal(consent_open(&w.cs, &co), HV_OK);
	ro.auth = w.a;
	assert_int_equal(rpc_server_open(&w.srv, &ro), HV_OK);
	assert_int_equal(consent_register(w.cs, w.srv), HV_OK);
	assert_int_equal(alerts_register(w.al, w.srv), HV_OK);
	snprintf(url, sizeof(url), "inproc://consent-test-%d", (int) getpid());
	assert_int_equal(rpc_server_listen(w.srv, url), HV_OK);
	assert_int_equal(rpc_server_start(w.srv), HV_OK);
	for (int i = 0; i < N_CALLERS; i++) {
		assert_int_equal(rpc_channel_open(&w.ch[i], url, NULL), HV_OK);
		if (i != OPERATOR) {
			char tok[AUTH_TOKEN_MAX];
			assert_int_equal(auth_issue_token(w.a, orgs[i].id, orgs[i].role,
			                     hv_clock_wall_ms(), tok, NULL),
			    HV_OK);
			assert_int_equal(rpc_channel_set_token(w.ch[i], tok), HV_OK);
		}
	}
	return (0);
}

static int
world_down(void **state)
{
	char cmd[700];

	(void) state;
	for (int i = 0; i < N_CALLERS; i++) {
		rpc_channel_close(w.ch[i]);
	}
	consent_stop(w.cs);
	rpc_server_close(w.srv);
	consent_close(w.cs);
	alerts_close(w.al);
	cap_close(w.cap);
	region_map_free(w.map);
	auth_close(w.a);
	store_close(w.s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", w.dir);
	return (system(cmd));
}

/* ---- calls ----------------------------------------------------------------------------- */

static char errmsg[RPC_ERRMSG_MAX];

static hv_status
call(int who, const char *method, const void *req, const ProtobufCMessageDescriptor *desc,
    void *reply)
{
	ProtobufCMessage *r = NULL;
	hv_status         st;

	errmsg[0] = '\0';
	st = rpc_channel_call(w.ch[who], method, req, desc, &r, NULL, errmsg, sizeof(errmsg));
	if (reply != NULL) {
		*(ProtobufCMessage **) reply = r;
	} else if (r != NULL) {
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

static void
release(void *m)
{
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
}

static void
expect_msg(const char *part)
{
	if (strstr(errmsg, part) == NULL) {
		fail_msg("message \"%s\" does not say \"%s\"", errmsg, part);
	}
}

/* Creates a subject as who; returns its id (static buffer of the caller). */
/* who's alerts after *cursor: how many, each of kind naming no one; moves the cursor. */
#define EXPIRED_KIND HAVEN__ALERTS__V1__ALERT_KIND__CONSENT_EXPIRED

static size_t
consent_alerts(int who, uint64_t *cursor, const char *subject, Haven__Alerts__V1__AlertKind kind)
{
	Haven__Alerts__V1__WatchEventsRequest   req = HAVEN__ALERTS__V1__WATCH_EVENTS_REQUEST__INIT;
	Haven__Alerts__V1__WatchEventsResponse *resp = NULL;
	size_t                                  n;

	req.after     = *cursor;
	req.page_size = 200;
	assert_int_equal(call(who, "haven.alerts.v1.Alerts/WatchEvents", &req,
	                     &haven__alerts__v1__watch_events_response__descriptor, &resp),
	    HV_OK);
	n = resp->n_events;
	for (size_t i = 0; i < n; i++) {
		Haven__Alerts__V1__AlertEvent *e = resp->events[i];

		assert_int_equal(e->kind, kind);
		assert_string_equal(e->org_id, orgs[who].id);
		assert_string_equal(e->target, "");
		assert_null(strstr(e->link, subject));
	}
	*cursor = resp->cursor;
	release(resp);
	return (n);
}

static size_t
withdrawn_alerts(int who, uint64_t *cursor, const char *subject)
{
	return (
	    consent_alerts(who, cursor, subject, HAVEN__ALERTS__V1__ALERT_KIND__CONSENT_WITHDRAWN));
}

static hv_status
create(int who, bool minor, char id[CONSENT_ID_HEX])
{
	Haven__Consent__V1__CreateSubjectRequest req =
	    HAVEN__CONSENT__V1__CREATE_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__PersonalData           p   = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__CreateSubjectResponse *rep = NULL;
	char                                      *langs[] = { "ro", "en" };
	hv_status                                  st;

	p.name          = NAME;
	p.date_of_birth = "1999-02-28";
	p.nationality   = "Romanian";
	p.languages     = langs;
	p.n_languages   = 2;
	p.contact       = "+40 700 000 000";
	p.notes         = NOTES;
	p.guardian      = minor ? GUARDIAN : "";
	req.personal    = &p;
	req.minor       = minor;
	st              = call(who, M "CreateSubject", &req,
	                 &haven__consent__v1__create_subject_response__descriptor, &rep);
	if (st == HV_OK) {
		assert_int_equal(strlen(rep->id), 32);
		snprintf(id, CONSENT_ID_HEX, "%s", rep->id);
	}
	release(rep);
	return (st);
}

static hv_status
grant(int who, const char *subject, const char *recipient, bool accepting,
    Haven__Consent__V1__GivenBy by, int64_t expires, Haven__Consent__V1__ConsentRecord **out)
{
	Haven__Consent__V1__GrantRequest r      = HAVEN__CONSENT__V1__GRANT_REQUEST__INIT;
	Haven__Consent__V1__Purpose  purposes[] = { HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL,
		 HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER };
	Haven__Consent__V1__Category cats[]     = { HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY,
		    HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER };
	char                        *recips[]   = { (char *) recipient };
	Haven__Consent__V1__ConsentRecord *rep  = NULL;
	hv_status                          st;

	r.subject            = (char *) subject;
	r.purposes           = purposes;
	r.n_purposes         = 2;
	r.recipients         = recips;
	r.n_recipients       = recipient != NULL ? 1 : 0;
	r.accepting_provider = accepting;
	r.categories         = cats;
	r.n_categories       = 2;
	r.given_by           = by;
	r.method             = HAVEN__CONSENT__V1__METHOD__METHOD_WRITTEN;
	r.language           = "ro";
	r.expires_ms         = expires != 0 ? expires : clock_ms + 30LL * 86400000;
	st = call(who, M "Grant", &r, &haven__consent__v1__consent_record__descriptor, &rep);
	if (out != NULL) {
		*out = rep;
	} else {
		release(rep);
	}
	return (st);
}

static hv_status
check(int who, const char *subject, Haven__Consent__V1__Purpose purpose, const char *recipient,
    Haven__Consent__V1__Category cat, bool accepting, Haven__Consent__V1__CheckResponse **out)
{
	Haven__Consent__V1__CheckRequest   r   = HAVEN__CONSENT__V1__CHECK_REQUEST__INIT;
	Haven__Consent__V1__CheckResponse *rep = NULL;
	hv_status                          st;

	r.subject                         = (char *) subject;
	r.purpose                         = purpose;
	r.recipient                       = (char *) recipient;
	r.category                        = cat;
	r.recipient_is_accepting_provider = accepting;
	st = call(who, M "Check", &r, &haven__consent__v1__check_response__descriptor, &rep);
	if (out != NULL) {
		*out = rep;
	} else {
		release(rep);
	}
	return (st);
}

static hv_status
show(int who, const char *id, Haven__Consent__V1__Subject **out)
{
	Haven__Consent__V1__GetSubjectRequest r   = HAVEN__CONSENT__V1__GET_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__Subject          *rep = NULL;
	hv_status                             st;

	r.id = (char *) id;
	st   = call(who, M "GetSubject", &r, &haven__consent__v1__subject__descriptor, &rep);
	if (out != NULL) {
		*out = rep;
	} else {
		release(rep);
	}
	return (st);
}

/* UpdateSubject as who: the fields named in mask (comma-separated) from p and minor. */
static hv_status
update(int who, const char *id, const char *mask, const Haven__Consent__V1__PersonalData *p,
    bool minor, Haven__Consent__V1__Subject **out)
{
	Haven__Consent__V1__UpdateSubjectRequest r =
	    HAVEN__CONSENT__V1__UPDATE_SUBJECT_REQUEST__INIT;
	char                         buf[256], *names[16], *save = NULL;
	Haven__Consent__V1__Subject *rep = NULL;
	hv_status                    st;

	snprintf(buf, sizeof(buf), "%s", mask);
	for (char *t = strtok_r(buf, ",", &save); t != NULL && r.n_update_mask < 16;
	     t       = strtok_r(NULL, ",", &save)) {
		names[r.n_update_mask++] = t;
	}
	r.id          = (char *) id;
	r.personal    = (Haven__Consent__V1__PersonalData *) p;
	r.minor       = minor;
	r.update_mask = names;
	st = call(who, M "UpdateSubject", &r, &haven__consent__v1__subject__descriptor, &rep);
	if (out != NULL) {
		*out = rep;
	} else {
		release(rep);
	}
	return (st);
}

static hv_status
withdraw(int who, const char *id, Haven__Consent__V1__ConsentRecord **out)
{
	Haven__Consent__V1__WithdrawRequest r = HAVEN__CONSENT__V1__WITHDRAW_REQUEST__INIT;

	r.id = (char *) id;
	return (call(who, M "Withdraw", &r, &haven__consent__v1__consent_record__descriptor, out));
}

static hv_status
erase(int who, const char *id, Haven__Consent__V1__EraseSubjectResponse **out)
{
	Haven__Consent__V1__EraseSubjectRequest r = HAVEN__CONSENT__V1__ERASE_SUBJECT_REQUEST__INIT;

	r.id = (char *) id;
	return (call(who, M "EraseSubject", &r,
	    &haven__consent__v1__erase_subject_response__descriptor, out));
}

static hv_status
rpc_audit_list(int who, const char *subject, Haven__Audit__V1__ListResponse **out)
{
	Haven__Audit__V1__ListRequest r = HAVEN__AUDIT__V1__LIST_REQUEST__INIT;

	r.subject = (char *) (subject != NULL ? subject : "");
	r.limit   = 1000;
	return (call(who, M_AUDIT "List", &r, &haven__audit__v1__list_response__descriptor, out));
}

static hv_status
rpc_audit_verify(int who, Haven__Audit__V1__VerifyResponse **out)
{
	Haven__Audit__V1__VerifyRequest r = HAVEN__AUDIT__V1__VERIFY_REQUEST__INIT;

	return (
	    call(who, M_AUDIT "Verify", &r, &haven__audit__v1__verify_response__descriptor, out));
}

/* ---- tests ----------------------------------------------------------------------------- */

static void
test_roles(void **state)
{
	char                               id[CONSENT_ID_HEX], other[CONSENT_ID_HEX];
	Haven__Consent__V1__Subject       *sub = NULL;
	Haven__Consent__V1__CheckResponse *cr  = NULL;

	(void) state;
	/* Who may create a subject. */
	assert_int_equal(create(CITY, false, id), HV_PERMISSION_DENIED);
	assert_int_equal(create(SHELTER_A, false, id), HV_PERMISSION_DENIED);
	assert_int_equal(create(ADMIN, false, id), HV_PERMISSION_DENIED);
	assert_int_equal(create(COORD, false, other), HV_PERMISSION_DENIED);
	assert_int_equal(create(OPERATOR, false, other), HV_OK);
	assert_int_equal(create(ACME, false, id), HV_OK);

	/* Who may see the person: the referrer that holds it, and the operator (audited); never
	 * an admin, a coordinator or a municipality (issue 12, holes 1 and 7). */
	assert_int_equal(show(ACME, id, &sub), HV_OK);
	assert_string_equal(sub->personal->name, NAME);
	assert_string_equal(sub->personal->notes, NOTES);
	assert_string_equal(sub->personal->contact, "+40 700 000 000");
	assert_int_equal(sub->personal->n_languages, 2);
	assert_string_equal(sub->created_by, "acme-ngo");
	assert_int_equal(sub->n_shown, 3);
	release(sub);
	assert_int_equal(show(OPERATOR, id, NULL), HV_OK);
	assert_int_equal(show(ADMIN, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(show(OTHER, id, NULL), HV_PERMISSION_DENIED);
	expect_msg("organisation other-ngo does not hold subject");
	assert_int_equal(show(COORD, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(show(CITY, id, NULL), HV_PERMISSION_DENIED);
	/* A provider: only with consent, and only the categories it covers. */
	assert_int_equal(show(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	expect_msg("no consent of subject");
	assert_int_equal(grant(OTHER, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(grant(SHELTER_A, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_OK);
	/* Named by the consent, but with no referral of hers accepted: nothing, in the words
	 * of no consent (a provider named once must not read her before any offer or after the
	 * placement ended). */
	atomic_store(&shelter_a_accepted, false);
	assert_int_equal(show(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	expect_msg("no consent of subject");
	atomic_store(&shelter_a_accepted, true);
	assert_int_equal(show(SHELTER_A, id, &sub), HV_OK);
	assert_string_equal(sub->personal->name, NAME);
	assert_string_equal(sub->personal->notes, NOTES);
	assert_string_equal(sub->personal->contact, ""); /* contact was not granted */
	assert_int_equal(sub->n_shown, 2);
	release(sub);
	assert_int_equal(show(SHELTER_B, id, NULL), HV_PERMISSION_DENIED);

	/* Check: a provider only for itself and never as "the accepting provider". */
	assert_int_equal(check(SHELTER_A, id,
	                     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER, "shelter-a",
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false, &cr),
	    HV_OK);
	assert_true(cr->allowed);
	release(cr);
	assert_int_equal(check(SHELTER_A, id,
	                     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER, "shelter-b",
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(check(SHELTER_B, id,
	                     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER, "shelter-b",
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, true, NULL),
	    HV_PERMISSION_DENIED);
	/* A provider refused learns no consent id: the closest consent is shelter-a's. */
	assert_int_equal(check(SHELTER_B, id,
	                     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER, "shelter-b",
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false, &cr),
	    HV_OK);
	assert_false(cr->allowed);
	assert_string_equal(cr->consent_id, "");
	release(cr);
	assert_int_equal(check(ACME, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-b", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     &cr),
	    HV_OK);
	assert_false(cr->allowed);
	assert_true(cr->consent_id[0] != '\0'); /* the holder sees which consent came closest */
	release(cr);
	assert_int_equal(check(CITY, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_STATISTICS,
	                     "city-hall", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(check(OTHER, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(check(COORD, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     NULL),
	    HV_PERMISSION_DENIED);
	/* Hole 1: a coordinator (or an admin, or the operator) records no consent for another
	 * organisation's client, whoever it claims gave it. */
	assert_int_equal(grant(COORD, id, "shelter-b", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(grant(ADMIN, id, "shelter-b", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(grant(OPERATOR, id, "shelter-b", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_PERMISSION_DENIED);
	expect_msg("may do this, not role operator");
	assert_int_equal(show(SHELTER_B, id, NULL), HV_PERMISSION_DENIED);

	/* Key rotation: the operator and admins. */
	{
		Haven__Consent__V1__RotateKeyRequest r =
		    HAVEN__CONSENT__V1__ROTATE_KEY_REQUEST__INIT;
		Haven__Consent__V1__RotateKeyResponse *rep = NULL;
		assert_int_equal(call(ACME, M "RotateKey", &r,
		                     &haven__consent__v1__rotate_key_response__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		assert_int_equal(call(ADMIN, M "RotateKey", &r,
		                     &haven__consent__v1__rotate_key_response__descriptor, &rep),
		    HV_OK);
		assert_true(rep->kek_generation >= 2);
		assert_true(rep->rewrapped >= 2);
		release(rep);
	}
	/* The data is still readable after it. */
	assert_int_equal(show(ACME, id, &sub), HV_OK);
	assert_string_equal(sub->personal->name, NAME);
	release(sub);

	/* Erasure: not by a provider or another referrer; by the referrer that created it. */
	assert_int_equal(erase(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(erase(COORD, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(erase(OTHER, id, NULL), HV_PERMISSION_DENIED);
	{
		Haven__Consent__V1__EraseSubjectResponse *er = NULL;
		assert_int_equal(erase(ACME, id, &er), HV_OK);
		assert_int_equal(er->consents_withdrawn, 1);
		assert_true(er->kek_generation >= 3);
		release(er);
	}
	/* Her tombstone names no holder: refused as any subject another holds, so that no answer
	 * tells another organisation that she was erased. The operator hears it. */
	assert_int_equal(show(ACME, id, NULL), HV_PERMISSION_DENIED);
	expect_msg("does not hold");
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_PERMISSION_DENIED);
	expect_msg("does not hold");
	assert_int_equal(show(OPERATOR, id, NULL), HV_NOT_FOUND);
	expect_msg("was erased");
	assert_int_equal(erase(OPERATOR, other, NULL), HV_OK);

	/* The receipt key: anyone signed in; not anonymous callers (there are none here). */
	{
		Haven__Consent__V1__GetReceiptKeyRequest r =
		    HAVEN__CONSENT__V1__GET_RECEIPT_KEY_REQUEST__INIT;
		assert_int_equal(call(CITY, M "GetReceiptKey", &r,
		                     &haven__consent__v1__receipt_key__descriptor, NULL),
		    HV_OK);
	}
}

static void
test_minor(void **state)
{
	char                               id[CONSENT_ID_HEX];
	Haven__Consent__V1__ConsentRecord *c = NULL;

	(void) state;
	assert_int_equal(create(ACME, true, id), HV_OK);
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_FAILED_PRECONDITION);
	expect_msg("is a minor: consent must be given by a guardian or representative");
	/* Who gives consent for her is recorded first: without it, no consent. */
	{
		Haven__Consent__V1__PersonalData none = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
		assert_int_equal(update(ACME, id, "guardian", &none, false, NULL), HV_OK);
	}
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_GUARDIAN, 0, NULL),
	    HV_FAILED_PRECONDITION);
	expect_msg("record the guardian or representative who gives consent first");
	{
		Haven__Consent__V1__PersonalData g = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
		g.guardian                         = GUARDIAN;
		assert_int_equal(update(ACME, id, "guardian", &g, false, NULL), HV_OK);
	}
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_GUARDIAN, 0, &c),
	    HV_OK);
	assert_int_equal(c->given_by, HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_GUARDIAN);
	assert_string_equal(c->recorded_by, "acme-ngo");
	release(c);
	/* The operator records consent only for subjects it holds itself. */
	assert_int_equal(grant(OPERATOR, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_REPRESENTATIVE, 0, &c),
	    HV_PERMISSION_DENIED);
	assert_int_equal(create(OPERATOR, true, id), HV_OK);
	assert_int_equal(grant(OPERATOR, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_REPRESENTATIVE, 0, &c),
	    HV_OK);
	assert_string_equal(c->recorded_by, ""); /* the operator */
	release(c);
	assert_int_equal(show(ACME, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(create(ACME, true, id), HV_OK);
	{
		Haven__Consent__V1__Subject *sub = NULL;
		assert_int_equal(show(ACME, id, &sub), HV_OK);
		assert_true(sub->minor);
		release(sub);
	}
}

/* UpdateSubject: the holder changes fields (sealed again), clears one, corrects the minor flag;
 * nobody else may; bad input is named without echoing it; the audit entry names the fields,
 * never a value. A provider sees the guardian of a minor with her contact, when consent shares
 * contact with it. */
static void
test_update_subject(void **state)
{
	Haven__Consent__V1__PersonalData p       = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__Subject     *sub     = NULL;
	Haven__Audit__V1__ListResponse  *l       = NULL;
	Haven__Consent__V1__GrantRequest g       = HAVEN__CONSENT__V1__GRANT_REQUEST__INIT;
	Haven__Consent__V1__Purpose      share[] = {
		     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
		     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT,
		     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_STATISTICS
	};
	Haven__Consent__V1__Category contact[] = { HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT };
	char                        *recips[]  = { "shelter-a" };
	char                         id[CONSENT_ID_HEX];

	(void) state;
	assert_int_equal(create(ACME, false, id), HV_OK);
	p.contact = "+40 799 SENTINEL-NEW";
	p.notes   = "";
	assert_int_equal(update(ACME, id, "contact,notes,minor", &p, true, &sub), HV_OK);
	assert_true(sub->minor);
	assert_string_equal(sub->holder, "acme-ngo");
	assert_null(sub->personal); /* the reply carries no personal data */
	release(sub);
	assert_int_equal(show(ACME, id, &sub), HV_OK);
	assert_string_equal(sub->personal->contact, "+40 799 SENTINEL-NEW");
	assert_string_equal(sub->personal->notes, "");  /* cleared */
	assert_string_equal(sub->personal->name, NAME); /* not named: kept */
	assert_int_equal(sub->personal->n_languages, 2);
	assert_true(sub->minor);
	release(sub);
	/* Corrected back. */
	assert_int_equal(update(ACME, id, "minor", NULL, false, &sub), HV_OK);
	assert_false(sub->minor);
	release(sub);

	/* Only the holder. */
	assert_int_equal(update(OTHER, id, "contact", &p, false, NULL), HV_PERMISSION_DENIED);
	expect_msg("does not hold subject");
	assert_int_equal(update(OPERATOR, id, "contact", &p, false, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(update(SHELTER_A, id, "contact", &p, false, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(update(COORD, id, "contact", &p, false, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(update(ADMIN, id, "contact", &p, false, NULL), HV_PERMISSION_DENIED);

	/* Bad input: named, never echoed. */
	assert_int_equal(update(ACME, id, "", &p, false, NULL), HV_INVALID_ARGUMENT);
	expect_msg("update_mask: 1 to 8");
	assert_int_equal(update(ACME, id, "contact,Sentinel-field", &p, false, NULL),
	    HV_INVALID_ARGUMENT);
	expect_msg("update_mask[1] is not a field");
	assert_null(strstr(errmsg, "Sentinel"));
	assert_int_equal(update(ACME, id, "contact,contact", &p, false, NULL), HV_INVALID_ARGUMENT);
	expect_msg("named before");
	assert_int_equal(update(ACME, "not-an-id", "contact", &p, false, NULL),
	    HV_INVALID_ARGUMENT);
	{
		Haven__Consent__V1__PersonalData bad = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
		bad.date_of_birth                    = "Sentinel-1999";
		assert_int_equal(update(ACME, id, "date_of_birth", &bad, false, NULL),
		    HV_INVALID_ARGUMENT);
		expect_msg("date_of_birth must be a date");
		assert_null(strstr(errmsg, "Sentinel"));
	}
	{
		/* libhaven's one text rule: a tag a service may not have, a name that reads
		 * otherwise than it is stored (U+202E), refused for a person too. */
		Haven__Consent__V1__PersonalData bad   = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
		char                            *tag[] = { "12--" };
		bad.languages                          = tag;
		bad.n_languages                        = 1;
		assert_int_equal(update(ACME, id, "languages", &bad, false, NULL),
		    HV_INVALID_ARGUMENT);
		expect_msg("languages[0] must be a BCP 47 language tag");
		bad.n_languages = 0;
		bad.name        = "Sentinel \u202e"
		                  "maretsmA";
		assert_int_equal(update(ACME, id, "name", &bad, false, NULL), HV_INVALID_ARGUMENT);
		expect_msg("name must be");
		assert_null(strstr(errmsg, "Sentinel"));
	}
	assert_int_equal(update(ACME, "00000000000000000000000000000000", "contact", &p, false,
	                     NULL),
	    HV_PERMISSION_DENIED);

	/* Audited: the fields, not the values. */
	assert_int_equal(rpc_audit_list(ACME, id, &l), HV_OK);
	{
		bool saw = false;
		for (size_t i = 0; i < l->n_entries; i++) {
			if (strcmp(l->entries[i]->method, M "UpdateSubject") == 0 &&
			    strcmp(l->entries[i]->caller_org, "acme-ngo") == 0 &&
			    l->entries[i]->result == 0) {
				saw = saw ||
				    strcmp(l->entries[i]->purpose, "contact,notes,minor") == 0;
			}
			assert_null(strstr(l->entries[i]->purpose, "SENTINEL"));
		}
		assert_true(saw);
		/* The refusal of another referrer is recorded too. */
		saw = false;
		for (size_t i = 0; i < l->n_entries; i++) {
			saw = saw ||
			    (strcmp(l->entries[i]->caller_org, "other-ngo") == 0 &&
			        l->entries[i]->result == HV_PERMISSION_DENIED);
		}
		assert_true(saw);
	}
	release(l);

	/* A minor's guardian, shown to a provider that consent shares contact with. */
	assert_int_equal(create(ACME, true, id), HV_OK);
	g.subject      = id;
	g.purposes     = share;
	g.n_purposes   = 1;
	g.recipients   = recips;
	g.n_recipients = 1;
	g.categories   = contact;
	g.n_categories = 1;
	g.given_by     = HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_GUARDIAN;
	g.method       = HAVEN__CONSENT__V1__METHOD__METHOD_WRITTEN;
	g.language     = "ro";
	g.expires_ms   = clock_ms + 86400000;
	/* Shared, but not for contacting her: how to reach her stays hidden. */
	assert_int_equal(call(ACME, M "Grant", &g, &haven__consent__v1__consent_record__descriptor,
	                     NULL),
	    HV_OK);
	assert_int_equal(show(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	g.n_purposes = 2; /* share-with-provider, contact */
	assert_int_equal(call(ACME, M "Grant", &g, &haven__consent__v1__consent_record__descriptor,
	                     NULL),
	    HV_OK);
	assert_int_equal(show(SHELTER_A, id, &sub), HV_OK);
	assert_string_equal(sub->personal->guardian, GUARDIAN);
	assert_string_equal(sub->personal->contact, "+40 700 000 000");
	assert_string_equal(sub->personal->name, ""); /* identity is not shared */
	release(sub);
	assert_int_equal(show(SHELTER_B, id, NULL), HV_PERMISSION_DENIED);
	/* statistics is retired: neither granted nor checked. */
	g.purposes   = share + 2;
	g.n_purposes = 1;
	assert_int_equal(call(ACME, M "Grant", &g, &haven__consent__v1__consent_record__descriptor,
	                     NULL),
	    HV_INVALID_ARGUMENT);
	expect_msg("statistics is retired");
	assert_int_equal(check(ACME, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_STATISTICS, "",
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_UNSPECIFIED, false, NULL),
	    HV_INVALID_ARGUMENT);
	expect_msg("statistics is retired");
	/* Erased: nothing to update (her tombstone names no holder). */
	assert_int_equal(erase(ACME, id, NULL), HV_OK);
	assert_int_equal(update(ACME, id, "contact", &p, false, NULL), HV_PERMISSION_DENIED);
}

static void
test_expired_and_withdrawn(void **state)
{
	char                               id[CONSENT_ID_HEX];
	Haven__Consent__V1__ConsentRecord *c = NULL, *wd = NULL;
	Haven__Consent__V1__CheckResponse *cr    = NULL;
	int64_t                            t0    = clock_ms;
	uint64_t                           cur_a = 0, cur_b = 0;
	unsigned                           swept = 0;

	(void) state;
	/* The sweep's mark to now: only the expiry below is new to it. */
	assert_int_equal(consent_expiry_sweep(w.cs, NULL), HV_OK);
	assert_int_equal(create(ACME, false, id), HV_OK);
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, t0 + 60000, &c),
	    HV_OK);
	assert_int_equal(check(ACME, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     &cr),
	    HV_OK);
	assert_true(cr->allowed);
	assert_string_equal(cr->consent_id, c->id);
	release(cr);
	/* A minute later it expired. */
	clock_ms = t0 + 60000;
	assert_int_equal(check(ACME, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     &cr),
	    HV_OK);
	assert_false(cr->allowed);
	assert_int_equal(cr->reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_EXPIRED);
	assert_string_equal(cr->consent_id, c->id);
	assert_non_null(strstr(cr->message, "expired"));
	release(cr);
	assert_int_equal(show(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	/* The expiry sweep acts as a withdrawal does (issue 14): the organisation the consent
	 * named hears of it, as an expiry (CONSENT_EXPIRED), no other, and only once however
	 * often the sweep runs. */
	withdrawn_alerts(SHELTER_A, &cur_a, id); /* to the cursor */
	withdrawn_alerts(SHELTER_B, &cur_b, id);
	assert_int_equal(consent_expiry_sweep(w.cs, &swept), HV_OK);
	assert_int_equal(swept, 1);
	assert_int_equal(consent_alerts(SHELTER_A, &cur_a, id, EXPIRED_KIND), 1);
	assert_int_equal(consent_alerts(SHELTER_B, &cur_b, id, EXPIRED_KIND), 0);
	assert_int_equal(consent_expiry_sweep(w.cs, &swept), HV_OK);
	assert_int_equal(swept, 0);
	assert_int_equal(consent_alerts(SHELTER_A, &cur_a, id, EXPIRED_KIND), 0);
	release(c);

	/* A new one, withdrawn: denied at once. */
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, &c),
	    HV_OK);
	assert_int_equal(show(SHELTER_A, id, NULL), HV_OK);
	assert_int_equal(withdraw(OTHER, c->id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(withdraw(SHELTER_A, c->id, NULL), HV_PERMISSION_DENIED);
	/* Hole 3: a coordinator neither withdraws a person's consent ... */
	assert_int_equal(withdraw(COORD, c->id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(withdraw(ADMIN, c->id, NULL), HV_PERMISSION_DENIED);
	withdrawn_alerts(SHELTER_A, &cur_a, id); /* to the cursor */
	withdrawn_alerts(SHELTER_B, &cur_b, id);
	assert_int_equal(withdraw(ACME, c->id, &wd), HV_OK);
	/* The organisation the consent named hears of it, in the withdrawal's transaction; no
	 * other does. */
	assert_int_equal(withdrawn_alerts(SHELTER_A, &cur_a, id), 1);
	assert_int_equal(withdrawn_alerts(SHELTER_B, &cur_b, id), 0);
	assert_int_equal(wd->withdrawn_at_ms, clock_ms);
	assert_int_equal(wd->version, 2);
	release(wd);
	assert_int_equal(check(ACME, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     &cr),
	    HV_OK);
	assert_false(cr->allowed);
	assert_int_equal(cr->reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_WITHDRAWN);
	release(cr);
	assert_int_equal(show(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(withdraw(ACME, c->id, NULL), HV_FAILED_PRECONDITION);
	expect_msg("withdrawn already");
	/* ... nor re-grants after the person withdrew: only the holder records a new consent. */
	assert_int_equal(grant(COORD, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(show(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	/* Listing shows both, in id order, with the withdrawal. */
	{
		Haven__Consent__V1__ListConsentsRequest r =
		    HAVEN__CONSENT__V1__LIST_CONSENTS_REQUEST__INIT;
		Haven__Consent__V1__ListConsentsResponse *l = NULL;
		r.subject                                   = id;
		assert_int_equal(call(ACME, M "List", &r,
		                     &haven__consent__v1__list_consents_response__descriptor, &l),
		    HV_OK);
		assert_int_equal(l->n_consents, 2);
		assert_true(strcmp(l->consents[0]->id, l->consents[1]->id) < 0);
		release(l);
		assert_int_equal(call(OTHER, M "List", &r,
		                     &haven__consent__v1__list_consents_response__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		assert_int_equal(call(SHELTER_A, M "List", &r,
		                     &haven__consent__v1__list_consents_response__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		/* Hole 7: coordinators and admins see no consent records (they show where a person
		 * is sheltered). */
		assert_int_equal(call(COORD, M "List", &r,
		                     &haven__consent__v1__list_consents_response__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		assert_int_equal(call(ADMIN, M "List", &r,
		                     &haven__consent__v1__list_consents_response__descriptor, NULL),
		    HV_PERMISSION_DENIED);
	}
	release(c);
	clock_ms = t0;
}

static char *
receipt(int who, const char *id)
{
	Haven__Consent__V1__GetReceiptRequest r   = HAVEN__CONSENT__V1__GET_RECEIPT_REQUEST__INIT;
	Haven__Consent__V1__Receipt          *rep = NULL;
	char                                 *json;

	r.id = (char *) id;
	assert_int_equal(call(who, M "GetReceipt", &r, &haven__consent__v1__receipt__descriptor,
	                     &rep),
	    HV_OK);
	json = strdup(rep->json);
	release(rep);
	return (json);
}

/* Replaces the first occurrence of from with to in s (same length or shorter). */
static void
edit(char *s, const char *from, const char *to)
{
	char *p = strstr(s, from);

	assert_non_null(p);
	assert_true(strlen(to) <= strlen(from));
	memcpy(p, to, strlen(to));
	memmove(p + strlen(to), p + strlen(from), strlen(p + strlen(from)) + 1);
}

static void
test_receipts(void **state)
{
	char                                     id[CONSENT_ID_HEX];
	Haven__Consent__V1__ConsentRecord       *c = NULL;
	Haven__Consent__V1__GetReceiptKeyRequest kr =
	    HAVEN__CONSENT__V1__GET_RECEIPT_KEY_REQUEST__INIT;
	Haven__Consent__V1__ReceiptKey *key = NULL;
	char                           *json, *json2, *bad;
	char                            why[128];
	static const char *const        edits[][2] = {
		       { "\"acme-ngo\"", "\"acme-ngx\"" },
		       { "\"shelter-a\"", "\"shelter-b\"" },
		       { "\"written\"", "\"verbal\"" },
		       { "\"identity\",", "" },
		       { "\"accepting_provider\": false", "\"accepting_provider\": true" },
		       { "\"version\": 1", "\"version\": 3" },
		       { "\"withdrawn_at\": null", "\"withdrawn_at\": 0" },
		       { "\"language\": \"ro\"", "\"language\": \"nl\"" },
	};

	(void) state;
	assert_int_equal(create(ACME, false, id), HV_OK);
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, &c),
	    HV_OK);
	assert_int_equal(call(CITY, M "GetReceiptKey", &kr,
	                     &haven__consent__v1__receipt_key__descriptor, &key),
	    HV_OK);
	assert_int_equal(key->public_key.len, 32);
	assert_non_null(strstr(key->public_key_pem, "BEGIN PUBLIC KEY"));

	json = receipt(ACME, c->id);
	assert_non_null(strstr(json, c->id));
	assert_non_null(strstr(json, id));
	assert_null(strstr(json, "Sentinel")); /* a receipt holds no personal data */
	assert_int_equal(consent_receipt_verify(json, strlen(json), key->public_key.data, why,
	                     sizeof(why)),
	    HV_OK);
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		bad = strdup(json);
		edit(bad, edits[i][0], edits[i][1]);
		if (consent_receipt_verify(bad, strlen(bad), key->public_key.data, why,
		        sizeof(why)) != HV_UNAUTHENTICATED) {
			fail_msg("edit %s -> %s was not detected", edits[i][0], edits[i][1]);
		}
		free(bad);
	}
	/* Withdrawn: a new version with a new signature; the old receipt still verifies as
	 * what it was. */
	assert_int_equal(withdraw(ACME, c->id, NULL), HV_OK);
	json2 = receipt(ACME, c->id);
	assert_non_null(strstr(json2, "\"version\": 2"));
	assert_null(strstr(json2, "\"withdrawn_at\": null"));
	assert_int_equal(consent_receipt_verify(json2, strlen(json2), key->public_key.data, why,
	                     sizeof(why)),
	    HV_OK);
	assert_int_equal(consent_receipt_verify(json, strlen(json), key->public_key.data, why,
	                     sizeof(why)),
	    HV_OK);
	/* Receipts are consent reads: the same roles as Get. */
	{
		Haven__Consent__V1__GetReceiptRequest r =
		    HAVEN__CONSENT__V1__GET_RECEIPT_REQUEST__INIT;
		r.id = c->id;
		assert_int_equal(call(OTHER, M "GetReceipt", &r,
		                     &haven__consent__v1__receipt__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		assert_int_equal(call(SHELTER_A, M "GetReceipt", &r,
		                     &haven__consent__v1__receipt__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		assert_int_equal(call(COORD, M "GetReceipt", &r,
		                     &haven__consent__v1__receipt__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		assert_int_equal(call(ADMIN, M "GetReceipt", &r,
		                     &haven__consent__v1__receipt__descriptor, NULL),
		    HV_PERMISSION_DENIED);
	}
	free(json);
	free(json2);
	release(key);
	release(c);
}

/* The next ConsentWithdrawn on sub: of consent cid and subject, with erased and expired as
 * given; returns its withdrawn_at_ms. */
static int64_t
expect_withdrawn(nng_socket sub, const char *cid, const char *subject, bool erased, bool expired)
{
	const size_t                          tl = strlen(CONSENT_TOPIC_WITHDRAWN);
	void                                 *buf;
	size_t                                len;
	Haven__Consent__V1__ConsentWithdrawn *ev;
	int64_t                               at;

	assert_int_equal(nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC), 0);
	assert_true(len > tl);
	assert_memory_equal(buf, CONSENT_TOPIC_WITHDRAWN, tl);
	assert_non_null(ev = haven__consent__v1__consent_withdrawn__unpack(NULL, len - tl,
	                    (uint8_t *) buf + tl));
	assert_string_equal(ev->consent_id, cid);
	assert_string_equal(ev->subject, subject);
	assert_int_equal(ev->erased, erased);
	assert_int_equal(ev->expired, expired);
	at = ev->withdrawn_at_ms;
	haven__consent__v1__consent_withdrawn__free_unpacked(ev, NULL);
	nng_free(buf, len);
	return (at);
}

static void
test_withdrawal_events(void **state)
{
	nng_socket                         sub;
	char                               id[CONSENT_ID_HEX];
	Haven__Consent__V1__ConsentRecord *c1 = NULL, *c2 = NULL;
	const size_t                       tl = strlen(CONSENT_TOPIC_WITHDRAWN);

	(void) state;
	assert_int_equal(nng_sub0_open(&sub), 0);
	assert_int_equal(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, CONSENT_TOPIC_WITHDRAWN, tl),
	    0);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 5000), 0);
	assert_int_equal(nng_dial(sub, w.pub_url, NULL, 0), 0);
	usleep(100 * 1000); /* the subscription reaches the publisher */

	assert_int_equal(create(ACME, false, id), HV_OK);
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, &c1),
	    HV_OK);
	assert_int_equal(grant(ACME, id, NULL, true, HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT,
	                     0, &c2),
	    HV_OK);
	assert_int_equal(withdraw(ACME, c1->id, NULL), HV_OK);
	expect_withdrawn(sub, c1->id, id, false, false);
	/* Erasure withdraws what is left, and says so. */
	assert_int_equal(erase(ACME, id, NULL), HV_OK);
	expect_withdrawn(sub, c2->id, id, true, false);
	/* An expiry the sweep finds is published as one (the referral records "consent
	 * expired"), with the consent's end as its time. */
	release(c1);
	assert_int_equal(create(ACME, false, id), HV_OK);
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, clock_ms + 120000,
	                     &c1),
	    HV_OK);
	clock_ms += 120000;
	{
		unsigned swept = 0;
		assert_int_equal(consent_expiry_sweep(w.cs, &swept), HV_OK);
		assert_int_equal(swept, 1);
	}
	assert_int_equal(expect_withdrawn(sub, c1->id, id, false, true), clock_ms);
	clock_ms -= 120000;
	release(c1);
	release(c2);
	nng_close(sub);
}

/* Who accessed the data of any subject an organisation holds (no subject named): the entries
 * of its own subjects, never another holder's, paged. */
static void
holder_wide(const char *id)
{
	Haven__Audit__V1__ListResponse *l = NULL;
	Haven__Audit__V1__ListRequest   r = HAVEN__AUDIT__V1__LIST_REQUEST__INIT;
	char                            theirs[CONSENT_ID_HEX], mine[CONSENT_ID_HEX];
	bool                            saw_id = false;

	assert_int_equal(create(OTHER, false, theirs), HV_OK);
	assert_int_equal(show(OTHER, theirs, NULL), HV_OK);
	assert_int_equal(rpc_audit_list(ACME, "", &l), HV_OK);
	assert_true(l->n_entries >= 5);
	for (size_t i = 0; i < l->n_entries; i++) {
		assert_string_not_equal(l->entries[i]->subject, theirs);
		assert_string_not_equal(l->entries[i]->subject, "");
		saw_id = saw_id || strcmp(l->entries[i]->subject, id) == 0;
	}
	assert_true(saw_id);
	release(l);
	assert_int_equal(rpc_audit_list(OTHER, "", &l), HV_OK);
	assert_true(l->n_entries >= 2);
	for (size_t i = 0; i < l->n_entries; i++) {
		assert_string_equal(l->entries[i]->subject, theirs);
	}
	release(l);
	/* Paged: one entry a page, each after the last. */
	r.limit = 1;
	assert_int_equal(call(ACME, M_AUDIT "List", &r,
	                     &haven__audit__v1__list_response__descriptor, &l),
	    HV_OK);
	assert_int_equal(l->n_entries, 1);
	assert_int_equal(l->next_after_seq, l->entries[0]->seq);
	r.after_seq = l->next_after_seq;
	release(l);
	assert_int_equal(call(ACME, M_AUDIT "List", &r,
	                     &haven__audit__v1__list_response__descriptor, &l),
	    HV_OK);
	assert_int_equal(l->n_entries, 1);
	assert_true(l->entries[0]->seq > r.after_seq);
	release(l);
	/* Its entry behind more than a page (256) of another holder's: found, nothing else. */
	assert_int_equal(create(ACME, false, mine), HV_OK);
	r.limit     = 1000;
	r.after_seq = 0;
	assert_int_equal(call(ACME, M_AUDIT "List", &r,
	                     &haven__audit__v1__list_response__descriptor, &l),
	    HV_OK);
	r.after_seq = l->entries[l->n_entries - 1]->seq;
	release(l);
	for (int i = 0; i < 300; i++) {
		assert_int_equal(check(OTHER, theirs, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL,
		                     "", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_UNSPECIFIED, false,
		                     NULL),
		    HV_OK);
	}
	assert_int_equal(show(ACME, mine, NULL), HV_OK);
	assert_int_equal(call(ACME, M_AUDIT "List", &r,
	                     &haven__audit__v1__list_response__descriptor, &l),
	    HV_OK);
	assert_int_equal(l->n_entries, 1);
	assert_string_equal(l->entries[0]->subject, mine);
	assert_string_equal(l->entries[0]->method, M "GetSubject");
	assert_int_equal(l->next_after_seq, 0);
	release(l);
}

static void
test_audit(void **state)
{
	char                              id[CONSENT_ID_HEX];
	Haven__Audit__V1__ListResponse   *l = NULL;
	Haven__Audit__V1__VerifyResponse *v = NULL;
	bool saw_provider = false, saw_denied = false, saw_create = false;

	(void) state;
	assert_int_equal(create(ACME, false, id), HV_OK);
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_OK);
	assert_int_equal(show(SHELTER_A, id, NULL), HV_OK);
	assert_int_equal(show(SHELTER_B, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(check(ACME, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT, "shelter-a",
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT, false, NULL),
	    HV_OK);

	/* Who saw the person: the holder and the operator; not another referrer, a provider, a
	 * coordinator or an admin (hole 1: coordinators listed every subject in the country). */
	assert_int_equal(rpc_audit_list(OTHER, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(rpc_audit_list(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(rpc_audit_list(COORD, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(rpc_audit_list(COORD, "", NULL), HV_PERMISSION_DENIED);
	assert_int_equal(rpc_audit_list(ADMIN, "", NULL), HV_PERMISSION_DENIED);
	holder_wide(id);
	assert_int_equal(rpc_audit_list(ACME, id, &l), HV_OK);
	assert_int_equal(l->n_entries, 5);
	for (size_t i = 0; i < l->n_entries; i++) {
		Haven__Audit__V1__AuditEntry *e = l->entries[i];
		assert_string_equal(e->subject, id);
		assert_int_equal(e->hash.len, 32);
		assert_null(strstr(e->method, "Sentinel"));
		if (strcmp(e->method, M "CreateSubject") == 0) {
			saw_create = strcmp(e->caller_org, "acme-ngo") == 0 &&
			    strcmp(e->caller_role, "referrer") == 0;
		}
		if (strcmp(e->method, M "GetSubject") == 0 &&
		    strcmp(e->caller_org, "shelter-a") == 0) {
			saw_provider =
			    e->result == 0 && strcmp(e->purpose, "share-with-provider") == 0;
		}
		if (strcmp(e->method, M "GetSubject") == 0 &&
		    strcmp(e->caller_org, "shelter-b") == 0) {
			saw_denied = e->result == HV_PERMISSION_DENIED &&
			    strcmp(e->result_name, "PERMISSION_DENIED") == 0;
		}
	}
	assert_true(saw_create);
	assert_true(saw_provider);
	assert_true(saw_denied);
	assert_string_equal(l->entries[4]->method, M "Check");
	assert_string_equal(l->entries[4]->purpose, "contact");
	assert_int_equal(l->entries[4]->result, HV_PERMISSION_DENIED); /* contact not granted */
	release(l);

	/* Paging over everything. */
	{
		Haven__Audit__V1__ListRequest r = HAVEN__AUDIT__V1__LIST_REQUEST__INIT;
		r.limit                         = 2;
		assert_int_equal(call(OPERATOR, M_AUDIT "List", &r,
		                     &haven__audit__v1__list_response__descriptor, &l),
		    HV_OK);
		assert_int_equal(l->n_entries, 2);
		assert_int_equal(l->entries[0]->seq, 1);
		assert_int_equal(l->next_after_seq, 2);
		release(l);
	}

	/* Intact, then a byte of one entry changed underneath: named. */
	assert_int_equal(rpc_audit_verify(ACME, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(rpc_audit_verify(OPERATOR, &v), HV_OK);
	assert_true(v->intact);
	assert_true(v->entries > 10);
	assert_int_equal(v->first_bad_seq, 0);
	release(v);
}

/* Flips a byte of audit entry 3 (raw table access, as someone with the file could). */
static hv_status
tamper_fn(store_txn *txn, void *arg)
{
	store_table *t      = arg;
	uint8_t      key[8] = { 0, 0, 0, 0, 0, 0, 0, 3 };
	uint8_t      val[600];
	const void  *v;
	size_t       vl;
	hv_status    st;

	if ((st = store_get(txn, *t, key, sizeof(key), &v, &vl)) != HV_OK) {
		return (st);
	}
	memcpy(val, v, vl);
	val[30] ^= 0x01;
	return (store_put(txn, *t, key, sizeof(key), val, vl));
}

/* What a service's first verification of the audit chain found, once it has finished (it runs
 * on the service's own thread, right after consent_open); PENDING after 30 s. */
static consent_audit_state
audit_state_after_open(consent_service *cs)
{
	consent_audit_state st = CONSENT_AUDIT_PENDING;

	for (int i = 0; i < 3000 && (st = consent_audit_status(cs)) == CONSENT_AUDIT_PENDING; i++) {
		usleep(10 * 1000);
	}
	return (st);
}

static void
test_audit_tampering(void **state)
{
	store_table                       t;
	Haven__Audit__V1__VerifyResponse *v = NULL;

	(void) state;
	assert_int_equal(store_table_open(w.s, "audit.log", &t), HV_OK);
	assert_int_equal(store_write(w.s, tamper_fn, &t), HV_OK);
	assert_int_equal(rpc_audit_verify(COORD, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(rpc_audit_verify(ADMIN, &v), HV_OK);
	assert_false(v->intact);
	assert_int_equal(v->first_bad_seq, 3);
	assert_non_null(strstr(v->reason, "entry 3"));
	release(v);
	/* A service opening on the broken store notices it right after its start (the walk runs
	 * beside the service, not before it), and serves on. */
	{
		consent_service *cs2 = NULL;
		consent_options  co  = { .store = w.s, .data_dir = w.dir, .now_ms = test_now };
		assert_int_equal(consent_open(&cs2, &co), HV_OK);
		assert_int_equal(audit_state_after_open(cs2), CONSENT_AUDIT_BROKEN);
		assert_true(consent_audit_broken(cs2));
		consent_close(cs2);
	}
	assert_false(consent_audit_broken(w.cs));
	/* Put it back, for the tests after this one. */
	assert_int_equal(store_write(w.s, tamper_fn, &t), HV_OK);
	assert_int_equal(rpc_audit_verify(ADMIN, &v), HV_OK);
	assert_true(v->intact);
	release(v);
	{
		consent_service *cs2 = NULL;
		consent_options  co  = { .store = w.s, .data_dir = w.dir, .now_ms = test_now };
		assert_int_equal(consent_open(&cs2, &co), HV_OK);
		assert_int_equal(audit_state_after_open(cs2), CONSENT_AUDIT_INTACT);
		assert_false(consent_audit_broken(cs2));
		consent_close(cs2);
	}
}

/* Raw edits of the audit tables behind the service's back (someone with the store file):
 * the tail cut (the last entry removed, the head moved back to the one before), or a subject
 * index row removed or added; undone with the same op and put back. */
typedef struct audit_raw {
	store_table log, head, by_window;
	audit_entry last; /* the last entry about a subject */
	uint64_t    head_seq;
	uint8_t     head_hash[AUDIT_HASH_LEN];
	uint8_t     saved[600]; /* the cut entry's value */
	size_t      saved_len;
	int         kind; /* see audit_raw_fn */
} audit_raw;

static void
be64_key(uint8_t k[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		k[i] = (uint8_t) v;
		v >>= 8;
	}
}

static size_t
row_key(uint8_t *k, uint64_t seq, const char *subject)
{
	size_t sl = strlen(subject);

	be64_key(k, seq >> 10);
	memcpy(k + 8, subject, sl);
	k[8 + sl] = 0;
	be64_key(k + 8 + sl + 1, seq);
	return (8 + sl + 9);
}

static hv_status
audit_raw_fn(store_txn *txn, void *arg)
{
	audit_raw  *r = arg;
	uint8_t     k[8], head[8 + AUDIT_HASH_LEN], row[8 + AUDIT_SUBJECT_MAX + 9];
	const void *v;
	size_t      vl;
	hv_status   st;

	switch (r->kind) {
	case 0: /* the last entry removed, the head moved back to the one before */
		be64_key(k, r->head_seq);
		if ((st = store_get(txn, r->log, k, 8, &v, &vl)) != HV_OK) {
			return (st);
		}
		memcpy(r->saved, v, vl);
		r->saved_len = vl;
		be64_key(k, r->head_seq - 1);
		if ((st = store_get(txn, r->log, k, 8, &v, &vl)) != HV_OK) {
			return (st);
		}
		be64_key(head, r->head_seq - 1);
		memcpy(head + 8, (const uint8_t *) v + vl - AUDIT_HASH_LEN, AUDIT_HASH_LEN);
		be64_key(k, r->head_seq);
		if ((st = store_del(txn, r->log, k, 8)) != HV_OK) {
			return (st);
		}
		return (store_put(txn, r->head, "head", 4, head, sizeof(head)));
	case 1:
		be64_key(k, r->head_seq);
		be64_key(head, r->head_seq);
		memcpy(head + 8, r->head_hash, AUDIT_HASH_LEN);
		if ((st = store_put(txn, r->log, k, 8, r->saved, r->saved_len)) != HV_OK) {
			return (st);
		}
		return (store_put(txn, r->head, "head", 4, head, sizeof(head)));
	case 2:
		return (
		    store_del(txn, r->by_window, row, row_key(row, r->last.seq, r->last.subject)));
	case 3:
		return (store_put(txn, r->by_window, row,
		    row_key(row, r->last.seq, r->last.subject), "", 0));
	case 4: /* a row naming entry 1 for the subject of the last entry */
		return (store_put(txn, r->by_window, row, row_key(row, 1, r->last.subject), "", 0));
	default:
		return (store_del(txn, r->by_window, row, row_key(row, 1, r->last.subject)));
	}
}

static void
audit_raw_do(audit_raw *r, int kind)
{
	r->kind = kind;
	assert_int_equal(store_write(w.s, audit_raw_fn, r), HV_OK);
}

/* Verify over RPC: broken at seq with why in the reason, and no subject id in it. */
static void
expect_broken(uint64_t seq, const char *why, const char *subject)
{
	Haven__Audit__V1__VerifyResponse *v = NULL;

	assert_int_equal(rpc_audit_verify(OPERATOR, &v), HV_OK);
	assert_false(v->intact);
	if (v->first_bad_seq != seq || strstr(v->reason, why) == NULL) {
		fail_msg("expected %llu (%s), got %llu: %s", (unsigned long long) seq, why,
		    (unsigned long long) v->first_bad_seq, v->reason);
	}
	assert_null(strstr(v->reason, subject));
	release(v);
}

/* Through the real Verify RPC: the tail cut with the head moved back is seen by the
 * checkpoint the last verify wrote; index rows removed or added are seen; each is reported by
 * seq, without the subject. */
static void
test_audit_checkpoints_and_index(void **state)
{
	Haven__Audit__V1__VerifyResponse *v = NULL;
	audit_raw                         r;
	store_txn                        *txn;
	static audit_entry                es[AUDIT_LIST_MAX];
	size_t                            n;

	(void) state;
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_table_open(w.s, "audit.log", &r.log), HV_OK);
	assert_int_equal(store_table_open(w.s, "audit.head", &r.head), HV_OK);
	assert_int_equal(store_table_open(w.s, "audit.by_window", &r.by_window), HV_OK);
	assert_int_equal(rpc_audit_verify(OPERATOR, &v), HV_OK); /* checkpoints the head */
	assert_true(v->intact);
	assert_true(v->checkpoints >= 1);
	assert_int_equal(v->keyed_from, 0);
	r.head_seq = v->head_seq;
	memcpy(r.head_hash, v->head_hash.data, AUDIT_HASH_LEN);
	release(v);
	assert_int_equal(rpc_audit_verify(OPERATOR, &v), HV_OK);
	assert_int_equal(v->checkpoint_seq, r.head_seq);
	release(v);
	assert_int_equal(store_read_begin(w.s, &txn), HV_OK);
	assert_int_equal(audit_list(consent_audit(w.cs), txn, NULL, 0, es, AUDIT_LIST_MAX, &n),
	    HV_OK);
	store_read_end(txn);
	for (size_t i = 0; i < n; i++) {
		if (es[i].subject[0] != '\0' && es[i].seq > 1) {
			r.last = es[i];
		}
	}
	assert_true(r.last.seq > 1);

	audit_raw_do(&r, 0);
	expect_broken(r.head_seq, "were removed (checkpoint line", r.last.subject);
	audit_raw_do(&r, 1);
	audit_raw_do(&r, 2);
	expect_broken(r.last.seq, "is missing from the subject index", r.last.subject);
	audit_raw_do(&r, 3);
	audit_raw_do(&r, 4);
	expect_broken(1, "the subject index names entry 1", r.last.subject);
	audit_raw_do(&r, 5);
	assert_int_equal(rpc_audit_verify(OPERATOR, &v), HV_OK);
	assert_true(v->intact);
	release(v);
}

static void
test_bad_input(void **state)
{
	char                                     id[CONSENT_ID_HEX];
	char                                     long_name[260];
	Haven__Consent__V1__CreateSubjectRequest req =
	    HAVEN__CONSENT__V1__CREATE_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__PersonalData p = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;

	(void) state;
	/* Malformed and unknown ids. */
	assert_int_equal(show(ACME, "../../etc/passwd", NULL), HV_INVALID_ARGUMENT);
	expect_msg("32 lower-case hex");
	assert_int_equal(show(ACME, "ABCDEF0123456789ABCDEF0123456789", NULL), HV_INVALID_ARGUMENT);
	/* An unknown subject is refused as another holder's: no oracle for which ids exist. */
	assert_int_equal(show(ACME, "0123456789abcdef0123456789abcdef", NULL),
	    HV_PERMISSION_DENIED);
	expect_msg("does not hold subject 0123456789abcdef0123456789abcdef");
	assert_int_equal(show(OPERATOR, "0123456789abcdef0123456789abcdef", NULL), HV_NOT_FOUND);
	expect_msg("no subject 0123456789abcdef0123456789abcdef");
	assert_int_equal(withdraw(ACME, "0123456789abcdef0123456789abcdef", NULL),
	    HV_PERMISSION_DENIED);
	expect_msg("is not of a subject that acme-ngo holds");
	assert_int_equal(check(ACME, "0123456789abcdef0123456789abcdef",
	                     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL, "shelter-a",
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false, NULL),
	    HV_PERMISSION_DENIED);
	/* Fields too long or not text: the message names the field and the bound, never the
	 * value. */
	memset(long_name, 'Q', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	p.name                           = long_name;
	req.personal                     = &p;
	assert_int_equal(call(ACME, M "CreateSubject", &req,
	                     &haven__consent__v1__create_subject_response__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	expect_msg("name must be at most 200 bytes");
	assert_null(strstr(errmsg, "QQQ"));
	p.name          = "ok";
	p.date_of_birth = "31-12-1999";
	assert_int_equal(call(ACME, M "CreateSubject", &req,
	                     &haven__consent__v1__create_subject_response__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	expect_msg("date_of_birth");
	assert_null(strstr(errmsg, "1999"));
	p.date_of_birth = "1999-02-30";
	assert_int_equal(call(ACME, M "CreateSubject", &req,
	                     &haven__consent__v1__create_subject_response__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	p.date_of_birth = "";
	p.notes         = "bell\a";
	assert_int_equal(call(ACME, M "CreateSubject", &req,
	                     &haven__consent__v1__create_subject_response__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	expect_msg("notes");
	p.notes   = "";
	p.contact = "\xc3\x28"; /* not UTF-8 */
	assert_int_equal(call(ACME, M "CreateSubject", &req,
	                     &haven__consent__v1__create_subject_response__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	/* A recipient not in the partner directory. */
	assert_int_equal(create(ACME, false, id), HV_OK);
	assert_int_equal(grant(ACME, id, "nobody-here", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_INVALID_ARGUMENT);
	expect_msg("no enabled organisation nobody-here in the partner directory");
	/* Expiry in the past. */
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, clock_ms - 1000, NULL),
	    HV_INVALID_ARGUMENT);
}

/* A corrupted ciphertext in the store: DATA_LOSS and a message with the id only. */
typedef struct corrupt_job {
	store_table t;
	uint8_t     key[CONSENT_ID_LEN];
} corrupt_job;

static hv_status
corrupt_fn(store_txn *txn, void *arg)
{
	corrupt_job *j = arg;
	uint8_t      val[8192];
	const void  *v;
	size_t       vl;
	hv_status    st;

	if ((st = store_get(txn, j->t, j->key, sizeof(j->key), &v, &vl)) != HV_OK) {
		return (st);
	}
	memcpy(val, v, vl);
	val[vl - 5] ^= 0x10;
	return (store_put(txn, j->t, j->key, sizeof(j->key), val, vl));
}

static void
test_corrupted_ciphertext(void **state)
{
	char        id[CONSENT_ID_HEX];
	corrupt_job j;

	(void) state;
	assert_int_equal(create(ACME, false, id), HV_OK);
	assert_int_equal(store_table_open(w.s, "consent.personal", &j.t), HV_OK);
	assert_int_equal(consent_id_parse(id, j.key), 0);
	assert_int_equal(store_write(w.s, corrupt_fn, &j), HV_OK);
	assert_int_equal(show(ACME, id, NULL), HV_DATA_LOSS);
	expect_msg("does not decrypt (wrong key or altered)");
	assert_non_null(strstr(errmsg, id));
	assert_null(strstr(errmsg, "Sentinel"));
	/* The failed read is in the audit log too. */
	{
		Haven__Audit__V1__ListResponse *l = NULL;
		assert_int_equal(rpc_audit_list(OPERATOR, id, &l), HV_OK);
		assert_int_equal(l->n_entries, 2);
		assert_int_equal(l->entries[1]->result, HV_DATA_LOSS);
		release(l);
	}
}

/* Check with its audit entries queued (check_audit_async): the same answers, inline, and the
 * entries in the chain once flushed. A world of its own. */
static void
test_async_check_audit(void **state)
{
	char                dir[512], path[600], url[64], cmd[700];
	store              *s;
	consent_service    *cs;
	rpc_server         *srv;
	rpc_channel        *ch;
	rpc_server_options  ro = { .workers = 2 };
	consent_options     co = { 0 };
	store_options       so = { .no_sync = true };
	char                id[CONSENT_ID_HEX];
	audit_verify_result r;
	rpc_channel        *saved = w.ch[OPERATOR];

	(void) state;
	tu_tmpdir(dir, sizeof(dir), "consent-async");
	snprintf(path, sizeof(path), "%s/store", dir);
	assert_int_equal(store_open(&s, path, &so), HV_OK);
	co.store             = s;
	co.data_dir          = dir;
	co.now_ms            = test_now;
	co.check_audit_async = true;
	assert_int_equal(consent_open(&cs, &co), HV_OK);
	assert_int_equal(rpc_server_open(&srv, &ro), HV_OK);
	assert_int_equal(consent_register(cs, srv), HV_OK);
	snprintf(url, sizeof(url), "inproc://consent-async-%d", (int) getpid());
	assert_int_equal(rpc_server_listen(srv, url), HV_OK);
	assert_int_equal(rpc_server_start(srv), HV_OK);
	assert_int_equal(rpc_channel_open(&ch, url, NULL), HV_OK);
	w.ch[OPERATOR] = ch; /* the helpers call as the operator on this server */

	assert_int_equal(create(OPERATOR, false, id), HV_OK);
	assert_int_equal(grant(OPERATOR, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_OK);
	for (int i = 0; i < 50; i++) {
		Haven__Consent__V1__CheckResponse *cr = NULL;
		assert_int_equal(check(OPERATOR, id,
		                     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
		                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY,
		                     false, &cr),
		    HV_OK);
		assert_true(cr->allowed);
		release(cr);
	}
	assert_int_equal(check(OPERATOR, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT,
	                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     NULL),
	    HV_OK);
	assert_int_equal(check(OPERATOR, "0123456789abcdef0123456789abcdef",
	                     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT, "shelter-a",
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false, NULL),
	    HV_NOT_FOUND);
	assert_int_equal(audit_flush(consent_audit(cs)), HV_OK);
	{
		Haven__Audit__V1__ListResponse *l = NULL;
		assert_int_equal(rpc_audit_list(OPERATOR, id, &l), HV_OK);
		assert_int_equal(l->n_entries, 2 + 51); /* create, grant, the checks */
		assert_int_equal(l->entries[52]->result, HV_PERMISSION_DENIED);
		release(l);
		assert_int_equal(rpc_audit_list(OPERATOR, "0123456789abcdef0123456789abcdef", &l),
		    HV_OK);
		assert_int_equal(l->n_entries, 1);
		assert_int_equal(l->entries[0]->result, HV_NOT_FOUND);
		release(l);
	}
	assert_int_equal(audit_verify(consent_audit(cs), &r), HV_OK);
	assert_int_equal(r.entries, 54);

	/* The metrics page: the first Check read the view, the other 50 of the subject used it,
	 * the unknown subject missed; the writer's linger, within its bounds; the chain found
	 * intact by the service's own verification after its start. */
	{
		char  *page = NULL;
		size_t len;
		double linger;

		assert_int_equal(audit_state_after_open(cs), CONSENT_AUDIT_INTACT);
		assert_int_equal(metrics_render(rpc_server_metrics(srv), &page, &len), HV_OK);
		tu_expect_metric(page, "haven_audit_chain_intact", 1);
		tu_expect_metric(page, "haven_consent_check_cache_hits_total", 50);
		tu_expect_metric(page, "haven_consent_check_cache_misses_total", 2);
		linger = tu_metric(page, "haven_consent_check_audit_linger_seconds");
		assert_true(linger >= AUDIT_LINGER_MIN_MS / 1000.0 &&
		    linger <= AUDIT_LINGER_MAX_MS / 1000.0);
		free(page);
	}

	w.ch[OPERATOR] = saved;
	rpc_channel_close(ch);
	consent_stop(cs);
	rpc_server_close(srv);
	consent_close(cs);
	store_close(s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* A consent service on an RPC server of its own over a shared store: two of them on one store
 * are two processes of a node as far as Check's cache is concerned (each has its own). */
typedef struct side {
	consent_service *cs;
	rpc_server      *srv;
	rpc_channel     *ch;
} side;

static void
side_open(side *sd, store *s, const char *dir, bool async, const char *name)
{
	rpc_server_options ro = { .workers = 2 };
	consent_options    co = { 0 };
	char               url[96];

	co.store             = s;
	co.data_dir          = dir;
	co.now_ms            = test_now;
	co.check_audit_async = async;
	assert_int_equal(consent_open(&sd->cs, &co), HV_OK);
	assert_int_equal(rpc_server_open(&sd->srv, &ro), HV_OK);
	assert_int_equal(consent_register(sd->cs, sd->srv), HV_OK);
	snprintf(url, sizeof(url), "inproc://consent-%s-%d", name, (int) getpid());
	assert_int_equal(rpc_server_listen(sd->srv, url), HV_OK);
	assert_int_equal(rpc_server_start(sd->srv), HV_OK);
	assert_int_equal(rpc_channel_open(&sd->ch, url, NULL), HV_OK);
}

static void
side_close(side *sd)
{
	rpc_channel_close(sd->ch);
	consent_stop(sd->cs);
	rpc_server_close(sd->srv);
	consent_close(sd->cs);
}

/* Asks side a (as the operator) whether shelter may see the subject's identity for sharing;
 * returns the status, the decision in *allowed and its reason in *reason. */
static hv_status
check_on(side *sd, const char *subject, const char *shelter, bool *allowed, int *reason)
{
	Haven__Consent__V1__CheckResponse *cr    = NULL;
	rpc_channel                       *saved = w.ch[OPERATOR];
	hv_status                          st;

	w.ch[OPERATOR] = sd->ch;
	st = check(OPERATOR, subject, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	    shelter, HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false, &cr);
	w.ch[OPERATOR] = saved;
	*allowed       = st == HV_OK && cr->allowed;
	*reason        = st == HV_OK ? (int) cr->reason : -1;
	release(cr);
	return (st);
}

/* Check decides on cached views of a subject's consents (view.c). Every change is seen by the
 * very next Check, whether this service made it or another one on the same store (another
 * process): a grant, a withdrawal, an erasure. */
static void
test_check_cache_coherence(void **state)
{
	char                               dir[512], path[600], cmd[700];
	char                               id[CONSENT_ID_HEX], id2[CONSENT_ID_HEX];
	char                               c1[CONSENT_ID_HEX], c2[CONSENT_ID_HEX];
	store                             *s;
	store_options                      so = { .no_sync = true };
	side                               a, b;
	rpc_channel                       *saved = w.ch[OPERATOR];
	Haven__Consent__V1__ConsentRecord *rec   = NULL;
	audit_verify_result                r;
	bool                               allowed;
	int                                reason;
	uint64_t                           hits, misses, hits2, misses2;

	(void) state;
	tu_tmpdir(dir, sizeof(dir), "consent-cache");
	snprintf(path, sizeof(path), "%s/store", dir);
	assert_int_equal(store_open(&s, path, &so), HV_OK);
	side_open(&a, s, dir, true, "cache-a");  /* Check from the cache, audit queued */
	side_open(&b, s, dir, false, "cache-b"); /* the other process */

	w.ch[OPERATOR] = a.ch;
	assert_int_equal(create(OPERATOR, false, id), HV_OK);
	assert_int_equal(grant(OPERATOR, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, &rec),
	    HV_OK);
	snprintf(c1, sizeof(c1), "%s", rec->id);
	release(rec);
	consent_check_cache_stats(a.cs, &hits, &misses);
	for (int i = 0; i < 3; i++) { /* the first reads the view, the others use it */
		assert_int_equal(check_on(&a, id, "shelter-a", &allowed, &reason), HV_OK);
		assert_true(allowed);
	}
	consent_check_cache_stats(a.cs, &hits2, &misses2);
	assert_int_equal(misses2 - misses, 1);
	assert_int_equal(hits2 - hits, 2);

	/* A change to another subject leaves this one's view valid: still a hit. */
	assert_int_equal(create(OPERATOR, false, id2), HV_OK);
	assert_int_equal(grant(OPERATOR, id2, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_OK);
	assert_int_equal(check_on(&a, id, "shelter-a", &allowed, &reason), HV_OK);
	assert_true(allowed);
	consent_check_cache_stats(a.cs, &hits, &misses);
	assert_int_equal(misses, misses2);
	assert_int_equal(hits, hits2 + 1);
	assert_int_equal(check_on(&a, id, "shelter-b", &allowed, &reason), HV_OK);
	assert_false(allowed);
	assert_int_equal(reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_RECIPIENT);

	/* The other process grants shelter-b: seen at once. */
	w.ch[OPERATOR] = b.ch;
	assert_int_equal(grant(OPERATOR, id, "shelter-b", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, &rec),
	    HV_OK);
	snprintf(c2, sizeof(c2), "%s", rec->id);
	release(rec);
	assert_int_equal(check_on(&a, id, "shelter-b", &allowed, &reason), HV_OK);
	assert_true(allowed);

	/* The other process withdraws shelter-a's consent: refused at once. */
	assert_int_equal(withdraw(OPERATOR, c1, NULL), HV_OK);
	assert_int_equal(check_on(&a, id, "shelter-a", &allowed, &reason), HV_OK);
	assert_false(allowed);
	assert_int_equal(reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_WITHDRAWN);
	assert_int_equal(check_on(&a, id, "shelter-b", &allowed, &reason), HV_OK);
	assert_true(allowed);

	/* This service withdraws shelter-b's: refused at once, here and there. */
	w.ch[OPERATOR] = a.ch;
	assert_int_equal(withdraw(OPERATOR, c2, NULL), HV_OK);
	assert_int_equal(check_on(&a, id, "shelter-b", &allowed, &reason), HV_OK);
	assert_false(allowed);
	assert_int_equal(check_on(&b, id, "shelter-b", &allowed, &reason), HV_OK);
	assert_false(allowed);

	/* A new consent, cached again; then the other process erases the subject. */
	assert_int_equal(grant(OPERATOR, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_OK);
	assert_int_equal(check_on(&a, id, "shelter-a", &allowed, &reason), HV_OK);
	assert_true(allowed);
	assert_int_equal(check_on(&a, id, "shelter-a", &allowed, &reason), HV_OK);
	assert_true(allowed);
	w.ch[OPERATOR] = b.ch;
	assert_int_equal(erase(OPERATOR, id, NULL), HV_OK);
	assert_int_equal(check_on(&a, id, "shelter-a", &allowed, &reason), HV_NOT_FOUND);
	assert_false(allowed);

	/* An erasure that withdraws nothing (no consent in force) is seen at once too. */
	w.ch[OPERATOR] = a.ch;
	assert_int_equal(create(OPERATOR, false, id2), HV_OK); /* a new one */
	assert_int_equal(grant(OPERATOR, id2, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, &rec),
	    HV_OK);
	assert_int_equal(withdraw(OPERATOR, rec->id, NULL), HV_OK);
	release(rec);
	assert_int_equal(check_on(&a, id2, "shelter-a", &allowed, &reason), HV_OK);
	assert_int_equal(reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_WITHDRAWN);
	w.ch[OPERATOR] = b.ch;
	assert_int_equal(erase(OPERATOR, id2, NULL), HV_OK);
	assert_int_equal(check_on(&a, id2, "shelter-a", &allowed, &reason), HV_NOT_FOUND);

	/* Every Check of a and every write of b is in one chain. */
	assert_int_equal(audit_flush(consent_audit(a.cs)), HV_OK);
	assert_int_equal(audit_verify(consent_audit(a.cs), &r), HV_OK);
	assert_int_equal(r.first_bad_seq, 0);
	{
		Haven__Audit__V1__ListResponse *l = NULL;
		/* create, 2+1 grants, 2 withdrawals, erase, 13 checks on a and b */
		assert_int_equal(rpc_audit_list(OPERATOR, id, &l), HV_OK);
		assert_int_equal(l->n_entries, 1 + 3 + 2 + 1 + 13);
		release(l);
	}

	w.ch[OPERATOR] = saved;
	side_close(&b);
	side_close(&a);
	store_close(s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static hv_status
transfer(int who, const char *id, const char *to, Haven__Consent__V1__Subject **out)
{
	Haven__Consent__V1__TransferSubjectRequest r =
	    HAVEN__CONSENT__V1__TRANSFER_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__Subject *rep = NULL;
	hv_status                    st;

	r.id     = (char *) id;
	r.to_org = (char *) to;
	st = call(who, M "TransferSubject", &r, &haven__consent__v1__subject__descriptor, &rep);
	if (out != NULL) {
		*out = rep;
	} else {
		release(rep);
	}
	return (st);
}

/* A subject is handed to another referrer: from then on only the new holder records consent
 * and reads her; the old one loses that at once, cached views included; audited. */
static void
test_transfer(void **state)
{
	char                               id[CONSENT_ID_HEX];
	Haven__Consent__V1__Subject       *sub  = NULL;
	Haven__Consent__V1__ConsentRecord *c    = NULL;
	Haven__Audit__V1__ListResponse    *l    = NULL;
	bool                               seen = false;

	(void) state;
	assert_int_equal(create(ACME, false, id), HV_OK);
	assert_int_equal(grant(ACME, id, "shelter-a", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, &c),
	    HV_OK);
	/* Warm the holder's cached view. */
	assert_int_equal(check(ACME, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     NULL),
	    HV_OK);

	/* Who may not, and to whom not. */
	assert_int_equal(transfer(COORD, id, "other-ngo", NULL), HV_PERMISSION_DENIED);
	assert_int_equal(transfer(ADMIN, id, "other-ngo", NULL), HV_PERMISSION_DENIED);
	assert_int_equal(transfer(SHELTER_A, id, "other-ngo", NULL), HV_PERMISSION_DENIED);
	assert_int_equal(transfer(OTHER, id, "other-ngo", NULL), HV_PERMISSION_DENIED);
	expect_msg("organisation other-ngo does not hold subject");
	assert_int_equal(transfer(ACME, id, "shelter-a", NULL), HV_FAILED_PRECONDITION);
	expect_msg("shelter-a is not an enabled referrer organisation");
	assert_int_equal(transfer(ACME, id, "nobody-here", NULL), HV_FAILED_PRECONDITION);
	assert_int_equal(transfer(ACME, id, "acme-ngo", NULL), HV_FAILED_PRECONDITION);
	expect_msg("holds subject");
	assert_int_equal(transfer(ACME, "nothex", "other-ngo", NULL), HV_INVALID_ARGUMENT);
	expect_msg("subject id must be 32 lower-case hex characters");
	assert_int_equal(transfer(ACME, id, "Not An Id", NULL), HV_INVALID_ARGUMENT);
	expect_msg("to_org must be an organisation id");
	assert_int_equal(transfer(ACME, "0123456789abcdef0123456789abcdef", "other-ngo", NULL),
	    HV_PERMISSION_DENIED);

	/* The hand-over. */
	assert_int_equal(transfer(ACME, id, "other-ngo", &sub), HV_OK);
	assert_string_equal(sub->holder, "other-ngo");
	assert_string_equal(sub->created_by, "acme-ngo");
	release(sub);
	assert_int_equal(show(OTHER, id, &sub), HV_OK);
	assert_string_equal(sub->holder, "other-ngo");
	assert_string_equal(sub->personal->name, NAME);
	release(sub);
	/* The old holder: nothing any more, also through the view it had cached. */
	assert_int_equal(show(ACME, id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(check(ACME, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-a", HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, false,
	                     NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(grant(ACME, id, "shelter-b", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(withdraw(ACME, c->id, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(rpc_audit_list(ACME, id, NULL), HV_PERMISSION_DENIED);
	/* The new holder records and withdraws; the provider's consent stands. */
	assert_int_equal(show(SHELTER_A, id, NULL), HV_OK);
	assert_int_equal(grant(OTHER, id, "shelter-b", false,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, NULL),
	    HV_OK);
	assert_int_equal(withdraw(OTHER, c->id, NULL), HV_OK);
	assert_int_equal(show(SHELTER_A, id, NULL), HV_PERMISSION_DENIED);
	/* Audited, with whom it went to. */
	assert_int_equal(rpc_audit_list(OTHER, id, &l), HV_OK);
	for (size_t i = 0; i < l->n_entries; i++) {
		seen = seen ||
		    (strcmp(l->entries[i]->method, M "TransferSubject") == 0 &&
		        strcmp(l->entries[i]->caller_org, "acme-ngo") == 0 &&
		        strcmp(l->entries[i]->purpose, "hand-over to other-ngo") == 0 &&
		        l->entries[i]->result == 0);
	}
	assert_true(seen);
	release(l);
	/* The operator may hand it on (on the organisations' request). */
	assert_int_equal(transfer(OPERATOR, id, "acme-ngo", NULL), HV_OK);
	assert_int_equal(show(ACME, id, NULL), HV_OK);
	release(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_minor),
		cmocka_unit_test(test_update_subject),
		cmocka_unit_test(test_expired_and_withdrawn),
		cmocka_unit_test(test_receipts),
		cmocka_unit_test(test_withdrawal_events),
		cmocka_unit_test(test_audit),
		cmocka_unit_test(test_audit_tampering),
		cmocka_unit_test(test_audit_checkpoints_and_index),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_check_cache_coherence),
		cmocka_unit_test(test_corrupted_ciphertext),
		cmocka_unit_test(test_async_check_audit),
		cmocka_unit_test(test_transfer),
	};
	return cmocka_run_group_tests(tests, world_up, world_down);
}
