/*
 * audit_log.c - the bottom of the audit log: an entry's encoding and hash, the head record,
 * and appending one entry after the head (audit.h gives the encoding). Calls nothing of the
 * other audit files.
 */
#include "haven/audit.h"
#include "audit_internal.h"
#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding ------------------------------------------------------------------------- */

/* Printable ASCII (no spaces when strict), shorter than max. */
bool
audit__field_ok(const char *s, size_t max, bool strict)
{
	size_t n = strnlen(s, max);

	if (n >= max) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char) s[i];
		if (c > 0x7e || c < (strict ? 0x21 : 0x20)) {
			return (false);
		}
	}
	return (true);
}

static size_t
str_put(uint8_t *p, const char *s)
{
	size_t n = strlen(s); /* < 256: checked by audit__field_ok */

	p[0] = (uint8_t) n;
	memcpy(p + 1, s, n);
	return (n + 1);
}

/* Encodes the body of e into buf (BODY_MAX bytes); returns its length. */
size_t
audit__body_encode(const audit_entry *e, uint8_t *buf)
{
	size_t o = 0;

	buf[o++] = AUDIT_VERSION;
	hv_put_be64(buf + o, e->seq);
	o += 8;
	hv_put_be64(buf + o, (uint64_t) e->time_ms);
	o += 8;
	hv_put_be32(buf + o, (uint32_t) e->role);
	o += 4;
	o += str_put(buf + o, e->org);
	o += str_put(buf + o, e->method);
	o += str_put(buf + o, e->subject);
	o += str_put(buf + o, e->purpose);
	o += str_put(buf + o, e->person);
	hv_put_be32(buf + o, (uint32_t) e->result);
	o += 4;
	return (o);
}

/* HMAC-SHA256(chain key, prev_hash || body) for a keyed body (its first byte 2 or 3),
 * SHA-256(prev_hash || body) for a legacy one. */
void
audit__entry_hash(const audit *a, const uint8_t prev[AUDIT_HASH_LEN], const uint8_t *body, size_t n,
    uint8_t out[AUDIT_HASH_LEN])
{
	uint8_t buf[AUDIT_HASH_LEN + BODY_MAX];

	memcpy(buf, prev, AUDIT_HASH_LEN);
	memcpy(buf + AUDIT_HASH_LEN, body, n);
	if (body[0] == AUDIT_VERSION_LEGACY) {
		crypto_sha256(out, buf, AUDIT_HASH_LEN + n);
	} else {
		crypto_hmac_sha256_prepared(out, a->a_key, buf, AUDIT_HASH_LEN + n);
	}
}

static int
str_get(const uint8_t *v, size_t len, size_t *o, char *out, size_t max)
{
	size_t n;

	if (*o >= len) {
		return (-1);
	}
	n = v[(*o)++];
	if (n >= max || len - *o < n) {
		return (-1);
	}
	memcpy(out, v + *o, n);
	out[n] = '\0';
	*o += n;
	return (0);
}

/* Decodes a stored value; *bodylen gets the length of its body. -1 when it is malformed. */
int
audit__entry_decode(const uint8_t *v, size_t len, audit_entry *e, size_t *bodylen)
{
	size_t o = 0;

	memset(e, 0, sizeof(*e));
	if (len < 1 + 8 + 8 + 4 ||
	    (v[0] != AUDIT_VERSION && v[0] != AUDIT_VERSION_KEYED &&
	        v[0] != AUDIT_VERSION_LEGACY)) {
		return (-1);
	}
	o      = 1;
	e->seq = hv_get_be64(v + o);
	o += 8;
	e->time_ms = (int64_t) hv_get_be64(v + o);
	o += 8;
	e->role = (rpc_role) hv_get_be32(v + o);
	o += 4;
	if (str_get(v, len, &o, e->org, sizeof(e->org)) != 0 ||
	    str_get(v, len, &o, e->method, sizeof(e->method)) != 0 ||
	    str_get(v, len, &o, e->subject, sizeof(e->subject)) != 0 ||
	    str_get(v, len, &o, e->purpose, sizeof(e->purpose)) != 0 ||
	    (v[0] == AUDIT_VERSION && str_get(v, len, &o, e->person, sizeof(e->person)) != 0) ||
	    len - o != 4 + 2 * AUDIT_HASH_LEN) {
		return (-1);
	}
	e->result = (int32_t) hv_get_be32(v + o);
	o += 4;
	*bodylen = o;
	memcpy(e->prev_hash, v + o, AUDIT_HASH_LEN);
	memcpy(e->hash, v + o + AUDIT_HASH_LEN, AUDIT_HASH_LEN);
	return (0);
}

/* ---- appending ------------------------------------------------------------------------ */

/* snprintf(dst, size, "%s", src) without the format machinery, which costs more than the copy:
 * every Consent Check fills an entry of five fields. src NULL is "". */
static void
field_set(char *dst, size_t size, const char *src)
{
	size_t n = src != NULL ? strnlen(src, size - 1) : 0;

	memcpy(dst, src != NULL ? src : "", n);
	dst[n] = '\0';
}

void
audit_entry_caller(audit_entry *e, const rpc_caller *caller)
{
	e->role = caller->role;
	field_set(e->org, sizeof(e->org), caller->org_id);
	field_set(e->person, sizeof(e->person), caller->person.id);
}

