/*
 * alerts_internal.h - what the files of the alerts service share: the service handle, the
 * key layouts, one delivery job as the sender carries it out of the store, and the senders
 * (alerts_send.c). Layers, bottom up: alerts.c (keys, names, clock, outbox, timers) <-
 * alerts_send.c, alerts_rpc.c <- alerts_round.c <- alerts_open.c (open, sender thread,
 * close). Private to services/alerts.
 */
#ifndef HAVEN_ALERTS_INTERNAL_H
#define HAVEN_ALERTS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/metrics.h"
#include "haven/ticker.h"
#include "alerts.h"

#define ALERTS_NODE_URL_MAX    200
#define ALERTS_KEY_MAX         160 /* idempotency keys and table keys */
#define ALERTS_TIMER_KEY_MAX   100
#define ALERTS_BATCH           16 /* deliveries sent per read of the outbox */
#define ALERTS_TIMER_BATCH     64
#define ALERTS_BACKOFF_MAX_MS  (15LL * 60 * 1000)
#define ALERTS_SEND_TIMEOUT_MS 10000L
#define ALERTS_PAGE_DEFAULT    50
#define ALERTS_PAGE_MAX        200
#define ALERTS_ALL_RECIPIENTS  16    /* named orgs and a region's coordinators together */
#define ALERTS_META_SEQ        "seq" /* alerts.meta: the last seq handed out (be64) */

#define ALERTS_PROBE_RESULTS  32    /* outcomes of test deliveries kept for TestChannels */
#define ALERTS_PROBE_LIMITS   64    /* (caller, organisation) pairs remembered for the rate */
#define ALERTS_PROBE_EVERY_MS 15000 /* one test per caller and organisation this often */
#define ALERTS_PROBE_WAITING  2     /* TestChannels calls waiting for their outcomes at once */

typedef Haven__Alerts__V1__AlertEvent AlertEvent;
typedef Haven__Alerts__V1__Channels   Channels;
typedef Haven__Alerts__V1__Delivery   Delivery;
typedef Haven__Alerts__V1__Timer      Timer;
typedef Haven__Alerts__V1__Channel    Channel;
#define CHANNEL(x) HAVEN__ALERTS__V1__CHANNEL__##x

/* The outcome of one test delivery (alerts_probe.c), kept for the TestChannels call that
 * waits for it. */
typedef struct alerts_probe_result {
	char pr_key[ALERTS_KEY_MAX]; /* "" : free */
	bool pr_ok;
	char pr_err[160];
} alerts_probe_result;

/* When a caller last tested an organisation's channels (monotonic ms). */
typedef struct alerts_probe_limit {
	char    pl_who[2 * RPC_ORG_ID_MAX + RPC_PERSON_ID_MAX]; /* "" : free */
	int64_t pl_at;
} alerts_probe_limit;

struct alerts_service {
	store       *as_store;
	cap_service *as_cap;
	char         as_node_url[ALERTS_NODE_URL_MAX + 1];
	char        *as_smtp_url; /* NULL: e-mail waits */
	char        *as_smtp_from;
	char        *as_smtp_ca;
	uint64_t     as_escalate_ms;
	uint64_t     as_unmet_ms;
	unsigned     as_watchers_max;
	bool         as_allow_private; /* webhooks to loopback and private addresses */
	long         as_send_timeout_ms;
	int64_t (*as_now)(void *);
	void *as_now_arg;

	store_table as_events;
	store_table as_by_org;
	store_table as_channels;
	store_table as_deliver;
	store_table as_due;
	store_table as_timers;
	store_table as_timer_at;
	store_table as_meta;

	/* Under as_lock: watchers waiting and the wake-up count WatchEvents waits on. */
	pthread_mutex_t as_lock;
	pthread_cond_t  as_cond;
	bool            as_sync_init;
	unsigned        as_watchers;
	uint64_t        as_wakes;
	bool            as_stopping;
	bool            as_smtp_warned;
	hv_ticker      *as_sender; /* NULL when manual or stopped */
	/* The highest seq an enqueue handed out (its transaction may not have committed yet),
	 * and the highest the sender saw committed: the sender looks again a few times while
	 * the first is ahead, so that an alert leaves within milliseconds of its commit. */
	uint64_t as_pending_seq;
	uint64_t as_seen_seq;
	/* Deliveries by channel (index Channel): sent, failed attempts, dropped (given up or
	 * their channel removed). Only the sender writes them; the metrics page reads them. */
	_Atomic uint64_t as_sent[4], as_failed[4], as_dropped[4];
	/* Under as_lock: test deliveries' outcomes (a ring), the rate of tests, and the
	 * TestChannels calls waiting (alerts_probe.c). */
	alerts_probe_result as_probe_results[ALERTS_PROBE_RESULTS];
	unsigned            as_probe_next;
	alerts_probe_limit  as_probe_limits[ALERTS_PROBE_LIMITS];
	unsigned            as_probe_waiting;
};

