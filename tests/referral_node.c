/*
 * referral_node.c - the node the referral integration tests run against (referral_node.h):
 * the real capacity and referral services on one store, served over inproc:// with
 * organisation tokens, a consent hook over a small table, sealing as the consent service does
 * it, a clock the tests move, client helpers and the invariant checked after each scenario.
 */
#include "referral_node.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/pubsub0/pub.h>

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/crypto.h"

const org_spec orgs[] = {
	[C_REFERRER]  = { "ngo-ams", HAVEN__CAPACITY__V1__ROLE__REFERRER, RPC_ROLE_REFERRER,
	     "Amsterdam" },
	[C_REFERRER2] = { "police-rdam", HAVEN__CAPACITY__V1__ROLE__REFERRER, RPC_ROLE_REFERRER,
	    "Rotterdam" },
	[C_PROV_A]    = { "shelter-a", HAVEN__CAPACITY__V1__ROLE__PROVIDER, RPC_ROLE_PROVIDER,
	       "Amsterdam" },
	[C_PROV_B]    = { "shelter-b", HAVEN__CAPACITY__V1__ROLE__PROVIDER, RPC_ROLE_PROVIDER,
	       "Noord-Holland" },
	[C_COORD]     = { "coord-ams", HAVEN__CAPACITY__V1__ROLE__COORDINATOR, RPC_ROLE_COORDINATOR,
	        "Amsterdam" },
	[C_COORD_FAR] = { "coord-lim", HAVEN__CAPACITY__V1__ROLE__COORDINATOR, RPC_ROLE_COORDINATOR,
	    "Limburg" },
	[C_MUNI]     = { "city-ams", HAVEN__CAPACITY__V1__ROLE__MUNICIPALITY, RPC_ROLE_MUNICIPALITY,
	        "Amsterdam" },
	[C_NATIONAL] = { "coord-nl", HAVEN__CAPACITY__V1__ROLE__NATIONAL_COORDINATOR,
	    RPC_ROLE_NATIONAL_COORDINATOR, "Midden-Nederland" },
	[C_OPERATOR] = { NULL, 0, RPC_ROLE_OPERATOR, NULL },
};

_Atomic int64_t clock_ms;
atomic_int      consent_calls;
static int      test_no;

int64_t
fake_now(void *arg)
{
	return (atomic_load(&clock_ms));
}

void
advance(int64_t ms)
{
	atomic_fetch_add(&clock_ms, ms);
}

/* Consent: every subject but SUBJECT_NO; purpose "referral", recipient the node. */
/* A subject whose every consent the tests withdraw ("" none). */
char withdrawn_subject[40];

static hv_status
fake_consent(void *arg, store_txn *txn, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, const char *recipient, bool accepting, bool *allowed)
{
	atomic_fetch_add(&consent_calls, 1);
	assert_non_null(txn);
	if (caller->role == RPC_ROLE_PROVIDER) {
		/* The accepting provider reading its referral. */
		assert_string_equal(purpose, "share-with-provider");
		assert_string_equal(recipient, caller->org_id);
		assert_true(accepting);
		assert_string_equal(method, "haven.referral.v1.Referrals/GetReferral");
		*allowed = strcmp(subject, withdrawn_subject) != 0;
		return (HV_OK);
	}
	assert_string_equal(purpose, "referral");
	assert_string_equal(recipient, "");
	assert_false(accepting);
	/* The referrer at creation; the node itself at every later step (routing). */
	if (caller->role == RPC_ROLE_REFERRER) {
		assert_string_equal(method, M_CREATE);
	} else {
		assert_int_equal(caller->role, RPC_ROLE_OPERATOR);
		assert_string_equal(method, "haven.referral.v1.Referrals/Route");
	}
	*allowed = strcmp(subject, SUBJECT_NO) != 0 && strcmp(subject, withdrawn_subject) != 0;
	return (HV_OK);
}

/* Sealing of free text as the consent service does it (version, nonce, tag, ciphertext;
 * the context as associated data), under a key made from the subject id; "erased" subjects
 * (SUBJECT_NO) answer NOT_FOUND. */
