/*
 * audit_test.c - the hash-chained audit log: appends in the caller's transaction, listing by
 * subject, and verification that names the first entry that was changed, replaced, removed or
 * reordered, whichever way the raw LMDB table was tampered with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "haven/bytes.h"
#include "haven/audit.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/store.h"

#define N_ENTRIES 10

static char base[512];
static int  dirno;

typedef struct fixture {
	char        data[600]; /* the data directory: keys/, audit.checkpoints, store/ */
	char        dir[700];  /* the store */
	store      *s;
	audit      *a;
	store_table log; /* raw access, to tamper with */
	store_table head;
} fixture;

/* Removes dir and everything below it (the test directories are two levels deep at most). */
static void
rm_tree(const char *dir)
{
	DIR           *d = opendir(dir);
	struct dirent *e;
	struct stat    st;
	char           p[1024];

	if (d == NULL) {
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
			continue;
		}
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
			rm_tree(p);
		} else {
			(void) unlink(p);
		}
	}
	closedir(d);
	(void) rmdir(dir);
}

static void
fixture_open(fixture *f)
{
	store_options o = { .no_sync = true };

	snprintf(f->data, sizeof(f->data), "%s/d%d", base, dirno++);
	snprintf(f->dir, sizeof(f->dir), "%s/store", f->data);
	assert_int_equal(mkdir(f->data, 0700), 0);
	assert_int_equal(store_open(&f->s, f->dir, &o), HV_OK);
	assert_int_equal(audit_open(&f->a, f->s, f->data), HV_OK);
	assert_int_equal(store_table_open(f->s, "audit.log", &f->log), HV_OK);
	assert_int_equal(store_table_open(f->s, "audit.head", &f->head), HV_OK);
}

static void
fixture_close(fixture *f)
{
	audit_close(f->a);
	store_close(f->s);
	rm_tree(f->data);
}

static void
entry_fill(audit_entry *e, unsigned i)
{
	memset(e, 0, sizeof(*e));
	e->time_ms = 1700000000000 + (int64_t) i;
	e->role    = i % 2 ? RPC_ROLE_PROVIDER : RPC_ROLE_OPERATOR;
	snprintf(e->org, sizeof(e->org), "%s", i % 2 ? "shelter-a" : "");
	snprintf(e->method, sizeof(e->method), "haven.consent.v1.Consent/%s",
	    i % 3 ? "Check" : "GetSubject");
	snprintf(e->subject, sizeof(e->subject), "%032x", i % 3);
	snprintf(e->purpose, sizeof(e->purpose), "share-with-provider");
	e->result = i % 4 == 0 ? HV_PERMISSION_DENIED : HV_OK;
}

/* N_ENTRIES entries, seq 1..N_ENTRIES, each appended by audit_record. */
static void
fill(fixture *f)
{
	for (unsigned i = 1; i <= N_ENTRIES; i++) {
		audit_entry e;
		entry_fill(&e, i);
		assert_int_equal(audit_record(f->a, &e), HV_OK);
		assert_int_equal(e.seq, i);
	}
}

/* Raw table edits, as someone with write access to the LMDB file could make them. */
typedef struct raw_op {
	fixture *f;
	uint64_t a, b;
	int      kind; /* 0 flip a byte, 1 delete, 2 swap, 3 replace with a rehashed copy */
	size_t   byte;
} raw_op;

static hv_status
raw_fn(store_txn *txn, void *arg)
{
	raw_op     *op = arg;
	uint8_t     ka[8], kb[8];
	uint8_t     va[512], vb[512];
	const void *v;
	size_t      la, lb;
	hv_status   st;

	hv_put_be64(ka, op->a);
	hv_put_be64(kb, op->b);
	if ((st = store_get(txn, op->f->log, ka, 8, &v, &la)) != HV_OK) {
		return (st);
	}
	memcpy(va, v, la);
	switch (op->kind) {
	case 0:
		va[op->byte % la] ^= 0x20;
		return (store_put(txn, op->f->log, ka, 8, va, la));
	case 1:
		return (store_del(txn, op->f->log, ka, 8));
	case 2:
		if ((st = store_get(txn, op->f->log, kb, 8, &v, &lb)) != HV_OK) {
			return (st);
		}
		memcpy(vb, v, lb);
		if ((st = store_put(txn, op->f->log, ka, 8, vb, lb)) != HV_OK) {
			return (st);
		}
		return (store_put(txn, op->f->log, kb, 8, va, la));
	default: {
		/* Change the result code (the last 4 bytes of the body) and recompute the entry's
		 * own hash, as a careful forger would. */
		size_t  body = la - 2 * AUDIT_HASH_LEN;
		uint8_t buf[600];
		va[body - 1] ^= 0x01;
		memcpy(buf, va + body, AUDIT_HASH_LEN);
		memcpy(buf + AUDIT_HASH_LEN, va, body);
		crypto_sha256(va + body + AUDIT_HASH_LEN, buf, AUDIT_HASH_LEN + body);
		return (store_put(txn, op->f->log, ka, 8, va, la));
	}
	}
}

static void
tamper(fixture *f, int kind, uint64_t a, uint64_t b, size_t byte)
{
	raw_op op = { f, a, b, kind, byte };

	assert_int_equal(store_write(f->s, raw_fn, &op), HV_OK);
}

static void
expect_bad(fixture *f, uint64_t seq, const char *why)
{
	audit_verify_result r;

	assert_int_equal(audit_verify(f->a, &r), HV_DATA_LOSS);
	if (r.first_bad_seq != seq || strstr(r.why, why) == NULL) {
		fail_msg("expected entry %llu (%s), got %llu: %s", (unsigned long long) seq, why,
		    (unsigned long long) r.first_bad_seq, r.why);
	}
}

