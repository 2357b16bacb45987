/*
 * consent_internal.h - what the files of the consent library share: the service's state and
 * the functions of the vault (vault.c: keys, sealing, rotation) and of receipts (receipt.c:
 * names, JSON, signatures). Not installed; only the library's own files include it.
 */
#ifndef HAVEN_CONSENT_INTERNAL_H
#define HAVEN_CONSENT_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <nng/nng.h>
#include <pthread.h>

#include "haven/crypto.h"
#include "haven/ids.h"
#include "haven/ticker.h"

#include "consent.h"

#include "haven/consent/v1/store.pb-c.h"

#define KEK_LEN CRYPTO_AEAD_KEY_LEN
#define DATA_KEY_LEN CRYPTO_AEAD_KEY_LEN
#define WRAPPED_LEN (CRYPTO_AEAD_NONCE_LEN + DATA_KEY_LEN + CRYPTO_AEAD_TAG_LEN)
#define KEK_CHECK_LEN 16

/* A key-encryption key held in memory, by generation (0: empty slot). */
typedef struct kek_slot {
	uint64_t ks_gen;
	uint8_t  ks_key[KEK_LEN];
} kek_slot;

/* ---- view.c: a subject's consents as Check decides on them, and their cache ------------- */

/* One consent, as far as a decision needs it. Purposes and categories as bit masks (bit p for
 * enum value p). */
typedef struct view_consent {
	uint8_t             vc_id[CONSENT_ID_LEN];
	uint32_t            vc_purposes;
	uint32_t            vc_categories;
	bool                vc_accepting; /* covers "the provider that accepts the referral" */
	int64_t             vc_valid_from, vc_expires, vc_withdrawn, vc_recorded;
	size_t              vc_nrecipients;
	const char *const  *vc_recipients;
} view_consent;

/* A subject's view: who created it and its consents in id order, in one allocation. */
typedef struct consent_view {
	uint8_t       cv_sid[CONSENT_ID_LEN];
	uint64_t      cv_gen;  /* the last consent generation it was found valid at (atomic) */
	uint64_t      cv_sgen; /* the subject's generation it was read at */
	char          cv_holder[RPC_ORG_ID_MAX];
	size_t        cv_n;
	view_consent *cv_consents;
} consent_view;

typedef struct view_cache view_cache;
typedef void (*view_fn)(const consent_view *v, void *arg);

struct consent_service;

/* The consent generation: raised by every write that changes a view (consent_changed, in that
 * write's transaction, which also sets the subject's generation to the new value); 0 before
 * the first. */
hv_status consent_generation(struct consent_service *cs, store_txn *txn, uint64_t *gen);
hv_status consent_subject_generation(struct consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], uint64_t *gen);
/* Call after every change to a subject's consents or its erasure, in the same transaction:
 * raises the generations and stores the subject's view again. */
hv_status consent_changed(struct consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN]);
/* At open: stores the view of every subject when the store has not got them yet (a store
 * from before consent.views), then sets VIEWS_BUILT_KEY in consent.meta. */
#define VIEWS_BUILT_KEY "views-built"
hv_status views_prepare(struct consent_service *cs);

/* Reads a subject's view in txn: its stored view (consent.views), else from its records.
 * NOT_FOUND (with consent_subject_get's message) for an unknown or erased subject; DATA_LOSS
 * when the index names a record that is missing or a stored view does not decode. */
hv_status view_load(struct consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], consent_view **out, char *err, size_t errsz);
void view_free(consent_view *v);

/* The decision rule of Check: a consent in force that covers purpose, recipient (or, when
 * accepting, the accepting provider; "" for the node) and category (0: any) allows it;
 * otherwise the closest consent names the reason, of equally close ones the newest. */
void view_decide(const consent_view *v, const char *subject_hex, int purpose,
    const char *recipient, bool accepting, int category, int64_t now, consent_decision *out);

/* At most max views (0: no cache, *out NULL). */
hv_status view_cache_open(view_cache **out, size_t max);
void view_cache_close(view_cache *c);
/* Calls fn(view, arg) under the cache's read lock when it holds sid's view and that view is
 * what txn (seeing consent generation gen) would read; *hit says whether it did. Fails only
 * when the subject's generation cannot be read. */
hv_status view_cache_with(struct consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], uint64_t gen, view_fn fn, void *arg, bool *hit);
/* Puts v (read at gen, in a read transaction) into the cache, which owns it from then on. */
void view_cache_put(view_cache *c, consent_view *v, uint64_t gen);
/* Lookups answered from the cache, and not. */
void view_cache_stats(view_cache *c, uint64_t *hits, uint64_t *misses);

#define VIEW_CACHE_MAX 131072

