/*
 * ref_rpc.c - the handlers of haven.referral.v1.Referrals: who may call what, who may see
 * which referral, and each state change as one write transaction (ref_route.c does the
 * transitions and routing inside it).
 *
 * Visibility: a referrer sees its own referrals, a coordinator those of its home region, the
 * operator and admins all; a provider sees only its offers (no subject); a municipality only
 * Statistics. Messages name ids, states and regions, never a note or reason text.
 *
 * Free text (the note, the free part of a reason, a decline text) is sealed under the
 * subject's key as it is written (ref_text.c), and answers are made from a copy that opens it
 * (ref_shown, ref_shown_offer) inside the transaction that read the record.
 */
#include "ref_internal.h"
#include "ref_metrics.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef Haven__Referral__V1__CreateReferralRequest CreateReferralRequest;

#define ROLES_READ                                                                             \
	(RPC_ROLE_REFERRER | RPC_ROLES_COORDINATORS | RPC_ROLE_OPERATOR)
/* Every referral: the node's operator and national coordinators. An admin keeps the directory
 * and the keys and sees no person-linked record (docs/authority.md). */
#define ROLES_ALL_REFERRALS (RPC_ROLE_OPERATOR | RPC_ROLE_NATIONAL_COORDINATOR)

/* ---- helpers --------------------------------------------------------------------------------- */

static hv_status
work_error(rpc_call *call, ref_work *w, hv_status st)
{
	if (w->w_err[0] != '\0') {
		return (rpc_call_error(call, st, "%s", w->w_err));
	}
	return (rpc_call_error(call, st, "%s", hv_status_name(st)));
}

static const char *
iso_time(uint64_t ms, char buf[32])
{
	time_t    t = (time_t) (ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(buf, 32, "%llu ms", (unsigned long long) ms);
	}
	return (buf);
}

static const char *
enum_name(const ProtobufCEnumDescriptor *d, int v, char buf[48])
{
	return (ref_enum_name(d, v, buf, 48));
}

/* An id from a request as a message may show it: only when it is one (anything else could be
 * any text, even personal data typed into the wrong field). */
static const char *
shown_id(const char *id)
{
	return (ids_valid(id) ? id : "(not an id)");
}

/* Whether a need is with the provider organisation now: accepted by it, or placed there. */
static bool
accepted_by(const Need *n, const char *org)
{
	return ((n->state == NS(ACCEPTED) || n->state == NS(PLACED)) &&
	    strcmp(n->provider_org, org) == 0);
}

/* Whether the caller may see (and, for its role, act on) the referral. A provider sees it only
 * while a need of it is accepted by or placed with the provider, and then only provider_view. */
static hv_status
may_see(ref_service *rs, store_txn *txn, const rpc_caller *c, const Referral *r, bool *ok)
{
	char      region[REGION_NAME_MAX];
	hv_status st;

	*ok = false;
	switch (c->role) {
	case RPC_ROLE_OPERATOR:
	case RPC_ROLE_NATIONAL_COORDINATOR:
		*ok = true;
		return (HV_OK);
	case RPC_ROLE_REFERRER:
		*ok = strcmp(c->org_id, r->referrer_org) == 0;
		return (HV_OK);
	case RPC_ROLE_PROVIDER:
		for (size_t i = 0; i < r->n_needs && !*ok; i++) {
			*ok = accepted_by(r->needs[i], c->org_id);
		}
		return (HV_OK);
	case RPC_ROLE_COORDINATOR:
		st = ref_org_region(rs, txn, c->org_id, region);
		if (st == HV_NOT_FOUND) {
			return (HV_OK);
		}
		*ok = st == HV_OK && strcmp(region, r->home_region) == 0;
		return (st);
	default:
		return (HV_OK);
	}
}

/* Loads a referral the caller may see: NOT_FOUND or PERMISSION_DENIED with w_err set. */
static hv_status
load_visible(ref_work *w, const rpc_caller *c, const char *id, Referral **out)
{
	bool      ok;
	hv_status st;

	if ((st = ref_load(w, id, out)) != HV_OK) {
		return (st == HV_NOT_FOUND ? ref_fail(w, st, "no referral %s", shown_id(id))
		                           : ref_fail(w, st, "cannot read referral %s", shown_id(id)));
	}
	if ((st = may_see(w->w_rs, w->w_txn, c, *out, &ok)) != HV_OK) {
		return (ref_fail(w, st, "cannot read the partner directory"));
	}
	if (!ok) {
		return (ref_fail(w, HV_PERMISSION_DENIED, "referral %s is not yours to see", id));
	}
	return (HV_OK);
}

/* ---- CreateReferral -------------------------------------------------------------------------- */

typedef struct create_job {
	ref_work                     cj_work;
	const CreateReferralRequest *cj_req;
	const rpc_caller            *cj_caller;
	const char                  *cj_method;
	const char                  *cj_org;
	const char                  *cj_key;
	Referral                    *cj_result;
	bool                         cj_repeat;
} create_job;

