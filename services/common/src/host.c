/*
 * host.c - the process around haven's services: configuration, data directory, store, region
 * map, token keys, RPC server, metrics page, signals (see host.h).
 */
#include "haven/audit.h"
#include "haven/clock.h"
#include "haven/connect.h"
#include "haven/host.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/metrics.h"

#include "proc.h"
#include "host_wait.h"

#include "haven/admin/v1/admin.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The schema version of the store this build reads and writes. */
#define HOST_SCHEMA_VERSION 1

static const config_option host_options[] = {
	{ "data_dir", CONFIG_STRING, offsetof(host_config, data_dir), "./haven-data", 0, 0,
	    "Data directory: the LMDB store, keys/ (token and encryption keys) and run/ (ipc "
	    "sockets). Mode 0700." },
	{ "listen", CONFIG_LIST, offsetof(host_config, listen), NULL, 0, 0,
	    "URL to serve on: ipc://PATH, tls+tcp://HOST:PORT (tcp:// only with insecure_tcp). "
	    "Repeat for several. Default: ipc://DATA_DIR/run/haven.sock." },
	{ "tls_ca", CONFIG_STRING, offsetof(host_config, tls_ca), NULL, 0, 0,
	    "PEM file of the node CA; partners must present a certificate it signed, and the "
	    "certificate registered for an organisation must chain to it (CN = the organisation "
	    "id) to be registered and to sign in." },
	{ "tls_cert", CONFIG_STRING, offsetof(host_config, tls_cert), NULL, 0, 0,
	    "PEM file of the node's server certificate (tls+tcp://)." },
	{ "tls_key", CONFIG_STRING, offsetof(host_config, tls_key), NULL, 0, 0,
	    "PEM file of its private key; mode 0600." },
	{ "insecure_tcp", CONFIG_BOOL, offsetof(host_config, insecure_tcp), "false", 0, 0,
	    "Allow plain tcp:// listeners. Development only: nothing is encrypted." },
	{ "workers", CONFIG_UINT, offsetof(host_config, workers), "4", 1, 256,
	    "Handler threads per process." },
	{ "queue", CONFIG_UINT, offsetof(host_config, queue), "256", 1, 65536,
	    "Calls that may wait for a handler thread; more are answered RESOURCE_EXHAUSTED." },
	{ "backup_dir", CONFIG_STRING, offsetof(host_config, backup_dir), NULL, 0, 0,
	    "Absolute path of the directory `haven admin backup DIR` writes under: DIR must be "
	    "inside it, else the backup is refused. Default: any absolute path the node's user may "
	    "write (the checks on DIR apply either way)." },
	{ "regions", CONFIG_STRING, offsetof(host_config, regions), NULL, 0, 0,
	    "Region map file ('Region: Neighbour, ...' per line). Default: the ten Dutch police "
	    "regions." },
	{ "pub_url", CONFIG_STRING, offsetof(host_config, pub_url), NULL, 0, 0,
	    "Where change notifications are published. Default: ipc://DATA_DIR/run/events.sock." },
	{ "token_ttl_s", CONFIG_UINT, offsetof(host_config, token_ttl_s), "3600", 60, 86400,
	    "Lifetime of an organisation's session token, in seconds; the token key rotates as "
	    "often." },
	{ "session_idle_s", CONFIG_UINT, offsetof(host_config, session_idle_s), "1800", 1, 86400,
	    "A person's session ends after this many seconds without a call." },
	{ "session_max_s", CONFIG_UINT, offsetof(host_config, session_max_s), "43200", 1, 604800,
	    "A person's session ends this many seconds after sign-in, used or not." },
	{ "service_approval_places", CONFIG_UINT, offsetof(host_config, service_approval_places),
	    "50", 1, 100000,
	    "A service that a provider registers with more places than this, or outside its "
	    "organisation's home region, waits until a coordinator of its region or an admin "
	    "approves it (ApproveService); until then it is never offered, held or counted." },
	{ "check_audit", CONFIG_STRING, offsetof(host_config, check_audit), "queued", 0, 0,
	    "How consent Check records its audit entry: queued (answer at once; a writer thread "
	    "commits the entries in batches, 5 to 100 ms apart as the disk allows, and a crash can "
	    "lose those of the last batch) or durable (each Check commits its entry before it "
	    "answers; far "
	    "slower). Every other access to personal data or consent is durable either way." },
	{ "log_level", CONFIG_STRING, offsetof(host_config, log_level), "info", 0, 0,
	    "debug, info, warn, error or off." },
	{ "metrics_listen", CONFIG_STRING, offsetof(host_config, metrics_listen), NULL, 0, 0,
	    "Serve metrics in the Prometheus text format at http://HOST:PORT/metrics, e.g. "
	    "127.0.0.1:9464 (port 0: any free port). Loopback addresses only (127.x.y.z, [::1], "
	    "localhost); others are refused, because the page has no authentication and no "
	    "encryption. It holds counts by method, status, need state, service type and region, "
	    "never an id or a name. Each process of a node needs a port of its own. Default: off. "
	    "See docs/metrics.md." },
	{ "http_listen", CONFIG_STRING, offsetof(host_config, http_listen), NULL, 0, 0,
	    "Serve every RPC method over HTTP by the Connect protocol (POST /haven.<area>.v1.<Svc>/"
	    "<Method>, application/json or application/proto), e.g. 0.0.0.0:8443. HOST:PORT is "
	    "HTTPS with tls_cert and tls_key (no client certificate asked: callers carry a "
	    "session token), else plain HTTP, which is allowed on a loopback address only (behind "
	    "a reverse proxy: deploy/nginx/haven.conf). https:// or http:// may be written in "
	    "front. A process serves its own methods: split processes need a port each. "
	    "Default: off. See services/common/include/haven/connect.h." },
	{ "http_web_dir", CONFIG_STRING, offsetof(host_config, http_web_dir), NULL, 0, 0,
	    "Directory of static files served by GET on the http_listen listener (the web app); "
	    "read once at start. Default: none (404)." },
	{ "http_trusted_proxy", CONFIG_STRING, offsetof(host_config, http_trusted_proxy), NULL, 0,
	    0,
	    "The reverse proxy in front of http_listen (127.0.0.1 or ::1), whose X-Forwarded-For "
	    "names the client: then the anonymous methods (Signals/Challenge, Submit) and "
	    "People/Login are limited per client address too (a keyed hash, in memory, one "
	    "window; never stored or logged). Needs http_listen on loopback (libnng 1.5.2 tells "
	    "the node no peer address, so only where no one but the proxy can connect). Default: "
	    "none (limits overall only). See deploy/nginx/haven.conf and docs/signals.md." },
};
#define N_HOST_OPTIONS (sizeof(host_options) / sizeof(host_options[0]))

