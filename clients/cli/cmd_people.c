/*
 * cmd_people.c - people and their sessions from the command line:
 *
 *   haven login NAME@ORG        prompts for the password and the six-digit code (on the
 *                               terminal, not echoed); a script gives them in HAVEN_PASSWORD
 *                               and HAVEN_CODE, or as two lines on stdin (--stdin)
 *   haven logout                ends the session on the node and forgets it here
 *   haven person add ORG NAME --name N --role admin|case-worker|viewer
 *                               the password as for login (HAVEN_NEW_PASSWORD, --stdin, or a
 *                               prompt); prints the person's id, login name (NAME@ORG: a
 *                               login name belongs to its organisation) and the otpauth://
 *                               URI once
 *   haven person disable ID     haven person list ORG
 *   haven person reset ID [--password] [--new-code] [--enable]
 *   haven person role ID admin|case-worker|viewer
 *                               the person's role within its organisation; its sessions end
 *                               (the same role again changes nothing); an organisation's last
 *                               enabled admin keeps the role (exit 9, FAILED_PRECONDITION)
 *
 * The session: `haven login` stores the node's URL and the session token in the session file
 * ($HAVEN_SESSION_FILE, else ~/.haven-session; 0600, made private whatever the umask); later
 * commands to the same URL without --org send it (haven.c, cli_channel). Passwords, codes, tokens
 * and otpauth URIs never go to stderr or to a log; the URI is printed on stdout once, for the
 * person to scan or type into an authenticator app.
 */
#include "cli.h"

#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/people/v1/people.pb-c.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define SECRET_MAX 1100 /* a password (1024 bytes) and its line end */

/* ---- the session file (its path and its use: haven.c) ---------------------------------- */

static int
session_save(cli *c, const char *token)
{
	char      path[PATH_MAX];
	char      buf[CLI_SESSION_FILE_MAX];
	int       n = snprintf(buf, sizeof(buf), "%s\n%s\n", c->url, token);
	hv_status st;

	cli_session_path(path, sizeof(path));
	if (n < 0 || (size_t) n >= sizeof(buf)) {
		return (
		    cli_fail(c, "login", HV_INTERNAL, "the session does not fit the session file"));
	}
	(void) unlink(path); /* hv_file_create_private makes it anew, 0600 */
	st = hv_file_create_private(path, buf, (size_t) n);
	crypto_wipe(buf, sizeof(buf));
	if (st != HV_OK) {
		fprintf(stderr, "haven: login: cannot write the session file %s: %s\n", path,
		    hv_status_name(st));
		return ((int) st);
	}
	return (0);
}

/* ---- secrets from the terminal, the environment or stdin ------------------------------- */

/* One line from f into out (its end removed); false at the end or for a line too long. */
static bool
read_line(FILE *f, char *out, size_t outsz)
{
	size_t n;

	if (fgets(out, (int) outsz, f) == NULL) {
		return (false);
	}
	n = strlen(out);
	if (n > 0 && out[n - 1] == '\n') {
		out[--n] = '\0';
	} else if (!feof(f)) {
		crypto_wipe(out, outsz);
		return (false);
	}
	if (n > 0 && out[n - 1] == '\r') {
		out[--n] = '\0';
	}
	return (true);
}

/* A secret: from env (when set), else a line of stdin (use_stdin), else the terminal without
 * echo after prompt. */
static bool
get_secret(const char *env, bool use_stdin, const char *prompt, char *out, size_t outsz)
{
	const char    *v = getenv(env);
	FILE          *tty;
	struct termios old, quiet;
	bool           ok, echo_off = false;

	if (v != NULL) {
		return ((size_t) snprintf(out, outsz, "%s", v) < outsz);
	}
	if (use_stdin) {
		return (read_line(stdin, out, outsz));
	}
	if ((tty = fopen("/dev/tty", "r+")) == NULL) {
		return (false);
	}
	fputs(prompt, tty);
	fflush(tty);
	if (tcgetattr(fileno(tty), &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t) ECHO;
		echo_off = tcsetattr(fileno(tty), TCSAFLUSH, &quiet) == 0;
	}
	ok = read_line(tty, out, outsz);
	if (echo_off) {
		(void) tcsetattr(fileno(tty), TCSAFLUSH, &old);
		fputc('\n', tty);
	}
	fclose(tty);
	return (ok);
}

