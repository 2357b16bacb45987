/*
 * rpc.h - gRPC-style calls over nng.
 *
 * Every call is one haven.rpc.v1.Request envelope sent on an nng REQ context and answered by
 * one haven.rpc.v1.Reply on a REP context (proto/haven/rpc/v1/rpc.proto). Methods are named
 * "package.Service/Method" and described by protoc-c's service descriptors.
 *
 * Server. One nng REP socket, listening on any number of inproc://, ipc:// and tls+tcp://
 * URLs (plain tcp:// only with insecure_tcp). A pool of nng contexts receives, decodes and
 * sends; handlers, which may block (LMDB, nested calls), run on a bounded pool of worker
 * threads. When the queue in front of the workers is full the call is answered at once with
 * RESOURCE_EXHAUSTED. Before a handler runs the server checks, in this order: envelope and
 * payload decode (INVALID_ARGUMENT), method known (UNIMPLEMENTED), caller identity
 * (UNAUTHENTICATED for a bad token), role allowed (PERMISSION_DENIED), deadline not passed
 * (DEADLINE_EXCEEDED). Decoding is strict at the boundary: a string field holding a NUL byte
 * (a method name "A\0B" among them) or a field numbered 0 is INVALID_ARGUMENT, and fields the
 * .proto does not define (unknown fields) are dropped from the envelope and the request at
 * every depth, so no handler sees them, nothing stores them and no reply carries them (they
 * are dropped from replies before packing too).
 *
 * The same server also answers the Connect protocol over HTTP (connect.h): one dispatch
 * (rpc_dispatch.c) behind two transports (rpc_nng.c, connect.c), so both run the same checks,
 * handlers, workers, limits and metrics.
 *
 * Identity. A call carrying `authorization` metadata is the organisation its session token
 * names, or the person of an organisation whose session it is (rpc_caller.person; auth.h,
 * services/people), or is refused. A person who is a viewer calls only methods that read
 * (auth_person_allows, checked with the roles). Otherwise a peer on ipc:// with the server's
 * own uid, or a peer in the same process (inproc://), is the local operator; anyone else is
 * anonymous, and so is every HTTP caller without a token (RPC_TRANSPORT_HTTP: no peer
 * credentials).
 * Handlers get the verified caller, never what the request claims.
 *
 * Client. A channel dials one URL with one REQ socket; calls from many threads share it, each
 * on its own context with its own timeout. The REQ socket never resends a request by itself.
 * A call is retried (with backoff, within its timeout) only when it is idempotent or carries
 * an idempotency key, and only when it failed with UNAVAILABLE. rpc_channel_call blocks its
 * thread until the reply; rpc_channel_call_async keeps many calls in flight without a thread
 * each (nng contexts driven from their aio callbacks).
 */
#ifndef HAVEN_RPC_H
#define HAVEN_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/status.h"

/* Caller roles. A method lists the roles that may call it as a bit mask. */
typedef enum rpc_role {
	RPC_ROLE_ANONYMOUS            = 1u << 0, /* no identity: only Health and Auth */
	RPC_ROLE_OPERATOR             = 1u << 1, /* the node's own user over ipc://, or inproc:// */
	RPC_ROLE_ADMIN                = 1u << 2,
	RPC_ROLE_COORDINATOR          = 1u << 3,
	RPC_ROLE_REFERRER             = 1u << 4,
	RPC_ROLE_PROVIDER             = 1u << 5,
	RPC_ROLE_MUNICIPALITY         = 1u << 6,
	RPC_ROLE_NATIONAL_COORDINATOR = 1u << 7, /* a coordinator of every region */
} rpc_role;

#define RPC_ROLE_LAST RPC_ROLE_NATIONAL_COORDINATOR
/* Both kinds of coordinator: the methods are the same, the scope differs (docs/authority.md). */
#define RPC_ROLES_COORDINATORS (RPC_ROLE_COORDINATOR | RPC_ROLE_NATIONAL_COORDINATOR)
#define RPC_ROLES_ORGS                                                                             \
	(RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS | RPC_ROLE_REFERRER | RPC_ROLE_PROVIDER |         \
	    RPC_ROLE_MUNICIPALITY)
#define RPC_ROLES_AUTHENTICATED (RPC_ROLE_OPERATOR | RPC_ROLES_ORGS)
#define RPC_ROLES_ANY           (RPC_ROLE_ANONYMOUS | RPC_ROLES_AUTHENTICATED)

