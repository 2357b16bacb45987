/*
 * crypto_pki.c - signatures and certificates (an organisation's key proving possession, a
 * certificate checked against the node CA, fingerprints) and the node's Ed25519 keys (receipt
 * and checkpoint signatures), over OpenSSL 3's EVP and X509 interfaces. The rules of crypto.c
 * hold here too: OpenSSL's error queue is cleared on every failure path, secrets are wiped.
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

#define RSA_MIN_BITS 2048
#define PEM_MAX      ((size_t) INT_MAX)

/* A valid pointer for empty inputs: OpenSSL does not accept NULL everywhere n may be 0. */
static const uint8_t empty[1];

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

/* Parses one PEM private key from memory, or with public_ok, failing that, a public key.
 * INVALID_ARGUMENT when neither parses (OpenSSL's error queue is left to the caller). */
static hv_status
read_key(const char *pem, size_t len, bool public_ok, EVP_PKEY **out)
{
	BIO *bio;

	*out = NULL;
	if (pem == NULL || len == 0 || len > PEM_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((bio = BIO_new_mem_buf(pem, (int) len)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	/* A private key first; failing that, from the start again, a public key. */
	if ((*out = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)) == NULL && public_ok &&
	    BIO_reset(bio) == 1) {
		ERR_clear_error();
		*out = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	}
	BIO_free(bio);
	return (*out != NULL ? HV_OK : HV_INVALID_ARGUMENT);
}

/* Signs msg with pkey and digest md (NULL for Ed25519) into sig (cap bytes); *len the
 * signature's length. HV_INTERNAL when OpenSSL refuses (the caller clears its queue). */
static hv_status
digest_sign(EVP_PKEY *pkey, const EVP_MD *md, const void *msg, size_t n, uint8_t *sig, size_t cap,
    size_t *len)
{
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	hv_status   st   = HV_INTERNAL;

	*len = cap;
	if (mctx == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (EVP_DigestSignInit(mctx, NULL, md, NULL, pkey) == 1 &&
	    EVP_DigestSign(mctx, sig, len, n == 0 ? empty : msg, n) == 1) {
		st = HV_OK;
	}
	EVP_MD_CTX_free(mctx);
	return (st);
}

/* Verifies sig over msg with pkey and digest md (NULL for Ed25519): HV_OK for a good
 * signature, HV_UNAUTHENTICATED for any other (the caller clears OpenSSL's queue). */
static hv_status
digest_verify(EVP_PKEY *pkey, const EVP_MD *md, const void *msg, size_t n, const uint8_t *sig,
    size_t siglen)
{
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	hv_status   st   = HV_UNAUTHENTICATED;

	if (mctx == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (EVP_DigestVerifyInit(mctx, NULL, md, NULL, pkey) != 1) {
		st = HV_INTERNAL;
	} else if (EVP_DigestVerify(mctx, sig, siglen, n == 0 ? empty : msg, n) == 1) {
		/* 1 is a good signature. 0 is a bad one and a negative value a signature that
		 * does not even decode (ECDSA's DER) or a key not on its curve: both are the
		 * signer's failure, not ours. */
		st = HV_OK;
	}
	EVP_MD_CTX_free(mctx);
	return (st);
}

hv_status
crypto_sign(const char *key_pem, size_t key_pem_len, const void *msg, size_t n, uint8_t **sig,
    size_t *siglen)
{
	EVP_PKEY     *pkey = NULL;
	const EVP_MD *md;
	uint8_t      *s   = NULL;
	size_t        len = 0;
	int           max;
	hv_status     st;

	*sig    = NULL;
	*siglen = 0;
	if ((st = read_key(key_pem, key_pem_len, false, &pkey)) != HV_OK) {
		goto out;
	}
	if (key_digest(pkey, &md) != 0) {
		st = HV_INVALID_ARGUMENT;
		goto out;
	}
	/* The key's largest signature; ECDSA signatures (DER) may come out shorter. */
	if ((max = EVP_PKEY_get_size(pkey)) <= 0) {
		st = HV_INTERNAL;
		goto out;
	}
	if ((s = malloc((size_t) max)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	if ((st = digest_sign(pkey, md, msg, n, s, (size_t) max, &len)) != HV_OK) {
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
	EVP_PKEY_free(pkey); /* OpenSSL cleanses private key material when it frees it */
	return (st);
}

hv_status
crypto_verify_cert(const char *cert_pem, size_t cert_pem_len, const void *msg, size_t n,
    const uint8_t *sig, size_t siglen)
{
	X509         *x    = NULL;
	EVP_PKEY     *pkey = NULL;
	const EVP_MD *md;
	hv_status     st = HV_INVALID_ARGUMENT;

	if ((x = read_cert(cert_pem, cert_pem_len)) == NULL ||
	    (pkey = X509_get0_pubkey(x)) == NULL || key_digest(pkey, &md) != 0) {
		goto out;
	}
	st = sig == NULL || siglen == 0 ? HV_UNAUTHENTICATED
	                                : digest_verify(pkey, md, msg, n, sig, siglen);
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
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
	X509_NAME   *name = X509_get_subject_name(x);
	int          i    = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	ASN1_STRING *v;
	size_t       n = strlen(cn);

	if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0 ||
	    (v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i))) == NULL) {
		return (false);
	}
	return (
	    (size_t) ASN1_STRING_length(v) == n && memcmp(ASN1_STRING_get0_data(v), cn, n) == 0);
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
	EVP_PKEY *pkey;
	hv_status st;

	*out = NULL;
	if ((st = read_key(pem, pemlen, public_ok, &pkey)) == HV_OK &&
	    !EVP_PKEY_is_a(pkey, "ED25519")) {
		st = HV_INVALID_ARGUMENT;
	}
	if (st != HV_OK) {
		ERR_clear_error();
		EVP_PKEY_free(pkey);
		return (st);
	}
	*out = pkey;
	return (HV_OK);
}

/* The raw bytes of the Ed25519 key in pem: its public key (from a private or a public key), or
 * with secret its private key (wiped on failure). INVALID_ARGUMENT for anything else. */
static hv_status
ed25519_raw(const char *pem, size_t pemlen, bool secret, uint8_t *out, size_t outlen)
{
	EVP_PKEY *pkey;
	size_t    len = outlen;
	hv_status st;

	if ((st = ed25519_from_pem(pem, pemlen, !secret, &pkey)) == HV_OK &&
	    ((secret ? EVP_PKEY_get_raw_private_key(pkey, out, &len)
	             : EVP_PKEY_get_raw_public_key(pkey, out, &len)) != 1 ||
	        len != outlen)) {
		ERR_clear_error();
		st = HV_INVALID_ARGUMENT;
	}
	if (st != HV_OK && secret) {
		crypto_wipe(out, outlen);
	}
	EVP_PKEY_free(pkey);
	return (st);
}

hv_status
crypto_ed25519_public(const char *pem, size_t pemlen, uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN])
{
	return (ed25519_raw(pem, pemlen, false, pub, CRYPTO_ED25519_PUBLIC_LEN));
}

hv_status
crypto_ed25519_public_pem(const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], char **pem, size_t *pemlen)
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
	return (ed25519_raw(pem, pemlen, true, secret, CRYPTO_ED25519_SECRET_LEN));
}

hv_status
crypto_ed25519_sign(uint8_t sig[CRYPTO_ED25519_SIG_LEN],
    const uint8_t secret[CRYPTO_ED25519_SECRET_LEN], const void *msg, size_t n)
{
	EVP_PKEY *pkey = NULL;
	size_t    len  = 0;
	hv_status st   = HV_INTERNAL;

	if ((pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, secret,
	         CRYPTO_ED25519_SECRET_LEN)) == NULL) {
		goto out;
	}
	if ((st = digest_sign(pkey, NULL, msg, n, sig, CRYPTO_ED25519_SIG_LEN, &len)) == HV_OK &&
	    len != CRYPTO_ED25519_SIG_LEN) {
		st = HV_INTERNAL;
	}
out:
	if (st != HV_OK) {
		ERR_clear_error();
		crypto_wipe(sig, CRYPTO_ED25519_SIG_LEN);
	}
	EVP_PKEY_free(pkey); /* cleanses the key */
	return (st);
}

