/*
 * crypto.c - haven's small cryptography API (see crypto.h) over OpenSSL 3's EVP interface.
 *
 * Every OpenSSL call is converted here: callers see hv_status values, never OpenSSL's error
 * queue, which is cleared on each failure path so that a stale entry can neither leak into a
 * later, unrelated error report nor be printed with whatever it contains. Copies of secrets
 * made here are wiped before they are freed; tags and MACs are compared in constant time.
 *
 * OpenSSL takes most lengths as int, so buffers are fed to it in chunks of at most CHUNK_MAX
 * bytes and every size_t is checked before it is narrowed.
 */
#include "haven/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#define CHUNK_MAX (1 << 30)
#define RSA_MIN_BITS 2048
#define PEM_MAX ((size_t) INT_MAX)

/* A valid pointer for empty inputs: OpenSSL does not accept NULL everywhere n may be 0. */
static const uint8_t empty[1];

hv_status
crypto_random(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		size_t chunk = n > CHUNK_MAX ? CHUNK_MAX : n;
		if (RAND_bytes(p, (int) chunk) != 1) {
			ERR_clear_error();
			return (HV_INTERNAL);
		}
		p += chunk;
		n -= chunk;
	}
	return (HV_OK);
}

/*
 * The digest and MAC functions cannot report a failure (crypto.h), and OpenSSL only fails
 * them when it cannot allocate. Carrying on with a digest that was never computed would be
 * worse than stopping, so they abort.
 */
static void
fatal(void)
{
	ERR_clear_error();
	abort();
}

void
crypto_sha256(uint8_t out[CRYPTO_SHA256_LEN], const void *data, size_t n)
{
	unsigned int len = 0;

	if (EVP_Digest(n == 0 ? empty : data, n, out, &len, EVP_sha256(), NULL) != 1 ||
	    len != CRYPTO_SHA256_LEN) {
		fatal();
	}
}

void
crypto_hmac_sha256(uint8_t out[CRYPTO_HMAC_LEN], const uint8_t *key, size_t keylen,
    const void *data, size_t n)
{
	uint8_t      hashed[CRYPTO_SHA256_LEN];
	unsigned int len = 0;

	/* HMAC takes an int key length; a longer key is replaced by its hash, exactly as
	 * HMAC itself does for keys longer than the block size (RFC 2104 section 2). */
	if (keylen > INT_MAX) {
		crypto_sha256(hashed, key, keylen);
		key    = hashed;
		keylen = sizeof(hashed);
	}
	if (HMAC(EVP_sha256(), keylen == 0 ? empty : key, (int) keylen, n == 0 ? empty : data, n,
	        out, &len) == NULL ||
	    len != CRYPTO_HMAC_LEN) {
		fatal();
	}
	OPENSSL_cleanse(hashed, sizeof(hashed));
}

/* HMAC (RFC 2104) by hand over two digest contexts that already absorbed key ^ ipad and
 * key ^ opad: each MAC copies them instead of hashing the key's block again. */
#define HMAC_BLOCK 64
struct crypto_hmac_key {
	EVP_MD_CTX *hk_inner;
	EVP_MD_CTX *hk_outer;
};

void
crypto_hmac_key_free(crypto_hmac_key *k)
{
	if (k == NULL) {
		return;
	}
	EVP_MD_CTX_free(k->hk_inner); /* EVP_MD_CTX_free cleanses the state */
	EVP_MD_CTX_free(k->hk_outer);
	free(k);
}

hv_status
crypto_hmac_key_new(crypto_hmac_key **out, const uint8_t *key, size_t keylen)
{
	crypto_hmac_key *k;
	uint8_t          block[HMAC_BLOCK] = { 0 }, ipad[HMAC_BLOCK], opad[HMAC_BLOCK];
	hv_status        st = HV_RESOURCE_EXHAUSTED;

	*out = NULL;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		return (st);
	}
	if (keylen > HMAC_BLOCK) {
		crypto_sha256(block, key, keylen); /* RFC 2104: a longer key is hashed first */
	} else if (keylen > 0) {
		memcpy(block, key, keylen);
	}
	for (size_t i = 0; i < HMAC_BLOCK; i++) {
		ipad[i] = block[i] ^ 0x36;
		opad[i] = block[i] ^ 0x5c;
	}
	if ((k->hk_inner = EVP_MD_CTX_new()) == NULL || (k->hk_outer = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(k->hk_inner, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(k->hk_inner, ipad, sizeof(ipad)) != 1 ||
	    EVP_DigestInit_ex(k->hk_outer, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(k->hk_outer, opad, sizeof(opad)) != 1) {
		ERR_clear_error();
		goto out;
	}
	*out = k;
	k    = NULL;
	st   = HV_OK;
out:
	OPENSSL_cleanse(block, sizeof(block));
	OPENSSL_cleanse(ipad, sizeof(ipad));
	OPENSSL_cleanse(opad, sizeof(opad));
	crypto_hmac_key_free(k);
	return (st);
}

void
crypto_hmac_sha256_prepared(uint8_t out[CRYPTO_HMAC_LEN], const crypto_hmac_key *k,
    const void *data, size_t n)
{
	EVP_MD_CTX  *c;
	uint8_t      inner[CRYPTO_SHA256_LEN];
	unsigned int len = 0;

	if ((c = EVP_MD_CTX_new()) == NULL || EVP_MD_CTX_copy_ex(c, k->hk_inner) != 1 ||
	    EVP_DigestUpdate(c, n == 0 ? empty : data, n) != 1 ||
	    EVP_DigestFinal_ex(c, inner, &len) != 1 || len != sizeof(inner) ||
	    EVP_MD_CTX_copy_ex(c, k->hk_outer) != 1 ||
	    EVP_DigestUpdate(c, inner, sizeof(inner)) != 1 ||
	    EVP_DigestFinal_ex(c, out, &len) != 1 || len != CRYPTO_HMAC_LEN) {
		fatal();
	}
	EVP_MD_CTX_free(c);
	OPENSSL_cleanse(inner, sizeof(inner));
}

bool
crypto_equal(const void *a, const void *b, size_t n)
{
	return (CRYPTO_memcmp(a, b, n) == 0);
}

void
crypto_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0) {
		OPENSSL_cleanse(p, n);
	}
}

