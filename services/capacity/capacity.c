/*
 * capacity.c - the capacity registry's store side: opening the tables (and rebuilding the
 * brief table when the region map changed), the partner directory lookup for auth, the store
 * functions other services call inside their own write transactions (add, hold, release,
 * confirm, expire, read, iterate, aggregate), change notifications on the pub socket, and the
 * thread that expires holds. The RPC handlers are in cap_rpc.c, the checks in cap_check.c.
 *
 * Every change of a service goes through cap_put_service, which writes the Service and its
 * brief in the same transaction, so the two never disagree in any snapshot. Holds change
 * `held` (and confirm `available`) of their service in the transaction that creates or ends
 * them; with the checks below that keeps 0 <= held <= available <= maximum.
 */
#include "cap_internal.h"

#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/ids.h"
#include "haven/crypto.h"
#include "haven/log.h"

#include <errno.h>
#include <nng/protocol/pubsub0/pub.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define META_BRIEF_REGIONS "brief_regions"
#define TOPIC              "capacity."
#define EXPIRE_BATCH       64   /* holds released per transaction by the expiry thread */
#define EXPIRE_EVERY_MS    1000
#define HOLD_EXP_KEY_MAX   (8 + CAP_ID_MAX)

/* ---- small helpers ------------------------------------------------------------------ */

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

static bool
brief_fresh(const cap_brief *b, int64_t now_ms)
{
	return (now_ms - (int64_t) b->b_updated_ms <= (int64_t) b->b_report_interval_s * 1000);
}

/* cap.hold_exp key: be64(expires_ms) || hold id. Returns its length. */
static size_t
hold_exp_key(uint8_t key[HOLD_EXP_KEY_MAX], uint64_t expires_ms, const char *hold_id)
{
	size_t n = strlen(hold_id);

	hv_put_be64(key, expires_ms);
	memcpy(key + 8, hold_id, n);
	return (8 + n);
}

/* The SHA-256 of the region names in map order: what the brief's region indices mean. */
static void
region_fingerprint(const region_map *m, uint8_t out[CRYPTO_SHA256_LEN])
{
	char   buf[REGIONS_MAX * REGION_NAME_MAX];
	size_t n = 0;

	for (size_t i = 0; i < region_map_count(m); i++) {
		const char *name = region_map_name(m, i);
		size_t      len  = strlen(name);
		memcpy(buf + n, name, len);
		n += len;
		buf[n++] = '\n';
	}
	crypto_sha256(out, buf, n);
}

static void
brief_of(const cap_service *cs, const Haven__Capacity__V1__Service *svc, cap_brief *b)
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

/* Copies a brief value out of the map. HV_DATA_LOSS when it has the wrong size. */
static hv_status
brief_load(const void *v, size_t vl, cap_brief *b)
{
	if (vl != sizeof(*b)) {
		return (HV_DATA_LOSS);
	}
	memcpy(b, v, sizeof(*b));
	return (HV_OK);
}

/* ---- records ------------------------------------------------------------------------ */

hv_status
cap_read_org(cap_service *cs, store_txn *txn, const char *id, ProtobufCAllocator *alloc,
    Haven__Capacity__V1__Organisation **out)
{
	*out = NULL;
	if (!ids_valid(id)) {
		return (HV_NOT_FOUND);
	}
	return (store_get_msg(txn, cs->cs_orgs, id, strlen(id),
	    &haven__capacity__v1__organisation__descriptor, alloc, (ProtobufCMessage **) out));
}

hv_status
cap_read_service(cap_service *cs, store_txn *txn, const char *id, ProtobufCAllocator *alloc,
    Haven__Capacity__V1__Service **out)
{
	*out = NULL;
	if (!ids_valid(id)) {
		return (HV_NOT_FOUND);
	}
	return (store_get_msg(txn, cs->cs_services, id, strlen(id),
	    &haven__capacity__v1__service__descriptor, alloc, (ProtobufCMessage **) out));
}

hv_status
cap_put_service(cap_service *cs, store_txn *txn, const Haven__Capacity__V1__Service *svc)
{
	cap_brief b;
	size_t    n = strlen(svc->id);
	hv_status st;

	brief_of(cs, svc, &b);
	if ((st = store_put_msg(txn, cs->cs_services, svc->id, n, &svc->base)) != HV_OK) {
		return (st);
	}
	return (store_put(txn, cs->cs_brief, svc->id, n, &b, sizeof(b)));
}

hv_status
cap_put_org(cap_service *cs, store_txn *txn, const Haven__Capacity__V1__Organisation *org)
{
	return (store_put_msg(txn, cs->cs_orgs, org->id, strlen(org->id), &org->base));
}

