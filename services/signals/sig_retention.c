/*
 * sig_retention.c - retention of signals nobody closed: retention_days after a signal came in
 * and still open (NEW or ACKNOWLEDGED), it is erased with its sealed contact and its region
 * index entry; before it goes it is counted in signals.expired (region, day it came in,
 * sector), which Statistics adds as outcome EXPIRED, so the numbers do not shrink. Closed and
 * converted signals hold no contact (dropped at closing) and stay for the statistics.
 *
 * Erasure goes in batches of SIG_RETENTION_BATCH per write transaction, so that a long backlog
 * never holds the writer for long. A write function may run more than once (store.h): each run
 * starts its count from zero.
 */
#include "sig_internal.h"

#include "haven/bytes.h"
#include "haven/log.h"

#include <string.h>

#define SIG_RETENTION_BATCH 256
#define DAY_MS              86400000LL
#define STATE(x)            HAVEN__SIGNALS__V1__STATE__##x

typedef struct ret_job {
	sig_service *rj_ss;
	int64_t      rj_cutoff;
	size_t       rj_erased; /* in this run of the write function */
	bool         rj_more;   /* the batch filled up: run again */
} ret_job;

/* Key of signals.expired: region 0 be64(day it came in) sector be64(day it was erased). The
 * day of the erasure lets Statistics count a signal as it was at a month's end: open when it
 * was erased after that end (signals.h). */
static size_t
expired_key(uint8_t key[SIG_KEY_MAX], const char *region, uint64_t created_ms, int sector,
    uint64_t erased_ms)
{
	size_t rl = strnlen(region, 64);

	memcpy(key, region, rl);
	key[rl] = 0;
	hv_put_be64(key + rl + 1, created_ms - created_ms % (uint64_t) DAY_MS);
	key[rl + 9] = (uint8_t) sector;
	hv_put_be64(key + rl + 10, erased_ms - erased_ms % (uint64_t) DAY_MS);
	return (rl + SIG_EXPIRED_TAIL);
}

/* One signal erased: counted, then its rows deleted (the item by the cursor). */
static hv_status
erase_one(store_txn *txn, ret_job *j, store_cursor *cur, const Signal *s)
{
	sig_service *ss = j->rj_ss;
	uint8_t      key[SIG_KEY_MAX], cnt[4];
	const void  *v;
	size_t       vl, kl;
	uint32_t     n = 0;
	hv_status    st;

	kl = expired_key(key, s->region, s->created_ms, (int) s->sector, (uint64_t) sig_now(ss));
	if ((st = store_get(txn, ss->ss_expired, key, kl, &v, &vl)) == HV_OK && vl == 4) {
		n = hv_get_be32(v);
	} else if (st != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	hv_put_be32(cnt, n + 1);
	if ((st = store_put(txn, ss->ss_expired, key, kl, cnt, sizeof(cnt))) != HV_OK) {
		return (st);
	}
	kl = sig_key_region(key, s->region, s->created_ms, s->id);
	if (((st = store_del(txn, ss->ss_by_region, key, kl)) != HV_OK && st != HV_NOT_FOUND) ||
	    ((st = store_del(txn, ss->ss_contact, s->id, strlen(s->id))) != HV_OK &&
	        st != HV_NOT_FOUND)) {
		return (st);
	}
	return (store_cursor_del(cur));
}

static hv_status
ret_txn(store_txn *txn, void *arg)
{
	ret_job      *j   = arg;
	store_cursor *cur = NULL;
	const void   *v;
	size_t        vl;
	hv_status     st;

	j->rj_erased = 0;
	j->rj_more   = false;
	if ((st = store_cursor_open(txn, j->rj_ss->ss_items, &cur)) != HV_OK) {
		return (st);
	}
	st = store_cursor_seek(cur, "", 0, NULL, NULL, &v, &vl);
	while (st == HV_OK) {
		Signal *s   = haven__signals__v1__signal__unpack(NULL, vl, v);
		bool    due = s != NULL &&
		    (s->state == STATE(NEW) || s->state == STATE(ACKNOWLEDGED)) &&
		    (int64_t) s->created_ms < j->rj_cutoff && s->region != NULL;

		if (due && j->rj_erased == SIG_RETENTION_BATCH) {
			j->rj_more = true;
			haven__signals__v1__signal__free_unpacked(s, NULL);
			break;
		}
		if (due) {
			st = erase_one(txn, j, cur, s);
			j->rj_erased++;
			haven__signals__v1__signal__free_unpacked(s, NULL);
			if (st != HV_OK) {
				break;
			}
			/* after store_cursor_del, next is the entry that followed the deleted one
			 */
			st = store_cursor_next(cur, NULL, NULL, &v, &vl);
			continue;
		}
		if (s != NULL) {
			haven__signals__v1__signal__free_unpacked(s, NULL);
		}
		st = store_cursor_next(cur, NULL, NULL, &v, &vl);
	}
	store_cursor_close(cur);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

hv_status
sig_retention_run(sig_service *ss, size_t *erased)
{
	ret_job   j     = { .rj_ss = ss };
	size_t    total = 0;
	hv_status st    = HV_OK;

	if (erased != NULL) {
		*erased = 0;
	}
	if (ss == NULL || ss->ss_retention_days == 0) {
		return (HV_OK);
	}
	j.rj_cutoff = sig_now(ss) - (int64_t) ss->ss_retention_days * DAY_MS;
	do {
		if ((st = store_write(ss->ss_store, ret_txn, &j)) != HV_OK) {
			break;
		}
		total += j.rj_erased;
	} while (j.rj_more);
	if (erased != NULL) {
		*erased = total;
	}
	return (st);
}

void
sig_retention_round(void *arg)
{
	size_t    n;
	hv_status st = sig_retention_run(arg, &n);

	if (st != HV_OK) {
		log_error("signals: retention failed: %s", hv_status_name(st));
	} else if (n > 0) {
		log_info("signals: retention erased %zu signals nobody closed", n);
	}
}
