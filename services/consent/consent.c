/*
 * consent.c - the consent service's life cycle and what its files share: opening the tables,
 * the vault and the audit log, the rotation timer, withdrawal events on the pub socket, ids,
 * messages, audit entries, and the registration of haven.consent.v1.Consent and
 * haven.audit.v1.Audit. The handlers live in subjects.c (personal data), records.c (consent)
 * and audit_rpc.c; keys in vault.c; receipts in receipt.c.
 */
#include "consent_internal.h"

#include "haven/clock.h"
#include "haven/metrics.h"

#include "haven/log.h"

#include "haven/consent/v1/audit.pb-c.h"

#include <errno.h>
#include <nng/protocol/pubsub0/pub.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TIMER_PERIOD_MAX_S 3600 /* the rotation timer looks at least hourly */

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

hv_status
consent_fail(char *err, size_t errsz, hv_status code, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errsz > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return (code);
}

void
consent_audit_fill(audit_entry *e, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, int64_t now)
{
	memset(e, 0, sizeof(*e));
	e->time_ms = now;
	audit_entry_caller(e, caller); /* role, organisation and person */
	snprintf(e->method, sizeof(e->method), "%s", method != NULL ? method : "");
	snprintf(e->subject, sizeof(e->subject), "%s", subject != NULL ? subject : "");
	snprintf(e->purpose, sizeof(e->purpose), "%s", purpose != NULL ? purpose : "");
	e->result = HV_OK;
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
	consent_audit_fill(&e, caller, method, subject, purpose, consent_now(cs));
	e.result = (int32_t) result;
	if ((st = audit_record(cs->cs_audit, &e)) != HV_OK) {
		log_error("consent: cannot audit a failed %s: %s", method, hv_status_name(st));
	}
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
		return (consent_fail(err, errsz, HV_NOT_FOUND, "no subject %s", hex));
	}
	if (st != HV_OK) {
		return (consent_fail(err, errsz, st, "subject %s does not read", hex));
	}
	if ((*out)->erased_at_ms != 0 && !allow_erased) {
		protobuf_c_message_free_unpacked(&(*out)->base, NULL);
		*out = NULL;
		return (consent_fail(err, errsz, HV_NOT_FOUND, "subject %s was erased", hex));
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
		return (consent_fail(err, errsz, HV_PERMISSION_DENIED,
		    "organisation %s does not hold subject %s", caller->org_id, subject));
	}
	return (consent_fail(err, errsz, HV_PERMISSION_DENIED,
	    "only the organisation that holds subject %s may do this, not role %s", subject,
	    rpc_role_name(caller->role)));
}

/* ---- withdrawal events ---------------------------------------------------------------- */

