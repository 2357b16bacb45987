/*
 * audit.h - the node's append-only, hash-chained audit log of reads and writes of personal
 * data and consent.
 *
 * Every service that touches personal data or consent appends one entry per access, inside the
 * write transaction of the access itself (audit_append), so that the access and its entry
 * commit together or not at all. An access that fails after the caller was identified is
 * recorded with its own transaction (audit_record), so that attempts are visible too.
 *
 * An entry holds ids and codes only, never personal data: who (organisation and role, and the
 * person's id when a person of the organisation signed in: services/people), when,
 * what (method), about whom (the subject's pseudonymous id), why (purpose) and how it ended (a
 * status code). Entries are chained: each carries the hash of the one before it, and its own
 * hash covers that, so that changing, removing or reordering any entry breaks the chain at
 * that entry, which audit_verify names.
 *
 * The chain is keyed: an entry's hash is an HMAC under a key kept outside the store, so that
 * someone who can write the store but not read the key cannot recompute the chain after
 * changing an entry. And the head is pinned outside the store: signed checkpoints (seq and
 * hash of the head, Ed25519) are appended to a file beside the store and logged, so that
 * cutting the tail and moving the head record back is seen too. docs/audit.md says what an
 * attacker with the store alone, and with the store and the keys, can and cannot hide.
 *
 * Outside the store, in the node's data directory DATA:
 *   DATA/keys/audit-ed25519.pem  the audit key (PKCS#8 Ed25519, 0600), made at the first
 *                                open: it signs the checkpoints, and the chain's HMAC key is
 *                                derived from it (HMAC-SHA256(secret, "haven audit chain key
 *                                v1")). Back it up with the other keys.
 *   DATA/audit.checkpoints       one line per checkpoint, appended (O_APPEND, fsync), never
 *                                rewritten: "v1 SEQ HASH TIME_MS SIG" (decimal, 64 hex
 *                                characters, decimal, 128 hex characters), SIG an Ed25519
 *                                signature of "haven audit checkpoint v1" || 0x00 || be64 SEQ
 *                                || HASH || be64 TIME_MS. The first line is the boundary: the
 *                                entries up to its SEQ may be legacy (unkeyed, version 1, from
 *                                before the key existed), every later one must be keyed.
 *
 * Tables (in the node's one LMDB environment):
 *   audit.log         be64 seq                      -> entry (binary, below)
 *   audit.head        "head"                        -> be64 seq || hash of the last entry
 *   audit.head        "index"                       -> "window-10" (the index below is built)
 *   audit.by_window   be64 (seq >> 10) || subject || 0x00 || be64 seq -> ""
 *                     (lookup aid for audit_list: the entries of a subject, window by window
 *                     of 1024 seqs, so that appends touch the few pages of the last window)
 *
 * The encoding of an entry (all integers big-endian, strings as a length byte and the bytes):
 *
 *   body  = version (1 byte) || seq (8) || time_ms (8, signed) || role (4) ||
 *           str(org) || str(method) || str(subject) || str(purpose) || str(person) ||
 *           result (4, signed)                          version 3, what is written
 *   body  = the same without str(person)                version 2 (keyed, before people)
 *   value = body || prev_hash (32) || hash (32)
 *   hash  = HMAC-SHA256(chain key, prev_hash || body)   versions 3 and 2 (keyed)
 *   hash  = SHA-256(prev_hash || body)                  version 1 (legacy), only verified
 *
 * The first entry has seq 1 and a prev_hash of 32 zero bytes. A legacy entry's hash is still
 * covered by the first keyed entry after it (its prev_hash), so the legacy part of a migrated
 * chain cannot be changed either once a keyed entry follows it.
 */
#ifndef HAVEN_AUDIT_H
#define HAVEN_AUDIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/rpc.h"
#include "haven/status.h"
#include "haven/store.h"

#define AUDIT_HASH_LEN    32
#define AUDIT_METHOD_MAX  128 /* including the NUL */
#define AUDIT_SUBJECT_MAX 64  /* an id: printable ASCII without spaces, including the NUL */
#define AUDIT_PURPOSE_MAX 64  /* including the NUL */
#define AUDIT_WHY_MAX     256
#define AUDIT_LIST_MAX    1000 /* entries per audit_list call */

