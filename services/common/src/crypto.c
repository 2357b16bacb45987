/*
 * crypto.c - haven's small cryptography API (see crypto.h) over OpenSSL 3's EVP interface:
 * random bytes, SHA-256, HMAC, constant-time comparison and wiping, AES-256-GCM and base64url.
 * Signatures, certificates and the node's Ed25519 keys are in crypto_pki.c; one-time codes,
 * base32 and password hashes (the credentials of people) in crypto_cred.c.
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
	hv_status        st                = HV_RESOURCE_EXHAUSTED;

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
	uint32_t  v  = 0;
	hv_status st = HV_INVALID_ARGUMENT;

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
