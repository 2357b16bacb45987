/*
 * pbjson_internal.h - what pbjson.c (encoding, and the parts both directions use) and
 * pbjson_decode.c (decoding) share; private to libhaven.
 */
#ifndef HAVEN_PBJSON_INTERNAL_H
#define HAVEN_PBJSON_INTERNAL_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#define JSON_NAME_MAX 128

typedef struct pj_ctx {
	char               *err;
	size_t              errsz;
	unsigned            max_depth;
	size_t              max_alloc;
	size_t              allocated;
	ProtobufCAllocator *alloc;
	int                 exhausted; /* the failure is a limit or memory, not the input's form */
} pj_ctx;

/* Writes the first (innermost, the precise) failure message to c->err; later ones are dropped. */
void pj_fail(pj_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A failure of a limit or of memory: HV_RESOURCE_EXHAUSTED rather than HV_INVALID_ARGUMENT. */
#define pj_exhausted(c, ...) ((c)->exhausted = 1, pj_fail((c), __VA_ARGS__))

/* Field f of message type d: "haven.test.v1.Inner.label". */
#define FNAME(d, f) (d)->name, (f)->name

/* protoc's default JSON name of field name: underscores dropped, the letter after one
 * upper-cased, into buf (sz bytes, cut short to fit). */
void pj_json_name(const char *name, char *buf, size_t sz);

#endif