typedef struct audit_entry {
	uint64_t seq;                      /* set by audit_append */
	int64_t  time_ms;                  /* Unix time; 0: audit_append sets the real clock */
	rpc_role role;                     /* the caller's role */
	char     org[RPC_ORG_ID_MAX];      /* the caller's organisation; "" for the operator */
	char     method[AUDIT_METHOD_MAX]; /* full method name, "haven.consent.v1.Consent/Check" */
	char     subject[AUDIT_SUBJECT_MAX]; /* the subject's id; "" when none */
	char     purpose[AUDIT_PURPOSE_MAX]; /* why: "referral", "share-with-provider", ... or "" */
	char     person[RPC_PERSON_ID_MAX];  /* the caller's person (rpc_caller.person.id); "" when
	                                        the caller was not a person (version 2: always) */
	int32_t result;                      /* an hv_status: how the access ended */
	uint8_t prev_hash[AUDIT_HASH_LEN];   /* set by audit_append */
	uint8_t hash[AUDIT_HASH_LEN];        /* set by audit_append */
} audit_entry;

typedef struct audit audit;

/* Opens the audit tables of a store (at start-up, like store_table_open) and the audit key and
 * checkpoint file in data_dir (the node's data directory: DATA above), making the key (and
 * DATA/keys, 0700) on the first open. Then it writes a checkpoint of the head; when the
 * checkpoint file does not exist yet it is made, but only when this open made the key and the
 * log holds no keyed entry (otherwise the file was removed: that is logged, audit_verify
 * reports it, and no new file is started).
 * HV_PERMISSION_DENIED when DATA/keys or the key is open to other users, HV_DATA_LOSS when the
 * key file holds no Ed25519 key. *out is the caller's; close it with audit_close() (it stops
 * the writer thread, if started, after the queue is written: while the store is open; stop
 * the writer with audit_writer_stop first when the store closes before audit_close). */
hv_status audit_open(audit **out, store *s, const char *data_dir);
void      audit_close(audit *a);

/* Appends e inside the caller's write transaction: sets e->seq, e->prev_hash and e->hash
 * (and e->time_ms when 0). HV_INVALID_ARGUMENT for a string that is too long or not printable
 * ASCII (subject: no spaces either), or a read transaction (HV_FAILED_PRECONDITION, from the
 * store). Other failures are the store's. */
hv_status audit_append(audit *a, store_txn *txn, audit_entry *e);

/* Appends e in a write transaction of its own (for accesses that failed, whose own
 * transaction was rolled back). */
hv_status audit_record(audit *a, audit_entry *e);

/*
 * Appends that do not wait for a commit, for reads on a hot path (consent Check). The entry is
 * copied into a bounded queue (AUDIT_QUEUE_MAX); one writer thread appends what is queued in
 * order, many entries per transaction, so one fsync carries a whole batch. audit_enqueue
 * returns as soon as the entry is queued, before it is durable. The writer lets a batch gather
 * for a while after its first entry (less when many entries wait or someone flushes): 15 times
 * its recent commit time, at least AUDIT_LINGER_MIN_MS and at most AUDIT_LINGER_MAX_MS, so that
 * it spends at most a sixteenth of its time committing (audit.c says why).
 * audit_writer_linger_ms tells the current linger. A crash loses at most the entries of the
 * last linger and of the commit under way, never one of an access appended with audit_append.
 * audit_enqueue blocks while the queue is full. Once the writer failed to commit,
 * audit_enqueue returns that failure from then on, so that the caller refuses to answer rather
 * than answer unaudited.
 *
 * audit_writer_start starts the writer (once; before the first audit_enqueue). audit_flush
 * waits until every entry queued before it is durable. audit_writer_stop writes what is
 * queued and stops the writer; enqueueing then fails (HV_FAILED_PRECONDITION). Call it while
 * the store is still open; audit_close does it too. Safe to repeat.
 * audit_try_enqueue never waits: HV_RESOURCE_EXHAUSTED when the queue is full (for callers
 * that must not block, such as inline RPC handlers). HV_FAILED_PRECONDITION without a
 * writer, HV_INVALID_ARGUMENT for fields as in audit_append. */
#define AUDIT_QUEUE_MAX     8192
#define AUDIT_LINGER_MIN_MS 5
#define AUDIT_LINGER_MAX_MS 100
hv_status audit_writer_start(audit *a);
void      audit_writer_stop(audit *a);
hv_status audit_enqueue(audit *a, const audit_entry *e);
hv_status audit_try_enqueue(audit *a, const audit_entry *e);
hv_status audit_flush(audit *a);
unsigned  audit_writer_linger_ms(audit *a);

