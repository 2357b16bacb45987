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
#include "ref_rpc.h"
#include "ref_metrics.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every referral: the node's operator and national coordinators. An admin keeps the directory
 * and the keys and sees no person-linked record (docs/authority.md). */
#define ROLES_ALL_REFERRALS (RPC_ROLE_OPERATOR | RPC_ROLE_NATIONAL_COORDINATOR)

/* ---- helpers --------------------------------------------------------------------------------- */

hv_status
ref_rpc_error(rpc_call *call, ref_work *w, hv_status st)
{
	if (w->w_err[0] != '\0') {
		return (rpc_call_error(call, st, "%s", w->w_err));
	}
	return (rpc_call_error(call, st, "%s", hv_status_name(st)));
}


const char *
ref_enum_buf(const ProtobufCEnumDescriptor *d, int v, char buf[48])
{
	return (ref_enum_name(d, v, buf, 48));
}

/* An id from a request as a message may show it: only when it is one (anything else could be
 * any text, even personal data typed into the wrong field). */
const char *
ref_shown_id(const char *id)
{
	return (ids_valid(id) ? id : "(not an id)");
}

/* Whether a need is with the provider organisation now: accepted by it, or placed there. */
bool
ref_accepted_by(const Need *n, const char *org)
{
	return ((n->state == NS(ACCEPTED) || n->state == NS(PLACED)) &&
	    strcmp(n->provider_org, org) == 0);
}

/* Whether the caller may see (and, for its role, act on) the referral. A provider sees it only
 * while a need of it is accepted by or placed with the provider, and then only provider_view. */
hv_status
ref_may_see(ref_service *rs, store_txn *txn, const rpc_caller *c, const Referral *r, bool *ok)
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
			*ok = ref_accepted_by(r->needs[i], c->org_id);
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
hv_status
ref_load_visible(ref_work *w, const rpc_caller *c, const char *id, Referral **out)
{
	bool      ok;
	hv_status st;

	if ((st = ref_load(w, id, out)) != HV_OK) {
		return (st == HV_NOT_FOUND ? ref_fail(w, st, "no referral %s", ref_shown_id(id))
		                           : ref_fail(w, st, "cannot read referral %s", ref_shown_id(id)));
	}
	if ((st = ref_may_see(w->w_rs, w->w_txn, c, *out, &ok)) != HV_OK) {
		return (ref_fail(w, st, "cannot read the partner directory"));
	}
	if (!ok) {
		return (ref_fail(w, HV_PERMISSION_DENIED, "referral %s is not yours to see", id));
	}
	return (HV_OK);
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
		if (ref_accepted_by(r->needs[i], org)) {
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
	if ((st = ref_load_visible(&j->gj_work, j->gj_caller, j->gj_id, &r)) != HV_OK) {
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
		st = ref_rpc_error(call, &j.gj_work, st);
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
	{ .name = "CreateReferral", .handler = ref_h_create, .roles = RPC_ROLE_REFERRER },
	{ .name = "GetReferral", .handler = h_get, .roles = ROLES_READ | RPC_ROLE_PROVIDER },
	{ .name = "ListReferrals", .handler = h_list, .roles = ROLES_READ },
	{ .name = "CancelReferral", .handler = ref_h_cancel, .roles = ROLES_READ },
	{ .name = "ReassignNeed", .handler = ref_h_reassign,
	    .roles = RPC_ROLES_COORDINATORS | RPC_ROLE_OPERATOR },
	{ .name = "UpdateReferral", .handler = ref_h_update, .roles = ROLES_READ },
	{ .name = "PauseNeed", .handler = ref_h_pause, .roles = ROLES_READ },
	{ .name = "ResumeNeed", .handler = ref_h_resume, .roles = ROLES_READ },
	{ .name = "ListOffers", .handler = h_list_offers,
	    .roles = RPC_ROLE_PROVIDER | RPC_ROLE_OPERATOR },
	{ .name = "AcknowledgeOffer", .handler = ref_h_ack, .roles = RPC_ROLE_PROVIDER },
	{ .name = "AcceptOffer", .handler = ref_h_accept, .roles = RPC_ROLE_PROVIDER },
	{ .name = "DeclineOffer", .handler = ref_h_decline, .roles = RPC_ROLE_PROVIDER },
	{ .name = "MarkPlaced", .handler = ref_h_placed, .roles = RPC_ROLE_PROVIDER },
	{ .name = "CompletePlacement", .handler = ref_h_complete, .roles = RPC_ROLE_PROVIDER },
	{ .name = "EndPlacement", .handler = ref_h_end, .roles = RPC_ROLE_PROVIDER | ROLES_READ },
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
