/*
 * crypto_test.c - the crypto wrapper against published vectors (FIPS 180 SHA-256, RFC 4231
 * HMAC-SHA256, the GCM specification's AES-256 test cases, RFC 4648 base64 and base32,
 * RFC 4226 HOTP, RFC 6238 TOTP, RFC 7914 scrypt), signatures with keys and certificates
 * made here with OpenSSL, and reading key files.
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
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "haven/crypto.h"

/* Decodes a hex string into a malloc'd buffer (test vectors); *n gets its length. */
static uint8_t *
unhex(const char *hex, size_t *n)
{
	size_t   len = strlen(hex) / 2;
	uint8_t *out = malloc(len + 1);

	assert_non_null(out);
	for (size_t i = 0; i < len; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t) v;
	}
	*n = len;
	return (out);
}

static void
assert_hex_equal(const uint8_t *got, size_t n, const char *hex)
{
	size_t   len;
	uint8_t *want = unhex(hex, &len);

	assert_int_equal(n, len);
	assert_memory_equal(got, want, n);
	free(want);
}

/* ---- SHA-256 and HMAC-SHA256 ------------------------------------------------------------ */

static void
test_sha256_fips180(void **state)
{
	uint8_t     md[CRYPTO_SHA256_LEN];
	const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

	(void) state;
	crypto_sha256(md, "abc", 3);
	assert_hex_equal(md, sizeof(md),
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	crypto_sha256(md, "", 0);
	assert_hex_equal(md, sizeof(md),
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	crypto_sha256(md, NULL, 0);
	assert_hex_equal(md, sizeof(md),
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	crypto_sha256(md, m448, strlen(m448));
	assert_hex_equal(md, sizeof(md),
	    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void
test_hmac_rfc4231(void **state)
{
	uint8_t     mac[CRYPTO_HMAC_LEN];
	uint8_t     key[131], data[50];
	const char *t6 = "Test Using Larger Than Block-Size Key - Hash Key First";

	(void) state;
	/* Test case 1 */
	memset(key, 0x0b, 20);
	crypto_hmac_sha256(mac, key, 20, "Hi There", 8);
	assert_hex_equal(mac, sizeof(mac),
	    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	/* Test case 2: a key shorter than the output */
	crypto_hmac_sha256(mac, (const uint8_t *) "Jefe", 4, "what do ya want for nothing?", 28);
	assert_hex_equal(mac, sizeof(mac),
	    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	/* Test case 3: combined length of key and data larger than 64 bytes */
	memset(key, 0xaa, 20);
	memset(data, 0xdd, 50);
	crypto_hmac_sha256(mac, key, 20, data, 50);
	assert_hex_equal(mac, sizeof(mac),
	    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
	/* Test case 6: a key larger than the block size, hashed first */
	memset(key, 0xaa, 131);
	crypto_hmac_sha256(mac, key, 131, t6, strlen(t6));
	assert_hex_equal(mac, sizeof(mac),
	    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	/* The same with a prepared key, used twice (its state is copied, never consumed). */
	{
		crypto_hmac_key *k;
		assert_int_equal(crypto_hmac_key_new(&k, key, 131), HV_OK);
		for (int i = 0; i < 2; i++) {
			crypto_hmac_sha256_prepared(mac, k, t6, strlen(t6));
			assert_hex_equal(mac, sizeof(mac),
			    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
		}
		crypto_hmac_key_free(k);
		assert_int_equal(crypto_hmac_key_new(&k, (const uint8_t *) "Jefe", 4), HV_OK);
		crypto_hmac_sha256_prepared(mac, k, "what do ya want for nothing?", 28);
		assert_hex_equal(mac, sizeof(mac),
		    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
		crypto_hmac_key_free(k);
		memset(key, 0xaa, 20);
		assert_int_equal(crypto_hmac_key_new(&k, key, 20), HV_OK);
		crypto_hmac_sha256_prepared(mac, k, data, 50);
		assert_hex_equal(mac, sizeof(mac),
		    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
		crypto_hmac_key_free(k);
	}
}

static void
test_equal_wipe_random(void **state)
{
	uint8_t a[32], b[32], z[32] = { 0 };

	(void) state;
	assert_int_equal(crypto_random(a, sizeof(a)), HV_OK);
	assert_int_equal(crypto_random(b, sizeof(b)), HV_OK);
	assert_false(crypto_equal(a, b, sizeof(a))); /* 2^-256 */
	assert_false(crypto_equal(a, z, sizeof(a)));
	memcpy(b, a, sizeof(a));
	assert_true(crypto_equal(a, b, sizeof(a)));
	b[31] ^= 1;
	assert_false(crypto_equal(a, b, sizeof(a)));
	assert_true(crypto_equal(a, b, 0));
	crypto_wipe(a, sizeof(a));
	assert_memory_equal(a, z, sizeof(a));
	crypto_wipe(NULL, 0);
	assert_int_equal(crypto_random(NULL, 0), HV_OK);
}

/* ---- AES-256-GCM ------------------------------------------------------------------------ */

/* The GCM specification (McGrew, Viega), test cases 14, 15 and 16: 256-bit keys. */
static const struct gcm_vector {
	const char *key, *iv, *pt, *aad, *ct, *tag;
} gcm_vectors[] = {
	{ "0000000000000000000000000000000000000000000000000000000000000000",
	    "000000000000000000000000", "00000000000000000000000000000000", "",
	    "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919" },
	{ "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
	    "cafebabefacedbaddecaf888",
	    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
	    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
	    "",
	    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
	    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
	    "b094dac5d93471bdec1a502270e3cc6c" },
	{ "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
	    "cafebabefacedbaddecaf888",
	    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
	    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
	    "feedfacedeadbeeffeedfacedeadbeefabaddad2",
	    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
	    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
	    "76fc6ece0f4e1768cddf8853bb2d551b" },
};

static void
test_aead_vectors(void **state)
{
	(void) state;
	for (size_t i = 0; i < sizeof(gcm_vectors) / sizeof(gcm_vectors[0]); i++) {
		const struct gcm_vector *v = &gcm_vectors[i];
		size_t                   kl, il, pl, al, cl, tl;
		uint8_t *key = unhex(v->key, &kl), *iv = unhex(v->iv, &il), *pt = unhex(v->pt, &pl);
		uint8_t *aad = unhex(v->aad, &al), *ct = unhex(v->ct, &cl),
		        *tag = unhex(v->tag, &tl);
		uint8_t out[64], t[CRYPTO_AEAD_TAG_LEN], back[64];

		assert_int_equal(kl, CRYPTO_AEAD_KEY_LEN);
		assert_int_equal(il, CRYPTO_AEAD_NONCE_LEN);
		assert_int_equal(crypto_aead_encrypt(out, t, key, iv, aad, al, pt, pl), HV_OK);
		assert_memory_equal(out, ct, cl);
		assert_memory_equal(t, tag, tl);
		assert_int_equal(crypto_aead_decrypt(back, key, iv, tag, aad, al, ct, cl), HV_OK);
		assert_memory_equal(back, pt, pl);

		/* In place, both ways. */
		memcpy(out, pt, pl);
		assert_int_equal(crypto_aead_encrypt(out, t, key, iv, aad, al, out, pl), HV_OK);
		assert_memory_equal(out, ct, cl);
		assert_int_equal(crypto_aead_decrypt(out, key, iv, t, aad, al, out, cl), HV_OK);
		assert_memory_equal(out, pt, pl);
		free(key);
		free(iv);
		free(pt);
		free(aad);
		free(ct);
		free(tag);
	}
}

static void
test_aead_tamper(void **state)
{
	uint8_t     key[CRYPTO_AEAD_KEY_LEN], other[CRYPTO_AEAD_KEY_LEN];
	uint8_t     nonce[CRYPTO_AEAD_NONCE_LEN];
	uint8_t     ct[48], tag[CRYPTO_AEAD_TAG_LEN], bad[48], badtag[CRYPTO_AEAD_TAG_LEN];
	uint8_t     out[48], zero[48] = { 0 };
	const char *pt  = "subject 7f3a: forty-four bytes of a secret..";
	const char *aad = "consent/7f3a";
	size_t      n   = strlen(pt);

	(void) state;
	assert_int_equal(crypto_random(key, sizeof(key)), HV_OK);
	assert_int_equal(crypto_random(nonce, sizeof(nonce)), HV_OK);
	memcpy(other, key, sizeof(key));
	other[0] ^= 0x80;
	assert_int_equal(crypto_aead_encrypt(ct, tag, key, nonce, aad, strlen(aad), pt, n), HV_OK);
	assert_int_equal(crypto_aead_decrypt(out, key, nonce, tag, aad, strlen(aad), ct, n), HV_OK);
	assert_memory_equal(out, pt, n);

	/* Every kind of change is refused, and the output holds nothing of the plaintext. */
	for (size_t i = 0; i < n; i += 7) {
		memcpy(bad, ct, n);
		bad[i] ^= 0x01;
		memset(out, 0xee, sizeof(out));
		assert_int_equal(crypto_aead_decrypt(out, key, nonce, tag, aad, strlen(aad), bad,
		                     n),
		    HV_DATA_LOSS);
		assert_memory_equal(out, zero, n);
	}
	for (size_t i = 0; i < sizeof(tag); i++) {
		memcpy(badtag, tag, sizeof(tag));
		badtag[i] ^= 0x40;
		assert_int_equal(crypto_aead_decrypt(out, key, nonce, badtag, aad, strlen(aad), ct,
		                     n),
		    HV_DATA_LOSS);
	}
	assert_int_equal(crypto_aead_decrypt(out, key, nonce, tag, "consent/7f3b", strlen(aad), ct,
	                     n),
	    HV_DATA_LOSS);
	assert_int_equal(crypto_aead_decrypt(out, key, nonce, tag, NULL, 0, ct, n), HV_DATA_LOSS);
	assert_int_equal(crypto_aead_decrypt(out, other, nonce, tag, aad, strlen(aad), ct, n),
	    HV_DATA_LOSS);
	assert_memory_equal(out, zero, n);
	nonce[0] ^= 1;
	assert_int_equal(crypto_aead_decrypt(out, key, nonce, tag, aad, strlen(aad), ct, n),
	    HV_DATA_LOSS);
	nonce[0] ^= 1;
	/* Truncated ciphertext. */
	assert_int_equal(crypto_aead_decrypt(out, key, nonce, tag, aad, strlen(aad), ct, n - 1),
	    HV_DATA_LOSS);

	/* Empty plaintext: the tag still authenticates the aad. */
	assert_int_equal(crypto_aead_encrypt(NULL, tag, key, nonce, aad, strlen(aad), NULL, 0),
	    HV_OK);
	assert_int_equal(crypto_aead_decrypt(NULL, key, nonce, tag, aad, strlen(aad), NULL, 0),
	    HV_OK);
	assert_int_equal(crypto_aead_decrypt(NULL, key, nonce, tag, aad, strlen(aad) - 1, NULL, 0),
	    HV_DATA_LOSS);
}

/* ---- base64url -------------------------------------------------------------------------- */

static void
test_b64url_rfc4648(void **state)
{
	/* RFC 4648 section 10, without the padding. */
	static const char *const vec[][2] = {
		{ "", "" },
		{ "f", "Zg" },
		{ "fo", "Zm8" },
		{ "foo", "Zm9v" },
		{ "foob", "Zm9vYg" },
		{ "fooba", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy" },
	};
	char    enc[64];
	uint8_t dec[64];
	size_t  n;

	(void) state;
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		size_t len = strlen(vec[i][0]);
		assert_int_equal(crypto_b64url_len(len), strlen(vec[i][1]));
		assert_int_equal(crypto_b64url_encode(enc, sizeof(enc), vec[i][0], len), HV_OK);
		assert_string_equal(enc, vec[i][1]);
		assert_int_equal(crypto_b64url_decode(dec, sizeof(dec), &n, vec[i][1],
		                     strlen(vec[i][1])),
		    HV_OK);
		assert_int_equal(n, len);
		assert_memory_equal(dec, vec[i][0], len);
	}

	/* The URL alphabet: '-' and '_' where base64 has '+' and '/'. */
	{
		static const uint8_t b[] = { 0xfb, 0xff, 0xbf, 0xfb, 0xf0 };
		assert_int_equal(crypto_b64url_encode(enc, sizeof(enc), b, sizeof(b)), HV_OK);
		assert_string_equal(enc, "-_-_-_A");
		assert_int_equal(crypto_b64url_decode(dec, sizeof(dec), &n, enc, strlen(enc)),
		    HV_OK);
		assert_int_equal(n, sizeof(b));
		assert_memory_equal(dec, b, sizeof(b));
	}

	/* Every byte value survives a round trip, at every length. */
	{
		uint8_t all[256];
		char    big[400];
		uint8_t back[256];
		for (size_t i = 0; i < sizeof(all); i++) {
			all[i] = (uint8_t) i;
		}
		for (size_t len = 0; len <= sizeof(all); len += 17) {
			assert_int_equal(crypto_b64url_encode(big, sizeof(big), all, len), HV_OK);
			assert_int_equal(strlen(big), crypto_b64url_len(len));
			assert_int_equal(crypto_b64url_decode(back, sizeof(back), &n, big,
			                     strlen(big)),
			    HV_OK);
			assert_int_equal(n, len);
			assert_memory_equal(back, all, len);
		}
	}
}

static void
test_b64url_rejects(void **state)
{
	static const char *const bad[] = {
		"Zg==",     /* padding */
		"Zm9vYg=",  /* padding */
		"Z",        /* a length that cannot occur */
		"Zm9vY",    /* ditto */
		"Zm9v+mFy", /* standard alphabet */
		"Zm9v/mFy",
		"Zm 9",   /* space */
		"Zm9v\n", /* newline */
		"Zh",     /* non-zero trailing bits: "Zg" is the one encoding of "f" */
		"Zm9",    /* non-zero trailing bits: "Zm8" is "fo" */
		"Zm\xc3\xa9",
	};
	uint8_t dec[64];
	size_t  n = 99;
	char    enc[16];

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(crypto_b64url_decode(dec, sizeof(dec), &n, bad[i], strlen(bad[i])),
		    HV_INVALID_ARGUMENT);
		assert_int_equal(n, 0);
	}
	/* An embedded NUL is outside the alphabet too. */
	assert_int_equal(crypto_b64url_decode(dec, sizeof(dec), &n, "Zm\0v", 4),
	    HV_INVALID_ARGUMENT);
	/* The result must fit. */
	assert_int_equal(crypto_b64url_decode(dec, 5, &n, "Zm9vYmFy", 8), HV_OUT_OF_RANGE);
	assert_int_equal(crypto_b64url_decode(dec, 6, &n, "Zm9vYmFy", 8), HV_OK);
	assert_int_equal(n, 6);
	/* And the encoding, with its NUL. */
	assert_int_equal(crypto_b64url_encode(enc, 8, "foobar", 6), HV_OUT_OF_RANGE);
	assert_string_equal(enc, "");
	assert_int_equal(crypto_b64url_encode(enc, 9, "foobar", 6), HV_OK);
	assert_string_equal(enc, "Zm9vYmFy");
}

/* ---- signatures and certificates ------------------------------------------------------ */

typedef struct keypair {
	char  *key_pem;
	size_t key_len;
	char  *cert_pem;
	size_t cert_len;
	X509  *cert;
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
	*len = (size_t) n;
	return (s);
}

/* A key of the given type and a self-signed certificate for it, as PEM. */
static void
keypair_make(keypair *kp, EVP_PKEY *pkey, const EVP_MD *md)
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
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                     (const unsigned char *) "acme-ngo", -1, -1, 0),
	    1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	assert_true(X509_sign(x, pkey, md) > 0);

	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
	kp->key_pem = bio_string(bio, &kp->key_len);
	BIO_free(bio);
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	kp->cert_pem = bio_string(bio, &kp->cert_len);
	BIO_free(bio);
	kp->cert = x;
	EVP_PKEY_free(pkey);
}

static void
keypair_free(keypair *kp)
{
	free(kp->key_pem);
	free(kp->cert_pem);
	X509_free(kp->cert);
}

static void
sign_verify_round_trip(keypair *kp, keypair *other)
{
	const char *msg = "haven-auth-v1 nonce acme-ngo";
	uint8_t    *sig, *sig2;
	size_t      siglen, siglen2;

	assert_int_equal(crypto_sign(kp->key_pem, kp->key_len, msg, strlen(msg), &sig, &siglen),
	    HV_OK);
	assert_true(siglen > 0 && siglen <= 1024);
	assert_int_equal(crypto_verify_cert(kp->cert_pem, kp->cert_len, msg, strlen(msg), sig,
	                     siglen),
	    HV_OK);

	/* A changed message, a changed or shortened signature, none at all. */
	assert_int_equal(crypto_verify_cert(kp->cert_pem, kp->cert_len,
	                     "haven-auth-v1 nonce acme-ngp", strlen(msg), sig, siglen),
	    HV_UNAUTHENTICATED);
	assert_int_equal(crypto_verify_cert(kp->cert_pem, kp->cert_len, msg, strlen(msg) - 1, sig,
	                     siglen),
	    HV_UNAUTHENTICATED);
	for (size_t i = 0; i < siglen; i += 5) {
		sig[i] ^= 0x04;
		assert_int_equal(crypto_verify_cert(kp->cert_pem, kp->cert_len, msg, strlen(msg),
		                     sig, siglen),
		    HV_UNAUTHENTICATED);
		sig[i] ^= 0x04;
	}
	assert_int_equal(crypto_verify_cert(kp->cert_pem, kp->cert_len, msg, strlen(msg), sig,
	                     siglen - 1),
	    HV_UNAUTHENTICATED);
	assert_int_equal(crypto_verify_cert(kp->cert_pem, kp->cert_len, msg, strlen(msg), NULL, 0),
	    HV_UNAUTHENTICATED);
	/* Another key's certificate. */
	assert_int_equal(crypto_verify_cert(other->cert_pem, other->cert_len, msg, strlen(msg), sig,
	                     siglen),
	    HV_UNAUTHENTICATED);
	/* A signature by the other key. */
	assert_int_equal(crypto_sign(other->key_pem, other->key_len, msg, strlen(msg), &sig2,
	                     &siglen2),
	    HV_OK);
	assert_int_equal(crypto_verify_cert(kp->cert_pem, kp->cert_len, msg, strlen(msg), sig2,
	                     siglen2),
	    HV_UNAUTHENTICATED);
	free(sig2);
	free(sig);

	/* An empty message can be signed too. */
	assert_int_equal(crypto_sign(kp->key_pem, kp->key_len, NULL, 0, &sig, &siglen), HV_OK);
	assert_int_equal(crypto_verify_cert(kp->cert_pem, kp->cert_len, "", 0, sig, siglen), HV_OK);
	free(sig);
}

static void
test_sign_verify(void **state)
{
	keypair ec, ed, ec2;

	(void) state;
	keypair_make(&ec, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256());
	keypair_make(&ec2, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256());
	keypair_make(&ed, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), NULL);
	sign_verify_round_trip(&ec, &ed);
	sign_verify_round_trip(&ed, &ec);
	sign_verify_round_trip(&ec, &ec2);
	keypair_free(&ec);
	keypair_free(&ec2);
	keypair_free(&ed);
}

/* RSA, P-384 and Ed448, and the keys that are refused. */
static void
test_sign_other_keys(void **state)
{
	keypair  rsa, small, ec, ed;
	uint8_t *sig;
	size_t   siglen;

	(void) state;
	keypair_make(&rsa, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048), EVP_sha256());
	keypair_make(&ec, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), EVP_sha256());
	keypair_make(&ed, EVP_PKEY_Q_keygen(NULL, NULL, "ED448"), NULL);
	sign_verify_round_trip(&rsa, &ec);
	sign_verify_round_trip(&ec, &rsa);
	sign_verify_round_trip(&ed, &ec);
	keypair_free(&ed);
	/* Other curves are not among the supported kinds. */
	keypair_make(&ed, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"), EVP_sha256());
	assert_int_equal(crypto_sign(ed.key_pem, ed.key_len, "m", 1, &sig, &siglen),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_verify_cert(ed.cert_pem, ed.cert_len, "m", 1, (const uint8_t *) "s",
	                     1),
	    HV_INVALID_ARGUMENT);
	keypair_free(&ed);
	/* Keys too weak to prove anything are refused as unsupported. */
	keypair_make(&small, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024), EVP_sha256());
	assert_int_equal(crypto_sign(small.key_pem, small.key_len, "m", 1, &sig, &siglen),
	    HV_INVALID_ARGUMENT);
	assert_null(sig);
	assert_int_equal(crypto_verify_cert(small.cert_pem, small.cert_len, "m", 1,
	                     (const uint8_t *) "s", 1),
	    HV_INVALID_ARGUMENT);
	keypair_free(&small);
	keypair_free(&rsa);
	keypair_free(&ec);
}

static void
test_garbage_pem(void **state)
{
	static const char garbage[] =
	    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
	static const char keygarbage[] =
	    "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
	keypair  ec;
	uint8_t *sig    = (uint8_t *) &ec;
	size_t   siglen = 7;
	char     fp[65];

	(void) state;
	keypair_make(&ec, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256());
	assert_int_equal(crypto_verify_cert(garbage, strlen(garbage), "m", 1, (const uint8_t *) "s",
	                     1),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_verify_cert("hello", 5, "m", 1, (const uint8_t *) "s", 1),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_verify_cert(NULL, 0, "m", 1, (const uint8_t *) "s", 1),
	    HV_INVALID_ARGUMENT);
	/* A private key where a certificate belongs, and the other way round. */
	assert_int_equal(crypto_verify_cert(ec.key_pem, ec.key_len, "m", 1, (const uint8_t *) "s",
	                     1),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_sign(ec.cert_pem, ec.cert_len, "m", 1, &sig, &siglen),
	    HV_INVALID_ARGUMENT);
	assert_null(sig);
	assert_int_equal(siglen, 0);
	assert_int_equal(crypto_sign(keygarbage, strlen(keygarbage), "m", 1, &sig, &siglen),
	    HV_INVALID_ARGUMENT);
	/* A truncated certificate. */
	assert_int_equal(crypto_verify_cert(ec.cert_pem, ec.cert_len / 2, "m", 1,
	                     (const uint8_t *) "s", 1),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_cert_fingerprint(garbage, strlen(garbage), fp),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(fp, "");
	keypair_free(&ec);
}

static void
test_encrypted_key_never_prompts(void **state)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	BIO      *bio  = BIO_new(BIO_s_mem());
	char     *pem;
	size_t    len;
	uint8_t  *sig;
	size_t    siglen;

	(void) state;
	assert_non_null(pkey);
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, pkey, EVP_aes_256_cbc(), NULL, 0, NULL,
	                     (void *) "passphrase"),
	    1);
	pem = bio_string(bio, &len);
	/* With OpenSSL's default callback this would read the terminal. */
	assert_int_equal(crypto_sign(pem, len, "m", 1, &sig, &siglen), HV_INVALID_ARGUMENT);
	free(pem);
	BIO_free(bio);
	EVP_PKEY_free(pkey);
}

static void
test_fingerprint(void **state)
{
	keypair      ec;
	char         fp[65], want[65];
	uint8_t      md[EVP_MAX_MD_SIZE];
	unsigned int len;

	(void) state;
	keypair_make(&ec, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256());
	assert_int_equal(crypto_cert_fingerprint(ec.cert_pem, ec.cert_len, fp), HV_OK);
	assert_int_equal(strlen(fp), 64);
	for (size_t i = 0; i < 64; i++) {
		assert_non_null(strchr("0123456789abcdef", fp[i]));
	}
	assert_int_equal(X509_digest(ec.cert, EVP_sha256(), md, &len), 1);
	assert_int_equal(len, 32);
	for (unsigned int i = 0; i < len; i++) {
		snprintf(want + 2 * i, 3, "%02x", md[i]);
	}
	assert_string_equal(fp, want);
	keypair_free(&ec);
}

/* ---- files ------------------------------------------------------------------------------ */

static char tmpdir[512];

/* crypto_cert_check: chain to the CA file, validity at the given time, the CN, and each reason
 * named. The CA here is a self-signed certificate trusted as itself. */
static void
test_cert_check(void **state)
{
	keypair     ca, other;
	char        path[600], missing[600], why[160];
	const char *garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
	int64_t     now     = (int64_t) time(NULL);
	FILE       *f;

	(void) state;
	keypair_make(&ca, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256());
	keypair_make(&other, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256());
	snprintf(path, sizeof(path), "%s/ca.pem", tmpdir);
	snprintf(missing, sizeof(missing), "%s/no-ca.pem", tmpdir);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fputs(ca.cert_pem, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);

	assert_int_equal(crypto_cert_check(ca.cert_pem, ca.cert_len, path, "acme-ngo", now, why,
	                     sizeof(why)),
	    HV_OK);
	assert_string_equal(why, "");
	/* The CN must be the organisation id exactly. */
	assert_int_equal(crypto_cert_check(ca.cert_pem, ca.cert_len, path, "acme", now, why,
	                     sizeof(why)),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(why, "the certificate's subject CN is not the organisation id");
	assert_int_equal(crypto_cert_check(ca.cert_pem, ca.cert_len, path, "acme-ngo-x", now, why,
	                     sizeof(why)),
	    HV_INVALID_ARGUMENT);
	/* Valid for an hour from now. */
	assert_int_equal(crypto_cert_check(ca.cert_pem, ca.cert_len, path, "acme-ngo", now + 7200,
	                     why, sizeof(why)),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(why, "the certificate has expired");
	assert_int_equal(crypto_cert_check(ca.cert_pem, ca.cert_len, path, "acme-ngo", now - 3600,
	                     why, sizeof(why)),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(why, "the certificate is not valid yet");
	/* Another self-signed certificate of the same name. */
	assert_int_equal(crypto_cert_check(other.cert_pem, other.cert_len, path, "acme-ngo", now,
	                     why, sizeof(why)),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(why, "not signed by the node's CA"));
	/* Not a certificate. */
	assert_int_equal(crypto_cert_check(garbage, strlen(garbage), path, "acme-ngo", now, why,
	                     sizeof(why)),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(why, "the certificate is not a PEM certificate");
	assert_int_equal(crypto_cert_check(NULL, 0, path, "acme-ngo", now, why, sizeof(why)),
	    HV_INVALID_ARGUMENT);
	/* No CA configured, or one that cannot be read: the node's problem. */
	assert_int_equal(crypto_cert_check(ca.cert_pem, ca.cert_len, NULL, "acme-ngo", now, why,
	                     sizeof(why)),
	    HV_FAILED_PRECONDITION);
	assert_non_null(strstr(why, "no CA configured"));
	assert_int_equal(crypto_cert_check(ca.cert_pem, ca.cert_len, "", "acme-ngo", now, NULL, 0),
	    HV_FAILED_PRECONDITION);
	assert_int_equal(crypto_cert_check(ca.cert_pem, ca.cert_len, missing, "acme-ngo", now, why,
	                     sizeof(why)),
	    HV_FAILED_PRECONDITION);
	assert_non_null(strstr(why, "cannot be read"));
	unlink(path);
	keypair_free(&ca);
	keypair_free(&other);
}

/* crypto_self_signed_client: a new key each time, a certificate signed by that key, for TLS
 * clients only and not a CA, valid now; bad names refused with nothing returned. */
static void
test_self_signed_client(void **state)
{
	char     *cert = NULL, *key = NULL, *cert2 = NULL, *key2 = NULL;
	char      fp[65], fp2[65];
	uint8_t  *sig;
	size_t    siglen;
	int64_t   now = (int64_t) time(NULL);
	BIO      *bio;
	X509     *x;
	EVP_PKEY *pub;
	char      cn[80];
	char      longcn[70];

	(void) state;
	assert_int_equal(crypto_self_signed_client("probe", now, &cert, &key), HV_OK);
	assert_non_null(strstr(cert, "-----BEGIN CERTIFICATE-----"));
	assert_non_null(strstr(key, "PRIVATE KEY-----"));
	assert_non_null(bio = BIO_new_mem_buf(cert, -1));
	assert_non_null(x = PEM_read_bio_X509(bio, NULL, NULL, NULL));
	BIO_free(bio);
	assert_non_null(pub = X509_get0_pubkey(x));
	assert_int_equal(X509_verify(x, pub), 1);
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
	assert_int_equal(X509_check_ca(x), 0);
	assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0), 1);
	assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 0);
	assert_true(X509_cmp_time(X509_get0_notBefore(x), &(time_t) { (time_t) now }) < 0);
	assert_true(X509_cmp_time(X509_get0_notAfter(x), &(time_t) { (time_t) now }) > 0);
	assert_int_equal(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
	                     sizeof(cn)),
	    5);
	assert_string_equal(cn, "probe");
	X509_free(x);
	/* The key is the certificate's. */
	assert_int_equal(crypto_sign(key, strlen(key), "m", 1, &sig, &siglen), HV_OK);
	assert_int_equal(crypto_verify_cert(cert, strlen(cert), "m", 1, sig, siglen), HV_OK);
	free(sig);
	/* A new key each time. */
	assert_int_equal(crypto_self_signed_client("probe", now, &cert2, &key2), HV_OK);
	assert_int_equal(crypto_cert_fingerprint(cert, strlen(cert), fp), HV_OK);
	assert_int_equal(crypto_cert_fingerprint(cert2, strlen(cert2), fp2), HV_OK);
	assert_string_not_equal(fp, fp2);
	assert_string_not_equal(key, key2);
	free(cert);
	free(key);
	free(cert2);
	free(key2);

	memset(longcn, 'a', 65);
	longcn[65] = '\0';
	cert = key = (char *) "x";
	assert_int_equal(crypto_self_signed_client(longcn, now, &cert, &key), HV_INVALID_ARGUMENT);
	assert_null(cert);
	assert_null(key);
	assert_int_equal(crypto_self_signed_client("", now, &cert, &key), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_self_signed_client(NULL, now, &cert, &key), HV_INVALID_ARGUMENT);
}

static int
setup_tmp(void **state)
{
	const char *base = getenv("HAVEN_TEST_TMP");

	(void) state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/crypto-test-XXXXXX", base != NULL ? base : "/tmp");
	return (mkdtemp(tmpdir) != NULL ? 0 : -1);
}

/* ---- Ed25519 of the node (RFC 8032 section 7.1) ---------------------------------------- */

/* A PKCS#8 PEM of a raw Ed25519 private key, as crypto_ed25519_keygen would write it. */
static char *
ed25519_pem(const char *secret_hex, size_t *len)
{
	size_t    n;
	uint8_t  *raw = unhex(secret_hex, &n);
	EVP_PKEY *pkey;
	BIO      *bio;
	char     *pem;

	assert_non_null(pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, n));
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
	pem = bio_string(bio, len);
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	free(raw);
	return (pem);
}

static void
test_ed25519_rfc8032(void **state)
{
	static const struct {
		const char *secret, *public, *msg, *sig;
	} v[] = {
		{ "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
		    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
		    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33b"
		    "ac"
		    "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b" },
		{ "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
		    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
		    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e1599"
		    "6e"
		    "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00" },
		{ "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
		    "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
		    "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f2"
		    "90"
		    "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a" },
	};

	(void) state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t   pemlen, msglen, siglen, publen;
		char    *pem  = ed25519_pem(v[i].secret, &pemlen);
		uint8_t *msg  = unhex(v[i].msg, &msglen);
		uint8_t *want = unhex(v[i].sig, &siglen);
		uint8_t *pubv = unhex(v[i].public, &publen);
		uint8_t  pub[CRYPTO_ED25519_PUBLIC_LEN];
		uint8_t *sig;
		size_t   n;

		assert_int_equal(crypto_ed25519_public(pem, pemlen, pub), HV_OK);
		assert_memory_equal(pub, pubv, publen);
		assert_int_equal(crypto_sign(pem, pemlen, msg, msglen, &sig, &n), HV_OK);
		assert_int_equal(n, CRYPTO_ED25519_SIG_LEN);
		assert_hex_equal(sig, n, v[i].sig);
		assert_int_equal(crypto_ed25519_verify(pub, msg, msglen, want, siglen), HV_OK);
		/* The same signature from the raw secret taken out of the PEM. */
		{
			uint8_t  secret[CRYPTO_ED25519_SECRET_LEN], sig2[CRYPTO_ED25519_SIG_LEN];
			uint8_t *sv;
			size_t   svlen;
			assert_int_equal(crypto_ed25519_secret(pem, pemlen, secret), HV_OK);
			sv = unhex(v[i].secret, &svlen);
			assert_memory_equal(secret, sv, svlen);
			free(sv);
			assert_int_equal(crypto_ed25519_sign(sig2, secret, msg, msglen), HV_OK);
			assert_hex_equal(sig2, sizeof(sig2), v[i].sig);
		}
		/* Any bit of the signature or the message changed, a short signature. */
		for (size_t b = 0; b < siglen; b += 7) {
			want[b] ^= 0x01;
			assert_int_equal(crypto_ed25519_verify(pub, msg, msglen, want, siglen),
			    HV_UNAUTHENTICATED);
			want[b] ^= 0x01;
		}
		assert_int_equal(crypto_ed25519_verify(pub, "x", 1, want, siglen),
		    HV_UNAUTHENTICATED);
		assert_int_equal(crypto_ed25519_verify(pub, msg, msglen, want, siglen - 1),
		    HV_UNAUTHENTICATED);
		assert_int_equal(crypto_ed25519_verify(pub, msg, msglen, NULL, 0),
		    HV_UNAUTHENTICATED);
		/* Another key. */
		pub[0] ^= 0x01;
		assert_int_equal(crypto_ed25519_verify(pub, msg, msglen, want, siglen),
		    HV_UNAUTHENTICATED);
		free(sig);
		free(pubv);
		free(want);
		free(msg);
		free(pem);
	}
}

static void
test_ed25519_keygen(void **state)
{
	char    *pem, *pem2, *pubpem;
	size_t   len, len2, publen;
	uint8_t  pub[CRYPTO_ED25519_PUBLIC_LEN], pub2[CRYPTO_ED25519_PUBLIC_LEN];
	uint8_t  back[CRYPTO_ED25519_PUBLIC_LEN];
	uint8_t *sig;
	size_t   siglen;
	keypair  ec;

	(void) state;
	assert_int_equal(crypto_ed25519_keygen(&pem, &len), HV_OK);
	assert_int_equal(strlen(pem), len);
	assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
	assert_int_equal(crypto_ed25519_keygen(&pem2, &len2), HV_OK);
	assert_int_equal(crypto_ed25519_public(pem, len, pub), HV_OK);
	assert_int_equal(crypto_ed25519_public(pem2, len2, pub2), HV_OK);
	assert_memory_not_equal(pub, pub2, sizeof(pub));

	/* Sign with the PEM, verify with the raw key; the public PEM gives the same key. */
	assert_int_equal(crypto_sign(pem, len, "receipt", 7, &sig, &siglen), HV_OK);
	assert_int_equal(crypto_ed25519_verify(pub, "receipt", 7, sig, siglen), HV_OK);
	assert_int_equal(crypto_ed25519_verify(pub2, "receipt", 7, sig, siglen),
	    HV_UNAUTHENTICATED);
	assert_int_equal(crypto_ed25519_public_pem(pub, &pubpem, &publen), HV_OK);
	assert_non_null(strstr(pubpem, "-----BEGIN PUBLIC KEY-----"));
	assert_null(strstr(pubpem, "PRIVATE"));
	assert_int_equal(crypto_ed25519_public(pubpem, publen, back), HV_OK);
	assert_memory_equal(back, pub, sizeof(pub));

	/* Not Ed25519, not PEM; a public key has no secret. */
	keypair_make(&ec, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256());
	assert_int_equal(crypto_ed25519_public(ec.key_pem, ec.key_len, back), HV_INVALID_ARGUMENT);
	{
		uint8_t secret[CRYPTO_ED25519_SECRET_LEN];
		assert_int_equal(crypto_ed25519_secret(ec.key_pem, ec.key_len, secret),
		    HV_INVALID_ARGUMENT);
		assert_int_equal(crypto_ed25519_secret(pubpem, publen, secret),
		    HV_INVALID_ARGUMENT);
		assert_int_equal(crypto_ed25519_secret("x", 1, secret), HV_INVALID_ARGUMENT);
	}
	assert_int_equal(crypto_ed25519_public(ec.cert_pem, ec.cert_len, back),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_ed25519_public("garbage", 7, back), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_ed25519_public(NULL, 0, back), HV_INVALID_ARGUMENT);
	keypair_free(&ec);

	free(sig);
	free(pubpem);
	crypto_wipe(pem, len);
	crypto_wipe(pem2, len2);
	free(pem);
	free(pem2);
}

/* ---- one-time codes --------------------------------------------------------------------- */

static const uint8_t otp_seed20[] = "12345678901234567890";
static const uint8_t otp_seed32[] = "12345678901234567890123456789012";
static const uint8_t otp_seed64[] =
    "1234567890123456789012345678901234567890123456789012345678901234";

static void
test_hotp_rfc4226(void **state)
{
	/* RFC 4226 appendix D: the 20-byte ASCII secret, counters 0 to 9. */
	static const uint32_t want[] = { 755224, 287082, 359152, 969429, 338314, 254676, 287922,
		162583, 399871, 520489 };
	uint32_t              code;

	(void) state;
	for (uint64_t c = 0; c < 10; c++) {
		assert_int_equal(crypto_hotp(&code, CRYPTO_OTP_SHA1, 6, otp_seed20, 20, c), HV_OK);
		assert_int_equal(code, want[c]);
	}
}

static void
test_totp_rfc6238(void **state)
{
	/* RFC 6238 appendix B: 8 digits, 30 s steps, one seed per hash. */
	static const struct {
		int64_t  t;
		uint32_t sha1, sha256, sha512;
	} v[] = {
		{ 59, 94287082, 46119246, 90693936 },
		{ 1111111109, 7081804, 68084774, 25091201 },
		{ 1111111111, 14050471, 67062674, 99943326 },
		{ 1234567890, 89005924, 91819424, 93441116 },
		{ 2000000000, 69279037, 90698825, 38618901 },
		{ 20000000000, 65353130, 77737706, 47863826 },
	};
	uint32_t code;

	(void) state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_int_equal(crypto_totp(&code, CRYPTO_OTP_SHA1, 8, otp_seed20, 20, v[i].t),
		    HV_OK);
		assert_int_equal(code, v[i].sha1);
		assert_int_equal(crypto_totp(&code, CRYPTO_OTP_SHA256, 8, otp_seed32, 32, v[i].t),
		    HV_OK);
		assert_int_equal(code, v[i].sha256);
		assert_int_equal(crypto_totp(&code, CRYPTO_OTP_SHA512, 8, otp_seed64, 64, v[i].t),
		    HV_OK);
		assert_int_equal(code, v[i].sha512);
		/* Six digits are the last six of eight. */
		assert_int_equal(crypto_totp(&code, CRYPTO_OTP_SHA1, 6, otp_seed20, 20, v[i].t),
		    HV_OK);
		assert_int_equal(code, v[i].sha1 % 1000000);
	}
}

static void
test_otp_rejects(void **state)
{
	uint8_t  long_secret[CRYPTO_OTP_SECRET_MAX + 1] = { 0 };
	uint32_t code                                   = 1;

	(void) state;
	assert_int_equal(crypto_hotp(&code, CRYPTO_OTP_SHA1, 6, otp_seed20, 19, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(code, 0);
	assert_int_equal(crypto_hotp(&code, CRYPTO_OTP_SHA1, 6, long_secret, sizeof(long_secret),
	                     0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_hotp(&code, CRYPTO_OTP_SHA1, 6, long_secret, CRYPTO_OTP_SECRET_MAX,
	                     0),
	    HV_OK);
	assert_int_equal(crypto_hotp(&code, CRYPTO_OTP_SHA1, 6, NULL, 20, 0), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_hotp(&code, CRYPTO_OTP_SHA1, 5, otp_seed20, 20, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_hotp(&code, CRYPTO_OTP_SHA1, 9, otp_seed20, 20, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_hotp(&code, (crypto_otp_alg) 7, 6, otp_seed20, 20, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_totp(&code, CRYPTO_OTP_SHA1, 6, otp_seed20, 20, -1),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(code, 0);
}

static void
test_totp_verify_window_replay(void **state)
{
	const int64_t now = 1111111111; /* step 37037037; RFC 6238's SHA-1 code ends 050471 */
	char          code[7];
	uint32_t      c;
	uint64_t      step = 1;

	(void) state;
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, now, 0), HV_OK);
	assert_int_equal(step, 37037037);
	/* One step either side is accepted (clock drift), two are not. */
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, now + 30, 0),
	    HV_OK);
	assert_int_equal(step, 37037037);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, now - 30, 0),
	    HV_OK);
	assert_int_equal(step, 37037037);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, now + 60, 0),
	    HV_UNAUTHENTICATED);
	assert_int_equal(step, 0);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, now - 60, 0),
	    HV_UNAUTHENTICATED);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050472", 6, now, 0),
	    HV_UNAUTHENTICATED);

	/* Replay: the step just used, or an earlier one, is refused; a later one is not. */
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, now, 37037037),
	    HV_UNAUTHENTICATED);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, now, 37037038),
	    HV_UNAUTHENTICATED);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, now, 37037036),
	    HV_OK);
	assert_int_equal(crypto_totp(&c, CRYPTO_OTP_SHA1, 6, otp_seed20, 20, now - 30), HV_OK);
	snprintf(code, sizeof(code), "%06u", (unsigned) c);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, code, 6, now, 0), HV_OK);
	assert_int_equal(step, 37037036);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, code, 6, now, 37037037),
	    HV_UNAUTHENTICATED);
	assert_int_equal(crypto_totp(&c, CRYPTO_OTP_SHA1, 6, otp_seed20, 20, now + 30), HV_OK);
	snprintf(code, sizeof(code), "%06u", (unsigned) c);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, code, 6, now, 37037037), HV_OK);
	assert_int_equal(step, 37037038);

	/* A code that two steps of the window share (found by search: one secret in ~10^6):
	 * the later step is returned, so storing it refuses the code at either step. */
	{
		static const uint8_t twice[] =
		    "haventotp00000345192"; /* steps 56666666, 56666667 */
		assert_int_equal(crypto_totp_verify(&step, twice, 20, "490192", 6, 1699999980, 0),
		    HV_OK);
		assert_int_equal(step, 56666667);
		assert_int_equal(crypto_totp_verify(&step, twice, 20, "490192", 6, 1700000010,
		                     56666667),
		    HV_UNAUTHENTICATED);
		assert_int_equal(crypto_totp_verify(&step, twice, 20, "490192", 6, 1700000010,
		                     56666666),
		    HV_OK);
		assert_int_equal(step, 56666667);
	}

	/* Not six digits, a bad secret, a negative time. */
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "05047", 5, now, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "0504710", 7, now, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "05 471", 6, now, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "05047a", 6, now, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "05047\0", 6, now, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, NULL, 6, now, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 16, "050471", 6, now, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_totp_verify(&step, otp_seed20, 20, "050471", 6, -1, 0),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(step, 0);
}

