/*
 * signals_test.c - haven.signals.v1.Signals over inproc:// (the operator; the region scope of
 * the referrers' methods, conversion and the anonymous caller over HTTP are held by
 * tests/authority/matrix_it.c): the proof-of-work is required and single-use, expired
 * challenges fail, malformed and oversized fields are refused with a message naming the field,
 * the overall rate limit holds, Challenge and (with danger_now) Submit answer the emergency
 * numbers, the alert goes to the region's referrers only, Statistics shows "<5", the contact
 * text is not in the raw LMDB file, retention erases unclosed signals with their contact
 * while the statistics keep counting them (EXPIRED), and CountSignals (called with referrers'
 * tokens) counts the new signals of the caller's region only. Limits per address: tests/web's
 * signal_abuse (over HTTP behind a trusted proxy).
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "haven/bytes.h"
#include "haven/clock.h"

#include "signals.h"
#include "../../tests/testutil.h"

#define CONTACT "call Ana after 18h on 0612345678 SECRETCONTACT"
#define HELP(x) HAVEN__SIGNALS__V1__HELP_KIND__##x

static int64_t  clock_ms = 1800000000000LL;
static uint32_t retention_days; /* the next fx_open's */

static int64_t
test_now(void *arg)
{
	(void) arg;
	return (clock_ms);
}

typedef struct fx {
	char            dir[512];
	char            url[64];
	auth           *au; /* tokens for callers other than the operator (as_org) */
	store          *st;
	region_map     *map;
	cap_service    *cs;
	alerts_service *as;
	sig_service    *ss;
	rpc_server     *srv;
	rpc_channel    *ch;
	char            err[512];
} fx;

typedef struct org_job {
	cap_service *cs;
	const char  *id, *region;
} org_job;

static hv_status
add_org_fn(store_txn *txn, void *arg)
{
	org_job                          *j = arg;
	Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	char                              err[256];

	o.id     = (char *) j->id;
	o.name   = "Outreach";
	o.role   = HAVEN__CAPACITY__V1__ROLE__REFERRER;
	o.region = (char *) j->region;
	return (cap_add_organisation(j->cs, txn, &o, err, sizeof(err)));
}

/* The organisations tokens are issued to: the two referrers of the directory, a referrer
 * the directory does not know, a municipality. */
static tu_org token_orgs[] = {
	{ "out-ams", RPC_ROLE_REFERRER, 1, NULL },
	{ "out-rdam", RPC_ROLE_REFERRER, 1, NULL },
	{ "out-gone", RPC_ROLE_REFERRER, 1, NULL },
	{ "city-ams", RPC_ROLE_MUNICIPALITY, 1, NULL },
	{ NULL, 0, 0, NULL },
};

static void
fx_open(fx *x, uint32_t per_min)
{
	static int         n;
	cap_options        co = { 0 };
	alerts_options     ao = { 0 };
	sig_options        so = { 0 };
	auth_options       au = { .lookup = tu_lookup, .lookup_arg = token_orgs };
	rpc_server_options ro = { 0 };
	char               key[600];
	org_job            a = { 0 }, b = { 0 };

	memset(x, 0, sizeof(*x));
	tu_tmpdir(x->dir, sizeof(x->dir), "signals");
	assert_int_equal(store_open(&x->st, x->dir, NULL), HV_OK);
	assert_int_equal(region_map_default(&x->map), HV_OK);
	co.store = x->st, co.regions = x->map, co.now_ms = test_now, co.manual_expiry = true;
	assert_int_equal(cap_open(&x->cs, &co), HV_OK);
	ao.store = x->st, ao.capacity = x->cs, ao.manual = true, ao.now_ms = test_now;
	assert_int_equal(alerts_open(&x->as, &ao), HV_OK);
	snprintf(key, sizeof(key), "%s/signals.key", x->dir);
	so.store = x->st, so.regions = x->map, so.capacity = x->cs, so.alerts = x->as;
	so.key_path = key, so.helpline = "0800-1234", so.difficulty = 8;
	so.submits_per_min = per_min, so.challenge_ttl_s = 60, so.now_ms = test_now;
	so.retention_days = retention_days, so.manual = true;
	assert_int_equal(sig_open(&x->ss, &so), HV_OK);
	a.cs = b.cs = x->cs;
	a.id = "out-ams", a.region = "Amsterdam";
	b.id = "out-rdam", b.region = "Rotterdam";
	assert_int_equal(store_write(x->st, add_org_fn, &a), HV_OK);
	assert_int_equal(store_write(x->st, add_org_fn, &b), HV_OK);
	snprintf(x->url, sizeof(x->url), "inproc://signals-test-%d", n++);
	memset(au.secret, 0x5a, sizeof(au.secret));
	assert_int_equal(auth_open(&x->au, &au), HV_OK);
	ro.auth = x->au;
	assert_int_equal(rpc_server_open(&x->srv, &ro), HV_OK);
	assert_int_equal(sig_register(x->ss, x->srv), HV_OK);
	assert_int_equal(rpc_server_listen(x->srv, x->url), HV_OK);
	assert_int_equal(rpc_server_start(x->srv), HV_OK);
	assert_int_equal(rpc_channel_open(&x->ch, x->url, NULL), HV_OK);
}

