/*
 * records.c - consent records: grant, withdraw, get, list, receipts, and the one question
 * the node asks before anything personal is shared: Check(subject, purpose, recipient,
 * category).
 *
 * A record is stored as a packed Consent signed by the node (receipt.c); it is never changed
 * but by a withdrawal (or the erasure of its subject, which withdraws it), which sets
 * withdrawn_at, raises the version and signs it again. Records are found by subject through
 * consent.by_subject; Check reads them and decrypts nothing, so it costs a few B-tree lookups
 * and the audit entry it appends.
 */
#include "consent_internal.h"

#include "haven/log.h"

#include "alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECIPIENTS_MAX 32
#define VALIDITY_MAX_MS (10LL * 366 * 24 * 3600 * 1000) /* ten years */
#define PURPOSES_JOINED_MAX 64

/* ---- reading records ------------------------------------------------------------------ */

hv_status
consent_record_get(consent_service *cs, store_txn *txn, const uint8_t cid[CONSENT_ID_LEN],
    Haven__Consent__V1__ConsentRecord **out)
{
	return (store_get_msg(txn, cs->cs_records, cid, CONSENT_ID_LEN,
	    &haven__consent__v1__consent_record__descriptor, NULL, (ProtobufCMessage **) out));
}

hv_status
consent_record_ids(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    uint8_t (*ids)[CONSENT_ID_LEN], size_t *n)
{
	store_cursor *cur = NULL;
	const void   *k;
	size_t        kl;
	hv_status     st, rc;

	*n = 0;
	if ((st = store_cursor_open(txn, cs->cs_by_subject, &cur)) != HV_OK) {
		return (st);
	}
	for (rc = store_cursor_seek(cur, sid, CONSENT_ID_LEN, &k, &kl, NULL, NULL); rc == HV_OK;
	     rc = store_cursor_next(cur, &k, &kl, NULL, NULL)) {
		if (kl != 2 * CONSENT_ID_LEN || memcmp(k, sid, CONSENT_ID_LEN) != 0) {
			break;
		}
		if (*n == CONSENTS_PER_SUBJECT_MAX) {
			rc = HV_DATA_LOSS; /* more than Grant ever stores */
			break;
		}
		memcpy(ids[(*n)++], (const uint8_t *) k + CONSENT_ID_LEN, CONSENT_ID_LEN);
	}
	store_cursor_close(cur);
	return (rc == HV_NOT_FOUND ? HV_OK : rc);
}

/* Calls fn for each consent of a subject, in id order, until it returns non-zero (then that
 * value is returned as the status). The record is valid during the call only. */
typedef hv_status (*record_fn)(void *arg, const uint8_t cid[CONSENT_ID_LEN],
    Haven__Consent__V1__ConsentRecord *c);

static hv_status
records_foreach(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    record_fn fn, void *arg)
{
	uint8_t   ids[CONSENTS_PER_SUBJECT_MAX][CONSENT_ID_LEN];
	size_t    n = 0;
	hv_status st;

	/* Ids first, records after: fn may write (a withdrawal) while no cursor is open. */
	if ((st = consent_record_ids(cs, txn, sid, ids, &n)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < n; i++) {
		Haven__Consent__V1__ConsentRecord *c = NULL;
		if ((st = consent_record_get(cs, txn, ids[i], &c)) != HV_OK) {
			return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st); /* the index names it */
		}
		st = fn(arg, ids[i], c);
		protobuf_c_message_free_unpacked(&c->base, NULL);
		if (st != HV_OK) {
			return (st);
		}
	}
	return (HV_OK);
}

static void
purposes_joined(const Haven__Consent__V1__ConsentRecord *c, char out[PURPOSES_JOINED_MAX])
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < c->n_purposes && o < PURPOSES_JOINED_MAX; i++) {
		o += (size_t) snprintf(out + o, PURPOSES_JOINED_MAX - o, "%s%s", i > 0 ? "," : "",
		    consent_purpose_name((int) c->purposes[i]));
	}
}

