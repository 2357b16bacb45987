/*
 * people.c - the people service's state: its key (DATA/keys/people-key) and the keys derived
 * from it, its tables, the records of people and the sealing of their personal fields, and the
 * bounded pool of password hashes. The RPC handlers are in people_rpc.c, sign-in in
 * people_login.c, sessions in people_session.c.
 */
#include "people.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "haven/clock.h"
#include "haven/file.h"
#include "haven/log.h"
#include "people_internal.h"

#define MASTER_LEN     32
#define HASHES_AT_ONCE 2
#define HASHES_WAITING                                                                             \
	2 /* more than this waiting: refused at once, so that sign-ins cannot                      \
	   * hold every handler thread of the node */
#define DEFAULT_IDLE_S 1800
#define DEFAULT_MAX_S  43200

const char *const people_cause_names[PF_N] = {
	[PF_UNKNOWN_NAME] = "unknown_name",
	[PF_PASSWORD]     = "password",
	[PF_CODE]         = "code",
	[PF_LOCKED]       = "locked",
	[PF_DISABLED]     = "disabled",
	[PF_ORGANISATION] = "organisation",
};

/* Reads the master key, making it at the first start. Another process racing to make it
 * loses the O_EXCL create and reads the winner's. */
static hv_status
master_load(const char *path, uint8_t out[MASTER_LEN])
{
	char     *buf = NULL;
	size_t    len = 0;
	hv_status st;

	st = hv_file_read(path, 4 * MASTER_LEN, true, &buf, &len);
	if (st == HV_NOT_FOUND) {
		if ((st = crypto_random(out, MASTER_LEN)) != HV_OK) {
			return (st);
		}
		st = hv_file_create_private(path, out, MASTER_LEN);
		if (st == HV_OK) {
			log_info("people: made a new key %s", path);
			return (HV_OK);
		}
		crypto_wipe(out, MASTER_LEN);
		if (st != HV_ALREADY_EXISTS) {
			return (st);
		}
		st = hv_file_read(path, 4 * MASTER_LEN, true, &buf, &len);
	}
	if (st == HV_OK && len != MASTER_LEN) {
		st = HV_DATA_LOSS;
	}
	if (st == HV_OK) {
		memcpy(out, buf, MASTER_LEN);
	}
	if (buf != NULL) {
		crypto_wipe(buf, len);
		free(buf);
	}
	if (st != HV_OK) {
		log_error("people: key %s: %s", path, hv_status_name(st));
	}
	return (st);
}

