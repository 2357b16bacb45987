/*
 * ref_route.c - routing: the search for the best provider service with a free place for a
 * waiting need, its hold and its offer, or the offer to a service a coordinator named, all
 * inside the caller's write transaction. The transitions it makes are ref_need.c's.
 *
 * Ranking (lexicographic, smaller first): a fresh figure before a stale one (a stale service
 * is only reached when no fresh one fits, and capacity refuses to hold a stale place), a
 * preferred region, the reach (region distance from the referral's home region, plus
 * language_hops when the need names languages and the service speaks none of them), need
 * languages the service does not speak, the distance itself, specialisation in the
 * referral's form of exploitation, the age of the availability figure, and the service id so
 * that equal services rank the same every time (docs/referral.md, with a worked example).
 * Hard filters: the need's population is accepted, the service area is a region of the map and
 * not excluded, every accessibility feature of the need is offered, the service did not
 * decline (or let expire) an offer for this need, and it has a free place. The comparison
 * itself is ref_rank.c; candidates come from capacity's routing index (cap_route_foreach),
 * read region by region in the order of the best rank a region allows (scan_need).
 */
#include "ref_internal.h"

#include "haven/pbenum.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static char *
dup(ref_work *w, const char *s)
{
	return (arena_strdup(w->w_arena, s != NULL ? s : ""));
}

/* ---- routing --------------------------------------------------------------------------------- */

typedef struct cand {
	ref_rank c_rank;
	char     c_org[CAP_ID_MAX];
} cand;

/* One need while it is routed. */
typedef struct route_need {
	Referral *rn_ref;
	Need     *rn_need;
	int       rn_home; /* home region index, -1 when not in the map */
	uint64_t  rn_excluded;
	uint64_t  rn_preferred;
	cand      rn_cands[REF_CANDIDATES]; /* best first */
	size_t    rn_ncands;
	char (*rn_tried)[CAP_ID_MAX]; /* refused a hold in this transaction (arena) */
	size_t rn_ntried, rn_captried;
	bool   rn_minor;  /* the person is a minor: services that take minors only */
	bool   rn_active; /* to be routed */
	bool   rn_scan;   /* takes part in the next scan */
} route_need;

typedef struct scan_ctx {
	ref_service *sc_rs;
	int64_t      sc_now;
	route_need  *sc_need;
	int          sc_region; /* the region read, in the referral's map */
} scan_ctx;

static uint64_t
region_bits(const region_map *m, char *const *names, size_t n)
{
	uint64_t mask = 0;

	for (size_t i = 0; i < n; i++) {
		int idx = region_map_find(m, names[i]);
		if (idx >= 0 && idx < 64) {
			mask |= (uint64_t) 1 << idx;
		}
	}
	return (mask);
}

static bool
has_string(char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i], s) == 0) {
			return (true);
		}
	}
	return (false);
}

/* snprintf(dst, size, "%s", src) without the formatting: routing copies an id for every
 * service it ranks. */
