/*
 * referral_test.c - the referral service's parts without RPC: key layouts and their order,
 * the rank order, language matching, the checks of a create request, the arena, the small-cell
 * suppression and percentiles of the statistics, and opening, closing and the store functions
 * on an empty store. tests/referral_it.c drives the whole service over RPC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "haven/ids.h"
#include "haven/log.h"
#include "ref_internal.h"

#include "haven/pbenum.h"
#include "haven/text.h"

static int
keycmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return (c != 0 ? c : (al > bl) - (al < bl));
}

static void
test_keys_order(void **state)
{
	Referral r1 = HAVEN__REFERRAL__V1__REFERRAL__INIT, r2 = r1, r3 = r1;
	uint8_t  a[REF_KEY_MAX], b[REF_KEY_MAX], c[REF_KEY_MAX];
	size_t   al, bl, cl;

	/* Waiting: most urgent first, then oldest, then by id and need. */
	r1.id         = "ref-b";
	r1.urgency    = HAVEN__REFERRAL__V1__URGENCY__PLANNED;
	r1.created_ms = 1000;
	r2.id         = "ref-a";
	r2.urgency    = HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE;
	r2.created_ms = 5000;
	r3.id         = "ref-c";
	r3.urgency    = HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE;
	r3.created_ms = 2000;
	al            = ref_key_waiting(a, &r1, 0);
	bl            = ref_key_waiting(b, &r2, 0);
	cl            = ref_key_waiting(c, &r3, 0);
	assert_true(keycmp(c, cl, b, bl) < 0);
	assert_true(keycmp(b, bl, a, al) < 0);
	bl = ref_key_waiting(b, &r3, 1);
	assert_true(keycmp(c, cl, b, bl) < 0);
	assert_int_equal(cl, 1 + 8 + strlen("ref-c") + 1 + 4);

	/* Deadlines: earliest first. */
	al = ref_key_deadline(a, 2000, "off-z");
	bl = ref_key_deadline(b, 1000000, "off-a");
	assert_true(keycmp(a, al, b, bl) < 0);
	assert_int_equal(hv_get_be64(a), 2000);

	/* Timed indexes: newest first within a prefix; prefixes apart. */
	al = ref_key_timed(a, "ngo", 1000, "ref-1");
	bl = ref_key_timed(b, "ngo", 2000, "ref-2");
	cl = ref_key_timed(c, "ngo-2", 3000, "ref-3");
	assert_true(keycmp(b, bl, a, al) < 0);
	assert_true(keycmp(a, al, c, cl) < 0); /* "ngo\0" sorts before "ngo-2" */
	al = ref_key_timed(a, NULL, 1000, "ref-1");
	assert_int_equal(al, 8 + 5);
	assert_int_equal(UINT64_MAX - hv_get_be64(a), 1000);
	/* Closed referrals: oldest closure first. */
	al = ref_key_closed(a, 1000, "ref-z");
	bl = ref_key_closed(b, 2000, "ref-a");
	assert_true(keycmp(a, al, b, bl) < 0);
	assert_int_equal(al, 8 + 5);
	assert_int_equal(hv_get_be64(a), 1000);
	al = ref_key_pair(a, "org", "key");
	assert_int_equal(al, 7);
	assert_memory_equal(a, "org\0key", 7);
}

static void
test_rank_order(void **state)
{
	ref_rank a, b;

	memset(&a, 0, sizeof(a));
	snprintf(a.rk_id, sizeof(a.rk_id), "svc-b");
	b = a;
	snprintf(b.rk_id, sizeof(b.rk_id), "svc-a");
	assert_true(ref_rank_cmp(&b, &a) < 0); /* ties: by id */
	assert_int_equal(ref_rank_cmp(&a, &a), 0);
	/* Each component outranks all after it. */
	b.rk_age_ms = 1;
	a.rk_age_ms = 0;
	assert_true(ref_rank_cmp(&a, &b) < 0);
	a.rk_nonspec = 1;
	assert_true(ref_rank_cmp(&b, &a) < 0);
	b.rk_distance = 1;
	assert_true(ref_rank_cmp(&a, &b) < 0);
	a.rk_missing = 1;
	assert_true(ref_rank_cmp(&b, &a) < 0);
	b.rk_reach = 1;
	assert_true(ref_rank_cmp(&a, &b) < 0);
	b.rk_nonpref = 1;
	b.rk_reach   = 0;
	assert_true(ref_rank_cmp(&a, &b) < 0);
	a.rk_stale = 1;
	assert_true(ref_rank_cmp(&b, &a) < 0);
}

