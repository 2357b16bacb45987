/*
 * rpc_call.c - what a handler may ask of its call (rpc.h, "Inside a handler"): the caller,
 * method, request id, idempotency key, metadata, time left, the call's arena and its error
 * message. The bottom of the server's pieces: it calls none of the others.
 */
#include "haven/arena.h"
#include "haven/clock.h"
#include "haven/rpc.h"

#include "rpc_call.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
