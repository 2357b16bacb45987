/*
 * consent_rpc.c - the handlers of haven.consent.v1.Consent and the registration of it and of
 * haven.audit.v1.Audit (audit_rpc.c). A handler checks the request's form, runs the
 * operation of the file below that does it (subjects.c, records.c, check.c, vault.c) and
 * builds the reply in the call's arena; who may act on a subject is decided there (the
 * holder's rule, consent_may_act), which roles may call at all here (docs/authority.md).
 */
#include "consent_rpc.h"

#include "consent_check.h"
#include "consent_records.h"
#include "consent_subjects.h"
#include "consent_view.h"

#include "haven/ids.h"
#include "haven/log.h"
#include "haven/metrics.h"

#include "haven/consent/v1/audit.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A failed call's reply: its message, or the status's name when it has none. */
static hv_status
fail(rpc_call *call, hv_status st, const char *err)
{
	return (rpc_call_error(call, st, "%s",
	    err != NULL && err[0] != '\0' ? err : hv_status_name(st)));
}

/* ---- subjects (subjects.c) ------------------------------------------------------------ */

typedef struct create_job {
	consent_service                        *cj_cs;
	const rpc_caller                       *cj_caller;
	const Haven__Consent__V1__PersonalData *cj_personal;
	bool                                    cj_minor;
	char                                    cj_id[CONSENT_ID_HEX];
} create_job;

static hv_status
create_fn(store_txn *txn, void *arg)
{
	create_job *j = arg;

	return (consent_create_subject_txn(j->cj_cs, txn, j->cj_caller, j->cj_personal, j->cj_minor,
	    j->cj_id));
}

