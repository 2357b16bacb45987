/*
 * maplost.c - a store whose map cannot be grown (docs/reliability.md, "Found and fixed"):
 *
 *   LD_PRELOAD=libiofail.so IOFAIL_OPS=mmap IOFAIL_PATH=STORE IOFAIL_N=3 IOFAIL_STICKY=1 \
 *       maplost fail STORE ACKED
 *   maplost check STORE ACKED
 *
 * "fail" opens STORE with a map of 1 MiB (LMDB maps data.mdb once at the open and once more
 * when the store takes the size it last grew to: the third mmap is the first growth) and
 * writes rows of 16 KiB, four to a transaction, until a write fails. That write must answer
 * HV_UNAVAILABLE, the fatal hook must have been told once, and every read and write after it
 * must answer HV_UNAVAILABLE too: LMDB unmaps the old map before it maps the new size, and
 * before the fix the next transaction read its meta pages through the old address and the
 * process died of SIGSEGV. Writes the number of rows acknowledged to ACKED.
 * "check" opens STORE without faults: every acknowledged row is there, whole.
 * Exit 0 when all holds; a message on stderr otherwise.
 */
#include "haven/bytes.h"
#include "haven/log.h"
#include "haven/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROW      (16 * 1024)
#define PER_TXN  4
#define MAX_ROWS 4096 /* 64 MiB: far past the first growth */

static int         fatal_calls;
static store_table rows;

static void
fatal_hook(void *arg, hv_status code, const char *what)
{
	(void) arg;
	fatal_calls++;
	fprintf(stderr, "maplost: fatal hook: %s (%s)\n", what, hv_status_name(code));
}

static void
row_value(uint8_t *v, uint64_t i)
{
	memset(v, (int) (i % 251), ROW);
	hv_put_be64(v, i);
}

typedef struct put_arg {
	uint64_t pa_first;
} put_arg;

static hv_status
put_fn(store_txn *txn, void *arg)
{
	put_arg  *a = arg;
	uint8_t   key[8];
	uint8_t  *v  = malloc(ROW);
	hv_status st = HV_OK;

	if (v == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	for (uint64_t i = a->pa_first; i < a->pa_first + PER_TXN && st == HV_OK; i++) {
		hv_put_be64(key, i);
		row_value(v, i);
		st = store_put(txn, rows, key, sizeof(key), v, ROW);
	}
	free(v);
	return (st);
}

static int
fail_mode(const char *dir, const char *acked)
{
	store_options o = { .map_size = 1 << 20, .no_sync = true, .fatal = fatal_hook };
	store        *s = NULL;
	store_txn    *txn;
	put_arg       a  = { 0 };
	hv_status     st = HV_OK;
	FILE         *f;

	if ((st = store_open(&s, dir, &o)) != HV_OK ||
	    (st = store_table_open(s, "rows", &rows)) != HV_OK) {
		fprintf(stderr, "maplost: open: %s (the third mmap must be the first growth)\n",
		    hv_status_name(st));
		return (1);
	}
	for (; a.pa_first < MAX_ROWS; a.pa_first += PER_TXN) {
		if ((st = store_write(s, put_fn, &a)) != HV_OK) {
			break;
		}
	}
	if (st != HV_UNAVAILABLE || fatal_calls != 1) {
		fprintf(stderr,
		    "maplost: the failed growth answered %s with %d fatal calls (want "
		    "UNAVAILABLE, 1)\n",
		    hv_status_name(st), fatal_calls);
		return (1);
	}
	if ((st = store_read_begin(s, &txn)) != HV_UNAVAILABLE ||
	    (st = store_write(s, put_fn, &a)) != HV_UNAVAILABLE) {
		fprintf(stderr, "maplost: after the lost map: %s (want UNAVAILABLE)\n",
		    hv_status_name(st));
		return (1);
	}
	store_close(s);
	if ((f = fopen(acked, "w")) == NULL) {
		return (1);
	}
	fprintf(f, "%llu\n", (unsigned long long) a.pa_first);
	fclose(f);
	printf("maplost: %llu rows acknowledged, then the growth failed: UNAVAILABLE, fatal hook "
	       "once, reads and writes refused\n",
	    (unsigned long long) a.pa_first);
	return (0);
}

static int
check_mode(const char *dir, const char *acked)
{
	store_options      o = { .no_sync = true };
	store             *s = NULL;
	store_txn         *txn;
	unsigned long long n    = 0;
	uint8_t           *want = malloc(ROW);
	FILE              *f    = fopen(acked, "r");
	int                bad  = 0;

	if (want == NULL || f == NULL || fscanf(f, "%llu", &n) != 1 || n == 0) {
		fprintf(stderr, "maplost: no count of acknowledged rows in %s\n", acked);
		return (1);
	}
	fclose(f);
	if (store_open(&s, dir, &o) != HV_OK || store_table_open(s, "rows", &rows) != HV_OK ||
	    store_read_begin(s, &txn) != HV_OK) {
		fprintf(stderr, "maplost: the store does not open again\n");
		return (1);
	}
	for (uint64_t i = 0; i < n && !bad; i++) {
		uint8_t     key[8];
		const void *v;
		size_t      vl;

		hv_put_be64(key, i);
		row_value(want, i);
		if (store_get(txn, rows, key, sizeof(key), &v, &vl) != HV_OK || vl != ROW ||
		    memcmp(v, want, ROW) != 0) {
			fprintf(stderr, "maplost: acknowledged row %llu is missing or changed\n",
			    (unsigned long long) i);
			bad = 1;
		}
	}
	store_read_end(txn);
	store_close(s);
	free(want);
	if (!bad) {
		printf("maplost: all %llu acknowledged rows there after a restart\n", n);
	}
	return (bad);
}

int
main(int argc, char **argv)
{
	log_init("maplost", LOG_LEVEL_WARN);
	if (argc == 4 && strcmp(argv[1], "fail") == 0) {
		return (fail_mode(argv[2], argv[3]));
	}
	if (argc == 4 && strcmp(argv[1], "check") == 0) {
		return (check_mode(argv[2], argv[3]));
	}
	fprintf(stderr, "usage: maplost fail|check STORE ACKED\n");
	return (2);
}