/* "referrer", "provider", ...; "unknown" for anything else. */
const char *rpc_role_name(rpc_role role);
/* Parses one role name; returns 0 and sets *out, or -1. */
int rpc_role_parse(const char *name, rpc_role *out);

typedef enum rpc_transport {
	RPC_TRANSPORT_INPROC,
	RPC_TRANSPORT_IPC,
	RPC_TRANSPORT_TLS,
	RPC_TRANSPORT_TCP,
	RPC_TRANSPORT_HTTP, /* the Connect API (connect.h): identity only from a token */
} rpc_transport;

#define RPC_ORG_ID_MAX    64 /* including the NUL */
#define RPC_PERSON_ID_MAX 33 /* 32 hex characters and the NUL */

/* A person's role within the organisation (services/people, haven.people.v1.PersonRole). */
typedef enum rpc_person_role {
	RPC_PERSON_NONE        = 0, /* not a person: a certificate's session, the operator */
	RPC_PERSON_ORG_ADMIN   = 1,
	RPC_PERSON_CASE_WORKER = 2,
	RPC_PERSON_VIEWER      = 3,
} rpc_person_role;

/* The person behind a call made with a person's session (auth.h, people). */
typedef struct rpc_person {
	char            id[RPC_PERSON_ID_MAX]; /* "" when the caller is not a person */
	rpc_person_role role;
} rpc_person;

/* The verified caller of a call. */
typedef struct rpc_caller {
	rpc_role      role;
	char          org_id[RPC_ORG_ID_MAX]; /* "" for the operator and anonymous callers */
	rpc_transport transport;
	rpc_person    person; /* a person's session: who, and the role within org_id */
} rpc_caller;

typedef struct rpc_metadata {
	const char *key;   /* lower-case ASCII [a-z0-9-_], 1..64 bytes */
	const char *value; /* at most 4096 bytes */
} rpc_metadata;

#define RPC_METADATA_MAX 16 /* entries per call */

/* Metadata `haven-activity: background` marks a call no person made (an open page's own
 * refresh, an event stream's poll): a person's session is checked as for any call but not
 * counted as used, so it still ends when its person is idle (auth_verify_token_passive). Over
 * the Connect API it is the header Haven-Activity. Any other value, or none, is a use. */
#define RPC_MD_ACTIVITY         "haven-activity"
#define RPC_ACTIVITY_BACKGROUND "background"
#define RPC_METHOD_NAME_MAX     256
#define RPC_IDEMPOTENCY_KEY_MAX 128
#define RPC_DEFAULT_MAX_MSG     (1024 * 1024)

/* ---- server ------------------------------------------------------------------------ */

typedef struct rpc_server rpc_server;
typedef struct rpc_call   rpc_call;
typedef struct auth       auth; /* auth.h */

/* A method handler. req is the decoded request (owned by the call). On HV_OK the handler
 * sets *reply to a message of the method's output type, allocated with rpc_call_alloc() or
 * otherwise alive until the handler's call ends (the server packs it and does not free it;
 * it may clear the reply's unknown fields before packing, without freeing them).
 * On any other status *reply is ignored and the caller gets the status and the message set
 * with rpc_call_error() (or the status name). */
typedef hv_status (
    *rpc_handler)(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply);

typedef struct rpc_method_impl {
	const char *name; /* the method's name in the .proto: "Check" */
	rpc_handler handler;
	unsigned    roles; /* rpc_role bits that may call it; 0 denies everyone */
	/* Runs on the receiving nng thread instead of a worker. Only for handlers that never
	 * block and finish in microseconds (Health, Echo). */
	bool inline_handler;
} rpc_method_impl;

typedef struct rpc_server_options {
	unsigned workers;            /* handler threads; 0: 4 */
	unsigned queue;              /* calls waiting for a worker; 0: 256 */
	unsigned contexts;           /* nng contexts receiving at once; 0: workers + queue + 8 */
	size_t   max_msg;            /* receive limit per message; 0: RPC_DEFAULT_MAX_MSG */
	size_t   call_budget;        /* decode and reply arena per call; 0: 4 * max_msg */
	uint32_t default_timeout_ms; /* for requests without one; 0: 30000 */
	uint32_t max_timeout_ms;     /* longer requested timeouts are cut to this; 0: 300000 */
	bool     insecure_tcp;       /* allow plain tcp:// (development only) */
	/* For tls+tcp:// listeners: PEM files. Client certificates are required and must chain
	 * to ca_file. */
	const char *tls_ca_file;
	const char *tls_cert_file;
	const char *tls_key_file;
	/* Session token verification; NULL: calls with a token are UNAUTHENTICATED. Not owned. */
	auth *auth;
	/* Name used in log lines. */
	const char *name;
} rpc_server_options;

