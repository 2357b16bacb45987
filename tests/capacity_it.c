/*
 * capacity_it.c - haven.capacity.v1.Capacity end to end: a real RPC server over inproc://
 * with the Capacity and Auth services on a durable store, and clients holding session tokens of
 * organisations of every role. Covers who may do what (allowed and PERMISSION_DENIED), every
 * kind of bad input (each a clear status, nothing stored), optimistic concurrency (stale
 * versions ABORTED; many clients updating one service lose no update), holds racing for the
 * last places, freshness, hold expiry by the service's thread, the partner directory feeding
 * auth (disabled organisations refused at once, login with the registered certificate), and
 * CapacityChanged on the pub socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capacity.h"
#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/log.h"
#include "haven/rpc.h"
#include "haven/store.h"
#include "testutil.h"

#include "haven/rpc/v1/rpc.pb-c.h"

#define URL     "inproc://capacity-test"
#define PUB_URL "inproc://capacity-test-events"
#define M(name) "haven.capacity.v1.Capacity/" name

typedef Haven__Capacity__V1__Organisation org_t;
typedef Haven__Capacity__V1__Service      service_t;
typedef Haven__Capacity__V1__ServiceView  view_t;

#define T_SHELTER   HAVEN__CAPACITY__V1__SERVICE_TYPE__SHELTER
#define T_LEGAL_AID HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID
#define T_PEER      HAVEN__CAPACITY__V1__SERVICE_TYPE__PEER_SUPPORT
#define R_PEER      HAVEN__CAPACITY__V1__ROLE__PEER_SUPPORT_GROUP
#define P_WOMEN     HAVEN__CAPACITY__V1__POPULATION__WOMEN
#define P_MEN       HAVEN__CAPACITY__V1__POPULATION__MEN
#define P_MINORS    HAVEN__CAPACITY__V1__POPULATION__MINORS
#define FRESH       HAVEN__CAPACITY__V1__FRESHNESS__FRESH
#define UNKNOWN     HAVEN__CAPACITY__V1__FRESHNESS__UNKNOWN

/* ---- the node under test ------------------------------------------------------------ */

static _Atomic int64_t clock_offset;

static int64_t
test_now(void *arg)
{
	(void) arg;
	return (hv_clock_wall_ms() + atomic_load(&clock_offset));
}

/* The organisations of the directory, one of each kind, and a channel with its token. */
enum { ADMIN, COORD_AMS, COORD_RDAM, REFERRER, SHELTER_A, SHELTER_R, MUNI, N_ORGS };

static const struct {
	const char               *id;
	Haven__Capacity__V1__Role role;
	rpc_role                  rpc;
	const char               *region;
	bool                      cert;
} orgs[N_ORGS] = {
	[ADMIN]     = { "node-admin", HAVEN__CAPACITY__V1__ROLE__ADMIN, RPC_ROLE_ADMIN, "Amsterdam",
	        false },
	[COORD_AMS] = { "coord-ams", HAVEN__CAPACITY__V1__ROLE__COORDINATOR, RPC_ROLE_COORDINATOR,
	    "Amsterdam", false },
	[COORD_RDAM] = { "coord-rdam", HAVEN__CAPACITY__V1__ROLE__COORDINATOR, RPC_ROLE_COORDINATOR,
	    "Rotterdam", false },
	[REFERRER]   = { "acme-ngo", HAVEN__CAPACITY__V1__ROLE__REFERRER, RPC_ROLE_REFERRER,
	      "Amsterdam", true },
	[SHELTER_A]  = { "shelter-a", HAVEN__CAPACITY__V1__ROLE__PROVIDER, RPC_ROLE_PROVIDER,
	     "Amsterdam", true },
	[SHELTER_R]  = { "shelter-r", HAVEN__CAPACITY__V1__ROLE__PROVIDER, RPC_ROLE_PROVIDER,
	     "Rotterdam", false },
	[MUNI] = { "gemeente-ams", HAVEN__CAPACITY__V1__ROLE__MUNICIPALITY, RPC_ROLE_MUNICIPALITY,
	    "Amsterdam", false },
};

static struct {
	char         tmp[512];
	char         pki[600];
	char         ca[700];
	store       *st;
	region_map  *map;
	cap_service *cs;
	auth        *auth;
	rpc_server  *srv;
	rpc_channel *op;         /* inproc without a token: the local operator */
	rpc_channel *ch[N_ORGS]; /* each with its organisation's session token */
	char        *cert[N_ORGS];
	audit       *au; /* directory changes are audited in it */
} g;

static char err[RPC_ERRMSG_MAX];

/* ---- client helpers ---------------------------------------------------------------- */

/* Calls a Capacity method; the reply goes to *out (free with protobuf_c_message_free_unpacked)
 * or is freed when out is NULL. The server's message is in err. */