static void
copy_id(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Whether the service (an index entry, or a Service seen as one) in region (the referral
 * map's index) fits the need, and its rank for it. */
static bool
fits(const route_need *rn, const cap_route_entry *e, int region, int64_t now, const ref_service *rs,
    ref_rank *rk)
{
	const region_map *m = rs->rs_regions;
	const Need       *n = rn->rn_need;
	int               p = (int) n->population;
	unsigned          dist;

	/* The entry's populations are a bit set of the values the checks allow (below 8). */
	if (p <= 0 || p >= 8 || (e->populations & (1u << p)) == 0 ||
	    (rn->rn_minor &&
	        (e->populations & (1u << HAVEN__CAPACITY__V1__POPULATION__MINORS)) == 0) ||
	    (rn->rn_excluded & ((uint64_t) 1 << region)) != 0) {
		return (false);
	}
	for (size_t i = 0; i < n->n_accessibility; i++) {
		if (!has_string(e->accessibility, e->n_accessibility, n->accessibility[i])) {
			return (false);
		}
	}
	if (has_string(n->declined_services, n->n_declined_services, e->id)) {
		return (false);
	}
	for (size_t i = 0; i < rn->rn_ntried; i++) {
		if (strcmp(rn->rn_tried[i], e->id) == 0) {
			return (false);
		}
	}
	memset(rk, 0, sizeof(*rk));
	rk->rk_stale   = e->fresh ? 0 : 1;
	rk->rk_nonpref = (rn->rn_preferred & ((uint64_t) 1 << region)) != 0 ? 0 : 1;
	dist = rn->rn_home >= 0 ? region_map_distance(m, rn->rn_home, region) : REGION_UNREACHABLE;
	rk->rk_distance = (uint8_t) (dist > REGION_UNREACHABLE ? REGION_UNREACHABLE : dist);
	for (size_t i = 0; i < n->n_languages; i++) {
		if (!ref_lang_match(n->languages[i], e->languages, e->n_languages)) {
			rk->rk_missing++;
		}
	}
	/* A service that speaks none of the need's languages counts as rs_lang_hops borders
	 * further away: a speaker up to that many borders beyond it ranks first. */
	rk->rk_reach = rk->rk_distance;
	if (n->n_languages > 0 && rk->rk_missing == n->n_languages) {
		rk->rk_reach =
		    (uint16_t) (rk->rk_reach + (rs->rs_lang_hops > 255 ? 255 : rs->rs_lang_hops));
	}
	rk->rk_nonspec = 1;
	for (size_t i = 0; i < e->n_specialisations; i++) {
		if ((int) e->specialisations[i] == (int) rn->rn_ref->exploitation) {
			rk->rk_nonspec = 0;
		}
	}
	rk->rk_age_ms = now > (int64_t) e->updated_ms ? (uint64_t) now - e->updated_ms : 0;
	copy_id(rk->rk_id, sizeof(rk->rk_id), e->id);
	return (true);
}

/* Keeps the REF_CANDIDATES best, best first. */
static void
keep(route_need *rn, const ref_rank *rk, const char *org)
{
	size_t pos = rn->rn_ncands;

	while (pos > 0 && ref_rank_cmp(rk, &rn->rn_cands[pos - 1].c_rank) < 0) {
		pos--;
	}
	if (pos >= REF_CANDIDATES) {
		return;
	}
	if (rn->rn_ncands == REF_CANDIDATES) {
		rn->rn_ncands--;
	}
	memmove(&rn->rn_cands[pos + 1], &rn->rn_cands[pos], (rn->rn_ncands - pos) * sizeof(cand));
	rn->rn_cands[pos].c_rank = *rk;
	copy_id(rn->rn_cands[pos].c_org, sizeof(rn->rn_cands[pos].c_org), org);
	rn->rn_ncands++;
}

static int
scan_cb(void *arg, const cap_route_entry *e)
{
	scan_ctx *sc = arg;
	ref_rank  rk;

	/* The index holds only services with a free place by their last figure (for a stale
	 * one, what the provider last said), neither retired nor pending. */
	if (fits(sc->sc_need, e, sc->sc_region, sc->sc_now, sc->sc_rs, &rk)) {
		keep(sc->sc_need, &rk, e->org_id);
	}
	return (0);
}

/* The best rank any service of region could have for the need: its region's part exact,
 * every other part at its least (reach at least the distance; nothing missing, specialised,
 * just confirmed, the smallest id). */
static void
region_bound(const route_need *rn, const ref_service *rs, int region, ref_rank *lb)
{
	unsigned dist = rn->rn_home >= 0 ? region_map_distance(rs->rs_regions, rn->rn_home, region)
	                                 : REGION_UNREACHABLE;

	memset(lb, 0, sizeof(*lb));
	lb->rk_nonpref  = (rn->rn_preferred & ((uint64_t) 1 << region)) != 0 ? 0 : 1;
	lb->rk_distance = (uint8_t) (dist > REGION_UNREACHABLE ? REGION_UNREACHABLE : dist);
	lb->rk_reach    = lb->rk_distance;
}

/*
 * Finds one need's REF_CANDIDATES best services from the routing index (capacity.h). Regions
 * are read in the order of their bound (region_bound: preferred first, then nearest); once
 * the kept candidates are full and a region's bound ranks after the last of them, no service
 * there or in any later region can enter, and the search stops. The result is the same as
 * ranking every service of the type: a region is skipped only when none of its services
 * could be kept.
 */
static hv_status
scan_need(ref_work *w, route_need *rn)
{
	ref_service      *rs = w->w_rs;
	const region_map *cm = cap_route_regions(rs->rs_cap);
	scan_ctx          sc = { rs, w->w_now, rn, 0 };
	int               order[REGIONS_MAX];
	ref_rank          bound[REGIONS_MAX];
	size_t            nr = 0, count = region_map_count(rs->rs_regions);
	int               p = (int) rn->rn_need->population;
	uint8_t           pops;
	hv_status         st;

	/* Only services taking the need's population (and minors, for a minor) can fit. */
	if (p <= 0 || p >= 8) {
		return (HV_OK);
	}
	pops = (uint8_t) (1u << p);
	if (rn->rn_minor) {
		pops |= (uint8_t) (1u << HAVEN__CAPACITY__V1__POPULATION__MINORS);
	}

	for (size_t r = 0; r < count && r < REGIONS_MAX; r++) {
		size_t   at;
		ref_rank lb;

		if ((rn->rn_excluded & ((uint64_t) 1 << r)) != 0) {
			continue;
		}
		region_bound(rn, rs, (int) r, &lb);
		for (at = nr; at > 0 && ref_rank_cmp(&lb, &bound[at - 1]) < 0; at--) {
			bound[at] = bound[at - 1];
			order[at] = order[at - 1];
		}
		bound[at] = lb;
		order[at] = (int) r;
		nr++;
	}
	for (size_t i = 0; i < nr; i++) {
		int cr = order[i];

		if (rn->rn_ncands == REF_CANDIDATES &&
		    ref_rank_cmp(&bound[i], &rn->rn_cands[REF_CANDIDATES - 1].c_rank) > 0) {
			break;
		}
		/* The capacity service's map may be another copy: its region of the same name. */
		if (cm != rs->rs_regions &&
		    (cr = region_map_find(cm, region_map_name(rs->rs_regions, (size_t) order[i]))) <
		        0) {
			continue;
		}
		sc.sc_region = order[i];
		if ((st = cap_route_foreach(rs->rs_cap, w->w_txn,
		         (Haven__Capacity__V1__ServiceType) rn->rn_need->type, (unsigned) cr, pops,
		         scan_cb, &sc)) != HV_OK) {
			return (ref_fail(w, st, "cannot read the services of type %d",
			    (int) rn->rn_need->type));
		}
	}
	return (HV_OK);
}

/* Finds the candidates of each need marked rn_scan. */
static hv_status
scan(ref_work *w, route_need *needs, size_t n)
{
	hv_status st;

	for (size_t i = 0; i < n; i++) {
		if (needs[i].rn_scan && (st = scan_need(w, &needs[i])) != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

static hv_status
route_need_init(ref_work *w, route_need *rn, Referral *r, Need *n)
{
	ref_service *rs = w->w_rs;
	hv_status    st;

	memset(rn, 0, sizeof(*rn));
	rn->rn_ref      = r;
	rn->rn_need     = n;
	rn->rn_home     = region_map_find(rs->rs_regions, r->home_region);
	rn->rn_excluded = region_bits(rs->rs_regions, r->excluded_regions, r->n_excluded_regions);
	rn->rn_preferred =
	    region_bits(rs->rs_regions, r->preferred_regions, r->n_preferred_regions);
	rn->rn_active =
	    n->state == NS(WAITING) && (int) n->type > 0 && (int) n->type < REF_SERVICE_TYPES;
	rn->rn_scan = rn->rn_active;
	/* A minor goes only to services that take minors (consent knows who is one). */
	if (rs->rs_minor != NULL &&
	    (st = rs->rs_minor(rs->rs_consent_arg, w->w_txn, r->subject, &rn->rn_minor)) != HV_OK &&
	    st != HV_NOT_FOUND) {
		return (ref_fail(w, st, "cannot read whether subject %s is a minor", r->subject));
	}
	return (HV_OK);
}

/* Makes the offer for a hold just placed, and moves the need to OFFERED. */
static hv_status
make_offer(ref_work *w, route_need *rn, const cand *c, const char *hold_id, uint32_t window_s)
{
	ref_service *rs = w->w_rs;
	Referral    *r  = rn->rn_ref;
	Need        *n  = rn->rn_need;
	Offer       *o;
	char         id[IDS_MAX];
	uint8_t      key[REF_KEY_MAX];
	hv_status    st = HV_OK;

	for (int tries = 0; tries < 4 && st == HV_OK; tries++) {
		if ((st = ids_generate(id, sizeof(id), REF_OFFER_PREFIX, REF_ID_HEX)) != HV_OK) {
			return (st);
		}
		st = store_get(w->w_txn, rs->rs_offers, id, strlen(id), NULL, NULL);
	}
	if (st != HV_NOT_FOUND) {
		return (st == HV_OK ? HV_ALREADY_EXISTS : st);
	}
	if ((o = arena_alloc(w->w_arena, sizeof(*o))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__referral__v1__offer__init(o);
	if ((o->id = dup(w, id)) == NULL || (o->service_id = dup(w, c->c_rank.rk_id)) == NULL ||
	    (o->provider_org = dup(w, c->c_org)) == NULL ||
	    (o->hold_id = dup(w, hold_id)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	o->referral_id     = r->id;
	o->need_index      = n->index;
	o->state           = OS(OFFER_OPEN);
	o->created_ms      = (uint64_t) w->w_now;
	o->respond_by_ms   = (uint64_t) w->w_now + (uint64_t) window_s * 1000;
	o->type            = n->type;
	o->population      = n->population;
	o->n_languages     = n->n_languages;
	o->languages       = n->languages;
	o->n_accessibility = n->n_accessibility;
	o->accessibility   = n->accessibility;
	o->urgency         = r->urgency;
	o->exploitation    = r->exploitation;
	o->need_state      = NS(OFFERED);
	if ((st = ref_put_offer(w, o)) != HV_OK ||
	    (st = store_put(w->w_txn, rs->rs_by_provider, key,
	         ref_key_timed(key, o->provider_org, o->created_ms, o->id), "", 0)) != HV_OK ||
	    (st = store_put(w->w_txn, rs->rs_deadlines, key,
	         ref_key_deadline(key, o->respond_by_ms, o->id), "", 0)) != HV_OK) {
		return (st);
	}
	n->offer_id     = o->id;
	n->service_id   = o->service_id;
	n->provider_org = o->provider_org;
	if ((st = ref_transition(w, r, n, NS(OFFERED), "", "offered", o->id)) != HV_OK ||
	    (st = ref_work_changed(w, o->service_id, (int) o->type, false)) != HV_OK) {
		return (st);
	}
	w->w_offers++;
	return (HV_OK);
}

/* Tries the kept candidates of a need in rank order; *offered when one took the hold. */
/* A hold outlives its offer's window by a margin, cut to the capacity service's maximum. */
static uint32_t
hold_ttl(const ref_service *rs, uint32_t window)
{
	uint32_t ttl = window + REF_HOLD_MARGIN_S;

	return (ttl > rs->rs_hold_max_s ? rs->rs_hold_max_s : ttl);
}

static hv_status
try_candidates(ref_work *w, route_need *rn, bool *offered)
{
	ref_service *rs     = w->w_rs;
	uint32_t     window = ref_window_s(rs, (int) rn->rn_ref->urgency);
	uint32_t     ttl    = hold_ttl(rs, window);
	char         owner[IDS_MAX + 16];
	char         hold[CAP_ID_MAX];
	hv_status    st;

	*offered = false;
	snprintf(owner, sizeof(owner), "%s need %u", rn->rn_ref->id, rn->rn_need->index);
	for (size_t i = 0; i < rn->rn_ncands; i++) {
		const cand *c = &rn->rn_cands[i];

		st = cap_hold_place(rs->rs_cap, w->w_txn, c->c_rank.rk_id, ttl, owner, hold);
		if (st == HV_OK) {
			*offered = true;
			return (make_offer(w, rn, c, hold, window));
		}
		if (st != HV_FAILED_PRECONDITION && st != HV_NOT_FOUND) {
			return (
			    ref_fail(w, st, "cannot hold a place of service %s", c->c_rank.rk_id));
		}
		/* Taken since the scan (by a need before this one), or stale: never again in this
		 * transaction. */
		if (!(rn->rn_ntried < rn->rn_captried)) {
			size_t ncap          = rn->rn_captried == 0 ? 16 : rn->rn_captried * 2;
			char(*p)[CAP_ID_MAX] = arena_alloc(w->w_arena, ncap * CAP_ID_MAX);

			if (p == NULL) {
				return (HV_RESOURCE_EXHAUSTED);
			}
			if (rn->rn_ntried > 0) {
				memcpy(p, rn->rn_tried, rn->rn_ntried * CAP_ID_MAX);
			}
			rn->rn_tried    = p;
			rn->rn_captried = ncap;
		}
		snprintf(rn->rn_tried[rn->rn_ntried++], CAP_ID_MAX, "%s", c->c_rank.rk_id);
	}
	return (HV_OK);
}

hv_status
ref_route(ref_work *w, ref_route_item *items, size_t n)
{
	route_need *needs;
	hv_status   st;

	if (n == 0) {
		return (HV_OK);
	}
	if ((needs = arena_alloc(w->w_arena, n * sizeof(*needs))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	for (size_t i = 0; i < n; i++) {
		if ((st = route_need_init(w, &needs[i], items[i].ri_ref, items[i].ri_need)) !=
		    HV_OK) {
			return (st);
		}
	}
	/* Each need's candidates from the routing index; then the needs take their holds in
	 * order, so that an earlier (more urgent, older) need gets a contested place. */
	if ((st = scan(w, needs, n)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < n; i++) {
		route_need *rn      = &needs[i];
		bool        offered = false;
		bool        consent;

		/* An earlier need of the same referral may have ended it (no consent). */
		if (!rn->rn_active || rn->rn_need->state != NS(WAITING)) {
			continue;
		}
		/* No provider is offered the person without a consent valid now. Asked only when
		 * there is a place to offer: every check is an audit entry, and a waiting need is
		 * routed again at every capacity change. */
		if (rn->rn_ncands == 0) {
			continue;
		}
		if ((st = ref_consent_valid(w, rn->rn_ref, &consent)) != HV_OK) {
			return (st);
		}
		if (!consent) {
			if ((st = ref_end_for_consent(w, rn->rn_ref, "consent no longer valid",
			         REF_CAUSE_CONSENT_WITHDRAWN)) != HV_OK) {
				return (st);
			}
			continue;
		}
		for (int round = 0; round <= REF_RESCANS; round++) {
			if ((st = try_candidates(w, rn, &offered)) != HV_OK) {
				return (st);
			}
			if (offered || rn->rn_ncands < REF_CANDIDATES || round == REF_RESCANS) {
				break;
			}
			/* Every kept candidate was taken meanwhile and there may be more: look
			 * again for this need alone, without the ones tried. */
			for (size_t j = 0; j < n; j++) {
				needs[j].rn_scan = j == i;
			}
			rn->rn_ncands = 0;
			if ((st = scan(w, needs, n)) != HV_OK) {
				return (st);
			}
		}
		/* Without an offer the need stays WAITING: unmet demand, routed again when a place
		 * of its type frees. */
	}
	return (HV_OK);
}

/* Why a named service does not fit a need (routing's hard filters, said one by one), or
 * HV_OK with its rank. */
static hv_status
named_fits(ref_work *w, route_need *rn, const Haven__Capacity__V1__Service *svc, ref_rank *rk)
{
	const Need     *n = rn->rn_need;
	char            b[48];
	int             region = region_map_find(w->w_rs->rs_regions, svc->service_area);
	bool            pop    = false;
	cap_route_entry e;

	if (svc->retired || svc->pending) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "service %s is %s", svc->id,
		    svc->retired ? "retired" : "waiting for approval"));
	}
	if (svc->type != n->type) {
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "service %s is not of the need's type %s", svc->id,
		    pbenum_name(&haven__capacity__v1__service_type__descriptor, NULL, (int) n->type,
		        b, sizeof(b))));
	}
	if (region < 0 || region >= 64) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "service %s is in no region of the map",
		    svc->id));
	}
	if ((rn->rn_excluded & ((uint64_t) 1 << region)) != 0) {
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "service %s is in %s, a region the referral excludes", svc->id,
		    svc->service_area));
	}
	for (size_t i = 0; i < svc->n_populations && !pop; i++) {
		pop = svc->populations[i] == n->population;
	}
	if (!pop) {
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "service %s does not take the need's population", svc->id));
	}
	if (svc->available <= svc->held) {
		return (
		    ref_fail(w, HV_FAILED_PRECONDITION, "service %s has no free place", svc->id));
	}
	cap_route_entry_of(w->w_rs->rs_cap, svc, w->w_now, &e);
	if (!fits(rn, &e, region, w->w_now, w->w_rs, rk)) {
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "service %s lacks an accessibility feature of the need, or declined it",
		    svc->id));
	}
	return (HV_OK);
}

