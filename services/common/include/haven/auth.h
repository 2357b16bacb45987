/*
 * auth.h - organisation identity: challenges, session tokens, and the Auth service.
 *
 * Debian's nng 1.5.2 cannot tell which certificate a TLS peer presented, so identity is
 * proven in the application (proto/haven/auth/v1/auth.proto):
 *
 *   Challenge(org_id)  -> nonce = random(16) || expiry(8, ms, big-endian) || HMAC(secret,
 *                         "chal" || random || expiry || org_id)[0..16]; stateless, 60 s.
 *   Authenticate(org_id, nonce, signature)
 *                      -> checks the nonce's MAC and expiry, looks the organisation up in the
 *                         directory (enabled, certificate), verifies the signature of
 *                         "haven-auth-v1" || nonce || org_id with the certificate's public key,
 *                         and issues a session token.
 *   token = "v1." base64url(payload) "." base64url(HMAC-SHA256(secret, payload))
 *           payload = role(1) || expiry(8, ms, big-endian) || org_id
 *
 * Every call after that carries the token as `authorization` metadata; auth_verify_token()
 * checks the MAC and expiry, and asks the directory again so that a disabled organisation is
 * refused at once, also with a token it obtained before. The role comes from the directory,
 * never from what the client says.
 */
#ifndef HAVEN_AUTH_H
#define HAVEN_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "haven/rpc.h"
#include "haven/status.h"

#define AUTH_SECRET_LEN 32
#define AUTH_NONCE_LEN 40
#define AUTH_TOKEN_MAX 256
#define AUTH_SIGNED_PREFIX "haven-auth-v1"

/* What the partner directory says about an organisation. */
typedef struct auth_org {
	rpc_role role;
	bool     enabled;
	char    *cert_pem; /* malloc'd by the lookup, freed by auth; NULL when none registered */
	size_t   cert_pem_len;
} auth_org;

/* Looks an organisation up: HV_OK with *out filled, HV_NOT_FOUND, or another failure (then
 * *out is ignored and not freed). Called from handler threads, possibly several at once. */
typedef hv_status (*auth_lookup_fn)(void *arg, const char *org_id, auth_org *out);

typedef struct auth_options {
	uint8_t        secret[AUTH_SECRET_LEN]; /* node secret for challenges and tokens */
	uint32_t       token_ttl_s;             /* 0: 3600 */
	uint32_t       challenge_ttl_s;         /* 0: 60 */
	auth_lookup_fn lookup;
	void          *lookup_arg;
} auth_options;

/* Creates the authenticator; the secret is copied (and wiped on free). An all-zero secret
 * (one never loaded) or a NULL lookup is HV_INVALID_ARGUMENT. */
hv_status auth_open(auth **out, const auth_options *opts);
void auth_close(auth *a);

/* Registers haven.auth.v1.Auth (Challenge, Authenticate; callable by anyone) on srv. */
hv_status auth_register(auth *a, rpc_server *srv);

/* Verifies a token and fills caller->role and caller->org_id (caller may be NULL).
 * HV_UNAUTHENTICATED for a forged, altered, malformed or expired token, or an organisation
 * that is unknown or disabled now or whose role is no longer the token's; the lookup's own
 * status when the directory fails. now_ms is Unix time in milliseconds. */
hv_status auth_verify_token(auth *a, const char *token, int64_t now_ms, rpc_caller *caller);

/* Issues a token directly (for the node's own tools and tests), without asking the
 * directory. role must be exactly one of RPC_ROLES_ORGS (never the operator or anonymous);
 * HV_INVALID_ARGUMENT for another role, a bad org_id or now_ms < 0. expires_at_ms may be
 * NULL. */
hv_status auth_issue_token(auth *a, const char *org_id, rpc_role role, int64_t now_ms,
    char out[AUTH_TOKEN_MAX], uint64_t *expires_at_ms);

/* Client side: runs Challenge and Authenticate on ch with the organisation's private key
 * (PEM) and sets the token on the channel. The channel's old token is cleared first, so after
 * a failure it has none. timeout_ms (0: 10000) covers both calls; errmsg names the step that
 * failed and the node's reason. */
hv_status auth_login(rpc_channel *ch, const char *org_id, const char *key_pem,
    size_t key_pem_len, uint32_t timeout_ms, char *errmsg, size_t errsz);

/* Loads the node secret from path, creating it (0600, random) when missing. A file readable
 * by group or others is refused with HV_PERMISSION_DENIED, one of the wrong size with
 * HV_DATA_LOSS (it is never replaced). */
hv_status auth_load_secret(const char *path, uint8_t secret[AUTH_SECRET_LEN]);

/* Unix time in milliseconds. */
int64_t auth_now_ms(void);

#endif
