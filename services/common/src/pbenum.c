/*
 * pbenum.c - protobuf-c enum names, parsing and validation (see pbenum.h).
 */
#include "haven/pbenum.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

bool
pbenum_ok(const ProtobufCEnumDescriptor *d, int v)
{
	return (d != NULL && v != 0 && protobuf_c_enum_descriptor_get_value(d, v) != NULL);
}

/* The part of a value's proto name that is written: without prefix when it starts with it. */
static const char *
stem(const char *name, const char *prefix)
{
	size_t plen = prefix != NULL ? strlen(prefix) : 0;

	if (plen > 0 && strncmp(name, prefix, plen) == 0 && name[plen] != '\0') {
		return (name + plen);
	}
	return (name);
}

const char *
pbenum_name(const ProtobufCEnumDescriptor *d, const char *prefix, int v, char *buf, size_t bufsz)
{
	const ProtobufCEnumValue *ev;
	const char               *s;
	size_t                    i;

	if (bufsz == 0) {
		return ("");
	}
	ev = d != NULL ? protobuf_c_enum_descriptor_get_value(d, v) : NULL;
	if (ev == NULL) {
		snprintf(buf, bufsz, "%d", v);
		return (buf);
	}
	s = stem(ev->name, prefix);
	for (i = 0; s[i] != '\0' && i + 1 < bufsz; i++) {
		buf[i] = s[i] == '_' ? '-' : (char) tolower((unsigned char) s[i]);
	}
	buf[i] = '\0';
	return (buf);
}

/* Whether the written form of name (stem, lower case, '-') is s, where s may use '_'. */
static bool
name_is(const char *name, const char *prefix, const char *s)
{
	const char *n = stem(name, prefix);
	size_t      i;

	for (i = 0; n[i] != '\0' && s[i] != '\0'; i++) {
		char want = n[i] == '_' ? '-' : (char) tolower((unsigned char) n[i]);
		char got  = s[i] == '_' ? '-' : s[i];

		if (want != got) {
			return (false);
		}
	}
	return (n[i] == '\0' && s[i] == '\0');
}

int
pbenum_parse(const ProtobufCEnumDescriptor *d, const char *prefix, const char *s, int *out)
{
	if (d == NULL || s == NULL || s[0] == '\0' || out == NULL) {
		return (-1);
	}
	for (unsigned i = 0; i < d->n_values; i++) {
		if (d->values[i].value != 0 && name_is(d->values[i].name, prefix, s)) {
			*out = d->values[i].value;
			return (0);
		}
	}
	return (-1);
}

const char *
pbenum_list(const ProtobufCEnumDescriptor *d, const char *prefix, char *buf, size_t bufsz)
{
	char   name[PBENUM_NAME_MAX];
	size_t used = 0;
	int    n;

	if (bufsz == 0) {
		return ("");
	}
	buf[0] = '\0';
	for (unsigned i = 0; d != NULL && i < d->n_values; i++) {
		if (d->values[i].value == 0) {
			continue;
		}
		pbenum_name(d, prefix, d->values[i].value, name, sizeof(name));
		n = snprintf(buf + used, bufsz - used, "%s%s", used > 0 ? ", " : "", name);
		if (n < 0 || (size_t) n >= bufsz - used) {
			/* Cut short: end in "..." where there is room for it. */
			if (bufsz >= 4) {
				memcpy(buf + bufsz - 4, "...", 4);
			} else {
				buf[bufsz - 1] = '\0';
			}
			return (buf);
		}
		used += (size_t) n;
	}
	return (buf);
}
