/*
 * connect_events.c - GET /events: the caller organisation's alert events as Server-Sent
 * Events on the Connect listener (docs/alerts.md, "Server-Sent Events").
 *
 * A stream is a loop of WatchEvents calls through the same dispatch as every Connect call
 * (method, identity, roles, payload, handler, record): each poll re-checks the caller's
 * session or bearer token, so a logout, a revoked session or a disabled person or
 * organisation ends the stream at the next poll (SSE_POLL_MS), and what the stream carries is
 * exactly what WatchEvents answers that caller (its organisation's events, no personal data).
 * Polls ask max_wait_ms 0, so a stream never holds one of the dispatch's workers while it
 * waits; between polls it sleeps on an nng aio. A poll is marked as background activity
 * (RPC_MD_ACTIVITY): it checks a person's session without holding off its idle timeout, so
 * an open page whose person went away ends with "event: end" at the idle timeout (and at the
 * absolute one), like every other use of that session.
 *
 * The connection. nng's handler aio stays pending for the stream's life (as for any answer of
 * ours, connect.c): we write the header block (no Content-Length, Connection: close) and then
 * the events on the connection ourselves, one write at a time, and complete nng's aio with an
 * error at the end so that nng closes the connection. A stream holds one of the listener's
 * in-flight places (cs_inflight) and one of SSE_MAX (SSE_PER_ORG per organisation): beyond
 * those, 503. A client that does not read is cut off after the listener's read timeout.
 *
 * One operation of a stream runs at a time (poll -> write -> sleep -> poll), so a stream's
 * fields need no lock; the list of streams and their counts are under cs_mtx.
 */
#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/pbjson.h"

#include "connect_internal.h"
#include "rpc_dispatch.h"
#include "rpc_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SSE_METHOD "haven.alerts.v1.Alerts/WatchEvents"

typedef struct sse_stream sse_stream;
struct sse_stream {
	connect_server *s_cs;
	sse_stream     *s_next; /* cs_streams */
	nng_aio        *s_http; /* nng's handler aio: completed once, at the end */
	nng_http_req   *s_req;
	nng_http_conn  *s_conn;
	nng_aio        *s_write;               /* our writes on the connection */
	nng_aio        *s_sleep;               /* the wait between polls */
	char           *s_token;               /* the credential, wiped at the end */
	char            s_org[RPC_ORG_ID_MAX]; /* the caller's organisation, from the first poll */
	char     s_qorg[RPC_ORG_ID_MAX]; /* ?org=: for callers without one (operator, admin) */
	uint64_t s_cursor;
	int64_t  s_last_write_ms; /* monotonic: for the heartbeat */
	bool     s_open;          /* the 200 header block is out */
	bool     s_counted;       /* counted in its organisation's streams */
	bool     s_ending;        /* the write in progress is the last */
	char    *s_out;
	rpc_call s_call; /* last: holds the arena */
};

static void sse_poll(sse_stream *s);

static bool
sse_closing(connect_server *cs)
{
	bool closing;

	pthread_mutex_lock(&cs->cs_mtx);
	closing = cs->cs_closing;
	pthread_mutex_unlock(&cs->cs_mtx);
	return (closing);
}

/* ---- the end of a stream ------------------------------------------------------------------ */

static void
sse_end(sse_stream *s)
{
	connect_server *cs   = s->s_cs;
	nng_aio        *http = s->s_http;

	pthread_mutex_lock(&cs->cs_mtx);
	for (sse_stream **p = &cs->cs_streams; *p != NULL; p = &(*p)->s_next) {
		if (*p == s) {
			*p = s->s_next;
			break;
		}
	}
	cs->cs_nstreams--;
	pthread_mutex_unlock(&cs->cs_mtx);
	if (s->s_write != NULL) {
		nng_aio_reap(s->s_write); /* also from its own callback */
	}
	if (s->s_sleep != NULL) {
		nng_aio_reap(s->s_sleep);
	}
	if (s->s_token != NULL) {
		crypto_wipe(s->s_token, strlen(s->s_token));
		free(s->s_token);
	}
	arena_reset(&s->s_call.c_arena);
	free(s->s_out);
	free(s);
	nng_aio_set_output(http, 0, NULL);
	nng_aio_finish(http, NNG_ECLOSED); /* nng closes the connection */
	cs_leave(cs);
}

