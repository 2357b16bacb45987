/*
 * store_write.c - the store's write path: write functions run in durable write transactions
 * that grow the map when it fills, group-committed.
 *
 * Writes are group-committed. Every store_write call queues a request (on its own stack) and
 * waits. The first caller to find no batch running becomes the leader: it takes the queue, up to
 * STORE_BATCH_MAX requests, oldest first, runs each function in a nested transaction of one
 * write transaction, commits that once (one fsync for all of them), then hands every caller its
 * status and wakes the oldest request still queued, whose caller leads the next batch. Callers
 * that arrive while a batch runs queue up for the next one. A lone writer leads a batch of one,
 * which runs straight in the write transaction, as before batching.
 *
 * Locking inside one process, outermost first:
 *
 *   s_qlock   the write queue, the leadership, s_failed and the counters. Never held while a
 *             write function or LMDB runs. A leader takes it only to take its batch and to hand
 *             out the statuses.
 *   s_gate    every LMDB transaction of this process is inside the gate (shared) for its whole
 *             life; changing the map size takes the gate exclusively, because LMDB requires
 *             that no transaction of the process is active during mdb_env_set_mapsize. The
 *             gate is a mutex and a condition variable rather than a pthread_rwlock because
 *             MDB_NOTLS lets a read transaction end on another thread than the one that began
 *             it, which a rwlock does not allow.
 *   s_tlock   the cache of open tables.
 *
 * LMDB's own write lock serialises the writers of all processes; leadership (s_leading) also
 * makes map growth and the "failed" state race-free here, and turns a store_write from inside a
 * write function (which runs on the leader's thread) into an error instead of a deadlock. The
 * leader begins and commits the LMDB write transaction on its own thread: LMDB's writer mutex
 * must be released by the thread that took it, MDB_NOTLS or not.
 *
 * Invariants: the map size changes only inside the exclusive gate; only a leader runs write
 * transactions, and there is at most one leader; s_failed changes only under s_qlock, only by a
 * leader, and never goes back to false; a store_txn of a write transaction lives on the leader's
 * stack and exists only while one write function runs; a request leaves the queue only into a
 * leader's batch, and its caller returns only after that leader set rq_done.
 */
#include "store_internal.h"

#include "haven/clock.h"
#include "haven/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A store_txn for one run of a write function in the LMDB transaction t. */
static void
write_txn_init(store_txn *txn, store *s, MDB_txn *t)
{
	memset(txn, 0, sizeof(*txn));
	txn->t_store = s;
	txn->t_txn   = t;
	txn->t_write = true;
	txn->t_err   = HV_OK;
}

hv_status
store_write_one(store *s, store_write_fn fn, void *arg, int *commit_rc)
{
	hv_status rv = HV_INTERNAL;
	store_txn txn;
	MDB_txn  *t;
	int       rc;

	*commit_rc = 0;
	for (;;) {
		if ((rv = store_txn_begin(s, 0, &t)) != HV_OK) {
			goto out;
		}
		write_txn_init(&txn, s, t);
		rv = fn(&txn, arg);
		store_cursors_detach(&txn);
		if (txn.t_map_full || rv != HV_OK || txn.t_err != HV_OK) {
			mdb_txn_abort(t);
			store_gate_leave(&s->s_gate);
			if (txn.t_map_full) {
				/* Whatever fn made of the failed put, the transaction is
				 * lost: grow and run fn again from the start. */
				if ((rv = store_map_grow(s)) != HV_OK) {
					goto out;
				}
				continue;
			}
			if (rv == HV_OK) {
				rv = txn.t_err; /* fn ignored an error that spoiled the txn */
			}
			goto out;
		}
		rc = mdb_txn_commit(t); /* frees the transaction, even on failure */
		store_gate_leave(&s->s_gate);
		if (rc == MDB_SUCCESS) {
			rv = HV_OK;
			goto out;
		}
		if (rc == MDB_MAP_FULL) {
			if ((rv = store_map_grow(s)) != HV_OK) {
				goto out;
			}
			continue;
		}
		rv = store_lmdb_status(rc);
		if (rc != MDB_BAD_TXN) { /* MDB_BAD_TXN: spoiled before commit, nothing written */
			*commit_rc = rc;
		}
		goto out;
	}
out:
	return (rv);
}

/* How one attempt at a batch in one transaction ended. */
typedef enum batch_end {
	BATCH_DONE,  /* every status set: committed, nothing to commit, or a fatal commit */
	BATCH_GROW,  /* the map filled: grow it and run the whole batch again */
	BATCH_SPLIT, /* the batch cannot go as one: run each request alone */
} batch_end;

