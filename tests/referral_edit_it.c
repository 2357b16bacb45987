/*
 * referral_edit_it.c - changing a referral after it was made, over RPC on a real node
 * (referral_node.h): UpdateReferral (urgency, excluded and preferred regions, note, needs
 * added and cancelled), PauseNeed and ResumeNeed (ON_HOLD holds no place and is not routed),
 * CancelReferral ending accepted and placed needs with an outcome and giving their places
 * back, a coordinator's ReassignNeed naming the service, and the audit entry of every read of
 * a referral or an offer and of every statistics query. Each with the refusals of bad input and of
 * callers outside the referral's scope, and the invariant after every scenario.
 */
#include "referral_node.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define M_UPDATE "haven.referral.v1.Referrals/UpdateReferral"
#define M_PAUSE  "haven.referral.v1.Referrals/PauseNeed"
#define M_RESUME "haven.referral.v1.Referrals/ResumeNeed"
#define HOLD(x)  HAVEN__REFERRAL__V1__HOLD_REASON__##x
#define OUT(x)   HAVEN__REFERRAL__V1__OUTCOME__##x

typedef Haven__Referral__V1__UpdateReferralRequest UpdateReq;

static hv_status
update_as(node *n, int who, const UpdateReq *req, Referral **out)
{
	return (call(n->ch[who], M_UPDATE, &req->base, &haven__referral__v1__referral__descriptor,
	    out, NULL));
}

static hv_status
pause_as(node *n, int who, const char *id, uint32_t need, int reason, const char *text)
{
	Haven__Referral__V1__PauseNeedRequest req = HAVEN__REFERRAL__V1__PAUSE_NEED_REQUEST__INIT;

	req.referral_id = (char *) id;
	req.need_index  = need;
	req.reason      = (Haven__Referral__V1__HoldReason) reason;
	req.text        = (char *) (text != NULL ? text : "");
	return (call(n->ch[who], M_PAUSE, &req.base, &haven__referral__v1__referral__descriptor,
	    NULL, NULL));
}

static hv_status
resume_as(node *n, int who, const char *id, uint32_t need)
{
	Haven__Referral__V1__ResumeNeedRequest req = HAVEN__REFERRAL__V1__RESUME_NEED_REQUEST__INIT;

	req.referral_id = (char *) id;
	req.need_index  = need;
	req.text        = "";
	return (call(n->ch[who], M_RESUME, &req.base, &haven__referral__v1__referral__descriptor,
	    NULL, NULL));
}

static hv_status
cancel_as(node *n, int who, const char *id, int outcome)
{
	Haven__Referral__V1__CancelReferralRequest req =
	    HAVEN__REFERRAL__V1__CANCEL_REFERRAL_REQUEST__INIT;

	req.id      = (char *) id;
	req.reason  = "the person moved abroad";
	req.outcome = (Haven__Referral__V1__Outcome) outcome;
	return (call(n->ch[who], M_CANCEL, &req.base, &haven__referral__v1__referral__descriptor,
	    NULL, NULL));
}

static hv_status
reassign_as(node *n, int who, const char *id, uint32_t need, const char *service)
{
	Haven__Referral__V1__ReassignNeedRequest req =
	    HAVEN__REFERRAL__V1__REASSIGN_NEED_REQUEST__INIT;

	req.referral_id = (char *) id;
	req.need_index  = need;
	req.reason      = "the coordinator phoned the shelter";
	req.service_id  = (char *) (service != NULL ? service : "");
	return (call(n->ch[who], M_REASSIGN, &req.base, &haven__referral__v1__referral__descriptor,
	    NULL, NULL));
}

/* The held places of a service now. */
static uint32_t
held(node *n, const char *service)
{
	uint32_t available, h;

	places(n, service, &available, &h);
	return (h);
}

/* Whether the referral's trail has an event with this reason code. */
static bool
has_event(const Referral *r, const char *reason)
{
	for (size_t i = 0; i < r->n_events; i++) {
		if (strncmp(r->events[i]->reason, reason, strlen(reason)) == 0) {
			return (true);
		}
	}
	return (false);
}