static void
sse_write_cb(void *arg)
{
	sse_stream *s = arg;

	free(s->s_out);
	s->s_out = NULL;
	if (nng_aio_result(s->s_write) != 0 || s->s_ending) {
		sse_end(s);
		return;
	}
	s->s_last_write_ms = hv_clock_mono_ms();
	nng_sleep_aio(SSE_POLL_MS, s->s_sleep);
}

/* Writes text (malloc'd, consumed) on the connection; then the next poll, or the end. */
static void
sse_write(sse_stream *s, char *text, size_t len, bool last)
{
	nng_iov iov;

	if (text == NULL) {
		sse_end(s);
		return;
	}
	s->s_out    = text;
	s->s_ending = last;
	iov.iov_buf = text;
	iov.iov_len = len;
	nng_aio_set_iov(s->s_write, 1, &iov);
	nng_aio_set_timeout(s->s_write, (nng_duration) s->s_cs->cs_read_timeout_ms);
	nng_http_conn_write_all(s->s_conn, s->s_write);
}

/* An answer instead of a stream (an error before the stream opened). */
static void
sse_refuse(sse_stream *s, nng_http_res *res)
{
	size_t len   = 0;
	bool   close = false;
	char  *text  = res != NULL ? connect_res_bytes(res, false, &len, &close) : NULL;

	if (res != NULL) {
		nng_http_res_free(res);
	}
	sse_write(s, text, len, true);
}

/* ---- events ------------------------------------------------------------------------------- */

/* Appends "id: SEQ\ndata: {json}\n\n" for each event of a WatchEvents reply (its canonical
 * JSON) to *buf, and moves the cursor. */
static hv_status
sse_events(sse_stream *s, const ProtobufCMessage *reply, char **buf, size_t *len)
{
	char     *json = NULL, err[PBJSON_ERR_SIZE];
	size_t    n    = 0;
	json_t   *o, *evs, *ev;
	size_t    i;
	hv_status st;

	if ((st = pbjson_encode(reply, NULL, &json, &n, err, sizeof(err))) != HV_OK) {
		return (st);
	}
	o = json_loadb(json, n, 0, NULL);
	free(json);
	if (o == NULL) {
		return (HV_INTERNAL);
	}
	evs = json_object_get(o, "events");
	json_array_foreach(evs, i, ev)
	{
		const char *seq  = json_string_value(json_object_get(ev, "seq"));
		char       *data = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
		size_t      add  = data != NULL ? strlen(data) + 64 : 0;
		char       *nb   = data != NULL ? realloc(*buf, *len + add + 1) : NULL;

		if (nb == NULL) {
			free(data);
			json_decref(o);
			return (HV_RESOURCE_EXHAUSTED);
		}
		*buf = nb;
		*len += (size_t) snprintf(nb + *len, add + 1, "id: %s\ndata: %s\n\n",
		    seq != NULL ? seq : "0", data);
		free(data);
	}
	{
		const char *cur = json_string_value(json_object_get(o, "cursor"));
		if (cur != NULL) {
			s->s_cursor = strtoull(cur, NULL, 10);
		}
	}
	json_decref(o);
	return (HV_OK);
}

/* The header block of the stream, and its first line: how long a browser waits to reconnect. */
static char *
sse_open(sse_stream *s, size_t *len)
{
	nng_http_res *res = connect_res_make(s->s_cs, 200, true, CT_EVENTS, NULL, 0, true);
	size_t        hl  = 0;
	bool          close;
	char         *head, *out;

	if (res == NULL || (head = connect_res_bytes(res, false, &hl, &close)) == NULL) {
		if (res != NULL) {
			nng_http_res_free(res);
		}
		return (NULL);
	}
	nng_http_res_free(res);
	/* connect_res_bytes ends the block with "Content-Length: 0\r\n\r\n": a stream has none
	 * (its body runs until the connection closes). */
	{
		const char *cl = strstr(head, "Content-Length: 0\r\n");
		if (cl == NULL || (out = malloc(hl + 32)) == NULL) {
			free(head);
			return (NULL);
		}
		*len = (size_t) (cl - head);
		memcpy(out, head, *len);
		*len += (size_t) snprintf(out + *len, 32, "\r\nretry: 2000\n\n");
	}
	free(head);
	return (out);
}

