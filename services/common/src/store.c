/*
 * store.c - the node's LMDB store.
 *
 * One LMDB environment lives in the node's data directory and is shared by the node's
 * processes, each through one store handle. This file opens it (creating the directory and
 * stamping or checking the schema version), hands out named tables, begins and ends read
 * transactions, and makes backups and statistics. Write transactions and their group commit
 * are in store_write.c, the data functions (get, put, messages, cursors) in store_data.c, and
 * the LMDB layer (the one conversion of LMDB's errors, the gate, map growth) in store_lmdb.c.
 */
#include "store_internal.h"

#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/file.h"

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

/*
 * The stores open in this process. LMDB forbids opening one environment twice in a process
 * (closing the second handle would drop the first one's file locks), so store_open refuses a
 * directory already open here. Entries carry their pid: a child after fork() may open the
 * store its parent has open.
 */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static store          *open_stores;

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

	return (store_txn_note(txn, mdb_dbi_open(txn->t_txn, a->ta_name, MDB_CREATE, &a->ta_dbi)));
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
	if ((rv = store_write_enqueue(s, table_open_fn, &a, true)) != HV_OK) {
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
		return (store_txn_note(txn, rc));
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
	store_gate_fini(&s->s_gate);
	pthread_mutex_destroy(&s->s_tlock);
	pthread_mutex_destroy(&s->s_qlock);
	free(s);
}

/* A handle with its locks and tables, not yet registered or opened. NULL when out of memory
 * or a lock could not be made (nothing to undo then); afterwards store_free undoes it. */
static store *
store_alloc(const store_options *opts, size_t map, const struct stat *st)
{
	store *s;
	bool   ok;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return (NULL);
	}
	s->s_max_map   = opts->max_map_size != 0 ? opts->max_map_size : STORE_MAX_DEFAULT;
	s->s_max_map   = s->s_max_map < map ? map : s->s_max_map;
	s->s_fatal     = opts->fatal != NULL ? opts->fatal : store_fatal_default;
	s->s_fatal_arg = opts->fatal_arg;
	s->s_maxtables = (opts->max_tables != 0 ? opts->max_tables : STORE_TABLES_DEF) + 1;
	s->s_dev       = st->st_dev;
	s->s_ino       = st->st_ino;
	s->s_pid       = getpid();
	if ((s->s_tables = calloc(s->s_maxtables, sizeof(*s->s_tables))) == NULL) {
		goto fail;
	}
	if (pthread_mutex_init(&s->s_qlock, NULL) != 0) {
		goto fail;
	}
	if (pthread_mutex_init(&s->s_tlock, NULL) != 0) {
		pthread_mutex_destroy(&s->s_qlock);
		goto fail;
	}
	store_gate_init(&s->s_gate, &ok);
	if (!ok) {
		pthread_mutex_destroy(&s->s_tlock);
		pthread_mutex_destroy(&s->s_qlock);
		goto fail;
	}
	return (s);
fail:
	free(s->s_tables);
	free(s);
	return (NULL);
}

/* Adds s to the stores open in this process; FAILED_PRECONDITION when its directory is open
 * here already. Registered before LMDB opens the lock file, so that a concurrent second open
 * in this process is refused rather than racing this one. */
static hv_status
store_register(store *s)
{
	pthread_mutex_lock(&open_lock);
	for (store *o = open_stores; o != NULL; o = o->s_next) {
		if (o->s_pid == s->s_pid && o->s_dev == s->s_dev && o->s_ino == s->s_ino) {
			pthread_mutex_unlock(&open_lock);
			log_error("store: the data directory is already open in this process");
			return (HV_FAILED_PRECONDITION);
		}
	}
	s->s_next   = open_stores;
	open_stores = s;
	pthread_mutex_unlock(&open_lock);
	return (HV_OK);
}

/* Removes s from the stores open in this process; nothing when it is not there. */
static void
store_unregister(store *s)
{
	pthread_mutex_lock(&open_lock);
	for (store **p = &open_stores; *p != NULL; p = &(*p)->s_next) {
		if (*p == s) {
			*p = s->s_next;
			break;
		}
	}
	pthread_mutex_unlock(&open_lock);
}

/* LMDB maps the size asked for or, when the data is larger, exactly the data: every start of
 * a store that had grown would then grow the map again at its first write that needs a page,
 * with every transaction of the process waited for (store_lmdb.c). The size the map last grew
 * to is kept in the store's meta page; right after the open (no transaction yet) take it when
 * it is larger, up to the maximum. */
static hv_status
map_adopt_stored(store *s)
{
	MDB_envinfo asked, stored;
	size_t      want;
	int         rc;

	if ((rc = mdb_env_info(s->s_env, &asked)) != 0 ||
	    (rc = mdb_env_set_mapsize(s->s_env, 0)) != 0 ||
	    (rc = mdb_env_info(s->s_env, &stored)) != 0) {
		return (store_lmdb_status(rc));
	}
	/* The stored size, at most the maximum, at least the size asked (which LMDB made at
	 * least the data's). */
	want = stored.me_mapsize < s->s_max_map ? stored.me_mapsize : s->s_max_map;
	want = want > asked.me_mapsize ? want : asked.me_mapsize;
	if (want != stored.me_mapsize && (rc = mdb_env_set_mapsize(s->s_env, want)) != 0) {
		return (store_lmdb_status(rc));
	}
	return (HV_OK);
}

