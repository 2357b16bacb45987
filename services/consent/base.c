/*
 * base.c - what every file of the consent library stands on: the clock, subject and consent
 * ids, messages, audit entries (and the entry of a failed access), withdrawal events on the
 * pub socket, and the reading of the consent tables: a subject's record and its holder's
 * rule, a consent record, a subject's consents. It calls no other file of the library
 * (consent_base.h).
 */
#include "consent_base.h"

#include "haven/clock.h"
#include "haven/ids.h"
#include "haven/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t
consent_now(consent_service *cs)
{
	return (cs->cs_now != NULL ? cs->cs_now(cs->cs_now_arg) : hv_clock_wall_ms());
}

/* ---- ids, messages, audit ------------------------------------------------------------- */

int
consent_id_parse(const char *hex, uint8_t id[CONSENT_ID_LEN])
{
	if (hex == NULL || strlen(hex) != 2 * CONSENT_ID_LEN) {
		return (-1);
	}
	for (size_t i = 0; i < CONSENT_ID_LEN; i++) {
		int v = 0;
		for (int j = 0; j < 2; j++) {
			char c = hex[2 * i + (size_t) j];
			v <<= 4;
			if (c >= '0' && c <= '9') {
				v |= c - '0';
			} else if (c >= 'a' && c <= 'f') {
				v |= c - 'a' + 10;
			} else {
				return (-1);
			}
		}
		id[i] = (uint8_t) v;
	}
	return (0);
}

void
consent_id_format(const uint8_t id[CONSENT_ID_LEN], char hex[CONSENT_ID_HEX])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < CONSENT_ID_LEN; i++) {
		hex[2 * i]     = digits[id[i] >> 4];
		hex[2 * i + 1] = digits[id[i] & 0xf];
	}
	hex[2 * CONSENT_ID_LEN] = '\0';
}

void
consent_audit_failure(consent_service *cs, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, hv_status result)
{
	audit_entry e;
	uint8_t     id[CONSENT_ID_LEN];
	hv_status   st;

	if (result == HV_OK || result == HV_UNAVAILABLE) {
		return;
	}
	/* Only well-formed ids go into the log: anything else could be anything. */
	if (subject != NULL && consent_id_parse(subject, id) != 0) {
		subject = "";
	}
	audit_entry_fill(&e, caller, method, subject, purpose, consent_now(cs));
	e.result = (int32_t) result;
	if ((st = audit_record(cs->cs_audit, &e)) != HV_OK) {
		log_error("consent: cannot audit a failed %s: %s", method, hv_status_name(st));
	}
}

hv_status
consent_failed(consent_service *cs, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, hv_status st)
{
	if (st != HV_INVALID_ARGUMENT) {
		consent_audit_failure(cs, caller, method, subject, purpose, st);
	}
	return (st);
}

hv_status
consent_subject_get(consent_service *cs, store_txn *txn, const uint8_t id[CONSENT_ID_LEN],
    bool allow_erased, Haven__Consent__V1__SubjectRecord **out, char *err, size_t errsz)
{
	char      hex[CONSENT_ID_HEX];
	hv_status st;

	*out = NULL;
	consent_id_format(id, hex);
	st = store_get_msg(txn, cs->cs_subjects, id, CONSENT_ID_LEN,
	    &haven__consent__v1__subject_record__descriptor, NULL, (ProtobufCMessage **) out);
	if (st == HV_NOT_FOUND) {
		return (hv_fail(err, errsz, HV_NOT_FOUND, "no subject %s", hex));
	}
	if (st != HV_OK) {
		return (hv_fail(err, errsz, st, "subject %s does not read", hex));
	}
	if ((*out)->erased_at_ms != 0 && !allow_erased) {
		protobuf_c_message_free_unpacked(&(*out)->base, NULL);
		*out = NULL;
		return (hv_fail(err, errsz, HV_NOT_FOUND, "subject %s was erased", hex));
	}
	return (HV_OK);
}

const char *
consent_holder(const Haven__Consent__V1__SubjectRecord *r)
{
	return (r->holder != NULL && r->holder[0] != '\0' ? r->holder : r->created_by);
}

