/*
 * rpc_async.c - asynchronous calls on a channel (rpc_channel_call_async, rpc.h).
 *
 * A blocking call costs its caller a thread that sleeps twice per call (request sent, reply
 * in); at many calls in flight those threads and their wake-ups cost more than the call.
 * Here a call is a slot (an nng REQ context and an aio whose callback drives it): the caller
 * packs the request and starts the send, and nng's own threads carry the call on from the
 * callback (sent -> receive -> decode -> done). No thread waits, nothing is handed between
 * threads that nng does not hand over itself, and a slot with its context and aio is reused
 * by the channel's next asynchronous call.
 *
 * A slot whose call failed is reused too: a REQ context's next request has a new id and the
 * REQ socket drops replies to any other (a late reply to a timed-out call never reaches a
 * later one), and the envelope's request id is checked besides (rpc_reply_decode).
 */
#include "haven/clock.h"
#include "haven/rpc.h"

#include "rpc_channel.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS 10000

static void async_cb(void *arg);

/* An idle slot of the channel, or a new one; NULL when closing, at RPC_ASYNC_MAX or out of
 * memory (*st says which). */
static rpc_async *
async_get(rpc_channel *ch, hv_status *st)
{
	rpc_async *a = NULL;
	int        rv;

	pthread_mutex_lock(&ch->ch_mtx);
	*st = ch->ch_closing ? HV_UNAVAILABLE : HV_RESOURCE_EXHAUSTED;
	if (!ch->ch_closing && ch->ch_afree != NULL) {
		a            = ch->ch_afree;
		ch->ch_afree = a->a_next_free;
	} else if (!ch->ch_closing && ch->ch_nasync < RPC_ASYNC_MAX &&
	    (a = calloc(1, sizeof(*a))) != NULL) {
		if ((rv = nng_aio_alloc(&a->a_aio, async_cb, a)) != 0 ||
		    (rv = nng_ctx_open(&a->a_ctx, ch->ch_sock)) != 0 ||
		    (rv = nng_ctx_set_ms(a->a_ctx, NNG_OPT_REQ_RESENDTIME,
		         NNG_DURATION_INFINITE)) != 0) {
			*st = hv_status_from_nng(rv);
			if (a->a_aio != NULL) {
				nng_aio_free(a->a_aio);
			}
			free(a);
			a = NULL;
		} else {
			/* Kept until the channel closes: rpc_channel_close frees it. */
			a->a_ch       = ch;
			a->a_next_all = ch->ch_aall;
			ch->ch_aall   = a;
			ch->ch_nasync++;
		}
	}
	pthread_mutex_unlock(&ch->ch_mtx);
	return (a);
}

static void
async_put(rpc_channel *ch, rpc_async *a)
{
	pthread_mutex_lock(&ch->ch_mtx);
	a->a_next_free = ch->ch_afree;
	ch->ch_afree   = a;
	pthread_mutex_unlock(&ch->ch_mtx);
}

/* The slot's aio callback, on nng's threads: the request went out (start receiving), or the
 * call is over (decode, done, slot back to the channel). */
static void
async_cb(void *arg)
{
	rpc_async        *a     = arg;
	rpc_channel      *ch    = a->a_ch;
	ProtobufCMessage *reply = NULL;
	char              errmsg[RPC_ERRMSG_MAX];
	hv_status         st;
	int               rv = nng_aio_result(a->a_aio);

	if (!a->a_receiving && rv == 0) {
		int64_t left = a->a_deadline_ms - hv_clock_mono_ms();
		bool    closing;

		/* The request is nng's now. The receive starts under the channel's lock unless
		 * the channel is closing: rpc_channel_close sets ch_closing under that lock and
		 * then stops every slot, so a receive started before it is stopped, and none
		 * starts after it (a receive started on a stopped aio could outlive the close). */
		a->a_receiving = true;
		pthread_mutex_lock(&ch->ch_mtx);
		if (!(closing = ch->ch_closing)) {
			nng_aio_set_timeout(a->a_aio, (nng_duration) (left > 0 ? left : 1));
			nng_ctx_recv(a->a_ctx, a->a_aio);
		}
		pthread_mutex_unlock(&ch->ch_mtx);
		if (!closing) {
			return;
		}
		rv = NNG_ECANCELED;
	}
	errmsg[0] = '\0';
	if (rv != 0) {
		if (!a->a_receiving) { /* the request is still ours */
			nng_msg_free(nng_aio_get_msg(a->a_aio));
		}
		/* NNG_ECANCELED: rpc_channel_close stopped the slot (no other code cancels). */
		st = rv == NNG_ECANCELED
		    ? HV_UNAVAILABLE
		    : rpc_channel_nng_error(ch, rv, !a->a_receiving, errmsg, sizeof(errmsg));
		if (rv == NNG_ECANCELED) {
			snprintf(errmsg, sizeof(errmsg), "%s", "the channel was closed");
		}
	} else {
		st = rpc_reply_decode(nng_aio_get_msg(a->a_aio), a->a_id, a->a_reply_desc, &reply,
		    errmsg, sizeof(errmsg));
	}
	nng_aio_set_msg(a->a_aio, NULL);
	a->a_done(a->a_arg, st, reply, errmsg);
	async_put(ch, a);
}

hv_status
rpc_channel_call_async(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, const rpc_call_options *opts, rpc_done_fn done,
    void *arg)
{
	rpc_call_options o = { 0 };
	rpc_async       *a;
	nng_msg         *msg;
	uint64_t         id;
	hv_status        st;

	if (ch == NULL || method == NULL || req == NULL || reply_desc == NULL || done == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (opts != NULL) {
		o = *opts;
	}
	if (o.timeout_ms == 0) {
		o.timeout_ms = DEFAULT_TIMEOUT_MS;
	}
	if ((a = async_get(ch, &st)) == NULL) {
		return (st);
	}
	id = atomic_fetch_add(&ch->ch_next_id, 1);
	if ((st = rpc_request_pack(ch, method, req, &o, o.timeout_ms, id, &msg)) != HV_OK) {
		async_put(ch, a);
		return (st);
	}
	a->a_receiving   = false;
	a->a_id          = id;
	a->a_deadline_ms = hv_clock_mono_ms() + o.timeout_ms;
	a->a_reply_desc  = reply_desc;
	a->a_done        = done;
	a->a_arg         = arg;
	nng_aio_set_timeout(a->a_aio, (nng_duration) o.timeout_ms);
	nng_aio_set_msg(a->a_aio, msg);
	nng_ctx_send(a->a_ctx, a->a_aio);
	return (HV_OK);
}
