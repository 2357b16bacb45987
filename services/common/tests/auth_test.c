/*
 * auth_test.c - session tokens and the node secret without the network (issue, verify, and
 * every way a token can be wrong), then Challenge/Authenticate end to end over inproc://.
 *
 * The partner directory is a small table here; its lookup copies the certificate the way a
 * real directory does (auth frees it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "haven/auth.h"
#include "haven/auth/v1/auth.pb-c.h"
#include "haven/crypto.h"
#include "haven/diag/v1/diag.pb-c.h"
#include "haven/rpc.h"

/* ---- the directory ---------------------------------------------------------------------- */

typedef struct test_org {
	const char *id;
	rpc_role    role;
	bool        enabled;
	const char *cert_pem; /* NULL: none registered */
} test_org;

enum { ORG_ACME, ORG_SHELTER, ORG_GONE, ORG_NOCERT, ORG_OPERATOR, ORG_ANON, ORG_BROKEN };

static test_org orgs[] = {
	[ORG_ACME]     = { "acme-ngo", RPC_ROLE_REFERRER, true, NULL },
	[ORG_SHELTER]  = { "shelter.one_2", RPC_ROLE_PROVIDER, true, NULL },
	[ORG_GONE]     = { "gone-ngo", RPC_ROLE_REFERRER, false, NULL },
	[ORG_NOCERT]   = { "no-cert", RPC_ROLE_REFERRER, true, NULL },
	[ORG_OPERATOR] = { "sneaky-operator", RPC_ROLE_OPERATOR, true, NULL },
	[ORG_ANON]     = { "sneaky-anonymous", RPC_ROLE_ANONYMOUS, true, NULL },
	[ORG_BROKEN]   = { "broken-dir", RPC_ROLE_REFERRER, true, NULL },
	{ NULL, 0, false, NULL },
};

static int lookups;

static hv_status
lookup(void *arg, const char *org_id, auth_org *out)
{
	test_org *t = arg;

	lookups++;
	for (; t->id != NULL; t++) {
		if (strcmp(t->id, org_id) != 0) {
			continue;
		}
		if (t == &orgs[ORG_BROKEN]) {
			return (HV_UNAVAILABLE); /* the directory itself fails */
		}
		out->role         = t->role;
		out->enabled      = t->enabled;
		out->cert_pem     = NULL;
		out->cert_pem_len = 0;
		if (t->cert_pem != NULL) {
			out->cert_pem_len = strlen(t->cert_pem);
			out->cert_pem     = strdup(t->cert_pem);
			assert_non_null(out->cert_pem);
		}
		return (HV_OK);
	}
	return (HV_NOT_FOUND);
}

static void
reset_orgs(void)
{
	orgs[ORG_ACME].role        = RPC_ROLE_REFERRER;
	orgs[ORG_ACME].enabled     = true;
	orgs[ORG_SHELTER].role     = RPC_ROLE_PROVIDER;
	orgs[ORG_SHELTER].enabled  = true;
	orgs[ORG_GONE].enabled     = false;
}

static auth *
open_auth(uint8_t fill, uint32_t token_ttl_s, uint32_t challenge_ttl_s)
{
	auth_options o = { .lookup = lookup, .lookup_arg = orgs };
	auth        *a;

	memset(o.secret, fill, sizeof(o.secret));
	o.token_ttl_s     = token_ttl_s;
	o.challenge_ttl_s = challenge_ttl_s;
	assert_int_equal(auth_open(&a, &o), HV_OK);
	return (a);
}

/* A token for acme-ngo (referrer) issued at now. */
static void
acme_token(auth *a, int64_t now, char tok[AUTH_TOKEN_MAX])
{
	uint64_t exp;
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, now, tok, &exp), HV_OK);
}

/* ---- tokens ------------------------------------------------------------------------------ */

