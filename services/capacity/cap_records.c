/*
 * cap_records.c - the capacity registry's records: reading and writing organisations and
 * services, the brief table beside cap.services, adding an organisation or a service with its
 * checks, and the reads other services call inside their own transactions (one service, every
 * service of a type, the aggregate grid). The store functions of holds are in cap_holds.c,
 * opening, notifications and the expiry job in capacity.c; the brief of a record, its
 * freshness and the registry's clock below all of them in cap_brief.c.
 *
 * Every change of a service goes through cap_put_service, which writes the Service, its
 * brief and its routing index entry (cap_index.c) in the same transaction, so they never
 * disagree in any snapshot.
 */
#include "cap_index.h"
#include "cap_records.h"

#include "haven/clock.h"
#include "haven/ids.h"
#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
brief_fresh(const cap_brief *b, int64_t now_ms)
{
	return (now_ms - (int64_t) b->b_updated_ms <= (int64_t) b->b_report_interval_s * 1000);
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
	cap_brief   b, old;
	bool        had;
	const void *v;
	size_t      vl, n = strlen(svc->id);
	hv_status   st;

	cap_brief_of(cs, svc, &b);
	/* The brief before the change says where the routing index has the service now. */
	st = store_get(txn, cs->cs_brief, svc->id, n, &v, &vl);
	if (st != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	if ((had = st == HV_OK) && (st = brief_load(v, vl, &old)) != HV_OK) {
		return (st);
	}
	if ((st = store_put_msg(txn, cs->cs_services, svc->id, n, &svc->base)) != HV_OK ||
	    (st = cap_route_update(cs, txn, had ? &old : NULL, svc, &b)) != HV_OK) {
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
			snprintf(err, errsz,
			    "the certificate is registered to organisation %s already", o->id);
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
cap_add_organisation(cap_service *cs, store_txn *txn, const Haven__Capacity__V1__Organisation *org,
    char *err, size_t errsz)
{
	Haven__Capacity__V1__Organisation o;
	char                              fp[65];
	hv_status                         st;

	if ((st = cap_check_org(cs, org, fp, err, errsz)) != HV_OK) {
		return (st);
	}
	if (fp[0] != '\0' &&
	    (st = cap_check_cert(cs, org->id, org->cert_pem, cap_now_ms(cs) / 1000, err, errsz)) !=
	        HV_OK) {
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
	st              = store_get(txn, cs->cs_orgs, o.id, strlen(o.id), NULL, NULL);
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
	if ((st = cap_org_may_run(org, svc->type, err, errsz)) != HV_OK) {
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
	s      = *svc; /* shallow: the strings and lists stay the caller's */
	s.id   = id;
	s.name = svc->name != NULL && svc->name[0] != '\0' ? svc->name : id;
	s.unit = svc->unit != NULL && svc->unit[0] != '\0' ? svc->unit : CAP_UNIT_DEFAULT;
	s.report_interval_s =
	    svc->report_interval_s != 0 ? svc->report_interval_s : CAP_INTERVAL_DEFAULT_S;
	s.held       = 0;
	s.retired    = false;
	s.pending    = false; /* the caller decides (RegisterService: cap_rpc_services.c) */
	s.version    = 1;
	s.updated_ms = (uint64_t) now; /* registering states the figure: a confirmation */
	s.created_ms = (uint64_t) now;
	st           = cap_put_service(cs, txn, &s);
out:
	if (org != NULL) {
		haven__capacity__v1__organisation__free_unpacked(org, NULL);
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
		st = store_get_msg(txn, cs->cs_services, k, kl,
		    &haven__capacity__v1__service__descriptor, NULL, (ProtobufCMessage **) &svc);
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
cap_summary(cap_service *cs, store_txn *txn, uint64_t region_mask, int64_t now_ms, cap_cell **cells,
    size_t *n)
{
	size_t        nreg  = region_map_count(cs->cs_regions);
	size_t        ncell = nreg * CAP_TYPES * CAP_POPULATIONS;
	grid_cell    *grid  = NULL;
	cap_cell     *out   = NULL;
	store_cursor *c     = NULL;
	size_t        used  = 0;
	const void   *v;
	size_t        vl;
	hv_status     st = HV_RESOURCE_EXHAUSTED;

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
		out[used].cc_region = (unsigned) (i / (CAP_TYPES * CAP_POPULATIONS));
		out[used].cc_type =
		    (Haven__Capacity__V1__ServiceType) ((i / CAP_POPULATIONS) % CAP_TYPES);
		out[used].cc_population = (Haven__Capacity__V1__Population) (i % CAP_POPULATIONS);
		out[used].cc_services   = grid[i].g_services;
		out[used].cc_maximum    = grid[i].g_maximum;
		out[used].cc_free       = grid[i].g_free;
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
