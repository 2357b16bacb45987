/*
 * connect_it.c - the Connect API (connect.h) against a real RPC server and nng's HTTP
 * server, driven by a real HTTP client (libcurl) and, for what a client library will not send
 * (a body that never arrives), by a raw socket.
 *
 * The server runs in this process with an authenticator over a test directory (tu_lookup), so
 * that tokens of every kind can be made: valid, altered, forged, expired, revoked. The same
 * calls go over the nng RPC (tcp://, a development listener) to show that both transports give
 * the same answers: one dispatch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/connect.h"
#include "haven/metrics.h"
#include "haven/pbjson.h"
#include "haven/rpc.h"
#include "connect_client.h"
#include "testutil.h"

#include "haven/health/v1/health.pb-c.h"
#include "haven/testing/v1/testing.pb-c.h"

#define M_WHOAMI   "haven.testing.v1.Testing/WhoAmI"
#define M_ADMIN    "haven.testing.v1.Testing/AdminOnly"
#define M_SLEEP    "haven.testing.v1.Testing/Sleep"
#define M_UNKNOWNS "haven.testing.v1.Testing/Unknowns"
#define MAX_MSG    (64 * 1024)

static tu_org orgs[] = {
	{ "acme-ngo", RPC_ROLE_REFERRER, 1, NULL },
	{ "city-admin", RPC_ROLE_ADMIN, 1, NULL },
	{ "gone-ngo", RPC_ROLE_REFERRER, 1, NULL },
	{ NULL, 0, 0, NULL },
};

static struct {
	auth           *a;
	rpc_server     *srv;
	connect_server *cs;
	rpc_channel    *ch;
	char            base[64];
	char            dir[256];
	char            tok_ref[AUTH_TOKEN_MAX];
	char            tok_admin[AUTH_TOKEN_MAX];
} g;

/* ---- handlers (as in rpc_it.c) --------------------------------------------------------- */

static hv_status
t_whoami(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const rpc_caller                   *c   = rpc_call_caller(call);
	Haven__Testing__V1__WhoAmIResponse *out = rpc_call_alloc(call, sizeof(*out));

	(void) svc;
	(void) req;
	haven__testing__v1__who_am_iresponse__init(out);
	out->role            = rpc_call_strdup(call, rpc_role_name(c->role));
	out->org_id          = rpc_call_strdup(call, c->org_id);
	out->transport       = (uint32_t) c->transport;
	out->remaining_ms    = rpc_call_remaining_ms(call);
	out->idempotency_key = rpc_call_strdup(call, rpc_call_idempotency_key(call));
	out->trace           = rpc_call_strdup(call, "");
	*reply               = &out->base;
	return (HV_OK);
}

static hv_status
t_sleep(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Testing__V1__SleepRequest *in = (const void *) req;
	Haven__Testing__V1__Empty              *out;
	struct timespec                         ts = { 0, 0 };

	(void) svc;
	if (in->ms > 5000) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "sleep too long"));
	}
	ts.tv_sec  = in->ms / 1000;
	ts.tv_nsec = (long) (in->ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
	out = rpc_call_alloc(call, sizeof(*out));
	haven__testing__v1__empty__init(out);
	*reply = &out->base;
	return (HV_OK);
}

/* Answers the number of unknown fields its request reached it with (the boundary drops them). */
static hv_status
t_unknowns(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	Haven__Testing__V1__UnknownsResponse *out = rpc_call_alloc(call, sizeof(*out));

	(void) svc;
	haven__testing__v1__unknowns_response__init(out);
	out->seen = req->n_unknown_fields;
	*reply    = &out->base;
	return (HV_OK);
}

static const rpc_method_impl testing_methods[] = {
	{ .name = "Sleep", .handler = t_sleep, .roles = RPC_ROLES_ANY },
	{ .name = "WhoAmI", .handler = t_whoami, .roles = RPC_ROLES_AUTHENTICATED },
	{ .name = "AdminOnly", .handler = t_whoami, .roles = RPC_ROLE_ADMIN },
	{ .name = "Unknowns", .handler = t_unknowns, .roles = RPC_ROLES_ANY },
};

/* ---- an HTTP client ---------------------------------------------------------------------- */

typedef struct reply {
	long   status;
	char  *body;
	size_t len;
	char   headers[8192];
	size_t hlen;
} reply;

static size_t
on_body(char *p, size_t sz, size_t n, void *arg)
{
	reply *r = arg;
	char  *b = realloc(r->body, r->len + sz * n + 1);

	assert_non_null(b);
	memcpy(b + r->len, p, sz * n);
	r->body = b;
	r->len += sz * n;
	r->body[r->len] = '\0';
	return (sz * n);
}

