/*
 * auth.c - organisation identity: stateless challenges, HMAC session tokens, the
 * haven.auth.v1.Auth service and its client side (see auth.h for the formats).
 *
 * Nothing is kept per session on the node. A challenge carries its own expiry and a MAC
 * that binds it to one organisation id; a token carries role, expiry and organisation id
 * under a MAC by the node secret. Both MACs use the same secret; they cannot be confused
 * because a challenge's MAC input starts with "chal" (0x63), which is never a role byte
 * (roles are single bits, at most 0x40), and the two MACs differ in length.
 *
 * What is trusted: only the node secret and the partner directory. The role in a token is
 * the directory's at issue time, and every verification asks the directory again, so a
 * disabled organisation or one whose role changed loses its tokens at once.
 *
 * Messages returned to callers name the problem and the organisation id (an id, never
 * personal data), and never a secret, a nonce, a token or a signature.
 */
#include "haven/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "haven/auth/v1/auth.pb-c.h"
#include "haven/crypto.h"
#include "haven/log.h"

#define NONCE_RANDOM_LEN 16
#define NONCE_EXPIRY_LEN 8
#define NONCE_MAC_LEN (AUTH_NONCE_LEN - NONCE_RANDOM_LEN - NONCE_EXPIRY_LEN) /* 16 */
#define ORG_ID_MAX_LEN (RPC_ORG_ID_MAX - 1)                                 /* 63 */
#define PAYLOAD_MIN_LEN (1 + 8 + 1)
#define PAYLOAD_MAX_LEN (1 + 8 + ORG_ID_MAX_LEN)
#define TOKEN_PREFIX "v1."
#define SIGNATURE_MAX 1024
#define DEFAULT_TOKEN_TTL_S 3600
#define DEFAULT_CHALLENGE_TTL_S 60
#define LOGIN_DEFAULT_TIMEOUT_MS 10000

#define METHOD_CHALLENGE "haven.auth.v1.Auth/Challenge"
#define METHOD_AUTHENTICATE "haven.auth.v1.Auth/Authenticate"

struct auth {
	uint8_t        a_secret[AUTH_SECRET_LEN];
	int64_t        a_token_ttl_ms;
	int64_t        a_challenge_ttl_ms;
	auth_lookup_fn a_lookup;
	void          *a_lookup_arg;
};

_Static_assert(NONCE_MAC_LEN == 16, "nonce layout: random(16) || expiry(8) || mac(16)");
_Static_assert(
    sizeof(TOKEN_PREFIX) - 1 + 4 * ((PAYLOAD_MAX_LEN + 2) / 3) + 1 + 4 * ((CRYPTO_HMAC_LEN + 2) / 3) <
        AUTH_TOKEN_MAX,
    "the longest token fits in AUTH_TOKEN_MAX");

/* ---- helpers -------------------------------------------------------------------------- */

/* An organisation id is 1..63 bytes of [A-Za-z0-9._-]. Sets *lenp when valid. */
static bool
org_id_valid(const char *s, size_t *lenp)
{
	size_t n;

	if (s == NULL) {
		return (false);
	}
	for (n = 0; s[n] != '\0'; n++) {
		char c = s[n];
		if (n == ORG_ID_MAX_LEN ||
		    !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		        c == '.' || c == '_' || c == '-')) {
			return (false);
		}
	}
	if (n == 0) {
		return (false);
	}
	if (lenp != NULL) {
		*lenp = n;
	}
	return (true);
}

/* Roles a token may carry: exactly one organisation role. Never the operator (that is a
 * local peer, decided by the transport) and never anonymous. */
static bool
role_issuable(unsigned role)
{
	return (role != 0 && (role & (role - 1)) == 0 && (role & RPC_ROLES_ORGS) == role);
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t) v;
		v >>= 8;
	}
}

static uint64_t
get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++) {
		v = v << 8 | p[i];
	}
	return (v);
}

