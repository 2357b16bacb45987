/*
 * ref_period.c - The periods Statistics answers for: an ISO 8601 week ("2026-W49", Monday
 * 00:00 to the next Monday 00:00) or a calendar month ("2026-12"), both in Europe/Amsterdam
 * time, turned into their bounds in Unix ms. No other window exists: fixed, aligned periods
 * of two kinds cannot be narrowed around one referral.
 *
 * Europe/Amsterdam is computed, not read from the system's time zone database (setting TZ in
 * a threaded server is not safe): CET (UTC+1), and CEST (UTC+2) from the last Sunday of March
 * 01:00 UTC to the last Sunday of October 01:00 UTC, the EU rule in force since 1996. Years
 * before 2000 are refused, so the rule is exact for every period accepted (until the EU
 * changes it). A local midnight is never in a switch hour (those are at 02:00 and 03:00).
 */
#include "ref_internal.h"

#include <stdio.h>
#include <string.h>

#define YEAR_MIN 2000
#define YEAR_MAX 9999
#define DAY_MS   (86400LL * 1000)
#define HOUR_MS  (3600LL * 1000)

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t  era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned) (y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (era * 146097 + (int64_t) doe - 719468);
}

/* 0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday). */
static unsigned
weekday(int64_t days)
{
	return ((unsigned) (((days % 7) + 7 + 3) % 7));
}

/* The day of the last Sunday of month m (March or October) of year y. */
static int64_t
last_sunday(int64_t y, unsigned m)
{
	int64_t last = days_from_civil(y, m, 31);

	return (last - (int64_t) ((weekday(last) + 1) % 7));
}

/* Unix ms of 00:00 Europe/Amsterdam on day `days` (of civil year y - 1, y or y + 1). */
static uint64_t
amsterdam_midnight_ms(int64_t days, int64_t y)
{
	bool summer = false;

	for (int64_t yy = y - 1; yy <= y + 1; yy++) {
		/* At 00:00 on the last Sunday of March it is still CET; at 00:00 on the last
		 * Sunday of October still CEST. */
		summer |= days > last_sunday(yy, 3) && days <= last_sunday(yy, 10);
	}
	return ((uint64_t) (days * DAY_MS - (summer ? 2 : 1) * HOUR_MS));
}

/* The Monday of ISO week 1 of year y: the week holding 4 January. */
static int64_t
iso_week1(int64_t y)
{
	int64_t jan4 = days_from_civil(y, 1, 4);

	return (jan4 - (int64_t) weekday(jan4));
}

unsigned
ref_iso_weeks(int year)
{
	return ((unsigned) ((iso_week1(year + 1) - iso_week1(year)) / 7));
}

/* n decimal digits at s, or -1. */
static int
digits(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return (-1);
		}
		v = v * 10 + (s[i] - '0');
	}
	return (v);
}

/* The caller's text, if it may be echoed in a message: short, [0-9A-Za-z-] only. */
static const char *
shown(const char *name)
{
	size_t n = strlen(name);

	return (n > 0 && n <= 16 &&
	            strspn(name,
	                "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") == n
	        ? name
	        : "(not a period name)");
}

hv_status
ref_period_parse(const char *name, ref_period *out, char *err, size_t errsz)
{
	size_t  len  = name != NULL ? strlen(name) : 0;
	bool    week = len == 8 && name[4] == '-' && name[5] == 'W';
	int     year, num;
	int64_t from, to;

	memset(out, 0, sizeof(*out));
	if (len == 0) {
		snprintf(err, errsz,
		    "period required: an ISO week YYYY-Www (2026-W49) or a month YYYY-MM "
		    "(2026-12)");
		return (HV_INVALID_ARGUMENT);
	}
	if (!week && !(len == 7 && name[4] == '-')) {
		snprintf(err, errsz,
		    "period '%s' is neither an ISO week YYYY-Www (2026-W49) nor a month YYYY-MM "
		    "(2026-12)",
		    shown(name));
		return (HV_INVALID_ARGUMENT);
	}
	year = digits(name, 4);
	num  = digits(name + (week ? 6 : 5), 2);
	if (year < 0 || num < 0) {
		snprintf(err, errsz, "period '%s': year and %s must be digits", shown(name),
		    week ? "week" : "month");
		return (HV_INVALID_ARGUMENT);
	}
	if (year < YEAR_MIN || year > YEAR_MAX) {
		snprintf(err, errsz, "period '%s': the year must be %d..%d", shown(name), YEAR_MIN,
		    YEAR_MAX);
		return (HV_INVALID_ARGUMENT);
	}
	if (week) {
		unsigned nweeks = ref_iso_weeks(year);

		if (num < 1 || (unsigned) num > nweeks) {
			snprintf(err, errsz,
			    "period '%s': week must be 01..%u (%d has %u ISO weeks)", shown(name),
			    nweeks, year, nweeks);
			return (HV_INVALID_ARGUMENT);
		}
		from = iso_week1(year) + 7 * (num - 1);
		to   = from + 7;
	} else {
		if (num < 1 || num > 12) {
			snprintf(err, errsz, "period '%s': month must be 01..12", shown(name));
			return (HV_INVALID_ARGUMENT);
		}
		from = days_from_civil(year, (unsigned) num, 1);
		to   = num == 12 ? days_from_civil(year + 1, 1, 1)
		                 : days_from_civil(year, (unsigned) num + 1, 1);
	}
	out->rp_week    = week;
	out->rp_from_ms = amsterdam_midnight_ms(from, year);
	out->rp_to_ms   = amsterdam_midnight_ms(to, year);
	memcpy(out->rp_name, name, len + 1);
	return (HV_OK);
}

hv_status
ref_stats_periods_parse(const char *text, unsigned *out)
{
	static const struct {
		const char *text;
		unsigned    bits;
	} kinds[] = {
		{ "month", REF_PERIODS_MONTHS },
		{ "week", REF_PERIODS_WEEKS },
		{ "month,week", REF_PERIODS_MONTHS | REF_PERIODS_WEEKS },
		{ "week,month", REF_PERIODS_MONTHS | REF_PERIODS_WEEKS },
	};

	for (size_t i = 0; text != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (strcmp(text, kinds[i].text) == 0) {
			*out = kinds[i].bits;
			return (HV_OK);
		}
	}
	return (HV_INVALID_ARGUMENT);
}
