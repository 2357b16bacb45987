/*
 * alerts_probe.c - TestChannels: an organisation's admin sends one TEST alert through the real
 * outbox to every channel the organisation configured (its e-mail desks, its on-call address
 * and its webhook), and hears what became of each delivery.
 *
 * The alert is an ordinary event (alerts_enqueue, kind TEST, the organisation its only
 * recipient), so it also reaches WatchEvents and GET /events: an open page sees it arrive. It
 * says nothing but that it is a test, when, and a link. Its deliveries are tried once (a
 * failing channel is the news, not something to retry for hours); the sender keeps each
 * outcome here (alerts_probe_record), and the call waits for them, at most the send timeout
 * and a little more, and answers TEST_PENDING for any still out.
 *
 * Bounds: one test per caller (organisation and person) and organisation every
 * ALERTS_PROBE_EVERY_MS, so that a button pressed again and again cannot make the node a
 * relay of mail or requests; at most ALERTS_PROBE_WAITING calls wait at once (a handler
 * thread each). Beyond either: RESOURCE_EXHAUSTED before anything is written.
 */
#include "alerts_internal.h"

#include "haven/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef Haven__Alerts__V1__ChannelResult ChannelResult;
#define OUTCOME(x) HAVEN__ALERTS__V1__TEST_OUTCOME__TEST_##x

void
alerts_probe_record(alerts_service *as, const alerts_job *jobs, size_t n)
{
	bool any = false;

	pthread_mutex_lock(&as->as_lock);
	for (size_t i = 0; i < n; i++) {
		alerts_probe_result *r;

		if (!jobs[i].aj_once || jobs[i].aj_gone) {
			continue;
		}
		r                 = &as->as_probe_results[as->as_probe_next];
		as->as_probe_next = (as->as_probe_next + 1) % ALERTS_PROBE_RESULTS;
		snprintf(r->pr_key, sizeof(r->pr_key), "%s", jobs[i].aj_key);
		r->pr_ok = jobs[i].aj_ok;
		snprintf(r->pr_err, sizeof(r->pr_err), "%s",
		    jobs[i].aj_ok                   ? ""
		        : jobs[i].aj_err[0] != '\0' ? jobs[i].aj_err
		                                    : "not sent");
		any = true;
	}
	if (any) {
		as->as_wakes++;
		pthread_cond_broadcast(&as->as_cond);
	}
	pthread_mutex_unlock(&as->as_lock);
}

/* Takes a test of org by this caller if the rate allows: HV_OK, or RESOURCE_EXHAUSTED with
 * the call's error set. */
static hv_status
rate_take(alerts_service *as, rpc_call *call, const char *org)
{
	const rpc_caller   *c    = rpc_call_caller(call);
	int64_t             now  = hv_clock_mono_ms();
	alerts_probe_limit *slot = NULL;
	char                who[sizeof(slot->pl_who)];
	hv_status           st = HV_OK;

	snprintf(who, sizeof(who), "%s/%s>%s", c->org_id, c->person.id, org);
	pthread_mutex_lock(&as->as_lock);
	for (size_t i = 0; i < ALERTS_PROBE_LIMITS; i++) {
		alerts_probe_limit *l = &as->as_probe_limits[i];

		if (strcmp(l->pl_who, who) == 0) {
			slot = l;
			break;
		}
		if (slot == NULL || l->pl_who[0] == '\0' ||
		    (slot->pl_who[0] != '\0' && l->pl_at < slot->pl_at)) {
			slot = l; /* a free slot, else the oldest */
		}
	}
	if (strcmp(slot->pl_who, who) == 0 && now - slot->pl_at < ALERTS_PROBE_EVERY_MS) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "the channels were tested less than %d s ago: try again in %lld s",
		    ALERTS_PROBE_EVERY_MS / 1000,
		    (long long) ((ALERTS_PROBE_EVERY_MS - (now - slot->pl_at)) / 1000 + 1));
	} else if (as->as_probe_waiting >= ALERTS_PROBE_WAITING) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "%d tests of alert channels are running: try again in a few seconds",
		    ALERTS_PROBE_WAITING);
	} else {
		snprintf(slot->pl_who, sizeof(slot->pl_who), "%s", who);
		slot->pl_at = now;
		as->as_probe_waiting++;
	}
	pthread_mutex_unlock(&as->as_lock);
	return (st);
}

typedef struct probe_job {
	alerts_service *pj_as;
	const char     *pj_org;
	uint64_t        pj_seq;
	Channels       *pj_ch; /* the channels when the alert was written; NULL: none */
} probe_job;

static hv_status
probe_fn(store_txn *txn, void *arg)
{
	probe_job   *j  = arg;
	alerts_event ev = { .ae_kind = ALERT(TEST), .ae_orgs = { j->pj_org }, .ae_norgs = 1 };
	hv_status    st;

	if (j->pj_ch != NULL) { /* a retry of this function */
		protobuf_c_message_free_unpacked(&j->pj_ch->base, NULL);
		j->pj_ch = NULL;
	}
	if ((st = alerts_enqueue(j->pj_as, txn, &ev)) != HV_OK ||
	    (st = alerts_last_seq(j->pj_as, txn, &j->pj_seq)) != HV_OK) {
		return (st);
	}
	return (alerts_channels_get(j->pj_as, txn, j->pj_org, &j->pj_ch));
}

