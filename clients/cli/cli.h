/*
 * cli.h - what the haven CLI's command files share: the connection, output mode, and the
 * helpers that print results and failures the same way everywhere.
 *
 * Each area has a file cmd_<area>.c with one entry function per top-level command
 * (`int cmd_health(cli *, int argc, char **argv)`), listed in haven.c's command table.
 * argv holds the words after the command name. Entry functions return the process exit code:
 * 0 success, the gRPC status code of a failed call (1..16), or CLI_EXIT_USAGE.
 */
#ifndef HAVEN_CLI_H
#define HAVEN_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "haven/rpc.h"

#define CLI_EXIT_USAGE 64

typedef struct cli {
	rpc_channel *ch;
	bool         json;
	uint32_t     timeout_ms;
} cli;

/* Calls method on the node with the CLI's timeout. On failure prints the status and the
 * server's message (stderr; and a JSON error object on stdout with --json) and returns the
 * exit code; on success returns 0 and sets *reply (free with
 * protobuf_c_message_free_unpacked). what names the action in messages ("capacity set"). */
int cli_call(cli *c, const char *what, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, bool idempotent);

/* Prints a failure as cli_call does, and returns code as the exit code. */
int cli_fail(cli *c, const char *what, hv_status code, const char *msg);

/* Prints a usage error for a command and returns CLI_EXIT_USAGE. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a JSON value (steals the reference) followed by a newline. */
void cli_print_json(json_t *v);

/* Command entry points. */
int cmd_health(cli *c, int argc, char **argv);
int cmd_echo(cli *c, int argc, char **argv);
int cmd_org(cli *c, int argc, char **argv);
int cmd_service(cli *c, int argc, char **argv);
int cmd_capacity(cli *c, int argc, char **argv);
int cmd_regions(cli *c, int argc, char **argv);
int cmd_referral(cli *c, int argc, char **argv);
int cmd_offer(cli *c, int argc, char **argv);
int cmd_placement(cli *c, int argc, char **argv);
int cmd_stats(cli *c, int argc, char **argv);
int cmd_admin(cli *c, int argc, char **argv);
int cmd_subject(cli *c, int argc, char **argv);
int cmd_consent(cli *c, int argc, char **argv);
int cmd_audit(cli *c, int argc, char **argv);

#endif
