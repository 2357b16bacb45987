/*
 * cap_rpc.c - haven.capacity.v1.Capacity: the RPC handlers of the capacity registry and the
 * rules of who may do what.
 *
 * Who may call a method at all is the method's role mask (the RPC server checks it before the
 * handler runs). Whom a call may touch is decided here, from the partner directory: a
 * coordinator's region is the region of its own organisation record, read in the transaction
 * that makes the change, never a region the request names. The rules:
 *
 *   organisations   operator, admin only: register, change (certificate included), disable
 *                   and enable; every change is logged with who made it. A coordinator that
 *                   could replace a certificate could sign in as that organisation and read
 *                   its people (issue 12, hole 2).
 *   register a      operator, admin: any; provider: for its own organisation; coordinator:
 *   service         for a provider of its region, in its region
 *   change a        operator; the provider organisation that runs it; a coordinator of the
 *   service         service's region (which it may not move out of its region)
 *   approve a       operator, admin; a coordinator of the service's region. A service that a
 *   service         provider registers outside its organisation's region, or with more places
 *                   than service_approval_places, or moves out of it or grows past that later,
 *                   is pending until approved: never routed to, held or counted (issue 12,
 *                   hole 4: a provider captured referrals of any region that way).
 *
 * Every change runs in one store_write: the checks that need the store, the version check and
 * the write see one snapshot, so a write based on an old version is ABORTED and nothing else
 * slips in between. Requests are checked for bad input before the transaction. Replies and the
 * records they point to live in the call's arena (rpc_call_allocator), which lasts until the
 * reply is sent. Write functions may run more than once (store.h), so they start from scratch
 * each time and touch nothing outside the transaction but the call's arena and error message.
 */
#include "cap_internal.h"
#include "cap_metrics.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define M_ROLES_DIRECTORY (RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN)
#define M_ROLES_SEE_SERVICES                                                                \
	(RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS | RPC_ROLE_REFERRER |      \
	    RPC_ROLE_PROVIDER)
#define M_ROLES_REGISTER_SERVICE                                                            \
	(RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS | RPC_ROLE_PROVIDER)
#define M_ROLES_CHANGE_SERVICE (RPC_ROLE_OPERATOR | RPC_ROLES_COORDINATORS | RPC_ROLE_PROVIDER)
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
	const void       *r_in;      /* the decoded request */
	int64_t           r_now;
	ProtobufCMessage *r_out;     /* the reply, in the call's arena */
	const service_t  *r_changed; /* a service whose free places changed: announce it */
} req_ctx;

static void
req_init(req_ctx *r, rpc_call *call, void *svc, const void *in)
{
	memset(r, 0, sizeof(*r));
	r->r_cs     = svc;
	r->r_call   = call;
	r->r_caller = rpc_call_caller(call);
	r->r_in     = in;
	r->r_now    = cap_now_ms(svc);
}

static ProtobufCAllocator *
arena(const req_ctx *r)
{
	return (rpc_call_allocator(r->r_call));
}

static hv_status
no_memory(rpc_call *call)
{
	return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "reply over the call's memory budget"));
}

/* The two fields of every change to an existing record: its id (what names it, e.g.
 * "service id") and the version the change is based on. INVALID_ARGUMENT naming the field. */
static hv_status
check_id_version(rpc_call *call, const char *what, const char *id, uint64_t based_on)
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

/* Passes on a status from the store functions with their message (or the status name). */
static hv_status
pass(rpc_call *call, hv_status st, const char *err)
{
	return (rpc_call_error(call, st, "%s", err[0] != '\0' ? err : hv_status_name(st)));
}

static bool
has_role(const req_ctx *r, unsigned roles)
{
	return ((r->r_caller->role & roles) != 0);
}

/* Runs fn in a write transaction and announces the changed service once it committed. */
static hv_status
write_call(req_ctx *r, store_write_fn fn, ProtobufCMessage **reply)
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

static view_t *
view_of(rpc_call *call, service_t *svc, int64_t now)
{
	view_t *v = rpc_call_alloc(call, sizeof(*v));
	bool    fresh;

	if (v == NULL) {
		return (NULL);
	}
	haven__capacity__v1__service_view__init(v);
	v->service   = svc;
	v->free      = cap_free_places(svc, now, &fresh);
	v->freshness = fresh ? HAVEN__CAPACITY__V1__FRESHNESS__FRESH
	                     : HAVEN__CAPACITY__V1__FRESHNESS__UNKNOWN;
	v->age_s     = now > (int64_t) svc->updated_ms
	        ? (uint64_t) (now - (int64_t) svc->updated_ms) / 1000
	        : 0;
	return (v);
}

