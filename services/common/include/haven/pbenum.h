/*
 * pbenum.h - protobuf-c enums as haven writes them: the one mapping between an enum value and
 * its name on the command line, in receipts, metric labels and error messages, for the
 * services and the CLI alike.
 *
 * A value's name is its proto name in lower case with '-' for '_' ("LEGAL_AID" ->
 * "legal-aid"), optionally without a prefix the enum repeats in every value
 * ("PURPOSE_SHARE_WITH_PROVIDER" with prefix "PURPOSE_" -> "share-with-provider"). The zero
 * value (XXX_UNSPECIFIED, proto3's "not set") is never valid and never parsed.
 *
 * Nothing here allocates; every function takes the generated descriptor
 * (&haven__capacity__v1__role__descriptor) and is safe from any thread.
 */
#ifndef HAVEN_PBENUM_H
#define HAVEN_PBENUM_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* Room for any name pbenum_name writes, including the NUL. */
#define PBENUM_NAME_MAX 48

/* Whether v is a value of the enum other than zero. protobuf-c keeps the unknown numbers of an
 * open (proto3) enum as they came on the wire, so a decoded field needs this check. */
bool pbenum_ok(const ProtobufCEnumDescriptor *d, int v);

/* Writes v's name (above) to buf (bufsz bytes, cut short to fit) and returns buf; for a number
 * that is not a value of the enum, the number in decimal ("42"). prefix may be NULL; it is
 * removed only from names that start with it. "" when bufsz is 0. */
const char *pbenum_name(const ProtobufCEnumDescriptor *d, const char *prefix, int v, char *buf,
    size_t bufsz);

/* Finds the value whose name is s, taking '_' for '-' ("legal_aid" too): 0 and *out set, or -1
 * (out untouched) for NULL, "", the zero value or a name that is not one. */
int pbenum_parse(const ProtobufCEnumDescriptor *d, const char *prefix, const char *s, int *out);

/* Writes the names of every value but zero, ", " between them, to buf (cut short with "..."
 * when it does not fit) and returns buf: for "one of: ..." in a usage message. */
const char *pbenum_list(const ProtobufCEnumDescriptor *d, const char *prefix, char *buf,
    size_t bufsz);

#endif
