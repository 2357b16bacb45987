/*
 * cmd_referral.c - referrals, offers, placements and statistics on the command line:
 *
 *   haven referral create --subject S --urgency immediate|urgent|planned
 *                         --exploitation labour|sexual|criminal|other|unknown
 *                         --need TYPE:POPULATION[:LANG,LANG] ... [--exclude REGION]...
 *                         [--prefer REGION]... [--note TEXT] [--key IDEMPOTENCY_KEY]
 *   haven referral show ID                  needs, their states, and the trail
 *   haven referral list [--open]
 *   haven referral cancel ID --reason TEXT [--outcome OUTCOME]   (placements end with it)
 *   haven referral reassign ID NEED --reason TEXT [--service S]   (coordinator)
 *   haven referral update ID --reason TEXT [--urgency U] [--exclude R]... [--no-exclude]
 *                         [--prefer R]... [--no-prefer] [--note TEXT]
 *                         [--add-need TYPE:POPULATION[:LANG,LANG]]... [--cancel-need N]...
 *   haven referral pause ID NEED --reason client-unavailable|client-undecided|safety-review|
 *                         awaiting-documents|other [--text T]
 *   haven referral resume ID NEED [--text T]
 *   haven offer list [--open]
 *   haven offer ack|accept ID
 *   haven offer decline ID --reason no-capacity|not-eligible|unsafe|other [--text T]
 *   haven placement placed|complete OFFER
 *   haven placement end OFFER --outcome client-refused|no-longer-needed|
 *                         unable-to-contact-client|unable-to-contact-provider|other [--text T]
 *   haven stats --period YYYY-Www|YYYY-MM [--region R]...   (a finished ISO week or month)
 *
 * Enum values are written as capacity's commands write them: lower-case with '-' (legal-aid,
 * no-capacity), without the prefix a proto value carries only to be unique in its package
 * (OFFER_OPEN is "open"; DECLINE_OTHER, OUTCOME_OTHER and HOLD_OTHER are "other").
 * `referral create` sends an idempotency key (random unless --key is given), so a retry never makes
 * two. Tables by default; --json prints the reply's fields (enum values named as above, times in
 * Unix milliseconds).
 */
#include "cli.h"
#include "cmd_referral.h"

#include "haven/crypto.h"
#include "haven/referral/v1/referral.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M(name) "haven.referral.v1.Referrals/" name

#define NEEDS_MAX   REF_CLI_NEEDS_MAX
#define REGIONS_MAX REF_CLI_REGIONS_MAX
#define LANGS_MAX   REF_CLI_LANGS_MAX

typedef Haven__Referral__V1__Referral Referral;
typedef Haven__Referral__V1__Offer    Offer;

/* "1h05m", "12m", "40s". */
static const char *
duration(uint64_t ms, char *buf, size_t n)
{
	uint64_t s = ms / 1000;

	if (ms == 0) {
		snprintf(buf, n, "-");
	} else if (s < 120) {
		snprintf(buf, n, "%llus", (unsigned long long) s);
	} else if (s < 3600) {
		snprintf(buf, n, "%llum", (unsigned long long) (s / 60));
	} else {
		snprintf(buf, n, "%lluh%02llum", (unsigned long long) (s / 3600),
		    (unsigned long long) (s % 3600 / 60));
	}
	return (buf);
}

/* Runs getopt_long over a subcommand's words (argv[0] is the subcommand). */
/* ---- haven referral -------------------------------------------------------------------------- */

/* A CreateReferral request as the options give it; its strings point into argv. */
typedef struct create_args {
	Haven__Referral__V1__CreateReferralRequest req;
	Haven__Referral__V1__NeedRequest           needs[NEEDS_MAX];
	Haven__Referral__V1__NeedRequest          *np[NEEDS_MAX];
	char                                      *langs[NEEDS_MAX][LANGS_MAX];
	char                                      *excluded[REGIONS_MAX], *preferred[REGIONS_MAX];
	const char                                *key;
} create_args;