/* The dispatch's completion of a poll, on a worker thread. */
static void
sse_reply(rpc_call *call, hv_status code, const ProtobufCMessage *reply)
{
	sse_stream     *s       = call->c_transport;
	connect_server *cs      = s->s_cs;
	rpc_server     *srv     = cs->cs_rpc;
	char           *buf     = NULL;
	size_t          len     = 0;
	bool            refused = false;

	code = rpc_dispatch_check_reply(call, code, reply);
	if (code == HV_OK && !s->s_open) {
		/* The first poll names the caller's organisation: its streams are bounded. */
		unsigned n = 0;
		pthread_mutex_lock(&cs->cs_mtx);
		snprintf(s->s_org, sizeof(s->s_org), "%s",
		    s->s_qorg[0] != '\0' ? s->s_qorg : call->c_caller.org_id);
		for (sse_stream *o = cs->cs_streams; o != NULL; o = o->s_next) {
			n += o->s_counted && strcmp(o->s_org, s->s_org) == 0;
		}
		refused      = n >= SSE_PER_ORG;
		s->s_counted = !refused;
		pthread_mutex_unlock(&cs->cs_mtx);
	}
	if (code == HV_OK && refused) {
		rpc_dispatch_record(srv, call, code);
		sse_refuse(s,
		    connect_res_error(cs, HV_UNAVAILABLE, 503,
		        "too many event streams for this organisation", true));
		rpc_dispatch_end(srv);
		return;
	}
	if (code != HV_OK) {
		rpc_dispatch_record(srv, call, code);
		if (!s->s_open) {
			sse_refuse(s,
			    connect_res_error(cs, code, 0, rpc_dispatch_errmsg(call, code), true));
		} else if (code == HV_RESOURCE_EXHAUSTED && !sse_closing(cs)) {
			nng_sleep_aio(SSE_POLL_MS,
			    s->s_sleep); /* the workers' queue was full: again */
		} else {
			/* The session ended (or the node stops): the last event says so, and ends.
			 */
			char *t = malloc(160);
			if (t != NULL) {
				len = (size_t) snprintf(t, 160,
				    "event: end\ndata: {\"code\":\"%s\"}\n\n",
				    hv_status_name(code));
			}
			sse_write(s, t, len, true);
		}
		rpc_dispatch_end(srv);
		return;
	}
	if (!s->s_open && (buf = sse_open(s, &len)) == NULL) {
		code = HV_RESOURCE_EXHAUSTED;
	}
	s->s_open = true;
	if (code == HV_OK) {
		code = sse_events(s, reply, &buf, &len);
	}
	rpc_dispatch_record(srv, call, code);
	rpc_dispatch_end(srv);
	if (code != HV_OK) {
		free(buf);
		sse_end(s);
		return;
	}
	if (len == 0 && hv_clock_mono_ms() - s->s_last_write_ms >= SSE_HEARTBEAT_MS) {
		buf = strdup(": heartbeat\n\n");
		len = buf != NULL ? strlen(buf) : 0;
		if (buf == NULL) {
			sse_end(s);
			return;
		}
	}
	if (len > 0) {
		sse_write(s, buf, len, false);
		return;
	}
	nng_sleep_aio(SSE_POLL_MS, s->s_sleep);
}

/* The call's c_prepare: the WatchEvents request (the caller's organisation, or ?org=). */
static hv_status
sse_payload(rpc_call *call)
{
	sse_stream *s = call->c_transport;
	char        json[RPC_ORG_ID_MAX + 96];
	int         n;

	n = snprintf(json, sizeof(json), "{\"orgId\":\"%s\",\"after\":\"%llu\",\"pageSize\":200}",
	    s->s_qorg, (unsigned long long) s->s_cursor);
	return (rpc_dispatch_payload_json(call->c_srv, call, json, (size_t) n));
}