/* MAC of a challenge: HMAC(secret, "chal" || random || expiry || org_id), first 16 bytes. */
static void
challenge_mac(const auth *a, const uint8_t *random_expiry, const char *org_id, size_t orglen,
    uint8_t mac[NONCE_MAC_LEN])
{
	uint8_t buf[4 + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN + ORG_ID_MAX_LEN];
	uint8_t full[CRYPTO_HMAC_LEN];

	memcpy(buf, "chal", 4);
	memcpy(buf + 4, random_expiry, NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN);
	memcpy(buf + 4 + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN, org_id, orglen);
	crypto_hmac_sha256(full, a->a_secret, sizeof(a->a_secret), buf,
	    4 + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN + orglen);
	memcpy(mac, full, NONCE_MAC_LEN);
	crypto_wipe(full, sizeof(full));
}

/*
 * Checks a nonce from Challenge for org_id: MAC first (nothing in it is trusted before),
 * then expiry. Returns HV_OK or HV_UNAUTHENTICATED with *why set to a static reason.
 */
static hv_status
challenge_check(const auth *a, const uint8_t nonce[AUTH_NONCE_LEN], const char *org_id,
    size_t orglen, int64_t now_ms, const char **why)
{
	uint8_t  mac[NONCE_MAC_LEN];
	uint64_t expiry;

	challenge_mac(a, nonce, org_id, orglen, mac);
	if (!crypto_equal(mac, nonce + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN, sizeof(mac))) {
		*why = "challenge was not issued by this node for this organisation";
		return (HV_UNAUTHENTICATED);
	}
	expiry = get_be64(nonce + NONCE_RANDOM_LEN);
	if (now_ms < 0 || expiry <= (uint64_t) now_ms) {
		*why = "challenge expired";
		return (HV_UNAUTHENTICATED);
	}
	return (HV_OK);
}

/* Asks the directory about org_id. On HV_OK the caller owns org->cert_pem. */
static hv_status
lookup(const auth *a, const char *org_id, auth_org *org)
{
	hv_status st;

	memset(org, 0, sizeof(*org));
	st = a->a_lookup(a->a_lookup_arg, org_id, org);
	if (st != HV_OK) {
		/* On failure *org is not ours to free (auth.h): forget whatever is in it. */
		memset(org, 0, sizeof(*org));
	}
	return (st);
}

static void
org_release(auth_org *org)
{
	free(org->cert_pem);
	org->cert_pem     = NULL;
	org->cert_pem_len = 0;
}

