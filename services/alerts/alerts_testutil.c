/*
 * alerts_testutil.c - what the alerts tests share (alerts_testutil.h): the real receivers
 * (alerts_receiver.py: an SMTP server requiring STARTTLS and a webhook receiver checking the
 * HMAC, with a server certificate from deploy/pki.sh), and a store with the directory and a
 * manual alerts service whose clock the tests move.
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

#include "alerts_testutil.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "../../tests/testutil.h"

at_global g;

_Atomic int64_t clock_offset;

int64_t
test_now(void *arg)
{
	(void) arg;
	return (hv_clock_wall_ms() + atomic_load(&clock_offset));
}

/* ---- the receivers ----------------------------------------------------------------------- */

int
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
		execl("/usr/bin/python3", "python3", script, g.dir, cert, key, SECRET,
		    (char *) NULL);
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
			fprintf(stderr,
			    "alerts_receiver.py stopped (is python3-aiosmtpd installed?)\n");
			return (-1);
		}
		usleep(50 * 1000);
	}
	fprintf(stderr, "alerts_receiver.py did not start\n");
	return (-1);
}

int
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
json_t *
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

const char *
field(json_t *a, size_t i, const char *name)
{
	return (json_string_value(json_object_get(json_array_get(a, i), name)));
}

/* ---- the fixture ------------------------------------------------------------------------- */

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

void
add_org(fixture *f, const char *id, int role, const char *region)
{
	org_job j = { .cs = f->cs, .id = id, .region = region, .role = role };

	assert_int_equal(store_write(f->st, add_org_fn, &j), HV_OK);
}

void
open_alerts(fixture *f, const char *smtp)
{
	alerts_options o = { 0 };
	char           url[100], ca[700];

	snprintf(url, sizeof(url), "smtp://localhost:%d", g.smtp_port);
	snprintf(ca, sizeof(ca), "%s/ca.pem", g.pki);
	o.store                 = f->st;
	o.capacity              = f->cs;
	o.node_url              = "https://haven.test";
	o.smtp_url              = smtp != NULL ? smtp : url;
	o.smtp_from             = "haven@haven.test";
	o.smtp_ca_file          = ca;
	o.escalate_after_s      = 600;
	o.unmet_after_s         = 3600;
	o.now_ms                = test_now;
	o.manual                = true;
	o.watchers_max          = 1;
	o.webhook_allow_private = true; /* the receivers are on loopback */
	o.send_timeout_ms       = 2000;
	assert_int_equal(alerts_open(&f->as, &o), HV_OK);
}

/* A store in f->dir (made when empty), the directory, the alerts service (manual). */
void
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

void
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
void
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

hv_status
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

void
enqueue(fixture *f, const alerts_event *ev)
{
	enq_job j = { .as = f->as, .ev = ev };

	assert_int_equal(store_write(f->st, enq_fn, &j), HV_OK);
}

void
run_expect(fixture *f, unsigned sent, unsigned failed)
{
	unsigned s = 0, fl = 0;

	assert_int_equal(alerts_run(f->as, &s, &fl), HV_OK);
	assert_int_equal(s, sent);
	assert_int_equal(fl, failed);
}

uint64_t
table_count(fixture *f, store_table t)
{
	store_txn *txn;
	uint64_t   n = 0;

	assert_int_equal(store_read_begin(f->st, &txn), HV_OK);
	assert_int_equal(store_count(txn, t, &n), HV_OK);
	store_read_end(txn);
	return (n);
}

void
timer(fixture *f, const char *key, uint64_t due, const alerts_event *ev, bool cancel)
{
	enq_job j = { .as = f->as, .ev = ev, .timer = key, .due = due, .cancel = cancel };

	assert_int_equal(store_write(f->st, enq_fn, &j), HV_OK);
}
