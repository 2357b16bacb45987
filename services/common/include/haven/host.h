/*
 * host.h - what every haven service process does around its services: read the node's
 * configuration (file and command line), prepare the data directory, open the store, the
 * region map and the token keys, serve RPC on the configured URLs with organisation
 * authentication, and shut down cleanly on SIGTERM or SIGINT.
 *
 * haven-node (all services in one process) and each service's own binary use it the same way:
 *
 *   host_config cfg;   host *h;
 *   rc = host_config_load(&cfg, argc, argv, "haven-capacity");  // exits on --help
 *   if (rc != 0) return rc;                                      // usage or config error: 2
 *   host_open(&h, &cfg)             data dir, store, regions, token keys, RPC server
 *   ... create the services with host_store(h), host_regions(h), register them on
 *       host_server(h) ...
 *   host_start(h, lookup, arg)      authenticator over the partner directory, Auth service,
 *                                   listeners, workers, the metrics page (metrics_listen),
 *                                   the Connect API over HTTP(S) (http_listen, connect.h)
 *   host_wait(h)                    until SIGTERM/SIGINT
 *   ... close the services ...
 *   host_close(h); host_config_free(&cfg);
 *
 * The configuration file (`--config FILE`, `key = value`) and command-line options name the
 * same settings; the command line wins. `haven-node --print-config` prints every setting with
 * its default and documentation.
 *
 * Metrics: with metrics_listen set (a loopback HOST:PORT; anything else is refused as a
 * configuration error, exit code 2) the process serves http://HOST:PORT/metrics in the
 * Prometheus text format: the RPC server's registry (rpc_server_metrics) with every collector
 * the services added in their register functions, plus the host's own (store size, process
 * figures). See docs/metrics.md.
 */
#ifndef HAVEN_HOST_H
#define HAVEN_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "haven/audit.h"
#include "haven/auth.h"
#include "haven/config.h"
#include "haven/metrics.h"
#include "haven/regions.h"
#include "haven/rpc.h"
#include "haven/store.h"

/* Settings of a node process. Strings are malloc'd (host_config_free). */
typedef struct host_config {
	char       *data_dir; /* store, keys/, run/ with the ipc socket */
	config_list listen;   /* URLs; empty: ipc://DATA/run/haven.sock */
	char       *tls_ca;   /* tls+tcp:// listeners */
	char       *tls_cert;
	char       *tls_key;
	bool        insecure_tcp;
	uint64_t    workers;
	uint64_t    queue;
	char       *regions;    /* region map file; NULL: the Dutch police regions */
	char       *backup_dir; /* Admin/Backup only below it (absolute); NULL: anywhere */
	char       *pub_url;    /* change notifications (capacity, consent); NULL: DATA/run */
	uint64_t    token_ttl_s;
	uint64_t    session_idle_s; /* people's sessions (services/people) */
	uint64_t    session_max_s;
	uint64_t    service_approval_places; /* capacity: larger provider services wait */
	char       *check_audit; /* "queued" or "durable" (consent Check's audit entry) */
	char       *log_level;
	char       *metrics_listen; /* loopback HOST:PORT of the metrics page; NULL: off */
	char       *http_listen;    /* the Connect API's [http[s]://]HOST:PORT; NULL: off */
	char       *http_web_dir;   /* static files on the http_listen listener; NULL: none */
	char *http_trusted_proxy;   /* the proxy whose X-Forwarded-For is believed; NULL: none */
} host_config;

/* Reads --config FILE (if given) and then the command-line options over it. Returns 0, or the
 * exit code to stop with: 2 after printing what is wrong (usage, unknown option, bad value),
 * or 0 with *done set after --help or --print-config. prog names the binary in messages. */
int host_config_load(host_config *cfg, int argc, char **argv, const char *prog, bool *done);
/* The same with the option tables of the services the process runs (config.h: each its own
 * section of the file, "referral.retention_days"; on the command line --referral.retention-days
 * or, when no other table has the name, --retention-days). Their values go to each table's
 * ct_out, which the caller zeroed and frees with config_free. --print-config prints every
 * table. strict: a section no table has is an error (a process running every service);
 * otherwise it is another process's, skipped. At most 8 tables. */
int  host_config_load_with(host_config *cfg, int argc, char **argv, const char *prog,
     const config_table *svc, size_t nsvc, bool strict, bool *done);
void host_config_free(host_config *cfg);

typedef struct host host;

/* Prepares the data directory (0700; refused when open to others), opens the store, the region
 * map and the authenticator (token keys in DATA/keys/token-keys, the CA of tls_ca; a
 * DATA/node.secret of earlier versions is removed), and creates the RPC server. Messages name
 * what failed. */
hv_status host_open(host **out, const host_config *cfg, const char *name);

store             *host_store(host *h);
const region_map  *host_regions(host *h);
rpc_server        *host_server(host *h);
auth              *host_auth(host *h); /* NULL before host_start */
const host_config *host_cfg(host *h);
/* The audit log that Admin/Backup records each backup in (issue 14: an export of every
 * person-linked record is an access): the entry is appended in a transaction of its own
 * before the copy, so that the backup holds the record of itself, and a backup that cannot be
 * recorded is not made. NULL (the default): backups are not recorded. Not owned. */
void host_set_audit(host *h, audit *a);
/* "ipc://DATA/run/NAME.sock"-style paths under the data directory's run/ (0700). */
void host_run_path(host *h, const char *name, char *out, size_t outsz);

/* Opens the authenticator over the partner directory lookup (NULL: tokens are refused),
 * registers Auth, listens on every URL and starts serving; then serves the metrics page when
 * metrics_listen is set (HV_INVALID_ARGUMENT for an address that is not loopback,
 * HV_ALREADY_EXISTS when its port is taken; logged). */
hv_status host_start(host *h, auth_lookup_fn lookup, void *lookup_arg);

/* The TCP port of the Connect API (http_listen; the one chosen for port 0), or 0 when off. */
int host_http_port(host *h);

/* The TCP port of the metrics page (the one chosen for port 0), or 0 when it is off. */
int host_metrics_port(host *h);

/* What host_wait returns when the node must be started again: EX_TEMPFAIL, which the
 * service manager restarts (deploy/systemd: Restart=on-failure). */
#define HOST_EXIT_RESTART 75

/* Blocks until SIGTERM or SIGINT (returns 0), or until libnng is found stuck (returns
 * HOST_EXIT_RESTART: the process cannot close its connections any more, host.c). The signals
 * are blocked in every thread from host_open on. Meanwhile, once a minute, the allocator's free
 * memory goes back to the system. From its return the stop has a deadline: a process still
 * running 30 s later, or whose libnng is stuck (at once), ends with HOST_EXIT_RESTART. */
int host_wait(host *h);

/* Stops the metrics page (no collector runs after it), stops serving (in-flight calls finish),
 * closes the store. NULL allowed. */
void host_close(host *h);

#endif
