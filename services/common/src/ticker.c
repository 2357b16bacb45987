/* ticker.c - one thread calling a job periodically and on demand, on the monotonic clock. */
#include "haven/ticker.h"

#include "haven/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct hv_ticker {
	pthread_mutex_t tk_mtx;
	pthread_cond_t  tk_cv; /* on CLOCK_MONOTONIC (hv_clock_cond_init) */
	pthread_t       tk_thread;
	uint64_t        tk_every_ms;
	hv_ticker_fn    tk_fn;
	void           *tk_arg;
	bool            tk_run_now; /* call at once: the first round, or kicked */
	bool            tk_stop;
	uint64_t        tk_runs;
};

static void *
ticker_main(void *arg)
{
	hv_ticker      *t = arg;
	struct timespec until;

	pthread_mutex_lock(&t->tk_mtx);
	while (!t->tk_stop) {
		if (!t->tk_run_now) {
			hv_clock_deadline(&until, t->tk_every_ms);
			while (!t->tk_stop && !t->tk_run_now &&
			    pthread_cond_timedwait(&t->tk_cv, &t->tk_mtx, &until) != ETIMEDOUT) {
			}
			if (t->tk_stop) {
				break;
			}
		}
		t->tk_run_now = false;
		pthread_mutex_unlock(&t->tk_mtx);
		t->tk_fn(t->tk_arg);
		pthread_mutex_lock(&t->tk_mtx);
		t->tk_runs++;
	}
	pthread_mutex_unlock(&t->tk_mtx);
	return (NULL);
}

hv_status
hv_ticker_start(hv_ticker **out, uint64_t every_ms, bool run_now, hv_ticker_fn fn, void *arg)
{
	hv_ticker *t  = NULL;
	hv_status  st = HV_INVALID_ARGUMENT;

	if (out != NULL) {
		*out = NULL;
	}
	if (out == NULL || fn == NULL) {
		return (st);
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		return (st);
	}
	t->tk_every_ms = every_ms > 0 ? every_ms : 1;
	t->tk_fn       = fn;
	t->tk_arg      = arg;
	t->tk_run_now  = run_now;
	if (hv_clock_cond_init(&t->tk_cv) != 0) {
		goto out;
	}
	if (pthread_mutex_init(&t->tk_mtx, NULL) != 0) {
		pthread_cond_destroy(&t->tk_cv);
		goto out;
	}
	if (pthread_create(&t->tk_thread, NULL, ticker_main, t) != 0) {
		pthread_mutex_destroy(&t->tk_mtx);
		pthread_cond_destroy(&t->tk_cv);
		goto out;
	}
	*out = t;
	t    = NULL;
	st   = HV_OK;
out:
	free(t);
	return (st);
}

void
hv_ticker_kick(hv_ticker *t)
{
	if (t == NULL) {
		return;
	}
	pthread_mutex_lock(&t->tk_mtx);
	t->tk_run_now = true;
	pthread_cond_signal(&t->tk_cv);
	pthread_mutex_unlock(&t->tk_mtx);
}

void
hv_ticker_stop(hv_ticker *t)
{
	if (t == NULL) {
		return;
	}
	pthread_mutex_lock(&t->tk_mtx);
	t->tk_stop = true;
	pthread_cond_signal(&t->tk_cv);
	pthread_mutex_unlock(&t->tk_mtx);
	pthread_join(t->tk_thread, NULL);
	pthread_mutex_destroy(&t->tk_mtx);
	pthread_cond_destroy(&t->tk_cv);
	free(t);
}

uint64_t
hv_ticker_runs(hv_ticker *t)
{
	uint64_t n;

	pthread_mutex_lock(&t->tk_mtx);
	n = t->tk_runs;
	pthread_mutex_unlock(&t->tk_mtx);
	return (n);
}