static void
test_append_and_verify(void **state)
{
	fixture             f;
	audit_verify_result r;
	char                hex[2 * AUDIT_HASH_LEN + 1];

	(void) state;
	fixture_open(&f);
	/* An empty log is intact. */
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, 0);
	fill(&f);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, N_ENTRIES);
	assert_int_equal(r.head_seq, N_ENTRIES);
	assert_int_equal(r.first_bad_seq, 0);
	assert_string_equal(r.why, "");
	audit_hash_hex(r.head_hash, hex);
	assert_int_equal(strlen(hex), 64);

	/* It survives closing and opening the store. */
	audit_close(f.a);
	store_close(f.s);
	{
		store_options o = { .no_sync = true };
		assert_int_equal(store_open(&f.s, f.dir, &o), HV_OK);
		assert_int_equal(audit_open(&f.a, f.s, f.data), HV_OK);
	}
	{
		audit_verify_result r2;
		audit_entry         e;
		assert_int_equal(audit_verify(f.a, &r2), HV_OK);
		assert_memory_equal(r2.head_hash, r.head_hash, AUDIT_HASH_LEN);
		entry_fill(&e, 11);
		assert_int_equal(audit_record(f.a, &e), HV_OK);
		assert_int_equal(e.seq, N_ENTRIES + 1);
		assert_memory_equal(e.prev_hash, r.head_hash, AUDIT_HASH_LEN);
	}
	fixture_close(&f);
}

static void
test_changed_byte(void **state)
{
	(void) state;
	/* Every byte of entry 5, one at a time: the seq bytes make it look out of place, all
	 * others change its hash; either way entry 5 is named. */
	for (size_t byte = 0; byte < 200; byte += 3) {
		fixture f;
		fixture_open(&f);
		fill(&f);
		tamper(&f, 0, 5, 0, byte);
		{
			audit_verify_result r;
			assert_int_equal(audit_verify(f.a, &r), HV_DATA_LOSS);
			if (r.first_bad_seq != 5) {
				fail_msg("byte %zu: named %llu: %s", byte,
				    (unsigned long long) r.first_bad_seq, r.why);
			}
		}
		fixture_close(&f);
	}
}

static void
test_removed_reordered_replaced(void **state)
{
	fixture f;

	(void) state;
	fixture_open(&f);
	fill(&f);
	tamper(&f, 1, 5, 0, 0);
	expect_bad(&f, 5, "entry 5 was removed");
	fixture_close(&f);

	fixture_open(&f);
	fill(&f);
	tamper(&f, 1, 1, 0, 0);
	expect_bad(&f, 1, "entry 1 was removed");
	fixture_close(&f);

	/* The last one: only the head record can tell. */
	fixture_open(&f);
	fill(&f);
	tamper(&f, 1, N_ENTRIES, 0, 0);
	expect_bad(&f, N_ENTRIES, "were removed");
	fixture_close(&f);

	fixture_open(&f);
	fill(&f);
	tamper(&f, 2, 5, 6, 0);
	expect_bad(&f, 5, "position 5 holds entry 6");
	fixture_close(&f);

	fixture_open(&f);
	fill(&f);
	tamper(&f, 2, 2, 9, 0);
	expect_bad(&f, 2, "position 2 holds entry 9");
	fixture_close(&f);

	/* Rewritten with the unkeyed hash of the old chain recomputed: without the key the
	 * entry's own hash cannot be made to match. */
	fixture_open(&f);
	fill(&f);
	tamper(&f, 3, 5, 0, 0);
	expect_bad(&f, 5, "entry 5 was changed (its hash does not match)");
	fixture_close(&f);

	fixture_open(&f);
	fill(&f);
	tamper(&f, 3, N_ENTRIES, 0, 0);
	expect_bad(&f, N_ENTRIES, "entry 10 was changed");
	fixture_close(&f);
}

static void
test_list(void **state)
{
	fixture     f;
	audit_entry out[AUDIT_LIST_MAX];
	store_txn  *txn;
	size_t      n;
	char        subj[40];

	(void) state;
	fixture_open(&f);
	fill(&f);
	assert_int_equal(store_read_begin(f.s, &txn), HV_OK);
	/* All, then in pages. */
	assert_int_equal(audit_list(f.a, txn, NULL, 0, out, AUDIT_LIST_MAX, &n), HV_OK);
	assert_int_equal(n, N_ENTRIES);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(out[i].seq, i + 1);
	}
	assert_string_equal(out[0].org, "shelter-a");
	assert_int_equal(out[0].role, RPC_ROLE_PROVIDER);
	assert_string_equal(out[0].method, "haven.consent.v1.Consent/Check");
	assert_string_equal(out[0].purpose, "share-with-provider");
	assert_int_equal(out[0].time_ms, 1700000000001);
	assert_int_equal(audit_list(f.a, txn, NULL, 7, out, 2, &n), HV_OK);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].seq, 8);
	assert_int_equal(out[1].seq, 9);
	/* By subject: i % 3 == 1 for i in 1..10 is 1, 4, 7, 10. */
	snprintf(subj, sizeof(subj), "%032x", 1);
	assert_int_equal(audit_list(f.a, txn, subj, 0, out, AUDIT_LIST_MAX, &n), HV_OK);
	assert_int_equal(n, 4);
	assert_int_equal(out[0].seq, 1);
	assert_int_equal(out[3].seq, 10);
	assert_int_equal(out[3].result, HV_OK);
	assert_int_equal(audit_list(f.a, txn, subj, 4, out, AUDIT_LIST_MAX, &n), HV_OK);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].seq, 7);
	/* No entries about someone else, and bad arguments. */
	assert_int_equal(audit_list(f.a, txn, "ffff", 0, out, AUDIT_LIST_MAX, &n), HV_OK);
	assert_int_equal(n, 0);
	assert_int_equal(audit_list(f.a, txn, "", 0, out, 1, &n), HV_INVALID_ARGUMENT);
	assert_int_equal(audit_list(f.a, txn, "a b", 0, out, 1, &n), HV_INVALID_ARGUMENT);
	assert_int_equal(audit_list(f.a, txn, NULL, 0, out, AUDIT_LIST_MAX + 1, &n),
	    HV_INVALID_ARGUMENT);
	/* Appending needs a write transaction. */
	{
		audit_entry e;
		entry_fill(&e, 1);
		assert_int_equal(audit_append(f.a, txn, &e), HV_FAILED_PRECONDITION);
	}
	store_read_end(txn);
	fixture_close(&f);
}

