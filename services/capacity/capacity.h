/*
 * capacity.h - the capacity registry and partner directory (haven-capacity), as a library:
 * RPC handlers (haven.capacity.v1.Capacity), the partner directory that auth consults, and the
 * store functions other services call inside their own write transactions.
 *
 * Tables (in the node's one LMDB environment):
 *   cap.orgs       org id            -> Organisation
 *   cap.services   service id        -> Service
 *   cap.brief      service id        -> a fixed-size summary of the Service (type, region
 *                                       index, populations, places, times), written in the
 *                                       same transaction as the Service; Summary and the
 *                                       filters of FindServices read only this
 *   cap.holds      hold id           -> Hold
 *   cap.hold_exp   be64 expiry || id -> ""          (holds by expiry, for cap_expire_holds)
 *   cap.meta       "brief_regions"   -> SHA-256 of the region map the brief indices refer to
 *
 * Invariants, under any interleaving of calls and processes: 0 <= held <= available <= maximum
 * for every service; a hold counts in `held` of its service exactly while it exists; a write
 * based on an old version is ABORTED, never applied; every change of a record adds one to its
 * version. No shelter address is stored anywhere: a service is known by its region and its
 * front-door contact.
 *
 * Freshness: a service's figure is fresh while now - updated_ms <= report_interval_s * 1000.
 * A stale figure is "unknown" in every answer: 0 free places, never "available".
 *
 * Every process of the node that opens the store may open a cap_service over it (the referral
 * service does, for the hold functions); all of them must use the same region map: the brief
 * table stores region indices and is rebuilt at open when the map changed.
 */
#ifndef HAVEN_CAPACITY_H
#define HAVEN_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/audit.h"
#include "haven/auth.h"
#include "haven/regions.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "haven/capacity/v1/capacity.pb-c.h"

#define CAP_ID_MAX                  64 /* ids: [a-z0-9._-], 1..63 bytes */
#define CAP_APPROVAL_PLACES_DEFAULT 50

typedef struct cap_service cap_service;

typedef struct cap_options {
	store            *store;   /* the node's store; not owned */
	const region_map *regions; /* not owned; must outlive the service */
	const char       *pub_url; /* nng pub socket for CapacityChanged; NULL: none */
	/* The node CA (tls_ca; not copied, must outlive the service): a certificate registered
	 * for an organisation must chain to it, be valid and name the organisation as its CN.
	 * NULL: registering a certificate is FAILED_PRECONDITION. */
	const char *ca_file;
	uint32_t    hold_max_ttl_s; /* 0: 24 h */
	/* A provider's service with more places than this, or outside its organisation's region,
	 * waits for approval (Service.pending); 0: CAP_APPROVAL_PLACES_DEFAULT. */
	uint32_t approval_places;
	/* Wall clock in ms (Unix time); NULL: the real one. Tests move time with it. */
	int64_t (*now_ms)(void *arg);
	void *now_arg;
	/* No expiry thread: holds expire only when the caller runs cap_expire_holds (tests and
	 * tools). By default a thread expires holds at open and then every second. */
	bool manual_expiry;
	/* Store functions only, for a process that calls them inside its own transactions but
	 * does not serve the registry (haven-referral, haven-consent): the tables are opened and
	 * nothing else runs: no expiry thread or other timer, no migration (the brief table is
	 * rebuilt by the process that serves the registry), no pub socket (pub_url must be NULL:
	 * a second publisher on another socket reaches no subscriber). The capacity service
	 * loads no keys in either mode. */
	bool store_only;
} cap_options;

/* Opens the tables (creating them); unless store_only, rebuilds the brief table when the
 * region map differs from the one it was written with, listens on pub_url and starts the
 * expiry thread. INVALID_ARGUMENT for a missing store or region map, or a pub_url with
 * store_only. Call at start-up, before any store_write of the process is running. */
hv_status cap_open(cap_service **out, const cap_options *opts);

/* Stops the expiry thread (waits for a round that is running). Handlers and store functions
 * keep working. Call it before the store closes when the service's handlers may still run
 * until then (host_close stops the server and closes the store in one go). Safe to repeat. */
void cap_stop(cap_service *cs);

/* Stops (cap_stop), closes the pub socket and frees. No handler may be running. NULL is
 * allowed. */
void cap_close(cap_service *cs);

/* Makes every change of the directory (an organisation registered, changed, disabled or
 * enabled; a service approved) an entry of the node's audit log, appended in the change's own
 * transaction: method, caller, and the organisation or service id as the entry's purpose.
 * a: not owned, open until cap_close; NULL: logged only. Before the server starts. */
void cap_set_audit(cap_service *cs, audit *a);

/* Registers haven.capacity.v1.Capacity on srv. */
hv_status cap_register(cap_service *cs, rpc_server *srv);

/* The partner directory as auth sees it (an auth_lookup_fn; arg is the cap_service):
 * the organisation's role, enabled = not disabled, its record version and certificate
 * fingerprint, and a malloc'd copy of its certificate. */
