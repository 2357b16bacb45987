/*
 * log.c - JSON-lines logger on stderr. Each line is written with one write(2) so lines from
 * several threads never interleave.
 */
#include "haven/log.h"
#include "haven/status.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static char       log_service[32] = "haven";
static atomic_int log_min         = LOG_LEVEL_INFO;

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

void
log_call(const char *method, uint64_t request_id, int status, int64_t duration_us,
    const char *org_id)
{
	char      buf[LOG_LINE_MAX];
	char      nums[128];
	size_t    pos   = 0;
	log_level level = status == HV_OK ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO;

	if (!log_enabled(level)) {
		return;
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
