/*
 * personal.c - personal data in the clear, for the moments it is: the bounds of each field
 * (checked before anything is sealed; messages name the field and the bound, never a value),
 * decrypted fields and their wiping, the fields as texts to seal (languages as "nl,ro") and
 * their names (vault_field_name's, which the seals are bound to).
 */
#include "consent_personal.h"

#include "consent_vault.h"

#include "haven/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_BYTES  200
#define NATIONALITY_MAX 64
#define CONTACT_MAX     512
#define NOTES_MAX       4096

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

/* Free text by libhaven's one rule (text_free_ok: well-formed UTF-8 without controls or
 * invisible characters), of at most max bytes; multiline also allows newline and tab, which
 * the rule refuses, by checking a copy with them as spaces. */
static bool
text_ok(const char *s, size_t max, bool multiline)
{
	char   buf[NOTES_MAX + 1];
	size_t n = strlen(s);
	bool   ok;

	if (!multiline) {
		return (text_free_ok(s, 0, max));
	}
	if (n > max || n >= sizeof(buf)) {
		return (false);
	}
	for (size_t i = 0; i <= n; i++) {
		buf[i] = s[i] == '\n' || s[i] == '\t' ? ' ' : s[i];
	}
	ok = text_free_ok(buf, 0, max);
	crypto_wipe(buf, n);
	return (ok);
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
	const struct {
		const char *pf_name, *pf_value;
		size_t      pf_max;
		bool        pf_multiline;
	} texts[] = { { "name", p->name, NAME_MAX_BYTES, false },
		{ "nationality", p->nationality, NATIONALITY_MAX, false },
		{ "contact", p->contact, CONTACT_MAX, false },
		{ "guardian", p->guardian, CONTACT_MAX, false },
		{ "notes", p->notes, NOTES_MAX, true } };

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		if (!text_ok(texts[i].pf_value, texts[i].pf_max, texts[i].pf_multiline)) {
			return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "%s must be at most %zu bytes of UTF-8 text without control or "
			    "invisible "
			    "characters%s",
			    texts[i].pf_name, texts[i].pf_max,
			    texts[i].pf_multiline ? " but newline and tab" : ""));
		}
	}
	if (p->date_of_birth[0] != '\0' && !date_ok(p->date_of_birth)) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "date_of_birth must be a date as YYYY-MM-DD"));
	}
	if (p->n_languages > LANGUAGES_MAX) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT, "languages: at most %d, not %zu",
		    LANGUAGES_MAX, p->n_languages));
	}
	for (size_t i = 0; i < p->n_languages; i++) {
		if (!text_lang_ok(p->languages[i])) {
			return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "languages[%zu] must be " TEXT_LANG_RULE, i));
		}
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
		o += (size_t) snprintf(langs + o, LANGS_JOINED_MAX + 1 - o, "%s%s",
		    i > 0 ? "," : "", p->languages[i]);
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
	char  *save  = NULL, *tok;
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
