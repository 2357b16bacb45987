/*
 * auth_rpc.c - the haven.auth.v1.Auth service (Challenge, Authenticate), its metric, and its
 * client side (auth_login). The checks and the tokens are auth.c's (auth_internal.h): this
 * file turns requests into calls of them and their answers into replies, and only this file
 * of the two knows the RPC server.
 *
 * Messages returned to callers never tell one sign-in failure from another.
 */
#include "haven/auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "haven/auth/v1/auth.pb-c.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/metrics.h"

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

/* ---- the Auth service ----------------------------------------------------------------- */

static hv_status
handle_challenge(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	auth                                    *a   = svc;
	const Haven__Auth__V1__ChallengeRequest *req = (const void *) msg;
	Haven__Auth__V1__ChallengeResponse      *resp;
	uint8_t                                 *nonce;
	size_t                                   orglen;
	int64_t                                  now_ms = hv_clock_wall_ms();
	int64_t                                  expiry;

	/* No directory lookup here: a challenge is free to make and says nothing about whether
	 * the organisation exists. It is checked when the signed answer comes back. */
	if (!auth__org_id_valid(req->org_id, &orglen)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "org_id must be 1 to %d characters of A-Z a-z 0-9 . _ -", ORG_ID_MAX_LEN));
	}
	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL ||
	    (nonce = rpc_call_alloc(call, AUTH_NONCE_LEN)) == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	if (auth__challenge_make(a, req->org_id, orglen, now_ms, nonce, &expiry) != HV_OK) {
		return (rpc_call_error(call, HV_INTERNAL, "random number generator failed"));
	}

	haven__auth__v1__challenge_response__init(resp);
	resp->nonce.data    = nonce;
	resp->nonce.len     = AUTH_NONCE_LEN;
	resp->expires_at_ms = (uint64_t) expiry;
	*reply              = &resp->base;
	return (HV_OK);
}

static hv_status
handle_authenticate(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply)
{
	auth                                       *a   = svc;
	const Haven__Auth__V1__AuthenticateRequest *req = (const void *) msg;
	Haven__Auth__V1__AuthenticateResponse      *resp;
	size_t                                      orglen;
	char                                        token[AUTH_TOKEN_MAX];
	char                                        why[160]   = "";
	uint64_t                                    expires_at = 0;
	auth_org                                    org        = { 0 };
	int64_t                                     now_ms     = hv_clock_wall_ms();
	hv_status                                   st         = HV_OK;
	int                                         cause;

	token[0] = '\0';
	/* The request's shape: the same answer for every organisation. */
	if (!auth__org_id_valid(req->org_id, &orglen)) {
		st = rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "org_id must be 1 to %d characters of A-Z a-z 0-9 . _ -", ORG_ID_MAX_LEN);
		goto out;
	}
	if (req->nonce.len != AUTH_NONCE_LEN || req->nonce.data == NULL) {
		st = rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "nonce must be %d bytes from Challenge", AUTH_NONCE_LEN);
		goto out;
	}
	if (req->signature.len == 0 || req->signature.len > SIGNATURE_MAX ||
	    req->signature.data == NULL) {
		st = rpc_call_error(call, HV_INVALID_ARGUMENT, "signature must be 1 to %d bytes",
		    SIGNATURE_MAX);
		goto out;
	}
	cause = auth__signin_check(a, req->org_id, orglen, req->nonce.data, req->signature.data,
	    req->signature.len, now_ms, &org, &st, why, sizeof(why));
	if (cause == CAUSE_DIRECTORY) {
		log_warn("sign-in of organisation %s: the partner directory failed (%s)",
		    req->org_id, hv_status_name(st));
		st = rpc_call_error(call, st,
		    "sign-in failed: the partner directory cannot be read");
		goto out;
	}
	if (cause >= 0) {
		auth__signin_note(a, req->org_id, cause, why);
		st = rpc_call_error(call, HV_UNAUTHENTICATED, "sign-in failed");
		goto out;
	}
	if ((st = auth__token_make(a, req->org_id, orglen, (unsigned) org.role, &org, now_ms, token,
	         &expires_at)) != HV_OK) {
		log_error("cannot issue a session token: %s", hv_status_name(st));
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
	auth__org_release(&org);
	return (st);
}

static void
auth_collect(void *arg, metrics_writer *w)
{
	auth *a = arg;

	metrics_family(w, "haven_auth_signin_failures_total", METRICS_COUNTER,
	    "Failed sign-ins (Authenticate) by cause; callers are told only 'sign-in failed'.");
	for (int i = 0; i < CAUSE_N; i++) {
		metrics_sample(w, "haven_auth_signin_failures_total",
		    (double) auth_signin_failures(a, auth__cause_names[i]), "cause",
		    auth__cause_names[i], (char *) NULL);
	}
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
	hv_status st;

	if (a == NULL || srv == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = rpc_server_add_service(srv, &haven__auth__v1__auth__descriptor, impls,
	         sizeof(impls) / sizeof(impls[0]), a)) != HV_OK) {
		return (st);
	}
	return (metrics_add_collector(rpc_server_metrics(srv), auth_collect, a));
}