hv_status
consent_may_act(const rpc_caller *caller, const char *holder, const char *subject, bool operator_ok,
    char *err, size_t errsz)
{
	/* The holder itself: a referrer organisation, or the operator for the subjects it
	 * recorded (held by "", no organisation). */
	if (caller->role == RPC_ROLE_REFERRER && caller->org_id[0] != '\0' &&
	    strcmp(caller->org_id, holder) == 0) {
		return (HV_OK);
	}
	if (caller->role == RPC_ROLE_OPERATOR && (operator_ok || holder[0] == '\0')) {
		return (HV_OK);
	}
	if (caller->role == RPC_ROLE_REFERRER) {
		return (hv_fail(err, errsz, HV_PERMISSION_DENIED,
		    "organisation %s does not hold subject %s", caller->org_id, subject));
	}
	return (hv_fail(err, errsz, HV_PERMISSION_DENIED,
	    "only the organisation that holds subject %s may do this, not role %s", subject,
	    rpc_role_name(caller->role)));
}

hv_status
consent_subject_acting(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const uint8_t id[CONSENT_ID_LEN], bool operator_ok, bool allow_erased,
    Haven__Consent__V1__SubjectRecord **out, char *err, size_t errsz)
{
	char        hex[CONSENT_ID_HEX];
	const char *holder = CONSENT_NO_HOLDER;
	bool        erased;
	hv_status   st, may;

	consent_id_format(id, hex);
	if ((st = consent_subject_get(cs, txn, id, true, out, err, errsz)) != HV_OK &&
	    st != HV_NOT_FOUND) {
		return (st);
	}
	erased = st == HV_OK && (*out)->erased_at_ms != 0;
	if (st == HV_OK && !erased) {
		holder = consent_holder(*out);
	}
	/* The operator sees every subject anyway (it holds the keys): it hears what is so. */
	may = caller->role == RPC_ROLE_OPERATOR && (st != HV_OK || erased)
	    ? HV_OK
	    : consent_may_act(caller, holder, hex, operator_ok, err, errsz);
	if (may != HV_OK || st != HV_OK || (erased && !allow_erased)) {
		if (*out != NULL) {
			protobuf_c_message_free_unpacked(&(*out)->base, NULL);
			*out = NULL;
		}
		return (may != HV_OK ? may
		        : st != HV_OK
		        ? hv_fail(err, errsz, st, "no subject %s", hex)
		        : hv_fail(err, errsz, HV_NOT_FOUND, "subject %s was erased", hex));
	}
	return (HV_OK);
}

/* ---- withdrawal events ---------------------------------------------------------------- */

void
consent_publish_withdrawn(consent_service *cs, const char *consent_id, const char *subject,
    int64_t when, bool erased, bool expired)
{
	Haven__Consent__V1__ConsentWithdrawn ev   = HAVEN__CONSENT__V1__CONSENT_WITHDRAWN__INIT;
	size_t                               tlen = strlen(CONSENT_TOPIC_WITHDRAWN);
	uint8_t                              buf[256];
	size_t                               n;
	int                                  rv;

	if (!cs->cs_pub_open) {
		return;
	}
	ev.consent_id      = (char *) consent_id;
	ev.subject         = (char *) subject;
	ev.withdrawn_at_ms = when;
	ev.erased          = erased;
	ev.expired         = expired;
	n                  = haven__consent__v1__consent_withdrawn__get_packed_size(&ev);
	if (tlen + n > sizeof(buf)) {
		return; /* ids are bounded: cannot happen */
	}
	memcpy(buf, CONSENT_TOPIC_WITHDRAWN, tlen);
	haven__consent__v1__consent_withdrawn__pack(&ev, buf + tlen);
	/* Never blocks: a subscriber that cannot keep up loses events, not the withdrawal. */
	if ((rv = nng_send(cs->cs_pubsock, buf, tlen + n, NNG_FLAG_NONBLOCK)) != 0) {
		log_warn("consent: withdrawal of consent %s not published: %s", consent_id,
		    nng_strerror(rv));
	}
}

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

hv_status
consent_records_foreach(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    consent_record_fn fn, void *arg)
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

hv_status
consent_personal_has(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    unsigned field, bool *yes)
{
	Haven__Consent__V1__SealedPersonal *sp;
	const void                         *v;
	size_t                              vl;
	hv_status                           st;

	*yes = false;
	if ((st = store_get(txn, cs->cs_personal, sid, CONSENT_ID_LEN, &v, &vl)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if ((sp = haven__consent__v1__sealed_personal__unpack(NULL, vl, v)) == NULL) {
		return (HV_DATA_LOSS);
	}
	for (size_t i = 0; i < sp->n_fields; i++) {
		*yes = *yes || sp->fields[i]->field == field;
	}
	haven__consent__v1__sealed_personal__free_unpacked(sp, NULL);
	return (HV_OK);
}
