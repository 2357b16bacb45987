/*
 * referral_node.h - the harness of the referral integration tests (referral_it.c,
 * referral_edit_it.c): a node with the real capacity and referral services on one store over
 * inproc://, organisations with tokens, a fake consent table and sealing, a clock the tests
 * move (fake_now, advance), client helpers, and check_invariant after every scenario.
 */
#ifndef HAVEN_TESTS_REFERRAL_NODE_H
#define HAVEN_TESTS_REFERRAL_NODE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdbool.h>

#include <nng/nng.h>

#include "haven/rpc.h"
#include "haven/store.h"
#include "testutil.h"

#include "alerts.h"
#include "capacity.h"
#include "referral.h"

#define M_CREATE   "haven.referral.v1.Referrals/CreateReferral"
#define M_GET      "haven.referral.v1.Referrals/GetReferral"
#define M_LIST     "haven.referral.v1.Referrals/ListReferrals"
#define M_CANCEL   "haven.referral.v1.Referrals/CancelReferral"
#define M_REASSIGN "haven.referral.v1.Referrals/ReassignNeed"
#define M_OFFERS   "haven.referral.v1.Referrals/ListOffers"
#define M_ACK      "haven.referral.v1.Referrals/AcknowledgeOffer"
#define M_ACCEPT   "haven.referral.v1.Referrals/AcceptOffer"
#define M_DECLINE  "haven.referral.v1.Referrals/DeclineOffer"
#define M_PLACED   "haven.referral.v1.Referrals/MarkPlaced"
#define M_COMPLETE "haven.referral.v1.Referrals/CompletePlacement"
#define M_END      "haven.referral.v1.Referrals/EndPlacement"
#define M_STATS    "haven.referral.v1.Referrals/Statistics"
#define M_AVAIL    "haven.capacity.v1.Capacity/UpdateAvailability"

typedef Haven__Referral__V1__Referral Referral;
typedef Haven__Referral__V1__Offer    Offer;

#define NS(x)       HAVEN__REFERRAL__V1__NEED_STATE__##x
#define OS(x)       HAVEN__REFERRAL__V1__OFFER_STATE__##x
#define ST(x)       HAVEN__CAPACITY__V1__SERVICE_TYPE__##x
#define POP(x)      HAVEN__CAPACITY__V1__POPULATION__##x
#define EX(x)       HAVEN__REFERRAL__V1__EXPLOITATION__##x
#define URG(x)      HAVEN__REFERRAL__V1__URGENCY__##x
#define SPEC_LABOUR HAVEN__CAPACITY__V1__EXPLOITATION__LABOUR

#define SUBJECT_OK "0123456789abcdef0123456789abcdef"
#define SUBJECT_NO "ffffffffffffffffffffffffffffffff" /* no consent */

/* ---- the node under test --------------------------------------------------------------------- */

enum {
	C_REFERRER,
	C_REFERRER2,
	C_PROV_A,
	C_PROV_B,
	C_COORD,
	C_COORD_FAR,
	C_MUNI,
	C_NATIONAL,
	C_OPERATOR,
	C_N
};

typedef struct org_spec {
	const char               *id;
	Haven__Capacity__V1__Role role;
	rpc_role                  rpc;
	const char               *region;
} org_spec;

extern const org_spec orgs[C_N];

typedef struct node {
	char            dir[512];
	char            url[64];
	char            pub[64];
	char            consent_url[64];
	nng_socket      consent_pub; /* stands in for the consent service's publisher */
	store          *st;
	region_map     *regions;
	cap_service    *cs;
	ref_service    *rs;
	alerts_service *al; /* manual: alerts_run delivers (webhooks to loopback allowed) */
	auth           *au;
	rpc_server     *srv;
	rpc_channel    *ch[C_N];
	store_table     offers_t;      /* ref.offers, for the invariant */
	bool            notify;        /* capacity pub/sub and the background thread */
	unsigned        stats_periods; /* ref_options.stats_periods (setup_node: both kinds) */
	bool            has_orgs; /* the organisations are in the directory: tokens can be issued */
	uint32_t        lang_hops;   /* ref_options.language_hops (0: the default) */
	audit          *audit;       /* the node's audit log: reads of referrals and offers */
	size_t          call_budget; /* rpc_server_options.call_budget (0: the default) */
} node;

typedef struct svc_spec {
	const char                       *id;
	int                               org;
	Haven__Capacity__V1__ServiceType  type;
	const char                       *region;
	uint32_t                          available;
	const char                       *lang;   /* one language or NULL */
	Haven__Capacity__V1__Exploitation spec;   /* or 0 */
	Haven__Capacity__V1__Population   pop;    /* 0: women and men */
	const char                       *access; /* or NULL */
} svc_spec;

typedef struct need_spec {
	Haven__Capacity__V1__ServiceType type;
	Haven__Capacity__V1__Population  pop;
	const char                      *lang;
	const char                      *access;
} need_spec;

typedef struct create_spec {
	const char                       *subject;
	Haven__Referral__V1__Urgency      urgency;
	Haven__Referral__V1__Exploitation exploitation;
	need_spec                         needs[9];
	size_t                            n_needs;
	const char                       *excluded[12];
	size_t                            n_excluded;
	const char                       *preferred[4];
	size_t                            n_preferred;
	const char                       *note;
} create_spec;

/* The clock of the services (fake_now), moved by advance. */
extern _Atomic int64_t clock_ms;
/* Consent hook calls so far. */
extern atomic_int consent_calls;
/* A subject whose every consent the tests withdraw ("": none). */
extern char withdrawn_subject[40];
/* The message of the last refused call. */
extern char errbuf[RPC_ERRMSG_MAX];

/* The standard map of services: shelters in Amsterdam (A, own region), Noord-Holland (B,
 * neighbour) and Limburg (B, far); legal aid in Den Haag (A). */
extern const svc_spec    std_services[];
extern const size_t      N_STD;
extern const create_spec one_shelter;

int64_t fake_now(void *arg);
void    advance(int64_t ms);
void    add_services(node *n, const svc_spec *specs, size_t count);
/* The capacity figures of a service now. */
void places(node *n, const char *id, uint32_t *available, uint32_t *held);
void open_services(node *n, bool reopen_store);
void close_services(node *n, bool close_store);
int  setup_node(void **state, bool notify);
int  setup(void **state);
int  setup_notify(void **state);
/* The invariant after every scenario: each service holds exactly its open offers' places,
 * available (held included) + occupied <= maximum, and every open offer's need is OFFERED
 * with that offer (no place held for a need not offered). */
void      check_invariant(node *n);
int       teardown(void **state);
hv_status call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, void *out, const char *key);
hv_status create_as(node *n, int who, const create_spec *s, const char *key, Referral **out);
hv_status create(node *n, const create_spec *s, Referral **out);
Referral *get_as(node *n, int who, const char *id);
/* GetReferral as who: the call's status (a refusal's message is in errbuf). */
hv_status get_status(node *n, int who, const char *id);
hv_status offer_act(node *n, int who, const char *method, const char *offer, int reason,
    const char *text, Offer **out);
hv_status placement(node *n, int who, const char *method, const char *offer, int outcome,
    const char *text);
Haven__Referral__V1__ListOffersResponse *offers_of(node *n, int who, bool open_only);
void                                     free_msg(void *m);

#endif
