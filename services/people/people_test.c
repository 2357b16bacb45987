/*
 * people_test.c - the people service in one process, with a clock the tests move: sign-in and
 * its back-off over time, a session's idle and absolute limits, sessions bound to their
 * organisation's record, the viewer's read-only rule, sealed fields bound to their person,
 * and the key file's checks. Served over inproc:// (the caller is the operator) with a small
 * in-memory directory. tests/people_it.c drives a real node.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "haven/clock.h"
#include "people_internal.h"

#define IDLE_S 60
#define MAX_S  600
#define T0     1800000000000LL /* a fixed Unix time in ms, on a TOTP step boundary */

static int64_t now_ms = T0;
static int64_t
fake_now(void)
{
	return (now_ms);
}

/* The directory: one organisation whose record the tests change. */
static struct {
	bool     enabled;
	uint64_t version;
	rpc_role role;
} org = { true, 1, RPC_ROLE_REFERRER };

static hv_status
lookup(void *arg, const char *org_id, auth_org *out)
{
	(void) arg;
	if (strcmp(org_id, "ngo") != 0) {
		return (HV_NOT_FOUND);
	}
	memset(out, 0, sizeof(*out));
	out->role    = org.role;
	out->enabled = org.enabled;
	out->version = org.version;
	return (HV_OK);
}

typedef struct fixture {
	char            dir[256];
	store          *st;
	auth           *au;
	people_service *ps;
	rpc_server     *srv;
	rpc_channel    *ch;
	char            err[RPC_ERRMSG_MAX];
} fixture;

static fixture f;

static int
setup(void **state)
{
	auth_options       ao  = { .lookup = lookup };
	people_options     po  = { 0 };
	rpc_server_options so  = { .workers = 2 };
	store_options      sto = { .no_sync = true };
	char               path[300], url[64];

	(void) state;
	snprintf(f.dir, sizeof(f.dir), "/tmp/people-unit-XXXXXX");
	assert_non_null(mkdtemp(f.dir));
	snprintf(path, sizeof(path), "%s/store", f.dir);
	assert_int_equal(store_open(&f.st, path, &sto), HV_OK);
	memset(ao.secret, 7, sizeof(ao.secret));
	assert_int_equal(auth_open(&f.au, &ao), HV_OK);
	snprintf(path, sizeof(path), "%s/people-key", f.dir);
	po.store          = f.st;
	po.auth           = f.au;
	po.key_file       = path;
	po.session_idle_s = IDLE_S;
	po.session_max_s  = MAX_S;
	po.pwhash_ln      = 10; /* cheap hashes for the test */
	po.now_ms         = fake_now;
	assert_int_equal(people_open(&f.ps, &po), HV_OK);
	so.auth = f.au;
	assert_int_equal(rpc_server_open(&f.srv, &so), HV_OK);
	assert_int_equal(people_register(f.ps, f.srv), HV_OK);
	snprintf(url, sizeof(url), "inproc://people-unit-%d", getpid());
	assert_int_equal(rpc_server_listen(f.srv, url), HV_OK);
	assert_int_equal(rpc_server_start(f.srv), HV_OK);
	assert_int_equal(rpc_channel_open(&f.ch, url, NULL), HV_OK);
	return (0);
}

static int
teardown(void **state)
{
	char cmd[300];

	(void) state;
	rpc_channel_close(f.ch);
	rpc_server_close(f.srv);
	people_close(f.ps);
	auth_close(f.au);
	store_close(f.st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f.dir);
	return (system(cmd) == 0 ? 0 : -1);
}

static hv_status
call(const char *m, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *d,
    ProtobufCMessage **out)
{
	char method[96];

	snprintf(method, sizeof(method), "haven.people.v1.People/%s", m);
	return (rpc_channel_call(f.ch, method, req, d, out, NULL, f.err, sizeof(f.err)));
}

