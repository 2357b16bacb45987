/*
 * check.c - the one question the node asks before anything personal is shared:
 * Check(subject, purpose, recipient, category), decided on the subject's view (view.c) and
 * audited, answered or refused alike. Decide-and-audit is written once (check_audited_txn) for
 * the referral service's check (consent_ref_check), other services' (consent_check_txn) and
 * the RPC in a transaction; the RPC with queued audit entries (check_async) decides in a read
 * transaction, from the cache when it can, and queues the same entry (check_entry).
 */
#include "consent_check.h"

#include "haven/ids.h"

#include <stdio.h>
#include <string.h>

/* ---- Check ---------------------------------------------------------------------------- */

hv_status
consent_decide(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    const char *subject_hex, int purpose, const char *recipient, bool accepting, int category,
    int64_t now, consent_decision *out)
{
	consent_view *v = NULL;
	hv_status     st;

	if ((st = view_load(cs, txn, sid, &v, NULL, 0)) != HV_OK) {
		return (st);
	}
	view_decide(v, subject_hex, purpose, recipient, accepting, category, now, out);
	view_free(v);
	return (HV_OK);
}

static bool
purpose_ok(int p)
{
	/* statistics is retired (docs/consent.md): nothing asks it. */
	return (p >= HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL &&
	    p <= HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT);
}

static bool
category_ok(int c)
{
	return (c >= HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY &&
	    c <= HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER);
}

/* One Check question, as asked. */
typedef struct check_args {
	const rpc_caller *ca_caller;
	const char       *ca_method; /* for the audit entry */
	const char       *ca_subject;
	int               ca_purpose;
	const char       *ca_recipient;
	bool              ca_accepting;
	int               ca_category;
	int64_t           ca_now;
	uint8_t           ca_sid[CONSENT_ID_LEN]; /* set by check_validate */
} check_args;

static hv_status
check_validate(check_args *a, char *err, size_t errsz)
{
	if (consent_id_parse(a->ca_subject, a->ca_sid) != 0) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if (!purpose_ok(a->ca_purpose)) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "purpose must be referral, share-with-provider or contact (statistics is "
		    "retired)"));
	}
	if (a->ca_category != 0 && !category_ok(a->ca_category)) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "category must be identity, contact, health, legal or other (or none: any)"));
	}
	if (a->ca_recipient == NULL ||
	    (a->ca_recipient[0] != '\0' && !ids_valid(a->ca_recipient))) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "recipient must be an organisation id (1..63 of [a-z0-9._-]), or none for the "
		    "node"));
	}
	return (HV_OK);
}

/* The caller's right to ask and the decision, on a subject's view. */
static hv_status
check_view(const check_args *a, const consent_view *v, consent_decision *out, char *err,
    size_t errsz)
{
	hv_status st;

	/* A provider asks about itself only (h_check, consent_rpc.c); everyone else by the holder's
	 * rule. The view's creator is the subject's holder. */
	if (a->ca_caller->role != RPC_ROLE_PROVIDER &&
	    (st = consent_may_act(a->ca_caller, v->cv_holder, a->ca_subject, true, err, errsz)) !=
	        HV_OK) {
		return (st);
	}
	view_decide(v, a->ca_subject, a->ca_purpose, a->ca_recipient, a->ca_accepting,
	    a->ca_category, a->ca_now, out);
	return (HV_OK);
}

/* Check with its messages, read from the store in txn: validation, the subject, the caller's
 * right to ask and the decision. The caller appends the audit entry. */
static hv_status
check_core(consent_service *cs, store_txn *txn, check_args *a, consent_decision *out, char *err,
    size_t errsz)
{
	consent_view *v = NULL;
	hv_status     st;

	memset(out, 0, sizeof(*out));
	if ((st = check_validate(a, err, errsz)) != HV_OK ||
	    (st = view_load(cs, txn, a->ca_sid, &v, err, errsz)) != HV_OK) {
		return (st);
	}
	st = check_view(a, v, out, err, errsz);
	view_free(v);
	return (st);
}

static void
args_fill(check_args *a, consent_service *cs, const rpc_caller *caller, const char *method,
    const char *subject, int purpose, const char *recipient, bool accepting, int category)
{
	memset(a, 0, sizeof(*a));
	a->ca_caller    = caller;
	a->ca_method    = method;
	a->ca_subject   = subject;
	a->ca_purpose   = purpose;
	a->ca_recipient = recipient;
	a->ca_accepting = accepting;
	a->ca_category  = category;
	a->ca_now       = consent_now(cs);
}

