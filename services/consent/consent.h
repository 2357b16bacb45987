/*
 * consent.h - consent records and the personal-data vault (haven-consent), as a library: RPC
 * handlers (haven.consent.v1.Consent and haven.audit.v1.Audit), and the store functions other
 * services call inside their own write transactions. docs/consent.md explains the design.
 *
 * Tables (in the node's one LMDB environment; proto/haven/consent/v1/store.proto):
 *   consent.meta        "kek"                    -> KekState (generation of the KEK in use)
 *   consent.subjects    subject id (16 bytes)    -> SubjectRecord (wrapped data key, or tombstone)
 *   consent.personal    subject id (16 bytes)    -> SealedPersonal (each field sealed apart)
 *   consent.records     consent id (16 bytes)    -> Consent, signed by the node
 *   consent.by_subject  subject id || consent id -> ""
 * and the audit tables of audit.h, to which every read or write of personal data or consent
 * appends, inside the same transaction.
 *
 * Keys, in DATA_DIR/keys (0700, refused with PERMISSION_DENIED when open to group or others):
 *   kek                   the key-encryption key and its generation (0600; made on first start
 *                         of an empty store; DATA_LOSS when malformed, missing while the store
 *                         has subjects, or not the one the store was wrapped under)
 *   kek.new               only during a rotation (and after a crash in one: finished or rolled
 *                         back at the next open)
 *   receipt-ed25519.pem   the node's receipt signing key (0600; made on first start)
 *   lock                  serialises rotations of all processes sharing the data dir
 *
 * Invariants: personal data exists in the store only sealed (AES-256-GCM) under its subject's
 * data key; a data key exists only wrapped under the KEK generation the store names; after an
 * erasure returns, the erased subject's data key is gone from the store and the KEK that ever
 * wrapped it is destroyed, so no copy of the store taken before can be decrypted either.
 * Nothing personal is ever logged, audited or put in an error message: ids only.
 */
#ifndef HAVEN_CONSENT_H
#define HAVEN_CONSENT_H

#include <stdbool.h>
#include <stdint.h>

#include "haven/audit.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "haven/consent/v1/consent.pb-c.h"

#define CONSENT_ID_LEN          16 /* subject and consent ids: 128 random bits */
#define CONSENT_ID_HEX          (2 * CONSENT_ID_LEN + 1) /* 32 lower-case hex characters and a NUL */
#define CONSENT_TOPIC_WITHDRAWN "consent.withdrawn"      /* then a packed ConsentWithdrawn */
#define CONSENT_RECEIPT_FORMAT  "haven-consent-receipt/1"
#define CONSENT_KEY_ID_HEX      65 /* SHA-256 of the signing public key, hex, NUL */
#define CONSENT_MSG_MAX         160

typedef struct consent_service consent_service;

typedef struct consent_options {
	store      *store;    /* the node's store; not owned */
	const char *data_dir; /* keys live in DATA_DIR/keys */
	const char *pub_url;  /* nng pub socket for ConsentWithdrawn; NULL: none */
	/* Wall clock in ms (Unix time); NULL: the real one. Tests move time with it. */
	int64_t (*now_ms)(void *arg);
	void *now_arg;
	/* The role of an enabled organisation of the partner directory, 0 when there is none
	 * (recipients of a consent must be partners; a subject is handed to a referrer only);
	 * NULL: recipients are checked for their form only, and no subject can be handed over. */
	rpc_role (*org_role)(void *arg, const char *org_id);
	void *org_arg;
	/* Whether org is the provider that accepted a referral of this subject (the referral
	 * service knows; inside the caller's transaction). A provider reading a subject's data is
	 * then covered by consents given to "the provider that accepts the referral". NULL: only
	 * consents naming the provider count. */
	hv_status (*accepting_provider)(void *arg, store_txn *txn, const char *subject,
	    const char *org_id, bool *yes);
	void *accepting_arg;
	/* Alerts (services/alerts): a withdrawal tells the organisations its consent named, in
	 * the withdrawal's own transaction. NULL: no alerts. Not owned. */
	struct alerts_service *alerts;
	/* Called after an erasure committed, and after the expiry sweep found a consent of the
	 * subject expired (consent_expiry_sweep), before the caller hears of it (no transaction
	 * open), so that the service keeping the subject's referrals ends her open ones first:
	 * offers withdrawn, holds released, waiting needs ended (the node passes the referral
	 * service's ref_consent_withdrawn; expired tells the two apart, for the reason the
	 * referral records and the alerts it sends). Its failure is logged; the withdrawal event
	 * (CONSENT_TOPIC_WITHDRAWN, erased or expired) reaches a referral service in another
	 * process. NULL: none. */
	hv_status (*subject_erased)(void *arg, const char *subject, bool expired);
	void *erased_arg;
	/* How often the expiry sweep runs (consent_expiry_sweep); 0: every 60 s. */
	uint32_t expiry_sweep_s;
	/* How often the KEK is rotated at least; 0: every 24 h. A thread checks hourly. */
	uint32_t rotate_interval_s;
	/* Check (the RPC) appends its audit entry through the audit log's writer thread
	 * (audit_enqueue) instead of in a write transaction of its own, and answers without
	 * waiting for a commit. Much faster where fsync is slow; a crash can lose the entries
	 * of the Checks answered in the last batch, at most ~100 ms (docs/consent.md). Every other
	 * access, and consent_check_txn, stays audited in its own transaction. Off here; the
	 * node's check_audit setting turns it on by default (queued). */
	bool check_audit_async;
} consent_options;

