/*
 * rpc_server.c - the gRPC-style RPC server over an nng REP socket (see rpc.h).
 *
 * Threads and ownership. A fixed set of slots each own one nng context, one aio and one call
 * (with its arena). A slot cycles RECV -> (checks) -> [queue -> worker] -> SEND -> RECV. The
 * aio callback runs on nng's threads and never blocks: it decodes the envelope, identifies the
 * caller, checks the method, role and deadline, and either answers at once (errors, inline
 * handlers) or puts the slot on the bounded work queue. Worker threads take slots off the
 * queue, run the handler and start the send. While a slot is queued or running, only the
 * worker touches its call; nng touches it again only after the send has been started.
 *
 * Because each slot holds at most one call, the number of slots bounds the calls in the
 * server; the queue bounds those waiting for a worker. With more slots than workers + queue, a
 * burst beyond what the workers can take is answered RESOURCE_EXHAUSTED instead of waiting
 * without bound.
 *
 * Metrics. slot_send, the one place every reply passes, records the call in the method's
 * series of the server's registry (three relaxed atomic adds; metrics.c): each method entry
 * holds its series, and calls without a served method share the one named "unknown".
 */
#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/metrics.h"
#include "haven/rpc.h"
#include "haven/ticker.h"

#include "haven/arena.h"
#include "rpc_internal.h"

#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"
#include "haven/rpc/v1/rpc.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LISTENERS 8
/* The ipc:// listener watchdog (see ipc_watch_main): how often each ipc listener is called,
 * how long a probe may take, and how many probes in a row must fail before the listener is
 * made again. */
#define IPC_PROBE_EVERY_MS 2000
#define IPC_PROBE_TIMEOUT_MS 1000
#define IPC_PROBE_FAILS 3
#define MAX_HEALTH 32
#define ECHO_MAX (64 * 1024)

typedef struct method_entry {
	char                             me_name[RPC_METHOD_NAME_MAX]; /* full name */
	const ProtobufCMethodDescriptor *me_desc;
	rpc_handler                      me_handler; /* NULL: UNIMPLEMENTED */
	unsigned                         me_roles;
	bool                             me_inline;
	void                            *me_svc;
	metrics_method                  *me_metrics; /* calls and latency of this method */
} method_entry;

typedef struct listener_entry {
	nng_listener    l_listener;
	int             l_id;
	rpc_transport   l_transport;
	nng_tls_config *l_tls;
	int             l_lockfd; /* ipc:// lock file, or -1 */
	char           *l_lockpath;
	char           *l_url;      /* as given to rpc_server_listen */
	unsigned        l_failed;   /* ipc://: probes failed in a row */
	uint64_t        l_restarts; /* ipc://: times the watchdog made it again */
} listener_entry;

typedef struct health_entry {
	char h_name[128];
	bool h_serving;
} health_entry;

typedef enum slot_state { SLOT_RECV, SLOT_SEND } slot_state;

struct rpc_call {
	rpc_server                 *c_srv;
	const method_entry         *c_method;
	Haven__Rpc__V1__Request    *c_env;
	ProtobufCMessage           *c_req;
	rpc_caller                  c_caller;
	int64_t                     c_start_us;
	int64_t                     c_deadline_us;
	char                        c_errmsg[RPC_ERRMSG_MAX];
	arena                       c_arena;
};

typedef struct slot {
	rpc_server  *s_srv;
	nng_ctx      s_ctx;
	nng_aio     *s_aio;
	slot_state   s_state;
	nng_msg     *s_msg; /* the received request, freed once decoded */
	rpc_call     s_call;
} slot;

struct rpc_server {
	nng_socket         sv_sock;
	rpc_server_options sv_opts;
	uid_t              sv_uid;
	bool               sv_started;

	method_entry      *sv_methods;
	size_t             sv_nmethods;
	size_t             sv_capmethods;

	listener_entry     sv_listeners[MAX_LISTENERS];
	size_t             sv_nlisteners;

	slot              *sv_slots;
	unsigned           sv_nslots;

	pthread_mutex_t    sv_mtx;
	pthread_cond_t     sv_work_cv; /* workers wait for queued slots */
	pthread_cond_t     sv_idle_cv; /* close waits for in-flight calls */
	slot             **sv_queue;   /* ring buffer of sv_opts.queue entries */
	unsigned           sv_qhead;
	unsigned           sv_qlen;
	unsigned           sv_inflight; /* slots between receive and send completion */
	bool               sv_closing;
	pthread_t         *sv_workers;
	unsigned           sv_nworkers;
	hv_ticker         *sv_watch; /* ipc listener watchdog; NULL without ipc listeners */

	health_entry       sv_health[MAX_HEALTH];
	size_t             sv_nhealth;
	bool               sv_node_serving;

	atomic_ullong      sv_calls;
	atomic_ullong      sv_rejected;
	atomic_ullong      sv_malformed;

	metrics           *sv_metrics;
	metrics_method    *sv_unknown; /* method="unknown": names not served, undecodable calls */
};

/* ---- call accessors ---------------------------------------------------------------- */

const rpc_caller *
rpc_call_caller(const rpc_call *call)
{
	return (&call->c_caller);
}

const char *
rpc_call_method(const rpc_call *call)
{
	return (call->c_env != NULL ? call->c_env->method : "");
}

uint64_t
rpc_call_request_id(const rpc_call *call)
{
	return (call->c_env != NULL ? call->c_env->request_id : 0);
}

const char *
rpc_call_idempotency_key(const rpc_call *call)
{
	return (call->c_env != NULL && call->c_env->idempotency_key != NULL
	        ? call->c_env->idempotency_key
	        : "");
}

const char *
rpc_call_metadata(const rpc_call *call, const char *key)
{
	if (call->c_env == NULL) {
		return (NULL);
	}
	for (size_t i = 0; i < call->c_env->n_metadata; i++) {
		if (strcmp(call->c_env->metadata[i]->key, key) == 0) {
			return (call->c_env->metadata[i]->value);
		}
	}
	return (NULL);
}

uint32_t
rpc_call_remaining_ms(const rpc_call *call)
{
	int64_t left = call->c_deadline_us - hv_clock_mono_us();
	if (left <= 0) {
		return (0);
	}
	return ((uint32_t) (left / 1000));
}