static hv_status
create_fn(store_txn *txn, void *arg)
{
	create_job                  *j   = arg;
	ref_work                    *w   = &j->cj_work;
	ref_service                 *rs  = w->w_rs;
	const CreateReferralRequest *req = j->cj_req;
	Referral                    *r;
	ref_route_item               items[REF_NEEDS_MAX];
	char                         region[REGION_NAME_MAX];
	char                         id[IDS_MAX];
	uint8_t                      key[REF_KEY_MAX];
	size_t                       kl;
	const void                  *v;
	size_t                       vl;
	bool                         allowed = false;
	hv_status                    st;

	ref_work_begin(w, txn);
	j->cj_result = NULL;
	j->cj_repeat = false;

	/* A retry of a create that committed returns what it made, and routes nothing again. */
	kl = ref_key_pair(key, j->cj_org, j->cj_key);
	st = store_get(txn, rs->rs_idem, key, kl, &v, &vl);
	if (st == HV_OK) {
		if (vl == 0 || vl >= IDS_MAX) {
			return (HV_DATA_LOSS);
		}
		memcpy(id, v, vl);
		id[vl] = '\0';
		if ((st = ref_load(w, id, &j->cj_result)) != HV_OK) {
			return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
		}
		j->cj_repeat = true;
		return (ref_shown(w, j->cj_result, &j->cj_result));
	}
	if (st != HV_NOT_FOUND) {
		return (st);
	}

	/* Consent for the purpose "referral", to the node itself, checked in this transaction
	 * so that a withdrawal committed before it is seen. */
	if (rs->rs_consent != NULL) {
		st = rs->rs_consent(rs->rs_consent_arg, txn, j->cj_caller, j->cj_method, req->subject,
		    PURPOSE_REFERRAL, "", false, &allowed);
		if (st == HV_NOT_FOUND) {
			allowed = false;
		} else if (st != HV_OK) {
			return (ref_fail(w, st, "the consent check for subject %s failed: %s",
			    req->subject, hv_status_name(st)));
		}
	}
	if (!allowed) {
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "no valid consent for purpose referral for subject %s", req->subject));
	}

	if ((st = ref_org_region(rs, txn, j->cj_org, region)) != HV_OK) {
		return (st == HV_NOT_FOUND
		        ? ref_fail(w, HV_FAILED_PRECONDITION,
		              "organisation %s is not an enabled partner in the directory", j->cj_org)
		        : ref_fail(w, st, "cannot read the partner directory"));
	}

	st = HV_OK;
	for (int tries = 0; tries < 4 && st == HV_OK; tries++) {
		if ((st = ids_generate(id, sizeof(id), REF_REFERRAL_PREFIX, REF_ID_HEX)) != HV_OK) {
			return (st);
		}
		st = store_get(txn, rs->rs_referrals, id, strlen(id), NULL, NULL);
	}
	if (st != HV_NOT_FOUND) {
		return (st == HV_OK ? HV_ALREADY_EXISTS : st);
	}

	/* The request lives until the handler returns, after the commit: the new referral may
	 * point into it. */
	if ((r = arena_alloc(w->w_arena, sizeof(*r))) == NULL ||
	    (r->needs = arena_alloc(w->w_arena, req->n_needs * sizeof(Need *))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	{
		Need **needs = r->needs;
		haven__referral__v1__referral__init(r);
		r->needs = needs;
	}
	if ((r->id = arena_strdup(w->w_arena, id)) == NULL ||
	    (r->home_region = arena_strdup(w->w_arena, region)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	r->subject             = req->subject;
	r->referrer_org        = (char *) j->cj_org;
	r->urgency             = req->urgency;
	r->exploitation        = req->exploitation;
	r->n_excluded_regions  = req->n_excluded_regions;
	r->excluded_regions    = req->excluded_regions;
	r->n_preferred_regions = req->n_preferred_regions;
	r->preferred_regions   = req->preferred_regions;
	r->note                = "";
	r->created_ms          = (uint64_t) w->w_now;
	r->idempotency_key     = (char *) j->cj_key;
	r->n_needs             = req->n_needs;
	for (size_t i = 0; i < req->n_needs; i++) {
		Need *n = arena_alloc(w->w_arena, sizeof(*n));

		if (n == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		haven__referral__v1__need__init(n);
		n->index           = (uint32_t) i;
		n->type            = req->needs[i]->type;
		n->population      = req->needs[i]->population;
		n->n_languages     = req->needs[i]->n_languages;
		n->languages       = req->needs[i]->languages;
		n->n_accessibility = req->needs[i]->n_accessibility;
		n->accessibility   = req->needs[i]->accessibility;
		r->needs[i]        = n;
	}
	if ((st = ref_text_seal(w, r->subject, r->id, "note", -1, req->note, &r->sealed_note)) !=
	        HV_OK ||
	    (st = ref_adopt(w, r)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		if ((st = ref_transition(w, r, r->needs[i], NS(WAITING), j->cj_org, "referred", "")) !=
		    HV_OK) {
			return (st);
		}
		items[i].ri_ref  = r;
		items[i].ri_need = r->needs[i];
	}
	if ((st = ref_route(w, items, r->n_needs)) != HV_OK) {
		return (st);
	}
	if ((st = store_put(txn, rs->rs_idem, key, kl, r->id, strlen(r->id))) != HV_OK ||
	    (st = store_put(txn, rs->rs_by_referrer, key,
	         ref_key_timed(key, r->referrer_org, r->created_ms, r->id), "", 0)) != HV_OK ||
	    (st = store_put(txn, rs->rs_by_region, key,
	         ref_key_timed(key, r->home_region, r->created_ms, r->id), "", 0)) != HV_OK ||
	    (st = store_put(txn, rs->rs_by_time, key, ref_key_timed(key, NULL, r->created_ms, r->id),
	         "", 0)) != HV_OK ||
	    (st = store_put(txn, rs->rs_by_subject, key, ref_key_pair(key, r->subject, r->id), "",
	         0)) != HV_OK) {
		return (st);
	}
	if ((st = ref_work_flush(w)) != HV_OK) {
		return (st);
	}
	return (ref_shown(w, r, &j->cj_result));
}

static hv_status
h_create(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	ref_service      *rs  = svc;
	const rpc_caller *c   = rpc_call_caller(call);
	const char       *key = rpc_call_idempotency_key(call);
	create_job       *j   = NULL;
	uint64_t          excluded, preferred;
	char              err[REF_ERR_MAX];
	hv_status         st;

	if (key == NULL || key[0] == '\0') {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "CreateReferral needs an idempotency key, so that a retry never makes two"));
	}
	if ((st = ref_check_create(rs, (const void *) msg, &excluded, &preferred, err,
	         sizeof(err))) != HV_OK) {
		return (rpc_call_error(call, st, "%s", err));
	}
	if ((j = malloc(sizeof(*j))) == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	ref_work_init_in(&j->cj_work, rs, rpc_call_arena(call));
	j->cj_req    = (const void *) msg;
	j->cj_caller = c;
	j->cj_method = rpc_call_method(call);
	j->cj_org    = c->org_id;
	j->cj_key = key;
	if ((st = store_write(rs->rs_store, create_fn, j)) != HV_OK) {
		st = work_error(call, &j->cj_work, st);
		goto out;
	}
	ref_work_publish(&j->cj_work);
	if (!j->cj_repeat) {
		log_info("referral %s: %zu needs, %u offered", j->cj_result->id, j->cj_result->n_needs,
		    j->cj_work.w_offers);
	}
	*reply = &j->cj_result->base;
out:
	ref_work_free(&j->cj_work);
	free(j);
	return (st);
}

/* ---- GetReferral, ListReferrals -------------------------------------------------------------- */

/* What the provider that accepted a need sees of its referral (docs/authority.md): whom it
 * takes in (the subject's id; her data through the consent service, as consent allows), from
 * whom (the referrer, reached at its directory contact), how urgent, and the needs it
 * accepted. Not the note, the unsafe and preferred regions, the other needs or the trail. */
static hv_status
provider_view(ref_work *w, const rpc_caller *provider, const Referral *r, Referral **out)
{
	ref_service *rs    = w->w_rs;
	const char  *org   = provider->org_id;
	Referral    *c     = arena_alloc(w->w_arena, sizeof(*c));
	Need       **needs = arena_alloc(w->w_arena, (r->n_needs + 1) * sizeof(*needs));
	bool         allowed = false;
	hv_status    st;

	if (c == NULL || needs == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	/* A disclosure: only with a consent valid now that shares with the accepting provider
	 * (asked in this transaction, audited by the consent service). */
	if (rs->rs_consent != NULL) {
		st = rs->rs_consent(rs->rs_consent_arg, w->w_txn, provider, REF_METHOD_GET, r->subject,
		    PURPOSE_SHARE, org, true, &allowed);
		if (st != HV_OK && st != HV_NOT_FOUND) {
			return (ref_fail(w, st, "the consent check for referral %s failed", r->id));
		}
	}
	if (!allowed) {
		return (ref_fail(w, HV_PERMISSION_DENIED,
		    "no consent shares referral %s with organisation %s now", r->id, org));
	}
	haven__referral__v1__referral__init(c);
	c->id           = r->id;
	c->subject      = r->subject;
	c->referrer_org = r->referrer_org;
	c->urgency      = r->urgency;
	c->exploitation = r->exploitation;
	c->home_region  = r->home_region;
	c->created_ms   = r->created_ms;
	c->version      = r->version;
	for (size_t i = 0; i < r->n_needs; i++) {
		if (accepted_by(r->needs[i], org)) {
			needs[c->n_needs++] = r->needs[i];
		}
	}
	c->needs = needs;
	*out     = c;
	return (HV_OK);
}

typedef struct get_job {
	ref_work          gj_work;
	const rpc_caller *gj_caller;
	const char       *gj_id;
	Referral         *gj_shown;
} get_job;

static hv_status
get_fn(store_txn *txn, void *arg)
{
	get_job  *j = arg;
	Referral *r;
	hv_status st;

	ref_work_begin(&j->gj_work, txn);
	if ((st = load_visible(&j->gj_work, j->gj_caller, j->gj_id, &r)) != HV_OK) {
		return (st);
	}
	return (j->gj_caller->role == RPC_ROLE_PROVIDER
	        ? provider_view(&j->gj_work, j->gj_caller, r, &j->gj_shown)
	        : ref_shown(&j->gj_work, r, &j->gj_shown));
}

static hv_status
h_get(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	ref_service                                   *rs  = svc;
	const Haven__Referral__V1__GetReferralRequest *req = (const void *) msg;
	get_job                                        j   = { .gj_id = req->id };
	store_txn                                     *txn = NULL;
	hv_status                                      st;

	ref_work_init_in(&j.gj_work, rs, rpc_call_arena(call));
	j.gj_caller = rpc_call_caller(call);
	if (j.gj_caller->role == RPC_ROLE_PROVIDER) {
		/* The provider's read checks consent, and the consent service audits that check in
		 * this transaction: a write. */
		st = store_write(rs->rs_store, get_fn, &j);
	} else if ((st = store_read_begin(rs->rs_store, &txn)) == HV_OK) {
		st = get_fn(txn, &j);
	}
	if (st != HV_OK) {
		st = work_error(call, &j.gj_work, st);
		goto out;
	}
	*reply = &j.gj_shown->base;
out:
	store_read_end(txn);
	ref_work_free(&j.gj_work);
	return (st);
}

/* Page tokens: 16 hex digits of the key's time part, then the id of the last entry. */
static void
token_make(char *out, size_t outsz, const uint8_t *timepart, const char *id)
{
	snprintf(out, outsz, "%016llx%s", (unsigned long long) hv_get_be64(timepart), id);
}

static bool
token_parse(const char *tok, uint8_t timepart[8], char id[IDS_MAX])
{
	unsigned long long t = 0;

	if (strlen(tok) <= 16) {
		return (false);
	}
	for (int i = 0; i < 16; i++) {
		char ch = tok[i];
		int  d  = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
		if (d < 0) {
			return (false);
		}
		t = (t << 4) | (unsigned) d;
	}
	hv_put_be64(timepart, t);
	snprintf(id, IDS_MAX, "%s", tok + 16);
	return (ids_valid(tok + 16) && strlen(tok + 16) < IDS_MAX);
}

/* Walks a time-ordered index (prefix 0 be64 ~created id; prefix NULL: be64 ~created id)
 * from a page token, calling fn with each id until it returns false or max_scan entries were
 * seen. *next receives the token of the last entry fn took when the walk stopped early, and
 * "" when it reached the end: the next page starts after that entry. */
typedef bool (*walk_fn)(void *arg, const char *id, hv_status *st);

static hv_status
walk_index(store_txn *txn, store_table t, const char *prefix, const char *token,
    unsigned max_scan, walk_fn fn, void *arg, char *next, size_t nextsz, char *err,
    size_t errsz)
{
	store_cursor *c = NULL;
	uint8_t       key[REF_KEY_MAX];
	uint8_t       last_tp[8];
	char          last_id[IDS_MAX] = "";
	size_t        plen = 0, kl0;
	const void   *k;
	size_t        kl;
	unsigned      scanned = 0;
	bool          stopped = false;
	hv_status     st, fst = HV_OK;

	next[0] = '\0';
	if (prefix != NULL) {
		plen = strlen(prefix);
		if (plen > 200) {
			return (HV_INVALID_ARGUMENT);
		}
		memcpy(key, prefix, plen);
		key[plen++] = 0;
	}
	kl0 = plen;
	if (token != NULL && token[0] != '\0') {
		char id[IDS_MAX];
		if (!token_parse(token, key + plen, id)) {
			snprintf(err, errsz, "page_token is not one this service gave");
			return (HV_INVALID_ARGUMENT);
		}
		memcpy(key + plen + 8, id, strlen(id));
		kl0 = plen + 8 + strlen(id);
	}
	if ((st = store_cursor_open(txn, t, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, key, kl0, &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		char id[IDS_MAX];

		if (kl < plen + 8 || memcmp(k, key, plen) != 0) {
			break;
		}
		if (kl0 > plen && kl == kl0 && memcmp(k, key, kl) == 0) {
			continue; /* the token's own entry was on the page before */
		}
		if (kl - plen - 8 >= IDS_MAX) {
			continue;
		}
		memcpy(id, (const uint8_t *) k + plen + 8, kl - plen - 8);
		id[kl - plen - 8] = '\0';
		if (scanned++ == max_scan || !fn(arg, id, &fst)) {
			stopped = fst == HV_OK && last_id[0] != '\0';
			break;
		}
		memcpy(last_tp, (const uint8_t *) k + plen, 8);
		memcpy(last_id, id, sizeof(id));
	}
	store_cursor_close(c);
	if (fst != HV_OK) {
		return (fst);
	}
	if (st != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	if (stopped) {
		token_make(next, nextsz, last_tp, last_id);
	}
	return (HV_OK);
}

typedef struct list_ctx {
	ref_work *lc_work;
	bool      lc_open_only;
	unsigned  lc_max;
	size_t    lc_bytes;
	void   ***lc_items;
	size_t   *lc_n;
	bool      lc_offers;
} list_ctx;

static bool
list_one(void *arg, const char *id, hv_status *st)
{
	list_ctx *lc = arg;
	ref_work *w  = lc->lc_work;
	void     *m;

	if (*lc->lc_n >= lc->lc_max || lc->lc_bytes >= REF_PAGE_BYTES) {
		return (false);
	}
	if (lc->lc_offers) {
		Offer *o;
		*st = ref_load_offer(w, id, &o);
		if (*st == HV_OK && lc->lc_open_only && o->state != OS(OFFER_OPEN)) {
			return (true);
		}
		if (*st == HV_OK) {
			*st = ref_shown_offer(w, o, &o);
		}
		m = o;
	} else {
		Referral *r;
		bool      open = false;
		*st            = ref_load(w, id, &r);
		m              = r;
		if (*st == HV_OK) {
			for (size_t i = 0; i < r->n_needs; i++) {
				open = open || ref_need_open(r->needs[i]);
			}
			if (lc->lc_open_only && !open) {
				return (true);
			}
			*st = ref_shown(w, r, &r);
			m    = r;
		}
	}
	if (*st == HV_NOT_FOUND) {
		*st = HV_OK; /* an index entry of a record written later in a batch: skip */
		return (true);
	}
	if (*st != HV_OK) {
		return (false);
	}
	lc->lc_bytes += protobuf_c_message_get_packed_size(m);
	*st = ref_list_add(w, (char ***) lc->lc_items, lc->lc_n, m);
	return (*st == HV_OK);
}

static unsigned
page_size(uint32_t asked)
{
	return (asked == 0 ? REF_PAGE_DEFAULT : asked > REF_PAGE_MAX ? REF_PAGE_MAX : asked);
}

static hv_status
h_list(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	ref_service                                  *rs  = svc;
	const Haven__Referral__V1__ListReferralsRequest *req = (const void *) msg;
	const rpc_caller                             *c   = rpc_call_caller(call);
	Haven__Referral__V1__ListReferralsResponse   *resp;
	ref_work    w;
	store_txn  *txn = NULL;
	char        region[REGION_NAME_MAX];
	char        next[IDS_MAX + 20];
	char        err[REF_ERR_MAX] = "";
	store_table t;
	const char *prefix = NULL;
	list_ctx    lc;
	hv_status   st;

	/* The answer is built in the call's arena, where the server packs it from. */
	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	haven__referral__v1__list_referrals_response__init(resp);
	ref_work_init_in(&w, rs, rpc_call_arena(call));
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		goto out;
	}
	ref_work_begin(&w, txn);
	if ((c->role & ROLES_ALL_REFERRALS) != 0) {
		t = rs->rs_by_time;
	} else if (c->role == RPC_ROLE_REFERRER) {
		t      = rs->rs_by_referrer;
		prefix = c->org_id;
	} else {
		if ((st = ref_org_region(rs, txn, c->org_id, region)) != HV_OK) {
			st = rpc_call_error(call, st == HV_NOT_FOUND ? HV_PERMISSION_DENIED : st,
			    "organisation %s has no region in the partner directory", c->org_id);
			goto out;
		}
		t      = rs->rs_by_region;
		prefix = region;
	}
	lc = (list_ctx) { &w, req->open_only, page_size(req->page_size), 0,
		(void ***) &resp->referrals, &resp->n_referrals, false };
	if ((st = walk_index(txn, t, prefix, req->page_token, lc.lc_max * 20, list_one, &lc, next,
	         sizeof(next), err, sizeof(err))) != HV_OK) {
		st = rpc_call_error(call, st, "%s", err[0] != '\0' ? err : "cannot list referrals");
		goto out;
	}
	if ((resp->next_page_token = rpc_call_strdup(call, next)) == NULL) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "reply too large");
		goto out;
	}
	*reply = &resp->base;
out:
	store_read_end(txn);
	ref_work_free(&w);
	return (st);
}

/* ---- CancelReferral, ReassignNeed ------------------------------------------------------------ */

typedef struct referral_job {
	ref_work          rj_work;
	const rpc_caller *rj_caller;
	const char       *rj_id;
	const char       *rj_reason;
	bool              rj_reassign;
	uint32_t          rj_need;
	Referral         *rj_result;
} referral_job;

/* Writes the referral back; the answer is its copy with the free text opened. */
static hv_status
referral_done(referral_job *j, Referral *r)
{
	hv_status st;

	if ((st = ref_work_flush(&j->rj_work)) != HV_OK) {
		return (st);
	}
	return (ref_shown(&j->rj_work, r, &j->rj_result));
}

static hv_status
referral_fn(store_txn *txn, void *arg)
{
	referral_job *j = arg;
	ref_work     *w = &j->rj_work;
	const char   *actor = j->rj_caller->org_id;
	Referral     *r;
	unsigned      ended = 0;
	hv_status     st;

	ref_work_begin(w, txn);
	j->rj_result = NULL;
	if ((st = load_visible(w, j->rj_caller, j->rj_id, &r)) != HV_OK) {
		return (st);
	}
	j->rj_result = r;
	if (j->rj_reassign) {
		Need          *n;
		ref_route_item item;

		if (j->rj_need >= r->n_needs) {
			return (ref_fail(w, HV_INVALID_ARGUMENT, "referral %s has no need %u", r->id,
			    j->rj_need));
		}
		n = r->needs[j->rj_need];
		if (n->state == NS(OFFERED)) {
			if ((st = ref_offer_withdraw(w, n, true)) != HV_OK ||
			    (st = ref_transition(w, r, n, NS(WAITING), actor, "reassigned", n->offer_id)) !=
			        HV_OK ||
			    (st = ref_event_text(w, r, j->rj_reason)) != HV_OK) {
				return (st);
			}
		} else if (n->state == NS(WAITING)) {
			if ((st = ref_note_event(w, r, n, actor, "reassigned")) != HV_OK ||
			    (st = ref_event_text(w, r, j->rj_reason)) != HV_OK) {
				return (st);
			}
		} else {
			char b[48];
			return (ref_fail(w, HV_FAILED_PRECONDITION,
			    "need %u of referral %s is %s: only an offered or waiting need is reassigned",
			    n->index, r->id, enum_name(&haven__referral__v1__need_state__descriptor,
			                         (int) n->state, b)));
		}
		item.ri_ref  = r;
		item.ri_need = n;
		if ((st = ref_route(w, &item, 1)) != HV_OK) {
			return (st);
		}
		return (referral_done(j, r));
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		Need *n = r->needs[i];

		if (!ref_need_routing(n)) {
			continue;
		}
		if (n->state == NS(OFFERED) && (st = ref_offer_withdraw(w, n, false)) != HV_OK) {
			return (st);
		}
		if ((st = ref_transition(w, r, n, NS(CANCELLED), actor, "cancelled", n->offer_id)) !=
		        HV_OK ||
		    (st = ref_event_text(w, r, j->rj_reason)) != HV_OK) {
			return (st);
		}
		ended++;
	}
	if (ended == 0) {
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "referral %s has no need still being routed; end accepted ones with EndPlacement",
		    r->id));
	}
	return (referral_done(j, r));
}

static hv_status
run_referral_job(rpc_call *call, ref_service *rs, referral_job *j, ProtobufCMessage **reply)
{
	char      err[REF_ERR_MAX];
	hv_status st;

	if ((st = ref_check_text("reason", j->rj_reason, true, err, sizeof(err))) != HV_OK) {
		return (rpc_call_error(call, st, "%s", err));
	}
	ref_work_init_in(&j->rj_work, rs, rpc_call_arena(call));
	j->rj_caller = rpc_call_caller(call);
	if ((st = store_write(rs->rs_store, referral_fn, j)) != HV_OK) {
		st = work_error(call, &j->rj_work, st);
		goto out;
	}
	ref_work_publish(&j->rj_work);
	*reply = &j->rj_result->base;
out:
	ref_work_free(&j->rj_work);
	return (st);
}

static hv_status
h_cancel(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__CancelReferralRequest *req = (const void *) msg;
	referral_job                                      j   = { .rj_id = req->id,
		                                                       .rj_reason = req->reason };

	return (run_referral_job(call, svc, &j, reply));
}

static hv_status
h_reassign(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__ReassignNeedRequest *req = (const void *) msg;
	referral_job j = { .rj_id = req->referral_id, .rj_reason = req->reason,
		.rj_reassign = true, .rj_need = req->need_index };

	return (run_referral_job(call, svc, &j, reply));
}

/* ---- offers and placements ------------------------------------------------------------------- */

typedef enum offer_act {
	ACT_ACK,
	ACT_ACCEPT,
	ACT_DECLINE,
	ACT_PLACED,
	ACT_COMPLETE,
	ACT_END,
} offer_act;

typedef struct offer_job {
	ref_work          oj_work;
	offer_act         oj_act;
	const rpc_caller *oj_caller;
	const char       *oj_offer;
	int               oj_code; /* DeclineReason or Outcome */
	const char       *oj_text;
	Offer            *oj_result;
} offer_job;

/* Whether the caller may end a placement: its provider, the referral's referrer, or a
 * coordinator of its home region (and the operator). */
static hv_status
may_end(ref_work *w, const rpc_caller *c, const Offer *o, const Referral *r, bool *ok)
{
	if (c->role == RPC_ROLE_PROVIDER) {
		*ok = strcmp(c->org_id, o->provider_org) == 0;
		return (HV_OK);
	}
	return (may_see(w->w_rs, w->w_txn, c, r, ok));
}

/* After a decline: not eligible, unsafe or another reason keep the service from this need
 * for good; no room sets the service's free places to none instead (cap_no_room), so that the
 * need may be offered there again once the provider reports room. */
static hv_status
decline_keeps_out(ref_work *w, Need *n, const Offer *o)
{
	hv_status st;

	if (o->decline_reason != HAVEN__REFERRAL__V1__DECLINE_REASON__NO_CAPACITY) {
		return (ref_list_add(w, &n->declined_services, &n->n_declined_services, o->service_id));
	}
	if ((st = cap_no_room(w->w_rs->rs_cap, w->w_txn, o->service_id)) != HV_OK) {
		return (ref_fail(w, st == HV_NOT_FOUND ? HV_DATA_LOSS : st,
		    "cannot correct the figure of service %s", o->service_id));
	}
	return (ref_work_changed(w, o->service_id, (int) o->type, false));
}

/* Gives the place of an ended placement back to its service (cap_place_release). */
static hv_status
release_place(ref_work *w, const Offer *o)
{
	bool      freed = false;
	hv_status st    = cap_place_release(w->w_rs->rs_cap, w->w_txn, o->service_id, &freed);

	if (st == HV_NOT_FOUND) {
		return (ref_fail(w, HV_DATA_LOSS, "service %s of offer %s is not in the registry",
		    o->service_id, o->id));
	}
	if (st != HV_OK) {
		return (ref_fail(w, st, "cannot give back the place of offer %s", o->id));
	}
	return (ref_work_changed(w, o->service_id, (int) o->type, freed));
}

/* An OPEN offer within its respond-by time, or why not. */
static hv_status
offer_answerable(ref_work *w, const Offer *o)
{
	char b[48], t[32];

	if (o->state == OS(OFFER_EXPIRED) ||
	    (o->state == OS(OFFER_OPEN) && w->w_now >= (int64_t) o->respond_by_ms)) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s expired at %s", o->id,
		    iso_time(o->respond_by_ms, t)));
	}
	if (o->state != OS(OFFER_OPEN)) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s is %s, not open", o->id,
		    enum_name(&haven__referral__v1__offer_state__descriptor, (int) o->state, b)));
	}
	return (HV_OK);
}