/* One WatchEvents call through the dispatch, with the stream's credential. */
static void
sse_poll(sse_stream *s)
{
	connect_server            *cs   = s->s_cs;
	rpc_server                *srv  = cs->cs_rpc;
	rpc_call                  *call = &s->s_call;
	Haven__Rpc__V1__Request   *env;
	Haven__Rpc__V1__Metadata **md;
	hv_status                  st = HV_RESOURCE_EXHAUSTED;

	if (sse_closing(cs)) { /* the node stops: no call, the stream ends */
		static const char end[] = "event: end\ndata: {\"code\":\"UNAVAILABLE\"}\n\n";
		if (!s->s_open) {
			sse_refuse(s,
			    connect_res_error(cs, HV_UNAVAILABLE, 0, "server is shutting down",
			        true));
		} else {
			sse_write(s, strdup(end), sizeof(end) - 1, true);
		}
		return;
	}
	arena_reset(&call->c_arena);
	rpc_dispatch_begin(srv, call);
	call->c_reply     = sse_reply;
	call->c_transport = s;
	if ((env = rpc_call_alloc(call, sizeof(*env))) == NULL ||
	    (md = rpc_call_alloc(call, 2 * sizeof(*md))) == NULL ||
	    (md[0] = rpc_call_alloc(call, sizeof(**md))) == NULL ||
	    (md[1] = rpc_call_alloc(call, sizeof(**md))) == NULL) {
		rpc_dispatch_fail(call, st);
		return;
	}
	haven__rpc__v1__request__init(env);
	haven__rpc__v1__metadata__init(md[0]);
	haven__rpc__v1__metadata__init(md[1]);
	call->c_env          = env;
	env->request_id      = atomic_fetch_add(&cs->cs_request_ids, 1) + 1;
	env->method          = SSE_METHOD;
	env->timeout_ms      = 5000;
	env->idempotency_key = "";
	md[0]->key           = "authorization";
	md[0]->value         = s->s_token;
	md[1]->key           = RPC_MD_ACTIVITY; /* a poll is no person's act (rpc.h) */
	md[1]->value         = RPC_ACTIVITY_BACKGROUND;
	env->metadata        = md;
	env->n_metadata      = 2;
	if ((st = rpc_dispatch_method(srv, call)) != HV_OK ||
	    (st = rpc_dispatch_check_envelope(srv, call)) != HV_OK ||
	    (st = rpc_dispatch_identify(srv, call, RPC_TRANSPORT_HTTP, false)) != HV_OK ||
	    (st = rpc_dispatch_authorize(srv, call)) != HV_OK) {
		rpc_dispatch_fail(call, st);
		return;
	}
	call->c_prepare = sse_payload;
	rpc_dispatch_submit(srv, call);
}

static void
sse_sleep_cb(void *arg)
{
	sse_poll(arg);
}

/* ---- the request -------------------------------------------------------------------------- */

/* The stream's credential: a bearer header, else the session cookie from a same-origin page
 * (a GET changes nothing: no CSRF token is asked). NULL with *msg set when there is none. */
static char *
sse_credential(connect_server *cs, nng_http_req *req, const char **msg, hv_status *code)
{
	const char *authz  = nng_http_req_get_header(req, "Authorization");
	const char *cookie = nng_http_req_get_header(req, "Cookie");
	char        sess[AUTH_TOKEN_MAX + 1];
	char       *tok;

	*code = HV_UNAUTHENTICATED;
	if (authz != NULL) {
		if (strncasecmp(authz, "Bearer ", 7) != 0 || authz[7] == '\0' ||
		    strlen(authz + 7) > AUTH_TOKEN_MAX) {
			*msg = "Authorization must be a Bearer token";
			return (NULL);
		}
		return (strdup(authz + 7));
	}
	if (cookie == NULL || !connect_cookie_get(cookie, COOKIE_SESSION, sess, sizeof(sess))) {
		*msg = "an event stream needs a session cookie or a Bearer token";
		return (NULL);
	}
	if (!connect_same_origin(cs, req)) {
		crypto_wipe(sess, sizeof(sess));
		*code = HV_PERMISSION_DENIED;
		*msg  = "cross-origin request refused";
		return (NULL);
	}
	tok = strdup(sess);
	crypto_wipe(sess, sizeof(sess));
	return (tok);
}

/* The query (?after=N&org=ID, either optional) and Last-Event-ID (which wins over after). */
static bool
sse_query(sse_stream *s, const char *uri, const char *last_id)
{
	const char *q = strchr(uri, '?');

	for (q = q != NULL ? q + 1 : NULL; q != NULL && *q != '\0';) {
		size_t n = strcspn(q, "&#");
		if (n > 6 && strncmp(q, "after=", 6) == 0 && n - 6 <= 20 &&
		    strspn(q + 6, "0123456789") == n - 6) {
			s->s_cursor = strtoull(q + 6, NULL, 10);
		} else if (n > 4 && strncmp(q, "org=", 4) == 0 && n - 4 < sizeof(s->s_qorg) &&
		    strspn(q + 4, "abcdefghijklmnopqrstuvwxyz0123456789-_.") == n - 4) {
			memcpy(s->s_qorg, q + 4, n - 4);
			s->s_qorg[n - 4] = '\0';
		} else {
			return (false);
		}
		q += n;
		if (*q != '&') {
			break;
		}
		q++;
	}
	if (last_id != NULL) {
		if (last_id[0] == '\0' || strlen(last_id) > 20 ||
		    strspn(last_id, "0123456789") != strlen(last_id)) {
			return (false);
		}
		s->s_cursor = strtoull(last_id, NULL, 10);
	}
	return (true);
}