static void
fake_key(const char *subject, uint8_t key[CRYPTO_AEAD_KEY_LEN])
{
	crypto_sha256(key, subject, strlen(subject));
}

static hv_status
fake_seal(void *arg, store_txn *txn, const char *subject, const char *context, const char *text,
    size_t len, uint8_t *out, size_t outsz)
{
	uint8_t key[CRYPTO_AEAD_KEY_LEN];

	assert_non_null(txn);
	assert_int_equal(outsz, len + REF_SEAL_OVERHEAD);
	if (strcmp(subject, SUBJECT_NO) == 0) {
		return (HV_NOT_FOUND);
	}
	fake_key(subject, key);
	out[0] = 1;
	assert_int_equal(crypto_random(out + 1, CRYPTO_AEAD_NONCE_LEN), HV_OK);
	return (crypto_aead_encrypt(out + REF_SEAL_OVERHEAD, out + 1 + CRYPTO_AEAD_NONCE_LEN, key,
	    out + 1, context, strlen(context), text, len));
}

static hv_status
fake_open(void *arg, store_txn *txn, const char *subject, const char *context,
    const uint8_t *sealed, size_t len, char *text, size_t textsz)
{
	uint8_t key[CRYPTO_AEAD_KEY_LEN];

	assert_non_null(txn);
	assert_int_equal(textsz, len - REF_SEAL_OVERHEAD + 1);
	if (strcmp(subject, SUBJECT_NO) == 0) {
		return (HV_NOT_FOUND);
	}
	fake_key(subject, key);
	if (crypto_aead_decrypt((uint8_t *) text, key, sealed + 1,
	        sealed + 1 + CRYPTO_AEAD_NONCE_LEN, context, strlen(context),
	        sealed + REF_SEAL_OVERHEAD, len - REF_SEAL_OVERHEAD) != HV_OK) {
		return (HV_DATA_LOSS);
	}
	text[len - REF_SEAL_OVERHEAD] = '\0';
	return (HV_OK);
}

typedef struct org_job {
	cap_service *cs;
} org_job;

static hv_status
add_orgs_fn(store_txn *txn, void *arg)
{
	org_job  *j = arg;
	char      err[256];
	hv_status st;

	for (int i = 0; i < C_N; i++) {
		Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;

		if (orgs[i].id == NULL) {
			continue;
		}
		o.id     = (char *) orgs[i].id;
		o.name   = (char *) orgs[i].id;
		o.role   = orgs[i].role;
		o.region = (char *) orgs[i].region;
		if ((st = cap_add_organisation(j->cs, txn, &o, err, sizeof(err))) != HV_OK) {
			fprintf(stderr, "add org %s: %s\n", orgs[i].id, err);
			return (st);
		}
	}
	return (HV_OK);
}

typedef struct svc_job {
	cap_service    *cs;
	const svc_spec *specs;
	size_t          n;
} svc_job;

static hv_status
add_services_fn(store_txn *txn, void *arg)
{
	svc_job  *j = arg;
	char      err[256], id[CAP_ID_MAX];
	hv_status st;

	for (size_t i = 0; i < j->n; i++) {
		const svc_spec                   *s       = &j->specs[i];
		Haven__Capacity__V1__Service      svc     = HAVEN__CAPACITY__V1__SERVICE__INIT;
		Haven__Capacity__V1__Population   pops[2] = { POP(WOMEN), POP(MEN) };
		Haven__Capacity__V1__Exploitation spec    = s->spec;
		char                             *lang    = (char *) s->lang;
		char                             *acc     = (char *) s->access;

		svc.id            = (char *) s->id;
		svc.org_id        = (char *) orgs[s->org].id;
		svc.name          = (char *) s->id;
		svc.type          = s->type;
		svc.service_area  = (char *) s->region;
		svc.n_populations = s->pop != 0 ? 1 : 2;
		if (s->pop != 0) {
			pops[0] = s->pop;
		}
		svc.populations        = pops;
		svc.n_languages        = lang != NULL ? 1 : 0;
		svc.languages          = &lang;
		svc.n_specialisations  = spec != 0 ? 1 : 0;
		svc.specialisations    = &spec;
		svc.n_accessibility    = acc != NULL ? 1 : 0;
		svc.accessibility      = &acc;
		svc.maximum            = 20;
		svc.available          = s->available;
		svc.front_door_contact = "intake desk";
		if ((st = cap_add_service(j->cs, txn, &svc, id, err, sizeof(err))) != HV_OK) {
			fprintf(stderr, "add service %s: %s\n", s->id, err);
			return (st);
		}
	}
	return (HV_OK);
}