hv_status
people_open(people_service **out, const people_options *opts)
{
	people_service *ps = NULL;
	uint8_t         master[MASTER_LEN];
	uint8_t         full[CRYPTO_HMAC_LEN];
	uint8_t         dummy_pw[16];
	hv_status       st = HV_INVALID_ARGUMENT;

	*out = NULL;
	if (opts == NULL || opts->store == NULL || opts->auth == NULL || opts->key_file == NULL ||
	    (opts->pwhash_ln != 0 && (opts->pwhash_ln < 4 || opts->pwhash_ln > 20))) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((ps = calloc(1, sizeof(*ps))) == NULL ||
	    (ps->p_throttles = calloc(PEOPLE_THROTTLES, sizeof(*ps->p_throttles))) == NULL) {
		free(ps);
		return (HV_RESOURCE_EXHAUSTED);
	}
	{
		limit_options lo = { .window_ms = 60000, .per_source = PEOPLE_ADDRESS_ATTEMPTS };
		if (limit_open(&ps->p_attempts, &lo) != HV_OK) {
			free(ps->p_throttles);
			free(ps);
			return (HV_RESOURCE_EXHAUSTED);
		}
	}
	pthread_mutex_init(&ps->p_mu, NULL);
	hv_clock_cond_init(&ps->p_cv);
	ps->p_store = opts->store;
	ps->p_auth  = opts->auth;
	ps->p_audit = opts->audit;
	ps->p_idle_ms =
	    1000 * (int64_t) (opts->session_idle_s ? opts->session_idle_s : DEFAULT_IDLE_S);
	ps->p_max_ms = 1000 * (int64_t) (opts->session_max_s ? opts->session_max_s : DEFAULT_MAX_S);
	ps->p_pwhash_ln = opts->pwhash_ln != 0 ? opts->pwhash_ln : CRYPTO_PWHASH_LN;
	ps->p_now_ms    = opts->now_ms != NULL ? opts->now_ms : hv_clock_wall_ms;
	if ((st = master_load(opts->key_file, master)) != HV_OK) {
		goto fail;
	}
	/* Two keys from one: sealing and the login names' index never share a key. */
	crypto_hmac_sha256(full, master, sizeof(master), "haven people seal v1", 20);
	memcpy(ps->p_seal_key, full, sizeof(ps->p_seal_key));
	crypto_hmac_sha256(ps->p_name_key, master, sizeof(master), "haven people login v1", 21);
	crypto_wipe(master, sizeof(master));
	crypto_wipe(full, sizeof(full));
	/* The dummy hash an unknown name is checked against: same costs, a password nobody
	 * knows (random, forgotten at once). */
	if ((st = crypto_random(dummy_pw, sizeof(dummy_pw))) != HV_OK ||
	    (st = crypto_pwhash_with(ps->p_dummy_hash, (const char *) dummy_pw, sizeof(dummy_pw),
	         ps->p_pwhash_ln, CRYPTO_PWHASH_R, CRYPTO_PWHASH_P)) != HV_OK) {
		goto fail;
	}
	crypto_wipe(dummy_pw, sizeof(dummy_pw));
	if ((st = store_table_open(ps->p_store, "people.persons", &ps->p_persons)) != HV_OK ||
	    (st = store_table_open(ps->p_store, "people.logins", &ps->p_logins)) != HV_OK ||
	    (st = store_table_open(ps->p_store, "people.sessions", &ps->p_sessions)) != HV_OK) {
		goto fail;
	}
	*out = ps;
	return (HV_OK);
fail:
	people_close(ps);
	return (st);
}

void
people_close(people_service *ps)
{
	if (ps == NULL) {
		return;
	}
	pthread_mutex_destroy(&ps->p_mu);
	pthread_cond_destroy(&ps->p_cv);
	limit_close(ps->p_attempts);
	free(ps->p_throttles);
	crypto_wipe(ps, sizeof(*ps));
	free(ps);
}

uint64_t
people_signin_failures(people_service *ps, const char *cause)
{
	for (int i = 0; ps != NULL && cause != NULL && i < PF_N; i++) {
		if (strcmp(cause, people_cause_names[i]) == 0) {
			return (__atomic_load_n(&ps->p_failures[i], __ATOMIC_RELAXED));
		}
	}
	return (0);
}

hv_status
people_audit_change(people_service *ps, store_txn *txn, rpc_call *call,
    const uint8_t id[PEOPLE_ID_LEN])
{
	audit_entry e;

	if (ps->p_audit == NULL) {
		return (HV_OK);
	}
	audit_entry_fill(&e, rpc_call_caller(call), rpc_call_method(call), NULL, NULL,
	    ps->p_now_ms());
	people_id_format(id, e.purpose); /* which person: as the directory names its target */
	return (audit_append(ps->p_audit, txn, &e));
}

/* ---- fields ---------------------------------------------------------------------------- */

bool
people_login_fold(const char *in, char out[PEOPLE_LOGIN_MAX + 1])
{
	size_t n;

	if (in == NULL) {
		return (false);
	}
	for (n = 0; in[n] != '\0'; n++) {
		char c = in[n];
		if (n == PEOPLE_LOGIN_MAX) {
			return (false);
		}
		if (c >= 'A' && c <= 'Z') {
			c = (char) (c - 'A' + 'a');
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		        c == '@' || c == '-')) {
			return (false);
		}
		out[n] = c;
	}
	out[n] = '\0';
	return (n >= PEOPLE_LOGIN_MIN);
}

