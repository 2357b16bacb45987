/*
 * metrics.c - the metrics registry, the Prometheus text format and the local HTTP endpoint
 * (see metrics.h).
 *
 * Recording a call touches three relaxed atomic counters of its method's series (the status,
 * the latency bucket, the sum) and nothing else: no lock, no allocation. Series are allocated
 * one by one and never move or go away before metrics_close, so the RPC server keeps a pointer
 * per method. The registry's mutex guards the sorted list of series and the collector list; a
 * render copies both under it and then works without it.
 *
 * The HTTP endpoint is nng's HTTP server. Its handler callback runs on nng's threads, which
 * also run the RPC server's callbacks, so it only queues the request; a thread of our own
 * renders the page and completes the request. The endpoint's state is shared between that
 * thread, the owner and nng's handler (which may still be inside its callback when the owner
 * stops): it is reference-counted and freed by whichever lets go last.
 */
#include "haven/clock.h"
#include "haven/metrics.h"
#include "haven/log.h"
#include "haven/rpc.h"

#include <arpa/inet.h>
#include <math.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the registry --------------------------------------------------------------------- */

#define METHOD_NAME_MAX 256

static const int64_t bucket_us[METRICS_BUCKETS] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
	50000, 100000, 250000, 1000000 };
static const char *const bucket_le[METRICS_BUCKETS + 1] = { "0.0001", "0.00025", "0.0005", "0.001",
	"0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "1", "+Inf" };

struct metrics_method {
	char          mm_name[METHOD_NAME_MAX];
	atomic_ullong mm_calls[HV_STATUS_MAX + 1];     /* by status code */
	atomic_ullong mm_buckets[METRICS_BUCKETS + 1]; /* not cumulative; the last is +Inf */
	atomic_ullong mm_sum_us;
};

typedef struct collector {
	metrics_collect_fn co_fn;
	void              *co_arg;
} collector;

struct metrics {
	pthread_mutex_t  m_mtx;
	metrics_method **m_methods; /* sorted by name */
	size_t           m_nmethods;
	size_t           m_capmethods;
	collector       *m_collectors;
	size_t           m_ncollectors;
	size_t           m_capcollectors;
	atomic_ullong    m_invalid; /* samples left out because they were malformed */
};

struct metrics_writer {
	metrics *w_m;
	char    *w_buf;
	size_t   w_len;
	size_t   w_cap;
	bool     w_failed; /* out of memory or over METRICS_PAGE_MAX: the page is given up */
};

hv_status
metrics_open(metrics **out)
{
	metrics *m;

	if (out == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_init(&m->m_mtx, NULL);
	*out = m;
	return (HV_OK);
}

void
metrics_close(metrics *m)
{
	if (m == NULL) {
		return;
	}
	for (size_t i = 0; i < m->m_nmethods; i++) {
		free(m->m_methods[i]);
	}
	free(m->m_methods);
	free(m->m_collectors);
	pthread_mutex_destroy(&m->m_mtx);
	free(m);
}

/* The index of the first series whose name is >= name. Under m_mtx. */
static size_t
method_pos(const metrics *m, const char *name, bool *found)
{
	size_t lo = 0, hi = m->m_nmethods;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int    c   = strcmp(m->m_methods[mid]->mm_name, name);
		if (c < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	*found = lo < m->m_nmethods && strcmp(m->m_methods[lo]->mm_name, name) == 0;
	return (lo);
}

metrics_method *
metrics_method_get(metrics *m, const char *name)
{
	metrics_method *mm = NULL;
	size_t          n, pos;
	bool            found;

	if (m == NULL || name == NULL || (n = strlen(name)) == 0 || n >= METHOD_NAME_MAX) {
		return (NULL);
	}
	pthread_mutex_lock(&m->m_mtx);
	pos = method_pos(m, name, &found);
	if (found) {
		mm = m->m_methods[pos];
		goto out;
	}
	if (m->m_nmethods >= METRICS_METHODS_MAX) {
		goto out;
	}
	if (m->m_nmethods == m->m_capmethods) {
		size_t           cap = m->m_capmethods == 0 ? 32 : m->m_capmethods * 2;
		metrics_method **p   = realloc(m->m_methods, cap * sizeof(*p));
		if (p == NULL) {
			goto out;
		}
		m->m_methods    = p;
		m->m_capmethods = cap;
	}
	if ((mm = calloc(1, sizeof(*mm))) == NULL) {
		goto out;
	}
	memcpy(mm->mm_name, name, n + 1); /* n < METHOD_NAME_MAX, checked above */
	memmove(&m->m_methods[pos + 1], &m->m_methods[pos],
	    (m->m_nmethods - pos) * sizeof(*m->m_methods));
	m->m_methods[pos] = mm;
	m->m_nmethods++;
out:
	pthread_mutex_unlock(&m->m_mtx);
	return (mm);
}

void
metrics_method_observe(metrics_method *mm, hv_status code, int64_t duration_us)
{
	unsigned c = (int) code >= 0 && code <= HV_STATUS_MAX ? (unsigned) code : HV_UNKNOWN;
	unsigned b = 0;

	if (mm == NULL) {
		return;
	}
	if (duration_us < 0) {
		duration_us = 0;
	}
	while (b < METRICS_BUCKETS && duration_us > bucket_us[b]) {
		b++;
	}
	atomic_fetch_add_explicit(&mm->mm_calls[c], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mm->mm_buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mm->mm_sum_us, (unsigned long long) duration_us,
	    memory_order_relaxed);
}

uint64_t
metrics_method_calls(const metrics_method *mm, hv_status code)
{
	if (mm == NULL || (int) code < 0 || code > HV_STATUS_MAX) {
		return (0);
	}
	return (atomic_load_explicit(&mm->mm_calls[code], memory_order_relaxed));
}

hv_status
metrics_add_collector(metrics *m, metrics_collect_fn fn, void *arg)
{
	hv_status st = HV_INVALID_ARGUMENT;

	if (m == NULL || fn == NULL) {
		return (st);
	}
	pthread_mutex_lock(&m->m_mtx);
	if (m->m_ncollectors == m->m_capcollectors) {
		size_t     cap = m->m_capcollectors == 0 ? 8 : m->m_capcollectors * 2;
		collector *p   = realloc(m->m_collectors, cap * sizeof(*p));
		if (p == NULL) {
			st = HV_RESOURCE_EXHAUSTED;
			goto out;
		}
		m->m_collectors    = p;
		m->m_capcollectors = cap;
	}
	m->m_collectors[m->m_ncollectors++] = (collector) { fn, arg };
	st                                  = HV_OK;
out:
	pthread_mutex_unlock(&m->m_mtx);
	return (st);
}

/* ---- the text format ------------------------------------------------------------------ */

static void
put(metrics_writer *w, const char *s, size_t n)
{
	if (w->w_failed) {
		return;
	}
	if (w->w_len + n + 1 > w->w_cap) {
		size_t cap = w->w_cap == 0 ? 64 * 1024 : w->w_cap;
		char  *p;

		while (cap < w->w_len + n + 1) {
			cap *= 2;
		}
		if (cap > METRICS_PAGE_MAX) {
			cap = METRICS_PAGE_MAX;
		}
		if (w->w_len + n + 1 > cap || (p = realloc(w->w_buf, cap)) == NULL) {
			w->w_failed = true;
			return;
		}
		w->w_buf = p;
		w->w_cap = cap;
	}
	memcpy(w->w_buf + w->w_len, s, n);
	w->w_len += n;
	w->w_buf[w->w_len] = '\0';
}

static void
puts_(metrics_writer *w, const char *s)
{
	put(w, s, strlen(s));
}

/* Escapes backslash and newline (HELP text), and the double quote too (label values). */
static void
put_escaped(metrics_writer *w, const char *s, bool quote)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *esc = NULL;

		if (*s == '\\') {
			esc = "\\\\";
		} else if (*s == '\n') {
			esc = "\\n";
		} else if (*s == '"' && quote) {
			esc = "\\\"";
		}
		if (esc != NULL) {
			put(w, run, (size_t) (s - run));
			put(w, esc, 2);
			run = s + 1;
		}
	}
	put(w, run, (size_t) (s - run));
}

static void
put_value(metrics_writer *w, double v)
{
	char b[64];

	if (isnan(v)) {
		snprintf(b, sizeof(b), "NaN");
	} else if (isinf(v)) {
		snprintf(b, sizeof(b), v > 0 ? "+Inf" : "-Inf");
	} else if (v > -9.0e15 && v < 9.0e15 && v == (double) (long long) v) {
		snprintf(b, sizeof(b), "%lld", (long long) v);
	} else {
		snprintf(b, sizeof(b), "%.15g", v);
	}
	puts_(w, b);
}

static bool
name_ok(const char *s, bool metric)
{
	if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9')) {
		return (false);
	}
	if (!metric && s[0] == '_' && s[1] == '_') {
		return (false); /* reserved for Prometheus itself */
	}
	for (; *s != '\0'; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		        c == '_' || (metric && c == ':'))) {
			return (false);
		}
	}
	return (true);
}

