/*
 * metrics_test.c - the metrics registry and the Prometheus text format (escaping, cumulative
 * histogram buckets, _count against the calls), loopback-only listen addresses, and the page
 * served end to end: a host with metrics_listen on 127.0.0.1 port 0, a few RPC calls (OK,
 * errors, an unknown method, a malformed request), then GET /metrics over a plain TCP socket,
 * 404 for other paths, 405 for other methods, and a stop while a scrape is rendering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "haven/host.h"
#include "haven/log.h"
#include "haven/metrics.h"
#include "testutil.h"
#include "haven/rpc.h"

#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"

#define M_HEALTH "haven.health.v1.Health/Check"
#define M_ECHO   "haven.diag.v1.Diagnostics/Echo"

static char tmp[256];

/* ---- reading a page ------------------------------------------------------------------- */

/* Every line is a comment (# HELP / # TYPE) or `name{labels} value`; every family has one HELP
 * and one TYPE line, before its samples; names appear in one family only. */
static void
check_format(const char *page)
{
	char        families[256][128];
	size_t      nfam = 0;
	const char *line = page;

	assert_true(strlen(page) > 0 && page[strlen(page) - 1] == '\n');
	while (*line != '\0') {
		const char *end = strchr(line, '\n');
		char        buf[1024];
		size_t      len;

		assert_non_null(end);
		len = (size_t) (end - line);
		assert_true(len > 0 && len < sizeof(buf));
		memcpy(buf, line, len);
		buf[len] = '\0';
		if (strncmp(buf, "# HELP ", 7) == 0) {
			char name[128];
			assert_int_equal(sscanf(buf + 7, "%127s", name), 1);
			for (size_t i = 0; i < nfam; i++) {
				if (strcmp(families[i], name) == 0) {
					fail_msg("family %s appears twice", name);
				}
			}
			assert_true(nfam < 256);
			snprintf(families[nfam++], sizeof(families[0]), "%s", name);
			/* Its TYPE line follows. */
			assert_int_equal(strncmp(end + 1, "# TYPE ", 7), 0);
			assert_int_equal(strncmp(end + 8, name, strlen(name)), 0);
		} else if (strncmp(buf, "# TYPE ", 7) == 0) {
			char name[128], type[32];
			assert_int_equal(sscanf(buf + 7, "%127s %31s", name, type), 2);
			assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
			    strcmp(type, "histogram") == 0);
		} else {
			/* A sample of the last family (a histogram's _bucket, _sum and _count too).
			 */
			const char *fam = families[nfam - 1];
			char       *sp  = strrchr(buf, ' ');
			char       *endp;

			assert_true(nfam > 0);
			assert_int_equal(strncmp(buf, fam, strlen(fam)), 0);
			assert_non_null(sp);
			if (strcmp(sp + 1, "NaN") != 0 && strcmp(sp + 1, "+Inf") != 0 &&
			    strcmp(sp + 1, "-Inf") != 0) {
				(void) strtod(sp + 1, &endp);
				assert_true(*endp == '\0');
			}
		}
		line = end + 1;
	}
}

/* ---- the registry and the format ------------------------------------------------------ */

