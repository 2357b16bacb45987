/*
 * status.h - the one status enum used end to end in haven.
 *
 * The codes are gRPC's canonical status codes, with the same numbers and meanings, so that a
 * haven reply means what a gRPC reply would. 0 is success. Errors from nng, LMDB, errno and
 * OpenSSL are converted to these at the module boundary where they arise; nothing above that
 * boundary sees a library's own error numbers.
 */
#ifndef HAVEN_STATUS_H
#define HAVEN_STATUS_H

#include <stddef.h>

typedef enum hv_status {
	HV_OK                  = 0,
	HV_CANCELLED           = 1,
	HV_UNKNOWN             = 2,
	HV_INVALID_ARGUMENT    = 3,
	HV_DEADLINE_EXCEEDED   = 4,
	HV_NOT_FOUND           = 5,
	HV_ALREADY_EXISTS      = 6,
	HV_PERMISSION_DENIED   = 7,
	HV_RESOURCE_EXHAUSTED  = 8,
	HV_FAILED_PRECONDITION = 9,
	HV_ABORTED             = 10,
	HV_OUT_OF_RANGE        = 11,
	HV_UNIMPLEMENTED       = 12,
	HV_INTERNAL            = 13,
	HV_UNAVAILABLE         = 14,
	HV_DATA_LOSS           = 15,
	HV_UNAUTHENTICATED     = 16,
} hv_status;

#define HV_STATUS_MAX HV_UNAUTHENTICATED

/* The canonical upper-case name ("INVALID_ARGUMENT"); "UNKNOWN" for a value outside the set.
 * The string is static. */
const char *hv_status_name(int code);

/* Parses a canonical name (case-insensitive). Returns 0 and sets *out, or -1. */
int hv_status_parse(const char *name, hv_status *out);

/* Converts an nng error number (NNG_ETIMEDOUT, NNG_ECLOSED, ...) to a status. */
hv_status hv_status_from_nng(int nng_err);

/* Converts an errno value to a status. */
hv_status hv_status_from_errno(int err);

/* Formats a message into err (errsz bytes, cut short to fit; err may be NULL) and returns
 * code, so that a check reads `return (hv_fail(err, errsz, HV_INVALID_ARGUMENT, "..."));`.
 * The message names ids, numbers and enum values, never personal data. */
hv_status hv_fail(char *err, size_t errsz, hv_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