static void
invalid(metrics_writer *w, const char *what, const char *name)
{
	atomic_fetch_add(&w->w_m->m_invalid, 1);
	log_debug("metrics: %s '%.64s' left out", what, name != NULL ? name : "(null)");
}

static void
put_family(metrics_writer *w, const char *name, const char *type, const char *help)
{
	if (!name_ok(name, true)) {
		invalid(w, "family", name);
		return;
	}
	puts_(w, "# HELP ");
	puts_(w, name);
	puts_(w, " ");
	put_escaped(w, help != NULL ? help : "", false);
	puts_(w, "\n# TYPE ");
	puts_(w, name);
	puts_(w, " ");
	puts_(w, type);
	puts_(w, "\n");
}

void
metrics_family(metrics_writer *w, const char *name, metrics_type type, const char *help)
{
	put_family(w, name, type == METRICS_COUNTER ? "counter" : "gauge", help);
}

void
metrics_sample_labels(metrics_writer *w, const char *name, double value, const char *const *labels,
    size_t nlabels)
{
	if (!name_ok(name, true)) {
		invalid(w, "sample", name);
		return;
	}
	if (nlabels > METRICS_LABELS_MAX || (nlabels > 0 && labels == NULL)) {
		invalid(w, "sample with too many labels", name);
		return;
	}
	for (size_t i = 0; i < nlabels; i++) {
		if (!name_ok(labels[2 * i], false) || labels[2 * i + 1] == NULL) {
			invalid(w, "sample with a bad label", name);
			return;
		}
	}
	puts_(w, name);
	for (size_t i = 0; i < nlabels; i++) {
		puts_(w, i == 0 ? "{" : ",");
		puts_(w, labels[2 * i]);
		puts_(w, "=\"");
		put_escaped(w, labels[2 * i + 1], true);
		puts_(w, "\"");
	}
	puts_(w, nlabels > 0 ? "} " : " ");
	put_value(w, value);
	puts_(w, "\n");
}

