/*
 * alerts_test.c - the alerts service against real servers on loopback: an SMTP server that
 * requires STARTTLS (python3-aiosmtpd, with a server certificate from deploy/pki.sh) and an
 * HTTP webhook receiver that checks the HMAC-SHA256 signature (alerts_receiver.py). The
 * outbox in the event's transaction, retries with back-off under one idempotency key, a crash
 * between enqueue and send (delivered once after the restart), the timers (expiring,
 * unacknowledged with the on-call address and the region's coordinators, waiting then unmet),
 * and what is counted for the metrics page. The RPCs are in alerts_rpc_test.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alerts_testutil.h"
#include "haven/clock.h"

/* ---- delivery ---------------------------------------------------------------------------- */

/* A new immediate offer: one e-mail to both desks over STARTTLS, one signed webhook, the same
 * key shape, the link, and nothing of the person. */
static void
test_delivered(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(OFFER_NEW),
		.ae_urgency          = 1,
		.ae_respond_by_ms    = 1796530000000ull,
		.ae_target           = "off-00aa11bb22cc33dd",
		.ae_orgs             = { "d-shelter" },
		.ae_norgs            = 1 };
	json_t      *mail, *hook, *body;
	uint64_t     n;

	(void) state;
	fixture_open(&f, true);
	add_org(&f, "d-shelter", R_ROLE(PROVIDER), "Amsterdam");
	set_channels(&f, "d-shelter", "/hook", true);
	enqueue(&f, &ev);
	assert_int_equal(alerts_outbox_count(f.as, &n), HV_OK);
	assert_int_equal(n, 2); /* e-mail and webhook; on-call only for escalations */
	run_expect(&f, 2, 0);
	assert_int_equal(alerts_outbox_count(f.as, &n), HV_OK);
	assert_int_equal(n, 0);
	run_expect(&f, 0, 0);

	assert_int_equal(atomic_load(&f.as->as_sent[CHANNEL(EMAIL)]), 1);
	assert_int_equal(atomic_load(&f.as->as_sent[CHANNEL(WEBHOOK)]), 1);
	mail = received("d-shelter", "smtp");
	assert_int_equal(json_array_size(mail), 1);
	assert_true(json_is_true(json_object_get(json_array_get(mail, 0), "tls")));
	assert_int_equal(json_array_size(json_object_get(json_array_get(mail, 0), "rcpt")), 2);
	assert_string_equal(field(mail, 0, "key"), "1.d-shelter.email");
	assert_non_null(
	    strstr(field(mail, 0, "body"), "https://haven.test/#/offers/off-00aa11bb22cc33dd"));
	assert_non_null(strstr(field(mail, 0, "body"), "immediate"));

	hook = received("d-shelter", "webhook");
	assert_int_equal(json_array_size(hook), 1);
	assert_true(json_is_true(json_object_get(json_array_get(hook, 0), "sig_ok")));
	assert_string_equal(field(hook, 0, "key"), "1.d-shelter.webhook");
	body = json_loads(field(hook, 0, "body"), 0, NULL);
	assert_non_null(body);
	assert_string_equal(json_string_value(json_object_get(body, "kind")), "offer.new");
	assert_string_equal(json_string_value(json_object_get(body, "urgency")), "immediate");
	assert_string_equal(json_string_value(json_object_get(body, "id")), "1.d-shelter.webhook");
	assert_int_equal(json_integer_value(json_object_get(body, "respond_by_ms")),
	    1796530000000ll);
	assert_string_equal(json_string_value(json_object_get(body, "link")),
	    "https://haven.test/#/offers/off-00aa11bb22cc33dd");
	json_decref(body);
	json_decref(mail);
	json_decref(hook);
	fixture_close(&f);
}

/* An event whose transaction rolls back leaves no alert; an organisation without channels
 * gets the event (WatchEvents) and no delivery. */
