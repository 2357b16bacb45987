/*
 * ref_stats.c - Statistics for municipalities and coordinators: per home region of the
 * referral, form of exploitation and need type, over the referrals created in one named
 * period (ref_period.c: an ISO week or a calendar month, Europe/Amsterdam, ended): needs
 * referred, needs placed before the period's end, needs waiting at its end (unmet demand),
 * the median and 90th percentile of the time from referral to placement, and each region's
 * totals. Everything is counted as it was at the period's end (from the needs' trails), so
 * an answer never changes once it can be given.
 *
 * Small cells are suppressed: a count of 1 to 4 is shown as "<5" (0 as "0"); complementary
 * suppression then withholds ("x") what would let a reader work a "<5" out: the placements
 * and unmet beside it, and the region's total (stat_suppress_region). No cell names a person,
 * a referral or a provider.
 *
 * The walk over the referrals (ref_stats_walk) is shared with the metrics page
 * (ref_metrics.c), which counts needs by state over all referrals with it.
 */
#include "ref_internal.h"

#include "haven/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAT_TYPES        16             /* service types counted (capacity's grid has 16) */
#define STAT_EXPLOITATION 6              /* Exploitation values 0..5 */
#define STAT_CELLS        REF_STAT_CELLS /* cells of one region */
#define STAT_MIN          5              /* smaller counts are shown as "<5" */
#define STAT_MEASURES     REF_STAT_MEASURES
#define STAT_SETTLE_MS    (10 * 60 * 1000) /* a period is answered this long after its end */
#define STAT_HOUR_MS      (3600 * 1000)    /* times are shown in whole hours */
#define STAT_P90_MIN      10 /* below, the 90th percentile is the slowest person's own time */

#define M_REFERRALS  REF_STAT_REFERRALS
#define M_PLACEMENTS REF_STAT_PLACEMENTS
#define M_UNMET      REF_STAT_UNMET
#define SHOW_NUMBER  REF_SHOW_NUMBER
#define SHOW_SMALL   REF_SHOW_SMALL
#define SHOW_HIDDEN  REF_SHOW_HIDDEN

_Static_assert(STAT_CELLS == STAT_EXPLOITATION * STAT_TYPES, "a region's cells");

typedef struct stat_cell {
	uint32_t  sc_n[STAT_MEASURES];
	uint8_t   sc_show[STAT_MEASURES];
	uint64_t *sc_times; /* ms to placement, malloc'd */
	size_t    sc_ntimes, sc_captimes;
} stat_cell;

hv_status
ref_stat_month(const char *name, uint64_t *from_ms, uint64_t *to_ms, char *err, size_t errsz)
{
	ref_period p;
	hv_status  st;

	if ((st = ref_period_parse(name, &p, err, errsz)) != HV_OK) {
		return (st);
	}
	if (p.rp_week) {
		snprintf(err, errsz, "period must be a calendar month YYYY-MM, not a week");
		return (HV_INVALID_ARGUMENT);
	}
	*from_ms = p.rp_from_ms;
	*to_ms   = p.rp_to_ms;
	return (HV_OK);
}

const char *
ref_stat_count(uint32_t n, char buf[16])
{
	if (n > 0 && n < STAT_MIN) {
		snprintf(buf, 16, "<%d", STAT_MIN);
	} else {
		snprintf(buf, 16, "%u", n);
	}
	return (buf);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

	return (x < y ? -1 : x > y ? 1 : 0);
}

