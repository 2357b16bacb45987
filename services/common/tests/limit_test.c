/* limit_test.c - the edge's rate limiter: per source, overall, refill, unknown sources, the
 * table's eviction and sweep, and sources as keyed hashes of addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "haven/limit.h"

static int64_t fake_now;

static int64_t
clock_fn(void *arg)
{
	(void) arg;
	return (fake_now);
}

static void
src(uint8_t out[LIMIT_SOURCE_LEN], const char *addr)
{
	assert_true(limit_source(out, addr, strlen(addr)));
}

static limit *
open_limit(uint32_t per_source, uint32_t overall, uint32_t sources_max)
{
	limit        *l = NULL;
	limit_options o = { .window_ms = 60000,
		.per_source            = per_source,
		.overall               = overall,
		.sources_max           = sources_max,
		.now_ms                = clock_fn };

	fake_now = 1000000;
	assert_int_equal(limit_open(&l, &o), HV_OK);
	return (l);
}

static void
assert_refusals(limit *l, uint64_t per_source, uint64_t overall)
{
	uint64_t s, o;

	limit_refusals(l, &s, &o);
	assert_int_equal(s, per_source);
	assert_int_equal(o, overall);
}

static void
test_per_source(void **state)
{
	limit  *l = open_limit(3, 0, 0);
	uint8_t a[LIMIT_SOURCE_LEN], b[LIMIT_SOURCE_LEN];

	(void) state;
	src(a, "192.0.2.1");
	src(b, "192.0.2.2");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(limit_take(l, a), LIMIT_OK);
	}
	assert_int_equal(limit_take(l, a), LIMIT_SOURCE);
	assert_int_equal(limit_take(l, a), LIMIT_SOURCE);
	/* another address is not held up by the first */
	assert_int_equal(limit_take(l, b), LIMIT_OK);
	/* a third of the window gives one token back (3 a window) */
	fake_now += 20000;
	assert_int_equal(limit_take(l, a), LIMIT_OK);
	assert_int_equal(limit_take(l, a), LIMIT_SOURCE);
	/* unknown sources count against the overall limit only (none here) */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(limit_take(l, NULL), LIMIT_OK);
	}
	assert_refusals(l, 3, 0);
	limit_close(l);
}

static void
test_overall(void **state)
{
	limit  *l = open_limit(100, 5, 0);
	uint8_t s[LIMIT_SOURCE_LEN];
	char    addr[32];

	(void) state;
	for (int i = 0; i < 5; i++) {
		snprintf(addr, sizeof(addr), "198.51.100.%d", i);
		src(s, addr);
		assert_int_equal(limit_take(l, s), LIMIT_OK);
	}
	src(s, "198.51.100.99");
	assert_int_equal(limit_take(l, s), LIMIT_OVERALL);
	assert_int_equal(limit_take(l, NULL), LIMIT_OVERALL);
	/* a refused event spends nothing: the source still has its whole bucket */
	fake_now += 12000; /* one overall token back */
	assert_int_equal(limit_take(l, NULL), LIMIT_OK);
	assert_int_equal(limit_take(l, s), LIMIT_OVERALL);
	/* a whole window later everything is back, and not more than the burst */
	fake_now += 10 * 60000;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(limit_take(l, NULL), LIMIT_OK);
	}
	assert_int_equal(limit_take(l, NULL), LIMIT_OVERALL);
	assert_refusals(l, 0, 4);
	limit_close(l);
}

typedef struct two_limits {
	limit *a, *b;
} two_limits;

static void
collect_two(void *arg, metrics_writer *w)
{
	two_limits *t = arg;

	limit_collect(w, "haven_test_limit_refusals_total", (const char *const[]) { "a", "b" },
	    (limit *const[]) { t->a, t->b }, 2);
}

