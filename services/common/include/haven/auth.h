/*
 * auth.h - organisation identity: challenges, session tokens, and the Auth service.
 *
 * Debian's nng 1.5.2 cannot tell which certificate a TLS peer presented, so identity is
 * proven in the application (proto/haven/auth/v1/auth.proto):
 *
 *   Challenge(org_id)  -> nonce = random(16) || expiry(8, ms, big-endian) || HMAC(challenge
 *                         key, "chal" || random || expiry || org_id)[0..16]; 60 s. The
 *                         challenge key is random per process and never stored: a process
 *                         verifies only its own challenges (a client signs in over one
 *                         channel, to one process), and each nonce is accepted once (a used-
 *                         nonce set in memory, at most AUTH_USED_NONCES_MAX, each kept until
 *                         its expiry).
 *   Authenticate(org_id, nonce, signature)
 *                      -> checks the nonce, looks the organisation up in the directory,
 *                         checks its certificate against the node CA now (crypto_cert_check:
 *                         chain, validity dates, CN = org_id), verifies the signature of
 *                         "haven-auth-v1" || nonce || org_id with the certificate's key, that
 *                         the organisation is enabled with a role that may sign in, and issues
 *                         a session token.
 *   token   = "v2." base64url(payload) "." base64url(HMAC-SHA256(token key kid, payload))
 *   payload = kid(4) || role(1) || issued_at(8) || expires_at(8) || version(8) ||
 *             cert_sha256(32) || org_id          (integers big-endian, times Unix ms)
 *
 * Every call after that carries the token as `authorization` metadata. auth_verify_token()
 * checks the MAC with the key named by kid, the lifetime against the node's own maximum
 * (token_ttl_s, whatever the token claims: issued_at no later than now + AUTH_CLOCK_SKEW_MS,
 * expires_at - issued_at at most the maximum, now before expires_at), and asks the directory
 * again: the organisation must be enabled, with the token's role, at the token's record
 * version and with the token's certificate. Any change of the organisation's record (its
 * certificate, disabling and re-enabling, its role) adds to its version and so revokes every
 * token issued before, at once.
 *
 * Every failure of Challenge or Authenticate that depends on the organisation answers the same
 * UNAUTHENTICATED "sign-in failed" (malformed requests are INVALID_ARGUMENT, whatever the
 * organisation): the cause goes to a log line (organisation id and cause) and to the counter
 * haven_auth_signin_failures_total{cause}. An unknown organisation or one without a
 * certificate costs the same certificate check and signature verification (over the CA
 * certificate) as a bad signature.
 *
 * Token keys: 32 random bytes with a random 4-byte key id. The current key signs; it is
 * replaced after token_ttl_s, and the previous key then verifies only tokens issued before it
 * was replaced (so a leaked key cannot mint new tokens after the rotation) until the next
 * rotation drops it. The processes of a node share the keys through a key file,
 * DATA/keys/token-keys (0600): one or two 44-byte records kid(4) || became_current_ms(8) ||
 * key(32), the current key first, replaced whole (rename) under an exclusive flock on
 * DATA/keys/token-keys.lock. A process re-reads the file when it changed (checked at most once
 * a second, and at once for an unknown key id). The file is not part of a backup: a restored
 * node makes a new one, so tokens issued before the restore fail.
 *
 * People's sessions (services/people): a token starting with AUTH_SESSION_PREFIX ("hs1.") is
 * a person's session, kept server-side by the people service, which registers its verifier
 * with auth_set_session_verifier. auth_verify_token hands such a token to it, then asks the
 * directory as for an organisation's token: the organisation must be enabled, with a role that
 * may sign in, at the record version the session was bound to at sign-in. The caller then has
 * the organisation's role and id, and the person (rpc_caller.person). auth_person_allows is
 * the one per-person check the server makes before a handler runs: a viewer reads only.
 */
#ifndef HAVEN_AUTH_H
#define HAVEN_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "haven/rpc.h"
#include "haven/status.h"

#define AUTH_SECRET_LEN      32
#define AUTH_NONCE_LEN       40
#define AUTH_TOKEN_MAX       256
#define AUTH_SIGNED_PREFIX   "haven-auth-v1"
#define AUTH_USED_NONCES_MAX 4096         /* Authenticate calls per challenge ttl, at most */
#define AUTH_CLOCK_SKEW_MS   5000         /* how far in the future a token's issued_at may be */
#define AUTH_KEY_FILE        "token-keys" /* under DATA/keys/ */

/* What the partner directory says about an organisation. */
typedef struct auth_org {
	rpc_role role;
	bool     enabled;
	char    *cert_pem; /* malloc'd by the lookup, freed by auth; NULL when none registered */
	size_t   cert_pem_len;
	uint64_t version;         /* the record's version: changes with every change of it */
	char     cert_sha256[65]; /* hex fingerprint of cert_pem; "": auth computes it */
} auth_org;

/* Looks an organisation up: HV_OK with *out filled, HV_NOT_FOUND, or another failure (then
 * *out is ignored and not freed). Called from handler threads, possibly several at once. */
typedef hv_status (*auth_lookup_fn)(void *arg, const char *org_id, auth_org *out);

typedef struct auth_options {
	/* The shared token-key file (DATA/keys/token-keys), created when missing; its directory
	 * must exist. NULL: the keys live in this process only, the first one being secret. */
	const char *key_file;
	uint8_t     secret[AUTH_SECRET_LEN]; /* the first token key when key_file is NULL */
	/* The node CA (tls_ca): certificates that sign in must chain to it. NULL: nobody can
	 * sign in (tokens from auth_issue_token still verify). */
	const char    *ca_file;
	uint32_t       token_ttl_s;     /* 0: 3600; also the key rotation period */
	uint32_t       challenge_ttl_s; /* 0: 60 */
	auth_lookup_fn lookup;
	void          *lookup_arg;
} auth_options;

