/*
 * cap_brief.c - what a service record says without the store: the registry's clock, whether
 * a figure is fresh, the free places answers show, and the brief (cap_internal.h) kept beside
 * each record. Pure functions of a record and the time, below both the records
 * (cap_records.c) and the routing index (cap_index.c): cap_put_service calls into the index,
 * and the index takes briefs and freshness from here, never from the records' file.
 */
#include "cap_internal.h"

#include "haven/clock.h"

#include <string.h>

int64_t
cap_now_ms(const cap_service *cs)
{
	if (cs->cs_now != NULL) {
		return (cs->cs_now(cs->cs_now_arg));
	}
	return (hv_clock_wall_ms());
}

bool
cap_service_fresh(const Haven__Capacity__V1__Service *svc, int64_t now_ms)
{
	/* A figure from the future (a clock set back) counts as just confirmed. */
	return (now_ms - (int64_t) svc->updated_ms <= (int64_t) svc->report_interval_s * 1000);
}

uint32_t
cap_free_places(const Haven__Capacity__V1__Service *svc, int64_t now_ms, bool *fresh)
{
	bool f = cap_service_fresh(svc, now_ms);

	if (fresh != NULL) {
		*fresh = f;
	}
	if (!f || svc->retired || svc->available <= svc->held) {
		return (0);
	}
	return (svc->available - svc->held);
}

void
cap_brief_of(const cap_service *cs, const Haven__Capacity__V1__Service *svc, cap_brief *b)
{
	int r = cap_region_index(cs, svc->service_area);

	memset(b, 0, sizeof(*b));
	b->b_updated_ms        = svc->updated_ms;
	b->b_maximum           = svc->maximum;
	b->b_available         = svc->available;
	b->b_held              = svc->held;
	b->b_report_interval_s = svc->report_interval_s;
	b->b_type              = (uint8_t) svc->type;
	b->b_region            = r < 0 ? CAP_REGION_NONE : (uint8_t) r;
	b->b_retired           = svc->retired ? 1 : 0;
	b->b_pending           = svc->pending ? 1 : 0;
	for (size_t i = 0; i < svc->n_populations; i++) {
		if ((int) svc->populations[i] > 0 && (int) svc->populations[i] < CAP_POPULATIONS) {
			b->b_populations |= (uint8_t) (1u << svc->populations[i]);
		}
	}
}