void
metrics_sample(metrics_writer *w, const char *name, double value, ...)
{
	const char *labels[2 * METRICS_LABELS_MAX];
	size_t      n = 0;
	va_list     ap;

	va_start(ap, value);
	for (;;) {
		const char *k = va_arg(ap, const char *);
		const char *v;

		if (k == NULL) {
			break;
		}
		v = va_arg(ap, const char *);
		if (n == METRICS_LABELS_MAX || v == NULL) {
			va_end(ap);
			invalid(w, "sample with too many labels or a missing value", name);
			return;
		}
		labels[2 * n]     = k;
		labels[2 * n + 1] = v;
		n++;
	}
	va_end(ap);
	metrics_sample_labels(w, name, value, labels, n);
}

/* ---- rendering ------------------------------------------------------------------------ */

static void
write_calls(metrics_writer *w, metrics_method *const *mms, size_t n)
{
	metrics_family(w, "haven_rpc_calls_total", METRICS_COUNTER,
	    "RPC calls answered, by method and status (method=\"unknown\": a name the server "
	    "does not serve, or no decodable request).");
	for (size_t i = 0; i < n; i++) {
		for (int c = 0; c <= HV_STATUS_MAX; c++) {
			uint64_t v =
			    atomic_load_explicit(&mms[i]->mm_calls[c], memory_order_relaxed);
			if (v > 0) {
				metrics_sample(w, "haven_rpc_calls_total", (double) v, "method",
				    mms[i]->mm_name, "status", hv_status_name(c), (char *) NULL);
			}
		}
	}

	put_family(w, "haven_rpc_call_duration_seconds", "histogram",
	    "Time from receiving a call to starting to send its reply, by method.");
	for (size_t i = 0; i < n; i++) {
		uint64_t b[METRICS_BUCKETS + 1];
		uint64_t total = 0;
		double   sum;

		for (int j = 0; j <= METRICS_BUCKETS; j++) {
			b[j] = atomic_load_explicit(&mms[i]->mm_buckets[j], memory_order_relaxed);
			total += b[j];
		}
		if (total == 0) {
			continue;
		}
		sum = (double) atomic_load_explicit(&mms[i]->mm_sum_us, memory_order_relaxed) / 1e6;
		total = 0;
		for (int j = 0; j <= METRICS_BUCKETS; j++) {
			total += b[j];
			metrics_sample(w, "haven_rpc_call_duration_seconds_bucket", (double) total,
			    "method", mms[i]->mm_name, "le", bucket_le[j], (char *) NULL);
		}
		metrics_sample(w, "haven_rpc_call_duration_seconds_sum", sum, "method",
		    mms[i]->mm_name, (char *) NULL);
		metrics_sample(w, "haven_rpc_call_duration_seconds_count", (double) total, "method",
		    mms[i]->mm_name, (char *) NULL);
	}
}

