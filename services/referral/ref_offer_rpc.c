/*
 * ref_offer_rpc.c - the provider's side of haven.referral.v1.Referrals: acknowledging,
 * accepting and declining an offer, and marking, completing and ending the placement that
 * follows, each as one write transaction on the offer, its need and its place.
 */
#include "ref_internal.h"

#include "haven/pbenum.h"
#include "ref_rpc.h"

#include <stdio.h>
#include <string.h>

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
	return (ref_may_see(w->w_rs, w->w_txn, c, r, ok));
}

/* After a decline: not eligible, unsafe or another reason keep the service from this need
 * for good; no room sets the service's free places to none instead (cap_no_room), so that the
 * need may be offered there again once the provider reports room. */
static hv_status
decline_keeps_out(ref_work *w, Need *n, const Offer *o)
{
	hv_status st;

	if (o->decline_reason != HAVEN__REFERRAL__V1__DECLINE_REASON__NO_CAPACITY) {
		return (
		    ref_list_add(w, &n->declined_services, &n->n_declined_services, o->service_id));
	}
	if ((st = cap_no_room(w->w_rs->rs_cap, w->w_txn, o->service_id)) != HV_OK) {
		return (ref_fail(w, st == HV_NOT_FOUND ? HV_DATA_LOSS : st,
		    "cannot correct the figure of service %s", o->service_id));
	}
	return (ref_work_changed(w, o->service_id, (int) o->type, false));
}

/* An OPEN offer within its respond-by time, or why not. */
static hv_status
offer_answerable(ref_work *w, const Offer *o)
{
	char b[48], t[32];

	if (o->state == OS(OFFER_EXPIRED) ||
	    (o->state == OS(OFFER_OPEN) && w->w_now >= (int64_t) o->respond_by_ms)) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s expired at %s", o->id,
		    ref_iso_time(o->respond_by_ms, t)));
	}
	if (o->state != OS(OFFER_OPEN)) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s is %s, not open", o->id,
		    ref_enum_buf(&haven__referral__v1__offer_state__descriptor, (int) o->state,
		        b)));
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
	    r->id, ref_enum_buf(&haven__referral__v1__need_state__descriptor, (int) n->state, b),
	    what));
}

static hv_status
act_ack(offer_job *j, Offer *o, Referral *r, Need *n)
{
	ref_work *w = &j->oj_work;
	hv_status st;

	if ((st = offer_answerable(w, o)) != HV_OK) {
		return (st);
	}
	if (o->acknowledged_ms != 0) {
		return (HV_OK); /* said before: nothing changes */
	}
	o->acknowledged_ms = (uint64_t) w->w_now;
	if ((st = ref_put_offer(w, o)) != HV_OK) {
		return (st);
	}
	return (ref_note_event_for(w, REF_CAUSE_ACKNOWLEDGED, r, n, j->oj_caller->org_id,
	    "acknowledged"));
}

static hv_status
act_accept(offer_job *j, Offer *o, Referral *r, Need *n)
{
	ref_work *w = &j->oj_work;
	bool      consent;
	hv_status st;

	if ((st = offer_answerable(w, o)) != HV_OK) {
		return (st);
	}
	/* A withdrawal committed a moment ago, before its event ended the offer, still stops the
	 * acceptance: no one takes a person in on a consent that is gone. */
	if ((st = ref_consent_valid(w, r, &consent)) != HV_OK) {
		return (st);
	}
	if (!consent) {
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "no valid consent for referral %s any more: the offer is being withdrawn",
		    r->id));
	}
	/* The held place becomes the placement in the same transaction as the state. */
	o->need_state = NS(ACCEPTED);
	if ((st = ref_offer_end(w, o, OS(OFFER_ACCEPTED))) != HV_OK) {
		return (st);
	}
	return (ref_transition(w, r, n, NS(ACCEPTED), j->oj_caller->org_id, "accepted", o->id));
}

static hv_status
act_decline(offer_job *j, Offer *o, Referral *r, Need *n)
{
	ref_work      *w    = &j->oj_work;
	ref_route_item item = { r, n };
	char           reason[64], b[48];
	hv_status      st;

	if ((st = offer_answerable(w, o)) != HV_OK) {
		return (st);
	}
	ref_enum_buf(&haven__referral__v1__decline_reason__descriptor, j->oj_code, b);
	snprintf(reason, sizeof(reason), "declined: %s", b);
	o->decline_reason = (Haven__Referral__V1__DeclineReason) j->oj_code;
	if ((st = ref_text_seal(w, r->subject, o->id, "decline", -1, j->oj_text,
	         &o->sealed_decline_text)) != HV_OK ||
	    (st = ref_offer_end(w, o, OS(OFFER_DECLINED))) != HV_OK ||
	    (st = decline_keeps_out(w, n, o)) != HV_OK ||
	    (st = ref_transition_for(w, REF_CAUSE_DECLINED, r, n, NS(WAITING), j->oj_caller->org_id,
	         reason, o->id)) != HV_OK ||
	    (st = ref_event_text(w, r, j->oj_text)) != HV_OK) {
		return (st);
	}
	return (ref_route(w, &item, 1));
}

static hv_status
act_placed(offer_job *j, Offer *o, Referral *r, Need *n)
{
	ref_work *w = &j->oj_work;
	hv_status st;

	if (o->state != OS(OFFER_ACCEPTED) || strcmp(n->offer_id, o->id) != 0) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s was not accepted", o->id));
	}
	if ((st = need_is(w, r, n, NS(ACCEPTED), NS(ACCEPTED),
	         "only an accepted need is placed")) != HV_OK ||
	    (st = ref_transition(w, r, n, NS(PLACED), j->oj_caller->org_id, "placed", o->id)) !=
	        HV_OK) {
		return (st);
	}
	o->need_state = n->state;
	return (ref_put_offer(w, o));
}

