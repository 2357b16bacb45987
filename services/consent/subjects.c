/*
 * subjects.c - subjects and their personal data: create (validate, seal under a fresh data
 * key, wrap the key under the KEK), show (decide which categories the caller may see, unwrap,
 * unseal those), the provider read path other services call, and erase (crypto-shredding,
 * then a KEK rotation so that no old copy of the store can be decrypted either).
 *
 * Every read or write of personal data appends an audit entry inside its own transaction; a
 * refused or failed one is recorded afterwards in a transaction of its own. Messages name
 * fields, bounds and ids, never a value of a personal field.
 */
#include "consent_subjects.h"

#include "consent_check.h"
#include "consent_records.h"

#include "haven/log.h"
#include "alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sealing ---------------------------------------------------------------------------- */

/* Seals the fields given (text by field number; "" is not given: nothing stored, not even its
 * length) under data key dk and puts them as the subject's personal data, replacing what was
 * there (fresh nonces for every field). */
static hv_status
personal_put(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    const uint8_t dk[DATA_KEY_LEN], const char *const text[PERSONAL_FIELDS + 1])
{
	Haven__Consent__V1__SealedField    fields[PERSONAL_FIELDS];
	Haven__Consent__V1__SealedField   *fp[PERSONAL_FIELDS];
	Haven__Consent__V1__SealedPersonal sp  = HAVEN__CONSENT__V1__SEALED_PERSONAL__INIT;
	uint8_t                           *buf = NULL;
	size_t                             nf  = 0, len;
	hv_status                          st  = HV_OK;

	for (unsigned f = 1; f <= PERSONAL_FIELDS; f++) {
		if (text[f] == NULL || text[f][0] == '\0') {
			continue;
		}
		if ((st = vault_seal(dk, sid, f, text[f], &fields[nf])) != HV_OK) {
			goto out;
		}
		fp[nf] = &fields[nf];
		nf++;
	}
	sp.n_fields = nf;
	sp.fields   = fp;
	len         = haven__consent__v1__sealed_personal__get_packed_size(&sp);
	if ((buf = malloc(len > 0 ? len : 1)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	haven__consent__v1__sealed_personal__pack(&sp, buf);
	st = store_put(txn, cs->cs_personal, sid, CONSENT_ID_LEN, buf, len);
out:
	for (size_t i = 0; i < nf; i++) {
		vault_field_free(&fields[i]);
	}
	free(buf);
	return (st);
}

/* The subject's data key, unwrapped (the caller wipes it). DATA_LOSS with a message when it
 * does not unwrap. */
static hv_status
data_key(consent_service *cs, const Haven__Consent__V1__SubjectRecord *rec,
    const uint8_t sid[CONSENT_ID_LEN], const char *hex, uint8_t dk[DATA_KEY_LEN], char *err,
    size_t errsz)
{
	hv_status st = vault_unwrap(cs, rec->kek_generation, sid, rec->wrapped_key.data,
	    rec->wrapped_key.len, dk);

	if (st == HV_DATA_LOSS) {
		(void) hv_fail(err, errsz, HV_DATA_LOSS,
		    "personal data of subject %s does not decrypt (wrong key or altered)", hex);
	}
	return (st);
}

/* ---- create --------------------------------------------------------------------------- */

hv_status
consent_create_subject_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const Haven__Consent__V1__PersonalData *p, bool minor, char id_hex[CONSENT_ID_HEX])
{
	Haven__Consent__V1__PersonalData  empty = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__SubjectRecord rec   = HAVEN__CONSENT__V1__SUBJECT_RECORD__INIT;
	const char                       *text[PERSONAL_FIELDS + 1];
	char                              langs[LANGS_JOINED_MAX + 1];
	uint8_t                           id[CONSENT_ID_LEN];
	uint8_t                           dk[DATA_KEY_LEN];
	uint8_t                           wrapped[WRAPPED_LEN];
	uint64_t                          gen;
	audit_entry                       e;
	hv_status                         st;

	id_hex[0] = '\0';
	langs[0]  = '\0';
	if (p == NULL) {
		p = &empty;
	}
	if ((st = personal_validate(p, NULL, 0)) != HV_OK) {
		goto out;
	}
	personal_texts(p, langs, text);
	if ((st = crypto_random(id, sizeof(id))) != HV_OK ||
	    (st = crypto_random(dk, sizeof(dk))) != HV_OK ||
	    (st = vault_generation_txn(cs, txn, &gen)) != HV_OK ||
	    (st = vault_wrap(cs, gen, id, dk, wrapped)) != HV_OK) {
		goto out;
	}
	if ((st = store_get(txn, cs->cs_subjects, id, sizeof(id), NULL, NULL)) != HV_NOT_FOUND) {
		st = st == HV_OK ? HV_INTERNAL : st; /* 2^-128: the RNG is broken */
		goto out;
	}
	if ((st = personal_put(cs, txn, id, dk, text)) != HV_OK) {
		goto out;
	}
	rec.id.data          = id;
	rec.id.len           = sizeof(id);
	rec.minor            = minor;
	rec.created_by       = (char *) caller->org_id;
	rec.created_at_ms    = consent_now(cs);
	rec.kek_generation   = gen;
	rec.wrapped_key.data = wrapped;
	rec.wrapped_key.len  = sizeof(wrapped);
	if ((st = store_put_msg(txn, cs->cs_subjects, id, sizeof(id), &rec.base)) != HV_OK) {
		goto out;
	}
	consent_id_format(id, id_hex);
	audit_entry_fill(&e, caller, M_CONSENT "CreateSubject", id_hex, "", rec.created_at_ms);
	st = audit_append(cs->cs_audit, txn, &e);
out:
	if (st != HV_OK) {
		id_hex[0] = '\0';
	}
	crypto_wipe(dk, sizeof(dk));
	crypto_wipe(langs, sizeof(langs));
	return (st);
}

/* ---- read ----------------------------------------------------------------------------- */

/* A provider's refusal: no consent shares the subject with it. */
static hv_status
no_share(const rpc_caller *caller, const char *hex, char *err, size_t errsz)
{
	return (hv_fail(err, errsz, HV_PERMISSION_DENIED,
	    "no consent of subject %s shares personal data with %s", hex, caller->org_id));
}

/* The categories caller may see of a subject: all for its holder (and the operator), for a
 * provider that accepted her referral (accepting) those that consents in force share with it
 * (naming it, or the accepting provider), none for anyone else (PERMISSION_DENIED). *purpose
 * is the audit entry's. */
static hv_status
shown_categories(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const Haven__Consent__V1__SubjectRecord *rec, const uint8_t sid[CONSENT_ID_LEN],
    const char *hex, bool accepting, int64_t now, unsigned *mask, const char **purpose, char *err,
    size_t errsz)
{
	static const int cats[] = { HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY,
		HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT,
		HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER };
	consent_decision d      = { 0 };
	hv_status        st;

	*mask    = 0;
	*purpose = "";
	if (caller->role == RPC_ROLE_OPERATOR || caller->role == RPC_ROLE_REFERRER) {
		if ((st = consent_may_act(caller, consent_holder(rec), hex, true, err, errsz)) ==
		    HV_OK) {
			*mask = PERSONAL_ALL_CATEGORIES;
		}
		return (st);
	}
	if (caller->role != RPC_ROLE_PROVIDER) {
		return (hv_fail(err, errsz, HV_PERMISSION_DENIED,
		    "role %s may not see personal data", rpc_role_name(caller->role)));
	}
	/* A provider sees a person only while it has accepted her referral (docs/authority.md,
	 * "accepted"); a consent that names it decides what it sees then, not whether: else a
	 * provider named once could read her for as long as the consent runs, after the
	 * placement ended or before any offer. Refused in the words of no consent, so that the
	 * answer does not tell whether she exists. */
	if (!accepting) {
		return (no_share(caller, hex, err, errsz));
	}
	/* How to reach her (her contact, her guardian's) is for a provider that consent lets
	 * contact her (purpose contact); the rest is shared with it (share-with-provider). */
	for (size_t c = 0; c < sizeof(cats) / sizeof(cats[0]); c++) {
		int p = cats[c] == HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT
		    ? HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT
		    : HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER;
		if ((st = consent_decide(cs, txn, sid, hex, p, caller->org_id, accepting, cats[c],
		         now, &d)) != HV_OK) {
			return (st);
		}
		*mask |= d.allowed ? 1u << cats[c] : 0;
	}
	*purpose = (*mask & (1u << HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT)) != 0
	    ? "share-with-provider,contact"
	    : "share-with-provider";
	if (*mask == 0) {
		return (no_share(caller, hex, err, errsz));
	}
	return (HV_OK);
}

/* The subject a caller reads the personal data of. A provider is refused a subject that does
 * not exist or was erased in the words of one whose consent shares nothing with it, everyone
 * else by the holder's rule (consent_subject_acting): no answer tells whether an id names a
 * person or whether she was erased. */
static hv_status
subject_for_reading(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const uint8_t sid[CONSENT_ID_LEN], const char *hex, Haven__Consent__V1__SubjectRecord **rec,
    char *err, size_t errsz)
{
	hv_status st;

	if (caller->role != RPC_ROLE_PROVIDER) {
		return (consent_subject_acting(cs, txn, caller, sid, true, false, rec, err, errsz));
	}
	st = consent_subject_get(cs, txn, sid, false, rec, err, errsz);
	return (st == HV_NOT_FOUND ? no_share(caller, hex, err, errsz) : st);
}

/* Decrypts the fields of the categories in mask into out (the others stay NULL). DATA_LOSS
 * with a message when anything does not decrypt. */
static hv_status
personal_open(consent_service *cs, store_txn *txn, const Haven__Consent__V1__SubjectRecord *rec,
    const uint8_t sid[CONSENT_ID_LEN], const char *hex, unsigned mask, plain *out, char *err,
    size_t errsz)
{
	Haven__Consent__V1__SealedPersonal *sp = NULL;
	uint8_t                             dk[DATA_KEY_LEN];
	const void                         *v;
	size_t                              vl;
	hv_status                           st;

	if ((st = data_key(cs, rec, sid, hex, dk, err, errsz)) != HV_OK) {
		return (st);
	}
	if ((st = store_get(txn, cs->cs_personal, sid, CONSENT_ID_LEN, &v, &vl)) != HV_OK) {
		st = st == HV_NOT_FOUND ? HV_OK : st; /* nothing given */
		goto out;
	}
	if ((sp = haven__consent__v1__sealed_personal__unpack(NULL, vl, v)) == NULL) {
		st = HV_DATA_LOSS;
		goto out;
	}
	for (size_t i = 0; i < sp->n_fields && st == HV_OK; i++) {
		unsigned f = sp->fields[i]->field;
		if (f < 1 || f > PERSONAL_FIELDS || out->pl_field[f] != NULL) {
			st = HV_DATA_LOSS;
		} else if ((mask & (1u << personal_field_category(f))) != 0) {
			st = vault_unseal(dk, sid, sp->fields[i], &out->pl_field[f]);
		}
	}
	out->pl_shown = mask;
out:
	crypto_wipe(dk, sizeof(dk));
	if (sp != NULL) {
		haven__consent__v1__sealed_personal__free_unpacked(sp, NULL);
	}
	if (st == HV_DATA_LOSS) {
		(void) hv_fail(err, errsz, HV_DATA_LOSS,
		    "personal data of subject %s does not decrypt (wrong key or altered)", hex);
	}
	return (st);
}

hv_status
subject_read_personal(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const char *method, const char *hex, bool accepting, plain *out,
    Haven__Consent__V1__SubjectRecord **rec, char *err, size_t errsz)
{
	uint8_t     sid[CONSENT_ID_LEN];
	const char *purpose = "";
	unsigned    mask    = 0;
	int64_t     now     = consent_now(cs);
	audit_entry e;
	hv_status   st;

	plain_free(out);
	*rec = NULL;
	if (consent_id_parse(hex, sid) != 0) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if ((st = subject_for_reading(cs, txn, caller, sid, hex, rec, err, errsz)) != HV_OK ||
	    (st = shown_categories(cs, txn, caller, *rec, sid, hex, accepting, now, &mask, &purpose,
	         err, errsz)) != HV_OK ||
	    (st = personal_open(cs, txn, *rec, sid, hex, mask, out, err, errsz)) != HV_OK) {
		goto out;
	}
	audit_entry_fill(&e, caller, method, hex, purpose, now);
	st = audit_append(cs->cs_audit, txn, &e);
out:
	if (st != HV_OK) {
		plain_free(out);
		if (*rec != NULL) {
			protobuf_c_message_free_unpacked(&(*rec)->base, NULL);
			*rec = NULL;
		}
	}
	return (st);
}

hv_status
consent_read_personal_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const char *method, const char *subject, bool recipient_is_accepting_provider,
    Haven__Consent__V1__PersonalData **outp)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	Haven__Consent__V1__PersonalData  *p   = NULL;
	plain                              pl;
	hv_status                          st;

	*outp = NULL;
	memset(&pl, 0, sizeof(pl));
	if (caller->role != RPC_ROLE_PROVIDER) {
		return (HV_PERMISSION_DENIED); /* the provider read path */
	}
	if ((st = subject_read_personal(cs, txn, caller, method, subject,
	         recipient_is_accepting_provider, &pl, &rec, NULL, 0)) != HV_OK) {
		return (st);
	}
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	st = HV_RESOURCE_EXHAUSTED;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		goto out;
	}
	haven__consent__v1__personal_data__init(p);
	if ((pl.pl_field[1] != NULL && (p->name = strdup(pl.pl_field[1])) == NULL) ||
	    (pl.pl_field[2] != NULL && (p->date_of_birth = strdup(pl.pl_field[2])) == NULL) ||
	    (pl.pl_field[3] != NULL && (p->nationality = strdup(pl.pl_field[3])) == NULL) ||
	    (pl.pl_field[5] != NULL && (p->contact = strdup(pl.pl_field[5])) == NULL) ||
	    (pl.pl_field[6] != NULL && (p->notes = strdup(pl.pl_field[6])) == NULL) ||
	    (pl.pl_field[7] != NULL && (p->guardian = strdup(pl.pl_field[7])) == NULL) ||
	    langs_split(pl.pl_field[4], &p->languages, &p->n_languages, personal_heap_dup,
	        personal_heap_alloc, NULL) != 0) {
		goto out;
	}
	*outp = p;
	p     = NULL;
	st    = HV_OK;