static void
test_histogram_and_counts(void **state)
{
	metrics                 *m;
	metrics_method          *mm, *other;
	char                    *page = NULL;
	size_t                   len;
	char                     name[300];
	double                   prev = 0;
	static const char *const le[] = { "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
		"0.01", "0.025", "0.05", "0.1", "0.25", "1", "+Inf" };

	assert_int_equal(metrics_open(&m), HV_OK);
	mm = metrics_method_get(m, "haven.x.v1.X/Do");
	assert_non_null(mm);
	assert_ptr_equal(metrics_method_get(m, "haven.x.v1.X/Do"), mm);
	other = metrics_method_get(m, "haven.a.v1.A/First");
	assert_non_null(other);
	assert_ptr_not_equal(other, mm);
	assert_null(metrics_method_get(m, ""));
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_null(metrics_method_get(m, name));
	metrics_method_observe(NULL, HV_OK, 1); /* ignored */

	/* le is inclusive: 100 us is in le="0.0001", 101 us in le="0.00025". */
	metrics_method_observe(mm, HV_OK, 50);
	metrics_method_observe(mm, HV_OK, 100);
	metrics_method_observe(mm, HV_OK, -5); /* counts as 0 */
	metrics_method_observe(mm, HV_NOT_FOUND, 101);
	metrics_method_observe(mm, HV_NOT_FOUND, 30000);
	metrics_method_observe(mm, (hv_status) 99, 2000000); /* UNKNOWN, over 1 s */
	assert_int_equal(metrics_method_calls(mm, HV_OK), 3);
	assert_int_equal(metrics_method_calls(mm, HV_NOT_FOUND), 2);
	assert_int_equal(metrics_method_calls(mm, HV_UNKNOWN), 1);

	assert_int_equal(metrics_render(m, &page, &len), HV_OK);
	assert_int_equal(strlen(page), len);
	check_format(page);
	tu_expect_metric(page, "haven_rpc_calls_total{method=\"haven.x.v1.X/Do\",status=\"OK\"}",
	    3);
	tu_expect_metric(page,
	    "haven_rpc_calls_total{method=\"haven.x.v1.X/Do\",status=\"NOT_FOUND\"}", 2);
	tu_expect_metric(page,
	    "haven_rpc_calls_total{method=\"haven.x.v1.X/Do\",status=\"UNKNOWN\"}", 1);
	/* Statuses never seen, and methods never called, have no lines. */
	assert_null(strstr(page, "status=\"INTERNAL\""));
	assert_null(strstr(page, "haven.a.v1.A/First"));

	/* Buckets are cumulative and end with _count = the calls. */
	for (size_t i = 0; i < sizeof(le) / sizeof(le[0]); i++) {
		char   series[200];
		double v;

		snprintf(series, sizeof(series),
		    "haven_rpc_call_duration_seconds_bucket{method=\"haven.x.v1.X/Do\",le=\"%s\"}",
		    le[i]);
		v = tu_metric(page, series);
		assert_false(isnan(v));
		assert_true(v >= prev);
		prev = v;
	}
	tu_expect_metric(page,
	    "haven_rpc_call_duration_seconds_bucket{method=\"haven.x.v1.X/"
	    "Do\",le=\"0.0001\"}",
	    3);
	tu_expect_metric(page,
	    "haven_rpc_call_duration_seconds_bucket{method=\"haven.x.v1.X/"
	    "Do\",le=\"0.00025\"}",
	    4);
	tu_expect_metric(page,
	    "haven_rpc_call_duration_seconds_bucket{method=\"haven.x.v1.X/"
	    "Do\",le=\"0.025\"}",
	    4);
	tu_expect_metric(page,
	    "haven_rpc_call_duration_seconds_bucket{method=\"haven.x.v1.X/"
	    "Do\",le=\"0.05\"}",
	    5);
	tu_expect_metric(page,
	    "haven_rpc_call_duration_seconds_bucket{method=\"haven.x.v1.X/"
	    "Do\",le=\"1\"}",
	    5);
	assert_int_equal(prev, 6); /* +Inf */
	tu_expect_metric(page, "haven_rpc_call_duration_seconds_count{method=\"haven.x.v1.X/Do\"}",
	    6);
	assert_true(fabs(tu_metric(page,
	                     "haven_rpc_call_duration_seconds_sum{method=\"haven.x.v1.X/"
	                     "Do\"}") -
	                2.030251) < 1e-9);
	assert_false(isnan(tu_metric(page, "haven_metrics_render_duration_seconds")));
	free(page);
	metrics_close(m);
}

static int collect_calls;

