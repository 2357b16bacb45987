/*
 * alerts.c - the bottom of the alerts service: key layouts, the names of kinds, urgencies and
 * channels, the clock, the outbox (alerts_enqueue, in the caller's write transaction) and the
 * timers that turn into alerts (an offer about to expire, an immediate offer not acknowledged,
 * a need waiting unmet). The sender's rounds (alerts_round.c), the senders (alerts_send.c)
 * and the RPC handlers (alerts_rpc.c) build on it; opening the service and the sender thread
 * are in alerts_open.c, at the top.
 */
#include "alerts_internal.h"

#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys ----------------------------------------------------------------------------- */

size_t
alerts_key_be64(uint8_t *key, uint64_t v)
{
	hv_put_be64(key, v);
	return (8);
}

size_t
alerts_key_org(uint8_t key[ALERTS_KEY_MAX], const char *org, uint64_t seq)
{
	size_t n = strlen(org);

	memcpy(key, org, n);
	key[n] = 0;
	hv_put_be64(key + n + 1, seq);
	return (n + 9);
}

size_t
alerts_key_timed(uint8_t key[ALERTS_KEY_MAX], uint64_t v, const char *s)
{
	size_t n = strlen(s);

	hv_put_be64(key, v);
	memcpy(key + 8, s, n);
	return (n + 8);
}

/* ---- names ------------------------------------------------------------------------------ */

const char *
alerts_kind_name(alerts_kind k)
{
	switch (k) {
	case ALERT(OFFER_NEW):
		return ("offer.new");
	case ALERT(OFFER_EXPIRING):
		return ("offer.expiring");
	case ALERT(OFFER_UNACKNOWLEDGED):
		return ("offer.unacknowledged");
	case ALERT(NEED_ACCEPTED):
		return ("need.accepted");
	case ALERT(NEED_PLACED):
		return ("need.placed");
	case ALERT(NEED_DECLINED):
		return ("need.declined");
	case ALERT(NEED_EXPIRED):
		return ("need.expired");
	case ALERT(NEED_WAITING):
		return ("need.waiting");
	case ALERT(NEED_UNMET):
		return ("need.unmet");
	case ALERT(CONSENT_WITHDRAWN):
		return ("consent.withdrawn");
	case ALERT(CONSENT_EXPIRED):
		return ("consent.expired");
	case ALERT(SIGNAL_NEW):
		return ("signal.new");
	case ALERT(SUBJECT_ERASED):
		return ("subject.erased");
	case ALERT(TEST):
		return ("test");
	default:
		return ("unknown");
	}
}

const char *
alerts_urgency_name(int u)
{
	switch (u) {
	case HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE:
		return ("immediate");
	case HAVEN__REFERRAL__V1__URGENCY__URGENT:
		return ("urgent");
	case HAVEN__REFERRAL__V1__URGENCY__PLANNED:
		return ("planned");
	default:
		return ("none");
	}
}

const char *
alerts_channel_name(Channel c)
{
	switch (c) {
	case CHANNEL(EMAIL):
		return ("email");
	case CHANNEL(ONCALL):
		return ("oncall");
	case CHANNEL(WEBHOOK):
		return ("webhook");
	default:
		return ("none");
	}
}

/* ---- clock and wake-ups ------------------------------------------------------------------- */

int64_t
alerts_now_ms(const alerts_service *as)
{
	return (as->as_now != NULL ? as->as_now(as->as_now_arg) : hv_clock_wall_ms());
}

uint64_t
alerts_escalate_ms(const alerts_service *as)
{
	return (as->as_escalate_ms);
}

hv_status
alerts_last_seq(alerts_service *as, store_txn *txn, uint64_t *seq)
{
	const void *v;
	size_t      vl;
	hv_status   st =
	    store_get(txn, as->as_meta, ALERTS_META_SEQ, strlen(ALERTS_META_SEQ), &v, &vl);

	*seq = st == HV_OK && vl == 8 ? hv_get_be64(v) : 0;
	return (st == HV_NOT_FOUND ? HV_OK : st == HV_OK && vl != 8 ? HV_DATA_LOSS : st);
}

