/*
 * cap_index.c - the routing index, cap.route (capacity.h): one compact entry per service that
 * routing may offer, keyed (type, region, service id), so that a need reads only the services
 * of its type in the regions it may go to, nearest first, and never unpacks a Service.
 *
 * Written only by cap_put_service through cap_route_update, in the same transaction as the
 * Service and its brief, so the three never disagree in any snapshot; rebuilt with the brief
 * when the region map changes (capacity.c). A service is in the index while it is neither
 * retired nor pending, its area is a region of the map and available > held by its last
 * figure; freshness depends on the time of the read and is computed then.
 *
 * An entry is fixed header fields in the host's byte order (like the brief: an environment is
 * only used on the host that made it) followed by the specialisations and NUL-ended strings:
 *   updated_ms u64 | report_interval_s u32 | available u32 | held u32 | populations u8 |
 *   n_languages u8 | n_accessibility u8 | n_specialisations u8 | specialisations i32 x n |
 *   org_id NUL | languages NUL x n | accessibility NUL x n
 */
#include "cap_index.h"

#include <stdio.h>
#include <string.h>

#define ROUTE_HEAD   24   /* the fixed fields */
#define ROUTE_KEYPFX 2    /* type, region */
#define ROUTE_MAX    4096 /* well over what the checks' bounds allow (16 tags of 64 bytes) */

static size_t
route_key(uint8_t *key, unsigned type, unsigned region, const char *id)
{
	size_t n = strlen(id);

	key[0] = (uint8_t) type;
	key[1] = (uint8_t) region;
	memcpy(key + ROUTE_KEYPFX, id, n);
	return (ROUTE_KEYPFX + n);
}

static bool
routable(const Haven__Capacity__V1__Service *svc, const cap_brief *b)
{
	return (!b->b_retired && !b->b_pending && b->b_region != CAP_REGION_NONE &&
	    svc->available > svc->held);
}

/* Appends s and its NUL; false when it does not fit. */
static bool
put_str(uint8_t *buf, size_t *at, size_t cap, const char *s)
{
	size_t n = strlen(s) + 1;

	if (*at + n > cap) {
		return (false);
	}
	memcpy(buf + *at, s, n);
	*at += n;
	return (true);
}

/* Encodes svc's entry into buf (ROUTE_MAX bytes); 0 when it does not fit (lists or strings
 * over the checks' bounds). */
static size_t
route_encode(const Haven__Capacity__V1__Service *svc, const cap_brief *b, uint8_t *buf)
{
	size_t  nl = svc->n_languages, na = svc->n_accessibility, ns = svc->n_specialisations;
	size_t  at = ROUTE_HEAD;
	uint8_t counts[4];

	if (nl > CAP_ROUTE_LIST_MAX || na > CAP_ROUTE_LIST_MAX || ns > CAP_ROUTE_LIST_MAX) {
		return (0);
	}
	memcpy(buf, &svc->updated_ms, 8);
	memcpy(buf + 8, &svc->report_interval_s, 4);
	memcpy(buf + 12, &svc->available, 4);
	memcpy(buf + 16, &svc->held, 4);
	counts[0] = b->b_populations;
	counts[1] = (uint8_t) nl;
	counts[2] = (uint8_t) na;
	counts[3] = (uint8_t) ns;
	memcpy(buf + 20, counts, 4);
	for (size_t i = 0; i < ns; i++) {
		int32_t v = (int32_t) svc->specialisations[i];
		memcpy(buf + at, &v, 4);
		at += 4;
	}
	if (!put_str(buf, &at, ROUTE_MAX, svc->org_id)) {
		return (0);
	}
	for (size_t i = 0; i < nl; i++) {
		if (!put_str(buf, &at, ROUTE_MAX, svc->languages[i])) {
			return (0);
		}
	}
	for (size_t i = 0; i < na; i++) {
		if (!put_str(buf, &at, ROUTE_MAX, svc->accessibility[i])) {
			return (0);
		}
	}
	return (at);
}

/* Takes the next NUL-ended string of v at *at; NULL when the value ends first. */
static char *
get_str(const uint8_t *v, size_t vl, size_t *at)
{
	const uint8_t *end;

	if (*at >= vl || (end = memchr(v + *at, '\0', vl - *at)) == NULL) {
		return (NULL);
	}
	{
		char *s = (char *) (uintptr_t) (v + *at);
		*at     = (size_t) (end - v) + 1;
		return (s);
	}
}

/* Decodes an entry; HV_DATA_LOSS when the value is not one. */
static hv_status
route_decode(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, cap_route_entry *e)
{
	uint8_t counts[4];
	size_t  at = ROUTE_HEAD;

	if (kl <= ROUTE_KEYPFX || kl - ROUTE_KEYPFX >= CAP_ID_MAX || vl < ROUTE_HEAD) {
		return (HV_DATA_LOSS);
	}
	e->type   = k[0];
	e->region = k[1];
	memcpy(e->id, k + ROUTE_KEYPFX, kl - ROUTE_KEYPFX);
	e->id[kl - ROUTE_KEYPFX] = '\0';
	memcpy(&e->updated_ms, v, 8);
	memcpy(&e->report_interval_s, v + 8, 4);
	memcpy(&e->available, v + 12, 4);
	memcpy(&e->held, v + 16, 4);
	memcpy(counts, v + 20, 4);
	e->populations       = counts[0];
	e->n_languages       = counts[1];
	e->n_accessibility   = counts[2];
	e->n_specialisations = counts[3];
	if (e->n_languages > CAP_ROUTE_LIST_MAX || e->n_accessibility > CAP_ROUTE_LIST_MAX ||
	    e->n_specialisations > CAP_ROUTE_LIST_MAX || vl - at < 4 * e->n_specialisations) {
		return (HV_DATA_LOSS);
	}
	for (size_t i = 0; i < e->n_specialisations; i++) {
		memcpy(&e->specialisations[i], v + at, 4);
		at += 4;
	}
	if ((e->org_id = get_str(v, vl, &at)) == NULL) {
		return (HV_DATA_LOSS);
	}
	for (size_t i = 0; i < e->n_languages; i++) {
		if ((e->languages[i] = get_str(v, vl, &at)) == NULL) {
			return (HV_DATA_LOSS);
		}
	}
	for (size_t i = 0; i < e->n_accessibility; i++) {
		if ((e->accessibility[i] = get_str(v, vl, &at)) == NULL) {
			return (HV_DATA_LOSS);
		}
	}
	return (at == vl ? HV_OK : HV_DATA_LOSS);
}

