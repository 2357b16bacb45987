/*
 * cmd_referral_util.c - what the CLI's referral commands share (cmd_referral.h): enum names as
 * the command line writes them (cli_enum_name), any reply as JSON, table helpers, a referral
 * printed as a table, and the parsing of a need and of region lists.
 */
#include "cmd_referral.h"

#include "haven/pbfield.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NEEDS_MAX   REF_CLI_NEEDS_MAX
#define REGIONS_MAX REF_CLI_REGIONS_MAX
#define LANGS_MAX   REF_CLI_LANGS_MAX

typedef Haven__Referral__V1__Referral Referral;

/* ---- JSON: any reply, field by field --------------------------------------------------------- */

static json_t *
value_json(const ProtobufCFieldDescriptor *f, const void *p)
{
	char buf[64];

	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		return (json_string(*(char *const *) p != NULL ? *(char *const *) p : ""));
	case PROTOBUF_C_TYPE_BOOL:
		return (json_boolean(*(const protobuf_c_boolean *) p));
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return (json_integer((json_int_t) * (const uint32_t *) p));
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return (json_integer((json_int_t) * (const int32_t *) p));
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return (json_integer((json_int_t) * (const uint64_t *) p));
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return (json_integer((json_int_t) * (const int64_t *) p));
	case PROTOBUF_C_TYPE_ENUM:
		return (
		    json_string(cli_enum_name(f->descriptor, *(const int *) p, buf, sizeof(buf))));
	case PROTOBUF_C_TYPE_MESSAGE:
		return (*(ProtobufCMessage *const *) p != NULL
		        ? ref_cli_msg_json(*(ProtobufCMessage *const *) p)
		        : json_null());
	default:
		return (json_null());
	}
}

json_t *
ref_cli_msg_json(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	json_t                           *o = json_object();

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char                     *p = (const char *) m + f->offset;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t  n = pbfield_count(m, f);
			json_t *a = json_array();

			for (size_t j = 0; j < n; j++) {
				json_array_append_new(a, value_json(f, pbfield_at(m, f, j)));
			}
			json_object_set_new(o, f->name, a);
		} else {
			json_object_set_new(o, f->name, value_json(f, p));
		}
	}
	return (o);
}

/* ---- table helpers --------------------------------------------------------------------------- */

const char *
ref_cli_when(uint64_t ms, char *buf, size_t n)
{
	time_t    t = (time_t) (ms / 1000);
	struct tm tm;

	if (ms == 0) {
		snprintf(buf, n, "-");
	} else if (gmtime_r(&t, &tm) == NULL || strftime(buf, n, "%Y-%m-%d %H:%M:%SZ", &tm) == 0) {
		snprintf(buf, n, "%llu", (unsigned long long) ms);
	}
	return (buf);
}

const char *
ref_cli_join(char **v, size_t n, char *buf, size_t bufsz)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < bufsz; i++) {
		used += (size_t) snprintf(buf + used, bufsz - used, "%s%s", i > 0 ? "," : "", v[i]);
	}
	if (n == 0) {
		snprintf(buf, bufsz, "-");
	}
	return (buf);
}

void
ref_cli_getopt_reset(void)
{
	optind = 0; /* glibc: start over, also its internal state */
	opterr = 1;
}

/* ---- a referral -------------------------------------------------------------------------------
 */

