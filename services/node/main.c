/*
 * haven-node - a haven node in one process: the capacity registry, the consent records and
 * the referral service over one data directory (the LMDB store and the keys),
 * until SIGTERM or SIGINT.
 *
 *   haven-node [--config FILE] [--data-dir DIR] [--listen URL]... [--OPTION VALUE]...
 *
 * Without --listen the node serves on ipc://DATA_DIR/run/haven.sock, where the haven CLI finds
 * it. `haven-node --print-config` documents every option; `haven-node --data-dir DIR
 * --print-methods` starts, prints every method it serves with the roles that may call it (one
 * line each: METHOD ROLE,ROLE... or "none"; the authority test holds docs/authority.md against
 * it) and stops. Exit codes: 0 after a clean
 * shutdown, 2 for a usage or configuration error, 1 when the node cannot start.
 *
 * Change notifications: capacity publishes on ipc://DATA_DIR/run/events.sock (or pub_url),
 * consent on run/consent-events.sock, referral on run/referral-events.sock; the referral
 * service subscribes to the first two, so it reroutes waiting needs the moment a place frees.
 *
 * Alerts (services/alerts, docs/alerts.md): the referral and consent services write the events
 * that need a person to the alerts outbox in their own transactions; a sender thread delivers
 * them by e-mail (smtp_url) and signed webhooks, and Alerts/WatchEvents serves them.
 *
 * Retention: at start and hourly, the referral service erases (crypto-shredding, through the
 * consent service) the personal data of each subject whose referrals all closed more than
 * retention_days ago, and logs the count (docs/operations.md).
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

/* The referral service's free text is sealed by the consent service: one size contract. */
_Static_assert(REF_SEAL_OVERHEAD == CONSENT_TEXT_OVERHEAD, "sealed text overhead differs");

/* consent asks the referral service whether a provider accepted a subject's referral; the
 * referral service opens after consent (it checks consent), so the hook reads it late. */
static hv_status
accepting_provider(void *arg, store_txn *txn, const char *subject, const char *org_id, bool *yes)
{
	ref_service *rs = *(ref_service **) arg;

	*yes = false;
	return (rs != NULL ? ref_is_accepting_provider(rs, txn, subject, org_id, yes) : HV_OK);
}

/* Retention: the referral service erases subjects whose referrals all closed retention_days
 * ago through the consent service, with the node itself (the operator, no organisation) as
 * the caller recorded in the audit log. */
static hv_status
retention_erase(void *arg, const char *subject)
{
	static const rpc_caller node = { .role = RPC_ROLE_OPERATOR, .org_id = "",
		.transport = RPC_TRANSPORT_INPROC };

	return (consent_erase_subject_deferred(arg, &node, subject, NULL));
}

/* After a sweep: one key rotation makes all of its erasures final. */
static hv_status
retention_done(void *arg)
{
	return (consent_rotate_kek(arg, NULL, NULL));
}

static void
run_url(host *h, const char *name, char *out, size_t outsz)
{
	char path[PATH_MAX];

	host_run_path(h, name, path, sizeof(path));
	snprintf(out, outsz, "ipc://%s", path);
}

/* --print-methods: "METHOD role,role" per method; roles in rpc_role order. */
static void
print_method(void *arg, const char *method, unsigned roles, bool implemented)
{
	bool first = true;

	(void) arg;
	printf("%s ", method);
	for (unsigned bit = 1; bit <= RPC_ROLE_LAST; bit <<= 1) {
		if ((roles & bit) != 0) {
			printf("%s%s", first ? "" : ",", rpc_role_name((rpc_role) bit));
			first = false;
		}
	}
	printf("%s%s\n", first ? "none" : "", implemented ? "" : " unimplemented");
}

/* Takes a flag that the host's options do not know out of argv. */
static bool
take_flag(int *argc, char **argv, const char *flag)
{
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], flag) == 0) {
			memmove(&argv[i], &argv[i + 1], (size_t) (*argc - i) * sizeof(*argv));
			(*argc)--;
			return (true);
		}
	}
	return (false);
}

static int
exit_code(hv_status st)
{
	return (st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1);
}

/* The services of the node and the pub URLs they publish and listen on. */
typedef struct node {
	host            *n_host;
	cap_service     *n_cap;
	alerts_service  *n_alerts;
	consent_service *n_consent;
	ref_service     *n_ref;
	char             n_cap_pub[PATH_MAX + 16];
	char             n_consent_pub[PATH_MAX + 16];
	char             n_ref_pub[PATH_MAX + 16];
} node;

/* The alerts' outbox and sender, over the directory of n's capacity service. */
static hv_status
open_alerts(node *n, const host_config *cfg)
{
	alerts_options ao = { 0 };
	hv_status      st;

	ao.store                 = host_store(n->n_host);
	ao.capacity              = n->n_cap;
	ao.node_url              = cfg->node_url;
	ao.smtp_url              = cfg->smtp_url;
	ao.smtp_from             = cfg->smtp_from;
	ao.smtp_ca_file          = cfg->smtp_ca;
	ao.escalate_after_s      = (uint32_t) cfg->escalate_after_s;
	ao.unmet_after_s         = (uint32_t) cfg->unmet_after_s;
	ao.webhook_allow_private = cfg->webhook_allow_private;
	if ((st = alerts_open(&n->n_alerts, &ao)) != HV_OK) {
		log_error("cannot open the alerts: %s", hv_status_name(st));
	}
	return (st);
}

/* Opens capacity, alerts, consent and referral, in that order (each builds on the one before), with
 * the options of cfg; ro holds what main parsed already (the statistics periods). */