static int
create_parse(create_args *a, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "subject", required_argument, NULL, 's' },
		{ "urgency", required_argument, NULL, 'u' },
		{ "exploitation", required_argument, NULL, 'e' },
		{ "need", required_argument, NULL, 'n' },
		{ "exclude", required_argument, NULL, 'x' },
		{ "prefer", required_argument, NULL, 'p' },
		{ "note", required_argument, NULL, 'o' },
		{ "key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	Haven__Referral__V1__CreateReferralRequest *req = &a->req;
	size_t                                      nlangs;
	int                                         opt, v = 0, rc = 0;

	haven__referral__v1__create_referral_request__init(req);
	req->needs             = a->np;
	req->excluded_regions  = a->excluded;
	req->preferred_regions = a->preferred;
	a->key                 = NULL;
	ref_cli_getopt_reset();
	while (rc == 0 && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			req->subject = optarg;
			break;
		case 'u':
			rc = cli_enum_parse(&haven__referral__v1__urgency__descriptor, "urgency",
			    optarg, &v);
			req->urgency = (Haven__Referral__V1__Urgency) v;
			break;
		case 'e':
			rc = cli_enum_parse(&haven__referral__v1__exploitation__descriptor,
			    "exploitation", optarg, &v);
			req->exploitation = (Haven__Referral__V1__Exploitation) v;
			break;
		case 'n':
			if (req->n_needs == NEEDS_MAX) {
				return (cli_usage("referral create: at most %d needs", NEEDS_MAX));
			}
			if ((rc = ref_cli_parse_need(optarg, &a->needs[req->n_needs],
			         a->langs[req->n_needs], &nlangs)) == 0) {
				a->np[req->n_needs] = &a->needs[req->n_needs];
				req->n_needs++;
			}
			break;
		case 'x':
			rc = ref_cli_add_region(a->excluded, &req->n_excluded_regions, optarg,
			    "referral create");
			break;
		case 'p':
			rc = ref_cli_add_region(a->preferred, &req->n_preferred_regions, optarg,
			    "referral create");
			break;
		case 'o':
			req->note = optarg;
			break;
		case 'k':
			a->key = optarg;
			break;
		default:
			return (cli_usage("referral create: unknown option"));
		}
	}
	if (rc != 0) {
		return (rc);
	}
	if (optind < argc) {
		return (cli_usage("referral create: unexpected argument '%s'", argv[optind]));
	}
	if (req->subject[0] == '\0' || req->urgency == 0 || req->exploitation == 0 ||
	    req->n_needs == 0) {
		return (
		    cli_usage("referral create needs --subject, --urgency, --exploitation and at "
		              "least one --need"));
	}
	return (0);
}

