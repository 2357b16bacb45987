/*
 * rpc_server.c - the RPC server's life (rpc.h): open with its options, listen, start, close,
 * and the figures it reports. The top of the server's pieces: it puts together the dispatch
 * (rpc_dispatch.c: method table, checks, workers), Health (rpc_health.c) and the nng
 * transport (rpc_nng.c); none of them calls back into this file.
 */
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/metrics.h"
#include "haven/rpc.h"

#include "rpc_dispatch.h"
#include "rpc_health.h"
#include "rpc_nng.h"

#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The server's own figures at scrape time: refusals, the queue and the services' health. */
static void
rpc_collect(void *arg, metrics_writer *w)
{
	rpc_server      *srv = arg;
	rpc_health_entry health[RPC_MAX_HEALTH];
	size_t           nhealth;
	unsigned         queued, inflight;

	pthread_mutex_lock(&srv->sv_mtx);
	queued = srv->sv_qlen;
	pthread_mutex_unlock(&srv->sv_mtx);
	inflight = atomic_load(&srv->sv_inflight);
	nhealth  = rpc_health_snapshot(&srv->sv_health, health);

	metrics_family(w, "haven_rpc_queue_rejected_total", METRICS_COUNTER,
	    "Calls answered RESOURCE_EXHAUSTED because the queue in front of the workers was "
	    "full.");
	metrics_sample(w, "haven_rpc_queue_rejected_total", (double) atomic_load(&srv->sv_rejected),
	    (char *) NULL);
	metrics_family(w, "haven_rpc_malformed_total", METRICS_COUNTER,
	    "Calls answered INVALID_ARGUMENT before dispatch (envelope, metadata or payload).");
	metrics_sample(w, "haven_rpc_malformed_total", (double) atomic_load(&srv->sv_malformed),
	    (char *) NULL);
	metrics_family(w, "haven_http_refused_total", METRICS_COUNTER,
	    "HTTP requests to the Connect API answered before a call began (bad verb, content "
	    "type, length or headers; too many at once; shutting down), by HTTP status.");
	for (size_t i = 0; i < 9; i++) {
		char code[8];
		snprintf(code, sizeof(code), "%u", i < 8 ? rpc_http_refused_status[i] : 0);
		metrics_sample(w, "haven_http_refused_total",
		    (double) atomic_load(&srv->sv_http_refused[i]), "status",
		    i < 8 ? code : "other", (char *) NULL);
	}
	metrics_family(w, "haven_http_slow_bodies_total", METRICS_COUNTER,
	    "Connect API requests whose body did not arrive within the read timeout (connection "
	    "closed).");
	metrics_sample(w, "haven_http_slow_bodies_total", (double) atomic_load(&srv->sv_http_slow),
	    (char *) NULL);
	metrics_family(w, "haven_rpc_relistens_total", METRICS_COUNTER,
	    "Times a listener that stopped accepting (libnng 1.5.2) was made again.");
	metrics_sample(w, "haven_rpc_relistens_total",
	    (double) rpc_server_relistens(srv, RPC_TRANSPORT_IPC), "transport", "ipc",
	    (char *) NULL);
	metrics_sample(w, "haven_rpc_relistens_total",
	    (double) rpc_server_relistens(srv, RPC_TRANSPORT_TLS), "transport", "tls",
	    (char *) NULL);
	metrics_family(w, "haven_rpc_queued_calls", METRICS_GAUGE,
	    "Calls waiting for a worker thread now.");
	metrics_sample(w, "haven_rpc_queued_calls", queued, (char *) NULL);
	metrics_family(w, "haven_rpc_queue_capacity", METRICS_GAUGE,
	    "Calls that may wait for a worker; more are refused.");
	metrics_sample(w, "haven_rpc_queue_capacity", srv->sv_opts.queue, (char *) NULL);
	metrics_family(w, "haven_rpc_in_flight_calls", METRICS_GAUGE,
	    "Calls received and not yet answered.");
	metrics_sample(w, "haven_rpc_in_flight_calls", inflight, (char *) NULL);
	metrics_family(w, "haven_rpc_workers", METRICS_GAUGE, "Handler threads.");
	metrics_sample(w, "haven_rpc_workers", srv->sv_opts.workers, (char *) NULL);
	metrics_family(w, "haven_rpc_serving", METRICS_GAUGE,
	    "1 while a service answers SERVING to Health/Check, else 0.");
	for (size_t i = 0; i < nhealth; i++) {
		metrics_sample(w, "haven_rpc_serving", health[i].h_serving ? 1 : 0, "service",
		    health[i].h_name, (char *) NULL);
	}
}

