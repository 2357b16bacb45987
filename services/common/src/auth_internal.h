/*
 * auth_internal.h - what auth_rpc.c (the Auth service and its client side) uses of auth.c
 * (the token and challenge core). Private to libhaven: not installed, not for services.
 * Functions named auth__ are internal; they take the lengths their callers checked.
 */
#ifndef HAVEN_AUTH_INTERNAL_H
#define HAVEN_AUTH_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "haven/auth.h"
#include "haven/crypto.h"

#define NONCE_RANDOM_LEN 16
#define NONCE_EXPIRY_LEN 8
#define NONCE_MAC_LEN    (AUTH_NONCE_LEN - NONCE_RANDOM_LEN - NONCE_EXPIRY_LEN) /* 16 */
#define ORG_ID_MAX_LEN   (RPC_ORG_ID_MAX - 1)                                   /* 63 */
#define FP_LEN           CRYPTO_SHA256_LEN
/* kid(4) || role(1) || issued_at(8) || expires_at(8) || version(8) || cert_sha256(32) */
#define P_KID                    0
#define P_ROLE                   4
#define P_IAT                    5
#define P_EXP                    13
#define P_VERSION                21
#define P_FP                     29
#define P_ORG                    (P_FP + FP_LEN)
#define PAYLOAD_MIN_LEN          (P_ORG + 1)
#define PAYLOAD_MAX_LEN          (P_ORG + ORG_ID_MAX_LEN)
#define TOKEN_PREFIX             "v2."
#define SIGNATURE_MAX            1024
#define DEFAULT_TOKEN_TTL_S      3600
#define DEFAULT_CHALLENGE_TTL_S  60
#define LOGIN_DEFAULT_TIMEOUT_MS 10000
#define KEY_RECORD_LEN           (4 + 8 + AUTH_SECRET_LEN)
#define KEY_CHECK_MS             1000 /* how often the key file is looked at for a change */
#define CA_FILE_MAX              (256 * 1024)

#define METHOD_CHALLENGE    "haven.auth.v1.Auth/Challenge"
#define METHOD_AUTHENTICATE "haven.auth.v1.Auth/Authenticate"

/* Causes of a failed sign-in: the metric's label values and the log's words. */
enum {
	CAUSE_CHALLENGE,
	CAUSE_REPLAYED,
	CAUSE_UNKNOWN,
	CAUSE_NO_CERT,
	CAUSE_NO_CA,
	CAUSE_CERT,
	CAUSE_SIGNATURE,
	CAUSE_DISABLED,
	CAUSE_ROLE,
	CAUSE_BUSY,
	CAUSE_N,
	CAUSE_DIRECTORY = CAUSE_N, /* not a sign-in failure: the directory cannot be read */
};

extern const char *const auth__cause_names[CAUSE_N];

/* Largest message a client signs: "haven-auth-v1" || nonce || org_id. */
#define SIGNED_MAX (sizeof(AUTH_SIGNED_PREFIX) - 1 + AUTH_NONCE_LEN + ORG_ID_MAX_LEN)

/* An organisation id is 1..63 bytes of [A-Za-z0-9._-]. Sets *lenp when valid. */
bool auth__org_id_valid(const char *s, size_t *lenp);

/* Frees what a directory lookup put in org (its certificate). */
static inline void
auth__org_release(auth_org *org)
{
	free(org->cert_pem);
	org->cert_pem     = NULL;
	org->cert_pem_len = 0;
}

/* Roles a token may carry: exactly one organisation role. Never the operator (that is a
 * local peer, decided by the transport) and never anonymous. */
static inline bool
auth__role_issuable(unsigned role)
{
	return (role != 0 && (role & (role - 1)) == 0 && (role & RPC_ROLES_ORGS) == role);
}

/* A fresh challenge nonce for org_id (orglen checked), valid until *expiry_ms. */
hv_status auth__challenge_make(auth *a, const char *org_id, size_t orglen, int64_t now_ms,
    uint8_t nonce[AUTH_NONCE_LEN], int64_t *expiry_ms);

/* What the client signs: "haven-auth-v1" || nonce || org_id into buf (SIGNED_MAX bytes).
 * Returns its length. */
size_t auth__signed_message(uint8_t *buf, const uint8_t *nonce, const char *org_id, size_t orglen);

/* The checks of a well-formed Authenticate: -1 when the organisation may sign in (org then
 * holds its directory entry, to release), else a CAUSE_, or CAUSE_DIRECTORY with *dir_st set.
 * why (whysz) receives the certificate check's reason. */
int auth__signin_check(auth *a, const char *org_id, size_t orglen,
    const uint8_t nonce[AUTH_NONCE_LEN], const uint8_t *sig, size_t siglen, int64_t now_ms,
    auth_org *org, hv_status *dir_st, char *why, size_t whysz);

/* Counts a failed sign-in by cause and logs it (organisation id and cause, never a secret). */
void auth__signin_note(auth *a, const char *org_id, int cause, const char *why);

/* Makes a token for org_id (orglen checked) with role, bound to org's version and
 * certificate. */
hv_status auth__token_make(auth *a, const char *org_id, size_t orglen, unsigned role,
    const auth_org *org, int64_t now_ms, char out[AUTH_TOKEN_MAX], uint64_t *expires_at_ms);

/* A person's session token (AUTH_SESSION_PREFIX): fn (NULL: none registered) verifies it,
 * then the directory (lookup) is asked about its organisation (auth_person.c). As
 * auth_verify_token; use as auth_session_fn's. */
hv_status auth__session_verify(auth_session_fn fn, void *arg, auth_lookup_fn lookup,
    void *lookup_arg, const char *token, int64_t now_ms, bool use, rpc_caller *caller);

#endif
