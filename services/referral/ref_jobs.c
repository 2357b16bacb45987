/*
 * ref_jobs.c - the referral service's background work: routing waiting needs (all of them
 * every REF_ROUTE_EVERY_MS, those of a service type at once when a place of it freed),
 * expiring offers past their respond-by time, recording consent withdrawals, and the
 * subscription to the capacity and consent notifications that wakes it. Also the store
 * functions the consent service calls (ref_is_accepting_provider, ref_consent_withdrawn).
 */
#include "ref_internal.h"

#include "haven/clock.h"
#include "haven/log.h"

#include "haven/consent/v1/consent.pb-c.h"

#include <nng/protocol/pubsub0/sub.h>
#include <stdlib.h>
#include <string.h>

#define CAP_TOPIC     "capacity."
#define CONSENT_TOPIC "consent.withdrawn" /* consent.h: then a packed ConsentWithdrawn */

/* ---- waiting needs and deadlines ------------------------------------------------------------- */

typedef struct route_job {
	ref_work      rj_work;
	ref_key_batch rj_keys;
	uint32_t      rj_types;
} route_job;

static hv_status
route_fn(store_txn *txn, void *arg)
{
	route_job     *j = arg;
	ref_work      *w = &j->rj_work;
	ref_route_item items[REF_BATCH];
	size_t         n = 0;
	hv_status      st;

	ref_work_begin(w, txn);
	for (size_t i = 0; i < j->rj_keys.kb_n; i++) {
		const uint8_t *k  = j->rj_keys.kb_keys[i];
		size_t         kl = j->rj_keys.kb_lens[i];
		Referral      *r;
		char           id[IDS_MAX];
		uint32_t       need;

		if (!ref_key_waiting_parse(k, kl, id, &need)) {
			log_warn("referral: a malformed key in ref.waiting is dropped");
			if ((st = store_del(txn, w->w_rs->rs_waiting, k, kl)) != HV_OK) {
				return (st);
			}
			continue;
		}
		st = ref_load(w, id, &r);
		if (st == HV_OK && need < r->n_needs && r->needs[need]->state == NS(WAITING) &&
		    (j->rj_types & (1u << ((unsigned) r->needs[need]->type % REF_SERVICE_TYPES))) ==
		        0) {
			continue; /* not a type whose places freed */
		}
		if (st == HV_NOT_FOUND ||
		    (st == HV_OK && (need >= r->n_needs || r->needs[need]->state != NS(WAITING)))) {
			/* Gone from the index in a transaction that committed after our read: or an
			 * entry that should not be there. Either way it is not waiting. */
			if (store_get(txn, w->w_rs->rs_waiting, k, kl, NULL, NULL) == HV_OK) {
				log_warn("referral: %s need %u is in ref.waiting but not waiting",
				    id, need);
				if ((st = store_del(txn, w->w_rs->rs_waiting, k, kl)) != HV_OK) {
					return (st);
				}
			}
			continue;
		}
		if (st != HV_OK) {
			return (st);
		}
		items[n].ri_ref  = r;
		items[n].ri_need = r->needs[need];
		n++;
	}
	if (n > 0 && (st = ref_route(w, items, n)) != HV_OK) {
		return (st);
	}
	return (ref_work_flush(w));
}

/* Routes waiting needs; types: bit t for ServiceType t (the need's type is read from the
 * referral in the write transaction, so a round for some types still looks at each key). */