void
add_services(node *n, const svc_spec *specs, size_t count)
{
	svc_job j = { n->cs, specs, count };

	assert_int_equal(store_write(n->st, add_services_fn, &j), HV_OK);
}

/* The capacity figures of a service now. */
void
places(node *n, const char *id, uint32_t *available, uint32_t *held)
{
	store_txn                    *txn;
	Haven__Capacity__V1__Service *svc = NULL;

	assert_int_equal(store_read_begin(n->st, &txn), HV_OK);
	assert_int_equal(cap_get_service(n->cs, txn, id, &svc), HV_OK);
	store_read_end(txn);
	*available = svc->available;
	*held      = svc->held;
	haven__capacity__v1__service__free_unpacked(svc, NULL);
}

/* Tokens are bound to the organisation's directory record: issued once it is there. */
static void
set_tokens(node *n)
{
	char tok[AUTH_TOKEN_MAX];

	for (int i = 0; i < C_N; i++) {
		if (orgs[i].id != NULL) {
			assert_int_equal(auth_issue_token(n->au, orgs[i].id, orgs[i].rpc,
			                     hv_clock_wall_ms(), tok, NULL),
			    HV_OK);
			assert_int_equal(rpc_channel_set_token(n->ch[i], tok), HV_OK);
		}
	}
}

void
open_services(node *n, bool reopen_store)
{
	cap_options        co = { 0 };
	ref_options        ro = { 0 };
	alerts_options     lo = { 0 };
	auth_options       ao = { .lookup = cap_lookup_org };
	rpc_server_options so = { .workers = 6, .call_budget = n->call_budget };

	if (reopen_store) {
		store_options o = { .no_sync = true };
		assert_int_equal(store_open(&n->st, n->dir, &o), HV_OK);
	}
	co.store         = n->st;
	co.regions       = n->regions;
	co.now_ms        = fake_now;
	co.manual_expiry = true;
	co.pub_url       = n->notify ? n->pub : NULL;
	assert_int_equal(cap_open(&n->cs, &co), HV_OK);
	lo.store                 = n->st;
	lo.capacity              = n->cs;
	lo.node_url              = "https://haven.test";
	lo.escalate_after_s      = 600;
	lo.unmet_after_s         = 3600;
	lo.now_ms                = fake_now;
	lo.manual                = true;
	lo.webhook_allow_private = true; /* the alert tests' receiver is on loopback */
	assert_int_equal(alerts_open(&n->al, &lo), HV_OK);
	ro.alerts           = n->al;
	ro.store            = n->st;
	ro.regions          = n->regions;
	ro.capacity         = n->cs;
	ro.consent          = fake_consent;
	ro.seal             = fake_seal;
	ro.unseal           = fake_open;
	ro.now_ms           = fake_now;
	ro.manual           = !n->notify;
	ro.stats_periods    = n->stats_periods;
	ro.language_hops    = n->lang_hops;
	ro.capacity_sub_url = n->notify ? n->pub : NULL;
	ro.consent_sub_url  = n->notify ? n->consent_url : NULL;
	assert_int_equal(ref_open(&n->rs, &ro), HV_OK);
	assert_int_equal(audit_open(&n->audit, n->st, n->dir), HV_OK);
	ref_set_audit(n->rs, n->audit);
	assert_int_equal(store_table_open(n->st, "ref.offers", &n->offers_t), HV_OK);

	ao.lookup_arg = n->cs;
	memset(ao.secret, 0x42, sizeof(ao.secret));
	assert_int_equal(auth_open(&n->au, &ao), HV_OK);
	so.auth        = n->au;
	so.call_budget = n->call_budget;
	assert_int_equal(rpc_server_open(&n->srv, &so), HV_OK);
	assert_int_equal(cap_register(n->cs, n->srv), HV_OK);
	assert_int_equal(ref_register(n->rs, n->srv), HV_OK);
	assert_int_equal(alerts_register(n->al, n->srv), HV_OK);
	assert_int_equal(rpc_server_listen(n->srv, n->url), HV_OK);
	assert_int_equal(rpc_server_start(n->srv), HV_OK);
	for (int i = 0; i < C_N; i++) {
		assert_int_equal(rpc_channel_open(&n->ch[i], n->url, NULL), HV_OK);
	}
	if (n->has_orgs) {
		set_tokens(n);
	}
}

