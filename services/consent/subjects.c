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
#include "consent_internal.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_BYTES 200
#define NATIONALITY_MAX 64
#define LANGUAGES_MAX 16
#define LANGUAGE_TAG_MAX 35
#define CONTACT_MAX 512
#define NOTES_MAX 4096
#define N_FIELDS 6 /* PersonalData fields 1..6 */
#define LANGS_JOINED_MAX (LANGUAGES_MAX * (LANGUAGE_TAG_MAX + 1))

/* Which category each PersonalData field belongs to (index: field number). */
static const int field_category[N_FIELDS + 1] = {
	[1] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, /* name */
	[2] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, /* date_of_birth */
	[3] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, /* nationality */
	[4] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY, /* languages */
	[5] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT,  /* contact */
	[6] = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER,    /* notes */
};

#define ALL_CATEGORIES                                                                     \
	((1u << HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY) |                              \
	    (1u << HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT) |                            \
	    (1u << HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER))

/* ---- validation ----------------------------------------------------------------------- */

/*
 * Valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) of at most max
 * bytes, without control characters (C0, DEL, C1); multiline allows newline and tab.
 */
static bool
text_ok(const char *s, size_t max, bool multiline)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t               n = strlen(s);

	if (n > max) {
		return (false);
	}
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t   len;
		if (p[i] < 0x80) {
			if ((p[i] < 0x20 && !(multiline && (p[i] == '\n' || p[i] == '\t'))) ||
			    p[i] == 0x7f) {
				return (false);
			}
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			len = 2;
			cp  = p[i] & 0x1f;
		} else if ((p[i] & 0xf0) == 0xe0) {
			len = 3;
			cp  = p[i] & 0x0f;
		} else if ((p[i] & 0xf8) == 0xf0) {
			len = 4;
			cp  = p[i] & 0x07;
		} else {
			return (false);
		}
		if (n - i < len) {
			return (false);
		}
		for (size_t j = 1; j < len; j++) {
			if ((p[i + j] & 0xc0) != 0x80) {
				return (false);
			}
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
		    (cp >= 0x80 && cp <= 0x9f)) {
			return (false);
		}
		i += len;
	}
	return (true);
}

/* YYYY-MM-DD, a real day between 1900 and 2199. */
static bool
date_ok(const char *s)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int              y, m, d;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') {
		return (false);
	}
	for (int i = 0; i < 10; i++) {
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) {
			return (false);
		}
	}
	y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	m = (s[5] - '0') * 10 + (s[6] - '0');
	d = (s[8] - '0') * 10 + (s[9] - '0');
	if (y < 1900 || y > 2199 || m < 1 || m > 12 || d < 1) {
		return (false);
	}
	if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) {
		return (d <= 29);
	}
	return (d <= days[m - 1]);
}

bool
consent_language_ok(const char *s)
{
	size_t n = strlen(s), sub = 0, subtag = 0;

	if (n < 2 || n > LANGUAGE_TAG_MAX) {
		return (false);
	}
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];
		if (c == '-' || c == '\0') {
			if (sub == 0 || sub > 8 || (subtag == 0 && sub < 2)) {
				return (false);
			}
			subtag++;
			sub = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (subtag > 0 && c >= '0' && c <= '9'))) {
			return (false);
		}
		sub++;
	}
	return (true);
}

static hv_status
personal_validate(const Haven__Consent__V1__PersonalData *p, char *err, size_t errsz)
{
	if (!text_ok(p->name, NAME_MAX_BYTES, false)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "name must be at most %d bytes of UTF-8 text without control characters",
		    NAME_MAX_BYTES));
	}
	if (p->date_of_birth[0] != '\0' && !date_ok(p->date_of_birth)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "date_of_birth must be a date as YYYY-MM-DD"));
	}
	if (!text_ok(p->nationality, NATIONALITY_MAX, false)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "nationality must be at most %d bytes of UTF-8 text without control characters",
		    NATIONALITY_MAX));
	}
	if (p->n_languages > LANGUAGES_MAX) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "languages: at most %d, not %zu", LANGUAGES_MAX, p->n_languages));
	}
	for (size_t i = 0; i < p->n_languages; i++) {
		if (!consent_language_ok(p->languages[i])) {
			return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
			    "languages[%zu] must be a BCP 47 tag of at most %d characters", i,
			    LANGUAGE_TAG_MAX));
		}
	}
	if (!text_ok(p->contact, CONTACT_MAX, false)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "contact must be at most %d bytes of UTF-8 text without control characters",
		    CONTACT_MAX));
	}
	if (!text_ok(p->notes, NOTES_MAX, true)) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "notes must be at most %d bytes of UTF-8 text without control characters "
		    "but newline and tab",
		    NOTES_MAX));
	}
	return (HV_OK);
}

