/*
 * connect_client.h - a small Connect protocol client over libcurl, for the tests and
 * haven-bench http: one keep-alive connection per client, one thread at a time per client.
 *
 * Requests are proto3 JSON (pbjson) or binary (application/proto); the answer is decoded into
 * a message of the method's output type, or its Connect error ({"code", "message"}) turned
 * back into an hv_status and its message.
 */
#ifndef HAVEN_CONNECT_CLIENT_H
#define HAVEN_CONNECT_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "haven/status.h"

typedef struct cc_client cc_client;

/* base: "http://127.0.0.1:8080" or "https://localhost:8443"; ca_file: the CA that signed an
 * HTTPS server's certificate (NULL: the system's). */
hv_status cc_open(cc_client **out, const char *base, const char *ca_file);
void      cc_close(cc_client *c);

/* Calls method ("haven.health.v1.Health/Check") with req as JSON (json) or binary. On HV_OK
 * *reply is the caller's (protobuf_c_message_free_unpacked(*reply, NULL)); otherwise *reply
 * is NULL and err (errsz bytes) holds the server's message. token: a bearer token or NULL;
 * idempotency_key: NULL for none; timeout_ms 0: 10000. *http_status (may be NULL) gets the
 * HTTP status (0 when no answer came). */
hv_status cc_call(cc_client *c, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, const char *token,
    bool json, const char *idempotency_key, uint32_t timeout_ms, long *http_status, char *err,
    size_t errsz);

/* HAVEN_CONNECT_RECORD=DIR records the next request made on curl (a CURL *) as it is sent
 * (request line, headers, body) to DIR/<pid>-<n>.http: the seed corpus of fuzz/fuzz_http.c
 * is the traffic of the tests that call these (scripts/fuzz.sh --seeds says how).
 * cc_record_begin returns the open record (NULL when not recording); cc_record_end closes it
 * once the request was performed. */
void *cc_record_begin(void *curl);
void  cc_record_end(void *curl, void *rec);

#endif
