/*
 * rpc_dispatch.c - the RPC server's dispatch, the same for every transport (see rpc.h and
 * rpc_dispatch.h).
 *
 * Here live the method table, the checks before a handler (decode at the boundary, method,
 * identity, role, deadline), the bounded worker pool and the record of every answered call.
 * The transports (rpc_nng.c: nng REQ/REP; connect.c: the Connect protocol over HTTP) bring
 * calls in through rpc_dispatch_* and carry the replies out, so both run the same handlers
 * with the same roles, deadlines, limits, arena, metrics and audit. Below it: the call
 * (rpc_call.c), the boundary checks (rpc_boundary.c) and Health (rpc_health.c); above it the
 * transports and the server's lifecycle (rpc_server.c).
 *
 * Threads and ownership. A transport owns its calls (an nng slot's, an HTTP request's). From
 * rpc_dispatch_submit until its c_reply runs, only the dispatch touches a call: queued, it
 * waits in a bounded ring for one of the worker threads, which runs the handler and then the
 * transport's c_reply. Handlers marked inline run on the submitting thread (they never block)
 * without taking the server's lock. When the queue is full the call is answered
 * RESOURCE_EXHAUSTED at once instead of waiting without bound.
 *
 * Metrics. rpc_dispatch_record, which every transport calls once per answered call, records
 * the call in the method's series of the server's registry (three relaxed atomic adds;
 * metrics.c): each method entry holds its series, and calls without a served method share the
 * one named "unknown".
 */
#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/metrics.h"
#include "haven/pbjson.h"
#include "haven/rpc.h"

#include "haven/arena.h"
#include "rpc_boundary.h"
#include "rpc_dispatch.h"
#include "rpc_health.h"
#include "rpc_internal.h"

#include "haven/rpc/v1/rpc.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef rpc_method_entry method_entry;

/* ---- method table ------------------------------------------------------------------ */

static int
method_cmp(const void *a, const void *b)
{
	return (strcmp(((const method_entry *) a)->me_name, ((const method_entry *) b)->me_name));
}

static const method_entry *
method_find(const rpc_server *srv, const char *name)
{
	method_entry key;

	if (strlen(name) >= sizeof(key.me_name)) {
		return (NULL);
	}
	strcpy(key.me_name, name); /* length checked above */
	return (bsearch(&key, srv->sv_methods, srv->sv_nmethods, sizeof(method_entry), method_cmp));
}

