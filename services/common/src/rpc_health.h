/*
 * rpc_health.h - the methods every RPC server serves, private to libhaven: Health/Check (the
 * serving state of the node and of each service) and Diagnostics/Echo. Below the dispatch:
 * the server holds an rpc_health and registers the methods with it as their svc.
 */
#ifndef HAVEN_RPC_HEALTH_H
#define HAVEN_RPC_HEALTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "haven/rpc.h"

#define RPC_MAX_HEALTH 32

typedef struct rpc_health_entry {
	char h_name[128];
	bool h_serving;
} rpc_health_entry;

/* The serving state Health/Check answers from; its own lock, taken briefly. */
typedef struct rpc_health {
	pthread_mutex_t  h_mtx;
	rpc_health_entry h_entries[RPC_MAX_HEALTH];
	size_t           h_n;
	bool             h_node_serving; /* service "" */
	bool             h_closing;      /* the server is closing: nothing is SERVING */
} rpc_health;

void rpc_health_init(rpc_health *h);
void rpc_health_destroy(rpc_health *h);

/* Marks a service (full name, "" or NULL for the node) serving or not; more than
 * RPC_MAX_HEALTH services, or a name of 128 bytes or more, are not kept. */
void rpc_health_set(rpc_health *h, const char *service, bool serving);

/* From now on Health/Check answers NOT_SERVING for everything. */
void rpc_health_closing(rpc_health *h);

/* Copies the services' states into out (RPC_MAX_HEALTH entries); returns how many. */
size_t rpc_health_snapshot(rpc_health *h, rpc_health_entry *out);

/* Health/Check and Diagnostics/Echo; register with svc = the server's rpc_health. */
extern const rpc_method_impl rpc_health_methods[1];
extern const rpc_method_impl rpc_diag_methods[1];

#endif
