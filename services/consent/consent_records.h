/*
 * consent_records.h - records.c: consent records granted, withdrawn, read and listed, each
 * audited (consent_grant_txn, for other services, is in consent.h). Stands on
 * consent_view.h and consent_receipt.h.
 */
#ifndef HAVEN_CONSENT_RECORDS_H
#define HAVEN_CONSENT_RECORDS_H

#include "consent_receipt.h"
#include "consent_view.h"

/* An operation whose result is one packed record (Grant, Withdraw, Get, GetReceipt): the
 * caller fills cs, caller, method and the id (or the grant), runs it, reads packed/len (or the
 * failure's message in err) and calls record_job_reset. */
typedef struct record_job {
	consent_service                        *rj_cs;
	const rpc_caller                       *rj_caller;
	const char                             *rj_method;
	const char                             *rj_id;
	const Haven__Consent__V1__GrantRequest *rj_grant;
	int64_t                                 rj_now;
	uint8_t                                *rj_packed;
	size_t                                  rj_len;
	char                                    rj_subject[CONSENT_ID_HEX];
	char                                    rj_err[CONSENT_MSG_MAX];
} record_job;

/* List: the caller fills cs, caller, method and subject; packed[0..n) are the subject's
 * consents in id order. */
typedef struct list_job {
	consent_service  *lj_cs;
	const rpc_caller *lj_caller;
	const char       *lj_method;
	const char       *lj_subject;
	uint8_t          *lj_packed[CONSENTS_PER_SUBJECT_MAX];
	size_t            lj_len[CONSENTS_PER_SUBJECT_MAX];
	size_t            lj_n;
	char              lj_err[CONSENT_MSG_MAX];
} list_job;

/* Each runs in a write transaction of its own and audits a failure too. withdraw publishes
 * the withdrawal after its commit. */
hv_status records_grant(record_job *j);
hv_status records_withdraw(record_job *j);
hv_status records_get(record_job *j);
void      record_job_reset(record_job *j);
hv_status records_list(list_job *j);
void      list_job_reset(list_job *j);

/* Withdraws every consent of a subject in force (at erasure); their ids go to ids (up to
 * CONSENTS_PER_SUBJECT_MAX), *n counts them. Inside the caller's transaction. */
hv_status consent_withdraw_all_txn(consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], int64_t now, char (*ids)[CONSENT_ID_HEX], size_t *n);

/* The CONSENT_WITHDRAWN alert to each organisation consent c names, inside txn (a
 * withdrawal's), or CONSENT_EXPIRED (expired: the expiry sweep's, expiry.c). No ids of the
 * subject or consent in it. */
hv_status consent_withdrawn_alert(consent_service *cs, store_txn *txn,
    const Haven__Consent__V1__ConsentRecord *c, bool expired);

/* The expiry sweep's index consent.expiries: be64 expires_ms || consent id -> "". index_put
 * records that consent cid expires at expires (with its grant, in txn). */
#define CONSENT_EXPIRY_KEY_LEN (8 + CONSENT_ID_LEN)
hv_status consent_expiry_index_put(consent_service *cs, store_txn *txn,
    const uint8_t cid[CONSENT_ID_LEN], int64_t expires);
/* expiry.c: indexes an older store's consents once, at open (consent_open). */
hv_status consent_expiry_index_prepare(consent_service *cs);

#endif
