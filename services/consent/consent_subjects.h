/*
 * consent_subjects.h - subjects.c: a subject's record and personal data, read, changed and
 * erased (consent_create_subject_txn, consent_read_personal_txn and the erasures, for other
 * services, are in consent.h). Stands on consent_check.h, consent_records.h,
 * consent_personal.h and consent_vault.h.
 */
#ifndef HAVEN_CONSENT_SUBJECTS_H
#define HAVEN_CONSENT_SUBJECTS_H

#include "consent_personal.h"
#include "consent_vault.h"

/*
 * Reads a subject's personal data for caller: every category for the holder (and the node's
 * operator); for a provider the categories consents in force share with it (accepting: it is
 * the provider that accepted the subject's referral); nothing for anyone else. Audited in
 * txn (a write transaction). *rec receives the subject's record (the caller frees it).
 */
hv_status subject_read_personal(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const char *method, const char *hex, bool accepting, plain *out,
    Haven__Consent__V1__SubjectRecord **rec, char *err, size_t errsz);

/* An update of a subject (UpdateSubject): the fields named (bit f for PersonalData field f,
 * bit SUBJECT_FIELD_MINOR for the minor flag) take their values from personal and minor. */
#define SUBJECT_FIELD_MINOR (PERSONAL_FIELDS + 1)
typedef struct subject_change {
	const char                             *sc_id;
	const Haven__Consent__V1__PersonalData *sc_personal; /* validated by the caller */
	bool                                    sc_minor;
	uint32_t                                sc_fields;
} subject_change;

/* Applies ch in txn for caller (the subject's holder only), sealing the personal data again
 * under the subject's data key, and appends an audit entry naming the fields changed. *out
 * receives the subject's record after it (the caller frees it). */
hv_status subject_update_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const char *method, const subject_change *ch, Haven__Consent__V1__SubjectRecord **out,
    char *err, size_t errsz);

/* What an erasure did. */
typedef struct subject_erased {
	int64_t  se_at_ms;
	size_t   se_withdrawn;      /* consents in force that ended with it */
	uint64_t se_kek_generation; /* rotated to afterwards (rotate), else 0 */
} subject_erased;

/* Erases a subject for caller (the holder, the operator or an admin): see
 * consent_erase_subject. A failure is audited; err receives its message. */
hv_status subject_erase(consent_service *cs, const rpc_caller *caller, const char *method,
    const char *subject, bool rotate, subject_erased *out, char *err, size_t errsz);

#endif
