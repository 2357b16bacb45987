/*
 * rpc_boundary.c - what a decoded message may carry into a handler (see rpc.h, "Decoding is
 * strict at the boundary"): strings without NUL bytes, no field numbered 0, no unknown
 * fields at any depth. Used by the dispatch (rpc_dispatch.c) on every request and reply.
 */
#include "haven/pbfield.h"
#include "haven/rpc.h"

#include "rpc_boundary.h"

#include <stdio.h>
#include <string.h>

/* ---- the boundary: what a decoded message may carry ------------------------------------- */

/*
 * protobuf-c keeps the fields a message's descriptor does not define (unknown fields) as opaque
 * bytes, packs them again with the message, and decodes a field numbered 0 (invalid protobuf)
 * as one of them, which it then refuses to decode after packing it. Nothing in haven reads
 * them, so the server drops them from every request (envelope and payload, at every depth)
 * before a handler runs, and from every reply before it is packed: a caller cannot smuggle
 * bytes past the handlers' checks into the store and out to other organisations. A field
 * numbered 0 is refused. Strings decode into C strings, which end at the first NUL: a string
 * field holding a NUL byte (a method name "A\0B" read as "A") is refused too.
 */

/* Drops the unknown fields of m and of every message below it (singular, repeated and oneof
 * members), freeing them with a when not NULL (the allocator m was decoded with). Sets *field0
 * and *where (the message's type) when one of them was numbered 0. Returns false, with *where
 * set, when messages are nested deeper than PB_DEPTH_MAX (those below are left as they are). */
bool
rpc_pb_drop_unknown(ProtobufCMessage *m, ProtobufCAllocator *a, unsigned depth, bool *field0,
    const char **where)
{
	const ProtobufCMessageDescriptor *d    = m->descriptor;
	char                             *base = (char *) m;

	if (depth > PB_DEPTH_MAX) {
		*where = d->name;
		return (false);
	}
	if (m->n_unknown_fields > 0) {
		for (unsigned i = 0; i < m->n_unknown_fields; i++) {
			if (m->unknown_fields[i].tag == 0) {
				*field0 = true;
				*where  = d->name;
			}
			if (a != NULL) {
				a->free(a->allocator_data, m->unknown_fields[i].data);
			}
		}
		if (a != NULL) {
			a->free(a->allocator_data, m->unknown_fields);
		}
		m->unknown_fields   = NULL;
		m->n_unknown_fields = 0;
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
			continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t             n = *(const size_t *) (base + f->quantifier_offset);
			ProtobufCMessage **v = *(ProtobufCMessage ***) (base + f->offset);
			for (size_t k = 0; k < n; k++) {
				if (!rpc_pb_drop_unknown(v[k], a, depth + 1, field0, where)) {
					return (false);
				}
			}
		} else if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0 ||
		    *(const uint32_t *) (base + f->quantifier_offset) == f->id) {
			ProtobufCMessage *v = *(ProtobufCMessage **) (base + f->offset);
			if (v != NULL && !rpc_pb_drop_unknown(v, a, depth + 1, field0, where)) {
				return (false);
			}
		}
	}
	return (true);
}

/* Whether no string field of the message of type d encoded in [p, end), nor of a message
 * below it, holds a NUL byte. The bytes decoded already (protobuf-c), so this only measures.
 * On false *bad names the string field (NULL: nesting over PB_DEPTH_MAX or bad bytes). */
static bool
pb_strings_ok(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
    unsigned depth, const ProtobufCFieldDescriptor **bad)
{
	*bad = NULL;
	if (depth > PB_DEPTH_MAX) {
		return (false);
	}
	while (p < end) {
		const ProtobufCFieldDescriptor *f;
		uint64_t                        key, len;

		if (!pbfield_varint(&p, end, &key)) {
			return (false);
		}
		switch (key & 7) {
		case 0: /* varint */
			if (!pbfield_varint(&p, end, &len)) {
				return (false);
			}
			continue;
		case 1: /* 64-bit */
			len = 8;
			break;
		case 5: /* 32-bit */
			len = 4;
			break;
		case 2: /* length-delimited */
			if (!pbfield_varint(&p, end, &len)) {
				return (false);
			}
			break;
		default: /* groups: protobuf-c does not decode them */
			return (false);
		}
		if (len > (uint64_t) (end - p)) {
			return (false);
		}
		f = (key & 7) != 2 || (key >> 3) > UINT32_MAX
		    ? NULL
		    : protobuf_c_message_descriptor_get_field(d, (unsigned) (key >> 3));
		if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, len) != NULL) {
			*bad = f;
			return (false);
		}
		if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    !pb_strings_ok(f->descriptor, p, p + len, depth + 1, bad)) {
			return (false);
		}
		p += len;
	}
	return (true);
}

/* Checks and cleans a message call decoded from [data, data + len): no NUL in a string, no
 * field numbered 0; its unknown fields dropped. On failure the call's error is set. */
hv_status
rpc_boundary_check(rpc_call *call, ProtobufCMessage *m, const uint8_t *data, size_t len)
{
	const ProtobufCFieldDescriptor *bad;
	const char                     *where  = m->descriptor->name;
	bool                            field0 = false;

	if (len > 0 && !pb_strings_ok(m->descriptor, data, data + len, 0, &bad)) {
		if (bad != NULL) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "string field %s of %s holds a NUL byte", bad->name, where));
		}
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "%s is nested deeper than %d messages or uses groups", where, PB_DEPTH_MAX));
	}
	if (!rpc_pb_drop_unknown(m, &call->c_arena.a_pb, 0, &field0, &where)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "%s is nested deeper than %d messages", where, PB_DEPTH_MAX));
	}
	if (field0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "%s holds a field numbered 0, which is not valid protobuf", where));
	}
	return (HV_OK);
}
