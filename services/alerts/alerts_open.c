/*
 * alerts_open.c - the alerts service's handle: opening it (options checked, tables opened),
 * the sender thread, which runs alerts_run (alerts_round.c) and wakes WatchEvents waiters once
 * new events committed, and stopping and closing it. The top of the service's files: nothing
 * below calls into it.
 */
#include "alerts_internal.h"

#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The last seq committed. */
static uint64_t
committed_seq(alerts_service *as)
{
	store_txn  *txn = NULL;
	const void *v;
	size_t      vl;
	uint64_t    seq = 0;

	if (store_read_begin(as->as_store, &txn) != HV_OK) {
		return (0);
	}
	if (store_get(txn, as->as_meta, ALERTS_META_SEQ, strlen(ALERTS_META_SEQ), &v, &vl) ==
	        HV_OK &&
	    vl == 8) {
		seq = hv_get_be64(v);
	}
	store_read_end(txn);
	return (seq);
}

/* One round; while an enqueue's transaction has not committed yet (it kicked the sender from
 * inside it), looks again every 2 ms for up to 100 ms. WatchEvents waiters are woken when new
 * events committed. A transaction that rolled back leaves its seq pending: given up then. */
static void
sender_tick(void *arg)
{
	alerts_service *as = arg;
	int64_t         t0 = hv_clock_mono_ms();
	hv_status       st;

	for (;;) {
		uint64_t want, have;

		if ((st = alerts_run(as, NULL, NULL)) != HV_OK) {
			log_warn("alerts: sender round failed: %s", hv_status_name(st));
			return;
		}
		have = committed_seq(as);
		pthread_mutex_lock(&as->as_lock);
		want = as->as_pending_seq;
		if (have > as->as_seen_seq) {
			as->as_seen_seq = have;
			as->as_wakes++;
			pthread_cond_broadcast(&as->as_cond);
		}
		if (have >= want || hv_clock_mono_ms() - t0 > 100 || as->as_stopping) {
			if (as->as_pending_seq > have) {
				as->as_pending_seq = have;
			}
			pthread_mutex_unlock(&as->as_lock);
			return;
		}
		pthread_mutex_unlock(&as->as_lock);
		{
			struct timespec d = { 0, 2 * 1000 * 1000 };

			nanosleep(&d, NULL);
		}
	}
}

static bool
node_url_ok(const char *u)
{
	size_t n = strlen(u);

	if (n < 9 || n > ALERTS_NODE_URL_MAX ||
	    (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char) u[i];

		if (c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '<' || c == '>' ||
		    c == '\\') {
			return (false);
		}
	}
	return (true);
}

static char *
dup_opt(const char *s, bool *bad)
{
	char *d;

	if (s == NULL || s[0] == '\0') {
		return (NULL);
	}
	if ((d = strdup(s)) == NULL) {
		*bad = true;
	}
	return (d);
}

