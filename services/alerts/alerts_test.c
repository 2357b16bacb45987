/*
 * alerts_test.c - the alerts service against real servers on loopback: an SMTP server that
 * requires STARTTLS (python3-aiosmtpd, with a server certificate from deploy/pki.sh) and an
 * HTTP webhook receiver that checks the HMAC-SHA256 signature (alerts_receiver.py). The
 * outbox in the event's transaction, retries with back-off under one idempotency key, a crash
 * between enqueue and send (delivered once after the restart), the timers (expiring,
 * unacknowledged with the on-call address and the region's coordinators, waiting then unmet),
 * no personal data in what is delivered, and bad input for every RPC over inproc://.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alerts_internal.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "../../tests/testutil.h"

#define SECRET "0123456789abcdef-test-secret"
#define R_ROLE(x) HAVEN__CAPACITY__V1__ROLE__##x

static struct {
	char  dir[512];
	char  pki[600];
	pid_t rcv;
	int   smtp_port, hook_port;
	int   stores;
} g;

static _Atomic int64_t clock_offset;

static int64_t
test_now(void *arg)
{
	(void) arg;
	return (hv_clock_wall_ms() + atomic_load(&clock_offset));
}

/* ---- the receivers ----------------------------------------------------------------------- */

static int
group_setup(void **state)
{
	char ports[700], cert[700], key[700], script[700];

	(void) state;
	log_init("alerts_test", LOG_LEVEL_ERROR);
	tu_tmpdir(g.dir, sizeof(g.dir), "alerts");
	snprintf(g.pki, sizeof(g.pki), "%s/pki", g.dir);
	tu_pki(g.pki, NULL, 0);
	snprintf(cert, sizeof(cert), "%s/server.pem", g.pki);
	snprintf(key, sizeof(key), "%s/server.key", g.pki);
	snprintf(script, sizeof(script), "%s/services/alerts/alerts_receiver.py", HAVEN_SOURCE_DIR);
	snprintf(ports, sizeof(ports), "%s/ports", g.dir);
	if ((g.rcv = fork()) == 0) {
		char log[700];

		snprintf(log, sizeof(log), "%s/receiver.log", g.dir); /* aiosmtpd's tracebacks */
		if (freopen(log, "w", stderr) == NULL) {
			_exit(126);
		}
		execl("/usr/bin/python3", "python3", script, g.dir, cert, key, SECRET, (char *) NULL);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		FILE *f = fopen(ports, "r");

		if (f != NULL) {
			int n = fscanf(f, "%d %d", &g.smtp_port, &g.hook_port);

			fclose(f);
			if (n == 2) {
				return (0);
			}
		}
		if (waitpid(g.rcv, NULL, WNOHANG) == g.rcv) {
			fprintf(stderr, "alerts_receiver.py stopped (is python3-aiosmtpd installed?)\n");
			return (-1);
		}
		usleep(50 * 1000);
	}
	fprintf(stderr, "alerts_receiver.py did not start\n");
	return (-1);
}

static int
group_teardown(void **state)
{
	(void) state;
	if (g.rcv > 0) {
		kill(g.rcv, SIGTERM);
		waitpid(g.rcv, NULL, 0);
	}
	return (0);
}

/* The messages received whose idempotency key names org (and via, when not NULL), as a
 * JSON array (the caller's). */
static json_t *
received(const char *org, const char *via)
{
	char    path[700], *text, *line, *save = NULL;
	json_t *out = json_array();

	snprintf(path, sizeof(path), "%s/received.jsonl", g.dir);
	if ((text = tu_slurp(path, NULL)) == NULL) {
		return (out);
	}
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		json_t     *o = json_loads(line, 0, NULL);
		const char *k = o != NULL ? json_string_value(json_object_get(o, "key")) : NULL;
		const char *v = o != NULL ? json_string_value(json_object_get(o, "via")) : NULL;
		char        want[100];

		snprintf(want, sizeof(want), ".%s.", org);
		if (k != NULL && strstr(k, want) != NULL && (via == NULL || strcmp(v, via) == 0)) {
			json_array_append(out, o);
		}
		json_decref(o);
	}
	free(text);
	return (out);
}

static const char *
field(json_t *a, size_t i, const char *name)
{
	return (json_string_value(json_object_get(json_array_get(a, i), name)));
}

/* ---- the fixture ------------------------------------------------------------------------- */

typedef struct fixture {
	char            dir[700];
	store          *st;
	region_map     *map;
	cap_service    *cs;
	alerts_service *as;
} fixture;

typedef struct org_job {
	cap_service *cs;
	const char  *id, *region;
	int          role;
	char         err[256];
} org_job;