void
close_services(node *n, bool close_store)
{
	for (int i = 0; i < C_N; i++) {
		rpc_channel_close(n->ch[i]);
		n->ch[i] = NULL;
	}
	rpc_server_close(n->srv);
	ref_close(n->rs);
	alerts_close(n->al);
	n->al = NULL;
	audit_close(n->audit);
	n->audit = NULL;
	cap_close(n->cs);
	auth_close(n->au);
	n->srv = NULL;
	n->rs  = NULL;
	n->cs  = NULL;
	n->au  = NULL;
	if (close_store) {
		store_close(n->st);
		n->st = NULL;
	}
}

int
setup_node(void **state, bool notify)
{
	node   *n = calloc(1, sizeof(*n));
	org_job j;

	assert_non_null(n);
	test_no++;
	n->notify        = notify;
	n->stats_periods = REF_PERIODS_MONTHS | REF_PERIODS_WEEKS;
	tu_tmpdir(n->dir, sizeof(n->dir), "referral");
	snprintf(n->url, sizeof(n->url), "inproc://referral-%d", test_no);
	snprintf(n->pub, sizeof(n->pub), "inproc://referral-pub-%d", test_no);
	snprintf(n->consent_url, sizeof(n->consent_url), "inproc://referral-consent-%d", test_no);
	if (notify) {
		assert_int_equal(nng_pub0_open(&n->consent_pub), 0);
		assert_int_equal(nng_listen(n->consent_pub, n->consent_url, NULL, 0), 0);
	}
	atomic_store(&clock_ms, (int64_t) 1700000000000LL);
	assert_int_equal(region_map_default(&n->regions), HV_OK);
	open_services(n, true);
	j.cs = n->cs;
	assert_int_equal(store_write(n->st, add_orgs_fn, &j), HV_OK);
	n->has_orgs = true;
	set_tokens(n);
	*state = n;
	return (0);
}

int
setup(void **state)
{
	return (setup_node(state, false));
}

int
setup_notify(void **state)
{
	return (setup_node(state, true));
}

/* Every service holds exactly its open offers' places, and never more than it has. */
/* Whether an open offer's need is OFFERED with that offer. */
static void
check_offered(store_txn *txn, node *n, const Offer *o)
{
	store_table t;
	const void *v;
	size_t      vl;
	Referral   *r;

	assert_int_equal(store_table_open(n->st, "ref.referrals", &t), HV_OK);
	assert_int_equal(store_get(txn, t, o->referral_id, strlen(o->referral_id), &v, &vl), HV_OK);
	assert_non_null(r = haven__referral__v1__referral__unpack(NULL, vl, v));
	assert_true(o->need_index < r->n_needs);
	assert_int_equal(r->needs[o->need_index]->state, NS(OFFERED));
	assert_string_equal(r->needs[o->need_index]->offer_id, o->id);
	haven__referral__v1__referral__free_unpacked(r, NULL);
}

