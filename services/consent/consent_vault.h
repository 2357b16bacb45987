/*
 * consent_vault.h - vault.c: the key-encryption key (KEK) in memory and in the store, the
 * per-subject data keys it wraps, the sealing of personal fields, the rotation of the KEK and
 * the node's receipt signing key. Stands on consent_keyfile.h (the key files) and
 * consent_base.h.
 */
#ifndef HAVEN_CONSENT_VAULT_H
#define HAVEN_CONSENT_VAULT_H

#include "consent_base.h"

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
void      vault_field_free(Haven__Consent__V1__SealedField *f);
/* Opens one sealed field into a malloc'd NUL-terminated string (the caller wipes and frees
 * it). HV_DATA_LOSS when it does not authenticate. */
hv_status vault_unseal(const uint8_t dk[DATA_KEY_LEN], const uint8_t id[CONSENT_ID_LEN],
    const Haven__Consent__V1__SealedField *f, char **text);
/* The field name used as associated data ("name", "contact", ...); NULL for an unknown one. */
const char *vault_field_name(unsigned field);

/* Rotates the KEK (see consent_rotate_kek). With min_age_ms > 0, does nothing (HV_OK, *count
 * 0) unless the last rotation is at least that old. */
hv_status vault_rotate(consent_service *cs, int64_t min_age_ms, uint64_t *gen, uint64_t *count);

/* Signs msg with the node's receipt key. */
hv_status vault_sign(consent_service *cs, const void *msg, size_t n,
    uint8_t sig[CRYPTO_ED25519_SIG_LEN]);

#endif
