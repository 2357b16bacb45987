/*
 * store_test.c - the LMDB store: open/reopen, schema versions, raw values, cursors, protobuf
 * messages, argument checks, aborts, map growth and its limit, a commit that really fails
 * (a file-size limit makes LMDB's page write return EFBIG), several processes and threads on
 * one store, group commit of concurrent writers (batching, a failing function inside a batch,
 * map growth under batches, a failed batch commit, a batch too big to commit as one), and reader
 * slots left behind by a dead process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "haven/bytes.h"
#include "haven/rpc/v1/rpc.pb-c.h"
#include "haven/store.h"

#define MIB ((size_t) 1 << 20)

/* ---- helpers ---------------------------------------------------------------------------- */

/* A fresh directory under $HAVEN_TEST_TMP (or /tmp). Free with tmp_remove. */
static char *
tmp_dir(void)
{
	const char *base = getenv("HAVEN_TEST_TMP");
	char        path[512];
	char       *dir;

	if (base == NULL || base[0] == '\0') {
		base = "/tmp";
	}
	(void) mkdir(base, 0700);
	snprintf(path, sizeof(path), "%s/store_test.XXXXXX", base);
	assert_non_null(mkdtemp(path));
	dir = strdup(path);
	assert_non_null(dir);
	return (dir);
}

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
tmp_remove(char *dir)
{
	rm_tree(dir);
	free(dir);
}

static char *
path_join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char  *p = malloc(n);

	assert_non_null(p);
	snprintf(p, n, "%s/%s", a, b);
	return (p);
}

static mode_t
mode_of(const char *dir, const char *name)
{
	struct stat st;
	char       *p = name != NULL ? path_join(dir, name) : strdup(dir);

	assert_non_null(p);
	assert_int_equal(stat(p, &st), 0);
	free(p);
	return (st.st_mode & 07777);
}

static store *
open_ok(const char *dir, const store_options *o)
{
	store *s = NULL;

	assert_int_equal(store_open(&s, dir, o), HV_OK);
	assert_non_null(s);
	return (s);
}

static store_table
table_ok(store *s, const char *name)
{
	store_table t = 0;

	assert_int_equal(store_table_open(s, name, &t), HV_OK);
	return (t);
}

typedef struct kv {
	store_table kv_table;
	const char *kv_key;
	const void *kv_val;
	size_t      kv_vlen;
} kv;

static hv_status
put_fn(store_txn *txn, void *arg)
{
	kv *a = arg;

	return (store_put(txn, a->kv_table, a->kv_key, strlen(a->kv_key), a->kv_val, a->kv_vlen));
}

static hv_status
put_str(store *s, store_table t, const char *key, const char *val)
{
	kv a = { t, key, val, strlen(val) };

	return (store_write(s, put_fn, &a));
}

/* Checks key's value in a fresh read transaction; val NULL means absent. */
static void
expect_str(store *s, store_table t, const char *key, const char *val)
{
	store_txn  *txn = NULL;
	const void *v;
	size_t      vlen;
	hv_status   rv;

	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	rv = store_get(txn, t, key, strlen(key), &v, &vlen);
	if (val == NULL) {
		assert_int_equal(rv, HV_NOT_FOUND);
	} else {
		assert_int_equal(rv, HV_OK);
		assert_int_equal(vlen, strlen(val));
		assert_memory_equal(v, val, vlen);
	}
	store_read_end(txn);
}

static uint64_t
count_of(store *s, store_table t)
{
	store_txn *txn = NULL;
	uint64_t   n   = 0;

	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	assert_int_equal(store_count(txn, t, &n), HV_OK);
	store_read_end(txn);
	return (n);
}

/* ---- open, reopen, schema --------------------------------------------------------------- */

static void
test_open_reopen(void **state)
{
	char         *base = tmp_dir();
	char         *dir  = path_join(base, "data"); /* missing: store_open creates it */
	store_options o    = { .schema_version = 3 };
	store        *s;
	store        *s2 = (store *) 1;
	store_table   t;

	(void) state;
	s = open_ok(dir, &o);
	assert_int_equal(mode_of(dir, NULL), 0700);
	assert_int_equal(mode_of(dir, "data.mdb"), 0600);
	assert_int_equal(mode_of(dir, "lock.mdb"), 0600);
	assert_int_equal(store_schema_version(s), 3);
	t = table_ok(s, "people");
	assert_int_equal(put_str(s, t, "alice", "1"), HV_OK);
	assert_int_equal(put_str(s, t, "bob", "2"), HV_OK);
	/* The same handle again is the cache's answer. */
	assert_int_equal(table_ok(s, "people"), t);

	/* One handle per process: a second open of the same directory is refused, and the first
	 * one keeps working. */
	assert_int_equal(store_open(&s2, dir, &o), HV_FAILED_PRECONDITION);
	assert_null(s2);
	expect_str(s, t, "alice", "1");

	store_close(s);
	store_close(NULL);

	s = open_ok(dir, &o);
	t = table_ok(s, "people");
	expect_str(s, t, "alice", "1");
	expect_str(s, t, "bob", "2");
	expect_str(s, t, "carol", NULL);
	assert_int_equal(count_of(s, t), 2);
	store_close(s);

	/* Defaults (opts NULL) are schema version 0, older than this store's. */
	s2 = (store *) 1;
	assert_int_equal(store_open(&s2, dir, NULL), HV_FAILED_PRECONDITION);
	assert_null(s2);
	free(dir);
	tmp_remove(base);
}

/* A raw write of the schema record, as a newer program (or damage) would leave it. */
static void
write_schema(store *s, const void *bytes, size_t n)
{
	kv a = { table_ok(s, "meta"), "schema_version", bytes, n };

	assert_int_equal(store_write(s, put_fn, &a), HV_OK);
}

static void
test_schema(void **state)
{
	char         *dir  = tmp_dir();
	store_options v2   = { .schema_version = 2 };
	store_options v5   = { .schema_version = 5 };
	store_options v7   = { .schema_version = 7 };
	store        *s    = NULL;
	store        *none = (store *) 1;

	(void) state;
	s = open_ok(dir, &v2);
	assert_int_equal(store_schema_version(s), 2);
	/* The stamp is big-endian uint32 in table "meta". */
	{
		store_txn  *txn;
		const void *v;
		size_t      vlen;
		store_table meta = table_ok(s, "meta");

		assert_int_equal(store_read_begin(s, &txn), HV_OK);
		assert_int_equal(store_get(txn, meta, "schema_version", 14, &v, &vlen), HV_OK);
		assert_int_equal(vlen, 4);
		assert_memory_equal(v, "\0\0\0\2", 4);
		store_read_end(txn);
	}
	/* A newer program upgrades the store... */
	write_schema(s, "\0\0\0\5", 4);
	store_close(s);

	/* ...after which the older one is refused, with no handle. */
	assert_int_equal(store_open(&none, dir, &v2), HV_FAILED_PRECONDITION);
	assert_null(none);

	s = open_ok(dir, &v5);
	assert_int_equal(store_schema_version(s), 5);
	store_close(s);

	/* An even newer program sees the version recorded, not its own (it migrates). */
	s = open_ok(dir, &v7);
	assert_int_equal(store_schema_version(s), 5);
	/* A malformed record is data loss. */
	write_schema(s, "\0\5", 2);
	store_close(s);
	none = (store *) 1;
	assert_int_equal(store_open(&none, dir, &v7), HV_DATA_LOSS);
	assert_null(none);
	tmp_remove(dir);
}

/* ---- raw values ------------------------------------------------------------------------- */

typedef struct tables {
	store_table a;
	store_table b;
} tables;

static hv_status
crud_fn(store_txn *txn, void *arg)
{
	tables     *t = arg;
	const void *v;
	size_t      vlen;
	uint64_t    n;

	assert_int_equal(store_put(txn, t->a, "k1", 2, "v1", 2), HV_OK);
	assert_int_equal(store_put(txn, t->a, "k2", 2, "v2", 2), HV_OK);
	assert_int_equal(store_put(txn, t->a, "k1", 2, "v1b", 3), HV_OK); /* overwrite */
	assert_int_equal(store_put_new(txn, t->a, "k2", 2, "xx", 2), HV_ALREADY_EXISTS);
	assert_int_equal(store_put_new(txn, t->a, "k3", 2, "v3", 2), HV_OK);
	assert_int_equal(store_put(txn, t->a, "empty", 5, NULL, 0), HV_OK);
	assert_int_equal(store_put(txn, t->b, "k1", 2, "other", 5), HV_OK);
	/* Reads inside the write transaction see its own writes. */
	assert_int_equal(store_get(txn, t->a, "k1", 2, &v, &vlen), HV_OK);
	assert_int_equal(vlen, 3);
	assert_memory_equal(v, "v1b", 3);
	assert_int_equal(store_get(txn, t->a, "k2", 2, &v, &vlen), HV_OK);
	assert_memory_equal(v, "v2", 2); /* put_new left it alone */
	assert_int_equal(store_del(txn, t->a, "k3", 2), HV_OK);
	assert_int_equal(store_del(txn, t->a, "k3", 2), HV_NOT_FOUND);
	assert_int_equal(store_get(txn, t->a, "k3", 2, &v, &vlen), HV_NOT_FOUND);
	assert_null(v);
	assert_int_equal(store_count(txn, t->a, &n), HV_OK);
	assert_int_equal(n, 3);
	/* Presence only. */
	assert_int_equal(store_get(txn, t->a, "k2", 2, NULL, NULL), HV_OK);
	/* NOT_FOUND and ALREADY_EXISTS are answers: the transaction still commits. */
	return (HV_OK);
}