void *
rpc_call_alloc(rpc_call *call, size_t n)
{
	void *p = arena_alloc(&call->c_arena, n);
	if (p != NULL) {
		memset(p, 0, n);
	}
	return (p);
}

char *
rpc_call_strdup(rpc_call *call, const char *s)
{
	return (arena_strdup(&call->c_arena, s));
}

ProtobufCAllocator *
rpc_call_allocator(rpc_call *call)
{
	return (&call->c_arena.a_pb);
}

arena *
rpc_call_arena(rpc_call *call)
{
	return (&call->c_arena);
}

hv_status
rpc_call_error(rpc_call *call, hv_status code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(call->c_errmsg, sizeof(call->c_errmsg), fmt, ap);
	va_end(ap);
	return (code);
}

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
	rpc_server_set_serving(srv, desc->name, true);
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

/* ---- health and diagnostics -------------------------------------------------------- */

void
rpc_server_set_serving(rpc_server *srv, const char *service, bool serving)
{
	pthread_mutex_lock(&srv->sv_mtx);
	if (service == NULL || service[0] == '\0') {
		srv->sv_node_serving = serving;
		goto out;
	}
	for (size_t i = 0; i < srv->sv_nhealth; i++) {
		if (strcmp(srv->sv_health[i].h_name, service) == 0) {
			srv->sv_health[i].h_serving = serving;
			goto out;
		}
	}
	if (srv->sv_nhealth < MAX_HEALTH && strlen(service) < sizeof(srv->sv_health[0].h_name)) {
		health_entry *h = &srv->sv_health[srv->sv_nhealth++];
		strcpy(h->h_name, service); /* length checked above */
		h->h_serving = serving;
	}
out:
	pthread_mutex_unlock(&srv->sv_mtx);
}

static hv_status
health_check(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	rpc_server                               *srv = svc;
	const Haven__Health__V1__HealthCheckRequest *in  = (const void *) req;
	Haven__Health__V1__HealthCheckResponse      *out;
	int                                       found   = 0;
	bool                                      serving = false;

	out = rpc_call_alloc(call, sizeof(*out));
	if (out == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__health__v1__health_check_response__init(out);

	pthread_mutex_lock(&srv->sv_mtx);
	if (in->service == NULL || in->service[0] == '\0') {
		found   = 1;
		serving = srv->sv_node_serving && !srv->sv_closing;
	} else {
		for (size_t i = 0; i < srv->sv_nhealth; i++) {
			if (strcmp(srv->sv_health[i].h_name, in->service) == 0) {
				found   = 1;
				serving = srv->sv_health[i].h_serving && !srv->sv_closing;
			}
		}
	}
	pthread_mutex_unlock(&srv->sv_mtx);

	if (!found) {
		return (rpc_call_error(call, HV_NOT_FOUND, "unknown service %.128s", in->service));
	}
	out->status = serving ? HAVEN__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
	                      : HAVEN__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	*reply = &out->base;
	return (HV_OK);
}

static hv_status
diag_echo(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Diag__V1__EchoRequest *in = (const void *) req;
	Haven__Diag__V1__EchoResponse      *out;

	(void) svc;
	if (in->payload.len > ECHO_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "echo payload of %zu bytes is over the limit of %d", in->payload.len, ECHO_MAX));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__diag__v1__echo_response__init(out);
	out->payload = in->payload; /* lives in the call's arena until the reply is sent */
	*reply       = &out->base;
	return (HV_OK);
}

/* ---- the boundary: what a decoded message may carry ------------------------------------- */

/*
 * protobuf-c keeps the fields a message's descriptor does not define (unknown fields) as opaque
 * bytes, packs them again with the message, and decodes a field numbered 0 (invalid protobuf)
 * as one of them, which it then refuses to decode after packing it. Nothing in haven reads
 * them, so the server drops them from every request (envelope and payload, at every depth)
 * before a handler runs, and from every reply before it is packed: a caller cannot smuggle
 * bytes past the handlers' checks into the store and out to other organisations. A field
 * numbered 0 is refused. Strings decode into C strings, which end at the first NUL: a string
 * field holding a NUL byte (a method name "A\0B" read as "A") is refused too.
 */
#define PB_DEPTH_MAX 64 /* message nesting followed by the walks below */

/* Drops the unknown fields of m and of every message below it (singular, repeated and oneof
 * members), freeing them with a when not NULL (the allocator m was decoded with). Sets *field0
 * and *where (the message's type) when one of them was numbered 0. Returns false, with *where
 * set, when messages are nested deeper than PB_DEPTH_MAX (those below are left as they are). */
static bool
pb_drop_unknown(ProtobufCMessage *m, ProtobufCAllocator *a, unsigned depth, bool *field0,
    const char **where)
{
	const ProtobufCMessageDescriptor *d    = m->descriptor;
	char                             *base = (char *) m;

	if (depth > PB_DEPTH_MAX) {
		*where = d->name;
		return (false);
	}
	if (m->n_unknown_fields > 0) {
		for (unsigned i = 0; i < m->n_unknown_fields; i++) {
			if (m->unknown_fields[i].tag == 0) {
				*field0 = true;
				*where  = d->name;
			}
			if (a != NULL) {
				a->free(a->allocator_data, m->unknown_fields[i].data);
			}
		}
		if (a != NULL) {
			a->free(a->allocator_data, m->unknown_fields);
		}
		m->unknown_fields   = NULL;
		m->n_unknown_fields = 0;
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
			continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t             n = *(const size_t *) (base + f->quantifier_offset);
			ProtobufCMessage **v = *(ProtobufCMessage ***) (base + f->offset);
			for (size_t k = 0; k < n; k++) {
				if (!pb_drop_unknown(v[k], a, depth + 1, field0, where)) {
					return (false);
				}
			}
		} else if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0 ||
		    *(const uint32_t *) (base + f->quantifier_offset) == f->id) {
			ProtobufCMessage *v = *(ProtobufCMessage **) (base + f->offset);
			if (v != NULL && !pb_drop_unknown(v, a, depth + 1, field0, where)) {
				return (false);
			}
		}
	}
	return (true);
}

/* Reads a varint at *p (before end) into *v. */
static bool
pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		x |= (uint64_t) (b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*v = x;
			return (true);
		}
	}
	return (false);
}

