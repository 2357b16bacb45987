/*
 * connect.h - haven's RPC over HTTP/1.1 by the Connect protocol's unary calls.
 *
 *   POST /haven.referral.v1.Referrals/CreateReferral
 *   Content-Type: application/json (proto3 canonical JSON, pbjson.h) or application/proto
 *   Connect-Protocol-Version: 1          (optional; any other value is refused)
 *   Connect-Timeout-Ms: 5000             (optional; the call's deadline, cut to the server's)
 *   Authorization: Bearer <token>        (a session token, exactly as the nng RPC's
 *                                         `authorization` metadata)
 *   Idempotency-Key: <key>               (optional; as the envelope's idempotency key)
 *
 * One dispatch, two transports: every call goes through the same rpc_server (rpc_dispatch.h)
 * as the nng REQ/REP calls: the same method table, identity function, roles, deadlines,
 * limits, worker pool, arena, metrics, log lines and audit. The HTTP callback runs on nng's
 * threads and only checks headers (and decodes a binary body); a JSON body's decode and the
 * handler run on the server's workers, which finish the HTTP request asynchronously.
 *
 * Answers. 200 with the reply in the request's content type; an error is
 * {"code": "permission_denied", "message": "..."} (application/json) with the HTTP status the
 * Connect protocol assigns to the code (400 invalid_argument, failed_precondition,
 * out_of_range; 401 unauthenticated; 403 permission_denied; 404 not_found; 409
 * already_exists, aborted; 429 resource_exhausted; 499 canceled; 501 unimplemented; 503
 * unavailable; 504 deadline_exceeded; 500 the rest). Besides: an RPC path naming no served
 * method is 404 (unimplemented), another verb than POST on an RPC path 405, a content type
 * other than the two 415, a body over max_msg 413 (resource_exhausted), a chunked body 411.
 * Error messages never carry personal data (rpc_call_error's rule).
 *
 * Identity. `Authorization: Bearer <token>`, or else the session cookie `haven_session=<token>`
 * (HttpOnly; Secure; SameSite=Strict; Path=/), both handed to rpc_dispatch_identify as the
 * call's `authorization` metadata. A cookie-authenticated call must also pass the CSRF check:
 * header X-CSRF-Token equal to cookie haven_csrf (double submit), and, when the browser sends
 * them, Origin naming this host and Sec-Fetch-Site "same-origin". Anything else is anonymous:
 * there are no peer credentials over HTTP. POST /session with a bearer token (JSON body
 * {"token": "..."}, same origin) sets the session cookie and answers {"csrfToken": "..."},
 * a fresh random value the page keeps in its haven_csrf cookie (Secure; SameSite=Strict) and
 * sends as X-CSRF-Token (nng joins two Set-Cookie lines into one, so the server sets only the
 * session's); DELETE /session clears the session cookie.
 *
 * Limits. Request body at most the RPC server's max_msg (413 before reading it); the body must
 * arrive within read_timeout_ms of the headers (else the connection is closed); at most
 * max_inflight HTTP calls at once (more get 429 resource_exhausted). libnng 1.5.2's HTTP
 * server reads a request's header section into one 8 KiB buffer and drops the connection of
 * a request whose headers do not fit (that bounds their size and count); it has no deadline
 * for the headers and no connection limit. For a listener reachable from outside put nginx in
 * front (deploy/nginx/haven.conf), which enforces those, with haven on plain HTTP on loopback.
 * Answers are written in one piece by connect.c (connect_res_bytes: nng's own two writes
 * under TLS, with Nagle on, cost each HTTPS answer ~40 ms); a client that does not read its
 * answer within the read timeout is cut off too. An RPC path is "/" + a full method name of the
 * characters of proto names; anything else is a static path.
 *
 * Security headers on every response: X-Content-Type-Options nosniff, Referrer-Policy
 * no-referrer, Cache-Control no-store, X-Frame-Options DENY, Content-Security-Policy
 * "default-src 'none'; frame-ancestors 'none'" on API answers (a strict same-origin policy on
 * the static files), Strict-Transport-Security on HTTPS.
 *
 * Static files. GET (or HEAD) of any other path serves the files under web_dir (loaded into
 * memory at start, at most CONNECT_WEB_MAX bytes, so serving never blocks nng's threads); "/"
 * is index.html. Without web_dir (or without the file): 404.
 */
#ifndef HAVEN_CONNECT_H
#define HAVEN_CONNECT_H

#include <stdbool.h>
#include <stdint.h>

#include "haven/rpc.h"
#include "haven/status.h"

#define CONNECT_WEB_MAX (16u << 20) /* bytes of static files held in memory */

typedef struct connect_options {
	/* "HOST:PORT", "http://HOST:PORT" or "https://HOST:PORT". Bare HOST:PORT is HTTPS when
	 * tls_cert_file is set, else plain HTTP. Plain HTTP only on a loopback address (for a
	 * reverse proxy on the same machine); port 0 takes any free port. */
	const char *listen;
	const char *tls_cert_file; /* the node's certificate and key (PEM); no client cert asked */
	const char *tls_key_file;
	const char *web_dir;         /* static files for GET; NULL: none */
	uint32_t    read_timeout_ms; /* the body must arrive within this; 0: 10000 */
	unsigned    max_inflight;    /* HTTP calls at once; 0: 256 */
	/* The reverse proxy in front ("127.0.0.1", "::1"), whose X-Forwarded-For names the
	 * client; NULL: none, and calls have no source (rpc_call_source). libnng 1.5.2's HTTP
	 * server tells a handler nothing of the peer's address (nni_http_conn_getopt is not
	 * exported), so the proxy cannot be checked per connection: it must be a loopback
	 * address and the listener must be on loopback too, where only this machine (the proxy)
	 * can connect. The last entry of X-Forwarded-For, the one the proxy wrote, is taken. */
	const char *trusted_proxy;
} connect_options;

typedef struct connect_server connect_server;

/* Serves srv's methods over HTTP on opts->listen. srv must be started and outlive the
 * returned server. HV_INVALID_ARGUMENT for a bad address (plain HTTP not on loopback) or TLS
 * files that do not load, HV_ALREADY_EXISTS when the port is taken (logged). */
hv_status connect_server_start(connect_server **out, rpc_server *srv, const connect_options *opts);

/* The TCP port served (the one chosen for port 0); 0 for NULL. */
int connect_server_port(const connect_server *cs);
/* Whether it serves HTTPS. */
bool connect_server_tls(const connect_server *cs);

/* Stops taking requests (new ones get 503 unavailable), gives the calls in flight up to 10 s
 * to be answered on their connections, stops nng's server (closing every connection), waits
 * for calls still in a handler, frees. NULL allowed. Call it before rpc_server_close. */
void connect_server_stop(connect_server *cs);

/* Checks an http_listen value as connect_server_start would (without TLS files: a bare
 * HOST:PORT counts as HTTPS when tls is true). err gets the reason. For configuration. */
hv_status connect_check_listen(const char *listen, bool tls, char *err, size_t errsz);

#endif
