/*
 * auth.c - organisation identity: single-use challenges, session tokens under rotating shared
 * keys and the sign-in checks (see auth.h for the formats). No RPC here: the Auth service's
 * handlers and its client side are in auth_rpc.c, which calls down into this file through
 * auth_internal.h; rpc_server.c calls auth_verify_token. Nothing here calls back up.
 *
 * What is trusted: the token keys, the node CA and the partner directory. The role in a token
 * is the directory's at issue time, and every verification asks the directory again, so a
 * disabled organisation, or one whose record changed in any way, loses its tokens at once.
 * Nothing a token says about its own lifetime is believed beyond the node's maximum.
 *
 * Challenges are MAC'd with a random key of this process (never stored) and remembered once
 * used until they expire; token MACs use the shared token keys. They cannot be confused: the
 * keys differ, and a challenge's MAC input starts with "chal".
 *
 * Messages returned to callers never tell one sign-in failure from another; log lines name
 * the organisation id (an id, never personal data) and the cause, and never a secret, a
 * nonce, a token or a signature.
 */
#include "haven/bytes.h"
#include "haven/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "haven/auth/v1/auth.pb-c.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/log.h"
#include "auth_internal.h"

const char *const auth__cause_names[CAUSE_N] = {
	[CAUSE_CHALLENGE] = "challenge",
	[CAUSE_REPLAYED]  = "replayed",
	[CAUSE_UNKNOWN]   = "unknown_organisation",
	[CAUSE_NO_CERT]   = "no_certificate",
	[CAUSE_NO_CA]     = "no_ca",
	[CAUSE_CERT]      = "certificate",
	[CAUSE_SIGNATURE] = "signature",
	[CAUSE_DISABLED]  = "disabled",
	[CAUSE_ROLE]      = "role",
	[CAUSE_BUSY]      = "busy",
};

typedef struct auth_key {
	uint32_t k_id;
	int64_t  k_since_ms; /* when it became the current key */
	uint8_t  k_secret[AUTH_SECRET_LEN];
} auth_key;

typedef struct used_nonce {
	uint8_t u_random[NONCE_RANDOM_LEN];
	int64_t u_expiry_ms;
} used_nonce;

/* What a token says, once its MAC verified. */
typedef struct token_claims {
	unsigned tc_role;
	int64_t  tc_issued_ms;
	int64_t  tc_expires_ms;
	uint64_t tc_version;
	uint8_t  tc_fp[FP_LEN];
	char     tc_org_id[RPC_ORG_ID_MAX];
	size_t   tc_orglen;
} token_claims;

struct auth {
	pthread_mutex_t a_mu;      /* the keys, the key file's identity and the used nonces */
	auth_key        a_keys[2]; /* current, previous */
	unsigned        a_nkeys;
	char           *a_key_file; /* NULL: keys in memory only */
	char           *a_lock_file;
	struct stat     a_key_stat; /* the key file as last read */
	int64_t         a_checked_ms;
	uint8_t         a_chal_key[AUTH_SECRET_LEN];
	used_nonce     *a_used;
	size_t          a_nused;
	char           *a_ca_file;
	char           *a_decoy; /* the CA certificate: checked in place of a missing one */
	size_t          a_decoy_len;
	int64_t         a_token_ttl_ms;
	int64_t         a_challenge_ttl_ms;
	auth_lookup_fn  a_lookup;
	void           *a_lookup_arg;
	uint64_t        a_failures[CAUSE_N]; /* atomic */
	auth_session_fn a_session_fn;        /* people's sessions; set before serving */
	void           *a_session_arg;
};

_Static_assert(NONCE_MAC_LEN == 16, "nonce layout: random(16) || expiry(8) || mac(16)");
_Static_assert(sizeof(TOKEN_PREFIX) - 1 + 4 * ((PAYLOAD_MAX_LEN + 2) / 3) + 1 +
            4 * ((CRYPTO_HMAC_LEN + 2) / 3) <
        AUTH_TOKEN_MAX,
    "the longest token fits in AUTH_TOKEN_MAX");

/* ---- helpers -------------------------------------------------------------------------- */

/* An organisation id is 1..63 bytes of [A-Za-z0-9._-]. Sets *lenp when valid. */
bool
auth__org_id_valid(const char *s, size_t *lenp)
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