static void
odd_collector(void *arg, metrics_writer *w)
{
	const char *labels[] = { "a", "1", "b", "2" };

	collect_calls++;
	metrics_family(w, "test_escapes", METRICS_GAUGE, "Help with \\ backslash\nand \"quotes\".");
	metrics_sample(w, "test_escapes", 1, "v", "back\\slash \"quoted\"\nnew line",
	    (char *) NULL);
	metrics_sample(w, "test_escapes", 0.5, "v", "plain", (char *) NULL);
	metrics_sample(w, "test_escapes", NAN, "v", "nan", (char *) NULL);
	metrics_sample(w, "test_escapes", INFINITY, "v", "inf", (char *) NULL);
	metrics_sample(w, "test_escapes", -INFINITY, "v", "-inf", (char *) NULL);
	metrics_sample(w, "test_escapes", 12345678901234.0, "v", "big", (char *) NULL);
	metrics_sample(w, "test_escapes", -3, "v", "neg", (char *) NULL);
	metrics_sample_labels(w, "test_escapes", 7, labels, 2);
	/* Left out: a bad metric name, a bad label name, a reserved one, too many labels. */
	metrics_sample(w, "1bad", 1, (char *) NULL);
	metrics_sample(w, "test_escapes", 1, "bad-label", "x", (char *) NULL);
	metrics_sample(w, "test_escapes", 1, "__name__", "x", (char *) NULL);
	metrics_sample(w, "test_escapes", 1, "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f",
	    "6", "g", "7", "h", "8", "i", "9", (char *) NULL);
	metrics_family(w, "test_counter_total", METRICS_COUNTER, "A counter.");
	metrics_sample(w, "test_counter_total", 42, (char *) NULL);
}

static void
test_text_format(void **state)
{
	metrics *m;
	char    *page = NULL;
	size_t   len;

	assert_int_equal(metrics_open(&m), HV_OK);
	assert_int_equal(metrics_add_collector(m, odd_collector, NULL), HV_OK);
	assert_int_equal(metrics_add_collector(m, NULL, NULL), HV_INVALID_ARGUMENT);
	assert_int_equal(metrics_render(m, &page, &len), HV_OK);
	check_format(page);
	assert_int_equal(collect_calls, 1);

	/* HELP escapes backslash and newline (not quotes); label values all three. */
	assert_non_null(strstr(page,
	    "# HELP test_escapes Help with \\\\ backslash\\nand \"quotes\".\n# TYPE test_escapes "
	    "gauge\n"));
	assert_non_null(
	    strstr(page, "\ntest_escapes{v=\"back\\\\slash \\\"quoted\\\"\\nnew line\"} 1\n"));
	assert_non_null(strstr(page, "\ntest_escapes{v=\"plain\"} 0.5\n"));
	assert_non_null(strstr(page, "\ntest_escapes{v=\"nan\"} NaN\n"));
	assert_non_null(strstr(page, "\ntest_escapes{v=\"inf\"} +Inf\n"));
	assert_non_null(strstr(page, "\ntest_escapes{v=\"-inf\"} -Inf\n"));
	assert_non_null(strstr(page, "\ntest_escapes{v=\"big\"} 12345678901234\n"));
	assert_non_null(strstr(page, "\ntest_escapes{v=\"neg\"} -3\n"));
	assert_non_null(strstr(page, "\ntest_escapes{a=\"1\",b=\"2\"} 7\n"));
	assert_non_null(strstr(page, "# TYPE test_counter_total counter\ntest_counter_total 42\n"));
	assert_null(strstr(page, "1bad"));
	assert_null(strstr(page, "bad-label"));
	assert_null(strstr(page, "__name__"));
	assert_null(strstr(page, "i=\"9\""));
	tu_expect_metric(page, "haven_metrics_invalid_samples_total", 4);
	free(page);

	/* The count of left-out samples keeps growing with every render. */
	assert_int_equal(metrics_render(m, &page, &len), HV_OK);
	tu_expect_metric(page, "haven_metrics_invalid_samples_total", 8);
	free(page);
	metrics_close(m);
}

