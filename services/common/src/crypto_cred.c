/*
 * crypto_cred.c - the credentials of people: one-time codes (RFC 4226 HOTP, RFC 6238 TOTP),
 * base32 and otpauth:// URIs for enrolling an authenticator app, and scrypt password hashes,
 * over OpenSSL 3's EVP interface. The rules of crypto.c hold here too: OpenSSL's error queue
 * is cleared on every failure path, secrets are wiped, codes compared in constant time.
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

/* A valid pointer for empty inputs: OpenSSL does not accept NULL everywhere n may be 0. */
static const uint8_t empty[1];

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
	const EVP_MD *md = otp_md(alg);
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
	off = mac[maclen - 1] & 0xf;
	bin = (uint32_t) (mac[off] & 0x7f) << 24 | (uint32_t) mac[off + 1] << 16 |
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
	size_t    o    = 0;
	size_t    tail = 0;
	uint64_t  v    = 0;
	hv_status st   = HV_INVALID_ARGUMENT;

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
	static const char hex[]  = "0123456789ABCDEF";
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
		unsigned char c      = (unsigned char) account[i];
		char          esc[3] = { '%', hex[c >> 4], hex[c & 15] };
		bool          plain  = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
		if (!(plain ? uri_put(out, outsz, &o, (const char *) &account[i], 1)
		            : uri_put(out, outsz, &o, esc, 3))) {
			goto out;
		}
	}
	if (!uri_put(out, outsz, &o, "?secret=", 8) || !uri_put(out, outsz, &o, b32, strlen(b32)) ||
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

#define SCRYPT_LN_MAX  20
#define SCRYPT_R_MAX   32
#define SCRYPT_P_MAX   16
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
crypto_scrypt(uint8_t *out, size_t outlen, const void *pass, size_t passlen, const uint8_t *salt,
    size_t saltlen, unsigned ln, unsigned r, unsigned p)
{
	EVP_KDF     *kdf    = NULL;
	EVP_KDF_CTX *ctx    = NULL;
	uint64_t     n      = (uint64_t) 1 << (ln & 63);
	uint64_t     maxmem = CRYPTO_SCRYPT_MAXMEM;
	uint32_t     r32    = r;
	uint32_t     p32    = p;
	OSSL_PARAM   params[7];
	hv_status    st = HV_INVALID_ARGUMENT;

	if (out == NULL || outlen == 0 || outlen > SCRYPT_OUT_MAX || !scrypt_costs_ok(ln, r, p) ||
	    passlen > CRYPTO_SCRYPT_INPUT_MAX || saltlen > CRYPTO_SCRYPT_INPUT_MAX ||
	    (pass == NULL && passlen != 0) || (salt == NULL && saltlen != 0)) {
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
	n = snprintf(out, CRYPTO_PWHASH_MAX, "$scrypt$ln=%u,r=%u,p=%u$%s$%s", ln, r, p, salt, hash);
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
	return (
	    crypto_pwhash_with(out, pw, pwlen, CRYPTO_PWHASH_LN, CRYPTO_PWHASH_R, CRYPTO_PWHASH_P));
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