static void
test_open_refuses(void **state)
{
	auth_options o = { .lookup = lookup };
	auth        *a = (auth *) &o;

	(void) state;
	/* A secret that was never set. */
	assert_int_equal(auth_open(&a, &o), HV_INVALID_ARGUMENT);
	assert_null(a);
	memset(o.secret, 1, sizeof(o.secret));
	o.lookup = NULL;
	assert_int_equal(auth_open(&a, &o), HV_INVALID_ARGUMENT);
	assert_int_equal(auth_open(&a, NULL), HV_INVALID_ARGUMENT);
	auth_close(NULL);
}

static void
test_issue_and_verify(void **state)
{
	auth      *a   = open_auth(0x5a, 0, 0);
	int64_t    now = auth_now_ms();
	char       tok[AUTH_TOKEN_MAX];
	uint64_t   exp = 0;
	rpc_caller c;

	(void) state;
	reset_orgs();
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, now, tok, &exp), HV_OK);
	assert_int_equal(strncmp(tok, "v1.", 3), 0);
	assert_non_null(strchr(tok + 3, '.'));
	assert_int_equal(exp, (uint64_t) now + 3600 * 1000); /* default lifetime */

	memset(&c, 0, sizeof(c));
	c.transport = RPC_TRANSPORT_TLS;
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_OK);
	assert_int_equal(c.role, RPC_ROLE_REFERRER);
	assert_string_equal(c.org_id, "acme-ngo");
	assert_int_equal(c.transport, RPC_TRANSPORT_TLS); /* not auth's to decide */
	assert_int_equal(auth_verify_token(a, tok, (int64_t) exp - 1, &c), HV_OK);

	/* Another role and the longest organisation id. */
	{
		static const char id63[] =
		    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.";
		test_org saved = orgs[ORG_SHELTER];
		assert_int_equal(strlen(id63), 63);
		orgs[ORG_SHELTER].id = id63;
		assert_int_equal(
		    auth_issue_token(a, id63, RPC_ROLE_PROVIDER, now, tok, &exp), HV_OK);
		assert_true(strlen(tok) < AUTH_TOKEN_MAX);
		assert_int_equal(auth_verify_token(a, tok, now, &c), HV_OK);
		assert_int_equal(c.role, RPC_ROLE_PROVIDER);
		assert_string_equal(c.org_id, id63);
		orgs[ORG_SHELTER] = saved;
	}

	/* A configured lifetime. */
	auth_close(a);
	a = open_auth(0x5a, 60, 0);
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, now, tok, &exp), HV_OK);
	assert_int_equal(exp, (uint64_t) now + 60 * 1000);
	assert_int_equal(auth_verify_token(a, tok, now, NULL), HV_OK);
	auth_close(a);
}

static void
test_issue_refuses(void **state)
{
	static const char *const bad_ids[] = {
		"", "bad id!", "a/b", "acme\xc3\xa9", "tab\tid",
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", /* 64 */
	};
	static const unsigned bad_roles[] = {
		RPC_ROLE_OPERATOR, RPC_ROLE_ANONYMOUS, 0, RPC_ROLE_ADMIN | RPC_ROLE_REFERRER,
		RPC_ROLES_ANY, 1u << 7,
	};
	auth    *a   = open_auth(0x5a, 0, 0);
	int64_t  now = auth_now_ms();
	char     tok[AUTH_TOKEN_MAX];
	uint64_t exp = 0;

	(void) state;
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		assert_int_equal(auth_issue_token(a, bad_ids[i], RPC_ROLE_REFERRER, now, tok, &exp),
		    HV_INVALID_ARGUMENT);
		assert_string_equal(tok, "");
	}
	assert_int_equal(auth_issue_token(a, NULL, RPC_ROLE_REFERRER, now, tok, &exp),
	    HV_INVALID_ARGUMENT);
	/* The operator and anonymous are never issued tokens. */
	for (size_t i = 0; i < sizeof(bad_roles) / sizeof(bad_roles[0]); i++) {
		assert_int_equal(
		    auth_issue_token(a, "acme-ngo", (rpc_role) bad_roles[i], now, tok, &exp),
		    HV_INVALID_ARGUMENT);
	}
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, -1, tok, &exp),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, INT64_MAX, tok, &exp),
	    HV_INVALID_ARGUMENT);
	auth_close(a);
}