static void set_errmsg(char *errmsg, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_errmsg(char *errmsg, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (errmsg == NULL || errsz == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(errmsg, errsz, fmt, ap);
	va_end(ap);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

hv_status
auth_open(auth **out, const auth_options *opts)
{
	static const uint8_t zero[AUTH_SECRET_LEN];
	auth                *a;

	*out = NULL;
	/* An all-zero secret is a secret that was never loaded: anyone could forge tokens. */
	if (opts == NULL || opts->lookup == NULL ||
	    crypto_equal(opts->secret, zero, AUTH_SECRET_LEN)) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	memcpy(a->a_secret, opts->secret, AUTH_SECRET_LEN);
	a->a_token_ttl_ms =
	    1000 * (int64_t) (opts->token_ttl_s != 0 ? opts->token_ttl_s : DEFAULT_TOKEN_TTL_S);
	a->a_challenge_ttl_ms = 1000 *
	    (int64_t) (opts->challenge_ttl_s != 0 ? opts->challenge_ttl_s : DEFAULT_CHALLENGE_TTL_S);
	a->a_lookup     = opts->lookup;
	a->a_lookup_arg = opts->lookup_arg;
	*out            = a;
	return (HV_OK);
}

void
auth_close(auth *a)
{
	if (a == NULL) {
		return;
	}
	crypto_wipe(a, sizeof(*a));
	free(a);
}

/* ---- tokens --------------------------------------------------------------------------- */

hv_status
auth_issue_token(auth *a, const char *org_id, rpc_role role, int64_t now_ms,
    char out[AUTH_TOKEN_MAX], uint64_t *expires_at_ms)
{
	uint8_t   payload[PAYLOAD_MAX_LEN];
	uint8_t   mac[CRYPTO_HMAC_LEN];
	size_t    orglen = 0;
	size_t    plen, o;
	int64_t   expiry;
	hv_status st = HV_INVALID_ARGUMENT;

	out[0] = '\0';
	if (a == NULL || !org_id_valid(org_id, &orglen) || !role_issuable((unsigned) role) ||
	    now_ms < 0 ||
	    now_ms > INT64_MAX - a->a_token_ttl_ms) {
		goto out;
	}
	expiry     = now_ms + a->a_token_ttl_ms;
	payload[0] = (uint8_t) role;
	put_be64(payload + 1, (uint64_t) expiry);
	memcpy(payload + 9, org_id, orglen);
	plen = 9 + orglen;
	crypto_hmac_sha256(mac, a->a_secret, sizeof(a->a_secret), payload, plen);

	/* "v1." payload "." mac; the lengths were checked at compile time. */
	memcpy(out, TOKEN_PREFIX, sizeof(TOKEN_PREFIX));
	o = sizeof(TOKEN_PREFIX) - 1;
	if ((st = crypto_b64url_encode(out + o, AUTH_TOKEN_MAX - o, payload, plen)) != HV_OK) {
		goto out;
	}
	o += strlen(out + o);
	out[o++] = '.';
	if ((st = crypto_b64url_encode(out + o, AUTH_TOKEN_MAX - o, mac, sizeof(mac))) != HV_OK) {
		goto out;
	}
	if (expires_at_ms != NULL) {
		*expires_at_ms = (uint64_t) expiry;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		crypto_wipe(out, AUTH_TOKEN_MAX);
		out[0] = '\0';
	}
	crypto_wipe(mac, sizeof(mac));
	return (st);
}

hv_status
auth_verify_token(auth *a, const char *token, int64_t now_ms, rpc_caller *caller)
{
	uint8_t     payload[PAYLOAD_MAX_LEN];
	uint8_t     mac[CRYPTO_HMAC_LEN];
	uint8_t     want[CRYPTO_HMAC_LEN];
	char        org_id[RPC_ORG_ID_MAX];
	size_t      len, plen = 0, maclen = 0;
	const char *p, *dot;
	uint64_t    expiry;
	unsigned    role;
	auth_org    org = { 0 };
	const char *why = "malformed";
	hv_status   st  = HV_UNAUTHENTICATED;

	if (a == NULL || token == NULL || (len = strnlen(token, AUTH_TOKEN_MAX)) == AUTH_TOKEN_MAX ||
	    strncmp(token, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) != 0) {
		goto out;
	}
	p = token + sizeof(TOKEN_PREFIX) - 1;
	if ((dot = memchr(p, '.', len - (size_t) (p - token))) == NULL ||
	    crypto_b64url_decode(payload, sizeof(payload), &plen, p, (size_t) (dot - p)) != HV_OK ||
	    crypto_b64url_decode(mac, sizeof(mac), &maclen, dot + 1, strlen(dot + 1)) != HV_OK ||
	    maclen != sizeof(mac) || plen < PAYLOAD_MIN_LEN) {
		goto out;
	}
	/* Nothing in the payload is looked at before its MAC is known to be ours. */
	crypto_hmac_sha256(want, a->a_secret, sizeof(a->a_secret), payload, plen);
	if (!crypto_equal(want, mac, sizeof(mac))) {
		why = "MAC does not verify";
		goto out;
	}
	role   = payload[0];
	expiry = get_be64(payload + 1);
	memcpy(org_id, payload + 9, plen - 9);
	org_id[plen - 9] = '\0';
	/* A valid MAC means we issued it, and we issue only these; checked anyway. */
	if (!role_issuable(role) || !org_id_valid(org_id, NULL)) {
		goto out;
	}
	if (now_ms < 0 || expiry <= (uint64_t) now_ms) {
		why = "expired";
		goto out;
	}
	if ((st = lookup(a, org_id, &org)) != HV_OK) {
		if (st == HV_NOT_FOUND) {
			why = "organisation unknown";
			st  = HV_UNAUTHENTICATED;
		} else {
			why = "directory lookup failed";
		}
		goto out;
	}
	st = HV_UNAUTHENTICATED;
	if (!org.enabled) {
		why = "organisation disabled";
		goto out;
	}
	if ((unsigned) org.role != role) {
		why = "organisation's role changed";
		goto out;
	}
	if (caller != NULL) {
		caller->role = (rpc_role) role;
		memcpy(caller->org_id, org_id, plen - 9 + 1);
	}
	st = HV_OK;
out:
	if (st != HV_OK && log_enabled(LOG_LEVEL_DEBUG)) {
		log_debug("session token refused: %s", why);
	}
	org_release(&org);
	crypto_wipe(want, sizeof(want));
	crypto_wipe(mac, sizeof(mac));
	return (st);
}

/* ---- the Auth service ----------------------------------------------------------------- */

static hv_status
handle_challenge(
    rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	auth                                    *a   = svc;
	const Haven__Auth__V1__ChallengeRequest *req = (const void *) msg;
	Haven__Auth__V1__ChallengeResponse      *resp;
	uint8_t                                 *nonce;
	size_t                                   orglen;
	int64_t                                  now_ms = auth_now_ms();
	int64_t                                  expiry;

	/* No directory lookup here: a challenge is free to make and says nothing about whether
	 * the organisation exists. It is checked when the signed answer comes back. */
	if (!org_id_valid(req->org_id, &orglen)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "org_id must be 1 to %d characters of A-Z a-z 0-9 . _ -", ORG_ID_MAX_LEN));
	}
	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL ||
	    (nonce = rpc_call_alloc(call, AUTH_NONCE_LEN)) == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	if (crypto_random(nonce, NONCE_RANDOM_LEN) != HV_OK) {
		return (rpc_call_error(call, HV_INTERNAL, "random number generator failed"));
	}
	expiry = now_ms + a->a_challenge_ttl_ms;
	put_be64(nonce + NONCE_RANDOM_LEN, (uint64_t) expiry);
	challenge_mac(a, nonce, req->org_id, orglen, nonce + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN);

	haven__auth__v1__challenge_response__init(resp);
	resp->nonce.data    = nonce;
	resp->nonce.len     = AUTH_NONCE_LEN;
	resp->expires_at_ms = (uint64_t) expiry;
	*reply              = &resp->base;
	return (HV_OK);
}

static hv_status
handle_authenticate(
    rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	auth                                       *a   = svc;
	const Haven__Auth__V1__AuthenticateRequest *req = (const void *) msg;
	Haven__Auth__V1__AuthenticateResponse      *resp;
	uint8_t   signed_msg[sizeof(AUTH_SIGNED_PREFIX) - 1 + AUTH_NONCE_LEN + ORG_ID_MAX_LEN];
	size_t    prefixlen = sizeof(AUTH_SIGNED_PREFIX) - 1;
	size_t    orglen;
	char      token[AUTH_TOKEN_MAX];
	uint64_t  expires_at = 0;
	auth_org  org        = { 0 };
	const char *why      = NULL;
	hv_status st;

	token[0] = '\0';
	if (!org_id_valid(req->org_id, &orglen)) {
		st = rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "org_id must be 1 to %d characters of A-Z a-z 0-9 . _ -", ORG_ID_MAX_LEN);
		goto out;
	}
	if (req->nonce.len != AUTH_NONCE_LEN || req->nonce.data == NULL) {
		st = rpc_call_error(call, HV_INVALID_ARGUMENT, "nonce must be %d bytes from Challenge",
		    AUTH_NONCE_LEN);
		goto out;
	}
	if (req->signature.len == 0 || req->signature.len > SIGNATURE_MAX ||
	    req->signature.data == NULL) {
		st = rpc_call_error(
		    call, HV_INVALID_ARGUMENT, "signature must be 1 to %d bytes", SIGNATURE_MAX);
		goto out;
	}
	if ((st = challenge_check(a, req->nonce.data, req->org_id, orglen, auth_now_ms(), &why)) !=
	    HV_OK) {
		st = rpc_call_error(call, st, "%s", why);
		goto out;
	}

	if ((st = lookup(a, req->org_id, &org)) != HV_OK) {
		if (st == HV_NOT_FOUND) {
			st = rpc_call_error(
			    call, HV_UNAUTHENTICATED, "unknown organisation %s", req->org_id);
		} else {
			st = rpc_call_error(call, st, "partner directory lookup failed");
		}
		goto out;
	}
	if (org.cert_pem == NULL || org.cert_pem_len == 0) {
		st = rpc_call_error(call, HV_UNAUTHENTICATED,
		    "organisation %s has no registered certificate", req->org_id);
		goto out;
	}

	/* The signature is checked before the organisation's state, so that only the holder of
	 * its key learns whether it is disabled. */
	memcpy(signed_msg, AUTH_SIGNED_PREFIX, prefixlen);
	memcpy(signed_msg + prefixlen, req->nonce.data, AUTH_NONCE_LEN);
	memcpy(signed_msg + prefixlen + AUTH_NONCE_LEN, req->org_id, orglen);
	st = crypto_verify_cert(org.cert_pem, org.cert_pem_len, signed_msg,
	    prefixlen + AUTH_NONCE_LEN + orglen, req->signature.data, req->signature.len);
	if (st == HV_UNAUTHENTICATED) {
		st = rpc_call_error(call, st, "signature does not verify for organisation %s",
		    req->org_id);
		goto out;
	}
	if (st != HV_OK) {
		/* The directory holds a certificate we cannot use: the node's problem. */
		log_warn("registered certificate of organisation %s cannot be used (%s)", req->org_id,
		    hv_status_name(st));
		st = rpc_call_error(call, HV_INTERNAL,
		    "the registered certificate of organisation %s cannot be used", req->org_id);
		goto out;
	}
	if (!org.enabled) {
		st = rpc_call_error(
		    call, HV_UNAUTHENTICATED, "organisation %s is disabled", req->org_id);
		goto out;
	}
	if (!role_issuable((unsigned) org.role)) {
		st = rpc_call_error(call, HV_UNAUTHENTICATED,
		    "organisation %s has no role that may sign in", req->org_id);
		goto out;
	}

	if ((st = auth_issue_token(a, req->org_id, org.role, auth_now_ms(), token, &expires_at)) !=
	    HV_OK) {
		st = rpc_call_error(call, HV_INTERNAL, "cannot issue a session token");
		goto out;
	}
	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	haven__auth__v1__authenticate_response__init(resp);
	if ((resp->token = rpc_call_strdup(call, token)) == NULL ||
	    (resp->role = rpc_call_strdup(call, rpc_role_name(org.role))) == NULL) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	resp->expires_at_ms = expires_at;
	*reply              = &resp->base;
	st                  = HV_OK;
out:
	crypto_wipe(token, sizeof(token));
	org_release(&org);
	return (st);
}

