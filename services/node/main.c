/*
 * haven-node - runs a haven node: the RPC server with the node's services, over its data
 * directory (the LMDB store and the node secret), until SIGTERM or SIGINT.
 *
 *   haven-node --data DIR [--listen URL]... [--tls-ca F --tls-cert F --tls-key F]
 *              [--insecure-tcp] [--workers N]
 *
 * Without --listen the node listens on ipc://DIR/run/haven.sock, where the haven CLI finds
 * it. Exit codes: 0 after a clean shutdown, 2 for a usage or configuration error, 1 when the
 * node cannot start.
 */
#include "haven/log.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCHEMA_VERSION 1
#define MAX_URLS 8

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: haven-node --data DIR [--listen URL]... [--tls-ca FILE --tls-cert FILE "
	    "--tls-key FILE]\n"
	    "                  [--insecure-tcp] [--workers N]\n"
	    "  --data DIR       data directory (store, node secret, run/haven.sock); created 0700\n"
	    "  --listen URL     inproc://, ipc:// or tls+tcp:// (tcp:// needs --insecure-tcp);\n"
	    "                   default ipc://DIR/run/haven.sock\n"
	    "  --tls-ca FILE    CA whose certificates partners must present (tls+tcp://)\n"
	    "  --tls-cert FILE  the node's server certificate (tls+tcp://)\n"
	    "  --tls-key FILE   its private key, mode 0600 (tls+tcp://)\n"
	    "  --insecure-tcp   allow plain tcp:// (development only)\n"
	    "  --workers N      handler threads (1..256, default 4)\n");
}

/* mkdir -m 0700 that accepts an existing directory only when it is closed to others. */
static int
private_dir(const char *path)
{
	struct stat sb;

	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "haven-node: cannot create %s: %s\n", path, strerror(errno));
		return (-1);
	}
	if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "haven-node: %s is not a directory\n", path);
		return (-1);
	}
	if ((sb.st_mode & 077) != 0) {
		fprintf(stderr, "haven-node: %s is open to other users (mode %03o); run chmod 700 %s\n",
		    path, (unsigned) (sb.st_mode & 0777), path);
		return (-1);
	}
	return (0);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "data", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "tls-ca", required_argument, NULL, 'a' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "insecure-tcp", no_argument, NULL, 'i' },
		{ "workers", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	rpc_server_options so       = { .name = "node" };
	store_options      sto      = { .schema_version = SCHEMA_VERSION };
	const char        *data     = NULL;
	const char        *urls[MAX_URLS];
	size_t             nurls    = 0;
	char               path[PATH_MAX];
	char               defurl[PATH_MAX + 8];
	store             *st       = NULL;
	rpc_server        *srv      = NULL;
	sigset_t           sigs;
	int                sig;
	int                ret = 1;
	int                c;
	hv_status          s;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			data = optarg;
			break;
		case 'l':
			if (nurls == MAX_URLS) {
				fprintf(stderr, "haven-node: at most %d --listen URLs\n", MAX_URLS);
				return (2);
			}
			urls[nurls++] = optarg;
			break;
		case 'a':
			so.tls_ca_file = optarg;
			break;
		case 'c':
			so.tls_cert_file = optarg;
			break;
		case 'k':
			so.tls_key_file = optarg;
			break;
		case 'i':
			so.insecure_tcp = true;
			break;
		case 'w': {
			char *end;
			long  n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > 256) {
				fprintf(stderr, "haven-node: --workers must be 1..256, not '%s'\n", optarg);
				return (2);
			}
			so.workers = (unsigned) n;
			break;
		}
		case 'h':
			usage(stdout);
			return (0);
		default:
			usage(stderr);
			return (2);
		}
	}
	if (data == NULL || optind != argc) {
		usage(stderr);
		return (2);
	}

	log_init("node", LOG_LEVEL_INFO);
	/* Signals are taken by sigwait below; every thread started from here inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (private_dir(data) != 0) {
		return (2);
	}
	snprintf(path, sizeof(path), "%s/run", data);
	if (private_dir(path) != 0) {
		return (2);
	}
	if (nurls == 0) {
		snprintf(defurl, sizeof(defurl), "ipc://%s/run/haven.sock", data);
		urls[nurls++] = defurl;
	}

	snprintf(path, sizeof(path), "%s/store", data);
	if ((s = store_open(&st, path, &sto)) != HV_OK) {
		log_error("cannot open the store in %s: %s", path, hv_status_name(s));
		goto out;
	}
	if ((s = rpc_server_open(&srv, &so)) != HV_OK) {
		log_error("cannot create the RPC server: %s", hv_status_name(s));
		goto out;
	}
	for (size_t i = 0; i < nurls; i++) {
		if ((s = rpc_server_listen(srv, urls[i])) != HV_OK) {
			log_error("cannot listen on %s: %s", urls[i], hv_status_name(s));
			ret = s == HV_INVALID_ARGUMENT || s == HV_PERMISSION_DENIED ? 2 : 1;
			goto out;
		}
		log_info("listening on %s", urls[i]);
	}
	if ((s = rpc_server_start(srv)) != HV_OK) {
		log_error("cannot start the RPC server: %s", hv_status_name(s));
		goto out;
	}
	log_info("node ready (store schema %u)", store_schema_version(st));

	do {
		if (sigwait(&sigs, &sig) != 0) {
			sig = 0;
		}
	} while (sig != SIGTERM && sig != SIGINT);
	log_info("signal %d: shutting down", sig);
	ret = 0;
out:
	rpc_server_close(srv); /* finishes in-flight calls */
	store_close(st);
	if (ret == 0) {
		log_info("stopped cleanly");
	}
	return (ret);
}
