/*
 * people_internal.h - what the people service's files share: the service's state, its
 * records and the sealing of personal fields. Private to services/people.
 */
#ifndef PEOPLE_INTERNAL_H
#define PEOPLE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "haven/crypto.h"
#include "haven/people/v1/people.pb-c.h"
#include "haven/limit.h"
#include "people.h"

#define PEOPLE_ID_LEN             16
#define PEOPLE_SESSION_SECRET_LEN 32
#define PEOPLE_SEAL_OVERHEAD      (CRYPTO_AEAD_NONCE_LEN + CRYPTO_AEAD_TAG_LEN)
#define PEOPLE_SEALED_MAX         (PEOPLE_DISPLAY_MAX + PEOPLE_SEAL_OVERHEAD)
#define PEOPLE_THROTTLES          4096 /* names and sources whose failures are remembered */
#define PEOPLE_THROTTLE_KEY       64

/* Causes of a failed sign-in: the metric's labels. */
enum {
	PF_UNKNOWN_NAME,
	PF_PASSWORD,
	PF_CODE,
	PF_LOCKED,
	PF_DISABLED,
	PF_ORGANISATION,
	PF_N,
};
extern const char *const people_cause_names[PF_N];

/* Failed sign-ins in a row of one login name (known or not: an unknown name is throttled
 * exactly like a known one, so lockout tells nothing) or one source. */
typedef struct people_throttle {
	uint8_t  pt_key[PEOPLE_THROTTLE_KEY]; /* 'n' || name hash, or 's' || source */
	size_t   pt_keylen;                   /* 0: a free slot */
	uint32_t pt_failures;
	int64_t  pt_locked_until_ms;
	int64_t  pt_last_ms;
} people_throttle;

struct people_service {
	store      *p_store;
	auth       *p_auth;
	audit      *p_audit; /* NULL: changes are not audited */
	store_table p_persons, p_logins, p_sessions;
	uint8_t     p_seal_key[CRYPTO_AEAD_KEY_LEN];
	uint8_t     p_name_key[CRYPTO_HMAC_LEN];
	int64_t     p_idle_ms, p_max_ms;
	unsigned    p_pwhash_ln;
	char        p_dummy_hash[CRYPTO_PWHASH_MAX]; /* verified for unknown names */
	int64_t (*p_now_ms)(void);
	pthread_mutex_t  p_mu; /* p_throttles, p_hashing */
	pthread_cond_t   p_cv;
	unsigned         p_hashing;        /* password hashes running now, at most 2 */
	unsigned         p_hash_waiting;   /* threads waiting to hash, at most 2 */
	people_throttle *p_throttles;      /* PEOPLE_THROTTLES of them */
	limit           *p_attempts;       /* sign-in attempts per client address (limit.h) */
	uint64_t         p_failures[PF_N]; /* atomic */
};

/* ---- people.c: records and fields ---- */

/* Appends the audit entry of a change of person id by call's caller, in txn (nothing without
 * an audit log). */
hv_status people_audit_change(people_service *ps, store_txn *txn, rpc_call *call,
    const uint8_t id[PEOPLE_ID_LEN]);

/* The keyed hash a login name is found by; name must be folded (people_login_fold). */
void people_login_key(const people_service *ps, const char *name, uint8_t out[CRYPTO_HMAC_LEN]);
/* A login name: PEOPLE_LOGIN_MIN..MAX of [a-z0-9._@-] after folding A-Z; folded into out. */
bool people_login_fold(const char *in, char out[PEOPLE_LOGIN_MAX + 1]);
/* A new person's login name of organisation org: "NAME" or "NAME@ORG", NAME 1..64 of
 * [a-z0-9._-] after folding, written to out as NAME@ORG (a login name: people_login_fold).
 * NULL when well-formed, else the rule (naming org only: the same answer for every name). */
const char *people_login_qualify(const char *in, const char *org, char out[PEOPLE_LOGIN_MAX + 1]);

/* Seals n bytes of a field ("login", "display", "totp") of person id into out (n +
 * PEOPLE_SEAL_OVERHEAD bytes). */
hv_status people_seal(const people_service *ps, const uint8_t id[PEOPLE_ID_LEN], const char *field,
    const void *in, size_t n, uint8_t *out);
/* Opens a sealed field into out (outsz >= len - PEOPLE_SEAL_OVERHEAD); *n its length.
 * HV_DATA_LOSS when it does not authenticate. */
hv_status people_open_field(const people_service *ps, const uint8_t id[PEOPLE_ID_LEN],
    const char *field, const ProtobufCBinaryData *sealed, uint8_t *out, size_t outsz, size_t *n);

/* The record of person id (caller frees with haven__people__v1__person_record__free_unpacked).
 * HV_NOT_FOUND, HV_DATA_LOSS. */
hv_status people_get(people_service *ps, store_txn *txn, const uint8_t id[PEOPLE_ID_LEN],
    Haven__People__V1__PersonRecord **out);
hv_status people_put(people_service *ps, store_txn *txn,
    const Haven__People__V1__PersonRecord *rec);

/* Person ids as 32 lower-case hex characters. */
int  people_id_parse(const char *hex, uint8_t id[PEOPLE_ID_LEN]);
void people_id_format(const uint8_t id[PEOPLE_ID_LEN], char hex[RPC_PERSON_ID_MAX]);

/* Hashes a password with the service's cost, at most two at a time (HV_RESOURCE_EXHAUSTED
 * when two more wait already). */
hv_status people_pwhash(people_service *ps, char out[CRYPTO_PWHASH_MAX], const char *pw, size_t n);
/* Verifies a password against encoded (a dummy hash for an unknown name), at most two at a
 * time: HV_OK, HV_UNAUTHENTICATED, or HV_RESOURCE_EXHAUSTED when two more wait already. */
hv_status people_pwverify(people_service *ps, const char *encoded, const char *pw, size_t n);

/* ---- people_session.c: sessions ---- */

/* Makes a session for rec (org at org_version) in txn: token out, *expires set. */
hv_status people_session_new(people_service *ps, store_txn *txn,
    const Haven__People__V1__PersonRecord *rec, uint64_t org_version, int64_t now_ms, char *out,
    size_t outsz, int64_t *expires);
/* Deletes every session of person id in txn (disable, reset). */
hv_status people_sessions_end(people_service *ps, store_txn *txn, const uint8_t id[PEOPLE_ID_LEN]);
/* Deletes every session that ended by time at now_ms (at each sign-in). */
hv_status people_sessions_sweep(people_service *ps, store_txn *txn, int64_t now_ms);
/* Ends the session of token (Logout): *found tells whether there was one. */
hv_status people_session_end(people_service *ps, const char *token, bool *found);

/* ---- people_login.c ---- */

/* The throttle key of a login name (folded), whether it is locked out now, and unlocking it
 * (ResetPerson). */
void people_name_throttle_key(const people_service *ps, const char *folded,
    uint8_t key[1 + CRYPTO_HMAC_LEN]);
bool people_name_locked(people_service *ps, const uint8_t key[1 + CRYPTO_HMAC_LEN], int64_t now_ms);
void people_name_unlock(people_service *ps, const uint8_t key[1 + CRYPTO_HMAC_LEN]);

/* The Login handler's work: HV_OK with *resp filled (allocated in call), or the status to
 * answer (the message set). */
hv_status people_login(people_service *ps, rpc_call *call,
    const Haven__People__V1__LoginRequest *req, Haven__People__V1__LoginResponse *resp);

#endif
