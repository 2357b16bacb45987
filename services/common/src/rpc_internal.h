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

#endif