/* page_size 0: the default; over the maximum: the maximum. */
static size_t
page_size(uint32_t n)
{
	return (n == 0 ? CAP_PAGE_DEFAULT : n > CAP_PAGE_MAX ? CAP_PAGE_MAX : n);
}

/* Positions c on the first key after page_token (or the first key). */
static hv_status
seek_after(store_cursor *c, const char *token, const void **k, size_t *kl, const void **v,
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

/* ---- who may do what ---------------------------------------------------------------- */

/* The caller's own organisation (in the call's arena). PERMISSION_DENIED when it is not in
 * the directory or is disabled (its token was checked a moment ago; this is the same answer
 * inside the transaction). */
static hv_status
caller_org(req_ctx *r, store_txn *txn, org_t **out)
{
	hv_status st = cap_read_org(r->r_cs, txn, r->r_caller->org_id, arena(r), out);

	if (st == HV_NOT_FOUND || (st == HV_OK && (*out)->disabled)) {
		return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
		    "organisation %s is not an enabled partner", r->r_caller->org_id));
	}
	return (st);
}

/* Whether the caller may change the directory's organisations: the operator and admins only.
 * The method's roles say the same; this is the check inside the transaction that writes. */
static hv_status
may_manage_org(req_ctx *r)
{
	if (has_role(r, M_ROLES_DIRECTORY)) {
		return (HV_OK);
	}
	return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
	    "only the operator or an admin changes organisations, not role %s",
	    rpc_role_name(r->r_caller->role)));
}

void
cap_set_audit(cap_service *cs, audit *a)
{
	cs->cs_audit = a;
}

/* Appends the audit entry of a directory change inside its transaction: the method, the
 * caller, and the id of the organisation or service changed (as the entry's purpose; no
 * subject). Without an audit log (cap_set_audit) nothing. */
static hv_status
audit_directory(req_ctx *r, store_txn *txn, const char *target)
{
	audit_entry e;

	if (r->r_cs->cs_audit == NULL) {
		return (HV_OK);
	}
	memset(&e, 0, sizeof(e));
	e.time_ms = r->r_now;
	audit_entry_caller(&e, r->r_caller);
	snprintf(e.method, sizeof(e.method), "%s", rpc_call_method(r->r_call));
	snprintf(e.purpose, sizeof(e.purpose), "%s", target);
	e.result = HV_OK;
	return (audit_append(r->r_cs->cs_audit, txn, &e));
}

/* Logs a change of the directory: what, which organisation, by whom (ids only). */
static void
log_directory(const req_ctx *r, const char *what, const char *org_id)
{
	log_info("directory: organisation %s %s by %s %s", org_id, what,
	    rpc_role_name(r->r_caller->role),
	    r->r_caller->org_id[0] != '\0' ? r->r_caller->org_id : "(local)");
}

