/*
 * ticker.h - a periodic job on its own thread, timed on the monotonic clock.
 *
 * A ticker calls fn(arg) every every_ms milliseconds (measured from the end of one call to
 * the start of the next, so a slow job never piles up), at once when kicked, and never again
 * once stopped. Calls never overlap: there is one thread. A kick while fn runs makes one more
 * call right after it (a kick is never lost, several coalesce). A step of the wall clock
 * neither stalls nor hurries it.
 *
 * fn must not call hv_ticker_stop on its own ticker. A job that can run long and should end
 * early at shutdown checks a stop flag of its own, set by its owner before hv_ticker_stop.
 */
#ifndef HAVEN_TICKER_H
#define HAVEN_TICKER_H

#include <stdbool.h>
#include <stdint.h>

#include "haven/status.h"

typedef struct hv_ticker hv_ticker;

typedef void (*hv_ticker_fn)(void *arg);

/* Starts a ticker calling fn(arg) every every_ms (1 ms at the least), the first time at once
 * when run_now, else after every_ms. *out owns the thread until hv_ticker_stop.
 * HV_INVALID_ARGUMENT for a NULL out or fn, HV_RESOURCE_EXHAUSTED when no thread or memory;
 * *out is NULL after a failure and fn is never called. */
hv_status hv_ticker_start(hv_ticker **out, uint64_t every_ms, bool run_now, hv_ticker_fn fn,
    void *arg);

/* Makes the ticker call fn as soon as it can (right after the call running now, if any).
 * Safe from any thread, fn included; NULL is ignored. */
void hv_ticker_kick(hv_ticker *t);

/* Stops the ticker: waits for a call in progress to return, joins the thread and frees t.
 * fn is not called after it returns. NULL is allowed. */
void hv_ticker_stop(hv_ticker *t);

/* How many times fn has been called (for tests and metrics). */
uint64_t hv_ticker_runs(hv_ticker *t);

#endif
