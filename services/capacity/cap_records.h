/*
 * cap_records.h - the records of the capacity registry (cap_records.c) and the expiry of
 * holds (cap_holds.c), above the routing index they keep in line (cap_index.h). capacity.c
 * and the RPC handlers (cap_rpc*.c through cap_req.h) build on them. Private to
 * services/capacity.
 */
#ifndef HAVEN_CAP_RECORDS_H
#define HAVEN_CAP_RECORDS_H

#include "cap_internal.h"

/* ---- cap_records.c: records ------------------------------------------------------- */

/* Reads a record with alloc (NULL: malloc). NOT_FOUND when absent. */
hv_status cap_read_org(cap_service *cs, store_txn *txn, const char *id, ProtobufCAllocator *alloc,
    Haven__Capacity__V1__Organisation **out);
hv_status cap_read_service(cap_service *cs, store_txn *txn, const char *id,
    ProtobufCAllocator *alloc, Haven__Capacity__V1__Service **out);

/* Stores a service and its brief (the only writer of either table). */
hv_status cap_put_service(cap_service *cs, store_txn *txn, const Haven__Capacity__V1__Service *svc);

/* Stores an organisation. */
hv_status cap_put_org(cap_service *cs, store_txn *txn,
    const Haven__Capacity__V1__Organisation *org);

/* ALREADY_EXISTS (with err naming the holder) when another organisation than self_id has the
 * certificate of this fingerprint. */
hv_status cap_cert_unique(cap_service *cs, store_txn *txn, const char *fingerprint,
    const char *self_id, char *err, size_t errsz);

/* ---- cap_holds.c ------------------------------------------------------------------- */

/* Holds one expiry batch ends at most (the job ends them a batch per transaction). */
#define CAP_EXPIRE_BATCH 64

/* Releases up to max (at most CAP_EXPIRE_BATCH) holds whose expiry is at or before now_ms,
 * oldest first. *released counts them; changed (max entries, may be NULL) receives their
 * services' ids. *more is set when expired holds remain. */
hv_status cap_expire_batch(cap_service *cs, store_txn *txn, int64_t now_ms, unsigned max,
    unsigned *released, char (*changed)[CAP_ID_MAX], bool *more);

#endif
