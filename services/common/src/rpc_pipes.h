/*
 * rpc_pipes.h - the server socket's live connections and the listener each came through
 * (rpc_pipes.c), private to libhaven: kept by the nng transport's pipe notifications
 * (rpc_nng.c) so that a listener's connections can be closed one by one before the listener
 * itself is (rpc_nng.c, listener_close_gently says why).
 */
#ifndef HAVEN_RPC_PIPES_H
#define HAVEN_RPC_PIPES_H

#include <pthread.h>
#include <stddef.h>

typedef struct rpc_pipe_entry {
	int pe_pipe;     /* nng pipe id */
	int pe_listener; /* nng listener id, or -1 (a dialer's or an unknown pipe) */
} rpc_pipe_entry;

typedef struct rpc_pipes {
	pthread_mutex_t ps_mtx;
	rpc_pipe_entry *ps_v;
	size_t          ps_n;
	size_t          ps_cap;
} rpc_pipes;

void rpc_pipes_init(rpc_pipes *ps);
void rpc_pipes_fini(rpc_pipes *ps);
/* Records a pipe; a pipe that cannot be recorded (out of memory) is only not closed gently. */
void rpc_pipes_add(rpc_pipes *ps, int pipe, int listener);
void rpc_pipes_remove(rpc_pipes *ps, int pipe);
/* The ids of the pipes that came through listener, in a new array (*out, free it) of *n; 0,
 * or ENOMEM. */
int rpc_pipes_of(rpc_pipes *ps, int listener, int **out, size_t *n);

#endif