static hv_status
h_create_subject(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	consent_service                                *cs = svc;
	const Haven__Consent__V1__CreateSubjectRequest *in = (const void *) req;
	Haven__Consent__V1__CreateSubjectResponse      *out;
	create_job                                      j = { 0 };
	char                                            err[CONSENT_MSG_MAX];
	hv_status                                       st;

	if (in->personal != NULL &&
	    (st = personal_validate(in->personal, err, sizeof(err))) != HV_OK) {
		return (rpc_call_error(call, st, "%s", err));
	}
	j.cj_cs       = cs;
	j.cj_caller   = rpc_call_caller(call);
	j.cj_personal = in->personal;
	j.cj_minor    = in->minor;
	if ((st = store_write(cs->cs_store, create_fn, &j)) != HV_OK) {
		return (rpc_call_error(call, st, "the subject could not be stored"));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__consent__v1__create_subject_response__init(out);
	out->id = rpc_call_strdup(call, j.cj_id);
	*reply  = &out->base;
	return (HV_OK);
}

typedef struct show_job {
	consent_service                   *sj_cs;
	const rpc_caller                  *sj_caller;
	const char                        *sj_method;
	const char                        *sj_id;
	plain                              sj_plain;
	Haven__Consent__V1__SubjectRecord *sj_rec;
	char                               sj_err[CONSENT_MSG_MAX];
} show_job;

static hv_status
show_fn(store_txn *txn, void *arg)
{
	show_job *j         = arg;
	bool      accepting = false;
	hv_status st;

	if (j->sj_rec != NULL) { /* a run before this one, rolled back */
		protobuf_c_message_free_unpacked(&j->sj_rec->base, NULL);
		j->sj_rec = NULL;
	}
	if (j->sj_caller->role == RPC_ROLE_PROVIDER && j->sj_cs->cs_accepting != NULL &&
	    (st = j->sj_cs->cs_accepting(j->sj_cs->cs_accepting_arg, txn, j->sj_id,
	         j->sj_caller->org_id, &accepting)) != HV_OK) {
		return (st);
	}
	return (subject_read_personal(j->sj_cs, txn, j->sj_caller, j->sj_method, j->sj_id,
	    accepting, &j->sj_plain, &j->sj_rec, j->sj_err, sizeof(j->sj_err)));
}

/* A copy of s in the call's arena, or the empty string for NULL. */
static char *
arena_str(rpc_call *call, const char *s)
{
	return (rpc_call_strdup(call, s != NULL ? s : ""));
}

/* A subject's reply without its personal data, in the call's arena; NULL out of memory. */
static Haven__Consent__V1__Subject *
subject_of(rpc_call *call, const char *id, const Haven__Consent__V1__SubjectRecord *rec)
{
	Haven__Consent__V1__Subject *out = rpc_call_alloc(call, sizeof(*out));

	if (out == NULL) {
		return (NULL);
	}
	haven__consent__v1__subject__init(out);
	out->id            = arena_str(call, id);
	out->minor         = rec->minor;
	out->created_by    = arena_str(call, rec->created_by);
	out->holder        = arena_str(call, consent_holder(rec));
	out->created_at_ms = rec->created_at_ms;
	return (out->id == NULL || out->created_by == NULL || out->holder == NULL ? NULL : out);
}

static hv_status
h_get_subject(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	consent_service                             *cs = svc;
	const Haven__Consent__V1__GetSubjectRequest *in = (const void *) req;
	Haven__Consent__V1__Subject                 *out;
	Haven__Consent__V1__PersonalData            *p;
	show_job                                     j;
	hv_status                                    st;

	memset(&j, 0, sizeof(j));
	j.sj_cs     = cs;
	j.sj_caller = rpc_call_caller(call);
	j.sj_method = rpc_call_method(call);
	j.sj_id     = in->id;
	if ((st = store_write(cs->cs_store, show_fn, &j)) != HV_OK) {
		return (fail(call,
		    consent_failed(cs, j.sj_caller, j.sj_method, in->id,
		        j.sj_caller->role == RPC_ROLE_PROVIDER ? "share-with-provider" : "", st),
		    j.sj_err));
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((out = subject_of(call, in->id, j.sj_rec)) == NULL ||
	    (p = rpc_call_alloc(call, sizeof(*p))) == NULL) {
		goto out;
	}
	haven__consent__v1__personal_data__init(p);
	out->personal    = p;
	p->name          = arena_str(call, j.sj_plain.pl_field[1]);
	p->date_of_birth = arena_str(call, j.sj_plain.pl_field[2]);
	p->nationality   = arena_str(call, j.sj_plain.pl_field[3]);
	p->contact       = arena_str(call, j.sj_plain.pl_field[5]);
	p->notes         = arena_str(call, j.sj_plain.pl_field[6]);
	p->guardian      = arena_str(call, j.sj_plain.pl_field[7]);
	if (p->name == NULL || p->date_of_birth == NULL || p->nationality == NULL ||
	    p->contact == NULL || p->notes == NULL || p->guardian == NULL ||
	    langs_split(j.sj_plain.pl_field[4], &p->languages, &p->n_languages, personal_call_dup,
	        personal_call_alloc, call) != 0 ||
	    (out->shown = rpc_call_alloc(call, 3 * sizeof(*out->shown))) == NULL) {
		goto out;
	}
	for (int c = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY;
	     c <= HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER; c++) {
		if ((j.sj_plain.pl_shown & (1u << c)) != 0) {
			out->shown[out->n_shown++] = (Haven__Consent__V1__Category) c;
		}
	}
	*reply = &out->base;
	st     = HV_OK;
out:
	plain_free(&j.sj_plain);
	if (j.sj_rec != NULL) {
		protobuf_c_message_free_unpacked(&j.sj_rec->base, NULL);
	}
	return (st);
}

static hv_status
h_erase_subject(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Consent__V1__EraseSubjectRequest *in = (const void *) req;
	Haven__Consent__V1__EraseSubjectResponse      *out;
	subject_erased                                 e;
	char                                           err[CONSENT_MSG_MAX] = "";
	hv_status                                      st;

	if ((st = subject_erase(svc, rpc_call_caller(call), rpc_call_method(call), in->id, true, &e,
	         err, sizeof(err))) != HV_OK) {
		return (fail(call, st, err));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__consent__v1__erase_subject_response__init(out);
	out->erased_at_ms       = e.se_at_ms;
	out->consents_withdrawn = (uint32_t) e.se_withdrawn;
	out->kek_generation     = e.se_kek_generation;
	*reply                  = &out->base;
	return (HV_OK);
}

/* ---- update ----------------------------------------------------------------------------- */

/* UpdateSubject's update_mask as bits (subject_change.sc_fields). The message names the
 * position of a bad entry, never the entry (a caller may type anything there). */
static hv_status
update_fields(rpc_call *call, const Haven__Consent__V1__UpdateSubjectRequest *in, uint32_t *fields)
{
	*fields = 0;
	if (in->n_update_mask == 0 || in->n_update_mask > SUBJECT_FIELD_MINOR) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "update_mask: 1 to %d of name, date_of_birth, nationality, languages, contact, "
		    "notes, guardian, minor",
		    SUBJECT_FIELD_MINOR));
	}
	for (size_t i = 0; i < in->n_update_mask; i++) {
		const char *n = in->update_mask[i];
		int f = strcmp(n, "minor") == 0 ? SUBJECT_FIELD_MINOR : personal_field_by_name(n);
		if (f == 0) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "update_mask[%zu] is not a field of a subject (name, date_of_birth, "
			    "nationality, languages, contact, notes, guardian, minor)",
			    i));
		}
		if ((*fields & (1u << f)) != 0) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "update_mask[%zu] names a field named before", i));
		}
		*fields |= 1u << f;
	}
	return (HV_OK);
}