hv_status
auth_register(auth *a, rpc_server *srv)
{
	/* Callable by anyone: this is how a caller stops being anonymous. Not inline, as
	 * Authenticate verifies a signature and asks the directory. */
	static const rpc_method_impl impls[] = {
		{ .name = "Challenge", .handler = handle_challenge, .roles = RPC_ROLES_ANY },
		{ .name = "Authenticate", .handler = handle_authenticate, .roles = RPC_ROLES_ANY },
	};

	if (a == NULL || srv == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	return (rpc_server_add_service(
	    srv, &haven__auth__v1__auth__descriptor, impls, sizeof(impls) / sizeof(impls[0]), a));
}

/* ---- client side ---------------------------------------------------------------------- */

hv_status
auth_login(rpc_channel *ch, const char *org_id, const char *key_pem, size_t key_pem_len,
    uint32_t timeout_ms, char *errmsg, size_t errsz)
{
	Haven__Auth__V1__ChallengeRequest      creq  = HAVEN__AUTH__V1__CHALLENGE_REQUEST__INIT;
	Haven__Auth__V1__AuthenticateRequest   areq  = HAVEN__AUTH__V1__AUTHENTICATE_REQUEST__INIT;
	Haven__Auth__V1__ChallengeResponse    *cresp = NULL;
	Haven__Auth__V1__AuthenticateResponse *aresp = NULL;
	ProtobufCMessage                      *m     = NULL;
	rpc_call_options                       o     = { 0 };
	uint8_t  signed_msg[sizeof(AUTH_SIGNED_PREFIX) - 1 + AUTH_NONCE_LEN + ORG_ID_MAX_LEN];
	size_t   prefixlen = sizeof(AUTH_SIGNED_PREFIX) - 1;
	size_t   orglen;
	uint8_t *sig    = NULL;
	size_t   siglen = 0;
	char     err[RPC_ERRMSG_MAX];
	int64_t  deadline, left;
	hv_status st = HV_INVALID_ARGUMENT;

	set_errmsg(errmsg, errsz, "%s", "");
	err[0] = '\0';
	if (ch == NULL || key_pem == NULL) {
		set_errmsg(errmsg, errsz, "no channel or no key");
		goto out;
	}
	if (!org_id_valid(org_id, &orglen)) {
		set_errmsg(errmsg, errsz, "organisation id must be 1 to %d characters of A-Z a-z 0-9 . _ -",
		    ORG_ID_MAX_LEN);
		goto out;
	}
	if (timeout_ms == 0) {
		timeout_ms = LOGIN_DEFAULT_TIMEOUT_MS;
	}
	deadline = rpc_now_ms() + timeout_ms;

	/* An old token (perhaps expired) would get the Challenge refused before it reaches the
	 * handler: sign in anonymously. */
	if ((st = rpc_channel_set_token(ch, NULL)) != HV_OK) {
		set_errmsg(errmsg, errsz, "cannot clear the session token");
		goto out;
	}

	/* Both calls are safe to repeat: a challenge is stateless, and a second Authenticate
	 * only issues another token. */
	o.idempotent = true;
	o.timeout_ms = timeout_ms;
	creq.org_id  = (char *) org_id;
	if ((st = rpc_channel_call(ch, METHOD_CHALLENGE, &creq.base,
	         &haven__auth__v1__challenge_response__descriptor, &m, &o, err, sizeof(err))) !=
	    HV_OK) {
		set_errmsg(errmsg, errsz, "Challenge: %s", err);
		goto out;
	}
	cresp = (Haven__Auth__V1__ChallengeResponse *) (void *) m;
	if (cresp->nonce.len != AUTH_NONCE_LEN) {
		st = HV_INTERNAL;
		set_errmsg(errmsg, errsz, "Challenge: the node sent a malformed nonce");
		goto out;
	}

	memcpy(signed_msg, AUTH_SIGNED_PREFIX, prefixlen);
	memcpy(signed_msg + prefixlen, cresp->nonce.data, AUTH_NONCE_LEN);
	memcpy(signed_msg + prefixlen + AUTH_NONCE_LEN, org_id, orglen);
	if ((st = crypto_sign(key_pem, key_pem_len, signed_msg, prefixlen + AUTH_NONCE_LEN + orglen,
	         &sig, &siglen)) != HV_OK) {
		set_errmsg(errmsg, errsz, "cannot sign with the private key (%s)",
		    st == HV_INVALID_ARGUMENT ? "unreadable, encrypted or unsupported key"
		                              : hv_status_name(st));
		goto out;
	}

	if ((left = deadline - rpc_now_ms()) <= 0) {
		st = HV_DEADLINE_EXCEEDED;
		set_errmsg(errmsg, errsz, "login timed out");
		goto out;
	}
	o.timeout_ms        = (uint32_t) left;
	areq.org_id         = (char *) org_id;
	areq.nonce.data     = cresp->nonce.data;
	areq.nonce.len      = cresp->nonce.len;
	areq.signature.data = sig;
	areq.signature.len  = siglen;
	m                   = NULL;
	if ((st = rpc_channel_call(ch, METHOD_AUTHENTICATE, &areq.base,
	         &haven__auth__v1__authenticate_response__descriptor, &m, &o, err, sizeof(err))) !=
	    HV_OK) {
		set_errmsg(errmsg, errsz, "Authenticate: %s", err);
		goto out;
	}
	aresp = (Haven__Auth__V1__AuthenticateResponse *) (void *) m;
	if (aresp->token == NULL || aresp->token[0] == '\0' ||
	    strnlen(aresp->token, AUTH_TOKEN_MAX) == AUTH_TOKEN_MAX) {
		st = HV_INTERNAL;
		set_errmsg(errmsg, errsz, "Authenticate: the node sent a malformed token");
		goto out;
	}
	if ((st = rpc_channel_set_token(ch, aresp->token)) != HV_OK) {
		set_errmsg(errmsg, errsz, "cannot set the session token");
		goto out;
	}
	st = HV_OK;
out:
	if (aresp != NULL) {
		if (aresp->token != NULL) {
			crypto_wipe(aresp->token, strlen(aresp->token));
		}
		protobuf_c_message_free_unpacked(&aresp->base, NULL);
	}
	if (cresp != NULL) {
		protobuf_c_message_free_unpacked(&cresp->base, NULL);
	}
	free(sig);
	return (st);
}

/* ---- node secret ---------------------------------------------------------------------- */

/* Creates path with a new random secret, 0600, failing with HV_ALREADY_EXISTS if it exists.
 * A file this call created but could not write completely is removed again, so that the
 * next start makes a new one instead of failing on a short file. */
static hv_status
secret_create(const char *path, uint8_t secret[AUTH_SECRET_LEN])
{
	size_t    done    = 0;
	int       fd      = -1;
	bool      created = false;
	hv_status st;

	if ((st = crypto_random(secret, AUTH_SECRET_LEN)) != HV_OK) {
		goto out;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		st = errno == EEXIST ? HV_ALREADY_EXISTS : hv_status_from_errno(errno);
		goto out;
	}
	created = true;
	/* The umask can only take bits away; make sure the owner can read it back. */
	if (fchmod(fd, 0600) != 0) {
		st = hv_status_from_errno(errno);
		goto out;
	}
	while (done < AUTH_SECRET_LEN) {
		ssize_t w = write(fd, secret + done, AUTH_SECRET_LEN - done);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			st = hv_status_from_errno(errno);
			goto out;
		}
		done += (size_t) w;
	}
	if (fsync(fd) != 0) {
		st = hv_status_from_errno(errno);
		goto out;
	}
	st = close(fd) == 0 ? HV_OK : hv_status_from_errno(errno);
	fd = -1;
out:
	if (fd >= 0) {
		close(fd);
	}
	if (st != HV_OK) {
		if (created) {
			unlink(path);
		}
		crypto_wipe(secret, AUTH_SECRET_LEN);
	}
	return (st);
}