/* The entries of the subject's audit trail made by org with method, each naming what; with
 * subject NULL, those of the whole log about no subject. */
static unsigned
audited(node *n, const char *subject, const char *org, const char *method, const char *what)
{
	static audit_entry e[AUDIT_LIST_MAX];
	store_txn         *txn;
	size_t             got   = 0;
	unsigned           count = 0;

	assert_int_equal(store_read_begin(n->st, &txn), HV_OK);
	assert_int_equal(audit_list(n->audit, txn, subject, 0, e, AUDIT_LIST_MAX, &got), HV_OK);
	store_read_end(txn);
	for (size_t i = 0; i < got; i++) {
		count += strcmp(e[i].org, org) == 0 && strcmp(e[i].method, method) == 0 &&
		    strcmp(e[i].purpose, what) == 0 && e[i].result == HV_OK &&
		    (subject != NULL || e[i].subject[0] == '\0');
	}
	return (count);
}

/* A referral of ngo-ams (Amsterdam) with one shelter need: offered at sh-ams. */
static Referral *
offered_shelter(node *n)
{
	Referral *r = NULL;

	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	return (r);
}

/* ---- UpdateReferral -------------------------------------------------------------------------- */

/* Excluding the region of the open offer withdraws it (its hold released) and routes the need
 * to the next region; urgency, preferences and the note change with it, in one version. */
