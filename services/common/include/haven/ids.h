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

/* Whether s is free text fit to store and show: min..max bytes (NULL counts as empty) of
 * well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF) without C0
 * controls, DEL or C1 controls, and without the invisible characters that make text read
 * otherwise than it is stored: bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E,
 * U+2066..U+2069: "Opvang <U+202E>maretsmA" shows as "Opvang Amsterdam"), U+2028 and U+2029
 * (line breaks), and format characters no script needs (soft hyphen U+00AD, U+180E,
 * U+2060..U+2064, U+206A..U+206F, U+FEFF, U+FFF9..U+FFFB, the tag characters
 * U+E0000..U+E007F). Zero-width space, non-joiner and joiner (U+200B..U+200D) are allowed:
 * Thai, Khmer, Persian, Indic scripts and emoji need them. Names, notes, contacts and reasons
 * all pass through it. */
bool ids_text_ok(const char *s, size_t min, size_t max);

#endif