static bool
entry_fresh(const cap_route_entry *e, int64_t now_ms)
{
	/* As cap_service_fresh: a figure from the future counts as just confirmed. */
	return (now_ms - (int64_t) e->updated_ms <= (int64_t) e->report_interval_s * 1000);
}

hv_status
cap_route_update(cap_service *cs, store_txn *txn, const cap_brief *old,
    const Haven__Capacity__V1__Service *svc, const cap_brief *b)
{
	uint8_t   key[ROUTE_KEYPFX + CAP_ID_MAX];
	uint8_t   val[ROUTE_MAX];
	size_t    kl, vl;
	hv_status st;

	if (strlen(svc->id) >= CAP_ID_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	if (old != NULL && (old->b_type != b->b_type || old->b_region != b->b_region)) {
		kl = route_key(key, old->b_type, old->b_region, svc->id);
		if ((st = store_del(txn, cs->cs_route, key, kl)) != HV_OK && st != HV_NOT_FOUND) {
			return (st);
		}
	}
	kl = route_key(key, b->b_type, b->b_region, svc->id);
	if (!routable(svc, b)) {
		st = store_del(txn, cs->cs_route, key, kl);
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if ((vl = route_encode(svc, b, val)) == 0) {
		return (HV_INVALID_ARGUMENT);
	}
	return (store_put(txn, cs->cs_route, key, kl, val, vl));
}

hv_status
cap_route_clear(cap_service *cs, store_txn *txn)
{
	store_cursor *c = NULL;
	hv_status     st;

	if ((st = store_cursor_open(txn, cs->cs_route, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, NULL, NULL)) {
		if ((st = store_cursor_del(c)) != HV_OK) {
			break;
		}
	}
	store_cursor_close(c);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

hv_status
cap_route_foreach(cap_service *cs, store_txn *txn, Haven__Capacity__V1__ServiceType type,
    unsigned region, uint8_t populations, cap_route_fn fn, void *arg)
{
	store_cursor   *c = NULL;
	int64_t         now;
	uint8_t         pfx[ROUTE_KEYPFX];
	const void     *k, *v;
	size_t          kl, vl;
	cap_route_entry e;
	hv_status       st;

	if (cs == NULL || txn == NULL || fn == NULL || (int) type <= 0 || (int) type >= CAP_TYPES ||
	    region >= REGIONS_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	now    = cap_now_ms(cs);
	pfx[0] = (uint8_t) type;
	pfx[1] = (uint8_t) region;
	if ((st = store_cursor_open(txn, cs->cs_route, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, pfx, sizeof(pfx), &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		if (kl < ROUTE_KEYPFX || memcmp(k, pfx, ROUTE_KEYPFX) != 0) {
			break;
		}
		/* The populations byte, before anything is decoded. */
		if (vl > 20 && (((const uint8_t *) v)[20] & populations) != populations) {
			continue;
		}
		if ((st = route_decode(k, kl, v, vl, &e)) != HV_OK) {
			break;
		}
		e.fresh = entry_fresh(&e, now);
		if (fn(arg, &e) != 0) {
			break;
		}
	}
	store_cursor_close(c);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

void
cap_route_entry_of(const cap_service *cs, const Haven__Capacity__V1__Service *svc, int64_t now_ms,
    cap_route_entry *e)
{
	cap_brief b;

	cap_brief_of(cs, svc, &b);
	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", svc->id);
	e->org_id            = svc->org_id;
	e->type              = b.b_type;
	e->region            = b.b_region == CAP_REGION_NONE ? REGIONS_MAX : b.b_region;
	e->populations       = b.b_populations;
	e->updated_ms        = svc->updated_ms;
	e->report_interval_s = svc->report_interval_s;
	e->available         = svc->available;
	e->held              = svc->held;
	e->fresh             = cap_service_fresh(svc, now_ms);
	e->n_languages =
	    svc->n_languages < CAP_ROUTE_LIST_MAX ? svc->n_languages : CAP_ROUTE_LIST_MAX;
	e->n_accessibility =
	    svc->n_accessibility < CAP_ROUTE_LIST_MAX ? svc->n_accessibility : CAP_ROUTE_LIST_MAX;
	e->n_specialisations = svc->n_specialisations < CAP_ROUTE_LIST_MAX ? svc->n_specialisations
	                                                                   : CAP_ROUTE_LIST_MAX;
	for (size_t i = 0; i < e->n_languages; i++) {
		e->languages[i] = svc->languages[i];
	}
	for (size_t i = 0; i < e->n_accessibility; i++) {
		e->accessibility[i] = svc->accessibility[i];
	}
	for (size_t i = 0; i < e->n_specialisations; i++) {
		e->specialisations[i] = (int32_t) svc->specialisations[i];
	}
}

const region_map *
cap_route_regions(const cap_service *cs)
{
	return (cs->cs_regions);
}
