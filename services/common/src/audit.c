/*
 * audit.c - the hash-chained audit log (see audit.h for the tables and the encoding).
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AUDIT_VERSION 3        /* keyed, with the person: what is written */
#define AUDIT_VERSION_KEYED 2  /* keyed, from before people: verified, never written */
#define AUDIT_VERSION_LEGACY 1 /* unkeyed SHA-256, from before the key: verified, never written */
#define KEY_FILE "audit-ed25519.pem" /* in DATA/keys */
#define KEY_PEM_MAX 4096
#define CHECKPOINT_FILE "audit.checkpoints" /* in DATA */
#define CHAIN_KEY_LABEL "haven audit chain key v1"
#define CP_LABEL "haven audit checkpoint v1" /* signed with its NUL, as a separator */
#define CP_MSG_LEN (sizeof(CP_LABEL) + 8 + AUDIT_HASH_LEN + 8)
#define CP_LINE_MAX 320 /* "v1 seq hash time sig\n" is at most 238 characters */
#define HEAD_KEY "head"
#define HEAD_LEN (8 + AUDIT_HASH_LEN)
/* version, seq, time, role, five strings with their length bytes, result */
#define BODY_MAX                                                                           \
	(1 + 8 + 8 + 4 + RPC_ORG_ID_MAX + AUDIT_METHOD_MAX + AUDIT_SUBJECT_MAX +              \
	    AUDIT_PURPOSE_MAX + RPC_PERSON_ID_MAX + 4)
#define VALUE_MAX (BODY_MAX + 2 * AUDIT_HASH_LEN)
/* audit.by_window: be64 window || subject || 0x00 || be64 seq */
#define SUBJECT_KEY_MAX (8 + AUDIT_SUBJECT_MAX + 8)
/* Entries per window of the subject index: appends touch only the leaf pages of the current
 * window (a few dozen), not one random page of an index over every subject each; a lookup by
 * subject seeks once per window. */
#define WINDOW_BITS 10
#define INDEX_KEY "index"     /* in audit.head: the index's layout, once it is built */
#define INDEX_LAYOUT "window-10"
#define REBUILD_BATCH 10000   /* log entries indexed per transaction when (re)building */

#define WRITER_BATCH_MAX (AUDIT_QUEUE_MAX / 2) /* entries per transaction of the writer */
/* A batch stops lingering once this many entries wait, whatever its linger. */
#define WRITER_BATCH_WAKE (AUDIT_QUEUE_MAX / 2)
/* The writer lingers this many times its recent commit time, so that it spends at most
 * 1 / (WRITER_LINGER_FACTOR + 1) of its time in commits. A durable commit costs the machine
 * more than the writer's own CPU: on a small virtual machine each fsync stalled the threads
 * answering calls too, and 150 commits a second cost consent Check a tenth of its throughput
 * against Echo (docs/consent.md, Performance). So a slow disk gets fewer, larger commits (a
 * longer crash window, at most AUDIT_LINGER_MAX_MS) and a fast one short windows (at least
 * AUDIT_LINGER_MIN_MS). */
#define WRITER_LINGER_FACTOR 15

struct audit {
	store      *a_store;
	store_table a_log;
	store_table a_head;
	store_table a_subject; /* audit.by_window */

	/* The keys and the checkpoint file (audit_open; constant afterwards). */
	crypto_hmac_key *a_key;                               /* the chain's HMAC key, prepared */
	uint8_t          a_secret[CRYPTO_ED25519_SECRET_LEN]; /* signs checkpoints; wiped at close */
	uint8_t          a_pub[CRYPTO_ED25519_PUBLIC_LEN];
	char             a_cpath[PATH_MAX];                   /* DATA/audit.checkpoints */

	/* This handle's checkpoints; a_cpmtx guards these and the file appends. */
	pthread_mutex_t a_cpmtx;
	bool            a_cp_any;    /* it wrote one */
	uint64_t        a_cp_seq;    /* the seq of its last one */
	int64_t         a_cp_at;     /* when it last tried (hv_clock_mono_ms) */
	bool            a_cp_warned; /* a failure was logged */