/* Whether no string field of the message of type d encoded in [p, end), nor of a message
 * below it, holds a NUL byte. The bytes decoded already (protobuf-c), so this only measures.
 * On false *bad names the string field (NULL: nesting over PB_DEPTH_MAX or bad bytes). */
static bool
pb_strings_ok(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
    unsigned depth, const ProtobufCFieldDescriptor **bad)
{
	*bad = NULL;
	if (depth > PB_DEPTH_MAX) {
		return (false);
	}
	while (p < end) {
		const ProtobufCFieldDescriptor *f;
		uint64_t                        key, len;

		if (!pb_varint(&p, end, &key)) {
			return (false);
		}
		switch (key & 7) {
		case 0: /* varint */
			if (!pb_varint(&p, end, &len)) {
				return (false);
			}
			continue;
		case 1: /* 64-bit */
			len = 8;
			break;
		case 5: /* 32-bit */
			len = 4;
			break;
		case 2: /* length-delimited */
			if (!pb_varint(&p, end, &len)) {
				return (false);
			}
			break;
		default: /* groups: protobuf-c does not decode them */
			return (false);
		}
		if (len > (uint64_t) (end - p)) {
			return (false);
		}
		f = (key & 7) != 2 || (key >> 3) > UINT32_MAX
		    ? NULL
		    : protobuf_c_message_descriptor_get_field(d, (unsigned) (key >> 3));
		if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, len) != NULL) {
			*bad = f;
			return (false);
		}
		if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    !pb_strings_ok(f->descriptor, p, p + len, depth + 1, bad)) {
			return (false);
		}
		p += len;
	}
	return (true);
}

/* Checks and cleans a message call decoded from [data, data + len): no NUL in a string, no
 * field numbered 0; its unknown fields dropped. On failure the call's error is set. */
static hv_status
boundary_check(rpc_call *call, ProtobufCMessage *m, const uint8_t *data, size_t len)
{
	const ProtobufCFieldDescriptor *bad;
	const char                     *where  = m->descriptor->name;
	bool                            field0 = false;

	if (len > 0 && !pb_strings_ok(m->descriptor, data, data + len, 0, &bad)) {
		if (bad != NULL) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "string field %s of %s holds a NUL byte", bad->name, where));
		}
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "%s is nested deeper than %d messages or uses groups", where, PB_DEPTH_MAX));
	}
	if (!pb_drop_unknown(m, &call->c_arena.a_pb, 0, &field0, &where)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "%s is nested deeper than %d messages", where, PB_DEPTH_MAX));
	}
	if (field0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "%s holds a field numbered 0, which is not valid protobuf", where));
	}
	return (HV_OK);
}

/* ---- replies ----------------------------------------------------------------------- */

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

/* A slot's call is over (its reply was sent or given up). */
static void
inflight_done(rpc_server *srv)
{
	pthread_mutex_lock(&srv->sv_mtx);
	if (--srv->sv_inflight == 0) {
		pthread_cond_broadcast(&srv->sv_idle_cv);
	}
	pthread_mutex_unlock(&srv->sv_mtx);
}

/* Packs the reply envelope (status, message and, on OK, the packed reply message) into an nng
 * message and starts sending it on the slot's context. Never fails to send something: when the
 * reply itself cannot be packed the caller gets INTERNAL or RESOURCE_EXHAUSTED instead. */
static void
slot_send(slot *sl, hv_status code, const ProtobufCMessage *reply)
{
	rpc_server            *srv  = sl->s_srv;
	rpc_call              *call = &sl->s_call;
	Haven__Rpc__V1__Reply  env  = HAVEN__RPC__V1__REPLY__INIT;
	nng_msg               *msg  = NULL;
	size_t                 size;
	int64_t                took_us;
	const char            *where  = NULL;
	bool                   field0 = false;

	env.request_id = call->c_env != NULL ? call->c_env->request_id : 0;
	/* The handler's reply is the call's (rpc_handler): unknown fields it carries (a record
	 * stored before they were dropped) are left off, not freed. */
	if (code == HV_OK && reply != NULL &&
	    !pb_drop_unknown((ProtobufCMessage *) reply, NULL, 0, &field0, &where)) {
		code = rpc_call_error(call, HV_INTERNAL, "reply %s is nested too deep", where);
	}
	if (code == HV_OK && reply != NULL) {
		size_t   n   = protobuf_c_message_get_packed_size(reply);
		uint8_t *buf = n > srv->sv_opts.max_msg ? NULL : arena_alloc(&call->c_arena, n);
		if (buf == NULL) {
			code = rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
			    "reply of %zu bytes is over the limit", n);
		} else {
			protobuf_c_message_pack(reply, buf);
			env.payload.data = buf;
			env.payload.len  = n;
		}
	} else if (code == HV_OK) {
		code = rpc_call_error(call, HV_INTERNAL, "handler returned no reply");
	}
	env.code = (uint32_t) code;
	if (code != HV_OK) {
		env.message = call->c_errmsg[0] != '\0' ? call->c_errmsg : (char *) hv_status_name(code);
		env.payload.data = NULL;
		env.payload.len  = 0;
	}

	size = haven__rpc__v1__reply__get_packed_size(&env);
	if (nng_msg_alloc(&msg, size) != 0) {
		msg = NULL;
	} else {
		haven__rpc__v1__reply__pack(&env, nng_msg_body(msg));
	}

	took_us = hv_clock_mono_us() - call->c_start_us;
	metrics_method_observe(call_series(srv, call), code, took_us);
	if (log_enabled(code == HV_OK ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO)) {
		log_call(call->c_env != NULL ? call->c_env->method : "(undecoded)", env.request_id,
		    code, took_us, call->c_caller.org_id);
	}
	atomic_fetch_add(&srv->sv_calls, 1);

	sl->s_state = SLOT_SEND;
	if (msg == NULL) {
		/* Out of memory for the reply: the client's timeout ends the call. Go on. */
		nng_aio_set_msg(sl->s_aio, NULL);
		sl->s_state = SLOT_RECV;
		arena_reset(&call->c_arena);
		inflight_done(srv);
		nng_ctx_recv(sl->s_ctx, sl->s_aio);
		return;
	}
	nng_aio_set_msg(sl->s_aio, msg);
	nng_ctx_send(sl->s_ctx, sl->s_aio);
}

/* ---- identity and checks ----------------------------------------------------------- */

