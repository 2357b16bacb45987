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
	rpc_channel        *ch; /* NULL until the first call (cli_channel) */
	bool                json;
	uint32_t            timeout_ms;
	bool                timeout_given; /* --timeout was on the command line */
	const char         *url;
	rpc_channel_options co;
	const char         *org;        /* log in as this organisation (--org), or NULL */
	bool                no_session; /* do not send the stored person's session (login) */
} cli;

/* How long a call that reads every record may take (audit verify walks every entry of the log,
 * about 2.5 s a million on a small machine, longer under load; backup copies the store): the
 * server's longest deadline (rpc.h: max_timeout_ms), unless --timeout was given. */
#define CLI_LONG_TIMEOUT_MS 300000

/* cli_call for such a call: unless --timeout was given, a Health/Check with the usual timeout
 * first (a node that is down or unreachable is told in seconds, not minutes), then the call
 * with CLI_LONG_TIMEOUT_MS. */
int cli_call_long(cli *c, const char *what, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, bool idempotent);

/* The channel to the node: opened, and logged in with --org, at the first call, so that a
 * command refused for its arguments never connects. NULL after printing why it could not be
 * opened; *rc is then the exit code. */
rpc_channel *cli_channel(cli *c, int *rc);

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

/* ---- cli_args.c: a command's words ---------------------------------------------------- */

#define CLI_POS_MAX  4
#define CLI_OPTS_MAX 32

/* Positional words and --name VALUE / --name=VALUE options, in order. */
typedef struct cli_args {
	const char *pos[CLI_POS_MAX];
	size_t      npos;
	struct {
		const char *name;  /* after "--"; may go on with "=VALUE" */
		const char *value; /* NULL for a flag */
	} opt[CLI_OPTS_MAX];
	size_t nopt;
} cli_args;

/* Splits argv. valued: the options that take a value, flags: those that do not (both
 * space-separated; NULL: none); anything else starting with -- is a usage error, as are more
 * than npos positional words. Returns 0 or CLI_EXIT_USAGE (the message printed). */
int cli_args_parse(cli_args *a, int argc, char **argv, const char *cmd, size_t npos,
    const char *valued, const char *flags);
/* The last value given for an option, or NULL. */
const char *cli_opt(const cli_args *a, const char *name);
/* Whether a flag was given. */
bool cli_flag(const cli_args *a, const char *name);
/* Every value of a repeatable option, each split at commas (empty parts skipped), into out
 * (at most max), copied into buf (bufsz bytes). Returns the count, or -1 when they do not
 * fit; the caller prints the usage error. */
int cli_opt_list(const cli_args *a, const char *name, char **out, size_t max, char *buf,
    size_t bufsz);

/* 0 when every one of the n values of option --name is a language tag (text_lang_ok of
 * haven/text.h, the rule the services apply); a usage error naming the first one that is not. */
int cli_langs_check(const char *name, char *const *v, size_t n);

/* The CLI's name of value v of enum d: pbenum.h's name, without the prefix the referral enums
 * repeat in every value ("NO_CAPACITY" -> "no-capacity", "OFFER_OPEN" -> "open"); the number
 * for an unknown value. Returns buf. */
const char *cli_enum_name(const ProtobufCEnumDescriptor *d, int v, char *buf, size_t bufsz);

/* Parses s, a name as cli_enum_name writes it ("legal-aid"), into *out; a usage error
 * "unknown WHAT 's' (one of: ...)" listing the valid names otherwise. */
int cli_enum_parse(const ProtobufCEnumDescriptor *d, const char *what, const char *s, int *out);

/* Parses s as a decimal number from min to max into *out ("what" names it in the usage error
 * otherwise). */
int cli_parse_u64(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Prints a JSON value (steals the reference) followed by a newline. */
void cli_print_json(json_t *v);

/* A time in ms since the epoch as "2026-11-28 10:00 UTC" in buf; "-" for 0. Returns buf. */
const char *cli_when(int64_t ms, char *buf, size_t n);

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
int cmd_login(cli *c, int argc, char **argv);
int cmd_logout(cli *c, int argc, char **argv);
int cmd_person(cli *c, int argc, char **argv);
int cmd_alerts(cli *c, int argc, char **argv);

/* The file `haven login` keeps the session in ($HAVEN_SESSION_FILE, else ~/.haven-session):
 * "URL\nTOKEN\n". cli_channel sends the token to that URL, unless --org or c->no_session. */
#define CLI_SESSION_FILE_MAX 8192
void cli_session_path(char *out, size_t outsz);

#endif
