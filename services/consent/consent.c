/*
 * consent.c - the consent service's life cycle: opening the tables, the audit log (verified
 * once at start), the vault and the views, the pub socket and the rotation timer, and closing
 * them. The top of the library: it calls the files below and none calls it
 * (consent_internal.h lists the layers; the handlers are consent_rpc.c's).
 */
#include "consent_rpc.h"
#include "consent_records.h"
#include "consent_view.h"
#include "consent_vault.h"

#include "haven/clock.h"
#include "haven/metrics.h"

#include "haven/log.h"

#include "haven/consent/v1/audit.pb-c.h"

#include <errno.h>
#include <nng/protocol/pubsub0/pub.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TIMER_PERIOD_MAX_S 3600 /* the rotation timer looks at least hourly */

/* ---- rotation timer ------------------------------------------------------------------- */

/* The timer looks every 1/24 of the rotation interval, at least hourly. */
static uint32_t
timer_period_s(const consent_service *cs)
{
	uint32_t period = cs->cs_rotate_s / 24;

	return (period == 0 ? 1 : period > TIMER_PERIOD_MAX_S ? TIMER_PERIOD_MAX_S : period);
}

/* One round of the rotation timer: rotates the key when it is one timer period from the
 * interval, so that no key is ever older than the interval. */
static void
timer_round(void *arg)
{
	consent_service *cs  = arg;
	int64_t          age = ((int64_t) cs->cs_rotate_s - (int64_t) timer_period_s(cs)) * 1000;
	hv_status        st  = vault_rotate(cs, age > 0 ? age : 1, NULL, NULL);

	if (st != HV_OK) {
		log_error("consent: scheduled key rotation failed: %s", hv_status_name(st));
	}
}

/* One round of the expiry sweep (expiry.c; it logs its own failure). */
static void
expiry_round(void *arg)
{
	(void) consent_expiry_sweep(arg, NULL);
}

/* One verification of the whole audit chain (the verify ticker's job: at open, then every
 * CONSENT_AUDIT_VERIFY_S). A break is logged as an error and shown on the metrics page
 * (haven_audit_chain_intact 0); the node keeps serving, because refusing help while the log
 * is broken would be worse. The walk reads every entry, so it runs here and not in
 * consent_open: a node with years of entries starts as fast as a new one. */
static void
verify_round(void *arg)
{
	consent_service    *cs = arg;
	audit_verify_result r;
	int64_t             t0 = hv_clock_mono_ms();
	hv_status           st = audit_verify_until(cs->cs_audit, &cs->cs_verify_stop, &r);

	if (st == HV_CANCELLED) {
		return; /* shutting down: the finding stays what it was */
	}
	atomic_store(&cs->cs_audit_state,
	    st == HV_OK              ? CONSENT_AUDIT_INTACT
	        : st == HV_DATA_LOSS ? CONSENT_AUDIT_BROKEN
	                             : CONSENT_AUDIT_UNREADABLE);
	if (st == HV_OK) {
		log_info("audit: the chain verifies: %llu entries, %llu checkpoints, in %lld ms",
		    (unsigned long long) r.entries, (unsigned long long) r.checkpoints,
		    (long long) (hv_clock_mono_ms() - t0));
	} else if (st == HV_DATA_LOSS) {
		log_error("audit: the chain does not verify: entry %llu: %s (haven audit verify; "
		          "docs/audit.md)",
		    (unsigned long long) r.first_bad_seq, r.why);
	} else {
		log_warn("audit: the chain could not be verified: %s", hv_status_name(st));
	}
}

consent_audit_state
consent_audit_status(consent_service *cs)
{
	return ((consent_audit_state) atomic_load(&cs->cs_audit_state));
}

bool
consent_audit_broken(consent_service *cs)
{
	return (consent_audit_status(cs) == CONSENT_AUDIT_BROKEN);
}

