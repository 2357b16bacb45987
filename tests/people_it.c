/*
 * people_it.c - people inside organisations, through a real haven-node (argv[1]) over
 * ipc://: the operator makes an organisation's first admin, who adds, disables and resets its
 * own people and nobody else's, and changes their roles (an organisation keeps an enabled
 * admin, even when two admins demote each other at once); people sign in with a password and
 * a one-time code computed
 * from the otpauth URI they were given; one answer for every wrong part; back-off after
 * failures; sessions end at Logout, when idle, when their person or organisation is disabled;
 * a viewer only reads; a case worker does not manage people; bad input to every method;
 * calls marked as background and an open event stream (GET /events, over the node's HTTP
 * listener) do not hold off the idle limit, and the stream ends at it.
 *
 * The node runs with session_idle_s = 6 so that idleness can be waited for.
 *
 *   people_it HAVEN_NODE
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/rpc.h"
#include "testutil.h"

#include "haven/capacity/v1/capacity.pb-c.h"
#include "haven/consent/v1/audit.pb-c.h"
#include "haven/consent/v1/consent.pb-c.h"
#include "haven/health/v1/health.pb-c.h"
#include "haven/people/v1/people.pb-c.h"

#define IDLE_S   6
#define M_PPL(m) "haven.people.v1.People/" m
#define ROLE(r)  HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_##r

static struct {
	char         dir[400];
	char         data[500];
	char         url[600];
	pid_t        node;
	int          http_port;
	const char  *node_bin;
	rpc_channel *op; /* the operator: no token over ipc:// */
	char         err[RPC_ERRMSG_MAX];
	unsigned     seq;
} g;

/* A person as the test knows it: what its admin was told at enrolment. */
typedef struct person {
	char         id[RPC_PERSON_ID_MAX];
	char         login[64];
	char         password[64];
	uint8_t      secret[CRYPTO_OTP_SECRET_MAX];
	size_t       secretlen;
	int64_t      next_step; /* a code is accepted once: each sign-in uses a later step */
	rpc_channel *ch;        /* its own channel, with its session token once signed in */
	char         token[128];
} person;

/* ---- calls ----------------------------------------------------------------------------- */

static hv_status
call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *out_desc, ProtobufCMessage **out)
{
	ProtobufCMessage *m = NULL;
	rpc_call_options  o = { .timeout_ms = 20000 };
	hv_status         st;

	g.err[0] = '\0';
	st       = rpc_channel_call(ch, method, req, out_desc, &m, &o, g.err, sizeof(g.err));
	if (out != NULL) {
		*out = m;
	} else if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return (st);
}

static const ProtobufCMessageDescriptor *
people_out(const char *method)
{
	const ProtobufCMethodDescriptor *md =
	    protobuf_c_service_descriptor_get_method_by_name(&haven__people__v1__people__descriptor,
	        strchr(method, '/') + 1);

	assert_non_null(md);
	return (md->output);
}

static hv_status
ppl(rpc_channel *ch, const char *method, const ProtobufCMessage *req, ProtobufCMessage **out)
{
	return (call(ch, method, req, people_out(method), out));
}

static rpc_channel *
channel(void)
{
	rpc_channel *ch = NULL;

	assert_int_equal(rpc_channel_open(&ch, g.url, NULL), HV_OK);
	return (ch);
}

/* ---- the node -------------------------------------------------------------------------- */

/* Starts the node (ipc://, and plain HTTP on a random loopback port for GET /events); a port
 * taken by another process makes it exit, and the next try takes another. */
static void
node_start(void)
{
	Haven__Health__V1__HealthCheckRequest r = HAVEN__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	char                                  log[600];
	char                                  idle[16], http[64];
	int                                   status;

	tu_tmpdir(g.dir, sizeof(g.dir), "people");
	snprintf(g.data, sizeof(g.data), "%s/data", g.dir);
	snprintf(g.url, sizeof(g.url), "ipc://%s/run/haven.sock", g.data);
	snprintf(log, sizeof(log), "%s/node.log", g.dir);
	snprintf(idle, sizeof(idle), "%d", IDLE_S);
	srand((unsigned) getpid());
	for (int attempt = 0; attempt < 5; attempt++) {
		g.http_port = 20000 + rand() % 10000;
		snprintf(http, sizeof(http), "http://127.0.0.1:%d", g.http_port);
		if ((g.node = fork()) == 0) {
			if (freopen(log, "a", stdout) == NULL || dup2(fileno(stdout), 2) < 0) {
				_exit(127);
			}
			execl(g.node_bin, g.node_bin, "--data-dir", g.data, "--listen", g.url,
			    "--http-listen", http, "--session-idle-s", idle, (char *) NULL);
			_exit(127);
		}
		assert_true(g.node > 0);
		if (g.op == NULL) {
			g.op = channel();
		}
		for (int i = 0; i < 600; i++) {
			if (call(g.op, "haven.health.v1.Health/Check", &r.base,
			        &haven__health__v1__health_check_response__descriptor,
			        NULL) == HV_OK) {
				return;
			}
			if (waitpid(g.node, &status, WNOHANG) == g.node) {
				break; /* exited: its port was taken, most likely */
			}
			usleep(100 * 1000);
		}
		if (kill(g.node, 0) == 0) {
			break; /* running but not answering: no use trying another port */
		}
	}
	fail_msg("haven-node did not start (see %s)", log);
}

