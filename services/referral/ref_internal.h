/*
 * ref_internal.h - what the files of the referral service share: the service handle, the
 * arena that a transaction's messages live in, the unit of work of one write transaction
 * (referrals loaded, notifications to send after the commit), the key layouts, the checks
 * (ref_check.c), the state machine (ref_need.c), routing (ref_route.c) and the statistics
 * helpers (ref_stats.c) the RPC handlers (ref_rpc.c) build on. Private to services/referral.
 */
#ifndef HAVEN_REF_INTERNAL_H
#define HAVEN_REF_INTERNAL_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/arena.h"
#include "haven/audit.h"
#include "haven/bytes.h"
#include "haven/ids.h"
#include "haven/ticker.h"
#include "referral.h"

/* Bounds of the fields (see referral.proto and docs/referral.md). */
#define REF_SUBJECT_LEN       32 /* hex digits */
#define REF_NEEDS_MAX         8
#define REF_LANGS_MAX         8
#define REF_ACCESS_MAX        16
#define REF_TOKEN_MAX         64  /* an accessibility entry */
#define REF_REGIONS_MAX       16  /* excluded, preferred */
#define REF_TEXT_MAX          500 /* note, reasons, free text */
#define REF_PAGE_DEFAULT      50
#define REF_PAGE_MAX          200
#define REF_PAGE_BYTES        (512 * 1024) /* a page of referrals stops growing past this */
#define REF_ID_HEX            16
#define REF_REFERRAL_PREFIX   "ref-"
#define REF_OFFER_PREFIX      "off-"
#define REF_HOLD_MARGIN_S     120 /* a hold outlives its offer's respond-by by this much */
#define REF_HOLD_MAX_DEFAULT  (24 * 3600)
#define REF_CANDIDATES        16 /* best candidates kept per need and scan */
#define REF_RESCANS           3  /* scans more when every kept candidate was taken */
#define REF_BATCH             32 /* needs routed or offers expired per transaction */
#define REF_ROUTE_EVERY_MS    5000
#define REF_TICK_MS           1000
#define REF_ARENA_LIMIT       (64u * 1024 * 1024)
#define REF_ERR_MAX           RPC_ERRMSG_MAX
#define REF_KEY_MAX           512
#define REF_WITHDRAWN_QUEUE   256  /* withdrawals heard and not yet recorded */
#define REF_RETENTION_EVERY_S 3600 /* default interval of the retention sweep */
#define REF_DAY_MS            (86400LL * 1000)
#define REF_META_CLOSED       "closed-index" /* ref.meta: ref.closed was filled */
#define REF_ERASED_REASON     "personal data erased (retention)"
#define REF_META_SEALED       "text-sealed" /* ref.meta: plaintext of older stores sealed */

#define PURPOSE_REFERRAL "referral"
#define PURPOSE_SHARE    "share-with-provider"
/* The method the node's own consent checks while routing are audited under. */
#define REF_METHOD_ROUTE "haven.referral.v1.Referrals/Route"
#define REF_METHOD_GET   "haven.referral.v1.Referrals/GetReferral"

/* Enum ranges: values below these are the ones the proto defines (checked again with the
 * descriptors). */
#define REF_SERVICE_TYPES 32 /* ServiceType values below this: a bit of rs_pending */

typedef Haven__Referral__V1__Referral   Referral;
typedef Haven__Referral__V1__Need       Need;
typedef Haven__Referral__V1__Event      Event;
typedef Haven__Referral__V1__Offer      Offer;
typedef Haven__Referral__V1__NeedState  NeedState;
typedef Haven__Referral__V1__OfferState OfferState;

#define NS(x) HAVEN__REFERRAL__V1__NEED_STATE__##x
#define OS(x) HAVEN__REFERRAL__V1__OFFER_STATE__##x