/* ---- base32 and otpauth URIs ------------------------------------------------------------ */

static void
test_b32_rfc4648(void **state)
{
	/* RFC 4648 section 10, without the padding (which decode also accepts). */
	static const struct {
		const char *in, *out, *padded;
	} v[] = {
		{ "", "", "" },
		{ "f", "MY", "MY======" },
		{ "fo", "MZXQ", "MZXQ====" },
		{ "foo", "MZXW6", "MZXW6===" },
		{ "foob", "MZXW6YQ", "MZXW6YQ=" },
		{ "fooba", "MZXW6YTB", "MZXW6YTB" },
		{ "foobar", "MZXW6YTBOI", "MZXW6YTBOI======" },
	};
	char    enc[72];
	uint8_t dec[64];
	uint8_t all[40];
	size_t  n;

	(void) state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t len = strlen(v[i].in);
		assert_int_equal(crypto_b32_len(len), strlen(v[i].out));
		assert_int_equal(crypto_b32_encode(enc, sizeof(enc), v[i].in, len), HV_OK);
		assert_string_equal(enc, v[i].out);
		assert_int_equal(crypto_b32_decode(dec, sizeof(dec), &n, v[i].out,
		                     strlen(v[i].out)),
		    HV_OK);
		assert_int_equal(n, len);
		assert_memory_equal(dec, v[i].in, len);
		assert_int_equal(crypto_b32_decode(dec, sizeof(dec), &n, v[i].padded,
		                     strlen(v[i].padded)),
		    HV_OK);
		assert_int_equal(n, len);
		assert_memory_equal(dec, v[i].in, len);
	}
	assert_int_equal(crypto_b32_encode(enc, sizeof(enc), otp_seed20, 20), HV_OK);
	assert_string_equal(enc, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
	/* Every length and byte value survives a round trip. */
	for (size_t i = 0; i < sizeof(all); i++) {
		all[i] = (uint8_t) (i * 37 + 255);
	}
	for (size_t len = 0; len <= sizeof(all); len++) {
		assert_int_equal(crypto_b32_encode(enc, sizeof(enc), all, len), HV_OK);
		assert_int_equal(crypto_b32_decode(dec, sizeof(dec), &n, enc, strlen(enc)), HV_OK);
		assert_int_equal(n, len);
		assert_memory_equal(dec, all, len);
	}
}

