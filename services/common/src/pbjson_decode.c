/*
 * pbjson_decode.c - proto3 canonical JSON into a protobuf-c message (pbjson_decode of
 * pbjson.h): jansson parses the text, and the tree is walked field by field into a message
 * made from the caller's allocator, within the caller's depth and size limits.
 */
#include "haven/pbjson.h"

#include "haven/crypto.h"
#include "haven/pbfield.h"
#include "pbjson_internal.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- decoding ------------------------------------------------------------------------ */

static void *
pj_alloc(pj_ctx *c, size_t n)
{
	void *p;

	if (n > c->max_alloc || c->allocated > c->max_alloc - n) {
		pj_exhausted(c, "message larger than %zu bytes", c->max_alloc);
		return (NULL);
	}
	if ((p = c->alloc->alloc(c->alloc->allocator_data, n)) == NULL) {
		pj_exhausted(c, "out of memory");
		return (NULL);
	}
	c->allocated += n;
	return (p);
}

/* Whether key is name's JSON name (pj_json_name without building it). */
static int
json_name_is(const char *name, const char *key)
{
	int up = 0;

	for (; *name != '\0'; name++) {
		if (*name == '_') {
			up = 1;
			continue;
		}
		if (*key++ != (up ? (char) toupper((unsigned char) *name) : *name)) {
			return (0);
		}
		up = 0;
	}
	return (*key == '\0');
}

/* The field named key by its proto name (protobuf-c's binary search) or its JSON name. */
static const ProtobufCFieldDescriptor *
find_field(const ProtobufCMessageDescriptor *d, const char *key)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);

	for (unsigned i = 0; f == NULL && i < d->n_fields; i++) {
		if (json_name_is(d->fields[i].name, key)) {
			f = &d->fields[i];
		}
	}
	return (f);
}

/* A strict decimal integer: optional '-', digits, nothing else. */
static int
parse_decimal(const char *s, int neg_ok, int64_t *sv, uint64_t *uv)
{
	const char *p = s[0] == '-' ? s + 1 : s;
	char       *end;

	if (!isdigit((unsigned char) p[0]) || (s[0] == '-' && !neg_ok)) {
		return (-1);
	}
	errno = 0;
	if (neg_ok) {
		*sv = strtoll(s, &end, 10);
	} else {
		*uv = strtoull(s, &end, 10);
	}
	return (errno != 0 || *end != '\0' ? -1 : 0);
}

/* An integer field's value from a JSON integer, integral real or decimal string. */
static int
dec_integer(pj_ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
    json_t *v, int is_signed, int64_t lo, int64_t hi_s, uint64_t hi_u, void *dst, size_t sz)
{
	int64_t  sv = 0;
	uint64_t uv = 0;

	if (json_is_integer(v)) {
		sv = json_integer_value(v);
		if (!is_signed && sv < 0) {
			goto range;
		}
		uv = (uint64_t) sv;
	} else if (json_is_real(v)) {
		double r = json_real_value(v);
		if (r != floor(r) || r < (double) lo ||
		    r >= (is_signed ? -(double) lo : 18446744073709551616.0)) {
			goto range;
		}
		/* In range of the target type here, so neither conversion overflows. */
		if (is_signed) {
			sv = (int64_t) r;
			uv = (uint64_t) sv;
		} else {
			uv = (uint64_t) r;
		}
	} else if (json_is_string(v)) {
		if (parse_decimal(json_string_value(v), is_signed, &sv, &uv) != 0) {
			pj_fail(c, "%s.%s: not an integer", FNAME(d, f));
			return (-1);
		}
		if (is_signed) {
			uv = (uint64_t) sv;
		}
	} else {
		pj_fail(c, "%s.%s: expected an integer", FNAME(d, f));
		return (-1);
	}
	if (is_signed ? (sv < lo || sv > hi_s) : uv > hi_u) {
		goto range;
	}
	if (sz == 8) {
		memcpy(dst, is_signed ? (void *) &sv : (void *) &uv, 8);
	} else {
		uint32_t w = is_signed ? (uint32_t) (int32_t) sv : (uint32_t) uv;
		memcpy(dst, &w, 4);
	}
	return (0);
range:
	pj_fail(c, "%s.%s: integer out of range", FNAME(d, f));
	return (-1);
}

