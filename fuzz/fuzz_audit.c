/*
 * fuzz_audit.c - the audit record reader (audit.c): the input is one stored value of the
 * audit.log table, decoded with audit_entry_decode as audit_list and audit_verify read the
 * log; an entry that decodes must hold terminated, bounded strings.
 */
#include "fuzz_util.h"

#include "haven/audit.h"
#include "haven/log.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("haven-fuzz", LOG_LEVEL_OFF);
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	audit_entry e;
	/* A copy of exactly size bytes, so that ASan sees a read past the value. */
	uint8_t *v = malloc(size > 0 ? size : 1);

	if (v == NULL) {
		return (0);
	}
	if (size > 0) {
		memcpy(v, data, size);
	}
	if (audit_entry_decode(v, size, &e) == HV_OK &&
	    (strnlen(e.org, sizeof(e.org)) == sizeof(e.org) ||
	        strnlen(e.method, sizeof(e.method)) == sizeof(e.method) ||
	        strnlen(e.subject, sizeof(e.subject)) == sizeof(e.subject) ||
	        strnlen(e.purpose, sizeof(e.purpose)) == sizeof(e.purpose))) {
		abort();
	}
	free(v);
	return (0);
}