/* Packs a record into a malloc'd buffer; NULL when out of memory. */
static uint8_t *
record_pack(const Haven__Consent__V1__ConsentRecord *c, size_t *len)
{
	uint8_t *buf;

	*len = haven__consent__v1__consent_record__get_packed_size(c);
	if ((buf = malloc(*len > 0 ? *len : 1)) != NULL) {
		haven__consent__v1__consent_record__pack(c, buf);
	}
	return (buf);
}

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
	return (p >= HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL &&
	    p <= HAVEN__CONSENT__V1__PURPOSE__PURPOSE_STATISTICS);
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
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if (!purpose_ok(a->ca_purpose)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "purpose must be referral, share-with-provider, contact or statistics"));
	}
	if (a->ca_category != 0 && !category_ok(a->ca_category)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "category must be identity, contact, health, legal or other (or none: any)"));
	}
	if (a->ca_recipient == NULL || (a->ca_recipient[0] != '\0' && !ids_valid(a->ca_recipient))) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
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

	/* A provider asks about itself only (consent_h_check); everyone else by the holder's
	 * rule. The view's creator is the subject's holder. */
	if (a->ca_caller->role != RPC_ROLE_PROVIDER &&
	    (st = consent_may_act(a->ca_caller, v->cv_holder, a->ca_subject, true, err,
	         errsz)) != HV_OK) {
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
args_fill(check_args *a, consent_service *cs, const rpc_caller *caller, const char *subject,
    int purpose, const char *recipient, bool accepting, int category)
{
	memset(a, 0, sizeof(*a));
	a->ca_caller    = caller;
	a->ca_subject   = subject;
	a->ca_purpose   = purpose;
	a->ca_recipient = recipient;
	a->ca_accepting = accepting;
	a->ca_category  = category;
	a->ca_now       = consent_now(cs);
}

hv_status
consent_ref_check(void *arg, store_txn *txn, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, const char *recipient_org,
    bool accepting_provider, bool *allowed)
{
	consent_decision d;
	check_args       a;
	audit_entry      e;
	int              p;
	hv_status        st;

	*allowed = false;
	if (consent_purpose_parse(purpose, &p) != 0) {
		return (HV_INVALID_ARGUMENT);
	}
	args_fill(&a, arg, caller, subject, p, recipient_org != NULL ? recipient_org : "",
	    accepting_provider, 0);
	st = check_core(arg, txn, &a, &d, NULL, 0);
	if (st == HV_OK) {
		consent_audit_fill(&e, caller, method, subject, consent_purpose_name(p), a.ca_now);
		e.result = d.allowed ? HV_OK : HV_PERMISSION_DENIED;
		st       = audit_append(((consent_service *) arg)->cs_audit, txn, &e);
	}
	if (st == HV_NOT_FOUND) {
		return (HV_OK); /* unknown or erased: not allowed */
	}
	*allowed = st == HV_OK && d.allowed;
	return (st);
}

hv_status
consent_check_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const char *method, const char *subject, Haven__Consent__V1__Purpose purpose,
    const char *recipient, bool recipient_is_accepting_provider,
    Haven__Consent__V1__Category category, consent_decision *out)
{
	check_args  a;
	audit_entry e;
	hv_status   st;

	args_fill(&a, cs, caller, subject, (int) purpose, recipient,
	    recipient_is_accepting_provider, (int) category);
	if ((st = check_core(cs, txn, &a, out, NULL, 0)) != HV_OK) {
		return (st);
	}
	consent_audit_fill(&e, caller, method, subject, consent_purpose_name((int) purpose),
	    a.ca_now);
	e.result = out->allowed ? HV_OK : HV_PERMISSION_DENIED;
	return (audit_append(cs->cs_audit, txn, &e));
}

typedef struct check_job {
	consent_service                        *kj_cs;
	const rpc_caller                       *kj_caller;
	const char                             *kj_method;
	const Haven__Consent__V1__CheckRequest *kj_req;
	check_args                              kj_args;
	consent_decision                        kj_decision;
	hv_status                               kj_status;
	char                                    kj_err[CONSENT_MSG_MAX];
} check_job;

static hv_status
check_fn(store_txn *txn, void *arg)
{
	check_job  *j = arg;
	audit_entry e;
	hv_status   st;

	if ((st = check_core(j->kj_cs, txn, &j->kj_args, &j->kj_decision, j->kj_err,
	         sizeof(j->kj_err))) != HV_OK) {
		return (st);
	}
	consent_audit_fill(&e, j->kj_caller, j->kj_method, j->kj_req->subject,
	    consent_purpose_name((int) j->kj_req->purpose), j->kj_args.ca_now);
	e.result = j->kj_decision.allowed ? HV_OK : HV_PERMISSION_DENIED;
	return (audit_append(j->kj_cs->cs_audit, txn, &e));
}

/* Decides on a cached view (view_cache_with's callback). */
static void
check_cached(const consent_view *v, void *arg)
{
	check_job *j = arg;

	j->kj_status = check_view(&j->kj_args, v, &j->kj_decision, j->kj_err, sizeof(j->kj_err));
}

/* Check with queued audit entries (the default; check_audit_async): decided in a read
 * transaction, on the subject's view from the cache when it is what this transaction would
 * read (view.c: the generations), else read from the store and put into the cache. The entry, for
 * an answer and for a refusal alike, is queued before the caller hears anything. A queue that
 * cannot take it fails the call: no answer without an audit entry. Nothing here waits for a
 * commit, so Check then runs inline on the RPC receiving thread, as Echo does. */
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

	if ((st = check_validate(&j->kj_args, j->kj_err, sizeof(j->kj_err))) != HV_OK) {
		return (st);
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	if ((st = consent_generation(cs, txn, &gen)) == HV_OK &&
	    (st = view_cache_with(cs, txn, j->kj_args.ca_sid, gen, check_cached, j, &hit)) ==
	        HV_OK) {
		if (hit) {
			st = j->kj_status;
		} else if ((st = view_load(cs, txn, j->kj_args.ca_sid, &v, j->kj_err,
		                sizeof(j->kj_err))) == HV_OK) {
			check_cached(v, j);
			st = j->kj_status;
			view_cache_put(cs->cs_cache, v, gen); /* the cache's now */
		}
	}
	store_read_end(txn);
	consent_audit_fill(&e, j->kj_caller, j->kj_method, j->kj_req->subject,
	    consent_purpose_name((int) j->kj_req->purpose), j->kj_args.ca_now);
	e.result = st != HV_OK ? st : j->kj_decision.allowed ? HV_OK : HV_PERMISSION_DENIED;
	/* Inline on the receiving thread: never wait. A full queue is back-pressure the caller
	 * may retry after; a writer that failed refuses every answer from then on. */
	if ((qst = audit_try_enqueue(cs->cs_audit, &e)) != HV_OK) {
		snprintf(j->kj_err, sizeof(j->kj_err), "%s",
		    qst == HV_RESOURCE_EXHAUSTED ? "the audit log is behind; try again"
		                                 : "the audit log cannot be written");
		return (qst == HV_RESOURCE_EXHAUSTED ? qst : HV_UNAVAILABLE);
	}
	return (st);
}