uint64_t
ref_percentile(uint64_t *v, size_t n, unsigned pct)
{
	size_t rank;

	if (n == 0) {
		return (0);
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	rank = (n * pct + 99) / 100; /* nearest rank: ceil(pct/100 * n) */
	if (rank == 0) {
		rank = 1;
	}
	return (v[rank - 1]);
}

void
ref_stat_times(uint64_t *v, size_t n, uint64_t *median, uint64_t *p90)
{
	*median = *p90 = 0;
	if (n >= STAT_MIN) {
		*median =
		    (ref_percentile(v, n, 50) + STAT_HOUR_MS / 2) / STAT_HOUR_MS * STAT_HOUR_MS;
	}
	if (n >= STAT_P90_MIN) {
		*p90 = (ref_percentile(v, n, 90) + STAT_HOUR_MS / 2) / STAT_HOUR_MS * STAT_HOUR_MS;
	}
}

static bool
push_time(stat_cell *c, uint64_t t)
{
	if (c->sc_ntimes == c->sc_captimes) {
		size_t    ncap = c->sc_captimes == 0 ? 16 : c->sc_captimes * 2;
		uint64_t *p    = realloc(c->sc_times, ncap * sizeof(*p));

		if (p == NULL) {
			return (false);
		}
		c->sc_times    = p;
		c->sc_captimes = ncap;
	}
	c->sc_times[c->sc_ntimes++] = t;
	return (true);
}

static void *
pb_alloc(ProtobufCAllocator *a, size_t n)
{
	return (a->alloc(a->allocator_data, n));
}

static char *
pb_strdup(ProtobufCAllocator *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char  *p = pb_alloc(a, n);

	if (p != NULL) {
		memcpy(p, s, n);
	}
	return (p);
}

hv_status
ref_stats_walk(ref_service *rs, store_txn *txn, uint64_t from, uint64_t to, ref_walk_fn fn,
    void *arg)
{
	store_cursor *c = NULL;
	uint8_t       key[8];
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st;

	if (from >= to) {
		return (HV_OK);
	}
	if ((st = store_cursor_open(txn, rs->rs_by_time, &c)) != HV_OK) {
		return (st);
	}
	/* Newest first: from the last millisecond before `to` back to `from`. */
	hv_put_be64(key, UINT64_MAX - (to - 1));
	for (st = store_cursor_seek(c, key, sizeof(key), &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		Referral *r;
		uint64_t  created;

		if (kl <= 8) {
			continue;
		}
		created = UINT64_MAX - hv_get_be64(k);
		if (created < from) {
			break;
		}
		if (store_get(txn, rs->rs_referrals, (const uint8_t *) k + 8, kl - 8, &v, &vl) !=
		    HV_OK) {
			continue;
		}
		if ((r = haven__referral__v1__referral__unpack(NULL, vl, v)) == NULL) {
			st = HV_DATA_LOSS;
			break;
		}
		st = fn(arg, r);
		haven__referral__v1__referral__free_unpacked(r, NULL);
		if (st != HV_OK) {
			break;
		}
	}
	store_cursor_close(c);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

typedef struct stat_walk {
	ref_service *sw_rs;
	uint64_t     sw_mask; /* regions asked for; 0: all */
	uint64_t     sw_end;  /* the period's end, Unix ms */
	stat_cell   *sw_cells;
} stat_walk;

/* Need n of r as it was at `end` (from its trail): *waiting whether its state was WAITING,
 * *placed_ms when it was first placed before end (0: not). An answer for a period that has
 * ended therefore never changes, and two answers asked days apart cannot be subtracted to
 * tell when one person's need was placed. */
static void
stat_need_at(const Referral *r, const Need *n, uint64_t end, bool *waiting, uint64_t *placed_ms)
{
	NeedState state = NS(WAITING); /* a need is made waiting */

	*placed_ms = 0;
	for (size_t i = 0; i < r->n_events; i++) {
		const Event *e = r->events[i];

		if (e->need_index != n->index || e->time_ms >= end) {
			continue;
		}
		state = e->to;
		if (e->to == NS(PLACED) && *placed_ms == 0) {
			*placed_ms = e->time_ms;
		}
	}
	*waiting = state == NS(WAITING);
}

static hv_status
stat_count(void *arg, const Referral *r)
{
	stat_walk *sw  = arg;
	int        reg = region_map_find(sw->sw_rs->rs_regions, r->home_region);

	if (reg < 0 ||
	    (sw->sw_mask != 0 && (reg >= 64 || (sw->sw_mask & ((uint64_t) 1 << reg)) == 0)) ||
	    (int) r->exploitation < 0 || (int) r->exploitation >= STAT_EXPLOITATION) {
		return (HV_OK);
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		const Need *n = r->needs[i];
		stat_cell  *cell;
		bool        waiting;
		uint64_t    placed;

		if ((int) n->type <= 0 || (int) n->type >= STAT_TYPES) {
			continue;
		}
		cell = &sw->sw_cells[((size_t) reg * STAT_EXPLOITATION + (size_t) r->exploitation) *
		        STAT_TYPES +
		    (size_t) n->type];
		stat_need_at(r, n, sw->sw_end, &waiting, &placed);
		cell->sc_n[M_REFERRALS]++;
		if (waiting) {
			cell->sc_n[M_UNMET]++;
		}
		if (placed != 0) {
			cell->sc_n[M_PLACEMENTS]++;
			if (!push_time(cell, placed > r->created_ms ? placed - r->created_ms : 0)) {
				return (HV_RESOURCE_EXHAUSTED);
			}
		}
	}
	return (HV_OK);
}

/* ---- complementary suppression --------------------------------------------------------------- */

/*
 * How each count of one region's cells, and the region's totals, are shown. A reader knows
 * every number shown, that "<5" is 1..4, and these rules; across one cell placements and
 * unmet are at most the referrals, and together too (assumed: a need placed before the end
 * is not waiting at it). The rules leave every "<5" free to be any of 1..4:
 *
 * - a count of 1..4 is "<5";
 * - a cell whose referrals are "<5" says nothing more: its placements and unmet are "x" (one
 *   person's placement is not published, and they would bound the referrals);
 * - in a cell whose placements or unmet are "<5", the other of the two is "<5" or "x", never
 *   a number (referrals - placements would bound unmet, and the other way round);
 * - a region's total of a count is shown only if every count it adds up is shown as a number;
 *   else it is "x" (a total beside one "<5" is that "<5" plus the numbers shown).
 *
 * Every rule depends only on which counts are 1..4, which the answer shows anyway, never on
 * the value of a count withheld. A search for the fewest cells to withhold (withhold the
 * next-smallest cell, then check the total) would not: which cell it picks depends on the
 * "<5" values, and a reader who knows the search works them out again (1 beside 6 and 9 of
 * 16: the 9 is withheld rather than the 6 only if the "<5" is 1 or 2). Times are shown only
 * beside a placement count that is shown (ref_stat_times).
 */
static void
stat_suppress_region(stat_cell *line, uint8_t totals[STAT_MEASURES])
{
	for (int m = 0; m < STAT_MEASURES; m++) {
		totals[m] = SHOW_NUMBER;
	}
	for (size_t i = 0; i < STAT_CELLS; i++) {
		uint32_t *n    = line[i].sc_n;
		uint8_t  *show = line[i].sc_show;

		for (int m = 0; m < STAT_MEASURES; m++) {
			show[m] = n[m] > 0 && n[m] < STAT_MIN ? SHOW_SMALL : SHOW_NUMBER;
		}
		if (show[M_REFERRALS] == SHOW_SMALL) {
			show[M_PLACEMENTS] = show[M_UNMET] = SHOW_HIDDEN;
		} else if (show[M_PLACEMENTS] == SHOW_SMALL || show[M_UNMET] == SHOW_SMALL) {
			for (int m = M_PLACEMENTS; m < STAT_MEASURES; m++) {
				if (show[m] != SHOW_SMALL) {
					show[m] = SHOW_HIDDEN;
				}
			}
		}
		for (int m = 0; m < STAT_MEASURES; m++) {
			if (show[m] != SHOW_NUMBER) {
				totals[m] = SHOW_HIDDEN;
			}
		}
	}
}

void
ref_stats_suppress(const uint32_t counts[REF_STAT_CELLS][REF_STAT_MEASURES],
    uint8_t shows[REF_STAT_CELLS][REF_STAT_MEASURES], uint8_t totals[REF_STAT_MEASURES])
{
	stat_cell line[STAT_CELLS];

	memset(line, 0, sizeof(line));
	for (size_t i = 0; i < STAT_CELLS; i++) {
		memcpy(line[i].sc_n, counts[i], sizeof(line[i].sc_n));
	}
	stat_suppress_region(line, totals);
	for (size_t i = 0; i < STAT_CELLS; i++) {
		memcpy(shows[i], line[i].sc_show, sizeof(line[i].sc_show));
	}
}

/* ---- the call -------------------------------------------------------------------------------- */

/* Checks the request: a named period that has ended, no ms window, whole regions of the map
 * (*mask: their bits; 0 for all). */
static hv_status
stat_request(ref_service *rs, const Haven__Referral__V1__StatisticsRequest *req, ref_period *p,
    uint64_t *mask, char *err, size_t errsz)
{
	hv_status st;

	*mask = 0;
	if (req->from_ms != 0 || req->to_ms != 0) {
		snprintf(err, errsz,
		    "from_ms/to_ms windows are not accepted: name a period (an ISO week YYYY-Www "
		    "or a "
		    "month YYYY-MM)");
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = ref_period_parse(req->period, p, err, errsz)) != HV_OK) {
		return (st);
	}
	/* One kind of period: weeks and months overlap, and a month minus its inner weeks would
	 * show the days at its edges. */
	if ((rs->rs_stats_periods & (p->rp_week ? REF_PERIODS_WEEKS : REF_PERIODS_MONTHS)) == 0) {
		snprintf(err, errsz,
		    "this node answers statistics by calendar %s only "
		    "(statistics_periods)",
		    p->rp_week ? "month" : "ISO week");
		return (HV_FAILED_PRECONDITION);
	}
	/* Finished, and settled: a write that read the clock just before the end and commits
	 * just after it is in the answer from the first time one is given. */
	if (p->rp_to_ms + STAT_SETTLE_MS > (uint64_t) ref_now_ms(rs)) {
		snprintf(err, errsz,
		    "period %s has not ended: statistics cover finished weeks and months only, "
		    "from "
		    "%d minutes after their end",
		    p->rp_name, STAT_SETTLE_MS / 60000);
		return (HV_FAILED_PRECONDITION);
	}
	if (req->n_regions > REGIONS_MAX) {
		snprintf(err, errsz, "at most %d regions", REGIONS_MAX);
		return (HV_INVALID_ARGUMENT);
	}
	for (size_t i = 0; i < req->n_regions; i++) {
		int idx = region_map_find(rs->rs_regions, req->regions[i]);
		if (idx < 0 || idx >= 64) {
			snprintf(err, errsz, "unknown region %s",
			    text_free_ok(req->regions[i], 1, REGION_NAME_MAX - 1) ? req->regions[i]
			                                                          : "(not a name)");
			return (HV_INVALID_ARGUMENT);
		}
		*mask |= (uint64_t) 1 << idx;
	}
	return (HV_OK);
}

/* A count as shown, in the call's memory. */
static char *
stat_text(ProtobufCAllocator *alloc, uint32_t n, uint8_t show)
{
	char b[16];

	if (show == SHOW_HIDDEN) {
		return (pb_strdup(alloc, "x"));
	}
	return (pb_strdup(alloc, ref_stat_count(n, b)));
}

/* The reply's cell for cells[i] (region reg). */
static Haven__Referral__V1__StatisticsCell *
stat_reply_cell(ref_service *rs, ProtobufCAllocator *alloc, stat_cell *sc, size_t i)
{
	Haven__Referral__V1__StatisticsCell *cell = pb_alloc(alloc, sizeof(*cell));

	if (cell == NULL) {
		return (NULL);
	}
	haven__referral__v1__statistics_cell__init(cell);
	cell->exploitation =
	    (Haven__Referral__V1__Exploitation) ((i / STAT_TYPES) % STAT_EXPLOITATION);
	cell->type = (Haven__Capacity__V1__ServiceType) (i % STAT_TYPES);
	if ((cell->region = pb_strdup(alloc, region_map_name(rs->rs_regions, i / STAT_CELLS))) ==
	        NULL ||
	    (cell->referrals = stat_text(alloc, sc->sc_n[M_REFERRALS], sc->sc_show[M_REFERRALS])) ==
	        NULL ||
	    (cell->placements =
	            stat_text(alloc, sc->sc_n[M_PLACEMENTS], sc->sc_show[M_PLACEMENTS])) == NULL ||
	    (cell->unmet = stat_text(alloc, sc->sc_n[M_UNMET], sc->sc_show[M_UNMET])) == NULL) {
		return (NULL);
	}
	if (sc->sc_show[M_PLACEMENTS] == SHOW_NUMBER) {
		ref_stat_times(sc->sc_times, sc->sc_ntimes, &cell->median_ms_to_placement,
		    &cell->p90_ms_to_placement);
	}
	return (cell);
}

/* Suppresses each region's cells and writes the reply: cells with referrals, and a total per
 * region with referrals. */
static hv_status
stat_reply(ref_service *rs, ProtobufCAllocator *alloc, stat_cell *cells, size_t nreg,
    Haven__Referral__V1__StatisticsResponse *resp)
{
	size_t used = 0, regs = 0;

	for (size_t i = 0; i < nreg * STAT_CELLS; i++) {
		used += cells[i].sc_n[M_REFERRALS] > 0;
	}
	for (size_t r = 0; r < nreg; r++) {
		uint32_t sum = 0;
		for (size_t i = 0; i < STAT_CELLS; i++) {
			sum += cells[r * STAT_CELLS + i].sc_n[M_REFERRALS];
		}
		regs += sum > 0;
	}
	if ((used > 0 && (resp->cells = pb_alloc(alloc, used * sizeof(*resp->cells))) == NULL) ||
	    (regs > 0 && (resp->totals = pb_alloc(alloc, regs * sizeof(*resp->totals))) == NULL)) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	for (size_t r = 0; r < nreg; r++) {
		stat_cell                            *line = &cells[r * STAT_CELLS];
		uint8_t                               shows[STAT_MEASURES];
		uint32_t                              sum[STAT_MEASURES] = { 0 };
		Haven__Referral__V1__StatisticsTotal *t;

		stat_suppress_region(line, shows);
		for (size_t i = 0; i < STAT_CELLS; i++) {
			for (int m = 0; m < STAT_MEASURES; m++) {
				sum[m] += line[i].sc_n[m];
			}
			if (line[i].sc_n[M_REFERRALS] > 0 &&
			    (resp->cells[resp->n_cells++] = stat_reply_cell(rs, alloc, &line[i],
			         r * STAT_CELLS + i)) == NULL) {
				return (HV_RESOURCE_EXHAUSTED);
			}
		}
		if (sum[M_REFERRALS] == 0) {
			continue;
		}
		if ((t = pb_alloc(alloc, sizeof(*t))) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		haven__referral__v1__statistics_total__init(t);
		resp->totals[resp->n_totals++] = t;
		if ((t->region = pb_strdup(alloc, region_map_name(rs->rs_regions, r))) == NULL ||
		    (t->referrals = stat_text(alloc, sum[M_REFERRALS], shows[M_REFERRALS])) ==
		        NULL ||
		    (t->placements = stat_text(alloc, sum[M_PLACEMENTS], shows[M_PLACEMENTS])) ==
		        NULL ||
		    (t->unmet = stat_text(alloc, sum[M_UNMET], shows[M_UNMET])) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
	}
	return (HV_OK);
}

hv_status
ref_statistics(ref_service *rs, const Haven__Referral__V1__StatisticsRequest *req,
    ProtobufCAllocator *alloc, Haven__Referral__V1__StatisticsResponse **out, char *err,
    size_t errsz)
{
	size_t                                   nreg  = region_map_count(rs->rs_regions);
	size_t                                   ncell = nreg * STAT_CELLS;
	stat_cell                               *cells = NULL;
	store_txn                               *txn   = NULL;
	Haven__Referral__V1__StatisticsResponse *resp  = NULL;
	ref_period                               p;
	uint64_t                                 mask;
	stat_walk                                sw;
	hv_status                                st;

	*out = NULL;
	if ((st = stat_request(rs, req, &p, &mask, err, errsz)) != HV_OK) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((cells = calloc(ncell > 0 ? ncell : 1, sizeof(*cells))) == NULL) {
		goto out;
	}
	sw = (stat_walk) { .sw_rs = rs, .sw_mask = mask, .sw_end = p.rp_to_ms, .sw_cells = cells };
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK ||
	    (st = ref_stats_walk(rs, txn, p.rp_from_ms, p.rp_to_ms, stat_count, &sw)) != HV_OK) {
		goto out;
	}
	store_read_end(txn);
	txn = NULL;

	/* The reply, in the call's memory. */
	st = HV_RESOURCE_EXHAUSTED;
	if ((resp = pb_alloc(alloc, sizeof(*resp))) == NULL) {
		goto out;
	}
	haven__referral__v1__statistics_response__init(resp);
	if ((resp->period = pb_strdup(alloc, p.rp_name)) == NULL) {
		goto out;
	}
	resp->from_ms = p.rp_from_ms;
	resp->to_ms   = p.rp_to_ms;
	if ((st = stat_reply(rs, alloc, cells, nreg, resp)) != HV_OK) {
		goto out;
	}
	*out = resp;
out:
	if (txn != NULL) {
		store_read_end(txn);
	}
	if (cells != NULL) {
		for (size_t i = 0; i < ncell; i++) {
			free(cells[i].sc_times);
		}
		free(cells);
	}
	return (st);
}