/* ---- AES-256-GCM ------------------------------------------------------------------ */

/* Feeds aad (out == NULL) or text through an initialised GCM context in int-sized chunks. */
static int
gcm_update(EVP_CIPHER_CTX *ctx, bool encrypt, uint8_t *out, const uint8_t *in, size_t n)
{
	while (n > 0) {
		int chunk = n > CHUNK_MAX ? CHUNK_MAX : (int) n;
		int outl  = 0;
		int rv    = encrypt ? EVP_EncryptUpdate(ctx, out, &outl, in, chunk)
		                    : EVP_DecryptUpdate(ctx, out, &outl, in, chunk);
		/* GCM is a stream mode: all text comes out at once, none is held back. */
		if (rv != 1 || (out != NULL && outl != chunk)) {
			return (-1);
		}
		if (out != NULL) {
			out += chunk;
		}
		in += chunk;
		n -= (size_t) chunk;
	}
	return (0);
}

hv_status
crypto_aead_encrypt(uint8_t *out, uint8_t tag[CRYPTO_AEAD_TAG_LEN],
    const uint8_t key[CRYPTO_AEAD_KEY_LEN], const uint8_t nonce[CRYPTO_AEAD_NONCE_LEN],
    const void *aad, size_t aadlen, const void *in, size_t n)
{
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t         last[16];
	int             outl = 0;
	hv_status       st   = HV_INTERNAL;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	/* The default GCM IV length is 12 bytes, CRYPTO_AEAD_NONCE_LEN. */
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
	    gcm_update(ctx, true, NULL, aad, aadlen) != 0 ||
	    gcm_update(ctx, true, out, in, n) != 0 || EVP_EncryptFinal_ex(ctx, last, &outl) != 1 ||
	    outl != 0 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_AEAD_TAG_LEN, tag) != 1) {
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		/* The tag is wiped so that a partial result never authenticates. out is left
		 * alone: encrypting in place, it may still hold the caller's plaintext. */
		ERR_clear_error();
		crypto_wipe(tag, CRYPTO_AEAD_TAG_LEN);
	}
	EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
	return (st);
}

hv_status
crypto_aead_decrypt(uint8_t *out, const uint8_t key[CRYPTO_AEAD_KEY_LEN],
    const uint8_t nonce[CRYPTO_AEAD_NONCE_LEN], const uint8_t tag[CRYPTO_AEAD_TAG_LEN],
    const void *aad, size_t aadlen, const void *in, size_t n)
{
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t         last[16];
	uint8_t         t[CRYPTO_AEAD_TAG_LEN];
	int             outl = 0;
	hv_status       st   = HV_INTERNAL;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	/* The ctrl takes a non-const pointer; it only copies from it. */
	memcpy(t, tag, sizeof(t));
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
	    gcm_update(ctx, false, NULL, aad, aadlen) != 0 ||
	    gcm_update(ctx, false, out, in, n) != 0 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_AEAD_TAG_LEN, t) != 1) {
		goto out;
	}
	/* Final is where the tag is checked; its only failure after the above is a mismatch. */
	if (EVP_DecryptFinal_ex(ctx, last, &outl) != 1) {
		st = HV_DATA_LOSS;
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		/* Unauthenticated plaintext must not be used: leave nothing of it behind. */
		ERR_clear_error();
		crypto_wipe(out, n);
	}
	EVP_CIPHER_CTX_free(ctx);
	return (st);
}

/* ---- base64url ---------------------------------------------------------------------- */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of a base64url character, or -1. */
static int
b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') {
		return (c - 'A');
	}
	if (c >= 'a' && c <= 'z') {
		return (c - 'a' + 26);
	}
	if (c >= '0' && c <= '9') {
		return (c - '0' + 52);
	}
	if (c == '-') {
		return (62);
	}
	if (c == '_') {
		return (63);
	}
	return (-1);
}

size_t
crypto_b64url_len(size_t n)
{
	/* Four characters per three bytes, two or three for a final partial group. SIZE_MAX
	 * for a length whose encoding would not fit in a size_t (no buffer is that big). */
	if (n / 3 > (SIZE_MAX - 4) / 4) {
		return (SIZE_MAX);
	}
	return ((n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1));
}

hv_status
crypto_b64url_encode(char *out, size_t outsz, const void *in, size_t n)
{
	const uint8_t *p   = in;
	size_t         len = crypto_b64url_len(n);
	size_t         o   = 0;
	size_t         i;

	if (len == SIZE_MAX || outsz < len + 1) {
		if (outsz > 0) {
			out[0] = '\0';
		}
		return (HV_OUT_OF_RANGE);
	}
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
		out[o++]   = b64url_alphabet[(v >> 18) & 63];
		out[o++]   = b64url_alphabet[(v >> 12) & 63];
		out[o++]   = b64url_alphabet[(v >> 6) & 63];
		out[o++]   = b64url_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t) p[i] << 16;
		out[o++]   = b64url_alphabet[(v >> 18) & 63];
		out[o++]   = b64url_alphabet[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8;
		out[o++]   = b64url_alphabet[(v >> 18) & 63];
		out[o++]   = b64url_alphabet[(v >> 12) & 63];
		out[o++]   = b64url_alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
	return (HV_OK);
}

/*
 * Strict decoding: every character must be in the alphabet, and the unused low bits of a
 * final partial group must be zero. Without the last rule several strings would decode to
 * the same bytes, and changing the final character of a token could leave it valid.
 */
