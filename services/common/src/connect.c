/*
 * connect.c - the Connect protocol's unary calls over nng's HTTP server, a second transport
 * of the RPC dispatch (see connect.h, rpc_dispatch.h).
 *
 * A request's path. nng calls http_cb on one of its threads for every request (one tree
 * handler at "/", every verb). An RPC path gets its headers checked there; then its body is
 * read with an aio of our own (Content-Length checked first, a timeout on the read), and
 * body_done builds the call's envelope (method from the path, `authorization` from the bearer
 * header or the session cookie, timeout from Connect-Timeout-Ms, idempotency key), runs the
 * dispatch's checks and submits it. The dispatch runs the handler on a worker and calls
 * creq_reply, which encodes the answer; creq_finish writes it on the connection in one piece
 * (connect_res_bytes says why) and then completes nng's aio, after which nng reads the
 * connection's next request. Nothing of a request is touched after its aio is completed.
 *
 * Lifetime. Each request holds a reference on the server (cs_inflight); connect_server_stop
 * stops nng's server (no new requests) and then waits for the requests in flight.
 *
 * The HTTP pieces without state (answers and their headers, cookies, origins, paths, content
 * types, addresses, static files) are in connect_http.c.
 */
#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/connect.h"
#include "haven/crypto.h"
#include "haven/limit.h"
#include "haven/log.h"
#include "haven/pbjson.h"

#include "haven/arena.h"
#include "connect_internal.h"
#include "rpc_dispatch.h"
#include "rpc_internal.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- requests in flight ---------------------------------------------------------------- */

static void
creq_free(creq *r)
{
	if (r->r_body_aio != NULL) {
		nng_aio_reap(r->r_body_aio); /* also from its own callback */
	}
	if (r->r_write_aio != NULL) {
		nng_aio_reap(r->r_write_aio);
	}
	arena_reset(&r->r_call.c_arena);
	free(r->r_body);
	free(r->r_out);
	free(r);
}

/* Ends r and completes nng's aio: rv 0 (the answer was written, nng reads the next request on
 * the connection, or closes it for HTTP/1.0 and "Connection: close" requests) or an error
 * (nng closes the connection). */
static void
creq_end(creq *r, int rv)
{
	connect_server *cs   = r->r_cs;
	nng_aio        *http = r->r_http;

	if (r->r_direct != NULL) { /* connect_request_direct: no connection, no nng aio */
		r->r_direct(r->r_direct_arg, rv == 0 || rv == NNG_ECLOSED ? r->r_out : NULL,
		    rv == 0 || rv == NNG_ECLOSED ? r->r_out_len : 0);
		creq_free(r);
		cs_leave(cs);
		return;
	}
	creq_free(r);
	nng_aio_set_output(http, 0, NULL); /* no answer for nng to write: ours is out */
	nng_aio_finish(http, rv);
	cs_leave(cs);
}

/* Our write of the answer is done. */
static void
write_cb(void *arg)
{
	creq *r  = arg;
	int   rv = nng_aio_result(r->r_write_aio);

	creq_end(r, rv != 0 ? rv : r->r_close ? NNG_ECLOSED : 0);
}

/* Writes res (consumed; NULL: out of memory) as the answer to r in one piece
 * (connect_res_bytes), then ends r. The connection closes after it when r_close is set or the
 * answer says Connection: close. */
static void
creq_finish(creq *r, nng_http_res *res)
{
	bool    head  = strcmp(nng_http_req_get_method(r->r_req), "HEAD") == 0;
	bool    close = false;
	size_t  len   = 0;
	nng_iov iov;

	if (res == NULL) {
		creq_end(r, NNG_ENOMEM);
		return;
	}
	r->r_out = connect_res_bytes(res, head, &len, &close);
	nng_http_res_free(res);
	if (r->r_out == NULL || nng_aio_alloc(&r->r_write_aio, write_cb, r) != 0) {
		r->r_write_aio = NULL;
		creq_end(r, NNG_ENOMEM);
		return;
	}
	r->r_close |= close;
	r->r_out_len = len;
	if (r->r_direct != NULL) {
		creq_end(r, r->r_close ? NNG_ECLOSED : 0);
		return;
	}
	iov.iov_buf = r->r_out;
	iov.iov_len = len;
	nng_aio_set_iov(r->r_write_aio, 1, &iov);
	/* A client that does not read its answer is cut off like one that does not send. */
	nng_aio_set_timeout(r->r_write_aio, (nng_duration) r->r_cs->cs_read_timeout_ms);
	nng_http_conn_write_all(r->r_conn, r->r_write_aio);
}