/* The organisation's certificate fingerprint as 32 bytes; zeros when it has none. */
static hv_status
org_fingerprint(const auth_org *org, uint8_t fp[FP_LEN])
{
	char      hex[65];
	hv_status st;

	memset(fp, 0, FP_LEN);
	if (org->cert_sha256[0] != '\0') {
		memcpy(hex, org->cert_sha256, sizeof(hex));
		hex[64] = '\0';
	} else if (org->cert_pem != NULL && org->cert_pem_len > 0) {
		st = crypto_cert_fingerprint(org->cert_pem, org->cert_pem_len, hex);
		if (st != HV_OK) {
			return (st);
		}
	} else {
		return (HV_OK);
	}
	for (size_t i = 0; i < FP_LEN; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			return (HV_INVALID_ARGUMENT);
		}
		fp[i] = (uint8_t) v;
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
	org->cert_sha256[sizeof(org->cert_sha256) - 1] = '\0';
	return (st);
}

/* ---- token keys ----------------------------------------------------------------------- */

/* Whether the key file is still the one last read (same inode, size and change time). */
static bool
same_file(const struct stat *x, const struct stat *y)
{
	return (x->st_dev == y->st_dev && x->st_ino == y->st_ino && x->st_size == y->st_size &&
	    x->st_mtim.tv_sec == y->st_mtim.tv_sec && x->st_mtim.tv_nsec == y->st_mtim.tv_nsec);
}

/* Reads the key file into a->a_keys. HV_NOT_FOUND when it does not exist (a_nkeys is then
 * 0), HV_DATA_LOSS for a file that is not one or two records, HV_PERMISSION_DENIED for one
 * open to others. Called with a_mu held. */
static hv_status
keys_load(auth *a)
{
	struct stat sb;
	char       *buf = NULL;
	size_t      len = 0;
	hv_status   st;

	a->a_nkeys = 0;
	memset(&a->a_key_stat, 0, sizeof(a->a_key_stat));
	/* stat before the read: a file replaced in between is read again at the next check. */
	if (stat(a->a_key_file, &sb) != 0) {
		return (hv_status_from_errno(errno));
	}
	st = hv_file_read(a->a_key_file, 2 * KEY_RECORD_LEN, true, &buf, &len);
	if (st == HV_OUT_OF_RANGE ||
	    (st == HV_OK && len != KEY_RECORD_LEN && len != 2 * KEY_RECORD_LEN)) {
		st = HV_DATA_LOSS;
	}
	if (st != HV_OK) {
		goto out;
	}
	for (size_t o = 0; o < len; o += KEY_RECORD_LEN) {
		auth_key      *k = &a->a_keys[a->a_nkeys++];
		const uint8_t *p = (const uint8_t *) buf + o;
		k->k_id          = (uint32_t) hv_get_be(p, 4);
		k->k_since_ms    = (int64_t) hv_get_be(p + 4, 8);
		memcpy(k->k_secret, p + 12, AUTH_SECRET_LEN);
	}
	a->a_key_stat = sb;
out:
	if (buf != NULL) {
		crypto_wipe(buf, len);
		free(buf);
	}
	return (st);
}

/* Writes a->a_keys to the key file: a new file, 0600, synced, renamed over the old one.
 * Called with a_mu and the key file's flock held. */
static hv_status
keys_write(auth *a)
{
	uint8_t   buf[2 * KEY_RECORD_LEN];
	char      tmp[4096];
	size_t    len = 0;
	hv_status st;

	for (unsigned i = 0; i < a->a_nkeys; i++, len += KEY_RECORD_LEN) {
		hv_put_be(buf + len, a->a_keys[i].k_id, 4);
		hv_put_be(buf + len + 4, (uint64_t) a->a_keys[i].k_since_ms, 8);
		memcpy(buf + len + 12, a->a_keys[i].k_secret, AUTH_SECRET_LEN);
	}
	snprintf(tmp, sizeof(tmp), "%s.new", a->a_key_file);
	/* A .new left by a crash of a writer holding the flock is ours to replace. */
	if (unlink(tmp) != 0 && errno != ENOENT) {
		st = hv_status_from_errno(errno);
		goto out;
	}
	if ((st = hv_file_create_private(tmp, buf, len)) != HV_OK) {
		goto out;
	}
	if (rename(tmp, a->a_key_file) != 0 || stat(a->a_key_file, &a->a_key_stat) != 0) {
		st = hv_status_from_errno(errno);
		unlink(tmp);
		goto out;
	}
	st = HV_OK;
out:
	crypto_wipe(buf, sizeof(buf));
	return (st);
}

