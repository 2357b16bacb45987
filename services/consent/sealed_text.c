/*
 * sealed_text.c - free text that other services keep about a subject (a referral's note, the free
 * part of a reason), sealed under the subject's data key, so that erasing the subject
 * (crypto-shredding: the data key destroyed, then the KEK rotated) makes every copy of it
 * unreadable, in the store file, its free pages and any backup.
 *
 * Sealed form: version (1) || nonce (12) || tag (16) || ciphertext (as long as the text).
 * Associated data: "haven-text/1" || subject id (16 bytes) || context, where the context names
 * the record and field the caller keeps it in ("ref-.../note"): a sealed text opens only for
 * its own subject and its own place, so it cannot be moved to another record or subject.
 */
#include "consent_vault.h"

#include <stdio.h>
#include <string.h>

#define TEXT_VERSION    1
#define TEXT_AAD_PREFIX "haven-text/1"
#define TEXT_AAD_MAX    (sizeof(TEXT_AAD_PREFIX) - 1 + CONSENT_ID_LEN + CONSENT_TEXT_CONTEXT_MAX)

/* Checks the subject and the context, builds the associated data and unwraps the subject's
 * data key. NOT_FOUND for an unknown or erased subject. */
static hv_status
text_key(consent_service *cs, store_txn *txn, const char *subject, const char *context,
    uint8_t dk[DATA_KEY_LEN], uint8_t aad[TEXT_AAD_MAX], size_t *aadlen)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	uint8_t                            sid[CONSENT_ID_LEN];
	size_t                             plen = sizeof(TEXT_AAD_PREFIX) - 1, clen;
	char                               err[CONSENT_MSG_MAX];
	hv_status                          st;

	if (subject == NULL || consent_id_parse(subject, sid) != 0 || context == NULL ||
	    (clen = strlen(context)) == 0 || clen > CONSENT_TEXT_CONTEXT_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	memcpy(aad, TEXT_AAD_PREFIX, plen);
	memcpy(aad + plen, sid, CONSENT_ID_LEN);
	memcpy(aad + plen + CONSENT_ID_LEN, context, clen);
	*aadlen = plen + CONSENT_ID_LEN + clen;
	if ((st = consent_subject_get(cs, txn, sid, false, &rec, err, sizeof(err))) != HV_OK) {
		return (st);
	}
	st = vault_unwrap(cs, rec->kek_generation, sid, rec->wrapped_key.data, rec->wrapped_key.len,
	    dk);
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

hv_status
consent_text_seal_txn(consent_service *cs, store_txn *txn, const char *subject, const char *context,
    const char *text, size_t len, uint8_t *out, size_t outsz)
{
	uint8_t   dk[DATA_KEY_LEN];
	uint8_t   aad[TEXT_AAD_MAX];
	size_t    aadlen = 0;
	hv_status st;

	if (cs == NULL || text == NULL || out == NULL || len > CONSENT_TEXT_MAX ||
	    outsz != CONSENT_TEXT_SEALED_LEN(len)) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = text_key(cs, txn, subject, context, dk, aad, &aadlen)) != HV_OK) {
		goto out;
	}
	out[0] = TEXT_VERSION;
	if ((st = crypto_random(out + 1, CRYPTO_AEAD_NONCE_LEN)) != HV_OK) {
		goto out;
	}
	st = crypto_aead_encrypt(out + CONSENT_TEXT_OVERHEAD, out + 1 + CRYPTO_AEAD_NONCE_LEN, dk,
	    out + 1, aad, aadlen, text, len);
out:
	crypto_wipe(dk, sizeof(dk));
	if (st != HV_OK) {
		crypto_wipe(out, outsz);
	}
	return (st);
}

hv_status
consent_text_open_txn(consent_service *cs, store_txn *txn, const char *subject, const char *context,
    const uint8_t *sealed, size_t len, char *text, size_t textsz)
{
	uint8_t   dk[DATA_KEY_LEN];
	uint8_t   aad[TEXT_AAD_MAX];
	size_t    aadlen = 0, n;
	hv_status st;

	if (cs == NULL || sealed == NULL || text == NULL || len < CONSENT_TEXT_OVERHEAD ||
	    textsz != len - CONSENT_TEXT_OVERHEAD + 1) {
		return (HV_INVALID_ARGUMENT);
	}
	n = len - CONSENT_TEXT_OVERHEAD;
	if (sealed[0] != TEXT_VERSION || n > CONSENT_TEXT_MAX) {
		return (HV_DATA_LOSS);
	}
	if ((st = text_key(cs, txn, subject, context, dk, aad, &aadlen)) != HV_OK) {
		goto out;
	}
	if (crypto_aead_decrypt((uint8_t *) text, dk, sealed + 1,
	        sealed + 1 + CRYPTO_AEAD_NONCE_LEN, aad, aadlen, sealed + CONSENT_TEXT_OVERHEAD,
	        n) != HV_OK) {
		st = HV_DATA_LOSS;
		goto out;
	}
	text[n] = '\0';
out:
	crypto_wipe(dk, sizeof(dk));
	if (st != HV_OK) {
		crypto_wipe(text, textsz);
	}
	return (st);
}

hv_status
consent_ref_seal(void *arg, store_txn *txn, const char *subject, const char *context,
    const char *text, size_t len, uint8_t *out, size_t outsz)
{
	return (consent_text_seal_txn(arg, txn, subject, context, text, len, out, outsz));
}

hv_status
consent_ref_open(void *arg, store_txn *txn, const char *subject, const char *context,
    const uint8_t *sealed, size_t len, char *text, size_t textsz)
{
	return (consent_text_open_txn(arg, txn, subject, context, sealed, len, text, textsz));
}
