/*
 * cap_req.c - the helpers of the capacity service's RPC handlers (see cap_req.h).
 */
#include "cap_req.h"

#include <stdio.h>
#include <string.h>

void
cap_req_init(req_ctx *r, rpc_call *call, void *svc, const void *in)
{
	memset(r, 0, sizeof(*r));
	r->r_cs     = svc;
	r->r_call   = call;
	r->r_caller = rpc_call_caller(call);
	r->r_in     = in;
	r->r_now    = cap_now_ms(svc);
}

ProtobufCAllocator *
cap_req_arena(const req_ctx *r)
{
	return (rpc_call_allocator(r->r_call));
}

hv_status
cap_no_memory(rpc_call *call)
{
	return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "reply over the call's memory budget"));
}

hv_status
cap_check_id_version(rpc_call *call, const char *what, const char *id, uint64_t based_on)
{
	if (!ids_valid(id)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "%s must be " ID_RULE, what));
	}
	if (based_on == 0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "based_on_version is required: the version the change is based on"));
	}
	return (HV_OK);
}

hv_status
cap_pass(rpc_call *call, hv_status st, const char *err)
{
	return (rpc_call_error(call, st, "%s", err[0] != '\0' ? err : hv_status_name(st)));
}

bool
cap_has_role(const req_ctx *r, unsigned roles)
{
	return ((r->r_caller->role & roles) != 0);
}

hv_status
cap_write_call(req_ctx *r, store_write_fn fn, ProtobufCMessage **reply)
{
	hv_status st = store_write(r->r_cs->cs_store, fn, r);

	if (st != HV_OK) {
		return (st);
	}
	if (r->r_changed != NULL) {
		cap_publish_change(r->r_cs, r->r_changed);
	}
	*reply = r->r_out;
	return (HV_OK);
}

view_t *
cap_view_of(rpc_call *call, service_t *svc, int64_t now)
{
	view_t *v = rpc_call_alloc(call, sizeof(*v));
	bool    fresh;

	if (v == NULL) {
		return (NULL);
	}
	haven__capacity__v1__service_view__init(v);
	v->service = svc;
	v->free    = cap_free_places(svc, now, &fresh);
	v->freshness =
	    fresh ? HAVEN__CAPACITY__V1__FRESHNESS__FRESH : HAVEN__CAPACITY__V1__FRESHNESS__UNKNOWN;
	v->age_s = now > (int64_t) svc->updated_ms
	    ? (uint64_t) (now - (int64_t) svc->updated_ms) / 1000
	    : 0;
	return (v);
}

size_t
cap_page_size(uint32_t n)
{
	return (n == 0 ? CAP_PAGE_DEFAULT : n > CAP_PAGE_MAX ? CAP_PAGE_MAX : n);
}

hv_status
cap_seek_after(store_cursor *c, const char *token, const void **k, size_t *kl, const void **v,
    size_t *vl)
{
	size_t    n = token != NULL ? strlen(token) : 0;
	hv_status st;

	st = store_cursor_seek(c, token, n, k, kl, v, vl);
	if (st == HV_OK && n > 0 && *kl == n && memcmp(*k, token, n) == 0) {
		st = store_cursor_next(c, k, kl, v, vl);
	}
	return (st);
}

hv_status
cap_caller_org(req_ctx *r, store_txn *txn, org_t **out)
{
	hv_status st = cap_read_org(r->r_cs, txn, r->r_caller->org_id, cap_req_arena(r), out);

	if (st == HV_NOT_FOUND || (st == HV_OK && (*out)->disabled)) {
		return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
		    "organisation %s is not an enabled partner", r->r_caller->org_id));
	}
	return (st);
}

void
cap_set_audit(cap_service *cs, audit *a)
{
	cs->cs_audit = a;
}

hv_status
cap_audit_directory(req_ctx *r, store_txn *txn, const char *target)
{
	audit_entry e;

	if (r->r_cs->cs_audit == NULL) {
		return (HV_OK);
	}
	audit_entry_fill(&e, r->r_caller, rpc_call_method(r->r_call), NULL, target, r->r_now);
	return (audit_append(r->r_cs->cs_audit, txn, &e));
}