static void
register_org(const char *id, Haven__Capacity__V1__Role role)
{
	Haven__Capacity__V1__RegisterOrganisationRequest r =
	    HAVEN__CAPACITY__V1__REGISTER_ORGANISATION_REQUEST__INIT;
	Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;

	o.id           = (char *) id;
	o.name         = (char *) id;
	o.role         = role;
	o.region       = "Amsterdam";
	r.organisation = &o;
	assert_int_equal(call(g.op, "haven.capacity.v1.Capacity/RegisterOrganisation", &r.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_OK);
}

/* ---- people ----------------------------------------------------------------------------- */

/* The secret of an otpauth URI (what an authenticator app reads). */
static void
take_secret(person *p, const char *uri)
{
	const char *s = strstr(uri, "secret=");
	const char *e;

	assert_non_null(s);
	assert_true(strncmp(uri, "otpauth://totp/haven:", 21) == 0);
	s += 7;
	e = strchr(s, '&');
	assert_non_null(e);
	assert_int_equal(crypto_b32_decode(p->secret, sizeof(p->secret), &p->secretlen, s,
	                     (size_t) (e - s)),
	    HV_OK);
	p->next_step = 0;
}

/* as (the operator's channel or an admin's) adds a person to org; HV_OK fills *p. */
static hv_status
add_person(rpc_channel *as, const char *org, Haven__People__V1__PersonRole role, person *p)
{
	Haven__People__V1__CreatePersonRequest   r = HAVEN__PEOPLE__V1__CREATE_PERSON_REQUEST__INIT;
	Haven__People__V1__CreatePersonResponse *resp = NULL;
	hv_status                                st;

	memset(p, 0, sizeof(*p));
	snprintf(p->login, sizeof(p->login), "Person.%u@%s", ++g.seq, org);
	snprintf(p->password, sizeof(p->password), "correct horse %u battery", g.seq);
	r.org_id       = (char *) org;
	r.login        = p->login;
	r.display_name = "Demo Person";
	r.role         = role;
	r.password     = p->password;
	if ((st = ppl(as, M_PPL("CreatePerson"), &r.base, (void *) &resp)) != HV_OK) {
		return (st);
	}
	assert_non_null(resp->person);
	assert_string_equal(resp->person->org_id, org);
	assert_int_equal(resp->person->role, role);
	assert_true(resp->person->enabled);
	/* The login name is folded to lower case; the display name comes back as given. */
	assert_string_equal(resp->person->display_name, "Demo Person");
	assert_int_equal(strncmp(resp->person->login, "person.", 7), 0);
	snprintf(p->id, sizeof(p->id), "%s", resp->person->id);
	take_secret(p, resp->otpauth_uri);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return (HV_OK);
}

/* The code of the next unused step (now's, or a later one within the window). */
static void
code_for(person *p, char code[8])
{
	int64_t  step = hv_clock_wall_ms() / 1000 / CRYPTO_TOTP_PERIOD;
	uint32_t c;

	if (step < p->next_step) {
		step = p->next_step;
	}
	if (step > hv_clock_wall_ms() / 1000 / CRYPTO_TOTP_PERIOD + 1) {
		/* Both steps of the window used: wait for the next one. */
		sleep((unsigned) (CRYPTO_TOTP_PERIOD -
		    (hv_clock_wall_ms() / 1000) % CRYPTO_TOTP_PERIOD));
		step = hv_clock_wall_ms() / 1000 / CRYPTO_TOTP_PERIOD + 1;
	}
	assert_int_equal(crypto_hotp(&c, CRYPTO_OTP_SHA1, 6, p->secret, p->secretlen,
	                     (uint64_t) step),
	    HV_OK);
	snprintf(code, 8, "%06u", c);
	p->next_step = step + 1;
}

static hv_status
login_with(person *p, const char *login, const char *password, const char *code)
{
	Haven__People__V1__LoginRequest   r    = HAVEN__PEOPLE__V1__LOGIN_REQUEST__INIT;
	Haven__People__V1__LoginResponse *resp = NULL;
	rpc_channel                      *ch   = channel();
	hv_status                         st;

	r.login    = (char *) login;
	r.password = (char *) password;
	r.code     = (char *) code;
	st         = ppl(ch, M_PPL("Login"), &r.base, (void *) &resp);
	if (st == HV_OK) {
		assert_int_equal(strncmp(resp->token, "hs1.", 4), 0);
		assert_string_equal(resp->person_id, p->id);
		assert_int_equal(resp->idle_timeout_s, IDLE_S);
		snprintf(p->token, sizeof(p->token), "%s", resp->token);
		assert_int_equal(rpc_channel_set_token(ch, resp->token), HV_OK);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		if (p->ch != NULL) {
			rpc_channel_close(p->ch);
		}
		p->ch = ch;
	} else {
		rpc_channel_close(ch);
	}
	return (st);
}

static hv_status
login(person *p)
{
	char code[8];

	code_for(p, code);
	return (login_with(p, p->login, p->password, code));
}

static hv_status
list_people(rpc_channel *ch, const char *org, size_t *n)
{
	Haven__People__V1__ListPeopleRequest   r    = HAVEN__PEOPLE__V1__LIST_PEOPLE_REQUEST__INIT;
	Haven__People__V1__ListPeopleResponse *resp = NULL;
	hv_status                              st;

	r.org_id = (char *) org;
	st       = ppl(ch, M_PPL("ListPeople"), &r.base, (void *) &resp);
	if (st == HV_OK) {
		if (n != NULL) {
			*n = resp->n_people;
		}
		for (size_t i = 0; i < resp->n_people; i++) {
			assert_string_equal(resp->people[i]->org_id, org);
		}
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return (st);
}

static hv_status
disable(rpc_channel *ch, const char *id)
{
	Haven__People__V1__DisablePersonRequest r = HAVEN__PEOPLE__V1__DISABLE_PERSON_REQUEST__INIT;

	r.person_id = (char *) id;
	return (ppl(ch, M_PPL("DisablePerson"), &r.base, NULL));
}

/* SetPersonRole as ch; the person answered into *out when given (caller frees). */
static hv_status
set_role(rpc_channel *ch, const char *id, Haven__People__V1__PersonRole role,
    Haven__People__V1__SetPersonRoleResponse **out)
{
	Haven__People__V1__SetPersonRoleRequest r =
	    HAVEN__PEOPLE__V1__SET_PERSON_ROLE_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	hv_status         st;

	r.person_id = (char *) id;
	r.role      = role;
	st          = ppl(ch, M_PPL("SetPersonRole"), &r.base, &m);
	if (out != NULL) {
		*out = (void *) m;
	} else if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return (st);
}

/* A call any organisation may make (reads the region map): tells whether a session works. */
static hv_status
regions(rpc_channel *ch)
{
	Haven__Capacity__V1__ListRegionsRequest r = HAVEN__CAPACITY__V1__LIST_REGIONS_REQUEST__INIT;

	return (call(ch, "haven.capacity.v1.Capacity/ListRegions", &r.base,
	    &haven__capacity__v1__list_regions_response__descriptor, NULL));
}

static void
person_free(person *p)
{
	if (p->ch != NULL) {
		rpc_channel_close(p->ch);
	}
	memset(p, 0, sizeof(*p));
}

/* ---- the tests --------------------------------------------------------------------------- */

static person admin_ngo, admin_shelter;

/* The NGO admin's channel, signed in again when its session went idle meanwhile (sign-ins
 * hash passwords: slow under the sanitizers, and the node's idle limit is short). */
static rpc_channel *
admin(void)
{
	if (regions(admin_ngo.ch) == HV_UNAUTHENTICATED) {
		assert_int_equal(login(&admin_ngo), HV_OK);
	}
	return (admin_ngo.ch);
}

/* The operator makes each organisation's first admin; the admin signs in and manages its own
 * organisation's people, never the other's. */
static void
test_admins(void **state)
{
	person worker;
	size_t n = 0;

	(void) state;
	assert_int_equal(add_person(g.op, "p-ngo", ROLE(ORG_ADMIN), &admin_ngo), HV_OK);
	assert_int_equal(add_person(g.op, "p-shelter", ROLE(ORG_ADMIN), &admin_shelter), HV_OK);
	assert_int_equal(login(&admin_ngo), HV_OK);
	assert_int_equal(login(&admin_shelter), HV_OK);
	/* A session acts as its organisation: what the referrer may read, it reads. */
	assert_int_equal(regions(admin_ngo.ch), HV_OK);

	assert_int_equal(add_person(admin(), "p-ngo", ROLE(CASE_WORKER), &worker), HV_OK);
	assert_int_equal(list_people(admin(), "p-ngo", &n), HV_OK);
	assert_int_equal(n, 2);
	/* The other organisation's people: not to add, list, disable or reset. */
	assert_int_equal(add_person(admin_shelter.ch, "p-ngo", ROLE(ORG_ADMIN), &(person) { 0 }),
	    HV_PERMISSION_DENIED);
	assert_int_equal(list_people(admin_shelter.ch, "p-ngo", NULL), HV_PERMISSION_DENIED);
	assert_int_equal(disable(admin_shelter.ch, worker.id), HV_PERMISSION_DENIED);
	{
		/* A person id that names nobody is refused in the same words: no oracle for which
		 * people exist (their ids are in the audit trails other organisations read). */
		char other[RPC_ERRMSG_MAX];

		snprintf(other, sizeof(other), "%s", g.err);
		assert_int_equal(disable(admin_shelter.ch, "0123456789abcdef0123456789abcdef"),
		    HV_PERMISSION_DENIED);
		assert_string_equal(g.err, other);
		assert_int_equal(disable(g.op, "0123456789abcdef0123456789abcdef"), HV_NOT_FOUND);
	}
	{
		Haven__People__V1__ResetPersonRequest r =
		    HAVEN__PEOPLE__V1__RESET_PERSON_REQUEST__INIT;
		r.person_id         = worker.id;
		r.new_second_factor = true;
		assert_int_equal(ppl(admin_shelter.ch, M_PPL("ResetPerson"), &r.base, NULL),
		    HV_PERMISSION_DENIED);
	}
	/* The refused calls changed nothing: the worker signs in. */
	assert_int_equal(login(&worker), HV_OK);
	/* A case worker works for the organisation but does not manage its people. */
	assert_int_equal(regions(worker.ch), HV_OK);
	assert_int_equal(list_people(worker.ch, "p-ngo", NULL), HV_PERMISSION_DENIED);
	assert_int_equal(add_person(worker.ch, "p-ngo", ROLE(ORG_ADMIN), &(person) { 0 }),
	    HV_PERMISSION_DENIED);
	/* A login name is its organisation's (NAME@ORG): taken once within p-ngo, written with
	 * or without the organisation; in another organisation the same NAME is a name of its
	 * own, so trying one tells an admin nothing about other organisations' people. */
	{
		Haven__People__V1__CreatePersonRequest r =
		    HAVEN__PEOPLE__V1__CREATE_PERSON_REQUEST__INIT;
		Haven__People__V1__CreatePersonResponse *resp = NULL;
		char                                     name[64];

		snprintf(name, sizeof(name), "%.*s", (int) strcspn(worker.login, "@"),
		    worker.login);
		r.org_id       = "p-ngo";
		r.login        = worker.login;
		r.display_name = "Someone Else";
		r.role         = ROLE(VIEWER);
		r.password     = "another long password";
		assert_int_equal(ppl(admin(), M_PPL("CreatePerson"), &r.base, NULL),
		    HV_ALREADY_EXISTS);
		r.login = name;
		assert_int_equal(ppl(admin(), M_PPL("CreatePerson"), &r.base, NULL),
		    HV_ALREADY_EXISTS);
		assert_null(strstr(g.err, name));
		/* p-ngo's name given to another organisation: refused by the rule, not the store */
		r.org_id = "p-shelter";
		r.login  = worker.login;
		assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &r.base, NULL),
		    HV_INVALID_ARGUMENT);
		assert_non_null(strstr(g.err, "NAME@ORG"));
		r.login = name;
		assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &r.base, (void *) &resp), HV_OK);
		assert_non_null(strstr(resp->person->login, "@p-shelter"));
		assert_int_equal(strncmp(resp->person->login, "person.", 7), 0);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	person_free(&worker);
}

