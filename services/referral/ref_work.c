/*
 * ref_work.c - the unit of work every write transaction of the referral service uses (the
 * referrals and offers it read, the notifications to send after the commit, an error message),
 * the service clock, and the state predicates of a need. A write function may run more than
 * once (store.h): ref_work_begin forgets what an earlier run did, and gives its memory back to
 * the arena, so that notifications are sent for the run that committed only, after it did.
 */
#include "ref_internal.h"

#include "haven/clock.h"
#include "haven/log.h"

#include <nng/nng.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define PUB_TOPIC "referral."

/* ---- clock ----------------------------------------------------------------------------------- */

int64_t
ref_now_ms(const ref_service *rs)
{
	if (rs != NULL && rs->rs_now != NULL) {
		return (rs->rs_now(rs->rs_now_arg));
	}
	return (hv_clock_wall_ms());
}

const char *
ref_iso_time(uint64_t ms, char buf[32])
{
	time_t    t = (time_t) (ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(buf, 32, "%llu ms", (unsigned long long) ms);
	}
	return (buf);
}

uint32_t
ref_window_s(const ref_service *rs, int urgency)
{
	if (urgency < 1 || urgency >= REF_URGENCIES) {
		urgency = HAVEN__REFERRAL__V1__URGENCY__PLANNED;
	}
	return (rs->rs_window_s[urgency]);
}
/* ---- the unit of work ------------------------------------------------------------------------ */

void
ref_work_init_in(ref_work *w, ref_service *rs, arena *a)
{
	memset(w, 0, offsetof(ref_work, w_own));
	w->w_rs    = rs;
	w->w_arena = a;
	w->w_mark  = arena_mark_get(a);
}

void
ref_work_init(ref_work *w, ref_service *rs)
{
	arena_init(&w->w_own, REF_ARENA_LIMIT);
	ref_work_init_in(w, rs, &w->w_own);
}

void
ref_work_begin(ref_work *w, store_txn *txn)
{
	arena_rewind(w->w_arena, &w->w_mark);
	w->w_txn     = txn;
	w->w_now     = ref_now_ms(w->w_rs);
	w->w_loaded  = NULL;
	w->w_nloaded = w->w_caploaded = 0;
	w->w_notes                    = NULL;
	w->w_nnotes = w->w_capnotes = 0;
	w->w_changed                = NULL;
	w->w_nchanged = w->w_capchanged = 0;
	w->w_freed                      = 0;
	w->w_offers                     = 0;
	w->w_expired                    = 0;
	w->w_err[0]                     = '\0';
}

void
ref_work_free(ref_work *w)
{
	if (w->w_arena == &w->w_own) {
		arena_reset(&w->w_own);
	}
	w->w_arena = NULL;
}

hv_status
ref_fail(ref_work *w, hv_status code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->w_err, sizeof(w->w_err), fmt, ap);
	va_end(ap);
	return (code);
}

/* Makes room for one more element in an arena array of *cap elements of size sz. */
static bool
grow(ref_work *w, void **arr, size_t n, size_t *cap, size_t sz)
{
	void  *p;
	size_t ncap;

	if (n < *cap) {
		return (true);
	}
	ncap = *cap == 0 ? 8 : *cap * 2;
	if ((p = arena_alloc(w->w_arena, ncap * sz)) == NULL) {
		return (false);
	}
	if (n > 0) {
		memcpy(p, *arr, n * sz);
	}
	*arr = p;
	*cap = ncap;
	return (true);
}

hv_status
ref_load(ref_work *w, const char *id, Referral **out)
{
	ref_service *rs = w->w_rs;
	Referral    *r  = NULL;
	hv_status    st;

	*out = NULL;
	if (!ids_valid(id)) {
		return (HV_NOT_FOUND);
	}
	for (size_t i = 0; i < w->w_nloaded; i++) {
		if (strcmp(w->w_loaded[i].l_ref->id, id) == 0) {
			*out = w->w_loaded[i].l_ref;
			return (HV_OK);
		}
	}
	if ((st = store_get_msg(w->w_txn, rs->rs_referrals, id, strlen(id),
	         &haven__referral__v1__referral__descriptor, &w->w_arena->a_pb,
	         (ProtobufCMessage **) &r)) != HV_OK) {
		return (st);
	}
	if (!grow(w, (void **) &w->w_loaded, w->w_nloaded, &w->w_caploaded, sizeof(ref_loaded))) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	w->w_loaded[w->w_nloaded].l_ref   = r;
	w->w_loaded[w->w_nloaded].l_dirty = false;
	w->w_nloaded++;
	*out = r;
	return (HV_OK);
}

hv_status
ref_adopt(ref_work *w, Referral *r)
{
	if (!grow(w, (void **) &w->w_loaded, w->w_nloaded, &w->w_caploaded, sizeof(ref_loaded))) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	w->w_loaded[w->w_nloaded].l_ref   = r;
	w->w_loaded[w->w_nloaded].l_dirty = true;
	w->w_nloaded++;
	return (HV_OK);
}

void
ref_mark_dirty(ref_work *w, const Referral *r)
{
	for (size_t i = 0; i < w->w_nloaded; i++) {
		if (w->w_loaded[i].l_ref == r) {
			w->w_loaded[i].l_dirty = true;
			return;
		}
	}
}

hv_status
ref_work_flush(ref_work *w)
{
	hv_status st;

	for (size_t i = 0; i < w->w_nloaded; i++) {
		Referral *r = w->w_loaded[i].l_ref;

		if (!w->w_loaded[i].l_dirty) {
			continue;
		}
		if ((st = store_put_msg(w->w_txn, w->w_rs->rs_referrals, r->id, strlen(r->id),
		         &r->base)) != HV_OK) {
			return (st);
		}
		w->w_loaded[i].l_dirty = false;
	}
	return (HV_OK);
}

