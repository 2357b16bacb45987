/*
 * consent_test.c - the consent library without RPC: the vault (sealing, wrapping, a wrong key
 * or an altered ciphertext is DATA_LOSS, never garbage), key files (made on first start,
 * refused when open to others, malformed or not the store's), KEK rotation (data stays
 * readable; a crash at any step is finished or rolled back), erasure (the name is nowhere in
 * the LMDB file, in the log or in the audit log, and after erasure not even a copy of the
 * store taken before can be decrypted: the key that wrapped it is gone), receipts (verify, and
 * fail after any change), minors, and Check's decisions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "haven/bytes.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/store.h"

#include "consent.h"
#include "consent_records.h"

/* Personal data with values that cannot occur in the file by chance. */
#define NAME        "Zuzanna Kowalczyk-Sentinelova"
#define DOB         "1987-03-14"
#define NATIONALITY "Moldovan-sentinel-nationality"
#define LANG        "ro-MD-x-sentinl"
#define CONTACT     "+31 6 SENTINEL-CONTACT 4242"
#define NOTES       "Found at the Sentinel farm;\nneeds a quiet place."
#define GUARDIAN    "Aunt Sentinel-Guardian, +31 6 GUARDIAN-4343"

static char    base[512];
static int     dirno;
static int64_t clock_ms = 1800000000000; /* a fixed "now" the tests move */

static int64_t
fake_now(void *arg)
{
	(void) arg;
	return (clock_ms);
}

typedef struct env {
	char             dir[600];  /* the data directory */
	char             sdir[700]; /* its store */
	store           *s;
	consent_service *cs;
} env;

static const rpc_caller operator_caller = { .role = RPC_ROLE_OPERATOR };
static const rpc_caller referrer        = { .role = RPC_ROLE_REFERRER, .org_id = "acme-ngo" };
static const rpc_caller shelter         = { .role = RPC_ROLE_PROVIDER, .org_id = "shelter-a" };
static const rpc_caller other_shelter   = { .role = RPC_ROLE_PROVIDER, .org_id = "shelter-b" };

static hv_status
env_consent_open(env *e)
{
	consent_options o = { .store = e->s, .data_dir = e->dir, .now_ms = fake_now };

	return (consent_open(&e->cs, &o));
}

static void
env_store_open(env *e)
{
	store_options so = { .no_sync = true };

	assert_int_equal(store_open(&e->s, e->sdir, &so), HV_OK);
}

static void
env_open(env *e)
{
	snprintf(e->dir, sizeof(e->dir), "%s/d%d", base, dirno++);
	snprintf(e->sdir, sizeof(e->sdir), "%s/store", e->dir);
	assert_int_equal(mkdir(e->dir, 0700), 0);
	env_store_open(e);
	assert_int_equal(env_consent_open(e), HV_OK);
}

static void
env_close(env *e)
{
	consent_close(e->cs);
	e->cs = NULL;
	store_close(e->s);
	e->s = NULL;
}

static void
rm_rf(const char *path)
{
	char cmd[800];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static void
env_destroy(env *e)
{
	env_close(e);
	rm_rf(e->dir);
}

/* ---- store functions through store_write ------------------------------------------------ */

typedef struct create_job {
	consent_service                        *cs;
	const rpc_caller                       *caller;
	const Haven__Consent__V1__PersonalData *p;
	bool                                    minor;
	char                                    id[CONSENT_ID_HEX];
} create_job;

static hv_status
create_fn(store_txn *txn, void *arg)
{
	create_job *j = arg;

	return (consent_create_subject_txn(j->cs, txn, j->caller, j->p, j->minor, j->id));
}

static void
personal_fill(Haven__Consent__V1__PersonalData *p, char **langs)
{
	haven__consent__v1__personal_data__init(p);
	p->name          = NAME;
	p->date_of_birth = DOB;
	p->nationality   = NATIONALITY;
	langs[0]         = LANG;
	langs[1]         = "nl";
	p->languages     = langs;
	p->n_languages   = 2;
	p->contact       = CONTACT;
	p->notes         = NOTES;
	p->guardian      = GUARDIAN;
}

static void
create_subject(env *e, bool minor, char id[CONSENT_ID_HEX])
{
	Haven__Consent__V1__PersonalData p;
	char                            *langs[2];
	create_job                       j = { e->cs, &referrer, &p, minor, "" };

	personal_fill(&p, langs);
	assert_int_equal(store_write(e->s, create_fn, &j), HV_OK);
	assert_int_equal(strlen(j.id), 32);
	memcpy(id, j.id, CONSENT_ID_HEX);
}

typedef struct grant_job {
	consent_service                        *cs;
	const rpc_caller                       *caller;
	const Haven__Consent__V1__GrantRequest *req;
	Haven__Consent__V1__ConsentRecord      *out;
	char                                    err[CONSENT_MSG_MAX];
} grant_job;

static hv_status
grant_fn(store_txn *txn, void *arg)
{
	grant_job *j = arg;

	if (j->out != NULL) {
		protobuf_c_message_free_unpacked(&j->out->base, NULL);
		j->out = NULL;
	}
	return (consent_grant_txn(j->cs, txn, j->caller, j->req, &j->out, j->err, sizeof(j->err)));
}

/* How many of share-with-provider, referral and contact grant() grants. */
static size_t grant_npurposes = 2;

/* Grants share-with-provider and referral (and contact, with grant_npurposes 3) of the given
 * categories to recipient. */
static hv_status
grant(env *e, const char *subject, const char *recipient, bool accepting,
    const Haven__Consent__V1__Category *cats, size_t ncats, Haven__Consent__V1__GivenBy by,
    int64_t valid_from, int64_t expires, Haven__Consent__V1__ConsentRecord **out, char *err)
{
	Haven__Consent__V1__GrantRequest r          = HAVEN__CONSENT__V1__GRANT_REQUEST__INIT;
	Haven__Consent__V1__Purpose      purposes[] = {
		     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
		     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_REFERRAL,
		     HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT,
	};
	char     *recips[1] = { (char *) recipient };
	grant_job j         = { e->cs, &referrer, &r, NULL, "" };
	hv_status st;

	r.subject            = (char *) subject;
	r.purposes           = purposes;
	r.n_purposes         = grant_npurposes;
	r.recipients         = recips;
	r.n_recipients       = recipient != NULL ? 1 : 0;
	r.accepting_provider = accepting;
	r.categories         = (Haven__Consent__V1__Category *) cats;
	r.n_categories       = ncats;
	r.given_by           = by;
	r.method             = HAVEN__CONSENT__V1__METHOD__METHOD_VERBAL_WITH_INTERPRETER;
	r.language           = "ro";
	r.valid_from_ms      = valid_from;
	r.expires_ms         = expires;
	st                   = store_write(e->s, grant_fn, &j);
	if (err != NULL) {
		snprintf(err, CONSENT_MSG_MAX, "%s", j.err);
	}
	if (out != NULL) {
		*out = j.out;
	} else if (j.out != NULL) {
		protobuf_c_message_free_unpacked(&j.out->base, NULL);
	}
	return (st);
}

static const Haven__Consent__V1__Category all_cats[] = {
	HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY,
	HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT,
	HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER,
};

static void
grant_all(env *e, const char *subject)
{
	grant_npurposes = 3; /* contact too: how to reach her is for contacting her */
	assert_int_equal(grant(e, subject, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 86400000,
	                     NULL, NULL),
	    HV_OK);
	grant_npurposes = 2;
}

typedef struct read_job {
	consent_service                  *cs;
	const rpc_caller                 *caller;
	const char                       *subject;
	bool                              accepting;
	Haven__Consent__V1__PersonalData *out;
} read_job;

static hv_status
read_fn(store_txn *txn, void *arg)
{
	read_job *j = arg;

	consent_personal_free(j->out);
	j->out = NULL;
	return (consent_read_personal_txn(j->cs, txn, j->caller, "test/Read", j->subject,
	    j->accepting, &j->out));
}

static hv_status
read_personal(env *e, const rpc_caller *who, const char *subject, bool accepting,
    Haven__Consent__V1__PersonalData **out)
{
	read_job  j = { e->cs, who, subject, accepting, NULL };
	hv_status st;

	st   = store_write(e->s, read_fn, &j);
	*out = j.out;
	return (st);
}

typedef struct check_job {
	consent_service  *cs;
	const rpc_caller *caller;
	const char       *subject;
	int               purpose, category;
	const char       *recipient;
	bool              accepting;
	consent_decision  d;
} check_job;

static hv_status
check_fn(store_txn *txn, void *arg)
{
	check_job *j = arg;

	return (consent_check_txn(j->cs, txn, j->caller, "test/Check", j->subject,
	    (Haven__Consent__V1__Purpose) j->purpose, j->recipient, j->accepting,
	    (Haven__Consent__V1__Category) j->category, &j->d));
}

static hv_status
check(env *e, const char *subject, int purpose, const char *recipient, bool accepting, int category,
    consent_decision *d)
{
	check_job j = { e->cs, &operator_caller, subject, purpose, category, recipient, accepting,
		{ 0 } };
	hv_status st;

	st = store_write(e->s, check_fn, &j);
	*d = j.d;
	return (st);
}

/* ---- raw access to files and tables ---------------------------------------------------- */

static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE    *f = fopen(path, "rb");
	uint8_t *buf;
	long     n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	assert_int_equal(fseek(f, 0, SEEK_SET), 0);
	assert_non_null(buf = malloc((size_t) n + 1));
	assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
	fclose(f);
	*len = (size_t) n;
	return (buf);
}

