/*
 * haven - the command-line client of a haven node.
 *
 *   haven [options] COMMAND [ARGS]
 *
 * Talks to the node over ipc:// (the local operator: the node's own user) or tls+tcp:// (a
 * partner organisation with its certificate, logged in with its key). Prints tables for
 * people and, with --json, one JSON document for scripts.
 *
 * Exit codes: 0 success; 1..16 the gRPC status code of the failed call (3 INVALID_ARGUMENT,
 * 5 NOT_FOUND, 7 PERMISSION_DENIED, 14 UNAVAILABLE, 16 UNAUTHENTICATED, ...); 64 usage error.
 */
#include "haven/auth.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/log.h"
#include "haven/rpc.h"
#include "haven/health/v1/health.pb-c.h"

#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: haven [options] COMMAND [ARGS]\n"
	    "options:\n"
	    "  --data DIR      node data directory; the node is at ipc://DIR/run/haven.sock\n"
	    "                  (default: $HAVEN_DATA, else ./haven-data)\n"
	    "  --url URL       the node's URL instead (ipc:// or tls+tcp://)\n"
	    "  --ca FILE --cert FILE --key FILE   TLS files of this organisation (tls+tcp://)\n"
	    "  --org ID        log in as organisation ID with --key (proves possession of the "
	    "key)\n"
	    "  --timeout MS    per-call timeout (default 10000; audit verify and admin backup: "
	    "300000)\n"
	    "  --json          print JSON instead of tables\n"
	    "commands:\n"
	    "  health [SERVICE]   is the node (or one service) serving?\n"
	    "  echo TEXT          round trip through the node (diagnostics)\n"
	    "  org register ID --name N --role R --region G [--cert FILE]\n"
	    "  org update ID [--name N] [--role R] [--region G] [--cert FILE] --version V\n"
	    "  org disable|enable|show ID      org list [--role R] [--region G]\n"
	    "  service register --org ORG --type T --region G --population P[,P] --total N\n"
	    "                   --contact C [--languages L,L] [--name N] [--id ID] [--unit U]\n"
	    "                   [--specialisation S,S] [--accessibility A,A] [--interval S]\n"
	    "                   [--available N]\n"
	    "  service show ID    service retire ID --version V    service approve ID --version V\n"
	    "  capacity set SERVICE AVAILABLE [--version V]   (without --version: on top of the\n"
	    "                     current version, read first)\n"
	    "  capacity freed SERVICE [N]    capacity taken SERVICE [N]   (one bed freed or "
	    "taken)\n"
	    "  capacity show SERVICE\n"
	    "  capacity find [--type T] [--population P] [--language L]... [--region G]... "
	    "[--free]\n"
	    "  capacity summary [--region G]...\n"
	    "  regions            the region map\n"
	    "  referral create --subject S --urgency immediate|urgent|planned\n"
	    "                  --exploitation labour|sexual|criminal|other|unknown\n"
	    "                  --need TYPE:POPULATION[:LANG,LANG]... [--exclude REGION]...\n"
	    "                  [--prefer REGION]... [--note TEXT] [--key IDEMPOTENCY_KEY]\n"
	    "  referral show ID   referral list [--open]   referral cancel ID --reason TEXT\n"
	    "  referral reassign ID NEED --reason TEXT     (coordinator)\n"
	    "  offer list [--open]   offer ack|accept ID\n"
	    "  offer decline ID --reason no-capacity|not-eligible|unsafe|other [--text T]\n"
	    "  placement placed|complete OFFER\n"
	    "  placement end OFFER --outcome client-refused|no-longer-needed|\n"
	    "                unable-to-contact-client|unable-to-contact-provider|other [--text T]\n"
	    "  stats --period YYYY-Www|YYYY-MM [--region R]...   a finished week or month: "
	    "referrals,\n"
	    "      placements, unmet demand (<5 and x hidden)\n"
	    "  admin backup DIR   consistent, compacted copy of the store (operator, admin)\n"
	    "  admin status       store size and call counters (operator, admin)\n"
	    "  subject create [--name N] [--dob YYYY-MM-DD] [--nationality X] [--language L]...\n"
	    "                 [--contact C] [--notes T|-] [--guardian G] [--minor]\n"
	    "                                                          prints the new subject id\n"
	    "  subject update ID [the create options] [--minor yes|no] [--clear FIELD[,FIELD]]\n"
	    "  subject show ID    subject erase ID    subject transfer ID --to ORG\n"
	    "  consent grant SUBJECT --purpose P[,P] (--recipient ORG[,ORG] | "
	    "--accepting-provider)\n"
	    "                --category C[,C] --given-by subject|guardian|representative\n"
	    "                --method written|verbal|verbal-with-interpreter|electronic\n"
	    "                --language L [--expires DAYS]\n"
	    "  consent withdraw ID    consent list SUBJECT\n"
	    "  consent check SUBJECT --purpose P [--recipient ORG] [--category C]\n"
	    "                [--accepting-provider]\n"
	    "  consent receipt ID | --verify FILE [--key PEM]    consent receipt-key\n"
	    "  consent rotate-key     rotate the key-encryption key now (operator, admin)\n"
	    "  audit verify           recompute the audit chain; name the first bad entry\n"
	    "  audit show [--subject ID] [--after SEQ] [--limit N]    who saw whom (a holder: its\n"
	    "                                                          subjects when none named)\n"
	    "  login NAME@ORG [--stdin]   a person signs in (password and code: prompted, from\n"
	    "                     HAVEN_PASSWORD and HAVEN_CODE, or two lines on stdin); later\n"
	    "                     commands to the same node use the session   logout\n"
	    "  person add ORG NAME --name N --role admin|case-worker|viewer [--stdin]\n"
	    "  person disable ID   person list ORG   person reset ID [--password] [--new-code]\n"
	    "                     [--enable]\n"
	    "  person role ID admin|case-worker|viewer   its sessions end; an organisation keeps\n"
	    "                     an enabled admin   (person: the operator; an organisation's\n"
	    "                     admin for its own)\n"
	    "  alerts show [ORG]      an organisation's alert channels (docs/alerts.md)\n"
	    "  alerts set [ORG] [--email A,...] [--oncall A] [--webhook URL --secret-file F]\n"
	    "  alerts watch [ORG] [--after SEQ] [--wait MS]    its alerts after a cursor\n"
	    "  alerts test [ORG]      one test alert through each channel, and its outcome\n"
	    "exit codes: 0 ok, 1..16 the call's gRPC status code, 64 usage\n");
}