static void
big_collector(void *arg, metrics_writer *w)
{
	char value[4096];

	memset(value, 'x', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	metrics_family(w, "test_big", METRICS_GAUGE, "Too much.");
	for (int i = 0; i < 5000; i++) {
		metrics_sample(w, "test_big", i, "v", value, (char *) NULL);
	}
}

/* A page over METRICS_PAGE_MAX is refused, not truncated. */
static void
test_page_limit(void **state)
{
	metrics *m;
	char    *page = NULL;
	size_t   len  = 1;

	assert_int_equal(metrics_open(&m), HV_OK);
	assert_int_equal(metrics_add_collector(m, big_collector, NULL), HV_OK);
	assert_int_equal(metrics_render(m, &page, &len), HV_RESOURCE_EXHAUSTED);
	assert_null(page);
	assert_int_equal(len, 0);
	metrics_close(m);
}

/* Many threads record while another renders: the counts add up. */
typedef struct rec_job {
	metrics_method *mm;
	int             n;
} rec_job;

static void *
recorder(void *arg)
{
	rec_job *j = arg;

	for (int i = 0; i < j->n; i++) {
		metrics_method_observe(j->mm, i % 2 == 0 ? HV_OK : HV_ABORTED, i % 3000);
	}
	return (NULL);
}

static void
test_concurrent_recording(void **state)
{
	metrics  *m;
	rec_job   job;
	pthread_t th[4];
	char     *page;
	size_t    len;

	assert_int_equal(metrics_open(&m), HV_OK);
	job = (rec_job) { metrics_method_get(m, "haven.x.v1.X/Busy"), 20000 };
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_create(&th[i], NULL, recorder, &job), 0);
	}
	for (int i = 0; i < 20; i++) {
		assert_int_equal(metrics_render(m, &page, &len), HV_OK);
		free(page);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
	}
	assert_int_equal(metrics_render(m, &page, &len), HV_OK);
	tu_expect_metric(page, "haven_rpc_calls_total{method=\"haven.x.v1.X/Busy\",status=\"OK\"}",
	    40000);
	tu_expect_metric(page,
	    "haven_rpc_calls_total{method=\"haven.x.v1.X/Busy\",status=\"ABORTED\"}", 40000);
	tu_expect_metric(page,
	    "haven_rpc_call_duration_seconds_count{method=\"haven.x.v1.X/Busy\"}", 80000);
	free(page);
	metrics_close(m);
}

/* ---- listen addresses ----------------------------------------------------------------- */

static void
test_check_listen(void **state)
{
	static const char *const good[] = { "127.0.0.1:9464", "127.1.2.3:0", "127.0.0.1:65535",
		"localhost:9464", "LocalHost:1", "[::1]:9464" };
	static const struct {
		const char *addr;
		const char *says;
	} bad[] = {
		{ "", "empty" },
		{ "0.0.0.0:9464", "not a loopback address" },
		{ "10.1.2.3:9464", "not a loopback address" },
		{ "192.168.1.10:80", "not a loopback address" },
		{ "example.org:9464", "not a loopback address" },
		{ "127.1:9464", "not a loopback address" },
		{ "[::]:9464", "not a loopback address" },
		{ "[::ffff:10.0.0.1]:9464", "not a loopback address" },
		{ "127.0.0.1", "no port" },
		{ "127.0.0.1:", "port must be a number" },
		{ "127.0.0.1:65536", "port must be a number" },
		{ "127.0.0.1:94a", "port must be a number" },
		{ "127.0.0.1:-1", "port must be a number" },
		{ "::1:9464", "[::1]:PORT" },
		{ "[::1]", "[::1]:PORT" },
		{ "[::1]9464", "[::1]:PORT" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (metrics_check_listen(good[i], err, sizeof(err)) != HV_OK) {
			fail_msg("%s refused: %s", good[i], err);
		}
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(metrics_check_listen(bad[i].addr, err, sizeof(err)),
		    HV_INVALID_ARGUMENT);
		if (strstr(err, bad[i].says) == NULL) {
			fail_msg("'%s': '%s' does not say '%s'", bad[i].addr, err, bad[i].says);
		}
	}
	assert_int_equal(metrics_check_listen(NULL, err, sizeof(err)), HV_INVALID_ARGUMENT);
	/* And the reason is given for a routable address. */
	metrics_check_listen("0.0.0.0:9464", err, sizeof(err));
	assert_non_null(strstr(err, "unauthenticated"));
}

/* Runs host_config_load with args; the message it printed on stderr goes to msg. */
static int
load_args(int argc, const char **argv, host_config *cfg, char *msg, size_t msgsz)
{
	char    out[300];
	int     saved, fd, rc;
	ssize_t n;
	bool    done;

	snprintf(out, sizeof(out), "%s/stderr.txt", tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd    = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, STDERR_FILENO);
	rc = host_config_load(cfg, argc, (char **) argv, "haven-node", &done);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, msg, msgsz - 1, 0);
	close(fd);
	msg[n > 0 ? n : 0] = '\0';
	unlink(out);
	return (rc);
}

