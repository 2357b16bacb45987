/*
 * arena.c - bump allocation with a budget (see arena.h).
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>

struct arena_chunk {
	struct arena_chunk *next;
	size_t              size;
	_Alignas(16) unsigned char data[];
};

#define ALIGN16(n) (((n) + 15u) & ~(size_t) 15u)
#define CHUNK_MIN (64u * 1024u)

static void *
pb_alloc(void *data, size_t n)
{
	return (arena_alloc(data, n));
}

static void
pb_free(void *data, void *p)
{
	/* Everything is released at once by arena_reset. */
	(void) data;
	(void) p;
}

void
arena_init(arena *a, size_t budget)
{
	a->a_budget            = budget;
	a->a_used              = 0;
	a->a_cur               = a->a_inline;
	a->a_end               = a->a_inline + sizeof(a->a_inline);
	a->a_chunks            = NULL;
	a->a_pb.alloc          = pb_alloc;
	a->a_pb.free           = pb_free;
	a->a_pb.allocator_data = a;
}

void
arena_reset(arena *a)
{
	struct arena_chunk *c = a->a_chunks;

	while (c != NULL) {
		struct arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->a_chunks = NULL;
	a->a_used   = 0;
	a->a_cur    = a->a_inline;
	a->a_end    = a->a_inline + sizeof(a->a_inline);
}

void *
arena_alloc(arena *a, size_t n)
{
	void *p;

	if (n == 0) {
		n = 1;
	}
	if (n > a->a_budget) {
		return (NULL);
	}
	n = ALIGN16(n);
	if (n > a->a_budget || a->a_used > a->a_budget - n) {
		return (NULL);
	}
	if ((size_t) (a->a_end - a->a_cur) < n) {
		size_t              size = n > CHUNK_MIN ? n : CHUNK_MIN;
		struct arena_chunk *c    = malloc(sizeof(*c) + size);
		if (c == NULL) {
			return (NULL);
		}
		c->next     = a->a_chunks;
		c->size     = size;
		a->a_chunks = c;
		a->a_cur    = c->data;
		a->a_end    = c->data + size;
	}
	p = a->a_cur;
	a->a_cur += n;
	a->a_used += n;
	return (p);
}