struct host {
	const host_config *h_cfg;
	char               h_run[PATH_MAX];
	store             *h_store;
	region_map        *h_regions;
	auth              *h_auth;
	rpc_server        *h_srv;
	auth_lookup_fn     h_lookup; /* set by host_start */
	void              *h_lookup_arg;
	sigset_t           h_signals;
	metrics_http      *h_metrics_http; /* NULL unless metrics_listen */
	connect_server    *h_connect;      /* NULL unless http_listen */
	double             h_start_s;      /* Unix time at host_open */
	audit             *h_audit;        /* host_set_audit; may be NULL */
};

static void
print_usage(FILE *f, const char *prog)
{
	fprintf(f,
	    "usage: %s [--config FILE] [--OPTION VALUE]...\n"
	    "Every setting of the configuration file is also an option: data_dir is --data-dir\n"
	    "(or --data), insecure_tcp is --insecure-tcp, and so on; the command line wins.\n"
	    "  --print-config   print every setting with its default and documentation\n",
	    prog);
}

static bool
valid_level(const char *s, log_level *out)
{
	static const char *const names[] = { "debug", "info", "warn", "error", "off" };

	for (int i = 0; i < 5; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (log_level) i;
			return (true);
		}
	}
	return (false);
}

#define HOST_SECTIONS_MAX 8

/* A command-line option's key ("offer-timeout-urgent-s" as offer_timeout_urgent_s): with its
 * section, or bare when one table of a section has it (the command line names options of the
 * process only). */