hv_status
ref_load_offer(ref_work *w, const char *id, Offer **out)
{
	*out = NULL;
	if (!ids_valid(id)) {
		return (HV_NOT_FOUND);
	}
	return (store_get_msg(w->w_txn, w->w_rs->rs_offers, id, strlen(id),
	    &haven__referral__v1__offer__descriptor, &w->w_arena->a_pb, (ProtobufCMessage **) out));
}

hv_status
ref_put_offer(ref_work *w, const Offer *o)
{
	return (store_put_msg(w->w_txn, w->w_rs->rs_offers, o->id, strlen(o->id), &o->base));
}

hv_status
ref_work_note(ref_work *w, const Referral *r, uint32_t need, NeedState state)
{
	ref_note *n;

	ref_mark_dirty(w, r);
	if (!grow(w, (void **) &w->w_notes, w->w_nnotes, &w->w_capnotes, sizeof(ref_note))) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	n = &w->w_notes[w->w_nnotes++];
	snprintf(n->rn_referral, sizeof(n->rn_referral), "%s", r->id);
	snprintf(n->rn_referrer, sizeof(n->rn_referrer), "%s", r->referrer_org);
	n->rn_need    = need;
	n->rn_state   = state;
	n->rn_version = r->version;
	return (HV_OK);
}

hv_status
ref_work_changed(ref_work *w, const char *service_id, int type, bool freed)
{
	if (freed && type > 0 && type < REF_SERVICE_TYPES) {
		w->w_freed |= 1u << type;
	}
	for (size_t i = 0; i < w->w_nchanged; i++) {
		if (strcmp(w->w_changed[i], service_id) == 0) {
			return (HV_OK);
		}
	}
	if (!grow(w, (void **) &w->w_changed, w->w_nchanged, &w->w_capchanged, CAP_ID_MAX)) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	snprintf(w->w_changed[w->w_nchanged++], CAP_ID_MAX, "%s", service_id);
	return (HV_OK);
}

void
ref_work_publish(ref_work *w)
{
	ref_service *rs = w->w_rs;

	if (rs->rs_pub_open) {
		for (size_t i = 0; i < w->w_nnotes; i++) {
			Haven__Referral__V1__ReferralChanged m =
			    HAVEN__REFERRAL__V1__REFERRAL_CHANGED__INIT;
			uint8_t buf[512];
			size_t  n;
			int     rv;

			m.referral_id  = w->w_notes[i].rn_referral;
			m.referrer_org = w->w_notes[i].rn_referrer;
			m.need_index   = w->w_notes[i].rn_need;
			m.state        = w->w_notes[i].rn_state;
			m.version      = w->w_notes[i].rn_version;
			n              = haven__referral__v1__referral_changed__get_packed_size(&m);
			if (n + sizeof(PUB_TOPIC) - 1 > sizeof(buf)) {
				continue; /* cannot happen: two ids and three numbers */
			}
			memcpy(buf, PUB_TOPIC, sizeof(PUB_TOPIC) - 1);
			haven__referral__v1__referral_changed__pack(&m,
			    buf + sizeof(PUB_TOPIC) - 1);
			/* A notification is a hint to look sooner; it is never waited for. */
			rv =
			    nng_send(rs->rs_pub, buf, n + sizeof(PUB_TOPIC) - 1, NNG_FLAG_NONBLOCK);
			if (rv != 0 && rv != NNG_EAGAIN) {
				log_debug("referral: publishing a change of %s: %s", m.referral_id,
				    nng_strerror(rv));
			}
		}
	}
	for (size_t i = 0; i < w->w_nchanged; i++) {
		cap_publish_id(rs->rs_cap, w->w_changed[i]);
	}
	if (w->w_freed != 0) {
		ref_kick(rs, w->w_freed);
	}
}
/* Wakes the background job: places of the types in mask may have freed. */
void
ref_kick(ref_service *rs, uint32_t types)
{
	if (!rs->rs_sync_init) {
		return;
	}
	pthread_mutex_lock(&rs->rs_lock);
	rs->rs_pending |= types;
	hv_ticker_kick(rs->rs_bg);
	pthread_mutex_unlock(&rs->rs_lock);
}

/* ---- the states of a need ------------------------------------------------------------------- */

bool
ref_need_routing(const Need *n)
{
	return (n->state == NS(WAITING) || n->state == NS(OFFERED) || n->state == NS(ON_HOLD));
}

bool
ref_need_open(const Need *n)
{
	return (ref_need_routing(n) || n->state == NS(ACCEPTED) || n->state == NS(PLACED));
}

/* ---- the capacity directory ------------------------------------------------------------------ */

hv_status
ref_org_region(ref_service *rs, store_txn *txn, const char *org_id, char region[REGION_NAME_MAX])
{
	Haven__Capacity__V1__Organisation *org = NULL;
	hv_status                          st;

	region[0] = '\0';
	if ((st = cap_get_org(rs->rs_cap, txn, org_id, NULL, &org)) != HV_OK) {
		return (st == HV_INVALID_ARGUMENT ? HV_NOT_FOUND : st);
	}
	if (org->disabled) {
		st = HV_NOT_FOUND;
	} else {
		snprintf(region, REGION_NAME_MAX, "%s", org->region);
	}
	haven__capacity__v1__organisation__free_unpacked(org, NULL);
	return (st);
}
