/*
 * json_bench.c - the proto3 JSON converter (pbjson) on a typical Referral, against protobuf-c's
 * binary pack and unpack of the same message, from one thread.
 *
 *   haven-bench json [N]       N rounds (default 20000) of each; prints
 *       json json_bytes=J proto_bytes=P encode_per_s=A decode_per_s=B pack_per_s=C
 *       unpack_per_s=D
 *
 * The Referral has two needs (with languages), four events, regions and every id filled, as a
 * GetReferral answer carries it (no sealed fields). Decoding allocates with malloc and frees
 * each message, as unpack does.
 */
#include "bench.h"

#include "haven/pbjson.h"
#include "haven/referral/v1/referral.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JSON_BENCH_DEFAULT_N 20000
#define JSON_BENCH_MAX_N     100000000L

static const char referral_json[] =
    "{\"id\":\"r-7f3a9c2e4b1d6a08\",\"subject\":\"s-0c4e8a1f6b3d9e27\","
    "\"referrerOrg\":\"ngo.amsterdam.north\",\"urgency\":\"URGENT\","
    "\"exploitation\":\"LABOUR\",\"needs\":[{\"index\":0,\"type\":\"SHELTER\","
    "\"population\":\"WOMEN\",\"languages\":[\"nl\",\"en\",\"ro\"],"
    "\"accessibility\":[\"wheelchair\"],\"state\":\"OFFERED\",\"offerId\":\"o-5d2c9e1a7b\","
    "\"serviceId\":\"svc.shelter.utrecht.3\",\"waitingSinceMs\":\"1764979200999\","
    "\"providerOrg\":\"shelter.utrecht\"},{\"index\":1,\"type\":\"LEGAL_AID\","
    "\"population\":\"WOMEN\",\"languages\":[\"en\"],\"state\":\"WAITING\","
    "\"waitingSinceMs\":\"1764979201200\",\"declinedServices\":[\"svc.legal.a\"]}],"
    "\"excludedRegions\":[\"nl.north-holland\"],\"preferredRegions\":[\"nl.utrecht\","
    "\"nl.gelderland\"],\"note\":\"\",\"homeRegion\":\"nl.north-holland\","
    "\"createdMs\":\"1764979200123\",\"version\":\"7\",\"events\":["
    "{\"timeMs\":\"1764979200123\",\"actorOrg\":\"ngo.amsterdam.north\",\"to\":\"WAITING\","
    "\"reason\":\"created\"},{\"timeMs\":\"1764979200999\",\"needIndex\":0,"
    "\"from\":\"WAITING\",\"to\":\"OFFERED\",\"reason\":\"routed\",\"offerId\":\"o-5d2c9e1a7b\"},"
    "{\"timeMs\":\"1764979201100\",\"actorOrg\":\"\",\"needIndex\":1,\"from\":\"WAITING\","
    "\"to\":\"OFFERED\",\"reason\":\"routed\",\"offerId\":\"o-11aa\"},{\"timeMs\":"
    "\"1764979201200\","
    "\"actorOrg\":\"legal.aid.nl\",\"needIndex\":1,\"from\":\"OFFERED\",\"to\":\"WAITING\","
    "\"reason\":\"DECLINED_NO_CAPACITY\"}],\"idempotencyKey\":\"k-2f8e\"}";

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double) ts.tv_sec + (double) ts.tv_nsec / 1e9);
}

/* N encodes and N decodes of m (whose JSON is json, n bytes); -1 when one fails. */
static int
time_json(const ProtobufCMessage *m, const char *json, size_t n, long rounds, double *enc,
    double *dec)
{
	char   err[PBJSON_ERR_SIZE];
	double t0 = now_s();

	for (long i = 0; i < rounds; i++) {
		char *out = NULL;
		if (pbjson_encode(m, NULL, &out, NULL, err, sizeof(err)) != HV_OK) {
			fprintf(stderr, "haven-bench json: %s\n", err);
			return (-1);
		}
		free(out);
	}
	double t1 = now_s();
	for (long i = 0; i < rounds; i++) {
		ProtobufCMessage *d = NULL;
		if (pbjson_decode(m->descriptor, json, n, NULL, NULL, &d, err, sizeof(err)) !=
		    HV_OK) {
			fprintf(stderr, "haven-bench json: %s\n", err);
			return (-1);
		}
		protobuf_c_message_free_unpacked(d, NULL);
	}
	double t2 = now_s();
	*enc      = (double) rounds / (t1 - t0);
	*dec      = (double) rounds / (t2 - t1);
	return (0);
}

int
bench_json(int argc, char **argv)
{
	long              rounds = JSON_BENCH_DEFAULT_N;
	ProtobufCMessage *m      = NULL;
	char             *json   = NULL, *end, err[PBJSON_ERR_SIZE];
	uint8_t          *bin    = NULL;
	size_t            jn, bn;
	double            enc, dec;
	int               rc = 1;

	if (argc > 1 ||
	    (argc == 1 &&
	        ((rounds = strtol(argv[0], &end, 10)) < 1 || rounds > JSON_BENCH_MAX_N ||
	            *end != '\0'))) {
		fprintf(stderr, "usage: haven-bench json [N]  (1..%ld)\n", JSON_BENCH_MAX_N);
		return (2);
	}
	if (pbjson_decode(&haven__referral__v1__referral__descriptor, referral_json,
	        strlen(referral_json), NULL, NULL, &m, err, sizeof(err)) != HV_OK ||
	    pbjson_encode(m, NULL, &json, &jn, err, sizeof(err)) != HV_OK) {
		fprintf(stderr, "haven-bench json: %s\n", err);
		goto out;
	}
	bn = protobuf_c_message_get_packed_size(m);
	if ((bin = malloc(bn)) == NULL) {
		goto out;
	}
	protobuf_c_message_pack(m, bin);
	if (time_json(m, json, jn, rounds, &enc, &dec) != 0) {
		goto out;
	}
	double t0 = now_s();
	for (long i = 0; i < rounds; i++) {
		protobuf_c_message_pack(m, bin);
	}
	double t1 = now_s();
	for (long i = 0; i < rounds; i++) {
		ProtobufCMessage *u = protobuf_c_message_unpack(m->descriptor, NULL, bn, bin);
		if (u == NULL) {
			fprintf(stderr, "haven-bench json: unpack failed\n");
			goto out;
		}
		protobuf_c_message_free_unpacked(u, NULL);
	}
	double t2 = now_s();
	printf("json json_bytes=%zu proto_bytes=%zu encode_per_s=%.0f decode_per_s=%.0f "
	       "pack_per_s=%.0f unpack_per_s=%.0f\n",
	    jn, bn, enc, dec, (double) rounds / (t1 - t0), (double) rounds / (t2 - t1));
	rc = 0;
out:
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
	free(json);
	free(bin);
	return (rc);
}
