/*
 * ref_edit.c - changes to a referral after it was made, by its referrer, a coordinator of its
 * home region or the operator (ref_may_see decides; docs/authority.md): CancelReferral,
 * ReassignNeed, UpdateReferral, PauseNeed and ResumeNeed. Each is one write transaction on the
 * referral: its needs move through ref_transition (every change is an event of the trail,
 * with the caller as actor and the reason's free text sealed), offers are withdrawn with their
 * holds released, placements end with their places given back, and needs that may be routed
 * are routed before the commit, with an entry in the node's audit log (ref_audit_access).
 */
#include "ref_internal.h"

#include "haven/pbenum.h"
#include "ref_rpc.h"

#include <stdio.h>
#include <string.h>

typedef Haven__Referral__V1__UpdateReferralRequest UpdateReferralRequest;

typedef struct edit_job edit_job;
/* The change itself, on a referral the caller may see, in the job's transaction. */
typedef hv_status (*edit_fn)(edit_job *j, Referral *r);

struct edit_job {
	ref_work          ej_work;
	const rpc_caller *ej_caller;
	const char       *ej_method;
	const char       *ej_id;
	edit_fn           ej_fn;
	const void       *ej_req;
	const char       *ej_reason; /* free text of the trail's events */
	Referral         *ej_result;
};

static hv_status
edit_txn(store_txn *txn, void *arg)
{
	edit_job *j = arg;
	ref_work *w = &j->ej_work;
	Referral *r;
	hv_status st;

	ref_work_begin(w, txn);
	j->ej_result = NULL;
	if ((st = ref_load_visible(w, j->ej_caller, j->ej_id, &r)) != HV_OK ||
	    (st = j->ej_fn(j, r)) != HV_OK || (st = ref_work_flush(w)) != HV_OK ||
	    (st = ref_audit_access(w, j->ej_caller, j->ej_method, r->subject, r->id)) != HV_OK) {
		return (st);
	}
	/* The answer is the referral with its free text opened. */
	return (ref_shown(w, r, &j->ej_result));
}

/*
 * What every handler of this file does once its own checks passed: the request's free text
 * checked (field names it; NULL: checked already), then fn run on referral id as one write
 * transaction (edit_txn: the referral loaded if the caller may see it, fn, routing and alerts
 * flushed, the access audited) and the referral answered.
 */
static hv_status
run_edit(rpc_call *call, ref_service *rs, const char *id, edit_fn fn, const void *req,
    const char *field, const char *text, bool required, ProtobufCMessage **reply)
{
	edit_job  j = { .ej_id = id, .ej_fn = fn, .ej_req = req, .ej_reason = text };
	char      err[REF_ERR_MAX];
	hv_status st;

	if (field != NULL &&
	    (st = ref_check_text(field, text, required, err, sizeof(err))) != HV_OK) {
		return (rpc_call_error(call, st, "%s", err));
	}
	ref_work_init_in(&j.ej_work, rs, rpc_call_arena(call));
	j.ej_caller = rpc_call_caller(call);
	j.ej_method = rpc_call_method(call);
	if (j.ej_reason == NULL) {
		j.ej_reason = "";
	}
	if ((st = store_write(rs->rs_store, edit_txn, &j)) != HV_OK) {
		st = ref_rpc_error(call, &j.ej_work, st);
		goto out;
	}
	ref_work_publish(&j.ej_work);
	*reply = &j.ej_result->base;
out:
	ref_work_free(&j.ej_work);
	return (st);
}

static hv_status
state_error(ref_work *w, const Referral *r, const Need *n, const char *what)
{
	char b[48];

	return (ref_fail(w, HV_FAILED_PRECONDITION, "need %u of referral %s is %s: %s", n->index,
	    r->id, ref_enum_buf(&haven__referral__v1__need_state__descriptor, (int) n->state, b),
	    what));
}

/* A bit per NeedState, for the states a change applies to. */
#define ST(s)   (1u << NS(s))
#define ROUTING (ST(WAITING) | ST(OFFERED) | ST(ON_HOLD)) /* as ref_need_routing */

/* The need at index, when it is in one of states: INVALID_ARGUMENT when the referral has no
 * such need, FAILED_PRECONDITION saying what applies when its state is not one of them. */