/* A viewer calls what reads, and is refused before the handler for anything that writes; a
 * case worker of the same organisation reaches the handler of the same write. */
static void
test_viewer_reads_only(void **state)
{
	Haven__Consent__V1__CreateSubjectRequest r =
	    HAVEN__CONSENT__V1__CREATE_SUBJECT_REQUEST__INIT;
	person    viewer, worker;
	hv_status st;

	(void) state;
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(VIEWER), &viewer), HV_OK);
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(CASE_WORKER), &worker), HV_OK);
	assert_int_equal(login(&viewer), HV_OK);
	assert_int_equal(login(&worker), HV_OK);
	assert_int_equal(regions(viewer.ch), HV_OK);
	st = call(viewer.ch, "haven.consent.v1.Consent/CreateSubject", &r.base,
	    &haven__consent__v1__create_subject_response__descriptor, NULL);
	assert_int_equal(st, HV_PERMISSION_DENIED);
	assert_non_null(strstr(g.err, "a viewer of role referrer may not call"));
	st = call(worker.ch, "haven.consent.v1.Consent/CreateSubject", &r.base,
	    &haven__consent__v1__create_subject_response__descriptor, NULL);
	assert_int_not_equal(st, HV_PERMISSION_DENIED);
	assert_int_not_equal(st, HV_UNAUTHENTICATED);
	person_free(&viewer);
	person_free(&worker);
}