void
audit_entry_fill(audit_entry *e, const rpc_caller *caller, const char *method, const char *subject,
    const char *purpose, int64_t now_ms)
{
	memset(e, 0, sizeof(*e));
	e->time_ms = now_ms;
	audit_entry_caller(e, caller);
	field_set(e->method, sizeof(e->method), method);
	field_set(e->subject, sizeof(e->subject), subject);
	field_set(e->purpose, sizeof(e->purpose), purpose);
	e->result = HV_OK;
}

size_t
audit__index_key(uint8_t key[SUBJECT_KEY_MAX], uint64_t seq, const char *subject, size_t sl)
{
	hv_put_be64(key, seq >> WINDOW_BITS);
	memcpy(key + 8, subject, sl);
	key[8 + sl] = 0;
	hv_put_be64(key + 8 + sl + 1, seq);
	return (8 + sl + 9);
}

hv_status
audit__head_read(audit *a, store_txn *txn, chain_head *h)
{
	const void *v;
	size_t      vlen;
	hv_status   st;

	st = store_get(txn, a->a_head, HEAD_KEY, strlen(HEAD_KEY), &v, &vlen);
	if (st == HV_NOT_FOUND) {
		h->ch_seq = 0;
		memset(h->ch_hash, 0, AUDIT_HASH_LEN);
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if (vlen != HEAD_LEN) {
		return (HV_DATA_LOSS);
	}
	h->ch_seq = hv_get_be64(v);
	memcpy(h->ch_hash, (const uint8_t *) v + 8, AUDIT_HASH_LEN);
	return (HV_OK);
}

hv_status
audit__head_write(audit *a, store_txn *txn, const chain_head *h)
{
	uint8_t head[HEAD_LEN];

	hv_put_be64(head, h->ch_seq);
	memcpy(head + 8, h->ch_hash, AUDIT_HASH_LEN);
	return (store_put(txn, a->a_head, HEAD_KEY, strlen(HEAD_KEY), head, sizeof(head)));
}

/* Appends e after head h (advanced to e); the caller writes the head record once after its
 * last entry, in the same transaction. */
hv_status
audit__append_after(audit *a, store_txn *txn, audit_entry *e, chain_head *h)
{
	uint8_t   value[VALUE_MAX];
	uint8_t   key[8];
	uint8_t   skey[SUBJECT_KEY_MAX];
	size_t    n;
	hv_status st;

	if (!audit__field_ok(e->org, sizeof(e->org), false) ||
	    !audit__field_ok(e->method, sizeof(e->method), false) ||
	    !audit__field_ok(e->subject, sizeof(e->subject), true) ||
	    !audit__field_ok(e->purpose, sizeof(e->purpose), false) ||
	    !audit__field_ok(e->person, sizeof(e->person), true)) {
		return (HV_INVALID_ARGUMENT);
	}
	if (e->time_ms == 0) {
		e->time_ms = hv_clock_wall_ms();
	}
	e->seq = h->ch_seq + 1;
	memcpy(e->prev_hash, h->ch_hash, AUDIT_HASH_LEN);
	n = audit__body_encode(e, value);
	audit__entry_hash(a, e->prev_hash, value, n, e->hash);
	memcpy(value + n, e->prev_hash, AUDIT_HASH_LEN);
	memcpy(value + n + AUDIT_HASH_LEN, e->hash, AUDIT_HASH_LEN);
	hv_put_be64(key, e->seq);
	/* An entry already under the next seq (or after it) means the head was rolled back: never
	 * overwrite. */
	st = store_append(txn, a->a_log, key, sizeof(key), value, n + 2 * AUDIT_HASH_LEN);
	if (st != HV_OK) {
		return (st == HV_ALREADY_EXISTS ? HV_DATA_LOSS : st);
	}
	if (e->subject[0] != '\0' &&
	    (st = store_put(txn, a->a_subject, skey,
	         audit__index_key(skey, e->seq, e->subject, strlen(e->subject)), "", 0)) != HV_OK) {
		return (st);
	}
	h->ch_seq = e->seq;
	memcpy(h->ch_hash, e->hash, AUDIT_HASH_LEN);
	return (HV_OK);
}

void
audit__hex_put(char *out, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i]     = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* Exactly 2n lower-case hex characters. */
int
audit__hex_get(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n) {
		return (-1);
	}
	for (size_t i = 0; i < 2 * n; i++) {
		int c = s[i], d;
		if (c >= '0' && c <= '9') {
			d = c - '0';
		} else if (c >= 'a' && c <= 'f') {
			d = c - 'a' + 10;
		} else {
			return (-1);
		}
		out[i / 2] = (uint8_t) (i % 2 == 0 ? d << 4 : out[i / 2] | d);
	}
	return (0);
}

/* Decimal digits only, no overflow. */
int
audit__dec_get(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0' || strlen(s) > 20) {
		return (-1);
	}
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10) {
			return (-1);
		}
		v = v * 10 + (uint64_t) (*s - '0');
	}
	*out = v;
	return (0);
}

void
audit_hash_hex(const uint8_t hash[AUDIT_HASH_LEN], char out[2 * AUDIT_HASH_LEN + 1])
{
	audit__hex_put(out, hash, AUDIT_HASH_LEN);
}

hv_status
audit_entry_decode(const void *value, size_t len, audit_entry *out)
{
	size_t bodylen;

	if (value == NULL || out == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	return (audit__entry_decode(value, len, out, &bodylen) == 0 ? HV_OK : HV_DATA_LOSS);
}