static void
test_bad_fields(void **state)
{
	fixture             f;
	audit_entry         e;
	audit_verify_result r;

	(void) state;
	fixture_open(&f);
	entry_fill(&e, 1);
	memset(e.org, 'x', sizeof(e.org)); /* no NUL inside the bound */
	assert_int_equal(audit_record(f.a, &e), HV_INVALID_ARGUMENT);
	entry_fill(&e, 1);
	snprintf(e.subject, sizeof(e.subject), "two words");
	assert_int_equal(audit_record(f.a, &e), HV_INVALID_ARGUMENT);
	entry_fill(&e, 1);
	e.method[3] = '\n';
	assert_int_equal(audit_record(f.a, &e), HV_INVALID_ARGUMENT);
	entry_fill(&e, 1);
	e.purpose[0] = (char) 0xc3;
	assert_int_equal(audit_record(f.a, &e), HV_INVALID_ARGUMENT);
	/* Nothing was written; a good entry after them is entry 1, with the clock set. */
	entry_fill(&e, 1);
	e.time_ms = 0;
	assert_int_equal(audit_record(f.a, &e), HV_OK);
	assert_int_equal(e.seq, 1);
	assert_true(e.time_ms > 1700000000000);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, 1);
	fixture_close(&f);
}

/* Appends from many threads at once share commits (group commit) and still form one chain. */
typedef struct writer {
	audit   *a;
	unsigned n;
} writer;

static void *
writer_main(void *arg)
{
	writer *w = arg;

	for (unsigned i = 0; i < w->n; i++) {
		audit_entry e;
		entry_fill(&e, i);
		if (audit_record(w->a, &e) != HV_OK) {
			return ((void *) 1);
		}
	}
	return (NULL);
}

static void
test_concurrent(void **state)
{
	fixture             f;
	pthread_t           th[8];
	writer              w[8];
	audit_verify_result r;

	(void) state;
	fixture_open(&f);
	for (int i = 0; i < 8; i++) {
		w[i] = (writer) { f.a, 100 };
		assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		void *rv;
		pthread_join(th[i], &rv);
		assert_null(rv);
	}
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, 800);
	assert_int_equal(r.head_seq, 800);
	fixture_close(&f);
}

/* Queued appends: many threads, one writer, one chain; closing drains the queue. */
typedef struct enqueuer {
	audit   *a;
	unsigned n;
	bool     try_only;
} enqueuer;

static void *
enqueuer_main(void *arg)
{
	enqueuer *q = arg;

	for (unsigned i = 0; i < q->n; i++) {
		audit_entry e;
		hv_status   st;
		entry_fill(&e, i);
		while ((st = q->try_only ? audit_try_enqueue(q->a, &e) : audit_enqueue(q->a, &e)) ==
		    HV_RESOURCE_EXHAUSTED) {
			usleep(100);
		}
		if (st != HV_OK) {
			return ((void *) 1);
		}
	}
	return (NULL);
}

static void
test_enqueue(void **state)
{
	fixture             f;
	pthread_t           th[8];
	enqueuer            q[8];
	audit_verify_result r;
	audit_entry         e;

	(void) state;
	fixture_open(&f);
	entry_fill(&e, 1);
	assert_int_equal(audit_enqueue(f.a, &e), HV_FAILED_PRECONDITION); /* no writer yet */
	assert_int_equal(audit_writer_start(f.a), HV_OK);
	assert_int_equal(audit_writer_start(f.a), HV_OK); /* once */
	snprintf(e.subject, sizeof(e.subject), "a b");
	assert_int_equal(audit_enqueue(f.a, &e), HV_INVALID_ARGUMENT);
	for (int i = 0; i < 8; i++) {
		q[i] = (enqueuer) { f.a, 2000, i % 2 == 1 };
		assert_int_equal(pthread_create(&th[i], NULL, enqueuer_main, &q[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		void *rv;
		pthread_join(th[i], &rv);
		assert_null(rv);
	}
	assert_int_equal(audit_flush(f.a), HV_OK);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, 16000);
	/* Mixed with appends in transactions of their own: still one chain. */
	entry_fill(&e, 3);
	assert_int_equal(audit_record(f.a, &e), HV_OK);
	for (int i = 0; i < 100; i++) {
		entry_fill(&e, (unsigned) i);
		assert_int_equal(audit_enqueue(f.a, &e), HV_OK);
	}
	/* Stopping writes what is queued; afterwards nothing is taken. */
	audit_writer_stop(f.a);
	audit_writer_stop(f.a);
	assert_int_equal(audit_enqueue(f.a, &e), HV_FAILED_PRECONDITION);
	assert_int_equal(audit_try_enqueue(f.a, &e), HV_FAILED_PRECONDITION);
	audit_close(f.a);
	assert_int_equal(audit_open(&f.a, f.s, f.data), HV_OK);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, 16101);
	/* Closing with a writer running writes what is queued too. */
	assert_int_equal(audit_writer_start(f.a), HV_OK);
	for (int i = 0; i < 50; i++) {
		entry_fill(&e, (unsigned) i);
		assert_int_equal(audit_enqueue(f.a, &e), HV_OK);
	}
	audit_close(f.a);
	assert_int_equal(audit_open(&f.a, f.s, f.data), HV_OK);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, 16151);
	fixture_close(&f);
}

