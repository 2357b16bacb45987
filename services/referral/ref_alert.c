/*
 * ref_alert.c - which events of a referral need a person, for the alerts service: each state
 * change of a need (and the events that change none: an acknowledgement, a consent withdrawn)
 * is turned here into an alert or a timer, inside the event's own write transaction
 * (alerts_enqueue, alerts_timer_set). Only kinds, urgencies, times and ids go to the alerts
 * service: never the subject, the note or a reason's free text. Which event it is comes from
 * the work's cause (ref_cause, set by the code that records it), never from the reason text.
 *
 *   OFFERED            the provider: a new offer (respond by); a timer warns it when three
 *                      quarters of the window passed; an immediate offer not acknowledged
 *                      within escalate_after_s alerts it again (its on-call address too) and
 *                      the home region's coordinators
 *   ACCEPTED, PLACED   the referrer
 *   -> WAITING         the referrer, when a provider declined or let the offer expire; a
 *                      timer tells it that the need waits, and once unmet_after_s passed
 *                      tells it again with the home region's coordinators
 *   consent withdrawn  the provider that accepted or placed a need, and once per referral
 *                      the referrer; when no consent covers the referral any more (withdrawn,
 *                      erased, or found expired while routing: ref_end_for_consent) also the
 *                      provider whose open offer is withdrawn (OFFERED -> CANCELLED)
 * Leaving OFFERED ends the offer's timers, leaving WAITING the need's, an acknowledgement the
 * escalation.
 */
#include "ref_internal.h"

#include "alerts.h"

#include <stdio.h>
#include <string.h>

static void
timer_key(char *out, size_t outsz, const char *what, const Referral *r, const Need *n)
{
	snprintf(out, outsz, "%s/%s/%u", what, r->id, (unsigned) n->index);
}

static hv_status
offered(ref_work *w, alerts_service *as, Referral *r, const Need *n, const char *offer_id)
{
	uint64_t     window = (uint64_t) ref_window_s(w->w_rs, (int) r->urgency) * 1000;
	uint64_t     now    = (uint64_t) w->w_now;
	alerts_event ev     = { .ae_kind = ALERT(OFFER_NEW),
		    .ae_urgency          = (int) r->urgency,
		    .ae_respond_by_ms    = now + window,
		    .ae_target           = offer_id,
		    .ae_orgs             = { n->provider_org },
		    .ae_norgs            = 1 };
	char         key[128];
	hv_status    st;

	if ((st = alerts_enqueue(as, w->w_txn, &ev)) != HV_OK) {
		return (st);
	}
	ev.ae_kind = ALERT(OFFER_EXPIRING);
	timer_key(key, sizeof(key), "exp", r, n);
	if ((st = alerts_timer_set(as, w->w_txn, key, now + window * 3 / 4, &ev)) != HV_OK) {
		return (st);
	}
	if (r->urgency != HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE ||
	    alerts_escalate_ms(as) >= window) {
		return (HV_OK);
	}
	ev.ae_kind   = ALERT(OFFER_UNACKNOWLEDGED);
	ev.ae_region = r->home_region;
	timer_key(key, sizeof(key), "esc", r, n);
	return (alerts_timer_set(as, w->w_txn, key, now + alerts_escalate_ms(as), &ev));
}

/* A consent's end as an alert kind: an expiry is told apart (a consent can be given again). */
static alerts_kind
consent_kind(ref_cause cause)
{
	return (
	    cause == REF_CAUSE_CONSENT_EXPIRED ? ALERT(CONSENT_EXPIRED) : ALERT(CONSENT_WITHDRAWN));
}

static hv_status
to_referrer(ref_work *w, alerts_service *as, Referral *r, alerts_kind kind)
{
	alerts_event ev = { .ae_kind = kind,
		.ae_urgency          = (int) r->urgency,
		.ae_target           = r->id,
		.ae_orgs             = { r->referrer_org },
		.ae_norgs            = 1 };

	return (alerts_enqueue(as, w->w_txn, &ev));
}