/* Whether the caller may register this (checked) new service. */
static hv_status
may_register_service(req_ctx *r, store_txn *txn, const service_t *svc)
{
	org_t    *me, *owner;
	hv_status st;

	if (has_role(r, M_ROLES_ALL_REGIONS)) {
		return (HV_OK);
	}
	if (has_role(r, RPC_ROLE_PROVIDER)) {
		if (strcmp(svc->org_id, r->r_caller->org_id) != 0) {
			return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
			    "organisation %s may register services of its own only",
			    r->r_caller->org_id));
		}
		return (HV_OK);
	}
	if (!has_role(r, RPC_ROLE_COORDINATOR)) {
		return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED, "role %s may not register services",
		    rpc_role_name(r->r_caller->role)));
	}
	if ((st = caller_org(r, txn, &me)) != HV_OK) {
		return (st);
	}
	if ((st = cap_read_org(r->r_cs, txn, svc->org_id, arena(r), &owner)) != HV_OK) {
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

	if (has_role(r, M_ROLES_ALL_REGIONS)) {
		return (HV_OK); /* admins reach this only through ApproveService */
	}
	if (has_role(r, RPC_ROLE_PROVIDER) && strcmp(svc->org_id, r->r_caller->org_id) == 0) {
		return (HV_OK);
	}
	if (has_role(r, RPC_ROLE_COORDINATOR)) {
		if ((st = caller_org(r, txn, &me)) != HV_OK) {
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
	if (!has_role(r, RPC_ROLE_PROVIDER)) {
		return (HV_OK);
	}
	if ((st = caller_org(r, txn, &me)) != HV_OK) {
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
service_for_change(req_ctx *r, store_txn *txn, const char *id, uint64_t based_on,
    service_t **out)
{
	hv_status st;

	if ((st = cap_read_service(r->r_cs, txn, id, arena(r), out)) != HV_OK) {
		return (st == HV_NOT_FOUND ? rpc_call_error(r->r_call, st, "no service %s", id) : st);
	}
	if ((st = may_change_service(r, txn, *out)) != HV_OK) {
		return (st);
	}
	if ((*out)->retired) {
		return (rpc_call_error(r->r_call, HV_FAILED_PRECONDITION, "service %s is retired", id));
	}
	if (based_on != 0 && (*out)->version != based_on) {
		return (rpc_call_error(r->r_call, HV_ABORTED, "service %s is at version %llu, not %llu",
		    id, (unsigned long long) (*out)->version, (unsigned long long) based_on));
	}
	return (HV_OK);
}

/* ---- organisations ------------------------------------------------------------------ */

static hv_status
reply_org(req_ctx *r, store_txn *txn, const char *id)
{
	org_t    *org;
	hv_status st = cap_read_org(r->r_cs, txn, id, arena(r), &org);

	if (st == HV_OK) {
		r->r_out = &org->base;
	}
	return (st);
}

static hv_status
register_org_fn(store_txn *txn, void *arg)
{
	req_ctx                                         *r  = arg;
	const Haven__Capacity__V1__RegisterOrganisationRequest *in = r->r_in;
	char                                             err[CAP_ERR_MAX] = "";
	hv_status                                        st;

	r->r_out = NULL;
	if ((st = may_manage_org(r)) != HV_OK) {
		return (st);
	}
	if ((st = cap_add_organisation(r->r_cs, txn, in->organisation, err, sizeof(err))) != HV_OK) {
		return (pass(r->r_call, st, err));
	}
	if ((st = audit_directory(r, txn, in->organisation->id)) != HV_OK) {
		return (st);
	}
	return (reply_org(r, txn, in->organisation->id));
}

static hv_status
h_register_org(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__RegisterOrganisationRequest *in = (const void *) req;
	req_ctx                                                 r;
	char                                                    err[CAP_ERR_MAX] = "";
	hv_status                                               st;

	if ((st = cap_check_org(svc, in->organisation, NULL, err, sizeof(err))) != HV_OK) {
		return (pass(call, st, err));
	}
	req_init(&r, call, svc, in);
	if ((st = write_call(&r, register_org_fn, reply)) == HV_OK) {
		log_directory(&r, "registered", in->organisation->id);
	}
	return (st);
}

static hv_status
update_org_fn(store_txn *txn, void *arg)
{
	req_ctx                                              *r  = arg;
	const Haven__Capacity__V1__UpdateOrganisationRequest *in = r->r_in;
	const org_t                                          *ch = in->organisation;
	org_t                                                *cur, *next;
	char                                                  fp[65];
	char                                                  err[CAP_ERR_MAX] = "";
	hv_status                                             st;

	r->r_out = NULL;
	if ((st = cap_read_org(r->r_cs, txn, ch->id, arena(r), &cur)) != HV_OK) {
		return (st == HV_NOT_FOUND ? rpc_call_error(r->r_call, st, "no organisation %s", ch->id)
		                           : st);
	}
	if ((st = may_manage_org(r)) != HV_OK) {
		return (st);
	}
	if (cur->version != in->based_on_version) {
		return (rpc_call_error(r->r_call, HV_ABORTED,
		    "organisation %s is at version %llu, not %llu", cur->id,
		    (unsigned long long) cur->version, (unsigned long long) in->based_on_version));
	}
	if ((next = rpc_call_alloc(r->r_call, sizeof(*next))) == NULL) {
		return (no_memory(r->r_call));
	}
	/* Empty fields keep their current value. */
	*next = *cur;
	if (ch->name != NULL && ch->name[0] != '\0') {
		next->name = ch->name;
	}
	if (ch->role != HAVEN__CAPACITY__V1__ROLE__ROLE_UNSPECIFIED) {
		next->role = ch->role;
	}
	if (ch->region != NULL && ch->region[0] != '\0') {
		next->region = ch->region;
	}
	if (ch->cert_pem != NULL && ch->cert_pem[0] != '\0') {
		next->cert_pem = ch->cert_pem;
	}
	if (ch->contact != NULL && ch->contact[0] != '\0') {
		next->contact = ch->contact;
	}
	if ((st = cap_check_org(r->r_cs, next, fp, err, sizeof(err))) != HV_OK ||
	    (next->cert_pem != cur->cert_pem &&
	        (st = cap_check_cert(r->r_cs, next->id, next->cert_pem, err, sizeof(err))) !=
	            HV_OK)) {
		return (pass(r->r_call, st, err));
	}
	if ((st = cap_cert_unique(r->r_cs, txn, fp, next->id, err, sizeof(err))) != HV_OK) {
		return (pass(r->r_call, st, err));
	}
	if ((next->cert_sha256 = rpc_call_strdup(r->r_call, fp)) == NULL) {
		return (no_memory(r->r_call));
	}
	next->version++;
	next->updated_at_ms = (uint64_t) r->r_now;
	if ((st = cap_put_org(r->r_cs, txn, next)) != HV_OK ||
	    (st = audit_directory(r, txn, next->id)) != HV_OK) {
		return (st);
	}
	r->r_out = &next->base;
	return (HV_OK);
}

static hv_status
h_update_org(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__UpdateOrganisationRequest *in = (const void *) req;
	req_ctx                                               r;
	hv_status                                             st;

	if (in->organisation == NULL) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "organisation is required"));
	}
	if ((st = check_id_version(call, "organisation id", in->organisation->id,
	         in->based_on_version)) != HV_OK) {
		return (st);
	}
	req_init(&r, call, svc, in);
	if ((st = write_call(&r, update_org_fn, reply)) == HV_OK) {
		log_directory(&r, "changed", in->organisation->id);
	}
	return (st);
}

static hv_status
disable_org_fn(store_txn *txn, void *arg)
{
	req_ctx                                               *r  = arg;
	const Haven__Capacity__V1__DisableOrganisationRequest *in = r->r_in;
	org_t                                                 *org;
	hv_status                                              st;

	r->r_out = NULL;
	if ((st = cap_read_org(r->r_cs, txn, in->id, arena(r), &org)) != HV_OK) {
		return (st == HV_NOT_FOUND ? rpc_call_error(r->r_call, st, "no organisation %s", in->id)
		                           : st);
	}
	if ((st = may_manage_org(r)) != HV_OK) {
		return (st);
	}
	if (org->disabled != in->disabled) {
		org->disabled      = in->disabled;
		org->version++;
		org->updated_at_ms = (uint64_t) r->r_now;
		if ((st = cap_put_org(r->r_cs, txn, org)) != HV_OK ||
		    (st = audit_directory(r, txn, org->id)) != HV_OK) {
			return (st);
		}
	}
	r->r_out = &org->base;
	return (HV_OK);
}

static hv_status
h_disable_org(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__DisableOrganisationRequest *in = (const void *) req;
	req_ctx                                                r;
	hv_status                                              st;

	if (!ids_valid(in->id)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "organisation id must be " ID_RULE));
	}
	req_init(&r, call, svc, in);
	if ((st = write_call(&r, disable_org_fn, reply)) == HV_OK) {
		log_directory(&r, in->disabled ? "disabled" : "enabled", in->id);
	}
	return (st);
}