hv_status
rpc_server_add_service(rpc_server *srv, const ProtobufCServiceDescriptor *desc,
    const rpc_method_impl *impls, size_t n, void *svc)
{
	if (srv == NULL || desc == NULL || (n > 0 && impls == NULL) || srv->sv_started) {
		return (HV_INVALID_ARGUMENT);
	}
	/* Every impl must name a method of the descriptor. */
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (unsigned j = 0; j < desc->n_methods; j++) {
			if (strcmp(impls[i].name, desc->methods[j].name) == 0) {
				found = true;
			}
		}
		if (!found || impls[i].handler == NULL) {
			log_error("rpc: %s has no method %s", desc->name, impls[i].name);
			return (HV_INVALID_ARGUMENT);
		}
	}
	if (srv->sv_nmethods + desc->n_methods > srv->sv_capmethods) {
		size_t        cap = (srv->sv_nmethods + desc->n_methods) * 2;
		method_entry *m   = realloc(srv->sv_methods, cap * sizeof(*m));
		if (m == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		srv->sv_methods    = m;
		srv->sv_capmethods = cap;
	}
	for (unsigned j = 0; j < desc->n_methods; j++) {
		method_entry *m = &srv->sv_methods[srv->sv_nmethods];
		int           len;

		memset(m, 0, sizeof(*m));
		len = snprintf(m->me_name, sizeof(m->me_name), "%s/%s", desc->name,
		    desc->methods[j].name);
		if (len < 0 || (size_t) len >= sizeof(m->me_name) ||
		    method_find(srv, m->me_name) != NULL) {
			return (HV_INVALID_ARGUMENT);
		}
		m->me_desc = &desc->methods[j];
		m->me_svc  = svc;
		if ((m->me_metrics = metrics_method_get(srv->sv_metrics, m->me_name)) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		for (size_t i = 0; i < n; i++) {
			if (strcmp(impls[i].name, desc->methods[j].name) == 0) {
				m->me_handler = impls[i].handler;
				m->me_roles   = impls[i].roles;
				m->me_inline  = impls[i].inline_handler;
			}
		}
		srv->sv_nmethods++;
		/* Kept sorted so that method_find can bsearch, also during registration. */
		qsort(srv->sv_methods, srv->sv_nmethods, sizeof(method_entry), method_cmp);
	}
	rpc_health_set(&srv->sv_health, desc->name, true);
	return (HV_OK);
}

void
rpc_server_foreach_method(rpc_server *srv, rpc_method_fn fn, void *arg)
{
	for (size_t i = 0; i < srv->sv_nmethods; i++) {
		const method_entry *m = &srv->sv_methods[i];
		fn(arg, m->me_name, m->me_roles, m->me_handler != NULL);
	}
}

/* ---- the checks before a handler ----------------------------------------------------- */

/* The series a call is recorded in: its method's, also when a check before dispatch refused
 * it, or "unknown" for a name the server does not serve (so that callers cannot grow the
 * label set) and for a request that did not decode. */
static metrics_method *
call_series(const rpc_server *srv, const rpc_call *call)
{
	const method_entry *m = call->c_method;

	if (m == NULL && call->c_env != NULL && call->c_env->method != NULL) {
		m = method_find(srv, call->c_env->method);
	}
	return (m != NULL ? m->me_metrics : srv->sv_unknown);
}

void
rpc_dispatch_begin(rpc_server *srv, rpc_call *call)
{
	atomic_fetch_add(&srv->sv_inflight, 1);
	memset(&call->c_caller, 0, sizeof(call->c_caller));
	call->c_has_source  = false; /* a transport that knows it sets it after this */
	call->c_srv         = srv;
	call->c_env         = NULL;
	call->c_req         = NULL;
	call->c_method      = NULL;
	call->c_prepare     = NULL;
	call->c_errmsg[0]   = '\0';
	call->c_start_us    = hv_clock_mono_us();
	call->c_deadline_us = call->c_start_us;
}

void
rpc_dispatch_end(rpc_server *srv)
{
	/* Both atomics are sequentially consistent: either this sees sv_closing, or
	 * rpc_dispatch_drain (which sets it, then reads sv_inflight under the mutex) sees the
	 * call gone; the broadcast under the mutex cannot fall between its check and its wait. */
	if (atomic_fetch_sub(&srv->sv_inflight, 1) == 1 && atomic_load(&srv->sv_closing)) {
		pthread_mutex_lock(&srv->sv_mtx);
		pthread_cond_broadcast(&srv->sv_idle_cv);
		pthread_mutex_unlock(&srv->sv_mtx);
	}
}

const unsigned rpc_http_refused_status[8] = { 400, 404, 405, 411, 413, 415, 429, 503 };

void
rpc_dispatch_http_refused(rpc_server *srv, unsigned status)
{
	size_t i = 0;

	if (status == 0) {
		atomic_fetch_add(&srv->sv_http_slow, 1);
		return;
	}
	while (i < sizeof(rpc_http_refused_status) / sizeof(rpc_http_refused_status[0]) &&
	    rpc_http_refused_status[i] != status) {
		i++;
	}
	atomic_fetch_add(&srv->sv_http_refused[i], 1); /* i == 8: other */
}

bool
rpc_dispatch_closing(rpc_server *srv)
{
	return (atomic_load(&srv->sv_closing));
}

hv_status
rpc_dispatch_identify(rpc_server *srv, rpc_call *call, rpc_transport transport, bool local_operator)
{
	const char *token = rpc_call_metadata(call, "authorization");
	rpc_caller *c     = &call->c_caller;

	c->transport = transport;
	c->org_id[0] = '\0';
	memset(&c->person, 0, sizeof(c->person));
	if (token != NULL) {
		if (strncmp(token, "Bearer ", 7) == 0) {
			token += 7;
		}
		if (srv->sv_opts.auth == NULL) {
			return (rpc_call_error(call, HV_UNAUTHENTICATED,
			    "this server does not accept session tokens"));
		}
		const char *act     = rpc_call_metadata(call, RPC_MD_ACTIVITY);
		bool        passive = act != NULL && strcmp(act, RPC_ACTIVITY_BACKGROUND) == 0;

		if ((passive ? auth_verify_token_passive : auth_verify_token)(srv->sv_opts.auth,
		        token, hv_clock_wall_ms(), c) != HV_OK) {
			c->role      = RPC_ROLE_ANONYMOUS;
			c->org_id[0] = '\0';
			memset(&c->person, 0, sizeof(c->person));
			return (rpc_call_error(call, HV_UNAUTHENTICATED,
			    "session token is invalid, expired or revoked"));
		}
		c->transport = transport;
		return (HV_OK);
	}
	c->role = local_operator ? RPC_ROLE_OPERATOR : RPC_ROLE_ANONYMOUS;
	return (HV_OK);
}

hv_status
rpc_dispatch_authorize(rpc_server *srv, rpc_call *call)
{
	const method_entry *m = call->c_method;

	(void) srv;
	if ((m->me_roles & call->c_caller.role) == 0 ||
	    !auth_person_allows(&call->c_caller, m->me_name)) { /* a viewer reads only (auth.h) */
		return (rpc_call_error(call, HV_PERMISSION_DENIED, "%s %s may not call %s",
		    call->c_caller.person.role == RPC_PERSON_VIEWER ? "a viewer of role" : "role",
		    rpc_role_name(call->c_caller.role), m->me_name));
	}
	return (HV_OK);
}

static bool
valid_metadata_key(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > 64) {
		return (false);
	}
	for (; *k != '\0'; k++) {
		if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '-' ||
		        *k == '_')) {
			return (false);
		}
	}
	return (true);
}

