/*
 * crypto.h - the small cryptography API haven uses, over OpenSSL 3's EVP interface.
 *
 * In the Monocypher spirit: sizes are in the signatures, secrets are wiped (OPENSSL_cleanse)
 * by the functions that made copies of them, tags and MACs are compared in constant time
 * (CRYPTO_memcmp), and only functions that verify or decrypt return a failure for bad input.
 * OpenSSL's error queue never leaks out: failures become hv_status values.
 */
#ifndef HAVEN_CRYPTO_H
#define HAVEN_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/status.h"

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_HMAC_LEN 32
#define CRYPTO_AEAD_KEY_LEN 32   /* AES-256-GCM */
#define CRYPTO_AEAD_NONCE_LEN 12
#define CRYPTO_AEAD_TAG_LEN 16

/* Fills buf with n bytes from the OS-seeded CSPRNG. HV_INTERNAL if the RNG fails. */
hv_status crypto_random(void *buf, size_t n);

void crypto_sha256(uint8_t out[CRYPTO_SHA256_LEN], const void *data, size_t n);

void crypto_hmac_sha256(uint8_t out[CRYPTO_HMAC_LEN], const uint8_t *key, size_t keylen,
    const void *data, size_t n);

/* HMAC-SHA256 of many messages under one key (the audit chain's): crypto_hmac_key_new hashes
 * the key's padded blocks once, so that each crypto_hmac_sha256_prepared costs two short
 * digests (a fraction of crypto_hmac_sha256, which sets OpenSSL's HMAC up every time). Same
 * result as crypto_hmac_sha256 with that key. *out is the caller's: crypto_hmac_key_free
 * (NULL allowed) frees and wipes it. A key may be used by many threads at once. Only _new can
 * fail: HV_RESOURCE_EXHAUSTED. */
typedef struct crypto_hmac_key crypto_hmac_key;
hv_status crypto_hmac_key_new(crypto_hmac_key **out, const uint8_t *key, size_t keylen);
void crypto_hmac_key_free(crypto_hmac_key *k);
void crypto_hmac_sha256_prepared(uint8_t out[CRYPTO_HMAC_LEN], const crypto_hmac_key *k,
    const void *data, size_t n);

/* Constant-time equality of two n-byte buffers. */
bool crypto_equal(const void *a, const void *b, size_t n);

/* Wipes n bytes so the compiler cannot elide it. */
void crypto_wipe(void *p, size_t n);

/* AES-256-GCM. Encrypt: out receives n bytes of ciphertext, tag 16 bytes. Decrypt returns
 * HV_DATA_LOSS when the tag does not verify (wrong key, altered ciphertext or aad), and then
 * out holds nothing meaningful (it is wiped). */
hv_status crypto_aead_encrypt(uint8_t *out, uint8_t tag[CRYPTO_AEAD_TAG_LEN],
    const uint8_t key[CRYPTO_AEAD_KEY_LEN], const uint8_t nonce[CRYPTO_AEAD_NONCE_LEN],
    const void *aad, size_t aadlen, const void *in, size_t n);
hv_status crypto_aead_decrypt(uint8_t *out, const uint8_t key[CRYPTO_AEAD_KEY_LEN],
    const uint8_t nonce[CRYPTO_AEAD_NONCE_LEN], const uint8_t tag[CRYPTO_AEAD_TAG_LEN],
    const void *aad, size_t aadlen, const void *in, size_t n);

/* Base64url without padding (RFC 4648 section 5). encode writes a NUL-terminated string and
 * needs outsz >= crypto_b64url_len(n) + 1 (HV_OUT_OF_RANGE otherwise). decode returns
 * HV_INVALID_ARGUMENT for characters outside the alphabet, padding, a length that cannot
 * occur, or non-zero unused bits in the last character (so each byte string has exactly one
 * encoding), and HV_OUT_OF_RANGE when the result would not fit in outsz; *outlen gets the
 * decoded length. */
size_t crypto_b64url_len(size_t n);
hv_status crypto_b64url_encode(char *out, size_t outsz, const void *in, size_t n);
hv_status crypto_b64url_decode(uint8_t *out, size_t outsz, size_t *outlen, const char *in,
    size_t inlen);

