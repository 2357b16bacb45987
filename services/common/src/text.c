/*
 * text.c - free text, language tags and tokens: the checks of text.h.
 */
#include "haven/text.h"

#include <stdint.h>
#include <string.h>

/* Invisible characters that change how the text around them reads (see text.h): bidirectional
 * controls, line and paragraph separators, and format characters no script needs. Zero-width
 * space, non-joiner and joiner (U+200B..U+200D) pass: Thai, Khmer, Persian, Indic scripts and
 * emoji use them. */
static bool
hidden_char(uint32_t cp)
{
	return (cp == 0x00ad ||                /* soft hyphen */
	    cp == 0x061c ||                    /* Arabic letter mark */
	    cp == 0x180e ||                    /* Mongolian vowel separator */
	    cp == 0x200e || cp == 0x200f ||    /* left-to-right, right-to-left mark */
	    (cp >= 0x2028 && cp <= 0x202e) ||  /* separators; embeddings, overrides */
	    (cp >= 0x2060 && cp <= 0x2064) ||  /* word joiner, invisible operators */
	    (cp >= 0x2066 && cp <= 0x206f) ||  /* isolates; deprecated format characters */
	    cp == 0xfeff ||                    /* zero-width no-break space (BOM) */
	    (cp >= 0xfff9 && cp <= 0xfffb) ||  /* interlinear annotation */
	    (cp >= 0xe0000 && cp <= 0xe007f)); /* tags: invisible copies of ASCII */
}

/* Whether s is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF)
 * without C0 controls, DEL, C1 controls or hidden characters (hidden_char). */
static bool
utf8_printable(const unsigned char *p, size_t n)
{
	const unsigned char *end = p + n;

	while (p < end) {
		unsigned c = *p;
		uint32_t cp;
		size_t   len;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f) {
				return (false);
			}
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp  = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp  = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp  = c & 0x07;
		} else {
			return (false);
		}
		if ((size_t) (end - p) < len) {
			return (false);
		}
		for (size_t i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80) {
				return (false);
			}
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f) ||
		    hidden_char(cp)) {
			return (false);
		}
		p += len;
	}
	return (true);
}

bool
text_free_ok(const char *s, size_t min, size_t max)
{
	size_t n;

	if (s == NULL) {
		return (min == 0);
	}
	n = strlen(s);
	return (n >= min && n <= max && utf8_printable((const unsigned char *) s, n));
}

/* ---- language tags ------------------------------------------------------------------- */

static bool
is_alpha(char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
}

static bool
is_digit(char c)
{
	return (c >= '0' && c <= '9');
}

/* Whether the n bytes at p are all letters (want 'a'), all digits ('0') or all either ('*'). */
static bool
all_of(const char *p, size_t n, char want)
{
	for (size_t i = 0; i < n; i++) {
		if (want == 'a'       ? !is_alpha(p[i])
		        : want == '0' ? !is_digit(p[i])
		                      : !is_alpha(p[i]) && !is_digit(p[i])) {
			return (false);
		}
	}
	return (true);
}

/* Where a tag is in RFC 5646's sequence; each subtag may only move it forward. */
enum lang_part {
	LP_LANGUAGE,  /* the first subtag is next */
	LP_EXTLANG,   /* after a 2-3 letter language: extlang, script, region, ... */
	LP_SCRIPT,    /* script, region, variant, extension or private use */
	LP_REGION,    /* region, variant, ... */
	LP_VARIANT,   /* variants, extensions, private use */
	LP_EXTENSION, /* after a singleton: its subtags (at least one) */
	LP_EXT_MORE,  /* more extension subtags, another singleton, or private use */
	LP_PRIVATE,   /* after x: private subtags (at least one) */
	LP_PRIV_MORE, /* more private subtags */
};

/* Moves *part on by one subtag p[0..n-1] (1..8 letters and digits); false when the subtag
 * cannot stand there. */
static bool
lang_subtag(enum lang_part *part, int *extlangs, const char *p, size_t n)
{
	bool singleton = n == 1 && all_of(p, 1, '*');
	bool x         = singleton && (p[0] == 'x' || p[0] == 'X');

	switch (*part) {
	case LP_LANGUAGE:
		if (x) {
			*part = LP_PRIVATE;
			return (true);
		}
		if (!all_of(p, n, 'a') || n < 2) {
			return (false);
		}
		*part = n <= 3 ? LP_EXTLANG : LP_SCRIPT;
		return (true);
	case LP_EXTENSION:
		*part = LP_EXT_MORE;
		return (n >= 2 && all_of(p, n, '*'));
	case LP_EXT_MORE:
		if (!singleton) {
			return (n >= 2 && all_of(p, n, '*'));
		}
		break;
	case LP_PRIVATE:
	case LP_PRIV_MORE:
		*part = LP_PRIV_MORE;
		return (all_of(p, n, '*'));
	default:
		break;
	}
	if (*part == LP_EXTLANG && n == 3 && all_of(p, 3, 'a') && *extlangs < 3) {
		(*extlangs)++;
		return (true);
	}
	if (*part <= LP_SCRIPT && n == 4 && all_of(p, 4, 'a')) {
		*part = LP_REGION;
		return (true);
	}
	if (*part <= LP_REGION &&
	    ((n == 2 && all_of(p, 2, 'a')) || (n == 3 && all_of(p, 3, '0')))) {
		*part = LP_VARIANT;
		return (true);
	}
	if (*part <= LP_VARIANT &&
	    ((n >= 5 && all_of(p, n, '*')) || (n == 4 && is_digit(p[0]) && all_of(p, 4, '*')))) {
		*part = LP_VARIANT;
		return (true);
	}
	if (singleton) {
		*part = x ? LP_PRIVATE : LP_EXTENSION;
		return (true);
	}
	return (false);
}

bool
text_lang_ok(const char *s)
{
	enum lang_part part     = LP_LANGUAGE;
	int            extlangs = 0;
	size_t         len, start = 0;

	if (s == NULL || (len = strlen(s)) == 0 || len > TEXT_LANG_MAX) {
		return (false);
	}
	for (size_t i = 0; i <= len; i++) {
		if (s[i] != '-' && s[i] != '\0') {
			continue;
		}
		if (i == start || i - start > 8 ||
		    !lang_subtag(&part, &extlangs, s + start, i - start)) {
			return (false);
		}
		start = i + 1;
	}
	/* A singleton or x needs at least one subtag after it. */
	return (part != LP_EXTENSION && part != LP_PRIVATE);
}

/* ---- tokens -------------------------------------------------------------------------- */

bool
text_token_ok(const char *s, size_t max)
{
	size_t n;

	if (s == NULL) {
		return (false);
	}
	for (n = 0; s[n] != '\0'; n++) {
		if (n == max || !((s[n] >= 'a' && s[n] <= 'z') || is_digit(s[n]) || s[n] == '-')) {
			return (false);
		}
	}
	return (n > 0);
}