/* The audit entry of a check: the question, and the answer (OK: allowed, PERMISSION_DENIED:
 * refused) or the status it failed with. */
static void
check_entry(const check_args *a, hv_status st, const consent_decision *d, audit_entry *e)
{
	audit_entry_fill(e, a->ca_caller, a->ca_method, a->ca_subject,
	    consent_purpose_name(a->ca_purpose), a->ca_now);
	e->result = st != HV_OK ? (int32_t) st : d->allowed ? HV_OK : HV_PERMISSION_DENIED;
}

/* The one "decide and audit" in a write transaction, for every check but the queued one
 * (check_async): consent_ref_check, consent_check_txn and Check in a transaction. */
static hv_status
check_audited_txn(consent_service *cs, store_txn *txn, check_args *a, consent_decision *out,
    char *err, size_t errsz)
{
	audit_entry e;
	hv_status   st;

	if ((st = check_core(cs, txn, a, out, err, errsz)) != HV_OK) {
		return (st);
	}
	check_entry(a, HV_OK, out, &e);
	return (audit_append(cs->cs_audit, txn, &e));
}

hv_status
consent_ref_check(void *arg, store_txn *txn, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, const char *recipient_org, bool accepting_provider,
    bool *allowed)
{
	consent_decision d;
	check_args       a;
	int              p;
	hv_status        st;

	*allowed = false;
	if (consent_purpose_parse(purpose, &p) != 0) {
		return (HV_INVALID_ARGUMENT);
	}
	args_fill(&a, arg, caller, method, subject, p, recipient_org != NULL ? recipient_org : "",
	    accepting_provider, 0);
	if ((st = check_audited_txn(arg, txn, &a, &d, NULL, 0)) == HV_NOT_FOUND) {
		/* Unknown or erased: not allowed. A referrer asking for itself (CreateReferral)
		 * hears the refusal it hears for a subject another organisation holds, as from
		 * Check (check_shown): else the two answers would tell whether she exists. */
		return (caller->role == RPC_ROLE_REFERRER
		        ? consent_may_act(caller, CONSENT_NO_HOLDER, subject, true, NULL, 0)
		        : HV_OK);
	}
	*allowed = st == HV_OK && d.allowed;
	return (st);
}

hv_status
consent_check_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller, const char *method,
    const char *subject, Haven__Consent__V1__Purpose purpose, const char *recipient,
    bool recipient_is_accepting_provider, Haven__Consent__V1__Category category,
    consent_decision *out)
{
	check_args a;

	args_fill(&a, cs, caller, method, subject, (int) purpose, recipient,
	    recipient_is_accepting_provider, (int) category);
	return (check_audited_txn(cs, txn, &a, out, NULL, 0));
}

typedef struct check_job {
	consent_service  *kj_cs;
	check_args        kj_args;
	consent_decision *kj_decision;
	hv_status         kj_status;
	char             *kj_err;
	size_t            kj_errsz;
} check_job;

static hv_status
check_fn(store_txn *txn, void *arg)
{
	check_job *j = arg;

	return (
	    check_audited_txn(j->kj_cs, txn, &j->kj_args, j->kj_decision, j->kj_err, j->kj_errsz));
}

/* Decides on a cached view (view_cache_with's callback). */
static void
check_cached(const consent_view *v, void *arg)
{
	check_job *j = arg;

	j->kj_status = check_view(&j->kj_args, v, j->kj_decision, j->kj_err, j->kj_errsz);
}

/* Check with queued audit entries (the default; check_audit_async): decided in a read
 * transaction, on the subject's view from the cache when it is what this transaction would
 * read (view.c: the generations), else read from the store and put into the cache. The entry,
 * for an answer and for a refusal alike, is queued before the caller hears anything. A queue
 * that cannot take it fails the call: no answer without an audit entry. Nothing here waits
 * for a commit, so Check then runs inline on the RPC receiving thread, as Echo does. */