void
ref_cli_print_referral(const Referral *r)
{
	char a[64], b[64], t[32], buf[512];

	printf("referral     %s\n", r->id);
	printf("subject      %s\n", r->subject);
	printf("referrer     %s (%s)\n", r->referrer_org, r->home_region);
	printf("urgency      %s\n",
	    cli_enum_name(&haven__referral__v1__urgency__descriptor, (int) r->urgency, a,
	        sizeof(a)));
	printf("exploitation %s\n",
	    cli_enum_name(&haven__referral__v1__exploitation__descriptor, (int) r->exploitation, a,
	        sizeof(a)));
	printf("created      %s\n", ref_cli_when(r->created_ms, t, sizeof(t)));
	printf("excluded     %s\n",
	    ref_cli_join(r->excluded_regions, r->n_excluded_regions, buf, sizeof(buf)));
	printf("preferred    %s\n",
	    ref_cli_join(r->preferred_regions, r->n_preferred_regions, buf, sizeof(buf)));
	if (r->note[0] != '\0') {
		printf("note         %s\n", r->note);
	}
	printf("version      %llu\n\n", (unsigned long long) r->version);
	printf("%-4s %-16s %-12s %-10s %-20s %-16s %s\n", "NEED", "TYPE", "POPULATION", "STATE",
	    "SERVICE", "PROVIDER", "OFFER");
	for (size_t i = 0; i < r->n_needs; i++) {
		const Haven__Referral__V1__Need *n = r->needs[i];
		char                             s[32];
		printf("%-4u %-16s %-12s %-10s %-20s %-16s %s\n", n->index, TYPE_NAME(n->type, a),
		    POP_NAME(n->population, b), STATE_NAME(n->state, s),
		    n->service_id[0] != '\0' ? n->service_id : "-",
		    n->provider_org[0] != '\0' ? n->provider_org : "-",
		    n->offer_id[0] != '\0' ? n->offer_id : "-");
	}
	printf("\n%-20s %-16s %-4s %-22s %s\n", "TIME", "BY", "NEED", "STATE", "REASON");
	for (size_t i = 0; i < r->n_events; i++) {
		const Haven__Referral__V1__Event *e = r->events[i];
		char                              tr[2 * 64 + 8];
		snprintf(tr, sizeof(tr), "%s -> %s", e->from != 0 ? STATE_NAME(e->from, a) : "new",
		    STATE_NAME(e->to, b));
		printf("%-20s %-16s %-4u %-22s %s\n", ref_cli_when(e->time_ms, t, sizeof(t)),
		    e->actor_org[0] != '\0' ? e->actor_org : "(node)", e->need_index, tr,
		    e->reason);
	}
}

/* "shelter:women:nl,en" into a NeedRequest (strings point into s, which is changed). */
int
ref_cli_parse_need(char *s, Haven__Referral__V1__NeedRequest *n, char **langs, size_t *nlangs)
{
	char *type = s, *pop, *lang;
	int   v, rc;

	haven__referral__v1__need_request__init(n);
	if ((pop = strchr(type, ':')) == NULL) {
		return (cli_usage("--need is TYPE:POPULATION[:LANG,LANG], not '%s'", s));
	}
	*pop++ = '\0';
	if ((lang = strchr(pop, ':')) != NULL) {
		*lang++ = '\0';
	}
	if ((rc = cli_enum_parse(&haven__capacity__v1__service_type__descriptor, "type", type,
	         &v)) != 0) {
		return (rc);
	}
	n->type = (Haven__Capacity__V1__ServiceType) v;
	if ((rc = cli_enum_parse(&haven__capacity__v1__population__descriptor, "population", pop,
	         &v)) != 0) {
		return (rc);
	}
	n->population = (Haven__Capacity__V1__Population) v;
	*nlangs       = 0;
	while (lang != NULL && *lang != '\0') {
		char *comma = strchr(lang, ',');
		if (comma != NULL) {
			*comma = '\0';
		}
		if (*lang != '\0') {
			if (*nlangs == LANGS_MAX) {
				return (cli_usage("--need: at most %d languages", LANGS_MAX));
			}
			langs[(*nlangs)++] = lang;
		}
		lang = comma != NULL ? comma + 1 : NULL;
	}
	n->n_languages = *nlangs;
	n->languages   = langs;
	return (0);
}

/* Appends a region to an --exclude or --prefer list of at most REGIONS_MAX. */
int
ref_cli_add_region(char **list, size_t *n, char *region, const char *what)
{
	if (*n == REGIONS_MAX) {
		return (cli_usage("%s: at most %d regions each", what, REGIONS_MAX));
	}
	list[(*n)++] = region;
	return (0);
}

int
ref_cli_referral_reply(cli *c, ProtobufCMessage *rep)
{
	if (c->json) {
		cli_print_json(ref_cli_msg_json(rep));
	} else {
		ref_cli_print_referral((const Referral *) rep);
	}
	protobuf_c_message_free_unpacked(rep, NULL);
	return (0);
}