hv_status
consent_open(consent_service **out, const consent_options *o)
{
	consent_service *cs;
	int              rv;
	hv_status        st = HV_INVALID_ARGUMENT;

	*out = NULL;
	if (o == NULL || o->store == NULL || o->data_dir == NULL) {
		return (st);
	}
	if ((cs = calloc(1, sizeof(*cs))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_init(&cs->cs_kmtx, NULL);
	pthread_mutex_init(&cs->cs_rotmtx, NULL);
	cs->cs_store         = o->store;
	cs->cs_now           = o->now_ms;
	cs->cs_now_arg       = o->now_arg;
	cs->cs_org_role      = o->org_role;
	cs->cs_org_arg       = o->org_arg;
	cs->cs_accepting     = o->accepting_provider;
	cs->cs_accepting_arg = o->accepting_arg;
	cs->cs_alerts        = o->alerts;
	cs->cs_erased        = o->subject_erased;
	cs->cs_erased_arg    = o->erased_arg;
	cs->cs_rotate_s      = o->rotate_interval_s != 0 ? o->rotate_interval_s : 86400;
	cs->cs_expiry_s      = o->expiry_sweep_s != 0 ? o->expiry_sweep_s : 60;
	cs->cs_check_async   = o->check_audit_async;

	if ((st = store_table_open(cs->cs_store, "consent.meta", &cs->cs_meta)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.subjects", &cs->cs_subjects)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.personal", &cs->cs_personal)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.records", &cs->cs_records)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.by_subject", &cs->cs_by_subject)) !=
	        HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.subject_gen", &cs->cs_subject_gen)) !=
	        HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.views", &cs->cs_views)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.expiries", &cs->cs_expiries)) != HV_OK ||
	    (st = audit_open(&cs->cs_audit, cs->cs_store, o->data_dir)) != HV_OK) {
		log_error("consent: cannot open the tables: %s", hv_status_name(st));
		goto fail;
	}
	if ((st = vault_open(cs, o->data_dir)) != HV_OK) {
		goto fail;
	}
	if ((st = views_prepare(cs)) != HV_OK) {
		log_error("consent: cannot store the consent views: %s", hv_status_name(st));
		goto fail;
	}
	if ((st = consent_expiry_index_prepare(cs)) != HV_OK) {
		log_error("consent: cannot index the consents' expiry: %s", hv_status_name(st));
		goto fail;
	}
	if ((st = view_cache_open(&cs->cs_cache, VIEW_CACHE_MAX)) != HV_OK) {
		goto fail;
	}
	if (cs->cs_check_async && (st = audit_writer_start(cs->cs_audit)) != HV_OK) {
		goto fail;
	}
	if (o->pub_url != NULL) {
		if ((rv = nng_pub0_open(&cs->cs_pubsock)) != 0) {
			st = hv_status_from_nng(rv);
			goto fail;
		}
		cs->cs_pub_open = true;
		if ((rv = nng_listen(cs->cs_pubsock, o->pub_url, NULL, 0)) != 0) {
			st = hv_status_from_nng(rv);
			log_error("consent: cannot publish on %s: %s", o->pub_url,
			    nng_strerror(rv));
			goto fail;
		}
	}
	if ((st = hv_ticker_start(&cs->cs_timer, (uint64_t) timer_period_s(cs) * 1000, false,
	         timer_round, cs)) != HV_OK ||
	    (st = hv_ticker_start(&cs->cs_expiry, (uint64_t) cs->cs_expiry_s * 1000, false,
	         expiry_round, cs)) != HV_OK ||
	    (st = hv_ticker_start(&cs->cs_verify, (uint64_t) CONSENT_AUDIT_VERIFY_S * 1000, true,
	         verify_round, cs)) != HV_OK) {
		goto fail;
	}
	*out = cs;
	return (HV_OK);
fail:
	consent_close(cs);
	return (st);
}

void
consent_stop(consent_service *cs)
{
	if (cs == NULL) {
		return;
	}
	/* A verification in progress ends at its next look at the flag. */
	atomic_store(&cs->cs_verify_stop, true);
	hv_ticker_stop(cs->cs_verify);
	cs->cs_verify = NULL;
	/* Queued audit entries are written while the store is open. */
	if (cs->cs_audit != NULL) {
		audit_writer_stop(cs->cs_audit);
	}
	hv_ticker_stop(cs->cs_timer);
	cs->cs_timer = NULL;
	hv_ticker_stop(cs->cs_expiry);
	cs->cs_expiry = NULL;
}

void
consent_close(consent_service *cs)
{
	if (cs == NULL) {
		return;
	}
	consent_stop(cs);
	if (cs->cs_pub_open) {
		nng_close(cs->cs_pubsock);
	}
	vault_close(cs);
	view_cache_close(cs->cs_cache);
	audit_close(cs->cs_audit);
	pthread_mutex_destroy(&cs->cs_kmtx);
	pthread_mutex_destroy(&cs->cs_rotmtx);
	free(cs);
}

void
consent_check_cache_stats(consent_service *cs, uint64_t *hits, uint64_t *misses)
{
	view_cache_stats(cs->cs_cache, hits, misses);
}

audit *
consent_audit(consent_service *cs)
{
	return (cs->cs_audit);
}

hv_status
consent_rotate_kek(consent_service *cs, uint64_t *generation, uint64_t *rewrapped)
{
	return (vault_rotate(cs, 0, generation, rewrapped));
}

void
consent_receipt_key(consent_service *cs, uint8_t pub[32], char key_id[CONSENT_KEY_ID_HEX])
{
	memcpy(pub, cs->cs_pub, sizeof(cs->cs_pub));
	memcpy(key_id, cs->cs_key_id, CONSENT_KEY_ID_HEX);
}