/* ---- the personal data of a reply ----------------------------------------------------- */

/* Decrypted fields (index: field number), malloc'd; and the categories they cover. */
typedef struct plain {
	char    *pl_field[N_FIELDS + 1];
	unsigned pl_shown;
} plain;

static void
plain_free(plain *p)
{
	for (int i = 0; i <= N_FIELDS; i++) {
		if (p->pl_field[i] != NULL) {
			crypto_wipe(p->pl_field[i], strlen(p->pl_field[i]));
			free(p->pl_field[i]);
			p->pl_field[i] = NULL;
		}
	}
	p->pl_shown = 0;
}

/* Splits "nl,ro" into *n strings made by dup (malloc or the call's arena); -1 out of memory. */
static int
langs_split(const char *joined, char ***out, size_t *n, char *(*dup)(void *, const char *),
    void *(*alloc)(void *, size_t), void *arg)
{
	char   buf[LANGS_JOINED_MAX + 1];
	char  *save = NULL, *tok;
	size_t count = 0;

	*out = NULL;
	*n   = 0;
	if (joined == NULL || joined[0] == '\0') {
		return (0);
	}
	snprintf(buf, sizeof(buf), "%s", joined);
	for (const char *c = joined; *c != '\0'; c++) {
		count += *c == ',';
	}
	if ((*out = alloc(arg, (count + 1) * sizeof(char *))) == NULL) {
		return (-1);
	}
	for (tok = strtok_r(buf, ",", &save); tok != NULL && *n <= count;
	     tok = strtok_r(NULL, ",", &save)) {
		if (((*out)[*n] = dup(arg, tok)) == NULL) {
			return (-1);
		}
		(*n)++;
	}
	return (0);
}

static char *
heap_dup(void *arg, const char *s)
{
	(void) arg;
	return (strdup(s));
}

static void *
heap_alloc(void *arg, size_t n)
{
	(void) arg;
	return (calloc(1, n));
}

static char *
arena_dup(void *arg, const char *s)
{
	return (rpc_call_strdup(arg, s));
}

static void *
arena_alloc(void *arg, size_t n)
{
	return (rpc_call_alloc(arg, n));
}

/* ---- create --------------------------------------------------------------------------- */