static config_key
arg_find(const config_table *t, size_t nt, const char *key, const config_table **tab,
    const config_option **o)
{
	config_key k = config_find(t, nt, key, tab, o);

	for (size_t i = 0; k != CONFIG_KEY_FOUND && strchr(key, '.') == NULL && i < nt; i++) {
		char full[160];

		if (t[i].ct_section != NULL) {
			snprintf(full, sizeof(full), "%s.%s", t[i].ct_section, key);
			k = config_find(&t[i], 1, full, tab, o);
		}
	}
	return (k == CONFIG_KEY_FOUND ? k : CONFIG_KEY_UNKNOWN);
}

/* The second pass: options override the file. */
static int
apply_args(host_config *cfg, const config_table *t, size_t nt, int argc, char **argv,
    const char *prog)
{
	char err[512];
	bool listen_cleared = false;

	for (int i = 1; i < argc; i++) {
		char                 key[128];
		const char          *arg = argv[i];
		const char          *value;
		const char          *eq;
		const config_table  *tab;
		const config_option *o;
		size_t               n;

		if (strcmp(arg, "--config") == 0) {
			i++;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, arg);
			return (2);
		}
		arg += 2;
		eq = strchr(arg, '=');
		n  = eq != NULL ? (size_t) (eq - arg) : strlen(arg);
		if (n >= sizeof(key)) {
			fprintf(stderr, "%s: unknown option '--%s'\n", prog, arg);
			return (2);
		}
		for (size_t j = 0; j < n; j++) {
			key[j] = arg[j] == '-' ? '_' : arg[j];
		}
		key[n] = '\0';
		if (strcmp(key, "data") == 0) {
			strcpy(key, "data_dir");
		}
		if (arg_find(t, nt, key, &tab, &o) != CONFIG_KEY_FOUND) {
			fprintf(stderr, "%s: unknown option '--%.*s' (see --print-config)\n", prog,
			    (int) n, arg);
			return (2);
		}
		if (eq != NULL) {
			value = eq + 1;
		} else if (o->type == CONFIG_BOOL) {
			value = "true";
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			fprintf(stderr, "%s: --%s needs a value\n", prog, arg);
			return (2);
		}
		if (o->type == CONFIG_LIST && tab->ct_out == cfg && !listen_cleared) {
			/* The command line's URLs replace the file's. */
			config_list *l = &cfg->listen;
			for (size_t j = 0; j < l->cl_n; j++) {
				free(l->cl_items[j]);
			}
			l->cl_n        = 0;
			listen_cleared = true;
		}
		if (config_set_table(tab, o, value, err, sizeof(err)) != HV_OK) {
			fprintf(stderr, "%s: %s\n", prog, err);
			return (2);
		}
	}
	return (0);
}

int
host_config_load(host_config *cfg, int argc, char **argv, const char *prog, bool *done)
{
	return (host_config_load_with(cfg, argc, argv, prog, NULL, 0, false, done));
}

