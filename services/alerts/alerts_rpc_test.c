/*
 * alerts_rpc_test.c - haven.alerts.v1.Alerts over inproc:// as the operator: bad input for
 * SetChannels, GetChannels and WatchEvents (each refused with a status and a message naming
 * the field), the secret never shown again, the metrics page, the long-poll (waits, wakes on
 * an event, caps its waiters, shows only the organisation's own events), TestChannels against
 * the real mail server and webhook receiver, and the addresses a webhook may not reach. Scope by
 * role is docs/authority.md's, held by tests/authority.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alerts_testutil.h"
#include "haven/clock.h"

/* ---- RPC --------------------------------------------------------------------------------- */

typedef struct rpc_fx {
	fixture      f;
	rpc_server  *srv;
	rpc_channel *ch;
} rpc_fx;

static void
rpc_open(rpc_fx *x)
{
	char url[100];

	fixture_open(&x->f, true);
	add_org(&x->f, "p-ngo", R_ROLE(REFERRER), "Amsterdam");
	snprintf(url, sizeof(url), "inproc://alerts-test-%d", g.stores);
	assert_int_equal(rpc_server_open(&x->srv, NULL), HV_OK);
	assert_int_equal(alerts_register(x->f.as, x->srv), HV_OK);
	assert_int_equal(rpc_server_listen(x->srv, url), HV_OK);
	assert_int_equal(rpc_server_start(x->srv), HV_OK);
	assert_int_equal(rpc_channel_open(&x->ch, url, NULL), HV_OK);
}

static void
rpc_close(rpc_fx *x)
{
	rpc_channel_close(x->ch);
	rpc_server_close(x->srv);
	fixture_close(&x->f);
}

static hv_status
call(rpc_fx *x, const char *m, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *d,
    ProtobufCMessage **reply, char *err)
{
	char             full[100];
	rpc_call_options o = { .timeout_ms = 5000 };

	snprintf(full, sizeof(full), "haven.alerts.v1.Alerts/%s", m);
	return (rpc_channel_call(x->ch, full, req, d, reply, &o, err, RPC_ERRMSG_MAX));
}

static hv_status
set_call(rpc_fx *x, const char *org, Channels *c, char *err)
{
	Haven__Alerts__V1__SetChannelsRequest r   = HAVEN__ALERTS__V1__SET_CHANNELS_REQUEST__INIT;
	ProtobufCMessage                     *out = NULL;
	hv_status                             st;

	r.org_id   = (char *) org;
	r.channels = c;
	st = call(x, "SetChannels", &r.base, &haven__alerts__v1__channels__descriptor, &out, err);
	if (out != NULL) {
		Channels *got = (Channels *) out;

		assert_int_equal(got->webhook_secret.len, 0); /* never shown again */
		protobuf_c_message_free_unpacked(out, NULL);
	}
	return (st);
}

static void
expect_bad(rpc_fx *x, const char *org, Channels *c, hv_status want, const char *words)
{
	char err[RPC_ERRMSG_MAX] = "";

	assert_int_equal(set_call(x, org, c, err), want);
	if (strstr(err, words) == NULL) {
		fail_msg("error '%s' does not say '%s'", err, words);
	}
}