static void
test_config_refuses_non_loopback(void **state)
{
	host_config cfg;
	char        msg[1024];

	const char *bad[] = { "haven-node", "--metrics-listen", "0.0.0.0:9464" };
	assert_int_equal(load_args(3, bad, &cfg, msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg,
	    "haven-node: metrics_listen: metrics address '0.0.0.0:9464' is "
	    "not a loopback address"));
	host_config_free(&cfg);

	const char *noport[] = { "haven-node", "--metrics-listen=localhost" };
	assert_int_equal(load_args(2, noport, &cfg, msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, "has no port"));
	host_config_free(&cfg);

	const char *good[] = { "haven-node", "--metrics-listen", "127.0.0.1:9464" };
	assert_int_equal(load_args(3, good, &cfg, msg, sizeof(msg)), 0);
	assert_string_equal(cfg.metrics_listen, "127.0.0.1:9464");
	assert_string_equal(msg, "");
	host_config_free(&cfg);

	/* Off by default. */
	const char *none[] = { "haven-node" };
	assert_int_equal(load_args(1, none, &cfg, msg, sizeof(msg)), 0);
	assert_null(cfg.metrics_listen);
	host_config_free(&cfg);
}

/* ---- the page over HTTP --------------------------------------------------------------- */

typedef struct http_reply {
	int    status;
	char  *head; /* status line and headers */
	char  *body;
	size_t body_len;
} http_reply;

static void
http_reply_free(http_reply *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* Sends one request (HTTP/1.1, Connection: close) to 127.0.0.1:port with this Host header
 * (NULL: 127.0.0.1:port) and reads the whole reply. Returns 0, or -1 when the connection
 * failed or closed before a reply. */
static int
http_request_host(int port, const char *method, const char *path, const char *hosthdr,
    http_reply *r)
{
	struct sockaddr_in sa  = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
	struct timeval     tv  = { .tv_sec = 10 };
	size_t             cap = 64 * 1024, len = 0;
	char              *buf = malloc(cap);
	char               req[256], hostbuf[64];
	char              *sep;
	int                fd;
	ssize_t            n;

	memset(r, 0, sizeof(*r));
	assert_non_null(buf);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd                 = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
		close(fd);
		free(buf);
		return (-1);
	}
	if (hosthdr == NULL) {
		snprintf(hostbuf, sizeof(hostbuf), "127.0.0.1:%d", port);
		hosthdr = hostbuf;
	}
	snprintf(req, sizeof(req),
	    "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", method,
	    path, hosthdr);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t) strlen(req));
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t) n;
		if (cap - len < 4096) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	close(fd);
	buf[len] = '\0';
	if (len == 0 || (sep = strstr(buf, "\r\n\r\n")) == NULL) {
		free(buf);
		return (-1);
	}
	*sep    = '\0';
	r->head = strdup(buf);
	r->body = strdup(sep + 4);
	assert_non_null(r->head);
	assert_non_null(r->body);
	r->body_len = len - (size_t) (sep + 4 - buf);
	assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &r->status), 1);
	free(buf);
	return (0);
}

static int
http_request(int port, const char *method, const char *path, http_reply *r)
{
	return (http_request_host(port, method, path, NULL, r));
}

