/*
 * audit.c - the hash-chained audit log (see audit.h for the tables and the encoding): open,
 * close, appending inside a caller's transaction or one of its own, the audit key and the
 * subject index. The queue is audit_writer.c, verifying and listing audit_verify.c,
 * checkpoints audit_checkpoint.c, the encoding and the head audit_log.c (audit_internal.h).
 *
 * Appending reads the head record inside the caller's write transaction, so the chain is
 * extended by exactly one writer at a time whatever the number of processes: LMDB serialises
 * write transactions, and group commit runs each write function in its own nested transaction
 * after the ones before it in the batch. Nothing about the chain is cached in memory.
 *
 * Verifying recomputes every hash in key order and compares three things per entry: the key
 * with the seq inside the entry (reordering), the seq with the one expected next (removal),
 * and the hashes (the entry's own, then the link to the previous entry). The first mismatch is
 * reported; what follows it cannot be trusted either way. Then the checkpoints (each must be
 * signed by the audit key and name an entry the log still holds, with the hash it recorded),
 * then the subject index both ways.
 *
 * Checkpoints pin committed heads only: a checkpoint is written after the commit that carries
 * its head (by the writer, audit_record, audit_verify, audit_open and audit_writer_stop, each
 * reading the head in a read transaction of its own), never from inside a write function,
 * whose transaction may still roll back.
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

static hv_status key_load(audit *a, const char *data_dir, bool *created);

hv_status
audit_open(audit **out, store *s, const char *data_dir)
{
	audit    *a;
	bool      created = false;
	hv_status st      = HV_RESOURCE_EXHAUSTED;

	*out = NULL;
	if (data_dir == NULL || data_dir[0] == '\0') {
		return (HV_INVALID_ARGUMENT);
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		goto out;
	}
	a->a_store     = s;
	a->a_linger_ms = AUDIT_LINGER_MIN_MS;
	pthread_mutex_init(&a->a_cpmtx, NULL);
	pthread_mutex_init(&a->a_qmtx, NULL);
	pthread_cond_init(&a->a_qcond, NULL);
	(void) hv_clock_cond_init(&a->a_wcond);
	if ((st = store_table_open(s, "audit.log", &a->a_log)) != HV_OK ||
	    (st = store_table_open(s, "audit.head", &a->a_head)) != HV_OK ||
	    (st = store_table_open(s, "audit.by_window", &a->a_subject)) != HV_OK ||
	    (st = audit__index_prepare(a)) != HV_OK ||
	    (st = key_load(a, data_dir, &created)) != HV_OK) {
		goto out;
	}
	st = HV_INVALID_ARGUMENT;
	if ((size_t) snprintf(a->a_cpath, sizeof(a->a_cpath), "%s/" CHECKPOINT_FILE, data_dir) >=
	    sizeof(a->a_cpath)) {
		goto out;
	}
	if ((st = audit__cp_open(a, created)) != HV_OK) {
		goto out;
	}
	*out = a;
	a    = NULL;
	st   = HV_OK;
out:
	if (a != NULL) {
		audit_close(a);
	}
	return (st);
}

void
audit_close(audit *a)
{
	if (a == NULL) {
		return;
	}
	audit_writer_stop(a); /* the store may be closed already: no checkpoint here */
	crypto_hmac_key_free(a->a_key);
	crypto_wipe(a->a_secret, sizeof(a->a_secret));
	pthread_cond_destroy(&a->a_qcond);
	pthread_cond_destroy(&a->a_wcond);
	pthread_mutex_destroy(&a->a_qmtx);
	pthread_mutex_destroy(&a->a_cpmtx);
	free(a->a_ring);
	free(a);
}
/* ---- building the subject index --------------------------------------------------------- */

typedef struct rebuild_job {
	audit   *rj_a;
	uint64_t rj_next;  /* the next seq to index */
	uint64_t rj_count; /* log entries read */
	bool     rj_done;
	bool     rj_needed;
} rebuild_job;

