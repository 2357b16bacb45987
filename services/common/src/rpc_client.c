/*
 * rpc_client.c - RPC channels (see rpc.h), and the small pieces the server shares with them:
 * role names, URL classification, TLS certificate loading and the clocks.
 *
 * A channel is one nng REQ socket with one dialer that reconnects in the background. Each call
 * borrows an nng context (and its aio) from the channel's pool, so calls from many threads run
 * at once without a lock around the socket. The REQ socket's own resend timer is switched off:
 * a request reaches the server at most once per attempt, and attempts are repeated only for
 * calls that are safe to repeat.
 */
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/log.h"
#include "haven/rpc.h"

#include "rpc_internal.h"

#include "haven/rpc/v1/rpc.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 64
#define DEFAULT_TIMEOUT_MS 10000
#define CERT_FILE_MAX (64 * 1024)

typedef struct pooled_ctx {
	nng_ctx  pc_ctx;
	nng_aio *pc_aio;
} pooled_ctx;

struct rpc_channel {
	nng_socket      ch_sock;
	nng_tls_config *ch_tls;
	char           *ch_url;
	size_t          ch_max_msg;
	atomic_int      ch_pipes; /* connected pipes, from pipe notifications */
	atomic_ullong   ch_next_id;

	pthread_mutex_t ch_mtx; /* guards the token and the pool */
	char           *ch_token;
	pooled_ctx      ch_pool[POOL_MAX];
	unsigned        ch_npool;
};

/* ---- shared pieces ----------------------------------------------------------------- */

static const struct {
	rpc_role    role;
	const char *name;
} role_names[] = {
	{ RPC_ROLE_ANONYMOUS, "anonymous" },
	{ RPC_ROLE_OPERATOR, "operator" },
	{ RPC_ROLE_ADMIN, "admin" },
	{ RPC_ROLE_COORDINATOR, "coordinator" },
	{ RPC_ROLE_REFERRER, "referrer" },
	{ RPC_ROLE_PROVIDER, "provider" },
	{ RPC_ROLE_MUNICIPALITY, "municipality" },
	{ RPC_ROLE_NATIONAL_COORDINATOR, "national-coordinator" },
};

const char *
rpc_role_name(rpc_role role)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
		if (role_names[i].role == role) {
			return (role_names[i].name);
		}
	}
	return ("unknown");
}

int
rpc_role_parse(const char *name, rpc_role *out)
{
	for (size_t i = 0; name != NULL && i < sizeof(role_names) / sizeof(role_names[0]); i++) {
		if (strcmp(role_names[i].name, name) == 0) {
			*out = role_names[i].role;
			return (0);
		}
	}
	return (-1);
}

hv_status
rpc_url_transport(const char *url, bool insecure_tcp, rpc_transport *out)
{
	if (strncmp(url, "inproc://", 9) == 0 && url[9] != '\0') {
		*out = RPC_TRANSPORT_INPROC;
	} else if (strncmp(url, "ipc://", 6) == 0 && url[6] != '\0') {
		*out = RPC_TRANSPORT_IPC;
	} else if (strncmp(url, "tls+tcp://", 10) == 0 && url[10] != '\0') {
		*out = RPC_TRANSPORT_TLS;
	} else if (strncmp(url, "tcp://", 6) == 0 && url[6] != '\0') {
		if (!insecure_tcp) {
			return (HV_PERMISSION_DENIED);
		}
		*out = RPC_TRANSPORT_TCP;
	} else {
		return (HV_INVALID_ARGUMENT);
	}
	return (HV_OK);
}

int
rpc_tls_own_cert(nng_tls_config *cfg, const char *cert_file, const char *key_file)
{
	char  *cert = NULL;
	char  *key  = NULL;
	size_t n;
	int    rv = NNG_EINVAL;

	if (hv_file_read(cert_file, CERT_FILE_MAX, false, &cert, &n) != HV_OK) {
		rv = NNG_ENOENT;
		goto out;
	}
	if (hv_file_read(key_file, CERT_FILE_MAX, true, &key, &n) != HV_OK) {
		rv = NNG_EPERM;
		goto out;
	}
	rv = nng_tls_config_own_cert(cfg, cert, key, NULL);
out:
	if (key != NULL) {
		crypto_wipe(key, strlen(key));
	}
	free(key);
	free(cert);
	return (rv);
}

/* ---- channels ---------------------------------------------------------------------- */

