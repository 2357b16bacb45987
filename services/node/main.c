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
 * referral.retention_days ago, and logs the count (docs/operations.md).
 */
#include "haven/host.h"
#include "haven/log.h"

#include "alerts.h"
#include "capacity.h"
#include "signals.h"
#include "consent.h"
#include "people.h"
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

/* An erasure committed: the subject's open referrals end before the eraser hears of it
 * (offers withdrawn, holds released, waiting needs ended). */
static hv_status
subject_erased(void *arg, const char *subject, bool expired)
{
	ref_service *rs = *(ref_service **) arg;

	return (rs != NULL ? ref_consent_withdrawn(rs, subject, expired, NULL) : HV_OK);
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

/* The people of organisations: their key beside the node's other keys (DATA/keys/). */
static hv_status
open_people(host *h, const host_config *cfg, audit *log, people_service **out)
{
	people_options po = { 0 };
	char           key_file[PATH_MAX];
	hv_status      st;

	snprintf(key_file, sizeof(key_file), "%s/keys/%s", cfg->data_dir, PEOPLE_KEY_FILE);
	po.store          = host_store(h);
	po.auth           = host_auth(h);
	po.audit          = log;
	po.key_file       = key_file;
	po.session_idle_s = (uint32_t) cfg->session_idle_s;
	po.session_max_s  = (uint32_t) cfg->session_max_s;
	if ((st = people_open(out, &po)) != HV_OK) {
		log_error("cannot open the people service: %s", hv_status_name(st));
	}
	return (st);
}

/* The services' methods on the node's server, and the audit log of the directory and of
 * referral reads (the node's one log, kept by the consent service). */
static hv_status
register_all(host *h, cap_service *cs, consent_service *cns, ref_service *rs, people_service *ps)
{
	hv_status st;

	cap_set_audit(cs, consent_audit(cns)); /* directory changes in the node's audit log */
	ref_set_audit(rs, consent_audit(cns)); /* reads of referrals and offers, too */
	host_set_audit(h, consent_audit(cns)); /* and each backup: an export of everything */
	if ((st = cap_register(cs, host_server(h))) != HV_OK ||
	    (st = people_register(ps, host_server(h))) != HV_OK ||
	    (st = consent_register(cns, host_server(h))) != HV_OK) {
		return (st);
	}
	return (ref_register(rs, host_server(h)));
}

static int
exit_code(hv_status st)
{
	return (st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1);
}

/* The capacity registry's publish URL: the configured pub_url, or events.sock in the run
 * directory. */
static void
cap_pub_url(host *h, const host_config *cfg, char *out, size_t outsz)
{
	if (cfg->pub_url != NULL) {
		snprintf(out, outsz, "%s", cfg->pub_url);
	} else {
		run_url(h, "events.sock", out, outsz);
	}
}

/* Opens the capacity registry in full: it publishes on pub, expires holds, approves. */
static hv_status
open_capacity(cap_service **out, host *h, const host_config *cfg, const char *pub)
{
	cap_options co = { 0 };
	hv_status   st;

	co.store           = host_store(h);
	co.regions         = host_regions(h);
	co.pub_url         = pub;
	co.approval_places = (uint32_t) cfg->service_approval_places;
	co.ca_file         = cfg->tls_ca;
	if ((st = cap_open(out, &co)) != HV_OK) {
		log_error("cannot open the capacity registry: %s", hv_status_name(st));
	}
	return (st);
}

/* The alerts' outbox and sender, over the directory of the capacity service. */
static hv_status
open_alerts(alerts_service **out, host *h, const alerts_config *acfg, cap_service *cs)
{
	alerts_options ao = { 0 };
	hv_status      st;

	alerts_config_apply(acfg, &ao);
	ao.store    = host_store(h);
	ao.capacity = cs;
	if ((st = alerts_open(out, &ao)) != HV_OK) {
		log_error("cannot open the alerts: %s", hv_status_name(st));
	}
	return (st);
}

/* Signals from anyone (docs/signals.md): the key beside the consent service's in
 * DATA_DIR/keys, alerts to the region's referrers, the referral tables for ConvertSignal, the
 * node's audit log for reads. */
static hv_status
open_signals(sig_service **out, host *h, const sig_config *scfg, cap_service *cs,
    alerts_service *als, ref_service *rs, audit *log)
{
	sig_options so = { 0 };
	char        key[PATH_MAX];
	hv_status   st;

	sig_config_apply(scfg, &so);
	snprintf(key, sizeof(key), "%s/keys/signals.key", host_cfg(h)->data_dir);
	so.store     = host_store(h);
	so.regions   = host_regions(h);
	so.capacity  = cs;
	so.alerts    = als;
	so.referrals = rs;
	so.key_path  = key;
	so.audit     = log; /* reads of signals by the region's referrers */
	if ((st = sig_open(out, &so)) != HV_OK ||
	    (st = sig_register(*out, host_server(h))) != HV_OK) {
		log_error("cannot open the signals: %s", hv_status_name(st));
	}
	return (st);
}

/* The consent service on the node's store, with the directory and the referral tables. */
static void
consent_wire(consent_options *no, host *h, const host_config *cfg, cap_service *cs,
    ref_service **rs, const char *consent_pub)
{
	no->store              = host_store(h);
	no->data_dir           = cfg->data_dir;
	no->pub_url            = consent_pub;
	no->check_audit_async  = strcmp(cfg->check_audit, "queued") == 0;
	no->org_role           = cap_org_role;
	no->org_arg            = cs;
	no->accepting_provider = accepting_provider;
	no->accepting_arg      = rs;
	no->subject_erased     = subject_erased;
	no->erased_arg         = rs;
}

/* The referral service on the node's store, with the consent service's hooks and the sockets
 * (its options come from its own section of the configuration). */
static void
ref_wire(ref_options *ro, host *h, cap_service *cs, consent_service *cns, const char *ref_pub,
    const char *cap_pub, const char *consent_pub)
{
	ro->store            = host_store(h);
	ro->regions          = host_regions(h);
	ro->capacity         = cs;
	ro->consent          = consent_ref_check;
	ro->consent_arg      = cns;
	ro->seal             = consent_ref_seal;
	ro->unseal           = consent_ref_open;
	ro->minor            = consent_ref_minor;
	ro->holds            = consent_ref_holds;
	ro->pub_url          = ref_pub;
	ro->capacity_sub_url = cap_pub;
	ro->consent_sub_url  = consent_pub;
	ro->erase            = consent_ref_erase;
	ro->erase_arg        = cns;
	ro->erase_done       = consent_ref_erase_done;
}

int
main(int argc, char **argv)
{
	host_config      cfg;
	host            *h   = NULL;
	cap_service     *cs  = NULL;
	alerts_service  *als = NULL;
	consent_service *cns = NULL;
	ref_service     *rs  = NULL;
	people_service  *ps  = NULL;
	sig_service     *ss  = NULL;
	consent_options  no  = { 0 };
	ref_options      ro  = { 0 };
	char             cap_pub[PATH_MAX + 16], consent_pub[PATH_MAX + 16], ref_pub[PATH_MAX + 16];
	ref_config       rcfg    = { 0 };
	alerts_config    acfg    = { 0 };
	sig_config       scfg    = { 0 };
	config_table     tabs[3] = { ref_config_table(&rcfg), alerts_config_table(&acfg),
		    sig_config_table(&scfg) };
	char             err[256];
	bool             done;
	bool             print_methods = take_flag(&argc, argv, "--print-methods");
	int              ret;
	hv_status        st;

	/* Every service runs here: a section of the file no service knows is a misspelling. */
	ret = host_config_load_with(&cfg, argc, argv, "haven-node", tabs, 3, true, &done);
	if (ret != 0 || done) {
		goto out_cfg;
	}
	if (ref_config_apply(&rcfg, &ro, err, sizeof(err)) != HV_OK) {
		fprintf(stderr, "haven-node: %s\n", err);
		ret = 2;
		goto out_cfg;
	}
	ret = 1;
	if ((st = host_open(&h, &cfg, "node")) != HV_OK) {
		ret = exit_code(st);
		goto out;
	}
	cap_pub_url(h, &cfg, cap_pub, sizeof(cap_pub));
	run_url(h, "consent-events.sock", consent_pub, sizeof(consent_pub));
	run_url(h, "referral-events.sock", ref_pub, sizeof(ref_pub));
	if ((st = open_capacity(&cs, h, &cfg, cap_pub)) != HV_OK ||
	    (st = open_alerts(&als, h, &acfg, cs)) != HV_OK) {
		ret = exit_code(st);
		goto out;
	}
	consent_wire(&no, h, &cfg, cs, &rs, consent_pub);
	no.alerts = als;
	if ((st = consent_open(&cns, &no)) != HV_OK) {
		log_error("cannot open the consent records: %s", hv_status_name(st));
		ret = exit_code(st);
		goto out;
	}
	ref_wire(&ro, h, cs, cns, ref_pub, cap_pub, consent_pub);
	ro.alerts = als;
	if ((st = ref_open(&rs, &ro)) != HV_OK) {
		log_error("cannot open the referral service: %s", hv_status_name(st));
		ret = exit_code(st);
		goto out;
	}
	if ((st = open_people(h, &cfg, consent_audit(cns), &ps)) != HV_OK ||
	    (st = register_all(h, cs, cns, rs, ps)) != HV_OK ||
	    (st = alerts_register(als, host_server(h))) != HV_OK ||
	    (st = open_signals(&ss, h, &scfg, cs, als, rs, consent_audit(cns))) != HV_OK ||
	    (st = host_start(h, cap_lookup_org, cs)) != HV_OK) {
		ret = exit_code(st);
		goto out;
	}
	if (print_methods) {
		rpc_server_foreach_method(host_server(h), print_method, NULL);
		(void) fflush(stdout);
		ret = 0;
	} else {
		ret = host_wait(h);
	}
out:
	/* Threads stop while the store is open; host_close lets in-flight calls finish and closes
	 * the store; the services go last. */
	ref_stop(rs);
	consent_stop(cns);
	alerts_stop(als);
	cap_stop(cs);
	host_close(h);
	ref_close(rs);
	consent_close(cns);
	alerts_close(als);
	cap_close(cs);
	people_close(ps);
	sig_close(ss);
	if (ret == 0) {
		log_info("stopped cleanly");
	}
out_cfg:
	host_config_free(&cfg);
	ref_config_free(&rcfg);
	alerts_config_free(&acfg);
	sig_config_free(&scfg);
	return (ret);
}