static void
test_update_excludes_offer(void **state)
{
	node     *n      = *state;
	UpdateReq req    = HAVEN__REFERRAL__V1__UPDATE_REFERRAL_REQUEST__INIT;
	char     *excl[] = { "Amsterdam" }, *pref[] = { "Noord-Holland" };
	Referral *r, *u                             = NULL;

	add_services(n, std_services, N_STD);
	r = offered_shelter(n);
	assert_int_equal(held(n, "sh-ams"), 1);
	req.id                    = r->id;
	req.reason                = "she was seen near the Amsterdam shelter";
	req.urgency               = URG(URGENT);
	req.set_excluded_regions  = true;
	req.n_excluded_regions    = 1;
	req.excluded_regions      = excl;
	req.set_preferred_regions = true;
	req.n_preferred_regions   = 1;
	req.preferred_regions     = pref;
	req.set_note              = true;
	req.note                  = "call the case worker first";
	/* Out of scope: another referrer, a coordinator of another region, a provider. */
	assert_int_equal(update_as(n, C_REFERRER2, &req, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(update_as(n, C_COORD_FAR, &req, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(update_as(n, C_PROV_A, &req, NULL), HV_PERMISSION_DENIED);
	assert_int_equal(held(n, "sh-ams"), 1);

	assert_int_equal(update_as(n, C_REFERRER, &req, &u), HV_OK);
	assert_int_equal(u->urgency, URG(URGENT));
	assert_string_equal(u->note, "call the case worker first");
	assert_int_equal(u->n_excluded_regions, 1);
	assert_string_equal(u->excluded_regions[0], "Amsterdam");
	assert_string_equal(u->preferred_regions[0], "Noord-Holland");
	assert_int_equal(u->needs[0]->state, NS(OFFERED));
	assert_string_equal(u->needs[0]->service_id, "sh-nh");
	assert_true(has_event(u, "region excluded"));
	assert_true(has_event(u, "updated: urgency regions note"));
	assert_true(u->version > r->version);
	assert_int_equal(audited(n, r->subject, "ngo-ams", M_UPDATE, r->id), 1);
	assert_int_equal(audited(n, r->subject, "police-rdam", M_UPDATE, r->id), 0);
	assert_int_equal(held(n, "sh-ams"), 0);
	assert_int_equal(held(n, "sh-nh"), 1);
	free_msg(u);
	/* The coordinator of the home region may change it too: the excluded list emptied. */
	memset(&req, 0, sizeof(req));
	haven__referral__v1__update_referral_request__init(&req);
	req.id                   = r->id;
	req.reason               = "safe again";
	req.set_excluded_regions = true;
	assert_int_equal(update_as(n, C_COORD, &req, &u), HV_OK);
	assert_int_equal(u->n_excluded_regions, 0);
	assert_string_equal(u->needs[0]->service_id, "sh-nh"); /* the open offer stays */
	free_msg(u);
	free_msg(r);
	check_invariant(n);
}

/* A need added is routed at once; a need cancelled releases its hold; a need with its
 * provider already is not cancelled this way. */
static void
test_update_needs(void **state)
{
	node                             *n   = *state;
	UpdateReq                         req = HAVEN__REFERRAL__V1__UPDATE_REFERRAL_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest  legal    = HAVEN__REFERRAL__V1__NEED_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest *add[]    = { &legal };
	uint32_t                          cancel[] = { 0 };
	Referral                         *r, *u = NULL;

	add_services(n, std_services, N_STD);
	r                = offered_shelter(n);
	legal.type       = ST(LEGAL_AID);
	legal.population = POP(WOMEN);
	req.id           = r->id;
	req.reason       = "a lawyer too";
	req.n_add_needs  = 1;
	req.add_needs    = add;
	assert_int_equal(update_as(n, C_REFERRER, &req, &u), HV_OK);
	assert_int_equal(u->n_needs, 2);
	assert_int_equal(u->needs[1]->index, 1);
	assert_int_equal(u->needs[1]->state, NS(OFFERED));
	assert_string_equal(u->needs[1]->service_id, "la-dh");
	assert_int_equal(held(n, "la-dh"), 1);
	free_msg(u);

	/* The legal-aid offer accepted: that need cannot be cancelled here. */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	haven__referral__v1__update_referral_request__init(&req);
	req.id             = r->id;
	req.reason         = "the shelter is not needed";
	req.n_cancel_needs = 1;
	req.cancel_needs   = cancel;
	assert_int_equal(update_as(n, C_REFERRER, &req, NULL), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "end a placement instead"));
	cancel[0] = 1;
	assert_int_equal(update_as(n, C_REFERRER, &req, &u), HV_OK);
	assert_int_equal(u->needs[1]->state, NS(CANCELLED));
	assert_int_equal(held(n, "la-dh"), 0);
	free_msg(u);
	cancel[0] = 7;
	assert_int_equal(update_as(n, C_REFERRER, &req, NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(errbuf, "has no need 7"));
	free_msg(r);
	check_invariant(n);
}

static void
expect_update(node *n, const UpdateReq *req, hv_status want, const char *msg)
{
	assert_int_equal(update_as(n, C_REFERRER, req, NULL), want);
	if (strstr(errbuf, msg) == NULL) {
		fail_msg("expected '%s' in '%s'", msg, errbuf);
	}
}

static void
test_update_bad_input(void **state)
{
	node                             *n   = *state;
	UpdateReq                         req = HAVEN__REFERRAL__V1__UPDATE_REFERRAL_REQUEST__INIT;
	char                             *bad[] = { "Atlantis" }, *ams[] = { "Amsterdam" };
	Haven__Referral__V1__NeedRequest  nr = HAVEN__REFERRAL__V1__NEED_REQUEST__INIT;
	Haven__Referral__V1__NeedRequest *add[8];
	Referral                         *r;

	add_services(n, std_services, N_STD);
	r      = offered_shelter(n);
	req.id = r->id;
	expect_update(n, &req, HV_INVALID_ARGUMENT, "reason is required");
	req.reason = "why";
	expect_update(n, &req, HV_INVALID_ARGUMENT, "nothing to change");
	req.urgency = 9;
	expect_update(n, &req, HV_INVALID_ARGUMENT, "urgency must be");
	req.urgency            = 0;
	req.n_excluded_regions = 1;
	req.excluded_regions   = bad;
	expect_update(n, &req, HV_INVALID_ARGUMENT, "only with set_excluded_regions");
	req.set_excluded_regions = true;
	expect_update(n, &req, HV_INVALID_ARGUMENT, "unknown region Atlantis");
	req.excluded_regions      = ams;
	req.set_preferred_regions = true;
	req.n_preferred_regions   = 1;
	req.preferred_regions     = ams;
	expect_update(n, &req, HV_INVALID_ARGUMENT, "both excluded and preferred");
	haven__referral__v1__update_referral_request__init(&req);
	req.id     = r->id;
	req.reason = "why";
	req.note   = "x";
	expect_update(n, &req, HV_INVALID_ARGUMENT, "only with set_note");
	req.note        = "";
	nr.type         = 999;
	add[0]          = &nr;
	req.n_add_needs = 1;
	req.add_needs   = add;
	expect_update(n, &req, HV_INVALID_ARGUMENT, "unknown service type");
	nr.type       = ST(SHELTER);
	nr.population = POP(WOMEN);
	for (int i = 0; i < 8; i++) {
		add[i] = &nr;
	}
	req.n_add_needs = 8; /* with the one it has: 9 */
	expect_update(n, &req, HV_FAILED_PRECONDITION, "at most 8 needs");
	req.n_add_needs = 0;
	req.urgency     = URG(PLANNED);
	req.id          = "ref-0000000000000000";
	/* Refused as another's referral would be: no oracle for which ids exist. */
	expect_update(n, &req, HV_PERMISSION_DENIED, "is not yours to see");
	req.id = "Jane Doe, born 1990";
	expect_update(n, &req, HV_PERMISSION_DENIED, "(not an id)");
	/* A closed referral changes no more. */
	assert_int_equal(cancel_as(n, C_REFERRER, r->id, 0), HV_OK);
	req.id = r->id;
	expect_update(n, &req, HV_FAILED_PRECONDITION, "is closed");
	free_msg(r);
	check_invariant(n);
}

/* ---- PauseNeed, ResumeNeed ------------------------------------------------------------------- */

/* A paused need holds no place and is not routed, even when places free; resumed, it is
 * routed at once. */
static void
test_pause_resume(void **state)
{
	node     *n = *state;
	Referral *r, *g;
	unsigned  routed = 0;

	add_services(n, std_services, N_STD);
	r = offered_shelter(n);
	assert_int_equal(pause_as(n, C_REFERRER, r->id, 0, HOLD(HOLD_OTHER), NULL),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(errbuf, "text is required"));
	assert_int_equal(pause_as(n, C_REFERRER, r->id, 0, 0, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(pause_as(n, C_REFERRER, r->id, 3, HOLD(SAFETY_REVIEW), NULL),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(pause_as(n, C_REFERRER2, r->id, 0, HOLD(SAFETY_REVIEW), NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(resume_as(n, C_REFERRER, r->id, 0), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "only a paused need is resumed"));

	assert_int_equal(pause_as(n, C_REFERRER, r->id, 0, HOLD(CLIENT_UNAVAILABLE), NULL), HV_OK);
	g = get_as(n, C_REFERRER, r->id);
	assert_int_equal(g->needs[0]->state, NS(ON_HOLD));
	assert_int_equal(g->needs[0]->hold_reason, HOLD(CLIENT_UNAVAILABLE));
	assert_true(has_event(g, "paused: client-unavailable"));
	free_msg(g);
	assert_int_equal(held(n, "sh-ams"), 0);
	check_invariant(n);
	/* Not routed by the background round nor by a second pause. */
	assert_int_equal(ref_route_waiting(n->rs, &routed), HV_OK);
	assert_int_equal(routed, 0);
	assert_int_equal(pause_as(n, C_REFERRER, r->id, 0, HOLD(SAFETY_REVIEW), NULL),
	    HV_FAILED_PRECONDITION);

	/* The coordinator of the region resumes it: offered again (the same shelter may be). */
	assert_int_equal(resume_as(n, C_COORD, r->id, 0), HV_OK);
	g = get_as(n, C_REFERRER, r->id);
	assert_int_equal(g->needs[0]->state, NS(OFFERED));
	assert_int_equal(g->needs[0]->hold_reason, 0);
	assert_true(has_event(g, "resumed"));
	assert_int_equal(held(n, g->needs[0]->service_id), 1);
	/* An accepted need is not paused. */
	assert_int_equal(offer_act(n, g->needs[0]->service_id[3] == 'a' ? C_PROV_A : C_PROV_B,
	                     M_ACCEPT, g->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	assert_int_equal(pause_as(n, C_REFERRER, r->id, 0, HOLD(CLIENT_UNDECIDED), NULL),
	    HV_FAILED_PRECONDITION);
	free_msg(g);
	free_msg(r);
	check_invariant(n);
}

/* ---- CancelReferral with placements ---------------------------------------------------------- */

static void
test_cancel_ends_placements(void **state)
{
	node                                    *n = *state;
	create_spec                              s = { .n_needs = 2,
		                             .needs = { { ST(SHELTER), 0, NULL, NULL }, { ST(LEGAL_AID), 0, NULL, NULL } } };
	Referral                                *r, *g;
	uint32_t                                 available, h, before;
	Haven__Referral__V1__ListOffersResponse *lo;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &s, &r), HV_OK);
	places(n, "sh-ams", &before, &h);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	assert_int_equal(placement(n, C_PROV_A, M_PLACED, r->needs[0]->offer_id, 0, NULL), HV_OK);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[1]->offer_id, 0, NULL, NULL),
	    HV_OK);
	places(n, "sh-ams", &available, &h);
	assert_int_equal(available, before - 1);

	assert_int_equal(cancel_as(n, C_REFERRER, r->id, 99), HV_INVALID_ARGUMENT);
	assert_int_equal(cancel_as(n, C_COORD_FAR, r->id, 0), HV_PERMISSION_DENIED);
	assert_int_equal(cancel_as(n, C_REFERRER, r->id, OUT(CLIENT_REFUSED)), HV_OK);
	g = get_as(n, C_REFERRER, r->id);
	assert_int_equal(g->needs[0]->state, NS(FAILED));
	assert_int_equal(g->needs[1]->state, NS(FAILED));
	assert_true(has_event(g, "ended: client-refused"));
	assert_true(g->closed_ms != 0);
	free_msg(g);
	/* The places came back. */
	places(n, "sh-ams", &available, &h);
	assert_int_equal(available, before);
	/* The provider is told: its offers show where the needs stand now. */
	lo = offers_of(n, C_PROV_A, false);
	for (size_t i = 0; i < lo->n_offers; i++) {
		if (strcmp(lo->offers[i]->referral_id, r->id) == 0) {
			assert_int_equal(lo->offers[i]->need_state, NS(FAILED));
		}
	}
	free_msg(lo);
	assert_int_equal(cancel_as(n, C_REFERRER, r->id, 0), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "no open need"));
	free_msg(r);
	check_invariant(n);
}

/* ---- ReassignNeed to a named service --------------------------------------------------------- */

static void
test_reassign_named(void **state)
{
	node                 *n       = *state;
	static const svc_spec extra[] = {
		{ "sh-full", C_PROV_B, ST(SHELTER), "Midden-Nederland", 0, "nl", 0, 0, NULL },
		{ "sh-men", C_PROV_B, ST(SHELTER), "Midden-Nederland", 2, "nl", 0, POP(MEN), NULL },
		{ "sh-mn", C_PROV_B, ST(SHELTER), "Midden-Nederland", 2, "nl", 0, 0, NULL },
	};
	create_spec s = { .n_needs = 1,
		.needs             = { { ST(SHELTER), 0, NULL, NULL } },
		.excluded          = { "Limburg" },
		.n_excluded        = 1 };
	Referral   *r, *g;

	add_services(n, std_services, N_STD);
	add_services(n, extra, 3);
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	/* Refused, each with its reason; nothing changes. */
	assert_int_equal(reassign_as(n, C_REFERRER, r->id, 0, "sh-nh"), HV_PERMISSION_DENIED);
	assert_int_equal(reassign_as(n, C_COORD, r->id, 0, "la-dh"), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "not of the need's type"));
	assert_int_equal(reassign_as(n, C_COORD, r->id, 0, "sh-lim"), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "region the referral excludes"));
	assert_int_equal(reassign_as(n, C_COORD, r->id, 0, "sh-full"), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "no free place"));
	assert_int_equal(reassign_as(n, C_COORD, r->id, 0, "sh-men"), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "population"));
	assert_int_equal(reassign_as(n, C_COORD, r->id, 0, "svc-nowhere"), HV_NOT_FOUND);
	assert_int_equal(reassign_as(n, C_COORD, r->id, 0, "no such id!"), HV_INVALID_ARGUMENT);
	assert_int_equal(held(n, "sh-ams"), 1);
	check_invariant(n);

	/* Named: the offer moves to sh-nh, a region further, and sh-ams's hold is released. */
	assert_int_equal(reassign_as(n, C_COORD, r->id, 0, "sh-nh"), HV_OK);
	g = get_as(n, C_REFERRER, r->id);
	assert_int_equal(g->needs[0]->state, NS(OFFERED));
	assert_string_equal(g->needs[0]->service_id, "sh-nh");
	free_msg(g);
	assert_int_equal(held(n, "sh-ams"), 0);
	assert_int_equal(held(n, "sh-nh"), 1);
	/* Once the consent is gone, no provider is named any more. */
	snprintf(withdrawn_subject, sizeof(withdrawn_subject), "%s", r->subject);
	assert_int_equal(reassign_as(n, C_NATIONAL, r->id, 0, "sh-mn"), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "no valid consent"));
	/* A service that was offered the need before (sh-ams, withdrawn by the reassign) is not
	 * named again. */
	withdrawn_subject[0] = '\0';
	assert_int_equal(reassign_as(n, C_NATIONAL, r->id, 0, "sh-ams"), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "declined it"));
	assert_int_equal(held(n, "sh-nh"), 1);
	withdrawn_subject[0] = '\0';
	free_msg(r);
	check_invariant(n);
}

