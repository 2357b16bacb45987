/*
 * alerts_bench.c - alert delivery latency: from the event (the start of the write transaction
 * that enqueues it) to its receipt by a real SMTP server (STARTTLS) and a real webhook
 * receiver (services/alerts/alerts_receiver.py: aiosmtpd and http.server on loopback, its
 * clock the same machine's), with the node's own sender thread and durable commits.
 *
 *   haven-bench alerts [N] [GAP_MS] [RECEIVER]
 *       N events (default 100), one every GAP_MS ms (default 50), each to one organisation
 *       with an e-mail address and a webhook; prints
 *       alerts n=N webhook_p50_ms= webhook_p99_ms= smtp_p50_ms= smtp_p99_ms=
 *
 * RECEIVER is the path of alerts_receiver.py (default: the source tree's); it runs under
 * /usr/bin/python3 and needs python3-aiosmtpd. A temporary directory holds the store, a test
 * PKI (deploy/pki.sh beside the receiver's tree) and what was received; it is removed after.
 */
#include "bench.h"

#include "alerts.h"
#include "capacity.h"
#include "haven/clock.h"
#include "haven/log.h"

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AB_SECRET "bench-webhook-secret-0123456789"
#define AB_ORG    "bench-shelter"
#define AB_MAX_N  100000L

#ifndef HAVEN_SOURCE_DIR
#define HAVEN_SOURCE_DIR "."
#endif

typedef struct ab {
	char            dir[PATH_MAX];
	pid_t           rcv;
	int             smtp_port, hook_port;
	store          *st;
	region_map     *map;
	cap_service    *cs;
	alerts_service *as;
} ab;

static int
start_receiver(ab *b, const char *script)
{
	char cmd[4 * PATH_MAX + 200], ports[PATH_MAX + 16], cert[PATH_MAX + 16], key[PATH_MAX + 16],
	    log[PATH_MAX + 16];
	char src[PATH_MAX];

	/* deploy/pki.sh of the tree the receiver is in: .../services/alerts/x.py -> ... */
	snprintf(src, sizeof(src), "%s", script);
	for (int i = 0; i < 3; i++) {
		char *slash = strrchr(src, '/');

		if (slash == NULL) {
			snprintf(src, sizeof(src), ".");
			break;
		}
		*slash = '\0';
	}
	snprintf(cmd, sizeof(cmd),
	    "sh '%s/deploy/pki.sh' '%s/pki' ca >/dev/null 2>&1 && "
	    "sh '%s/deploy/pki.sh' '%s/pki' server localhost >/dev/null 2>&1",
	    src, b->dir, src, b->dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "haven-bench alerts: deploy/pki.sh failed (from %s)\n", src);
		return (-1);
	}
	snprintf(cert, sizeof(cert), "%s/pki/server.pem", b->dir);
	snprintf(key, sizeof(key), "%s/pki/server.key", b->dir);
	snprintf(ports, sizeof(ports), "%s/ports", b->dir);
	snprintf(log, sizeof(log), "%s/receiver.log", b->dir);
	if ((b->rcv = bench_fork()) == 0) {
		if (freopen(log, "w", stderr) == NULL) {
			_exit(126);
		}
		execl("/usr/bin/python3", "python3", script, b->dir, cert, key, AB_SECRET,
		    (char *) NULL);
		_exit(127);
	}
	for (int i = 0; i < 400; i++) {
		FILE *f = fopen(ports, "r");

		if (f != NULL) {
			int n = fscanf(f, "%d %d", &b->smtp_port, &b->hook_port);

			fclose(f);
			if (n == 2) {
				return (0);
			}
		}
		if (waitpid(b->rcv, NULL, WNOHANG) == b->rcv) {
			break;
		}
		usleep(25 * 1000);
	}
	fprintf(stderr, "haven-bench alerts: %s did not start (python3-aiosmtpd installed?):\n",
	    script);
	snprintf(cmd, sizeof(cmd), "tail -n 5 '%s' >&2", log);
	if (system(cmd) != 0) {
		fprintf(stderr, "(no log)\n");
	}
	return (-1);
}

