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
	char  **cl_items;
	size_t  cl_n;
} config_list;

#define CONFIG_LIST_MAX 16

typedef struct config_option {
	const char *name;    /* [a-z0-9_]+ */
	config_type type;
	size_t      offset;  /* offsetof the field in the caller's struct */
	const char *def;     /* default as text, or NULL for none (string NULL, uint 0, false) */
	uint64_t    min;     /* CONFIG_UINT bounds */
	uint64_t    max;
	const char *doc;
} config_option;

/* Applies the defaults to out, then reads path (NULL: defaults only). On failure err
 * (errsz bytes) names the file, line and problem; out may hold partial values: release it
 * with config_free either way. */
hv_status config_load(const char *path, const config_option *opts, size_t n, void *out,
    char *err, size_t errsz);

/* Sets one option from text, as a line of the file would (for command-line overrides). */
hv_status config_set(const config_option *opts, size_t n, void *out, const char *key,
    const char *value, char *err, size_t errsz);

/* Frees the strings and lists config_load put into out. */
void config_free(const config_option *opts, size_t n, void *out);

/* Prints every option with its type, default and documentation, as a commented file. */
void config_print_doc(FILE *f, const config_option *opts, size_t n);

#endif