out:
	consent_personal_free(p);
	plain_free(&pl);
	return (st);
}

/* ---- update --------------------------------------------------------------------------- */

/* The fields of a subject's personal data after an update: the masked ones from the request
 * (texts), the others as they were (old, decrypted). */
static hv_status
update_personal(consent_service *cs, store_txn *txn, const Haven__Consent__V1__SubjectRecord *rec,
    const uint8_t sid[CONSENT_ID_LEN], const char *hex, const char *const texts[], uint32_t fields,
    char *err, size_t errsz)
{
	const char *text[PERSONAL_FIELDS + 1] = { NULL };
	plain       old;
	uint8_t     dk[DATA_KEY_LEN];
	hv_status   st;

	memset(&old, 0, sizeof(old));
	if ((st = personal_open(cs, txn, rec, sid, hex, PERSONAL_ALL_CATEGORIES, &old, err,
	         errsz)) != HV_OK ||
	    (st = data_key(cs, rec, sid, hex, dk, err, errsz)) != HV_OK) {
		goto out;
	}
	for (unsigned f = 1; f <= PERSONAL_FIELDS; f++) {
		text[f] = (fields & (1u << f)) != 0 ? texts[f] : old.pl_field[f];
	}
	/* Under the subject's own data key: the texts other services sealed under it stay
	 * readable, and erasure still shreds everything with the one key. */
	st = personal_put(cs, txn, sid, dk, text);
	crypto_wipe(dk, sizeof(dk));
out:
	plain_free(&old);
	return (st);
}

