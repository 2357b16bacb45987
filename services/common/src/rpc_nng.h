/*
 * rpc_nng.h - the RPC server's nng transport (rpc_nng.c), private to libhaven: above the
 * dispatch, which it feeds; the server's lifecycle (rpc_server.c) opens, starts and closes it.
 */
#ifndef HAVEN_RPC_NNG_H
#define HAVEN_RPC_NNG_H

#include <stdint.h>

#include "rpc_dispatch.h"

hv_status rpc_nng_open(rpc_server *srv);
hv_status rpc_nng_listen(rpc_server *srv, const char *url);
hv_status rpc_nng_start(rpc_server *srv);
/* Stops the ipc watchdog (before the workers stop). */
void rpc_nng_stop_watch(rpc_server *srv);
/* Closes the socket and listeners and frees the transport; after the workers stopped. */
void rpc_nng_close(rpc_server *srv);
uint64_t rpc_nng_ipc_restarts(rpc_server *srv);

#endif
