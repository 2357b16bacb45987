/*
 * rpc_dispatch.h - the transport-independent half of the RPC server, private to libhaven.
 *
 * One dispatch, two transports. rpc_dispatch.c owns the method table, the checks before a
 * handler (envelope, method, identity, role, payload, deadline), the bounded worker pool and
 * the bookkeeping of every answered call (metrics, log line, counters). The transports bring
 * calls in and carry replies out:
 *   rpc_nng.c   the nng REQ/REP socket (haven.rpc.v1.Request / Reply envelopes),
 *   connect.c   the Connect protocol over HTTP (JSON or binary bodies).
 *
 * A call's life, whatever the transport:
 *   rpc_dispatch_begin          counts it in flight, resets it, starts its clock
 *   (the transport fills call->c_env: decoded with rpc_dispatch_envelope, or built by it and
 *    checked with rpc_dispatch_check_envelope)
 *   rpc_dispatch_method         the method, or UNIMPLEMENTED
 *   rpc_dispatch_identify       the ONE identity function: authorization metadata, else what
 *                               the transport vouches for (inproc, ipc peer uid)
 *   rpc_dispatch_authorize      the method's roles
 *   rpc_dispatch_payload[_json] the request message (or later, on the worker: c_prepare)
 *   rpc_dispatch_submit         inline or on the worker pool; c_reply always runs once, with
 *                               the handler's status and reply or the refusal
 *   (c_reply: rpc_dispatch_check_reply, encode, send; rpc_dispatch_record once the status
 *    sent is known; rpc_dispatch_end when the transport is done with the call)
 * A status other than HV_OK from any step is given to c_reply through rpc_dispatch_fail.
 */
#ifndef HAVEN_RPC_DISPATCH_H
#define HAVEN_RPC_DISPATCH_H

#include <stdatomic.h>
#include <pthread.h>
#include <sys/types.h>

#include "haven/arena.h"
#include "haven/metrics.h"
#include "haven/rpc.h"
#include "haven/ticker.h"

#include "haven/rpc/v1/rpc.pb-c.h"

#include "rpc_call.h"
#include "rpc_health.h"

typedef struct rpc_nng rpc_nng; /* rpc_nng.c */

struct rpc_server {
	rpc_server_options sv_opts;
	uid_t              sv_uid;
	bool               sv_started;

	rpc_method_entry *sv_methods;
	size_t            sv_nmethods;
	size_t            sv_capmethods;

	rpc_nng *sv_nng; /* the nng transport */

	pthread_mutex_t sv_mtx;
	pthread_cond_t  sv_work_cv; /* workers wait for queued calls */
	pthread_cond_t  sv_idle_cv; /* close waits for in-flight calls */
	rpc_call      **sv_queue;   /* ring buffer of sv_opts.queue entries */
	unsigned        sv_qhead;
	unsigned        sv_qlen;
	/* Calls between begin and end, all transports; atomic, so that a call that never waits
	 * for a worker takes no lock of the server's (rpc_dispatch_end wakes close). */
	atomic_uint sv_inflight;
	atomic_bool sv_closing; /* written under sv_mtx */
	pthread_t  *sv_workers;
	unsigned    sv_nworkers;

	rpc_health sv_health; /* Health/Check's answers (rpc_health.c) */

	atomic_ullong sv_calls;
	atomic_ullong sv_rejected;
	atomic_ullong sv_malformed;

	/* HTTP requests the Connect transport answered before the dispatch, by HTTP status
	 * (rpc_dispatch_http_refused): 400, 404, 405, 411, 413, 415, 429, 503, other; and
	 * request bodies that did not arrive in time. */
	atomic_ullong sv_http_refused[9];
	atomic_ullong sv_http_slow;

	metrics        *sv_metrics;
	metrics_method *sv_unknown; /* method="unknown": names not served, undecodable calls */
};

/* Counts the call in flight and resets it for a new request (the arena is left as is: the
 * transport resets it when the call ends). */
void rpc_dispatch_begin(rpc_server *srv, rpc_call *call);

