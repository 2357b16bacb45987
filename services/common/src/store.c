/*
 * store.c - the node's LMDB store.
 *
 * One LMDB environment lives in the node's data directory and is shared by the node's
 * processes, each through one store handle. This file opens it (creating the directory and
 * stamping or checking the schema version), hands out named tables, runs write functions in
 * durable write transactions that grow the map when it fills, wraps read transactions and
 * cursors, and converts every LMDB error to an hv_status in one place (lmdb_status).
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
#include "haven/file.h"
#include "haven/store.h"
#include "haven/bytes.h"
#include "haven/clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "haven/log.h"

#define STORE_KEY_MAX      511 /* LMDB's compiled-in maximum key size */
#define STORE_NAME_MAX     63
#define STORE_MAP_DEFAULT  ((size_t) 64 << 20)
#define STORE_MAX_DEFAULT  ((size_t) 64 << 30)
#define STORE_TABLES_DEF   64
#define STORE_READERS      256 /* reader slots: concurrent read transactions of all processes */
#define STORE_BEGIN_TRIES  16  /* bound on MDB_MAP_RESIZED / stale-reader retries */
#define STORE_FATAL_EXIT   75  /* EX_TEMPFAIL: a supervisor restarts the process */
#define STORE_DATA_FILE    "data.mdb"
#define STORE_META_TABLE   "meta"
#define STORE_SCHEMA_KEY   "schema_version"
/* How long a new transaction defers to a pending map resize before entering anyway. Entering
 * anyway keeps a thread that already holds a transaction from deadlocking against the resize;
 * waiting a little keeps a stream of short readers from starving it. */
#define STORE_GATE_DEFER_MS 5
/* Most write functions one commit carries: bounds the leader's work, and so the latency of
 * every write in the batch, to this many functions and one fsync. */
#define STORE_BATCH_MAX 64

/* A shared/exclusive gate around this process's LMDB transactions (see the file comment). */
typedef struct store_gate {
	pthread_mutex_t g_lock;
	pthread_cond_t  g_cond;
	unsigned        g_shared;  /* transactions inside */
	unsigned        g_pending; /* resizes waiting to get in */
	bool            g_excl;    /* a resize is inside */
} store_gate;

/* A store_write call waiting for the commit that carries it. Lives on the caller's stack; the
 * caller returns only once a leader set rq_done (under s_qlock). */
typedef struct store_req {
	store_write_fn    rq_fn;
	void             *rq_arg;
	hv_status         rq_status; /* set by the leader before rq_done */
	bool              rq_done;
	bool              rq_alone;  /* runs in a batch of its own (store_table_open) */
	pthread_cond_t    rq_cond;   /* signalled when done, or when it is the oldest queued */
	struct store_req *rq_next;
} store_req;

typedef struct store_table_entry {
	char   te_name[STORE_NAME_MAX + 1];
	MDB_dbi te_dbi;
} store_table_entry;

struct store {
	MDB_env          *s_env;
	size_t            s_max_map;
	uint32_t          s_schema; /* as recorded in the store */
	void            (*s_fatal)(void *, hv_status, const char *);
	void             *s_fatal_arg;
	pthread_mutex_t   s_qlock;    /* the fields down to s_commits */
	store_req        *s_qhead;    /* queued writes, oldest first, not yet in a batch */
	store_req        *s_qtail;
	unsigned          s_queued;   /* length of that queue */
	bool              s_leading;  /* a leader is running a batch */
	pthread_t         s_leader;   /* that leader's thread, while s_leading */
	bool              s_failed;   /* a commit failed, writes are refused */
	uint64_t          s_commits;  /* write transactions committed */
	bool              s_unmapped; /* inside the gate: a resize failed and left no map */
	store_gate        s_gate;
	pthread_mutex_t   s_tlock;
	store_table_entry *s_tables;
	unsigned          s_ntables;
	unsigned          s_maxtables;
	/* Registration in the list of this process's open stores. */
	dev_t             s_dev;
	ino_t             s_ino;
	pid_t             s_pid;
	store            *s_next;
};

struct store_txn {
	store        *t_store;
	MDB_txn      *t_txn;
	bool          t_write;
	bool          t_map_full; /* a put hit MDB_MAP_FULL: grow and run the function again */
	hv_status     t_err;      /* first error that spoiled a write transaction */
	store_cursor *t_cursors;  /* open cursors, closed at the latest when the txn ends */
};

struct store_cursor {
	store_txn    *c_txn; /* NULL once the transaction ended under the cursor */
	MDB_cursor   *c_cur;
	store_cursor *c_next;
	store_cursor *c_prev;
};

/*
 * The stores open in this process. LMDB forbids opening one environment twice in a process
 * (closing the second handle would drop the first one's file locks), so store_open refuses a
 * directory already open here. Entries carry their pid: a child after fork() may open the
 * store its parent has open.
 */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static store          *open_stores;