hv_status cap_lookup_org(void *arg, const char *org_id, auth_org *out);

/* The role of an enabled organisation of the directory (arg: the cap_service), or 0 when it is
 * unknown, disabled or cannot be read. For the other services' checks of a party they are
 * told about (consent's recipients and holders). */
rpc_role cap_org_role(void *arg, const char *org_id);

/* An organisation of the directory, read in txn (read or write; another service's own
 * transaction), for the services that need more of it than its role: its home region, its
 * contact channel. A disabled organisation is returned too (check ->disabled). *out is
 * allocated with alloc (NULL: malloc) and freed with
 * haven__capacity__v1__organisation__free_unpacked(*out, alloc); valid after the transaction
 * ends. NOT_FOUND for an unknown or malformed id, INVALID_ARGUMENT for a NULL argument. */
hv_status cap_get_org(cap_service *cs, store_txn *txn, const char *org_id,
    ProtobufCAllocator *alloc, Haven__Capacity__V1__Organisation **out);

/* The service's clock (the now_ms hook, or Unix time in ms). */
int64_t cap_now_ms(const cap_service *cs);

/* Whether the service's availability figure is fresh at now_ms (see above). */
bool cap_service_fresh(const Haven__Capacity__V1__Service *svc, int64_t now_ms);

/* ---- store functions for other services (inside their store_write function) ----------- */

/* Each of these may run again from the start when store_write runs its function again, and
 * has no effect outside the transaction. After the transaction committed, call
 * cap_publish_id (or cap_publish_change) for each service whose free places changed. */

/* Validates and stores a new organisation, as RegisterOrganisation does for the operator.
 * What is stored is org with the registry's own fields set (certificate fingerprint, version
 * 1, time, enabled); org itself is not changed. On failure err (errsz bytes) names the field
 * and the bound; ALREADY_EXISTS for a taken id or a certificate registered to another
 * organisation; a certificate must pass cap_options.ca_file's check (INVALID_ARGUMENT naming
 * the reason, FAILED_PRECONDITION without a CA). */
hv_status cap_add_organisation(cap_service *cs, store_txn *txn,
    const Haven__Capacity__V1__Organisation *org, char *err, size_t errsz);

/* Validates and stores a new service, as RegisterService does for the operator: the
 * organisation must exist (NOT_FOUND) and be an enabled provider (FAILED_PRECONDITION). An empty id
 * gets a generated "svc-" id; id receives the id it is stored under. The registry's own fields are
 * set in what is stored (held 0, version 1, times now); svc is not changed. On failure err names
 * the problem. */
hv_status cap_add_service(cap_service *cs, store_txn *txn, const Haven__Capacity__V1__Service *svc,
    char id[CAP_ID_MAX], char *err, size_t errsz);

/* Holds one free place of a fresh service for ttl_s seconds (1..hold_max_ttl_s, else
 * INVALID_ARGUMENT): FAILED_PRECONDITION when the service has no free place, its figure is
 * stale or it waits for approval (pending), NOT_FOUND for an unknown or retired service. owner: at
 * most 200 bytes of text. hold_id receives the new hold's id. */
hv_status cap_hold_place(cap_service *cs, store_txn *txn, const char *service_id, uint32_t ttl_s,
    const char *owner, char hold_id[CAP_ID_MAX]);

/* Releases a hold: the place is free again. NOT_FOUND when the hold is gone (expired or
 * released before). */
hv_status cap_hold_release(cap_service *cs, store_txn *txn, const char *hold_id);

/* Turns a hold into a placement: the place stays taken (available and held both drop by one,
 * occupied rises by one). NOT_FOUND when the hold is gone. */
hv_status cap_hold_confirm(cap_service *cs, store_txn *txn, const char *hold_id);

/* A provider declined an offer for want of room: its figure promised places that are not
 * there. The service has no free place from now (available drops to what is held, a new
 * version) until its provider reports room again, and only then is it offered again.
 * NOT_FOUND for an unknown service. */
hv_status cap_no_room(cap_service *cs, store_txn *txn, const char *service_id);

/* Gives a placement's place back when it completes or ends: occupied drops by one and the
 * place is free again (available rises by one, a new version). *freed says whether a place
 * came free: false when the provider's own count (UpdateAvailability, a smaller maximum) had
 * freed it already. NOT_FOUND for an unknown service. */
hv_status cap_place_release(cap_service *cs, store_txn *txn, const char *service_id, bool *freed);

/* Releases every hold whose expiry is at or before now_ms; *released counts them. */
hv_status cap_expire_holds(cap_service *cs, store_txn *txn, int64_t now_ms, unsigned *released);

/* Reads a service; *out is the caller's (protobuf_c_message_free_unpacked(*out, NULL)). */
hv_status cap_get_service(cap_service *cs, store_txn *txn, const char *service_id,
    Haven__Capacity__V1__Service **out);

