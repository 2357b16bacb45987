/*
 * audit_internal.h - what the files of the audit log share (private to libhaven). They call
 * downward only: audit.c (open, close, append, record, the key, the subject index) ->
 * audit_writer.c (the queue), audit_verify.c (verify, list) -> audit_checkpoint.c ->
 * audit_log.c (the encoding, the head, appending one entry).
 */
#ifndef HAVEN_AUDIT_INTERNAL_H
#define HAVEN_AUDIT_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/audit.h"
#include "haven/crypto.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AUDIT_VERSION        3 /* keyed, with the person: what is written */
#define AUDIT_VERSION_KEYED  2 /* keyed, from before people: verified, never written */
#define AUDIT_VERSION_LEGACY 1 /* unkeyed SHA-256, from before the key: verified, never written */
#define KEY_FILE             "audit-ed25519.pem" /* in DATA/keys */
#define KEY_PEM_MAX          4096
#define CHECKPOINT_FILE      "audit.checkpoints" /* in DATA */
#define CHAIN_KEY_LABEL      "haven audit chain key v1"
#define CP_LABEL             "haven audit checkpoint v1" /* signed with its NUL, as a separator */
#define CP_MSG_LEN           (sizeof(CP_LABEL) + 8 + AUDIT_HASH_LEN + 8)
#define CP_LINE_MAX          320 /* "v1 seq hash time sig\n" is at most 238 characters */
#define HEAD_KEY             "head"
#define HEAD_LEN             (8 + AUDIT_HASH_LEN)
/* version, seq, time, role, five strings with their length bytes, result */
#define BODY_MAX                                                                                   \
	(1 + 8 + 8 + 4 + RPC_ORG_ID_MAX + AUDIT_METHOD_MAX + AUDIT_SUBJECT_MAX +                   \
	    AUDIT_PURPOSE_MAX + RPC_PERSON_ID_MAX + 4)
#define VALUE_MAX (BODY_MAX + 2 * AUDIT_HASH_LEN)
/* audit.by_window: be64 window || subject || 0x00 || be64 seq */
#define SUBJECT_KEY_MAX (8 + AUDIT_SUBJECT_MAX + 8)
/* Entries per window of the subject index: appends touch only the leaf pages of the current
 * window (a few dozen), not one random page of an index over every subject each; a lookup by
 * subject seeks once per window. */
#define WINDOW_BITS   10
#define INDEX_KEY     "index" /* in audit.head: the index's layout, once it is built */
#define INDEX_LAYOUT  "window-10"
#define REBUILD_BATCH 10000 /* log entries indexed per transaction when (re)building */

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
	crypto_hmac_key *a_key;                      /* the chain's HMAC key, prepared */
	uint8_t a_secret[CRYPTO_ED25519_SECRET_LEN]; /* signs checkpoints; wiped at close */
	uint8_t a_pub[CRYPTO_ED25519_PUBLIC_LEN];
	char    a_cpath[PATH_MAX]; /* DATA/audit.checkpoints */

	/* This handle's checkpoints; a_cpmtx guards these and the file appends. */
	pthread_mutex_t a_cpmtx;
	bool            a_cp_any;    /* it wrote one */
	uint64_t        a_cp_seq;    /* the seq of its last one */
	int64_t         a_cp_at;     /* when it last tried (hv_clock_mono_ms) */
	bool            a_cp_warned; /* a failure was logged */

	/* The queue of audit_enqueue: a ring, its writer, and counters that audit_flush
	 * waits on. a_qmtx guards all of it; never held across a store call. */
	pthread_mutex_t a_qmtx;
	pthread_cond_t  a_qcond; /* for enqueuers waiting for room and flushers */
	pthread_cond_t  a_wcond; /* for the writer */
	audit_entry    *a_ring;
	size_t          a_qhead, a_qlen;
	uint64_t        a_queued;    /* entries ever enqueued */
	uint64_t        a_written;   /* of those, committed */
	unsigned        a_waiters;   /* threads waiting on a_qcond */
	unsigned        a_flushes;   /* flushers waiting: the writer does not linger */
	uint64_t        a_commit_us; /* the writer's commit time, a moving average */
	unsigned        a_linger_ms; /* how long the next batch gathers after its first entry */
	hv_status       a_qerr;      /* the writer's failure; sticky */
	bool            a_writer, a_stop;
	pthread_t       a_thread;
};

/* The chain's head: the last entry's seq (0: none yet) and hash. */
typedef struct chain_head {
	uint64_t ch_seq;
	uint8_t  ch_hash[AUDIT_HASH_LEN];
} chain_head;

/* A checkpoint line, parsed. */
typedef struct checkpoint {
	uint64_t cp_seq;
	uint8_t  cp_hash[AUDIT_HASH_LEN];
	uint64_t cp_time_ms;
} checkpoint;

/* Printable ASCII (no spaces when strict), shorter than max. */
bool audit__field_ok(const char *s, size_t max, bool strict);
/* Encodes the body of e into buf (BODY_MAX bytes); returns its length. */
size_t audit__body_encode(const audit_entry *e, uint8_t *buf);
/* The hash of a body: HMAC under the chain key (versions 2, 3) or SHA-256 (1). */
void audit__entry_hash(const audit *a, const uint8_t prev[AUDIT_HASH_LEN], const uint8_t *body,
    size_t n, uint8_t out[AUDIT_HASH_LEN]);
/* Decodes a stored value; *bodylen gets its body's length. -1 when malformed. */
int audit__entry_decode(const uint8_t *v, size_t len, audit_entry *e, size_t *bodylen);
/* The subject index key of (seq, subject); returns its length. */
size_t audit__index_key(uint8_t key[SUBJECT_KEY_MAX], uint64_t seq, const char *subject, size_t sl);
/* The chain's head as recorded in txn (seq 0 when empty). */
hv_status audit__head_read(audit *a, store_txn *txn, chain_head *h);
/* Records h as the head in txn. */
hv_status audit__head_write(audit *a, store_txn *txn, const chain_head *h);
/* Appends e after head h (advanced to e); the caller writes the head once. */
hv_status audit__append_after(audit *a, store_txn *txn, audit_entry *e, chain_head *h);
/* Lower-case hex of n bytes and a NUL. */
void audit__hex_put(char *out, const uint8_t *p, size_t n);
/* Exactly 2n lower-case hex characters: 0, else -1. */
int audit__hex_get(const char *s, uint8_t *out, size_t n);
/* A canonical decimal: 0, else -1. */
int audit__dec_get(const char *s, uint64_t *out);
/* A checkpoint line, its signature checked: 0; -1 unparsable, -2 not signed by pub. */
int audit__cp_parse(char *line, const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], checkpoint *cp);
/* The committed head, in a read transaction of its own. */
hv_status audit__committed_head(audit *a, chain_head *h);
/* Appends a signed checkpoint of h (create: the file may be made). */
hv_status audit__cp_append(audit *a, const chain_head *h, bool create);
/* A checkpoint of the committed head, at most every AUDIT_CHECKPOINT_MS. */
void audit__cp_maybe(audit *a);
/* At open: a checkpoint of the head (audit.h says when the file is made). */
hv_status audit__cp_open(audit *a, bool key_created);
/* Writes all of data to fd (EINTR retried). */
hv_status audit__write_all(int fd, const void *data, size_t len);
/* Builds the subject index when missing. */
hv_status audit__index_prepare(audit *a);

#endif
