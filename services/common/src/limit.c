/*
 * limit.c - rate limits per source and overall (limit.h): token buckets in a fixed table of
 * hashed sources, probed linearly over a short run, swept once a window so that a source whose
 * bucket is full again leaves memory.
 */
#include "haven/limit.h"

#include "haven/clock.h"
#include "haven/crypto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PROBE 16 /* slots looked at for one source */

typedef struct limit_slot {
	uint8_t ls_src[LIMIT_SOURCE_LEN];
	bool    ls_used;
	double  ls_tokens;
	int64_t ls_at_ms;
} limit_slot;

typedef struct limit_bucket {
	double  lb_tokens;
	int64_t lb_at_ms;
} limit_bucket;

struct limit {
	limit_options   l_opts;
	pthread_mutex_t l_mu;
	limit_slot     *l_slots;
	size_t          l_nslots;
	size_t          l_used;
	limit_bucket    l_all;
	int64_t         l_swept_ms;
	uint64_t        l_refused[3]; /* by verdict: [LIMIT_SOURCE], [LIMIT_OVERALL] */
};

/* ---- the process's key for sources ------------------------------------------------------- */

/* One per process, never stored: the same address must give the same source in every limiter
 * of the process (signals, login), and none after a restart. The one static of the module. */
static pthread_once_t source_once = PTHREAD_ONCE_INIT;
static uint8_t        source_key[32];
static bool           source_key_ok;

static void
source_key_make(void)
{
	source_key_ok = crypto_random(source_key, sizeof(source_key)) == HV_OK;
}

bool
limit_source(uint8_t out[LIMIT_SOURCE_LEN], const void *address, size_t len)
{
	uint8_t mac[CRYPTO_HMAC_LEN];

	pthread_once(&source_once, source_key_make);
	if (!source_key_ok) {
		return (false);
	}
	crypto_hmac_sha256(mac, source_key, sizeof(source_key), address, len);
	memcpy(out, mac, LIMIT_SOURCE_LEN);
	crypto_wipe(mac, sizeof(mac));
	return (true);
}

/* ---- buckets ------------------------------------------------------------------------------ */

static int64_t
now_ms(const limit *l)
{
	return (
	    l->l_opts.now_ms != NULL ? l->l_opts.now_ms(l->l_opts.now_arg) : hv_clock_mono_ms());
}

/* Tokens of a bucket of cap tokens last at at_ms holding tokens, refilled up to now. */
static double
refill(double tokens, int64_t at_ms, int64_t now, uint32_t cap, uint32_t window_ms)
{
	if (now > at_ms) {
		tokens += (double) (now - at_ms) * (double) cap / (double) window_ms;
	}
	return (tokens > cap ? (double) cap : tokens);
}

/* Whether a slot's bucket is full again: its source may be forgotten. */
static bool
slot_idle(const limit *l, const limit_slot *s, int64_t now)
{
	return (refill(s->ls_tokens, s->ls_at_ms, now, l->l_opts.per_source, l->l_opts.window_ms) >=
	    (double) l->l_opts.per_source);
}

static void
slot_clear(limit *l, limit_slot *s)
{
	crypto_wipe(s, sizeof(*s));
	l->l_used--;
}

/* Once a window: every source whose bucket is full again is wiped. */
static void
sweep(limit *l, int64_t now)
{
	if (now - l->l_swept_ms < (int64_t) l->l_opts.window_ms) {
		return;
	}
	l->l_swept_ms = now;
	for (size_t i = 0; i < l->l_nslots; i++) {
		if (l->l_slots[i].ls_used && slot_idle(l, &l->l_slots[i], now)) {
			slot_clear(l, &l->l_slots[i]);
		}
	}
}

/* The slot of source, made (with a full bucket) when missing: a free slot of its run, else the
 * one of its run with the most tokens, which is evicted. Its tokens are refilled to now. */
static limit_slot *
slot_find(limit *l, const uint8_t *source, int64_t now)
{
	uint64_t    h;
	limit_slot *victim = NULL;
	double      best   = -1.0;

	memcpy(&h, source, sizeof(h)); /* a keyed hash already: its bytes are uniform */
	for (size_t i = 0; i < PROBE && i < l->l_nslots; i++) {
		limit_slot *s = &l->l_slots[(h + i) % l->l_nslots];
		double      t;
		if (!s->ls_used) {
			if (victim == NULL || victim->ls_used) {
				victim = s;
				best   = (double) l->l_opts.per_source + 1.0;
			}
			continue;
		}
		t = refill(s->ls_tokens, s->ls_at_ms, now, l->l_opts.per_source,
		    l->l_opts.window_ms);
		if (memcmp(s->ls_src, source, LIMIT_SOURCE_LEN) == 0) {
			s->ls_tokens = t;
			s->ls_at_ms  = now;
			return (s);
		}
		if (t > best) {
			best   = t;
			victim = s;
		}
	}
	if (victim->ls_used) {
		slot_clear(l, victim);
	}
	memcpy(victim->ls_src, source, LIMIT_SOURCE_LEN);
	victim->ls_used   = true;
	victim->ls_tokens = l->l_opts.per_source;
	victim->ls_at_ms  = now;
	l->l_used++;
	return (victim);
}