static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	rpc_channel *ch = arg;

	(void) p;
	if (ev == NNG_PIPE_EV_ADD_POST) {
		atomic_fetch_add(&ch->ch_pipes, 1);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		atomic_fetch_sub(&ch->ch_pipes, 1);
	}
}

/* The host part of a tls+tcp:// URL, for certificate name checks. */
static void
url_host(const char *url, char *out, size_t outsz)
{
	const char *h = strstr(url, "://");
	size_t      n;

	h = h != NULL ? h + 3 : url;
	if (*h == '[') { /* [v6]:port */
		h++;
		n = strcspn(h, "]");
	} else {
		n = strcspn(h, ":/");
	}
	if (n >= outsz) {
		n = outsz - 1;
	}
	memcpy(out, h, n);
	out[n] = '\0';
}

static hv_status
tls_client_config(const char *url, const rpc_channel_options *o, nng_tls_config **out)
{
	nng_tls_config *cfg = NULL;
	char            host[256];
	int             rv;

	if (o->tls_ca_file == NULL || o->tls_cert_file == NULL || o->tls_key_file == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (o->tls_server_name != NULL) {
		snprintf(host, sizeof(host), "%s", o->tls_server_name);
	} else {
		url_host(url, host, sizeof(host));
	}
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT)) != 0 ||
	    (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
	    (rv = nng_tls_config_ca_file(cfg, o->tls_ca_file)) != 0 ||
	    (rv = nng_tls_config_server_name(cfg, host)) != 0 ||
	    (rv = rpc_tls_own_cert(cfg, o->tls_cert_file, o->tls_key_file)) != 0) {
		if (cfg != NULL) {
			nng_tls_config_free(cfg);
		}
		return (rv == NNG_ENOENT ? HV_NOT_FOUND
		        : rv == NNG_EPERM ? HV_PERMISSION_DENIED
		                          : HV_INVALID_ARGUMENT);
	}
	*out = cfg;
	return (HV_OK);
}

