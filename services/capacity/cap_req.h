/*
 * cap_req.h - what the capacity service's RPC handler files share: one call on its way
 * through a write function (req_ctx), the role masks of the methods, and the helpers every
 * handler uses (errors, the call's arena, paging, the caller's organisation, the directory's
 * audit entry). Private to services/capacity; the handlers are registered in cap_rpc.c.
 */
#ifndef HAVEN_CAP_REQ_H
#define HAVEN_CAP_REQ_H

#include "cap_records.h"

#define M_ROLES_DIRECTORY (RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN)
#define M_ROLES_SEE_SERVICES                                                                       \
	(RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS | RPC_ROLE_REFERRER |         \
	    RPC_ROLE_PROVIDER)
#define M_ROLES_REGISTER_SERVICE                                                                   \
	(RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS | RPC_ROLE_PROVIDER)
#define M_ROLES_CHANGE_SERVICE  (RPC_ROLE_OPERATOR | RPC_ROLES_COORDINATORS | RPC_ROLE_PROVIDER)
#define M_ROLES_APPROVE_SERVICE (RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS)
/* Those whose reach over services is every region. */
#define M_ROLES_ALL_REGIONS (RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLE_NATIONAL_COORDINATOR)

#define ID_RULE "1 to 63 characters of a-z 0-9 . _ -"

typedef Haven__Capacity__V1__Organisation org_t;
typedef Haven__Capacity__V1__Service      service_t;
typedef Haven__Capacity__V1__ServiceView  view_t;

/* One call on its way through a write function. */
typedef struct req_ctx {
	cap_service      *r_cs;
	rpc_call         *r_call;
	const rpc_caller *r_caller;
	const void       *r_in; /* the decoded request */
	int64_t           r_now;
	ProtobufCMessage *r_out;     /* the reply, in the call's arena */
	const service_t  *r_changed; /* a service whose free places changed: announce it */
} req_ctx;

/* ---- cap_req.c ----------------------------------------------------------------------- */

/* Starts r for a call of the service svc with the decoded request in, at the service's now. */
void cap_req_init(req_ctx *r, rpc_call *call, void *svc, const void *in);

/* The call's arena: replies and the records they point to live there until it is sent. */
ProtobufCAllocator *cap_req_arena(const req_ctx *r);

/* RESOURCE_EXHAUSTED: the reply is over the call's memory budget. */
hv_status cap_no_memory(rpc_call *call);

/* The two fields of every change to an existing record: its id (what names it, e.g.
 * "service id") and the version the change is based on. INVALID_ARGUMENT naming the field. */
hv_status cap_check_id_version(rpc_call *call, const char *what, const char *id, uint64_t based_on);

/* Passes on a status from the store functions with their message (or the status name). */
hv_status cap_pass(rpc_call *call, hv_status st, const char *err);

/* Whether the caller has one of roles. */
bool cap_has_role(const req_ctx *r, unsigned roles);

/* Runs fn in a write transaction and announces the changed service once it committed. */
hv_status cap_write_call(req_ctx *r, store_write_fn fn, ProtobufCMessage **reply);

/* A service as answers show it (free places, freshness, age), in the call's arena. */
view_t *cap_view_of(rpc_call *call, service_t *svc, int64_t now);

/* page_size 0: the default; over the maximum: the maximum. */
size_t cap_page_size(uint32_t n);

/* Positions c on the first key after page_token (or the first key). */
hv_status cap_seek_after(store_cursor *c, const char *token, const void **k, size_t *kl,
    const void **v, size_t *vl);

/* The caller's own organisation (in the call's arena). PERMISSION_DENIED when it is not in
 * the directory or is disabled (its token was checked a moment ago; this is the same answer
 * inside the transaction). */
hv_status cap_caller_org(req_ctx *r, store_txn *txn, org_t **out);

/* Appends the audit entry of a directory change inside its transaction: the method, the
 * caller, and the id of the organisation or service changed (as the entry's purpose; no
 * subject). Without an audit log (cap_set_audit) nothing. */
hv_status cap_audit_directory(req_ctx *r, store_txn *txn, const char *target);

/* ---- the handlers (rpc_handler_fn of rpc.h), registered by cap_register ------------- */

/* cap_rpc_orgs.c: the partner directory's organisations. */
hv_status cap_rpc_register_org(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_update_org(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_disable_org(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_get_org(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_list_orgs(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);

/* cap_rpc_services.c: services and their availability. */
hv_status cap_rpc_register_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_update_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_retire_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_approve_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_get_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_update_availability(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_change_availability(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);

/* cap_rpc.c: searching and counting. */
hv_status cap_rpc_find_services(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_summary(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);
hv_status cap_rpc_list_regions(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply);

#endif
