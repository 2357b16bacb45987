/*
 * receipt_verify.c - a consent receipt's canonical form, and verifying a receipt with nothing
 * but the node's public key (receipt.c describes the form). Its own small library
 * (haven_consent_receipt), so that the CLI verifies receipts without linking the consent
 * server.
 */
#include "consent_internal.h"

#include "haven/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
consent_receipt_canonical(json_t *r)
{
	return (json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII));
}

static hv_status
why_status(char *why, size_t whysz, hv_status st, const char *msg)
{
	if (why != NULL && whysz > 0) {
		snprintf(why, whysz, "%s", msg);
	}
	return (st);
}

hv_status
consent_receipt_verify(const char *json, size_t len, const uint8_t pub[32], char *why, size_t whysz)
{
	json_t      *r = NULL;
	json_error_t err;
	const char  *fmt, *sig64, *key_id;
	uint8_t      sig[CRYPTO_ED25519_SIG_LEN + 3];
	uint8_t      md[CRYPTO_SHA256_LEN];
	char         want_id[CONSENT_KEY_ID_HEX];
	char        *text = NULL;
	size_t       siglen;
	hv_status    st;

	if (json == NULL || (r = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err)) == NULL ||
	    !json_is_object(r)) {
		st = why_status(why, whysz, HV_INVALID_ARGUMENT, "not a JSON object");
		goto out;
	}
	if ((fmt = json_string_value(json_object_get(r, "format"))) == NULL ||
	    strcmp(fmt, CONSENT_RECEIPT_FORMAT) != 0 ||
	    !json_is_object(json_object_get(r, "consent"))) {
		st = why_status(why, whysz, HV_INVALID_ARGUMENT,
		    "not a consent receipt (format " CONSENT_RECEIPT_FORMAT ")");
		goto out;
	}
	if ((sig64 = json_string_value(json_object_get(r, "signature"))) == NULL ||
	    crypto_b64url_decode(sig, sizeof(sig), &siglen, sig64, strlen(sig64)) != HV_OK ||
	    siglen != CRYPTO_ED25519_SIG_LEN) {
		st = why_status(why, whysz, HV_UNAUTHENTICATED,
		    "the signature is missing or malformed");
		goto out;
	}
	crypto_sha256(md, pub, CRYPTO_ED25519_PUBLIC_LEN);
	for (size_t i = 0; i < sizeof(md); i++) {
		snprintf(want_id + 2 * i, 3, "%02x", md[i]);
	}
	if ((key_id = json_string_value(json_object_get(r, "key_id"))) == NULL ||
	    strcmp(key_id, want_id) != 0) {
		st = why_status(why, whysz, HV_UNAUTHENTICATED,
		    "the receipt names another signing key (key_id)");
		goto out;
	}
	json_object_del(r, "signature");
	if ((text = consent_receipt_canonical(r)) == NULL) {
		st = why_status(why, whysz, HV_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if (crypto_ed25519_verify(pub, text, strlen(text), sig, siglen) != HV_OK) {
		st = why_status(why, whysz, HV_UNAUTHENTICATED,
		    "the signature does not match: the receipt was changed");
		goto out;
	}
	st = why_status(why, whysz, HV_OK, "");
out:
	free(text);
	json_decref(r);
	return (st);
}