/* A lone queued entry is written when the writer's linger ends, without anyone flushing: the
 * entries at risk in a crash are those of the last linger (at most AUDIT_LINGER_MAX_MS), not
 * all since the last flush. Polled for up to 5 s, far beyond the linger, so a slow machine
 * does not fail it. */
static void
test_enqueue_linger(void **state)
{
	fixture             f;
	audit_verify_result r;
	audit_entry         e;

	(void) state;
	fixture_open(&f);
	assert_int_equal(audit_writer_start(f.a), HV_OK);
	entry_fill(&e, 7);
	assert_int_equal(audit_enqueue(f.a, &e), HV_OK);
	memset(&r, 0, sizeof(r));
	for (int i = 0; i < 500 && r.entries == 0; i++) {
		usleep(10000);
		assert_int_equal(audit_verify(f.a, &r), HV_OK);
	}
	assert_int_equal(r.entries, 1);
	/* A flush does not wait out the linger either: it returns with the entry durable. */
	entry_fill(&e, 8);
	assert_int_equal(audit_enqueue(f.a, &e), HV_OK);
	assert_int_equal(audit_flush(f.a), HV_OK);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, 2);
	fixture_close(&f);
}

/* A write that holds the store's write transaction for a while, as a slow disk would. */
typedef struct slow_job {
	store    *sj_store;
	int       sj_entered; /* atomic: inside the write function */
	hv_status sj_status;
} slow_job;

static hv_status
slow_fn(store_txn *txn, void *arg)
{
	slow_job *j = arg;

	(void) txn;
	__atomic_store_n(&j->sj_entered, 1, __ATOMIC_RELEASE);
	/* Long enough that the audit commit queued behind it takes far more than the ~7 ms that
	 * reach AUDIT_LINGER_MAX_MS even when a loaded machine starts that commit late. */
	usleep(300000);
	return (HV_OK);
}

static void *
slow_main(void *arg)
{
	slow_job *j = arg;

	j->sj_status = store_write(j->sj_store, slow_fn, j);
	return (NULL);
}

/* The writer's linger follows its commit time: the shortest while commits are quick, the
 * longest after a commit that took tens of milliseconds (here: queued behind another write),
 * and back down once commits are quick again. Entries are written either way. How many quick
 * commits bring it down depends on how quick they are on this machine (a loaded one is
 * slower), so the test commits until it is down, for up to 10 s. */
static void
test_linger_adapts(void **state)
{
	fixture             f;
	audit_verify_result r;
	audit_entry         e;
	slow_job            sj;
	pthread_t           th;
	unsigned            slow, n;
	int64_t             deadline;

	(void) state;
	fixture_open(&f);
	memset(&sj, 0, sizeof(sj));
	sj.sj_store = f.s;
	assert_int_equal(audit_writer_start(f.a), HV_OK);
	assert_int_equal(audit_writer_linger_ms(f.a), AUDIT_LINGER_MIN_MS);

	/* One commit that waits ~300 ms for the write lock. */
	assert_int_equal(pthread_create(&th, NULL, slow_main, &sj), 0);
	while (!__atomic_load_n(&sj.sj_entered, __ATOMIC_ACQUIRE)) {
		usleep(1000);
	}
	entry_fill(&e, 1);
	assert_int_equal(audit_enqueue(f.a, &e), HV_OK);
	assert_int_equal(audit_flush(f.a), HV_OK);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(sj.sj_status, HV_OK);
	slow = audit_writer_linger_ms(f.a);
	assert_int_equal(slow, AUDIT_LINGER_MAX_MS);

	/* Quick commits (this store does not fsync) bring it down again. */
	deadline = hv_clock_mono_ms() + 10000;
	for (n = 1; audit_writer_linger_ms(f.a) >= slow && hv_clock_mono_ms() < deadline;) {
		entry_fill(&e, ++n);
		assert_int_equal(audit_enqueue(f.a, &e), HV_OK);
		assert_int_equal(audit_flush(f.a), HV_OK);
	}
	assert_true(audit_writer_linger_ms(f.a) < slow);
	assert_true(audit_writer_linger_ms(f.a) >= AUDIT_LINGER_MIN_MS);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, n);
	fixture_close(&f);
}

/* Appends n entries in one transaction (subjects i % 7), through audit_append. */
typedef struct many_job {
	audit   *mj_a;
	unsigned mj_n;
} many_job;

