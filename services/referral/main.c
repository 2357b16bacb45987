/*
 * haven-referral - referrals in a process of their own, over the node's data directory (shared
 * with the capacity and consent processes), until SIGTERM or SIGINT.
 *
 *   haven-referral [--config FILE] [--data DIR] [--listen URL]... [--pub-url URL]
 *                  [--offer-timeout-immediate-s N] ... [--OPTION VALUE]...
 *
 * Its own options are the "referral." section of the configuration file (ref_config.c);
 * sections of the other services are theirs to check.
 *
 * It serves haven.referral.v1.Referrals (and haven.auth.v1.Auth against the partner directory
 * in the store). It opens a capacity registry over the same store for the holds, candidates
 * and the directory, and, when built with the consent library, a consent service for the
 * consent check inside its own transactions. It publishes ReferralChanged on --pub-url
 * (default ipc://DATA/run/referral-events.sock) and subscribes to CapacityChanged on
 * ipc://DATA/run/events.sock and ConsentWithdrawn on ipc://DATA/run/consent-events.sock,
 * where haven-capacity and haven-consent publish by default (the node's configuration has no
 * setting for another process's pub URL yet).
 * Retention runs here (at start and hourly): subjects whose referrals all closed more than
 * retention_days ago are erased through the consent library (docs/operations.md).
 * Exit codes: 0 after a clean shutdown, 2 for a usage or configuration error, 1 when it cannot
 * start.
 */
#include "haven/host.h"
#include "haven/log.h"

#include "alerts.h"
#include "capacity.h"
#include "consent.h"
#include "referral.h"

#include <limits.h>
#include <stdio.h>

/* The sockets: ours to publish on, capacity's and consent's to subscribe to. */
typedef struct urls {
	char pub[PATH_MAX + 16];
	char cap_sub[PATH_MAX + 16];
	char consent_sub[PATH_MAX + 16];
} urls;

static void
urls_make(host *h, const host_config *cfg, urls *u)
{
	char path[PATH_MAX];

	if (cfg->pub_url != NULL) {
		snprintf(u->pub, sizeof(u->pub), "%s", cfg->pub_url);
	} else {
		host_run_path(h, "referral-events.sock", path, sizeof(path));
		snprintf(u->pub, sizeof(u->pub), "ipc://%s", path);
	}
	host_run_path(h, "events.sock", path, sizeof(path));
	snprintf(u->cap_sub, sizeof(u->cap_sub), "ipc://%s", path);
	host_run_path(h, "consent-events.sock", path, sizeof(path));
	snprintf(u->consent_sub, sizeof(u->consent_sub), "ipc://%s", path);
}

/* The referral service's store, map, registry, consent checks and sockets (its options come
 * from its own section of the configuration, ref_config_apply). */
static void
options_make(host *h, cap_service *cs, consent_service *cns, const urls *u, ref_options *ro)
{
	ro->consent          = consent_ref_check;
	ro->consent_arg      = cns;
	ro->seal             = consent_ref_seal;
	ro->unseal           = consent_ref_open;
	ro->minor            = consent_ref_minor;
	ro->holds            = consent_ref_holds;
	ro->erase            = consent_ref_erase;
	ro->erase_arg        = cns;
	ro->erase_done       = consent_ref_erase_done;
	ro->store            = host_store(h);
	ro->regions          = host_regions(h);
	ro->capacity         = cs;
	ro->pub_url          = u->pub;
	ro->capacity_sub_url = u->cap_sub;
	ro->consent_sub_url  = u->consent_sub;
}

/* The registry's store functions only: haven-capacity publishes and serves it, and expires
 * holds; not a second time here. */
static hv_status
open_capacity(cap_service **out, host *h)
{
	cap_options co = { 0 };
	hv_status   st;

	co.store      = host_store(h);
	co.regions    = host_regions(h);
	co.store_only = true;
	if ((st = cap_open(out, &co)) != HV_OK) {
		log_error("cannot open the capacity registry: %s", hv_status_name(st));
	}
	return (st);
}

int
main(int argc, char **argv)
{
	host_config      cfg;
	host            *h    = NULL;
	cap_service     *cs   = NULL;
	ref_service     *rs   = NULL;
	alerts_service  *als  = NULL;
	alerts_options   ao   = { 0 };
	ref_options      ro   = { 0 };
	consent_service *cns  = NULL;
	consent_options  no   = { 0 };
	ref_config       rcfg = { 0 };
	alerts_config    acfg = { 0 };
	config_table     tabs[2];
	char             err[256];
	urls             u;
	bool             done;
	int              ret;
	hv_status        st;

	tabs[0] = ref_config_table(&rcfg);
	tabs[1] = alerts_config_table(&acfg);
	if ((ret = host_config_load_with(&cfg, argc, argv, "haven-referral", tabs, 2, false,
	         &done)) != 0 ||
	    done) {
		goto out_cfg;
	}
	if (ref_config_apply(&rcfg, &ro, err, sizeof(err)) != HV_OK) {
		fprintf(stderr, "haven-referral: %s\n", err);
		ret = 2;
		goto out_cfg;
	}
	ret = 1;
	if ((st = host_open(&h, &cfg, "referral")) != HV_OK) {
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	urls_make(h, &cfg, &u);

	if ((st = open_capacity(&cs, h)) != HV_OK) {
		ret = st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	no.store    = host_store(h);
	no.data_dir = cfg.data_dir;
	if ((st = consent_open(&cns, &no)) != HV_OK) {
		log_error("cannot open the consent records: %s", hv_status_name(st));
		goto out;
	}
	/* Alerts: written here and by haven-consent (a withdrawal), sent and served from here. */
	alerts_config_apply(&acfg, &ao);
	ao.store    = host_store(h);
	ao.capacity = cs;
	if ((st = alerts_open(&als, &ao)) != HV_OK) {
		log_error("cannot open the alerts: %s", hv_status_name(st));
		ret = st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	options_make(h, cs, cns, &u, &ro);
	ro.alerts = als;
	if ((st = ref_open(&rs, &ro)) != HV_OK) {
		log_error("cannot open the referral service: %s", hv_status_name(st));
		ret = st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	ref_set_audit(rs, consent_audit(cns)); /* reads of referrals and offers */
	if ((st = ref_register(rs, host_server(h))) != HV_OK ||
	    (st = alerts_register(als, host_server(h))) != HV_OK ||
	    (st = host_start(h, cap_lookup_org, cs)) != HV_OK) {
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	log_info("publishing referral changes on %s; capacity changes from %s, consent "
	         "withdrawals from %s",
	    u.pub, u.cap_sub, u.consent_sub);
	ret = host_wait(h);
out:
	/* Order: the threads stop while the store is open; host_close lets in-flight calls
	 * finish and then closes the store; the services go last. */
	ref_stop(rs);
	alerts_stop(als);
	cap_stop(cs);
	host_close(h);
	ref_close(rs);
	alerts_close(als);
	consent_close(cns);
	cap_close(cs);
	if (ret == 0) {
		log_info("stopped cleanly");
	}
out_cfg:
	host_config_free(&cfg);
	ref_config_free(&rcfg);
	alerts_config_free(&acfg);
	return (ret);
}