/* ---- login, logout ---------------------------------------------------------------------- */

int
cmd_login(cli *c, int argc, char **argv)
{
	Haven__People__V1__LoginRequest   req = HAVEN__PEOPLE__V1__LOGIN_REQUEST__INIT;
	Haven__People__V1__LoginResponse *rep = NULL;
	cli_args                          a;
	char                              pw[SECRET_MAX], code[16];
	int                               rc;

	if ((rc = cli_args_parse(&a, argc, argv, "login", 1, NULL, "stdin")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("usage: haven login NAME@ORG [--stdin]"));
	}
	if (!get_secret("HAVEN_PASSWORD", cli_flag(&a, "stdin"), "password: ", pw, sizeof(pw)) ||
	    !get_secret("HAVEN_CODE", cli_flag(&a, "stdin"), "code: ", code, sizeof(code))) {
		crypto_wipe(pw, sizeof(pw));
		return (cli_usage("login needs a password and a code (terminal, HAVEN_PASSWORD and "
		                  "HAVEN_CODE, or two lines with --stdin)"));
	}
	req.login     = (char *) a.pos[0];
	req.password  = pw;
	req.code      = code;
	c->no_session = true; /* an old token would be refused before Login is reached */
	rc            = cli_call(c, "login", "haven.people.v1.People/Login", &req.base,
	               &haven__people__v1__login_response__descriptor, (ProtobufCMessage **) &rep, false);
	crypto_wipe(pw, sizeof(pw));
	crypto_wipe(code, sizeof(code));
	if (rc != 0) {
		return (rc);
	}
	if ((rc = session_save(c, rep->token)) == 0) {
		if (c->json) {
			cli_print_json(json_pack("{s:s, s:s, s:s, s:I, s:i}", "person_id",
			    rep->person_id, "org_id", rep->org_id, "org_role", rep->org_role,
			    "expires_at_ms", (json_int_t) rep->expires_at_ms, "idle_timeout_s",
			    (int) rep->idle_timeout_s));
		} else {
			printf(
			    "signed in: person %s of %s (%s); the session ends after %u s idle\n",
			    rep->person_id, rep->org_id, rep->org_role, rep->idle_timeout_s);
		}
	}
	crypto_wipe(rep->token, strlen(rep->token));
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (rc);
}

int
cmd_logout(cli *c, int argc, char **argv)
{
	Haven__People__V1__LogoutRequest   req = HAVEN__PEOPLE__V1__LOGOUT_REQUEST__INIT;
	Haven__People__V1__LogoutResponse *rep = NULL;
	char                               path[PATH_MAX];
	int                                rc;

	(void) argv;
	if (argc != 0) {
		return (cli_usage("usage: haven logout"));
	}
	rc = cli_call(c, "logout", "haven.people.v1.People/Logout", &req.base,
	    &haven__people__v1__logout_response__descriptor, (ProtobufCMessage **) &rep, false);
	/* Forgotten here whatever the node said: an expired session is as good as ended. */
	cli_session_path(path, sizeof(path));
	if (unlink(path) != 0 && errno != ENOENT) {
		fprintf(stderr, "haven: logout: cannot remove %s\n", path);
	}
	if (rc == (int) HV_UNAUTHENTICATED) {
		printf("the session had ended already\n");
		return (0);
	}
	if (rc != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:b}", "revoked", rep->revoked));
	} else {
		printf("%s\n", rep->revoked ? "signed out" : "no person's session to end");
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

/* ---- person add, disable, reset, role, list --------------------------------------------- */

static const char *
role_name(Haven__People__V1__PersonRole r)
{
	switch (r) {
	case HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_ORG_ADMIN:
		return ("admin");
	case HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_CASE_WORKER:
		return ("case-worker");
	case HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_VIEWER:
		return ("viewer");
	default:
		return ("unknown");
	}
}

/* The CLI's word for a role (role_name's inverse); UNSPECIFIED for anything else. */
static Haven__People__V1__PersonRole
role_parse(const char *word)
{
	static const Haven__People__V1__PersonRole roles[] = {
		HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_ORG_ADMIN,
		HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_CASE_WORKER,
		HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_VIEWER,
	};

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		if (strcmp(word, role_name(roles[i])) == 0) {
			return (roles[i]);
		}
	}
	return (HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_UNSPECIFIED);
}