static hv_status
add_org_fn(store_txn *txn, void *arg)
{
	org_job                          *j = arg;
	Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;

	o.id     = (char *) j->id;
	o.name   = "Test organisation";
	o.role   = j->role;
	o.region = (char *) j->region;
	return (cap_add_organisation(j->cs, txn, &o, j->err, sizeof(j->err)));
}

static void
add_org(fixture *f, const char *id, int role, const char *region)
{
	org_job j = { .cs = f->cs, .id = id, .region = region, .role = role };

	assert_int_equal(store_write(f->st, add_org_fn, &j), HV_OK);
}

static void
open_alerts(fixture *f, const char *smtp)
{
	alerts_options o = { 0 };
	char           url[100], ca[700];

	snprintf(url, sizeof(url), "smtp://localhost:%d", g.smtp_port);
	snprintf(ca, sizeof(ca), "%s/ca.pem", g.pki);
	o.store        = f->st;
	o.capacity     = f->cs;
	o.node_url     = "https://haven.test";
	o.smtp_url     = smtp != NULL ? smtp : url;
	o.smtp_from    = "haven@haven.test";
	o.smtp_ca_file = ca;
	o.escalate_after_s = 600;
	o.unmet_after_s    = 3600;
	o.now_ms       = test_now;
	o.manual       = true;
	o.watchers_max = 1;
	o.webhook_allow_private = true; /* the receivers are on loopback */
	assert_int_equal(alerts_open(&f->as, &o), HV_OK);
}

/* A store in f->dir (made when empty), the directory, the alerts service (manual). */
static void
fixture_open(fixture *f, bool fresh)
{
	cap_options o = { 0 };

	if (fresh) {
		snprintf(f->dir, sizeof(f->dir), "%s/s%d", g.dir, g.stores++);
	}
	assert_int_equal(store_open(&f->st, f->dir, NULL), HV_OK);
	assert_int_equal(region_map_default(&f->map), HV_OK);
	o.store         = f->st;
	o.regions       = f->map;
	o.now_ms        = test_now;
	o.manual_expiry = true;
	assert_int_equal(cap_open(&f->cs, &o), HV_OK);
	open_alerts(f, NULL);
	atomic_store(&clock_offset, 0);
}

static void
fixture_close(fixture *f)
{
	alerts_close(f->as);
	cap_close(f->cs);
	store_close(f->st);
	region_map_free(f->map);
	f->as = NULL;
	f->cs = NULL;
	f->st = NULL;
}

typedef struct chan_job {
	alerts_service *as;
	const char     *org;
	Channels       *c;
} chan_job;

static hv_status
chan_fn(store_txn *txn, void *arg)
{
	chan_job *j = arg;

	return (store_put_msg(txn, j->as->as_channels, j->org, strlen(j->org), &j->c->base));
}

/* Channels for org: e-mail to two desks, on-call, and a webhook on path (NULL: none). */
static void
set_channels(fixture *f, const char *org, const char *path, bool email)
{
	Channels c        = HAVEN__ALERTS__V1__CHANNELS__INIT;
	char    *emails[] = { "desk@org.test", "night@org.test" };
	char     url[200];
	chan_job j = { .as = f->as, .org = org, .c = &c };

	if (email) {
		c.emails       = emails;
		c.n_emails     = 2;
		c.oncall_email = "oncall@org.test";
	}
	if (path != NULL) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", g.hook_port, path);
		c.webhook_url         = url;
		c.webhook_secret.data = (uint8_t *) SECRET;
		c.webhook_secret.len  = strlen(SECRET);
	}
	assert_int_equal(store_write(f->st, chan_fn, &j), HV_OK);
}

typedef struct enq_job {
	alerts_service     *as;
	const alerts_event *ev;
	const char         *timer; /* set a timer instead, due at due */
	uint64_t            due;
	bool                cancel;
	bool                fail;  /* the event's transaction fails after the enqueue */
} enq_job;

static hv_status
enq_fn(store_txn *txn, void *arg)
{
	enq_job  *j = arg;
	hv_status st;

	if (j->cancel) {
		st = alerts_timer_cancel(j->as, txn, j->timer);
	} else if (j->timer != NULL) {
		st = alerts_timer_set(j->as, txn, j->timer, j->due, j->ev);
	} else {
		st = alerts_enqueue(j->as, txn, j->ev);
	}
	return (st == HV_OK && j->fail ? HV_ABORTED : st);
}

static void
enqueue(fixture *f, const alerts_event *ev)
{
	enq_job j = { .as = f->as, .ev = ev };

	assert_int_equal(store_write(f->st, enq_fn, &j), HV_OK);
}