/* One delivery as the sender carries it out of the store (all copies). */
typedef struct alerts_job {
	char    aj_key[ALERTS_KEY_MAX];
	Channel aj_channel;
	char   *aj_body; /* JSON (webhook) or the e-mail message; malloc'd */
	size_t  aj_len;
	char  **aj_rcpt; /* e-mail recipients; malloc'd */
	size_t  aj_nrcpt;
	char    aj_url[ALERTS_URL_MAX + 1];
	uint8_t aj_secret[ALERTS_SECRET_MAX];
	size_t  aj_secretlen;
	bool    aj_gone; /* the channel was removed since: drop the delivery */
	bool    aj_once; /* a test alert: tried once, its outcome kept (alerts_probe.c) */
	bool    aj_ok;
	char    aj_err[160];
} alerts_job;

/* ---- keys ----------------------------------------------------------------------------- */
size_t alerts_key_be64(uint8_t *key, uint64_t v);
/* prefix 0 be64 v */
size_t alerts_key_org(uint8_t key[ALERTS_KEY_MAX], const char *org, uint64_t seq);
/* be64 v then s (no separator: v has a fixed size) */
size_t alerts_key_timed(uint8_t key[ALERTS_KEY_MAX], uint64_t v, const char *s);

/* An org's channels (alerts.c); *out NULL when it configured none. */
hv_status alerts_channels_get(alerts_service *as, store_txn *txn, const char *org, Channels **out);
/* The seq of the node's newest event, committed or in txn (alerts.c). */
hv_status alerts_last_seq(alerts_service *as, store_txn *txn, uint64_t *seq);
/* Fires one due timer into its event (alerts.c). */
hv_status alerts_fire_timer(alerts_service *as, store_txn *txn, const Timer *t, int64_t now);

/* Names in deliveries and keys (alerts.c): "offer.new", "immediate", "email". */
const char *alerts_kind_name(alerts_kind k);
const char *alerts_urgency_name(int u);
const char *alerts_channel_name(Channel c);

/* ---- checks (alerts_rpc.c) ------------------------------------------------------------- */
bool alerts_email_ok(const char *s);
/* An https:// URL, or http:// to a loopback host. err names the problem. */
bool alerts_url_ok(const char *url, bool allow_plain_loopback, char *err, size_t errsz);

/* Which organisation a call acts on, the operator and admins any, everyone else its own;
 * must be in the directory (alerts_rpc.c). */
hv_status alerts_may_act(alerts_service *as, rpc_call *call, const char *asked,
    char org[CAP_ID_MAX]);
/* Only an organisation's admin (or its certificate's session, the operator, an admin) changes
 * or tests where its alerts go (alerts_rpc.c). */
hv_status alerts_may_configure(rpc_call *call);

/* ---- alerts_probe.c: TestChannels ------------------------------------------------------- */
hv_status alerts_h_test_channels(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
/* Keeps the outcomes of the test deliveries among jobs (after their batch committed) and
 * wakes the TestChannels calls waiting for them. */
void alerts_probe_record(alerts_service *as, const alerts_job *jobs, size_t n);

/* ---- alerts_send.c --------------------------------------------------------------------- */
/* Fills aj_body for the event (JSON for a webhook, an RFC 5322 message for e-mail). No field
 * of it comes from anything but the event's kind, urgency, times, seq, target and link. */
hv_status alerts_job_body(alerts_service *as, alerts_job *j, const AlertEvent *ev);
/* Sends the jobs at once (libcurl's multi interface, at most ALERTS_BATCH); sets each one's
 * aj_ok, or aj_err naming what failed. */
void alerts_jobs_send(alerts_service *as, alerts_job **jobs, size_t n);
void alerts_job_free(alerts_job *j);
/* Whether an address (text) is loopback, private, link-local, shared, multicast or
 * unspecified, IPv4 or IPv6 (IPv4-mapped too); what cannot be parsed counts as private. */
bool alerts_ip_private(const char *ip);
/* The alerts' gauges and counters at scrape time (alerts_round.c). */
void alerts_metrics_collect(void *arg, metrics_writer *w);
/* curl_global_init once per process. */
hv_status alerts_send_init(void);

#endif