/* The one conversion of LMDB's error numbers (and the errno values it passes through). */
static hv_status
lmdb_status(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return (HV_OK);
	case MDB_NOTFOUND:
		return (HV_NOT_FOUND);
	case MDB_KEYEXIST:
		return (HV_ALREADY_EXISTS);
	case MDB_MAP_FULL:
	case MDB_DBS_FULL:
	case MDB_READERS_FULL:
	case MDB_TXN_FULL:
	case MDB_TLS_FULL:
		return (HV_RESOURCE_EXHAUSTED);
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return (HV_DATA_LOSS);
	case MDB_BAD_VALSIZE:
	case EINVAL:
		return (HV_INVALID_ARGUMENT);
	case MDB_PANIC:
	case MDB_MAP_RESIZED:
		return (HV_UNAVAILABLE);
	case MDB_INCOMPATIBLE:
	case MDB_BAD_TXN:
	case MDB_BAD_RSLOT:
	case MDB_BAD_DBI:
		return (HV_FAILED_PRECONDITION);
	case MDB_PAGE_FULL:
	case MDB_CURSOR_FULL:
		return (HV_INTERNAL);
	default:
		return (rc > 0 ? hv_status_from_errno(rc) : HV_INTERNAL);
	}
}

/* Whether an LMDB error leaves a write transaction unable to commit. Not-found and
 * already-exists are answers, and EINVAL / MDB_BAD_VALSIZE are refused before LMDB changes
 * anything; everything else (LMDB marks the transaction MDB_TXN_ERROR) spoils it. */
static bool
lmdb_spoils(int rc)
{
	return (rc != MDB_SUCCESS && rc != MDB_NOTFOUND && rc != MDB_KEYEXIST && rc != EINVAL &&
	    rc != MDB_BAD_VALSIZE);
}

/* Converts rc and, in a write transaction, remembers what it means for the commit. */
static hv_status
txn_note(store_txn *txn, int rc)
{
	if (txn->t_write && lmdb_spoils(rc)) {
		if (rc == MDB_MAP_FULL) {
			txn->t_map_full = true;
		} else if (txn->t_err == HV_OK) {
			txn->t_err = lmdb_status(rc);
		}
	}
	return (lmdb_status(rc));
}

static void
gate_init(store_gate *g, bool *ok)
{
	*ok = pthread_mutex_init(&g->g_lock, NULL) == 0;
	if (*ok && hv_clock_cond_init(&g->g_cond) != 0) {
		pthread_mutex_destroy(&g->g_lock);
		*ok = false;
	}
	g->g_shared  = 0;
	g->g_pending = 0;
	g->g_excl    = false;
}

static void
gate_fini(store_gate *g)
{
	pthread_cond_destroy(&g->g_cond);
	pthread_mutex_destroy(&g->g_lock);
}

/* Enters shared. Waits while a resize is inside; defers briefly to one that is waiting. */
static void
gate_enter(store_gate *g)
{
	struct timespec until;
	bool            deferred = false;

	pthread_mutex_lock(&g->g_lock);
	for (;;) {
		if (g->g_excl) {
			pthread_cond_wait(&g->g_cond, &g->g_lock);
			continue;
		}
		if (g->g_pending > 0 && !deferred) {
			/* On the monotonic clock: a wall-clock step does not stretch it. */
			hv_clock_deadline(&until, STORE_GATE_DEFER_MS);
			deferred = true;
			while (g->g_pending > 0 && !g->g_excl &&
			    pthread_cond_timedwait(&g->g_cond, &g->g_lock, &until) == 0) {
			}
			continue;
		}
		break;
	}
	g->g_shared++;
	pthread_mutex_unlock(&g->g_lock);
}

static void
gate_leave(store_gate *g)
{
	pthread_mutex_lock(&g->g_lock);
	if (--g->g_shared == 0) {
		pthread_cond_broadcast(&g->g_cond);
	}
	pthread_mutex_unlock(&g->g_lock);
}

/* Enters exclusively: waits until no transaction of this process is inside. */
static void
gate_enter_excl(store_gate *g)
{
	pthread_mutex_lock(&g->g_lock);
	g->g_pending++;
	while (g->g_excl || g->g_shared > 0) {
		pthread_cond_wait(&g->g_cond, &g->g_lock);
	}
	g->g_pending--;
	g->g_excl = true;
	pthread_mutex_unlock(&g->g_lock);
}

static void
gate_leave_excl(store_gate *g)
{
	pthread_mutex_lock(&g->g_lock);
	g->g_excl = false;
	pthread_cond_broadcast(&g->g_cond);
	pthread_mutex_unlock(&g->g_lock);
}

/* After a failed mdb_env_set_mapsize LMDB may have no map left; try to map the old size again.
 * Called inside the exclusive gate. */
static void
map_restore(store *s, size_t old)
{
	if (mdb_env_set_mapsize(s->s_env, old) != 0) {
		s->s_unmapped = true;
		log_error("store: the map could not be restored; the store is unusable");
	}
}

/* Adopts the map size another process grew the environment to (after MDB_MAP_RESIZED). */
static hv_status
map_adopt(store *s)
{
	hv_status   rv = HV_INTERNAL;
	MDB_envinfo info;
	MDB_envinfo after;
	int         rc;

	gate_enter_excl(&s->s_gate);
	if (s->s_unmapped) {
		rv = HV_UNAVAILABLE;
		goto out;
	}
	if ((rc = mdb_env_info(s->s_env, &info)) != 0) {
		rv = lmdb_status(rc);
		goto out;
	}
	if ((rc = mdb_env_set_mapsize(s->s_env, 0)) != 0) {
		map_restore(s, info.me_mapsize);
		rv = lmdb_status(rc);
		goto out;
	}
	if (mdb_env_info(s->s_env, &after) == 0) {
		log_debug("store: map of %zu bytes grown to %zu by another process",
		    info.me_mapsize, after.me_mapsize);
	}
	rv = HV_OK;
out:
	gate_leave_excl(&s->s_gate);
	return (rv);
}

