/*
 * audit_verify.c - audit_verify (every hash, the checkpoints, the subject index both ways)
 * and audit_list.
 *
 * Verifying recomputes every hash in key order and compares three things per entry: the key
 * with the seq inside the entry (reordering), the seq with the one expected next (removal),
 * and the hashes (the entry's own, then the link to the previous entry). The first mismatch is
 * reported; what follows it cannot be trusted either way. Then the checkpoints (each must be
 * signed by the audit key and name an entry the log still holds, with the hash it recorded),
 * then the subject index both ways.
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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- verifying ------------------------------------------------------------------------ */

/* Records the first problem found; returns HV_DATA_LOSS. */
static hv_status bad(audit_verify_result *out, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static hv_status
bad(audit_verify_result *out, uint64_t seq, const char *fmt, ...)
{
	va_list ap;

	out->first_bad_seq = seq;
	va_start(ap, fmt);
	vsnprintf(out->why, sizeof(out->why), fmt, ap);
	va_end(ap);
	return (HV_DATA_LOSS);
}

static hv_status
get_entry(audit *a, store_txn *txn, uint64_t seq, audit_entry *e)
{
	uint8_t     key[8];
	const void *v;
	size_t      vl, bodylen;
	hv_status   st;

	hv_put_be64(key, seq);
	if ((st = store_get(txn, a->a_log, key, sizeof(key), &v, &vl)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st); /* the index names it */
	}
	return (
	    audit__entry_decode(v, vl, e, &bodylen) == 0 && e->seq == seq ? HV_OK : HV_DATA_LOSS);
}

/* The walk of the chain: what audit_verify carries from one entry to the next. */
typedef struct chain_walk {
	uint64_t cw_expected;             /* the next seq */
	uint64_t cw_boundary;             /* entries after it must be keyed */
	bool     cw_keyed;                /* a keyed entry was seen */
	uint8_t  cw_prev[AUDIT_HASH_LEN]; /* the hash of the entry before */
} chain_walk;

/* Checks one entry of the log (its key k) against the walk so far and the subject index. */
static hv_status
verify_entry(audit *a, store_txn *txn, audit_verify_result *out, chain_walk *w, const void *k,
    size_t kl, const uint8_t *v, size_t vl)
{
	audit_entry e;
	uint8_t     h[AUDIT_HASH_LEN], skey[SUBJECT_KEY_MAX];
	size_t      bodylen;
	uint64_t    kseq;
	const void *iv;
	size_t      ivl;
	hv_status   st;

	if (kl != 8) {
		return (bad(out, w->cw_expected, "a key after entry %llu is not a sequence number",
		    (unsigned long long) w->cw_expected - 1));
	}
	kseq = hv_get_be64(k);
	if (kseq != w->cw_expected) {
		return (kseq > w->cw_expected
		        ? bad(out, w->cw_expected, "entry %llu was removed (the next one is %llu)",
		              (unsigned long long) w->cw_expected, (unsigned long long) kseq)
		        : bad(out, w->cw_expected, "entry %llu is out of place",
		              (unsigned long long) kseq));
	}
	if (audit__entry_decode(v, vl, &e, &bodylen) != 0) {
		return (bad(out, kseq, "entry %llu does not decode (changed)",
		    (unsigned long long) kseq));
	}
	if (e.seq != kseq) {
		return (bad(out, kseq, "position %llu holds entry %llu (reordered or changed)",
		    (unsigned long long) kseq, (unsigned long long) e.seq));
	}
	if (v[0] == AUDIT_VERSION_LEGACY && (w->cw_keyed || kseq > w->cw_boundary)) {
		return (bad(out, kseq,
		    "entry %llu is unkeyed, but the log is keyed after entry %llu (rewritten)",
		    (unsigned long long) kseq, (unsigned long long) w->cw_boundary));
	}
	w->cw_keyed = w->cw_keyed || v[0] != AUDIT_VERSION_LEGACY;
	audit__entry_hash(a, e.prev_hash, v, bodylen, h);
	if (!crypto_equal(h, e.hash, AUDIT_HASH_LEN)) {
		return (bad(out, kseq, "entry %llu was changed (its hash does not match)",
		    (unsigned long long) kseq));
	}
	if (!crypto_equal(w->cw_prev, e.prev_hash, AUDIT_HASH_LEN)) {
		/* This entry is whole, so the one before it was replaced by another whole one
		 * (hash recomputed): name that one. */
		return (bad(out, kseq - 1,
		    "entry %llu was replaced (entry %llu recorded another hash for it)",
		    (unsigned long long) kseq - 1, (unsigned long long) kseq));
	}
	if (e.subject[0] != '\0') {
		st = store_get(txn, a->a_subject, skey,
		    audit__index_key(skey, kseq, e.subject, strlen(e.subject)), &iv, &ivl);
		if (st == HV_NOT_FOUND) {
			return (bad(out, kseq, "entry %llu is missing from the subject index",
			    (unsigned long long) kseq));
		}
		if (st != HV_OK) {
			return (st);
		}
	}
	memcpy(w->cw_prev, e.hash, AUDIT_HASH_LEN);
	w->cw_expected = kseq + 1;
	out->entries++;
	return (HV_OK);
}

/* After the walk: the head record must name the last entry. */
static hv_status
verify_head(audit *a, store_txn *txn, audit_verify_result *out, const chain_walk *w)
{
	const void *v;
	size_t      vl;
	uint64_t    last = w->cw_expected - 1;
	hv_status   rc;

	rc = store_get(txn, a->a_head, HEAD_KEY, strlen(HEAD_KEY), &v, &vl);
	if (rc == HV_NOT_FOUND) {
		return (out->entries == 0 ? HV_OK
		                          : bad(out, 1, "the head record is missing (%llu entries)",
		                                (unsigned long long) out->entries));
	}
	if (rc != HV_OK) {
		return (rc);
	}
	if (vl != HEAD_LEN) {
		return (bad(out, w->cw_expected, "the head record does not decode"));
	}
	out->head_seq = hv_get_be64(v);
	memcpy(out->head_hash, (const uint8_t *) v + 8, AUDIT_HASH_LEN);
	if (out->head_seq > last) {
		return (bad(out, w->cw_expected, "entries %llu to %llu were removed",
		    (unsigned long long) w->cw_expected, (unsigned long long) out->head_seq));
	}
	if (out->head_seq < last) {
		return (bad(out, out->head_seq + 1,
		    "entry %llu was added behind the head (which ends at %llu)",
		    (unsigned long long) out->head_seq + 1, (unsigned long long) out->head_seq));
	}
	if (!crypto_equal(out->head_hash, w->cw_prev, AUDIT_HASH_LEN)) {
		return (bad(out, out->head_seq,
		    "entry %llu was replaced (the head records another hash)",
		    (unsigned long long) out->head_seq));
	}
	return (HV_OK);
}

/* The hash the log holds for seq (zeros for 0); HV_NOT_FOUND when it holds no such entry. */
static hv_status
logged_hash(audit *a, store_txn *txn, uint64_t seq, uint8_t hash[AUDIT_HASH_LEN])
{
	audit_entry e;
	hv_status   st;

	memset(hash, 0, AUDIT_HASH_LEN);
	if (seq == 0) {
		return (HV_OK);
	}
	if ((st = get_entry(a, txn, seq, &e)) != HV_OK) {
		return (st == HV_DATA_LOSS ? HV_NOT_FOUND : st);
	}
	memcpy(hash, e.hash, AUDIT_HASH_LEN);
	return (HV_OK);
}

/* The checkpoint file as it is before verify's read transaction begins: every line in it
 * names a head committed before, so in that transaction's snapshot. Lines appended later (by
 * the writer, or another process, while verify runs) may name heads the snapshot lacks, and
 * are left for the next verify. */
typedef struct cp_file {
	FILE *cf_f;     /* NULL: there is no file */
	off_t cf_limit; /* its size when opened */
} cp_file;

static hv_status
cp_file_open(audit *a, cp_file *cf)
{
	struct stat sb;

	cf->cf_limit = 0;
	if ((cf->cf_f = fopen(a->a_cpath, "re")) == NULL) {
		return (errno == ENOENT ? HV_OK : hv_status_from_errno(errno));
	}
	if (fstat(fileno(cf->cf_f), &sb) != 0) {
		fclose(cf->cf_f);
		cf->cf_f = NULL;
		return (hv_status_from_errno(errno));
	}
	cf->cf_limit = sb.st_size;
	return (HV_OK);
}

/* The next line within the limit; NULL at the limit, at the end or on an error. */
static char *
cp_file_line(cp_file *cf, char *line, size_t size)
{
	off_t at = ftello(cf->cf_f);

	return (at >= 0 && at < cf->cf_limit ? fgets(line, (int) size, cf->cf_f) : NULL);
}

/* The first line of the checkpoint file: the boundary (entries after it are keyed).
 * *found false without a file or a first line that parses (verify_checkpoints names that). */
static void
cp_boundary(audit *a, cp_file *cf, uint64_t *boundary, bool *found)
{
	char       line[CP_LINE_MAX];
	checkpoint cp;

	*found = false;
	if (cf->cf_f == NULL) {
		return;
	}
	if (cp_file_line(cf, line, sizeof(line)) != NULL &&
	    audit__cp_parse(line, a->a_pub, &cp) == 0) {
		*boundary = cp.cp_seq;
		*found    = true;
	}
	rewind(cf->cf_f);
}

/* One checkpoint line (number n) against the log. */
static hv_status
verify_checkpoint(audit *a, store_txn *txn, audit_verify_result *out, char *line, size_t n)
{
	checkpoint cp;
	uint8_t    h[AUDIT_HASH_LEN];
	uint64_t   at = out->checkpoint_seq + 1; /* where a bad line is reported */
	hv_status  st;
	int        rc;

	if ((rc = audit__cp_parse(line, a->a_pub, &cp)) != 0) {
		return (bad(out, at,
		    rc == -1 ? "checkpoint line %zu does not parse"
		             : "checkpoint line %zu is not signed by the audit key",
		    n));
	}
	if (n == 1) {
		out->keyed_from = cp.cp_seq;
	}
	out->checkpoints++;
	if (cp.cp_seq > out->checkpoint_seq) {
		out->checkpoint_seq = cp.cp_seq;
	}
	if (cp.cp_seq > out->head_seq) {
		return (bad(out, out->head_seq + 1,
		    "entries %llu to %llu were removed (checkpoint line %zu saw the log up to "
		    "%llu)",
		    (unsigned long long) out->head_seq + 1, (unsigned long long) cp.cp_seq, n,
		    (unsigned long long) cp.cp_seq));
	}
	if ((st = logged_hash(a, txn, cp.cp_seq, h)) != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	if (st != HV_OK || !crypto_equal(h, cp.cp_hash, AUDIT_HASH_LEN)) {
		return (bad(out, cp.cp_seq == 0 ? 1 : cp.cp_seq,
		    "entry %llu differs from checkpoint line %zu (rewritten)",
		    (unsigned long long) cp.cp_seq, n));
	}
	return (HV_OK);
}

/* How many entries, index rows or checkpoint lines are read between looks at the stop flag. */
#define STOP_EVERY 4096

/* Whether the caller asked the walk to end (audit_verify_until); looked at every STOP_EVERY
 * steps. */
static bool
stopping(const atomic_bool *stop, uint64_t step)
{
	return (stop != NULL && step % STOP_EVERY == 0 && atomic_load(stop));
}

/* Every line of the checkpoint file (up to its limit) against the log. */
static hv_status
verify_checkpoints(audit *a, store_txn *txn, audit_verify_result *out, cp_file *cf,
    const atomic_bool *stop)
{
	char      line[CP_LINE_MAX];
	size_t    n  = 0;
	hv_status st = HV_OK;

	if (cf->cf_f == NULL) {
		return (out->entries == 0
		        ? HV_OK
		        : bad(out, 1, "the checkpoint file is missing (%llu entries)",
		              (unsigned long long) out->entries));
	}
	while (st == HV_OK && cp_file_line(cf, line, sizeof(line)) != NULL) {
		st = stopping(stop, n + 1) ? HV_CANCELLED
		                           : verify_checkpoint(a, txn, out, line, ++n);
	}
	if (st == HV_OK && ferror(cf->cf_f)) {
		st = HV_UNAVAILABLE;
	}
	if (st == HV_OK && n == 0 && out->entries > 0) {
		st = bad(out, 1, "the checkpoint file is empty (%llu entries)",
		    (unsigned long long) out->entries);
	}
	return (st);
}

/* Rows of the log or of the index read in one read transaction. A long walk is many short
 * transactions: one that lasted the whole walk would keep the map from growing meanwhile (a
 * map that must grow waits for every transaction of the process, store_lmdb.c) and old pages
 * from being reused. The log and its index are append-only, so a later transaction holds all
 * that an earlier one did; each chunk starts at the last key the one before it read. */
#define WALK_CHUNK 8192

/* Positions c at the first key of a chunk: the first of the table when last is empty, else the
 * first after last (which the chunk before read; a key that sorts between it and the next one,
 * of any length, is not skipped). */
static hv_status
chunk_seek(store_cursor *c, const uint8_t *last, size_t lastl, const void **k, size_t *kl,
    const void **v, size_t *vl)
{
	hv_status rc = store_cursor_seek(c, last, lastl, k, kl, v, vl);

	if (rc == HV_OK && lastl > 0 && *kl == lastl && memcmp(*k, last, lastl) == 0) {
		rc = store_cursor_next(c, k, kl, v, vl);
	}
	return (rc);
}

/* What walk_rows calls for each row, in txn, until it fails. */
typedef hv_status (
    *row_fn)(store_txn *txn, const void *k, size_t kl, const void *v, size_t vl, void *arg);

/* Every row of table t in key order, WALK_CHUNK rows per read transaction, to fn. With keep,
 * the transaction that found the end is left open in *keep (end it with store_read_end), so
 * that the caller goes on in the snapshot the walk ended in. */
static hv_status
walk_rows(audit *a, store_table t, row_fn fn, void *arg, store_txn **keep)
{
	uint8_t   last[512]; /* store.h: keys of 1..511 bytes */
	size_t    lastl = 0;
	bool      end   = false;
	hv_status st    = HV_OK;

	while (st == HV_OK && !end) {
		store_txn    *txn = NULL;
		store_cursor *c   = NULL;
		const void   *k, *v;
		size_t        kl, vl, n = 0;
		hv_status     rc = HV_OK;

		if ((st = store_read_begin(a->a_store, &txn)) != HV_OK) {
			break;
		}
		if ((st = store_cursor_open(txn, t, &c)) == HV_OK) {
			for (rc = chunk_seek(c, last, lastl, &k, &kl, &v, &vl);
			     rc == HV_OK && n < WALK_CHUNK && st == HV_OK;
			     rc = store_cursor_next(c, &k, &kl, &v, &vl), n++) {
				if ((st = fn(txn, k, kl, v, vl, arg)) == HV_OK) {
					memcpy(last, k, kl);
					lastl = kl;
				}
			}
			end = rc == HV_NOT_FOUND;
			if (st == HV_OK && rc != HV_OK && rc != HV_NOT_FOUND) {
				st = rc;
			}
		}
		store_cursor_close(c);
		if (st == HV_OK && end && keep != NULL) {
			*keep = txn;
		} else {
			store_read_end(txn);
		}
	}
	return (st);
}

/* What the walks of audit_verify_until share: walk_rows's arg. */
typedef struct verify_walk {
	audit               *vw_audit;
	audit_verify_result *vw_out;
	const atomic_bool   *vw_stop;
	chain_walk           vw_chain; /* the log's */
	uint64_t             vw_rows;  /* the index's rows so far */
} verify_walk;

static hv_status
log_row(store_txn *txn, const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
	verify_walk *w = arg;

	if (stopping(w->vw_stop, w->vw_out->entries + 1)) {
		return (HV_CANCELLED);
	}
	return (verify_entry(w->vw_audit, txn, w->vw_out, &w->vw_chain, k, kl, v, vl));
}

/* One row of the subject index: it must name an entry of the log about that subject, in the
 * right window. (verify_entry checked the other way: every such entry has its row.) */
static hv_status
verify_row(audit *a, store_txn *txn, audit_verify_result *out, const uint8_t *p, size_t kl)
{
	size_t      sl  = kl >= 8 + 2 + 8 ? kl - 8 - 1 - 8 : 0;
	uint64_t    seq = kl >= 8 ? hv_get_be64(p + kl - 8) : 0;
	audit_entry e;
	hv_status   rc;

	if (sl == 0 || sl >= AUDIT_SUBJECT_MAX || p[8 + sl] != 0 ||
	    hv_get_be64(p) != seq >> WINDOW_BITS) {
		return (bad(out, seq != 0 ? seq : 1, "a row of the subject index does not decode"));
	}
	if ((rc = get_entry(a, txn, seq, &e)) != HV_OK && rc != HV_DATA_LOSS) {
		return (rc);
	}
	if (rc != HV_OK || strlen(e.subject) != sl || memcmp(e.subject, p + 8, sl) != 0) {
		return (bad(out, seq,
		    "the subject index names entry %llu for a subject it is not about (a row was "
		    "added or changed)",
		    (unsigned long long) seq));
	}
	return (HV_OK);
}

static hv_status
index_row(store_txn *txn, const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
	verify_walk *w = arg;

	(void) v;
	(void) vl;
	if (stopping(w->vw_stop, ++w->vw_rows)) {
		return (HV_CANCELLED);
	}
	return (verify_row(w->vw_audit, txn, w->vw_out, k, kl));
}

hv_status
audit_verify(audit *a, audit_verify_result *out)
{
	return (audit_verify_until(a, NULL, out));
}

hv_status
audit_verify_until(audit *a, const atomic_bool *stop, audit_verify_result *out)
{
	store_txn  *txn = NULL;
	cp_file     cf  = { NULL, 0 };
	verify_walk w   = { .vw_audit = a, .vw_out = out, .vw_stop = stop };
	bool        found;
	hv_status   st;

	memset(out, 0, sizeof(*out));
	w.vw_chain.cw_expected = 1;
	if ((st = cp_file_open(a, &cf)) != HV_OK) {
		goto out;
	}
	cp_boundary(a, &cf, &w.vw_chain.cw_boundary, &found);
	if (!found) {
		w.vw_chain.cw_boundary = UINT64_MAX; /* verify_checkpoints reports the file */
	}
	/* After the file's size was taken (cp_file): every checkpoint read names an entry that
	 * the transactions below hold. The head and the checkpoints are checked in the
	 * transaction that found the end of the log. */
	if ((st = walk_rows(a, a->a_log, log_row, &w, &txn)) != HV_OK ||
	    (st = verify_head(a, txn, out, &w.vw_chain)) != HV_OK ||
	    (st = verify_checkpoints(a, txn, out, &cf, stop)) != HV_OK) {
		goto out;
	}
	store_read_end(txn);
	txn = NULL;
	st  = walk_rows(a, a->a_subject, index_row, &w, NULL);
out:
	if (txn != NULL) {
		store_read_end(txn);
	}
	if (cf.cf_f != NULL) {
		fclose(cf.cf_f);
	}
	if (st == HV_OK) {
		(void) audit_checkpoint(a); /* the head just verified */
	}
	return (st);
}

/* ---- listing -------------------------------------------------------------------------- */

/* A subject's entries after after_seq: one seek per window of the index up to the head's. */
static hv_status
list_subject(audit *a, store_txn *txn, const char *subject, uint64_t after_seq, audit_entry *out,
    size_t max, size_t *n)
{
	store_cursor *c  = NULL;
	size_t        sl = strlen(subject), klen;
	uint8_t       key[SUBJECT_KEY_MAX];
	const void   *k, *v;
	size_t        kl, vl;
	uint64_t      last;
	hv_status     st, rc = HV_OK;

	st = store_get(txn, a->a_head, HEAD_KEY, strlen(HEAD_KEY), &v, &vl);
	if (st == HV_NOT_FOUND) {
		return (HV_OK); /* an empty log */
	}
	if (st != HV_OK) {
		return (st);
	}
	if (vl != HEAD_LEN) {
		return (HV_DATA_LOSS);
	}
	last = hv_get_be64(v);
	if ((st = store_cursor_open(txn, a->a_subject, &c)) != HV_OK) {
		return (st);
	}
	for (uint64_t w = (after_seq + 1) >> WINDOW_BITS; w <= last >> WINDOW_BITS && *n < max;
	     w++) {
		uint64_t from =
		    w == (after_seq + 1) >> WINDOW_BITS ? after_seq + 1 : w << WINDOW_BITS;

		klen = audit__index_key(key, from, subject, sl);
		for (rc = store_cursor_seek(c, key, klen, &k, &kl, NULL, NULL);
		     rc == HV_OK && *n < max; rc = store_cursor_next(c, &k, &kl, NULL, NULL)) {
			if (kl != klen || memcmp(k, key, 8 + sl + 1) != 0) {
				break; /* past this subject's entries in this window */
			}
			if ((rc = get_entry(a, txn, hv_get_be64((const uint8_t *) k + 8 + sl + 1),
			         &out[*n])) != HV_OK) {
				break;
			}
			(*n)++;
		}
		if (rc != HV_OK && rc != HV_NOT_FOUND) {
			break;
		}
		rc = HV_OK;
	}
	store_cursor_close(c);
	return (rc);
}

hv_status
audit_list(audit *a, store_txn *txn, const char *subject, uint64_t after_seq, audit_entry *out,
    size_t max, size_t *n)
{
	store_cursor *c = NULL;
	uint8_t       key[8];
	const void   *k, *v;
	size_t        kl, vl, bodylen;
	hv_status     st = HV_INVALID_ARGUMENT, rc;

	*n = 0;
	if (max > AUDIT_LIST_MAX || after_seq == UINT64_MAX ||
	    (subject != NULL &&
	        (subject[0] == '\0' || !audit__field_ok(subject, AUDIT_SUBJECT_MAX, true)))) {
		goto out;
	}
	if (subject != NULL) {
		return (list_subject(a, txn, subject, after_seq, out, max, n));
	}
	hv_put_be64(key, after_seq + 1);
	if ((st = store_cursor_open(txn, a->a_log, &c)) != HV_OK) {
		goto out;
	}
	for (rc = store_cursor_seek(c, key, sizeof(key), &k, &kl, &v, &vl); rc == HV_OK && *n < max;
	     rc = store_cursor_next(c, &k, &kl, &v, &vl)) {
		if (kl != 8 || audit__entry_decode(v, vl, &out[*n], &bodylen) != 0) {
			st = HV_DATA_LOSS;
			goto out;
		}
		(*n)++;
	}
	if (rc != HV_OK && rc != HV_NOT_FOUND) {
		st = rc;
		goto out;
	}
	st = HV_OK;
out:
	store_cursor_close(c);
	return (st);
}
