/*
 * fuzz_receipt.c - consent receipt verification (services/consent/receipt.c): the input is a
 * receipt as GetReceipt returns it and `haven consent verify` reads it, checked with
 * consent_receipt_verify against the seed corpus's signing key (so that the corpus's receipts
 * verify and mutations reach the signature check).
 */
#include "fuzz_util.h"

#include "consent.h"
#include "haven/crypto.h"
#include "haven/log.h"

#include <stdlib.h>
#include <string.h>

static uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("haven-fuzz", LOG_LEVEL_OFF);
	if (crypto_ed25519_public(FUZZ_RECEIPT_KEY_PEM, strlen(FUZZ_RECEIPT_KEY_PEM), pub) !=
	    HV_OK) {
		abort();
	}
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char      why[256] = "";
	char      tiny[4];
	hv_status st, again;

	st = consent_receipt_verify((const char *) data, size, pub, why, sizeof(why));
	if (st != HV_OK && why[0] == '\0') {
		abort(); /* a refusal says why */
	}
	/* The same answer without a why, and with one too small for the message. */
	again = consent_receipt_verify((const char *) data, size, pub, NULL, 0);
	if (again != st ||
	    consent_receipt_verify((const char *) data, size, pub, tiny, sizeof(tiny)) != st) {
		abort();
	}
	return (0);
}