static hv_status
route_waiting_types(ref_service *rs, uint32_t types, unsigned *routed)
{
	route_job *j;
	uint8_t    after[REF_KEY_MAX];
	size_t     alen = 0;
	bool       more = true;
	hv_status  st   = HV_OK;
	uint64_t   count;
	store_txn *txn;

	if (routed != NULL) {
		*routed = 0;
	}
	/* Idle rounds take no write lock and allocate nothing. */
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_count(txn, rs->rs_waiting, &count);
	store_read_end(txn);
	if (st != HV_OK || count == 0) {
		return (st);
	}
	if ((j = malloc(sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	ref_work_init(&j->rj_work, rs);
	j->rj_types = types;
	while (more) {
		if ((st = ref_gather(rs, rs->rs_waiting, after, alen, NULL, NULL, NULL, &j->rj_keys,
		         &more)) != HV_OK ||
		    j->rj_keys.kb_n == 0) {
			break;
		}
		alen = j->rj_keys.kb_lens[j->rj_keys.kb_n - 1];
		memcpy(after, j->rj_keys.kb_keys[j->rj_keys.kb_n - 1], alen);
		if ((st = store_write(rs->rs_store, route_fn, j)) != HV_OK) {
			log_warn("referral: routing waiting needs failed: %s %s",
			    hv_status_name(st), j->rj_work.w_err);
			break;
		}
		if (routed != NULL) {
			*routed += j->rj_work.w_offers;
		}
		if (j->rj_work.w_offers > 0) {
			log_info("referral: %u waiting needs offered", j->rj_work.w_offers);
		}
		ref_work_publish(&j->rj_work);
	}
	ref_work_free(&j->rj_work);
	free(j);
	return (st);
}

hv_status
ref_route_waiting(ref_service *rs, unsigned *routed)
{
	if (rs == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	return (route_waiting_types(rs, UINT32_MAX, routed));
}

typedef struct expire_job {
	ref_work      ej_work;
	ref_key_batch ej_keys;
	int64_t       ej_now;
} expire_job;

static bool
deadline_passed(const uint8_t *k, size_t kl, void *arg)
{
	const int64_t *now = arg;

	return (kl < 8 || (int64_t) hv_get_be64(k) > *now);
}

static hv_status
expire_fn(store_txn *txn, void *arg)
{
	expire_job    *j = arg;
	ref_work      *w = &j->ej_work;
	ref_service   *rs;
	ref_route_item items[REF_BATCH];
	size_t         n = 0;
	hv_status      st;

	ref_work_begin(w, txn);
	rs = w->w_rs;
	for (size_t i = 0; i < j->ej_keys.kb_n; i++) {
		const uint8_t *k  = j->ej_keys.kb_keys[i];
		size_t         kl = j->ej_keys.kb_lens[i];
		Offer         *o  = NULL;
		Referral      *r  = NULL;
		Need          *need;
		char           id[IDS_MAX];
		char         **declined;

		if (kl <= 8 || kl - 8 >= IDS_MAX) {
			if ((st = store_del(txn, rs->rs_deadlines, k, kl)) != HV_OK) {
				return (st);
			}
			continue;
		}
		memcpy(id, k + 8, kl - 8);
		id[kl - 8] = '\0';
		st         = ref_load_offer(w, id, &o);
		if (st == HV_OK && o->state == OS(OFFER_OPEN) &&
		    (int64_t) o->respond_by_ms > w->w_now) {
			continue; /* not due (an entry of another time: it goes with its offer) */
		}
		if (st == HV_NOT_FOUND || (st == HV_OK && o->state != OS(OFFER_OPEN))) {
			/* Answered after our read (its entry went with the answer), or an entry
			 * left behind: an offer that is not open has no deadline. */
			if (store_get(txn, rs->rs_deadlines, k, kl, NULL, NULL) == HV_OK) {
				log_warn(
				    "referral: a deadline of offer %s that is not open dropped",
				    id);
				if ((st = store_del(txn, rs->rs_deadlines, k, kl)) != HV_OK) {
					return (st);
				}
			}
			continue;
		}
		if (st != HV_OK) {
			return (st);
		}
		if ((st = ref_offer_end(w, o, OS(OFFER_EXPIRED))) != HV_OK) {
			return (st);
		}
		w->w_expired++;
		if ((st = ref_load(w, o->referral_id, &r)) != HV_OK) {
			return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
		}
		if (o->need_index >= r->n_needs) {
			return (HV_DATA_LOSS);
		}
		need = r->needs[o->need_index];
		if (need->state != NS(OFFERED) || strcmp(need->offer_id, o->id) != 0) {
			log_warn(
			    "referral: offer %s was open but %s need %u is not offered with it",
			    o->id, r->id, o->need_index);
			continue;
		}
		/* Silence is a decline: the need moves on to the next candidate. */
		if ((declined = arena_alloc(w->w_arena,
		         (need->n_declined_services + 1) * sizeof(char *))) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		if (need->n_declined_services > 0) {
			memcpy(declined, need->declined_services,
			    need->n_declined_services * sizeof(char *));
		}
		declined[need->n_declined_services++] = o->service_id;
		need->declined_services               = declined;
		if ((st = ref_transition_for(w, REF_CAUSE_OFFER_EXPIRED, r, need, NS(WAITING), "",
		         "offer expired", o->id)) != HV_OK) {
			return (st);
		}
		items[n].ri_ref  = r;
		items[n].ri_need = need;
		n++;
	}
	if (n > 0 && (st = ref_route(w, items, n)) != HV_OK) {
		return (st);
	}
	return (ref_work_flush(w));
}

hv_status
ref_expire_offers(ref_service *rs, unsigned *expired)
{
	expire_job *j;
	bool        more = true;
	hv_status   st   = HV_OK;

	if (expired != NULL) {
		*expired = 0;
	}
	if (rs == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((j = malloc(sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	ref_work_init(&j->ej_work, rs);
	while (more) {
		j->ej_now = ref_now_ms(rs);
		/* Deadlines are in time order: stop at the first one still to come. */
		if ((st = ref_gather(rs, rs->rs_deadlines, NULL, 0, NULL, deadline_passed,
		         &j->ej_now, &j->ej_keys, &more)) != HV_OK ||
		    j->ej_keys.kb_n == 0) {
			break;
		}
		if ((st = store_write(rs->rs_store, expire_fn, j)) != HV_OK) {
			log_warn("referral: expiring offers failed: %s %s", hv_status_name(st),
			    j->ej_work.w_err);
			break;
		}
		if (j->ej_work.w_expired > 0) {
			log_info("referral: %u offers expired, %u new offers", j->ej_work.w_expired,
			    j->ej_work.w_offers);
		}
		if (expired != NULL) {
			*expired += j->ej_work.w_expired;
		}
		ref_work_publish(&j->ej_work);
		if (j->ej_work.w_expired == 0) {
			break; /* every gathered entry was answered meanwhile: look again next round
			        */
		}
	}
	ref_work_free(&j->ej_work);
	free(j);
	return (st);
}
/* ---- for the consent service ----------------------------------------------------------------- */

typedef struct accepting_arg {
	ref_service *aa_rs;
	store_txn   *aa_txn;
	const char  *aa_org;
	bool         aa_yes;
} accepting_arg;

static hv_status
accepting_one(void *arg, const char *id, bool *stop)
{
	accepting_arg *a = arg;
	Referral      *r = NULL;
	hv_status      st;

	st = store_get_msg(a->aa_txn, a->aa_rs->rs_referrals, id, strlen(id),
	    &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r);
	if (st == HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		const Need *n = r->needs[i];

		if ((n->state == NS(ACCEPTED) || n->state == NS(PLACED)) &&
		    strcmp(n->provider_org, a->aa_org) == 0) {
			a->aa_yes = true;
			*stop     = true;
		}
	}
	haven__referral__v1__referral__free_unpacked(r, NULL);
	return (HV_OK);
}

hv_status
ref_is_accepting_provider(ref_service *rs, store_txn *txn, const char *subject, const char *org_id,
    bool *yes)
{
	accepting_arg a = { rs, txn, org_id, false };
	hv_status     st;

	if (yes == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*yes = false;
	if (rs == NULL || txn == NULL || subject == NULL || !ids_valid(org_id)) {
		return (HV_INVALID_ARGUMENT);
	}
	st   = ref_subject_walk(rs, txn, subject, accepting_one, &a);
	*yes = st == HV_OK && a.aa_yes;
	return (st);
}

typedef struct withdrawn_job {
	ref_work    wj_work;
	const char *wj_subject;
	ref_cause   wj_cause;  /* REF_CAUSE_CONSENT_WITHDRAWN or _EXPIRED */
	const char *wj_reason; /* the coded reason in the trail */
	unsigned    wj_marked;
} withdrawn_job;

static hv_status
withdrawn_one(void *arg, const char *id, bool *stop)
{
	withdrawn_job *j = arg;
	Referral      *r;
	bool           marked = false, valid;
	hv_status      st;

	if ((st = ref_load(&j->wj_work, id, &r)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if (ref_referral_closed(r)) {
		return (HV_OK);
	}
	/* Another consent may still cover the referral; if none does, it ends here. */
	if ((st = ref_consent_valid(&j->wj_work, r, &valid)) != HV_OK) {
		return (st);
	}
	if (!valid) {
		j->wj_marked++;
		return (ref_end_for_consent(&j->wj_work, r, j->wj_reason, j->wj_cause));
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		if (!ref_need_open(r->needs[i])) {
			continue;
		}
		if ((st = ref_note_event_for(&j->wj_work, j->wj_cause, r, r->needs[i], "",
		         j->wj_reason)) != HV_OK) {
			return (st);
		}
		marked = true;
	}
	j->wj_marked += marked ? 1 : 0;
	/* The referrer hears of it too (it may not be the subject's holder, who withdrew). */
	return (marked ? ref_alert_consent_withdrawn(&j->wj_work, r, j->wj_cause) : HV_OK);
}

static hv_status
withdrawn_fn(store_txn *txn, void *arg)
{
	withdrawn_job *j = arg;
	hv_status      st;

	ref_work_begin(&j->wj_work, txn);
	j->wj_marked = 0;
	if ((st = ref_subject_walk(j->wj_work.w_rs, txn, j->wj_subject, withdrawn_one, j)) !=
	    HV_OK) {
		return (st);
	}
	return (ref_work_flush(&j->wj_work));
}

hv_status
ref_consent_withdrawn(ref_service *rs, const char *subject, bool expired, unsigned *referrals)
{
	withdrawn_job j;
	hv_status     st;

	if (referrals != NULL) {
		*referrals = 0;
	}
	if (rs == NULL || subject == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	ref_work_init(&j.wj_work, rs);
	j.wj_subject = subject;
	j.wj_cause   = expired ? REF_CAUSE_CONSENT_EXPIRED : REF_CAUSE_CONSENT_WITHDRAWN;
	j.wj_reason  = expired ? "consent expired" : "consent withdrawn";
	if ((st = store_write(rs->rs_store, withdrawn_fn, &j)) == HV_OK) {
		ref_work_publish(&j.wj_work);
		if (referrals != NULL) {
			*referrals = j.wj_marked;
		}
	}
	ref_work_free(&j.wj_work);
	return (st);
}
/* ---- the background thread ------------------------------------------------------------------- */

/* One round of the background job: records queued consent withdrawals, expires offers and
 * routes waiting needs (all types every REF_ROUTE_EVERY_MS, those kicked at once). */
void
ref_jobs_round(void *arg)
{
	ref_service *rs = arg;
	uint32_t     pending;
	char         subject[REF_SUBJECT_LEN + 1];
	bool         expired;
	int64_t      now;

	pthread_mutex_lock(&rs->rs_lock);
	if (rs->rs_stopping) {
		pthread_mutex_unlock(&rs->rs_lock);
		return;
	}
	pending        = rs->rs_pending;
	rs->rs_pending = 0;
	while (rs->rs_nwithdrawn > 0) {
		rs->rs_nwithdrawn--;
		memcpy(subject, rs->rs_withdrawn[rs->rs_nwithdrawn].subject, sizeof(subject));
		expired = rs->rs_withdrawn[rs->rs_nwithdrawn].expired;
		pthread_mutex_unlock(&rs->rs_lock);
		if (ref_consent_withdrawn(rs, subject, expired, NULL) != HV_OK) {
			log_warn("referral: cannot record the consent withdrawal of %s", subject);
		}
		pthread_mutex_lock(&rs->rs_lock);
	}
	pthread_mutex_unlock(&rs->rs_lock);

	(void) ref_expire_offers(rs, NULL);
	now = hv_clock_mono_ms();
	if (rs->rs_last_route == 0 || now - rs->rs_last_route >= REF_ROUTE_EVERY_MS) {
		(void) route_waiting_types(rs, UINT32_MAX, NULL);
		rs->rs_last_route = now;
	} else if (pending != 0) {
		(void) route_waiting_types(rs, pending, NULL);
	}
}

/* Queues a subject whose consent was withdrawn for the thread (the callback must not block
 * on the store). */
static void
queue_withdrawn(ref_service *rs, const char *subject, bool expired)
{
	if (strlen(subject) != REF_SUBJECT_LEN) {
		return;
	}
	pthread_mutex_lock(&rs->rs_lock);
	if (rs->rs_nwithdrawn < REF_WITHDRAWN_QUEUE) {
		memcpy(rs->rs_withdrawn[rs->rs_nwithdrawn].subject, subject, REF_SUBJECT_LEN + 1);
		rs->rs_withdrawn[rs->rs_nwithdrawn++].expired = expired;
		hv_ticker_kick(rs->rs_bg);
	} else {
		log_warn("referral: too many consent withdrawals queued; subject %s not recorded",
		    subject);
	}
	pthread_mutex_unlock(&rs->rs_lock);
}

/* A notification arrived: a CapacityChanged that says a place is free wakes the thread to
 * route waiting needs of its type; a ConsentWithdrawn is queued for the thread. */
static void
sub_cb(void *arg)
{
	ref_service *rs = arg;
	nng_msg     *m;
	int          rv = nng_aio_result(rs->rs_sub_aio);

	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		return;
	}
	if (rv == 0) {
		const uint8_t *body;
		size_t         len;

		m    = nng_aio_get_msg(rs->rs_sub_aio);
		body = nng_msg_body(m);
		len  = nng_msg_len(m);
		if (len >= sizeof(CAP_TOPIC) - 1 &&
		    memcmp(body, CAP_TOPIC, sizeof(CAP_TOPIC) - 1) == 0) {
			Haven__Capacity__V1__CapacityChanged *c =
			    haven__capacity__v1__capacity_changed__unpack(NULL,
			        len - (sizeof(CAP_TOPIC) - 1), body + sizeof(CAP_TOPIC) - 1);
			if (c != NULL) {
				if (c->free > 0 && (int) c->type > 0 &&
				    (int) c->type < REF_SERVICE_TYPES) {
					ref_kick(rs, 1u << c->type);
				}
				haven__capacity__v1__capacity_changed__free_unpacked(c, NULL);
			}
		} else if (len >= sizeof(CONSENT_TOPIC) - 1 &&
		    memcmp(body, CONSENT_TOPIC, sizeof(CONSENT_TOPIC) - 1) == 0) {
			Haven__Consent__V1__ConsentWithdrawn *c =
			    haven__consent__v1__consent_withdrawn__unpack(NULL,
			        len - (sizeof(CONSENT_TOPIC) - 1),
			        body + sizeof(CONSENT_TOPIC) - 1);
			if (c != NULL) {
				queue_withdrawn(rs, c->subject, c->expired);
				haven__consent__v1__consent_withdrawn__free_unpacked(c, NULL);
			}
		}
		nng_msg_free(m);
	}
	nng_recv_aio(rs->rs_sub, rs->rs_sub_aio);
}

/* Opens the sub socket on first use and dials url. Non-blocking: the publisher may start
 * later; nng keeps dialing. */
static hv_status
sub_dial(ref_service *rs, const char *url, const char *topic)
{
	int rv;

	if (!rs->rs_sub_open) {
		if ((rv = nng_sub0_open(&rs->rs_sub)) != 0) {
			return (hv_status_from_nng(rv));
		}
		rs->rs_sub_open = true;
		if ((rv = nng_aio_alloc(&rs->rs_sub_aio, sub_cb, rs)) != 0) {
			return (hv_status_from_nng(rv));
		}
	}
	if ((rv = nng_socket_set(rs->rs_sub, NNG_OPT_SUB_SUBSCRIBE, topic, strlen(topic))) != 0) {
		return (hv_status_from_nng(rv));
	}
	if ((rv = nng_dial(rs->rs_sub, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		log_error("referral: cannot subscribe to %s: %s", url, nng_strerror(rv));
		return (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? HV_INVALID_ARGUMENT
		                                                  : hv_status_from_nng(rv));
	}
	return (HV_OK);
}

hv_status
ref_jobs_subscribe(ref_service *rs, const ref_options *opts)
{
	hv_status st = HV_OK;

	if (opts->capacity_sub_url != NULL && opts->capacity_sub_url[0] != '\0' &&
	    (st = sub_dial(rs, opts->capacity_sub_url, CAP_TOPIC)) != HV_OK) {
		return (st);
	}
	if (opts->consent_sub_url != NULL && opts->consent_sub_url[0] != '\0') {
		bool same = opts->capacity_sub_url != NULL &&
		    strcmp(opts->capacity_sub_url, opts->consent_sub_url) == 0;
		if (same) {
			int rv = nng_socket_set(rs->rs_sub, NNG_OPT_SUB_SUBSCRIBE, CONSENT_TOPIC,
			    sizeof(CONSENT_TOPIC) - 1);
			st     = rv == 0 ? HV_OK : hv_status_from_nng(rv);
		} else {
			st = sub_dial(rs, opts->consent_sub_url, CONSENT_TOPIC);
		}
		if (st != HV_OK) {
			return (st);
		}
	}
	if (rs->rs_sub_open) {
		nng_recv_aio(rs->rs_sub, rs->rs_sub_aio);
	}
	return (HV_OK);
}
