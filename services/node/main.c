/*
 * haven-node - a haven node in one process: every service over one data directory (the LMDB
 * store and the node secret), until SIGTERM or SIGINT.
 *
 *   haven-node [--config FILE] [--data-dir DIR] [--listen URL]... [--OPTION VALUE]...
 *
 * Without --listen the node serves on ipc://DATA_DIR/run/haven.sock, where the haven CLI finds
 * it. `haven-node --print-config` documents every option. Exit codes: 0 after a clean
 * shutdown, 2 for a usage or configuration error, 1 when the node cannot start.
 */
#include "haven/host.h"
#include "haven/log.h"

int
main(int argc, char **argv)
{
	host_config cfg;
	host       *h = NULL;
	bool        done;
	int         ret;
	hv_status   st;

	if ((ret = host_config_load(&cfg, argc, argv, "haven-node", &done)) != 0 || done) {
		host_config_free(&cfg);
		return (ret);
	}
	ret = 1;
	if ((st = host_open(&h, &cfg, "node")) != HV_OK) {
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	if ((st = host_start(h, NULL, NULL)) != HV_OK) {
		ret = st == HV_PERMISSION_DENIED || st == HV_INVALID_ARGUMENT ? 2 : 1;
		goto out;
	}
	host_wait(h);
	ret = 0;
out:
	host_close(h);
	if (ret == 0) {
		log_info("stopped cleanly");
	}
	host_config_free(&cfg);
	return (ret);
}