static void
spit(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t) len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static bool
contains(const uint8_t *hay, size_t len, const void *needle, size_t n)
{
	for (size_t i = 0; n > 0 && i + n <= len; i++) {
		if (hay[i] == *(const uint8_t *) needle && memcmp(hay + i, needle, n) == 0) {
			return (true);
		}
	}
	return (false);
}

static bool
file_contains(const char *path, const void *needle, size_t n)
{
	size_t   len;
	uint8_t *buf   = slurp(path, &len);
	bool     found = contains(buf, len, needle, n);

	free(buf);
	return (found);
}

static void
assert_nowhere(const char *path, const char *what)
{
	if (file_contains(path, what, strlen(what))) {
		fail_msg("'%s' found in %s", what, path);
	}
}

/* Every personal value of personal_fill, absent from the file. */
static void
assert_no_personal_data(const char *path)
{
	assert_nowhere(path, NAME);
	assert_nowhere(path, "Sentinelova");
	assert_nowhere(path, DOB);
	assert_nowhere(path, NATIONALITY);
	assert_nowhere(path, LANG);
	assert_nowhere(path, CONTACT);
	assert_nowhere(path, "SENTINEL-CONTACT");
	assert_nowhere(path, "Sentinel farm");
	assert_nowhere(path, "Sentinel-Guardian");
	assert_nowhere(path, "GUARDIAN-4343");
}

typedef struct raw_job {
	store_table t;
	uint8_t     key[CONSENT_ID_LEN];
	void       *val; /* in: replacement (NULL: read into val/len) */
	size_t      len;
} raw_job;

static hv_status
raw_fn(store_txn *txn, void *arg)
{
	raw_job    *j = arg;
	const void *v;
	hv_status   st;

	if (j->val != NULL) {
		return (store_put(txn, j->t, j->key, sizeof(j->key), j->val, j->len));
	}
	if ((st = store_get(txn, j->t, j->key, sizeof(j->key), &v, &j->len)) != HV_OK) {
		return (st);
	}
	j->val = malloc(j->len);
	memcpy(j->val, v, j->len);
	return (HV_OK);
}

/* Reads (val NULL) or writes a raw value of a table. */
static void
raw(store *s, const char *table, const char *hex, void **val, size_t *len)
{
	raw_job j = { 0 };

	assert_int_equal(store_table_open(s, table, &j.t), HV_OK);
	assert_int_equal(consent_id_parse(hex, j.key), 0);
	j.val = *val;
	j.len = *len;
	assert_int_equal(store_write(s, raw_fn, &j), HV_OK);
	*val = j.val;
	*len = j.len;
}

/* The key file's generation and key (the format of vault.c). */
static void
kek_file_read(const char *dir, const char *name, uint64_t *gen, uint8_t key[32])
{
	char     path[800];
	size_t   len;
	uint8_t *b;

	snprintf(path, sizeof(path), "%s/keys/%s", dir, name);
	b = slurp(path, &len);
	assert_int_equal(len, 45);
	assert_memory_equal(b, "HKEK\x01", 5);
	*gen = hv_get_be64((const uint8_t *) b + 5);
	memcpy(key, b + 13, 32);
	free(b);
}

/* Unwraps a wrapped data key by hand, as anyone with the key file and a copy of the store
 * could. */
static hv_status
unwrap_by_hand(const uint8_t kek[32], uint64_t gen, const char *hex, const uint8_t *w, size_t wlen,
    uint8_t dk[32])
{
	uint8_t aad[33];

	assert_int_equal(wlen, 60);
	memcpy(aad, "haven-kek", 9);
	for (int i = 0; i < 8; i++) {
		aad[9 + i] = (uint8_t) (gen >> (56 - 8 * i));
	}
	assert_int_equal(consent_id_parse(hex, aad + 17), 0);
	return (crypto_aead_decrypt(dk, kek, w, w + 44, aad, sizeof(aad), w + 12, 32));
}

/* ---- tests ----------------------------------------------------------------------------- */

static void
test_round_trip_and_categories(void **state)
{
	env                               e;
	char                              id[CONSENT_ID_HEX];
	Haven__Consent__V1__PersonalData *p          = NULL;
	Haven__Consent__V1__Category      identity[] = {
		     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY
	};

	(void) state;
	env_open(&e);
	create_subject(&e, false, id);
	/* No consent yet: a provider sees nothing. */
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_PERMISSION_DENIED);
	assert_null(p);
	/* Identity only: name and the rest of identity, no contact, no notes. */
	assert_int_equal(grant(&e, id, "shelter-a", false, identity, 1,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 86400000,
	                     NULL, NULL),
	    HV_OK);
	/* Named by the consent, but with no referral of hers accepted: nothing, in the words of
	 * no consent (docs/authority.md: a provider sees a person only after it accepted her
	 * referral; the consent decides what it sees then). */
	assert_int_equal(read_personal(&e, &shelter, id, false, &p), HV_PERMISSION_DENIED);
	assert_null(p);
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_OK);
	assert_string_equal(p->name, NAME);
	assert_string_equal(p->date_of_birth, DOB);
	assert_string_equal(p->nationality, NATIONALITY);
	assert_int_equal(p->n_languages, 2);
	assert_string_equal(p->languages[0], LANG);
	assert_string_equal(p->languages[1], "nl");
	assert_string_equal(p->contact, "");
	assert_string_equal(p->notes, "");
	assert_string_equal(p->guardian, ""); /* with contact */
	consent_personal_free(p);
	/* Another provider: nothing. */
	assert_int_equal(read_personal(&e, &other_shelter, id, true, &p), HV_PERMISSION_DENIED);
	/* Everything. */
	grant_all(&e, id);
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_OK);
	assert_string_equal(p->contact, CONTACT);
	assert_string_equal(p->notes, NOTES);
	assert_string_equal(p->guardian, GUARDIAN);
	consent_personal_free(p);
	/* Only the provider read path: other roles go through GetSubject. */
	assert_int_equal(read_personal(&e, &referrer, id, false, &p), HV_PERMISSION_DENIED);
	/* Unknown and malformed ids: an unknown one is refused as one without consent would be. */
	assert_int_equal(read_personal(&e, &shelter, "00000000000000000000000000000000", true, &p),
	    HV_PERMISSION_DENIED);
	assert_int_equal(read_personal(&e, &shelter, "not-an-id", true, &p), HV_INVALID_ARGUMENT);
	/* After a reopen too. */
	env_close(&e);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_OK);
	assert_string_equal(p->name, NAME);
	consent_personal_free(p);
	env_destroy(&e);
}

/* The expiry sweep (issue 14) applies each expiry once: not before it passed, not again in a
 * second sweep, nor after a restart (the mark is in the store). */
