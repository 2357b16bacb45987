/*
 * cap_index.h - the routing index's writer side (cap_index.c), above the brief and below the
 * records: cap_put_service (cap_records.c) keeps the index in line, capacity.c rebuilds it.
 * The readers (cap_route_foreach and friends) are public, in capacity.h. Private to
 * services/capacity.
 */
#ifndef HAVEN_CAP_INDEX_H
#define HAVEN_CAP_INDEX_H

#include "cap_internal.h"

/* Brings a service's index entry in line with its new record: removes the entry under old
 * (the brief stored before this change; NULL for a new service) and writes the new one when
 * the service may be routed. Called by cap_put_service only, in its transaction. */
hv_status cap_route_update(cap_service *cs, store_txn *txn, const cap_brief *old,
    const Haven__Capacity__V1__Service *svc, const cap_brief *b);

/* Empties the index (before a rebuild with the brief table). */
hv_status cap_route_clear(cap_service *cs, store_txn *txn);

#endif
