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

#define CRYPTO_SHA256_LEN     32
#define CRYPTO_HMAC_LEN       32
#define CRYPTO_AEAD_KEY_LEN   32 /* AES-256-GCM */
#define CRYPTO_AEAD_NONCE_LEN 12
#define CRYPTO_AEAD_TAG_LEN   16

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
void      crypto_hmac_key_free(crypto_hmac_key *k);
void      crypto_hmac_sha256_prepared(uint8_t out[CRYPTO_HMAC_LEN], const crypto_hmac_key *k,
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
size_t    crypto_b64url_len(size_t n);
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
hv_status crypto_verify_cert(const char *cert_pem, size_t cert_pem_len, const void *msg, size_t n,
    const uint8_t *sig, size_t siglen);

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

/* A fresh P-256 key and a self-signed certificate for it with subject CN cn (at most 64
 * bytes), meant for TLS clients only (clientAuth, digitalSignature, not a CA), valid from a day
 * before now_s for ten years: an identity a process makes for its own connections to itself
 * (the RPC server's listener watchdog, rpc_nng.c), trusted only where that process adds the
 * certificate. *cert_pem and *key_pem are malloc'd NUL-terminated PEM text on HV_OK (NULL
 * otherwise); the caller wipes and frees the key. HV_INVALID_ARGUMENT for a bad cn,
 * HV_RESOURCE_EXHAUSTED, HV_INTERNAL when OpenSSL fails. */
hv_status crypto_self_signed_client(const char *cn, int64_t now_s, char **cert_pem, char **key_pem);

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
#define CRYPTO_ED25519_SIG_LEN    64
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

/* ---- credentials: one-time codes and password hashes (docs/people.md, "Credentials") ---- */

/* HOTP (RFC 4226) and TOTP (RFC 6238). A secret is CRYPTO_OTP_SECRET_MIN to
 * CRYPTO_OTP_SECRET_MAX bytes (RFC 4226 asks for at least 128 bits and recommends 160; new
 * secrets are CRYPTO_TOTP_SECRET_LEN random bytes from crypto_random). SHA-1 is what
 * authenticator apps use and what crypto_totp_verify checks; SHA-256 and SHA-512 exist for
 * RFC 6238's other vectors. The secret is the caller's to keep and wipe.
 *
 * crypto_hotp sets *code to the digits-digit (6 to 8) code of counter; crypto_totp to the
 * code of the step of now_s (Unix seconds >= 0): floor(now_s / CRYPTO_TOTP_PERIOD). Both
 * return HV_INVALID_ARGUMENT for a secret of the wrong length, an unknown algorithm, digits
 * outside 6..8 or a negative time, and then *code is 0. */
#define CRYPTO_OTP_SECRET_MIN  20
#define CRYPTO_OTP_SECRET_MAX  64
#define CRYPTO_TOTP_SECRET_LEN 20
#define CRYPTO_TOTP_DIGITS     6
#define CRYPTO_TOTP_PERIOD     30 /* seconds a code lasts */
#define CRYPTO_TOTP_WINDOW     1  /* steps accepted either side of now, for clock drift */

typedef enum crypto_otp_alg {
	CRYPTO_OTP_SHA1,
	CRYPTO_OTP_SHA256,
	CRYPTO_OTP_SHA512,
} crypto_otp_alg;

hv_status crypto_hotp(uint32_t *code, crypto_otp_alg alg, unsigned digits, const uint8_t *secret,
    size_t secretlen, uint64_t counter);
hv_status crypto_totp(uint32_t *code, crypto_otp_alg alg, unsigned digits, const uint8_t *secret,
    size_t secretlen, int64_t now_s);

/* Verifies a code typed by a person: exactly CRYPTO_TOTP_DIGITS ASCII digits (codelen bytes,
 * no spaces), TOTP SHA-1, against the steps of now_s - 30, now_s and now_s + 30. Replay
 * protection: only a step greater than last_step is accepted, so a caller that stores the
 * step of each accepted code (and passes 0 before the first) refuses that code, and any older
 * one, a second time. Every step of the window is computed and compared in constant time.
 * HV_OK sets *step to the step that matched (store it as the next last_step);
 * HV_UNAUTHENTICATED when no step after last_step matches (wrong code, expired or replayed);
 * HV_INVALID_ARGUMENT for a code that is not six digits, a bad secret or a negative time.
 * *step is 0 unless HV_OK. The login answers all three the same way (no oracle). */
hv_status crypto_totp_verify(uint64_t *step, const uint8_t *secret, size_t secretlen,
    const char *code, size_t codelen, int64_t now_s, uint64_t last_step);

/* Base32 (RFC 4648 section 6, upper-case alphabet) without padding, the form otpauth URIs
 * carry. encode writes a NUL-terminated string and needs outsz >= crypto_b32_len(n) + 1
 * (HV_OUT_OF_RANGE otherwise, out wiped). decode takes upper-case text with or without its
 * complete '=' padding; HV_INVALID_ARGUMENT for other characters, lower case, partial
 * padding, a length that cannot occur or non-zero unused bits (one encoding per byte
 * string), HV_OUT_OF_RANGE when the bytes would not fit in outsz. What was decoded is wiped
 * on failure (it may be a secret); *outlen gets the decoded length. */
size_t    crypto_b32_len(size_t n);
hv_status crypto_b32_encode(char *out, size_t outsz, const void *in, size_t n);
hv_status crypto_b32_decode(uint8_t *out, size_t outsz, size_t *outlen, const char *in,
    size_t inlen);

/* The enrolment URI an authenticator app reads (by hand or from a QR code):
 *   otpauth://totp/haven:<account>?secret=<base32>&issuer=haven&algorithm=SHA1&digits=6&period=30
 * with every byte of account outside RFC 3986's unreserved set percent-encoded. account is
 * 1 to CRYPTO_OTP_ACCOUNT_MAX bytes (HV_INVALID_ARGUMENT otherwise, as for a bad secret);
 * HV_OUT_OF_RANGE when outsz is too small (CRYPTO_OTPAUTH_URI_MAX always suffices). The URI
 * holds the secret: the caller shows it to the person only, never logs it, and wipes out. */
#define CRYPTO_OTP_ACCOUNT_MAX 128
#define CRYPTO_OTPAUTH_URI_MAX (96 + 3 * CRYPTO_OTP_ACCOUNT_MAX + 2 * CRYPTO_OTP_SECRET_MAX)
hv_status crypto_otpauth_uri(char *out, size_t outsz, const char *account, const uint8_t *secret,
    size_t secretlen);

/* scrypt (RFC 7914) from OpenSSL 3's EVP_KDF "SCRYPT": outlen (1 to 1024) bytes derived from
 * pass and salt (each at most CRYPTO_SCRYPT_INPUT_MAX bytes) with cost N = 2^ln, block size
 * r, parallelism p. Bounded: ln 1..20, r 1..32, p 1..16, and the memory it takes,
 * 128 * r * (N + p + 2) bytes, at most CRYPTO_SCRYPT_MAXMEM; HV_INVALID_ARGUMENT outside
 * them, HV_RESOURCE_EXHAUSTED when OpenSSL fails (it cannot allocate). out is wiped on
 * failure. */
#define CRYPTO_SCRYPT_INPUT_MAX ((size_t) 1 << 20)
#define CRYPTO_SCRYPT_MAXMEM    ((uint64_t) 256 << 20)
hv_status crypto_scrypt(uint8_t *out, size_t outlen, const void *pass, size_t passlen,
    const uint8_t *salt, size_t saltlen, unsigned ln, unsigned r, unsigned p);

/* Password hashes as self-describing strings, so that costs can be raised later:
 *   $scrypt$ln=15,r=8,p=1$<salt: 16 bytes, base64url>$<hash: 32 bytes, base64url>
 * crypto_pwhash hashes with the current costs (CRYPTO_PWHASH_LN/R/P: 32 MiB, about 70 ms on
 * the project's machine; docs/people.md) and a fresh random salt; crypto_pwhash_with takes the
 * costs (within crypto_scrypt's bounds). A password is 1 to CRYPTO_PASSWORD_MAX bytes (any
 * bytes: the caller decides its rules); HV_INVALID_ARGUMENT otherwise. Each hash holds
 * 128 * r * 2^ln bytes while it runs: callers bound how many run at once.
 *
 * crypto_pwhash_verify: HV_OK when pw matches encoded (compared with CRYPTO_memcmp),
 * HV_UNAUTHENTICATED when it does not, HV_INVALID_ARGUMENT for a string that is not exactly
 * the format above (unknown algorithm, costs out of bounds or not in canonical decimal, bad
 * base64url, wrong lengths) or a password of a bad length. crypto_pwhash_needs_rehash is true
 * when encoded's costs are not the current ones (or it does not parse): after a successful
 * verify the caller then stores crypto_pwhash of the same password. */
#define CRYPTO_PWHASH_LN       15
#define CRYPTO_PWHASH_R        8
#define CRYPTO_PWHASH_P        1
#define CRYPTO_PWHASH_SALT_LEN 16
#define CRYPTO_PWHASH_HASH_LEN 32
#define CRYPTO_PWHASH_MAX      128 /* bytes of an encoded hash, with its NUL */
#define CRYPTO_PASSWORD_MAX    1024
hv_status crypto_pwhash(char out[CRYPTO_PWHASH_MAX], const char *pw, size_t pwlen);
hv_status crypto_pwhash_with(char out[CRYPTO_PWHASH_MAX], const char *pw, size_t pwlen, unsigned ln,
    unsigned r, unsigned p);
hv_status crypto_pwhash_verify(const char *encoded, const char *pw, size_t pwlen);
bool      crypto_pwhash_needs_rehash(const char *encoded);

#endif
