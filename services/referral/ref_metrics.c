/*
 * ref_metrics.c - the referral service's gauges at scrape time (see ref_metrics.h).
 *
 * One read transaction walks every referral with ref_stats_walk (the walk Statistics uses) and
 * counts: referrals, referrals with a need not yet ended, needs by state, WAITING needs (unmet
 * demand) by the referral's home region and the need's service type, and how long the oldest
 * of them has waited. The walk unpacks every referral, so a scrape costs time in proportion
 * to the referrals stored (haven_metrics_render_duration_seconds shows it).
 *
 * Only counts leave this file: labels are need states, service types and region names, never
 * a referral, a subject or an organisation. Unlike Statistics (for municipalities), small
 * counts are not suppressed: the page is the operator's, on a loopback port.
 */
#include "ref_metrics.h"

#include "haven/pbenum.h"

#include "haven/log.h"

#include <stdlib.h>

#define STATES 9 /* NeedState values 0..8 */

typedef struct need_count {
	ref_service *nc_rs;
	size_t       nc_nreg;
	uint64_t     nc_referrals;
	uint64_t     nc_open;
	uint64_t     nc_states[STATES];
	uint32_t    *nc_unmet;          /* (nreg + 1) x REF_SERVICE_TYPES; the last row: "other" */
	uint64_t     nc_oldest_wait_ms; /* the earliest waiting_since of a WAITING need; 0: none */
} need_count;

static hv_status
count_referral(void *arg, const Referral *r)
{
	need_count *nc   = arg;
	bool        open = false;
	int         reg  = region_map_find(nc->nc_rs->rs_regions, r->home_region);
	size_t      row  = reg >= 0 && (size_t) reg < nc->nc_nreg ? (size_t) reg : nc->nc_nreg;

	nc->nc_referrals++;
	for (size_t i = 0; i < r->n_needs; i++) {
		const Need *n = r->needs[i];
		uint64_t    since;

		open = open || ref_need_open(n);
		if ((int) n->state >= 0 && (int) n->state < STATES) {
			nc->nc_states[n->state]++;
		}
		if (n->state != NS(WAITING)) {
			continue;
		}
		if ((int) n->type > 0 && (int) n->type < REF_SERVICE_TYPES) {
			nc->nc_unmet[row * REF_SERVICE_TYPES + (size_t) n->type]++;
		}
		since = n->waiting_since_ms != 0 ? n->waiting_since_ms : r->created_ms;
		if (nc->nc_oldest_wait_ms == 0 || since < nc->nc_oldest_wait_ms) {
			nc->nc_oldest_wait_ms = since;
		}
	}
	nc->nc_open += open;
	return (HV_OK);
}

void
ref_metrics_collect(void *arg, metrics_writer *w)
{
	ref_service *rs  = arg;
	need_count   nc  = { .nc_rs = rs, .nc_nreg = region_map_count(rs->rs_regions) };
	store_txn   *txn = NULL;
	int64_t      now = ref_now_ms(rs);
	hv_status    st  = HV_RESOURCE_EXHAUSTED;
	char         name[48];

	if ((nc.nc_unmet = calloc((nc.nc_nreg + 1) * REF_SERVICE_TYPES, sizeof(uint32_t))) ==
	    NULL) {
		goto out;
	}
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK ||
	    (st = ref_stats_walk(rs, txn, 0, UINT64_MAX, count_referral, &nc)) != HV_OK) {
		goto out;
	}
	store_read_end(txn);
	txn = NULL;

	metrics_family(w, "haven_referral_referrals", METRICS_GAUGE, "Referrals stored.");
	metrics_sample(w, "haven_referral_referrals", (double) nc.nc_referrals, (char *) NULL);
	metrics_family(w, "haven_referral_open_referrals", METRICS_GAUGE,
	    "Referrals with at least one need not yet ended (waiting, offered, on hold, accepted "
	    "or placed).");
	metrics_sample(w, "haven_referral_open_referrals", (double) nc.nc_open, (char *) NULL);
	metrics_family(w, "haven_referral_needs", METRICS_GAUGE,
	    "Needs of all stored referrals by state.");
	for (int s = 1; s < STATES; s++) {
		metrics_sample(w, "haven_referral_needs", (double) nc.nc_states[s], "state",
		    pbenum_name(&haven__referral__v1__need_state__descriptor, NULL, s, name,
		        sizeof(name)),
		    (char *) NULL);
	}
	metrics_family(w, "haven_referral_unmet_needs", METRICS_GAUGE,
	    "Needs waiting for a provider with room (unmet demand), by the referral's home region "
	    "and the service type needed.");
	for (size_t i = 0; i < (nc.nc_nreg + 1) * REF_SERVICE_TYPES; i++) {
		size_t row = i / REF_SERVICE_TYPES;

		if (nc.nc_unmet[i] == 0) {
			continue;
		}
		metrics_sample(w, "haven_referral_unmet_needs", nc.nc_unmet[i], "region",
		    row < nc.nc_nreg ? region_map_name(rs->rs_regions, row) : "other", "type",
		    pbenum_name(&haven__capacity__v1__service_type__descriptor, NULL,
		        (int) (i % REF_SERVICE_TYPES), name, sizeof(name)),
		    (char *) NULL);
	}
	metrics_family(w, "haven_referral_oldest_unmet_need_age_seconds", METRICS_GAUGE,
	    "How long the need waiting longest has waited for a provider (0: none waits).");
	metrics_sample(w, "haven_referral_oldest_unmet_need_age_seconds",
	    nc.nc_oldest_wait_ms != 0 && now > (int64_t) nc.nc_oldest_wait_ms
	        ? (double) (now - (int64_t) nc.nc_oldest_wait_ms) / 1000.0
	        : 0.0,
	    (char *) NULL);
	st = HV_OK;
out:
	if (st != HV_OK) {
		log_warn("referral: metrics not collected: %s", hv_status_name(st));
	}
	if (txn != NULL) {
		store_read_end(txn);
	}
	free(nc.nc_unmet);
}