static int
dec_real(pj_ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
    json_t *v, void *dst)
{
	double r;

	if (json_is_number(v)) {
		r = json_number_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char       *end;
		if (strcmp(s, "NaN") == 0) {
			r = NAN;
		} else if (strcmp(s, "Infinity") == 0) {
			r = INFINITY;
		} else if (strcmp(s, "-Infinity") == 0) {
			r = -INFINITY;
		} else {
			errno = 0;
			r     = strtod(s, &end);
			if (s[0] == '\0' || isspace((unsigned char) s[0]) || *end != '\0' ||
			    !isfinite(r) || errno != 0) {
				pj_fail(c, "%s.%s: not a number", FNAME(d, f));
				return (-1);
			}
		}
	} else {
		pj_fail(c, "%s.%s: expected a number", FNAME(d, f));
		return (-1);
	}
	if (f->type == PROTOBUF_C_TYPE_DOUBLE) {
		memcpy(dst, &r, 8);
		return (0);
	}
	/* Refused only when it would round to infinity: FLT_MAX's shortest form 3.4028235e38
	 * is above FLT_MAX but within half a unit (2^103) of it. */
	if (isfinite(r) && fabs(r) >= (double) FLT_MAX + ldexp(1.0, 103)) {
		pj_fail(c, "%s.%s: out of range for a float", FNAME(d, f));
		return (-1);
	}
	float fl = (float) r;
	memcpy(dst, &fl, 4);
	return (0);
}

/* Standard or URL base64, padded or not, into bytes from the allocator. */
static int
dec_bytes(pj_ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
    json_t *v, ProtobufCBinaryData *dst)
{
	const char *s;
	char       *norm = NULL;
	size_t      n, outlen;
	int         rc = -1;

	if (!json_is_string(v)) {
		pj_fail(c, "%s.%s: expected a base64 string", FNAME(d, f));
		return (-1);
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if ((norm = malloc(n + 1)) == NULL) {
		pj_exhausted(c, "out of memory");
		return (-1);
	}
	for (size_t i = 0; i < n; i++) {
		norm[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
	}
	/* Padding: only at the end, and only to complete the last group of four. */
	size_t pad = 0;
	while (n > 0 && norm[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (pad > 0 && (n + pad) % 4 != 0) {
		goto bad;
	}
	dst->len  = 0;
	dst->data = NULL;
	if (n == 0) {
		rc = 0;
		goto out;
	}
	if ((dst->data = pj_alloc(c, n)) == NULL) {
		goto out;
	}
	if (crypto_b64url_decode(dst->data, n, &outlen, norm, n) != HV_OK) {
		goto bad;
	}
	dst->len = outlen;
	rc       = 0;
	goto out;
bad:
	pj_fail(c, "%s.%s: not valid base64", FNAME(d, f));
out:
	free(norm);
	return (rc);
}

static int
dec_string(pj_ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
    json_t *v, char **dst)
{
	size_t n;

	if (!json_is_string(v)) {
		pj_fail(c, "%s.%s: expected a string", FNAME(d, f));
		return (-1);
	}
	n = json_string_length(v);
	if (memchr(json_string_value(v), '\0', n) != NULL) {
		pj_fail(c, "%s.%s: contains U+0000", FNAME(d, f));
		return (-1);
	}
	if ((*dst = pj_alloc(c, n + 1)) == NULL) {
		return (-1);
	}
	memcpy(*dst, json_string_value(v), n + 1);
	return (0);
}

static int
dec_enum(pj_ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
    json_t *v, int *dst)
{
	if (json_is_string(v)) {
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value_by_name(f->descriptor,
		        json_string_value(v));
		if (ev == NULL) {
			pj_fail(c, "%s.%s: unknown enum value name", FNAME(d, f));
			return (-1);
		}
		*dst = ev->value;
		return (0);
	}
	int32_t n;
	if (dec_integer(c, d, f, v, 1, INT32_MIN, INT32_MAX, 0, &n, 4) != 0) {
		return (-1);
	}
	*dst = n;
	return (0);
}

static int dec_message(pj_ctx *c, const ProtobufCMessageDescriptor *d, json_t *obj, unsigned depth,
    ProtobufCMessage **out);

/* One value (not null) of field f into dst. */
static int
dec_value(pj_ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
    json_t *v, void *dst, unsigned depth)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return (dec_integer(c, d, f, v, 1, INT32_MIN, INT32_MAX, 0, dst, 4));
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return (dec_integer(c, d, f, v, 0, 0, 0, UINT32_MAX, dst, 4));
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return (dec_integer(c, d, f, v, 1, INT64_MIN, INT64_MAX, 0, dst, 8));
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return (dec_integer(c, d, f, v, 0, 0, 0, UINT64_MAX, dst, 8));
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		return (dec_real(c, d, f, v, dst));
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v)) {
			pj_fail(c, "%s.%s: expected true or false", FNAME(d, f));
			return (-1);
		}
		*(protobuf_c_boolean *) dst = json_is_true(v);
		return (0);
	case PROTOBUF_C_TYPE_ENUM:
		return (dec_enum(c, d, f, v, dst));
	case PROTOBUF_C_TYPE_STRING:
		return (dec_string(c, d, f, v, dst));
	case PROTOBUF_C_TYPE_BYTES:
		return (dec_bytes(c, d, f, v, dst));
	case PROTOBUF_C_TYPE_MESSAGE:
		if (!json_is_object(v)) {
			pj_fail(c, "%s.%s: expected an object", FNAME(d, f));
			return (-1);
		}
		return (dec_message(c, f->descriptor, v, depth + 1, dst));
	}
	pj_fail(c, "%s.%s: unsupported field type", FNAME(d, f));
	return (-1);
}

