/*
 * connect_internal.h - what connect.c (requests, calls, the server), connect_events.c (GET
 * /events) and connect_http.c (HTTP answers, cookies and origins, static files, addresses)
 * share; private to libhaven. connect.c calls the other two, never the other way round.
 */
#ifndef HAVEN_CONNECT_INTERNAL_H
#define HAVEN_CONNECT_INTERNAL_H

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdatomic.h>

#include "haven/connect.h"
#include "rpc_dispatch.h"

#define CSP_API "default-src 'none'; frame-ancestors 'none'"
#define CSP_WEB                                                                                    \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "             \
	"frame-ancestors 'none'"
#define HSTS             "max-age=31536000; includeSubDomains"
#define CT_JSON          "application/json"
#define CT_PROTO         "application/proto"
#define COOKIE_SESSION   "haven_session"
#define COOKIE_CSRF      "haven_csrf"
#define CSRF_BYTES       32
#define WEB_FILES_MAX    1024
#define WEB_DEPTH_MAX    6
#define CT_EVENTS        "text/event-stream"
#define SSE_POLL_MS      500   /* a stream's WatchEvents poll, and session re-check */
#define SSE_HEARTBEAT_MS 15000 /* a comment line when nothing else was written */
#define SSE_MAX          64    /* event streams open at once on the listener */
#define SSE_PER_ORG      8     /* ... and for one organisation (its people's tabs) */

typedef struct web_file {
	char       *wf_path; /* "/index.html" */
	char       *wf_data;
	size_t      wf_len;
	const char *wf_type;
} web_file;

struct connect_server {
	rpc_server       *cs_rpc;
	nng_http_server  *cs_http;
	nng_http_handler *cs_handler;
	nng_tls_config   *cs_tls;
	bool              cs_attached;
	bool              cs_started;
	bool              cs_is_tls;
	int               cs_port;
	uint32_t          cs_read_timeout_ms;
	unsigned          cs_max_inflight;
	size_t            cs_max_body;
	bool              cs_trusted_proxy; /* X-Forwarded-For names the client (connect.h) */

	web_file *cs_web;
	size_t    cs_nweb;

	pthread_mutex_t    cs_mtx;
	pthread_cond_t     cs_idle_cv;
	unsigned           cs_inflight; /* requests between http_cb and their aio's completion */
	bool               cs_closing;
	atomic_ullong      cs_request_ids;
	struct sse_stream *cs_streams; /* GET /events streams open (connect_events.c), cs_mtx */
	unsigned           cs_nstreams;
};

typedef enum body_kind { BODY_JSON, BODY_PROTO } body_kind;

/* One HTTP request in flight (an RPC call or a /session request). */
typedef struct creq {
	connect_server *r_cs;
	nng_aio        *r_http; /* nng's handler aio: completed once, with the response */
	nng_http_req   *r_req;
	nng_http_conn  *r_conn;
	nng_aio        *r_body_aio;  /* our read of the body */
	nng_aio        *r_write_aio; /* our write of the whole answer */
	char           *r_out;       /* the answer, status line to body */
	body_kind       r_kind;
	char           *r_body;
	size_t          r_len;
	bool            r_close;   /* answer with Connection: close (body not read) */
	bool            r_session; /* POST /session */
	size_t          r_out_len;
	/* connect_request_direct: the answer goes to r_direct instead of a connection */
	void (*r_direct)(void *arg, const char *answer, size_t len);
	void       *r_direct_arg;
	const void *r_direct_body;
	size_t      r_direct_len;
	rpc_call    r_call; /* last: holds the arena */
} creq;

/* A request holds a place while it is answered, an RPC call (connect.c) or an event stream
 * (connect_events.c); connect_server_stop waits until none is held. cs_enter: false when none
 * is left, or the server is closing (*closing says which). Here, below both files, so that
 * neither calls the other for it. */
static inline bool
cs_enter(connect_server *cs, bool *closing)
{
	bool ok;

	pthread_mutex_lock(&cs->cs_mtx);
	*closing = cs->cs_closing;
	ok       = !cs->cs_closing && cs->cs_inflight < cs->cs_max_inflight;
	if (ok) {
		cs->cs_inflight++;
	}
	pthread_mutex_unlock(&cs->cs_mtx);
	return (ok);
}

static inline void
cs_leave(connect_server *cs)
{
	pthread_mutex_lock(&cs->cs_mtx);
	if (--cs->cs_inflight == 0) {
		pthread_cond_broadcast(&cs->cs_idle_cv);
	}
	pthread_mutex_unlock(&cs->cs_mtx);
}

/* connect.c: one request handled as nng's handler callback handles it, without a connection
 * (fuzz/fuzz_http.c): req as nng's parser made it, and body, the len bytes that followed its
 * headers (the handler takes what Content-Length says; fewer is a client that never sent the
 * rest, answered by nothing). done(arg, answer, n) runs exactly once, maybe on a worker
 * thread, with the answer as it would be written (status line to body), or NULL when there is
 * none (out of memory, an unsent body); answer lives until done returns. req and body stay
 * the caller's and must live until then. false (done never called) for GET /events (a stream
 * needs a connection) and when no place is left or the server is closing. */
typedef void (*connect_answer_fn)(void *arg, const char *answer, size_t len);
bool connect_request_direct(connect_server *cs, nng_http_req *req, const void *body, size_t len,
    connect_answer_fn done, void *arg);

/* connect_events.c: GET /events (Server-Sent Events) */
bool connect_events_path(const char *uri);
/* Takes the request (its place taken with cs_enter): answers or streams, then cs_leave. */
void connect_events_start(connect_server *cs, nng_aio *aio, nng_http_req *req, nng_http_conn *conn);

/* connect_http.c */
int           connect_secure_headers(connect_server *cs, nng_http_res *res, bool api);
nng_http_res *connect_res_make(connect_server *cs, uint16_t status, bool api, const char *type,
    const void *body, size_t len, bool close);
nng_http_res *connect_res_error(connect_server *cs, hv_status code, uint16_t http, const char *msg,
    bool close);
bool          connect_cookie_get(const char *header, const char *name, char *out, size_t outsz);
bool          connect_same_origin(connect_server *cs, nng_http_req *req);
bool          connect_rpc_path(const char *uri);
bool          connect_body_kind(const char *ct, body_kind *out);
/* The client's address of X-Forwarded-For (its last entry) as bytes for limit_source: an
 * IPv4 address's 4, an IPv6 address's first 8 (its /64: one machine's share); 0 when the
 * header is missing or its last entry is not an address. */
size_t connect_forwarded_addr(const char *xff, uint8_t out[16]);
/* Checks opts->trusted_proxy against the listener (connect.h); err names the problem. */
hv_status     connect_proxy_check(const char *proxy, const char *hostport, char *err, size_t errsz);
hv_status     connect_listen_parse(const char *listen, bool tls, bool *https, const char **hostport,
        char *err, size_t errsz);
hv_status     connect_web_load(connect_server *cs, const char *dir, const char *rel, unsigned depth,
        size_t *total);
nng_http_res *connect_web_answer(connect_server *cs, nng_http_req *req);
/* The whole answer res as bytes (status line, headers, Content-Length, body unless head), in
 * a malloc'd buffer; NULL when memory runs out. *close is set when it says Connection: close. */
char *connect_res_bytes(nng_http_res *res, bool head, size_t *len, bool *close);

/* Connect-Timeout-Ms: 1 to 10 digits (the protocol's form) into *out; 0 when v is NULL (absent),
 * INVALID_ARGUMENT otherwise. */
hv_status connect_parse_timeout(const char *v, uint32_t *out);

#endif