/* CompletePlacement and EndPlacement: the need reaches its final state and the place comes
 * back (ref_placement_end). */
static hv_status
act_close(offer_job *j, Offer *o, Referral *r, Need *n)
{
	ref_work *w = &j->oj_work;
	hv_status st;

	if (o->state != OS(OFFER_ACCEPTED) || strcmp(n->offer_id, o->id) != 0) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s was not accepted", o->id));
	}
	if (j->oj_act == ACT_COMPLETE) {
		if ((st = need_is(w, r, n, NS(PLACED), NS(PLACED),
		         "only a placed need is completed (mark it placed first)")) != HV_OK) {
			return (st);
		}
		return (ref_placement_end(w, r, n, o, j->oj_caller->org_id, 0, NULL));
	}
	if ((st = need_is(w, r, n, NS(ACCEPTED), NS(PLACED),
	         "only an accepted or placed need is ended")) != HV_OK) {
		return (st);
	}
	return (ref_placement_end(w, r, n, o, j->oj_caller->org_id, j->oj_code, j->oj_text));
}

static hv_status
offer_fn(store_txn *txn, void *arg)
{
	static hv_status (*const acts[])(offer_job *, Offer *, Referral *, Need *) = {
		[ACT_ACK]      = act_ack,
		[ACT_ACCEPT]   = act_accept,
		[ACT_DECLINE]  = act_decline,
		[ACT_PLACED]   = act_placed,
		[ACT_COMPLETE] = act_close,
		[ACT_END]      = act_close,
	};
	offer_job        *j = arg;
	ref_work         *w = &j->oj_work;
	const rpc_caller *c = j->oj_caller;
	Offer            *o;
	Referral         *r;
	bool              ok;
	hv_status         st;

	ref_work_begin(w, txn);
	j->oj_result = NULL;
	if ((st = ref_load_offer(w, j->oj_offer, &o)) != HV_OK) {
		/* Refused in the words of another provider's offer: no oracle for offer ids. */
		return (st == HV_NOT_FOUND && !ref_sees_all(c)
		        ? ref_fail(w, HV_PERMISSION_DENIED, "offer %s belongs to another provider",
		              ref_shown_id(j->oj_offer))
		        : st == HV_NOT_FOUND
		        ? ref_fail(w, st, "no offer %s", ref_shown_id(j->oj_offer))
		        : ref_fail(w, st, "cannot read offer %s", ref_shown_id(j->oj_offer)));
	}
	if ((st = ref_load(w, o->referral_id, &r)) != HV_OK || o->need_index >= r->n_needs) {
		return (st == HV_OK || st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
	}
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
	if ((st = acts[j->oj_act](j, o, r, r->needs[o->need_index])) != HV_OK ||
	    (st = ref_work_flush(w)) != HV_OK) {
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
		st = ref_rpc_error(call, &j->oj_work, st);
		goto out;
	}
	ref_work_publish(&j->oj_work);
	*reply = &j->oj_result->base;
out:
	ref_work_free(&j->oj_work);
	return (st);
}

hv_status
ref_h_ack(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__OfferActionRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_ACK, .oj_offer = req->offer_id };

	return (run_offer_job(call, svc, &j, reply));
}

hv_status
ref_h_accept(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__OfferActionRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_ACCEPT, .oj_offer = req->offer_id };

	return (run_offer_job(call, svc, &j, reply));
}

hv_status
ref_h_decline(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__OfferActionRequest *req = (const void *) msg;
	offer_job                                      j   = { .oj_act = ACT_DECLINE,
		                                       .oj_offer       = req->offer_id,
		                                       .oj_code        = (int) req->decline_reason,
		                                       .oj_text        = req->text };
	char                                           err[REF_ERR_MAX];
	hv_status                                      st;

	if (!pbenum_ok(&haven__referral__v1__decline_reason__descriptor, j.oj_code)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "a decline needs a reason: no-capacity, not-eligible, unsafe or "
		    "decline-other"));
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

hv_status
ref_h_placed(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__PlacementRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_PLACED, .oj_offer = req->offer_id };

	return (run_offer_job(call, svc, &j, reply));
}

hv_status
ref_h_complete(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__PlacementRequest *req = (const void *) msg;
	offer_job j = { .oj_act = ACT_COMPLETE, .oj_offer = req->offer_id };

	return (run_offer_job(call, svc, &j, reply));
}

hv_status
ref_h_end(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__PlacementRequest *req = (const void *) msg;
	offer_job                                    j   = { .oj_act = ACT_END,
		                                     .oj_offer       = req->offer_id,
		                                     .oj_code        = (int) req->outcome,
		                                     .oj_text        = req->text };
	char                                         err[REF_ERR_MAX];
	hv_status                                    st;

	if (!pbenum_ok(&haven__referral__v1__outcome__descriptor, j.oj_code)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "ending a placement needs an outcome: client-refused, no-longer-needed, "
		    "unable-to-contact-client, unable-to-contact-provider or outcome-other"));
	}
	if ((st = ref_check_text("text", req->text,
	         j.oj_code == HAVEN__REFERRAL__V1__OUTCOME__OUTCOME_OTHER, err, sizeof(err))) !=
	    HV_OK) {
		return (rpc_call_error(call, st, "%s%s", err,
		    j.oj_code == HAVEN__REFERRAL__V1__OUTCOME__OUTCOME_OTHER
		        ? " (with outcome-other)"
		        : ""));
	}
	return (run_offer_job(call, svc, &j, reply));
}