static int
referral_create(cli *c, int argc, char **argv)
{
	create_args      *a = malloc(sizeof(*a));
	char              keybuf[40];
	uint8_t           rnd[16];
	rpc_call_options  o   = { .timeout_ms = c->timeout_ms };
	ProtobufCMessage *rep = NULL;
	char              err[RPC_ERRMSG_MAX];
	rpc_channel      *ch;
	int               rc;
	hv_status         st;

	if (a == NULL) {
		return (cli_fail(c, "referral create", HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	if ((rc = create_parse(a, argc, argv)) != 0) {
		goto out;
	}
	if (a->key == NULL) {
		/* One key per invocation: the client's own retries reuse it. */
		if (crypto_random(rnd, sizeof(rnd)) != HV_OK) {
			rc = cli_fail(c, "referral create", HV_INTERNAL, "no randomness");
			goto out;
		}
		for (size_t i = 0; i < sizeof(rnd); i++) {
			snprintf(keybuf + 2 * i, 3, "%02x", rnd[i]);
		}
		a->key = keybuf;
	}
	o.idempotency_key = a->key;
	if ((ch = cli_channel(c, &rc)) == NULL) {
		goto out;
	}
	st = rpc_channel_call(ch, M("CreateReferral"), &a->req.base,
	    &haven__referral__v1__referral__descriptor, &rep, &o, err, sizeof(err));
	if (st != HV_OK) {
		rc = cli_fail(c, "referral create", st, err);
		goto out;
	}
	if (c->json) {
		cli_print_json(ref_cli_msg_json(rep));
	} else {
		ref_cli_print_referral((const Referral *) rep);
	}
	protobuf_c_message_free_unpacked(rep, NULL);
	rc = 0;
out:
	free(a);
	return (rc);
}

static int
referral_show(cli *c, int argc, char **argv)
{
	Haven__Referral__V1__GetReferralRequest req =
	    HAVEN__REFERRAL__V1__GET_REFERRAL_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	int               rc;

	if (argc != 2) {
		return (cli_usage("referral show takes one ID"));
	}
	req.id = argv[1];
	if ((rc = cli_call(c, "referral show", M("GetReferral"), &req.base,
	         &haven__referral__v1__referral__descriptor, &rep, true)) != 0) {
		return (rc);
	}
	return (ref_cli_referral_reply(c, rep));
}

/* "2 offered, 1 waiting". */
static const char *
need_summary(const Referral *r, char *buf, size_t n)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int s = 1; s <= 8 && used < n; s++) {
		unsigned count = 0;
		char     name[32];
		for (size_t i = 0; i < r->n_needs; i++) {
			count += (int) r->needs[i]->state == s;
		}
		if (count > 0) {
			used += (size_t) snprintf(buf + used, n - used, "%s%u %s",
			    used > 0 ? ", " : "", count, STATE_NAME(s, name));
		}
	}
	return (buf);
}

static int
referral_list(cli *c, int argc, char **argv)
{
	Haven__Referral__V1__ListReferralsRequest req =
	    HAVEN__REFERRAL__V1__LIST_REFERRALS_REQUEST__INIT;
	Haven__Referral__V1__ListReferralsResponse *rep        = NULL;
	json_t                                     *all        = c->json ? json_array() : NULL;
	char                                        token[128] = "";
	int                                         rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--open") == 0) {
			req.open_only = true;
		} else {
			json_decref(all);
			return (cli_usage("referral list takes only --open"));
		}
	}
	/* Every page. */
	do {
		req.page_token = token;
		if ((rc = cli_call(c, "referral list", M("ListReferrals"), &req.base,
		         &haven__referral__v1__list_referrals_response__descriptor,
		         (ProtobufCMessage **) &rep, true)) != 0) {
			json_decref(all);
			return (rc);
		}
		/* The header once the first page is in: a failed call prints only its error. */
		if (!c->json && token[0] == '\0') {
			printf("%-22s %-20s %-10s %-16s %s\n", "REFERRAL", "CREATED", "URGENCY",
			    "REGION", "NEEDS");
		}
		for (size_t i = 0; i < rep->n_referrals; i++) {
			const Referral *r = rep->referrals[i];
			char            t[32], u[32], s[256];
			if (c->json) {
				json_array_append_new(all, ref_cli_msg_json(&r->base));
			} else {
				printf("%-22s %-20s %-10s %-16s %s\n", r->id,
				    ref_cli_when(r->created_ms, t, sizeof(t)),
				    cli_enum_name(&haven__referral__v1__urgency__descriptor,
				        (int) r->urgency, u, sizeof(u)),
				    r->home_region, need_summary(r, s, sizeof(s)));
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

int
cmd_referral(cli *c, int argc, char **argv)
{
	if (argc < 1) {
		return (
		    cli_usage("referral needs create, show, list, cancel, reassign, update, pause "
		              "or resume"));
	}
	if (strcmp(argv[0], "create") == 0) {
		return (referral_create(c, argc, argv));
	}
	if (strcmp(argv[0], "show") == 0) {
		return (referral_show(c, argc, argv));
	}
	if (strcmp(argv[0], "list") == 0) {
		return (referral_list(c, argc, argv));
	}
	if (strcmp(argv[0], "cancel") == 0) {
		return (ref_cli_cancel(c, argc, argv));
	}
	if (strcmp(argv[0], "reassign") == 0) {
		return (ref_cli_reassign(c, argc, argv));
	}
	if (strcmp(argv[0], "update") == 0) {
		return (ref_cli_update(c, argc, argv));
	}
	if (strcmp(argv[0], "pause") == 0) {
		return (ref_cli_pause(c, argc, argv, true));
	}
	if (strcmp(argv[0], "resume") == 0) {
		return (ref_cli_pause(c, argc, argv, false));
	}
	return (cli_usage("unknown referral command '%s' (create, show, list, cancel, reassign, "
	                  "update, pause, resume)",
	    argv[0]));
}

/* ---- haven stats ----------------------------------------------------------------------------- */

int
cmd_stats(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "region", required_argument, NULL, 'r' },
		{ "period", required_argument, NULL, 'p' },
		{ "days", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	Haven__Referral__V1__StatisticsRequest req = HAVEN__REFERRAL__V1__STATISTICS_REQUEST__INIT;
	Haven__Referral__V1__StatisticsResponse *rep = NULL;
	char                                    *regions[REGIONS_MAX];
	char                                   **argv2;
	int                                      opt, rc;

	/* getopt wants argv[0] to be a program name: put "stats" in front. */
	if ((argv2 = calloc((size_t) argc + 2, sizeof(char *))) == NULL) {
		return (cli_fail(c, "stats", HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	argv2[0] = "stats";
	memcpy(argv2 + 1, argv, (size_t) argc * sizeof(char *));
	req.regions = regions;
	ref_cli_getopt_reset();
	rc = 0;
	while (rc == 0 && (opt = getopt_long(argc + 1, argv2, "", longopts, NULL)) != -1) {
		if (opt == 'r') {
			if (req.n_regions == REGIONS_MAX) {
				rc = cli_usage("stats: at most %d regions", REGIONS_MAX);
			} else {
				regions[req.n_regions++] = optarg;
			}
		} else if (opt == 'p') {
			req.period = optarg; /* checked by the node, which names what is wrong */
		} else if (opt == 'd') {
			rc = cli_usage(
			    "stats: --days is gone; name a finished --period, an ISO week "
			    "YYYY-Www or a month YYYY-MM");
		} else {
			rc = cli_usage(
			    "stats takes --period YYYY-Www|YYYY-MM and --region R (repeatable)");
		}
	}
	if (rc == 0 && optind < argc + 1) {
		rc = cli_usage("stats: unexpected argument '%s'", argv2[optind]);
	}
	if (rc == 0 && req.period[0] == '\0') {
		rc = cli_usage(
		    "stats needs --period: a finished ISO week YYYY-Www (2026-W49) or month "
		    "YYYY-MM (2026-12), Europe/Amsterdam time");
	}
	if (rc != 0) {
		free(argv2);
		return (rc);
	}
	rc = cli_call(c, "stats", M("Statistics"), &req.base,
	    &haven__referral__v1__statistics_response__descriptor, (ProtobufCMessage **) &rep,
	    true);
	free(argv2);
	if (rc != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(ref_cli_msg_json(&rep->base));
	} else {
		char f[32], t[32];
		printf("period %s (%s to %s); 1 to 4 shown as <5, x withheld (it would tell a <5), "
		       "times only from 5 placements\n",
		    rep->period, ref_cli_when(rep->from_ms, f, sizeof(f)),
		    ref_cli_when(rep->to_ms, t, sizeof(t)));
		printf("%-22s %-12s %-16s %9s %10s %6s %8s %8s\n", "REGION", "EXPLOITATION", "TYPE",
		    "REFERRALS", "PLACEMENTS", "UNMET", "MEDIAN", "P90");
		for (size_t i = 0; i < rep->n_cells; i++) {
			const Haven__Referral__V1__StatisticsCell *s = rep->cells[i];
			char                                       e[32], ty[32], m[32], p[32];
			printf("%-22s %-12s %-16s %9s %10s %6s %8s %8s\n", s->region,
			    cli_enum_name(&haven__referral__v1__exploitation__descriptor,
			        (int) s->exploitation, e, sizeof(e)),
			    TYPE_NAME(s->type, ty), s->referrals, s->placements, s->unmet,
			    duration(s->median_ms_to_placement, m, sizeof(m)),
			    duration(s->p90_ms_to_placement, p, sizeof(p)));
		}
		for (size_t i = 0; i < rep->n_totals; i++) {
			const Haven__Referral__V1__StatisticsTotal *s = rep->totals[i];
			printf("%-22s %-12s %-16s %9s %10s %6s\n", s->region, "(total)", "",
			    s->referrals, s->placements, s->unmet);
		}
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}