/* Creates the LMDB environment and opens it in dir with a map of map bytes (or the data's
 * size, when larger). */
static hv_status
env_create_open(store *s, const char *dir, const store_options *opts, size_t map)
{
	int rc;

	if ((rc = mdb_env_create(&s->s_env)) != 0) {
		s->s_env = NULL;
		return (store_lmdb_status(rc));
	}
	if ((rc = mdb_env_set_maxdbs(s->s_env, s->s_maxtables)) != 0 ||
	    (rc = mdb_env_set_maxreaders(s->s_env, STORE_READERS)) != 0 ||
	    (rc = mdb_env_set_mapsize(s->s_env, map)) != 0) {
		return (store_lmdb_status(rc));
	}
	/* Durable by default: without MDB_NOSYNC, a commit returns after fdatasync. */
	rc = mdb_env_open(s->s_env, dir, MDB_NOTLS | (opts->no_sync ? MDB_NOSYNC : 0), 0600);
	if (rc != 0) {
		log_error("store: cannot open the environment: %s", mdb_strerror(rc));
		return (store_lmdb_status(rc));
	}
	return (HV_OK);
}

/* Creates and opens the LMDB environment in dir, with the map the store last grew to
 * (map_adopt_stored), and frees the reader slots of dead processes. */
static hv_status
env_open(store *s, const char *dir, const store_options *opts, size_t map)
{
	hv_status rv;
	int       dead = 0;
	int       rc;

	if ((rv = env_create_open(s, dir, opts, map)) != HV_OK) {
		return (rv);
	}
	if (map_adopt_stored(s) != HV_OK) {
		/* The stored size could not be mapped (a limited address space) and LMDB has no
		 * map left (store_lmdb.c, map_lost): open again at the size asked. */
		log_warn("store: the map size the store grew to cannot be mapped; opening with %zu "
		         "bytes",
		    map);
		mdb_env_close(s->s_env);
		s->s_env = NULL;
		if ((rv = env_create_open(s, dir, opts, map)) != HV_OK) {
			return (rv);
		}
	}
	/* Reader slots of processes that died inside a read transaction pin old pages forever;
	 * free them. LMDB clears the whole table itself only when no process has it open. */
	if ((rc = mdb_reader_check(s->s_env, &dead)) != 0) {
		return (store_lmdb_status(rc));
	}
	if (dead > 0) {
		log_info("store: cleared %d stale reader slots", dead);
	}
	return (HV_OK);
}

hv_status
store_open(store **out, const char *dir, const store_options *opts)
{
	static const store_options defaults;
	hv_status                  rv = HV_INVALID_ARGUMENT;
	store                     *s  = NULL;
	struct stat                st;
	schema_args                sa;
	size_t                     map;
	int                        commit_rc;

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
	if ((s = store_alloc(opts, map, &st)) == NULL) {
		rv = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	/* From here on store_free() undoes everything. */
	if ((rv = store_register(s)) != HV_OK) {
		goto out;
	}
	if ((rv = env_open(s, dir, opts, map)) != HV_OK) {
		goto out;
	}

	sa.sa_ours  = opts->schema_version;
	sa.sa_found = 0;
	sa.sa_meta  = 0;
	/* No one else has the handle yet: no queue, no leader. A failed commit here fails the
	 * open rather than calling the hook. */
	if ((rv = store_write_one(s, schema_fn, &sa, &commit_rc)) != HV_OK) {
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
		store_unregister(s);
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
	store_unregister(s);
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
	if ((rv = store_txn_begin(s, MDB_RDONLY, &txn->t_txn)) != HV_OK) {
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
	store_cursors_detach(txn);
	mdb_txn_abort(txn->t_txn);
	store_gate_leave(&s->s_gate);
	free(txn);
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
		store_gate_enter(&s->s_gate);
		rc = s->s_unmapped ? MDB_PANIC : mdb_env_copyfd2(s->s_env, fd, MDB_CP_COMPACT);
		store_gate_leave(&s->s_gate);
		if (rc != MDB_MAP_RESIZED || tries >= STORE_BEGIN_TRIES) {
			break;
		}
		if ((rv = store_map_adopt(s)) != HV_OK) {
			goto out;
		}
		if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
			rv = hv_status_from_errno(errno);
			goto out;
		}
	}
	if (rc != 0) {
		log_error("store: backup failed: %s", mdb_strerror(rc));
		rv = store_lmdb_status(rc);
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
	store_gate_enter(&s->s_gate);
	if (s->s_unmapped) {
		rc = MDB_PANIC;
	} else if ((rc = mdb_env_info(s->s_env, &info)) == 0) {
		rc = mdb_env_stat(s->s_env, &st);
	}
	store_gate_leave(&s->s_gate);
	if (rc != 0) {
		rv = store_lmdb_status(rc);
		goto out;
	}
	*map_size = info.me_mapsize;
	*used     = (info.me_last_pgno + 1) * (size_t) st.ms_psize;
	rv        = HV_OK;
out:
	return (rv);
}
