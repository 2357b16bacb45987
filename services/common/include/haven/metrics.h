/*
 * metrics.h - operational metrics in the Prometheus text exposition format (version 0.0.4),
 * served on a local HTTP port.
 *
 * A registry (metrics) holds two kinds of figures:
 *
 *  - RPC calls, recorded on the hot path without locks: per method a counter per status code
 *    and a latency histogram with fixed buckets (100 us .. 1 s). The RPC server owns one
 *    registry (rpc_server_metrics) and records every call it answers.
 *  - Collectors: functions that run at scrape time and write gauge or counter families with
 *    the writer functions below (a service's counts, the store's size, process figures). A
 *    collector reads what it needs then (an LMDB read transaction, a mutex held briefly) and
 *    must stay cheap: it runs on every scrape.
 *
 * Privacy: the page is for the node's operator and must never hold personal data. Label
 * values are method names, status names, need states, service types and region names; never
 * an id of a person, a referral, an organisation or a service, and never free text. A method
 * name the server does not know is recorded as method="unknown", so a caller cannot grow the
 * label set.
 *
 * The HTTP server (metrics_http_*) answers GET (and HEAD) /metrics with the page, other paths
 * with 404 and other methods with 405. It is unauthenticated and unencrypted, so it listens on
 * loopback addresses only (metrics_check_listen), and answers 403 to a request whose Host
 * header is not a loopback name (a web page reaching the port by DNS rebinding).
 *
 * Threads: metrics_method_observe from any thread at any time; metrics_method_get,
 * metrics_add_collector and metrics_render from any thread (they take the registry's mutex
 * briefly; collectors run without it). metrics_close when nothing else uses the registry.
 */
#ifndef HAVEN_METRICS_H
#define HAVEN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/status.h"

typedef struct metrics        metrics;
typedef struct metrics_method metrics_method;
typedef struct metrics_writer metrics_writer;
typedef struct metrics_http   metrics_http;
typedef struct rpc_server     rpc_server; /* rpc.h */

typedef enum metrics_type {
	METRICS_COUNTER,
	METRICS_GAUGE,
} metrics_type;

/* Methods a registry keeps series for; metrics_method_get returns NULL past it. */
#define METRICS_METHODS_MAX 1024
/* The largest page metrics_render makes (HV_RESOURCE_EXHAUSTED past it). */
#define METRICS_PAGE_MAX (16u * 1024 * 1024)
/* Labels of one sample, at most. */
#define METRICS_LABELS_MAX 8
/* The latency buckets' upper bounds in microseconds (le="0.0001" .. le="1"); +Inf follows. */
#define METRICS_BUCKETS 12

/* The RPC server's metrics registry, alive until rpc_server_close. Every answered call
 * is recorded in it by method and status with its latency, also calls refused before a handler
 * ran (RESOURCE_EXHAUSTED, UNIMPLEMENTED, ...); a method name the server does not serve counts
 * as method="unknown". The server adds a collector for its queue (haven_rpc_*); services add
 * theirs in their register functions; the host serves the page (host.h, metrics_listen). */
metrics *rpc_server_metrics(rpc_server *srv);

/* Creates an empty registry; *out is the caller's (metrics_close). */
hv_status metrics_open(metrics **out);

/* Frees the registry, its method series and its collector list. Nothing may record, render or
 * add collectors any more. NULL allowed. */
void metrics_close(metrics *m);

/* ---- RPC calls ------------------------------------------------------------------------ */

/* The series of a method (full name, "haven.health.v1.Health/Check"), created on first use.
 * The pointer stays valid until metrics_close. NULL for an empty or over-long name (over 255
 * bytes), when the registry holds METRICS_METHODS_MAX methods, or when memory is out. */
metrics_method *metrics_method_get(metrics *m, const char *name);

/* Records one answered call: its status (a code outside the canonical set counts as UNKNOWN)
 * and how long it took, in microseconds (negative counts as 0). Lock-free (relaxed atomics).
 * mm may be NULL: nothing is recorded. */
