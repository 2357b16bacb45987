/*
 * config.h - the node's configuration file: `key = value` lines, `#` comments.
 *
 * A program describes its options once, as a table of config_option (name, type, where the
 * value goes in its own struct, default, bounds, one line of documentation). config_load()
 * applies the defaults, reads the file and checks every line against the table: an unknown
 * key, a value of the wrong type or out of bounds, or a malformed line is refused with a
 * message that names the file, the line and the problem. The same table prints the
 * documentation (config_print_doc), so the two cannot drift apart.
 */
#ifndef HAVEN_CONFIG_H
#define HAVEN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "haven/status.h"

typedef enum config_type {
	CONFIG_STRING, /* char *: malloc'd copy */
	CONFIG_UINT,   /* uint64_t, within [min, max] */
	CONFIG_BOOL,   /* bool: true/false, yes/no, on/off, 1/0 */
	CONFIG_LIST,   /* config_list: the key may repeat; each line adds one value */
} config_type;

typedef struct config_list {
	char **cl_items;
	size_t cl_n;
} config_list;

#define CONFIG_LIST_MAX 16

typedef struct config_option {
	const char *name; /* [a-z0-9_]+ */
	config_type type;
	size_t      offset; /* offsetof the field in the caller's struct */
	const char *def;    /* default as text, or NULL for none (string NULL, uint 0, false) */
	uint64_t    min;    /* CONFIG_UINT bounds */
	uint64_t    max;
	const char *doc;
} config_option;

/*
 * Sections: a process reads the node's one configuration file with its own options and those
 * of the services it runs, each service's in a table of its own whose keys are written
 * "SECTION.NAME" (referral.retention_days). Each service owns its table; libhaven's host
 * knows none of them. A key of a section no table of the process has belongs to a service
 * another process runs: skipped, unless strict (a process that runs every service, where an
 * unknown section is a misspelling).
 */
typedef struct config_table {
	const char          *ct_section; /* NULL: keys without a section (the host's) */
	const config_option *ct_opts;
	size_t               ct_n;
	void                *ct_out; /* where the values go (offsets of ct_opts) */
} config_table;

typedef enum config_key {
	CONFIG_KEY_FOUND,   /* *table and *opt set */
	CONFIG_KEY_UNKNOWN, /* no such option (in a section the tables have, or without one) */
	CONFIG_KEY_FOREIGN, /* "SECTION.NAME" of a section none of the tables has */
} config_key;

/* Looks key up in the tables. */
config_key config_find(const config_table *t, size_t nt, const char *key,
    const config_table **table, const config_option **opt);
/* Applies the defaults of every table, then reads path (NULL: defaults only); as config_load,
 * with the sections above. Messages name options with their section. */
hv_status config_load_tables(const char *path, const config_table *t, size_t nt, bool strict,
    char *err, size_t errsz);
/* Sets one option found with config_find from text, as a command-line override. */
hv_status config_set_table(const config_table *t, const config_option *o, const char *value,
    char *err, size_t errsz);
/* config_print_doc for a table, its keys with their section. */
void config_print_doc_table(FILE *f, const config_table *t);

/* Applies the defaults to out, then reads path (NULL: defaults only). On failure err
 * (errsz bytes) names the file, line and problem; out may hold partial values: release it
 * with config_free either way. */
hv_status config_load(const char *path, const config_option *opts, size_t n, void *out, char *err,
    size_t errsz);

/* Sets one option from text, as a line of the file would (for command-line overrides). */
hv_status config_set(const config_option *opts, size_t n, void *out, const char *key,
    const char *value, char *err, size_t errsz);

/* Frees the strings and lists config_load put into out. */
void config_free(const config_option *opts, size_t n, void *out);

/* Prints every option with its type, default and documentation, as a commented file. */
void config_print_doc(FILE *f, const config_option *opts, size_t n);

#endif
