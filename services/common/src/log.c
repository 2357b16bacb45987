/*
 * log.c - JSON-lines logger on stderr. Each line is written with one write(2) so lines from
 * several threads never interleave. The lines of refused and failed calls are rate-limited
 * (log_call), so that a caller cannot fill the disk by making calls that fail.
 */
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/status.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static char       log_service[32] = "haven";
static atomic_int log_min         = LOG_LEVEL_INFO;

/* A token bucket per status for the lines of calls that did not end OK: LOG_CALL_BURST lines
 * at once, then LOG_CALL_PER_S a second; the lines left out are counted and reported in one
 * summary line before the next line of that status that is written. */
#define LOG_CALL_BURST 20
#define LOG_CALL_PER_S 1

typedef struct call_bucket {
	double   cb_tokens;
	int64_t  cb_last_ms; /* last refill; 0: never used (full) */
	uint64_t cb_suppressed;
} call_bucket;

static pthread_mutex_t call_mtx = PTHREAD_MUTEX_INITIALIZER;
static call_bucket     call_buckets[HV_STATUS_MAX + 1];

static const char *const level_names[] = { "debug", "info", "warn", "error", "off" };

static int
parse_level(const char *s, log_level *out)
{
	for (int i = 0; i <= LOG_LEVEL_OFF; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (log_level) i;
			return (0);
		}
	}
	return (-1);
}

void
log_init(const char *service, log_level min)
{
	const char *env = getenv("HAVEN_LOG_LEVEL");
	log_level   lv;

	if (service != NULL) {
		snprintf(log_service, sizeof(log_service), "%s", service);
	}
	if (env != NULL && parse_level(env, &lv) == 0) {
		min = lv;
	}
	atomic_store(&log_min, (int) min);
}

int
log_enabled(log_level level)
{
	return (level != LOG_LEVEL_OFF && (int) level >= atomic_load(&log_min));
}

/* Appends s to buf at *pos as JSON string contents, escaping quotes, backslashes and control
 * characters; stops quietly when the line is full. */
static void
append_escaped(char *buf, size_t cap, size_t *pos, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char) *s;
		char          esc[8];
		size_t        n;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char) c;
			n      = 2;
		} else if (c < 0x20) {
			n = (size_t) snprintf(esc, sizeof(esc), "\\u%04x", c);
		} else {
			esc[0] = (char) c;
			n      = 1;
		}
		if (*pos + n >= cap) {
			return;
		}
		memcpy(buf + *pos, esc, n);
		*pos += n;
	}
}

static void
append_raw(char *buf, size_t cap, size_t *pos, const char *s)
{
	size_t n = strlen(s);
	if (*pos + n >= cap) {
		n = cap - *pos - 1;
	}
	memcpy(buf + *pos, s, n);
	*pos += n;
}

static void
line_start(char *buf, size_t cap, size_t *pos, log_level level)
{
	struct timespec ts;
	struct tm       tm;
	char            head[128];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(head, sizeof(head),
	    "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"service\":\"",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    ts.tv_nsec / 1000000, level_names[level]);
	append_raw(buf, cap, pos, head);
	append_escaped(buf, cap, pos, log_service);
	append_raw(buf, cap, pos, "\"");
}

static void
line_end(char *buf, size_t cap, size_t *pos)
{
	append_raw(buf, cap, pos, "}\n");
	if (buf[*pos - 1] != '\n') { /* truncated: still end the line as valid JSON */
		memcpy(buf + cap - 4, "\"}\n", 3);
		*pos = cap - 1;
	}
	ssize_t w = write(STDERR_FILENO, buf, *pos);
	(void) w;
}

void
log_write(log_level level, const char *fmt, ...)
{
	char    buf[LOG_LINE_MAX];
	char    msg[LOG_LINE_MAX - 256];
	size_t  pos = 0;
	va_list ap;

	if (!log_enabled(level)) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	line_start(buf, sizeof(buf), &pos, level);
	append_raw(buf, sizeof(buf), &pos, ",\"msg\":\"");
	append_escaped(buf, sizeof(buf), &pos, msg);
	append_raw(buf, sizeof(buf), &pos, "\"");
	line_end(buf, sizeof(buf), &pos);
}

/* Whether the line of a call that ended with status (not OK) may be written now; *suppressed
 * is set to the lines of that status left out since the last one written. */
static bool
call_line_allowed(int status, uint64_t *suppressed)
{
	call_bucket *b;
	int64_t      now;
	bool         ok = false;

	*suppressed = 0;
	if (status < 0 || status > HV_STATUS_MAX) {
		status = HV_UNKNOWN;
	}
	now = hv_clock_mono_ms();
	pthread_mutex_lock(&call_mtx);
	b = &call_buckets[status];
	if (b->cb_last_ms == 0) {
		b->cb_tokens = LOG_CALL_BURST;
	} else if (now > b->cb_last_ms) {
		b->cb_tokens += (double) (now - b->cb_last_ms) * LOG_CALL_PER_S / 1000.0;
		if (b->cb_tokens > LOG_CALL_BURST) {
			b->cb_tokens = LOG_CALL_BURST;
		}
	}
	b->cb_last_ms = now;
	if (b->cb_tokens >= 1.0) {
		b->cb_tokens -= 1.0;
		*suppressed      = b->cb_suppressed;
		b->cb_suppressed = 0;
		ok               = true;
	} else {
		b->cb_suppressed++;
	}
	pthread_mutex_unlock(&call_mtx);
	return (ok);
}

void
log_call(const char *method, uint64_t request_id, int status, int64_t duration_us,
    const char *org_id)
{
	char      buf[LOG_LINE_MAX];
	char      nums[128];
	size_t    pos   = 0;
	log_level level = status == HV_OK ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO;
	uint64_t  suppressed;

	if (!log_enabled(level)) {
		return;
	}
	if (status != HV_OK) {
		if (!call_line_allowed(status, &suppressed)) {
			return;
		}
		if (suppressed > 0) {
			log_write(LOG_LEVEL_WARN, "%llu similar lines suppressed (calls ending %s)",
			    (unsigned long long) suppressed, hv_status_name(status));
		}
	}
	line_start(buf, sizeof(buf), &pos, level);
	append_raw(buf, sizeof(buf), &pos, ",\"method\":\"");
	append_escaped(buf, sizeof(buf), &pos, method != NULL ? method : "");
	snprintf(nums, sizeof(nums),
	    "\",\"request_id\":%llu,\"status\":\"%s\",\"duration_us\":%lld,\"caller\":\"",
	    (unsigned long long) request_id, hv_status_name(status), (long long) duration_us);
	append_raw(buf, sizeof(buf), &pos, nums);
	append_escaped(buf, sizeof(buf), &pos, org_id != NULL ? org_id : "");
	append_raw(buf, sizeof(buf), &pos, "\"");
	line_end(buf, sizeof(buf), &pos);
}
