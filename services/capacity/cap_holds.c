/*
 * cap_holds.c - holds on places: a referral offer reserves one place of a service for a
 * bounded time; releasing, confirming (the place is taken) or expiring ends the hold. These
 * are store functions: they run inside the caller's write transaction (the referral service
 * places a hold and writes its offer in one), and change `held` (and on confirm `available`)
 * of their service in the transaction that creates or ends the hold, which with the checks
 * below keeps 0 <= held <= available <= maximum.
 *
 * cap.hold_exp orders holds by expiry (be64 expires_ms || hold id), so expiring walks only
 * the holds that are due. The job that runs cap_expire_batch is in capacity.c.
 */
#include "cap_records.h"

#include "haven/bytes.h"
#include "haven/ids.h"
#include "haven/log.h"
#include "haven/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOLD_EXP_KEY_MAX (8 + CAP_ID_MAX)

/* cap.hold_exp key: be64(expires_ms) || hold id. Returns its length. */
static size_t
hold_exp_key(uint8_t key[HOLD_EXP_KEY_MAX], uint64_t expires_ms, const char *hold_id)
{
	size_t n = strlen(hold_id);

	hv_put_be64(key, expires_ms);
	memcpy(key + 8, hold_id, n);
	return (8 + n);
}

/* ---- holds ---------------------------------------------------------------------------- */

hv_status
cap_hold_place(cap_service *cs, store_txn *txn, const char *service_id, uint32_t ttl_s,
    const char *owner, char hold_id[CAP_ID_MAX])
{
	Haven__Capacity__V1__Service *svc = NULL;
	Haven__Capacity__V1__Hold     h   = HAVEN__CAPACITY__V1__HOLD__INIT;
	int64_t                       now = cap_now_ms(cs);
	char                          id[CAP_ID_MAX];
	uint8_t                       key[HOLD_EXP_KEY_MAX];
	hv_status                     st = HV_INVALID_ARGUMENT;

	if (hold_id != NULL) {
		hold_id[0] = '\0';
	}
	if (cs == NULL || txn == NULL || hold_id == NULL || !ids_valid(service_id) || ttl_s == 0 ||
	    ttl_s > cs->cs_hold_max_ttl_s || !text_free_ok(owner, 0, CAP_OWNER_MAX)) {
		goto out;
	}
	if ((st = cap_read_service(cs, txn, service_id, NULL, &svc)) != HV_OK) {
		goto out;
	}
	if (svc->retired) {
		st = HV_NOT_FOUND;
		goto out;
	}
	if (svc->pending) {
		st = HV_FAILED_PRECONDITION; /* waits for approval: never held */
		goto out;
	}
	if (cap_free_places(svc, now, NULL) == 0) {
		st = HV_FAILED_PRECONDITION; /* no free place, or the figure is stale */
		goto out;
	}
	h.service_id = svc->id;
	h.created_ms = (uint64_t) now;
	h.expires_ms = (uint64_t) now + (uint64_t) ttl_s * 1000;
	h.owner      = owner != NULL ? (char *) owner : "";
	st           = HV_OK;
	for (int tries = 0; tries < 4 && st == HV_OK; tries++) {
		if ((st = ids_generate(id, sizeof(id), CAP_HOLD_ID_PREFIX, CAP_HOLD_ID_HEX)) !=
		    HV_OK) {
			goto out;
		}
		st = store_get(txn, cs->cs_holds, id, strlen(id), NULL, NULL);
	}
	if (st != HV_NOT_FOUND) {
		st = st == HV_OK ? HV_ALREADY_EXISTS : st;
		goto out;
	}
	h.id = id;
	if ((st = store_put_msg(txn, cs->cs_holds, id, strlen(id), &h.base)) != HV_OK ||
	    (st = store_put(txn, cs->cs_hold_exp, key, hold_exp_key(key, h.expires_ms, id), "",
	         0)) != HV_OK) {
		goto out;
	}
	svc->held++;
	svc->version++;
	if ((st = cap_put_service(cs, txn, svc)) != HV_OK) {
		goto out;
	}
	memcpy(hold_id, id, sizeof(id));
out:
	if (svc != NULL) {
		haven__capacity__v1__service__free_unpacked(svc, NULL);
	}
	return (st);
}

/*
 * Ends a hold: deletes it and its expiry entry and gives its place back (release) or keeps
 * it taken (confirm: available and held both drop). service_id (may be NULL) receives the
 * service's id, for a notification after the commit.
 */
