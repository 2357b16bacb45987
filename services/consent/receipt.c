/*
 * receipt.c - consent receipts: a consent record as receipt JSON and the node's signature
 * over its canonical form (vault_sign; the form and verification are receipt_verify.c's). The
 * enum names it writes are consent_names.c's.
 *
 * The canonical form of a receipt is its JSON object without the "signature" member, written
 * with members sorted by key, no whitespace, "," and ":" as separators and non-ASCII escaped
 * (jansson's JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII). A receipt holds only ASCII
 * strings of small alphabets, integers below 2^53, booleans, null and arrays, for which this
 * is also RFC 8785 (JCS) and what Python's json.dumps(r, sort_keys=True, separators=(",", ":"))
 * prints, so anyone can verify a receipt without haven. The signature is Ed25519 over those
 * bytes, base64url without padding. Verification (receipt_verify.c) parses the receipt
 * (refusing duplicate keys), removes "signature", writes the canonical form again and
 * verifies: any field changed, added, removed or retyped changes the bytes.
 */
#include "consent_receipt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the receipt ---------------------------------------------------------------------- */

/* Adds a member; remembers a failure (a NULL value: out of memory or not UTF-8) in *bad. */
static void
put(json_t *obj, const char *key, json_t *v, int *bad)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0) {
		*bad = 1;
	}
}

static void
push(json_t *arr, json_t *v, int *bad)
{
	if (v == NULL || json_array_append_new(arr, v) != 0) {
		*bad = 1;
	}
}

json_t *
receipt_json(const Haven__Consent__V1__ConsentRecord *c, bool with_signature)
{
	json_t *r          = json_object();
	json_t *body       = json_object();
	json_t *purposes   = json_array();
	json_t *recipients = json_array();
	json_t *categories = json_array();
	int     bad        = r == NULL || body == NULL || purposes == NULL || recipients == NULL ||
	    categories == NULL;

	if (bad) {
		json_decref(r);
		json_decref(body);
		json_decref(purposes);
		json_decref(recipients);
		json_decref(categories);
		return (NULL);
	}
	for (size_t i = 0; i < c->n_purposes; i++) {
		push(purposes, json_string(consent_purpose_name((int) c->purposes[i])), &bad);
	}
	for (size_t i = 0; i < c->n_recipients; i++) {
		push(recipients, json_string(c->recipients[i]), &bad);
	}
	for (size_t i = 0; i < c->n_categories; i++) {
		push(categories, json_string(consent_category_name((int) c->categories[i])), &bad);
	}
	put(body, "id", json_string(c->id), &bad);
	put(body, "subject", json_string(c->subject), &bad);
	put(body, "purposes", purposes, &bad);
	put(body, "recipients", recipients, &bad);
	put(body, "accepting_provider", json_boolean(c->accepting_provider), &bad);
	put(body, "categories", categories, &bad);
	put(body, "given_by", json_string(consent_given_by_name((int) c->given_by)), &bad);
	put(body, "method", json_string(consent_method_name((int) c->method)), &bad);
	put(body, "language", json_string(c->language), &bad);
	put(body, "valid_from", json_integer(c->valid_from_ms), &bad);
	put(body, "expires", json_integer(c->expires_ms), &bad);
	put(body, "withdrawn_at",
	    c->withdrawn_at_ms != 0 ? json_integer(c->withdrawn_at_ms) : json_null(), &bad);
	put(body, "recorded_by", json_string(c->recorded_by), &bad);
	put(body, "recorded_at", json_integer(c->recorded_at_ms), &bad);
	put(body, "version", json_integer((json_int_t) c->version), &bad);
	put(r, "format", json_string(CONSENT_RECEIPT_FORMAT), &bad);
	put(r, "key_id", json_string(c->key_id), &bad);
	put(r, "consent", body, &bad);
	if (with_signature) {
		char sig[128];
		if (crypto_b64url_encode(sig, sizeof(sig), c->signature.data, c->signature.len) !=
		    HV_OK) {
			bad = 1;
		} else {
			put(r, "signature", json_string(sig), &bad);
		}
	}
	if (bad) {
		json_decref(r);
		return (NULL);
	}
	return (r);
}

hv_status
receipt_sign(consent_service *cs, Haven__Consent__V1__ConsentRecord *c,
    uint8_t sig[CRYPTO_ED25519_SIG_LEN])
{
	json_t   *r;
	char     *text = NULL;
	hv_status st   = HV_RESOURCE_EXHAUSTED;

	c->key_id         = cs->cs_key_id;
	c->signature.data = NULL;
	c->signature.len  = 0;
	if ((r = receipt_json(c, false)) == NULL || (text = consent_receipt_canonical(r)) == NULL) {
		goto out;
	}
	if ((st = vault_sign(cs, text, strlen(text), sig)) != HV_OK) {
		goto out;
	}
	c->signature.data = sig;
	c->signature.len  = CRYPTO_ED25519_SIG_LEN;
out:
	free(text);
	json_decref(r);
	return (st);
}