	/* The queue of audit_enqueue: a ring, its writer, and counters that audit_flush
	 * waits on. a_qmtx guards all of it; never held across a store call. */
	pthread_mutex_t a_qmtx;
	pthread_cond_t  a_qcond;   /* for enqueuers waiting for room and flushers */
	pthread_cond_t  a_wcond;   /* for the writer */
	audit_entry    *a_ring;
	size_t          a_qhead, a_qlen;
	uint64_t        a_queued;  /* entries ever enqueued */
	uint64_t        a_written; /* of those, committed */
	unsigned        a_waiters; /* threads waiting on a_qcond */
	unsigned        a_flushes; /* flushers waiting: the writer does not linger */
	uint64_t        a_commit_us; /* the writer's commit time, a moving average */
	unsigned        a_linger_ms; /* how long the next batch gathers after its first entry */
	hv_status       a_qerr;    /* the writer's failure; sticky */
	bool            a_writer, a_stop;
	pthread_t       a_thread;
};

static hv_status index_prepare(audit *a);
static hv_status key_load(audit *a, const char *data_dir, bool *created);
static hv_status cp_open(audit *a, bool key_created);
static void cp_maybe(audit *a);

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
	    (st = index_prepare(a)) != HV_OK || (st = key_load(a, data_dir, &created)) != HV_OK) {
		goto out;
	}
	st = HV_INVALID_ARGUMENT;
	if ((size_t) snprintf(a->a_cpath, sizeof(a->a_cpath), "%s/" CHECKPOINT_FILE, data_dir) >=
	    sizeof(a->a_cpath)) {
		goto out;
	}
	if ((st = cp_open(a, created)) != HV_OK) {
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

/* ---- encoding ------------------------------------------------------------------------- */

/* Printable ASCII (no spaces when strict), shorter than max. */
static bool
field_ok(const char *s, size_t max, bool strict)
{
	size_t n = strnlen(s, max);

	if (n >= max) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char) s[i];
		if (c > 0x7e || c < (strict ? 0x21 : 0x20)) {
			return (false);
		}
	}
	return (true);
}

static size_t
str_put(uint8_t *p, const char *s)
{
	size_t n = strlen(s); /* < 256: checked by field_ok */

	p[0] = (uint8_t) n;
	memcpy(p + 1, s, n);
	return (n + 1);
}

/* Encodes the body of e into buf (BODY_MAX bytes); returns its length. */
static size_t
body_encode(const audit_entry *e, uint8_t *buf)
{
	size_t o = 0;

	buf[o++] = AUDIT_VERSION;
	hv_put_be64(buf + o, e->seq);
	o += 8;
	hv_put_be64(buf + o, (uint64_t) e->time_ms);
	o += 8;
	hv_put_be32(buf + o, (uint32_t) e->role);
	o += 4;
	o += str_put(buf + o, e->org);
	o += str_put(buf + o, e->method);
	o += str_put(buf + o, e->subject);
	o += str_put(buf + o, e->purpose);
	o += str_put(buf + o, e->person);
	hv_put_be32(buf + o, (uint32_t) e->result);
	o += 4;
	return (o);
}

/* HMAC-SHA256(chain key, prev_hash || body) for a keyed body (its first byte 2 or 3),
 * SHA-256(prev_hash || body) for a legacy one. */
static void
entry_hash(const audit *a, const uint8_t prev[AUDIT_HASH_LEN], const uint8_t *body, size_t n,
    uint8_t out[AUDIT_HASH_LEN])
{
	uint8_t buf[AUDIT_HASH_LEN + BODY_MAX];

	memcpy(buf, prev, AUDIT_HASH_LEN);
	memcpy(buf + AUDIT_HASH_LEN, body, n);
	if (body[0] == AUDIT_VERSION_LEGACY) {
		crypto_sha256(out, buf, AUDIT_HASH_LEN + n);
	} else {
		crypto_hmac_sha256_prepared(out, a->a_key, buf, AUDIT_HASH_LEN + n);
	}
}

static int
str_get(const uint8_t *v, size_t len, size_t *o, char *out, size_t max)
{
	size_t n;

	if (*o >= len) {
		return (-1);
	}
	n = v[(*o)++];
	if (n >= max || len - *o < n) {
		return (-1);
	}
	memcpy(out, v + *o, n);
	out[n] = '\0';
	*o += n;
	return (0);
}

