/*
 * cmd_referral_edit.c - changing a referral on the command line (the usage is at the top of
 * cmd_referral.c): cancel (placements end with --outcome), reassign (to --service, or routed
 * again), update (urgency, regions, note, needs added or cancelled), pause and resume. Each
 * prints the referral as it stands after the change.
 */
#include "cmd_referral.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define M(name) "haven.referral.v1.Referrals/" name

/* A need's number: 0..REF_CLI_NEEDS_MAX-1. */
static int
need_number(const char *s, uint32_t *out)
{
	char *end;
	long  v;

	errno = 0;
	v     = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v >= REF_CLI_NEEDS_MAX) {
		return (cli_usage("NEED is a need's number (0..%d), not '%s'",
		    REF_CLI_NEEDS_MAX - 1, s));
	}
	*out = (uint32_t) v;
	return (0);
}

/* Calls a method that answers with the referral, and prints it. */
static int
referral_call(cli *c, const char *what, const char *method, const ProtobufCMessage *req)
{
	ProtobufCMessage *rep = NULL;
	int               rc;

	if ((rc = cli_call(c, what, method, req, &haven__referral__v1__referral__descriptor, &rep,
	         false)) != 0) {
		return (rc);
	}
	return (ref_cli_referral_reply(c, rep));
}