/* ---- pages within the call's memory ---------------------------------------------------------- */

/* A page of ListReferrals is built in the call's arena: it ends early when half of it is used
 * (one page of all 120 would not fit: RESOURCE_EXHAUSTED), and the pages still list every
 * referral once. */
static void
test_list_pages_within_budget(void **state)
{
	node                                     *n = *state;
	Haven__Referral__V1__ListReferralsRequest l =
	    HAVEN__REFERRAL__V1__LIST_REFERRALS_REQUEST__INIT;
	Haven__Referral__V1__ListReferralsResponse *lr;
	char                                        token[128] = "";
	create_spec                                 s          = { .n_needs = 1,
		                                         .needs = { { ST(CASE_MANAGEMENT), 0, NULL, NULL } },
		                                         .note = "a note of some length, so that each referral takes room in the arena" };
	size_t                                      seen = 0, pages = 0;

	close_services(n, false);
	n->call_budget = 96 * 1024;
	open_services(n, false);
	for (int i = 0; i < 120; i++) {
		Referral *r = NULL;
		assert_int_equal(create(n, &s, &r), HV_OK);
		free_msg(r);
	}
	l.page_size = 200;
	do {
		lr           = NULL;
		l.page_token = token;
		assert_int_equal(call(n->ch[C_REFERRER], M_LIST, &l.base,
		                     &haven__referral__v1__list_referrals_response__descriptor, &lr,
		                     NULL),
		    HV_OK);
		seen += lr->n_referrals;
		pages++;
		snprintf(token, sizeof(token), "%s", lr->next_page_token);
		free_msg(lr);
	} while (token[0] != '\0');
	assert_int_equal(seen, 120);
	assert_true(pages > 1);
	check_invariant(n);
}