/* Doubles the map, up to s_max_map. HV_RESOURCE_EXHAUSTED when it is already there. */
static hv_status
map_grow(store *s)
{
	hv_status   rv = HV_INTERNAL;
	MDB_envinfo info;
	size_t      next;
	int         rc;

	gate_enter_excl(&s->s_gate);
	if (s->s_unmapped) {
		rv = HV_UNAVAILABLE;
		goto out;
	}
	if ((rc = mdb_env_info(s->s_env, &info)) != 0) {
		rv = lmdb_status(rc);
		goto out;
	}
	if (info.me_mapsize >= s->s_max_map) {
		log_warn("store: map full at its maximum size of %zu bytes", s->s_max_map);
		rv = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	next = info.me_mapsize > s->s_max_map / 2 ? s->s_max_map : info.me_mapsize * 2;
	if ((rc = mdb_env_set_mapsize(s->s_env, next)) != 0) {
		map_restore(s, info.me_mapsize);
		rv = lmdb_status(rc);
		goto out;
	}
	log_info("store: map grown from %zu to %zu bytes", info.me_mapsize, next);
	rv = HV_OK;
out:
	gate_leave_excl(&s->s_gate);
	return (rv);
}

/*
 * Begins an LMDB transaction inside the gate. On HV_OK the caller is inside the gate until it
 * ends the transaction and calls gate_leave. Handles another process having grown the map
 * (MDB_MAP_RESIZED) and a reader table filled by dead processes.
 */
static hv_status
txn_begin(store *s, unsigned flags, MDB_txn **out)
{
	hv_status rv = HV_INTERNAL;
	int       rc;
	int       dead;

	for (int tries = 0;; tries++) {
		gate_enter(&s->s_gate);
		if (s->s_unmapped) {
			gate_leave(&s->s_gate);
			rv = HV_UNAVAILABLE;
			goto out;
		}
		rc = mdb_txn_begin(s->s_env, NULL, flags, out);
		if (rc == 0) {
			rv = HV_OK;
			goto out;
		}
		gate_leave(&s->s_gate);
		if (tries >= STORE_BEGIN_TRIES) {
			rv = lmdb_status(rc);
			goto out;
		}
		if (rc == MDB_MAP_RESIZED) {
			if ((rv = map_adopt(s)) != HV_OK) {
				goto out;
			}
			continue;
		}
		dead = 0;
		if (rc == MDB_READERS_FULL && mdb_reader_check(s->s_env, &dead) == 0 && dead > 0) {
			continue;
		}
		rv = lmdb_status(rc);
		goto out;
	}
out:
	return (rv);
}

/* Closes the LMDB cursors still open on txn; their handles stay allocated until
 * store_cursor_close, which then only frees them. */
static void
cursors_detach(store_txn *txn)
{
	store_cursor *c;

	while ((c = txn->t_cursors) != NULL) {
		txn->t_cursors = c->c_next;
		mdb_cursor_close(c->c_cur);
		c->c_cur  = NULL;
		c->c_txn  = NULL;
		c->c_next = NULL;
		c->c_prev = NULL;
	}
}

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

/*
 * Runs fn alone in write transactions until one commits, the map cannot grow, or fn fails.
 * Called by the leader, or by store_open before anyone else has the handle. *commit_rc is set
 * to LMDB's error when a commit failed (other than by a full map), which the caller treats as
 * fatal. HV_OK means committed.
 */
static hv_status
write_one(store *s, store_write_fn fn, void *arg, int *commit_rc)
{
	hv_status rv = HV_INTERNAL;
	store_txn txn;
	MDB_txn  *t;
	int       rc;

	*commit_rc = 0;
	for (;;) {
		if ((rv = txn_begin(s, 0, &t)) != HV_OK) {
			goto out;
		}
		write_txn_init(&txn, s, t);
		rv = fn(&txn, arg);
		cursors_detach(&txn);
		if (txn.t_map_full || rv != HV_OK || txn.t_err != HV_OK) {
			mdb_txn_abort(t);
			gate_leave(&s->s_gate);
			if (txn.t_map_full) {
				/* Whatever fn made of the failed put, the transaction is
				 * lost: grow and run fn again from the start. */
				if ((rv = map_grow(s)) != HV_OK) {
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
		gate_leave(&s->s_gate);
		if (rc == MDB_SUCCESS) {
			rv = HV_OK;
			goto out;
		}
		if (rc == MDB_MAP_FULL) {
			if ((rv = map_grow(s)) != HV_OK) {
				goto out;
			}
			continue;
		}
		rv = lmdb_status(rc);
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
	if ((rv = txn_begin(s, 0, &parent)) != HV_OK) {
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
		cursors_detach(&txn);
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
		gate_leave(&s->s_gate);
		return (BATCH_DONE);
	}
	rc = mdb_txn_commit(parent); /* frees the transaction, even on failure */
	gate_leave(&s->s_gate);
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
	gate_leave(&s->s_gate);
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
			if (end == BATCH_GROW && map_grow(s) == HV_OK) {
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
		r->rq_status = write_one(s, r->rq_fn, r->rq_arg, commit_rc);
		if (*commit_rc != 0) {
			r->rq_status = HV_UNAVAILABLE;
		} else if (r->rq_status == HV_OK) {
			commits++;
		}
	}
	return (commits);
}

static void
fatal_default(void *arg, hv_status code, const char *what)
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
		s->s_fatal(s->s_fatal_arg, lmdb_status(commit_rc), what);
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

/* Queues fn and waits until a batch that carries it ended, leading batches while no one else
 * does. alone: fn runs in a write transaction of its own. */
static hv_status
write_queued(store *s, store_write_fn fn, void *arg, bool alone)
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
	return (write_queued(s, fn, arg, false));
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

static bool
table_name_ok(const char *name)
{
	size_t n;

	if (name == NULL) {
		return (false);
	}
	for (n = 0; name[n] != '\0'; n++) {
		char ch = name[n];
		if (n >= STORE_NAME_MAX ||
		    !((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
		        ch == '.')) {
			return (false);
		}
	}
	return (n > 0);
}

static bool
table_lookup(store *s, const char *name, store_table *out)
{
	bool found = false;

	pthread_mutex_lock(&s->s_tlock);
	for (unsigned i = 0; i < s->s_ntables; i++) {
		if (strcmp(s->s_tables[i].te_name, name) == 0) {
			*out  = s->s_tables[i].te_dbi;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&s->s_tlock);
	return (found);
}

static void
table_remember(store *s, const char *name, MDB_dbi dbi)
{
	store_table dummy;

	if (table_lookup(s, name, &dummy)) {
		return;
	}
	pthread_mutex_lock(&s->s_tlock);
	/* LMDB refuses more tables than s_maxtables (DBS_FULL) before the cache fills. */
	if (s->s_ntables < s->s_maxtables) {
		store_table_entry *e = &s->s_tables[s->s_ntables++];
		snprintf(e->te_name, sizeof(e->te_name), "%s", name);
		e->te_dbi = dbi;
	}
	pthread_mutex_unlock(&s->s_tlock);
}

typedef struct table_open_args {
	const char *ta_name;
	MDB_dbi     ta_dbi;
} table_open_args;

/* mdb_dbi_open runs only here, in a write transaction of its own (never a nested one) run by
 * the one leader: LMDB requires that no two transactions of a process open tables at once. */
static hv_status
table_open_fn(store_txn *txn, void *arg)
{
	table_open_args *a = arg;

	return (txn_note(txn, mdb_dbi_open(txn->t_txn, a->ta_name, MDB_CREATE, &a->ta_dbi)));
}

hv_status
store_table_open(store *s, const char *name, store_table *out)
{
	hv_status       rv = HV_INVALID_ARGUMENT;
	table_open_args a;

	if (s == NULL || out == NULL || !table_name_ok(name)) {
		goto out;
	}
	if (table_lookup(s, name, out)) {
		rv = HV_OK;
		goto out;
	}
	a.ta_name = name;
	a.ta_dbi  = 0;
	if ((rv = write_queued(s, table_open_fn, &a, true)) != HV_OK) {
		goto out;
	}
	table_remember(s, name, a.ta_dbi);
	*out = a.ta_dbi;
	rv   = HV_OK;
out:
	return (rv);
}

uint32_t
store_schema_version(const store *s)
{
	return (s == NULL ? 0 : s->s_schema);
}

typedef struct schema_args {
	uint32_t sa_ours;
	uint32_t sa_found;
	MDB_dbi  sa_meta;
} schema_args;

/* Opens the meta table and reads the schema version, stamping ours into a new store. */
static hv_status
schema_fn(store_txn *txn, void *arg)
{
	schema_args   *a = arg;
	const uint8_t *v;
	const void    *vp;
	size_t         vlen;
	uint8_t        be[4];
	hv_status      rv;
	int            rc;

	if ((rc = mdb_dbi_open(txn->t_txn, STORE_META_TABLE, MDB_CREATE, &a->sa_meta)) != 0) {
		return (txn_note(txn, rc));
	}
	rv = store_get(txn, a->sa_meta, STORE_SCHEMA_KEY, strlen(STORE_SCHEMA_KEY), &vp, &vlen);
	if (rv == HV_NOT_FOUND) {
		hv_put_be32(be, a->sa_ours);
		a->sa_found = a->sa_ours;
		return (store_put(txn, a->sa_meta, STORE_SCHEMA_KEY, strlen(STORE_SCHEMA_KEY), be,
		    sizeof(be)));
	}
	if (rv != HV_OK) {
		return (rv);
	}
	if (vlen != 4) {
		log_error("store: schema version record of %zu bytes", vlen);
		return (HV_DATA_LOSS);
	}
	v           = vp;
	a->sa_found = hv_get_be32(v);
	if (a->sa_found > a->sa_ours) {
		log_error("store: schema version %u is newer than this program's %u", a->sa_found,
		    a->sa_ours);
		return (HV_FAILED_PRECONDITION);
	}
	return (HV_OK);
}

static hv_status
dir_prepare(const char *dir, struct stat *st)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		return (hv_status_from_errno(errno));
	}
	if (stat(dir, st) != 0) {
		return (hv_status_from_errno(errno));
	}
	if (!S_ISDIR(st->st_mode)) {
		return (HV_FAILED_PRECONDITION);
	}
	return (HV_OK);
}

static void
store_free(store *s)
{
	if (s->s_env != NULL) {
		mdb_env_close(s->s_env);
	}
	free(s->s_tables);
	gate_fini(&s->s_gate);
	pthread_mutex_destroy(&s->s_tlock);
	pthread_mutex_destroy(&s->s_qlock);
	free(s);
}

hv_status
store_open(store **out, const char *dir, const store_options *opts)
{
	static const store_options defaults;
	hv_status                  rv = HV_INVALID_ARGUMENT;
	store                     *s  = NULL;
	struct stat                st;
	schema_args                sa;
	bool                       registered = false;
	bool                       ok;
	size_t                     map;
	int                        commit_rc;
	int                        dead = 0;
	int                        rc;

	if (out != NULL) {
		*out = NULL;
	}
	if (out == NULL || dir == NULL || dir[0] == '\0') {
		goto out;
	}
	if (opts == NULL) {
		opts = &defaults;
	}
	map = opts->map_size != 0 ? opts->map_size : STORE_MAP_DEFAULT;
	if (opts->max_map_size != 0 && map > opts->max_map_size) {
		goto out;
	}
	if ((rv = dir_prepare(dir, &st)) != HV_OK) {
		goto out;
	}

	rv = HV_RESOURCE_EXHAUSTED;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		goto out;
	}
	s->s_max_map   = opts->max_map_size != 0 ? opts->max_map_size : STORE_MAX_DEFAULT;
	s->s_max_map   = s->s_max_map < map ? map : s->s_max_map;
	s->s_fatal     = opts->fatal != NULL ? opts->fatal : fatal_default;
	s->s_fatal_arg = opts->fatal_arg;
	s->s_maxtables = (opts->max_tables != 0 ? opts->max_tables : STORE_TABLES_DEF) + 1;
	s->s_dev       = st.st_dev;
	s->s_ino       = st.st_ino;
	s->s_pid       = getpid();
	if ((s->s_tables = calloc(s->s_maxtables, sizeof(*s->s_tables))) == NULL) {
		free(s);
		s = NULL;
		goto out;
	}
	if (pthread_mutex_init(&s->s_qlock, NULL) != 0) {
		free(s->s_tables);
		free(s);
		s = NULL;
		goto out;
	}
	if (pthread_mutex_init(&s->s_tlock, NULL) != 0) {
		pthread_mutex_destroy(&s->s_qlock);
		free(s->s_tables);
		free(s);
		s = NULL;
		goto out;
	}
	gate_init(&s->s_gate, &ok);
	if (!ok) {
		pthread_mutex_destroy(&s->s_tlock);
		pthread_mutex_destroy(&s->s_qlock);
		free(s->s_tables);
		free(s);
		s = NULL;
		goto out;
	}
	/* From here on store_free() undoes everything. */

	pthread_mutex_lock(&open_lock);
	for (store *o = open_stores; o != NULL; o = o->s_next) {
		if (o->s_pid == s->s_pid && o->s_dev == s->s_dev && o->s_ino == s->s_ino) {
			pthread_mutex_unlock(&open_lock);
			log_error("store: the data directory is already open in this process");
			rv = HV_FAILED_PRECONDITION;
			goto out;
		}
	}
	/* Registered before LMDB opens the lock file, so that a concurrent second open in this
	 * process is refused rather than racing us. */
	s->s_next   = open_stores;
	open_stores = s;
	registered  = true;
	pthread_mutex_unlock(&open_lock);

	if ((rc = mdb_env_create(&s->s_env)) != 0) {
		s->s_env = NULL;
		rv       = lmdb_status(rc);
		goto out;
	}
	if ((rc = mdb_env_set_maxdbs(s->s_env, s->s_maxtables)) != 0 ||
	    (rc = mdb_env_set_maxreaders(s->s_env, STORE_READERS)) != 0 ||
	    (rc = mdb_env_set_mapsize(s->s_env, map)) != 0) {
		rv = lmdb_status(rc);
		goto out;
	}
	/* Durable by default: without MDB_NOSYNC, a commit returns after fdatasync. */
	rc = mdb_env_open(s->s_env, dir, MDB_NOTLS | (opts->no_sync ? MDB_NOSYNC : 0), 0600);
	if (rc != 0) {
		log_error("store: cannot open the environment: %s", mdb_strerror(rc));
		rv = lmdb_status(rc);
		goto out;
	}
	/* Reader slots of processes that died inside a read transaction pin old pages forever;
	 * free them. LMDB clears the whole table itself only when no process has it open. */
	if ((rc = mdb_reader_check(s->s_env, &dead)) != 0) {
		rv = lmdb_status(rc);
		goto out;
	}
	if (dead > 0) {
		log_info("store: cleared %d stale reader slots", dead);
	}

	sa.sa_ours  = opts->schema_version;
	sa.sa_found = 0;
	sa.sa_meta  = 0;
	/* No one else has the handle yet: no queue, no leader. A failed commit here fails the
	 * open rather than calling the hook. */
	if ((rv = write_one(s, schema_fn, &sa, &commit_rc)) != HV_OK) {
		goto out;
	}
	s->s_commits++;
	s->s_schema = sa.sa_found;
	table_remember(s, STORE_META_TABLE, sa.sa_meta);

	*out = s;
	s    = NULL;
	rv   = HV_OK;
out:
	if (s != NULL) {
		if (registered) {
			pthread_mutex_lock(&open_lock);
			for (store **p = &open_stores; *p != NULL; p = &(*p)->s_next) {
				if (*p == s) {
					*p = s->s_next;
					break;
				}
			}
			pthread_mutex_unlock(&open_lock);
		}
		store_free(s);
	}
	return (rv);
}

void
store_close(store *s)
{
	if (s == NULL) {
		return;
	}
	pthread_mutex_lock(&open_lock);
	for (store **p = &open_stores; *p != NULL; p = &(*p)->s_next) {
		if (*p == s) {
			*p = s->s_next;
			break;
		}
	}
	pthread_mutex_unlock(&open_lock);
	store_free(s);
}

hv_status
store_read_begin(store *s, store_txn **out)
{
	hv_status  rv  = HV_INVALID_ARGUMENT;
	store_txn *txn = NULL;

	if (out != NULL) {
		*out = NULL;
	}
	if (s == NULL || out == NULL) {
		goto out;
	}
	rv = HV_RESOURCE_EXHAUSTED;
	if ((txn = calloc(1, sizeof(*txn))) == NULL) {
		goto out;
	}
	txn->t_store = s;
	txn->t_err   = HV_OK;
	if ((rv = txn_begin(s, MDB_RDONLY, &txn->t_txn)) != HV_OK) {
		goto out;
	}
	*out = txn;
	txn  = NULL;
	rv   = HV_OK;
out:
	free(txn);
	return (rv);
}

void
store_read_end(store_txn *txn)
{
	store *s;

	/* A write transaction is ended by store_write, never here. */
	if (txn == NULL || txn->t_write) {
		return;
	}
	s = txn->t_store;
	cursors_detach(txn);
	mdb_txn_abort(txn->t_txn);
	gate_leave(&s->s_gate);
	free(txn);
}

static hv_status
check_key(const void *key, size_t klen)
{
	if (key == NULL || klen == 0 || klen > STORE_KEY_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	return (HV_OK);
}

/* Arguments of a put; a value may be empty (and then NULL). */
static hv_status
check_put(const store_txn *txn, const void *key, size_t klen, const void *val, size_t vlen)
{
	if (txn == NULL || check_key(key, klen) != HV_OK || (val == NULL && vlen > 0) ||
	    vlen > UINT32_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	if (!txn->t_write) {
		return (HV_FAILED_PRECONDITION);
	}
	return (HV_OK);
}

hv_status
store_get(store_txn *txn, store_table t, const void *key, size_t klen, const void **val,
    size_t *vlen)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_val   k;
	MDB_val   v;

	if (val != NULL) {
		*val = NULL;
	}
	if (vlen != NULL) {
		*vlen = 0;
	}
	if (txn == NULL || check_key(key, klen) != HV_OK) {
		goto out;
	}
	k.mv_size = klen;
	k.mv_data = (void *) key;
	if ((rv = txn_note(txn, mdb_get(txn->t_txn, t, &k, &v))) != HV_OK) {
		goto out;
	}
	if (val != NULL) {
		*val = v.mv_data;
	}
	if (vlen != NULL) {
		*vlen = v.mv_size;
	}
out:
	return (rv);
}

static hv_status
put_flags(store_txn *txn, store_table t, const void *key, size_t klen, const void *val,
    size_t vlen, unsigned flags)
{
	hv_status rv;
	MDB_val   k;
	MDB_val   v;

	if ((rv = check_put(txn, key, klen, val, vlen)) != HV_OK) {
		goto out;
	}
	k.mv_size = klen;
	k.mv_data = (void *) key;
	v.mv_size = vlen;
	v.mv_data = (void *) val;
	rv        = txn_note(txn, mdb_put(txn->t_txn, t, &k, &v, flags));
out:
	return (rv);
}

hv_status
store_put(store_txn *txn, store_table t, const void *key, size_t klen, const void *val,
    size_t vlen)
{
	return (put_flags(txn, t, key, klen, val, vlen, 0));
}

hv_status
store_put_new(store_txn *txn, store_table t, const void *key, size_t klen, const void *val,
    size_t vlen)
{
	return (put_flags(txn, t, key, klen, val, vlen, MDB_NOOVERWRITE));
}

hv_status
store_del(store_txn *txn, store_table t, const void *key, size_t klen)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_val   k;

	if (txn == NULL || check_key(key, klen) != HV_OK) {
		goto out;
	}
	if (!txn->t_write) {
		rv = HV_FAILED_PRECONDITION;
		goto out;
	}
	k.mv_size = klen;
	k.mv_data = (void *) key;
	rv        = txn_note(txn, mdb_del(txn->t_txn, t, &k, NULL));
out:
	return (rv);
}

static bool
msg_ok(const ProtobufCMessage *msg)
{
	return (msg != NULL && msg->descriptor != NULL &&
	    msg->descriptor->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
}

hv_status
store_put_msg(store_txn *txn, store_table t, const void *key, size_t klen,
    const ProtobufCMessage *msg)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	size_t    len;
	MDB_val   k;
	MDB_val   v;

	if (!msg_ok(msg)) {
		goto out;
	}
	len = protobuf_c_message_get_packed_size(msg);
	if ((rv = check_put(txn, key, klen, "", len)) != HV_OK) {
		goto out;
	}
	/* MDB_RESERVE: LMDB makes room in the map and we pack straight into it. */
	k.mv_size = klen;
	k.mv_data = (void *) key;
	v.mv_size = len;
	v.mv_data = NULL;
	if ((rv = txn_note(txn, mdb_put(txn->t_txn, t, &k, &v, MDB_RESERVE))) != HV_OK) {
		goto out;
	}
	if (protobuf_c_message_pack(msg, v.mv_data) != len) {
		/* The reserved bytes hold garbage now: the transaction must not commit. */
		if (txn->t_err == HV_OK) {
			txn->t_err = HV_INTERNAL;
		}
		rv = HV_INTERNAL;
		goto out;
	}
	rv = HV_OK;
out:
	return (rv);
}

hv_status
store_get_msg(store_txn *txn, store_table t, const void *key, size_t klen,
    const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *alloc, ProtobufCMessage **out)
{
	hv_status   rv = HV_INVALID_ARGUMENT;
	const void *v;
	size_t      vlen;

	if (out != NULL) {
		*out = NULL;
	}
	if (out == NULL || desc == NULL || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC) {
		goto out;
	}
	if ((rv = store_get(txn, t, key, klen, &v, &vlen)) != HV_OK) {
		goto out;
	}
	if ((*out = protobuf_c_message_unpack(desc, alloc, vlen, v)) == NULL) {
		rv = HV_DATA_LOSS;
		goto out;
	}
	rv = HV_OK;
out:
	return (rv);
}

hv_status
store_cursor_open(store_txn *txn, store_table t, store_cursor **out)
{
	hv_status     rv = HV_INVALID_ARGUMENT;
	store_cursor *c  = NULL;

	if (out != NULL) {
		*out = NULL;
	}
	if (txn == NULL || out == NULL) {
		goto out;
	}
	rv = HV_RESOURCE_EXHAUSTED;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		goto out;
	}
	if ((rv = txn_note(txn, mdb_cursor_open(txn->t_txn, t, &c->c_cur))) != HV_OK) {
		goto out;
	}
	c->c_txn = txn;
	c->c_next = txn->t_cursors;
	if (c->c_next != NULL) {
		c->c_next->c_prev = c;
	}
	txn->t_cursors = c;
	*out           = c;
	c              = NULL;
	rv             = HV_OK;
out:
	free(c);
	return (rv);
}

static hv_status
cursor_get(store_cursor *c, MDB_val *mk, MDB_cursor_op op, const void **k, size_t *kl,
    const void **v, size_t *vl)
{
	hv_status rv;
	MDB_val   mv;

	if ((rv = txn_note(c->c_txn, mdb_cursor_get(c->c_cur, mk, &mv, op))) != HV_OK) {
		return (rv);
	}
	if (k != NULL) {
		*k = mk->mv_data;
	}
	if (kl != NULL) {
		*kl = mk->mv_size;
	}
	if (v != NULL) {
		*v = mv.mv_data;
	}
	if (vl != NULL) {
		*vl = mv.mv_size;
	}
	return (HV_OK);
}

static void
cursor_clear(const void **k, size_t *kl, const void **v, size_t *vl)
{
	if (k != NULL) {
		*k = NULL;
	}
	if (kl != NULL) {
		*kl = 0;
	}
	if (v != NULL) {
		*v = NULL;
	}
	if (vl != NULL) {
		*vl = 0;
	}
}

hv_status
store_cursor_seek(store_cursor *c, const void *key, size_t klen, const void **k, size_t *kl,
    const void **v, size_t *vl)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_val   mk;

	cursor_clear(k, kl, v, vl);
	if (c == NULL || (klen > 0 && check_key(key, klen) != HV_OK)) {
		goto out;
	}
	if (c->c_txn == NULL) {
		rv = HV_FAILED_PRECONDITION; /* its transaction has ended */
		goto out;
	}
	mk.mv_size = klen;
	mk.mv_data = (void *) key;
	rv = cursor_get(c, &mk, klen == 0 ? MDB_FIRST : MDB_SET_RANGE, k, kl, v, vl);
out:
	return (rv);
}

hv_status
store_cursor_next(store_cursor *c, const void **k, size_t *kl, const void **v, size_t *vl)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_val   mk;

	cursor_clear(k, kl, v, vl);
	if (c == NULL) {
		goto out;
	}
	if (c->c_txn == NULL) {
		rv = HV_FAILED_PRECONDITION;
		goto out;
	}
	mk.mv_size = 0;
	mk.mv_data = NULL;
	rv         = cursor_get(c, &mk, MDB_NEXT, k, kl, v, vl);
out:
	return (rv);
}

hv_status
store_cursor_del(store_cursor *c)
{
	hv_status rv = HV_INVALID_ARGUMENT;

	if (c == NULL) {
		goto out;
	}
	if (c->c_txn == NULL || !c->c_txn->t_write) {
		rv = HV_FAILED_PRECONDITION;
		goto out;
	}
	rv = txn_note(c->c_txn, mdb_cursor_del(c->c_cur, 0));
out:
	return (rv);
}

void
store_cursor_close(store_cursor *c)
{
	if (c == NULL) {
		return;
	}
	if (c->c_txn != NULL) {
		mdb_cursor_close(c->c_cur);
		if (c->c_prev != NULL) {
			c->c_prev->c_next = c->c_next;
		} else {
			c->c_txn->t_cursors = c->c_next;
		}
		if (c->c_next != NULL) {
			c->c_next->c_prev = c->c_prev;
		}
	}
	free(c);
}

hv_status
store_count(store_txn *txn, store_table t, uint64_t *out)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_stat  st;

	if (out != NULL) {
		*out = 0;
	}
	if (txn == NULL || out == NULL) {
		goto out;
	}
	if ((rv = txn_note(txn, mdb_stat(txn->t_txn, t, &st))) != HV_OK) {
		goto out;
	}
	*out = st.ms_entries;
out:
	return (rv);
}