limit_verdict
limit_take(limit *l, const uint8_t *source)
{
	limit_slot   *s = NULL;
	limit_verdict v = LIMIT_OK;
	int64_t       now;

	if (l == NULL) {
		return (LIMIT_OK);
	}
	now = now_ms(l);
	pthread_mutex_lock(&l->l_mu);
	sweep(l, now);
	if (l->l_opts.overall != 0) {
		l->l_all.lb_tokens = refill(l->l_all.lb_tokens, l->l_all.lb_at_ms, now,
		    l->l_opts.overall, l->l_opts.window_ms);
		l->l_all.lb_at_ms  = now;
	}
	if (l->l_opts.per_source != 0 && source != NULL) {
		s = slot_find(l, source, now);
		if (s->ls_tokens < 1.0) {
			v = LIMIT_SOURCE;
		}
	}
	if (v == LIMIT_OK && l->l_opts.overall != 0 && l->l_all.lb_tokens < 1.0) {
		v = LIMIT_OVERALL;
	}
	if (v == LIMIT_OK) {
		if (s != NULL) {
			s->ls_tokens -= 1.0;
		}
		if (l->l_opts.overall != 0) {
			l->l_all.lb_tokens -= 1.0;
		}
	} else {
		l->l_refused[v]++;
	}
	pthread_mutex_unlock(&l->l_mu);
	return (v);
}

void
limit_refusals(limit *l, uint64_t *per_source, uint64_t *overall)
{
	*per_source = *overall = 0;
	if (l == NULL) {
		return;
	}
	pthread_mutex_lock(&l->l_mu);
	*per_source = l->l_refused[LIMIT_SOURCE];
	*overall    = l->l_refused[LIMIT_OVERALL];
	pthread_mutex_unlock(&l->l_mu);
}

void
limit_collect(metrics_writer *w, const char *family, const char *const *names, limit *const *limits,
    size_t n)
{
	metrics_family(w, family, METRICS_COUNTER,
	    "Events refused by a rate limit, by limiter and by the bucket that was empty (a source "
	    "address's, or everyone's together).");
	for (size_t i = 0; i < n; i++) {
		uint64_t per_source, overall;

		limit_refusals(limits[i], &per_source, &overall);
		metrics_sample(w, family, (double) per_source, "limiter", names[i], "bucket",
		    "source", (char *) NULL);
		metrics_sample(w, family, (double) overall, "limiter", names[i], "bucket",
		    "overall", (char *) NULL);
	}
}

size_t
limit_sources(limit *l)
{
	size_t n;

	if (l == NULL) {
		return (0);
	}
	pthread_mutex_lock(&l->l_mu);
	n = l->l_used;
	pthread_mutex_unlock(&l->l_mu);
	return (n);
}

/* ---- life cycle --------------------------------------------------------------------------- */

hv_status
limit_open(limit **out, const limit_options *o)
{
	limit *l;

	if (out == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	*out = NULL;
	if (o == NULL || o->sources_max > LIMIT_SOURCES_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	l->l_opts = *o;
	if (l->l_opts.window_ms == 0) {
		l->l_opts.window_ms = 60000;
	}
	l->l_nslots = l->l_opts.sources_max != 0 ? l->l_opts.sources_max : 4096;
	if (l->l_opts.per_source != 0 &&
	    (l->l_slots = calloc(l->l_nslots, sizeof(limit_slot))) == NULL) {
		free(l);
		return (HV_RESOURCE_EXHAUSTED);
	}
	pthread_mutex_init(&l->l_mu, NULL);
	l->l_all.lb_tokens = l->l_opts.overall;
	l->l_all.lb_at_ms  = now_ms(l);
	l->l_swept_ms      = l->l_all.lb_at_ms;
	*out               = l;
	return (HV_OK);
}

void
limit_close(limit *l)
{
	if (l == NULL) {
		return;
	}
	if (l->l_slots != NULL) {
		crypto_wipe(l->l_slots, l->l_nslots * sizeof(limit_slot));
		free(l->l_slots);
	}
	pthread_mutex_destroy(&l->l_mu);
	free(l);
}