static hv_status
h_get_org(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__GetOrganisationRequest *in = (const void *) req;
	cap_service                                       *cs = svc;
	store_txn                                         *txn;
	org_t                                             *org;
	hv_status                                          st;

	if (!ids_valid(in->id)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "organisation id must be " ID_RULE));
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = cap_read_org(cs, txn, in->id, rpc_call_allocator(call), &org);
	store_read_end(txn);
	if (st != HV_OK) {
		return (st == HV_NOT_FOUND ? rpc_call_error(call, st, "no organisation %s", in->id) : st);
	}
	*reply = &org->base;
	return (HV_OK);
}

static hv_status
h_list_orgs(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__ListOrganisationsRequest *in  = (const void *) req;
	cap_service                                         *cs  = svc;
	Haven__Capacity__V1__ListOrganisationsResponse      *out = NULL;
	size_t                                               max = page_size(in->page_size);
	store_txn                                           *txn = NULL;
	store_cursor                                        *c   = NULL;
	const void                                          *k, *v;
	size_t                                               kl, vl;
	hv_status                                            st;

	if (in->role != 0 &&
	    !cap_enum_ok(&haven__capacity__v1__role__descriptor, (int) in->role, 1 << 30)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "role %d is not a known role",
		    (int) in->role));
	}
	if (in->region[0] != '\0' && cap_region_index(cs, in->region) < 0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "region '%.64s' is not a region of the region map", in->region));
	}
	if (in->page_token[0] != '\0' && !ids_valid(in->page_token)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "page_token is not one a previous answer gave"));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (no_memory(call));
	}
	haven__capacity__v1__list_organisations_response__init(out);
	if ((out->organisations = rpc_call_alloc(call, max * sizeof(*out->organisations))) == NULL) {
		return (no_memory(call));
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK ||
	    (st = store_cursor_open(txn, cs->cs_orgs, &c)) != HV_OK) {
		goto out;
	}
	for (st = seek_after(c, in->page_token, &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		/* Filter on a malloc'd copy; only matches go into the arena. */
		org_t *o = haven__capacity__v1__organisation__unpack(NULL, vl, v);
		bool   match;

		if (o == NULL) {
			st = HV_DATA_LOSS;
			goto out;
		}
		match = (in->role == 0 || o->role == in->role) &&
		    (in->region[0] == '\0' || strcmp(o->region, in->region) == 0);
		haven__capacity__v1__organisation__free_unpacked(o, NULL);
		if (!match) {
			continue;
		}
		if (out->n_organisations == max) {
			out->next_page_token =
			    out->organisations[max - 1]->id; /* more follow: resume after the last */
			break;
		}
		if ((o = haven__capacity__v1__organisation__unpack(rpc_call_allocator(call), vl, v)) ==
		    NULL) {
			st = no_memory(call);
			goto out;
		}
		o->cert_pem                             = ""; /* lists carry the fingerprint only */
		out->organisations[out->n_organisations++] = o;
	}
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	st     = HV_OK;
	*reply = &out->base;
out:
	store_cursor_close(c);
	store_read_end(txn);
	return (st);
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
		return (pass(r->r_call, st, err));
	}
	if ((st = cap_read_service(r->r_cs, txn, id, arena(r), &svc)) != HV_OK) {
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

static hv_status
h_register_service(
    rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__RegisterServiceRequest *in = (const void *) req;
	req_ctx                                            r;
	char                                               err[CAP_ERR_MAX] = "";
	hv_status                                          st;

	if ((st = cap_check_new_service(svc, in->service, err, sizeof(err))) != HV_OK) {
		return (pass(call, st, err));
	}
	req_init(&r, call, svc, in);
	if ((st = write_call(&r, register_service_fn, reply)) == HV_OK &&
	    ((const service_t *) r.r_out)->pending) {
		log_approval(&r, (const service_t *) r.r_out, "waits for approval");
	}
	return (st);
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
	if (has_role(r, RPC_ROLE_COORDINATOR) && strcmp(ch->service_area, svc->service_area) != 0) {
		if ((st = caller_org(r, txn, &me)) != HV_OK) {
			return (st);
		}
		if (strcmp(ch->service_area, me->region) != 0) {
			return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
			    "a coordinator keeps services in its own region (%s)", me->region));
		}
	}
	if (ch->maximum < svc->available) {
		return (rpc_call_error(r->r_call, HV_FAILED_PRECONDITION,
		    "maximum %u is under the %u places reported available: lower availability first",
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
		svc->occupied = svc->maximum - svc->available; /* fewer places: fewer to give back */
	}
	svc->unit              = ch->unit[0] != '\0' ? ch->unit : CAP_UNIT_DEFAULT;
	svc->report_interval_s = ch->report_interval_s != 0 ? ch->report_interval_s
	                                                    : CAP_INTERVAL_DEFAULT_S;
	svc->front_door_contact = ch->front_door_contact;
	svc->version++;
	if ((st = cap_put_service(r->r_cs, txn, svc)) != HV_OK) {
		return (st);
	}
	r->r_out     = &svc->base;
	r->r_changed = svc; /* the interval or the region may have changed what it offers */
	return (HV_OK);
}

static hv_status
h_update_service(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__UpdateServiceRequest *in = (const void *) req;
	req_ctx                                          r;
	char                                             err[CAP_ERR_MAX] = "";
	hv_status                                        st;

	if (in->service == NULL) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "service is required"));
	}
	if ((st = check_id_version(call, "service id", in->service->id, in->based_on_version)) !=
	    HV_OK) {
		return (st);
	}
	if ((st = cap_check_service_fields(svc, in->service, err, sizeof(err))) != HV_OK) {
		return (pass(call, st, err));
	}
	req_init(&r, call, svc, in);
	return (write_call(&r, update_service_fn, reply));
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

