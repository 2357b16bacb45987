/*
 * pbjson_tool - the JSON converter as a filter, for pbjson_crosscheck.py (not installed).
 *
 *   pbjson_tool to-json TYPE    binary message on stdin -> our JSON on stdout
 *   pbjson_tool from-json TYPE  JSON on stdin -> protobuf-c's binary of what we decoded
 *   pbjson_tool repack TYPE     binary on stdin -> protobuf-c's unpack then pack of it
 *
 * TYPE is a full message name (haven.testing.v1.AllTypes, haven.referral.v1.Referral). Exit 0,
 * or 1 with the converter's message on stderr; 2 for bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "haven/pbjson.h"
#include "haven/referral/v1/referral.pb-c.h"
#include "haven/testing/v1/pbjson.pb-c.h"

static const ProtobufCMessageDescriptor *const types[] = {
	&haven__testing__v1__all_types__descriptor,
	&haven__testing__v1__inner__descriptor,
	&haven__referral__v1__referral__descriptor,
};

static unsigned char *
read_all(size_t *len)
{
	size_t         cap = 4096, n = 0;
	unsigned char *buf = malloc(cap);

	while (buf != NULL) {
		size_t r = fread(buf + n, 1, cap - n, stdin);
		n += r;
		if (r == 0) {
			break;
		}
		if (n == cap) {
			unsigned char *nb = realloc(buf, cap * 2);
			if (nb == NULL) {
				free(buf);
				return (NULL);
			}
			buf = nb;
			cap *= 2;
		}
	}
	*len = n;
	return (buf);
}

int
main(int argc, char **argv)
{
	const ProtobufCMessageDescriptor *d = NULL;
	ProtobufCMessage                 *m = NULL;
	unsigned char                    *in, *bin = NULL;
	char                             *json = NULL, err[PBJSON_ERR_SIZE];
	size_t                            len, n;
	int                               rc = 1;

	for (size_t i = 0; argc == 3 && i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(argv[2], types[i]->name) == 0) {
			d = types[i];
		}
	}
	if (d == NULL ||
	    (strcmp(argv[1], "to-json") != 0 && strcmp(argv[1], "from-json") != 0 &&
	        strcmp(argv[1], "repack") != 0)) {
		fprintf(stderr, "usage: pbjson_tool to-json|from-json|repack TYPE\n");
		return (2);
	}
	if ((in = read_all(&len)) == NULL) {
		fprintf(stderr, "pbjson_tool: out of memory\n");
		return (1);
	}
	if (strcmp(argv[1], "from-json") != 0) {
		if ((m = protobuf_c_message_unpack(d, NULL, len, in)) == NULL) {
			fprintf(stderr, "pbjson_tool: protobuf-c cannot unpack the input\n");
			goto out;
		}
	}
	if (strcmp(argv[1], "to-json") == 0) {
		if (pbjson_encode(m, NULL, &json, &n, err, sizeof(err)) != HV_OK) {
			fprintf(stderr, "pbjson_tool: %s\n", err);
			goto out;
		}
		fwrite(json, 1, n, stdout);
	} else {
		if (m == NULL &&
		    pbjson_decode(d, (const char *) in, len, NULL, NULL, &m, err, sizeof(err)) !=
		        HV_OK) {
			fprintf(stderr, "pbjson_tool: %s\n", err);
			goto out;
		}
		n = protobuf_c_message_get_packed_size(m);
		if ((bin = malloc(n + 1)) == NULL) {
			goto out;
		}
		protobuf_c_message_pack(m, bin);
		fwrite(bin, 1, n, stdout);
	}
	rc = 0;
out:
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
	free(json);
	free(bin);
	free(in);
	return (rc);
}
