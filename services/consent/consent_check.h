/*
 * consent_check.h - check.c: Check's decision and its audit entry (consent_ref_check and
 * consent_check_txn, for other services, are in consent.h). Stands on consent_view.h.
 */
#ifndef HAVEN_CONSENT_CHECK_H
#define HAVEN_CONSENT_CHECK_H

#include "consent_view.h"

/* The decision of Check on a subject's consents, without auditing (the provider read path
 * asks it category by category, and audits the read as a whole). */
hv_status consent_decide(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    const char *subject_hex, int purpose, const char *recipient, bool accepting, int category,
    int64_t now, consent_decision *out);

/* The Check RPC for caller: validated, decided and audited (queued with check_audit_async,
 * else in a write transaction of its own; a failure is audited too). A provider asking about
 * another recipient is the handler's to refuse. err receives the message of a failure. */
hv_status consent_check_call(consent_service *cs, const rpc_caller *caller, const char *method,
    const Haven__Consent__V1__CheckRequest *in, consent_decision *out, char *err, size_t errsz);

#endif
