/*
 * store_lmdb.c - the store's LMDB layer: the one conversion of LMDB's errors to hv_status,
 * the gate every transaction of the process passes (shared; exclusive to change the map
 * size), growing and adopting the map size, and beginning a transaction through all of that
 * (see store_internal.h and the locking in store_write.c).
 */
#include "store_internal.h"

#include "haven/clock.h"
#include "haven/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hv_status
store_lmdb_status(int rc)
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

hv_status
store_txn_note(store_txn *txn, int rc)
{
	if (txn->t_write && lmdb_spoils(rc)) {
		if (rc == MDB_MAP_FULL) {
			txn->t_map_full = true;
		} else if (txn->t_err == HV_OK) {
			txn->t_err = store_lmdb_status(rc);
		}
	}
	return (store_lmdb_status(rc));
}

void
store_gate_init(store_gate *g, bool *ok)
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

void
store_gate_fini(store_gate *g)
{
	pthread_cond_destroy(&g->g_cond);
	pthread_mutex_destroy(&g->g_lock);
}

void
store_gate_enter(store_gate *g)
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

void
store_gate_leave(store_gate *g)
{
	pthread_mutex_lock(&g->g_lock);
	if (--g->g_shared == 0) {
		pthread_cond_broadcast(&g->g_cond);
	}
	pthread_mutex_unlock(&g->g_lock);
}

void
store_gate_enter_excl(store_gate *g)
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

void
store_gate_leave_excl(store_gate *g)
{
	pthread_mutex_lock(&g->g_lock);
	g->g_excl = false;
	pthread_cond_broadcast(&g->g_cond);
	pthread_mutex_unlock(&g->g_lock);
}

/* After a failed mdb_env_set_mapsize. LMDB 0.9 unmaps the old map before it maps the new size
 * and, when that mmap fails, keeps no map at all; a later mdb_env_set_mapsize then records a
 * size and maps nothing (it remaps only an environment that has a map), and the next
 * transaction or mdb_env_info reads the meta pages through the old address and faults. So the
 * map is lost for this process: every transaction is refused from now on (HV_UNAVAILABLE) and
 * the fatal hook is told, whose default exits with 75 so that the process restarts and maps
 * the store again. Only EINVAL (a transaction of this process active: never inside the gate)
 * leaves the map as it was. Called inside the exclusive gate, at most once. */
static void
map_lost(store *s, int rc)
{
	if (rc == EINVAL) {
		return;
	}
	s->s_unmapped = true;
	log_error("store: the map was lost when it was resized: %s", mdb_strerror(rc));
	s->s_fatal(s->s_fatal_arg, store_lmdb_status(rc), "store: the map was lost when resized");
}

hv_status
store_map_adopt(store *s)
{
	hv_status   rv = HV_INTERNAL;
	MDB_envinfo info;
	MDB_envinfo after;
	int         rc;

	store_gate_enter_excl(&s->s_gate);
	if (s->s_unmapped) {
		rv = HV_UNAVAILABLE;
		goto out;
	}
	if ((rc = mdb_env_info(s->s_env, &info)) != 0) {
		rv = store_lmdb_status(rc);
		goto out;
	}
	if ((rc = mdb_env_set_mapsize(s->s_env, 0)) != 0) {
		map_lost(s, rc);
		rv = rc == EINVAL ? store_lmdb_status(rc) : HV_UNAVAILABLE;
		goto out;
	}
	if (mdb_env_info(s->s_env, &after) == 0) {
		log_debug("store: map of %zu bytes grown to %zu by another process",
		    info.me_mapsize, after.me_mapsize);
	}
	rv = HV_OK;
out:
	store_gate_leave_excl(&s->s_gate);
	return (rv);
}

hv_status
store_map_grow(store *s)
{
	hv_status   rv = HV_INTERNAL;
	MDB_envinfo info;
	size_t      next;
	int         rc;

	store_gate_enter_excl(&s->s_gate);
	if (s->s_unmapped) {
		rv = HV_UNAVAILABLE;
		goto out;
	}
	if ((rc = mdb_env_info(s->s_env, &info)) != 0) {
		rv = store_lmdb_status(rc);
		goto out;
	}
	if (info.me_mapsize >= s->s_max_map) {
		log_warn("store: map full at its maximum size of %zu bytes", s->s_max_map);
		rv = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	next = info.me_mapsize > s->s_max_map / 2 ? s->s_max_map : info.me_mapsize * 2;
	if ((rc = mdb_env_set_mapsize(s->s_env, next)) != 0) {
		map_lost(s, rc);
		rv = rc == EINVAL ? store_lmdb_status(rc) : HV_UNAVAILABLE;
		goto out;
	}
	log_info("store: map grown from %zu to %zu bytes", info.me_mapsize, next);
	rv = HV_OK;
out:
	store_gate_leave_excl(&s->s_gate);
	return (rv);
}

hv_status
store_txn_begin(store *s, unsigned flags, MDB_txn **out)
{
	hv_status rv = HV_INTERNAL;
	int       rc;
	int       dead;

	for (int tries = 0;; tries++) {
		store_gate_enter(&s->s_gate);
		if (s->s_unmapped) {
			store_gate_leave(&s->s_gate);
			rv = HV_UNAVAILABLE;
			goto out;
		}
		rc = mdb_txn_begin(s->s_env, NULL, flags, out);
		if (rc == 0) {
			rv = HV_OK;
			goto out;
		}
		store_gate_leave(&s->s_gate);
		if (tries >= STORE_BEGIN_TRIES) {
			rv = store_lmdb_status(rc);
			goto out;
		}
		if (rc == MDB_MAP_RESIZED) {
			if ((rv = store_map_adopt(s)) != HV_OK) {
				goto out;
			}
			continue;
		}
		dead = 0;
		if (rc == MDB_READERS_FULL && mdb_reader_check(s->s_env, &dead) == 0 && dead > 0) {
			continue;
		}
		rv = store_lmdb_status(rc);
		goto out;
	}
out:
	return (rv);
}

void
store_cursors_detach(store_txn *txn)
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
