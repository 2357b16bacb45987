/*
 * cmd_consent.c - consent on the command line (subjects: cmd_subject.c; the audit log:
 * cmd_audit.c):
 *
 *   haven consent grant SUBJECT --purpose P[,P] (--recipient ORG[,ORG] | --accepting-provider)
 *                       --category C[,C] --given-by subject|guardian|representative
 *                       --method written|verbal|verbal-with-interpreter|electronic
 *                       --language L [--expires DAYS] (default 365)
 *   haven consent withdraw ID
 *   haven consent list SUBJECT
 *   haven consent check SUBJECT --purpose P [--recipient ORG] [--category C]
 *                       [--accepting-provider]
 *   haven consent receipt ID                       the signed receipt (JSON)
 *   haven consent receipt --verify FILE [--key PEM]  verify a saved receipt (with the node's
 *                                                  key, asked of the node, or a PEM file)
 *   haven consent receipt-key                      the node's receipt public key
 *   haven consent rotate-key                       rotate the key-encryption key now
 *
 * `consent check` exits 0 whether allowed or not: the answer is printed (and "allowed" in
 * --json). Purposes: referral, share-with-provider, contact (statistics is retired:
 * docs/consent.md).
 */
#include "cmd_consent.h"

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/pbenum.h"

#include "consent.h"

#include "haven/consent/v1/consent.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M(name) "haven.consent.v1.Consent/" name

#define RECEIPT_FILE_MAX (64 * 1024)
#define DAY_MS           (24LL * 3600 * 1000)

/* ---- arguments ------------------------------------------------------------------------ */

int
consent_cli_values(const cli_args *a, const char *name, char **out, size_t *n, char *buf,
    size_t bufsz)
{
	int k = cli_opt_list(a, name, out, LIST_MAX, buf, bufsz);

	*n = 0;
	if (k < 0) {
		return (cli_usage("--%s: at most %d values, %zu bytes in all", name, LIST_MAX,
		    bufsz - 1));
	}
	*n = (size_t) k;
	return (0);
}

static const enum_kind PURPOSE  = { &haven__consent__v1__purpose__descriptor, "PURPOSE_" };
const enum_kind        CATEGORY = { &haven__consent__v1__category__descriptor, "CATEGORY_" };
static const enum_kind GIVEN_BY = { &haven__consent__v1__given_by__descriptor, "GIVEN_BY_" };
static const enum_kind METHOD   = { &haven__consent__v1__method__descriptor, "METHOD_" };

const char *
consent_cli_kind_name(const enum_kind *k, int v, char buf[PBENUM_NAME_MAX])
{
	return (pbenum_name(k->ek_desc, k->ek_prefix, v, buf, PBENUM_NAME_MAX));
}

/* One enum name of option --name into *out; a usage error listing the valid names when it is
 * missing (and required) or not one of them. */
static int
enum_opt(const cli_args *a, const char *cmd, const char *name, const enum_kind *k, bool required,
    int *out)
{
	const char *s = cli_opt(a, name);
	char        names[256];

	if ((s == NULL && !required) ||
	    (s != NULL && pbenum_parse(k->ek_desc, k->ek_prefix, s, out) == 0)) {
		return (0);
	}
	return (cli_usage("%s needs --%s, one of: %s", cmd, name,
	    pbenum_list(k->ek_desc, k->ek_prefix, names, sizeof(names))));
}

/* A list of enum names into values. */
static int
enum_list(const cli_args *a, const char *name, const enum_kind *k, int *out, size_t *n)
{
	char *words[LIST_MAX];
	char  buf[1024], names[256];
	int   rc;

	if ((rc = consent_cli_values(a, name, words, n, buf, sizeof(buf))) != 0) {
		return (rc);
	}
	for (size_t i = 0; i < *n; i++) {
		if (pbenum_parse(k->ek_desc, k->ek_prefix, words[i], &out[i]) != 0) {
			return (cli_usage("--%s: '%s' is not one of %s", name, words[i],
			    pbenum_list(k->ek_desc, k->ek_prefix, names, sizeof(names))));
		}
	}
	return (0);
}

/* ---- output ----------------------------------------------------------------------------- */

json_t *
consent_cli_json_strings(char **v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++) {
		json_array_append_new(a, json_string(v[i]));
	}
	return (a);
}

json_t *
consent_cli_json_names(const int *v, size_t n, const enum_kind *k)
{
	json_t *a = json_array();
	char    name[PBENUM_NAME_MAX];

	for (size_t i = 0; i < n; i++) {
		json_array_append_new(a, json_string(consent_cli_kind_name(k, v[i], name)));
	}
	return (a);
}

