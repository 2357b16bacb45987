/*
 * referral_it.c - referrals end to end over RPC: the real capacity and referral services on
 * one store, served over inproc:// with organisation tokens (a referrer, two providers, two
 * coordinators, a municipality), a consent hook over a small table, and a clock the tests
 * move. Every scenario of the issue: routing by region, exclusions and preferences, decline and
 * expiry moving on, acceptance turning a hold into a placement, the placement's end, cancel,
 * waiting needs routed when a place frees (by call and by notification), idempotent create,
 * bad input, races for the last place and for acceptance, a restart mid-offer, statistics
 * with small cells suppressed, and consent withdrawal. After each scenario the invariant is
 * checked: every service holds exactly as many places as it has open offers, never more than
 * it has available.
 */
#include "referral_node.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/protocol/pubsub0/pub.h>

#include "haven/clock.h"
#include "haven/log.h"

#include "haven/consent/v1/consent.pb-c.h"

/* ---- scenarios ------------------------------------------------------------------------------- */

static void
test_offered_to_nearest(void **state)
{
	node                                    *n = *state;
	create_spec                              s = { .n_needs = 2,
		                             .needs = { { ST(SHELTER), 0, "nl", NULL }, { ST(LEGAL_AID), 0, "en", NULL } } };
	Referral                                *r = NULL;
	Haven__Referral__V1__ListOffersResponse *lo;
	uint32_t                                 av, held;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_true(strncmp(r->id, "ref-", 4) == 0);
	assert_string_equal(r->home_region, "Amsterdam");
	assert_string_equal(r->referrer_org, "ngo-ams");
	assert_int_equal(r->n_needs, 2);
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	assert_string_equal(r->needs[0]->provider_org, "shelter-a");
	assert_int_equal(r->needs[1]->state, NS(OFFERED));
	assert_string_equal(r->needs[1]->service_id, "la-dh");
	assert_true(strncmp(r->needs[0]->offer_id, "off-", 4) == 0);
	/* The trail: referred (by the referrer) then offered (by the node) for each need. */
	assert_int_equal(r->n_events, 4);
	for (int i = 0; i < 2; i++) {
		assert_string_equal(r->events[i]->actor_org, "ngo-ams");
		assert_int_equal(r->events[i]->need_index, i);
		assert_int_equal(r->events[i]->to, NS(WAITING));
		assert_string_equal(r->events[2 + i]->actor_org, "");
		assert_int_equal(r->events[2 + i]->need_index, i);
		assert_int_equal(r->events[2 + i]->from, NS(WAITING));
		assert_int_equal(r->events[2 + i]->to, NS(OFFERED));
		assert_string_equal(r->events[2 + i]->offer_id, r->needs[i]->offer_id);
	}
	assert_int_equal(r->version, 4);
	assert_int_equal(atomic_load(&consent_calls) > 0, 1);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(av, 2);
	assert_int_equal(held, 1);

	/* The provider sees its open offers: what is needed, never who. */
	lo = offers_of(n, C_PROV_A, true);
	assert_int_equal(lo->n_offers, 2);
	for (size_t i = 0; i < lo->n_offers; i++) {
		assert_string_equal(lo->offers[i]->provider_org, "shelter-a");
		assert_int_equal(lo->offers[i]->state, OS(OFFER_OPEN));
		assert_int_equal(lo->offers[i]->urgency, URG(IMMEDIATE));
		assert_int_equal(lo->offers[i]->respond_by_ms,
		    lo->offers[i]->created_ms + 1800 * 1000);
	}
	free_msg(lo);
	lo = offers_of(n, C_PROV_B, false);
	assert_int_equal(lo->n_offers, 0);
	free_msg(lo);
	free_msg(r);
}

static void
test_excluded_and_preferred(void **state)
{
	node       *n = *state;
	create_spec s = one_shelter;
	Referral   *r = NULL;

	add_services(n, std_services, N_STD);
	/* Excluding the home region: the neighbour is next. */
	s.excluded[0] = "Amsterdam";
	s.n_excluded  = 1;
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-nh");
	free_msg(r);
	/* Excluding the neighbour as well: the rest of the country. */
	s.excluded[1] = "Noord-Holland";
	s.n_excluded  = 2;
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-lim");
	free_msg(r);
	/* A preferred region comes first, even far away. */
	s.n_excluded   = 0;
	s.preferred[0] = "Limburg";
	s.n_preferred  = 1;
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-lim");
	free_msg(r);
	/* Only excluded regions have room: the need waits. */
	{
		create_spec w = one_shelter;
		w.excluded[0] = "Amsterdam";
		w.excluded[1] = "Noord-Holland";
		w.excluded[2] = "Limburg";
		w.n_excluded  = 3;
		assert_int_equal(create(n, &w, &r), HV_OK);
		assert_int_equal(r->needs[0]->state, NS(WAITING));
		free_msg(r);
	}
}

static void
test_ranking_language_specialisation(void **state)
{
	node          *n      = *state;
	const svc_spec svcs[] = {
		{ "sh-1", C_PROV_A, ST(SHELTER), "Amsterdam", 1, "nl", 0, 0, NULL },
		{ "sh-2", C_PROV_A, ST(SHELTER), "Amsterdam", 1, "ro", 0, 0, NULL },
		{ "sh-3", C_PROV_A, ST(SHELTER), "Amsterdam", 1, "ro", SPEC_LABOUR, 0, NULL },
		{ "sh-4", C_PROV_A, ST(SHELTER), "Amsterdam", 1, "ro", SPEC_LABOUR, 0,
		    "wheelchair" },
		{ "sh-min", C_PROV_B, ST(SHELTER), "Amsterdam", 1, NULL, 0, POP(MINORS), NULL },
	};
	create_spec s = { .n_needs = 1, .needs = { { ST(SHELTER), 0, "ro", NULL } } };
	Referral   *r = NULL;

	add_services(n, svcs, sizeof(svcs) / sizeof(svcs[0]));
	/* Language and specialisation: sh-3 (sh-4 ties and loses on id). */
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-3");
	free_msg(r);
	/* Accessibility is a must: only sh-4. */
	s.needs[0].access = "wheelchair";
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-4");
	free_msg(r);
	/* Population is a must: minors only at sh-min. */
	s.needs[0].access = NULL;
	s.needs[0].pop    = POP(MINORS);
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-min");
	free_msg(r);
	/* Sexual exploitation: no specialist, so language decides: sh-2 (sh-1 lacks "ro"). */
	s.needs[0].pop = 0;
	s.exploitation = EX(SEXUAL);
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-2");
	free_msg(r);
}

/* A need naming a language: a speaker up to language_hops borders beyond a nearer
 * non-speaker is offered first (docs/referral.md's worked example). */
