/*
 * status.c - names of the canonical status codes, and the conversions from nng and errno.
 * LMDB's errors are converted in store_lmdb.c, OpenSSL's in crypto*.c.
 */
#include "haven/status.h"

#include <errno.h>
#include <nng/nng.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <strings.h>

static const char *const names[] = {
	[HV_OK]                  = "OK",
	[HV_CANCELLED]           = "CANCELLED",
	[HV_UNKNOWN]             = "UNKNOWN",
	[HV_INVALID_ARGUMENT]    = "INVALID_ARGUMENT",
	[HV_DEADLINE_EXCEEDED]   = "DEADLINE_EXCEEDED",
	[HV_NOT_FOUND]           = "NOT_FOUND",
	[HV_ALREADY_EXISTS]      = "ALREADY_EXISTS",
	[HV_PERMISSION_DENIED]   = "PERMISSION_DENIED",
	[HV_RESOURCE_EXHAUSTED]  = "RESOURCE_EXHAUSTED",
	[HV_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
	[HV_ABORTED]             = "ABORTED",
	[HV_OUT_OF_RANGE]        = "OUT_OF_RANGE",
	[HV_UNIMPLEMENTED]       = "UNIMPLEMENTED",
	[HV_INTERNAL]            = "INTERNAL",
	[HV_UNAVAILABLE]         = "UNAVAILABLE",
	[HV_DATA_LOSS]           = "DATA_LOSS",
	[HV_UNAUTHENTICATED]     = "UNAUTHENTICATED",
};

const char *
hv_status_name(int code)
{
	if (code < 0 || code > HV_STATUS_MAX) {
		return ("UNKNOWN");
	}
	return (names[code]);
}

int
hv_status_parse(const char *name, hv_status *out)
{
	if (name == NULL) {
		return (-1);
	}
	for (int i = 0; i <= HV_STATUS_MAX; i++) {
		if (strcasecmp(name, names[i]) == 0) {
			*out = (hv_status) i;
			return (0);
		}
	}
	return (-1);
}

hv_status
hv_status_from_nng(int nng_err)
{
	switch (nng_err) {
	case 0:
		return (HV_OK);
	case NNG_ETIMEDOUT:
		return (HV_DEADLINE_EXCEEDED);
	case NNG_ECANCELED:
		return (HV_CANCELLED);
	case NNG_ENOMEM:
	case NNG_EMSGSIZE:
	case NNG_ENOSPC:
		return (HV_RESOURCE_EXHAUSTED);
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
	case NNG_EBADTYPE:
		return (HV_INVALID_ARGUMENT);
	case NNG_EPERM:
	case NNG_EPEERAUTH:
		return (HV_PERMISSION_DENIED);
	case NNG_EADDRINUSE:
	case NNG_EEXIST:
		return (HV_ALREADY_EXISTS);
	case NNG_ENOENT:
		return (HV_NOT_FOUND);
	case NNG_ECRYPTO:
		return (HV_UNAUTHENTICATED);
	case NNG_ECLOSED:
	case NNG_ECONNREFUSED:
	case NNG_ECONNRESET:
	case NNG_ECONNABORTED:
	case NNG_ECONNSHUT:
	case NNG_EUNREACHABLE:
	case NNG_EAGAIN:
	case NNG_ESTATE:
		return (HV_UNAVAILABLE);
	case NNG_EPROTO:
		return (HV_DATA_LOSS);
	default:
		return (HV_INTERNAL);
	}
}

hv_status
hv_status_from_errno(int err)
{
	switch (err) {
	case 0:
		return (HV_OK);
	case ENOENT:
		return (HV_NOT_FOUND);
	case EEXIST:
		return (HV_ALREADY_EXISTS);
	case EACCES:
	case EPERM:
		return (HV_PERMISSION_DENIED);
	case ENOMEM:
	case ENOSPC:
	case EMFILE:
	case ENFILE:
		return (HV_RESOURCE_EXHAUSTED);
	case EINVAL:
	case ENAMETOOLONG:
		return (HV_INVALID_ARGUMENT);
	case EIO:
		return (HV_DATA_LOSS);
	case EAGAIN:
	case EBUSY:
		return (HV_UNAVAILABLE);
	case ETIMEDOUT:
		return (HV_DEADLINE_EXCEEDED);
	default:
		return (HV_INTERNAL);
	}
}

hv_status
hv_fail(char *err, size_t errsz, hv_status code, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errsz > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return (code);
}
