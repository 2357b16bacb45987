/*
 * auth_test.c - session tokens and their keys without the network (issue, verify, every way a
 * token can be wrong, key rotation, the shared key file, tokens minted by whoever stole a
 * key), then Challenge/Authenticate end to end over inproc:// with certificates of a CA made
 * here (expired, other CA, wrong CN, self-signed, replayed challenges, uniform errors).
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
#include <openssl/x509v3.h>

#include "haven/auth.h"
#include "haven/auth/v1/auth.pb-c.h"
#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/diag/v1/diag.pb-c.h"
#include "haven/metrics.h"
#include "haven/rpc.h"

/* ---- the directory ---------------------------------------------------------------------- */

typedef struct test_org {
	const char *id;
	rpc_role    role;
	bool        enabled;
	const char *cert_pem; /* NULL: none registered */
	uint64_t    version;
} test_org;

enum { ORG_ACME, ORG_SHELTER, ORG_GONE, ORG_NOCERT, ORG_OPERATOR, ORG_ANON, ORG_BROKEN };

static test_org orgs[] = {
	[ORG_ACME]     = { "acme-ngo", RPC_ROLE_REFERRER, true, NULL, 0 },
	[ORG_SHELTER]  = { "shelter.one_2", RPC_ROLE_PROVIDER, true, NULL, 0 },
	[ORG_GONE]     = { "gone-ngo", RPC_ROLE_REFERRER, false, NULL, 0 },
	[ORG_NOCERT]   = { "no-cert", RPC_ROLE_REFERRER, true, NULL, 0 },
	[ORG_OPERATOR] = { "sneaky-operator", RPC_ROLE_OPERATOR, true, NULL, 0 },
	[ORG_ANON]     = { "sneaky-anonymous", RPC_ROLE_ANONYMOUS, true, NULL, 0 },
	[ORG_BROKEN]   = { "broken-dir", RPC_ROLE_REFERRER, true, NULL, 0 },
	{ NULL, 0, false, NULL, 0 },
};

static int  lookups;
static bool dir_broken; /* every lookup fails */

static hv_status
lookup(void *arg, const char *org_id, auth_org *out)
{
	test_org *t = arg;

	lookups++;
	for (; t->id != NULL; t++) {
		if (strcmp(t->id, org_id) != 0) {
			continue;
		}
		if (t == &orgs[ORG_BROKEN] || dir_broken) {
			return (HV_UNAVAILABLE); /* the directory itself fails */
		}
		out->role         = t->role;
		out->enabled      = t->enabled;
		out->cert_pem     = NULL;
		out->cert_pem_len = 0;
		out->version      = t->version;
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
	orgs[ORG_ACME].role       = RPC_ROLE_REFERRER;
	orgs[ORG_ACME].enabled    = true;
	orgs[ORG_SHELTER].role    = RPC_ROLE_PROVIDER;
	orgs[ORG_SHELTER].enabled = true;
	orgs[ORG_GONE].enabled    = false;
	dir_broken                = false;
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
	int64_t    now = hv_clock_wall_ms();
	char       tok[AUTH_TOKEN_MAX];
	uint64_t   exp = 0;
	rpc_caller c;

	(void) state;
	reset_orgs();
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, now, tok, &exp), HV_OK);
	assert_int_equal(strncmp(tok, "v2.", 3), 0);
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
		assert_int_equal(auth_issue_token(a, id63, RPC_ROLE_PROVIDER, now, tok, &exp),
		    HV_OK);
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
		RPC_ROLE_OPERATOR,
		RPC_ROLE_ANONYMOUS,
		0,
		RPC_ROLE_ADMIN | RPC_ROLE_REFERRER,
		RPC_ROLES_ANY,
		1u << 8,
	};
	auth    *a   = open_auth(0x5a, 0, 0);
	int64_t  now = hv_clock_wall_ms();
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
		assert_int_equal(auth_issue_token(a, "acme-ngo", (rpc_role) bad_roles[i], now, tok,
		                     &exp),
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
	int64_t    now = hv_clock_wall_ms();
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
		uint8_t payload[80], mac[32];
		char    p64[120], m64[48];
		assert_int_equal(crypto_random(payload, sizeof(payload)), HV_OK);
		assert_int_equal(crypto_random(mac, sizeof(mac)), HV_OK);
		payload[4] = RPC_ROLE_ADMIN;
		assert_int_equal(crypto_b64url_encode(p64, sizeof(p64), payload, sizeof(payload)),
		    HV_OK);
		assert_int_equal(crypto_b64url_encode(m64, sizeof(m64), mac, sizeof(mac)), HV_OK);
		snprintf(tok, sizeof(tok), "v2.%s.%s", p64, m64);
		assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	}

	/* A valid payload with another token's MAC. */
	{
		char other[AUTH_TOKEN_MAX], mixed[2 * AUTH_TOKEN_MAX];
		assert_int_equal(auth_issue_token(a, "shelter.one_2", RPC_ROLE_PROVIDER, now, other,
		                     NULL),
		    HV_OK);
		acme_token(a, now, tok);
		*strrchr(tok, '.') = '\0';
		snprintf(mixed, sizeof(mixed), "%s%s", tok, strrchr(other, '.'));
		assert_int_equal(auth_verify_token(a, mixed, now, &c), HV_UNAUTHENTICATED);
	}

	/* Garbage of every shape. */
	{
		static const char *const junk[] = { "", "v1", "v1.", "v1..", "v2.AAAA.AAAA", "v2..",
			"v1.not-a-token", "Bearer x", "v1.AAAA.AAAA.AAAA", "v1.AAAAAAAAAAAAAA.",
			"v1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" };
		for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
			assert_int_equal(auth_verify_token(a, junk[i], now, &c),
			    HV_UNAUTHENTICATED);
		}
		assert_int_equal(auth_verify_token(a, NULL, now, &c), HV_UNAUTHENTICATED);
	}
	/* Too long to be a token at all. */
	{
		char long_tok[1024];
		memset(long_tok, 'A', sizeof(long_tok) - 1);
		long_tok[sizeof(long_tok) - 1] = '\0';
		memcpy(long_tok, "v2.", 3);
		assert_int_equal(auth_verify_token(a, long_tok, now, &c), HV_UNAUTHENTICATED);
	}
	auth_close(a);
	auth_close(b);
}