typedef struct org_job {
	cap_service *cs;
	char         err[256];
} org_job;

static hv_status
org_fn(store_txn *txn, void *arg)
{
	org_job                          *j = arg;
	Haven__Capacity__V1__Organisation o = HAVEN__CAPACITY__V1__ORGANISATION__INIT;

	o.id     = AB_ORG;
	o.name   = "Bench shelter";
	o.role   = HAVEN__CAPACITY__V1__ROLE__PROVIDER;
	o.region = "Midden-Nederland";
	return (cap_add_organisation(j->cs, txn, &o, j->err, sizeof(j->err)));
}

static hv_status
event_fn(store_txn *txn, void *arg)
{
	static const alerts_event ev = { .ae_kind = ALERT(OFFER_NEW),
		.ae_urgency                       = 1,
		.ae_target                        = "off-0123456789abcdef",
		.ae_orgs                          = { AB_ORG },
		.ae_norgs                         = 1 };

	return (alerts_enqueue(arg, txn, &ev));
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

	return (x < y ? -1 : x > y);
}

static double
pct(int64_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0) {
		return (-1);
	}
	qsort(v, n, sizeof(*v), cmp_i64);
	i = (size_t) (p * (double) (n - 1) + 0.5);
	return ((double) v[i] / 1000.0);
}

/* Reads what the receiver got: latency (us) per delivery, by channel. */
static size_t
collect(ab *b, const int64_t *sent_us, long n, int64_t *hook, size_t *nh, int64_t *mail, size_t *nm)
{
	char   path[PATH_MAX + 32], line[16384];
	FILE  *f;
	size_t got = 0;

	*nh = *nm = 0;
	snprintf(path, sizeof(path), "%s/received.jsonl", b->dir);
	if ((f = fopen(path, "r")) == NULL) {
		return (0);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		json_t     *o   = json_loads(line, 0, NULL);
		const char *key = json_string_value(json_object_get(o, "key"));
		const char *via = json_string_value(json_object_get(o, "via"));
		long        seq = key != NULL ? strtol(key, NULL, 10) : 0;

		if (o != NULL && seq >= 1 && seq <= n && via != NULL) {
			int64_t lat = (int64_t) json_integer_value(json_object_get(o, "t_us")) -
			    sent_us[seq - 1];

			if (strcmp(via, "webhook") == 0) {
				hook[(*nh)++] = lat;
			} else {
				mail[(*nm)++] = lat;
			}
			got++;
		}
		json_decref(o);
	}
	fclose(f);
	return (got);
}

static void
ab_close(ab *b)
{
	char cmd[PATH_MAX + 32];

	alerts_close(b->as);
	cap_close(b->cs);
	store_close(b->st);
	region_map_free(b->map);
	if (b->rcv > 0) {
		kill(b->rcv, SIGTERM);
		waitpid(b->rcv, NULL, 0);
	}
	if (b->dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
		if (system(cmd) != 0) {
			fprintf(stderr, "haven-bench alerts: could not remove %s\n", b->dir);
		}
	}
}

