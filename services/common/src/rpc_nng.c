/*
 * rpc_nng.c - the RPC server's nng transport: one REP socket, its listeners (inproc://,
 * ipc://, tls+tcp://, tcp:// when allowed) and a pool of receiving contexts (see rpc.h; the
 * dispatch is rpc_dispatch.c, rpc_dispatch.h).
 *
 * Threads and ownership. A fixed set of slots each own one nng context, one aio and one call
 * (with its arena). A slot cycles RECV -> (checks) -> [dispatch] -> SEND -> RECV. The aio
 * callback runs on nng's threads and never blocks: it decodes the envelope, identifies the
 * caller from the pipe it came on and hands the call to the dispatch, which answers at once
 * (errors, inline handlers) or queues it for a worker. slot_reply, the call's completion, packs
 * the Reply envelope and starts the send; only then does nng touch the slot again.
 *
 * Because each slot holds at most one call, the number of slots bounds the calls in the
 * server; the queue bounds those waiting for a worker. With more slots than workers + queue, a
 * burst beyond what the workers can take is answered RESOURCE_EXHAUSTED instead of waiting
 * without bound.
 */
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/rpc.h"
#include "haven/ticker.h"

#include "haven/arena.h"
#include "rpc_dispatch.h"
#include "rpc_internal.h"
#include "rpc_close.h"
#include "rpc_nng.h"
#include "rpc_pipes.h"

#include "haven/health/v1/health.pb-c.h"
#include "haven/rpc/v1/rpc.pb-c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LISTENERS 8
/* The listener watchdog (see watch_round): how often each ipc:// and tls+tcp:// listener is
 * called, how long a probe may take, and how many probes in a row must fail before the
 * listener is made again. */
#define PROBE_EVERY_MS   2000
#define PROBE_TIMEOUT_MS 1000
#define PROBE_FAILS      3
/* How long closing the server waits for libnng (rpc_nng_close). */
#define SERVER_CLOSE_WAIT_MS 5000

typedef struct listener_entry {
	nng_listener    l_listener;
	int             l_id;
	rpc_transport   l_transport;
	nng_tls_config *l_tls;
	int             l_lockfd; /* ipc:// lock file, or -1 */
	char           *l_lockpath;
	char           *l_url; /* as the server was asked to listen on (tls+tcp port 0: the port) */
	char           *l_probe_url; /* where the watchdog calls it; NULL: not watched */
	unsigned        l_failed;    /* probes failed in a row */
	uint64_t        l_restarts;  /* times the watchdog made it again */
} listener_entry;

typedef enum slot_state { SLOT_RECV, SLOT_SEND } slot_state;

typedef struct slot {
	rpc_server *s_srv;
	nng_ctx     s_ctx;
	nng_aio    *s_aio;
	slot_state  s_state;
	nng_msg    *s_msg; /* the request, kept to carry the reply */
	/* What the pipe of this slot's last request vouched for (identify), valid while no pipe
	 * of the socket went away since (n_pipe_gen): saves a lookup and a getsockopt per call. */
	int           s_pipe_id;
	unsigned      s_pipe_gen;
	rpc_transport s_pipe_transport;
	bool          s_pipe_local;
	rpc_call      s_call;
} slot;

struct rpc_nng {
	nng_socket     n_sock;
	atomic_uint    n_pipe_gen; /* pipes removed from the socket, ever */
	rpc_pipes      n_pipes;    /* the socket's pipes and their listeners */
	listener_entry n_listeners[MAX_LISTENERS];
	size_t         n_nlisteners;
	slot          *n_slots;
	unsigned       n_nslots;
	hv_ticker     *n_watch; /* listener watchdog; NULL without ipc or tls listeners */
	rpc_probe     *n_probe; /* the watchdog's TLS identity; NULL without tls listeners */
};

/* ---- replies ----------------------------------------------------------------------- */

/* The Reply's payload field (haven.rpc.v1.Reply.payload = 3, length-delimited). */
#define REPLY_PAYLOAD_TAG ((3u << 3) | 2u)