void
alerts_kick(alerts_service *as)
{
	hv_ticker *t;

	if (as == NULL) {
		return;
	}
	pthread_mutex_lock(&as->as_lock);
	t = as->as_sender;
	as->as_wakes++;
	pthread_cond_broadcast(&as->as_cond);
	if (t != NULL) {
		hv_ticker_kick(t); /* under the lock: alerts_stop cannot free it meanwhile */
	}
	pthread_mutex_unlock(&as->as_lock);
}

/* ---- the outbox ------------------------------------------------------------------------- */

typedef struct recipients {
	char        r_org[ALERTS_ALL_RECIPIENTS][CAP_ID_MAX];
	size_t      r_n;
	const char *r_region;
} recipients;

static void
recipients_add(recipients *r, const char *org)
{
	if (org == NULL || org[0] == '\0' || !ids_valid(org) || strlen(org) >= CAP_ID_MAX ||
	    r->r_n == ALERTS_ALL_RECIPIENTS) {
		return;
	}
	for (size_t i = 0; i < r->r_n; i++) {
		if (strcmp(r->r_org[i], org) == 0) {
			return;
		}
	}
	snprintf(r->r_org[r->r_n++], CAP_ID_MAX, "%s", org);
}

static int
add_coordinator(void *arg, const Haven__Capacity__V1__Organisation *o)
{
	recipients *r = arg;

	/* The region's own coordinators, and the national ones (coordinators of every region,
	 * docs/authority.md). */
	if (!o->disabled &&
	    ((o->role == HAVEN__CAPACITY__V1__ROLE__COORDINATOR &&
	         strcmp(o->region, r->r_region) == 0) ||
	        o->role == HAVEN__CAPACITY__V1__ROLE__NATIONAL_COORDINATOR)) {
		recipients_add(r, o->id);
	}
	return (0);
}

static hv_status
next_seq(alerts_service *as, store_txn *txn, uint64_t *seq)
{
	const void *v;
	size_t      vl;
	uint8_t     b[8];
	hv_status   st;

	*seq = 0;
	st   = store_get(txn, as->as_meta, ALERTS_META_SEQ, strlen(ALERTS_META_SEQ), &v, &vl);
	if (st == HV_OK && vl == 8) {
		*seq = hv_get_be64(v);
	} else if (st != HV_NOT_FOUND && st != HV_OK) {
		return (st);
	}
	(*seq)++;
	hv_put_be64(b, *seq);
	return (
	    store_put(txn, as->as_meta, ALERTS_META_SEQ, strlen(ALERTS_META_SEQ), b, sizeof(b)));
}

hv_status
alerts_channels_get(alerts_service *as, store_txn *txn, const char *org, Channels **out)
{
	hv_status st = store_get_msg(txn, as->as_channels, org, strlen(org),
	    &haven__alerts__v1__channels__descriptor, NULL, (ProtobufCMessage **) out);

	return (st == HV_NOT_FOUND ? HV_OK : st);
}

static hv_status
delivery_put(alerts_service *as, store_txn *txn, uint64_t seq, const char *org, Channel ch,
    int64_t now)
{
	Delivery  d = HAVEN__ALERTS__V1__DELIVERY__INIT;
	char      key[ALERTS_KEY_MAX];
	uint8_t   due[ALERTS_KEY_MAX];
	hv_status st;

	snprintf(key, sizeof(key), "%llu.%s.%s", (unsigned long long) seq, org,
	    alerts_channel_name(ch));
	d.key        = key;
	d.seq        = seq;
	d.org_id     = (char *) org;
	d.channel    = ch;
	d.due_ms     = (uint64_t) now;
	d.created_ms = (uint64_t) now;
	if ((st = store_put_msg(txn, as->as_deliver, key, strlen(key), &d.base)) != HV_OK) {
		return (st);
	}
	return (store_put(txn, as->as_due, due, alerts_key_timed(due, d.due_ms, key), "", 0));
}

