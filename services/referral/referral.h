/*
 * referral.h - referrals (haven-referral) as a library: routing each need across regions to a
 * provider with room, holding the place, following the offer to acceptance and placement, and
 * the closed loop back to the referrer.
 *
 * Every state change of a referral and the capacity holds it places or releases commit in ONE
 * store_write: an offer and its hold exist together or not at all. Routing runs in the caller's
 * write transaction with the capacity library's store functions (capacity.h).
 *
 * Tables (keys: ids are [a-z0-9._-], so a 0 byte separates the parts of a key; be64 is a
 * big-endian 64-bit number, ~t is UINT64_MAX - t so that newer comes first):
 *   ref.referrals   referral id                          -> Referral (needs, events)
 *   ref.offers      offer id                             -> Offer
 *   ref.by_provider provider org 0 be64 ~created offer id -> ""   (a provider's offers)
 *   ref.by_referrer referrer org 0 be64 ~created ref id   -> ""   (a referrer's referrals)
 *   ref.by_region   home region 0 be64 ~created ref id    -> ""   (a coordinator's)
 *   ref.by_time     be64 ~created referral id             -> ""   (all; statistics)
 *   ref.by_subject  subject 0 referral id                 -> ""   (consent: who accepted)
 *   ref.waiting     urgency(1) be64 created referral id 0 be32 need index -> ""
 *                   (unmet demand, most urgent and oldest first)
 *   ref.deadlines   be64 respond_by offer id              -> ""   (open offers to expire)
 *   ref.idem        referrer org 0 idempotency key        -> referral id
 *   ref.closed      be64 closed_ms referral id             -> ""   (closed referrals whose
 *                   subject retention has not erased yet, oldest first)
 *   ref.meta        "closed-index"                         -> "1"  (ref.closed was filled
 *                   from the referrals of a store older than it)
 *
 * Invariants, after every committed transaction: a need is OFFERED exactly while its offer is
 * OPEN, and then the offer's hold exists (or was released by capacity's own expiry past the
 * respond-by time, which ref_expire_offers tolerates); an OPEN offer has exactly one deadline
 * entry; a need is in ref.waiting exactly while it is WAITING; an ACCEPTED, PLACED or
 * COMPLETED need's place was confirmed with cap_hold_confirm exactly once. A referral's
 * version grows by one with each event. A referral is closed when every need is COMPLETED,
 * CANCELLED or FAILED (PLACED is open: the person is with the provider); then closed_ms is the
 * time of the transition that closed it, and it is in ref.closed exactly while it is closed
 * and subject_erased_ms is 0.
 *
 * Threads: handlers run on the RPC server's workers; one background thread (ref_open ..
 * ref_stop) expires offers every second and routes waiting needs when capacity notifications
 * say a place of their type freed, and every few seconds anyway. With retention configured
 * (ref_options.erase and retention_days), a second thread runs the retention sweep at start
 * and then every retention_interval_s: erasures rotate the consent service's key and take
 * long enough that they must not hold up the expiry of offers.
 */
#ifndef HAVEN_REFERRAL_H
#define HAVEN_REFERRAL_H

#include <stdbool.h>
#include <stdint.h>

#include "haven/audit.h"
#include "haven/config.h"
#include "haven/regions.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "capacity.h"

#include "haven/referral/v1/referral.pb-c.h"

typedef struct ref_service ref_service;

/* "May this be shared?": the consent service's check, inside the caller's transaction (a
 * write transaction: the check is audited). caller and method are the call on whose behalf
 * it is asked (for the audit entry). accepting_provider says that recipient is the provider
 * that accepted this subject's referral (consent may name "the provider that accepts the
 * referral" instead of an org). CreateReferral asks it with purpose "referral", recipient_org
 * "" (the node itself: the node processes the referral) and accepting_provider false.
 * HV_NOT_FOUND (unknown or erased subject) counts as not allowed; another failure fails the
 * call with that status (a referrer asking about a subject it does not hold, unknown, erased
 * or another's alike: PERMISSION_DENIED). */
typedef hv_status (*ref_consent_fn)(void *arg, store_txn *txn, const rpc_caller *caller,
    const char *method, const char *subject, const char *purpose, const char *recipient_org,
    bool accepting_provider, bool *allowed);