void
check_invariant(node *n)
{
	store_txn    *txn;
	store_cursor *c;
	const void   *k, *v;
	size_t        kl, vl;
	struct {
		char     id[CAP_ID_MAX];
		uint32_t open;
	} seen[64];
	size_t    nseen = 0;
	hv_status st;

	assert_int_equal(store_read_begin(n->st, &txn), HV_OK);
	assert_int_equal(store_cursor_open(txn, n->offers_t, &c), HV_OK);
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		Offer *o = haven__referral__v1__offer__unpack(NULL, vl, v);
		size_t i;

		assert_non_null(o);
		for (i = 0; i < nseen && strcmp(seen[i].id, o->service_id) != 0; i++) {
		}
		if (i == nseen) {
			assert_true(nseen < 64);
			snprintf(seen[nseen].id, CAP_ID_MAX, "%s", o->service_id);
			seen[nseen++].open = 0;
		}
		seen[i].open += o->state == OS(OFFER_OPEN);
		if (o->state == OS(OFFER_OPEN)) {
			check_offered(txn, n, o);
		}
		haven__referral__v1__offer__free_unpacked(o, NULL);
	}
	assert_int_equal(st, HV_NOT_FOUND);
	store_cursor_close(c);
	for (size_t i = 0; i < nseen; i++) {
		Haven__Capacity__V1__Service *svc = NULL;
		assert_int_equal(cap_get_service(n->cs, txn, seen[i].id, &svc), HV_OK);
		assert_int_equal(svc->held, seen[i].open);
		assert_true(svc->held <= svc->available);
		assert_true((uint64_t) svc->available + svc->occupied <= svc->maximum);
		haven__capacity__v1__service__free_unpacked(svc, NULL);
	}
	store_read_end(txn);
}

int
teardown(void **state)
{
	node *n = *state;

	check_invariant(n);
	close_services(n, true);
	if (n->notify) {
		nng_close(n->consent_pub);
	}
	region_map_free(n->regions);
	free(n);
	return (0);
}

/* ---- client helpers -------------------------------------------------------------------------- */

char errbuf[RPC_ERRMSG_MAX];