hv_status
metrics_render(metrics *m, char **out, size_t *len)
{
	metrics_writer   w    = { .w_m = m };
	metrics_method **mms  = NULL;
	collector       *cols = NULL;
	size_t           nm = 0, nc = 0;
	int64_t          t0 = hv_clock_mono_us();
	hv_status        st = HV_RESOURCE_EXHAUSTED;

	if (m == NULL || out == NULL || len == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	*len = 0;
	/* Copies of both lists, so that nothing is held while collectors run. */
	pthread_mutex_lock(&m->m_mtx);
	nm   = m->m_nmethods;
	nc   = m->m_ncollectors;
	mms  = malloc((nm > 0 ? nm : 1) * sizeof(*mms));
	cols = malloc((nc > 0 ? nc : 1) * sizeof(*cols));
	if (mms != NULL && nm > 0) {
		memcpy(mms, m->m_methods, nm * sizeof(*mms));
	}
	if (cols != NULL && nc > 0) {
		memcpy(cols, m->m_collectors, nc * sizeof(*cols));
	}
	pthread_mutex_unlock(&m->m_mtx);
	if (mms == NULL || cols == NULL) {
		goto out;
	}

	write_calls(&w, mms, nm);
	for (size_t i = 0; i < nc && !w.w_failed; i++) {
		cols[i].co_fn(cols[i].co_arg, &w);
	}
	metrics_family(&w, "haven_metrics_invalid_samples_total", METRICS_COUNTER,
	    "Samples left out of this page since start because a collector wrote them malformed.");
	metrics_sample(&w, "haven_metrics_invalid_samples_total",
	    (double) atomic_load(&m->m_invalid), (char *) NULL);
	metrics_family(&w, "haven_metrics_render_duration_seconds", METRICS_GAUGE,
	    "Time taken to make this page, collectors included.");
	metrics_sample(&w, "haven_metrics_render_duration_seconds",
	    (double) (hv_clock_mono_us() - t0) / 1e6, (char *) NULL);
	if (w.w_failed) {
		log_warn("metrics: the page is over %u bytes or memory is out", METRICS_PAGE_MAX);
		goto out;
	}
	*out    = w.w_buf;
	*len    = w.w_len;
	w.w_buf = NULL;
	st      = HV_OK;
out:
	free(w.w_buf);
	free(mms);
	free(cols);
	return (st);
}

/* ---- listen addresses ----------------------------------------------------------------- */

hv_status
metrics_check_listen(const char *addr, char *err, size_t errsz)
{
	char        host[64];
	const char *port;
	size_t      hl;
	long        p = 0;
	uint8_t     a[16];

	if (addr == NULL || addr[0] == '\0') {
		snprintf(err, errsz,
		    "metrics address is empty; give HOST:PORT, e.g. 127.0.0.1:9464");
		return (HV_INVALID_ARGUMENT);
	}
	if (strlen(addr) > 100) {
		snprintf(err, errsz, "metrics address is over 100 bytes");
		return (HV_INVALID_ARGUMENT);
	}
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (close == NULL || close[1] != ':') {
			snprintf(err, errsz,
			    "metrics address '%s': write an IPv6 address as [::1]:PORT", addr);
			return (HV_INVALID_ARGUMENT);
		}
		hl   = (size_t) (close - addr - 1);
		port = close + 2;
		if (hl >= sizeof(host)) {
			hl =
			    sizeof(host) - 1; /* too long for any loopback address: refused below */
		}
		memcpy(host, addr + 1, hl);
	} else {
		const char *colon = strrchr(addr, ':');
		if (colon == NULL) {
			snprintf(err, errsz,
			    "metrics address '%s' has no port; give HOST:PORT, e.g. 127.0.0.1:9464",
			    addr);
			return (HV_INVALID_ARGUMENT);
		}
		hl = (size_t) (colon - addr);
		if (memchr(addr, ':', hl) != NULL) {
			snprintf(err, errsz,
			    "metrics address '%s': write an IPv6 address as [::1]:PORT", addr);
			return (HV_INVALID_ARGUMENT);
		}
		port = colon + 1;
		if (hl >= sizeof(host)) {
			hl = sizeof(host) - 1;
		}
		memcpy(host, addr, hl);
	}
	host[hl] = '\0';

	if (port[0] == '\0' || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) ||
	    (p = strtol(port, NULL, 10)) > 65535) {
		snprintf(err, errsz, "metrics address '%s': the port must be a number 0..65535",
		    addr);
		return (HV_INVALID_ARGUMENT);
	}
	if (strcasecmp(host, "localhost") == 0 ||
	    (addr[0] != '[' && inet_pton(AF_INET, host, a) == 1 && a[0] == 127)) {
		return (HV_OK);
	}
	if (addr[0] == '[' && inet_pton(AF_INET6, host, a) == 1) {
		static const uint8_t loop6[16] = { [15] = 1 };
		if (memcmp(a, loop6, sizeof(loop6)) == 0) {
			return (HV_OK);
		}
	}
	snprintf(err, errsz,
	    "metrics address '%s' is not a loopback address: the metrics page is unauthenticated "
	    "and unencrypted, so it is served on 127.0.0.1, [::1] or localhost only",
	    addr);
	return (HV_INVALID_ARGUMENT);
}

