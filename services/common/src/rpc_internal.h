/*
 * rpc_internal.h - pieces shared by the RPC server and client, private to libhaven.
 */
#ifndef HAVEN_RPC_INTERNAL_H
#define HAVEN_RPC_INTERNAL_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "haven/rpc.h"

/* Classifies a URL by scheme. Plain tcp:// is refused (HV_PERMISSION_DENIED) unless
 * insecure_tcp; schemes other than inproc, ipc, tls+tcp and tcp are HV_INVALID_ARGUMENT. */
hv_status rpc_url_transport(const char *url, bool insecure_tcp, rpc_transport *out);

/* Loads a PEM certificate and its private key (a file closed to others) into cfg.
 * Returns an nng error number. */
int rpc_tls_own_cert(nng_tls_config *cfg, const char *cert_file, const char *key_file);

/* Runs the server's decode and checks of one received request on data (len bytes), as for a
 * call off the wire, up to the handler: the envelope with its strings, fields numbered 0,
 * unknown fields (dropped at every depth), method name, metadata and idempotency key; the
 * method (UNIMPLEMENTED when not served); the payload as that method's request type with the
 * same walk. The caller's identity, role and deadline are not checked and no handler runs.
 * Returns the status a caller would get from these checks; errmsg (errsz bytes, may be NULL)
 * gets the message. For the fuzzing harness (fuzz/fuzz_rpc.c) and tests; any thread. */
hv_status rpc_server_decode(rpc_server *srv, const void *data, size_t len, char *errmsg,
    size_t errsz);

/* protobuf's base-128 varints, for the envelopes packed by hand around a message (the
 * request's payload in rpc_client.c, the reply's in rpc_nng.c). */
static inline size_t
rpc_varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return (n);
}

/* Writes v at p (rpc_varint_size(v) bytes); returns how many. */
static inline size_t
rpc_varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t) (v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t) v;
	return (n);
}

#endif
