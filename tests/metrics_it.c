/*
 * metrics_it.c - what the metrics page says about a real server and real services:
 *
 *  - the RPC server records calls run by workers, calls refused RESOURCE_EXHAUSTED because the
 *    queue was full, methods without a handler, role refusals, and names it does not serve
 *    (all under method="unknown", whose names never reach the page); latency includes the
 *    handler's time;
 *  - the capacity registry's gauges (services, stale services and places per region and type)
 *    and the referral service's (needs by state, unmet needs per region and type, the oldest
 *    unmet need's age) follow the store as referrals are offered, accepted and left waiting,
 *    and as availability goes stale; no id of a person, referral, organisation or service is
 *    on the page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/metrics.h"
#include "haven/rpc.h"
#include "haven/store.h"
#include "testutil.h"

#include "capacity.h"
#include "referral.h"

#include "haven/testing/v1/testing.pb-c.h"

#define M_SLEEP   "haven.testing.v1.Testing/Sleep"
#define M_ADMIN   "haven.testing.v1.Testing/AdminOnly"
#define M_NOTIMPL "haven.testing.v1.Testing/NotImplemented"
#define M_CREATE  "haven.referral.v1.Referrals/CreateReferral"
#define M_ACCEPT  "haven.referral.v1.Referrals/AcceptOffer"

#define ST(x)  HAVEN__CAPACITY__V1__SERVICE_TYPE__##x
#define POP(x) HAVEN__CAPACITY__V1__POPULATION__##x
#define NS(x)  HAVEN__REFERRAL__V1__NEED_STATE__##x

#define SUBJECT "0123456789abcdef0123456789abcdef"

/* ---- reading a page ------------------------------------------------------------------- */

static char *
render(rpc_server *srv)
{
	char  *page = NULL;
	size_t len;

	assert_int_equal(metrics_render(rpc_server_metrics(srv), &page, &len), HV_OK);
	assert_int_equal(strlen(page), len);
	return (page);
}

/* ---- the RPC server ------------------------------------------------------------------- */

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static hv_status
t_sleep(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const Haven__Testing__V1__SleepRequest *in  = (const void *) req;
	Haven__Testing__V1__Empty              *out = rpc_call_alloc(call, sizeof(*out));

	sleep_ms(in->ms);
	haven__testing__v1__empty__init(out);
	*reply = &out->base;
	return (HV_OK);
}

static hv_status
t_admin(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	Haven__Testing__V1__WhoAmIResponse *out = rpc_call_alloc(call, sizeof(*out));

	haven__testing__v1__who_am_iresponse__init(out);
	*reply = &out->base;
	return (HV_OK);
}

static const rpc_method_impl testing_methods[] = {
	{ .name = "Sleep", .handler = t_sleep, .roles = RPC_ROLES_ANY },
	{ .name = "AdminOnly", .handler = t_admin, .roles = RPC_ROLE_ADMIN },
};

typedef struct sleep_job {
	rpc_channel *ch;
	hv_status    st;
} sleep_job;