/* Free text about the person (a referral's note, the free part of a reason, an offer's
 * decline text) is stored only sealed under the subject's data key in the consent service,
 * so that erasing the subject shreds it (ref_text.c). The hooks run inside the caller's
 * transaction, with consent_arg; context names the place the text is kept ("<referral
 * id>/note") and is bound to the ciphertext. seal writes exactly len + REF_SEAL_OVERHEAD
 * bytes into out (outsz is that); open writes the text and a NUL into text (textsz is
 * len - REF_SEAL_OVERHEAD + 1). HV_NOT_FOUND: the subject is unknown or erased (the text then
 * reads as ""). The node passes consent_ref_seal and consent_ref_open. */
#define REF_SEAL_OVERHEAD 29 /* CONSENT_TEXT_OVERHEAD: version, nonce, tag */
typedef hv_status (*ref_seal_fn)(void *arg, store_txn *txn, const char *subject,
    const char *context, const char *text, size_t len, uint8_t *out, size_t outsz);
typedef hv_status (*ref_open_fn)(void *arg, store_txn *txn, const char *subject,
    const char *context, const uint8_t *sealed, size_t len, char *text, size_t textsz);

/* Whether subject is a minor (the consent service knows; the node passes consent_ref_minor),
 * inside the caller's transaction, with consent_arg. A minor's needs are routed only to
 * services whose populations include MINORS. HV_NOT_FOUND counts as not a minor. */
typedef hv_status (*ref_minor_fn)(void *arg, store_txn *txn, const char *subject, bool *minor);

/* Whether organisation org_id may still see the referrals it made about subject: false when
 * the subject was handed on to another organisation (TransferSubject), true when org_id holds
 * her, and for a subject that is unknown or erased (no one else holds her: the referrals stay
 * their referrer's). Inside the caller's transaction, with consent_arg (the node passes
 * consent_ref_holds). */
typedef hv_status (
    *ref_holds_fn)(void *arg, store_txn *txn, const char *subject, const char *org_id, bool *holds);

/* Retention: erases the personal data of subject (32 hex digits) in the consent service, in
 * transactions of its own (the node passes consent_erase_subject with the node itself as the
 * caller). Called with no transaction open, from the retention thread or ref_retention_run's
 * caller. HV_OK: erased. HV_NOT_FOUND: unknown or erased already; counts as erased. Any other
 * status: the subject is kept and tried again at the next sweep. */
typedef hv_status (*ref_erase_fn)(void *arg, const char *subject);

/* Called once after a retention sweep that erased at least one subject (with no transaction
 * open): the node rotates the consent service's key-encryption key here, once for the whole
 * sweep, which makes those erasures final (consent_erase_subject_deferred). Its failure is
 * logged; the daily rotation is the fallback. */
typedef hv_status (*ref_erase_done_fn)(void *arg);

#define REF_LANGUAGE_HOPS_DEFAULT 1
#define REF_LANGUAGE_HOPS_MAX     9
#define REF_LANGUAGE_HOPS_NONE    UINT32_MAX

/* Index of offer_timeout_s by urgency. */
#define REF_URGENCIES 4