static hv_status
clear_fn(store_txn *txn, void *arg)
{
	return (store_clear(txn, *(store_table *) arg));
}

static void
test_put_get_del(void **state)
{
	char       *dir = tmp_dir();
	store      *s   = open_ok(dir, NULL);
	tables      t   = { table_ok(s, "a"), table_ok(s, "b") };
	store_txn  *txn;
	const void *v;
	size_t      vlen;

	(void) state;
	assert_int_not_equal(t.a, t.b);
	assert_int_equal(store_write(s, crud_fn, &t), HV_OK);
	expect_str(s, t.a, "k1", "v1b");
	expect_str(s, t.a, "k2", "v2");
	expect_str(s, t.a, "k3", NULL);
	expect_str(s, t.a, "empty", "");
	expect_str(s, t.b, "k1", "other");
	expect_str(s, t.b, "k2", NULL);
	assert_int_equal(count_of(s, t.a), 3);
	assert_int_equal(count_of(s, t.b), 1);

	/* Two read transactions at once on one thread, each its own snapshot. */
	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	assert_int_equal(put_str(s, t.a, "k4", "v4"), HV_OK);
	assert_int_equal(store_get(txn, t.a, "k4", 2, &v, &vlen), HV_NOT_FOUND);
	expect_str(s, t.a, "k4", "v4");
	/* Clearing empties one table, in write transactions only. */
	assert_int_equal(store_clear(txn, t.a), HV_FAILED_PRECONDITION);
	assert_int_equal(store_clear(NULL, t.a), HV_INVALID_ARGUMENT);
	store_read_end(txn);
	assert_int_equal(store_write(s, clear_fn, &t.a), HV_OK);
	assert_int_equal(count_of(s, t.a), 0);
	assert_int_equal(count_of(s, t.b), 1);
	assert_int_equal(put_str(s, t.a, "k5", "v5"), HV_OK); /* the table stays */
	expect_str(s, t.a, "k5", "v5");
	store_read_end(NULL);
	store_close(s);
	tmp_remove(dir);
}

/* ---- appends ---------------------------------------------------------------------------- */

#define APPEND_ROWS 20000
#define APPEND_VAL  200 /* about an audit entry's */

typedef struct append_arg {
	store_table aa_table;
	bool        aa_append; /* store_append, else store_put */
} append_arg;

/* APPEND_ROWS rows under big-endian keys 1.., in key order. */
static hv_status
append_fill_fn(store_txn *txn, void *arg)
{
	append_arg *a = arg;
	uint8_t     key[8], val[APPEND_VAL];

	memset(val, 'v', sizeof(val));
	for (uint64_t i = 1; i <= APPEND_ROWS; i++) {
		hv_status rv;

		hv_put_be64(key, i);
		rv = a->aa_append
		    ? store_append(txn, a->aa_table, key, sizeof(key), val, sizeof(val))
		    : store_put(txn, a->aa_table, key, sizeof(key), val, sizeof(val));
		if (rv != HV_OK) {
			return (rv);
		}
	}
	return (HV_OK);
}

static hv_status
append_refused_fn(store_txn *txn, void *arg)
{
	store_table t = *(store_table *) arg;
	uint8_t     key[8];
	const void *v;
	size_t      vl;

	hv_put_be64(key, APPEND_ROWS); /* the last key: present */
	assert_int_equal(store_append(txn, t, key, sizeof(key), "x", 1), HV_ALREADY_EXISTS);
	hv_put_be64(key, 7); /* before the last */
	assert_int_equal(store_append(txn, t, key, sizeof(key), "x", 1), HV_ALREADY_EXISTS);
	hv_put_be64(key, 0); /* absent, but before the last: refused all the same */
	assert_int_equal(store_append(txn, t, key, sizeof(key), "x", 1), HV_ALREADY_EXISTS);
	assert_int_equal(store_get(txn, t, key, sizeof(key), NULL, NULL), HV_NOT_FOUND);
	hv_put_be64(key, 7);
	assert_int_equal(store_get(txn, t, key, sizeof(key), &v, &vl), HV_OK);
	assert_int_equal(vl, APPEND_VAL); /* left alone */
	hv_put_be64(key, APPEND_ROWS + 1);
	assert_int_equal(store_append(txn, t, key, sizeof(key), "x", 1), HV_OK);
	assert_int_equal(store_append(txn, t, "", 0, "x", 1), HV_INVALID_ARGUMENT);
	return (HV_OK);
}

/* The store's used bytes after APPEND_ROWS rows in key order, by store_append or store_put. */
static size_t
append_used(bool append)
{
	char         *dir = tmp_dir();
	store_options o   = { .no_sync = true };
	store        *s   = open_ok(dir, &o);
	append_arg    a   = { table_ok(s, "log"), append };
	size_t        map, used;

	assert_int_equal(store_write(s, append_fill_fn, &a), HV_OK);
	assert_int_equal(store_stats(s, &map, &used), HV_OK);
	if (append) {
		assert_int_equal(store_write(s, append_refused_fn, &a.aa_table), HV_OK);
	}
	store_close(s);
	tmp_remove(dir);
	return (used);
}

/* store_append refuses a key that is not after the last and writes nothing then; rows in key
 * order take fewer pages than by store_put (LMDB splits the last page at the new key). */
static void
test_append(void **state)
{
	size_t appended = append_used(true), put = append_used(false);

	(void) state;
	print_message("store_append: %zu bytes used, store_put: %zu\n", appended, put);
	assert_true(appended < put);
}

/* ---- cursors ---------------------------------------------------------------------------- */

static const char *const cursor_keys[] = { "b", "\xff", "a", "c", "\x01", "ab" };
/* The same keys in unsigned byte order. */
static const char *const cursor_sorted[] = { "\x01", "a", "ab", "b", "c", "\xff" };

static hv_status
cursor_fill_fn(store_txn *txn, void *arg)
{
	store_table t = *(store_table *) arg;

	for (size_t i = 0; i < sizeof(cursor_keys) / sizeof(cursor_keys[0]); i++) {
		hv_status rv = store_put(txn, t, cursor_keys[i], strlen(cursor_keys[i]),
		    cursor_keys[i], strlen(cursor_keys[i]));
		if (rv != HV_OK) {
			return (rv);
		}
	}
	return (HV_OK);
}

/* Deletes every key that starts with 'a' while walking the table. */
static hv_status
cursor_del_fn(store_txn *txn, void *arg)
{
	store_table   t = *(store_table *) arg;
	store_cursor *c;
	const void   *k;
	size_t        kl;
	hv_status     rv;
	int           seen = 0;

	assert_int_equal(store_cursor_open(txn, t, &c), HV_OK);
	rv = store_cursor_seek(c, NULL, 0, &k, &kl, NULL, NULL);
	while (rv == HV_OK) {
		seen++;
		if (((const char *) k)[0] == 'a') {
			assert_int_equal(store_cursor_del(c), HV_OK);
		}
		rv = store_cursor_next(c, &k, &kl, NULL, NULL);
	}
	assert_int_equal(rv, HV_NOT_FOUND);
	assert_int_equal(seen, 6); /* deleting did not make the walk skip an entry */
	store_cursor_close(c);
	return (HV_OK);
}

static void
test_cursor(void **state)
{
	char         *dir = tmp_dir();
	store        *s   = open_ok(dir, NULL);
	store_table   t   = table_ok(s, "cur");
	store_table   e   = table_ok(s, "empty");
	store_txn    *txn;
	store_cursor *c;
	store_cursor *left;
	const void   *k;
	const void   *v;
	size_t        kl;
	size_t        vl;
	size_t        i;

	(void) state;
	assert_int_equal(store_write(s, cursor_fill_fn, &t), HV_OK);

	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	assert_int_equal(store_cursor_open(txn, t, &c), HV_OK);
	/* Full walk in unsigned byte order. */
	i = 0;
	for (hv_status rv = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); rv == HV_OK;
	     rv           = store_cursor_next(c, &k, &kl, &v, &vl)) {
		assert_true(i < 6);
		assert_int_equal(kl, strlen(cursor_sorted[i]));
		assert_memory_equal(k, cursor_sorted[i], kl);
		assert_int_equal(vl, kl);
		assert_memory_equal(v, k, kl);
		i++;
	}
	assert_int_equal(i, 6);
	assert_int_equal(store_cursor_next(c, &k, &kl, &v, &vl), HV_NOT_FOUND);
	assert_null(k);
	/* Seek lands on the first key >= the one given. */
	assert_int_equal(store_cursor_seek(c, "ab", 2, &k, &kl, NULL, NULL), HV_OK);
	assert_int_equal(kl, 2);
	assert_memory_equal(k, "ab", 2);
	assert_int_equal(store_cursor_seek(c, "aa", 2, &k, &kl, NULL, NULL), HV_OK);
	assert_memory_equal(k, "ab", 2);
	assert_int_equal(store_cursor_seek(c, "ac", 2, &k, &kl, NULL, NULL), HV_OK);
	assert_int_equal(kl, 1);
	assert_memory_equal(k, "b", 1);
	assert_int_equal(store_cursor_next(c, &k, &kl, NULL, NULL), HV_OK);
	assert_memory_equal(k, "c", 1);
	assert_int_equal(store_cursor_seek(c, "\xff\x01", 2, &k, &kl, NULL, NULL), HV_NOT_FOUND);
	/* Deleting through a read transaction's cursor is refused. */
	assert_int_equal(store_cursor_seek(c, NULL, 0, NULL, NULL, NULL, NULL), HV_OK);
	assert_int_equal(store_cursor_del(c), HV_FAILED_PRECONDITION);
	store_cursor_close(c);
	/* An empty table. */
	assert_int_equal(store_cursor_open(txn, e, &c), HV_OK);
	assert_int_equal(store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl), HV_NOT_FOUND);
	assert_int_equal(store_cursor_next(c, &k, &kl, &v, &vl), HV_NOT_FOUND);
	store_cursor_close(c);
	/* A cursor left open when its transaction ends is closed underneath and refuses use. */
	assert_int_equal(store_cursor_open(txn, t, &left), HV_OK);
	store_read_end(txn);
	assert_int_equal(store_cursor_seek(left, NULL, 0, &k, &kl, &v, &vl),
	    HV_FAILED_PRECONDITION);
	store_cursor_close(left);
	store_cursor_close(NULL);

	assert_int_equal(store_write(s, cursor_del_fn, &t), HV_OK);
	assert_int_equal(count_of(s, t), 4);
	expect_str(s, t, "a", NULL);
	expect_str(s, t, "ab", NULL);
	expect_str(s, t, "b", "b");
	expect_str(s, t, "\x01", "\x01");
	store_close(s);
	tmp_remove(dir);
}