static hv_status
h_retire_service(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__RetireServiceRequest *in = (const void *) req;
	req_ctx                                          r;
	hv_status                                        st;

	if ((st = check_id_version(call, "service id", in->id, in->based_on_version)) != HV_OK) {
		return (st);
	}
	req_init(&r, call, svc, in);
	return (write_call(&r, retire_service_fn, reply));
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
	if (!has_role(r, M_ROLES_APPROVE_SERVICE)) {
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
	    (st = audit_directory(r, txn, svc->id)) != HV_OK) {
		return (st);
	}
	r->r_out     = &svc->base;
	r->r_changed = svc; /* its places count from now: waiting needs may take them */
	return (HV_OK);
}

static hv_status
h_approve_service(
    rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__ApproveServiceRequest *in = (const void *) req;
	req_ctx                                           r;
	hv_status                                         st;

	if ((st = check_id_version(call, "service id", in->id, in->based_on_version)) != HV_OK) {
		return (st);
	}
	req_init(&r, call, svc, in);
	if ((st = write_call(&r, approve_service_fn, reply)) == HV_OK) {
		log_approval(&r, (const service_t *) r.r_out, "approved");
	}
	return (st);
}

static hv_status
h_get_service(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
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
		return (st == HV_NOT_FOUND ? rpc_call_error(call, st, "no service %s", in->id) : st);
	}
	if ((v = view_of(call, s, cap_now_ms(cs))) == NULL) {
		return (no_memory(call));
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
	if ((v = view_of(r->r_call, svc, r->r_now)) == NULL) {
		return (no_memory(r->r_call));
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
		return (rpc_call_error(r->r_call, HV_ABORTED, "service %s is at version %llu, not %llu",
		    svc->id, (unsigned long long) svc->version,
		    (unsigned long long) in->based_on_version));
	}
	if (in->available < svc->held) {
		return (rpc_call_error(r->r_call, HV_FAILED_PRECONDITION,
		    "%u %s held for open offers", svc->held, svc->held == 1 ? "place is" : "places are"));
	}
	/* A stock-take is the provider's count: placements it shows as left already are no
	 * longer occupied here either. */
	if (svc->occupied > svc->maximum - in->available) {
		svc->occupied = svc->maximum - in->available;
	}
	return (set_available(r, txn, svc, in->available));
}