static hv_status
need_is(ref_work *w, const Referral *r, const Need *n, NeedState want, NeedState also,
    const char *what)
{
	char b[48];

	if (n->state == want || n->state == also) {
		return (HV_OK);
	}
	return (ref_fail(w, HV_FAILED_PRECONDITION, "need %u of referral %s is %s: %s", n->index,
	    r->id, enum_name(&haven__referral__v1__need_state__descriptor, (int) n->state, b), what));
}

static hv_status
offer_fn(store_txn *txn, void *arg)
{
	offer_job        *j = arg;
	ref_work         *w = &j->oj_work;
	const rpc_caller *c = j->oj_caller;
	Offer            *o;
	Referral         *r;
	Need             *n;
	char              reason[64];
	char              b[48];
	bool              ok;
	hv_status         st;

	ref_work_begin(w, txn);
	j->oj_result = NULL;
	if ((st = ref_load_offer(w, j->oj_offer, &o)) != HV_OK) {
		return (st == HV_NOT_FOUND ? ref_fail(w, st, "no offer %s", shown_id(j->oj_offer))
		                           : ref_fail(w, st, "cannot read offer %s", shown_id(j->oj_offer)));
	}
	if ((st = ref_load(w, o->referral_id, &r)) != HV_OK || o->need_index >= r->n_needs) {
		return (st == HV_OK || st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
	}
	n = r->needs[o->need_index];
	if (j->oj_act == ACT_END) {
		if ((st = may_end(w, c, o, r, &ok)) != HV_OK) {
			return (st);
		}
	} else {
		ok = strcmp(c->org_id, o->provider_org) == 0;
	}
	if (!ok) {
		return (ref_fail(w, HV_PERMISSION_DENIED, "offer %s belongs to another provider",
		    o->id));
	}
	j->oj_result = o;

	switch (j->oj_act) {
	case ACT_ACK:
		if ((st = offer_answerable(w, o)) != HV_OK) {
			return (st);
		}
		if (o->acknowledged_ms != 0) {
			return (HV_OK); /* said before: nothing changes */
		}
		o->acknowledged_ms = (uint64_t) w->w_now;
		if ((st = ref_put_offer(w, o)) != HV_OK ||
		    (st = ref_note_event(w, r, n, c->org_id, "acknowledged")) != HV_OK) {
			return (st);
		}
		break;

	case ACT_ACCEPT: {
		bool consent;

		if ((st = offer_answerable(w, o)) != HV_OK) {
			return (st);
		}
		/* A withdrawal committed a moment ago, before its event ended the offer, still
		 * stops the acceptance: no one takes a person in on a consent that is gone. */
		if ((st = ref_consent_valid(w, r, &consent)) != HV_OK) {
			return (st);
		}
		if (!consent) {
			return (ref_fail(w, HV_FAILED_PRECONDITION,
			    "no valid consent for referral %s any more: the offer is being withdrawn", r->id));
		}
		/* The held place becomes the placement in the same transaction as the state. */
		o->need_state = NS(ACCEPTED);
		if ((st = ref_offer_end(w, o, OS(OFFER_ACCEPTED))) != HV_OK ||
		    (st = ref_transition(w, r, n, NS(ACCEPTED), c->org_id, "accepted", o->id)) !=
		        HV_OK) {
			return (st);
		}
		break;
	}

	case ACT_DECLINE: {
		ref_route_item item = { r, n };

		if ((st = offer_answerable(w, o)) != HV_OK) {
			return (st);
		}
		enum_name(&haven__referral__v1__decline_reason__descriptor, j->oj_code, b);
		snprintf(reason, sizeof(reason), "declined: %s", b);
		o->decline_reason = (Haven__Referral__V1__DeclineReason) j->oj_code;
		if ((st = ref_text_seal(w, r->subject, o->id, "decline", -1, j->oj_text,
		         &o->sealed_decline_text)) != HV_OK ||
		    (st = ref_offer_end(w, o, OS(OFFER_DECLINED))) != HV_OK ||
		    (st = decline_keeps_out(w, n, o)) != HV_OK ||
		    (st = ref_transition(w, r, n, NS(WAITING), c->org_id, reason, o->id)) != HV_OK ||
		    (st = ref_event_text(w, r, j->oj_text)) != HV_OK ||
		    (st = ref_route(w, &item, 1)) != HV_OK) {
			return (st);
		}
		break;
	}

	case ACT_PLACED:
		if (o->state != OS(OFFER_ACCEPTED) || strcmp(n->offer_id, o->id) != 0) {
			return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s was not accepted", o->id));
		}
		if ((st = need_is(w, r, n, NS(ACCEPTED), NS(ACCEPTED),
		         "only an accepted need is placed")) != HV_OK ||
		    (st = ref_transition(w, r, n, NS(PLACED), c->org_id, "placed", o->id)) != HV_OK) {
			return (st);
		}
		o->need_state = n->state;
		if ((st = ref_put_offer(w, o)) != HV_OK) {
			return (st);
		}
		break;

	case ACT_COMPLETE:
	case ACT_END:
		if (o->state != OS(OFFER_ACCEPTED) || strcmp(n->offer_id, o->id) != 0) {
			return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s was not accepted", o->id));
		}
		if (j->oj_act == ACT_COMPLETE) {
			if ((st = need_is(w, r, n, NS(PLACED), NS(PLACED),
			         "only a placed need is completed (mark it placed first)")) != HV_OK ||
			    (st = ref_transition(w, r, n, NS(COMPLETED), c->org_id, "completed", o->id)) !=
			        HV_OK) {
				return (st);
			}
		} else {
			enum_name(&haven__referral__v1__outcome__descriptor, j->oj_code, b);
			snprintf(reason, sizeof(reason), "ended: %s", b);
			if ((st = need_is(w, r, n, NS(ACCEPTED), NS(PLACED),
			         "only an accepted or placed need is ended")) != HV_OK ||
			    (st = ref_transition(w, r, n, NS(FAILED), c->org_id, reason, o->id)) != HV_OK ||
			    (st = ref_event_text(w, r, j->oj_text)) != HV_OK) {
				return (st);
			}
		}
		/* The placement's place comes back: waiting needs may take it at once. */
		if ((st = release_place(w, o)) != HV_OK) {
			return (st);
		}
		o->need_state = n->state;
		if ((st = ref_put_offer(w, o)) != HV_OK) {
			return (st);
		}
		break;
	}
	if ((st = ref_work_flush(w)) != HV_OK) {
		return (st);
	}
	return (ref_shown_offer(w, o, &j->oj_result));
}

static hv_status
run_offer_job(rpc_call *call, ref_service *rs, offer_job *j, ProtobufCMessage **reply)
{
	hv_status st;

	ref_work_init_in(&j->oj_work, rs, rpc_call_arena(call));
	j->oj_caller = rpc_call_caller(call);
	if (j->oj_text == NULL) {
		j->oj_text = "";
	}
	if ((st = store_write(rs->rs_store, offer_fn, j)) != HV_OK) {
		st = work_error(call, &j->oj_work, st);
		goto out;
	}
	ref_work_publish(&j->oj_work);
	*reply = &j->oj_result->base;
out:
	ref_work_free(&j->oj_work);
	return (st);
}

static hv_status
h_ack(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__OfferActionRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_ACK, .oj_offer = req->offer_id };

	return (run_offer_job(call, svc, &j, reply));
}