static const struct {
	const char *name;
	int (*fn)(cli *, int, char **);
} commands[] = {
	{ "health", cmd_health },
	{ "echo", cmd_echo },
	{ "org", cmd_org },
	{ "service", cmd_service },
	{ "capacity", cmd_capacity },
	{ "regions", cmd_regions },
	{ "referral", cmd_referral },
	{ "offer", cmd_offer },
	{ "placement", cmd_placement },
	{ "stats", cmd_stats },
	{ "admin", cmd_admin },
	{ "subject", cmd_subject },
	{ "consent", cmd_consent },
	{ "audit", cmd_audit },
	{ "login", cmd_login },
	{ "logout", cmd_logout },
	{ "person", cmd_person },
	{ "alerts", cmd_alerts },
};

/* ---- a person's session (haven login, cmd_people.c) --------------------------------------- */

void
cli_session_path(char *out, size_t outsz)
{
	const char *p    = getenv("HAVEN_SESSION_FILE");
	const char *home = getenv("HOME");

	if (p != NULL && p[0] != '\0') {
		snprintf(out, outsz, "%s", p);
	} else {
		snprintf(out, outsz, "%s/.haven-session", home != NULL ? home : ".");
	}
}

/* Sends the session `haven login` kept for this URL, unless --org or c->no_session. */
static void
session_use(cli *c)
{
	char   path[PATH_MAX];
	char  *buf = NULL, *nl;
	size_t len = 0;

	if (c->no_session || c->org != NULL) {
		return;
	}
	cli_session_path(path, sizeof(path));
	/* private: a session file readable by others is refused (hv_file_read says why). */
	if (hv_file_read(path, CLI_SESSION_FILE_MAX, true, &buf, &len) != HV_OK) {
		return;
	}
	/* "URL\nTOKEN\n": used only for the node it was made for. */
	if ((nl = strchr(buf, '\n')) != NULL) {
		*nl = '\0';
		if (strcmp(buf, c->url) == 0) {
			char *tok = nl + 1, *end = strchr(tok, '\n');
			if (end != NULL) {
				*end = '\0';
			}
			if (tok[0] != '\0') {
				(void) rpc_channel_set_token(c->ch, tok);
			}
		}
	}
	crypto_wipe(buf, len);
	free(buf);
}