hv_status
ref_route_to(ref_work *w, Referral *r, Need *n, const char *service_id)
{
	ref_service                  *rs  = w->w_rs;
	Haven__Capacity__V1__Service *svc = NULL;
	route_need                    rn;
	cand                          c;
	uint32_t                      window = ref_window_s(rs, (int) r->urgency);
	char                          owner[IDS_MAX + 16];
	char                          hold[CAP_ID_MAX];
	bool                          consent;
	hv_status                     st;

	if (n->state != NS(WAITING)) {
		return (ref_fail(w, HV_FAILED_PRECONDITION, "need %u of referral %s is not waiting",
		    n->index, r->id));
	}
	if ((st = cap_get_service(rs->rs_cap, w->w_txn, service_id, &svc)) != HV_OK) {
		return (st == HV_NOT_FOUND ? ref_fail(w, HV_NOT_FOUND, "no service %s",
		                                 ids_valid(service_id) ? service_id : "(not an id)")
		                           : ref_fail(w, st, "cannot read service %s", service_id));
	}
	memset(&c, 0, sizeof(c));
	if ((st = route_need_init(w, &rn, r, n)) != HV_OK ||
	    (st = named_fits(w, &rn, svc, &c.c_rank)) != HV_OK) {
		goto out;
	}
	snprintf(c.c_org, sizeof(c.c_org), "%s", svc->org_id);
	/* No provider is offered the person without a consent valid now. */
	if ((st = ref_consent_valid(w, r, &consent)) != HV_OK) {
		goto out;
	}
	if (!consent) {
		st = ref_fail(w, HV_FAILED_PRECONDITION, "no valid consent for referral %s", r->id);
		goto out;
	}
	snprintf(owner, sizeof(owner), "%s need %u", r->id, n->index);
	st = cap_hold_place(rs->rs_cap, w->w_txn, svc->id, hold_ttl(rs, window), owner, hold);
	if (st == HV_FAILED_PRECONDITION || st == HV_NOT_FOUND) {
		st = ref_fail(w, HV_FAILED_PRECONDITION,
		    "service %s cannot hold a place now (its figure is stale or it is full)",
		    svc->id);
		goto out;
	}
	if (st != HV_OK) {
		st = ref_fail(w, st, "cannot hold a place of service %s", svc->id);
		goto out;
	}
	st = make_offer(w, &rn, &c, hold, window);
out:
	haven__capacity__v1__service__free_unpacked(svc, NULL);
	return (st);
}