/* Opens the service: the tables, the key directory (finishing or rolling back a rotation a
 * crash interrupted), the KEK and the receipt key (made on first start), the pub socket and
 * the rotation timer. Messages in the log name what failed. */
hv_status consent_open(consent_service **out, const consent_options *opts);
/* Stops the rotation timer (waits for a rotation that is running) and, with
 * check_audit_async, writes the queued audit entries and stops their writer. Handlers and
 * store functions keep working, except that a Check with check_audit_async is refused from
 * then on (UNAVAILABLE: it could not be audited). Call it before the store closes when
 * handlers may run until then (host_close stops the server and closes the store in one go).
 * Safe to repeat; NULL allowed. */
void consent_stop(consent_service *cs);

/* Stops (consent_stop), closes the pub socket, wipes the keys and frees. No handler may be
 * running. NULL allowed. */
void consent_close(consent_service *cs);

/* Registers haven.consent.v1.Consent and haven.audit.v1.Audit on srv. */
hv_status consent_register(consent_service *cs, rpc_server *srv);

/* Check's cache of consents (docs/consent.md): Checks answered from a cached view, and
 * Checks that read the subject's consents from the store. */
void consent_check_cache_stats(consent_service *cs, uint64_t *hits, uint64_t *misses);

/* What the audit chain's last verification found. The service verifies the whole chain on a
 * thread of its own, once right after it opened and then daily, so that the start does not
 * wait for a walk that grows with the log (docs/audit.md). */
typedef enum consent_audit_state {
	CONSENT_AUDIT_PENDING = 0, /* the first verification has not finished */
	CONSENT_AUDIT_INTACT,      /* every hash, checkpoint and index row held */
	CONSENT_AUDIT_BROKEN,      /* it did not (logged as an error; haven_audit_chain_intact 0) */
	CONSENT_AUDIT_UNREADABLE,  /* the store or the checkpoint file could not be read */
} consent_audit_state;

consent_audit_state consent_audit_status(consent_service *cs);

/* Whether the last verification found the chain broken (consent_audit_status). The service
 * serves on: refusing help while the log is broken would be worse. */
bool consent_audit_broken(consent_service *cs);

/* The audit log the service appends to (for other services in the same process). */
audit *consent_audit(consent_service *cs);

/* ---- store functions for other services (inside their store_write function) ----------- */

/* What consent_check_txn decided. */
typedef struct consent_decision {
	bool                           allowed;
	char                           consent_id[CONSENT_ID_HEX]; /* allowing, or closest; "" */
	Haven__Consent__V1__DenyReason reason;                     /* UNSPECIFIED when allowed */
	char                           message[CONSENT_MSG_MAX];   /* ids only */
} consent_decision;

/* May `recipient` get data of `category` about `subject` for `purpose`, now? Allowed when a
 * consent of the subject is in force (valid_from <= now < expires, not withdrawn) and lists
 * the purpose, the category and the recipient, or has accepting_provider set while
 * recipient_is_accepting_provider is true (only the referral service knows that). recipient
 * "" is the node itself (any consent for the purpose); category UNSPECIFIED is any category
 * (the consent for the purpose as such, as for "may this person be referred"). Decrypts
 * nothing. Appends an audit entry for caller and method (result OK when allowed,
 * PERMISSION_DENIED when not), so txn must be a write transaction. NOT_FOUND for an unknown
 * or erased subject, INVALID_ARGUMENT for a malformed id, purpose, recipient or category. */
hv_status consent_check_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const char *method, const char *subject, Haven__Consent__V1__Purpose purpose,
    const char *recipient, bool recipient_is_accepting_provider,
    Haven__Consent__V1__Category category, consent_decision *out);

/* Whether a subject is a minor. NOT_FOUND for an unknown or erased subject. Read or write
 * transaction; not audited (no personal data). */