/* ---- protobuf messages ------------------------------------------------------------------ */

typedef struct msg_args {
	store_table             ma_table;
	const char             *ma_key;
	const ProtobufCMessage *ma_msg;
} msg_args;

static hv_status
put_msg_fn(store_txn *txn, void *arg)
{
	msg_args *a = arg;

	return (store_put_msg(txn, a->ma_table, a->ma_key, strlen(a->ma_key), a->ma_msg));
}

static hv_status
get_msg(store *s, store_table t, const char *key, Haven__Rpc__V1__Request **out)
{
	store_txn        *txn;
	ProtobufCMessage *m = (ProtobufCMessage *) 1;
	hv_status         rv;

	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	rv =
	    store_get_msg(txn, t, key, strlen(key), &haven__rpc__v1__request__descriptor, NULL, &m);
	store_read_end(txn); /* the message is a copy: it outlives the transaction */
	if (rv != HV_OK) {
		assert_null(m);
	}
	*out = (Haven__Rpc__V1__Request *) m;
	return (rv);
}

static void
test_msg(void **state)
{
	char                     *dir    = tmp_dir();
	store                    *s      = open_ok(dir, NULL);
	store_table               t      = table_ok(s, "msgs");
	Haven__Rpc__V1__Request   req    = HAVEN__RPC__V1__REQUEST__INIT;
	Haven__Rpc__V1__Request   empty  = HAVEN__RPC__V1__REQUEST__INIT;
	Haven__Rpc__V1__Metadata  md     = HAVEN__RPC__V1__METADATA__INIT;
	Haven__Rpc__V1__Metadata *mds[1] = { &md };
	Haven__Rpc__V1__Request  *got;
	uint8_t                   payload[300];
	msg_args                  a;

	(void) state;
	for (size_t i = 0; i < sizeof(payload); i++) {
		payload[i] = (uint8_t) (i * 7);
	}
	md.key              = "x-org";
	md.value            = "org-42";
	req.method          = "haven.health.v1.Health/Check";
	req.request_id      = 1234567890123ULL;
	req.timeout_ms      = 2500;
	req.n_metadata      = 1;
	req.metadata        = mds;
	req.idempotency_key = "idem-1";
	req.payload.len     = sizeof(payload);
	req.payload.data    = payload;

	a = (msg_args) { t, "req", &req.base };
	assert_int_equal(store_write(s, put_msg_fn, &a), HV_OK);
	assert_int_equal(get_msg(s, t, "req", &got), HV_OK);
	assert_string_equal(got->method, req.method);
	assert_true(got->request_id == req.request_id);
	assert_int_equal(got->timeout_ms, 2500);
	assert_int_equal(got->n_metadata, 1);
	assert_string_equal(got->metadata[0]->key, "x-org");
	assert_string_equal(got->metadata[0]->value, "org-42");
	assert_string_equal(got->idempotency_key, "idem-1");
	assert_int_equal(got->payload.len, sizeof(payload));
	assert_memory_equal(got->payload.data, payload, sizeof(payload));
	protobuf_c_message_free_unpacked(&got->base, NULL);

	/* A message with every field at its default packs to zero bytes and still round-trips. */
	a = (msg_args) { t, "empty", &empty.base };
	assert_int_equal(store_write(s, put_msg_fn, &a), HV_OK);
	expect_str(s, t, "empty", "");
	assert_int_equal(get_msg(s, t, "empty", &got), HV_OK);
	assert_int_equal(got->request_id, 0);
	protobuf_c_message_free_unpacked(&got->base, NULL);

	/* Missing, and bytes that are not a Request. */
	assert_int_equal(get_msg(s, t, "nope", &got), HV_NOT_FOUND);
	assert_int_equal(put_str(s, t, "bad1",
	                     "\x0a\x10"
	                     "a"),
	    HV_OK); /* length past the end */
	assert_int_equal(get_msg(s, t, "bad1", &got), HV_DATA_LOSS);
	assert_int_equal(put_str(s, t, "bad2", "\x0f\x01"), HV_OK); /* wire type 7 */
	assert_int_equal(get_msg(s, t, "bad2", &got), HV_DATA_LOSS);
	store_close(s);
	tmp_remove(dir);
}

/* ---- argument checks -------------------------------------------------------------------- */

typedef struct bad_args {
	store      *ba_store;
	store_table ba_table;
} bad_args;

static hv_status
nested_fn(store_txn *txn, void *arg)
{
	(void) txn;
	(void) arg;
	return (HV_OK);
}

