/*
 * fuzz_pbjson.c - the proto3 JSON converter (pbjson.c), the decoder of the Connect API's JSON
 * bodies: the first byte of the input picks a request type of the node's methods
 * (fuzz_request_type), the rest is the JSON text, read with pbjson_decode. A message that
 * decodes must encode, its encoding must decode again, and encode to the same text (the
 * canonical form is a fixed point); it must also pack as binary protobuf.
 */
#include "fuzz_util.h"

#include "haven/log.h"
#include "haven/pbjson.h"

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
	const ProtobufCMessageDescriptor *d;
	ProtobufCMessage                 *m = NULL, *again = NULL;
	char                             *text = NULL, *text2 = NULL;
	char                              err[PBJSON_ERR_SIZE] = "";
	uint8_t                          *bin;
	hv_status                         st;

	if (size < 1) {
		return (0);
	}
	d  = fuzz_request_type(data[0]);
	st = pbjson_decode(d, (const char *) data + 1, size - 1, NULL, NULL, &m, err, sizeof(err));
	if (st != HV_OK) {
		if (m != NULL || err[0] == '\0') {
			abort(); /* a refusal leaves nothing and names the problem */
		}
		return (0);
	}
	if (pbjson_encode(m, NULL, &text, NULL, err, sizeof(err)) != HV_OK ||
	    pbjson_decode(d, text, strlen(text), NULL, NULL, &again, err, sizeof(err)) != HV_OK ||
	    pbjson_encode(again, NULL, &text2, NULL, err, sizeof(err)) != HV_OK ||
	    strcmp(text, text2) != 0) {
		abort(); /* what decodes round-trips */
	}
	if ((bin = malloc(protobuf_c_message_get_packed_size(m) + 1)) == NULL) {
		abort();
	}
	(void) protobuf_c_message_pack(m, bin);
	free(bin);
	free(text);
	free(text2);
	protobuf_c_message_free_unpacked(m, NULL);
	protobuf_c_message_free_unpacked(again, NULL);
	return (0);
}