/* Login names belong to their organisation: NAME@ORG. A name can then collide only with a
 * name of the admin's own organisation, which the admin lists anyway; a node-wide namespace
 * told any org admin whether a login name existed anywhere on the node (docs/people.md).
 * Here the rules of NAME and of the suffix; the characters and the whole length are
 * people_login_fold's. */
const char *
people_login_qualify(const char *in, const char *org, char out[PEOPLE_LOGIN_MAX + 1])
{
	static const char rule[] = "login must be NAME or NAME@ORG with ORG the person's "
	                           "organisation, NAME 1 to 64 characters of a-z 0-9 . _ -";
	size_t            name, orgn = strlen(org), i;
	char              buf[PEOPLE_LOGIN_MAX + 2];
	bool              ok;

	if (in == NULL || (name = strcspn(in, "@")) == 0 || name > PEOPLE_LOGIN_NAME_MAX) {
		return (rule);
	}
	if (in[name] == '@') { /* the organisation may be written in capitals, as the name */
		if (strlen(in + name + 1) != orgn) {
			return (rule);
		}
		for (i = 0; i < orgn; i++) {
			if (tolower((unsigned char) in[name + 1 + i]) != org[i]) {
				return (rule);
			}
		}
	}
	/* NAME@ORG, folded: people_login_fold refuses a character of NAME and a whole too long
	 * (buf holds a login and one character more: one too long, cut there, is still too long) */
	snprintf(buf, sizeof(buf), "%.*s@%s", (int) name, in, org);
	ok = people_login_fold(buf, out);
	crypto_wipe(buf, sizeof(buf));
	return (ok ? NULL : rule);
}

void
people_login_key(const people_service *ps, const char *name, uint8_t out[CRYPTO_HMAC_LEN])
{
	crypto_hmac_sha256(out, ps->p_name_key, sizeof(ps->p_name_key), name, strlen(name));
}

/* Associated data of a sealed field: the field's name, a NUL and the person's id, so that a
 * field moved to another person or another field does not open. */
static size_t
seal_aad(uint8_t *aad, const uint8_t id[PEOPLE_ID_LEN], const char *field)
{
	size_t n = strlen(field);

	memcpy(aad, field, n);
	aad[n] = 0;
	memcpy(aad + n + 1, id, PEOPLE_ID_LEN);
	return (n + 1 + PEOPLE_ID_LEN);
}

hv_status
people_seal(const people_service *ps, const uint8_t id[PEOPLE_ID_LEN], const char *field,
    const void *in, size_t n, uint8_t *out)
{
	uint8_t   aad[16 + PEOPLE_ID_LEN];
	size_t    aadlen = seal_aad(aad, id, field);
	hv_status st;

	if ((st = crypto_random(out, CRYPTO_AEAD_NONCE_LEN)) != HV_OK) {
		return (st);
	}
	return (crypto_aead_encrypt(out + PEOPLE_SEAL_OVERHEAD, out + CRYPTO_AEAD_NONCE_LEN,
	    ps->p_seal_key, out, aad, aadlen, in, n));
}

hv_status
people_open_field(const people_service *ps, const uint8_t id[PEOPLE_ID_LEN], const char *field,
    const ProtobufCBinaryData *sealed, uint8_t *out, size_t outsz, size_t *n)
{
	uint8_t aad[16 + PEOPLE_ID_LEN];
	size_t  aadlen = seal_aad(aad, id, field);

	if (sealed->len < PEOPLE_SEAL_OVERHEAD || sealed->len - PEOPLE_SEAL_OVERHEAD > outsz) {
		return (HV_DATA_LOSS);
	}
	*n = sealed->len - PEOPLE_SEAL_OVERHEAD;
	return (crypto_aead_decrypt(out, ps->p_seal_key, sealed->data,
	    sealed->data + CRYPTO_AEAD_NONCE_LEN, aad, aadlen, sealed->data + PEOPLE_SEAL_OVERHEAD,
	    *n));
}

/* ---- records --------------------------------------------------------------------------- */