int
ref_cli_cancel(cli *c, int argc, char **argv)
{
	Haven__Referral__V1__CancelReferralRequest req =
	    HAVEN__REFERRAL__V1__CANCEL_REFERRAL_REQUEST__INIT;
	cli_args    a;
	const char *outcome;
	int         v = 0, rc;

	if ((rc = cli_args_parse(&a, argc - 1, argv + 1, "referral cancel", 1, "reason outcome",
	         NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 1 || cli_opt(&a, "reason") == NULL) {
		return (cli_usage("referral cancel takes ID --reason TEXT [--outcome OUTCOME]"));
	}
	if ((outcome = cli_opt(&a, "outcome")) != NULL &&
	    (rc = cli_enum_parse(&haven__referral__v1__outcome__descriptor, "outcome", outcome,
	         &v)) != 0) {
		return (rc);
	}
	req.id      = (char *) a.pos[0];
	req.reason  = (char *) cli_opt(&a, "reason");
	req.outcome = (Haven__Referral__V1__Outcome) v;
	return (referral_call(c, "referral cancel", M("CancelReferral"), &req.base));
}

int
ref_cli_reassign(cli *c, int argc, char **argv)
{
	Haven__Referral__V1__ReassignNeedRequest req =
	    HAVEN__REFERRAL__V1__REASSIGN_NEED_REQUEST__INIT;
	cli_args a;
	int      rc;

	if ((rc = cli_args_parse(&a, argc - 1, argv + 1, "referral reassign", 2, "reason service",
	         NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 2 || cli_opt(&a, "reason") == NULL) {
		return (cli_usage("referral reassign takes ID NEED --reason TEXT [--service S]"));
	}
	if ((rc = need_number(a.pos[1], &req.need_index)) != 0) {
		return (rc);
	}
	req.referral_id = (char *) a.pos[0];
	req.reason      = (char *) cli_opt(&a, "reason");
	if (cli_opt(&a, "service") != NULL) {
		req.service_id = (char *) cli_opt(&a, "service");
	}
	return (referral_call(c, "referral reassign", M("ReassignNeed"), &req.base));
}

/* What `referral update` sends; its strings point into argv or buf. */
typedef struct update_args {
	Haven__Referral__V1__UpdateReferralRequest req;
	Haven__Referral__V1__NeedRequest           needs[REF_CLI_NEEDS_MAX];
	Haven__Referral__V1__NeedRequest          *np[REF_CLI_NEEDS_MAX];
	char                                      *langs[REF_CLI_NEEDS_MAX][REF_CLI_LANGS_MAX];
	char    *excluded[REF_CLI_REGIONS_MAX], *preferred[REF_CLI_REGIONS_MAX];
	uint32_t cancel[REF_CLI_NEEDS_MAX];
	char     buf[2048];
} update_args;

/* The region options: --exclude R... (or --no-exclude to empty the list), the same for
 * --prefer. */
static int
update_regions(const cli_args *a, update_args *u)
{
	int n;

	if (cli_opt(a, "exclude") != NULL || cli_flag(a, "no-exclude")) {
		n = cli_opt(a, "exclude") != NULL
		    ? cli_opt_list(a, "exclude", u->excluded, REF_CLI_REGIONS_MAX, u->buf, 1024)
		    : 0;
		if (n < 0) {
			return (cli_usage("referral update: at most %d regions each",
			    REF_CLI_REGIONS_MAX));
		}
		u->req.set_excluded_regions = true;
		u->req.n_excluded_regions   = (size_t) n;
	}
	if (cli_opt(a, "prefer") != NULL || cli_flag(a, "no-prefer")) {
		n = cli_opt(a, "prefer") != NULL ? cli_opt_list(a, "prefer", u->preferred,
		                                       REF_CLI_REGIONS_MAX, u->buf + 1024, 1024)
		                                 : 0;
		if (n < 0) {
			return (cli_usage("referral update: at most %d regions each",
			    REF_CLI_REGIONS_MAX));
		}
		u->req.set_preferred_regions = true;
		u->req.n_preferred_regions   = (size_t) n;
	}
	return (0);
}

/* --add-need SPEC and --cancel-need N, each repeatable (in order). */
static int
update_needs(const cli_args *a, update_args *u)
{
	size_t nlangs;
	int    rc;

	for (size_t i = 0; i < a->nopt; i++) {
		const char *name = a->opt[i].name;

		if (strcmp(name, "add-need") == 0) {
			size_t k = u->req.n_add_needs;
			if (k == REF_CLI_NEEDS_MAX) {
				return (cli_usage("referral update: at most %d needs",
				    REF_CLI_NEEDS_MAX));
			}
			if ((rc = ref_cli_parse_need((char *) a->opt[i].value, &u->needs[k],
			         u->langs[k], &nlangs)) != 0) {
				return (rc);
			}
			u->np[u->req.n_add_needs++] = &u->needs[k];
		} else if (strcmp(name, "cancel-need") == 0) {
			if (u->req.n_cancel_needs == REF_CLI_NEEDS_MAX) {
				return (cli_usage("referral update: at most %d needs",
				    REF_CLI_NEEDS_MAX));
			}
			if ((rc = need_number(a->opt[i].value,
			         &u->cancel[u->req.n_cancel_needs])) != 0) {
				return (rc);
			}
			u->req.n_cancel_needs++;
		}
	}
	return (0);
}

int
ref_cli_update(cli *c, int argc, char **argv)
{
	update_args *u = calloc(1, sizeof(*u));
	cli_args     a;
	int          v = 0, rc;

	if (u == NULL) {
		return (cli_fail(c, "referral update", HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	haven__referral__v1__update_referral_request__init(&u->req);
	u->req.excluded_regions  = u->excluded;
	u->req.preferred_regions = u->preferred;
	u->req.add_needs         = u->np;
	u->req.cancel_needs      = u->cancel;
	if ((rc = cli_args_parse(&a, argc - 1, argv + 1, "referral update", 1,
	         "reason urgency exclude prefer note add-need cancel-need",
	         "no-exclude no-prefer")) != 0) {
		goto out;
	}
	if (a.npos != 1 || cli_opt(&a, "reason") == NULL) {
		rc = cli_usage("referral update takes ID --reason TEXT and what changes");
		goto out;
	}
	if (cli_opt(&a, "urgency") != NULL &&
	    (rc = cli_enum_parse(&haven__referral__v1__urgency__descriptor, "urgency",
	         cli_opt(&a, "urgency"), &v)) != 0) {
		goto out;
	}
	if ((rc = update_regions(&a, u)) != 0 || (rc = update_needs(&a, u)) != 0) {
		goto out;
	}
	u->req.id      = (char *) a.pos[0];
	u->req.reason  = (char *) cli_opt(&a, "reason");
	u->req.urgency = (Haven__Referral__V1__Urgency) v;
	if (cli_opt(&a, "note") != NULL) {
		u->req.set_note = true;
		u->req.note     = (char *) cli_opt(&a, "note");
	}
	rc = referral_call(c, "referral update", M("UpdateReferral"), &u->req.base);
out:
	free(u);
	return (rc);
}

int
ref_cli_pause(cli *c, int argc, char **argv, bool pause)
{
	const char *what = pause ? "referral pause" : "referral resume";
	cli_args    a;
	uint32_t    need = 0;
	int         v    = 0, rc;

	if ((rc = cli_args_parse(&a, argc - 1, argv + 1, what, 2, pause ? "reason text" : "text",
	         NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 2 || (pause && cli_opt(&a, "reason") == NULL)) {
		return (cli_usage(pause ? "referral pause takes ID NEED --reason REASON [--text T]"
		                        : "referral resume takes ID NEED [--text T]"));
	}
	if ((rc = need_number(a.pos[1], &need)) != 0) {
		return (rc);
	}
	if (pause) {
		Haven__Referral__V1__PauseNeedRequest req =
		    HAVEN__REFERRAL__V1__PAUSE_NEED_REQUEST__INIT;
		const char *reason = cli_opt(&a, "reason");

		if ((rc = cli_enum_parse(&haven__referral__v1__hold_reason__descriptor, "reason",
		         reason, &v)) != 0) {
			return (rc);
		}
		req.referral_id = (char *) a.pos[0];
		req.need_index  = need;
		req.reason      = (Haven__Referral__V1__HoldReason) v;
		if (cli_opt(&a, "text") != NULL) {
			req.text = (char *) cli_opt(&a, "text");
		}
		return (referral_call(c, what, M("PauseNeed"), &req.base));
	} else {
		Haven__Referral__V1__ResumeNeedRequest req =
		    HAVEN__REFERRAL__V1__RESUME_NEED_REQUEST__INIT;

		req.referral_id = (char *) a.pos[0];
		req.need_index  = need;
		if (cli_opt(&a, "text") != NULL) {
			req.text = (char *) cli_opt(&a, "text");
		}
		return (referral_call(c, what, M("ResumeNeed"), &req.base));
	}
}