/*
 * Runs the n (> 1) requests of a batch once, each in a nested transaction of one write
 * transaction, in order, and commits the write transaction once. A function that fails (or
 * whose transaction an error spoiled) loses its nested transaction only; the next function
 * sees the changes of the ones before it that succeeded. Sets *committed and, when the commit
 * failed for good, *commit_rc (and every status to HV_UNAVAILABLE).
 */
static batch_end
batch_once(store *s, store_req **batch, size_t n, bool *committed, int *commit_rc)
{
	store_txn txn;
	MDB_txn  *parent;
	MDB_txn  *child;
	batch_end end = BATCH_SPLIT;
	hv_status rv;
	size_t    ok = 0;
	int       rc;

	*committed = false;
	if ((rv = store_txn_begin(s, 0, &parent)) != HV_OK) {
		/* Nothing can begin (HV_UNAVAILABLE: no map): each request alone would get the
		 * same answer. */
		for (size_t i = 0; i < n; i++) {
			batch[i]->rq_status = rv;
		}
		return (BATCH_DONE);
	}
	for (size_t i = 0; i < n; i++) {
		store_req *r = batch[i];

		if (mdb_txn_begin(s->s_env, parent, 0, &child) != 0) {
			goto abort; /* ENOMEM, or the parent is spoiled: go alone */
		}
		write_txn_init(&txn, s, child);
		rv = r->rq_fn(&txn, r->rq_arg);
		store_cursors_detach(&txn);
		if (txn.t_map_full) {
			mdb_txn_abort(child);
			end = BATCH_GROW;
			goto abort;
		}
		if (txn.t_err == HV_RESOURCE_EXHAUSTED) {
			/* MDB_TXN_FULL and kin: maybe the batch's dirty pages, not this
			 * function's. Alone, it gets its own answer. */
			mdb_txn_abort(child);
			goto abort;
		}
		if (rv != HV_OK || txn.t_err != HV_OK) {
			mdb_txn_abort(child);
			r->rq_status = rv != HV_OK ? rv : txn.t_err;
			continue;
		}
		if (mdb_txn_commit(child) != 0) { /* into the parent; frees child either way */
			goto abort;
		}
		r->rq_status = HV_OK;
		ok++;
	}
	if (ok == 0) {
		/* Every function failed: nothing to write, nothing to sync. */
		mdb_txn_abort(parent);
		store_gate_leave(&s->s_gate);
		return (BATCH_DONE);
	}
	rc = mdb_txn_commit(parent); /* frees the transaction, even on failure */
	store_gate_leave(&s->s_gate);
	if (rc == MDB_SUCCESS) {
		*committed = true;
		return (BATCH_DONE);
	}
	if (rc == MDB_MAP_FULL) {
		return (BATCH_GROW);
	}
	if (rc == MDB_BAD_TXN) {
		return (BATCH_SPLIT); /* spoiled before commit, nothing written */
	}
	*commit_rc = rc;
	for (size_t i = 0; i < n; i++) {
		batch[i]->rq_status = HV_UNAVAILABLE;
	}
	return (BATCH_DONE);
abort:
	mdb_txn_abort(parent);
	store_gate_leave(&s->s_gate);
	return (end);
}

/*
 * Runs a leader's batch: all of it in one transaction when it has more than one request, each
 * request alone when it has one or the batch could not go as one (the map at its maximum for
 * the whole batch, a nested transaction that could not begin or commit, a transaction too big).
 * Sets every request's rq_status. Returns the number of commits; *commit_rc is set to LMDB's
 * error when a commit failed (fatal: that request and every later one get HV_UNAVAILABLE).
 */
static unsigned
batch_run(store *s, store_req **batch, size_t n, int *commit_rc)
{
	unsigned commits = 0;
	bool     committed;

	*commit_rc = 0;
	if (n > 1) {
		for (;;) {
			batch_end end = batch_once(s, batch, n, &committed, commit_rc);
			if (end == BATCH_DONE) {
				return (committed ? 1 : 0);
			}
			if (end == BATCH_GROW && store_map_grow(s) == HV_OK) {
				continue; /* every function again, from the start */
			}
			break; /* split: alone, each learns whether it fits */
		}
	}
	for (size_t i = 0; i < n; i++) {
		store_req *r = batch[i];

		if (*commit_rc != 0) {
			r->rq_status = HV_UNAVAILABLE;
			continue;
		}
		r->rq_status = store_write_one(s, r->rq_fn, r->rq_arg, commit_rc);
		if (*commit_rc != 0) {
			r->rq_status = HV_UNAVAILABLE;
		} else if (r->rq_status == HV_OK) {
			commits++;
		}
	}
	return (commits);
}

void
store_fatal_default(void *arg, hv_status code, const char *what)
{
	(void) arg;
	log_error("%s (%s); exiting so that the process restarts on the intact store", what,
	    hv_status_name(code));
	exit(STORE_FATAL_EXIT);
}

