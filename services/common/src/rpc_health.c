/*
 * rpc_health.c - the methods every RPC server serves: haven.health.v1.Health/Check (as in
 * grpc.health.v1, by service, from rpc_server_set_serving) and Diagnostics/Echo (see
 * rpc_health.h). Calls only the call's accessors (rpc_call.c).
 */
#include "haven/rpc.h"

#include "rpc_health.h"

#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"

#include <pthread.h>
#include <string.h>

#define ECHO_MAX (64 * 1024)

/* ---- the serving state ---------------------------------------------------------------- */

void
rpc_health_init(rpc_health *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->h_mtx, NULL);
	h->h_node_serving = true;
}

void
rpc_health_destroy(rpc_health *h)
{
	pthread_mutex_destroy(&h->h_mtx);
}

void
rpc_health_set(rpc_health *h, const char *service, bool serving)
{
	pthread_mutex_lock(&h->h_mtx);
	if (service == NULL || service[0] == '\0') {
		h->h_node_serving = serving;
		goto out;
	}
	for (size_t i = 0; i < h->h_n; i++) {
		if (strcmp(h->h_entries[i].h_name, service) == 0) {
			h->h_entries[i].h_serving = serving;
			goto out;
		}
	}
	if (h->h_n < RPC_MAX_HEALTH && strlen(service) < sizeof(h->h_entries[0].h_name)) {
		rpc_health_entry *e = &h->h_entries[h->h_n++];
		strcpy(e->h_name, service); /* length checked above */
		e->h_serving = serving;
	}
out:
	pthread_mutex_unlock(&h->h_mtx);
}

void
rpc_health_closing(rpc_health *h)
{
	pthread_mutex_lock(&h->h_mtx);
	h->h_closing = true;
	pthread_mutex_unlock(&h->h_mtx);
}

size_t
rpc_health_snapshot(rpc_health *h, rpc_health_entry *out)
{
	size_t n;

	pthread_mutex_lock(&h->h_mtx);
	n = h->h_n;
	memcpy(out, h->h_entries, n * sizeof(out[0]));
	pthread_mutex_unlock(&h->h_mtx);
	return (n);
}

/* ---- the methods ---------------------------------------------------------------------- */

static hv_status
health_check(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	rpc_health                                  *h  = svc;
	const Haven__Health__V1__HealthCheckRequest *in = (const void *) req;
	Haven__Health__V1__HealthCheckResponse      *out;
	int                                          found   = 0;
	bool                                         serving = false;

	out = rpc_call_alloc(call, sizeof(*out));
	if (out == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__health__v1__health_check_response__init(out);

	pthread_mutex_lock(&h->h_mtx);
	if (in->service == NULL || in->service[0] == '\0') {
		found   = 1;
		serving = h->h_node_serving && !h->h_closing;
	} else {
		for (size_t i = 0; i < h->h_n; i++) {
			if (strcmp(h->h_entries[i].h_name, in->service) == 0) {
				found   = 1;
				serving = h->h_entries[i].h_serving && !h->h_closing;
			}
		}
	}
	pthread_mutex_unlock(&h->h_mtx);

	if (!found) {
		return (rpc_call_error(call, HV_NOT_FOUND, "unknown service %.128s", in->service));
	}
	out->status = serving
	    ? HAVEN__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
	    : HAVEN__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	*reply      = &out->base;
	return (HV_OK);
}

static hv_status
diag_echo(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Diag__V1__EchoRequest *in = (const void *) req;
	Haven__Diag__V1__EchoResponse      *out;

	(void) svc;
	if (in->payload.len > ECHO_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "echo payload of %zu bytes is over the limit of %d", in->payload.len,
		    ECHO_MAX));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__diag__v1__echo_response__init(out);
	out->payload = in->payload; /* lives in the call's arena until the reply is sent */
	*reply       = &out->base;
	return (HV_OK);
}

const rpc_method_impl rpc_health_methods[1] = {
	{ .name             = "Check",
	    .handler        = health_check,
	    .roles          = RPC_ROLES_ANY,
	    .inline_handler = true },
};

const rpc_method_impl rpc_diag_methods[1] = {
	{ .name             = "Echo",
	    .handler        = diag_echo,
	    .roles          = RPC_ROLES_AUTHENTICATED,
	    .inline_handler = true },
};
