/*
 * consent_view.h - view.c: a subject's consents as Check decides on them (its "view", stored
 * in consent.views and kept in a cache), the generations that tell a cached view from a stale
 * one, and the decision rule. Stands on consent_base.h.
 */
#ifndef HAVEN_CONSENT_VIEW_H
#define HAVEN_CONSENT_VIEW_H

#include "consent_base.h"

/* One consent, as far as a decision needs it. Purposes and categories as bit masks (bit p for
 * enum value p). */
typedef struct view_consent {
	uint8_t            vc_id[CONSENT_ID_LEN];
	uint32_t           vc_purposes;
	uint32_t           vc_categories;
	bool               vc_accepting; /* covers "the provider that accepts the referral" */
	int64_t            vc_valid_from, vc_expires, vc_withdrawn, vc_recorded;
	size_t             vc_nrecipients;
	const char *const *vc_recipients;
} view_consent;

/* A subject's view: who created it and its consents in id order, in one allocation. */
typedef struct consent_view {
	uint8_t       cv_sid[CONSENT_ID_LEN];
	uint64_t      cv_gen;  /* the last consent generation it was found valid at (atomic) */
	uint64_t      cv_sgen; /* the subject's generation it was read at */
	char          cv_holder[RPC_ORG_ID_MAX];
	size_t        cv_n;
	view_consent *cv_consents;
} consent_view;

typedef void (*view_fn)(const consent_view *v, void *arg);

/* The consent generation: raised by every write that changes a view (consent_changed, in that
 * write's transaction, which also sets the subject's generation to the new value); 0 before
 * the first. */
hv_status consent_generation(consent_service *cs, store_txn *txn, uint64_t *gen);
hv_status consent_subject_generation(consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], uint64_t *gen);
/* Call after every change to a subject's consents or its erasure, in the same transaction:
 * raises the generations and stores the subject's view again. */
hv_status consent_changed(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN]);
/* At open: stores the view of every subject when the store has not got them yet (a store
 * from before consent.views), then sets VIEWS_BUILT_KEY in consent.meta. */
#define VIEWS_BUILT_KEY "views-built"
hv_status views_prepare(consent_service *cs);

/* Reads a subject's view in txn: its stored view (consent.views), else from its records.
 * NOT_FOUND (with consent_subject_get's message) for an unknown or erased subject; DATA_LOSS
 * when the index names a record that is missing or a stored view does not decode. */
hv_status view_load(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    consent_view **out, char *err, size_t errsz);
void      view_free(consent_view *v);

/* The decision rule of Check: a consent in force that covers purpose, recipient (or, when
 * accepting, the accepting provider; "" for the node) and category (0: any) allows it;
 * otherwise the closest consent names the reason, of equally close ones the newest. */
void view_decide(const consent_view *v, const char *subject_hex, int purpose, const char *recipient,
    bool accepting, int category, int64_t now, consent_decision *out);

/* At most max views (0: no cache, *out NULL). */
hv_status view_cache_open(view_cache **out, size_t max);
void      view_cache_close(view_cache *c);
/* Calls fn(view, arg) under the cache's read lock when it holds sid's view and that view is
 * what txn (seeing consent generation gen) would read; *hit says whether it did. Fails only
 * when the subject's generation cannot be read. */
hv_status view_cache_with(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    uint64_t gen, view_fn fn, void *arg, bool *hit);
/* Hints for a lookup of sid that follows: the first starts bringing sid's slot into the CPU's
 * cache, the second (once the slot is there) the view it holds. A Check of a random subject
 * among many waits on memory twice in view_cache_with otherwise; with the hints given before
 * the read transaction begins and before the generation is read, the work between them hides
 * the waits. Neither locks nor changes anything. */
void view_cache_prefetch_slot(const view_cache *c, const uint8_t sid[CONSENT_ID_LEN]);
void view_cache_prefetch_view(const view_cache *c, const uint8_t sid[CONSENT_ID_LEN]);
/* Puts v (read at gen, in a read transaction) into the cache, which owns it from then on. */
void view_cache_put(view_cache *c, consent_view *v, uint64_t gen);
/* Lookups answered from the cache, and not. */
void view_cache_stats(view_cache *c, uint64_t *hits, uint64_t *misses);

#endif
