/*
 * referral.c - the referral service's frame: the arena and the unit of work every write
 * transaction uses, the key layouts, opening the tables and sockets, the background thread
 * that expires offers and routes waiting needs, and the functions other services call
 * (ref_is_accepting_provider, ref_consent_withdrawn). Routing and the state machine are in
 * ref_route.c, the RPC handlers in ref_rpc.c, the checks in ref_check.c, the statistics in
 * ref_stats.c.
 *
 * A write function may run more than once (store.h): ref_work_begin forgets what an earlier
 * run did, so that notifications are sent for the run that committed only, after it did.
 */
#include "ref_internal.h"

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/log.h"

#include "haven/consent/v1/consent.pb-c.h"

#include <errno.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PUB_TOPIC      "referral."
#define CAP_TOPIC      "capacity."
#define CONSENT_TOPIC  "consent.withdrawn" /* consent.h: then a packed ConsentWithdrawn */
#define CHUNK_MIN      (16 * 1024)
#define ALIGN          16

/* ---- arena ----------------------------------------------------------------------------------- */

struct ref_chunk {
	ref_chunk *c_next;
	size_t     c_size; /* bytes of data */
	size_t     c_used;
};

/* Data starts after the header, rounded up so that it is aligned for anything. */
#define CHUNK_HDR ((sizeof(ref_chunk) + ALIGN - 1) & ~(size_t) (ALIGN - 1))

static void *
arena_pb_alloc(void *data, size_t n)
{
	return (ref_arena_alloc(data, n));
}

static void
arena_pb_free(void *data, void *p)
{
	/* Freed all at once by ref_arena_reset. */
}

void
ref_arena_init(ref_arena *a)
{
	a->a_head                 = NULL;
	a->a_total                = 0;
	a->a_alloc.alloc          = arena_pb_alloc;
	a->a_alloc.free           = arena_pb_free;
	a->a_alloc.allocator_data = a;
}

void *
ref_arena_alloc(ref_arena *a, size_t n)
{
	ref_chunk *c = a->a_head;
	void      *p;

	n = (n + ALIGN - 1) & ~(size_t) (ALIGN - 1);
	if (n == 0) {
		n = ALIGN;
	}
	if (c == NULL || c->c_size - c->c_used < n) {
		size_t size = n > CHUNK_MIN ? n : CHUNK_MIN;

		if (a->a_total + size > REF_ARENA_LIMIT || (c = malloc(CHUNK_HDR + size)) == NULL) {
			return (NULL);
		}
		c->c_next = a->a_head;
		c->c_size = size;
		c->c_used = 0;
		a->a_head = c;
		a->a_total += size;
	}
	p = (char *) c + CHUNK_HDR + c->c_used;
	c->c_used += n;
	return (p);
}

char *
ref_arena_strdup(ref_arena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char  *p = ref_arena_alloc(a, n);

	if (p != NULL) {
		memcpy(p, s, n);
	}
	return (p);
}