static void
test_lang_match(void **state)
{
	char *langs[] = { "nl", "en-GB", "RO" };

	assert_true(ref_lang_match("nl", langs, 3));
	assert_true(ref_lang_match("NL", langs, 3));
	assert_true(ref_lang_match("en", langs, 3));
	assert_true(ref_lang_match("ro-MD", langs, 3));
	assert_true(ref_lang_match("ro", langs, 3));
	assert_false(ref_lang_match("e", langs, 3));
	assert_false(ref_lang_match("pl", langs, 3));
	assert_false(ref_lang_match("nl", langs, 0));
}

static void
test_stats_helpers(void **state)
{
	char     b[16];
	uint64_t v[10];

	assert_string_equal(ref_stat_count(0, b), "0");
	for (uint32_t i = 1; i < 5; i++) {
		assert_string_equal(ref_stat_count(i, b), "<5");
	}
	assert_string_equal(ref_stat_count(5, b), "5");
	assert_string_equal(ref_stat_count(1234, b), "1234");

	assert_int_equal(ref_percentile(v, 0, 50), 0);
	for (int i = 0; i < 10; i++) {
		v[i] = (uint64_t) (10 - i) * 100; /* unsorted: 1000 .. 100 */
	}
	assert_int_equal(ref_percentile(v, 10, 50), 500);
	assert_int_equal(ref_percentile(v, 10, 90), 900);
	assert_int_equal(ref_percentile(v, 10, 100), 1000);
	assert_int_equal(ref_percentile(v, 1, 90), 100);
	v[0] = 7;
	assert_int_equal(ref_percentile(v, 1, 50), 7);

	/* Times shown: whole hours; the median from 5 placements, the p90 from 10. */
	{
		uint64_t t[10], med, p90;
		for (int i = 0; i < 10; i++) {
			t[i] = (uint64_t) (i + 1) * 3600000 + 29 * 60000 + (uint64_t) i * 1000;
		}
		ref_stat_times(t, 4, &med, &p90);
		assert_int_equal(med, 0);
		assert_int_equal(p90, 0);
		ref_stat_times(t, 5, &med, &p90); /* 3:29:02 */
		assert_int_equal(med, 3 * 3600000);
		assert_int_equal(p90, 0);
		ref_stat_times(t, 9, &med, &p90);
		assert_int_equal(p90, 0);
		ref_stat_times(t, 10, &med, &p90); /* 5:29:04, 9:29:08 */
		assert_int_equal(med, 5 * 3600000);
		assert_int_equal(p90, 9 * 3600000);
		t[0] = t[1] = t[2] = t[3] = t[4] = 30 * 60000; /* half an hour rounds up */
		ref_stat_times(t, 10, &med, &p90);
		assert_int_equal(med, 3600000);
	}
}

/* Periods: ISO weeks and months in Europe/Amsterdam time (expected bounds from GNU date with
 * TZ=Europe/Amsterdam), across the year boundaries and the summer-time switches. */
