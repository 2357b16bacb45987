/*
 * cap_rpc.c - haven.capacity.v1.Capacity: the rules of who may do what, the method table,
 * and the read-only handlers that search and count (FindServices, Summary, ListRegions). The
 * directory's handlers are in cap_rpc_orgs.c and cap_rpc_services.c, their helpers in
 * cap_req.c.
 *
 * Who may call a method at all is the method's role mask (the RPC server checks it before the
 * handler runs). Whom a call may touch is decided in the handlers, from the partner directory: a
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
#include "cap_req.h"
#include "cap_metrics.h"

#include "haven/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Region names to a mask of map indices; INVALID_ARGUMENT for a name not in the map. */
static hv_status
region_mask(rpc_call *call, const cap_service *cs, char **names, size_t n, uint64_t *mask)
{
	*mask = 0;
	if (n > REGIONS_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "regions has %zu entries, at most %d", n, REGIONS_MAX));
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
			if (strncasecmp(have, langs[i], len) == 0 &&
			    (have[len] == '\0' || have[len] == '-')) {
				return (true);
			}
		}
	}
	return (false);
}

/* Checks a FindServices request and turns its regions into a mask of map indices. */
static hv_status
find_check(rpc_call *call, const cap_service *cs,
    const Haven__Capacity__V1__FindServicesRequest *in, uint64_t *mask)
{
	if (in->type != 0 &&
	    !cap_enum_ok(&haven__capacity__v1__service_type__descriptor, (int) in->type,
	        CAP_TYPES)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "type %d is not a known service type", (int) in->type));
	}
	if (in->population != 0 &&
	    !cap_enum_ok(&haven__capacity__v1__population__descriptor, (int) in->population,
	        CAP_POPULATIONS)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "population %d is not a known population", (int) in->population));
	}
	if (in->n_languages > CAP_LIST_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "languages has %zu entries, at most %d", in->n_languages, CAP_LIST_MAX));
	}
	for (size_t i = 0; i < in->n_languages; i++) {
		if (!text_lang_ok(in->languages[i])) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "languages: entry %zu must be " TEXT_LANG_RULE, i + 1));
		}
	}
	if (in->page_token[0] != '\0' && !ids_valid(in->page_token)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "page_token is not one a previous answer gave"));
	}
	return (region_mask(call, cs, in->regions, in->n_regions, mask));
}

/* Whether a service's brief passes every filter of the request but the languages. */
static bool
brief_wanted(const cap_brief *b, const Haven__Capacity__V1__FindServicesRequest *in, uint64_t mask,
    int64_t now)
{
	if (b->b_retired || (in->type != 0 && b->b_type != (uint8_t) in->type) ||
	    (in->population != 0 && (b->b_populations & (1u << in->population)) == 0) ||
	    (mask != 0 && (b->b_region >= 64 || (mask & ((uint64_t) 1 << b->b_region)) == 0))) {
		return (false);
	}
	return (!in->only_free ||
	    (!b->b_pending &&
	        now - (int64_t) b->b_updated_ms <= (int64_t) b->b_report_interval_s * 1000 &&
	        b->b_available > b->b_held));
}

