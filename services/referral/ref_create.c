/*
 * ref_create.c - CreateReferral: a referrer's referral stored with its needs in one write
 * transaction, after the consent check, its free text sealed, and its needs routed at once
 * (ref_route); a retry with the same idempotency key returns what the first call made.
 */
#include "ref_internal.h"
#include "ref_rpc.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Haven__Referral__V1__CreateReferralRequest CreateReferralRequest;

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
	hv_status                    cj_refused; /* the consent check's refusal, or HV_OK */
} create_job;

/* A retry of a create that committed returns what it made, and routes nothing again:
 * *found when the key was used (j->cj_result set). */
static hv_status
create_repeat(create_job *j, const uint8_t *key, size_t kl, bool *found)
{
	ref_work   *w = &j->cj_work;
	const void *v;
	size_t      vl;
	char        id[IDS_MAX];
	hv_status   st;

	*found = false;
	st     = store_get(w->w_txn, w->w_rs->rs_idem, key, kl, &v, &vl);
	if (st != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if (vl == 0 || vl >= IDS_MAX) {
		return (HV_DATA_LOSS);
	}
	memcpy(id, v, vl);
	id[vl] = '\0';
	if ((st = ref_load(w, id, &j->cj_result)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
	}
	*found       = true;
	j->cj_repeat = true;
	/* The answer is the referral, its note opened: a read, audited as GetReferral's is. */
	if ((st = ref_audit_access(w, j->cj_caller, j->cj_method, j->cj_result->subject,
	         j->cj_result->id)) != HV_OK) {
		return (st);
	}
	return (ref_shown(w, j->cj_result, &j->cj_result));
}

/* Consent for the purpose "referral", to the node itself, checked in this transaction so
 * that a withdrawal committed before it is seen. */
static hv_status
create_allowed(create_job *j)
{
	ref_work    *w       = &j->cj_work;
	ref_service *rs      = w->w_rs;
	bool         allowed = false;
	hv_status    st;

	if (rs->rs_consent != NULL) {
		st = rs->rs_consent(rs->rs_consent_arg, w->w_txn, j->cj_caller, j->cj_method,
		    j->cj_req->subject, PURPOSE_REFERRAL, "", false, &allowed);
		if (st == HV_NOT_FOUND) {
			allowed = false;
		} else if (st != HV_OK) {
			if (st == HV_PERMISSION_DENIED) {
				j->cj_refused = st;
			}
			return (ref_fail(w, st, "the consent check for subject %s failed: %s",
			    j->cj_req->subject, hv_status_name(st)));
		}
	}
	if (!allowed) {
		j->cj_refused = HV_FAILED_PRECONDITION;
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "no valid consent for purpose referral for subject %s", j->cj_req->subject));
	}
	return (HV_OK);
}

/* A create the consent check refused left no audit entry (the check's went with the aborted
 * transaction): the attempt is audited in a transaction of its own, so that the subject's
 * holder sees who asked about her. */
static void
create_audit_refusal(create_job *j)
{
	ref_service *rs = j->cj_work.w_rs;
	audit_entry  e;
	hv_status    st;

	if (j->cj_refused == HV_OK || rs->rs_audit == NULL) {
		return;
	}
	audit_entry_fill(&e, j->cj_caller, j->cj_method, j->cj_req->subject, PURPOSE_REFERRAL,
	    j->cj_work.w_now);
	e.result = (int32_t) j->cj_refused;
	if ((st = audit_record(rs->rs_audit, &e)) != HV_OK) {
		log_error("referral: cannot audit a refused create: %s", hv_status_name(st));
	}
}

/* A fresh referral id not in use. */
static hv_status
create_id(ref_work *w, char id[IDS_MAX])
{
	hv_status st = HV_OK;

	for (int tries = 0; tries < 4 && st == HV_OK; tries++) {
		if ((st = ids_generate(id, IDS_MAX, REF_REFERRAL_PREFIX, REF_ID_HEX)) != HV_OK) {
			return (st);
		}
		st = store_get(w->w_txn, w->w_rs->rs_referrals, id, strlen(id), NULL, NULL);
	}
	return (st == HV_NOT_FOUND ? HV_OK : st == HV_OK ? HV_ALREADY_EXISTS : st);
}

/* The new referral of the request in the work's arena. The request lives until the handler
 * returns, after the commit: the referral may point into it. */