/* Decodes a stored value; *bodylen gets the length of its body. -1 when it is malformed. */
static int
entry_decode(const uint8_t *v, size_t len, audit_entry *e, size_t *bodylen)
{
	size_t o = 0;

	memset(e, 0, sizeof(*e));
	if (len < 1 + 8 + 8 + 4 || (v[0] != AUDIT_VERSION && v[0] != AUDIT_VERSION_KEYED &&
	                               v[0] != AUDIT_VERSION_LEGACY)) {
		return (-1);
	}
	o          = 1;
	e->seq     = hv_get_be64(v + o);
	o += 8;
	e->time_ms = (int64_t) hv_get_be64(v + o);
	o += 8;
	e->role    = (rpc_role) hv_get_be32(v + o);
	o += 4;
	if (str_get(v, len, &o, e->org, sizeof(e->org)) != 0 ||
	    str_get(v, len, &o, e->method, sizeof(e->method)) != 0 ||
	    str_get(v, len, &o, e->subject, sizeof(e->subject)) != 0 ||
	    str_get(v, len, &o, e->purpose, sizeof(e->purpose)) != 0 ||
	    (v[0] == AUDIT_VERSION && str_get(v, len, &o, e->person, sizeof(e->person)) != 0) ||
	    len - o != 4 + 2 * AUDIT_HASH_LEN) {
		return (-1);
	}
	e->result = (int32_t) hv_get_be32(v + o);
	o += 4;
	*bodylen = o;
	memcpy(e->prev_hash, v + o, AUDIT_HASH_LEN);
	memcpy(e->hash, v + o + AUDIT_HASH_LEN, AUDIT_HASH_LEN);
	return (0);
}

/* ---- appending ------------------------------------------------------------------------ */

void
audit_entry_caller(audit_entry *e, const rpc_caller *caller)
{
	e->role = caller->role;
	snprintf(e->org, sizeof(e->org), "%s", caller->org_id);
	snprintf(e->person, sizeof(e->person), "%s", caller->person.id);
}