/* ---- races ------------------------------------------------------------------------------------
 */

typedef struct race {
	node       *r_n;
	const char *r_id;
	const char *r_offer;
	hv_status   r_st;
} race;

static void *
race_accept(void *arg)
{
	race *r = arg;

	r->r_st = offer_act(r->r_n, C_PROV_A, M_ACCEPT, r->r_offer, 0, NULL, NULL);
	return (NULL);
}

static void *
race_pause(void *arg)
{
	race *r = arg;

	r->r_st = pause_as(r->r_n, C_REFERRER, r->r_id, 0, HOLD(SAFETY_REVIEW), NULL);
	return (NULL);
}

static void *
race_exclude(void *arg)
{
	race     *r      = arg;
	UpdateReq req    = HAVEN__REFERRAL__V1__UPDATE_REFERRAL_REQUEST__INIT;
	char     *excl[] = { "Amsterdam" };

	req.id                   = (char *) r->r_id;
	req.reason               = "unsafe there now";
	req.set_excluded_regions = true;
	req.n_excluded_regions   = 1;
	req.excluded_regions     = excl;
	r->r_st                  = update_as(r->r_n, C_REFERRER, &req, NULL);
	return (NULL);
}

/* The provider accepts while the referrer pauses the need, or excludes the offer's region:
 * one order or the other, never both halves. A pause that comes second is refused (the need is
 * accepted); an exclusion that comes second leaves the placement (with an event). Either way
 * the place is held or taken exactly once, and the invariant holds. */