static size_t
on_header(char *p, size_t sz, size_t n, void *arg)
{
	reply *r = arg;
	size_t k = sz * n;

	if (r->hlen + k < sizeof(r->headers)) {
		memcpy(r->headers + r->hlen, p, k);
		r->hlen += k;
		r->headers[r->hlen] = '\0';
	}
	return (k);
}

/* Sends verb path with body and the given extra header lines (NULL-terminated) to base. */
static void
http(const char *base, const char *verb, const char *path, const char *const *hdrs,
    const void *body, size_t len, reply *r, const char *ca)
{
	CURL              *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char               url[512];
	void              *rec;

	memset(r, 0, sizeof(*r));
	assert_non_null(c);
	snprintf(url, sizeof(url), "%s%s", base, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, verb);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	}
	h = curl_slist_append(h, "Expect:"); /* no 100-continue round */
	for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL; i++) {
		h = curl_slist_append(h, hdrs[i]);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	if (ca != NULL) {
		curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	}
	rec = cc_record_begin(c);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	cc_record_end(c, rec);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (r->body == NULL) {
		r->body = calloc(1, 1);
	}
}

static void
reply_free(reply *r)
{
	free(r->body);
	r->body = NULL;
}

/* Whether the response headers hold this line (case-insensitive name, exact value). */
static bool
has_header(const reply *r, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = r->headers; *p != '\0';) {
		if (strncasecmp(p, line, n) == 0 && (p[n] == '\r' || p[n] == '\n')) {
			return (true);
		}
		p = strchr(p, '\n');
		if (p == NULL) {
			break;
		}
		p++;
	}
	return (false);
}