hv_status
crypto_b64url_decode(uint8_t *out, size_t outsz, size_t *outlen, const char *in, size_t inlen)
{
	size_t    rem  = inlen % 4;
	size_t    need = (inlen / 4) * 3 + (rem == 0 ? 0 : rem - 1);
	size_t    o    = 0;
	size_t    i;
	uint32_t  v    = 0;
	hv_status st   = HV_INVALID_ARGUMENT;

	*outlen = 0;
	if (rem == 1) {
		goto out; /* one character carries only six bits: never a whole byte */
	}
	if (need > outsz) {
		st = HV_OUT_OF_RANGE;
		goto out;
	}
	for (i = 0; i < inlen; i++) {
		int d = b64url_value((unsigned char) in[i]);
		if (d < 0) {
			goto out;
		}
		v = v << 6 | (uint32_t) d;
		if (i % 4 == 3) {
			out[o++] = (uint8_t) (v >> 16);
			out[o++] = (uint8_t) (v >> 8);
			out[o++] = (uint8_t) v;
			v        = 0;
		}
	}
	if (rem == 2) {
		if ((v & 0xf) != 0) {
			goto out;
		}
		out[o++] = (uint8_t) (v >> 4);
	} else if (rem == 3) {
		if ((v & 0x3) != 0) {
			goto out;
		}
		out[o++] = (uint8_t) (v >> 10);
		out[o++] = (uint8_t) (v >> 2);
	}
	*outlen = o;
	st      = HV_OK;
out:
	if (st != HV_OK) {
		crypto_wipe(out, o); /* what was decoded may be part of a secret */
	}
	return (st);
}

/* ---- signatures and certificates ------------------------------------------------------ */

/* Refuses to prompt for a passphrase: OpenSSL's default callback would read the terminal. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void) buf;
	(void) size;
	(void) rwflag;
	(void) u;
	return (-1);
}

/*
 * Decides the digest for a key of a supported type: SHA-256 for EC P-256/P-384 (ECDSA) and
 * RSA of at least RSA_MIN_BITS (PKCS#1 v1.5, OpenSSL's default padding for RSA keys), none
 * for Ed25519 and Ed448, which hash internally. Returns -1 for any other key.
 */
static int
key_digest(EVP_PKEY *pkey, const EVP_MD **md)
{
	if (EVP_PKEY_is_a(pkey, "ED25519") || EVP_PKEY_is_a(pkey, "ED448")) {
		*md = NULL;
		return (0);
	}
	if (EVP_PKEY_is_a(pkey, "EC")) {
		char   group[64];
		size_t len = 0;
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) != 1 ||
		    (strcmp(group, "prime256v1") != 0 && strcmp(group, "secp384r1") != 0)) {
			return (-1);
		}
		*md = EVP_sha256();
		return (0);
	}
	if (EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_bits(pkey) >= RSA_MIN_BITS) {
		*md = EVP_sha256();
		return (0);
	}
	return (-1);
}

/* Parses one PEM certificate from memory; NULL when it does not parse. */
static X509 *
read_cert(const char *pem, size_t len)
{
	BIO  *bio;
	X509 *x;

	if (pem == NULL || len == 0 || len > PEM_MAX ||
	    (bio = BIO_new_mem_buf(pem, (int) len)) == NULL) {
		return (NULL);
	}
	x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	return (x);
}