static hv_status
h_update_availability(
    rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__UpdateAvailabilityRequest *in = (const void *) req;
	req_ctx                                               r;
	hv_status                                             st;

	if ((st = check_id_version(call, "service_id", in->service_id, in->based_on_version)) !=
	    HV_OK) {
		return (st);
	}
	req_init(&r, call, svc, in);
	return (write_call(&r, update_availability_fn, reply));
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

static hv_status
h_change_availability(
    rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
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
	req_init(&r, call, svc, in);
	return (write_call(&r, change_availability_fn, reply));
}

/* Region names to a mask of map indices; INVALID_ARGUMENT for a name not in the map. */
static hv_status
region_mask(rpc_call *call, const cap_service *cs, char **names, size_t n, uint64_t *mask)
{
	*mask = 0;
	if (n > REGIONS_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "regions has %zu entries, at most %d",
		    n, REGIONS_MAX));
	}
	for (size_t i = 0; i < n; i++) {
		int idx = cap_region_index(cs, names[i]);
		if (idx < 0) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "region '%.64s' is not a region of the region map", names[i]));
		}
		*mask |= (uint64_t) 1 << idx;
	}
	return (HV_OK);
}

/* Whether a service speaks one of the languages asked for: tags compare without case, and a
 * tag asked for also finds its subtags ("pt" finds "pt-BR"). */
static bool
speaks(const service_t *svc, char **langs, size_t n)
{
	if (n == 0) {
		return (true);
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(langs[i]);
		for (size_t j = 0; j < svc->n_languages; j++) {
			const char *have = svc->languages[j];
			if (strncasecmp(have, langs[i], len) == 0 && (have[len] == '\0' || have[len] == '-')) {
				return (true);
			}
		}
	}
	return (false);
}