/* The refusals on a metrics page: one family, a sample per limiter and bucket. */
static void
test_metric(void **state)
{
	two_limits t = { open_limit(1, 0, 0), NULL };
	metrics   *m = NULL;
	char      *page;
	size_t     len;
	uint8_t    s[LIMIT_SOURCE_LEN];

	(void) state;
	src(s, "192.0.2.7");
	assert_int_equal(limit_take(t.a, s), LIMIT_OK);
	assert_int_equal(limit_take(t.a, s), LIMIT_SOURCE);
	assert_int_equal(limit_take(t.a, s), LIMIT_SOURCE);
	assert_int_equal(metrics_open(&m), HV_OK);
	assert_int_equal(metrics_add_collector(m, collect_two, &t), HV_OK);
	assert_int_equal(metrics_render(m, &page, &len), HV_OK);
	assert_non_null(strstr(page, "# TYPE haven_test_limit_refusals_total counter\n"));
	assert_non_null(
	    strstr(page, "haven_test_limit_refusals_total{limiter=\"a\",bucket=\"source\"} 2\n"));
	assert_non_null(
	    strstr(page, "haven_test_limit_refusals_total{limiter=\"a\",bucket=\"overall\"} 0\n"));
	/* a limiter that is not there (off) counts nothing */
	assert_non_null(
	    strstr(page, "haven_test_limit_refusals_total{limiter=\"b\",bucket=\"source\"} 0\n"));
	free(page);
	metrics_close(m);
	limit_close(t.a);
}

static void
test_table_full_and_sweep(void **state)
{
	limit  *l = open_limit(2, 0, 64);
	uint8_t s[LIMIT_SOURCE_LEN], first[LIMIT_SOURCE_LEN];
	char    addr[32];

	(void) state;
	src(first, "203.0.113.250");
	assert_int_equal(limit_take(l, first), LIMIT_OK);
	assert_int_equal(limit_take(l, first), LIMIT_OK);
	assert_int_equal(limit_take(l, first), LIMIT_SOURCE);
	/* many more sources than slots: the table never grows past its size, and a source with
	 * an empty bucket is not the one evicted while fuller ones are there */
	for (int i = 0; i < 1000; i++) {
		snprintf(addr, sizeof(addr), "203.0.113.%d/%d", i % 250, i);
		src(s, addr);
		assert_int_equal(limit_take(l, s), LIMIT_OK);
		assert_true(limit_sources(l) <= 64);
	}
	/* after a window every bucket is full again: the next event sweeps them all out */
	fake_now += 60000;
	src(s, "203.0.113.251");
	assert_int_equal(limit_take(l, s), LIMIT_OK);
	assert_int_equal(limit_sources(l), 1);
	assert_int_equal(limit_take(l, first), LIMIT_OK);
	limit_close(l);
}

static void
test_sources(void **state)
{
	uint8_t     a[LIMIT_SOURCE_LEN], b[LIMIT_SOURCE_LEN], c[LIMIT_SOURCE_LEN];
	const char *addr = "192.0.2.77";

	(void) state;
	src(a, addr);
	src(b, addr);
	src(c, "192.0.2.78");
	assert_memory_equal(a, b, LIMIT_SOURCE_LEN);
	assert_memory_not_equal(a, c, LIMIT_SOURCE_LEN);
	/* keyed: the source is not the address, nor its plain digest's start */
	assert_memory_not_equal(a, addr,
	    LIMIT_SOURCE_LEN < strlen(addr) ? LIMIT_SOURCE_LEN : strlen(addr));
}

static void
test_bad_input(void **state)
{
	limit        *l = (limit *) 1;
	limit_options o = { .sources_max = LIMIT_SOURCES_MAX + 1 };

	(void) state;
	assert_int_equal(limit_open(&l, &o), HV_INVALID_ARGUMENT);
	assert_null(l);
	assert_int_equal(limit_open(&l, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(limit_open(NULL, &o), HV_INVALID_ARGUMENT);
	assert_int_equal(limit_take(NULL, NULL), LIMIT_OK);
	assert_int_equal(limit_sources(NULL), 0);
	limit_close(NULL);
	/* no limits at all: everything passes */
	o.sources_max = 0;
	assert_int_equal(limit_open(&l, &o), HV_OK);
	assert_int_equal(limit_take(l, NULL), LIMIT_OK);
	limit_close(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_per_source),
		cmocka_unit_test(test_overall),
		cmocka_unit_test(test_metric),
		cmocka_unit_test(test_table_full_and_sweep),
		cmocka_unit_test(test_sources),
		cmocka_unit_test(test_bad_input),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