typedef struct update_job {
	consent_service                   *uj_cs;
	const rpc_caller                  *uj_caller;
	const char                        *uj_method;
	subject_change                     uj_change;
	Haven__Consent__V1__SubjectRecord *uj_rec;
	char                               uj_err[CONSENT_MSG_MAX];
} update_job;

static hv_status
update_fn(store_txn *txn, void *arg)
{
	update_job *j = arg;

	if (j->uj_rec != NULL) { /* a run before this one, rolled back */
		protobuf_c_message_free_unpacked(&j->uj_rec->base, NULL);
		j->uj_rec = NULL;
	}
	return (subject_update_txn(j->uj_cs, txn, j->uj_caller, j->uj_method, &j->uj_change,
	    &j->uj_rec, j->uj_err, sizeof(j->uj_err)));
}

static hv_status
h_update_subject(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Consent__V1__UpdateSubjectRequest *in = (const void *) req;
	Haven__Consent__V1__PersonalData empty = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__Subject     *out;
	update_job                       j;
	uint8_t                          sid[CONSENT_ID_LEN];
	hv_status                        st;

	memset(&j, 0, sizeof(j));
	if (consent_id_parse(in->id, sid) != 0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if ((st = update_fields(call, in, &j.uj_change.sc_fields)) != HV_OK) {
		return (st);
	}
	j.uj_change.sc_personal = in->personal != NULL ? in->personal : &empty;
	if ((st = personal_validate(j.uj_change.sc_personal, j.uj_err, sizeof(j.uj_err))) !=
	    HV_OK) {
		return (fail(call, st, j.uj_err));
	}
	j.uj_cs              = svc;
	j.uj_caller          = rpc_call_caller(call);
	j.uj_method          = rpc_call_method(call);
	j.uj_change.sc_id    = in->id;
	j.uj_change.sc_minor = in->minor;
	if ((st = store_write(j.uj_cs->cs_store, update_fn, &j)) != HV_OK) {
		return (fail(call,
		    consent_failed(j.uj_cs, j.uj_caller, j.uj_method, in->id, "", st), j.uj_err));
	}
	log_info("consent: subject %s updated by %s %s", in->id, rpc_role_name(j.uj_caller->role),
	    j.uj_caller->org_id[0] != '\0' ? j.uj_caller->org_id : "(local)");
	out = subject_of(call, in->id, j.uj_rec);
	protobuf_c_message_free_unpacked(&j.uj_rec->base, NULL);
	if (out == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*reply = &out->base;
	return (HV_OK);
}

/* ---- hand-over ------------------------------------------------------------------------- */

typedef struct transfer_job {
	consent_service  *tj_cs;
	const rpc_caller *tj_caller;
	const char       *tj_method;
	const char       *tj_id;
	const char       *tj_to;
	bool              tj_minor;
	char              tj_created_by[RPC_ORG_ID_MAX];
	int64_t           tj_created_at;
	char              tj_err[CONSENT_MSG_MAX];
} transfer_job;

static hv_status
transfer_fn(store_txn *txn, void *arg)
{
	transfer_job                      *j   = arg;
	consent_service                   *cs  = j->tj_cs;
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	char                              *old_holder;
	uint8_t                            sid[CONSENT_ID_LEN];
	char                               purpose[AUDIT_PURPOSE_MAX];
	audit_entry                        e;
	hv_status                          st;

	(void) consent_id_parse(j->tj_id, sid);
	if ((st = consent_subject_acting(cs, txn, j->tj_caller, sid, true, false, &rec, j->tj_err,
	         sizeof(j->tj_err))) != HV_OK) {
		return (st);
	}
	old_holder = rec->holder;
	if (strcmp(consent_holder(rec), j->tj_to) == 0) {
		st = hv_fail(j->tj_err, sizeof(j->tj_err), HV_FAILED_PRECONDITION,
		    "organisation %s holds subject %s already", j->tj_to, j->tj_id);
		goto out;
	}
	rec->holder = (char *) j->tj_to;
	snprintf(purpose, sizeof(purpose), "hand-over to %s", j->tj_to);
	audit_entry_fill(&e, j->tj_caller, j->tj_method, j->tj_id, purpose, consent_now(cs));
	/* The view carries the holder: consent_changed stores it again and ends cached ones. */
	if ((st = store_put_msg(txn, cs->cs_subjects, sid, sizeof(sid), &rec->base)) != HV_OK ||
	    (st = consent_changed(cs, txn, sid)) != HV_OK ||
	    (st = audit_append(cs->cs_audit, txn, &e)) != HV_OK) {
		goto out;
	}
	j->tj_minor      = rec->minor;
	j->tj_created_at = rec->created_at_ms;
	snprintf(j->tj_created_by, sizeof(j->tj_created_by), "%s", rec->created_by);
out:
	rec->holder = old_holder; /* j->tj_to is not the record's to free */
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

static hv_status
h_transfer_subject(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	consent_service                                  *cs = svc;
	const Haven__Consent__V1__TransferSubjectRequest *in = (const void *) req;
	Haven__Consent__V1__Subject                      *out;
	transfer_job                                      j;
	uint8_t                                           sid[CONSENT_ID_LEN];
	hv_status                                         st;

	if (consent_id_parse(in->id, sid) != 0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if (!ids_valid(in->to_org)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "to_org must be an organisation id (1..63 of [a-z0-9._-])"));
	}
	if (cs->cs_org_role == NULL ||
	    cs->cs_org_role(cs->cs_org_arg, in->to_org) != RPC_ROLE_REFERRER) {
		return (rpc_call_error(call, HV_FAILED_PRECONDITION,
		    "to_org: %s is not an enabled referrer organisation of the directory",
		    in->to_org));
	}
	memset(&j, 0, sizeof(j));
	j.tj_cs     = cs;
	j.tj_caller = rpc_call_caller(call);
	j.tj_method = rpc_call_method(call);
	j.tj_id     = in->id;
	j.tj_to     = in->to_org;
	if ((st = store_write(cs->cs_store, transfer_fn, &j)) != HV_OK) {
		return (fail(call,
		    consent_failed(cs, j.tj_caller, j.tj_method, in->id, "hand-over", st),
		    j.tj_err));
	}
	log_info("consent: subject %s handed over to %s by %s %s", in->id, in->to_org,
	    rpc_role_name(j.tj_caller->role),
	    j.tj_caller->org_id[0] != '\0' ? j.tj_caller->org_id : "(local)");
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__consent__v1__subject__init(out);
	out->id            = rpc_call_strdup(call, in->id);
	out->holder        = rpc_call_strdup(call, in->to_org);
	out->created_by    = rpc_call_strdup(call, j.tj_created_by);
	out->created_at_ms = j.tj_created_at;
	out->minor         = j.tj_minor;
	if (out->id == NULL || out->holder == NULL || out->created_by == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*reply = &out->base;
	return (HV_OK);
}

/* ---- consent records (records.c) ------------------------------------------------------ */

/* Unpacks the job's record into the call's arena as the reply. */
static hv_status
record_reply(rpc_call *call, record_job *j, ProtobufCMessage **reply)
{
	ProtobufCMessage *m =
	    protobuf_c_message_unpack(&haven__consent__v1__consent_record__descriptor,
	        rpc_call_allocator(call), j->rj_len, j->rj_packed);

	if (m == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*reply = m;
	return (HV_OK);
}

/* A record operation for the call: the record as the reply, or the failure. */
static hv_status
record_call(rpc_call *call, void *svc, const char *id,
    const Haven__Consent__V1__GrantRequest *grant, hv_status (*op)(record_job *),
    ProtobufCMessage                      **reply)
{
	record_job j;
	hv_status  st;

	memset(&j, 0, sizeof(j));
	j.rj_cs     = svc;
	j.rj_caller = rpc_call_caller(call);
	j.rj_method = rpc_call_method(call);
	j.rj_id     = id;
	j.rj_grant  = grant;
	if ((st = op(&j)) != HV_OK) {
		st = fail(call, st, j.rj_err);
	} else {
		st = record_reply(call, &j, reply);
	}
	record_job_reset(&j);
	return (st);
}

static hv_status
h_grant(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	return (record_call(call, svc, NULL, (const void *) req, records_grant, reply));
}

static hv_status
h_withdraw(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Consent__V1__WithdrawRequest *in = (const void *) req;

	return (record_call(call, svc, in->id, NULL, records_withdraw, reply));
}

static hv_status
h_get(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Consent__V1__GetConsentRequest *in = (const void *) req;

	return (record_call(call, svc, in->id, NULL, records_get, reply));
}

static hv_status
h_get_receipt(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Consent__V1__GetReceiptRequest *in = (const void *) req;
	Haven__Consent__V1__ConsentRecord           *c  = NULL;
	Haven__Consent__V1__Receipt                 *out;
	ProtobufCMessage                            *rec  = NULL;
	json_t                                      *r    = NULL;
	char                                        *text = NULL;
	hv_status                                    st;

	if ((st = record_call(call, svc, in->id, NULL, records_get, &rec)) != HV_OK) {
		return (st);
	}
	c  = (Haven__Consent__V1__ConsentRecord *) rec; /* in the call's arena */
	st = HV_RESOURCE_EXHAUSTED;
	if ((r = receipt_json(c, true)) == NULL ||
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
	return (st);
}

static hv_status
h_list(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Consent__V1__ListConsentsRequest *in = (const void *) req;
	Haven__Consent__V1__ListConsentsResponse      *out;
	list_job                                      *j;
	hv_status                                      st = HV_RESOURCE_EXHAUSTED;

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (st);
	}
	j->lj_cs      = svc;
	j->lj_caller  = rpc_call_caller(call);
	j->lj_method  = rpc_call_method(call);
	j->lj_subject = in->subject;
	if ((st = records_list(j)) != HV_OK) {
		st = fail(call, st, j->lj_err);
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		goto out;
	}
	haven__consent__v1__list_consents_response__init(out);
	if ((out->consents = rpc_call_alloc(call, (j->lj_n + 1) * sizeof(*out->consents))) ==
	    NULL) {
		goto out;
	}
	for (size_t i = 0; i < j->lj_n; i++) {
		ProtobufCMessage *m =
		    protobuf_c_message_unpack(&haven__consent__v1__consent_record__descriptor,
		        rpc_call_allocator(call), j->lj_len[i], j->lj_packed[i]);
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

/* ---- Check (check.c) ------------------------------------------------------------------ */

static hv_status
h_check(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Consent__V1__CheckRequest *in     = (const void *) req;
	const rpc_caller                       *caller = rpc_call_caller(call);
	Haven__Consent__V1__CheckResponse      *out;
	consent_decision                        d;
	char                                    err[CONSENT_MSG_MAX] = "";
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
	if ((st = consent_check_call(svc, caller, rpc_call_method(call), in, &d, err,
	         sizeof(err))) != HV_OK) {
		return (fail(call, st, err));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__consent__v1__check_response__init(out);
	out->allowed = d.allowed;
	out->reason  = d.reason;
	/* A provider asks about itself: a refusal names no consent (the closest one may be
	 * another recipient's, which is not the provider's to know). */
	out->consent_id = rpc_call_strdup(call,
	    caller->role == RPC_ROLE_PROVIDER && !out->allowed ? "" : d.consent_id);
	out->message    = rpc_call_strdup(call, d.message);
	if (out->consent_id == NULL || out->message == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*reply = &out->base;
	return (HV_OK);
}

/* ---- keys (vault.c) ------------------------------------------------------------------- */

static hv_status
h_get_receipt_key(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	consent_service                *cs  = svc;
	Haven__Consent__V1__ReceiptKey *out = rpc_call_alloc(call, sizeof(*out));
	char                           *pem = NULL;
	size_t                          len;

	(void) req;
	if (out == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__consent__v1__receipt_key__init(out);
	if (crypto_ed25519_public_pem(cs->cs_pub, &pem, &len) != HV_OK) {
		return (rpc_call_error(call, HV_INTERNAL, "cannot write the public key"));
	}
	out->public_key.data = rpc_call_alloc(call, sizeof(cs->cs_pub));
	out->public_key_pem  = rpc_call_strdup(call, pem);
	out->key_id          = rpc_call_strdup(call, cs->cs_key_id);
	free(pem);
	if (out->public_key.data == NULL || out->public_key_pem == NULL || out->key_id == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	memcpy(out->public_key.data, cs->cs_pub, sizeof(cs->cs_pub));
	out->public_key.len = sizeof(cs->cs_pub);
	*reply              = &out->base;
	return (HV_OK);
}

static hv_status
h_rotate_key(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	consent_service                       *cs  = svc;
	Haven__Consent__V1__RotateKeyResponse *out = rpc_call_alloc(call, sizeof(*out));
	audit_entry                            e;
	uint64_t                               gen = 0, n = 0;
	hv_status                              st;

	(void) req;
	if (out == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__consent__v1__rotate_key_response__init(out);
	st = vault_rotate(cs, 0, &gen, &n);
	/* Key management is recorded too (no subject). */
	audit_entry_fill(&e, rpc_call_caller(call), rpc_call_method(call), "", "", consent_now(cs));
	e.result = (int32_t) st;
	(void) audit_record(cs->cs_audit, &e);
	if (st != HV_OK) {
		return (rpc_call_error(call, st, "key rotation failed (see the node's log)"));
	}
	out->kek_generation = gen;
	out->rewrapped      = n;
	*reply              = &out->base;
	return (HV_OK);
}

/* ---- life cycle ----------------------------------------------------------------------- */

/* Who may call what: docs/authority.md, checked against this table by authority_test. The
 * holder's rule inside the handlers (consent_may_act) narrows referrers to the subjects they
 * hold; coordinators, municipalities and admins never reach consent or personal data. */
#define R_HOLDER (RPC_ROLE_REFERRER | RPC_ROLE_OPERATOR)

static const rpc_method_impl consent_methods[] = {
	{ .name = "CreateSubject", .handler = h_create_subject, .roles = R_HOLDER },
	{ .name = "GetSubject", .handler = h_get_subject, .roles = R_HOLDER | RPC_ROLE_PROVIDER },
	{ .name = "EraseSubject", .handler = h_erase_subject, .roles = R_HOLDER | RPC_ROLE_ADMIN },
	{ .name = "TransferSubject", .handler = h_transfer_subject, .roles = R_HOLDER },
	{ .name = "UpdateSubject", .handler = h_update_subject, .roles = R_HOLDER },
	{ .name = "Grant", .handler = h_grant, .roles = R_HOLDER },
	{ .name = "Withdraw", .handler = h_withdraw, .roles = R_HOLDER },
	{ .name = "Get", .handler = h_get, .roles = R_HOLDER },
	{ .name = "List", .handler = h_list, .roles = R_HOLDER },
	{ .name = "Check", .handler = h_check, .roles = R_HOLDER | RPC_ROLE_PROVIDER },
	{ .name = "GetReceipt", .handler = h_get_receipt, .roles = R_HOLDER },
	{ .name             = "GetReceiptKey",
	    .handler        = h_get_receipt_key,
	    .roles          = RPC_ROLES_AUTHENTICATED,
	    .inline_handler = true },
	{ .name      = "RotateKey",
	    .handler = h_rotate_key,
	    .roles   = RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN },
};

_Static_assert(sizeof(consent_methods) <= sizeof(((consent_service *) 0)->cs_methods),
    "cs_methods holds every method of consent_methods");

/* The metrics page: the cache's hits and misses and, with Check's audit entries queued, how
 * long the audit writer lets them gather (what a crash can lose of them). */
static void
consent_collect(void *arg, metrics_writer *w)
{
	consent_service    *cs = arg;
	uint64_t            hits, misses;
	consent_audit_state chain;

	view_cache_stats(cs->cs_cache, &hits, &misses);
	chain = consent_audit_status(cs);
	metrics_family(w, "haven_audit_chain_intact", METRICS_GAUGE,
	    "1 when the audit chain's last verification (after the start, then daily) found it "
	    "intact, 0 when it did not (haven audit verify); no sample before the first one ends.");
	if (chain == CONSENT_AUDIT_INTACT || chain == CONSENT_AUDIT_BROKEN) {
		metrics_sample(w, "haven_audit_chain_intact",
		    chain == CONSENT_AUDIT_INTACT ? 1.0 : 0.0, (char *) NULL);
	}
	metrics_family(w, "haven_consent_check_cache_hits_total", METRICS_COUNTER,
	    "Consent Checks answered from a cached view of the subject's consents.");
	metrics_sample(w, "haven_consent_check_cache_hits_total", (double) hits, (char *) NULL);
	metrics_family(w, "haven_consent_check_cache_misses_total", METRICS_COUNTER,
	    "Consent Checks that read the subject's consents from the store.");
	metrics_sample(w, "haven_consent_check_cache_misses_total", (double) misses, (char *) NULL);
	if (cs->cs_check_async) {
		metrics_family(w, "haven_consent_check_audit_linger_seconds", METRICS_GAUGE,
		    "How long queued Check audit entries gather before their commit; a crash can "
		    "lose those of about this long.");
		metrics_sample(w, "haven_consent_check_audit_linger_seconds",
		    (double) audit_writer_linger_ms(cs->cs_audit) / 1000.0, (char *) NULL);
	}
}

hv_status
consent_register(consent_service *cs, rpc_server *srv)
{
	hv_status st;

	size_t n = sizeof(consent_methods) / sizeof(consent_methods[0]);

	/* Check answers without waiting for a commit when its audit entry is queued: then it
	 * runs inline, on the receiving thread, like Echo. */
	memcpy(cs->cs_methods, consent_methods, sizeof(consent_methods));
	for (size_t i = 0; i < n; i++) {
		if (strcmp(cs->cs_methods[i].name, "Check") == 0) {
			cs->cs_methods[i].inline_handler = cs->cs_check_async;
		}
	}
	if ((st = rpc_server_add_service(srv, &haven__consent__v1__consent__descriptor,
	         cs->cs_methods, n, cs)) != HV_OK) {
		return (st);
	}
	if ((st = rpc_server_add_service(srv, &haven__audit__v1__audit__descriptor,
	         audit_rpc_methods, AUDIT_RPC_METHODS, cs)) != HV_OK) {
		return (st);
	}
	return (metrics_add_collector(rpc_server_metrics(srv), consent_collect, cs));
}
