/*
 * log.h - structured logging: one JSON object per line on stderr.
 *
 *   {"time":"2026-11-28T10:00:00.123Z","level":"info","service":"capacity","msg":"..."}
 *
 * Log lines carry ids, method names, status codes and durations only: never personal data
 * (names, dates of birth, contact details, notes). The logger is process-wide: a process is
 * one service (or the all-in-one node), and log_init() names it once at start.
 */
#ifndef HAVEN_LOG_H
#define HAVEN_LOG_H

#include <stdint.h>

typedef enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_OFF,
} log_level;

/* Sets the service name (copied, at most 31 bytes) and the lowest level written. Until it is
 * called the service is "haven" and the level info. HAVEN_LOG_LEVEL (debug, info, warn,
 * error, off) in the environment overrides min. */
void log_init(const char *service, log_level min);

/* Whether lines of this level are written. */
int log_enabled(log_level level);

/* Writes one line; the message is printf-formatted and JSON-escaped. */
void log_write(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line per RPC: method, request id, status name, duration, caller organisation. Calls
 * that end OK are logged at debug, the others at info, at most 20 lines at once and then 1 a
 * second for each status: a flood of refused calls cannot flood the log. The lines left out
 * are counted in a warn line "N similar lines suppressed (calls ending STATUS)" written before
 * the next line of that status. Metrics count every call all the same (metrics.h). */
void log_call(const char *method, uint64_t request_id, int status, int64_t duration_us,
    const char *org_id);

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