hv_status
call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, void *out, const char *key)
{
	rpc_call_options  o = { .timeout_ms = 10000, .idempotency_key = key };
	ProtobufCMessage *r = NULL;
	hv_status         st;

	errbuf[0] = '\0';
	st        = rpc_channel_call(ch, method, req, rd, &r, &o, errbuf, sizeof(errbuf));
	if (out != NULL) {
		*(ProtobufCMessage **) out = r;
	} else if (r != NULL) {
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

hv_status
create_as(node *n, int who, const create_spec *s, const char *key, Referral **out)
{
	Haven__Referral__V1__CreateReferralRequest req =
	    HAVEN__REFERRAL__V1__CREATE_REFERRAL_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest  needs[9];
	Haven__Referral__V1__NeedRequest *np[9];
	char                             *langs[9], *acc[9];
	char                              k[64];
	static atomic_int                 seq;

	for (size_t i = 0; i < s->n_needs; i++) {
		haven__referral__v1__need_request__init(&needs[i]);
		needs[i].type            = s->needs[i].type;
		needs[i].population      = s->needs[i].pop != 0 ? s->needs[i].pop : POP(WOMEN);
		langs[i]                 = (char *) s->needs[i].lang;
		acc[i]                   = (char *) s->needs[i].access;
		needs[i].n_languages     = langs[i] != NULL ? 1 : 0;
		needs[i].languages       = &langs[i];
		needs[i].n_accessibility = acc[i] != NULL ? 1 : 0;
		needs[i].accessibility   = &acc[i];
		np[i]                    = &needs[i];
	}
	req.subject             = (char *) (s->subject != NULL ? s->subject : SUBJECT_OK);
	req.urgency             = s->urgency != 0 ? s->urgency : URG(IMMEDIATE);
	req.exploitation        = s->exploitation != 0 ? s->exploitation : EX(LABOUR);
	req.n_needs             = s->n_needs;
	req.needs               = np;
	req.n_excluded_regions  = s->n_excluded;
	req.excluded_regions    = (char **) s->excluded;
	req.n_preferred_regions = s->n_preferred;
	req.preferred_regions   = (char **) s->preferred;
	req.note                = (char *) (s->note != NULL ? s->note : "");
	if (key == NULL) {
		snprintf(k, sizeof(k), "key-%d", atomic_fetch_add(&seq, 1));
		key = k;
	}
	return (call(n->ch[who], M_CREATE, &req.base, &haven__referral__v1__referral__descriptor,
	    out, key));
}

hv_status
create(node *n, const create_spec *s, Referral **out)
{
	return (create_as(n, C_REFERRER, s, NULL, out));
}

Referral *
get_as(node *n, int who, const char *id)
{
	Haven__Referral__V1__GetReferralRequest req =
	    HAVEN__REFERRAL__V1__GET_REFERRAL_REQUEST__INIT;
	Referral *r = NULL;

	req.id = (char *) id;
	assert_int_equal(call(n->ch[who], M_GET, &req.base,
	                     &haven__referral__v1__referral__descriptor, &r, NULL),
	    HV_OK);
	return (r);
}

/* GetReferral as who: the call's status (a refusal's message is in errbuf). */
hv_status
get_status(node *n, int who, const char *id)
{
	Haven__Referral__V1__GetReferralRequest req =
	    HAVEN__REFERRAL__V1__GET_REFERRAL_REQUEST__INIT;

	req.id = (char *) id;
	return (call(n->ch[who], M_GET, &req.base, &haven__referral__v1__referral__descriptor, NULL,
	    NULL));
}

hv_status
offer_act(node *n, int who, const char *method, const char *offer, int reason, const char *text,
    Offer **out)
{
	Haven__Referral__V1__OfferActionRequest req =
	    HAVEN__REFERRAL__V1__OFFER_ACTION_REQUEST__INIT;

	req.offer_id       = (char *) offer;
	req.decline_reason = (Haven__Referral__V1__DeclineReason) reason;
	req.text           = (char *) (text != NULL ? text : "");
	return (call(n->ch[who], method, &req.base, &haven__referral__v1__offer__descriptor, out,
	    NULL));
}

hv_status
placement(node *n, int who, const char *method, const char *offer, int outcome, const char *text)
{
	Haven__Referral__V1__PlacementRequest req = HAVEN__REFERRAL__V1__PLACEMENT_REQUEST__INIT;

	req.offer_id = (char *) offer;
	req.outcome  = (Haven__Referral__V1__Outcome) outcome;
	req.text     = (char *) (text != NULL ? text : "");
	return (call(n->ch[who], method, &req.base, &haven__referral__v1__offer__descriptor, NULL,
	    NULL));
}

Haven__Referral__V1__ListOffersResponse *
offers_of(node *n, int who, bool open_only)
{
	Haven__Referral__V1__ListOffersRequest req = HAVEN__REFERRAL__V1__LIST_OFFERS_REQUEST__INIT;
	Haven__Referral__V1__ListOffersResponse *resp = NULL;

	req.open_only = open_only;
	assert_int_equal(call(n->ch[who], M_OFFERS, &req.base,
	                     &haven__referral__v1__list_offers_response__descriptor, &resp, NULL),
	    HV_OK);
	return (resp);
}

void
free_msg(void *m)
{
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
}

/* The standard map of services: shelters in Amsterdam (A, own region), Noord-Holland (B,
 * neighbour) and Limburg (B, far); legal aid in Den Haag (A). */
const svc_spec std_services[] = {
	{ "sh-ams", C_PROV_A, ST(SHELTER), "Amsterdam", 2, "nl", 0, 0, NULL },
	{ "sh-nh", C_PROV_B, ST(SHELTER), "Noord-Holland", 2, "nl", 0, 0, NULL },
	{ "sh-lim", C_PROV_B, ST(SHELTER), "Limburg", 2, "nl", 0, 0, NULL },
	{ "la-dh", C_PROV_A, ST(LEGAL_AID), "Den Haag", 3, "en", 0, 0, NULL },
};
const size_t N_STD = sizeof(std_services) / sizeof(std_services[0]);

const create_spec one_shelter = { .n_needs = 1, .needs = { { ST(SHELTER), 0, NULL, NULL } } };
