/*
 * cmd_offer.c - the provider's side on the command line (the usage is at the top of
 * cmd_referral.c): haven offer list|ack|accept|decline and haven placement
 * placed|complete|end.
 */
#include "cmd_referral.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define M(name) "haven.referral.v1.Referrals/" name

typedef Haven__Referral__V1__Offer Offer;

/* ---- haven offer, haven placement ------------------------------------------------------------ */

static void
print_offer_row(const Offer *o)
{
	char a[32], b[32], u[32], s[32], ns[32], t[32], l[128];

	printf("%-22s %-10s %-10s %-16s %-12s %-10s %-20s %s\n", o->id,
	    cli_enum_name(&haven__referral__v1__offer_state__descriptor, (int) o->state, s,
	        sizeof(s)),
	    cli_enum_name(&haven__referral__v1__urgency__descriptor, (int) o->urgency, u,
	        sizeof(u)),
	    TYPE_NAME(o->type, a), POP_NAME(o->population, b),
	    ref_cli_join(o->languages, o->n_languages, l, sizeof(l)),
	    ref_cli_when(o->respond_by_ms, t, sizeof(t)), STATE_NAME(o->need_state, ns));
}

static void
offer_header(void)
{
	printf("%-22s %-10s %-10s %-16s %-12s %-10s %-20s %s\n", "OFFER", "STATE", "URGENCY",
	    "TYPE", "POPULATION", "LANGUAGES", "RESPOND BY", "NEED");
}

static int
offer_reply(cli *c, ProtobufCMessage *rep)
{
	if (c->json) {
		cli_print_json(ref_cli_msg_json(rep));
	} else {
		offer_header();
		print_offer_row((const Offer *) rep);
	}
	protobuf_c_message_free_unpacked(rep, NULL);
	return (0);
}

static int
offer_list(cli *c, int argc, char **argv)
{
	Haven__Referral__V1__ListOffersRequest req = HAVEN__REFERRAL__V1__LIST_OFFERS_REQUEST__INIT;
	Haven__Referral__V1__ListOffersResponse *rep        = NULL;
	json_t                                  *all        = c->json ? json_array() : NULL;
	char                                     token[128] = "";
	int                                      rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--open") == 0) {
			req.open_only = true;
		} else {
			json_decref(all);
			return (cli_usage("offer list takes only --open"));
		}
	}
	do {
		req.page_token = token;
		if ((rc = cli_call(c, "offer list", M("ListOffers"), &req.base,
		         &haven__referral__v1__list_offers_response__descriptor,
		         (ProtobufCMessage **) &rep, true)) != 0) {
			json_decref(all);
			return (rc);
		}
		/* The header once the first page is in: a failed call prints only its error. */
		if (!c->json && token[0] == '\0') {
			offer_header();
		}
		for (size_t i = 0; i < rep->n_offers; i++) {
			if (c->json) {
				json_array_append_new(all, ref_cli_msg_json(&rep->offers[i]->base));
			} else {
				print_offer_row(rep->offers[i]);
			}
		}
		snprintf(token, sizeof(token), "%s", rep->next_page_token);
		protobuf_c_message_free_unpacked(&rep->base, NULL);
	} while (token[0] != '\0');
	if (c->json) {
		cli_print_json(all);
	}
	return (0);
}

/* offer ack|accept|decline ID [--reason R] [--text T] */
static int
offer_action(cli *c, int argc, char **argv, const char *method, bool decline)
{
	static const struct option longopts[] = {
		{ "reason", required_argument, NULL, 'r' },
		{ "text", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	Haven__Referral__V1__OfferActionRequest req =
	    HAVEN__REFERRAL__V1__OFFER_ACTION_REQUEST__INIT;
	char              what[32];
	ProtobufCMessage *rep = NULL;
	int               opt, v = 0, rc;

	snprintf(what, sizeof(what), "offer %s", argv[0]);
	ref_cli_getopt_reset();
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (!decline) {
			return (cli_usage("%s takes only ID", what));
		}
		if (opt == 'r') {
			if ((rc = cli_enum_parse(&haven__referral__v1__decline_reason__descriptor,
			         "reason", optarg, &v)) != 0) {
				return (rc);
			}
			req.decline_reason = (Haven__Referral__V1__DeclineReason) v;
		} else if (opt == 't') {
			req.text = optarg;
		} else {
			return (cli_usage("%s: unknown option", what));
		}
	}
	if (argc - optind != 1 || (decline && req.decline_reason == 0)) {
		return (cli_usage(decline ? "offer decline takes ID --reason R [--text T]"
		                          : "%s takes one ID",
		    what));
	}
	req.offer_id = argv[optind];
	if ((rc = cli_call(c, what, method, &req.base, &haven__referral__v1__offer__descriptor,
	         &rep, false)) != 0) {
		return (rc);
	}
	return (offer_reply(c, rep));
}

int
cmd_offer(cli *c, int argc, char **argv)
{
	if (argc < 1) {
		return (cli_usage("offer needs list, ack, accept or decline"));
	}
	if (strcmp(argv[0], "list") == 0) {
		return (offer_list(c, argc, argv));
	}
	if (strcmp(argv[0], "ack") == 0) {
		return (offer_action(c, argc, argv, M("AcknowledgeOffer"), false));
	}
	if (strcmp(argv[0], "accept") == 0) {
		return (offer_action(c, argc, argv, M("AcceptOffer"), false));
	}
	if (strcmp(argv[0], "decline") == 0) {
		return (offer_action(c, argc, argv, M("DeclineOffer"), true));
	}
	return (cli_usage("unknown offer command '%s' (list, ack, accept, decline)", argv[0]));
}

int
cmd_placement(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "outcome", required_argument, NULL, 'o' },
		{ "text", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	Haven__Referral__V1__PlacementRequest req = HAVEN__REFERRAL__V1__PLACEMENT_REQUEST__INIT;
	const char                           *method;
	char                                  what[32];
	ProtobufCMessage                     *rep = NULL;
	bool                                  end;
	int                                   opt, v = 0, rc;

	if (argc < 1) {
		return (cli_usage("placement needs placed, complete or end"));
	}
	if (strcmp(argv[0], "placed") == 0) {
		method = M("MarkPlaced");
	} else if (strcmp(argv[0], "complete") == 0) {
		method = M("CompletePlacement");
	} else if (strcmp(argv[0], "end") == 0) {
		method = M("EndPlacement");
	} else {
		return (
		    cli_usage("unknown placement command '%s' (placed, complete, end)", argv[0]));
	}
	end = strcmp(argv[0], "end") == 0;
	snprintf(what, sizeof(what), "placement %s", argv[0]);
	ref_cli_getopt_reset();
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (!end) {
			return (cli_usage("%s takes only OFFER", what));
		}
		if (opt == 'o') {
			if ((rc = cli_enum_parse(&haven__referral__v1__outcome__descriptor,
			         "outcome", optarg, &v)) != 0) {
				return (rc);
			}
			req.outcome = (Haven__Referral__V1__Outcome) v;
		} else if (opt == 't') {
			req.text = optarg;
		} else {
			return (cli_usage("%s: unknown option", what));
		}
	}
	if (argc - optind != 1 || (end && req.outcome == 0)) {
		return (cli_usage(end ? "placement end takes OFFER --outcome O [--text T]"
		                      : "%s takes one OFFER",
		    what));
	}
	req.offer_id = argv[optind];
	if ((rc = cli_call(c, what, method, &req.base, &haven__referral__v1__offer__descriptor,
	         &rep, false)) != 0) {
		return (rc);
	}
	return (offer_reply(c, rep));
}
