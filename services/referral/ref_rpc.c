/*
 * ref_rpc.c - the handlers of haven.referral.v1.Referrals: who may call what, who may see
 * which referral, and each state change as one write transaction (ref_need.c does the
 * transitions and ref_route.c the routing inside it).
 *
 * Visibility: a referrer sees its own referrals, a coordinator those of its home region, the
 * operator and admins all; a provider sees only its offers (no subject); a municipality only
 * Statistics. Messages name ids, states and regions, never a note or reason text.
 *
 * Free text (the note, the free part of a reason, a decline text) is sealed under the
 * subject's key as it is written (ref_text.c), and answers are made from a copy that opens it
 * (ref_shown, ref_shown_offer) inside the transaction that read the record.
 */
#include "ref_internal.h"

#include "haven/pbenum.h"
#include "ref_rpc.h"
#include "ref_metrics.h"

#include "haven/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------------------- */

hv_status
ref_rpc_error(rpc_call *call, ref_work *w, hv_status st)
{
	if (w->w_err[0] != '\0') {
		return (rpc_call_error(call, st, "%s", w->w_err));
	}
	return (rpc_call_error(call, st, "%s", hv_status_name(st)));
}

const char *
ref_enum_buf(const ProtobufCEnumDescriptor *d, int v, char buf[48])
{
	return (pbenum_name(d, NULL, v, buf, 48));
}

/* An id from a request as a message may show it: only when it is one (anything else could be
 * any text, even personal data typed into the wrong field). */
const char *
ref_shown_id(const char *id)
{
	return (ids_valid(id) ? id : "(not an id)");
}

/* Whether a need is with the provider organisation now: accepted by it, or placed there. */
bool
ref_accepted_by(const Need *n, const char *org)
{
	return ((n->state == NS(ACCEPTED) || n->state == NS(PLACED)) &&
	    strcmp(n->provider_org, org) == 0);
}

/* Whether the caller may see (and, for its role, act on) the referral. A provider sees it only
 * while a need of it is accepted by or placed with the provider, and then only provider_view. */
hv_status
ref_may_see(ref_service *rs, store_txn *txn, const rpc_caller *c, const Referral *r, bool *ok)
{
	char      region[REGION_NAME_MAX];
	hv_status st;

	*ok = false;
	switch (c->role) {
	case RPC_ROLE_OPERATOR:
	case RPC_ROLE_NATIONAL_COORDINATOR:
		*ok = true;
		return (HV_OK);
	case RPC_ROLE_REFERRER:
		/* Its own referrals, while it still holds their subject: one that handed her on
		 * (TransferSubject) loses them at once with her, and with them where she is
		 * placed. */
		*ok = strcmp(c->org_id, r->referrer_org) == 0;
		if (*ok && rs->rs_holds != NULL) {
			return (rs->rs_holds(rs->rs_consent_arg, txn, r->subject, c->org_id, ok));
		}
		return (HV_OK);
	case RPC_ROLE_PROVIDER:
		for (size_t i = 0; i < r->n_needs && !*ok; i++) {
			*ok = ref_accepted_by(r->needs[i], c->org_id);
		}
		return (HV_OK);
	case RPC_ROLE_COORDINATOR:
		st = ref_org_region(rs, txn, c->org_id, region);
		if (st == HV_NOT_FOUND) {
			return (HV_OK);
		}
		*ok = st == HV_OK && strcmp(region, r->home_region) == 0;
		return (st);
	default:
		return (HV_OK);
	}
}

void
ref_set_audit(ref_service *rs, audit *a)
{
	if (rs != NULL) {
		rs->rs_audit = a;
	}
}

hv_status
ref_audit_access(ref_work *w, const rpc_caller *c, const char *method, const char *subject,
    const char *what)
{
	audit_entry e;
	hv_status   st;

	if (w->w_rs->rs_audit == NULL) {
		return (HV_OK);
	}
	audit_entry_fill(&e, c, method, subject, what, w->w_now);
	if ((st = audit_append(w->w_rs->rs_audit, w->w_txn, &e)) != HV_OK) {
		return (ref_fail(w, st, "cannot audit the read of %s", what));
	}
	return (HV_OK);
}