/* Creates a server; opts may be NULL. Health and Diagnostics are registered already. */
hv_status rpc_server_open(rpc_server **out, const rpc_server_options *opts);

/* Adds the methods of a service. Every impl must name a method of desc; methods of desc
 * without an impl answer UNIMPLEMENTED. svc is passed to every handler. Before start only. */
hv_status rpc_server_add_service(rpc_server *srv, const ProtobufCServiceDescriptor *desc,
    const rpc_method_impl *impls, size_t n, void *svc);

/* Listens on a URL (several allowed). ipc:// paths must be in a directory only this user can
 * enter; the socket is made 0600, and a lock file beside it keeps a second node off the same
 * path. Before start only. */
hv_status rpc_server_listen(rpc_server *srv, const char *url);

/* Starts workers and receiving contexts. */
hv_status rpc_server_start(rpc_server *srv);

/* Marks a service (full name, "" for the node) SERVING or NOT_SERVING for Health/Check. */
void rpc_server_set_serving(rpc_server *srv, const char *service, bool serving);

/* Stops receiving, lets queued and running calls finish, closes and frees. NULL allowed. */
void rpc_server_close(rpc_server *srv);

/* The server's metrics registry: rpc_server_metrics of metrics.h. */

/* Calls fn for every method the server knows, in name order: its full name, the rpc_role bits
 * that may call it, and whether it has a handler (one without answers UNIMPLEMENTED). For the
 * authority table's check (docs/authority.md) and tools; not while services are added. */
typedef void (*rpc_method_fn)(void *arg, const char *method, unsigned roles, bool implemented);
void rpc_server_foreach_method(rpc_server *srv, rpc_method_fn fn, void *arg);

/* Counters for metrics and tests. */
typedef struct rpc_server_stats {
	uint64_t calls;     /* replies sent */
	uint64_t rejected;  /* answered RESOURCE_EXHAUSTED because the queue was full */
	uint64_t malformed; /* answered INVALID_ARGUMENT before dispatch */
} rpc_server_stats;
void rpc_server_get_stats(rpc_server *srv, rpc_server_stats *out);

/* How often a listener of transport t (RPC_TRANSPORT_IPC or RPC_TRANSPORT_TLS) was made
 * again after it stopped accepting connections (libnng 1.5.2: a peer that drops while its
 * connection negotiates can stop a listener for good; nng issue #1518 for ipc://, the same
 * through the TLS stream for tls+tcp://). The server calls each such listener every 2 s with
 * a Health/Check over a fresh connection (tls+tcp:// with a certificate of its own, trusted by
 * itself only) and listens again after 3 failures in a row (rpc_nng.c). */
uint64_t rpc_server_relistens(rpc_server *srv, rpc_transport t);

/* Inside a handler. */
const rpc_caller *rpc_call_caller(const rpc_call *call);
const char       *rpc_call_method(const rpc_call *call);
/* Where the call comes from: LIMIT_SOURCE_LEN bytes, a keyed hash of the client's address
 * (limit.h), for rate limits only; NULL when the transport cannot tell (nng; HTTP without a
 * trusted proxy, connect.h). Valid while the call runs. Never log or store it. */
const uint8_t *rpc_call_source(const rpc_call *call);
uint64_t       rpc_call_request_id(const rpc_call *call);
/* The call's idempotency key, "" when none. */
const char *rpc_call_idempotency_key(const rpc_call *call);
/* The value of a metadata key, or NULL. */
const char *rpc_call_metadata(const rpc_call *call, const char *key);
/* Milliseconds left until the call's deadline (0 when passed); pass it on to nested calls. */
uint32_t rpc_call_remaining_ms(const rpc_call *call);
/* Memory that lives until the reply has been sent. NULL when the call's budget is spent. */
void *rpc_call_alloc(rpc_call *call, size_t n);
char *rpc_call_strdup(rpc_call *call, const char *s);
/* The call's arena as a protobuf-c allocator (for unpacking nested messages). */
ProtobufCAllocator *rpc_call_allocator(rpc_call *call);
/* The call's arena itself (haven/arena.h), for a service that builds its work and its reply
 * in it with marks; valid until the reply has been sent. */
