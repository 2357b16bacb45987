/*
 * ids.c - record ids: validation and random generation (see ids.h).
 */
#include "haven/ids.h"
#include "haven/crypto.h"

#include <stdint.h>
#include <string.h>

static bool
id_char(char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	    c == '-');
}

bool
ids_valid(const char *s)
{
	size_t n;

	if (s == NULL) {
		return (false);
	}
	for (n = 0; s[n] != '\0'; n++) {
		if (n == IDS_MAX - 1 || !id_char(s[n])) {
			return (false);
		}
	}
	return (n > 0);
}

hv_status
ids_generate(char *out, size_t outsz, const char *prefix, size_t nhex)
{
	static const char hex[] = "0123456789abcdef";
	hv_status         st    = HV_INVALID_ARGUMENT;
	uint8_t           rnd[IDS_MAX / 2];
	size_t            plen;

	if (out == NULL || outsz == 0) {
		return (HV_INVALID_ARGUMENT);
	}
	out[0] = '\0';
	if (prefix == NULL) {
		prefix = "";
	}
	plen = strlen(prefix);
	if (nhex == 0 || plen + nhex > IDS_MAX - 1 || plen + nhex >= outsz) {
		goto out;
	}
	for (size_t i = 0; i < plen; i++) {
		if (!id_char(prefix[i])) {
			goto out;
		}
	}
	if ((st = crypto_random(rnd, (nhex + 1) / 2)) != HV_OK) {
		goto out;
	}
	memcpy(out, prefix, plen);
	for (size_t i = 0; i < nhex; i++) {
		out[plen + i] = hex[(rnd[i / 2] >> (i % 2 == 0 ? 4 : 0)) & 0xf];
	}
	out[plen + nhex] = '\0';
	st               = HV_OK;
out:
	crypto_wipe(rnd, sizeof(rnd));
	return (st);
}

/* Invisible characters that change how the text around them reads (see ids.h): bidirectional
 * controls, line and paragraph separators, and format characters no script needs. Zero-width
 * space, non-joiner and joiner (U+200B..U+200D) pass: Thai, Khmer, Persian, Indic scripts and
 * emoji use them. */
static bool
hidden_char(uint32_t cp)
{
	return (cp == 0x00ad ||                      /* soft hyphen */
	    cp == 0x061c ||                          /* Arabic letter mark */
	    cp == 0x180e ||                          /* Mongolian vowel separator */
	    cp == 0x200e || cp == 0x200f ||          /* left-to-right, right-to-left mark */
	    (cp >= 0x2028 && cp <= 0x202e) ||        /* separators; embeddings, overrides */
	    (cp >= 0x2060 && cp <= 0x2064) ||        /* word joiner, invisible operators */
	    (cp >= 0x2066 && cp <= 0x206f) ||        /* isolates; deprecated format characters */
	    cp == 0xfeff ||                          /* zero-width no-break space (BOM) */
	    (cp >= 0xfff9 && cp <= 0xfffb) ||        /* interlinear annotation */
	    (cp >= 0xe0000 && cp <= 0xe007f));       /* tags: invisible copies of ASCII */
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
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f) || hidden_char(cp)) {
			return (false);
		}
		p += len;
	}
	return (true);
}

bool
ids_text_ok(const char *s, size_t min, size_t max)
{
	size_t n;

	if (s == NULL) {
		return (min == 0);
	}
	n = strlen(s);
	return (n >= min && n <= max && utf8_printable((const unsigned char *) s, n));
}