static void
link_for(alerts_service *as, const char *target, uint64_t seq, char *out, size_t outsz)
{
	if (strncmp(target, "off-", 4) == 0) {
		snprintf(out, outsz, "%s/#/offers/%s", as->as_node_url, target);
	} else if (strncmp(target, "ref-", 4) == 0) {
		snprintf(out, outsz, "%s/#/referrals/%s", as->as_node_url, target);
	} else {
		snprintf(out, outsz, "%s/#/alerts/%llu", as->as_node_url, (unsigned long long) seq);
	}
}

static hv_status
enqueue_one(alerts_service *as, store_txn *txn, const alerts_event *ev, const char *org,
    int64_t now)
{
	AlertEvent e = HAVEN__ALERTS__V1__ALERT_EVENT__INIT;
	Channels  *c = NULL;
	char       link[ALERTS_NODE_URL_MAX + 100];
	char       target[ALERTS_TARGET_MAX];
	uint8_t    key[ALERTS_KEY_MAX];
	hv_status  st;

	snprintf(target, sizeof(target), "%s",
	    ev->ae_target != NULL && ids_valid(ev->ae_target) ? ev->ae_target : "");
	if ((st = next_seq(as, txn, &e.seq)) != HV_OK) {
		return (st);
	}
	pthread_mutex_lock(&as->as_lock);
	if (e.seq > as->as_pending_seq) {
		as->as_pending_seq = e.seq;
	}
	pthread_mutex_unlock(&as->as_lock);
	link_for(as, target, e.seq, link, sizeof(link));
	e.kind          = ev->ae_kind;
	e.urgency       = (Haven__Referral__V1__Urgency) ev->ae_urgency;
	e.time_ms       = (uint64_t) now;
	e.respond_by_ms = ev->ae_respond_by_ms;
	e.org_id        = (char *) org;
	e.target        = target;
	e.link          = link;
	if ((st = store_put_msg(txn, as->as_events, key, alerts_key_be64(key, e.seq), &e.base)) !=
	        HV_OK ||
	    (st = store_put(txn, as->as_by_org, key, alerts_key_org(key, org, e.seq), "", 0)) !=
	        HV_OK ||
	    (st = alerts_channels_get(as, txn, org, &c)) != HV_OK || c == NULL) {
		return (st);
	}
	if (c->n_emails > 0) {
		st = delivery_put(as, txn, e.seq, org, CHANNEL(EMAIL), now);
	}
	/* The on-call address hears escalations only, and a test of the channels. */
	if (st == HV_OK && c->oncall_email[0] != '\0' &&
	    (ev->ae_kind == ALERT(OFFER_UNACKNOWLEDGED) || ev->ae_kind == ALERT(TEST))) {
		st = delivery_put(as, txn, e.seq, org, CHANNEL(ONCALL), now);
	}
	if (st == HV_OK && c->webhook_url[0] != '\0') {
		st = delivery_put(as, txn, e.seq, org, CHANNEL(WEBHOOK), now);
	}
	protobuf_c_message_free_unpacked(&c->base, NULL);
	return (st);
}

hv_status
alerts_enqueue(alerts_service *as, store_txn *txn, const alerts_event *ev)
{
	recipients r;
	int64_t    now;
	hv_status  st;

	if (as == NULL) {
		return (HV_OK);
	}
	if (ev == NULL || ev->ae_norgs > ALERTS_RECIPIENTS || ev->ae_kind == 0) {
		return (HV_INVALID_ARGUMENT);
	}
	now = alerts_now_ms(as);
	memset(&r, 0, sizeof(r));
	for (size_t i = 0; i < ev->ae_norgs; i++) {
		recipients_add(&r, ev->ae_orgs[i]);
	}
	if (ev->ae_region != NULL && ev->ae_region[0] != '\0') {
		r.r_region = ev->ae_region;
		if ((st = cap_foreach_org(as->as_cap, txn, add_coordinator, &r)) != HV_OK) {
			return (st);
		}
	}
	for (size_t i = 0; i < r.r_n; i++) {
		if ((st = enqueue_one(as, txn, ev, r.r_org[i], now)) != HV_OK) {
			return (st);
		}
	}
	/* Not committed yet: a watcher woken now looks again on its next poll; the sender runs
	 * its next round soon after the commit. */
	if (r.r_n > 0) {
		alerts_kick(as);
	}
	return (HV_OK);
}