bool
connect_events_path(const char *uri)
{
	return (strncmp(uri, "/events", 7) == 0 && (uri[7] == '\0' || uri[7] == '?'));
}

/* Whether the request accepts an event stream: no Accept, or one naming text/event-stream
 * or any type. */
static bool
sse_accepts(nng_http_req *req)
{
	const char *a = nng_http_req_get_header(req, "Accept");

	return (a == NULL || strstr(a, CT_EVENTS) != NULL || strstr(a, "*/*") != NULL);
}

/* Refuses a request before any stream state exists, through nng's own write. */
static void
sse_refuse_early(connect_server *cs, nng_aio *aio, hv_status code, uint16_t http, const char *msg)
{
	nng_http_res *res = connect_res_error(cs, code, http, msg, true);

	if (res == NULL) {
		nng_aio_finish(aio, NNG_ENOMEM);
	} else {
		rpc_dispatch_http_refused(cs->cs_rpc, nng_http_res_get_status(res));
		nng_aio_set_output(aio, 0, res);
		nng_aio_finish(aio, 0);
	}
	cs_leave(cs);
}

void
connect_events_start(connect_server *cs, nng_aio *aio, nng_http_req *req, nng_http_conn *conn)
{
	sse_stream *s;
	const char *msg = NULL;
	hv_status   code;
	bool        full;

	if (strcmp(nng_http_req_get_method(req), "GET") != 0) {
		sse_refuse_early(cs, aio, HV_UNIMPLEMENTED, 405, "GET /events");
		return;
	}
	if (!sse_accepts(req)) {
		sse_refuse_early(cs, aio, HV_INVALID_ARGUMENT, 406,
		    "GET /events answers text/event-stream");
		return;
	}
	if (nng_http_req_get_header(req, "Content-Length") != NULL ||
	    nng_http_req_get_header(req, "Transfer-Encoding") != NULL) {
		sse_refuse_early(cs, aio, HV_INVALID_ARGUMENT, 400, "GET /events has no body");
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		nng_aio_finish(aio, NNG_ENOMEM);
		cs_leave(cs);
		return;
	}
	if (!sse_query(s, nng_http_req_get_uri(req),
	        nng_http_req_get_header(req, "Last-Event-ID"))) {
		free(s);
		sse_refuse_early(cs, aio, HV_INVALID_ARGUMENT, 400,
		    "GET /events takes after=CURSOR and org=ORG, and Last-Event-ID a cursor");
		return;
	}
	if ((s->s_token = sse_credential(cs, req, &msg, &code)) == NULL) {
		free(s);
		sse_refuse_early(cs, aio, msg != NULL ? code : HV_RESOURCE_EXHAUSTED, 0,
		    msg != NULL ? msg : "out of memory");
		return;
	}
	pthread_mutex_lock(&cs->cs_mtx);
	full = cs->cs_nstreams >= SSE_MAX;
	if (!full) {
		cs->cs_nstreams++;
		s->s_next      = cs->cs_streams;
		cs->cs_streams = s;
	}
	pthread_mutex_unlock(&cs->cs_mtx);
	if (full) {
		crypto_wipe(s->s_token, strlen(s->s_token));
		free(s->s_token);
		free(s);
		sse_refuse_early(cs, aio, HV_UNAVAILABLE, 503, "too many event streams open");
		return;
	}
	s->s_cs   = cs;
	s->s_http = aio;
	s->s_req  = req;
	s->s_conn = conn;
	arena_init(&s->s_call.c_arena, cs->cs_rpc->sv_opts.call_budget);
	s->s_call.c_srv = cs->cs_rpc;
	if (nng_aio_alloc(&s->s_write, sse_write_cb, s) != 0 ||
	    nng_aio_alloc(&s->s_sleep, sse_sleep_cb, s) != 0) {
		sse_end(s);
		return;
	}
	s->s_last_write_ms = hv_clock_mono_ms();
	sse_poll(s);
}