hv_status
ref_read(ref_service *rs, hv_status (*fn)(store_txn *, void *), void *arg)
{
	store_txn *txn;
	hv_status  st;

	if (rs->rs_audit != NULL) {
		return (store_write(rs->rs_store, fn, arg));
	}
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = fn(txn, arg);
	store_read_end(txn);
	return (st);
}

bool
ref_sees_all(const rpc_caller *c)
{
	return (c->role == RPC_ROLE_OPERATOR || c->role == RPC_ROLE_NATIONAL_COORDINATOR);
}

/* Loads a referral the caller may see: NOT_FOUND or PERMISSION_DENIED with w_err set. A
 * referral that does not exist (or was erased) is NOT_FOUND only to a caller that sees every
 * referral; anyone else is refused it in the words of another's, so that no answer tells
 * whether an id names a referral. */
hv_status
ref_load_visible(ref_work *w, const rpc_caller *c, const char *id, Referral **out)
{
	bool      ok = false;
	hv_status st;

	if ((st = ref_load(w, id, out)) != HV_OK && (st != HV_NOT_FOUND || ref_sees_all(c))) {
		return (st == HV_NOT_FOUND
		        ? ref_fail(w, st, "no referral %s", ref_shown_id(id))
		        : ref_fail(w, st, "cannot read referral %s", ref_shown_id(id)));
	}
	if (st == HV_OK && (st = ref_may_see(w->w_rs, w->w_txn, c, *out, &ok)) != HV_OK) {
		return (ref_fail(w, st, "cannot read the partner directory"));
	}
	if (!ok) {
		return (ref_fail(w, HV_PERMISSION_DENIED, "referral %s is not yours to see",
		    ref_shown_id(id)));
	}
	return (HV_OK);
}

/* ---- GetReferral, ListReferrals -------------------------------------------------------------- */

/* What the provider that accepted a need sees of its referral (docs/authority.md): whom it
 * takes in (the subject's id; her data through the consent service, as consent allows), from
 * whom (the referrer, reached at its directory contact), how urgent, and the needs it
 * accepted. Not the note, the unsafe and preferred regions, the other needs or the trail. */
