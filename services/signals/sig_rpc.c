/*
 * sig_rpc.c - haven.signals.v1.Signals: Challenge and Submit for anyone, the follow-up
 * methods for the outreach organisations (referrers) of a signal's region, Statistics for
 * those who see numbers (docs/authority.md). Messages name fields, never their contents.
 */
#include "sig_internal.h"

#include "haven/bytes.h"
#include "haven/ids.h"
#include "haven/log.h"
#include "haven/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE(x) HAVEN__SIGNALS__V1__STATE__##x

static bool
enum_ok(const ProtobufCEnumDescriptor *d, int v)
{
	return (v != 0 && protobuf_c_enum_descriptor_get_value(d, v) != NULL);
}

/* 112 and the helpline, for a reply's emergency_numbers. */
static hv_status
emergency_numbers(rpc_call *call, sig_service *ss, char ***out, size_t *n)
{
	char **nums = rpc_call_alloc(call, 2 * sizeof(char *));

	if (nums == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*n           = 0;
	nums[(*n)++] = "112";
	if (ss->ss_helpline[0] != '\0') {
		nums[(*n)++] = ss->ss_helpline;
	}
	*out = nums;
	return (HV_OK);
}

/* ---- Challenge ------------------------------------------------------------------------ */

hv_status
sig_h_challenge(rpc_call *call, void *svc, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	sig_service                        *ss    = svc;
	Haven__Signals__V1__ChallengeReply *r     = rpc_call_alloc(call, sizeof(*r));
	char                               *nonce = rpc_call_alloc(call, SIG_NONCE_LEN + 1);
	int64_t                             exp;
	hv_status                           st;

	(void) in;
	if (r == NULL || nonce == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if ((st = sig_limit(call, ss->ss_lim_challenge, "challenges")) != HV_OK) {
		return (st);
	}
	if ((st = sig_challenge_new(ss, nonce, &exp)) != HV_OK) {
		return (rpc_call_error(call, st,
		    "too many challenges right now; try again in a minute"));
	}
	haven__signals__v1__challenge_reply__init(r);
	if ((st = emergency_numbers(call, ss, &r->emergency_numbers, &r->n_emergency_numbers)) !=
	    HV_OK) {
		return (st);
	}
	if ((r->regions = rpc_call_alloc(call,
	         region_map_count(ss->ss_regions) * sizeof(char *) + 1)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	for (size_t i = 0; i < region_map_count(ss->ss_regions); i++) {
		r->regions[r->n_regions++] = (char *) region_map_name(ss->ss_regions, i);
	}
	r->nonce         = nonce;
	r->difficulty    = ss->ss_difficulty;
	r->expires_at_ms = (uint64_t) exp;
	*out             = &r->base;
	return (HV_OK);
}

/* ---- Submit --------------------------------------------------------------------------- */

static hv_status
check_submit(rpc_call *call, sig_service *ss, const Haven__Signals__V1__SubmitRequest *q)
{
	if (q->region == NULL || region_map_find(ss->ss_regions, q->region) < 0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "region is required and must be a region of the region map"));
	}
	if (!enum_ok(&haven__signals__v1__help_kind__descriptor, (int) q->help)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "help is required (a HelpKind)"));
	}
	if (q->sector != 0 && !enum_ok(&haven__signals__v1__sector__descriptor, (int) q->sector)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "sector is not a known Sector"));
	}
	if (q->n_signs > SIG_SIGNS_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "signs has %zu entries, at most %d", q->n_signs, SIG_SIGNS_MAX));
	}
	for (size_t i = 0; i < q->n_signs; i++) {
		if (!enum_ok(&haven__signals__v1__sign__descriptor, (int) q->signs[i])) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "signs[%zu] is not a known Sign", i));
		}
		for (size_t j = 0; j < i; j++) {
			if (q->signs[j] == q->signs[i]) {
				return (rpc_call_error(call, HV_INVALID_ARGUMENT,
				    "signs[%zu] repeats", i));
			}
		}
	}
	if (q->contact != NULL && q->contact[0] != '\0' &&
	    !text_free_ok(q->contact, 1, SIG_CONTACT_MAX)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "contact must be at most %d bytes of text without control characters",
		    SIG_CONTACT_MAX));
	}
	if (q->language != NULL && q->language[0] != '\0' && !text_lang_ok(q->language)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "language must be %s",
		    TEXT_LANG_RULE));
	}
	return (HV_OK);
}

typedef struct submit_job {
	sig_service                             *j_ss;
	const Haven__Signals__V1__SubmitRequest *j_q;
	char                                     j_id[SIG_ID_MAX];
	char                                     j_orgs[ALERTS_RECIPIENTS][RPC_ORG_ID_MAX];
	size_t                                   j_norgs;
} submit_job;