hv_status
people_get(people_service *ps, store_txn *txn, const uint8_t id[PEOPLE_ID_LEN],
    Haven__People__V1__PersonRecord **out)
{
	ProtobufCMessage *m = NULL;
	hv_status         st;

	*out = NULL;
	st   = store_get_msg(txn, ps->p_persons, id, PEOPLE_ID_LEN,
	      &haven__people__v1__person_record__descriptor, NULL, &m);
	if (st == HV_OK) {
		*out = (Haven__People__V1__PersonRecord *) (void *) m;
		if ((*out)->id.len != PEOPLE_ID_LEN ||
		    memcmp((*out)->id.data, id, PEOPLE_ID_LEN) != 0) {
			haven__people__v1__person_record__free_unpacked(*out, NULL);
			*out = NULL;
			st   = HV_DATA_LOSS;
		}
	}
	return (st);
}

hv_status
people_put(people_service *ps, store_txn *txn, const Haven__People__V1__PersonRecord *rec)
{
	return (store_put_msg(txn, ps->p_persons, rec->id.data, PEOPLE_ID_LEN, &rec->base));
}

int
people_id_parse(const char *hex, uint8_t id[PEOPLE_ID_LEN])
{
	if (hex == NULL || strlen(hex) != 2 * PEOPLE_ID_LEN) {
		return (-1);
	}
	for (size_t i = 0; i < PEOPLE_ID_LEN; i++) {
		unsigned v = 0;
		for (int j = 0; j < 2; j++) {
			char c = hex[2 * i + (size_t) j];
			v <<= 4;
			if (c >= '0' && c <= '9') {
				v |= (unsigned) (c - '0');
			} else if (c >= 'a' && c <= 'f') {
				v |= (unsigned) (c - 'a' + 10);
			} else {
				return (-1);
			}
		}
		id[i] = (uint8_t) v;
	}
	return (0);
}

void
people_id_format(const uint8_t id[PEOPLE_ID_LEN], char hex[RPC_PERSON_ID_MAX])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < PEOPLE_ID_LEN; i++) {
		hex[2 * i]     = digits[id[i] >> 4];
		hex[2 * i + 1] = digits[id[i] & 15];
	}
	hex[2 * PEOPLE_ID_LEN] = '\0';
}

/* ---- password hashes, two at a time ------------------------------------------------------ */

/* false when HASHES_AT_ONCE run and HASHES_WAITING wait already. */
static bool
hashing_enter(people_service *ps)
{
	pthread_mutex_lock(&ps->p_mu);
	if (ps->p_hashing >= HASHES_AT_ONCE && ps->p_hash_waiting >= HASHES_WAITING) {
		pthread_mutex_unlock(&ps->p_mu);
		return (false);
	}
	ps->p_hash_waiting++;
	while (ps->p_hashing >= HASHES_AT_ONCE) {
		pthread_cond_wait(&ps->p_cv, &ps->p_mu);
	}
	ps->p_hash_waiting--;
	ps->p_hashing++;
	pthread_mutex_unlock(&ps->p_mu);
	return (true);
}

static void
hashing_leave(people_service *ps)
{
	pthread_mutex_lock(&ps->p_mu);
	ps->p_hashing--;
	pthread_cond_signal(&ps->p_cv);
	pthread_mutex_unlock(&ps->p_mu);
}

hv_status
people_pwhash(people_service *ps, char out[CRYPTO_PWHASH_MAX], const char *pw, size_t n)
{
	hv_status st;

	if (!hashing_enter(ps)) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	st = crypto_pwhash_with(out, pw, n, ps->p_pwhash_ln, CRYPTO_PWHASH_R, CRYPTO_PWHASH_P);
	hashing_leave(ps);
	return (st);
}

hv_status
people_pwverify(people_service *ps, const char *encoded, const char *pw, size_t n)
{
	hv_status st;

	if (!hashing_enter(ps)) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	st = crypto_pwhash_verify(encoded, pw, n);
	hashing_leave(ps);
	return (st == HV_OK ? HV_OK : HV_UNAUTHENTICATED);
}