static void
test_altered_and_truncated(void **state)
{
	auth      *a   = open_auth(0x5a, 0, 0);
	int64_t    now = hv_clock_wall_ms();
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
	int64_t    now = hv_clock_wall_ms();
	char       tok[AUTH_TOKEN_MAX];
	uint64_t   exp;
	rpc_caller c;

	(void) state;
	reset_orgs();
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, now, tok, &exp), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, (int64_t) exp - 1, &c), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, (int64_t) exp, &c), HV_UNAUTHENTICATED);
	assert_int_equal(auth_verify_token(a, tok, now + 365LL * 24 * 3600 * 1000, &c),
	    HV_UNAUTHENTICATED);
	assert_int_equal(auth_verify_token(a, tok, INT64_MAX, &c), HV_UNAUTHENTICATED);
	/* Issued two hours ago with a one-hour lifetime. */
	assert_int_equal(auth_issue_token(a, "acme-ngo", RPC_ROLE_REFERRER, now - 2 * 3600 * 1000,
	                     tok, &exp),
	    HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	auth_close(a);
}

static void
test_directory_decides(void **state)
{
	auth      *a   = open_auth(0x5a, 0, 0);
	int64_t    now = hv_clock_wall_ms();
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

	/* A change of the record (a new version, as every change makes): refused. */
	orgs[ORG_ACME].version++;
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	orgs[ORG_ACME].version--;
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_OK);

	/* Unknown to the directory: no token is issued. */
	assert_int_equal(auth_issue_token(a, "nobody", RPC_ROLE_REFERRER, now, tok, NULL),
	    HV_NOT_FOUND);
	/* Disabled from the start. */
	assert_int_equal(auth_issue_token(a, "gone-ngo", RPC_ROLE_REFERRER, now, tok, NULL), HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	/* The directory says operator or anonymous: no token can match. */
	assert_int_equal(auth_issue_token(a, "sneaky-operator", RPC_ROLE_ADMIN, now, tok, NULL),
	    HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	assert_int_equal(auth_issue_token(a, "sneaky-anonymous", RPC_ROLE_REFERRER, now, tok, NULL),
	    HV_OK);
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAUTHENTICATED);
	/* A directory that fails is not an authentication failure: its status comes through. */
	assert_int_equal(auth_issue_token(a, "broken-dir", RPC_ROLE_REFERRER, now, tok, NULL),
	    HV_UNAVAILABLE);
	acme_token(a, now, tok);
	dir_broken = true;
	assert_int_equal(auth_verify_token(a, tok, now, &c), HV_UNAVAILABLE);
	dir_broken = false;
	auth_close(a);
}

/* ---- token keys, and what a stolen key can do ------------------------------------------ */

static char tmpdir[512];

static auth *
open_auth_file(const char *file, uint32_t token_ttl_s)
{
	auth_options o = { .lookup = lookup, .lookup_arg = orgs, .key_file = file };
	auth        *a;

	o.token_ttl_s = token_ttl_s;
	assert_int_equal(auth_open(&a, &o), HV_OK);
	return (a);
}

/* The key file's records (44 bytes each: kid || since || key); returns how many. */
static size_t
read_keys(const char *file, uint8_t recs[2][44])
{
	FILE  *f = fopen(file, "rb");
	size_t n;

	assert_non_null(f);
	n = fread(recs, 1, 2 * 44, f);
	fclose(f);
	assert_true(n == 44 || n == 88);
	return (n / 44);
}

