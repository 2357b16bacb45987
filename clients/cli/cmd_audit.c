/*
 * cmd_audit.c - the node's audit log on the command line:
 *
 *   haven audit verify                                    the chain and its checkpoints
 *   haven audit show [--subject ID] [--after SEQ] [--limit N]
 *       entries, oldest first; without --subject every entry (the operator), or those of
 *       the subjects the organisation holds
 *
 * Entries name who did what to which record, by ids: no personal data.
 */
#include "cli.h"

#include "haven/audit.h"
#include "haven/consent/v1/audit.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_AUDIT(name) "haven.audit.v1.Audit/" name

/* ---- audit ------------------------------------------------------------------------------ */

static int
do_audit_verify(cli *c, int argc, char **argv)
{
	Haven__Audit__V1__VerifyRequest   req     = HAVEN__AUDIT__V1__VERIFY_REQUEST__INIT;
	Haven__Audit__V1__VerifyResponse *rep     = NULL;
	char                              hex[65] = "";
	int                               rc;

	(void) argv;
	if (argc != 0) {
		return (cli_usage("audit verify takes no arguments"));
	}
	if ((rc = cli_call_long(c, "audit verify", M_AUDIT("Verify"), &req.base,
	         &haven__audit__v1__verify_response__descriptor, (ProtobufCMessage **) &rep,
	         true)) != 0) {
		return (rc);
	}
	if (rep->head_hash.len == 32) {
		audit_hash_hex(rep->head_hash.data, hex);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:b, s:I, s:I, s:s, s:I, s:s, s:I, s:I, s:I}", "intact",
		    rep->intact, "entries", (json_int_t) rep->entries, "head_seq",
		    (json_int_t) rep->head_seq, "head_hash", hex, "first_bad_seq",
		    (json_int_t) rep->first_bad_seq, "reason", rep->reason, "checkpoints",
		    (json_int_t) rep->checkpoints, "checkpoint_seq",
		    (json_int_t) rep->checkpoint_seq, "keyed_from", (json_int_t) rep->keyed_from));
	} else if (rep->intact) {
		printf(
		    "audit log intact: %llu entries; head %llu %s; %llu checkpoints, the last at "
		    "%llu; keyed after %llu\n",
		    (unsigned long long) rep->entries, (unsigned long long) rep->head_seq, hex,
		    (unsigned long long) rep->checkpoints, (unsigned long long) rep->checkpoint_seq,
		    (unsigned long long) rep->keyed_from);
	} else {
		printf("audit log BROKEN at entry %llu: %s\n",
		    (unsigned long long) rep->first_bad_seq, rep->reason);
	}
	rc = rep->intact ? 0 : (int) HV_DATA_LOSS;
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (rc);
}

static int
do_audit_show(cli *c, int argc, char **argv)
{
	Haven__Audit__V1__ListRequest   req = HAVEN__AUDIT__V1__LIST_REQUEST__INIT;
	Haven__Audit__V1__ListResponse *rep = NULL;
	json_t                         *arr = NULL;
	const char                     *v;
	char                           *end;
	unsigned long long              after = 0, limit = 0;
	bool                            all, header      = false;
	cli_args                        a;
	int                             rc;

	if ((rc = cli_args_parse(&a, argc, argv, "audit show", 0, "subject after limit", "")) !=
	    0) {
		return (rc);
	}
	if ((v = cli_opt(&a, "after")) != NULL) {
		errno = 0;
		after = strtoull(v, &end, 10);
		if (errno != 0 || *end != '\0') {
			return (cli_usage("--after: a sequence number, not '%s'", v));
		}
	}
	/* Without --limit, every entry (page by page); with it, one page. */
	if ((v = cli_opt(&a, "limit")) != NULL) {
		errno = 0;
		limit = strtoull(v, &end, 10);
		if (errno != 0 || *end != '\0' || limit < 1 || limit > 1000) {
			return (cli_usage("--limit: 1..1000, not '%s'", v));
		}
	}
	all           = limit == 0;
	req.subject   = (char *) (cli_opt(&a, "subject") ? cli_opt(&a, "subject") : "");
	req.limit     = (uint32_t) (all ? 1000 : limit);
	req.after_seq = after;
	if (c->json) {
		arr = json_array();
	}
	for (;;) {
		if ((rc = cli_call(c, "audit show", M_AUDIT("List"), &req.base,
		         &haven__audit__v1__list_response__descriptor, (ProtobufCMessage **) &rep,
		         true)) != 0) {
			json_decref(arr);
			return (rc);
		}
		/* The header once the first page is in: a failed call prints only its error. */
		if (arr == NULL && !header) {
			printf("%-8s  %-20s  %-13s  %-16s  %-34s  %-32s  %-20s  %-32s  %s\n", "SEQ",
			    "TIME", "ROLE", "ORG", "METHOD", "SUBJECT", "PURPOSE", "PERSON",
			    "RESULT");
			header = true;
		}
		for (size_t i = 0; i < rep->n_entries; i++) {
			const Haven__Audit__V1__AuditEntry *e = rep->entries[i];
			const char                         *m = strrchr(e->method, '.');
			char                                t[32];
			if (arr != NULL) {
				json_array_append_new(arr,
				    json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
				        "seq", (json_int_t) e->seq, "time_ms",
				        (json_int_t) e->time_ms, "caller_org", e->caller_org,
				        "caller_person", e->caller_person, "caller_role",
				        e->caller_role, "method", e->method, "subject", e->subject,
				        "purpose", e->purpose, "result", e->result_name));
			} else {
				printf(
				    "%-8llu  %-20s  %-13s  %-16s  %-34s  %-32s  %-20s  %-32s  %s\n",
				    (unsigned long long) e->seq, cli_when(e->time_ms, t, sizeof(t)),
				    e->caller_role, e->caller_org[0] ? e->caller_org : "-",
				    m != NULL ? m + 1 : e->method, e->subject[0] ? e->subject : "-",
				    e->purpose[0] ? e->purpose : "-",
				    e->caller_person[0] ? e->caller_person : "-", e->result_name);
			}
		}
		req.after_seq = rep->next_after_seq;
		protobuf_c_message_free_unpacked(&rep->base, NULL);
		if (!all || req.after_seq == 0) {
			break;
		}
	}
	if (arr != NULL) {
		cli_print_json(arr);
	}
	return (0);
}

int
cmd_audit(cli *c, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "verify") == 0) {
		return (do_audit_verify(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "show") == 0) {
		return (do_audit_show(c, argc - 1, argv + 1));
	}
	return (cli_usage("audit verify|show"));
}