static void
test_expiry_sweep_once(void **state)
{
	env      e;
	char     a[CONSENT_ID_HEX], b[CONSENT_ID_HEX];
	int64_t  t0 = clock_ms;
	unsigned n  = 99;

	(void) state;
	env_open(&e);
	create_subject(&e, false, a);
	create_subject(&e, false, b);
	assert_int_equal(grant(&e, a, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, t0 + 3600000, NULL,
	                     NULL),
	    HV_OK);
	assert_int_equal(grant(&e, b, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, t0 + 86400000, NULL,
	                     NULL),
	    HV_OK);
	assert_int_equal(consent_expiry_sweep(e.cs, &n), HV_OK);
	assert_int_equal(n, 0);
	clock_ms = t0 + 2 * 3600000; /* a's expired, b's not */
	assert_int_equal(consent_expiry_sweep(e.cs, &n), HV_OK);
	assert_int_equal(n, 1);
	assert_int_equal(consent_expiry_sweep(e.cs, &n), HV_OK);
	assert_int_equal(n, 0);
	/* A restart does not apply it again. */
	env_close(&e);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	assert_int_equal(consent_expiry_sweep(e.cs, &n), HV_OK);
	assert_int_equal(n, 0);
	clock_ms = t0 + 2 * 86400000LL; /* now b's */
	assert_int_equal(consent_expiry_sweep(e.cs, &n), HV_OK);
	assert_int_equal(n, 1);
	clock_ms = t0;
	env_destroy(&e);
}

static void
test_accepting_provider(void **state)
{
	env                               e;
	char                              id[CONSENT_ID_HEX];
	Haven__Consent__V1__PersonalData *p = NULL;
	consent_decision                  d;

	(void) state;
	env_open(&e);
	create_subject(&e, false, id);
	/* "The provider that accepts the referral", no org named. */
	assert_int_equal(grant(&e, id, NULL, true, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 86400000,
	                     NULL, NULL),
	    HV_OK);
	assert_int_equal(read_personal(&e, &shelter, id, false, &p), HV_PERMISSION_DENIED);
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_OK);
	assert_string_equal(p->name, NAME);
	consent_personal_free(p);
	assert_int_equal(check(&e, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-b", false, HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT,
	                     &d),
	    HV_OK);
	assert_false(d.allowed);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_RECIPIENT);
	assert_int_equal(check(&e, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER,
	                     "shelter-b", true, HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT, &d),
	    HV_OK);
	assert_true(d.allowed);
	env_destroy(&e);
}

static void
test_check_decisions(void **state)
{
	env                                e;
	char                               id[CONSENT_ID_HEX];
	Haven__Consent__V1__ConsentRecord *c = NULL;
	consent_decision                   d;
	Haven__Consent__V1__Category       identity[] = {
		      HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY
	};
	const int share = HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER;
	const int ident = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY;
	int64_t   t0    = clock_ms;

	(void) state;
	env_open(&e);
	create_subject(&e, false, id);
	assert_int_equal(check(&e, id, share, "shelter-a", false, ident, &d), HV_OK);
	assert_false(d.allowed);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_NO_CONSENT);
	assert_non_null(strstr(d.message, id));

	/* Valid from t0 + 1 h until t0 + 2 h. */
	assert_int_equal(grant(&e, id, "shelter-a", false, identity, 1,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, t0 + 3600000,
	                     t0 + 7200000, &c, NULL),
	    HV_OK);
	assert_int_equal(check(&e, id, share, "shelter-a", false, ident, &d), HV_OK);
	assert_false(d.allowed);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_NOT_YET_VALID);
	assert_string_equal(d.consent_id, c->id);
	clock_ms = t0 + 3600000;
	assert_int_equal(check(&e, id, share, "shelter-a", false, ident, &d), HV_OK);
	assert_true(d.allowed);
	assert_string_equal(d.consent_id, c->id);
	/* Other purpose, recipient, category. */
	assert_int_equal(check(&e, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT, "shelter-a",
	                     false, ident, &d),
	    HV_OK);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_PURPOSE);
	assert_int_equal(check(&e, id, share, "shelter-b", false, ident, &d), HV_OK);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_RECIPIENT);
	assert_int_equal(check(&e, id, share, "shelter-a", false,
	                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_HEALTH, &d),
	    HV_OK);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_CATEGORY);
	/* The node itself, any category. */
	assert_int_equal(check(&e, id, share, "", false, 0, &d), HV_OK);
	assert_true(d.allowed);
	{
		bool allowed = false;
		assert_int_equal(consent_ref_check(e.cs, NULL, &operator_caller, "x", "bad",
		                     "referral", "", false, &allowed),
		    HV_INVALID_ARGUMENT);
		assert_false(allowed);
	}
	/* Expired: at expires exactly. */
	clock_ms = t0 + 7200000;
	assert_int_equal(check(&e, id, share, "shelter-a", false, ident, &d), HV_OK);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_EXPIRED);
	/* Bad input. */
	assert_int_equal(check(&e, id, 9, "shelter-a", false, ident, &d), HV_INVALID_ARGUMENT);
	assert_int_equal(check(&e, id, share, "Shelter A", false, ident, &d), HV_INVALID_ARGUMENT);
	assert_int_equal(check(&e, id, share, "shelter-a", false, 17, &d), HV_INVALID_ARGUMENT);
	assert_int_equal(check(&e, "ffffffffffffffffffffffffffffffff", share, "shelter-a", false,
	                     ident, &d),
	    HV_NOT_FOUND);
	clock_ms = t0;
	protobuf_c_message_free_unpacked(&c->base, NULL);
	env_destroy(&e);
}

/* ---- stored views ------------------------------------------------------------------------ */

static bool
view_stored(env *e, const char *id)
{
	uint8_t    sid[CONSENT_ID_LEN];
	store_txn *txn;
	hv_status  st;

	assert_int_equal(consent_id_parse(id, sid), 0);
	assert_int_equal(store_read_begin(e->s, &txn), HV_OK);
	st = store_get(txn, e->cs->cs_views, sid, CONSENT_ID_LEN, NULL, NULL);
	store_read_end(txn);
	assert_true(st == HV_OK || st == HV_NOT_FOUND);
	return (st == HV_OK);
}

typedef struct views_job {
	env        *vj_e;
	uint8_t     vj_sid[CONSENT_ID_LEN];
	size_t      vj_consents;
	hv_status   vj_status;
	const void *vj_put; /* views_put_fn: the stored view's new bytes */
	size_t      vj_putlen;
} views_job;

/* Loads the subject's view from its stored view, then (the stored view deleted) from its
 * records, compares the two field by field and rolls the transaction back. */
static hv_status
views_compare_fn(store_txn *txn, void *arg)
{
	views_job    *j = arg;
	consent_view *a = NULL, *b = NULL;

	if ((j->vj_status = view_load(j->vj_e->cs, txn, j->vj_sid, &a, NULL, 0)) != HV_OK ||
	    (j->vj_status = store_del(txn, j->vj_e->cs->cs_views, j->vj_sid, CONSENT_ID_LEN)) !=
	        HV_OK ||
	    (j->vj_status = view_load(j->vj_e->cs, txn, j->vj_sid, &b, NULL, 0)) != HV_OK) {
		view_free(a);
		return (HV_ABORTED);
	}
	assert_memory_equal(a->cv_sid, b->cv_sid, CONSENT_ID_LEN);
	assert_int_equal(a->cv_sgen, b->cv_sgen);
	assert_string_equal(a->cv_holder, b->cv_holder);
	assert_int_equal(a->cv_n, b->cv_n);
	for (size_t i = 0; i < a->cv_n; i++) {
		const view_consent *x = &a->cv_consents[i], *y = &b->cv_consents[i];

		assert_memory_equal(x->vc_id, y->vc_id, CONSENT_ID_LEN);
		assert_int_equal(x->vc_purposes, y->vc_purposes);
		assert_int_equal(x->vc_categories, y->vc_categories);
		assert_int_equal(x->vc_accepting, y->vc_accepting);
		assert_int_equal(x->vc_valid_from, y->vc_valid_from);
		assert_int_equal(x->vc_expires, y->vc_expires);
		assert_int_equal(x->vc_withdrawn, y->vc_withdrawn);
		assert_int_equal(x->vc_recorded, y->vc_recorded);
		assert_int_equal(x->vc_nrecipients, y->vc_nrecipients);
		for (size_t r = 0; r < x->vc_nrecipients; r++) {
			assert_string_equal(x->vc_recipients[r], y->vc_recipients[r]);
		}
	}
	j->vj_consents = a->cv_n;
	view_free(a);
	view_free(b);
	return (HV_ABORTED); /* nothing of this stays */
}

/* Asserts that the subject's stored view is what its records give; returns its consents. */
static size_t
views_compare(env *e, const char *id)
{
	views_job j = { .vj_e = e };

	assert_int_equal(consent_id_parse(id, j.vj_sid), 0);
	assert_int_equal(store_write(e->s, views_compare_fn, &j), HV_ABORTED);
	assert_int_equal(j.vj_status, HV_OK);
	return (j.vj_consents);
}

