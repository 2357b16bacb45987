/*
 * arena.h - a bump allocator with a byte budget.
 *
 * Every RPC call decodes its envelope and payload, and builds its reply, in one arena that is
 * reset when the reply has been sent. protobuf-c's unpack has no nesting-depth or size limit
 * of its own; decoding through an arena with a budget bounds what one request can make the
 * server allocate. The first chunk is embedded (no allocation for small calls); larger needs
 * take malloc'd chunks, freed on reset.
 *
 * A service's work inside a call allocates in the same arena (rpc_call_arena), so the reply
 * it builds is the one the server packs: no copy. A write transaction may run more than once
 * (store.h): arena_mark before it and arena_rewind at the start of each run give back what an
 * earlier run allocated.
 *
 * Lifetime: memory from an arena is valid until arena_reset, or arena_rewind to a mark taken
 * before it was allocated. Not thread-safe: one arena belongs to one thread at a time.
 */
#ifndef HAVEN_ARENA_H
#define HAVEN_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#define ARENA_INLINE 8192

struct arena_chunk;

typedef struct arena {
	size_t              a_budget;  /* bytes that may be handed out between resets */
	size_t              a_used;    /* bytes handed out since the last reset */
	unsigned char      *a_cur;     /* next free byte in the current chunk */
	unsigned char      *a_end;     /* end of the current chunk */
	struct arena_chunk *a_chunks;  /* malloc'd chunks, newest first */
	ProtobufCAllocator  a_pb;      /* protobuf-c view of this arena (free is a no-op) */
	int                 a_refused; /* an allocation failed since the last reset: a decode
	                                * that returned NULL ran out of memory, not of sense */
	_Alignas(16) unsigned char a_inline[ARENA_INLINE];
} arena;

/* A point of an arena's history to come back to (arena_mark, arena_rewind). */
typedef struct arena_mark {
	size_t              am_used;
	unsigned char      *am_cur;
	unsigned char      *am_end;
	struct arena_chunk *am_chunks;
} arena_mark;

void arena_init(arena *a, size_t budget);
/* Frees the malloc'd chunks; the arena is empty again. */
void arena_reset(arena *a);
/* 16-byte aligned memory, or NULL when the budget is spent or malloc fails. */
void *arena_alloc(arena *a, size_t n);
/* A copy of s (NUL-terminated), or NULL as arena_alloc. */
char *arena_strdup(arena *a, const char *s);
/* The arena's state now. */
arena_mark arena_mark_get(const arena *a);
/* Gives back everything allocated since m was taken (chunks made since are freed); the
 * budget counts from the mark again. m must come from this arena, after its last reset and
 * after any earlier mark rewound to. */
void arena_rewind(arena *a, const arena_mark *m);

#endif