static void
test_rpc_channels(void **state)
{
	rpc_fx                                x;
	Channels                              c     = HAVEN__ALERTS__V1__CHANNELS__INIT;
	char                                 *ok[]  = { "desk@ngo.test" };
	char                                 *bad[] = { "desk@ngo.test", "no-at-sign" };
	char                                 *many[9];
	char                                  err[RPC_ERRMSG_MAX];
	Haven__Alerts__V1__GetChannelsRequest g_req = HAVEN__ALERTS__V1__GET_CHANNELS_REQUEST__INIT;
	Channels                             *got   = NULL;

	(void) state;
	rpc_open(&x);
	expect_bad(&x, "p-ngo", NULL, HV_INVALID_ARGUMENT, "channels is required");
	expect_bad(&x, "", &c, HV_INVALID_ARGUMENT, "org_id is required");
	expect_bad(&x, "Bad Org", &c, HV_INVALID_ARGUMENT, "org_id must be");
	expect_bad(&x, "nobody", &c, HV_NOT_FOUND, "no enabled organisation");
	c.emails   = bad;
	c.n_emails = 2;
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "emails[1]");
	for (size_t i = 0; i < 9; i++) {
		many[i] = "a@b.test";
	}
	c.emails   = many;
	c.n_emails = 9;
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "at most 8");
	c.emails       = ok;
	c.n_emails     = 1;
	c.oncall_email = "on call@x.test";
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "oncall_email");
	c.oncall_email        = "";
	c.webhook_url         = "http://partner.example.org/hook";
	c.webhook_secret.data = (uint8_t *) SECRET;
	c.webhook_secret.len  = strlen(SECRET);
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "must be https://");
	c.webhook_url = "ftp://127.0.0.1/hook";
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "must be https://");
	c.webhook_url = "https://user:pw@partner.example.org/hook";
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "user name");
	c.webhook_url = "not a url";
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "not a URL");
	c.webhook_url        = "https://partner.example.org/hook";
	c.webhook_secret.len = 8;
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "webhook_secret must be");
	c.webhook_url = "";
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "without a webhook_url");

	/* Stored, shown without the secret, the version counting. */
	c.webhook_url        = "https://partner.example.org/hook";
	c.webhook_secret.len = strlen(SECRET);
	assert_int_equal(set_call(&x, "p-ngo", &c, err), HV_OK);
	assert_int_equal(set_call(&x, "p-ngo", &c, err), HV_OK);
	{
		char  *page = NULL;
		size_t len;

		assert_int_equal(metrics_render(rpc_server_metrics(x.srv), &page, &len), HV_OK);
		assert_non_null(strstr(page, "\nhaven_alerts_outbox 0\n"));
		assert_non_null(
		    strstr(page, "\nhaven_alerts_delivered_total{channel=\"webhook\"} 0\n"));
		assert_null(strstr(page, "p-ngo")); /* no organisation in a label */
		free(page);
	}
	g_req.org_id = "p-ngo";
	assert_int_equal(call(&x, "GetChannels", &g_req.base,
	                     &haven__alerts__v1__channels__descriptor, (ProtobufCMessage **) &got,
	                     err),
	    HV_OK);
	assert_int_equal(got->version, 2);
	assert_true(got->has_webhook_secret);
	assert_int_equal(got->webhook_secret.len, 0);
	assert_int_equal(got->n_emails, 1);
	protobuf_c_message_free_unpacked(&got->base, NULL);
	/* The same URL without a secret keeps the stored one (a form never gets it back); a new
	 * URL without one is refused. */
	c.webhook_secret.len = 0;
	assert_int_equal(set_call(&x, "p-ngo", &c, err), HV_OK);
	assert_int_equal(call(&x, "GetChannels", &g_req.base,
	                     &haven__alerts__v1__channels__descriptor, (ProtobufCMessage **) &got,
	                     err),
	    HV_OK);
	assert_int_equal(got->version, 3);
	assert_true(got->has_webhook_secret);
	protobuf_c_message_free_unpacked(&got->base, NULL);
	c.webhook_url = "https://other.example.org/hook";
	expect_bad(&x, "p-ngo", &c, HV_INVALID_ARGUMENT, "webhook_secret must be");
	c.webhook_url        = "https://partner.example.org/hook";
	c.webhook_secret.len = strlen(SECRET);
	g_req.org_id         = "";
	assert_int_equal(call(&x, "GetChannels", &g_req.base,
	                     &haven__alerts__v1__channels__descriptor, (ProtobufCMessage **) &got,
	                     err),
	    HV_INVALID_ARGUMENT);
	g_req.org_id = "nobody";
	assert_int_equal(call(&x, "GetChannels", &g_req.base,
	                     &haven__alerts__v1__channels__descriptor, (ProtobufCMessage **) &got,
	                     err),
	    HV_NOT_FOUND);
	rpc_close(&x);
}

typedef struct watch_arg {
	rpc_fx   *x;
	uint32_t  wait_ms;
	hv_status st;
	size_t    n;
	uint64_t  cursor;
	int64_t   took_ms;
} watch_arg;

static void *
watch_thread(void *p)
{
	watch_arg                              *w   = p;
	Haven__Alerts__V1__WatchEventsRequest   r   = HAVEN__ALERTS__V1__WATCH_EVENTS_REQUEST__INIT;
	Haven__Alerts__V1__WatchEventsResponse *out = NULL;
	char                                    err[RPC_ERRMSG_MAX];
	int64_t                                 t0 = hv_clock_mono_ms();

	r.org_id      = "p-ngo";
	r.max_wait_ms = w->wait_ms;
	w->st         = call(w->x, "WatchEvents", &r.base,
	            &haven__alerts__v1__watch_events_response__descriptor, (ProtobufCMessage **) &out, err);
	w->took_ms    = hv_clock_mono_ms() - t0;
	if (out != NULL) {
		w->n      = out->n_events;
		w->cursor = out->cursor;
		for (size_t i = 0; i < out->n_events; i++) {
			assert_string_equal(out->events[i]->org_id, "p-ngo");
		}
		protobuf_c_message_free_unpacked(&out->base, NULL);
	}
	return (NULL);
}