typedef struct ref_options {
	store            *store;
	const region_map *regions;
	cap_service      *capacity; /* holds and candidates; not owned */
	ref_consent_fn    consent;  /* NULL: every referral is refused (no consent service) */
	void             *consent_arg;
	/* Free text sealed under the subject's key, with consent_arg. seal NULL: a request with
	 * free text is refused (FAILED_PRECONDITION); unseal NULL: sealed text reads as "". */
	ref_seal_fn seal;
	ref_open_fn unseal;
	/* Alerts: each event that needs a person goes to the alerts service's outbox in the
	 * event's own transaction (ref_alert.c). NULL: no alerts. Not owned. */
	struct alerts_service *alerts;
	ref_minor_fn           minor;            /* with consent_arg; NULL: no subject is a minor */
	ref_holds_fn           holds;            /* with consent_arg; NULL: a referrer holds all */
	const char            *pub_url;          /* ReferralChanged notifications; NULL: none */
	const char            *capacity_sub_url; /* subscribe to CapacityChanged here; NULL: none */
	/* Subscribe to the consent service's "consent.withdrawn" notifications (a packed
	 * haven.consent.v1.ConsentWithdrawn) here, and record each on the subject's open
	 * referrals (ref_consent_withdrawn, from the background thread); NULL: none. May be the
	 * same URL as capacity_sub_url when one publisher carries both. */
	const char *consent_sub_url;
	uint32_t    offer_timeout_s[REF_URGENCIES]; /* by Urgency (1..3); 0: 1800, 14400,
	                                             * 86400 */
	/* The capacity service's hold_max_ttl_s (0: 24 h). A respond-by window is never longer,
	 * and a hold lives for the window plus a margin, cut to this. */
	uint32_t hold_max_ttl_s;
	/* Languages: a service that speaks none of a need's languages ranks as if it were this many
	 * region borders further away, so that a speaker up to that many borders beyond a nearer
	 * non-speaker is offered first. 0: REF_LANGUAGE_HOPS_DEFAULT; REF_LANGUAGE_HOPS_NONE: the
	 * nearer service first (languages only break ties of distance). */
	uint32_t language_hops;
	int64_t (*now_ms)(void *arg); /* NULL: the wall clock (Unix time in ms) */
	void *now_arg;
	/* No background threads: offers expire, waiting needs are routed and retention runs only
	 * when the caller runs ref_expire_offers / ref_route_waiting / ref_retention_run (tests
	 * and tools). */
	bool manual;
	/* Store functions only, for another service's process that reads the referral tables
	 * (haven-consent: ref_is_accepting_provider): the tables are opened, and nothing else
	 * happens: no migration or index backfill, no sockets, no background jobs. Handlers must
	 * not be registered on such a service. */
	bool store_only;
	/* Retention: the subjects whose referrals all closed more than retention_days ago are
	 * erased through erase, at start and then every retention_interval_s (0: 3600).
	 * retention_days 0 or erase NULL: no retention. */
	ref_erase_fn      erase;
	void             *erase_arg;
	ref_erase_done_fn erase_done; /* may be NULL; called with erase_arg */
	uint32_t          retention_days;
	uint32_t          retention_interval_s;
	/* The kinds of period Statistics answers: REF_PERIODS_MONTHS and/or REF_PERIODS_WEEKS;
	 * 0: months only. Both kinds together let a caller subtract a month's inner weeks from
	 * it and learn the counts of the days at its edges (docs/referral.md): allow both only
	 * where every caller of Statistics may see that. */
	unsigned stats_periods;
} ref_options;

#define REF_PERIODS_MONTHS 1u
#define REF_PERIODS_WEEKS  2u

/* The service's options in the node's configuration file, section "referral" (ref_config.c
 * documents each; `haven-node --print-config` prints them). Zero it, read it with
 * host_config_load_with(..., ref_config_table(&cfg), ...), turn it into ref_options with
 * ref_config_apply, and free it with ref_config_free. */
#define REF_CONFIG_SECTION "referral"
typedef struct ref_config {
	uint64_t offer_timeout_immediate_s;
	uint64_t offer_timeout_urgent_s;
	uint64_t offer_timeout_planned_s;
	uint64_t language_hops;
	char    *statistics_periods;
	uint64_t retention_days;
} ref_config;
config_table ref_config_table(ref_config *cfg);
/* Sets ro's offer timeouts, language hops, statistics periods and retention days from cfg;
 * INVALID_ARGUMENT with a message naming the option for a value the service cannot use. */
hv_status ref_config_apply(const ref_config *cfg, ref_options *ro, char *err, size_t errsz);
void      ref_config_free(ref_config *cfg);

/* Reads the statistics_periods option: "month", "week", "month,week" or "week,month" into
 * REF_PERIODS_* bits; HV_INVALID_ARGUMENT for anything else. */
hv_status ref_stats_periods_parse(const char *text, unsigned *out);

/* Opens the tables (creating them), runs the one-time migrations, opens the pub and sub
 * sockets, and starts the background jobs (only the tables with store_only). Call at
 * start-up, before any store_write of the process is running. */
hv_status ref_open(ref_service **out, const ref_options *opts);

/* Stops the background thread and the subscriptions (waits for a round that is running).
 * Handlers and store functions keep working. Safe to repeat. */
void ref_stop(ref_service *rs);

/* Stops (ref_stop), closes the sockets and frees. No handler may be running. NULL allowed. */
void ref_close(ref_service *rs);

/* Audits every read of a person-linked record in the node's audit log a (not owned; open until
 * ref_close): GetReferral, ListReferrals and ListOffers append one entry per referral or offer
 * read (the caller, the method, the subject, the record's id as purpose) in the read's own
 * transaction, which becomes a write. NULL or never called: reads are not audited (tools and
 * unit tests). Before the server starts. */
void ref_set_audit(ref_service *rs, audit *a);

/* Registers haven.referral.v1.Referrals on srv. */
hv_status ref_register(ref_service *rs, rpc_server *srv);