struct consent_service {
	store      *cs_store;
	hv_status (*cs_accepting)(void *arg, store_txn *txn, const char *subject,
	    const char *org_id, bool *yes);
	void *cs_accepting_arg;
	audit      *cs_audit;
	store_table cs_meta;
	store_table cs_subjects;
	store_table cs_personal;
	store_table cs_records;
	store_table cs_by_subject;
	store_table cs_subject_gen; /* subject id -> u64: the generation of its last change */
	store_table cs_views;       /* subject id -> its view, encoded (view.c) */
	int64_t (*cs_now)(void *arg);
	void *cs_now_arg;
	rpc_role (*cs_org_role)(void *arg, const char *org_id);
	void *cs_org_arg;

	/* Keys (vault.c). cs_kmtx guards the slots only, never across a store call. */
	char            cs_keys[PATH_MAX]; /* DATA_DIR/keys */
	pthread_mutex_t cs_kmtx;
	kek_slot        cs_kek[2];
	pthread_mutex_t cs_rotmtx; /* one rotation at a time in this process */
	uint8_t         cs_sign_secret[CRYPTO_ED25519_SECRET_LEN];
	uint8_t         cs_pub[CRYPTO_ED25519_PUBLIC_LEN];
	char            cs_key_id[CONSENT_KEY_ID_HEX];

	/* Rotation timer; NULL once stopped. */
	uint32_t   cs_rotate_s;
	hv_ticker *cs_timer;

	bool        cs_check_async; /* consent_options.check_audit_async */
	bool        cs_audit_broken; /* the chain did not verify at open (audit_at_open) */
	view_cache *cs_cache;       /* views for Check (view.c); NULL: none */
	rpc_method_impl cs_methods[16]; /* the method table registered (Check's flags vary) */

	/* Withdrawal events. */
	nng_socket cs_pubsock;
	bool       cs_pub_open;
};

int64_t consent_now(consent_service *cs);

/* ---- vault.c ------------------------------------------------------------------------- */

/* Prepares DATA_DIR/keys, recovers an interrupted rotation, loads or makes the KEK and the
 * receipt key. */
hv_status vault_open(consent_service *cs, const char *data_dir);
/* Wipes and frees every key. */
void vault_close(consent_service *cs);

/* The KEK generation the store names, inside a transaction. */
hv_status vault_generation_txn(consent_service *cs, store_txn *txn, uint64_t *gen);

/* Wraps a data key under KEK generation gen for subject id; out is WRAPPED_LEN bytes. */
hv_status vault_wrap(consent_service *cs, uint64_t gen, const uint8_t id[CONSENT_ID_LEN],
    const uint8_t dk[DATA_KEY_LEN], uint8_t out[WRAPPED_LEN]);
/* Unwraps; HV_DATA_LOSS for a wrong key, an altered wrapped key or a generation whose KEK is
 * gone. */
hv_status vault_unwrap(consent_service *cs, uint64_t gen, const uint8_t id[CONSENT_ID_LEN],
    const uint8_t *wrapped, size_t len, uint8_t dk[DATA_KEY_LEN]);

/* Seals one field (PersonalData field number) with a data key: f's nonce, ciphertext and tag
 * are malloc'd (free with vault_field_free). */
hv_status vault_seal(const uint8_t dk[DATA_KEY_LEN], const uint8_t id[CONSENT_ID_LEN],
    unsigned field, const char *text, Haven__Consent__V1__SealedField *f);
void vault_field_free(Haven__Consent__V1__SealedField *f);
/* Opens one sealed field into a malloc'd NUL-terminated string (the caller wipes and frees
 * it). HV_DATA_LOSS when it does not authenticate. */
hv_status vault_unseal(const uint8_t dk[DATA_KEY_LEN], const uint8_t id[CONSENT_ID_LEN],
    const Haven__Consent__V1__SealedField *f, char **text);
/* The field name used as associated data ("name", "contact", ...); NULL for an unknown one. */
const char *vault_field_name(unsigned field);

/* Rotates the KEK (see consent_rotate_kek). With min_age_ms > 0, does nothing (HV_OK, *count
 * 0) unless the last rotation is at least that old. */
hv_status vault_rotate(consent_service *cs, int64_t min_age_ms, uint64_t *gen,
    uint64_t *count);

/* Signs msg with the node's receipt key. */
hv_status vault_sign(consent_service *cs, const void *msg, size_t n,
    uint8_t sig[CRYPTO_ED25519_SIG_LEN]);

/* ---- receipt_verify.c (haven_consent_receipt) ----------------------------------------- */

/* The canonical form of a receipt without its signature member (malloc'd, NUL-terminated; NULL
 * when out of memory): what the node signs and a verifier checks. */