int
bench_alerts(int argc, char **argv)
{
	ab          b   = { 0 };
	long        n   = argc > 0 ? strtol(argv[0], NULL, 10) : 100;
	long        gap = argc > 1 ? strtol(argv[1], NULL, 10) : 50;
	const char *script =
	    argc > 2 ? argv[2] : HAVEN_SOURCE_DIR "/services/alerts/alerts_receiver.py";
	const char    *tmp = getenv("HAVEN_TEST_TMP") != NULL ? getenv("HAVEN_TEST_TMP") : "/tmp";
	cap_options    co  = { 0 };
	alerts_options ao  = { 0 };
	org_job        oj  = { 0 };
	Haven__Alerts__V1__Channels c        = HAVEN__ALERTS__V1__CHANNELS__INIT;
	char                       *emails[] = { "intake@bench.test" };
	char                        url[100], smtp[100], ca[PATH_MAX + 16], err[256];
	int64_t                    *sent = NULL, *hook = NULL, *mail = NULL;
	size_t                      nh = 0, nm = 0;
	int                         rc = 1;

	if (n < 1 || n > AB_MAX_N || gap < 0 || gap > 10000 || argc > 3) {
		fprintf(stderr,
		    "usage: haven-bench alerts [N 1..%ld] [GAP_MS 0..10000] [RECEIVER]\n",
		    AB_MAX_N);
		return (2);
	}
	log_init("haven-bench", LOG_LEVEL_ERROR);
	snprintf(b.dir, sizeof(b.dir), "%s/alerts-bench-XXXXXX", tmp);
	if (mkdtemp(b.dir) == NULL) {
		perror("mkdtemp");
		b.dir[0] = '\0';
		return (1);
	}
	if ((sent = calloc((size_t) n, sizeof(*sent))) == NULL ||
	    (hook = calloc((size_t) n, sizeof(*hook))) == NULL ||
	    (mail = calloc((size_t) n, sizeof(*mail))) == NULL || start_receiver(&b, script) != 0) {
		goto out;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", b.hook_port);
	snprintf(smtp, sizeof(smtp), "smtp://localhost:%d", b.smtp_port);
	snprintf(ca, sizeof(ca), "%s/pki/ca.pem", b.dir);
	if (store_open(&b.st, b.dir, NULL) != HV_OK || region_map_default(&b.map) != HV_OK) {
		fprintf(stderr, "haven-bench alerts: cannot open the store\n");
		goto out;
	}
	co.store                 = b.st;
	co.regions               = b.map;
	ao.store                 = b.st;
	ao.smtp_url              = smtp;
	ao.smtp_from             = "haven@bench.test";
	ao.smtp_ca_file          = ca;
	ao.node_url              = "https://haven.bench";
	ao.webhook_allow_private = true; /* the receiver is on loopback */
	if (cap_open(&b.cs, &co) != HV_OK ||
	    (ao.capacity = b.cs, oj.cs = b.cs, store_write(b.st, org_fn, &oj)) != HV_OK ||
	    alerts_open(&b.as, &ao) != HV_OK) {
		fprintf(stderr, "haven-bench alerts: cannot open the services %s\n", oj.err);
		goto out;
	}
	c.emails              = emails;
	c.n_emails            = 1;
	c.webhook_url         = url;
	c.webhook_secret.data = (uint8_t *) AB_SECRET;
	c.webhook_secret.len  = strlen(AB_SECRET);
	if (alerts_set_channels(b.as, AB_ORG, &c, NULL, err, sizeof(err)) != HV_OK) {
		fprintf(stderr, "haven-bench alerts: %s\n", err);
		goto out;
	}
	for (long i = 0; i < n; i++) {
		struct timespec d = { gap / 1000, (gap % 1000) * 1000000L };
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts); /* the receiver stamps with the same clock */
		sent[i] = (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
		if (store_write(b.st, event_fn, b.as) != HV_OK) {
			fprintf(stderr, "haven-bench alerts: enqueue failed\n");
			goto out;
		}
		nanosleep(&d, NULL);
	}
	for (int w = 0; w < 600 && collect(&b, sent, n, hook, &nh, mail, &nm) < 2 * (size_t) n;
	     w++) {
		usleep(50 * 1000);
	}
	if (nh + nm < 2 * (size_t) n) {
		fprintf(stderr, "haven-bench alerts: only %zu of %ld deliveries arrived\n", nh + nm,
		    2 * n);
		goto out;
	}
	printf("alerts n=%ld webhook_p50_ms=%.1f webhook_p99_ms=%.1f smtp_p50_ms=%.1f "
	       "smtp_p99_ms=%.1f\n",
	    n, pct(hook, nh, 0.5), pct(hook, nh, 0.99), pct(mail, nm, 0.5), pct(mail, nm, 0.99));
	rc = 0;
out:
	ab_close(&b);
	free(sent);
	free(hook);
	free(mail);
	return (rc);
}