/* The audit log names the person behind an access, and its organisation; the holder lists
 * who it was. */
static void
test_audit_names_person(void **state)
{
	Haven__Consent__V1__CreateSubjectRequest cr =
	    HAVEN__CONSENT__V1__CREATE_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__CreateSubjectResponse *cs = NULL;
	Haven__Audit__V1__ListRequest              lr = HAVEN__AUDIT__V1__LIST_REQUEST__INIT;
	Haven__Audit__V1__ListResponse            *ls = NULL;
	person                                     worker;
	bool                                       seen = false;

	(void) state;
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(CASE_WORKER), &worker), HV_OK);
	assert_int_equal(login(&worker), HV_OK);
	assert_int_equal(call(worker.ch, "haven.consent.v1.Consent/CreateSubject", &cr.base,
	                     &haven__consent__v1__create_subject_response__descriptor,
	                     (void *) &cs),
	    HV_OK);
	lr.subject = cs->id;
	assert_int_equal(call(g.op, "haven.audit.v1.Audit/List", &lr.base,
	                     &haven__audit__v1__list_response__descriptor, (void *) &ls),
	    HV_OK);
	for (size_t i = 0; i < ls->n_entries; i++) {
		if (strcmp(ls->entries[i]->caller_person, worker.id) == 0) {
			assert_string_equal(ls->entries[i]->caller_org, "p-ngo");
			assert_string_equal(ls->entries[i]->caller_role, "referrer");
			seen = true;
		}
	}
	assert_true(seen);
	protobuf_c_message_free_unpacked(&ls->base, NULL);
	/* Adding the worker is audited too: by whom (the admin, a person), which person. */
	lr.subject = "";
	lr.limit   = 1000;
	seen       = false;
	assert_int_equal(call(g.op, "haven.audit.v1.Audit/List", &lr.base,
	                     &haven__audit__v1__list_response__descriptor, (void *) &ls),
	    HV_OK);
	for (size_t i = 0; i < ls->n_entries; i++) {
		if (strcmp(ls->entries[i]->method, M_PPL("CreatePerson")) == 0 &&
		    strcmp(ls->entries[i]->purpose, worker.id) == 0) {
			assert_string_equal(ls->entries[i]->caller_person, admin_ngo.id);
			assert_string_equal(ls->entries[i]->caller_org, "p-ngo");
			seen = true;
		}
	}
	assert_true(seen);
	protobuf_c_message_free_unpacked(&ls->base, NULL);
	protobuf_c_message_free_unpacked(&cs->base, NULL);
	person_free(&worker);
}

/* Every wrong part gets the same status and the same words; malformed requests are
 * INVALID_ARGUMENT whatever the name. */
static void
test_uniform_failure(void **state)
{
	person p;
	char   code[8], wrong[8];
	char   msgs[4][RPC_ERRMSG_MAX];

	(void) state;
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(CASE_WORKER), &p), HV_OK);
	code_for(&p, code);
	snprintf(wrong, sizeof(wrong), "%06u",
	    (unsigned) ((strtoul(code, NULL, 10) + 1) % 1000000));
	assert_int_equal(login_with(&p, p.login, "a wrong password", code), HV_UNAUTHENTICATED);
	snprintf(msgs[0], sizeof(msgs[0]), "%s", g.err);
	assert_int_equal(login_with(&p, p.login, p.password, wrong), HV_UNAUTHENTICATED);
	snprintf(msgs[1], sizeof(msgs[1]), "%s", g.err);
	assert_int_equal(login_with(&p, "nobody.here", p.password, code), HV_UNAUTHENTICATED);
	snprintf(msgs[2], sizeof(msgs[2]), "%s", g.err);
	for (int i = 0; i < 3; i++) {
		assert_non_null(strstr(msgs[i], "sign-in failed"));
		assert_string_equal(msgs[i], msgs[0]);
		assert_null(strstr(msgs[i], "person."));
	}
	/* The code of a step already used does not sign in again (replay). */
	assert_int_equal(login(&p), HV_OK);
	p.next_step--;
	assert_int_equal(login(&p), HV_UNAUTHENTICATED);
	/* Malformed: the same answer for a known and an unknown name. */
	assert_int_equal(login_with(&p, p.login, p.password, "12345"), HV_INVALID_ARGUMENT);
	assert_int_equal(login_with(&p, "nobody.here", p.password, "12345"), HV_INVALID_ARGUMENT);
	assert_int_equal(login_with(&p, "x", p.password, "123456"), HV_INVALID_ARGUMENT);
	assert_int_equal(login_with(&p, "bad name!", p.password, "123456"), HV_INVALID_ARGUMENT);
	assert_int_equal(login_with(&p, p.login, "", "123456"), HV_INVALID_ARGUMENT);
	person_free(&p);
}

/* After PEOPLE_LOCK_AFTER (5) failures the right password and code are refused too, and an
 * unknown name is locked out the same way; a reset by the admin lifts it. */