char *consent_receipt_canonical(json_t *r);

/* ---- receipt.c ----------------------------------------------------------------------- */

/* The receipt of a consent record as JSON (a new reference), with its signature member when
 * with_signature. NULL when out of memory. */
json_t *receipt_json(const Haven__Consent__V1__ConsentRecord *c, bool with_signature);

/* Signs c as the node: sets c->key_id to the node's key id and c->signature to sig, which
 * receives the Ed25519 signature of the receipt's canonical form. c's strings stay the
 * caller's. */
hv_status receipt_sign(consent_service *cs, Haven__Consent__V1__ConsentRecord *c,
    uint8_t sig[CRYPTO_ED25519_SIG_LEN]);

/* ---- consent.c: helpers the other files share ----------------------------------------- */

#define CONSENTS_PER_SUBJECT_MAX 256
#define M_CONSENT "haven.consent.v1.Consent/"

/* Formats a message (ids only) into err and returns code. */
hv_status consent_fail(char *err, size_t errsz, hv_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A BCP 47 tag, loosely (subjects.c): a 2..8 letter language subtag, then subtags of 1..8
 * letters or digits; at most 35 characters. */
bool consent_language_ok(const char *s);

/* Fills an audit entry for caller. */
void consent_audit_fill(audit_entry *e, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, int64_t now);

/* Reads a subject's record. NOT_FOUND ("no subject X", or "subject X was erased" unless
 * allow_erased). *out is the caller's (free_unpacked with NULL). */
hv_status consent_subject_get(consent_service *cs, store_txn *txn,
    const uint8_t id[CONSENT_ID_LEN], bool allow_erased,
    Haven__Consent__V1__SubjectRecord **out, char *err, size_t errsz);

/* The organisation that holds a subject: the one it was handed to (TransferSubject), else the
 * referrer that created it, "" for the operator (docs/authority.md).
 * Only the holder records, changes or withdraws consent and personal data. */
const char *consent_holder(const Haven__Consent__V1__SubjectRecord *r);

/* The holder's rule, the one place consent decides who may act on a subject: a referrer
 * organisation acts on the subjects it holds, the node's operator on the subjects it recorded
 * itself (holder "") and on any when operator_ok (audited like everyone), every other role on
 * none. HV_OK, or PERMISSION_DENIED with a
 * message in err (ids and roles only). subject is the subject's id as text. */
hv_status consent_may_act(const rpc_caller *caller, const char *holder, const char *subject,
    bool operator_ok, char *err, size_t errsz);

/* Publishes a ConsentWithdrawn (after the commit). */
void consent_publish_withdrawn(consent_service *cs, const char *consent_id, const char *subject,
    int64_t when, bool erased);

/* Appends the audit entry of a failed access in a transaction of its own (the access's own
 * transaction was rolled back). UNAVAILABLE (the store refuses writes) is not recorded. */
void consent_audit_failure(consent_service *cs, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, hv_status result);

/* ---- records.c: consents ------------------------------------------------------------- */

/* The decision of Check, without auditing. */
hv_status consent_decide(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    const char *subject_hex, int purpose, const char *recipient, bool accepting, int category,
    int64_t now, consent_decision *out);

/* A consent record by id; a subject's consent ids in id order (ids: CONSENTS_PER_SUBJECT_MAX;
 * DATA_LOSS for more). */
hv_status consent_record_get(consent_service *cs, store_txn *txn,
    const uint8_t cid[CONSENT_ID_LEN], Haven__Consent__V1__ConsentRecord **out);
hv_status consent_record_ids(consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], uint8_t (*ids)[CONSENT_ID_LEN], size_t *n);

/* Withdraws every consent of a subject in force (at erasure); their ids go to ids (up to
 * CONSENTS_PER_SUBJECT_MAX), *n counts them. */
hv_status consent_withdraw_all_txn(consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], int64_t now, char (*ids)[CONSENT_ID_HEX], size_t *n);

/* ---- handlers ----------------------------------------------------------------------- */

#define HANDLER(name)                                                                      \
	hv_status name(rpc_call *call, void *svc, const ProtobufCMessage *req,                \
	    ProtobufCMessage **reply)
HANDLER(consent_h_create_subject);
HANDLER(consent_h_get_subject);
HANDLER(consent_h_erase_subject);
HANDLER(consent_h_transfer_subject);
HANDLER(consent_h_grant);
HANDLER(consent_h_withdraw);
HANDLER(consent_h_get);
HANDLER(consent_h_list);
HANDLER(consent_h_check);
HANDLER(consent_h_get_receipt);
HANDLER(consent_h_audit_verify);
HANDLER(consent_h_audit_list);

#endif