static hv_status
need_in(ref_work *w, Referral *r, uint32_t index, unsigned states, const char *what, Need **out)
{
	Need *n;

	if (index >= r->n_needs) {
		return (
		    ref_fail(w, HV_INVALID_ARGUMENT, "referral %s has no need %u", r->id, index));
	}
	n = r->needs[index];
	if ((int) n->state < 0 || (int) n->state > 31 || (states & (1u << n->state)) == 0) {
		return (state_error(w, r, n, what));
	}
	*out = n;
	return (HV_OK);
}

/* A transition by the caller with the job's reason text on its event. */
static hv_status
move(edit_job *j, Referral *r, Need *n, NeedState to, const char *code)
{
	hv_status st;

	if ((st = ref_transition(&j->ej_work, r, n, to, j->ej_caller->org_id, code, n->offer_id)) !=
	    HV_OK) {
		return (st);
	}
	return (ref_event_text(&j->ej_work, r, j->ej_reason));
}

/* Routes every WAITING need of the referral (after a change that may let one be offered). */
static hv_status
route_waiting(ref_work *w, Referral *r)
{
	ref_route_item items[REF_NEEDS_MAX];
	size_t         n = 0;

	for (size_t i = 0; i < r->n_needs && n < REF_NEEDS_MAX; i++) {
		if (r->needs[i]->state == NS(WAITING)) {
			items[n].ri_ref  = r;
			items[n].ri_need = r->needs[i];
			n++;
		}
	}
	return (ref_route(w, items, n));
}

/* Routes one WAITING need now. */
static hv_status
route_one(ref_work *w, Referral *r, Need *n)
{
	ref_route_item item = { .ri_ref = r, .ri_need = n };

	return (ref_route(w, &item, 1));
}

/* Ends a need still being routed: its open offer withdrawn (hold released), CANCELLED. */
static hv_status
cancel_need(edit_job *j, Referral *r, Need *n)
{
	hv_status st;

	if (n->state == NS(OFFERED) && (st = ref_offer_withdraw(&j->ej_work, n, false)) != HV_OK) {
		return (st);
	}
	return (move(j, r, n, NS(CANCELLED), "cancelled"));
}

/* ---- CancelReferral -------------------------------------------------------------------------- */

/* Every open need ends: those still routed are CANCELLED, accepted and placed ones end their
 * placement with the request's outcome (the place comes back, and the provider sees the need
 * FAILED on its offer and in the referral's trail). */
static hv_status
cancel_fn(edit_job *j, Referral *r)
{
	const Haven__Referral__V1__CancelReferralRequest *req = j->ej_req;
	ref_work                                         *w   = &j->ej_work;
	int                                               outcome =
            req->outcome != 0 ? (int) req->outcome : HAVEN__REFERRAL__V1__OUTCOME__NO_LONGER_NEEDED;
	unsigned  ended = 0;
	hv_status st;

	for (size_t i = 0; i < r->n_needs; i++) {
		Need  *n = r->needs[i];
		Offer *o;

		if (ref_need_routing(n)) {
			st = cancel_need(j, r, n);
		} else if (ref_need_open(n)) {
			if ((st = ref_load_offer(w, n->offer_id, &o)) != HV_OK) {
				return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
			}
			st = ref_placement_end(w, r, n, o, j->ej_caller->org_id, outcome,
			    j->ej_reason);
		} else {
			continue;
		}
		if (st != HV_OK) {
			return (st);
		}
		ended++;
	}
	if (ended == 0) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "referral %s has no open need", r->id));
	}
	return (HV_OK);
}

hv_status
ref_h_cancel(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__CancelReferralRequest *req = (const void *) msg;

	if (req->outcome != 0 &&
	    !pbenum_ok(&haven__referral__v1__outcome__descriptor, (int) req->outcome)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "unknown outcome %d",
		    (int) req->outcome));
	}
	return (run_edit(call, svc, req->id, cancel_fn, req, "reason", req->reason, true, reply));
}

/* ---- ReassignNeed ---------------------------------------------------------------------------- */

/* The need's open offer is withdrawn (that service is not offered it again) and the need is
 * routed again, or offered to the named service. */