hv_status
rpc_channel_open(rpc_channel **out, const char *url, const rpc_channel_options *opts)
{
	rpc_channel_options o = { 0 };
	rpc_channel        *ch;
	rpc_transport       tr;
	hv_status           st;
	int                 rv;

	if (out == NULL || url == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if (opts != NULL) {
		o = *opts;
	}
	if ((st = rpc_url_transport(url, o.insecure_tcp, &tr)) != HV_OK) {
		return (st);
	}
	if (o.connections > 64) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((ch = calloc(1, sizeof(*ch))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_init(&ch->ch_mtx, NULL);
	ch->ch_max_msg = o.max_msg != 0 ? o.max_msg : RPC_DEFAULT_MAX_MSG;
	atomic_init(&ch->ch_next_id, ((uint64_t) time(NULL) << 20) ^ (uint64_t) (uintptr_t) ch);
	if ((ch->ch_url = strdup(url)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto fail;
	}
	if ((rv = nng_req0_open(&ch->ch_sock)) != 0) {
		st = hv_status_from_nng(rv);
		goto fail;
	}
	/* Never resend behind the caller's back (the default is every 60 s and on reconnect). */
	if ((rv = nng_socket_set_ms(ch->ch_sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) !=
	        0 ||
	    (rv = nng_socket_set_size(ch->ch_sock, NNG_OPT_RECVMAXSZ, ch->ch_max_msg)) != 0 ||
	    (rv = nng_socket_set_ms(ch->ch_sock, NNG_OPT_RECONNMINT, 50)) != 0 ||
	    (rv = nng_socket_set_ms(ch->ch_sock, NNG_OPT_RECONNMAXT, 2000)) != 0 ||
	    (rv = nng_pipe_notify(ch->ch_sock, NNG_PIPE_EV_ADD_POST, pipe_event, ch)) != 0 ||
	    (rv = nng_pipe_notify(ch->ch_sock, NNG_PIPE_EV_REM_POST, pipe_event, ch)) != 0) {
		st = hv_status_from_nng(rv);
		goto fail;
	}
	if (tr == RPC_TRANSPORT_TLS && (st = tls_client_config(url, &o, &ch->ch_tls)) != HV_OK) {
		goto fail;
	}
	/* Several connections let calls from many threads travel side by side: nng sends one
	 * message at a time per connection. The REQ socket spreads requests over them. */
	for (unsigned i = 0; i < (o.connections != 0 ? o.connections : 1); i++) {
		nng_dialer d;
		if ((rv = nng_dialer_create(&d, ch->ch_sock, url)) != 0) {
			st = hv_status_from_nng(rv);
			goto fail;
		}
		if (ch->ch_tls != NULL &&
		    (rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, ch->ch_tls)) != 0) {
			st = hv_status_from_nng(rv);
			goto fail;
		}
		if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0) {
			st = hv_status_from_nng(rv);
			goto fail;
		}
	}
	*out = ch;
	return (HV_OK);

fail:
	rpc_channel_close(ch);
	return (st);
}

/* ---- closing --------------------------------------------------------------------------- */

/*
 * libnng 1.5.2's nng_close can wait for ever: a tls+tcp:// connection whose peer reset it while
 * the call was being answered leaves the reaper waiting on an aio that never completes (seen
 * in the crash-loop test, tests/fault: the CLI hung in nng_close after "Authenticate: receiving
 * the reply failed: Connection reset"; later nng releases reworked the TLS reaping). So the
 * socket is closed by a thread of its own, and the caller waits for it at most
 * CLOSE_WAIT_MS: a CLI that closes and exits is not held, a long-lived process goes on and the
 * close finishes (or not) behind it. The channel is freed by whoever sees the close end last,
 * never before nng_close returns: its pipe notifications point at it.
 */
#define CLOSE_WAIT_MS 2000

typedef struct closer {
	rpc_channel    *cl_ch;
	pthread_mutex_t cl_mtx;
	pthread_cond_t  cl_cv;
	bool            cl_done;
	bool            cl_abandoned;
} closer;

static void
channel_free(rpc_channel *ch)
{
	nng_close(ch->ch_sock);
	if (ch->ch_tls != NULL) {
		nng_tls_config_free(ch->ch_tls);
	}
	free(ch->ch_url);
	pthread_mutex_destroy(&ch->ch_mtx);
	free(ch);
}

static void
closer_free(closer *cl)
{
	pthread_cond_destroy(&cl->cl_cv);
	pthread_mutex_destroy(&cl->cl_mtx);
	free(cl);
}

static void *
closer_main(void *arg)
{
	closer *cl = arg;
	bool    abandoned;

	channel_free(cl->cl_ch);
	pthread_mutex_lock(&cl->cl_mtx);
	cl->cl_done = true;
	abandoned   = cl->cl_abandoned;
	pthread_cond_signal(&cl->cl_cv);
	pthread_mutex_unlock(&cl->cl_mtx);
	if (abandoned) {
		closer_free(cl);
	}
	return (NULL);
}

static void
close_bounded(rpc_channel *ch)
{
	closer        *cl;
	pthread_t      thr;
	pthread_attr_t attr;
	struct timespec until;
	bool           done;
	int            rv = -1;

	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		channel_free(ch);
		return;
	}
	cl->cl_ch = ch;
	if (pthread_mutex_init(&cl->cl_mtx, NULL) != 0) {
		free(cl);
		channel_free(ch);
		return;
	}
	if (hv_clock_cond_init(&cl->cl_cv) != 0) {
		pthread_mutex_destroy(&cl->cl_mtx);
		free(cl);
		channel_free(ch);
		return;
	}
	if (pthread_attr_init(&attr) == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rv = pthread_create(&thr, &attr, closer_main, cl);
		pthread_attr_destroy(&attr);
	}
	if (rv != 0) {
		closer_free(cl);
		channel_free(ch);
		return;
	}
	hv_clock_deadline(&until, CLOSE_WAIT_MS);
	pthread_mutex_lock(&cl->cl_mtx);
	while (!cl->cl_done) {
		if (pthread_cond_timedwait(&cl->cl_cv, &cl->cl_mtx, &until) == ETIMEDOUT) {
			break;
		}
	}
	done = cl->cl_done;
	cl->cl_abandoned = !done;
	pthread_mutex_unlock(&cl->cl_mtx);
	if (done) {
		closer_free(cl);
	} else {
		log_write(LOG_LEVEL_WARN,
		    "rpc: closing a channel did not finish within %d ms (libnng); left to finish "
		    "behind",
		    CLOSE_WAIT_MS);
	}
}

void
rpc_channel_close(rpc_channel *ch)
{
	if (ch == NULL) {
		return;
	}
	for (unsigned i = 0; i < ch->ch_npool; i++) {
		nng_ctx_close(ch->ch_pool[i].pc_ctx);
		nng_aio_free(ch->ch_pool[i].pc_aio);
	}
	if (ch->ch_token != NULL) {
		crypto_wipe(ch->ch_token, strlen(ch->ch_token));
		free(ch->ch_token);
		ch->ch_token = NULL;
	}
	close_bounded(ch);
}

hv_status
rpc_channel_set_token(rpc_channel *ch, const char *token)
{
	char *copy = NULL;

	if (ch == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (token != NULL && (copy = strdup(token)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_lock(&ch->ch_mtx);
	if (ch->ch_token != NULL) {
		crypto_wipe(ch->ch_token, strlen(ch->ch_token));
		free(ch->ch_token);
	}
	ch->ch_token = copy;
	pthread_mutex_unlock(&ch->ch_mtx);
	return (HV_OK);
}

hv_status
rpc_channel_token(rpc_channel *ch, char *out, size_t outsz)
{
	hv_status st = HV_NOT_FOUND;

	if (ch == NULL || out == NULL || outsz == 0) {
		return (HV_INVALID_ARGUMENT);
	}
	out[0] = '\0';
	pthread_mutex_lock(&ch->ch_mtx);
	if (ch->ch_token != NULL) {
		st = strlen(ch->ch_token) < outsz ? HV_OK : HV_OUT_OF_RANGE;
		if (st == HV_OK) {
			memcpy(out, ch->ch_token, strlen(ch->ch_token) + 1);
		}
	}
	pthread_mutex_unlock(&ch->ch_mtx);
	return (st);
}

static hv_status
ctx_get(rpc_channel *ch, pooled_ctx *out)
{
	int rv;

	pthread_mutex_lock(&ch->ch_mtx);
	if (ch->ch_npool > 0) {
		*out = ch->ch_pool[--ch->ch_npool];
		pthread_mutex_unlock(&ch->ch_mtx);
		return (HV_OK);
	}
	pthread_mutex_unlock(&ch->ch_mtx);
	if ((rv = nng_aio_alloc(&out->pc_aio, NULL, NULL)) != 0) {
		return (hv_status_from_nng(rv));
	}
	if ((rv = nng_ctx_open(&out->pc_ctx, ch->ch_sock)) != 0 ||
	    (rv = nng_ctx_set_ms(out->pc_ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0) {
		nng_aio_free(out->pc_aio);
		return (hv_status_from_nng(rv));
	}
	return (HV_OK);
}

/* Returns a context to the pool; one whose call did not end cleanly is closed instead, so
 * that no late reply can ever be matched to a later call. */
static void
ctx_put(rpc_channel *ch, pooled_ctx *pc, bool clean)
{
	if (clean) {
		pthread_mutex_lock(&ch->ch_mtx);
		if (ch->ch_npool < POOL_MAX) {
			ch->ch_pool[ch->ch_npool++] = *pc;
			pthread_mutex_unlock(&ch->ch_mtx);
			return;
		}
		pthread_mutex_unlock(&ch->ch_mtx);
	}
	nng_ctx_close(pc->pc_ctx);
	nng_aio_free(pc->pc_aio);
}

static void set_err(char *errmsg, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *errmsg, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (errmsg != NULL && errsz > 0) {
		va_start(ap, fmt);
		vsnprintf(errmsg, errsz, fmt, ap);
		va_end(ap);
	}
}

/* Sends one request message and waits for its reply within timeout_ms. On success *reply is
 * the reply message (caller frees). Transport failures come back as statuses. */
static hv_status
exchange(rpc_channel *ch, nng_msg *req, uint32_t timeout_ms, nng_msg **reply, char *errmsg,
    size_t errsz)
{
	pooled_ctx pc;
	hv_status  st;
	int        rv;
	int64_t    start = hv_clock_mono_ms();
	int64_t    left;

	*reply = NULL;
	if ((st = ctx_get(ch, &pc)) != HV_OK) {
		nng_msg_free(req);
		set_err(errmsg, errsz, "%s", "cannot open an nng context");
		return (st);
	}
	nng_aio_set_timeout(pc.pc_aio, (nng_duration) timeout_ms);
	nng_aio_set_msg(pc.pc_aio, req);
	nng_ctx_send(pc.pc_ctx, pc.pc_aio);
	nng_aio_wait(pc.pc_aio);
	if ((rv = nng_aio_result(pc.pc_aio)) != 0) {
		nng_msg_free(nng_aio_get_msg(pc.pc_aio));
		ctx_put(ch, &pc, false);
		if (atomic_load(&ch->ch_pipes) == 0 && (rv == NNG_ETIMEDOUT || rv == NNG_ECLOSED)) {
			set_err(errmsg, errsz, "no connection to %s", ch->ch_url);
			return (HV_UNAVAILABLE);
		}
		set_err(errmsg, errsz, "sending the request failed: %s", nng_strerror(rv));
		return (hv_status_from_nng(rv));
	}
	left = (int64_t) timeout_ms - (hv_clock_mono_ms() - start);
	nng_aio_set_timeout(pc.pc_aio, (nng_duration) (left > 0 ? left : 1));
	nng_ctx_recv(pc.pc_ctx, pc.pc_aio);
	nng_aio_wait(pc.pc_aio);
	if ((rv = nng_aio_result(pc.pc_aio)) != 0) {
		ctx_put(ch, &pc, false);
		if (rv == NNG_ETIMEDOUT) {
			set_err(errmsg, errsz, "no reply from %s within the timeout", ch->ch_url);
			return (HV_DEADLINE_EXCEEDED);
		}
		set_err(errmsg, errsz, "receiving the reply failed: %s", nng_strerror(rv));
		return (rv == NNG_ECONNRESET || rv == NNG_ECLOSED ? HV_UNAVAILABLE
		                                                  : hv_status_from_nng(rv));
	}
	*reply = nng_aio_get_msg(pc.pc_aio);
	ctx_put(ch, &pc, true);
	return (HV_OK);
}

hv_status
rpc_channel_call_raw(rpc_channel *ch, const void *req, size_t reqlen, void **reply,
    size_t *replylen, uint32_t timeout_ms)
{
	nng_msg  *msg;
	nng_msg  *rep = NULL;
	hv_status st;

	if (ch == NULL || (req == NULL && reqlen > 0) || reply == NULL || replylen == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*reply = NULL;
	if (nng_msg_alloc(&msg, reqlen) != 0) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if (reqlen > 0) {
		memcpy(nng_msg_body(msg), req, reqlen);
	}
	if ((st = exchange(ch, msg, timeout_ms != 0 ? timeout_ms : DEFAULT_TIMEOUT_MS, &rep, NULL,
	         0)) != HV_OK) {
		return (st);
	}
	*replylen = nng_msg_len(rep);
	if ((*reply = malloc(*replylen + 1)) == NULL) {
		nng_msg_free(rep);
		return (HV_RESOURCE_EXHAUSTED);
	}
	memcpy(*reply, nng_msg_body(rep), *replylen);
	nng_msg_free(rep);
	return (HV_OK);
}

/* Packs the request envelope into a new nng message. */
static hv_status
build_request(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const rpc_call_options *o, uint32_t timeout_ms, uint64_t id, nng_msg **out)
{
	Haven__Rpc__V1__Request  env = HAVEN__RPC__V1__REQUEST__INIT;
	Haven__Rpc__V1__Metadata md[RPC_METADATA_MAX];
	Haven__Rpc__V1__Metadata *mdp[RPC_METADATA_MAX];
	size_t                   n = 0;
	size_t                   plen;
	uint8_t                 *payload = NULL;
	nng_msg                 *msg     = NULL;
	char                    *token   = NULL;
	hv_status                st      = HV_RESOURCE_EXHAUSTED;

	pthread_mutex_lock(&ch->ch_mtx);
	if (ch->ch_token != NULL && (token = strdup(ch->ch_token)) == NULL) {
		pthread_mutex_unlock(&ch->ch_mtx);
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_unlock(&ch->ch_mtx);
	if (token != NULL) {
		haven__rpc__v1__metadata__init(&md[n]);
		md[n].key   = "authorization";
		md[n].value = token;
		mdp[n]      = &md[n];
		n++;
	}
	for (size_t i = 0; i < o->n_metadata; i++) {
		if (n == RPC_METADATA_MAX) {
			st = HV_INVALID_ARGUMENT;
			goto out;
		}
		haven__rpc__v1__metadata__init(&md[n]);
		md[n].key   = (char *) o->metadata[i].key;
		md[n].value = (char *) o->metadata[i].value;
		mdp[n]      = &md[n];
		n++;
	}
	plen = protobuf_c_message_get_packed_size(req);
	if (plen > ch->ch_max_msg) {
		st = HV_INVALID_ARGUMENT;
		goto out;
	}
	if ((payload = malloc(plen + 1)) == NULL) {
		goto out;
	}
	protobuf_c_message_pack(req, payload);

	env.method          = (char *) method;
	env.request_id      = id;
	env.timeout_ms      = timeout_ms;
	env.n_metadata      = n;
	env.metadata        = mdp;
	env.idempotency_key = o->idempotency_key != NULL ? (char *) o->idempotency_key : "";
	env.payload.data    = payload;
	env.payload.len     = plen;
	if (nng_msg_alloc(&msg, haven__rpc__v1__request__get_packed_size(&env)) != 0) {
		goto out;
	}
	haven__rpc__v1__request__pack(&env, nng_msg_body(msg));
	*out = msg;
	st   = HV_OK;
out:
	if (token != NULL) {
		crypto_wipe(token, strlen(token));
		free(token);
	}
	free(payload);
	return (st);
}

hv_status
rpc_channel_call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
    const rpc_call_options *opts, char *errmsg, size_t errsz)
{
	rpc_call_options o = { 0 };
	int64_t          deadline;
	unsigned         attempt = 0;
	hv_status        st;

	if (errmsg != NULL && errsz > 0) {
		errmsg[0] = '\0';
	}
	if (ch == NULL || method == NULL || req == NULL || reply_desc == NULL || reply == NULL) {
		set_err(errmsg, errsz, "%s", "missing argument");
		return (HV_INVALID_ARGUMENT);
	}
	*reply = NULL;
	if (opts != NULL) {
		o = *opts;
	}
	if (o.timeout_ms == 0) {
		o.timeout_ms = DEFAULT_TIMEOUT_MS;
	}
	deadline = hv_clock_mono_ms() + o.timeout_ms;

	for (;;) {
		Haven__Rpc__V1__Reply *env;
		nng_msg               *msg;
		nng_msg               *rep;
		uint64_t               id   = atomic_fetch_add(&ch->ch_next_id, 1);
		int64_t                left = deadline - hv_clock_mono_ms();
		bool                   retry_ok;

		if (left <= 0) {
			set_err(errmsg, errsz, "%s", "deadline passed before the call could be sent");
			return (HV_DEADLINE_EXCEEDED);
		}
		if ((st = build_request(ch, method, req, &o, (uint32_t) left, id, &msg)) != HV_OK) {
			set_err(errmsg, errsz, "%s",
			    st == HV_INVALID_ARGUMENT ? "request over the size or metadata limit"
			                              : "out of memory");
			return (st);
		}
		st = exchange(ch, msg, (uint32_t) left, &rep, errmsg, errsz);
		if (st == HV_OK) {
			env = haven__rpc__v1__reply__unpack(NULL, nng_msg_len(rep), nng_msg_body(rep));
			nng_msg_free(rep);
			/* request_id 0 with an error: the server could not read the envelope (over
			 * its decode budget, say); the REQ socket matched the reply to this request,
			 * so its status and message are this call's. */
			if (env != NULL && env->request_id == 0 && env->code != HV_OK) {
				env->request_id = id;
			}
			if (env == NULL || env->request_id != id) {
				if (env != NULL) {
					haven__rpc__v1__reply__free_unpacked(env, NULL);
				}
				set_err(errmsg, errsz, "%s", "reply is not a valid haven.rpc.v1.Reply");
				return (HV_DATA_LOSS);
			}
			st = env->code <= HV_STATUS_MAX ? (hv_status) env->code : HV_UNKNOWN;
			if (st == HV_OK) {
				*reply = protobuf_c_message_unpack(reply_desc, NULL, env->payload.len,
				    env->payload.data);
				if (*reply == NULL) {
					set_err(errmsg, errsz, "reply payload does not decode as %s",
					    reply_desc->name);
					st = HV_DATA_LOSS;
				}
			} else {
				set_err(errmsg, errsz, "%s",
				    env->message != NULL && env->message[0] != '\0'
				        ? env->message
				        : hv_status_name(st));
			}
			haven__rpc__v1__reply__free_unpacked(env, NULL);
		}

		retry_ok = st == HV_UNAVAILABLE &&
		    (o.idempotent || (o.idempotency_key != NULL && o.idempotency_key[0] != '\0'));
		if (!retry_ok) {
			return (st);
		}
		/* Exponential backoff with jitter: 25 ms, 50 ms, ... at most 1 s. */
		{
			unsigned        base = 25u << (attempt < 6 ? attempt : 6);
			unsigned        wait = base / 2 + (unsigned) ((id * 2654435761u) % (base / 2 + 1));
			int64_t         rem  = deadline - hv_clock_mono_ms();
			struct timespec ts;

			if (wait > 1000) {
				wait = 1000;
			}
			if (rem <= (int64_t) wait) {
				return (st);
			}
			ts.tv_sec  = wait / 1000;
			ts.tv_nsec = (long) (wait % 1000) * 1000000L;
			nanosleep(&ts, NULL);
		}
		attempt++;
	}
}
