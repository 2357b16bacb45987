/*
 * ref_stats.c - Statistics for municipalities and coordinators: per home region of the
 * referral, form of exploitation and need type, over the referrals created in [from, to):
 * needs referred, needs placed, needs waiting now (unmet demand), and the median and 90th
 * percentile of the time from referral to placement.
 *
 * Small cells are suppressed: a count of 1 to 4 is shown as "<5" (0 as "0"), and the times
 * are shown only when a cell has at least 5 placements (0 otherwise). No cell names a person,
 * a referral or a provider.
 *
 * The walk over the referrals (ref_stats_walk) is shared with the metrics page
 * (ref_metrics.c), which counts needs by state over all referrals with it.
 */
#include "ref_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAT_TYPES        16 /* service types counted (capacity's grid has 16) */
#define STAT_EXPLOITATION 6  /* Exploitation values 0..5 */
#define STAT_MIN          5  /* smaller counts are shown as "<5" */

typedef struct stat_cell {
	uint32_t  sc_referrals;
	uint32_t  sc_placements;
	uint32_t  sc_unmet;
	uint64_t *sc_times; /* ms to placement, malloc'd */
	size_t    sc_ntimes, sc_captimes;
} stat_cell;

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
	ref_put_be64(key, UINT64_MAX - (to - 1));
	for (st = store_cursor_seek(c, key, sizeof(key), &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		Referral *r;
		uint64_t  created;

		if (kl <= 8) {
			continue;
		}
		created = UINT64_MAX - ref_get_be64(k);
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
	stat_cell   *sw_cells;
} stat_walk;

static hv_status
stat_count(void *arg, const Referral *r)
{
	stat_walk *sw  = arg;
	int        reg = region_map_find(sw->sw_rs->rs_regions, r->home_region);

	if (reg < 0 || (sw->sw_mask != 0 && (reg >= 64 || (sw->sw_mask & ((uint64_t) 1 << reg)) == 0)) ||
	    (int) r->exploitation < 0 || (int) r->exploitation >= STAT_EXPLOITATION) {
		return (HV_OK);
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		const Need *n = r->needs[i];
		stat_cell  *cell;

		if ((int) n->type <= 0 || (int) n->type >= STAT_TYPES) {
			continue;
		}
		cell = &sw->sw_cells[((size_t) reg * STAT_EXPLOITATION + (size_t) r->exploitation) *
		        STAT_TYPES + (size_t) n->type];
		cell->sc_referrals++;
		if (n->state == NS(WAITING)) {
			cell->sc_unmet++;
		}
		if (n->placed_ms != 0) {
			cell->sc_placements++;
			if (!push_time(cell,
			        n->placed_ms > r->created_ms ? n->placed_ms - r->created_ms : 0)) {
				return (HV_RESOURCE_EXHAUSTED);
			}
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
	size_t                                   ncell = nreg * STAT_EXPLOITATION * STAT_TYPES;
	stat_cell                               *cells = NULL;
	store_txn                               *txn   = NULL;
	Haven__Referral__V1__StatisticsResponse *resp  = NULL;
	uint64_t                                 mask  = 0;
	uint64_t                                 to    = req->to_ms;
	uint64_t                                 from  = req->from_ms;
	size_t                                   used  = 0;
	stat_walk                                sw;
	hv_status                                st    = HV_INVALID_ARGUMENT;

	*out = NULL;
	if (to == 0) {
		to = (uint64_t) ref_now_ms(rs) + 1; /* up to and including now */
	}
	if (from >= to) {
		snprintf(err, errsz, "from_ms must be before to_ms");
		goto out;
	}
	if (req->n_regions > REGIONS_MAX) {
		snprintf(err, errsz, "at most %d regions", REGIONS_MAX);
		goto out;
	}
	for (size_t i = 0; i < req->n_regions; i++) {
		int idx = region_map_find(rs->rs_regions, req->regions[i]);
		if (idx < 0 || idx >= 64) {
			snprintf(err, errsz, "unknown region %s",
			    ids_text_ok(req->regions[i], 1, REGION_NAME_MAX - 1) ? req->regions[i]
			                                                         : "(not a name)");
			goto out;
		}
		mask |= (uint64_t) 1 << idx;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((cells = calloc(ncell > 0 ? ncell : 1, sizeof(*cells))) == NULL) {
		goto out;
	}

	sw = (stat_walk) { .sw_rs = rs, .sw_mask = mask, .sw_cells = cells };
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK ||
	    (st = ref_stats_walk(rs, txn, from, to, stat_count, &sw)) != HV_OK) {
		goto out;
	}
	store_read_end(txn);
	txn = NULL;

	/* The reply, in the call's memory. */
	st = HV_RESOURCE_EXHAUSTED;
	for (size_t i = 0; i < ncell; i++) {
		used += cells[i].sc_referrals > 0;
	}
	if ((resp = pb_alloc(alloc, sizeof(*resp))) == NULL) {
		goto out;
	}
	haven__referral__v1__statistics_response__init(resp);
	if (used > 0 && (resp->cells = pb_alloc(alloc, used * sizeof(*resp->cells))) == NULL) {
		goto out;
	}
	for (size_t i = 0; i < ncell; i++) {
		stat_cell                        *sc = &cells[i];
		Haven__Referral__V1__StatisticsCell *cell;
		char                              b[16];

		if (sc->sc_referrals == 0) {
			continue;
		}
		if ((cell = pb_alloc(alloc, sizeof(*cell))) == NULL) {
			goto out;
		}
		haven__referral__v1__statistics_cell__init(cell);
		cell->region       = (char *) region_map_name(rs->rs_regions,
		          i / (STAT_EXPLOITATION * STAT_TYPES));
		cell->exploitation = (Haven__Referral__V1__Exploitation) ((i / STAT_TYPES) %
		    STAT_EXPLOITATION);
		cell->type         = (Haven__Capacity__V1__ServiceType) (i % STAT_TYPES);
		if ((cell->region = pb_strdup(alloc, cell->region)) == NULL ||
		    (cell->referrals = pb_strdup(alloc, ref_stat_count(sc->sc_referrals, b))) == NULL ||
		    (cell->placements = pb_strdup(alloc, ref_stat_count(sc->sc_placements, b))) ==
		        NULL ||
		    (cell->unmet = pb_strdup(alloc, ref_stat_count(sc->sc_unmet, b))) == NULL) {
			goto out;
		}
		if (sc->sc_placements >= STAT_MIN) {
			cell->median_ms_to_placement = ref_percentile(sc->sc_times, sc->sc_ntimes, 50);
			cell->p90_ms_to_placement    = ref_percentile(sc->sc_times, sc->sc_ntimes, 90);
		}
		resp->cells[resp->n_cells++] = cell;
	}
	*out = resp;
	st   = HV_OK;
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
