/*
 * store.h - the node's LMDB store.
 *
 * One LMDB environment per node lives in a data directory. Several processes of the node may
 * open it at once (the three services share it); each process opens it once, through one
 * store handle, and never twice. The environment is opened with MDB_NOTLS so that read
 * transactions are not tied to the thread slot that created them.
 *
 * Tables are LMDB named databases. Values are usually packed protobuf-c messages.
 *
 * Writes go through store_write(), which runs a caller's function inside a write transaction
 * and commits it durably (fsync). A write is acknowledged (store_write returns HV_OK) only
 * after the commit that carries it returned success. Writes of concurrent threads share
 * commits (group commit): while one commit is in flight, the writes that arrive queue up, and
 * the next commit carries all of them (at most 64), each function in a nested transaction of
 * its own, so that one fsync acknowledges them all. A lone writer's commit starts at once.
 * When the map is full, the transaction is aborted, the map grown, and the function run again
 * from the start: a write function must therefore have no effect outside its transaction until
 * store_write returns. When a commit or sync fails, the store reports it through the fatal hook
 * and refuses all further writes (HV_UNAVAILABLE): the process is expected to stop and restart
 * on the intact store, never to retry the commit and acknowledge it later.
 *
 * Lifetimes: bytes returned by store_get() and the cursor functions point into the map and are
 * valid only until the end of the transaction (or the next write in it); copy them out before
 * store_write's function returns or store_read_end() is called. store_get_msg() copies.
 *
 * Every function returns an hv_status; LMDB's own error numbers never leave this module.
 */
#ifndef HAVEN_STORE_H
#define HAVEN_STORE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/status.h"

typedef struct store        store;
typedef struct store_txn    store_txn;
typedef struct store_cursor store_cursor;
typedef unsigned int        store_table; /* an LMDB dbi, valid for the store's lifetime */

typedef struct store_options {
	/* Initial map size in bytes; 0 means 64 MiB. The map grows by doubling when full. */
	size_t map_size;
	/* Upper bound for growth; 0 means 64 GiB. Past it writes get HV_RESOURCE_EXHAUSTED. */
	size_t max_map_size;
	/* Maximum number of named tables; 0 means 64. */
	unsigned max_tables;
	/* The schema version this program writes. At open, a store without a version is stamped
	 * with it; a store of a newer version is refused with HV_FAILED_PRECONDITION. */
	uint32_t schema_version;
	/* Skip fsync on commit (MDB_NOSYNC). Only for tests and benchmarks that say so. */
	bool no_sync;
	/* Called once when a commit or sync fails, on the thread that ran the failed commit
	 * (one of the store_write callers of that batch), before any of them returns. NULL
	 * means: log and exit(75). When the hook returns, the store stays open for reads and
	 * refuses writes. Also called once, on the thread that tried, when a growth or adoption
	 * of the map failed and LMDB was left without a map: then the store refuses reads too
	 * (HV_UNAVAILABLE). */
	void (*fatal)(void *arg, hv_status code, const char *what);
	void *fatal_arg;
} store_options;

/* Opens (creating if needed, mode 0700 for the directory and 0600 for its files) the store in
 * dir. Clears reader slots left by dead processes. On success *out owns the environment; close
 * it with store_close(). opts may be NULL for the defaults. A directory this process already
 * has open is refused (HV_FAILED_PRECONDITION), as is map_size > max_map_size
 * (HV_INVALID_ARGUMENT). */
hv_status store_open(store **out, const char *dir, const store_options *opts);

/* Closes the store. All transactions must have ended. NULL is allowed. */
void store_close(store *s);

/* Opens (creating if needed) the named table. Names are at most 63 bytes of [a-z0-9_.].
 * Call at start-up, never from inside a write function: a transaction that began before a
 * table was first opened cannot use it. The handle stays valid until store_close().
 * Thread-safe. */
hv_status store_table_open(store *s, const char *name, store_table *out);

/* The schema version recorded in the store. */
uint32_t store_schema_version(const store *s);

/* Runs fn(txn, arg) in a write transaction and commits it durably; returns HV_OK only after
 * that commit returned success. fn's changes commit all together or not at all. If fn returns
 * anything but HV_OK, its changes (and only its) are rolled back and that status returned.
 * Blocks until the commit that carries fn ended, which may wait for the commit in flight and
 * for a write transaction of another process.
 *
 * Group commit: calls of several threads are batched into one write transaction, in the order
 * they arrived, each fn in a nested transaction of its own. So:
 *  - fn may run on another thread than the caller's (the one that leads the batch), while the
 *    caller waits. It must not rely on the caller's thread-local state, and should be short:
 *    the batch's other writes wait for it.
 *  - fn sees the changes of the functions before it in its batch that succeeded, as if the
 *    batch's writes had run one after the other in that order (they did), and the functions
 *    after it see its changes. They all become visible to readers at once.
 *  - fn may run more than once: when the map fills during the batch, the whole batch is
 *    rolled back, the map grown, and every function of it run again from the start; and when
 *    a batch cannot commit as one (the map at its maximum, LMDB out of room for the batch's
 *    changes), each function runs again alone. Only the last run's changes and status count.
 *  - When the batch's commit fails, every caller of that batch gets HV_UNAVAILABLE (the hook
 *    runs once, before any of them returns), whatever its fn returned.
 *
 * Once LMDB failed a store call inside fn with anything but HV_NOT_FOUND, HV_ALREADY_EXISTS
 * or HV_INVALID_ARGUMENT, fn's changes cannot commit: they are rolled back and that status
 * returned even if fn returns HV_OK. A full map is the exception: the call returns
 * HV_RESOURCE_EXHAUSTED, and whatever fn then returns, the map is grown and fn run again.
 *
 * Not from inside a write function (HV_FAILED_PRECONDITION), and not while the calling thread
 * holds a read transaction: growing the map waits until every transaction of the process has
 * ended, and the calling thread may lead, or wait for, the batch that has to grow it. */
