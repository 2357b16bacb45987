/*
 * ref_list.c - ListReferrals and ListOffers: pages of a time-ordered index (newest first) or,
 * for the operator's offers, of the offers in id order, with page tokens. Every record on a
 * page is a read of a person-linked record: each is audited (ref_audit_access) in the page's
 * own transaction, so that no page is answered that was not recorded.
 */
#include "ref_internal.h"
#include "ref_rpc.h"

#include <stdio.h>
#include <string.h>

/* Every referral: the node's operator and national coordinators. An admin keeps the directory
 * and the keys and sees no person-linked record (docs/authority.md). */
#define ROLES_ALL_REFERRALS (RPC_ROLE_OPERATOR | RPC_ROLE_NATIONAL_COORDINATOR)

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
		int  d  = ch >= '0' && ch <= '9' ? ch - '0'
		      : ch >= 'a' && ch <= 'f'   ? ch - 'a' + 10
		                                 : -1;
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
walk_index(store_txn *txn, store_table t, const char *prefix, const char *token, unsigned max_scan,
    walk_fn fn, void *arg, char *next, size_t nextsz, char *err, size_t errsz)
{
	store_cursor *c = NULL;
	uint8_t       key[REF_KEY_MAX];
	uint8_t       last_tp[8];
	char          last_id[IDS_MAX] = "";
	size_t        plen             = 0, kl0;
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

static unsigned
page_size(uint32_t asked)
{
	return (asked == 0 ? REF_PAGE_DEFAULT : asked > REF_PAGE_MAX ? REF_PAGE_MAX : asked);
}

/* The operator's walk over every offer, in id order; the token is the last id taken. */
static hv_status
walk_all_offers(store_txn *txn, store_table t, const char *token, unsigned max_scan, walk_fn fn,
    void *arg, char *next, size_t nextsz)
{
	store_cursor *c = NULL;
	const void   *k;
	size_t        kl;
	size_t        tl               = token != NULL ? strlen(token) : 0;
	char          last_id[IDS_MAX] = "";
	unsigned      scanned          = 0;
	bool          stopped          = false;
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

/* One page of referrals or offers, read in a write transaction when reads are audited (each
 * record read is an audit entry in the same transaction), else in a read transaction. */
typedef struct list_job {
	ref_work          lj_work;
	const rpc_caller *lj_caller;
	const char       *lj_method;
	bool              lj_offers; /* ListOffers; else ListReferrals */
	bool              lj_open_only;
	unsigned          lj_max;
	const char       *lj_token;
	void           ***lj_items;
	size_t           *lj_n;
	size_t            lj_bytes;
	char              lj_next[IDS_MAX + 20];
	char              lj_err[REF_ERR_MAX];
} list_job;

/* An offer for the page (NULL: skipped), its read audited under its referral's subject. */
static hv_status
list_offer(list_job *j, const char *id, void **out)
{
	ref_work *w = &j->lj_work;
	Offer    *o;
	Referral *r;
	hv_status st;

	*out = NULL;
	if ((st = ref_load_offer(w, id, &o)) != HV_OK) {
		return (st);
	}
	if (j->lj_open_only && o->state != OS(OFFER_OPEN)) {
		return (HV_OK);
	}
	if ((st = ref_load(w, o->referral_id, &r)) != HV_OK ||
	    (st = ref_audit_access(w, j->lj_caller, j->lj_method, r->subject, o->id)) != HV_OK) {
		return (st);
	}
	st   = ref_shown_offer(w, o, &o);
	*out = o;
	return (st);
}

/* A referral for the page (NULL: skipped), its read audited. */
static hv_status
list_referral(list_job *j, const char *id, void **out)
{
	ref_work *w = &j->lj_work;
	Referral *r;
	bool      open = false, seen = false;
	hv_status st;

	*out = NULL;
	if ((st = ref_load(w, id, &r)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		open = open || ref_need_open(r->needs[i]);
	}
	if (j->lj_open_only && !open) {
		return (HV_OK);
	}
	/* A referrer's index holds the referrals it made; of a subject it handed on, none is its
	 * to see any more (ref_may_see). */
	if (j->lj_caller->role == RPC_ROLE_REFERRER &&
	    ((st = ref_may_see(w->w_rs, w->w_txn, j->lj_caller, r, &seen)) != HV_OK || !seen)) {
		return (st);
	}
	if ((st = ref_audit_access(w, j->lj_caller, j->lj_method, r->subject, r->id)) != HV_OK) {
		return (st);
	}
	st   = ref_shown(w, r, &r);
	*out = r;
	return (st);
}

static bool
list_one(void *arg, const char *id, hv_status *st)
{
	list_job *j = arg;
	void     *m = NULL;

	/* A page ends at its size, at REF_PAGE_BYTES of answer, or when half the call's arena is
	 * used (the records read, their opened copies and the audit work live there): the next
	 * page goes on from here, where a full arena would fail the call. */
	if (*j->lj_n >= j->lj_max || j->lj_bytes >= REF_PAGE_BYTES ||
	    j->lj_work.w_arena->a_used >= j->lj_work.w_arena->a_budget / 2) {
		return (false);
	}
	*st = j->lj_offers ? list_offer(j, id, &m) : list_referral(j, id, &m);
	if (*st == HV_NOT_FOUND) {
		*st = HV_OK; /* an index entry of a record written later in a batch: skip */
		return (true);
	}
	if (*st != HV_OK || m == NULL) {
		return (*st == HV_OK);
	}
	j->lj_bytes += protobuf_c_message_get_packed_size(m);
	*st = ref_list_add(&j->lj_work, (char ***) j->lj_items, j->lj_n, m);
	return (*st == HV_OK);
}

/* The index a caller lists referrals from: all (operator, national coordinator), its own
 * (referrer) or its region's (coordinator). */
static hv_status
referral_index(list_job *j, store_table *t, char region[REGION_NAME_MAX], const char **prefix)
{
	ref_service      *rs = j->lj_work.w_rs;
	const rpc_caller *c  = j->lj_caller;
	hv_status         st;

	*prefix = NULL;
	if ((c->role & ROLES_ALL_REFERRALS) != 0) {
		*t = rs->rs_by_time;
	} else if (c->role == RPC_ROLE_REFERRER) {
		*t      = rs->rs_by_referrer;
		*prefix = c->org_id;
	} else {
		if ((st = ref_org_region(rs, j->lj_work.w_txn, c->org_id, region)) != HV_OK) {
			return (ref_fail(&j->lj_work,
			    st == HV_NOT_FOUND ? HV_PERMISSION_DENIED : st,
			    "organisation %s has no region in the partner directory", c->org_id));
		}
		*t      = rs->rs_by_region;
		*prefix = region;
	}
	return (HV_OK);
}

static hv_status
list_fn(store_txn *txn, void *arg)
{
	list_job    *j  = arg;
	ref_work    *w  = &j->lj_work;
	ref_service *rs = w->w_rs;
	store_table  t  = rs->rs_by_time;
	char         region[REGION_NAME_MAX];
	const char  *prefix = NULL;
	hv_status    st;

	ref_work_begin(w, txn);
	*j->lj_items = NULL;
	*j->lj_n     = 0;
	j->lj_bytes  = 0;
	j->lj_err[0] = '\0';
	if (j->lj_offers && j->lj_caller->role != RPC_ROLE_PROVIDER) {
		if (j->lj_token[0] != '\0' && !ids_valid(j->lj_token)) {
			return (ref_fail(w, HV_INVALID_ARGUMENT,
			    "page_token is not one this service gave"));
		}
		return (walk_all_offers(txn, rs->rs_offers, j->lj_token, j->lj_max * 20, list_one,
		    j, j->lj_next, sizeof(j->lj_next)));
	}
	if (j->lj_offers) {
		t      = rs->rs_by_provider;
		prefix = j->lj_caller->org_id;
	} else if ((st = referral_index(j, &t, region, &prefix)) != HV_OK) {
		return (st);
	}
	st = walk_index(txn, t, prefix, j->lj_token, j->lj_max * 20, list_one, j, j->lj_next,
	    sizeof(j->lj_next), j->lj_err, sizeof(j->lj_err));
	if (st != HV_OK && j->lj_err[0] != '\0' && w->w_err[0] == '\0') {
		return (ref_fail(w, st, "%s", j->lj_err));
	}
	return (st);
}

static hv_status
run_list(rpc_call *call, ref_service *rs, list_job *j, ProtobufCMessage *resp, char **next,
    ProtobufCMessage **reply)
{
	hv_status st;

	ref_work_init_in(&j->lj_work, rs, rpc_call_arena(call));
	j->lj_caller = rpc_call_caller(call);
	j->lj_method = rpc_call_method(call);
	if ((st = ref_read(rs, list_fn, j)) != HV_OK) {
		st = ref_rpc_error(call, &j->lj_work, st);
		goto out;
	}
	if ((*next = rpc_call_strdup(call, j->lj_next)) == NULL) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "reply too large");
		goto out;
	}
	*reply = resp;
out:
	ref_work_free(&j->lj_work);
	return (st);
}

hv_status
ref_h_list(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__ListReferralsRequest *req = (const void *) msg;
	Haven__Referral__V1__ListReferralsResponse      *resp;
	list_job                                        *j;

	/* The answer is built in the call's arena, where the server packs it from. */
	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL ||
	    (j = rpc_call_alloc(call, sizeof(*j))) == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	haven__referral__v1__list_referrals_response__init(resp);
	j->lj_open_only = req->open_only;
	j->lj_max       = page_size(req->page_size);
	j->lj_token     = req->page_token;
	j->lj_items     = (void ***) &resp->referrals;
	j->lj_n         = &resp->n_referrals;
	return (run_list(call, svc, j, &resp->base, &resp->next_page_token, reply));
}

hv_status
ref_h_list_offers(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__ListOffersRequest *req = (const void *) msg;
	Haven__Referral__V1__ListOffersResponse      *resp;
	list_job                                     *j;

	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL ||
	    (j = rpc_call_alloc(call, sizeof(*j))) == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	haven__referral__v1__list_offers_response__init(resp);
	j->lj_offers    = true;
	j->lj_open_only = req->open_only;
	j->lj_max       = page_size(req->page_size);
	j->lj_token     = req->page_token;
	j->lj_items     = (void ***) &resp->offers;
	j->lj_n         = &resp->n_offers;
	return (run_list(call, svc, j, &resp->base, &resp->next_page_token, reply));
}

hv_status
ref_referrer_of(ref_service *rs, store_txn *txn, const char *id, char *org, size_t orgsz)
{
	Referral *r = NULL;
	hv_status st;

	if (id == NULL || !ids_valid(id)) {
		return (HV_NOT_FOUND);
	}
	if ((st = store_get_msg(txn, rs->rs_referrals, id, strlen(id),
	         &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r)) !=
	    HV_OK) {
		return (st);
	}
	snprintf(org, orgsz, "%s", r->referrer_org != NULL ? r->referrer_org : "");
	haven__referral__v1__referral__free_unpacked(r, NULL);
	return (HV_OK);
}
