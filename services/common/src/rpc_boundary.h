/*
 * rpc_boundary.h - what a decoded message may carry into a handler, private to libhaven
 * (rpc_boundary.c; rpc.h, "Decoding is strict at the boundary"). Below the dispatch.
 */
#ifndef HAVEN_RPC_BOUNDARY_H
#define HAVEN_RPC_BOUNDARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc_call.h"

#define PB_DEPTH_MAX 64 /* message nesting followed by the boundary's walks */

/* Drops the unknown fields of m and of every message below it (singular, repeated and oneof
 * members), freeing them with a when not NULL (the allocator m was decoded with). Sets *field0
 * and *where (the message's type) when one of them was numbered 0. Returns false, with *where
 * set, when messages are nested deeper than PB_DEPTH_MAX (those below are left as they are). */
bool rpc_pb_drop_unknown(ProtobufCMessage *m, ProtobufCAllocator *a, unsigned depth, bool *field0,
    const char **where);

/* Checks and cleans a message call decoded from [data, data + len): no NUL in a string, no
 * field numbered 0; its unknown fields dropped. On failure the call's error is set. */
hv_status rpc_boundary_check(rpc_call *call, ProtobufCMessage *m, const uint8_t *data, size_t len);

#endif