/* Whether the index has the current layout (INDEX_KEY in audit.head). */
static hv_status
index_check_fn(store_txn *txn, void *arg)
{
	rebuild_job *j = arg;
	const void  *v;
	size_t       vl;
	hv_status    st;

	st = store_get(txn, j->rj_a->a_head, INDEX_KEY, strlen(INDEX_KEY), &v, &vl);
	if (st == HV_NOT_FOUND) {
		j->rj_needed = true;
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	j->rj_needed = vl != strlen(INDEX_LAYOUT) || memcmp(v, INDEX_LAYOUT, vl) != 0;
	return (HV_OK);
}

/* Indexes up to REBUILD_BATCH entries from rj_next on; the first batch clears the index and
 * the last one records the layout. */
static hv_status
index_rebuild_fn(store_txn *txn, void *arg)
{
	rebuild_job  *j = arg;
	audit        *a = j->rj_a;
	store_cursor *c = NULL;
	uint8_t       key[8], skey[SUBJECT_KEY_MAX];
	const void   *k, *v;
	size_t        kl, vl, bodylen, done = 0;
	audit_entry   e;
	hv_status     st, rc;

	if (j->rj_next == 1 && (st = store_clear(txn, a->a_subject)) != HV_OK) {
		return (st);
	}
	if ((st = store_cursor_open(txn, a->a_log, &c)) != HV_OK) {
		return (st);
	}
	hv_put_be64(key, j->rj_next);
	for (rc = store_cursor_seek(c, key, sizeof(key), &k, &kl, &v, &vl);
	     rc == HV_OK && done < REBUILD_BATCH; rc = store_cursor_next(c, &k, &kl, &v, &vl)) {
		if (kl != 8 || audit__entry_decode(v, vl, &e, &bodylen) != 0) {
			rc = HV_DATA_LOSS; /* audit_verify names it; the index cannot be built past
			                      it */
			break;
		}
		if (e.subject[0] != '\0' &&
		    (rc = store_put(txn, a->a_subject, skey,
		         audit__index_key(skey, e.seq, e.subject, strlen(e.subject)), "", 0)) !=
		        HV_OK) {
			break;
		}
		j->rj_next = e.seq + 1;
		j->rj_count++;
		done++;
	}
	store_cursor_close(c);
	if (rc == HV_NOT_FOUND) {
		j->rj_done = true;
		return (store_put(txn, a->a_head, INDEX_KEY, strlen(INDEX_KEY), INDEX_LAYOUT,
		    strlen(INDEX_LAYOUT)));
	}
	return (rc);
}

/* Builds the subject index from the log when it is missing or of an older layout (a store
 * written before audit.by_window). Entries appended meanwhile by another process are indexed
 * by their own append, or by the batch that reaches them. */
hv_status
audit__index_prepare(audit *a)
{
	rebuild_job j = { a, 1, 0, false, false };
	store_txn  *txn;
	hv_status   st;

	/* A read: a store indexed already (every open but the first) commits nothing here. */
	if ((st = store_read_begin(a->a_store, &txn)) != HV_OK) {
		return (st);
	}
	st = index_check_fn(txn, &j);
	store_read_end(txn);
	if (st != HV_OK || !j.rj_needed) {
		return (st);
	}
	while (!j.rj_done) {
		if ((st = store_write(a->a_store, index_rebuild_fn, &j)) != HV_OK) {
			log_error("audit: cannot build the subject index: %s", hv_status_name(st));
			return (st);
		}
	}
	if (j.rj_count > 0) {
		log_info("audit: the subject index was built from the log's %llu entries",
		    (unsigned long long) j.rj_count);
	}
	return (HV_OK);
}

hv_status
audit_append(audit *a, store_txn *txn, audit_entry *e)
{
	chain_head h;
	hv_status  st;

	if ((st = audit__head_read(a, txn, &h)) != HV_OK ||
	    (st = audit__append_after(a, txn, e, &h)) != HV_OK) {
		return (st);
	}
	return (audit__head_write(a, txn, &h));
}

typedef struct record_job {
	audit       *rj_audit;
	audit_entry *rj_entry;
} record_job;

static hv_status
record_fn(store_txn *txn, void *arg)
{
	record_job *j = arg;

	return (audit_append(j->rj_audit, txn, j->rj_entry));
}

hv_status
audit_record(audit *a, audit_entry *e)
{
	record_job j = { a, e };
	hv_status  st;

	if ((st = store_write(a->a_store, record_fn, &j)) == HV_OK) {
		audit__cp_maybe(a);
	}
	return (st);
}

/* ---- the audit key -------------------------------------------------------------------- */

static hv_status
keys_dir(const char *dir)
{
	struct stat sb;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_error("audit: cannot create %s: %s", dir, strerror(errno));
		return (hv_status_from_errno(errno));
	}
	if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		log_error("audit: %s is not a directory", dir);
		return (HV_FAILED_PRECONDITION);
	}
	if ((sb.st_mode & 077) != 0) {
		log_error("audit: %s is open to other users (mode %03o): chmod 700 it", dir,
		    (unsigned) (sb.st_mode & 0777));
		return (HV_PERMISSION_DENIED);
	}
	return (HV_OK);
}