HANDLER(consent_h_check)
{
	consent_service                        *cs = svc;
	const Haven__Consent__V1__CheckRequest *in = (const void *) req;
	const rpc_caller                       *caller = rpc_call_caller(call);
	Haven__Consent__V1__CheckResponse      *out;
	check_job                               j;
	hv_status                               st;

	if (caller->role == RPC_ROLE_PROVIDER) {
		/* A provider asks only about itself, and cannot vouch that it accepted. */
		if (strcmp(in->recipient, caller->org_id) != 0) {
			return (rpc_call_error(call, HV_PERMISSION_DENIED,
			    "a provider may check consent only for itself as the recipient"));
		}
		if (in->recipient_is_accepting_provider) {
			return (rpc_call_error(call, HV_PERMISSION_DENIED,
			    "only the referral service may ask for the accepting provider"));
		}
	}
	memset(&j, 0, sizeof(j));
	j.kj_cs     = cs;
	j.kj_caller = caller;
	j.kj_method = rpc_call_method(call);
	j.kj_req    = in;
	args_fill(&j.kj_args, cs, caller, in->subject, (int) in->purpose, in->recipient,
	    in->recipient_is_accepting_provider, (int) in->category);
	if (cs->cs_check_async) {
		st = check_async(&j);
	} else if ((st = store_write(cs->cs_store, check_fn, &j)) != HV_OK &&
	           st != HV_INVALID_ARGUMENT) {
		consent_audit_failure(cs, caller, j.kj_method, in->subject,
		    consent_purpose_name((int) in->purpose), st);
	}
	if (st != HV_OK) {
		return (rpc_call_error(call, st, "%s", j.kj_err[0] ? j.kj_err : hv_status_name(st)));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__consent__v1__check_response__init(out);
	out->allowed    = j.kj_decision.allowed;
	out->reason     = j.kj_decision.reason;
	/* A provider asks about itself: a refusal names no consent (the closest one may be
	 * another recipient's, which is not the provider's to know). */
	out->consent_id = rpc_call_strdup(call, caller->role == RPC_ROLE_PROVIDER && !out->allowed
	                                            ? ""
	                                            : j.kj_decision.consent_id);
	out->message    = rpc_call_strdup(call, j.kj_decision.message);
	if (out->consent_id == NULL || out->message == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*reply = &out->base;
	return (HV_OK);
}

/* ---- Grant ---------------------------------------------------------------------------- */

static int
cmp_int(const void *a, const void *b)
{
	int x = *(const int *) a, y = *(const int *) b;

	return ((x > y) - (x < y));
}

static int
cmp_str(const void *a, const void *b)
{
	return (strcmp(*(char *const *) a, *(char *const *) b));
}

/* A list of enum values: 1..max entries, each known, none twice; copied sorted into out. */
static bool
enum_list_ok(const int *v, size_t n, int max, int *out)
{
	if (n == 0 || n > (size_t) max) {
		return (false);
	}
	memcpy(out, v, n * sizeof(int));
	qsort(out, n, sizeof(int), cmp_int);
	for (size_t i = 0; i < n; i++) {
		if (out[i] < 1 || out[i] > max || (i > 0 && out[i] == out[i - 1])) {
			return (false);
		}
	}
	return (true);
}

/* Normalised terms of a grant. */
typedef struct grant_terms {
	Haven__Consent__V1__Purpose  gt_purposes[4];
	Haven__Consent__V1__Category gt_categories[5];
	char                        *gt_recipients[RECIPIENTS_MAX];
	int64_t                      gt_valid_from;
} grant_terms;

static hv_status
grant_validate(consent_service *cs, const Haven__Consent__V1__GrantRequest *r, int64_t now,
    grant_terms *t, char *err, size_t errsz)
{
	uint8_t sid[CONSENT_ID_LEN];
	int     tmp[8];

	if (consent_id_parse(r->subject, sid) != 0) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if (!enum_list_ok((const int *) r->purposes, r->n_purposes, 4, tmp)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "purposes: 1 to 4 of referral, share-with-provider, contact, statistics, each "
		    "once"));
	}
	for (size_t i = 0; i < r->n_purposes; i++) {
		t->gt_purposes[i] = (Haven__Consent__V1__Purpose) tmp[i];
	}
	if (!enum_list_ok((const int *) r->categories, r->n_categories, 5, tmp)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "categories: 1 to 5 of identity, contact, health, legal, other, each once"));
	}
	for (size_t i = 0; i < r->n_categories; i++) {
		t->gt_categories[i] = (Haven__Consent__V1__Category) tmp[i];
	}
	if (r->n_recipients > RECIPIENTS_MAX) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "recipients: at most %d, not %zu", RECIPIENTS_MAX, r->n_recipients));
	}
	if (r->n_recipients == 0 && !r->accepting_provider) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "recipients: name at least one organisation, or the accepting provider"));
	}
	for (size_t i = 0; i < r->n_recipients; i++) {
		if (!ids_valid(r->recipients[i])) {
			return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "recipients[%zu] must be an organisation id (1..63 of [a-z0-9._-])", i));
		}
		if (cs->cs_org_role != NULL && cs->cs_org_role(cs->cs_org_arg, r->recipients[i]) == 0) {
			return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "recipients[%zu]: no enabled organisation %s in the partner directory", i,
			    r->recipients[i]));
		}
		t->gt_recipients[i] = r->recipients[i];
	}
	qsort(t->gt_recipients, r->n_recipients, sizeof(char *), cmp_str);
	for (size_t i = 1; i < r->n_recipients; i++) {
		if (strcmp(t->gt_recipients[i], t->gt_recipients[i - 1]) == 0) {
			return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "recipients: %s is named twice", t->gt_recipients[i]));
		}
	}
	if (r->given_by < HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT ||
	    r->given_by > HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_REPRESENTATIVE) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "given_by must be subject, guardian or representative"));
	}
	if (r->method < HAVEN__CONSENT__V1__METHOD__METHOD_WRITTEN ||
	    r->method > HAVEN__CONSENT__V1__METHOD__METHOD_ELECTRONIC) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "method must be written, verbal, verbal-with-interpreter or electronic"));
	}
	if (!consent_language_ok(r->language)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "language must be a BCP 47 tag (\"nl\", \"pt-BR\") of at most 35 characters"));
	}
	if (r->valid_from_ms < 0) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "valid_from_ms must be a time (Unix ms) or 0 for now"));
	}
	t->gt_valid_from = r->valid_from_ms != 0 ? r->valid_from_ms : now;
	if (r->expires_ms <= t->gt_valid_from) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "expires_ms must be after valid_from_ms"));
	}
	if (r->expires_ms <= now) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT, "expires_ms is in the past"));
	}
	if (r->expires_ms - t->gt_valid_from > VALIDITY_MAX_MS) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "a consent is valid for at most ten years"));
	}
	return (HV_OK);
}