int
cli_fail(cli *c, const char *what, hv_status code, const char *msg)
{
	if (c->json) {
		cli_print_json(json_pack("{s:s, s:s, s:i, s:s}", "error", what, "status",
		    hv_status_name(code), "code", (int) code, "message", msg != NULL ? msg : ""));
	}
	fprintf(stderr, "haven: %s: %s: %s\n", what, hv_status_name(code),
	    msg != NULL && msg[0] != '\0' ? msg : "call failed");
	return ((int) code);
}

rpc_channel *
cli_channel(cli *c, int *rc)
{
	char      err[RPC_ERRMSG_MAX];
	char     *key = NULL;
	size_t    keylen;
	hv_status st;

	if (c->ch != NULL) {
		return (c->ch);
	}
	if ((st = rpc_channel_open(&c->ch, c->url, &c->co)) != HV_OK) {
		fprintf(stderr, "haven: cannot use %s: %s%s\n", c->url, hv_status_name(st),
		    st == HV_PERMISSION_DENIED
		        ? " (plain tcp:// is not allowed, or a key file is open "
		          "to others)"
		        : st == HV_INVALID_ARGUMENT ? " (tls+tcp:// needs --ca, --cert and --key)"
		                                    : "");
		c->ch = NULL;
		*rc   = (int) st;
		return (NULL);
	}
	if (c->org == NULL) {
		session_use(c);
		return (c->ch);
	}
	if ((st = hv_file_read(c->co.tls_key_file, 64 * 1024, true, &key, &keylen)) != HV_OK) {
		fprintf(stderr, "haven: cannot read key %s: %s\n", c->co.tls_key_file,
		    hv_status_name(st));
		*rc = (int) st;
		goto fail;
	}
	st = auth_login(c->ch, c->org, key, keylen, c->timeout_ms, err, sizeof(err));
	crypto_wipe(key, keylen);
	free(key);
	if (st != HV_OK) {
		*rc = cli_fail(c, "login", st, err);
		goto fail;
	}
	return (c->ch);
fail:
	rpc_channel_close(c->ch);
	c->ch = NULL;
	return (NULL);
}

int
cli_call(cli *c, const char *what, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, bool idempotent)
{
	rpc_call_options o = { .timeout_ms = c->timeout_ms, .idempotent = idempotent };
	char             err[RPC_ERRMSG_MAX];
	rpc_channel     *ch;
	int              rc = (int) HV_INTERNAL; /* cli_channel sets it when it fails */
	hv_status        st;

	if ((ch = cli_channel(c, &rc)) == NULL) {
		return (rc);
	}
	st = rpc_channel_call(ch, method, req, reply_desc, reply, &o, err, sizeof(err));
	if (st != HV_OK) {
		return (cli_fail(c, what, st, err));
	}
	return (0);
}