static void
test_lockout(void **state)
{
	Haven__People__V1__ResetPersonRequest r = HAVEN__PEOPLE__V1__RESET_PERSON_REQUEST__INIT;
	person                                p, ghost = { 0 };
	char                                  code[8];

	(void) state;
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(CASE_WORKER), &p), HV_OK);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(login_with(&p, p.login, "a wrong password", "000000"),
		    HV_UNAUTHENTICATED);
	}
	code_for(&p, code);
	assert_int_equal(login_with(&p, p.login, p.password, code), HV_UNAUTHENTICATED);
	assert_non_null(strstr(g.err, "sign-in failed"));
	for (int i = 0; i < 6; i++) {
		assert_int_equal(login_with(&ghost, "ghost.name", "a wrong password", "000000"),
		    HV_UNAUTHENTICATED);
		assert_non_null(strstr(g.err, "sign-in failed"));
	}
	/* The admin sees the lock and lifts it with a reset (here: a new second factor). */
	r.person_id         = p.id;
	r.new_second_factor = true;
	{
		Haven__People__V1__ResetPersonResponse *resp = NULL;
		assert_int_equal(ppl(admin(), M_PPL("ResetPerson"), &r.base, (void *) &resp),
		    HV_OK);
		assert_false(resp->person->locked);
		take_secret(&p, resp->otpauth_uri);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	assert_int_equal(login(&p), HV_OK);
	person_free(&p);
}

