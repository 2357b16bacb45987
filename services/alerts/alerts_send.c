/*
 * alerts_send.c - what an alert says and how it leaves the node: the body (JSON for webhooks,
 * a short e-mail), both built only from the event's kind, urgency, times, sequence number,
 * target id and link; e-mail over SMTP with STARTTLS required (libcurl, CURLUSESSL_ALL, the
 * server's certificate checked against smtp_ca_file), and webhooks as an HTTPS POST signed
 * with HMAC-SHA256 of the body under the organisation's secret (X-Haven-Signature:
 * sha256=HEX), each with its idempotency key (Idempotency-Key header, Message-ID).
 */
#include "alerts_internal.h"

#include "haven/crypto.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode       curl_init_rc;

static void
curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

hv_status
alerts_send_init(void)
{
	pthread_once(&curl_once, curl_init);
	return (curl_init_rc == CURLE_OK ? HV_OK : HV_INTERNAL);
}

static void
iso_time(uint64_t ms, char *out, size_t outsz)
{
	time_t    t = (time_t) (ms / 1000);
	struct tm tm;

	if (ms == 0 || gmtime_r(&t, &tm) == NULL) {
		snprintf(out, outsz, "-");
		return;
	}
	strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *
kind_text(alerts_kind k)
{
	switch (k) {
	case ALERT(OFFER_NEW):
		return ("New offer: a place is held for your answer");
	case ALERT(OFFER_EXPIRING):
		return ("An offer to you expires soon");
	case ALERT(OFFER_UNACKNOWLEDGED):
		return ("Immediate offer not acknowledged");
	case ALERT(NEED_ACCEPTED):
		return ("A provider accepted your referral");
	case ALERT(NEED_PLACED):
		return ("Your referral was placed");
	case ALERT(NEED_DECLINED):
		return ("A provider declined your referral");
	case ALERT(NEED_EXPIRED):
		return ("An offer for your referral went unanswered");
	case ALERT(NEED_WAITING):
		return ("No provider has room: your referral waits");
	case ALERT(NEED_UNMET):
		return ("A referral is still waiting unmet");
	case ALERT(CONSENT_WITHDRAWN):
		return ("A consent that concerns you was withdrawn");
	case ALERT(CONSENT_EXPIRED):
		return ("A consent that concerns you expired");
	case ALERT(SUBJECT_ERASED):
		return ("A person you hold was erased");
	case ALERT(TEST):
		return ("Test alert: this channel works");
	default:
		return ("haven alert");
	}
}

static char *
webhook_body(const alerts_job *j, const AlertEvent *ev)
{
	json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "id", j->aj_key,
	    "seq", (json_int_t) ev->seq, "kind", alerts_kind_name(ev->kind), "urgency",
	    alerts_urgency_name(ev->urgency), "time_ms", (json_int_t) ev->time_ms, "respond_by_ms",
	    (json_int_t) ev->respond_by_ms, "org", ev->org_id, "target", ev->target, "link",
	    ev->link);
	char   *s;

	if (o == NULL) {
		return (NULL);
	}
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return (s);
}

static char *
mail_body(alerts_service *as, const alerts_job *j, const AlertEvent *ev)
{
	char      date[64], rb[32], from[ALERTS_EMAIL_MAX + 1];
	char     *buf;
	size_t    cap = 2048;
	time_t    now = (time_t) (alerts_now_ms(as) / 1000);
	struct tm tm;
	int       n;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	iso_time(ev->respond_by_ms, rb, sizeof(rb));
	snprintf(from, sizeof(from), "%s",
	    as->as_smtp_from != NULL ? as->as_smtp_from : "haven@localhost");
	if ((buf = malloc(cap)) == NULL) {
		return (NULL);
	}
	n = snprintf(buf, cap,
	    "Date: %s\r\n"
	    "From: <%s>\r\n"
	    "To: undisclosed-recipients:;\r\n"
	    "Message-ID: <%s@haven>\r\n"
	    "Subject: [haven] %s (%s)\r\n"
	    "Auto-Submitted: auto-generated\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n"
	    "%s.\r\n"
	    "Urgency: %s\r\n"
	    "Respond by: %s\r\n"
	    "Open in haven: %s\r\n"
	    "\r\n"
	    "Alert %s. This message carries no personal data; sign in to haven to see more.\r\n",
	    date, from, j->aj_key, kind_text(ev->kind), alerts_urgency_name(ev->urgency),
	    kind_text(ev->kind), alerts_urgency_name(ev->urgency), rb, ev->link, j->aj_key);
	if (n < 0 || (size_t) n >= cap) {
		free(buf);
		return (NULL);
	}
	return (buf);
}

