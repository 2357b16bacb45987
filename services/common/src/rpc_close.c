/*
 * rpc_close.c - nng_close on a thread of its own, waited for a bounded time.
 *
 * libnng 1.5.2's nng_close can wait for ever: a tls+tcp:// connection whose peer reset it, or
 * whose listener stopped handing connections to its socket (rpc_nng.c, "the listener
 * watchdog"), can leave the reaper waiting on an aio that never completes. Seen twice in the
 * fault tests (tests/fault): the CLI hung in nng_close after "Authenticate: receiving the
 * reply failed: Connection reset", and the node's listener watchdog hung in the probe's
 * nng_close during a stall, so that it never listened again. Later nng releases reworked the
 * TLS reaping. So the close runs on a detached thread and the caller waits for it at most a
 * bound: a CLI that closes and exits is not held, a long-lived process goes on and the close
 * finishes (or not) behind it; when it finishes late, that is logged too.
 */
#include "haven/clock.h"
#include "haven/log.h"

#include "rpc_close.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Closes left to finish behind and not finished yet, and since when the oldest of the current
 * run of them has waited (rpc_close_stuck). A close that does not finish within seconds means
 * libnng's reaper, one thread for the whole process, waits on an aio that never completes
 * (libnng 1.5.2: a reply sent on a connection whose transport closed between the steps of the
 * send; fixed in nng 1.9). From then on no connection of the process is freed, and no socket
 * can close: the process must be started again.
 */
static pthread_mutex_t stuck_mtx = PTHREAD_MUTEX_INITIALIZER;
static unsigned        stuck_n;        /* abandoned, not finished */
static int64_t         stuck_since_us; /* when stuck_n last went from 0 to 1 */

typedef struct closer {
	void (*cl_fn)(void *);
	void           *cl_arg;
	const char     *cl_what; /* a string literal */
	int64_t         cl_started_us;
	pthread_mutex_t cl_mtx;
	pthread_cond_t  cl_cv;
	bool            cl_done;
	bool            cl_abandoned; /* the waiter left: the closing thread frees the closer */
} closer;

static void
closer_free(closer *cl)
{
	pthread_cond_destroy(&cl->cl_cv);
	pthread_mutex_destroy(&cl->cl_mtx);
	free(cl);
}

static void *
closer_main(void *arg)
{
	closer *cl = arg;
	bool    abandoned;

	cl->cl_fn(cl->cl_arg);
	pthread_mutex_lock(&cl->cl_mtx);
	cl->cl_done = true;
	abandoned   = cl->cl_abandoned;
	pthread_cond_signal(&cl->cl_cv);
	pthread_mutex_unlock(&cl->cl_mtx);
	if (abandoned) {
		pthread_mutex_lock(&stuck_mtx);
		stuck_n--;
		pthread_mutex_unlock(&stuck_mtx);
		log_write(LOG_LEVEL_INFO, "rpc: closing %s finished after %llu ms", cl->cl_what,
		    (unsigned long long) ((hv_clock_mono_us() - cl->cl_started_us) / 1000));
		closer_free(cl);
	}
	return (NULL);
}

static closer *
closer_new(void (*close_fn)(void *), void *arg, const char *what)
{
	closer *cl;

	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		return (NULL);
	}
	cl->cl_fn         = close_fn;
	cl->cl_arg        = arg;
	cl->cl_what       = what;
	cl->cl_started_us = hv_clock_mono_us();
	if (pthread_mutex_init(&cl->cl_mtx, NULL) != 0) {
		free(cl);
		return (NULL);
	}
	if (hv_clock_cond_init(&cl->cl_cv) != 0) {
		pthread_mutex_destroy(&cl->cl_mtx);
		free(cl);
		return (NULL);
	}
	return (cl);
}

bool
rpc_close_bounded(void (*close_fn)(void *), void *arg, unsigned wait_ms, const char *what)
{
	closer         *cl;
	pthread_t       thr;
	pthread_attr_t  attr;
	struct timespec until;
	bool            done;
	int             rv = -1;

	if ((cl = closer_new(close_fn, arg, what)) == NULL) {
		close_fn(arg);
		return (true);
	}
	if (pthread_attr_init(&attr) == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rv = pthread_create(&thr, &attr, closer_main, cl);
		pthread_attr_destroy(&attr);
	}
	if (rv != 0) {
		closer_free(cl);
		close_fn(arg);
		return (true);
	}
	hv_clock_deadline(&until, wait_ms);
	pthread_mutex_lock(&cl->cl_mtx);
	while (!cl->cl_done) {
		if (pthread_cond_timedwait(&cl->cl_cv, &cl->cl_mtx, &until) == ETIMEDOUT) {
			break;
		}
	}
	done             = cl->cl_done;
	cl->cl_abandoned = !done;
	if (!done) {
		pthread_mutex_lock(&stuck_mtx);
		if (stuck_n++ == 0) {
			stuck_since_us = cl->cl_started_us;
		}
		pthread_mutex_unlock(&stuck_mtx);
	}
	pthread_mutex_unlock(&cl->cl_mtx);
	if (done) {
		closer_free(cl);
	} else {
		log_write(LOG_LEVEL_WARN,
		    "rpc: closing %s did not finish within %u ms (libnng); left to finish behind",
		    what, wait_ms);
	}
	return (done);
}

bool
rpc_close_stuck(uint32_t for_ms)
{
	bool stuck;

	pthread_mutex_lock(&stuck_mtx);
	stuck = stuck_n > 0 && hv_clock_mono_us() - stuck_since_us >= (int64_t) for_ms * 1000;
	pthread_mutex_unlock(&stuck_mtx);
	return (stuck);
}