static void
lower(char *p)
{
	for (; *p != '\0'; p++) {
		*p = (char) (*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	}
}

/* p's session, signed in again when it went idle meanwhile (the node's idle limit is 6 s and
 * sign-ins are slow under the sanitizers): so that a session that ends below ended by the
 * change under test. */
static void
awake(person *p)
{
	if (p->ch == NULL || regions(p->ch) == HV_UNAUTHENTICATED) {
		assert_int_equal(login(p), HV_OK);
	}
}

/* An org admin makes a case worker a viewer: the worker's session ends at once, and signed in
 * again it reads only. The same role again changes nothing. The change is audited by whom and
 * of whom, and logged with ids, never a name. Refused: another organisation's admin (in the
 * words of an unknown id), a case worker, a role that is none of the three, a bad id. */
static void
test_set_role(void **state)
{
	Haven__Consent__V1__CreateSubjectRequest cr =
	    HAVEN__CONSENT__V1__CREATE_SUBJECT_REQUEST__INIT;
	Haven__People__V1__SetPersonRoleResponse *resp = NULL;
	person                                    a, w;
	char                                      other[RPC_ERRMSG_MAX], logpath[600];
	char                                     *log;

	(void) state;
	register_org("p-roles", HAVEN__CAPACITY__V1__ROLE__REFERRER);
	assert_int_equal(add_person(g.op, "p-roles", ROLE(ORG_ADMIN), &a), HV_OK);
	awake(&a);
	assert_int_equal(add_person(a.ch, "p-roles", ROLE(CASE_WORKER), &w), HV_OK);
	awake(&w);
	awake(&a);
	assert_int_equal(set_role(a.ch, w.id, ROLE(VIEWER), &resp), HV_OK);
	assert_int_equal(resp->person->role, ROLE(VIEWER));
	assert_int_equal(resp->person->version, 2);
	assert_true(resp->person->enabled);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	assert_int_equal(regions(w.ch), HV_UNAUTHENTICATED);
	/* Signed in again, the viewer's rule applies: a write is refused before the handler. */
	assert_int_equal(login(&w), HV_OK);
	assert_int_equal(call(w.ch, "haven.consent.v1.Consent/CreateSubject", &cr.base,
	                     &haven__consent__v1__create_subject_response__descriptor, NULL),
	    HV_PERMISSION_DENIED);
	assert_non_null(strstr(g.err, "a viewer of role referrer may not call"));
	/* The same role again: a success that writes nothing; the session lives on. */
	awake(&a);
	assert_int_equal(set_role(a.ch, w.id, ROLE(VIEWER), &resp), HV_OK);
	assert_int_equal(resp->person->version, 2);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	assert_int_equal(regions(w.ch), HV_OK);
	/* Not a viewer's, nor another organisation's admin's; an unknown id in the same words. */
	assert_int_equal(set_role(w.ch, a.id, ROLE(VIEWER), NULL), HV_PERMISSION_DENIED);
	awake(&admin_shelter);
	assert_int_equal(set_role(admin_shelter.ch, w.id, ROLE(CASE_WORKER), NULL),
	    HV_PERMISSION_DENIED);
	snprintf(other, sizeof(other), "%s", g.err);
	assert_int_equal(set_role(admin_shelter.ch, "0123456789abcdef0123456789abcdef",
	                     ROLE(CASE_WORKER), NULL),
	    HV_PERMISSION_DENIED);
	assert_string_equal(g.err, other);
	assert_int_equal(set_role(g.op, "0123456789abcdef0123456789abcdef", ROLE(VIEWER), NULL),
	    HV_NOT_FOUND);
	/* Bad input, the same answer for every id. */
	assert_int_equal(set_role(g.op, w.id, 9, NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(g.err, "role must be org admin, case worker or viewer"));
	assert_int_equal(set_role(g.op, w.id, ROLE(UNSPECIFIED), NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(set_role(g.op, "not-an-id", ROLE(VIEWER), NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(g.err, "person_id must be 32 lower-case hex characters"));
	/* The operator, for any organisation: the worker back to case worker. */
	assert_int_equal(set_role(g.op, w.id, ROLE(CASE_WORKER), NULL), HV_OK);
	assert_int_equal(regions(w.ch), HV_UNAUTHENTICATED);
	{
		Haven__Audit__V1__ListRequest   lr   = HAVEN__AUDIT__V1__LIST_REQUEST__INIT;
		Haven__Audit__V1__ListResponse *ls   = NULL;
		int                             seen = 0;

		lr.limit = 1000;
		assert_int_equal(call(g.op, "haven.audit.v1.Audit/List", &lr.base,
		                     &haven__audit__v1__list_response__descriptor, (void *) &ls),
		    HV_OK);
		for (size_t i = 0; i < ls->n_entries; i++) {
			if (strcmp(ls->entries[i]->method, M_PPL("SetPersonRole")) == 0 &&
			    strcmp(ls->entries[i]->purpose, w.id) == 0) {
				/* the admin's change and the operator's; not the no-op */
				assert_true(strcmp(ls->entries[i]->caller_person, a.id) == 0 ||
				    strcmp(ls->entries[i]->caller_role, "operator") == 0);
				seen++;
			}
		}
		assert_int_equal(seen, 2);
		protobuf_c_message_free_unpacked(&ls->base, NULL);
	}
	snprintf(logpath, sizeof(logpath), "%s/node.log", g.dir);
	assert_non_null(log = tu_slurp(logpath, NULL));
	assert_non_null(strstr(log, w.id));
	lower(log);
	lower(w.login); /* as stored: folded */
	lower(a.login);
	assert_null(strstr(log, w.login));
	assert_null(strstr(log, a.login));
	free(log);
	person_free(&a);
	person_free(&w);
}

/* An organisation keeps an enabled admin: its last one is neither demoted (by itself, by the
 * operator) nor disabled (the same hole in DisablePerson); with a second enabled admin the
 * first may step down, and a disabled admin does not count. */
static void
test_last_admin(void **state)
{
	person a, b;

	(void) state;
	register_org("p-last", HAVEN__CAPACITY__V1__ROLE__PROVIDER);
	assert_int_equal(add_person(g.op, "p-last", ROLE(ORG_ADMIN), &a), HV_OK);
	assert_int_equal(add_person(g.op, "p-last", ROLE(CASE_WORKER), &b), HV_OK);
	awake(&a);
	assert_int_equal(set_role(a.ch, a.id, ROLE(CASE_WORKER), NULL), HV_FAILED_PRECONDITION);
	assert_string_equal(g.err, "organisation p-last must keep an enabled admin");
	assert_int_equal(disable(a.ch, a.id), HV_FAILED_PRECONDITION);
	assert_string_equal(g.err, "organisation p-last must keep an enabled admin");
	assert_int_equal(set_role(g.op, a.id, ROLE(VIEWER), NULL), HV_FAILED_PRECONDITION);
	assert_int_equal(disable(g.op, a.id), HV_FAILED_PRECONDITION);
	/* Refused: nothing changed, the session lives on. */
	assert_int_equal(regions(a.ch), HV_OK);
	/* A second admin: now the first may step down (and its own session ends). */
	assert_int_equal(set_role(a.ch, b.id, ROLE(ORG_ADMIN), NULL), HV_OK);
	assert_int_equal(set_role(a.ch, a.id, ROLE(VIEWER), NULL), HV_OK);
	assert_int_equal(regions(a.ch), HV_UNAUTHENTICATED);
	awake(&b);
	assert_int_equal(set_role(b.ch, b.id, ROLE(CASE_WORKER), NULL), HV_FAILED_PRECONDITION);
	/* A disabled admin is no admin to keep. */
	assert_int_equal(set_role(b.ch, a.id, ROLE(ORG_ADMIN), NULL), HV_OK);
	assert_int_equal(disable(b.ch, a.id), HV_OK);
	assert_int_equal(disable(b.ch, b.id), HV_FAILED_PRECONDITION);
	assert_int_equal(set_role(b.ch, b.id, ROLE(VIEWER), NULL), HV_FAILED_PRECONDITION);
	/* A disabled admin may still be given another role: it takes no enabled admin away. */
	assert_int_equal(set_role(b.ch, a.id, ROLE(VIEWER), NULL), HV_OK);
	person_free(&a);
	person_free(&b);
}

/* Two admins demote each other at the same moment: the count is made in each change's write
 * transaction, so one wins and the other is refused (or, when the winner's commit came first,
 * its session is gone); the organisation never has no enabled admin. */
typedef struct demote_arg {
	person   *by, *whom;
	hv_status st;
	pthread_t th;
} demote_arg;

static void *
demote_thread(void *arg)
{
	demote_arg *d = arg;

	d->st = set_role(d->by->ch, d->whom->id, ROLE(VIEWER), NULL);
	return (NULL);
}

static void
test_admins_demote_each_other(void **state)
{
	Haven__People__V1__ListPeopleRequest   r    = HAVEN__PEOPLE__V1__LIST_PEOPLE_REQUEST__INIT;
	Haven__People__V1__ListPeopleResponse *resp = NULL;
	person                                 x, y;
	demote_arg d[2]   = { { .by = &x, .whom = &y }, { .by = &y, .whom = &x } };
	int        admins = 0;

	(void) state;
	register_org("p-race", HAVEN__CAPACITY__V1__ROLE__REFERRER);
	assert_int_equal(add_person(g.op, "p-race", ROLE(ORG_ADMIN), &x), HV_OK);
	assert_int_equal(add_person(g.op, "p-race", ROLE(ORG_ADMIN), &y), HV_OK);
	awake(&x);
	awake(&y);
	awake(&x);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_create(&d[i].th, NULL, demote_thread, &d[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(d[i].th, NULL), 0);
	}
	if (!((d[0].st == HV_OK) ^ (d[1].st == HV_OK))) {
		fail_msg("demoting each other: %s and %s, not one success", hv_status_name(d[0].st),
		    hv_status_name(d[1].st));
	}
	for (int i = 0; i < 2; i++) {
		assert_true(d[i].st == HV_OK || d[i].st == HV_FAILED_PRECONDITION ||
		    d[i].st == HV_UNAUTHENTICATED);
	}
	r.org_id = "p-race";
	assert_int_equal(ppl(g.op, M_PPL("ListPeople"), &r.base, (void *) &resp), HV_OK);
	for (size_t i = 0; i < resp->n_people; i++) {
		admins += resp->people[i]->enabled && resp->people[i]->role == ROLE(ORG_ADMIN);
	}
	assert_int_equal(admins, 1);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	person_free(&x);
	person_free(&y);
}

/* Sessions end at Logout, when their person is disabled or reset, and when idle too long. */
static void
test_sessions_end(void **state)
{
	Haven__People__V1__LogoutRequest   lr   = HAVEN__PEOPLE__V1__LOGOUT_REQUEST__INIT;
	Haven__People__V1__LogoutResponse *lout = NULL;
	person                             a, b, c;

	(void) state;
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(CASE_WORKER), &a), HV_OK);
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(CASE_WORKER), &b), HV_OK);
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(VIEWER), &c), HV_OK);
	assert_int_equal(login(&a), HV_OK);
	assert_int_equal(login(&b), HV_OK);

	/* Logout: revoked, and the token is worth nothing after. */
	assert_int_equal(ppl(a.ch, M_PPL("Logout"), &lr.base, (void *) &lout), HV_OK);
	assert_true(lout->revoked);
	protobuf_c_message_free_unpacked(&lout->base, NULL);
	assert_int_equal(regions(a.ch), HV_UNAUTHENTICATED);
	/* The operator's Logout has no session to end. */
	assert_int_equal(ppl(g.op, M_PPL("Logout"), &lr.base, (void *) &lout), HV_OK);
	assert_false(lout->revoked);
	protobuf_c_message_free_unpacked(&lout->base, NULL);

	/* Disabled: at once; and no new sign-in. */
	assert_int_equal(regions(b.ch), HV_OK);
	assert_int_equal(disable(admin(), b.id), HV_OK);
	assert_int_equal(regions(b.ch), HV_UNAUTHENTICATED);
	assert_int_equal(login(&b), HV_UNAUTHENTICATED);

	/* Idle: a session used within the limit lives on; one left alone past it ends. */
	assert_int_equal(login(&c), HV_OK);
	for (int i = 0; i < 3; i++) {
		sleep(IDLE_S / 3);
		assert_int_equal(regions(c.ch), HV_OK);
	}
	sleep(IDLE_S + 2);
	assert_int_equal(regions(c.ch), HV_UNAUTHENTICATED);
	person_free(&a);
	person_free(&b);
	person_free(&c);
}

