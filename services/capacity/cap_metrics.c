/*
 * cap_metrics.c - the capacity registry's gauges at scrape time (see cap_metrics.h).
 *
 * One read transaction walks cap.brief (32 bytes a service, no unpacking), as Summary does,
 * and counts per service area (region) and type: services, stale services, and places
 * (maximum, available, held, free). Only counts leave this file: labels are region and type
 * names, never a service or an organisation. Cells without services are left out.
 *
 * Freshness is capacity.h's: fresh while now - updated <= report interval, with the service's
 * clock (cap_now_ms). A stale service's places count in maximum, available and held but never
 * in free, as in every answer of the registry.
 */
#include "cap_internal.h"
#include "cap_metrics.h"

#include "haven/log.h"
#include "haven/pbenum.h"

#include <stdlib.h>
#include <string.h>

typedef struct cell {
	uint32_t services;
	uint32_t stale;
	uint64_t maximum;
	uint64_t available;
	uint64_t held;
	uint64_t free_places;
} cell;

typedef struct family {
	const char *name;
	const char *help;
	size_t      offset; /* of the figure in cell */
	bool        wide;   /* uint64_t, else uint32_t */
} family;

static const family families[] = {
	{ "haven_capacity_services", "Provider services (not retired) by service area and type.",
	    offsetof(cell, services), false },
	{ "haven_capacity_stale_services",
	    "Services whose availability was not confirmed within their report interval.",
	    offsetof(cell, stale), false },
	{ "haven_capacity_free_places",
	    "Free places (available - held) of services with a fresh figure.",
	    offsetof(cell, free_places), true },
	{ "haven_capacity_held_places", "Places held for open referral offers.",
	    offsetof(cell, held), true },
	{ "haven_capacity_available_places",
	    "Places reported available (held ones included), fresh or not.",
	    offsetof(cell, available), true },
	{ "haven_capacity_maximum_places", "Places the services have at most.",
	    offsetof(cell, maximum), true },
};

void
cap_metrics_collect(void *arg, metrics_writer *w)
{
	cap_service  *cs   = arg;
	size_t        nreg = region_map_count(cs->cs_regions);
	cell         *grid = NULL;
	store_txn    *txn  = NULL;
	store_cursor *c    = NULL;
	int64_t       now  = cap_now_ms(cs);
	const void   *v;
	size_t        vl;
	hv_status     st = HV_RESOURCE_EXHAUSTED;

	if (nreg == 0) {
		return;
	}
	if ((grid = calloc(nreg * CAP_TYPES, sizeof(*grid))) == NULL) {
		goto out;
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK ||
	    (st = store_cursor_open(txn, cs->cs_brief, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, &v, &vl)) {
		cap_brief b;
		cell     *g;
		bool      fresh;

		if (vl != sizeof(b)) {
			st = HV_DATA_LOSS;
			goto out;
		}
		memcpy(&b, v, sizeof(b)); /* values in the map are not aligned */
		if (b.b_retired || b.b_region >= nreg || b.b_type >= CAP_TYPES) {
			continue;
		}
		fresh = now - (int64_t) b.b_updated_ms <= (int64_t) b.b_report_interval_s * 1000;
		g     = &grid[(size_t) b.b_region * CAP_TYPES + b.b_type];
		g->services++;
		g->stale += fresh ? 0 : 1;
		g->maximum += b.b_maximum;
		g->available += b.b_available;
		g->held += b.b_held;
		g->free_places += fresh && b.b_available > b.b_held ? b.b_available - b.b_held : 0;
	}
	if (st != HV_NOT_FOUND) {
		goto out;
	}
	store_cursor_close(c);
	c = NULL;
	store_read_end(txn);
	txn = NULL;

	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		metrics_family(w, families[f].name, METRICS_GAUGE, families[f].help);
		for (size_t i = 0; i < nreg * CAP_TYPES; i++) {
			const char *p = (const char *) &grid[i] + families[f].offset;
			char        type[48];
			uint64_t    x;

			if (grid[i].services == 0) {
				continue;
			}
			if (families[f].wide) {
				memcpy(&x, p, sizeof(x));
			} else {
				uint32_t y;
				memcpy(&y, p, sizeof(y));
				x = y;
			}
			metrics_sample(w, families[f].name, (double) x, "region",
			    region_map_name(cs->cs_regions, i / CAP_TYPES), "type",
			    pbenum_name(&haven__capacity__v1__service_type__descriptor, NULL,
			        (int) (i % CAP_TYPES), type, sizeof(type)),
			    (char *) NULL);
		}
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		log_warn("capacity: metrics not collected: %s", hv_status_name(st));
	}
	store_cursor_close(c);
	if (txn != NULL) {
		store_read_end(txn);
	}
	free(grid);
}
