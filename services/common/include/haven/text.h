/*
 * text.h - the one rule for each kind of text a peer sends: free text (names, notes,
 * contacts, reasons), BCP 47 language tags and tokens (short words of a small alphabet, such
 * as an accessibility entry). Every service and the CLI check with these, so a value one
 * accepts is never refused by another (a service's language is matched against a person's).
 *
 * Pure functions, no allocation, safe from any thread. NULL is never valid (but counts as
 * empty free text where min is 0).
 */
#ifndef HAVEN_TEXT_H
#define HAVEN_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The longest language tag taken, in bytes: RFC 5646 section 4.4.1's minimum buffer, which
 * holds every tag of language, extlang, script, region and a variant. */
#define TEXT_LANG_MAX 35

/* Whether s is free text fit to store and show: min..max bytes (NULL counts as empty) of
 * well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF) without C0
 * controls, DEL or C1 controls, and without the invisible characters that make text read
 * otherwise than it is stored: bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E,
 * U+2066..U+2069: "Opvang <U+202E>maretsmA" shows as "Opvang Amsterdam"), U+2028 and U+2029
 * (line breaks), and format characters no script needs (soft hyphen U+00AD, U+180E,
 * U+2060..U+2064, U+206A..U+206F, U+FEFF, U+FFF9..U+FFFB, the tag characters
 * U+E0000..U+E007F). Zero-width space, non-joiner and joiner (U+200B..U+200D) are allowed:
 * Thai, Khmer, Persian, Indic scripts and emoji need them. */
bool text_free_ok(const char *s, size_t min, size_t max);

/* Whether s is a well-formed BCP 47 language tag (RFC 5646 section 2.1's langtag or a
 * private-use tag) of at most TEXT_LANG_MAX bytes, in any letter case:
 *   language   2-3 letters (with up to three 3-letter extlangs), or 4-8 letters
 *   script     4 letters                       ("zh-Hant")
 *   region     2 letters or 3 digits           ("pt-BR", "es-419")
 *   variant    5-8 letters/digits, or a digit and 3 letters/digits ("sl-rozaj", "de-1996")
 *   extension  a singleton other than x, then subtags of 2-8 letters/digits
 *   private    x, then subtags of 1-8 letters/digits ("x-klingon", "en-x-pirate")
 * in that order, separated by single '-'. Well-formed only: whether a subtag is registered
 * is not checked (a new language must not wait for haven's copy of the registry).
 * Tags are compared case-insensitively (strcasecmp) where they are matched. */
bool text_lang_ok(const char *s);

/* The rule in words, for error and usage messages about a refused tag. */
#define TEXT_LANG_RULE "a BCP 47 language tag such as nl, pt-BR or zh-Hant-TW, at most 35 bytes"

/* Whether s is a token: 1..max bytes of [a-z0-9-] ("wheelchair", "step-free"). */
bool text_token_ok(const char *s, size_t max);

/* The rule in words, with the maximum as a %d argument after it. */
#define TEXT_TOKEN_RULE "1 to %d characters of a-z 0-9 -"

#endif
