/*
 * cap_rpc_services.c - provider services over RPC: register, change, retire, approve, read,
 * and their availability (a figure set on a version, or a step freed or taken). Who may touch
 * a service is decided here from the directory (the rules are in cap_rpc.c's header).
 */
#include "cap_req.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether the caller may register this (checked) new service. */
static hv_status
may_register_service(req_ctx *r, store_txn *txn, const service_t *svc)
{
	org_t    *me, *owner;
	hv_status st;

	if (cap_has_role(r, M_ROLES_ALL_REGIONS)) {
		return (HV_OK);
	}
	if (cap_has_role(r, RPC_ROLE_PROVIDER)) {
		if (strcmp(svc->org_id, r->r_caller->org_id) != 0) {
			return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
			    "organisation %s may register services of its own only",
			    r->r_caller->org_id));
		}
		return (HV_OK);
	}
	if (!cap_has_role(r, RPC_ROLE_COORDINATOR)) {
		return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
		    "role %s may not register services", rpc_role_name(r->r_caller->role)));
	}
	if ((st = cap_caller_org(r, txn, &me)) != HV_OK) {
		return (st);
	}
	if ((st = cap_read_org(r->r_cs, txn, svc->org_id, cap_req_arena(r), &owner)) != HV_OK) {
		return (st == HV_NOT_FOUND
		        ? rpc_call_error(r->r_call, st, "no organisation %s", svc->org_id)
		        : st);
	}
	if (strcmp(owner->region, me->region) != 0 || strcmp(svc->service_area, me->region) != 0) {
		return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
		    "a coordinator registers services of providers of its own region (%s), in that "
		    "region, only",
		    me->region));
	}
	return (HV_OK);
}

/* Whether the caller may change a service (its current record). */
static hv_status
may_change_service(req_ctx *r, store_txn *txn, const service_t *svc)
{
	org_t    *me;
	hv_status st;

	if (cap_has_role(r, M_ROLES_ALL_REGIONS)) {
		return (HV_OK); /* admins reach this only through ApproveService */
	}
	if (cap_has_role(r, RPC_ROLE_PROVIDER) && strcmp(svc->org_id, r->r_caller->org_id) == 0) {
		return (HV_OK);
	}
	if (cap_has_role(r, RPC_ROLE_COORDINATOR)) {
		if ((st = cap_caller_org(r, txn, &me)) != HV_OK) {
			return (st);
		}
		if (strcmp(svc->service_area, me->region) == 0) {
			return (HV_OK);
		}
	}
	return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
	    "organisation %s may not change service %s", r->r_caller->org_id, svc->id));
}

/* Whether a provider's service, as it would be stored, needs approval: outside the home
 * region of the provider's organisation, or more places than the node lets a provider open
 * by itself. Only providers' own changes are judged; the approvers' are not. */
static hv_status
needs_approval(req_ctx *r, store_txn *txn, const service_t *svc, bool *out)
{
	org_t    *me;
	hv_status st;

	*out = false;
	if (!cap_has_role(r, RPC_ROLE_PROVIDER)) {
		return (HV_OK);
	}
	if ((st = cap_caller_org(r, txn, &me)) != HV_OK) {
		return (st);
	}
	*out = strcmp(svc->service_area, me->region) != 0 ||
	    svc->maximum > r->r_cs->cs_approval_places;
	return (HV_OK);
}

/* Logs a service that waits for approval, or was approved (ids and counts only). */
static void
log_approval(const req_ctx *r, const service_t *svc, const char *what)
{
	log_info("directory: service %s of %s in %s with %u places %s by %s %s", svc->id,
	    svc->org_id, svc->service_area, svc->maximum, what, rpc_role_name(r->r_caller->role),
	    r->r_caller->org_id[0] != '\0' ? r->r_caller->org_id : "(local)");
}

/* Reads the service a change is about; NOT_FOUND, or PERMISSION_DENIED, or FAILED_PRECONDITION
 * for a retired one, or ABORTED when based_on_version is not its version. */