hv_status consent_subject_minor_txn(consent_service *cs, store_txn *txn, const char *subject,
    bool *minor);

/* The provider read path, for the provider that accepted a referral of the subject
 * (recipient_is_accepting_provider; false: PERMISSION_DENIED, as for no consent): decrypts the
 * fields of her personal data that consents in force allow sharing with caller->org_id (naming
 * it, or accepting_provider), category by category: identity (name, date of birth,
 * nationality, languages) and other (notes) with purpose share-with-provider, contact (her
 * contact, her guardian) with purpose contact (docs/consent.md, Purposes).
 * PERMISSION_DENIED when no category is allowed, DATA_LOSS when a field does not decrypt.
 * Appends an audit entry (write transaction). *out is the caller's: free it with
 * consent_personal_free, which wipes it. */
hv_status consent_read_personal_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const char *method, const char *subject, bool recipient_is_accepting_provider,
    Haven__Consent__V1__PersonalData **out);
void      consent_personal_free(Haven__Consent__V1__PersonalData *p);

/* Creates a subject inside the caller's transaction (what CreateSubject does, for bulk loads
 * and for services that create a subject with their own records). Validates p (may be NULL),
 * seals it, appends an audit entry. id receives the new subject's id. */
hv_status consent_create_subject_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const Haven__Consent__V1__PersonalData *p, bool minor, char id[CONSENT_ID_HEX]);

/* Records a consent inside the caller's transaction (what Grant does, with the same checks
 * and the same messages in errmsg). *out (may be NULL) receives the signed record, the
 * caller's to free with protobuf_c_message_free_unpacked(..., NULL). */
hv_status consent_grant_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const Haven__Consent__V1__GrantRequest *req, Haven__Consent__V1__ConsentRecord **out,
    char *errmsg, size_t errsz);

/* Free text another service keeps about a subject (a referral's note, the free part of a
 * reason), sealed under the subject's data key (AES-256-GCM), so that erasing the subject
 * makes every copy of it unreadable (sealed_text.c). Inside the caller's transaction (read or
 * write); neither audited nor checked for who may read: the calling service decides that.
 * context (1..CONSENT_TEXT_CONTEXT_MAX bytes) names the record and field the text is kept in,
 * e.g. "ref-0123.../note", and is bound to the ciphertext: a sealed text opens only with the
 * same subject and context. Fixed sizes, no allocation: seal writes exactly
 * CONSENT_TEXT_SEALED_LEN(len) bytes (outsz must be that); open writes the text and a NUL
 * (textsz must be len - CONSENT_TEXT_OVERHEAD + 1). Both: NOT_FOUND for an unknown or erased
 * subject (after erasure nothing opens: the caller shows the text as erased),
 * INVALID_ARGUMENT for a malformed subject id or context, a text longer than
 * CONSENT_TEXT_MAX or a wrong size. open: DATA_LOSS when the text does not authenticate
 * (altered, or another subject's or place's); the buffer is wiped then. */
#define CONSENT_TEXT_MAX           65536
#define CONSENT_TEXT_CONTEXT_MAX   128
#define CONSENT_TEXT_OVERHEAD      (1 + 12 + 16) /* version, nonce, tag */
#define CONSENT_TEXT_SEALED_LEN(n) ((size_t) (n) + CONSENT_TEXT_OVERHEAD)
hv_status consent_text_seal_txn(consent_service *cs, store_txn *txn, const char *subject,
    const char *context, const char *text, size_t len, uint8_t *out, size_t outsz);
hv_status consent_text_open_txn(consent_service *cs, store_txn *txn, const char *subject,
    const char *context, const uint8_t *sealed, size_t len, char *text, size_t textsz);

/* ---- operations with transactions of their own ---------------------------------------- */

/* Erases a subject (what EraseSubject does, for retention): destroys the data key and every
 * sealed field, keeps a tombstone, withdraws its consents in force (published), and rotates
 * the KEK before returning. caller is recorded in the audit log. */
hv_status consent_erase_subject(consent_service *cs, const rpc_caller *caller, const char *subject,
    int64_t *erased_at_ms, uint64_t *kek_generation);

/* consent_erase_subject without the key rotation, for sweeps that erase many subjects: each
 * rotation re-wraps every live data key, so the caller erases a batch and then calls
 * consent_rotate_kek once. Until then the erased subjects' wrapped keys may linger in free
 * pages and in copies of the store made meanwhile (the daily rotation also covers a caller
 * that never gets to rotate). */
hv_status consent_erase_subject_deferred(consent_service *cs, const rpc_caller *caller,
    const char *subject, int64_t *erased_at_ms);