static hv_status
bad_write_fn(store_txn *txn, void *arg)
{
	bad_args *a = arg;
	char      key[512];
	uint64_t  n;

	memset(key, 'k', sizeof(key));
	assert_int_equal(store_put(txn, a->ba_table, key, 512, "v", 1), HV_INVALID_ARGUMENT);
	assert_int_equal(store_put(txn, a->ba_table, key, 511, "v", 1), HV_OK);
	assert_int_equal(store_put(txn, a->ba_table, key, 0, "v", 1), HV_INVALID_ARGUMENT);
	assert_int_equal(store_put(txn, a->ba_table, NULL, 1, "v", 1), HV_INVALID_ARGUMENT);
	assert_int_equal(store_put(txn, a->ba_table, "k", 1, NULL, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(store_put(NULL, a->ba_table, "k", 1, "v", 1), HV_INVALID_ARGUMENT);
	assert_int_equal(store_put_new(txn, a->ba_table, key, 600, "v", 1), HV_INVALID_ARGUMENT);
	assert_int_equal(store_del(txn, a->ba_table, key, 0), HV_INVALID_ARGUMENT);
	assert_int_equal(store_put_msg(txn, a->ba_table, "k", 1, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_count(txn, a->ba_table, NULL), HV_INVALID_ARGUMENT);
	/* A table handle that does not exist. */
	assert_int_equal(store_count(txn, 999, &n), HV_INVALID_ARGUMENT);
	/* store_write inside store_write on one thread is refused, not a deadlock. */
	assert_int_equal(store_write(a->ba_store, nested_fn, NULL), HV_FAILED_PRECONDITION);
	/* Argument errors do not spoil the transaction: the 511-byte key commits. */
	return (HV_OK);
}

static void
test_bad_args(void **state)
{
	char                   *dir  = tmp_dir();
	store                  *s    = open_ok(dir, NULL);
	store                  *none = (store *) 1;
	bad_args                a    = { s, table_ok(s, "t") };
	store_table             t;
	store_txn              *txn = (store_txn *) 1;
	store_cursor           *c;
	ProtobufCMessage       *m;
	Haven__Rpc__V1__Request req = HAVEN__RPC__V1__REQUEST__INIT;
	char                    name[80];
	char                    key[512];
	const void             *v;
	size_t                  vl;
	uint64_t                n;
	size_t                  map;
	size_t                  used;
	store_options           o = { .map_size = 8 * MIB, .max_map_size = 4 * MIB };

	(void) state;
	memset(key, 'k', sizeof(key));
	assert_int_equal(store_open(NULL, dir, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_open(&none, NULL, NULL), HV_INVALID_ARGUMENT);
	assert_null(none);
	none = (store *) 1;
	assert_int_equal(store_open(&none, "", NULL), HV_INVALID_ARGUMENT);
	assert_null(none);
	assert_int_equal(store_open(&none, dir, &o), HV_INVALID_ARGUMENT); /* map > max */

	/* Table names: 1..63 bytes of [a-z0-9_.]. */
	assert_int_equal(store_table_open(s, "", &t), HV_INVALID_ARGUMENT);
	assert_int_equal(store_table_open(s, "Upper", &t), HV_INVALID_ARGUMENT);
	assert_int_equal(store_table_open(s, "with space", &t), HV_INVALID_ARGUMENT);
	assert_int_equal(store_table_open(s, "a/b", &t), HV_INVALID_ARGUMENT);
	assert_int_equal(store_table_open(s, "caf\xc3\xa9", &t), HV_INVALID_ARGUMENT);
	assert_int_equal(store_table_open(s, NULL, &t), HV_INVALID_ARGUMENT);
	assert_int_equal(store_table_open(s, "ok", NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_table_open(NULL, "ok", &t), HV_INVALID_ARGUMENT);
	memset(name, 'n', sizeof(name));
	name[64] = '\0';
	assert_int_equal(store_table_open(s, name, &t), HV_INVALID_ARGUMENT);
	name[63] = '\0';
	assert_int_equal(store_table_open(s, name, &t), HV_OK);
	assert_int_equal(store_table_open(s, "cap.v1_holds.2", &t), HV_OK);

	assert_int_equal(store_write(s, bad_write_fn, &a), HV_OK);
	assert_int_equal(store_write(s, NULL, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_write(NULL, nested_fn, NULL), HV_INVALID_ARGUMENT);

	/* Reads. */
	assert_int_equal(store_read_begin(NULL, &txn), HV_INVALID_ARGUMENT);
	assert_int_equal(store_read_begin(s, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	assert_int_equal(store_get(txn, a.ba_table, key, 511, &v, &vl), HV_OK);
	assert_int_equal(store_get(txn, a.ba_table, key, 512, &v, &vl), HV_INVALID_ARGUMENT);
	assert_int_equal(store_get(txn, a.ba_table, key, 0, &v, &vl), HV_INVALID_ARGUMENT);
	assert_int_equal(store_get(NULL, a.ba_table, key, 1, &v, &vl), HV_INVALID_ARGUMENT);
	assert_int_equal(store_get_msg(txn, a.ba_table, "k", 1, NULL, NULL, &m),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(store_get_msg(txn, a.ba_table, "k", 1,
	                     &haven__rpc__v1__request__descriptor, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	/* Writes in a read transaction. */
	assert_int_equal(store_put(txn, a.ba_table, "k", 1, "v", 1), HV_FAILED_PRECONDITION);
	assert_int_equal(store_put_new(txn, a.ba_table, "k", 1, "v", 1), HV_FAILED_PRECONDITION);
	assert_int_equal(store_del(txn, a.ba_table, key, 511), HV_FAILED_PRECONDITION);
	assert_int_equal(store_put_msg(txn, a.ba_table, "k", 1, &req.base), HV_FAILED_PRECONDITION);
	assert_int_equal(store_cursor_open(txn, a.ba_table, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_cursor_open(NULL, a.ba_table, &c), HV_INVALID_ARGUMENT);
	assert_int_equal(store_cursor_open(txn, a.ba_table, &c), HV_OK);
	assert_int_equal(store_cursor_seek(c, key, 512, NULL, NULL, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(store_cursor_seek(NULL, NULL, 0, NULL, NULL, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(store_cursor_next(NULL, NULL, NULL, NULL, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_cursor_del(NULL), HV_INVALID_ARGUMENT);
	store_cursor_close(c);
	assert_int_equal(store_count(txn, a.ba_table, &n), HV_OK);
	assert_int_equal(n, 1);
	store_read_end(txn);

	assert_int_equal(store_stats(NULL, &map, &used), HV_INVALID_ARGUMENT);
	assert_int_equal(store_stats(s, NULL, &used), HV_INVALID_ARGUMENT);
	assert_int_equal(store_backup(NULL, dir), HV_INVALID_ARGUMENT);
	assert_int_equal(store_backup(s, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(store_schema_version(NULL), 0);
	store_close(s);
	tmp_remove(dir);
}

/* ---- aborts ----------------------------------------------------------------------------- */

static hv_status
abort_fn(store_txn *txn, void *arg)
{
	store_table t = *(store_table *) arg;

	assert_int_equal(store_put(txn, t, "x", 1, "1", 1), HV_OK);
	assert_int_equal(store_del(txn, t, "keep", 4), HV_OK);
	return (HV_ABORTED);
}

static void
test_fn_error_aborts(void **state)
{
	char       *dir = tmp_dir();
	store      *s   = open_ok(dir, NULL);
	store_table t   = table_ok(s, "t");

	(void) state;
	assert_int_equal(put_str(s, t, "keep", "k"), HV_OK);
	assert_int_equal(store_write(s, abort_fn, &t), HV_ABORTED);
	expect_str(s, t, "x", NULL);
	expect_str(s, t, "keep", "k");
	assert_int_equal(count_of(s, t), 1);
	store_close(s);
	tmp_remove(dir);
}

/* ---- map growth ------------------------------------------------------------------------- */

#define BIG_VAL 4000 /* one overflow page each */

typedef struct bulk {
	store_table bk_table;
	char        bk_prefix;
	int         bk_first;
	int         bk_count;
	int         bk_runs; /* how many times the function ran */
	uint8_t     bk_val[BIG_VAL];
} bulk;

static hv_status
bulk_fn(store_txn *txn, void *arg)
{
	bulk     *b = arg;
	char      key[16];
	hv_status rv;

	b->bk_runs++;
	for (int i = b->bk_first; i < b->bk_first + b->bk_count; i++) {
		snprintf(key, sizeof(key), "%c%06d", b->bk_prefix, i);
		memcpy(b->bk_val, key, 7); /* every value tells its key */
		if ((rv = store_put(txn, b->bk_table, key, 7, b->bk_val, BIG_VAL)) != HV_OK) {
			return (rv);
		}
	}
	return (HV_OK);
}

static bulk *
bulk_new(store_table t, char prefix)
{
	bulk *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->bk_table  = t;
	b->bk_prefix = prefix;
	memset(b->bk_val, 'v', sizeof(b->bk_val));
	return (b);
}

static void
expect_bulk(store *s, store_table t, char prefix, int i)
{
	store_txn  *txn;
	const void *v;
	size_t      vl;
	char        key[16];

	snprintf(key, sizeof(key), "%c%06d", prefix, i);
	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	assert_int_equal(store_get(txn, t, key, 7, &v, &vl), HV_OK);
	assert_int_equal(vl, BIG_VAL);
	assert_memory_equal(v, key, 7);
	store_read_end(txn);
}

static void
test_map_growth(void **state)
{
	char         *dir = tmp_dir();
	store_options o   = { .map_size = 1 * MIB };
	store        *s   = open_ok(dir, &o);
	store_table   t   = table_ok(s, "bulk");
	bulk         *b   = bulk_new(t, 'a');
	size_t        map, grown;
	size_t        used;

	(void) state;
	assert_int_equal(store_stats(s, &map, &used), HV_OK);
	assert_int_equal(map, 1 * MIB);
	/* ~12 MiB in 12 transactions of ~1 MiB. */
	for (int i = 0; i < 12; i++) {
		b->bk_first = i * 256;
		b->bk_count = 256;
		assert_int_equal(store_write(s, bulk_fn, b), HV_OK);
	}
	/* ~8 MiB in one transaction: full at 16 MiB of map at the latest, so it must be rerun
	 * after growth and then succeed. */
	b->bk_prefix = 'b';
	b->bk_first  = 0;
	b->bk_count  = 2048;
	b->bk_runs   = 0;
	assert_int_equal(store_write(s, bulk_fn, b), HV_OK);
	assert_true(b->bk_runs > 1);

	assert_int_equal(store_stats(s, &map, &used), HV_OK);
	assert_true(map >= 32 * MIB);
	assert_true(used >= 20 * MIB);
	assert_true(used <= map);
	assert_int_equal(count_of(s, t), 12 * 256 + 2048);
	expect_bulk(s, t, 'a', 0);
	expect_bulk(s, t, 'a', 12 * 256 - 1);
	expect_bulk(s, t, 'b', 0);
	expect_bulk(s, t, 'b', 2047);
	store_close(s);

	/* Reopened with a map smaller than the data: the map it had grown to (LMDB alone would
	 * map exactly what is used, and grow again at the first write). */
	grown = map;
	s     = open_ok(dir, &o);
	t     = table_ok(s, "bulk");
	assert_int_equal(store_stats(s, &map, &used), HV_OK);
	assert_int_equal(map, grown);
	expect_bulk(s, t, 'b', 1000);
	b->bk_table  = t;
	b->bk_prefix = 'c';
	b->bk_count  = 10;
	assert_int_equal(store_write(s, bulk_fn, b), HV_OK);
	expect_bulk(s, t, 'c', 9);
	assert_int_equal(store_stats(s, &map, &used), HV_OK);
	assert_int_equal(map, grown); /* no growth for the write */
	store_close(s);

	/* A larger map asked for than the one stored: the one asked for. A maximum below the
	 * stored map: the maximum (but never less than the data). */
	o.map_size = 4 * grown;
	s          = open_ok(dir, &o);
	assert_int_equal(store_stats(s, &map, &used), HV_OK);
	assert_int_equal(map, 4 * grown);
	store_close(s);
	o.map_size     = 1 * MIB;
	o.max_map_size = grown / 2;
	s              = open_ok(dir, &o);
	assert_int_equal(store_stats(s, &map, &used), HV_OK);
	assert_int_equal(map, used > grown / 2 ? used : grown / 2);
	store_close(s);
	free(b);
	tmp_remove(dir);
}

static void
test_max_map(void **state)
{
	char         *dir = tmp_dir();
	store_options o   = { .map_size = 1 * MIB, .max_map_size = 4 * MIB };
	store        *s   = open_ok(dir, &o);
	store_table   t   = table_ok(s, "bulk");
	bulk         *b   = bulk_new(t, 'a');
	size_t        map;
	size_t        used;

	(void) state;
	assert_int_equal(put_str(s, t, "before", "1"), HV_OK);
	b->bk_count = 2048; /* 8 MiB */
	assert_int_equal(store_write(s, bulk_fn, b), HV_RESOURCE_EXHAUSTED);
	assert_int_equal(store_stats(s, &map, &used), HV_OK);
	assert_int_equal(map, 4 * MIB);
	/* Nothing of it stored, and the store is still usable. */
	assert_int_equal(count_of(s, t), 1);
	expect_str(s, t, "before", "1");
	assert_int_equal(put_str(s, t, "after", "2"), HV_OK);
	expect_str(s, t, "after", "2");
	b->bk_count = 100; /* 400 KB fits */
	assert_int_equal(store_write(s, bulk_fn, b), HV_OK);
	expect_bulk(s, t, 'a', 99);
	store_close(s);
	free(b);
	tmp_remove(dir);
}

/* ---- failed commits --------------------------------------------------------------------- */

typedef struct fatal_rec {
	int       fr_calls;
	hv_status fr_code;
	char      fr_what[160];
} fatal_rec;

static void
fatal_hook(void *arg, hv_status code, const char *what)
{
	fatal_rec *f = arg;

	f->fr_calls++;
	f->fr_code = code;
	snprintf(f->fr_what, sizeof(f->fr_what), "%s", what);
}

/* Runs put of a value of n bytes under a file-size limit of the data file's current size, so
 * that LMDB's write of the new pages fails with EFBIG: a real commit failure. */
static hv_status
write_over_limit(store *s, const char *dir, store_table t, const char *key, size_t n)
{
	struct rlimit old;
	struct rlimit lim;
	struct stat   st;
	void (*old_sig)(int);
	char     *data = path_join(dir, "data.mdb");
	uint8_t  *val  = calloc(1, n);
	kv        a    = { t, key, val, n };
	hv_status rv;

	assert_non_null(val);
	assert_int_equal(stat(data, &st), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	old_sig      = signal(SIGXFSZ, SIG_IGN);
	lim          = old;
	lim.rlim_cur = (rlim_t) st.st_size;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rv = store_write(s, put_fn, &a);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_sig);
	free(val);
	free(data);
	return (rv);
}

static void
test_commit_failure(void **state)
{
	char         *dir = tmp_dir();
	fatal_rec     f   = { 0, HV_OK, "" };
	store_options o   = { .fatal = fatal_hook, .fatal_arg = &f };
	store        *s   = open_ok(dir, &o);
	store_table   t   = table_ok(s, "t");

	(void) state;
	assert_int_equal(put_str(s, t, "before", "1"), HV_OK);
	assert_int_equal(write_over_limit(s, dir, t, "lost", MIB), HV_UNAVAILABLE);
	assert_int_equal(f.fr_calls, 1);
	assert_int_not_equal(f.fr_code, HV_OK);
	assert_non_null(strstr(f.fr_what, "commit"));
	/* Every later write is refused, without calling the hook again, even the ones that
	 * would now succeed. */
	assert_int_equal(put_str(s, t, "later", "2"), HV_UNAVAILABLE);
	assert_int_equal(put_str(s, t, "later", "2"), HV_UNAVAILABLE);
	assert_int_equal(f.fr_calls, 1);
	/* Reads still work, on the intact store. */
	expect_str(s, t, "before", "1");
	expect_str(s, t, "lost", NULL);
	expect_str(s, t, "later", NULL);
	store_close(s);

	/* After a restart the failed transaction is absent and writes work again. */
	s = open_ok(dir, &o);
	t = table_ok(s, "t");
	expect_str(s, t, "before", "1");
	expect_str(s, t, "lost", NULL);
	assert_int_equal(put_str(s, t, "later", "2"), HV_OK);
	expect_str(s, t, "later", "2");
	assert_int_equal(f.fr_calls, 1);
	store_close(s);
	tmp_remove(dir);
}

/* The default hook logs and exits with 75. */
static void
test_commit_failure_default_exits(void **state)
{
	char *dir = tmp_dir();
	pid_t pid;
	int   status = 0;

	(void) state;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		store      *s = NULL;
		store_table t;
		if (store_open(&s, dir, NULL) != HV_OK || store_table_open(s, "t", &t) != HV_OK ||
		    put_str(s, t, "before", "1") != HV_OK) {
			_exit(2);
		}
		(void) write_over_limit(s, dir, t, "lost", MIB);
		_exit(3); /* not reached: the hook exits */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 75);
	tmp_remove(dir);
}

/* ---- several processes ------------------------------------------------------------------ */

#define PROC_WRITES 500

typedef struct incr {
	store_table in_table;
	int         in_who;
	int         in_i;
	uint64_t    in_wrote; /* the counter value of the last run of incr_fn */
	uint8_t     in_val[1000];
} incr;

/* Read-modify-write of the shared counter plus a key of our own, in one transaction. */
static hv_status
incr_fn(store_txn *txn, void *arg)
{
	incr       *a = arg;
	const void *v;
	size_t      vl;
	uint64_t    n = 0;
	uint8_t     be[8];
	char        key[32];
	hv_status   rv;

	rv = store_get(txn, a->in_table, "counter", 7, &v, &vl);
	if (rv == HV_OK && vl == 8) {
		n = hv_get_be64(v);
	} else if (rv != HV_NOT_FOUND) {
		return (rv == HV_OK ? HV_DATA_LOSS : rv);
	}
	hv_put_be64(be, n + 1);
	a->in_wrote = n + 1;
	if ((rv = store_put(txn, a->in_table, "counter", 7, be, 8)) != HV_OK) {
		return (rv);
	}
	snprintf(key, sizeof(key), "w%d-%05d", a->in_who, a->in_i);
	return (store_put(txn, a->in_table, key, strlen(key), a->in_val, sizeof(a->in_val)));
}

/* A child process's whole life; returns its exit code. No cmocka here. */
static int
proc_worker(const char *dir, int who)
{
	/* A small map so that both processes grow it under each other's feet. */
	store_options o = { .map_size = 256 * 1024 };
	store        *s = NULL;
	incr          a;
	int           code = 0;

	memset(&a, 0, sizeof(a));
	if (store_open(&s, dir, &o) != HV_OK || store_table_open(s, "c", &a.in_table) != HV_OK) {
		return (10);
	}
	a.in_who = who;
	memset(a.in_val, 'a' + who, sizeof(a.in_val));
	for (int i = 0; i < PROC_WRITES && code == 0; i++) {
		a.in_i = i;
		if (store_write(s, incr_fn, &a) != HV_OK) {
			code = 11;
		}
	}
	store_close(s);
	return (code);
}

static uint64_t
counter_of(store *s, store_table t)
{
	store_txn  *txn;
	const void *v;
	size_t      vl;
	uint64_t    n;

	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	assert_int_equal(store_get(txn, t, "counter", 7, &v, &vl), HV_OK);
	assert_int_equal(vl, 8);
	n = hv_get_be64(v);
	store_read_end(txn);
	return (n);
}

static void
test_two_processes(void **state)
{
	char       *dir = tmp_dir();
	store      *s   = open_ok(dir, NULL);
	store_table t;
	pid_t       pids[2];
	int         status;

	(void) state;
	(void) table_ok(s, "c");
	store_close(s); /* a child must not inherit an open handle it would use */

	fflush(NULL);
	for (int c = 0; c < 2; c++) {
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			_exit(proc_worker(dir, c));
		}
	}
	for (int c = 0; c < 2; c++) {
		assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}

	s = open_ok(dir, NULL);
	t = table_ok(s, "c");
	assert_int_equal(counter_of(s, t), 2 * PROC_WRITES);
	assert_int_equal(count_of(s, t), 2 * PROC_WRITES + 1);
	{
		store_txn *txn;
		char       key[32];
		assert_int_equal(store_read_begin(s, &txn), HV_OK);
		for (int c = 0; c < 2; c++) {
			for (int i = 0; i < PROC_WRITES; i++) {
				snprintf(key, sizeof(key), "w%d-%05d", c, i);
				assert_int_equal(store_get(txn, t, key, strlen(key), NULL, NULL),
				    HV_OK);
			}
		}
		store_read_end(txn);
	}
	store_close(s);
	tmp_remove(dir);
}

/* Another process grows the map past ours: our next transaction adopts the new size. */
static int
resized_child(const char *dir, int ready, int go)
{
	store_options o = { .map_size = 256 * 1024 };
	store        *s = NULL;
	store_txn    *txn;
	store_table   t;
	size_t        map;
	size_t        used;
	char          ch;
	int           code = 0;

	if (store_open(&s, dir, &o) != HV_OK || store_table_open(s, "t", &t) != HV_OK) {
		return (10);
	}
	if (write(ready, "r", 1) != 1 || read(go, &ch, 1) != 1) {
		code = 11;
	} else if (store_read_begin(s, &txn) != HV_OK) {
		code = 12; /* MDB_MAP_RESIZED was not handled */
	} else {
		if (store_get(txn, t, "a000511", 7, NULL, NULL) != HV_OK) {
			code = 13;
		}
		store_read_end(txn);
		if (code == 0 && put_str(s, t, "child", "yes") != HV_OK) {
			code = 14;
		}
		if (code == 0 &&
		    (store_stats(s, &map, &used) != HV_OK || map < used || used <= 256 * 1024)) {
			code = 15;
		}
	}
	store_close(s);
	return (code);
}

static void
test_resized_by_other_process(void **state)
{
	char         *dir = tmp_dir();
	store_options o   = { .map_size = 256 * 1024 };
	store        *s   = open_ok(dir, &o);
	store_table   t   = table_ok(s, "t");
	bulk         *b;
	int           ready[2];
	int           go[2];
	pid_t         pid;
	int           status;
	char          ch;

	(void) state;
	store_close(s);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		close(go[1]);
		_exit(resized_child(dir, ready[1], go[0]));
	}
	close(ready[1]);
	close(go[0]);
	assert_int_equal(read(ready[0], &ch, 1), 1);

	s           = open_ok(dir, &o);
	t           = table_ok(s, "t");
	b           = bulk_new(t, 'a');
	b->bk_count = 512; /* ~2 MiB, far past the child's 256 KiB map */
	assert_int_equal(store_write(s, bulk_fn, b), HV_OK);
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	expect_str(s, t, "child", "yes");
	store_close(s);
	close(ready[0]);
	close(go[1]);
	free(b);
	tmp_remove(dir);
}

/* ---- several threads -------------------------------------------------------------------- */

#define THREAD_WRITERS 4
#define THREAD_READERS 4
#define THREAD_WRITES  150

typedef struct shared {
	store      *sh_store;
	store_table sh_table;
	atomic_int  sh_writers_left;
	atomic_int  sh_errors;
	atomic_int  sh_snapshots;
	char        sh_first[128]; /* the first error, for the failure message */
} shared;

static void shared_error(shared *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
shared_error(shared *sh, const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&sh->sh_errors, 1) == 0) {
		va_start(ap, fmt);
		vsnprintf(sh->sh_first, sizeof(sh->sh_first), fmt, ap);
		va_end(ap);
	}
}

typedef struct worker {
	shared *w_shared;
	int     w_who;
} worker;

static void *
writer_main(void *arg)
{
	worker *w = arg;
	incr   *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		shared_error(w->w_shared, "out of memory");
		goto out;
	}
	a->in_table = w->w_shared->sh_table;
	a->in_who   = w->w_who;
	memset(a->in_val, 'a' + w->w_who, sizeof(a->in_val));
	for (int i = 0; i < THREAD_WRITES; i++) {
		store_txn  *txn;
		const void *v;
		size_t      vl;
		hv_status   rv;

		a->in_i = i;
		rv      = store_write(w->w_shared->sh_store, incr_fn, a);
		if (rv != HV_OK) {
			shared_error(w->w_shared, "writer %d: %s", w->w_who, hv_status_name(rv));
			continue;
		}
		/* A read that begins after store_write returned sees the write. */
		if ((rv = store_read_begin(w->w_shared->sh_store, &txn)) != HV_OK) {
			shared_error(w->w_shared, "writer read_begin: %s", hv_status_name(rv));
			continue;
		}
		rv = store_get(txn, a->in_table, "counter", 7, &v, &vl);
		if (rv != HV_OK || vl != 8 || hv_get_be64(v) < a->in_wrote) {
			shared_error(w->w_shared, "writer %d wrote %llu, then read %s %llu",
			    w->w_who, (unsigned long long) a->in_wrote, hv_status_name(rv),
			    (unsigned long long) (rv == HV_OK && vl == 8 ? hv_get_be64(v) : 0));
		}
		store_read_end(txn);
	}
out:
	free(a);
	atomic_fetch_sub(&w->w_shared->sh_writers_left, 1);
	return (NULL);
}

/*
 * Each snapshot must be consistent: every transaction added one key and counted it. (Not
 * checked: that a thread's successive snapshots never go back. LMDB 0.9 can hand a reader
 * delayed inside mdb_txn_begin a snapshot newer than the current one, so the next one may be
 * older; see store_read_begin in store.h.)
 */
static void *
reader_main(void *arg)
{
	worker     *w  = arg;
	shared     *sh = w->w_shared;
	store_txn  *txn;
	const void *v;
	size_t      vl;
	uint64_t    n;
	uint64_t    entries;
	hv_status   rv;

	while (atomic_load(&sh->sh_writers_left) > 0) {
		if ((rv = store_read_begin(sh->sh_store, &txn)) != HV_OK) {
			shared_error(sh, "read_begin: %s", hv_status_name(rv));
			continue;
		}
		rv      = store_get(txn, sh->sh_table, "counter", 7, &v, &vl);
		n       = rv == HV_OK && vl == 8 ? hv_get_be64(v) : 0;
		entries = UINT64_MAX;
		if ((rv != HV_OK && rv != HV_NOT_FOUND) ||
		    store_count(txn, sh->sh_table, &entries) != HV_OK ||
		    entries != (n == 0 ? 0 : n + 1)) {
			shared_error(sh, "reader: get %s, counter %llu, %llu entries",
			    hv_status_name(rv), (unsigned long long) n,
			    (unsigned long long) entries);
		}
		store_read_end(txn);
		atomic_fetch_add(&sh->sh_snapshots, 1);
	}
	return (NULL);
}

static void *
ender_main(void *arg)
{
	store_read_end(arg);
	return (NULL);
}

static void
test_threads(void **state)
{
	char         *dir = tmp_dir();
	store_options o   = { .map_size = 256 * 1024 }; /* grows while readers read */
	shared        sh;
	worker        w[THREAD_WRITERS + THREAD_READERS];
	pthread_t     th[THREAD_WRITERS + THREAD_READERS];
	pthread_t     ender;
	store_txn    *txn;
	size_t        map;
	size_t        used;

	(void) state;
	sh.sh_store = open_ok(dir, &o);
	sh.sh_table = table_ok(sh.sh_store, "c");
	atomic_init(&sh.sh_writers_left, THREAD_WRITERS);
	atomic_init(&sh.sh_errors, 0);
	atomic_init(&sh.sh_snapshots, 0);
	sh.sh_first[0] = '\0';
	for (int i = 0; i < THREAD_WRITERS + THREAD_READERS; i++) {
		w[i].w_shared = &sh;
		w[i].w_who    = i;
		assert_int_equal(pthread_create(&th[i], NULL,
		                     i < THREAD_WRITERS ? writer_main : reader_main, &w[i]),
		    0);
	}
	for (int i = 0; i < THREAD_WRITERS + THREAD_READERS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
	}
	if (atomic_load(&sh.sh_errors) != 0) {
		fail_msg("%d errors, the first: %s", atomic_load(&sh.sh_errors), sh.sh_first);
	}
	assert_true(atomic_load(&sh.sh_snapshots) > 0);
	assert_int_equal(counter_of(sh.sh_store, sh.sh_table), THREAD_WRITERS * THREAD_WRITES);
	assert_int_equal(count_of(sh.sh_store, sh.sh_table), THREAD_WRITERS * THREAD_WRITES + 1);
	assert_int_equal(store_stats(sh.sh_store, &map, &used), HV_OK);
	assert_true(map > 256 * 1024);

	/* MDB_NOTLS: a read transaction may end on another thread than the one that began it. */
	assert_int_equal(store_read_begin(sh.sh_store, &txn), HV_OK);
	assert_int_equal(pthread_create(&ender, NULL, ender_main, txn), 0);
	assert_int_equal(pthread_join(ender, NULL), 0);
	assert_int_equal(put_str(sh.sh_store, sh.sh_table, "z", "after"), HV_OK);

	store_close(sh.sh_store);
	tmp_remove(dir);
}

/* ---- group commit ----------------------------------------------------------------------- */

#define GROUP_THREADS 16
#define GROUP_WRITES  200

/* One writer thread of a group test: incr_fn on the shared counter plus a key of its own. */
typedef struct group_arg {
	shared     *ga_shared;
	int         ga_writes;
	bool        ga_abort; /* the function writes, then returns HV_ABORTED */
	atomic_int *ga_runs;  /* runs of the write function, all threads */
	incr        ga_incr;
} group_arg;

static hv_status
group_fn(store_txn *txn, void *arg)
{
	group_arg *g = arg;
	hv_status  rv;

	atomic_fetch_add(g->ga_runs, 1);
	/* Whichever thread runs the batch, a store_write from inside a function is refused. */
	if (store_write(g->ga_shared->sh_store, nested_fn, NULL) != HV_FAILED_PRECONDITION) {
		return (HV_INTERNAL);
	}
	if ((rv = incr_fn(txn, &g->ga_incr)) != HV_OK) {
		return (rv);
	}
	return (g->ga_abort ? HV_ABORTED : HV_OK);
}

static void *
group_main(void *arg)
{
	group_arg  *g    = arg;
	shared     *sh   = g->ga_shared;
	hv_status   want = g->ga_abort ? HV_ABORTED : HV_OK;
	store_txn  *txn;
	const void *v;
	size_t      vl;
	hv_status   rv;

	for (int i = 0; i < g->ga_writes; i++) {
		g->ga_incr.in_i = i;
		if ((rv = store_write(sh->sh_store, group_fn, g)) != want) {
			shared_error(sh, "writer %d, write %d: %s", g->ga_incr.in_who, i,
			    hv_status_name(rv));
			continue;
		}
		if (rv != HV_OK) {
			continue;
		}
		/* Acknowledged means committed: a read that begins now sees it. */
		if ((rv = store_read_begin(sh->sh_store, &txn)) != HV_OK) {
			shared_error(sh, "read_begin: %s", hv_status_name(rv));
			continue;
		}
		rv = store_get(txn, sh->sh_table, "counter", 7, &v, &vl);
		if (rv != HV_OK || vl != 8 || hv_get_be64(v) < g->ga_incr.in_wrote) {
			shared_error(sh, "writer %d wrote %llu, then read %s", g->ga_incr.in_who,
			    (unsigned long long) g->ga_incr.in_wrote, hv_status_name(rv));
		}
		store_read_end(txn);
	}
	atomic_fetch_sub(&sh->sh_writers_left, 1);
	return (NULL);
}

/* Starts GROUP_THREADS writers of `writes` writes each (odd ones aborting when odd_abort),
 * runs between() on this thread meanwhile (may be NULL), and joins them. */
static void
group_run(shared *sh, int writes, bool odd_abort, atomic_int *runs, void (*between)(shared *))
{
	group_arg *g = calloc(GROUP_THREADS, sizeof(*g));
	pthread_t  th[GROUP_THREADS];

	assert_non_null(g);
	atomic_init(&sh->sh_writers_left, GROUP_THREADS);
	atomic_init(&sh->sh_errors, 0);
	atomic_init(&sh->sh_snapshots, 0);
	sh->sh_first[0] = '\0';
	for (int i = 0; i < GROUP_THREADS; i++) {
		g[i].ga_shared        = sh;
		g[i].ga_writes        = writes;
		g[i].ga_abort         = odd_abort && i % 2 == 1;
		g[i].ga_runs          = runs;
		g[i].ga_incr.in_table = sh->sh_table;
		g[i].ga_incr.in_who   = i;
		memset(g[i].ga_incr.in_val, 'a' + i, sizeof(g[i].ga_incr.in_val));
		assert_int_equal(pthread_create(&th[i], NULL, group_main, &g[i]), 0);
	}
	if (between != NULL) {
		between(sh);
	}
	for (int i = 0; i < GROUP_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
	}
	free(g);
	if (atomic_load(&sh->sh_errors) != 0) {
		fail_msg("%d errors, the first: %s", atomic_load(&sh->sh_errors), sh->sh_first);
	}
}

/* Every key "w<who>-<i>" of writers who is present, or absent when present is false. */
static void
expect_writer_keys(store *s, store_table t, int who, int writes, bool present)
{
	store_txn *txn;
	char       key[32];

	assert_int_equal(store_read_begin(s, &txn), HV_OK);
	for (int i = 0; i < writes; i++) {
		snprintf(key, sizeof(key), "w%d-%05d", who, i);
		assert_int_equal(store_get(txn, t, key, strlen(key), NULL, NULL),
		    present ? HV_OK : HV_NOT_FOUND);
	}
	store_read_end(txn);
}

/* Tables opened while writers write: each runs in a transaction of its own. */
static void
open_tables_between(shared *sh)
{
	char name[16];

	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "x%d", i);
		(void) table_ok(sh->sh_store, name);
	}
}

static void
test_group_commit(void **state)
{
	char       *dir = tmp_dir();
	shared      sh;
	atomic_int  runs;
	uint64_t    before;
	uint64_t    commits;
	store_table x;

	(void) state;
	sh.sh_store = open_ok(dir, NULL); /* durable: every commit waits for fdatasync */
	sh.sh_table = table_ok(sh.sh_store, "c");
	atomic_init(&runs, 0);
	before = store_commit_count(sh.sh_store);
	assert_true(before >= 2); /* store_open's and the table's */
	group_run(&sh, GROUP_WRITES, false, &runs, open_tables_between);
	commits = store_commit_count(sh.sh_store) - before;

	assert_int_equal(counter_of(sh.sh_store, sh.sh_table), GROUP_THREADS * GROUP_WRITES);
	assert_int_equal(count_of(sh.sh_store, sh.sh_table), GROUP_THREADS * GROUP_WRITES + 1);
	for (int w = 0; w < GROUP_THREADS; w++) {
		expect_writer_keys(sh.sh_store, sh.sh_table, w, GROUP_WRITES, true);
	}
	assert_int_equal(atomic_load(&runs), GROUP_THREADS * GROUP_WRITES);
	/* 3200 writes and 4 table opens shared far fewer commits. */
	print_message("group commit: %d writes in %llu commits\n", GROUP_THREADS * GROUP_WRITES,
	    (unsigned long long) commits);
	assert_true(commits >= 5);
	assert_true(commits <= GROUP_THREADS * GROUP_WRITES / 4);
	assert_int_equal(store_write_queued(sh.sh_store), 0);
	x = table_ok(sh.sh_store, "x3");
	assert_int_equal(put_str(sh.sh_store, x, "k", "v"), HV_OK);
	expect_str(sh.sh_store, x, "k", "v");
	assert_int_equal(store_commit_count(NULL), 0);
	assert_int_equal(store_write_queued(NULL), 0);
	store_close(sh.sh_store);
	tmp_remove(dir);
}

/* Half the writers' functions write and then fail, in batches with the others' that succeed:
 * only the failing functions' changes are rolled back, counter increments included. */
static void
test_group_abort(void **state)
{
	char      *dir = tmp_dir();
	shared     sh;
	atomic_int runs;
	uint64_t   before;
	uint64_t   commits;
	int        writes = GROUP_WRITES / 2;
	int        ok     = GROUP_THREADS / 2 * writes;

	(void) state;
	sh.sh_store = open_ok(dir, NULL);
	sh.sh_table = table_ok(sh.sh_store, "c");
	atomic_init(&runs, 0);
	before = store_commit_count(sh.sh_store);
	group_run(&sh, writes, true, &runs, NULL);
	commits = store_commit_count(sh.sh_store) - before;

	assert_int_equal(counter_of(sh.sh_store, sh.sh_table), ok);
	assert_int_equal(count_of(sh.sh_store, sh.sh_table), ok + 1);
	for (int w = 0; w < GROUP_THREADS; w++) {
		expect_writer_keys(sh.sh_store, sh.sh_table, w, writes, w % 2 == 0);
	}
	assert_int_equal(atomic_load(&runs), GROUP_THREADS * writes);
	print_message("group abort: %d writes (%d acknowledged) in %llu commits\n",
	    GROUP_THREADS * writes, ok, (unsigned long long) commits);
	assert_true(commits <= (uint64_t) ok / 2);
	store_close(sh.sh_store);
	tmp_remove(dir);
}

/* A small map fills again and again under concurrent batches: each time the batch is rolled
 * back, the map grown, and every function of it run again. All writes land once. */
static void
test_group_map_growth(void **state)
{
	char         *dir = tmp_dir();
	store_options o   = { .map_size = 256 * 1024 };
	shared        sh;
	atomic_int    runs;
	size_t        map;
	size_t        used;
	int           writes = 50;
	int           all    = GROUP_THREADS * writes;
	uint64_t      before;

	(void) state;
	sh.sh_store = open_ok(dir, &o);
	sh.sh_table = table_ok(sh.sh_store, "c");
	atomic_init(&runs, 0);
	before = store_commit_count(sh.sh_store);
	group_run(&sh, writes, false, &runs, NULL);

	assert_int_equal(counter_of(sh.sh_store, sh.sh_table), all);
	assert_int_equal(count_of(sh.sh_store, sh.sh_table), all + 1);
	for (int w = 0; w < GROUP_THREADS; w++) {
		expect_writer_keys(sh.sh_store, sh.sh_table, w, writes, true);
	}
	assert_int_equal(store_stats(sh.sh_store, &map, &used), HV_OK);
	assert_true(map >= 1 * MIB); /* 800 values of 1000 bytes */
	assert_true(used <= map);
	print_message("group growth: %d writes, %d runs, %llu commits\n", all, atomic_load(&runs),
	    (unsigned long long) (store_commit_count(sh.sh_store) - before));
	assert_true(atomic_load(&runs) > all); /* some ran again after growth */
	assert_true(store_commit_count(sh.sh_store) - before < (uint64_t) all);
	store_close(sh.sh_store);
	tmp_remove(dir);
}

/* ---- batches made on purpose ----------------------------------------------------------- */

#define HOLD_WRITERS 7

/* A holder leads a batch of its own and keeps it running until HOLD_WRITERS writers have
 * queued behind it, so that all of them land in the next batch, together. */
typedef struct hold_group {
	store      *hg_store;
	store_table hg_table;
	size_t      hg_vlen; /* each writer puts one value of this size */
	uint8_t    *hg_val;
	atomic_int  hg_holding; /* the holder's function is running */
	atomic_int  hg_runs;    /* runs of the writers' functions */
	hv_status   hg_status[HOLD_WRITERS + 1];
} hold_group;

typedef struct hold_writer {
	hold_group *hw_group;
	int         hw_who; /* 0: the holder */
} hold_writer;

/* Writes nothing: its batch commits nothing. */
static hv_status
hold_fn(store_txn *txn, void *arg)
{
	hold_group *hg = arg;

	(void) txn;
	atomic_store(&hg->hg_holding, 1);
	for (int i = 0; i < 20000 && store_write_queued(hg->hg_store) < HOLD_WRITERS; i++) {
		usleep(1000);
	}
	return (HV_ABORTED);
}

static hv_status
held_fn(store_txn *txn, void *arg)
{
	hold_writer *w  = arg;
	hold_group  *hg = w->hw_group;
	char         key[16];

	atomic_fetch_add(&hg->hg_runs, 1);
	snprintf(key, sizeof(key), "held%d", w->hw_who);
	return (store_put(txn, hg->hg_table, key, strlen(key), hg->hg_val, hg->hg_vlen));
}

static void *
hold_main(void *arg)
{
	hold_writer *w  = arg;
	hold_group  *hg = w->hw_group;

	hg->hg_status[w->hw_who] = w->hw_who == 0 ? store_write(hg->hg_store, hold_fn, hg)
	                                          : store_write(hg->hg_store, held_fn, w);
	return (NULL);
}

/* Runs the holder and the writers, and joins them. */
static void
hold_run(hold_group *hg)
{
	hold_writer w[HOLD_WRITERS + 1];
	pthread_t   th[HOLD_WRITERS + 1];

	hg->hg_val = calloc(1, hg->hg_vlen);
	assert_non_null(hg->hg_val);
	atomic_init(&hg->hg_holding, 0);
	atomic_init(&hg->hg_runs, 0);
	for (int i = 0; i <= HOLD_WRITERS; i++) {
		w[i].hw_group = hg;
		w[i].hw_who   = i;
	}
	assert_int_equal(pthread_create(&th[0], NULL, hold_main, &w[0]), 0);
	while (atomic_load(&hg->hg_holding) == 0) {
		usleep(1000);
	}
	for (int i = 1; i <= HOLD_WRITERS; i++) {
		assert_int_equal(pthread_create(&th[i], NULL, hold_main, &w[i]), 0);
	}
	for (int i = 0; i <= HOLD_WRITERS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
	}
	free(hg->hg_val);
	hg->hg_val = NULL;
	assert_int_equal(hg->hg_status[0], HV_ABORTED);
}

static void
test_group_commit_failure(void **state)
{
	char         *dir  = tmp_dir();
	char         *data = path_join(dir, "data.mdb");
	fatal_rec     f    = { 0, HV_OK, "" };
	store_options o    = { .fatal = fatal_hook, .fatal_arg = &f };
	hold_group    hg;
	struct rlimit old;
	struct rlimit lim;
	struct stat   st;
	void (*old_sig)(int);
	uint64_t before;
	char     key[16];

	(void) state;
	memset(&hg, 0, sizeof(hg));
	hg.hg_store = open_ok(dir, &o);
	hg.hg_table = table_ok(hg.hg_store, "t");
	hg.hg_vlen  = MIB;
	assert_int_equal(put_str(hg.hg_store, hg.hg_table, "before", "1"), HV_OK);
	before = store_commit_count(hg.hg_store);

	/* The data file may not grow: the batch's commit fails writing its pages (EFBIG). */
	assert_int_equal(stat(data, &st), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	old_sig      = signal(SIGXFSZ, SIG_IGN);
	lim          = old;
	lim.rlim_cur = (rlim_t) st.st_size;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	hold_run(&hg);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_sig);

	/* One batch of all the writers ran, its commit failed: the hook once, and every writer
	 * of the batch HV_UNAVAILABLE. */
	assert_int_equal(atomic_load(&hg.hg_runs), HOLD_WRITERS);
	for (int i = 1; i <= HOLD_WRITERS; i++) {
		assert_int_equal(hg.hg_status[i], HV_UNAVAILABLE);
	}
	assert_int_equal(f.fr_calls, 1);
	assert_int_not_equal(f.fr_code, HV_OK);
	assert_non_null(strstr(f.fr_what, "commit"));
	assert_int_equal(store_commit_count(hg.hg_store), before);
	/* Later writes are refused without the hook; reads see the intact store. */
	assert_int_equal(put_str(hg.hg_store, hg.hg_table, "later", "2"), HV_UNAVAILABLE);
	assert_int_equal(f.fr_calls, 1);
	expect_str(hg.hg_store, hg.hg_table, "before", "1");
	for (int i = 1; i <= HOLD_WRITERS; i++) {
		snprintf(key, sizeof(key), "held%d", i);
		expect_str(hg.hg_store, hg.hg_table, key, NULL);
	}
	store_close(hg.hg_store);

	hg.hg_store = open_ok(dir, &o);
	hg.hg_table = table_ok(hg.hg_store, "t");
	expect_str(hg.hg_store, hg.hg_table, "held1", NULL);
	assert_int_equal(put_str(hg.hg_store, hg.hg_table, "later", "2"), HV_OK);
	assert_int_equal(f.fr_calls, 1);
	store_close(hg.hg_store);
	free(data);
	tmp_remove(dir);
}

/* A batch too big for the map at its maximum size is split: each write runs again alone, and
 * those that fit commit while the others get HV_RESOURCE_EXHAUSTED. */
static void
test_group_split(void **state)
{
	char         *dir = tmp_dir();
	store_options o   = { .map_size = 1 * MIB, .max_map_size = 1 * MIB };
	hold_group    hg;
	store_txn    *txn;
	char          key[16];
	int           ok   = 0;
	int           full = 0;
	hv_status     rv;

	(void) state;
	memset(&hg, 0, sizeof(hg));
	hg.hg_store = open_ok(dir, &o);
	hg.hg_table = table_ok(hg.hg_store, "t");
	hg.hg_vlen  = 200 * 1024; /* 7 of them: 1.4 MB */
	hold_run(&hg);

	assert_int_equal(store_read_begin(hg.hg_store, &txn), HV_OK);
	for (int i = 1; i <= HOLD_WRITERS; i++) {
		snprintf(key, sizeof(key), "held%d", i);
		rv = store_get(txn, hg.hg_table, key, strlen(key), NULL, NULL);
		if (hg.hg_status[i] == HV_OK) {
			ok++;
			assert_int_equal(rv, HV_OK);
		} else {
			full++;
			assert_int_equal(hg.hg_status[i], HV_RESOURCE_EXHAUSTED);
			assert_int_equal(rv, HV_NOT_FOUND);
		}
	}
	store_read_end(txn);
	assert_true(ok >= 1);
	assert_true(full >= 1);
	/* The batch ran together until a function filled the map, then each write ran alone,
	 * once (growth is refused at once at the maximum). */
	assert_true(atomic_load(&hg.hg_runs) > HOLD_WRITERS);
	assert_true(atomic_load(&hg.hg_runs) <= 2 * HOLD_WRITERS);
	print_message("group split: %d acknowledged, %d refused, %d runs\n", ok, full,
	    atomic_load(&hg.hg_runs));
	assert_int_equal(put_str(hg.hg_store, hg.hg_table, "after", "1"), HV_OK);
	store_close(hg.hg_store);
	tmp_remove(dir);
}

/* ---- stale readers ---------------------------------------------------------------------- */

#define STALE_VAL (64 * 1024)

static void
test_stale_readers(void **state)
{
	char         *dir = tmp_dir();
	store_options o   = { .map_size = 1 * MIB, .max_map_size = 1 * MIB };
	store        *s   = open_ok(dir, &o);
	store_table   t   = table_ok(s, "t");
	int           ready[2];
	int           release[2];
	pid_t         holder;
	pid_t         stale;
	int           status;
	char          ch;
	uint8_t      *val = calloc(1, STALE_VAL);
	kv            a   = { t, "k", val, STALE_VAL };

	(void) state;
	assert_non_null(val);
	assert_int_equal(put_str(s, t, "k", "v"), HV_OK);
	store_close(s);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(release), 0);
	fflush(NULL);

	/* A process that keeps the store open, so that LMDB does not reset the reader table
	 * when the next process opens it: only store_open's check can clear the stale slot. */
	holder = fork();
	assert_true(holder >= 0);
	if (holder == 0) {
		store *hs = NULL;
		close(ready[0]);
		close(release[1]);
		if (store_open(&hs, dir, &o) != HV_OK) {
			_exit(1);
		}
		if (write(ready[1], "h", 1) != 1) {
			_exit(2);
		}
		(void) read(release[0], &ch, 1); /* returns at EOF: the parent is done */
		store_close(hs);
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	assert_int_equal(read(ready[0], &ch, 1), 1);

	/* A process that dies inside a read transaction. */
	stale = fork();
	assert_true(stale >= 0);
	if (stale == 0) {
		store      *ss = NULL;
		store_txn  *txn;
		store_table st;
		if (store_open(&ss, dir, &o) != HV_OK || store_table_open(ss, "t", &st) != HV_OK ||
		    store_read_begin(ss, &txn) != HV_OK ||
		    store_get(txn, st, "k", 1, NULL, NULL) != HV_OK) {
			_exit(1);
		}
		_exit(0); /* without store_read_end */
	}
	assert_int_equal(waitpid(stale, &status, 0), stale);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	/* Opening again works and frees the dead reader's slot: 200 overwrites of 64 KiB fit in
	 * 1 MiB only if LMDB may reuse the pages the snapshot of the dead reader would pin. */
	s          = open_ok(dir, &o);
	t          = table_ok(s, "t");
	a.kv_table = t;
	for (int i = 0; i < 200; i++) {
		val[0] = (uint8_t) i;
		assert_int_equal(store_write(s, put_fn, &a), HV_OK);
	}
	store_close(s);

	close(release[1]);
	close(ready[0]);
	assert_int_equal(waitpid(holder, &status, 0), holder);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	free(val);
	tmp_remove(dir);
}

/* ---- backup ----------------------------------------------------------------------------- */

static void
test_backup(void **state)
{
	char       *dir  = tmp_dir();
	char       *data = path_join(dir, "data");
	char       *bk   = path_join(dir, "backup"); /* missing: store_backup creates it */
	store      *s    = open_ok(data, NULL);
	store_table t    = table_ok(s, "t");
	store      *b;
	store_table bt;

	(void) state;
	assert_int_equal(put_str(s, t, "a", "1"), HV_OK);
	assert_int_equal(put_str(s, t, "b", "2"), HV_OK);
	assert_int_equal(store_backup(s, bk), HV_OK);
	assert_int_equal(mode_of(bk, NULL), 0700);
	assert_int_equal(mode_of(bk, "data.mdb"), 0600);
	/* Only into an empty directory. */
	assert_int_equal(store_backup(s, bk), HV_FAILED_PRECONDITION);
	assert_int_equal(store_backup(s, data), HV_FAILED_PRECONDITION);
	/* Later writes are not in it. */
	assert_int_equal(put_str(s, t, "c", "3"), HV_OK);

	b  = open_ok(bk, NULL);
	bt = table_ok(b, "t");
	expect_str(b, bt, "a", "1");
	expect_str(b, bt, "b", "2");
	expect_str(b, bt, "c", NULL);
	assert_int_equal(store_schema_version(b), store_schema_version(s));
	store_close(b);
	store_close(s);
	free(data);
	free(bk);
	tmp_remove(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_reopen),
		cmocka_unit_test(test_schema),
		cmocka_unit_test(test_put_get_del),
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_cursor),
		cmocka_unit_test(test_msg),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_fn_error_aborts),
		cmocka_unit_test(test_map_growth),
		cmocka_unit_test(test_max_map),
		cmocka_unit_test(test_commit_failure),
		cmocka_unit_test(test_commit_failure_default_exits),
		cmocka_unit_test(test_two_processes),
		cmocka_unit_test(test_resized_by_other_process),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_group_commit),
		cmocka_unit_test(test_group_abort),
		cmocka_unit_test(test_group_map_growth),
		cmocka_unit_test(test_group_commit_failure),
		cmocka_unit_test(test_group_split),
		cmocka_unit_test(test_stale_readers),
		cmocka_unit_test(test_backup),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