static void
test_rollback_and_no_channels(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(NEED_PLACED),
		.ae_target           = "ref-1234",
		.ae_orgs             = { "r-ngo", "r-quiet" },
		.ae_norgs            = 2 };
	enq_job      j  = { .ev = &ev, .fail = true };
	uint64_t     n;

	(void) state;
	fixture_open(&f, true);
	add_org(&f, "r-ngo", R_ROLE(REFERRER), "Rotterdam");
	add_org(&f, "r-quiet", R_ROLE(REFERRER), "Rotterdam");
	set_channels(&f, "r-ngo", "/hook", false);
	j.as = f.as;
	assert_int_equal(store_write(f.st, enq_fn, &j), HV_ABORTED);
	assert_int_equal(alerts_outbox_count(f.as, &n), HV_OK);
	assert_int_equal(n, 0);
	enqueue(&f, &ev);
	assert_int_equal(alerts_outbox_count(f.as, &n), HV_OK);
	assert_int_equal(n, 1);
	run_expect(&f, 1, 0);
	fixture_close(&f);
}

/* A receiver that fails once: the delivery stays with one attempt, waits its back-off, and
 * the retry carries the same idempotency key. */
static void
test_retry(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(NEED_DECLINED),
		.ae_target           = "ref-77",
		.ae_orgs             = { "t-ngo" },
		.ae_norgs            = 1 };
	json_t      *hook;
	uint64_t     n;

	(void) state;
	fixture_open(&f, true);
	add_org(&f, "t-ngo", R_ROLE(REFERRER), "Rotterdam");
	set_channels(&f, "t-ngo", "/fail-once", false);
	enqueue(&f, &ev);
	run_expect(&f, 0, 1);
	run_expect(&f, 0, 0); /* not due yet: 1 s back-off */
	assert_int_equal(alerts_outbox_count(f.as, &n), HV_OK);
	assert_int_equal(n, 1);
	assert_int_equal(atomic_load(&f.as->as_failed[CHANNEL(WEBHOOK)]), 1);
	atomic_store(&clock_offset, 1500);
	run_expect(&f, 1, 0);
	assert_int_equal(atomic_load(&f.as->as_sent[CHANNEL(WEBHOOK)]), 1);
	hook = received("t-ngo", "webhook");
	assert_int_equal(json_array_size(hook), 2);
	assert_string_equal(field(hook, 0, "key"), field(hook, 1, "key"));
	json_decref(hook);
	fixture_close(&f);
}

/* A partner system that accepts the connection and never answers costs its batch one
 * timeout: the other organisation's alert in the same batch is delivered, and the silent one
 * is tried again later. */
static void
test_silent_receiver(void **state)
{
	fixture            f;
	alerts_event       ev = { .ae_kind = ALERT(OFFER_NEW),
		      .ae_urgency          = 1,
		      .ae_target           = "off-s1",
		      .ae_orgs             = { "s-silent", "s-awake" },
		      .ae_norgs            = 2 };
	Channels           c  = HAVEN__ALERTS__V1__CHANNELS__INIT;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t          sl = sizeof(sa);
	char               url[100], err[200];
	int                s;
	int64_t            t0;
	json_t            *got;

	(void) state;
	/* Listening, never accepting: connects succeed (the backlog), nothing ever answers. */
	assert_true((s = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(listen(s, 16), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *) &sa, &sl), 0);
	fixture_open(&f, true);
	add_org(&f, "s-silent", R_ROLE(PROVIDER), "Limburg");
	add_org(&f, "s-awake", R_ROLE(PROVIDER), "Limburg");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", ntohs(sa.sin_port));
	c.webhook_url         = url;
	c.webhook_secret.data = (uint8_t *) SECRET;
	c.webhook_secret.len  = strlen(SECRET);
	assert_int_equal(alerts_set_channels(f.as, "s-silent", &c, NULL, err, sizeof(err)), HV_OK);
	set_channels(&f, "s-awake", "/hook", false);
	enqueue(&f, &ev);
	t0 = hv_clock_mono_ms();
	run_expect(&f, 1, 1);
	assert_true(hv_clock_mono_ms() - t0 < 4000); /* one timeout (2 s), not one per delivery */
	got = received("s-awake", NULL);
	assert_int_equal(json_array_size(got), 1);
	json_decref(got);
	assert_int_equal(table_count(&f, f.as->as_deliver), 1); /* the silent one waits */
	fixture_close(&f);
	close(s);
}

/* The node dies between the event's commit and the send: after the restart the alert goes
 * out once, and never again. */