static hv_status
many_fn(store_txn *txn, void *arg)
{
	many_job   *j = arg;
	audit_entry e;
	hv_status   st;

	for (unsigned i = 1; i <= j->mj_n; i++) {
		entry_fill(&e, i);
		snprintf(e.subject, sizeof(e.subject), "%032x", i % 7);
		if ((st = audit_append(j->mj_a, txn, &e)) != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

/* Empties the table *arg. */
static hv_status
clear_fn(store_txn *txn, void *arg)
{
	return (store_clear(txn, *(store_table *) arg));
}

/* Deletes the index layout record from audit.head (*arg). */
static hv_status
del_layout_fn(store_txn *txn, void *arg)
{
	return (store_del(txn, *(store_table *) arg, "index", 5));
}

/* Lists subject 3's entries in pages of 100 and checks they are exactly seq % 7 == 3. */
static void
expect_subject_pages(fixture *f, unsigned total)
{
	static audit_entry out[100];
	char               subj[40];
	store_txn         *txn;
	uint64_t           after = 0, want = 3;
	size_t             n;

	snprintf(subj, sizeof(subj), "%032x", 3);
	assert_int_equal(store_read_begin(f->s, &txn), HV_OK);
	do {
		assert_int_equal(audit_list(f->a, txn, subj, after, out, 100, &n), HV_OK);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(out[i].seq, want);
			assert_string_equal(out[i].subject, subj);
			want += 7;
		}
		if (n > 0) {
			after = out[n - 1].seq;
		}
	} while (n == 100);
	assert_true(want > total); /* every one of them, across the windows */
	store_read_end(txn);
}

/* The subject index spans windows of seqs; a store whose index is missing or of an older
 * layout is indexed again from the log when it opens. */
static void
test_list_windows(void **state)
{
	fixture  f;
	many_job j;

	(void) state;
	fixture_open(&f);
	j.mj_a = f.a;
	j.mj_n = 3000; /* three windows of 1024 */
	assert_int_equal(store_write(f.s, many_fn, &j), HV_OK);
	expect_subject_pages(&f, j.mj_n);

	/* As a store from before audit.by_window: no layout record and no index. Opened again,
	 * the index is built from the log. */
	{
		store_table by_window;
		assert_int_equal(store_table_open(f.s, "audit.by_window", &by_window), HV_OK);
		audit_close(f.a);
		f.a = NULL;
		assert_int_equal(store_write(f.s, clear_fn, &by_window), HV_OK);
		assert_int_equal(store_write(f.s, del_layout_fn, &f.head), HV_OK);
	}
	assert_int_equal(audit_open(&f.a, f.s, f.data), HV_OK);
	expect_subject_pages(&f, j.mj_n);
	fixture_close(&f);
}

/* ---- the keyed chain, its checkpoints and the index, against forgers ------------------- */

/* The chain key, as someone who stole DATA/keys would derive it (audit.h). */
static void
stolen_key(fixture *f, uint8_t key[CRYPTO_HMAC_LEN])
{
	char    path[800];
	char   *pem;
	size_t  len;
	uint8_t secret[CRYPTO_ED25519_SECRET_LEN];

	snprintf(path, sizeof(path), "%s/keys/audit-ed25519.pem", f->data);
	assert_int_equal(hv_file_read(path, 4096, true, &pem, &len), HV_OK);
	assert_int_equal(crypto_ed25519_secret(pem, len, secret), HV_OK);
	crypto_hmac_sha256(key, secret, sizeof(secret), "haven audit chain key v1", 24);
	free(pem);
}

/* A forger's rewrite: from entry `from` on, each entry gets version `version` (0: kept) and
 * result ^ flip (entry `from` only), and the chain is recomputed with SHA-256 (key NULL) or
 * the HMAC under key: up to `until` when it is not 0, else to the end with the head record
 * moved along. With cut, the entries after `from` are deleted instead and the head moved back
 * to `from` (no key needed: nothing is recomputed). */
typedef struct rechain_op {
	fixture       *f;
	uint64_t       from, until;
	uint8_t        version;
	uint8_t        flip;
	bool           cut;
	const uint8_t *key;
} rechain_op;

static hv_status
rechain_fn(store_txn *txn, void *arg)
{
	rechain_op *op                   = arg;
	uint8_t     prev[AUDIT_HASH_LEN] = { 0 }, k[8], head[8 + AUDIT_HASH_LEN];
	uint8_t     v[600], buf[700];
	const void *p;
	size_t      l, body;
	uint64_t    seq;
	hv_status   st;

	if (op->from > 1) {
		hv_put_be64(k, op->from - 1);
		assert_int_equal(store_get(txn, op->f->log, k, 8, &p, &l), HV_OK);
		memcpy(prev, (const uint8_t *) p + l - AUDIT_HASH_LEN, AUDIT_HASH_LEN);
	}
	for (seq = op->from;; seq++) {
		hv_put_be64(k, seq);
		if ((st = store_get(txn, op->f->log, k, 8, &p, &l)) == HV_NOT_FOUND) {
			break;
		}
		if (op->cut) {
			/* Entry `from` stays as it is and becomes the head; the rest goes. */
			if (seq == op->from) {
				memcpy(prev, (const uint8_t *) p + l - AUDIT_HASH_LEN,
				    AUDIT_HASH_LEN);
			} else {
				assert_int_equal(store_del(txn, op->f->log, k, 8), HV_OK);
			}
			continue;
		}
		memcpy(v, p, l);
		body = l - 2 * AUDIT_HASH_LEN;
		if (op->version != 0 && op->version < 3 && v[0] == 3) {
			/* Versions 1 and 2 have no person: drop its (empty) string before the
			 * result. */
			assert_int_equal(v[body - 5], 0);
			memmove(v + body - 5, v + body - 4, 4 + 2 * AUDIT_HASH_LEN);
			body--;
			l--;
		}
		v[0] = op->version != 0 ? op->version : v[0];
		v[body - 1] ^= seq == op->from ? op->flip : 0;
		memcpy(buf, prev, AUDIT_HASH_LEN);
		memcpy(buf + AUDIT_HASH_LEN, v, body);
		memcpy(v + body, prev, AUDIT_HASH_LEN);
		if (op->key == NULL) {
			crypto_sha256(v + body + AUDIT_HASH_LEN, buf, AUDIT_HASH_LEN + body);
		} else {
			crypto_hmac_sha256(v + body + AUDIT_HASH_LEN, op->key, CRYPTO_HMAC_LEN, buf,
			    AUDIT_HASH_LEN + body);
		}
		memcpy(prev, v + body + AUDIT_HASH_LEN, AUDIT_HASH_LEN);
		assert_int_equal(store_put(txn, op->f->log, k, 8, v, l), HV_OK);
		if (seq == op->until) {
			return (HV_OK);
		}
	}
	hv_put_be64(head, op->cut ? op->from : seq - 1);
	memcpy(head + 8, prev, AUDIT_HASH_LEN);
	return (store_put(txn, op->f->head, "head", 4, head, sizeof(head)));
}

static void
rechain(fixture *f, uint64_t from, uint64_t until, uint8_t version, uint8_t flip, bool cut,
    const uint8_t *key)
{
	rechain_op op = { f, from, until, version, flip, cut, key };

	assert_int_equal(store_write(f->s, rechain_fn, &op), HV_OK);
}

static void
expect_intact(fixture *f)
{
	audit_verify_result r;

	if (audit_verify(f->a, &r) != HV_OK) {
		fail_msg("not intact: entry %llu: %s", (unsigned long long) r.first_bad_seq, r.why);
	}
}

static size_t
file_read(const char *path, char *buf, size_t max)
{
	FILE  *fp = fopen(path, "r");
	size_t n;

	assert_non_null(fp);
	n      = fread(buf, 1, max - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return (n);
}

/* Someone who can write the store but not read the key. */
static void
test_forger_without_key(void **state)
{
	fixture f;

	(void) state;
	/* The unkeyed chain recomputed from a changed entry to the end, head moved along. */
	fixture_open(&f);
	fill(&f);
	rechain(&f, 5, 0, 0, 1, false, NULL);
	expect_bad(&f, 5, "entry 5 was changed (its hash does not match)");
	fixture_close(&f);

	/* The same, passed off as legacy (unkeyed) entries from before the key. */
	fixture_open(&f);
	fill(&f);
	rechain(&f, 5, 0, 1, 1, false, NULL);
	expect_bad(&f, 5, "entry 5 is unkeyed, but the log is keyed after entry 0");
	fixture_close(&f);

	/* The whole log passed off as legacy: the checkpoint file says it was keyed from 0. */
	fixture_open(&f);
	fill(&f);
	rechain(&f, 1, 0, 1, 0, false, NULL);
	expect_bad(&f, 1, "entry 1 is unkeyed");
	fixture_close(&f);

	/* The whole log passed off as legacy and the checkpoint file removed (the data
	 * directory, not the key): the node does not start a new file with a new boundary. */
	fixture_open(&f);
	fill(&f);
	rechain(&f, 1, 0, 1, 0, false, NULL);
	audit_close(f.a);
	{
		char path[800];
		snprintf(path, sizeof(path), "%s/audit.checkpoints", f.data);
		assert_int_equal(unlink(path), 0);
		assert_int_equal(audit_open(&f.a, f.s, f.data), HV_OK);
		assert_int_equal(access(path, F_OK), -1);
	}
	expect_bad(&f, 1, "the checkpoint file is missing");
	fixture_close(&f);

	/* The tail cut and the head moved back to a whole entry: a checkpoint saw the log up to
	 * N_ENTRIES. */
	fixture_open(&f);
	fill(&f);
	assert_int_equal(audit_checkpoint(f.a), HV_OK);
	rechain(&f, 7, 0, 0, 0, true, NULL);
	expect_bad(&f, 8, "entries 8 to 10 were removed (checkpoint line 2 saw the log up to 10)");
	fixture_close(&f);
}

/* Someone who holds the store and the key can rewrite the chain, but not the checkpoints
 * written before: the log no longer holds the hash a checkpoint recorded. */
static void
test_forger_with_key(void **state)
{
	fixture f;
	uint8_t key[CRYPTO_HMAC_LEN];

	(void) state;
	/* Only the changed entry rehashed: the next one's link names it. */
	fixture_open(&f);
	fill(&f);
	stolen_key(&f, key);
	rechain(&f, 5, 5, 0, 1, false, key);
	expect_bad(&f, 5, "entry 5 was replaced (entry 6 recorded another hash for it)");
	fixture_close(&f);

	fixture_open(&f);
	fill(&f);
	assert_int_equal(audit_checkpoint(f.a), HV_OK);
	stolen_key(&f, key);
	rechain(&f, 5, 0, 0, 1, false, key);
	expect_bad(&f, N_ENTRIES, "entry 10 differs from checkpoint line 2 (rewritten)");
	fixture_close(&f);

	/* Without a checkpoint after the rewritten entry, the key holder's rewrite passes: what
	 * docs/audit.md says the checkpoints (and the log lines) are for. */
	fixture_open(&f);
	fill(&f);
	stolen_key(&f, key);
	rechain(&f, 5, 0, 0, 1, false, key);
	expect_intact(&f);
	fixture_close(&f);

	/* The tail cut, the head moved back, and a changed entry 4 rehashed with the key: the
	 * checkpoint still saw entries up to 10. */
	fixture_open(&f);
	fill(&f);
	assert_int_equal(audit_checkpoint(f.a), HV_OK);
	stolen_key(&f, key);
	rechain(&f, 4, 0, 0, 0, true, NULL);
	rechain(&f, 4, 0, 0, 1, false, key);
	expect_bad(&f, 5, "entries 5 to 10 were removed");
	fixture_close(&f);
}

typedef struct row_op {
	fixture    *f;
	store_table by_window;
	uint64_t    seq;
	unsigned    subject;
	bool        add;
} row_op;

static hv_status
row_fn(store_txn *txn, void *arg)
{
	row_op *op = arg;
	uint8_t key[8 + AUDIT_SUBJECT_MAX + 9];
	char    subj[40];
	size_t  sl;

	sl = (size_t) snprintf(subj, sizeof(subj), "%032x", op->subject);
	hv_put_be64(key, op->seq >> 10);
	memcpy(key + 8, subj, sl);
	key[8 + sl] = 0;
	hv_put_be64(key + 8 + sl + 1, op->seq);
	return (op->add ? store_put(txn, op->by_window, key, 8 + sl + 9, "", 0)
	                : store_del(txn, op->by_window, key, 8 + sl + 9));
}

static void
index_edit(fixture *f, uint64_t seq, unsigned subject, bool add)
{
	row_op op = { f, 0, seq, subject, add };

	assert_int_equal(store_table_open(f->s, "audit.by_window", &op.by_window), HV_OK);
	assert_int_equal(store_write(f->s, row_fn, &op), HV_OK);
}

/* The subject index is checked against the log both ways. (entry_fill: entry i is about
 * subject i % 3.) */
static void
test_index_checked(void **state)
{
	fixture f;

	(void) state;
	fixture_open(&f);
	fill(&f);
	expect_intact(&f);
	index_edit(&f, 4, 1, false); /* hides who read subject 1 in entry 4 */
	expect_bad(&f, 4, "entry 4 is missing from the subject index");
	fixture_close(&f);

	fixture_open(&f);
	fill(&f);
	index_edit(&f, 4, 2, true); /* entry 4 is about subject 1, not 2 */
	expect_bad(&f, 4, "the subject index names entry 4 for a subject it is not about");
	fixture_close(&f);

	fixture_open(&f);
	fill(&f);
	index_edit(&f, 99, 2, true); /* an entry the log does not hold */
	expect_bad(&f, 99, "the subject index names entry 99");
	fixture_close(&f);
}

/* The checkpoint file: appended to, never rewritten; 0600; its lines signed; its loss seen. */
static void
test_checkpoint_file(void **state)
{
	fixture             f;
	audit_verify_result r;
	char                path[800], before[4096], after[4096];
	size_t              nb, na;
	struct stat         sb;
	audit_entry         e;

	(void) state;
	fixture_open(&f);
	snprintf(path, sizeof(path), "%s/audit.checkpoints", f.data);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	fill(&f);
	nb = file_read(path, before, sizeof(before));
	assert_int_equal(audit_checkpoint(f.a), HV_OK);
	assert_int_equal(audit_checkpoint(f.a), HV_OK); /* the same head: nothing new */
	na = file_read(path, after, sizeof(after));
	assert_true(na > nb);
	assert_memory_equal(before, after, nb); /* what was there is still there, unchanged */
	assert_non_null(strstr(after + nb, "v1 10 "));
	assert_null(strchr(strchr(after + nb, '\n') + 1, 'v')); /* one line added */
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.checkpoint_seq, N_ENTRIES);
	assert_int_equal(r.keyed_from, 0);
	assert_int_equal(r.checkpoints, 2);

	/* Stopping the writer writes the last head. */
	assert_int_equal(audit_writer_start(f.a), HV_OK);
	entry_fill(&e, 11);
	assert_int_equal(audit_enqueue(f.a, &e), HV_OK);
	audit_writer_stop(f.a);
	file_read(path, after, sizeof(after));
	assert_non_null(strstr(after, "v1 11 "));
	audit_close(f.a);

	/* A line changed: its signature no longer holds. */
	{
		FILE *fp = fopen(path, "r+");
		assert_non_null(fp);
		assert_int_equal(fseek(fp, 3, SEEK_SET), 0); /* the first line's seq, "0" */
		assert_int_equal(fputc('1', fp), '1');
		fclose(fp);
	}
	assert_int_equal(audit_open(&f.a, f.s, f.data), HV_OK);
	expect_bad(&f, 1, "checkpoint line 1 is not signed by the audit key");

	/* Removed: not replaced at open, and reported. */
	audit_close(f.a);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(audit_open(&f.a, f.s, f.data), HV_OK);
	assert_int_equal(access(path, F_OK), -1);
	expect_bad(&f, 1, "the checkpoint file is missing");
	assert_int_equal(audit_checkpoint(f.a), HV_FAILED_PRECONDITION);
	fixture_close(&f);
}

/* A store written before the key: its entries stay legacy (SHA-256) up to the boundary the
 * first checkpoint records, and the first keyed entry pins them. */
static void
test_legacy_chain(void **state)
{
	fixture             f;
	audit_verify_result r;
	char                path[800];
	audit_entry         e;

	(void) state;
	fixture_open(&f);
	fill(&f);
	/* As an old node left it: unkeyed entries, no key, no checkpoint file. */
	rechain(&f, 1, 0, 1, 0, false, NULL);
	audit_close(f.a);
	snprintf(path, sizeof(path), "%s/audit.checkpoints", f.data);
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/keys/audit-ed25519.pem", f.data);
	assert_int_equal(unlink(path), 0);

	assert_int_equal(audit_open(&f.a, f.s, f.data), HV_OK);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.keyed_from, N_ENTRIES);
	entry_fill(&e, 11);
	assert_int_equal(audit_record(f.a, &e), HV_OK);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, N_ENTRIES + 1);

	/* A legacy entry rewritten and the legacy chain recomputed up to the boundary: the first
	 * keyed entry recorded another hash for the last legacy one. */
	rechain(&f, 3, N_ENTRIES, 0, 1, false, NULL);
	expect_bad(&f, N_ENTRIES, "entry 10 was replaced (entry 11 recorded another hash for it)");
	fixture_close(&f);
}

