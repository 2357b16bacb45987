/*
 * cap_metrics.h - the capacity registry's gauges on the metrics page (metrics.h): services,
 * stale services and places per region and service type, from the brief table. Private to
 * services/capacity; cap_register adds the collector.
 */
#ifndef HAVEN_CAP_METRICS_H
#define HAVEN_CAP_METRICS_H

#include "haven/metrics.h"

/* A metrics_collect_fn; arg is the cap_service. */
void cap_metrics_collect(void *arg, metrics_writer *w);

#endif