static size_t
index_key(uint8_t key[SUBJECT_KEY_MAX], uint64_t seq, const char *subject, size_t sl)
{
	hv_put_be64(key, seq >> WINDOW_BITS);
	memcpy(key + 8, subject, sl);
	key[8 + sl] = 0;
	hv_put_be64(key + 8 + sl + 1, seq);
	return (8 + sl + 9);
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
		if (kl != 8 || entry_decode(v, vl, &e, &bodylen) != 0) {
			rc = HV_DATA_LOSS; /* audit_verify names it; the index cannot be built past it */
			break;
		}
		if (e.subject[0] != '\0' &&
		    (rc = store_put(txn, a->a_subject, skey,
		         index_key(skey, e.seq, e.subject, strlen(e.subject)), "", 0)) != HV_OK) {
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
static hv_status
index_prepare(audit *a)
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

/* The chain's head: the last entry's seq (0: none yet) and hash. */
typedef struct chain_head {
	uint64_t ch_seq;
	uint8_t  ch_hash[AUDIT_HASH_LEN];
} chain_head;

static hv_status
head_read(audit *a, store_txn *txn, chain_head *h)
{
	const void *v;
	size_t      vlen;
	hv_status   st;

	st = store_get(txn, a->a_head, HEAD_KEY, strlen(HEAD_KEY), &v, &vlen);
	if (st == HV_NOT_FOUND) {
		h->ch_seq = 0;
		memset(h->ch_hash, 0, AUDIT_HASH_LEN);
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if (vlen != HEAD_LEN) {
		return (HV_DATA_LOSS);
	}
	h->ch_seq = hv_get_be64(v);
	memcpy(h->ch_hash, (const uint8_t *) v + 8, AUDIT_HASH_LEN);
	return (HV_OK);
}

static hv_status
head_write(audit *a, store_txn *txn, const chain_head *h)
{
	uint8_t head[HEAD_LEN];

	hv_put_be64(head, h->ch_seq);
	memcpy(head + 8, h->ch_hash, AUDIT_HASH_LEN);
	return (store_put(txn, a->a_head, HEAD_KEY, strlen(HEAD_KEY), head, sizeof(head)));
}

/* Appends e after head h (advanced to e); the caller writes the head record once after its
 * last entry, in the same transaction. */
static hv_status
append_after(audit *a, store_txn *txn, audit_entry *e, chain_head *h)
{
	uint8_t   value[VALUE_MAX];
	uint8_t   key[8];
	uint8_t   skey[SUBJECT_KEY_MAX];
	size_t    n;
	hv_status st;

	if (!field_ok(e->org, sizeof(e->org), false) ||
	    !field_ok(e->method, sizeof(e->method), false) ||
	    !field_ok(e->subject, sizeof(e->subject), true) ||
	    !field_ok(e->purpose, sizeof(e->purpose), false) ||
	    !field_ok(e->person, sizeof(e->person), true)) {
		return (HV_INVALID_ARGUMENT);
	}
	if (e->time_ms == 0) {
		e->time_ms = hv_clock_wall_ms();
	}
	e->seq = h->ch_seq + 1;
	memcpy(e->prev_hash, h->ch_hash, AUDIT_HASH_LEN);
	n = body_encode(e, value);
	entry_hash(a, e->prev_hash, value, n, e->hash);
	memcpy(value + n, e->prev_hash, AUDIT_HASH_LEN);
	memcpy(value + n + AUDIT_HASH_LEN, e->hash, AUDIT_HASH_LEN);
	hv_put_be64(key, e->seq);
	/* An entry already under the next seq means the head was rolled back: never overwrite. */
	st = store_put_new(txn, a->a_log, key, sizeof(key), value, n + 2 * AUDIT_HASH_LEN);
	if (st != HV_OK) {
		return (st == HV_ALREADY_EXISTS ? HV_DATA_LOSS : st);
	}
	if (e->subject[0] != '\0' &&
	    (st = store_put(txn, a->a_subject, skey,
	         index_key(skey, e->seq, e->subject, strlen(e->subject)), "", 0)) != HV_OK) {
		return (st);
	}
	h->ch_seq = e->seq;
	memcpy(h->ch_hash, e->hash, AUDIT_HASH_LEN);
	return (HV_OK);
}

hv_status
audit_append(audit *a, store_txn *txn, audit_entry *e)
{
	chain_head h;
	hv_status  st;

	if ((st = head_read(a, txn, &h)) != HV_OK || (st = append_after(a, txn, e, &h)) != HV_OK) {
		return (st);
	}
	return (head_write(a, txn, &h));
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
		cp_maybe(a);
	}
	return (st);
}

/* ---- the audit key -------------------------------------------------------------------- */

static hv_status
write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (hv_status_from_errno(errno));
		}
		p += w;
		len -= (size_t) w;
	}
	return (HV_OK);
}

/* DATA/keys: made 0700 when missing, refused when open to other users. */
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
		if ((st = crypto_ed25519_keygen(&pem, &len)) != HV_OK ||
		    (st = key_create(path, pem, len)) != HV_OK) {
			log_error("audit: cannot create %s: %s", path, hv_status_name(st));
			goto out;
		}
		(void) hv_file_sync_dir(dir);
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

/* ---- checkpoints ---------------------------------------------------------------------- */

static void
hex_put(char *out, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i]     = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* Exactly 2n lower-case hex characters. */
static int
hex_get(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n) {
		return (-1);
	}
	for (size_t i = 0; i < 2 * n; i++) {
		int c = s[i], d;
		if (c >= '0' && c <= '9') {
			d = c - '0';
		} else if (c >= 'a' && c <= 'f') {
			d = c - 'a' + 10;
		} else {
			return (-1);
		}
		out[i / 2] = (uint8_t) (i % 2 == 0 ? d << 4 : out[i / 2] | d);
	}
	return (0);
}

/* Decimal digits only, no overflow. */
static int
dec_get(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0' || strlen(s) > 20) {
		return (-1);
	}
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10) {
			return (-1);
		}
		v = v * 10 + (uint64_t) (*s - '0');
	}
	*out = v;
	return (0);
}