/* ---- the HTTP endpoint ---------------------------------------------------------------- */

#define HTTP_QUEUE 4 /* scrapes waiting for the render thread; more get 503 */

struct metrics_http {
	metrics          *mh_m;
	nng_http_server  *mh_srv;
	nng_http_handler *mh_handler;
	bool              mh_started;  /* nng_http_server_start succeeded */
	bool              mh_attached; /* the handler is registered on mh_srv */
	int               mh_port;

	/* Under mh_mtx: the queue, closing. Signalled on mh_cv. */
	pthread_mutex_t mh_mtx;
	pthread_cond_t  mh_cv;
	nng_aio        *mh_queue[HTTP_QUEUE];
	unsigned        mh_qhead;
	unsigned        mh_qlen;
	bool            mh_closing;
	bool            mh_thread_running;
	pthread_t       mh_thread;

	/* The owner, and nng's handler from the moment its data is set. */
	atomic_int mh_refs;
};

static void
http_unref(metrics_http *mh)
{
	if (atomic_fetch_sub(&mh->mh_refs, 1) != 1) {
		return;
	}
	pthread_cond_destroy(&mh->mh_cv);
	pthread_mutex_destroy(&mh->mh_mtx);
	free(mh);
}

/* The handler's data destructor: nng lets go of the handler (no callback is running). */
static void
http_handler_dtor(void *arg)
{
	http_unref(arg);
}