static void
test_edit_races_accept(void **state)
{
	node *n                  = *state;
	void *(*edits[])(void *) = { race_pause, race_exclude };

	add_services(n, std_services, N_STD);
	for (int round = 0; round < 20; round++) {
		Referral *r   = offered_shelter(n), *g;
		race      acc = { n, r->id, r->needs[0]->offer_id, HV_UNKNOWN };
		race      ed  = acc;
		pthread_t t[2];
		uint32_t  available, h;

		assert_int_equal(pthread_create(&t[0], NULL, race_accept, &acc), 0);
		assert_int_equal(pthread_create(&t[1], NULL, edits[round % 2], &ed), 0);
		pthread_join(t[0], NULL);
		pthread_join(t[1], NULL);
		g = get_as(n, C_REFERRER, r->id);
		if (acc.r_st == HV_OK) {
			/* Accepted first: a pause is refused, an exclusion keeps the placement. */
			assert_int_equal(g->needs[0]->state, NS(ACCEPTED));
			assert_int_equal(ed.r_st, round % 2 == 0 ? HV_FAILED_PRECONDITION : HV_OK);
		} else {
			/* The edit first: the offer was withdrawn, acceptance refused. */
			assert_int_equal(acc.r_st, HV_FAILED_PRECONDITION);
			assert_int_equal(ed.r_st, HV_OK);
			assert_int_not_equal(g->needs[0]->state, NS(ACCEPTED));
		}
		places(n, "sh-ams", &available, &h);
		assert_int_equal(h, 0); /* no open offer at sh-ams is left holding */
		free_msg(g);
		/* Close it, so the next round finds sh-ams's places again. */
		assert_int_equal(cancel_as(n, C_REFERRER, r->id, 0), HV_OK);
		free_msg(r);
		check_invariant(n);
	}
}