hv_status
crypto_sign(const char *key_pem, size_t key_pem_len, const void *msg, size_t n, uint8_t **sig,
    size_t *siglen)
{
	BIO          *bio  = NULL;
	EVP_PKEY     *pkey = NULL;
	EVP_MD_CTX   *mctx = NULL;
	const EVP_MD *md;
	uint8_t      *s   = NULL;
	size_t        len = 0;
	hv_status     st  = HV_INVALID_ARGUMENT;

	*sig    = NULL;
	*siglen = 0;
	if (key_pem == NULL || key_pem_len == 0 || key_pem_len > PEM_MAX) {
		goto out;
	}
	if ((bio = BIO_new_mem_buf(key_pem, (int) key_pem_len)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	if ((pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)) == NULL ||
	    key_digest(pkey, &md) != 0) {
		goto out;
	}
	st = HV_INTERNAL;
	if ((mctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(mctx, NULL, md, NULL, pkey) != 1 ||
	    EVP_DigestSign(mctx, NULL, &len, n == 0 ? empty : msg, n) != 1) {
		goto out;
	}
	if ((s = malloc(len)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	/* len was the maximum; ECDSA signatures (DER) may come out shorter. */
	if (EVP_DigestSign(mctx, s, &len, n == 0 ? empty : msg, n) != 1) {
		goto out;
	}
	*sig    = s;
	*siglen = len;
	s       = NULL;
	st      = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
	free(s);
	EVP_MD_CTX_free(mctx);
	EVP_PKEY_free(pkey); /* OpenSSL cleanses private key material when it frees it */
	BIO_free(bio);
	return (st);
}

hv_status
crypto_verify_cert(const char *cert_pem, size_t cert_pem_len, const void *msg, size_t n,
    const uint8_t *sig, size_t siglen)
{
	X509         *x    = NULL;
	EVP_PKEY     *pkey = NULL;
	EVP_MD_CTX   *mctx = NULL;
	const EVP_MD *md;
	hv_status     st = HV_INVALID_ARGUMENT;

	if ((x = read_cert(cert_pem, cert_pem_len)) == NULL ||
	    (pkey = X509_get0_pubkey(x)) == NULL || key_digest(pkey, &md) != 0) {
		goto out;
	}
	st = HV_UNAUTHENTICATED;
	if (sig == NULL || siglen == 0) {
		goto out;
	}
	if ((mctx = EVP_MD_CTX_new()) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	if (EVP_DigestVerifyInit(mctx, NULL, md, NULL, pkey) != 1) {
		st = HV_INTERNAL;
		goto out;
	}
	/* 1 is a good signature. 0 is a bad one and a negative value a signature that does not
	 * even decode (ECDSA's DER): both are the signer's failure, not ours. */
	if (EVP_DigestVerify(mctx, sig, siglen, n == 0 ? empty : msg, n) != 1) {
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
	EVP_MD_CTX_free(mctx);
	X509_free(x); /* pkey is owned by x */
	return (st);
}

hv_status
crypto_cert_fingerprint(const char *cert_pem, size_t cert_pem_len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	X509             *x     = NULL;
	uint8_t           md[EVP_MAX_MD_SIZE];
	unsigned int      len = 0;
	hv_status         st  = HV_INVALID_ARGUMENT;

	out[0] = '\0';
	if ((x = read_cert(cert_pem, cert_pem_len)) == NULL) {
		goto out;
	}
	if (X509_digest(x, EVP_sha256(), md, &len) != 1 || len != CRYPTO_SHA256_LEN) {
		st = HV_INTERNAL;
		goto out;
	}
	for (unsigned int i = 0; i < len; i++) {
		out[2 * i]     = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[2 * len] = '\0';
	st           = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
	X509_free(x);
	return (st);
}

/* The reason a chain did not verify, in the words crypto_cert_check promises. */
static const char *
chain_reason(int err)
{
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return ("the certificate has expired");
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return ("the certificate is not valid yet");
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		return ("the certificate is self-signed, not signed by the node's CA");
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return ("the certificate is not signed by the node's CA");
	case X509_V_ERR_CERT_REVOKED:
		return ("the certificate is revoked");
	case X509_V_ERR_INVALID_PURPOSE:
		return ("the certificate is not for TLS clients (extendedKeyUsage clientAuth)");
	default:
		return ("the certificate does not verify against the node's CA");
	}
}

/* Whether x's subject has exactly one CN and it is exactly cn (no embedded NUL). */
static bool
subject_cn_is(X509 *x, const char *cn)
{
	X509_NAME       *name = X509_get_subject_name(x);
	int              i    = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	ASN1_STRING     *v;
	size_t           n = strlen(cn);

	if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0 ||
	    (v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i))) == NULL) {
		return (false);
	}
	return ((size_t) ASN1_STRING_length(v) == n &&
	    memcmp(ASN1_STRING_get0_data(v), cn, n) == 0);
}

hv_status
crypto_cert_check(const char *cert_pem, size_t cert_pem_len, const char *ca_file, const char *cn,
    int64_t now_s, char *why, size_t whysz)
{
	X509           *x   = NULL;
	X509_STORE     *xs  = NULL;
	X509_STORE_CTX *ctx = NULL;
	const char     *r   = "the certificate is not a PEM certificate";
	hv_status       st  = HV_INVALID_ARGUMENT;

	if (ca_file == NULL || ca_file[0] == '\0') {
		st = HV_FAILED_PRECONDITION;
		r  = "the node has no CA configured (tls_ca), so it cannot check certificates";
		goto out;
	}
	if (cn == NULL || (x = read_cert(cert_pem, cert_pem_len)) == NULL) {
		goto out;
	}
	if ((xs = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		r  = "out of memory";
		goto out;
	}
	if (X509_STORE_load_file(xs, ca_file) != 1) {
		st = HV_FAILED_PRECONDITION;
		r  = "the node's CA file (tls_ca) cannot be read";
		goto out;
	}
	if (X509_STORE_CTX_init(ctx, xs, x, NULL) != 1 ||
	    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
		st = HV_INTERNAL;
		r  = "the certificate check cannot be set up";
		goto out;
	}
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t) now_s);
	if (X509_verify_cert(ctx) != 1) {
		r = chain_reason(X509_STORE_CTX_get_error(ctx));
		goto out;
	}
	if (!subject_cn_is(x, cn)) {
		r = "the certificate's subject CN is not the organisation id";
		goto out;
	}
	st = HV_OK;
	r  = "";
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
	if (why != NULL && whysz > 0) {
		snprintf(why, whysz, "%s", r);
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(xs);
	X509_free(x);
	return (st);
}

/* ---- Ed25519 keys of the node ---------------------------------------------------------- */

/* Copies a memory BIO's contents into a malloc'd NUL-terminated buffer, wiping what the BIO
 * held (it may be a private key). NULL when out of memory. */
static char *
bio_take(BIO *bio, size_t *len)
{
	char *data = NULL;
	long  n    = BIO_get_mem_data(bio, &data);
	char *out;

	if (n <= 0 || data == NULL || (out = malloc((size_t) n + 1)) == NULL) {
		return (NULL);
	}
	memcpy(out, data, (size_t) n);
	out[n] = '\0';
	crypto_wipe(data, (size_t) n);
	*len = (size_t) n;
	return (out);
}

hv_status
crypto_ed25519_keygen(char **pem, size_t *pemlen)
{
	EVP_PKEY *pkey = NULL;
	BIO      *bio  = NULL;
	hv_status st   = HV_INTERNAL;

	*pem    = NULL;
	*pemlen = 0;
	if ((pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL) {
		goto out;
	}
	if ((bio = BIO_new(BIO_s_secmem())) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	if (PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		goto out;
	}
	if ((*pem = bio_take(bio, pemlen)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	return (st);
}

/* The Ed25519 key in pem: a private key, or with public_ok also a public key. INVALID_ARGUMENT
 * for anything else (OpenSSL's error queue cleared). */
static hv_status
ed25519_from_pem(const char *pem, size_t pemlen, bool public_ok, EVP_PKEY **out)
{
	BIO      *bio;
	EVP_PKEY *pkey;

	*out = NULL;
	if (pem == NULL || pemlen == 0 || pemlen > PEM_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((bio = BIO_new_mem_buf(pem, (int) pemlen)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	/* A private key first; failing that, from the start again, a public key. */
	if ((pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)) == NULL && public_ok &&
	    BIO_reset(bio) == 1) {
		ERR_clear_error();
		pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	}
	BIO_free(bio);
	if (pkey == NULL || !EVP_PKEY_is_a(pkey, "ED25519")) {
		ERR_clear_error();
		EVP_PKEY_free(pkey);
		return (HV_INVALID_ARGUMENT);
	}
	*out = pkey;
	return (HV_OK);
}

hv_status
crypto_ed25519_public(const char *pem, size_t pemlen, uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN])
{
	EVP_PKEY *pkey;
	size_t    len = CRYPTO_ED25519_PUBLIC_LEN;
	hv_status st;

	if ((st = ed25519_from_pem(pem, pemlen, true, &pkey)) != HV_OK) {
		return (st);
	}
	if (EVP_PKEY_get_raw_public_key(pkey, pub, &len) != 1 || len != CRYPTO_ED25519_PUBLIC_LEN) {
		ERR_clear_error();
		st = HV_INVALID_ARGUMENT;
	}
	EVP_PKEY_free(pkey);
	return (st);
}

hv_status
crypto_ed25519_public_pem(const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], char **pem,
    size_t *pemlen)
{
	EVP_PKEY *pkey = NULL;
	BIO      *bio  = NULL;
	hv_status st   = HV_INVALID_ARGUMENT;

	*pem    = NULL;
	*pemlen = 0;
	if ((pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
	         CRYPTO_ED25519_PUBLIC_LEN)) == NULL) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_PUBKEY(bio, pkey) != 1 ||
	    (*pem = bio_take(bio, pemlen)) == NULL) {
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	return (st);
}

hv_status
crypto_ed25519_secret(const char *pem, size_t pemlen, uint8_t secret[CRYPTO_ED25519_SECRET_LEN])
{
	EVP_PKEY *pkey;
	size_t    len = CRYPTO_ED25519_SECRET_LEN;
	hv_status st;

	if ((st = ed25519_from_pem(pem, pemlen, false, &pkey)) == HV_OK &&
	    (EVP_PKEY_get_raw_private_key(pkey, secret, &len) != 1 ||
	        len != CRYPTO_ED25519_SECRET_LEN)) {
		ERR_clear_error();
		st = HV_INVALID_ARGUMENT;
	}
	if (st != HV_OK) {
		crypto_wipe(secret, CRYPTO_ED25519_SECRET_LEN);
	}
	EVP_PKEY_free(pkey);
	return (st);
}

hv_status
crypto_ed25519_sign(uint8_t sig[CRYPTO_ED25519_SIG_LEN],
    const uint8_t secret[CRYPTO_ED25519_SECRET_LEN], const void *msg, size_t n)
{
	EVP_PKEY   *pkey = NULL;
	EVP_MD_CTX *mctx = NULL;
	size_t      len  = CRYPTO_ED25519_SIG_LEN;
	hv_status   st   = HV_INTERNAL;

	if ((pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, secret,
	         CRYPTO_ED25519_SECRET_LEN)) == NULL) {
		goto out;
	}
	if ((mctx = EVP_MD_CTX_new()) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	if (EVP_DigestSignInit(mctx, NULL, NULL, NULL, pkey) != 1 ||
	    EVP_DigestSign(mctx, sig, &len, n == 0 ? empty : msg, n) != 1 ||
	    len != CRYPTO_ED25519_SIG_LEN) {
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
		crypto_wipe(sig, CRYPTO_ED25519_SIG_LEN);
	}
	EVP_MD_CTX_free(mctx);
	EVP_PKEY_free(pkey); /* cleanses the key */
	return (st);
}

hv_status
crypto_ed25519_verify(const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], const void *msg, size_t n,
    const uint8_t *sig, size_t siglen)
{
	EVP_PKEY   *pkey = NULL;
	EVP_MD_CTX *mctx = NULL;
	hv_status   st   = HV_UNAUTHENTICATED;

	if (sig == NULL || siglen != CRYPTO_ED25519_SIG_LEN) {
		goto out;
	}
	if ((pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
	         CRYPTO_ED25519_PUBLIC_LEN)) == NULL) {
		goto out;
	}
	if ((mctx = EVP_MD_CTX_new()) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	if (EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, pkey) != 1) {
		st = HV_INTERNAL;
		goto out;
	}
	/* 1 is a good signature; 0 a bad one, and a negative value one that does not decode or
	 * a key that is not on the curve: both the signer's failure. */
	if (EVP_DigestVerify(mctx, sig, siglen, n == 0 ? empty : msg, n) != 1) {
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
	EVP_MD_CTX_free(mctx);
	EVP_PKEY_free(pkey);
	return (st);
}

/* ---- one-time codes (RFC 4226 HOTP, RFC 6238 TOTP) -------------------------------------- */

static const uint32_t otp_pow10[] = { 1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
	100000000 };

static const EVP_MD *
otp_md(crypto_otp_alg alg)
{
	switch (alg) {
	case CRYPTO_OTP_SHA1:
		return (EVP_sha1());
	case CRYPTO_OTP_SHA256:
		return (EVP_sha256());
	case CRYPTO_OTP_SHA512:
		return (EVP_sha512());
	}
	return (NULL);
}

static bool
otp_secret_ok(const uint8_t *secret, size_t secretlen)
{
	return (secret != NULL && secretlen >= CRYPTO_OTP_SECRET_MIN &&
	    secretlen <= CRYPTO_OTP_SECRET_MAX);
}

hv_status
crypto_hotp(uint32_t *code, crypto_otp_alg alg, unsigned digits, const uint8_t *secret,
    size_t secretlen, uint64_t counter)
{
	const EVP_MD *md     = otp_md(alg);
	uint8_t       msg[8];
	uint8_t       mac[EVP_MAX_MD_SIZE];
	unsigned int  maclen = 0;
	unsigned      off;
	uint32_t      bin;
	hv_status     st = HV_INVALID_ARGUMENT;

	*code = 0;
	if (md == NULL || digits < 6 || digits > 8 || !otp_secret_ok(secret, secretlen)) {
		goto out;
	}
	for (int i = 0; i < 8; i++) {
		msg[i] = (uint8_t) (counter >> (56 - 8 * i));
	}
	if (HMAC(md, secret, (int) secretlen, msg, sizeof(msg), mac, &maclen) == NULL ||
	    maclen < 20 || maclen > sizeof(mac)) {
		ERR_clear_error();
		st = HV_INTERNAL;
		goto out;
	}
	/* Dynamic truncation (RFC 4226 section 5.3): 31 bits at the offset the last nibble
	 * names, reduced to the number of digits. */
	off   = mac[maclen - 1] & 0xf;
	bin   = (uint32_t) (mac[off] & 0x7f) << 24 | (uint32_t) mac[off + 1] << 16 |
	    (uint32_t) mac[off + 2] << 8 | (uint32_t) mac[off + 3];
	*code = bin % otp_pow10[digits];
	st    = HV_OK;
out:
	crypto_wipe(mac, sizeof(mac));
	return (st);
}

hv_status
crypto_totp(uint32_t *code, crypto_otp_alg alg, unsigned digits, const uint8_t *secret,
    size_t secretlen, int64_t now_s)
{
	if (now_s < 0) {
		*code = 0;
		return (HV_INVALID_ARGUMENT);
	}
	return (crypto_hotp(code, alg, digits, secret, secretlen,
	    (uint64_t) now_s / CRYPTO_TOTP_PERIOD));
}

hv_status
crypto_totp_verify(uint64_t *step, const uint8_t *secret, size_t secretlen, const char *code,
    size_t codelen, int64_t now_s, uint64_t last_step)
{
	char      want[CRYPTO_TOTP_DIGITS];
	uint32_t  c     = 0;
	uint64_t  now   = 0;
	uint64_t  found = 0;
	hv_status st    = HV_INVALID_ARGUMENT;

	*step = 0;
	if (code == NULL || codelen != CRYPTO_TOTP_DIGITS || now_s < 0 ||
	    !otp_secret_ok(secret, secretlen)) {
		goto out;
	}
	for (size_t i = 0; i < codelen; i++) {
		if (code[i] < '0' || code[i] > '9') {
			goto out;
		}
	}
	now = (uint64_t) now_s / CRYPTO_TOTP_PERIOD;
	/* Every step of the window is computed and compared; the latest one that matches and
	 * is after last_step wins, so that storing it refuses the code again whichever step it
	 * was typed for. */
	for (uint64_t s = now < CRYPTO_TOTP_WINDOW ? 0 : now - CRYPTO_TOTP_WINDOW;
	     s <= now + CRYPTO_TOTP_WINDOW; s++) {
		if ((st = crypto_hotp(&c, CRYPTO_OTP_SHA1, CRYPTO_TOTP_DIGITS, secret, secretlen,
		         s)) != HV_OK) {
			goto out;
		}
		for (int i = CRYPTO_TOTP_DIGITS - 1; i >= 0; i--) {
			want[i] = (char) ('0' + c % 10);
			c /= 10;
		}
		if (CRYPTO_memcmp(want, code, sizeof(want)) == 0 && s > last_step) {
			found = s;
		}
	}
	st = found != 0 ? HV_OK : HV_UNAUTHENTICATED;
	if (st == HV_OK) {
		*step = found;
	}
out:
	crypto_wipe(want, sizeof(want));
	crypto_wipe(&c, sizeof(c));
	return (st);
}

/* ---- base32 (RFC 4648 section 6) and otpauth URIs --------------------------------------- */

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* Characters of a final partial group of n % 5 bytes, and its '=' padding. */
static const size_t b32_tail_chars[5] = { 0, 2, 4, 5, 7 };

static int
b32_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') {
		return (c - 'A');
	}
	if (c >= '2' && c <= '7') {
		return (c - '2' + 26);
	}
	return (-1);
}

size_t
crypto_b32_len(size_t n)
{
	if (n / 5 > (SIZE_MAX - 8) / 8) {
		return (SIZE_MAX);
	}
	return ((n / 5) * 8 + b32_tail_chars[n % 5]);
}

hv_status
crypto_b32_encode(char *out, size_t outsz, const void *in, size_t n)
{
	const uint8_t *p   = in;
	size_t         len = crypto_b32_len(n);
	size_t         o   = 0;

	if (len == SIZE_MAX || outsz < len + 1) {
		if (outsz > 0) {
			crypto_wipe(out, outsz);
		}
		return (HV_OUT_OF_RANGE);
	}
	for (size_t i = 0; i < n; i += 5) {
		size_t   take = n - i < 5 ? n - i : 5;
		uint64_t v    = 0;
		for (size_t j = 0; j < 5; j++) {
			v = v << 8 | (j < take ? p[i + j] : 0);
		}
		for (size_t j = 0; j < b32_tail_chars[take % 5] + (take == 5 ? 8 : 0); j++) {
			out[o++] = b32_alphabet[(v >> (35 - 5 * j)) & 31];
		}
	}
	out[o] = '\0';
	return (HV_OK);
}

hv_status
crypto_b32_decode(uint8_t *out, size_t outsz, size_t *outlen, const char *in, size_t inlen)
{
	size_t    pad = 0;
	size_t    rem;
	size_t    o   = 0;
	size_t    tail = 0;
	uint64_t  v   = 0;
	hv_status st  = HV_INVALID_ARGUMENT;

	*outlen = 0;
	while (pad < inlen && in[inlen - 1 - pad] == '=') {
		pad++;
	}
	inlen -= pad;
	rem = inlen % 8;
	for (tail = 0; tail < 5 && b32_tail_chars[tail] != rem; tail++) {
	}
	if (tail == 5 || (pad != 0 && (rem == 0 || pad != 8 - rem))) {
		goto out; /* a length no byte string has, or padding that does not complete it */
	}
	if ((inlen / 8) * 5 + tail > outsz) {
		st = HV_OUT_OF_RANGE;
		goto out;
	}
	for (size_t i = 0; i < inlen; i++) {
		int d = b32_value((unsigned char) in[i]);
		if (d < 0) {
			goto out;
		}
		v = v << 5 | (uint64_t) d;
		if (i % 8 == 7) {
			for (int j = 4; j >= 0; j--) {
				out[o++] = (uint8_t) (v >> (8 * j));
			}
			v = 0;
		}
	}
	if (rem != 0) {
		unsigned unused = (unsigned) (rem * 5 - tail * 8);
		if ((v & ((1u << unused) - 1)) != 0) {
			goto out; /* unused bits set: a second encoding of the same bytes */
		}
		v >>= unused;
		for (size_t j = tail; j > 0; j--) {
			out[o++] = (uint8_t) (v >> (8 * (j - 1)));
		}
	}
	*outlen = o;
	st      = HV_OK;
out:
	if (st != HV_OK) {
		crypto_wipe(out, o);
	}
	crypto_wipe(&v, sizeof(v));
	return (st);
}

/* Appends n bytes to out at *o, keeping room for the NUL; false when they do not fit. */
static bool
uri_put(char *out, size_t outsz, size_t *o, const char *s, size_t n)
{
	if (outsz - *o <= n) {
		return (false);
	}
	memcpy(out + *o, s, n);
	*o += n;
	return (true);
}

hv_status
crypto_otpauth_uri(char *out, size_t outsz, const char *account, const uint8_t *secret,
    size_t secretlen)
{
	static const char hex[] = "0123456789ABCDEF";
	static const char tail[] = "&issuer=haven&algorithm=SHA1&digits=6&period=30";
	char              b32[(CRYPTO_OTP_SECRET_MAX / 5 + 1) * 8 + 1];
	size_t            alen = account == NULL ? 0 : strnlen(account, CRYPTO_OTP_ACCOUNT_MAX + 1);
	size_t            o    = 0;
	hv_status         st   = HV_INVALID_ARGUMENT;

	if (alen == 0 || alen > CRYPTO_OTP_ACCOUNT_MAX || !otp_secret_ok(secret, secretlen) ||
	    out == NULL || outsz == 0) {
		goto out;
	}
	if (crypto_b32_encode(b32, sizeof(b32), secret, secretlen) != HV_OK) {
		st = HV_INTERNAL;
		goto out;
	}
	st = HV_OUT_OF_RANGE;
	if (!uri_put(out, outsz, &o, "otpauth://totp/haven:", 21)) {
		goto out;
	}
	for (size_t i = 0; i < alen; i++) {
		unsigned char c = (unsigned char) account[i];
		char          esc[3] = { '%', hex[c >> 4], hex[c & 15] };
		bool          plain  = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
		if (!(plain ? uri_put(out, outsz, &o, (const char *) &account[i], 1) :
		              uri_put(out, outsz, &o, esc, 3))) {
			goto out;
		}
	}
	if (!uri_put(out, outsz, &o, "?secret=", 8) ||
	    !uri_put(out, outsz, &o, b32, strlen(b32)) ||
	    !uri_put(out, outsz, &o, tail, sizeof(tail) - 1)) {
		goto out;
	}
	out[o] = '\0';
	st     = HV_OK;
out:
	if (st != HV_OK && out != NULL && outsz > 0) {
		crypto_wipe(out, outsz);
		out[0] = '\0';
	}
	crypto_wipe(b32, sizeof(b32));
	return (st);
}

/* ---- scrypt and password hashes --------------------------------------------------------- */

#define SCRYPT_LN_MAX 20
#define SCRYPT_R_MAX 32
#define SCRYPT_P_MAX 16
#define SCRYPT_OUT_MAX 1024

/* Whether the costs are within bounds, the memory OpenSSL's scrypt takes included. */
static bool
scrypt_costs_ok(unsigned ln, unsigned r, unsigned p)
{
	if (ln < 1 || ln > SCRYPT_LN_MAX || r < 1 || r > SCRYPT_R_MAX || p < 1 ||
	    p > SCRYPT_P_MAX) {
		return (false);
	}
	return ((uint64_t) 128 * r * (((uint64_t) 1 << ln) + p + 2) <= CRYPTO_SCRYPT_MAXMEM);
}

hv_status
crypto_scrypt(uint8_t *out, size_t outlen, const void *pass, size_t passlen,
    const uint8_t *salt, size_t saltlen, unsigned ln, unsigned r, unsigned p)
{
	EVP_KDF     *kdf    = NULL;
	EVP_KDF_CTX *ctx    = NULL;
	uint64_t     n      = (uint64_t) 1 << (ln & 63);
	uint64_t     maxmem = CRYPTO_SCRYPT_MAXMEM;
	uint32_t     r32    = r;
	uint32_t     p32    = p;
	OSSL_PARAM   params[7];
	hv_status    st     = HV_INVALID_ARGUMENT;

	if (out == NULL || outlen == 0 || outlen > SCRYPT_OUT_MAX ||
	    !scrypt_costs_ok(ln, r, p) || passlen > CRYPTO_SCRYPT_INPUT_MAX ||
	    saltlen > CRYPTO_SCRYPT_INPUT_MAX || (pass == NULL && passlen != 0) ||
	    (salt == NULL && saltlen != 0)) {
		goto out;
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL)) == NULL ||
	    (ctx = EVP_KDF_CTX_new(kdf)) == NULL) {
		goto out;
	}
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
	    (void *) (passlen == 0 ? empty : pass), passlen);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
	    (void *) (saltlen == 0 ? empty : salt), saltlen);
	params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
	params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32);
	params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32);
	params[5] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
	params[6] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, out, outlen, params) != 1) {
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
		if (out != NULL && outlen <= SCRYPT_OUT_MAX) {
			crypto_wipe(out, outlen);
		}
	}
	EVP_KDF_CTX_free(ctx); /* cleanses the password and salt it copied */
	EVP_KDF_free(kdf);
	return (st);
}

