/*
 * capacity.c - the capacity service as a process part: opening its tables (and, unless
 * store-only, rebuilding the brief table when the region map changed, the pub socket and the
 * hold-expiry job), the partner directory lookup auth calls, change notifications on the pub
 * socket, and closing. The records are in cap_records.c, holds in cap_holds.c, the checks in
 * cap_check.c and the RPC handlers in cap_rpc*.c.
 */
#include "cap_index.h"
#include "cap_records.h"

#include "haven/bytes.h"
#include "haven/crypto.h"
#include "haven/log.h"

#include <nng/protocol/pubsub0/pub.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The region map cap.brief and cap.route were built with. Named anew when cap.route came, so
 * that a directory made before it gets its routing index built on first open. */
#define META_BRIEF_REGIONS "brief_route_regions"
#define TOPIC              "capacity."
#define EXPIRE_EVERY_MS    1000

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
	cap_service                       *cs   = arg;
	store_txn                         *txn  = NULL;
	Haven__Capacity__V1__Organisation *org  = NULL;
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
		Haven__Capacity__V1__Organisation *o =
		    haven__capacity__v1__organisation__unpack(NULL, vl, v);
		int stop;

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

hv_status
cap_get_org(cap_service *cs, store_txn *txn, const char *org_id, ProtobufCAllocator *alloc,
    Haven__Capacity__V1__Organisation **out)
{
	if (out == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if (cs == NULL || txn == NULL || org_id == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	return (cap_read_org(cs, txn, org_id, alloc, out));
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
	n = sizeof(TOPIC) - 1 + haven__capacity__v1__capacity_changed__get_packed_size(&m);
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
	char         ej_changed[CAP_EXPIRE_BATCH][CAP_ID_MAX];
} expire_job;

static hv_status
expire_fn(store_txn *txn, void *arg)
{
	expire_job *j = arg;

	return (cap_expire_batch(j->ej_cs, txn, j->ej_now, CAP_EXPIRE_BATCH, &j->ej_released,
	    j->ej_changed, &j->ej_more));
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
	hv_status    st;

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

/* Rebuilds cap.brief and cap.route from cap.services for the current region map, and records
 * the map. */
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
	c = NULL;
	if ((st = cap_route_clear(cs, txn)) != HV_OK ||
	    (st = store_cursor_open(txn, cs->cs_services, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		Haven__Capacity__V1__Service *svc =
		    haven__capacity__v1__service__unpack(NULL, vl, v);
		cap_brief b;

		if (svc == NULL) {
			st = HV_DATA_LOSS;
			goto out;
		}
		cap_brief_of(cs, svc, &b);
		if (b.b_region == CAP_REGION_NONE && !svc->retired) {
			log_warn(
			    "service %s: its region is not in the region map; it is left out of "
			    "summaries, region searches and routing",
			    svc->id);
		}
		st = cap_route_update(cs, txn, NULL, svc, &b);
		haven__capacity__v1__service__free_unpacked(svc, NULL);
		if (st != HV_OK) {
			goto out;
		}
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
	st = store_get(txn, cs->cs_meta, META_BRIEF_REGIONS, sizeof(META_BRIEF_REGIONS) - 1, &v,
	    &vl);
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
		{ "cap.route", offsetof(cap_service, cs_route) },
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
	if (out == NULL || opts == NULL || opts->store == NULL || opts->regions == NULL ||
	    (opts->store_only && opts->pub_url != NULL && opts->pub_url[0] != '\0')) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((cs = calloc(1, sizeof(*cs))) == NULL) {
		goto out;
	}
	cs->cs_store   = opts->store;
	cs->cs_regions = opts->regions;
	cs->cs_ca_file = opts->ca_file;
	cs->cs_hold_max_ttl_s =
	    opts->hold_max_ttl_s != 0 ? opts->hold_max_ttl_s : CAP_HOLD_TTL_DEFAULT_S;
	cs->cs_approval_places =
	    opts->approval_places != 0 ? opts->approval_places : CAP_APPROVAL_PLACES_DEFAULT;
	cs->cs_now     = opts->now_ms;
	cs->cs_now_arg = opts->now_arg;

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		store_table *t = (store_table *) (void *) ((char *) cs + tables[i].offset);
		if ((st = store_table_open(cs->cs_store, tables[i].name, t)) != HV_OK) {
			log_error("capacity: cannot open table %s: %s", tables[i].name,
			    hv_status_name(st));
			goto out;
		}
	}
	if (opts->store_only) {
		*out = cs;
		return (HV_OK);
	}
	if ((st = brief_current(cs, &current)) != HV_OK) {
		goto out;
	}
	if (!current) {
		log_info(
		    "capacity: building the brief table and routing index for this region map");
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
			log_error("capacity: cannot publish on %s: %s", opts->pub_url,
			    nng_strerror(rv));
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