hv_status
store_clear(store_txn *txn, store_table t)
{
	if (txn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (!txn->t_write) {
		return (HV_FAILED_PRECONDITION);
	}
	return (txn_note(txn, mdb_drop(txn->t_txn, t, 0)));
}

/* HV_OK when dir has no entries. */
static hv_status
dir_empty(const char *dir)
{
	hv_status      rv = HV_OK;
	DIR           *d;
	struct dirent *e;

	if ((d = opendir(dir)) == NULL) {
		return (hv_status_from_errno(errno));
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			rv = HV_FAILED_PRECONDITION;
			break;
		}
	}
	closedir(d);
	return (rv);
}

/*
 * The copy is mdb_env_copy2(env, dir, MDB_CP_COMPACT) done by hand: LMDB's own creates
 * data.mdb with mode 0666 (less the umask) and does not fsync it. This one creates it 0600 with
 * O_EXCL, copies through mdb_env_copyfd2, and syncs the file and the directory. A failed copy
 * leaves no file behind.
 */
hv_status
store_backup(store *s, const char *dir)
{
	hv_status   rv      = HV_INVALID_ARGUMENT;
	bool        created = false;
	struct stat st;
	char        path[PATH_MAX];
	int         fd = -1;
	int         rc = 0;
	int         n;

	if (s == NULL || dir == NULL || dir[0] == '\0') {
		goto out;
	}
	n = snprintf(path, sizeof(path), "%s/%s", dir, STORE_DATA_FILE);
	if (n < 0 || (size_t) n >= sizeof(path)) {
		goto out;
	}
	if ((rv = dir_prepare(dir, &st)) != HV_OK || (rv = dir_empty(dir)) != HV_OK) {
		goto out;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		rv = errno == EEXIST ? HV_FAILED_PRECONDITION : hv_status_from_errno(errno);
		goto out;
	}
	created = true;
	for (int tries = 0;; tries++) {
		/* The copy runs a read transaction of its own: it must be inside the gate. A long
		 * copy therefore delays map growth in this process until it ends. */
		gate_enter(&s->s_gate);
		rc = s->s_unmapped ? MDB_PANIC : mdb_env_copyfd2(s->s_env, fd, MDB_CP_COMPACT);
		gate_leave(&s->s_gate);
		if (rc != MDB_MAP_RESIZED || tries >= STORE_BEGIN_TRIES) {
			break;
		}
		if ((rv = map_adopt(s)) != HV_OK) {
			goto out;
		}
		if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
			rv = hv_status_from_errno(errno);
			goto out;
		}
	}
	if (rc != 0) {
		log_error("store: backup failed: %s", mdb_strerror(rc));
		rv = lmdb_status(rc);
		goto out;
	}
	if (fsync(fd) != 0) {
		rv = hv_status_from_errno(errno);
		goto out;
	}
	rc = close(fd);
	fd = -1;
	if (rc != 0) {
		rv = hv_status_from_errno(errno);
		goto out;
	}
	if ((rv = hv_file_sync_dir(dir)) != HV_OK) {
		goto out;
	}
	rv = HV_OK;
out:
	if (fd >= 0) {
		close(fd);
	}
	if (rv != HV_OK && created) {
		unlink(path);
	}
	return (rv);
}

hv_status
store_stats(store *s, size_t *map_size, size_t *used)
{
	hv_status   rv = HV_INVALID_ARGUMENT;
	MDB_envinfo info;
	MDB_stat    st;
	int         rc;

	if (s == NULL || map_size == NULL || used == NULL) {
		goto out;
	}
	/* Inside the gate, so that a resize does not change the map under mdb_env_info. */
	gate_enter(&s->s_gate);
	if (s->s_unmapped) {
		rc = MDB_PANIC;
	} else if ((rc = mdb_env_info(s->s_env, &info)) == 0) {
		rc = mdb_env_stat(s->s_env, &st);
	}
	gate_leave(&s->s_gate);
	if (rc != 0) {
		rv = lmdb_status(rc);
		goto out;
	}
	*map_size = info.me_mapsize;
	*used     = (info.me_last_pgno + 1) * (size_t) st.ms_psize;
	rv        = HV_OK;
out:
	return (rv);
}
