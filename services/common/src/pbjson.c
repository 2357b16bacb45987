/*
 * pbjson.c - proto3 canonical JSON through protobuf-c's descriptors and jansson (see
 * pbjson.h). Encoding (here) builds a jansson tree from the message and dumps it; decoding
 * (pbjson_decode.c) parses the text with jansson and walks the tree into a message made from
 * the caller's allocator.
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
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
pj_fail(pj_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err == NULL || c->errsz == 0 || c->err[0] != '\0') {
		return; /* the first (innermost) message is the precise one */
	}
	va_start(ap, fmt);
	vsnprintf(c->err, c->errsz, fmt, ap);
	va_end(ap);
}

/* protoc's default JSON name: underscores dropped, the letter after one upper-cased. */
void
pj_json_name(const char *name, char *buf, size_t sz)
{
	size_t o  = 0;
	int    up = 0;

	for (const char *p = name; *p != '\0' && o + 1 < sz; p++) {
		if (*p == '_') {
			up = 1;
			continue;
		}
		buf[o++] = up ? (char) toupper((unsigned char) *p) : *p;
		up       = 0;
	}
	buf[o] = '\0';
}

/* ---- encoding ------------------------------------------------------------------------ */

/* Whether a singular field is written: set oneof member, has_ flag, or not the default. */
static int
field_present(const ProtobufCFieldDescriptor *f, const void *msg)
{
	const char *m = (const char *) msg + f->offset;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		return (*(const uint32_t *) ((const char *) msg + f->quantifier_offset) == f->id);
	}
	if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
		return (*(void *const *) m != NULL);
	}
	if (f->type == PROTOBUF_C_TYPE_STRING) {
		const char *s = *(const char *const *) m;
		return (s != NULL && (f->label == PROTOBUF_C_LABEL_OPTIONAL || s[0] != '\0'));
	}
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
		return (*(const protobuf_c_boolean *) ((const char *) msg + f->quantifier_offset));
	}
	/* As protobuf-c's pack decides: -0.0 equals 0 and is not written. */
	if (f->type == PROTOBUF_C_TYPE_FLOAT) {
		return (*(const float *) m != 0);
	}
	if (f->type == PROTOBUF_C_TYPE_DOUBLE) {
		return (*(const double *) m != 0);
	}
	switch (pbfield_size(f->type)) {
	case 8: {
		uint64_t v;
		memcpy(&v, m, 8);
		return (v != 0);
	}
	case sizeof(ProtobufCBinaryData):
		return (((const ProtobufCBinaryData *) m)->len != 0);
	default: {
		uint32_t v;
		memcpy(&v, m, 4);
		return (v != 0);
	}
	}
}

/* The float as the double of its shortest decimal form, so 0.1f is written 0.1. */
static double
float_shortest(float v)
{
	char buf[32];

	for (int p = 6; p <= 9; p++) {
		snprintf(buf, sizeof(buf), "%.*g", p, (double) v);
		if (strtof(buf, NULL) == v) {
			break;
		}
	}
	return (strtod(buf, NULL));
}

static json_t *
enc_double(double d)
{
	if (isnan(d)) {
		return (json_string("NaN"));
	}
	if (isinf(d)) {
		return (json_string(d > 0 ? "Infinity" : "-Infinity"));
	}
	return (json_real(d));
}

static json_t *
enc_bytes(pj_ctx *c, const ProtobufCBinaryData *b)
{
	size_t  n   = crypto_b64url_len(b->len);
	char   *buf = NULL;
	json_t *j   = NULL;

	if (n == SIZE_MAX || (buf = malloc(n + 4)) == NULL) {
		goto out;
	}
	if (crypto_b64url_encode(buf, n + 1, b->data, b->len) != HV_OK) {
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		buf[i] = buf[i] == '-' ? '+' : buf[i] == '_' ? '/' : buf[i];
	}
	while (n % 4 != 0) {
		buf[n++] = '=';
	}
	j = json_stringn(buf, n);
out:
	free(buf);
	return (j);
}

static json_t *enc_message(pj_ctx *c, const ProtobufCMessage *m, unsigned depth);

