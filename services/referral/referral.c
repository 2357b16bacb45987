/*
 * referral.c - opening and closing the referral service: its tables, the one-time index and
 * text migrations, the pub socket and the subscriptions, and the background jobs (ref_jobs.c,
 * ref_retention.c). The unit of work is in ref_work.c, the key layouts in ref_keys.c, the
 * state machine in ref_need.c, routing in ref_route.c, the RPC handlers in ref_rpc.c.
 */
#include "ref_internal.h"

#include "haven/log.h"

#include <nng/protocol/pubsub0/pub.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The service's settings from opts (defaults for what is 0). */
static void
settings(ref_service *rs, const ref_options *opts)
{
	static const uint32_t default_timeouts[REF_URGENCIES] = { 0, 1800, 14400, 86400 };

	rs->rs_store       = opts->store;
	rs->rs_regions     = opts->regions;
	rs->rs_cap         = opts->capacity;
	rs->rs_alerts      = opts->alerts;
	rs->rs_consent     = opts->consent;
	rs->rs_consent_arg = opts->consent_arg;
	rs->rs_seal        = opts->seal;
	rs->rs_minor       = opts->minor;
	rs->rs_holds       = opts->holds;
	rs->rs_unseal      = opts->unseal;
	rs->rs_now         = opts->now_ms;
	rs->rs_lang_hops   = opts->language_hops == 0         ? REF_LANGUAGE_HOPS_DEFAULT
	      : opts->language_hops == REF_LANGUAGE_HOPS_NONE ? 0
	                                                      : opts->language_hops;
	rs->rs_now_arg     = opts->now_arg;
	rs->rs_hold_max_s = opts->hold_max_ttl_s != 0 ? opts->hold_max_ttl_s : REF_HOLD_MAX_DEFAULT;
	rs->rs_erase      = opts->erase;
	rs->rs_erase_arg  = opts->erase_arg;
	rs->rs_erase_done = opts->erase_done;
	rs->rs_retention_days = opts->retention_days;
	rs->rs_stats_periods  = opts->stats_periods != 0 ? opts->stats_periods : REF_PERIODS_MONTHS;
	rs->rs_retention_every_s =
	    opts->retention_interval_s != 0 ? opts->retention_interval_s : REF_RETENTION_EVERY_S;
	for (int u = 1; u < REF_URGENCIES; u++) {
		uint32_t t =
		    opts->offer_timeout_s[u] != 0 ? opts->offer_timeout_s[u] : default_timeouts[u];
		/* The hold must live as long as the offer: a window is never longer than a hold. */
		rs->rs_window_s[u] = t < rs->rs_hold_max_s ? t : rs->rs_hold_max_s;
	}
}

static hv_status
open_tables(ref_service *rs)
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
	};
	hv_status st;

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		store_table *t = (store_table *) (void *) ((char *) rs + tables[i].offset);
		if ((st = store_table_open(rs->rs_store, tables[i].name, t)) != HV_OK) {
			log_error("referral: cannot open table %s: %s", tables[i].name,
			    hv_status_name(st));
			return (st);
		}
	}
	return (HV_OK);
}

/* Once per store: the closed-referral index and the sealing of older plaintext. */
static hv_status
migrate(ref_service *rs)
{
	hv_status st;

	if ((st = ref_closed_backfill(rs)) != HV_OK) {
		log_error("referral: cannot index the closed referrals: %s", hv_status_name(st));
		return (st);
	}
	if ((st = ref_text_migrate(rs)) != HV_OK) {
		log_error("referral: cannot seal the free text of stored referrals: %s",
		    hv_status_name(st));
	}
	return (st);
}

static hv_status
open_pub(ref_service *rs, const char *url)
{
	int rv;

	if ((rv = nng_pub0_open(&rs->rs_pub)) != 0) {
		return (hv_status_from_nng(rv));
	}
	rs->rs_pub_open = true;
	if ((rv = nng_listen(rs->rs_pub, url, NULL, 0)) != 0) {
		log_error("referral: cannot publish on %s: %s", url, nng_strerror(rv));
		return (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? HV_INVALID_ARGUMENT
		                                                  : hv_status_from_nng(rv));
	}
	return (HV_OK);
}

static hv_status
start_jobs(ref_service *rs)
{
	hv_status st;

	pthread_mutex_lock(&rs->rs_lock);
	st = hv_ticker_start(&rs->rs_bg, REF_TICK_MS, true, ref_jobs_round, rs);
	if (st == HV_OK && rs->rs_erase != NULL && rs->rs_retention_days != 0) {
		st = hv_ticker_start(&rs->rs_retention, (uint64_t) rs->rs_retention_every_s * 1000,
		    true, ref_retention_round, rs);
	}
	pthread_mutex_unlock(&rs->rs_lock);
	return (st);
}

hv_status
ref_open(ref_service **out, const ref_options *opts)
{
	ref_service *rs = NULL;
	hv_status    st = HV_INVALID_ARGUMENT;

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
	settings(rs, opts);
	if (pthread_mutex_init(&rs->rs_lock, NULL) != 0) {
		goto out;
	}
	rs->rs_sync_init = true;
	if ((st = open_tables(rs)) != HV_OK) {
		goto out;
	}
	if (opts->store_only) {
		/* Another service's process: the store functions, nothing that runs or writes. */
		*out = rs;
		rs   = NULL;
		goto out;
	}
	if ((st = migrate(rs)) != HV_OK ||
	    (opts->pub_url != NULL && opts->pub_url[0] != '\0' &&
	        (st = open_pub(rs, opts->pub_url)) != HV_OK) ||
	    (st = ref_jobs_subscribe(rs, opts)) != HV_OK ||
	    (!opts->manual && (st = start_jobs(rs)) != HV_OK)) {
		goto out;
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