static void
test_period(void **state)
{
	static const struct {
		const char *name;
		uint64_t    from, to;
	} ok[] = {
		{ "2023-W46", 1699830000000ULL, 1700434800000ULL },
		{ "2026-W49", 1795993200000ULL, 1796598000000ULL },
		{ "2026-12", 1796079600000ULL, 1798758000000ULL },
		{ "2026-03", 1772319600000ULL, 1774994400000ULL },  /* CET -> CEST inside */
		{ "2026-W13", 1774220400000ULL, 1774821600000ULL }, /* the week of the switch */
		{ "2026-W43", 1792360800000ULL, 1792969200000ULL }, /* CEST -> CET */
		{ "2026-W01", 1766962800000ULL, 1767567600000ULL }, /* starts in 2025 */
		{ "2026-W53", 1798412400000ULL, 1799017200000ULL }, /* ends in 2027 */
		{ "2020-W53", 1609110000000ULL, 1609714800000ULL },
		{ "2000-W01", 946854000000ULL, 946854000000ULL + 7 * 86400000ULL },
		{ "2000-01", 946681200000ULL, 946681200000ULL + 31 * 86400000ULL },
	};
	static const struct {
		const char *name, *msg;
	} bad[] = {
		{ "", "period required" },
		{ "2026-13", "period '2026-13': month must be 01..12" },
		{ "2026-00", "month must be 01..12" },
		{ "2026-W54", "week must be 01..53 (2026 has 53 ISO weeks)" },
		{ "2025-W53", "week must be 01..52 (2025 has 52 ISO weeks)" },
		{ "2026-W00", "week must be 01..53" },
		{ "2026-w49", "is neither an ISO week YYYY-Www" },
		{ "26-12", "is neither" },
		{ "2026/12", "is neither" },
		{ "2026-12-01", "is neither" },
		{ "2026-1a", "year and month must be digits" },
		{ "2O26-W01", "year and week must be digits" },
		{ "1999-12", "the year must be 2000..9999" },
		{ "20\x01\n-12", "period '(not a period name)'" },
	};
	ref_period p;
	char       err[160];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		err[0] = '\0';
		assert_int_equal(ref_period_parse(ok[i].name, &p, err, sizeof(err)), HV_OK);
		assert_int_equal(p.rp_from_ms, ok[i].from);
		assert_int_equal(p.rp_to_ms, ok[i].to);
		assert_string_equal(p.rp_name, ok[i].name);
		assert_int_equal(p.rp_week, ok[i].name[5] == 'W');
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ref_period_parse(bad[i].name, &p, err, sizeof(err)),
		    HV_INVALID_ARGUMENT);
		if (strstr(err, bad[i].msg) == NULL) {
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].name, err, bad[i].msg);
		}
	}
	assert_int_equal(ref_period_parse(NULL, &p, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_int_equal(ref_iso_weeks(2015), 53);
	assert_int_equal(ref_iso_weeks(2020), 53);
	assert_int_equal(ref_iso_weeks(2021), 52);
	assert_int_equal(ref_iso_weeks(2026), 53);
	assert_int_equal(ref_iso_weeks(2032), 53);
	/* Every week of 2000..2100 is seven days (less or more by an hour across a switch) and
	 * follows the one before; months follow each other too. */
	for (int y = 2000; y <= 2100; y++) {
		char     name[16];
		uint64_t prev = 0;

		for (unsigned w = 1; w <= ref_iso_weeks(y); w++) {
			snprintf(name, sizeof(name), "%04d-W%02u", y, w);
			assert_int_equal(ref_period_parse(name, &p, err, sizeof(err)), HV_OK);
			assert_true(prev == 0 || p.rp_from_ms == prev);
			assert_true(p.rp_to_ms - p.rp_from_ms == 7 * 86400000ULL ||
			    p.rp_to_ms - p.rp_from_ms == 7 * 86400000ULL - 3600000ULL ||
			    p.rp_to_ms - p.rp_from_ms == 7 * 86400000ULL + 3600000ULL);
			prev = p.rp_to_ms;
		}
		prev = 0;
		for (unsigned m = 1; m <= 12; m++) {
			snprintf(name, sizeof(name), "%04d-%02u", y, m);
			assert_int_equal(ref_period_parse(name, &p, err, sizeof(err)), HV_OK);
			assert_true(prev == 0 || p.rp_from_ms == prev);
			prev = p.rp_to_ms;
		}
	}
}

static void
test_stats_suppression(void **state)
{
	uint32_t c[REF_STAT_CELLS][REF_STAT_MEASURES];
	uint8_t  s[REF_STAT_CELLS][REF_STAT_MEASURES], t[REF_STAT_MEASURES];
	uint8_t  s2[REF_STAT_CELLS][REF_STAT_MEASURES], t2[REF_STAT_MEASURES];

	/* One referral (waiting) beside 6 and 9 (none placed, none waiting): the "<5", and
	 * nothing else about its cell; the numbers; the referral and unmet totals withheld (16
	 * would tell 1), the placement total too (its "x" could be 1). */
	memset(c, 0, sizeof(c));
	c[0][0] = 1, c[0][2] = 1, c[1][0] = 6, c[2][0] = 9;
	ref_stats_suppress(c, s, t);
	assert_int_equal(s[0][0], REF_SHOW_SMALL);
	assert_int_equal(s[0][1], REF_SHOW_HIDDEN);
	assert_int_equal(s[0][2], REF_SHOW_HIDDEN);
	for (int i = 1; i < 3; i++) {
		for (int m = 0; m < REF_STAT_MEASURES; m++) {
			assert_int_equal(s[i][m], REF_SHOW_NUMBER);
		}
	}
	for (int m = 0; m < REF_STAT_MEASURES; m++) {
		assert_int_equal(t[m], REF_SHOW_HIDDEN);
	}

	/* Nothing small: everything shown, totals too. */
	memset(c, 0, sizeof(c));
	c[0][0] = 5, c[1][0] = 7, c[1][1] = 5, c[1][2] = 0, c[40][0] = 12, c[40][2] = 12;
	ref_stats_suppress(c, s, t);
	for (int i = 0; i < REF_STAT_CELLS; i++) {
		for (int m = 0; m < REF_STAT_MEASURES; m++) {
			assert_int_equal(s[i][m], REF_SHOW_NUMBER);
		}
	}
	for (int m = 0; m < REF_STAT_MEASURES; m++) {
		assert_int_equal(t[m], REF_SHOW_NUMBER);
	}

	/* 6 referred, 5 placed, 1 waiting: 6 - 5 would tell the "<5" is 1, so the 5 is "x"; the
	 * referral total stays. 8 referred, 3 placed, none waiting: the 0 is "x" too. */
	memset(c, 0, sizeof(c));
	c[3][0] = 6, c[3][1] = 5, c[3][2] = 1, c[4][0] = 8, c[4][1] = 3;
	ref_stats_suppress(c, s, t);
	assert_int_equal(s[3][0], REF_SHOW_NUMBER);
	assert_int_equal(s[3][1], REF_SHOW_HIDDEN);
	assert_int_equal(s[3][2], REF_SHOW_SMALL);
	assert_int_equal(s[4][0], REF_SHOW_NUMBER);
	assert_int_equal(s[4][1], REF_SHOW_SMALL);
	assert_int_equal(s[4][2], REF_SHOW_HIDDEN);
	assert_int_equal(t[0], REF_SHOW_NUMBER);
	assert_int_equal(t[1], REF_SHOW_HIDDEN);
	assert_int_equal(t[2], REF_SHOW_HIDDEN);

	/* What is withheld depends only on which counts are 1..4, never on their values or on a
	 * value withheld: random regions, then every "<5" and every "x" changed to another value
	 * it could have had, give the same answer. (Withholding "the next-smallest cell that
	 * hides the "<5"" fails this: for 1 beside 6 and 9 it withholds the 9, for 4 the 6.) */
	srand(12345);
	for (int round = 0; round < 2000; round++) {
		memset(c, 0, sizeof(c));
		for (int k = 0; k < 1 + round % 12; k++) {
			int i = rand() % REF_STAT_CELLS;

			c[i][0] = (uint32_t) (rand() % 14);
			c[i][1] = c[i][0] > 0 ? (uint32_t) rand() % (c[i][0] + 1) : 0;
			c[i][2] =
			    c[i][0] - c[i][1] > 0 ? (uint32_t) rand() % (c[i][0] - c[i][1] + 1) : 0;
		}
		ref_stats_suppress(c, s, t);
		for (int i = 0; i < REF_STAT_CELLS; i++) {
			for (int m = 0; m < REF_STAT_MEASURES; m++) {
				/* 1..4 is never a number; "<5" always 1..4 */
				assert_true(
				    s[i][m] != REF_SHOW_NUMBER || c[i][m] == 0 || c[i][m] >= 5);
				assert_true(
				    s[i][m] != REF_SHOW_SMALL || (c[i][m] > 0 && c[i][m] < 5));
				if (s[i][m] != REF_SHOW_NUMBER) {
					assert_int_equal(t[m], REF_SHOW_HIDDEN);
				}
			}
			if (s[i][0] == REF_SHOW_SMALL) {
				c[i][0] = 1 + (uint32_t) rand() % 4, c[i][1] = 0, c[i][2] = 0;
			} else if (s[i][1] != REF_SHOW_NUMBER) {
				/* placements and unmet: each "<5" 1..4, each "x" 0 or 5.., within R
				 */
				c[i][1] = s[i][1] == REF_SHOW_SMALL ? 1 + (uint32_t) rand() % 4 : 0;
				c[i][2] = s[i][2] == REF_SHOW_SMALL ? 1 + (uint32_t) rand() % 4 : 0;
			}
		}
		ref_stats_suppress(c, s2, t2);
		assert_memory_equal(s, s2, sizeof(s));
		assert_memory_equal(t, t2, sizeof(t));
	}
}

static void
test_text(void **state)
{
	char big[REF_TEXT_MAX + 2];
	char err[128];

	assert_true(text_free_ok("", 0, 10));
	assert_false(text_free_ok("", 1, 10));
	assert_true(text_free_ok("Zwolle, één bed", 0, 100));
	assert_false(text_free_ok("tab\there", 0, 100));
	assert_false(text_free_ok("\xc3", 0, 100));         /* cut UTF-8 */
	assert_false(text_free_ok("\xc0\xaf", 0, 100));     /* overlong */
	assert_false(text_free_ok("\xed\xa0\x80", 0, 100)); /* surrogate */
	assert_false(text_free_ok("\xc2\x85", 0, 100));     /* C1 control */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(ref_check_text("reason", big, false, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(ref_check_text("reason", "", true, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_string_equal(err, "reason is required");
	assert_int_equal(ref_check_text("reason", "", false, err, sizeof(err)), HV_OK);
	assert_true(pbenum_ok(&haven__referral__v1__urgency__descriptor, 3));
	assert_false(pbenum_ok(&haven__referral__v1__urgency__descriptor, 0));
	assert_false(pbenum_ok(&haven__referral__v1__urgency__descriptor, 4));
	assert_string_equal(pbenum_name(&haven__referral__v1__decline_reason__descriptor, NULL, 1,
	                        err, sizeof(err)),
	    "no-capacity");
}

/* A work in a call's arena: each run of the write function starts from the mark (what an
 * earlier run allocated is given back), and what was there before the work stays. */
static void
test_work_arena(void **state)
{
	static arena a;
	ref_work    *w = malloc(sizeof(*w));
	char        *req;

	(void) state;
	assert_non_null(w);
	arena_init(&a, 256 * 1024);
	assert_non_null(req = arena_strdup(&a, "the request"));
	ref_work_init_in(w, NULL, &a);
	for (int run = 0; run < 20; run++) {
		ref_work_begin(w, NULL);
		assert_non_null(arena_alloc(w->w_arena, 200 * 1024));
	}
	assert_null(arena_alloc(w->w_arena, 100 * 1024)); /* the budget holds within a run */
	ref_work_free(w);
	assert_string_equal(req, "the request");
	arena_reset(&a);
	/* A work of its own frees its arena. */
	ref_work_init(w, NULL);
	assert_ptr_equal(w->w_arena, &w->w_own);
	assert_non_null(arena_alloc(w->w_arena, 1024 * 1024));
	ref_work_free(w);
	assert_null(w->w_own.a_chunks);
	free(w);
}

/* ---- on a store ------------------------------------------------------------------------------ */

typedef struct fixture {
	char         dir[512];
	store       *st;
	region_map  *rm;
	cap_service *cs;
	ref_service *rs;
} fixture;

static int
setup(void **state)
{
	fixture      *f    = calloc(1, sizeof(*f));
	store_options so   = { .no_sync = true };
	cap_options   co   = { 0 };
	ref_options   ro   = { 0 };
	const char   *base = getenv("HAVEN_TEST_TMP");

	snprintf(f->dir, sizeof(f->dir), "%s/refunit-XXXXXX", base != NULL ? base : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(store_open(&f->st, f->dir, &so), HV_OK);
	assert_int_equal(region_map_default(&f->rm), HV_OK);
	co.store         = f->st;
	co.regions       = f->rm;
	co.manual_expiry = true;
	assert_int_equal(cap_open(&f->cs, &co), HV_OK);
	ro.store                                                    = f->st;
	ro.regions                                                  = f->rm;
	ro.capacity                                                 = f->cs;
	ro.manual                                                   = true;
	ro.hold_max_ttl_s                                           = 3600;
	ro.offer_timeout_s[HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE] = 600;
	assert_int_equal(ref_open(&f->rs, &ro), HV_OK);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	fixture *f = *state;

	ref_close(f->rs);
	cap_close(f->cs);
	store_close(f->st);
	region_map_free(f->rm);
	free(f);
	return (0);
}

static void
test_open_options(void **state)
{
	fixture     *f  = *state;
	ref_options  ro = { 0 };
	ref_service *rs = NULL;

	assert_int_equal(ref_open(&rs, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(ref_open(&rs, &ro), HV_INVALID_ARGUMENT);
	assert_null(rs);
	ro.store    = f->st;
	ro.regions  = f->rm;
	ro.capacity = f->cs;
	ro.manual   = true;
	ro.pub_url  = "nonsense://x";
	assert_int_not_equal(ref_open(&rs, &ro), HV_OK);
	assert_null(rs);
	ro.pub_url          = NULL;
	ro.capacity_sub_url = "nonsense://y";
	assert_int_not_equal(ref_open(&rs, &ro), HV_OK);
	/* Store functions only: no socket is opened (the bad URL is not even looked at). */
	ro.store_only = true;
	assert_int_equal(ref_open(&rs, &ro), HV_OK);
	assert_non_null(rs);
	ref_close(rs);
	rs            = NULL;
	ro.store_only = false;
	/* With the background thread and sockets: opens and stops cleanly. */
	ro.capacity_sub_url = "inproc://refunit-cap";
	ro.consent_sub_url  = "inproc://refunit-consent";
	ro.pub_url          = "inproc://refunit-pub";
	ro.manual           = false;
	assert_int_equal(ref_open(&rs, &ro), HV_OK);
	ref_stop(rs);
	ref_stop(rs);
	ref_close(rs);
	ref_close(NULL);
}

typedef struct org_job {
	fixture  *oj_f;
	char      oj_region[REGION_NAME_MAX];
	char      oj_err[256];
	hv_status oj_unknown, oj_bad, oj_null;
} org_job;

/* Registers an organisation and reads its region back through capacity's reader in the same
 * transaction, as routing does. */
static hv_status
org_fn(store_txn *txn, void *arg)
{
	org_job                           *j   = arg;
	Haven__Capacity__V1__Organisation  org = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	Haven__Capacity__V1__Organisation *got = NULL;
	char                               region[REGION_NAME_MAX];
	hv_status                          st;

	org.id     = "org-shelter";
	org.name   = "Test shelter";
	org.role   = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
	org.region = "Limburg";
	if ((st = cap_add_organisation(j->oj_f->cs, txn, &org, j->oj_err, sizeof(j->oj_err))) !=
	    HV_OK) {
		return (st);
	}
	if ((st = ref_org_region(j->oj_f->rs, txn, "org-shelter", j->oj_region)) != HV_OK) {
		return (st);
	}
	j->oj_unknown = ref_org_region(j->oj_f->rs, txn, "org-nobody", region);
	j->oj_bad     = ref_org_region(j->oj_f->rs, txn, "../\x01", region);
	j->oj_null    = cap_get_org(j->oj_f->cs, NULL, "org-shelter", NULL, &got);
	assert_null(got);
	return (HV_OK);
}

static void
test_org_region(void **state)
{
	fixture *f = *state;
	org_job  j = { .oj_f = f };

	assert_int_equal(store_write(f->st, org_fn, &j), HV_OK);
	assert_string_equal(j.oj_region, "Limburg");
	assert_int_equal(j.oj_unknown, HV_NOT_FOUND);
	assert_int_equal(j.oj_bad, HV_NOT_FOUND);
	assert_int_equal(j.oj_null, HV_INVALID_ARGUMENT);
	assert_int_equal(cap_get_org(f->cs, NULL, "org-shelter", NULL, NULL), HV_INVALID_ARGUMENT);
}

static void
test_windows(void **state)
{
	fixture *f = *state;

	/* Configured, default, and cut to the hold's maximum. */
	assert_int_equal(ref_window_s(f->rs, HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE), 600);
	assert_int_equal(ref_window_s(f->rs, HAVEN__REFERRAL__V1__URGENCY__URGENT), 3600);
	assert_int_equal(ref_window_s(f->rs, HAVEN__REFERRAL__V1__URGENCY__PLANNED), 3600);
}

static void
test_check_create(void **state)
{
	fixture                                   *f = *state;
	Haven__Referral__V1__CreateReferralRequest req =
	    HAVEN__REFERRAL__V1__CREATE_REFERRAL_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest  n       = HAVEN__REFERRAL__V1__NEED_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest *np      = &n;
	char                             *ex[2]   = { "Limburg", "Zeeland-West-Brabant" };
	char                             *pr[1]   = { "Amsterdam" };
	char                             *lang[1] = { "pt-BR" };
	uint64_t                          exm, prm;
	char                              err[256];

	req.subject             = "00112233445566778899aabbccddeeff";
	req.urgency             = HAVEN__REFERRAL__V1__URGENCY__URGENT;
	req.exploitation        = HAVEN__REFERRAL__V1__EXPLOITATION__UNKNOWN;
	req.n_needs             = 1;
	req.needs               = &np;
	n.type                  = HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID;
	n.population            = HAVEN__CAPACITY__V1__POPULATION__FAMILIES;
	n.n_languages           = 1;
	n.languages             = lang;
	req.n_excluded_regions  = 2;
	req.excluded_regions    = ex;
	req.n_preferred_regions = 1;
	req.preferred_regions   = pr;
	assert_int_equal(ref_check_create(f->rs, &req, &exm, &prm, err, sizeof(err)), HV_OK);
	assert_int_equal(exm,
	    ((uint64_t) 1 << region_map_find(f->rm, "Limburg")) |
	        ((uint64_t) 1 << region_map_find(f->rm, "Zeeland-West-Brabant")));
	assert_int_equal(prm, (uint64_t) 1 << region_map_find(f->rm, "Amsterdam"));

	req.subject = "00112233445566778899AABBCCDDEEFF"; /* upper case is not an id */
	assert_int_equal(ref_check_create(f->rs, &req, &exm, &prm, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	req.subject = "00112233445566778899aabbccddeeff";
	ex[1]       = "Amsterdam";
	assert_int_equal(ref_check_create(f->rs, &req, &exm, &prm, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(err, "region Amsterdam is both excluded and preferred");
	ex[1]                  = "Zeeland-West-Brabant";
	req.n_excluded_regions = 17;
	assert_int_equal(ref_check_create(f->rs, &req, &exm, &prm, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	req.n_excluded_regions = 2;
	n.n_languages          = 9;
	assert_int_equal(ref_check_create(f->rs, &req, &exm, &prm, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	n.n_languages = 1;
	lang[0]       = "pt_BR";
	assert_int_equal(ref_check_create(f->rs, &req, &exm, &prm, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	lang[0] = "pt-BR";
	n.type  = HAVEN__CAPACITY__V1__SERVICE_TYPE__SERVICE_TYPE_UNSPECIFIED;
	assert_int_equal(ref_check_create(f->rs, &req, &exm, &prm, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	n.type       = HAVEN__CAPACITY__V1__SERVICE_TYPE__SHELTER;
	n.population = HAVEN__CAPACITY__V1__POPULATION__POPULATION_UNSPECIFIED;
	assert_int_equal(ref_check_create(f->rs, &req, &exm, &prm, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
}

static void
test_empty_store(void **state)
{
	fixture   *f = *state;
	store_txn *txn;
	unsigned   n   = 99;
	bool       yes = true;

	assert_int_equal(ref_route_waiting(f->rs, &n), HV_OK);
	assert_int_equal(n, 0);
	assert_int_equal(ref_expire_offers(f->rs, &n), HV_OK);
	assert_int_equal(n, 0);
	assert_int_equal(ref_consent_withdrawn(f->rs, "00112233445566778899aabbccddeeff", false,
	                     &n),
	    HV_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(ref_is_accepting_provider(f->rs, txn, "00112233445566778899aabbccddeeff",
	                     "shelter-a", &yes),
	    HV_OK);
	assert_false(yes);
	assert_int_equal(ref_is_accepting_provider(f->rs, txn, "x", "Not An Id", &yes),
	    HV_INVALID_ARGUMENT);
	store_read_end(txn);
	assert_true(ref_now_ms(f->rs) > 1600000000000LL);
}

/* Without the consent service's seal hook, free text is refused (it could only be kept in the
 * clear); no text is nothing to seal; without the unseal hook sealed text reads as "". */
static void
test_text_without_keys(void **state)
{
	fixture            *f = *state;
	ref_work            w;
	store_txn          *txn;
	ProtobufCBinaryData out                         = { 1, (uint8_t *) "x" };
	uint8_t             junk[REF_SEAL_OVERHEAD + 4] = { 1 };
	Referral            r                           = HAVEN__REFERRAL__V1__REFERRAL__INIT;
	Referral           *shown;

	ref_work_init(&w, f->rs);
	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	ref_work_begin(&w, txn);
	assert_int_equal(ref_text_seal(&w, "00112233445566778899aabbccddeeff", "ref-1", "note", -1,
	                     "a note", &out),
	    HV_FAILED_PRECONDITION);
	assert_non_null(strstr(w.w_err, "sealed"));
	assert_null(strstr(w.w_err, "a note"));
	assert_int_equal(out.len, 0);
	assert_int_equal(ref_text_seal(&w, "00112233445566778899aabbccddeeff", "ref-1", "note", -1,
	                     "", &out),
	    HV_OK);
	assert_int_equal(out.len, 0);
	r.id               = "ref-1";
	r.subject          = "00112233445566778899aabbccddeeff";
	r.sealed_note.data = junk;
	r.sealed_note.len  = sizeof(junk);
	assert_int_equal(ref_shown(&w, &r, &shown), HV_OK);
	assert_string_equal(shown->note, "");
	assert_int_equal(shown->sealed_note.len, 0);
	assert_int_equal(r.sealed_note.len, sizeof(junk)); /* the stored form is left alone */
	store_read_end(txn);
	ref_work_free(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys_order),
		cmocka_unit_test(test_rank_order),
		cmocka_unit_test(test_lang_match),
		cmocka_unit_test(test_stats_helpers),
		cmocka_unit_test(test_period),
		cmocka_unit_test(test_stats_suppression),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_work_arena),
		cmocka_unit_test_setup_teardown(test_open_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_windows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_org_region, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_without_keys, setup, teardown),
	};

	log_init("referral_unit_test", LOG_LEVEL_OFF);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