static void
test_forged(void **state)
{
	auth      *a   = open_auth(0x5a, 0, 0);
	auth      *b   = open_auth(0x11, 0, 0);
	int64_t    now = auth_now_ms();
	char       tok[AUTH_TOKEN_MAX];
	rpc_caller c;

	(void) state;
	reset_orgs();
	/* Made with another node's secret. */
	acme_token(b, now, tok);
	assert_int_equal(auth_verify_token(b, tok, now, &c), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);

	/* Random payloads and MACs in the right shape. */
	for (int i = 0; i < 200; i++) {
		uint8_t payload[20], mac[32];
		char    p64[40], m64[48];
		assert_int_equal(crypto_random(payload, sizeof(payload)), HV_OK);
		assert_int_equal(crypto_random(mac, sizeof(mac)), HV_OK);
		payload[0] = RPC_ROLE_ADMIN;
		assert_int_equal(crypto_b64url_encode(p64, sizeof(p64), payload, sizeof(payload)), HV_OK);
		assert_int_equal(crypto_b64url_encode(m64, sizeof(m64), mac, sizeof(mac)), HV_OK);
		snprintf(tok, sizeof(tok), "v1.%s.%s", p64, m64);
		assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	}

	/* A valid payload with another token's MAC. */
	{
		char other[AUTH_TOKEN_MAX], mixed[2 * AUTH_TOKEN_MAX];
		assert_int_equal(
		    auth_issue_token(a, "shelter.one_2", RPC_ROLE_PROVIDER, now, other, NULL), HV_OK);
		acme_token(a, now, tok);
		*strrchr(tok, '.') = '\0';
		snprintf(mixed, sizeof(mixed), "%s%s", tok, strrchr(other, '.'));
		assert_int_equal(auth_verify_token(a, mixed, now, &c), HV_UNAUTHENTICATED);
	}

	/* Garbage of every shape. */
	{
		static const char *const junk[] = { "", "v1", "v1.", "v1..", "v2.AAAA.AAAA",
			"v1.not-a-token", "Bearer x", "v1.AAAA.AAAA.AAAA", "v1.AAAAAAAAAAAAAA.",
			"v1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" };
		for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
			assert_int_equal(auth_verify_token(a, junk[i], now, &c), HV_UNAUTHENTICATED);
		}
		assert_int_equal(auth_verify_token(a, NULL, now, &c), HV_UNAUTHENTICATED);
	}
	/* Too long to be a token at all. */
	{
		char long_tok[1024];
		memset(long_tok, 'A', sizeof(long_tok) - 1);
		long_tok[sizeof(long_tok) - 1] = '\0';
		memcpy(long_tok, "v1.", 3);
		assert_int_equal(auth_verify_token(a, long_tok, now, &c), HV_UNAUTHENTICATED);
	}
	auth_close(a);
	auth_close(b);
}