hv_status
rpc_dispatch_envelope(rpc_server *srv, rpc_call *call, const uint8_t *data, size_t len)
{
	Haven__Rpc__V1__Request *env;
	hv_status                st;

	env = haven__rpc__v1__request__unpack(&call->c_arena.a_pb, len, data);
	if (env == NULL && call->c_arena.a_refused) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "request of %zu bytes is over the decode budget of %zu bytes", len,
		    call->c_arena.a_budget));
	}
	if (env == NULL) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "request is not a haven.rpc.v1.Request envelope"));
	}
	call->c_env = env;
	if ((st = rpc_boundary_check(call, &env->base, data, len)) != HV_OK) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (st);
	}
	return (rpc_dispatch_check_envelope(srv, call));
}

hv_status
rpc_dispatch_check_envelope(rpc_server *srv, rpc_call *call)
{
	const Haven__Rpc__V1__Request *env = call->c_env;
	uint32_t                       timeout;

	if (env->method == NULL || env->method[0] == '\0' ||
	    strlen(env->method) >= RPC_METHOD_NAME_MAX) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (
		    rpc_call_error(call, HV_INVALID_ARGUMENT, "method name missing or too long"));
	}
	if (env->n_metadata > RPC_METADATA_MAX) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "%zu metadata entries, at most %d allowed", env->n_metadata, RPC_METADATA_MAX));
	}
	for (size_t i = 0; i < env->n_metadata; i++) {
		if (!valid_metadata_key(env->metadata[i]->key) ||
		    strlen(env->metadata[i]->value) > 4096) {
			atomic_fetch_add(&srv->sv_malformed, 1);
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "metadata entry %zu has an invalid key or a value over 4096 bytes", i));
		}
	}
	if (strlen(env->idempotency_key) > RPC_IDEMPOTENCY_KEY_MAX) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "idempotency key over %d bytes",
		    RPC_IDEMPOTENCY_KEY_MAX));
	}

	timeout = env->timeout_ms != 0 ? env->timeout_ms : srv->sv_opts.default_timeout_ms;
	if (timeout > srv->sv_opts.max_timeout_ms) {
		timeout = srv->sv_opts.max_timeout_ms;
	}
	call->c_deadline_us = call->c_start_us + (int64_t) timeout * 1000;
	return (HV_OK);
}

hv_status
rpc_dispatch_method(rpc_server *srv, rpc_call *call)
{
	const method_entry *m = method_find(srv, call->c_env->method);

	if (m == NULL || m->me_handler == NULL) {
		return (rpc_call_error(call, HV_UNIMPLEMENTED, "unknown method %.200s",
		    call->c_env->method));
	}
	call->c_method = m;
	return (HV_OK);
}

hv_status
rpc_dispatch_payload(rpc_server *srv, rpc_call *call)
{
	const ProtobufCMethodDescriptor *md  = call->c_method->me_desc;
	const Haven__Rpc__V1__Request   *env = call->c_env;
	hv_status                        st;

	call->c_req = protobuf_c_message_unpack(md->input, &call->c_arena.a_pb, env->payload.len,
	    env->payload.data);
	if (call->c_req == NULL && call->c_arena.a_refused) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "payload of %zu bytes is over the decode budget of %zu bytes", env->payload.len,
		    call->c_arena.a_budget));
	}
	if (call->c_req == NULL) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "payload does not decode as %s",
		    md->input->name));
	}
	if ((st = rpc_boundary_check(call, call->c_req, env->payload.data, env->payload.len)) !=
	    HV_OK) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (st);
	}
	return (HV_OK);
}