static hv_status
h_find_services(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__FindServicesRequest *in  = (const void *) req;
	cap_service                                    *cs  = svc;
	Haven__Capacity__V1__FindServicesResponse      *out;
	size_t                                          max = page_size(in->page_size);
	int64_t                                         now = cap_now_ms(cs);
	uint64_t                                        mask;
	store_txn                                      *txn = NULL;
	store_cursor                                   *c   = NULL;
	const void                                     *k, *v;
	size_t                                          kl, vl;
	hv_status                                       st;

	if (in->type != 0 &&
	    !cap_enum_ok(&haven__capacity__v1__service_type__descriptor, (int) in->type, CAP_TYPES)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "type %d is not a known service type",
		    (int) in->type));
	}
	if (in->population != 0 && !cap_enum_ok(&haven__capacity__v1__population__descriptor,
	                               (int) in->population, CAP_POPULATIONS)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "population %d is not a known population",
		    (int) in->population));
	}
	if (in->n_languages > CAP_LIST_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "languages has %zu entries, at most %d",
		    in->n_languages, CAP_LIST_MAX));
	}
	for (size_t i = 0; i < in->n_languages; i++) {
		if (!cap_lang_ok(in->languages[i])) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "languages: entry %zu must be %d to %d characters of A-Z a-z 0-9 -", i + 1,
			    CAP_LANG_MIN, CAP_LANG_MAX));
		}
	}
	if ((st = region_mask(call, cs, in->regions, in->n_regions, &mask)) != HV_OK) {
		return (st);
	}
	if (in->page_token[0] != '\0' && !ids_valid(in->page_token)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "page_token is not one a previous answer gave"));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (no_memory(call));
	}
	haven__capacity__v1__find_services_response__init(out);
	if ((out->services = rpc_call_alloc(call, max * sizeof(*out->services))) == NULL) {
		return (no_memory(call));
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK ||
	    (st = store_cursor_open(txn, cs->cs_brief, &c)) != HV_OK) {
		goto out;
	}
	/* The brief answers every filter but the languages; only candidates are unpacked. */
	for (st = seek_after(c, in->page_token, &k, &kl, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		cap_brief   b;
		const void *sv;
		size_t      svl;
		service_t  *s;
		view_t     *view;

		if (vl != sizeof(b)) {
			st = HV_DATA_LOSS;
			goto out;
		}
		memcpy(&b, v, sizeof(b));
		if (b.b_retired || (in->type != 0 && b.b_type != (uint8_t) in->type) ||
		    (in->population != 0 && (b.b_populations & (1u << in->population)) == 0) ||
		    (mask != 0 && (b.b_region >= 64 || (mask & ((uint64_t) 1 << b.b_region)) == 0))) {
			continue;
		}
		if (in->only_free && (b.b_pending || now - (int64_t) b.b_updated_ms >
		                             (int64_t) b.b_report_interval_s * 1000 ||
		                         b.b_available <= b.b_held)) {
			continue;
		}
		if ((st = store_get(txn, cs->cs_services, k, kl, &sv, &svl)) != HV_OK) {
			st = st == HV_NOT_FOUND ? HV_DATA_LOSS : st;
			goto out;
		}
		if (in->n_languages > 0) {
			bool match;
			if ((s = haven__capacity__v1__service__unpack(NULL, svl, sv)) == NULL) {
				st = HV_DATA_LOSS;
				goto out;
			}
			match = speaks(s, in->languages, in->n_languages);
			haven__capacity__v1__service__free_unpacked(s, NULL);
			if (!match) {
				continue;
			}
		}
		if (out->n_services == max) {
			out->next_page_token = out->services[max - 1]->service->id;
			break;
		}
		if ((s = haven__capacity__v1__service__unpack(rpc_call_allocator(call), svl, sv)) ==
		        NULL ||
		    (view = view_of(call, s, now)) == NULL) {
			st = no_memory(call);
			goto out;
		}
		out->services[out->n_services++] = view;
	}
	if (st != HV_OK && st != HV_NOT_FOUND) {
		goto out;
	}
	st     = HV_OK;
	*reply = &out->base;
out:
	store_cursor_close(c);
	store_read_end(txn);
	return (st);
}

static hv_status
h_summary(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__SummaryRequest *in    = (const void *) req;
	cap_service                               *cs    = svc;
	Haven__Capacity__V1__SummaryResponse      *out;
	Haven__Capacity__V1__SummaryCell          *cells = NULL;
	cap_cell                                  *agg   = NULL;
	size_t                                     n     = 0;
	int64_t                                    now   = cap_now_ms(cs);
	uint64_t                                   mask;
	store_txn                                 *txn;
	hv_status                                  st;

	if ((st = region_mask(call, cs, in->regions, in->n_regions, &mask)) != HV_OK) {
		return (st);
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = cap_summary(cs, txn, mask, now, &agg, &n);
	store_read_end(txn);
	if (st != HV_OK) {
		goto out;
	}
	st = no_memory(call);
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		goto out;
	}
	haven__capacity__v1__summary_response__init(out);
	if (n > 0 && ((out->cells = rpc_call_alloc(call, n * sizeof(*out->cells))) == NULL ||
	                 (cells = rpc_call_alloc(call, n * sizeof(*cells))) == NULL)) {
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		haven__capacity__v1__summary_cell__init(&cells[i]);
		/* The map outlives the call: its names need no copy. */
		cells[i].region         = (char *) region_map_name(cs->cs_regions, agg[i].cc_region);
		cells[i].type           = agg[i].cc_type;
		cells[i].population     = agg[i].cc_population;
		cells[i].services       = agg[i].cc_services;
		cells[i].maximum        = agg[i].cc_maximum;
		cells[i].free           = agg[i].cc_free;
		cells[i].stale_services = agg[i].cc_stale_services;
		out->cells[i]           = &cells[i];
	}
	out->n_cells  = n;
	out->as_of_ms = (uint64_t) now;
	*reply        = &out->base;
	st            = HV_OK;
out:
	free(agg);
	return (st);
}