static void
test_rpc_watch(void **state)
{
	rpc_fx                                x;
	alerts_event                          ev    = { .ae_kind = ALERT(NEED_ACCEPTED),
		                            .ae_target           = "ref-x",
		                            .ae_orgs             = { "p-ngo" },
		                            .ae_norgs            = 1 };
	alerts_event                          other = { .ae_kind = ALERT(OFFER_NEW),
		                         .ae_target              = "off-x",
		                         .ae_orgs                = { "p-shelter" },
		                         .ae_norgs               = 1 };
	watch_arg                             w1, w2;
	pthread_t                             t1, t2;
	Haven__Alerts__V1__WatchEventsRequest r   = HAVEN__ALERTS__V1__WATCH_EVENTS_REQUEST__INIT;
	ProtobufCMessage                     *out = NULL;
	char                                  err[RPC_ERRMSG_MAX];

	(void) state;
	rpc_open(&x);
	add_org(&x.f, "p-shelter", R_ROLE(PROVIDER), "Amsterdam");
	enqueue(&x.f, &other); /* another organisation's: never seen */

	/* Nothing yet: answers at once with max_wait_ms 0. */
	w1 = (watch_arg) { .x = &x, .wait_ms = 0 };
	watch_thread(&w1);
	assert_int_equal(w1.st, HV_OK);
	assert_int_equal(w1.n, 0);

	/* A long poll waits, and returns when the event commits. */
	w1 = (watch_arg) { .x = &x, .wait_ms = 4000 };
	assert_int_equal(pthread_create(&t1, NULL, watch_thread, &w1), 0);
	usleep(300 * 1000);
	/* A second waiter is over watchers_max (1). */
	w2 = (watch_arg) { .x = &x, .wait_ms = 2000 };
	watch_thread(&w2);
	assert_int_equal(w2.st, HV_RESOURCE_EXHAUSTED);
	enqueue(&x.f, &ev);
	pthread_join(t1, NULL);
	assert_int_equal(w1.st, HV_OK);
	assert_int_equal(w1.n, 1);
	assert_true(w1.took_ms < 3000);
	assert_int_equal(w1.cursor, 2);

	/* Nothing after the cursor: a wait runs to its end. */
	r.org_id      = "p-ngo";
	r.after       = w1.cursor;
	r.max_wait_ms = 300;
	assert_int_equal(call(&x, "WatchEvents", &r.base,
	                     &haven__alerts__v1__watch_events_response__descriptor, &out, err),
	    HV_OK);
	assert_int_equal(((Haven__Alerts__V1__WatchEventsResponse *) out)->n_events, 0);
	assert_int_equal(((Haven__Alerts__V1__WatchEventsResponse *) out)->cursor, 2);
	protobuf_c_message_free_unpacked(out, NULL);
	out = NULL;

	/* The largest cursor: nothing follows it (no wrap to the start). */
	r.after       = UINT64_MAX;
	r.max_wait_ms = 0;
	assert_int_equal(call(&x, "WatchEvents", &r.base,
	                     &haven__alerts__v1__watch_events_response__descriptor, &out, err),
	    HV_OK);
	assert_int_equal(((Haven__Alerts__V1__WatchEventsResponse *) out)->n_events, 0);
	protobuf_c_message_free_unpacked(out, NULL);
	out = NULL;

	/* Bad input. */
	r.page_size = 201;
	assert_int_equal(call(&x, "WatchEvents", &r.base,
	                     &haven__alerts__v1__watch_events_response__descriptor, &out, err),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "page_size"));
	r.page_size = 0;
	r.org_id    = "x y";
	assert_int_equal(call(&x, "WatchEvents", &r.base,
	                     &haven__alerts__v1__watch_events_response__descriptor, &out, err),
	    HV_INVALID_ARGUMENT);
	r.org_id = "";
	assert_int_equal(call(&x, "WatchEvents", &r.base,
	                     &haven__alerts__v1__watch_events_response__descriptor, &out, err),
	    HV_INVALID_ARGUMENT);
	rpc_close(&x);
	(void) t2;
}

/* ---- TestChannels ------------------------------------------------------------------------ */

typedef struct probe_arg {
	rpc_fx                                  *x;
	const char                              *org;
	hv_status                                st;
	char                                     err[RPC_ERRMSG_MAX];
	Haven__Alerts__V1__TestChannelsResponse *out;
	atomic_bool                              done;
} probe_arg;