/* Signatures with the key of an X.509 certificate (EC P-256/P-384 with SHA-256, RSA of at
 * least 2048 bits with SHA-256 PKCS#1 v1.5, Ed25519 and Ed448 pure). The key and certificate
 * are given as PEM text; an encrypted key is refused, never prompted for. crypto_sign
 * allocates *sig (free with free()). crypto_verify_cert returns HV_OK when sig is a valid
 * signature of msg by the certificate's key, HV_UNAUTHENTICATED when it is not, and
 * HV_INVALID_ARGUMENT when the PEM does not parse or holds a key of another kind (both
 * functions). The certificate's validity dates and chain are not checked here: see
 * crypto_cert_check. */
hv_status crypto_sign(const char *key_pem, size_t key_pem_len, const void *msg, size_t n,
    uint8_t **sig, size_t *siglen);
hv_status crypto_verify_cert(const char *cert_pem, size_t cert_pem_len, const void *msg,
    size_t n, const uint8_t *sig, size_t siglen);

/* The SHA-256 fingerprint of the DER encoding of a PEM certificate, as 64 lower-case hex
 * characters and a NUL. HV_INVALID_ARGUMENT when the PEM does not parse. */
hv_status crypto_cert_fingerprint(const char *cert_pem, size_t cert_pem_len, char out[65]);

/* Checks that cert_pem may identify organisation cn on this node: it chains to a certificate
 * of ca_file (PEM, the node CA: tls_ca), is valid at now_s (Unix seconds), is meant for TLS
 * clients, and its subject has exactly one CN, equal to cn. HV_OK; HV_INVALID_ARGUMENT for a
 * certificate that fails (not PEM, self-signed, another CA's, expired, not yet valid, wrong
 * CN); HV_FAILED_PRECONDITION when ca_file is NULL or empty (no CA configured) or cannot be
 * read. why (whysz bytes, may be NULL) names the reason, never the certificate's contents. */
hv_status crypto_cert_check(const char *cert_pem, size_t cert_pem_len, const char *ca_file,
    const char *cn, int64_t now_s, char *why, size_t whysz);

/* Ed25519 (RFC 8032) keys the node signs with itself (consent receipts), and verification by
 * a bare public key, for whoever holds the node's public key and no certificate.
 *
 * crypto_ed25519_keygen makes a new private key as PKCS#8 PEM text: *pem is a malloc'd,
 * NUL-terminated buffer of *pemlen bytes (without the NUL), the caller's to wipe and free.
 * Sign with crypto_sign (above), or with crypto_ed25519_sign (below) when signing often.
 *
 * crypto_ed25519_public gets the raw 32-byte public key of an Ed25519 key given as PEM, either
 * a private key (PKCS#8) or a public key (SubjectPublicKeyInfo); HV_INVALID_ARGUMENT when the
 * PEM does not parse, is encrypted, or holds a key of another kind.
 *
 * crypto_ed25519_public_pem writes a raw public key as SubjectPublicKeyInfo PEM (what
 * `openssl pkeyutl -verify -pubin -rawin` reads) into a malloc'd NUL-terminated buffer.
 *
 * crypto_ed25519_verify returns HV_OK when sig is a valid signature of msg by pub, and
 * HV_UNAUTHENTICATED otherwise (also for a signature that is not 64 bytes, or a public key
 * that is not a point of the curve).
 *
 * For a process that signs often, parsing PEM each time (crypto_sign) is slow in OpenSSL 3:
 * crypto_ed25519_secret takes the raw 32-byte private key out of a PKCS#8 PEM once
 * (HV_INVALID_ARGUMENT as crypto_ed25519_public), and crypto_ed25519_sign signs with it. The
 * caller keeps the secret and wipes it when done. */
#define CRYPTO_ED25519_PUBLIC_LEN 32
#define CRYPTO_ED25519_SIG_LEN 64
#define CRYPTO_ED25519_SECRET_LEN 32

hv_status crypto_ed25519_keygen(char **pem, size_t *pemlen);
hv_status crypto_ed25519_public(const char *pem, size_t pemlen,
    uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN]);
hv_status crypto_ed25519_public_pem(const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], char **pem,
    size_t *pemlen);
hv_status crypto_ed25519_secret(const char *pem, size_t pemlen,
    uint8_t secret[CRYPTO_ED25519_SECRET_LEN]);
hv_status crypto_ed25519_sign(uint8_t sig[CRYPTO_ED25519_SIG_LEN],
    const uint8_t secret[CRYPTO_ED25519_SECRET_LEN], const void *msg, size_t n);
hv_status crypto_ed25519_verify(const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], const void *msg,
    size_t n, const uint8_t *sig, size_t siglen);

#endif