/* A token made by hand with a key record, as whoever holds the key file can: any role, times
 * and version; the organisation has no certificate (fingerprint zeros). */
static void
forge(const uint8_t rec[44], rpc_role role, int64_t iat, int64_t exp, uint64_t version,
    const char *org, char out[AUTH_TOKEN_MAX])
{
	uint8_t p[128], mac[32];
	size_t  n = 61 + strlen(org);
	char    p64[200], m64[48];

	memcpy(p, rec, 4);
	p[4] = (uint8_t) role;
	hv_put_be(p + 5, (uint64_t) iat, 8);
	hv_put_be(p + 13, (uint64_t) exp, 8);
	hv_put_be(p + 21, version, 8);
	memset(p + 29, 0, 32);
	memcpy(p + 61, org, strlen(org));
	crypto_hmac_sha256(mac, rec + 12, 32, p, n);
	assert_int_equal(crypto_b64url_encode(p64, sizeof(p64), p, n), HV_OK);
	assert_int_equal(crypto_b64url_encode(m64, sizeof(m64), mac, sizeof(mac)), HV_OK);
	snprintf(out, AUTH_TOKEN_MAX, "v2.%s.%s", p64, m64);
}

/* Removes a key file and its lock file. */
static void
rm_keys(const char *file)
{
	char lock[700];

	snprintf(lock, sizeof(lock), "%s.lock", file);
	unlink(file);
	unlink(lock);
}