static hv_status
views_put_fn(store_txn *txn, void *arg)
{
	views_job *j = arg;

	return (store_put(txn, j->vj_e->cs->cs_views, j->vj_sid, CONSENT_ID_LEN, j->vj_put,
	    j->vj_putlen));
}

/* Forgets every stored view and that they were built: a store from before consent.views. */
static hv_status
views_forget_fn(store_txn *txn, void *arg)
{
	views_job *j = arg;
	hv_status  st;

	if ((st = store_clear(txn, j->vj_e->cs->cs_views)) != HV_OK) {
		return (st);
	}
	return (store_del(txn, j->vj_e->cs->cs_meta, VIEWS_BUILT_KEY, strlen(VIEWS_BUILT_KEY)));
}

static hv_status
withdraw_all_fn(store_txn *txn, void *arg)
{
	views_job *j = arg;
	char       ids[CONSENTS_PER_SUBJECT_MAX][CONSENT_ID_HEX];

	return (
	    consent_withdraw_all_txn(j->vj_e->cs, txn, j->vj_sid, clock_ms, ids, &j->vj_consents));
}

/* Check decides on a subject's stored view (consent.views) when the cache cannot answer. Every
 * change rewrites it in its own transaction, so it is always what the subject's records give;
 * an erasure deletes it; consent_open stores the views of a store that has none; and a stored
 * view that does not decode is DATA_LOSS, never a decision. */
static void
test_stored_views(void **state)
{
	env              e;
	char             id[CONSENT_ID_HEX], other[CONSENT_ID_HEX];
	consent_decision d;
	views_job        j     = { .vj_e = NULL };
	const int        share = HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER;
	const int        ident = HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY;
	Haven__Consent__V1__Category identity[] = {
		HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY
	};

	(void) state;
	env_open(&e);
	j.vj_e = &e;
	create_subject(&e, false, id);
	create_subject(&e, false, other);
	/* No consent changed yet: nothing stored, decided from the records. */
	assert_false(view_stored(&e, id));
	assert_int_equal(check(&e, id, share, "shelter-a", false, ident, &d), HV_OK);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_NO_CONSENT);

	/* Grants: stored, and equal to the records, field by field. */
	assert_int_equal(grant(&e, id, "shelter-a", false, identity, 1,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, clock_ms - 1000,
	                     clock_ms + 86400000, NULL, NULL),
	    HV_OK);
	assert_true(view_stored(&e, id));
	assert_false(view_stored(&e, other));
	assert_int_equal(views_compare(&e, id), 1);
	assert_int_equal(grant(&e, id, "shelter-b", true, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 3600000,
	                     NULL, NULL),
	    HV_OK);
	assert_int_equal(views_compare(&e, id), 2);
	grant_all(&e, other);
	assert_int_equal(check(&e, id, share, "shelter-a", false, ident, &d), HV_OK);
	assert_true(d.allowed);

	/* Withdrawn: stored again, and Check says so. */
	assert_int_equal(consent_id_parse(id, j.vj_sid), 0);
	assert_int_equal(store_write(e.s, withdraw_all_fn, &j), HV_OK);
	assert_int_equal(j.vj_consents, 2);
	assert_int_equal(views_compare(&e, id), 2);
	assert_int_equal(check(&e, id, share, "shelter-a", false, ident, &d), HV_OK);
	assert_int_equal(d.reason, HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_WITHDRAWN);

	/* A store without stored views: consent_open stores them again. */
	assert_int_equal(store_write(e.s, views_forget_fn, &j), HV_OK);
	assert_false(view_stored(&e, id));
	env_close(&e);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	assert_true(view_stored(&e, id));
	assert_true(view_stored(&e, other));
	assert_int_equal(views_compare(&e, id), 2);
	assert_int_equal(views_compare(&e, other), 1);

	/* Stored views that do not decode: a wrong version, a truncated one, trailing bytes. */
	{
		static const uint8_t v2[]    = { 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
		static const uint8_t cut[]   = { 1, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 'a', 'c' };
		static const uint8_t extra[] = { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9 };
		const struct {
			const uint8_t *b;
			size_t         n;
		} bad[] = { { v2, sizeof(v2) }, { cut, sizeof(cut) }, { extra, sizeof(extra) } };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			j.vj_put    = bad[i].b;
			j.vj_putlen = bad[i].n;
			assert_int_equal(consent_id_parse(other, j.vj_sid), 0);
			assert_int_equal(store_write(e.s, views_put_fn, &j), HV_OK);
			assert_int_equal(check(&e, other, share, "shelter-a", false, ident, &d),
			    HV_DATA_LOSS);
		}
		/* The next change stores it right again. */
		grant_all(&e, other);
		assert_int_equal(views_compare(&e, other), 2);
	}

	/* Erased: the stored view goes, and Check finds no subject. */
	assert_int_equal(consent_erase_subject(e.cs, &operator_caller, id, NULL, NULL), HV_OK);
	assert_false(view_stored(&e, id));
	assert_int_equal(check(&e, id, share, "shelter-a", false, ident, &d), HV_NOT_FOUND);
	env_destroy(&e);
}

/* ---- the expiry index -------------------------------------------------------------------- */

static uint64_t
expiries(env *e)
{
	store_txn *txn;
	uint64_t   n = 0;

	assert_int_equal(store_read_begin(e->s, &txn), HV_OK);
	assert_int_equal(store_count(txn, e->cs->cs_expiries, &n), HV_OK);
	store_read_end(txn);
	return (n);
}

/* A store from before the index: none, never built, and the old sweep's mark at mark_ms
 * (consent.meta "expiry_swept", host order; the key names are expiry.c's). */
typedef struct unindex_job {
	env    *e;
	int64_t mark_ms;
} unindex_job;

static hv_status
expiry_unindex_fn(store_txn *txn, void *arg)
{
	unindex_job *j = arg;
	hv_status    st;

	if ((st = store_clear(txn, j->e->cs->cs_expiries)) != HV_OK ||
	    (st = store_del(txn, j->e->cs->cs_meta, "expiry_indexed", 14)) != HV_OK) {
		return (st);
	}
	return (
	    store_put(txn, j->e->cs->cs_meta, "expiry_swept", 12, &j->mark_ms, sizeof(j->mark_ms)));
}

static unsigned
sweep(env *e)
{
	unsigned n = 99;

	assert_int_equal(consent_expiry_sweep(e->cs, &n), HV_OK);
	return (n);
}

/* The sweep reads only what is due (consent.expiries, in expiry order), applies each expiry
 * once and forgets it; a withdrawn consent is not applied; an older store is indexed at open
 * from its old mark on; and an expiry between a clock that went back and the last sweep is
 * still applied (the old mark skipped it). */
static void
test_expiry_index(void **state)
{
	env                          e;
	char                         a[CONSENT_ID_HEX], b[CONSENT_ID_HEX], c[CONSENT_ID_HEX];
	views_job                    j  = { .vj_e = NULL };
	const int64_t                t0 = clock_ms, hour = 3600000;
	Haven__Consent__V1__Category identity[] = {
		HAVEN__CONSENT__V1__CATEGORY__CATEGORY_IDENTITY
	};

	(void) state;
	env_open(&e);
	j.vj_e = &e;
	create_subject(&e, false, a);
	create_subject(&e, false, b);
	create_subject(&e, false, c);
	assert_int_equal(grant(&e, a, "shelter-a", false, identity, 1,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, t0 + hour, NULL,
	                     NULL),
	    HV_OK);
	assert_int_equal(grant(&e, b, "shelter-a", false, identity, 1,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, t0 + 2 * hour, NULL,
	                     NULL),
	    HV_OK);
	assert_int_equal(grant(&e, c, "shelter-a", false, identity, 1,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, t0 + 3 * hour, NULL,
	                     NULL),
	    HV_OK);
	assert_int_equal(consent_id_parse(c, j.vj_sid), 0);
	assert_int_equal(store_write(e.s, withdraw_all_fn, &j), HV_OK);
	assert_int_equal(expiries(&e), 3);
	assert_int_equal(sweep(&e), 0);

	clock_ms = t0 + hour;
	assert_int_equal(sweep(&e), 1); /* a's */
	assert_int_equal(expiries(&e), 2);
	assert_int_equal(sweep(&e), 0);

	/* An older store, swept up to now: at open only b is indexed (a was applied, c is
	 * withdrawn). */
	{
		unindex_job u = { .e = &e, .mark_ms = clock_ms };
		assert_int_equal(store_write(e.s, expiry_unindex_fn, &u), HV_OK);
	}
	assert_int_equal(expiries(&e), 0);
	env_close(&e);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	assert_int_equal(expiries(&e), 1);
	clock_ms = t0 + 2 * hour;
	assert_int_equal(sweep(&e), 1); /* b's */
	clock_ms = t0 + 3 * hour;
	assert_int_equal(sweep(&e), 0); /* c's was withdrawn */
	assert_int_equal(expiries(&e), 0);

	/* The clock goes back two hours; a consent granted then still expires when its time
	 * comes, although a sweep already ran at a later time. */
	clock_ms = t0 + hour;
	create_subject(&e, false, a);
	assert_int_equal(grant(&e, a, "shelter-a", false, identity, 1,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, t0 + hour + 60000,
	                     NULL, NULL),
	    HV_OK);
	clock_ms = t0 + hour + 60000;
	assert_int_equal(sweep(&e), 1);
	assert_int_equal(consent_expiry_sweep(NULL, NULL), HV_INVALID_ARGUMENT);
	clock_ms = t0;
	env_destroy(&e);
}