static void
test_crash_between_enqueue_and_send(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(OFFER_NEW),
		.ae_urgency          = 1,
		.ae_target           = "off-99",
		.ae_orgs             = { "c-shelter" },
		.ae_norgs            = 1 };
	pid_t        pid;
	int          wst;
	json_t      *got;

	(void) state;
	fixture_open(&f, true);
	add_org(&f, "c-shelter", R_ROLE(PROVIDER), "Limburg");
	set_channels(&f, "c-shelter", "/hook", true);
	fixture_close(&f);
	if ((pid = fork()) == 0) {
		fixture c;

		snprintf(c.dir, sizeof(c.dir), "%s", f.dir);
		fixture_open(&c, false);
		enqueue(&c, &ev);
		kill(getpid(), SIGKILL); /* committed, never sent */
		_exit(1);
	}
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFSIGNALED(wst));
	got = received("c-shelter", NULL);
	assert_int_equal(json_array_size(got), 0);
	json_decref(got);

	fixture_open(&f, false);
	run_expect(&f, 2, 0);
	run_expect(&f, 0, 0);
	fixture_close(&f);
	fixture_open(&f, false);
	run_expect(&f, 0, 0);
	got = received("c-shelter", NULL);
	assert_int_equal(json_array_size(got), 2); /* one e-mail, one webhook */
	assert_string_not_equal(field(got, 0, "via"), field(got, 1, "via"));
	json_decref(got);
	fixture_close(&f);
}

/* A mail server whose certificate cannot be verified, or one that offers no STARTTLS (the
 * webhook port, which speaks HTTP), is never sent to; bad URLs at open are refused. */
static void
test_smtp_refuses_clear(void **state)
{
	fixture        f;
	alerts_event   ev = { .ae_kind = ALERT(NEED_PLACED),
		  .ae_target           = "ref-5",
		  .ae_orgs             = { "m-ngo" },
		  .ae_norgs            = 1 };
	alerts_options o  = { 0 };
	json_t        *got;

	(void) state;
	fixture_open(&f, true);
	add_org(&f, "m-ngo", R_ROLE(REFERRER), "Limburg");
	set_channels(&f, "m-ngo", NULL, true);
	alerts_close(f.as);
	/* The webhook port speaks HTTP, not SMTP: no STARTTLS there. */
	o.store                 = f.st;
	o.capacity              = f.cs;
	o.webhook_allow_private = true;
	o.manual                = true;
	o.now_ms                = test_now;
	o.smtp_ca_file          = "/nonexistent-ca.pem";
	{
		char url[100];

		snprintf(url, sizeof(url), "smtp://localhost:%d", g.smtp_port);
		o.smtp_url = url;
		assert_int_equal(alerts_open(&f.as, &o), HV_OK);
	}
	enqueue(&f, &ev);
	run_expect(&f, 0, 1); /* the certificate cannot be verified */
	alerts_close(f.as);
	{
		char url[100], ca[700];

		snprintf(url, sizeof(url), "smtp://localhost:%d", g.hook_port);
		snprintf(ca, sizeof(ca), "%s/ca.pem", g.pki);
		o.smtp_url     = url;
		o.smtp_ca_file = ca;
		assert_int_equal(alerts_open(&f.as, &o), HV_OK);
		atomic_store(&clock_offset, 5000); /* past the first back-off */
		run_expect(&f, 0, 1);
	}
	got = received("m-ngo", NULL);
	assert_int_equal(json_array_size(got), 0);
	json_decref(got);
	o.smtp_url = "ftp://localhost:21";
	alerts_close(f.as);
	assert_int_equal(alerts_open(&f.as, &o), HV_INVALID_ARGUMENT);
	o.smtp_url = NULL;
	o.node_url = "https://bad url";
	assert_int_equal(alerts_open(&f.as, &o), HV_INVALID_ARGUMENT);
	f.as = NULL;
	fixture_close(&f);
}