static hv_status
service_for_change(req_ctx *r, store_txn *txn, const char *id, uint64_t based_on, service_t **out)
{
	hv_status st;

	if ((st = cap_read_service(r->r_cs, txn, id, cap_req_arena(r), out)) != HV_OK) {
		return (
		    st == HV_NOT_FOUND ? rpc_call_error(r->r_call, st, "no service %s", id) : st);
	}
	if ((st = may_change_service(r, txn, *out)) != HV_OK) {
		return (st);
	}
	if ((*out)->retired) {
		return (
		    rpc_call_error(r->r_call, HV_FAILED_PRECONDITION, "service %s is retired", id));
	}
	if (based_on != 0 && (*out)->version != based_on) {
		return (
		    rpc_call_error(r->r_call, HV_ABORTED, "service %s is at version %llu, not %llu",
		        id, (unsigned long long) (*out)->version, (unsigned long long) based_on));
	}
	return (HV_OK);
}

/* ---- services ------------------------------------------------------------------------ */

static hv_status
register_service_fn(store_txn *txn, void *arg)
{
	req_ctx                                           *r  = arg;
	const Haven__Capacity__V1__RegisterServiceRequest *in = r->r_in;
	service_t                                         *svc;
	char                                               id[CAP_ID_MAX];
	char                                               err[CAP_ERR_MAX] = "";
	bool                                               pending;
	hv_status                                          st;

	r->r_out     = NULL;
	r->r_changed = NULL;
	if ((st = may_register_service(r, txn, in->service)) != HV_OK) {
		return (st);
	}
	if ((st = cap_add_service(r->r_cs, txn, in->service, id, err, sizeof(err))) != HV_OK) {
		return (cap_pass(r->r_call, st, err));
	}
	if ((st = cap_read_service(r->r_cs, txn, id, cap_req_arena(r), &svc)) != HV_OK) {
		return (st);
	}
	if ((st = needs_approval(r, txn, svc, &pending)) != HV_OK) {
		return (st);
	}
	svc->pending = pending;
	if (pending && (st = cap_put_service(r->r_cs, txn, svc)) != HV_OK) {
		return (st);
	}
	r->r_out     = &svc->base;
	r->r_changed = svc;
	return (HV_OK);
}

hv_status
cap_rpc_register_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__RegisterServiceRequest *in = (const void *) req;
	req_ctx                                            r;
	char                                               err[CAP_ERR_MAX] = "";
	hv_status                                          st;

	if ((st = cap_check_new_service(svc, in->service, err, sizeof(err))) != HV_OK) {
		return (cap_pass(call, st, err));
	}
	cap_req_init(&r, call, svc, in);
	if ((st = cap_write_call(&r, register_service_fn, reply)) == HV_OK &&
	    ((const service_t *) r.r_out)->pending) {
		log_approval(&r, (const service_t *) r.r_out, "waits for approval");
	}
	return (st);
}

/* A service that changes its type: the organisation running it must run that type (a
 * peer-support group runs peer-support services only). */
static hv_status
owner_may_run(req_ctx *r, store_txn *txn, const char *org_id, Haven__Capacity__V1__ServiceType type)
{
	org_t    *owner;
	char      err[160];
	hv_status st;

	if ((st = cap_read_org(r->r_cs, txn, org_id, cap_req_arena(r), &owner)) != HV_OK) {
		return (
		    st == HV_NOT_FOUND ? HV_DATA_LOSS : st); /* a service names its organisation */
	}
	if ((st = cap_org_may_run(owner, type, err, sizeof(err))) != HV_OK) {
		return (rpc_call_error(r->r_call, st, "%s", err));
	}
	return (HV_OK);
}