/*
 * Leads one batch. Called with s_qlock held and no leader; returns with s_qlock held and no
 * leader, every request of the batch done and the oldest request still queued (if any)
 * signalled, so that its caller leads the next batch.
 */
static void
write_lead(store *s)
{
	store_req *batch[STORE_BATCH_MAX];
	store_req *r;
	size_t     n         = 0;
	unsigned   commits   = 0;
	int        commit_rc = 0;
	bool       failed;
	char       what[160];

	/* Oldest first; a request that must run alone ends the batch, or is all of it. */
	while (n < STORE_BATCH_MAX && (r = s->s_qhead) != NULL && !(r->rq_alone && n > 0)) {
		s->s_qhead = r->rq_next;
		if (s->s_qhead == NULL) {
			s->s_qtail = NULL;
		}
		s->s_queued--;
		r->rq_next = NULL;
		batch[n++] = r;
		if (r->rq_alone) {
			break;
		}
	}
	s->s_leading = true;
	s->s_leader  = pthread_self();
	failed       = s->s_failed;
	pthread_mutex_unlock(&s->s_qlock);

	if (failed) {
		for (size_t i = 0; i < n; i++) {
			batch[i]->rq_status = HV_UNAVAILABLE;
		}
	} else {
		commits = batch_run(s, batch, n, &commit_rc);
	}
	if (commit_rc != 0) {
		/* Never retried: LMDB may or may not have written part of it, and no caller
		 * may learn "maybe". Refuse writes until a restart. Only this leader saw the
		 * failure, and every later one sees s_failed: the hook runs once, before any
		 * caller of the batch returns. */
		pthread_mutex_lock(&s->s_qlock);
		s->s_failed = true;
		pthread_mutex_unlock(&s->s_qlock);
		snprintf(what, sizeof(what), "store: commit failed: %s", mdb_strerror(commit_rc));
		s->s_fatal(s->s_fatal_arg, store_lmdb_status(commit_rc), what);
	}

	pthread_mutex_lock(&s->s_qlock);
	s->s_commits += commits;
	for (size_t i = 0; i < n; i++) {
		batch[i]->rq_done = true;
		pthread_cond_signal(&batch[i]->rq_cond);
	}
	s->s_leading = false;
	if (s->s_qhead != NULL) {
		pthread_cond_signal(&s->s_qhead->rq_cond);
	}
}

hv_status
store_write_enqueue(store *s, store_write_fn fn, void *arg, bool alone)
{
	hv_status rv = HV_RESOURCE_EXHAUSTED;
	store_req rq;

	memset(&rq, 0, sizeof(rq));
	rq.rq_fn     = fn;
	rq.rq_arg    = arg;
	rq.rq_status = HV_INTERNAL;
	rq.rq_alone  = alone;
	if (pthread_cond_init(&rq.rq_cond, NULL) != 0) {
		return (rv);
	}
	pthread_mutex_lock(&s->s_qlock);
	if (s->s_leading && pthread_equal(s->s_leader, pthread_self())) {
		/* From inside a write function: this thread leads the batch that runs it. */
		rv = HV_FAILED_PRECONDITION;
		goto out;
	}
	if (s->s_failed) {
		rv = HV_UNAVAILABLE;
		goto out;
	}
	if (s->s_qtail != NULL) {
		s->s_qtail->rq_next = &rq;
	} else {
		s->s_qhead = &rq;
	}
	s->s_qtail = &rq;
	s->s_queued++;
	/* Signalled when done, and when this is the oldest request as a batch ends. A request
	 * that did not fit in the batch this thread led stays queued: lead again. */
	while (!rq.rq_done) {
		if (!s->s_leading) {
			write_lead(s);
		} else {
			pthread_cond_wait(&rq.rq_cond, &s->s_qlock);
		}
	}
	rv = rq.rq_status;
out:
	pthread_mutex_unlock(&s->s_qlock);
	pthread_cond_destroy(&rq.rq_cond);
	return (rv);
}

hv_status
store_write(store *s, store_write_fn fn, void *arg)
{
	if (s == NULL || fn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	return (store_write_enqueue(s, fn, arg, false));
}

uint64_t
store_commit_count(store *s)
{
	uint64_t n;

	if (s == NULL) {
		return (0);
	}
	pthread_mutex_lock(&s->s_qlock);
	n = s->s_commits;
	pthread_mutex_unlock(&s->s_qlock);
	return (n);
}

unsigned
store_write_queued(store *s)
{
	unsigned n;

	if (s == NULL) {
		return (0);
	}
	pthread_mutex_lock(&s->s_qlock);
	n = s->s_queued;
	pthread_mutex_unlock(&s->s_qlock);
	return (n);
}
