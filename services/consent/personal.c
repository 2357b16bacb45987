/*
 * personal.c - personal data in the clear, for the moments it is: the bounds of each field
 * (checked before anything is sealed; messages name the field and the bound, never a value),
 * decrypted fields and their wiping, the fields as texts to seal (languages as "nl,ro") and
 * their names (vault_field_name's, which the seals are bound to).
 */
#include "consent_personal.h"

#include "consent_vault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_BYTES 200
#define NATIONALITY_MAX 64
#define CONTACT_MAX 512
#define NOTES_MAX 4096

/* Which category each PersonalData field belongs to (index: field number). */
static const int field_category[PERSONAL_FIELDS + 1] = {
	[1] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, /* name */
	[2] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, /* date_of_birth */
	[3] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, /* nationality */
	[4] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, /* languages */
	[5] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT,  /* contact */
	[6] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER,    /* notes */
	/* Whom to call about a minor: shown with her contact, to whom consent shares that. */
	[7] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT, /* guardian */
};

int
personal_field_category(unsigned field)
{
	return (field >= 1 && field <= PERSONAL_FIELDS ? field_category[field] : 0);
}

/* ---- validation ----------------------------------------------------------------------- */

/*
 * Valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) of at most max
 * bytes, without control characters (C0, DEL, C1); multiline allows newline and tab.
 */
static bool
text_ok(const char *s, size_t max, bool multiline)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t               n = strlen(s);

	if (n > max) {
		return (false);
	}
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t   len;
		if (p[i] < 0x80) {
			if ((p[i] < 0x20 && !(multiline && (p[i] == '\n' || p[i] == '\t'))) ||
			    p[i] == 0x7f) {
				return (false);
			}
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			len = 2;
			cp  = p[i] & 0x1f;
		} else if ((p[i] & 0xf0) == 0xe0) {
			len = 3;
			cp  = p[i] & 0x0f;
		} else if ((p[i] & 0xf8) == 0xf0) {
			len = 4;
			cp  = p[i] & 0x07;
		} else {
			return (false);
		}
		if (n - i < len) {
			return (false);
		}
		for (size_t j = 1; j < len; j++) {
			if ((p[i + j] & 0xc0) != 0x80) {
				return (false);
			}
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
		    (cp >= 0x80 && cp <= 0x9f)) {
			return (false);
		}
		i += len;
	}
	return (true);
}

/* YYYY-MM-DD, a real day between 1900 and 2199. */
static bool
date_ok(const char *s)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int              y, m, d;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') {
		return (false);
	}
	for (int i = 0; i < 10; i++) {
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) {
			return (false);
		}
	}
	y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	m = (s[5] - '0') * 10 + (s[6] - '0');
	d = (s[8] - '0') * 10 + (s[9] - '0');
	if (y < 1900 || y > 2199 || m < 1 || m > 12 || d < 1) {
		return (false);
	}
	if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) {
		return (d <= 29);
	}
	return (d <= days[m - 1]);
}

hv_status
personal_validate(const Haven__Consent__V1__PersonalData *p, char *err, size_t errsz)
{
	if (!text_ok(p->name, NAME_MAX_BYTES, false)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "name must be at most %d bytes of UTF-8 text without control characters",
		    NAME_MAX_BYTES));
	}
	if (p->date_of_birth[0] != '\0' && !date_ok(p->date_of_birth)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "date_of_birth must be a date as YYYY-MM-DD"));
	}
	if (!text_ok(p->nationality, NATIONALITY_MAX, false)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "nationality must be at most %d bytes of UTF-8 text without control characters",
		    NATIONALITY_MAX));
	}
	if (p->n_languages > LANGUAGES_MAX) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "languages: at most %d, not %zu", LANGUAGES_MAX, p->n_languages));
	}
	for (size_t i = 0; i < p->n_languages; i++) {
		if (!consent_language_ok(p->languages[i])) {
			return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "languages[%zu] must be a BCP 47 tag of at most %d characters", i,
			    LANGUAGE_TAG_MAX));
		}
	}
	if (!text_ok(p->contact, CONTACT_MAX, false)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "contact must be at most %d bytes of UTF-8 text without control characters",
		    CONTACT_MAX));
	}
	if (!text_ok(p->guardian, CONTACT_MAX, false)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "guardian must be at most %d bytes of UTF-8 text without control characters",
		    CONTACT_MAX));
	}
	if (!text_ok(p->notes, NOTES_MAX, true)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "notes must be at most %d bytes of UTF-8 text without control characters "
		    "but newline and tab",
		    NOTES_MAX));
	}
	return (HV_OK);
}