typedef hv_status (*store_write_fn)(store_txn *txn, void *arg);
hv_status store_write(store *s, store_write_fn fn, void *arg);

/* The number of write transactions this handle committed since store_open (those of
 * store_open and store_table_open included). With concurrent writers one commit carries many
 * store_write calls, so for metrics and tests: acknowledged writes / commits is the mean batch.
 * 0 for NULL. */
uint64_t store_commit_count(store *s);

/* The number of store_write calls of this handle queued now, waiting for a batch to take them
 * (not counting the batch being committed). For metrics and tests. 0 for NULL. */
unsigned store_write_queued(store *s);

/* Read transactions: a consistent snapshot of committed data that includes every write
 * acknowledged before store_read_begin was called. End every one with store_read_end(), on any
 * thread. LMDB does not promise more: a read transaction delayed inside its begin may get a
 * snapshot newer than the current one, so a later read transaction may see an older one;
 * do not compare snapshots of different read transactions. */
hv_status store_read_begin(store *s, store_txn **out);
void      store_read_end(store_txn *txn);

/* Raw values. key: 1..511 bytes. store_get returns HV_NOT_FOUND when absent; *val points into
 * the map (see lifetimes above); val and vlen may be NULL to test presence. store_put
 * overwrites; a value may be empty. store_del returns HV_NOT_FOUND when absent. Writing in a
 * read transaction is HV_FAILED_PRECONDITION. */
hv_status store_get(store_txn *txn, store_table t, const void *key, size_t klen, const void **val,
    size_t *vlen);
hv_status store_put(store_txn *txn, store_table t, const void *key, size_t klen, const void *val,
    size_t vlen);
/* Like store_put, but HV_ALREADY_EXISTS when the key is present (nothing written). */
hv_status store_put_new(store_txn *txn, store_table t, const void *key, size_t klen,
    const void *val, size_t vlen);
/* For a key after every key of t (a log's next entry): HV_ALREADY_EXISTS, nothing written, when
 * t holds this key or one after it. LMDB appends at the last page without a search
 * (MDB_APPEND) and splits a full one at the new key: 200-byte rows in key order went in a
 * third faster than by store_put and took 5 % fewer pages (store_test test_append). */
hv_status store_append(store_txn *txn, store_table t, const void *key, size_t klen, const void *val,
    size_t vlen);
hv_status store_del(store_txn *txn, store_table t, const void *key, size_t klen);

/* Packs msg and stores it under key. */
hv_status store_put_msg(store_txn *txn, store_table t, const void *key, size_t klen,
    const ProtobufCMessage *msg);
/* Reads and unpacks the message under key with desc. *out is owned by the caller: free it with
 * protobuf_c_message_free_unpacked(*out, alloc). alloc may be NULL (malloc). A value that does
 * not unpack is HV_DATA_LOSS. */
hv_status store_get_msg(store_txn *txn, store_table t, const void *key, size_t klen,
    const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *alloc, ProtobufCMessage **out);

/* Ordered iteration (keys compare as unsigned bytes). store_cursor_seek positions at the first
 * key >= key (klen 0: the first key); store_cursor_next advances. Both return HV_NOT_FOUND at
 * the end. key/val point into the map (see lifetimes); any of k, kl, v, vl may be NULL. Close
 * every cursor before its transaction ends (one left open is closed underneath when it ends,
 * answers HV_FAILED_PRECONDITION, and must still be freed with store_cursor_close). After
 * store_cursor_del, store_cursor_next returns the entry that followed the deleted one. */
hv_status store_cursor_open(store_txn *txn, store_table t, store_cursor **out);
hv_status store_cursor_seek(store_cursor *c, const void *key, size_t klen, const void **k,
    size_t *kl, const void **v, size_t *vl);
hv_status store_cursor_next(store_cursor *c, const void **k, size_t *kl, const void **v,
    size_t *vl);
/* Deletes the entry under the cursor (write transactions only). */
hv_status store_cursor_del(store_cursor *c);
void      store_cursor_close(store_cursor *c);

/* Number of entries in a table. */
hv_status store_count(store_txn *txn, store_table t, uint64_t *out);

/* Deletes every entry of a table; the table stays (write transactions only: else
 * HV_FAILED_PRECONDITION). */
hv_status store_clear(store_txn *txn, store_table t);

/* Consistent, compacted copy of the whole store into an empty directory dir, while other
 * processes keep reading and writing (as mdb_env_copy2 with MDB_CP_COMPACT). dir is created
 * (0700) if missing; one that is not empty is HV_FAILED_PRECONDITION. The copy is
 * dir/data.mdb, mode 0600, synced to disk, and opens with store_open. While it runs, map growth
 * in this process waits. */
hv_status store_backup(store *s, const char *dir);

/* Current map size and bytes in use, for metrics. */
hv_status store_stats(store *s, size_t *map_size, size_t *used);

#endif
