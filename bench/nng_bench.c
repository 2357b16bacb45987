/*
 * nng_bench.c - the plain nng echo that haven's RPC layer is held against, and `compare`,
 * which runs both in one go.
 *
 * The baseline is the fastest echo this libnng (1.5.2) allows, with no haven code in it: the
 * server is a pool of REP contexts, each answering from its aio callback with the message it
 * received (no copy, no thread hand-off); the client keeps INFLIGHT REQ contexts busy from
 * their aio callbacks, so no client thread sleeps and wakes per call either. haven's client
 * (rpc_bench.c) is a blocking call per thread, as haven's callers use it: that difference is
 * part of what the RPC layer costs and is counted against it.
 *
 *   haven-bench nng --serve URL [CONTEXTS]           plain echo server (default 256 contexts)
 *   haven-bench nng URL INFLIGHT CALLS SIZE [CONNS]  INFLIGHT contexts of CALLS calls each;
 *       prints  nng threads=INFLIGHT size=S calls=N qps=Q p50_us=X p99_us=Y
 *   haven-bench compare [CALLS] [SIZE] [ROUNDS]      starts both servers (ipc://, a private
 *       directory), then per round and per 1, 8, 32 calls in flight runs the plain nng echo
 *       and haven's Echo, CALLS calls each (default 20000, 256 bytes, 3 rounds); prints
 *       compare inflight=F size=S calls=N nng_qps=Q nng_p50_us=X rpc_qps=Q rpc_p50_us=X
 *       rpc_vs_nng=R nng_cpu_us=SERVER/CLIENT rpc_cpu_us=SERVER/CLIENT (CPU per call)
 */
#include "bench.h"

#include "haven/clock.h"
#include "haven/log.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NNG_DEFAULT_CONTEXTS 256
#define NNG_MAX_CONTEXTS     4096

/* ---- the server ---------------------------------------------------------------------- */

typedef struct srv_slot {
	nng_ctx  ctx;
	nng_aio *aio;
	int      sending;
} srv_slot;

/* Receive done: send the same message back. Send done: receive again. */
static void
srv_cb(void *arg)
{
	srv_slot *s  = arg;
	int       rv = nng_aio_result(s->aio);

	if (rv == NNG_ECLOSED) {
		if (s->sending) {
			nng_msg_free(nng_aio_get_msg(s->aio));
		}
		return;
	}
	if (rv != 0 || s->sending) {
		if (rv != 0 && s->sending) {
			nng_msg_free(nng_aio_get_msg(s->aio));
		}
		s->sending = 0;
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	s->sending = 1;
	nng_ctx_send(s->ctx, s->aio);
}

int
bench_nng_serve(const char *url, unsigned contexts)
{
	nng_socket sock;
	srv_slot  *slots;

	bench_block_signals();
	if ((slots = calloc(contexts, sizeof(*slots))) == NULL || nng_rep0_open(&sock) != 0 ||
	    nng_listen(sock, url, NULL, 0) != 0) {
		fprintf(stderr, "haven-bench: cannot listen on %s\n", url);
		free(slots);
		return (1);
	}
	for (unsigned i = 0; i < contexts; i++) {
		if (nng_aio_alloc(&slots[i].aio, srv_cb, &slots[i]) != 0 ||
		    nng_ctx_open(&slots[i].ctx, sock) != 0) {
			fprintf(stderr, "haven-bench: cannot open %u contexts\n", contexts);
			return (1);
		}
		nng_ctx_recv(slots[i].ctx, slots[i].aio);
	}
	fprintf(stderr, "haven-bench: plain nng echo on %s, %u contexts\n", url, contexts);
	bench_wait_for_signal();
	nng_close(sock);
	for (unsigned i = 0; i < contexts; i++) {
		nng_aio_free(slots[i].aio);
	}
	free(slots);
	return (0);
}

/* ---- the client ---------------------------------------------------------------------- */

typedef struct cli_run cli_run;

typedef struct cli_slot {
	cli_run *run;
	nng_ctx  ctx;
	nng_aio *aio;
	int      receiving;
	int      left;   /* calls still to make */
	int64_t  t0;     /* the current call's start */
	int64_t *lat_us; /* one entry per call made */
	size_t   nlat;
	int      errors;
} cli_slot;

struct cli_run {
	size_t          size;
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	int             running; /* slots not yet done */
};

static void
cli_done(cli_slot *s)
{
	pthread_mutex_lock(&s->run->mtx);
	if (--s->run->running == 0) {
		pthread_cond_signal(&s->run->cv);
	}
	pthread_mutex_unlock(&s->run->mtx);
}

/* Starts the slot's next call, or reports it done. */
static void
cli_next(cli_slot *s)
{
	nng_msg *m;

	if (s->left == 0) {
		cli_done(s);
		return;
	}
	s->left--;
	if (nng_msg_alloc(&m, s->run->size) != 0) {
		s->errors++;
		cli_next(s);
		return;
	}
	memset(nng_msg_body(m), 'x', s->run->size);
	s->receiving = 0;
	s->t0        = hv_clock_mono_us();
	nng_aio_set_msg(s->aio, m);
	nng_ctx_send(s->ctx, s->aio);
}

static void
cli_cb(void *arg)
{
	cli_slot *s  = arg;
	int       rv = nng_aio_result(s->aio);

	if (!s->receiving) {
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(s->aio));
			s->errors++;
			cli_next(s);
			return;
		}
		s->receiving = 1;
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	if (rv != 0) {
		s->errors++;
	} else {
		nng_msg_free(nng_aio_get_msg(s->aio));
		s->lat_us[s->nlat++] = hv_clock_mono_us() - s->t0;
	}
	cli_next(s);
}