static hv_status
provider_view(ref_work *w, const rpc_caller *provider, const Referral *r, Referral **out)
{
	ref_service *rs      = w->w_rs;
	const char  *org     = provider->org_id;
	Referral    *c       = arena_alloc(w->w_arena, sizeof(*c));
	Need       **needs   = arena_alloc(w->w_arena, (r->n_needs + 1) * sizeof(*needs));
	bool         allowed = false;
	hv_status    st;

	if (c == NULL || needs == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	/* A disclosure: only with a consent valid now that shares with the accepting provider
	 * (asked in this transaction, audited by the consent service). */
	if (rs->rs_consent != NULL) {
		st = rs->rs_consent(rs->rs_consent_arg, w->w_txn, provider, REF_METHOD_GET,
		    r->subject, PURPOSE_SHARE, org, true, &allowed);
		if (st != HV_OK && st != HV_NOT_FOUND) {
			return (ref_fail(w, st, "the consent check for referral %s failed", r->id));
		}
	}
	if (!allowed) {
		return (ref_fail(w, HV_PERMISSION_DENIED,
		    "no consent shares referral %s with organisation %s now", r->id, org));
	}
	haven__referral__v1__referral__init(c);
	c->id           = r->id;
	c->subject      = r->subject;
	c->referrer_org = r->referrer_org;
	c->urgency      = r->urgency;
	c->exploitation = r->exploitation;
	c->home_region  = r->home_region;
	c->created_ms   = r->created_ms;
	c->version      = r->version;
	for (size_t i = 0; i < r->n_needs; i++) {
		if (ref_accepted_by(r->needs[i], org)) {
			needs[c->n_needs++] = r->needs[i];
		}
	}
	c->needs = needs;
	*out     = c;
	return (HV_OK);
}

typedef struct get_job {
	ref_work          gj_work;
	const rpc_caller *gj_caller;
	const char       *gj_method;
	const char       *gj_id;
	Referral         *gj_shown;
} get_job;

static hv_status
get_fn(store_txn *txn, void *arg)
{
	get_job  *j = arg;
	Referral *r;
	hv_status st;

	ref_work_begin(&j->gj_work, txn);
	if ((st = ref_load_visible(&j->gj_work, j->gj_caller, j->gj_id, &r)) != HV_OK ||
	    (st = ref_audit_access(&j->gj_work, j->gj_caller, j->gj_method, r->subject, r->id)) !=
	        HV_OK) {
		return (st);
	}
	return (j->gj_caller->role == RPC_ROLE_PROVIDER
	        ? provider_view(&j->gj_work, j->gj_caller, r, &j->gj_shown)
	        : ref_shown(&j->gj_work, r, &j->gj_shown));
}

static hv_status
h_get(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	ref_service                                   *rs  = svc;
	const Haven__Referral__V1__GetReferralRequest *req = (const void *) msg;
	get_job                                        j   = { .gj_id = req->id };
	hv_status                                      st;

	ref_work_init_in(&j.gj_work, rs, rpc_call_arena(call));
	j.gj_caller = rpc_call_caller(call);
	j.gj_method = rpc_call_method(call);
	if (j.gj_caller->role == RPC_ROLE_PROVIDER) {
		/* The provider's read checks consent, and the consent service audits that check in
		 * this transaction: a write. */
		st = store_write(rs->rs_store, get_fn, &j);
	} else {
		st = ref_read(rs, get_fn, &j); /* audited: a write when reads are */
	}
	if (st != HV_OK) {
		st = ref_rpc_error(call, &j.gj_work, st);
		goto out;
	}
	*reply = &j.gj_shown->base;
out:
	ref_work_free(&j.gj_work);
	return (st);
}

/* ---- Statistics ------------------------------------------------------------------------------ */

/*
 * The query as its audit entry names it: "statistics <period> <regions>", the regions by name
 * (comma-separated; "all" for none named) when they fit, else as the mask of their indices in
 * the map ("regions 0x..."), so that the entry always says exactly what was asked. The names
 * are the map's (ref_statistics checked them); a byte outside printable ASCII becomes '?'.
 */
static void
stats_purpose(const ref_service *rs, const Haven__Referral__V1__StatisticsRequest *req,
    const char *period, char out[AUDIT_PURPOSE_MAX])
{
	uint64_t mask = 0;
	bool     fits = true;
	size_t   at;
	int      n = snprintf(out, AUDIT_PURPOSE_MAX, "statistics %s ", period);

	at = n > 0 && n < AUDIT_PURPOSE_MAX ? (size_t) n : 0;
	if (req->n_regions == 0) {
		snprintf(out + at, AUDIT_PURPOSE_MAX - at, "all");
	}
	for (size_t i = 0; i < req->n_regions; i++) {
		int r = region_map_find(rs->rs_regions, req->regions[i]);

		mask |= r >= 0 && r < 64 ? (uint64_t) 1 << r : 0;
		if (fits) {
			n    = snprintf(out + at, AUDIT_PURPOSE_MAX - at, "%s%s", i > 0 ? "," : "",
			       req->regions[i]);
			fits = n >= 0 && (size_t) n < AUDIT_PURPOSE_MAX - at;
			at += fits ? (size_t) n : 0;
		}
	}
	if (!fits) {
		snprintf(out, AUDIT_PURPOSE_MAX, "statistics %s regions 0x%" PRIx64, period, mask);
	}
	for (char *p = out; *p != '\0'; p++) {
		if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e) {
			*p = '?';
		}
	}
}

/* A statistics query is audited like a read of the records it counts: who asked (role,
 * organisation, person), the method, and the query as the purpose; no subject (the answer
 * names no person). Written, in a transaction of its own, before the answer leaves: an
 * answer that cannot be audited is not given. Nothing without a log. */
