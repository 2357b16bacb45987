/*
 * rpc_pipes.c - a small set of (pipe, listener) pairs under a mutex. An array with removal by
 * swapping the last entry in: a node holds at most some thousands of connections, and each
 * connect or disconnect costs one scan of them at most, far below the TLS handshake's cost.
 */
#include "rpc_pipes.h"

#include <errno.h>
#include <stdlib.h>

void
rpc_pipes_init(rpc_pipes *ps)
{
	*ps = (rpc_pipes) { .ps_mtx = PTHREAD_MUTEX_INITIALIZER };
}

void
rpc_pipes_fini(rpc_pipes *ps)
{
	free(ps->ps_v);
	ps->ps_v = NULL;
	ps->ps_n = ps->ps_cap = 0;
	pthread_mutex_destroy(&ps->ps_mtx);
}

void
rpc_pipes_add(rpc_pipes *ps, int pipe, int listener)
{
	pthread_mutex_lock(&ps->ps_mtx);
	if (ps->ps_n == ps->ps_cap) {
		size_t          cap = ps->ps_cap == 0 ? 64 : ps->ps_cap * 2;
		rpc_pipe_entry *v   = realloc(ps->ps_v, cap * sizeof(*v));
		if (v == NULL) {
			pthread_mutex_unlock(&ps->ps_mtx);
			return;
		}
		ps->ps_v   = v;
		ps->ps_cap = cap;
	}
	ps->ps_v[ps->ps_n].pe_pipe     = pipe;
	ps->ps_v[ps->ps_n].pe_listener = listener;
	ps->ps_n++;
	pthread_mutex_unlock(&ps->ps_mtx);
}

void
rpc_pipes_remove(rpc_pipes *ps, int pipe)
{
	pthread_mutex_lock(&ps->ps_mtx);
	for (size_t i = 0; i < ps->ps_n; i++) {
		if (ps->ps_v[i].pe_pipe == pipe) {
			ps->ps_v[i] = ps->ps_v[--ps->ps_n];
			break;
		}
	}
	pthread_mutex_unlock(&ps->ps_mtx);
}

int
rpc_pipes_of(rpc_pipes *ps, int listener, int **out, size_t *n)
{
	int   *ids;
	size_t k = 0;

	*out = NULL;
	*n   = 0;
	pthread_mutex_lock(&ps->ps_mtx);
	if ((ids = malloc((ps->ps_n + 1) * sizeof(*ids))) == NULL) {
		pthread_mutex_unlock(&ps->ps_mtx);
		return (ENOMEM);
	}
	for (size_t i = 0; i < ps->ps_n; i++) {
		if (ps->ps_v[i].pe_listener == listener) {
			ids[k++] = ps->ps_v[i].pe_pipe;
		}
	}
	pthread_mutex_unlock(&ps->ps_mtx);
	*out = ids;
	*n   = k;
	return (0);
}