static void
test_b32_rejects(void **state)
{
	static const char *bad[] = {
		"my", /* lower case */
		"M",  /* lengths no byte string has */
		"MZX",
		"MZXW6Y",
		"MZ", /* unused bits set */
		"MZXW6YR",
		"MY=====", /* partial or excess padding */
		"MY=======",
		"========",
		"MZXW6YTB========",
		"MY======MY",
		"MZXW6YT1", /* outside the alphabet */
		"MZXW6YT8",
		"MZXW 6YT",
	};
	char    enc[8];
	uint8_t dec[8];
	size_t  n = 9;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(crypto_b32_decode(dec, sizeof(dec), &n, bad[i], strlen(bad[i])),
		    HV_INVALID_ARGUMENT);
		assert_int_equal(n, 0);
	}
	assert_int_equal(crypto_b32_decode(dec, 5, &n, "MZXW6YTBOI", 10), HV_OUT_OF_RANGE);
	assert_int_equal(crypto_b32_decode(dec, 6, &n, "MZXW6YTBOI", 10), HV_OK);
	assert_int_equal(crypto_b32_encode(enc, 8, "fooba", 5), HV_OUT_OF_RANGE);
	assert_string_equal(enc, "");
	assert_int_equal(crypto_b32_encode(enc, 8, "foob", 4), HV_OK);
}