/* The result for one channel: its outcome once the sender kept it. */
static bool
outcome_of(alerts_service *as, const char *key, ChannelResult *r, rpc_call *call)
{
	for (size_t i = 0; i < ALERTS_PROBE_RESULTS; i++) {
		const alerts_probe_result *p = &as->as_probe_results[i];

		if (strcmp(p->pr_key, key) == 0) {
			r->outcome = p->pr_ok ? OUTCOME(DELIVERED) : OUTCOME(FAILED);
			r->error   = p->pr_ok ? "" : rpc_call_strdup(call, p->pr_err);
			return (r->error != NULL);
		}
	}
	return (false);
}

/* Waits for the outcome of each result's delivery (keys[i]) until the deadline. */
static void
probe_wait(alerts_service *as, rpc_call *call, ChannelResult **res, char (*keys)[ALERTS_KEY_MAX],
    size_t n)
{
	uint32_t wait = (uint32_t) as->as_send_timeout_ms + 3000;
	int64_t  end;

	if (rpc_call_remaining_ms(call) < wait + 250) {
		wait = rpc_call_remaining_ms(call) > 250 ? rpc_call_remaining_ms(call) - 250 : 0;
	}
	end = hv_clock_mono_ms() + wait;
	pthread_mutex_lock(&as->as_lock);
	for (;;) {
		size_t          done = 0;
		int64_t         left = end - hv_clock_mono_ms();
		struct timespec ts;

		for (size_t i = 0; i < n; i++) {
			done += res[i]->outcome != OUTCOME(PENDING) ||
			    outcome_of(as, keys[i], res[i], call);
		}
		if (done == n || left <= 0 || as->as_stopping) {
			break;
		}
		hv_clock_deadline(&ts, (uint64_t) (left < 100 ? left : 100));
		pthread_cond_timedwait(&as->as_cond, &as->as_lock, &ts);
	}
	as->as_probe_waiting--;
	pthread_mutex_unlock(&as->as_lock);
}

static void
probe_release(alerts_service *as)
{
	pthread_mutex_lock(&as->as_lock);
	as->as_probe_waiting--;
	pthread_mutex_unlock(&as->as_lock);
}

hv_status
alerts_h_test_channels(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	alerts_service                               *as = svc;
	const Haven__Alerts__V1__TestChannelsRequest *in = (const void *) req;
	Haven__Alerts__V1__TestChannelsResponse      *out;
	char                                          org[CAP_ID_MAX];
	char                                          keys[3][ALERTS_KEY_MAX];
	Channel                                       chans[3];
	probe_job                                     j = { .pj_as = as };
	size_t                                        n = 0;
	hv_status                                     st;

	if ((st = alerts_may_act(as, call, in->org_id, org)) != HV_OK ||
	    (st = alerts_may_configure(call)) != HV_OK ||
	    (st = rate_take(as, call, org)) != HV_OK) {
		return (st);
	}
	j.pj_org = org;
	if ((st = store_write(as->as_store, probe_fn, &j)) != HV_OK) {
		if (j.pj_ch != NULL) {
			protobuf_c_message_free_unpacked(&j.pj_ch->base, NULL);
		}
		probe_release(as);
		return (rpc_call_error(call, st, "the test alert was not written"));
	}
	alerts_kick(as);
	if (j.pj_ch != NULL) { /* the channels enqueue_one wrote a delivery for */
		if (j.pj_ch->n_emails > 0) {
			chans[n++] = CHANNEL(EMAIL);
		}
		if (j.pj_ch->oncall_email[0] != '\0') {
			chans[n++] = CHANNEL(ONCALL);
		}
		if (j.pj_ch->webhook_url[0] != '\0') {
			chans[n++] = CHANNEL(WEBHOOK);
		}
		protobuf_c_message_free_unpacked(&j.pj_ch->base, NULL);
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL ||
	    (haven__alerts__v1__test_channels_response__init(out),
	        out->results = rpc_call_alloc(call, (n + 1) * sizeof(*out->results))) == NULL) {
		probe_release(as);
		return (HV_RESOURCE_EXHAUSTED);
	}
	out->seq = j.pj_seq;
	for (size_t i = 0; i < n; i++) {
		ChannelResult *r = rpc_call_alloc(call, sizeof(*r));

		if (r == NULL) {
			probe_release(as);
			return (HV_RESOURCE_EXHAUSTED);
		}
		haven__alerts__v1__channel_result__init(r);
		r->channel = chans[i];
		r->outcome = OUTCOME(PENDING);
		r->error   = "";
		snprintf(keys[i], sizeof(keys[i]), "%llu.%s.%s", (unsigned long long) j.pj_seq, org,
		    alerts_channel_name(chans[i]));
		out->results[out->n_results++] = r;
	}
	probe_wait(as, call, out->results, keys, n);
	*reply = &out->base;
	return (HV_OK);
}