static hv_status
call_sleep(rpc_channel *ch, unsigned ms)
{
	Haven__Testing__V1__SleepRequest req = HAVEN__TESTING__V1__SLEEP_REQUEST__INIT;
	ProtobufCMessage                *r   = NULL;
	rpc_call_options                 o   = { .timeout_ms = 10000 };
	char                             err[RPC_ERRMSG_MAX];
	hv_status                        st;

	req.ms = ms;
	st = rpc_channel_call(ch, M_SLEEP, &req.base, &haven__testing__v1__empty__descriptor, &r,
	    &o, err, sizeof(err));
	if (r != NULL) {
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

static void *
sleeper(void *arg)
{
	sleep_job *j = arg;

	j->st = call_sleep(j->ch, 200);
	return (NULL);
}

static hv_status
call_empty(rpc_channel *ch, const char *method)
{
	Haven__Testing__V1__Empty e = HAVEN__TESTING__V1__EMPTY__INIT;
	ProtobufCMessage         *r = NULL;
	char                      err[RPC_ERRMSG_MAX];
	hv_status                 st;

	st = rpc_channel_call(ch, method, &e.base,
	    &haven__testing__v1__who_am_iresponse__descriptor, &r, NULL, err, sizeof(err));
	if (r != NULL) {
		protobuf_c_message_free_unpacked(r, NULL);
	}
	return (st);
}

static void
test_rpc_calls(void **state)
{
	rpc_server_options o = { .workers = 1, .queue = 2, .contexts = 32 };
	rpc_server        *srv;
	rpc_channel       *ch;
	pthread_t          th[12];
	sleep_job          jobs[12];
	int                ok = 0, busy = 0;
	char              *page;
	metrics_method    *mm;

	assert_int_equal(rpc_server_open(&srv, &o), HV_OK);
	assert_int_equal(rpc_server_add_service(srv, &haven__testing__v1__testing__descriptor,
	                     testing_methods, 2, NULL),
	    HV_OK);
	assert_int_equal(rpc_server_listen(srv, "inproc://metrics-rpc"), HV_OK);
	assert_int_equal(rpc_server_start(srv), HV_OK);
	assert_int_equal(rpc_channel_open(&ch, "inproc://metrics-rpc", NULL), HV_OK);

	/* A burst on one worker and a queue of two: some run, the rest are refused. */
	for (int i = 0; i < 12; i++) {
		jobs[i] = (sleep_job) { .ch = ch };
		assert_int_equal(pthread_create(&th[i], NULL, sleeper, &jobs[i]), 0);
	}
	for (int i = 0; i < 12; i++) {
		pthread_join(th[i], NULL);
		ok += jobs[i].st == HV_OK;
		busy += jobs[i].st == HV_RESOURCE_EXHAUSTED;
	}
	assert_int_equal(ok + busy, 12);
	assert_true(ok >= 2 && busy >= 1);

	/* No handler; a role that may not call; names the server does not serve. */
	assert_int_equal(call_empty(ch, M_NOTIMPL), HV_UNIMPLEMENTED);
	assert_int_equal(call_empty(ch, M_ADMIN), HV_PERMISSION_DENIED);
	assert_int_equal(call_empty(ch, "haven.people.v1.People/AnnaSmith"), HV_UNIMPLEMENTED);
	assert_int_equal(call_empty(ch, "haven.people.v1.People/BobJones"), HV_UNIMPLEMENTED);
	assert_int_equal(call_empty(ch, "subject-0123456789abcdef"), HV_UNIMPLEMENTED);

	mm = metrics_method_get(rpc_server_metrics(srv), M_SLEEP);
	assert_int_equal(metrics_method_calls(mm, HV_OK), ok);
	assert_int_equal(metrics_method_calls(mm, HV_RESOURCE_EXHAUSTED), busy);

	page = render(srv);
	{
		char series[256];

		snprintf(series, sizeof(series),
		    "haven_rpc_calls_total{method=\"%s\",status=\"OK\"}", M_SLEEP);
		tu_expect_metric(page, series, ok);
		snprintf(series, sizeof(series),
		    "haven_rpc_calls_total{method=\"%s\",status=\"RESOURCE_EXHAUSTED\"}", M_SLEEP);
		tu_expect_metric(page, series, busy);
		snprintf(series, sizeof(series),
		    "haven_rpc_call_duration_seconds_count{method=\"%s\"}", M_SLEEP);
		tu_expect_metric(page, series, 12);
		/* The calls that ran slept 200 ms in their handler: none is under 100 ms, and the
		 * refusals (answered at once) are. */
		snprintf(series, sizeof(series),
		    "haven_rpc_call_duration_seconds_bucket{method=\"%s\",le=\"0.1\"}", M_SLEEP);
		assert_true(tu_metric(page, series) <= busy);
		snprintf(series, sizeof(series),
		    "haven_rpc_call_duration_seconds_bucket{method=\"%s\",le=\"1\"}", M_SLEEP);
		tu_expect_metric(page, series, 12);
		snprintf(series, sizeof(series),
		    "haven_rpc_call_duration_seconds_sum{method=\"%s\"}", M_SLEEP);
		assert_true(tu_metric(page, series) >= 0.2 * ok);
	}
	tu_expect_metric(page,
	    "haven_rpc_calls_total{method=\"" M_NOTIMPL "\",status=\"UNIMPLEMENTED\"}", 1);
	tu_expect_metric(page,
	    "haven_rpc_calls_total{method=\"" M_ADMIN "\",status=\"PERMISSION_DENIED\"}", 1);
	tu_expect_metric(page, "haven_rpc_calls_total{method=\"unknown\",status=\"UNIMPLEMENTED\"}",
	    3);
	tu_expect_metric(page, "haven_rpc_queue_rejected_total", busy);
	tu_expect_metric(page, "haven_rpc_queue_capacity", 2);
	tu_expect_metric(page, "haven_rpc_workers", 1);
	tu_expect_metric(page, "haven_rpc_queued_calls", 0);
	tu_expect_metric(page, "haven_rpc_serving{service=\"haven.testing.v1.Testing\"}", 1);
	assert_null(strstr(page, "people"));
	assert_null(strstr(page, "Smith"));
	assert_null(strstr(page, "subject-"));
	free(page);

	rpc_channel_close(ch);
	rpc_server_close(srv);
}

/* ---- the services' gauges ------------------------------------------------------------- */

static _Atomic int64_t clock_ms;

static int64_t
fake_now(void *arg)
{
	return (atomic_load(&clock_ms));
}

static hv_status
allow_all(void *arg, store_txn *txn, const rpc_caller *caller, const char *method,
    const char *subject, const char *purpose, const char *recipient, bool accepting, bool *allowed)
{
	*allowed = true;
	return (HV_OK);
}

static const struct {
	const char               *id;
	Haven__Capacity__V1__Role role;
	rpc_role                  rpc;
	const char               *region;
} orgs[] = {
	{ "ngo-ams", HAVEN__CAPACITY__V1__ROLE__REFERRER, RPC_ROLE_REFERRER, "Amsterdam" },
	{ "shelter-a", HAVEN__CAPACITY__V1__ROLE__PROVIDER, RPC_ROLE_PROVIDER, "Amsterdam" },
};

static const struct {
	const char                      *id;
	Haven__Capacity__V1__ServiceType type;
	const char                      *region;
	uint32_t                         available;
} services[] = {
	{ "svc-shelter-ams", ST(SHELTER), "Amsterdam", 1 },
	{ "svc-legal-nh", ST(LEGAL_AID), "Noord-Holland", 3 },
};

typedef struct setup_job {
	cap_service *cs;
} setup_job;

static hv_status
setup_fn(store_txn *txn, void *arg)
{
	setup_job *j = arg;
	char       err[256], id[CAP_ID_MAX];
	hv_status  st;

	for (size_t i = 0; i < sizeof(orgs) / sizeof(orgs[0]); i++) {
		Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;

		o.id     = (char *) orgs[i].id;
		o.name   = (char *) orgs[i].id;
		o.role   = orgs[i].role;
		o.region = (char *) orgs[i].region;
		if ((st = cap_add_organisation(j->cs, txn, &o, err, sizeof(err))) != HV_OK) {
			fprintf(stderr, "org %s: %s\n", orgs[i].id, err);
			return (st);
		}
	}
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		Haven__Capacity__V1__Service    svc     = HAVEN__CAPACITY__V1__SERVICE__INIT;
		Haven__Capacity__V1__Population pops[2] = { POP(WOMEN), POP(MEN) };

		svc.id                 = (char *) services[i].id;
		svc.org_id             = "shelter-a";
		svc.name               = (char *) services[i].id;
		svc.type               = services[i].type;
		svc.service_area       = (char *) services[i].region;
		svc.n_populations      = 2;
		svc.populations        = pops;
		svc.maximum            = 20;
		svc.available          = services[i].available;
		svc.front_door_contact = "intake desk";
		if ((st = cap_add_service(j->cs, txn, &svc, id, err, sizeof(err))) != HV_OK) {
			fprintf(stderr, "service %s: %s\n", services[i].id, err);
			return (st);
		}
	}
	return (HV_OK);
}

/* Creates a referral for one woman with needs of these types; returns it (caller frees). */
static Haven__Referral__V1__Referral *
create(rpc_channel *ch, const Haven__Capacity__V1__ServiceType *types, size_t n, const char *key)
{
	Haven__Referral__V1__CreateReferralRequest req =
	    HAVEN__REFERRAL__V1__CREATE_REFERRAL_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest  needs[4];
	Haven__Referral__V1__NeedRequest *np[4];
	ProtobufCMessage                 *r = NULL;
	rpc_call_options                  o = { .timeout_ms = 10000, .idempotency_key = key };
	char                              err[RPC_ERRMSG_MAX];

	for (size_t i = 0; i < n; i++) {
		haven__referral__v1__need_request__init(&needs[i]);
		needs[i].type       = types[i];
		needs[i].population = POP(WOMEN);
		np[i]               = &needs[i];
	}
	req.subject      = SUBJECT;
	req.urgency      = HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE;
	req.exploitation = HAVEN__REFERRAL__V1__EXPLOITATION__LABOUR;
	req.n_needs      = n;
	req.needs        = np;
	req.note         = "";
	if (rpc_channel_call(ch, M_CREATE, &req.base, &haven__referral__v1__referral__descriptor,
	        &r, &o, err, sizeof(err)) != HV_OK) {
		fail_msg("CreateReferral: %s", err);
	}
	return ((Haven__Referral__V1__Referral *) r);
}

/* Nothing that names a person, a referral, an organisation or a service. */
static void
check_no_ids(const char *page, const Haven__Referral__V1__Referral *const *refs, size_t n)
{
	static const char *const ids[] = { SUBJECT, "ngo-ams", "shelter-a", "svc-", "ref-", "off-",
		"hold-", "intake desk" };

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		if (strstr(page, ids[i]) != NULL) {
			fail_msg("the page shows '%s'", ids[i]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		assert_null(strstr(page, refs[i]->id));
	}
}

static void
test_service_gauges(void **state)
{
	char                                          dir[512];
	store_options                                 so = { .no_sync = true };
	store                                        *st;
	region_map                                   *regions;
	cap_service                                  *cs;
	ref_service                                  *rs;
	auth                                         *au;
	rpc_server                                   *srv;
	rpc_channel                                  *ch[2];
	cap_options                                   co = { 0 };
	ref_options                                   ro = { 0 };
	auth_options                                  ao = { .lookup = cap_lookup_org };
	setup_job                                     sj;
	char                                          tok[AUTH_TOKEN_MAX];
	Haven__Referral__V1__Referral                *refs[2];
	char                                         *page;
	static const Haven__Capacity__V1__ServiceType two[] = { ST(SHELTER), ST(MEDICAL) };
	static const Haven__Capacity__V1__ServiceType one[] = { ST(SHELTER) };

	atomic_store(&clock_ms, (int64_t) 1700000000000LL);
	tu_tmpdir(dir, sizeof(dir), "metrics");
	assert_int_equal(store_open(&st, dir, &so), HV_OK);
	assert_int_equal(region_map_default(&regions), HV_OK);
	co.store         = st;
	co.regions       = regions;
	co.now_ms        = fake_now;
	co.manual_expiry = true;
	assert_int_equal(cap_open(&cs, &co), HV_OK);
	ro.store    = st;
	ro.regions  = regions;
	ro.capacity = cs;
	ro.consent  = allow_all;
	ro.now_ms   = fake_now;
	ro.manual   = true;
	assert_int_equal(ref_open(&rs, &ro), HV_OK);
	ao.lookup_arg = cs;
	memset(ao.secret, 0x42, sizeof(ao.secret));
	assert_int_equal(auth_open(&au, &ao), HV_OK);
	{
		rpc_server_options o = { .auth = au };
		assert_int_equal(rpc_server_open(&srv, &o), HV_OK);
	}
	assert_int_equal(cap_register(cs, srv), HV_OK);
	assert_int_equal(ref_register(rs, srv), HV_OK);
	assert_int_equal(rpc_server_listen(srv, "inproc://metrics-services"), HV_OK);
	assert_int_equal(rpc_server_start(srv), HV_OK);

	/* An empty registry: the families are there, with nothing to count. */
	page = render(srv);
	assert_non_null(strstr(page, "# TYPE haven_capacity_services gauge\n"));
	assert_null(strstr(page, "haven_capacity_services{"));
	tu_expect_metric(page, "haven_referral_referrals", 0);
	tu_expect_metric(page, "haven_referral_needs{state=\"waiting\"}", 0);
	tu_expect_metric(page, "haven_referral_oldest_unmet_need_age_seconds", 0);
	free(page);

	sj.cs = cs;
	assert_int_equal(store_write(st, setup_fn, &sj), HV_OK);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rpc_channel_open(&ch[i], "inproc://metrics-services", NULL),
		    HV_OK);
		assert_int_equal(auth_issue_token(au, orgs[i].id, orgs[i].rpc, hv_clock_wall_ms(),
		                     tok, NULL),
		    HV_OK);
		assert_int_equal(rpc_channel_set_token(ch[i], tok), HV_OK);
	}

	/* The first referral's shelter need takes the one bed (offered, held); its medical need
	 * and the second referral's shelter need wait. */
	refs[0] = create(ch[0], two, 2, "k1");
	assert_int_equal(refs[0]->needs[0]->state, NS(OFFERED));
	assert_int_equal(refs[0]->needs[1]->state, NS(WAITING));
	refs[1] = create(ch[0], one, 1, "k2");
	assert_int_equal(refs[1]->needs[0]->state, NS(WAITING));

	page = render(srv);
	tu_expect_metric(page, "haven_capacity_services{region=\"Amsterdam\",type=\"shelter\"}", 1);
	tu_expect_metric(page,
	    "haven_capacity_services{region=\"Noord-Holland\",type=\"legal-aid\"}", 1);
	tu_expect_metric(page,
	    "haven_capacity_maximum_places{region=\"Amsterdam\",type=\"shelter\"}", 20);
	tu_expect_metric(page,
	    "haven_capacity_available_places{region=\"Amsterdam\",type=\"shelter\"}", 1);
	tu_expect_metric(page, "haven_capacity_held_places{region=\"Amsterdam\",type=\"shelter\"}",
	    1);
	tu_expect_metric(page, "haven_capacity_free_places{region=\"Amsterdam\",type=\"shelter\"}",
	    0);
	tu_expect_metric(page,
	    "haven_capacity_free_places{region=\"Noord-Holland\",type=\"legal-aid\"}", 3);
	tu_expect_metric(page,
	    "haven_capacity_stale_services{region=\"Amsterdam\",type=\"shelter\"}", 0);
	assert_null(strstr(page, "region=\"Limburg\""));
	tu_expect_metric(page, "haven_referral_referrals", 2);
	tu_expect_metric(page, "haven_referral_open_referrals", 2);
	tu_expect_metric(page, "haven_referral_needs{state=\"waiting\"}", 2);
	tu_expect_metric(page, "haven_referral_needs{state=\"offered\"}", 1);
	tu_expect_metric(page, "haven_referral_needs{state=\"accepted\"}", 0);
	tu_expect_metric(page, "haven_referral_needs{state=\"on-hold\"}", 0);
	tu_expect_metric(page, "haven_referral_unmet_needs{region=\"Amsterdam\",type=\"medical\"}",
	    1);
	tu_expect_metric(page, "haven_referral_unmet_needs{region=\"Amsterdam\",type=\"shelter\"}",
	    1);
	assert_null(
	    strstr(page, "haven_referral_unmet_needs{region=\"Amsterdam\",type=\"legal-aid\"}"));
	tu_expect_metric(page, "haven_referral_oldest_unmet_need_age_seconds", 0);
	tu_expect_metric(page, "haven_rpc_calls_total{method=\"" M_CREATE "\",status=\"OK\"}", 2);
	check_no_ids(page, (const Haven__Referral__V1__Referral *const *) refs, 2);
	free(page);

	/* The shelter accepts: the hold becomes a placement. */
	{
		Haven__Referral__V1__OfferActionRequest req =
		    HAVEN__REFERRAL__V1__OFFER_ACTION_REQUEST__INIT;
		ProtobufCMessage *r = NULL;
		char              err[RPC_ERRMSG_MAX];

		req.offer_id = refs[0]->needs[0]->offer_id;
		req.text     = "";
		if (rpc_channel_call(ch[1], M_ACCEPT, &req.base,
		        &haven__referral__v1__offer__descriptor, &r, NULL, err,
		        sizeof(err)) != HV_OK) {
			fail_msg("AcceptOffer: %s", err);
		}
		protobuf_c_message_free_unpacked(r, NULL);
	}
	/* Two days later nobody has confirmed their figures: both services are stale. */
	atomic_fetch_add(&clock_ms, (int64_t) 2 * 86400 * 1000);

	page = render(srv);
	tu_expect_metric(page, "haven_referral_needs{state=\"accepted\"}", 1);
	tu_expect_metric(page, "haven_referral_needs{state=\"offered\"}", 0);
	tu_expect_metric(page, "haven_referral_needs{state=\"waiting\"}", 2);
	tu_expect_metric(page, "haven_referral_open_referrals", 2);
	tu_expect_metric(page, "haven_referral_oldest_unmet_need_age_seconds", 2 * 86400);
	tu_expect_metric(page, "haven_capacity_held_places{region=\"Amsterdam\",type=\"shelter\"}",
	    0);
	tu_expect_metric(page,
	    "haven_capacity_available_places{region=\"Amsterdam\",type=\"shelter\"}", 0);
	tu_expect_metric(page,
	    "haven_capacity_stale_services{region=\"Amsterdam\",type=\"shelter\"}", 1);
	tu_expect_metric(page,
	    "haven_capacity_stale_services{region=\"Noord-Holland\",type=\"legal-aid\"}", 1);
	tu_expect_metric(page,
	    "haven_capacity_free_places{region=\"Noord-Holland\",type=\"legal-aid\"}", 0);
	tu_expect_metric(page,
	    "haven_capacity_available_places{region=\"Noord-Holland\",type=\"legal-aid\"}", 3);
	tu_expect_metric(page, "haven_rpc_calls_total{method=\"" M_ACCEPT "\",status=\"OK\"}", 1);
	check_no_ids(page, (const Haven__Referral__V1__Referral *const *) refs, 2);
	tu_expect_metric(page, "haven_metrics_invalid_samples_total", 0);
	free(page);

	for (int i = 0; i < 2; i++) {
		protobuf_c_message_free_unpacked(&refs[i]->base, NULL);
		rpc_channel_close(ch[i]);
	}
	rpc_server_close(srv);
	ref_close(rs);
	cap_close(cs);
	auth_close(au);
	store_close(st);
	region_map_free(regions);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rpc_calls),
		cmocka_unit_test(test_service_gauges),
	};

	log_init("metrics_test", LOG_LEVEL_OFF);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