static hv_status
check_async(check_job *j)
{
	consent_service *cs  = j->kj_cs;
	store_txn       *txn = NULL;
	consent_view    *v   = NULL;
	audit_entry      e;
	uint64_t         gen;
	bool             hit;
	hv_status        st, qst;

	if ((st = check_validate(&j->kj_args, j->kj_err, j->kj_errsz)) != HV_OK) {
		return (st);
	}
	view_cache_prefetch_slot(cs->cs_cache, j->kj_args.ca_sid);
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	view_cache_prefetch_view(cs->cs_cache, j->kj_args.ca_sid);
	if ((st = consent_generation(cs, txn, &gen)) == HV_OK &&
	    (st = view_cache_with(cs, txn, j->kj_args.ca_sid, gen, check_cached, j, &hit)) ==
	        HV_OK) {
		if (hit) {
			st = j->kj_status;
		} else if ((st = view_load(cs, txn, j->kj_args.ca_sid, &v, j->kj_err,
		                j->kj_errsz)) == HV_OK) {
			check_cached(v, j);
			st = j->kj_status;
			view_cache_put(cs->cs_cache, v, gen); /* the cache's now */
		}
	}
	store_read_end(txn);
	check_entry(&j->kj_args, st, j->kj_decision, &e);
	/* Inline on the receiving thread: never wait. A full queue is back-pressure the caller
	 * may retry after; a writer that failed refuses every answer from then on. */
	if ((qst = audit_try_enqueue(cs->cs_audit, &e)) != HV_OK) {
		(void) hv_fail(j->kj_err, j->kj_errsz, qst, "%s",
		    qst == HV_RESOURCE_EXHAUSTED ? "the audit log is behind; try again"
		                                 : "the audit log cannot be written");
		return (qst == HV_RESOURCE_EXHAUSTED ? qst : HV_UNAVAILABLE);
	}
	return (st);
}

/* What Check answers a caller that may not learn which subjects exist, or anything of the
 * consents a subject gave to others. A provider asks about itself: a refusal for lack of a
 * consent that names it (none at all, none for the purpose, none for it), and the answer
 * about a subject that does not exist or was erased, are the one refusal "no consent covers
 * you", so that it cannot probe ids for people, erasures or who else she consented to. A
 * referrer is refused an unknown or erased subject as one another organisation holds. */
static hv_status
check_shown(const check_args *a, hv_status st, consent_decision *d, char *err, size_t errsz)
{
	const rpc_caller *c = a->ca_caller;
	bool              hide;

	if (c->role == RPC_ROLE_PROVIDER) {
		hide = st == HV_NOT_FOUND ||
		    (st == HV_OK && !d->allowed &&
		        (d->reason == HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_NO_CONSENT ||
		            d->reason == HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_PURPOSE ||
		            d->reason == HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_RECIPIENT));
		if (!hide) {
			return (st);
		}
		memset(d, 0, sizeof(*d));
		d->reason = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_RECIPIENT;
		snprintf(d->message, sizeof(d->message),
		    "no consent of subject %s for %s covers recipient %s", a->ca_subject,
		    consent_purpose_name(a->ca_purpose), a->ca_recipient);
		return (HV_OK);
	}
	if (st == HV_NOT_FOUND && c->role != RPC_ROLE_OPERATOR) {
		return (consent_may_act(c, CONSENT_NO_HOLDER, a->ca_subject, true, err, errsz));
	}
	return (st);
}

hv_status
consent_check_call(consent_service *cs, const rpc_caller *caller, const char *method,
    const Haven__Consent__V1__CheckRequest *in, consent_decision *out, char *err, size_t errsz)
{
	check_job j;
	hv_status st;

	memset(&j, 0, sizeof(j));
	memset(out, 0, sizeof(*out));
	j.kj_cs       = cs;
	j.kj_decision = out;
	j.kj_err      = err;
	j.kj_errsz    = errsz;
	args_fill(&j.kj_args, cs, caller, method, in->subject, (int) in->purpose, in->recipient,
	    in->recipient_is_accepting_provider, (int) in->category);
	if (cs->cs_check_async) {
		return (check_shown(&j.kj_args, check_async(&j), out, err, errsz));
	}
	if ((st = store_write(cs->cs_store, check_fn, &j)) != HV_OK && st != HV_INVALID_ARGUMENT) {
		consent_audit_failure(cs, caller, method, in->subject,
		    consent_purpose_name((int) in->purpose), st);
	}
	return (check_shown(&j.kj_args, st, out, err, errsz));
}
