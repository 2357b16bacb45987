/*
 * cmd_subject.c - subjects on the command line:
 *
 *   haven subject create [--name N] [--dob YYYY-MM-DD] [--nationality X] [--language L]...
 *                        [--contact C] [--notes T] [--guardian G] [--minor]
 *                                                 prints the new id only
 *   haven subject show ID
 *   haven subject update ID [--name N] [--dob D] [--nationality X] [--language L]...
 *                        [--contact C] [--notes T] [--guardian G] [--minor yes|no]
 *                        [--clear FIELD[,FIELD]]  the fields given (or cleared) only
 *   haven subject erase ID
 *   haven subject transfer ID --to ORG
 *
 * Personal data is printed only by `subject show`, to a caller the node lets see it, and is
 * read from the options of `subject create` and `subject update` (mind the shell history:
 * `--notes -` reads the notes from standard input instead). --guardian is, for a minor, the
 * guardian or representative who gives consent and how to reach them.
 */
#include "cmd_consent.h"

#include "haven/crypto.h"

#include "haven/consent/v1/consent.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M(name)        "haven.consent.v1.Consent/" name
#define NOTES_READ_MAX (4 * 1024 + 1)

/* ---- subject ---------------------------------------------------------------------------- */

/* Reads the notes from standard input (for `--notes -`), at most the bound plus one byte so
 * that the node, not the CLI, says what the bound is. */
static char *
read_stdin(void)
{
	char  *buf = malloc(NOTES_READ_MAX + 1);
	size_t n;

	if (buf == NULL) {
		return (NULL);
	}
	n = fread(buf, 1, NOTES_READ_MAX, stdin);
	while (n > 0 && buf[n - 1] == '\n') {
		n--;
	}
	buf[n] = '\0';
	return (buf);
}

/* The personal data of subject create and update from the options ("" for those not given);
 * `--notes -` reads the notes from standard input into *notes (the caller wipes and frees
 * it). */
static int
personal_opts(cli *c, const char *what, const cli_args *a, Haven__Consent__V1__PersonalData *p,
    char **langs, char *lbuf, size_t lbufsz, char **notes)
{
	size_t nl;
	int    rc;

	*notes = NULL;
	if ((rc = consent_cli_values(a, "language", langs, &nl, lbuf, lbufsz)) != 0 ||
	    (rc = cli_langs_check("language", langs, nl)) != 0) {
		return (rc);
	}
	p->name          = (char *) (cli_opt(a, "name") ? cli_opt(a, "name") : "");
	p->date_of_birth = (char *) (cli_opt(a, "dob") ? cli_opt(a, "dob") : "");
	p->nationality   = (char *) (cli_opt(a, "nationality") ? cli_opt(a, "nationality") : "");
	p->contact       = (char *) (cli_opt(a, "contact") ? cli_opt(a, "contact") : "");
	p->notes         = (char *) (cli_opt(a, "notes") ? cli_opt(a, "notes") : "");
	p->guardian      = (char *) (cli_opt(a, "guardian") ? cli_opt(a, "guardian") : "");
	p->languages     = langs;
	p->n_languages   = nl;
	if (strcmp(p->notes, "-") == 0) {
		if ((*notes = read_stdin()) == NULL) {
			return (cli_fail(c, what, HV_RESOURCE_EXHAUSTED, "out of memory"));
		}
		p->notes = *notes;
	}
	return (0);
}