static hv_status
h_accept(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__OfferActionRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_ACCEPT, .oj_offer = req->offer_id };

	return (run_offer_job(call, svc, &j, reply));
}

static hv_status
h_decline(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__OfferActionRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_DECLINE, .oj_offer = req->offer_id,
		.oj_code = (int) req->decline_reason, .oj_text = req->text };
	char      err[REF_ERR_MAX];
	hv_status st;

	if (!ref_enum_ok(&haven__referral__v1__decline_reason__descriptor, j.oj_code)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "a decline needs a reason: no-capacity, not-eligible, unsafe or decline-other"));
	}
	if ((st = ref_check_text("text", req->text,
	         j.oj_code == HAVEN__REFERRAL__V1__DECLINE_REASON__DECLINE_OTHER, err,
	         sizeof(err))) != HV_OK) {
		return (rpc_call_error(call, st, "%s%s", err,
		    j.oj_code == HAVEN__REFERRAL__V1__DECLINE_REASON__DECLINE_OTHER
		        ? " (with reason decline-other)"
		        : ""));
	}
	return (run_offer_job(call, svc, &j, reply));
}

static hv_status
h_placed(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__PlacementRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_PLACED, .oj_offer = req->offer_id };

	return (run_offer_job(call, svc, &j, reply));
}

