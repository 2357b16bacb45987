/*
 * expiry.c - the expiry sweep: a consent whose expires_ms has passed acts at once, as a
 * withdrawal does (issue 14), instead of only at the next routing step or data read. Every
 * consent_options.expiry_sweep_s (and on demand, consent_expiry_sweep) one write transaction
 * takes from the index consent.expiries (be64 expires_ms || consent id -> "", written with the
 * grant) the entries whose time has come, in order; for each consent still not withdrawn it
 * sends the organisations it named the CONSENT_EXPIRED alert and audits it, and it deletes
 * each entry it took, so each expiry is applied once, across restarts too, and a sweep reads
 * only what is due, not every consent. After the commit each is published as a
 * ConsentWithdrawn with expired set (the referral service of another process ends the
 * subject's open referrals) and handed to the subject_erased callback with expired (the one in
 * this process does), so that the referral records "consent expired", not a withdrawal. The
 * record itself stays as it was: expired, not withdrawn (its receipt says so).
 *
 * A store from before the index is indexed once at open (consent_expiry_index_prepare): the
 * consents not withdrawn whose expiry is after the old sweep's mark (consent.meta
 * "expiry_swept"; none: every one).
 */
#include "consent_internal.h"
#include "consent_base.h"
#include "consent_records.h"
#include "haven/audit.h"

#include "haven/bytes.h"
#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPIRY_MARK_KEY    "expiry_swept" /* consent.meta: int64 ms, host order (before the index) */
#define EXPIRY_INDEXED_KEY "expiry_indexed"   /* consent.meta: present once the index is complete */
#define EXPIRY_METHOD      M_CONSENT "Expire" /* in the audit log: the sweep, not an RPC */

typedef struct expired_one {
	char    eo_consent[CONSENT_ID_HEX];
	char    eo_subject[CONSENT_ID_HEX];
	int64_t eo_expires;
} expired_one;

typedef struct expiry_job {
	consent_service *ej_cs;
	int64_t          ej_now;
	expired_one     *ej_list; /* grown as needed; the caller frees */
	size_t           ej_n, ej_cap;
} expiry_job;

