/*
 * cap_internal.h - the bottom of the capacity service's files: the service handle, the
 * brief record, the bounds of every field, the checks (cap_check.c) and what a record says
 * without the store (cap_brief.c). The layers above have their own headers: the routing
 * index (cap_index.h), then the records and holds (cap_records.h) that capacity.c and the
 * RPC handlers (cap_rpc*.c, cap_req.h) build on. Private to services/capacity.
 */
#ifndef HAVEN_CAP_INTERNAL_H
#define HAVEN_CAP_INTERNAL_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "haven/ids.h"
#include "haven/ticker.h"
#include "capacity.h"

/* Bounds of the fields (see capacity.proto). */
#define CAP_NAME_MAX           200
#define CAP_CONTACT_MAX        200
#define CAP_OWNER_MAX          200
#define CAP_UNIT_MAX           32
#define CAP_UNIT_DEFAULT       "places"
#define CAP_PLACES_MAX         100000
#define CAP_INTERVAL_MIN_S     60
#define CAP_INTERVAL_MAX_S     604800
#define CAP_INTERVAL_DEFAULT_S 86400
#define CAP_LIST_MAX           16 /* languages, accessibility, specialisations */
#define CAP_POPULATIONS_MAX    8
#define CAP_TOKEN_MAX          64 /* an accessibility entry */
#define CAP_CERT_MAX           (16 * 1024)
#define CAP_PAGE_DEFAULT       100
#define CAP_PAGE_MAX           500
#define CAP_HOLD_TTL_DEFAULT_S (24 * 3600)
#define CAP_SERVICE_ID_PREFIX  "svc-"
#define CAP_SERVICE_ID_HEX     12
#define CAP_HOLD_ID_PREFIX     "hold-"
#define CAP_HOLD_ID_HEX        16
#define CAP_ERR_MAX            RPC_ERRMSG_MAX

/* Enum values the brief and the summary grid have room for: a ServiceType below CAP_TYPES, a
 * Population below CAP_POPULATIONS (a bit of an 8-bit mask). The checks refuse others, so a
 * value added to the .proto past these bounds is refused until they grow. */
#define CAP_TYPES       16
#define CAP_POPULATIONS 8

/* The brief's region index of a service whose region is not in the map. */
#define CAP_REGION_NONE 255

_Static_assert(REGIONS_MAX < CAP_REGION_NONE, "region indices fit the brief's byte");
_Static_assert(REGIONS_MAX <= 64, "a region set fits a uint64_t mask");

/*
 * cap.brief: what Summary and the filters of FindServices need of a service, fixed size, in
 * the host's byte order (an LMDB environment is only ever used on the host that made it).
 * b_region is the service area's index in the region map the table was built with (cap.meta
 * holds that map's fingerprint). Written in the same transaction as the Service, by
 * cap_put_service only. Values in the map are not aligned: copy them out with memcpy.
 */
typedef struct cap_brief {
	uint64_t b_updated_ms;
	uint32_t b_maximum;
	uint32_t b_available;
	uint32_t b_held;
	uint32_t b_report_interval_s;
	uint8_t  b_type;
	uint8_t  b_region;
	uint8_t  b_populations; /* bit p: accepts Population p */
	uint8_t  b_retired;
	uint8_t  b_pending; /* waits for approval: never routed, held or counted */
	uint8_t  b_pad[3];
} cap_brief;

_Static_assert(sizeof(cap_brief) == 32, "cap_brief has no hidden padding");

struct cap_service {
	store            *cs_store;
	const region_map *cs_regions;
	const char       *cs_ca_file; /* the node CA (tls_ca); NULL: none */
	uint32_t          cs_hold_max_ttl_s;
	uint32_t          cs_approval_places; /* cap_options.approval_places */
	audit            *cs_audit;           /* directory changes (cap_set_audit); may be NULL */
	int64_t (*cs_now)(void *);
	void *cs_now_arg;

	store_table cs_orgs;
	store_table cs_services;
	store_table cs_brief;
	store_table cs_route; /* the routing index, cap_index.c */
	store_table cs_holds;
	store_table cs_hold_exp;
	store_table cs_meta;

	nng_socket cs_pub;
	bool       cs_pub_open;

	/* The hold expiry job; NULL with manual_expiry or once stopped. */
	hv_ticker *cs_expiry;
};

/* ---- cap_check.c: pure checks, no store ------------------------------------------- */

/* The one mapping between the directory's roles and the RPC layer's. ROLE_UNSPECIFIED and
 * unknown values map to 0 (no role), and roles without a directory role to UNSPECIFIED. */
rpc_role                  cap_role_to_rpc(Haven__Capacity__V1__Role role);
Haven__Capacity__V1__Role cap_role_from_rpc(rpc_role role);

/* Whether an organisation of this role may run a service of this type: a provider any, a
 * peer-support group PEER_SUPPORT only, every other role none. HV_OK, else
 * FAILED_PRECONDITION with err naming the rule (the organisation's id only). */
hv_status cap_org_may_run(const Haven__Capacity__V1__Organisation *org,
    Haven__Capacity__V1__ServiceType type, char *err, size_t errsz);

/* Whether v is a value of the enum other than 0 (UNSPECIFIED) and below limit (the size of
 * the registry's per-value tables): pbenum_ok with a bound. */
bool cap_enum_ok(const ProtobufCEnumDescriptor *d, int v, int limit);

/* The region's index in the map, or -1. */
int cap_region_index(const cap_service *cs, const char *name);

/* Checks what an organisation record holds (id, name, role, region, certificate) and, when
 * fingerprint is not NULL and a certificate is given, writes its fingerprint (else ""). */
hv_status cap_check_org(const cap_service *cs, const Haven__Capacity__V1__Organisation *org,
    char fingerprint[65], char *err, size_t errsz);

/* Checks a certificate being registered for organisation org_id (registration, or a change
 * of its certificate) with crypto_cert_check against the node CA at now_s (Unix seconds:
 * cap_now_ms / 1000): INVALID_ARGUMENT with err naming the reason ("cert_pem: the
 * certificate has expired"), FAILED_PRECONDITION when the node has no CA configured. */
hv_status cap_check_cert(const cap_service *cs, const char *org_id, const char *cert_pem,
    int64_t now_s, char *err, size_t errsz);

/* Checks the descriptive fields of a service (everything UpdateService may set). */
hv_status cap_check_service_fields(const cap_service *cs, const Haven__Capacity__V1__Service *svc,
    char *err, size_t errsz);

/* Checks a whole new service: the descriptive fields, its id (empty allowed), org_id, and
 * available against maximum. */
hv_status cap_check_new_service(const cap_service *cs, const Haven__Capacity__V1__Service *svc,
    char *err, size_t errsz);

/* ---- cap_brief.c: a record without the store ----------------------------------- */

/* The brief of a service (see cap_brief) for the current region map. */
void cap_brief_of(const cap_service *cs, const Haven__Capacity__V1__Service *svc, cap_brief *b);

/* Free places as answers show them: available - held when fresh and not retired, else 0. */
uint32_t cap_free_places(const Haven__Capacity__V1__Service *svc, int64_t now_ms, bool *fresh);

#endif