void
ref_arena_reset(ref_arena *a)
{
	while (a->a_head != NULL) {
		ref_chunk *c = a->a_head;
		a->a_head    = c->c_next;
		free(c);
	}
	a->a_total = 0;
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* Appends s (at most max bytes; ids and region names are short) at key[off]. */
static size_t
put_str(uint8_t key[REF_KEY_MAX], size_t off, const char *s)
{
	size_t n = strlen(s);

	if (n > REF_KEY_MAX - 1 - off) {
		n = REF_KEY_MAX - 1 - off;
	}
	memcpy(key + off, s, n);
	return (off + n);
}

size_t
ref_key_timed(uint8_t key[REF_KEY_MAX], const char *prefix, uint64_t created_ms, const char *id)
{
	size_t off = 0;

	if (prefix != NULL) {
		off        = put_str(key, 0, prefix);
		key[off++] = 0;
	}
	hv_put_be64(key + off, UINT64_MAX - created_ms);
	return (put_str(key, off + 8, id));
}

size_t
ref_key_waiting(uint8_t key[REF_KEY_MAX], const Referral *r, uint32_t need)
{
	size_t off;

	key[0] = (uint8_t) r->urgency;
	hv_put_be64(key + 1, r->created_ms);
	off        = put_str(key, 9, r->id);
	key[off++] = 0;
	hv_put_be32(key + off, need);
	return (off + 4);
}

size_t
ref_key_deadline(uint8_t key[REF_KEY_MAX], uint64_t respond_by_ms, const char *offer_id)
{
	hv_put_be64(key, respond_by_ms);
	return (put_str(key, 8, offer_id));
}

size_t
ref_key_pair(uint8_t key[REF_KEY_MAX], const char *a, const char *b)
{
	size_t off = put_str(key, 0, a);

	key[off++] = 0;
	return (put_str(key, off, b));
}

size_t
ref_key_closed(uint8_t key[REF_KEY_MAX], uint64_t closed_ms, const char *id)
{
	hv_put_be64(key, closed_ms);
	return (put_str(key, 8, id));
}

/* ---- clock ----------------------------------------------------------------------------------- */

int64_t
ref_now_ms(const ref_service *rs)
{
	if (rs != NULL && rs->rs_now != NULL) {
		return (rs->rs_now(rs->rs_now_arg));
	}
	return (hv_clock_wall_ms());
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
ref_work_init(ref_work *w, ref_service *rs)
{
	memset(w, 0, sizeof(*w));
	w->w_rs = rs;
	ref_arena_init(&w->w_arena);
}

void
ref_work_begin(ref_work *w, store_txn *txn)
{
	ref_arena_reset(&w->w_arena);
	w->w_txn      = txn;
	w->w_now      = ref_now_ms(w->w_rs);
	w->w_loaded   = NULL;
	w->w_nloaded  = w->w_caploaded = 0;
	w->w_notes    = NULL;
	w->w_nnotes   = w->w_capnotes = 0;
	w->w_changed  = NULL;
	w->w_nchanged = w->w_capchanged = 0;
	w->w_freed    = 0;
	w->w_offers   = 0;
	w->w_expired  = 0;
	w->w_err[0]   = '\0';
}

void
ref_work_free(ref_work *w)
{
	ref_arena_reset(&w->w_arena);
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
	if ((p = ref_arena_alloc(&w->w_arena, ncap * sz)) == NULL) {
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
	         &haven__referral__v1__referral__descriptor, &w->w_arena.a_alloc,
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
	    &haven__referral__v1__offer__descriptor, &w->w_arena.a_alloc, (ProtobufCMessage **) out));
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
			n = haven__referral__v1__referral_changed__get_packed_size(&m);
			if (n + sizeof(PUB_TOPIC) - 1 > sizeof(buf)) {
				continue; /* cannot happen: two ids and three numbers */
			}
			memcpy(buf, PUB_TOPIC, sizeof(PUB_TOPIC) - 1);
			haven__referral__v1__referral_changed__pack(&m, buf + sizeof(PUB_TOPIC) - 1);
			/* A notification is a hint to look sooner; it is never waited for. */
			rv = nng_send(rs->rs_pub, buf, n + sizeof(PUB_TOPIC) - 1, NNG_FLAG_NONBLOCK);
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

/* ---- the capacity directory ------------------------------------------------------------------ */

hv_status
ref_org_region(ref_service *rs, store_txn *txn, const char *org_id, char region[REGION_NAME_MAX])
{
	Haven__Capacity__V1__Organisation *org = NULL;
	hv_status                          st;

	region[0] = '\0';
	if (!ids_valid(org_id)) {
		return (HV_NOT_FOUND);
	}
	/* capacity.h has no reader for an organisation; cap.orgs is documented there as
	 * org id -> Organisation, and this reads it as such. */
	if ((st = store_get_msg(txn, rs->rs_cap_orgs, org_id, strlen(org_id),
	         &haven__capacity__v1__organisation__descriptor, NULL,
	         (ProtobufCMessage **) &org)) != HV_OK) {
		return (st);
	}
	if (org->disabled) {
		st = HV_NOT_FOUND;
	} else {
		snprintf(region, REGION_NAME_MAX, "%s", org->region);
	}
	haven__capacity__v1__organisation__free_unpacked(org, NULL);
	return (st);
}

/* ---- waiting needs and deadlines ------------------------------------------------------------- */

/* Keys gathered in a read transaction, then handled in a write transaction. */
typedef struct key_batch {
	uint8_t kb_keys[REF_BATCH][REF_KEY_MAX];
	size_t  kb_lens[REF_BATCH];
	size_t  kb_n;
} key_batch;

typedef struct route_job {
	ref_work  rj_work;
	key_batch rj_keys;
	uint32_t  rj_types;
} route_job;

/* Splits a ref.waiting key into the referral id and the need index. */
static bool
waiting_key_parse(const uint8_t *k, size_t kl, char id[IDS_MAX], uint32_t *need)
{
	size_t idlen;

	if (kl < 9 + 1 + 1 + 4 || kl - 14 >= IDS_MAX || k[kl - 5] != 0) {
		return (false);
	}
	idlen = kl - 14;
	memcpy(id, k + 9, idlen);
	id[idlen] = '\0';
	*need = hv_get_be32(k + kl - 4);
	return (ids_valid(id));
}

static hv_status
route_fn(store_txn *txn, void *arg)
{
	route_job     *j = arg;
	ref_work      *w = &j->rj_work;
	ref_route_item items[REF_BATCH];
	size_t         n = 0;
	hv_status      st;

	ref_work_begin(w, txn);
	for (size_t i = 0; i < j->rj_keys.kb_n; i++) {
		const uint8_t *k  = j->rj_keys.kb_keys[i];
		size_t         kl = j->rj_keys.kb_lens[i];
		Referral      *r;
		char           id[IDS_MAX];
		uint32_t       need;

		if (!waiting_key_parse(k, kl, id, &need)) {
			log_warn("referral: a malformed key in ref.waiting is dropped");
			if ((st = store_del(txn, w->w_rs->rs_waiting, k, kl)) != HV_OK) {
				return (st);
			}
			continue;
		}
		st = ref_load(w, id, &r);
		if (st == HV_OK && need < r->n_needs && r->needs[need]->state == NS(WAITING) &&
		    (j->rj_types & (1u << ((unsigned) r->needs[need]->type % REF_SERVICE_TYPES))) == 0) {
			continue; /* not a type whose places freed */
		}
		if (st == HV_NOT_FOUND || (st == HV_OK && (need >= r->n_needs ||
		                                              r->needs[need]->state != NS(WAITING)))) {
			/* Gone from the index in a transaction that committed after our read: or an
			 * entry that should not be there. Either way it is not waiting. */
			if (store_get(txn, w->w_rs->rs_waiting, k, kl, NULL, NULL) == HV_OK) {
				log_warn("referral: %s need %u is in ref.waiting but not waiting", id, need);
				if ((st = store_del(txn, w->w_rs->rs_waiting, k, kl)) != HV_OK) {
					return (st);
				}
			}
			continue;
		}
		if (st != HV_OK) {
			return (st);
		}
		items[n].ri_ref  = r;
		items[n].ri_need = r->needs[need];
		n++;
	}
	if (n > 0 && (st = ref_route(w, items, n)) != HV_OK) {
		return (st);
	}
	return (ref_work_flush(w));
}

/* Gathers up to REF_BATCH keys of table t after `after` (alen 0: from the start) for which
 * want(k) holds, stopping at the first key for which stop(k) holds. */
static hv_status
gather(ref_service *rs, store_table t, const uint8_t *after, size_t alen,
    bool (*want)(const uint8_t *, size_t, void *), bool (*stop)(const uint8_t *, size_t, void *),
    void *arg, key_batch *out, bool *more)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	const void   *k;
	size_t        kl;
	hv_status     st;

	out->kb_n = 0;
	*more     = false;
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		return (st);
	}
	if ((st = store_cursor_open(txn, t, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, after, alen, &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		if (alen > 0 && kl == alen && memcmp(k, after, alen) == 0) {
			continue;
		}
		if (kl > REF_KEY_MAX || (stop != NULL && stop(k, kl, arg))) {
			break;
		}
		if (want != NULL && !want(k, kl, arg)) {
			continue;
		}
		if (out->kb_n == REF_BATCH) {
			*more = true;
			break;
		}
		memcpy(out->kb_keys[out->kb_n], k, kl);
		out->kb_lens[out->kb_n++] = kl;
	}
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
out:
	store_cursor_close(c);
	store_read_end(txn);
	return (st);
}

/* Routes waiting needs; types: bit t for ServiceType t (the need's type is read from the
 * referral in the write transaction, so a round for some types still looks at each key). */
static hv_status
route_waiting_types(ref_service *rs, uint32_t types, unsigned *routed)
{
	route_job *j;
	uint8_t    after[REF_KEY_MAX];
	size_t     alen = 0;
	bool       more = true;
	hv_status  st   = HV_OK;
	uint64_t   count;
	store_txn *txn;

	if (routed != NULL) {
		*routed = 0;
	}
	/* Idle rounds take no write lock and allocate nothing. */
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_count(txn, rs->rs_waiting, &count);
	store_read_end(txn);
	if (st != HV_OK || count == 0) {
		return (st);
	}
	if ((j = malloc(sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	ref_work_init(&j->rj_work, rs);
	j->rj_types = types;
	while (more) {
		if ((st = gather(rs, rs->rs_waiting, after, alen, NULL, NULL, NULL, &j->rj_keys,
		         &more)) != HV_OK ||
		    j->rj_keys.kb_n == 0) {
			break;
		}
		alen = j->rj_keys.kb_lens[j->rj_keys.kb_n - 1];
		memcpy(after, j->rj_keys.kb_keys[j->rj_keys.kb_n - 1], alen);
		if ((st = store_write(rs->rs_store, route_fn, j)) != HV_OK) {
			log_warn("referral: routing waiting needs failed: %s %s", hv_status_name(st),
			    j->rj_work.w_err);
			break;
		}
		if (routed != NULL) {
			*routed += j->rj_work.w_offers;
		}
		if (j->rj_work.w_offers > 0) {
			log_info("referral: %u waiting needs offered", j->rj_work.w_offers);
		}
		ref_work_publish(&j->rj_work);
	}
	ref_work_free(&j->rj_work);
	free(j);
	return (st);
}

hv_status
ref_route_waiting(ref_service *rs, unsigned *routed)
{
	if (rs == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	return (route_waiting_types(rs, UINT32_MAX, routed));
}

typedef struct expire_job {
	ref_work  ej_work;
	key_batch ej_keys;
	int64_t   ej_now;
} expire_job;

static bool
deadline_passed(const uint8_t *k, size_t kl, void *arg)
{
	const int64_t *now = arg;

	return (kl < 8 || (int64_t) hv_get_be64(k) > *now);
}

static hv_status
expire_fn(store_txn *txn, void *arg)
{
	expire_job    *j = arg;
	ref_work      *w = &j->ej_work;
	ref_service   *rs;
	ref_route_item items[REF_BATCH];
	size_t         n = 0;
	hv_status      st;

	ref_work_begin(w, txn);
	rs = w->w_rs;
	for (size_t i = 0; i < j->ej_keys.kb_n; i++) {
		const uint8_t *k  = j->ej_keys.kb_keys[i];
		size_t         kl = j->ej_keys.kb_lens[i];
		Offer         *o  = NULL;
		Referral      *r  = NULL;
		Need          *need;
		char           id[IDS_MAX];
		char         **declined;

		if (kl <= 8 || kl - 8 >= IDS_MAX) {
			if ((st = store_del(txn, rs->rs_deadlines, k, kl)) != HV_OK) {
				return (st);
			}
			continue;
		}
		memcpy(id, k + 8, kl - 8);
		id[kl - 8] = '\0';
		st         = ref_load_offer(w, id, &o);
		if (st == HV_OK && o->state == OS(OFFER_OPEN) && (int64_t) o->respond_by_ms > w->w_now) {
			continue; /* not due (an entry of another time: it goes with its offer) */
		}
		if (st == HV_NOT_FOUND || (st == HV_OK && o->state != OS(OFFER_OPEN))) {
			/* Answered after our read (its entry went with the answer), or an entry left
			 * behind: an offer that is not open has no deadline. */
			if (store_get(txn, rs->rs_deadlines, k, kl, NULL, NULL) == HV_OK) {
				log_warn("referral: a deadline of offer %s that is not open dropped", id);
				if ((st = store_del(txn, rs->rs_deadlines, k, kl)) != HV_OK) {
					return (st);
				}
			}
			continue;
		}
		if (st != HV_OK) {
			return (st);
		}
		if ((st = ref_offer_end(w, o, OS(OFFER_EXPIRED))) != HV_OK) {
			return (st);
		}
		w->w_expired++;
		if ((st = ref_load(w, o->referral_id, &r)) != HV_OK) {
			return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
		}
		if (o->need_index >= r->n_needs) {
			return (HV_DATA_LOSS);
		}
		need = r->needs[o->need_index];
		if (need->state != NS(OFFERED) || strcmp(need->offer_id, o->id) != 0) {
			log_warn("referral: offer %s was open but %s need %u is not offered with it",
			    o->id, r->id, o->need_index);
			continue;
		}
		/* Silence is a decline: the need moves on to the next candidate. */
		if ((declined = ref_arena_alloc(&w->w_arena,
		         (need->n_declined_services + 1) * sizeof(char *))) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		if (need->n_declined_services > 0) {
			memcpy(declined, need->declined_services,
			    need->n_declined_services * sizeof(char *));
		}
		declined[need->n_declined_services++] = o->service_id;
		need->declined_services               = declined;
		if ((st = ref_transition(w, r, need, NS(WAITING), "", "offer expired", o->id)) !=
		    HV_OK) {
			return (st);
		}
		items[n].ri_ref  = r;
		items[n].ri_need = need;
		n++;
	}
	if (n > 0 && (st = ref_route(w, items, n)) != HV_OK) {
		return (st);
	}
	return (ref_work_flush(w));
}

hv_status
ref_expire_offers(ref_service *rs, unsigned *expired)
{
	expire_job *j;
	bool        more = true;
	hv_status   st   = HV_OK;

	if (expired != NULL) {
		*expired = 0;
	}
	if (rs == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((j = malloc(sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	ref_work_init(&j->ej_work, rs);
	while (more) {
		j->ej_now = ref_now_ms(rs);
		/* Deadlines are in time order: stop at the first one still to come. */
		if ((st = gather(rs, rs->rs_deadlines, NULL, 0, NULL, deadline_passed, &j->ej_now,
		         &j->ej_keys, &more)) != HV_OK ||
		    j->ej_keys.kb_n == 0) {
			break;
		}
		if ((st = store_write(rs->rs_store, expire_fn, j)) != HV_OK) {
			log_warn("referral: expiring offers failed: %s %s", hv_status_name(st),
			    j->ej_work.w_err);
			break;
		}
		if (j->ej_work.w_expired > 0) {
			log_info("referral: %u offers expired, %u new offers", j->ej_work.w_expired,
			    j->ej_work.w_offers);
		}
		if (expired != NULL) {
			*expired += j->ej_work.w_expired;
		}
		ref_work_publish(&j->ej_work);
		if (j->ej_work.w_expired == 0) {
			break; /* every gathered entry was answered meanwhile: look again next round */
		}
	}
	ref_work_free(&j->ej_work);
	free(j);
	return (st);
}

/* ---- for the consent service ----------------------------------------------------------------- */

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

/* Calls fn for each referral of subject (its id) until fn returns non-zero or fails. */
static hv_status
foreach_of_subject(ref_service *rs, store_txn *txn, const char *subject,
    hv_status (*fn)(void *, const char *, bool *), void *arg)
{
	store_cursor *c = NULL;
	uint8_t       prefix[REF_KEY_MAX];
	size_t        plen;
	const void   *k;
	size_t        kl;
	hv_status     st;
	bool          stop = false;

	plen         = strlen(subject);
	if (plen == 0 || plen > 64) {
		return (HV_OK);
	}
	memcpy(prefix, subject, plen);
	prefix[plen++] = 0;
	if ((st = store_cursor_open(txn, rs->rs_by_subject, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, prefix, plen, &k, &kl, NULL, NULL); st == HV_OK && !stop;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		char id[IDS_MAX];

		if (kl <= plen || memcmp(k, prefix, plen) != 0) {
			break;
		}
		if (kl - plen >= IDS_MAX) {
			continue;
		}
		memcpy(id, (const uint8_t *) k + plen, kl - plen);
		id[kl - plen] = '\0';
		/* fn may write: the cursor is only read again after it, which LMDB allows for a
		 * table fn does not write (fn writes ref.referrals only). */
		if ((st = fn(arg, id, &stop)) != HV_OK) {
			break;
		}
	}
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
	store_cursor_close(c);
	return (st);
}

typedef struct accepting_arg {
	ref_service *aa_rs;
	store_txn   *aa_txn;
	const char  *aa_org;
	bool         aa_yes;
} accepting_arg;

static hv_status
accepting_one(void *arg, const char *id, bool *stop)
{
	accepting_arg *a = arg;
	Referral      *r = NULL;
	hv_status      st;

	st = store_get_msg(a->aa_txn, a->aa_rs->rs_referrals, id, strlen(id),
	    &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r);
	if (st == HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		const Need *n = r->needs[i];

		if ((n->state == NS(ACCEPTED) || n->state == NS(PLACED)) &&
		    strcmp(n->provider_org, a->aa_org) == 0) {
			a->aa_yes = true;
			*stop     = true;
		}
	}
	haven__referral__v1__referral__free_unpacked(r, NULL);
	return (HV_OK);
}

hv_status
ref_is_accepting_provider(ref_service *rs, store_txn *txn, const char *subject,
    const char *org_id, bool *yes)
{
	accepting_arg a = { rs, txn, org_id, false };
	hv_status     st;

	if (yes == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*yes = false;
	if (rs == NULL || txn == NULL || subject == NULL || !ids_valid(org_id)) {
		return (HV_INVALID_ARGUMENT);
	}
	st   = foreach_of_subject(rs, txn, subject, accepting_one, &a);
	*yes = st == HV_OK && a.aa_yes;
	return (st);
}

typedef struct withdrawn_job {
	ref_work    wj_work;
	const char *wj_subject;
	unsigned    wj_marked;
} withdrawn_job;

static hv_status
withdrawn_one(void *arg, const char *id, bool *stop)
{
	withdrawn_job *j = arg;
	Referral      *r;
	bool           marked = false, valid;
	hv_status      st;

	if ((st = ref_load(&j->wj_work, id, &r)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if (ref_referral_closed(r)) {
		return (HV_OK);
	}
	/* Another consent may still cover the referral; if none does, it ends here. */
	if ((st = ref_consent_valid(&j->wj_work, r, &valid)) != HV_OK) {
		return (st);
	}
	if (!valid) {
		j->wj_marked++;
		return (ref_end_for_consent(&j->wj_work, r, "consent withdrawn"));
	}
	for (size_t i = 0; i < r->n_needs; i++) {
		if (!ref_need_open(r->needs[i])) {
			continue;
		}
		if ((st = ref_note_event(&j->wj_work, r, r->needs[i], "", "consent withdrawn")) !=
		    HV_OK) {
			return (st);
		}
		marked = true;
	}
	j->wj_marked += marked ? 1 : 0;
	return (HV_OK);
}

static hv_status
withdrawn_fn(store_txn *txn, void *arg)
{
	withdrawn_job *j = arg;
	hv_status      st;

	ref_work_begin(&j->wj_work, txn);
	j->wj_marked = 0;
	if ((st = foreach_of_subject(j->wj_work.w_rs, txn, j->wj_subject, withdrawn_one, j)) !=
	    HV_OK) {
		return (st);
	}
	return (ref_work_flush(&j->wj_work));
}

hv_status
ref_consent_withdrawn(ref_service *rs, const char *subject, unsigned *referrals)
{
	withdrawn_job j;
	hv_status     st;

	if (referrals != NULL) {
		*referrals = 0;
	}
	if (rs == NULL || subject == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	ref_work_init(&j.wj_work, rs);
	j.wj_subject = subject;
	if ((st = store_write(rs->rs_store, withdrawn_fn, &j)) == HV_OK) {
		ref_work_publish(&j.wj_work);
		if (referrals != NULL) {
			*referrals = j.wj_marked;
		}
	}
	ref_work_free(&j.wj_work);
	return (st);
}

/* ---- the background thread ------------------------------------------------------------------- */

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

/* One round of the background job: records queued consent withdrawals, expires offers and
 * routes waiting needs (all types every REF_ROUTE_EVERY_MS, those kicked at once). */
static void
bg_round(void *arg)
{
	ref_service *rs = arg;
	uint32_t     pending;
	char         subject[REF_SUBJECT_LEN + 1];
	int64_t      now;

	pthread_mutex_lock(&rs->rs_lock);
	if (rs->rs_stopping) {
		pthread_mutex_unlock(&rs->rs_lock);
		return;
	}
	pending        = rs->rs_pending;
	rs->rs_pending = 0;
	while (rs->rs_nwithdrawn > 0) {
		memcpy(subject, rs->rs_withdrawn[--rs->rs_nwithdrawn], sizeof(subject));
		pthread_mutex_unlock(&rs->rs_lock);
		if (ref_consent_withdrawn(rs, subject, NULL) != HV_OK) {
			log_warn("referral: cannot record the consent withdrawal of %s", subject);
		}
		pthread_mutex_lock(&rs->rs_lock);
	}
	pthread_mutex_unlock(&rs->rs_lock);

	(void) ref_expire_offers(rs, NULL);
	now = hv_clock_mono_ms();
	if (rs->rs_last_route == 0 || now - rs->rs_last_route >= REF_ROUTE_EVERY_MS) {
		(void) route_waiting_types(rs, UINT32_MAX, NULL);
		rs->rs_last_route = now;
	} else if (pending != 0) {
		(void) route_waiting_types(rs, pending, NULL);
	}
}

/* Queues a subject whose consent was withdrawn for the thread (the callback must not block
 * on the store). */
static void
queue_withdrawn(ref_service *rs, const char *subject)
{
	if (strlen(subject) != REF_SUBJECT_LEN) {
		return;
	}
	pthread_mutex_lock(&rs->rs_lock);
	if (rs->rs_nwithdrawn < REF_WITHDRAWN_QUEUE) {
		memcpy(rs->rs_withdrawn[rs->rs_nwithdrawn++], subject, REF_SUBJECT_LEN + 1);
		hv_ticker_kick(rs->rs_bg);
	} else {
		log_warn("referral: too many consent withdrawals queued; subject %s not recorded",
		    subject);
	}
	pthread_mutex_unlock(&rs->rs_lock);
}

/* A notification arrived: a CapacityChanged that says a place is free wakes the thread to
 * route waiting needs of its type; a ConsentWithdrawn is queued for the thread. */
static void
sub_cb(void *arg)
{
	ref_service *rs = arg;
	nng_msg     *m;
	int          rv = nng_aio_result(rs->rs_sub_aio);

	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		return;
	}
	if (rv == 0) {
		const uint8_t *body;
		size_t         len;

		m    = nng_aio_get_msg(rs->rs_sub_aio);
		body = nng_msg_body(m);
		len  = nng_msg_len(m);
		if (len >= sizeof(CAP_TOPIC) - 1 && memcmp(body, CAP_TOPIC, sizeof(CAP_TOPIC) - 1) == 0) {
			Haven__Capacity__V1__CapacityChanged *c =
			    haven__capacity__v1__capacity_changed__unpack(
			        NULL, len - (sizeof(CAP_TOPIC) - 1), body + sizeof(CAP_TOPIC) - 1);
			if (c != NULL) {
				if (c->free > 0 && (int) c->type > 0 && (int) c->type < REF_SERVICE_TYPES) {
					ref_kick(rs, 1u << c->type);
				}
				haven__capacity__v1__capacity_changed__free_unpacked(c, NULL);
			}
		} else if (len >= sizeof(CONSENT_TOPIC) - 1 &&
		    memcmp(body, CONSENT_TOPIC, sizeof(CONSENT_TOPIC) - 1) == 0) {
			Haven__Consent__V1__ConsentWithdrawn *c =
			    haven__consent__v1__consent_withdrawn__unpack(
			        NULL, len - (sizeof(CONSENT_TOPIC) - 1), body + sizeof(CONSENT_TOPIC) - 1);
			if (c != NULL) {
				queue_withdrawn(rs, c->subject);
				haven__consent__v1__consent_withdrawn__free_unpacked(c, NULL);
			}
		}
		nng_msg_free(m);
	}
	nng_recv_aio(rs->rs_sub, rs->rs_sub_aio);
}

/* Opens the sub socket on first use and dials url. Non-blocking: the publisher may start
 * later; nng keeps dialing. */
static hv_status
subscribe(ref_service *rs, const char *url, const char *topic)
{
	int rv;

	if (!rs->rs_sub_open) {
		if ((rv = nng_sub0_open(&rs->rs_sub)) != 0) {
			return (hv_status_from_nng(rv));
		}
		rs->rs_sub_open = true;
		if ((rv = nng_aio_alloc(&rs->rs_sub_aio, sub_cb, rs)) != 0) {
			return (hv_status_from_nng(rv));
		}
	}
	if ((rv = nng_socket_set(rs->rs_sub, NNG_OPT_SUB_SUBSCRIBE, topic, strlen(topic))) != 0) {
		return (hv_status_from_nng(rv));
	}
	if ((rv = nng_dial(rs->rs_sub, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		log_error("referral: cannot subscribe to %s: %s", url, nng_strerror(rv));
		return (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? HV_INVALID_ARGUMENT
		                                                  : hv_status_from_nng(rv));
	}
	return (HV_OK);
}

/* ---- retention ------------------------------------------------------------------------------- */

/*
 * A referral closes when its last need reaches a final state (ref_closed_update, from
 * ref_transition); ref.closed lists the closed referrals whose subject is not erased yet, oldest
 * closure first. A sweep walks it up to the cutoff (now - retention_days). A subject is due when
 * every one of its referrals (ref.by_subject) is closed before the cutoff; it is looked at once
 * for each of its closed referrals in the walk, and decided at the last of them in the walk's
 * order, so that it is yielded or counted as kept exactly once per walk. Erasure goes through
 * the hook with no transaction open (the consent service erases in transactions of its own and
 * then rotates its key); the subject's referrals are marked afterwards in one write transaction
 * and leave ref.closed. A crash in between leaves them in ref.closed: the next sweep asks the
 * hook again, which answers NOT_FOUND (erased), and marks them then.
 */

/* What the referrals of one subject say about the referral of an index entry. */
typedef struct due_eval {
	ref_service    *de_rs;
	store_txn      *de_txn;
	const Referral *de_ref;
	int64_t         de_cutoff;
	bool            de_later; /* another of its referrals closed later, before the cutoff */
	bool            de_keep;  /* one is open, or closed at or after the cutoff */
} due_eval;

static hv_status
due_one(void *arg, const char *id, bool *stop)
{
	due_eval       *e = arg;
	const Referral *x = e->de_ref;
	Referral       *r = NULL;
	hv_status       st;

	if (strcmp(id, x->id) == 0) {
		return (HV_OK);
	}
	st = store_get_msg(e->de_txn, e->de_rs->rs_referrals, id, strlen(id),
	    &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r);
	if (st == HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if (r->closed_ms == 0 || !ref_referral_closed(r) || (int64_t) r->closed_ms >= e->de_cutoff) {
		e->de_keep = true;
	} else if (r->subject_erased_ms == 0 &&
	    (r->closed_ms > x->closed_ms ||
	        (r->closed_ms == x->closed_ms && strcmp(r->id, x->id) > 0))) {
		e->de_later = true;
	}
	haven__referral__v1__referral__free_unpacked(r, NULL);
	return (HV_OK);
}

/* A walk of ref.closed up to the cutoff. */
typedef struct due_walk {
	int64_t    dw_cutoff;
	ref_due_fn dw_fn;
	void      *dw_arg;
	unsigned   dw_kept;
	uint8_t    dw_last[REF_KEY_MAX]; /* the last entry looked at */
	size_t     dw_lastlen;
	bool       dw_more; /* fn stopped the walk before its end */
} due_walk;

/* Walks ref.closed from the entry after `after` (alen 0: from the start). */
static hv_status
due_walk_run(ref_service *rs, store_txn *txn, due_walk *dw, const uint8_t *after, size_t alen)
{
	store_cursor *c = NULL;
	const void   *k;
	size_t        kl;
	bool          stop = false;
	hv_status     st;

	dw->dw_more = false;
	if ((st = store_cursor_open(txn, rs->rs_closed, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, after, alen, &k, &kl, NULL, NULL); st == HV_OK && !stop;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		char      id[IDS_MAX];
		Referral *r = NULL;
		due_eval  e;

		if (alen > 0 && kl == alen && memcmp(k, after, alen) == 0) {
			continue;
		}
		if (kl <= 8 || kl - 8 >= IDS_MAX) {
			continue; /* not an entry this service writes */
		}
		if ((int64_t) hv_get_be64(k) >= dw->dw_cutoff) {
			break; /* oldest first: the rest closed later */
		}
		memcpy(dw->dw_last, k, kl);
		dw->dw_lastlen = kl;
		memcpy(id, (const uint8_t *) k + 8, kl - 8);
		id[kl - 8] = '\0';
		st = store_get_msg(txn, rs->rs_referrals, id, strlen(id),
		    &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r);
		if (st == HV_NOT_FOUND) {
			continue;
		}
		if (st != HV_OK) {
			break;
		}
		memset(&e, 0, sizeof(e));
		e.de_rs     = rs;
		e.de_txn    = txn;
		e.de_ref    = r;
		e.de_cutoff = dw->dw_cutoff;
		if (r->subject_erased_ms != 0 || r->closed_ms == 0 ||
		    strlen(r->subject) != REF_SUBJECT_LEN) {
			/* An entry left behind: the marking removes it with the referral's. */
		} else if ((st = foreach_of_subject(rs, txn, r->subject, due_one, &e)) != HV_OK) {
			haven__referral__v1__referral__free_unpacked(r, NULL);
			break;
		} else if (e.de_later) {
			/* decided at the subject's last closure */
		} else if (e.de_keep) {
			dw->dw_kept++;
		} else if ((st = dw->dw_fn(dw->dw_arg, r->subject, &stop)) != HV_OK) {
			haven__referral__v1__referral__free_unpacked(r, NULL);
			break;
		}
		haven__referral__v1__referral__free_unpacked(r, NULL);
	}
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
	dw->dw_more = st == HV_OK && stop;
	store_cursor_close(c);
	return (st);
}

hv_status
ref_retention_due(ref_service *rs, store_txn *txn, int64_t cutoff_ms, ref_due_fn fn, void *arg)
{
	due_walk dw;

	if (rs == NULL || txn == NULL || fn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	memset(&dw, 0, sizeof(dw));
	dw.dw_cutoff = cutoff_ms;
	dw.dw_fn     = fn;
	dw.dw_arg    = arg;
	return (due_walk_run(rs, txn, &dw, NULL, 0));
}

typedef struct retention_job {
	ref_work rj_work;
	char     rj_subjects[REF_BATCH][REF_SUBJECT_LEN + 1];
	bool     rj_erased[REF_BATCH];
	size_t   rj_n;
	unsigned rj_marked;
} retention_job;

static hv_status
collect_due(void *arg, const char *subject, bool *stop)
{
	retention_job *j = arg;

	memcpy(j->rj_subjects[j->rj_n], subject, REF_SUBJECT_LEN + 1);
	j->rj_erased[j->rj_n] = false;
	if (++j->rj_n == REF_BATCH) {
		*stop = true;
	}
	return (HV_OK);
}

static hv_status
mark_one(void *arg, const char *id, bool *stop)
{
	retention_job *j = arg;
	ref_work      *w = &j->rj_work;
	Referral      *r;
	uint8_t        key[REF_KEY_MAX];
	hv_status      st;

	if ((st = ref_load(w, id, &r)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if (r->subject_erased_ms != 0) {
		return (HV_OK);
	}
	if (r->closed_ms != 0) {
		st = store_del(w->w_txn, w->w_rs->rs_closed, key,
		    ref_key_closed(key, r->closed_ms, r->id));
		if (st != HV_OK && st != HV_NOT_FOUND) {
			return (st);
		}
	} else {
		/* Referred again between the walk and the erasure: its subject is gone all the same. */
		log_warn("referral: %s is open, but retention erased its subject %s (referred again "
		         "during the sweep)",
		    r->id, r->subject);
	}
	r->subject_erased_ms = (uint64_t) w->w_now;
	ref_text_drop(r); /* the free text about the person: unreadable already, now gone too */
	if (r->n_needs > 0) {
		st = ref_note_event(w, r, r->needs[0], "", REF_ERASED_REASON);
	} else {
		ref_mark_dirty(w, r);
		st = HV_OK;
	}
	j->rj_marked += st == HV_OK ? 1 : 0;
	return (st);
}

static hv_status
mark_fn(store_txn *txn, void *arg)
{
	retention_job *j = arg;
	hv_status      st;

	ref_work_begin(&j->rj_work, txn);
	j->rj_marked = 0;
	for (size_t i = 0; i < j->rj_n; i++) {
		if (j->rj_erased[i] && (st = foreach_of_subject(j->rj_work.w_rs, txn,
		                            j->rj_subjects[i], mark_one, j)) != HV_OK) {
			return (st);
		}
	}
	return (ref_work_flush(&j->rj_work));
}

static bool
is_stopping(ref_service *rs)
{
	bool stopping;

	pthread_mutex_lock(&rs->rs_lock);
	stopping = rs->rs_stopping;
	pthread_mutex_unlock(&rs->rs_lock);
	return (stopping);
}

hv_status
ref_retention_run(ref_service *rs, ref_retention_stats *out)
{
	ref_retention_stats s;
	retention_job      *j = NULL;
	due_walk            dw;
	store_txn          *txn;
	uint8_t             after[REF_KEY_MAX];
	size_t              alen    = 0;
	bool                stopped = false;
	unsigned            erased_now = 0; /* erasures made by this sweep */
	hv_status           st;
	char                when[32];
	time_t              t;
	struct tm           tm;

	memset(&s, 0, sizeof(s));
	if (out != NULL) {
		*out = s;
	}
	if (rs == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (rs->rs_erase == NULL || rs->rs_retention_days == 0) {
		return (HV_FAILED_PRECONDITION);
	}
	s.rr_cutoff_ms = ref_now_ms(rs) - (int64_t) rs->rs_retention_days * REF_DAY_MS;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	ref_work_init(&j->rj_work, rs);
	for (;;) {
		memset(&dw, 0, sizeof(dw));
		dw.dw_cutoff = s.rr_cutoff_ms;
		dw.dw_fn     = collect_due;
		dw.dw_arg    = j;
		j->rj_n      = 0;
		if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
			break;
		}
		st = due_walk_run(rs, txn, &dw, after, alen);
		store_read_end(txn);
		if (st != HV_OK) {
			log_warn("referral: retention cannot read the closed referrals: %s",
			    hv_status_name(st));
			break;
		}
		s.rr_kept += dw.dw_kept;
		memcpy(after, dw.dw_last, dw.dw_lastlen);
		alen = dw.dw_lastlen;
		if (j->rj_n == 0) {
			break;
		}
		for (size_t i = 0; i < j->rj_n; i++) {
			hv_status est;

			if (is_stopping(rs)) {
				j->rj_n = i; /* the rest waits for the next start */
				stopped = true;
				break;
			}
			est = rs->rs_erase(rs->rs_erase_arg, j->rj_subjects[i]);
			j->rj_erased[i] = est == HV_OK || est == HV_NOT_FOUND;
			erased_now += est == HV_OK;
			if (!j->rj_erased[i]) {
				s.rr_failed++;
				log_warn("referral: retention could not erase subject %s: %s (tried again at "
				         "the next sweep)",
				    j->rj_subjects[i], hv_status_name(est));
			}
		}
		if ((st = store_write(rs->rs_store, mark_fn, j)) != HV_OK) {
			log_warn("referral: retention erased subjects but cannot mark their referrals: %s "
			         "(the next sweep does)",
			    hv_status_name(st));
			break;
		}
		ref_work_publish(&j->rj_work);
		for (size_t i = 0; i < j->rj_n; i++) {
			s.rr_subjects += j->rj_erased[i] ? 1 : 0;
		}
		s.rr_referrals += j->rj_marked;
		if (stopped || !dw.dw_more) {
			break;
		}
	}
	ref_work_free(&j->rj_work);
	free(j);
	if (erased_now > 0 && rs->rs_erase_done != NULL) {
		hv_status dst = rs->rs_erase_done(rs->rs_erase_arg);
		if (dst != HV_OK) {
			log_error("referral: retention erased %u subjects but could not make it final "
			          "(key rotation: %s); the daily rotation will",
			    erased_now, hv_status_name(dst));
		}
	}
	t = (time_t) (s.rr_cutoff_ms / 1000);
	if (gmtime_r(&t, &tm) == NULL || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(when, sizeof(when), "%lld ms", (long long) s.rr_cutoff_ms);
	}
	log_info("referral: retention erased %u subjects (%u referrals) closed before %s; %u kept "
	         "for an open or recent referral; %u failed%s",
	    s.rr_subjects, s.rr_referrals, when, s.rr_kept, s.rr_failed,
	    stopped ? "; stopped early" : st != HV_OK ? "; sweep ended by an error" : "");
	if (out != NULL) {
		*out = s;
	}
	return (st);
}

/* The retention job: one sweep (it stops early once rs_stopping is set). */
static void
retention_round(void *arg)
{
	(void) ref_retention_run(arg, NULL);
}

/* The time a referral closed, for referrals stored before closed_ms existed: the latest event
 * that moved a need into a final state (created_ms when the trail has none). Never 0. */
static uint64_t
closed_from_events(const Referral *r)
{
	uint64_t t = 0;

	for (size_t i = 0; i < r->n_events; i++) {
		const Event *e = r->events[i];
		if ((e->to == NS(COMPLETED) || e->to == NS(CANCELLED) || e->to == NS(FAILED)) &&
		    e->time_ms > t) {
			t = e->time_ms;
		}
	}
	if (t == 0) {
		t = r->created_ms;
	}
	return (t != 0 ? t : 1);
}

typedef struct backfill_job {
	ref_service *bj_rs;
	key_batch    bj_keys;
	bool         bj_last;
	unsigned     bj_n;
} backfill_job;

static hv_status
backfill_fn(store_txn *txn, void *arg)
{
	backfill_job *j  = arg;
	ref_service  *rs = j->bj_rs;
	uint8_t       key[REF_KEY_MAX];
	hv_status     st = HV_OK;

	j->bj_n = 0;
	for (size_t i = 0; i < j->bj_keys.kb_n && st == HV_OK; i++) {
		Referral *r = NULL;

		st = store_get_msg(txn, rs->rs_referrals, j->bj_keys.kb_keys[i], j->bj_keys.kb_lens[i],
		    &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r);
		if (st == HV_NOT_FOUND) {
			st = HV_OK;
			continue;
		}
		if (st != HV_OK) {
			break;
		}
		if (ref_referral_closed(r) && r->subject_erased_ms == 0) {
			if (r->closed_ms == 0) {
				r->closed_ms = closed_from_events(r);
				st = store_put_msg(txn, rs->rs_referrals, r->id, strlen(r->id), &r->base);
			}
			if (st == HV_OK) {
				st = store_put(txn, rs->rs_closed, key, ref_key_closed(key, r->closed_ms, r->id),
				    "", 0);
			}
			j->bj_n++;
		}
		haven__referral__v1__referral__free_unpacked(r, NULL);
	}
	if (st == HV_OK && j->bj_last) {
		st = store_put(txn, rs->rs_meta, REF_META_CLOSED, strlen(REF_META_CLOSED), "1", 1);
	}
	return (st);
}

/* Fills ref.closed from the referrals of a store written before it existed (once). */
static hv_status
closed_backfill(ref_service *rs)
{
	backfill_job *j;
	store_txn    *txn;
	uint8_t       after[REF_KEY_MAX];
	size_t        alen  = 0;
	unsigned      total = 0;
	bool          more  = true;
	hv_status     st;

	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_get(txn, rs->rs_meta, REF_META_CLOSED, strlen(REF_META_CLOSED), NULL, NULL);
	store_read_end(txn);
	if (st != HV_NOT_FOUND) {
		return (st);
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	j->bj_rs = rs;
	while (more) {
		if ((st = gather(rs, rs->rs_referrals, after, alen, NULL, NULL, NULL, &j->bj_keys,
		         &more)) != HV_OK) {
			break;
		}
		j->bj_last = !more;
		if ((st = store_write(rs->rs_store, backfill_fn, j)) != HV_OK) {
			break;
		}
		total += j->bj_n;
		if (j->bj_keys.kb_n > 0) {
			alen = j->bj_keys.kb_lens[j->bj_keys.kb_n - 1];
			memcpy(after, j->bj_keys.kb_keys[j->bj_keys.kb_n - 1], alen);
		}
	}
	free(j);
	if (st == HV_OK && total > 0) {
		log_info("referral: %u closed referrals indexed for retention", total);
	}
	return (st);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

hv_status
ref_open(ref_service **out, const ref_options *opts)
{
	static const struct {
		const char *name;
		size_t      offset;
	} tables[] = {
		{ "ref.referrals", offsetof(ref_service, rs_referrals) },
		{ "ref.offers", offsetof(ref_service, rs_offers) },
		{ "ref.by_provider", offsetof(ref_service, rs_by_provider) },
		{ "ref.by_referrer", offsetof(ref_service, rs_by_referrer) },
		{ "ref.by_region", offsetof(ref_service, rs_by_region) },
		{ "ref.by_time", offsetof(ref_service, rs_by_time) },
		{ "ref.by_subject", offsetof(ref_service, rs_by_subject) },
		{ "ref.waiting", offsetof(ref_service, rs_waiting) },
		{ "ref.deadlines", offsetof(ref_service, rs_deadlines) },
		{ "ref.idem", offsetof(ref_service, rs_idem) },
		{ "ref.closed", offsetof(ref_service, rs_closed) },
		{ "ref.meta", offsetof(ref_service, rs_meta) },
		{ "cap.orgs", offsetof(ref_service, rs_cap_orgs) },
	};
	static const uint32_t default_timeouts[REF_URGENCIES] = { 0, 1800, 14400, 86400 };
	ref_service          *rs = NULL;
	hv_status             st = HV_INVALID_ARGUMENT;
	int                   rv;

	if (out != NULL) {
		*out = NULL;
	}
	if (out == NULL || opts == NULL || opts->store == NULL || opts->regions == NULL ||
	    opts->capacity == NULL) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((rs = calloc(1, sizeof(*rs))) == NULL) {
		goto out;
	}
	rs->rs_store       = opts->store;
	rs->rs_regions     = opts->regions;
	rs->rs_cap         = opts->capacity;
	rs->rs_alerts      = opts->alerts;
	rs->rs_consent     = opts->consent;
	rs->rs_consent_arg = opts->consent_arg;
	rs->rs_seal        = opts->seal;
	rs->rs_unseal      = opts->unseal;
	rs->rs_now         = opts->now_ms;
	rs->rs_now_arg     = opts->now_arg;
	rs->rs_hold_max_s  = opts->hold_max_ttl_s != 0 ? opts->hold_max_ttl_s : REF_HOLD_MAX_DEFAULT;
	rs->rs_erase          = opts->erase;
	rs->rs_erase_arg      = opts->erase_arg;
	rs->rs_erase_done     = opts->erase_done;
	rs->rs_retention_days = opts->retention_days;
	rs->rs_stats_periods  = opts->stats_periods != 0 ? opts->stats_periods : REF_PERIODS_MONTHS;
	rs->rs_retention_every_s =
	    opts->retention_interval_s != 0 ? opts->retention_interval_s : REF_RETENTION_EVERY_S;
	for (int u = 1; u < REF_URGENCIES; u++) {
		uint32_t t = opts->offer_timeout_s[u] != 0 ? opts->offer_timeout_s[u]
		                                           : default_timeouts[u];
		/* The hold must live as long as the offer: a window is never longer than a hold. */
		rs->rs_window_s[u] = t < rs->rs_hold_max_s ? t : rs->rs_hold_max_s;
	}

	if (pthread_mutex_init(&rs->rs_lock, NULL) != 0) {
		goto out;
	}
	rs->rs_sync_init = true;

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		store_table *t = (store_table *) (void *) ((char *) rs + tables[i].offset);
		if ((st = store_table_open(rs->rs_store, tables[i].name, t)) != HV_OK) {
			log_error("referral: cannot open table %s: %s", tables[i].name,
			    hv_status_name(st));
			goto out;
		}
	}
	if ((st = closed_backfill(rs)) != HV_OK) {
		log_error("referral: cannot index the closed referrals: %s", hv_status_name(st));
		goto out;
	}
	if ((st = ref_text_migrate(rs)) != HV_OK) {
		log_error("referral: cannot seal the free text of stored referrals: %s",
		    hv_status_name(st));
		goto out;
	}

	if (opts->pub_url != NULL && opts->pub_url[0] != '\0') {
		if ((rv = nng_pub0_open(&rs->rs_pub)) != 0) {
			st = hv_status_from_nng(rv);
			goto out;
		}
		rs->rs_pub_open = true;
		if ((rv = nng_listen(rs->rs_pub, opts->pub_url, NULL, 0)) != 0) {
			log_error("referral: cannot publish on %s: %s", opts->pub_url, nng_strerror(rv));
			st = rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? HV_INVALID_ARGUMENT
			                                                : hv_status_from_nng(rv);
			goto out;
		}
	}
	if (opts->capacity_sub_url != NULL && opts->capacity_sub_url[0] != '\0' &&
	    (st = subscribe(rs, opts->capacity_sub_url, CAP_TOPIC)) != HV_OK) {
		goto out;
	}
	if (opts->consent_sub_url != NULL && opts->consent_sub_url[0] != '\0') {
		bool same = opts->capacity_sub_url != NULL &&
		    strcmp(opts->capacity_sub_url, opts->consent_sub_url) == 0;
		if (same) {
			int rv2 = nng_socket_set(rs->rs_sub, NNG_OPT_SUB_SUBSCRIBE, CONSENT_TOPIC,
			    sizeof(CONSENT_TOPIC) - 1);
			st = rv2 == 0 ? HV_OK : hv_status_from_nng(rv2);
		} else {
			st = subscribe(rs, opts->consent_sub_url, CONSENT_TOPIC);
		}
		if (st != HV_OK) {
			goto out;
		}
	}
	if (rs->rs_sub_open) {
		nng_recv_aio(rs->rs_sub, rs->rs_sub_aio);
	}

	if (!opts->manual) {
		pthread_mutex_lock(&rs->rs_lock);
		st = hv_ticker_start(&rs->rs_bg, REF_TICK_MS, true, bg_round, rs);
		if (st == HV_OK && rs->rs_erase != NULL && rs->rs_retention_days != 0) {
			st = hv_ticker_start(&rs->rs_retention,
			    (uint64_t) rs->rs_retention_every_s * 1000, true, retention_round, rs);
		}
		pthread_mutex_unlock(&rs->rs_lock);
		if (st != HV_OK) {
			goto out;
		}
	}
	*out = rs;
	rs   = NULL;
	st   = HV_OK;
out:
	ref_close(rs);
	return (st);
}

void
ref_stop(ref_service *rs)
{
	hv_ticker *bg, *ret;

	if (rs == NULL) {
		return;
	}
	if (rs->rs_sub_open) {
		/* Closing completes the pending receive with NNG_ECLOSED; freeing the aio waits for
		 * its callback. */
		nng_close(rs->rs_sub);
		rs->rs_sub_open = false;
	}
	if (rs->rs_sub_aio != NULL) {
		nng_aio_free(rs->rs_sub_aio);
		rs->rs_sub_aio = NULL;
	}
	if (!rs->rs_sync_init) {
		return;
	}
	pthread_mutex_lock(&rs->rs_lock);
	rs->rs_stopping  = true;
	bg               = rs->rs_bg;
	ret              = rs->rs_retention;
	rs->rs_bg        = NULL;
	rs->rs_retention = NULL;
	pthread_mutex_unlock(&rs->rs_lock);
	hv_ticker_stop(bg);
	hv_ticker_stop(ret);
}

void
ref_close(ref_service *rs)
{
	if (rs == NULL) {
		return;
	}
	ref_stop(rs);
	if (rs->rs_pub_open) {
		nng_close(rs->rs_pub);
		rs->rs_pub_open = false;
	}
	if (rs->rs_sync_init) {
		pthread_mutex_destroy(&rs->rs_lock);
	}
	free(rs);
}
