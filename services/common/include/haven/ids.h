/*
 * ids.h - record ids: the one rule for what an id may look like, and random ids.
 *
 * An id names a record in every table and message of the node (an organisation, a service, a
 * hold, ...). It is 1..63 bytes of [a-z0-9._-], so it is safe as an LMDB key, in a file name,
 * a URL, a log line and a shell word, and it carries no personal data. A generated id is a
 * prefix that says what it names ("svc-", "hold-") and random lower-case hex digits from the
 * CSPRNG, so ids do not reveal how many records exist or in which order they were made.
 */
#ifndef HAVEN_IDS_H
#define HAVEN_IDS_H

#include <stdbool.h>
#include <stddef.h>

#include "haven/status.h"

#define IDS_MAX 64 /* bytes of the longest id, including the NUL */

/* Whether s is 1..63 bytes of [a-z0-9._-]. NULL is not. */
bool ids_valid(const char *s);

/* Writes prefix followed by nhex random hex digits and a NUL to out (outsz bytes).
 * HV_INVALID_ARGUMENT when nhex is 0 or the result would not be a valid id or not fit in
 * outsz; HV_INTERNAL when the random generator fails. out is "" after a failure. */
hv_status ids_generate(char *out, size_t outsz, const char *prefix, size_t nhex);

#endif
