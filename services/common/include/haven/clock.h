/*
 * clock.h - the node's clocks: wall-clock milliseconds for what is stored and shown, the
 * monotonic clock for every interval, timeout and timed wait.
 *
 * The wall clock can step (NTP, an operator, a restored VM); the monotonic clock never goes
 * back and does not jump with it. So a timed wait is on a condition variable made with
 * hv_clock_cond_init (it waits on CLOCK_MONOTONIC) until a deadline from hv_clock_deadline
 * (a CLOCK_MONOTONIC time): a step of the wall clock neither stalls nor hurries it. Mixing
 * the two (a default condition variable with a monotonic deadline, or the reverse) makes the
 * wait return at once or hang for years; use the pair.
 */
#ifndef HAVEN_CLOCK_H
#define HAVEN_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME): timestamps stored in records, tokens
 * and logs. Never for measuring intervals. */
int64_t hv_clock_wall_ms(void);

/* Nanoseconds / microseconds / milliseconds of CLOCK_MONOTONIC: intervals, deadlines,
 * durations. Only differences mean anything. */
int64_t hv_clock_mono_ns(void);
int64_t hv_clock_mono_us(void);
int64_t hv_clock_mono_ms(void);

/* Initialises *cv as pthread_cond_init does, but waiting on CLOCK_MONOTONIC, so that
 * pthread_cond_timedwait takes a deadline from hv_clock_deadline. Returns 0 or the errno
 * value of the failing pthread call; *cv is not initialised after a failure. The caller
 * destroys it with pthread_cond_destroy. */
int hv_clock_cond_init(pthread_cond_t *cv);

/* Sets *ts to the CLOCK_MONOTONIC time ms milliseconds from now, for pthread_cond_timedwait
 * on a condition variable from hv_clock_cond_init. ms is capped at a year, so the sum never
 * overflows time_t. */
void hv_clock_deadline(struct timespec *ts, uint64_t ms);

#endif
