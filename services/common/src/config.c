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

#define LINE_MAX_LEN   4096
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

/* Stores one value; where names the place ("file:line" or "default") for messages, section
 * the option's section (NULL: none). */
static hv_status
apply_in(const char *section, const config_option *o, void *out, const char *value,
    const char *where, char *err, size_t errsz)
{
	char *field = (char *) out + o->offset;
	char  name[160];

	snprintf(name, sizeof(name), "%s%s%s", section != NULL ? section : "",
	    section != NULL ? "." : "", o->name);

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
		if (value[0] == '\0' || value[0] == '-' || *end != '\0' || errno != 0 ||
		    v < o->min || v > o->max) {
			snprintf(err, errsz,
			    "%s: '%s' must be a whole number from %llu to %llu, not '%.64s'", where,
			    name, (unsigned long long) o->min, (unsigned long long) o->max, value);
			return (HV_INVALID_ARGUMENT);
		}
		*(uint64_t *) (void *) field = (uint64_t) v;
		return (HV_OK);
	}
	case CONFIG_BOOL:
		if (parse_bool(value, (bool *) (void *) field) != 0) {
			snprintf(err, errsz, "%s: '%s' must be true or false, not '%.64s'", where,
			    name, value);
			return (HV_INVALID_ARGUMENT);
		}
		return (HV_OK);
	case CONFIG_LIST: {
		config_list *l = (config_list *) (void *) field;
		char       **items;
		if (l->cl_n == CONFIG_LIST_MAX) {
			snprintf(err, errsz, "%s: '%s' given more than %d times", where, name,
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

static hv_status
apply(const config_option *o, void *out, const char *value, const char *where, char *err,
    size_t errsz)
{
	return (apply_in(NULL, o, out, value, where, err, errsz));
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

config_key
config_find(const config_table *t, size_t nt, const char *key, const config_table **table,
    const config_option **opt)
{
	const char *dot           = strchr(key, '.');
	size_t      seclen        = dot != NULL ? (size_t) (dot - key) : 0;
	bool        section_known = false;

	*table = NULL;
	*opt   = NULL;
	for (size_t i = 0; i < nt; i++) {
		const char *sec = t[i].ct_section;
		const char *name;

		if (dot == NULL
		        ? sec != NULL
		        : sec == NULL || strlen(sec) != seclen || strncmp(sec, key, seclen) != 0) {
			continue;
		}
		section_known = true;
		name          = dot != NULL ? dot + 1 : key;
		if ((*opt = find(t[i].ct_opts, t[i].ct_n, name)) != NULL) {
			*table = &t[i];
			return (CONFIG_KEY_FOUND);
		}
	}
	return (dot != NULL && !section_known ? CONFIG_KEY_FOREIGN : CONFIG_KEY_UNKNOWN);
}

hv_status
config_set_table(const config_table *t, const config_option *o, const char *value, char *err,
    size_t errsz)
{
	return (apply_in(t->ct_section, o, t->ct_out, value, "command line", err, errsz));
}

/* One `key = value` line of path (where: "path:line"), looked up in the tables. */
static hv_status
load_line(const config_table *t, size_t nt, bool strict, char *s, const char *where, char *err,
    size_t errsz)
{
	const config_table  *tab;
	const config_option *o;
	char                *eq, *key, *value;

	if ((eq = strchr(s, '=')) == NULL) {
		snprintf(err, errsz, "%s: expected 'key = value'", where);
		return (HV_INVALID_ARGUMENT);
	}
	*eq   = '\0';
	key   = trim(s);
	value = trim(eq + 1);
	switch (config_find(t, nt, key, &tab, &o)) {
	case CONFIG_KEY_FOUND:
		return (apply_in(tab->ct_section, o, tab->ct_out, value, where, err, errsz));
	case CONFIG_KEY_FOREIGN:
		if (!strict) {
			return (HV_OK); /* a section of a service another process runs */
		}
		/* FALLTHROUGH */
	case CONFIG_KEY_UNKNOWN:
	default:
		snprintf(err, errsz, "%s: unknown option '%.64s'", where, key);
		return (HV_INVALID_ARGUMENT);
	}
}

hv_status
config_load_tables(const char *path, const config_table *t, size_t nt, bool strict, char *err,
    size_t errsz)
{
	FILE     *f      = NULL;
	char     *line   = NULL;
	unsigned  lineno = 0;
	hv_status st     = HV_INVALID_ARGUMENT;

	err[0] = '\0';
	for (size_t k = 0; k < nt; k++) {
		for (size_t i = 0; i < t[k].ct_n; i++) {
			const config_option *o = &t[k].ct_opts[i];
			if (o->def != NULL &&
			    (st = apply_in(t[k].ct_section, o, t[k].ct_out, o->def, "default", err,
			         errsz)) != HV_OK) {
				return (st);
			}
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
		char   where[512];
		char  *s;
		size_t len = strlen(line);

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
		if ((st = load_line(t, nt, strict, s, where, err, errsz)) != HV_OK) {
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

hv_status
config_load(const char *path, const config_option *opts, size_t n, void *out, char *err,
    size_t errsz)
{
	config_table t = { NULL, opts, n, out };

	return (config_load_tables(path, &t, 1, true, err, errsz));
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
	config_table t = { NULL, opts, n, NULL };

	config_print_doc_table(f, &t);
}

void
config_print_doc_table(FILE *f, const config_table *t)
{
	static const char *const types[] = { "text", "number", "true/false", "text, repeatable" };
	const config_option     *opts    = t->ct_opts;
	const char              *sec     = t->ct_section != NULL ? t->ct_section : "";
	const char              *dot     = t->ct_section != NULL ? "." : "";

	for (size_t i = 0; i < t->ct_n; i++) {
		fprintf(f, "# %s\n# (%s", opts[i].doc, types[opts[i].type]);
		if (opts[i].type == CONFIG_UINT) {
			fprintf(f, ", %llu..%llu", (unsigned long long) opts[i].min,
			    (unsigned long long) opts[i].max);
		}
		fprintf(f, ")\n# %s%s%s = %s\n\n", sec, dot, opts[i].name,
		    opts[i].def != NULL ? opts[i].def : "");
	}
}