struct ref_service {
	store                 *rs_store;
	const region_map      *rs_regions;
	cap_service           *rs_cap;
	ref_consent_fn         rs_consent;
	void                  *rs_consent_arg;
	ref_seal_fn            rs_seal;      /* NULL: free text is refused */
	ref_minor_fn           rs_minor;     /* NULL: no subject is a minor */
	ref_holds_fn           rs_holds;     /* NULL: a referrer holds its referrals' subjects */
	ref_open_fn            rs_unseal;    /* NULL: sealed text reads as "" */
	struct alerts_service *rs_alerts;    /* NULL: no alerts (ref_alert.c) */
	uint32_t rs_window_s[REF_URGENCIES]; /* respond-by windows, cut to the hold max */
	uint32_t rs_hold_max_s;
	uint32_t rs_lang_hops; /* extra borders a speaker of the need's language may be */
	int64_t (*rs_now)(void *);
	void             *rs_now_arg;
	ref_erase_fn      rs_erase; /* retention; NULL: none */
	void             *rs_erase_arg;
	ref_erase_done_fn rs_erase_done;
	uint32_t          rs_retention_days; /* 0: none */
	unsigned          rs_stats_periods;  /* REF_PERIODS_* Statistics answers */
	uint32_t          rs_retention_every_s;

	audit *rs_audit; /* reads of person-linked records; NULL: not audited */

	store_table rs_referrals;
	store_table rs_offers;
	store_table rs_by_provider;
	store_table rs_by_referrer;
	store_table rs_by_region;
	store_table rs_by_time;
	store_table rs_by_subject;
	store_table rs_waiting;
	store_table rs_deadlines;
	store_table rs_idem;
	store_table rs_closed; /* be64 closed_ms referral id: closed, subject not yet erased */
	store_table rs_meta;

	nng_socket rs_pub;
	bool       rs_pub_open;
	nng_socket rs_sub; /* capacity. and consent.withdrawn notifications */
	bool       rs_sub_open;
	nng_aio   *rs_sub_aio;

	/* The background job (a ticker, kicked to run a round now). Under rs_lock: rs_stopping,
	 * rs_pending (bit t: a place of ServiceType t may have freed), rs_withdrawn, and the
	 * tickers' pointers (NULL when manual or once stopped). */
	pthread_mutex_t rs_lock;
	bool            rs_sync_init;
	bool            rs_stopping;
	uint32_t        rs_pending;
	/* Subjects whose consent was withdrawn (or expired), for the thread to record
	 * (bounded). */
	struct {
		char subject[REF_SUBJECT_LEN + 1];
		bool expired;
	} rs_withdrawn[REF_WITHDRAWN_QUEUE];
	size_t     rs_nwithdrawn;
	hv_ticker *rs_bg;
	int64_t    rs_last_route; /* monotonic ms; only the background job touches it */
	/* The retention job (with retention configured and not manual). */
	hv_ticker *rs_retention;
};

/* ---- the unit of work of one write transaction ----------------------------------------------- */

/* A ReferralChanged to publish after the commit. */
typedef struct ref_note {
	char      rn_referral[IDS_MAX];
	char      rn_referrer[IDS_MAX];
	uint32_t  rn_need;
	NeedState rn_state;
	uint64_t  rn_version;
} ref_note;

typedef struct ref_loaded {
	Referral *l_ref;
	bool      l_dirty;
} ref_loaded;

/* Why an event happened, where alerts depend on it (ref_alert.c). The event's reason text is
 * for the trail and for people; it is never matched to decide an alert (a coordinator's
 * free code could otherwise make one). Set by ref_transition_for / ref_note_event_for. */
typedef enum ref_cause {
	REF_CAUSE_NONE = 0,
	REF_CAUSE_ACKNOWLEDGED,      /* AcknowledgeOffer */
	REF_CAUSE_DECLINED,          /* DeclineOffer */
	REF_CAUSE_OFFER_EXPIRED,     /* the offer's window passed */
	REF_CAUSE_CONSENT_EXPIRED,   /* the same, heard as a consent's expiry (its alerts say
	                              * CONSENT_EXPIRED: a consent can be given again) */
	REF_CAUSE_CONSENT_WITHDRAWN, /* no consent covers the referral any more: withdrawn,
	                              * erased, or found expired while routing */
} ref_cause;

