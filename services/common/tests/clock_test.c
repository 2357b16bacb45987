/* clock_test.c - the clocks, and timed waits that run on the monotonic clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "haven/clock.h"

static void
test_wall_is_unix_time(void **state)
{
	int64_t before = (int64_t) time(NULL) * 1000;
	int64_t ms     = hv_clock_wall_ms();

	(void) state;
	assert_true(ms >= before && ms <= before + 2000);
}

static void
test_monotonic_units(void **state)
{
	struct timespec ts;
	int64_t         ns, us, ms, ref;

	(void) state;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ref = (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	ns  = hv_clock_mono_ns();
	us  = hv_clock_mono_us();
	ms  = hv_clock_mono_ms();
	assert_true(ns / 1000 >= ref && ns / 1000 - ref < 1000000);
	assert_true(us >= ns / 1000 && us - ns / 1000 < 1000000);
	assert_true(ms >= us / 1000 && ms - us / 1000 < 1000);
}

/* The deadline is CLOCK_MONOTONIC now + ms, normalised, and capped so it never overflows. */
static void
test_deadline_is_monotonic(void **state)
{
	struct timespec before, after, d;
	int64_t         b, a, x;

	(void) state;
	clock_gettime(CLOCK_MONOTONIC, &before);
	hv_clock_deadline(&d, 1999);
	clock_gettime(CLOCK_MONOTONIC, &after);
	b = (int64_t) before.tv_sec * 1000000000 + before.tv_nsec + 1999000000LL;
	a = (int64_t) after.tv_sec * 1000000000 + after.tv_nsec + 1999000000LL;
	x = (int64_t) d.tv_sec * 1000000000 + d.tv_nsec;
	assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
	assert_true(x >= b && x <= a);

	hv_clock_deadline(&d, UINT64_MAX);
	assert_true(d.tv_sec > after.tv_sec + 364LL * 24 * 3600);
	assert_true(d.tv_sec < after.tv_sec + 367LL * 24 * 3600);
}

/*
 * A timed wait on a condition variable from hv_clock_cond_init until hv_clock_deadline lasts
 * its interval. A wait on the wall clock would not: the monotonic deadline (time since boot)
 * is decades in the wall clock's past, so it would time out at once; and the converse pairing
 * (wall deadline, monotonic condition variable) would hang for decades. Stepping the real wall
 * clock needs root and would disturb the machine; this proves the wait does not read it.
 */
static void
test_timed_wait_on_monotonic_clock(void **state)
{
	pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t  cv;
	struct timespec until;
	int64_t         t0, took;
	int             rv;

	(void) state;
	assert_int_equal(hv_clock_cond_init(&cv), 0);
	pthread_mutex_lock(&mtx);
	t0 = hv_clock_mono_ms();
	hv_clock_deadline(&until, 100);
	do {
		rv = pthread_cond_timedwait(&cv, &mtx, &until);
	} while (rv == 0);
	took = hv_clock_mono_ms() - t0;
	pthread_mutex_unlock(&mtx);
	assert_int_equal(rv, ETIMEDOUT);
	assert_true(took >= 99);
	assert_true(took < 5000);
	pthread_cond_destroy(&cv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wall_is_unix_time),
		cmocka_unit_test(test_monotonic_units),
		cmocka_unit_test(test_deadline_is_monotonic),
		cmocka_unit_test(test_timed_wait_on_monotonic_clock),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