static void
test_key_file(void **state)
{
	char        file[600], other[600];
	uint8_t     recs[2][44];
	struct stat sb;
	auth       *a, *b, *r, *c = NULL;
	int64_t     now = hv_clock_wall_ms();
	char        tok[AUTH_TOKEN_MAX];
	rpc_caller  who;
	FILE       *f;

	(void) state;
	reset_orgs();
	snprintf(file, sizeof(file), "%s/token-keys", tmpdir);
	snprintf(other, sizeof(other), "%s/restored-token-keys", tmpdir);
	/* Created at open: 0600, one key. */
	a = open_auth_file(file, 0);
	assert_int_equal(stat(file, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(read_keys(file, recs), 1);
	/* Another process of the node reads the same keys: tokens verify in either. */
	b = open_auth_file(file, 0);
	acme_token(a, now, tok);
	assert_int_equal(auth_verify_token(b, tok, now, &who), HV_OK);
	acme_token(b, now, tok);
	assert_int_equal(auth_verify_token(a, tok, now, &who), HV_OK);
	/* A restored node has no token keys of the backup (they are not in it): it makes new
	 * ones, and the tokens issued before the restore fail there. */
	r = open_auth_file(other, 0);
	assert_int_equal(auth_verify_token(r, tok, now, &who), HV_UNAUTHENTICATED);
	auth_close(r);
	rm_keys(other);

	/* Open to others: refused. */
	assert_int_equal(chmod(file, 0640), 0);
	{
		auth_options o = { .lookup = lookup, .lookup_arg = orgs, .key_file = file };
		assert_int_equal(auth_open(&c, &o), HV_PERMISSION_DENIED);
		assert_null(c);
		assert_int_equal(chmod(file, 0600), 0);
		/* Damaged (not one or two records): refused and left alone. */
		assert_non_null(f = fopen(other, "w"));
		fputs("not a key file", f);
		fclose(f);
		assert_int_equal(chmod(other, 0600), 0);
		o.key_file = other;
		assert_int_equal(auth_open(&c, &o), HV_DATA_LOSS);
		assert_int_equal(stat(other, &sb), 0);
		assert_int_equal(sb.st_size, 14);
		unlink(other);
		/* A directory that does not exist. */
		snprintf(other, sizeof(other), "%s/no/such/dir/token-keys", tmpdir);
		o.key_file = other;
		assert_int_equal(auth_open(&c, &o), HV_NOT_FOUND);
	}
	auth_close(a);
	auth_close(b);
	rm_keys(file);
}

/* Issue 12, hole 5: whoever reads the key (a stolen backup of the old node.secret) cannot mint
 * a long-lived token: the node caps the lifetime, whatever the token says. */
static void
test_lifetime_capped(void **state)
{
	static const int64_t ten_years = 10LL * 365 * 24 * 3600 * 1000;
	char                 file[600];
	uint8_t              recs[2][44];
	auth                *a;
	int64_t              now = hv_clock_wall_ms();
	char                 tok[AUTH_TOKEN_MAX];
	rpc_caller           who;

	(void) state;
	reset_orgs();
	snprintf(file, sizeof(file), "%s/token-keys", tmpdir);
	a = open_auth_file(file, 0);
	read_keys(file, recs);
	/* The forger is right about everything else: this one verifies. */
	forge(recs[0], RPC_ROLE_REFERRER, now, now + 3600 * 1000, 0, "acme-ngo", tok);
	assert_int_equal(auth_verify_token(a, tok, now, &who), HV_OK);
	/* Ten years claimed. */
	forge(recs[0], RPC_ROLE_REFERRER, now, now + ten_years, 0, "acme-ngo", tok);
	assert_int_equal(auth_verify_token(a, tok, now, &who), HV_UNAUTHENTICATED);
	forge(recs[0], RPC_ROLE_REFERRER, now, now + 3600 * 1000 + 1, 0, "acme-ngo", tok);
	assert_int_equal(auth_verify_token(a, tok, now, &who), HV_UNAUTHENTICATED);
	/* Issued in the future, to last. */
	forge(recs[0], RPC_ROLE_REFERRER, now + ten_years - 3600 * 1000, now + ten_years, 0,
	    "acme-ngo", tok);
	assert_int_equal(auth_verify_token(a, tok, now, &who), HV_UNAUTHENTICATED);
	/* Expiring before it was issued. */
	forge(recs[0], RPC_ROLE_REFERRER, now, now - 1, 0, "acme-ngo", tok);
	assert_int_equal(auth_verify_token(a, tok, now, &who), HV_UNAUTHENTICATED);
	/* Another record version than the directory's. */
	forge(recs[0], RPC_ROLE_REFERRER, now, now + 3600 * 1000, 7, "acme-ngo", tok);
	assert_int_equal(auth_verify_token(a, tok, now, &who), HV_UNAUTHENTICATED);
	auth_close(a);
	rm_keys(file);
}

/* The key rotates every token lifetime; a leaked key stops minting tokens at the rotation. */
static void
test_key_rotation(void **state)
{
	char       file[600];
	uint8_t    k1[2][44], k2[2][44], k3[2][44];
	auth      *a, *b;
	int64_t    now = hv_clock_wall_ms(), min = 60 * 1000;
	char       old[AUTH_TOKEN_MAX], tok[AUTH_TOKEN_MAX];
	rpc_caller who;

	(void) state;
	reset_orgs();
	snprintf(file, sizeof(file), "%s/token-keys", tmpdir);
	a = open_auth_file(file, 60);
	b = open_auth_file(file, 60);
	assert_int_equal(read_keys(file, k1), 1);
	acme_token(a, now + min / 2, old); /* under the first key */

	/* A lifetime later the next verification rotates: the old key verifies what it issued,
	 * and nothing it signs after its retirement. */
	assert_int_equal(auth_verify_token(a, old, now + min + 1000, &who), HV_OK);
	assert_int_equal(read_keys(file, k2), 2);
	assert_memory_not_equal(k2[0], k1[0], 4);
	assert_memory_equal(k2[1], k1[0], 44);
	forge(k1[0], RPC_ROLE_REFERRER, now + min + 1000, now + 2 * min, 0, "acme-ngo", tok);
	assert_int_equal(auth_verify_token(a, tok, now + min + 1000, &who), HV_UNAUTHENTICATED);
	assert_int_equal(auth_verify_token(b, tok, now + min + 1000, &who), HV_UNAUTHENTICATED);
	/* New tokens come from the new key, in both processes. */
	acme_token(b, now + min + 2000, tok);
	assert_int_equal(auth_verify_token(a, tok, now + min + 2000, &who), HV_OK);
	/* The next rotation drops the first key altogether. */
	assert_int_equal(auth_verify_token(b, tok, now + 2 * min + 1000, &who), HV_OK);
	assert_int_equal(read_keys(file, k3), 2);
	assert_memory_equal(k3[1], k2[0], 44);
	assert_memory_not_equal(k3[0], k1[0], 4);
	assert_memory_not_equal(k3[1], k1[0], 4);
	/* A process that starts now knows nothing of the first key. */
	auth_close(a);
	a = open_auth_file(file, 60);
	forge(k1[0], RPC_ROLE_REFERRER, now + min / 2, now + min, 0, "acme-ngo", tok);
	assert_int_equal(auth_verify_token(a, tok, now + min / 2, &who), HV_UNAUTHENTICATED);
	auth_close(a);
	auth_close(b);
	rm_keys(file);
}

/* ---- end to end over inproc:// ------------------------------------------------------------ */

typedef struct keypair {
	char     *key_pem;
	size_t    key_len;
	char     *cert_pem;
	EVP_PKEY *pkey;
	X509     *x;
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

/* A key and a certificate for it, as PEM, valid from from_s to until_s seconds from now,
 * signed by issuer (NULL: self-signed; ca: a CA certificate). md NULL for Ed25519 keys. */
static void
keypair_make(keypair *kp, EVP_PKEY *pkey, const EVP_MD *md, const char *cn, const keypair *issuer,
    long from_s, long until_s, bool ca)
{
	static long serial;
	X509       *x = X509_new();
	X509_NAME  *name;
	BIO        *bio;

	assert_non_null(pkey);
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), ++serial), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from_s));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), until_s));
	assert_int_equal(X509_set_pubkey(x, pkey), 1);
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                     (const unsigned char *) cn, -1, -1, 0),
	    1);
	assert_int_equal(X509_set_issuer_name(x,
	                     issuer != NULL ? X509_get_subject_name(issuer->x) : name),
	    1);
	if (ca) {
		X509_EXTENSION *ext =
		    X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
		assert_non_null(ext);
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, issuer != NULL ? issuer->pkey : pkey,
	                issuer != NULL ? EVP_sha256() : md) > 0);
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
	kp->key_pem = bio_string(bio, &kp->key_len);
	BIO_free(bio);
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	kp->cert_pem = bio_string(bio, NULL);
	BIO_free(bio);
	kp->x    = x;
	kp->pkey = pkey;
}