static void
cp_message(uint8_t msg[CP_MSG_LEN], uint64_t seq, const uint8_t hash[AUDIT_HASH_LEN],
    uint64_t time_ms)
{
	memcpy(msg, CP_LABEL, sizeof(CP_LABEL));
	hv_put_be64(msg + sizeof(CP_LABEL), seq);
	memcpy(msg + sizeof(CP_LABEL) + 8, hash, AUDIT_HASH_LEN);
	hv_put_be64(msg + sizeof(CP_LABEL) + 8 + AUDIT_HASH_LEN, time_ms);
}

/* A checkpoint line, its signature checked: 0; -1 when it does not parse, -2 when it is not
 * signed by pub. line loses its newline. */
typedef struct checkpoint {
	uint64_t cp_seq;
	uint8_t  cp_hash[AUDIT_HASH_LEN];
	uint64_t cp_time_ms;
} checkpoint;

static int
cp_parse(char *line, const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], checkpoint *cp)
{
	char   *f[5], *save = NULL, *p;
	size_t  n = 0, len = strlen(line);
	uint8_t sig[CRYPTO_ED25519_SIG_LEN], msg[CP_MSG_LEN];

	if (len == 0 || line[len - 1] != '\n') {
		return (-1);
	}
	line[len - 1] = '\0';
	for (p = strtok_r(line, " ", &save); p != NULL && n < 5; p = strtok_r(NULL, " ", &save)) {
		f[n++] = p;
	}
	if (n != 5 || p != NULL || strcmp(f[0], "v1") != 0 || dec_get(f[1], &cp->cp_seq) != 0 ||
	    hex_get(f[2], cp->cp_hash, AUDIT_HASH_LEN) != 0 ||
	    dec_get(f[3], &cp->cp_time_ms) != 0 || hex_get(f[4], sig, sizeof(sig)) != 0) {
		return (-1);
	}
	cp_message(msg, cp->cp_seq, cp->cp_hash, cp->cp_time_ms);
	return (crypto_ed25519_verify(pub, msg, sizeof(msg), sig, sizeof(sig)) == HV_OK ? 0 : -2);
}

/* The committed head, in a read transaction of its own. */
static hv_status
committed_head(audit *a, chain_head *h)
{
	store_txn *txn;
	hv_status  st;

	if ((st = store_read_begin(a->a_store, &txn)) != HV_OK) {
		return (st);
	}
	st = head_read(a, txn, h);
	store_read_end(txn);
	return (st);
}

/* Appends a signed checkpoint of h to the file (a_cpmtx held), making the file when create. */
static hv_status
cp_append(audit *a, const chain_head *h, bool create)
{
	uint8_t   msg[CP_MSG_LEN], sig[CRYPTO_ED25519_SIG_LEN];
	char      line[CP_LINE_MAX], hex[2 * AUDIT_HASH_LEN + 1];
	char      sighex[2 * CRYPTO_ED25519_SIG_LEN + 1];
	uint64_t  now = (uint64_t) hv_clock_wall_ms();
	int       fd  = -1, n;
	hv_status st;

	a->a_cp_at = hv_clock_mono_ms();
	cp_message(msg, h->ch_seq, h->ch_hash, now);
	if ((st = crypto_ed25519_sign(sig, a->a_secret, msg, sizeof(msg))) != HV_OK) {
		goto out;
	}
	hex_put(hex, h->ch_hash, AUDIT_HASH_LEN);
	hex_put(sighex, sig, sizeof(sig));
	n = snprintf(line, sizeof(line), "v1 %llu %s %llu %s\n", (unsigned long long) h->ch_seq,
	    hex, (unsigned long long) now, sighex);
	fd = open(a->a_cpath, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0),
	    0600);
	if (fd < 0) {
		st = errno == ENOENT ? HV_FAILED_PRECONDITION : hv_status_from_errno(errno);
		goto out;
	}
	/* One write of one line: appends of other processes land before or after it. */
	if ((st = write_all(fd, line, (size_t) n)) != HV_OK) {
		goto out;
	}
	if (fsync(fd) != 0) {
		st = hv_status_from_errno(errno);
		goto out;
	}
	a->a_cp_any = true;
	a->a_cp_seq = h->ch_seq;
	log_info("audit: checkpoint seq %llu hash %s", (unsigned long long) h->ch_seq, hex);