typedef struct pwhash_parsed {
	unsigned ph_ln;
	unsigned ph_r;
	unsigned ph_p;
	uint8_t  ph_salt[CRYPTO_PWHASH_SALT_LEN];
	uint8_t  ph_hash[CRYPTO_PWHASH_HASH_LEN];
} pwhash_parsed;

/* "<name><number><end>" at *s, the number in canonical decimal (no sign, no leading zero, at
 * most 4 digits); moves *s past end. */
static bool
pwhash_field(const char **s, const char *name, unsigned *v, char end)
{
	const char *p = *s;
	unsigned    x = 0;
	size_t      n = 0;

	if (strncmp(p, name, strlen(name)) != 0) {
		return (false);
	}
	p += strlen(name);
	while (p[n] >= '0' && p[n] <= '9' && n < 5) {
		x = x * 10 + (unsigned) (p[n] - '0');
		n++;
	}
	if (n == 0 || n > 4 || (n > 1 && p[0] == '0') || p[n] != end) {
		return (false);
	}
	*v = x;
	*s = p + n + 1;
	return (true);
}

/* Parses an encoded hash of exactly the documented format (crypto.h). */
static hv_status
pwhash_parse(const char *enc, pwhash_parsed *ph)
{
	const char *s = enc;
	const char *dollar;
	size_t      len;
	size_t      got;

	if (enc == NULL || (len = strnlen(enc, CRYPTO_PWHASH_MAX)) == CRYPTO_PWHASH_MAX ||
	    !pwhash_field(&s, "$scrypt$ln=", &ph->ph_ln, ',') ||
	    !pwhash_field(&s, "r=", &ph->ph_r, ',') || !pwhash_field(&s, "p=", &ph->ph_p, '$') ||
	    !scrypt_costs_ok(ph->ph_ln, ph->ph_r, ph->ph_p) || (dollar = strchr(s, '$')) == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (crypto_b64url_decode(ph->ph_salt, sizeof(ph->ph_salt), &got, s,
	        (size_t) (dollar - s)) != HV_OK ||
	    got != sizeof(ph->ph_salt) ||
	    crypto_b64url_decode(ph->ph_hash, sizeof(ph->ph_hash), &got, dollar + 1,
	        len - (size_t) (dollar + 1 - enc)) != HV_OK ||
	    got != sizeof(ph->ph_hash)) {
		return (HV_INVALID_ARGUMENT);
	}
	return (HV_OK);
}

hv_status
crypto_pwhash_with(char out[CRYPTO_PWHASH_MAX], const char *pw, size_t pwlen, unsigned ln,
    unsigned r, unsigned p)
{
	pwhash_parsed ph;
	char          salt[CRYPTO_PWHASH_SALT_LEN * 2];
	char          hash[CRYPTO_PWHASH_HASH_LEN * 2];
	int           n;
	hv_status     st = HV_INVALID_ARGUMENT;

	out[0] = '\0';
	if (pw == NULL || pwlen == 0 || pwlen > CRYPTO_PASSWORD_MAX || !scrypt_costs_ok(ln, r, p)) {
		goto out;
	}
	if ((st = crypto_random(ph.ph_salt, sizeof(ph.ph_salt))) != HV_OK ||
	    (st = crypto_scrypt(ph.ph_hash, sizeof(ph.ph_hash), pw, pwlen, ph.ph_salt,
	         sizeof(ph.ph_salt), ln, r, p)) != HV_OK ||
	    (st = crypto_b64url_encode(salt, sizeof(salt), ph.ph_salt, sizeof(ph.ph_salt))) !=
	        HV_OK ||
	    (st = crypto_b64url_encode(hash, sizeof(hash), ph.ph_hash, sizeof(ph.ph_hash))) !=
	        HV_OK) {
		goto out;
	}
	n = snprintf(out, CRYPTO_PWHASH_MAX, "$scrypt$ln=%u,r=%u,p=%u$%s$%s", ln, r, p, salt,
	    hash);
	st = n > 0 && n < CRYPTO_PWHASH_MAX ? HV_OK : HV_INTERNAL;
out:
	if (st != HV_OK) {
		out[0] = '\0';
	}
	crypto_wipe(&ph, sizeof(ph));
	crypto_wipe(hash, sizeof(hash));
	return (st);
}

hv_status
crypto_pwhash(char out[CRYPTO_PWHASH_MAX], const char *pw, size_t pwlen)
{
	return (crypto_pwhash_with(
	    out, pw, pwlen, CRYPTO_PWHASH_LN, CRYPTO_PWHASH_R, CRYPTO_PWHASH_P));
}

hv_status
crypto_pwhash_verify(const char *encoded, const char *pw, size_t pwlen)
{
	pwhash_parsed ph;
	uint8_t       got[CRYPTO_PWHASH_HASH_LEN];
	hv_status     st = HV_INVALID_ARGUMENT;

	if (pw == NULL || pwlen == 0 || pwlen > CRYPTO_PASSWORD_MAX ||
	    pwhash_parse(encoded, &ph) != HV_OK) {
		goto out;
	}
	if ((st = crypto_scrypt(got, sizeof(got), pw, pwlen, ph.ph_salt, sizeof(ph.ph_salt),
	         ph.ph_ln, ph.ph_r, ph.ph_p)) != HV_OK) {
		goto out;
	}
	st = CRYPTO_memcmp(got, ph.ph_hash, sizeof(got)) == 0 ? HV_OK : HV_UNAUTHENTICATED;
out:
	crypto_wipe(&ph, sizeof(ph));
	crypto_wipe(got, sizeof(got));
	return (st);
}

bool
crypto_pwhash_needs_rehash(const char *encoded)
{
	pwhash_parsed ph;
	bool          needs;

	needs = pwhash_parse(encoded, &ph) != HV_OK || ph.ph_ln != CRYPTO_PWHASH_LN ||
	    ph.ph_r != CRYPTO_PWHASH_R || ph.ph_p != CRYPTO_PWHASH_P;
	crypto_wipe(&ph, sizeof(ph));
	return (needs);
}