static void
expect_security_headers(const reply *r, bool api)
{
	assert_true(has_header(r, "X-Content-Type-Options: nosniff"));
	assert_true(has_header(r, "Referrer-Policy: no-referrer"));
	assert_true(has_header(r, "Cache-Control: no-store"));
	assert_true(has_header(r, "X-Frame-Options: DENY"));
	if (api) {
		assert_true(has_header(r,
		    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'"));
	} else {
		assert_non_null(strstr(r->headers, "Content-Security-Policy: default-src 'self';"));
	}
}

/* A Connect error answer: HTTP status and {"code": code, ...}. */
static void
expect_error(const reply *r, long status, const char *code)
{
	char want[64];

	if (r->status != status) {
		fail_msg("HTTP %ld, expected %ld: %s", r->status, status, r->body);
	}
	snprintf(want, sizeof(want), "{\"code\":\"%s\"", code);
	if (strncmp(r->body, want, strlen(want)) != 0) {
		fail_msg("body %s, expected code %s", r->body, code);
	}
	assert_true(has_header(r, "Content-Type: application/json"));
	expect_security_headers(r, true);
}

/* A JSON call with an optional bearer token and extra headers. */
static void
call_json(const char *method, const char *json, const char *token, const char *const *extra,
    reply *r)
{
	const char *h[12];
	char        auth_h[AUTH_TOKEN_MAX + 32], path[300];
	size_t      n = 0;

	h[n++] = "Content-Type: application/json";
	h[n++] = "Connect-Protocol-Version: 1";
	if (token != NULL) {
		snprintf(auth_h, sizeof(auth_h), "Authorization: Bearer %s", token);
		h[n++] = auth_h;
	}
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 11; i++) {
		h[n++] = extra[i];
	}
	h[n] = NULL;
	snprintf(path, sizeof(path), "/%s", method);
	http(g.base, "POST", path, h, json, strlen(json), r, NULL);
}

/* The same call over the nng RPC: status and error message. */
static hv_status
call_nng(const char *method, const char *token, char *err)
{
	Haven__Testing__V1__Empty e   = HAVEN__TESTING__V1__EMPTY__INIT;
	ProtobufCMessage         *out = NULL;
	hv_status                 st;

	assert_int_equal(rpc_channel_set_token(g.ch, token), HV_OK);
	st = rpc_channel_call(g.ch, method, &e.base,
	    &haven__testing__v1__who_am_iresponse__descriptor, &out, NULL, err, RPC_ERRMSG_MAX);
	protobuf_c_message_free_unpacked(out, NULL);
	return (st);
}

/* ---- setup -------------------------------------------------------------------------------- */

static int
setup(void **state)
{
	auth_options        ao = { .lookup = tu_lookup, .lookup_arg = orgs };
	rpc_server_options  o  = { .insecure_tcp = true, .max_msg = MAX_MSG };
	rpc_channel_options co = { .insecure_tcp = true };
	connect_options     c  = { .listen = "127.0.0.1:0", .read_timeout_ms = 500 };
	char                url[64], web[300], index[320];
	uint64_t            exp;
	FILE               *f;

	(void) state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	tu_tmpdir(g.dir, sizeof(g.dir), "connect");
	snprintf(web, sizeof(web), "%s/web", g.dir);
	assert_int_equal(mkdir(web, 0700), 0);
	snprintf(index, sizeof(index), "%s/index.html", web);
	f = fopen(index, "w");
	assert_non_null(f);
	fputs("<!doctype html><title>haven</title>\n", f);
	fclose(f);
	c.web_dir = web;

	memset(ao.secret, 0x5a, sizeof(ao.secret));
	assert_int_equal(auth_open(&g.a, &ao), HV_OK);
	o.auth = g.a;
	assert_int_equal(rpc_server_open(&g.srv, &o), HV_OK);
	assert_int_equal(rpc_server_add_service(g.srv, &haven__testing__v1__testing__descriptor,
	                     testing_methods, sizeof(testing_methods) / sizeof(testing_methods[0]),
	                     NULL),
	    HV_OK);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", 20000 + (int) ((getpid() + 11) % 20000));
	assert_int_equal(rpc_server_listen(g.srv, url), HV_OK);
	assert_int_equal(rpc_server_start(g.srv), HV_OK);
	assert_int_equal(connect_server_start(&g.cs, g.srv, &c), HV_OK);
	assert_false(connect_server_tls(g.cs));
	snprintf(g.base, sizeof(g.base), "http://127.0.0.1:%d", connect_server_port(g.cs));
	assert_int_equal(rpc_channel_open(&g.ch, url, &co), HV_OK);
	assert_int_equal(auth_issue_token(g.a, "acme-ngo", RPC_ROLE_REFERRER, hv_clock_wall_ms(),
	                     g.tok_ref, &exp),
	    HV_OK);
	assert_int_equal(auth_issue_token(g.a, "city-admin", RPC_ROLE_ADMIN, hv_clock_wall_ms(),
	                     g.tok_admin, &exp),
	    HV_OK);
	return (0);
}

static int
teardown(void **state)
{
	(void) state;
	rpc_channel_close(g.ch);
	connect_server_stop(g.cs);
	rpc_server_close(g.srv);
	auth_close(g.a);
	curl_global_cleanup();
	return (0);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* JSON and binary reach the handler with the token's identity; the answer comes back in the
 * request's content type, with the deadline and idempotency key of the headers. */
static void
test_json_and_binary(void **state)
{
	Haven__Testing__V1__WhoAmIResponse *who;
	const char      *extra[] = { "Connect-Timeout-Ms: 5000", "Idempotency-Key: key-1", NULL };
	const char      *h[5];
	char             auth_h[AUTH_TOKEN_MAX + 32];
	reply            r;
	rpc_server_stats before, after;

	(void) state;
	rpc_server_get_stats(g.srv, &before);
	call_json(M_WHOAMI, "{}", g.tok_ref, extra, &r);
	assert_int_equal(r.status, 200);
	assert_true(has_header(&r, "Content-Type: application/json"));
	expect_security_headers(&r, true);
	assert_false(
	    has_header(&r, "Strict-Transport-Security: max-age=31536000; includeSubDomains"));
	assert_int_equal(pbjson_decode(&haven__testing__v1__who_am_iresponse__descriptor, r.body,
	                     r.len, NULL, NULL, (ProtobufCMessage **) &who, NULL, 0),
	    HV_OK);
	assert_string_equal(who->role, "referrer");
	assert_string_equal(who->org_id, "acme-ngo");
	assert_int_equal(who->transport, RPC_TRANSPORT_HTTP);
	assert_true(who->remaining_ms <= 5000 && who->remaining_ms > 3000);
	assert_string_equal(who->idempotency_key, "key-1");
	protobuf_c_message_free_unpacked(&who->base, NULL);
	reply_free(&r);

	/* Binary: an empty body is the empty message. */
	snprintf(auth_h, sizeof(auth_h), "Authorization: Bearer %s", g.tok_admin);
	h[0] = "Content-Type: application/proto";
	h[1] = auth_h;
	h[2] = NULL;
	http(g.base, "POST", "/" M_ADMIN, h, "", 0, &r, NULL);
	assert_int_equal(r.status, 200);
	assert_true(has_header(&r, "Content-Type: application/proto"));
	who = haven__testing__v1__who_am_iresponse__unpack(NULL, r.len, (uint8_t *) r.body);
	assert_non_null(who);
	assert_string_equal(who->role, "admin");
	assert_string_equal(who->org_id, "city-admin");
	haven__testing__v1__who_am_iresponse__free_unpacked(who, NULL);
	reply_free(&r);

	/* The calls are recorded by the same dispatch as the nng ones. */
	rpc_server_get_stats(g.srv, &after);
	assert_true(after.calls >= before.calls + 2);

	/* Health is anonymous. */
	call_json("haven.health.v1.Health/Check", "{\"service\":\"\"}", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"status\":\"SERVING\"}");
	reply_free(&r);
}

/* Unknown fields in a binary request are dropped before the handler, as over nng. */
static void
test_binary_unknown_fields(void **state)
{
	/* Tree{name: "a"} followed by field 99 (varint 1): an unknown field. */
	static const uint8_t                  body[] = { 0x0a, 0x01, 'a', 0x98, 0x06, 0x01 };
	const char                           *h[]    = { "Content-Type: application/proto", NULL };
	Haven__Testing__V1__UnknownsResponse *u;
	reply                                 r;

	(void) state;
	http(g.base, "POST", "/" M_UNKNOWNS, h, body, sizeof(body), &r, NULL);
	assert_int_equal(r.status, 200);
	u = haven__testing__v1__unknowns_response__unpack(NULL, r.len, (uint8_t *) r.body);
	assert_non_null(u);
	assert_int_equal(u->seen, 0);
	haven__testing__v1__unknowns_response__free_unpacked(u, NULL);
	reply_free(&r);
	/* A string holding NUL is refused at the boundary, as over nng. */
	{
		static const uint8_t nul[] = { 0x0a, 0x02, 'a', 0x00 };
		http(g.base, "POST", "/" M_UNKNOWNS, h, nul, sizeof(nul), &r, NULL);
		expect_error(&r, 400, "invalid_argument");
		assert_non_null(strstr(r.body, "NUL"));
		reply_free(&r);
	}
}

/* Role refusals and token failures: the same status and message as over nng. */
static void
test_identity_same_as_nng(void **state)
{
	char        err[RPC_ERRMSG_MAX], bad[AUTH_TOKEN_MAX], forged[AUTH_TOKEN_MAX];
	char        expired[AUTH_TOKEN_MAX], gone[AUTH_TOKEN_MAX];
	uint64_t    exp;
	reply       r;
	const char *basic[] = { "Authorization: Basic dXNlcjpwdw==", NULL };

	(void) state;
	/* A referrer may not call an admin method. */
	assert_int_equal(call_nng(M_ADMIN, g.tok_ref, err), HV_PERMISSION_DENIED);
	call_json(M_ADMIN, "{}", g.tok_ref, NULL, &r);
	expect_error(&r, 403, "permission_denied");
	assert_non_null(strstr(r.body, err));
	reply_free(&r);

	/* No credential over HTTP is anonymous: no peer credentials count. */
	call_json(M_WHOAMI, "{}", NULL, NULL, &r);
	expect_error(&r, 403, "permission_denied");
	assert_non_null(strstr(r.body, "role anonymous may not call " M_WHOAMI));
	reply_free(&r);

	/* Altered, forged, expired and revoked tokens. */
	snprintf(bad, sizeof(bad), "%s", g.tok_ref);
	bad[5] = bad[5] == 'A' ? 'B' : 'A';
	{
		auth_options ao2 = { .lookup = tu_lookup, .lookup_arg = orgs };
		auth        *a2;
		memset(ao2.secret, 0x11, sizeof(ao2.secret));
		assert_int_equal(auth_open(&a2, &ao2), HV_OK);
		assert_int_equal(auth_issue_token(a2, "city-admin", RPC_ROLE_ADMIN,
		                     hv_clock_wall_ms(), forged, &exp),
		    HV_OK);
		auth_close(a2);
	}
	assert_int_equal(auth_issue_token(g.a, "acme-ngo", RPC_ROLE_REFERRER,
	                     hv_clock_wall_ms() - 2 * 3600 * 1000, expired, &exp),
	    HV_OK);
	assert_int_equal(auth_issue_token(g.a, "gone-ngo", RPC_ROLE_REFERRER, hv_clock_wall_ms(),
	                     gone, &exp),
	    HV_OK);
	orgs[2].enabled = 0;
	{
		const char *toks[] = { bad, forged, expired, gone, "v1.not-a-token" };
		for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
			assert_int_equal(call_nng(M_WHOAMI, toks[i], err), HV_UNAUTHENTICATED);
			call_json(M_WHOAMI, "{}", toks[i], NULL, &r);
			expect_error(&r, 401, "unauthenticated");
			assert_non_null(strstr(r.body, err));
			reply_free(&r);
		}
	}
	orgs[2].enabled = 1;

	/* Another scheme than Bearer. */
	call_json(M_WHOAMI, "{}", NULL, basic, &r);
	expect_error(&r, 401, "unauthenticated");
	reply_free(&r);
}

/* The session cookie: only with the double-submit CSRF token, only from this origin. */
static void
test_cookie_and_csrf(void **state)
{
	char        cookie[AUTH_TOKEN_MAX + 128], body[AUTH_TOKEN_MAX + 32];
	const char *csrf = "0123456789abcdef0123456789abcdef";
	const char *h[6];
	reply       r;

	(void) state;
	snprintf(cookie, sizeof(cookie), "Cookie: haven_session=%s; haven_csrf=%s", g.tok_ref,
	    csrf);
	/* Without the header. */
	h[0] = cookie;
	h[1] = NULL;
	call_json(M_WHOAMI, "{}", NULL, h, &r);
	expect_error(&r, 403, "permission_denied");
	assert_non_null(strstr(r.body, "X-CSRF-Token"));
	reply_free(&r);
	/* With a header that differs. */
	h[1] = "X-CSRF-Token: 0123456789abcdef0123456789abcdeX";
	h[2] = NULL;
	call_json(M_WHOAMI, "{}", NULL, h, &r);
	expect_error(&r, 403, "permission_denied");
	reply_free(&r);
	/* Right token, but from another site. */
	h[1] = "X-CSRF-Token: 0123456789abcdef0123456789abcdef";
	h[2] = "Origin: https://evil.example";
	h[3] = NULL;
	call_json(M_WHOAMI, "{}", NULL, h, &r);
	expect_error(&r, 403, "permission_denied");
	reply_free(&r);
	h[2] = "Sec-Fetch-Site: cross-site";
	call_json(M_WHOAMI, "{}", NULL, h, &r);
	expect_error(&r, 403, "permission_denied");
	reply_free(&r);
	/* Right token, same origin: the cookie's session. */
	h[2] = "Sec-Fetch-Site: same-origin";
	call_json(M_WHOAMI, "{}", NULL, h, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"orgId\":\"acme-ngo\""));
	reply_free(&r);
	/* A stolen cookie of a session that was revoked since (the organisation disabled). */
	{
		char     gone[AUTH_TOKEN_MAX], stolen[AUTH_TOKEN_MAX + 128];
		uint64_t exp;
		assert_int_equal(auth_issue_token(g.a, "gone-ngo", RPC_ROLE_REFERRER,
		                     hv_clock_wall_ms(), gone, &exp),
		    HV_OK);
		orgs[2].enabled = 0;
		snprintf(stolen, sizeof(stolen), "Cookie: haven_session=%s; haven_csrf=%s", gone,
		    csrf);
		h[0] = stolen;
		call_json(M_WHOAMI, "{}", NULL, h, &r);
		expect_error(&r, 401, "unauthenticated");
		reply_free(&r);
		orgs[2].enabled = 1;
		h[0]            = cookie;
	}

	/* POST /session turns a bearer token into the two cookies. */
	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", g.tok_ref);
	h[0] = "Content-Type: application/json";
	h[1] = NULL;
	http(g.base, "POST", "/session", h, body, strlen(body), &r, NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"csrfToken\":\""));
	assert_non_null(strstr(r.headers, "HttpOnly; Secure; SameSite=Strict"));
	assert_non_null(strstr(r.headers, "Set-Cookie: haven_session="));
	assert_non_null(strstr(r.headers, "Path=/; HttpOnly; Secure; SameSite=Strict"));
	reply_free(&r);
	http(g.base, "DELETE", "/session", h, NULL, 0, &r, NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "Set-Cookie: haven_session=; Max-Age=0"));
	reply_free(&r);
	http(g.base, "POST", "/session", h, "{\"token\":\"v1.forged\"}", 21, &r, NULL);
	expect_error(&r, 401, "unauthenticated");
	reply_free(&r);
	h[1] = "Origin: https://evil.example";
	h[2] = NULL;
	http(g.base, "POST", "/session", h, body, strlen(body), &r, NULL);
	expect_error(&r, 403, "permission_denied");
	reply_free(&r);
}