out:
	if (fd >= 0) {
		close(fd);
	}
	if (st != HV_OK && !a->a_cp_warned) {
		a->a_cp_warned = true;
		log_error("audit: cannot append a checkpoint to %s: %s%s", a->a_cpath,
		    hv_status_name(st),
		    st == HV_FAILED_PRECONDITION ? " (the file is missing; audit verify reports it)" : "");
	}
	return (st);
}

hv_status
audit_checkpoint(audit *a)
{
	chain_head h;
	hv_status  st;

	pthread_mutex_lock(&a->a_cpmtx);
	if ((st = committed_head(a, &h)) == HV_OK && !(a->a_cp_any && h.ch_seq == a->a_cp_seq)) {
		st = cp_append(a, &h, false);
	}
	pthread_mutex_unlock(&a->a_cpmtx);
	return (st);
}

/* A checkpoint when the last one of this handle is AUDIT_CHECKPOINT_MS old. */
static void
cp_maybe(audit *a)
{
	bool due;

	pthread_mutex_lock(&a->a_cpmtx);
	due = hv_clock_mono_ms() - a->a_cp_at >= AUDIT_CHECKPOINT_MS;
	pthread_mutex_unlock(&a->a_cpmtx);
	if (due) {
		(void) audit_checkpoint(a);
	}
}

