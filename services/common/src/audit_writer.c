/*
 * audit_writer.c - audit_enqueue's queue and the one writer thread that appends what is
 * queued, many entries per transaction, lingering as audit.h says.
 */
#include "haven/audit.h"
#include "audit_internal.h"
#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the writer of queued entries ----------------------------------------------------- */

typedef struct batch_job {
	audit       *bj_audit;
	audit_entry *bj_entries;
	size_t       bj_n;
} batch_job;

static hv_status
batch_fn(store_txn *txn, void *arg)
{
	batch_job *j = arg;
	chain_head h;
	hv_status  st;

	/* The head is read once and written once for the whole batch. */
	if ((st = audit__head_read(j->bj_audit, txn, &h)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < j->bj_n; i++) {
		if ((st = audit__append_after(j->bj_audit, txn, &j->bj_entries[i], &h)) != HV_OK) {
			return (st);
		}
	}
	return (audit__head_write(j->bj_audit, txn, &h));
}

/* Waits (a_qmtx held) until a batch is due: entries queued and, unless stopping, flushed or
 * already many, a_linger_ms since the writer saw the first of them. Returns with an empty
 * queue when stopping, or after AUDIT_CHECKPOINT_MS without entries (time for a checkpoint of
 * what other writers appended). */
static void
wait_for_batch(audit *a)
{
	struct timespec until;

	hv_clock_deadline(&until, AUDIT_CHECKPOINT_MS);
	while (a->a_qlen == 0 && !a->a_stop) {
		if (pthread_cond_timedwait(&a->a_wcond, &a->a_qmtx, &until) == ETIMEDOUT) {
			return;
		}
	}
	hv_clock_deadline(&until, a->a_linger_ms);
	while (a->a_qlen > 0 && a->a_qlen < WRITER_BATCH_WAKE && !a->a_stop && a->a_flushes == 0) {
		if (pthread_cond_timedwait(&a->a_wcond, &a->a_qmtx, &until) == ETIMEDOUT) {
			break;
		}
	}
}

/* After a commit that took took_us (a_qmtx held): the moving average of commit times (weight
 * 1/4 for the newest) and from it the next linger. */
static void
linger_adapt(audit *a, uint64_t took_us)
{
	uint64_t ms;

	a->a_commit_us = a->a_commit_us == 0 ? took_us : (3 * a->a_commit_us + took_us) / 4;
	ms             = (WRITER_LINGER_FACTOR * a->a_commit_us + 999) / 1000;
	a->a_linger_ms = ms < AUDIT_LINGER_MIN_MS ? AUDIT_LINGER_MIN_MS
	    : ms > AUDIT_LINGER_MAX_MS            ? AUDIT_LINGER_MAX_MS
	                                          : (unsigned) ms;
}

static void *
writer_main(void *arg)
{
	audit       *a = arg;
	audit_entry *batch;
	batch_job    j = { a, NULL, 0 };

	if ((batch = malloc(WRITER_BATCH_MAX * sizeof(*batch))) == NULL) {
		pthread_mutex_lock(&a->a_qmtx);
		a->a_qerr = HV_RESOURCE_EXHAUSTED;
		pthread_cond_broadcast(&a->a_qcond);
		pthread_mutex_unlock(&a->a_qmtx);
		return (NULL);
	}
	j.bj_entries = batch;
	pthread_mutex_lock(&a->a_qmtx);
	for (;;) {
		hv_status st;
		int64_t   t0;
		uint64_t  took;

		wait_for_batch(a);
		if (a->a_qlen == 0 && a->a_stop) {
			break; /* everything is written */
		}
		if (a->a_qlen == 0) {
			pthread_mutex_unlock(&a->a_qmtx);
			audit__cp_maybe(a);
			pthread_mutex_lock(&a->a_qmtx);
			continue;
		}
		/* Take what is queued, oldest first; room frees for the enqueuers at once. */
		j.bj_n = 0;
		while (a->a_qlen > 0 && j.bj_n < WRITER_BATCH_MAX) {
			batch[j.bj_n++] = a->a_ring[a->a_qhead];
			a->a_qhead      = (a->a_qhead + 1) % AUDIT_QUEUE_MAX;
			a->a_qlen--;
		}
		if (a->a_waiters > 0) {
			pthread_cond_broadcast(&a->a_qcond);
		}
		pthread_mutex_unlock(&a->a_qmtx);
		t0   = hv_clock_mono_us();
		st   = a->a_qerr == HV_OK ? store_write(a->a_store, batch_fn, &j) : a->a_qerr;
		took = (uint64_t) (hv_clock_mono_us() - t0);
		pthread_mutex_lock(&a->a_qmtx);
		/* A checkpoint (after the commit, so that it pins a committed head) costs an
		 * fsync: not while the queue is more than half full, lest Checks find it full. */
		if (st == HV_OK && a->a_qlen < AUDIT_QUEUE_MAX / 2) {
			pthread_mutex_unlock(&a->a_qmtx);
			audit__cp_maybe(a);
			pthread_mutex_lock(&a->a_qmtx);
		}
		if (st == HV_OK) {
			linger_adapt(a, took);
		}
		if (st != HV_OK && a->a_qerr == HV_OK) {
			a->a_qerr = st;
			log_error(
			    "audit: %zu queued entries could not be written (%s); accesses that "
			    "need them are refused from now on",
			    j.bj_n, hv_status_name(st));
		}
		a->a_written += j.bj_n; /* written, or given up on: flushers stop waiting */
		if (a->a_waiters > 0) {
			pthread_cond_broadcast(&a->a_qcond);
		}
	}
	pthread_mutex_unlock(&a->a_qmtx);
	crypto_wipe(batch, WRITER_BATCH_MAX * sizeof(*batch));
	free(batch);
	return (NULL);
}

hv_status
audit_writer_start(audit *a)
{
	hv_status st = HV_OK;

	pthread_mutex_lock(&a->a_qmtx);
	if (a->a_writer) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((a->a_ring = calloc(AUDIT_QUEUE_MAX, sizeof(*a->a_ring))) == NULL) {
		goto out;
	}
	if (pthread_create(&a->a_thread, NULL, writer_main, a) != 0) {
		free(a->a_ring);
		a->a_ring = NULL;
		goto out;
	}
	a->a_writer = true;
	st          = HV_OK;
out:
	pthread_mutex_unlock(&a->a_qmtx);
	return (st);
}

static hv_status
enqueue(audit *a, const audit_entry *e, bool wait)
{
	hv_status st;

	if (!audit__field_ok(e->org, sizeof(e->org), false) ||
	    !audit__field_ok(e->method, sizeof(e->method), false) ||
	    !audit__field_ok(e->subject, sizeof(e->subject), true) ||
	    !audit__field_ok(e->purpose, sizeof(e->purpose), false) ||
	    !audit__field_ok(e->person, sizeof(e->person), true)) {
		return (HV_INVALID_ARGUMENT);
	}
	pthread_mutex_lock(&a->a_qmtx);
	while (wait && a->a_writer && a->a_qerr == HV_OK && a->a_qlen == AUDIT_QUEUE_MAX &&
	    !a->a_stop) {
		a->a_waiters++;
		pthread_cond_wait(&a->a_qcond, &a->a_qmtx);
		a->a_waiters--;
	}
	if (!a->a_writer || a->a_stop) {
		st = HV_FAILED_PRECONDITION;
	} else if ((st = a->a_qerr) == HV_OK && a->a_qlen == AUDIT_QUEUE_MAX) {
		st = HV_RESOURCE_EXHAUSTED;
	} else if (st == HV_OK) {
		audit_entry *slot = &a->a_ring[(a->a_qhead + a->a_qlen) % AUDIT_QUEUE_MAX];
		*slot             = *e;
		if (slot->time_ms == 0) {
			slot->time_ms = hv_clock_wall_ms();
		}
		a->a_qlen++;
		a->a_queued++;
		/* The writer waits for a first entry, or lingers until a batch is worth it. */
		if (a->a_qlen == 1 || a->a_qlen == WRITER_BATCH_WAKE) {
			pthread_cond_signal(&a->a_wcond);
		}
	}
	pthread_mutex_unlock(&a->a_qmtx);
	return (st);
}

void
audit_writer_stop(audit *a)
{
	bool join;

	pthread_mutex_lock(&a->a_qmtx);
	join      = a->a_writer && !a->a_stop;
	a->a_stop = true;
	pthread_cond_broadcast(&a->a_qcond);
	pthread_cond_signal(&a->a_wcond);
	pthread_mutex_unlock(&a->a_qmtx);
	if (join) {
		pthread_join(a->a_thread, NULL); /* it drains the queue before it returns */
		(void) audit_checkpoint(a);      /* the last head, while the store is open */
	}
}

hv_status
audit_enqueue(audit *a, const audit_entry *e)
{
	return (enqueue(a, e, true));
}

hv_status
audit_try_enqueue(audit *a, const audit_entry *e)
{
	return (enqueue(a, e, false));
}

unsigned
audit_writer_linger_ms(audit *a)
{
	unsigned ms;

	pthread_mutex_lock(&a->a_qmtx);
	ms = a->a_linger_ms;
	pthread_mutex_unlock(&a->a_qmtx);
	return (ms);
}

hv_status
audit_flush(audit *a)
{
	uint64_t  target;
	hv_status st;

	pthread_mutex_lock(&a->a_qmtx);
	target = a->a_queued;
	a->a_flushes++;
	pthread_cond_signal(&a->a_wcond);
	while (a->a_writer && a->a_written < target && a->a_qerr == HV_OK) {
		a->a_waiters++;
		pthread_cond_wait(&a->a_qcond, &a->a_qmtx);
		a->a_waiters--;
	}
	a->a_flushes--;
	st = a->a_qerr;
	pthread_mutex_unlock(&a->a_qmtx);
	return (st);
}