static void *
probe_thread(void *p)
{
	probe_arg                             *a = p;
	Haven__Alerts__V1__TestChannelsRequest r = HAVEN__ALERTS__V1__TEST_CHANNELS_REQUEST__INIT;

	r.org_id = (char *) a->org;
	a->st    = call(a->x, "TestChannels", &r.base,
	       &haven__alerts__v1__test_channels_response__descriptor, (ProtobufCMessage **) &a->out,
	       a->err);
	atomic_store(&a->done, true);
	return (NULL);
}

/* TestChannels of org while the (manual) sender runs rounds, as the node's sender thread
 * would. */
static void
probe(rpc_fx *x, const char *org, probe_arg *a)
{
	pthread_t t;

	memset(a, 0, sizeof(*a));
	a->x   = x;
	a->org = org;
	assert_int_equal(pthread_create(&t, NULL, probe_thread, a), 0);
	while (!atomic_load(&a->done)) {
		(void) alerts_run(x->f.as, NULL, NULL);
		usleep(20 * 1000);
	}
	pthread_join(t, NULL);
}

static const Haven__Alerts__V1__ChannelResult *
result_of(const Haven__Alerts__V1__TestChannelsResponse *out, Channel c)
{
	for (size_t i = 0; i < out->n_results; i++) {
		if (out->results[i]->channel == c) {
			return (out->results[i]);
		}
	}
	fail_msg("no result for channel %s", alerts_channel_name(c));
	return (NULL);
}

/* A test alert through the real outbox to the real mail server and webhook receiver: each
 * configured channel's outcome, tried once; a failing webhook reported, not retried; a test
 * with no channels still an event on WatchEvents; the rate; bad input. */
static void
test_rpc_test_channels(void **state)
{
	rpc_fx                                  x;
	probe_arg                               a;
	json_t                                 *mail, *hook;
	char                                    err[RPC_ERRMSG_MAX], key[64];
	Haven__Alerts__V1__WatchEventsRequest   w = HAVEN__ALERTS__V1__WATCH_EVENTS_REQUEST__INIT;
	Haven__Alerts__V1__WatchEventsResponse *wout = NULL;

	(void) state;
	rpc_open(&x);
	add_org(&x.f, "t-shelter", R_ROLE(PROVIDER), "Amsterdam");
	add_org(&x.f, "t-broken", R_ROLE(PROVIDER), "Amsterdam");
	set_channels(&x.f, "t-shelter", "/hook", true);
	set_channels(&x.f, "t-broken", "/fail-once/hook", false);

	probe(&x, "t-shelter", &a);
	assert_int_equal(a.st, HV_OK);
	assert_int_equal(a.out->n_results, 3);
	assert_true(a.out->seq > 0);
	assert_int_equal(result_of(a.out, CHANNEL(EMAIL))->outcome,
	    HAVEN__ALERTS__V1__TEST_OUTCOME__TEST_DELIVERED);
	assert_int_equal(result_of(a.out, CHANNEL(ONCALL))->outcome,
	    HAVEN__ALERTS__V1__TEST_OUTCOME__TEST_DELIVERED);
	assert_int_equal(result_of(a.out, CHANNEL(WEBHOOK))->outcome,
	    HAVEN__ALERTS__V1__TEST_OUTCOME__TEST_DELIVERED);
	/* What the receivers got: the test, signed, over STARTTLS, and nothing else. */
	snprintf(key, sizeof(key), "%llu.t-shelter.webhook", (unsigned long long) a.out->seq);
	hook = received("t-shelter", "webhook");
	assert_int_equal(json_array_size(hook), 1);
	assert_string_equal(field(hook, 0, "key"), key);
	assert_true(json_is_true(json_object_get(json_array_get(hook, 0), "sig_ok")));
	assert_non_null(strstr(field(hook, 0, "body"), "\"kind\":\"test\""));
	assert_non_null(strstr(field(hook, 0, "body"), "\"target\":\"\""));
	mail = received("t-shelter", "smtp");
	assert_int_equal(json_array_size(mail), 2); /* the desks, and the on-call address */
	for (size_t i = 0; i < 2; i++) {
		assert_true(json_is_true(json_object_get(json_array_get(mail, i), "tls")));
		assert_non_null(strstr(field(mail, i, "body"), "Subject: [haven] Test alert"));
	}
	json_decref(hook);
	json_decref(mail);
	assert_int_equal(table_count(&x.f, x.f.as->as_deliver), 0);
	protobuf_c_message_free_unpacked(&a.out->base, NULL);

	/* Again at once: refused by the rate, nothing written. */
	probe(&x, "t-shelter", &a);
	assert_int_equal(a.st, HV_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(a.err, "less than 15 s ago"));
	assert_int_equal(json_array_size(hook = received("t-shelter", NULL)), 3);
	json_decref(hook);

	/* A webhook that answers 503: reported with the status, and not tried again. */
	probe(&x, "t-broken", &a);
	assert_int_equal(a.st, HV_OK);
	assert_int_equal(a.out->n_results, 1);
	assert_int_equal(a.out->results[0]->outcome, HAVEN__ALERTS__V1__TEST_OUTCOME__TEST_FAILED);
	assert_non_null(strstr(a.out->results[0]->error, "HTTP status 503"));
	protobuf_c_message_free_unpacked(&a.out->base, NULL);
	assert_int_equal(table_count(&x.f, x.f.as->as_deliver), 0);
	run_expect(&x.f, 0, 0);

	/* No channels: no deliveries, but the event, for WatchEvents and open pages. */
	probe(&x, "p-ngo", &a);
	assert_int_equal(a.st, HV_OK);
	assert_int_equal(a.out->n_results, 0);
	w.org_id = "p-ngo";
	w.after  = a.out->seq - 1;
	assert_int_equal(call(&x, "WatchEvents", &w.base,
	                     &haven__alerts__v1__watch_events_response__descriptor,
	                     (ProtobufCMessage **) &wout, err),
	    HV_OK);
	assert_int_equal(wout->n_events, 1);
	assert_int_equal(wout->events[0]->kind, ALERT(TEST));
	assert_int_equal(wout->events[0]->seq, a.out->seq);
	protobuf_c_message_free_unpacked(&wout->base, NULL);
	/* from_now: the newest seq, no events. */
	w.from_now = true;
	w.after    = 0;
	assert_int_equal(call(&x, "WatchEvents", &w.base,
	                     &haven__alerts__v1__watch_events_response__descriptor,
	                     (ProtobufCMessage **) &wout, err),
	    HV_OK);
	assert_int_equal(wout->n_events, 0);
	assert_int_equal(wout->cursor, a.out->seq);
	protobuf_c_message_free_unpacked(&wout->base, NULL);
	protobuf_c_message_free_unpacked(&a.out->base, NULL);

	/* Bad input: a clear status, nothing written. */
	probe(&x, "x y", &a);
	assert_int_equal(a.st, HV_INVALID_ARGUMENT);
	assert_non_null(strstr(a.err, "org_id"));
	probe(&x, "", &a);
	assert_int_equal(a.st, HV_INVALID_ARGUMENT);
	probe(&x, "nobody", &a);
	assert_int_equal(a.st, HV_NOT_FOUND);
	rpc_close(&x);
}