/* ---- timers ------------------------------------------------------------------------------ */

hv_status
alerts_timer_cancel(alerts_service *as, store_txn *txn, const char *key)
{
	const void *v;
	size_t      vl;
	uint8_t     k[ALERTS_KEY_MAX];
	uint64_t    due;
	hv_status   st;

	if (as == NULL) {
		return (HV_OK);
	}
	if (key == NULL || strlen(key) == 0 || strlen(key) > ALERTS_TIMER_KEY_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	st = store_get(txn, as->as_timer_at, key, strlen(key), &v, &vl);
	if (st == HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if (vl != 8) {
		return (HV_DATA_LOSS);
	}
	due = hv_get_be64(v);
	if ((st = store_del(txn, as->as_timer_at, key, strlen(key))) != HV_OK) {
		return (st);
	}
	st = store_del(txn, as->as_timers, k, alerts_key_timed(k, due, key));
	return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
}

hv_status
alerts_timer_set(alerts_service *as, store_txn *txn, const char *key, uint64_t due_ms,
    const alerts_event *ev)
{
	Timer     t = HAVEN__ALERTS__V1__TIMER__INIT;
	char     *orgs[ALERTS_RECIPIENTS];
	uint8_t   k[ALERTS_KEY_MAX];
	uint8_t   b[8];
	hv_status st;

	if (as == NULL) {
		return (HV_OK);
	}
	if (ev == NULL || ev->ae_norgs > ALERTS_RECIPIENTS) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = alerts_timer_cancel(as, txn, key)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < ev->ae_norgs; i++) {
		orgs[i] = (char *) (ev->ae_orgs[i] != NULL ? ev->ae_orgs[i] : "");
	}
	t.key           = (char *) key;
	t.kind          = ev->ae_kind;
	t.urgency       = (Haven__Referral__V1__Urgency) ev->ae_urgency;
	t.due_ms        = due_ms;
	t.respond_by_ms = ev->ae_respond_by_ms;
	t.target        = (char *) (ev->ae_target != NULL ? ev->ae_target : "");
	t.orgs          = orgs;
	t.n_orgs        = ev->ae_norgs;
	t.region        = (char *) (ev->ae_region != NULL ? ev->ae_region : "");
	hv_put_be64(b, due_ms);
	if ((st = store_put_msg(txn, as->as_timers, k, alerts_key_timed(k, due_ms, key),
	         &t.base)) != HV_OK) {
		return (st);
	}
	return (store_put(txn, as->as_timer_at, key, strlen(key), b, sizeof(b)));
}

/* Fires one timer: its event now; a NEED_WAITING timer comes back as NEED_UNMET. */
hv_status
alerts_fire_timer(alerts_service *as, store_txn *txn, const Timer *t, int64_t now)
{
	alerts_event ev;
	hv_status    st;
	char         key[ALERTS_TIMER_KEY_MAX + 1];

	memset(&ev, 0, sizeof(ev));
	ev.ae_kind          = t->kind;
	ev.ae_urgency       = t->urgency;
	ev.ae_respond_by_ms = t->respond_by_ms;
	ev.ae_target        = t->target;
	for (size_t i = 0; i < t->n_orgs && i < ALERTS_RECIPIENTS; i++) {
		ev.ae_orgs[ev.ae_norgs++] = t->orgs[i];
	}
	/* The first notice of a waiting need goes to the referrer only; escalations also to
	 * the region's coordinators. */
	ev.ae_region = t->kind == ALERT(NEED_WAITING) ? NULL : t->region;
	snprintf(key, sizeof(key), "%s", t->key);
	if ((st = alerts_enqueue(as, txn, &ev)) != HV_OK ||
	    (st = alerts_timer_cancel(as, txn, key)) != HV_OK) {
		return (st);
	}
	if (t->kind == ALERT(NEED_WAITING)) {
		ev.ae_kind   = ALERT(NEED_UNMET);
		ev.ae_region = t->region;
		return (alerts_timer_set(as, txn, key, (uint64_t) now + as->as_unmet_ms, &ev));
	}
	return (HV_OK);
}