static int
do_subject_create(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__CreateSubjectRequest req =
	    HAVEN__CONSENT__V1__CREATE_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__PersonalData           p   = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__CreateSubjectResponse *rep = NULL;
	char                                      *langs[LIST_MAX];
	char                                       lbuf[1024];
	char                                      *notes = NULL;
	cli_args                                   a;
	int                                        rc;

	if ((rc = cli_args_parse(&a, argc, argv, "subject create", 0,
	         "name dob nationality language contact notes guardian", "minor")) != 0) {
		return (rc);
	}
	if ((rc = personal_opts(c, "subject create", &a, &p, langs, lbuf, sizeof(lbuf), &notes)) !=
	    0) {
		return (rc);
	}
	req.personal = &p;
	req.minor    = cli_flag(&a, "minor");
	rc           = cli_call(c, "subject create", M("CreateSubject"), &req.base,
	              &haven__consent__v1__create_subject_response__descriptor, (ProtobufCMessage **) &rep,
	              false);
	if (notes != NULL) {
		crypto_wipe(notes, strlen(notes));
		free(notes);
	}
	if (rc != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:s}", "id", rep->id));
	} else {
		printf("%s\n", rep->id);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
do_subject_show(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__GetSubjectRequest   req = HAVEN__CONSENT__V1__GET_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__Subject            *rep = NULL;
	const Haven__Consent__V1__PersonalData *p;
	char                                    langs[1024], shown[128], t[32];
	cli_args                                a;
	int                                     rc;

	if ((rc = cli_args_parse(&a, argc, argv, "subject show", 1, "", "")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("subject show takes one ID"));
	}
	req.id = (char *) a.pos[0];
	if ((rc = cli_call(c, "subject show", M("GetSubject"), &req.base,
	         &haven__consent__v1__subject__descriptor, (ProtobufCMessage **) &rep, true)) !=
	    0) {
		return (rc);
	}
	p = rep->personal;
	consent_cli_join_strings(p->languages, p->n_languages, langs, sizeof(langs));
	consent_cli_join_names((const int *) rep->shown, rep->n_shown, &CATEGORY, shown,
	    sizeof(shown));
	if (c->json) {
		json_t *j  = json_object();
		json_t *pj = json_object();
		json_object_set_new(j, "id", json_string(rep->id));
		json_object_set_new(j, "minor", json_boolean(rep->minor));
		json_object_set_new(j, "created_by", json_string(rep->created_by));
		json_object_set_new(j, "holder", json_string(rep->holder));
		json_object_set_new(j, "created_at_ms", json_integer(rep->created_at_ms));
		json_object_set_new(j, "shown",
		    consent_cli_json_names((const int *) rep->shown, rep->n_shown, &CATEGORY));
		json_object_set_new(pj, "name", json_string(p->name));
		json_object_set_new(pj, "date_of_birth", json_string(p->date_of_birth));
		json_object_set_new(pj, "nationality", json_string(p->nationality));
		json_object_set_new(pj, "languages",
		    consent_cli_json_strings(p->languages, p->n_languages));
		json_object_set_new(pj, "contact", json_string(p->contact));
		json_object_set_new(pj, "notes", json_string(p->notes));
		json_object_set_new(pj, "guardian", json_string(p->guardian));
		json_object_set_new(j, "personal", pj);
		cli_print_json(j);
	} else {
		printf("subject        %s%s\n", rep->id, rep->minor ? " (minor)" : "");
		printf("created by     %s, %s\n",
		    rep->created_by[0] != '\0' ? rep->created_by : "the node's operator",
		    cli_when(rep->created_at_ms, t, sizeof(t)));
		printf("held by        %s\n",
		    rep->holder[0] != '\0' ? rep->holder : "the node's operator");
		printf("shown          %s\n", shown);
		printf("name           %s\n", p->name);
		printf("date of birth  %s\n", p->date_of_birth);
		printf("nationality    %s\n", p->nationality);
		printf("languages      %s\n", langs);
		printf("contact        %s\n", p->contact);
		printf("notes          %s\n", p->notes);
		if (rep->minor || p->guardian[0] != '\0') {
			printf("guardian       %s\n", p->guardian);
		}
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

/* The fields of subject update: option name, field name (UpdateSubject's update_mask). */
static const struct {
	const char *opt, *field;
} update_fields[] = { { "name", "name" }, { "dob", "date_of_birth" },
	{ "nationality", "nationality" }, { "language", "languages" }, { "contact", "contact" },
	{ "notes", "notes" }, { "guardian", "guardian" }, { "minor", "minor" } };

#define UPDATE_FIELDS (sizeof(update_fields) / sizeof(update_fields[0]))

/* The update_mask of subject update: the options given and the fields of --clear. */
static int
update_mask(const cli_args *a, char **mask, size_t *n)
{
	char  *clear[LIST_MAX];
	char   cbuf[256];
	size_t nc;
	int    rc;

	*n = 0;
	if ((rc = consent_cli_values(a, "clear", clear, &nc, cbuf, sizeof(cbuf))) != 0) {
		return (rc);
	}
	for (size_t i = 0; i < UPDATE_FIELDS; i++) {
		bool named = cli_opt(a, update_fields[i].opt) != NULL;
		for (size_t k = 0; k < nc && !named; k++) {
			named = strcmp(clear[k], update_fields[i].field) == 0 ||
			    strcmp(clear[k], update_fields[i].opt) == 0;
		}
		if (named) {
			mask[(*n)++] = (char *) update_fields[i].field;
		}
	}
	for (size_t k = 0; k < nc; k++) {
		bool known = false;
		for (size_t i = 0; i < UPDATE_FIELDS && !known; i++) {
			known = strcmp(clear[k], update_fields[i].field) == 0 ||
			    strcmp(clear[k], update_fields[i].opt) == 0;
		}
		if (!known || strcmp(clear[k], "minor") == 0) {
			return (cli_usage(
			    "--clear: name, dob, nationality, language, contact, notes or "
			    "guardian"));
		}
	}
	return (*n == 0 ? cli_usage("subject update: give at least one field to change or --clear")
	                : 0);
}

/* haven subject update ID ...: the holder changes the fields given; the rest stay. */
static int
do_subject_update(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__UpdateSubjectRequest req =
	    HAVEN__CONSENT__V1__UPDATE_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__PersonalData p   = HAVEN__CONSENT__V1__PERSONAL_DATA__INIT;
	Haven__Consent__V1__Subject     *rep = NULL;
	char                            *langs[LIST_MAX], *mask[UPDATE_FIELDS];
	char                             lbuf[1024];
	char                            *notes = NULL;
	const char                      *minor;
	size_t                           nm;
	cli_args                         a;
	int                              rc;

	if ((rc = cli_args_parse(&a, argc, argv, "subject update", 1,
	         "name dob nationality language contact notes guardian minor clear", "")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("subject update takes one ID"));
	}
	if ((rc = update_mask(&a, mask, &nm)) != 0) {
		return (rc);
	}
	minor = cli_opt(&a, "minor");
	if (minor != NULL && strcmp(minor, "yes") != 0 && strcmp(minor, "no") != 0) {
		return (cli_usage("--minor: yes or no"));
	}
	if ((rc = personal_opts(c, "subject update", &a, &p, langs, lbuf, sizeof(lbuf), &notes)) !=
	    0) {
		return (rc);
	}
	req.id            = (char *) a.pos[0];
	req.personal      = &p;
	req.minor         = minor != NULL && strcmp(minor, "yes") == 0;
	req.update_mask   = mask;
	req.n_update_mask = nm;
	rc                = cli_call(c, "subject update", M("UpdateSubject"), &req.base,
	                   &haven__consent__v1__subject__descriptor, (ProtobufCMessage **) &rep, false);
	if (notes != NULL) {
		crypto_wipe(notes, strlen(notes));
		free(notes);
	}
	if (rc != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:s, s:b}", "id", rep->id, "minor", rep->minor));
	} else {
		printf("subject %s updated%s\n", rep->id, rep->minor ? " (minor)" : "");
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
do_subject_erase(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__EraseSubjectRequest req =
	    HAVEN__CONSENT__V1__ERASE_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__EraseSubjectResponse *rep = NULL;
	char                                      t[32];
	cli_args                                  a;
	int                                       rc;

	if ((rc = cli_args_parse(&a, argc, argv, "subject erase", 1, "", "")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("subject erase takes one ID"));
	}
	req.id = (char *) a.pos[0];
	if ((rc = cli_call(c, "subject erase", M("EraseSubject"), &req.base,
	         &haven__consent__v1__erase_subject_response__descriptor,
	         (ProtobufCMessage **) &rep, false)) != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:s, s:I, s:i, s:I}", "id", req.id, "erased_at_ms",
		    (json_int_t) rep->erased_at_ms, "consents_withdrawn",
		    (int) rep->consents_withdrawn, "kek_generation",
		    (json_int_t) rep->kek_generation));
	} else {
		printf("subject %s erased at %s; %u consents withdrawn; key-encryption key now "
		       "generation %llu\n",
		    req.id, cli_when(rep->erased_at_ms, t, sizeof(t)), rep->consents_withdrawn,
		    (unsigned long long) rep->kek_generation);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

/* haven subject transfer ID --to ORG: hands the subject to another referrer organisation. */
static int
do_subject_transfer(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__TransferSubjectRequest req =
	    HAVEN__CONSENT__V1__TRANSFER_SUBJECT_REQUEST__INIT;
	Haven__Consent__V1__Subject *rep = NULL;
	cli_args                     a;
	int                          rc;

	if ((rc = cli_args_parse(&a, argc, argv, "subject transfer", 1, "to", "")) != 0) {
		return (rc);
	}
	if (a.npos != 1 || cli_opt(&a, "to") == NULL) {
		return (cli_usage("subject transfer takes one ID and --to ORG"));
	}
	req.id     = (char *) a.pos[0];
	req.to_org = (char *) cli_opt(&a, "to");
	if ((rc = cli_call(c, "subject transfer", M("TransferSubject"), &req.base,
	         &haven__consent__v1__subject__descriptor, (ProtobufCMessage **) &rep, false)) !=
	    0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:s, s:s, s:s}", "id", rep->id, "holder", rep->holder,
		    "created_by", rep->created_by));
	} else {
		printf("subject %s is held by %s now\n", rep->id, rep->holder);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

int
cmd_subject(cli *c, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "create") == 0) {
		return (do_subject_create(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "show") == 0) {
		return (do_subject_show(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "update") == 0) {
		return (do_subject_update(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "erase") == 0) {
		return (do_subject_erase(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "transfer") == 0) {
		return (do_subject_transfer(c, argc - 1, argv + 1));
	}
	return (cli_usage("subject create|show|update|erase|transfer"));
}