void
personal_texts(const Haven__Consent__V1__PersonalData *p, char langs[LANGS_JOINED_MAX + 1],
    const char *text[PERSONAL_FIELDS + 1])
{
	size_t o = 0;

	langs[0] = '\0';
	for (size_t i = 0; i < p->n_languages && o < LANGS_JOINED_MAX; i++) {
		o += (size_t) snprintf(langs + o, LANGS_JOINED_MAX + 1 - o, "%s%s", i > 0 ? "," : "",
		    p->languages[i]);
	}
	text[0] = NULL;
	text[1] = p->name;
	text[2] = p->date_of_birth;
	text[3] = p->nationality;
	text[4] = langs;
	text[5] = p->contact;
	text[6] = p->notes;
	text[7] = p->guardian;
}

int
personal_field_by_name(const char *name)
{
	for (unsigned f = 1; f <= PERSONAL_FIELDS; f++) {
		if (strcmp(vault_field_name(f), name) == 0) {
			return ((int) f);
		}
	}
	return (0);
}

/* ---- the personal data of a reply ----------------------------------------------------- */

void
plain_free(plain *p)
{
	for (int i = 0; i <= PERSONAL_FIELDS; i++) {
		if (p->pl_field[i] != NULL) {
			crypto_wipe(p->pl_field[i], strlen(p->pl_field[i]));
			free(p->pl_field[i]);
			p->pl_field[i] = NULL;
		}
	}
	p->pl_shown = 0;
}

/* Splits "nl,ro" into *n strings made by dup (malloc or the call's arena); -1 out of memory. */
int
langs_split(const char *joined, char ***out, size_t *n, char *(*dup)(void *, const char *),
    void *(*alloc)(void *, size_t), void *arg)
{
	char   buf[LANGS_JOINED_MAX + 1];
	char  *save = NULL, *tok;
	size_t count = 0;

	*out = NULL;
	*n   = 0;
	if (joined == NULL || joined[0] == '\0') {
		return (0);
	}
	snprintf(buf, sizeof(buf), "%s", joined);
	for (const char *c = joined; *c != '\0'; c++) {
		count += *c == ',';
	}
	if ((*out = alloc(arg, (count + 1) * sizeof(char *))) == NULL) {
		return (-1);
	}
	for (tok = strtok_r(buf, ",", &save); tok != NULL && *n <= count;
	     tok = strtok_r(NULL, ",", &save)) {
		if (((*out)[*n] = dup(arg, tok)) == NULL) {
			return (-1);
		}
		(*n)++;
	}
	return (0);
}

char *
personal_heap_dup(void *arg, const char *s)
{
	(void) arg;
	return (strdup(s));
}

void *
personal_heap_alloc(void *arg, size_t n)
{
	(void) arg;
	return (calloc(1, n));
}

char *
personal_call_dup(void *arg, const char *s)
{
	return (rpc_call_strdup(arg, s));
}

void *
personal_call_alloc(void *arg, size_t n)
{
	return (rpc_call_alloc(arg, n));
}

static void
str_free(char *s)
{
	if (s != NULL && s != protobuf_c_empty_string) {
		crypto_wipe(s, strlen(s));
		free(s);
	}
}

void
consent_personal_free(Haven__Consent__V1__PersonalData *p)
{
	if (p == NULL) {
		return;
	}
	str_free(p->name);
	str_free(p->date_of_birth);
	str_free(p->nationality);
	str_free(p->contact);
	str_free(p->notes);
	str_free(p->guardian);
	for (size_t i = 0; p->languages != NULL && i < p->n_languages; i++) {
		str_free(p->languages[i]);
	}
	free(p->languages);
	free(p);
}
