/*
 * arena.h - a bump allocator with a byte budget, private to libhaven.
 *
 * Every RPC call decodes its envelope and payload, and builds its reply, in one arena that is
 * reset when the reply has been sent. protobuf-c's unpack has no nesting-depth or size limit
 * of its own; decoding through an arena with a budget bounds what one request can make the
 * server allocate. The first chunk is embedded (no allocation for small calls); larger needs
 * take malloc'd chunks, freed on reset.
 */
#ifndef HAVEN_ARENA_H
#define HAVEN_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#define ARENA_INLINE 8192

struct arena_chunk;

typedef struct arena {
	size_t              a_budget; /* bytes that may be handed out between resets */
	size_t              a_used;   /* bytes handed out since the last reset */
	unsigned char      *a_cur;    /* next free byte in the current chunk */
	unsigned char      *a_end;    /* end of the current chunk */
	struct arena_chunk *a_chunks; /* malloc'd chunks, newest first */
	ProtobufCAllocator  a_pb;     /* protobuf-c view of this arena */
	_Alignas(16) unsigned char a_inline[ARENA_INLINE];
} arena;

void arena_init(arena *a, size_t budget);
/* Frees the malloc'd chunks; the arena is empty again. */
void arena_reset(arena *a);
/* 16-byte aligned memory, or NULL when the budget is spent or malloc fails. */
void *arena_alloc(arena *a, size_t n);

#endif