hv_status
subject_update_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const char *method, const subject_change *ch, Haven__Consent__V1__SubjectRecord **out,
    char *err, size_t errsz)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	const char                        *text[PERSONAL_FIELDS + 1];
	char                               langs[LANGS_JOINED_MAX + 1] = "";
	char                               names[AUDIT_PURPOSE_MAX];
	uint8_t                            sid[CONSENT_ID_LEN];
	audit_entry                        e;
	size_t                             o = 0;
	hv_status                          st;

	*out = NULL;
	if (consent_id_parse(ch->sc_id, sid) != 0) {
		return (hv_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	/* The holder only: an operator changes the subjects it recorded itself, no other. */
	if ((st = consent_subject_acting(cs, txn, caller, sid, false, false, &rec, err, errsz)) !=
	    HV_OK) {
		return (st);
	}
	personal_texts(ch->sc_personal, langs, text);
	if ((ch->sc_fields & ~(1u << SUBJECT_FIELD_MINOR)) != 0 &&
	    (st = update_personal(cs, txn, rec, sid, ch->sc_id, text, ch->sc_fields, err, errsz)) !=
	        HV_OK) {
		goto out;
	}
	if ((ch->sc_fields & (1u << SUBJECT_FIELD_MINOR)) != 0) {
		rec->minor = ch->sc_minor;
		if ((st = store_put_msg(txn, cs->cs_subjects, sid, sizeof(sid), &rec->base)) !=
		    HV_OK) {
			goto out;
		}
	}
	/* The audit entry names the fields changed, never a value. */
	names[0] = '\0';
	for (unsigned f = 1; f <= SUBJECT_FIELD_MINOR && o < sizeof(names); f++) {
		if ((ch->sc_fields & (1u << f)) != 0) {
			o += (size_t) snprintf(names + o, sizeof(names) - o, "%s%s",
			    o > 0 ? "," : "",
			    f == SUBJECT_FIELD_MINOR ? "minor" : vault_field_name(f));
		}
	}
	audit_entry_fill(&e, caller, method, ch->sc_id, names, consent_now(cs));
	if ((st = audit_append(cs->cs_audit, txn, &e)) == HV_OK) {
		*out = rec;
		rec  = NULL;
	}
out:
	crypto_wipe(langs, sizeof(langs));
	if (rec != NULL) {
		protobuf_c_message_free_unpacked(&rec->base, NULL);
	}
	return (st);
}

/* ---- erase ---------------------------------------------------------------------------- */

typedef struct erase_job {
	consent_service  *ej_cs;
	const rpc_caller *ej_caller;
	const char       *ej_method;
	const char       *ej_id;
	int64_t           ej_now;
	char              ej_withdrawn[CONSENTS_PER_SUBJECT_MAX][CONSENT_ID_HEX];
	size_t            ej_n;
	char              ej_err[CONSENT_MSG_MAX];
} erase_job;

static hv_status
erase_fn(store_txn *txn, void *arg)
{
	erase_job                         *j   = arg;
	consent_service                   *cs  = j->ej_cs;
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	Haven__Consent__V1__SubjectRecord  t   = HAVEN__CONSENT__V1__SUBJECT_RECORD__INIT;
	uint8_t                            sid[CONSENT_ID_LEN];
	audit_entry                        e;
	hv_status                          st;

	j->ej_n = 0;
	if (consent_id_parse(j->ej_id, sid) != 0) {
		return (hv_fail(j->ej_err, sizeof(j->ej_err), HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	/* Erasure: the holder, the operator, or an admin (a request to the node's operator). */
	st = j->ej_caller->role == RPC_ROLE_ADMIN
	    ? consent_subject_get(cs, txn, sid, false, &rec, j->ej_err, sizeof(j->ej_err))
	    : consent_subject_acting(cs, txn, j->ej_caller, sid, true, false, &rec, j->ej_err,
	          sizeof(j->ej_err));
	if (st != HV_OK) {
		return (st);
	}
	/* The sealed fields and the wrapped data key go; a tombstone stays. */
	st = store_del(txn, cs->cs_personal, sid, sizeof(sid));
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	t.id           = rec->id;
	t.erased_at_ms = j->ej_now;
	t.erased_by    = (char *) j->ej_caller->org_id;
	if ((st = store_put_msg(txn, cs->cs_subjects, sid, sizeof(sid), &t.base)) != HV_OK ||
	    (st = consent_changed(cs, txn, sid)) != HV_OK ||
	    (st = consent_withdraw_all_txn(cs, txn, sid, j->ej_now, j->ej_withdrawn, &j->ej_n)) !=
	        HV_OK) {
		goto out;
	}
	/* Erased by another (retention, the operator, an admin): the holder hears that one of
	 * its subjects is gone, in this transaction, without which one. The provider that has
	 * her hears it from referral (ref_end_for_consent). */
	if (strcmp(consent_holder(rec), j->ej_caller->org_id) != 0 &&
	    consent_holder(rec)[0] != '\0') {
		alerts_event ev = { .ae_kind = ALERT(SUBJECT_ERASED),
			.ae_orgs             = { consent_holder(rec) },
			.ae_norgs            = 1 };
		if ((st = alerts_enqueue(cs->cs_alerts, txn, &ev)) != HV_OK) {
			goto out;
		}
	}
	audit_entry_fill(&e, j->ej_caller, j->ej_method, j->ej_id, "", j->ej_now);
	st = audit_append(cs->cs_audit, txn, &e);
out:
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

/* Erases (one transaction), publishes the withdrawals, lets the service that keeps the
 * subject's referrals end them (consent_options.subject_erased), rotates the KEK (unless the
 * caller rotates it once after a batch: consent_erase_subject_deferred). */
static hv_status
erase(consent_service *cs, erase_job *j, uint64_t *gen, bool rotate)
{
	hv_status st;

	j->ej_now = consent_now(cs);
	if ((st = store_write(cs->cs_store, erase_fn, j)) != HV_OK) {
		if (j->ej_err[0] == '\0') {
			snprintf(j->ej_err, sizeof(j->ej_err), "subject %.40s could not be erased",
			    j->ej_id);
		}
		return (consent_failed(cs, j->ej_caller, j->ej_method, j->ej_id, "", st));
	}
	log_info("consent: subject %s erased; %zu consents withdrawn", j->ej_id, j->ej_n);
	for (size_t i = 0; i < j->ej_n; i++) {
		consent_publish_withdrawn(cs, j->ej_withdrawn[i], j->ej_id, j->ej_now, true, false);
	}
	if (j->ej_n == 0) {
		/* No consent was in force; a referral of hers may still be open (routing refuses
		 * her, but an offer made earlier waits): the event ends it in another process. */
		consent_publish_withdrawn(cs, "", j->ej_id, j->ej_now, true, false);
	}
	/* In this process: her open referrals end before the caller hears of the erasure. */
	if (cs->cs_erased != NULL &&
	    (st = cs->cs_erased(cs->cs_erased_arg, j->ej_id, false)) != HV_OK) {
		log_error("consent: subject %s erased, but her open referrals did not end: %s",
		    j->ej_id, hv_status_name(st));
	}
	/* The wrapped data key may linger in LMDB's free pages and in copies of the store:
	 * the KEK that wrapped it must go too. */
	if (rotate && (st = vault_rotate(cs, 0, gen, NULL)) != HV_OK) {
		snprintf(j->ej_err, sizeof(j->ej_err),
		    "subject %s was erased, but the key rotation that makes it final failed; run "
		    "RotateKey",
		    j->ej_id);
	}
	return (st);
}

hv_status
subject_erase(consent_service *cs, const rpc_caller *caller, const char *method,
    const char *subject, bool rotate, subject_erased *out, char *err, size_t errsz)
{
	erase_job *j;
	uint64_t   gen = 0;
	hv_status  st;

	memset(out, 0, sizeof(*out));
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	j->ej_cs               = cs;
	j->ej_caller           = caller;
	j->ej_method           = method;
	j->ej_id               = subject;
	st                     = erase(cs, j, &gen, rotate);
	out->se_at_ms          = j->ej_now;
	out->se_withdrawn      = j->ej_n;
	out->se_kek_generation = gen;
	if (err != NULL && errsz > 0) {
		snprintf(err, errsz, "%s", j->ej_err);
	}
	free(j);
	return (st);
}

hv_status
consent_erase_subject(consent_service *cs, const rpc_caller *caller, const char *subject,
    int64_t *erased_at_ms, uint64_t *kek_generation)
{
	subject_erased e;
	hv_status      st;

	st = subject_erase(cs, caller, M_CONSENT "EraseSubject", subject, true, &e, NULL, 0);
	if (erased_at_ms != NULL) {
		*erased_at_ms = e.se_at_ms;
	}
	if (kek_generation != NULL) {
		*kek_generation = e.se_kek_generation;
	}
	return (st);
}

hv_status
consent_erase_subject_deferred(consent_service *cs, const rpc_caller *caller, const char *subject,
    int64_t *erased_at_ms)
{
	subject_erased e;
	hv_status      st;

	st = subject_erase(cs, caller, M_CONSENT "EraseSubject", subject, false, &e, NULL, 0);
	if (erased_at_ms != NULL) {
		*erased_at_ms = e.se_at_ms;
	}
	return (st);
}

/* ---- for the referral service --------------------------------------------------------- */

hv_status
consent_subject_minor_txn(consent_service *cs, store_txn *txn, const char *subject, bool *minor)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	uint8_t                            sid[CONSENT_ID_LEN];
	hv_status                          st;

	if (consent_id_parse(subject, sid) != 0) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = consent_subject_get(cs, txn, sid, false, &rec, NULL, 0)) != HV_OK) {
		return (st);
	}
	*minor = rec->minor;
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (HV_OK);
}

hv_status
consent_ref_minor(void *arg, store_txn *txn, const char *subject, bool *minor)
{
	*minor = false;
	return (consent_subject_minor_txn(arg, txn, subject, minor));
}

hv_status
consent_ref_holds(void *arg, store_txn *txn, const char *subject, const char *org_id, bool *holds)
{
	Haven__Consent__V1__SubjectRecord *rec = NULL;
	uint8_t                            sid[CONSENT_ID_LEN];
	hv_status                          st;

	*holds = true;
	if (consent_id_parse(subject, sid) != 0) {
		return (HV_OK); /* not a subject id: no holder */
	}
	st = consent_subject_get(arg, txn, sid, true, &rec, NULL, 0);
	if (st == HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st == HV_OK) {
		*holds = rec->erased_at_ms != 0 || strcmp(consent_holder(rec), org_id) == 0;
		protobuf_c_message_free_unpacked(&rec->base, NULL);
	}
	return (st);
}

hv_status
consent_ref_erase(void *arg, const char *subject)
{
	static const rpc_caller node = { .role = RPC_ROLE_OPERATOR,
		.org_id                        = "",
		.transport                     = RPC_TRANSPORT_INPROC };

	return (consent_erase_subject_deferred(arg, &node, subject, NULL));
}

hv_status
consent_ref_erase_done(void *arg)
{
	return (consent_rotate_kek(arg, NULL, NULL));
}