/* Checkpoints written while verify runs name heads newer than verify's snapshot: verify
 * leaves them for the next run instead of reporting a cut tail. */
typedef struct busy_job {
	fixture     *bj_f;
	volatile int bj_stop;
	unsigned     bj_n;
} busy_job;

static void *
busy_main(void *arg)
{
	busy_job *j = arg;

	while (!j->bj_stop) {
		audit_entry e;
		entry_fill(&e, __atomic_fetch_add(&j->bj_n, 1, __ATOMIC_RELAXED));
		if (audit_record(j->bj_f->a, &e) != HV_OK ||
		    audit_checkpoint(j->bj_f->a) != HV_OK) {
			break;
		}
	}
	return (NULL);
}

static void
test_verify_while_appending(void **state)
{
	fixture   f;
	busy_job  j;
	pthread_t t;

	(void) state;
	fixture_open(&f);
	fill(&f);
	j.bj_f    = &f;
	j.bj_stop = 0;
	j.bj_n    = 0;
	assert_int_equal(pthread_create(&t, NULL, busy_main, &j), 0);
	/* At least 30 verifies, and on until the other thread appended more than 30 entries
	 * meanwhile: how fast each side runs is up to a busy machine's scheduler. */
	for (int i = 0; i < 30 || (__atomic_load_n(&j.bj_n, __ATOMIC_RELAXED) <= 30 && i < 100000);
	     i++) {
		expect_intact(&f);
	}
	j.bj_stop = 1;
	pthread_join(t, NULL);
	assert_true(j.bj_n > 30);
	expect_intact(&f);
	fixture_close(&f);
}

