/*
 * consent_receipt.h - receipt.c: a consent record as receipt JSON and the node's signature
 * over it (consent_receipt_verify, for anyone, is in consent.h). Stands on consent_vault.h.
 */
#ifndef HAVEN_CONSENT_RECEIPT_H
#define HAVEN_CONSENT_RECEIPT_H

#include <jansson.h>

#include "consent_vault.h"

/* The receipt of a consent record as JSON (a new reference), with its signature member when
 * with_signature. NULL when out of memory. */
json_t *receipt_json(const Haven__Consent__V1__ConsentRecord *c, bool with_signature);

/* Signs c as the node: sets c->key_id to the node's key id and c->signature to sig, which
 * receives the Ed25519 signature of the receipt's canonical form. c's strings stay the
 * caller's. */
hv_status receipt_sign(consent_service *cs, Haven__Consent__V1__ConsentRecord *c,
    uint8_t sig[CRYPTO_ED25519_SIG_LEN]);

#endif
