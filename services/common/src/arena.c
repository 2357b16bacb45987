/*
 * arena.c - bump allocation with a budget (see arena.h).
 */
#include "haven/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
	struct arena_chunk *next;
	size_t              size;
	_Alignas(16) unsigned char data[];
};

#define ALIGN16(n) (((n) + 15u) & ~(size_t) 15u)
#define CHUNK_MIN  (64u * 1024u)

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
	a->a_refused           = 0;
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
	a->a_chunks  = NULL;
	a->a_used    = 0;
	a->a_refused = 0;
	a->a_cur     = a->a_inline;
	a->a_end     = a->a_inline + sizeof(a->a_inline);
}

void *
arena_alloc(arena *a, size_t n)
{
	void *p;

	if (n == 0) {
		n = 1;
	}
	if (n > a->a_budget) {
		a->a_refused = 1;
		return (NULL);
	}
	n = ALIGN16(n);
	if (n > a->a_budget || a->a_used > a->a_budget - n) {
		a->a_refused = 1;
		return (NULL);
	}
	if ((size_t) (a->a_end - a->a_cur) < n) {
		size_t              size = n > CHUNK_MIN ? n : CHUNK_MIN;
		struct arena_chunk *c    = malloc(sizeof(*c) + size);
		if (c == NULL) {
			a->a_refused = 1;
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

char *
arena_strdup(arena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char  *p = arena_alloc(a, n);

	if (p != NULL) {
		memcpy(p, s, n);
	}
	return (p);
}

arena_mark
arena_mark_get(const arena *a)
{
	arena_mark m;

	m.am_used   = a->a_used;
	m.am_cur    = a->a_cur;
	m.am_end    = a->a_end;
	m.am_chunks = a->a_chunks;
	return (m);
}

void
arena_rewind(arena *a, const arena_mark *m)
{
	/* Chunks are a stack, newest first: the ones made after the mark are on top of it. */
	while (a->a_chunks != m->am_chunks && a->a_chunks != NULL) {
		struct arena_chunk *next = a->a_chunks->next;
		free(a->a_chunks);
		a->a_chunks = next;
	}
	a->a_used = m->am_used;
	a->a_cur  = m->am_cur;
	a->a_end  = m->am_end;
}