/* Bad input: a clear status each, and the server keeps serving. */
static void
test_bad_input(void **state)
{
	const char *plain[] = { "Content-Type: text/plain", NULL };
	const char *json[]  = { "Content-Type: application/json", NULL };
	const char *chunk[] = { "Content-Type: application/json", "Transfer-Encoding: chunked",
		NULL };
	const char *tmo[]   = { "Connect-Timeout-Ms: soon", NULL };
	const char *ver[]   = { "Connect-Protocol-Version: 2", NULL };
	const char *gz[]    = { "Content-Type: application/json", "Content-Encoding: gzip", NULL };
	char       *big;
	reply       r;

	(void) state;
	call_json(M_SLEEP, "{\"ms\": ", NULL, NULL, &r);
	expect_error(&r, 400, "invalid_argument");
	assert_non_null(strstr(r.body, "invalid JSON"));
	reply_free(&r);
	call_json(M_SLEEP, "{\"mss\": 1}", NULL, NULL, &r);
	expect_error(&r, 400, "invalid_argument");
	reply_free(&r);
	call_json(M_SLEEP, "{\"ms\": \"x\"}", NULL, NULL, &r);
	expect_error(&r, 400, "invalid_argument");
	reply_free(&r);
	/* The handler's own refusal. */
	call_json(M_SLEEP, "{\"ms\": 6000}", NULL, NULL, &r);
	expect_error(&r, 400, "invalid_argument");
	assert_non_null(strstr(r.body, "sleep too long"));
	reply_free(&r);

	http(g.base, "POST", "/" M_SLEEP, plain, "{}", 2, &r, NULL);
	expect_error(&r, 415, "invalid_argument");
	assert_true(has_header(&r, "Accept-Post: application/json, application/proto"));
	reply_free(&r);

	big = malloc(MAX_MSG + 100);
	memset(big, ' ', MAX_MSG + 100);
	big[0]            = '{';
	big[MAX_MSG + 99] = '}';
	http(g.base, "POST", "/" M_SLEEP, json, big, MAX_MSG + 100, &r, NULL);
	expect_error(&r, 413, "resource_exhausted");
	reply_free(&r);
	free(big);

	call_json("haven.nothing.v1.Nothing/Call", "{}", NULL, NULL, &r);
	expect_error(&r, 404, "unimplemented");
	reply_free(&r);
	/* The method is checked before the caller, as over nng. */
	call_json("haven.nothing.v1.Nothing/Call", "{}", "v1.forged", NULL, &r);
	expect_error(&r, 404, "unimplemented");
	reply_free(&r);
	call_json("haven.testing.v1.Testing/NotImplemented", "{}", NULL, NULL, &r);
	expect_error(&r, 404, "unimplemented");
	reply_free(&r);

	http(g.base, "GET", "/" M_SLEEP, NULL, NULL, 0, &r, NULL);
	assert_int_equal(r.status, 405);
	assert_true(has_header(&r, "Allow: POST"));
	expect_security_headers(&r, true);
	reply_free(&r);

	http(g.base, "POST", "/" M_SLEEP, chunk, "{}", 2, &r, NULL);
	expect_error(&r, 411, "invalid_argument");
	reply_free(&r);

	call_json(M_SLEEP, "{}", NULL, tmo, &r);
	expect_error(&r, 400, "invalid_argument");
	reply_free(&r);
	call_json(M_SLEEP, "{}", NULL, ver, &r);
	expect_error(&r, 400, "invalid_argument");
	reply_free(&r);
	http(g.base, "POST", "/" M_SLEEP, gz, "{}", 2, &r, NULL);
	expect_error(&r, 501, "unimplemented");
	reply_free(&r);

	/* Still serving. */
	call_json(M_SLEEP, "{\"ms\": 1}", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{}");
	reply_free(&r);
}

/* A client that sends its headers and never all of its body is cut off after the read
 * timeout; other clients are served meanwhile. */
static void
test_slow_client(void **state)
{
	struct sockaddr_in sa;
	struct timeval     tv = { 5, 0 };
	char               req[256], buf[256];
	int                fd, n;
	int64_t            t0;
	reply              r;

	(void) state;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family      = AF_INET;
	sa.sin_port        = htons((uint16_t) connect_server_port(g.cs));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n  = snprintf(req, sizeof(req),
	     "POST /" M_SLEEP " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
	      "Content-Length: 100\r\n\r\n{\"ms\"");
	t0 = hv_clock_mono_us();
	assert_int_equal(write(fd, req, (size_t) n), n);

	/* Meanwhile another client is served. */
	call_json(M_SLEEP, "{\"ms\": 1}", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	reply_free(&r);

	/* The server closes the slow one after its read timeout (500 ms here). */
	n = (int) read(fd, buf, sizeof(buf));
	assert_true(n <= 0);
	assert_true(hv_clock_mono_us() - t0 < 4000000);
	close(fd);
}

/* What the transport refused itself is counted by HTTP status, slow bodies apart. */
static void
test_refusal_metrics(void **state)
{
	char  *page = NULL;
	size_t len  = 0;

	(void) state;
	assert_int_equal(metrics_render(rpc_server_metrics(g.srv), &page, &len), HV_OK);
	assert_true(tu_metric(page, "haven_http_refused_total{status=\"415\"}") >= 1);
	assert_true(tu_metric(page, "haven_http_refused_total{status=\"413\"}") >= 1);
	assert_true(tu_metric(page, "haven_http_refused_total{status=\"405\"}") >= 1);
	assert_true(tu_metric(page, "haven_http_refused_total{status=\"411\"}") >= 1);
	assert_true(tu_metric(page, "haven_http_slow_bodies_total") >= 1);
	/* The calls themselves are in the dispatch's series, as over nng. */
	assert_true(
	    tu_metric(page, "haven_rpc_calls_total{method=\"" M_SLEEP "\",status=\"OK\"}") >= 1);
	free(page);
}

/* Headers over nng's 8 KiB are refused (the connection dropped), a method path with other
 * characters than a proto name's is not an RPC path, and the server keeps serving. */
static void
test_big_headers(void **state)
{
	struct sockaddr_in sa;
	struct timeval     tv = { 5, 0 };
	char              *req, buf[512];
	int                fd, n;
	size_t             len = 0;
	reply              r;

	(void) state;
	req = malloc(32768);
	assert_non_null(req);
	len += (size_t) snprintf(req, 32768, "POST /" M_SLEEP " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
	for (int i = 0; i < 600; i++) {
		len += (size_t) snprintf(req + len, 32768 - len,
		    "X-H%d: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\r\n", i);
	}
	len += (size_t) snprintf(req + len, 32768 - len, "Content-Length: 2\r\n\r\n{}");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family      = AF_INET;
	sa.sin_port        = htons((uint16_t) connect_server_port(g.cs));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void) !write(fd, req, len);
	n = (int) read(fd, buf, sizeof(buf) - 1);
	/* Closed, or a 4xx from nng: never an answer of the method. */
	if (n > 0) {
		buf[n] = '\0';
		assert_non_null(strstr(buf, "HTTP/1.1 4"));
	}
	close(fd);
	free(req);

	/* A static path: POST is not allowed there, and nothing of the path comes back. */
	call_json("haven.testing.v1.Testing/Sl<eep>", "{}", NULL, NULL, &r);
	assert_int_equal(r.status, 405);
	assert_null(strstr(r.body, "<eep>"));
	reply_free(&r);
	call_json(M_SLEEP, "{\"ms\": 1}", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	reply_free(&r);
}

/* GET serves the static directory with a strict policy; nothing outside it. */
static void
test_static(void **state)
{
	reply r;

	(void) state;
	http(g.base, "GET", "/", NULL, NULL, 0, &r, NULL);
	assert_int_equal(r.status, 200);
	assert_true(has_header(&r, "Content-Type: text/html; charset=utf-8"));
	expect_security_headers(&r, false);
	assert_non_null(strstr(r.body, "<title>haven</title>"));
	reply_free(&r);
	http(g.base, "GET", "/index.html", NULL, NULL, 0, &r, NULL);
	assert_int_equal(r.status, 200);
	reply_free(&r);
	http(g.base, "GET", "/nothing.js", NULL, NULL, 0, &r, NULL);
	assert_int_equal(r.status, 404);
	expect_security_headers(&r, false);
	reply_free(&r);
	http(g.base, "GET", "/%2e%2e/%2e%2e/etc/passwd", NULL, NULL, 0, &r, NULL);
	assert_int_equal(r.status, 404);
	reply_free(&r);
	http(g.base, "POST", "/index.html", NULL, "x", 1, &r, NULL);
	assert_int_equal(r.status, 405);
	reply_free(&r);
}

typedef struct slow_call {
	char  base[64];
	reply r;
	bool  answered;
} slow_call;

static void *
slow_main(void *arg)
{
	slow_call         *c  = arg;
	CURL              *cu = curl_easy_init();
	struct curl_slist *h  = NULL;
	char               url[200];
	static const char  body[] = "{\"ms\": 400}";

	snprintf(url, sizeof(url), "%s/" M_SLEEP, c->base);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, &c->r);
	curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, 10000L);
	c->answered = curl_easy_perform(cu) == CURLE_OK;
	curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &c->r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(cu);
	return (NULL);
}

/* A deadline from Connect-Timeout-Ms that passes while the call waits for a worker (all
 * four are sleeping): 504 deadline_exceeded, as over nng. */
static void
test_deadline(void **state)
{
	const char     *tmo[] = { "Connect-Timeout-Ms: 50", NULL };
	slow_call       sc[4];
	pthread_t       t[4];
	reply           r;
	struct timespec ts = { 0, 5 * 1000000L };

	(void) state;
	memset(sc, 0, sizeof(sc));
	for (int i = 0; i < 4; i++) {
		snprintf(sc[i].base, sizeof(sc[i].base), "%s", g.base);
		assert_int_equal(pthread_create(&t[i], NULL, slow_main, &sc[i]), 0);
	}
	/* Until the four calls are in (the workers sleep 400 ms each). */
	for (int k = 0; k < 40; k++) {
		char  *page = NULL;
		size_t len;
		double in;
		assert_int_equal(metrics_render(rpc_server_metrics(g.srv), &page, &len), HV_OK);
		in = tu_metric(page, "haven_rpc_in_flight_calls");
		free(page);
		if (in >= 4) {
			break;
		}
		nanosleep(&ts, NULL);
	}
	call_json(M_SLEEP, "{\"ms\": 0}", NULL, tmo, &r);
	expect_error(&r, 504, "deadline_exceeded");
	reply_free(&r);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(sc[i].r.status, 200);
		reply_free(&sc[i].r);
	}
}