/* A walk is many read transactions of a few thousand rows (a long one would keep the map from
 * growing): a break is found wherever it falls, at a chunk's first or last entry or index row
 * too, and a stop asked for ends the walk with HV_CANCELLED and no checkpoint. 20,000 entries
 * are more than two chunks of the log and of the index. */
static void
test_verify_in_chunks(void **state)
{
	const uint64_t      edges[] = { 1, 8191, 8192, 8193, 16384, 16385, 20000 };
	fixture             f;
	many_job            j;
	audit_verify_result r;
	atomic_bool         stop = true;

	(void) state;
	fixture_open(&f);
	j.mj_a = f.a;
	j.mj_n = 20000; /* many_fn: entry i is about subject i % 7 */
	assert_int_equal(store_write(f.s, many_fn, &j), HV_OK);
	assert_int_equal(audit_verify(f.a, &r), HV_OK);
	assert_int_equal(r.entries, 20000);
	assert_int_equal(r.head_seq, 20000);
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		char why[64];
		snprintf(why, sizeof(why), "entry %llu was changed", (unsigned long long) edges[i]);
		tamper(&f, 0, edges[i], 0, 40); /* a byte of the body: the hash no longer matches */
		expect_bad(&f, edges[i], why);
		tamper(&f, 0, edges[i], 0, 40); /* and back */
		expect_intact(&f);
	}
	index_edit(&f, 12000, 2, false); /* entry 12000 is about subject 2: its row goes */
	expect_bad(&f, 12000, "entry 12000 is missing from the subject index");
	index_edit(&f, 12000, 2, true);
	index_edit(&f, 19000, 3, true); /* entry 19000 is about subject 2, not 3 */
	expect_bad(&f, 19000, "the subject index names entry 19000 for a subject it is not about");
	index_edit(&f, 19000, 3, false);
	expect_intact(&f);
	tamper(&f, 1, 8193, 0, 0); /* right after the first chunk */
	expect_bad(&f, 8193, "entry 8193 was removed (the next one is 8194)");
	fixture_close(&f);

	fixture_open(&f);
	j.mj_a = f.a;
	assert_int_equal(store_write(f.s, many_fn, &j), HV_OK);
	assert_int_equal(audit_verify_until(f.a, &stop, &r), HV_CANCELLED);
	assert_true(r.entries < 20000);
	stop = false;
	assert_int_equal(audit_verify_until(f.a, &stop, &r), HV_OK);
	assert_int_equal(r.entries, 20000);
	fixture_close(&f);
}