/* Makes a new current key when there is none or the current one is a token lifetime old;
 * the current key becomes the previous one. With a key file: under its flock, after reading
 * it again (another process may have rotated already). Called with a_mu held. */
static hv_status
keys_rotate(auth *a, int64_t now_ms)
{
	auth_key  k;
	int       fd = -1;
	hv_status st = HV_OK;

	if (a->a_key_file != NULL) {
		fd = open(a->a_lock_file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			return (hv_status_from_errno(errno));
		}
		while (flock(fd, LOCK_EX) != 0) {
			if (errno != EINTR) {
				st = hv_status_from_errno(errno);
				goto out;
			}
		}
		if ((st = keys_load(a)) != HV_OK && st != HV_NOT_FOUND) {
			goto out; /* a damaged file is never replaced */
		}
		st = HV_OK;
	}
	if (a->a_nkeys > 0 && now_ms - a->a_keys[0].k_since_ms < a->a_token_ttl_ms) {
		goto out;
	}
	do {
		if ((st = crypto_random(&k, sizeof(k))) != HV_OK) {
			goto out;
		}
	} while (k.k_id == 0 || (a->a_nkeys > 0 && k.k_id == a->a_keys[0].k_id));
	k.k_since_ms = now_ms;
	if (a->a_nkeys > 0) {
		a->a_keys[1] = a->a_keys[0];
	}
	a->a_keys[0] = k;
	a->a_nkeys   = a->a_nkeys > 0 ? 2 : 1;
	if (a->a_key_file != NULL && (st = keys_write(a)) != HV_OK) {
		log_error("cannot write the token keys to %s: %s", a->a_key_file,
		    hv_status_name(st));
		a->a_nkeys = 0; /* read again next time */
		goto out;
	}
	log_info("token key rotated (key id %08x)", (unsigned) k.k_id);
out:
	crypto_wipe(&k, sizeof(k));
	if (fd >= 0) {
		flock(fd, LOCK_UN);
		close(fd);
	}
	return (st);
}

/* Brings the keys up to date: reads the key file again when it changed (looked at when force
 * is set or KEY_CHECK_MS passed), and rotates when due. Called with a_mu held. */
static hv_status
keys_refresh(auth *a, int64_t now_ms, bool force)
{
	struct stat sb;
	int64_t     real = hv_clock_wall_ms();
	hv_status   st;

	if (a->a_key_file != NULL &&
	    (force || a->a_nkeys == 0 || real - a->a_checked_ms >= KEY_CHECK_MS ||
	        real < a->a_checked_ms)) {
		a->a_checked_ms = real;
		if (stat(a->a_key_file, &sb) != 0 || !same_file(&sb, &a->a_key_stat) ||
		    a->a_nkeys == 0) {
			if ((st = keys_load(a)) != HV_OK && st != HV_NOT_FOUND) {
				return (st);
			}
		}
	}
	if (a->a_nkeys == 0 || now_ms - a->a_keys[0].k_since_ms >= a->a_token_ttl_ms) {
		return (keys_rotate(a, now_ms));
	}
	return (HV_OK);
}

/* The current key, for a token issued at now_ms. */
static hv_status
key_current(auth *a, int64_t now_ms, auth_key *out)
{
	hv_status st;

	pthread_mutex_lock(&a->a_mu);
	if ((st = keys_refresh(a, now_ms, false)) == HV_OK) {
		*out = a->a_keys[0];
	}
	pthread_mutex_unlock(&a->a_mu);
	return (st);
}

/* The key of id kid and until when it signed (*retired_ms: INT64_MAX for the current key).
 * False when no key has that id, also after reading the key file again. */