/* The dispatch's completion (rpc_reply_fn): encodes the reply in the request's content type
 * or the status as a Connect error, records the call and completes the HTTP request. */
static void
creq_reply(rpc_call *call, hv_status code, const ProtobufCMessage *reply)
{
	creq           *r   = call->c_transport;
	connect_server *cs  = r->r_cs;
	rpc_server     *srv = cs->cs_rpc;
	nng_http_res   *res = NULL;
	char            err[PBJSON_ERR_SIZE];

	code = rpc_dispatch_check_reply(call, code, reply);
	if (code == HV_OK && r->r_kind == BODY_JSON) {
		char  *json = NULL;
		size_t n    = 0;
		code        = pbjson_encode(reply, NULL, &json, &n, err, sizeof(err));
		if (code == HV_OK && n > srv->sv_opts.max_msg) {
			code = rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
			    "reply of %zu bytes is over the limit", n);
		} else if (code != HV_OK) {
			code = rpc_call_error(call, HV_INTERNAL, "reply has no JSON form: %s", err);
		} else {
			res = connect_res_make(cs, 200, true, CT_JSON, json, n, r->r_close);
		}
		free(json);
	} else if (code == HV_OK) {
		size_t   n   = protobuf_c_message_get_packed_size(reply);
		uint8_t *buf = n > srv->sv_opts.max_msg ? NULL : arena_alloc(&call->c_arena, n + 1);
		if (buf == NULL) {
			code = rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
			    "reply of %zu bytes is over the limit", n);
		} else {
			protobuf_c_message_pack(reply, buf);
			res = connect_res_make(cs, 200, true, CT_PROTO, buf, n, r->r_close);
		}
	}
	if (code != HV_OK) {
		uint16_t http = 0;
		/* A path naming no served method is "not found" at the HTTP level. */
		if (code == HV_UNIMPLEMENTED && call->c_method == NULL) {
			http = 404;
		}
		res =
		    connect_res_error(cs, code, http, rpc_dispatch_errmsg(call, code), r->r_close);
	}
	rpc_dispatch_record(srv, call, code);
	creq_finish(r, res);
	rpc_dispatch_end(srv);
}

/* Finds the call's credential: the bearer header, else the session cookie (with the CSRF
 * check). *token is NULL for an anonymous call. On failure the call's error is set. */
static hv_status
http_credential(connect_server *cs, creq *r, const char **token)
{
	nng_http_req *req    = r->r_req;
	const char   *authz  = nng_http_req_get_header(req, "Authorization");
	const char   *cookie = nng_http_req_get_header(req, "Cookie");
	char          sess[AUTH_TOKEN_MAX + 1], csrf[128];
	const char   *hdr;

	*token = NULL;
	if (authz != NULL) {
		if (strncasecmp(authz, "Bearer ", 7) != 0 || authz[7] == '\0') {
			return (rpc_call_error(&r->r_call, HV_UNAUTHENTICATED,
			    "Authorization must be a Bearer token"));
		}
		*token = rpc_call_strdup(&r->r_call, authz + 7);
		return (*token != NULL ? HV_OK : HV_RESOURCE_EXHAUSTED);
	}
	if (cookie == NULL || !connect_cookie_get(cookie, COOKIE_SESSION, sess, sizeof(sess))) {
		return (HV_OK);
	}
	hdr = nng_http_req_get_header(req, "X-CSRF-Token");
	if (hdr == NULL || !connect_cookie_get(cookie, COOKIE_CSRF, csrf, sizeof(csrf)) ||
	    strlen(hdr) != strlen(csrf) || strlen(csrf) < 16 ||
	    !crypto_equal(hdr, csrf, strlen(csrf))) {
		return (rpc_call_error(&r->r_call, HV_PERMISSION_DENIED,
		    "a cookie session needs header X-CSRF-Token equal to cookie haven_csrf"));
	}
	if (!connect_same_origin(cs, req)) {
		return (rpc_call_error(&r->r_call, HV_PERMISSION_DENIED,
		    "cross-origin request refused"));
	}
	*token = rpc_call_strdup(&r->r_call, sess);
	return (*token != NULL ? HV_OK : HV_RESOURCE_EXHAUSTED);
}

/* ---- the RPC call ---------------------------------------------------------------------- */

/* The call's c_prepare for a JSON body: decodes it as the method's request type. */
static hv_status
json_payload(rpc_call *call)
{
	creq *r = call->c_transport;

	return (rpc_dispatch_payload_json(call->c_srv, call, r->r_len > 0 ? r->r_body : "{}",
	    r->r_len > 0 ? r->r_len : 2));
}