/* ---- idleness and background activity ------------------------------------------------- */

/* ListRegions marked as a page's own refresh (RPC_MD_ACTIVITY): no person's act. */
static hv_status
regions_background(rpc_channel *ch)
{
	Haven__Capacity__V1__ListRegionsRequest r = HAVEN__CAPACITY__V1__LIST_REGIONS_REQUEST__INIT;
	rpc_metadata                            md = { RPC_MD_ACTIVITY, RPC_ACTIVITY_BACKGROUND };
	rpc_call_options  o = { .timeout_ms = 20000, .metadata = &md, .n_metadata = 1 };
	ProtobufCMessage *m = NULL;
	hv_status         st;

	st = rpc_channel_call(ch, "haven.capacity.v1.Capacity/ListRegions", &r.base,
	    &haven__capacity__v1__list_regions_response__descriptor, &m, &o, g.err, sizeof(g.err));
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return (st);
}

/* One GET /events read until its "event: end" (or 3 idle limits), in a thread. */
typedef struct sse_read {
	const char *token;
	char        buf[16384];
	size_t      len;
	long        http;
	int64_t     ms; /* from the request to the end of the stream */
} sse_read;

static size_t
sse_write(char *data, size_t size, size_t n, void *arg)
{
	sse_read *r   = arg;
	size_t    add = size * n;

	if (r->len + add >= sizeof(r->buf)) {
		return (0);
	}
	memcpy(r->buf + r->len, data, add);
	r->len += add;
	r->buf[r->len] = '\0';
	return (add);
}

static void *
sse_thread(void *arg)
{
	sse_read          *r = arg;
	CURL              *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char               url[128], authz[200];
	int64_t            t0 = hv_clock_mono_ms();

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/events", g.http_port);
	snprintf(authz, sizeof(authz), "Authorization: Bearer %s", r->token);
	h = curl_slist_append(h, authz);
	h = curl_slist_append(h, "Accept: text/event-stream");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3L * IDLE_S * 1000);
	(void) curl_easy_perform(c); /* ends when the node closes the stream, or at the timeout */
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->http);
	r->ms = hv_clock_mono_ms() - t0;
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return (NULL);
}

/* Idle means no person's act: calls marked as background and an open event stream check the
 * session without holding off its idle limit, so both end at it; the stream says so with
 * "event: end" and closes, and the session is gone for every call after. */
static void
test_background_idle(void **state)
{
	static sse_read r;
	person          d, e;
	pthread_t       th;
	int64_t         t0;
	hv_status       st;

	(void) state;
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(VIEWER), &d), HV_OK);
	assert_int_equal(add_person(admin(), "p-ngo", ROLE(VIEWER), &e), HV_OK);
	assert_int_equal(login(&d), HV_OK);
	t0 = hv_clock_mono_ms(); /* d's last act: its sign-in */
	assert_int_equal(login(&e), HV_OK);
	memset(&r, 0, sizeof(r));
	r.token = e.token;
	assert_int_equal(pthread_create(&th, NULL, sse_thread, &r), 0);
	/* d's page refreshes itself every second; nobody acts. Bounds leave room for a loaded
	 * machine; without the background mark it would never end here (3 idle limits). */
	while ((st = regions_background(d.ch)) == HV_OK &&
	    hv_clock_mono_ms() - t0 < 3 * IDLE_S * 1000) {
		sleep(1);
	}
	assert_int_equal(st, HV_UNAUTHENTICATED);
	if (hv_clock_mono_ms() - t0 < (IDLE_S - 1) * 1000 ||
	    hv_clock_mono_ms() - t0 > 2 * IDLE_S * 1000) {
		fail_msg("background calls ended after %lld ms, not at the idle limit of %d s",
		    (long long) (hv_clock_mono_ms() - t0), IDLE_S);
	}
	assert_int_equal(regions(d.ch), HV_UNAUTHENTICATED);
	/* e's event stream: open until the idle limit, then ended by the node. */
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(r.http, 200);
	assert_non_null(strstr(r.buf, "retry: "));
	assert_non_null(strstr(r.buf, "event: end\ndata: {\"code\":\"UNAUTHENTICATED\"}"));
	if (r.ms < (IDLE_S - 2) * 1000 || r.ms > 2 * IDLE_S * 1000) {
		fail_msg("the stream ended after %lld ms, not at the idle limit of %d s",
		    (long long) r.ms, IDLE_S);
	}
	assert_int_equal(regions(e.ch), HV_UNAUTHENTICATED);
	person_free(&d);
	person_free(&e);
}