/* At most max_inflight HTTP calls at once (then 429 resource_exhausted); stopping the server
 * while a call runs lets it finish. */
static void
test_inflight_cap_and_stop(void **state)
{
	connect_options c = { .listen = "127.0.0.1:0", .max_inflight = 1 };
	connect_server *cs;
	slow_call       sc;
	pthread_t       t;
	reply           r;
	const char     *h[] = { "Content-Type: application/json", NULL };
	struct timespec ts  = { 0, 150 * 1000000L };

	(void) state;
	memset(&sc, 0, sizeof(sc));
	assert_int_equal(connect_server_start(&cs, g.srv, &c), HV_OK);
	snprintf(sc.base, sizeof(sc.base), "http://127.0.0.1:%d", connect_server_port(cs));
	assert_int_equal(pthread_create(&t, NULL, slow_main, &sc), 0);
	nanosleep(&ts, NULL); /* the slow call is in */
	http(sc.base, "POST", "/" M_SLEEP, h, "{}", 2, &r, NULL);
	expect_error(&r, 429, "resource_exhausted");
	reply_free(&r);
	connect_server_stop(cs); /* waits for the slow call */
	pthread_join(t, NULL);
	assert_true(sc.answered);
	assert_int_equal(sc.r.status, 200);
	reply_free(&sc.r);
}