/* Without webhook_allow_private an organisation's webhook cannot reach the node's own host or
 * network: http:// to loopback is refused when it is set, and every address connected to is
 * checked after DNS. */
static void
test_private_addresses(void **state)
{
	static const char *private_ips[] = { "127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1",
		"172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
		"224.0.0.1", "::1", "::", "fe80::1", "fd00::1", "fc00::2", "::ffff:127.0.0.1",
		"::ffff:10.0.0.1", "ff02::1", "not an address", "" };
	static const char *public_ips[]  = { "8.8.8.8", "172.32.0.1", "172.15.255.255",
		 "100.128.0.1", "192.169.0.1", "2001:db8::1", "2a00:1450::1", "::ffff:8.8.8.8" };
	Channels           c             = HAVEN__ALERTS__V1__CHANNELS__INIT;
	char               err[200];

	(void) state;
	for (size_t i = 0; i < sizeof(private_ips) / sizeof(private_ips[0]); i++) {
		if (!alerts_ip_private(private_ips[i])) {
			fail_msg("%s counted as public", private_ips[i]);
		}
	}
	for (size_t i = 0; i < sizeof(public_ips) / sizeof(public_ips[0]); i++) {
		if (alerts_ip_private(public_ips[i])) {
			fail_msg("%s counted as private", public_ips[i]);
		}
	}
	c.webhook_url         = "http://127.0.0.1:8080/hook";
	c.webhook_secret.data = (uint8_t *) SECRET;
	c.webhook_secret.len  = strlen(SECRET);
	assert_int_equal(alerts_check_channels(&c, false, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "https://"));
	assert_int_equal(alerts_check_channels(&c, true, err, sizeof(err)), HV_OK);
	c.webhook_url = "https://partner.example.org/hook";
	assert_int_equal(alerts_check_channels(&c, false, err, sizeof(err)), HV_OK);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rpc_channels),
		cmocka_unit_test(test_rpc_watch),
		cmocka_unit_test(test_rpc_test_channels),
		cmocka_unit_test(test_private_addresses),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