hv_status
ref_alert(ref_work *w, Referral *r, const Need *n, NeedState from, NeedState to, ref_cause cause,
    const char *offer_id)
{
	alerts_service *as = w->w_rs->rs_alerts;
	char            key[128];
	hv_status       st = HV_OK;

	if (as == NULL) {
		return (HV_OK);
	}
	if (from == NS(OFFERED) && to != NS(OFFERED)) {
		timer_key(key, sizeof(key), "exp", r, n);
		if ((st = alerts_timer_cancel(as, w->w_txn, key)) != HV_OK) {
			return (st);
		}
	}
	if ((from == NS(OFFERED) && to != NS(OFFERED)) ||
	    (from == to && cause == REF_CAUSE_ACKNOWLEDGED)) {
		timer_key(key, sizeof(key), "esc", r, n);
		if ((st = alerts_timer_cancel(as, w->w_txn, key)) != HV_OK) {
			return (st);
		}
	}
	if (from == NS(WAITING) && to != NS(WAITING)) {
		timer_key(key, sizeof(key), "wait", r, n);
		if ((st = alerts_timer_cancel(as, w->w_txn, key)) != HV_OK) {
			return (st);
		}
	}
	if (to == NS(OFFERED) && from != NS(OFFERED)) {
		return (offered(w, as, r, n, offer_id));
	}
	if (to == NS(ACCEPTED) && from != NS(ACCEPTED)) {
		return (to_referrer(w, as, r, ALERT(NEED_ACCEPTED)));
	}
	if (to == NS(PLACED) && from != NS(PLACED)) {
		return (to_referrer(w, as, r, ALERT(NEED_PLACED)));
	}
	if (to == NS(WAITING) && from != NS(WAITING)) {
		alerts_event ev = { .ae_kind = ALERT(NEED_WAITING),
			.ae_urgency          = (int) r->urgency,
			.ae_target           = r->id,
			.ae_orgs             = { r->referrer_org },
			.ae_norgs            = 1,
			.ae_region           = r->home_region };

		if (cause == REF_CAUSE_DECLINED) {
			st = to_referrer(w, as, r, ALERT(NEED_DECLINED));
		} else if (cause == REF_CAUSE_OFFER_EXPIRED) {
			st = to_referrer(w, as, r, ALERT(NEED_EXPIRED));
		}
		/* A timer, not an alert: routing in this same transaction may offer the need at
		 * once, and then the timer is gone before it fires. */
		timer_key(key, sizeof(key), "wait", r, n);
		return (st != HV_OK
		        ? st
		        : alerts_timer_set(as, w->w_txn, key, (uint64_t) w->w_now, &ev));
	}
	/* The open offer withdrawn for want of consent: the person is not coming. */
	if (from == NS(OFFERED) && to == NS(CANCELLED) && ref_cause_consent(cause)) {
		alerts_event ev = { .ae_kind = consent_kind(cause),
			.ae_urgency          = (int) r->urgency,
			.ae_target           = offer_id,
			.ae_orgs             = { n->provider_org },
			.ae_norgs            = 1 };

		return (alerts_enqueue(as, w->w_txn, &ev));
	}
	if (from == to && ref_cause_consent(cause) && (to == NS(ACCEPTED) || to == NS(PLACED))) {
		alerts_event ev = { .ae_kind = consent_kind(cause),
			.ae_urgency          = (int) r->urgency,
			.ae_orgs             = { n->provider_org },
			.ae_norgs            = 1 };

		return (alerts_enqueue(as, w->w_txn, &ev));
	}
	return (HV_OK);
}

hv_status
ref_alert_consent_withdrawn(ref_work *w, Referral *r, ref_cause cause)
{
	alerts_service *as = w->w_rs->rs_alerts;

	return (as != NULL ? to_referrer(w, as, r, consent_kind(cause)) : HV_OK);
}
