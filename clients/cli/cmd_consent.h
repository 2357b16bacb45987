/*
 * cmd_consent.h - what the consent commands (cmd_consent.c) and the subject commands
 * (cmd_subject.c) share: reading list options and printing times, names and lists.
 */
#ifndef HAVEN_CLI_CMD_CONSENT_H
#define HAVEN_CLI_CMD_CONSENT_H

#include "cli.h"

#include <jansson.h>
#include <stdint.h>

#define LIST_MAX 32 /* values of one repeatable option */

/* Every value of a repeatable, comma-separated option, split into out (pointing into buf);
 * a usage error when there are more than LIST_MAX or they do not fit. */
int consent_cli_values(const cli_args *a, const char *name, char **out, size_t *n, char *buf,
    size_t bufsz);

/* "2026-11-28 10:00 UTC", or "-" for 0; returns buf. */
const char *consent_cli_when(int64_t ms, char *buf, size_t n);

/* Lists as JSON arrays, and joined with ",". */
json_t *consent_cli_json_strings(char **v, size_t n);
json_t *consent_cli_json_names(const int *v, size_t n, const char *(*name)(int));
void consent_cli_join_names(const int *v, size_t n, const char *(*name)(int), char *buf,
    size_t bufsz);
void consent_cli_join_strings(char **v, size_t n, char *buf, size_t bufsz);

#endif