static hv_status
update_service_fn(store_txn *txn, void *arg)
{
	req_ctx                                         *r  = arg;
	const Haven__Capacity__V1__UpdateServiceRequest *in = r->r_in;
	const service_t                                 *ch = in->service;
	service_t                                       *svc;
	org_t                                           *me;
	bool                                             grows, approval;
	hv_status                                        st;

	r->r_out     = NULL;
	r->r_changed = NULL;
	if ((st = service_for_change(r, txn, ch->id, in->based_on_version, &svc)) != HV_OK) {
		return (st);
	}
	if (ch->org_id[0] != '\0' && strcmp(ch->org_id, svc->org_id) != 0) {
		return (rpc_call_error(r->r_call, HV_INVALID_ARGUMENT,
		    "org_id cannot change (service %s is run by %s)", svc->id, svc->org_id));
	}
	if (cap_has_role(r, RPC_ROLE_COORDINATOR) &&
	    strcmp(ch->service_area, svc->service_area) != 0) {
		if ((st = cap_caller_org(r, txn, &me)) != HV_OK) {
			return (st);
		}
		if (strcmp(ch->service_area, me->region) != 0) {
			return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
			    "a coordinator keeps services in its own region (%s)", me->region));
		}
	}
	if (ch->type != svc->type && (st = owner_may_run(r, txn, svc->org_id, ch->type)) != HV_OK) {
		return (st);
	}
	if (ch->maximum < svc->available) {
		return (rpc_call_error(r->r_call, HV_FAILED_PRECONDITION,
		    "maximum %u is under the %u places reported available: lower availability "
		    "first",
		    ch->maximum, svc->available));
	}
	/* A provider that moves its service or grows it past what was approved waits again. */
	grows = strcmp(ch->service_area, svc->service_area) != 0 || ch->maximum > svc->maximum;
	if ((st = needs_approval(r, txn, ch, &approval)) != HV_OK) {
		return (st);
	}
	svc->pending           = svc->pending || (grows && approval);
	svc->name              = ch->name[0] != '\0' ? ch->name : svc->id;
	svc->type              = ch->type;
	svc->service_area      = ch->service_area;
	svc->n_populations     = ch->n_populations;
	svc->populations       = ch->populations;
	svc->n_languages       = ch->n_languages;
	svc->languages         = ch->languages;
	svc->n_accessibility   = ch->n_accessibility;
	svc->accessibility     = ch->accessibility;
	svc->n_specialisations = ch->n_specialisations;
	svc->specialisations   = ch->specialisations;
	svc->maximum           = ch->maximum;
	if (svc->occupied > svc->maximum - svc->available) {
		svc->occupied =
		    svc->maximum - svc->available; /* fewer places: fewer to give back */
	}
	svc->unit = ch->unit[0] != '\0' ? ch->unit : CAP_UNIT_DEFAULT;
	svc->report_interval_s =
	    ch->report_interval_s != 0 ? ch->report_interval_s : CAP_INTERVAL_DEFAULT_S;
	svc->front_door_contact = ch->front_door_contact;
	svc->version++;
	if ((st = cap_put_service(r->r_cs, txn, svc)) != HV_OK) {
		return (st);
	}
	r->r_out     = &svc->base;
	r->r_changed = svc; /* the interval or the region may have changed what it offers */
	return (HV_OK);
}

hv_status
cap_rpc_update_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__UpdateServiceRequest *in = (const void *) req;
	req_ctx                                          r;
	char                                             err[CAP_ERR_MAX] = "";
	hv_status                                        st;

	if (in->service == NULL) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "service is required"));
	}
	if ((st = cap_check_id_version(call, "service id", in->service->id,
	         in->based_on_version)) != HV_OK) {
		return (st);
	}
	if ((st = cap_check_service_fields(svc, in->service, err, sizeof(err))) != HV_OK) {
		return (cap_pass(call, st, err));
	}
	cap_req_init(&r, call, svc, in);
	return (cap_write_call(&r, update_service_fn, reply));
}

static hv_status
retire_service_fn(store_txn *txn, void *arg)
{
	req_ctx                                         *r  = arg;
	const Haven__Capacity__V1__RetireServiceRequest *in = r->r_in;
	service_t                                       *svc;
	hv_status                                        st;

	r->r_out     = NULL;
	r->r_changed = NULL;
	if ((st = service_for_change(r, txn, in->id, in->based_on_version, &svc)) != HV_OK) {
		return (st);
	}
	svc->retired = true;
	svc->version++;
	if ((st = cap_put_service(r->r_cs, txn, svc)) != HV_OK) {
		return (st);
	}
	r->r_out     = &svc->base;
	r->r_changed = svc;
	return (HV_OK);
}