/* Whether the committed log's last entry (and so any entry) is keyed. */
static hv_status
log_keyed(audit *a, const chain_head *h, bool *keyed)
{
	store_txn  *txn;
	uint8_t     key[8];
	const void *v;
	size_t      vl;
	hv_status   st;

	*keyed = false;
	if (h->ch_seq == 0) {
		return (HV_OK);
	}
	if ((st = store_read_begin(a->a_store, &txn)) != HV_OK) {
		return (st);
	}
	hv_put_be64(key, h->ch_seq);
	if ((st = store_get(txn, a->a_log, key, sizeof(key), &v, &vl)) == HV_OK) {
		*keyed = vl > 0 && ((const uint8_t *) v)[0] != AUDIT_VERSION_LEGACY;
	}
	store_read_end(txn);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

/* At open: a checkpoint of the head. Without a checkpoint file (or with an empty one) the
 * first line is the boundary, but only of a log that holds no keyed entry yet and with a key
 * made by this open (a new store, or one written before the key). Otherwise the file was lost
 * or removed, and is not replaced: a log rewritten as all legacy by someone who removed the
 * file would get a new boundary. */
static hv_status
cp_open(audit *a, bool key_created)
{
	struct stat sb;
	chain_head  h;
	bool        keyed, fresh;
	hv_status   st;

	pthread_mutex_lock(&a->a_cpmtx);
	if ((st = committed_head(a, &h)) != HV_OK) {
		goto out;
	}
	fresh = lstat(a->a_cpath, &sb) != 0 || sb.st_size == 0;
	if (fresh && (st = log_keyed(a, &h, &keyed)) != HV_OK) {
		goto out;
	}
	if (fresh && (keyed || !key_created)) {
		a->a_cp_warned = true;
		log_error("audit: %s is missing or empty but the audit key is older: no new one is "
		          "started, and audit verify reports it",
		    a->a_cpath);
		goto out;
	}
	if (fresh && h.ch_seq > 0) {
		log_info("audit: the log's %llu entries from before the audit key stay unkeyed; "
		         "entries after them are keyed",
		    (unsigned long long) h.ch_seq);
	}
	if ((st = cp_append(a, &h, fresh)) != HV_OK) {
		log_error("audit: cannot write a checkpoint to %s", a->a_cpath);
	}
out:
	pthread_mutex_unlock(&a->a_cpmtx);
	return (st);
}

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
	if ((st = head_read(j->bj_audit, txn, &h)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < j->bj_n; i++) {
		if ((st = append_after(j->bj_audit, txn, &j->bj_entries[i], &h)) != HV_OK) {
			return (st);
		}
	}
	return (head_write(j->bj_audit, txn, &h));
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
	ms = (WRITER_LINGER_FACTOR * a->a_commit_us + 999) / 1000;
	a->a_linger_ms = ms < AUDIT_LINGER_MIN_MS ? AUDIT_LINGER_MIN_MS
	               : ms > AUDIT_LINGER_MAX_MS ? AUDIT_LINGER_MAX_MS
	                                          : (unsigned) ms;
}

static void *
writer_main(void *arg)
{
	audit      *a = arg;
	audit_entry *batch;
	batch_job   j = { a, NULL, 0 };

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
			cp_maybe(a);
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
		t0 = hv_clock_mono_us();
		st = a->a_qerr == HV_OK ? store_write(a->a_store, batch_fn, &j) : a->a_qerr;
		took = (uint64_t) (hv_clock_mono_us() - t0);
		pthread_mutex_lock(&a->a_qmtx);
		/* A checkpoint (after the commit, so that it pins a committed head) costs an
		 * fsync: not while the queue is more than half full, lest Checks find it full. */
		if (st == HV_OK && a->a_qlen < AUDIT_QUEUE_MAX / 2) {
			pthread_mutex_unlock(&a->a_qmtx);
			cp_maybe(a);
			pthread_mutex_lock(&a->a_qmtx);
		}
		if (st == HV_OK) {
			linger_adapt(a, took);
		}
		if (st != HV_OK && a->a_qerr == HV_OK) {
			a->a_qerr = st;
			log_error("audit: %zu queued entries could not be written (%s); accesses that "
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

	if (!field_ok(e->org, sizeof(e->org), false) ||
	    !field_ok(e->method, sizeof(e->method), false) ||
	    !field_ok(e->subject, sizeof(e->subject), true) ||
	    !field_ok(e->purpose, sizeof(e->purpose), false) ||
	    !field_ok(e->person, sizeof(e->person), true)) {
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
	return (entry_decode(v, vl, e, &bodylen) == 0 && e->seq == seq ? HV_OK : HV_DATA_LOSS);
}

/* The walk of the chain: what audit_verify carries from one entry to the next. */
typedef struct chain_walk {
	uint64_t cw_expected;              /* the next seq */
	uint64_t cw_boundary;              /* entries after it must be keyed */
	bool     cw_keyed;                 /* a keyed entry was seen */
	uint8_t  cw_prev[AUDIT_HASH_LEN];  /* the hash of the entry before */
} chain_walk;

/* Checks one entry of the log (its key k) against the walk so far and the subject index. */
static hv_status
verify_entry(audit *a, store_txn *txn, audit_verify_result *out, chain_walk *w,
    const void *k, size_t kl, const uint8_t *v, size_t vl)
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
	if (entry_decode(v, vl, &e, &bodylen) != 0) {
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
	entry_hash(a, e.prev_hash, v, bodylen, h);
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
		    index_key(skey, kseq, e.subject, strlen(e.subject)), &iv, &ivl);
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
	if (cp_file_line(cf, line, sizeof(line)) != NULL && cp_parse(line, a->a_pub, &cp) == 0) {
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

	if ((rc = cp_parse(line, a->a_pub, &cp)) != 0) {
		return (bad(out, at, rc == -1 ? "checkpoint line %zu does not parse"
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
		    "entries %llu to %llu were removed (checkpoint line %zu saw the log up to %llu)",
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

/* Every line of the checkpoint file (up to its limit) against the log. */
static hv_status
verify_checkpoints(audit *a, store_txn *txn, audit_verify_result *out, cp_file *cf)
{
	char      line[CP_LINE_MAX];
	size_t    n  = 0;
	hv_status st = HV_OK;

	if (cf->cf_f == NULL) {
		return (out->entries == 0 ? HV_OK
		                          : bad(out, 1, "the checkpoint file is missing (%llu entries)",
		                                (unsigned long long) out->entries));
	}
	while (st == HV_OK && cp_file_line(cf, line, sizeof(line)) != NULL) {
		st = verify_checkpoint(a, txn, out, line, ++n);
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

/* Every row of the subject index must name an entry of the log about that subject, in the
 * right window. (verify_entry checked the other way: every such entry has its row.) */
static hv_status
verify_index(audit *a, store_txn *txn, audit_verify_result *out)
{
	store_cursor *c = NULL;
	const void   *k;
	size_t        kl;
	audit_entry   e;
	hv_status     st, rc;

	if ((st = store_cursor_open(txn, a->a_subject, &c)) != HV_OK) {
		return (st);
	}
	for (rc = store_cursor_seek(c, NULL, 0, &k, &kl, NULL, NULL); rc == HV_OK;
	     rc = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		const uint8_t *p  = k;
		size_t         sl = kl >= 8 + 2 + 8 ? kl - 8 - 1 - 8 : 0;
		uint64_t       seq = kl >= 8 ? hv_get_be64(p + kl - 8) : 0;

		if (sl == 0 || sl >= AUDIT_SUBJECT_MAX || p[8 + sl] != 0 ||
		    hv_get_be64(p) != seq >> WINDOW_BITS) {
			st = bad(out, seq != 0 ? seq : 1, "a row of the subject index does not decode");
			goto out;
		}
		if ((rc = get_entry(a, txn, seq, &e)) != HV_OK && rc != HV_DATA_LOSS) {
			st = rc;
			goto out;
		}
		if (rc != HV_OK || strlen(e.subject) != sl || memcmp(e.subject, p + 8, sl) != 0) {
			st = bad(out, seq,
			    "the subject index names entry %llu for a subject it is not about (a row "
			    "was added or changed)",
			    (unsigned long long) seq);
			goto out;
		}
	}
	st = rc == HV_NOT_FOUND ? HV_OK : rc;
out:
	store_cursor_close(c);
	return (st);
}

hv_status
audit_verify(audit *a, audit_verify_result *out)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	cp_file       cf  = { NULL, 0 };
	chain_walk    w;
	bool          found;
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st, rc;

	memset(out, 0, sizeof(*out));
	memset(&w, 0, sizeof(w));
	w.cw_expected = 1;
	if ((st = cp_file_open(a, &cf)) != HV_OK) {
		goto out;
	}
	cp_boundary(a, &cf, &w.cw_boundary, &found);
	if (!found) {
		w.cw_boundary = UINT64_MAX; /* verify_checkpoints reports the file */
	}
	/* After the file's size was taken (cp_file). */
	if ((st = store_read_begin(a->a_store, &txn)) != HV_OK) {
		goto out;
	}
	if ((st = store_cursor_open(txn, a->a_log, &c)) != HV_OK) {
		goto out;
	}
	for (rc = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); rc == HV_OK;
	     rc = store_cursor_next(c, &k, &kl, &v, &vl)) {
		if ((st = verify_entry(a, txn, out, &w, k, kl, v, vl)) != HV_OK) {
			goto out;
		}
	}
	if (rc != HV_NOT_FOUND) {
		st = rc;
		goto out;
	}
	store_cursor_close(c);
	c = NULL;
	if ((st = verify_head(a, txn, out, &w)) != HV_OK ||
	    (st = verify_checkpoints(a, txn, out, &cf)) != HV_OK ||
	    (st = verify_index(a, txn, out)) != HV_OK) {
		goto out;
	}
	st = HV_OK;
out:
	store_cursor_close(c);
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
list_subject(audit *a, store_txn *txn, const char *subject, uint64_t after_seq,
    audit_entry *out, size_t max, size_t *n)
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
		uint64_t from = w == (after_seq + 1) >> WINDOW_BITS ? after_seq + 1 : w << WINDOW_BITS;

		klen = index_key(key, from, subject, sl);
		for (rc = store_cursor_seek(c, key, klen, &k, &kl, NULL, NULL); rc == HV_OK && *n < max;
		     rc = store_cursor_next(c, &k, &kl, NULL, NULL)) {
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
	        (subject[0] == '\0' || !field_ok(subject, AUDIT_SUBJECT_MAX, true)))) {
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
		if (kl != 8 || entry_decode(v, vl, &out[*n], &bodylen) != 0) {
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

void
audit_hash_hex(const uint8_t hash[AUDIT_HASH_LEN], char out[2 * AUDIT_HASH_LEN + 1])
{
	hex_put(out, hash, AUDIT_HASH_LEN);
}

hv_status
audit_entry_decode(const void *value, size_t len, audit_entry *out)
{
	size_t bodylen;

	if (value == NULL || out == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	return (entry_decode(value, len, out, &bodylen) == 0 ? HV_OK : HV_DATA_LOSS);
}