static void
test_grant_validation_and_minors(void **state)
{
	env                          e;
	char                         id[CONSENT_ID_HEX], minor[CONSENT_ID_HEX];
	char                         err[CONSENT_MSG_MAX];
	Haven__Consent__V1__Category bad_cats[] = { HAVEN__CONSENT__V1__CATEGORY__CATEGORY_HEALTH,
		HAVEN__CONSENT__V1__CATEGORY__CATEGORY_HEALTH };

	(void) state;
	env_open(&e);
	create_subject(&e, false, id);
	create_subject(&e, true, minor);
	assert_int_equal(grant(&e, minor, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 1000,
	                     NULL, err),
	    HV_FAILED_PRECONDITION);
	assert_non_null(
	    strstr(err, "is a minor: consent must be given by a guardian or representative"));
	assert_int_equal(grant(&e, minor, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_GUARDIAN, 0, clock_ms + 1000,
	                     NULL, err),
	    HV_OK);
	assert_int_equal(grant(&e, minor, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_REPRESENTATIVE, 0,
	                     clock_ms + 1000, NULL, err),
	    HV_OK);
	/* A minor without the guardian recorded: no consent until the holder records who gives
	 * it. */
	{
		Haven__Consent__V1__PersonalData p;
		char                            *langs[2];
		create_job                       j = { e.cs, &referrer, &p, true, "" };

		personal_fill(&p, langs);
		p.guardian = "";
		assert_int_equal(store_write(e.s, create_fn, &j), HV_OK);
		assert_int_equal(grant(&e, j.id, "shelter-a", false, all_cats, 3,
		                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_GUARDIAN, 0,
		                     clock_ms + 1000, NULL, err),
		    HV_FAILED_PRECONDITION);
		assert_non_null(strstr(err, "record the guardian or representative"));
		assert_null(strstr(err, "Sentinel"));
	}
	/* Times. */
	assert_int_equal(grant(&e, id, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms - 1, NULL,
	                     err),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "expires_ms"));
	assert_int_equal(grant(&e, id, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, clock_ms + 5000,
	                     clock_ms + 4000, NULL, err),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(grant(&e, id, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0,
	                     clock_ms + 11LL * 366 * 86400000, NULL, err),
	    HV_INVALID_ARGUMENT);
	/* Recipients, categories, given_by. */
	assert_int_equal(grant(&e, id, NULL, false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 1000,
	                     NULL, err),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "recipients"));
	assert_int_equal(grant(&e, id, "Not An Org", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 1000,
	                     NULL, err),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(grant(&e, id, "shelter-a", false, bad_cats, 2,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 1000,
	                     NULL, err),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(grant(&e, id, "shelter-a", false, all_cats, 0,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 1000,
	                     NULL, err),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(grant(&e, id, "shelter-a", false, all_cats, 3,
	                     (Haven__Consent__V1__GivenBy) 7, 0, clock_ms + 1000, NULL, err),
	    HV_INVALID_ARGUMENT);
	/* Unknown subject: refused as another holder's would be. */
	assert_int_equal(grant(&e, "0123456789abcdef0123456789abcdef", "shelter-a", false, all_cats,
	                     3, HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 1000,
	                     NULL, err),
	    HV_PERMISSION_DENIED);
	env_destroy(&e);
}

/* The plaintext of every personal field is nowhere in the LMDB file, in the log, or in the
 * audit log, however it was written, read, checked and erased. */
static void
test_no_plaintext_anywhere(void **state)
{
	env                               e;
	char                              id[CONSENT_ID_HEX];
	char                              data[800], logpath[800];
	Haven__Consent__V1__PersonalData *p = NULL;
	consent_decision                  d;
	int                               saved, fd;

	(void) state;
	/* Everything the library logs goes to a file we can search. */
	snprintf(logpath, sizeof(logpath), "%s/log", base);
	fflush(stderr);
	saved = dup(2);
	assert_true((fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
	dup2(fd, 2);
	close(fd);
	log_init("consent-test", LOG_LEVEL_DEBUG);

	env_open(&e);
	for (int i = 0; i < 3; i++) {
		create_subject(&e, false, id);
		grant_all(&e, id);
		assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_OK);
		consent_personal_free(p);
		assert_int_equal(check(&e, id, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT,
		                     "shelter-a", false,
		                     HAVEN__CONSENT__V1__CATEGORY__CATEGORY_CONTACT, &d),
		    HV_OK);
	}
	assert_int_equal(consent_rotate_kek(e.cs, NULL, NULL), HV_OK);
	assert_int_equal(consent_erase_subject(e.cs, &operator_caller, id, NULL, NULL), HV_OK);
	env_close(&e);

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	log_init("consent-test", LOG_LEVEL_WARN);

	snprintf(data, sizeof(data), "%s/data.mdb", e.sdir);
	assert_no_personal_data(data);
	assert_no_personal_data(logpath);
	/* The file does hold what it should: the ids, as a sanity check of the search. */
	assert_true(file_contains(data, id, strlen(id)));
	assert_true(file_contains(logpath, id, strlen(id)));
	unlink(logpath);
	rm_rf(e.dir);
}

static void
test_wrong_key_and_altered_data(void **state)
{
	env                               e;
	char                              id[CONSENT_ID_HEX], id2[CONSENT_ID_HEX];
	char                              path[800];
	Haven__Consent__V1__PersonalData *p   = NULL;
	void                             *val = NULL;
	size_t                            len = 0;
	uint8_t                          *kek;
	size_t                            klen;

	(void) state;
	env_open(&e);
	create_subject(&e, false, id);
	grant_all(&e, id);
	create_subject(&e, false, id2);
	grant_all(&e, id2);

	/* A byte of a sealed field changed: DATA_LOSS, not garbage. */
	raw(e.s, "consent.personal", id, &val, &len);
	((uint8_t *) val)[len - 20] ^= 0x01;
	raw(e.s, "consent.personal", id, &val, &len);
	free(val);
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_DATA_LOSS);
	assert_null(p);

	/* A byte of the wrapped data key changed. */
	val = NULL;
	raw(e.s, "consent.subjects", id2, &val, &len);
	((uint8_t *) val)[len - 10] ^= 0x80;
	raw(e.s, "consent.subjects", id2, &val, &len);
	free(val);
	assert_int_equal(read_personal(&e, &shelter, id2, true, &p), HV_DATA_LOSS);

	/* Another key file (same generation, other key): refused at open. */
	env_close(&e);
	snprintf(path, sizeof(path), "%s/keys/kek", e.dir);
	kek = slurp(path, &klen);
	kek[20] ^= 0x01;
	spit(path, kek, klen, 0600);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_DATA_LOSS);
	store_close(e.s);
	/* Malformed. */
	spit(path, kek, klen - 1, 0600);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_DATA_LOSS);
	store_close(e.s);
	/* Missing while the store has wrapped keys: never replaced by a new one. */
	unlink(path);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_DATA_LOSS);
	assert_int_equal(access(path, F_OK), -1);
	/* Put back: fine again. */
	kek[20] ^= 0x01;
	spit(path, kek, klen, 0600);
	assert_int_equal(env_consent_open(&e), HV_OK);
	free(kek);
	env_destroy(&e);
}

