/*
 * records.c - consent records: grant, withdraw (one, or all of a subject at its erasure), get
 * and list, each with its audit entry. The handlers (consent_rpc.c) run these operations and
 * turn the packed records into replies; Check is check.c's.
 *
 * A record is stored as a packed Consent signed by the node (receipt.c); it is never changed
 * but by a withdrawal (or the erasure of its subject, which withdraws it), which sets
 * withdrawn_at, raises the version and signs it again. Records are found by subject through
 * consent.by_subject.
 */
#include "consent_records.h"

#include "haven/bytes.h"
#include "haven/ids.h"
#include "haven/text.h"

#include "haven/log.h"

#include "alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECIPIENTS_MAX      32
#define VALIDITY_MAX_MS     (10LL * 366 * 24 * 3600 * 1000) /* ten years */
#define PURPOSES_JOINED_MAX 64
#define GUARDIAN_FIELD      7 /* PersonalData.guardian */

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
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if (!enum_list_ok((const int *) r->purposes, r->n_purposes, 4, tmp)) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "purposes: 1 to 3 of referral, share-with-provider, contact, each once"));
	}
	if (tmp[r->n_purposes - 1] == HAVEN__CONSENT__V1__PURPOSE__PURPOSE_STATISTICS) {
		/* Sorted: statistics is the last when given. */
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "purposes: statistics is retired: the node counts needs, never persons, and "
		    "asks "
		    "no consent for that (docs/consent.md)"));
	}
	for (size_t i = 0; i < r->n_purposes; i++) {
		t->gt_purposes[i] = (Haven__Consent__V1__Purpose) tmp[i];
	}
	if (!enum_list_ok((const int *) r->categories, r->n_categories, 5, tmp)) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "categories: 1 to 5 of identity, contact, health, legal, other, each once"));
	}
	for (size_t i = 0; i < r->n_categories; i++) {
		t->gt_categories[i] = (Haven__Consent__V1__Category) tmp[i];
	}
	if (r->n_recipients > RECIPIENTS_MAX) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT, "recipients: at most %d, not %zu",
		    RECIPIENTS_MAX, r->n_recipients));
	}
	if (r->n_recipients == 0 && !r->accepting_provider) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "recipients: name at least one organisation, or the accepting provider"));
	}
	for (size_t i = 0; i < r->n_recipients; i++) {
		if (!ids_valid(r->recipients[i])) {
			return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "recipients[%zu] must be an organisation id (1..63 of [a-z0-9._-])",
			    i));
		}
		if (cs->cs_org_role != NULL &&
		    cs->cs_org_role(cs->cs_org_arg, r->recipients[i]) == 0) {
			return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "recipients[%zu]: no enabled organisation %s in the partner directory",
			    i, r->recipients[i]));
		}
		t->gt_recipients[i] = r->recipients[i];
	}
	qsort(t->gt_recipients, r->n_recipients, sizeof(char *), cmp_str);
	for (size_t i = 1; i < r->n_recipients; i++) {
		if (strcmp(t->gt_recipients[i], t->gt_recipients[i - 1]) == 0) {
			return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "recipients: %s is named twice", t->gt_recipients[i]));
		}
	}
	if (r->given_by < HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT ||
	    r->given_by > HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_REPRESENTATIVE) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "given_by must be subject, guardian or representative"));
	}
	if (r->method < HAVEN__CONSENT__V1__METHOD__METHOD_WRITTEN ||
	    r->method > HAVEN__CONSENT__V1__METHOD__METHOD_ELECTRONIC) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "method must be written, verbal, verbal-with-interpreter or electronic"));
	}
	if (!text_lang_ok(r->language)) {
		return (
		    hv_fail(err, errsz, HV_INVALID_ARGUMENT, "language must be " TEXT_LANG_RULE));
	}
	if (r->valid_from_ms < 0) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "valid_from_ms must be a time (Unix ms) or 0 for now"));
	}
	t->gt_valid_from = r->valid_from_ms != 0 ? r->valid_from_ms : now;
	if (r->expires_ms <= t->gt_valid_from) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "expires_ms must be after valid_from_ms"));
	}
	if (r->expires_ms <= now) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT, "expires_ms is in the past"));
	}
	if (r->expires_ms - t->gt_valid_from > VALIDITY_MAX_MS) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
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