static hv_status
call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd)
{
	ProtobufCMessage *reply = NULL;
	char              err[RPC_ERRMSG_MAX];
	hv_status         st;

	st = rpc_channel_call(ch, method, req, rd, &reply, NULL, err, sizeof(err));
	if (reply != NULL) {
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	return (st);
}

static host *
start_host(host_config *cfg, const char *name, const char *url, const char *metrics_addr)
{
	char        dir[300], msg[512];
	host       *h;
	const char *a[] = { "x", "--data", dir, "--listen", url, "--log-level", "off",
		"--metrics-listen", metrics_addr };

	snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
	assert_int_equal(load_args(9, a, cfg, msg, sizeof(msg)), 0);
	assert_int_equal(host_open(&h, cfg, "metrics_test"), HV_OK);
	return (h);
}

static void
test_served_page(void **state)
{
	host_config                           cfg;
	host                                 *h;
	rpc_channel                          *ch;
	http_reply                            r;
	Haven__Health__V1__HealthCheckRequest hreq = HAVEN__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Haven__Diag__V1__EchoRequest          ereq = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	void                                 *raw  = NULL;
	size_t                                rawlen;
	int                                   port;
	const char                           *ctype;

	h = start_host(&cfg, "served", "inproc://metrics-test-served", "127.0.0.1:0");
	assert_int_equal(host_metrics_port(h), 0); /* not before host_start */
	assert_int_equal(host_start(h, NULL, NULL), HV_OK);
	port = host_metrics_port(h);
	assert_true(port > 0 && port < 65536);

	assert_int_equal(rpc_channel_open(&ch, "inproc://metrics-test-served", NULL), HV_OK);
	/* Two OK, one NOT_FOUND on Health; one Echo; a method nobody serves, whose name must not
	 * reach the page; a request that is not an envelope. */
	assert_int_equal(call(ch, M_HEALTH, &hreq.base,
	                     &haven__health__v1__health_check_response__descriptor),
	    HV_OK);
	assert_int_equal(call(ch, M_HEALTH, &hreq.base,
	                     &haven__health__v1__health_check_response__descriptor),
	    HV_OK);
	hreq.service = "haven.nope.v1.Nope";
	assert_int_equal(call(ch, M_HEALTH, &hreq.base,
	                     &haven__health__v1__health_check_response__descriptor),
	    HV_NOT_FOUND);
	ereq.payload.data = (uint8_t *) "hi";
	ereq.payload.len  = 2;
	assert_int_equal(call(ch, M_ECHO, &ereq.base, &haven__diag__v1__echo_response__descriptor),
	    HV_OK);
	assert_int_equal(call(ch, "haven.people.v1.People/JaneDoe", &ereq.base,
	                     &haven__diag__v1__echo_response__descriptor),
	    HV_UNIMPLEMENTED);
	assert_int_equal(rpc_channel_call_raw(ch, "\xff\xff\xff", 3, &raw, &rawlen, 5000), HV_OK);
	free(raw);

	assert_int_equal(http_request(port, "GET", "/metrics", &r), 0);
	assert_int_equal(r.status, 200);
	ctype = strstr(r.head, "Content-Type: ");
	assert_non_null(ctype);
	assert_int_equal(strncmp(ctype + 14, "text/plain; version=0.0.4", 25), 0);
	assert_int_equal(strlen(r.body), r.body_len);
	check_format(r.body);
	tu_expect_metric(r.body, "haven_rpc_calls_total{method=\"" M_HEALTH "\",status=\"OK\"}", 2);
	tu_expect_metric(r.body,
	    "haven_rpc_calls_total{method=\"" M_HEALTH "\",status=\"NOT_FOUND\"}", 1);
	tu_expect_metric(r.body, "haven_rpc_calls_total{method=\"" M_ECHO "\",status=\"OK\"}", 1);
	tu_expect_metric(r.body,
	    "haven_rpc_calls_total{method=\"unknown\",status=\"UNIMPLEMENTED\"}", 1);
	tu_expect_metric(r.body,
	    "haven_rpc_calls_total{method=\"unknown\",status=\"INVALID_ARGUMENT\"}", 1);
	tu_expect_metric(r.body, "haven_rpc_call_duration_seconds_count{method=\"" M_HEALTH "\"}",
	    3);
	tu_expect_metric(r.body,
	    "haven_rpc_call_duration_seconds_bucket{method=\"" M_HEALTH "\",le=\"+Inf\"}", 3);
	tu_expect_metric(r.body, "haven_rpc_malformed_total", 1);
	assert_null(strstr(r.body, "JaneDoe"));
	assert_null(strstr(r.body, "haven.people"));
	assert_null(strstr(r.body, "haven.nope"));
	/* The host's own figures. */
	assert_true(tu_metric(r.body, "haven_store_map_size_bytes") > 0);
	assert_true(tu_metric(r.body, "haven_store_used_bytes") > 0);
	assert_true(tu_metric(r.body, "process_resident_memory_bytes") > 0);
	assert_true(tu_metric(r.body, "process_open_fds") > 0);
	assert_false(isnan(tu_metric(r.body, "process_cpu_seconds_total")));
	tu_expect_metric(r.body, "haven_rpc_serving{service=\"haven.admin.v1.Admin\"}", 1);
	http_reply_free(&r);

	/* HEAD: the headers only. Other paths: 404; other methods: 405. */
	assert_int_equal(http_request(port, "HEAD", "/metrics", &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	http_reply_free(&r);
	assert_int_equal(http_request(port, "GET", "/other", &r), 0);
	assert_int_equal(r.status, 404);
	http_reply_free(&r);
	assert_int_equal(http_request(port, "GET", "/", &r), 0);
	assert_int_equal(r.status, 404);
	http_reply_free(&r);
	assert_int_equal(http_request(port, "GET", "/metricsx", &r), 0);
	assert_int_equal(r.status, 404);
	http_reply_free(&r);
	assert_int_equal(http_request(port, "POST", "/metrics", &r), 0);
	assert_int_equal(r.status, 405);
	http_reply_free(&r);
	assert_int_equal(http_request(port, "DELETE", "/metrics", &r), 0);
	assert_int_equal(r.status, 405);
	http_reply_free(&r);

	/* Loopback names in Host are served; any other name is refused (a web page reaching the
	 * port through DNS rebinding carries its own). */
	{
		static const char *const ok_hosts[]  = { "localhost", "LOCALHOST:9464", "127.0.0.1",
			 "127.0.0.5:80", "[::1]", "[::1]:9464" };
		static const char *const bad_hosts[] = { "evil.example", "evil.example:9464",
			"10.0.0.1:9464", "[::2]:9464", "localhost.evil.example", "127.0.0.1.evil",
			":9464" };

		for (size_t i = 0; i < sizeof(ok_hosts) / sizeof(ok_hosts[0]); i++) {
			assert_int_equal(http_request_host(port, "GET", "/metrics", ok_hosts[i],
			                     &r),
			    0);
			if (r.status != 200) {
				fail_msg("Host %s: %d", ok_hosts[i], r.status);
			}
			http_reply_free(&r);
		}
		for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
			assert_int_equal(http_request_host(port, "GET", "/metrics", bad_hosts[i],
			                     &r),
			    0);
			if (r.status != 403) {
				fail_msg("Host %s: %d", bad_hosts[i], r.status);
			}
			assert_null(strstr(r.body, "haven_"));
			http_reply_free(&r);
		}
	}

	rpc_channel_close(ch);
	host_close(h);
	/* Nothing listens any more. */
	assert_int_equal(http_request(port, "GET", "/metrics", &r), -1);
	host_config_free(&cfg);
}

/* A port in use, and an address that is not loopback given past the configuration check. */
static void
test_start_failures(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t          sl = sizeof(sa);
	metrics           *m;
	metrics_http      *mh = (metrics_http *) (uintptr_t) 1;
	host_config        cfg;
	host              *h;
	char               addr[64];
	int                fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd                 = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));

	assert_int_equal(metrics_open(&m), HV_OK);
	assert_int_equal(metrics_http_start(&mh, m, addr), HV_ALREADY_EXISTS);
	assert_null(mh);
	assert_int_equal(metrics_http_start(&mh, m, "0.0.0.0:0"), HV_INVALID_ARGUMENT);
	assert_null(mh);

	/* Through the host: host_start fails, and host_close cleans up. */
	h = start_host(&cfg, "busy", "inproc://metrics-test-busy", addr);
	assert_int_equal(host_start(h, NULL, NULL), HV_ALREADY_EXISTS);
	assert_int_equal(host_metrics_port(h), 0);
	host_close(h);
	host_config_free(&cfg);

	/* A setting that bypassed host_config_load is still refused at start. */
	h = start_host(&cfg, "wild", "inproc://metrics-test-wild", "127.0.0.1:0");
	free(cfg.metrics_listen);
	cfg.metrics_listen = strdup("0.0.0.0:0");
	assert_int_equal(host_start(h, NULL, NULL), HV_INVALID_ARGUMENT);
	host_close(h);
	host_config_free(&cfg);

	close(fd);
	metrics_close(m);
}