/* Decodes a haven.rpc.v1.Request envelope from [data, data + len) into the call's arena, with
 * the boundary checks (rpc.h), then rpc_dispatch_check_envelope. */
hv_status rpc_dispatch_envelope(rpc_server *srv, rpc_call *call, const uint8_t *data, size_t len);

/* Checks call->c_env (method name, metadata, idempotency key) and sets the deadline from its
 * timeout (default and maximum of the server's options). */
hv_status rpc_dispatch_check_envelope(rpc_server *srv, rpc_call *call);

/* Finds the method named by the envelope: UNIMPLEMENTED when not served or without handler. */
hv_status rpc_dispatch_method(rpc_server *srv, rpc_call *call);

/* Decides who the caller is: a call carrying `authorization` metadata ("Bearer " prefix
 * allowed) is the session its token names or UNAUTHENTICATED; otherwise local_operator (the
 * transport vouches for it: inproc, ipc peer with the server's uid) gives the operator, and
 * anyone else is anonymous. transport is recorded in the caller. */
hv_status rpc_dispatch_identify(rpc_server *srv, rpc_call *call, rpc_transport transport,
    bool local_operator);

/* PERMISSION_DENIED unless the caller's role may call the method. */
hv_status rpc_dispatch_authorize(rpc_server *srv, rpc_call *call);

/* Decodes env->payload as the method's request type, with the boundary checks. */
hv_status rpc_dispatch_payload(rpc_server *srv, rpc_call *call);

/* Decodes JSON text (proto3 canonical JSON, pbjson.h) as the method's request type into the
 * call's arena. */
hv_status rpc_dispatch_payload_json(rpc_server *srv, rpc_call *call, const char *json, size_t len);

/* Runs the call: UNAVAILABLE while closing, DEADLINE_EXCEEDED when its deadline passed, the
 * handler at once when inline, else on a worker (RESOURCE_EXHAUSTED when the queue is full).
 * call->c_reply runs exactly once for it. */
void rpc_dispatch_submit(rpc_server *srv, rpc_call *call);

/* Gives a status (not HV_OK) to the transport's completion: c_reply(call, code, NULL). */
void rpc_dispatch_fail(rpc_call *call, hv_status code);

/* For c_reply: drops the reply's unknown fields (never packed) and turns a missing or too
 * deeply nested reply into INTERNAL. Returns the status to send. */
hv_status rpc_dispatch_check_reply(rpc_call *call, hv_status code, const ProtobufCMessage *reply);

/* The message to send with a status other than OK: the handler's or the status name. */
const char *rpc_dispatch_errmsg(const rpc_call *call, hv_status code);

/* Records the answered call: metrics by method and status, the log line, the call counter. */
void rpc_dispatch_record(rpc_server *srv, rpc_call *call, hv_status code);

/* The call is over for the transport (its reply sent or given up): no longer in flight. */
void rpc_dispatch_end(rpc_server *srv);

/* The HTTP statuses haven_http_refused_total counts by (then "other"). */
extern const unsigned rpc_http_refused_status[8];

/* Counts an HTTP request the Connect transport answered itself with this status (before any
 * call began), or (status 0) a body that did not arrive in time: haven_http_refused_total. */
void rpc_dispatch_http_refused(rpc_server *srv, unsigned status);

/* Whether the server is closing (no new calls are taken). */
bool rpc_dispatch_closing(rpc_server *srv);

/* ---- the method table and the workers (rpc_server.c's lifecycle calls these) ---------- */

/* Sets up the dispatch's part of a server whose options are final: lock, conditions. */
void rpc_dispatch_init(rpc_server *srv);

/* Starts the worker threads. */
hv_status rpc_dispatch_start(rpc_server *srv);

/* Takes no new calls and waits (10 s at most) until the calls in flight are over. */
void rpc_dispatch_drain(rpc_server *srv);

/* Waits for the workers to end (after rpc_dispatch_drain: they end when the queue is empty). */
void rpc_dispatch_join(rpc_server *srv);

/* Frees the dispatch's part: after the workers ended and the transports closed. */
void rpc_dispatch_destroy(rpc_server *srv);

#endif
