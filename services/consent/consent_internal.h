/*
 * consent_internal.h - the consent service's state, the one thing every file of the library
 * shares. Not installed; only the library's own files include it.
 *
 * The library's files call each other in layers, downwards only, each with its own header:
 *   receipt_verify.c                a receipt's canonical form, verification (consent.h; its
 *                                   own library, haven_consent_receipt, for the CLI)
 *   consent_names.c                 enum names (consent.h)
 *   base.c        consent_base.h    clock, ids, messages, audit entries, events, table reads
 *   keyfile.c     consent_keyfile.h key files on disk
 *   vault.c       consent_vault.h   the KEK, data keys, sealing, rotation, the signing key
 *   receipt.c     consent_receipt.h receipts
 *   view.c        consent_view.h    a subject's consents as Check decides on them, the cache
 *   personal.c    consent_personal.h  personal data: validation, decrypted fields
 *   check.c       consent_check.h   Check, and the one "decide and audit" of every check
 *   records.c     consent_records.h grant, withdraw, read consents
 *   subjects.c    consent_subjects.h  create, read, update, erase, hand over a subject
 *   expiry.c                        the expiry sweep: an expired consent acts (consent.h)
 *   sealed_text.c                   sealed free text for other services (consent.h)
 *   consent_rpc.c, audit_rpc.c      the handlers (consent_rpc.h)
 *   consent.c                       the service's life cycle (consent.h)
 * A file includes the headers of the files below it, never of those above.
 */
#ifndef HAVEN_CONSENT_INTERNAL_H
#define HAVEN_CONSENT_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>

#include "haven/crypto.h"
#include "haven/ids.h"
#include "haven/ticker.h"

#include "consent.h"

#include "haven/consent/v1/store.pb-c.h"

#define KEK_LEN       CRYPTO_AEAD_KEY_LEN
#define DATA_KEY_LEN  CRYPTO_AEAD_KEY_LEN
#define WRAPPED_LEN   (CRYPTO_AEAD_NONCE_LEN + DATA_KEY_LEN + CRYPTO_AEAD_TAG_LEN)
#define KEK_CHECK_LEN 16

/* A key-encryption key held in memory, by generation (0: empty slot). */
typedef struct kek_slot {
	uint64_t ks_gen;
	uint8_t  ks_key[KEK_LEN];
} kek_slot;

typedef struct view_cache view_cache; /* consent_view.h */

/* The audit chain is verified again this often (and once at open). */
#define CONSENT_AUDIT_VERIFY_S 86400

#define VIEW_CACHE_MAX           131072
#define CONSENTS_PER_SUBJECT_MAX 256
#define M_CONSENT                "haven.consent.v1.Consent/"

struct consent_service {
	store *cs_store;
	hv_status (*cs_accepting)(void *arg, store_txn *txn, const char *subject,
	    const char *org_id, bool *yes);
	void                  *cs_accepting_arg;
	struct alerts_service *cs_alerts; /* NULL: no alerts */
	audit                 *cs_audit;
	store_table            cs_meta;
	store_table            cs_subjects;
	store_table            cs_personal;
	store_table            cs_records;
	store_table            cs_by_subject;
	store_table cs_subject_gen; /* subject id -> u64: the generation of its last change */
	store_table cs_views;       /* subject id -> its view, encoded (view.c) */
	store_table cs_expiries;    /* be64 expires_ms || consent id -> "": to apply (expiry.c) */
	int64_t (*cs_now)(void *arg);
	void *cs_now_arg;
	rpc_role (*cs_org_role)(void *arg, const char *org_id);
	void *cs_org_arg;
	hv_status (*cs_erased)(void *arg, const char *subject,
	    bool expired); /* consent_options.subject_erased */
	void *cs_erased_arg;

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
	/* The expiry sweep's timer (expiry.c); NULL once stopped. */
	uint32_t   cs_expiry_s;
	hv_ticker *cs_expiry;

	/* The audit chain's verification (consent.c, verify_round): at open and every
	 * CONSENT_AUDIT_VERIFY_S on a ticker of its own, so that a long chain never holds up the
	 * start; the stop flag ends a walk in progress at shutdown. */
	hv_ticker  *cs_verify;
	atomic_bool cs_verify_stop;
	atomic_int  cs_audit_state; /* consent_audit_state: the last verification's finding */

	bool            cs_check_async; /* consent_options.check_audit_async */
	view_cache     *cs_cache;       /* views for Check (view.c); NULL: none */
	rpc_method_impl cs_methods[16]; /* the method table registered (Check's flags vary) */

	/* Withdrawal events. */
	nng_socket cs_pubsock;
	bool       cs_pub_open;
};

/* ---- receipt_verify.c (haven_consent_receipt, the lowest file: the CLI links it alone) ---- */

/* The canonical form of a receipt without its signature member (malloc'd, NUL-terminated; NULL
 * when out of memory): what the node signs and a verifier checks. */
char *consent_receipt_canonical(json_t *r);

#endif