static rpc_transport
pipe_transport(rpc_server *srv, nng_pipe p)
{
	int id = nng_listener_id(nng_pipe_listener(p));

	for (size_t i = 0; i < srv->sv_nlisteners; i++) {
		if (__atomic_load_n(&srv->sv_listeners[i].l_id, __ATOMIC_ACQUIRE) == id) {
			return (srv->sv_listeners[i].l_transport);
		}
	}
	return (RPC_TRANSPORT_TCP); /* unknown: treat as the least trusted */
}

/* Decides who the caller is. Only the transport and a verified token count. */
static hv_status
identify(rpc_server *srv, nng_msg *msg, rpc_call *call)
{
	nng_pipe    p     = nng_msg_get_pipe(msg);
	const char *token = rpc_call_metadata(call, "authorization");
	rpc_caller *c     = &call->c_caller;

	c->transport = pipe_transport(srv, p);
	c->org_id[0] = '\0';
	if (token != NULL) {
		if (strncmp(token, "Bearer ", 7) == 0) {
			token += 7;
		}
		if (srv->sv_opts.auth == NULL) {
			return (rpc_call_error(call, HV_UNAUTHENTICATED,
			    "this server does not accept session tokens"));
		}
		if (auth_verify_token(srv->sv_opts.auth, token, hv_clock_wall_ms(), c) != HV_OK) {
			return (rpc_call_error(call, HV_UNAUTHENTICATED,
			    "session token is invalid, expired or revoked"));
		}
		return (HV_OK);
	}
	c->role = RPC_ROLE_ANONYMOUS;
	if (c->transport == RPC_TRANSPORT_INPROC) {
		c->role = RPC_ROLE_OPERATOR;
	} else if (c->transport == RPC_TRANSPORT_IPC) {
		uint64_t uid;
		if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &uid) == 0 &&
		    uid == (uint64_t) srv->sv_uid) {
			c->role = RPC_ROLE_OPERATOR;
		}
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

/* Decodes the envelope in [data, data + len) into the call's arena and checks it: no NUL in a
 * string, no field numbered 0, unknown fields dropped, the method name, the metadata and the
 * idempotency key; sets the call's deadline. On failure the call's error message is set. */
static hv_status
prepare_envelope(rpc_server *srv, const uint8_t *data, size_t len, rpc_call *call)
{
	Haven__Rpc__V1__Request *env;
	uint32_t                 timeout;
	hv_status                st;

	env = haven__rpc__v1__request__unpack(&call->c_arena.a_pb, len, data);
	if (env == NULL) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "request is not a haven.rpc.v1.Request envelope (or is over the decode budget)"));
	}
	call->c_env = env;
	if ((st = boundary_check(call, &env->base, data, len)) != HV_OK) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (st);
	}
	if (env->method == NULL || env->method[0] == '\0' ||
	    strlen(env->method) >= RPC_METHOD_NAME_MAX) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "method name missing or too long"));
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
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "idempotency key over %d bytes", RPC_IDEMPOTENCY_KEY_MAX));
	}

	timeout = env->timeout_ms != 0 ? env->timeout_ms : srv->sv_opts.default_timeout_ms;
	if (timeout > srv->sv_opts.max_timeout_ms) {
		timeout = srv->sv_opts.max_timeout_ms;
	}
	call->c_deadline_us = call->c_start_us + (int64_t) timeout * 1000;
	return (HV_OK);
}

/* Finds the call's method (UNIMPLEMENTED for a name not served or without a handler). */
static hv_status
prepare_method(rpc_server *srv, rpc_call *call)
{
	const method_entry *m = method_find(srv, call->c_env->method);

	if (m == NULL || m->me_handler == NULL) {
		return (rpc_call_error(call, HV_UNIMPLEMENTED, "unknown method %.200s",
		    call->c_env->method));
	}
	call->c_method = m;
	return (HV_OK);
}

/* Decodes the payload of the call's envelope as its method's request type and checks it as
 * the envelope was checked (boundary_check). */
static hv_status
prepare_payload(rpc_server *srv, rpc_call *call)
{
	const ProtobufCMethodDescriptor *md  = call->c_method->me_desc;
	const Haven__Rpc__V1__Request   *env = call->c_env;
	hv_status                        st;

	call->c_req = protobuf_c_message_unpack(md->input, &call->c_arena.a_pb, env->payload.len,
	    env->payload.data);
	if (call->c_req == NULL) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "payload does not decode as %s (or is over the decode budget)", md->input->name));
	}
	if ((st = boundary_check(call, call->c_req, env->payload.data, env->payload.len)) != HV_OK) {
		atomic_fetch_add(&srv->sv_malformed, 1);
		return (st);
	}
	return (HV_OK);
}

/* Decodes the envelope and the payload and runs every check that comes before a handler.
 * On failure the call's error message is set and the status returned. */
