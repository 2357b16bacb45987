/*
 * ref_need.c - the state machine of a need: transitions with their events (and the alert or
 * timer each makes, ref_alert.c), the closed-referral index, the end of an offer with its
 * hold, the end of a placement with its place, and what happens to a referral once its
 * consent is gone. All inside the caller's write transaction (ref_work). Routing
 * (ref_route.c) builds on it; nothing here routes.
 */
#include "ref_internal.h"

#include "haven/pbenum.h"

#include <stdio.h>
#include <string.h>

/* ---- events ---------------------------------------------------------------------------------- */

static char *
dup(ref_work *w, const char *s)
{
	return (arena_strdup(w->w_arena, s != NULL ? s : ""));
}

static hv_status
append_event(ref_work *w, Referral *r, const Need *n, NeedState from, NeedState to,
    const char *actor, const char *reason, const char *offer_id)
{
	Event    *e;
	Event   **events;
	hv_status st;

	if ((e = arena_alloc(w->w_arena, sizeof(*e))) == NULL ||
	    (events = arena_alloc(w->w_arena, (r->n_events + 1) * sizeof(*events))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__referral__v1__event__init(e);
	e->time_ms    = (uint64_t) w->w_now;
	e->need_index = n->index;
	e->from       = from;
	e->to         = to;
	if ((e->actor_org = dup(w, actor)) == NULL || (e->reason = dup(w, reason)) == NULL ||
	    (e->offer_id = dup(w, offer_id)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (r->n_events > 0) {
		memcpy(events, r->events, r->n_events * sizeof(*events));
	}
	events[r->n_events++] = e;
	r->events             = events;
	r->version++;
	if ((st = ref_alert(w, r, n, from, to, w->w_cause, offer_id)) != HV_OK) { /* ref_alert.c */
		return (st);
	}
	return (ref_work_note(w, r, n->index, to));
}

hv_status
ref_transition(ref_work *w, Referral *r, Need *n, NeedState to, const char *actor,
    const char *reason, const char *offer_id)
{
	ref_service *rs   = w->w_rs;
	NeedState    from = n->state;
	uint8_t      key[REF_KEY_MAX];
	size_t       kl;
	hv_status    st;

	if (from == NS(WAITING) && to != NS(WAITING)) {
		kl = ref_key_waiting(key, r, n->index);
		if ((st = store_del(w->w_txn, rs->rs_waiting, key, kl)) != HV_OK) {
			/* The index is exact (referral.h): a need waiting without its entry is
			 * damage. */
			return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
		}
	}
	if (to == NS(WAITING) && from != NS(WAITING)) {
		kl = ref_key_waiting(key, r, n->index);
		if ((st = store_put(w->w_txn, rs->rs_waiting, key, kl, "", 0)) != HV_OK) {
			return (st);
		}
		n->waiting_since_ms = (uint64_t) w->w_now;
	}
	if (to == NS(PLACED)) {
		n->placed_ms = (uint64_t) w->w_now;
	}
	n->state = to;
	if ((st = ref_closed_update(w, r)) != HV_OK) {
		return (st);
	}
	return (append_event(w, r, n, from, to, actor, reason, offer_id));
}

/* ---- closed referrals ------------------------------------------------------------------------ */

bool
ref_need_final(const Need *n)
{
	return (n->state == NS(COMPLETED) || n->state == NS(CANCELLED) || n->state == NS(FAILED));
}

bool
ref_referral_closed(const Referral *r)
{
	if (r->n_needs == 0) {
		return (false);
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		if (!ref_need_final(r->needs[i])) {
			return (false);
		}
	}
	return (true);
}

hv_status
ref_closed_update(ref_work *w, Referral *r)
{
	ref_service *rs     = w->w_rs;
	bool         closed = ref_referral_closed(r);
	uint8_t      key[REF_KEY_MAX];
	hv_status    st;

	if (closed && r->closed_ms == 0) {
		r->closed_ms = (uint64_t) w->w_now;
		if (r->subject_erased_ms == 0 &&
		    (st = store_put(w->w_txn, rs->rs_closed, key,
		         ref_key_closed(key, r->closed_ms, r->id), "", 0)) != HV_OK) {
			return (st);
		}
	} else if (!closed && r->closed_ms != 0) {
		/* No transition leaves a final state today; should one ever, the referral is open
		 * again and retention must not count from its old closure. */
		st = store_del(w->w_txn, rs->rs_closed, key,
		    ref_key_closed(key, r->closed_ms, r->id));
		if (st != HV_OK && st != HV_NOT_FOUND) {
			return (st);
		}
		r->closed_ms = 0;
	}
	return (HV_OK);
}

hv_status
ref_note_event(ref_work *w, Referral *r, Need *n, const char *actor, const char *reason)
{
	return (append_event(w, r, n, n->state, n->state, actor, reason, n->offer_id));
}

/* ---- offers ---------------------------------------------------------------------------------- */

hv_status
ref_list_add(ref_work *w, char ***list, size_t *n, char *s)
{
	char **p = arena_alloc(w->w_arena, (*n + 1) * sizeof(char *));

	if (p == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (*n > 0) {
		memcpy(p, *list, *n * sizeof(char *));
	}
	p[(*n)++] = s;
	*list     = p;
	return (HV_OK);
}

hv_status
ref_consent_valid(ref_work *w, const Referral *r, bool *ok)
{
	static const rpc_caller node = { .role = RPC_ROLE_OPERATOR,
		.org_id                        = "",
		.transport                     = RPC_TRANSPORT_INPROC };
	ref_service            *rs   = w->w_rs;
	hv_status               st;

	*ok = false;
	if (rs->rs_consent == NULL) {
		return (HV_OK); /* no consent service: nothing is shared */
	}
	st = rs->rs_consent(rs->rs_consent_arg, w->w_txn, &node, REF_METHOD_ROUTE, r->subject,
	    PURPOSE_REFERRAL, "", false, ok);
	if (st == HV_NOT_FOUND) {
		*ok = false;
		return (HV_OK);
	}
	return (st == HV_OK ? HV_OK
	                    : ref_fail(w, st, "the consent check for subject %s failed: %s",
	                          r->subject, hv_status_name(st)));
}

hv_status
ref_end_for_consent(ref_work *w, Referral *r, const char *reason, ref_cause cause)
{
	bool      changed = false;
	hv_status st;

	for (size_t i = 0; i < r->n_needs; i++) {
		Need *n = r->needs[i];

		if (ref_need_routing(n)) {
			if (n->state == NS(OFFERED) &&
			    (st = ref_offer_withdraw(w, n, false)) != HV_OK) {
				return (st);
			}
			if ((st = ref_transition_for(w, cause, r, n, NS(CANCELLED), "", reason,
			         n->offer_id)) != HV_OK) {
				return (st);
			}
		} else if (!ref_need_open(n)) {
			continue;
		} else if ((st = ref_note_event_for(w, cause, r, n, "", reason)) != HV_OK) {
			return (st);
		}
		changed = true;
	}
	/* Both sides hear of it: the providers through their needs' events, the referrer once. */
	if (changed && ref_cause_consent(cause)) {
		return (ref_alert_consent_withdrawn(w, r, cause));
	}
	return (HV_OK);
}

hv_status
ref_offer_withdraw(ref_work *w, Need *n, bool decline_service)
{
	Offer    *o;
	hv_status st;

	if ((st = ref_load_offer(w, n->offer_id, &o)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
	}
	if ((st = ref_offer_end(w, o, OS(OFFER_WITHDRAWN))) != HV_OK) {
		return (st);
	}
	if (decline_service) {
		return (
		    ref_list_add(w, &n->declined_services, &n->n_declined_services, o->service_id));
	}
	return (HV_OK);
}

hv_status
ref_offer_end(ref_work *w, Offer *o, OfferState to)
{
	ref_service *rs = w->w_rs;
	uint8_t      key[REF_KEY_MAX];
	bool         freed = false;
	hv_status    st;

	if (o->state != OS(OFFER_OPEN)) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "offer %s is not open", o->id));
	}
	if (to == OS(OFFER_ACCEPTED)) {
		st = cap_hold_confirm(rs->rs_cap, w->w_txn, o->hold_id);
		if (st == HV_NOT_FOUND) {
			return (ref_fail(w, HV_FAILED_PRECONDITION,
			    "the place held for offer %s was released", o->id));
		}
	} else {
		/* A hold that capacity already expired (its ttl passed while this service was
		 * down) has given its place back: nothing more to release. */
		st    = cap_hold_release(rs->rs_cap, w->w_txn, o->hold_id);
		freed = st == HV_OK;
		if (st == HV_NOT_FOUND) {
			st = HV_OK;
		}
	}
	if (st != HV_OK) {
		return (ref_fail(w, st, "cannot end the hold of offer %s", o->id));
	}
	if ((st = ref_work_changed(w, o->service_id, (int) o->type, freed)) != HV_OK) {
		return (st);
	}
	st = store_del(w->w_txn, rs->rs_deadlines, key,
	    ref_key_deadline(key, o->respond_by_ms, o->id));
	if (st != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	o->state = to;
	return (ref_put_offer(w, o));
}

/* ---- placements ------------------------------------------------------------------------------ */

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

hv_status
ref_placement_end(ref_work *w, Referral *r, Need *n, Offer *o, const char *actor, int outcome,
    const char *text)
{
	char      reason[64], b[48];
	hv_status st;

	if (outcome == 0) {
		st = ref_transition(w, r, n, NS(COMPLETED), actor, "completed", o->id);
	} else {
		pbenum_name(&haven__referral__v1__outcome__descriptor, NULL, outcome, b, sizeof(b));
		snprintf(reason, sizeof(reason), "ended: %s", b);
		if ((st = ref_transition(w, r, n, NS(FAILED), actor, reason, o->id)) == HV_OK) {
			st = ref_event_text(w, r, text);
		}
	}
	/* The placement's place comes back: waiting needs may take it at once. */
	if (st != HV_OK || (st = release_place(w, o)) != HV_OK) {
		return (st);
	}
	o->need_state = n->state;
	return (ref_put_offer(w, o));
}

hv_status
ref_transition_for(ref_work *w, ref_cause cause, Referral *r, Need *n, NeedState to,
    const char *actor, const char *reason, const char *offer_id)
{
	hv_status st;

	w->w_cause = cause;
	st         = ref_transition(w, r, n, to, actor, reason, offer_id);
	w->w_cause = REF_CAUSE_NONE; /* routing after it records events of no cause */
	return (st);
}

hv_status
ref_note_event_for(ref_work *w, ref_cause cause, Referral *r, Need *n, const char *actor,
    const char *reason)
{
	hv_status st;

	w->w_cause = cause;
	st         = ref_note_event(w, r, n, actor, reason);
	w->w_cause = REF_CAUSE_NONE;
	return (st);
}
