/*
 * pbfield.c - the layout of a protobuf-c message's fields (pbfield.h).
 */
#include "haven/pbfield.h"

#include <stdint.h>
#include <string.h>

size_t
pbfield_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return (sizeof(int64_t));
	case PROTOBUF_C_TYPE_DOUBLE:
		return (sizeof(double));
	case PROTOBUF_C_TYPE_BOOL:
		return (sizeof(protobuf_c_boolean));
	case PROTOBUF_C_TYPE_STRING:
		return (sizeof(char *));
	case PROTOBUF_C_TYPE_MESSAGE:
		return (sizeof(ProtobufCMessage *));
	case PROTOBUF_C_TYPE_BYTES:
		return (sizeof(ProtobufCBinaryData));
	case PROTOBUF_C_TYPE_FLOAT:
		return (sizeof(float));
	default: /* the 32-bit integers and enums */
		return (sizeof(int32_t));
	}
}

size_t
pbfield_count(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	size_t n;

	memcpy(&n, (const char *) m + f->quantifier_offset, sizeof(n));
	return (n);
}

const void *
pbfield_at(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, size_t i)
{
	const char *arr;

	memcpy(&arr, (const char *) m + f->offset, sizeof(arr));
	return (arr + i * pbfield_size(f->type));
}

bool
pbfield_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		x |= (uint64_t) (b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*v = x;
			return (true);
		}
	}
	return (false);
}
