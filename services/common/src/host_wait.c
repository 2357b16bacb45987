/*
 * host_wait.c - what a service's main thread does while the service runs (host_wait): it waits
 * for SIGTERM or SIGINT, gives the allocator's free memory back now and then, and watches for
 * libnng's stuck reaper; and the stop's deadline that follows.
 */
#include "haven/clock.h"
#include "haven/host.h"
#include "haven/log.h"

#include "host_wait.h"
#include "rpc_close.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define HOST_TRIM_EVERY_S   60    /* the allocator's free memory back to the system */
#define HOST_CHECK_EVERY_S  2     /* how often it asks whether libnng is stuck */
#define HOST_STUCK_LIMIT_MS 15000 /* a close unfinished this long: libnng's reaper is stuck */
#define HOST_STOP_LIMIT_S   30    /* a stop after a signal ends the process after this */

/* The reaper found stuck (rpc_close.c): what the log says, in host_wait and during a stop. */
static void
log_stuck(void)
{
	log_error("libnng has not finished closing a connection for %d s: its reaper is stuck, and "
	          "from now on no connection is freed and no socket can close (libnng 1.5.2; "
	          "rpc_close.c). Stopping so that the service manager starts the node again "
	          "(exit %d)",
	    HOST_STUCK_LIMIT_MS / 1000, HOST_EXIT_RESTART);
}

/* The stop's deadline: a detached thread that ends the process with code if it still runs
 * after seconds, or at once when libnng's reaper is found stuck meanwhile (the stop would
 * wait for it for ever). The node is made to survive a kill at any point (docs/reliability.md:
 * every acknowledged write is in the store, committed and synced), so a stop that cannot
 * finish ends like one. */
typedef struct stop_deadline {
	unsigned sd_seconds;
	int      sd_code;
} stop_deadline;

static void *
stop_deadline_main(void *arg)
{
	stop_deadline sd = *(stop_deadline *) arg;
	int64_t       until_ms;

	free(arg);
	until_ms = hv_clock_mono_ms() + (int64_t) sd.sd_seconds * 1000;
	while (hv_clock_mono_ms() < until_ms) {
		struct timespec second = { .tv_sec = 1 };
		(void) nanosleep(&second, NULL);
		if (rpc_close_stuck(HOST_STUCK_LIMIT_MS)) {
			log_stuck();
			_exit(HOST_EXIT_RESTART);
		}
	}
	log_error("the stop did not finish within %u s; exiting with %d", sd.sd_seconds,
	    sd.sd_code);
	_exit(sd.sd_code);
	return (NULL);
}

static void
stop_deadline_start(unsigned seconds, int code)
{
	stop_deadline *sd;
	pthread_t      thr;
	pthread_attr_t attr;

	if ((sd = malloc(sizeof(*sd))) == NULL) {
		return;
	}
	sd->sd_seconds = seconds;
	sd->sd_code    = code;
	if (pthread_attr_init(&attr) != 0) {
		free(sd);
		return;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thr, &attr, stop_deadline_main, sd) != 0) {
		free(sd);
	}
	pthread_attr_destroy(&attr);
}

/*
 * While it waits for a signal, the main thread gives the allocator's free memory back to the
 * system every HOST_TRIM_EVERY_S. glibc keeps what a thread freed in that thread's arena for
 * its next allocations, and a process of many threads (nng's, the workers, timers) holds the
 * peak of each: under a steady load the node's anonymous memory grew by a few percent over ten
 * minutes while the memory in use stayed flat (docs/reliability.md, "Soak"). malloc_trim(0)
 * releases the free pages of every arena (MADV_DONTNEED on what lies inside them too): a few
 * milliseconds, once a minute, on a thread that does nothing else.
 */
int
host_wait_signals(const sigset_t *signals)
{
	struct timespec every   = { .tv_sec = HOST_CHECK_EVERY_S };
	int64_t         trimmed = hv_clock_mono_ms();
	int             sig     = 0;

	while (sig != SIGTERM && sig != SIGINT) {
		if ((sig = sigtimedwait(signals, NULL, &every)) < 0) {
			sig = 0;
		}
		if (rpc_close_stuck(HOST_STUCK_LIMIT_MS)) {
			log_stuck();
			/* the stop cannot finish: its deadline ends it within a second */
			stop_deadline_start(HOST_STOP_LIMIT_S, HOST_EXIT_RESTART);
			return (HOST_EXIT_RESTART);
		}
		if (hv_clock_mono_ms() - trimmed >= HOST_TRIM_EVERY_S * 1000) {
			(void) malloc_trim(0);
			trimmed = hv_clock_mono_ms();
		}
	}
	log_info("signal %d: shutting down", sig);
	stop_deadline_start(HOST_STOP_LIMIT_S, HOST_EXIT_RESTART);
	return (0);
}
