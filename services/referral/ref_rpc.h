/*
 * ref_rpc.h - what the files of the referral service's handlers share: the helpers for
 * messages and visibility (ref_rpc.c) and the provider's handlers (ref_offer_rpc.c) that
 * ref_rpc.c registers. Private to services/referral.
 */
#ifndef HAVEN_REF_RPC_H
#define HAVEN_REF_RPC_H

#include "ref_internal.h"

/* Who reads referrals: the referrer, coordinators, the operator. */
#define ROLES_READ (RPC_ROLE_REFERRER | RPC_ROLES_COORDINATORS | RPC_ROLE_OPERATOR)

/* The call's error from a failed work: its message, else the status's name. Returns st. */
hv_status ref_rpc_error(rpc_call *call, ref_work *w, hv_status st);
/* ref_enum_name into a 48-byte buffer. */
const char *ref_enum_buf(const ProtobufCEnumDescriptor *d, int v, char buf[48]);
/* An id from a request as a message may show it: only when it is one (anything else could be
 * any text, even personal data typed into the wrong field). */
const char *ref_shown_id(const char *id);
/* Whether a need is with the provider organisation now: accepted by it, or placed there. */
bool ref_accepted_by(const Need *n, const char *org);
/* Whether the caller sees every referral and offer (the operator, a national coordinator):
 * the only callers told that an id names none (NOT_FOUND); the rest are refused it alike. */
bool ref_sees_all(const rpc_caller *c);
/* Whether the caller may see (and, for its role, act on) the referral. A provider sees it
 * only while a need of it is accepted by or placed with the provider. */
hv_status ref_may_see(ref_service *rs, store_txn *txn, const rpc_caller *c, const Referral *r,
    bool *ok);
/* Loads a referral the caller may see: NOT_FOUND or PERMISSION_DENIED with w_err set. */
hv_status ref_load_visible(ref_work *w, const rpc_caller *c, const char *id, Referral **out);

/* An entry in the node's audit log (ref_set_audit) for an access to a person-linked record (a
 * read, or a change by UpdateReferral and the other edits): the caller, the method, the
 * subject, and the referral or offer id as its purpose; in w's transaction, which must be a
 * write. Nothing without a log. */
hv_status ref_audit_access(ref_work *w, const rpc_caller *c, const char *method,
    const char *subject, const char *what);
/* Runs fn in a write transaction when reads are audited (ref_set_audit), else in a read
 * transaction. */
hv_status ref_read(ref_service *rs, hv_status (*fn)(store_txn *, void *), void *arg);

/* ---- ref_list.c ----------------------------------------------------------------------------- */

hv_status ref_h_list(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_list_offers(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);

/* ---- ref_create.c --------------------------------------------------------------------------- */

hv_status ref_h_create(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);

/* ---- ref_edit.c: changes to a referral by its referrer, a coordinator or the operator ------ */

hv_status ref_h_cancel(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_reassign(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_update(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_pause(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_resume(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);

/* ---- ref_offer_rpc.c: the provider's handlers ------------------------------------------------ */

hv_status ref_h_ack(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_accept(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_decline(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_placed(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_complete(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);
hv_status ref_h_end(rpc_call *call, void *svc, const ProtobufCMessage *msg,
    ProtobufCMessage **reply);

#endif
