/*
 * haven-capacity - the capacity registry and partner directory in a process of its own, over
 * the node's data directory (shared with the other services' processes), until SIGTERM or
 * SIGINT.
 *
 *   haven-capacity [--config FILE] [--data DIR] [--listen URL]... [--pub-url URL]
 *                  [--regions FILE] [--tls-ca F --tls-cert F --tls-key F] [--OPTION VALUE]...
 *
 * It serves haven.capacity.v1.Capacity and haven.auth.v1.Auth (organisations sign in against
 * the directory kept here) and publishes CapacityChanged on the pub URL (default
 * ipc://DATA/run/events.sock). `haven-capacity --print-config` documents every option. Exit
 * codes: 0 after a clean shutdown, 2 for a usage or configuration error, 1 when it cannot start.
 */
#include "haven/host.h"
#include "haven/log.h"

#include "capacity.h"

#include <limits.h>
#include <stdio.h>

int
main(int argc, char **argv)
{
	host_config  cfg;
	host        *h  = NULL;
	cap_service *cs = NULL;
	audit       *au = NULL;
	cap_options  co = { 0 };
	char         path[PATH_MAX];
	char         pub[PATH_MAX + 16];
	bool         done;
	int          ret;
	hv_status    st;

	if ((ret = host_config_load(&cfg, argc, argv, "haven-capacity", &done)) != 0 || done) {
		host_config_free(&cfg);
		return (ret);
	}
	ret = 1;
	if ((st = host_open(&h, &cfg, "capacity")) != HV_OK) {
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	if (cfg.pub_url != NULL) {
		snprintf(pub, sizeof(pub), "%s", cfg.pub_url);
	} else {
		host_run_path(h, "events.sock", path, sizeof(path));
		snprintf(pub, sizeof(pub), "ipc://%s", path);
	}
	co.store           = host_store(h);
	co.regions         = host_regions(h);
	co.pub_url         = pub;
	co.approval_places = (uint32_t) cfg.service_approval_places;
	co.ca_file         = cfg.tls_ca;
	if ((st = cap_open(&cs, &co)) != HV_OK) {
		log_error("cannot open the capacity registry: %s", hv_status_name(st));
		ret = st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	/* Directory changes go to the node's audit log, the one haven-consent keeps. */
	if ((st = audit_open(&au, host_store(h), cfg.data_dir)) != HV_OK) {
		log_error("cannot open the audit log: %s", hv_status_name(st));
		ret = st == HV_PERMISSION_DENIED ? 2 : 1;
		goto out;
	}
	cap_set_audit(cs, au);
	if ((st = cap_register(cs, host_server(h))) != HV_OK ||
	    (st = host_start(h, cap_lookup_org, cs)) != HV_OK) {
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	log_info("publishing capacity changes on %s", pub);
	ret = host_wait(h);
out:
	/* Order: the expiry thread stops while the store is open; host_close lets in-flight
	 * calls finish and then closes the store; the registry goes last. */
	cap_stop(cs);
	host_close(h);
	cap_close(cs);
	audit_close(au); /* no writer thread: nothing of it touches the closed store */
	if (ret == 0) {
		log_info("stopped cleanly");
	}
	host_config_free(&cfg);
	return (ret);
}