/* A collector that takes its time: the server must render off nng's threads, answer scrapes
 * while it renders, and stop cleanly in the middle of one. */
static atomic_int slow_runs;

static void
slow_collector(void *arg, metrics_writer *w)
{
	struct timespec ts = { .tv_nsec = 300 * 1000000L };

	atomic_fetch_add(&slow_runs, 1);
	nanosleep(&ts, NULL);
	metrics_family(w, "test_slow", METRICS_GAUGE, "Slow.");
	metrics_sample(w, "test_slow", 1, (char *) NULL);
}

typedef struct scrape_job {
	int        port;
	int        rc;
	http_reply r;
} scrape_job;

static void *
scraper(void *arg)
{
	scrape_job *j = arg;

	j->rc = http_request(j->port, "GET", "/metrics", &j->r);
	return (NULL);
}

static void
test_stop_while_rendering(void **state)
{
	metrics      *m;
	metrics_http *mh;
	pthread_t     th[8];
	scrape_job    jobs[8];
	int           ok = 0, busy = 0, runs;
	http_reply    r;

	assert_int_equal(metrics_open(&m), HV_OK);
	assert_int_equal(metrics_add_collector(m, slow_collector, NULL), HV_OK);
	assert_int_equal(metrics_http_start(&mh, m, "127.0.0.1:0"), HV_OK);
	assert_true(metrics_http_port(mh) > 0);

	/* Eight at once: one renders, a few wait, the rest get 503 at once. */
	for (int i = 0; i < 8; i++) {
		jobs[i] = (scrape_job) { .port = metrics_http_port(mh) };
		assert_int_equal(pthread_create(&th[i], NULL, scraper, &jobs[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(jobs[i].rc, 0);
		if (jobs[i].r.status == 200) {
			assert_non_null(strstr(jobs[i].r.body, "\ntest_slow 1\n"));
			ok++;
		} else {
			assert_int_equal(jobs[i].r.status, 503);
			busy++;
		}
		http_reply_free(&jobs[i].r);
	}
	assert_true(ok >= 1 && ok <= 5);
	assert_int_equal(ok + busy, 8);

	/* A client that goes away while its page renders: the render finishes, the server goes
	 * on. */
	{
		struct sockaddr_in sa    = { .sin_family = AF_INET,
			   .sin_port                     = htons((uint16_t) metrics_http_port(mh)) };
		const char         req[] = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
		int                fd    = socket(AF_INET, SOCK_STREAM, 0);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
		assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t) sizeof(req) - 1);
		while (atomic_load(&slow_runs) == ok) {
			struct timespec ts = { .tv_nsec = 1000000L };
			nanosleep(&ts, NULL);
		}
		close(fd);
		ok++; /* one more render */
		assert_int_equal(http_request(metrics_http_port(mh), "GET", "/metrics", &r), 0);
		assert_int_equal(r.status, 200);
		http_reply_free(&r);
		ok++;
	}

	/* Stop while a scrape renders: it returns after that render, and no collector runs
	 * after it. */
	jobs[0] = (scrape_job) { .port = metrics_http_port(mh) };
	assert_int_equal(pthread_create(&th[0], NULL, scraper, &jobs[0]), 0);
	while (atomic_load(&slow_runs) == ok) {
		struct timespec ts = { .tv_nsec = 1000000L };
		nanosleep(&ts, NULL);
	}
	metrics_http_stop(mh);
	runs = atomic_load(&slow_runs);
	pthread_join(th[0], NULL);
	if (jobs[0].rc == 0) {
		http_reply_free(&jobs[0].r);
	}
	assert_int_equal(http_request(jobs[0].port, "GET", "/metrics", &r), -1);
	assert_int_equal(atomic_load(&slow_runs), runs);
	metrics_close(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_histogram_and_counts),
		cmocka_unit_test(test_text_format),
		cmocka_unit_test(test_page_limit),
		cmocka_unit_test(test_concurrent_recording),
		cmocka_unit_test(test_check_listen),
		cmocka_unit_test(test_config_refuses_non_loopback),
		cmocka_unit_test(test_served_page),
		cmocka_unit_test(test_start_failures),
		cmocka_unit_test(test_stop_while_rendering),
	};
	const char *base = getenv("HAVEN_TEST_TMP");

	snprintf(tmp, sizeof(tmp), "%s/metrics-XXXXXX", base != NULL ? base : "/tmp");
	if (mkdtemp(tmp) == NULL) {
		return (1);
	}
	log_init("metrics_test", LOG_LEVEL_OFF);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