static bool
key_by_id(auth *a, uint32_t kid, int64_t now_ms, auth_key *out, int64_t *retired_ms)
{
	bool found = false;

	pthread_mutex_lock(&a->a_mu);
	for (int pass = 0; pass < 2 && !found; pass++) {
		if (keys_refresh(a, now_ms, pass == 1) != HV_OK) {
			break;
		}
		for (unsigned i = 0; i < a->a_nkeys; i++) {
			if (a->a_keys[i].k_id == kid) {
				*out        = a->a_keys[i];
				*retired_ms = i == 0 ? INT64_MAX : a->a_keys[0].k_since_ms;
				found       = true;
				break;
			}
		}
		if (a->a_key_file == NULL) {
			break;
		}
	}
	pthread_mutex_unlock(&a->a_mu);
	return (found);
}

/* ---- challenges ----------------------------------------------------------------------- */

/* MAC of a challenge: HMAC(challenge key, "chal" || random || expiry || org_id)[0..16]. */
static void
challenge_mac(const auth *a, const uint8_t *random_expiry, const char *org_id, size_t orglen,
    uint8_t mac[NONCE_MAC_LEN])
{
	uint8_t buf[4 + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN + ORG_ID_MAX_LEN];
	uint8_t full[CRYPTO_HMAC_LEN];

	memcpy(buf, "chal", 4);
	memcpy(buf + 4, random_expiry, NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN);
	memcpy(buf + 4 + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN, org_id, orglen);
	crypto_hmac_sha256(full, a->a_chal_key, sizeof(a->a_chal_key), buf,
	    4 + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN + orglen);
	memcpy(mac, full, NONCE_MAC_LEN);
	crypto_wipe(full, sizeof(full));
}

/* Whether a nonce is one of this process's challenges for org_id and has not expired: MAC
 * first (nothing in it is trusted before), then expiry. */
static bool
challenge_valid(const auth *a, const uint8_t nonce[AUTH_NONCE_LEN], const char *org_id,
    size_t orglen, int64_t now_ms)
{
	uint8_t mac[NONCE_MAC_LEN];

	challenge_mac(a, nonce, org_id, orglen, mac);
	if (!crypto_equal(mac, nonce + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN, sizeof(mac))) {
		return (false);
	}
	return (now_ms >= 0 && hv_get_be(nonce + NONCE_RANDOM_LEN, 8) > (uint64_t) now_ms);
}

/* Marks a valid nonce used: CAUSE_REPLAYED when it was before, CAUSE_BUSY when the set is
 * full of unexpired nonces, -1 when it is now used. */
