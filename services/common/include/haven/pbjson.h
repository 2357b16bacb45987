/*
 * pbjson.h - any protobuf-c message to proto3 canonical JSON and back.
 *
 * One generic converter, driven by protobuf-c's descriptors (no per-message code), for the
 * Connect API's application/json bodies. It follows the proto3 JSON mapping
 * (https://protobuf.dev/programming-guides/proto3/#json):
 *   - keys are the lowerCamelCase JSON names on output; both the JSON name and the proto field
 *     name are accepted on input (the same field twice, under either name, is refused);
 *   - fields at their default value are omitted on output (proto3 implicit presence); a oneof
 *     member that is set is always written; JSON null on input means "the default";
 *   - int64, uint64, sint64, fixed64 and sfixed64 are JSON strings on output; numbers or
 *     decimal strings on input (a uint64 above 2^63-1 only as a string: jansson reads no
 *     larger JSON number); 32-bit integers are numbers (strings accepted on input); an
 *     integral JSON number such as 1.0 is accepted for any integer; out of range is refused;
 *   - float and double are numbers, with "NaN", "Infinity" and "-Infinity" as strings; float
 *     is written with the fewest digits that give back the same float;
 *   - bytes are standard base64 with padding on output; standard or URL alphabet, padded or
 *     not, on input;
 *   - enums are written by value name; a number that has no name is written as the number (it
 *     round-trips); names or numbers are accepted on input, unknown names are refused;
 *   - strings must be valid UTF-8 both ways and may not contain U+0000 (protobuf-c strings
 *     end at a NUL);
 *   - fields unknown to the descriptor that protobuf-c kept from a binary decode are not
 *     written (JSON has no place for them).
 * An unknown JSON key is refused (HV_INVALID_ARGUMENT), as Connect servers do by default: a
 * misspelt field would otherwise be silently dropped.
 *
 * Not supported, because haven's protos have none and protobuf-c 1.4 cannot express them in
 * its descriptors: map fields (compiled as repeated *Entry messages, written as an array), a
 * `json_name` option (protobuf-c drops it; the default name is used), proto3 `optional`
 * (protoc-c 1.4 refuses it), proto2 extensions and the well-known types
 * (google.protobuf.Timestamp and friends are written as ordinary messages).
 * pbjson_crosscheck fails when a haven proto gains a map, a json_name or an optional field.
 *
 * Error messages name the message type and the field and say what is wrong; they never repeat
 * a value from the input (a value may be personal data); an unknown key is named only when it
 * is a short identifier. Bad JSON text (also: a duplicate key, a lone surrogate, U+0000) is
 * reported by its kind, line and column only.
 *
 * Where python3-protobuf 3.21 (pbjson_crosscheck's reference) is more lenient, this refuses:
 * a JSON array for a message, one field under both its names, base64 with characters outside
 * both alphabets or non-zero unused bits.
 */
#ifndef HAVEN_PBJSON_H
#define HAVEN_PBJSON_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "haven/status.h"

#define PBJSON_MAX_INPUT (1u << 20)  /* default cap on the JSON text decode accepts */
#define PBJSON_MAX_DEPTH 32          /* default cap on nested messages, both ways */
#define PBJSON_MAX_ALLOC (16u << 20) /* default cap on what one decode allocates */
#define PBJSON_ERR_SIZE  160         /* a buffer this size holds any error message */

/* Caps on one call; a field at 0 takes the default above. */
typedef struct pbjson_limits {
	size_t pl_max_input;   /* bytes of JSON text (decode); jansson's tree of it, freed before
	                        * decode returns, takes some tens of bytes per JSON value besides */
	unsigned pl_max_depth; /* nested message levels below the top one */
	size_t   pl_max_alloc; /* bytes decode may allocate for the message (besides jansson) */
} pbjson_limits;

/*
 * Writes msg as compact canonical JSON. On HV_OK *out is a NUL-terminated string the caller
 * frees with free(), *outlen (if not NULL) its length. On failure *out is NULL, err (if not
 * NULL) holds a message: HV_INVALID_ARGUMENT for a message that has no JSON form (a string
 * that is not UTF-8, nesting deeper than the limit), HV_RESOURCE_EXHAUSTED when memory runs
 * out. lim may be NULL (the defaults).
 */
hv_status pbjson_encode(const ProtobufCMessage *msg, const pbjson_limits *lim, char **out,
    size_t *outlen, char *err, size_t errsz);

/*
 * Reads the JSON text json[0..len) as a message of type desc. Everything of the message
 * (the message, its strings, bytes, arrays and sub-messages) is allocated from alloc, or with
 * malloc when alloc is NULL; on HV_OK the caller owns *out and releases it with
 * protobuf_c_message_free_unpacked(*out, alloc) (nothing to do for an arena that is reset as
 * a whole). On failure *out is NULL, nothing is left allocated from alloc but what an arena
 * keeps until its reset, and err (if not NULL) holds a message naming the problem:
 * HV_INVALID_ARGUMENT for bad JSON, a value of the wrong type or range, an unknown key, two
 * members of one oneof; HV_RESOURCE_EXHAUSTED for text, nesting or allocation over the limits
 * or when alloc fails. json need not be NUL-terminated.
 */
hv_status pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
    ProtobufCAllocator *alloc, const pbjson_limits *lim, ProtobufCMessage **out, char *err,
    size_t errsz);

#endif