hv_status
cap_rpc_retire_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__RetireServiceRequest *in = (const void *) req;
	req_ctx                                          r;
	hv_status                                        st;

	if ((st = cap_check_id_version(call, "service id", in->id, in->based_on_version)) !=
	    HV_OK) {
		return (st);
	}
	cap_req_init(&r, call, svc, in);
	return (cap_write_call(&r, retire_service_fn, reply));
}

static hv_status
approve_service_fn(store_txn *txn, void *arg)
{
	req_ctx                                          *r  = arg;
	const Haven__Capacity__V1__ApproveServiceRequest *in = r->r_in;
	service_t                                        *svc;
	hv_status                                         st;

	r->r_out     = NULL;
	r->r_changed = NULL;
	if ((st = service_for_change(r, txn, in->id, in->based_on_version, &svc)) != HV_OK) {
		return (st);
	}
	/* The provider that runs it may change it, never approve it. */
	if (!cap_has_role(r, M_ROLES_APPROVE_SERVICE)) {
		return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
		    "a coordinator of region %s or an admin approves service %s", svc->service_area,
		    svc->id));
	}
	if (!svc->pending) {
		return (rpc_call_error(r->r_call, HV_FAILED_PRECONDITION,
		    "service %s does not wait for approval", svc->id));
	}
	svc->pending = false;
	svc->version++;
	if ((st = cap_put_service(r->r_cs, txn, svc)) != HV_OK ||
	    (st = cap_audit_directory(r, txn, svc->id)) != HV_OK) {
		return (st);
	}
	r->r_out     = &svc->base;
	r->r_changed = svc; /* its places count from now: waiting needs may take them */
	return (HV_OK);
}

hv_status
cap_rpc_approve_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__ApproveServiceRequest *in = (const void *) req;
	req_ctx                                           r;
	hv_status                                         st;

	if ((st = cap_check_id_version(call, "service id", in->id, in->based_on_version)) !=
	    HV_OK) {
		return (st);
	}
	cap_req_init(&r, call, svc, in);
	if ((st = cap_write_call(&r, approve_service_fn, reply)) == HV_OK) {
		log_approval(&r, (const service_t *) r.r_out, "approved");
	}
	return (st);
}

hv_status
cap_rpc_get_service(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__GetServiceRequest *in = (const void *) req;
	cap_service                                  *cs = svc;
	store_txn                                    *txn;
	service_t                                    *s;
	view_t                                       *v;
	hv_status                                     st;

	if (!ids_valid(in->id)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "service id must be " ID_RULE));
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = cap_read_service(cs, txn, in->id, rpc_call_allocator(call), &s);
	store_read_end(txn);
	if (st != HV_OK) {
		return (
		    st == HV_NOT_FOUND ? rpc_call_error(call, st, "no service %s", in->id) : st);
	}
	if ((v = cap_view_of(call, s, cap_now_ms(cs))) == NULL) {
		return (cap_no_memory(call));
	}
	*reply = &v->base;
	return (HV_OK);
}

/* Sets a service's free places (checked by the caller) and confirms the figure now, in the
 * caller's transaction; the reply is the service's view, and a change of its free places or
 * freshness is announced after the commit. */
static hv_status
set_available(req_ctx *r, store_txn *txn, service_t *svc, uint32_t available)
{
	view_t   *v;
	uint32_t  before, after;
	bool      was_fresh, fresh;
	hv_status st;

	before          = cap_free_places(svc, r->r_now, &was_fresh);
	svc->available  = available;
	svc->updated_ms = (uint64_t) r->r_now; /* a confirmation, also when unchanged */
	svc->version++;
	after = cap_free_places(svc, r->r_now, &fresh);
	if ((st = cap_put_service(r->r_cs, txn, svc)) != HV_OK) {
		return (st);
	}
	if ((v = cap_view_of(r->r_call, svc, r->r_now)) == NULL) {
		return (cap_no_memory(r->r_call));
	}
	r->r_out = &v->base;
	if (before != after || was_fresh != fresh) {
		r->r_changed = svc;
	}
	return (HV_OK);
}