static hv_status
open_services(node *n, const host_config *cfg, ref_options *ro)
{
	cap_options     co = { 0 };
	consent_options no = { 0 };
	hv_status       st;

	co.store           = host_store(n->n_host);
	co.regions         = host_regions(n->n_host);
	co.pub_url         = n->n_cap_pub;
	co.approval_places = (uint32_t) cfg->service_approval_places;
	co.ca_file         = cfg->tls_ca;
	if ((st = cap_open(&n->n_cap, &co)) != HV_OK) {
		log_error("cannot open the capacity registry: %s", hv_status_name(st));
		return (st);
	}
	if ((st = open_alerts(n, cfg)) != HV_OK) {
		return (st);
	}
	no.store              = host_store(n->n_host);
	no.alerts             = n->n_alerts;
	no.data_dir           = cfg->data_dir;
	no.pub_url            = n->n_consent_pub;
	no.check_audit_async  = strcmp(cfg->check_audit, "queued") == 0;
	no.org_role           = cap_org_role;
	no.org_arg            = n->n_cap;
	no.accepting_provider = accepting_provider;
	no.accepting_arg      = &n->n_ref;
	if ((st = consent_open(&n->n_consent, &no)) != HV_OK) {
		log_error("cannot open the consent records: %s", hv_status_name(st));
		return (st);
	}
	ro->store            = host_store(n->n_host);
	ro->regions          = host_regions(n->n_host);
	ro->capacity         = n->n_cap;
	ro->consent          = consent_ref_check;
	ro->consent_arg      = n->n_consent;
	ro->seal             = consent_ref_seal;
	ro->unseal           = consent_ref_open;
	ro->pub_url          = n->n_ref_pub;
	ro->alerts           = n->n_alerts;
	ro->capacity_sub_url = n->n_cap_pub;
	ro->consent_sub_url  = n->n_consent_pub;
	ro->erase            = retention_erase;
	ro->erase_arg        = n->n_consent;
	ro->erase_done       = retention_done;
	ro->retention_days   = (uint32_t) cfg->retention_days;
	ro->offer_timeout_s[HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE] =
	    (uint32_t) cfg->offer_timeout_immediate_s;
	ro->offer_timeout_s[HAVEN__REFERRAL__V1__URGENCY__URGENT] =
	    (uint32_t) cfg->offer_timeout_urgent_s;
	ro->offer_timeout_s[HAVEN__REFERRAL__V1__URGENCY__PLANNED] =
	    (uint32_t) cfg->offer_timeout_planned_s;
	if ((st = ref_open(&n->n_ref, ro)) != HV_OK) {
		log_error("cannot open the referral service: %s", hv_status_name(st));
		return (st);
	}
	/* Directory changes in the node's audit log. */
	cap_set_audit(n->n_cap, consent_audit(n->n_consent));
	return (HV_OK);
}

int
main(int argc, char **argv)
{
	host_config cfg;
	node        n  = { 0 };
	ref_options ro = { 0 };
	bool        done;
	bool        print_methods = take_flag(&argc, argv, "--print-methods");
	int         ret;
	hv_status   st;

	if ((ret = host_config_load(&cfg, argc, argv, "haven-node", &done)) != 0 || done) {
		host_config_free(&cfg);
		return (ret);
	}
	if (ref_stats_periods_parse(cfg.statistics_periods, &ro.stats_periods) != HV_OK) {
		fprintf(stderr, "haven-node: statistics_periods must be month, week or month,week, "
		                "not '%s'\n", cfg.statistics_periods);
		host_config_free(&cfg);
		return (2);
	}
	if ((st = host_open(&n.n_host, &cfg, "node")) != HV_OK) {
		ret = exit_code(st);
		goto out;
	}
	if (cfg.pub_url != NULL) {
		snprintf(n.n_cap_pub, sizeof(n.n_cap_pub), "%s", cfg.pub_url);
	} else {
		run_url(n.n_host, "events.sock", n.n_cap_pub, sizeof(n.n_cap_pub));
	}
	run_url(n.n_host, "consent-events.sock", n.n_consent_pub, sizeof(n.n_consent_pub));
	run_url(n.n_host, "referral-events.sock", n.n_ref_pub, sizeof(n.n_ref_pub));
	if ((st = open_services(&n, &cfg, &ro)) != HV_OK ||
	    (st = cap_register(n.n_cap, host_server(n.n_host))) != HV_OK ||
	    (st = consent_register(n.n_consent, host_server(n.n_host))) != HV_OK ||
	    (st = ref_register(n.n_ref, host_server(n.n_host))) != HV_OK ||
	    (st = alerts_register(n.n_alerts, host_server(n.n_host))) != HV_OK ||
	    (st = host_start(n.n_host, cap_lookup_org, n.n_cap)) != HV_OK) {
		ret = exit_code(st);
		goto out;
	}
	if (print_methods) {
		rpc_server_foreach_method(host_server(n.n_host), print_method, NULL);
		fflush(stdout);
	} else {
		host_wait(n.n_host);
	}
	ret = 0;
out:
	/* Threads stop while the store is open; host_close lets in-flight calls finish and closes
	 * the store; the services go last. */
	ref_stop(n.n_ref);
	consent_stop(n.n_consent);
	alerts_stop(n.n_alerts);
	cap_stop(n.n_cap);
	host_close(n.n_host);
	ref_close(n.n_ref);
	consent_close(n.n_consent);
	alerts_close(n.n_alerts);
	cap_close(n.n_cap);
	if (ret == 0) {
		log_info("stopped cleanly");
	}
	host_config_free(&cfg);
	return (ret);
}
