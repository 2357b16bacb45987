/*
 * fuzz_util.h - what the libFuzzer harnesses under fuzz/ share: the entry points libFuzzer
 * calls, and a scratch file for the parsers that read a path.
 */
#ifndef HAVEN_FUZZ_UTIL_H
#define HAVEN_FUZZ_UTIL_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data over the process's scratch file (made at the first call in $TMPDIR, or /tmp,
 * removed at exit) and returns its path, alive until the process ends. Aborts when the file
 * cannot be written: a harness that cannot feed its parser finds nothing. */
const char *fuzz_scratch_file(const uint8_t *data, size_t size);

/* A NUL-terminated malloc'd copy of data (the caller frees); aborts when out of memory. */
char *fuzz_strndup(const uint8_t *data, size_t size);

/* Every service of the node, in a fixed order (seeds name request types by their place in it):
 * Admin, Auth, Capacity, Consent, Audit, Referrals, Health, Diagnostics. */
extern const ProtobufCServiceDescriptor *const fuzz_services[];
extern const size_t                            fuzz_nservices;

/* The input type of method k of all methods of fuzz_services counted in order (k modulo their
 * number): how fuzz_pbjson picks a request type by the first byte of its input. */
const ProtobufCMessageDescriptor *fuzz_request_type(unsigned k);

/* The Ed25519 key receipts of the seed corpus are signed with (fuzz_seeds) and fuzz_receipt
 * verifies them with. Made for fuzzing only; it signs nothing real. */
#define FUZZ_RECEIPT_KEY_PEM                                                                       \
	"-----BEGIN PRIVATE KEY-----\n"                                                            \
	"MC4CAQAwBQYDK2VwBCIEIDGGFOgyLi0zOeJQxBdm1uGlBuMIZbOqGzSzjcoUWw/R\n"                       \
	"-----END PRIVATE KEY-----\n"

#endif