static void
run_expect(fixture *f, unsigned sent, unsigned failed)
{
	unsigned s = 0, fl = 0;

	assert_int_equal(alerts_run(f->as, &s, &fl), HV_OK);
	assert_int_equal(s, sent);
	assert_int_equal(fl, failed);
}

/* ---- delivery ---------------------------------------------------------------------------- */

/* A new immediate offer: one e-mail to both desks over STARTTLS, one signed webhook, the same
 * key shape, the link, and nothing of the person. */
static void
test_delivered(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(OFFER_NEW), .ae_urgency = 1,
		     .ae_respond_by_ms = 1796530000000ull, .ae_target = "off-00aa11bb22cc33dd",
		     .ae_orgs = { "d-shelter" }, .ae_norgs = 1 };
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
	assert_non_null(strstr(field(mail, 0, "body"), "https://haven.test/#/offers/off-00aa11bb22cc33dd"));
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
	assert_int_equal(json_integer_value(json_object_get(body, "respond_by_ms")), 1796530000000ll);
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
	alerts_event ev = { .ae_kind = ALERT(NEED_PLACED), .ae_target = "ref-1234",
		     .ae_orgs = { "r-ngo", "r-quiet" }, .ae_norgs = 2 };
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
	alerts_event ev = { .ae_kind = ALERT(NEED_DECLINED), .ae_target = "ref-77",
		     .ae_orgs = { "t-ngo" }, .ae_norgs = 1 };
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

/* The node dies between the event's commit and the send: after the restart the alert goes
 * out once, and never again. */
static void
test_crash_between_enqueue_and_send(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(OFFER_NEW), .ae_urgency = 1, .ae_target = "off-99",
		     .ae_orgs = { "c-shelter" }, .ae_norgs = 1 };
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
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(NEED_PLACED), .ae_target = "ref-5",
		     .ae_orgs = { "m-ngo" }, .ae_norgs = 1 };
	alerts_options o = { 0 };
	json_t      *got;

	(void) state;
	fixture_open(&f, true);
	add_org(&f, "m-ngo", R_ROLE(REFERRER), "Limburg");
	set_channels(&f, "m-ngo", NULL, true);
	alerts_close(f.as);
	/* The webhook port speaks HTTP, not SMTP: no STARTTLS there. */
	o.store = f.st;
	o.capacity = f.cs;
	o.webhook_allow_private = true;
	o.manual = true;
	o.now_ms = test_now;
	o.smtp_ca_file = "/nonexistent-ca.pem";
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

static uint64_t
table_count(fixture *f, store_table t)
{
	store_txn *txn;
	uint64_t   n = 0;

	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(store_count(txn, t, &n), HV_OK);
	store_read_end(txn);
	return (n);
}

/* ---- timers -------------------------------------------------------------------------------- */

static void
timer(fixture *f, const char *key, uint64_t due, const alerts_event *ev, bool cancel)
{
	enq_job j = { .as = f->as, .ev = ev, .timer = key, .due = due, .cancel = cancel };

	assert_int_equal(store_write(f->st, enq_fn, &j), HV_OK);
}

/* An immediate offer not acknowledged: the provider's desks and on-call address, and the
 * coordinator of the region (not another region's, not a disabled one). */