hv_status
cap_rpc_find_services(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__FindServicesRequest *in = (const void *) req;
	cap_service                                    *cs = svc;
	Haven__Capacity__V1__FindServicesResponse      *out;
	size_t                                          max  = cap_page_size(in->page_size);
	int64_t                                         now  = cap_now_ms(cs);
	uint64_t                                        mask = 0;
	store_txn                                      *txn  = NULL;
	store_cursor                                   *c    = NULL;
	const void                                     *k, *v;
	size_t                                          kl, vl;
	hv_status                                       st;

	if ((st = find_check(call, cs, in, &mask)) != HV_OK) {
		return (st);
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (cap_no_memory(call));
	}
	haven__capacity__v1__find_services_response__init(out);
	if ((out->services = rpc_call_alloc(call, max * sizeof(*out->services))) == NULL) {
		return (cap_no_memory(call));
	}
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK ||
	    (st = store_cursor_open(txn, cs->cs_brief, &c)) != HV_OK) {
		goto out;
	}
	/* The brief answers every filter but the languages; only candidates are unpacked. */
	for (st = cap_seek_after(c, in->page_token, &k, &kl, &v, &vl); st == HV_OK;
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
		if (!brief_wanted(&b, in, mask, now)) {
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
		    (view = cap_view_of(call, s, now)) == NULL) {
			st = cap_no_memory(call);
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

hv_status
cap_rpc_summary(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Capacity__V1__SummaryRequest *in = (const void *) req;
	cap_service                               *cs = svc;
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
	st = cap_no_memory(call);
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		goto out;
	}
	haven__capacity__v1__summary_response__init(out);
	if (n > 0 &&
	    ((out->cells = rpc_call_alloc(call, n * sizeof(*out->cells))) == NULL ||
	        (cells = rpc_call_alloc(call, n * sizeof(*cells))) == NULL)) {
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		haven__capacity__v1__summary_cell__init(&cells[i]);
		/* The map outlives the call: its names need no copy. */
		cells[i].region     = (char *) region_map_name(cs->cs_regions, agg[i].cc_region);
		cells[i].type       = agg[i].cc_type;
		cells[i].population = agg[i].cc_population;
		cells[i].services   = agg[i].cc_services;
		cells[i].maximum    = agg[i].cc_maximum;
		cells[i].free       = agg[i].cc_free;
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

hv_status
cap_rpc_list_regions(rpc_call *call, void *svc, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	cap_service                              *cs = svc;
	const region_map                         *m  = cs->cs_regions;
	size_t                                    n  = region_map_count(m);
	Haven__Capacity__V1__ListRegionsResponse *out;

	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (cap_no_memory(call));
	}
	haven__capacity__v1__list_regions_response__init(out);
	if (n > 0 && (out->regions = rpc_call_alloc(call, n * sizeof(*out->regions))) == NULL) {
		return (cap_no_memory(call));
	}
	for (size_t i = 0; i < n; i++) {
		Haven__Capacity__V1__Region *reg = rpc_call_alloc(call, sizeof(*reg));
		int                          nb[REGIONS_MAX];
		size_t                       nn = region_map_neighbours(m, i, nb);

		if (reg == NULL) {
			return (cap_no_memory(call));
		}
		haven__capacity__v1__region__init(reg);
		if (nn > 0 &&
		    (reg->neighbours = rpc_call_alloc(call, nn * sizeof(char *))) == NULL) {
			return (cap_no_memory(call));
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
		{ .name      = "RegisterOrganisation",
		    .handler = cap_rpc_register_org,
		    .roles   = M_ROLES_DIRECTORY },
		{ .name      = "UpdateOrganisation",
		    .handler = cap_rpc_update_org,
		    .roles   = M_ROLES_DIRECTORY },
		{ .name      = "DisableOrganisation",
		    .handler = cap_rpc_disable_org,
		    .roles   = M_ROLES_DIRECTORY },
		{ .name      = "GetOrganisation",
		    .handler = cap_rpc_get_org,
		    .roles   = RPC_ROLES_AUTHENTICATED },
		{ .name      = "ListOrganisations",
		    .handler = cap_rpc_list_orgs,
		    .roles   = RPC_ROLES_AUTHENTICATED },
		{ .name      = "RegisterService",
		    .handler = cap_rpc_register_service,
		    .roles   = M_ROLES_REGISTER_SERVICE },
		{ .name      = "UpdateService",
		    .handler = cap_rpc_update_service,
		    .roles   = M_ROLES_CHANGE_SERVICE },
		{ .name      = "RetireService",
		    .handler = cap_rpc_retire_service,
		    .roles   = M_ROLES_CHANGE_SERVICE },
		{ .name      = "ApproveService",
		    .handler = cap_rpc_approve_service,
		    .roles   = M_ROLES_APPROVE_SERVICE },
		{ .name      = "GetService",
		    .handler = cap_rpc_get_service,
		    .roles   = M_ROLES_SEE_SERVICES },
		{ .name      = "UpdateAvailability",
		    .handler = cap_rpc_update_availability,
		    .roles   = M_ROLES_CHANGE_SERVICE },
		{ .name      = "ChangeAvailability",
		    .handler = cap_rpc_change_availability,
		    .roles   = M_ROLES_CHANGE_SERVICE },
		{ .name      = "FindServices",
		    .handler = cap_rpc_find_services,
		    .roles   = M_ROLES_SEE_SERVICES },
		/* Numbers only: municipalities may ask. */
		{ .name = "Summary", .handler = cap_rpc_summary, .roles = RPC_ROLES_AUTHENTICATED },
		{ .name             = "ListRegions",
		    .handler        = cap_rpc_list_regions,
		    .roles          = RPC_ROLES_AUTHENTICATED,
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