static json_t *
person_json(const Haven__People__V1__Person *p)
{
	return (
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:I}", "id", p->id, "org_id", p->org_id,
	        "login", p->login, "display_name", p->display_name, "role", role_name(p->role),
	        "enabled", p->enabled, "locked", p->locked, "version", (json_int_t) p->version));
}

static void
person_line(const Haven__People__V1__Person *p)
{
	printf("%-32s  %-11s  %-8s  %-24s  %s\n", p->id, role_name(p->role),
	    !p->enabled     ? "disabled"
	        : p->locked ? "locked"
	                    : "enabled",
	    p->login, p->display_name);
}

/* Prints a person and, once, the URI of a new second factor. */
static void
person_print(cli *c, const Haven__People__V1__Person *p, const char *uri)
{
	if (c->json) {
		json_t *o = person_json(p);
		if (uri != NULL && uri[0] != '\0') {
			json_object_set_new(o, "otpauth_uri", json_string(uri));
		}
		cli_print_json(o);
		return;
	}
	person_line(p);
	if (uri != NULL && uri[0] != '\0') {
		printf("second factor (shown once; give it to the person only):\n%s\n", uri);
	}
}

static int
person_add(cli *c, int argc, char **argv)
{
	Haven__People__V1__CreatePersonRequest req = HAVEN__PEOPLE__V1__CREATE_PERSON_REQUEST__INIT;
	Haven__People__V1__CreatePersonResponse *rep = NULL;
	cli_args                                 a;
	char                                     pw[SECRET_MAX];
	const char                              *role;
	int                                      rc;

	if ((rc = cli_args_parse(&a, argc, argv, "person add", 2, "name role", "stdin")) != 0) {
		return (rc);
	}
	role = cli_opt(&a, "role");
	if (a.npos != 2 || cli_opt(&a, "name") == NULL || role == NULL) {
		return (cli_usage("usage: haven person add ORG NAME --name N "
		                  "--role admin|case-worker|viewer [--stdin]"));
	}
	if ((req.role = role_parse(role)) ==
	    HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_UNSPECIFIED) {
		return (cli_usage("--role must be admin, case-worker or viewer, not '%s'", role));
	}
	if (!get_secret("HAVEN_NEW_PASSWORD", cli_flag(&a, "stdin"), "new person's password: ", pw,
	        sizeof(pw))) {
		return (cli_usage("person add needs a password (terminal, HAVEN_NEW_PASSWORD, or a "
		                  "line with --stdin)"));
	}
	req.org_id       = (char *) a.pos[0];
	req.login        = (char *) a.pos[1];
	req.display_name = (char *) cli_opt(&a, "name");
	req.password     = pw;
	rc = cli_call(c, "person add", "haven.people.v1.People/CreatePerson", &req.base,
	    &haven__people__v1__create_person_response__descriptor, (ProtobufCMessage **) &rep,
	    false);
	crypto_wipe(pw, sizeof(pw));
	if (rc != 0) {
		return (rc);
	}
	person_print(c, rep->person, rep->otpauth_uri);
	crypto_wipe(rep->otpauth_uri, strlen(rep->otpauth_uri));
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
person_disable(cli *c, const char *id)
{
	Haven__People__V1__DisablePersonRequest req =
	    HAVEN__PEOPLE__V1__DISABLE_PERSON_REQUEST__INIT;
	Haven__People__V1__DisablePersonResponse *rep = NULL;
	int                                       rc;

	req.person_id = (char *) id;
	if ((rc = cli_call(c, "person disable", "haven.people.v1.People/DisablePerson", &req.base,
	         &haven__people__v1__disable_person_response__descriptor,
	         (ProtobufCMessage **) &rep, false)) != 0) {
		return (rc);
	}
	person_print(c, rep->person, NULL);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
person_reset(cli *c, int argc, char **argv)
{
	Haven__People__V1__ResetPersonRequest   req = HAVEN__PEOPLE__V1__RESET_PERSON_REQUEST__INIT;
	Haven__People__V1__ResetPersonResponse *rep = NULL;
	cli_args                                a;
	char                                    pw[SECRET_MAX] = "";
	int                                     rc;

	if ((rc = cli_args_parse(&a, argc, argv, "person reset", 1, NULL,
	         "password new-code enable stdin")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (
		    cli_usage("usage: haven person reset ID [--password] [--new-code] [--enable]"));
	}
	if (cli_flag(&a, "password") &&
	    !get_secret("HAVEN_NEW_PASSWORD", cli_flag(&a, "stdin"), "new password: ", pw,
	        sizeof(pw))) {
		return (
		    cli_usage("--password needs the new password (terminal, HAVEN_NEW_PASSWORD, "
		              "or a line with --stdin)"));
	}
	req.person_id         = (char *) a.pos[0];
	req.password          = pw;
	req.new_second_factor = cli_flag(&a, "new-code");
	req.enable            = cli_flag(&a, "enable");
	rc = cli_call(c, "person reset", "haven.people.v1.People/ResetPerson", &req.base,
	    &haven__people__v1__reset_person_response__descriptor, (ProtobufCMessage **) &rep,
	    false);
	crypto_wipe(pw, sizeof(pw));
	if (rc != 0) {
		return (rc);
	}
	person_print(c, rep->person, rep->otpauth_uri);
	crypto_wipe(rep->otpauth_uri, strlen(rep->otpauth_uri));
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
person_role(cli *c, int argc, char **argv)
{
	Haven__People__V1__SetPersonRoleRequest req =
	    HAVEN__PEOPLE__V1__SET_PERSON_ROLE_REQUEST__INIT;
	Haven__People__V1__SetPersonRoleResponse *rep = NULL;
	int                                       rc;

	if (argc != 2) {
		return (cli_usage("usage: haven person role ID admin|case-worker|viewer"));
	}
	if ((req.role = role_parse(argv[1])) ==
	    HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_UNSPECIFIED) {
		return (
		    cli_usage("person role: ROLE must be admin, case-worker or viewer, not '%s'",
		        argv[1]));
	}
	req.person_id = argv[0];
	if ((rc = cli_call(c, "person role", "haven.people.v1.People/SetPersonRole", &req.base,
	         &haven__people__v1__set_person_role_response__descriptor,
	         (ProtobufCMessage **) &rep, false)) != 0) {
		return (rc);
	}
	person_print(c, rep->person, NULL);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
person_list(cli *c, const char *org)
{
	Haven__People__V1__ListPeopleRequest   req = HAVEN__PEOPLE__V1__LIST_PEOPLE_REQUEST__INIT;
	Haven__People__V1__ListPeopleResponse *rep = NULL;
	int                                    rc;

	req.org_id = (char *) org;
	if ((rc = cli_call(c, "person list", "haven.people.v1.People/ListPeople", &req.base,
	         &haven__people__v1__list_people_response__descriptor, (ProtobufCMessage **) &rep,
	         true)) != 0) {
		return (rc);
	}
	if (c->json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < rep->n_people; i++) {
			json_array_append_new(arr, person_json(rep->people[i]));
		}
		cli_print_json(arr);
	} else {
		for (size_t i = 0; i < rep->n_people; i++) {
			person_line(rep->people[i]);
		}
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

int
cmd_person(cli *c, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "add") == 0) {
		return (person_add(c, argc - 1, argv + 1));
	}
	if (argc == 2 && strcmp(argv[0], "disable") == 0) {
		return (person_disable(c, argv[1]));
	}
	if (argc >= 1 && strcmp(argv[0], "reset") == 0) {
		return (person_reset(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "role") == 0) {
		return (person_role(c, argc - 1, argv + 1));
	}
	if (argc == 2 && strcmp(argv[0], "list") == 0) {
		return (person_list(c, argv[1]));
	}
	return (cli_usage("usage: haven person add|disable|reset|role|list ..."));
}