typedef struct ref_work {
	ref_service *w_rs;
	store_txn   *w_txn;
	int64_t      w_now;
	arena       *w_arena;  /* the call's (ref_work_init_in) or w_own */
	arena_mark   w_mark;   /* where each run of the write function starts */
	ref_loaded  *w_loaded; /* referrals read in this transaction (arena) */
	size_t       w_nloaded, w_caploaded;
	ref_note    *w_notes; /* arena */
	size_t       w_nnotes, w_capnotes;
	char (*w_changed)[CAP_ID_MAX]; /* services whose free places changed (arena) */
	size_t    w_nchanged, w_capchanged;
	uint32_t  w_freed;   /* bit t: a hold on a service of ServiceType t was released */
	unsigned  w_offers;  /* offers made */
	unsigned  w_expired; /* offers expired */
	ref_cause w_cause;   /* of the event being recorded (ref_transition_for) */
	char      w_err[REF_ERR_MAX];
	arena     w_own; /* background work: an arena of its own (REF_ARENA_LIMIT) */
} ref_work;

/* Before the transaction (once per store_write call): the work allocates in an arena of its
 * own, freed by ref_work_free (background jobs). */
void ref_work_init(ref_work *w, ref_service *rs);
/* The same in a (call's) arena a: the messages the work reads and builds stay there after
 * ref_work_free, until the arena is reset, so a handler answers with them without a copy. */
void ref_work_init_in(ref_work *w, ref_service *rs, arena *a);
/* At the start of every run of a write function (it may run more than once): forgets what an
 * earlier run did (its memory goes back to the arena) and reads the clock. txn may be a read
 * transaction for read-only work. */
void ref_work_begin(ref_work *w, store_txn *txn);
/* Writes back every referral changed in this run. Call before returning HV_OK. */
hv_status ref_work_flush(ref_work *w);
/* After store_write returned: publishes the notes (ReferralChanged) and the capacity
 * changes, and wakes the background thread when places freed. Only when the write
 * committed. */
