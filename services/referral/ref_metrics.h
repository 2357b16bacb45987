/*
 * ref_metrics.h - the referral service's gauges on the metrics page (metrics.h): referrals,
 * needs by state and unmet needs by region and type. Private to services/referral;
 * ref_register adds the collector.
 */
#ifndef HAVEN_REF_METRICS_H
#define HAVEN_REF_METRICS_H

#include "haven/metrics.h"
#include "ref_internal.h"

/* ref_metrics.c: a metrics_collect_fn; arg is the ref_service. */
void ref_metrics_collect(void *arg, metrics_writer *w);

#endif