/* Completes a request with an empty error page of this status. */
static void
http_reply_status(nng_aio *aio, uint16_t status)
{
	nng_http_res *res;

	if (nng_http_res_alloc_error(&res, status) != 0) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void
http_reply_page(metrics_http *mh, nng_aio *aio)
{
	nng_http_res *res  = NULL;
	char         *page = NULL;
	size_t        len  = 0;

	if (metrics_render(mh->mh_m, &page, &len) != HV_OK) {
		http_reply_status(aio, NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR);
		return;
	}
	if (nng_http_res_alloc(&res) != 0 ||
	    nng_http_res_set_header(res, "Content-Type",
	        "text/plain; version=0.0.4; charset=utf-8") != 0 ||
	    nng_http_res_set_header(res, "Cache-Control", "no-store") != 0 ||
	    nng_http_res_copy_data(res, page, len) != 0) {
		free(page);
		if (res != NULL) {
			nng_http_res_free(res);
		}
		http_reply_status(aio, NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR);
		return;
	}
	free(page);
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void *
http_thread(void *arg)
{
	metrics_http *mh = arg;

	for (;;) {
		nng_aio *aio;
		bool     closing;

		pthread_mutex_lock(&mh->mh_mtx);
		while (mh->mh_qlen == 0 && !mh->mh_closing) {
			pthread_cond_wait(&mh->mh_cv, &mh->mh_mtx);
		}
		if (mh->mh_qlen == 0) { /* closing and drained */
			pthread_mutex_unlock(&mh->mh_mtx);
			return (NULL);
		}
		aio          = mh->mh_queue[mh->mh_qhead];
		mh->mh_qhead = (mh->mh_qhead + 1) % HTTP_QUEUE;
		mh->mh_qlen--;
		closing = mh->mh_closing;
		pthread_mutex_unlock(&mh->mh_mtx);

		if (closing) {
			nng_aio_finish(aio, NNG_ECLOSED);
		} else {
			http_reply_page(mh, aio);
		}
	}
}

/* Whether a request's Host header names a loopback address (or there is none: HTTP/1.0).
 * A web page the node's operator opens could otherwise read the page through DNS rebinding
 * (its own name resolving to 127.0.0.1): its requests carry its own name. */
static bool
host_header_ok(const char *host)
{
	char        name[64];
	const char *end;
	size_t      n;
	uint8_t     a[16];

	if (host == NULL) {
		return (true);
	}
	if (host[0] == '[') {
		return (strncmp(host, "[::1]", 5) == 0 && (host[5] == '\0' || host[5] == ':'));
	}
	end = strchr(host, ':');
	n   = end != NULL ? (size_t) (end - host) : strlen(host);
	if (n == 0 || n >= sizeof(name)) {
		return (false);
	}
	memcpy(name, host, n);
	name[n] = '\0';
	return (strcasecmp(name, "localhost") == 0 ||
	    (inet_pton(AF_INET, name, a) == 1 && a[0] == 127));
}

/* nng's handler callback (GET /metrics), on an nng thread: queue it for the render thread.
 * Nothing of mh is touched after the request is completed. */
static void
http_cb(nng_aio *aio)
{
	nng_http_req     *req    = nng_aio_get_input(aio, 0);
	nng_http_handler *h      = nng_aio_get_input(aio, 1);
	metrics_http     *mh     = nng_http_handler_get_data(h);
	bool              queued = false, closing;

	if (!host_header_ok(nng_http_req_get_header(req, "Host"))) {
		http_reply_status(aio, NNG_HTTP_STATUS_FORBIDDEN);
		return;
	}
	pthread_mutex_lock(&mh->mh_mtx);
	closing = mh->mh_closing;
	if (!closing && mh->mh_qlen < HTTP_QUEUE) {
		mh->mh_queue[(mh->mh_qhead + mh->mh_qlen) % HTTP_QUEUE] = aio;
		mh->mh_qlen++;
		pthread_cond_signal(&mh->mh_cv);
		queued = true;
	}
	pthread_mutex_unlock(&mh->mh_mtx);
	if (queued) {
		return;
	}
	if (closing) {
		nng_aio_finish(aio, NNG_ECLOSED);
		return;
	}
	http_reply_status(aio, NNG_HTTP_STATUS_SERVICE_UNAVAILABLE);
}

hv_status
metrics_http_start(metrics_http **out, metrics *m, const char *addr)
{
	metrics_http *mh  = NULL;
	nng_url      *url = NULL;
	nng_sockaddr  sa;
	char          err[256];
	char          buf[128];
	hv_status     st;
	int           rv;

	if (out == NULL || m == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if ((st = metrics_check_listen(addr, err, sizeof(err))) != HV_OK) {
		log_error("%s", err);
		return (st);
	}
	st = HV_RESOURCE_EXHAUSTED;
	if ((mh = calloc(1, sizeof(*mh))) == NULL) {
		return (st);
	}
	mh->mh_m = m;
	atomic_init(&mh->mh_refs, 1);
	pthread_mutex_init(&mh->mh_mtx, NULL);
	pthread_cond_init(&mh->mh_cv, NULL);
	if (pthread_create(&mh->mh_thread, NULL, http_thread, mh) != 0) {
		goto fail;
	}
	mh->mh_thread_running = true;

	snprintf(buf, sizeof(buf), "http://%s", addr);
	if ((rv = nng_url_parse(&url, buf)) != 0 ||
	    (rv = nng_http_server_hold(&mh->mh_srv, url)) != 0) {
		log_error("metrics: cannot serve on %s: %s", addr, nng_strerror(rv));
		st = HV_INVALID_ARGUMENT;
		goto fail;
	}
	if ((rv = nng_http_handler_alloc(&mh->mh_handler, "/metrics", http_cb)) != 0) {
		goto fail;
	}
	/* Only GET (and HEAD, which nng answers from it); no request body. */
	if ((rv = nng_http_handler_collect_body(mh->mh_handler, true, 0)) != 0) {
		goto fail;
	}
	atomic_fetch_add(&mh->mh_refs, 1); /* the handler's, dropped by its destructor */
	if ((rv = nng_http_handler_set_data(mh->mh_handler, mh, http_handler_dtor)) != 0) {
		atomic_fetch_sub(&mh->mh_refs, 1);
		goto fail;
	}
	if ((rv = nng_http_server_add_handler(mh->mh_srv, mh->mh_handler)) != 0) {
		log_error("metrics: cannot serve /metrics on %s: %s", addr, nng_strerror(rv));
		st = HV_ALREADY_EXISTS;
		goto fail;
	}
	mh->mh_attached = true;
	if ((rv = nng_http_server_start(mh->mh_srv)) != 0) {
		log_error("metrics: cannot listen on %s: %s", addr, nng_strerror(rv));
		st = rv == NNG_EADDRINUSE ? HV_ALREADY_EXISTS : hv_status_from_nng(rv);
		goto fail;
	}
	mh->mh_started = true;
	if (nng_http_server_get_addr(mh->mh_srv, &sa) == 0) {
		if (sa.s_family == NNG_AF_INET) {
			mh->mh_port = ntohs(sa.s_in.sa_port);
		} else if (sa.s_family == NNG_AF_INET6) {
			mh->mh_port = ntohs(sa.s_in6.sa_port);
		}
	}
	if (mh->mh_port == 0) {
		mh->mh_port = atoi(url->u_port);
	}
	nng_url_free(url);
	log_info("metrics: serving http://%s/metrics (port %d)", addr, mh->mh_port);
	*out = mh;
	return (HV_OK);

fail:
	if (url != NULL) {
		nng_url_free(url);
	}
	metrics_http_stop(mh);
	return (st);
}

int
metrics_http_port(const metrics_http *mh)
{
	return (mh != NULL ? mh->mh_port : 0);
}

void
metrics_http_stop(metrics_http *mh)
{
	if (mh == NULL) {
		return;
	}
	/* No new scrape is queued from here on; the thread answers those waiting with an error
	 * and ends after the one it is rendering. */
	pthread_mutex_lock(&mh->mh_mtx);
	mh->mh_closing = true;
	pthread_cond_broadcast(&mh->mh_cv);
	pthread_mutex_unlock(&mh->mh_mtx);
	if (mh->mh_thread_running) {
		pthread_join(mh->mh_thread, NULL);
	}
	if (mh->mh_srv != NULL) {
		if (mh->mh_attached &&
		    nng_http_server_del_handler(mh->mh_srv, mh->mh_handler) == 0) {
			mh->mh_attached = false; /* the server gave its reference back */
		}
		if (mh->mh_started) {
			nng_http_server_stop(mh->mh_srv);
		}
		nng_http_server_release(mh->mh_srv);
	}
	/* Ours, or the one the server gave back; a handler still attached (del failed) is freed
	 * with the server. Its destructor drops the handler's reference on mh once no callback
	 * holds it any more. */
	if (mh->mh_handler != NULL && !mh->mh_attached) {
		nng_http_handler_free(mh->mh_handler);
	}
	http_unref(mh);
}
