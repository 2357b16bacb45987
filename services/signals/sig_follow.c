/*
 * sig_follow.c - the follow-up of signals by the outreach organisations (referrers) of their
 * region: ListSignals, CountSignals (the badge's number of new ones), AcknowledgeSignal,
 * CloseSignal, ConvertSignal. A signal of another region is PERMISSION_DENIED, never hidden
 * as NOT_FOUND (docs/authority.md), and so is an id that names no signal, in the same words:
 * no answer tells whether an id exists.
 */
#include "sig_internal.h"

#include "haven/bytes.h"
#include "haven/ids.h"
#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE(x)   HAVEN__SIGNALS__V1__STATE__##x
#define OUTCOME(x) HAVEN__SIGNALS__V1__OUTCOME__##x

#define SIG_NOT_THE_CALLERS "no signal of the caller's region has that id"

/* The caller's home region into region (RPC_ORG_ID_MAX bytes). */
static hv_status
caller_region(rpc_call *call, sig_service *ss, store_txn *txn, char *region)
{
	const rpc_caller                  *c   = rpc_call_caller(call);
	Haven__Capacity__V1__Organisation *org = NULL;

	if (c->org_id[0] == '\0' || cap_get_org(ss->ss_cap, txn, c->org_id, NULL, &org) != HV_OK) {
		return (rpc_call_error(call, HV_PERMISSION_DENIED,
		    "signals are followed up by the outreach organisations of their region"));
	}
	snprintf(region, RPC_ORG_ID_MAX, "%s", org->region != NULL ? org->region : "");
	haven__capacity__v1__organisation__free_unpacked(org, NULL);
	return (HV_OK);
}

/* Fills s->contact from the sealed row (while the signal is open). */
static void
open_contact(rpc_call *call, sig_service *ss, store_txn *txn, Signal *s)
{
	const void *v;
	size_t      vl;
	char       *text;

	s->contact = "";
	if (s->state == STATE(CLOSED) || s->state == STATE(CONVERTED) ||
	    store_get(txn, ss->ss_contact, s->id, strlen(s->id), &v, &vl) != HV_OK ||
	    vl < SIG_SEALED_HDR || (text = rpc_call_alloc(call, vl - SIG_SEALED_HDR + 1)) == NULL) {
		return;
	}
	if (sig_unseal(ss, s->id, v, vl, text) == HV_OK) {
		s->contact = text;
	} else {
		log_error("signals: the contact of %s does not open", s->id);
	}
}

/* ---- audit ---------------------------------------------------------------------------- */

hv_status
sig_audit_read(sig_service *ss, store_txn *txn, rpc_call *call, const Signal *s)
{
	audit_entry e;

	if (ss->ss_audit == NULL) {
		return (HV_OK);
	}
	/* the purpose: the record read, as referrals do */
	audit_entry_fill(&e, rpc_call_caller(call), rpc_call_method(call), NULL, s->id,
	    sig_now(ss));
	return (audit_append(ss->ss_audit, txn, &e));
}

/* ---- ListSignals ---------------------------------------------------------------------- */

typedef struct list_job {
	rpc_call                                     *l_call;
	sig_service                                  *l_ss;
	const Haven__Signals__V1__ListSignalsRequest *l_q;
	Haven__Signals__V1__ListSignalsReply         *l_r;
	uint32_t                                      l_limit;
} list_job;

/* The region's signals, newest first, each read audited in this (write) transaction: the
 * contact is opened for the caller. */