static void
keypair_free(keypair *kp)
{
	free(kp->key_pem);
	free(kp->cert_pem);
	X509_free(kp->x);
	EVP_PKEY_free(kp->pkey);
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
	st               = rpc_channel_call(ch, "haven.diag.v1.Diagnostics/Echo", &req.base,
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
	st         = rpc_channel_call(ch, "haven.auth.v1.Auth/Challenge", &req.base,
	            &haven__auth__v1__challenge_response__descriptor, &m, &o, err, RPC_ERRMSG_MAX);
	if (st == HV_OK) {
		rep = (Haven__Auth__V1__ChallengeResponse *) (void *) m;
		assert_int_equal(rep->nonce.len, AUTH_NONCE_LEN);
		assert_true(rep->expires_at_ms > (uint64_t) hv_clock_wall_ms());
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
	st                 = rpc_channel_call(ch, "haven.auth.v1.Auth/Authenticate", &req.base,
	                    &haven__auth__v1__authenticate_response__descriptor, &m, &o, err, RPC_ERRMSG_MAX);
	if (st == HV_OK) {
		Haven__Auth__V1__AuthenticateResponse *rep = (void *) m;
		assert_true(strncmp(rep->token, "v2.", 3) == 0);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	free(sig);
	return (st);
}

/* A node's sign-in over inproc://: a CA and partners' certificates, the authenticator with
 * the CA file, an Auth server. */
typedef struct node {
	keypair      ca, acme, shelter, rogue;
	char         ca_file[600];
	auth        *a;
	rpc_server  *srv;
	rpc_channel *ch;
} node;

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void
node_start(node *n, const char *url, uint32_t challenge_ttl_s)
{
	auth_options       o  = { .lookup = lookup, .lookup_arg = orgs };
	rpc_server_options so = { .name = "auth-test" };

	reset_orgs();
	keypair_make(&n->ca, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(),
	    "haven test CA", NULL, 0, 3600, true);
	keypair_make(&n->acme, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(),
	    "acme-ngo", &n->ca, 0, 3600, false);
	keypair_make(&n->shelter, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), NULL, "shelter.one_2",
	    &n->ca, 0, 3600, false);
	/* Another key with a certificate of its own for acme-ngo: self-signed. */
	keypair_make(&n->rogue, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(),
	    "acme-ngo", NULL, 0, 3600, false);
	snprintf(n->ca_file, sizeof(n->ca_file), "%s/ca.pem", tmpdir);
	write_file(n->ca_file, n->ca.cert_pem);
	orgs[ORG_ACME].cert_pem     = n->acme.cert_pem;
	orgs[ORG_SHELTER].cert_pem  = n->shelter.cert_pem;
	orgs[ORG_GONE].cert_pem     = n->acme.cert_pem;
	orgs[ORG_OPERATOR].cert_pem = n->acme.cert_pem;
	orgs[ORG_ANON].cert_pem     = n->acme.cert_pem;

	memset(o.secret, 0x42, sizeof(o.secret));
	o.ca_file         = n->ca_file;
	o.challenge_ttl_s = challenge_ttl_s;
	assert_int_equal(auth_open(&n->a, &o), HV_OK);
	so.auth = n->a;
	assert_int_equal(rpc_server_open(&n->srv, &so), HV_OK);
	assert_int_equal(auth_register(n->a, n->srv), HV_OK);
	assert_int_equal(rpc_server_listen(n->srv, url), HV_OK);
	assert_int_equal(rpc_server_start(n->srv), HV_OK);
	assert_int_equal(rpc_channel_open(&n->ch, url, NULL), HV_OK);
}

static void
node_stop(node *n)
{
	rpc_channel_close(n->ch);
	rpc_server_close(n->srv);
	auth_close(n->a);
	for (size_t i = 0; orgs[i].id != NULL; i++) {
		orgs[i].cert_pem = NULL;
	}
	keypair_free(&n->ca);
	keypair_free(&n->acme);
	keypair_free(&n->shelter);
	keypair_free(&n->rogue);
	unlink(n->ca_file);
}

/* Logs in as org_id with key and expects the one answer of every failed sign-in. */
static void
login_refused(node *n, const char *org_id, const keypair *key)
{
	char err[RPC_ERRMSG_MAX];

	assert_int_equal(auth_login(n->ch, org_id, key->key_pem, key->key_len, 5000, err,
	                     sizeof(err)),
	    HV_UNAUTHENTICATED);
	assert_string_equal(err, "Authenticate: sign-in failed");
}

static void
test_end_to_end(void **state)
{
	node    n;
	auth   *a;
	char    err[RPC_ERRMSG_MAX];
	uint8_t nonce[AUTH_NONCE_LEN];

	(void) state;
	node_start(&n, "inproc://auth-test", 2);
	a = n.a;

	/* Log in with a P-256 key and with an Ed25519 key. */
	assert_int_equal(auth_login(n.ch, "acme-ngo", n.acme.key_pem, n.acme.key_len, 5000, err,
	                     sizeof(err)),
	    HV_OK);
	assert_int_equal(echo(n.ch, err), HV_OK);
	/* The channel now carries acme-ngo's token: disabling acme-ngo stops its calls. */
	orgs[ORG_ACME].enabled = false;
	assert_int_equal(echo(n.ch, err), HV_UNAUTHENTICATED);
	orgs[ORG_ACME].enabled = true;
	assert_int_equal(echo(n.ch, err), HV_OK);
	/* Disabled and enabled again, as the directory does it: a new version, and the token
	 * issued before is refused for good. */
	orgs[ORG_ACME].version++;
	assert_int_equal(echo(n.ch, err), HV_UNAUTHENTICATED);
	assert_int_equal(auth_login(n.ch, "acme-ngo", n.acme.key_pem, n.acme.key_len, 5000, err,
	                     sizeof(err)),
	    HV_OK);
	assert_int_equal(echo(n.ch, err), HV_OK);
	/* Its certificate changed (to the shelter's, in this directory): the token is refused. */
	orgs[ORG_ACME].cert_pem = n.shelter.cert_pem;
	assert_int_equal(echo(n.ch, err), HV_UNAUTHENTICATED);
	orgs[ORG_ACME].cert_pem = n.acme.cert_pem;
	assert_int_equal(echo(n.ch, err), HV_OK);
	assert_int_equal(auth_login(n.ch, "shelter.one_2", n.shelter.key_pem, n.shelter.key_len,
	                     5000, err, sizeof(err)),
	    HV_OK);
	assert_int_equal(echo(n.ch, err), HV_OK);

	/* Every refusal says the same, whatever the cause: the wrong key, another organisation's
	 * key, unknown, disabled, without a certificate, roles that may not sign in. */
	login_refused(&n, "acme-ngo", &n.rogue);
	assert_int_equal(auth_signin_failures(a, "signature"), 1);
	login_refused(&n, "shelter.one_2", &n.acme);
	assert_int_equal(auth_signin_failures(a, "signature"), 2);
	login_refused(&n, "nobody", &n.acme);
	assert_int_equal(auth_signin_failures(a, "unknown_organisation"), 1);
	login_refused(&n, "gone-ngo", &n.acme);
	assert_int_equal(auth_signin_failures(a, "disabled"), 0); /* CN acme-ngo: cert first */
	login_refused(&n, "no-cert", &n.acme);
	assert_int_equal(auth_signin_failures(a, "no_certificate"), 1);
	login_refused(&n, "sneaky-operator", &n.acme);
	login_refused(&n, "sneaky-anonymous", &n.acme);
	assert_int_equal(auth_signin_failures(a, "certificate"), 3);
	/* Disabled, with a certificate that is right for it. */
	orgs[ORG_ACME].enabled = false;
	login_refused(&n, "acme-ngo", &n.acme);
	assert_int_equal(auth_signin_failures(a, "disabled"), 1);
	orgs[ORG_ACME].enabled = true;
	/* A directory that fails: UNAVAILABLE, not an authentication failure. */
	{
		hv_status st = auth_login(n.ch, "broken-dir", n.acme.key_pem, n.acme.key_len, 300,
		    err, sizeof(err));
		assert_true(st == HV_UNAVAILABLE || st == HV_DEADLINE_EXCEEDED);
	}
	assert_int_equal(auth_login(n.ch, "bad id!", n.acme.key_pem, n.acme.key_len, 5000, err,
	                     sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(auth_login(n.ch, "acme-ngo", "not a key", 9, 5000, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	/* A failed login leaves the channel without a token (inproc: the operator again). */
	assert_int_equal(echo(n.ch, err), HV_OK);

	/* The Challenge and Authenticate messages themselves. */
	assert_int_equal(challenge(n.ch, "bad id!", nonce, err), HV_INVALID_ARGUMENT);
	assert_int_equal(challenge(n.ch, "", nonce, err), HV_INVALID_ARGUMENT);
	assert_int_equal(challenge(n.ch, "acme-ngo", nonce, err), HV_OK);
	/* A nonce made for another organisation. */
	assert_int_equal(authenticate(n.ch, "shelter.one_2", nonce, AUTH_NONCE_LEN, &n.shelter,
	                     err),
	    HV_UNAUTHENTICATED);
	assert_string_equal(err, "sign-in failed");
	/* A nonce with any byte changed. */
	for (size_t i = 0; i < AUTH_NONCE_LEN; i += 3) {
		nonce[i] ^= 0x01;
		assert_int_equal(authenticate(n.ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &n.acme,
		                     err),
		    HV_UNAUTHENTICATED);
		nonce[i] ^= 0x01;
	}
	assert_int_equal(auth_signin_failures(a, "challenge"), 1 + (AUTH_NONCE_LEN + 2) / 3);
	/* The wrong length. */
	assert_int_equal(authenticate(n.ch, "acme-ngo", nonce, AUTH_NONCE_LEN - 1, &n.acme, err),
	    HV_INVALID_ARGUMENT);
	/* A nonce made up by the client. */
	{
		uint8_t made_up[AUTH_NONCE_LEN];
		assert_int_equal(crypto_random(made_up, sizeof(made_up)), HV_OK);
		assert_int_equal(authenticate(n.ch, "acme-ngo", made_up, AUTH_NONCE_LEN, &n.acme,
		                     err),
		    HV_UNAUTHENTICATED);
	}
	/* A signature too long to be one, and none. */
	{
		Haven__Auth__V1__AuthenticateRequest req =
		    HAVEN__AUTH__V1__AUTHENTICATE_REQUEST__INIT;
		ProtobufCMessage *m = NULL;
		static uint8_t    big[1025];
		req.org_id         = "acme-ngo";
		req.nonce.data     = nonce;
		req.nonce.len      = AUTH_NONCE_LEN;
		req.signature.data = big;
		req.signature.len  = sizeof(big);
		assert_int_equal(rpc_channel_call(n.ch, "haven.auth.v1.Auth/Authenticate",
		                     &req.base, &haven__auth__v1__authenticate_response__descriptor,
		                     &m, NULL, err, sizeof(err)),
		    HV_INVALID_ARGUMENT);
		req.signature.len = 0;
		assert_int_equal(rpc_channel_call(n.ch, "haven.auth.v1.Auth/Authenticate",
		                     &req.base, &haven__auth__v1__authenticate_response__descriptor,
		                     &m, NULL, err, sizeof(err)),
		    HV_INVALID_ARGUMENT);
	}
	/* The good answer to the challenge is taken once (issue 12, hole 8): a replay of it,
	 * even within its lifetime, is refused. */
	assert_int_equal(authenticate(n.ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &n.acme, err),
	    HV_OK);
	assert_int_equal(authenticate(n.ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &n.acme, err),
	    HV_UNAUTHENTICATED);
	assert_string_equal(err, "sign-in failed");
	assert_int_equal(auth_signin_failures(a, "replayed"), 1);
	/* The counts are on the server's metrics page, by cause. */
	{
		char  *page;
		size_t len;
		assert_int_equal(metrics_render(rpc_server_metrics(n.srv), &page, &len), HV_OK);
		assert_non_null(
		    strstr(page, "haven_auth_signin_failures_total{cause=\"replayed\"} 1\n"));
		assert_non_null(
		    strstr(page, "haven_auth_signin_failures_total{cause=\"no_certificate\"} 1\n"));
		free(page);
	}
	/* An expired challenge (this authenticator's challenges live 2 s). */
	assert_int_equal(challenge(n.ch, "acme-ngo", nonce, err), HV_OK);
	usleep(2100 * 1000);
	assert_int_equal(authenticate(n.ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &n.acme, err),
	    HV_UNAUTHENTICATED);
	assert_string_equal(err, "sign-in failed");
	node_stop(&n);
}

/* Only a certificate of the node's CA, valid now and naming the organisation, signs in. */
static void
test_signin_certificates(void **state)
{
	node    n;
	keypair expired, early, other_ca, other, wrong_cn;
	char    err[RPC_ERRMSG_MAX];

	(void) state;
	node_start(&n, "inproc://auth-test-certs", 0);
	keypair_make(&expired, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(),
	    "acme-ngo", &n.ca, -7200, -3600, false);
	keypair_make(&early, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(), "acme-ngo",
	    &n.ca, 3600, 7200, false);
	keypair_make(&other_ca, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(),
	    "haven test CA", NULL, 0, 3600, true);
	keypair_make(&other, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(), "acme-ngo",
	    &other_ca, 0, 3600, false);
	keypair_make(&wrong_cn, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256(),
	    "shelter.one_2", &n.ca, 0, 3600, false);

	/* Each registered in turn for acme-ngo and signed with its own key. */
	orgs[ORG_ACME].cert_pem = expired.cert_pem;
	login_refused(&n, "acme-ngo", &expired);
	orgs[ORG_ACME].cert_pem = early.cert_pem;
	login_refused(&n, "acme-ngo", &early);
	orgs[ORG_ACME].cert_pem = other.cert_pem;
	login_refused(&n, "acme-ngo", &other);
	orgs[ORG_ACME].cert_pem = wrong_cn.cert_pem;
	login_refused(&n, "acme-ngo", &wrong_cn);
	orgs[ORG_ACME].cert_pem = n.rogue.cert_pem; /* self-signed */
	login_refused(&n, "acme-ngo", &n.rogue);
	assert_int_equal(auth_signin_failures(n.a, "certificate"), 5);
	assert_int_equal(auth_signin_failures(n.a, "signature"), 0);
	orgs[ORG_ACME].cert_pem = n.acme.cert_pem;
	assert_int_equal(auth_login(n.ch, "acme-ngo", n.acme.key_pem, n.acme.key_len, 5000, err,
	                     sizeof(err)),
	    HV_OK);
	node_stop(&n);

	/* Without a CA configured nobody signs in. */
	{
		auth_options       o  = { .lookup = lookup, .lookup_arg = orgs };
		rpc_server_options so = { .name = "auth-test" };
		memset(o.secret, 0x42, sizeof(o.secret));
		assert_int_equal(auth_open(&n.a, &o), HV_OK);
		so.auth = n.a;
		assert_int_equal(rpc_server_open(&n.srv, &so), HV_OK);
		assert_int_equal(auth_register(n.a, n.srv), HV_OK);
		assert_int_equal(rpc_server_listen(n.srv, "inproc://auth-test-noca"), HV_OK);
		assert_int_equal(rpc_server_start(n.srv), HV_OK);
		assert_int_equal(rpc_channel_open(&n.ch, "inproc://auth-test-noca", NULL), HV_OK);
		orgs[ORG_ACME].cert_pem = expired.cert_pem; /* any: not looked at */
		login_refused(&n, "acme-ngo", &expired);
		assert_int_equal(auth_signin_failures(n.a, "no_ca"), 1);
		orgs[ORG_ACME].cert_pem = NULL;
		rpc_channel_close(n.ch);
		rpc_server_close(n.srv);
		auth_close(n.a);
	}
	keypair_free(&expired);
	keypair_free(&early);
	keypair_free(&other_ca);
	keypair_free(&other);
	keypair_free(&wrong_cn);
}

/* In split mode every process verifies its own challenges only: a challenge of one process
 * answered to another is refused (and could not be replayed there). */
static void
test_challenge_per_process(void **state)
{
	node         n;
	auth        *b;
	rpc_server  *srv;
	rpc_channel *ch;
	char         err[RPC_ERRMSG_MAX], file[600];
	uint8_t      nonce[AUTH_NONCE_LEN];

	(void) state;
	node_start(&n, "inproc://auth-test-split-a", 0);
	{
		auth_options       o  = { .lookup = lookup, .lookup_arg = orgs };
		rpc_server_options so = { .name = "auth-test-b" };
		snprintf(file, sizeof(file), "%s/token-keys", tmpdir);
		o.key_file = file;
		o.ca_file  = n.ca_file;
		assert_int_equal(auth_open(&b, &o), HV_OK);
		so.auth = b;
		assert_int_equal(rpc_server_open(&srv, &so), HV_OK);
		assert_int_equal(auth_register(b, srv), HV_OK);
		assert_int_equal(rpc_server_listen(srv, "inproc://auth-test-split-b"), HV_OK);
		assert_int_equal(rpc_server_start(srv), HV_OK);
		assert_int_equal(rpc_channel_open(&ch, "inproc://auth-test-split-b", NULL), HV_OK);
	}
	assert_int_equal(challenge(n.ch, "acme-ngo", nonce, err), HV_OK);
	assert_int_equal(authenticate(ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &n.acme, err),
	    HV_UNAUTHENTICATED);
	assert_int_equal(auth_signin_failures(b, "challenge"), 1);
	assert_int_equal(authenticate(n.ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &n.acme, err),
	    HV_OK);
	assert_int_equal(challenge(ch, "acme-ngo", nonce, err), HV_OK);
	assert_int_equal(authenticate(ch, "acme-ngo", nonce, AUTH_NONCE_LEN, &n.acme, err), HV_OK);
	rpc_channel_close(ch);
	rpc_server_close(srv);
	auth_close(b);
	rm_keys(file);
	node_stop(&n);
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
		cmocka_unit_test(test_key_file),
		cmocka_unit_test(test_lifetime_capped),
		cmocka_unit_test(test_key_rotation),
		cmocka_unit_test(test_end_to_end),
		cmocka_unit_test(test_signin_certificates),
		cmocka_unit_test(test_challenge_per_process),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
