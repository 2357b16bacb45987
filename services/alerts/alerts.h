/*
 * alerts.h - alerts that reach someone (haven.alerts.v1.Alerts), as a library: the events that
 * need a person to act, written to an outbox in the same write transaction as the event
 * itself, delivered by e-mail (SMTP with STARTTLS, libcurl) and signed webhooks by one sender
 * thread, and read by WatchEvents long-polls. docs/alerts.md is the design note.
 *
 * No alert carries personal data: its kind, urgency, respond-by time and a link into haven
 * (node_url/#/offers/ID, #/referrals/ID or #/alerts/SEQ). Callers pass only those.
 *
 * Tables (in the node's one LMDB environment; be64 is a big-endian 64-bit number):
 *   alerts.events   be64 seq                      -> AlertEvent (one per recipient org)
 *   alerts.by_org   org 0 be64 seq                -> ""          (WatchEvents)
 *   alerts.channels org                           -> Channels    (secret included)
 *   alerts.deliver  idempotency key               -> Delivery    (the outbox)
 *   alerts.due      be64 due_ms key               -> ""          (deliveries by due time)
 *   alerts.timers   be64 due_ms timer key         -> Timer
 *   alerts.timer_at timer key                     -> be64 due_ms  (to cancel a timer)
 *   alerts.meta     "seq"                         -> be64 last seq
 *
 * Invariants, after every committed transaction: a delivery row exists exactly while its
 * alerts.due entry does (same due_ms); a timer exists in alerts.timers exactly while
 * alerts.timer_at names its due time; seq grows by one per event, never reused.
 *
 * Delivery is at least once with an idempotency key per delivery ("<seq>.<org>.<channel>",
 * sent as the webhook's Idempotency-Key header and the e-mail's Message-ID): a crash between a
 * send and the commit that removes its row sends it again with the same key, which the
 * receiver uses to keep one; a crash before the send loses nothing (the row is in the store).
 * A failed send is tried again after 1, 2, 4 ... s (at most 15 min apart), ALERTS_ATTEMPTS
 * times in all, then dropped with a log line naming the key.
 *
 * Threads: one sender (a ticker, alerts_open .. alerts_stop) fires due timers into events,
 * then sends due deliveries, a batch of up to 16 at once (at most 4 connections to one host),
 * outside any transaction. WatchEvents blocks a handler thread while it waits; at most
 * watchers_max wait at once (RESOURCE_EXHAUSTED after).
 */
#ifndef HAVEN_ALERTS_H
#define HAVEN_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/config.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "capacity.h"

#include "haven/alerts/v1/alerts.pb-c.h"

#define ALERTS_ATTEMPTS    12
#define ALERTS_RECIPIENTS  8 /* orgs named in one alerts_event */
#define ALERTS_EMAILS_MAX  8
#define ALERTS_EMAIL_MAX   254
#define ALERTS_URL_MAX     512
#define ALERTS_SECRET_MIN  16
#define ALERTS_SECRET_MAX  64
#define ALERTS_TARGET_MAX  64
#define ALERTS_WAIT_MAX_MS 25000
#define ALERTS_KEEP_MS     (7LL * 24 * 3600 * 1000) /* events older than this are dropped */

typedef struct alerts_service alerts_service;

typedef Haven__Alerts__V1__AlertKind alerts_kind;
#define ALERT(x) HAVEN__ALERTS__V1__ALERT_KIND__##x

typedef struct alerts_options {
	store       *store;    /* the node's store; not owned */
	cap_service *capacity; /* the directory: which orgs exist, a region's coordinators */
	/* The node's address for links ("https://haven.example.org"); NULL: "https://localhost".
	 * Copied. At most 200 bytes, no quote, space or control character. */
	const char *node_url;
	/* SMTP: smtp://HOST:PORT (STARTTLS is required: CURLUSESSL_ALL) or smtps://; the From
	 * address; the CA file that signs the server's certificate (NULL: the system's). NULL
	 * smtp_url: e-mail deliveries wait in the outbox (logged once). Copied. */
	const char *smtp_url;
	const char *smtp_from;
	const char *smtp_ca_file;
	uint32_t    escalate_after_s; /* immediate offer unacknowledged; 0: 600 */
	uint32_t    unmet_after_s;    /* need waiting unmet; 0: 3600 */
	uint32_t    tick_ms;          /* sender period; 0: 200 */
	unsigned    watchers_max;     /* WatchEvents waiting at once; 0: 2 */
	uint32_t    send_timeout_ms;  /* one send, connecting included; 0: 10000 */
	/* Webhooks may reach loopback, private and link-local addresses (and http:// to a
	 * loopback host). Off: an organisation's webhook cannot make the node POST to itself or
	 * its network (checked on the address connected to, after DNS). Tests and local relays
	 * only. */
	bool webhook_allow_private;
	int64_t (*now_ms)(void *arg); /* NULL: the wall clock (Unix ms) */
	void *now_arg;
	bool  manual; /* no sender thread: alerts_run does a round (tests, tools) */
} alerts_options;