/*
 * Checkpoints. audit_checkpoint appends a signed checkpoint of the committed head to
 * DATA/audit.checkpoints (and logs it) unless this handle's last checkpoint already has that
 * head. It reads the head in a read transaction of its own: never call it from a write
 * function. Checkpoints are also written by the writer thread, after a commit and when idle,
 * at most every AUDIT_CHECKPOINT_MS (not while its queue is more than half full: the fsync
 * could let it fill); by audit_record after its commit, at the same rate; by audit_verify
 * after a chain found intact; and by audit_writer_stop when it stopped the writer (the last
 * head). What was appended since the last checkpoint can be cut from the tail unseen by
 * someone who can write the store (at most AUDIT_CHECKPOINT_MS of entries).
 * HV_FAILED_PRECONDITION when the checkpoint file is missing (see audit_open); I/O failures
 * as errno says.
 */
#define AUDIT_CHECKPOINT_MS 10000
hv_status audit_checkpoint(audit *a);

/* What audit_verify found. */
typedef struct audit_verify_result {
	uint64_t entries;                   /* entries read */
	uint64_t checkpoints;               /* checkpoint lines read (all signed correctly) */
	uint64_t checkpoint_seq;            /* the highest seq a checkpoint names */
	uint64_t keyed_from;                /* entries after this seq are keyed (the boundary) */
	uint64_t head_seq;                  /* the last entry's seq, per the head record */
	uint8_t  head_hash[AUDIT_HASH_LEN]; /* and its hash */
	uint64_t first_bad_seq;             /* 0 when the chain is intact */
	char     why[AUDIT_WHY_MAX];        /* what is wrong with it; "" when intact */
} audit_verify_result;

/* Walks the whole chain in one read transaction and recomputes every hash (the HMAC of a keyed
 * entry, the SHA-256 of a legacy one, which may only come before the boundary); checks each
 * checkpoint's signature and that the log still holds its entry with its hash (a log shorter
 * than a checkpoint was cut); and checks the subject index against the log both ways (every
 * entry about a subject has its row, every row names such an entry). HV_OK when all of that
 * holds (a checkpoint of the head is then written); HV_DATA_LOSS when not: out->first_bad_seq
 * is the entry where it broke and out->why says what was found there, in seqs and line
 * numbers only (never a subject). Other failures are the store's or the file's. */
hv_status audit_verify(audit *a, audit_verify_result *out);

/* audit_verify that ends early, with HV_CANCELLED and no checkpoint, once *stop is true (looked
 * at every few thousand entries): for a verification on a thread of its own that must not hold
 * up a shutdown. stop may be NULL. */
hv_status audit_verify_until(audit *a, const atomic_bool *stop, audit_verify_result *out);

/* Reads up to max (at most AUDIT_LIST_MAX) entries with seq > after_seq, in order, into out;
 * only those about subject when subject is not NULL. *n gets the number read. txn may be a
 * read or a write transaction. */
hv_status audit_list(audit *a, store_txn *txn, const char *subject, uint64_t after_seq,
    audit_entry *out, size_t max, size_t *n);

/* Fills the caller's part of an entry (role, organisation, person) from the verified caller. */
void audit_entry_caller(audit_entry *e, const rpc_caller *caller);

/* A whole entry of a call that succeeded: the caller's part, method, subject and purpose (NULL:
 * empty; each cut to its field), at now_ms, result HV_OK; the rest zero. */
void audit_entry_fill(audit_entry *e, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, int64_t now_ms);

/* Decodes one stored value of audit.log (the encoding above) into *out, as audit_list and
 * audit_verify read it: HV_DATA_LOSS when it is malformed (a version other than 1, 2 or 3, a
 * string running past the end or too long for its field, bytes missing or left over), with
 * *out zeroed or partly set. The hashes are copied, not checked. For tools and the fuzzing
 * harness (fuzz/fuzz_audit.c). */
hv_status audit_entry_decode(const void *value, size_t len, audit_entry *out);

/* The hex encoding of a hash (64 characters and a NUL). */
void audit_hash_hex(const uint8_t hash[AUDIT_HASH_LEN], char out[2 * AUDIT_HASH_LEN + 1]);

#endif