hv_status
alerts_open(alerts_service **out, const alerts_options *opts)
{
	alerts_service *as    = NULL;
	const char     *url   = opts->node_url != NULL ? opts->node_url : "https://localhost";
	bool            nomem = false;
	hv_status       st;

	*out = NULL;
	if (opts->store == NULL || opts->capacity == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (!node_url_ok(url)) {
		log_error("alerts: node_url must be an http(s):// URL of at most %d bytes without "
		          "spaces or quotes",
		    ALERTS_NODE_URL_MAX);
		return (HV_INVALID_ARGUMENT);
	}
	if (opts->smtp_url != NULL && opts->smtp_url[0] != '\0' &&
	    strncmp(opts->smtp_url, "smtp://", 7) != 0 &&
	    strncmp(opts->smtp_url, "smtps://", 8) != 0) {
		log_error("alerts: smtp_url must start with smtp:// (STARTTLS) or smtps://");
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = alerts_send_init()) != HV_OK) {
		return (st);
	}
	if ((as = calloc(1, sizeof(*as))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	as->as_store = opts->store;
	as->as_cap   = opts->capacity;
	snprintf(as->as_node_url, sizeof(as->as_node_url), "%s", url);
	if (as->as_node_url[strlen(as->as_node_url) - 1] == '/') {
		as->as_node_url[strlen(as->as_node_url) - 1] = '\0';
	}
	as->as_smtp_url    = dup_opt(opts->smtp_url, &nomem);
	as->as_smtp_from   = dup_opt(opts->smtp_from, &nomem);
	as->as_smtp_ca     = dup_opt(opts->smtp_ca_file, &nomem);
	as->as_escalate_ms = 1000ull * (opts->escalate_after_s != 0 ? opts->escalate_after_s : 600);
	as->as_unmet_ms    = 1000ull * (opts->unmet_after_s != 0 ? opts->unmet_after_s : 3600);
	as->as_watchers_max  = opts->watchers_max != 0 ? opts->watchers_max : 2;
	as->as_allow_private = opts->webhook_allow_private;
	as->as_send_timeout_ms =
	    opts->send_timeout_ms != 0 ? (long) opts->send_timeout_ms : ALERTS_SEND_TIMEOUT_MS;
	as->as_now     = opts->now_ms;
	as->as_now_arg = opts->now_arg;
	if (nomem) {
		st = HV_RESOURCE_EXHAUSTED;
		goto fail;
	}
	if (pthread_mutex_init(&as->as_lock, NULL) != 0) {
		st = HV_RESOURCE_EXHAUSTED;
		goto fail;
	}
	if (hv_clock_cond_init(&as->as_cond) != 0) {
		pthread_mutex_destroy(&as->as_lock);
		st = HV_RESOURCE_EXHAUSTED;
		goto fail;
	}
	as->as_sync_init = true;
	if ((st = store_table_open(as->as_store, "alerts.events", &as->as_events)) != HV_OK ||
	    (st = store_table_open(as->as_store, "alerts.by_org", &as->as_by_org)) != HV_OK ||
	    (st = store_table_open(as->as_store, "alerts.channels", &as->as_channels)) != HV_OK ||
	    (st = store_table_open(as->as_store, "alerts.deliver", &as->as_deliver)) != HV_OK ||
	    (st = store_table_open(as->as_store, "alerts.due", &as->as_due)) != HV_OK ||
	    (st = store_table_open(as->as_store, "alerts.timers", &as->as_timers)) != HV_OK ||
	    (st = store_table_open(as->as_store, "alerts.timer_at", &as->as_timer_at)) != HV_OK ||
	    (st = store_table_open(as->as_store, "alerts.meta", &as->as_meta)) != HV_OK) {
		goto fail;
	}
	if (!opts->manual &&
	    (st = hv_ticker_start(&as->as_sender, opts->tick_ms != 0 ? opts->tick_ms : 200, true,
	         sender_tick, as)) != HV_OK) {
		goto fail;
	}
	*out = as;
	return (HV_OK);
fail:
	alerts_close(as);
	return (st);
}

void
alerts_stop(alerts_service *as)
{
	hv_ticker *t;

	if (as == NULL || !as->as_sync_init) {
		return;
	}
	pthread_mutex_lock(&as->as_lock);
	as->as_stopping = true;
	t               = as->as_sender;
	as->as_sender   = NULL;
	pthread_cond_broadcast(&as->as_cond);
	pthread_mutex_unlock(&as->as_lock);
	hv_ticker_stop(t);
}

void
alerts_close(alerts_service *as)
{
	if (as == NULL) {
		return;
	}
	alerts_stop(as);
	if (as->as_sync_init) {
		pthread_cond_destroy(&as->as_cond);
		pthread_mutex_destroy(&as->as_lock);
	}
	free(as->as_smtp_url);
	free(as->as_smtp_from);
	free(as->as_smtp_ca);
	free(as);
}