/* The service's options in the node's configuration file, section "alerts" (alerts_config.c
 * documents each; `haven-node --print-config` prints them). Zero it, read it with
 * host_config_load_with(..., alerts_config_table(&cfg), ...), copy it into alerts_options
 * with alerts_config_apply (the strings stay cfg's: keep it until alerts_open returned), and
 * free it with alerts_config_free. */
#define ALERTS_CONFIG_SECTION "alerts"
typedef struct alerts_config {
	char    *node_url;
	char    *smtp_url;
	char    *smtp_from;
	char    *smtp_ca;
	uint64_t escalate_after_s;
	uint64_t unmet_after_s;
	bool     webhook_allow_private;
} alerts_config;
config_table alerts_config_table(alerts_config *cfg);
void         alerts_config_apply(const alerts_config *cfg, alerts_options *ao);
void         alerts_config_free(alerts_config *cfg);

/* Opens the tables (creating them) and starts the sender. At start-up, before any store_write
 * of the process runs. HV_INVALID_ARGUMENT (logged) for a bad node_url or smtp_url. */
hv_status alerts_open(alerts_service **out, const alerts_options *opts);
/* Stops the sender (waits for a round). Handlers keep working. Safe to repeat; NULL allowed. */
void alerts_stop(alerts_service *as);
/* Stops and frees. No handler may be running. NULL allowed. */
void alerts_close(alerts_service *as);
/* Registers haven.alerts.v1.Alerts on srv. */
hv_status alerts_register(alerts_service *as, rpc_server *srv);

/* Checks and stores an organisation's channels (what SetChannels does after its scope check;
 * for tools and the bench). org must be an id; *version (may be NULL) gets the new version.
 * INVALID_ARGUMENT with err naming the field. */
hv_status alerts_set_channels(alerts_service *as, const char *org,
    const Haven__Alerts__V1__Channels *c, uint64_t *version, char *err, size_t errsz);
/* The checks of SetChannels: e-mail addresses, the webhook URL (http:// to a loopback host
 * only with allow_private) and its secret. */
hv_status alerts_check_channels(const Haven__Alerts__V1__Channels *c, bool allow_private, char *err,
    size_t errsz);

/* ---- for the services whose events need a person (inside their store_write function) ---- */

/* One event for some organisations. Strings are copied into the store; none may be personal
 * data. */
typedef struct alerts_event {
	alerts_kind ae_kind;
	int         ae_urgency;       /* haven.referral.v1.Urgency; 0: none */
	uint64_t    ae_respond_by_ms; /* 0: nothing to answer */
	const char *ae_target;        /* offer or referral id ("" or NULL: none) */
	const char *ae_orgs[ALERTS_RECIPIENTS];
	size_t      ae_norgs;  /* empty ids and repeats are skipped */
	const char *ae_region; /* the region's coordinators are told too; NULL: none */
} alerts_event;

/* Writes the event (one per recipient organisation) and one delivery per channel each
 * recipient configured into the outbox, in txn. as NULL: nothing (HV_OK). May run again from
 * the start with its transaction (store_write). */
hv_status alerts_enqueue(alerts_service *as, store_txn *txn, const alerts_event *ev);

/* A timer that turns into an event at due_ms (the event is ev as given, with the time it
 * fires). key names it (1..100 bytes: "esc/REF/NEED"); setting a key again moves it. For
 * ALERT(NEED_WAITING) the timer fires twice: the waiting alert to ev's orgs at due_ms, then
 * NEED_UNMET to them and the region's coordinators unmet_after_s later. */
hv_status alerts_timer_set(alerts_service *as, store_txn *txn, const char *key, uint64_t due_ms,
    const alerts_event *ev);
/* Cancels a timer; one that is not set is fine (HV_OK). */
hv_status alerts_timer_cancel(alerts_service *as, store_txn *txn, const char *key);

/* The configured escalation delays, in ms. */
uint64_t alerts_escalate_ms(const alerts_service *as);

/* ---- for tests and tools ------------------------------------------------------------------ */

/* One round of the sender: fires due timers, sends due deliveries. *sent and *failed (may be
 * NULL) count the deliveries. */
hv_status alerts_run(alerts_service *as, unsigned *sent, unsigned *failed);
/* Makes the sender run a round now. */
void alerts_kick(alerts_service *as);
/* The deliveries waiting in the outbox. */
hv_status alerts_outbox_count(alerts_service *as, uint64_t *n);
int64_t   alerts_now_ms(const alerts_service *as);

#endif
