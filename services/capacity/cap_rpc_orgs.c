/*
 * cap_rpc_orgs.c - the partner directory's organisations over RPC: register, change
 * (certificate included), disable and enable, read and list. Only the operator and admins
 * change organisations (cap_rpc.c states who may do what); every change is audited and logged
 * with who made it.
 */
#include "cap_req.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether the caller may change the directory's organisations: the operator and admins only.
 * The method's roles say the same; this is the check inside the transaction that writes. */
static hv_status
may_manage_org(req_ctx *r)
{
	if (cap_has_role(r, M_ROLES_DIRECTORY)) {
		return (HV_OK);
	}
	return (rpc_call_error(r->r_call, HV_PERMISSION_DENIED,
	    "only the operator or an admin changes organisations, not role %s",
	    rpc_role_name(r->r_caller->role)));
}

/* Logs a change of the directory: what, which organisation, by whom (ids only). */
static void
log_directory(const req_ctx *r, const char *what, const char *org_id)
{
	log_info("directory: organisation %s %s by %s %s", org_id, what,
	    rpc_role_name(r->r_caller->role),
	    r->r_caller->org_id[0] != '\0' ? r->r_caller->org_id : "(local)");
}

/* ---- organisations ------------------------------------------------------------------ */

static hv_status
reply_org(req_ctx *r, store_txn *txn, const char *id)
{
	org_t    *org;
	hv_status st = cap_read_org(r->r_cs, txn, id, cap_req_arena(r), &org);

	if (st == HV_OK) {
		r->r_out = &org->base;
	}
	return (st);
}

static hv_status
register_org_fn(store_txn *txn, void *arg)
{
	req_ctx                                                *r                = arg;
	const Haven__Capacity__V1__RegisterOrganisationRequest *in               = r->r_in;
	char                                                    err[CAP_ERR_MAX] = "";
	hv_status                                               st;

	r->r_out = NULL;
	if ((st = may_manage_org(r)) != HV_OK) {
		return (st);
	}
	if ((st = cap_add_organisation(r->r_cs, txn, in->organisation, err, sizeof(err))) !=
	    HV_OK) {
		return (cap_pass(r->r_call, st, err));
	}
	if ((st = cap_audit_directory(r, txn, in->organisation->id)) != HV_OK) {
		return (st);
	}
	return (reply_org(r, txn, in->organisation->id));
}

hv_status
cap_rpc_register_org(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__RegisterOrganisationRequest *in = (const void *) req;
	req_ctx                                                 r;
	char                                                    err[CAP_ERR_MAX] = "";
	hv_status                                               st;

	if ((st = cap_check_org(svc, in->organisation, NULL, err, sizeof(err))) != HV_OK) {
		return (cap_pass(call, st, err));
	}
	cap_req_init(&r, call, svc, in);
	if ((st = cap_write_call(&r, register_org_fn, reply)) == HV_OK) {
		log_directory(&r, "registered", in->organisation->id);
	}
	return (st);
}

/* An organisation whose role changes must be able to run the services it runs (a provider
 * that becomes a peer-support group keeps none of another type, a provider that becomes a
 * referrer none at all): retire or hand over the others first. Reads every service (the
 * directory has no index by organisation; a role changes rarely). */
