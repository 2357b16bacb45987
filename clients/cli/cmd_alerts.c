/*
 * cmd_alerts.c - `haven alerts`: an organisation's alert channels and its alerts
 * (haven.alerts.v1.Alerts, docs/alerts.md).
 *
 *   haven alerts show [ORG]
 *   haven alerts set [ORG] [--email A[,A...]] [--oncall A] [--webhook URL --secret-file F]
 *   haven alerts watch [ORG] [--after SEQ] [--wait MS]
 *   haven alerts test [ORG]
 *
 * ORG: the organisation (the operator must name one; an organisation signed in with --org acts
 * for itself). `set` replaces every channel: what is not given is removed. The webhook secret
 * is read from a file (never from the command line, where ps shows it), its bytes as they are
 * less a trailing newline.
 */
#include "cli.h"

#include "haven/alerts/v1/alerts.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALERTS_CLI_EMAILS 8
#define SECRET_FILE_MAX   64

static void
print_channels(cli *c, const Haven__Alerts__V1__Channels *ch, const char *org)
{
	if (c->json) {
		json_t *emails = json_array();

		for (size_t i = 0; i < ch->n_emails; i++) {
			json_array_append_new(emails, json_string(ch->emails[i]));
		}
		cli_print_json(json_pack("{s:s, s:o, s:s, s:s, s:b, s:I}", "org", org, "emails",
		    emails, "oncall_email", ch->oncall_email, "webhook_url", ch->webhook_url,
		    "has_webhook_secret", ch->has_webhook_secret, "version",
		    (json_int_t) ch->version));
		return;
	}
	printf("organisation  %s\ne-mail        ", org);
	for (size_t i = 0; i < ch->n_emails; i++) {
		printf("%s%s", i > 0 ? ", " : "", ch->emails[i]);
	}
	printf("%s\non call       %s\nwebhook       %s%s\nversion       %llu\n",
	    ch->n_emails == 0 ? "-" : "", ch->oncall_email[0] ? ch->oncall_email : "-",
	    ch->webhook_url[0] ? ch->webhook_url : "-",
	    ch->has_webhook_secret ? " (signed; secret set)" : "",
	    (unsigned long long) ch->version);
}

static int
alerts_show(cli *c, int argc, char **argv)
{
	Haven__Alerts__V1__GetChannelsRequest req = HAVEN__ALERTS__V1__GET_CHANNELS_REQUEST__INIT;
	Haven__Alerts__V1__Channels          *rep = NULL;
	cli_args                              a;
	int                                   rc;

	if ((rc = cli_args_parse(&a, argc, argv, "alerts show", 1, NULL, NULL)) != 0) {
		return (rc);
	}
	req.org_id = (char *) (a.npos > 0 ? a.pos[0] : "");
	if ((rc = cli_call(c, "alerts show", "haven.alerts.v1.Alerts/GetChannels", &req.base,
	         &haven__alerts__v1__channels__descriptor, (ProtobufCMessage **) &rep, true)) !=
	    0) {
		return (rc);
	}
	print_channels(c, rep, req.org_id[0] ? req.org_id : (c->org != NULL ? c->org : ""));
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

/* Reads the secret file into buf: *len bytes, a trailing newline dropped. */
static int
read_secret(const char *path, uint8_t buf[SECRET_FILE_MAX + 2], size_t *len)
{
	FILE  *f = fopen(path, "rb");
	size_t n;

	if (f == NULL) {
		return (cli_usage("--secret-file %s: %s", path, strerror(errno)));
	}
	n = fread(buf, 1, SECRET_FILE_MAX + 2, f);
	fclose(f);
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
	}
	if (n > SECRET_FILE_MAX) {
		return (cli_usage("--secret-file holds more than %d bytes", SECRET_FILE_MAX));
	}
	*len = n;
	return (0);
}