static hv_status
h_complete(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__PlacementRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_COMPLETE, .oj_offer = req->offer_id };

	return (run_offer_job(call, svc, &j, reply));
}

static hv_status
h_end(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__PlacementRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_END, .oj_offer = req->offer_id, .oj_code = (int) req->outcome,
		.oj_text = req->text };
	char      err[REF_ERR_MAX];
	hv_status st;

	if (!ref_enum_ok(&haven__referral__v1__outcome__descriptor, j.oj_code)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "ending a placement needs an outcome: client-refused, no-longer-needed, "
		    "unable-to-contact-client, unable-to-contact-provider or outcome-other"));
	}
	if ((st = ref_check_text("text", req->text,
	         j.oj_code == HAVEN__REFERRAL__V1__OUTCOME__OUTCOME_OTHER, err, sizeof(err))) !=
	    HV_OK) {
		return (rpc_call_error(call, st, "%s%s", err,
		    j.oj_code == HAVEN__REFERRAL__V1__OUTCOME__OUTCOME_OTHER ? " (with outcome-other)"
		                                                              : ""));
	}
	return (run_offer_job(call, svc, &j, reply));
}

/* ---- ListOffers ------------------------------------------------------------------------------ */

/* The operator's walk over every offer, in id order; the token is the last id taken. */
static hv_status
walk_all_offers(store_txn *txn, store_table t, const char *token, unsigned max_scan, walk_fn fn,
    void *arg, char *next, size_t nextsz)
{
	store_cursor *c = NULL;
	const void   *k;
	size_t        kl;
	size_t        tl = token != NULL ? strlen(token) : 0;
	char          last_id[IDS_MAX] = "";
	unsigned      scanned = 0;
	bool          stopped = false;
	hv_status     st, fst = HV_OK;

	next[0] = '\0';
	if ((st = store_cursor_open(txn, t, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, token, tl, &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		char id[IDS_MAX];

		if ((tl > 0 && kl == tl && memcmp(k, token, tl) == 0) || kl >= IDS_MAX) {
			continue;
		}
		memcpy(id, k, kl);
		id[kl] = '\0';
		if (scanned++ == max_scan || !fn(arg, id, &fst)) {
			stopped = fst == HV_OK && last_id[0] != '\0';
			break;
		}
		memcpy(last_id, id, sizeof(id));
	}
	store_cursor_close(c);
	if (fst != HV_OK) {
		return (fst);
	}
	if (st != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	if (stopped) {
		snprintf(next, nextsz, "%s", last_id);
	}
	return (HV_OK);
}

static hv_status
h_list_offers(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	ref_service                                 *rs  = svc;
	const Haven__Referral__V1__ListOffersRequest *req = (const void *) msg;
	const rpc_caller                            *c   = rpc_call_caller(call);
	Haven__Referral__V1__ListOffersResponse     *resp;
	ref_work   w;
	store_txn *txn = NULL;
	char       next[IDS_MAX + 20];
	char       err[REF_ERR_MAX] = "";
	list_ctx   lc;
	hv_status  st;

	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	haven__referral__v1__list_offers_response__init(resp);
	ref_work_init_in(&w, rs, rpc_call_arena(call));
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		goto out;
	}
	ref_work_begin(&w, txn);
	lc = (list_ctx) { &w, req->open_only, page_size(req->page_size), 0, (void ***) &resp->offers,
		&resp->n_offers, true };
	if (c->role == RPC_ROLE_PROVIDER) {
		st = walk_index(txn, rs->rs_by_provider, c->org_id, req->page_token, lc.lc_max * 20,
		    list_one, &lc, next, sizeof(next), err, sizeof(err));
	} else {
		if (req->page_token[0] != '\0' && !ids_valid(req->page_token)) {
			st = rpc_call_error(call, HV_INVALID_ARGUMENT, "page_token is not one this "
			                                               "service gave");
			goto out;
		}
		st = walk_all_offers(txn, rs->rs_offers, req->page_token, lc.lc_max * 20, list_one,
		    &lc, next, sizeof(next));
	}
	if (st != HV_OK) {
		st = rpc_call_error(call, st, "%s", err[0] != '\0' ? err : "cannot list offers");
		goto out;
	}
	if ((resp->next_page_token = rpc_call_strdup(call, next)) == NULL) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "reply too large");
		goto out;
	}
	*reply = &resp->base;
out:
	store_read_end(txn);
	ref_work_free(&w);
	return (st);
}

