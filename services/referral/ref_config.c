/*
 * ref_config.c - the referral service's own options: the [referral] section of the node's
 * configuration file ("referral.offer_timeout_urgent_s = 3600"), read by the processes that
 * run the service (haven-referral, haven-node) through host_config_load_with, and turned into
 * ref_options (see referral.h).
 */
#include "referral.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const config_option options[] = {
	{ "offer_timeout_immediate_s", CONFIG_UINT, offsetof(ref_config, offer_timeout_immediate_s),
	    "1800", 60, 604800,
	    "How long a provider has to answer an offer for an immediate (tonight) need." },
	{ "offer_timeout_urgent_s", CONFIG_UINT, offsetof(ref_config, offer_timeout_urgent_s),
	    "14400", 60, 604800, "How long a provider has to answer an offer for an urgent need." },
	{ "offer_timeout_planned_s", CONFIG_UINT, offsetof(ref_config, offer_timeout_planned_s),
	    "86400", 60, 604800, "How long a provider has to answer an offer for a planned need." },
	{ "language_hops", CONFIG_UINT, offsetof(ref_config, language_hops), "1", 0,
	    REF_LANGUAGE_HOPS_MAX,
	    "Region borders a service speaking one of a need's languages may be further away than "
	    "a nearer service speaking none and still be offered the need first; 0: the nearer "
	    "service first (languages only break ties). See docs/referral.md." },
	{ "statistics_periods", CONFIG_STRING, offsetof(ref_config, statistics_periods), "month", 0,
	    0,
	    "The periods Statistics answers: month (calendar months), week (ISO weeks) or "
	    "month,week. Both together let a caller subtract a month's inner weeks from it and "
	    "learn the counts of single days at its edges: allow both only where every caller of "
	    "Statistics may see that." },
	{ "retention_days", CONFIG_UINT, offsetof(ref_config, retention_days), "90", 1, 3650,
	    "Personal data of referrals closed this many days ago is erased." },
};

config_table
ref_config_table(ref_config *cfg)
{
	config_table t = { REF_CONFIG_SECTION, options, sizeof(options) / sizeof(options[0]), cfg };

	return (t);
}

hv_status
ref_config_apply(const ref_config *cfg, ref_options *ro, char *err, size_t errsz)
{
	if (ref_stats_periods_parse(cfg->statistics_periods, &ro->stats_periods) != HV_OK) {
		snprintf(err, errsz,
		    "%s.statistics_periods must be month, week or month,week, not '%.32s'",
		    REF_CONFIG_SECTION,
		    cfg->statistics_periods != NULL ? cfg->statistics_periods : "");
		return (HV_INVALID_ARGUMENT);
	}
	ro->offer_timeout_s[HAVEN__REFERRAL__V1__URGENCY__IMMEDIATE] =
	    (uint32_t) cfg->offer_timeout_immediate_s;
	ro->offer_timeout_s[HAVEN__REFERRAL__V1__URGENCY__URGENT] =
	    (uint32_t) cfg->offer_timeout_urgent_s;
	ro->offer_timeout_s[HAVEN__REFERRAL__V1__URGENCY__PLANNED] =
	    (uint32_t) cfg->offer_timeout_planned_s;
	ro->language_hops =
	    cfg->language_hops == 0 ? REF_LANGUAGE_HOPS_NONE : (uint32_t) cfg->language_hops;
	ro->retention_days = (uint32_t) cfg->retention_days;
	return (HV_OK);
}

void
ref_config_free(ref_config *cfg)
{
	config_free(options, sizeof(options) / sizeof(options[0]), cfg);
}
