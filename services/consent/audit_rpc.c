/*
 * audit_rpc.c - haven.audit.v1.Audit: Verify (recompute the chain, name the first entry that
 * was changed, removed or reordered) and List (who accessed what, or whom; for an
 * organisation, who accessed the data of the subjects it holds), over the audit log of
 * services/common. Served by haven-consent for the whole node: every service appends to
 * the same tables. Reading the log is not itself audited: it holds no personal data.
 */
#include "consent_rpc.h"

#include "haven/consent/v1/audit.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_DEFAULT 100
#define SCAN_PAGE    256   /* entries read at a time by holder_list */
#define SCAN_MAX     16384 /* entries holder_list reads in one call at most */

/* With Check's entries queued, what was queued before this call is written first, so that the
 * log read is the log of every access answered so far. A writer that failed is reported by
 * every Check from then on; the entries read are then those that were written. */
static void
audit_rpc_flush(consent_service *cs)
{
	if (cs->cs_check_async) {
		(void) audit_flush(cs->cs_audit);
	}
}

static hv_status
h_audit_verify(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	consent_service                  *cs  = svc;
	Haven__Audit__V1__VerifyResponse *out = rpc_call_alloc(call, sizeof(*out));
	audit_verify_result               r;
	hv_status                         st;

	(void) req;
	if (out == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__audit__v1__verify_response__init(out);
	audit_rpc_flush(cs);
	st = audit_verify(cs->cs_audit, &r);
	if (st != HV_OK && st != HV_DATA_LOSS) {
		return (rpc_call_error(call, st, "the audit log could not be read"));
	}
	/* A broken chain is the answer to the question, not a failure of the call. */
	out->intact         = st == HV_OK;
	out->entries        = r.entries;
	out->head_seq       = r.head_seq;
	out->first_bad_seq  = r.first_bad_seq;
	out->checkpoints    = r.checkpoints;
	out->checkpoint_seq = r.checkpoint_seq;
	out->keyed_from     = r.keyed_from;
	out->reason         = rpc_call_strdup(call, r.why);
	out->head_hash.data = rpc_call_alloc(call, AUDIT_HASH_LEN);
	if (out->reason == NULL || out->head_hash.data == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	memcpy(out->head_hash.data, r.head_hash, AUDIT_HASH_LEN);
	out->head_hash.len = AUDIT_HASH_LEN;
	*reply             = &out->base;
	return (HV_OK);
}

/* Whether the caller may list the entries asked for: the operator any; a referrer those of a
 * subject it holds, named in the request, or (none named) of every subject it holds. */
static hv_status
list_allowed(rpc_call *call, consent_service *cs, const char *subject,
    const uint8_t sid[CONSENT_ID_LEN])
{
	const rpc_caller                  *caller               = rpc_call_caller(call);
	Haven__Consent__V1__SubjectRecord *rec                  = NULL;
	store_txn                         *txn                  = NULL;
	char                               err[CONSENT_MSG_MAX] = "";
	hv_status                          st;

	if (caller->role == RPC_ROLE_OPERATOR) {
		return (HV_OK);
	}
	if (subject[0] == '\0') {
		return (HV_OK); /* an organisation: the subjects it holds (holder_list) */
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = consent_subject_acting(cs, txn, caller, sid, true, true, &rec, err, sizeof(err));
	if (st == HV_OK) {
		protobuf_c_message_free_unpacked(&rec->base, NULL);
	}
	store_read_end(txn);
	return (st == HV_OK ? HV_OK : rpc_call_error(call, st, "%s", err));
}

/* The last subjects a holder scan decided on: most entries of a run are about a few. */
#define HELD_CACHE 16

typedef struct held_cache {
	char hc_subject[HELD_CACHE][CONSENT_ID_HEX];
	bool hc_held[HELD_CACHE];
	int  hc_next;
} held_cache;

/* Whether caller (an organisation) holds the subject an entry is about, now. Entries about
 * no subject, an erased one (its tombstone names no holder) or one held by another are not
 * the caller's. */
static hv_status
held_by(consent_service *cs, store_txn *txn, const rpc_caller *caller, const char *subject,
    held_cache *c, bool *held)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	uint8_t                            sid[CONSENT_ID_LEN];
	hv_status                          st;

	*held = false;
	if (caller->role != RPC_ROLE_REFERRER || consent_id_parse(subject, sid) != 0) {
		return (HV_OK);
	}
	for (int i = 0; i < HELD_CACHE; i++) {
		if (strcmp(c->hc_subject[i], subject) == 0) {
			*held = c->hc_held[i];
			return (HV_OK);
		}
	}
	st = consent_subject_get(cs, txn, sid, true, &rec, NULL, 0);
	if (st == HV_OK) {
		*held = rec->erased_at_ms == 0 && strcmp(consent_holder(rec), caller->org_id) == 0;
		protobuf_c_message_free_unpacked(&rec->base, NULL);
	} else if (st != HV_NOT_FOUND) {
		return (st);
	}
	snprintf(c->hc_subject[c->hc_next], CONSENT_ID_HEX, "%s", subject);
	c->hc_held[c->hc_next] = *held;
	c->hc_next             = (c->hc_next + 1) % HELD_CACHE;
	return (HV_OK);
}

/*
 * Who accessed the data of any subject the caller holds: the entries after after_seq about
 * those subjects, up to max, read from the whole log page by page. A call reads at most
 * SCAN_MAX entries of the log; *next is where the next page starts (0 at the log's end), so a
 * holder with few entries among many pages through with empty pages rather than one long
 * call.
 */
static hv_status
holder_list(consent_service *cs, store_txn *txn, const rpc_caller *caller, uint64_t after_seq,
    audit_entry *es, size_t max, size_t *n, uint64_t *next)
{
	audit_entry *page = calloc(SCAN_PAGE, sizeof(*page));
	held_cache  *c    = calloc(1, sizeof(*c));
	size_t       got = 0, scanned = 0;
	bool         held;
	hv_status    st = HV_RESOURCE_EXHAUSTED;

	*n    = 0;
	*next = 0;
	if (page == NULL || c == NULL) {
		goto out;
	}
	do {
		if ((st = audit_list(cs->cs_audit, txn, NULL, after_seq, page, SCAN_PAGE, &got)) !=
		    HV_OK) {
			goto out;
		}
		for (size_t i = 0; i < got; i++) {
			after_seq = page[i].seq;
			if ((st = held_by(cs, txn, caller, page[i].subject, c, &held)) != HV_OK) {
				goto out;
			}
			if (held) {
				es[(*n)++] = page[i];
			}
			if (*n == max) {
				*next = after_seq;
				goto out;
			}
		}
		scanned += got;
	} while (got == SCAN_PAGE && scanned < SCAN_MAX);
	*next = got == SCAN_PAGE ? after_seq : 0;
out:
	free(page);
	free(c);
	return (st);
}

static hv_status
h_audit_list(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	consent_service                     *cs   = svc;
	const Haven__Audit__V1__ListRequest *in   = (const void *) req;
	Haven__Audit__V1__ListResponse      *out  = NULL;
	audit_entry                         *es   = NULL;
	store_txn                           *txn  = NULL;
	size_t                               n    = 0;
	size_t                               max  = in->limit != 0 ? in->limit : LIST_DEFAULT;
	uint64_t                             next = 0;
	uint8_t                              sid[CONSENT_ID_LEN];
	hv_status                            st;

	if (max > AUDIT_LIST_MAX) {
		return (
		    rpc_call_error(call, HV_INVALID_ARGUMENT, "limit: at most %d", AUDIT_LIST_MAX));
	}
	if (in->subject[0] != '\0' && consent_id_parse(in->subject, sid) != 0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if ((st = list_allowed(call, cs, in->subject, sid)) != HV_OK) {
		return (st);
	}
	if ((es = calloc(max, sizeof(*es))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	audit_rpc_flush(cs);
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		goto out;
	}
	if (in->subject[0] == '\0' && rpc_call_caller(call)->role != RPC_ROLE_OPERATOR) {
		st = holder_list(cs, txn, rpc_call_caller(call), in->after_seq, es, max, &n, &next);
	} else if ((st = audit_list(cs->cs_audit, txn, in->subject[0] != '\0' ? in->subject : NULL,
	                in->after_seq, es, max, &n)) == HV_OK) {
		next = n == max && n > 0 ? es[n - 1].seq : 0;
	}
	store_read_end(txn);
	if (st != HV_OK) {
		st = rpc_call_error(call, st, "the audit log could not be read");
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		goto out;
	}
	haven__audit__v1__list_response__init(out);
	if ((out->entries = rpc_call_alloc(call, (n + 1) * sizeof(*out->entries))) == NULL) {
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		Haven__Audit__V1__AuditEntry *e = rpc_call_alloc(call, sizeof(*e));
		if (e == NULL) {
			goto out;
		}
		haven__audit__v1__audit_entry__init(e);
		e->seq            = es[i].seq;
		e->time_ms        = es[i].time_ms;
		e->caller_org     = rpc_call_strdup(call, es[i].org);
		e->caller_person  = rpc_call_strdup(call, es[i].person);
		e->caller_role    = rpc_call_strdup(call, rpc_role_name(es[i].role));
		e->method         = rpc_call_strdup(call, es[i].method);
		e->subject        = rpc_call_strdup(call, es[i].subject);
		e->purpose        = rpc_call_strdup(call, es[i].purpose);
		e->result         = (uint32_t) es[i].result;
		e->result_name    = rpc_call_strdup(call, hv_status_name(es[i].result));
		e->prev_hash.data = rpc_call_alloc(call, AUDIT_HASH_LEN);
		e->hash.data      = rpc_call_alloc(call, AUDIT_HASH_LEN);
		if (e->caller_org == NULL || e->caller_person == NULL || e->caller_role == NULL ||
		    e->method == NULL || e->subject == NULL || e->purpose == NULL ||
		    e->result_name == NULL || e->prev_hash.data == NULL || e->hash.data == NULL) {
			goto out;
		}
		memcpy(e->prev_hash.data, es[i].prev_hash, AUDIT_HASH_LEN);
		memcpy(e->hash.data, es[i].hash, AUDIT_HASH_LEN);
		e->prev_hash.len               = AUDIT_HASH_LEN;
		e->hash.len                    = AUDIT_HASH_LEN;
		out->entries[out->n_entries++] = e;
	}
	out->next_after_seq = next;
	*reply              = &out->base;
	st                  = HV_OK;
out:
	free(es);
	return (st);
}

#define R_HOLDER (RPC_ROLE_REFERRER | RPC_ROLE_OPERATOR)

/* The whole log: the operator; its chain: admins too; a referrer: the entries of a subject it
 * holds (h_audit_list). */
const rpc_method_impl audit_rpc_methods[] = {
	{ .name      = "Verify",
	    .handler = h_audit_verify,
	    .roles   = RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN },
	{ .name = "List", .handler = h_audit_list, .roles = R_HOLDER },
};

_Static_assert(sizeof(audit_rpc_methods) / sizeof(audit_rpc_methods[0]) == AUDIT_RPC_METHODS,
    "AUDIT_RPC_METHODS counts audit_rpc_methods");
