/*
 * consent_base.h - base.c: the lowest layer of the consent library, used by every file above
 * it (consent_internal.h lists the layers).
 */
#ifndef HAVEN_CONSENT_BASE_H
#define HAVEN_CONSENT_BASE_H

#include "consent_internal.h"

/* The service's clock: consent_options.now_ms, else the wall clock (Unix ms). */
int64_t consent_now(consent_service *cs);

/* Appends the audit entry of a failed access in a transaction of its own (the access's own
 * transaction was rolled back). UNAVAILABLE (the store refuses writes) is not recorded; a
 * subject that is not a well-formed id is recorded as "". */
void consent_audit_failure(consent_service *cs, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, hv_status result);

/* The end of a failed access: audits it (consent_audit_failure) unless the request was
 * malformed (INVALID_ARGUMENT: nothing was accessed), and returns st. */
hv_status consent_failed(consent_service *cs, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, hv_status st);

/* Publishes a ConsentWithdrawn (after the commit): erased for an erasure, expired for the
 * expiry sweep's find. Never blocks. */
void consent_publish_withdrawn(consent_service *cs, const char *consent_id, const char *subject,
    int64_t when, bool erased, bool expired);

/* Reads a subject's record. NOT_FOUND ("no subject X", or "subject X was erased" unless
 * allow_erased). *out is the caller's (free_unpacked with NULL). */
hv_status consent_subject_get(consent_service *cs, store_txn *txn, const uint8_t id[CONSENT_ID_LEN],
    bool allow_erased, Haven__Consent__V1__SubjectRecord **out, char *err, size_t errsz);

/* The organisation that holds a subject: the one it was handed to (TransferSubject), else the
 * referrer that created it, "" for the operator (docs/authority.md).
 * Only the holder records, changes or withdraws consent and personal data. */
const char *consent_holder(const Haven__Consent__V1__SubjectRecord *r);

/* The holder's rule, the one place consent decides who may act on a subject: a referrer
 * organisation acts on the subjects it holds, the node's operator on the subjects it recorded
 * itself (holder "") and on any when operator_ok (audited like everyone), every other role on
 * none. HV_OK, or PERMISSION_DENIED with a message in err (ids and roles only). subject is
 * the subject's id as text. */
hv_status consent_may_act(const rpc_caller *caller, const char *holder, const char *subject,
    bool operator_ok, char *err, size_t errsz);

/* The holder to hand consent_may_act for a subject that does not exist or was erased: no
 * organisation's id (ids have no space), and not "" (the operator's own), so that it refuses
 * everyone but an operator allowed every subject, in the words it uses for another holder's
 * subject. */
#define CONSENT_NO_HOLDER " "

/* A subject asked about by id, for a method under the holder's rule (consent_may_act): the
 * record when the caller may act on it. A subject that does not exist, or was erased (its
 * tombstone names no holder), is refused with the very status and words that a subject of
 * another holder gets, so that no answer tells a caller whether an id names a person or
 * whether she was erased; only the operator, which sees every subject anyway, hears NOT_FOUND
 * ("no subject X", "subject X was erased" unless allow_erased).
 * *out is the caller's (free_unpacked with NULL). */
hv_status consent_subject_acting(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const uint8_t id[CONSENT_ID_LEN], bool operator_ok, bool allow_erased,
    Haven__Consent__V1__SubjectRecord **out, char *err, size_t errsz);

/* A consent record by id (*out the caller's: free_unpacked with NULL); a subject's consent
 * ids in id order (ids: CONSENTS_PER_SUBJECT_MAX; DATA_LOSS for more). */
hv_status consent_record_get(consent_service *cs, store_txn *txn, const uint8_t cid[CONSENT_ID_LEN],
    Haven__Consent__V1__ConsentRecord **out);
hv_status consent_record_ids(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    uint8_t (*ids)[CONSENT_ID_LEN], size_t *n);

/* Calls fn for each consent of a subject, in id order, until it returns non-zero (then that
 * value is returned as the status). The record is valid during the call only; fn may write
 * in txn (no cursor is open then). */
typedef hv_status (*consent_record_fn)(void *arg, const uint8_t cid[CONSENT_ID_LEN],
    Haven__Consent__V1__ConsentRecord *c);
hv_status consent_records_foreach(consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], consent_record_fn fn, void *arg);

/* Whether a subject's personal data holds field (a PersonalData field number), without
 * decrypting anything: the sealed fields carry their numbers. */
hv_status consent_personal_has(consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], unsigned field, bool *yes);

#endif