hv_status
rpc_server_open(rpc_server **out, const rpc_server_options *opts)
{
	rpc_server *srv;
	hv_status   st = HV_RESOURCE_EXHAUSTED;

	if (out == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (opts != NULL) {
		srv->sv_opts = *opts;
	}
	if (srv->sv_opts.workers == 0) {
		srv->sv_opts.workers = 4;
	}
	if (srv->sv_opts.queue == 0) {
		srv->sv_opts.queue = 256;
	}
	if (srv->sv_opts.contexts == 0) {
		srv->sv_opts.contexts = srv->sv_opts.workers + srv->sv_opts.queue + 8;
	}
	if (srv->sv_opts.max_msg == 0) {
		srv->sv_opts.max_msg = RPC_DEFAULT_MAX_MSG;
	}
	if (srv->sv_opts.call_budget == 0) {
		srv->sv_opts.call_budget = 4 * srv->sv_opts.max_msg;
	}
	if (srv->sv_opts.default_timeout_ms == 0) {
		srv->sv_opts.default_timeout_ms = 30000;
	}
	if (srv->sv_opts.max_timeout_ms == 0) {
		srv->sv_opts.max_timeout_ms = 300000;
	}
	if (srv->sv_opts.name == NULL) {
		srv->sv_opts.name = "haven";
	}
	srv->sv_uid = getuid();
	rpc_dispatch_init(srv);
	rpc_health_init(&srv->sv_health);

	if ((st = metrics_open(&srv->sv_metrics)) != HV_OK ||
	    (st = metrics_add_collector(srv->sv_metrics, rpc_collect, srv)) != HV_OK) {
		goto fail;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((srv->sv_unknown = metrics_method_get(srv->sv_metrics, "unknown")) == NULL) {
		goto fail;
	}

	if ((st = rpc_nng_open(srv)) != HV_OK) {
		goto fail;
	}
	if ((st = rpc_server_add_service(srv, &haven__health__v1__health__descriptor,
	         rpc_health_methods, 1, &srv->sv_health)) != HV_OK ||
	    (st = rpc_server_add_service(srv, &haven__diag__v1__diagnostics__descriptor,
	         rpc_diag_methods, 1, &srv->sv_health)) != HV_OK) {
		goto fail;
	}
	*out = srv;
	return (HV_OK);

fail:
	rpc_server_close(srv);
	return (st);
}

hv_status
rpc_server_listen(rpc_server *srv, const char *url)
{
	if (srv == NULL || url == NULL || srv->sv_started) {
		return (HV_INVALID_ARGUMENT);
	}
	return (rpc_nng_listen(srv, url));
}

uint64_t
rpc_server_relistens(rpc_server *srv, rpc_transport t)
{
	return (srv != NULL ? rpc_nng_relistens(srv, t) : 0);
}

hv_status
rpc_server_start(rpc_server *srv)
{
	hv_status st;

	if (srv == NULL || srv->sv_started) {
		return (HV_INVALID_ARGUMENT);
	}
	srv->sv_started = true;
	if ((st = rpc_dispatch_start(srv)) != HV_OK) {
		return (st);
	}
	if ((st = rpc_nng_start(srv)) != HV_OK) {
		return (st);
	}
	log_info("rpc: %s serving with %u workers, queue %u, %u contexts", srv->sv_opts.name,
	    srv->sv_opts.workers, srv->sv_opts.queue, srv->sv_opts.contexts);
	return (HV_OK);
}

metrics *
rpc_server_metrics(rpc_server *srv)
{
	return (srv != NULL ? srv->sv_metrics : NULL);
}

void
rpc_server_get_stats(rpc_server *srv, rpc_server_stats *out)
{
	out->calls     = atomic_load(&srv->sv_calls);
	out->rejected  = atomic_load(&srv->sv_rejected);
	out->malformed = atomic_load(&srv->sv_malformed);
}

void
rpc_server_set_serving(rpc_server *srv, const char *service, bool serving)
{
	rpc_health_set(&srv->sv_health, service, serving);
}

void
rpc_server_close(rpc_server *srv)
{
	if (srv == NULL) {
		return;
	}
	/* Stop taking new calls, let queued and running ones finish (bounded wait). */
	rpc_health_closing(&srv->sv_health);
	rpc_dispatch_drain(srv);
	rpc_nng_stop_watch(srv); /* it touches the listeners */
	rpc_dispatch_join(srv);
	if (!rpc_nng_close(srv)) {
		/* libnng's callbacks may still reach srv: it stays, and the process stops. */
		return;
	}
	rpc_dispatch_destroy(srv);
	metrics_close(srv->sv_metrics);
	rpc_health_destroy(&srv->sv_health);
	free(srv);
}