hv_status
rpc_dispatch_payload_json(rpc_server *srv, rpc_call *call, const char *json, size_t len)
{
	const ProtobufCMethodDescriptor *md = call->c_method->me_desc;
	pbjson_limits                    lim;
	char                             err[PBJSON_ERR_SIZE];
	hv_status                        st;

	/* The same caps as a binary payload: the text within max_msg, what it decodes to within
	 * the call's arena (whose budget the arena enforces besides). */
	memset(&lim, 0, sizeof(lim));
	lim.pl_max_input = srv->sv_opts.max_msg;
	lim.pl_max_alloc = srv->sv_opts.call_budget;
	st = pbjson_decode(md->input, json, len, &call->c_arena.a_pb, &lim, &call->c_req, err,
	    sizeof(err));
	if (st != HV_OK) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		call->c_req = NULL;
		/* pbjson's messages never repeat a value of the input (pbjson.h). */
		return (rpc_call_error(call, st, "%s", err));
	}
	return (HV_OK);
}

hv_status
rpc_server_decode(rpc_server *srv, const void *data, size_t len, char *errmsg, size_t errsz)
{
	rpc_call *call;
	hv_status st = HV_RESOURCE_EXHAUSTED;

	if (srv == NULL || (data == NULL && len > 0)) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((call = calloc(1, sizeof(*call))) == NULL) {
		goto out;
	}
	call->c_srv = srv;
	arena_init(&call->c_arena, srv->sv_opts.call_budget);
	call->c_start_us = hv_clock_mono_us();
	if ((st = rpc_dispatch_envelope(srv, call, data != NULL ? data : (const uint8_t *) "",
	         len)) == HV_OK &&
	    (st = rpc_dispatch_method(srv, call)) == HV_OK) {
		st = rpc_dispatch_payload(srv, call);
	}
	if (errmsg != NULL && errsz > 0) {
		snprintf(errmsg, errsz, "%s", call->c_errmsg);
	}
	arena_reset(&call->c_arena);
out:
	free(call);
	return (st);
}

/* ---- replies ----------------------------------------------------------------------- */

void
rpc_dispatch_fail(rpc_call *call, hv_status code)
{
	call->c_reply(call, code, NULL);
}

hv_status
rpc_dispatch_check_reply(rpc_call *call, hv_status code, const ProtobufCMessage *reply)
{
	const char *where  = NULL;
	bool        field0 = false;

	if (code != HV_OK) {
		return (code);
	}
	if (reply == NULL) {
		return (rpc_call_error(call, HV_INTERNAL, "handler returned no reply"));
	}
	/* The handler's reply is the call's (rpc_handler): unknown fields it carries (a record
	 * stored before they were dropped) are left off, not freed. */
	if (!rpc_pb_drop_unknown((ProtobufCMessage *) reply, NULL, 0, &field0, &where)) {
		return (rpc_call_error(call, HV_INTERNAL, "reply %s is nested too deep", where));
	}
	return (HV_OK);
}

const char *
rpc_dispatch_errmsg(const rpc_call *call, hv_status code)
{
	return (call->c_errmsg[0] != '\0' ? call->c_errmsg : hv_status_name(code));
}

void
rpc_dispatch_record(rpc_server *srv, rpc_call *call, hv_status code)
{
	int64_t took_us = hv_clock_mono_us() - call->c_start_us;

	metrics_method_observe(call_series(srv, call), code, took_us);
	if (log_enabled(code == HV_OK ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO)) {
		log_call(call->c_env != NULL ? call->c_env->method : "(undecoded)",
		    call->c_env != NULL ? call->c_env->request_id : 0, code, took_us,
		    call->c_caller.org_id);
	}
	atomic_fetch_add(&srv->sv_calls, 1);
}

/* ---- the work queue ---------------------------------------------------------------- */

/* Runs the handler of a prepared call and hands its reply to the transport. */
static void
call_run(rpc_call *call)
{
	ProtobufCMessage *reply = NULL;
	hv_status         st;

	if (hv_clock_mono_us() >= call->c_deadline_us) {
		st = rpc_call_error(call, HV_DEADLINE_EXCEEDED, "deadline passed while queued");
	} else if (call->c_prepare != NULL && (st = call->c_prepare(call)) != HV_OK) {
		reply = NULL;
	} else {
		st = call->c_method->me_handler(call, call->c_method->me_svc, call->c_req, &reply);
	}
	call->c_reply(call, st, st == HV_OK ? reply : NULL);
}