static hv_status
count_one(void *arg, const uint8_t cid[CONSENT_ID_LEN], Haven__Consent__V1__ConsentRecord *c)
{
	(void) cid;
	(void) c;
	(*(size_t *) arg)++;
	return (HV_OK);
}

static hv_status
grant_core(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const Haven__Consent__V1__GrantRequest *r, uint8_t **packed, size_t *plen, char *err,
    size_t errsz)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	Haven__Consent__V1__ConsentRecord        c   = HAVEN__CONSENT__V1__CONSENT_RECORD__INIT;
	grant_terms                        t;
	uint8_t                            sid[CONSENT_ID_LEN], cid[CONSENT_ID_LEN];
	uint8_t                            key[2 * CONSENT_ID_LEN];
	uint8_t                            sig[CRYPTO_ED25519_SIG_LEN];
	char                               cid_hex[CONSENT_ID_HEX];
	char                               purposes[PURPOSES_JOINED_MAX];
	int64_t                            now = consent_now(cs);
	size_t                             existing = 0;
	audit_entry                        e;
	hv_status                          st;

	*packed = NULL;
	if ((st = grant_validate(cs, r, now, &t, err, errsz)) != HV_OK) {
		return (st);
	}
	(void) consent_id_parse(r->subject, sid);
	if ((st = consent_subject_get(cs, txn, sid, false, &rec, err, errsz)) != HV_OK) {
		return (st);
	}
	/* Only the holder records consent: a consent the person withdrew comes back only as a
	 * new record by the holder, never by the operator or another organisation. */
	if ((st = consent_may_act(caller, consent_holder(rec), r->subject, false, err, errsz)) !=
	    HV_OK) {
		goto out;
	}
	if (rec->minor && r->given_by == HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT) {
		st = consent_fail(err, errsz, HV_FAILED_PRECONDITION,
		    "subject %s is a minor: consent must be given by a guardian or representative",
		    r->subject);
		goto out;
	}
	if ((st = records_foreach(cs, txn, sid, count_one, &existing)) != HV_OK) {
		goto out;
	}
	if (existing >= CONSENTS_PER_SUBJECT_MAX) {
		st = consent_fail(err, errsz, HV_RESOURCE_EXHAUSTED,
		    "subject %s has %d consents, the most there may be", r->subject,
		    CONSENTS_PER_SUBJECT_MAX);
		goto out;
	}
	if ((st = crypto_random(cid, sizeof(cid))) != HV_OK) {
		goto out;
	}
	consent_id_format(cid, cid_hex);
	c.id                 = cid_hex;
	c.subject            = r->subject;
	c.n_purposes         = r->n_purposes;
	c.purposes           = t.gt_purposes;
	c.n_recipients       = r->n_recipients;
	c.recipients         = t.gt_recipients;
	c.accepting_provider = r->accepting_provider;
	c.n_categories       = r->n_categories;
	c.categories         = t.gt_categories;
	c.given_by           = r->given_by;
	c.method             = r->method;
	c.language           = r->language;
	c.valid_from_ms      = t.gt_valid_from;
	c.expires_ms         = r->expires_ms;
	c.recorded_by        = (char *) caller->org_id;
	c.recorded_at_ms     = now;
	c.version            = 1;
	if ((st = receipt_sign(cs, &c, sig)) != HV_OK) {
		goto out;
	}
	if ((*packed = record_pack(&c, plen)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	memcpy(key, sid, CONSENT_ID_LEN);
	memcpy(key + CONSENT_ID_LEN, cid, CONSENT_ID_LEN);
	if ((st = store_put_new(txn, cs->cs_records, cid, sizeof(cid), *packed, *plen)) != HV_OK ||
	    (st = store_put(txn, cs->cs_by_subject, key, sizeof(key), "", 0)) != HV_OK ||
	    (st = consent_changed(cs, txn, sid)) != HV_OK) {
		st = st == HV_ALREADY_EXISTS ? HV_INTERNAL : st;
		goto out;
	}
	purposes_joined(&c, purposes);
	consent_audit_fill(&e, caller, M_CONSENT "Grant", r->subject, purposes, now);
	st = audit_append(cs->cs_audit, txn, &e);
out:
	if (st != HV_OK) {
		free(*packed);
		*packed = NULL;
	}
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

hv_status
consent_grant_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const Haven__Consent__V1__GrantRequest *req, Haven__Consent__V1__ConsentRecord **out,
    char *errmsg, size_t errsz)
{
	uint8_t  *packed = NULL;
	size_t    len    = 0;
	hv_status st;

	if (out != NULL) {
		*out = NULL;
	}
	if ((st = grant_core(cs, txn, caller, req, &packed, &len, errmsg, errsz)) != HV_OK) {
		return (st);
	}
	if (out != NULL &&
	    (*out = haven__consent__v1__consent_record__unpack(NULL, len, packed)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
	}
	free(packed);
	return (st);
}

/* A job whose result is one packed record, for Grant, Withdraw, Get and GetReceipt. */
typedef struct record_job {
	consent_service                        *rj_cs;
	const rpc_caller                       *rj_caller;
	const char                             *rj_method;
	const char                             *rj_id;
	const Haven__Consent__V1__GrantRequest *rj_grant;
	int64_t                                 rj_now;
	uint8_t                                *rj_packed;
	size_t                                  rj_len;
	char                                    rj_subject[CONSENT_ID_HEX];
	char                                    rj_err[CONSENT_MSG_MAX];
} record_job;

static void
record_job_reset(record_job *j)
{
	free(j->rj_packed);
	j->rj_packed     = NULL;
	j->rj_len        = 0;
	j->rj_subject[0] = '\0';
	j->rj_err[0]     = '\0';
}

static hv_status
grant_fn(store_txn *txn, void *arg)
{
	record_job *j = arg;

	record_job_reset(j);
	return (grant_core(j->rj_cs, txn, j->rj_caller, j->rj_grant, &j->rj_packed, &j->rj_len,
	    j->rj_err, sizeof(j->rj_err)));
}

/* Unpacks the job's record into the call's arena as the reply. */
static hv_status
record_reply(rpc_call *call, record_job *j, ProtobufCMessage **reply)
{
	ProtobufCMessage *m = protobuf_c_message_unpack(&haven__consent__v1__consent_record__descriptor,
	    rpc_call_allocator(call), j->rj_len, j->rj_packed);

	if (m == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*reply = m;
	return (HV_OK);
}

HANDLER(consent_h_grant)
{
	consent_service *cs = svc;
	record_job       j;
	hv_status        st;

	memset(&j, 0, sizeof(j));
	j.rj_cs     = cs;
	j.rj_caller = rpc_call_caller(call);
	j.rj_method = rpc_call_method(call);
	j.rj_grant  = (const void *) req;
	if ((st = store_write(cs->cs_store, grant_fn, &j)) != HV_OK) {
		if (st != HV_INVALID_ARGUMENT) {
			consent_audit_failure(cs, j.rj_caller, j.rj_method, j.rj_grant->subject, "", st);
		}
		st = rpc_call_error(call, st, "%s", j.rj_err[0] ? j.rj_err : hv_status_name(st));
		goto out;
	}
	st = record_reply(call, &j, reply);
out:
	record_job_reset(&j);
	return (st);
}

/* ---- Withdraw ------------------------------------------------------------------------- */

/* Withdraws c at now: signs the changed record again and stores it. */
static hv_status
withdraw_record(consent_service *cs, store_txn *txn, const uint8_t cid[CONSENT_ID_LEN],
    const Haven__Consent__V1__ConsentRecord *c, int64_t now, uint8_t **packed, size_t *plen)
{
	Haven__Consent__V1__ConsentRecord w = *c; /* shallow: c keeps its own strings */
	uint8_t                     sig[CRYPTO_ED25519_SIG_LEN];
	uint8_t                     sid[CONSENT_ID_LEN];
	uint8_t                    *buf;
	size_t                      len;
	hv_status                   st;

	if (consent_id_parse(c->subject, sid) != 0) {
		return (HV_DATA_LOSS); /* Grant stores only valid ids */
	}
	w.withdrawn_at_ms = now;
	w.version         = c->version + 1;
	if ((st = receipt_sign(cs, &w, sig)) != HV_OK) {
		return (st);
	}
	if ((buf = record_pack(&w, &len)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if ((st = store_put(txn, cs->cs_records, cid, CONSENT_ID_LEN, buf, len)) != HV_OK ||
	    (st = consent_changed(cs, txn, sid)) != HV_OK || packed == NULL) {
		free(buf);
		return (st);
	}
	*packed = buf;
	*plen   = len;
	return (HV_OK);
}

/* Reads a consent and its subject for a caller who asks about it: NOT_FOUND for an unknown
 * consent, PERMISSION_DENIED for a referrer that did not refer the subject. */
static hv_status
record_for(record_job *j, store_txn *txn, uint8_t cid[CONSENT_ID_LEN],
    Haven__Consent__V1__ConsentRecord **c)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	uint8_t                            sid[CONSENT_ID_LEN];
	hv_status                          st;

	*c = NULL;
	if (consent_id_parse(j->rj_id, cid) != 0) {
		return (consent_fail(j->rj_err, sizeof(j->rj_err), HV_INVALID_ARGUMENT,
		    "consent id must be 32 lower-case hex characters"));
	}
	if ((st = consent_record_get(j->rj_cs, txn, cid, c)) != HV_OK) {
		return (consent_fail(j->rj_err, sizeof(j->rj_err), st,
		    st == HV_NOT_FOUND ? "no consent %s" : "consent %s does not read", j->rj_id));
	}
	snprintf(j->rj_subject, sizeof(j->rj_subject), "%s", (*c)->subject);
	if (consent_id_parse((*c)->subject, sid) != 0) {
		st = consent_fail(j->rj_err, sizeof(j->rj_err), HV_DATA_LOSS,
		    "consent %s names no valid subject", j->rj_id);
		goto out;
	}
	if ((st = consent_subject_get(j->rj_cs, txn, sid, true, &rec, j->rj_err,
	         sizeof(j->rj_err))) != HV_OK) {
		goto out;
	}
	if ((st = consent_may_act(j->rj_caller, consent_holder(rec), (*c)->subject, true, j->rj_err,
	         sizeof(j->rj_err))) != HV_OK) {
		goto out;
	}
	st = HV_OK;
out:
	if (rec != NULL) {
		protobuf_c_message_free_unpacked(&rec->base, NULL);
	}
	if (st != HV_OK) {
		protobuf_c_message_free_unpacked(&(*c)->base, NULL);
		*c = NULL;
	}
	return (st);
}

/* The alert of a withdrawal: what happened, to each organisation the consent named. */
static hv_status
withdrawn_alert(consent_service *cs, store_txn *txn, const Haven__Consent__V1__ConsentRecord *c)
{
	alerts_event ev = { .ae_kind = ALERT(CONSENT_WITHDRAWN) };
	hv_status    st;

	for (size_t i = 0; i < c->n_recipients; i++) {
		ev.ae_orgs[ev.ae_norgs++] = c->recipients[i];
		if (ev.ae_norgs == ALERTS_RECIPIENTS || i + 1 == c->n_recipients) {
			if ((st = alerts_enqueue(cs->cs_alerts, txn, &ev)) != HV_OK) {
				return (st);
			}
			ev.ae_norgs = 0;
		}
	}
	return (HV_OK);
}

static hv_status
withdraw_fn(store_txn *txn, void *arg)
{
	record_job                  *j = arg;
	Haven__Consent__V1__ConsentRecord *c = NULL;
	uint8_t                      cid[CONSENT_ID_LEN];
	char                         purposes[PURPOSES_JOINED_MAX];
	audit_entry                  e;
	hv_status                    st;

	record_job_reset(j);
	if ((st = record_for(j, txn, cid, &c)) != HV_OK) {
		return (st);
	}
	if (c->withdrawn_at_ms != 0) {
		st = consent_fail(j->rj_err, sizeof(j->rj_err), HV_FAILED_PRECONDITION,
		    "consent %s was withdrawn already", j->rj_id);
		goto out;
	}
	if ((st = withdraw_record(j->rj_cs, txn, cid, c, j->rj_now, &j->rj_packed, &j->rj_len)) !=
	    HV_OK) {
		goto out;
	}
	/* Alerts: the organisations the consent named, in this transaction (no ids of the
	 * subject or the consent in the alert). */
	if ((st = withdrawn_alert(j->rj_cs, txn, c)) != HV_OK) {
		goto out;
	}
	purposes_joined(c, purposes);
	consent_audit_fill(&e, j->rj_caller, j->rj_method, c->subject, purposes, j->rj_now);
	st = audit_append(j->rj_cs->cs_audit, txn, &e);
out:
	protobuf_c_message_free_unpacked(&c->base, NULL);
	return (st);
}

HANDLER(consent_h_withdraw)
{
	consent_service                           *cs = svc;
	const Haven__Consent__V1__WithdrawRequest *in = (const void *) req;
	record_job                                 j;
	hv_status                                  st;

	memset(&j, 0, sizeof(j));
	j.rj_cs     = cs;
	j.rj_caller = rpc_call_caller(call);
	j.rj_method = rpc_call_method(call);
	j.rj_id     = in->id;
	j.rj_now    = consent_now(cs);
	if ((st = store_write(cs->cs_store, withdraw_fn, &j)) != HV_OK) {
		if (st != HV_INVALID_ARGUMENT) {
			consent_audit_failure(cs, j.rj_caller, j.rj_method, j.rj_subject, "", st);
		}
		st = rpc_call_error(call, st, "%s", j.rj_err[0] ? j.rj_err : hv_status_name(st));
		goto out;
	}
	/* In force no more from the commit on; tell the referral service at once. */
	consent_publish_withdrawn(cs, in->id, j.rj_subject, j.rj_now, false);
	st = record_reply(call, &j, reply);
out:
	record_job_reset(&j);
	return (st);
}

typedef struct withdraw_all_job {
	consent_service *wa_cs;
	store_txn       *wa_txn;
	int64_t          wa_now;
	char (*wa_ids)[CONSENT_ID_HEX];
	size_t          *wa_n;
} withdraw_all_job;

static hv_status
withdraw_one(void *arg, const uint8_t cid[CONSENT_ID_LEN], Haven__Consent__V1__ConsentRecord *c)
{
	withdraw_all_job *j = arg;
	hv_status         st;

	if (c->withdrawn_at_ms != 0) {
		return (HV_OK);
	}
	if ((st = withdraw_record(j->wa_cs, j->wa_txn, cid, c, j->wa_now, NULL, NULL)) != HV_OK) {
		return (st);
	}
	consent_id_format(cid, j->wa_ids[(*j->wa_n)++]);
	return (HV_OK);
}

hv_status
consent_withdraw_all_txn(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    int64_t now, char (*ids)[CONSENT_ID_HEX], size_t *n)
{
	withdraw_all_job j = { cs, txn, now, ids, n };

	*n = 0;
	return (records_foreach(cs, txn, sid, withdraw_one, &j));
}

/* ---- Get, GetReceipt, List ------------------------------------------------------------ */

static hv_status
get_fn(store_txn *txn, void *arg)
{
	record_job                  *j = arg;
	Haven__Consent__V1__ConsentRecord *c = NULL;
	uint8_t                      cid[CONSENT_ID_LEN];
	char                         purposes[PURPOSES_JOINED_MAX];
	audit_entry                  e;
	hv_status                    st;

	record_job_reset(j);
	if ((st = record_for(j, txn, cid, &c)) != HV_OK) {
		return (st);
	}
	if ((j->rj_packed = record_pack(c, &j->rj_len)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	purposes_joined(c, purposes);
	consent_audit_fill(&e, j->rj_caller, j->rj_method, c->subject, purposes, consent_now(j->rj_cs));
	st = audit_append(j->rj_cs->cs_audit, txn, &e);
out:
	protobuf_c_message_free_unpacked(&c->base, NULL);
	return (st);
}

/* Get and GetReceipt: the record, read with an audit entry. */
static hv_status
get_record(rpc_call *call, consent_service *cs, const char *id, record_job *j)
{
	hv_status st;

	memset(j, 0, sizeof(*j));
	j->rj_cs     = cs;
	j->rj_caller = rpc_call_caller(call);
	j->rj_method = rpc_call_method(call);
	j->rj_id     = id;
	if ((st = store_write(cs->cs_store, get_fn, j)) != HV_OK) {
		if (st != HV_INVALID_ARGUMENT) {
			consent_audit_failure(cs, j->rj_caller, j->rj_method, j->rj_subject, "", st);
		}
		return (rpc_call_error(call, st, "%s", j->rj_err[0] ? j->rj_err : hv_status_name(st)));
	}
	return (HV_OK);
}

HANDLER(consent_h_get)
{
	const Haven__Consent__V1__GetConsentRequest *in = (const void *) req;
	record_job                                   j;
	hv_status                                    st;

	if ((st = get_record(call, svc, in->id, &j)) == HV_OK) {
		st = record_reply(call, &j, reply);
	}
	record_job_reset(&j);
	return (st);
}

HANDLER(consent_h_get_receipt)
{
	const Haven__Consent__V1__GetReceiptRequest *in = (const void *) req;
	Haven__Consent__V1__ConsentRecord                 *c  = NULL;
	Haven__Consent__V1__Receipt                 *out;
	json_t                                      *r = NULL;
	char                                        *text = NULL;
	record_job                                   j;
	hv_status                                    st;

	if ((st = get_record(call, svc, in->id, &j)) != HV_OK) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((c = haven__consent__v1__consent_record__unpack(NULL, j.rj_len, j.rj_packed)) == NULL ||
	    (r = receipt_json(c, true)) == NULL ||
	    (text = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII)) == NULL ||
	    (out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		goto out;
	}
	haven__consent__v1__receipt__init(out);
	if ((out->json = rpc_call_strdup(call, text)) == NULL) {
		goto out;
	}
	*reply = &out->base;
	st     = HV_OK;
out:
	free(text);
	json_decref(r);
	if (c != NULL) {
		haven__consent__v1__consent_record__free_unpacked(c, NULL);
	}
	record_job_reset(&j);
	return (st);
}

typedef struct list_job {
	consent_service  *lj_cs;
	const rpc_caller *lj_caller;
	const char       *lj_method;
	const char       *lj_subject;
	uint8_t          *lj_packed[CONSENTS_PER_SUBJECT_MAX];
	size_t            lj_len[CONSENTS_PER_SUBJECT_MAX];
	size_t            lj_n;
	char              lj_err[CONSENT_MSG_MAX];
} list_job;

static void
list_job_reset(list_job *j)
{
	for (size_t i = 0; i < j->lj_n; i++) {
		free(j->lj_packed[i]);
	}
	j->lj_n      = 0;
	j->lj_err[0] = '\0';
}

static hv_status
list_one(void *arg, const uint8_t cid[CONSENT_ID_LEN], Haven__Consent__V1__ConsentRecord *c)
{
	list_job *j = arg;

	(void) cid;
	if ((j->lj_packed[j->lj_n] = record_pack(c, &j->lj_len[j->lj_n])) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	j->lj_n++;
	return (HV_OK);
}

static hv_status
list_fn(store_txn *txn, void *arg)
{
	list_job                          *j   = arg;
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	uint8_t                            sid[CONSENT_ID_LEN];
	audit_entry                        e;
	hv_status                          st;

	list_job_reset(j);
	if (consent_id_parse(j->lj_subject, sid) != 0) {
		return (consent_fail(j->lj_err, sizeof(j->lj_err), HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if ((st = consent_subject_get(j->lj_cs, txn, sid, true, &rec, j->lj_err,
	         sizeof(j->lj_err))) != HV_OK) {
		return (st);
	}
	if ((st = consent_may_act(j->lj_caller, consent_holder(rec), j->lj_subject, true, j->lj_err,
	         sizeof(j->lj_err))) != HV_OK) {
		goto out;
	}
	if ((st = records_foreach(j->lj_cs, txn, sid, list_one, j)) != HV_OK) {
		goto out;
	}
	consent_audit_fill(&e, j->lj_caller, j->lj_method, j->lj_subject, "",
	    consent_now(j->lj_cs));
	st = audit_append(j->lj_cs->cs_audit, txn, &e);
out:
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

HANDLER(consent_h_list)
{
	consent_service                               *cs = svc;
	const Haven__Consent__V1__ListConsentsRequest *in = (const void *) req;
	Haven__Consent__V1__ListConsentsResponse      *out;
	list_job                                      *j;
	hv_status                                      st = HV_RESOURCE_EXHAUSTED;

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (st);
	}
	j->lj_cs      = cs;
	j->lj_caller  = rpc_call_caller(call);
	j->lj_method  = rpc_call_method(call);
	j->lj_subject = in->subject;
	if ((st = store_write(cs->cs_store, list_fn, j)) != HV_OK) {
		if (st != HV_INVALID_ARGUMENT) {
			consent_audit_failure(cs, j->lj_caller, j->lj_method, in->subject, "", st);
		}
		st = rpc_call_error(call, st, "%s", j->lj_err[0] ? j->lj_err : hv_status_name(st));
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL ||
	    (out->consents = rpc_call_alloc(call, (j->lj_n + 1) * sizeof(*out->consents))) == NULL) {
		goto out;
	}
	{
		Haven__Consent__V1__ConsentRecord **cons = out->consents;
		haven__consent__v1__list_consents_response__init(out);
		out->consents = cons;
	}
	for (size_t i = 0; i < j->lj_n; i++) {
		ProtobufCMessage *m = protobuf_c_message_unpack(
		    &haven__consent__v1__consent_record__descriptor, rpc_call_allocator(call), j->lj_len[i],
		    j->lj_packed[i]);
		if (m == NULL) {
			goto out;
		}
		out->consents[out->n_consents++] = (Haven__Consent__V1__ConsentRecord *) m;
	}
	*reply = &out->base;
	st     = HV_OK;
out:
	list_job_reset(j);
	free(j);
	return (st);
}