/* One value of field f stored at p; NULL with the error set on failure. */
static json_t *
enc_value(pj_ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
    const void *p, unsigned depth)
{
	char    buf[32];
	json_t *j = NULL;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		j = json_integer(*(const int32_t *) p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		j = json_integer(*(const uint32_t *) p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *) p);
		j = json_string(buf);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *) p);
		j = json_string(buf);
		break;
	case PROTOBUF_C_TYPE_FLOAT: {
		float v = *(const float *) p;
		j       = isfinite(v) ? json_real(float_shortest(v)) : enc_double(v);
		break;
	}
	case PROTOBUF_C_TYPE_DOUBLE:
		j = enc_double(*(const double *) p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		j = json_boolean(*(const protobuf_c_boolean *) p);
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		int                       v = *(const int *) p;
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		j = ev != NULL ? json_string(ev->name) : json_integer(v);
		break;
	}
	case PROTOBUF_C_TYPE_STRING:
		j = json_string(*(const char *const *) p);
		if (j == NULL) {
			pj_fail(c, "%s.%s: not valid UTF-8", FNAME(d, f));
			return (NULL);
		}
		break;
	case PROTOBUF_C_TYPE_BYTES:
		j = enc_bytes(c, p);
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		return (enc_message(c, *(const ProtobufCMessage *const *) p, depth + 1));
	}
	if (j == NULL) {
		pj_exhausted(c, "%s.%s: out of memory", FNAME(d, f));
	}
	return (j);
}

static json_t *
enc_field(pj_ctx *c, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, unsigned depth)
{
	const char *member = (const char *) m + f->offset;
	json_t     *arr;

	if (f->label != PROTOBUF_C_LABEL_REPEATED) {
		return (enc_value(c, m->descriptor, f, member, depth));
	}
	size_t n = pbfield_count(m, f);
	if ((arr = json_array()) == NULL) {
		pj_exhausted(c, "%s.%s: out of memory", FNAME(m->descriptor, f));
		return (NULL);
	}
	for (size_t i = 0; i < n; i++) {
		json_t *v = enc_value(c, m->descriptor, f, pbfield_at(m, f, i), depth);
		if (v == NULL || json_array_append_new(arr, v) != 0) {
			json_decref(arr);
			return (NULL);
		}
	}
	return (arr);
}

static json_t *
enc_message(pj_ctx *c, const ProtobufCMessage *m, unsigned depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	json_t                           *obj;
	char                              name[JSON_NAME_MAX];

	if (depth > c->max_depth) {
		pj_exhausted(c, "%s: nested deeper than %u messages", d->name, c->max_depth);
		return (NULL);
	}
	if ((obj = json_object()) == NULL) {
		pj_exhausted(c, "%s: out of memory", d->name);
		return (NULL);
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->label == PROTOBUF_C_LABEL_REPEATED ? pbfield_count(m, f) == 0
		                                          : !field_present(f, m)) {
			continue;
		}
		json_t *v = enc_field(c, m, f, depth);
		pj_json_name(f->name, name, sizeof(name));
		if (v == NULL || json_object_set_new(obj, name, v) != 0) {
			json_decref(obj);
			return (NULL);
		}
	}
	return (obj);
}

hv_status
pbjson_encode(const ProtobufCMessage *msg, const pbjson_limits *lim, char **out, size_t *outlen,
    char *err, size_t errsz)
{
	pj_ctx    c  = { .err = err, .errsz = errsz, .max_depth = PBJSON_MAX_DEPTH };
	json_t   *j  = NULL;
	hv_status st = HV_INVALID_ARGUMENT;

	*out = NULL;
	if (err != NULL && errsz > 0) {
		err[0] = '\0';
	}
	if (lim != NULL && lim->pl_max_depth != 0) {
		c.max_depth = lim->pl_max_depth;
	}
	if ((j = enc_message(&c, msg, 0)) == NULL) {
		st = c.exhausted ? HV_RESOURCE_EXHAUSTED : HV_INVALID_ARGUMENT;
		goto out;
	}
	if ((*out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
		pj_exhausted(&c, "%s: out of memory", msg->descriptor->name);
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	if (outlen != NULL) {
		*outlen = strlen(*out);
	}
	st = HV_OK;
out:
	json_decref(j);
	return (st);
}
