/*
 * haven-consent - consent records, the personal-data vault and the audit service in a process
 * of its own, over the node's data directory (shared with the other services' processes),
 * until SIGTERM or SIGINT.
 *
 *   haven-consent [--config FILE] [--data DIR] [--listen URL]... [--pub-url URL]
 *                 [--tls-ca F --tls-cert F --tls-key F] [--OPTION VALUE]...
 *
 * It serves haven.consent.v1.Consent and haven.audit.v1.Audit, and haven.auth.v1.Auth against
 * the partner directory of the capacity registry in the same store (read only here: opened
 * without its expiry thread and its pub socket). Whether a provider accepted a subject's
 * referral (consent given to "the provider that accepts the referral") it reads from the
 * referral tables in the same store, through a referral service opened without its thread,
 * its sockets and its handlers. Keys live in DATA/keys (see consent.h).
 * Withdrawals are published on --pub-url, by default ipc://DATA/run/consent-events.sock (the
 * capacity process has events.sock). `haven-consent --print-config` documents every option.
 * It lives with haven-node because it composes three services' store functions: the consent
 * library sits below the referral service, and only a process above both may join them.
 * Exit codes: 0 after a clean shutdown, 2 for a usage or configuration error (or a key file
 * open to others), 1 when it cannot start.
 */
#include "haven/host.h"
#include "haven/log.h"

#include "alerts.h"
#include "capacity.h"
#include "consent.h"
#include "referral.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The referral tables say whether org accepted (and has not ended) a referral of subject. */
static hv_status
accepting_provider(void *arg, store_txn *txn, const char *subject, const char *org_id, bool *yes)
{
	return (ref_is_accepting_provider(arg, txn, subject, org_id, yes));
}

/* The other services whose store functions this process needs, none of their timers or
 * sockets: the partner directory (reads; haven-capacity serves it), the alerts outbox (a
 * withdrawal's alerts go there; haven-referral sends them) and the referral tables
 * (haven-referral migrates, expires and routes). */
static hv_status
open_others(host *h, const alerts_config *acfg, cap_service **cap, alerts_service **als,
    ref_service **ref)
{
	cap_options    capo = { 0 };
	alerts_options alo  = { 0 };
	ref_options    refo = { 0 };
	hv_status      st;

	capo.store      = host_store(h);
	capo.regions    = host_regions(h);
	capo.store_only = true;
	if ((st = cap_open(cap, &capo)) != HV_OK) {
		log_error("cannot open the partner directory: %s", hv_status_name(st));
		return (st);
	}
	alo.store    = host_store(h);
	alo.capacity = *cap;
	alo.node_url = acfg->node_url;
	alo.manual   = true;
	if ((st = alerts_open(als, &alo)) != HV_OK) {
		log_error("cannot open the alerts outbox: %s", hv_status_name(st));
		return (st);
	}
	refo.store      = host_store(h);
	refo.regions    = host_regions(h);
	refo.capacity   = *cap;
	refo.store_only = true;
	refo.alerts     = *als; /* an erasure ending referrals alerts too */
	if ((st = ref_open(ref, &refo)) != HV_OK) {
		log_error("cannot open the referral tables: %s", hv_status_name(st));
	}
	return (st);
}

int
main(int argc, char **argv)
{
	host_config      cfg;
	host            *h          = NULL;
	consent_service *cs         = NULL;
	consent_options  co         = { 0 };
	auth_lookup_fn   lookup     = NULL;
	void            *lookup_arg = NULL;
	char             path[PATH_MAX];
	char             pub[PATH_MAX + 16];
	bool             done;
	int              ret;
	hv_status        st;
	cap_service     *cap  = NULL;
	alerts_service  *als  = NULL;
	alerts_config    acfg = { 0 };
	config_table     atab = alerts_config_table(&acfg);
	ref_service     *ref  = NULL;

	/* The alerts section for the links of a withdrawal's alerts (haven-referral sends). */
	if ((ret = host_config_load_with(&cfg, argc, argv, "haven-consent", &atab, 1, false,
	         &done)) != 0 ||
	    done) {
		host_config_free(&cfg);
		alerts_config_free(&acfg);
		return (ret);
	}
	ret = 1;
	if ((st = host_open(&h, &cfg, "consent")) != HV_OK) {
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	if (cfg.pub_url != NULL) {
		snprintf(pub, sizeof(pub), "%s", cfg.pub_url);
	} else {
		host_run_path(h, "consent-events.sock", path, sizeof(path));
		snprintf(pub, sizeof(pub), "ipc://%s", path);
	}
	if ((st = open_others(h, &acfg, &cap, &als, &ref)) != HV_OK) {
		goto out;
	}
	co.org_role           = cap_org_role;
	co.org_arg            = cap;
	co.alerts             = als;
	lookup                = cap_lookup_org;
	lookup_arg            = cap;
	co.accepting_provider = accepting_provider;
	co.accepting_arg      = ref;
	co.store              = host_store(h);
	co.data_dir           = cfg.data_dir;
	co.pub_url            = pub;
	co.check_audit_async  = strcmp(cfg.check_audit, "queued") == 0;
	if ((st = consent_open(&cs, &co)) != HV_OK) {
		log_error("cannot open the consent service: %s", hv_status_name(st));
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	host_set_audit(h, consent_audit(cs)); /* each backup, as an access */
	if ((st = consent_register(cs, host_server(h))) != HV_OK ||
	    (st = host_start(h, lookup, lookup_arg)) != HV_OK) {
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	log_info("publishing consent withdrawals on %s", pub);
	ret = host_wait(h);
out:
	/* Order: the rotation timer stops while the store is open (a rotation it runs finishes);
	 * host_close lets in-flight calls finish and then closes the store; the services go
	 * last. */
	consent_stop(cs);
	host_close(h);
	consent_close(cs);
	alerts_close(als);
	ref_close(ref);
	cap_close(cap);
	if (ret == 0) {
		log_info("stopped cleanly");
	}
	host_config_free(&cfg);
	alerts_config_free(&acfg);
	return (ret);
}