void
consent_cli_join_names(const int *v, size_t n, const enum_kind *k, char *buf, size_t bufsz)
{
	char   name[PBENUM_NAME_MAX];
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && o < bufsz; i++) {
		o += (size_t) snprintf(buf + o, bufsz - o, "%s%s", i > 0 ? "," : "",
		    consent_cli_kind_name(k, v[i], name));
	}
}

void
consent_cli_join_strings(char **v, size_t n, char *buf, size_t bufsz)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && o < bufsz; i++) {
		o += (size_t) snprintf(buf + o, bufsz - o, "%s%s", i > 0 ? "," : "", v[i]);
	}
}

typedef Haven__Consent__V1__ConsentRecord record_t;

static json_t *
record_json(const record_t *c)
{
	json_t *j = json_object();
	char    name[PBENUM_NAME_MAX];

	json_object_set_new(j, "id", json_string(c->id));
	json_object_set_new(j, "subject", json_string(c->subject));
	json_object_set_new(j, "purposes",
	    consent_cli_json_names((const int *) c->purposes, c->n_purposes, &PURPOSE));
	json_object_set_new(j, "recipients",
	    consent_cli_json_strings(c->recipients, c->n_recipients));
	json_object_set_new(j, "accepting_provider", json_boolean(c->accepting_provider));
	json_object_set_new(j, "categories",
	    consent_cli_json_names((const int *) c->categories, c->n_categories, &CATEGORY));
	json_object_set_new(j, "given_by",
	    json_string(consent_cli_kind_name(&GIVEN_BY, (int) c->given_by, name)));
	json_object_set_new(j, "method",
	    json_string(consent_cli_kind_name(&METHOD, (int) c->method, name)));
	json_object_set_new(j, "language", json_string(c->language));
	json_object_set_new(j, "valid_from_ms", json_integer(c->valid_from_ms));
	json_object_set_new(j, "expires_ms", json_integer(c->expires_ms));
	json_object_set_new(j, "withdrawn_at_ms", json_integer(c->withdrawn_at_ms));
	json_object_set_new(j, "recorded_by", json_string(c->recorded_by));
	json_object_set_new(j, "recorded_at_ms", json_integer(c->recorded_at_ms));
	json_object_set_new(j, "version", json_integer((json_int_t) c->version));
	return (j);
}

static void
record_print(const record_t *c)
{
	char purposes[128], cats[128], recips[1024], t1[32], t2[32], t3[32];
	char by[PBENUM_NAME_MAX], method[PBENUM_NAME_MAX];

	consent_cli_join_names((const int *) c->purposes, c->n_purposes, &PURPOSE, purposes,
	    sizeof(purposes));
	consent_cli_join_names((const int *) c->categories, c->n_categories, &CATEGORY, cats,
	    sizeof(cats));
	consent_cli_join_strings(c->recipients, c->n_recipients, recips, sizeof(recips));
	printf("consent      %s\n", c->id);
	printf("subject      %s\n", c->subject);
	printf("purposes     %s\n", purposes);
	printf("recipients   %s%s%s\n", recips, c->accepting_provider && c->n_recipients ? "," : "",
	    c->accepting_provider ? "(the accepting provider)" : "");
	printf("categories   %s\n", cats);
	printf("given by     %s, %s, in %s\n",
	    consent_cli_kind_name(&GIVEN_BY, (int) c->given_by, by),
	    consent_cli_kind_name(&METHOD, (int) c->method, method), c->language);
	printf("valid        %s until %s\n", cli_when(c->valid_from_ms, t1, sizeof(t1)),
	    cli_when(c->expires_ms, t2, sizeof(t2)));
	printf("withdrawn    %s\n", cli_when(c->withdrawn_at_ms, t3, sizeof(t3)));
	printf("recorded by  %s (version %llu)\n",
	    c->recorded_by[0] != '\0' ? c->recorded_by : "the node's operator",
	    (unsigned long long) c->version);
}

/* ---- consent ---------------------------------------------------------------------------- */