static void
test_altered_and_truncated(void **state)
{
	auth      *a   = open_auth(0x5a, 0, 0);
	int64_t    now = auth_now_ms();
	char       tok[AUTH_TOKEN_MAX], bad[AUTH_TOKEN_MAX + 8];
	size_t     len;
	rpc_caller c;

	(void) state;
	reset_orgs();
	acme_token(a, now, tok);
	len = strlen(tok);

	/* Any one character changed, anywhere (payload, separators, MAC, its last character). */
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, tok, len + 1);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		assert_int_equal(auth_verify_token(a, bad, now, &c), HV_UNAUTHENTICATED);
		bad[i] = tok[i] == 'x' ? 'y' : 'x';
		assert_int_equal(auth_verify_token(a, bad, now, &c), HV_UNAUTHENTICATED);
	}
	/* Every truncation. */
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, tok, i);
		bad[i] = '\0';
		assert_int_equal(auth_verify_token(a, bad, now, &c), HV_UNAUTHENTICATED);
	}
	/* Appended characters. */
	snprintf(bad, sizeof(bad), "%sA", tok);
	assert_int_equal(auth_verify_token(a, bad, now, &c), HV_UNAUTHENTICATED);
	snprintf(bad, sizeof(bad), "%s.", tok);
	assert_int_equal(auth_verify_token(a, bad, now, &c), HV_UNAUTHENTICATED);
	snprintf(bad, sizeof(bad), "%s\n", tok);
	assert_int_equal(auth_verify_token(a, bad, now, &c), HV_UNAUTHENTICATED);

	/* And the original is still fine. */
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_OK);
	auth_close(a);
}

static void
test_expired(void **state)
{
	auth      *a   = open_auth(0x5a, 0, 0);
	int64_t    now = auth_now_ms();
	char       tok[AUTH_TOKEN_MAX];
	uint64_t   exp;
	rpc_caller c;

	(void) state;
	reset_orgs();
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, now, tok, &exp), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, (int64_t) exp - 1, &c), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, (int64_t) exp, &c), HV_UNAUTHENTICATED);
	assert_int_equal(
	    auth_verify_token(a, tok, now + 365LL * 24 * 3600 * 1000, &c), HV_UNAUTHENTICATED);
	assert_int_equal(auth_verify_token(a, tok, INT64_MAX, &c), HV_UNAUTHENTICATED);
	/* Issued two hours ago with a one-hour lifetime. */
	assert_int_equal(
	    auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, now - 2 * 3600 * 1000, tok, &exp),
	    HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	auth_close(a);
}