/* Runs every slot's calls and waits for all of them; returns the elapsed time. */
static int64_t
cli_go(cli_run *run, cli_slot *slots, int n)
{
	int64_t t0 = hv_clock_mono_us();

	run->running = n;
	for (int i = 0; i < n; i++) {
		cli_next(&slots[i]);
	}
	pthread_mutex_lock(&run->mtx);
	while (run->running > 0) {
		pthread_cond_wait(&run->cv, &run->mtx);
	}
	pthread_mutex_unlock(&run->mtx);
	return (hv_clock_mono_us() - t0);
}

int
bench_nng_run(const char *url, int inflight, int calls, size_t size, int conns, bench_result *out)
{
	nng_socket sock;
	cli_run    run = { .size = size };
	cli_slot  *slots;
	int64_t   *all, elapsed, warm[64];
	size_t     n      = 0;
	int        errors = 0, opened = 0;

	if (nng_req0_open(&sock) != 0) {
		fprintf(stderr, "haven-bench: cannot open a REQ socket\n");
		return (1);
	}
	nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	for (int i = 0; i < conns; i++) {
		if (nng_dial(sock, url, NULL, 0) != 0) {
			fprintf(stderr, "haven-bench: cannot dial %s\n", url);
			nng_close(sock);
			return (1);
		}
	}
	slots = calloc((size_t) inflight, sizeof(*slots));
	all   = calloc((size_t) inflight * (size_t) calls, sizeof(*all));
	pthread_mutex_init(&run.mtx, NULL);
	pthread_cond_init(&run.cv, NULL);
	for (int i = 0; slots != NULL && all != NULL && i < inflight; i++, opened++) {
		slots[i] = (cli_slot) { .run = &run, .lat_us = all + (size_t) i * (size_t) calls };
		if (nng_aio_alloc(&slots[i].aio, cli_cb, &slots[i]) != 0) {
			break;
		}
		if (nng_ctx_open(&slots[i].ctx, sock) != 0) {
			nng_aio_free(slots[i].aio);
			break;
		}
		nng_aio_set_timeout(slots[i].aio, 10000);
	}
	if (opened == inflight) {
		/* Warm up on the first context: connections up, code paths touched. */
		slots[0].left   = 64;
		slots[0].lat_us = warm;
		(void) cli_go(&run, slots, 1);
		slots[0].lat_us = all;
		slots[0].nlat   = 0;
		slots[0].errors = 0;
		for (int i = 0; i < inflight; i++) {
			slots[i].left = calls;
		}
		elapsed = cli_go(&run, slots, inflight);
		/* Latencies of failed calls are not recorded: pack the recorded ones. */
		for (int i = 0; i < inflight; i++) {
			memmove(all + n, slots[i].lat_us, slots[i].nlat * sizeof(*all));
			n += slots[i].nlat;
			errors += slots[i].errors;
		}
		bench_result_fill(out, all, n, elapsed, errors);
	} else {
		fprintf(stderr, "haven-bench: cannot open %d contexts\n", inflight);
	}
	/* A slot's last callback may still be inside nng (returning from the receive it posted)
	 * after its done was counted: stopping each aio waits for its callback to finish, so
	 * nothing of nng's is in use when the socket goes (an ASan run of compare caught one). */
	for (int i = 0; i < opened; i++) {
		nng_aio_stop(slots[i].aio);
	}
	nng_close(sock); /* ends every context */
	for (int i = 0; i < opened; i++) {
		nng_aio_free(slots[i].aio);
	}
	pthread_cond_destroy(&run.cv);
	pthread_mutex_destroy(&run.mtx);
	free(all);
	free(slots);
	return (opened == inflight ? 0 : 1);
}

int
bench_nng(int argc, char **argv)
{
	if ((argc == 2 || argc == 3) && strcmp(argv[0], "--serve") == 0) {
		int n = argc == 3 ? atoi(argv[2]) : NNG_DEFAULT_CONTEXTS;
		if (n < 1 || n > NNG_MAX_CONTEXTS) {
			fprintf(stderr, "usage: haven-bench nng --serve URL [CONTEXTS 1-%d]\n",
			    NNG_MAX_CONTEXTS);
			return (2);
		}
		return (bench_nng_serve(argv[1], (unsigned) n));
	}
	return (bench_echo_main("nng", argc, argv));
}