static int
dec_repeated(pj_ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
    json_t *v, ProtobufCMessage *m, unsigned depth)
{
	size_t n  = json_array_size(v);
	size_t sz = pbfield_size(f->type);
	char  *arr;

	if (!json_is_array(v)) {
		pj_fail(c, "%s.%s: expected an array", FNAME(d, f));
		return (-1);
	}
	if (n == 0) {
		return (0);
	}
	if (n > SIZE_MAX / sz || (arr = pj_alloc(c, n * sz)) == NULL) {
		pj_exhausted(c, "%s.%s: array too large", FNAME(d, f));
		return (-1);
	}
	memset(arr, 0, n * sz);
	/* Owned by the message from here, so that free_unpacked releases what was decoded. */
	*(char **) ((char *) m + f->offset)             = arr;
	*(size_t *) ((char *) m + f->quantifier_offset) = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(v, i);
		if (json_is_null(e)) {
			pj_fail(c, "%s.%s: null in an array", FNAME(d, f));
			return (-1);
		}
		/* Counted before it is decoded: a half-decoded element is freed with the rest. */
		*(size_t *) ((char *) m + f->quantifier_offset) = i + 1;
		if (dec_value(c, d, f, e, arr + i * sz, depth) != 0) {
			return (-1);
		}
	}
	return (0);
}

/* A key that is safe to repeat in a message: a short identifier, else a placeholder. */
static const char *
safe_key(const char *key)
{
	size_t n = strlen(key);

	if (n == 0 || n > 64) {
		return ("(not an identifier)");
	}
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char) key[i]) && key[i] != '_') {
			return ("(not an identifier)");
		}
	}
	return (key);
}

static int
dec_member(pj_ctx *c, const ProtobufCMessageDescriptor *d, const char *key, json_t *v,
    ProtobufCMessage *m, unsigned char *seen, unsigned depth)
{
	const ProtobufCFieldDescriptor *f = find_field(d, key);
	char                           *member;

	if (f == NULL) {
		pj_fail(c, "%s: unknown field \"%s\"", d->name, safe_key(key));
		return (-1);
	}
	if (seen[f - d->fields]++) {
		pj_fail(c, "%s.%s: given twice", FNAME(d, f));
		return (-1);
	}
	if (json_is_null(v)) {
		return (0); /* the default, which the message already has */
	}
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		return (dec_repeated(c, d, f, v, m, depth));
	}
	member = (char *) m + f->offset;
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *which = (uint32_t *) ((char *) m + f->quantifier_offset);
		if (*which != 0) {
			pj_fail(c, "%s.%s: another member of its oneof is set", FNAME(d, f));
			return (-1);
		}
		/* Cleared and selected first: the union may hold another member's default (a
		 * string), and a half-decoded member must be freed with the message. */
		memset(member, 0, pbfield_size(f->type));
		*which = f->id;
		return (dec_value(c, d, f, v, member, depth));
	}
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
	    f->type != PROTOBUF_C_TYPE_STRING) {
		*(protobuf_c_boolean *) ((char *) m + f->quantifier_offset) = 1;
	}
	return (dec_value(c, d, f, v, member, depth));
}