static void
test_escalation(void **state)
{
	fixture      f;
	alerts_event ev = { .ae_kind = ALERT(OFFER_UNACKNOWLEDGED), .ae_urgency = 1,
		     .ae_target = "off-e1", .ae_orgs = { "e-shelter" }, .ae_norgs = 1,
		     .ae_region = "Den Haag" };
	uint64_t     now;
	json_t      *got;

	(void) state;
	fixture_open(&f, true);
	now = (uint64_t) test_now(NULL);
	add_org(&f, "e-shelter", R_ROLE(PROVIDER), "Den Haag");
	add_org(&f, "e-coord", R_ROLE(COORDINATOR), "Den Haag");
	add_org(&f, "e-coord-far", R_ROLE(COORDINATOR), "Limburg");
	set_channels(&f, "e-shelter", NULL, true);
	set_channels(&f, "e-coord", "/hook", false);
	set_channels(&f, "e-coord-far", "/hook", false);
	timer(&f, "esc/ref-e/0", now + 600000, &ev, false);
	run_expect(&f, 0, 0);
	atomic_store(&clock_offset, 600001);
	run_expect(&f, 3, 0); /* desks, on-call, coordinator */
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
	alerts_event ev = { .ae_kind = ALERT(NEED_WAITING), .ae_urgency = 2,
		     .ae_target = "ref-w1", .ae_orgs = { "w-ngo" }, .ae_norgs = 1,
		     .ae_region = "Oost-Brabant" };
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
	Haven__Alerts__V1__SetChannelsRequest r = HAVEN__ALERTS__V1__SET_CHANNELS_REQUEST__INIT;
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
	rpc_fx    x;
	Channels  c = HAVEN__ALERTS__V1__CHANNELS__INIT;
	char     *ok[] = { "desk@ngo.test" };
	char     *bad[] = { "desk@ngo.test", "no-at-sign" };
	char     *many[9];
	char      err[RPC_ERRMSG_MAX];
	Haven__Alerts__V1__GetChannelsRequest g_req = HAVEN__ALERTS__V1__GET_CHANNELS_REQUEST__INIT;
	Channels *got = NULL;

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
	c.oncall_email = "";
	c.webhook_url  = "http://partner.example.org/hook";
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
		assert_non_null(strstr(page, "\nhaven_alerts_delivered_total{channel=\"webhook\"} 0\n"));
		assert_null(strstr(page, "p-ngo")); /* no organisation in a label */
		free(page);
	}
	g_req.org_id = "p-ngo";
	assert_int_equal(call(&x, "GetChannels", &g_req.base, &haven__alerts__v1__channels__descriptor,
	                     (ProtobufCMessage **) &got, err), HV_OK);
	assert_int_equal(got->version, 2);
	assert_true(got->has_webhook_secret);
	assert_int_equal(got->webhook_secret.len, 0);
	assert_int_equal(got->n_emails, 1);
	protobuf_c_message_free_unpacked(&got->base, NULL);
	g_req.org_id = "";
	assert_int_equal(call(&x, "GetChannels", &g_req.base, &haven__alerts__v1__channels__descriptor,
	                     (ProtobufCMessage **) &got, err), HV_INVALID_ARGUMENT);
	g_req.org_id = "nobody";
	assert_int_equal(call(&x, "GetChannels", &g_req.base, &haven__alerts__v1__channels__descriptor,
	                     (ProtobufCMessage **) &got, err), HV_NOT_FOUND);
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
	watch_arg                             *w = p;
	Haven__Alerts__V1__WatchEventsRequest  r = HAVEN__ALERTS__V1__WATCH_EVENTS_REQUEST__INIT;
	Haven__Alerts__V1__WatchEventsResponse *out = NULL;
	char                                   err[RPC_ERRMSG_MAX];
	int64_t                                t0 = hv_clock_mono_ms();

	r.org_id      = "p-ngo";
	r.max_wait_ms = w->wait_ms;
	w->st = call(w->x, "WatchEvents", &r.base, &haven__alerts__v1__watch_events_response__descriptor,
	    (ProtobufCMessage **) &out, err);
	w->took_ms = hv_clock_mono_ms() - t0;
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
	rpc_fx       x;
	alerts_event ev = { .ae_kind = ALERT(NEED_ACCEPTED), .ae_target = "ref-x",
		     .ae_orgs = { "p-ngo" }, .ae_norgs = 1 };
	alerts_event other = { .ae_kind = ALERT(OFFER_NEW), .ae_target = "off-x",
		     .ae_orgs = { "p-shelter" }, .ae_norgs = 1 };
	watch_arg    w1, w2;
	pthread_t    t1, t2;
	Haven__Alerts__V1__WatchEventsRequest r = HAVEN__ALERTS__V1__WATCH_EVENTS_REQUEST__INIT;
	ProtobufCMessage *out = NULL;
	char         err[RPC_ERRMSG_MAX];

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
	                     &haven__alerts__v1__watch_events_response__descriptor, &out, err), HV_OK);
	assert_int_equal(((Haven__Alerts__V1__WatchEventsResponse *) out)->n_events, 0);
	assert_int_equal(((Haven__Alerts__V1__WatchEventsResponse *) out)->cursor, 2);
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
	static const char *public_ips[] = { "8.8.8.8", "172.32.0.1", "172.15.255.255",
		"100.128.0.1", "192.169.0.1", "2001:db8::1", "2a00:1450::1", "::ffff:8.8.8.8" };
	Channels c = HAVEN__ALERTS__V1__CHANNELS__INIT;
	char     err[200];

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
		cmocka_unit_test(test_delivered),
		cmocka_unit_test(test_rollback_and_no_channels),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_crash_between_enqueue_and_send),
		cmocka_unit_test(test_smtp_refuses_clear),
		cmocka_unit_test(test_escalation),
		cmocka_unit_test(test_waiting_then_unmet),
		cmocka_unit_test(test_rpc_channels),
		cmocka_unit_test(test_rpc_watch),
		cmocka_unit_test(test_private_addresses),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
