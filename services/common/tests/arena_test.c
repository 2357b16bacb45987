/* arena_test.c - the bump allocator: budget, alignment, strdup, mark and rewind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "haven/arena.h"

static arena a; /* 8 KiB inline: not on the test's stack */

static void
test_budget(void **state)
{
	void *p;

	(void) state;
	arena_init(&a, 1024);
	assert_non_null(p = arena_alloc(&a, 1));
	assert_true(((uintptr_t) p & 15u) == 0);
	assert_non_null(p = arena_alloc(&a, 17));
	assert_true(((uintptr_t) p & 15u) == 0);
	assert_null(arena_alloc(&a, 1024)); /* 16 + 32 already used */
	assert_null(arena_alloc(&a, SIZE_MAX));
	assert_non_null(arena_alloc(&a, 1024 - 48));
	assert_null(arena_alloc(&a, 1));
	arena_reset(&a);
	assert_non_null(arena_alloc(&a, 1024));
	arena_reset(&a);
}

/* a_refused: set by a refused allocation (budget or malloc), kept until the reset. */
static void
test_refused(void **state)
{
	arena_init(&a, 64);
	assert_int_equal(a.a_refused, 0);
	assert_non_null(arena_alloc(&a, 48));
	assert_int_equal(a.a_refused, 0);
	assert_null(arena_alloc(&a, 32));
	assert_int_equal(a.a_refused, 1);
	assert_non_null(arena_alloc(&a, 16)); /* still fits: the flag stays */
	assert_int_equal(a.a_refused, 1);
	arena_reset(&a);
	assert_int_equal(a.a_refused, 0);
	assert_null(arena_alloc(&a, 65));
	assert_int_equal(a.a_refused, 1);
	arena_reset(&a);
}

static void
test_strdup(void **state)
{
	char *s;

	(void) state;
	arena_init(&a, 64);
	assert_non_null(s = arena_strdup(&a, "haven"));
	assert_string_equal(s, "haven");
	assert_non_null(s = arena_strdup(&a, ""));
	assert_string_equal(s, "");
	assert_null(arena_strdup(&a, "a string far longer than what is left of this small budget"));
	arena_reset(&a);
}

/* A rewind gives back the budget and the chunks made after the mark; what was allocated
 * before it stays intact. */
static void
test_mark_rewind(void **state)
{
	arena_mark m;
	char      *keep, *big;

	(void) state;
	arena_init(&a, 4u * 1024 * 1024);
	assert_non_null(keep = arena_strdup(&a, "the request"));
	m = arena_mark_get(&a);
	for (int run = 0; run < 50; run++) {
		arena_rewind(&a, &m);
		assert_true(a.a_used == m.am_used);
		/* Past the inline chunk: malloc'd chunks, freed by the rewind (ASan sees a leak
		 * otherwise, and the budget would run out after a few runs). */
		assert_non_null(big = arena_alloc(&a, 200 * 1024));
		memset(big, run, 200 * 1024);
		assert_non_null(arena_alloc(&a, 100));
		assert_non_null(arena_alloc(&a, 70 * 1024));
	}
	assert_true(a.a_chunks != NULL);
	arena_rewind(&a, &m);
	assert_ptr_equal(a.a_chunks, m.am_chunks);
	assert_string_equal(keep, "the request");
	/* The next allocation comes from where the mark was. */
	assert_ptr_equal(arena_alloc(&a, 16), m.am_cur);
	arena_reset(&a);
}

/* A mark taken inside a malloc'd chunk: rewinding keeps that chunk. */
static void
test_mark_in_chunk(void **state)
{
	arena_mark m;
	char      *p;

	(void) state;
	arena_init(&a, 4u * 1024 * 1024);
	assert_non_null(arena_alloc(&a, ARENA_INLINE + 16));
	assert_non_null(p = arena_strdup(&a, "in a chunk"));
	m = arena_mark_get(&a);
	assert_non_null(arena_alloc(&a, 300 * 1024));
	arena_rewind(&a, &m);
	assert_ptr_equal(a.a_chunks, m.am_chunks);
	assert_string_equal(p, "in a chunk");
	assert_ptr_equal(arena_alloc(&a, 1), m.am_cur);
	arena_reset(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_strdup),
		cmocka_unit_test(test_mark_rewind),
		cmocka_unit_test(test_mark_in_chunk),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