hv_status
consent_create_subject_txn(consent_service *cs, store_txn *txn, const rpc_caller *caller,
    const Haven__Consent__V1__PersonalData *p, bool minor, char id_hex[CONSENT_ID_HEX])
{
	Haven__Consent__V1__PersonalData   empty = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__SealedField    fields[N_FIELDS];
	Haven__Consent__V1__SealedField   *fp[N_FIELDS];
	Haven__Consent__V1__SealedPersonal sp  = HAVEN__CONSENT__V1__SEALED_PERSONAL__INIT;
	Haven__Consent__V1__SubjectRecord  rec = HAVEN__CONSENT__V1__SUBJECT_RECORD__INIT;
	const char                        *text[N_FIELDS + 1] = { NULL };
	char                               langs[LANGS_JOINED_MAX + 1];
	uint8_t                            id[CONSENT_ID_LEN];
	uint8_t                            dk[DATA_KEY_LEN];
	uint8_t                            wrapped[WRAPPED_LEN];
	uint8_t                           *buf = NULL;
	size_t                             nf = 0, len, o = 0;
	uint64_t                           gen;
	audit_entry                        e;
	hv_status                          st;

	id_hex[0] = '\0';
	if (p == NULL) {
		p = &empty;
	}
	if ((st = personal_validate(p, NULL, 0)) != HV_OK) {
		goto out;
	}
	langs[0] = '\0';
	for (size_t i = 0; i < p->n_languages; i++) {
		o += (size_t) snprintf(langs + o, sizeof(langs) - o, "%s%s", i > 0 ? "," : "",
		    p->languages[i]);
	}
	text[1] = p->name;
	text[2] = p->date_of_birth;
	text[3] = p->nationality;
	text[4] = langs;
	text[5] = p->contact;
	text[6] = p->notes;
	if ((st = crypto_random(id, sizeof(id))) != HV_OK ||
	    (st = crypto_random(dk, sizeof(dk))) != HV_OK ||
	    (st = vault_generation_txn(cs, txn, &gen)) != HV_OK ||
	    (st = vault_wrap(cs, gen, id, dk, wrapped)) != HV_OK) {
		goto out;
	}
	for (unsigned f = 1; f <= N_FIELDS; f++) {
		if (text[f][0] == '\0') {
			continue; /* not given: nothing stored, not even its length */
		}
		if ((st = vault_seal(dk, id, f, text[f], &fields[nf])) != HV_OK) {
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
	if ((st = store_put_new(txn, cs->cs_personal, id, sizeof(id), buf, len)) != HV_OK) {
		st = st == HV_ALREADY_EXISTS ? HV_INTERNAL : st; /* 2^-128: the RNG is broken */
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
	consent_audit_fill(&e, caller, M_CONSENT "CreateSubject", id_hex, "", rec.created_at_ms);
	st = audit_append(cs->cs_audit, txn, &e);
out:
	if (st != HV_OK) {
		id_hex[0] = '\0';
	}
	crypto_wipe(dk, sizeof(dk));
	crypto_wipe(langs, sizeof(langs));
	for (size_t i = 0; i < nf; i++) {
		vault_field_free(&fields[i]);
	}
	free(buf);
	return (st);
}

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

	return (consent_create_subject_txn(j->cj_cs, txn, j->cj_caller, j->cj_personal,
	    j->cj_minor, j->cj_id));
}

HANDLER(consent_h_create_subject)
{
	consent_service                                *cs = svc;
	const Haven__Consent__V1__CreateSubjectRequest *in = (const void *) req;
	Haven__Consent__V1__CreateSubjectResponse      *out;
	create_job                                      j = { 0 };
	char                                            err[CONSENT_MSG_MAX];
	hv_status                                       st;

	if (in->personal != NULL && (st = personal_validate(in->personal, err, sizeof(err))) != HV_OK) {
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

/* ---- read ----------------------------------------------------------------------------- */

/*
 * Reads a subject's personal data for caller: every category for the node's operator, an
 * admin and the referrer that created the subject; for a provider the categories consents in
 * force share with it; nothing for anyone else. Audited. *rec receives the subject's record
 * (the caller frees it).
 */
static hv_status
read_personal(consent_service *cs, store_txn *txn, const rpc_caller *caller, const char *method,
    const char *hex, bool accepting, plain *out, Haven__Consent__V1__SubjectRecord **rec,
    char *err, size_t errsz)
{
	Haven__Consent__V1__SealedPersonal *sp = NULL;
	uint8_t                             sid[CONSENT_ID_LEN];
	uint8_t                             dk[DATA_KEY_LEN];
	const char                         *purpose = "";
	const void                         *v;
	size_t                              vl;
	unsigned                            mask = 0;
	int64_t                             now  = consent_now(cs);
	audit_entry                         e;
	hv_status                           st;

	plain_free(out);
	*rec = NULL;
	if (consent_id_parse(hex, sid) != 0) {
		return (consent_fail(err, errsz, HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if ((st = consent_subject_get(cs, txn, sid, false, rec, err, errsz)) != HV_OK) {
		goto out;
	}
	switch (caller->role) {
	case RPC_ROLE_OPERATOR:
	case RPC_ROLE_REFERRER:
		if ((st = consent_may_act(caller, consent_holder(*rec), hex, true, err, errsz)) !=
		    HV_OK) {
			goto out;
		}
		mask = ALL_CATEGORIES;
		break;
	case RPC_ROLE_PROVIDER: {
		static const int cats[] = { HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY,
			HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT,
			HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER };
		consent_decision d = { 0 };

		purpose = consent_purpose_name(HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER);
		for (size_t c = 0; c < sizeof(cats) / sizeof(cats[0]); c++) {
			int cat = cats[c];
			if ((st = consent_decide(cs, txn, sid, hex,
			         HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER, caller->org_id,
			         accepting, cat, now, &d)) != HV_OK) {
				goto out;
			}
			if (d.allowed) {
				mask |= 1u << cat;
			}
		}
		if (mask == 0) {
			st = consent_fail(err, errsz, HV_PERMISSION_DENIED,
			    "no consent of subject %s shares personal data with %s", hex, caller->org_id);
			goto out;
		}
		break;
	}
	default:
		st = consent_fail(err, errsz, HV_PERMISSION_DENIED,
		    "role %s may not see personal data", rpc_role_name(caller->role));
		goto out;
	}

	if ((st = vault_unwrap(cs, (*rec)->kek_generation, sid, (*rec)->wrapped_key.data,
	         (*rec)->wrapped_key.len, dk)) != HV_OK) {
		goto undecryptable;
	}
	st = store_get(txn, cs->cs_personal, sid, sizeof(sid), &v, &vl);
	if (st == HV_OK) {
		if ((sp = haven__consent__v1__sealed_personal__unpack(NULL, vl, v)) == NULL) {
			st = HV_DATA_LOSS;
			goto undecryptable;
		}
		for (size_t i = 0; i < sp->n_fields; i++) {
			unsigned f = sp->fields[i]->field;
			if (f < 1 || f > N_FIELDS || out->pl_field[f] != NULL) {
				st = HV_DATA_LOSS;
				goto undecryptable;
			}
			if ((mask & (1u << field_category[f])) == 0) {
				continue;
			}
			if ((st = vault_unseal(dk, sid, sp->fields[i], &out->pl_field[f])) != HV_OK) {
				goto undecryptable;
			}
		}
	} else if (st != HV_NOT_FOUND) {
		goto out;
	}
	out->pl_shown = mask;
	consent_audit_fill(&e, caller, method, hex, purpose, now);
	st = audit_append(cs->cs_audit, txn, &e);
	goto out;
undecryptable:
	if (st == HV_DATA_LOSS) {
		(void) consent_fail(err, errsz, HV_DATA_LOSS,
		    "personal data of subject %s does not decrypt (wrong key or altered)", hex);
	}
out:
	crypto_wipe(dk, sizeof(dk));
	if (sp != NULL) {
		haven__consent__v1__sealed_personal__free_unpacked(sp, NULL);
	}
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
	if ((st = read_personal(cs, txn, caller, method, subject, recipient_is_accepting_provider,
	         &pl, &rec, NULL, 0)) != HV_OK) {
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
	    langs_split(pl.pl_field[4], &p->languages, &p->n_languages, heap_dup, heap_alloc,
	        NULL) != 0) {
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

static void
str_free(char *s)
{
	if (s != NULL && s != protobuf_c_empty_string) {
		crypto_wipe(s, strlen(s));
		free(s);
	}
}

void
consent_personal_free(Haven__Consent__V1__PersonalData *p)
{
	if (p == NULL) {
		return;
	}
	str_free(p->name);
	str_free(p->date_of_birth);
	str_free(p->nationality);
	str_free(p->contact);
	str_free(p->notes);
	for (size_t i = 0; p->languages != NULL && i < p->n_languages; i++) {
		str_free(p->languages[i]);
	}
	free(p->languages);
	free(p);
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
	return (read_personal(j->sj_cs, txn, j->sj_caller, j->sj_method, j->sj_id, accepting,
	    &j->sj_plain, &j->sj_rec, j->sj_err, sizeof(j->sj_err)));
}

/* A copy of s in the call's arena, or the empty string for NULL. */
static char *
arena_str(rpc_call *call, const char *s)
{
	return (rpc_call_strdup(call, s != NULL ? s : ""));
}

HANDLER(consent_h_get_subject)
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
		if (st != HV_INVALID_ARGUMENT) {
			consent_audit_failure(cs, j.sj_caller, j.sj_method, in->id,
			    j.sj_caller->role == RPC_ROLE_PROVIDER ? "share-with-provider" : "", st);
		}
		return (rpc_call_error(call, st, "%s", j.sj_err[0] ? j.sj_err : hv_status_name(st)));
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL ||
	    (p = rpc_call_alloc(call, sizeof(*p))) == NULL) {
		goto out;
	}
	haven__consent__v1__subject__init(out);
	haven__consent__v1__personal_data__init(p);
	out->id            = arena_str(call, in->id);
	out->minor         = j.sj_rec->minor;
	out->created_by    = arena_str(call, j.sj_rec->created_by);
	out->holder        = arena_str(call, consent_holder(j.sj_rec));
	out->created_at_ms = j.sj_rec->created_at_ms;
	out->personal      = p;
	p->name            = arena_str(call, j.sj_plain.pl_field[1]);
	p->date_of_birth   = arena_str(call, j.sj_plain.pl_field[2]);
	p->nationality     = arena_str(call, j.sj_plain.pl_field[3]);
	p->contact         = arena_str(call, j.sj_plain.pl_field[5]);
	p->notes           = arena_str(call, j.sj_plain.pl_field[6]);
	if (out->id == NULL || out->created_by == NULL || out->holder == NULL || p->name == NULL ||
	    p->date_of_birth == NULL || p->nationality == NULL || p->contact == NULL ||
	    p->notes == NULL ||
	    langs_split(j.sj_plain.pl_field[4], &p->languages, &p->n_languages, arena_dup,
	        arena_alloc, call) != 0 ||
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
		return (consent_fail(j->ej_err, sizeof(j->ej_err), HV_INVALID_ARGUMENT,
		    "subject id must be 32 lower-case hex characters"));
	}
	if ((st = consent_subject_get(cs, txn, sid, false, &rec, j->ej_err, sizeof(j->ej_err))) !=
	    HV_OK) {
		return (st);
	}
	/* Erasure: the holder, the operator, or an admin (a request to the node's operator). */
	if (j->ej_caller->role != RPC_ROLE_ADMIN &&
	    (st = consent_may_act(j->ej_caller, consent_holder(rec), j->ej_id, true, j->ej_err,
	         sizeof(j->ej_err))) != HV_OK) {
		goto out;
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
	consent_audit_fill(&e, j->ej_caller, j->ej_method, j->ej_id, "", j->ej_now);
	st = audit_append(cs->cs_audit, txn, &e);
out:
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

/* Erases (one transaction), publishes the withdrawals, rotates the KEK (unless the caller
 * rotates it once after a batch: consent_erase_subject_deferred). */
static hv_status
erase(consent_service *cs, erase_job *j, uint64_t *gen, bool rotate)
{
	hv_status st;

	j->ej_now = consent_now(cs);
	if ((st = store_write(cs->cs_store, erase_fn, j)) != HV_OK) {
		if (st != HV_INVALID_ARGUMENT) {
			consent_audit_failure(cs, j->ej_caller, j->ej_method, j->ej_id, "", st);
		}
		if (j->ej_err[0] == '\0') {
			snprintf(j->ej_err, sizeof(j->ej_err), "subject %.40s could not be erased",
			    j->ej_id);
		}
		return (st);
	}
	log_info("consent: subject %s erased; %zu consents withdrawn", j->ej_id, j->ej_n);
	for (size_t i = 0; i < j->ej_n; i++) {
		consent_publish_withdrawn(cs, j->ej_withdrawn[i], j->ej_id, j->ej_now, true);
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

static hv_status
erase_subject(consent_service *cs, const rpc_caller *caller, const char *subject,
    int64_t *erased_at_ms, uint64_t *kek_generation, bool rotate)
{
	erase_job *j;
	uint64_t   gen = 0;
	hv_status  st;

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	j->ej_cs     = cs;
	j->ej_caller = caller;
	j->ej_method = M_CONSENT "EraseSubject";
	j->ej_id     = subject;
	st           = erase(cs, j, &gen, rotate);
	if (erased_at_ms != NULL) {
		*erased_at_ms = j->ej_now;
	}
	if (kek_generation != NULL) {
		*kek_generation = gen;
	}
	free(j);
	return (st);
}

hv_status
consent_erase_subject(consent_service *cs, const rpc_caller *caller, const char *subject,
    int64_t *erased_at_ms, uint64_t *kek_generation)
{
	return (erase_subject(cs, caller, subject, erased_at_ms, kek_generation, true));
}

hv_status
consent_erase_subject_deferred(consent_service *cs, const rpc_caller *caller,
    const char *subject, int64_t *erased_at_ms)
{
	return (erase_subject(cs, caller, subject, erased_at_ms, NULL, false));
}

HANDLER(consent_h_erase_subject)
{
	consent_service                               *cs = svc;
	const Haven__Consent__V1__EraseSubjectRequest *in = (const void *) req;
	Haven__Consent__V1__EraseSubjectResponse      *out;
	erase_job                                     *j;
	uint64_t                                       gen = 0;
	hv_status                                      st;

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	j->ej_cs     = cs;
	j->ej_caller = rpc_call_caller(call);
	j->ej_method = rpc_call_method(call);
	j->ej_id     = in->id;
	if ((st = erase(cs, j, &gen, true)) != HV_OK) {
		st = rpc_call_error(call, st, "%s", j->ej_err);
		goto out;
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	haven__consent__v1__erase_subject_response__init(out);
	out->erased_at_ms       = j->ej_now;
	out->consents_withdrawn = (uint32_t) j->ej_n;
	out->kek_generation     = gen;
	*reply                  = &out->base;
out:
	free(j);
	return (st);
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
	if ((st = consent_subject_get(cs, txn, sid, false, &rec, j->tj_err, sizeof(j->tj_err))) !=
	    HV_OK) {
		return (st);
	}
	old_holder = rec->holder;
	if ((st = consent_may_act(j->tj_caller, consent_holder(rec), j->tj_id, true, j->tj_err,
	         sizeof(j->tj_err))) != HV_OK) {
		goto out;
	}
	if (strcmp(consent_holder(rec), j->tj_to) == 0) {
		st = consent_fail(j->tj_err, sizeof(j->tj_err), HV_FAILED_PRECONDITION,
		    "organisation %s holds subject %s already", j->tj_to, j->tj_id);
		goto out;
	}
	rec->holder = (char *) j->tj_to;
	snprintf(purpose, sizeof(purpose), "hand-over to %s", j->tj_to);
	consent_audit_fill(&e, j->tj_caller, j->tj_method, j->tj_id, purpose, consent_now(cs));
	/* The view carries the holder: consent_changed stores it again and ends cached ones. */
	if ((st = store_put_msg(txn, cs->cs_subjects, sid, sizeof(sid), &rec->base)) != HV_OK ||
	    (st = consent_changed(cs, txn, sid)) != HV_OK ||
	    (st = audit_append(cs->cs_audit, txn, &e)) != HV_OK) {
		goto out;
	}
	j->tj_minor     = rec->minor;
	j->tj_created_at = rec->created_at_ms;
	snprintf(j->tj_created_by, sizeof(j->tj_created_by), "%s", rec->created_by);
out:
	rec->holder = old_holder; /* j->tj_to is not the record's to free */
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

HANDLER(consent_h_transfer_subject)
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
	if (cs->cs_org_role == NULL || cs->cs_org_role(cs->cs_org_arg, in->to_org) !=
	                                   RPC_ROLE_REFERRER) {
		return (rpc_call_error(call, HV_FAILED_PRECONDITION,
		    "to_org: %s is not an enabled referrer organisation of the directory", in->to_org));
	}
	memset(&j, 0, sizeof(j));
	j.tj_cs     = cs;
	j.tj_caller = rpc_call_caller(call);
	j.tj_method = rpc_call_method(call);
	j.tj_id     = in->id;
	j.tj_to     = in->to_org;
	if ((st = store_write(cs->cs_store, transfer_fn, &j)) != HV_OK) {
		consent_audit_failure(cs, j.tj_caller, j.tj_method, in->id, "hand-over", st);
		return (rpc_call_error(call, st, "%s", j.tj_err[0] ? j.tj_err : hv_status_name(st)));
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