/* Makes msg (the request's message, or a new one when it is gone or cannot grow) size bytes
 * long; NULL when out of memory. */
static nng_msg *
reply_msg(nng_msg *msg, size_t size)
{
	if (msg != NULL) {
		nng_msg_clear(msg);
		if (nng_msg_realloc(msg, size) == 0) {
			return (msg);
		}
		nng_msg_free(msg);
	}
	return (nng_msg_alloc(&msg, size) == 0 ? msg : NULL);
}

/*
 * The call's completion (rpc_reply_fn): packs the reply envelope (status, message and, on OK,
 * the reply message) into the request's nng message and starts sending it on the slot's
 * context. The envelope's other fields are packed first (the payload left empty, which proto3
 * omits) and the reply packed straight behind its field's tag and length, so it is packed
 * once, into the message that goes out: no buffer and no copy in between (the client reads
 * fields in any order). Never fails to send something: when the reply cannot be packed the
 * caller gets RESOURCE_EXHAUSTED instead.
 */
static void
slot_reply(rpc_call *call, hv_status code, const ProtobufCMessage *reply)
{
	slot                 *sl  = call->c_transport;
	rpc_server           *srv = sl->s_srv;
	Haven__Rpc__V1__Reply env = HAVEN__RPC__V1__REPLY__INIT;
	nng_msg              *msg;
	size_t                n = 0, size;

	env.request_id = call->c_env != NULL ? call->c_env->request_id : 0;
	code           = rpc_dispatch_check_reply(call, code, reply);
	if (code == HV_OK &&
	    (n = protobuf_c_message_get_packed_size(reply)) > srv->sv_opts.max_msg) {
		code = rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "reply of %zu bytes is over the limit", n);
	}
	env.code = (uint32_t) code;
	if (code != HV_OK) {
		env.message = (char *) rpc_dispatch_errmsg(call, code);
		n           = 0;
	}
	size = haven__rpc__v1__reply__get_packed_size(&env);
	if (code == HV_OK) {
		size += 1 + rpc_varint_size(n) + n;
	}
	/* The request's message carries the reply (as the plain echo does): no free and
	 * allocation per call. */
	msg       = reply_msg(sl->s_msg, size);
	sl->s_msg = NULL;
	if (msg != NULL) {
		uint8_t *p = nng_msg_body(msg);
		p += haven__rpc__v1__reply__pack(&env, p);
		if (code == HV_OK) {
			*p++ = REPLY_PAYLOAD_TAG;
			p += rpc_varint_put(p, n);
			protobuf_c_message_pack(reply, p);
		}
	}
	rpc_dispatch_record(srv, call, code);

	sl->s_state = SLOT_SEND;
	if (msg == NULL) {
		/* Out of memory for the reply: the client's timeout ends the call. Go on. */
		nng_aio_set_msg(sl->s_aio, NULL);
		sl->s_state = SLOT_RECV;
		arena_reset(&call->c_arena);
		rpc_dispatch_end(srv);
		nng_ctx_recv(sl->s_ctx, sl->s_aio);
		return;
	}
	nng_aio_set_msg(sl->s_aio, msg);
	nng_ctx_send(sl->s_ctx, sl->s_aio);
}

/* ---- identity ---------------------------------------------------------------------- */

static rpc_transport
pipe_transport(rpc_server *srv, nng_pipe p)
{
	rpc_nng *n  = srv->sv_nng;
	int      id = nng_listener_id(nng_pipe_listener(p));

	for (size_t i = 0; i < n->n_nlisteners; i++) {
		if (__atomic_load_n(&n->n_listeners[i].l_id, __ATOMIC_ACQUIRE) == id) {
			return (n->n_listeners[i].l_transport);
		}
	}
	return (RPC_TRANSPORT_TCP); /* unknown: treat as the least trusted */
}

/* Records each pipe the socket takes, with its listener (listener_close_gently). */
static void
pipe_added(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	rpc_nng *n = arg;

	(void) ev;
	rpc_pipes_add(&n->n_pipes, nng_pipe_id(p), nng_listener_id(nng_pipe_listener(p)));
}