static hv_status
prepare(rpc_server *srv, nng_msg *msg, rpc_call *call)
{
	const method_entry *m;
	hv_status           st;

	if ((st = prepare_envelope(srv, nng_msg_body(msg), nng_msg_len(msg), call)) != HV_OK ||
	    (st = prepare_method(srv, call)) != HV_OK) {
		return (st);
	}
	m = call->c_method;
	if ((st = identify(srv, msg, call)) != HV_OK) {
		return (st);
	}
	if ((m->me_roles & call->c_caller.role) == 0 ||
	    !auth_person_allows(&call->c_caller, m->me_name)) { /* a viewer reads only (auth.h) */
		return (rpc_call_error(call, HV_PERMISSION_DENIED, "role %s may not call %s",
		    rpc_role_name(call->c_caller.role), m->me_name));
	}
	if ((st = prepare_payload(srv, call)) != HV_OK) {
		return (st);
	}
	if (hv_clock_mono_us() >= call->c_deadline_us) {
		return (rpc_call_error(call, HV_DEADLINE_EXCEEDED, "deadline passed before dispatch"));
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
	if ((st = prepare_envelope(srv, data != NULL ? data : (const uint8_t *) "", len, call)) ==
	        HV_OK &&
	    (st = prepare_method(srv, call)) == HV_OK) {
		st = prepare_payload(srv, call);
	}
	if (errmsg != NULL && errsz > 0) {
		snprintf(errmsg, errsz, "%s", call->c_errmsg);
	}
	arena_reset(&call->c_arena);
out:
	free(call);
	return (st);
}

/* Runs the handler of a prepared call and sends its reply. */
static void
slot_run(slot *sl)
{
	rpc_call         *call  = &sl->s_call;
	ProtobufCMessage *reply = NULL;
	hv_status         st;

	if (hv_clock_mono_us() >= call->c_deadline_us) {
		st = rpc_call_error(call, HV_DEADLINE_EXCEEDED, "deadline passed while queued");
	} else {
		st = call->c_method->me_handler(call, call->c_method->me_svc, call->c_req, &reply);
	}
	slot_send(sl, st, reply);
}

/* ---- the work queue ---------------------------------------------------------------- */

static void *
worker_main(void *arg)
{
	rpc_server *srv = arg;

	for (;;) {
		slot *sl;

		pthread_mutex_lock(&srv->sv_mtx);
		while (srv->sv_qlen == 0 && !srv->sv_closing) {
			pthread_cond_wait(&srv->sv_work_cv, &srv->sv_mtx);
		}
		if (srv->sv_qlen == 0) { /* closing and drained */
			pthread_mutex_unlock(&srv->sv_mtx);
			return (NULL);
		}
		sl            = srv->sv_queue[srv->sv_qhead];
		srv->sv_qhead = (srv->sv_qhead + 1) % srv->sv_opts.queue;
		srv->sv_qlen--;
		pthread_mutex_unlock(&srv->sv_mtx);

		slot_run(sl);
	}
}

/* Queues a prepared call for a worker. Returns false when the queue is full. */
static bool
enqueue(rpc_server *srv, slot *sl)
{
	bool ok = false;

	pthread_mutex_lock(&srv->sv_mtx);
	if (srv->sv_qlen < srv->sv_opts.queue) {
		unsigned tail       = (srv->sv_qhead + srv->sv_qlen) % srv->sv_opts.queue;
		srv->sv_queue[tail] = sl;
		srv->sv_qlen++;
		pthread_cond_signal(&srv->sv_work_cv);
		ok = true;
	}
	pthread_mutex_unlock(&srv->sv_mtx);
	return (ok);
}

/* The aio callback: runs on nng's threads, never blocks on anything but short mutexes. */
static void
slot_cb(void *arg)
{
	slot       *sl  = arg;
	rpc_server *srv = sl->s_srv;
	rpc_call   *call;
	nng_msg    *msg;
	hv_status   st;
	bool        closing;
	int         rv = nng_aio_result(sl->s_aio);

	if (sl->s_state == SLOT_SEND) {
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(sl->s_aio));
		}
		arena_reset(&sl->s_call.c_arena);
		inflight_done(srv);
		sl->s_state = SLOT_RECV;
		if (rv == NNG_ECLOSED) {
			return;
		}
		nng_ctx_recv(sl->s_ctx, sl->s_aio);
		return;
	}

	/* SLOT_RECV */
	if (rv != 0) {
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
			return;
		}
		nng_ctx_recv(sl->s_ctx, sl->s_aio);
		return;
	}
	msg = nng_aio_get_msg(sl->s_aio);
	nng_aio_set_msg(sl->s_aio, NULL);

	pthread_mutex_lock(&srv->sv_mtx);
	srv->sv_inflight++;
	closing = srv->sv_closing;
	pthread_mutex_unlock(&srv->sv_mtx);

	call = &sl->s_call;
	memset(&call->c_caller, 0, sizeof(call->c_caller));
	call->c_env         = NULL;
	call->c_req         = NULL;
	call->c_method      = NULL;
	call->c_errmsg[0]   = '\0';
	call->c_start_us    = hv_clock_mono_us();
	call->c_deadline_us = call->c_start_us;

	st = prepare(srv, msg, call);
	nng_msg_free(msg); /* everything needed was copied into the arena */
	if (st == HV_OK && closing) {
		st = rpc_call_error(call, HV_UNAVAILABLE, "server is shutting down");
	}
	if (st != HV_OK) {
		slot_send(sl, st, NULL);
		return;
	}
	if (call->c_method->me_inline) {
		slot_run(sl);
		return;
	}
	if (!enqueue(srv, sl)) {
		atomic_fetch_add(&srv->sv_rejected, 1);
		slot_send(sl,
		    rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "server busy: %u calls queued",
		        srv->sv_opts.queue),
		    NULL);
	}
}

/* ---- lifecycle --------------------------------------------------------------------- */

static const rpc_method_impl health_methods[] = {
	{ .name = "Check", .handler = health_check, .roles = RPC_ROLES_ANY, .inline_handler = true },
};

static const rpc_method_impl diag_methods[] = {
	{ .name = "Echo", .handler = diag_echo, .roles = RPC_ROLES_AUTHENTICATED, .inline_handler = true },
};

/* The server's own figures at scrape time: refusals, the queue and the services' health. */
static void
rpc_collect(void *arg, metrics_writer *w)
{
	rpc_server  *srv = arg;
	health_entry health[MAX_HEALTH];
	size_t       nhealth;
	unsigned     queued, inflight;

	pthread_mutex_lock(&srv->sv_mtx);
	queued   = srv->sv_qlen;
	inflight = srv->sv_inflight;
	nhealth  = srv->sv_nhealth;
	memcpy(health, srv->sv_health, nhealth * sizeof(health[0]));
	pthread_mutex_unlock(&srv->sv_mtx);

	metrics_family(w, "haven_rpc_queue_rejected_total", METRICS_COUNTER,
	    "Calls answered RESOURCE_EXHAUSTED because the queue in front of the workers was full.");
	metrics_sample(w, "haven_rpc_queue_rejected_total", (double) atomic_load(&srv->sv_rejected),
	    (char *) NULL);
	metrics_family(w, "haven_rpc_malformed_total", METRICS_COUNTER,
	    "Calls answered INVALID_ARGUMENT before dispatch (envelope, metadata or payload).");
	metrics_sample(w, "haven_rpc_malformed_total", (double) atomic_load(&srv->sv_malformed),
	    (char *) NULL);
	metrics_family(w, "haven_rpc_ipc_relistens_total", METRICS_COUNTER,
	    "Times an ipc:// listener that stopped accepting (libnng 1.5.2) was made again.");
	metrics_sample(w, "haven_rpc_ipc_relistens_total", (double) rpc_server_ipc_restarts(srv),
	    (char *) NULL);
	metrics_family(w, "haven_rpc_queued_calls", METRICS_GAUGE,
	    "Calls waiting for a worker thread now.");
	metrics_sample(w, "haven_rpc_queued_calls", queued, (char *) NULL);
	metrics_family(w, "haven_rpc_queue_capacity", METRICS_GAUGE,
	    "Calls that may wait for a worker; more are refused.");
	metrics_sample(w, "haven_rpc_queue_capacity", srv->sv_opts.queue, (char *) NULL);
	metrics_family(w, "haven_rpc_in_flight_calls", METRICS_GAUGE,
	    "Calls received and not yet answered.");
	metrics_sample(w, "haven_rpc_in_flight_calls", inflight, (char *) NULL);
	metrics_family(w, "haven_rpc_workers", METRICS_GAUGE, "Handler threads.");
	metrics_sample(w, "haven_rpc_workers", srv->sv_opts.workers, (char *) NULL);
	metrics_family(w, "haven_rpc_serving", METRICS_GAUGE,
	    "1 while a service answers SERVING to Health/Check, else 0.");
	for (size_t i = 0; i < nhealth; i++) {
		metrics_sample(w, "haven_rpc_serving", health[i].h_serving ? 1 : 0, "service",
		    health[i].h_name, (char *) NULL);
	}
}