static int
nonce_use(auth *a, const uint8_t nonce[AUTH_NONCE_LEN], int64_t now_ms)
{
	int64_t expiry = (int64_t) hv_get_be(nonce + NONCE_RANDOM_LEN, 8);
	int     cause  = -1;
	size_t  j      = 0;

	pthread_mutex_lock(&a->a_mu);
	for (size_t i = 0; i < a->a_nused; i++) {
		if (memcmp(a->a_used[i].u_random, nonce, NONCE_RANDOM_LEN) == 0) {
			cause = CAUSE_REPLAYED;
			goto out;
		}
	}
	if (a->a_nused == AUTH_USED_NONCES_MAX) {
		for (size_t i = 0; i < a->a_nused; i++) {
			if (a->a_used[i].u_expiry_ms > now_ms) {
				a->a_used[j++] = a->a_used[i];
			}
		}
		a->a_nused = j;
	}
	if (a->a_nused == AUTH_USED_NONCES_MAX) {
		cause = CAUSE_BUSY;
		goto out;
	}
	memcpy(a->a_used[a->a_nused].u_random, nonce, NONCE_RANDOM_LEN);
	a->a_used[a->a_nused++].u_expiry_ms = expiry;
out:
	pthread_mutex_unlock(&a->a_mu);
	return (cause);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

/* Sets up the keys: reads or creates the key file, or takes opts->secret as the first key. */
static hv_status
keys_open(auth *a, const auth_options *opts)
{
	static const uint8_t zero[AUTH_SECRET_LEN];
	char                 path[4096];
	int64_t              now = hv_clock_wall_ms();
	hv_status            st;

	if (opts->key_file == NULL) {
		/* An all-zero secret is one that was never loaded: anyone could forge tokens. */
		if (crypto_equal(opts->secret, zero, AUTH_SECRET_LEN)) {
			return (HV_INVALID_ARGUMENT);
		}
		if ((st = crypto_random(&a->a_keys[0].k_id, sizeof(a->a_keys[0].k_id))) != HV_OK) {
			return (st);
		}
		memcpy(a->a_keys[0].k_secret, opts->secret, AUTH_SECRET_LEN);
		a->a_keys[0].k_since_ms = now;
		a->a_nkeys              = 1;
		return (HV_OK);
	}
	snprintf(path, sizeof(path), "%s.lock", opts->key_file);
	if ((a->a_key_file = strdup(opts->key_file)) == NULL ||
	    (a->a_lock_file = strdup(path)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_lock(&a->a_mu);
	st = keys_refresh(a, now, true);
	pthread_mutex_unlock(&a->a_mu);
	if (st != HV_OK) {
		log_error("token keys %s: %s", opts->key_file, hv_status_name(st));
	}
	return (st);
}

hv_status
auth_open(auth **out, const auth_options *opts)
{
	auth     *a = NULL;
	hv_status st;

	*out = NULL;
	if (opts == NULL || opts->lookup == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((a = calloc(1, sizeof(*a))) == NULL ||
	    (a->a_used = calloc(AUTH_USED_NONCES_MAX, sizeof(*a->a_used))) == NULL) {
		free(a);
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_init(&a->a_mu, NULL);
	a->a_token_ttl_ms =
	    1000 * (int64_t) (opts->token_ttl_s != 0 ? opts->token_ttl_s : DEFAULT_TOKEN_TTL_S);
	a->a_challenge_ttl_ms = 1000 *
	    (int64_t) (opts->challenge_ttl_s != 0 ? opts->challenge_ttl_s
	                                          : DEFAULT_CHALLENGE_TTL_S);
	a->a_lookup     = opts->lookup;
	a->a_lookup_arg = opts->lookup_arg;
	if ((st = crypto_random(a->a_chal_key, sizeof(a->a_chal_key))) != HV_OK ||
	    (st = keys_open(a, opts)) != HV_OK) {
		goto fail;
	}
	if (opts->ca_file != NULL) {
		if ((a->a_ca_file = strdup(opts->ca_file)) == NULL) {
			st = HV_RESOURCE_EXHAUSTED;
			goto fail;
		}
		if ((st = hv_file_read(opts->ca_file, CA_FILE_MAX, false, &a->a_decoy,
		         &a->a_decoy_len)) != HV_OK) {
			log_error("CA file %s: %s", opts->ca_file, hv_status_name(st));
			goto fail;
		}
	}
	*out = a;
	return (HV_OK);
fail:
	auth_close(a);
	return (st);
}

void
auth_close(auth *a)
{
	if (a == NULL) {
		return;
	}
	pthread_mutex_destroy(&a->a_mu);
	free(a->a_key_file);
	free(a->a_lock_file);
	free(a->a_ca_file);
	free(a->a_decoy);
	free(a->a_used);
	crypto_wipe(a, sizeof(*a));
	free(a);
}

uint64_t
auth_signin_failures(auth *a, const char *cause)
{
	for (int i = 0; a != NULL && cause != NULL && i < CAUSE_N; i++) {
		if (strcmp(cause, auth__cause_names[i]) == 0) {
			return (__atomic_load_n(&a->a_failures[i], __ATOMIC_RELAXED));
		}
	}
	return (0);
}

/* ---- tokens --------------------------------------------------------------------------- */

/* Makes a token for org_id with role, bound to the record's version and certificate. */
hv_status
auth__token_make(auth *a, const char *org_id, size_t orglen, unsigned role, const auth_org *org,
    int64_t now_ms, char out[AUTH_TOKEN_MAX], uint64_t *expires_at_ms)
{
	uint8_t   payload[PAYLOAD_MAX_LEN];
	uint8_t   mac[CRYPTO_HMAC_LEN];
	auth_key  k;
	size_t    plen   = P_ORG + orglen, o;
	int64_t   expiry = now_ms + a->a_token_ttl_ms;
	hv_status st;

	if ((st = key_current(a, now_ms, &k)) != HV_OK ||
	    (st = org_fingerprint(org, payload + P_FP)) != HV_OK) {
		goto out;
	}
	hv_put_be(payload + P_KID, k.k_id, 4);
	payload[P_ROLE] = (uint8_t) role;
	hv_put_be(payload + P_IAT, (uint64_t) now_ms, 8);
	hv_put_be(payload + P_EXP, (uint64_t) expiry, 8);
	hv_put_be(payload + P_VERSION, org->version, 8);
	memcpy(payload + P_ORG, org_id, orglen);
	crypto_hmac_sha256(mac, k.k_secret, sizeof(k.k_secret), payload, plen);

	/* "v2." payload "." mac; the lengths were checked at compile time. */
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
out:
	crypto_wipe(&k, sizeof(k));
	crypto_wipe(mac, sizeof(mac));
	return (st);
}

hv_status
auth_issue_token(auth *a, const char *org_id, rpc_role role, int64_t now_ms,
    char out[AUTH_TOKEN_MAX], uint64_t *expires_at_ms)
{
	auth_org  org    = { 0 };
	size_t    orglen = 0;
	hv_status st     = HV_INVALID_ARGUMENT;

	out[0] = '\0';
	if (a == NULL || !auth__org_id_valid(org_id, &orglen) ||
	    !auth__role_issuable((unsigned) role) || now_ms < 0 ||
	    now_ms > INT64_MAX - a->a_token_ttl_ms) {
		goto out;
	}
	if ((st = lookup(a, org_id, &org)) != HV_OK) {
		goto out;
	}
	st = auth__token_make(a, org_id, orglen, (unsigned) role, &org, now_ms, out, expires_at_ms);
out:
	if (st != HV_OK) {
		crypto_wipe(out, AUTH_TOKEN_MAX);
		out[0] = '\0';
	}
	auth__org_release(&org);
	return (st);
}

/* Decodes a token, verifies its MAC and lifetime at now_ms and fills *c. HV_UNAUTHENTICATED
 * with *why set otherwise. */
static hv_status
token_open(auth *a, const char *token, int64_t now_ms, token_claims *c, const char **why)
{
	uint8_t     payload[PAYLOAD_MAX_LEN];
	uint8_t     mac[CRYPTO_HMAC_LEN], want[CRYPTO_HMAC_LEN];
	size_t      len, plen = 0, maclen = 0;
	const char *p, *dot;
	auth_key    k;
	int64_t     retired = 0;
	hv_status   st      = HV_UNAUTHENTICATED;

	*why = "malformed";
	memset(&k, 0, sizeof(k));
	if (token == NULL || (len = strnlen(token, AUTH_TOKEN_MAX)) == AUTH_TOKEN_MAX ||
	    strncmp(token, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) != 0 || now_ms < 0) {
		goto out;
	}
	p = token + sizeof(TOKEN_PREFIX) - 1;
	if ((dot = memchr(p, '.', len - (size_t) (p - token))) == NULL ||
	    crypto_b64url_decode(payload, sizeof(payload), &plen, p, (size_t) (dot - p)) != HV_OK ||
	    crypto_b64url_decode(mac, sizeof(mac), &maclen, dot + 1, strlen(dot + 1)) != HV_OK ||
	    maclen != sizeof(mac) || plen < PAYLOAD_MIN_LEN) {
		goto out;
	}
	/* The key id chooses the key; nothing else is looked at before the MAC verifies. */
	if (!key_by_id(a, (uint32_t) hv_get_be(payload + P_KID, 4), now_ms, &k, &retired)) {
		*why = "its key is unknown or gone";
		goto out;
	}
	crypto_hmac_sha256(want, k.k_secret, sizeof(k.k_secret), payload, plen);
	if (!crypto_equal(want, mac, sizeof(mac))) {
		*why = "MAC does not verify";
		goto out;
	}
	c->tc_role       = payload[P_ROLE];
	c->tc_issued_ms  = (int64_t) hv_get_be(payload + P_IAT, 8);
	c->tc_expires_ms = (int64_t) hv_get_be(payload + P_EXP, 8);
	c->tc_version    = hv_get_be(payload + P_VERSION, 8);
	memcpy(c->tc_fp, payload + P_FP, FP_LEN);
	c->tc_orglen = plen - P_ORG;
	memcpy(c->tc_org_id, payload + P_ORG, c->tc_orglen);
	c->tc_org_id[c->tc_orglen] = '\0';
	/* A valid MAC means we issued it, and we issue only these; checked anyway. */
	if (!auth__role_issuable(c->tc_role) || !auth__org_id_valid(c->tc_org_id, NULL) ||
	    c->tc_issued_ms < 0 || c->tc_expires_ms < 0) {
		goto out;
	}
	/* The lifetime is the node's, whatever the token says (a stolen key cannot mint a token
	 * that lives longer); the previous key signs nothing issued after it was replaced. */
	if (c->tc_issued_ms - AUTH_CLOCK_SKEW_MS > now_ms) {
		*why = "issued in the future";
	} else if (c->tc_expires_ms <= c->tc_issued_ms ||
	    c->tc_expires_ms - c->tc_issued_ms > a->a_token_ttl_ms) {
		*why = "its lifetime exceeds the node's maximum";
	} else if (c->tc_expires_ms <= now_ms) {
		*why = "expired";
	} else if (c->tc_issued_ms >= retired) {
		*why = "issued under a key already retired";
	} else {
		st = HV_OK;
	}
out:
	crypto_wipe(&k, sizeof(k));
	crypto_wipe(want, sizeof(want));
	crypto_wipe(mac, sizeof(mac));
	return (st);
}

static hv_status
verify_token(auth *a, const char *token, int64_t now_ms, bool use, rpc_caller *caller)
{
	token_claims c;
	auth_org     org = { 0 };
	uint8_t      fp[FP_LEN];
	const char  *why = "malformed";
	hv_status    st  = HV_UNAUTHENTICATED;

	if (a != NULL && token != NULL &&
	    strncmp(token, AUTH_SESSION_PREFIX, sizeof(AUTH_SESSION_PREFIX) - 1) == 0) {
		return (auth__session_verify(a->a_session_fn, a->a_session_arg, a->a_lookup,
		    a->a_lookup_arg, token, now_ms, use, caller));
	}
	if (a == NULL || (st = token_open(a, token, now_ms, &c, &why)) != HV_OK) {
		goto out;
	}
	if ((st = lookup(a, c.tc_org_id, &org)) != HV_OK) {
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
	} else if ((unsigned) org.role != c.tc_role) {
		why = "organisation's role changed";
	} else if (org.version != c.tc_version) {
		why = "organisation's record changed since the token was issued";
	} else if (org_fingerprint(&org, fp) != HV_OK || !crypto_equal(fp, c.tc_fp, FP_LEN)) {
		why = "organisation's certificate changed since the token was issued";
	} else {
		st = HV_OK;
	}
	if (st == HV_OK && caller != NULL) {
		caller->role = (rpc_role) c.tc_role;
		memcpy(caller->org_id, c.tc_org_id, c.tc_orglen + 1);
	}
out:
	if (st != HV_OK && log_enabled(LOG_LEVEL_DEBUG)) {
		log_debug("session token refused: %s", why);
	}
	auth__org_release(&org);
	return (st);
}

hv_status
auth_verify_token(auth *a, const char *token, int64_t now_ms, rpc_caller *caller)
{
	return (verify_token(a, token, now_ms, true, caller));
}

hv_status
auth_verify_token_passive(auth *a, const char *token, int64_t now_ms, rpc_caller *caller)
{
	return (verify_token(a, token, now_ms, false, caller));
}

void
auth_set_session_verifier(auth *a, auth_session_fn fn, void *arg)
{
	if (a != NULL) {
		a->a_session_fn  = fn;
		a->a_session_arg = arg;
	}
}

hv_status
auth_lookup_org(auth *a, const char *org_id, auth_org *out)
{
	memset(out, 0, sizeof(*out));
	if (a == NULL || !auth__org_id_valid(org_id, NULL)) {
		return (HV_INVALID_ARGUMENT);
	}
	return (lookup(a, org_id, out));
}

void
auth_org_release(auth_org *org)
{
	auth__org_release(org);
}

bool
auth_role_issuable(rpc_role role)
{
	return (auth__role_issuable((unsigned) role));
}

/* ---- sign-in -------------------------------------------------------------------------- */

hv_status
auth__challenge_make(auth *a, const char *org_id, size_t orglen, int64_t now_ms,
    uint8_t nonce[AUTH_NONCE_LEN], int64_t *expiry_ms)
{
	int64_t expiry = now_ms + a->a_challenge_ttl_ms;

	if (crypto_random(nonce, NONCE_RANDOM_LEN) != HV_OK) {
		return (HV_INTERNAL);
	}
	hv_put_be(nonce + NONCE_RANDOM_LEN, (uint64_t) expiry, 8);
	challenge_mac(a, nonce, org_id, orglen, nonce + NONCE_RANDOM_LEN + NONCE_EXPIRY_LEN);
	*expiry_ms = expiry;
	return (HV_OK);
}

size_t
auth__signed_message(uint8_t *buf, const uint8_t *nonce, const char *org_id, size_t orglen)
{
	size_t prefixlen = sizeof(AUTH_SIGNED_PREFIX) - 1;

	memcpy(buf, AUTH_SIGNED_PREFIX, prefixlen);
	memcpy(buf + prefixlen, nonce, AUTH_NONCE_LEN);
	memcpy(buf + prefixlen + AUTH_NONCE_LEN, org_id, orglen);
	return (prefixlen + AUTH_NONCE_LEN + orglen);
}

/*
 * The checks of a well-formed Authenticate: -1 when the organisation may sign in (org holds
 * its directory entry), else the cause of the failure, or CAUSE_DIRECTORY with *dir_st set.
 * why (whysz) receives the certificate check's reason. An organisation that is unknown or
 * has no certificate costs the same work as one with a bad signature: the CA certificate is
 * checked and verified against in its place.
 */
int
auth__signin_check(auth *a, const char *org_id, size_t orglen, const uint8_t nonce[AUTH_NONCE_LEN],
    const uint8_t *sig, size_t siglen, int64_t now_ms, auth_org *org, hv_status *dir_st, char *why,
    size_t whysz)
{
	uint8_t     msg[SIGNED_MAX];
	size_t      n;
	const char *cert    = NULL;
	size_t      certlen = 0;
	bool        has_cert;
	hv_status   lst, cst, sst;

	if (!challenge_valid(a, nonce, org_id, orglen, now_ms)) {
		return (CAUSE_CHALLENGE);
	}
	lst = lookup(a, org_id, org);
	if (lst != HV_OK && lst != HV_NOT_FOUND) {
		*dir_st = lst;
		return (CAUSE_DIRECTORY);
	}
	has_cert = lst == HV_OK && org->cert_pem != NULL && org->cert_pem_len > 0;
	cert     = has_cert ? org->cert_pem : a->a_decoy;
	certlen  = has_cert ? org->cert_pem_len : a->a_decoy_len;
	n        = auth__signed_message(msg, nonce, org_id, orglen);
	cst = crypto_cert_check(cert, certlen, a->a_ca_file, org_id, now_ms / 1000, why, whysz);
	sst = crypto_verify_cert(cert, certlen, msg, n, sig, siglen);
	if (lst == HV_NOT_FOUND) {
		return (CAUSE_UNKNOWN);
	}
	if (!has_cert) {
		return (CAUSE_NO_CERT);
	}
	if (cst == HV_FAILED_PRECONDITION) {
		return (CAUSE_NO_CA);
	}
	if (cst != HV_OK) {
		return (CAUSE_CERT);
	}
	if (sst != HV_OK) {
		return (CAUSE_SIGNATURE);
	}
	if (!org->enabled) {
		return (CAUSE_DISABLED);
	}
	if (!auth__role_issuable((unsigned) org->role)) {
		return (CAUSE_ROLE);
	}
	/* Last, so that only the holder of the key can use up a nonce or fill the set. */
	return (nonce_use(a, nonce, now_ms));
}

/* A failed sign-in: counted by cause and logged; the caller is told only "sign-in failed". */
void
auth__signin_note(auth *a, const char *org_id, int cause, const char *why)
{
	__atomic_fetch_add(&a->a_failures[cause], 1, __ATOMIC_RELAXED);
	log_warn("sign-in failed: organisation %s, cause %s%s%s", org_id, auth__cause_names[cause],
	    cause == CAUSE_CERT || cause == CAUSE_NO_CA ? ": " : "",
	    cause == CAUSE_CERT || cause == CAUSE_NO_CA ? why : "");
}