/* Creates the authenticator; the secret is copied (and wiped on free). Without a key_file an
 * all-zero secret (one never loaded) is HV_INVALID_ARGUMENT, as is a NULL lookup. A key file
 * readable by group or others is HV_PERMISSION_DENIED, a damaged one HV_DATA_LOSS (it is
 * never replaced), a CA file that cannot be read its read error. */
hv_status auth_open(auth **out, const auth_options *opts);
void      auth_close(auth *a);

/* Registers haven.auth.v1.Auth (Challenge, Authenticate; callable by anyone) on srv, and
 * haven_auth_signin_failures_total on its metrics (a must outlive srv). */
hv_status auth_register(auth *a, rpc_server *srv);

/* Verifies a token and fills caller->role and caller->org_id (caller may be NULL).
 * HV_UNAUTHENTICATED for a forged, altered, malformed or expired token, one whose lifetime
 * exceeds the node's maximum, one under a key that is gone or was retired before it was
 * issued, or an organisation that is unknown or disabled now or whose record (version, role,
 * certificate) is no longer the token's; the lookup's own status when the directory fails.
 * now_ms is Unix time in milliseconds. May rotate the token key (see above). */
hv_status auth_verify_token(auth *a, const char *token, int64_t now_ms, rpc_caller *caller);

/* As auth_verify_token, except that a person's session is not counted as used: its idle clock
 * does not move (people.h). For calls no person made: a page's own refresh, an event stream's
 * poll (rpc.h, RPC_MD_ACTIVITY). An organisation's token is verified the same either way. */
hv_status auth_verify_token_passive(auth *a, const char *token, int64_t now_ms, rpc_caller *caller);

/* Issues a token directly (for the node's own tools and tests), without a signature: the
 * directory is asked only for the organisation's record version and certificate, which the
 * token is bound to (HV_NOT_FOUND for an unknown organisation, the lookup's status when it
 * fails). role must be exactly one of RPC_ROLES_ORGS (never the operator or anonymous);
 * HV_INVALID_ARGUMENT for another role, a bad org_id or now_ms < 0. expires_at_ms may be
 * NULL. */
hv_status auth_issue_token(auth *a, const char *org_id, rpc_role role, int64_t now_ms,
    char out[AUTH_TOKEN_MAX], uint64_t *expires_at_ms);

/* Client side: runs Challenge and Authenticate on ch with the organisation's private key
 * (PEM) and sets the token on the channel. The channel's old token is cleared first, so after
 * a failure it has none. timeout_ms (0: 10000) covers both calls; errmsg names the step that
 * failed and the node's reason (for a refused sign-in only "Authenticate: sign-in failed").
 * Authenticate is sent once: its nonce cannot be used twice. */
hv_status auth_login(rpc_channel *ch, const char *org_id, const char *key_pem, size_t key_pem_len,
    uint32_t timeout_ms, char *errmsg, size_t errsz);

/* ---- people's sessions ----------------------------------------------------------------- */

#define AUTH_SESSION_PREFIX "hs1."

/* What a person's session verifier says about a token it accepted. */
typedef struct auth_session {
	char            org_id[RPC_ORG_ID_MAX];
	uint64_t        org_version; /* the organisation's record version at sign-in */
	char            person_id[RPC_PERSON_ID_MAX];
	rpc_person_role person_role;
} auth_session;

/* Verifies a person's session token (it starts with AUTH_SESSION_PREFIX) at now_ms: HV_OK
 * with *out filled, HV_UNAUTHENTICATED for an unknown, expired, idle or revoked one, or the
 * store's failure. use: the call counts as a use of the session (it holds off the idle
 * timeout); false for a call no person made (auth_verify_token_passive). Called from the
 * server's threads, possibly several at once. */
typedef hv_status (
    *auth_session_fn)(void *arg, const char *token, int64_t now_ms, bool use, auth_session *out);

/* Sets the verifier of people's sessions (NULL: such tokens are refused). Before the server
 * starts; arg must outlive a. */
void auth_set_session_verifier(auth *a, auth_session_fn fn, void *arg);

/* Asks the partner directory about org_id (for the people service: the organisation of a
 * person signing in): HV_OK with *out filled (release it with auth_org_release),
 * HV_NOT_FOUND, HV_INVALID_ARGUMENT for a malformed id, or the lookup's failure. */
hv_status auth_lookup_org(auth *a, const char *org_id, auth_org *out);
void      auth_org_release(auth_org *org);

/* Whether a role may be carried by a session: exactly one organisation role. */
bool auth_role_issuable(rpc_role role);

/* The per-person rule the server applies after the role check (rpc_server.c): true for a
 * caller that is not a person, and for a person whose role within the organisation allows
 * method (a full method name): org admins and case workers call what their organisation's role
 * may; viewers only methods that read (Get*, List*, Find*, Watch*, Check, Verify, Status,
 * Summary, Statistics, Echo, and Logout). What a case worker may not do (manage people) the
 * people service decides. */
bool auth_person_allows(const rpc_caller *caller, const char *method);

/* Sign-in failures by cause since auth_open, for tests and tools (the same figures as the
 * metric). cause is one of the names of the metric's cause label; 0 for another. */
uint64_t auth_signin_failures(auth *a, const char *cause);

#endif