int
host_config_load_with(host_config *cfg, int argc, char **argv, const char *prog,
    const config_table *svc, size_t nsvc, bool strict, bool *done)
{
	config_table t[1 + HOST_SECTIONS_MAX];
	const char  *file = NULL;
	char         err[512];
	size_t       nt = 1;
	int          rc;

	*done = false;
	memset(cfg, 0, sizeof(*cfg));
	t[0] = (config_table) { NULL, host_options, N_HOST_OPTIONS, cfg };
	for (size_t i = 0; i < nsvc && nt < 1 + HOST_SECTIONS_MAX; i++) {
		t[nt++] = svc[i];
	}
	/* First pass: --config, --help and --print-config. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			print_usage(stdout, prog);
			*done = true;
			return (0);
		}
		if (strcmp(argv[i], "--print-config") == 0) {
			for (size_t k = 0; k < nt; k++) {
				config_print_doc_table(stdout, &t[k]);
			}
			*done = true;
			return (0);
		}
		if (strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "%s: --config needs a FILE\n", prog);
				return (2);
			}
			file = argv[++i];
		}
	}
	if (config_load_tables(file, t, nt, strict, err, sizeof(err)) != HV_OK) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return (2);
	}
	if ((rc = apply_args(cfg, t, nt, argc, argv, prog)) != 0) {
		return (rc);
	}
	{
		log_level lv;
		int tls = (cfg->tls_ca != NULL) + (cfg->tls_cert != NULL) + (cfg->tls_key != NULL);
		if (!valid_level(cfg->log_level, &lv)) {
			fprintf(stderr,
			    "%s: log_level must be debug, info, warn, error or off, not '%s'\n",
			    prog, cfg->log_level);
			return (2);
		}
		if (strcmp(cfg->check_audit, "queued") != 0 &&
		    strcmp(cfg->check_audit, "durable") != 0) {
			fprintf(stderr, "%s: check_audit must be queued or durable, not '%s'\n",
			    prog, cfg->check_audit);
			return (2);
		}
		if (tls != 0 && tls != 3) {
			fprintf(stderr, "%s: tls_ca, tls_cert and tls_key go together\n", prog);
			return (2);
		}
		if (cfg->backup_dir != NULL && cfg->backup_dir[0] != '/') {
			fprintf(stderr, "%s: backup_dir must be an absolute path, not '%s'\n", prog,
			    cfg->backup_dir);
			return (2);
		}
		for (size_t j = 0; j < cfg->listen.cl_n; j++) {
			if (strncmp(cfg->listen.cl_items[j], "tls+tcp://", 10) == 0 && tls != 3) {
				fprintf(stderr,
				    "%s: listening on %s needs tls_ca, tls_cert and tls_key\n",
				    prog, cfg->listen.cl_items[j]);
				return (2);
			}
		}
		if (cfg->metrics_listen != NULL && cfg->metrics_listen[0] != '\0' &&
		    metrics_check_listen(cfg->metrics_listen, err, sizeof(err)) != HV_OK) {
			fprintf(stderr, "%s: metrics_listen: %s\n", prog, err);
			return (2);
		}
		if (cfg->http_listen != NULL && cfg->http_listen[0] != '\0' &&
		    connect_check_listen(cfg->http_listen, tls == 3, err, sizeof(err)) != HV_OK) {
			fprintf(stderr, "%s: %s\n", prog, err);
			return (2);
		}
	}
	return (0);
}

void
host_config_free(host_config *cfg)
{
	config_free(host_options, N_HOST_OPTIONS, cfg);
}

/* mkdir 0700, accepting an existing directory only when it is closed to others. */
static hv_status
private_dir(const char *path)
{
	struct stat sb;

	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		log_error("cannot create %s: %s", path, strerror(errno));
		return (hv_status_from_errno(errno));
	}
	if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		log_error("%s is not a directory", path);
		return (HV_FAILED_PRECONDITION);
	}
	if ((sb.st_mode & 077) != 0) {
		log_error("%s is open to other users (mode %03o): chmod 700 it", path,
		    (unsigned) (sb.st_mode & 0777));
		return (HV_PERMISSION_DENIED);
	}
	return (HV_OK);
}

/* Where the token keys live: DATA/keys/token-keys (auth.h), shared by the node's processes
 * and left out of backups. The node secret of earlier versions (DATA/node.secret), which
 * never rotated and was copied into backups, is retired: removed when found. */
static hv_status
host_token_keys(const host_config *cfg, char *path, size_t pathsz)
{
	hv_status st;

	snprintf(path, pathsz, "%s/node.secret", cfg->data_dir);
	if (unlink(path) == 0) {
		log_info("removed %s: session tokens are signed with keys/%s now", path,
		    AUTH_KEY_FILE);
	}
	snprintf(path, pathsz, "%s/keys", cfg->data_dir);
	if ((st = private_dir(path)) != HV_OK) {
		return (st);
	}
	snprintf(path, pathsz, "%s/keys/%s", cfg->data_dir, AUTH_KEY_FILE);
	return (HV_OK);
}

/* auth is created before the services that make the partner directory exist: it asks the
 * directory through this trampoline, which host_start points at the real lookup. */
static hv_status
host_lookup(void *arg, const char *org_id, auth_org *out)
{
	host *h = arg;

	if (h->h_lookup == NULL) {
		return (HV_NOT_FOUND);
	}
	return (h->h_lookup(h->h_lookup_arg, org_id, out));
}

/* ---- haven.admin.v1.Admin: backup and status, for the operator and admins ------------- */

/* Whether path is absolute, without "." or ".." components. */
static bool
backup_path_plain(const char *path)
{
	const char *p = path;

	if (p[0] != '/') {
		return (false);
	}
	while (*p != '\0') {
		const char *c = p + 1; /* after a '/' */
		size_t      n = strcspn(c, "/");
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) {
			return (false);
		}
		p = c + n;
	}
	return (true);
}