static hv_status
call(rpc_channel *ch, const char *method, const void *req, const ProtobufCMessageDescriptor *d,
    void *out)
{
	ProtobufCMessage *r  = NULL;
	rpc_call_options  co = { .timeout_ms = 20000 };
	hv_status         st;

	err[0] = '\0';
	st     = rpc_channel_call(ch, method, req, d, &r, &co, err, sizeof(err));
	if (out != NULL) {
		*(ProtobufCMessage **) out = r;
	} else if (r != NULL) {
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

static void
expect_err(const char *fragment)
{
	if (strstr(err, fragment) == NULL) {
		fail_msg("message '%s' does not say '%s'", err, fragment);
	}
}

static hv_status
register_org(rpc_channel *ch, const char *id, Haven__Capacity__V1__Role role, const char *region,
    const char *cert)
{
	Haven__Capacity__V1__RegisterOrganisationRequest req =
	    HAVEN__CAPACITY__V1__REGISTER_ORGANISATION_REQUEST__INIT;
	org_t o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;

	o.id             = (char *) id;
	o.name           = "A partner organisation";
	o.role           = role;
	o.region         = (char *) region;
	o.cert_pem       = (char *) (cert != NULL ? cert : "");
	req.organisation = &o;
	return (call(ch, M("RegisterOrganisation"), &req.base,
	    &haven__capacity__v1__organisation__descriptor, NULL));
}

static org_t *
get_org(const char *id)
{
	Haven__Capacity__V1__GetOrganisationRequest req =
	    HAVEN__CAPACITY__V1__GET_ORGANISATION_REQUEST__INIT;
	org_t *o = NULL;

	req.id = (char *) id;
	assert_int_equal(call(g.op, M("GetOrganisation"), &req.base,
	                     &haven__capacity__v1__organisation__descriptor, &o),
	    HV_OK);
	return (o);
}

static uint64_t
org_version(const char *id)
{
	org_t   *o = get_org(id);
	uint64_t v = o->version;

	protobuf_c_message_free_unpacked(&o->base, NULL);
	return (v);
}

/* UpdateOrganisation of change->id as ch, based on version based_on (empty fields of change keep
 * their value): the organisation as changed goes to *out, or is freed when out is NULL. */
static hv_status
update_org(rpc_channel *ch, org_t *change, uint64_t based_on, org_t **out)
{
	Haven__Capacity__V1__UpdateOrganisationRequest req =
	    HAVEN__CAPACITY__V1__UPDATE_ORGANISATION_REQUEST__INIT;

	req.organisation     = change;
	req.based_on_version = based_on;
	return (call(ch, M("UpdateOrganisation"), &req.base,
	    &haven__capacity__v1__organisation__descriptor, out));
}

static Haven__Capacity__V1__Population pops_women[]        = { P_WOMEN };
static Haven__Capacity__V1__Population pops_women_minors[] = { P_WOMEN, P_MINORS };
static char                           *langs_nl_en[]       = { "nl", "en" };

static void
svc_init(service_t *s, const char *id, const char *org, Haven__Capacity__V1__ServiceType type,
    const char *region, uint32_t maximum, uint32_t available)
{
	haven__capacity__v1__service__init(s);
	s->id                 = (char *) id;
	s->org_id             = (char *) org;
	s->name               = "Opvang";
	s->type               = type;
	s->service_area       = (char *) region;
	s->n_populations      = 1;
	s->populations        = pops_women;
	s->n_languages        = 2;
	s->languages          = langs_nl_en;
	s->maximum            = maximum;
	s->available          = available;
	s->front_door_contact = "intake 088 000 0000";
}

static hv_status
register_service(rpc_channel *ch, service_t *s)
{
	Haven__Capacity__V1__RegisterServiceRequest req =
	    HAVEN__CAPACITY__V1__REGISTER_SERVICE_REQUEST__INIT;

	req.service = s;
	return (call(ch, M("RegisterService"), &req.base, &haven__capacity__v1__service__descriptor,
	    NULL));
}

static hv_status
get_view(rpc_channel *ch, const char *id, view_t **out)
{
	Haven__Capacity__V1__GetServiceRequest req = HAVEN__CAPACITY__V1__GET_SERVICE_REQUEST__INIT;

	req.id = (char *) id;
	return (call(ch, M("GetService"), &req.base, &haven__capacity__v1__service_view__descriptor,
	    out));
}

/* The operator's view of a service: version and available, for "nothing stored" checks. */
static void
service_state(const char *id, uint64_t *version, uint32_t *available, uint32_t *held)
{
	view_t *v = NULL;

	assert_int_equal(get_view(g.op, id, &v), HV_OK);
	*version   = v->service->version;
	*available = v->service->available;
	if (held != NULL) {
		*held = v->service->held;
	}
	protobuf_c_message_free_unpacked(&v->base, NULL);
}

static hv_status
set_available(rpc_channel *ch, const char *id, uint32_t available, uint64_t version, view_t **out)
{
	Haven__Capacity__V1__UpdateAvailabilityRequest req =
	    HAVEN__CAPACITY__V1__UPDATE_AVAILABILITY_REQUEST__INIT;

	req.service_id       = (char *) id;
	req.available        = available;
	req.based_on_version = version;
	return (call(ch, M("UpdateAvailability"), &req.base,
	    &haven__capacity__v1__service_view__descriptor, out));
}

/* Sets available based on the current version; returns the call's status. */
static hv_status
set_now(rpc_channel *ch, const char *id, uint32_t available)
{
	uint64_t v;
	uint32_t a;

	service_state(id, &v, &a, NULL);
	return (set_available(ch, id, available, v, NULL));
}

static hv_status
find(rpc_channel *ch, Haven__Capacity__V1__FindServicesRequest *req,
    Haven__Capacity__V1__FindServicesResponse **out)
{
	return (call(ch, M("FindServices"), &req->base,
	    &haven__capacity__v1__find_services_response__descriptor, out));
}

/* ---- store-level helpers (what the referral service does in its transactions) -------- */

typedef struct hold_job {
	cap_service *cs;
	const char  *service_id;
	uint32_t     ttl_s;
	char         hold_id[CAP_ID_MAX];
	hv_status    st;
	bool         freed; /* cap_place_release */
} hold_job;

static hv_status
hold_fn(store_txn *txn, void *arg)
{
	hold_job *j = arg;

	return (cap_hold_place(j->cs, txn, j->service_id, j->ttl_s, "ref-1/need-1", j->hold_id));
}

static hv_status
place_release_fn(store_txn *txn, void *arg)
{
	hold_job *j = arg;

	return (cap_place_release(j->cs, txn, j->service_id, &j->freed));
}

static hv_status
confirm_fn(store_txn *txn, void *arg)
{
	hold_job *j = arg;

	return (cap_hold_confirm(j->cs, txn, j->hold_id));
}

static hv_status
release_fn(store_txn *txn, void *arg)
{
	hold_job *j = arg;

	return (cap_hold_release(j->cs, txn, j->hold_id));
}

/* ---- setup ---------------------------------------------------------------------------- */

static rpc_channel *
token_channel(const char *id, rpc_role role)
{
	rpc_channel *ch;
	char         tok[AUTH_TOKEN_MAX];

	assert_int_equal(rpc_channel_open(&ch, URL, NULL), HV_OK);
	assert_int_equal(auth_issue_token(g.auth, id, role, hv_clock_wall_ms(), tok, NULL), HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, tok), HV_OK);
	return (ch);
}

static int
setup(void **state)
{
	const char *const  pki_orgs[] = { "acme-ngo", "shelter-a" };
	char               dir[700];
	auth_options       ao = { .lookup = cap_lookup_org };
	cap_options        co = { 0 };
	rpc_server_options so = { .workers = 8, .name = "capacity-test" };

	tu_tmpdir(g.tmp, sizeof(g.tmp), "capacity");
	snprintf(g.pki, sizeof(g.pki), "%s/pki", g.tmp);
	tu_pki(g.pki, pki_orgs, 2);
	/* Certificates that must not be registered for ngo-y, and a second one for acme-ngo. */
	tu_cert(g.pki, "ngo-y-self", "ngo-y", 30, 1);
	tu_cert(g.pki, "ngo-y-expired", "ngo-y", -1, 0);
	tu_cert(g.pki, "ngo-y-wrong-cn", "ngo-z", 30, 0);
	tu_cert(g.pki, "acme-ngo-2", "acme-ngo", 30, 0);
	snprintf(dir, sizeof(dir), "%s/other-ca", g.pki);
	tu_pki(dir, NULL, 0);
	tu_cert(dir, "ngo-y", "ngo-y", 30, 0);
	{
		char from[800];
		snprintf(from, sizeof(from), "%s/ngo-y.pem", dir);
		snprintf(dir, sizeof(dir), "%s/ngo-y-other-ca.pem", g.pki);
		assert_int_equal(rename(from, dir), 0);
	}
	for (int i = 0; i < N_ORGS; i++) {
		if (orgs[i].cert) {
			snprintf(dir, sizeof(dir), "%s/%s.pem", g.pki, orgs[i].id);
			g.cert[i] = tu_slurp(dir, NULL);
		}
	}
	snprintf(dir, sizeof(dir), "%s/store", g.tmp);
	assert_int_equal(store_open(&g.st, dir, NULL), HV_OK);
	assert_int_equal(region_map_default(&g.map), HV_OK);
	co.store   = g.st;
	co.regions = g.map;
	co.pub_url = PUB_URL;
	co.now_ms  = test_now;
	snprintf(g.ca, sizeof(g.ca), "%s/ca.pem", g.pki);
	co.ca_file = g.ca;
	assert_int_equal(cap_open(&g.cs, &co), HV_OK);
	assert_int_equal(audit_open(&g.au, g.st, g.tmp), HV_OK);
	cap_set_audit(g.cs, g.au);

	assert_int_equal(crypto_random(ao.secret, sizeof(ao.secret)), HV_OK);
	ao.lookup_arg = g.cs;
	ao.ca_file    = g.ca;
	assert_int_equal(auth_open(&g.auth, &ao), HV_OK);
	so.auth = g.auth;
	assert_int_equal(rpc_server_open(&g.srv, &so), HV_OK);
	assert_int_equal(auth_register(g.auth, g.srv), HV_OK);
	assert_int_equal(cap_register(g.cs, g.srv), HV_OK);
	assert_int_equal(rpc_server_listen(g.srv, URL), HV_OK);
	assert_int_equal(rpc_server_start(g.srv), HV_OK);

	assert_int_equal(rpc_channel_open(&g.op, URL, NULL), HV_OK);
	for (int i = 0; i < N_ORGS; i++) {
		assert_int_equal(register_org(g.op, orgs[i].id, orgs[i].role, orgs[i].region,
		                     g.cert[i]),
		    HV_OK);
		g.ch[i] = token_channel(orgs[i].id, orgs[i].rpc);
	}
	return (0);
}

static int
teardown(void **state)
{
	for (int i = 0; i < N_ORGS; i++) {
		rpc_channel_close(g.ch[i]);
		free(g.cert[i]);
	}
	rpc_channel_close(g.op);
	rpc_server_close(g.srv);
	cap_close(g.cs);
	audit_close(g.au);
	auth_close(g.auth);
	region_map_free(g.map);
	store_close(g.st);
	return (0);
}

/* Whether the audit log holds a successful entry of method (short name) by org (role) about
 * target. */
static bool
audited(const char *method, const char *org, rpc_role role, const char *target)
{
	audit_entry *es = calloc(AUDIT_LIST_MAX, sizeof(*es));
	store_txn   *txn;
	size_t       n     = 0;
	uint64_t     after = 0;
	bool         found = false;
	char         full[AUDIT_METHOD_MAX];

	assert_non_null(es);
	snprintf(full, sizeof(full), M("%s"), method);
	assert_int_equal(store_read_begin(g.st, &txn), HV_OK);
	do {
		assert_int_equal(audit_list(g.au, txn, NULL, after, es, AUDIT_LIST_MAX, &n), HV_OK);
		for (size_t i = 0; i < n; i++) {
			found = found ||
			    (strcmp(es[i].method, full) == 0 && strcmp(es[i].org, org) == 0 &&
			        es[i].role == role && strcmp(es[i].purpose, target) == 0 &&
			        es[i].result == HV_OK);
			after = es[i].seq;
		}
	} while (n == AUDIT_LIST_MAX);
	store_read_end(txn);
	free(es);
	return (found);
}

/* A peer-support group (experts by experience) is a provider of peer support only: it
 * registers PEER_SUPPORT services and no other kind, by registration or by a change of type;
 * and an organisation's role changes only to one that can run the services it runs. */
static void
test_peer_support_group(void **state)
{
	Haven__Capacity__V1__UpdateServiceRequest sreq =
	    HAVEN__CAPACITY__V1__UPDATE_SERVICE_REQUEST__INIT;
	org_t     change = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	org_t    *o;
	service_t s;
	uint64_t  ver = 0, orgver;
	uint32_t  avail;

	(void) state;
	assert_int_equal(register_org(g.op, "peers-ams", R_PEER, "Amsterdam", NULL), HV_OK);
	o = get_org("peers-ams");
	assert_int_equal(o->role, R_PEER);
	protobuf_c_message_free_unpacked(&o->base, NULL);
	svc_init(&s, "svc-peers-bed", "peers-ams", T_SHELTER, "Amsterdam", 4, 2);
	assert_int_equal(register_service(g.op, &s), HV_FAILED_PRECONDITION);
	expect_err(
	    "organisation peers-ams is a peer-support group: it runs peer-support services only");
	svc_init(&s, "svc-peers", "peers-ams", T_PEER, "Amsterdam", 4, 2);
	assert_int_equal(register_service(g.op, &s), HV_OK);

	/* Its service cannot become another kind. */
	service_state("svc-peers", &ver, &avail, NULL);
	svc_init(&s, "svc-peers", "", T_SHELTER, "Amsterdam", 4, 0);
	sreq.service          = &s;
	sreq.based_on_version = ver;
	assert_int_equal(call(g.op, M("UpdateService"), &sreq.base,
	                     &haven__capacity__v1__service__descriptor, NULL),
	    HV_FAILED_PRECONDITION);
	expect_err("peer-support services only");
	s.type = T_PEER;
	assert_int_equal(call(g.op, M("UpdateService"), &sreq.base,
	                     &haven__capacity__v1__service__descriptor, NULL),
	    HV_OK);

	/* A provider that runs a shelter does not become a peer-support group, nor a referrer. */
	assert_int_equal(register_org(g.op, "shelter-pz", HAVEN__CAPACITY__V1__ROLE__PROVIDER,
	                     "Amsterdam", NULL),
	    HV_OK);
	svc_init(&s, "svc-pz-bed", "shelter-pz", T_SHELTER, "Amsterdam", 4, 2);
	assert_int_equal(register_service(g.op, &s), HV_OK);
	orgver      = org_version("shelter-pz");
	change.id   = "shelter-pz";
	change.role = R_PEER;
	assert_int_equal(update_org(g.op, &change, orgver, NULL), HV_FAILED_PRECONDITION);
	expect_err("retire it first");
	change.role = HAVEN__CAPACITY__V1__ROLE__REFERRER;
	assert_int_equal(update_org(g.op, &change, orgver, NULL), HV_FAILED_PRECONDITION);
	expect_err("shelter-pz is not a provider");
	o = get_org("shelter-pz");
	assert_int_equal(o->role, HAVEN__CAPACITY__V1__ROLE__PROVIDER);
	protobuf_c_message_free_unpacked(&o->base, NULL);
	/* Its shelter retired, it may (and is no provider for test_org_list's count after). */
	{
		Haven__Capacity__V1__RetireServiceRequest rr =
		    HAVEN__CAPACITY__V1__RETIRE_SERVICE_REQUEST__INIT;

		service_state("svc-pz-bed", &ver, &avail, NULL);
		rr.id               = "svc-pz-bed";
		rr.based_on_version = ver;
		assert_int_equal(call(g.op, M("RetireService"), &rr.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_OK);
	}
	assert_int_equal(update_org(g.op, &change, orgver, NULL), HV_OK);
	/* The peer-support group may become a provider (a provider runs any kind), and back. */
	orgver      = org_version("peers-ams");
	change.id   = "peers-ams";
	change.role = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
	assert_int_equal(update_org(g.op, &change, orgver, NULL), HV_OK);
	change.role = R_PEER;
	assert_int_equal(update_org(g.op, &change, orgver + 1, NULL), HV_OK);
}

/* ---- organisations -------------------------------------------------------------------- */

static void
test_org_roles(void **state)
{
	Haven__Capacity__V1__DisableOrganisationRequest dreq =
	    HAVEN__CAPACITY__V1__DISABLE_ORGANISATION_REQUEST__INIT;
	org_t    change = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	org_t   *o;
	uint64_t v;

	/* Operator and admin: anyone. */
	assert_int_equal(register_org(g.ch[ADMIN], "coord-zwb",
	                     HAVEN__CAPACITY__V1__ROLE__COORDINATOR, "Zeeland-West-Brabant", NULL),
	    HV_OK);
	assert_int_equal(register_org(g.op, "ngo-ams", HAVEN__CAPACITY__V1__ROLE__REFERRER,
	                     "Amsterdam", NULL),
	    HV_OK);
	/* Nobody else, a coordinator of the region included (issue 12, hole 2). */
	for (int i = 0; i < N_ORGS; i++) {
		if (i == ADMIN) {
			continue;
		}
		assert_int_equal(register_org(g.ch[i], "ngo-x", HAVEN__CAPACITY__V1__ROLE__REFERRER,
		                     orgs[i].region, NULL),
		    HV_PERMISSION_DENIED);
	}
	/* Nothing of the refused ones was stored. */
	{
		Haven__Capacity__V1__GetOrganisationRequest req =
		    HAVEN__CAPACITY__V1__GET_ORGANISATION_REQUEST__INIT;
		req.id = "ngo-x";
		assert_int_equal(call(g.op, M("GetOrganisation"), &req.base,
		                     &haven__capacity__v1__organisation__descriptor, NULL),
		    HV_NOT_FOUND);
	}

	/* Hole 2: the coordinator of the organisation's own region replaces neither its name nor
	 * its certificate (it would sign in as that organisation and read its people). */
	v           = org_version("ngo-ams");
	change.id   = "ngo-ams";
	change.name = "Amsterdam NGO";
	assert_int_equal(update_org(g.ch[COORD_AMS], &change, v, NULL), HV_PERMISSION_DENIED);
	change.cert_pem = g.cert[COORD_AMS];
	assert_int_equal(update_org(g.ch[COORD_AMS], &change, v, NULL), HV_PERMISSION_DENIED);
	change.cert_pem = NULL;
	assert_int_equal(org_version("ngo-ams"), v);
	/* An admin may; empty fields keep their value. */
	assert_int_equal(update_org(g.ch[ADMIN], &change, v, &o), HV_OK);
	assert_string_equal(o->name, "Amsterdam NGO");
	assert_string_equal(o->region, "Amsterdam");
	assert_int_equal(o->role, HAVEN__CAPACITY__V1__ROLE__REFERRER);
	assert_int_equal(o->version, v + 1);
	protobuf_c_message_free_unpacked(&o->base, NULL);
	/* Based on the old version now: ABORTED, with the current one named. */
	change.name = "Stale";
	assert_int_equal(update_org(g.op, &change, v, NULL), HV_ABORTED);
	{
		char want[128];
		snprintf(want, sizeof(want), "organisation ngo-ams is at version %llu, not %llu",
		    (unsigned long long) (v + 1), (unsigned long long) v);
		expect_err(want);
	}
	o = get_org("ngo-ams");
	assert_string_equal(o->name, "Amsterdam NGO");
	protobuf_c_message_free_unpacked(&o->base, NULL);

	/* Disable and enable: the operator and admins; no coordinator re-enables an organisation
	 * the operator disabled. */
	dreq.id       = "ngo-ams";
	dreq.disabled = true;
	assert_int_equal(call(g.ch[COORD_AMS], M("DisableOrganisation"), &dreq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(g.op, M("DisableOrganisation"), &dreq.base,
	                     &haven__capacity__v1__organisation__descriptor, &o),
	    HV_OK);
	assert_true(o->disabled);
	protobuf_c_message_free_unpacked(&o->base, NULL);
	dreq.disabled = false;
	assert_int_equal(call(g.ch[COORD_AMS], M("DisableOrganisation"), &dreq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(g.ch[REFERRER], M("DisableOrganisation"), &dreq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_PERMISSION_DENIED);
	o = get_org("ngo-ams");
	assert_true(o->disabled);
	protobuf_c_message_free_unpacked(&o->base, NULL);

	/* Every change of the directory is in the audit log, with who made it. */
	assert_true(audited("RegisterOrganisation", "node-admin", RPC_ROLE_ADMIN, "coord-zwb"));
	assert_true(audited("RegisterOrganisation", "", RPC_ROLE_OPERATOR, "ngo-ams"));
	assert_true(audited("UpdateOrganisation", "node-admin", RPC_ROLE_ADMIN, "ngo-ams"));
	assert_true(audited("DisableOrganisation", "", RPC_ROLE_OPERATOR, "ngo-ams"));
	assert_false(audited("UpdateOrganisation", "coord-ams", RPC_ROLE_COORDINATOR, "ngo-ams"));
	{
		audit_verify_result vr;
		assert_int_equal(audit_verify(g.au, &vr), HV_OK);
	}

	/* Reading the directory: every authenticated role. */
	for (int i = 0; i < N_ORGS; i++) {
		Haven__Capacity__V1__GetOrganisationRequest req =
		    HAVEN__CAPACITY__V1__GET_ORGANISATION_REQUEST__INIT;
		req.id = "shelter-a";
		assert_int_equal(call(g.ch[i], M("GetOrganisation"), &req.base,
		                     &haven__capacity__v1__organisation__descriptor, &o),
		    HV_OK);
		assert_int_equal(strlen(o->cert_sha256), 64);
		assert_non_null(strstr(o->cert_pem, "BEGIN CERTIFICATE"));
		protobuf_c_message_free_unpacked(&o->base, NULL);
	}
}

static void
test_org_bad_input(void **state)
{
	Haven__Capacity__V1__UpdateOrganisationRequest ureq =
	    HAVEN__CAPACITY__V1__UPDATE_ORGANISATION_REQUEST__INIT;
	Haven__Capacity__V1__GetOrganisationRequest greq =
	    HAVEN__CAPACITY__V1__GET_ORGANISATION_REQUEST__INIT;
	org_t change = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	char  big[300];

	memset(big, 'n', sizeof(big));
	big[201] = '\0';
	assert_int_equal(register_org(g.op, "Bad Id", HAVEN__CAPACITY__V1__ROLE__REFERRER,
	                     "Amsterdam", NULL),
	    HV_INVALID_ARGUMENT);
	expect_err("organisation id must be 1 to 63");
	assert_int_equal(register_org(g.op, "ngo-y", (Haven__Capacity__V1__Role) 9, "Amsterdam",
	                     NULL),
	    HV_INVALID_ARGUMENT);
	expect_err("role");
	assert_int_equal(register_org(g.op, "ngo-y", 0, "Amsterdam", NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(register_org(g.op, "ngo-y", HAVEN__CAPACITY__V1__ROLE__REFERRER,
	                     "Atlantis", NULL),
	    HV_INVALID_ARGUMENT);
	expect_err("region 'Atlantis' is not a region of the region map");
	assert_int_equal(register_org(g.op, "ngo-y", HAVEN__CAPACITY__V1__ROLE__REFERRER,
	                     "Amsterdam",
	                     "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	    HV_INVALID_ARGUMENT);
	expect_err("cert_pem is not a PEM certificate");
	assert_int_equal(register_org(g.op, "shelter-a", HAVEN__CAPACITY__V1__ROLE__PROVIDER,
	                     "Amsterdam", NULL),
	    HV_ALREADY_EXISTS);
	/* One certificate identifies one organisation: its CN is the organisation id. */
	assert_int_equal(register_org(g.op, "copycat", HAVEN__CAPACITY__V1__ROLE__REFERRER,
	                     "Amsterdam", g.cert[SHELTER_A]),
	    HV_INVALID_ARGUMENT);
	expect_err("cert_pem: the certificate's subject CN is not the organisation id");
	/* Only a certificate of the node's CA, valid now (issue 12, hole 8). */
	{
		static const struct {
			const char *file, *why;
		} bad[] = {
			{ "ngo-y-self",
			    "cert_pem: the certificate is self-signed, not signed by the node's "
			    "CA" },
			{ "ngo-y-expired", "cert_pem: the certificate has expired" },
			{ "ngo-y-other-ca",
			    "cert_pem: the certificate is not signed by the node's CA" },
			{ "ngo-y-wrong-cn",
			    "cert_pem: the certificate's subject CN is not the organisation id" },
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char  path[800];
			char *pem;
			snprintf(path, sizeof(path), "%s/%s.pem", g.pki, bad[i].file);
			pem = tu_slurp(path, NULL);
			assert_int_equal(register_org(g.op, "ngo-y",
			                     HAVEN__CAPACITY__V1__ROLE__REFERRER, "Amsterdam", pem),
			    HV_INVALID_ARGUMENT);
			expect_err(bad[i].why);
			free(pem);
		}
	}
	{
		Haven__Capacity__V1__RegisterOrganisationRequest req =
		    HAVEN__CAPACITY__V1__REGISTER_ORGANISATION_REQUEST__INIT;
		org_t o          = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
		o.id             = "ngo-y";
		o.name           = big;
		o.role           = HAVEN__CAPACITY__V1__ROLE__REFERRER;
		o.region         = "Amsterdam";
		req.organisation = &o;
		assert_int_equal(call(g.op, M("RegisterOrganisation"), &req.base,
		                     &haven__capacity__v1__organisation__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
		expect_err("name must be 1 to 200 bytes");
		req.organisation = NULL;
		assert_int_equal(call(g.op, M("RegisterOrganisation"), &req.base,
		                     &haven__capacity__v1__organisation__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
	}
	greq.id = "ngo-y";
	assert_int_equal(call(g.op, M("GetOrganisation"), &greq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_NOT_FOUND);
	expect_err("no organisation ngo-y");
	greq.id = "";
	assert_int_equal(call(g.op, M("GetOrganisation"), &greq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_INVALID_ARGUMENT);

	/* Update: unknown, no version, a bad value, another's certificate. */
	change.id             = "nobody";
	ureq.organisation     = &change;
	ureq.based_on_version = 1;
	assert_int_equal(call(g.op, M("UpdateOrganisation"), &ureq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_NOT_FOUND);
	change.id             = "shelter-r";
	ureq.based_on_version = 0;
	assert_int_equal(call(g.op, M("UpdateOrganisation"), &ureq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	expect_err("based_on_version is required");
	ureq.based_on_version = org_version("shelter-r");
	change.region         = "Atlantis";
	assert_int_equal(call(g.op, M("UpdateOrganisation"), &ureq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	change.region   = "";
	change.cert_pem = g.cert[SHELTER_A];
	assert_int_equal(call(g.op, M("UpdateOrganisation"), &ureq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	expect_err("cert_pem: the certificate's subject CN is not the organisation id");
	change.cert_pem = "";
	change.role     = (Haven__Capacity__V1__Role) 42;
	assert_int_equal(call(g.op, M("UpdateOrganisation"), &ureq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(org_version("shelter-r"), ureq.based_on_version);
}

static void
test_org_list(void **state)
{
	Haven__Capacity__V1__ListOrganisationsRequest req =
	    HAVEN__CAPACITY__V1__LIST_ORGANISATIONS_REQUEST__INIT;
	Haven__Capacity__V1__ListOrganisationsResponse *rep               = NULL;
	char                                            token[CAP_ID_MAX] = "";
	char                                            last[CAP_ID_MAX]  = "";
	size_t                                          total             = 0;
	int                                             pages             = 0;

	/* Paging through everything, two at a time, in id order. */
	req.page_size = 2;
	do {
		req.page_token = token;
		assert_int_equal(call(g.ch[MUNI], M("ListOrganisations"), &req.base,
		                     &haven__capacity__v1__list_organisations_response__descriptor,
		                     &rep),
		    HV_OK);
		assert_true(rep->n_organisations <= 2);
		for (size_t i = 0; i < rep->n_organisations; i++) {
			assert_true(strcmp(rep->organisations[i]->id, last) > 0);
			snprintf(last, sizeof(last), "%s", rep->organisations[i]->id);
			assert_string_equal(rep->organisations[i]->cert_pem, ""); /* not in lists */
		}
		total += rep->n_organisations;
		snprintf(token, sizeof(token), "%s", rep->next_page_token);
		protobuf_c_message_free_unpacked(&rep->base, NULL);
		pages++;
	} while (token[0] != '\0' && pages < 100);
	assert_true(total >= N_ORGS);
	assert_int_equal(pages, (int) ((total + 1) / 2));

	/* Filters. */
	req.page_size  = 0;
	req.page_token = "";
	req.role       = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
	assert_int_equal(call(g.op, M("ListOrganisations"), &req.base,
	                     &haven__capacity__v1__list_organisations_response__descriptor, &rep),
	    HV_OK);
	assert_int_equal(rep->n_organisations, 2);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	req.region = "Rotterdam";
	assert_int_equal(call(g.op, M("ListOrganisations"), &req.base,
	                     &haven__capacity__v1__list_organisations_response__descriptor, &rep),
	    HV_OK);
	assert_int_equal(rep->n_organisations, 1);
	assert_string_equal(rep->organisations[0]->id, "shelter-r");
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	req.region = "Atlantis";
	assert_int_equal(call(g.op, M("ListOrganisations"), &req.base,
	                     &haven__capacity__v1__list_organisations_response__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	req.region = "";
	req.role   = (Haven__Capacity__V1__Role) 17;
	assert_int_equal(call(g.op, M("ListOrganisations"), &req.base,
	                     &haven__capacity__v1__list_organisations_response__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
	req.role       = 0;
	req.page_token = "NOT A TOKEN";
	assert_int_equal(call(g.op, M("ListOrganisations"), &req.base,
	                     &haven__capacity__v1__list_organisations_response__descriptor, NULL),
	    HV_INVALID_ARGUMENT);
}

/* ---- services ------------------------------------------------------------------------- */

static void
test_service_roles(void **state)
{
	service_t s;
	view_t   *v;
	uint64_t  ver;
	uint32_t  avail;

	/* Register: operator, admin, the provider for itself, the coordinator of its region. */
	svc_init(&s, "svc-op", "shelter-a", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(register_service(g.op, &s), HV_OK);
	svc_init(&s, "svc-admin", "shelter-r", T_SHELTER, "Rotterdam", 10, 5);
	assert_int_equal(register_service(g.ch[ADMIN], &s), HV_OK);
	svc_init(&s, "svc-self", "shelter-a", T_LEGAL_AID, "Amsterdam", 10, 5);
	assert_int_equal(register_service(g.ch[SHELTER_A], &s), HV_OK);
	svc_init(&s, "svc-other", "shelter-r", T_SHELTER, "Rotterdam", 10, 5);
	assert_int_equal(register_service(g.ch[SHELTER_A], &s), HV_PERMISSION_DENIED);
	expect_err("own only");
	svc_init(&s, "svc-coord", "shelter-a", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(register_service(g.ch[COORD_AMS], &s), HV_OK);
	svc_init(&s, "svc-coord2", "shelter-r", T_SHELTER, "Rotterdam", 10, 5);
	assert_int_equal(register_service(g.ch[COORD_AMS], &s), HV_PERMISSION_DENIED);
	svc_init(&s, "svc-coord3", "shelter-a", T_SHELTER, "Rotterdam", 10, 5);
	assert_int_equal(register_service(g.ch[COORD_AMS], &s), HV_PERMISSION_DENIED);
	svc_init(&s, "svc-ref", "shelter-a", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(register_service(g.ch[REFERRER], &s), HV_PERMISSION_DENIED);
	assert_int_equal(register_service(g.ch[MUNI], &s), HV_PERMISSION_DENIED);
	/* Only providers run services. */
	svc_init(&s, "svc-ngo", "acme-ngo", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(register_service(g.op, &s), HV_FAILED_PRECONDITION);
	expect_err("acme-ngo is not a provider");
	{
		const char *const refused[] = { "svc-other", "svc-coord2", "svc-coord3", "svc-ref",
			"svc-ngo" };
		for (size_t i = 0; i < 5; i++) {
			assert_int_equal(get_view(g.op, refused[i], NULL), HV_NOT_FOUND);
		}
	}

	/* Availability: the provider that runs it, a coordinator of its region, the operator. */
	assert_int_equal(set_now(g.ch[SHELTER_A], "svc-op", 4), HV_OK);
	assert_int_equal(set_now(g.ch[COORD_AMS], "svc-op", 3), HV_OK);
	assert_int_equal(set_now(g.op, "svc-op", 2), HV_OK);
	service_state("svc-op", &ver, &avail, NULL);
	assert_int_equal(avail, 2);
	assert_int_equal(set_available(g.ch[SHELTER_R], "svc-op", 9, ver, NULL),
	    HV_PERMISSION_DENIED);
	expect_err("organisation shelter-r may not change service svc-op");
	assert_int_equal(set_available(g.ch[COORD_RDAM], "svc-op", 9, ver, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(set_available(g.ch[ADMIN], "svc-op", 9, ver, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(set_available(g.ch[REFERRER], "svc-op", 9, ver, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(set_available(g.ch[MUNI], "svc-op", 9, ver, NULL), HV_PERMISSION_DENIED);
	{
		uint64_t ver2;
		uint32_t avail2;
		service_state("svc-op", &ver2, &avail2, NULL);
		assert_int_equal(ver2, ver);
		assert_int_equal(avail2, 2);
	}

	/* Reading services: everyone but municipalities, which get numbers only. */
	for (int i = 0; i < N_ORGS; i++) {
		Haven__Capacity__V1__FindServicesRequest fr =
		    HAVEN__CAPACITY__V1__FIND_SERVICES_REQUEST__INIT;
		Haven__Capacity__V1__SummaryRequest sr = HAVEN__CAPACITY__V1__SUMMARY_REQUEST__INIT;
		hv_status                           want = i == MUNI ? HV_PERMISSION_DENIED : HV_OK;

		assert_int_equal(get_view(g.ch[i], "svc-op", NULL), want);
		assert_int_equal(find(g.ch[i], &fr, NULL), want);
		assert_int_equal(call(g.ch[i], M("Summary"), &sr.base,
		                     &haven__capacity__v1__summary_response__descriptor, NULL),
		    HV_OK);
		assert_int_equal(call(g.ch[i], M("ListRegions"), &sr.base,
		                     &haven__capacity__v1__list_regions_response__descriptor, NULL),
		    HV_OK);
	}

	/* Update and retire: the same rules. */
	{
		Haven__Capacity__V1__UpdateServiceRequest ur =
		    HAVEN__CAPACITY__V1__UPDATE_SERVICE_REQUEST__INIT;
		Haven__Capacity__V1__RetireServiceRequest rr =
		    HAVEN__CAPACITY__V1__RETIRE_SERVICE_REQUEST__INIT;
		service_state("svc-self", &ver, &avail, NULL);
		svc_init(&s, "svc-self", "", T_LEGAL_AID, "Amsterdam", 12, 0);
		s.name              = "Juridisch spreekuur";
		ur.service          = &s;
		ur.based_on_version = ver;
		assert_int_equal(call(g.ch[SHELTER_R], M("UpdateService"), &ur.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		s.service_area = "Rotterdam"; /* a coordinator cannot move it out of its region */
		assert_int_equal(call(g.ch[COORD_AMS], M("UpdateService"), &ur.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		s.service_area = "Amsterdam";
		assert_int_equal(call(g.ch[SHELTER_A], M("UpdateService"), &ur.base,
		                     &haven__capacity__v1__service__descriptor, &v),
		    HV_OK);
		assert_string_equal(((service_t *) v)->name, "Juridisch spreekuur");
		assert_int_equal(((service_t *) v)->maximum, 12);
		assert_int_equal(((service_t *) v)->version, ver + 1);
		assert_int_equal(((service_t *) v)->available, 5); /* capacity is not touched */
		protobuf_c_message_free_unpacked(&v->base, NULL);

		rr.id               = "svc-self";
		rr.based_on_version = ver + 1;
		assert_int_equal(call(g.ch[SHELTER_R], M("RetireService"), &rr.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		assert_int_equal(call(g.ch[COORD_RDAM], M("RetireService"), &rr.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_PERMISSION_DENIED);
		assert_int_equal(call(g.ch[SHELTER_A], M("RetireService"), &rr.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_OK);
		assert_int_equal(get_view(g.ch[REFERRER], "svc-self", &v), HV_OK);
		assert_true(v->service->retired);
		assert_int_equal(v->free, 0);
		protobuf_c_message_free_unpacked(&v->base, NULL);
		rr.based_on_version = ver + 2;
		assert_int_equal(call(g.ch[SHELTER_A], M("RetireService"), &rr.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_FAILED_PRECONDITION);
		assert_int_equal(set_available(g.ch[SHELTER_A], "svc-self", 1, ver + 2, NULL),
		    HV_FAILED_PRECONDITION);
		expect_err("retired");
	}
}

static void
test_service_bad_input(void **state)
{
	service_t                         s;
	char                              big[300];
	char                             *many[17];
	Haven__Capacity__V1__Population   badpop[]  = { (Haven__Capacity__V1__Population) 99 };
	Haven__Capacity__V1__Exploitation badspec[] = { (Haven__Capacity__V1__Exploitation) 99 };
	view_t                           *v;
	uint64_t                          ver, ver2;
	uint32_t                          avail, avail2;
	char                              want[128];

	memset(big, 'c', sizeof(big));
	big[201] = '\0';
	for (int i = 0; i < 17; i++) {
		many[i] = "nl";
	}
#define BAD_REGISTER(what, code, fragment)                                                         \
	do {                                                                                       \
		svc_init(&s, "svc-bad", "shelter-a", T_SHELTER, "Amsterdam", 10, 5);               \
		what;                                                                              \
		assert_int_equal(register_service(g.ch[SHELTER_A], &s), code);                     \
		expect_err(fragment);                                                              \
	} while (0)

	BAD_REGISTER(s.type = (Haven__Capacity__V1__ServiceType) 99, HV_INVALID_ARGUMENT,
	    "type 99 is not a known service type");
	BAD_REGISTER(s.type = 0, HV_INVALID_ARGUMENT, "type 0");
	BAD_REGISTER((s.populations = badpop, s.n_populations = 1), HV_INVALID_ARGUMENT,
	    "populations: 99");
	BAD_REGISTER((s.specialisations = badspec, s.n_specialisations = 1), HV_INVALID_ARGUMENT,
	    "specialisations: 99");
	BAD_REGISTER(s.name = big, HV_INVALID_ARGUMENT, "name must be at most 200 bytes");
	BAD_REGISTER(s.front_door_contact = big, HV_INVALID_ARGUMENT, "front_door_contact");
	BAD_REGISTER((s.languages = many, s.n_languages = 17), HV_INVALID_ARGUMENT,
	    "languages has 17 entries, at most 16");
	BAD_REGISTER(s.available = 12, HV_INVALID_ARGUMENT,
	    "available 12 is over the maximum of 10 places");
	BAD_REGISTER(s.available = 4000000000u, HV_INVALID_ARGUMENT,
	    "available 4000000000 is over the maximum of 10 places");
	BAD_REGISTER(s.maximum = 4000000000u, HV_INVALID_ARGUMENT, "maximum must be 1 to 100000");
	BAD_REGISTER(s.report_interval_s = 30, HV_INVALID_ARGUMENT, "report_interval_s");
	BAD_REGISTER(s.service_area = "Atlantis", HV_INVALID_ARGUMENT, "service_area 'Atlantis'");
	BAD_REGISTER(s.id = "svc/../x", HV_INVALID_ARGUMENT, "service id");
	BAD_REGISTER(s.org_id = "nobody", HV_PERMISSION_DENIED, "own only");
	svc_init(&s, "svc-bad", "nobody", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(register_service(g.op, &s), HV_NOT_FOUND);
	expect_err("no organisation nobody");
	BAD_REGISTER(s.id = "svc-op", HV_ALREADY_EXISTS, "service svc-op exists already");
#undef BAD_REGISTER
	assert_int_equal(get_view(g.op, "svc-bad", NULL), HV_NOT_FOUND);
	{
		Haven__Capacity__V1__RegisterServiceRequest req =
		    HAVEN__CAPACITY__V1__REGISTER_SERVICE_REQUEST__INIT;
		assert_int_equal(call(g.op, M("RegisterService"), &req.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
		expect_err("service is required");
	}

	/* UpdateAvailability: each refusal leaves the record as it was. */
	service_state("svc-op", &ver, &avail, NULL);
	assert_int_equal(set_available(g.ch[SHELTER_A], "svc-nope", 1, 1, NULL), HV_NOT_FOUND);
	expect_err("no service svc-nope");
	assert_int_equal(set_available(g.ch[SHELTER_A], "Svc Op", 1, 1, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(set_available(g.ch[SHELTER_A], "svc-op", 12, ver, NULL),
	    HV_INVALID_ARGUMENT);
	expect_err("available 12 is over the maximum of 10 places");
	assert_int_equal(set_available(g.ch[SHELTER_A], "svc-op", 4000000000u, ver, NULL),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(set_available(g.ch[SHELTER_A], "svc-op", 1, 0, NULL), HV_INVALID_ARGUMENT);
	expect_err("based_on_version is required");
	assert_int_equal(set_available(g.ch[SHELTER_A], "svc-op", 1, ver - 1, NULL), HV_ABORTED);
	snprintf(want, sizeof(want), "service svc-op is at version %llu, not %llu",
	    (unsigned long long) ver, (unsigned long long) (ver - 1));
	expect_err(want);
	assert_int_equal(set_available(g.ch[SHELTER_A], "svc-op", 1, ver + 5, NULL), HV_ABORTED);
	service_state("svc-op", &ver2, &avail2, NULL);
	assert_int_equal(ver2, ver);
	assert_int_equal(avail2, avail);
	/* Fewer available than held: refused. */
	{
		hold_job j = { .cs = g.cs, .service_id = "svc-op", .ttl_s = 600 };
		assert_int_equal(store_write(g.st, hold_fn, &j), HV_OK);
		service_state("svc-op", &ver, &avail, NULL);
		assert_int_equal(set_available(g.ch[SHELTER_A], "svc-op", 0, ver, NULL),
		    HV_FAILED_PRECONDITION);
		expect_err("1 place is held for open offers");
		assert_int_equal(set_available(g.ch[SHELTER_A], "svc-op", 1, ver, &v), HV_OK);
		assert_int_equal(v->free, 0);
		assert_int_equal(v->service->held, 1);
		protobuf_c_message_free_unpacked(&v->base, NULL);
		assert_int_equal(store_write(g.st, release_fn, &j), HV_OK);
	}

	/* UpdateService: the maximum cannot go under what is available; org_id stays. */
	{
		Haven__Capacity__V1__UpdateServiceRequest ur =
		    HAVEN__CAPACITY__V1__UPDATE_SERVICE_REQUEST__INIT;
		assert_int_equal(set_now(g.ch[SHELTER_A], "svc-op", 8), HV_OK);
		service_state("svc-op", &ver, &avail, NULL);
		svc_init(&s, "svc-op", "shelter-a", T_SHELTER, "Amsterdam", 6, 0);
		ur.service          = &s;
		ur.based_on_version = ver;
		assert_int_equal(call(g.ch[SHELTER_A], M("UpdateService"), &ur.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_FAILED_PRECONDITION);
		expect_err("maximum 6 is under the 8 places reported available");
		s.maximum = 10;
		s.org_id  = "shelter-r";
		assert_int_equal(call(g.ch[SHELTER_A], M("UpdateService"), &ur.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
		expect_err("org_id cannot change");
		s.org_id = "";
		s.type   = (Haven__Capacity__V1__ServiceType) 99;
		assert_int_equal(call(g.ch[SHELTER_A], M("UpdateService"), &ur.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
		s.type              = T_SHELTER;
		ur.based_on_version = ver - 1;
		assert_int_equal(call(g.ch[SHELTER_A], M("UpdateService"), &ur.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_ABORTED);
		service_state("svc-op", &ver2, &avail2, NULL);
		assert_int_equal(ver2, ver);
	}

	/* Queries. */
	{
		Haven__Capacity__V1__FindServicesRequest fr =
		    HAVEN__CAPACITY__V1__FIND_SERVICES_REQUEST__INIT;
		Haven__Capacity__V1__SummaryRequest sr = HAVEN__CAPACITY__V1__SUMMARY_REQUEST__INIT;
		char                               *atl[] = { "Atlantis" };
		char                               *bad[] = { "n" };

		fr.type = (Haven__Capacity__V1__ServiceType) 99;
		assert_int_equal(find(g.op, &fr, NULL), HV_INVALID_ARGUMENT);
		fr.type       = T_SHELTER;
		fr.population = (Haven__Capacity__V1__Population) 99;
		assert_int_equal(find(g.op, &fr, NULL), HV_INVALID_ARGUMENT);
		fr.population = 0;
		fr.regions    = atl;
		fr.n_regions  = 1;
		assert_int_equal(find(g.op, &fr, NULL), HV_INVALID_ARGUMENT);
		fr.n_regions   = 0;
		fr.languages   = bad;
		fr.n_languages = 1;
		assert_int_equal(find(g.op, &fr, NULL), HV_INVALID_ARGUMENT);
		fr.n_languages = 0;
		fr.page_token  = "..//";
		assert_int_equal(find(g.op, &fr, NULL), HV_INVALID_ARGUMENT);
		sr.regions   = atl;
		sr.n_regions = 1;
		assert_int_equal(call(g.op, M("Summary"), &sr.base,
		                     &haven__capacity__v1__summary_response__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
		expect_err("Atlantis");
	}
}

/* ---- concurrency ------------------------------------------------------------------------ */

#define RMW_THREADS 16
#define RMW_EACH    50

typedef struct rmw_job {
	rpc_channel *ch;
	const char  *id;
	int          ok;
	int          aborted;
	int          failed;
} rmw_job;

/* Read-modify-write: available + 1 based on the version read, again on ABORTED. */
static void *
rmw_worker(void *arg)
{
	rmw_job *j = arg;

	while (j->ok < RMW_EACH && j->failed == 0) {
		Haven__Capacity__V1__GetServiceRequest gr =
		    HAVEN__CAPACITY__V1__GET_SERVICE_REQUEST__INIT;
		Haven__Capacity__V1__UpdateAvailabilityRequest ur =
		    HAVEN__CAPACITY__V1__UPDATE_AVAILABILITY_REQUEST__INIT;
		ProtobufCMessage *r = NULL;
		view_t           *v;
		rpc_call_options  co = { .timeout_ms = 30000 };
		hv_status         st;

		gr.id = (char *) j->id;
		if (rpc_channel_call(j->ch, M("GetService"), &gr.base,
		        &haven__capacity__v1__service_view__descriptor, &r, &co, NULL,
		        0) != HV_OK) {
			j->failed++;
			break;
		}
		v                   = (view_t *) r;
		ur.service_id       = (char *) j->id;
		ur.available        = v->service->available + 1;
		ur.based_on_version = v->service->version;
		protobuf_c_message_free_unpacked(r, NULL);
		st = rpc_channel_call(j->ch, M("UpdateAvailability"), &ur.base,
		    &haven__capacity__v1__service_view__descriptor, &r, &co, NULL, 0);
		if (st == HV_OK) {
			j->ok++;
			protobuf_c_message_free_unpacked(r, NULL);
		} else if (st == HV_ABORTED) {
			j->aborted++;
		} else {
			j->failed++;
		}
	}
	return (NULL);
}

static void
test_concurrent_updates(void **state)
{
	service_t s;
	pthread_t th[RMW_THREADS];
	rmw_job   jobs[RMW_THREADS];
	int       ok = 0, aborted = 0;
	uint64_t  ver;
	uint32_t  avail;

	svc_init(&s, "svc-busy", "shelter-a", T_SHELTER, "Amsterdam", 1000, 0);
	assert_int_equal(register_service(g.op, &s), HV_OK);
	for (int i = 0; i < RMW_THREADS; i++) {
		jobs[i] = (rmw_job) { .id = "svc-busy" };
		/* Half as the provider that runs it, half as its region's coordinator. */
		jobs[i].ch = token_channel(i % 2 ? "shelter-a" : "coord-ams",
		    i % 2 ? RPC_ROLE_PROVIDER : RPC_ROLE_COORDINATOR);
		assert_int_equal(pthread_create(&th[i], NULL, rmw_worker, &jobs[i]), 0);
	}
	for (int i = 0; i < RMW_THREADS; i++) {
		pthread_join(th[i], NULL);
		rpc_channel_close(jobs[i].ch);
		assert_int_equal(jobs[i].failed, 0);
		ok += jobs[i].ok;
		aborted += jobs[i].aborted;
	}
	assert_int_equal(ok, RMW_THREADS * RMW_EACH);
	/* No lost update: every acknowledged increment is there, each one version. */
	service_state("svc-busy", &ver, &avail, NULL);
	assert_int_equal(ver, 1 + (uint64_t) ok);
	assert_int_equal(avail, (uint32_t) ok);
	print_message("  %d updates, %d ABORTED and retried\n", ok, aborted);
}

#define RACE_THREADS 8

typedef struct race_job {
	hold_job           hj;
	pthread_barrier_t *barrier;
} race_job;

static void *
race_worker(void *arg)
{
	race_job *j = arg;

	pthread_barrier_wait(j->barrier);
	j->hj.st = store_write(g.st, hold_fn, &j->hj);
	return (NULL);
}

/* Eight offers race for five free places, in one store and through group commit: exactly
 * five get one. */
static void
test_hold_race(void **state)
{
	service_t         s;
	pthread_t         th[RACE_THREADS];
	race_job          jobs[RACE_THREADS];
	pthread_barrier_t barrier;
	int               ok = 0, full = 0;
	view_t           *v;

	svc_init(&s, "svc-race", "shelter-a", T_SHELTER, "Amsterdam", 6, 5);
	assert_int_equal(register_service(g.op, &s), HV_OK);
	assert_int_equal(pthread_barrier_init(&barrier, NULL, RACE_THREADS), 0);
	for (int i = 0; i < RACE_THREADS; i++) {
		jobs[i] = (race_job) { .hj = { .cs = g.cs, .service_id = "svc-race", .ttl_s = 600 },
			.barrier           = &barrier };
		assert_int_equal(pthread_create(&th[i], NULL, race_worker, &jobs[i]), 0);
	}
	for (int i = 0; i < RACE_THREADS; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].hj.st == HV_OK) {
			ok++;
		} else if (jobs[i].hj.st == HV_FAILED_PRECONDITION) {
			full++;
		} else {
			fail_msg("hold: %s", hv_status_name(jobs[i].hj.st));
		}
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(ok, 5);
	assert_int_equal(full, RACE_THREADS - 5);
	assert_int_equal(get_view(g.ch[REFERRER], "svc-race", &v), HV_OK);
	assert_int_equal(v->service->held, 5);
	assert_int_equal(v->service->available, 5);
	assert_int_equal(v->free, 0);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	/* And the provider cannot report fewer places than are held. */
	assert_int_equal(set_now(g.ch[SHELTER_A], "svc-race", 4), HV_FAILED_PRECONDITION);
	expect_err("5 places are held for open offers");
	for (int i = 0; i < RACE_THREADS; i++) {
		if (jobs[i].hj.st == HV_OK) {
			assert_int_equal(store_write(g.st, release_fn, &jobs[i].hj), HV_OK);
		}
	}
	assert_int_equal(get_view(g.ch[REFERRER], "svc-race", &v), HV_OK);
	assert_int_equal(v->service->held, 0);
	assert_int_equal(v->free, 5);
	protobuf_c_message_free_unpacked(&v->base, NULL);
}

/* ---- freshness, queries, expiry -------------------------------------------------------- */

static void
test_freshness(void **state)
{
	service_t                                s;
	view_t                                  *v;
	Haven__Capacity__V1__FindServicesRequest fr =
	    HAVEN__CAPACITY__V1__FIND_SERVICES_REQUEST__INIT;
	Haven__Capacity__V1__FindServicesResponse *rep;
	char                                      *rdam[] = { "Rotterdam" };

	svc_init(&s, "svc-fresh", "shelter-r", T_SHELTER, "Rotterdam", 10, 7);
	s.report_interval_s = 3600;
	assert_int_equal(register_service(g.op, &s), HV_OK);
	assert_int_equal(get_view(g.ch[REFERRER], "svc-fresh", &v), HV_OK);
	assert_int_equal(v->freshness, FRESH);
	assert_int_equal(v->free, 7);
	assert_true(v->age_s <= 2);
	protobuf_c_message_free_unpacked(&v->base, NULL);

	/* An hour and a bit later, unconfirmed: unknown, never available. */
	atomic_store(&clock_offset, (int64_t) 3700 * 1000);
	assert_int_equal(get_view(g.ch[REFERRER], "svc-fresh", &v), HV_OK);
	assert_int_equal(v->freshness, UNKNOWN);
	assert_int_equal(v->free, 0);
	assert_true(v->age_s >= 3700);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	fr.type      = T_SHELTER;
	fr.regions   = rdam;
	fr.n_regions = 1;
	fr.only_free = true;
	assert_int_equal(find(g.ch[REFERRER], &fr, &rep), HV_OK);
	for (size_t i = 0; i < rep->n_services; i++) {
		assert_string_not_equal(rep->services[i]->service->id, "svc-fresh");
		assert_int_equal(rep->services[i]->freshness, FRESH);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	fr.only_free = false;
	assert_int_equal(find(g.ch[REFERRER], &fr, &rep), HV_OK);
	{
		bool seen = false;
		for (size_t i = 0; i < rep->n_services; i++) {
			if (strcmp(rep->services[i]->service->id, "svc-fresh") == 0) {
				seen = true;
				assert_int_equal(rep->services[i]->freshness, UNKNOWN);
				assert_int_equal(rep->services[i]->free, 0);
			}
		}
		assert_true(seen);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	{
		Haven__Capacity__V1__SummaryRequest sr = HAVEN__CAPACITY__V1__SUMMARY_REQUEST__INIT;
		Haven__Capacity__V1__SummaryResponse *sum;
		sr.regions   = rdam;
		sr.n_regions = 1;
		assert_int_equal(call(g.ch[MUNI], M("Summary"), &sr.base,
		                     &haven__capacity__v1__summary_response__descriptor, &sum),
		    HV_OK);
		assert_true(sum->n_cells > 0);
		for (size_t i = 0; i < sum->n_cells; i++) {
			assert_string_equal(sum->cells[i]->region, "Rotterdam");
			if (sum->cells[i]->type == T_SHELTER &&
			    sum->cells[i]->population == P_WOMEN) {
				assert_true(sum->cells[i]->stale_services >= 1);
			}
		}
		protobuf_c_message_free_unpacked(&sum->base, NULL);
	}
	/* A hold needs a fresh figure too. */
	{
		hold_job j = { .cs = g.cs, .service_id = "svc-fresh", .ttl_s = 60 };
		assert_int_equal(store_write(g.st, hold_fn, &j), HV_FAILED_PRECONDITION);
	}
	/* Confirming the same figure makes it fresh again. */
	assert_int_equal(set_now(g.ch[SHELTER_R], "svc-fresh", 7), HV_OK);
	assert_int_equal(get_view(g.ch[REFERRER], "svc-fresh", &v), HV_OK);
	assert_int_equal(v->freshness, FRESH);
	assert_int_equal(v->free, 7);
	assert_true(v->age_s <= 2);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	atomic_store(&clock_offset, 0);
}

static void
test_find_and_summary(void **state)
{
	Haven__Capacity__V1__FindServicesRequest fr =
	    HAVEN__CAPACITY__V1__FIND_SERVICES_REQUEST__INIT;
	Haven__Capacity__V1__FindServicesResponse *rep;
	Haven__Capacity__V1__ListRegionsResponse  *regions;
	Haven__Capacity__V1__SummaryRequest        sr = HAVEN__CAPACITY__V1__SUMMARY_REQUEST__INIT;
	Haven__Capacity__V1__SummaryResponse      *sum;
	service_t                                  s;
	char                                      *pt[]              = { "pt" };
	char                                      *ams[]             = { "Amsterdam" };
	char                                      *ptbr[]            = { "pt-BR", "nl" };
	char                                       token[CAP_ID_MAX] = "";
	size_t                                     total             = 0;

	svc_init(&s, "find-1", "shelter-a", T_SHELTER, "Amsterdam", 4, 4);
	s.populations   = pops_women_minors;
	s.n_populations = 2;
	s.languages     = ptbr;
	assert_int_equal(register_service(g.op, &s), HV_OK);
	svc_init(&s, "find-2", "shelter-a", T_SHELTER, "Amsterdam", 4, 0);
	s.populations   = pops_women_minors;
	s.n_populations = 2;
	assert_int_equal(register_service(g.op, &s), HV_OK);

	/* Minors in Amsterdam: both; with free places: one; speaking Portuguese: one. */
	fr.type       = T_SHELTER;
	fr.population = P_MINORS;
	fr.regions    = ams;
	fr.n_regions  = 1;
	assert_int_equal(find(g.ch[REFERRER], &fr, &rep), HV_OK);
	assert_int_equal(rep->n_services, 2);
	assert_string_equal(rep->services[0]->service->id, "find-1");
	assert_string_equal(rep->next_page_token, "");
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	fr.only_free = true;
	assert_int_equal(find(g.ch[REFERRER], &fr, &rep), HV_OK);
	assert_int_equal(rep->n_services, 1);
	assert_int_equal(rep->services[0]->free, 4);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	fr.only_free   = false;
	fr.languages   = pt;
	fr.n_languages = 1;
	assert_int_equal(find(g.ch[REFERRER], &fr, &rep), HV_OK);
	assert_int_equal(rep->n_services, 1);
	assert_string_equal(rep->services[0]->service->id, "find-1");
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	/* Paging over every shelter, one at a time. */
	memset(&fr, 0, sizeof(fr));
	haven__capacity__v1__find_services_request__init(&fr);
	fr.page_size = 1;
	do {
		fr.page_token = token;
		assert_int_equal(find(g.ch[COORD_AMS], &fr, &rep), HV_OK);
		assert_true(rep->n_services <= 1);
		total += rep->n_services;
		snprintf(token, sizeof(token), "%s", rep->next_page_token);
		protobuf_c_message_free_unpacked(&rep->base, NULL);
	} while (token[0] != '\0');
	fr.page_size  = 1000; /* cut to 500 */
	fr.page_token = "";
	assert_int_equal(find(g.ch[COORD_AMS], &fr, &rep), HV_OK);
	assert_int_equal(rep->n_services, total);
	assert_string_equal(rep->next_page_token, "");
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	/* The aggregate: numbers only, per region x type x population. */
	sr.regions   = ams;
	sr.n_regions = 1;
	assert_int_equal(call(g.ch[MUNI], M("Summary"), &sr.base,
	                     &haven__capacity__v1__summary_response__descriptor, &sum),
	    HV_OK);
	assert_true(sum->as_of_ms > 0);
	{
		bool seen = false;
		for (size_t i = 0; i < sum->n_cells; i++) {
			const Haven__Capacity__V1__SummaryCell *c = sum->cells[i];
			assert_string_equal(c->region, "Amsterdam");
			assert_true(c->services > 0);
			if (c->type == T_SHELTER && c->population == P_MINORS) {
				seen = true;
				assert_int_equal(c->services, 2);
				assert_int_equal(c->maximum, 8);
				assert_int_equal(c->free, 4);
			}
		}
		assert_true(seen);
	}
	protobuf_c_message_free_unpacked(&sum->base, NULL);

	assert_int_equal(call(g.ch[MUNI], M("ListRegions"), &sr.base,
	                     &haven__capacity__v1__list_regions_response__descriptor, &regions),
	    HV_OK);
	assert_int_equal(regions->n_regions, 10);
	for (size_t i = 0; i < regions->n_regions; i++) {
		if (strcmp(regions->regions[i]->name, "Limburg") == 0) {
			assert_int_equal(regions->regions[i]->n_neighbours, 2);
		}
	}
	protobuf_c_message_free_unpacked(&regions->base, NULL);
}

/* Subscribes to the pub socket; returns the socket. */
static nng_socket
subscribe(void)
{
	nng_socket sub;

	assert_int_equal(nng_sub0_open(&sub), 0);
	assert_int_equal(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "capacity.", 9), 0);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 3000), 0);
	assert_int_equal(nng_dial(sub, PUB_URL, NULL, 0), 0);
	usleep(100 * 1000); /* pub/sub: a subscriber sees what is sent after it joined */
	return (sub);
}

/* Receives CapacityChanged messages until one for service_id comes (or the timeout). */
static Haven__Capacity__V1__CapacityChanged *
receive_change(nng_socket sub, const char *service_id)
{
	for (int i = 0; i < 100; i++) {
		void                                 *buf;
		size_t                                n;
		Haven__Capacity__V1__CapacityChanged *m;

		if (nng_recv(sub, &buf, &n, NNG_FLAG_ALLOC) != 0) {
			return (NULL);
		}
		assert_true(n >= 9);
		assert_memory_equal(buf, "capacity.", 9);
		m = haven__capacity__v1__capacity_changed__unpack(NULL, n - 9, (uint8_t *) buf + 9);
		nng_free(buf, n);
		assert_non_null(m);
		if (strcmp(m->service_id, service_id) == 0) {
			return (m);
		}
		haven__capacity__v1__capacity_changed__free_unpacked(m, NULL);
	}
	return (NULL);
}

static void
test_pubsub(void **state)
{
	nng_socket                            sub = subscribe();
	Haven__Capacity__V1__CapacityChanged *m;
	view_t                               *v;
	uint64_t                              ver;
	uint32_t                              avail;

	service_state("svc-op", &ver, &avail, NULL);
	assert_int_equal(set_available(g.ch[SHELTER_A], "svc-op", avail == 3 ? 2 : 3, ver, &v),
	    HV_OK);
	m = receive_change(sub, "svc-op");
	assert_non_null(m);
	assert_int_equal(m->free, v->free);
	assert_int_equal(m->version, v->service->version);
	assert_int_equal(m->type, T_SHELTER);
	assert_string_equal(m->service_area, "Amsterdam");
	haven__capacity__v1__capacity_changed__free_unpacked(m, NULL);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	nng_close(sub);
}

/* The service's own thread releases expired holds and announces the freed place. */
static void
test_hold_expiry(void **state)
{
	service_t  s;
	hold_job   j = { .cs = g.cs, .service_id = "svc-exp", .ttl_s = 60 };
	nng_socket sub;
	Haven__Capacity__V1__CapacityChanged *m;
	uint64_t                              ver;
	uint32_t                              avail, held = 1;

	svc_init(&s, "svc-exp", "shelter-a", T_SHELTER, "Amsterdam", 3, 1);
	assert_int_equal(register_service(g.op, &s), HV_OK);
	assert_int_equal(store_write(g.st, hold_fn, &j), HV_OK);
	service_state("svc-exp", &ver, &avail, &held);
	assert_int_equal(held, 1);
	sub = subscribe();
	atomic_store(&clock_offset, 61 * 1000);
	m = receive_change(sub, "svc-exp");
	assert_non_null(m);
	assert_int_equal(m->free, 1);
	haven__capacity__v1__capacity_changed__free_unpacked(m, NULL);
	service_state("svc-exp", &ver, &avail, &held);
	assert_int_equal(held, 0);
	assert_int_equal(store_write(g.st, release_fn, &j), HV_NOT_FOUND);
	atomic_store(&clock_offset, 0);
	nng_close(sub);
}

/* ---- the directory feeds auth ---------------------------------------------------------- */

static void
test_disabled_org_refused(void **state)
{
	Haven__Capacity__V1__DisableOrganisationRequest dreq =
	    HAVEN__CAPACITY__V1__DISABLE_ORGANISATION_REQUEST__INIT;
	Haven__Capacity__V1__UpdateOrganisationRequest ureq =
	    HAVEN__CAPACITY__V1__UPDATE_ORGANISATION_REQUEST__INIT;
	org_t        change = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	rpc_caller   who;
	char         tok[AUTH_TOKEN_MAX];
	rpc_channel *ch;

	assert_int_equal(register_org(g.op, "ngo-gone", HAVEN__CAPACITY__V1__ROLE__REFERRER,
	                     "Amsterdam", NULL),
	    HV_OK);
	assert_int_equal(auth_issue_token(g.auth, "ngo-gone", RPC_ROLE_REFERRER, hv_clock_wall_ms(),
	                     tok, NULL),
	    HV_OK);
	assert_int_equal(auth_verify_token(g.auth, tok, hv_clock_wall_ms(), &who), HV_OK);
	assert_int_equal(who.role, RPC_ROLE_REFERRER);
	assert_string_equal(who.org_id, "ngo-gone");
	assert_int_equal(rpc_channel_open(&ch, URL, NULL), HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, tok), HV_OK);
	assert_int_equal(get_view(ch, "svc-op", NULL), HV_OK);

	/* Disabled: the token it holds is refused at once. */
	dreq.id       = "ngo-gone";
	dreq.disabled = true;
	assert_int_equal(call(g.op, M("DisableOrganisation"), &dreq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_OK);
	assert_int_equal(auth_verify_token(g.auth, tok, hv_clock_wall_ms(), &who),
	    HV_UNAUTHENTICATED);
	assert_int_equal(get_view(ch, "svc-op", NULL), HV_UNAUTHENTICATED);
	/* Enabled again: the token issued before stays refused (issue 12, hole 8); a new one
	 * works. */
	dreq.disabled = false;
	assert_int_equal(call(g.op, M("DisableOrganisation"), &dreq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_OK);
	assert_int_equal(get_view(ch, "svc-op", NULL), HV_UNAUTHENTICATED);
	assert_int_equal(auth_issue_token(g.auth, "ngo-gone", RPC_ROLE_REFERRER, hv_clock_wall_ms(),
	                     tok, NULL),
	    HV_OK);
	assert_int_equal(rpc_channel_set_token(ch, tok), HV_OK);
	assert_int_equal(get_view(ch, "svc-op", NULL), HV_OK);
	/* A new role: tokens of the old one are refused. */
	change.id             = "ngo-gone";
	change.role           = HAVEN__CAPACITY__V1__ROLE__MUNICIPALITY;
	ureq.organisation     = &change;
	ureq.based_on_version = org_version("ngo-gone");
	assert_int_equal(call(g.op, M("UpdateOrganisation"), &ureq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_OK);
	assert_int_equal(auth_verify_token(g.auth, tok, hv_clock_wall_ms(), &who),
	    HV_UNAUTHENTICATED);
	rpc_channel_close(ch);
}

static void
test_login_with_registered_cert(void **state)
{
	Haven__Capacity__V1__DisableOrganisationRequest dreq =
	    HAVEN__CAPACITY__V1__DISABLE_ORGANISATION_REQUEST__INIT;
	rpc_channel *ch;
	char         path[700];
	char        *key;
	size_t       keylen;
	char         lerr[RPC_ERRMSG_MAX];

	snprintf(path, sizeof(path), "%s/acme-ngo.key", g.pki);
	key = tu_slurp(path, &keylen);
	assert_int_equal(rpc_channel_open(&ch, URL, NULL), HV_OK);
	/* Signed with acme-ngo's key, checked against the certificate registered here. */
	assert_int_equal(auth_login(ch, "acme-ngo", key, keylen, 5000, lerr, sizeof(lerr)), HV_OK);
	assert_int_equal(get_view(ch, "svc-op", NULL), HV_OK);
	/* The same key cannot sign in as another organisation. */
	assert_int_equal(auth_login(ch, "shelter-a", key, keylen, 5000, lerr, sizeof(lerr)),
	    HV_UNAUTHENTICATED);
	assert_string_equal(lerr, "Authenticate: sign-in failed");
	/* Nor as one without a registered certificate: the same answer. */
	assert_int_equal(auth_login(ch, "shelter-r", key, keylen, 5000, lerr, sizeof(lerr)),
	    HV_UNAUTHENTICATED);
	assert_string_equal(lerr, "Authenticate: sign-in failed");
	/* A disabled organisation cannot sign in. */
	dreq.id       = "acme-ngo";
	dreq.disabled = true;
	assert_int_equal(call(g.op, M("DisableOrganisation"), &dreq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_OK);
	assert_int_equal(auth_login(ch, "acme-ngo", key, keylen, 5000, lerr, sizeof(lerr)),
	    HV_UNAUTHENTICATED);
	assert_string_equal(lerr, "Authenticate: sign-in failed");
	dreq.disabled = false;
	assert_int_equal(call(g.op, M("DisableOrganisation"), &dreq.base,
	                     &haven__capacity__v1__organisation__descriptor, NULL),
	    HV_OK);
	/* A new certificate for acme-ngo: the session of the old one ends at once, and only the
	 * new key signs in. */
	assert_int_equal(auth_login(ch, "acme-ngo", key, keylen, 5000, lerr, sizeof(lerr)), HV_OK);
	assert_int_equal(get_view(ch, "svc-op", NULL), HV_OK);
	{
		Haven__Capacity__V1__UpdateOrganisationRequest ureq =
		    HAVEN__CAPACITY__V1__UPDATE_ORGANISATION_REQUEST__INIT;
		org_t  change = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
		char  *key2, *cert2;
		size_t key2len;
		snprintf(path, sizeof(path), "%s/acme-ngo-2.pem", g.pki);
		cert2 = tu_slurp(path, NULL);
		snprintf(path, sizeof(path), "%s/acme-ngo-2.key", g.pki);
		key2                  = tu_slurp(path, &key2len);
		change.id             = "acme-ngo";
		change.cert_pem       = cert2;
		ureq.organisation     = &change;
		ureq.based_on_version = org_version("acme-ngo");
		assert_int_equal(call(g.op, M("UpdateOrganisation"), &ureq.base,
		                     &haven__capacity__v1__organisation__descriptor, NULL),
		    HV_OK);
		assert_int_equal(get_view(ch, "svc-op", NULL), HV_UNAUTHENTICATED);
		assert_int_equal(auth_login(ch, "acme-ngo", key, keylen, 5000, lerr, sizeof(lerr)),
		    HV_UNAUTHENTICATED);
		assert_int_equal(auth_login(ch, "acme-ngo", key2, key2len, 5000, lerr,
		                     sizeof(lerr)),
		    HV_OK);
		assert_int_equal(get_view(ch, "svc-op", NULL), HV_OK);
		/* Back to the first certificate, for the tests after this one. */
		change.cert_pem       = g.cert[REFERRER];
		ureq.based_on_version = org_version("acme-ngo");
		assert_int_equal(call(g.op, M("UpdateOrganisation"), &ureq.base,
		                     &haven__capacity__v1__organisation__descriptor, NULL),
		    HV_OK);
		crypto_wipe(key2, key2len);
		free(key2);
		free(cert2);
	}
	/* acme-ngo's record changed (disabled, enabled, new certificates): the token of its
	 * channel for the tests after this one is issued again. */
	{
		char tok[AUTH_TOKEN_MAX];
		assert_int_equal(get_view(g.ch[REFERRER], "svc-op", NULL), HV_UNAUTHENTICATED);
		assert_int_equal(auth_issue_token(g.auth, "acme-ngo", RPC_ROLE_REFERRER,
		                     hv_clock_wall_ms(), tok, NULL),
		    HV_OK);
		assert_int_equal(rpc_channel_set_token(g.ch[REFERRER], tok), HV_OK);
		assert_int_equal(get_view(g.ch[REFERRER], "svc-op", NULL), HV_OK);
	}
	crypto_wipe(key, keylen);
	free(key);
	rpc_channel_close(ch);
}

/* Approves a service based on its current version. */
static hv_status
approve(rpc_channel *ch, const char *id, service_t **out)
{
	Haven__Capacity__V1__ApproveServiceRequest req =
	    HAVEN__CAPACITY__V1__APPROVE_SERVICE_REQUEST__INIT;
	uint64_t v;
	uint32_t a;

	service_state(id, &v, &a, NULL);
	req.id               = (char *) id;
	req.based_on_version = v;
	return (call(ch, M("ApproveService"), &req.base, &haven__capacity__v1__service__descriptor,
	    out));
}

static bool
is_pending(const char *id)
{
	view_t *v = NULL;
	bool    p;

	assert_int_equal(get_view(g.op, id, &v), HV_OK);
	p = v->service->pending;
	protobuf_c_message_free_unpacked(&v->base, NULL);
	return (p);
}

/* Whether FindServices (only free places) lists the service. */
static bool
found_free(const char *id, const char *region)
{
	Haven__Capacity__V1__FindServicesRequest fr =
	    HAVEN__CAPACITY__V1__FIND_SERVICES_REQUEST__INIT;
	Haven__Capacity__V1__FindServicesResponse *rep       = NULL;
	char                                      *regions[] = { (char *) region };
	bool                                       seen      = false;

	fr.type      = T_SHELTER;
	fr.only_free = true;
	fr.regions   = regions;
	fr.n_regions = 1;
	assert_int_equal(find(g.op, &fr, &rep), HV_OK);
	for (size_t i = 0; i < rep->n_services; i++) {
		seen = seen || strcmp(rep->services[i]->service->id, id) == 0;
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (seen);
}

static int
seen_fn(void *arg, const service_t *svc, bool fresh)
{
	const char **want = arg;

	(void) fresh;
	if (strcmp(svc->id, want[0]) == 0) {
		want[1] = "seen";
	}
	return (0);
}

/* Whether routing (cap_foreach_service, what the referral service walks) sees the service. */
static bool
routable(const char *id)
{
	const char *want[2] = { id, NULL };
	store_txn  *txn;

	assert_int_equal(store_read_begin(g.st, &txn), HV_OK);
	assert_int_equal(cap_foreach_service(g.cs, txn, T_SHELTER, seen_fn, want), HV_OK);
	store_read_end(txn);
	return (want[1] != NULL);
}

/* Issue 12, hole 4: a provider registered services anywhere with up to 100,000 places,
 * unapproved, and the next referral there was offered to it. */
static void
test_pending_services(void **state)
{
	Haven__Capacity__V1__UpdateServiceRequest ur =
	    HAVEN__CAPACITY__V1__UPDATE_SERVICE_REQUEST__INIT;
	service_t  s;
	service_t *out = NULL;
	hold_job   j   = { .cs = g.cs, .ttl_s = 60 };
	uint64_t   v;
	uint32_t   a;

	(void) state;
	/* In its own region, small: no approval needed. */
	svc_init(&s, "svc-small", "shelter-a", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(register_service(g.ch[SHELTER_A], &s), HV_OK);
	assert_false(is_pending("svc-small"));
	/* Outside its region, or large: pending, never found free, held or counted. */
	svc_init(&s, "svc-away", "shelter-a", T_SHELTER, "Limburg", 10, 10);
	assert_int_equal(register_service(g.ch[SHELTER_A], &s), HV_OK);
	assert_true(is_pending("svc-away"));
	svc_init(&s, "svc-huge", "shelter-a", T_SHELTER, "Amsterdam", 100000, 100000);
	s.pending = false; /* the caller cannot say it is approved */
	assert_int_equal(register_service(g.ch[SHELTER_A], &s), HV_OK);
	assert_true(is_pending("svc-huge"));
	assert_false(found_free("svc-away", "Limburg"));
	assert_false(found_free("svc-huge", "Amsterdam"));
	assert_true(found_free("svc-small", "Amsterdam"));
	assert_false(routable("svc-away"));
	assert_false(routable("svc-huge"));
	assert_true(routable("svc-small"));
	j.service_id = "svc-huge";
	assert_int_equal(store_write(g.st, hold_fn, &j), HV_FAILED_PRECONDITION);
	{
		cap_cell  *cells = NULL;
		size_t     n     = 0;
		store_txn *txn;
		int        lim = region_map_find(g.map, "Limburg");
		assert_int_equal(store_read_begin(g.st, &txn), HV_OK);
		assert_int_equal(cap_summary(g.cs, txn, (uint64_t) 1 << lim, test_now(NULL), &cells,
		                     &n),
		    HV_OK);
		store_read_end(txn);
		for (size_t i = 0; i < n; i++) {
			assert_int_not_equal(cells[i].cc_free,
			    10); /* svc-away's places are not counted */
		}
		free(cells);
	}

	/* Who approves: not the provider itself, not a coordinator of another region. */
	assert_int_equal(approve(g.ch[SHELTER_A], "svc-away", NULL), HV_PERMISSION_DENIED);
	assert_int_equal(approve(g.ch[COORD_AMS], "svc-away", NULL), HV_PERMISSION_DENIED);
	assert_int_equal(approve(g.ch[REFERRER], "svc-away", NULL), HV_PERMISSION_DENIED);
	assert_true(is_pending("svc-away"));
	assert_int_equal(approve(g.ch[ADMIN], "svc-away", &out), HV_OK);
	assert_false(out->pending);
	protobuf_c_message_free_unpacked(&out->base, NULL);
	assert_true(found_free("svc-away", "Limburg"));
	assert_true(routable("svc-away"));
	assert_true(audited("ApproveService", "node-admin", RPC_ROLE_ADMIN, "svc-away"));
	assert_int_equal(approve(g.ch[ADMIN], "svc-away", NULL), HV_FAILED_PRECONDITION);
	expect_err("does not wait for approval");
	/* The coordinator of the service's own region approves. */
	assert_int_equal(approve(g.ch[COORD_AMS], "svc-huge", NULL), HV_OK);
	j.service_id = "svc-huge";
	assert_int_equal(store_write(g.st, hold_fn, &j), HV_OK);
	assert_int_equal(store_write(g.st, release_fn, &j), HV_OK);

	/* A provider that grows an approved service past the limit waits again; a change of
	 * name does not. */
	service_state("svc-small", &v, &a, NULL);
	svc_init(&s, "svc-small", "shelter-a", T_SHELTER, "Amsterdam", 10, 5);
	s.name              = "Opvang Oost";
	ur.service          = &s;
	ur.based_on_version = v;
	assert_int_equal(call(g.ch[SHELTER_A], M("UpdateService"), &ur.base,
	                     &haven__capacity__v1__service__descriptor, NULL),
	    HV_OK);
	assert_false(is_pending("svc-small"));
	service_state("svc-small", &v, &a, NULL);
	s.maximum           = 500;
	ur.based_on_version = v;
	assert_int_equal(call(g.ch[SHELTER_A], M("UpdateService"), &ur.base,
	                     &haven__capacity__v1__service__descriptor, NULL),
	    HV_OK);
	assert_true(is_pending("svc-small"));
	assert_false(found_free("svc-small", "Amsterdam"));

	/* Bad input. */
	{
		Haven__Capacity__V1__ApproveServiceRequest req =
		    HAVEN__CAPACITY__V1__APPROVE_SERVICE_REQUEST__INIT;
		req.id = "Bad Id";
		assert_int_equal(call(g.op, M("ApproveService"), &req.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
		expect_err("service id must be");
		req.id = "svc-small";
		assert_int_equal(call(g.op, M("ApproveService"), &req.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
		expect_err("based_on_version is required");
		req.id               = "svc-none";
		req.based_on_version = 1;
		assert_int_equal(call(g.op, M("ApproveService"), &req.base,
		                     &haven__capacity__v1__service__descriptor, NULL),
		    HV_NOT_FOUND);
	}
}

/* ---- the RPC boundary ------------------------------------------------------------------ */

/* Calls method over ch with payload (bytes as given) in a raw envelope. Returns the reply's
 * status (its message in err); on HV_OK and out not NULL, *out is the reply decoded as desc
 * with nothing dropped (protobuf-c keeps unknown fields): free it. */
static hv_status
raw_msg_call(rpc_channel *ch, const char *method, const uint8_t *payload, size_t plen,
    const ProtobufCMessageDescriptor *desc, void *out)
{
	Haven__Rpc__V1__Request env = HAVEN__RPC__V1__REQUEST__INIT;
	Haven__Rpc__V1__Reply  *rep;
	uint8_t                *buf;
	void                   *raw = NULL;
	size_t                  n, rlen;
	hv_status               st;

	env.method       = (char *) method;
	env.request_id   = 1;
	env.payload.data = (uint8_t *) payload;
	env.payload.len  = plen;
	n                = haven__rpc__v1__request__get_packed_size(&env);
	buf              = malloc(n);
	assert_non_null(buf);
	haven__rpc__v1__request__pack(&env, buf);
	assert_int_equal(rpc_channel_call_raw(ch, buf, n, &raw, &rlen, 20000), HV_OK);
	free(buf);
	rep = haven__rpc__v1__reply__unpack(NULL, rlen, raw);
	free(raw);
	assert_non_null(rep);
	st = (hv_status) rep->code;
	snprintf(err, sizeof(err), "%s", rep->message);
	if (st == HV_OK && out != NULL) {
		*(ProtobufCMessage **) out =
		    protobuf_c_message_unpack(desc, NULL, rep->payload.len, rep->payload.data);
		assert_non_null(*(ProtobufCMessage **) out);
	}
	haven__rpc__v1__reply__free_unpacked(rep, NULL);
	return (st);
}

/* Packs m into a malloc'd buffer (*len bytes) followed by the bytes of extra. */
static uint8_t *
pack_plus(const ProtobufCMessage *m, const char *extra, size_t nextra, size_t *len)
{
	size_t   n   = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(n + nextra);

	assert_non_null(buf);
	protobuf_c_message_pack(m, buf);
	memcpy(buf + n, extra, nextra);
	*len = n + nextra;
	return (buf);
}

/* The stored record under id in table name has no unknown fields. */
static void
expect_stored_clean(const char *name, const char *id, const ProtobufCMessageDescriptor *desc)
{
	store_table       t;
	store_txn        *txn;
	ProtobufCMessage *m = NULL;

	assert_int_equal(store_table_open(g.st, name, &t), HV_OK);
	assert_int_equal(store_read_begin(g.st, &txn), HV_OK);
	assert_int_equal(store_get_msg(txn, t, id, strlen(id), desc, NULL, &m), HV_OK);
	store_read_end(txn);
	assert_int_equal(m->n_unknown_fields, 0);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Fields the .proto does not define (a shelter address, say, that would pass no check) on
 * RegisterOrganisation and RegisterService: accepted without them, nothing stores them, no
 * answer carries them; a field numbered 0 is INVALID_ARGUMENT (it was DATA_LOSS, for the
 * caller's own write), and nothing is stored. */
static void
test_unknown_fields_not_stored(void **state)
{
	static const char                                addr[] = "Kerkstraat 1, 1017 GA Amsterdam";
	uint8_t                                          data[64];
	ProtobufCMessageUnknownField                     u = { .tag = 1007,
		                    .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
		                    .len       = sizeof(addr),
		                    .data      = data };
	Haven__Capacity__V1__RegisterOrganisationRequest oreq =
	    HAVEN__CAPACITY__V1__REGISTER_ORGANISATION_REQUEST__INIT;
	Haven__Capacity__V1__RegisterServiceRequest sreq =
	    HAVEN__CAPACITY__V1__REGISTER_SERVICE_REQUEST__INIT;
	Haven__Capacity__V1__GetOrganisationRequest greq =
	    HAVEN__CAPACITY__V1__GET_ORGANISATION_REQUEST__INIT;
	Haven__Capacity__V1__GetServiceRequest vreq =
	    HAVEN__CAPACITY__V1__GET_SERVICE_REQUEST__INIT;
	org_t     o   = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	org_t    *got = NULL;
	view_t   *v   = NULL;
	service_t svc;
	uint8_t  *buf;
	size_t    n;

	data[0] = (uint8_t) (sizeof(addr) - 1); /* the field's length, then its bytes */
	memcpy(data + 1, addr, sizeof(addr) - 1);
	o.id                       = "org-unknown";
	o.name                     = "A partner organisation";
	o.role                     = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
	o.region                   = "Amsterdam";
	o.base.n_unknown_fields    = 1;
	o.base.unknown_fields      = &u;
	oreq.organisation          = &o;
	oreq.base.n_unknown_fields = 1;
	oreq.base.unknown_fields   = &u;
	buf                        = pack_plus(&oreq.base, "", 0, &n);
	assert_int_equal(raw_msg_call(g.op, M("RegisterOrganisation"), buf, n, NULL, NULL), HV_OK);
	free(buf);
	expect_stored_clean("cap.orgs", "org-unknown",
	    &haven__capacity__v1__organisation__descriptor);
	greq.id = "org-unknown";
	buf     = pack_plus(&greq.base, "", 0, &n);
	assert_int_equal(raw_msg_call(g.op, M("GetOrganisation"), buf, n,
	                     &haven__capacity__v1__organisation__descriptor, &got),
	    HV_OK);
	free(buf);
	assert_int_equal(got->base.n_unknown_fields, 0);
	protobuf_c_message_free_unpacked(&got->base, NULL);

	svc_init(&svc, "svc-unknown", "org-unknown", T_SHELTER, "Amsterdam", 10, 5);
	svc.base.n_unknown_fields  = 1;
	svc.base.unknown_fields    = &u;
	sreq.service               = &svc;
	sreq.base.n_unknown_fields = 1;
	sreq.base.unknown_fields   = &u;
	buf                        = pack_plus(&sreq.base, "", 0, &n);
	assert_int_equal(raw_msg_call(g.op, M("RegisterService"), buf, n, NULL, NULL), HV_OK);
	free(buf);
	expect_stored_clean("cap.services", "svc-unknown",
	    &haven__capacity__v1__service__descriptor);
	vreq.id = "svc-unknown";
	buf     = pack_plus(&vreq.base, "", 0, &n);
	assert_int_equal(raw_msg_call(g.ch[REFERRER], M("GetService"), buf, n,
	                     &haven__capacity__v1__service_view__descriptor, &v),
	    HV_OK);
	free(buf);
	assert_int_equal(v->base.n_unknown_fields, 0);
	assert_int_equal(v->service->base.n_unknown_fields, 0);
	protobuf_c_message_free_unpacked(&v->base, NULL);

	/* Field number 0, in a two-byte tag protobuf-c decodes. */
	o.id                       = "org-field0";
	o.base.n_unknown_fields    = 0;
	oreq.base.n_unknown_fields = 0;
	buf                        = pack_plus(&oreq.base, "\x80\x00\x05", 3, &n);
	assert_int_equal(raw_msg_call(g.op, M("RegisterOrganisation"), buf, n, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	expect_err("field numbered 0");
	free(buf);
	svc_init(&svc, "svc-field0", "org-unknown", T_SHELTER, "Amsterdam", 10, 5);
	sreq.base.n_unknown_fields = 0;
	buf                        = pack_plus(&sreq.base, "\x80\x00\x05", 3, &n);
	assert_int_equal(raw_msg_call(g.op, M("RegisterService"), buf, n, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	expect_err("field numbered 0");
	free(buf);
	greq.id = "org-field0";
	buf     = pack_plus(&greq.base, "", 0, &n);
	assert_int_equal(raw_msg_call(g.op, M("GetOrganisation"), buf, n, NULL, NULL),
	    HV_NOT_FOUND);
	free(buf);
	assert_int_equal(get_view(g.op, "svc-field0", NULL), HV_NOT_FOUND);
}

/* Names that read otherwise than they are stored (U+202E turns "maretsmA" into "Amsterdam")
 * are refused with a message naming the field. */
static void
test_bidi_text_refused(void **state)
{
	service_t svc;

	assert_int_equal(register_org(g.op, "org-bidi", HAVEN__CAPACITY__V1__ROLE__PROVIDER,
	                     "Amsterdam", NULL),
	    HV_OK);
	{
		Haven__Capacity__V1__RegisterOrganisationRequest req =
		    HAVEN__CAPACITY__V1__REGISTER_ORGANISATION_REQUEST__INIT;
		org_t o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;

		o.id             = "org-bidi2";
		o.name           = "Opvang \xe2\x80\xaemaretsmA";
		o.role           = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
		o.region         = "Amsterdam";
		req.organisation = &o;
		assert_int_equal(call(g.op, M("RegisterOrganisation"), &req.base,
		                     &haven__capacity__v1__organisation__descriptor, NULL),
		    HV_INVALID_ARGUMENT);
		expect_err("name");
	}
	svc_init(&svc, "svc-bidi", "org-bidi", T_SHELTER, "Amsterdam", 10, 5);
	svc.name = "Opvang \xe2\x81\xa7x\xe2\x81\xa9"; /* U+2067 ... U+2069 */
	assert_int_equal(register_service(g.op, &svc), HV_INVALID_ARGUMENT);
	expect_err("name");
	svc_init(&svc, "svc-bidi", "org-bidi", T_SHELTER, "Amsterdam", 10, 5);
	svc.front_door_contact = "intake \xe2\x80\x8f"
	                         "088"; /* U+200F */
	assert_int_equal(register_service(g.op, &svc), HV_INVALID_ARGUMENT);
	expect_err("front_door_contact");
	assert_int_equal(get_view(g.op, "svc-bidi", NULL), HV_NOT_FOUND);
}

static hv_status
change(rpc_channel *ch, const char *id, int delta, view_t **out)
{
	Haven__Capacity__V1__ChangeAvailabilityRequest req =
	    HAVEN__CAPACITY__V1__CHANGE_AVAILABILITY_REQUEST__INIT;

	req.service_id = (char *) id;
	req.delta      = delta;
	return (call(ch, M("ChangeAvailability"), &req.base,
	    &haven__capacity__v1__service_view__descriptor, out));
}

/* "One bed freed" / "one bed taken" in one step, without a version, within held .. maximum -
 * occupied, confirming the figure; a walk-in while a place is held. */
static void
test_change_availability(void **state)
{
	service_t s;
	view_t   *v = NULL;
	hold_job  j = { .cs = g.cs, .service_id = "svc-walk", .ttl_s = 60 };
	uint64_t  ver;
	uint32_t  av, held;

	(void) state;
	svc_init(&s, "svc-walk", "shelter-a", T_SHELTER, "Amsterdam", 3, 3);
	assert_int_equal(register_service(g.op, &s), HV_OK);
	assert_int_equal(store_write(g.st, hold_fn, &j), HV_OK);
	/* Walk-ins while one place is held: down to the held place, not into it. */
	assert_int_equal(change(g.ch[SHELTER_A], "svc-walk", -1, &v), HV_OK);
	assert_int_equal(v->service->available, 2);
	assert_int_equal(v->free, 1);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	assert_int_equal(change(g.ch[COORD_AMS], "svc-walk", -1, NULL), HV_OK);
	assert_int_equal(change(g.ch[SHELTER_A], "svc-walk", -1, NULL), HV_FAILED_PRECONDITION);
	expect_err("1 held for open offers");
	service_state("svc-walk", &ver, &av, &held);
	assert_int_equal(av, 1);
	assert_int_equal(held, 1);
	/* Beds freed, up to the maximum. */
	assert_int_equal(change(g.ch[SHELTER_A], "svc-walk", 2, &v), HV_OK);
	assert_int_equal(v->service->available, 3);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	assert_int_equal(change(g.ch[SHELTER_A], "svc-walk", 1, NULL), HV_FAILED_PRECONDITION);
	expect_err("no place left to free");
	/* The hold becomes a placement: its place is occupied, not free to give again. */
	assert_int_equal(store_write(g.st, confirm_fn, &j), HV_OK);
	assert_int_equal(get_view(g.op, "svc-walk", &v), HV_OK);
	assert_int_equal(v->service->available, 2);
	assert_int_equal(v->service->occupied, 1);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	assert_int_equal(change(g.ch[SHELTER_A], "svc-walk", 1, NULL), HV_FAILED_PRECONDITION);
	/* A stale figure is confirmed by the change. */
	atomic_fetch_add(&clock_offset, (int64_t) 2 * 86400 * 1000);
	assert_int_equal(get_view(g.op, "svc-walk", &v), HV_OK);
	assert_int_equal(v->freshness, UNKNOWN);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	assert_int_equal(change(g.ch[SHELTER_A], "svc-walk", -1, &v), HV_OK);
	assert_int_equal(v->freshness, FRESH);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	atomic_fetch_sub(&clock_offset, (int64_t) 2 * 86400 * 1000);

	/* A stock-take that counts every place free says the placement left: nothing is
	 * occupied any more, and its end gives nothing back twice. */
	service_state("svc-walk", &ver, &av, &held);
	assert_int_equal(set_available(g.ch[SHELTER_A], "svc-walk", 3, ver, &v), HV_OK);
	assert_int_equal(v->service->occupied, 0);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	assert_int_equal(store_write(g.st, place_release_fn, &j), HV_OK);
	assert_false(j.freed);
	service_state("svc-walk", &ver, &av, &held);
	assert_int_equal(av, 3);

	/* Who and what not. */
	assert_int_equal(change(g.ch[SHELTER_R], "svc-walk", 1, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(change(g.ch[COORD_RDAM], "svc-walk", 1, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(change(g.ch[REFERRER], "svc-walk", 1, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(change(g.ch[SHELTER_A], "svc-walk", 0, NULL), HV_INVALID_ARGUMENT);
	expect_err("delta must be");
	assert_int_equal(change(g.ch[SHELTER_A], "svc-walk", 200000, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(change(g.ch[SHELTER_A], "Bad Id", 1, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(change(g.ch[SHELTER_A], "svc-none", 1, NULL), HV_NOT_FOUND);
}

/* Two shelters' desks at once: one frees beds while the other takes them, over RPC and without
 * versions. Every change lands exactly once (none lost to a race), and the last bed is never
 * taken twice. */
typedef struct bed_job {
	int                who;
	int                delta;
	int                n;
	int                ok, refused;
	pthread_barrier_t *barrier;
} bed_job;

static void *
bed_worker(void *arg)
{
	bed_job *j = arg;

	pthread_barrier_wait(j->barrier);
	for (int i = 0; i < j->n; i++) {
		hv_status st = change(g.ch[j->who], "svc-race-beds", j->delta, NULL);
		if (st == HV_OK) {
			j->ok++;
		} else if (st == HV_FAILED_PRECONDITION) {
			j->refused++;
		}
	}
	return (NULL);
}

static void
test_change_race(void **state)
{
	service_t         s;
	pthread_barrier_t b;
	pthread_t         th[4];
	bed_job           jobs[4];
	uint64_t          ver;
	uint32_t          av, held;
	int               freed = 0, taken = 0;

	(void) state;
	svc_init(&s, "svc-race-beds", "shelter-a", T_SHELTER, "Amsterdam", 10, 5);
	assert_int_equal(register_service(g.op, &s), HV_OK);
	assert_int_equal(pthread_barrier_init(&b, NULL, 4), 0);
	for (int i = 0; i < 4; i++) {
		jobs[i] = (bed_job) { .who = i % 2 == 0 ? SHELTER_A : COORD_AMS,
			.delta             = i < 2 ? 1 : -1,
			.n                 = 40,
			.barrier           = &b };
		assert_int_equal(pthread_create(&th[i], NULL, bed_worker, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(jobs[i].ok + jobs[i].refused, jobs[i].n); /* nothing else failed */
		if (jobs[i].delta > 0) {
			freed += jobs[i].ok;
		} else {
			taken += jobs[i].ok;
		}
	}
	pthread_barrier_destroy(&b);
	service_state("svc-race-beds", &ver, &av, &held);
	assert_int_equal((int) av, 5 + freed - taken);
	assert_true(av <= 10);
	assert_int_equal(ver, 1 + (uint64_t) (freed + taken));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_org_roles),
		cmocka_unit_test(test_peer_support_group),
		cmocka_unit_test(test_org_bad_input),
		cmocka_unit_test(test_org_list),
		cmocka_unit_test(test_service_roles),
		cmocka_unit_test(test_service_bad_input),
		cmocka_unit_test(test_concurrent_updates),
		cmocka_unit_test(test_hold_race),
		cmocka_unit_test(test_freshness),
		cmocka_unit_test(test_find_and_summary),
		cmocka_unit_test(test_pubsub),
		cmocka_unit_test(test_hold_expiry),
		cmocka_unit_test(test_disabled_org_refused),
		cmocka_unit_test(test_login_with_registered_cert),
		cmocka_unit_test(test_pending_services),
		cmocka_unit_test(test_change_availability),
		cmocka_unit_test(test_change_race),
		cmocka_unit_test(test_unknown_fields_not_stored),
		cmocka_unit_test(test_bidi_text_refused),
	};

	log_init("capacity_test", LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, setup, teardown);
}
