/*
 * rpc_nng.h - the RPC server's nng transport (rpc_nng.c), private to libhaven: above the
 * dispatch, which it feeds; the server's lifecycle (rpc_server.c) opens, starts and closes it.
 */
#ifndef HAVEN_RPC_NNG_H
#define HAVEN_RPC_NNG_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc_dispatch.h"

hv_status rpc_nng_open(rpc_server *srv);
hv_status rpc_nng_listen(rpc_server *srv, const char *url);
hv_status rpc_nng_start(rpc_server *srv);
/* Stops the listener watchdog (before the workers stop). */
void rpc_nng_stop_watch(rpc_server *srv);
/* Closes the socket and listeners and frees the transport; after the workers stopped. false
 * when libnng did not finish closing within a bound: the transport is left to finish behind
 * and still points at srv, which must then be left allocated (the process is stopping). */
bool rpc_nng_close(rpc_server *srv);
/* Times the watchdog made a listener of transport t again (rpc_server_relistens). */
uint64_t rpc_nng_relistens(rpc_server *srv, rpc_transport t);

/* ---- the listener probe (rpc_probe.c) ------------------------------------------------------ */

/* The probe's identity: a key and a self-signed client certificate made in memory, trusted by
 * this process's tls+tcp:// listeners only (rpc_probe_cert, added beside the node CA). */
typedef struct rpc_probe rpc_probe;
hv_status                rpc_probe_new(rpc_probe **out);
const char              *rpc_probe_cert(const rpc_probe *p);
void                     rpc_probe_free(rpc_probe *p);
/* One Health/Check over a new connection to url (ipc://, or tls+tcp:// with p's identity; p
 * may be NULL for ipc://), waiting at most timeout_ms for the connection and again for the
 * reply. HV_OK for any reply (a refusal is an answer too); DEADLINE_EXCEEDED when none came,
 * UNAVAILABLE or another status when no connection could be made. */
hv_status rpc_probe_call(rpc_probe *p, const char *url, int timeout_ms);

#endif