static int
alerts_set(cli *c, int argc, char **argv)
{
	Haven__Alerts__V1__SetChannelsRequest req = HAVEN__ALERTS__V1__SET_CHANNELS_REQUEST__INIT;
	Haven__Alerts__V1__Channels           ch  = HAVEN__ALERTS__V1__CHANNELS__INIT;
	Haven__Alerts__V1__Channels          *rep = NULL;
	char                                 *emails[ALERTS_CLI_EMAILS + 1];
	char                                  buf[4096];
	uint8_t                               secret[SECRET_FILE_MAX + 2];
	size_t                                slen = 0;
	const char                           *file;
	cli_args                              a;
	int                                   n, rc;

	if ((rc = cli_args_parse(&a, argc, argv, "alerts set", 1,
	         "email oncall webhook secret-file", NULL)) != 0) {
		return (rc);
	}
	if ((n = cli_opt_list(&a, "email", emails, ALERTS_CLI_EMAILS + 1, buf, sizeof(buf))) < 0) {
		return (cli_usage("--email: too many addresses or too long"));
	}
	file = cli_opt(&a, "secret-file");
	if ((cli_opt(&a, "webhook") != NULL) != (file != NULL)) {
		return (cli_usage("alerts set: --webhook and --secret-file go together"));
	}
	if (file != NULL && (rc = read_secret(file, secret, &slen)) != 0) {
		return (rc);
	}
	ch.emails       = emails;
	ch.n_emails     = (size_t) n;
	ch.oncall_email = (char *) (cli_opt(&a, "oncall") != NULL ? cli_opt(&a, "oncall") : "");
	ch.webhook_url  = (char *) (cli_opt(&a, "webhook") != NULL ? cli_opt(&a, "webhook") : "");
	ch.webhook_secret.data = secret;
	ch.webhook_secret.len  = slen;
	req.org_id             = (char *) (a.npos > 0 ? a.pos[0] : "");
	req.channels           = &ch;
	rc = cli_call(c, "alerts set", "haven.alerts.v1.Alerts/SetChannels", &req.base,
	    &haven__alerts__v1__channels__descriptor, (ProtobufCMessage **) &rep, true);
	memset(secret, 0, sizeof(secret));
	if (rc != 0) {
		return (rc);
	}
	print_channels(c, rep, req.org_id[0] ? req.org_id : (c->org != NULL ? c->org : ""));
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
parse_u64(const char *s, const char *what, uint64_t max, uint64_t *out)
{
	char              *end;
	unsigned long long v;

	errno = 0;
	v     = s != NULL ? strtoull(s, &end, 10) : 0;
	if (s != NULL && (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)) {
		return (cli_usage("%s must be 0..%llu", what, (unsigned long long) max));
	}
	*out = v;
	return (0);
}

static int
alerts_watch(cli *c, int argc, char **argv)
{
	Haven__Alerts__V1__WatchEventsRequest   req = HAVEN__ALERTS__V1__WATCH_EVENTS_REQUEST__INIT;
	Haven__Alerts__V1__WatchEventsResponse *rep = NULL;
	cli_args                                a;
	uint64_t                                wait = 0;
	int                                     rc;

	if ((rc = cli_args_parse(&a, argc, argv, "alerts watch", 1, "after wait", NULL)) != 0 ||
	    (rc = parse_u64(cli_opt(&a, "after"), "--after", UINT64_MAX, &req.after)) != 0 ||
	    (rc = parse_u64(cli_opt(&a, "wait"), "--wait (ms)", 25000, &wait)) != 0) {
		return (rc);
	}
	if (wait + 1000 > c->timeout_ms) {
		c->timeout_ms = (uint32_t) wait + 1000; /* the call outlives its wait */
	}
	req.org_id      = (char *) (a.npos > 0 ? a.pos[0] : "");
	req.max_wait_ms = (uint32_t) wait;
	req.page_size   = 200;
	if ((rc = cli_call(c, "alerts watch", "haven.alerts.v1.Alerts/WatchEvents", &req.base,
	         &haven__alerts__v1__watch_events_response__descriptor, (ProtobufCMessage **) &rep,
	         true)) != 0) {
		return (rc);
	}
	if (c->json) {
		json_t *events = json_array();

		for (size_t i = 0; i < rep->n_events; i++) {
			const Haven__Alerts__V1__AlertEvent *e = rep->events[i];

			json_array_append_new(events,
			    json_pack("{s:I, s:s, s:i, s:I, s:I, s:s, s:s}", "seq",
			        (json_int_t) e->seq, "kind",
			        protobuf_c_enum_descriptor_get_value(
			            &haven__alerts__v1__alert_kind__descriptor, (int) e->kind) !=
			                NULL
			            ? protobuf_c_enum_descriptor_get_value(
			                  &haven__alerts__v1__alert_kind__descriptor, (int) e->kind)
			                  ->name
			            : "UNKNOWN",
			        "urgency", (int) e->urgency, "time_ms", (json_int_t) e->time_ms,
			        "respond_by_ms", (json_int_t) e->respond_by_ms, "org", e->org_id,
			        "link", e->link));
		}
		cli_print_json(
		    json_pack("{s:o, s:I}", "events", events, "cursor", (json_int_t) rep->cursor));
	} else {
		for (size_t i = 0; i < rep->n_events; i++) {
			const Haven__Alerts__V1__AlertEvent *e = rep->events[i];
			const ProtobufCEnumValue *k = protobuf_c_enum_descriptor_get_value(
			    &haven__alerts__v1__alert_kind__descriptor, (int) e->kind);

			printf("%-6llu %-22s %-14s %s\n", (unsigned long long) e->seq,
			    k != NULL ? k->name : "UNKNOWN", e->org_id, e->link);
		}
		printf("cursor %llu\n", (unsigned long long) rep->cursor);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

/* `alerts test [ORG]`: one TEST alert through each configured channel, and what became of it.
 * Exit 0 when every channel took it, 14 (UNAVAILABLE) when one refused it or could not be
 * reached, 4 (DEADLINE_EXCEEDED) when one had not answered within the call (it is still tried
 * once), 9 (FAILED_PRECONDITION) when no channel is configured. */
static int
alerts_test(cli *c, int argc, char **argv)
{
	Haven__Alerts__V1__TestChannelsRequest req = HAVEN__ALERTS__V1__TEST_CHANNELS_REQUEST__INIT;
	Haven__Alerts__V1__TestChannelsResponse *rep = NULL;
	json_t                                  *results;
	cli_args                                 a;
	int                                      rc, ret = 0;

	if ((rc = cli_args_parse(&a, argc, argv, "alerts test", 1, NULL, NULL)) != 0) {
		return (rc);
	}
	req.org_id = (char *) (a.npos > 0 ? a.pos[0] : "");
	if ((rc = cli_call(c, "alerts test", "haven.alerts.v1.Alerts/TestChannels", &req.base,
	         &haven__alerts__v1__test_channels_response__descriptor, (ProtobufCMessage **) &rep,
	         false)) != 0) {
		return (rc);
	}
	results = c->json ? json_array() : NULL;
	for (size_t i = 0; i < rep->n_results; i++) {
		const Haven__Alerts__V1__ChannelResult *r = rep->results[i];
		char                                    ch[32], out[32];

		cli_enum_name(&haven__alerts__v1__channel__descriptor, (int) r->channel, ch,
		    sizeof(ch));
		cli_enum_name(&haven__alerts__v1__test_outcome__descriptor, (int) r->outcome, out,
		    sizeof(out));
		if (strncmp(out, "test-", 5) == 0) { /* "delivered", not "test-delivered" */
			memmove(out, out + 5, strlen(out + 5) + 1);
		}
		if (r->outcome == HAVEN__ALERTS__V1__TEST_OUTCOME__TEST_FAILED) {
			ret = 14;
		} else if (r->outcome != HAVEN__ALERTS__V1__TEST_OUTCOME__TEST_DELIVERED &&
		    ret == 0) {
			ret = 4;
		}
		if (results != NULL) {
			json_array_append_new(results,
			    json_pack("{s:s, s:s, s:s}", "channel", ch, "outcome", out, "error",
			        r->error));
		} else {
			printf("%-8s %-10s %s\n", ch, out, r->error);
		}
	}
	if (results != NULL) {
		cli_print_json(
		    json_pack("{s:I, s:o}", "seq", (json_int_t) rep->seq, "results", results));
	} else {
		printf("test alert seq %llu\n", (unsigned long long) rep->seq);
	}
	if (rep->n_results == 0) {
		fprintf(stderr,
		    "haven: alerts test: no channel is configured (haven alerts set)\n");
		ret = 9;
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (ret);
}

int
cmd_alerts(cli *c, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "show") == 0) {
		return (alerts_show(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "set") == 0) {
		return (alerts_set(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "watch") == 0) {
		return (alerts_watch(c, argc - 1, argv + 1));
	}
	if (argc >= 1 && strcmp(argv[0], "test") == 0) {
		return (alerts_test(c, argc - 1, argv + 1));
	}
	return (cli_usage("usage: haven alerts show [ORG] | alerts set [ORG] [--email A,...] "
	                  "[--oncall A] [--webhook URL --secret-file F] | alerts watch [ORG] "
	                  "[--after SEQ] [--wait MS] | alerts test [ORG]"));
}