static hv_status
create_build(create_job *j, const char *id, const char *region, Referral **out)
{
	ref_work                    *w   = &j->cj_work;
	const CreateReferralRequest *req = j->cj_req;
	Referral                    *r;
	Need                       **needs;

	if ((r = arena_alloc(w->w_arena, sizeof(*r))) == NULL ||
	    (needs = arena_alloc(w->w_arena, req->n_needs * sizeof(Need *))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__referral__v1__referral__init(r);
	r->needs = needs;
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
	*out = r;
	return (ref_text_seal(w, r->subject, r->id, "note", -1, req->note, &r->sealed_note));
}

/* The idempotency entry and the referral's index entries. */
static hv_status
create_index(ref_work *w, const Referral *r, const uint8_t *idem, size_t idemlen)
{
	ref_service *rs  = w->w_rs;
	store_txn   *txn = w->w_txn;
	uint8_t      key[REF_KEY_MAX];
	hv_status    st;

	if ((st = store_put(txn, rs->rs_idem, idem, idemlen, r->id, strlen(r->id))) != HV_OK ||
	    (st = store_put(txn, rs->rs_by_referrer, key,
	         ref_key_timed(key, r->referrer_org, r->created_ms, r->id), "", 0)) != HV_OK ||
	    (st = store_put(txn, rs->rs_by_region, key,
	         ref_key_timed(key, r->home_region, r->created_ms, r->id), "", 0)) != HV_OK ||
	    (st = store_put(txn, rs->rs_by_time, key,
	         ref_key_timed(key, NULL, r->created_ms, r->id), "", 0)) != HV_OK) {
		return (st);
	}
	return (
	    store_put(txn, rs->rs_by_subject, key, ref_key_pair(key, r->subject, r->id), "", 0));
}

static hv_status
create_fn(store_txn *txn, void *arg)
{
	create_job    *j = arg;
	ref_work      *w = &j->cj_work;
	Referral      *r = NULL;
	ref_route_item items[REF_NEEDS_MAX];
	char           region[REGION_NAME_MAX];
	char           id[IDS_MAX];
	uint8_t        key[REF_KEY_MAX];
	size_t         kl;
	bool           found;
	hv_status      st;

	ref_work_begin(w, txn);
	j->cj_result  = NULL;
	j->cj_repeat  = false;
	j->cj_refused = HV_OK;
	kl            = ref_key_pair(key, j->cj_org, j->cj_key);
	if ((st = create_repeat(j, key, kl, &found)) != HV_OK || found ||
	    (st = create_allowed(j)) != HV_OK) {
		return (st);
	}
	if ((st = ref_org_region(w->w_rs, txn, j->cj_org, region)) != HV_OK) {
		return (st == HV_NOT_FOUND
		        ? ref_fail(w, HV_FAILED_PRECONDITION,
		              "organisation %s is not an enabled partner in the directory",
		              j->cj_org)
		        : ref_fail(w, st, "cannot read the partner directory"));
	}
	if ((st = create_id(w, id)) != HV_OK || (st = create_build(j, id, region, &r)) != HV_OK ||
	    (st = ref_adopt(w, r)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		if ((st = ref_transition(w, r, r->needs[i], NS(WAITING), j->cj_org, "referred",
		         "")) != HV_OK) {
			return (st);
		}
		items[i].ri_ref  = r;
		items[i].ri_need = r->needs[i];
	}
	if ((st = ref_route(w, items, r->n_needs)) != HV_OK ||
	    (st = create_index(w, r, key, kl)) != HV_OK || (st = ref_work_flush(w)) != HV_OK) {
		return (st);
	}
	return (ref_shown(w, r, &j->cj_result));
}

hv_status
ref_h_create(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
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
	j->cj_req     = (const void *) msg;
	j->cj_caller  = c;
	j->cj_method  = rpc_call_method(call);
	j->cj_org     = c->org_id;
	j->cj_key     = key;
	j->cj_refused = HV_OK;
	if ((st = store_write(rs->rs_store, create_fn, j)) != HV_OK) {
		create_audit_refusal(j);
		st = ref_rpc_error(call, &j->cj_work, st);
		goto out;
	}
	ref_work_publish(&j->cj_work);
	if (!j->cj_repeat) {
		log_info("referral %s: %zu needs, %u offered", j->cj_result->id,
		    j->cj_result->n_needs, j->cj_work.w_offers);
	}
	*reply = &j->cj_result->base;
out:
	ref_work_free(&j->cj_work);
	free(j);
	return (st);
}