static void
test_otpauth_uri(void **state)
{
	char   uri[CRYPTO_OTPAUTH_URI_MAX];
	char   account[CRYPTO_OTP_ACCOUNT_MAX + 2];
	size_t len;

	(void) state;
	assert_int_equal(crypto_otpauth_uri(uri, sizeof(uri), "intake.night-1_~", otp_seed20, 20),
	    HV_OK);
	assert_string_equal(uri,
	    "otpauth://totp/haven:intake.night-1_~?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	    "&issuer=haven&algorithm=SHA1&digits=6&period=30");
	/* Everything outside the unreserved set is percent-encoded, UTF-8 byte by byte. */
	assert_int_equal(crypto_otpauth_uri(uri, sizeof(uri), "a b@c:d/e?f&g#h+i%j\xc3\xa9",
	                     otp_seed20, 20),
	    HV_OK);
	assert_string_equal(uri,
	    "otpauth://totp/haven:a%20b%40c%3Ad%2Fe%3Ff%26g%23h%2Bi%25j%C3%A9"
	    "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=haven&algorithm=SHA1&digits=6"
	    "&period=30");

	/* The longest account, all escaped, with the longest secret fits the documented size. */
	memset(account, '/', CRYPTO_OTP_ACCOUNT_MAX);
	account[CRYPTO_OTP_ACCOUNT_MAX] = '\0';
	assert_int_equal(crypto_otpauth_uri(uri, sizeof(uri), account, otp_seed64, 64), HV_OK);
	len = strlen(uri);
	assert_true(len < sizeof(uri));
	assert_int_equal(crypto_otpauth_uri(uri, len + 1, account, otp_seed64, 64), HV_OK);
	assert_int_equal(crypto_otpauth_uri(uri, len, account, otp_seed64, 64), HV_OUT_OF_RANGE);
	assert_string_equal(uri, "");

	account[CRYPTO_OTP_ACCOUNT_MAX]     = '/';
	account[CRYPTO_OTP_ACCOUNT_MAX + 1] = '\0';
	assert_int_equal(crypto_otpauth_uri(uri, sizeof(uri), account, otp_seed20, 20),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_otpauth_uri(uri, sizeof(uri), "", otp_seed20, 20),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_otpauth_uri(uri, sizeof(uri), NULL, otp_seed20, 20),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_otpauth_uri(uri, sizeof(uri), "a", otp_seed20, 19),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(uri, "");
}

/* ---- scrypt and password hashes --------------------------------------------------------- */

static void
test_scrypt_rfc7914(void **state)
{
	/* RFC 7914 section 12 (the fourth vector, N = 2^20, takes a GiB and is left out). */
	uint8_t out[64];

	(void) state;
	assert_int_equal(crypto_scrypt(out, 64, "", 0, NULL, 0, 4, 1, 1), HV_OK);
	assert_hex_equal(out, 64,
	    "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
	    "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906");
	assert_int_equal(crypto_scrypt(out, 64, "password", 8, (const uint8_t *) "NaCl", 4, 10, 8,
	                     16),
	    HV_OK);
	assert_hex_equal(out, 64,
	    "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
	    "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");
	assert_int_equal(crypto_scrypt(out, 64, "pleaseletmein", 13,
	                     (const uint8_t *) "SodiumChloride", 14, 14, 8, 1),
	    HV_OK);
	assert_hex_equal(out, 64,
	    "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
	    "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887");
}

static void
test_scrypt_rejects(void **state)
{
	uint8_t out[32];

	(void) state;
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 0, 0, 8, 1), HV_INVALID_ARGUMENT);
	for (size_t i = 0; i < sizeof(out); i++) {
		assert_int_equal(out[i], 0); /* wiped */
	}
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 0, 21, 1, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 0, 4, 0, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 0, 4, 33, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 0, 4, 1, 0), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 0, 4, 1, 17), HV_INVALID_ARGUMENT);
	/* 128 * 2 * (2^20 + 3) bytes is just over CRYPTO_SCRYPT_MAXMEM. */
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 0, 20, 2, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(out, 0, "p", 1, NULL, 0, 4, 1, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(NULL, 32, "p", 1, NULL, 0, 4, 1, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(out, 32, NULL, 1, NULL, 0, 4, 1, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 1, 4, 1, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_scrypt(out, 32, "p", 1, NULL, 0, 4, 1, 1), HV_OK);
}

/* "correct horse battery staple", salt 00..0f, N = 2^10, r = 8, p = 1: made with Python's
 * hashlib.scrypt, an implementation other than the one under test. */
static const char pw_known[] = "correct horse battery staple";
static const char pw_known_hash[] =
    "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_AXJlRU";

static void
test_pwhash_known_and_round_trip(void **state)
{
	char a[CRYPTO_PWHASH_MAX];
	char b[CRYPTO_PWHASH_MAX];
	char pw[CRYPTO_PASSWORD_MAX + 1];

	(void) state;
	assert_int_equal(crypto_pwhash_verify(pw_known_hash, pw_known, strlen(pw_known)), HV_OK);
	assert_int_equal(crypto_pwhash_verify(pw_known_hash, pw_known, strlen(pw_known) - 1),
	    HV_UNAUTHENTICATED);
	assert_int_equal(crypto_pwhash_verify(pw_known_hash, "Correct horse battery staple",
	                     strlen(pw_known)),
	    HV_UNAUTHENTICATED);
	assert_true(crypto_pwhash_needs_rehash(pw_known_hash)); /* below the current costs */

	/* The current costs: self-describing, salted, no rehash needed. */
	assert_int_equal(crypto_pwhash(a, "hunter2", 7), HV_OK);
	assert_int_equal(strncmp(a, "$scrypt$ln=15,r=8,p=1$", 22), 0);
	assert_int_equal(crypto_pwhash_verify(a, "hunter2", 7), HV_OK);
	assert_int_equal(crypto_pwhash_verify(a, "hunter3", 7), HV_UNAUTHENTICATED);
	assert_false(crypto_pwhash_needs_rehash(a));
	assert_int_equal(crypto_pwhash_with(b, "hunter2", 7, 10, 8, 1), HV_OK);
	assert_string_not_equal(a, b);
	assert_int_equal(crypto_pwhash_with(a, "hunter2", 7, 10, 8, 1), HV_OK);
	assert_string_not_equal(a, b); /* fresh salt each time */
	assert_int_equal(crypto_pwhash_verify(b, "hunter2", 7), HV_OK);
	assert_true(crypto_pwhash_needs_rehash(b));

	/* Any bytes, up to CRYPTO_PASSWORD_MAX of them. */
	memset(pw, 0xff, sizeof(pw));
	pw[3] = '\0';
	assert_int_equal(crypto_pwhash_with(a, pw, CRYPTO_PASSWORD_MAX, 10, 8, 1), HV_OK);
	assert_int_equal(crypto_pwhash_verify(a, pw, CRYPTO_PASSWORD_MAX), HV_OK);
	assert_int_equal(crypto_pwhash_verify(a, pw, 3), HV_UNAUTHENTICATED);
	assert_int_equal(crypto_pwhash_with(a, pw, CRYPTO_PASSWORD_MAX + 1, 10, 8, 1),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(a, "");
	assert_int_equal(crypto_pwhash_with(a, "x", 0, 10, 8, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_pwhash_with(a, NULL, 1, 10, 8, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_pwhash_with(a, "x", 1, 21, 8, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_pwhash_with(a, "x", 1, 10, 0, 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_pwhash_verify(b, pw, CRYPTO_PASSWORD_MAX + 1), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_pwhash_verify(b, "", 0), HV_INVALID_ARGUMENT);
	assert_int_equal(crypto_pwhash_verify(b, NULL, 1), HV_INVALID_ARGUMENT);
}

static void
test_pwhash_tampered(void **state)
{
	static const char *bad[] = {
		"",
		"$scrypt$",
		"$argon2id$v=19$m=65536,t=3,p=4$AAECAwQFBgcICQoLDA0ODw$"
		"mp90zEQd5XGhjEv4WArVH4Z0XRSz",
		"$SCRYPT$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlRU",
		"$scrypt$ln=010,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$"
		"mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_AXJlRU",
		"$scrypt$ln=+10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$"
		"mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_AXJlRU",
		"$scrypt$ln= "
		"10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_AXJlRU",
		"$scrypt$ln=99,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlRU",
		"$scrypt$ln=10,r=0,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlRU",
		"$scrypt$ln=20,r=32,p=1$AAECAwQFBgcICQoLDA0ODw$"
		"mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_AXJlRU",
		"$scrypt$ln=10,r=8,p=99999$AAECAwQFBgcICQoLDA0ODw$"
		"mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_AXJlRU",
		"$scrypt$ln=10,p=1,r=8$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlRU",
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0O$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlRU",
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODwAA$"
		"mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_AXJlRU",
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlR",
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlRU=",
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlRU ",
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S_"
		"AXJlRU$",
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw",
	};
	char   t[sizeof(pw_known_hash)];
	char   huge[CRYPTO_PWHASH_MAX + 1];
	size_t len = strlen(pw_known_hash);

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(crypto_pwhash_verify(bad[i], pw_known, strlen(pw_known)),
		    HV_INVALID_ARGUMENT);
		assert_true(crypto_pwhash_needs_rehash(bad[i]));
	}
	assert_int_equal(crypto_pwhash_verify(NULL, pw_known, strlen(pw_known)),
	    HV_INVALID_ARGUMENT);
	assert_true(crypto_pwhash_needs_rehash(NULL));
	memset(huge, 'A', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	assert_int_equal(crypto_pwhash_verify(huge, pw_known, strlen(pw_known)),
	    HV_INVALID_ARGUMENT);

	/* Any one character changed anywhere (costs, salt, hash) never verifies. */
	for (size_t i = 0; i < len; i++) {
		for (const char *c = "AQ0_1"; *c != '\0'; c++) {
			hv_status st;
			if (pw_known_hash[i] == *c) {
				continue;
			}
			memcpy(t, pw_known_hash, sizeof(t));
			t[i] = *c;
			st   = crypto_pwhash_verify(t, pw_known, strlen(pw_known));
			assert_true(st == HV_UNAUTHENTICATED || st == HV_INVALID_ARGUMENT);
		}
	}
	/* A changed cost is a different hash, not an error. */
	memcpy(t, pw_known_hash, sizeof(t));
	t[11] = '1';
	t[12] = '1';
	assert_int_equal(crypto_pwhash_verify(t, pw_known, strlen(pw_known)), HV_UNAUTHENTICATED);
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
		cmocka_unit_test(test_sha256_fips180),
		cmocka_unit_test(test_hmac_rfc4231),
		cmocka_unit_test(test_equal_wipe_random),
		cmocka_unit_test(test_aead_vectors),
		cmocka_unit_test(test_aead_tamper),
		cmocka_unit_test(test_b64url_rfc4648),
		cmocka_unit_test(test_b64url_rejects),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_sign_other_keys),
		cmocka_unit_test(test_garbage_pem),
		cmocka_unit_test(test_encrypted_key_never_prompts),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_cert_check),
		cmocka_unit_test(test_self_signed_client),
		cmocka_unit_test(test_ed25519_rfc8032),
		cmocka_unit_test(test_ed25519_keygen),
		cmocka_unit_test(test_hotp_rfc4226),
		cmocka_unit_test(test_totp_rfc6238),
		cmocka_unit_test(test_otp_rejects),
		cmocka_unit_test(test_totp_verify_window_replay),
		cmocka_unit_test(test_b32_rfc4648),
		cmocka_unit_test(test_b32_rejects),
		cmocka_unit_test(test_otpauth_uri),
		cmocka_unit_test(test_scrypt_rfc7914),
		cmocka_unit_test(test_scrypt_rejects),
		cmocka_unit_test(test_pwhash_known_and_round_trip),
		cmocka_unit_test(test_pwhash_tampered),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