/* Whether the directory holding dir (which must exist) is root or below it, both resolved. */
static hv_status
backup_under_root(rpc_call *call, const char *root, const char *dir)
{
	char   parent[PATH_MAX], real_parent[PATH_MAX], real_root[PATH_MAX];
	char  *slash;
	size_t n;

	snprintf(parent, sizeof(parent), "%s", dir);
	while ((n = strlen(parent)) > 1 && parent[n - 1] == '/') {
		parent[n - 1] = '\0';
	}
	slash                          = strrchr(parent, '/');
	slash[slash == parent ? 1 : 0] = '\0';
	if (realpath(root, real_root) == NULL) {
		return (rpc_call_error(call, HV_FAILED_PRECONDITION, "backup_dir %s: %s", root,
		    strerror(errno)));
	}
	if (realpath(parent, real_parent) == NULL) {
		return (rpc_call_error(call, HV_FAILED_PRECONDITION,
		    "backup directory's parent %s: %s", parent, strerror(errno)));
	}
	n = strlen(real_root);
	if (strcmp(real_root, "/") != 0 &&
	    (strncmp(real_parent, real_root, n) != 0 ||
	        (real_parent[n] != '\0' && real_parent[n] != '/'))) {
		return (rpc_call_error(call, HV_PERMISSION_DENIED,
		    "backup directory %s is outside backup_dir %s", dir, root));
	}
	return (HV_OK);
}

/*
 * Makes dir ready for Admin/Backup, which the node writes with its own rights for an operator
 * or an admin organisation: dir must be absolute, without "." or ".." components, and inside
 * backup_dir when that is set. A directory that exists must be a directory (not a symlink),
 * the node user's own, and not writable by group or others (anyone who could write there could
 * swap or read the copy); it is made 0700. One that does not exist is created 0700.
 */
static hv_status
backup_dir_ready(rpc_call *call, const host *h, const char *dir)
{
	struct stat sb;
	hv_status   st;

	if (strlen(dir) > PATH_MAX - 16 || !backup_path_plain(dir)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "backup directory must be an absolute path of at most %d bytes without . or .. "
		    "components",
		    PATH_MAX - 16));
	}
	if (h->h_cfg->backup_dir != NULL &&
	    (st = backup_under_root(call, h->h_cfg->backup_dir, dir)) != HV_OK) {
		return (st);
	}
	if (lstat(dir, &sb) != 0) {
		if (errno != ENOENT || mkdir(dir, 0700) != 0) {
			return (rpc_call_error(call, hv_status_from_errno(errno),
			    "backup directory %s: %s", dir, strerror(errno)));
		}
		return (HV_OK);
	}
	if (S_ISLNK(sb.st_mode) || !S_ISDIR(sb.st_mode)) {
		return (rpc_call_error(call, HV_FAILED_PRECONDITION,
		    "backup directory %s is a symbolic link or not a directory", dir));
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 022) != 0) {
		return (rpc_call_error(call, HV_FAILED_PRECONDITION,
		    "backup directory %s must belong to the node's user and be writable by no one "
		    "else",
		    dir));
	}
	if ((sb.st_mode & 0777) != 0700 && chmod(dir, 0700) != 0) {
		return (rpc_call_error(call, hv_status_from_errno(errno), "backup directory %s: %s",
		    dir, strerror(errno)));
	}
	return (HV_OK);
}

void
host_set_audit(host *h, audit *a)
{
	h->h_audit = a;
}