static hv_status
hold_end(cap_service *cs, store_txn *txn, const char *hold_id, bool confirm,
    char service_id[CAP_ID_MAX])
{
	Haven__Capacity__V1__Hold    *h   = NULL;
	Haven__Capacity__V1__Service *svc = NULL;
	uint8_t                       key[HOLD_EXP_KEY_MAX];
	hv_status                     st = HV_NOT_FOUND;

	if (service_id != NULL) {
		service_id[0] = '\0';
	}
	if (cs == NULL || txn == NULL) {
		st = HV_INVALID_ARGUMENT;
		goto out;
	}
	if (!ids_valid(hold_id)) {
		goto out;
	}
	if ((st = store_get_msg(txn, cs->cs_holds, hold_id, strlen(hold_id),
	         &haven__capacity__v1__hold__descriptor, NULL, (ProtobufCMessage **) &h)) !=
	    HV_OK) {
		goto out;
	}
	if ((st = store_del(txn, cs->cs_holds, hold_id, strlen(hold_id))) != HV_OK) {
		goto out;
	}
	st = store_del(txn, cs->cs_hold_exp, key, hold_exp_key(key, h->expires_ms, hold_id));
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	/* Services are retired, never deleted: a hold whose service is gone, or that its
	 * service does not count, means the store is damaged. */
	st = cap_read_service(cs, txn, h->service_id, NULL, &svc);
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	if (st == HV_NOT_FOUND || svc->held == 0 || svc->available == 0) {
		log_error("hold %s: its service %s is missing or holds no place", hold_id,
		    h->service_id);
		st = HV_DATA_LOSS;
		goto out;
	}
	svc->held--;
	if (confirm) {
		svc->available--;
		svc->occupied++; /* the placement's place, until cap_place_release */
	}
	svc->version++;
	if ((st = cap_put_service(cs, txn, svc)) != HV_OK) {
		goto out;
	}
	if (service_id != NULL) {
		snprintf(service_id, CAP_ID_MAX, "%s", svc->id);
	}
out:
	if (h != NULL) {
		haven__capacity__v1__hold__free_unpacked(h, NULL);
	}
	if (svc != NULL) {
		haven__capacity__v1__service__free_unpacked(svc, NULL);
	}
	return (st);
}

hv_status
cap_hold_release(cap_service *cs, store_txn *txn, const char *hold_id)
{
	return (hold_end(cs, txn, hold_id, false, NULL));
}

hv_status
cap_hold_confirm(cap_service *cs, store_txn *txn, const char *hold_id)
{
	return (hold_end(cs, txn, hold_id, true, NULL));
}

hv_status
cap_no_room(cap_service *cs, store_txn *txn, const char *service_id)
{
	Haven__Capacity__V1__Service *svc = NULL;
	hv_status                     st;

	if ((st = cap_read_service(cs, txn, service_id, NULL, &svc)) != HV_OK) {
		return (st);
	}
	if (svc->available > svc->held) {
		svc->available = svc->held;
		svc->version++;
		st = cap_put_service(cs, txn, svc);
	}
	haven__capacity__v1__service__free_unpacked(svc, NULL);
	return (st);
}

hv_status
cap_place_release(cap_service *cs, store_txn *txn, const char *service_id, bool *freed)
{
	Haven__Capacity__V1__Service *svc = NULL;
	hv_status                     st;

	*freed = false;
	if ((st = cap_read_service(cs, txn, service_id, NULL, &svc)) != HV_OK) {
		return (st);
	}
	if (svc->occupied == 0) {
		goto out; /* a stock-take counted it free already */
	}
	svc->occupied--;
	if (svc->available + svc->occupied < svc->maximum) {
		svc->available++;
		*freed = true;
	}
	svc->version++;
	st = cap_put_service(cs, txn, svc);
out:
	haven__capacity__v1__service__free_unpacked(svc, NULL);
	return (st);
}

hv_status
cap_expire_batch(cap_service *cs, store_txn *txn, int64_t now_ms, unsigned max, unsigned *released,
    char (*changed)[CAP_ID_MAX], bool *more)
{
	uint8_t       keys[CAP_EXPIRE_BATCH][HOLD_EXP_KEY_MAX];
	size_t        klens[CAP_EXPIRE_BATCH];
	unsigned      n = 0;
	store_cursor *c = NULL;
	const void   *k;
	size_t        kl;
	hv_status     st;

	*released = 0;
	*more     = false;
	if (max > CAP_EXPIRE_BATCH) {
		max = CAP_EXPIRE_BATCH;
	}
	/* Collect first, then end the holds: hold_end writes the table the cursor walks. */
	if ((st = store_cursor_open(txn, cs->cs_hold_exp, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		if (kl < 9 || kl > HOLD_EXP_KEY_MAX - 1) {
			st = HV_DATA_LOSS;
			goto out;
		}
		if ((int64_t) hv_get_be64(k) > now_ms) {
			break;
		}
		if (n == max) {
			*more = true;
			break;
		}
		memcpy(keys[n], k, kl);
		klens[n++] = kl;
	}
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	store_cursor_close(c);
	c = NULL;
	for (unsigned i = 0; i < n; i++) {
		char id[CAP_ID_MAX];

		memcpy(id, keys[i] + 8, klens[i] - 8);
		id[klens[i] - 8] = '\0';
		st = hold_end(cs, txn, id, false, changed != NULL ? changed[*released] : NULL);
		if (st == HV_NOT_FOUND) {
			/* An expiry entry without its hold: drop it so it is not seen again. */
			log_warn("hold %s in the expiry index does not exist", id);
			if ((st = store_del(txn, cs->cs_hold_exp, keys[i], klens[i])) != HV_OK) {
				goto out;
			}
			continue;
		}
		if (st != HV_OK) {
			goto out;
		}
		(*released)++;
	}
	st = HV_OK;
out:
	store_cursor_close(c);
	return (st);
}

hv_status
cap_expire_holds(cap_service *cs, store_txn *txn, int64_t now_ms, unsigned *released)
{
	unsigned  total = 0;
	unsigned  n;
	bool      more = true;
	hv_status st   = HV_OK;

	if (cs == NULL || txn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	while (more) {
		if ((st = cap_expire_batch(cs, txn, now_ms, CAP_EXPIRE_BATCH, &n, NULL, &more)) !=
		    HV_OK) {
			break;
		}
		total += n;
	}
	if (released != NULL) {
		*released = total;
	}
	return (st);
}