static hv_status
expiry_mark_get(consent_service *cs, store_txn *txn, int64_t *mark)
{
	const void *v;
	size_t      vl;
	hv_status   st;

	*mark = 0; /* never swept: every expiry in the past is applied once */
	if ((st = store_get(txn, cs->cs_meta, EXPIRY_MARK_KEY, strlen(EXPIRY_MARK_KEY), &v, &vl)) ==
	    HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if (vl != sizeof(*mark)) {
		return (HV_DATA_LOSS);
	}
	memcpy(mark, v, sizeof(*mark));
	return (HV_OK);
}

/* Records c's expiry: the alert to the organisations it named, an audit entry (ids only), and
 * the ids for the events after the commit. */
static hv_status
expiry_apply(expiry_job *j, store_txn *txn, const uint8_t *cid,
    const Haven__Consent__V1__ConsentRecord *c)
{
	static const rpc_caller node = { .role = RPC_ROLE_OPERATOR,
		.org_id                        = "",
		.transport                     = RPC_TRANSPORT_INPROC };
	audit_entry             e;
	expired_one            *o;
	hv_status               st;

	if (j->ej_n == j->ej_cap) {
		size_t       cap = j->ej_cap == 0 ? 16 : j->ej_cap * 2;
		expired_one *l   = realloc(j->ej_list, cap * sizeof(*l));

		if (l == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		j->ej_list = l;
		j->ej_cap  = cap;
	}
	o = &j->ej_list[j->ej_n++];
	consent_id_format(cid, o->eo_consent);
	snprintf(o->eo_subject, sizeof(o->eo_subject), "%s", c->subject);
	o->eo_expires = c->expires_ms;
	if ((st = consent_withdrawn_alert(j->ej_cs, txn, c, true)) != HV_OK) {
		return (st);
	}
	audit_entry_fill(&e, &node, EXPIRY_METHOD, c->subject, "", j->ej_now);
	return (audit_append(j->ej_cs->cs_audit, txn, &e));
}

/* The consent an index entry names, when it is still to be applied: not withdrawn (erasure
 * withdraws) and with this expiry. *c NULL otherwise. */
static hv_status
expiry_due(expiry_job *j, store_txn *txn, const uint8_t *key, Haven__Consent__V1__ConsentRecord **c)
{
	const void *v;
	size_t      vl;
	hv_status   st;

	*c = NULL;
	if ((st = store_get(txn, j->ej_cs->cs_records, key + 8, CONSENT_ID_LEN, &v, &vl)) ==
	    HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if ((*c = haven__consent__v1__consent_record__unpack(NULL, vl, v)) == NULL) {
		return (HV_DATA_LOSS);
	}
	if ((*c)->withdrawn_at_ms != 0 || (uint64_t) (*c)->expires_ms != hv_get_be64(key)) {
		protobuf_c_message_free_unpacked(&(*c)->base, NULL);
		*c = NULL;
	}
	return (HV_OK);
}

static hv_status
expiry_fn(store_txn *txn, void *arg)
{
	expiry_job   *j = arg;
	store_cursor *cur;
	const void   *k;
	size_t        kl;
	hv_status     st;

	j->ej_n = 0; /* a retried transaction starts over */
	if ((st = store_cursor_open(txn, j->ej_cs->cs_expiries, &cur)) != HV_OK) {
		return (st);
	}
	/* In expiry order: stop at the first that is not due. */
	for (st = store_cursor_seek(cur, NULL, 0, &k, &kl, NULL, NULL);
	     st == HV_OK && kl == CONSENT_EXPIRY_KEY_LEN && (int64_t) hv_get_be64(k) <= j->ej_now;
	     st = store_cursor_next(cur, &k, &kl, NULL, NULL)) {
		Haven__Consent__V1__ConsentRecord *c;

		if ((st = expiry_due(j, txn, k, &c)) != HV_OK) {
			break;
		}
		if (c != NULL) {
			st = expiry_apply(j, txn, (const uint8_t *) k + 8, c);
			protobuf_c_message_free_unpacked(&c->base, NULL);
		}
		if (st != HV_OK || (st = store_cursor_del(cur)) != HV_OK) {
			break;
		}
	}
	if (st == HV_OK && kl != CONSENT_EXPIRY_KEY_LEN) {
		st = HV_DATA_LOSS;
	}
	store_cursor_close(cur);
	return (st == HV_NOT_FOUND || st == HV_OK ? HV_OK : st);
}

/* Indexes every consent of an older store still to expire (after the old sweep's mark). */
static hv_status
index_build_fn(store_txn *txn, void *arg)
{
	consent_service *cs = arg;
	store_cursor    *cur;
	const void      *k, *v;
	size_t           kl, vl;
	int64_t          mark;
	hv_status        st;

	if ((st = store_get(txn, cs->cs_meta, EXPIRY_INDEXED_KEY, strlen(EXPIRY_INDEXED_KEY), NULL,
	         NULL)) != HV_NOT_FOUND) {
		return (st); /* another process indexed it meanwhile (HV_OK), or a failure */
	}
	if ((st = expiry_mark_get(cs, txn, &mark)) != HV_OK ||
	    (st = store_cursor_open(txn, cs->cs_records, &cur)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(cur, NULL, 0, &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(cur, &k, &kl, &v, &vl)) {
		Haven__Consent__V1__ConsentRecord *c;

		if (kl != CONSENT_ID_LEN ||
		    (c = haven__consent__v1__consent_record__unpack(NULL, vl, v)) == NULL) {
			st = HV_DATA_LOSS;
			break;
		}
		if (c->withdrawn_at_ms == 0 && c->expires_ms > mark) {
			st = consent_expiry_index_put(cs, txn, k, c->expires_ms);
		}
		protobuf_c_message_free_unpacked(&c->base, NULL);
		if (st != HV_OK) {
			break;
		}
	}
	store_cursor_close(cur);
	if (st != HV_NOT_FOUND) {
		return (st);
	}
	return (store_put(txn, cs->cs_meta, EXPIRY_INDEXED_KEY, strlen(EXPIRY_INDEXED_KEY), "", 0));
}

hv_status
consent_expiry_index_prepare(consent_service *cs)
{
	store_txn *txn;
	hv_status  st;

	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st =
	    store_get(txn, cs->cs_meta, EXPIRY_INDEXED_KEY, strlen(EXPIRY_INDEXED_KEY), NULL, NULL);
	store_read_end(txn);
	if (st != HV_NOT_FOUND) {
		return (st);
	}
	if ((st = store_write(cs->cs_store, index_build_fn, cs)) == HV_OK) {
		log_info("consent: indexed the consents' expiry dates");
	}
	return (st);
}

hv_status
consent_expiry_sweep(consent_service *cs, unsigned *applied)
{
	expiry_job j = { .ej_cs = cs };
	hv_status  st;

	if (applied != NULL) {
		*applied = 0;
	}
	if (cs == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	j.ej_now = consent_now(cs);
	if ((st = store_write(cs->cs_store, expiry_fn, &j)) != HV_OK) {
		log_error("consent: the expiry sweep failed: %s", hv_status_name(st));
		free(j.ej_list);
		return (st);
	}
	/* In force no more since expires_ms: the same events as a withdrawal's. */
	for (size_t i = 0; i < j.ej_n; i++) {
		expired_one *o = &j.ej_list[i];

		consent_publish_withdrawn(cs, o->eo_consent, o->eo_subject, o->eo_expires, false,
		    true);
		if (cs->cs_erased != NULL &&
		    cs->cs_erased(cs->cs_erased_arg, o->eo_subject, true) != HV_OK) {
			log_warn(
			    "consent: the referrals of subject %s were not ended at the expiry of "
			    "consent %s (its event was published)",
			    o->eo_subject, o->eo_consent);
		}
	}
	if (applied != NULL) {
		*applied = (unsigned) j.ej_n;
	}
	free(j.ej_list);
	return (HV_OK);
}