/* Makes path (0600) holding pem, whole or not at all: written under a name of this process
 * first and linked into place, so that processes opening the store at the same moment all end
 * up reading the one key that was linked first (HV_OK for the losers too). */
static hv_status
key_create(const char *path, const char *pem, size_t len)
{
	char      tmp[PATH_MAX + 32];
	hv_status st = HV_INVALID_ARGUMENT;

	if ((size_t) snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long) getpid()) >=
	    sizeof(tmp)) {
		return (st);
	}
	(void) unlink(tmp);
	if ((st = hv_file_create_private(tmp, pem, len)) != HV_OK) {
		return (st);
	}
	if (link(tmp, path) != 0 && errno != EEXIST) {
		st = hv_status_from_errno(errno);
	}
	(void) unlink(tmp);
	return (st);
}

/* Loads DATA/keys/audit-ed25519.pem, making it on the first open (*created), and derives the
 * chain key. */
static hv_status
key_load(audit *a, const char *data_dir, bool *created)
{
	char      dir[PATH_MAX], path[PATH_MAX + 32];
	uint8_t   chain[CRYPTO_HMAC_LEN];
	char     *pem = NULL;
	size_t    len = 0;
	hv_status st  = HV_INVALID_ARGUMENT;

	if ((size_t) snprintf(dir, sizeof(dir), "%s/keys", data_dir) >= sizeof(dir)) {
		goto out;
	}
	snprintf(path, sizeof(path), "%s/" KEY_FILE, dir);
	if ((st = keys_dir(dir)) != HV_OK) {
		goto out;
	}
	st = hv_file_read(path, KEY_PEM_MAX, true, &pem, &len);
	if (st == HV_NOT_FOUND) {
		/* Durable before a checkpoint is signed with it: a key lost to a power cut
		 * would leave checkpoints no key verifies. */
		if ((st = crypto_ed25519_keygen(&pem, &len)) != HV_OK ||
		    (st = key_create(path, pem, len)) != HV_OK ||
		    (st = hv_file_sync_dir(dir)) != HV_OK) {
			log_error("audit: cannot create %s: %s", path, hv_status_name(st));
			goto out;
		}
		*created = true;
		log_info("audit: created the audit key %s", path);
		crypto_wipe(pem, len);
		free(pem);
		pem = NULL;
		st  = hv_file_read(path, KEY_PEM_MAX, true, &pem, &len);
	}
	if (st != HV_OK) {
		log_error("audit: cannot read %s: %s%s", path, hv_status_name(st),
		    st == HV_PERMISSION_DENIED ? " (open to other users: chmod 600 it)" : "");
		goto out;
	}
	if (crypto_ed25519_secret(pem, len, a->a_secret) != HV_OK ||
	    crypto_ed25519_public(pem, len, a->a_pub) != HV_OK) {
		st = HV_DATA_LOSS;
		log_error("audit: %s is not an Ed25519 private key", path);
		goto out;
	}
	crypto_hmac_sha256(chain, a->a_secret, sizeof(a->a_secret), CHAIN_KEY_LABEL,
	    strlen(CHAIN_KEY_LABEL));
	st = crypto_hmac_key_new(&a->a_key, chain, sizeof(chain));
	crypto_wipe(chain, sizeof(chain));
out:
	if (pem != NULL) {
		crypto_wipe(pem, len);
		free(pem);
	}
	return (st);
}