void
consent_publish_withdrawn(consent_service *cs, const char *consent_id, const char *subject,
    int64_t when, bool erased)
{
	Haven__Consent__V1__ConsentWithdrawn ev    = HAVEN__CONSENT__V1__CONSENT_WITHDRAWN__INIT;
	size_t                               tlen  = strlen(CONSENT_TOPIC_WITHDRAWN);
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

/* ---- rotation timer ------------------------------------------------------------------- */

/* The timer looks every 1/24 of the rotation interval, at least hourly. */
static uint32_t
timer_period_s(const consent_service *cs)
{
	uint32_t period = cs->cs_rotate_s / 24;

	return (period == 0 ? 1 : period > TIMER_PERIOD_MAX_S ? TIMER_PERIOD_MAX_S : period);
}

/* One round of the rotation timer: rotates the key when it is one timer period from the
 * interval, so that no key is ever older than the interval. */
static void
timer_round(void *arg)
{
	consent_service *cs  = arg;
	int64_t          age = ((int64_t) cs->cs_rotate_s - (int64_t) timer_period_s(cs)) * 1000;
	hv_status        st  = vault_rotate(cs, age > 0 ? age : 1, NULL, NULL);

	if (st != HV_OK) {
		log_error("consent: scheduled key rotation failed: %s", hv_status_name(st));
	}
}

/* ---- small handlers ------------------------------------------------------------------- */

static hv_status
h_get_receipt_key(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	consent_service                 *cs  = svc;
	Haven__Consent__V1__ReceiptKey *out = rpc_call_alloc(call, sizeof(*out));
	char                            *pem = NULL;
	size_t                           len;

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
	consent_audit_fill(&e, rpc_call_caller(call), rpc_call_method(call), "", "", consent_now(cs));
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
	{ .name = "CreateSubject", .handler = consent_h_create_subject, .roles = R_HOLDER },
	{ .name = "GetSubject", .handler = consent_h_get_subject, .roles = R_HOLDER | RPC_ROLE_PROVIDER },
	{ .name    = "EraseSubject",
	    .handler = consent_h_erase_subject,
	    .roles   = R_HOLDER | RPC_ROLE_ADMIN },
	{ .name = "TransferSubject", .handler = consent_h_transfer_subject, .roles = R_HOLDER },
	{ .name = "Grant", .handler = consent_h_grant, .roles = R_HOLDER },
	{ .name = "Withdraw", .handler = consent_h_withdraw, .roles = R_HOLDER },
	{ .name = "Get", .handler = consent_h_get, .roles = R_HOLDER },
	{ .name = "List", .handler = consent_h_list, .roles = R_HOLDER },
	{ .name = "Check", .handler = consent_h_check, .roles = R_HOLDER | RPC_ROLE_PROVIDER },
	{ .name = "GetReceipt", .handler = consent_h_get_receipt, .roles = R_HOLDER },
	{ .name           = "GetReceiptKey",
	    .handler        = h_get_receipt_key,
	    .roles          = RPC_ROLES_AUTHENTICATED,
	    .inline_handler = true },
	{ .name = "RotateKey", .handler = h_rotate_key, .roles = RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN },
};

_Static_assert(sizeof(consent_methods) <= sizeof(((consent_service *) 0)->cs_methods),
    "cs_methods holds every method of consent_methods");

/* The whole log: the operator; its chain: admins too; a referrer: the entries of a subject it
 * holds (consent_h_audit_list). */
static const rpc_method_impl audit_methods[] = {
	{ .name    = "Verify",
	    .handler = consent_h_audit_verify,
	    .roles   = RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN },
	{ .name = "List", .handler = consent_h_audit_list, .roles = R_HOLDER },
};

/* At start the whole chain is verified once. A break is logged as an error and shown on the
 * metrics page (haven_audit_chain_intact 0); the node keeps serving, because refusing help
 * while the log is broken would be worse. */
static void
audit_at_open(consent_service *cs)
{
	audit_verify_result r;
	hv_status           st = audit_verify(cs->cs_audit, &r);

	cs->cs_audit_broken = st == HV_DATA_LOSS;
	if (st == HV_DATA_LOSS) {
		log_error("audit: the chain does not verify at start: entry %llu: %s (haven audit "
		          "verify; docs/audit.md)",
		    (unsigned long long) r.first_bad_seq, r.why);
	} else if (st != HV_OK) {
		log_warn("audit: the chain could not be verified at start: %s", hv_status_name(st));
	}
}

bool
consent_audit_broken(consent_service *cs)
{
	return (cs->cs_audit_broken);
}

hv_status
consent_open(consent_service **out, const consent_options *o)
{
	consent_service *cs;
	int              rv;
	hv_status        st = HV_INVALID_ARGUMENT;

	*out = NULL;
	if (o == NULL || o->store == NULL || o->data_dir == NULL) {
		return (st);
	}
	if ((cs = calloc(1, sizeof(*cs))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_init(&cs->cs_kmtx, NULL);
	pthread_mutex_init(&cs->cs_rotmtx, NULL);
	cs->cs_store       = o->store;
	cs->cs_now         = o->now_ms;
	cs->cs_now_arg     = o->now_arg;
	cs->cs_org_role    = o->org_role;
	cs->cs_org_arg     = o->org_arg;
	cs->cs_accepting     = o->accepting_provider;
	cs->cs_accepting_arg = o->accepting_arg;
	cs->cs_rotate_s    = o->rotate_interval_s != 0 ? o->rotate_interval_s : 86400;
	cs->cs_check_async = o->check_audit_async;

	if ((st = store_table_open(cs->cs_store, "consent.meta", &cs->cs_meta)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.subjects", &cs->cs_subjects)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.personal", &cs->cs_personal)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.records", &cs->cs_records)) != HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.by_subject", &cs->cs_by_subject)) !=
	        HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.subject_gen", &cs->cs_subject_gen)) !=
	        HV_OK ||
	    (st = store_table_open(cs->cs_store, "consent.views", &cs->cs_views)) != HV_OK ||
	    (st = audit_open(&cs->cs_audit, cs->cs_store, o->data_dir)) != HV_OK) {
		log_error("consent: cannot open the tables: %s", hv_status_name(st));
		goto fail;
	}
	audit_at_open(cs);
	if ((st = vault_open(cs, o->data_dir)) != HV_OK) {
		goto fail;
	}
	if ((st = views_prepare(cs)) != HV_OK) {
		log_error("consent: cannot store the consent views: %s", hv_status_name(st));
		goto fail;
	}
	if ((st = view_cache_open(&cs->cs_cache, VIEW_CACHE_MAX)) != HV_OK) {
		goto fail;
	}
	if (cs->cs_check_async && (st = audit_writer_start(cs->cs_audit)) != HV_OK) {
		goto fail;
	}
	if (o->pub_url != NULL) {
		if ((rv = nng_pub0_open(&cs->cs_pubsock)) != 0) {
			st = hv_status_from_nng(rv);
			goto fail;
		}
		cs->cs_pub_open = true;
		if ((rv = nng_listen(cs->cs_pubsock, o->pub_url, NULL, 0)) != 0) {
			st = hv_status_from_nng(rv);
			log_error("consent: cannot publish on %s: %s", o->pub_url, nng_strerror(rv));
			goto fail;
		}
	}
	if ((st = hv_ticker_start(&cs->cs_timer, (uint64_t) timer_period_s(cs) * 1000, false,
	         timer_round, cs)) != HV_OK) {
		goto fail;
	}
	*out = cs;
	return (HV_OK);
fail:
	consent_close(cs);
	return (st);
}

void
consent_stop(consent_service *cs)
{
	if (cs == NULL) {
		return;
	}
	/* Queued audit entries are written while the store is open. */
	if (cs->cs_audit != NULL) {
		audit_writer_stop(cs->cs_audit);
	}
	hv_ticker_stop(cs->cs_timer);
	cs->cs_timer = NULL;
}

void
consent_close(consent_service *cs)
{
	if (cs == NULL) {
		return;
	}
	consent_stop(cs);
	if (cs->cs_pub_open) {
		nng_close(cs->cs_pubsock);
	}
	vault_close(cs);
	view_cache_close(cs->cs_cache);
	audit_close(cs->cs_audit);
	pthread_mutex_destroy(&cs->cs_kmtx);
	pthread_mutex_destroy(&cs->cs_rotmtx);
	free(cs);
}

void
consent_check_cache_stats(consent_service *cs, uint64_t *hits, uint64_t *misses)
{
	view_cache_stats(cs->cs_cache, hits, misses);
}

/* The metrics page: the cache's hits and misses and, with Check's audit entries queued, how
 * long the audit writer lets them gather (what a crash can lose of them). */
static void
consent_collect(void *arg, metrics_writer *w)
{
	consent_service *cs = arg;
	uint64_t         hits, misses;

	consent_check_cache_stats(cs, &hits, &misses);
	metrics_family(w, "haven_audit_chain_intact", METRICS_GAUGE,
	    "1 when the audit chain verified at start, 0 when it did not (haven audit verify).");
	metrics_sample(w, "haven_audit_chain_intact", cs->cs_audit_broken ? 0.0 : 1.0,
	    (char *) NULL);
	metrics_family(w, "haven_consent_check_cache_hits_total", METRICS_COUNTER,
	    "Consent Checks answered from a cached view of the subject's consents.");
	metrics_sample(w, "haven_consent_check_cache_hits_total", (double) hits, (char *) NULL);
	metrics_family(w, "haven_consent_check_cache_misses_total", METRICS_COUNTER,
	    "Consent Checks that read the subject's consents from the store.");
	metrics_sample(w, "haven_consent_check_cache_misses_total", (double) misses,
	    (char *) NULL);
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
	if ((st = rpc_server_add_service(srv, &haven__audit__v1__audit__descriptor, audit_methods,
	         sizeof(audit_methods) / sizeof(audit_methods[0]), cs)) != HV_OK) {
		return (st);
	}
	return (metrics_add_collector(rpc_server_metrics(srv), consent_collect, cs));
}

audit *
consent_audit(consent_service *cs)
{
	return (cs->cs_audit);
}

hv_status
consent_rotate_kek(consent_service *cs, uint64_t *generation, uint64_t *rewrapped)
{
	return (vault_rotate(cs, 0, generation, rewrapped));
}

void
consent_receipt_key(consent_service *cs, uint8_t pub[32], char key_id[CONSENT_KEY_ID_HEX])
{
	memcpy(pub, cs->cs_pub, sizeof(cs->cs_pub));
	memcpy(key_id, cs->cs_key_id, CONSENT_KEY_ID_HEX);
}
