/*
 * config.c - `key = value` configuration files checked against a table (see config.h).
 */
#include "haven/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LINE_MAX_LEN 4096
#define FILE_MAX_LINES 10000

static const config_option *
find(const config_option *opts, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(opts[i].name, key) == 0) {
			return (&opts[i]);
		}
	}
	return (NULL);
}

static int
parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[]  = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return (0);
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return (0);
		}
	}
	return (-1);
}

/* Stores one value; where names the place ("file:line" or "default") for messages. */
static hv_status
apply(const config_option *o, void *out, const char *value, const char *where, char *err,
    size_t errsz)
{
	char *field = (char *) out + o->offset;

	switch (o->type) {
	case CONFIG_STRING: {
		char **p = (char **) (void *) field;
		char  *copy;
		if ((copy = strdup(value)) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		free(*p);
		*p = copy;
		return (HV_OK);
	}
	case CONFIG_UINT: {
		char              *end;
		unsigned long long v;
		errno = 0;
		v     = strtoull(value, &end, 10);
		if (value[0] == '\0' || value[0] == '-' || *end != '\0' || errno != 0 || v < o->min ||
		    v > o->max) {
			snprintf(err, errsz, "%s: '%s' must be a whole number from %llu to %llu, not '%.64s'",
			    where, o->name, (unsigned long long) o->min, (unsigned long long) o->max,
			    value);
			return (HV_INVALID_ARGUMENT);
		}
		*(uint64_t *) (void *) field = (uint64_t) v;
		return (HV_OK);
	}
	case CONFIG_BOOL:
		if (parse_bool(value, (bool *) (void *) field) != 0) {
			snprintf(err, errsz, "%s: '%s' must be true or false, not '%.64s'", where, o->name,
			    value);
			return (HV_INVALID_ARGUMENT);
		}
		return (HV_OK);
	case CONFIG_LIST: {
		config_list *l = (config_list *) (void *) field;
		char       **items;
		if (l->cl_n == CONFIG_LIST_MAX) {
			snprintf(err, errsz, "%s: '%s' given more than %d times", where, o->name,
			    CONFIG_LIST_MAX);
			return (HV_INVALID_ARGUMENT);
		}
		if ((items = realloc(l->cl_items, (l->cl_n + 1) * sizeof(char *))) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		l->cl_items = items;
		if ((items[l->cl_n] = strdup(value)) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		l->cl_n++;
		return (HV_OK);
	}
	}
	return (HV_INTERNAL);
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char) *s)) {
		s++;
	}
	e = s + strlen(s);
	while (e > s && isspace((unsigned char) e[-1])) {
		*--e = '\0';
	}
	return (s);
}

hv_status
config_set(const config_option *opts, size_t n, void *out, const char *key, const char *value,
    char *err, size_t errsz)
{
	const config_option *o = find(opts, n, key);

	if (o == NULL) {
		snprintf(err, errsz, "unknown option '%.64s'", key);
		return (HV_INVALID_ARGUMENT);
	}
	return (apply(o, out, value, "command line", err, errsz));
}

hv_status
config_load(const char *path, const config_option *opts, size_t n, void *out, char *err,
    size_t errsz)
{
	FILE     *f    = NULL;
	char     *line = NULL;
	unsigned  lineno = 0;
	hv_status st   = HV_INVALID_ARGUMENT;

	err[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (opts[i].def != NULL &&
		    (st = apply(&opts[i], out, opts[i].def, "default", err, errsz)) != HV_OK) {
			return (st);
		}
	}
	if (path == NULL) {
		return (HV_OK);
	}
	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errsz, "%s: %s", path, strerror(errno));
		return (hv_status_from_errno(errno));
	}
	if ((line = malloc(LINE_MAX_LEN + 2)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	while (fgets(line, LINE_MAX_LEN + 2, f) != NULL) {
		char                 where[512];
		char                *s, *eq, *key, *value;
		const config_option *o;
		size_t               len = strlen(line);

		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (lineno > FILE_MAX_LINES) {
			snprintf(err, errsz, "%s: more than %d lines", path, FILE_MAX_LINES);
			st = HV_INVALID_ARGUMENT;
			goto out;
		}
		if (len > LINE_MAX_LEN && line[len - 1] != '\n') {
			snprintf(err, errsz, "%s: line longer than %d bytes", where, LINE_MAX_LEN);
			st = HV_INVALID_ARGUMENT;
			goto out;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#') {
			continue;
		}
		if ((eq = strchr(s, '=')) == NULL) {
			snprintf(err, errsz, "%s: expected 'key = value'", where);
			st = HV_INVALID_ARGUMENT;
			goto out;
		}
		*eq   = '\0';
		key   = trim(s);
		value = trim(eq + 1);
		if ((o = find(opts, n, key)) == NULL) {
			snprintf(err, errsz, "%s: unknown option '%.64s'", where, key);
			st = HV_INVALID_ARGUMENT;
			goto out;
		}
		if ((st = apply(o, out, value, where, err, errsz)) != HV_OK) {
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(err, errsz, "%s: read error", path);
		st = HV_DATA_LOSS;
		goto out;
	}
	st = HV_OK;
out:
	free(line);
	fclose(f);
	return (st);
}

void
config_free(const config_option *opts, size_t n, void *out)
{
	for (size_t i = 0; i < n; i++) {
		char *field = (char *) out + opts[i].offset;
		if (opts[i].type == CONFIG_STRING) {
			char **p = (char **) (void *) field;
			free(*p);
			*p = NULL;
		} else if (opts[i].type == CONFIG_LIST) {
			config_list *l = (config_list *) (void *) field;
			for (size_t k = 0; k < l->cl_n; k++) {
				free(l->cl_items[k]);
			}
			free(l->cl_items);
			l->cl_items = NULL;
			l->cl_n     = 0;
		}
	}
}

void
config_print_doc(FILE *f, const config_option *opts, size_t n)
{
	static const char *const types[] = { "text", "number", "true/false", "text, repeatable" };

	for (size_t i = 0; i < n; i++) {
		fprintf(f, "# %s\n# (%s", opts[i].doc, types[opts[i].type]);
		if (opts[i].type == CONFIG_UINT) {
			fprintf(f, ", %llu..%llu", (unsigned long long) opts[i].min,
			    (unsigned long long) opts[i].max);
		}
		fprintf(f, ")\n# %s = %s\n\n", opts[i].name, opts[i].def != NULL ? opts[i].def : "");
	}
}