/* Rotates the key-encryption key: a new KEK (keys/kek.new, synced), every live data key
 * re-wrapped under it in one transaction, then the new key file renamed over the old one,
 * which is overwritten first. generation and rewrapped may be NULL. */
hv_status consent_rotate_kek(consent_service *cs, uint64_t *generation, uint64_t *rewrapped);

/* The expiry sweep (issue 14; the service's own timer runs it every expiry_sweep_s): applies
 * the expiry of every consent not withdrawn whose expires_ms passed since the last sweep,
 * exactly as a withdrawal's effects: the CONSENT_WITHDRAWN alert to the organisations it
 * named (in the sweep's transaction, with an audit entry and the mark that makes it happen
 * once, across restarts too), then the ConsentWithdrawn event and subject_erased (the
 * referral service ends the subject's open referrals when no other consent covers them).
 * The record stays unchanged (expired, not withdrawn). *applied (may be NULL) counts them. */
hv_status consent_expiry_sweep(consent_service *cs, unsigned *applied);

/* The node's receipt signing public key and its id. */
void consent_receipt_key(consent_service *cs, uint8_t pub[32], char key_id[CONSENT_KEY_ID_HEX]);

/* Verifies a receipt (GetReceipt's JSON) with the node's public key: HV_OK when its signature
 * covers it exactly as it is, HV_UNAUTHENTICATED when any field was changed, added or removed
 * or the signature is not the key's, HV_INVALID_ARGUMENT when it is not a receipt. why (may
 * be NULL) says which. */
hv_status consent_receipt_verify(const char *json, size_t len, const uint8_t pub[32], char *why,
    size_t whysz);

/* The names of the consent enums as receipts, the audit log and the CLI write them:
 * "referral", "share-with-provider", "contact", "statistics"; "identity", "contact",
 * "health", "legal", "other"; "subject", "guardian", "representative"; "written", "verbal",
 * "verbal-with-interpreter", "electronic". "unknown" for a value outside the enum. The parse
 * functions take these (or with '_' for '-') and return 0, or -1 for anything else. */
const char *consent_purpose_name(int v);
const char *consent_category_name(int v);
const char *consent_given_by_name(int v);
const char *consent_method_name(int v);
int         consent_purpose_parse(const char *s, int *out);
int         consent_category_parse(const char *s, int *out);
int         consent_given_by_parse(const char *s, int *out);
int         consent_method_parse(const char *s, int *out);

/* ref_consent_fn of referral.h over consent_check_txn, for the node to pass to ref_open with
 * the consent service as arg: purpose by name, recipient_org "" for the node itself, any
 * data category. *allowed is false for an unknown or erased subject (HV_OK then), except for
 * a referrer caller, who gets the PERMISSION_DENIED of a subject another organisation holds:
 * the same answer, so that CreateReferral cannot tell whether a subject exists. */
hv_status consent_ref_check(void *arg, store_txn *txn, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, const char *recipient_org, bool accepting_provider,
    bool *allowed);

/* ref_minor_fn of referral.h over consent_subject_minor_txn, with the consent service as arg
 * (NOT_FOUND for an unknown or erased subject). */
hv_status consent_ref_minor(void *arg, store_txn *txn, const char *subject, bool *minor);

/* ref_holds_fn of referral.h, with the consent service as arg: *holds is false only when the
 * subject exists, is not erased and another organisation (or the operator) holds her. */
hv_status consent_ref_holds(void *arg, store_txn *txn, const char *subject, const char *org_id,
    bool *holds);

/* ref_seal_fn and ref_open_fn of referral.h over consent_text_seal_txn and
 * consent_text_open_txn, with the consent service as arg. */
hv_status consent_ref_seal(void *arg, store_txn *txn, const char *subject, const char *context,
    const char *text, size_t len, uint8_t *out, size_t outsz);
hv_status consent_ref_open(void *arg, store_txn *txn, const char *subject, const char *context,
    const uint8_t *sealed, size_t len, char *text, size_t textsz);

/* ref_erase_fn and ref_erase_done_fn of referral.h (retention), with the consent service as
 * arg: erases a subject with the node itself (the operator) as the caller in the audit log,
 * and after a sweep rotates the key-encryption key once, which makes its erasures final. */
hv_status consent_ref_erase(void *arg, const char *subject);
hv_status consent_ref_erase_done(void *arg);

/* Subject and consent ids: parses 32 lower-case hex characters; -1 for anything else. */
int  consent_id_parse(const char *hex, uint8_t id[CONSENT_ID_LEN]);
void consent_id_format(const uint8_t id[CONSENT_ID_LEN], char hex[CONSENT_ID_HEX]);

#endif
