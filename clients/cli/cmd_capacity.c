/*
 * cmd_capacity.c - the capacity registry's services and places on the command line (the
 * directory's organisations are in cmd_org.c):
 *
 *   haven service register --org ORG --type T --region G --population P[,P] --total N
 *                          --contact C [--languages L[,L]] [--name N] [--id ID] [--unit U]
 *                          [--specialisation S[,S]] [--accessibility A[,A]] [--interval S]
 *                          [--available N]
 *   haven service show ID
 *   haven service retire ID --version V
 *   haven service approve ID --version V
 *   haven capacity set SERVICE AVAILABLE [--version V]
 *   haven capacity freed SERVICE [N]    haven capacity taken SERVICE [N]   (one step, no version)
 *   haven capacity show SERVICE
 *   haven capacity find [--type T] [--population P] [--language L]... [--region G]... [--free]
 *   haven capacity summary [--region G]...
 *   haven regions
 *
 * Enum values are written lower-case with '-' (legal-aid, mental-health, non-binary); an
 * unknown one is a usage error that lists the valid ones. `capacity set` without --version
 * reads the service's current version first and sets the figure on top of it: a convenience
 * for people at a keyboard, which can still lose a race (then ABORTED, exit code 10). Scripts
 * that read, decide and write should pass the version they read.
 */
#include "cli.h"

#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/pbenum.h"
#include "haven/capacity/v1/capacity.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M(name) "haven.capacity.v1.Capacity/" name

#define LIST_MAX 16

typedef Haven__Capacity__V1__Service     service_t;
typedef Haven__Capacity__V1__ServiceView view_t;

/* ---- enum names ------------------------------------------------------------------------- */

static const char *
type_name(int v, char *buf, size_t n)
{
	return (pbenum_name(&haven__capacity__v1__service_type__descriptor, NULL, v, buf, n));
}

static const char *
population_name(int v, char *buf, size_t n)
{
	return (pbenum_name(&haven__capacity__v1__population__descriptor, NULL, v, buf, n));
}

/* ---- output ------------------------------------------------------------------------------ */

static json_t *
json_strings(char **v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++) {
		json_array_append_new(a, json_string(v[i]));
	}
	return (a);
}

static json_t *
json_enums(const ProtobufCEnumDescriptor *d, const int *v, size_t n)
{
	json_t *a = json_array();
	char    buf[64];

	for (size_t i = 0; i < n; i++) {
		json_array_append_new(a, json_string(pbenum_name(d, NULL, v[i], buf, sizeof(buf))));
	}
	return (a);
}

static json_t *
service_json(const service_t *s)
{
	char    buf[64];
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:i, s:s, s:b, s:I, "
	                      "s:I, s:I}",
	    "id", s->id, "org_id", s->org_id, "name", s->name, "type",
	    type_name(s->type, buf, sizeof(buf)), "service_area", s->service_area, "maximum",
	    (int) s->maximum, "available", (int) s->available, "held", (int) s->held, "unit",
	    s->unit, "report_interval_s", (int) s->report_interval_s, "front_door_contact",
	    s->front_door_contact, "retired", s->retired, "version", (json_int_t) s->version,
	    "updated_ms", (json_int_t) s->updated_ms, "created_ms", (json_int_t) s->created_ms);

	json_object_set_new(j, "pending", json_boolean(s->pending));
	json_object_set_new(j, "occupied", json_integer(s->occupied));
	json_object_set_new(j, "populations",
	    json_enums(&haven__capacity__v1__population__descriptor, (const int *) s->populations,
	        s->n_populations));
	json_object_set_new(j, "languages", json_strings(s->languages, s->n_languages));
	json_object_set_new(j, "accessibility", json_strings(s->accessibility, s->n_accessibility));
	json_object_set_new(j, "specialisations",
	    json_enums(&haven__capacity__v1__exploitation__descriptor,
	        (const int *) s->specialisations, s->n_specialisations));
	return (j);
}

static bool
view_fresh(const view_t *v)
{
	return (v->freshness == HAVEN__CAPACITY__V1__FRESHNESS__FRESH);
}