/* Entries appended in other transactions (durable accesses, another process) while the writer
 * is idle are checkpointed by the writer within AUDIT_CHECKPOINT_MS. (About 10 s.) */
static void
test_writer_checkpoints_when_idle(void **state)
{
	fixture  f;
	many_job j;
	char     path[800], buf[4096];
	int64_t  start, waited_ms = 0;

	(void) state;
	fixture_open(&f);
	snprintf(path, sizeof(path), "%s/audit.checkpoints", f.data);
	assert_int_equal(audit_writer_start(f.a), HV_OK);
	j.mj_a = f.a;
	j.mj_n = 3;
	assert_int_equal(store_write(f.s, many_fn, &j), HV_OK);
	file_read(path, buf, sizeof(buf));
	assert_null(strstr(buf, "v1 3 "));
	/* Real time, not a count of sleeps: a loaded machine oversleeps each of them. */
	start = hv_clock_mono_ms();
	while (file_read(path, buf, sizeof(buf)) > 0 && strstr(buf, "v1 3 ") == NULL &&
	    waited_ms < AUDIT_CHECKPOINT_MS + 10000) {
		usleep(100000);
		waited_ms = hv_clock_mono_ms() - start;
	}
	assert_non_null(strstr(buf, "v1 3 "));
	assert_true(waited_ms >= AUDIT_CHECKPOINT_MS / 2); /* the writer's timer, not the append */
	fixture_close(&f);
}

static int
setup(void **state)
{
	const char *tmp = getenv("HAVEN_TEST_TMP");

	(void) state;
	snprintf(base, sizeof(base), "%s/audit-XXXXXX", tmp != NULL ? tmp : "/tmp");
	return (mkdtemp(base) == NULL ? -1 : 0);
}

static int
teardown(void **state)
{
	(void) state;
	return (rmdir(base));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_verify),
		cmocka_unit_test(test_changed_byte),
		cmocka_unit_test(test_removed_reordered_replaced),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_enqueue),
		cmocka_unit_test(test_enqueue_linger),
		cmocka_unit_test(test_linger_adapts),
		cmocka_unit_test(test_list_windows),
		cmocka_unit_test(test_forger_without_key),
		cmocka_unit_test(test_forger_with_key),
		cmocka_unit_test(test_index_checked),
		cmocka_unit_test(test_checkpoint_file),
		cmocka_unit_test(test_legacy_chain),
		cmocka_unit_test(test_verify_while_appending),
		cmocka_unit_test(test_verify_in_chunks),
		cmocka_unit_test(test_writer_checkpoints_when_idle),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