static hv_status
stats_audit(ref_service *rs, rpc_call *call, const Haven__Referral__V1__StatisticsRequest *req,
    const char *period)
{
	audit_entry e;

	if (rs->rs_audit == NULL) {
		return (HV_OK);
	}
	audit_entry_fill(&e, rpc_call_caller(call), rpc_call_method(call), NULL, NULL,
	    ref_now_ms(rs));
	stats_purpose(rs, req, period, e.purpose);
	return (audit_record(rs->rs_audit, &e));
}

static hv_status
h_stats(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__Referral__V1__StatisticsRequest *req              = (const void *) msg;
	Haven__Referral__V1__StatisticsResponse      *resp             = NULL;
	char                                          err[REF_ERR_MAX] = "";
	hv_status                                     st;

	st = ref_statistics(svc, req, rpc_call_allocator(call), &resp, err, sizeof(err));
	if (st != HV_OK) {
		return (rpc_call_error(call, st, "%s", err[0] != '\0' ? err : hv_status_name(st)));
	}
	if ((st = stats_audit(svc, call, req, resp->period)) != HV_OK) {
		return (rpc_call_error(call, st, "cannot audit the statistics query: %s",
		    hv_status_name(st)));
	}
	*reply = &resp->base;
	return (HV_OK);
}

/* ---- registration ---------------------------------------------------------------------------- */

static const rpc_method_impl methods[] = {
	{ .name = "CreateReferral", .handler = ref_h_create, .roles = RPC_ROLE_REFERRER },
	{ .name = "GetReferral", .handler = h_get, .roles = ROLES_READ | RPC_ROLE_PROVIDER },
	{ .name = "ListReferrals", .handler = ref_h_list, .roles = ROLES_READ },
	{ .name = "CancelReferral", .handler = ref_h_cancel, .roles = ROLES_READ },
	{ .name      = "ReassignNeed",
	    .handler = ref_h_reassign,
	    .roles   = RPC_ROLES_COORDINATORS | RPC_ROLE_OPERATOR },
	{ .name = "UpdateReferral", .handler = ref_h_update, .roles = ROLES_READ },
	{ .name = "PauseNeed", .handler = ref_h_pause, .roles = ROLES_READ },
	{ .name = "ResumeNeed", .handler = ref_h_resume, .roles = ROLES_READ },
	{ .name      = "ListOffers",
	    .handler = ref_h_list_offers,
	    .roles   = RPC_ROLE_PROVIDER | RPC_ROLE_OPERATOR },
	{ .name = "AcknowledgeOffer", .handler = ref_h_ack, .roles = RPC_ROLE_PROVIDER },
	{ .name = "AcceptOffer", .handler = ref_h_accept, .roles = RPC_ROLE_PROVIDER },
	{ .name = "DeclineOffer", .handler = ref_h_decline, .roles = RPC_ROLE_PROVIDER },
	{ .name = "MarkPlaced", .handler = ref_h_placed, .roles = RPC_ROLE_PROVIDER },
	{ .name = "CompletePlacement", .handler = ref_h_complete, .roles = RPC_ROLE_PROVIDER },
	{ .name = "EndPlacement", .handler = ref_h_end, .roles = RPC_ROLE_PROVIDER | ROLES_READ },
	{ .name      = "Statistics",
	    .handler = h_stats,
	    .roles   = RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS |
	        RPC_ROLE_MUNICIPALITY },
};

hv_status
ref_register(ref_service *rs, rpc_server *srv)
{
	hv_status st;

	if (rs == NULL || srv == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = rpc_server_add_service(srv, &haven__referral__v1__referrals__descriptor, methods,
	         sizeof(methods) / sizeof(methods[0]), rs)) != HV_OK) {
		return (st);
	}
	/* Referrals, needs by state and unmet needs (ref_metrics.c). */
	return (metrics_add_collector(rpc_server_metrics(srv), ref_metrics_collect, rs));
}