static json_t *
view_json(const view_t *v)
{
	return (json_pack("{s:o, s:s, s:I, s:i}", "service", service_json(v->service), "freshness",
	    view_fresh(v) ? "fresh" : "unknown", "age_s", (json_int_t) v->age_s, "free",
	    (int) v->free));
}

/* "42s", "7m", "3h", "2d". */
static const char *
age_text(uint64_t s, char *buf, size_t n)
{
	if (s < 120) {
		snprintf(buf, n, "%llus", (unsigned long long) s);
	} else if (s < 2 * 3600) {
		snprintf(buf, n, "%llum", (unsigned long long) (s / 60));
	} else if (s < 2 * 86400) {
		snprintf(buf, n, "%lluh", (unsigned long long) (s / 3600));
	} else {
		snprintf(buf, n, "%llud", (unsigned long long) (s / 86400));
	}
	return (buf);
}

/* Free places as people read them: the number when fresh, "unknown" when not. */
static const char *
free_text(const view_t *v, char *buf, size_t n)
{
	if (v->service->retired) {
		snprintf(buf, n, "retired");
	} else if (v->service->pending) {
		snprintf(buf, n, "none until approved");
	} else if (!view_fresh(v)) {
		snprintf(buf, n, "unknown");
	} else {
		snprintf(buf, n, "%u", v->free);
	}
	return (buf);
}

/* Joins enum names (or strings) with commas into buf. */
static const char *
join_enums(const ProtobufCEnumDescriptor *d, const int *v, size_t n, char *buf, size_t bufsz)
{
	char   name[PBENUM_NAME_MAX];
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < bufsz; i++) {
		used += (size_t) snprintf(buf + used, bufsz - used, "%s%s", i > 0 ? "," : "",
		    pbenum_name(d, NULL, v[i], name, sizeof(name)));
	}
	return (buf);
}

static const char *
join_strings(char **v, size_t n, char *buf, size_t bufsz)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < bufsz; i++) {
		used += (size_t) snprintf(buf + used, bufsz - used, "%s%s", i > 0 ? "," : "", v[i]);
	}
	return (buf);
}

static void
print_view(const view_t *v, bool details)
{
	const service_t *s = v->service;
	char             buf[512], age[32], fr[32];

	printf("id              %s\n", s->id);
	if (details) {
		printf("name            %s\n", s->name);
		printf("organisation    %s\n", s->org_id);
		printf("type            %s\n", type_name(s->type, buf, sizeof(buf)));
		printf("region          %s\n", s->service_area);
		printf("populations     %s\n",
		    join_enums(&haven__capacity__v1__population__descriptor,
		        (const int *) s->populations, s->n_populations, buf, sizeof(buf)));
		printf("languages       %s\n",
		    join_strings(s->languages, s->n_languages, buf, sizeof(buf)));
		printf("accessibility   %s\n",
		    join_strings(s->accessibility, s->n_accessibility, buf, sizeof(buf)));
		printf("specialisations %s\n",
		    join_enums(&haven__capacity__v1__exploitation__descriptor,
		        (const int *) s->specialisations, s->n_specialisations, buf, sizeof(buf)));
		printf("front door      %s\n", s->front_door_contact);
		printf("report every    %us\n", s->report_interval_s);
	}
	printf("free            %s %s\n", free_text(v, fr, sizeof(fr)), s->unit);
	printf("available       %u of %u (%u held for offers; %u occupied by placements)\n",
	    s->available, s->maximum, s->held, s->occupied);
	printf("confirmed       %s ago (%s)\n", age_text(v->age_s, age, sizeof(age)),
	    view_fresh(v) ? "fresh" : "not within its report interval: unknown");
	printf("version         %llu%s\n", (unsigned long long) s->version,
	    s->retired       ? " (retired)"
	        : s->pending ? " (waits for approval)"
	                     : "");
}

/* ---- haven service ----------------------------------------------------------------------- */

static int
get_service(cli *c, const char *what, const char *id, view_t **out)
{
	Haven__Capacity__V1__GetServiceRequest req = HAVEN__CAPACITY__V1__GET_SERVICE_REQUEST__INIT;

	req.id = (char *) id;
	return (cli_call(c, what, M("GetService"), &req.base,
	    &haven__capacity__v1__service_view__descriptor, (ProtobufCMessage **) out, true));
}