/* ---- audit of reads ---------------------------------------------------------------------------
 */

static void
test_reads_audited(void **state)
{
	node                                     *n = *state;
	Haven__Referral__V1__ListReferralsRequest l =
	    HAVEN__REFERRAL__V1__LIST_REFERRALS_REQUEST__INIT;
	Haven__Referral__V1__ListReferralsResponse *lr = NULL;
	Haven__Referral__V1__ListOffersResponse    *lo;
	Referral                                   *r;
	const char                                 *offer;

	add_services(n, std_services, N_STD);
	r     = offered_shelter(n);
	offer = r->needs[0]->offer_id;
	assert_int_equal(audited(n, r->subject, "coord-ams", M_GET, r->id), 0);
	free_msg(get_as(n, C_COORD, r->id));
	free_msg(get_as(n, C_COORD, r->id));
	assert_int_equal(audited(n, r->subject, "coord-ams", M_GET, r->id), 2);
	/* A refused read is no read of the record: nothing is shown, nothing audited as read. */
	assert_int_equal(get_status(n, C_COORD_FAR, r->id), HV_PERMISSION_DENIED);
	assert_int_equal(audited(n, r->subject, "coord-lim", M_GET, r->id), 0);
	/* Every referral on a page of ListReferrals, every offer on a page of ListOffers (under
	 * the offer's subject, though the provider never sees it). */
	assert_int_equal(call(n->ch[C_REFERRER], M_LIST, &l.base,
	                     &haven__referral__v1__list_referrals_response__descriptor, &lr, NULL),
	    HV_OK);
	assert_int_equal(lr->n_referrals, 1);
	free_msg(lr);
	assert_int_equal(audited(n, r->subject, "ngo-ams", M_LIST, r->id), 1);
	lo = offers_of(n, C_PROV_A, true);
	assert_int_equal(lo->n_offers, 1);
	free_msg(lo);
	assert_int_equal(audited(n, r->subject, "shelter-a", M_OFFERS, offer), 1);
	/* The provider's view after acceptance: audited as a read too. */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, offer, 0, NULL, NULL), HV_OK);
	free_msg(get_as(n, C_PROV_A, r->id));
	assert_int_equal(audited(n, r->subject, "shelter-a", M_GET, r->id), 1);
	free_msg(r);
	check_invariant(n);
}

