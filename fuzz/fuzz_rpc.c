/*
 * fuzz_rpc.c - the RPC envelope and dispatch decode of the real server (rpc_server.c): the
 * input is one request as it comes off the wire, given to rpc_server_decode, which runs the
 * server's own checks up to the handler: the haven.rpc.v1.Request envelope, the NUL and field-0
 * checks, the unknown-field walk, the metadata, the method lookup and the payload decoded as
 * that method's request type. Every service of the node is registered (Health and Diagnostics
 * with their handlers, the others with a stand-in: no handler runs here), so every request
 * type of every service is reached through the method name.
 */
#include "fuzz_util.h"

#include "haven/log.h"
#include "haven/rpc.h"
#include "rpc_internal.h"

#include "haven/admin/v1/admin.pb-c.h"
#include "haven/auth/v1/auth.pb-c.h"
#include "haven/capacity/v1/capacity.pb-c.h"
#include "haven/consent/v1/audit.pb-c.h"
#include "haven/consent/v1/consent.pb-c.h"
#include "haven/people/v1/people.pb-c.h"
#include "haven/referral/v1/referral.pb-c.h"

#include <stdlib.h>

#define IMPLS_MAX 64

static rpc_server *srv;

static hv_status
stand_in(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	abort(); /* rpc_server_decode runs no handler */
}

static void
add(const ProtobufCServiceDescriptor *d)
{
	rpc_method_impl impls[IMPLS_MAX];

	if (d->n_methods > IMPLS_MAX) {
		abort();
	}
	for (unsigned i = 0; i < d->n_methods; i++) {
		impls[i] = (rpc_method_impl) { .name = d->methods[i].name,
			.handler                     = stand_in,
			.roles                       = RPC_ROLES_ANY };
	}
	if (rpc_server_add_service(srv, d, impls, d->n_methods, NULL) != HV_OK) {
		abort();
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("haven-fuzz", LOG_LEVEL_OFF);
	if (rpc_server_open(&srv, NULL) != HV_OK) {
		abort();
	}
	add(&haven__admin__v1__admin__descriptor);
	add(&haven__auth__v1__auth__descriptor);
	add(&haven__capacity__v1__capacity__descriptor);
	add(&haven__consent__v1__consent__descriptor);
	add(&haven__audit__v1__audit__descriptor);
	add(&haven__referral__v1__referrals__descriptor);
	add(&haven__people__v1__people__descriptor);
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char      msg[RPC_ERRMSG_MAX] = "";
	hv_status st                  = rpc_server_decode(srv, data, size, msg, sizeof(msg));

	if (st != HV_OK && msg[0] == '\0') {
		abort(); /* every refusal names its problem */
	}
	return (0);
}