/* Routes every waiting need that a place may now fit (after capacity freed), most urgent and
 * oldest first, a batch per transaction. Runs by itself on capacity notifications and a
 * timer; exposed for tests and benchmarks. *routed (may be NULL) counts new offers. */
hv_status ref_route_waiting(ref_service *rs, unsigned *routed);

/* Expires every open offer whose respond-by time passed: releases its hold, records the
 * expiry and routes the need onwards (the next candidate, or waiting). *expired (may be NULL)
 * counts them. */
hv_status ref_expire_offers(ref_service *rs, unsigned *expired);

/* For the consent service: is org the provider that accepted (and not since ended) a
 * referral of this subject? Inside the caller's transaction (read or write). */
hv_status ref_is_accepting_provider(ref_service *rs, store_txn *txn, const char *subject,
    const char *org_id, bool *yes);

/* For the consent service (or whoever hears its notifications): consent of subject was
 * withdrawn (or, expired, its end date passed). Records a "consent withdrawn" ("consent
 * expired") event on each of the subject's referrals that still has a need not ended, ends
 * what it still routes when no other consent covers it, and tells the providers and the
 * referrers (CONSENT_WITHDRAWN or CONSENT_EXPIRED). Its own write transaction; not from inside
 * a write function. *referrals (may be NULL) counts the referrals marked. */
hv_status ref_consent_withdrawn(ref_service *rs, const char *subject, bool expired,
    unsigned *referrals);

/* ---- retention ---------------------------------------------------------------------- */

/* Called by ref_retention_due for each subject that is due; set *stop to end the walk. subject
 * is valid during the call only. A status other than HV_OK ends the walk with it. */
typedef hv_status (*ref_due_fn)(void *arg, const char *subject, bool *stop);

/* The subjects due for erasure at cutoff_ms: every referral of the subject is closed, each
 * closed before cutoff_ms, and retention has not erased it yet. A subject with any open
 * referral, or one closed at or after the cutoff, is kept. Each due subject is yielded once,
 * oldest closure first (by the latest closure among its referrals). Read or write
 * transaction; reads only. */
hv_status ref_retention_due(ref_service *rs, store_txn *txn, int64_t cutoff_ms, ref_due_fn fn,
    void *arg);

typedef struct ref_retention_stats {
	int64_t  rr_cutoff_ms; /* referrals closed before this were considered */
	unsigned rr_subjects;  /* subjects erased (or found erased already) */
	unsigned rr_referrals; /* their referrals, marked subject_erased_ms */
	unsigned rr_kept;      /* subjects with a due referral kept for an open or recent one */
	unsigned rr_failed;    /* erasures that failed: tried again at the next sweep */
} ref_retention_stats;

/* One retention sweep: cutoff now - retention_days; each due subject is erased through the
 * erase hook (no transaction open), then its referrals are marked in a write transaction of
 * their own (subject_erased_ms, the note and the free text of its events dropped, an event
 * "personal data erased (retention)" that tells the referrer) and leave ref.closed, so that no
 * later sweep looks at them again. Logs one line with the counts (no ids). Idempotent: a sweep that
 * finds nothing due changes nothing; a crash between an erasure and its marking is finished by the
 * next sweep (the hook then answers NOT_FOUND). FAILED_PRECONDITION without retention_days or the
 * erase hook. out may be NULL. Not from inside a write function; ref_stop ends a sweep that is
 * running between two subjects. */
hv_status ref_retention_run(ref_service *rs, ref_retention_stats *out);

/* The service's clock (the now_ms hook, or Unix time in ms). */
int64_t ref_now_ms(const ref_service *rs);

/* For the signals service (services/signals): the organisation that made referral id, read in
 * txn (another service's transaction), into org (orgsz bytes). NOT_FOUND for an unknown or
 * malformed id. */
hv_status ref_referrer_of(ref_service *rs, store_txn *txn, const char *id, char *org, size_t orgsz);

/* For the signals service: the bounds [*from_ms, *to_ms) of a statistics period named
 * "YYYY-MM" (a calendar month, Europe/Amsterdam; weeks are refused, since weeks and months
 * overlap and their answers could be subtracted), INVALID_ARGUMENT with a message in err
 * otherwise. */
hv_status ref_stat_month(const char *name, uint64_t *from_ms, uint64_t *to_ms, char *err,
    size_t errsz);

/* A count as the statistics show it: 1..4 as "<5", else the number (buf gets it). The one
 * small-cell rule of haven's statistics (docs/authority.md, "numbers"). */
const char *ref_stat_count(uint32_t n, char buf[16]);

#endif