static void *
worker_main(void *arg)
{
	rpc_server *srv = arg;

	for (;;) {
		rpc_call *call;

		pthread_mutex_lock(&srv->sv_mtx);
		while (srv->sv_qlen == 0 && !srv->sv_closing) {
			pthread_cond_wait(&srv->sv_work_cv, &srv->sv_mtx);
		}
		if (srv->sv_qlen == 0) { /* closing and drained */
			pthread_mutex_unlock(&srv->sv_mtx);
			return (NULL);
		}
		call          = srv->sv_queue[srv->sv_qhead];
		srv->sv_qhead = (srv->sv_qhead + 1) % srv->sv_opts.queue;
		srv->sv_qlen--;
		pthread_mutex_unlock(&srv->sv_mtx);

		call_run(call);
	}
}

void
rpc_dispatch_submit(rpc_server *srv, rpc_call *call)
{
	bool queued = false, closing;

	if (hv_clock_mono_us() >= call->c_deadline_us) {
		rpc_dispatch_fail(call,
		    rpc_call_error(call, HV_DEADLINE_EXCEEDED, "deadline passed before dispatch"));
		return;
	}
	/* An inline handler never waits for a worker: no lock on its way. */
	if (call->c_method->me_inline && !atomic_load(&srv->sv_closing)) {
		call_run(call);
		return;
	}
	pthread_mutex_lock(&srv->sv_mtx);
	closing = atomic_load(&srv->sv_closing);
	if (!closing && !call->c_method->me_inline && srv->sv_qlen < srv->sv_opts.queue) {
		unsigned tail       = (srv->sv_qhead + srv->sv_qlen) % srv->sv_opts.queue;
		srv->sv_queue[tail] = call;
		srv->sv_qlen++;
		pthread_cond_signal(&srv->sv_work_cv);
		queued = true;
	}
	pthread_mutex_unlock(&srv->sv_mtx);
	if (queued) {
		return;
	}
	if (closing) {
		rpc_dispatch_fail(call,
		    rpc_call_error(call, HV_UNAVAILABLE, "server is shutting down"));
	} else if (call->c_method->me_inline) {
		call_run(call);
	} else {
		atomic_fetch_add(&srv->sv_rejected, 1);
		rpc_dispatch_fail(call,
		    rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "server busy: %u calls queued",
		        srv->sv_opts.queue));
	}
}

/* ---- the workers' life ------------------------------------------------------------------ */

void
rpc_dispatch_init(rpc_server *srv)
{
	pthread_mutex_init(&srv->sv_mtx, NULL);
	pthread_cond_init(&srv->sv_work_cv, NULL);
	(void) hv_clock_cond_init(&srv->sv_idle_cv);
}

hv_status
rpc_dispatch_start(rpc_server *srv)
{
	srv->sv_queue   = calloc(srv->sv_opts.queue, sizeof(rpc_call *));
	srv->sv_workers = calloc(srv->sv_opts.workers, sizeof(pthread_t));
	if (srv->sv_queue == NULL || srv->sv_workers == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	for (unsigned i = 0; i < srv->sv_opts.workers; i++) {
		if (pthread_create(&srv->sv_workers[i], NULL, worker_main, srv) != 0) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		srv->sv_nworkers++;
	}
	return (HV_OK);
}

void
rpc_dispatch_drain(rpc_server *srv)
{
	struct timespec until;

	pthread_mutex_lock(&srv->sv_mtx);
	atomic_store(&srv->sv_closing, true);
	pthread_cond_broadcast(&srv->sv_work_cv);
	hv_clock_deadline(&until, 10000);
	while (atomic_load(&srv->sv_inflight) > 0) {
		if (pthread_cond_timedwait(&srv->sv_idle_cv, &srv->sv_mtx, &until) != 0) {
			log_warn("rpc: %u calls still in flight at shutdown",
			    atomic_load(&srv->sv_inflight));
			break;
		}
	}
	pthread_mutex_unlock(&srv->sv_mtx);
}

void
rpc_dispatch_join(rpc_server *srv)
{
	for (unsigned i = 0; i < srv->sv_nworkers; i++) {
		pthread_join(srv->sv_workers[i], NULL);
	}
	srv->sv_nworkers = 0;
}

void
rpc_dispatch_destroy(rpc_server *srv)
{
	free(srv->sv_queue);
	free(srv->sv_workers);
	free(srv->sv_methods);
	pthread_cond_destroy(&srv->sv_work_cv);
	pthread_cond_destroy(&srv->sv_idle_cv);
	pthread_mutex_destroy(&srv->sv_mtx);
}