static hv_status
role_fits_services(req_ctx *r, store_txn *txn, const org_t *next)
{
	store_cursor *c = NULL;
	const void   *k, *v;
	size_t        kl, vl;
	char          err[160];
	hv_status     st, bad = HV_OK;

	if ((st = store_cursor_open(txn, r->r_cs->cs_services, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); st == HV_OK && bad == HV_OK;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		service_t *svc = haven__capacity__v1__service__unpack(NULL, vl, v);

		if (svc == NULL) {
			st = HV_DATA_LOSS;
			break;
		}
		if (!svc->retired && strcmp(svc->org_id, next->id) == 0 &&
		    (bad = cap_org_may_run(next, svc->type, err, sizeof(err))) != HV_OK) {
			bad = rpc_call_error(r->r_call, bad,
			    "%s; it runs service %s: retire it first", err, svc->id);
		}
		haven__capacity__v1__service__free_unpacked(svc, NULL);
	}
	store_cursor_close(c);
	return (bad != HV_OK ? bad : st == HV_NOT_FOUND ? HV_OK : st);
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
	if ((st = cap_read_org(r->r_cs, txn, ch->id, cap_req_arena(r), &cur)) != HV_OK) {
		return (st == HV_NOT_FOUND
		        ? rpc_call_error(r->r_call, st, "no organisation %s", ch->id)
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
		return (cap_no_memory(r->r_call));
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
	        (st = cap_check_cert(r->r_cs, next->id, next->cert_pem, r->r_now / 1000, err,
	             sizeof(err))) != HV_OK)) {
		return (cap_pass(r->r_call, st, err));
	}
	if ((st = cap_cert_unique(r->r_cs, txn, fp, next->id, err, sizeof(err))) != HV_OK) {
		return (cap_pass(r->r_call, st, err));
	}
	if (next->role != cur->role && (st = role_fits_services(r, txn, next)) != HV_OK) {
		return (st);
	}
	if ((next->cert_sha256 = rpc_call_strdup(r->r_call, fp)) == NULL) {
		return (cap_no_memory(r->r_call));
	}
	next->version++;
	next->updated_at_ms = (uint64_t) r->r_now;
	if ((st = cap_put_org(r->r_cs, txn, next)) != HV_OK ||
	    (st = cap_audit_directory(r, txn, next->id)) != HV_OK) {
		return (st);
	}
	r->r_out = &next->base;
	return (HV_OK);
}

hv_status
cap_rpc_update_org(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__UpdateOrganisationRequest *in = (const void *) req;
	req_ctx                                               r;
	hv_status                                             st;

	if (in->organisation == NULL) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "organisation is required"));
	}
	if ((st = cap_check_id_version(call, "organisation id", in->organisation->id,
	         in->based_on_version)) != HV_OK) {
		return (st);
	}
	cap_req_init(&r, call, svc, in);
	if ((st = cap_write_call(&r, update_org_fn, reply)) == HV_OK) {
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
	if ((st = cap_read_org(r->r_cs, txn, in->id, cap_req_arena(r), &org)) != HV_OK) {
		return (st == HV_NOT_FOUND
		        ? rpc_call_error(r->r_call, st, "no organisation %s", in->id)
		        : st);
	}
	if ((st = may_manage_org(r)) != HV_OK) {
		return (st);
	}
	if (org->disabled != in->disabled) {
		org->disabled = in->disabled;
		org->version++;
		org->updated_at_ms = (uint64_t) r->r_now;
		if ((st = cap_put_org(r->r_cs, txn, org)) != HV_OK ||
		    (st = cap_audit_directory(r, txn, org->id)) != HV_OK) {
			return (st);
		}
	}
	r->r_out = &org->base;
	return (HV_OK);
}

hv_status
cap_rpc_disable_org(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__DisableOrganisationRequest *in = (const void *) req;
	req_ctx                                                r;
	hv_status                                              st;

	if (!ids_valid(in->id)) {
		return (
		    rpc_call_error(call, HV_INVALID_ARGUMENT, "organisation id must be " ID_RULE));
	}
	cap_req_init(&r, call, svc, in);
	if ((st = cap_write_call(&r, disable_org_fn, reply)) == HV_OK) {
		log_directory(&r, in->disabled ? "disabled" : "enabled", in->id);
	}
	return (st);
}

hv_status
cap_rpc_get_org(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__GetOrganisationRequest *in = (const void *) req;
	cap_service                                       *cs = svc;
	store_txn                                         *txn;
	org_t                                             *org;
	hv_status                                          st;

	if (!ids_valid(in->id)) {
		return (
		    rpc_call_error(call, HV_INVALID_ARGUMENT, "organisation id must be " ID_RULE));
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = cap_read_org(cs, txn, in->id, rpc_call_allocator(call), &org);
	store_read_end(txn);
	if (st != HV_OK) {
		return (st == HV_NOT_FOUND ? rpc_call_error(call, st, "no organisation %s", in->id)
		                           : st);
	}
	*reply = &org->base;
	return (HV_OK);
}

hv_status
cap_rpc_list_orgs(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__ListOrganisationsRequest *in  = (const void *) req;
	cap_service                                         *cs  = svc;
	Haven__Capacity__V1__ListOrganisationsResponse      *out = NULL;
	size_t                                               max = cap_page_size(in->page_size);
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
		return (cap_no_memory(call));
	}
	haven__capacity__v1__list_organisations_response__init(out);
	if ((out->organisations = rpc_call_alloc(call, max * sizeof(*out->organisations))) ==
	    NULL) {
		return (cap_no_memory(call));
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK ||
	    (st = store_cursor_open(txn, cs->cs_orgs, &c)) != HV_OK) {
		goto out;
	}
	for (st = cap_seek_after(c, in->page_token, &k, &kl, &v, &vl); st == HV_OK;
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
			out->next_page_token = out->organisations[max - 1]
			                           ->id; /* more follow: resume after the last */
			break;
		}
		if ((o = haven__capacity__v1__organisation__unpack(rpc_call_allocator(call), vl,
		         v)) == NULL) {
			st = cap_no_memory(call);
			goto out;
		}
		o->cert_pem = ""; /* lists carry the fingerprint only */
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