hv_status
alerts_job_body(alerts_service *as, alerts_job *j, const AlertEvent *ev)
{
	j->aj_body = j->aj_channel == CHANNEL(WEBHOOK) ? webhook_body(j, ev) : mail_body(as, j, ev);
	if (j->aj_body == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	j->aj_len = strlen(j->aj_body);
	return (HV_OK);
}

void
alerts_job_free(alerts_job *j)
{
	for (size_t i = 0; i < j->aj_nrcpt; i++) {
		free(j->aj_rcpt[i]);
	}
	free(j->aj_rcpt);
	free(j->aj_body);
	OPENSSL_cleanse(j->aj_secret, sizeof(j->aj_secret));
	memset(j, 0, sizeof(*j));
}

/* ---- curl ----------------------------------------------------------------------------- */

/* Whether an address is loopback, private, link-local, shared or unspecified (IPv4, IPv6 and
 * IPv4-mapped IPv6). Unparsable counts as private. */
bool
alerts_ip_private(const char *ip)
{
	uint8_t a[16];

	if (inet_pton(AF_INET, ip, a) == 1) {
		return (a[0] == 0 || a[0] == 10 || a[0] == 127 || (a[0] == 169 && a[1] == 254) ||
		    (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168) ||
		    (a[0] == 100 && (a[1] & 0xc0) == 64) || a[0] >= 224);
	}
	if (inet_pton(AF_INET6, ip, a) == 1) {
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		static const uint8_t zero[15];
		char                 v4[INET_ADDRSTRLEN];

		if (memcmp(a, mapped, 12) == 0) {
			return (inet_ntop(AF_INET, a + 12, v4, sizeof(v4)) == NULL ||
			    alerts_ip_private(v4));
		}
		return (memcmp(a, zero, 15) == 0 /* :: and ::1 */ || (a[0] & 0xfe) == 0xfc ||
		    (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || a[0] == 0xff);
	}
	return (true);
}

/* libcurl calls this once connected, before the request is sent: the address it reached,
 * after DNS, so that a name resolving to the node's own network is refused too. */
static int
prereq_cb(void *arg, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	alerts_job *j = arg;

	(void) local_ip;
	(void) primary_port;
	(void) local_port;
	if (alerts_ip_private(primary_ip)) {
		snprintf(j->aj_err, sizeof(j->aj_err),
		    "webhook: refused: %s is a loopback or private address", primary_ip);
		return (CURL_PREREQFUNC_ABORT);
	}
	return (CURL_PREREQFUNC_OK);
}

/* One send in flight: its easy handle and what the handle points into until it is done. */
typedef struct send_ctx {
	alerts_job        *x_job;
	CURL              *x_curl;
	struct curl_slist *x_list; /* headers (webhook) or recipients (e-mail) */
	const char        *x_p;    /* the e-mail still to upload */
	size_t             x_left;
	char               x_from[ALERTS_EMAIL_MAX + 3];
	bool               x_added;
} send_ctx;

static size_t
read_cb(char *buf, size_t size, size_t nmemb, void *arg)
{
	send_ctx *x = arg;
	size_t    n = size * nmemb < x->x_left ? size * nmemb : x->x_left;

	memcpy(buf, x->x_p, n);
	x->x_p += n;
	x->x_left -= n;
	return (n);
}

static size_t
discard_cb(char *buf, size_t size, size_t nmemb, void *arg)
{
	(void) buf;
	(void) arg;
	return (size * nmemb);
}

static bool
append(send_ctx *x, const char *line)
{
	struct curl_slist *n = curl_slist_append(x->x_list, line);

	if (n == NULL) {
		snprintf(x->x_job->aj_err, sizeof(x->x_job->aj_err), "out of memory");
		return (false);
	}
	x->x_list = n;
	return (true);
}

static bool
prepare_mail(alerts_service *as, send_ctx *x)
{
	alerts_job *j = x->x_job;
	CURL       *c = x->x_curl;

	snprintf(x->x_from, sizeof(x->x_from), "<%s>",
	    as->as_smtp_from != NULL ? as->as_smtp_from : "haven@localhost");
	for (size_t i = 0; i < j->aj_nrcpt; i++) {
		char a[ALERTS_EMAIL_MAX + 3];

		snprintf(a, sizeof(a), "<%s>", j->aj_rcpt[i]);
		if (!append(x, a)) {
			return (false);
		}
	}
	x->x_p    = j->aj_body;
	x->x_left = j->aj_len;
	curl_easy_setopt(c, CURLOPT_URL, as->as_smtp_url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(c, CURLOPT_USE_SSL, (long) CURLUSESSL_ALL);
	if (as->as_smtp_ca != NULL) {
		curl_easy_setopt(c, CURLOPT_CAINFO, as->as_smtp_ca);
	}
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, x->x_from);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, x->x_list);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(c, CURLOPT_READDATA, x);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	return (true);
}

static bool
prepare_webhook(alerts_service *as, send_ctx *x)
{
	alerts_job *j = x->x_job;
	CURL       *c = x->x_curl;
	uint8_t     mac[CRYPTO_HMAC_LEN];
	char        sig[32 + 2 * CRYPTO_HMAC_LEN];
	char        idem[ALERTS_KEY_MAX + 20];
	int         off;

	crypto_hmac_sha256(mac, j->aj_secret, j->aj_secretlen, j->aj_body, j->aj_len);
	off = snprintf(sig, sizeof(sig), "X-Haven-Signature: sha256=");
	for (size_t i = 0; i < sizeof(mac); i++) {
		off += snprintf(sig + off, sizeof(sig) - (size_t) off, "%02x", mac[i]);
	}
	OPENSSL_cleanse(mac, sizeof(mac));
	snprintf(idem, sizeof(idem), "Idempotency-Key: %s", j->aj_key);
	if (!append(x, "Content-Type: application/json") || !append(x, sig) || !append(x, idem) ||
	    !append(x, "Expect:")) {
		return (false);
	}
	curl_easy_setopt(c, CURLOPT_URL, j->aj_url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, as->as_allow_private ? "https,http" : "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->x_list);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->aj_body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) j->aj_len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_cb);
	if (!as->as_allow_private) {
		curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, prereq_cb);
		curl_easy_setopt(c, CURLOPT_PREREQDATA, j);
	}
	return (true);
}

/* What a finished transfer means for its job. */
static void
finish(send_ctx *x, CURLcode rc)
{
	alerts_job *j    = x->x_job;
	long        code = 0;

	if (rc != CURLE_OK) {
		if (j->aj_err[0] == '\0') {
			snprintf(j->aj_err, sizeof(j->aj_err), "%s: %s",
			    j->aj_channel == CHANNEL(WEBHOOK) ? "webhook" : "smtp",
			    curl_easy_strerror(rc));
		}
		return;
	}
	if (j->aj_channel == CHANNEL(WEBHOOK)) {
		curl_easy_getinfo(x->x_curl, CURLINFO_RESPONSE_CODE, &code);
		if (code < 200 || code > 299) {
			snprintf(j->aj_err, sizeof(j->aj_err), "webhook: HTTP status %ld", code);
			return;
		}
	}
	j->aj_ok = true;
}

/* Sends the jobs at once (libcurl's multi interface): a receiver that does not answer costs
 * the batch its timeout once, not once per delivery behind it. */
void
alerts_jobs_send(alerts_service *as, alerts_job **jobs, size_t n)
{
	send_ctx xs[ALERTS_BATCH];
	CURLM   *m = curl_multi_init();
	CURLMsg *msg;
	int      running = 0, left;

	memset(xs, 0, sizeof(xs));
	if (m != NULL) {
		/* At most 4 at once to one host: partners' systems (and a mail server) are not
		 * flooded, and transfers to other hosts do not wait for them. */
		curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 4L);
	}
	for (size_t i = 0; i < n && i < ALERTS_BATCH; i++) {
		send_ctx *x = &xs[i];

		x->x_job           = jobs[i];
		jobs[i]->aj_ok     = false;
		jobs[i]->aj_err[0] = '\0';
		if (m == NULL || (x->x_curl = curl_easy_init()) == NULL) {
			snprintf(jobs[i]->aj_err, sizeof(jobs[i]->aj_err),
			    "libcurl: out of memory");
			continue;
		}
		curl_easy_setopt(x->x_curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(x->x_curl, CURLOPT_TIMEOUT_MS, as->as_send_timeout_ms);
		curl_easy_setopt(x->x_curl, CURLOPT_CONNECTTIMEOUT_MS, as->as_send_timeout_ms / 2);
		curl_easy_setopt(x->x_curl, CURLOPT_PRIVATE, x);
		if ((jobs[i]->aj_channel == CHANNEL(WEBHOOK) ? prepare_webhook(as, x)
		                                             : prepare_mail(as, x)) &&
		    curl_multi_add_handle(m, x->x_curl) == CURLM_OK) {
			x->x_added = true;
		}
	}
	if (m != NULL) {
		do {
			if (curl_multi_perform(m, &running) != CURLM_OK) {
				break;
			}
			if (running > 0 && curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK) {
				break;
			}
		} while (running > 0);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			send_ctx *x = NULL;

			if (msg->msg == CURLMSG_DONE &&
			    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &x) ==
			        CURLE_OK &&
			    x != NULL) {
				finish(x, msg->data.result);
			}
		}
	}
	for (size_t i = 0; i < n && i < ALERTS_BATCH; i++) {
		if (xs[i].x_added) {
			curl_multi_remove_handle(m, xs[i].x_curl);
		}
		if (xs[i].x_curl != NULL) {
			curl_easy_cleanup(xs[i].x_curl);
		}
		curl_slist_free_all(xs[i].x_list);
		if (xs[i].x_job != NULL && !xs[i].x_job->aj_ok && xs[i].x_job->aj_err[0] == '\0') {
			snprintf(xs[i].x_job->aj_err, sizeof(xs[i].x_job->aj_err), "not sent");
		}
	}
	curl_multi_cleanup(m);
}