/* The enabled referrers of the signal's region (the first ALERTS_RECIPIENTS). */
static int
collect_referrer(void *arg, const Haven__Capacity__V1__Organisation *org)
{
	submit_job *j = arg;

	if (!org->disabled && org->role == HAVEN__CAPACITY__V1__ROLE__REFERRER &&
	    org->region != NULL && strcmp(org->region, j->j_q->region) == 0 &&
	    j->j_norgs < ALERTS_RECIPIENTS) {
		snprintf(j->j_orgs[j->j_norgs++], RPC_ORG_ID_MAX, "%s", org->id);
	}
	return (0);
}

static hv_status
submit_txn(store_txn *txn, void *arg)
{
	submit_job                              *j  = arg;
	sig_service                             *ss = j->j_ss;
	const Haven__Signals__V1__SubmitRequest *q  = j->j_q;
	Signal                                   s  = HAVEN__SIGNALS__V1__SIGNAL__INIT;
	uint8_t                                  key[SIG_KEY_MAX];
	alerts_event                             ev = { 0 };
	hv_status                                st;
	size_t                                   clen = q->contact != NULL ? strlen(q->contact) : 0;

	j->j_norgs   = 0;
	s.id         = j->j_id;
	s.region     = q->region;
	s.help       = q->help;
	s.sector     = q->sector;
	s.signs      = q->signs;
	s.n_signs    = q->n_signs;
	s.danger_now = q->danger_now;
	s.language   = q->language != NULL ? q->language : "";
	s.created_ms = (uint64_t) sig_now(ss);
	s.state      = STATE(NEW);
	if ((st = store_put_msg(txn, ss->ss_items, s.id, strlen(s.id), &s.base)) != HV_OK ||
	    (st = store_put(txn, ss->ss_by_region, key,
	         sig_key_region(key, s.region, s.created_ms, s.id), "", 0)) != HV_OK) {
		return (st);
	}
	if (clen > 0) {
		uint8_t sealed[SIG_CONTACT_MAX + SIG_SEALED_HDR];
		if ((st = sig_seal(ss, s.id, q->contact, clen, sealed)) != HV_OK ||
		    (st = store_put(txn, ss->ss_contact, s.id, strlen(s.id), sealed,
		         clen + SIG_SEALED_HDR)) != HV_OK) {
			return (st);
		}
	}
	if ((st = cap_foreach_org(ss->ss_cap, txn, collect_referrer, j)) != HV_OK) {
		return (st);
	}
	ev.ae_kind    = ALERT(SIGNAL_NEW);
	ev.ae_urgency = q->danger_now ? HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE : 0;
	ev.ae_region  = q->region;
	for (size_t i = 0; i < j->j_norgs; i++) {
		ev.ae_orgs[i] = j->j_orgs[i];
	}
	ev.ae_norgs = j->j_norgs;
	return (alerts_enqueue(ss->ss_alerts, txn, &ev));
}

hv_status
sig_h_submit(rpc_call *call, void *svc, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	sig_service                             *ss = svc;
	const Haven__Signals__V1__SubmitRequest *q  = (const void *) in;
	Haven__Signals__V1__SubmitReply         *r;
	submit_job                              *j;
	const char                              *why;
	hv_status                                st;

	/* The work first: nothing else is looked at, and no token of the overall limit spent,
	 * for a caller who has not paid. */
	if ((st = sig_challenge_spend(ss, q->nonce, q->solution.data, q->solution.len, &why)) !=
	    HV_OK) {
		return (rpc_call_error(call, st, "%s", why));
	}
	if ((st = sig_limit(call, ss->ss_lim_submit, "signals")) != HV_OK) {
		return (st);
	}
	if ((st = check_submit(call, ss, q)) != HV_OK) {
		return (st);
	}
	if ((r = rpc_call_alloc(call, sizeof(*r))) == NULL ||
	    (j = rpc_call_alloc(call, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	memset(j, 0, sizeof(*j));
	j->j_ss = ss;
	j->j_q  = q;
	if ((st = ids_generate(j->j_id, sizeof(j->j_id), "sig-", 32)) != HV_OK ||
	    (st = store_write(ss->ss_store, submit_txn, j)) != HV_OK) {
		log_error("signals: cannot store a signal: %s", hv_status_name(st));
		return (rpc_call_error(call, st,
		    "the signal could not be stored; if you are in danger "
		    "call 112"));
	}
	haven__signals__v1__submit_reply__init(r);
	r->id = rpc_call_strdup(call, j->j_id);
	if (q->danger_now &&
	    (st = emergency_numbers(call, ss, &r->emergency_numbers, &r->n_emergency_numbers)) !=
	        HV_OK) {
		return (st);
	}
	log_info("signals: %s received for %s (%zu alerted)", j->j_id, q->region, j->j_norgs);
	*out = &r->base;
	return (HV_OK);
}