/* Calls fn for every service of a type that is neither retired nor pending (all types for
 * UNSPECIFIED), in id order, until fn returns non-zero. The service is valid only during the call.
 * fresh says whether its figure is fresh now (cap_now_ms). fn must not change capacity records (the
 * iteration walks cap.brief): collect what it chose and hold places after the walk. */
typedef int (*cap_service_fn)(void *arg, const Haven__Capacity__V1__Service *svc, bool fresh);
hv_status cap_foreach_service(cap_service *cs, store_txn *txn,
    Haven__Capacity__V1__ServiceType type, cap_service_fn fn, void *arg);

/*
 * The routing index (cap.route, cap_index.c): for each service that routing may offer (not
 * retired, not pending, its area a region of the map, available > held by its last figure,
 * fresh or not), a compact entry under (type, region, id) with what routing filters and ranks
 * on, written in the same transaction as the service by cap_put_service. A need reads the
 * regions it may go to, nearest first, instead of unpacking every service of its type.
 */
#define CAP_ROUTE_LIST_MAX 16 /* languages, accessibility, specialisations (the checks' bound) */

/* One entry as read, or a Service seen the same way (cap_route_entry_of). Its strings point
 * into the store's page or the Service and live as long as they do: copy what is kept. */
typedef struct cap_route_entry {
	char     id[CAP_ID_MAX];
	char    *org_id;
	unsigned type;
	unsigned region;      /* index in the region map */
	uint8_t  populations; /* bit p: accepts Population p */
	bool     fresh;       /* the figure is fresh now (cap_now_ms) */
	uint64_t updated_ms;
	uint32_t report_interval_s;
	uint32_t available;
	uint32_t held;
	size_t   n_languages, n_accessibility, n_specialisations;
	char    *languages[CAP_ROUTE_LIST_MAX];     /* not to be written through */
	char    *accessibility[CAP_ROUTE_LIST_MAX]; /* not to be written through */
	int32_t  specialisations[CAP_ROUTE_LIST_MAX];
} cap_route_entry;

/* Calls fn for every entry of (type, region) that accepts every population of the bit set
 * populations (0: any), in id order, until fn returns non-zero. fn must not change capacity
 * records (collect, then hold places after the walk). */
typedef int (*cap_route_fn)(void *arg, const cap_route_entry *e);
hv_status cap_route_foreach(cap_service *cs, store_txn *txn, Haven__Capacity__V1__ServiceType type,
    unsigned region, uint8_t populations, cap_route_fn fn, void *arg);

/* The region map the index's region numbers refer to. */
const region_map *cap_route_regions(const cap_service *cs);

/* A Service as an entry (region: its index in the map, or REGIONS_MAX when not in it; fresh
 * at now_ms). Lists past CAP_ROUTE_LIST_MAX, which the checks refuse, are cut. */
void cap_route_entry_of(const cap_service *cs, const Haven__Capacity__V1__Service *svc,
    int64_t now_ms, cap_route_entry *e);

/* One cell of the aggregate: the services of a region, type and population that are neither
 * retired nor pending. A
 * service that accepts several populations counts in each of their cells. */
typedef struct cap_cell {
	unsigned                         cc_region; /* index in the region map */
	Haven__Capacity__V1__ServiceType cc_type;
	Haven__Capacity__V1__Population  cc_population;
	uint32_t                         cc_services;
	uint32_t                         cc_maximum;        /* sum of maximum */
	uint32_t                         cc_free;           /* free places of fresh services */
	uint32_t                         cc_stale_services; /* services whose figure is unknown */
} cap_cell;

/* Aggregates places per region x type x population from the brief table (what Summary
 * answers). region_mask selects regions by map index (bit i: region i); 0 means all. Empty
 * cells are left out; cells come in region, type, population order. *cells is malloc'd (the
 * caller frees it; NULL when *n is 0). */
hv_status cap_summary(cap_service *cs, store_txn *txn, uint64_t region_mask, int64_t now_ms,
    cap_cell **cells, size_t *n);

/* Calls fn for every organisation of the directory (disabled ones too), in id order, until fn
 * returns non-zero. org is valid only during the call. For the alerts service, which tells a
 * region's coordinators (read or write transaction; reads only). */
typedef int (*cap_org_fn)(void *arg, const Haven__Capacity__V1__Organisation *org);
hv_status cap_foreach_org(cap_service *cs, store_txn *txn, cap_org_fn fn, void *arg);

/* ---- change notifications ---------------------------------------------------------- */

/* Publishes a CapacityChanged for a service after the transaction that changed it committed.
 * Never blocks; without a pub socket it does nothing. */
void cap_publish_change(cap_service *cs, const Haven__Capacity__V1__Service *svc);

/* Reads the service (a read transaction of its own) and publishes it; for callers that know
 * only the id, such as after cap_hold_release. Not from inside a write function. */
void cap_publish_id(cap_service *cs, const char *service_id);

#endif