hv_status
rpc_server_open(rpc_server **out, const rpc_server_options *opts)
{
	rpc_server *srv;
	hv_status   st = HV_RESOURCE_EXHAUSTED;
	int         rv;

	if (out == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (opts != NULL) {
		srv->sv_opts = *opts;
	}
	if (srv->sv_opts.workers == 0) {
		srv->sv_opts.workers = 4;
	}
	if (srv->sv_opts.queue == 0) {
		srv->sv_opts.queue = 256;
	}
	if (srv->sv_opts.contexts == 0) {
		srv->sv_opts.contexts = srv->sv_opts.workers + srv->sv_opts.queue + 8;
	}
	if (srv->sv_opts.max_msg == 0) {
		srv->sv_opts.max_msg = RPC_DEFAULT_MAX_MSG;
	}
	if (srv->sv_opts.call_budget == 0) {
		srv->sv_opts.call_budget = 4 * srv->sv_opts.max_msg;
	}
	if (srv->sv_opts.default_timeout_ms == 0) {
		srv->sv_opts.default_timeout_ms = 30000;
	}
	if (srv->sv_opts.max_timeout_ms == 0) {
		srv->sv_opts.max_timeout_ms = 300000;
	}
	if (srv->sv_opts.name == NULL) {
		srv->sv_opts.name = "haven";
	}
	srv->sv_uid          = getuid();
	srv->sv_node_serving = true;
	pthread_mutex_init(&srv->sv_mtx, NULL);
	pthread_cond_init(&srv->sv_work_cv, NULL);
	(void) hv_clock_cond_init(&srv->sv_idle_cv);

	if ((st = metrics_open(&srv->sv_metrics)) != HV_OK ||
	    (st = metrics_add_collector(srv->sv_metrics, rpc_collect, srv)) != HV_OK) {
		goto fail;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((srv->sv_unknown = metrics_method_get(srv->sv_metrics, "unknown")) == NULL) {
		goto fail;
	}

	if ((rv = nng_rep0_open(&srv->sv_sock)) != 0) {
		st = hv_status_from_nng(rv);
		goto fail;
	}
	if ((rv = nng_socket_set_size(srv->sv_sock, NNG_OPT_RECVMAXSZ, srv->sv_opts.max_msg)) !=
	    0) {
		st = hv_status_from_nng(rv);
		goto fail;
	}
	if ((st = rpc_server_add_service(srv, &haven__health__v1__health__descriptor,
	         health_methods, 1, srv)) != HV_OK ||
	    (st = rpc_server_add_service(srv, &haven__diag__v1__diagnostics__descriptor,
	         diag_methods, 1, srv)) != HV_OK) {
		goto fail;
	}
	*out = srv;
	return (HV_OK);

fail:
	rpc_server_close(srv);
	return (st);
}

/* Takes an exclusive lock on "<socket path>.lock" and removes a socket file left by a node
 * that died (it holds no lock any more). The lock is held while the server lives. */
static hv_status
ipc_prepare(const char *path, listener_entry *le)
{
	char        dir[512];
	char       *slash;
	struct stat sb;
	size_t      n = strlen(path);

	if (n == 0 || n + 6 > sizeof(dir)) {
		return (HV_INVALID_ARGUMENT);
	}
	memcpy(dir, path, n + 1);
	if ((slash = strrchr(dir, '/')) == NULL) {
		log_error("rpc: ipc path %s must be absolute, in a directory of its own", path);
		return (HV_INVALID_ARGUMENT);
	}
	*slash = '\0';
	if (stat(dir[0] != '\0' ? dir : "/", &sb) != 0) {
		log_error("rpc: ipc directory %s: %s", dir, strerror(errno));
		return (hv_status_from_errno(errno));
	}
	if (sb.st_uid != getuid() || (sb.st_mode & 077) != 0) {
		log_error("rpc: ipc directory %s must belong to this user and be closed to others "
		          "(mode 0700)",
		    dir);
		return (HV_PERMISSION_DENIED);
	}
	if ((le->l_lockpath = malloc(n + 6)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	snprintf(le->l_lockpath, n + 6, "%s.lock", path);
	le->l_lockfd = open(le->l_lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (le->l_lockfd < 0) {
		return (hv_status_from_errno(errno));
	}
	if (flock(le->l_lockfd, LOCK_EX | LOCK_NB) != 0) {
		log_error("rpc: %s is in use by another running node", path);
		close(le->l_lockfd);
		le->l_lockfd = -1;
		return (HV_ALREADY_EXISTS);
	}
	(void) unlink(path); /* a stale socket of a dead node */
	return (HV_OK);
}

static hv_status
tls_server_config(const rpc_server_options *o, nng_tls_config **out)
{
	nng_tls_config *cfg = NULL;
	int             rv;

	if (o->tls_ca_file == NULL || o->tls_cert_file == NULL || o->tls_key_file == NULL) {
		log_error("rpc: tls+tcp:// needs a CA file, a certificate file and a key file");
		return (HV_INVALID_ARGUMENT);
	}
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) != 0 ||
	    (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
	    (rv = nng_tls_config_ca_file(cfg, o->tls_ca_file)) != 0 ||
	    (rv = rpc_tls_own_cert(cfg, o->tls_cert_file, o->tls_key_file)) != 0) {
		log_error("rpc: TLS configuration failed: %s", nng_strerror(rv));
		if (cfg != NULL) {
			nng_tls_config_free(cfg);
		}
		return (rv == NNG_ENOENT ? HV_NOT_FOUND : HV_INVALID_ARGUMENT);
	}
	*out = cfg;
	return (HV_OK);
}

/* Creates and starts le's nng listener on le->l_url (TLS configuration made on first use). */
static hv_status
listener_open(rpc_server *srv, listener_entry *le)
{
	hv_status st;
	int       rv;

	if ((rv = nng_listener_create(&le->l_listener, srv->sv_sock, le->l_url)) != 0) {
		log_error("rpc: cannot listen on %s: %s", le->l_url, nng_strerror(rv));
		return (hv_status_from_nng(rv));
	}
	/* Before it accepts: pipe_transport must know its first pipe. */
	__atomic_store_n(&le->l_id, nng_listener_id(le->l_listener), __ATOMIC_RELEASE);
	if ((rv = nng_listener_set_size(le->l_listener, NNG_OPT_RECVMAXSZ, srv->sv_opts.max_msg)) !=
	    0) {
		st = hv_status_from_nng(rv);
		goto fail;
	}
	if (le->l_transport == RPC_TRANSPORT_IPC &&
	    (rv = nng_listener_set_int(le->l_listener, NNG_OPT_IPC_PERMISSIONS, 0600)) != 0) {
		st = hv_status_from_nng(rv);
		goto fail;
	}
	if (le->l_transport == RPC_TRANSPORT_TLS) {
		if (le->l_tls == NULL && (st = tls_server_config(&srv->sv_opts, &le->l_tls)) != HV_OK) {
			goto fail;
		}
		if ((rv = nng_listener_set_ptr(le->l_listener, NNG_OPT_TLS_CONFIG, le->l_tls)) != 0) {
			st = hv_status_from_nng(rv);
			goto fail;
		}
	}
	if ((rv = nng_listener_start(le->l_listener, 0)) != 0) {
		log_error("rpc: cannot listen on %s: %s", le->l_url, nng_strerror(rv));
		st = hv_status_from_nng(rv);
		goto fail;
	}
	return (HV_OK);
fail:
	nng_listener_close(le->l_listener);
	return (st);
}

hv_status
rpc_server_listen(rpc_server *srv, const char *url)
{
	listener_entry *le;
	hv_status       st;

	if (srv == NULL || url == NULL || srv->sv_started) {
		return (HV_INVALID_ARGUMENT);
	}
	if (srv->sv_nlisteners == MAX_LISTENERS) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	le = &srv->sv_listeners[srv->sv_nlisteners];
	memset(le, 0, sizeof(*le));
	le->l_lockfd = -1;
	if ((st = rpc_url_transport(url, srv->sv_opts.insecure_tcp, &le->l_transport)) != HV_OK) {
		return (st);
	}
	if ((le->l_url = strdup(url)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if ((le->l_transport != RPC_TRANSPORT_IPC ||
	        (st = ipc_prepare(url + strlen("ipc://"), le)) == HV_OK) &&
	    (st = listener_open(srv, le)) == HV_OK) {
		srv->sv_nlisteners++;
		return (HV_OK);
	}
	if (le->l_tls != NULL) {
		nng_tls_config_free(le->l_tls);
	}
	if (le->l_lockfd >= 0) {
		close(le->l_lockfd);
	}
	free(le->l_lockpath);
	free(le->l_url);
	memset(le, 0, sizeof(*le));
	return (st);
}

/* ---- the ipc:// listener watchdog ------------------------------------------------------- */

/*
 * libnng 1.5.2 (Debian 12's) has a flaw in its ipc:// transport (nng issue #1518, fixed in
 * 1.6): when a peer disconnects while the connection is still negotiating, the listener may
 * take the error for its own closing and stop accepting, for good. Calls on connections made
 * before keep working; every new connection hangs until its caller's deadline. Any process
 * of the node's user can cause it by connecting and closing at once (a CLI refused for its
 * arguments used to). tls+tcp:// listeners were not found to be affected.
 *
 * So every IPC_PROBE_EVERY_MS this thread makes a fresh connection to each ipc:// listener
 * and calls Health/Check, which completes the negotiation properly (it cannot itself cause
 * the fault). After IPC_PROBE_FAILS failures in a row the listener is closed and made again
 * on the same path, still under its lock; its existing connections close with it and their
 * clients reconnect.
 */
static hv_status
ipc_probe(const char *url)
{
	Haven__Health__V1__HealthCheckRequest req = HAVEN__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	rpc_call_options  o     = { .timeout_ms = IPC_PROBE_TIMEOUT_MS, .idempotent = true };
	ProtobufCMessage *reply = NULL;
	rpc_channel      *ch    = NULL;
	hv_status         st;

	if ((st = rpc_channel_open(&ch, url, NULL)) != HV_OK) {
		return (st);
	}
	st = rpc_channel_call(ch, "haven.health.v1.Health/Check", &req.base,
	    &haven__health__v1__health_check_response__descriptor, &reply, &o, NULL, 0);
	protobuf_c_message_free_unpacked(reply, NULL);
	rpc_channel_close(ch);
	return (st);
}

static void
ipc_relisten(rpc_server *srv, listener_entry *le)
{
	hv_status st;

	log_warn("rpc: %s stopped accepting connections (libnng 1.5.2, nng issue #1518); "
	         "listening again",
	    le->l_url);
	nng_listener_close(le->l_listener);
	(void) unlink(le->l_url + strlen("ipc://")); /* ours: the lock is held */
	if ((st = listener_open(srv, le)) != HV_OK) {
		log_error("rpc: cannot listen on %s again: %s (tried again in %d ms)", le->l_url,
		    hv_status_name(st), IPC_PROBE_EVERY_MS);
		return;
	}
	__atomic_add_fetch(&le->l_restarts, 1, __ATOMIC_RELAXED);
	le->l_failed = 0;
}

/* One watchdog round (the ticker, every IPC_PROBE_EVERY_MS): probes each ipc listener. */
static void
ipc_watch_round(void *arg)
{
	rpc_server *srv = arg;
	bool        closing;

	pthread_mutex_lock(&srv->sv_mtx);
	closing = srv->sv_closing;
	pthread_mutex_unlock(&srv->sv_mtx);
	for (size_t i = 0; !closing && i < srv->sv_nlisteners; i++) {
		listener_entry *le = &srv->sv_listeners[i];
		hv_status       st;

		if (le->l_transport != RPC_TRANSPORT_IPC) {
			continue;
		}
		st = ipc_probe(le->l_url);
		/* A full queue or a refusal is an answer: the listener accepted. */
		if (st == HV_DEADLINE_EXCEEDED || st == HV_UNAVAILABLE) {
			if (++le->l_failed >= IPC_PROBE_FAILS) {
				ipc_relisten(srv, le);
			}
		} else {
			le->l_failed = 0;
		}
	}
}

uint64_t
rpc_server_ipc_restarts(rpc_server *srv)
{
	uint64_t n = 0;

	for (size_t i = 0; srv != NULL && i < srv->sv_nlisteners; i++) {
		n += __atomic_load_n(&srv->sv_listeners[i].l_restarts, __ATOMIC_RELAXED);
	}
	return (n);
}

hv_status
rpc_server_start(rpc_server *srv)
{
	int rv;

	if (srv == NULL || srv->sv_started) {
		return (HV_INVALID_ARGUMENT);
	}
	srv->sv_queue   = calloc(srv->sv_opts.queue, sizeof(slot *));
	srv->sv_workers = calloc(srv->sv_opts.workers, sizeof(pthread_t));
	srv->sv_slots   = calloc(srv->sv_opts.contexts, sizeof(slot));
	if (srv->sv_queue == NULL || srv->sv_workers == NULL || srv->sv_slots == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	srv->sv_started = true;
	for (unsigned i = 0; i < srv->sv_opts.workers; i++) {
		if (pthread_create(&srv->sv_workers[i], NULL, worker_main, srv) != 0) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		srv->sv_nworkers++;
	}
	for (unsigned i = 0; i < srv->sv_opts.contexts; i++) {
		slot *sl  = &srv->sv_slots[i];
		sl->s_srv = srv;
		arena_init(&sl->s_call.c_arena, srv->sv_opts.call_budget);
		sl->s_call.c_srv = srv;
		if ((rv = nng_aio_alloc(&sl->s_aio, slot_cb, sl)) != 0) {
			return (hv_status_from_nng(rv));
		}
		if ((rv = nng_ctx_open(&sl->s_ctx, srv->sv_sock)) != 0) {
			nng_aio_free(sl->s_aio);
			sl->s_aio = NULL;
			return (hv_status_from_nng(rv));
		}
		srv->sv_nslots++;
		sl->s_state = SLOT_RECV;
		nng_ctx_recv(sl->s_ctx, sl->s_aio);
	}
	for (size_t i = 0; i < srv->sv_nlisteners && srv->sv_watch == NULL; i++) {
		if (srv->sv_listeners[i].l_transport == RPC_TRANSPORT_IPC) {
			(void) hv_ticker_start(
			    &srv->sv_watch, IPC_PROBE_EVERY_MS, false, ipc_watch_round, srv);
		}
	}
	log_info("rpc: %s serving with %u workers, queue %u, %u contexts", srv->sv_opts.name,
	    srv->sv_opts.workers, srv->sv_opts.queue, srv->sv_opts.contexts);
	return (HV_OK);
}

metrics *
rpc_server_metrics(rpc_server *srv)
{
	return (srv != NULL ? srv->sv_metrics : NULL);
}

void
rpc_server_get_stats(rpc_server *srv, rpc_server_stats *out)
{
	out->calls     = atomic_load(&srv->sv_calls);
	out->rejected  = atomic_load(&srv->sv_rejected);
	out->malformed = atomic_load(&srv->sv_malformed);
}

void
rpc_server_close(rpc_server *srv)
{
	struct timespec until;

	if (srv == NULL) {
		return;
	}
	/* Stop taking new calls, let queued and running ones finish (bounded wait). */
	pthread_mutex_lock(&srv->sv_mtx);
	srv->sv_closing = true;
	pthread_cond_broadcast(&srv->sv_work_cv);
	hv_clock_deadline(&until, 10000);
	while (srv->sv_inflight > 0) {
		if (pthread_cond_timedwait(&srv->sv_idle_cv, &srv->sv_mtx, &until) != 0) {
			log_warn("rpc: %u calls still in flight at shutdown", srv->sv_inflight);
			break;
		}
	}
	pthread_mutex_unlock(&srv->sv_mtx);
	hv_ticker_stop(srv->sv_watch); /* it touches the listeners */
	srv->sv_watch = NULL;
	for (unsigned i = 0; i < srv->sv_nworkers; i++) {
		pthread_join(srv->sv_workers[i], NULL);
	}

	/* Closing the socket completes every pending receive with NNG_ECLOSED; freeing an aio
	 * waits for its callback. */
	nng_close(srv->sv_sock);
	for (unsigned i = 0; i < srv->sv_nslots; i++) {
		nng_aio_free(srv->sv_slots[i].s_aio);
		arena_reset(&srv->sv_slots[i].s_call.c_arena);
	}
	for (size_t i = 0; i < srv->sv_nlisteners; i++) {
		listener_entry *le = &srv->sv_listeners[i];
		if (le->l_tls != NULL) {
			nng_tls_config_free(le->l_tls);
		}
		if (le->l_lockfd >= 0) {
			if (le->l_lockpath != NULL) {
				/* Remove the socket (path = lock path minus ".lock") while still
				 * holding the lock, so no other node's socket is removed. */
				size_t n = strlen(le->l_lockpath) - 5;
				le->l_lockpath[n] = '\0';
				(void) unlink(le->l_lockpath);
			}
			close(le->l_lockfd);
		}
		free(le->l_lockpath);
		free(le->l_url);
	}
	free(srv->sv_slots);
	free(srv->sv_queue);
	free(srv->sv_workers);
	free(srv->sv_methods);
	metrics_close(srv->sv_metrics);
	pthread_cond_destroy(&srv->sv_work_cv);
	pthread_cond_destroy(&srv->sv_idle_cv);
	pthread_mutex_destroy(&srv->sv_mtx);
	free(srv);
}
