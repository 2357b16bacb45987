/*
 * rpc_client.c - RPC channels (see rpc.h), and the small pieces the server shares with them:
 * role names, URL classification, TLS certificate loading and the clocks.
 *
 * A channel is one nng REQ socket with one dialer that reconnects in the background. Each call
 * borrows an nng context (and its aio) from the channel's pool, so calls from many threads run
 * at once without a lock around the socket. The REQ socket's own resend timer is switched off:
 * a request reaches the server at most once per attempt, and attempts are repeated only for
 * calls that are safe to repeat.
 *
 * The envelopes are handled here for both kinds of call (the asynchronous ones are
 * rpc_async.c's): a request is packed once, straight into the nng message that goes out, and
 * a reply is read in place, its payload unpacked from the message.
 */
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/log.h"
#include "haven/pbfield.h"
#include "haven/rpc.h"

#include "rpc_channel.h"
#include "rpc_close.h"
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

#define DEFAULT_TIMEOUT_MS 10000
#define CERT_FILE_MAX      (64 * 1024)

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
		return (rv == NNG_ENOENT  ? HV_NOT_FOUND
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

/* The channel is closed by rpc_close_bounded (rpc_close.c says why): a CLI that closes and
 * exits is not held by libnng 1.5.2's close. The channel is freed on the closing thread,
 * never before nng_close returns: its pipe notifications point at it. */
#define CLOSE_WAIT_MS 2000

static void
channel_free(void *arg)
{
	rpc_channel *ch = arg;

	nng_close(ch->ch_sock);
	while (ch->ch_aall != NULL) { /* stopped by rpc_channel_close */
		rpc_async *a = ch->ch_aall;
		ch->ch_aall  = a->a_next_all;
		nng_aio_free(a->a_aio);
		free(a);
	}
	if (ch->ch_tls != NULL) {
		nng_tls_config_free(ch->ch_tls);
	}
	free(ch->ch_url);
	pthread_mutex_destroy(&ch->ch_mtx);
	free(ch);
}

void
rpc_channel_close(rpc_channel *ch)
{
	if (ch == NULL) {
		return;
	}
	/* No new asynchronous calls from here (async_get checks under the lock, so ch_aall
	 * grows no more); stopping each slot's aio ends its call in flight and waits for its
	 * callback, so every done has run (UNAVAILABLE) before this returns, whatever the bounded
	 * close below does. The slots themselves are freed with the socket (channel_free). */
	pthread_mutex_lock(&ch->ch_mtx);
	ch->ch_closing = true;
	pthread_mutex_unlock(&ch->ch_mtx);
	for (rpc_async *a = ch->ch_aall; a != NULL; a = a->a_next_all) {
		nng_aio_stop(a->a_aio);
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
	(void) rpc_close_bounded(channel_free, ch, CLOSE_WAIT_MS, "a channel");
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
ctx_get(rpc_channel *ch, rpc_pooled_ctx *out)
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
	    (rv = nng_ctx_set_ms(out->pc_ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) !=
	        0) {
		nng_aio_free(out->pc_aio);
		return (hv_status_from_nng(rv));
	}
	return (HV_OK);
}

/* Returns a context to the pool; one whose call did not end cleanly is closed instead, so
 * that no late reply can ever be matched to a later call. */
static void
ctx_put(rpc_channel *ch, rpc_pooled_ctx *pc, bool clean)
{
	if (clean) {
		pthread_mutex_lock(&ch->ch_mtx);
		if (ch->ch_npool < RPC_POOL_MAX) {
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
	rpc_pooled_ctx pc;
	hv_status      st;
	int            rv;
	int64_t        start = hv_clock_mono_ms();
	int64_t        left;

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
		return (rpc_channel_nng_error(ch, rv, true, errmsg, errsz));
	}
	left = (int64_t) timeout_ms - (hv_clock_mono_ms() - start);
	nng_aio_set_timeout(pc.pc_aio, (nng_duration) (left > 0 ? left : 1));
	nng_ctx_recv(pc.pc_ctx, pc.pc_aio);
	nng_aio_wait(pc.pc_aio);
	if ((rv = nng_aio_result(pc.pc_aio)) != 0) {
		ctx_put(ch, &pc, false);
		return (rpc_channel_nng_error(ch, rv, false, errmsg, errsz));
	}
	*reply = nng_aio_get_msg(pc.pc_aio);
	ctx_put(ch, &pc, true);
	return (HV_OK);
}

hv_status
rpc_channel_nng_error(rpc_channel *ch, int rv, bool sending, char *errmsg, size_t errsz)
{
	if (sending) {
		if (atomic_load(&ch->ch_pipes) == 0 && (rv == NNG_ETIMEDOUT || rv == NNG_ECLOSED)) {
			set_err(errmsg, errsz, "no connection to %s", ch->ch_url);
			return (HV_UNAVAILABLE);
		}
		set_err(errmsg, errsz, "sending the request failed: %s", nng_strerror(rv));
		return (hv_status_from_nng(rv));
	}
	if (rv == NNG_ETIMEDOUT) {
		set_err(errmsg, errsz, "no reply from %s within the timeout", ch->ch_url);
		return (HV_DEADLINE_EXCEEDED);
	}
	set_err(errmsg, errsz, "receiving the reply failed: %s", nng_strerror(rv));
	return (
	    rv == NNG_ECONNRESET || rv == NNG_ECLOSED ? HV_UNAVAILABLE : hv_status_from_nng(rv));
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

/* The envelope's payload field (haven.rpc.v1.Request.payload = 6, length-delimited). */
#define REQUEST_PAYLOAD_TAG ((6u << 3) | 2u)

/*
 * Packs the envelope and the request into one new nng message, with no copy in between: the
 * envelope's other fields are packed first (the payload left empty, which proto3 omits), then
 * the payload field is written by hand and req packed straight into the message behind it.
 * Field order does not matter to a protobuf decoder, so this is the same Request.
 */
hv_status
rpc_request_pack(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const rpc_call_options *o, uint32_t timeout_ms, uint64_t id, nng_msg **out)
{
	Haven__Rpc__V1__Request   env = HAVEN__RPC__V1__REQUEST__INIT;
	Haven__Rpc__V1__Metadata  md[RPC_METADATA_MAX];
	Haven__Rpc__V1__Metadata *mdp[RPC_METADATA_MAX];
	size_t                    n   = 0, plen, hlen;
	nng_msg                  *msg = NULL;
	uint8_t                  *body;
	hv_status                 st = HV_INVALID_ARGUMENT;

	if (o->n_metadata > RPC_METADATA_MAX ||
	    (plen = protobuf_c_message_get_packed_size(req)) > ch->ch_max_msg) {
		return (HV_INVALID_ARGUMENT);
	}
	/* The token is read under the lock and packed before it is released: no copy of it. */
	pthread_mutex_lock(&ch->ch_mtx);
	if (ch->ch_token != NULL) {
		haven__rpc__v1__metadata__init(&md[n]);
		md[n].key   = "authorization";
		md[n].value = ch->ch_token;
		mdp[n]      = &md[n];
		n++;
	}
	if (n + o->n_metadata > RPC_METADATA_MAX) {
		goto out;
	}
	for (size_t i = 0; i < o->n_metadata; i++, n++) {
		haven__rpc__v1__metadata__init(&md[n]);
		md[n].key   = (char *) o->metadata[i].key;
		md[n].value = (char *) o->metadata[i].value;
		mdp[n]      = &md[n];
	}
	env.method          = (char *) method;
	env.request_id      = id;
	env.timeout_ms      = timeout_ms;
	env.n_metadata      = n;
	env.metadata        = mdp;
	env.idempotency_key = o->idempotency_key != NULL ? (char *) o->idempotency_key : "";
	hlen                = haven__rpc__v1__request__get_packed_size(&env);
	st                  = HV_RESOURCE_EXHAUSTED;
	if (nng_msg_alloc(&msg, hlen + 1 + rpc_varint_size(plen) + plen) != 0) {
		goto out;
	}
	body = nng_msg_body(msg);
	haven__rpc__v1__request__pack(&env, body);
	pthread_mutex_unlock(&ch->ch_mtx);
	body += hlen;
	*body++ = REQUEST_PAYLOAD_TAG;
	body += rpc_varint_put(body, plen);
	protobuf_c_message_pack(req, body);
	*out = msg;
	return (HV_OK);
out:
	pthread_mutex_unlock(&ch->ch_mtx);
	return (st);
}

/* The fields of a haven.rpc.v1.Reply, pointing into the message they were read from. */
typedef struct reply_view {
	uint64_t       code;    /* 1 */
	const uint8_t *message; /* 2 */
	size_t         message_len;
	const uint8_t *payload; /* 3 */
	size_t         payload_len;
	uint64_t       request_id; /* 4 */
} reply_view;

/*
 * Reads the reply envelope in place: no allocation and no copy of the payload, which is then
 * unpacked straight from the message (protobuf-c's unpack of the envelope would allocate it
 * and copy the payload and the message first). The rules are protobuf's: fields in any
 * order, the last of a repeated scalar wins, unknown fields skipped; a known field with the
 * wrong wire type, a group or bytes past the end make the envelope invalid.
 */
static bool
reply_read(const uint8_t *p, size_t n, reply_view *v)
{
	const uint8_t *end = p + n;

	memset(v, 0, sizeof(*v));
	while (p < end) {
		uint64_t key, x, len = 0;
		uint64_t field;
		int      want; /* the wire type of a known field, -1 for an unknown one */

		if (!pbfield_varint(&p, end, &key) || (field = key >> 3) == 0) {
			return (false);
		}
		want = field == 1 || field == 4 ? 0 : field == 2 || field == 3 ? 2 : -1;
		if (want >= 0 && (int) (key & 7) != want) {
			return (false);
		}
		switch (key & 7) {
		case 0:
			if (!pbfield_varint(&p, end, &x)) {
				return (false);
			}
			if (field == 1) {
				v->code = x;
			} else if (field == 4) {
				v->request_id = x;
			}
			continue;
		case 2:
			if (!pbfield_varint(&p, end, &len) || len > (uint64_t) (end - p)) {
				return (false);
			}
			if (field == 2) {
				v->message     = p;
				v->message_len = (size_t) len;
			} else if (field == 3) {
				v->payload     = p;
				v->payload_len = (size_t) len;
			}
			break;
		case 1:
			len = 8;
			break;
		case 5:
			len = 4;
			break;
		default: /* groups: not in haven's protocol */
			return (false);
		}
		if (len > (uint64_t) (end - p)) {
			return (false);
		}
		p += len;
	}
	return (true);
}

hv_status
rpc_reply_decode(nng_msg *rep, uint64_t id, const ProtobufCMessageDescriptor *reply_desc,
    ProtobufCMessage **reply, char *errmsg, size_t errsz)
{
	reply_view v;
	hv_status  st;

	*reply = NULL;
	/* request_id 0 with an error: the server could not read the envelope (over its decode
	 * budget, say); the REQ socket matched the reply to this request, so its status and
	 * message are this call's. */
	if (!reply_read(nng_msg_body(rep), nng_msg_len(rep), &v) ||
	    (v.request_id != id && !(v.request_id == 0 && v.code != HV_OK))) {
		nng_msg_free(rep);
		set_err(errmsg, errsz, "%s", "reply is not a valid haven.rpc.v1.Reply");
		return (HV_DATA_LOSS);
	}
	st = v.code <= HV_STATUS_MAX ? (hv_status) v.code : HV_UNKNOWN;
	if (st == HV_OK) {
		*reply = protobuf_c_message_unpack(reply_desc, NULL, v.payload_len,
		    v.payload != NULL ? v.payload : (const uint8_t *) "");
		if (*reply == NULL) {
			set_err(errmsg, errsz, "reply payload does not decode as %s",
			    reply_desc->name);
			st = HV_DATA_LOSS;
		}
	} else if (v.message_len > 0) {
		set_err(errmsg, errsz, "%.*s", (int) (v.message_len < 1024 ? v.message_len : 1024),
		    (const char *) v.message);
	} else {
		set_err(errmsg, errsz, "%s", hv_status_name(st));
	}
	nng_msg_free(rep);
	return (st);
}

/* One attempt of a call within left ms: pack, exchange, decode. */
static hv_status
call_once(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
    const rpc_call_options *o, uint32_t left, uint64_t id, char *errmsg, size_t errsz)
{
	nng_msg  *msg, *rep;
	hv_status st;

	if ((st = rpc_request_pack(ch, method, req, o, left, id, &msg)) != HV_OK) {
		set_err(errmsg, errsz, "%s",
		    st == HV_INVALID_ARGUMENT ? "request over the size or metadata limit"
		                              : "out of memory");
		return (st);
	}
	if ((st = exchange(ch, msg, left, &rep, errmsg, errsz)) != HV_OK) {
		return (st);
	}
	return (rpc_reply_decode(rep, id, reply_desc, reply, errmsg, errsz));
}

/* Sleeps before attempt number attempt + 1 (exponential backoff with jitter: 25 ms, 50 ms,
 * ... at most 1 s). False, without sleeping, when the wait would reach past the deadline. */
static bool
backoff(unsigned attempt, uint64_t id, int64_t deadline)
{
	unsigned        base = 25u << (attempt < 6 ? attempt : 6);
	unsigned        wait = base / 2 + (unsigned) ((id * 2654435761u) % (base / 2 + 1));
	struct timespec ts;

	if (wait > 1000) {
		wait = 1000;
	}
	if (deadline - hv_clock_mono_ms() <= (int64_t) wait) {
		return (false);
	}
	ts.tv_sec  = wait / 1000;
	ts.tv_nsec = (long) (wait % 1000) * 1000000L;
	nanosleep(&ts, NULL);
	return (true);
}

hv_status
rpc_channel_call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
    const rpc_call_options *opts, char *errmsg, size_t errsz)
{
	rpc_call_options o = { 0 };
	int64_t          deadline;
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
	for (unsigned attempt = 0;; attempt++) {
		uint64_t id   = atomic_fetch_add(&ch->ch_next_id, 1);
		int64_t  left = deadline - hv_clock_mono_ms();

		if (left <= 0) {
			set_err(errmsg, errsz, "%s",
			    "deadline passed before the call could be sent");
			return (HV_DEADLINE_EXCEEDED);
		}
		st = call_once(ch, method, req, reply_desc, reply, &o, (uint32_t) left, id, errmsg,
		    errsz);
		/* Only UNAVAILABLE (no connection, or it broke) is retried, and only when the
		 * call is safe to repeat. */
		if (st != HV_UNAVAILABLE ||
		    !(o.idempotent ||
		        (o.idempotency_key != NULL && o.idempotency_key[0] != '\0')) ||
		    !backoff(attempt, id, deadline)) {
			return (st);
		}
	}
}