/* A channel that calls as the organisation org (role: its role in token_orgs). */
static rpc_channel *
as_org(fx *x, const char *org, rpc_role role)
{
	rpc_channel *ch;
	char         tok[AUTH_TOKEN_MAX];

	assert_int_equal(auth_issue_token(x->au, org, role, hv_clock_wall_ms(), tok, NULL), HV_OK);
	assert_int_equal(rpc_channel_open(&ch, x->url, NULL), HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, tok), HV_OK);
	return (ch);
}

static void
fx_close(fx *x)
{
	rpc_channel_close(x->ch);
	rpc_server_close(x->srv);
	auth_close(x->au);
	sig_close(x->ss);
	alerts_close(x->as);
	cap_close(x->cs);
	store_close(x->st);
	region_map_free(x->map);
}

/* A call of haven.signals.v1.Signals/m on channel ch; its error message into x->err. */
static hv_status
call_on(fx *x, rpc_channel *ch, const char *m, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *d, ProtobufCMessage **reply)
{
	char              full[100];
	rpc_call_options  o   = { .timeout_ms = 5000 };
	ProtobufCMessage *out = NULL;
	hv_status         st;

	snprintf(full, sizeof(full), "haven.signals.v1.Signals/%s", m);
	x->err[0] = '\0';
	st        = rpc_channel_call(ch, full, req, d, &out, &o, x->err, sizeof(x->err));
	if (reply != NULL) {
		*reply = out;
	} else if (out != NULL) {
		protobuf_c_message_free_unpacked(out, NULL);
	}
	return (st);
}

/* A call as the operator. */
static hv_status
call(fx *x, const char *m, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *d,
    ProtobufCMessage **reply)
{
	return (call_on(x, x->ch, m, req, d, reply));
}