hv_status
auth_load_secret(const char *path, uint8_t secret[AUTH_SECRET_LEN])
{
	char     *buf = NULL;
	size_t    len = 0;
	hv_status st  = HV_INVALID_ARGUMENT;

	if (path == NULL) {
		goto out;
	}
	/* Twice at most: if another process creates the file between our read and our create,
	 * read what it wrote. */
	for (int attempt = 0; attempt < 2; attempt++) {
		st = crypto_read_file(path, AUTH_SECRET_LEN, true, &buf, &len);
		if (st == HV_OK) {
			st = len == AUTH_SECRET_LEN ? HV_OK : HV_DATA_LOSS;
			if (st == HV_OK) {
				memcpy(secret, buf, AUTH_SECRET_LEN);
			}
			goto out;
		}
		if (st == HV_OUT_OF_RANGE) {
			st = HV_DATA_LOSS; /* longer than a secret */
			goto out;
		}
		if (st != HV_NOT_FOUND) {
			goto out;
		}
		if ((st = secret_create(path, secret)) != HV_ALREADY_EXISTS) {
			goto out;
		}
	}
out:
	if (buf != NULL) {
		crypto_wipe(buf, len);
		free(buf);
	}
	if (st != HV_OK) {
		crypto_wipe(secret, AUTH_SECRET_LEN);
	}
	return (st);
}

int64_t
auth_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}