/* Parses a comma list of enum names into out (at most max). */
static int
enum_list(const cli_args *a, const char *name, const ProtobufCEnumDescriptor *d, const char *what,
    int *out, size_t max, size_t *n)
{
	char *words[LIST_MAX];
	char  buf[1024];
	int   k = cli_opt_list(a, name, words, LIST_MAX, buf, sizeof(buf));
	int   rc;

	if (k < 0 || (size_t) k > max) {
		return (cli_usage("--%s takes at most %zu values", name, max));
	}
	for (int i = 0; i < k; i++) {
		if ((rc = cli_enum_parse(d, what, words[i], &out[i])) != 0) {
			return (rc);
		}
	}
	*n = (size_t) k;
	return (0);
}

static int
service_register(cli *c, int argc, char **argv)
{
	Haven__Capacity__V1__RegisterServiceRequest req =
	    HAVEN__CAPACITY__V1__REGISTER_SERVICE_REQUEST__INIT;
	service_t  s    = HAVEN__CAPACITY__V1__SERVICE__INIT;
	service_t *rep  = NULL;
	int        type = 0;
	int        pops[LIST_MAX];
	int        specs[LIST_MAX];
	char      *langs[LIST_MAX], *access[LIST_MAX];
	char       langbuf[1024], accbuf[2048];
	uint64_t   n;
	cli_args   a;
	int        k, rc;

	if ((rc = cli_args_parse(&a, argc, argv, "service register", 0,
	         "org type region population languages total contact name id specialisation "
	         "interval accessibility unit available",
	         NULL)) != 0) {
		return (rc);
	}
	if (cli_opt(&a, "org") == NULL || cli_opt(&a, "type") == NULL ||
	    cli_opt(&a, "region") == NULL || cli_opt(&a, "population") == NULL ||
	    cli_opt(&a, "total") == NULL || cli_opt(&a, "contact") == NULL) {
		return (cli_usage("service register needs --org, --type, --region, --population, "
		                  "--total and --contact"));
	}
	s.org_id             = (char *) cli_opt(&a, "org");
	s.service_area       = (char *) cli_opt(&a, "region");
	s.front_door_contact = (char *) cli_opt(&a, "contact");
	s.id                 = (char *) (cli_opt(&a, "id") != NULL ? cli_opt(&a, "id") : "");
	s.name               = (char *) (cli_opt(&a, "name") != NULL ? cli_opt(&a, "name") : "");
	s.unit               = (char *) (cli_opt(&a, "unit") != NULL ? cli_opt(&a, "unit") : "");
	if ((rc = cli_enum_parse(&haven__capacity__v1__service_type__descriptor, "type",
	         cli_opt(&a, "type"), &type)) != 0) {
		return (rc);
	}
	s.type = (Haven__Capacity__V1__ServiceType) type;
	if ((rc = enum_list(&a, "population", &haven__capacity__v1__population__descriptor,
	         "population", pops, LIST_MAX, &s.n_populations)) != 0 ||
	    (rc = enum_list(&a, "specialisation", &haven__capacity__v1__exploitation__descriptor,
	         "specialisation", specs, LIST_MAX, &s.n_specialisations)) != 0) {
		return (rc);
	}
	s.populations     = (Haven__Capacity__V1__Population *) pops;
	s.specialisations = (Haven__Capacity__V1__Exploitation *) specs;
	if ((k = cli_opt_list(&a, "languages", langs, LIST_MAX, langbuf, sizeof(langbuf))) < 0 ||
	    (s.n_languages = (size_t) k,
	        (k = cli_opt_list(&a, "accessibility", access, LIST_MAX, accbuf, sizeof(accbuf))) <
	            0)) {
		return (cli_usage("--languages and --accessibility take at most %d values each",
		    LIST_MAX));
	}
	if ((rc = cli_langs_check("languages", langs, s.n_languages)) != 0) {
		return (rc);
	}
	s.languages       = langs;
	s.n_accessibility = (size_t) k;
	s.accessibility   = access;
	if ((rc = cli_parse_u64("--total", cli_opt(&a, "total"), 1, 100000, &n)) != 0) {
		return (rc);
	}
	s.maximum = (uint32_t) n;
	if (cli_opt(&a, "available") != NULL) {
		if ((rc = cli_parse_u64("--available", cli_opt(&a, "available"), 0, s.maximum,
		         &n)) != 0) {
			return (rc);
		}
		s.available = (uint32_t) n;
	}
	if (cli_opt(&a, "interval") != NULL) {
		if ((rc = cli_parse_u64("--interval", cli_opt(&a, "interval"), 60, 604800, &n)) !=
		    0) {
			return (rc);
		}
		s.report_interval_s = (uint32_t) n;
	}
	req.service = &s;
	if ((rc = cli_call(c, "service register", M("RegisterService"), &req.base,
	         &haven__capacity__v1__service__descriptor, (ProtobufCMessage **) &rep, false)) !=
	    0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(service_json(rep));
	} else {
		printf("registered %s (version %llu)\n", rep->id,
		    (unsigned long long) rep->version);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
service_show(cli *c, int argc, char **argv, const char *cmd, bool details)
{
	view_t  *v = NULL;
	cli_args a;
	int      rc;

	if ((rc = cli_args_parse(&a, argc, argv, cmd, 1, NULL, NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("%s needs the service ID", cmd));
	}
	if ((rc = get_service(c, cmd, a.pos[0], &v)) != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(view_json(v));
	} else {
		print_view(v, details);
	}
	protobuf_c_message_free_unpacked(&v->base, NULL);
	return (0);
}

/* haven service retire|approve ID --version V: the two changes that name a service and the
 * version they are based on, and nothing else. */
static int
service_versioned(cli *c, int argc, char **argv, bool approve)
{
	Haven__Capacity__V1__RetireServiceRequest retire =
	    HAVEN__CAPACITY__V1__RETIRE_SERVICE_REQUEST__INIT;
	Haven__Capacity__V1__ApproveServiceRequest appr =
	    HAVEN__CAPACITY__V1__APPROVE_SERVICE_REQUEST__INIT;
	const char *what = approve ? "service approve" : "service retire";
	service_t  *rep  = NULL;
	cli_args    a;
	uint64_t    version;
	int         rc;

	if ((rc = cli_args_parse(&a, argc, argv, what, 1, "version", NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 1 || cli_opt(&a, "version") == NULL) {
		return (cli_usage("%s needs the service ID and --version V", what));
	}
	if ((rc = cli_parse_u64("--version", cli_opt(&a, "version"), 1, UINT64_MAX, &version)) !=
	    0) {
		return (rc);
	}
	retire.id = appr.id     = (char *) a.pos[0];
	retire.based_on_version = version;
	appr.based_on_version   = version;
	if ((rc = cli_call(c, what, approve ? M("ApproveService") : M("RetireService"),
	         approve ? &appr.base : &retire.base, &haven__capacity__v1__service__descriptor,
	         (ProtobufCMessage **) &rep, false)) != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(service_json(rep));
	} else {
		printf("%s %s (version %llu)\n", approve ? "approved" : "retired", rep->id,
		    (unsigned long long) rep->version);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

int
cmd_service(cli *c, int argc, char **argv)
{
	if (argc < 1) {
		return (cli_usage("service needs register, show, retire or approve"));
	}
	if (strcmp(argv[0], "register") == 0) {
		return (service_register(c, argc - 1, argv + 1));
	}
	if (strcmp(argv[0], "show") == 0) {
		return (service_show(c, argc - 1, argv + 1, "service show", true));
	}
	if (strcmp(argv[0], "retire") == 0 || strcmp(argv[0], "approve") == 0) {
		return (service_versioned(c, argc - 1, argv + 1, strcmp(argv[0], "approve") == 0));
	}
	return (
	    cli_usage("unknown service command '%s' (register, show, retire, approve)", argv[0]));
}

/* ---- haven capacity ---------------------------------------------------------------------- */

/* A service's figure after a change, and frees v. */
static void
print_figure(cli *c, view_t *v)
{
	char fr[32];

	if (c->json) {
		cli_print_json(view_json(v));
	} else {
		printf("%s: %s of %u %s free (%u held, %u occupied), version %llu\n",
		    v->service->id, free_text(v, fr, sizeof(fr)), v->service->maximum,
		    v->service->unit, v->service->held, v->service->occupied,
		    (unsigned long long) v->service->version);
	}
	protobuf_c_message_free_unpacked(&v->base, NULL);
}

static int
capacity_set(cli *c, int argc, char **argv)
{
	Haven__Capacity__V1__UpdateAvailabilityRequest req =
	    HAVEN__CAPACITY__V1__UPDATE_AVAILABILITY_REQUEST__INIT;
	view_t  *v = NULL;
	uint64_t n;
	cli_args a;
	int      rc;

	if ((rc = cli_args_parse(&a, argc, argv, "capacity set", 2, "version", NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 2) {
		return (cli_usage("capacity set needs SERVICE and AVAILABLE"));
	}
	if ((rc = cli_parse_u64("AVAILABLE", a.pos[1], 0, 100000, &n)) != 0) {
		return (rc);
	}
	req.service_id = (char *) a.pos[0];
	req.available  = (uint32_t) n;
	if (cli_opt(&a, "version") != NULL) {
		if ((rc = cli_parse_u64("--version", cli_opt(&a, "version"), 1, UINT64_MAX,
		         &req.based_on_version)) != 0) {
			return (rc);
		}
	} else {
		/* The convenience: on top of whatever version is current now. */
		if ((rc = get_service(c, "capacity set", req.service_id, &v)) != 0) {
			return (rc);
		}
		req.based_on_version = v->service->version;
		protobuf_c_message_free_unpacked(&v->base, NULL);
		v = NULL;
	}
	if ((rc = cli_call(c, "capacity set", M("UpdateAvailability"), &req.base,
	         &haven__capacity__v1__service_view__descriptor, (ProtobufCMessage **) &v,
	         false)) != 0) {
		return (rc);
	}
	print_figure(c, v);
	return (0);
}

/* haven capacity freed|taken SERVICE [N]: N places (1 by default) freed or taken in one step,
 * without a version. */
static int
capacity_change(cli *c, int argc, char **argv, bool freed)
{
	Haven__Capacity__V1__ChangeAvailabilityRequest req =
	    HAVEN__CAPACITY__V1__CHANGE_AVAILABILITY_REQUEST__INIT;
	const char *what = freed ? "capacity freed" : "capacity taken";
	view_t     *v    = NULL;
	uint64_t    n    = 1;
	cli_args    a;
	int         rc;

	if ((rc = cli_args_parse(&a, argc, argv, what, 2, NULL, NULL)) != 0) {
		return (rc);
	}
	if (a.npos < 1) {
		return (cli_usage("%s needs SERVICE (and how many places, 1 by default)", what));
	}
	if (a.npos == 2 && (rc = cli_parse_u64("N", a.pos[1], 1, 100000, &n)) != 0) {
		return (rc);
	}
	req.service_id = (char *) a.pos[0];
	req.delta      = freed ? (int32_t) n : -(int32_t) n;
	if ((rc = cli_call(c, what, M("ChangeAvailability"), &req.base,
	         &haven__capacity__v1__service_view__descriptor, (ProtobufCMessage **) &v,
	         false)) != 0) {
		return (rc);
	}
	print_figure(c, v);
	return (0);
}

/* One row of `capacity find`'s table. */
static void
print_view_row(const view_t *v)
{
	const service_t *s = v->service;
	char             tb[64], fr[32], age[32], lb[256], pb[256];

	printf("%-22s %-15s %-22s %-8s %-6u %-6s %-10s %s\n", s->id,
	    type_name(s->type, tb, sizeof(tb)), s->service_area, free_text(v, fr, sizeof(fr)),
	    s->maximum, age_text(v->age_s, age, sizeof(age)),
	    join_strings(s->languages, s->n_languages, lb, sizeof(lb)),
	    join_enums(&haven__capacity__v1__population__descriptor, (const int *) s->populations,
	        s->n_populations, pb, sizeof(pb)));
}

static int
capacity_find(cli *c, int argc, char **argv)
{
	Haven__Capacity__V1__FindServicesRequest req =
	    HAVEN__CAPACITY__V1__FIND_SERVICES_REQUEST__INIT;
	char    *regions[LIST_MAX], *langs[LIST_MAX];
	char     regbuf[1200], langbuf[700];
	char     token[128] = "";
	json_t  *all        = json_array();
	int      type = 0, pop = 0;
	int      k, rc;
	cli_args a;

	if ((rc = cli_args_parse(&a, argc, argv, "capacity find", 0,
	         "type population language languages region", "free")) != 0) {
		goto out;
	}
	if (cli_opt(&a, "type") != NULL &&
	    (rc = cli_enum_parse(&haven__capacity__v1__service_type__descriptor, "type",
	         cli_opt(&a, "type"), &type)) != 0) {
		goto out;
	}
	if (cli_opt(&a, "population") != NULL &&
	    (rc = cli_enum_parse(&haven__capacity__v1__population__descriptor, "population",
	         cli_opt(&a, "population"), &pop)) != 0) {
		goto out;
	}
	req.type       = (Haven__Capacity__V1__ServiceType) type;
	req.population = (Haven__Capacity__V1__Population) pop;
	if ((k = cli_opt_list(&a, "region", regions, LIST_MAX, regbuf, sizeof(regbuf))) < 0) {
		rc = cli_usage("--region: at most %d regions", LIST_MAX);
		goto out;
	}
	req.regions   = regions;
	req.n_regions = (size_t) k;
	/* --language L may repeat; --languages L,L is the same. */
	{
		char *more[LIST_MAX];
		char  morebuf[700];
		int   m;
		if ((k = cli_opt_list(&a, "language", langs, LIST_MAX, langbuf, sizeof(langbuf))) <
		        0 ||
		    (m = cli_opt_list(&a, "languages", more, LIST_MAX, morebuf, sizeof(morebuf))) <
		        0 ||
		    k + m > LIST_MAX) {
			rc = cli_usage("--language: at most %d languages", LIST_MAX);
			goto out;
		}
		for (int i = 0; i < m; i++) {
			langs[k + i] = more[i];
		}
		if ((rc = cli_langs_check("language", langs, (size_t) (k + m))) != 0) {
			goto out;
		}
		req.languages   = langs;
		req.n_languages = (size_t) (k + m);
		req.only_free   = cli_flag(&a, "free");
		req.page_size   = 500;
		do {
			Haven__Capacity__V1__FindServicesResponse *rep = NULL;

			req.page_token = token;
			if ((rc = cli_call(c, "capacity find", M("FindServices"), &req.base,
			         &haven__capacity__v1__find_services_response__descriptor,
			         (ProtobufCMessage **) &rep, true)) != 0) {
				goto out;
			}
			/* The header once the first page is in: a failed call prints only its
			 * error. */
			if (!c->json && token[0] == '\0') {
				printf("%-22s %-15s %-22s %-8s %-6s %-6s %-10s %s\n", "SERVICE",
				    "TYPE", "REGION", "FREE", "MAX", "AGE", "LANGUAGES",
				    "POPULATIONS");
			}
			for (size_t i = 0; i < rep->n_services; i++) {
				if (c->json) {
					json_array_append_new(all, view_json(rep->services[i]));
				} else {
					print_view_row(rep->services[i]);
				}
			}
			snprintf(token, sizeof(token), "%s", rep->next_page_token);
			protobuf_c_message_free_unpacked(&rep->base, NULL);
		} while (token[0] != '\0');
	}
	if (c->json) {
		cli_print_json(all);
		all = NULL;
	}
	rc = 0;
out:
	json_decref(all);
	return (rc);
}

static int
capacity_summary(cli *c, int argc, char **argv)
{
	Haven__Capacity__V1__SummaryRequest   req = HAVEN__CAPACITY__V1__SUMMARY_REQUEST__INIT;
	Haven__Capacity__V1__SummaryResponse *rep = NULL;
	char                                 *regions[LIST_MAX];
	char                                  regbuf[1200];
	cli_args                              a;
	int                                   k, rc;

	if ((rc = cli_args_parse(&a, argc, argv, "capacity summary", 0, "region", NULL)) != 0) {
		return (rc);
	}
	if ((k = cli_opt_list(&a, "region", regions, LIST_MAX, regbuf, sizeof(regbuf))) < 0) {
		return (cli_usage("--region: at most %d regions", LIST_MAX));
	}
	req.regions   = regions;
	req.n_regions = (size_t) k;
	if ((rc = cli_call(c, "capacity summary", M("Summary"), &req.base,
	         &haven__capacity__v1__summary_response__descriptor, (ProtobufCMessage **) &rep,
	         true)) != 0) {
		return (rc);
	}
	if (c->json) {
		json_t *cells = json_array();
		char    tb[64], pb[64];
		for (size_t i = 0; i < rep->n_cells; i++) {
			const Haven__Capacity__V1__SummaryCell *x = rep->cells[i];
			json_array_append_new(cells,
			    json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i}", "region", x->region,
			        "type", type_name(x->type, tb, sizeof(tb)), "population",
			        population_name(x->population, pb, sizeof(pb)), "services",
			        (int) x->services, "maximum", (int) x->maximum, "free",
			        (int) x->free, "stale_services", (int) x->stale_services));
		}
		cli_print_json(json_pack("{s:o, s:I}", "cells", cells, "as_of_ms",
		    (json_int_t) rep->as_of_ms));
	} else {
		printf("%-22s %-15s %-11s %8s %8s %8s %6s\n", "REGION", "TYPE", "POPULATION",
		    "SERVICES", "MAXIMUM", "FREE", "STALE");
		for (size_t i = 0; i < rep->n_cells; i++) {
			const Haven__Capacity__V1__SummaryCell *x = rep->cells[i];
			char                                    tb[64], pb[64];
			printf("%-22s %-15s %-11s %8u %8u %8u %6u\n", x->region,
			    type_name(x->type, tb, sizeof(tb)),
			    population_name(x->population, pb, sizeof(pb)), x->services, x->maximum,
			    x->free, x->stale_services);
		}
		if (rep->n_cells == 0) {
			printf("(no services)\n");
		}
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

int
cmd_capacity(cli *c, int argc, char **argv)
{
	if (argc < 1) {
		return (cli_usage("capacity needs set, freed, taken, show, find or summary"));
	}
	if (strcmp(argv[0], "set") == 0) {
		return (capacity_set(c, argc - 1, argv + 1));
	}
	if (strcmp(argv[0], "show") == 0) {
		return (service_show(c, argc - 1, argv + 1, "capacity show", false));
	}
	if (strcmp(argv[0], "freed") == 0 || strcmp(argv[0], "taken") == 0) {
		return (capacity_change(c, argc - 1, argv + 1, strcmp(argv[0], "freed") == 0));
	}
	if (strcmp(argv[0], "find") == 0) {
		return (capacity_find(c, argc - 1, argv + 1));
	}
	if (strcmp(argv[0], "summary") == 0) {
		return (capacity_summary(c, argc - 1, argv + 1));
	}
	return (cli_usage("unknown capacity command '%s' (set, freed, taken, show, find, summary)",
	    argv[0]));
}

/* ---- haven regions ----------------------------------------------------------------------- */

int
cmd_regions(cli *c, int argc, char **argv)
{
	Haven__Capacity__V1__ListRegionsRequest req =
	    HAVEN__CAPACITY__V1__LIST_REGIONS_REQUEST__INIT;
	Haven__Capacity__V1__ListRegionsResponse *rep = NULL;
	int                                       rc;

	(void) argv;
	if (argc != 0) {
		return (cli_usage("regions takes no arguments"));
	}
	if ((rc = cli_call(c, "regions", M("ListRegions"), &req.base,
	         &haven__capacity__v1__list_regions_response__descriptor,
	         (ProtobufCMessage **) &rep, true)) != 0) {
		return (rc);
	}
	if (c->json) {
		json_t *all = json_array();
		for (size_t i = 0; i < rep->n_regions; i++) {
			json_array_append_new(all,
			    json_pack("{s:s, s:o}", "name", rep->regions[i]->name, "neighbours",
			        json_strings(rep->regions[i]->neighbours,
			            rep->regions[i]->n_neighbours)));
		}
		cli_print_json(all);
	} else {
		printf("%-22s %s\n", "REGION", "NEIGHBOURS");
		for (size_t i = 0; i < rep->n_regions; i++) {
			char buf[1024];
			printf("%-22s %s\n", rep->regions[i]->name,
			    join_strings(rep->regions[i]->neighbours, rep->regions[i]->n_neighbours,
			        buf, sizeof(buf)));
		}
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}
