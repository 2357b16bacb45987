/*
 * rpc_call.h - one call inside the RPC server, private to libhaven: the bottom of the server's
 * pieces. The call's accessors for handlers are in rpc.h (rpc_call_*, rpc_call.c); the boundary
 * checks (rpc_boundary.c) and the dispatch (rpc_dispatch.c) work on this struct, and the
 * transports (rpc_nng.c, connect.c) own one per call in flight.
 */
#ifndef HAVEN_RPC_CALL_H
#define HAVEN_RPC_CALL_H

#include "haven/arena.h"
#include "haven/limit.h"
#include "haven/metrics.h"
#include "haven/rpc.h"

#include "haven/rpc/v1/rpc.pb-c.h"

typedef struct rpc_method_entry {
	char                             me_name[RPC_METHOD_NAME_MAX]; /* full name */
	const ProtobufCMethodDescriptor *me_desc;
	rpc_handler                      me_handler; /* NULL: UNIMPLEMENTED */
	unsigned                         me_roles;
	bool                             me_inline;
	void                            *me_svc;
	metrics_method                  *me_metrics; /* calls and latency of this method */
} rpc_method_entry;

/* The transport's completion: called exactly once per submitted (or failed) call, on a worker
 * thread, on the thread that submitted it (inline handlers, refusals) or in rpc_dispatch_fail.
 * On HV_OK reply is the handler's reply (alive in the call's arena), else NULL. */
typedef void (*rpc_reply_fn)(rpc_call *call, hv_status code, const ProtobufCMessage *reply);

struct rpc_call {
	rpc_server              *c_srv;
	const rpc_method_entry  *c_method;
	Haven__Rpc__V1__Request *c_env;
	ProtobufCMessage        *c_req;
	rpc_caller               c_caller;
	int64_t                  c_start_us;
	int64_t                  c_deadline_us;
	char                     c_errmsg[RPC_ERRMSG_MAX];
	rpc_reply_fn             c_reply; /* set by the transport */
	/* Set by the transport (or NULL): runs before the handler, on the thread that runs it (a
	 * worker unless inline), for work too heavy for nng's threads (a JSON payload's decode).
	 * A status other than HV_OK goes to c_reply instead of the handler. */
	hv_status (*c_prepare)(rpc_call *call);
	void *c_transport; /* the transport's per-call state */
	/* Where the call comes from, as limit_source made it (limit.h): set by a transport that
	 * knows it (the Connect API behind a trusted proxy), after rpc_dispatch_begin. */
	uint8_t c_source[LIMIT_SOURCE_LEN];
	bool    c_has_source;
	arena   c_arena;
};

#endif