static void
test_key_file_permissions(void **state)
{
	env  e;
	char path[800], sign[800], keys[800];

	(void) state;
	env_open(&e);
	env_close(&e);
	snprintf(keys, sizeof(keys), "%s/keys", e.dir);
	snprintf(path, sizeof(path), "%s/keys/kek", e.dir);
	snprintf(sign, sizeof(sign), "%s/keys/receipt-ed25519.pem", e.dir);
	{
		struct stat sb;
		assert_int_equal(stat(keys, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0700);
		assert_int_equal(stat(path, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
		assert_int_equal(stat(sign, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}
	env_store_open(&e);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(env_consent_open(&e), HV_PERMISSION_DENIED);
	assert_int_equal(chmod(path, 0604), 0);
	assert_int_equal(env_consent_open(&e), HV_PERMISSION_DENIED);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(chmod(sign, 0644), 0);
	assert_int_equal(env_consent_open(&e), HV_PERMISSION_DENIED);
	assert_int_equal(chmod(sign, 0600), 0);
	assert_int_equal(chmod(keys, 0750), 0);
	assert_int_equal(env_consent_open(&e), HV_PERMISSION_DENIED);
	assert_int_equal(chmod(keys, 0700), 0);
	assert_int_equal(env_consent_open(&e), HV_OK);
	env_destroy(&e);
}

static void
test_rotation_keeps_data(void **state)
{
	env                               e;
	char                              ids[20][CONSENT_ID_HEX];
	Haven__Consent__V1__PersonalData *p = NULL;
	uint64_t                          gen, n, g0;
	uint8_t                           k0[32], k1[32];

	(void) state;
	env_open(&e);
	kek_file_read(e.dir, "kek", &g0, k0);
	assert_int_equal(g0, 1);
	for (int i = 0; i < 20; i++) {
		create_subject(&e, false, ids[i]);
		grant_all(&e, ids[i]);
	}
	assert_int_equal(consent_erase_subject(e.cs, &operator_caller, ids[19], NULL, &gen), HV_OK);
	assert_int_equal(gen, 2); /* erasure rotates */
	assert_int_equal(consent_rotate_kek(e.cs, &gen, &n), HV_OK);
	assert_int_equal(gen, 3);
	assert_int_equal(n, 19); /* the tombstone has no key */
	kek_file_read(e.dir, "kek", &gen, k1);
	assert_int_equal(gen, 3);
	assert_memory_not_equal(k0, k1, 32);
	{
		char np[800];
		snprintf(np, sizeof(np), "%s/keys/kek.new", e.dir);
		assert_int_equal(access(np, F_OK), -1);
	}
	for (int i = 0; i < 19; i++) {
		assert_int_equal(read_personal(&e, &shelter, ids[i], true, &p), HV_OK);
		assert_string_equal(p->name, NAME);
		consent_personal_free(p);
	}
	assert_int_equal(read_personal(&e, &shelter, ids[19], true, &p), HV_PERMISSION_DENIED);
	/* And after a restart. */
	env_close(&e);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	assert_int_equal(read_personal(&e, &shelter, ids[7], true, &p), HV_OK);
	consent_personal_free(p);
	env_destroy(&e);
}

/* A copy of the store taken before an erasure cannot be decrypted afterwards: not with the
 * node's key (another generation), and the key it was wrapped under is gone from the disk. */
static void
test_erasure_is_final_for_old_copies(void **state)
{
	env                                e;
	char                               id[CONSENT_ID_HEX], keep[CONSENT_ID_HEX];
	char                               path[800], copy[1000], copydir[800];
	uint8_t                            old_kek[32], new_kek[32], dk[32];
	uint64_t                           old_gen, new_gen;
	uint8_t                           *bytes;
	size_t                             len;
	store                             *old;
	void                              *val = NULL;
	Haven__Consent__V1__SubjectRecord *rec;
	Haven__Consent__V1__PersonalData  *p = NULL;
	DIR                               *dir;
	struct dirent                     *de;

	(void) state;
	env_open(&e);
	create_subject(&e, false, id);
	create_subject(&e, false, keep);
	grant_all(&e, keep);

	/* The old copy: the LMDB file as it is now, and (for this test only) the key. */
	kek_file_read(e.dir, "kek", &old_gen, old_kek);
	snprintf(path, sizeof(path), "%s/data.mdb", e.sdir);
	snprintf(copydir, sizeof(copydir), "%s/copy", e.dir);
	snprintf(copy, sizeof(copy), "%s/data.mdb", copydir);
	assert_int_equal(mkdir(copydir, 0700), 0);
	bytes = slurp(path, &len);
	spit(copy, bytes, len, 0600);
	free(bytes);

	assert_int_equal(consent_erase_subject(e.cs, &operator_caller, id, NULL, &new_gen), HV_OK);
	assert_int_equal(new_gen, old_gen + 1);
	kek_file_read(e.dir, "kek", &new_gen, new_kek);
	assert_int_equal(new_gen, old_gen + 1);

	/* The old key is in no file under keys/ any more. */
	snprintf(path, sizeof(path), "%s/keys", e.dir);
	assert_non_null(dir = opendir(path));
	while ((de = readdir(dir)) != NULL) {
		char f[1200];
		if (de->d_name[0] == '.') {
			continue;
		}
		snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
		assert_false(file_contains(f, old_kek, sizeof(old_kek)));
		assert_string_not_equal(de->d_name, "kek.new");
	}
	closedir(dir);

	/* The erased subject's wrapped key, from the old copy. */
	{
		store_options so = { .no_sync = true };
		assert_int_equal(store_open(&old, copydir, &so), HV_OK);
	}
	raw(old, "consent.subjects", id, &val, &len);
	assert_non_null(rec = haven__consent__v1__subject_record__unpack(NULL, len, val));
	free(val);
	assert_int_equal(rec->kek_generation, old_gen);
	/* Not with the node's key, under either generation's associated data ... */
	assert_int_equal(unwrap_by_hand(new_kek, old_gen, id, rec->wrapped_key.data,
	                     rec->wrapped_key.len, dk),
	    HV_DATA_LOSS);
	assert_int_equal(unwrap_by_hand(new_kek, new_gen, id, rec->wrapped_key.data,
	                     rec->wrapped_key.len, dk),
	    HV_DATA_LOSS);
	/* ... only with the key that is gone (which proves the procedure above is right). */
	assert_int_equal(unwrap_by_hand(old_kek, old_gen, id, rec->wrapped_key.data,
	                     rec->wrapped_key.len, dk),
	    HV_OK);
	haven__consent__v1__subject_record__free_unpacked(rec, NULL);
	store_close(old);

	/* A consent service over the old copy with the node's keys refuses it outright. */
	{
		consent_service *cs2;
		store           *s2;
		store_options    so = { .no_sync = true };
		consent_options  o  = { .data_dir = e.dir, .now_ms = fake_now };
		assert_int_equal(store_open(&s2, copydir, &so), HV_OK);
		o.store = s2;
		assert_int_equal(consent_open(&cs2, &o), HV_DATA_LOSS);
		store_close(s2);
	}

	/* In the live store: a tombstone (refused as if consent shared nothing: no oracle for
	 * erasure); the other subject is readable. */
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_PERMISSION_DENIED);
	val = NULL;
	raw(e.s, "consent.subjects", id, &val, &len);
	assert_non_null(rec = haven__consent__v1__subject_record__unpack(NULL, len, val));
	assert_int_equal(rec->wrapped_key.len, 0);
	assert_true(rec->erased_at_ms != 0);
	haven__consent__v1__subject_record__free_unpacked(rec, NULL);
	free(val);
	assert_int_equal(read_personal(&e, &shelter, keep, true, &p), HV_OK);
	consent_personal_free(p);
	/* Erasing twice: NOT_FOUND, erased. */
	assert_int_equal(consent_erase_subject(e.cs, &operator_caller, id, NULL, NULL),
	    HV_NOT_FOUND);
	/* A referrer that did not refer the subject may not erase it. */
	{
		rpc_caller other = { .role = RPC_ROLE_REFERRER, .org_id = "other-ngo" };
		assert_int_equal(consent_erase_subject(e.cs, &other, keep, NULL, NULL),
		    HV_PERMISSION_DENIED);
	}
	crypto_wipe(old_kek, sizeof(old_kek));
	env_destroy(&e);
}

/* Crash states of a rotation, made by hand: at open, an uncommitted kek.new is rolled back and
 * a committed one finished. */
static void
test_rotation_crash_recovery(void **state)
{
	env                               e;
	char                              id[CONSENT_ID_HEX];
	char                              kek[800], knew[800];
	uint8_t                          *old_file, *new_file;
	size_t                            olen, nlen;
	uint64_t                          gen;
	uint8_t                           key[32];
	Haven__Consent__V1__PersonalData *p = NULL;

	(void) state;
	env_open(&e);
	create_subject(&e, false, id);
	grant_all(&e, id);
	snprintf(kek, sizeof(kek), "%s/keys/kek", e.dir);
	snprintf(knew, sizeof(knew), "%s/keys/kek.new", e.dir);
	old_file = slurp(kek, &olen);

	/* 1. Crashed after writing kek.new, before the store commit: rolled back. */
	env_close(&e);
	{
		uint8_t bogus[45];
		memcpy(bogus, old_file, 45);
		bogus[12] = 2; /* generation 2 */
		bogus[30] ^= 0xff;
		spit(knew, bogus, sizeof(bogus), 0600);
	}
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	assert_int_equal(access(knew, F_OK), -1);
	kek_file_read(e.dir, "kek", &gen, key);
	assert_int_equal(gen, 1);
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_OK);
	consent_personal_free(p);

	/* 2. Crashed after the commit, before the rename: finished. Made by rotating and then
	 * putting the files back the way they were before the rename. */
	assert_int_equal(consent_rotate_kek(e.cs, &gen, NULL), HV_OK);
	assert_int_equal(gen, 2);
	env_close(&e);
	new_file = slurp(kek, &nlen);
	assert_int_equal(rename(kek, knew), 0);
	spit(kek, old_file, olen, 0600);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	assert_int_equal(access(knew, F_OK), -1);
	kek_file_read(e.dir, "kek", &gen, key);
	assert_int_equal(gen, 2);
	assert_true(file_contains(kek, new_file, nlen));
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_OK);
	assert_string_equal(p->name, NAME);
	consent_personal_free(p);

	/* 3. The same with the old key file shredded already (crash between shred and rename). */
	env_close(&e);
	assert_int_equal(rename(kek, knew), 0);
	{
		uint8_t zeros[45] = { 0 };
		spit(kek, zeros, sizeof(zeros), 0600);
	}
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	assert_int_equal(read_personal(&e, &shelter, id, true, &p), HV_OK);
	consent_personal_free(p);
	free(old_file);
	free(new_file);
	env_destroy(&e);
}

/* Writers keep writing and reading while the key rotates underneath them. */
typedef struct busy {
	env *e;
	int  n;
	int  failed;
} busy;

static void *
busy_main(void *arg)
{
	busy *b = arg;

	for (int i = 0; i < b->n; i++) {
		char                              id[CONSENT_ID_HEX];
		Haven__Consent__V1__PersonalData *p = NULL;
		Haven__Consent__V1__PersonalData  pd;
		char                             *langs[2];
		create_job                        j = { b->e->cs, &referrer, &pd, false, "" };
		personal_fill(&pd, langs);
		if (store_write(b->e->s, create_fn, &j) != HV_OK) {
			b->failed++;
			continue;
		}
		memcpy(id, j.id, sizeof(id));
		if (grant(b->e, id, "shelter-a", false, all_cats, 3,
		        HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 86400000,
		        NULL, NULL) != HV_OK ||
		    read_personal(b->e, &shelter, id, true, &p) != HV_OK ||
		    strcmp(p->name, NAME) != 0) {
			b->failed++;
		}
		consent_personal_free(p);
	}
	return (NULL);
}

static void
test_rotation_under_load(void **state)
{
	env       e;
	pthread_t th[4];
	busy      b[4];
	uint64_t  gen;

	(void) state;
	env_open(&e);
	for (int i = 0; i < 4; i++) {
		b[i] = (busy) { &e, 40, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, busy_main, &b[i]), 0);
	}
	for (int i = 0; i < 5; i++) {
		assert_int_equal(consent_rotate_kek(e.cs, &gen, NULL), HV_OK);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(b[i].failed, 0);
	}
	assert_int_equal(gen, 6);
	{
		audit_verify_result r;
		assert_int_equal(audit_verify(consent_audit(e.cs), &r), HV_OK);
		assert_true(r.entries >= 4 * 40 * 3);
	}
	env_destroy(&e);
}

/* The timer rotates by itself once the key is older than the interval. */
static void
test_rotation_timer(void **state)
{
	env             e;
	consent_options o = { 0 };
	uint64_t        gen;
	uint8_t         key[32];

	(void) state;
	snprintf(e.dir, sizeof(e.dir), "%s/d%d", base, dirno++);
	snprintf(e.sdir, sizeof(e.sdir), "%s/store", e.dir);
	assert_int_equal(mkdir(e.dir, 0700), 0);
	env_store_open(&e);
	o.store             = e.s;
	o.data_dir          = e.dir;
	o.rotate_interval_s = 2; /* looks every second, rotates keys a second old */
	assert_int_equal(consent_open(&e.cs, &o), HV_OK);
	for (int i = 0; i < 60; i++) {
		usleep(100 * 1000);
		kek_file_read(e.dir, "kek", &gen, key);
		if (gen >= 2) {
			break;
		}
	}
	assert_true(gen >= 2);
	env_destroy(&e);
}

static void
test_receipts(void **state)
{
	env                                e;
	char                               id[CONSENT_ID_HEX], key_id[CONSENT_KEY_ID_HEX];
	char                               why[128];
	Haven__Consent__V1__ConsentRecord *c = NULL;
	uint8_t                            pub[32], other[32];
	json_t                            *r;
	char                              *text;
	static const char *const           changes[][2] = {
		          { "consent.subject", "\"0123456789abcdef0123456789abcdef\"" },
		          { "consent.recipients", "[\"shelter-b\"]" },
		          { "consent.purposes", "[\"referral\"]" },
		          { "consent.categories", "[\"identity\",\"contact\",\"other\",\"health\"]" },
		          { "consent.accepting_provider", "true" },
		          { "consent.given_by", "\"guardian\"" },
		          { "consent.method", "\"written\"" },
		          { "consent.language", "\"nl\"" },
		          { "consent.valid_from", "1" },
		          { "consent.expires", "99999999999999" },
		          { "consent.withdrawn_at", "0" },
		          { "consent.recorded_by", "\"other-ngo\"" },
		          { "consent.recorded_at", "1.0" },
		          { "consent.version", "2" },
		          { "consent.extra", "1" },
		          { "format", "\"haven-consent-receipt/2\"" },
	};

	(void) state;
	env_open(&e);
	create_subject(&e, false, id);
	assert_int_equal(grant(&e, id, "shelter-a", false, all_cats, 3,
	                     HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_SUBJECT, 0, clock_ms + 86400000,
	                     &c, NULL),
	    HV_OK);
	consent_receipt_key(e.cs, pub, key_id);
	assert_string_equal(c->key_id, key_id);
	assert_int_equal(c->signature.len, 64);
	assert_non_null(r = receipt_json(c, true));
	assert_non_null(text = json_dumps(r, JSON_INDENT(2)));
	assert_int_equal(consent_receipt_verify(text, strlen(text), pub, why, sizeof(why)), HV_OK);
	free(text);
	/* Any change to any field, or a new field, and the signature no longer holds. */
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		json_t      *copy = json_deep_copy(r);
		json_t      *obj  = copy;
		json_error_t err;
		const char  *k   = changes[i][0];
		const char  *dot = strchr(k, '.');
		if (dot != NULL) {
			obj = json_object_get(copy, "consent");
			k   = dot + 1;
		}
		json_object_set_new(obj, k, json_loads(changes[i][1], JSON_DECODE_ANY, &err));
		text = json_dumps(copy, 0);
		if (consent_receipt_verify(text, strlen(text), pub, why, sizeof(why)) == HV_OK) {
			fail_msg("changing %s was not detected", changes[i][0]);
		}
		free(text);
		json_decref(copy);
	}
	/* A field removed; the signature removed; another key; not a receipt. */
	{
		json_t *copy = json_deep_copy(r);
		json_object_del(json_object_get(copy, "consent"), "language");
		text = json_dumps(copy, 0);
		assert_int_equal(consent_receipt_verify(text, strlen(text), pub, why, sizeof(why)),
		    HV_UNAUTHENTICATED);
		free(text);
		json_object_del(copy, "signature");
		text = json_dumps(copy, 0);
		assert_int_equal(consent_receipt_verify(text, strlen(text), pub, why, sizeof(why)),
		    HV_UNAUTHENTICATED);
		free(text);
		json_decref(copy);
	}
	memcpy(other, pub, sizeof(other));
	other[0] ^= 1;
	text = json_dumps(r, 0);
	assert_int_equal(consent_receipt_verify(text, strlen(text), other, why, sizeof(why)),
	    HV_UNAUTHENTICATED);
	free(text);
	assert_int_equal(consent_receipt_verify("[1]", 3, pub, why, sizeof(why)),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(consent_receipt_verify("{\"format\":1", 11, pub, why, sizeof(why)),
	    HV_INVALID_ARGUMENT);
	/* Duplicate keys are refused rather than guessed at. */
	{
		const char *dup = "{\"format\":\"haven-consent-receipt/1\",\"format\":\"x\"}";
		assert_int_equal(consent_receipt_verify(dup, strlen(dup), pub, why, sizeof(why)),
		    HV_INVALID_ARGUMENT);
	}
	/* The same receipt keeps verifying after a restart (same key). */
	env_close(&e);
	env_store_open(&e);
	assert_int_equal(env_consent_open(&e), HV_OK);
	consent_receipt_key(e.cs, other, key_id);
	assert_memory_equal(other, pub, sizeof(pub));
	json_decref(r);
	protobuf_c_message_free_unpacked(&c->base, NULL);
	env_destroy(&e);
}

/* ---- free text of other services (sealed_text.c) ----------------------------------------------
 */

typedef struct text_job {
	consent_service *cs;
	const char      *subject, *context, *text;
	const uint8_t   *sealed;
	size_t           len;
	uint8_t          out[CONSENT_TEXT_SEALED_LEN(64)];
	char             plain[65];
} text_job;

static hv_status
text_seal_fn(store_txn *txn, void *arg)
{
	text_job *j = arg;

	j->len = CONSENT_TEXT_SEALED_LEN(strlen(j->text));
	return (consent_text_seal_txn(j->cs, txn, j->subject, j->context, j->text, strlen(j->text),
	    j->out, j->len));
}

static hv_status
text_open_fn(store_txn *txn, void *arg)
{
	text_job *j = arg;

	return (consent_text_open_txn(j->cs, txn, j->subject, j->context, j->sealed, j->len,
	    j->plain, j->len - CONSENT_TEXT_OVERHEAD + 1));
}

/* Opens sealed (len bytes) as subject and context: the status. */
static hv_status
text_open(env *e, const char *subject, const char *context, const uint8_t *sealed, size_t len,
    char plain[65])
{
	text_job  j = { .cs = e->cs,
		 .subject   = subject,
		 .context   = context,
		 .sealed    = sealed,
		 .len       = len };
	hv_status st;

	st = store_write(e->s, text_open_fn, &j);
	memcpy(plain, j.plain, sizeof(j.plain));
	return (st);
}

static void
test_text_seal(void **state)
{
	env      e;
	char     a[CONSENT_ID_HEX], b[CONSENT_ID_HEX], plain[65];
	char     path[800];
	text_job j;
	uint8_t  sealed[CONSENT_TEXT_SEALED_LEN(64)];
	size_t   len;

	(void) state;
	env_open(&e);
	create_subject(&e, false, a);
	create_subject(&e, false, b);
	memset(&j, 0, sizeof(j));
	j.cs      = e.cs;
	j.subject = a;
	j.context = "ref-0001/note";
	j.text    = "Sentinel-free-text at the farm";
	assert_int_equal(store_write(e.s, text_seal_fn, &j), HV_OK);
	len = j.len;
	assert_int_equal(len, strlen(j.text) + CONSENT_TEXT_OVERHEAD);
	memcpy(sealed, j.out, len);
	assert_false(contains(sealed, len, "Sentinel", 8));

	/* Its own subject and place open it; another subject, another place, or one altered
	 * byte do not (DATA_LOSS, the buffer wiped). */
	assert_int_equal(text_open(&e, a, "ref-0001/note", sealed, len, plain), HV_OK);
	assert_string_equal(plain, "Sentinel-free-text at the farm");
	assert_int_equal(text_open(&e, b, "ref-0001/note", sealed, len, plain), HV_DATA_LOSS);
	assert_int_equal(plain[0], '\0');
	assert_int_equal(text_open(&e, a, "ref-0002/note", sealed, len, plain), HV_DATA_LOSS);
	assert_int_equal(text_open(&e, a, "ref-0001/event/1", sealed, len, plain), HV_DATA_LOSS);
	sealed[len - 1] ^= 1;
	assert_int_equal(text_open(&e, a, "ref-0001/note", sealed, len, plain), HV_DATA_LOSS);
	sealed[len - 1] ^= 1;
	sealed[0] = 2; /* a version this build does not know */
	assert_int_equal(text_open(&e, a, "ref-0001/note", sealed, len, plain), HV_DATA_LOSS);
	sealed[0] = 1;

	/* Bad arguments: a clear status, never a crash. */
	assert_int_equal(text_open(&e, "not-a-subject", "ref-0001/note", sealed, len, plain),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(text_open(&e, a, "", sealed, len, plain), HV_INVALID_ARGUMENT);
	assert_int_equal(text_open(&e, a, "ref-0001/note", sealed, 5, plain), HV_INVALID_ARGUMENT);
	assert_int_equal(text_open(&e, "00000000000000000000000000000001", "ref-0001/note", sealed,
	                     len, plain),
	    HV_NOT_FOUND);
	j.context = "";
	assert_int_equal(store_write(e.s, text_seal_fn, &j), HV_INVALID_ARGUMENT);

	/* After erasure the text opens no more (NOT_FOUND: the key is gone), and the text is not
	 * in the LMDB file. */
	assert_int_equal(consent_erase_subject(e.cs, &operator_caller, a, NULL, NULL), HV_OK);
	assert_int_equal(text_open(&e, a, "ref-0001/note", sealed, len, plain), HV_NOT_FOUND);
	snprintf(path, sizeof(path), "%s/data.mdb", e.sdir);
	assert_nowhere(path, "Sentinel-free-text");
	env_destroy(&e);
}

static void
test_names(void **state)
{
	int v;

	(void) state;
	assert_int_equal(consent_purpose_parse("share-with-provider", &v), 0);
	assert_int_equal(v, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER);
	assert_int_equal(consent_purpose_parse("share_with_provider", &v), 0);
	assert_int_equal(consent_purpose_parse("sharing", &v), -1);
	assert_int_equal(consent_category_parse("other", &v), 0);
	assert_int_equal(v, HAVEN__CONSENT__V1__CATEGORY__CATEGORY_OTHER);
	assert_int_equal(consent_method_parse("verbal-with-interpreter", &v), 0);
	assert_int_equal(consent_given_by_parse("guardian", &v), 0);
	assert_int_equal(consent_given_by_parse("", &v), -1);
	assert_string_equal(consent_purpose_name(0), "unknown");
	assert_string_equal(consent_method_name(2), "verbal");
	assert_string_equal(consent_purpose_name(99), "unknown");
	assert_string_equal(consent_category_name(HAVEN__CONSENT__V1__CATEGORY__CATEGORY_LEGAL),
	    "legal");
	assert_string_equal(consent_given_by_name(
	                        HAVEN__CONSENT__V1__GIVEN_BY__GIVEN_BY_REPRESENTATIVE),
	    "representative");
}

static int
setup(void **state)
{
	const char *tmp = getenv("HAVEN_TEST_TMP");

	(void) state;
	log_init("consent-test", LOG_LEVEL_WARN);
	snprintf(base, sizeof(base), "%s/consent-XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(base) == NULL) {
		return (-1);
	}
	return (chmod(base, 0700));
}

static int
teardown(void **state)
{
	(void) state;
	return (rmdir(base));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_round_trip_and_categories),
		cmocka_unit_test(test_accepting_provider),
		cmocka_unit_test(test_expiry_sweep_once),
		cmocka_unit_test(test_check_decisions),
		cmocka_unit_test(test_stored_views),
		cmocka_unit_test(test_expiry_index),
		cmocka_unit_test(test_grant_validation_and_minors),
		cmocka_unit_test(test_no_plaintext_anywhere),
		cmocka_unit_test(test_wrong_key_and_altered_data),
		cmocka_unit_test(test_key_file_permissions),
		cmocka_unit_test(test_rotation_keeps_data),
		cmocka_unit_test(test_erasure_is_final_for_old_copies),
		cmocka_unit_test(test_rotation_crash_recovery),
		cmocka_unit_test(test_rotation_under_load),
		cmocka_unit_test(test_rotation_timer),
		cmocka_unit_test(test_receipts),
		cmocka_unit_test(test_text_seal),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