/* Counts every pipe that leaves the socket, so that a slot's remembered verdict on a pipe id
 * (identify) can never outlive the pipe. */
static void
pipe_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	rpc_nng *n = arg;

	(void) ev;
	rpc_pipes_remove(&n->n_pipes, nng_pipe_id(p));
	atomic_fetch_add(&n->n_pipe_gen, 1);
}

/* What the pipe vouches for: inproc:// is this process, an ipc:// peer with the server's uid
 * is the node's own user. Everything else proves itself with a token (rpc_dispatch_identify).
 * The slot remembers the verdict for its last pipe: a caller's calls mostly come on one
 * connection, and asking nng for the listener and the kernel for the peer's uid cost about
 * 6 % of the server's time per call (perf). The generation is read before the pipe is looked
 * at, so a pipe that went away meanwhile invalidates what is stored; nng does not hand a pipe
 * id out again until some 2^31 pipes later, and never before the old pipe was removed. */
static hv_status
identify(rpc_server *srv, slot *sl, nng_msg *msg, rpc_call *call)
{
	nng_pipe p   = nng_msg_get_pipe(msg);
	int      id  = nng_pipe_id(p);
	unsigned gen = atomic_load(&srv->sv_nng->n_pipe_gen);
	uint64_t uid;

	if (id <= 0 || id != sl->s_pipe_id || gen != sl->s_pipe_gen) {
		sl->s_pipe_transport = pipe_transport(srv, p);
		sl->s_pipe_local     = sl->s_pipe_transport == RPC_TRANSPORT_INPROC ||
		    (sl->s_pipe_transport == RPC_TRANSPORT_IPC &&
		        nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &uid) == 0 &&
		        uid == (uint64_t) srv->sv_uid);
		sl->s_pipe_id  = id;
		sl->s_pipe_gen = gen;
	}
	return (rpc_dispatch_identify(srv, call, sl->s_pipe_transport, sl->s_pipe_local));
}

/* Decodes the envelope and the payload and runs every check that comes before a handler. */
static hv_status
prepare(rpc_server *srv, slot *sl, nng_msg *msg, rpc_call *call)
{
	hv_status st;

	if ((st = rpc_dispatch_envelope(srv, call, nng_msg_body(msg), nng_msg_len(msg))) != HV_OK ||
	    (st = rpc_dispatch_method(srv, call)) != HV_OK ||
	    (st = identify(srv, sl, msg, call)) != HV_OK ||
	    (st = rpc_dispatch_authorize(srv, call)) != HV_OK) {
		return (st);
	}
	return (rpc_dispatch_payload(srv, call));
}

/* The aio callback: runs on nng's threads, never blocks on anything but short mutexes. */
static void
slot_cb(void *arg)
{
	slot       *sl  = arg;
	rpc_server *srv = sl->s_srv;
	rpc_call   *call;
	nng_msg    *msg;
	hv_status   st;
	int         rv = nng_aio_result(sl->s_aio);

	if (sl->s_state == SLOT_SEND) {
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(sl->s_aio));
		}
		arena_reset(&sl->s_call.c_arena);
		rpc_dispatch_end(srv);
		sl->s_state = SLOT_RECV;
		if (rv == NNG_ECLOSED) {
			return;
		}
		nng_ctx_recv(sl->s_ctx, sl->s_aio);
		return;
	}

	/* SLOT_RECV */
	if (rv != 0) {
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
			return;
		}
		nng_ctx_recv(sl->s_ctx, sl->s_aio);
		return;
	}
	msg = nng_aio_get_msg(sl->s_aio);
	nng_aio_set_msg(sl->s_aio, NULL);

	call = &sl->s_call;
	rpc_dispatch_begin(srv, call);
	call->c_reply     = slot_reply;
	call->c_transport = sl;
	st                = prepare(srv, sl, msg, call);
	/* Everything needed was copied into the arena; the message carries the reply. */
	sl->s_msg = msg;
	if (st != HV_OK) {
		rpc_dispatch_fail(call, st);
		return;
	}
	rpc_dispatch_submit(srv, call);
}

