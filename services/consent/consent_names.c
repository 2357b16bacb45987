/*
 * consent_names.c - the names of the consent enums (Purpose, Category, GivenBy, Method) as
 * receipts, the audit log and the CLI write them, and their parsing (consent.h): libhaven's
 * pbenum rule ("PURPOSE_SHARE_WITH_PROVIDER" -> "share-with-provider"), the one every service
 * and the CLI use. The lowest file of the consent library: it calls nothing of it.
 */
#include "consent.h"

#include "haven/pbenum.h"

#include <pthread.h>

#define NAMES_MAX 8 /* values per enum, zero included */

/* An enum's names, written once (pbenum_name), so that callers get pointers that stay. */
typedef struct names {
	const ProtobufCEnumDescriptor *nm_desc;
	const char                    *nm_prefix;
	char                           nm_name[NAMES_MAX][PBENUM_NAME_MAX];
} names;

enum { K_PURPOSE, K_CATEGORY, K_GIVEN_BY, K_METHOD, K_N };

static names kinds[K_N] = {
	[K_PURPOSE]  = { &haven__consent__v1__purpose__descriptor, "PURPOSE_", { "" } },
	[K_CATEGORY] = { &haven__consent__v1__category__descriptor, "CATEGORY_", { "" } },
	[K_GIVEN_BY] = { &haven__consent__v1__given_by__descriptor, "GIVEN_BY_", { "" } },
	[K_METHOD]   = { &haven__consent__v1__method__descriptor, "METHOD_", { "" } },
};

static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void
names_fill(void)
{
	for (int k = 0; k < K_N; k++) {
		for (int v = 1; v < NAMES_MAX; v++) {
			if (pbenum_ok(kinds[k].nm_desc, v)) {
				pbenum_name(kinds[k].nm_desc, kinds[k].nm_prefix, v,
				    kinds[k].nm_name[v], PBENUM_NAME_MAX);
			}
		}
	}
}

static const char *
name_of(int kind, int v)
{
	pthread_once(&names_once, names_fill);
	if (v <= 0 || v >= NAMES_MAX || kinds[kind].nm_name[v][0] == '\0') {
		return ("unknown");
	}
	return (kinds[kind].nm_name[v]);
}

const char *
consent_purpose_name(int v)
{
	return (name_of(K_PURPOSE, v));
}

const char *
consent_category_name(int v)
{
	return (name_of(K_CATEGORY, v));
}

const char *
consent_given_by_name(int v)
{
	return (name_of(K_GIVEN_BY, v));
}

const char *
consent_method_name(int v)
{
	return (name_of(K_METHOD, v));
}

int
consent_purpose_parse(const char *s, int *out)
{
	return (pbenum_parse(kinds[K_PURPOSE].nm_desc, kinds[K_PURPOSE].nm_prefix, s, out));
}

int
consent_category_parse(const char *s, int *out)
{
	return (pbenum_parse(kinds[K_CATEGORY].nm_desc, kinds[K_CATEGORY].nm_prefix, s, out));
}

int
consent_given_by_parse(const char *s, int *out)
{
	return (pbenum_parse(kinds[K_GIVEN_BY].nm_desc, kinds[K_GIVEN_BY].nm_prefix, s, out));
}

int
consent_method_parse(const char *s, int *out)
{
	return (pbenum_parse(kinds[K_METHOD].nm_desc, kinds[K_METHOD].nm_prefix, s, out));
}