/* HTTPS with the node's certificate: no client certificate asked, HSTS sent. */
static void
test_https(void **state)
{
	static const char *const none[] = { NULL };
	connect_options          c      = { .listen = "127.0.0.1:0" };
	connect_server          *cs;
	char                     pki[300], cert[340], key[340], ca[340], base[64];
	reply                    r;
	const char              *h[] = { "Content-Type: application/json", NULL };

	(void) state;
	snprintf(pki, sizeof(pki), "%s/pki", g.dir);
	tu_pki(pki, none, 0);
	snprintf(cert, sizeof(cert), "%s/server.pem", pki);
	snprintf(key, sizeof(key), "%s/server.key", pki);
	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	c.tls_cert_file = cert;
	c.tls_key_file  = key;
	assert_int_equal(connect_server_start(&cs, g.srv, &c), HV_OK);
	assert_true(connect_server_tls(cs));
	snprintf(base, sizeof(base), "https://localhost:%d", connect_server_port(cs));
	http(base, "POST", "/haven.health.v1.Health/Check", h, "{}", 2, &r, ca);
	assert_int_equal(r.status, 200);
	assert_true(
	    has_header(&r, "Strict-Transport-Security: max-age=31536000; includeSubDomains"));
	reply_free(&r);
	connect_server_stop(cs);

	/* Plain HTTP is for loopback only; a bad address is refused. */
	{
		connect_options p = { .listen = "http://0.0.0.0:0" };
		char            err[256];
		assert_int_equal(connect_server_start(&cs, g.srv, &p), HV_INVALID_ARGUMENT);
		assert_int_equal(connect_check_listen("0.0.0.0:8443", false, err, sizeof(err)),
		    HV_INVALID_ARGUMENT);
		assert_int_equal(connect_check_listen("0.0.0.0:8443", true, err, sizeof(err)),
		    HV_OK);
		assert_int_equal(connect_check_listen("ftp://x:1", true, err, sizeof(err)),
		    HV_INVALID_ARGUMENT);
		assert_int_equal(connect_check_listen("localhost", true, err, sizeof(err)),
		    HV_INVALID_ARGUMENT);
		assert_int_equal(connect_check_listen("http://127.0.0.1:8080", false, err,
		                     sizeof(err)),
		    HV_OK);
		assert_int_equal(connect_check_listen("https://0.0.0.0:8443", false, err,
		                     sizeof(err)),
		    HV_INVALID_ARGUMENT);
		assert_non_null(strstr(err, "tls_cert"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_and_binary),
		cmocka_unit_test(test_binary_unknown_fields),
		cmocka_unit_test(test_identity_same_as_nng),
		cmocka_unit_test(test_cookie_and_csrf),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_slow_client),
		cmocka_unit_test(test_big_headers),
		cmocka_unit_test(test_refusal_metrics),
		cmocka_unit_test(test_static),
		cmocka_unit_test(test_https),
		cmocka_unit_test(test_inflight_cap_and_stop),
		cmocka_unit_test(test_deadline),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