static int
dec_message(pj_ctx *c, const ProtobufCMessageDescriptor *d, json_t *obj, unsigned depth,
    ProtobufCMessage **out)
{
	ProtobufCMessage *m;
	unsigned char     seen_small[32]; /* AllTypes (36 fields) takes calloc in the tests */
	unsigned char    *seen = seen_small;
	const char       *key;
	json_t           *v;
	int               rc = -1;

	if (depth > c->max_depth) {
		pj_exhausted(c, "%s: nested deeper than %u messages", d->name, c->max_depth);
		return (-1);
	}
	if ((m = pj_alloc(c, d->sizeof_message)) == NULL) {
		return (-1);
	}
	protobuf_c_message_init(d, m);
	*out = m; /* the caller frees it, complete or not */
	if (d->n_fields > sizeof(seen_small)) {
		seen = calloc(d->n_fields, 1);
	} else {
		memset(seen_small, 0, sizeof(seen_small));
	}
	if (seen == NULL) {
		pj_exhausted(c, "out of memory");
		goto out;
	}
	json_object_foreach(obj, key, v)
	{
		if (dec_member(c, d, key, v, m, seen, depth) != 0) {
			goto out;
		}
	}
	rc = 0;
out:
	if (seen != seen_small) {
		free(seen);
	}
	return (rc);
}

/* What is wrong with bad JSON text, in words that quote nothing of it. */
static const char *
json_error_kind(enum json_error_code code)
{
	switch (code) {
	case json_error_duplicate_key:
		return ("duplicate key");
	case json_error_invalid_utf8:
		return ("not valid UTF-8");
	case json_error_null_character:
	case json_error_null_byte_in_key:
		return ("U+0000 in a string");
	case json_error_numeric_overflow:
		return ("number too large");
	case json_error_premature_end_of_input:
		return ("unexpected end");
	case json_error_end_of_input_expected:
		return ("text after the value");
	case json_error_out_of_memory:
		return ("out of memory");
	case json_error_stack_overflow:
		return ("nested too deeply");
	default:
		return ("syntax error");
	}
}

static void *
pj_malloc(void *data, size_t n)
{
	(void) data;
	return (malloc(n));
}

static void
pj_free(void *data, void *p)
{
	(void) data;
	free(p);
}

static ProtobufCAllocator pj_malloc_allocator = { pj_malloc, pj_free, NULL };

hv_status
pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
    ProtobufCAllocator *alloc, const pbjson_limits *lim, ProtobufCMessage **out, char *err,
    size_t errsz)
{
	pj_ctx            c   = { .err  = err,
		             .errsz     = errsz,
		             .max_depth = PBJSON_MAX_DEPTH,
		             .max_alloc = PBJSON_MAX_ALLOC,
		             .alloc     = alloc ? alloc : &pj_malloc_allocator };
	size_t            max = PBJSON_MAX_INPUT;
	json_t           *j   = NULL;
	json_error_t      je;
	ProtobufCMessage *m  = NULL;
	hv_status         st = HV_INVALID_ARGUMENT;

	*out = NULL;
	if (err != NULL && errsz > 0) {
		err[0] = '\0';
	}
	if (lim != NULL) {
		max         = lim->pl_max_input ? lim->pl_max_input : max;
		c.max_depth = lim->pl_max_depth ? lim->pl_max_depth : c.max_depth;
		c.max_alloc = lim->pl_max_alloc ? lim->pl_max_alloc : c.max_alloc;
	}
	if (len > max) {
		pj_fail(&c, "%s: JSON text longer than %zu bytes", desc->name, max);
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	/* jansson's own message may quote the input: only its kind and position are reported. */
	if ((j = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je)) == NULL) {
		pj_fail(&c, "%s: invalid JSON (%s) at line %d column %d", desc->name,
		    json_error_kind(json_error_code(&je)), je.line, je.column);
		c.exhausted = json_error_code(&je) == json_error_out_of_memory ||
		    json_error_code(&je) == json_error_stack_overflow;
		st = c.exhausted ? HV_RESOURCE_EXHAUSTED : HV_INVALID_ARGUMENT;
		goto out;
	}
	if (!json_is_object(j)) {
		pj_fail(&c, "%s: expected a JSON object", desc->name);
		goto out;
	}
	if (dec_message(&c, desc, j, 0, &m) != 0) {
		st = c.exhausted ? HV_RESOURCE_EXHAUSTED : HV_INVALID_ARGUMENT;
		goto out;
	}
	*out = m;
	m    = NULL;
	st   = HV_OK;
out:
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, c.alloc);
	}
	json_decref(j);
	return (st);
}