hv_status
cap_cert_unique(cap_service *cs, store_txn *txn, const char *fingerprint, const char *self_id,
    char *err, size_t errsz)
{
	store_cursor *c  = NULL;
	hv_status     st = HV_INTERNAL;
	const void   *v;
	size_t        vl;

	if (fingerprint == NULL || fingerprint[0] == '\0') {
		return (HV_OK);
	}
	/* The directory holds hundreds of organisations, not millions: a scan is fine. */
	if ((st = store_cursor_open(txn, cs->cs_orgs, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, &v, &vl)) {
		Haven__Capacity__V1__Organisation *o =
		    haven__capacity__v1__organisation__unpack(NULL, vl, v);
		bool taken;

		if (o == NULL) {
			st = HV_DATA_LOSS;
			goto out;
		}
		taken = strcmp(o->cert_sha256, fingerprint) == 0 &&
		    (self_id == NULL || strcmp(o->id, self_id) != 0);
		if (taken) {
			snprintf(err, errsz, "the certificate is registered to organisation %s already",
			    o->id);
		}
		haven__capacity__v1__organisation__free_unpacked(o, NULL);
		if (taken) {
			st = HV_ALREADY_EXISTS;
			goto out;
		}
	}
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
out:
	store_cursor_close(c);
	return (st);
}

hv_status
cap_add_organisation(cap_service *cs, store_txn *txn,
    const Haven__Capacity__V1__Organisation *org, char *err, size_t errsz)
{
	Haven__Capacity__V1__Organisation o;
	char                              fp[65];
	hv_status                         st;

	if ((st = cap_check_org(cs, org, fp, err, errsz)) != HV_OK) {
		return (st);
	}
	if (fp[0] != '\0' &&
	    (st = cap_check_cert(cs, org->id, org->cert_pem, err, errsz)) != HV_OK) {
		return (st);
	}
	if ((st = cap_cert_unique(cs, txn, fp, NULL, err, errsz)) != HV_OK) {
		return (st);
	}
	o               = *org; /* shallow: the strings stay the caller's */
	o.cert_sha256   = fp;
	o.disabled      = false;
	o.version       = 1;
	o.updated_at_ms = (uint64_t) cap_now_ms(cs);
	st = store_get(txn, cs->cs_orgs, o.id, strlen(o.id), NULL, NULL);
	if (st == HV_OK) {
		snprintf(err, errsz, "organisation %s exists already", o.id);
		return (HV_ALREADY_EXISTS);
	}
	if (st != HV_NOT_FOUND) {
		return (st);
	}
	return (cap_put_org(cs, txn, &o));
}

hv_status
cap_add_service(cap_service *cs, store_txn *txn, const Haven__Capacity__V1__Service *svc,
    char id[CAP_ID_MAX], char *err, size_t errsz)
{
	Haven__Capacity__V1__Service       s;
	Haven__Capacity__V1__Organisation *org = NULL;
	int64_t                            now = cap_now_ms(cs);
	hv_status                          st;

	id[0] = '\0';
	if ((st = cap_check_new_service(cs, svc, err, errsz)) != HV_OK) {
		goto out;
	}
	if ((st = cap_read_org(cs, txn, svc->org_id, NULL, &org)) != HV_OK) {
		if (st == HV_NOT_FOUND) {
			snprintf(err, errsz, "no organisation %s", svc->org_id);
		}
		goto out;
	}
	if (org->role != HAVEN__CAPACITY__V1__ROLE__PROVIDER) {
		snprintf(err, errsz, "organisation %s is not a provider", org->id);
		st = HV_FAILED_PRECONDITION;
		goto out;
	}
	if (org->disabled) {
		snprintf(err, errsz, "organisation %s is disabled", org->id);
		st = HV_FAILED_PRECONDITION;
		goto out;
	}
	if (svc->id != NULL && svc->id[0] != '\0') {
		snprintf(id, CAP_ID_MAX, "%s", svc->id);
		st = store_get(txn, cs->cs_services, id, strlen(id), NULL, NULL);
	} else {
		/* 48 random bits: a collision is unlikely, and a retry makes it harmless. */
		st = HV_OK;
		for (int tries = 0; tries < 4 && st == HV_OK; tries++) {
			if ((st = ids_generate(id, CAP_ID_MAX, CAP_SERVICE_ID_PREFIX,
			         CAP_SERVICE_ID_HEX)) != HV_OK) {
				goto out;
			}
			st = store_get(txn, cs->cs_services, id, strlen(id), NULL, NULL);
		}
	}
	if (st == HV_OK) {
		snprintf(err, errsz, "service %s exists already", id);
		st = HV_ALREADY_EXISTS;
		goto out;
	}
	if (st != HV_NOT_FOUND) {
		goto out;
	}
	s                   = *svc; /* shallow: the strings and lists stay the caller's */
	s.id                = id;
	s.name              = svc->name != NULL && svc->name[0] != '\0' ? svc->name : id;
	s.unit              = svc->unit != NULL && svc->unit[0] != '\0' ? svc->unit : CAP_UNIT_DEFAULT;
	s.report_interval_s = svc->report_interval_s != 0 ? svc->report_interval_s
	                                                  : CAP_INTERVAL_DEFAULT_S;
	s.held              = 0;
	s.retired           = false;
	s.pending           = false; /* the caller decides (RegisterService: cap_rpc.c) */
	s.version           = 1;
	s.updated_ms        = (uint64_t) now; /* registering states the figure: a confirmation */
	s.created_ms        = (uint64_t) now;
	st                  = cap_put_service(cs, txn, &s);
out:
	if (org != NULL) {
		haven__capacity__v1__organisation__free_unpacked(org, NULL);
	}
	return (st);
}

/* ---- holds ---------------------------------------------------------------------------- */

hv_status
cap_hold_place(cap_service *cs, store_txn *txn, const char *service_id, uint32_t ttl_s,
    const char *owner, char hold_id[CAP_ID_MAX])
{
	Haven__Capacity__V1__Service *svc = NULL;
	Haven__Capacity__V1__Hold     h   = HAVEN__CAPACITY__V1__HOLD__INIT;
	int64_t                       now = cap_now_ms(cs);
	char                          id[CAP_ID_MAX];
	uint8_t                       key[HOLD_EXP_KEY_MAX];
	hv_status                     st  = HV_INVALID_ARGUMENT;

	if (hold_id != NULL) {
		hold_id[0] = '\0';
	}
	if (cs == NULL || txn == NULL || hold_id == NULL || !ids_valid(service_id) || ttl_s == 0 ||
	    ttl_s > cs->cs_hold_max_ttl_s || !ids_text_ok(owner, 0, CAP_OWNER_MAX)) {
		goto out;
	}
	if ((st = cap_read_service(cs, txn, service_id, NULL, &svc)) != HV_OK) {
		goto out;
	}
	if (svc->retired) {
		st = HV_NOT_FOUND;
		goto out;
	}
	if (svc->pending) {
		st = HV_FAILED_PRECONDITION; /* waits for approval: never held */
		goto out;
	}
	if (cap_free_places(svc, now, NULL) == 0) {
		st = HV_FAILED_PRECONDITION; /* no free place, or the figure is stale */
		goto out;
	}
	h.service_id = svc->id;
	h.created_ms = (uint64_t) now;
	h.expires_ms = (uint64_t) now + (uint64_t) ttl_s * 1000;
	h.owner      = owner != NULL ? (char *) owner : "";
	st           = HV_OK;
	for (int tries = 0; tries < 4 && st == HV_OK; tries++) {
		if ((st = ids_generate(id, sizeof(id), CAP_HOLD_ID_PREFIX, CAP_HOLD_ID_HEX)) != HV_OK) {
			goto out;
		}
		st = store_get(txn, cs->cs_holds, id, strlen(id), NULL, NULL);
	}
	if (st != HV_NOT_FOUND) {
		st = st == HV_OK ? HV_ALREADY_EXISTS : st;
		goto out;
	}
	h.id = id;
	if ((st = store_put_msg(txn, cs->cs_holds, id, strlen(id), &h.base)) != HV_OK ||
	    (st = store_put(txn, cs->cs_hold_exp, key, hold_exp_key(key, h.expires_ms, id), "", 0)) !=
	        HV_OK) {
		goto out;
	}
	svc->held++;
	svc->version++;
	if ((st = cap_put_service(cs, txn, svc)) != HV_OK) {
		goto out;
	}
	memcpy(hold_id, id, sizeof(id));
out:
	if (svc != NULL) {
		haven__capacity__v1__service__free_unpacked(svc, NULL);
	}
	return (st);
}

/*
 * Ends a hold: deletes it and its expiry entry and gives its place back (release) or keeps
 * it taken (confirm: available and held both drop). service_id (may be NULL) receives the
 * service's id, for a notification after the commit.
 */
static hv_status
hold_end(cap_service *cs, store_txn *txn, const char *hold_id, bool confirm,
    char service_id[CAP_ID_MAX])
{
	Haven__Capacity__V1__Hold    *h   = NULL;
	Haven__Capacity__V1__Service *svc = NULL;
	uint8_t                       key[HOLD_EXP_KEY_MAX];
	hv_status                     st  = HV_NOT_FOUND;

	if (service_id != NULL) {
		service_id[0] = '\0';
	}
	if (cs == NULL || txn == NULL) {
		st = HV_INVALID_ARGUMENT;
		goto out;
	}
	if (!ids_valid(hold_id)) {
		goto out;
	}
	if ((st = store_get_msg(txn, cs->cs_holds, hold_id, strlen(hold_id),
	         &haven__capacity__v1__hold__descriptor, NULL, (ProtobufCMessage **) &h)) != HV_OK) {
		goto out;
	}
	if ((st = store_del(txn, cs->cs_holds, hold_id, strlen(hold_id))) != HV_OK) {
		goto out;
	}
	st = store_del(txn, cs->cs_hold_exp, key, hold_exp_key(key, h->expires_ms, hold_id));
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	/* Services are retired, never deleted: a hold whose service is gone, or that its
	 * service does not count, means the store is damaged. */
	st = cap_read_service(cs, txn, h->service_id, NULL, &svc);
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	if (st == HV_NOT_FOUND || svc->held == 0 || svc->available == 0) {
		log_error("hold %s: its service %s is missing or holds no place", hold_id,
		    h->service_id);
		st = HV_DATA_LOSS;
		goto out;
	}
	svc->held--;
	if (confirm) {
		svc->available--;
		svc->occupied++; /* the placement's place, until cap_place_release */
	}
	svc->version++;
	if ((st = cap_put_service(cs, txn, svc)) != HV_OK) {
		goto out;
	}
	if (service_id != NULL) {
		snprintf(service_id, CAP_ID_MAX, "%s", svc->id);
	}
out:
	if (h != NULL) {
		haven__capacity__v1__hold__free_unpacked(h, NULL);
	}
	if (svc != NULL) {
		haven__capacity__v1__service__free_unpacked(svc, NULL);
	}
	return (st);
}

hv_status
cap_hold_release(cap_service *cs, store_txn *txn, const char *hold_id)
{
	return (hold_end(cs, txn, hold_id, false, NULL));
}

hv_status
cap_hold_confirm(cap_service *cs, store_txn *txn, const char *hold_id)
{
	return (hold_end(cs, txn, hold_id, true, NULL));
}

hv_status
cap_no_room(cap_service *cs, store_txn *txn, const char *service_id)
{
	Haven__Capacity__V1__Service *svc = NULL;
	hv_status                     st;

	if ((st = cap_read_service(cs, txn, service_id, NULL, &svc)) != HV_OK) {
		return (st);
	}
	if (svc->available > svc->held) {
		svc->available = svc->held;
		svc->version++;
		st = cap_put_service(cs, txn, svc);
	}
	haven__capacity__v1__service__free_unpacked(svc, NULL);
	return (st);
}

hv_status
cap_place_release(cap_service *cs, store_txn *txn, const char *service_id, bool *freed)
{
	Haven__Capacity__V1__Service *svc = NULL;
	hv_status                     st;

	*freed = false;
	if ((st = cap_read_service(cs, txn, service_id, NULL, &svc)) != HV_OK) {
		return (st);
	}
	if (svc->occupied == 0) {
		goto out; /* a stock-take counted it free already */
	}
	svc->occupied--;
	if (svc->available + svc->occupied < svc->maximum) {
		svc->available++;
		*freed = true;
	}
	svc->version++;
	st = cap_put_service(cs, txn, svc);
out:
	haven__capacity__v1__service__free_unpacked(svc, NULL);
	return (st);
}

/*
 * Releases up to max holds whose expiry is at or before now_ms, oldest first. *released
 * counts them; changed (max entries, may be NULL) receives their services' ids. *more is set
 * when expired holds remain.
 */
static hv_status
expire_some(cap_service *cs, store_txn *txn, int64_t now_ms, unsigned max, unsigned *released,
    char (*changed)[CAP_ID_MAX], bool *more)
{
	uint8_t       keys[EXPIRE_BATCH][HOLD_EXP_KEY_MAX];
	size_t        klens[EXPIRE_BATCH];
	unsigned      n = 0;
	store_cursor *c = NULL;
	const void   *k;
	size_t        kl;
	hv_status     st;

	*released = 0;
	*more     = false;
	if (max > EXPIRE_BATCH) {
		max = EXPIRE_BATCH;
	}
	/* Collect first, then end the holds: hold_end writes the table the cursor walks. */
	if ((st = store_cursor_open(txn, cs->cs_hold_exp, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		if (kl < 9 || kl > HOLD_EXP_KEY_MAX - 1) {
			st = HV_DATA_LOSS;
			goto out;
		}
		if ((int64_t) hv_get_be64(k) > now_ms) {
			break;
		}
		if (n == max) {
			*more = true;
			break;
		}
		memcpy(keys[n], k, kl);
		klens[n++] = kl;
	}
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	store_cursor_close(c);
	c = NULL;
	for (unsigned i = 0; i < n; i++) {
		char id[CAP_ID_MAX];

		memcpy(id, keys[i] + 8, klens[i] - 8);
		id[klens[i] - 8] = '\0';
		st = hold_end(cs, txn, id, false, changed != NULL ? changed[*released] : NULL);
		if (st == HV_NOT_FOUND) {
			/* An expiry entry without its hold: drop it so it is not seen again. */
			log_warn("hold %s in the expiry index does not exist", id);
			if ((st = store_del(txn, cs->cs_hold_exp, keys[i], klens[i])) != HV_OK) {
				goto out;
			}
			continue;
		}
		if (st != HV_OK) {
			goto out;
		}
		(*released)++;
	}
	st = HV_OK;
out:
	store_cursor_close(c);
	return (st);
}

hv_status
cap_expire_holds(cap_service *cs, store_txn *txn, int64_t now_ms, unsigned *released)
{
	unsigned  total = 0;
	unsigned  n;
	bool      more = true;
	hv_status st   = HV_OK;

	if (cs == NULL || txn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	while (more) {
		if ((st = expire_some(cs, txn, now_ms, EXPIRE_BATCH, &n, NULL, &more)) != HV_OK) {
			break;
		}
		total += n;
	}
	if (released != NULL) {
		*released = total;
	}
	return (st);
}

/* ---- reads ---------------------------------------------------------------------------- */

hv_status
cap_get_service(cap_service *cs, store_txn *txn, const char *service_id,
    Haven__Capacity__V1__Service **out)
{
	if (out == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if (cs == NULL || txn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	return (cap_read_service(cs, txn, service_id, NULL, out));
}

hv_status
cap_foreach_service(cap_service *cs, store_txn *txn, Haven__Capacity__V1__ServiceType type,
    cap_service_fn fn, void *arg)
{
	store_cursor *c   = NULL;
	int64_t       now = cap_now_ms(cs);
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st;

	if (cs == NULL || txn == NULL || fn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = store_cursor_open(txn, cs->cs_brief, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		Haven__Capacity__V1__Service *svc;
		cap_brief                     b;
		int                           stop;

		if ((st = brief_load(v, vl, &b)) != HV_OK) {
			goto out;
		}
		if (b.b_retired || b.b_pending || (type != 0 && b.b_type != (uint8_t) type)) {
			continue;
		}
		st = store_get_msg(txn, cs->cs_services, k, kl, &haven__capacity__v1__service__descriptor,
		    NULL, (ProtobufCMessage **) &svc);
		if (st != HV_OK) {
			st = st == HV_NOT_FOUND ? HV_DATA_LOSS : st;
			goto out;
		}
		stop = fn(arg, svc, cap_service_fresh(svc, now));
		haven__capacity__v1__service__free_unpacked(svc, NULL);
		if (stop != 0) {
			break;
		}
	}
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
out:
	store_cursor_close(c);
	return (st);
}

/* One cell of the summary grid while it is summed. */
typedef struct grid_cell {
	uint32_t g_services;
	uint32_t g_maximum;
	uint32_t g_free;
	uint32_t g_stale;
} grid_cell;

hv_status
cap_summary(cap_service *cs, store_txn *txn, uint64_t region_mask, int64_t now_ms,
    cap_cell **cells, size_t *n)
{
	size_t        nreg  = region_map_count(cs->cs_regions);
	size_t        ncell = nreg * CAP_TYPES * CAP_POPULATIONS;
	grid_cell    *grid  = NULL;
	cap_cell     *out   = NULL;
	store_cursor *c     = NULL;
	size_t        used  = 0;
	const void   *v;
	size_t        vl;
	hv_status     st    = HV_RESOURCE_EXHAUSTED;

	*cells = NULL;
	*n     = 0;
	if (ncell == 0) {
		return (HV_OK);
	}
	if ((grid = calloc(ncell, sizeof(*grid))) == NULL) {
		goto out;
	}
	if ((st = store_cursor_open(txn, cs->cs_brief, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, &v, &vl)) {
		cap_brief  b;
		grid_cell *row;
		bool       fresh;
		uint32_t   free_places;

		if ((st = brief_load(v, vl, &b)) != HV_OK) {
			goto out;
		}
		if (b.b_retired || b.b_pending || b.b_region >= nreg || b.b_type >= CAP_TYPES ||
		    (region_mask != 0 && (region_mask & ((uint64_t) 1 << b.b_region)) == 0)) {
			continue;
		}
		fresh       = brief_fresh(&b, now_ms);
		free_places = fresh && b.b_available > b.b_held ? b.b_available - b.b_held : 0;
		row         = grid + ((size_t) b.b_region * CAP_TYPES + b.b_type) * CAP_POPULATIONS;
		for (unsigned p = 1; p < CAP_POPULATIONS; p++) {
			if ((b.b_populations & (1u << p)) == 0) {
				continue;
			}
			row[p].g_services++;
			row[p].g_maximum += b.b_maximum;
			row[p].g_free += free_places;
			row[p].g_stale += fresh ? 0 : 1;
		}
	}
	if (st != HV_NOT_FOUND) {
		goto out;
	}
	for (size_t i = 0; i < ncell; i++) {
		used += grid[i].g_services > 0;
	}
	st = HV_OK;
	if (used == 0) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((out = calloc(used, sizeof(*out))) == NULL) {
		goto out;
	}
	used = 0;
	for (size_t i = 0; i < ncell; i++) {
		if (grid[i].g_services == 0) {
			continue;
		}
		out[used].cc_region         = (unsigned) (i / (CAP_TYPES * CAP_POPULATIONS));
		out[used].cc_type           = (Haven__Capacity__V1__ServiceType) (
		    (i / CAP_POPULATIONS) % CAP_TYPES);
		out[used].cc_population     = (Haven__Capacity__V1__Population) (i % CAP_POPULATIONS);
		out[used].cc_services       = grid[i].g_services;
		out[used].cc_maximum        = grid[i].g_maximum;
		out[used].cc_free           = grid[i].g_free;
		out[used].cc_stale_services = grid[i].g_stale;
		used++;
	}
	*cells = out;
	*n     = used;
	out    = NULL;
	st     = HV_OK;
out:
	store_cursor_close(c);
	free(grid);
	free(out);
	return (st);
}

/* ---- the partner directory for auth ------------------------------------------------- */

hv_status
cap_lookup_org(void *arg, const char *org_id, auth_org *out)
{
	cap_service                       *cs  = arg;
	store_txn                         *txn = NULL;
	Haven__Capacity__V1__Organisation *org = NULL;
	hv_status                          st;

	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		goto out;
	}
	st = cap_read_org(cs, txn, org_id, NULL, &org);
	store_read_end(txn);
	if (st != HV_OK) {
		goto out;
	}
	out->role         = cap_role_to_rpc(org->role);
	out->enabled      = !org->disabled;
	out->version      = org->version;
	out->cert_pem     = NULL;
	out->cert_pem_len = 0;
	snprintf(out->cert_sha256, sizeof(out->cert_sha256), "%s",
	    org->cert_sha256 != NULL ? org->cert_sha256 : "");
	if (org->cert_pem != NULL && org->cert_pem[0] != '\0') {
		if ((out->cert_pem = strdup(org->cert_pem)) == NULL) {
			st = HV_RESOURCE_EXHAUSTED;
			goto out;
		}
		out->cert_pem_len = strlen(out->cert_pem);
	}
	st = HV_OK;
out:
	if (org != NULL) {
		haven__capacity__v1__organisation__free_unpacked(org, NULL);
	}
	return (st);
}

rpc_role
cap_org_role(void *arg, const char *org_id)
{
	cap_service                       *cs  = arg;
	store_txn                         *txn = NULL;
	Haven__Capacity__V1__Organisation *org = NULL;
	rpc_role                           role = 0;

	if (store_read_begin(cs->cs_store, &txn) != HV_OK) {
		return (0);
	}
	if (cap_read_org(cs, txn, org_id, NULL, &org) == HV_OK) {
		role = org->disabled ? 0 : cap_role_to_rpc(org->role);
		haven__capacity__v1__organisation__free_unpacked(org, NULL);
	}
	store_read_end(txn);
	return (role);
}

hv_status
cap_foreach_org(cap_service *cs, store_txn *txn, cap_org_fn fn, void *arg)
{
	store_cursor *c = NULL;
	const void   *v;
	size_t        vl;
	hv_status     st;

	if ((st = store_cursor_open(txn, cs->cs_orgs, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, &v, &vl)) {
		Haven__Capacity__V1__Organisation *o = haven__capacity__v1__organisation__unpack(NULL, vl, v);
		int                                stop;

		if (o == NULL) {
			st = HV_DATA_LOSS;
			break;
		}
		stop = fn(arg, o);
		haven__capacity__v1__organisation__free_unpacked(o, NULL);
		if (stop != 0) {
			st = HV_OK;
			break;
		}
	}
	store_cursor_close(c);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

/* ---- change notifications ----------------------------------------------------------- */

void
cap_publish_change(cap_service *cs, const Haven__Capacity__V1__Service *svc)
{
	Haven__Capacity__V1__CapacityChanged m = HAVEN__CAPACITY__V1__CAPACITY_CHANGED__INIT;
	uint8_t                              stack[512];
	uint8_t                             *buf = stack;
	size_t                               n;
	int                                  rv;

	if (cs == NULL || svc == NULL || !cs->cs_pub_open) {
		return;
	}
	m.service_id   = svc->id;
	m.type         = svc->type;
	m.service_area = svc->service_area;
	m.free         = cap_free_places(svc, cap_now_ms(cs), NULL);
	m.version      = svc->version;
	n              = sizeof(TOPIC) - 1 + haven__capacity__v1__capacity_changed__get_packed_size(&m);
	if (n > sizeof(stack) && (buf = malloc(n)) == NULL) {
		return;
	}
	memcpy(buf, TOPIC, sizeof(TOPIC) - 1);
	haven__capacity__v1__capacity_changed__pack(&m, buf + sizeof(TOPIC) - 1);
	/* A notification is a hint to react sooner; it is never waited for. */
	if ((rv = nng_send(cs->cs_pub, buf, n, NNG_FLAG_NONBLOCK)) != 0 && rv != NNG_EAGAIN) {
		log_debug("capacity: publishing a change of %s: %s", svc->id, nng_strerror(rv));
	}
	if (buf != stack) {
		free(buf);
	}
}

void
cap_publish_id(cap_service *cs, const char *service_id)
{
	store_txn                    *txn = NULL;
	Haven__Capacity__V1__Service *svc = NULL;

	if (cs == NULL || !cs->cs_pub_open || store_read_begin(cs->cs_store, &txn) != HV_OK) {
		return;
	}
	(void) cap_read_service(cs, txn, service_id, NULL, &svc);
	store_read_end(txn);
	if (svc != NULL) {
		cap_publish_change(cs, svc);
		haven__capacity__v1__service__free_unpacked(svc, NULL);
	}
}

/* ---- the expiry thread ---------------------------------------------------------------- */

typedef struct expire_job {
	cap_service *ej_cs;
	int64_t      ej_now;
	unsigned     ej_released;
	bool         ej_more;
	char         ej_changed[EXPIRE_BATCH][CAP_ID_MAX];
} expire_job;

static hv_status
expire_fn(store_txn *txn, void *arg)
{
	expire_job *j = arg;

	return (expire_some(j->ej_cs, txn, j->ej_now, EXPIRE_BATCH, &j->ej_released, j->ej_changed,
	    &j->ej_more));
}

/* Whether any hold has expired by now_ms: a read, so that idle rounds take no write lock. */
static bool
expiry_due(cap_service *cs, int64_t now_ms)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	const void   *k;
	size_t        kl;
	bool          due = false;

	if (store_read_begin(cs->cs_store, &txn) != HV_OK) {
		return (false);
	}
	if (store_cursor_open(txn, cs->cs_hold_exp, &c) == HV_OK &&
	    store_cursor_seek(c, NULL, 0, &k, &kl, NULL, NULL) == HV_OK && kl >= 8) {
		due = (int64_t) hv_get_be64(k) <= now_ms;
	}
	store_cursor_close(c);
	store_read_end(txn);
	return (due);
}

/* One round: releases every expired hold, a batch per transaction, and announces the
 * services that got places back once each batch has committed. */
static void
expire_round(void *arg)
{
	cap_service *cs = arg;
	expire_job  *j;
	hv_status   st;

	if (!expiry_due(cs, cap_now_ms(cs)) || (j = malloc(sizeof(*j))) == NULL) {
		return;
	}
	j->ej_cs = cs;
	do {
		j->ej_now = cap_now_ms(cs);
		if ((st = store_write(cs->cs_store, expire_fn, j)) != HV_OK) {
			log_warn("capacity: expiring holds failed: %s", hv_status_name(st));
			break;
		}
		if (j->ej_released > 0) {
			log_info("capacity: %u expired holds released", j->ej_released);
		}
		for (unsigned i = 0; i < j->ej_released; i++) {
			cap_publish_id(cs, j->ej_changed[i]);
		}
	} while (j->ej_more);
	free(j);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

/* Rebuilds cap.brief from cap.services for the current region map, and records the map. */
static hv_status
brief_rebuild_fn(store_txn *txn, void *arg)
{
	cap_service  *cs = arg;
	store_cursor *c  = NULL;
	uint8_t       fp[CRYPTO_SHA256_LEN];
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st;

	if ((st = store_cursor_open(txn, cs->cs_brief, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, NULL, NULL)) {
		if ((st = store_cursor_del(c)) != HV_OK) {
			goto out;
		}
	}
	store_cursor_close(c);
	if ((st = store_cursor_open(txn, cs->cs_services, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		Haven__Capacity__V1__Service *svc = haven__capacity__v1__service__unpack(NULL, vl, v);
		cap_brief                     b;

		if (svc == NULL) {
			st = HV_DATA_LOSS;
			goto out;
		}
		brief_of(cs, svc, &b);
		if (b.b_region == CAP_REGION_NONE && !svc->retired) {
			log_warn("service %s: its region is not in the region map; it is left out of "
			         "summaries and region searches",
			    svc->id);
		}
		haven__capacity__v1__service__free_unpacked(svc, NULL);
		if ((st = store_put(txn, cs->cs_brief, k, kl, &b, sizeof(b))) != HV_OK) {
			goto out;
		}
	}
	if (st != HV_NOT_FOUND) {
		goto out;
	}
	region_fingerprint(cs->cs_regions, fp);
	st = store_put(txn, cs->cs_meta, META_BRIEF_REGIONS, sizeof(META_BRIEF_REGIONS) - 1, fp,
	    sizeof(fp));
out:
	store_cursor_close(c);
	return (st);
}

/* Whether cap.brief was built with the current region map. */
static hv_status
brief_current(cap_service *cs, bool *current)
{
	store_txn  *txn = NULL;
	uint8_t     fp[CRYPTO_SHA256_LEN];
	const void *v;
	size_t      vl;
	hv_status   st;

	*current = false;
	region_fingerprint(cs->cs_regions, fp);
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_get(txn, cs->cs_meta, META_BRIEF_REGIONS, sizeof(META_BRIEF_REGIONS) - 1, &v, &vl);
	*current = st == HV_OK && vl == sizeof(fp) && memcmp(v, fp, sizeof(fp)) == 0;
	store_read_end(txn);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

hv_status
cap_open(cap_service **out, const cap_options *opts)
{
	static const struct {
		const char *name;
		size_t      offset;
	} tables[] = {
		{ "cap.orgs", offsetof(cap_service, cs_orgs) },
		{ "cap.services", offsetof(cap_service, cs_services) },
		{ "cap.brief", offsetof(cap_service, cs_brief) },
		{ "cap.holds", offsetof(cap_service, cs_holds) },
		{ "cap.hold_exp", offsetof(cap_service, cs_hold_exp) },
		{ "cap.meta", offsetof(cap_service, cs_meta) },
	};
	cap_service *cs = NULL;
	bool         current;
	hv_status    st = HV_INVALID_ARGUMENT;
	int          rv;

	if (out != NULL) {
		*out = NULL;
	}
	if (out == NULL || opts == NULL || opts->store == NULL || opts->regions == NULL) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((cs = calloc(1, sizeof(*cs))) == NULL) {
		goto out;
	}
	cs->cs_store          = opts->store;
	cs->cs_regions        = opts->regions;
	cs->cs_ca_file        = opts->ca_file;
	cs->cs_hold_max_ttl_s = opts->hold_max_ttl_s != 0 ? opts->hold_max_ttl_s
	                                                  : CAP_HOLD_TTL_DEFAULT_S;
	cs->cs_approval_places = opts->approval_places != 0 ? opts->approval_places
	                                                    : CAP_APPROVAL_PLACES_DEFAULT;
	cs->cs_now            = opts->now_ms;
	cs->cs_now_arg        = opts->now_arg;

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		store_table *t = (store_table *) (void *) ((char *) cs + tables[i].offset);
		if ((st = store_table_open(cs->cs_store, tables[i].name, t)) != HV_OK) {
			log_error("capacity: cannot open table %s: %s", tables[i].name,
			    hv_status_name(st));
			goto out;
		}
	}
	if ((st = brief_current(cs, &current)) != HV_OK) {
		goto out;
	}
	if (!current) {
		log_info("capacity: building the brief table for this region map");
		if ((st = store_write(cs->cs_store, brief_rebuild_fn, cs)) != HV_OK) {
			log_error("capacity: cannot build the brief table: %s", hv_status_name(st));
			goto out;
		}
	}

	if (opts->pub_url != NULL && opts->pub_url[0] != '\0') {
		if ((rv = nng_pub0_open(&cs->cs_pub)) != 0) {
			st = hv_status_from_nng(rv);
			goto out;
		}
		cs->cs_pub_open = true;
		if ((rv = nng_listen(cs->cs_pub, opts->pub_url, NULL, 0)) != 0) {
			log_error("capacity: cannot publish on %s: %s", opts->pub_url, nng_strerror(rv));
			st = rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? HV_INVALID_ARGUMENT
			                                                : hv_status_from_nng(rv);
			goto out;
		}
	}

	if (!opts->manual_expiry &&
	    (st = hv_ticker_start(&cs->cs_expiry, EXPIRE_EVERY_MS, true, expire_round, cs)) !=
	        HV_OK) {
		goto out;
	}
	*out = cs;
	cs   = NULL;
	st   = HV_OK;
out:
	cap_close(cs);
	return (st);
}

void
cap_stop(cap_service *cs)
{
	if (cs == NULL) {
		return;
	}
	hv_ticker_stop(cs->cs_expiry);
	cs->cs_expiry = NULL;
}

void
cap_close(cap_service *cs)
{
	if (cs == NULL) {
		return;
	}
	cap_stop(cs);
	if (cs->cs_pub_open) {
		nng_close(cs->cs_pub);
		cs->cs_pub_open = false;
	}
	free(cs);
}