static hv_status
list_txn(store_txn *txn, void *arg)
{
	list_job     *j    = arg;
	rpc_call     *call = j->l_call;
	sig_service  *ss   = j->l_ss;
	char          region[RPC_ORG_ID_MAX];
	store_cursor *cur = NULL;
	const void   *k;
	size_t        kl, rl;
	hv_status     st;

	j->l_r->n_signals = 0; /* a write function may run again */
	if ((st = caller_region(call, ss, txn, region)) != HV_OK) {
		return (st);
	}
	rl = strlen(region) + 1;
	st = store_cursor_open(txn, ss->ss_by_region, &cur);
	if (st == HV_OK) {
		st = store_cursor_seek(cur, region, rl, &k, &kl, NULL, NULL);
	}
	while (st == HV_OK && j->l_r->n_signals < j->l_limit && kl > rl + 8 &&
	    memcmp(k, region, rl) == 0) {
		char    id[SIG_ID_MAX];
		Signal *s  = NULL;
		size_t  il = kl - rl - 8 < SIG_ID_MAX - 1 ? kl - rl - 8 : SIG_ID_MAX - 1;

		memcpy(id, (const uint8_t *) k + rl + 8, il);
		id[il] = '\0';
		if (store_get_msg(txn, ss->ss_items, id, il,
		        &haven__signals__v1__signal__descriptor, rpc_call_allocator(call),
		        (ProtobufCMessage **) &s) == HV_OK &&
		    (j->l_q->include_closed ||
		        (s->state != STATE(CLOSED) && s->state != STATE(CONVERTED)))) {
			open_contact(call, ss, txn, s);
			if ((st = sig_audit_read(ss, txn, call, s)) != HV_OK) {
				break;
			}
			j->l_r->signals[j->l_r->n_signals++] = s;
		}
		st = store_cursor_next(cur, &k, &kl, NULL, NULL);
	}
	store_cursor_close(cur);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

hv_status
sig_h_list(rpc_call *call, void *svc, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	sig_service                                  *ss = svc;
	const Haven__Signals__V1__ListSignalsRequest *q  = (const void *) in;
	Haven__Signals__V1__ListSignalsReply         *r  = rpc_call_alloc(call, sizeof(*r));
	list_job  j = { .l_call = call, .l_ss = ss, .l_q = q, .l_r = r };
	hv_status st;

	j.l_limit = q->limit == 0 ? 100 : q->limit;
	if (j.l_limit > SIG_LIST_MAX) {
		return (
		    rpc_call_error(call, HV_INVALID_ARGUMENT, "limit is at most %d", SIG_LIST_MAX));
	}
	if (r == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__signals__v1__list_signals_reply__init(r);
	if ((r->signals = rpc_call_alloc(call, j.l_limit * sizeof(Signal *))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if ((st = store_write(ss->ss_store, list_txn, &j)) != HV_OK) {
		return (st);
	}
	*out = &r->base;
	return (HV_OK);
}

/* ---- CountSignals --------------------------------------------------------------------- */

/* The signals of the caller's region in state NEW, into *n. A read transaction and no audit
 * entry: the answer is one number about the caller's own region, it opens no contact and
 * names no signal (docs/signals.md), and the app asks for it with every badge refresh. */
static hv_status
count_new(rpc_call *call, sig_service *ss, uint32_t *n)
{
	store_txn    *txn;
	store_cursor *cur = NULL;
	char          region[RPC_ORG_ID_MAX];
	const void   *k, *v;
	size_t        kl, vl, rl;
	hv_status     st;

	*n = 0;
	if ((st = store_read_begin(ss->ss_store, &txn)) != HV_OK) {
		return (st);
	}
	if ((st = caller_region(call, ss, txn, region)) != HV_OK) {
		store_read_end(txn);
		return (st);
	}
	rl = strlen(region) + 1;
	if ((st = store_cursor_open(txn, ss->ss_by_region, &cur)) == HV_OK) {
		st = store_cursor_seek(cur, region, rl, &k, &kl, NULL, NULL);
	}
	while (st == HV_OK && kl > rl + 8 && memcmp(k, region, rl) == 0) {
		Signal *s = NULL;

		/* Closed signals stay for the statistics, so the state is in the item only. */
		if (store_get(txn, ss->ss_items, (const uint8_t *) k + rl + 8, kl - rl - 8, &v,
		        &vl) == HV_OK &&
		    (s = haven__signals__v1__signal__unpack(NULL, vl, v)) != NULL) {
			*n += s->state == STATE(NEW) ? 1 : 0;
			haven__signals__v1__signal__free_unpacked(s, NULL);
		}
		st = store_cursor_next(cur, &k, &kl, NULL, NULL);
	}
	store_cursor_close(cur);
	store_read_end(txn);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

hv_status
sig_h_count(rpc_call *call, void *svc, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Haven__Signals__V1__CountSignalsReply *r = rpc_call_alloc(call, sizeof(*r));
	hv_status                              st;

	(void) in; /* nothing to ask: the region is the caller's */
	if (r == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__signals__v1__count_signals_reply__init(r);
	if ((st = count_new(call, svc, &r->count)) != HV_OK) {
		return (st);
	}
	*out = &r->base;
	return (HV_OK);
}

/* ---- Acknowledge, Close, Convert ------------------------------------------------------ */

typedef enum { OP_ACK, OP_CLOSE, OP_CONVERT } follow_op;

typedef struct follow_job {
	rpc_call    *f_call;
	sig_service *f_ss;
	follow_op    f_op;
	const char  *f_id;
	int          f_outcome;
	const char  *f_referral;
	Signal      *f_out;
} follow_job;

static hv_status
follow_txn(store_txn *txn, void *arg)
{
	follow_job  *f    = arg;
	rpc_call    *call = f->f_call;
	sig_service *ss   = f->f_ss;
	const char  *org  = rpc_call_caller(call)->org_id;
	char         region[RPC_ORG_ID_MAX], made_by[RPC_ORG_ID_MAX];
	Signal      *s = NULL;
	hv_status    st;

	if ((st = caller_region(call, ss, txn, region)) != HV_OK) {
		return (st);
	}
	if (!ids_valid(f->f_id) ||
	    store_get_msg(txn, ss->ss_items, f->f_id, strlen(f->f_id),
	        &haven__signals__v1__signal__descriptor, rpc_call_allocator(call),
	        (ProtobufCMessage **) &s) != HV_OK) {
		return (rpc_call_error(call, HV_PERMISSION_DENIED, SIG_NOT_THE_CALLERS));
	}
	if (strcmp(s->region, region) != 0) {
		return (rpc_call_error(call, HV_PERMISSION_DENIED, SIG_NOT_THE_CALLERS));
	}
	if (s->state == STATE(CLOSED) || s->state == STATE(CONVERTED)) {
		return (rpc_call_error(call, HV_FAILED_PRECONDITION, "the signal is closed"));
	}
	if (f->f_op == OP_CONVERT) {
		if (ss->ss_refs == NULL) {
			return (
			    rpc_call_error(call, HV_FAILED_PRECONDITION, "no referral service"));
		}
		/* A referral of another organisation and none at all are refused alike: no
		 * oracle for which referral ids exist. */
		st = ref_referrer_of(ss->ss_refs, txn, f->f_referral, made_by, sizeof(made_by));
		if (st != HV_OK && st != HV_NOT_FOUND) {
			return (rpc_call_error(call, st, "the referral cannot be read"));
		}
		if (st == HV_NOT_FOUND || strcmp(made_by, org) != 0) {
			return (rpc_call_error(call, HV_PERMISSION_DENIED,
			    "referral_id names no referral the caller's organisation made"));
		}
	}
	if (s->acknowledged_by == NULL || s->acknowledged_by[0] == '\0') {
		s->acknowledged_by = rpc_call_strdup(call, org);
		s->acknowledged_ms = (uint64_t) sig_now(ss);
		s->state           = STATE(ACKNOWLEDGED);
	}
	if (f->f_op != OP_ACK) {
		s->state     = f->f_op == OP_CLOSE ? STATE(CLOSED) : STATE(CONVERTED);
		s->outcome   = f->f_op == OP_CLOSE ? f->f_outcome : OUTCOME(REFERRAL);
		s->closed_ms = (uint64_t) sig_now(ss);
		if (f->f_op == OP_CONVERT) {
			s->referral_id = (char *) f->f_referral;
		}
		/* The sender's contact goes with the signal's life: only while someone follows up.
		 */
		if ((st = store_del(txn, ss->ss_contact, s->id, strlen(s->id))) != HV_OK &&
		    st != HV_NOT_FOUND) {
			return (st);
		}
	}
	if ((st = store_put_msg(txn, ss->ss_items, s->id, strlen(s->id), &s->base)) != HV_OK) {
		return (st);
	}
	open_contact(call, ss, txn, s);
	f->f_out = s;
	return (sig_audit_read(ss, txn, call, s));
}

static hv_status
follow(rpc_call *call, sig_service *ss, follow_job *f, Haven__Signals__V1__Signal ***slot)
{
	hv_status st;

	f->f_call = call;
	f->f_ss   = ss;
	if (f->f_id == NULL || f->f_id[0] == '\0') {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "id is required"));
	}
	if ((st = store_write(ss->ss_store, follow_txn, f)) != HV_OK) {
		return (st);
	}
	**slot = f->f_out;
	return (HV_OK);
}

hv_status
sig_h_ack(rpc_call *call, void *svc, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Haven__Signals__V1__AcknowledgeSignalRequest *q = (const void *) in;
	Haven__Signals__V1__AcknowledgeSignalReply         *r = rpc_call_alloc(call, sizeof(*r));
	follow_job                                          f = { .f_op = OP_ACK, .f_id = q->id };
	Signal                                            **slot;
	hv_status                                           st;

	if (r == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__signals__v1__acknowledge_signal_reply__init(r);
	slot = &r->signal;
	if ((st = follow(call, svc, &f, &slot)) == HV_OK) {
		*out = &r->base;
	}
	return (st);
}

hv_status
sig_h_close(rpc_call *call, void *svc, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Haven__Signals__V1__CloseSignalRequest *q = (const void *) in;
	Haven__Signals__V1__CloseSignalReply         *r = rpc_call_alloc(call, sizeof(*r));
	follow_job f = { .f_op = OP_CLOSE, .f_id = q->id, .f_outcome = (int) q->outcome };
	Signal   **slot;
	hv_status  st;

	if (r == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (q->outcome == OUTCOME(REFERRAL) || q->outcome == OUTCOME(EXPIRED) || q->outcome == 0 ||
	    protobuf_c_enum_descriptor_get_value(&haven__signals__v1__outcome__descriptor,
	        (int) q->outcome) == NULL) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "outcome is required, an Outcome other than REFERRAL (ConvertSignal sets that) "
		    "and EXPIRED (retention's)"));
	}
	haven__signals__v1__close_signal_reply__init(r);
	slot = &r->signal;
	if ((st = follow(call, svc, &f, &slot)) == HV_OK) {
		*out = &r->base;
	}
	return (st);
}

hv_status
sig_h_convert(rpc_call *call, void *svc, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Haven__Signals__V1__ConvertSignalRequest *q = (const void *) in;
	Haven__Signals__V1__ConvertSignalReply         *r = rpc_call_alloc(call, sizeof(*r));
	follow_job f = { .f_op = OP_CONVERT, .f_id = q->id, .f_referral = q->referral_id };
	Signal   **slot;
	hv_status  st;

	if (r == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (q->referral_id == NULL || !ids_valid(q->referral_id)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "referral_id is required: the id of the referral made for this signal"));
	}
	haven__signals__v1__convert_signal_reply__init(r);
	slot = &r->signal;
	if ((st = follow(call, svc, &f, &slot)) == HV_OK) {
		*out = &r->base;
	}
	return (st);
}