/* ---- client side ---------------------------------------------------------------------- */

/* Login's first step: a Challenge for org_id, within timeout_ms. On HV_OK *out is the reply
 * (the caller frees it) with a nonce of the right length. */
static hv_status
login_challenge(rpc_channel *ch, const char *org_id, uint32_t timeout_ms,
    Haven__Auth__V1__ChallengeResponse **out, char *errmsg, size_t errsz)
{
	Haven__Auth__V1__ChallengeRequest creq = HAVEN__AUTH__V1__CHALLENGE_REQUEST__INIT;
	ProtobufCMessage                 *m    = NULL;
	rpc_call_options                  o    = { 0 };
	char                              err[RPC_ERRMSG_MAX];
	hv_status                         st;

	/* A Challenge is safe to repeat; an Authenticate is not (its nonce is used up). */
	o.idempotent = true;
	o.timeout_ms = timeout_ms;
	creq.org_id  = (char *) org_id;
	err[0]       = '\0';
	if ((st = rpc_channel_call(ch, METHOD_CHALLENGE, &creq.base,
	         &haven__auth__v1__challenge_response__descriptor, &m, &o, err, sizeof(err))) !=
	    HV_OK) {
		set_errmsg(errmsg, errsz, "Challenge: %s", err);
		return (st);
	}
	*out = (Haven__Auth__V1__ChallengeResponse *) (void *) m;
	if ((*out)->nonce.len != AUTH_NONCE_LEN) {
		protobuf_c_message_free_unpacked(m, NULL);
		*out = NULL;
		set_errmsg(errmsg, errsz, "Challenge: the node sent a malformed nonce");
		return (HV_INTERNAL);
	}
	return (HV_OK);
}

hv_status
auth_login(rpc_channel *ch, const char *org_id, const char *key_pem, size_t key_pem_len,
    uint32_t timeout_ms, char *errmsg, size_t errsz)
{
	Haven__Auth__V1__AuthenticateRequest   areq  = HAVEN__AUTH__V1__AUTHENTICATE_REQUEST__INIT;
	Haven__Auth__V1__ChallengeResponse    *cresp = NULL;
	Haven__Auth__V1__AuthenticateResponse *aresp = NULL;
	ProtobufCMessage                      *m     = NULL;
	rpc_call_options                       o     = { 0 };
	uint8_t                                signed_msg[SIGNED_MAX];
	size_t                                 orglen, siglen = 0;
	uint8_t                               *sig = NULL;
	char                                   err[RPC_ERRMSG_MAX];
	int64_t                                deadline, left;
	hv_status                              st = HV_INVALID_ARGUMENT;

	set_errmsg(errmsg, errsz, "%s", "");
	err[0] = '\0';
	if (ch == NULL || key_pem == NULL) {
		set_errmsg(errmsg, errsz, "no channel or no key");
		goto out;
	}
	if (!auth__org_id_valid(org_id, &orglen)) {
		set_errmsg(errmsg, errsz,
		    "organisation id must be 1 to %d characters of A-Z a-z 0-9 . _ -",
		    ORG_ID_MAX_LEN);
		goto out;
	}
	timeout_ms = timeout_ms != 0 ? timeout_ms : LOGIN_DEFAULT_TIMEOUT_MS;
	deadline   = hv_clock_mono_ms() + timeout_ms;

	/* An old token (perhaps expired) would get the Challenge refused before it reaches the
	 * handler: sign in anonymously. */
	if ((st = rpc_channel_set_token(ch, NULL)) != HV_OK) {
		set_errmsg(errmsg, errsz, "cannot clear the session token");
		goto out;
	}
	if ((st = login_challenge(ch, org_id, timeout_ms, &cresp, errmsg, errsz)) != HV_OK) {
		goto out;
	}
	if ((st = crypto_sign(key_pem, key_pem_len, signed_msg,
	         auth__signed_message(signed_msg, cresp->nonce.data, org_id, orglen), &sig,
	         &siglen)) != HV_OK) {
		set_errmsg(errmsg, errsz, "cannot sign with the private key (%s)",
		    st == HV_INVALID_ARGUMENT ? "unreadable, encrypted or unsupported key"
		                              : hv_status_name(st));
		goto out;
	}
	if ((left = deadline - hv_clock_mono_ms()) <= 0) {
		st = HV_DEADLINE_EXCEEDED;
		set_errmsg(errmsg, errsz, "login timed out");
		goto out;
	}
	/* Sent once: its nonce cannot be used twice. */
	o.timeout_ms        = (uint32_t) left;
	areq.org_id         = (char *) org_id;
	areq.nonce          = cresp->nonce;
	areq.signature.data = sig;
	areq.signature.len  = siglen;
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
	}
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