void ref_work_publish(ref_work *w);
void ref_work_free(ref_work *w);
/* Sets w_err (printf-style) and returns code. */
hv_status ref_fail(ref_work *w, hv_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Queues a ReferralChanged and marks the referral changed (ref_transition does it). */
hv_status ref_work_note(ref_work *w, const Referral *r, uint32_t need, NeedState state);
/* Remembers a service whose free places changed, to announce after the commit; freed: a
 * place of ServiceType type came free (the background thread routes waiting needs). */
hv_status ref_work_changed(ref_work *w, const char *service_id, int type, bool freed);

/* Marks a referral of the work changed, for ref_work_flush to write back. */
void ref_mark_dirty(ref_work *w, const Referral *r);

/* Reads a referral into the work (once per transaction: the same message is returned again,
 * with the changes made to it). NOT_FOUND when absent. */
hv_status ref_load(ref_work *w, const char *id, Referral **out);
/* Adds a new referral to the work (it is written by ref_work_flush). */
hv_status ref_adopt(ref_work *w, Referral *r);
hv_status ref_load_offer(ref_work *w, const char *id, Offer **out);
hv_status ref_put_offer(ref_work *w, const Offer *o);

/* ---- ref_keys.c: keys, and walks over them -----------------------------------------------------
 */

/* prefix 0 be64 ~created id (prefix may be NULL: no prefix and no separator). */
size_t ref_key_timed(uint8_t key[REF_KEY_MAX], const char *prefix, uint64_t created_ms,
    const char *id);
size_t ref_key_waiting(uint8_t key[REF_KEY_MAX], const Referral *r, uint32_t need);
size_t ref_key_deadline(uint8_t key[REF_KEY_MAX], uint64_t respond_by_ms, const char *offer_id);
size_t ref_key_pair(uint8_t key[REF_KEY_MAX], const char *a, const char *b);
/* ref.closed: be64 closed_ms id (oldest first). */
size_t ref_key_closed(uint8_t key[REF_KEY_MAX], uint64_t closed_ms, const char *id);
/* Splits a ref.waiting key into the referral id and the need index; false when malformed. */
bool ref_key_waiting_parse(const uint8_t *k, size_t kl, char id[IDS_MAX], uint32_t *need);

/* Keys gathered in a read transaction, then handled in a write transaction. */
typedef struct ref_key_batch {
	uint8_t kb_keys[REF_BATCH][REF_KEY_MAX];
	size_t  kb_lens[REF_BATCH];
	size_t  kb_n;
} ref_key_batch;

/* Gathers up to REF_BATCH keys of table t after `after` (alen 0: from the start) for which
 * want(k) holds (NULL: every key), stopping at the first key for which stop(k) holds; *more
 * when keys were left. In a read transaction of its own. */
hv_status ref_gather(ref_service *rs, store_table t, const uint8_t *after, size_t alen,
    bool (*want)(const uint8_t *, size_t, void *), bool (*stop)(const uint8_t *, size_t, void *),
    void *arg, ref_key_batch *out, bool *more);

/* Calls fn for each referral of subject (its id, through ref.by_subject) in txn until fn sets
 * *stop or fails. fn may write ref.referrals (not ref.by_subject). */
hv_status ref_subject_walk(ref_service *rs, store_txn *txn, const char *subject,
    hv_status (*fn)(void *, const char *, bool *), void *arg);

/* ---- ref_check.c: pure checks ---------------------------------------------------------------- */

/* Checks a CreateReferral request; masks of excluded and preferred region indices. */
hv_status ref_check_create(const ref_service         *rs,
    const Haven__Referral__V1__CreateReferralRequest *req, uint64_t *excluded, uint64_t *preferred,
    char *err, size_t errsz);
/* Checks one NeedRequest (index i, for the message). */
hv_status ref_check_need(size_t i, const Haven__Referral__V1__NeedRequest *n, char *err,
    size_t errsz);
/* Checks excluded and preferred region lists (known names, at most REF_REGIONS_MAX, not every
 * region excluded, none both) into masks of region indices. */
hv_status ref_check_regions(const ref_service *rs, char *const *excl, size_t nexcl,
    char *const *pref, size_t npref, uint64_t *excluded, uint64_t *preferred, char *err,
    size_t errsz);
/* Checks an UpdateReferral request on its own (the regions are checked with the referral's,
 * in the transaction). */
hv_status ref_check_update(const Haven__Referral__V1__UpdateReferralRequest *req, char *err,
    size_t errsz);
/* Checks a reason text: required (1..REF_TEXT_MAX) or optional (0..). */
hv_status ref_check_text(const char *what, const char *s, bool required, char *err, size_t errsz);

/* ---- ref_need.c: the state machine of a need --------------------------------------------------
 */

/* Moves a need to state `to` and records the event {now, actor, need, from, to, reason,
 * offer}: bumps the referral's version, keeps ref.waiting right (a need is there exactly while
 * WAITING), and queues a ReferralChanged. */
hv_status ref_transition(ref_work *w, Referral *r, Need *n, NeedState to, const char *actor,
    const char *reason, const char *offer_id);

/* ref_alert.c: the alert or timer an event makes (alerts.h), in w's transaction; nothing
 * without the alerts service. Called for every event, after it was appended. */
hv_status ref_alert(ref_work *w, Referral *r, const Need *n, NeedState from, NeedState to,
    ref_cause cause, const char *offer_id);
/* Whether cause is a consent's end (withdrawn, erased, expired). */
static inline bool
ref_cause_consent(ref_cause cause)
{
	return (cause == REF_CAUSE_CONSENT_WITHDRAWN || cause == REF_CAUSE_CONSENT_EXPIRED);
}
/* ref_alert.c: the referrer's alert that a consent of its referral's subject was withdrawn
 * or expired (cause; once per referral: ref_end_for_consent, or the withdrawal's events while
 * another consent still covers it), in w's transaction. */
hv_status ref_alert_consent_withdrawn(ref_work *w, Referral *r, ref_cause cause);
/* ref_transition and ref_note_event for an event with a cause that alerts depend on. */
hv_status ref_transition_for(ref_work *w, ref_cause cause, Referral *r, Need *n, NeedState to,
    const char *actor, const char *reason, const char *offer_id);
hv_status ref_note_event_for(ref_work *w, ref_cause cause, Referral *r, Need *n, const char *actor,
    const char *reason);

/* Records an event that changes no state (from = to = the need's state). */
hv_status ref_note_event(ref_work *w, Referral *r, Need *n, const char *actor, const char *reason);

/* Ends an OPEN offer: its hold is released (or confirmed for OFFER_ACCEPTED), its deadline
 * removed, its state set and stored. A hold that is gone already counts as released for
 * every end but acceptance (HV_FAILED_PRECONDITION then). */
hv_status ref_offer_end(ref_work *w, Offer *o, OfferState to);

/* Appends s (not copied) to a list in the work's arena. */
hv_status ref_list_add(ref_work *w, char ***list, size_t *n, char *s);

/* Withdraws the need's open offer (its hold released) and, with decline_service, keeps its
 * service from being offered again for this need. */
hv_status ref_offer_withdraw(ref_work *w, Need *n, bool decline_service);

/* Ends an accepted or placed need's placement: COMPLETED (outcome 0) or FAILED with the
 * Outcome's code as the reason ("ended: <outcome>") and text as its free part; the place goes
 * back to the service (cap_place_release) and the offer records the need's state. The caller
 * checked the states. */
hv_status ref_placement_end(ref_work *w, Referral *r, Need *n, Offer *o, const char *actor,
    int outcome, const char *text);

/* Consent at every step: whether the subject's consent for the purpose "referral" is valid
 * now (the node itself asks, in w's transaction, audited). A subject unknown or erased: not. */
hv_status ref_consent_valid(ref_work *w, const Referral *r, bool *ok);

/* Ends what a referral still routes once its consent is gone (withdrawn, expired, erased):
 * open offers are withdrawn and their holds released, offered and waiting needs are
 * CANCELLED with reason; accepted and placed needs stay with their provider (the person is
 * there; the provider's access to her data ends with the consent) and get an event. With a
 * consent's cause (ref_cause_consent), ref_alert.c tells each provider whose offer was
 * withdrawn or who has the person, and the referrer once. */
hv_status ref_end_for_consent(ref_work *w, Referral *r, const char *reason, ref_cause cause);

/* The home region of an organisation from capacity's directory: NOT_FOUND when unknown. */
hv_status ref_org_region(ref_service *rs, store_txn *txn, const char *org_id,
    char region[REGION_NAME_MAX]);

/* Whether a need is still being routed (WAITING, OFFERED, ON_HOLD) or not yet ended
 * (also ACCEPTED, PLACED). */
bool ref_need_routing(const Need *n);
bool ref_need_open(const Need *n);
/* Whether a need reached a final state: COMPLETED, CANCELLED or FAILED. */
bool ref_need_final(const Need *n);
/* Whether a referral is closed: it has needs and every one is final. */
bool ref_referral_closed(const Referral *r);
/* Sets or clears r->closed_ms and its ref.closed entry to match its needs (ref_transition
 * calls it; closed_ms is the time of the transition that closed the referral). */
hv_status ref_closed_update(ref_work *w, Referral *r);

/* The respond-by window for an urgency. */
uint32_t ref_window_s(const ref_service *rs, int urgency);

/* ---- ref_route.c: routing (on ref_need.c) ---------------------------------------------------- */

/* Routes WAITING needs: for each, the best candidate with a free place gets an offer and a
 * hold (the need goes to OFFERED); needs without one stay WAITING. Needs are tried in the
 * order given (the waiting order). */
typedef struct ref_route_item {
	Referral *ri_ref;
	Need     *ri_need;
} ref_route_item;
hv_status ref_route(ref_work *w, ref_route_item *items, size_t n);

/* Offers a WAITING need to the named service (a coordinator's choice) instead of the best
 * candidate: the service must pass routing's hard filters (type, population, region not
 * excluded, accessibility, not declined before), have a free place and hold one, and the
 * consent must be valid now. FAILED_PRECONDITION or NOT_FOUND with w_err naming why. */
hv_status ref_route_to(ref_work *w, Referral *r, Need *n, const char *service_id);

/* ---- rank keys (ref_rank.c; pure, unit-tested) ----------------------------------------------- */

/* The rank of a candidate service for a need, compared field by field in this order
 * (docs/referral.md has the rule with a worked example). */
typedef struct ref_rank {
	uint8_t  rk_stale;    /* 0 fresh figure, 1 stale */
	uint8_t  rk_nonpref;  /* 0 in a preferred region */
	uint16_t rk_reach;    /* rk_distance, plus the language hops when the need names languages
	                       * and the service speaks none of them */
	uint8_t  rk_missing;  /* need languages the service does not speak */
	uint8_t  rk_distance; /* borders from the home region */
	uint8_t  rk_nonspec;  /* 0 specialised in the referral's form of exploitation */
	uint64_t rk_age_ms;   /* since availability was confirmed */
	char     rk_id[CAP_ID_MAX];
} ref_rank;

int ref_rank_cmp(const ref_rank *a, const ref_rank *b);
/* Whether a service speaking langs serves language tag want (case-insensitive, and "en"
 * matches "en-GB" either way). */
bool ref_lang_match(const char *want, char *const *langs, size_t n);

/* ---- ref_text.c: free text sealed under the subject's key ------------------------------------ */

/* Seals text ("" or NULL: out is empty, HV_OK) for subject at the place "<id>/<field>" (index
 * >= 0: "<id>/<field>/<index>") into out (arena). For an erased subject out is empty and the
 * text dropped (HV_OK). FAILED_PRECONDITION (w_err set) without the seal hook; the hook's
 * failure otherwise. */
hv_status ref_text_seal(ref_work *w, const char *subject, const char *id, const char *field,
    long index, const char *text, ProtobufCBinaryData *out);
/* Seals text as the free part of r's newest event's reason (whose stored reason is the code). */
hv_status ref_event_text(ref_work *w, Referral *r, const char *text);
/* A copy of r for an answer (arena, sharing r's unchanged parts): the note and each event's
 * free text opened ("" once the subject is erased; a reason then keeps its code), the sealed
 * fields empty. DATA_LOSS (w_err set) when a text does not authenticate. The work's r stays
 * the stored form: never flush the copy. */
hv_status ref_shown(ref_work *w, const Referral *r, Referral **out);
/* The same for an offer's decline text (reads the referral for its subject). */
hv_status ref_shown_offer(ref_work *w, const Offer *o, Offer **out);
/* Drops r's free text, sealed or not (retention, after the subject's erasure). */
void ref_text_drop(Referral *r);
/* At open, once (REF_META_SEALED): seals the plaintext free text of records stored before
 * sealing, REF_BATCH records per transaction; the text of erased subjects is dropped. Does
 * nothing without the seal hook (it runs at the next open with one). */
hv_status ref_text_migrate(ref_service *rs);

/* ---- ref_period.c ---------------------------------------------------------------------------- */

/* A statistics period: an ISO week or a calendar month, Europe/Amsterdam time. */
typedef struct ref_period {
	bool     rp_week;    /* an ISO week; else a month */
	uint64_t rp_from_ms; /* Unix ms of its first local midnight */
	uint64_t rp_to_ms;   /* ... of the first midnight after it: [from, to) */
	char     rp_name[9]; /* "2026-W49" or "2026-12" */
} ref_period;

/* Reads a period name, "YYYY-Www" (ISO 8601 week, 01 to 52 or 53) or "YYYY-MM", year
 * 2000..9999. HV_INVALID_ARGUMENT with a message in err naming the problem otherwise (the
 * name is echoed only if it is short and of [0-9A-Za-z-]). */
hv_status ref_period_parse(const char *name, ref_period *out, char *err, size_t errsz);
/* The number of ISO 8601 weeks of year (52 or 53). */
unsigned ref_iso_weeks(int year);

/* ---- ref_stats.c ----------------------------------------------------------------------------- */

/* A count as shown: "0", "<5" for 1..4, else the number. buf: 16 bytes. */
/* The pct-th percentile (nearest rank) of n values; sorts v. 0 when n is 0. */
uint64_t ref_percentile(uint64_t *v, size_t n, unsigned pct);
/* The times to placement shown for n placements v (ms; sorts v): the median from 5 and the
 * 90th percentile from 10 (with fewer it is the slowest person's own), each rounded to the
 * nearest hour, else 0. A percentile is one person's time: not to the millisecond. */
void ref_stat_times(uint64_t *v, size_t n, uint64_t *median, uint64_t *p90);

/* The counts of a statistics cell, and how each is shown: a number, "<5" or "x". */
#define REF_STAT_CELLS 96 /* one region's cells: 6 forms of exploitation x 16 service types */
enum { REF_STAT_REFERRALS, REF_STAT_PLACEMENTS, REF_STAT_UNMET, REF_STAT_MEASURES };
enum { REF_SHOW_NUMBER, REF_SHOW_SMALL, REF_SHOW_HIDDEN };
/* Primary and complementary suppression of one region's cells (ref_stats.c explains the
 * rule): counts[i][m] in, shows[i][m] and totals[m] (the region's total of m) out. */
void ref_stats_suppress(const uint32_t counts[REF_STAT_CELLS][REF_STAT_MEASURES],
    uint8_t shows[REF_STAT_CELLS][REF_STAT_MEASURES], uint8_t totals[REF_STAT_MEASURES]);

/* Statistics for one named period (req->period; the ms window of old is INVALID_ARGUMENT, a
 * period not yet ended FAILED_PRECONDITION), allocated with alloc; err gets a message naming
 * the problem. */
hv_status ref_statistics(ref_service *rs, const Haven__Referral__V1__StatisticsRequest *req,
    ProtobufCAllocator *alloc, Haven__Referral__V1__StatisticsResponse **out, char *err,
    size_t errsz);

/* Calls fn for every referral created in [from_ms, to_ms), newest first, in txn (read or
 * write). r is valid during the call only. A status other than HV_OK from fn ends the walk
 * with it; HV_DATA_LOSS for a record that does not unpack. Statistics and the metrics page
 * (ref_metrics.c) share this one walk. */
typedef hv_status (*ref_walk_fn)(void *arg, const Referral *r);
hv_status ref_stats_walk(ref_service *rs, store_txn *txn, uint64_t from_ms, uint64_t to_ms,
    ref_walk_fn fn, void *arg);

/* ---- ref_work.c ------------------------------------------------------------------------------ */

/* Wakes the background job: places of the types in mask may have freed. */
void ref_kick(ref_service *rs, uint32_t types);
/* Unix ms as "YYYY-MM-DDTHH:MM:SSZ" (UTC) in buf; returns buf. */
const char *ref_iso_time(uint64_t ms, char buf[32]);

/* ---- ref_jobs.c ------------------------------------------------------------------------------ */

/* Opens the subscriptions of opts (capacity and consent notifications) and starts receiving. */
hv_status ref_jobs_subscribe(ref_service *rs, const ref_options *opts);
/* One round of the background job: queued consent withdrawals, expiries, routing. */
void ref_jobs_round(void *rs);

/* ---- ref_retention.c ------------------------------------------------------------------------- */

/* One round of the retention job (ref_retention_run, logged). */
void ref_retention_round(void *rs);
/* Fills ref.closed from the referrals of a store written before it existed (once). */
hv_status ref_closed_backfill(ref_service *rs);

#endif