/* A challenge's nonce into nonce (44 bytes). */
static void
challenge(fx *x, char *nonce)
{
	Haven__Signals__V1__ChallengeRequest q = HAVEN__SIGNALS__V1__CHALLENGE_REQUEST__INIT;
	Haven__Signals__V1__ChallengeReply  *r;

	assert_int_equal(call(x, "Challenge", &q.base,
	                     &haven__signals__v1__challenge_reply__descriptor,
	                     (ProtobufCMessage **) &r),
	    HV_OK);
	assert_int_equal(r->difficulty, 8);
	assert_int_equal(strlen(r->nonce), SIG_NONCE_LEN);
	/* what the page shows before anything is sent: 112 and the helpline, and the regions */
	assert_int_equal(r->n_emergency_numbers, 2);
	assert_string_equal(r->emergency_numbers[0], "112");
	assert_string_equal(r->emergency_numbers[1], "0800-1234");
	assert_int_equal(r->n_regions, region_map_count(x->map));
	assert_string_equal(r->regions[0], region_map_name(x->map, 0));
	snprintf(nonce, SIG_NONCE_LEN + 1, "%s", r->nonce);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* A valid request for region with a solved challenge (sol: 4 bytes the caller keeps). */
static void
valid(fx *x, Haven__Signals__V1__SubmitRequest *q, const char *region, char *nonce, uint8_t *sol)
{
	haven__signals__v1__submit_request__init(q);
	challenge(x, nonce);
	assert_int_equal(sig_solve(nonce, 8, sol), 4);
	q->region        = (char *) region;
	q->help          = HELP(HELP_SAFETY);
	q->sector        = HAVEN__SIGNALS__V1__SECTOR__FARM;
	q->contact       = CONTACT;
	q->language      = "pl";
	q->nonce         = nonce;
	q->solution.data = sol;
	q->solution.len  = 4;
}

static hv_status
submit(fx *x, const Haven__Signals__V1__SubmitRequest *q, Haven__Signals__V1__SubmitReply **r)
{
	return (call(x, "Submit", &q->base, &haven__signals__v1__submit_reply__descriptor,
	    (ProtobufCMessage **) r));
}

static void
test_pow_single_use(void **state)
{
	fx                                x;
	Haven__Signals__V1__SubmitRequest q;
	Haven__Signals__V1__SubmitReply  *r = NULL;
	char                              nonce[64];
	uint8_t                           sol[4];

	(void) state;
	fx_open(&x, 100);
	valid(&x, &q, "Amsterdam", nonce, sol);
	q.solution.len = 0; /* no work: refused, and the challenge is spent */
	assert_int_equal(submit(&x, &q, NULL), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(x.err, "difficulty"));
	q.solution.len = 4;
	assert_int_equal(submit(&x, &q, NULL), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(x.err, "outstanding"));
	valid(&x, &q, "Amsterdam", nonce, sol);
	q.danger_now = true;
	assert_int_equal(submit(&x, &q, &r), HV_OK);
	assert_int_equal(r->n_emergency_numbers, 2);
	assert_string_equal(r->emergency_numbers[0], "112");
	assert_string_equal(r->emergency_numbers[1], "0800-1234");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	assert_int_equal(submit(&x, &q, NULL), HV_FAILED_PRECONDITION); /* replay */
	q.nonce = "short";
	assert_int_equal(submit(&x, &q, NULL), HV_INVALID_ARGUMENT);
	/* An expired challenge. */
	valid(&x, &q, "Amsterdam", nonce, sol);
	clock_ms += 61000;
	assert_int_equal(submit(&x, &q, NULL), HV_FAILED_PRECONDITION);
	fx_close(&x);
}

static void
test_malformed(void **state)
{
	fx                                x;
	Haven__Signals__V1__SubmitRequest q;
	char                              nonce[64], big[SIG_CONTACT_MAX + 2];
	uint8_t                           sol[4];
	Haven__Signals__V1__Sign          signs[SIG_SIGNS_MAX + 1];

	(void) state;
	fx_open(&x, 100);
	valid(&x, &q, "Atlantis", nonce, sol);
	assert_int_equal(submit(&x, &q, NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(x.err, "region"));
	valid(&x, &q, "Amsterdam", nonce, sol);
	q.help = 0;
	assert_int_equal(submit(&x, &q, NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(x.err, "help"));
	valid(&x, &q, "Amsterdam", nonce, sol);
	q.sector = 99;
	assert_int_equal(submit(&x, &q, NULL), HV_INVALID_ARGUMENT);
	valid(&x, &q, "Amsterdam", nonce, sol);
	for (size_t i = 0; i <= SIG_SIGNS_MAX; i++) {
		signs[i] = (Haven__Signals__V1__Sign) (i % 10 + 1);
	}
	q.signs   = signs;
	q.n_signs = SIG_SIGNS_MAX + 1;
	assert_int_equal(submit(&x, &q, NULL), HV_INVALID_ARGUMENT);
	valid(&x, &q, "Amsterdam", nonce, sol);
	q.signs   = signs;
	q.n_signs = 11; /* signs[10] repeats signs[0] */
	assert_int_equal(submit(&x, &q, NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(x.err, "repeats"));
	valid(&x, &q, "Amsterdam", nonce, sol);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	q.contact            = big;
	assert_int_equal(submit(&x, &q, NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(x.err, "contact"));
	assert_null(strstr(x.err, "aaaa")); /* never the text itself */
	valid(&x, &q, "Amsterdam", nonce, sol);
	q.language = "not a language";
	assert_int_equal(submit(&x, &q, NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(x.err, "language"));
	fx_close(&x);
}

static void
test_rate_limit(void **state)
{
	fx                                x;
	Haven__Signals__V1__SubmitRequest q;
	char                              nonce[64];
	uint8_t                           sol[4];

	(void) state;
	fx_open(&x, 3);
	for (int i = 0; i < 3; i++) {
		valid(&x, &q, "Amsterdam", nonce, sol);
		assert_int_equal(submit(&x, &q, NULL), HV_OK);
	}
	valid(&x, &q, "Amsterdam", nonce, sol);
	assert_int_equal(submit(&x, &q, NULL), HV_RESOURCE_EXHAUSTED);
	clock_ms += 21000; /* one token back (3 a minute) */
	valid(&x, &q, "Amsterdam", nonce, sol);
	assert_int_equal(submit(&x, &q, NULL), HV_OK);
	fx_close(&x);
}

/* Closes every stored signal at `when` (what CloseSignal stores), in the store itself. */
typedef struct close_job {
	store_table cj_items;
	uint64_t    cj_when;
} close_job;

static hv_status
close_all_fn(store_txn *txn, void *arg)
{
	close_job    *j   = arg;
	store_cursor *cur = NULL;
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st;

	assert_int_equal(store_cursor_open(txn, j->cj_items, &cur), HV_OK);
	for (st = store_cursor_seek(cur, "", 0, &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(cur, &k, &kl, &v, &vl)) {
		Haven__Signals__V1__Signal *sg = haven__signals__v1__signal__unpack(NULL, vl, v);
		char                        key[128];

		assert_non_null(sg);
		assert_true(kl < sizeof(key));
		memcpy(key, k, kl);
		sg->state     = HAVEN__SIGNALS__V1__STATE__CLOSED;
		sg->outcome   = HAVEN__SIGNALS__V1__OUTCOME__NO_CONTACT;
		sg->closed_ms = j->cj_when;
		assert_int_equal(store_put_msg(txn, j->cj_items, key, kl, &sg->base), HV_OK);
		haven__signals__v1__signal__free_unpacked(sg, NULL);
	}
	store_cursor_close(cur);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

static void
fx_close_all_after(fx *x, int64_t when)
{
	close_job j = { .cj_when = (uint64_t) when };

	assert_int_equal(store_table_open(x->st, "signals.items", &j.cj_items), HV_OK);
	assert_int_equal(store_write(x->st, close_all_fn, &j), HV_OK);
}

/* The signals' month (the test clock's, January 2027) asked 11 minutes after it ended in
 * Amsterdam (1 February 00:00 CET is 31 January 23:00 UTC); the clock is put back after. */
#define FEB_2027_MS 1801436400000LL
static hv_status
stats_of_month(fx *x, Haven__Signals__V1__StatisticsRequest *sq,
    Haven__Signals__V1__StatisticsReply **sr)
{
	int64_t   saved = clock_ms;
	hv_status st;

	sq->period = "2027-01";
	clock_ms   = FEB_2027_MS + 11 * 60 * 1000;
	st = call(x, "Statistics", &sq->base, &haven__signals__v1__statistics_reply__descriptor,
	    (ProtobufCMessage **) sr);
	clock_ms = saved;
	return (st);
}

/* Statistics answer whole calendar months that have ended, counted as they were at the end:
 * a window of a caller's choosing (down to one millisecond, up to now) told when each signal
 * came in, of which sector and region, and watched new ones arrive. */
static void
test_statistics_periods(void **state)
{
	fx                                    x;
	Haven__Signals__V1__SubmitRequest     q;
	Haven__Signals__V1__StatisticsRequest sq = HAVEN__SIGNALS__V1__STATISTICS_REQUEST__INIT;
	Haven__Signals__V1__StatisticsReply  *sr = NULL;
	char                                  nonce[64];
	uint8_t                               sol[4];

	(void) state;
	fx_open(&x, 100);
	valid(&x, &q, "Amsterdam", nonce, sol);
	assert_int_equal(submit(&x, &q, NULL), HV_OK);
	/* A window narrowed to the signal's millisecond: refused. */
	sq.from_ms = (uint64_t) clock_ms;
	sq.to_ms   = (uint64_t) clock_ms + 1;
	assert_int_equal(call(&x, "Statistics", &sq.base,
	                     &haven__signals__v1__statistics_reply__descriptor,
	                     (ProtobufCMessage **) &sr),
	    HV_INVALID_ARGUMENT);
	sq.from_ms = sq.to_ms = 0;
	/* The month still running, a week, nonsense: refused. */
	sq.period = "2027-01";
	assert_int_equal(call(&x, "Statistics", &sq.base,
	                     &haven__signals__v1__statistics_reply__descriptor,
	                     (ProtobufCMessage **) &sr),
	    HV_FAILED_PRECONDITION);
	sq.period = "2027-W02";
	assert_int_equal(call(&x, "Statistics", &sq.base,
	                     &haven__signals__v1__statistics_reply__descriptor,
	                     (ProtobufCMessage **) &sr),
	    HV_INVALID_ARGUMENT);
	sq.period = "";
	assert_int_equal(call(&x, "Statistics", &sq.base,
	                     &haven__signals__v1__statistics_reply__descriptor,
	                     (ProtobufCMessage **) &sr),
	    HV_INVALID_ARGUMENT);
	/* Closed after the month ended: still open in the month's answer, then and later. */
	assert_int_equal(stats_of_month(&x, &sq, &sr), HV_OK);
	assert_int_equal(sr->n_cells, 1);
	assert_int_equal(sr->cells[0]->outcome, HAVEN__SIGNALS__V1__OUTCOME__OUTCOME_UNSPECIFIED);
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	fx_close_all_after(&x, FEB_2027_MS + 1000);
	assert_int_equal(stats_of_month(&x, &sq, &sr), HV_OK);
	assert_int_equal(sr->n_cells, 1);
	assert_int_equal(sr->cells[0]->outcome, HAVEN__SIGNALS__V1__OUTCOME__OUTCOME_UNSPECIFIED);
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	fx_close(&x);
}

/* Alerts of the region's referrers only; the contact sealed in the raw file; Statistics. */
static void
test_alert_seal_statistics(void **state)
{
	fx                                    x;
	Haven__Signals__V1__SubmitRequest     q;
	Haven__Signals__V1__StatisticsRequest sq = HAVEN__SIGNALS__V1__STATISTICS_REQUEST__INIT;
	Haven__Signals__V1__StatisticsReply  *sr;
	char                                  nonce[64], path[600];
	uint8_t                               sol[4];
	store_table                           by_org;
	store_txn                            *txn;
	store_cursor                         *cur;
	const void                           *k;
	size_t                                kl, ams = 0, other = 0, len;
	char                                 *raw;

	(void) state;
	fx_open(&x, 100);
	for (int i = 0; i < 3; i++) {
		valid(&x, &q, "Amsterdam", nonce, sol);
		assert_int_equal(submit(&x, &q, NULL), HV_OK);
	}
	assert_int_equal(store_table_open(x.st, "alerts.by_org", &by_org), HV_OK);
	assert_int_equal(store_read_begin(x.st, &txn), HV_OK);
	assert_int_equal(store_cursor_open(txn, by_org, &cur), HV_OK);
	for (hv_status st = store_cursor_seek(cur, "", 0, &k, &kl, NULL, NULL); st == HV_OK;
	     st           = store_cursor_next(cur, &k, &kl, NULL, NULL)) {
		*(strncmp(k, "out-ams", 8) == 0 ? &ams : &other) += 1;
	}
	store_cursor_close(cur);
	store_read_end(txn);
	assert_int_equal(ams, 3);
	assert_int_equal(other, 0);

	snprintf(path, sizeof(path), "%s/data.mdb", x.dir);
	raw = tu_slurp(path, &len);
	assert_non_null(raw);
	assert_non_null(memmem(raw, len, "Amsterdam", 9)); /* the scan sees what is stored */
	assert_null(memmem(raw, len, "SECRETCONTACT", 13));
	assert_null(memmem(raw, len, "0612345678", 10));
	free(raw);

	assert_int_equal(stats_of_month(&x, &sq, &sr), HV_OK);
	assert_int_equal(sr->n_cells, 1);
	assert_string_equal(sr->cells[0]->region, "Amsterdam");
	assert_int_equal(sr->cells[0]->sector, HAVEN__SIGNALS__V1__SECTOR__FARM);
	assert_string_equal(sr->cells[0]->count, "<5");
	assert_int_equal(sr->n_region_totals, 1);
	assert_string_equal(sr->region_totals[0]->count, "<5");
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	for (int i = 0; i < 3; i++) {
		valid(&x, &q, "Amsterdam", nonce, sol);
		assert_int_equal(submit(&x, &q, NULL), HV_OK);
	}
	valid(&x, &q, "Amsterdam", nonce, sol);
	q.sector = HAVEN__SIGNALS__V1__SECTOR__CLEANING;
	assert_int_equal(submit(&x, &q, NULL), HV_OK);
	assert_int_equal(stats_of_month(&x, &sq, &sr), HV_OK);
	assert_int_equal(sr->n_cells, 2);
	assert_string_equal(sr->cells[0]->count, "6");
	assert_string_equal(sr->cells[1]->count, "<5");
	assert_string_equal(sr->region_totals[0]->count, "x"); /* 7 - 6 would tell the "<5" */
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	/* The operator is no outreach organisation: no signal list for it. */
	{
		Haven__Signals__V1__ListSignalsRequest lq =
		    HAVEN__SIGNALS__V1__LIST_SIGNALS_REQUEST__INIT;
		assert_int_equal(call(&x, "ListSignals", &lq.base,
		                     &haven__signals__v1__list_signals_reply__descriptor, NULL),
		    HV_PERMISSION_DENIED);
	}
	fx_close(&x);
}

/* March 2027's statistics of test_retention: the four signals open at its end (one cell, open,
 * "<5"; Rotterdam's total "<5"), whenever asked. */
static void
expect_march_open(fx *x)
{
	Haven__Signals__V1__StatisticsRequest sq = HAVEN__SIGNALS__V1__STATISTICS_REQUEST__INIT;
	Haven__Signals__V1__StatisticsReply  *sr;

	sq.period = "2027-03";
	assert_int_equal(call(x, "Statistics", &sq.base,
	                     &haven__signals__v1__statistics_reply__descriptor,
	                     (ProtobufCMessage **) &sr),
	    HV_OK);
	assert_int_equal(sr->n_cells, 1);
	assert_int_equal(sr->cells[0]->outcome, 0);
	assert_int_equal(sr->cells[0]->sector, HAVEN__SIGNALS__V1__SECTOR__FARM);
	assert_string_equal(sr->cells[0]->count, "<5");
	assert_string_equal(sr->region_totals[0]->region, "Rotterdam");
	assert_string_equal(sr->region_totals[0]->count, "<5");
	protobuf_c_message_free_unpacked(&sr->base, NULL);
}

typedef struct raw_put {
	store_table    rp_table;
	const uint8_t *rp_key;
	size_t         rp_kl;
	const uint8_t *rp_val;
} raw_put;

static hv_status
raw_put_fn(store_txn *txn, void *arg)
{
	raw_put *r = arg;

	return (store_put(txn, r->rp_table, r->rp_key, r->rp_kl, r->rp_val, 4));
}

/* A row of signals.expired written as retention writes it. */
static hv_status
put_raw(store *st, store_table t, const uint8_t *key, size_t kl, const uint8_t val[4])
{
	raw_put r = { t, key, kl, val };

	return (store_write(st, raw_put_fn, &r));
}

/* Retention: signals nobody closed go after retention_days with their sealed contact, and stay
 * in the statistics, as they were at the end of the month they came in (EXPIRED only when
 * erased before it); newer ones stay. */
static void
test_retention(void **state)
{
	fx                                    x;
	Haven__Signals__V1__SubmitRequest     q;
	Haven__Signals__V1__StatisticsRequest sq = HAVEN__SIGNALS__V1__STATISTICS_REQUEST__INIT;
	Haven__Signals__V1__StatisticsReply  *sr;
	char                                  nonce[64];
	uint8_t                               sol[4];
	store_table                           items, contact;
	store_txn                            *txn;
	uint64_t                              ni, nc;
	size_t                                erased = 99;

	(void) state;
	clock_ms       = 1803866400000LL; /* 2027-03-01 03:00 in Amsterdam */
	retention_days = 90;
	fx_open(&x, 100);
	retention_days = 0;
	for (int i = 0; i < 3; i++) {
		valid(&x, &q, "Rotterdam", nonce, sol);
		assert_int_equal(submit(&x, &q, NULL), HV_OK);
	}
	clock_ms += 10LL * 86400000; /* one more, ten days later */
	valid(&x, &q, "Rotterdam", nonce, sol);
	assert_int_equal(submit(&x, &q, NULL), HV_OK);
	assert_int_equal(sig_retention_run(x.ss, &erased), HV_OK);
	assert_int_equal(erased, 0); /* nothing is 90 days old yet */
	clock_ms += 22LL * 86400000; /* 2 April: March has ended, all four open then */
	expect_march_open(&x);

	clock_ms += 63LL * 86400000; /* the first three are 95 days old, the last one 85 */
	assert_int_equal(sig_retention_run(x.ss, &erased), HV_OK);
	assert_int_equal(erased, 3);
	assert_int_equal(sig_retention_run(x.ss, &erased), HV_OK);
	assert_int_equal(erased, 0);
	assert_int_equal(store_table_open(x.st, "signals.items", &items), HV_OK);
	assert_int_equal(store_table_open(x.st, "signals.contact", &contact), HV_OK);
	assert_int_equal(store_read_begin(x.st, &txn), HV_OK);
	assert_int_equal(store_count(txn, items, &ni), HV_OK);
	assert_int_equal(store_count(txn, contact, &nc), HV_OK);
	store_read_end(txn);
	assert_int_equal(ni, 1);
	assert_int_equal(nc, 1); /* the sealed contacts went with their signals */

	/* Counted still, in the month they came in, as they were at its end: all four open, the
	 * answer of 2 April unchanged by the erasure in June. */
	expect_march_open(&x);
	/* An erasure within the month is EXPIRED in that month: the key carries the day. */
	{
		uint8_t     key[64] = "Rotterdam";
		uint8_t     one[4]  = { 0, 0, 0, 1 };
		store_table expired;

		assert_int_equal(store_table_open(x.st, "signals.expired", &expired), HV_OK);
		hv_put_be64(key + 10, 1803866400000ULL - 1803866400000ULL % 86400000ULL);
		key[18] = HAVEN__SIGNALS__V1__SECTOR__FARM;
		hv_put_be64(key + 19, 1803866400000ULL + 5ULL * 86400000ULL); /* erased 6 March */
		assert_int_equal(put_raw(x.st, expired, key, 27, one), HV_OK);
	}
	sq.period = "2027-03";
	assert_int_equal(call(&x, "Statistics", &sq.base,
	                     &haven__signals__v1__statistics_reply__descriptor,
	                     (ProtobufCMessage **) &sr),
	    HV_OK);
	assert_int_equal(sr->n_cells, 2);
	assert_int_equal(sr->cells[0]->outcome, 0);
	assert_int_equal(sr->cells[1]->outcome, HAVEN__SIGNALS__V1__OUTCOME__EXPIRED);
	assert_int_equal(sr->cells[1]->sector, HAVEN__SIGNALS__V1__SECTOR__FARM);
	assert_string_equal(sr->cells[1]->count, "<5");
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	/* the next month: none came in then */
	sq.period = "2027-04";
	assert_int_equal(call(&x, "Statistics", &sq.base,
	                     &haven__signals__v1__statistics_reply__descriptor,
	                     (ProtobufCMessage **) &sr),
	    HV_OK);
	assert_int_equal(sr->n_cells, 0);
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	fx_close(&x);
}

/* CountSignals on ch: its count, or UINT32_MAX when refused (x->err says why). */
static uint32_t
count_new(fx *x, rpc_channel *ch)
{
	Haven__Signals__V1__CountSignalsRequest q = HAVEN__SIGNALS__V1__COUNT_SIGNALS_REQUEST__INIT;
	Haven__Signals__V1__CountSignalsReply  *r = NULL;
	uint32_t                                n;

	if (call_on(x, ch, "CountSignals", &q.base,
	        &haven__signals__v1__count_signals_reply__descriptor,
	        (ProtobufCMessage **) &r) != HV_OK) {
		return (UINT32_MAX);
	}
	n = r->count;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return (n);
}

/* CountSignals, the number on an outreach worker's badge: the signals of the caller's own
 * region that nobody acknowledged yet; acknowledged and closed ones are not counted, another
 * region's never; a role other than referrer, and a referrer the directory does not know
 * (no region), are refused. The request has no field, so there is no bad input to refuse. */
static void
test_count_new(void **state)
{
	fx                                     x;
	Haven__Signals__V1__SubmitRequest      q;
	Haven__Signals__V1__SubmitReply       *r;
	Haven__Signals__V1__CloseSignalRequest cq = HAVEN__SIGNALS__V1__CLOSE_SIGNAL_REQUEST__INIT;
	Haven__Signals__V1__AcknowledgeSignalRequest aq =
	    HAVEN__SIGNALS__V1__ACKNOWLEDGE_SIGNAL_REQUEST__INIT;
	rpc_channel *ams, *rdam, *city, *gone;
	char         nonce[64], ids[3][64];
	uint8_t      sol[4];

	(void) state;
	fx_open(&x, 100);
	ams  = as_org(&x, "out-ams", RPC_ROLE_REFERRER);
	rdam = as_org(&x, "out-rdam", RPC_ROLE_REFERRER);
	city = as_org(&x, "city-ams", RPC_ROLE_MUNICIPALITY);
	gone = as_org(&x, "out-gone", RPC_ROLE_REFERRER);
	assert_int_equal(count_new(&x, ams), 0);
	for (int i = 0; i < 3; i++) {
		valid(&x, &q, "Amsterdam", nonce, sol);
		assert_int_equal(submit(&x, &q, &r), HV_OK);
		snprintf(ids[i], sizeof(ids[i]), "%s", r->id);
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	valid(&x, &q, "Rotterdam", nonce, sol);
	assert_int_equal(submit(&x, &q, NULL), HV_OK);
	assert_int_equal(count_new(&x, ams), 3);
	assert_int_equal(count_new(&x, rdam), 1);

	aq.id = ids[0]; /* taken up: no longer new */
	assert_int_equal(call_on(&x, ams, "AcknowledgeSignal", &aq.base,
	                     &haven__signals__v1__acknowledge_signal_reply__descriptor, NULL),
	    HV_OK);
	cq.id      = ids[1]; /* closed without being taken up first */
	cq.outcome = HAVEN__SIGNALS__V1__OUTCOME__DUPLICATE;
	assert_int_equal(call_on(&x, ams, "CloseSignal", &cq.base,
	                     &haven__signals__v1__close_signal_reply__descriptor, NULL),
	    HV_OK);
	assert_int_equal(count_new(&x, ams), 1);
	assert_int_equal(count_new(&x, rdam), 1);

	assert_int_equal(count_new(&x, city), UINT32_MAX);
	assert_non_null(strstr(x.err, "may not call"));
	assert_int_equal(count_new(&x, x.ch), UINT32_MAX); /* the operator: no outreach */
	assert_int_equal(count_new(&x, gone), UINT32_MAX);
	assert_non_null(strstr(x.err, "outreach organisations of their region"));
	rpc_channel_close(ams);
	rpc_channel_close(rdam);
	rpc_channel_close(city);
	rpc_channel_close(gone);
	fx_close(&x);
}

/* Bad options are refused at start-up: a key file others may read, a helpline that is no
 * number, a difficulty past the bound. */
static void
test_open_refuses(void **state)
{
	fx           x;
	sig_options  so = { 0 };
	sig_service *ss = NULL;
	char         key[600];

	(void) state;
	fx_open(&x, 100);
	snprintf(key, sizeof(key), "%s/signals.key", x.dir);
	so.store = x.st, so.regions = x.map, so.capacity = x.cs, so.key_path = key;
	so.helpline = "call <script>";
	assert_int_equal(sig_open(&ss, &so), HV_INVALID_ARGUMENT);
	so.helpline   = NULL;
	so.difficulty = SIG_DIFFICULTY_MAX + 1;
	assert_int_equal(sig_open(&ss, &so), HV_INVALID_ARGUMENT);
	so.difficulty = 0;
	assert_int_equal(chmod(key, 0644), 0);
	assert_int_equal(sig_open(&ss, &so), HV_PERMISSION_DENIED);
	assert_int_equal(chmod(key, 0600), 0);
	assert_int_equal(sig_open(&ss, &so), HV_OK); /* the same key again */
	sig_close(ss);
	fx_close(&x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pow_single_use),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_alert_seal_statistics),
		cmocka_unit_test(test_statistics_periods),
		cmocka_unit_test(test_retention),
		cmocka_unit_test(test_count_new),
		cmocka_unit_test(test_open_refuses),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
