/*
 * limit.h - rate limits at the edge: events per source address and from everyone together, in
 * memory only, over a short window (token buckets refilled evenly over window_ms).
 *
 * A source is never an address: it is the first LIMIT_SOURCE_LEN bytes of
 * HMAC-SHA256(key, address) under a random key made once per process (limit_source), so that
 * what a limiter holds cannot be turned back into an address by a dictionary of addresses, and
 * is forgotten once its bucket is full again (at most window_ms after its last event). Nothing
 * here is written to disk or to a log.
 *
 * Who uses it: the signals service (Challenge and Submit, docs/signals.md) and People/Login
 * (attempts per source, beside the back-off per name); the transport puts the source of a call
 * into it (rpc_call_source in rpc.h; over HTTP from X-Forwarded-For of a trusted proxy only,
 * connect.h). A call whose source is unknown counts against the overall limit only: one bucket
 * for every unknown caller would let one of them lock all the others out.
 *
 * Thread-safe: one mutex per limiter. A full table evicts the source whose bucket is the
 * fullest (the one nearest to being forgotten anyway).
 */
#ifndef HAVEN_LIMIT_H
#define HAVEN_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/metrics.h"
#include "haven/status.h"

#define LIMIT_SOURCE_LEN  16
#define LIMIT_SOURCES_MAX 65536 /* sources a limiter may hold at once */

typedef struct limit limit;

typedef struct limit_options {
	uint32_t window_ms;   /* the refill period of a bucket; 0: 60000 */
	uint32_t per_source;  /* events per source per window (and its burst); 0: no such limit */
	uint32_t overall;     /* events from everyone per window (and burst); 0: no such limit */
	uint32_t sources_max; /* sources held at once, at most LIMIT_SOURCES_MAX; 0: 4096 */
	int64_t (*now_ms)(void *arg); /* NULL: the monotonic clock */
	void *now_arg;
} limit_options;

typedef enum limit_verdict {
	LIMIT_OK      = 0, /* taken */
	LIMIT_SOURCE  = 1, /* refused: this source's bucket is empty */
	LIMIT_OVERALL = 2, /* refused: everyone's bucket is empty */
} limit_verdict;

/* A new limiter into *out. HV_INVALID_ARGUMENT for sources_max over LIMIT_SOURCES_MAX,
 * HV_RESOURCE_EXHAUSTED without memory. */
hv_status limit_open(limit **out, const limit_options *opts);
/* Frees l (NULL allowed); its sources are wiped. */
void limit_close(limit *l);

/* One event of source (LIMIT_SOURCE_LEN bytes; NULL: unknown): LIMIT_OK when both the
 * source's bucket and the overall one had a token (both are then spent), else which one was
 * empty (nothing is spent). NULL l: LIMIT_OK. */
limit_verdict limit_take(limit *l, const uint8_t *source);

/* Sources held now (for tests and metrics). */
size_t limit_sources(limit *l);

/* Events refused since l was opened, by the bucket that was empty. NULL l: zeros. */
void limit_refusals(limit *l, uint64_t *per_source, uint64_t *overall);

/* The refusals of a service's n limiters (names[i]: "submit", ...) as one counter family,
 * family{limiter, bucket="source"|"overall"}: one call per family and page (a family may be
 * written once). */
void limit_collect(metrics_writer *w, const char *family, const char *const *names,
    limit *const *limits, size_t n);

/* The source of an address (len bytes: the transport's form of it, e.g. an IPv4 address's 4
 * bytes, an IPv6 address's /64): keyed with this process's random key, made at the first
 * call. false when no random key can be made (out is then unset and the caller must treat
 * the source as unknown). */
bool limit_source(uint8_t out[LIMIT_SOURCE_LEN], const void *address, size_t len);

#endif