typedef struct who {
	char    id[RPC_PERSON_ID_MAX];
	char    login[PEOPLE_LOGIN_MAX + 1];
	uint8_t secret[CRYPTO_OTP_SECRET_MAX];
	size_t  secretlen;
} who;

static void
add(who *w, const char *login, Haven__People__V1__PersonRole role)
{
	Haven__People__V1__CreatePersonRequest   r = HAVEN__PEOPLE__V1__CREATE_PERSON_REQUEST__INIT;
	Haven__People__V1__CreatePersonResponse *resp = NULL;
	const char                              *s, *e;

	r.org_id       = "ngo";
	r.login        = (char *) login;
	r.display_name = "Test Person";
	r.role         = role;
	r.password     = "the right password";
	assert_int_equal(call("CreatePerson", &r.base,
	                     &haven__people__v1__create_person_response__descriptor,
	                     (void *) &resp),
	    HV_OK);
	snprintf(w->id, sizeof(w->id), "%s", resp->person->id);
	/* the name as the person signs in: NAME@ORG */
	assert_int_equal(strncmp(resp->person->login, login, strlen(login)), 0);
	assert_string_equal(resp->person->login + strlen(login), "@ngo");
	snprintf(w->login, sizeof(w->login), "%s", resp->person->login);
	s = strstr(resp->otpauth_uri, "secret=") + 7;
	e = strchr(s, '&');
	assert_int_equal(crypto_b32_decode(w->secret, sizeof(w->secret), &w->secretlen, s,
	                     (size_t) (e - s)),
	    HV_OK);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* Signs w in at the fake clock (the code of its step, or of step + ahead). */
static hv_status
login(const who *w, const char *password, int ahead, char token[128])
{
	Haven__People__V1__LoginRequest   r    = HAVEN__PEOPLE__V1__LOGIN_REQUEST__INIT;
	Haven__People__V1__LoginResponse *resp = NULL;
	uint32_t                          c;
	char                              code[8];
	hv_status                         st;

	assert_int_equal(crypto_totp(&c, CRYPTO_OTP_SHA1, 6, w->secret, w->secretlen,
	                     now_ms / 1000 + ahead * CRYPTO_TOTP_PERIOD),
	    HV_OK);
	snprintf(code, sizeof(code), "%06u", c);
	r.login    = (char *) w->login;
	r.password = (char *) password;
	r.code     = code;
	st = call("Login", &r.base, &haven__people__v1__login_response__descriptor, (void *) &resp);
	if (st == HV_OK) {
		snprintf(token, 128, "%s", resp->token);
		assert_int_equal((int64_t) resp->expires_at_ms, now_ms + MAX_S * 1000LL);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return (st);
}

static hv_status
verify(const char *token, rpc_caller *c)
{
	memset(c, 0, sizeof(*c));
	return (auth_verify_token(f.au, token, now_ms, c));
}

/* ---- tests ----------------------------------------------------------------------------- */

static void
test_session_limits(void **state)
{
	who        w;
	char       tok[128];
	rpc_caller c;

	(void) state;
	add(&w, "limits", HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_CASE_WORKER);
	assert_int_equal(login(&w, "the right password", 0, tok), HV_OK);
	assert_int_equal(verify(tok, &c), HV_OK);
	assert_int_equal(c.role, RPC_ROLE_REFERRER);
	assert_string_equal(c.org_id, "ngo");
	assert_string_equal(c.person.id, w.id);
	assert_int_equal(c.person.role, RPC_PERSON_CASE_WORKER);
	/* Used within the idle limit, again and again: alive until the absolute limit. */
	for (int64_t t = 0; t + IDLE_S / 2 < MAX_S; t += IDLE_S / 2) {
		now_ms += IDLE_S / 2 * 1000;
		assert_int_equal(verify(tok, &c), HV_OK);
	}
	now_ms = T0 + MAX_S * 1000LL;
	assert_int_equal(verify(tok, &c), HV_UNAUTHENTICATED);
	/* Idle: a new session, left alone for the idle limit, ends and stays ended. */
	assert_int_equal(login(&w, "the right password", 0, tok), HV_OK);
	now_ms += IDLE_S * 1000LL - 1;
	assert_int_equal(verify(tok, &c), HV_OK);
	now_ms += IDLE_S * 1000LL;
	assert_int_equal(verify(tok, &c), HV_UNAUTHENTICATED);
	now_ms -= IDLE_S * 1000LL;
	assert_int_equal(verify(tok, &c), HV_UNAUTHENTICATED); /* deleted, not just late */
	/* Malformed and forged tokens. */
	assert_int_equal(verify("hs1.", &c), HV_UNAUTHENTICATED);
	assert_int_equal(verify("hs1.!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", &c),
	    HV_UNAUTHENTICATED);
	tok[10] = tok[10] == 'A' ? 'B' : 'A';
	assert_int_equal(verify(tok, &c), HV_UNAUTHENTICATED);
	now_ms = T0 + 3600 * 1000LL;
}

/* Passive checks (an open page's refresh, an event stream's poll) see the session as any call
 * does, but never hold off its idle limit; a person's call does; both end with it. */
static void
test_session_passive(void **state)
{
	who        w;
	char       tok[128];
	rpc_caller c;

	(void) state;
	add(&w, "passive", HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_VIEWER);
	assert_int_equal(login(&w, "the right password", 0, tok), HV_OK);
	/* Polled every second past the idle limit: passive checks pass until it, then fail. */
	for (int i = 1; i < IDLE_S; i++) {
		now_ms += 1000;
		memset(&c, 0, sizeof(c));
		assert_int_equal(auth_verify_token_passive(f.au, tok, now_ms, &c), HV_OK);
		assert_string_equal(c.person.id, w.id);
	}
	now_ms += 1000;
	assert_int_equal(auth_verify_token_passive(f.au, tok, now_ms, &c), HV_UNAUTHENTICATED);
	assert_int_equal(verify(tok, &c), HV_UNAUTHENTICATED); /* ended for every call */
	/* A person's call in between holds it off; passive checks after it pass again. */
	assert_int_equal(login(&w, "the right password", 0, tok), HV_OK);
	now_ms += IDLE_S * 1000LL - 1000;
	assert_int_equal(verify(tok, &c), HV_OK);
	now_ms += IDLE_S * 1000LL - 1000;
	assert_int_equal(auth_verify_token_passive(f.au, tok, now_ms, &c), HV_OK);
	now_ms += 2000;
	assert_int_equal(auth_verify_token_passive(f.au, tok, now_ms, &c), HV_UNAUTHENTICATED);
	/* Past the absolute limit, a passive check fails too. */
	assert_int_equal(login(&w, "the right password", 0, tok), HV_OK);
	for (int64_t t = 0; t + IDLE_S / 2 < MAX_S; t += IDLE_S / 2) {
		now_ms += IDLE_S / 2 * 1000;
		assert_int_equal(verify(tok, &c), HV_OK);
	}
	now_ms += IDLE_S / 2 * 1000;
	assert_int_equal(auth_verify_token_passive(f.au, tok, now_ms, &c), HV_UNAUTHENTICATED);
	now_ms = T0 + 3600 * 1000LL;
}

/* A session is bound to its organisation's record: a change, disabling, a role that may not
 * sign in: refused at once; back as it was: valid again only if the record is the same. */
static void
test_session_org_bound(void **state)
{
	who        w;
	char       tok[128];
	rpc_caller c;

	(void) state;
	add(&w, "orgbound", HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_VIEWER);
	assert_int_equal(login(&w, "the right password", 0, tok), HV_OK);
	assert_int_equal(verify(tok, &c), HV_OK);
	assert_int_equal(c.person.role, RPC_PERSON_VIEWER);
	org.enabled = false;
	assert_int_equal(verify(tok, &c), HV_UNAUTHENTICATED);
	org.enabled = true;
	org.version++;
	assert_int_equal(verify(tok, &c), HV_UNAUTHENTICATED);
	/* A new sign-in binds to the new record. */
	assert_int_equal(login(&w, "the right password", 1, tok), HV_OK);
	assert_int_equal(verify(tok, &c), HV_OK);
	org.role = RPC_ROLE_OPERATOR;
	assert_int_equal(verify(tok, &c), HV_UNAUTHENTICATED);
	org.role = RPC_ROLE_REFERRER;
	now_ms += 3600 * 1000LL;
}

/* Five failures lock the name out for 30 s, the next failure for 60 s; the right password
 * and code are refused meanwhile, and accepted after. An unknown name the same. */
static void
test_backoff(void **state)
{
	who        w, ghost = { .login = "ghost" };
	char       tok[128];
	rpc_caller c;

	(void) state;
	add(&w, "backoff", HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_CASE_WORKER);
	memcpy(ghost.secret, w.secret, w.secretlen);
	ghost.secretlen = w.secretlen;
	for (int i = 0; i < PEOPLE_LOCK_AFTER; i++) {
		assert_int_equal(login(&w, "a wrong password", 0, tok), HV_UNAUTHENTICATED);
		assert_int_equal(login(&ghost, "a wrong password", 0, tok), HV_UNAUTHENTICATED);
	}
	assert_int_equal(people_signin_failures(f.ps, "password"), PEOPLE_LOCK_AFTER);
	assert_int_equal(people_signin_failures(f.ps, "unknown_name"), PEOPLE_LOCK_AFTER);
	now_ms += 29000;
	assert_int_equal(login(&w, "the right password", 0, tok), HV_UNAUTHENTICATED);
	assert_int_equal(people_signin_failures(f.ps, "locked"), 1);
	/* That failure (the sixth) doubled the back-off: 60 s from now. */
	now_ms += 59000;
	assert_int_equal(login(&w, "the right password", 0, tok), HV_UNAUTHENTICATED);
	now_ms += 121000;
	assert_int_equal(login(&w, "the right password", 0, tok), HV_OK);
	assert_int_equal(verify(tok, &c), HV_OK);
	/* Success clears the name's count: one failure does not lock again. */
	assert_int_equal(login(&w, "a wrong password", 1, tok), HV_UNAUTHENTICATED);
	assert_int_equal(login(&w, "the right password", 1, tok), HV_OK);
	now_ms += 3600 * 1000LL;
}

/* With two hashes running and two waiting, a sign-in is refused at once (RESOURCE_EXHAUSTED,
 * the same for every name, not a failure of the name) instead of holding a handler thread. */
static void
test_busy(void **state)
{
	who      w;
	char     tok[128];
	uint64_t failures;

	(void) state;
	add(&w, "busy", HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_CASE_WORKER);
	failures = people_signin_failures(f.ps, "password");
	pthread_mutex_lock(&f.ps->p_mu);
	f.ps->p_hashing += 2;
	f.ps->p_hash_waiting += 2;
	pthread_mutex_unlock(&f.ps->p_mu);
	assert_int_equal(login(&w, "the right password", 0, tok), HV_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(f.err, "too many sign-ins"));
	assert_int_equal(login(&w, "a wrong password", 0, tok), HV_RESOURCE_EXHAUSTED);
	assert_int_equal(people_signin_failures(f.ps, "password"), failures);
	pthread_mutex_lock(&f.ps->p_mu);
	f.ps->p_hashing -= 2;
	f.ps->p_hash_waiting -= 2;
	pthread_mutex_unlock(&f.ps->p_mu);
	assert_int_equal(login(&w, "the right password", 0, tok), HV_OK);
	now_ms += 3600 * 1000LL;
}

static void
test_viewer_rule(void **state)
{
	rpc_caller c = { .role = RPC_ROLE_REFERRER, .org_id = "ngo" };

	(void) state;
	/* Not a person: the rule does not apply. */
	assert_true(auth_person_allows(&c, "haven.consent.v1.Consent/CreateSubject"));
	snprintf(c.person.id, sizeof(c.person.id), "0123456789abcdef0123456789abcdef");
	c.person.role = RPC_PERSON_VIEWER;
	assert_true(auth_person_allows(&c, "haven.consent.v1.Consent/GetSubject"));
	assert_true(auth_person_allows(&c, "haven.referral.v1.Referrals/ListReferrals"));
	assert_true(auth_person_allows(&c, "haven.capacity.v1.Capacity/FindServices"));
	assert_true(auth_person_allows(&c, "haven.capacity.v1.Capacity/Summary"));
	assert_true(auth_person_allows(&c, "haven.signals.v1.Signals/CountSignals"));
	assert_false(auth_person_allows(&c, "haven.x.v1.X/Counterfeit"));
	assert_true(auth_person_allows(&c, "haven.people.v1.People/Logout"));
	assert_false(auth_person_allows(&c, "haven.consent.v1.Consent/CreateSubject"));
	assert_false(auth_person_allows(&c, "haven.consent.v1.Consent/Grant"));
	assert_false(auth_person_allows(&c, "haven.referral.v1.Referrals/AcceptOffer"));
	assert_false(auth_person_allows(&c, "haven.x.v1.X/Getaway"));
	assert_false(auth_person_allows(&c, "no slash"));
	assert_false(auth_person_allows(&c, NULL));
	c.person.role = RPC_PERSON_CASE_WORKER;
	assert_true(auth_person_allows(&c, "haven.consent.v1.Consent/Grant"));
	c.person.role = RPC_PERSON_NONE;
	assert_false(auth_person_allows(&c, "haven.consent.v1.Consent/GetSubject"));
}

/* people_login_qualify refuses in as a login name of orgid, by the rule: the same words for
 * every name (as for none), naming no name. */
static void
qualify_refused(const char *in, const char *orgid)
{
	char        out[PEOPLE_LOGIN_MAX + 1];
	const char *why = people_login_qualify(in, orgid, out);

	assert_non_null(why);
	assert_non_null(strstr(why, "login must be NAME or NAME@ORG"));
	assert_string_equal(why, people_login_qualify(NULL, orgid, out));
}

/* A new login name is NAME@ORG of the person's organisation, folded; anything else is one
 * rule's refusal. */
static void
test_login_qualify(void **state)
{
	static const char *const good[][2] = { { "anna", "anna@ngo-a" },
		{ "Anna.de_Vries", "anna.de_vries@ngo-a" }, { "anna@ngo-a", "anna@ngo-a" },
		{ "ANNA@NGO-A", "anna@ngo-a" }, { "a", "a@ngo-a" } };
	static const char *const bad[] = { "", "@ngo-a", "anna@", "anna@ngo-b", "anna@ngo-a@ngo-a",
		"anna@ngo", "anna@ngo-aa", "an na", "anna@ngo-a ", "anna\n", "ann\xc3\xa1",
		"a1234567890123456789012345678901234567890123456789012345678901234" };
	char                     out[PEOPLE_LOGIN_MAX + 1];

	(void) state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_null(people_login_qualify(good[i][0], "ngo-a", out));
		assert_string_equal(out, good[i][1]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		qualify_refused(bad[i], "ngo-a");
	}
	assert_non_null(people_login_qualify(NULL, "ngo-a", out));
	/* the longest: a 64-character NAME at a 63-character organisation; a NAME of 65, or a
	 * whole of 129 (at an organisation id of 64, longer than ids are), is refused */
	{
		char name[PEOPLE_LOGIN_NAME_MAX + 2], orgid[300], in[sizeof(name) + sizeof(orgid)];

		memset(name, 'n', PEOPLE_LOGIN_NAME_MAX + 1);
		name[PEOPLE_LOGIN_NAME_MAX] = '\0';
		memset(orgid, 'o', sizeof(orgid));
		orgid[63] = '\0';
		assert_null(people_login_qualify(name, orgid, out));
		assert_int_equal(strlen(out), PEOPLE_LOGIN_MAX);
		assert_true(people_login_fold(out, out));
		snprintf(in, sizeof(in), "%s@NGO-A", name);
		assert_null(people_login_qualify(in, "ngo-a", out));
		assert_int_equal(strcspn(out, "@"), PEOPLE_LOGIN_NAME_MAX);
		name[PEOPLE_LOGIN_NAME_MAX]     = 'n';
		name[PEOPLE_LOGIN_NAME_MAX + 1] = '\0';
		snprintf(in, sizeof(in), "%s@ngo-a", name);
		qualify_refused(in, "ngo-a");
		name[PEOPLE_LOGIN_NAME_MAX] = '\0';
		orgid[63]                   = 'o';
		orgid[64]                   = '\0';
		qualify_refused(name, orgid);
		snprintf(in, sizeof(in), "%s@%s", name, orgid);
		qualify_refused(in, orgid);
		name[PEOPLE_LOGIN_NAME_MAX - 1] = '\0';
		assert_null(people_login_qualify(name, orgid, out));
		assert_int_equal(strlen(out), PEOPLE_LOGIN_MAX);
		orgid[64]                = 'o';
		orgid[sizeof(orgid) - 1] = '\0';
		qualify_refused("a", orgid);
	}
}

/* A sealed field opens only for its person and its field. */
static void
test_sealing(void **state)
{
	uint8_t             a[PEOPLE_ID_LEN] = { 1 }, b[PEOPLE_ID_LEN] = { 2 };
	uint8_t             sealed[64], out[64];
	ProtobufCBinaryData d = { 5 + PEOPLE_SEAL_OVERHEAD, sealed };
	size_t              n;

	(void) state;
	assert_int_equal(people_seal(f.ps, a, "login", "alice", 5, sealed), HV_OK);
	assert_int_equal(people_open_field(f.ps, a, "login", &d, out, sizeof(out), &n), HV_OK);
	assert_int_equal(n, 5);
	assert_memory_equal(out, "alice", 5);
	assert_int_equal(people_open_field(f.ps, b, "login", &d, out, sizeof(out), &n),
	    HV_DATA_LOSS);
	assert_int_equal(people_open_field(f.ps, a, "display", &d, out, sizeof(out), &n),
	    HV_DATA_LOSS);
	sealed[PEOPLE_SEAL_OVERHEAD] ^= 1;
	assert_int_equal(people_open_field(f.ps, a, "login", &d, out, sizeof(out), &n),
	    HV_DATA_LOSS);
	d.len = 3;
	assert_int_equal(people_open_field(f.ps, a, "login", &d, out, sizeof(out), &n),
	    HV_DATA_LOSS);
}

/* The key file: made 0600; one open to others, or of the wrong size, refused. */
static void
test_key_file(void **state)
{
	people_options  po = { .store = NULL };
	people_service *ps = NULL;
	char            path[300];
	struct stat     sb;
	FILE           *fp;

	(void) state;
	snprintf(path, sizeof(path), "%s/people-key", f.dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, 32);
	po.store     = f.st;
	po.auth      = f.au;
	po.key_file  = path;
	po.pwhash_ln = 10;
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(people_open(&ps, &po), HV_PERMISSION_DENIED);
	assert_int_equal(chmod(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/short-key", f.dir);
	assert_non_null(fp = fopen(path, "w"));
	fputs("short", fp);
	fclose(fp);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(people_open(&ps, &po), HV_DATA_LOSS);
	po.key_file = NULL;
	assert_int_equal(people_open(&ps, &po), HV_INVALID_ARGUMENT);
	assert_null(ps);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_limits),
		cmocka_unit_test(test_session_passive),
		cmocka_unit_test(test_session_org_bound),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_busy),
		cmocka_unit_test(test_viewer_rule),
		cmocka_unit_test(test_login_qualify),
		cmocka_unit_test(test_sealing),
		cmocka_unit_test(test_key_file),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