/* ---- listeners --------------------------------------------------------------------- */

hv_status
rpc_nng_open(rpc_server *srv)
{
	rpc_nng *n;
	int      rv;

	if ((n = calloc(1, sizeof(*n))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	srv->sv_nng = n;
	rpc_pipes_init(&n->n_pipes);
	if ((rv = nng_rep0_open(&n->n_sock)) != 0) {
		return (hv_status_from_nng(rv));
	}
	if ((rv = nng_socket_set_size(n->n_sock, NNG_OPT_RECVMAXSZ, srv->sv_opts.max_msg)) != 0 ||
	    (rv = nng_pipe_notify(n->n_sock, NNG_PIPE_EV_ADD_POST, pipe_added, n)) != 0 ||
	    (rv = nng_pipe_notify(n->n_sock, NNG_PIPE_EV_REM_POST, pipe_removed, n)) != 0) {
		return (hv_status_from_nng(rv));
	}
	return (HV_OK);
}

/* Takes an exclusive lock on "<socket path>.lock" and removes a socket file left by a node
 * that died (it holds no lock any more). The lock is held while the server lives. */
static hv_status
ipc_prepare(const char *path, listener_entry *le)
{
	char        dir[512];
	char       *slash;
	struct stat sb;
	size_t      n = strlen(path);

	if (n == 0 || n + 6 > sizeof(dir)) {
		return (HV_INVALID_ARGUMENT);
	}
	memcpy(dir, path, n + 1);
	if ((slash = strrchr(dir, '/')) == NULL) {
		log_error("rpc: ipc path %s must be absolute, in a directory of its own", path);
		return (HV_INVALID_ARGUMENT);
	}
	*slash = '\0';
	if (stat(dir[0] != '\0' ? dir : "/", &sb) != 0) {
		log_error("rpc: ipc directory %s: %s", dir, strerror(errno));
		return (hv_status_from_errno(errno));
	}
	if (sb.st_uid != getuid() || (sb.st_mode & 077) != 0) {
		log_error("rpc: ipc directory %s must belong to this user and be closed to others "
		          "(mode 0700)",
		    dir);
		return (HV_PERMISSION_DENIED);
	}
	if ((le->l_lockpath = malloc(n + 6)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	snprintf(le->l_lockpath, n + 6, "%s.lock", path);
	le->l_lockfd = open(le->l_lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (le->l_lockfd < 0) {
		return (hv_status_from_errno(errno));
	}
	if (flock(le->l_lockfd, LOCK_EX | LOCK_NB) != 0) {
		log_error("rpc: %s is in use by another running node", path);
		close(le->l_lockfd);
		le->l_lockfd = -1;
		return (HV_ALREADY_EXISTS);
	}
	(void) unlink(path); /* a stale socket of a dead node */
	return (HV_OK);
}

/* The listeners' TLS configuration: mutual TLS with the node CA, and the watchdog's own
 * certificate trusted beside it (rpc_probe.c says why that admits nothing more). */
static hv_status
tls_server_config(const rpc_server_options *o, const rpc_probe *probe, nng_tls_config **out)
{
	nng_tls_config *cfg = NULL;
	int             rv;

	if (o->tls_ca_file == NULL || o->tls_cert_file == NULL || o->tls_key_file == NULL) {
		log_error("rpc: tls+tcp:// needs a CA file, a certificate file and a key file");
		return (HV_INVALID_ARGUMENT);
	}
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) != 0 ||
	    (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
	    (rv = nng_tls_config_ca_file(cfg, o->tls_ca_file)) != 0 ||
	    (rv = nng_tls_config_ca_chain(cfg, rpc_probe_cert(probe), NULL)) != 0 ||
	    (rv = rpc_tls_own_cert(cfg, o->tls_cert_file, o->tls_key_file)) != 0) {
		log_error("rpc: TLS configuration failed: %s", nng_strerror(rv));
		if (cfg != NULL) {
			nng_tls_config_free(cfg);
		}
		return (rv == NNG_ENOENT ? HV_NOT_FOUND : HV_INVALID_ARGUMENT);
	}
	*out = cfg;
	return (HV_OK);
}

/* Where the watchdog reaches le, set once it listens: an ipc:// listener at its path; a
 * tls+tcp:// one at the address it is bound to (a wildcard address through loopback). A
 * tls+tcp:// URL that asked for port 0 is rewritten with the port it got, so that listening
 * again keeps it. */
static hv_status
probe_url(listener_entry *le)
{
	nng_sockaddr sa;
	char         addr[INET6_ADDRSTRLEN];
	char         host[INET6_ADDRSTRLEN + 2];
	char         buf[300];
	const char  *colon;
	uint16_t     port;
	int          rv;

	if (le->l_transport == RPC_TRANSPORT_IPC) {
		return (
		    (le->l_probe_url = strdup(le->l_url)) != NULL ? HV_OK : HV_RESOURCE_EXHAUSTED);
	}
	if (le->l_transport != RPC_TRANSPORT_TLS) {
		return (HV_OK);
	}
	if ((rv = nng_listener_get_addr(le->l_listener, NNG_OPT_LOCADDR, &sa)) != 0) {
		return (hv_status_from_nng(rv));
	}
	if (sa.s_family == NNG_AF_INET) {
		struct in_addr a = { .s_addr = sa.s_in.sa_addr };
		if (a.s_addr == htonl(INADDR_ANY)) {
			a.s_addr = htonl(INADDR_LOOPBACK);
		}
		inet_ntop(AF_INET, &a, host, sizeof(host));
		port = ntohs(sa.s_in.sa_port);
	} else if (sa.s_family == NNG_AF_INET6) {
		struct in6_addr a;
		memcpy(&a, sa.s_in6.sa_addr, sizeof(a));
		if (IN6_IS_ADDR_UNSPECIFIED(&a)) {
			a = in6addr_loopback;
		}
		inet_ntop(AF_INET6, &a, addr, sizeof(addr));
		snprintf(host, sizeof(host), "[%s]", addr);
		port = ntohs(sa.s_in6.sa_port);
	} else {
		return (HV_INVALID_ARGUMENT);
	}
	snprintf(buf, sizeof(buf), "tls+tcp://%s:%u", host, (unsigned) port);
	if ((le->l_probe_url = strdup(buf)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	colon = strrchr(le->l_url, ':');
	if (colon != NULL && strcmp(colon, ":0") == 0) {
		char *u;
		snprintf(buf, sizeof(buf), "%.*s:%u", (int) (colon - le->l_url), le->l_url,
		    (unsigned) port);
		if ((u = strdup(buf)) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		free(le->l_url);
		le->l_url = u;
	}
	return (HV_OK);
}

/* Creates and starts le's nng listener on le->l_url (TLS configuration made on first use). */
static hv_status
listener_open(rpc_server *srv, listener_entry *le)
{
	hv_status st;
	int       rv;

	if ((rv = nng_listener_create(&le->l_listener, srv->sv_nng->n_sock, le->l_url)) != 0) {
		log_error("rpc: cannot listen on %s: %s", le->l_url, nng_strerror(rv));
		return (hv_status_from_nng(rv));
	}
	/* Before it accepts: pipe_transport must know its first pipe. */
	__atomic_store_n(&le->l_id, nng_listener_id(le->l_listener), __ATOMIC_RELEASE);
	if ((rv = nng_listener_set_size(le->l_listener, NNG_OPT_RECVMAXSZ, srv->sv_opts.max_msg)) !=
	    0) {
		st = hv_status_from_nng(rv);
		goto fail;
	}
	if (le->l_transport == RPC_TRANSPORT_IPC &&
	    (rv = nng_listener_set_int(le->l_listener, NNG_OPT_IPC_PERMISSIONS, 0600)) != 0) {
		st = hv_status_from_nng(rv);
		goto fail;
	}
	if (le->l_transport == RPC_TRANSPORT_TLS) {
		if (srv->sv_nng->n_probe == NULL &&
		    (st = rpc_probe_new(&srv->sv_nng->n_probe)) != HV_OK) {
			log_error("rpc: cannot make the listener probe's identity: %s",
			    hv_status_name(st));
			goto fail;
		}
		if (le->l_tls == NULL &&
		    (st = tls_server_config(&srv->sv_opts, srv->sv_nng->n_probe, &le->l_tls)) !=
		        HV_OK) {
			goto fail;
		}
		if ((rv = nng_listener_set_ptr(le->l_listener, NNG_OPT_TLS_CONFIG, le->l_tls)) !=
		    0) {
			st = hv_status_from_nng(rv);
			goto fail;
		}
	}
	if ((rv = nng_listener_start(le->l_listener, 0)) != 0) {
		log_error("rpc: cannot listen on %s: %s", le->l_url, nng_strerror(rv));
		st = hv_status_from_nng(rv);
		goto fail;
	}
	if (le->l_probe_url == NULL && (st = probe_url(le)) != HV_OK) {
		goto fail;
	}
	return (HV_OK);
fail:
	nng_listener_close(le->l_listener);
	return (st);
}

hv_status
rpc_nng_listen(rpc_server *srv, const char *url)
{
	rpc_nng        *n = srv->sv_nng;
	listener_entry *le;
	hv_status       st;

	if (n->n_nlisteners == MAX_LISTENERS) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	le = &n->n_listeners[n->n_nlisteners];
	memset(le, 0, sizeof(*le));
	le->l_lockfd = -1;
	if ((st = rpc_url_transport(url, srv->sv_opts.insecure_tcp, &le->l_transport)) != HV_OK) {
		return (st);
	}
	if ((le->l_url = strdup(url)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if ((le->l_transport != RPC_TRANSPORT_IPC ||
	        (st = ipc_prepare(url + strlen("ipc://"), le)) == HV_OK) &&
	    (st = listener_open(srv, le)) == HV_OK) {
		n->n_nlisteners++;
		return (HV_OK);
	}
	if (le->l_tls != NULL) {
		nng_tls_config_free(le->l_tls);
	}
	if (le->l_lockfd >= 0) {
		close(le->l_lockfd);
	}
	free(le->l_lockpath);
	free(le->l_url);
	free(le->l_probe_url);
	memset(le, 0, sizeof(*le));
	return (st);
}

/* ---- the listener watchdog ---------------------------------------------------------- */

/*
 * libnng 1.5.2 (Debian 12's) stops a listener for good when a connection fails during its
 * negotiation with NNG_ECLOSED: the transport hands that error to the socket's accept loop
 * (src/core/listener.c, listener_accept_cb), which takes it for its own closing and never
 * accepts again. The transport itself goes on accepting, and on tls+tcp:// even completes
 * the TLS handshake and the SP header exchange, but no new connection reaches the socket:
 * calls on connections made before keep working, every new caller waits until its deadline.
 *   ipc://   nng issue #1518 (fixed in 1.6): a peer that disconnects while negotiating. Any
 *            process of the node's user can cause it by connecting and closing at once.
 *   tls+tcp:// the same through the TLS stream: a client that sends a ClientHello and resets
 *            the connection makes the server's next write fail with EPIPE, which nng maps to
 *            NNG_ECLOSED (posix_debug.c) and passes up from the SP negotiation
 *            (tlstran_pipe_nego_cb). Anyone who can reach the port can do it, without a
 *            certificate, in a few dozen attempts (tests/fault/tls_stall_test.py).
 * nng has no way to restart the accept loop, so every PROBE_EVERY_MS this thread calls each
 * ipc:// and tls+tcp:// listener over a fresh connection (rpc_probe.c: a Health/Check, which
 * completes its negotiation properly and cannot itself cause the fault). After PROBE_FAILS
 * failures in a row the listener is closed and made again on the same address (an ipc://
 * path still under its lock); its existing connections close with it and their clients
 * reconnect. Each time is logged and counted (haven_rpc_relistens_total). This bounds a stall
 * to about PROBE_EVERY_MS * PROBE_FAILS; it does not stop a peer from causing the next one
 * (nng 1.6 or later does).
 */

/*
 * Closes le's connections one by one, then le. libnng 1.5.2's listener close closes its
 * connections at the transport only (tlstran_ep_close and its kin call the transport's pipe
 * close): a reply the REP socket then sends on one of them begins on a stopped aio, which
 * nng drops without a callback, and the reaper waits for that send for ever when the pipe is
 * destroyed. With the reaper stuck, no connection of the process is ever freed again and the
 * socket cannot close (found by tests/fault/tls_stall_test.py: the node did not stop on
 * SIGTERM; fixed in nng 1.9, "fix deadlock on socket close"). nng_pipe_close closes the
 * protocol's side first, so that no reply goes out on the pipe after its transport closed.
 * A stalled listener takes no new connections, so after this loop it has none left; a
 * listener closed while still accepting could take one more in between, which is the rest of
 * the risk.
 */
static void
listener_close_gently(rpc_server *srv, listener_entry *le)
{
	rpc_nng *n   = srv->sv_nng;
	int     *ids = NULL;
	size_t   k   = 0;

	if (rpc_pipes_of(&n->n_pipes, nng_listener_id(le->l_listener), &ids, &k) == 0) {
		for (size_t i = 0; i < k; i++) {
			nng_pipe p = NNG_PIPE_INITIALIZER;
			p.id       = (uint32_t) ids[i];
			(void) nng_pipe_close(p); /* NNG_ENOENT: it went away meanwhile */
		}
		free(ids);
	}
	nng_listener_close(le->l_listener);
}

static void
listener_relisten(rpc_server *srv, listener_entry *le)
{
	hv_status st;

	log_warn("rpc: %s stopped accepting connections (libnng 1.5.2: a peer that dropped while "
	         "negotiating); listening again",
	    le->l_url);
	listener_close_gently(srv, le);
	if (le->l_transport == RPC_TRANSPORT_IPC) {
		(void) unlink(le->l_url + strlen("ipc://")); /* ours: the lock is held */
	}
	if ((st = listener_open(srv, le)) != HV_OK) {
		log_error("rpc: cannot listen on %s again: %s (tried again in %d ms)", le->l_url,
		    hv_status_name(st), PROBE_EVERY_MS);
		return;
	}
	__atomic_add_fetch(&le->l_restarts, 1, __ATOMIC_RELAXED);
	le->l_failed = 0;
}

/* One watchdog round (the ticker, every PROBE_EVERY_MS): probes each watched listener. */
static void
watch_round(void *arg)
{
	rpc_server *srv = arg;

	for (size_t i = 0; !rpc_dispatch_closing(srv) && i < srv->sv_nng->n_nlisteners; i++) {
		listener_entry *le = &srv->sv_nng->n_listeners[i];
		hv_status       st;

		if (le->l_probe_url == NULL) {
			continue;
		}
		st = rpc_probe_call(srv->sv_nng->n_probe, le->l_probe_url, PROBE_TIMEOUT_MS);
		/* Any reply is an answer: the listener accepted. No connection or no reply is not.
		 */
		if (st == HV_DEADLINE_EXCEEDED || st == HV_UNAVAILABLE) {
			if (++le->l_failed >= PROBE_FAILS && !rpc_dispatch_closing(srv)) {
				listener_relisten(srv, le);
			}
		} else {
			le->l_failed = 0;
		}
	}
}

uint64_t
rpc_nng_relistens(rpc_server *srv, rpc_transport t)
{
	rpc_nng *nn = srv->sv_nng;
	uint64_t n  = 0;

	for (size_t i = 0; nn != NULL && i < nn->n_nlisteners; i++) {
		if (nn->n_listeners[i].l_transport == t) {
			n += __atomic_load_n(&nn->n_listeners[i].l_restarts, __ATOMIC_RELAXED);
		}
	}
	return (n);
}

hv_status
rpc_nng_start(rpc_server *srv)
{
	rpc_nng *n = srv->sv_nng;
	int      rv;

	if ((n->n_slots = calloc(srv->sv_opts.contexts, sizeof(slot))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	for (unsigned i = 0; i < srv->sv_opts.contexts; i++) {
		slot *sl  = &n->n_slots[i];
		sl->s_srv = srv;
		arena_init(&sl->s_call.c_arena, srv->sv_opts.call_budget);
		sl->s_call.c_srv = srv;
		if ((rv = nng_aio_alloc(&sl->s_aio, slot_cb, sl)) != 0) {
			return (hv_status_from_nng(rv));
		}
		if ((rv = nng_ctx_open(&sl->s_ctx, n->n_sock)) != 0) {
			nng_aio_free(sl->s_aio);
			sl->s_aio = NULL;
			return (hv_status_from_nng(rv));
		}
		n->n_nslots++;
		sl->s_state = SLOT_RECV;
		nng_ctx_recv(sl->s_ctx, sl->s_aio);
	}
	for (size_t i = 0; i < n->n_nlisteners && n->n_watch == NULL; i++) {
		if (n->n_listeners[i].l_probe_url != NULL) {
			(void) hv_ticker_start(&n->n_watch, PROBE_EVERY_MS, false, watch_round,
			    srv);
		}
	}
	return (HV_OK);
}

void
rpc_nng_stop_watch(rpc_server *srv)
{
	if (srv->sv_nng != NULL) {
		hv_ticker_stop(srv->sv_nng->n_watch);
		srv->sv_nng->n_watch = NULL;
	}
}

/* The transport's whole teardown, on the thread rpc_close_bounded gives it: it owns n. */
static void
transport_free(void *arg)
{
	rpc_nng *n = arg;

	/* Closing the socket completes every pending receive with NNG_ECLOSED; freeing an aio
	 * waits for its callback. */
	nng_close(n->n_sock);
	for (unsigned i = 0; i < n->n_nslots; i++) {
		nng_aio_free(n->n_slots[i].s_aio);
		if (n->n_slots[i].s_msg != NULL) {
			nng_msg_free(n->n_slots[i].s_msg);
		}
		arena_reset(&n->n_slots[i].s_call.c_arena);
	}
	for (size_t i = 0; i < n->n_nlisteners; i++) {
		listener_entry *le = &n->n_listeners[i];
		if (le->l_tls != NULL) {
			nng_tls_config_free(le->l_tls);
		}
		if (le->l_lockfd >= 0) {
			if (le->l_lockpath != NULL) {
				/* Remove the socket (path = lock path minus ".lock") while still
				 * holding the lock, so no other node's socket is removed. */
				size_t k          = strlen(le->l_lockpath) - 5;
				le->l_lockpath[k] = '\0';
				(void) unlink(le->l_lockpath);
			}
			close(le->l_lockfd);
		}
		free(le->l_lockpath);
		free(le->l_url);
		free(le->l_probe_url);
	}
	rpc_probe_free(n->n_probe);
	rpc_pipes_fini(&n->n_pipes);
	free(n->n_slots);
	free(n);
}

bool
rpc_nng_close(rpc_server *srv)
{
	rpc_nng *n = srv->sv_nng;
	bool     done;

	if (n == NULL) {
		return (true);
	}
	/* nng_close closes the listeners first, and with them their connections at the transport
	 * only (listener_close_gently says what that can do): each connection is closed the
	 * protocol's way first. The close is bounded so that a node whose libnng reaper is stuck
	 * still stops (its descriptors go with the process). */
	for (size_t i = 0; i < n->n_nlisteners; i++) {
		listener_close_gently(srv, &n->n_listeners[i]);
	}
	done = rpc_close_bounded(transport_free, n, SERVER_CLOSE_WAIT_MS, "the server socket");
	if (done) {
		srv->sv_nng = NULL;
	}
	return (done);
}
