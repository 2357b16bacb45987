/* ticker_test.c - the periodic job runner: interval, run_now, kick, clean stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <time.h>

#include "haven/clock.h"
#include "haven/ticker.h"

typedef struct job {
	atomic_int  j_runs;
	atomic_int  j_inside;
	atomic_bool j_overlap;
	int         j_sleep_ms;
} job;

static void
sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0) {
	}
}

static void
job_fn(void *arg)
{
	job *j = arg;

	if (atomic_fetch_add(&j->j_inside, 1) != 0) {
		atomic_store(&j->j_overlap, true);
	}
	if (j->j_sleep_ms > 0) {
		sleep_ms(j->j_sleep_ms);
	}
	atomic_fetch_add(&j->j_runs, 1);
	atomic_fetch_sub(&j->j_inside, 1);
}

/* Waits up to 5 s for at least n runs. */
static bool
wait_runs(job *j, int n)
{
	int64_t until = hv_clock_mono_ms() + 5000;

	while (atomic_load(&j->j_runs) < n) {
		if (hv_clock_mono_ms() > until) {
			return (false);
		}
		sleep_ms(1);
	}
	return (true);
}

static void
test_bad_arguments(void **state)
{
	hv_ticker *t = (hv_ticker *) 1;
	job        j = { 0 };

	(void) state;
	assert_int_equal(hv_ticker_start(NULL, 10, true, job_fn, &j), HV_INVALID_ARGUMENT);
	assert_int_equal(hv_ticker_start(&t, 10, true, NULL, &j), HV_INVALID_ARGUMENT);
	assert_null(t);
	hv_ticker_kick(NULL);
	hv_ticker_stop(NULL);
}

/* run_now runs at once; then every interval, no faster (the wait is on the same clock as the
 * deadline: a mismatch would spin or never run). */
static void
test_interval(void **state)
{
	hv_ticker *t = NULL;
	job        j = { 0 };
	int        n;

	(void) state;
	assert_int_equal(hv_ticker_start(&t, 100, true, job_fn, &j), HV_OK);
	assert_true(wait_runs(&j, 1));
	sleep_ms(550);
	hv_ticker_stop(t);
	n = atomic_load(&j.j_runs);
	assert_true(n >= 3); /* 1 at once + ~5: generous for a loaded machine */
	assert_true(n <= 7);
	sleep_ms(150);
	assert_int_equal(atomic_load(&j.j_runs), n); /* none after stop */
}

/* Without run_now nothing runs before the first interval; a kick runs at once. */
static void
test_kick(void **state)
{
	hv_ticker *t = NULL;
	job        j = { 0 };

	(void) state;
	assert_int_equal(hv_ticker_start(&t, 60000, false, job_fn, &j), HV_OK);
	sleep_ms(100);
	assert_int_equal(atomic_load(&j.j_runs), 0);
	hv_ticker_kick(t);
	assert_true(wait_runs(&j, 1));
	hv_ticker_kick(t);
	assert_true(wait_runs(&j, 2));
	sleep_ms(50);
	assert_int_equal(atomic_load(&j.j_runs), 2);
	assert_int_equal(hv_ticker_runs(t), 2);
	hv_ticker_stop(t);
}

/* A kick while the job runs is not lost: one more run right after; kicks coalesce; runs never
 * overlap. */
static void
test_kick_while_running(void **state)
{
	hv_ticker *t = NULL;
	job        j = { .j_sleep_ms = 100 };

	(void) state;
	assert_int_equal(hv_ticker_start(&t, 60000, true, job_fn, &j), HV_OK);
	while (atomic_load(&j.j_inside) == 0 && atomic_load(&j.j_runs) == 0) {
		sleep_ms(1);
	}
	hv_ticker_kick(t);
	hv_ticker_kick(t);
	hv_ticker_kick(t);
	assert_true(wait_runs(&j, 2));
	sleep_ms(250);
	assert_int_equal(atomic_load(&j.j_runs), 2);
	assert_false(atomic_load(&j.j_overlap));
	hv_ticker_stop(t);
}

/* Stop waits for the run in progress, and nothing runs after it returns; stop does not wait
 * for the interval. */
static void
test_stop(void **state)
{
	hv_ticker *t = NULL;
	job        j = { .j_sleep_ms = 100 };
	int64_t    t0;

	(void) state;
	assert_int_equal(hv_ticker_start(&t, 60000, true, job_fn, &j), HV_OK);
	while (atomic_load(&j.j_inside) == 0) {
		sleep_ms(1);
	}
	hv_ticker_stop(t);
	assert_int_equal(atomic_load(&j.j_inside), 0);
	assert_int_equal(atomic_load(&j.j_runs), 1);

	j.j_sleep_ms = 0;
	assert_int_equal(hv_ticker_start(&t, 60000, false, job_fn, &j), HV_OK);
	t0 = hv_clock_mono_ms();
	hv_ticker_stop(t);
	assert_true(hv_clock_mono_ms() - t0 < 1000);
	assert_int_equal(atomic_load(&j.j_runs), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_interval),
		cmocka_unit_test(test_kick),
		cmocka_unit_test(test_kick_while_running),
		cmocka_unit_test(test_stop),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