/* ---- timers -------------------------------------------------------------------------------- */
static void
test_escalation(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(OFFER_UNACKNOWLEDGED),
		.ae_urgency          = 1,
		.ae_target           = "off-e1",
		.ae_orgs             = { "e-shelter" },
		.ae_norgs            = 1,
		.ae_region           = "Den Haag" };
	uint64_t     now;
	json_t      *got;

	(void) state;
	fixture_open(&f, true);
	now = (uint64_t) test_now(NULL);
	add_org(&f, "e-shelter", R_ROLE(PROVIDER), "Den Haag");
	add_org(&f, "e-coord", R_ROLE(COORDINATOR), "Den Haag");
	add_org(&f, "e-coord-far", R_ROLE(COORDINATOR), "Limburg");
	add_org(&f, "e-national", R_ROLE(NATIONAL_COORDINATOR), "Limburg");
	set_channels(&f, "e-shelter", NULL, true);
	set_channels(&f, "e-national", "/hook", false);
	set_channels(&f, "e-coord", "/hook", false);
	set_channels(&f, "e-coord-far", "/hook", false);
	timer(&f, "esc/ref-e/0", now + 600000, &ev, false);
	run_expect(&f, 0, 0);
	atomic_store(&clock_offset, 600001);
	run_expect(&f, 4, 0); /* desks, on-call, coordinator, national coordinator */
	got = received("e-shelter", "smtp");
	assert_int_equal(json_array_size(got), 2);
	json_decref(got);
	got = received("e-coord", "webhook");
	assert_int_equal(json_array_size(got), 1);
	assert_non_null(strstr(field(got, 0, "body"), "offer.unacknowledged"));
	json_decref(got);
	got = received("e-coord-far", NULL);
	assert_int_equal(json_array_size(got), 0);
	json_decref(got);
	got = received("e-national", "webhook"); /* a coordinator of every region */
	assert_int_equal(json_array_size(got), 1);
	assert_non_null(strstr(field(got, 0, "body"), "offer.unacknowledged"));
	json_decref(got);
	run_expect(&f, 0, 0); /* fired once */

	/* A cancelled timer (the offer was acknowledged) never fires. */
	timer(&f, "esc/ref-e/1", now + 700000, &ev, false);
	timer(&f, "esc/ref-e/1", 0, NULL, true);
	timer(&f, "esc/ref-e/1", 0, NULL, true); /* twice is fine */
	atomic_store(&clock_offset, 800000);
	run_expect(&f, 0, 0);
	fixture_close(&f);
}

/* A need waiting: the referrer hears it waits, and after unmet_after_s the referrer and the
 * coordinator hear it is still unmet. */
static void
test_waiting_then_unmet(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(NEED_WAITING),
		.ae_urgency          = 2,
		.ae_target           = "ref-w1",
		.ae_orgs             = { "w-ngo" },
		.ae_norgs            = 1,
		.ae_region           = "Oost-Brabant" };
	uint64_t     now;
	json_t      *got;

	(void) state;
	fixture_open(&f, true);
	now = (uint64_t) test_now(NULL);
	add_org(&f, "w-ngo", R_ROLE(REFERRER), "Oost-Brabant");
	add_org(&f, "w-coord", R_ROLE(COORDINATOR), "Oost-Brabant");
	set_channels(&f, "w-ngo", "/hook", false);
	set_channels(&f, "w-coord", "/hook", false);
	timer(&f, "wait/ref-w1/0", now, &ev, false);
	run_expect(&f, 1, 0);
	got = received("w-ngo", NULL);
	assert_int_equal(json_array_size(got), 1);
	assert_non_null(strstr(field(got, 0, "body"), "need.waiting"));
	json_decref(got);
	atomic_store(&clock_offset, 3600 * 1000 + 1000);
	run_expect(&f, 2, 0);
	got = received("w-coord", NULL);
	assert_int_equal(json_array_size(got), 1);
	assert_non_null(strstr(field(got, 0, "body"), "need.unmet"));
	assert_non_null(strstr(field(got, 0, "body"), "#/referrals/ref-w1"));
	json_decref(got);
	atomic_store(&clock_offset, 3 * 3600 * 1000);
	run_expect(&f, 0, 0);

	/* Events are kept ALERTS_KEEP_MS, then dropped with their index entries. */
	assert_int_equal(table_count(&f, f.as->as_events), 3);
	assert_int_equal(table_count(&f, f.as->as_by_org), 3);
	atomic_store(&clock_offset, ALERTS_KEEP_MS + 3 * 3600 * 1000 + 1);
	run_expect(&f, 0, 0);
	assert_int_equal(table_count(&f, f.as->as_events), 0);
	assert_int_equal(table_count(&f, f.as->as_by_org), 0);
	fixture_close(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delivered),
		cmocka_unit_test(test_rollback_and_no_channels),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_silent_receiver),
		cmocka_unit_test(test_crash_between_enqueue_and_send),
		cmocka_unit_test(test_smtp_refuses_clear),
		cmocka_unit_test(test_escalation),
		cmocka_unit_test(test_waiting_then_unmet),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
