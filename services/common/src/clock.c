/* clock.c - wall and monotonic clocks, and timed waits on the monotonic clock. */
#include "haven/clock.h"

#define NS_PER_S        1000000000L
#define DEADLINE_MAX_MS (366ULL * 24 * 3600 * 1000)

int64_t
hv_clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

int64_t
hv_clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * NS_PER_S + ts.tv_nsec);
}

int64_t
hv_clock_mono_us(void)
{
	return (hv_clock_mono_ns() / 1000);
}

int64_t
hv_clock_mono_ms(void)
{
	return (hv_clock_mono_us() / 1000);
}

int
hv_clock_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int                rv;

	if ((rv = pthread_condattr_init(&ca)) != 0) {
		return (rv);
	}
	if ((rv = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) == 0) {
		rv = pthread_cond_init(cv, &ca);
	}
	pthread_condattr_destroy(&ca);
	return (rv);
}

void
hv_clock_deadline(struct timespec *ts, uint64_t ms)
{
	if (ms > DEADLINE_MAX_MS) {
		ms = DEADLINE_MAX_MS;
	}
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t) (ms / 1000);
	ts->tv_nsec += (long) (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= NS_PER_S) {
		ts->tv_sec++;
		ts->tv_nsec -= NS_PER_S;
	}
}
