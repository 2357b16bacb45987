/*
 * rpc_channel.h - a client channel's insides, private to libhaven: shared by the blocking
 * calls (rpc_client.c, which owns the channel's life) and the asynchronous ones
 * (rpc_async.c, which only borrows from it).
 */
#ifndef HAVEN_RPC_CHANNEL_H
#define HAVEN_RPC_CHANNEL_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdatomic.h>

#include "haven/rpc.h"

#define RPC_POOL_MAX  64   /* idle contexts kept for blocking calls */
#define RPC_ASYNC_MAX 4096 /* asynchronous calls in flight on one channel */

typedef struct rpc_pooled_ctx {
	nng_ctx  pc_ctx;
	nng_aio *pc_aio;
} rpc_pooled_ctx;

/* One asynchronous call's context and aio, reused from call to call (rpc_async.c). */
typedef struct rpc_async rpc_async;
struct rpc_async {
	rpc_channel                      *a_ch;
	nng_ctx                           a_ctx;
	nng_aio                          *a_aio;
	bool                              a_receiving; /* the request went out */
	uint64_t                          a_id;
	int64_t                           a_deadline_ms;
	const ProtobufCMessageDescriptor *a_reply_desc;
	rpc_done_fn                       a_done;
	void                             *a_arg;
	rpc_async                        *a_next_free; /* ch_afree */
	rpc_async                        *a_next_all;  /* ch_aall */
};

struct rpc_channel {
	nng_socket      ch_sock;
	nng_tls_config *ch_tls;
	char           *ch_url;
	size_t          ch_max_msg;
	atomic_int      ch_pipes; /* connected pipes, from pipe notifications */
	atomic_ullong   ch_next_id;

	pthread_mutex_t ch_mtx; /* guards everything below */
	char           *ch_token;
	rpc_pooled_ctx  ch_pool[RPC_POOL_MAX];
	unsigned        ch_npool;
	rpc_async      *ch_afree; /* idle asynchronous slots */
	rpc_async      *ch_aall;  /* every asynchronous slot, freed by rpc_channel_close */
	unsigned        ch_nasync;
	bool            ch_closing;
};

/* Packs the envelope (method, id, timeout_ms, the channel's token and o's metadata and
 * idempotency key) and req into one new nng message *out. HV_INVALID_ARGUMENT when req is over
 * the channel's message size or there are more than RPC_METADATA_MAX metadata entries. */
hv_status rpc_request_pack(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const rpc_call_options *o, uint32_t timeout_ms, uint64_t id, nng_msg **out);

/* Decodes a reply message (and frees it) for the request numbered id: its status and message
 * (into errmsg, errsz bytes, may be NULL) and on HV_OK *reply, of type reply_desc, which the
 * caller frees with protobuf_c_message_free_unpacked(*reply, NULL). */
hv_status rpc_reply_decode(nng_msg *rep, uint64_t id, const ProtobufCMessageDescriptor *reply_desc,
    ProtobufCMessage **reply, char *errmsg, size_t errsz);

/* The status of a failed send (sending) or receive of a call: no connection, deadline, ...;
 * errmsg as above. */
hv_status rpc_channel_nng_error(rpc_channel *ch, int rv, bool sending, char *errmsg, size_t errsz);

#endif