/* ---- Statistics ------------------------------------------------------------------------------ */

static hv_status
h_stats(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	Haven__Referral__V1__StatisticsResponse *resp = NULL;
	char                                     err[REF_ERR_MAX] = "";
	hv_status                                st;

	st = ref_statistics(svc, (const void *) msg, rpc_call_allocator(call), &resp, err,
	    sizeof(err));
	if (st != HV_OK) {
		return (rpc_call_error(call, st, "%s", err[0] != '\0' ? err : hv_status_name(st)));
	}
	*reply = &resp->base;
	return (HV_OK);
}

/* ---- registration ---------------------------------------------------------------------------- */

static const rpc_method_impl methods[] = {
	{ .name = "CreateReferral", .handler = h_create, .roles = RPC_ROLE_REFERRER },
	{ .name = "GetReferral", .handler = h_get, .roles = ROLES_READ | RPC_ROLE_PROVIDER },
	{ .name = "ListReferrals", .handler = h_list, .roles = ROLES_READ },
	{ .name = "CancelReferral", .handler = h_cancel, .roles = ROLES_READ },
	{ .name = "ReassignNeed", .handler = h_reassign,
	    .roles = RPC_ROLES_COORDINATORS | RPC_ROLE_OPERATOR },
	{ .name = "ListOffers", .handler = h_list_offers,
	    .roles = RPC_ROLE_PROVIDER | RPC_ROLE_OPERATOR },
	{ .name = "AcknowledgeOffer", .handler = h_ack, .roles = RPC_ROLE_PROVIDER },
	{ .name = "AcceptOffer", .handler = h_accept, .roles = RPC_ROLE_PROVIDER },
	{ .name = "DeclineOffer", .handler = h_decline, .roles = RPC_ROLE_PROVIDER },
	{ .name = "MarkPlaced", .handler = h_placed, .roles = RPC_ROLE_PROVIDER },
	{ .name = "CompletePlacement", .handler = h_complete, .roles = RPC_ROLE_PROVIDER },
	{ .name = "EndPlacement", .handler = h_end, .roles = RPC_ROLE_PROVIDER | ROLES_READ },
	{ .name = "Statistics", .handler = h_stats,
	    .roles = RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS |
	        RPC_ROLE_MUNICIPALITY },
};

hv_status
ref_register(ref_service *rs, rpc_server *srv)
{
	hv_status st;

	if (rs == NULL || srv == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = rpc_server_add_service(srv, &haven__referral__v1__referrals__descriptor, methods,
	         sizeof(methods) / sizeof(methods[0]), rs)) != HV_OK) {
		return (st);
	}
	/* Referrals, needs by state and unmet needs (ref_metrics.c). */
	return (metrics_add_collector(rpc_server_metrics(srv), ref_metrics_collect, rs));
}
