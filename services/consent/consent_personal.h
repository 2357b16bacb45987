/*
 * consent_personal.h - personal.c: personal data in the clear (validation, decrypted fields,
 * the joined languages). Stands on consent_base.h.
 */
#ifndef HAVEN_CONSENT_PERSONAL_H
#define HAVEN_CONSENT_PERSONAL_H

#include "consent_base.h"

#include "haven/text.h"

#define PERSONAL_FIELDS  7 /* PersonalData fields 1..7 */
#define LANGUAGES_MAX    16
#define LANGS_JOINED_MAX (LANGUAGES_MAX * (TEXT_LANG_MAX + 1))
/* The categories a holder sees: those the fields of PersonalData belong to. */
#define PERSONAL_ALL_CATEGORIES                                                                    \
	((1u << HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY) |                                 \
	    (1u << HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT) |                               \
	    (1u << HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER))

/* The category a PersonalData field (by number) belongs to; 0 for no field. */
int personal_field_category(unsigned field);

/* Every field within its bounds: INVALID_ARGUMENT with a message naming the field and the
 * bound, never the value. */
hv_status personal_validate(const Haven__Consent__V1__PersonalData *p, char *err, size_t errsz);

/* The fields of p as the texts that are sealed, by field number (text[0] unused): the strings
 * are p's, but languages, joined into langs ("nl,ro"). */
void personal_texts(const Haven__Consent__V1__PersonalData *p, char langs[LANGS_JOINED_MAX + 1],
    const char *text[PERSONAL_FIELDS + 1]);

/* A PersonalData field's number by its name ("name", ..., "guardian"); 0 for none. */
int personal_field_by_name(const char *name);

/* Decrypted fields (index: field number), malloc'd; and the categories they cover. */
typedef struct plain {
	char    *pl_field[PERSONAL_FIELDS + 1];
	unsigned pl_shown;
} plain;

/* Wipes and frees every field. */
void plain_free(plain *p);

/* Splits "nl,ro" into *n strings made by dup and alloc (malloc: personal_heap_*, or the
 * call's arena: personal_call_* with the rpc_call as arg); -1 out of memory. */
int   langs_split(const char *joined, char ***out, size_t *n, char *(*dup)(void *, const char *),
      void *(*alloc)(void *, size_t), void *arg);
char *personal_heap_dup(void *arg, const char *s);
void *personal_heap_alloc(void *arg, size_t n);
char *personal_call_dup(void *arg, const char *s);
void *personal_call_alloc(void *arg, size_t n);

#endif