static hv_status
update_availability_fn(store_txn *txn, void *arg)
{
	req_ctx                                              *r  = arg;
	const Haven__Capacity__V1__UpdateAvailabilityRequest *in = r->r_in;
	service_t                                            *svc;
	hv_status                                             st;

	r->r_out     = NULL;
	r->r_changed = NULL;
	/* The version is checked after the bounds: a figure that can never be right is reported
	 * as such, not as a conflict. */
	if ((st = service_for_change(r, txn, in->service_id, 0, &svc)) != HV_OK) {
		return (st);
	}
	if (in->available > svc->maximum) {
		return (rpc_call_error(r->r_call, HV_INVALID_ARGUMENT,
		    "available %u is over the maximum of %u places", in->available, svc->maximum));
	}
	if (svc->version != in->based_on_version) {
		return (rpc_call_error(r->r_call, HV_ABORTED,
		    "service %s is at version %llu, not %llu", svc->id,
		    (unsigned long long) svc->version, (unsigned long long) in->based_on_version));
	}
	if (in->available < svc->held) {
		return (
		    rpc_call_error(r->r_call, HV_FAILED_PRECONDITION, "%u %s held for open offers",
		        svc->held, svc->held == 1 ? "place is" : "places are"));
	}
	/* A stock-take is the provider's count: placements it shows as left already are no
	 * longer occupied here either. */
	if (svc->occupied > svc->maximum - in->available) {
		svc->occupied = svc->maximum - in->available;
	}
	return (set_available(r, txn, svc, in->available));
}

hv_status
cap_rpc_update_availability(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__UpdateAvailabilityRequest *in = (const void *) req;
	req_ctx                                               r;
	hv_status                                             st;

	if ((st = cap_check_id_version(call, "service_id", in->service_id, in->based_on_version)) !=
	    HV_OK) {
		return (st);
	}
	cap_req_init(&r, call, svc, in);
	return (cap_write_call(&r, update_availability_fn, reply));
}

/* One place freed or taken, in one step and without a version: a shelter's "one bed freed" or
 * a walk-in, also while other places are held. */
static hv_status
change_availability_fn(store_txn *txn, void *arg)
{
	req_ctx                                              *r  = arg;
	const Haven__Capacity__V1__ChangeAvailabilityRequest *in = r->r_in;
	service_t                                            *svc;
	int64_t                                               next;
	hv_status                                             st;

	r->r_out     = NULL;
	r->r_changed = NULL;
	if ((st = service_for_change(r, txn, in->service_id, 0, &svc)) != HV_OK) {
		return (st);
	}
	next = (int64_t) svc->available + in->delta;
	if (in->delta < 0 && next < (int64_t) svc->held) {
		return (rpc_call_error(r->r_call, HV_FAILED_PRECONDITION,
		    "service %s has %u free %s, %u held for open offers: decline an offer to take "
		    "a held place",
		    svc->id, svc->available, svc->available == 1 ? "place" : "places", svc->held));
	}
	if (in->delta > 0 && next + svc->occupied > svc->maximum) {
		return (rpc_call_error(r->r_call, HV_FAILED_PRECONDITION,
		    "service %s has %u of %u places free and %u occupied: no place left to free",
		    svc->id, svc->available, svc->maximum, svc->occupied));
	}
	return (set_available(r, txn, svc, (uint32_t) next));
}

hv_status
cap_rpc_change_availability(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__ChangeAvailabilityRequest *in = (const void *) req;
	req_ctx                                               r;

	if (!ids_valid(in->service_id)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "service_id must be " ID_RULE));
	}
	if (in->delta == 0 || in->delta < -CAP_PLACES_MAX || in->delta > CAP_PLACES_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "delta must be a number of places freed (1..%d) or taken (-1..-%d), not %d",
		    CAP_PLACES_MAX, CAP_PLACES_MAX, (int) in->delta));
	}
	cap_req_init(&r, call, svc, in);
	return (cap_write_call(&r, change_availability_fn, reply));
}