hv_status
crypto_ed25519_verify(const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], const void *msg, size_t n,
    const uint8_t *sig, size_t siglen)
{
	EVP_PKEY *pkey = NULL;
	hv_status st   = HV_UNAUTHENTICATED;

	/* A public key not on the curve is the signer's failure too. */
	if (sig != NULL && siglen == CRYPTO_ED25519_SIG_LEN &&
	    (pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
	         CRYPTO_ED25519_PUBLIC_LEN)) != NULL) {
		st = digest_verify(pkey, NULL, msg, n, sig, siglen);
	}
	if (st != HV_OK) {
		ERR_clear_error();
	}
	EVP_PKEY_free(pkey);
	return (st);
}

/* ---- a process's own TLS client identity ----------------------------------------------- */

/* Adds extension nid = value (OpenSSL's configuration syntax) to x, issued by x itself. */
static bool
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX      ctx;
	X509_EXTENSION *ext;
	bool            ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL) {
		return (false);
	}
	ok = X509_add_ext(x, ext, -1) == 1;
	X509_EXTENSION_free(ext);
	return (ok);
}

/* A self-signed P-256 certificate for pkey, meant for TLS clients only, valid from a day
 * before now_s for ten years. */
static X509 *
self_signed_client(EVP_PKEY *pkey, const char *cn, int64_t now_s)
{
	X509      *x = X509_new();
	X509_NAME *name;
	uint8_t    serial[16];
	BIGNUM    *bn = NULL;
	bool       ok = false;

	if (x == NULL || X509_set_version(x, 2) != 1 || RAND_bytes(serial, sizeof(serial)) != 1) {
		goto out;
	}
	serial[0] &= 0x7f; /* a positive serial number */
	if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_time_adj_ex(X509_getm_notBefore(x), -1, 0, &(time_t) { (time_t) now_s }) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), 3650, 0, &(time_t) { (time_t) now_s }) ==
	        NULL ||
	    X509_set_pubkey(x, pkey) != 1 || (name = X509_get_subject_name(x)) == NULL ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *) cn, -1,
	        -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 ||
	    !add_ext(x, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext(x, NID_key_usage, "critical,digitalSignature") ||
	    !add_ext(x, NID_ext_key_usage, "clientAuth") || X509_sign(x, pkey, EVP_sha256()) <= 0) {
		goto out;
	}
	ok = true;
out:
	BN_free(bn);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	return (x);
}

hv_status
crypto_self_signed_client(const char *cn, int64_t now_s, char **cert_pem, char **key_pem)
{
	EVP_PKEY *pkey = NULL;
	X509     *x    = NULL;
	BIO      *cb   = NULL;
	BIO      *kb   = NULL;
	size_t    n;
	hv_status st = HV_INTERNAL;

	*cert_pem = NULL;
	*key_pem  = NULL;
	if (cn == NULL || *cn == '\0' || strlen(cn) > 64) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL ||
	    (x = self_signed_client(pkey, cn, now_s)) == NULL) {
		goto out;
	}
	if ((cb = BIO_new(BIO_s_mem())) == NULL || (kb = BIO_new(BIO_s_secmem())) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	if (PEM_write_bio_X509(cb, x) != 1 ||
	    PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		goto out;
	}
	if ((*cert_pem = bio_take(cb, &n)) == NULL || (*key_pem = bio_take(kb, &n)) == NULL) {
		free(*cert_pem);
		*cert_pem = NULL;
		st        = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	st = HV_OK;
out:
	if (st != HV_OK) {
		ERR_clear_error();
	}
	BIO_free(cb);
	BIO_free(kb);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return (st);
}