/* Bad input to every method: a clear status, nothing stored. */
static void
test_bad_input(void **state)
{
	Haven__People__V1__CreatePersonRequest c = HAVEN__PEOPLE__V1__CREATE_PERSON_REQUEST__INIT;
	Haven__People__V1__ResetPersonRequest  r = HAVEN__PEOPLE__V1__RESET_PERSON_REQUEST__INIT;
	size_t                                 before = 0, after = 0;

	(void) state;
	assert_int_equal(list_people(g.op, "p-ngo", &before), HV_OK);
	c.org_id       = "p-ngo";
	c.login        = "valid.name";
	c.display_name = "Name";
	c.role         = ROLE(VIEWER);
	c.password     = "a long enough password";
	c.org_id       = "Not An Id!";
	assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &c.base, NULL), HV_INVALID_ARGUMENT);
	c.org_id = "p-nowhere";
	assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &c.base, NULL), HV_NOT_FOUND);
	c.org_id = "p-ngo";
	{
		/* The name's rule, the same words for every name (the organisation's id only). */
		static const char *const bad[] = { "", "@p-ngo", "bad name!", "two@at@p-ngo",
			"valid.name@p-shelter", "valid.name@p-ngo.x", "valid.name@",
			"a-name-that-is-sixty-five-characters-long-which-is-one-too-many-x" };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			c.login = (char *) bad[i];
			assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &c.base, NULL),
			    HV_INVALID_ARGUMENT);
			assert_non_null(strstr(g.err, "login must be NAME or NAME@ORG"));
		}
	}
	c.login        = "valid.name";
	c.display_name = "";
	assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &c.base, NULL), HV_INVALID_ARGUMENT);
	c.display_name = "Bad\nName";
	assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &c.base, NULL), HV_INVALID_ARGUMENT);
	c.display_name = "Name";
	c.role         = 9;
	assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &c.base, NULL), HV_INVALID_ARGUMENT);
	c.role = ROLE(UNSPECIFIED);
	assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &c.base, NULL), HV_INVALID_ARGUMENT);
	c.role     = ROLE(VIEWER);
	c.password = "short";
	assert_int_equal(ppl(g.op, M_PPL("CreatePerson"), &c.base, NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(g.err, "password"));
	assert_int_equal(list_people(g.op, "p-ngo", &after), HV_OK);
	assert_int_equal(after, before);

	assert_int_equal(disable(g.op, "not-an-id"), HV_INVALID_ARGUMENT);
	assert_int_equal(disable(g.op, "0123456789abcdef0123456789abcdef"), HV_NOT_FOUND);
	r.person_id = "0123456789ABCDEF0123456789ABCDEF";
	r.enable    = true;
	assert_int_equal(ppl(g.op, M_PPL("ResetPerson"), &r.base, NULL), HV_INVALID_ARGUMENT);
	r.person_id = admin_ngo.id;
	r.enable    = false;
	assert_int_equal(ppl(g.op, M_PPL("ResetPerson"), &r.base, NULL), HV_INVALID_ARGUMENT);
	r.password = "short";
	assert_int_equal(ppl(g.op, M_PPL("ResetPerson"), &r.base, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(list_people(g.op, "", NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(list_people(g.op, "p-nowhere", &after), HV_OK);
	assert_int_equal(after, 0);
	/* A forged session token: UNAUTHENTICATED before any handler. */
	{
		rpc_channel *ch = channel();
		assert_int_equal(rpc_channel_set_token(ch,
		                     "hs1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
		    HV_OK);
		assert_int_equal(regions(ch), HV_UNAUTHENTICATED);
		assert_int_equal(rpc_channel_set_token(ch, "hs1.short"), HV_OK);
		assert_int_equal(regions(ch), HV_UNAUTHENTICATED);
		rpc_channel_close(ch);
	}
	/* The node still serves. */
	assert_int_equal(regions(g.op), HV_OK);
}

/* Disabling the organisation ends its people's sessions at once. Last: it disables p-ngo. */
static void
test_org_disabled(void **state)
{
	Haven__Capacity__V1__DisableOrganisationRequest r =
	    HAVEN__CAPACITY__V1__DISABLE_ORGANISATION_REQUEST__INIT;

	(void) state;
	/* A fresh session: the earlier one went idle in test_sessions_end. */
	assert_int_equal(login(&admin_ngo), HV_OK);
	assert_int_equal(regions(admin_ngo.ch), HV_OK);
	r.id       = "p-ngo";
	r.disabled = true;
	assert_int_equal(call(g.op, "haven.capacity.v1.Capacity/DisableOrganisation", &r.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_OK);
	assert_int_equal(regions(admin_ngo.ch), HV_UNAUTHENTICATED);
	/* The other organisation's people sign in and work on. */
	assert_int_equal(login(&admin_shelter), HV_OK);
	assert_int_equal(regions(admin_shelter.ch), HV_OK);
	/* And nobody of the disabled one signs in. */
	assert_int_equal(login(&admin_ngo), HV_UNAUTHENTICATED);
}

static int
setup(void **state)
{
	(void) state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	node_start();
	register_org("p-ngo", HAVEN__CAPACITY__V1__ROLE__REFERRER);
	register_org("p-shelter", HAVEN__CAPACITY__V1__ROLE__PROVIDER);
	return (0);
}

static int
teardown(void **state)
{
	int status;

	(void) state;
	person_free(&admin_ngo);
	person_free(&admin_shelter);
	rpc_channel_close(g.op);
	if (g.node > 0) {
		kill(g.node, SIGTERM);
		waitpid(g.node, &status, 0);
	}
	curl_global_cleanup();
	return (0);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_admins),
		cmocka_unit_test(test_viewer_reads_only),
		cmocka_unit_test(test_audit_names_person),
		cmocka_unit_test(test_uniform_failure),
		cmocka_unit_test(test_lockout),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_sessions_end),
		cmocka_unit_test(test_set_role),
		cmocka_unit_test(test_last_admin),
		cmocka_unit_test(test_admins_demote_each_other),
		cmocka_unit_test(test_background_idle),
		cmocka_unit_test(test_org_disabled),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: people_it HAVEN_NODE\n");
		return (2);
	}
	g.node_bin = argv[1];
	return (cmocka_run_group_tests(tests, setup, teardown));
}
