/*
 * cmd_consent.h - what the consent commands (cmd_consent.c) and the subject commands
 * (cmd_subject.c) share: reading list options, the consent enums' names, printing lists.
 */
#ifndef HAVEN_CLI_CMD_CONSENT_H
#define HAVEN_CLI_CMD_CONSENT_H

#include "cli.h"

#include "haven/pbenum.h"

#include <jansson.h>
#include <stdint.h>

#define LIST_MAX 32 /* values of one repeatable option */

/* A consent enum as the CLI writes it: the proto names without the prefix every value
 * repeats ("PURPOSE_SHARE_WITH_PROVIDER" -> "share-with-provider"), as receipts do. */
typedef struct {
	const ProtobufCEnumDescriptor *ek_desc;
	const char                    *ek_prefix;
} enum_kind;

extern const enum_kind CATEGORY; /* haven.consent.v1.Category */

/* Every value of a repeatable, comma-separated option, split into out (pointing into buf);
 * a usage error when there are more than LIST_MAX or they do not fit. */
int consent_cli_values(const cli_args *a, const char *name, char **out, size_t *n, char *buf,
    size_t bufsz);

/* The name of value v of kind k into buf; returns buf. */
const char *consent_cli_kind_name(const enum_kind *k, int v, char buf[PBENUM_NAME_MAX]);

/* Lists as JSON arrays, and joined with ",". */
json_t *consent_cli_json_strings(char **v, size_t n);
json_t *consent_cli_json_names(const int *v, size_t n, const enum_kind *k);
void    consent_cli_join_names(const int *v, size_t n, const enum_kind *k, char *buf, size_t bufsz);
void    consent_cli_join_strings(char **v, size_t n, char *buf, size_t bufsz);

#endif
