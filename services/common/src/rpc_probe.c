/*
 * rpc_probe.c - one Health/Check over a fresh connection to one of this process's own
 * listeners: the listener watchdog's question "does this listener still take new callers?"
 * (rpc_nng.c, "the listener watchdog").
 *
 * A probe makes its own REQ socket and dialer per call, so that it always goes through a new
 * connection and its negotiation (the part libnng 1.5.2 can break), and any reply at all
 * (even a refusal) counts as an answer: the listener accepted the connection and handed it to
 * the server's socket.
 *
 * tls+tcp:// listeners require a client certificate, and the node holds no partner's. So the
 * probe has an identity of its own (rpc_probe_new): a P-256 key and a self-signed client
 * certificate made at start, kept in memory only, never written anywhere, and trusted by this
 * process's TLS listeners alone (rpc_probe_cert is added to their trust beside the node CA).
 * It admits a TLS connection and nothing more: identity on tls+tcp:// is proven per session
 * against the partner directory (auth.c), where the probe's certificate never is, so the
 * probe is an anonymous caller reaching public methods only, as any partner's system before
 * it signs in. The probe does not check the server's certificate: it talks to its own process
 * over the listener's own address and sends nothing but a Health/Check.
 */
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/status.h"

#include "rpc_close.h"
#include "rpc_nng.h"

#include "haven/rpc/v1/rpc.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <stdlib.h>
#include <string.h>

struct rpc_probe {
	nng_tls_config *p_tls;  /* client mode, the probe's own certificate */
	char           *p_cert; /* its PEM, for the listeners' trust */
	uint64_t        p_next; /* request ids */
};

hv_status
rpc_probe_new(rpc_probe **out)
{
	rpc_probe *p   = NULL;
	char      *key = NULL;
	hv_status  st;
	int        rv;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if ((st = crypto_self_signed_client("haven listener probe", hv_clock_wall_ms() / 1000,
	         &p->p_cert, &key)) != HV_OK) {
		goto out;
	}
	if ((rv = nng_tls_config_alloc(&p->p_tls, NNG_TLS_MODE_CLIENT)) != 0 ||
	    (rv = nng_tls_config_auth_mode(p->p_tls, NNG_TLS_AUTH_MODE_NONE)) != 0 ||
	    (rv = nng_tls_config_own_cert(p->p_tls, p->p_cert, key, NULL)) != 0) {
		st = hv_status_from_nng(rv);
		goto out;
	}
	*out = p;
	p    = NULL;
out:
	if (key != NULL) {
		crypto_wipe(key, strlen(key));
		free(key);
	}
	rpc_probe_free(p);
	return (st);
}

const char *
rpc_probe_cert(const rpc_probe *p)
{
	return (p->p_cert);
}

void
rpc_probe_free(rpc_probe *p)
{
	if (p == NULL) {
		return;
	}
	if (p->p_tls != NULL) {
		nng_tls_config_free(p->p_tls);
	}
	free(p->p_cert);
	free(p);
}

/* Sends a Health/Check request on s and waits for the reply (the socket's timeouts). HV_OK for
 * any Reply that names our request. */
static hv_status
probe_exchange(nng_socket s, uint64_t id, uint32_t timeout_ms)
{
	Haven__Rpc__V1__Request req = HAVEN__RPC__V1__REQUEST__INIT;
	Haven__Rpc__V1__Reply  *rep;
	uint8_t                 buf[128];
	void                   *in = NULL;
	size_t                  n;
	hv_status               st;
	int                     rv;

	req.method     = "haven.health.v1.Health/Check";
	req.request_id = id;
	req.timeout_ms = timeout_ms;
	n              = haven__rpc__v1__request__pack(&req, buf);
	if ((rv = nng_send(s, buf, n, 0)) != 0 ||
	    (rv = nng_recv(s, &in, &n, NNG_FLAG_ALLOC)) != 0) {
		return (rv == NNG_ETIMEDOUT ? HV_DEADLINE_EXCEEDED : hv_status_from_nng(rv));
	}
	rep = haven__rpc__v1__reply__unpack(NULL, n, in);
	st  = rep != NULL && rep->request_id == id ? HV_OK : HV_DATA_LOSS;
	haven__rpc__v1__reply__free_unpacked(rep, NULL);
	nng_free(in, n);
	return (st);
}

/* The probe's socket, closed on a thread of its own (rpc_close.c): during a stall libnng
 * 1.5.2's nng_close of a socket whose connection the listener never took can wait for ever,
 * and the watchdog must go on to listen again. */
#define PROBE_CLOSE_WAIT_MS 1000

static void
probe_socket_close(void *arg)
{
	nng_socket *s = arg;

	nng_close(*s);
	free(s);
}

static void
probe_close(nng_socket s)
{
	nng_socket *held;

	if (nng_socket_id(s) <= 0) {
		return;
	}
	if ((held = malloc(sizeof(*held))) == NULL) {
		nng_close(s);
		return;
	}
	*held = s;
	(void) rpc_close_bounded(probe_socket_close, held, PROBE_CLOSE_WAIT_MS,
	    "the listener probe's socket");
}

hv_status
rpc_probe_call(rpc_probe *p, const char *url, int timeout_ms)
{
	nng_socket s = NNG_SOCKET_INITIALIZER;
	nng_dialer d;
	bool       tls = strncmp(url, "tls+tcp://", 10) == 0;
	hv_status  st;
	int        rv;

	if (tls && p == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	/* Resending is off: one request on one connection is the question. The send waits for
	 * the connection (dial, TLS, SP negotiation), the receive for the reply. */
	if ((rv = nng_req0_open(&s)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, timeout_ms)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms)) != 0 ||
	    (rv = nng_dialer_create(&d, s, url)) != 0 ||
	    (tls && (rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, p->p_tls)) != 0) ||
	    (rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0) {
		st = hv_status_from_nng(rv);
		goto out;
	}
	st = probe_exchange(s, p != NULL ? __atomic_add_fetch(&p->p_next, 1, __ATOMIC_RELAXED) : 1,
	    (uint32_t) timeout_ms);
out:
	probe_close(s);
	return (st);
}