static int
record_out(cli *c, record_t *r)
{
	if (c->json) {
		cli_print_json(record_json(r));
	} else {
		record_print(r);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return (0);
}

static int
do_grant(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__GrantRequest req = HAVEN__CONSENT__V1__GRANT_REQUEST__INIT;
	record_t                        *rep = NULL;
	int                              purposes[LIST_MAX], cats[LIST_MAX];
	size_t                           np, nc, nr;
	char                            *recips[LIST_MAX];
	char                             rbuf[2048];
	const char                      *days;
	char                            *end;
	long                             ndays = 365;
	int                              by, method;
	cli_args                         a;
	int                              rc;

	if ((rc = cli_args_parse(&a, argc, argv, "consent grant", 1,
	         "purpose recipient category given-by method language expires",
	         "accepting-provider")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("consent grant takes one SUBJECT"));
	}
	if ((rc = enum_list(&a, "purpose", &PURPOSE, purposes, &np)) != 0 ||
	    (rc = enum_list(&a, "category", &CATEGORY, cats, &nc)) != 0 ||
	    (rc = consent_cli_values(&a, "recipient", recips, &nr, rbuf, sizeof(rbuf))) != 0) {
		return (rc);
	}
	if (np == 0 || nc == 0) {
		return (cli_usage("consent grant needs --purpose and --category"));
	}
	if (nr == 0 && !cli_flag(&a, "accepting-provider")) {
		return (cli_usage("consent grant needs --recipient ORG or --accepting-provider"));
	}
	if ((rc = enum_opt(&a, "consent grant", "given-by", &GIVEN_BY, true, &by)) != 0 ||
	    (rc = enum_opt(&a, "consent grant", "method", &METHOD, true, &method)) != 0) {
		return (rc);
	}
	if (cli_opt(&a, "language") == NULL) {
		return (cli_usage("consent grant needs --language (the language consent was asked "
		                  "in, BCP 47: nl, ro, pt-BR)"));
	}
	req.language = (char *) cli_opt(&a, "language");
	if ((rc = cli_langs_check("language", &req.language, 1)) != 0) {
		return (rc);
	}
	if ((days = cli_opt(&a, "expires")) != NULL) {
		errno = 0;
		ndays = strtol(days, &end, 10);
		if (errno != 0 || *end != '\0' || ndays < 1 || ndays > 3650) {
			return (cli_usage("--expires: 1..3650 days, not '%s'", days));
		}
	}
	req.subject            = (char *) a.pos[0];
	req.purposes           = (Haven__Consent__V1__Purpose *) purposes;
	req.n_purposes         = np;
	req.categories         = (Haven__Consent__V1__Category *) cats;
	req.n_categories       = nc;
	req.recipients         = recips;
	req.n_recipients       = nr;
	req.accepting_provider = cli_flag(&a, "accepting-provider");
	req.given_by           = (Haven__Consent__V1__GivenBy) by;
	req.method             = (Haven__Consent__V1__Method) method;
	req.expires_ms         = hv_clock_wall_ms() + ndays * DAY_MS;
	if ((rc = cli_call(c, "consent grant", M("Grant"), &req.base,
	         &haven__consent__v1__consent_record__descriptor, (ProtobufCMessage **) &rep,
	         false)) != 0) {
		return (rc);
	}
	return (record_out(c, rep));
}

/* Commands that take one consent id: withdraw. */
static int
do_withdraw(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__WithdrawRequest req = HAVEN__CONSENT__V1__WITHDRAW_REQUEST__INIT;
	record_t                           *rep = NULL;
	cli_args                            a;
	int                                 rc;

	if ((rc = cli_args_parse(&a, argc, argv, "consent withdraw", 1, "", "")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("consent withdraw takes one consent ID"));
	}
	req.id = (char *) a.pos[0];
	if ((rc = cli_call(c, "consent withdraw", M("Withdraw"), &req.base,
	         &haven__consent__v1__consent_record__descriptor, (ProtobufCMessage **) &rep,
	         false)) != 0) {
		return (rc);
	}
	return (record_out(c, rep));
}

static int
do_list(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__ListConsentsRequest req =
	    HAVEN__CONSENT__V1__LIST_CONSENTS_REQUEST__INIT;
	Haven__Consent__V1__ListConsentsResponse *rep = NULL;
	cli_args                                  a;
	int                                       rc;
	int64_t                                   now = hv_clock_wall_ms();

	if ((rc = cli_args_parse(&a, argc, argv, "consent list", 1, "", "")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("consent list takes one SUBJECT"));
	}
	req.subject = (char *) a.pos[0];
	if ((rc = cli_call(c, "consent list", M("List"), &req.base,
	         &haven__consent__v1__list_consents_response__descriptor,
	         (ProtobufCMessage **) &rep, true)) != 0) {
		return (rc);
	}
	if (c->json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < rep->n_consents; i++) {
			json_array_append_new(arr, record_json(rep->consents[i]));
		}
		cli_print_json(arr);
	} else {
		printf("%-32s  %-9s  %-28s  %-24s  %s\n", "CONSENT", "STATE", "PURPOSES",
		    "RECIPIENTS", "EXPIRES");
		for (size_t i = 0; i < rep->n_consents; i++) {
			const record_t *r = rep->consents[i];
			char            purposes[128], recips[256], t[32];
			const char     *state = r->withdrawn_at_ms != 0 ? "withdrawn"
			        : now >= r->expires_ms                  ? "expired"
			        : now < r->valid_from_ms                ? "pending"
			                                                : "in force";
			consent_cli_join_names((const int *) r->purposes, r->n_purposes, &PURPOSE,
			    purposes, sizeof(purposes));
			consent_cli_join_strings(r->recipients, r->n_recipients, recips,
			    sizeof(recips));
			if (r->accepting_provider) {
				size_t o = strlen(recips);
				snprintf(recips + o, sizeof(recips) - o, "%saccepting-provider",
				    o > 0 ? "," : "");
			}
			printf("%-32s  %-9s  %-28s  %-24s  %s\n", r->id, state, purposes, recips,
			    cli_when(r->expires_ms, t, sizeof(t)));
		}
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
do_check(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__CheckRequest   req = HAVEN__CONSENT__V1__CHECK_REQUEST__INIT;
	Haven__Consent__V1__CheckResponse *rep = NULL;
	int                                purpose, cat = 0;
	cli_args                           a;
	int                                rc;

	if ((rc = cli_args_parse(&a, argc, argv, "consent check", 1, "purpose recipient category",
	         "accepting-provider")) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("consent check takes one SUBJECT"));
	}
	if ((rc = enum_opt(&a, "consent check", "purpose", &PURPOSE, true, &purpose)) != 0 ||
	    (rc = enum_opt(&a, "consent check", "category", &CATEGORY, false, &cat)) != 0) {
		return (rc);
	}
	req.subject   = (char *) a.pos[0];
	req.purpose   = (Haven__Consent__V1__Purpose) purpose;
	req.recipient = (char *) (cli_opt(&a, "recipient") ? cli_opt(&a, "recipient") : "");
	req.category  = (Haven__Consent__V1__Category) cat;
	req.recipient_is_accepting_provider = cli_flag(&a, "accepting-provider");
	if ((rc = cli_call(c, "consent check", M("Check"), &req.base,
	         &haven__consent__v1__check_response__descriptor, (ProtobufCMessage **) &rep,
	         false)) != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:b, s:s, s:s, s:s}", "allowed", rep->allowed,
		    "consent_id", rep->consent_id, "reason",
		    protobuf_c_enum_descriptor_get_value(
		        &haven__consent__v1__deny_reason__descriptor, (int) rep->reason) != NULL
		        ? protobuf_c_enum_descriptor_get_value(
		              &haven__consent__v1__deny_reason__descriptor, (int) rep->reason)
		              ->name
		        : "",
		    "message", rep->message));
	} else {
		printf("%s: %s\n", rep->allowed ? "allowed" : "denied", rep->message);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

/* The node's receipt key, raw (32 bytes). */
static int
receipt_key(cli *c, uint8_t pub[32], Haven__Consent__V1__ReceiptKey **out)
{
	Haven__Consent__V1__GetReceiptKeyRequest req =
	    HAVEN__CONSENT__V1__GET_RECEIPT_KEY_REQUEST__INIT;
	Haven__Consent__V1__ReceiptKey *rep = NULL;
	int                             rc;

	if ((rc = cli_call(c, "consent receipt-key", M("GetReceiptKey"), &req.base,
	         &haven__consent__v1__receipt_key__descriptor, (ProtobufCMessage **) &rep, true)) !=
	    0) {
		return (rc);
	}
	if (rep->public_key.len != 32) {
		protobuf_c_message_free_unpacked(&rep->base, NULL);
		return (
		    cli_fail(c, "consent receipt-key", HV_DATA_LOSS, "the key is not 32 bytes"));
	}
	memcpy(pub, rep->public_key.data, 32);
	if (out != NULL) {
		*out = rep;
	} else {
		protobuf_c_message_free_unpacked(&rep->base, NULL);
	}
	return (0);
}

static int
do_receipt_key(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__ReceiptKey *rep = NULL;
	uint8_t                         pub[32];
	char                            b64[64];
	int                             rc;

	(void) argv;
	if (argc != 0) {
		return (cli_usage("consent receipt-key takes no arguments"));
	}
	if ((rc = receipt_key(c, pub, &rep)) != 0) {
		return (rc);
	}
	(void) crypto_b64url_encode(b64, sizeof(b64), pub, sizeof(pub));
	if (c->json) {
		cli_print_json(json_pack("{s:s, s:s, s:s}", "key_id", rep->key_id, "public_key",
		    b64, "pem", rep->public_key_pem));
	} else {
		printf("key id      %s\npublic key  %s (Ed25519, base64url)\n%s", rep->key_id, b64,
		    rep->public_key_pem);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
do_receipt(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__GetReceiptRequest req = HAVEN__CONSENT__V1__GET_RECEIPT_REQUEST__INIT;
	Haven__Consent__V1__Receipt          *rep = NULL;
	const char                           *file, *keyfile;
	char                                 *text = NULL, *pem = NULL;
	size_t                                len, pemlen;
	uint8_t                               pub[32];
	char                                  why[128];
	cli_args                              a;
	int                                   rc;
	hv_status                             st;

	if ((rc = cli_args_parse(&a, argc, argv, "consent receipt", 1, "verify key", "")) != 0) {
		return (rc);
	}
	if ((file = cli_opt(&a, "verify")) == NULL) {
		if (a.npos != 1) {
			return (
			    cli_usage("consent receipt takes one consent ID (or --verify FILE)"));
		}
		req.id = (char *) a.pos[0];
		if ((rc = cli_call(c, "consent receipt", M("GetReceipt"), &req.base,
		         &haven__consent__v1__receipt__descriptor, (ProtobufCMessage **) &rep,
		         true)) != 0) {
			return (rc);
		}
		/* A receipt is JSON either way. */
		printf("%s\n", rep->json);
		protobuf_c_message_free_unpacked(&rep->base, NULL);
		return (0);
	}
	if (a.npos != 0) {
		return (cli_usage("consent receipt --verify FILE takes no consent ID"));
	}
	if ((keyfile = cli_opt(&a, "key")) != NULL) {
		if ((st = hv_file_read(keyfile, 16 * 1024, false, &pem, &pemlen)) != HV_OK ||
		    (st = crypto_ed25519_public(pem, pemlen, pub)) != HV_OK) {
			free(pem);
			return (
			    cli_fail(c, "consent receipt", st, "--key: not an Ed25519 key (PEM)"));
		}
		free(pem);
	} else if ((rc = receipt_key(c, pub, NULL)) != 0) {
		return (rc);
	}
	if ((st = hv_file_read(file, RECEIPT_FILE_MAX, false, &text, &len)) != HV_OK) {
		return (cli_fail(c, "consent receipt", st, "cannot read the receipt file"));
	}
	st = consent_receipt_verify(text, len, pub, why, sizeof(why));
	free(text);
	if (st != HV_OK) {
		return (cli_fail(c, "consent receipt", st, why));
	}
	if (c->json) {
		cli_print_json(json_pack("{s:s, s:b}", "receipt", file, "verified", 1));
	} else {
		printf("%s: the node's signature holds\n", file);
	}
	return (0);
}

static int
do_rotate_key(cli *c, int argc, char **argv)
{
	Haven__Consent__V1__RotateKeyRequest   req = HAVEN__CONSENT__V1__ROTATE_KEY_REQUEST__INIT;
	Haven__Consent__V1__RotateKeyResponse *rep = NULL;
	int                                    rc;

	(void) argv;
	if (argc != 0) {
		return (cli_usage("consent rotate-key takes no arguments"));
	}
	if ((rc = cli_call(c, "consent rotate-key", M("RotateKey"), &req.base,
	         &haven__consent__v1__rotate_key_response__descriptor, (ProtobufCMessage **) &rep,
	         false)) != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:I, s:I}", "kek_generation",
		    (json_int_t) rep->kek_generation, "rewrapped", (json_int_t) rep->rewrapped));
	} else {
		printf("key-encryption key now generation %llu; %llu data keys wrapped again\n",
		    (unsigned long long) rep->kek_generation, (unsigned long long) rep->rewrapped);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

int
cmd_consent(cli *c, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(cli *, int, char **);
	} subs[] = {
		{ "grant", do_grant },
		{ "withdraw", do_withdraw },
		{ "list", do_list },
		{ "check", do_check },
		{ "receipt", do_receipt },
		{ "receipt-key", do_receipt_key },
		{ "rotate-key", do_rotate_key },
	};

	for (size_t i = 0; argc >= 1 && i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(argv[0], subs[i].name) == 0) {
			return (subs[i].fn(c, argc - 1, argv + 1));
		}
	}
	return (cli_usage("consent grant|withdraw|list|check|receipt|receipt-key|rotate-key"));
}