static hv_status
reassign_fn(edit_job *j, Referral *r)
{
	const Haven__Referral__V1__ReassignNeedRequest *req = j->ej_req;
	ref_work                                       *w   = &j->ej_work;
	Need                                           *n   = NULL;
	hv_status                                       st;

	if ((st = need_in(w, r, req->need_index, ST(OFFERED) | ST(WAITING),
	         "only an offered or waiting need is reassigned", &n)) != HV_OK) {
		return (st);
	}
	if (n->state == NS(OFFERED)) {
		if ((st = ref_offer_withdraw(w, n, true)) != HV_OK ||
		    (st = move(j, r, n, NS(WAITING), "reassigned")) != HV_OK) {
			return (st);
		}
	} else if ((st = ref_note_event(w, r, n, j->ej_caller->org_id, "reassigned")) != HV_OK ||
	    (st = ref_event_text(w, r, j->ej_reason)) != HV_OK) {
		return (st);
	}
	if (req->service_id[0] != '\0') {
		return (ref_route_to(w, r, n, req->service_id));
	}
	return (route_one(w, r, n));
}

hv_status
ref_h_reassign(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__ReassignNeedRequest *req = (const void *) msg;

	if (req->service_id[0] != '\0' && !ids_valid(req->service_id)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "service_id is not an id"));
	}
	return (run_edit(call, svc, req->referral_id, reassign_fn, req, "reason", req->reason, true,
	    reply));
}

/* ---- UpdateReferral -------------------------------------------------------------------------- */