int
cli_call_long(cli *c, const char *what, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, bool idempotent)
{
	Haven__Health__V1__HealthCheckRequest hreq = HAVEN__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Haven__Health__V1__HealthCheckResponse *hrep  = NULL;
	uint32_t                                usual = c->timeout_ms;
	int                                     rc;

	if (c->timeout_given) {
		return (cli_call(c, what, method, req, reply_desc, reply, idempotent));
	}
	if ((rc = cli_call(c, what, "haven.health.v1.Health/Check", &hreq.base,
	         &haven__health__v1__health_check_response__descriptor, (ProtobufCMessage **) &hrep,
	         true)) != 0) {
		return (rc);
	}
	protobuf_c_message_free_unpacked(&hrep->base, NULL);
	c->timeout_ms = CLI_LONG_TIMEOUT_MS;
	rc            = cli_call(c, what, method, req, reply_desc, reply, idempotent);
	c->timeout_ms = usual;
	return (rc);
}

int
cli_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("haven: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see haven --help)\n", stderr);
	return (CLI_EXIT_USAGE);
}

void
cli_print_json(json_t *v)
{
	if (v == NULL) {
		fputs("null\n", stdout);
		return;
	}
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	fputc('\n', stdout);
	json_decref(v);
}

const char *
cli_when(int64_t ms, char *buf, size_t n)
{
	time_t    t = (time_t) (ms / 1000);
	struct tm tm;

	if (ms == 0 || gmtime_r(&t, &tm) == NULL) {
		snprintf(buf, n, "-");
	} else {
		strftime(buf, n, "%Y-%m-%d %H:%M UTC", &tm);
	}
	return (buf);
}

#define CLOSE_WAIT_S 3 /* seconds the channel's close may take at exit */

/* The exit code of the command, for close_watchdog. */
static volatile sig_atomic_t exit_code;

/* libnng 1.5.2's nng_close can wait for good for a tls+tcp:// connection whose node was killed
 * during its handshake (seen in tests/fault's crash loop): the command is done, its answer
 * printed, so the process leaves with its code instead of hanging. */
static void
close_watchdog(int sig)
{
	(void) sig;
	_exit((int) exit_code);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "data", required_argument, NULL, 'd' },
		{ "url", required_argument, NULL, 'u' },
		{ "ca", required_argument, NULL, 'a' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "org", required_argument, NULL, 'o' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	cli                  c    = { .timeout_ms = 10000 };
	rpc_channel_options *co   = &c.co;
	const char          *data = getenv("HAVEN_DATA");
	char                 defurl[PATH_MAX + 32];
	int                  opt;
	int                  ret = CLI_EXIT_USAGE;

	while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			data = optarg;
			break;
		case 'u':
			c.url = optarg;
			break;
		case 'a':
			co->tls_ca_file = optarg;
			break;
		case 'c':
			co->tls_cert_file = optarg;
			break;
		case 'k':
			co->tls_key_file = optarg;
			break;
		case 'o':
			c.org = optarg;
			break;
		case 't': {
			char *end;
			long  n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > 3600000) {
				fprintf(stderr,
				    "haven: --timeout must be 1..3600000 ms, not '%s'\n", optarg);
				return (CLI_EXIT_USAGE);
			}
			c.timeout_ms    = (uint32_t) n;
			c.timeout_given = true;
			break;
		}
		case 'j':
			c.json = true;
			break;
		case 'h':
			usage(stdout);
			return (0);
		default:
			usage(stderr);
			return (CLI_EXIT_USAGE);
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return (CLI_EXIT_USAGE);
	}
	log_init("cli", LOG_LEVEL_WARN);
	if (c.url == NULL) {
		snprintf(defurl, sizeof(defurl), "ipc://%s/run/haven.sock",
		    data != NULL ? data : "./haven-data");
		c.url = defurl;
	}
	if (c.org != NULL && co->tls_key_file == NULL) {
		fprintf(stderr, "haven: --org needs --key\n");
		return (CLI_EXIT_USAGE);
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, argv[optind]) == 0) {
			ret = commands[i].fn(&c, argc - optind - 1, argv + optind + 1);
			goto out;
		}
	}
	fprintf(stderr, "haven: unknown command '%s' (see haven --help)\n", argv[optind]);
out:
	fflush(stdout);
	fflush(stderr);
	exit_code = ret;
	signal(SIGALRM, close_watchdog);
	alarm(CLOSE_WAIT_S);
	rpc_channel_close(c.ch);
	alarm(0);
	return (ret);
}
