/*
 * store_internal.h - what the files of the store share: the handle, transaction and cursor
 * structures, the bounds, and the functions of the LMDB layer (store_lmdb.c: error
 * conversion, the gate, map size, beginning transactions) and of the write path
 * (store_write.c) that opening, tables and reads (store.c) and the data functions
 * (store_data.c) build on. Private to libhaven. The locking and the group commit are
 * described in store_write.c.
 */
#ifndef HAVEN_STORE_INTERNAL_H
#define HAVEN_STORE_INTERNAL_H

#include "haven/store.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#define STORE_KEY_MAX     511 /* LMDB's compiled-in maximum key size */
#define STORE_NAME_MAX    63
#define STORE_MAP_DEFAULT ((size_t) 64 << 20)
#define STORE_MAX_DEFAULT ((size_t) 64 << 30)
#define STORE_TABLES_DEF  64
#define STORE_READERS     256 /* reader slots: concurrent read transactions of all processes */
#define STORE_BEGIN_TRIES 16  /* bound on MDB_MAP_RESIZED / stale-reader retries */
#define STORE_FATAL_EXIT  75  /* EX_TEMPFAIL: a supervisor restarts the process */
#define STORE_DATA_FILE   "data.mdb"
#define STORE_META_TABLE  "meta"
#define STORE_SCHEMA_KEY  "schema_version"
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
	bool              rq_alone; /* runs in a batch of its own (store_table_open) */
	pthread_cond_t    rq_cond;  /* signalled when done, or when it is the oldest queued */
	struct store_req *rq_next;
} store_req;

typedef struct store_table_entry {
	char    te_name[STORE_NAME_MAX + 1];
	MDB_dbi te_dbi;
} store_table_entry;

struct store {
	MDB_env *s_env;
	size_t   s_max_map;
	uint32_t s_schema; /* as recorded in the store */
	void (*s_fatal)(void *, hv_status, const char *);
	void              *s_fatal_arg;
	pthread_mutex_t    s_qlock; /* the fields down to s_commits */
	store_req         *s_qhead; /* queued writes, oldest first, not yet in a batch */
	store_req         *s_qtail;
	unsigned           s_queued;   /* length of that queue */
	bool               s_leading;  /* a leader is running a batch */
	pthread_t          s_leader;   /* that leader's thread, while s_leading */
	bool               s_failed;   /* a commit failed, writes are refused */
	uint64_t           s_commits;  /* write transactions committed */
	bool               s_unmapped; /* inside the gate: a resize failed and left no map */
	store_gate         s_gate;
	pthread_mutex_t    s_tlock;
	store_table_entry *s_tables;
	unsigned           s_ntables;
	unsigned           s_maxtables;
	/* Registration in the list of this process's open stores. */
	dev_t  s_dev;
	ino_t  s_ino;
	pid_t  s_pid;
	store *s_next;
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

/* ---- store_lmdb.c ------------------------------------------------------------------- */

/* The one conversion of LMDB's error numbers (and the errno values it passes through). */
hv_status store_lmdb_status(int rc);

/* Converts rc and, in a write transaction, remembers what it means for the commit. */
hv_status store_txn_note(store_txn *txn, int rc);

/* *ok is false when the lock or condition variable could not be made. */
void store_gate_init(store_gate *g, bool *ok);

void store_gate_fini(store_gate *g);

/* Enters shared. Waits while a resize is inside; defers briefly to one that is waiting. */
void store_gate_enter(store_gate *g);

void store_gate_leave(store_gate *g);

/* Enters exclusively: waits until no transaction of this process is inside. */
void store_gate_enter_excl(store_gate *g);

void store_gate_leave_excl(store_gate *g);

/* Adopts the map size another process grew the environment to (after MDB_MAP_RESIZED). */
hv_status store_map_adopt(store *s);

/* Doubles the map, up to s_max_map. HV_RESOURCE_EXHAUSTED when it is already there. */
hv_status store_map_grow(store *s);

/*
 * Begins an LMDB transaction inside the gate. On HV_OK the caller is inside the gate until it
 * ends the transaction and calls store_gate_leave. Handles another process having grown the map
 * (MDB_MAP_RESIZED) and a reader table filled by dead processes.
 */
hv_status store_txn_begin(store *s, unsigned flags, MDB_txn **out);

/* Closes the LMDB cursors still open on txn; their handles stay allocated until
 * store_cursor_close, which then only frees them. */
void store_cursors_detach(store_txn *txn);

/* ---- store_write.c ------------------------------------------------------------------ */

/*
 * Runs fn alone in write transactions until one commits, the map cannot grow, or fn fails.
 * Called by the leader, or by store_open before anyone else has the handle. *commit_rc is set
 * to LMDB's error when a commit failed (other than by a full map), which the caller treats as
 * fatal. HV_OK means committed.
 */
hv_status store_write_one(store *s, store_write_fn fn, void *arg, int *commit_rc);

/* Queues fn and waits until a batch that carries it ended, leading batches while no one else
 * does. alone: fn runs in a write transaction of its own. */
hv_status store_write_enqueue(store *s, store_write_fn fn, void *arg, bool alone);

/* store_options.fatal when none is given: logs and exits with STORE_FATAL_EXIT. */
void store_fatal_default(void *arg, hv_status code, const char *what);

#endif
