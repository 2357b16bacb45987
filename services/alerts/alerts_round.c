/*
 * alerts_round.c - one round of the sender (alerts_run): drop events past keeping, fire due
 * timers, then carry due deliveries out of the store, send them with no transaction open
 * (alerts_send.c), and remove or reschedule each in a write transaction after its send.
 */
#include "alerts_internal.h"

#include "haven/bytes.h"
#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- keeping events ALERTS_KEEP_MS --------------------------------------------------------- */

#define PRUNE_BATCH 256

typedef struct prune_job {
	alerts_service *pj_as;
	int64_t         pj_cutoff;
	unsigned        pj_pruned;
} prune_job;

/* Drops the oldest events (seq order is time order) older than the cutoff, a batch at a time. */
static hv_status
prune_fn(store_txn *txn, void *arg)
{
	prune_job    *j = arg;
	store_cursor *c = NULL;
	uint64_t      seqs[PRUNE_BATCH];
	char          orgs[PRUNE_BATCH][CAP_ID_MAX];
	size_t        n = 0;
	const void   *k, *v;
	size_t        kl, vl;
	uint8_t       key[ALERTS_KEY_MAX];
	hv_status     st;

	j->pj_pruned = 0;
	if ((st = store_cursor_open(txn, j->pj_as->as_events, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); st == HV_OK && n < PRUNE_BATCH;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		AlertEvent *e = haven__alerts__v1__alert_event__unpack(NULL, vl, v);
		bool        old;

		if (e == NULL || kl != 8) {
			haven__alerts__v1__alert_event__free_unpacked(e, NULL);
			st = HV_DATA_LOSS;
			break;
		}
		old     = e->time_ms < (uint64_t) j->pj_cutoff;
		seqs[n] = e->seq;
		snprintf(orgs[n], CAP_ID_MAX, "%s", e->org_id);
		haven__alerts__v1__alert_event__free_unpacked(e, NULL);
		if (!old) {
			break;
		}
		n++;
	}
	store_cursor_close(c);
	if (st != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	for (size_t i = 0; i < n; i++) {
		if ((st = store_del(txn, j->pj_as->as_events, key,
		         alerts_key_be64(key, seqs[i]))) != HV_OK ||
		    ((st = store_del(txn, j->pj_as->as_by_org, key,
		          alerts_key_org(key, orgs[i], seqs[i]))) != HV_OK &&
		        st != HV_NOT_FOUND)) {
			return (st);
		}
	}
	j->pj_pruned = (unsigned) n;
	return (HV_OK);
}

/* ---- timers --------------------------------------------------------------------------- */

typedef struct fire_job {
	alerts_service *fj_as;
	int64_t         fj_now;
	unsigned        fj_fired;
} fire_job;

static hv_status
fire_fn(store_txn *txn, void *arg)
{
	fire_job     *j = arg;
	store_cursor *c = NULL;
	Timer        *ts[ALERTS_TIMER_BATCH];
	size_t        n = 0;
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st;

	j->fj_fired = 0;
	if ((st = store_cursor_open(txn, j->fj_as->as_timers, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl);
	     st == HV_OK && n < ALERTS_TIMER_BATCH; st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		if (kl < 8 || hv_get_be64(k) > (uint64_t) j->fj_now) {
			break;
		}
		if ((ts[n] = haven__alerts__v1__timer__unpack(NULL, vl, v)) == NULL) {
			st = HV_DATA_LOSS;
			break;
		}
		n++;
	}
	store_cursor_close(c);
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
	for (size_t i = 0; i < n; i++) {
		if (st == HV_OK &&
		    (st = alerts_fire_timer(j->fj_as, txn, ts[i], j->fj_now)) == HV_OK) {
			j->fj_fired++;
		}
		haven__alerts__v1__timer__free_unpacked(ts[i], NULL);
	}
	return (st);
}

/* ---- the sender ------------------------------------------------------------------------- */

/* Copies what one due delivery needs out of the read transaction into j. */
static hv_status
job_load(alerts_service *as, store_txn *txn, const char *key, alerts_job *j)
{
	Delivery   *d = NULL;
	AlertEvent *e = NULL;
	Channels   *c = NULL;
	uint8_t     k[8];
	hv_status   st;
	size_t      kl = strnlen(key, ALERTS_KEY_MAX - 1);

	memcpy(j->aj_key, key, kl);
	j->aj_key[kl] = '\0';
	if ((st = store_get_msg(txn, as->as_deliver, key, kl,
	         &haven__alerts__v1__delivery__descriptor, NULL, (ProtobufCMessage **) &d)) !=
	    HV_OK) {
		return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
	}
	j->aj_channel = d->channel;
	st            = store_get_msg(txn, as->as_events, k, alerts_key_be64(k, d->seq),
	               &haven__alerts__v1__alert_event__descriptor, NULL, (ProtobufCMessage **) &e);
	if (st == HV_NOT_FOUND) {
		j->aj_gone = true; /* pruned: nothing left to say */
		st         = HV_OK;
		goto out;
	}
	if (st != HV_OK || (st = alerts_channels_get(as, txn, d->org_id, &c)) != HV_OK) {
		goto out;
	}
	if (c == NULL) {
		j->aj_gone = true;
		goto out;
	}
	j->aj_once = e->kind == ALERT(TEST);
	if (d->channel == CHANNEL(WEBHOOK)) {
		if (c->webhook_url[0] == '\0' || c->webhook_secret.len > sizeof(j->aj_secret)) {
			j->aj_gone = true;
			goto out;
		}
		snprintf(j->aj_url, sizeof(j->aj_url), "%s", c->webhook_url);
		memcpy(j->aj_secret, c->webhook_secret.data, c->webhook_secret.len);
		j->aj_secretlen = c->webhook_secret.len;
	} else {
		size_t n = d->channel == CHANNEL(ONCALL) ? (c->oncall_email[0] != '\0' ? 1 : 0)
		                                         : c->n_emails;

		if (n == 0) {
			j->aj_gone = true;
			goto out;
		}
		if ((j->aj_rcpt = calloc(n, sizeof(char *))) == NULL) {
			st = HV_RESOURCE_EXHAUSTED;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			const char *a =
			    d->channel == CHANNEL(ONCALL) ? c->oncall_email : c->emails[i];

			if ((j->aj_rcpt[i] = strdup(a)) == NULL) {
				st = HV_RESOURCE_EXHAUSTED;
				goto out;
			}
			j->aj_nrcpt++;
		}
	}
	st = alerts_job_body(as, j, e);
out:
	if (d != NULL) {
		protobuf_c_message_free_unpacked(&d->base, NULL);
	}
	if (e != NULL) {
		protobuf_c_message_free_unpacked(&e->base, NULL);
	}
	if (c != NULL) {
		protobuf_c_message_free_unpacked(&c->base, NULL);
	}
	return (st);
}

/* Reads up to ALERTS_BATCH due deliveries into jobs. */
static hv_status
due_load(alerts_service *as, int64_t now, alerts_job *jobs, size_t *n)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	char          keys[ALERTS_BATCH][ALERTS_KEY_MAX];
	const void   *k;
	size_t        kl;
	hv_status     st;

	*n = 0;
	if ((st = store_read_begin(as->as_store, &txn)) != HV_OK) {
		return (st);
	}
	if ((st = store_cursor_open(txn, as->as_due, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, NULL, NULL);
	     st == HV_OK && *n < ALERTS_BATCH; st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		if (kl <= 8 || kl - 8 >= ALERTS_KEY_MAX || hv_get_be64(k) > (uint64_t) now) {
			break;
		}
		memcpy(keys[*n], (const uint8_t *) k + 8, kl - 8);
		keys[(*n)++][kl - 8] = '\0';
	}
	store_cursor_close(c);
	st = HV_OK;
	for (size_t i = 0; i < *n && st == HV_OK; i++) {
		st = job_load(as, txn, keys[i], &jobs[i]);
	}
out:
	store_read_end(txn);
	return (st);
}

typedef struct done_job {
	alerts_service *dj_as;
	alerts_job     *dj_jobs;
	size_t          dj_n;
	int64_t         dj_now;
} done_job;

static hv_status
done_one(alerts_service *as, store_txn *txn, alerts_job *j, int64_t now)
{
	Delivery *d = NULL;
	uint8_t   k[ALERTS_KEY_MAX];
	uint64_t  backoff;
	hv_status st;

	st = store_get_msg(txn, as->as_deliver, j->aj_key, strlen(j->aj_key),
	    &haven__alerts__v1__delivery__descriptor, NULL, (ProtobufCMessage **) &d);
	if (st != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if ((st = store_del(txn, as->as_due, k, alerts_key_timed(k, d->due_ms, d->key))) != HV_OK &&
	    st != HV_NOT_FOUND) {
		goto out;
	}
	/* A test alert is tried once: its outcome is what the test reports. */
	if (j->aj_ok || j->aj_gone || j->aj_once || d->attempts + 1 >= ALERTS_ATTEMPTS) {
		if (!j->aj_ok && !j->aj_gone && !j->aj_once) {
			log_warn("alerts: delivery %s given up after %u attempts", d->key,
			    d->attempts + 1);
		}
		st = store_del(txn, as->as_deliver, d->key, strlen(d->key));
		goto out;
	}
	d->attempts++;
	backoff = 1000ull << (d->attempts - 1 < 20 ? d->attempts - 1 : 20);
	d->due_ms =
	    (uint64_t) now + (backoff < ALERTS_BACKOFF_MAX_MS ? backoff : ALERTS_BACKOFF_MAX_MS);
	if ((st = store_put_msg(txn, as->as_deliver, d->key, strlen(d->key), &d->base)) == HV_OK) {
		st = store_put(txn, as->as_due, k, alerts_key_timed(k, d->due_ms, d->key), "", 0);
	}
out:
	protobuf_c_message_free_unpacked(&d->base, NULL);
	return (st);
}

static hv_status
done_fn(store_txn *txn, void *arg)
{
	done_job *j = arg;
	hv_status st;

	for (size_t i = 0; i < j->dj_n; i++) {
		if ((st = done_one(j->dj_as, txn, &j->dj_jobs[i], j->dj_now)) != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

/* The metrics' counters, once the outcome of a batch committed. */
static void
count(alerts_service *as, const alerts_job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned c = jobs[i].aj_channel < 4 ? (unsigned) jobs[i].aj_channel : 0;

		if (jobs[i].aj_ok) {
			atomic_fetch_add(&as->as_sent[c], 1);
		} else if (jobs[i].aj_gone) {
			atomic_fetch_add(&as->as_dropped[c], 1);
		} else {
			atomic_fetch_add(&as->as_failed[c], 1);
		}
	}
}

static bool
stopping(alerts_service *as)
{
	bool s;

	pthread_mutex_lock(&as->as_lock);
	s = as->as_stopping;
	pthread_mutex_unlock(&as->as_lock);
	return (s);
}

/* Sends what can be sent of a batch at once (alerts_jobs_send), logs each outcome. */
static void
send_batch(alerts_service *as, alerts_job *jobs, size_t n, unsigned *sent, unsigned *failed)
{
	alerts_job *go[ALERTS_BATCH];
	size_t      ngo = 0;

	for (size_t i = 0; i < n; i++) {
		if (jobs[i].aj_gone) {
			continue;
		}
		if (jobs[i].aj_channel != CHANNEL(WEBHOOK) && as->as_smtp_url == NULL) {
			snprintf(jobs[i].aj_err, sizeof(jobs[i].aj_err), "no smtp_url configured");
			if (!as->as_smtp_warned) {
				log_warn("alerts: e-mail deliveries wait: no smtp_url configured");
				as->as_smtp_warned = true;
			}
			continue;
		}
		go[ngo++] = &jobs[i];
	}
	if (ngo == 0) {
		return;
	}
	alerts_jobs_send(as, go, ngo);
	for (size_t i = 0; i < ngo; i++) {
		if (go[i]->aj_ok) {
			log_info("alerts: delivered %s", go[i]->aj_key);
		} else {
			log_warn("alerts: delivery %s failed: %s", go[i]->aj_key, go[i]->aj_err);
		}
		if (sent != NULL && go[i]->aj_ok) {
			(*sent)++;
		}
		if (failed != NULL && !go[i]->aj_ok) {
			(*failed)++;
		}
	}
}

/* Whether a write is needed: the first timer is due, or the oldest event is past keeping.
 * A read transaction, so that an idle sender never takes the node's write lock. */
static hv_status
peek(alerts_service *as, int64_t now, bool *timers, bool *prune)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st;

	*timers = *prune = false;
	if ((st = store_read_begin(as->as_store, &txn)) != HV_OK) {
		return (st);
	}
	if ((st = store_cursor_open(txn, as->as_timers, &c)) == HV_OK &&
	    store_cursor_seek(c, NULL, 0, &k, &kl, NULL, NULL) == HV_OK) {
		*timers = kl >= 8 && hv_get_be64(k) <= (uint64_t) now;
	}
	store_cursor_close(c);
	c = NULL;
	if (st == HV_OK && (st = store_cursor_open(txn, as->as_events, &c)) == HV_OK &&
	    store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl) == HV_OK) {
		AlertEvent *e = haven__alerts__v1__alert_event__unpack(NULL, vl, v);

		*prune = e == NULL || (int64_t) e->time_ms < now - ALERTS_KEEP_MS;
		haven__alerts__v1__alert_event__free_unpacked(e, NULL);
	}
	store_cursor_close(c);
	store_read_end(txn);
	return (st);
}

hv_status
alerts_run(alerts_service *as, unsigned *sent, unsigned *failed)
{
	fire_job   fj = { .fj_as = as };
	prune_job  pj = { .pj_as = as };
	alerts_job jobs[ALERTS_BATCH];
	size_t     n;
	hv_status  st;

	if (sent != NULL) {
		*sent = 0;
	}
	if (failed != NULL) {
		*failed = 0;
	}
	bool timers, prune;

	if ((st = peek(as, alerts_now_ms(as), &timers, &prune)) != HV_OK) {
		return (st);
	}
	pj.pj_cutoff = alerts_now_ms(as) - ALERTS_KEEP_MS;
	if (prune && (st = store_write(as->as_store, prune_fn, &pj)) != HV_OK) {
		return (st);
	}
	do {
		fj.fj_now = alerts_now_ms(as);
		if (timers && (st = store_write(as->as_store, fire_fn, &fj)) != HV_OK) {
			return (st);
		}
	} while (timers && fj.fj_fired == ALERTS_TIMER_BATCH && !stopping(as));
	/* Rounds of a batch each, until nothing is due (a batch's sends run at once, each with
	 * its timeout). */
	for (unsigned round = 0; round < 64 && !stopping(as); round++) {
		done_job dj = { .dj_as = as, .dj_jobs = jobs };

		memset(jobs, 0, sizeof(jobs));
		st = due_load(as, alerts_now_ms(as), jobs, &n);
		if (st == HV_OK) {
			send_batch(as, jobs, n, sent, failed);
		}
		dj.dj_n   = n;
		dj.dj_now = alerts_now_ms(as);
		if (st == HV_OK && n > 0 &&
		    (st = store_write(as->as_store, done_fn, &dj)) == HV_OK) {
			count(as, jobs, n);
			alerts_probe_record(as, jobs, n);
		}
		for (size_t i = 0; i < n; i++) {
			alerts_job_free(&jobs[i]);
		}
		if (st != HV_OK || n < ALERTS_BATCH) {
			break;
		}
	}
	return (st);
}

/* ---- metrics ---------------------------------------------------------------------------- */

static void
counter_family(metrics_writer *w, const char *name, const char *help, _Atomic uint64_t *v)
{
	metrics_family(w, name, METRICS_COUNTER, help);
	for (Channel c = CHANNEL(EMAIL); c <= CHANNEL(WEBHOOK); c++) {
		metrics_sample(w, name, (double) atomic_load(&v[c]), "channel",
		    alerts_channel_name(c), (char *) NULL);
	}
}

void
alerts_metrics_collect(void *arg, metrics_writer *w)
{
	alerts_service *as     = arg;
	store_txn      *txn    = NULL;
	uint64_t        outbox = 0, timers = 0;

	if (store_read_begin(as->as_store, &txn) == HV_OK) {
		(void) store_count(txn, as->as_deliver, &outbox);
		(void) store_count(txn, as->as_timers, &timers);
		store_read_end(txn);
	}
	metrics_family(w, "haven_alerts_outbox", METRICS_GAUGE,
	    "Alert deliveries waiting in the outbox (due or in back-off).");
	metrics_sample(w, "haven_alerts_outbox", (double) outbox, (char *) NULL);
	metrics_family(w, "haven_alerts_timers", METRICS_GAUGE,
	    "Alert timers set: offers to warn or escalate, needs waiting.");
	metrics_sample(w, "haven_alerts_timers", (double) timers, (char *) NULL);
	counter_family(w, "haven_alerts_delivered_total",
	    "Alert deliveries accepted by the receiver.", as->as_sent);
	counter_family(w, "haven_alerts_failed_total",
	    "Alert delivery attempts that failed (tried again with back-off).", as->as_failed);
	counter_family(w, "haven_alerts_dropped_total",
	    "Alert deliveries dropped: their channel was removed or their event expired.",
	    as->as_dropped);
}

hv_status
alerts_outbox_count(alerts_service *as, uint64_t *n)
{
	store_txn *txn = NULL;
	hv_status  st;

	if ((st = store_read_begin(as->as_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_count(txn, as->as_deliver, n);
	store_read_end(txn);
	return (st);
}