static void
test_language_reach(void **state)
{
	node          *n      = *state;
	const svc_spec svcs[] = {
		{ "sh-nl", C_PROV_A, ST(SHELTER), "Amsterdam", 3, "nl", 0, 0, NULL },
		{ "sh-ro-nh", C_PROV_B, ST(SHELTER), "Noord-Holland", 1, "ro", 0, 0, NULL },
		{ "sh-ro-nn", C_PROV_B, ST(SHELTER), "Noord-Nederland", 2, "ro", 0, 0, NULL },
	};
	create_spec ro = { .n_needs = 1, .needs = { { ST(SHELTER), 0, "ro", NULL } } };
	Referral   *r  = NULL;

	add_services(n, svcs, sizeof(svcs) / sizeof(svcs[0]));
	/* No language named: the nearest. */
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-nl");
	free_msg(r);
	/* Default 1 hop: the Romanian speaker one border away beats the Dutch one at home. */
	assert_int_equal(create(n, &ro, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ro-nh");
	free_msg(r);
	/* It is full now; the next speaker is two borders away: beyond the hop, home wins. */
	assert_int_equal(create(n, &ro, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-nl");
	free_msg(r);
	/* Configured to 2 hops: the speaker two borders away is offered. */
	close_services(n, false);
	n->lang_hops = 2;
	open_services(n, false);
	assert_int_equal(create(n, &ro, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ro-nn");
	free_msg(r);
	/* None: the nearer service first whatever it speaks. */
	close_services(n, false);
	n->lang_hops = REF_LANGUAGE_HOPS_NONE;
	open_services(n, false);
	assert_int_equal(create(n, &ro, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-nl");
	free_msg(r);
	check_invariant(n);
}

static void
test_decline_moves_on(void **state)
{
	node     *n = *state;
	Referral *r = NULL, *r2;
	Offer    *o = NULL;
	uint32_t  av, held;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	/* Another provider may not answer it. */
	assert_int_equal(offer_act(n, C_PROV_B, M_DECLINE, r->needs[0]->offer_id, 1, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_non_null(strstr(errbuf, "belongs to another provider"));
	/* A reason is required, and "other" needs text. */
	assert_int_equal(offer_act(n, C_PROV_A, M_DECLINE, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(offer_act(n, C_PROV_A, M_DECLINE, r->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__DECLINE_REASON__DECLINE_OTHER, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	/* Acknowledge, then decline: the hold goes back, the next candidate gets it. */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACK, r->needs[0]->offer_id, 0, NULL, &o), HV_OK);
	assert_true(o->acknowledged_ms > 0);
	free_msg(o);
	assert_int_equal(offer_act(n, C_PROV_A, M_DECLINE, r->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__DECLINE_REASON__UNSAFE, NULL, &o),
	    HV_OK);
	assert_int_equal(o->state, OS(OFFER_DECLINED));
	assert_int_equal(o->decline_reason, HAVEN__REFERRAL__V1__DECLINE_REASON__UNSAFE);
	free_msg(o);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(held, 0);
	r2 = get_as(n, C_REFERRER, r->id);
	assert_int_equal(r2->needs[0]->state, NS(OFFERED));
	assert_string_equal(r2->needs[0]->service_id, "sh-nh");
	assert_int_equal(r2->needs[0]->n_declined_services, 1);
	assert_string_equal(r2->needs[0]->declined_services[0], "sh-ams");
	/* Trail: referred, offered, acknowledged, declined (-> waiting), offered. */
	assert_int_equal(r2->n_events, 5);
	assert_string_equal(r2->events[2]->reason, "acknowledged");
	assert_string_equal(r2->events[3]->reason, "declined: unsafe");
	assert_string_equal(r2->events[3]->actor_org, "shelter-a");
	assert_int_equal(r2->events[3]->to, NS(WAITING));
	assert_int_equal(r2->events[4]->to, NS(OFFERED));
	places(n, "sh-nh", &av, &held);
	assert_int_equal(held, 1);
	/* The declined offer cannot be answered again. */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	free_msg(r2);
	free_msg(r);
}

static void
test_expiry_moves_on(void **state)
{
	node     *n = *state;
	Referral *r = NULL, *r2;
	unsigned  expired;
	uint32_t  av, held;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	/* Not yet. */
	advance(1799 * 1000);
	assert_int_equal(ref_expire_offers(n->rs, &expired), HV_OK);
	assert_int_equal(expired, 0);
	advance(1000);
	/* Past respond-by, before expiry ran: answering is refused already. */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "expired at"));
	assert_int_equal(ref_expire_offers(n->rs, &expired), HV_OK);
	assert_int_equal(expired, 1);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(held, 0);
	r2 = get_as(n, C_REFERRER, r->id);
	assert_int_equal(r2->needs[0]->state, NS(OFFERED));
	assert_string_equal(r2->needs[0]->service_id, "sh-nh");
	assert_string_equal(r2->events[2]->reason, "offer expired");
	assert_string_equal(r2->events[2]->actor_org, "");
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "expired"));
	/* Urgent offers have 4 hours. */
	{
		Haven__Referral__V1__ListOffersResponse *lo;
		create_spec                              s = one_shelter;
		Referral                                *u = NULL;
		s.urgency                                  = URG(URGENT);
		assert_int_equal(create(n, &s, &u), HV_OK);
		lo = offers_of(n, C_PROV_A, true);
		assert_int_equal(lo->n_offers, 1);
		assert_int_equal(lo->offers[0]->respond_by_ms - lo->offers[0]->created_ms,
		    14400 * 1000);
		free_msg(lo);
		free_msg(u);
	}
	free_msg(r2);
	free_msg(r);
}

static void
test_accept_place_complete(void **state)
{
	node      *n = *state;
	Referral  *r = NULL, *r2;
	Offer     *o = NULL;
	uint32_t   av, held;
	store_txn *txn;
	bool       yes;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	/* Not placed before accepted. */
	assert_int_equal(placement(n, C_PROV_A, M_PLACED, r->needs[0]->offer_id, 0, NULL),
	    HV_FAILED_PRECONDITION);
	/* Before it accepts, a provider does not see whom the offer is for. */
	assert_int_equal(get_status(n, C_PROV_A, r->id), HV_PERMISSION_DENIED);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, &o),
	    HV_OK);
	/* After: whom it takes in and from whom, the need it accepted, nothing else. */
	r2 = get_as(n, C_PROV_A, r->id);
	assert_string_equal(r2->subject, SUBJECT_OK);
	assert_string_equal(r2->referrer_org, "ngo-ams");
	assert_int_equal(r2->urgency, r->urgency);
	assert_int_equal(r2->n_needs, 1);
	assert_int_equal(r2->needs[0]->state, NS(ACCEPTED));
	assert_int_equal(r2->n_events, 0);
	assert_int_equal(r2->n_excluded_regions, 0);
	assert_string_equal(r2->note, "");
	free_msg(r2);
	assert_int_equal(get_status(n, C_PROV_B, r->id), HV_PERMISSION_DENIED);
	assert_int_equal(o->state, OS(OFFER_ACCEPTED));
	assert_int_equal(o->need_state, NS(ACCEPTED));
	free_msg(o);
	/* The hold became a placement: one place fewer, none held. */
	places(n, "sh-ams", &av, &held);
	assert_int_equal(av, 1);
	assert_int_equal(held, 0);
	/* Twice is refused; the place is not taken twice. */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(av, 1);

	assert_int_equal(store_read_begin(n->st, &txn), HV_OK);
	assert_int_equal(ref_is_accepting_provider(n->rs, txn, SUBJECT_OK, "shelter-a", &yes),
	    HV_OK);
	assert_true(yes);
	assert_int_equal(ref_is_accepting_provider(n->rs, txn, SUBJECT_OK, "shelter-b", &yes),
	    HV_OK);
	assert_false(yes);
	store_read_end(txn);

	/* Completed only after placed. */
	assert_int_equal(placement(n, C_PROV_A, M_COMPLETE, r->needs[0]->offer_id, 0, NULL),
	    HV_FAILED_PRECONDITION);
	advance(3600 * 1000);
	assert_int_equal(placement(n, C_PROV_B, M_PLACED, r->needs[0]->offer_id, 0, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(placement(n, C_PROV_A, M_PLACED, r->needs[0]->offer_id, 0, NULL), HV_OK);
	assert_int_equal(placement(n, C_PROV_A, M_COMPLETE, r->needs[0]->offer_id, 0, NULL), HV_OK);
	r2 = get_as(n, C_REFERRER, r->id);
	assert_int_equal(r2->needs[0]->state, NS(COMPLETED));
	assert_int_equal(r2->needs[0]->placed_ms - r2->created_ms, 3600 * 1000);
	assert_int_equal(r2->events[r2->n_events - 1]->to, NS(COMPLETED));
	assert_int_equal(r2->events[r2->n_events - 2]->to, NS(PLACED));
	assert_int_equal(r2->events[r2->n_events - 3]->to, NS(ACCEPTED));
	assert_string_equal(r2->events[r2->n_events - 3]->actor_org, "shelter-a");
	assert_int_equal(store_read_begin(n->st, &txn), HV_OK);
	assert_int_equal(ref_is_accepting_provider(n->rs, txn, SUBJECT_OK, "shelter-a", &yes),
	    HV_OK);
	assert_false(yes);
	store_read_end(txn);
	/* She left: the provider's view ends, and the bed is back. */
	assert_int_equal(get_status(n, C_PROV_A, r->id), HV_PERMISSION_DENIED);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(av, 2);
	assert_int_equal(held, 0);
	free_msg(r2);
	free_msg(r);
}

/* Beds come back: a placement occupies its place until it completes or ends, and the need
 * waiting for a bed takes it at once; a shelter says "one bed freed" or "one taken" in one
 * step, also while a place is held. */
static void
test_places_come_back(void **state)
{
	node          *n         = *state;
	const svc_spec one_bed[] = { { "bed-1", C_PROV_A, ST(MEDICAL), "Amsterdam", 1, NULL, 0, 0,
	    NULL } };
	create_spec    s         = { .n_needs = 1, .needs = { { ST(MEDICAL), 0, NULL, NULL } } };
	Referral      *a = NULL, *b = NULL, *x;
	uint32_t       av, held;
	unsigned       routed;

	add_services(n, one_bed, 1);
	assert_int_equal(create(n, &s, &a), HV_OK);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, a->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	assert_int_equal(placement(n, C_PROV_A, M_PLACED, a->needs[0]->offer_id, 0, NULL), HV_OK);
	/* The only bed is occupied: the next need waits. */
	assert_int_equal(create(n, &s, &b), HV_OK);
	assert_int_equal(b->needs[0]->state, NS(WAITING));
	/* The placement ends: the bed is back, and the waiting need is offered it. */
	assert_int_equal(placement(n, C_PROV_A, M_END, a->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__OUTCOME__NO_LONGER_NEEDED, NULL),
	    HV_OK);
	places(n, "bed-1", &av, &held);
	assert_int_equal(av, 1);
	assert_int_equal(ref_route_waiting(n->rs, &routed), HV_OK);
	assert_int_equal(routed, 1);
	x = get_as(n, C_REFERRER, b->id);
	assert_int_equal(x->needs[0]->state, NS(OFFERED));
	assert_string_equal(x->needs[0]->service_id, "bed-1");
	free_msg(x);
	places(n, "bed-1", &av, &held);
	assert_int_equal(av, 1);
	assert_int_equal(held, 1);
	/* Ending it once more frees nothing twice. */
	assert_int_equal(placement(n, C_PROV_A, M_END, a->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__OUTCOME__NO_LONGER_NEEDED, NULL),
	    HV_FAILED_PRECONDITION);
	places(n, "bed-1", &av, &held);
	assert_int_equal(av, 1);
	free_msg(a);
	free_msg(b);
}

static void
test_end_with_outcome(void **state)
{
	node     *n = *state;
	Referral *r = NULL, *r2;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	/* Not before accepted. */
	assert_int_equal(placement(n, C_PROV_A, M_END, r->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__OUTCOME__CLIENT_REFUSED, NULL),
	    HV_FAILED_PRECONDITION);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	/* An outcome is required; "other" needs text. */
	assert_int_equal(placement(n, C_PROV_A, M_END, r->needs[0]->offer_id, 0, NULL),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(placement(n, C_PROV_A, M_END, r->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__OUTCOME__OUTCOME_OTHER, NULL),
	    HV_INVALID_ARGUMENT);
	/* Another referrer may not end it; the referrer may ("unable to contact provider"). */
	assert_int_equal(placement(n, C_REFERRER2, M_END, r->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__OUTCOME__UNABLE_TO_CONTACT_PROVIDER, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(placement(n, C_REFERRER, M_END, r->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__OUTCOME__UNABLE_TO_CONTACT_PROVIDER, "no answer"),
	    HV_OK);
	r2 = get_as(n, C_REFERRER, r->id);
	assert_int_equal(r2->needs[0]->state, NS(FAILED));
	assert_string_equal(r2->events[r2->n_events - 1]->reason,
	    "ended: unable-to-contact-provider: no answer");
	free_msg(r2);
	/* Ended is ended. */
	assert_int_equal(placement(n, C_PROV_A, M_PLACED, r->needs[0]->offer_id, 0, NULL),
	    HV_FAILED_PRECONDITION);
	free_msg(r);
}

static void
test_cancel_releases_holds(void **state)
{
	node                                      *n = *state;
	create_spec                                s = { .n_needs = 2,
		                               .needs = { { ST(SHELTER), 0, NULL, NULL }, { ST(MEDICAL), 0, NULL, NULL } } };
	Haven__Referral__V1__CancelReferralRequest req =
	    HAVEN__REFERRAL__V1__CANCEL_REFERRAL_REQUEST__INIT;
	Referral                                *r = NULL, *r2 = NULL;
	uint32_t                                 av, held;
	Haven__Referral__V1__ListOffersResponse *lo;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	assert_int_equal(r->needs[1]->state, NS(WAITING)); /* no medical service */
	req.id = r->id;
	assert_int_equal(call(n->ch[C_COORD], M_CANCEL, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_INVALID_ARGUMENT); /* no reason */
	req.reason = "duplicate";
	assert_int_equal(call(n->ch[C_REFERRER2], M_CANCEL, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(n->ch[C_COORD_FAR], M_CANCEL, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(n->ch[C_PROV_A], M_CANCEL, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	/* The coordinator of the home region may. */
	assert_int_equal(call(n->ch[C_COORD], M_CANCEL, &req.base,
	                     &haven__referral__v1__referral__descriptor, &r2, NULL),
	    HV_OK);
	assert_int_equal(r2->needs[0]->state, NS(CANCELLED));
	assert_int_equal(r2->needs[1]->state, NS(CANCELLED));
	assert_string_equal(r2->events[r2->n_events - 1]->reason, "cancelled: duplicate");
	assert_string_equal(r2->events[r2->n_events - 1]->actor_org, "coord-ams");
	free_msg(r2);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(held, 0);
	assert_int_equal(av, 2);
	lo = offers_of(n, C_PROV_A, false);
	assert_int_equal(lo->n_offers, 1);
	assert_int_equal(lo->offers[0]->state, OS(OFFER_WITHDRAWN));
	free_msg(lo);
	/* Nothing left to cancel; and a withdrawn offer cannot be accepted. */
	assert_int_equal(call(n->ch[C_REFERRER], M_CANCEL, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	/* A cancelled need is no unmet demand: nothing routes it. */
	{
		const svc_spec med[] = { { "med-1", C_PROV_A, ST(MEDICAL), "Amsterdam", 1, NULL, 0,
		    0, NULL } };
		unsigned       routed;
		add_services(n, med, 1);
		assert_int_equal(ref_route_waiting(n->rs, &routed), HV_OK);
		assert_int_equal(routed, 0);
	}
	free_msg(r);
}

/* A decline for no room is not for good: the service shows no free place until its provider
 * reports room, and then the need is offered there again. Not eligible or unsafe are for good
 * (test_decline_moves_on). */
static void
test_decline_no_room(void **state)
{
	node     *n = *state;
	Referral *r = NULL, *x;
	uint32_t  av, held;
	unsigned  routed;
	const int room = HAVEN__REFERRAL__V1__DECLINE_REASON__NO_CAPACITY;
	Haven__Capacity__V1__ChangeAvailabilityRequest more =
	    HAVEN__CAPACITY__V1__CHANGE_AVAILABILITY_REQUEST__INIT;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	assert_int_equal(offer_act(n, C_PROV_A, M_DECLINE, r->needs[0]->offer_id, room, NULL, NULL),
	    HV_OK);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(av, 0); /* its figure said 2: there is no room */
	x = get_as(n, C_REFERRER, r->id);
	assert_int_equal(x->needs[0]->n_declined_services, 0);
	assert_string_equal(x->needs[0]->service_id, "sh-nh");
	assert_int_equal(offer_act(n, C_PROV_B, M_DECLINE, x->needs[0]->offer_id, room, NULL, NULL),
	    HV_OK);
	free_msg(x);
	x = get_as(n, C_REFERRER, r->id);
	assert_string_equal(x->needs[0]->service_id, "sh-lim");
	assert_int_equal(offer_act(n, C_PROV_B, M_DECLINE, x->needs[0]->offer_id, room, NULL, NULL),
	    HV_OK);
	free_msg(x);
	x = get_as(n, C_REFERRER, r->id);
	assert_int_equal(x->needs[0]->state, NS(WAITING));
	free_msg(x);
	/* A bed freed in Amsterdam: the need is offered there again. */
	more.service_id = "sh-ams";
	more.delta      = 1;
	assert_int_equal(call(n->ch[C_PROV_A], "haven.capacity.v1.Capacity/ChangeAvailability",
	                     &more.base, &haven__capacity__v1__service_view__descriptor, NULL,
	                     NULL),
	    HV_OK);
	assert_int_equal(ref_route_waiting(n->rs, &routed), HV_OK);
	assert_int_equal(routed, 1);
	x = get_as(n, C_REFERRER, r->id);
	assert_int_equal(x->needs[0]->state, NS(OFFERED));
	assert_string_equal(x->needs[0]->service_id, "sh-ams");
	free_msg(x);
	free_msg(r);
}

static void
test_waiting_then_routed(void **state)
{
	node          *n = *state;
	create_spec    s = { .n_needs = 1, .needs = { { ST(MENTAL_HEALTH), 0, NULL, NULL } } };
	Referral      *r = NULL, *r2;
	unsigned       routed;
	const svc_spec mh[] = { { "mh-1", C_PROV_B, ST(MENTAL_HEALTH), "Limburg", 1, NULL, 0, 0,
	    NULL } };

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(WAITING));
	assert_true(r->needs[0]->waiting_since_ms > 0);
	assert_int_equal(ref_route_waiting(n->rs, &routed), HV_OK);
	assert_int_equal(routed, 0);
	/* A place of its kind appears: the need is offered. */
	add_services(n, mh, 1);
	assert_int_equal(ref_route_waiting(n->rs, &routed), HV_OK);
	assert_int_equal(routed, 1);
	r2 = get_as(n, C_REFERRER, r->id);
	assert_int_equal(r2->needs[0]->state, NS(OFFERED));
	assert_string_equal(r2->needs[0]->service_id, "mh-1");
	free_msg(r2);
	free_msg(r);
}

/* The most urgent, then the oldest waiting need gets the first place that frees. */
static void
test_waiting_order(void **state)
{
	node          *n       = *state;
	create_spec    planned = { .urgency = URG(PLANNED),
		   .n_needs                 = 1,
		   .needs                   = { { ST(MEDICAL), 0, NULL, NULL } } };
	create_spec    now     = planned;
	Referral      *a = NULL, *b = NULL, *c = NULL, *x;
	unsigned       routed;
	const svc_spec med[] = { { "med-1", C_PROV_A, ST(MEDICAL), "Amsterdam", 1, NULL, 0, 0,
	    NULL } };

	now.urgency = URG(IMMEDIATE);
	assert_int_equal(create(n, &planned, &a), HV_OK);
	advance(1000);
	assert_int_equal(create(n, &now, &b), HV_OK);
	advance(1000);
	assert_int_equal(create(n, &now, &c), HV_OK);
	add_services(n, med, 1);
	assert_int_equal(ref_route_waiting(n->rs, &routed), HV_OK);
	assert_int_equal(routed, 1);
	x = get_as(n, C_REFERRER, b->id);
	assert_int_equal(x->needs[0]->state, NS(OFFERED));
	free_msg(x);
	x = get_as(n, C_REFERRER, a->id);
	assert_int_equal(x->needs[0]->state, NS(WAITING));
	free_msg(x);
	x = get_as(n, C_REFERRER, c->id);
	assert_int_equal(x->needs[0]->state, NS(WAITING));
	free_msg(x);
	free_msg(a);
	free_msg(b);
	free_msg(c);
}

/* With the background thread and capacity's notifications: a provider reports a free place
 * and the waiting need is offered without anyone calling ref_route_waiting. */
static void
test_waiting_routed_on_notification(void **state)
{
	node          *n      = *state;
	const svc_spec full[] = { { "sh-full", C_PROV_A, ST(SHELTER), "Amsterdam", 0, NULL, 0, 0,
	    NULL } };
	Referral      *r = NULL, *r2 = NULL;
	Haven__Capacity__V1__UpdateAvailabilityRequest req =
	    HAVEN__CAPACITY__V1__UPDATE_AVAILABILITY_REQUEST__INIT;
	store_txn                    *txn;
	Haven__Capacity__V1__Service *svc = NULL;
	int                           i;

	add_services(n, full, 1);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(WAITING));
	usleep(100 * 1000); /* the subscription is connected and the first round done */
	assert_int_equal(store_read_begin(n->st, &txn), HV_OK);
	assert_int_equal(cap_get_service(n->cs, txn, "sh-full", &svc), HV_OK);
	store_read_end(txn);
	req.service_id       = "sh-full";
	req.available        = 1;
	req.based_on_version = svc->version;
	haven__capacity__v1__service__free_unpacked(svc, NULL);
	assert_int_equal(call(n->ch[C_PROV_A], M_AVAIL, &req.base,
	                     &haven__capacity__v1__service_view__descriptor, NULL, NULL),
	    HV_OK);
	/* Well before the periodic round (5 s). */
	for (i = 0; i < 200; i++) {
		r2 = get_as(n, C_REFERRER, r->id);
		if (r2->needs[0]->state == NS(OFFERED)) {
			break;
		}
		free_msg(r2);
		r2 = NULL;
		usleep(10 * 1000);
	}
	assert_non_null(r2);
	assert_string_equal(r2->needs[0]->service_id, "sh-full");
	free_msg(r2);
	free_msg(r);
}

/* Fails unless the audit log holds an entry of CreateReferral about subject with purpose (the
 * consent purpose, or the referral read) and result. */
static void
expect_create_audited(node *n, const char *subject, const char *purpose, hv_status result)
{
	audit_entry *e = calloc(AUDIT_LIST_MAX, sizeof(*e));
	store_txn   *txn;
	size_t       got   = 0;
	bool         found = false;

	assert_non_null(e);
	assert_int_equal(store_read_begin(n->st, &txn), HV_OK);
	assert_int_equal(audit_list(n->audit, txn, subject, 0, e, AUDIT_LIST_MAX, &got), HV_OK);
	store_read_end(txn);
	for (size_t i = 0; i < got && !found; i++) {
		found = strcmp(e[i].method, "haven.referral.v1.Referrals/CreateReferral") == 0 &&
		    e[i].result == (int32_t) result && strcmp(e[i].purpose, purpose) == 0;
	}
	free(e);
	if (!found) {
		fail_msg("no audit entry of CreateReferral for %s, %s, %s (%zu entries)", subject,
		    purpose, hv_status_name(result), got);
	}
}

static void
test_idempotent_create(void **state)
{
	node     *n = *state;
	Referral *a = NULL, *b = NULL, *c = NULL;
	uint32_t  av, held;

	add_services(n, std_services, N_STD);
	assert_int_equal(create_as(n, C_REFERRER, &one_shelter, "retry-1", &a), HV_OK);
	assert_int_equal(create_as(n, C_REFERRER, &one_shelter, "retry-1", &b), HV_OK);
	assert_string_equal(a->id, b->id);
	assert_int_equal(b->version, a->version);
	expect_create_audited(n, a->subject, a->id, HV_OK); /* the retry read the referral */
	places(n, "sh-ams", &av, &held);
	assert_int_equal(held, 1); /* routed once */
	/* Another key is another referral; the same key of another referrer too. */
	assert_int_equal(create_as(n, C_REFERRER, &one_shelter, "retry-2", &c), HV_OK);
	assert_string_not_equal(a->id, c->id);
	free_msg(c);
	assert_int_equal(create_as(n, C_REFERRER2, &one_shelter, "retry-1", &c), HV_OK);
	assert_string_not_equal(a->id, c->id);
	assert_string_equal(c->home_region, "Rotterdam");
	free_msg(c);
	/* Without a key it is refused. */
	{
		Haven__Referral__V1__CreateReferralRequest req =
		    HAVEN__REFERRAL__V1__CREATE_REFERRAL_REQUEST__INIT;
		assert_int_equal(call(n->ch[C_REFERRER], M_CREATE, &req.base,
		                     &haven__referral__v1__referral__descriptor, NULL, NULL),
		    HV_INVALID_ARGUMENT);
		assert_non_null(strstr(errbuf, "idempotency key"));
	}
	free_msg(a);
	free_msg(b);
}

static void
expect_create(node *n, int who, const create_spec *s, hv_status want, const char *msg)
{
	assert_int_equal(create_as(n, who, s, NULL, NULL), want);
	if (msg != NULL && strstr(errbuf, msg) == NULL) {
		fail_msg("expected '%s' in '%s'", msg, errbuf);
	}
}

static void
test_bad_input(void **state)
{
	node       *n = *state;
	create_spec s;
	char        note[600];

	add_services(n, std_services, N_STD);
	s         = one_shelter;
	s.subject = SUBJECT_NO;
	expect_create(n, C_REFERRER, &s, HV_FAILED_PRECONDITION,
	    "no valid consent for purpose referral for subject " SUBJECT_NO);
	/* The consent check's own entry went with the refused create's transaction: the refusal
	 * is audited apart, so that the subject's holder sees who asked about her. */
	expect_create_audited(n, SUBJECT_NO, "referral", HV_FAILED_PRECONDITION);
	s         = one_shelter;
	s.subject = "not-a-subject";
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "subject");
	s             = one_shelter;
	s.excluded[0] = "Atlantis";
	s.n_excluded  = 1;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "unknown region Atlantis");
	s              = one_shelter;
	s.preferred[0] = "Gotham";
	s.n_preferred  = 1;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "unknown region Gotham");
	s = one_shelter;
	for (size_t i = 0; i < region_map_count(n->regions); i++) {
		s.excluded[i] = region_map_name(n->regions, i);
	}
	s.n_excluded = region_map_count(n->regions);
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "every region is excluded");
	s              = one_shelter;
	s.excluded[0]  = "Limburg";
	s.n_excluded   = 1;
	s.preferred[0] = "Limburg";
	s.n_preferred  = 1;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "both excluded and preferred");
	s         = one_shelter;
	s.n_needs = 0;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "1 to 8 needs");
	s         = one_shelter;
	s.n_needs = 9;
	for (int i = 0; i < 9; i++) {
		s.needs[i] = one_shelter.needs[0];
	}
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "1 to 8 needs");
	s               = one_shelter;
	s.needs[0].type = (Haven__Capacity__V1__ServiceType) 99;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "unknown service type 99");
	s              = one_shelter;
	s.needs[0].pop = (Haven__Capacity__V1__Population) 77;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "unknown population 77");
	s               = one_shelter;
	s.needs[0].lang = "x";
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "language");
	s         = one_shelter;
	s.urgency = (Haven__Referral__V1__Urgency) 9;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "urgency");
	s              = one_shelter;
	s.exploitation = (Haven__Referral__V1__Exploitation) 9;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "exploitation");
	memset(note, 'a', sizeof(note) - 1);
	note[sizeof(note) - 1] = '\0';
	s                      = one_shelter;
	s.note                 = note;
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "note");
	s      = one_shelter;
	s.note = "line\nbreak";
	expect_create(n, C_REFERRER, &s, HV_INVALID_ARGUMENT, "note");
	/* Roles: only referrers refer. */
	expect_create(n, C_PROV_A, &one_shelter, HV_PERMISSION_DENIED, NULL);
	expect_create(n, C_MUNI, &one_shelter, HV_PERMISSION_DENIED, NULL);
	expect_create(n, C_OPERATOR, &one_shelter, HV_PERMISSION_DENIED, NULL);
	/* Unknown ids: refused as another's would be (no oracle for which ids exist). */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, "off-0000000000000000", 0, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, "../etc", 0, NULL, NULL),
	    HV_PERMISSION_DENIED);
	{
		Haven__Referral__V1__GetReferralRequest req =
		    HAVEN__REFERRAL__V1__GET_REFERRAL_REQUEST__INIT;
		req.id = "ref-0000000000000000";
		assert_int_equal(call(n->ch[C_REFERRER], M_GET, &req.base,
		                     &haven__referral__v1__referral__descriptor, NULL, NULL),
		    HV_PERMISSION_DENIED);
	}
	/* Nothing of the refused calls was routed. */
	{
		uint32_t av, held;
		places(n, "sh-ams", &av, &held);
		assert_int_equal(held, 0);
	}
}

static void
test_visibility(void **state)
{
	node                                   *n = *state;
	Referral                               *r = NULL, *r2 = NULL;
	Haven__Referral__V1__GetReferralRequest g = HAVEN__REFERRAL__V1__GET_REFERRAL_REQUEST__INIT;
	Haven__Referral__V1__ListReferralsRequest l =
	    HAVEN__REFERRAL__V1__LIST_REFERRALS_REQUEST__INIT;
	Haven__Referral__V1__ListReferralsResponse *lr = NULL;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_int_equal(create_as(n, C_REFERRER2, &one_shelter, NULL, &r2), HV_OK);
	g.id = r->id;
	assert_int_equal(call(n->ch[C_REFERRER2], M_GET, &g.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(n->ch[C_COORD_FAR], M_GET, &g.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(n->ch[C_PROV_A], M_GET, &g.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(n->ch[C_MUNI], M_GET, &g.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	free_msg(get_as(n, C_COORD, r->id));
	free_msg(get_as(n, C_OPERATOR, r->id));
	/* A national coordinator: every region's. */
	free_msg(get_as(n, C_NATIONAL, r->id));
	free_msg(get_as(n, C_NATIONAL, r2->id));

	/* Lists: the referrer its own, the coordinator its region's, the operator all. */
	assert_int_equal(call(n->ch[C_REFERRER], M_LIST, &l.base,
	                     &haven__referral__v1__list_referrals_response__descriptor, &lr, NULL),
	    HV_OK);
	assert_int_equal(lr->n_referrals, 1);
	assert_string_equal(lr->referrals[0]->id, r->id);
	free_msg(lr);
	assert_int_equal(call(n->ch[C_COORD], M_LIST, &l.base,
	                     &haven__referral__v1__list_referrals_response__descriptor, &lr, NULL),
	    HV_OK);
	assert_int_equal(lr->n_referrals, 1);
	free_msg(lr);
	assert_int_equal(call(n->ch[C_COORD_FAR], M_LIST, &l.base,
	                     &haven__referral__v1__list_referrals_response__descriptor, &lr, NULL),
	    HV_OK);
	assert_int_equal(lr->n_referrals, 0);
	free_msg(lr);
	assert_int_equal(call(n->ch[C_OPERATOR], M_LIST, &l.base,
	                     &haven__referral__v1__list_referrals_response__descriptor, &lr, NULL),
	    HV_OK);
	assert_int_equal(lr->n_referrals, 2);
	free_msg(lr);
	assert_int_equal(call(n->ch[C_NATIONAL], M_LIST, &l.base,
	                     &haven__referral__v1__list_referrals_response__descriptor, &lr, NULL),
	    HV_OK);
	assert_int_equal(lr->n_referrals, 2);
	free_msg(lr);
	/* Paging: one at a time, newest first. */
	l.page_size = 1;
	assert_int_equal(call(n->ch[C_OPERATOR], M_LIST, &l.base,
	                     &haven__referral__v1__list_referrals_response__descriptor, &lr, NULL),
	    HV_OK);
	assert_int_equal(lr->n_referrals, 1);
	assert_true(lr->next_page_token[0] != '\0');
	{
		char                                        tok[128];
		Haven__Referral__V1__ListReferralsResponse *lr2 = NULL;
		snprintf(tok, sizeof(tok), "%s", lr->next_page_token);
		l.page_token = tok;
		assert_int_equal(call(n->ch[C_OPERATOR], M_LIST, &l.base,
		                     &haven__referral__v1__list_referrals_response__descriptor,
		                     &lr2, NULL),
		    HV_OK);
		assert_int_equal(lr2->n_referrals, 1);
		assert_string_not_equal(lr2->referrals[0]->id, lr->referrals[0]->id);
		free_msg(lr2);
		l.page_token = "garbage";
		assert_int_equal(call(n->ch[C_OPERATOR], M_LIST, &l.base,
		                     &haven__referral__v1__list_referrals_response__descriptor,
		                     NULL, NULL),
		    HV_INVALID_ARGUMENT);
	}
	free_msg(lr);
	/* --open: once the need is ended, the referral is not open. */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	assert_int_equal(placement(n, C_PROV_A, M_END, r->needs[0]->offer_id,
	                     HAVEN__REFERRAL__V1__OUTCOME__NO_LONGER_NEEDED, NULL),
	    HV_OK);
	l.page_token = "";
	l.page_size  = 0;
	l.open_only  = true;
	assert_int_equal(call(n->ch[C_REFERRER], M_LIST, &l.base,
	                     &haven__referral__v1__list_referrals_response__descriptor, &lr, NULL),
	    HV_OK);
	assert_int_equal(lr->n_referrals, 0);
	free_msg(lr);
	free_msg(r);
	free_msg(r2);
}

static void
test_reassign(void **state)
{
	node                                    *n = *state;
	Referral                                *r = NULL, *r2 = NULL;
	Haven__Referral__V1__ReassignNeedRequest req =
	    HAVEN__REFERRAL__V1__REASSIGN_NEED_REQUEST__INIT;
	uint32_t av, held;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	req.referral_id = r->id;
	req.need_index  = 0;
	req.reason      = "provider not answering the phone";
	assert_int_equal(call(n->ch[C_REFERRER], M_REASSIGN, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(n->ch[C_COORD_FAR], M_REASSIGN, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	req.need_index = 5;
	assert_int_equal(call(n->ch[C_COORD], M_REASSIGN, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	req.need_index = 0;
	assert_int_equal(call(n->ch[C_COORD], M_REASSIGN, &req.base,
	                     &haven__referral__v1__referral__descriptor, &r2, NULL),
	    HV_OK);
	assert_int_equal(r2->needs[0]->state, NS(OFFERED));
	assert_string_equal(r2->needs[0]->service_id, "sh-nh");
	places(n, "sh-ams", &av, &held);
	assert_int_equal(held, 0);
	free_msg(r2);
	free_msg(r);
}

typedef struct race_arg {
	node       *n;
	int         who;
	const char *offer;
	hv_status   st;
	Referral   *r;
} race_arg;

static void *
race_create(void *arg)
{
	race_arg *a = arg;

	a->st = create(a->n, &one_shelter, &a->r);
	return (NULL);
}

static void *
race_accept(void *arg)
{
	race_arg *a = arg;

	a->st = offer_act(a->n, a->who, M_ACCEPT, a->offer, 0, NULL, NULL);
	return (NULL);
}

static void
test_race_last_place(void **state)
{
	node          *n     = *state;
	const svc_spec one[] = { { "sh-last", C_PROV_A, ST(SHELTER), "Amsterdam", 1, NULL, 0, 0,
	    NULL } };
	race_arg       a[2]  = { { .n = n }, { .n = n } };
	pthread_t      t[2];
	uint32_t       av, held;
	int            offered = 0, waiting = 0;

	add_services(n, one, 1);
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 2; i++) {
			assert_int_equal(pthread_create(&t[i], NULL, race_create, &a[i]), 0);
		}
		for (int i = 0; i < 2; i++) {
			pthread_join(t[i], NULL);
			assert_int_equal(a[i].st, HV_OK);
			offered += a[i].r->needs[0]->state == NS(OFFERED);
			waiting += a[i].r->needs[0]->state == NS(WAITING);
		}
		places(n, "sh-last", &av, &held);
		assert_true(held <= av);
		if (round == 0) {
			/* Exactly one got the last place; the other waits. */
			assert_int_equal(offered, 1);
			assert_int_equal(waiting, 1);
			assert_int_equal(held, 1);
			/* Two providers racing: each may only accept its own offer. */
		}
		for (int i = 0; i < 2; i++) {
			free_msg(a[i].r);
			a[i].r = NULL;
		}
	}
	assert_int_equal(offered, 1);
	assert_int_equal(waiting, 9);
}

static void
test_race_accept(void **state)
{
	node          *n      = *state;
	const svc_spec svcs[] = {
		{ "sh-a", C_PROV_A, ST(SHELTER), "Amsterdam", 1, NULL, 0, 0, NULL },
		{ "sh-b", C_PROV_B, ST(SHELTER), "Amsterdam", 1, NULL, 0, 0, NULL },
	};
	Referral *ra = NULL, *rb = NULL;
	race_arg  a[2];
	pthread_t t[2];
	uint32_t  av, held;
	int       ok = 0;

	add_services(n, svcs, 2);
	assert_int_equal(create(n, &one_shelter, &ra), HV_OK);
	assert_int_equal(create(n, &one_shelter, &rb), HV_OK);
	assert_string_equal(ra->needs[0]->service_id, "sh-a");
	assert_string_equal(rb->needs[0]->service_id, "sh-b");
	/* Each provider tries the other's offer: refused. */
	assert_int_equal(offer_act(n, C_PROV_B, M_ACCEPT, ra->needs[0]->offer_id, 0, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, rb->needs[0]->offer_id, 0, NULL, NULL),
	    HV_PERMISSION_DENIED);
	/* Both accept their own at once: both succeed, each takes its own place. */
	a[0] = (race_arg) { n, C_PROV_A, ra->needs[0]->offer_id, HV_UNKNOWN, NULL };
	a[1] = (race_arg) { n, C_PROV_B, rb->needs[0]->offer_id, HV_UNKNOWN, NULL };
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_create(&t[i], NULL, race_accept, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].st, HV_OK);
	}
	places(n, "sh-a", &av, &held);
	assert_int_equal(av, 0);
	assert_int_equal(held, 0);
	/* The same offer accepted twice at once: exactly one wins, the place is taken once. */
	{
		const svc_spec more[] = { { "sh-c", C_PROV_A, ST(SHELTER), "Amsterdam", 2, NULL, 0,
		    0, NULL } };
		Referral      *rc     = NULL;
		add_services(n, more, 1);
		assert_int_equal(create(n, &one_shelter, &rc), HV_OK);
		a[0] = (race_arg) { n, C_PROV_A, rc->needs[0]->offer_id, HV_UNKNOWN, NULL };
		a[1] = a[0];
		for (int i = 0; i < 2; i++) {
			assert_int_equal(pthread_create(&t[i], NULL, race_accept, &a[i]), 0);
		}
		for (int i = 0; i < 2; i++) {
			pthread_join(t[i], NULL);
			ok += a[i].st == HV_OK;
			assert_true(a[i].st == HV_OK || a[i].st == HV_FAILED_PRECONDITION);
		}
		assert_int_equal(ok, 1);
		places(n, "sh-c", &av, &held);
		assert_int_equal(av, 1);
		assert_int_equal(held, 0);
		free_msg(rc);
	}
	free_msg(ra);
	free_msg(rb);
}

static void
test_restart_mid_offer(void **state)
{
	node     *n = *state;
	Referral *r = NULL, *r2;
	unsigned  expired;
	uint32_t  av, held;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_string_equal(r->needs[0]->service_id, "sh-ams");
	/* The whole process goes: services, server and store. */
	close_services(n, true);
	advance(1801 * 1000);
	open_services(n, true);
	/* The offer and its hold survived; its deadline passed while down. */
	places(n, "sh-ams", &av, &held);
	assert_int_equal(held, 1);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	assert_int_equal(ref_expire_offers(n->rs, &expired), HV_OK);
	assert_int_equal(expired, 1);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(held, 0);
	r2 = get_as(n, C_REFERRER, r->id);
	assert_int_equal(r2->needs[0]->state, NS(OFFERED));
	assert_string_equal(r2->needs[0]->service_id, "sh-nh");
	/* The new offer is answerable after another restart within its time. */
	close_services(n, true);
	advance(60 * 1000);
	open_services(n, true);
	assert_int_equal(ref_expire_offers(n->rs, &expired), HV_OK);
	assert_int_equal(expired, 0);
	assert_int_equal(offer_act(n, C_PROV_B, M_ACCEPT, r2->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	places(n, "sh-nh", &av, &held);
	assert_int_equal(av, 1);
	assert_int_equal(held, 0);
	free_msg(r2);
	free_msg(r);
}

/* capacity's expiry round, as its thread would run it */
typedef struct cap_exp {
	cap_service *cs;
	int64_t      now;
	unsigned     n;
} cap_exp;

static hv_status
cap_expire_fn(store_txn *txn, void *arg)
{
	cap_exp *ce = arg;

	return (cap_expire_holds(ce->cs, txn, ce->now, &ce->n));
}

/* Capacity's own expiry released the hold while the referral service was down: expiry of the
 * offer still ends it cleanly, and acceptance is refused. */
static void
test_hold_expired_by_capacity(void **state)
{
	node     *n = *state;
	Referral *r = NULL, *r2;
	cap_exp   ce;
	unsigned  expired;
	uint32_t  av, held;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	advance((1800 + 120 + 1) * 1000);
	ce = (cap_exp) { n->cs, atomic_load(&clock_ms), 0 };
	assert_int_equal(store_write(n->st, cap_expire_fn, &ce), HV_OK);
	assert_int_equal(ce.n, 1);
	places(n, "sh-ams", &av, &held);
	assert_int_equal(held, 0);
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	assert_int_equal(ref_expire_offers(n->rs, &expired), HV_OK);
	assert_int_equal(expired, 1);
	r2 = get_as(n, C_REFERRER, r->id);
	assert_int_equal(r2->needs[0]->state, NS(OFFERED));
	assert_string_equal(r2->needs[0]->service_id, "sh-nh");
	free_msg(r2);
	free_msg(r);
}

/* Week 2023-W46 (Europe/Amsterdam) ends at 2023-11-20 00:00 CET; the tests start on its
 * Tuesday, 1700000000000 (23:13 local). */
#define W46_END 1700434800000LL
#define SETTLE  (10 * 60 * 1000) /* answered this long after the end */

/* Statistics for period as who; the message of a refusal is in errbuf. */
static hv_status
stats_as(node *n, int who, const char *period, Haven__Referral__V1__StatisticsResponse **resp)
{
	Haven__Referral__V1__StatisticsRequest req = HAVEN__REFERRAL__V1__STATISTICS_REQUEST__INIT;

	req.period = (char *) period;
	return (call(n->ch[who], M_STATS, &req.base,
	    &haven__referral__v1__statistics_response__descriptor, resp, NULL));
}

/* By default a node answers months only: a week and the month around it, subtracted, would
 * show the days at the month's edge (one kind of period closes that). */
static void
test_statistics_one_kind(void **state)
{
	node *n = *state;

	close_services(n, true);
	n->stats_periods = 0; /* what a node gets without the option */
	open_services(n, true);
	assert_int_equal(stats_as(n, C_MUNI, "2023-W46", NULL), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "by calendar month only"));
	assert_int_equal(stats_as(n, C_MUNI, "2023-10", NULL), HV_OK);
	close_services(n, true);
	n->stats_periods = REF_PERIODS_WEEKS;
	open_services(n, true);
	assert_int_equal(stats_as(n, C_MUNI, "2023-10", NULL), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "by calendar ISO week only"));
	assert_int_equal(stats_as(n, C_MUNI, "2023-W41", NULL), HV_OK);
}

/* A region's total in an answer, or NULL. */
static const Haven__Referral__V1__StatisticsTotal *
stats_total(const Haven__Referral__V1__StatisticsResponse *resp, const char *region)
{
	for (size_t i = 0; i < resp->n_totals; i++) {
		if (strcmp(resp->totals[i]->region, region) == 0) {
			return (resp->totals[i]);
		}
	}
	return (NULL);
}

static void
advance_to(int64_t ms)
{
	int64_t now = atomic_load(&clock_ms);

	assert_true(ms >= now);
	advance(ms - now);
}

static void
test_statistics(void **state)
{
	node          *n     = *state;
	const svc_spec big[] = { { "sh-big", C_PROV_A, ST(SHELTER), "Amsterdam", 10, NULL, 0, 0,
	    NULL } };
	Haven__Referral__V1__StatisticsRequest req = HAVEN__REFERRAL__V1__STATISTICS_REQUEST__INIT;
	Haven__Referral__V1__StatisticsResponse    *resp = NULL;
	const Haven__Referral__V1__StatisticsTotal *tot;
	Referral                                   *r[6]         = { NULL };
	bool                                        seen_shelter = false, seen_legal = false;
	create_spec                                 planned = one_shelter;

	/* Six shelter needs of labour exploitation from Amsterdam; five placed after 1:07, 2:14,
	 * 3:21, 4:28 and 5:35 (planned: the offers are open for a day). */
	planned.urgency = URG(PLANNED);
	add_services(n, big, 1);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(create(n, &planned, &r[i]), HV_OK);
	}
	for (int i = 0; i < 5; i++) {
		advance((60 + 7) * 60 * 1000);
		assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r[i]->needs[0]->offer_id, 0, NULL,
		                     NULL),
		    HV_OK);
		assert_int_equal(placement(n, C_PROV_A, M_PLACED, r[i]->needs[0]->offer_id, 0,
		                     NULL),
		    HV_OK);
	}
	/* The sixth is accepted in the week, and placed after it (below). */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r[5]->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	/* Two legal-aid needs that wait (no legal aid anywhere). */
	{
		create_spec s = { .n_needs = 1, .needs = { { ST(LEGAL_AID), 0, NULL, NULL } } };
		for (int i = 0; i < 2; i++) {
			Referral *x = NULL;
			assert_int_equal(create(n, &s, &x), HV_OK);
			free_msg(x);
		}
	}
	/* Who may ask. */
	req.period = "2023-W46";
	assert_int_equal(call(n->ch[C_REFERRER], M_STATS, &req.base,
	                     &haven__referral__v1__statistics_response__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	assert_int_equal(call(n->ch[C_PROV_A], M_STATS, &req.base,
	                     &haven__referral__v1__statistics_response__descriptor, NULL, NULL),
	    HV_PERMISSION_DENIED);
	/* The week is not over: refused, whoever asks. */
	assert_int_equal(stats_as(n, C_MUNI, "2023-W46", NULL), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "period 2023-W46 has not ended"));
	assert_int_equal(stats_as(n, C_OPERATOR, "2023-11", NULL), HV_FAILED_PRECONDITION);
	advance_to(W46_END - 1);
	assert_int_equal(stats_as(n, C_MUNI, "2023-W46", NULL), HV_FAILED_PRECONDITION);
	advance_to(W46_END + SETTLE - 1);
	assert_int_equal(stats_as(n, C_MUNI, "2023-W46", NULL), HV_FAILED_PRECONDITION);
	assert_non_null(strstr(errbuf, "from 10 minutes after their end"));
	advance_to(W46_END + SETTLE);
	assert_int_equal(stats_as(n, C_MUNI, "2023-W46", &resp), HV_OK);
	assert_string_equal(resp->period, "2023-W46");
	assert_int_equal(resp->from_ms, W46_END - 7 * 86400000LL);
	assert_int_equal(resp->to_ms, W46_END);
	for (size_t i = 0; i < resp->n_cells; i++) {
		Haven__Referral__V1__StatisticsCell *c = resp->cells[i];
		assert_string_equal(c->region, "Amsterdam");
		assert_int_equal(c->exploitation, EX(LABOUR));
		if (c->type == ST(SHELTER)) {
			seen_shelter = true;
			assert_string_equal(c->referrals, "6");
			assert_string_equal(c->placements, "5");
			assert_string_equal(c->unmet, "0");
			/* Median 3:21, shown as 3 h; no p90 from 5 (it would be the 5:35). */
			assert_int_equal(c->median_ms_to_placement, 3 * 3600 * 1000);
			assert_int_equal(c->p90_ms_to_placement, 0);
		} else {
			assert_int_equal(c->type, ST(LEGAL_AID));
			seen_legal = true;
			/* "<5", and nothing more about those two people. */
			assert_string_equal(c->referrals, "<5");
			assert_string_equal(c->placements, "x");
			assert_string_equal(c->unmet, "x");
			assert_int_equal(c->median_ms_to_placement, 0);
		}
	}
	assert_true(seen_shelter && seen_legal);
	/* 8 referrals would tell the "<5" is 2: every total beside a count not shown is "x". */
	assert_int_equal(resp->n_totals, 1);
	assert_non_null(tot = stats_total(resp, "Amsterdam"));
	assert_string_equal(tot->referrals, "x");
	assert_string_equal(tot->placements, "x");
	assert_string_equal(tot->unmet, "x");
	free_msg(resp);
	/* Placed after the week: the week's answer does not change (as it was at its end), so
	 * answers asked on two days cannot be subtracted to date one person's placement. */
	advance(3600 * 1000);
	assert_int_equal(placement(n, C_PROV_A, M_PLACED, r[5]->needs[0]->offer_id, 0, NULL),
	    HV_OK);
	assert_int_equal(stats_as(n, C_MUNI, "2023-W46", &resp), HV_OK);
	assert_int_equal(resp->n_cells, 2);
	for (size_t i = 0; i < resp->n_cells; i++) {
		if (resp->cells[i]->type == ST(SHELTER)) {
			assert_string_equal(resp->cells[i]->placements, "5");
			assert_int_equal(resp->cells[i]->median_ms_to_placement, 3 * 3600 * 1000);
		}
	}
	free_msg(resp);
	/* The month holds the week: the same cells, and the sixth placement in November. */
	advance_to(1701385200000LL + SETTLE); /* 2023-12-01 00:10 CET */
	assert_int_equal(stats_as(n, C_COORD, "2023-11", &resp), HV_OK);
	assert_int_equal(resp->n_cells, 2);
	for (size_t i = 0; i < resp->n_cells; i++) {
		if (resp->cells[i]->type == ST(SHELTER)) {
			assert_string_equal(resp->cells[i]->placements, "6");
		}
	}
	free_msg(resp);
	/* A coordinator, for another region only: nothing. A period before: nothing. */
	req.n_regions = 1;
	req.regions   = (char *[]) { "Limburg" };
	assert_int_equal(call(n->ch[C_COORD], M_STATS, &req.base,
	                     &haven__referral__v1__statistics_response__descriptor, &resp, NULL),
	    HV_OK);
	assert_int_equal(resp->n_cells, 0);
	assert_int_equal(resp->n_totals, 0);
	free_msg(resp);
	req.n_regions = 0;
	req.period    = "2023-W45";
	assert_int_equal(call(n->ch[C_OPERATOR], M_STATS, &req.base,
	                     &haven__referral__v1__statistics_response__descriptor, &resp, NULL),
	    HV_OK);
	assert_int_equal(resp->n_cells, 0);
	free_msg(resp);
	req.regions   = (char *[]) { "Atlantis" };
	req.n_regions = 1;
	assert_int_equal(call(n->ch[C_OPERATOR], M_STATS, &req.base,
	                     &haven__referral__v1__statistics_response__descriptor, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	for (int i = 0; i < 6; i++) {
		free_msg(r[i]);
	}
}

/* Hole (9) of the authority model: a municipality narrowed ms windows around one referral
 * until the "<5" showed its time, region, form of exploitation and needs. No window but a
 * named, finished week or month is answered; the period's other cells are withheld as needed
 * so that the region's total does not tell the single referral either. */
static void
test_statistics_narrowing(void **state)
{
	node          *n     = *state;
	const svc_spec big[] = { { "sh-big", C_PROV_A, ST(SHELTER), "Amsterdam", 20, NULL, 0, 0,
	    NULL } };
	Haven__Referral__V1__StatisticsRequest req = HAVEN__REFERRAL__V1__STATISTICS_REQUEST__INIT;
	Haven__Referral__V1__StatisticsResponse    *resp = NULL;
	const Haven__Referral__V1__StatisticsTotal *tot;
	create_spec                                 shelter = one_shelter,
	            legal    = { .n_needs = 1, .needs = { { ST(LEGAL_AID), 0, NULL, NULL } } };
	create_spec target   = one_shelter;
	int64_t     t_target = 0;
	uint64_t    lo, hi;
	size_t      seen = 0;

	/* 6 legal-aid needs (waiting: no legal aid) and 9 shelter needs (offered) of labour
	 * exploitation, and the one referral of sexual exploitation (a shelter need), all from
	 * Amsterdam, in week 2023-W46. */
	shelter.urgency     = URG(PLANNED);
	legal.urgency       = URG(PLANNED);
	target.urgency      = URG(PLANNED);
	target.exploitation = EX(SEXUAL);
	add_services(n, big, 1);
	for (int i = 0; i < 15; i++) {
		Referral *x = NULL;
		advance(60 * 1000);
		assert_int_equal(create(n, i < 6 ? &legal : &shelter, &x), HV_OK);
		if (i == 7) {
			Referral *y = NULL;
			advance(1000);
			t_target = atomic_load(&clock_ms);
			assert_int_equal(create(n, &target, &y), HV_OK);
			free_msg(y);
		}
		free_msg(x);
	}
	advance_to(W46_END + SETTLE);
	/* The attack: windows halving around the referral. Every one refused, naming the rule;
	 * and a period name beside a window does not make the window count. */
	lo = (uint64_t) t_target - 3600 * 1000;
	hi = (uint64_t) t_target + 3600 * 1000;
	for (int step = 0; step < 24 && hi - lo > 1; step++) {
		uint64_t mid = lo + (hi - lo) / 2;

		req.from_ms = lo;
		req.to_ms   = mid;
		req.period  = step % 2 == 0 ? "" : "2023-W46";
		assert_int_equal(call(n->ch[C_MUNI], M_STATS, &req.base,
		                     &haven__referral__v1__statistics_response__descriptor, NULL,
		                     NULL),
		    HV_INVALID_ARGUMENT);
		assert_non_null(strstr(errbuf, "from_ms/to_ms windows are not accepted"));
		if ((uint64_t) t_target < mid) {
			hi = mid;
		} else {
			lo = mid;
		}
	}
	req.from_ms = 0;
	req.to_ms   = 1;
	assert_int_equal(call(n->ch[C_MUNI], M_STATS, &req.base,
	                     &haven__referral__v1__statistics_response__descriptor, NULL, NULL),
	    HV_INVALID_ARGUMENT);
	/* Bad period names: INVALID_ARGUMENT naming the problem. */
	assert_int_equal(stats_as(n, C_MUNI, "2023-13", NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(errbuf, "month must be 01..12"));
	assert_int_equal(stats_as(n, C_MUNI, "2023-W53", NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(errbuf, "2023 has 52 ISO weeks"));
	assert_int_equal(stats_as(n, C_MUNI, "", NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(errbuf, "period required"));
	assert_int_equal(stats_as(n, C_MUNI, "last week", NULL), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(errbuf, "is neither an ISO week"));

	/* The week: the single referral is "<5" and its placement and waiting are "x"; the 9 and
	 * 6 are shown; 16 would tell the "<5" is 1, so the total is "x". */
	assert_int_equal(stats_as(n, C_MUNI, "2023-W46", &resp), HV_OK);
	for (size_t i = 0; i < resp->n_cells; i++) {
		Haven__Referral__V1__StatisticsCell *c = resp->cells[i];

		assert_string_equal(c->region, "Amsterdam");
		if (c->exploitation == EX(SEXUAL)) {
			assert_int_equal(c->type, ST(SHELTER));
			assert_string_equal(c->referrals, "<5");
			assert_string_equal(c->placements, "x");
			assert_string_equal(c->unmet, "x");
			seen |= 1;
		} else if (c->type == ST(SHELTER)) {
			assert_string_equal(c->referrals, "9");
			assert_string_equal(c->unmet, "0");
			seen |= 2;
		} else {
			assert_int_equal(c->type, ST(LEGAL_AID));
			assert_string_equal(c->referrals, "6");
			assert_string_equal(c->unmet, "6");
			seen |= 4;
		}
	}
	assert_int_equal(seen, 7);
	assert_non_null(tot = stats_total(resp, "Amsterdam"));
	assert_string_equal(tot->referrals, "x");
	assert_string_equal(tot->placements, "x");
	assert_string_equal(tot->unmet, "x");
	free_msg(resp);
	/* Asked again, by a coordinator, for Amsterdam only: the same answer (nothing to
	 * subtract). */
	req.from_ms = req.to_ms = 0;
	req.period              = "2023-W46";
	req.n_regions           = 1;
	req.regions             = (char *[]) { "Amsterdam" };
	assert_int_equal(call(n->ch[C_COORD], M_STATS, &req.base,
	                     &haven__referral__v1__statistics_response__descriptor, &resp, NULL),
	    HV_OK);
	assert_int_equal(resp->n_cells, 3);
	assert_string_equal(resp->totals[0]->referrals, "x");
	free_msg(resp);
}

/* The shelter cell's referral count in an answer for period, or NULL without one. */
static const char *
stats_shelter(node *n, const char *period, hv_status want)
{
	Haven__Referral__V1__StatisticsResponse *resp = NULL;
	static char                              count[16];

	assert_int_equal(stats_as(n, C_MUNI, period, &resp), want);
	if (resp == NULL || resp->n_cells == 0) {
		free_msg(resp);
		return (NULL);
	}
	assert_int_equal(resp->n_cells, 1);
	assert_int_equal(resp->cells[0]->type, ST(SHELTER));
	snprintf(count, sizeof(count), "%s", resp->cells[0]->referrals);
	free_msg(resp);
	return (count);
}

/* Across the year: 2026 has 53 ISO weeks, and 2026-W53 runs from Monday 28 December 2026 to
 * Sunday 3 January 2027. Five referrals on 31 December and one on 2 January are all in
 * 2026-W53; the month splits them. */
static void
test_statistics_year_boundary(void **state)
{
	node       *n = *state;
	create_spec s = one_shelter;

	s.urgency = URG(PLANNED);
	advance_to(1798714800000LL); /* 2026-12-31 12:00 CET */
	for (int i = 0; i < 5; i++) {
		Referral *x = NULL;
		assert_int_equal(create(n, &s, &x), HV_OK);
		free_msg(x);
	}
	advance_to(1798887600000LL); /* 2027-01-02 12:00 CET */
	{
		Referral *x = NULL;
		assert_int_equal(create(n, &s, &x), HV_OK);
		free_msg(x);
	}
	assert_null(stats_shelter(n, "2026-W53", HV_FAILED_PRECONDITION));
	advance_to(1799017200000LL + SETTLE); /* 2027-01-04 00:10 CET */
	assert_string_equal(stats_shelter(n, "2026-W53", HV_OK), "6");
	assert_string_equal(stats_shelter(n, "2026-12", HV_OK), "5");
	assert_null(stats_shelter(n, "2026-W52", HV_OK));
	assert_null(stats_shelter(n, "2027-W01", HV_FAILED_PRECONDITION));
	assert_null(stats_shelter(n, "2027-01", HV_FAILED_PRECONDITION));
	assert_null(stats_shelter(n, "2027-W53", HV_INVALID_ARGUMENT));
	advance_to(1801436400000LL + SETTLE); /* 2027-02-01 00:10 CET */
	assert_null(stats_shelter(n, "2027-W01", HV_OK));
	assert_string_equal(stats_shelter(n, "2027-01", HV_OK), "<5");
}

static void
test_consent_withdrawn(void **state)
{
	node     *n = *state;
	Referral *r = NULL, *r2;
	unsigned  marked;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	assert_int_equal(ref_consent_withdrawn(n->rs, SUBJECT_OK, false, &marked), HV_OK);
	assert_int_equal(marked, 1);
	r2 = get_as(n, C_REFERRER, r->id);
	assert_string_equal(r2->events[r2->n_events - 1]->reason, "consent withdrawn");
	assert_int_equal(r2->events[r2->n_events - 1]->from, NS(OFFERED));
	assert_int_equal(r2->events[r2->n_events - 1]->to, NS(OFFERED));
	free_msg(r2);
	assert_int_equal(ref_consent_withdrawn(n->rs, SUBJECT_NO, false, &marked), HV_OK);
	assert_int_equal(marked, 0);
	free_msg(r);
}

/* Consent at every step: once no consent covers the referral, its open offers are withdrawn
 * (holds released), its waiting needs end, and nobody is offered the person again, by routing
 * or by a coordinator's reassign; a provider that already took her in keeps her, with an event. */
static void
test_consent_gone(void **state)
{
	node       *n   = *state;
	create_spec mh  = { .n_needs = 1, .needs = { { ST(MENTAL_HEALTH), 0, NULL, NULL } } };
	create_spec two = { .n_needs = 2,
		.needs = { { ST(SHELTER), 0, NULL, NULL }, { ST(LEGAL_AID), 0, NULL, NULL } } };
	Haven__Referral__V1__ReassignNeedRequest req =
	    HAVEN__REFERRAL__V1__REASSIGN_NEED_REQUEST__INIT;
	Referral *r = NULL, *w = NULL, *x;
	uint32_t  av, held;
	unsigned  marked, routed;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &two, &r), HV_OK);
	assert_int_equal(create(n, &mh, &w), HV_OK);
	assert_int_equal(w->needs[0]->state, NS(WAITING));
	/* The shelter takes her in; the legal aid offer is still open. */
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	places(n, "la-dh", &av, &held);
	assert_int_equal(held, 1);
	free_msg(get_as(n, C_PROV_A, r->id)); /* the shelter sees whom it takes in */

	snprintf(withdrawn_subject, sizeof(withdrawn_subject), "%s", SUBJECT_OK);
	/* From this moment the shelter no longer sees the referral. */
	assert_int_equal(get_status(n, C_PROV_A, r->id), HV_PERMISSION_DENIED);
	assert_non_null(strstr(errbuf, "no consent shares referral"));
	assert_int_equal(ref_consent_withdrawn(n->rs, SUBJECT_OK, false, &marked), HV_OK);
	assert_int_equal(marked, 2);
	x = get_as(n, C_REFERRER, r->id);
	assert_int_equal(x->needs[0]->state, NS(ACCEPTED)); /* she is there */
	assert_int_equal(x->needs[1]->state, NS(CANCELLED));
	assert_string_equal(x->events[x->n_events - 1]->reason, "consent withdrawn");
	free_msg(x);
	places(n, "la-dh", &av, &held);
	assert_int_equal(held, 0); /* the legal aid's held place is free again */
	x = get_as(n, C_REFERRER, w->id);
	assert_int_equal(x->needs[0]->state, NS(CANCELLED));
	free_msg(x);
	/* No reassign puts a hold anywhere now. */
	req.referral_id = r->id;
	req.need_index  = 1;
	req.reason      = "try another provider";
	assert_int_equal(call(n->ch[C_COORD], M_REASSIGN, &req.base,
	                     &haven__referral__v1__referral__descriptor, NULL, NULL),
	    HV_FAILED_PRECONDITION);
	free_msg(r);
	free_msg(w);

	/* A consent that lapses without a withdrawal (expiry) is found when routing: a waiting
	 * need ends instead of being offered. */
	withdrawn_subject[0] = '\0';
	assert_int_equal(create(n, &mh, &w), HV_OK);
	assert_int_equal(w->needs[0]->state, NS(WAITING));
	snprintf(withdrawn_subject, sizeof(withdrawn_subject), "%s", SUBJECT_OK);
	{
		const svc_spec mh1[] = { { "mh-1", C_PROV_B, ST(MENTAL_HEALTH), "Limburg", 1, NULL,
		    0, 0, NULL } };
		add_services(n, mh1, 1);
	}
	assert_int_equal(ref_route_waiting(n->rs, &routed), HV_OK);
	assert_int_equal(routed, 0);
	x = get_as(n, C_REFERRER, w->id);
	assert_int_equal(x->needs[0]->state, NS(CANCELLED));
	assert_string_equal(x->events[x->n_events - 1]->reason, "consent no longer valid");
	free_msg(x);
	places(n, "mh-1", &av, &held);
	assert_int_equal(held, 0);
	free_msg(w);
	withdrawn_subject[0] = '\0';
}

/* Withdrawal racing acceptance: whichever commits first, the person is never taken in on a
 * consent that is gone, the offer ends withdrawn, and the held place is free again. */
typedef struct withdraw_race {
	node              *rc_node;
	const char        *rc_offer;
	hv_status          rc_accept;
	pthread_barrier_t *rc_barrier;
} withdraw_race;

static void *
race_accept_withdrawn(void *arg)
{
	withdraw_race *c = arg;

	pthread_barrier_wait(c->rc_barrier);
	c->rc_accept = offer_act(c->rc_node, C_PROV_A, M_ACCEPT, c->rc_offer, 0, NULL, NULL);
	return (NULL);
}

static void
test_withdrawal_races_acceptance(void **state)
{
	node             *n = *state;
	pthread_barrier_t b;
	pthread_t         t;
	uint32_t          av, held;
	unsigned          marked;

	add_services(n, std_services, N_STD);
	/* The window itself: the consent service committed the withdrawal, its event has not
	 * reached the referral service yet. The acceptance is refused all the same. */
	{
		Referral *r = NULL, *x;

		assert_int_equal(create(n, &one_shelter, &r), HV_OK);
		snprintf(withdrawn_subject, sizeof(withdrawn_subject), "%s", SUBJECT_OK);
		assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL,
		                     NULL),
		    HV_FAILED_PRECONDITION);
		assert_non_null(strstr(errbuf, "no valid consent"));
		assert_int_equal(ref_consent_withdrawn(n->rs, SUBJECT_OK, false, &marked), HV_OK);
		x = get_as(n, C_REFERRER, r->id);
		assert_int_equal(x->needs[0]->state, NS(CANCELLED));
		free_msg(x);
		places(n, r->needs[0]->service_id, &av, &held);
		assert_int_equal(held, 0);
		free_msg(r);
	}
	/* And racing, whichever commits first. */
	for (int round = 0; round < 5; round++) {
		Referral     *r = NULL, *x;
		withdraw_race c;

		withdrawn_subject[0] = '\0';
		assert_int_equal(create(n, &one_shelter, &r), HV_OK);
		assert_int_equal(r->needs[0]->state, NS(OFFERED));
		c = (withdraw_race) { n, r->needs[0]->offer_id, HV_OK, &b };
		assert_int_equal(pthread_barrier_init(&b, NULL, 2), 0);
		snprintf(withdrawn_subject, sizeof(withdrawn_subject), "%s", SUBJECT_OK);
		assert_int_equal(pthread_create(&t, NULL, race_accept_withdrawn, &c), 0);
		pthread_barrier_wait(&b);
		assert_int_equal(ref_consent_withdrawn(n->rs, SUBJECT_OK, false, &marked), HV_OK);
		pthread_join(t, NULL);
		pthread_barrier_destroy(&b);
		assert_int_equal(c.rc_accept, HV_FAILED_PRECONDITION);
		x = get_as(n, C_REFERRER, r->id);
		assert_int_equal(x->needs[0]->state, NS(CANCELLED));
		free_msg(x);
		places(n, r->needs[0]->service_id, &av, &held);
		assert_int_equal(held, 0);
		free_msg(r);
	}
	withdrawn_subject[0] = '\0';
}

/* The consent service publishes a withdrawal: the referral's trail records it. */
static void
test_consent_withdrawn_notification(void **state)
{
	node                                *n = *state;
	Haven__Consent__V1__ConsentWithdrawn m = HAVEN__CONSENT__V1__CONSENT_WITHDRAWN__INIT;
	Referral                            *r = NULL, *r2 = NULL;
	uint8_t                              buf[256];
	size_t                               len;
	int                                  i;

	add_services(n, std_services, N_STD);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	usleep(100 * 1000); /* the subscriber is connected */
	m.consent_id      = "00000000000000000000000000000001";
	m.subject         = SUBJECT_OK;
	m.withdrawn_at_ms = atomic_load(&clock_ms);
	memcpy(buf, "consent.withdrawn", 17);
	len = 17 + haven__consent__v1__consent_withdrawn__pack(&m, buf + 17);
	assert_int_equal(nng_send(n->consent_pub, buf, len, 0), 0);
	for (i = 0; i < 200; i++) {
		r2 = get_as(n, C_REFERRER, r->id);
		if (strcmp(r2->events[r2->n_events - 1]->reason, "consent withdrawn") == 0) {
			break;
		}
		free_msg(r2);
		r2 = NULL;
		usleep(10 * 1000);
	}
	assert_non_null(r2);
	assert_string_equal(r2->events[r2->n_events - 1]->actor_org, "");
	free_msg(r2);
	free_msg(r);
}

/* ---- alerts ------------------------------------------------------------------------------------
 */

#define ALERT_SECRET "referral-test-webhook-secret"

/* Starts services/alerts/alerts_receiver.py in dir: *port is its webhook port. */
static pid_t
receiver_start(const char *dir, int *port)
{
	char  script[700], ports[700], cert[700], key[700], cmd[1600];
	pid_t pid;

	snprintf(cmd, sizeof(cmd),
	    "sh '%s/deploy/pki.sh' '%s' ca >/dev/null 2>&1 && "
	    "sh '%s/deploy/pki.sh' '%s' server localhost >/dev/null 2>&1",
	    HAVEN_SOURCE_DIR, dir, HAVEN_SOURCE_DIR, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(script, sizeof(script), "%s/services/alerts/alerts_receiver.py", HAVEN_SOURCE_DIR);
	snprintf(cert, sizeof(cert), "%s/server.pem", dir);
	snprintf(key, sizeof(key), "%s/server.key", dir);
	snprintf(ports, sizeof(ports), "%s/ports", dir);
	if ((pid = fork()) == 0) {
		execl("/usr/bin/python3", "python3", script, dir, cert, key, ALERT_SECRET,
		    (char *) NULL);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		FILE *f = fopen(ports, "r");
		int   smtp;

		if (f != NULL) {
			int got = fscanf(f, "%d %d", &smtp, port);

			fclose(f);
			if (got == 2) {
				return (pid);
			}
		}
		usleep(50 * 1000);
	}
	fail_msg("alerts_receiver.py did not start");
	return (-1);
}

static hv_status
set_hook(node *n, int who, const char *org, int port)
{
	Haven__Alerts__V1__SetChannelsRequest req = HAVEN__ALERTS__V1__SET_CHANNELS_REQUEST__INIT;
	Haven__Alerts__V1__Channels           c   = HAVEN__ALERTS__V1__CHANNELS__INIT;
	char                                  url[100];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", port);
	c.webhook_url         = url;
	c.webhook_secret.data = (uint8_t *) ALERT_SECRET;
	c.webhook_secret.len  = strlen(ALERT_SECRET);
	req.org_id            = (char *) org;
	req.channels          = &c;
	return (call(n->ch[who], "haven.alerts.v1.Alerts/SetChannels", &req.base,
	    &haven__alerts__v1__channels__descriptor, NULL, NULL));
}

/* The kinds of who's alerts after *cursor, joined by spaces; moves the cursor. */
static void
watch(node *n, int who, uint64_t *cursor, char *kinds, size_t ksz)
{
	Haven__Alerts__V1__WatchEventsRequest   req = HAVEN__ALERTS__V1__WATCH_EVENTS_REQUEST__INIT;
	Haven__Alerts__V1__WatchEventsResponse *resp = NULL;
	size_t                                  off  = 0;

	req.after = *cursor;
	assert_int_equal(call(n->ch[who], "haven.alerts.v1.Alerts/WatchEvents", &req.base,
	                     &haven__alerts__v1__watch_events_response__descriptor, &resp, NULL),
	    HV_OK);
	kinds[0] = '\0';
	for (size_t i = 0; i < resp->n_events; i++) {
		const char *k =
		    protobuf_c_enum_descriptor_get_value(&haven__alerts__v1__alert_kind__descriptor,
		        (int) resp->events[i]->kind)
		        ->name;

		assert_string_equal(resp->events[i]->org_id, orgs[who].id); /* its own only */
		off += (size_t) snprintf(kinds + off, ksz - off, "%s%s", off > 0 ? " " : "", k);
	}
	*cursor = resp->cursor;
	free_msg(resp);
}

static void
alerts_deliver(node *n, unsigned want)
{
	unsigned sent = 0, failed = 0;

	assert_int_equal(alerts_run(n->al, &sent, &failed), HV_OK);
	assert_int_equal(failed, 0);
	assert_int_equal(sent, want);
}

/* The referral's events reach the organisations concerned, in the events' own transactions:
 * the provider its offer (and the escalation with the region's coordinator), the referrer the
 * decline and the wait (and the unmet escalation); WatchEvents shows each organisation its
 * own; and nothing delivered carries the subject id, the note or the decline's free text. */
static void
test_alerts(void **state)
{
	node    *n     = *state;
	svc_spec one[] = { { "sh-ams", C_PROV_A, ST(SHELTER), "Amsterdam", 1, "nl", 0, 0, NULL } };
	create_spec s  = one_shelter;
	Referral   *r  = NULL;
	char        rdir[600], kinds[256], *text, offer[64];
	uint64_t    c_prov = 0, c_ref = 0, c_coord = 0;
	int         port;
	pid_t       rcv;

	snprintf(rdir, sizeof(rdir), "%s/receiver", n->dir);
	assert_int_equal(mkdir(rdir, 0700), 0);
	rcv = receiver_start(rdir, &port);
	add_services(n, one, 1);
	assert_int_equal(set_hook(n, C_REFERRER, "", port), HV_OK);
	assert_int_equal(set_hook(n, C_PROV_A, "shelter-a", port), HV_OK);
	assert_int_equal(set_hook(n, C_COORD, "", port), HV_OK);
	assert_int_equal(set_hook(n, C_PROV_A, "ngo-ams", port), HV_PERMISSION_DENIED);

	s.note = "NOTE-TEXT Maria Jansen";
	assert_int_equal(create(n, &s, &r), HV_OK);
	assert_int_equal(r->needs[0]->state, NS(OFFERED));
	snprintf(offer, sizeof(offer), "%s", r->needs[0]->offer_id);
	watch(n, C_PROV_A, &c_prov, kinds, sizeof(kinds));
	assert_string_equal(kinds, "OFFER_NEW");
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, ""); /* offered in the same transaction: no "waiting" */
	alerts_deliver(n, 1);

	/* Not acknowledged within escalate_after_s: the provider again and the coordinator. */
	advance(601 * 1000);
	alerts_deliver(n, 2);
	watch(n, C_PROV_A, &c_prov, kinds, sizeof(kinds));
	assert_string_equal(kinds, "OFFER_UNACKNOWLEDGED");
	watch(n, C_COORD, &c_coord, kinds, sizeof(kinds));
	assert_string_equal(kinds, "OFFER_UNACKNOWLEDGED");

	/* Declined with free text: the referrer hears it, and that the need waits. */
	assert_int_equal(offer_act(n, C_PROV_A, M_DECLINE, offer,
	                     HAVEN__REFERRAL__V1__DECLINE_REASON__DECLINE_OTHER,
	                     "DECLINE-TEXT Maria Jansen at the station", NULL),
	    HV_OK);
	alerts_deliver(n, 2);
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, "NEED_DECLINED NEED_WAITING");
	advance(1350 * 1000);
	alerts_deliver(n, 0); /* the declined offer's expiry warning was cancelled */

	/* Still unmet after unmet_after_s: the referrer and the coordinator. */
	advance(3600 * 1000);
	alerts_deliver(n, 2);
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, "NEED_UNMET");
	watch(n, C_COORD, &c_coord, kinds, sizeof(kinds));
	assert_string_equal(kinds, "NEED_UNMET");

	/* What left the node: signed, linked, and without the person. */
	snprintf(rdir + strlen(rdir), sizeof(rdir) - strlen(rdir), "/received.jsonl");
	assert_non_null(text = tu_slurp(rdir, NULL));
	assert_null(strstr(text, SUBJECT_OK));
	assert_null(strstr(text, "Maria"));
	assert_null(strstr(text, "Jansen"));
	assert_null(strstr(text, "NOTE-TEXT"));
	assert_null(strstr(text, "DECLINE-TEXT"));
	assert_null(strstr(text, "station"));
	assert_null(strstr(text, "\"sig_ok\": false"));
	assert_non_null(strstr(text, offer));
	assert_non_null(strstr(text, "https://haven.test/#/offers/"));
	{
		size_t lines = 0;

		for (char *p = text; (p = strchr(p, '\n')) != NULL; p++) {
			lines++;
		}
		assert_int_equal(lines, 7);
	}
	free(text);
	kill(rcv, SIGTERM);
	waitpid(rcv, NULL, 0);
	free_msg(r);
}

/* An acknowledged immediate offer is not escalated; an accepted and placed one tells the
 * referrer, and the offer's expiry warning never fires once it is answered. */
static void
test_alerts_acknowledged(void **state)
{
	node     *n     = *state;
	svc_spec  one[] = { { "sh-ams", C_PROV_A, ST(SHELTER), "Amsterdam", 1, "nl", 0, 0, NULL } };
	Referral *r     = NULL;
	char      kinds[256];
	uint64_t  c_prov = 0, c_ref = 0, c_coord = 0;
	unsigned  sent = 0, failed = 0;

	add_services(n, one, 1);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	watch(n, C_PROV_A, &c_prov, kinds, sizeof(kinds));
	assert_string_equal(kinds, "OFFER_NEW");
	assert_int_equal(offer_act(n, C_PROV_A, M_ACK, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	advance(601 * 1000);
	assert_int_equal(alerts_run(n->al, &sent, &failed), HV_OK);
	watch(n, C_PROV_A, &c_prov, kinds, sizeof(kinds));
	assert_string_equal(kinds, ""); /* acknowledged: no escalation */
	watch(n, C_COORD, &c_coord, kinds, sizeof(kinds));
	assert_string_equal(kinds, "");
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	assert_int_equal(placement(n, C_PROV_A, M_PLACED, r->needs[0]->offer_id, 0, NULL), HV_OK);
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, "NEED_ACCEPTED NEED_PLACED");
	advance(3600 * 1000); /* past the offer's expiry warning and any waiting timer */
	assert_int_equal(alerts_run(n->al, &sent, &failed), HV_OK);
	watch(n, C_PROV_A, &c_prov, kinds, sizeof(kinds));
	assert_string_equal(kinds, "");
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, "");
	free_msg(r);
}

/* An offer let expire tells the referrer; consent withdrawn after acceptance tells the
 * provider that has the person and the referrer (ref_alert.c keys on those events' causes). */
static void
test_alerts_expired_withdrawn(void **state)
{
	node     *n     = *state;
	svc_spec  one[] = { { "sh-ams", C_PROV_A, ST(SHELTER), "Amsterdam", 2, "nl", 0, 0, NULL } };
	Referral *r = NULL, *r2 = NULL;
	char      kinds[256];
	uint64_t  c_prov = 0, c_ref = 0;
	unsigned  expired = 0, marked = 0;

	add_services(n, one, 1);
	assert_int_equal(create(n, &one_shelter, &r), HV_OK);
	advance(1801 * 1000); /* past the immediate window */
	assert_int_equal(ref_expire_offers(n->rs, &expired), HV_OK);
	assert_int_equal(expired, 1);
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, "NEED_EXPIRED");

	assert_int_equal(create(n, &one_shelter, &r2), HV_OK);
	watch(n, C_PROV_A, &c_prov, kinds, sizeof(kinds));
	assert_string_equal(kinds, "OFFER_NEW OFFER_NEW");
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r2->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	assert_int_equal(ref_consent_withdrawn(n->rs, SUBJECT_OK, false, &marked), HV_OK);
	watch(n, C_PROV_A, &c_prov, kinds, sizeof(kinds));
	assert_string_equal(kinds, "CONSENT_WITHDRAWN");
	/* Another consent still covers her referrals: the referrer hears of the withdrawal too,
	 * once per referral with an open need (r waits, r2 is accepted). */
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, "NEED_ACCEPTED CONSENT_WITHDRAWN CONSENT_WITHDRAWN");
	free_msg(r);
	free_msg(r2);
}

/* Consent gone (withdrawn or erased, or expired): both sides are told. The provider whose
 * offer was open (the offer withdrawn, its hold released), the provider that has the person,
 * and the referrer, once for the referral; an expiry in its own words and alert kind. */
static void
consent_gone(void **state, bool expired)
{
	const char *kind   = expired ? "CONSENT_EXPIRED" : "CONSENT_WITHDRAWN";
	const char *reason = expired ? "consent expired" : "consent withdrawn";
	node       *n      = *state;
	svc_spec    two[] = { { "sh-ams", C_PROV_A, ST(SHELTER), "Amsterdam", 2, "nl", 0, 0, NULL },
		   { "la-nh", C_PROV_B, ST(LEGAL_AID), "Noord-Holland", 2, "nl", 0, 0, NULL } };
	create_spec both  = { .n_needs = 2,
		 .needs = { { ST(SHELTER), 0, NULL, NULL }, { ST(LEGAL_AID), 0, NULL, NULL } } };
	Referral   *r     = NULL, *x;
	char        kinds[256];
	uint64_t    c_a = 0, c_b = 0, c_ref = 0;
	uint32_t    av, held;
	unsigned    marked = 0;

	add_services(n, two, 2);
	assert_int_equal(create(n, &both, &r), HV_OK);
	assert_int_equal(r->needs[1]->state, NS(OFFERED));
	assert_string_equal(r->needs[1]->service_id, "la-nh");
	assert_int_equal(offer_act(n, C_PROV_A, M_ACCEPT, r->needs[0]->offer_id, 0, NULL, NULL),
	    HV_OK);
	watch(n, C_PROV_A, &c_a, kinds, sizeof(kinds));
	watch(n, C_PROV_B, &c_b, kinds, sizeof(kinds));
	assert_string_equal(kinds, "OFFER_NEW");
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, "NEED_ACCEPTED");

	snprintf(withdrawn_subject, sizeof(withdrawn_subject), "%s", SUBJECT_OK);
	assert_int_equal(ref_consent_withdrawn(n->rs, SUBJECT_OK, expired, &marked), HV_OK);
	assert_int_equal(marked, 1);
	watch(n, C_PROV_B, &c_b, kinds, sizeof(kinds));
	assert_string_equal(kinds, kind); /* its open offer is withdrawn */
	watch(n, C_PROV_A, &c_a, kinds, sizeof(kinds));
	assert_string_equal(kinds, kind); /* it has her: its access ended */
	watch(n, C_REFERRER, &c_ref, kinds, sizeof(kinds));
	assert_string_equal(kinds, kind); /* once, for the referral */
	places(n, "la-nh", &av, &held);
	assert_int_equal(held, 0);
	x = get_as(n, C_REFERRER, r->id);
	assert_int_equal(x->needs[0]->state, NS(ACCEPTED));
	assert_int_equal(x->needs[1]->state, NS(CANCELLED));
	assert_string_equal(x->events[x->n_events - 1]->reason, reason);
	free_msg(x);
	/* A second notice finds nothing left to end: nobody is told again. */
	assert_int_equal(ref_consent_withdrawn(n->rs, SUBJECT_OK, expired, &marked), HV_OK);
	watch(n, C_PROV_B, &c_b, kinds, sizeof(kinds));
	assert_string_equal(kinds, "");
	withdrawn_subject[0] = '\0';
	free_msg(r);
	check_invariant(n);
}

static void
test_alerts_consent_gone(void **state)
{
	consent_gone(state, false);
}

static void
test_alerts_consent_expired(void **state)
{
	consent_gone(state, true);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offered_to_nearest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_excluded_and_preferred, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ranking_language_specialisation, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_language_reach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decline_moves_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decline_no_room, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_moves_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_place_complete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_end_with_outcome, setup, teardown),
		cmocka_unit_test_setup_teardown(test_places_come_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_releases_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waiting_then_routed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waiting_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waiting_routed_on_notification, setup_notify,
		    teardown),
		cmocka_unit_test_setup_teardown(test_idempotent_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_visibility, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reassign, setup, teardown),
		cmocka_unit_test_setup_teardown(test_race_last_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_race_accept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_mid_offer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts_acknowledged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts_consent_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts_consent_expired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts_expired_withdrawn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_expired_by_capacity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statistics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statistics_narrowing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statistics_year_boundary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statistics_one_kind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consent_withdrawn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consent_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_withdrawal_races_acceptance, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consent_withdrawn_notification, setup_notify,
		    teardown),
	};

	log_init("referral_test", LOG_LEVEL_WARN);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
