/*
 * pbfield.h - the layout of a protobuf-c message's fields, for code that walks any message by
 * its descriptor: the JSON converter (pbjson), the CLI's JSON output and the fuzz seeds. One
 * answer to "how many bytes does one value of this type take, and how many values does a
 * repeated field hold", instead of a switch in each of them.
 *
 * protobuf-c keeps a singular field's value at field->offset in the message, and a repeated
 * field as a count (size_t at field->quantifier_offset) and a pointer (at field->offset) to an
 * array of values, each pbfield_size(field->type) bytes. Nothing here allocates; safe from any
 * thread.
 */
#ifndef HAVEN_PBFIELD_H
#define HAVEN_PBFIELD_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The bytes one value of type t takes in a message or in a repeated field's array: 8 for the
 * 64-bit integers and double, a pointer for strings and messages, a ProtobufCBinaryData for
 * bytes, 4 for the others (32-bit integers, float, enum, protobuf_c_boolean). */
size_t pbfield_size(ProtobufCType t);

/* The number of values repeated field f of message m holds (f belongs to m's descriptor). */
size_t pbfield_count(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);

/* Value i (below pbfield_count) of repeated field f of message m. */
const void *pbfield_at(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, size_t i);

/* Reads the varint at *p (before end) into *v and moves *p past it: the wire's own reading,
 * for code that walks encoded bytes without unpacking them (the RPC envelope readers). False
 * for a varint running past end or over 10 bytes. */
bool pbfield_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

#endif
