/*
 * consent_names.c - the names of the consent enums (Purpose, Category, GivenBy, Method) as
 * receipts, the audit log and the CLI write them, and their parsing (consent.h). The lowest
 * file of the consent library: it calls nothing of it, and the CLI links it to print and read
 * the names without the service.
 */
#include "consent.h"

#include <stddef.h>
#include <string.h>


static const char *const purpose_names[] = {
	[HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL]            = "referral",
	[HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER] = "share-with-provider",
	[HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT]             = "contact",
	[HAVEN__CONSENT__V1__PURPOSE__PURPOSE_STATISTICS]          = "statistics",
};
static const char *const category_names[] = {
	[HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY] = "identity",
	[HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT]  = "contact",
	[HAVEN__CONSENT__V1__CATEGORY__CATEGORY_HEALTH]   = "health",
	[HAVEN__CONSENT__V1__CATEGORY__CATEGORY_LEGAL]    = "legal",
	[HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER]    = "other",
};
static const char *const given_by_names[] = {
	[HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT]        = "subject",
	[HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_GUARDIAN]       = "guardian",
	[HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_REPRESENTATIVE] = "representative",
};
static const char *const method_names[] = {
	[HAVEN__CONSENT__V1__METHOD__METHOD_WRITTEN]                 = "written",
	[HAVEN__CONSENT__V1__METHOD__METHOD_VERBAL]                  = "verbal",
	[HAVEN__CONSENT__V1__METHOD__METHOD_VERBAL_WITH_INTERPRETER] = "verbal-with-interpreter",
	[HAVEN__CONSENT__V1__METHOD__METHOD_ELECTRONIC]              = "electronic",
};

static const char *
name_of(const char *const *names, size_t n, int v)
{
	if (v <= 0 || (size_t) v >= n || names[v] == NULL) {
		return ("unknown");
	}
	return (names[v]);
}

#define NAME_OF(table, v) name_of(table, sizeof(table) / sizeof(table[0]), v)

const char *
consent_purpose_name(int v)
{
	return (NAME_OF(purpose_names, v));
}

const char *
consent_category_name(int v)
{
	return (NAME_OF(category_names, v));
}

const char *
consent_given_by_name(int v)
{
	return (NAME_OF(given_by_names, v));
}

const char *
consent_method_name(int v)
{
	return (NAME_OF(method_names, v));
}

/* Finds s among names, taking '_' for '-'. */
static int
parse_of(const char *const *names, size_t n, const char *s, int *out)
{
	char   buf[32];
	size_t len = s != NULL ? strlen(s) : 0;

	if (len == 0 || len >= sizeof(buf)) {
		return (-1);
	}
	for (size_t i = 0; i <= len; i++) {
		buf[i] = s[i] == '_' ? '-' : s[i];
	}
	for (size_t v = 1; v < n; v++) {
		if (names[v] != NULL && strcmp(names[v], buf) == 0) {
			*out = (int) v;
			return (0);
		}
	}
	return (-1);
}

#define PARSE_OF(table, s, out) parse_of(table, sizeof(table) / sizeof(table[0]), s, out)

int
consent_purpose_parse(const char *s, int *out)
{
	return (PARSE_OF(purpose_names, s, out));
}

int
consent_category_parse(const char *s, int *out)
{
	return (PARSE_OF(category_names, s, out));
}

int
consent_given_by_parse(const char *s, int *out)
{
	return (PARSE_OF(given_by_names, s, out));
}

int
consent_method_parse(const char *s, int *out)
{
	return (PARSE_OF(method_names, s, out));
}