static hv_status
admin_backup(rpc_call *call, void *arg, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	host                                  *h  = arg;
	const Haven__Admin__V1__BackupRequest *in = (const void *) req;
	Haven__Admin__V1__BackupResponse      *out;
	char                                   path[PATH_MAX];
	struct stat                            sb;
	int64_t                                t0 = hv_clock_mono_ms();
	hv_status                              st;

	if ((st = backup_dir_ready(call, h, in->dir)) != HV_OK) {
		return (st);
	}
	if (h->h_audit != NULL) {
		audit_entry e;

		audit_entry_fill(&e, rpc_call_caller(call), "haven.admin.v1.Admin/Backup", "", "",
		    hv_clock_wall_ms());
		if ((st = audit_record(h->h_audit, &e)) != HV_OK) {
			return (rpc_call_error(call, st,
			    "the backup was not made: it cannot be recorded in the audit log (%s)",
			    hv_status_name(st)));
		}
	}
	if ((st = store_backup(h->h_store, in->dir)) != HV_OK) {
		/* The hint only where it is the cause: an I/O error or a full disk is not cured by
		 * another directory. */
		return (rpc_call_error(call, st, "backup into %s failed: %s%s", in->dir,
		    hv_status_name(st),
		    st == HV_FAILED_PRECONDITION ? " (it must be new or empty)" : ""));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__admin__v1__backup_response__init(out);
	snprintf(path, sizeof(path), "%s/data.mdb", in->dir);
	out->path    = rpc_call_strdup(call, path);
	out->bytes   = stat(path, &sb) == 0 ? (uint64_t) sb.st_size : 0;
	out->took_ms = (uint64_t) (hv_clock_mono_ms() - t0);
	log_info("backup written to %s (%llu bytes)", in->dir, (unsigned long long) out->bytes);
	*reply = &out->base;
	return (HV_OK);
}

static hv_status
admin_status(rpc_call *call, void *arg, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	host                             *h = arg;
	Haven__Admin__V1__StatusResponse *out;
	rpc_server_stats                  rs;
	size_t                            map = 0, used = 0;

	(void) req;
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__admin__v1__status_response__init(out);
	(void) store_stats(h->h_store, &map, &used);
	rpc_server_get_stats(h->h_srv, &rs);
	out->schema_version = store_schema_version(h->h_store);
	out->map_size       = map;
	out->used_bytes     = used;
	out->calls          = rs.calls;
	out->rejected       = rs.rejected;
	out->malformed      = rs.malformed;
	*reply              = &out->base;
	return (HV_OK);
}

static const rpc_method_impl admin_methods[] = {
	{ .name = "Backup", .handler = admin_backup, .roles = RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN },
	{ .name = "Status", .handler = admin_status, .roles = RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN },
};

/* ---- metrics: the store and the process ------------------------------------------------ */

static void
host_collect(void *arg, metrics_writer *w)
{
	host         *h   = arg;
	size_t        map = 0, used = 0;
	struct rusage ru;
	struct rlimit rl;
	double        rss, vsize, threads;
	int           fds;

	if (store_stats(h->h_store, &map, &used) == HV_OK) {
		metrics_family(w, "haven_store_map_size_bytes", METRICS_GAUGE,
		    "Size of the LMDB map (grows by doubling when full).");
		metrics_sample(w, "haven_store_map_size_bytes", (double) map, (char *) NULL);
		metrics_family(w, "haven_store_used_bytes", METRICS_GAUGE,
		    "Bytes of the LMDB map in use (pages up to the last one written).");
		metrics_sample(w, "haven_store_used_bytes", (double) used, (char *) NULL);
	}
	metrics_family(w, "haven_store_commits_total", METRICS_COUNTER,
	    "Durable write transactions this process committed (one carries a batch of writes).");
	metrics_sample(w, "haven_store_commits_total", (double) store_commit_count(h->h_store),
	    (char *) NULL);
	metrics_family(w, "haven_store_queued_writes", METRICS_GAUGE,
	    "Writes of this process waiting for the next commit.");
	metrics_sample(w, "haven_store_queued_writes", store_write_queued(h->h_store),
	    (char *) NULL);

	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		metrics_family(w, "process_cpu_seconds_total", METRICS_COUNTER,
		    "User and system CPU time spent, in seconds.");
		metrics_sample(w, "process_cpu_seconds_total",
		    (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		        (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
		    (char *) NULL);
	}
	if (proc_self_status(&rss, &vsize, &threads)) {
		metrics_family(w, "process_resident_memory_bytes", METRICS_GAUGE,
		    "Resident memory size in bytes.");
		metrics_sample(w, "process_resident_memory_bytes", rss, (char *) NULL);
		metrics_family(w, "process_virtual_memory_bytes", METRICS_GAUGE,
		    "Virtual memory size in bytes.");
		metrics_sample(w, "process_virtual_memory_bytes", vsize, (char *) NULL);
		metrics_family(w, "process_threads", METRICS_GAUGE, "Threads of the process.");
		metrics_sample(w, "process_threads", threads, (char *) NULL);
	}
	if ((fds = proc_self_fds()) >= 0) {
		metrics_family(w, "process_open_fds", METRICS_GAUGE, "Open file descriptors.");
		metrics_sample(w, "process_open_fds", fds, (char *) NULL);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		metrics_family(w, "process_max_fds", METRICS_GAUGE,
		    "The limit of open file descriptors.");
		metrics_sample(w, "process_max_fds", (double) rl.rlim_cur, (char *) NULL);
	}
	metrics_family(w, "process_start_time_seconds", METRICS_GAUGE,
	    "When the process started (opened its host), in seconds since the Unix epoch.");
	metrics_sample(w, "process_start_time_seconds", h->h_start_s, (char *) NULL);
}

/*
 * As many malloc arenas as cores (two at the least) instead of glibc's eight per core. Each
 * thread that allocates gets an arena of its own up to that limit, and an arena keeps the peak
 * of what its threads held: a node runs some 16 threads (nng's, the workers, the audit writer,
 * the timers), so by default it holds 16 peaks. Measured side by side (8-minute soaks, the same
 * load, 2 cores): anonymous memory 11.8 -> 12.3 MB with two arenas against 16.1 -> 16.9 MB
 * with glibc's default, calls/s and p50/p99 of every method the same within 2 %
 * (docs/reliability.md, "Soak"). MALLOC_ARENA_MAX in the environment still decides.
 */
static void
malloc_arenas(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (getenv("MALLOC_ARENA_MAX") == NULL) {
		(void) mallopt(M_ARENA_MAX, cores > 2 ? (int) cores : 2);
	}
}

hv_status
host_open(host **out, const host_config *cfg, const char *name)
{
	host              *h;
	char               path[PATH_MAX];
	char               err[512];
	log_level          lv = LOG_LEVEL_INFO;
	store_options      so = { .schema_version = HOST_SCHEMA_VERSION };
	rpc_server_options ro = { 0 };
	auth_options       ao = { 0 };
	hv_status          st;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	h->h_cfg = cfg;
	malloc_arenas();
	(void) valid_level(cfg->log_level, &lv);
	log_init(name, lv);
	h->h_start_s = (double) hv_clock_wall_ms() / 1e3;

	/* Signals are taken by host_wait; every thread started from here inherits the mask. */
	sigemptyset(&h->h_signals);
	sigaddset(&h->h_signals, SIGTERM);
	sigaddset(&h->h_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &h->h_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((st = private_dir(cfg->data_dir)) != HV_OK) {
		goto fail;
	}
	snprintf(h->h_run, sizeof(h->h_run), "%s/run", cfg->data_dir);
	if ((st = private_dir(h->h_run)) != HV_OK) {
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/store", cfg->data_dir);
	if ((st = store_open(&h->h_store, path, &so)) != HV_OK) {
		log_error("cannot open the store in %s: %s", path, hv_status_name(st));
		goto fail;
	}
	if (cfg->regions != NULL) {
		st = region_map_load(cfg->regions, &h->h_regions, err, sizeof(err));
	} else {
		st = region_map_default(&h->h_regions);
		snprintf(err, sizeof(err), "default region map");
	}
	if (st != HV_OK) {
		log_error("region map: %s", err);
		goto fail;
	}
	if ((st = host_token_keys(cfg, path, sizeof(path))) != HV_OK) {
		goto fail;
	}
	ao.key_file    = path;
	ao.ca_file     = cfg->tls_ca;
	ao.token_ttl_s = (uint32_t) cfg->token_ttl_s;
	ao.lookup      = host_lookup;
	ao.lookup_arg  = h;
	if ((st = auth_open(&h->h_auth, &ao)) != HV_OK) {
		goto fail;
	}

	ro.workers       = (unsigned) cfg->workers;
	ro.queue         = (unsigned) cfg->queue;
	ro.insecure_tcp  = cfg->insecure_tcp;
	ro.tls_ca_file   = cfg->tls_ca;
	ro.tls_cert_file = cfg->tls_cert;
	ro.tls_key_file  = cfg->tls_key;
	ro.auth          = h->h_auth;
	ro.name          = name;
	if ((st = rpc_server_open(&h->h_srv, &ro)) != HV_OK) {
		log_error("cannot create the RPC server: %s", hv_status_name(st));
		goto fail;
	}
	if ((st = rpc_server_add_service(h->h_srv, &haven__admin__v1__admin__descriptor,
	         admin_methods, sizeof(admin_methods) / sizeof(admin_methods[0]), h)) != HV_OK ||
	    (st = metrics_add_collector(rpc_server_metrics(h->h_srv), host_collect, h)) != HV_OK) {
		goto fail;
	}
	*out = h;
	return (HV_OK);
fail:
	host_close(h);
	return (st);
}

store *
host_store(host *h)
{
	return (h->h_store);
}

const region_map *
host_regions(host *h)
{
	return (h->h_regions);
}

rpc_server *
host_server(host *h)
{
	return (h->h_srv);
}

auth *
host_auth(host *h)
{
	return (h->h_auth);
}

const host_config *
host_cfg(host *h)
{
	return (h->h_cfg);
}

void
host_run_path(host *h, const char *name, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/%s", h->h_run, name);
}

hv_status
host_start(host *h, auth_lookup_fn lookup, void *lookup_arg)
{
	const host_config *cfg = h->h_cfg;
	char               url[PATH_MAX + 32];
	hv_status          st;

	h->h_lookup     = lookup;
	h->h_lookup_arg = lookup_arg;
	if (lookup != NULL && (st = auth_register(h->h_auth, h->h_srv)) != HV_OK) {
		return (st);
	}
	if (cfg->listen.cl_n == 0) {
		snprintf(url, sizeof(url), "ipc://%s/haven.sock", h->h_run);
		if ((st = rpc_server_listen(h->h_srv, url)) != HV_OK) {
			return (st);
		}
		log_info("listening on %s", url);
	}
	for (size_t i = 0; i < cfg->listen.cl_n; i++) {
		if ((st = rpc_server_listen(h->h_srv, cfg->listen.cl_items[i])) != HV_OK) {
			log_error("cannot listen on %s: %s", cfg->listen.cl_items[i],
			    hv_status_name(st));
			return (st);
		}
		log_info("listening on %s", cfg->listen.cl_items[i]);
	}
	if ((st = rpc_server_start(h->h_srv)) != HV_OK) {
		return (st);
	}
	if (cfg->metrics_listen != NULL && cfg->metrics_listen[0] != '\0' &&
	    (st = metrics_http_start(&h->h_metrics_http, rpc_server_metrics(h->h_srv),
	         cfg->metrics_listen)) != HV_OK) {
		log_error("cannot serve metrics on %s: %s", cfg->metrics_listen,
		    hv_status_name(st));
		return (st);
	}
	if (cfg->http_listen != NULL && cfg->http_listen[0] != '\0') {
		connect_options co = { .listen = cfg->http_listen,
			.tls_cert_file         = cfg->tls_cert,
			.tls_key_file          = cfg->tls_key,
			.web_dir               = cfg->http_web_dir,
			.trusted_proxy         = cfg->http_trusted_proxy };
		if ((st = connect_server_start(&h->h_connect, h->h_srv, &co)) != HV_OK) {
			log_error("cannot serve the Connect API on %s: %s", cfg->http_listen,
			    hv_status_name(st));
			return (st);
		}
	}
	log_info("ready (store schema %u)", store_schema_version(h->h_store));
	return (HV_OK);
}

int
host_http_port(host *h)
{
	return (h != NULL ? connect_server_port(h->h_connect) : 0);
}

int
host_metrics_port(host *h)
{
	return (h != NULL ? metrics_http_port(h->h_metrics_http) : 0);
}

int
host_wait(host *h)
{
	return (host_wait_signals(&h->h_signals));
}

void
host_close(host *h)
{
	if (h == NULL) {
		return;
	}
	/* First: collectors read the store and the services, which close after this. */
	metrics_http_stop(h->h_metrics_http);
	connect_server_stop(h->h_connect); /* its calls in flight finish on the RPC workers */
	rpc_server_close(h->h_srv);        /* in-flight calls finish first */
	auth_close(h->h_auth);
	region_map_free(h->h_regions);
	store_close(h->h_store);
	free(h);
}