void metrics_method_observe(metrics_method *mm, hv_status code, int64_t duration_us);

/* Calls recorded for a method and status so far (for tests). 0 for NULL. */
uint64_t metrics_method_calls(const metrics_method *mm, hv_status code);

/* ---- collectors ----------------------------------------------------------------------- */

/* Writes families with metrics_family and metrics_sample. arg is the one given to
 * metrics_add_collector. Runs on the scraping thread, never concurrently with itself for one
 * render but possibly while the service handles calls; must not call metrics_add_collector,
 * metrics_method_get or metrics_render. */
typedef void (*metrics_collect_fn)(void *arg, metrics_writer *w);

/* Adds a collector; collectors run in the order they were added, after the RPC families. arg
 * must stay valid until the registry is closed or no scrape can run any more (the host stops
 * its HTTP server before the services close). HV_RESOURCE_EXHAUSTED when memory is out. */
hv_status metrics_add_collector(metrics *m, metrics_collect_fn fn, void *arg);

/* Starts a family: its # HELP and # TYPE lines. name: [a-zA-Z_:][a-zA-Z0-9_:]*; help is
 * escaped as the format says. Counters' names end in _total by convention. A family's
 * samples follow its header before the next family starts, and a name appears once per page. */
void metrics_family(metrics_writer *w, const char *name, metrics_type type, const char *help);

/* Writes one sample: name, then label name/value pairs, ended by NULL:
 *   metrics_sample(w, "haven_capacity_free_places", 3, "region", "Limburg", "type",
 *       "shelter", (char *) NULL);
 * Label names: [a-zA-Z_][a-zA-Z0-9_]* (not starting with "__"); values are escaped (\\, \",
 * \n). At most METRICS_LABELS_MAX labels. A sample with an invalid name or label name, or
 * too many labels, is left out (and counted in haven_metrics_invalid_samples_total). NaN
 * and infinities are written as NaN, +Inf and -Inf. */
void metrics_sample(metrics_writer *w, const char *name, double value, ...)
    __attribute__((sentinel));

/* The same with the labels in an array of 2 * nlabels strings (name, value, name, value ...). */
void metrics_sample_labels(metrics_writer *w, const char *name, double value,
    const char *const *labels, size_t nlabels);

/* Renders the whole page: the RPC families, every collector, then
 * haven_metrics_render_duration_seconds. On HV_OK *out is a malloc'd NUL-terminated page
 * (the caller frees it) of *len bytes. HV_RESOURCE_EXHAUSTED when memory is out or the page
 * would exceed METRICS_PAGE_MAX. */
hv_status metrics_render(metrics *m, char **out, size_t *len);

/* ---- the HTTP endpoint ---------------------------------------------------------------- */

/* Checks a listen address: "HOST:PORT" with HOST 127.x.y.z, localhost or [::1] and PORT
 * 0..65535 (0: any free port). Anything else, a wildcard or a routable address above all, is
 * HV_INVALID_ARGUMENT with err (errsz bytes) saying why: the page is unauthenticated. */
hv_status metrics_check_listen(const char *addr, char *err, size_t errsz);

/* Serves m at http://addr/metrics (addr as metrics_check_listen takes it) with the
 * Content-Type "text/plain; version=0.0.4; charset=utf-8". Pages are rendered on a thread of
 * the server's own, one scrape at a time, so that a slow collector never holds up nng's
 * threads (and the RPC server's callbacks on them); scrapes beyond a few waiting get 503.
 * HV_INVALID_ARGUMENT for a bad address, HV_ALREADY_EXISTS when the port is taken, and the
 * failure is logged. m must outlive the server (metrics_http_stop). */
hv_status metrics_http_start(metrics_http **out, metrics *m, const char *addr);

/* The TCP port the server listens on (the one chosen when the address said 0). */
int metrics_http_port(const metrics_http *h);

/* Stops serving: scrapes waiting are answered with an error, the one rendering finishes, and
 * no collector runs after it returns. NULL allowed. */
void metrics_http_stop(metrics_http *h);

#endif