/* A minor's consent is given by a guardian or representative, whose name and how to reach
 * them the holder recorded first (PersonalData.guardian, sealed like the rest). */
static hv_status
minor_ok(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    const Haven__Consent__V1__GrantRequest *r, char *err, size_t errsz)
{
	bool      has;
	hv_status st;

	if (r->given_by == HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT) {
		return (hv_fail(err, errsz, HV_FAILED_PRECONDITION,
		    "subject %s is a minor: consent must be given by a guardian or representative",
		    r->subject));
	}
	if ((st = consent_personal_has(cs, txn, sid, GUARDIAN_FIELD, &has)) != HV_OK) {
		return (st);
	}
	if (!has) {
		return (hv_fail(err, errsz, HV_FAILED_PRECONDITION,
		    "subject %s is a minor: record the guardian or representative who gives "
		    "consent "
		    "first (UpdateSubject, field guardian)",
		    r->subject));
	}
	return (HV_OK);
}

static hv_status
grant_core(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const Haven__Consent__V1__GrantRequest *r, uint8_t **packed, size_t *plen, char *err,
    size_t errsz)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	Haven__Consent__V1__ConsentRecord  c   = HAVEN__CONSENT__V1__CONSENT_RECORD__INIT;
	grant_terms                        t;
	uint8_t                            sid[CONSENT_ID_LEN], cid[CONSENT_ID_LEN];
	uint8_t                            key[2 * CONSENT_ID_LEN];
	uint8_t                            sig[CRYPTO_ED25519_SIG_LEN];
	char                               cid_hex[CONSENT_ID_HEX];
	char                               purposes[PURPOSES_JOINED_MAX];
	int64_t                            now      = consent_now(cs);
	size_t                             existing = 0;
	audit_entry                        e;
	hv_status                          st;

	*packed = NULL;
	if ((st = grant_validate(cs, r, now, &t, err, errsz)) != HV_OK) {
		return (st);
	}
	(void) consent_id_parse(r->subject, sid);
	/* Only the holder records consent: a consent the person withdrew comes back only as a
	 * new record by the holder, never by the operator or another organisation. */
	if ((st = consent_subject_acting(cs, txn, caller, sid, false, false, &rec, err, errsz)) !=
	    HV_OK) {
		return (st);
	}
	if (rec->minor && (st = minor_ok(cs, txn, sid, r, err, errsz)) != HV_OK) {
		goto out;
	}
	if ((st = consent_records_foreach(cs, txn, sid, count_one, &existing)) != HV_OK) {
		goto out;
	}
	if (existing >= CONSENTS_PER_SUBJECT_MAX) {
		st = hv_fail(err, errsz, HV_RESOURCE_EXHAUSTED,
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
	    (st = consent_expiry_index_put(cs, txn, cid, c.expires_ms)) != HV_OK ||
	    (st = consent_changed(cs, txn, sid)) != HV_OK) {
		st = st == HV_ALREADY_EXISTS ? HV_INTERNAL : st;
		goto out;
	}
	purposes_joined(&c, purposes);
	audit_entry_fill(&e, caller, M_CONSENT "Grant", r->subject, purposes, now);
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

void
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

/* ---- Withdraw ------------------------------------------------------------------------- */

/* Withdraws c at now: signs the changed record again and stores it. */
static hv_status
withdraw_record(consent_service *cs, store_txn *txn, const uint8_t cid[CONSENT_ID_LEN],
    const Haven__Consent__V1__ConsentRecord *c, int64_t now, uint8_t **packed, size_t *plen)
{
	Haven__Consent__V1__ConsentRecord w = *c; /* shallow: c keeps its own strings */
	uint8_t                           sig[CRYPTO_ED25519_SIG_LEN];
	uint8_t                           sid[CONSENT_ID_LEN];
	uint8_t                          *buf;
	size_t                            len;
	hv_status                         st;

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

/* The refusal of a consent the caller may not read, and of one that does not exist: the same
 * words, naming neither the subject (whose id another holder's consent would give away) nor
 * whether the consent exists. */
static hv_status
record_refused(record_job *j)
{
	const rpc_caller *c = j->rj_caller;

	return (hv_fail(j->rj_err, sizeof(j->rj_err), HV_PERMISSION_DENIED,
	    "consent %s is not of a subject that %s holds", j->rj_id,
	    c->org_id[0] != '\0' ? c->org_id : rpc_role_name(c->role)));
}

/* Reads a consent and its subject for a caller who asks about it: NOT_FOUND for an unknown
 * consent to the operator, PERMISSION_DENIED (record_refused) to everyone else and for a
 * consent of a subject the caller does not hold. */
static hv_status
record_for(record_job *j, store_txn *txn, uint8_t cid[CONSENT_ID_LEN],
    Haven__Consent__V1__ConsentRecord **c)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	uint8_t                            sid[CONSENT_ID_LEN];
	hv_status                          st;

	*c = NULL;
	if (consent_id_parse(j->rj_id, cid) != 0) {
		return (hv_fail(j->rj_err, sizeof(j->rj_err), HV_INVALID_ARGUMENT,
		    "consent id must be 32 lower-case hex characters"));
	}
	if ((st = consent_record_get(j->rj_cs, txn, cid, c)) != HV_OK) {
		if (st == HV_NOT_FOUND && j->rj_caller->role != RPC_ROLE_OPERATOR) {
			return (record_refused(j));
		}
		return (hv_fail(j->rj_err, sizeof(j->rj_err), st,
		    st == HV_NOT_FOUND ? "no consent %s" : "consent %s does not read", j->rj_id));
	}
	snprintf(j->rj_subject, sizeof(j->rj_subject), "%s", (*c)->subject);
	if (consent_id_parse((*c)->subject, sid) != 0) {
		st = hv_fail(j->rj_err, sizeof(j->rj_err), HV_DATA_LOSS,
		    "consent %s names no valid subject", j->rj_id);
		goto out;
	}
	if ((st = consent_subject_get(j->rj_cs, txn, sid, true, &rec, j->rj_err,
	         sizeof(j->rj_err))) != HV_OK) {
		goto out;
	}
	if (consent_may_act(j->rj_caller, consent_holder(rec), (*c)->subject, true, j->rj_err,
	        sizeof(j->rj_err)) != HV_OK) {
		st = record_refused(j);
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

hv_status
consent_expiry_index_put(consent_service *cs, store_txn *txn, const uint8_t cid[CONSENT_ID_LEN],
    int64_t expires)
{
	uint8_t key[CONSENT_EXPIRY_KEY_LEN];

	hv_put_be64(key, (uint64_t) (expires > 0 ? expires : 0));
	memcpy(key + 8, cid, CONSENT_ID_LEN);
	return (store_put(txn, cs->cs_expiries, key, sizeof(key), "", 0));
}

/* The alert of a withdrawal: what happened, to each organisation the consent named (its
 * CONSENT_EXPIRED when the consent expired: expiry.c). */
hv_status
consent_withdrawn_alert(consent_service *cs, store_txn *txn,
    const Haven__Consent__V1__ConsentRecord *c, bool expired)
{
	alerts_event ev = { .ae_kind =
		                expired ? ALERT(CONSENT_EXPIRED) : ALERT(CONSENT_WITHDRAWN) };
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

/* The audit entry of an access to consent c: the subject, the consent's purposes. */
static hv_status
record_audit(record_job *j, store_txn *txn, const Haven__Consent__V1__ConsentRecord *c, int64_t now)
{
	char        purposes[PURPOSES_JOINED_MAX];
	audit_entry e;

	purposes_joined(c, purposes);
	audit_entry_fill(&e, j->rj_caller, j->rj_method, c->subject, purposes, now);
	return (audit_append(j->rj_cs->cs_audit, txn, &e));
}

static hv_status
withdraw_fn(store_txn *txn, void *arg)
{
	record_job                        *j = arg;
	Haven__Consent__V1__ConsentRecord *c = NULL;
	uint8_t                            cid[CONSENT_ID_LEN];
	hv_status                          st;

	record_job_reset(j);
	if ((st = record_for(j, txn, cid, &c)) != HV_OK) {
		return (st);
	}
	if (c->withdrawn_at_ms != 0) {
		st = hv_fail(j->rj_err, sizeof(j->rj_err), HV_FAILED_PRECONDITION,
		    "consent %s was withdrawn already", j->rj_id);
		goto out;
	}
	if ((st = withdraw_record(j->rj_cs, txn, cid, c, j->rj_now, &j->rj_packed, &j->rj_len)) ==
	    HV_OK) {
		st = record_audit(j, txn, c, j->rj_now);
	}
	/* Alerts: the organisations the consent named, in this transaction (no ids of the
	 * subject or the consent in the alert). */
	if (st == HV_OK) {
		st = consent_withdrawn_alert(j->rj_cs, txn, c, false);
	}
out:
	protobuf_c_message_free_unpacked(&c->base, NULL);
	return (st);
}

typedef struct withdraw_all_job {
	consent_service *wa_cs;
	store_txn       *wa_txn;
	int64_t          wa_now;
	char (*wa_ids)[CONSENT_ID_HEX];
	size_t *wa_n;
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
	return (consent_records_foreach(cs, txn, sid, withdraw_one, &j));
}

/* ---- Get, GetReceipt, List ------------------------------------------------------------ */

static hv_status
get_fn(store_txn *txn, void *arg)
{
	record_job                        *j = arg;
	Haven__Consent__V1__ConsentRecord *c = NULL;
	uint8_t                            cid[CONSENT_ID_LEN];
	hv_status                          st;

	record_job_reset(j);
	if ((st = record_for(j, txn, cid, &c)) != HV_OK) {
		return (st);
	}
	st = (j->rj_packed = record_pack(c, &j->rj_len)) == NULL
	    ? HV_RESOURCE_EXHAUSTED
	    : record_audit(j, txn, c, consent_now(j->rj_cs));
	protobuf_c_message_free_unpacked(&c->base, NULL);
	return (st);
}

void
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
		return (hv_fail(j->lj_err, sizeof(j->lj_err), HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if ((st = consent_subject_acting(j->lj_cs, txn, j->lj_caller, sid, true, true, &rec,
	         j->lj_err, sizeof(j->lj_err))) != HV_OK) {
		return (st);
	}
	if ((st = consent_records_foreach(j->lj_cs, txn, sid, list_one, j)) != HV_OK) {
		goto out;
	}
	audit_entry_fill(&e, j->lj_caller, j->lj_method, j->lj_subject, "", consent_now(j->lj_cs));
	st = audit_append(j->lj_cs->cs_audit, txn, &e);
out:
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

/* ---- the operations of the handlers ------------------------------------------------- */

/* Runs fn in a write transaction of its own; a failure is audited (consent_failed). */
static hv_status
record_run(record_job *j, hv_status (*fn)(store_txn *, void *))
{
	hv_status st;

	if ((st = store_write(j->rj_cs->cs_store, fn, j)) != HV_OK) {
		return (consent_failed(j->rj_cs, j->rj_caller, j->rj_method,
		    j->rj_grant != NULL ? j->rj_grant->subject : j->rj_subject, "", st));
	}
	return (HV_OK);
}

hv_status
records_grant(record_job *j)
{
	return (record_run(j, grant_fn));
}

hv_status
records_withdraw(record_job *j)
{
	hv_status st;

	j->rj_now = consent_now(j->rj_cs);
	if ((st = record_run(j, withdraw_fn)) == HV_OK) {
		/* In force no more from the commit on; tell the referral service at once. */
		consent_publish_withdrawn(j->rj_cs, j->rj_id, j->rj_subject, j->rj_now, false,
		    false);
	}
	return (st);
}

hv_status
records_get(record_job *j)
{
	return (record_run(j, get_fn));
}

hv_status
records_list(list_job *j)
{
	hv_status st;

	if ((st = store_write(j->lj_cs->cs_store, list_fn, j)) != HV_OK) {
		return (
		    consent_failed(j->lj_cs, j->lj_caller, j->lj_method, j->lj_subject, "", st));
	}
	return (HV_OK);
}