static void
test_directory_decides(void **state)
{
	auth      *a   = open_auth(0x5a, 0, 0);
	int64_t    now = auth_now_ms();
	char       tok[AUTH_TOKEN_MAX];
	rpc_caller c;
	int        before;

	(void) state;
	reset_orgs();
	acme_token(a, now, tok);
	/* The directory is asked at every verification. */
	before = lookups;
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_OK);
	assert_int_equal(lookups, before + 2);

	/* Disabled after the token was issued: refused at once, and again once re-enabled. */
	orgs[ORG_ACME].enabled = false;
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	orgs[ORG_ACME].enabled = true;
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_OK);

	/* The role changed: the token carries the old one, so it is refused. */
	orgs[ORG_ACME].role = RPC_ROLE_ADMIN;
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	orgs[ORG_ACME].role = RPC_ROLE_REFERRER;

	/* Unknown to the directory. */
	assert_int_equal(auth_issue_token(a, "nobody", RPC_ROLE_REFERRER, now, tok, NULL), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	/* Disabled from the start. */
	assert_int_equal(auth_issue_token(a, "gone-ngo", RPC_ROLE_REFERRER, now, tok, NULL), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	/* The directory says operator or anonymous: no token can match. */
	assert_int_equal(
	    auth_issue_token(a, "sneaky-operator", RPC_ROLE_ADMIN, now, tok, NULL), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	assert_int_equal(
	    auth_issue_token(a, "sneaky-anonymous", RPC_ROLE_REFERRER, now, tok, NULL), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	/* A directory that fails is not an authentication failure: its status comes through. */
	assert_int_equal(auth_issue_token(a, "broken-dir", RPC_ROLE_REFERRER, now, tok, NULL), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAVAILABLE);
	auth_close(a);
}

/* ---- the node secret -------------------------------------------------------------------- */

static char tmpdir[512];

static void
test_load_secret(void **state)
{
	char        path[600];
	uint8_t     s1[AUTH_SECRET_LEN], s2[AUTH_SECRET_LEN], zero[AUTH_SECRET_LEN] = { 0 };
	struct stat sb;
	FILE       *f;

	(void) state;
	snprintf(path, sizeof(path), "%s/node.secret", tmpdir);
	unlink(path);

	/* Missing: created, 0600, 32 random bytes. */
	assert_int_equal(auth_load_secret(path, s1), HV_OK);
	assert_false(crypto_equal(s1, zero, sizeof(s1)));
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, AUTH_SECRET_LEN);

	/* Present: the same secret again. */
	assert_int_equal(auth_load_secret(path, s2), HV_OK);
	assert_memory_equal(s1, s2, sizeof(s1));

	/* Readable by others: refused, and the output is not left holding anything. */
	assert_int_equal(chmod(path, 0644), 0);
	memset(s2, 0x77, sizeof(s2));
	assert_int_equal(auth_load_secret(path, s2), HV_PERMISSION_DENIED);
	assert_memory_equal(s2, zero, sizeof(s2));
	assert_int_equal(chmod(path, 0660), 0);
	assert_int_equal(auth_load_secret(path, s2), HV_PERMISSION_DENIED);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(auth_load_secret(path, s2), HV_OK);
	assert_memory_equal(s1, s2, sizeof(s1));

	/* The wrong size, shorter or longer, is damage, not a new secret. */
	assert_int_equal(truncate(path, AUTH_SECRET_LEN - 1), 0);
	assert_int_equal(auth_load_secret(path, s2), HV_DATA_LOSS);
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(auth_load_secret(path, s2), HV_DATA_LOSS);
	assert_non_null(f = fopen(path, "w"));
	for (int i = 0; i < AUTH_SECRET_LEN + 1; i++) {
		fputc('k', f);
	}
	assert_int_equal(fclose(f), 0);
	assert_int_equal(auth_load_secret(path, s2), HV_DATA_LOSS);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, AUTH_SECRET_LEN + 1); /* left alone */
	unlink(path);

	/* A directory that does not exist. */
	snprintf(path, sizeof(path), "%s/no/such/dir/node.secret", tmpdir);
	assert_int_equal(auth_load_secret(path, s2), HV_NOT_FOUND);
}

/* ---- end to end over inproc:// ------------------------------------------------------------ */

typedef struct keypair {
	char  *key_pem;
	size_t key_len;
	char  *cert_pem;
} keypair;

static char *
bio_string(BIO *bio, size_t *len)
{
	char *data;
	long  n = BIO_get_mem_data(bio, &data);
	char *s = malloc((size_t) n + 1);

	assert_true(n > 0);
	assert_non_null(s);
	memcpy(s, data, (size_t) n);
	s[n] = '\0';
	if (len != NULL) {
		*len = (size_t) n;
	}
	return (s);
}

/* A key and a self-signed certificate for it, as PEM. md NULL for Ed25519. */
static void
keypair_make(keypair *kp, EVP_PKEY *pkey, const EVP_MD *md, const char *cn)
{
	X509      *x = X509_new();
	X509_NAME *name;
	BIO       *bio;

	assert_non_null(pkey);
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	assert_int_equal(X509_set_pubkey(x, pkey), 1);
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(
	                     name, "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1, 0),
	    1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	assert_true(X509_sign(x, pkey, md) > 0);
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
	kp->key_pem = bio_string(bio, &kp->key_len);
	BIO_free(bio);
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	kp->cert_pem = bio_string(bio, NULL);
	BIO_free(bio);
	X509_free(x);
	EVP_PKEY_free(pkey);
}

static void
keypair_free(keypair *kp)
{
	free(kp->key_pem);
	free(kp->cert_pem);
}

static hv_status
echo(rpc_channel *ch, char *err)
{
	Haven__Diag__V1__EchoRequest req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	ProtobufCMessage            *rep = NULL;
	rpc_call_options             o   = { .timeout_ms = 5000 };
	hv_status                    st;

	req.payload.data = (uint8_t *) "x";
	req.payload.len  = 1;
	st = rpc_channel_call(ch, "haven.diag.v1.Diagnostics/Echo", &req.base,
	    &haven__diag__v1__echo_response__descriptor, &rep, &o, err, RPC_ERRMSG_MAX);
	if (rep != NULL) {
		protobuf_c_message_free_unpacked(rep, NULL);
	}
	return (st);
}

static hv_status
challenge(rpc_channel *ch, const char *org_id, uint8_t nonce[AUTH_NONCE_LEN], char *err)
{
	Haven__Auth__V1__ChallengeRequest   req = HAVEN__AUTH__V1__CHALLENGE_REQUEST__INIT;
	Haven__Auth__V1__ChallengeResponse *rep;
	ProtobufCMessage                   *m = NULL;
	rpc_call_options                    o = { .timeout_ms = 5000 };
	hv_status                           st;

	req.org_id = (char *) org_id;
	st = rpc_channel_call(ch, "haven.auth.v1.Auth/Challenge", &req.base,
	    &haven__auth__v1__challenge_response__descriptor, &m, &o, err, RPC_ERRMSG_MAX);
	if (st == HV_OK) {
		rep = (Haven__Auth__V1__ChallengeResponse *) (void *) m;
		assert_int_equal(rep->nonce.len, AUTH_NONCE_LEN);
		assert_true(rep->expires_at_ms > (uint64_t) auth_now_ms());
		memcpy(nonce, rep->nonce.data, AUTH_NONCE_LEN);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return (st);
}

/* Authenticate with a signature made by key over what the client would sign for org_id. */
static hv_status
authenticate(rpc_channel *ch, const char *org_id, const uint8_t *nonce, size_t nonce_len,
    const keypair *key, char *err)
{
	Haven__Auth__V1__AuthenticateRequest req = HAVEN__AUTH__V1__AUTHENTICATE_REQUEST__INIT;
	ProtobufCMessage                    *m   = NULL;
	rpc_call_options                     o   = { .timeout_ms = 5000 };
	uint8_t                              msg[256];
	size_t                               n = strlen(AUTH_SIGNED_PREFIX);
	uint8_t                             *sig;
	size_t                               siglen;
	hv_status                            st;

	memcpy(msg, AUTH_SIGNED_PREFIX, n);
	memcpy(msg + n, nonce, nonce_len);
	memcpy(msg + n + nonce_len, org_id, strlen(org_id));
	n += nonce_len + strlen(org_id);
	assert_int_equal(crypto_sign(key->key_pem, key->key_len, msg, n, &sig, &siglen), HV_OK);
	req.org_id         = (char *) org_id;
	req.nonce.data     = (uint8_t *) nonce;
	req.nonce.len      = nonce_len;
	req.signature.data = sig;
	req.signature.len  = siglen;
	st = rpc_channel_call(ch, "haven.auth.v1.Auth/Authenticate", &req.base,
	    &haven__auth__v1__authenticate_response__descriptor, &m, &o, err, RPC_ERRMSG_MAX);
	if (st == HV_OK) {
		Haven__Auth__V1__AuthenticateResponse *rep = (void *) m;
		assert_true(strncmp(rep->token, "v1.", 3) == 0);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	free(sig);
	return (st);
}

static void
test_end_to_end(void **state)
{
	keypair     acme, shelter, rogue;
	auth       *a   = open_auth(0x42, 0, 2);
	rpc_server *srv = NULL;
	rpc_channel *ch = NULL;
	rpc_server_options so = { .auth = a, .name = "auth-test" };
	char        err[RPC_ERRMSG_MAX];
	uint8_t     nonce[AUTH_NONCE_LEN];

	(void) state;
	reset_orgs();
	keypair_make(&acme, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(), "acme-ngo");
	keypair_make(&shelter, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), NULL, "shelter.one_2");
	keypair_make(&rogue, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(), "acme-ngo");
	orgs[ORG_ACME].cert_pem     = acme.cert_pem;
	orgs[ORG_SHELTER].cert_pem  = shelter.cert_pem;
	orgs[ORG_GONE].cert_pem     = acme.cert_pem;
	orgs[ORG_OPERATOR].cert_pem = acme.cert_pem;
	orgs[ORG_ANON].cert_pem     = acme.cert_pem;

	assert_int_equal(rpc_server_open(&srv, &so), HV_OK);
	assert_int_equal(auth_register(a, srv), HV_OK);
	assert_int_equal(rpc_server_listen(srv, "inproc://auth-test"), HV_OK);
	assert_int_equal(rpc_server_start(srv), HV_OK);
	assert_int_equal(rpc_channel_open(&ch, "inproc://auth-test", NULL), HV_OK);

	/* Log in with a P-256 key and with an Ed25519 key. */
	assert_int_equal(
	    auth_login(ch, "acme-ngo", acme.key_pem, acme.key_len, 5000, err, sizeof(err)), HV_OK);
	assert_int_equal(echo(ch, err), HV_OK);
	/* The channel now carries acme-ngo's token: disabling acme-ngo stops its calls. */
	orgs[ORG_ACME].enabled = false;
	assert_int_equal(echo(ch, err), HV_UNAUTHENTICATED);
	orgs[ORG_ACME].enabled = true;
	assert_int_equal(echo(ch, err), HV_OK);
	assert_int_equal(auth_login(ch, "shelter.one_2", shelter.key_pem, shelter.key_len, 5000,
	                     err, sizeof(err)),
	    HV_OK);
	assert_int_equal(echo(ch, err), HV_OK);

	/* The wrong key, another organisation's key, unknown and refused organisations. */
	assert_int_equal(
	    auth_login(ch, "acme-ngo", rogue.key_pem, rogue.key_len, 5000, err, sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_non_null(strstr(err, "signature does not verify for organisation acme-ngo"));
	assert_int_equal(auth_login(ch, "shelter.one_2", acme.key_pem, acme.key_len, 5000, err,
	                     sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_int_equal(
	    auth_login(ch, "nobody", acme.key_pem, acme.key_len, 5000, err, sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_non_null(strstr(err, "unknown organisation nobody"));
	assert_int_equal(
	    auth_login(ch, "gone-ngo", acme.key_pem, acme.key_len, 5000, err, sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_non_null(strstr(err, "disabled"));
	assert_int_equal(
	    auth_login(ch, "no-cert", acme.key_pem, acme.key_len, 5000, err, sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_non_null(strstr(err, "no registered certificate"));
	assert_int_equal(auth_login(ch, "sneaky-operator", acme.key_pem, acme.key_len, 5000, err,
	                     sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_int_equal(auth_login(ch, "sneaky-anonymous", acme.key_pem, acme.key_len, 5000, err,
	                     sizeof(err)),
	    HV_UNAUTHENTICATED);
	/* A directory that fails: UNAVAILABLE, not an authentication failure. The client retries
	 * that until its timeout, so either status may come back last. */
	{
		hv_status st =
		    auth_login(ch, "broken-dir", acme.key_pem, acme.key_len, 300, err, sizeof(err));
		assert_true(st == HV_UNAVAILABLE || st == HV_DEADLINE_EXCEEDED);
	}
	assert_int_equal(
	    auth_login(ch, "bad id!", acme.key_pem, acme.key_len, 5000, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(auth_login(ch, "acme-ngo", "not a key", 9, 5000, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	/* A failed login leaves the channel without a token (inproc: the operator again). */
	assert_int_equal(echo(ch, err), HV_OK);

	/* The Challenge and Authenticate messages themselves. */
	assert_int_equal(challenge(ch, "bad id!", nonce, err), HV_INVALID_ARGUMENT);
	assert_int_equal(challenge(ch, "", nonce, err), HV_INVALID_ARGUMENT);
	assert_int_equal(challenge(ch, "acme-ngo", nonce, err), HV_OK);
	assert_int_equal(authenticate(ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &acme, err), HV_OK);
	/* A nonce made for another organisation. */
	assert_int_equal(authenticate(ch, "shelter.one_2", nonce, AUTH_NONCE_LEN, &shelter, err),
	    HV_UNAUTHENTICATED);
	assert_non_null(strstr(err, "challenge"));
	/* A nonce with any byte changed. */
	for (size_t i = 0; i < AUTH_NONCE_LEN; i += 3) {
		nonce[i] ^= 0x01;
		assert_int_equal(authenticate(ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &acme, err),
		    HV_UNAUTHENTICATED);
		nonce[i] ^= 0x01;
	}
	/* The wrong length. */
	assert_int_equal(authenticate(ch, "acme-ngo", nonce, AUTH_NONCE_LEN - 1, &acme, err),
	    HV_INVALID_ARGUMENT);
	/* A nonce made up by the client. */
	{
		uint8_t made_up[AUTH_NONCE_LEN];
		assert_int_equal(crypto_random(made_up, sizeof(made_up)), HV_OK);
		assert_int_equal(authenticate(ch, "acme-ngo", made_up, AUTH_NONCE_LEN, &acme, err),
		    HV_UNAUTHENTICATED);
	}
	/* A signature too long to be one. */
	{
		Haven__Auth__V1__AuthenticateRequest req = HAVEN__AUTH__V1__AUTHENTICATE_REQUEST__INIT;
		ProtobufCMessage                    *m   = NULL;
		static uint8_t                       big[1025];
		req.org_id         = "acme-ngo";
		req.nonce.data     = nonce;
		req.nonce.len      = AUTH_NONCE_LEN;
		req.signature.data = big;
		req.signature.len  = sizeof(big);
		assert_int_equal(rpc_channel_call(ch, "haven.auth.v1.Auth/Authenticate", &req.base,
		                     &haven__auth__v1__authenticate_response__descriptor, &m, NULL, err,
		                     sizeof(err)),
		    HV_INVALID_ARGUMENT);
		req.signature.len = 0;
		assert_int_equal(rpc_channel_call(ch, "haven.auth.v1.Auth/Authenticate", &req.base,
		                     &haven__auth__v1__authenticate_response__descriptor, &m, NULL, err,
		                     sizeof(err)),
		    HV_INVALID_ARGUMENT);
	}
	/* An expired challenge (this authenticator's challenges live 2 s). */
	assert_int_equal(challenge(ch, "acme-ngo", nonce, err), HV_OK);
	usleep(2100 * 1000);
	assert_int_equal(authenticate(ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &acme, err),
	    HV_UNAUTHENTICATED);
	assert_non_null(strstr(err, "challenge expired"));

	rpc_channel_close(ch);
	rpc_server_close(srv);
	auth_close(a);
	for (size_t i = 0; orgs[i].id != NULL; i++) {
		orgs[i].cert_pem = NULL;
	}
	keypair_free(&acme);
	keypair_free(&shelter);
	keypair_free(&rogue);
}

static int
setup_tmp(void **state)
{
	const char *base = getenv("HAVEN_TEST_TMP");

	(void) state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/auth-test-XXXXXX", base != NULL ? base : "/tmp");
	return (mkdtemp(tmpdir) != NULL ? 0 : -1);
}

static int
teardown_tmp(void **state)
{
	(void) state;
	return (rmdir(tmpdir));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_refuses),
		cmocka_unit_test(test_issue_and_verify),
		cmocka_unit_test(test_issue_refuses),
		cmocka_unit_test(test_forged),
		cmocka_unit_test(test_altered_and_truncated),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_directory_decides),
		cmocka_unit_test(test_load_secret),
		cmocka_unit_test(test_end_to_end),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