/* A new urgency: the waiting needs' index keys (urgency first) move with it. */
static hv_status
set_urgency(ref_work *w, Referral *r, Haven__Referral__V1__Urgency urgency)
{
	uint8_t   key[REF_KEY_MAX];
	hv_status st;

	/* Pass 0 removes the keys under the old urgency, pass 1 puts them under the new one. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < r->n_needs; i++) {
			size_t kl;

			if (r->needs[i]->state != NS(WAITING)) {
				continue;
			}
			kl = ref_key_waiting(key, r, (uint32_t) i);
			st = pass == 0 ? store_del(w->w_txn, w->w_rs->rs_waiting, key, kl)
			               : store_put(w->w_txn, w->w_rs->rs_waiting, key, kl, "", 0);
			if (st != HV_OK) {
				return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
			}
		}
		if (pass == 0) {
			r->urgency = urgency;
		}
	}
	return (HV_OK);
}

/* Whether the service of an offer or placement lies in a region of mask. */
static hv_status
in_regions(ref_work *w, const Need *n, uint64_t mask, bool *yes)
{
	Haven__Capacity__V1__Service *svc = NULL;
	int                           region;
	hv_status                     st;

	*yes = false;
	if ((st = cap_get_service(w->w_rs->rs_cap, w->w_txn, n->service_id, &svc)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_OK : st); /* a removed service is in no region */
	}
	region = region_map_find(w->w_rs->rs_regions, svc->service_area);
	*yes   = region >= 0 && region < 64 && (mask & ((uint64_t) 1 << region)) != 0;
	haven__capacity__v1__service__free_unpacked(svc, NULL);
	return (HV_OK);
}

/* Newly excluded regions: an open offer there is withdrawn (its hold released) and the need
 * waits to be routed elsewhere; a placement there stays (the person is there) and gets an
 * event, so that the coordinator sees it. */
static hv_status
exclude_offers(edit_job *j, Referral *r, uint64_t excluded)
{
	ref_work *w = &j->ej_work;
	bool      there;
	hv_status st;

	for (size_t i = 0; i < r->n_needs; i++) {
		Need *n = r->needs[i];

		if (n->state != NS(OFFERED) && n->state != NS(ACCEPTED) && n->state != NS(PLACED)) {
			continue;
		}
		if ((st = in_regions(w, n, excluded, &there)) != HV_OK) {
			return (st);
		}
		if (!there) {
			continue;
		}
		if (n->state != NS(OFFERED)) {
			st = ref_note_event(w, r, n, j->ej_caller->org_id,
			    "placed in an excluded region");
		} else if ((st = ref_offer_withdraw(w, n, false)) == HV_OK) {
			st = move(j, r, n, NS(WAITING), "region excluded");
		}
		if (st != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

/* The new region lists (checked against the map with the lists not replaced). */
static hv_status
set_regions(edit_job *j, Referral *r, const UpdateReferralRequest *req)
{
	ref_work *w    = &j->ej_work;
	char    **excl = req->set_excluded_regions ? req->excluded_regions : r->excluded_regions;
	size_t    nex = req->set_excluded_regions ? req->n_excluded_regions : r->n_excluded_regions;
	char    **pref = req->set_preferred_regions ? req->preferred_regions : r->preferred_regions;
	size_t npr = req->set_preferred_regions ? req->n_preferred_regions : r->n_preferred_regions;
	uint64_t  old_ex, old_pr, new_ex, new_pr;
	hv_status st;

	if ((st = ref_check_regions(w->w_rs, r->excluded_regions, r->n_excluded_regions,
	         r->preferred_regions, r->n_preferred_regions, &old_ex, &old_pr, w->w_err,
	         sizeof(w->w_err))) != HV_OK) {
		old_ex = 0; /* a stored list the map no longer knows: every exclusion is new */
	}
	if ((st = ref_check_regions(w->w_rs, excl, nex, pref, npr, &new_ex, &new_pr, w->w_err,
	         sizeof(w->w_err))) != HV_OK) {
		return (st);
	}
	w->w_err[0]            = '\0';
	r->excluded_regions    = excl;
	r->n_excluded_regions  = nex;
	r->preferred_regions   = pref;
	r->n_preferred_regions = npr;
	return ((new_ex & ~old_ex) != 0 ? exclude_offers(j, r, new_ex & ~old_ex) : HV_OK);
}

/* Appends the requested needs, WAITING (routed with the others at the end). */
static hv_status
add_needs(edit_job *j, Referral *r, const UpdateReferralRequest *req)
{
	ref_work *w = &j->ej_work;
	Need    **needs;
	hv_status st;

	if (r->n_needs + req->n_add_needs > REF_NEEDS_MAX) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "a referral has at most %d needs",
		    REF_NEEDS_MAX));
	}
	if ((needs = arena_alloc(w->w_arena, (r->n_needs + req->n_add_needs) * sizeof(*needs))) ==
	    NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	memcpy(needs, r->needs, r->n_needs * sizeof(*needs));
	r->needs = needs;
	for (size_t i = 0; i < req->n_add_needs; i++) {
		const Haven__Referral__V1__NeedRequest *q = req->add_needs[i];
		Need                                   *n = arena_alloc(w->w_arena, sizeof(*n));

		if (n == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		haven__referral__v1__need__init(n);
		n->index               = (uint32_t) r->n_needs;
		n->type                = q->type;
		n->population          = q->population;
		n->n_languages         = q->n_languages;
		n->languages           = q->languages;
		n->n_accessibility     = q->n_accessibility;
		n->accessibility       = q->accessibility;
		r->needs[r->n_needs++] = n;
		if ((st = move(j, r, n, NS(WAITING), "need added")) != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

/* An event on every open need naming what changed (the reason's text on each). */
static hv_status
note_update(edit_job *j, Referral *r, const char *what)
{
	char      code[96];
	hv_status st;

	snprintf(code, sizeof(code), "updated: %s", what);
	for (size_t i = 0; i < r->n_needs; i++) {
		Need *n = r->needs[i];

		if (!ref_need_open(n)) {
			continue;
		}
		if ((st = ref_note_event(&j->ej_work, r, n, j->ej_caller->org_id, code)) != HV_OK ||
		    (st = ref_event_text(&j->ej_work, r, j->ej_reason)) != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

static hv_status
update_fn(edit_job *j, Referral *r)
{
	const UpdateReferralRequest *req      = j->ej_req;
	ref_work                    *w        = &j->ej_work;
	char                         what[96] = "";
	hv_status                    st;

	if (ref_referral_closed(r)) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "referral %s is closed", r->id));
	}
	for (size_t i = 0; i < req->n_cancel_needs; i++) {
		Need *n = NULL;

		if ((st = need_in(w, r, req->cancel_needs[i], ROUTING,
		         "only a need still being routed is cancelled (end a placement instead)",
		         &n)) != HV_OK ||
		    (st = cancel_need(j, r, n)) != HV_OK) {
			return (st);
		}
	}
	if (req->urgency != 0 && req->urgency != r->urgency) {
		if ((st = set_urgency(w, r, req->urgency)) != HV_OK) {
			return (st);
		}
		strcat(what, "urgency ");
	}
	if (req->set_excluded_regions || req->set_preferred_regions) {
		if ((st = set_regions(j, r, req)) != HV_OK) {
			return (st);
		}
		strcat(what, "regions ");
	}
	if (req->set_note) {
		if ((st = ref_text_seal(w, r->subject, r->id, "note", -1, req->note,
		         &r->sealed_note)) != HV_OK) {
			return (st);
		}
		strcat(what, "note ");
	}
	if (what[0] != '\0') {
		what[strlen(what) - 1] = '\0';
		ref_mark_dirty(w, r);
		if ((st = note_update(j, r, what)) != HV_OK) {
			return (st);
		}
	}
	if ((st = add_needs(j, r, req)) != HV_OK) {
		return (st);
	}
	return (route_waiting(w, r));
}

hv_status
ref_h_update(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const UpdateReferralRequest *req = (const void *) msg;
	char                         err[REF_ERR_MAX];
	hv_status                    st;

	/* ref_check_update checks the reason with the rest. */
	if ((st = ref_check_update(req, err, sizeof(err))) != HV_OK) {
		return (rpc_call_error(call, st, "%s", err));
	}
	return (run_edit(call, svc, req->id, update_fn, req, NULL, req->reason, false, reply));
}

/* ---- PauseNeed, ResumeNeed ------------------------------------------------------------------- */

/* A WAITING or OFFERED need goes ON_HOLD with a coded reason: its offer is withdrawn (the hold
 * released, the service not excluded for later) and it is not routed until resumed. */
static hv_status
pause_fn(edit_job *j, Referral *r)
{
	const Haven__Referral__V1__PauseNeedRequest *req = j->ej_req;
	ref_work                                    *w   = &j->ej_work;
	Need                                        *n   = NULL;
	char                                         code[64], b[48];
	hv_status                                    st;

	if ((st = need_in(w, r, req->need_index, ST(WAITING) | ST(OFFERED),
	         "only a waiting or offered need is paused", &n)) != HV_OK) {
		return (st);
	}
	if (n->state == NS(OFFERED) && (st = ref_offer_withdraw(w, n, false)) != HV_OK) {
		return (st);
	}
	snprintf(code, sizeof(code), "paused: %s",
	    ref_enum_buf(&haven__referral__v1__hold_reason__descriptor, (int) req->reason, b));
	n->hold_reason = req->reason;
	return (move(j, r, n, NS(ON_HOLD), code));
}

static hv_status
resume_fn(edit_job *j, Referral *r)
{
	const Haven__Referral__V1__ResumeNeedRequest *req = j->ej_req;
	ref_work                                     *w   = &j->ej_work;
	Need                                         *n   = NULL;
	hv_status                                     st;

	if ((st = need_in(w, r, req->need_index, ST(ON_HOLD), "only a paused need is resumed",
	         &n)) != HV_OK) {
		return (st);
	}
	n->hold_reason = 0;
	if ((st = move(j, r, n, NS(WAITING), "resumed")) != HV_OK) {
		return (st);
	}
	return (route_one(w, r, n));
}

hv_status
ref_h_pause(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__PauseNeedRequest *req = (const void *) msg;
	bool      other = req->reason == HAVEN__REFERRAL__V1__HOLD_REASON__HOLD_OTHER;
	char      err[REF_ERR_MAX];
	hv_status st;

	if (!pbenum_ok(&haven__referral__v1__hold_reason__descriptor, (int) req->reason)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "a pause needs a reason: client-unavailable, client-undecided, safety-review, "
		    "awaiting-documents or hold-other"));
	}
	/* With reason hold-other the text says what the reason is, and the error says so. */
	if ((st = ref_check_text("text", req->text, other, err, sizeof(err))) != HV_OK) {
		return (rpc_call_error(call, st, "%s%s", err,
		    other ? " (with reason hold-other)" : ""));
	}
	return (
	    run_edit(call, svc, req->referral_id, pause_fn, req, NULL, req->text, false, reply));
}

hv_status
ref_h_resume(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__ResumeNeedRequest *req = (const void *) msg;

	return (
	    run_edit(call, svc, req->referral_id, resume_fn, req, "text", req->text, false, reply));
}