struct arena *rpc_call_arena(rpc_call *call);
/* Sets the reply's message (printf-style, truncated to 255 bytes) and returns code, so that
 * `return rpc_call_error(call, HV_NOT_FOUND, "no service %s", id);` reads naturally.
 * Never put personal data in it. */
hv_status rpc_call_error(rpc_call *call, hv_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- client ------------------------------------------------------------------------ */

typedef struct rpc_channel rpc_channel;

typedef struct rpc_channel_options {
	size_t      max_msg;         /* 0: RPC_DEFAULT_MAX_MSG */
	bool        insecure_tcp;    /* allow plain tcp:// */
	const char *tls_ca_file;     /* tls+tcp://: the node's CA */
	const char *tls_cert_file;   /* tls+tcp://: this organisation's certificate ... */
	const char *tls_key_file;    /* ... and key */
	const char *tls_server_name; /* NULL: the URL's host */
	unsigned    connections;     /* connections to the server, 1..64; 0: 1 */
} rpc_channel_options;

/* Opens a channel to url. Dialing happens in the background: a server that is not up yet is
 * waited for by the first calls, within their timeouts. opts may be NULL. */
hv_status rpc_channel_open(rpc_channel **out, const char *url, const rpc_channel_options *opts);
void      rpc_channel_close(rpc_channel *ch);

/* Sets (copies) the session token sent as `authorization` with every call; NULL clears. */
hv_status rpc_channel_set_token(rpc_channel *ch, const char *token);
/* Copies the channel's session token into out (outsz bytes), e.g. to carry it as an HTTP
 * bearer token (connect.h): HV_NOT_FOUND when it has none, HV_OUT_OF_RANGE when out is too
 * small (out is then ""). The token is a secret: wipe out after use. */
hv_status rpc_channel_token(rpc_channel *ch, char *out, size_t outsz);

typedef struct rpc_call_options {
	uint32_t            timeout_ms;      /* 0: 10000 */
	const char         *idempotency_key; /* NULL: none */
	bool                idempotent;      /* the method is safe to repeat */
	const rpc_metadata *metadata;
	size_t              n_metadata;
} rpc_call_options;

#define RPC_ERRMSG_MAX 256

/* Calls method with req and waits for the reply. On HV_OK, *reply is the decoded reply of type
 * reply_desc, owned by the caller: free it with protobuf_c_message_free_unpacked(*reply,
 * NULL). On failure *reply is NULL and errmsg (when not NULL, errsz bytes) names the problem.
 * Safe to call from many threads on one channel. opts may be NULL. */
hv_status rpc_channel_call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
    const rpc_call_options *opts, char *errmsg, size_t errsz);

/* The completion of an asynchronous call. st is the call's status; on HV_OK reply is the
 * decoded reply, owned by the function (free it with protobuf_c_message_free_unpacked(reply,
 * NULL)), else NULL and errmsg names the problem (valid during the function only). Runs on one
 * of nng's threads: it must not block (no blocking rpc_channel_call, no waiting on locks held
 * for long, no store writes; hand such work to a thread of your own). It may start further
 * asynchronous calls. */
typedef void (*rpc_done_fn)(void *arg, hv_status st, ProtobufCMessage *reply, const char *errmsg);

/* Starts a call and returns at once, without a thread per call: for a caller with many calls
 * in flight (a fan-out, a benchmark). req is packed before the function returns and not kept.
 * On HV_OK done(arg, ...) runs exactly once, later, on an nng thread; on any other status
 * (INVALID_ARGUMENT: a missing argument or a request over the size or metadata limit;
 * RESOURCE_EXHAUSTED: more than 4096 calls in flight on the channel, or no memory;
 * UNAVAILABLE: the channel is closing) it never runs. Timeouts and metadata as
 * rpc_channel_call; unlike it, no retry: an UNAVAILABLE call is the caller's to repeat.
 * rpc_channel_close ends calls still in flight with UNAVAILABLE (their done runs before it
 * returns), so it must not be called from a done function. */
hv_status rpc_channel_call_async(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, const rpc_call_options *opts, rpc_done_fn done,
    void *arg);

/* Sends raw bytes as a request and returns the raw reply (malloc'd, caller frees). For tests
 * of malformed envelopes and for tools; no retry. */
hv_status rpc_channel_call_raw(rpc_channel *ch, const void *req, size_t reqlen, void **reply,
    size_t *replylen, uint32_t timeout_ms);

#endif