static hv_status
h_list_regions(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	cap_service                              *cs = svc;
	const region_map                         *m  = cs->cs_regions;
	size_t                                    n  = region_map_count(m);
	Haven__Capacity__V1__ListRegionsResponse *out;

	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (no_memory(call));
	}
	haven__capacity__v1__list_regions_response__init(out);
	if (n > 0 && (out->regions = rpc_call_alloc(call, n * sizeof(*out->regions))) == NULL) {
		return (no_memory(call));
	}
	for (size_t i = 0; i < n; i++) {
		Haven__Capacity__V1__Region *reg = rpc_call_alloc(call, sizeof(*reg));
		int                          nb[REGIONS_MAX];
		size_t                       nn = region_map_neighbours(m, i, nb);

		if (reg == NULL) {
			return (no_memory(call));
		}
		haven__capacity__v1__region__init(reg);
		if (nn > 0 && (reg->neighbours = rpc_call_alloc(call, nn * sizeof(char *))) == NULL) {
			return (no_memory(call));
		}
		reg->name = (char *) region_map_name(m, i);
		for (size_t j = 0; j < nn; j++) {
			reg->neighbours[j] = (char *) region_map_name(m, (size_t) nb[j]);
		}
		reg->n_neighbours = nn;
		out->regions[i]   = reg;
	}
	out->n_regions = n;
	*reply         = &out->base;
	return (HV_OK);
}

/* ---- registration --------------------------------------------------------------------- */

hv_status
cap_register(cap_service *cs, rpc_server *srv)
{
	static const rpc_method_impl impls[] = {
		{ .name = "RegisterOrganisation", .handler = h_register_org, .roles = M_ROLES_DIRECTORY },
		{ .name = "UpdateOrganisation", .handler = h_update_org, .roles = M_ROLES_DIRECTORY },
		{ .name = "DisableOrganisation", .handler = h_disable_org, .roles = M_ROLES_DIRECTORY },
		{ .name = "GetOrganisation", .handler = h_get_org, .roles = RPC_ROLES_AUTHENTICATED },
		{ .name = "ListOrganisations", .handler = h_list_orgs,
		    .roles = RPC_ROLES_AUTHENTICATED },
		{ .name = "RegisterService", .handler = h_register_service,
		    .roles = M_ROLES_REGISTER_SERVICE },
		{ .name = "UpdateService", .handler = h_update_service,
		    .roles = M_ROLES_CHANGE_SERVICE },
		{ .name = "RetireService", .handler = h_retire_service,
		    .roles = M_ROLES_CHANGE_SERVICE },
		{ .name = "ApproveService", .handler = h_approve_service,
		    .roles = M_ROLES_APPROVE_SERVICE },
		{ .name = "GetService", .handler = h_get_service, .roles = M_ROLES_SEE_SERVICES },
		{ .name = "UpdateAvailability", .handler = h_update_availability,
		    .roles = M_ROLES_CHANGE_SERVICE },
		{ .name = "ChangeAvailability", .handler = h_change_availability,
		    .roles = M_ROLES_CHANGE_SERVICE },
		{ .name = "FindServices", .handler = h_find_services, .roles = M_ROLES_SEE_SERVICES },
		/* Numbers only: municipalities may ask. */
		{ .name = "Summary", .handler = h_summary, .roles = RPC_ROLES_AUTHENTICATED },
		{ .name = "ListRegions", .handler = h_list_regions, .roles = RPC_ROLES_AUTHENTICATED,
		    .inline_handler = true },
	};

	hv_status st;

	if (cs == NULL || srv == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = rpc_server_add_service(srv, &haven__capacity__v1__capacity__descriptor, impls,
	         sizeof(impls) / sizeof(impls[0]), cs)) != HV_OK) {
		return (st);
	}
	/* Services, stale services and places per region and type (cap_metrics.c). */
	return (metrics_add_collector(rpc_server_metrics(srv), cap_metrics_collect, cs));
}