static hv_status
stats_as(node *n, int who, const char *period, char **regions, size_t nregions)
{
	Haven__Referral__V1__StatisticsRequest req = HAVEN__REFERRAL__V1__STATISTICS_REQUEST__INIT;

	req.period    = (char *) period;
	req.regions   = regions;
	req.n_regions = nregions;
	return (call(n->ch[who], M_STATS, &req.base,
	    &haven__referral__v1__statistics_response__descriptor, NULL, NULL));
}

/* A statistics query is audited like a read: who asked, for which organisation, and the
 * query (period and regions) as the purpose, never a subject; a refused query is no read. */
static void
test_statistics_audited(void **state)
{
	node *n     = *state;
	char *two[] = { "Amsterdam", "Den Haag" };
	char *all[] = { "Noord-Nederland", "Oost-Nederland", "Midden-Nederland", "Noord-Holland",
		"Amsterdam", "Den Haag", "Rotterdam", "Zeeland-West-Brabant", "Oost-Brabant",
		"Limburg" };

	add_services(n, std_services, N_STD);
	free_msg(offered_shelter(n)); /* something to count */
	assert_int_equal(stats_as(n, C_MUNI, "2023-10", NULL, 0), HV_OK);
	assert_int_equal(audited(n, NULL, "city-ams", M_STATS, "statistics 2023-10 all"), 1);
	assert_int_equal(stats_as(n, C_COORD, "2023-10", two, 2), HV_OK);
	assert_int_equal(audited(n, NULL, "coord-ams", M_STATS,
	                     "statistics 2023-10 Amsterdam,Den Haag"),
	    1);
	/* Ten names do not fit an entry's purpose: the regions as the mask of the map's indices. */
	assert_int_equal(stats_as(n, C_MUNI, "2023-10", all, 10), HV_OK);
	assert_int_equal(audited(n, NULL, "city-ams", M_STATS, "statistics 2023-10 regions 0x3ff"),
	    1);
	/* Refused (no such month, a region not in the map): nothing was read, nothing audited. */
	assert_int_equal(stats_as(n, C_MUNI, "2023-13", NULL, 0), HV_INVALID_ARGUMENT);
	assert_int_equal(audited(n, NULL, "city-ams", M_STATS, "statistics 2023-13 all"), 0);
	two[1] = "Atlantis";
	assert_int_not_equal(stats_as(n, C_COORD, "2023-09", two, 2), HV_OK);
	assert_int_equal(audited(n, NULL, "coord-ams", M_STATS,
	                     "statistics 2023-09 Amsterdam,Atlantis"),
	    0);
	check_invariant(n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_update_excludes_offer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_needs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_ends_placements, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reassign_named, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reads_audited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statistics_audited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_races_accept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_pages_within_budget, setup, teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