/* Builds the call's envelope from the request: method from the path, the credential as
 * `authorization` metadata, the timeout and the idempotency key; then the dispatch's checks. */
static hv_status
call_prepare(connect_server *cs, creq *r)
{
	rpc_server                *srv  = cs->cs_rpc;
	rpc_call                  *call = &r->r_call;
	nng_http_req              *req  = r->r_req;
	Haven__Rpc__V1__Request   *env;
	Haven__Rpc__V1__Metadata **md;
	const char                *uri = nng_http_req_get_uri(req);
	const char                *token, *idem, *activity;
	size_t                     n;
	hv_status                  st;

	if ((env = rpc_call_alloc(call, sizeof(*env))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__rpc__v1__request__init(env);
	call->c_env     = env;
	env->request_id = atomic_fetch_add(&cs->cs_request_ids, 1) + 1;
	n               = strcspn(uri + 1, "?");
	if ((env->method = rpc_call_alloc(call, n + 1)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	memcpy(env->method, uri + 1, n);
	if (connect_parse_timeout(nng_http_req_get_header(req, "Connect-Timeout-Ms"),
	        &env->timeout_ms) != HV_OK) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "Connect-Timeout-Ms must be 1 to 10 digits"));
	}
	idem = nng_http_req_get_header(req, "Idempotency-Key");
	if ((env->idempotency_key = rpc_call_strdup(call, idem != NULL ? idem : "")) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	/* In the nng path's order: the method before who calls it. */
	if ((st = rpc_dispatch_method(srv, call)) != HV_OK ||
	    (st = http_credential(cs, r, &token)) != HV_OK) {
		return (st);
	}
	/* The credential, and Haven-Activity (a page's own refresh: rpc.h, RPC_MD_ACTIVITY). */
	activity = nng_http_req_get_header(req, "Haven-Activity");
	if (token != NULL) {
		md = rpc_call_alloc(call, 2 * sizeof(*md));
		if (md == NULL || (md[0] = rpc_call_alloc(call, sizeof(**md))) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		haven__rpc__v1__metadata__init(md[0]);
		md[0]->key      = "authorization";
		md[0]->value    = (char *) token;
		env->metadata   = md;
		env->n_metadata = 1;
		if (activity != NULL && strcmp(activity, RPC_ACTIVITY_BACKGROUND) == 0) {
			if ((md[1] = rpc_call_alloc(call, sizeof(**md))) == NULL) {
				return (HV_RESOURCE_EXHAUSTED);
			}
			haven__rpc__v1__metadata__init(md[1]);
			md[1]->key      = RPC_MD_ACTIVITY;
			md[1]->value    = RPC_ACTIVITY_BACKGROUND;
			env->n_metadata = 2;
		}
	}
	if ((st = rpc_dispatch_check_envelope(srv, call)) != HV_OK ||
	    (st = rpc_dispatch_identify(srv, call, RPC_TRANSPORT_HTTP, false)) != HV_OK ||
	    (st = rpc_dispatch_authorize(srv, call)) != HV_OK) {
		return (st);
	}
	if (r->r_kind == BODY_JSON) {
		/* Up to max_msg of JSON takes milliseconds to decode: on the worker, not here. */
		call->c_prepare = json_payload;
		return (HV_OK);
	}
	env->payload.data = (uint8_t *) r->r_body;
	env->payload.len  = r->r_len;
	return (rpc_dispatch_payload(srv, call));
}

static void session_answer(creq *r);

/* Where the call comes from (rpc_call_source): the client of X-Forwarded-For when a trusted
 * proxy is in front, as a keyed hash; the address itself goes no further than this stack. */
static void
call_source(connect_server *cs, creq *r)
{
	uint8_t a[16];
	size_t  n;

	if (!cs->cs_trusted_proxy) {
		return;
	}
	n = connect_forwarded_addr(nng_http_req_get_header(r->r_req, "X-Forwarded-For"), a);
	r->r_call.c_has_source = n > 0 && limit_source(r->r_call.c_source, a, n);
	crypto_wipe(a, sizeof(a));
}

/* The body is in (or there was none): into the dispatch. */
static void
body_done(creq *r)
{
	connect_server *cs  = r->r_cs;
	rpc_server     *srv = cs->cs_rpc;
	hv_status       st;

	if (r->r_session) {
		session_answer(r);
		return;
	}
	rpc_dispatch_begin(srv, &r->r_call);
	r->r_call.c_reply     = creq_reply;
	r->r_call.c_transport = r;
	call_source(cs, r);
	if ((st = call_prepare(cs, r)) != HV_OK) {
		rpc_dispatch_fail(&r->r_call, st);
		return;
	}
	rpc_dispatch_submit(srv, &r->r_call);
}

static void
body_cb(void *arg)
{
	creq           *r  = arg;
	connect_server *cs = r->r_cs;
	nng_aio        *http;
	int             rv = nng_aio_result(r->r_body_aio);

	if (rv == 0 && nng_aio_count(r->r_body_aio) == r->r_len) {
		body_done(r);
		return;
	}
	/* A slow or vanished client: nng's connection closed itself when the read failed. No
	 * answer can reach it; the request ends without one. */
	log_info("connect: request body not read in time (%s); connection closed",
	    nng_strerror(rv != 0 ? rv : NNG_ECONNSHUT));
	rpc_dispatch_http_refused(cs->cs_rpc, 0);
	http = r->r_http;
	creq_free(r);
	nng_aio_finish(http, rv != 0 ? rv : NNG_ECONNSHUT);
	cs_leave(cs);
}

/* ---- /session: a bearer token into the browser's cookies ---------------------------------- */

/* POST /session {"token": "..."}: checks the token as a call would (rpc_dispatch_identify),
 * sets the haven_session cookie (HttpOnly) and answers a fresh CSRF token for the page's
 * haven_csrf cookie and X-CSRF-Token header. DELETE /session clears the session cookie.
 * Same-origin only, JSON only (a cross-site form cannot send it without a preflight). */
static void
session_answer(creq *r)
{
	connect_server *cs   = r->r_cs;
	rpc_call       *call = &r->r_call;
	nng_http_res   *res  = NULL;
	json_t         *in   = NULL;
	const char     *tok  = NULL;
	uint8_t         raw[CSRF_BYTES];
	char            csrf[2 * CSRF_BYTES + 1];
	char            cookie[AUTH_TOKEN_MAX + 128];
	const char     *verb = nng_http_req_get_method(r->r_req);
	hv_status       st;

	rpc_dispatch_begin(cs->cs_rpc, call); /* an identity check: counted as a call in flight */
	if (!connect_same_origin(cs, r->r_req)) {
		res = connect_res_error(cs, HV_PERMISSION_DENIED, 0, "cross-origin request refused",
		    r->r_close);
		goto out;
	}
	if (strcmp(verb, "DELETE") == 0) {
		res = connect_res_make(cs, 200, true, CT_JSON, "{}", 2, r->r_close);
		if (res != NULL &&
		    nng_http_res_set_header(res, "Set-Cookie",
		        COOKIE_SESSION
		        "=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Strict") != 0) {
			nng_http_res_free(res);
			res = NULL;
		}
		goto out;
	}
	in = json_loadb(r->r_body != NULL ? r->r_body : "", r->r_len, JSON_REJECT_DUPLICATES, NULL);
	if (in == NULL || json_unpack(in, "{s:s}", "token", &tok) != 0 || tok[0] == '\0' ||
	    strlen(tok) >= AUTH_TOKEN_MAX) {
		res = connect_res_error(cs, HV_INVALID_ARGUMENT, 0,
		    "body must be {\"token\": \"...\"}", false);
		goto out;
	}
	{
		Haven__Rpc__V1__Request   env = HAVEN__RPC__V1__REQUEST__INIT;
		Haven__Rpc__V1__Metadata  m   = HAVEN__RPC__V1__METADATA__INIT;
		Haven__Rpc__V1__Metadata *mp  = &m;
		m.key                         = "authorization";
		m.value                       = (char *) tok;
		env.metadata                  = &mp;
		env.n_metadata                = 1;
		call->c_env                   = &env;
		st          = rpc_dispatch_identify(cs->cs_rpc, call, RPC_TRANSPORT_HTTP, false);
		call->c_env = NULL;
	}
	if (st != HV_OK || crypto_random(raw, sizeof(raw)) != HV_OK) {
		res = connect_res_error(cs, st != HV_OK ? st : HV_INTERNAL, 0,
		    st != HV_OK ? "session token is invalid, expired or revoked" : NULL, false);
		goto out;
	}
	for (size_t i = 0; i < sizeof(raw); i++) {
		snprintf(csrf + 2 * i, 3, "%02x", raw[i]);
	}
	/* nng joins header lines of one name into one (with ", "), which breaks Set-Cookie: the
	 * session cookie is the one set here; the page keeps csrfToken in its haven_csrf cookie
	 * itself (document.cookie, Secure; SameSite=Strict) and sends it as X-CSRF-Token. */
	{
		char body[2 * CSRF_BYTES + 32];
		int  n = snprintf(body, sizeof(body), "{\"csrfToken\":\"%s\"}", csrf);
		res    = connect_res_make(cs, 200, true, CT_JSON, body, (size_t) n, false);
	}
	snprintf(cookie, sizeof(cookie),
	    COOKIE_SESSION "=%s; Path=/; HttpOnly; Secure; SameSite=Strict", tok);
	if (res != NULL && nng_http_res_set_header(res, "Set-Cookie", cookie) != 0) {
		nng_http_res_free(res);
		res = NULL;
	}
	crypto_wipe(cookie, sizeof(cookie));
out:
	json_decref(in); /* the token in it is not secret to its own caller; freed at once */
	creq_finish(r, res);
	rpc_dispatch_end(cs->cs_rpc);
}

/* The checks of an RPC request's headers before its body is read. Returns a response to send
 * at once, or NULL with r ready to read r->r_len bytes of body. */
static nng_http_res *
rpc_headers(connect_server *cs, creq *r, bool *oom)
{
	nng_http_req      *req  = r->r_req;
	const char        *verb = nng_http_req_get_method(req);
	const char        *v;
	char              *end;
	unsigned long long len = 0;

	*oom = false;
	if (strcmp(verb, "POST") != 0) {
		nng_http_res *res = connect_res_error(cs, HV_UNIMPLEMENTED, 405,
		    "RPC methods are called with POST", false);
		if (res != NULL && nng_http_res_set_header(res, "Allow", "POST") != 0) {
			nng_http_res_free(res);
			res = NULL;
		}
		*oom = res == NULL;
		return (res);
	}
	if (nng_http_req_get_header(req, "Transfer-Encoding") != NULL) {
		r->r_close = true;
		return (connect_res_error(cs, HV_INVALID_ARGUMENT, 411,
		    "send the body with a Content-Length, not chunked", true));
	}
	if ((v = nng_http_req_get_header(req, "Content-Length")) != NULL) {
		len = strtoull(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end != '\0' || strlen(v) > 19) {
			r->r_close = true;
			return (connect_res_error(cs, HV_INVALID_ARGUMENT, 400,
			    "bad Content-Length", true));
		}
		if (len > cs->cs_max_body) {
			char msg[96];
			snprintf(msg, sizeof(msg),
			    "request body of %llu bytes is over the limit of %zu", len,
			    cs->cs_max_body);
			r->r_close = true; /* the body is left unread */
			return (connect_res_error(cs, HV_RESOURCE_EXHAUSTED, 413, msg, true));
		}
	}
	r->r_len = (size_t) len;
	if (!connect_body_kind(nng_http_req_get_header(req, "Content-Type"), &r->r_kind)) {
		nng_http_res *res = connect_res_error(cs, HV_INVALID_ARGUMENT, 415,
		    "Content-Type must be application/json or application/proto", r->r_len > 0);
		r->r_close        = r->r_len > 0;
		if (res != NULL &&
		    nng_http_res_set_header(res, "Accept-Post", CT_JSON ", " CT_PROTO) != 0) {
			nng_http_res_free(res);
			res = NULL;
		}
		*oom = res == NULL;
		return (res);
	}
	v = nng_http_req_get_header(req, "Connect-Protocol-Version");
	if (v != NULL && strcmp(v, "1") != 0) {
		r->r_close = r->r_len > 0;
		return (connect_res_error(cs, HV_INVALID_ARGUMENT, 0,
		    "Connect-Protocol-Version must be 1", r->r_close));
	}
	v = nng_http_req_get_header(req, "Content-Encoding");
	if (v != NULL && strcasecmp(v, "identity") != 0) {
		nng_http_res *res;
		r->r_close = r->r_len > 0;
		res        = connect_res_error(cs, HV_UNIMPLEMENTED, 0,
		           "only identity encoding is accepted", r->r_close);
		if (res != NULL &&
		    nng_http_res_set_header(res, "Accept-Encoding", "identity") != 0) {
			nng_http_res_free(res);
			res = NULL;
		}
		*oom = res == NULL;
		return (res);
	}
	return (NULL);
}

/* The checks of a /session request: DELETE (its body, if any, is not read), or POST with a
 * JSON body checked as an RPC request's. */
static nng_http_res *
session_headers(connect_server *cs, creq *r, bool *oom)
{
	const char   *verb = nng_http_req_get_method(r->r_req);
	nng_http_res *res;

	*oom = false;
	if (strcmp(verb, "DELETE") == 0) {
		r->r_close = nng_http_req_get_header(r->r_req, "Content-Length") != NULL;
		return (NULL);
	}
	if (strcmp(verb, "POST") != 0) {
		res =
		    connect_res_error(cs, HV_UNIMPLEMENTED, 405, "POST or DELETE /session", false);
		*oom = res == NULL;
		return (res);
	}
	if ((res = rpc_headers(cs, r, oom)) != NULL || *oom) {
		return (res);
	}
	if (r->r_kind != BODY_JSON) {
		r->r_close = r->r_len > 0;
		res        = connect_res_error(cs, HV_INVALID_ARGUMENT, 415,
		           "Content-Type must be application/json", r->r_close);
		*oom       = res == NULL;
	}
	return (res);
}

/* Starts reading r's body (r->r_len bytes, within the read timeout), or goes on at once. */
static void
body_start(creq *r)
{
	nng_iov iov;

	if (r->r_len == 0) {
		body_done(r);
		return;
	}
	if ((r->r_body = malloc(r->r_len + 1)) == NULL ||
	    nng_aio_alloc(&r->r_body_aio, body_cb, r) != 0) {
		r->r_body_aio = NULL;
		r->r_close    = true;
		creq_finish(r,
		    connect_res_error(r->r_cs, HV_RESOURCE_EXHAUSTED, 0, "out of memory", true));
		return;
	}
	r->r_body[r->r_len] = '\0';
	if (r->r_direct != NULL) {
		/* The body given whole; one shorter than Content-Length is a client that never sent
		 * the rest: its request ends without an answer, as body_cb ends it. */
		if (r->r_direct_len < r->r_len) {
			rpc_dispatch_http_refused(r->r_cs->cs_rpc, 0);
			creq_end(r, NNG_ETIMEDOUT);
			return;
		}
		memcpy(r->r_body, r->r_direct_body, r->r_len);
		body_done(r);
		return;
	}
	iov.iov_buf = r->r_body;
	iov.iov_len = r->r_len;
	nng_aio_set_iov(r->r_body_aio, 1, &iov);
	nng_aio_set_timeout(r->r_body_aio, (nng_duration) r->r_cs->cs_read_timeout_ms);
	nng_http_conn_read_all(r->r_conn, r->r_body_aio);
}

static void request_start(connect_server *cs, creq *r, nng_http_req *req);

/* nng's handler callback, on an nng thread: every request to the listener. */
static void
http_cb(nng_aio *aio)
{
	nng_http_req     *req  = nng_aio_get_input(aio, 0);
	nng_http_handler *h    = nng_aio_get_input(aio, 1);
	nng_http_conn    *conn = nng_aio_get_input(aio, 2);
	connect_server   *cs   = nng_http_handler_get_data(h);
	const char       *uri  = nng_http_req_get_uri(req);
	bool              closing;
	nng_http_res     *res;
	creq             *r;

	if (!cs_enter(cs, &closing)) {
		/* Every request holds a place while it is answered; none left: refused at once,
		 * through nng's own write (nothing of ours is allocated). */
		res = closing
		    ? connect_res_error(cs, HV_UNAVAILABLE, 0, "server is shutting down", true)
		    : connect_res_error(cs, HV_RESOURCE_EXHAUSTED, 0, "too many HTTP calls at once",
		          true);
		if (res == NULL) {
			nng_aio_finish(aio, NNG_ENOMEM);
			return;
		}
		rpc_dispatch_http_refused(cs->cs_rpc, nng_http_res_get_status(res));
		nng_aio_set_output(aio, 0, res);
		nng_aio_finish(aio, 0);
		return;
	}
	if (connect_events_path(uri)) {
		connect_events_start(cs, aio, req, conn); /* a stream: connect_events.c */
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		nng_aio_finish(aio, NNG_ENOMEM);
		cs_leave(cs);
		return;
	}
	r->r_http = aio;
	r->r_conn = conn;
	request_start(cs, r, req);
}

/* A request past its place (cs_enter) and the /events check: a web file, or the headers'
 * checks and then the body and the call. r has its connection (or r_direct) set. */
static void
request_start(connect_server *cs, creq *r, nng_http_req *req)
{
	const char   *uri     = nng_http_req_get_uri(req);
	bool          session = strcmp(uri, "/session") == 0;
	bool          web     = !connect_rpc_path(uri) && !session;
	bool          oom;
	nng_http_res *res;

	r->r_cs      = cs;
	r->r_req     = req;
	r->r_session = session;
	arena_init(&r->r_call.c_arena, cs->cs_rpc->sv_opts.call_budget);
	r->r_call.c_srv = cs->cs_rpc;
	if (web) {
		/* Its body, if any, is not read: the connection closes after the answer. */
		r->r_close = nng_http_req_get_header(req, "Content-Length") != NULL ||
		    nng_http_req_get_header(req, "Transfer-Encoding") != NULL;
		creq_finish(r, connect_web_answer(cs, req));
		return;
	}
	res = session ? session_headers(cs, r, &oom) : rpc_headers(cs, r, &oom);
	if (res != NULL || oom) {
		/* Answered before any call began: counted by status (haven_http_refused_total). */
		if (res != NULL) {
			rpc_dispatch_http_refused(cs->cs_rpc, nng_http_res_get_status(res));
		}
		creq_finish(r, res);
		return;
	}
	body_start(r);
}

bool
connect_request_direct(connect_server *cs, nng_http_req *req, const void *body, size_t len,
    connect_answer_fn done, void *arg)
{
	bool  closing;
	creq *r;

	if (connect_events_path(nng_http_req_get_uri(req)) || !cs_enter(cs, &closing)) {
		return (false);
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		cs_leave(cs);
		return (false);
	}
	r->r_direct      = done;
	r->r_direct_arg  = arg;
	r->r_direct_body = body;
	r->r_direct_len  = len;
	request_start(cs, r, req);
	return (true);
}

/* ---- the server ---------------------------------------------------------------------------- */

hv_status
connect_check_listen(const char *listen, bool tls, char *err, size_t errsz)
{
	bool        https;
	const char *hp;

	return (connect_listen_parse(listen, tls, &https, &hp, err, errsz));
}

static void
handler_dtor(void *arg)
{
	(void) arg; /* connect_server_stop frees the server after nng let go of the handler */
}

static hv_status
tls_config(connect_server *cs, const connect_options *o)
{
	int rv;

	if (o->tls_cert_file == NULL || o->tls_key_file == NULL) {
		log_error("connect: HTTPS needs the node's tls_cert and tls_key");
		return (HV_INVALID_ARGUMENT);
	}
	if ((rv = nng_tls_config_alloc(&cs->cs_tls, NNG_TLS_MODE_SERVER)) != 0 ||
	    (rv = nng_tls_config_auth_mode(cs->cs_tls, NNG_TLS_AUTH_MODE_NONE)) != 0 ||
	    (rv = rpc_tls_own_cert(cs->cs_tls, o->tls_cert_file, o->tls_key_file)) != 0 ||
	    (rv = nng_http_server_set_tls(cs->cs_http, cs->cs_tls)) != 0) {
		log_error("connect: TLS configuration failed: %s", nng_strerror(rv));
		return (HV_INVALID_ARGUMENT);
	}
	return (HV_OK);
}

hv_status
connect_server_start(connect_server **out, rpc_server *srv, const connect_options *opts)
{
	connect_server *cs  = NULL;
	nng_url        *url = NULL;
	nng_sockaddr    sa;
	const char     *hp;
	char            err[256], buf[300];
	bool            https;
	size_t          total = 0;
	hv_status       st;
	int             rv;

	if (out == NULL || srv == NULL || opts == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if ((st = connect_listen_parse(opts->listen, opts->tls_cert_file != NULL, &https, &hp, err,
	         sizeof(err))) != HV_OK) {
		log_error("connect: %s", err);
		return (st);
	}
	if ((st = connect_proxy_check(opts->trusted_proxy, hp, err, sizeof(err))) != HV_OK) {
		log_error("connect: %s", err);
		return (st);
	}
	if ((cs = calloc(1, sizeof(*cs))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	cs->cs_trusted_proxy   = opts->trusted_proxy != NULL && opts->trusted_proxy[0] != '\0';
	cs->cs_rpc             = srv;
	cs->cs_is_tls          = https;
	cs->cs_max_body        = srv->sv_opts.max_msg;
	cs->cs_read_timeout_ms = opts->read_timeout_ms != 0 ? opts->read_timeout_ms : 10000;
	cs->cs_max_inflight    = opts->max_inflight != 0 ? opts->max_inflight : 256;
	pthread_mutex_init(&cs->cs_mtx, NULL);
	(void) hv_clock_cond_init(&cs->cs_idle_cv); /* timed waits on CLOCK_MONOTONIC */
	if (opts->web_dir != NULL &&
	    (st = connect_web_load(cs, opts->web_dir, "", 0, &total)) != HV_OK) {
		if (st != HV_NOT_FOUND) {
			goto fail;
		}
		log_info("connect: no web directory %s: GET answers 404", opts->web_dir);
	}
	st = HV_INVALID_ARGUMENT;
	snprintf(buf, sizeof(buf), "%s://%s", https ? "https" : "http", hp);
	if ((rv = nng_url_parse(&url, buf)) != 0 ||
	    (rv = nng_http_server_hold(&cs->cs_http, url)) != 0) {
		log_error("connect: cannot serve on %s: %s", buf, nng_strerror(rv));
		goto fail;
	}
	if (https && (st = tls_config(cs, opts)) != HV_OK) {
		goto fail;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if (nng_http_handler_alloc(&cs->cs_handler, "/", http_cb) != 0 ||
	    nng_http_handler_set_tree(cs->cs_handler) != 0 ||
	    nng_http_handler_set_method(cs->cs_handler, NULL) != 0 ||
	    nng_http_handler_collect_body(cs->cs_handler, false, 0) != 0 ||
	    nng_http_handler_set_data(cs->cs_handler, cs, handler_dtor) != 0) {
		goto fail;
	}
	if (nng_http_server_add_handler(cs->cs_http, cs->cs_handler) != 0) {
		log_error("connect: %s is served already", buf);
		st = HV_ALREADY_EXISTS;
		goto fail;
	}
	cs->cs_attached = true;
	if ((rv = nng_http_server_start(cs->cs_http)) != 0) {
		log_error("connect: cannot listen on %s: %s", buf, nng_strerror(rv));
		st = rv == NNG_EADDRINUSE ? HV_ALREADY_EXISTS : hv_status_from_nng(rv);
		goto fail;
	}
	cs->cs_started = true;
	if (nng_http_server_get_addr(cs->cs_http, &sa) == 0) {
		if (sa.s_family == NNG_AF_INET) {
			cs->cs_port = ntohs(sa.s_in.sa_port);
		} else if (sa.s_family == NNG_AF_INET6) {
			cs->cs_port = ntohs(sa.s_in6.sa_port);
		}
	}
	if (cs->cs_port == 0) {
		cs->cs_port = atoi(url->u_port);
	}
	nng_url_free(url);
	log_info("connect: serving the Connect API on %s://%s (port %d, %zu static files; %s)",
	    https ? "https" : "http", hp, cs->cs_port, cs->cs_nweb,
	    cs->cs_trusted_proxy ? "client addresses from the trusted proxy's X-Forwarded-For"
	                         : "no client addresses: rate limits are overall only");
	*out = cs;
	return (HV_OK);
fail:
	if (url != NULL) {
		nng_url_free(url);
	}
	connect_server_stop(cs);
	return (st);
}

int
connect_server_port(const connect_server *cs)
{
	return (cs != NULL ? cs->cs_port : 0);
}

bool
connect_server_tls(const connect_server *cs)
{
	return (cs != NULL && cs->cs_is_tls);
}

void
connect_server_stop(connect_server *cs)
{
	struct timespec until;

	if (cs == NULL) {
		return;
	}
	/* New requests are answered UNAVAILABLE; those in flight get up to 10 s to be answered
	 * on their connections. Then nng's server stops (closing the connections), and the calls
	 * still in the dispatch are waited for: they hold cs. The RPC server's workers still run
	 * (it closes after this). */
	hv_clock_deadline(&until, 10000);
	pthread_mutex_lock(&cs->cs_mtx);
	cs->cs_closing = true;
	while (cs->cs_inflight > 0 &&
	    pthread_cond_timedwait(&cs->cs_idle_cv, &cs->cs_mtx, &until) == 0) {
	}
	pthread_mutex_unlock(&cs->cs_mtx);
	if (cs->cs_http != NULL) {
		if (cs->cs_attached &&
		    nng_http_server_del_handler(cs->cs_http, cs->cs_handler) == 0) {
			cs->cs_attached = false;
		}
		if (cs->cs_started) {
			nng_http_server_stop(cs->cs_http);
		}
	}
	pthread_mutex_lock(&cs->cs_mtx);
	while (cs->cs_inflight > 0) {
		pthread_cond_wait(&cs->cs_idle_cv, &cs->cs_mtx);
	}
	pthread_mutex_unlock(&cs->cs_mtx);
	if (cs->cs_http != NULL) {
		nng_http_server_release(cs->cs_http);
	}
	if (cs->cs_handler != NULL && !cs->cs_attached) {
		nng_http_handler_free(cs->cs_handler);
	}
	if (cs->cs_tls != NULL) {
		nng_tls_config_free(cs->cs_tls);
	}
	for (size_t i = 0; i < cs->cs_nweb; i++) {
		free(cs->cs_web[i].wf_path);
		free(cs->cs_web[i].wf_data);
	}
	free(cs->cs_web);
	pthread_cond_destroy(&cs->cs_idle_cv);
	pthread_mutex_destroy(&cs->cs_mtx);
	free(cs);
}
