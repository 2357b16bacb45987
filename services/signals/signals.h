/*
 * signals.h - a signal from anyone (haven.signals.v1.Signals, docs/signals.md), as a library
 * haven-node serves: an anonymous sender says "something is wrong here" in a region; the
 * outreach organisations (referrers) of that region get an alert in the same transaction,
 * acknowledge the signal, close it with a coded outcome or link it to a referral they made.
 *
 * Abuse: Submit needs a solved proof-of-work of a single-use, expiring challenge (Challenge:
 * sha256(nonce || solution) with `difficulty` leading zero bits), both methods are rate
 * limited per client address and overall (limit.h: the address as a keyed hash, in memory,
 * for a minute; per address only where the transport knows it: the Connect API behind a
 * trusted proxy, rpc_call_source), and every field is bounded. No address is stored or logged
 * anywhere. Challenges live in memory only (a restart voids them).
 *
 * Reads: every signal an outreach organisation is shown (ListSignals, and the signal the
 * follow-up methods answer with, its contact opened) is an entry in the node's audit log
 * (sig_options.audit), in the read's own transaction. Retention: a signal nobody closed is
 * erased with its sealed contact retention_days after it came in; it stays in the statistics
 * as a count (outcome EXPIRED, per region, sector and day) in signals.expired.
 *
 * The contact text (how and when the sender may be reached) is sealed at rest with AES-256-GCM
 * under the service's key (DATA_DIR/keys/signals.key, 0600), bound to the signal's id, never
 * logged and never in an alert; closing or converting a signal deletes it.
 *
 * Tables (in the node's LMDB environment; be64 big-endian, ~t = UINT64_MAX - t):
 *   signals.items     signal id                    -> Signal (contact empty)
 *   signals.by_region region 0 be64 ~created id    -> ""
 *   signals.contact   signal id                    -> version(1) nonce(12) tag(16) text
 *   signals.expired   region 0 be64 day sector(1) be64 erased_day -> be32 count of signals
 *                     erased unclosed (rows without erased_day: from before it was kept)
 */
#ifndef HAVEN_SIGNALS_H
#define HAVEN_SIGNALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/audit.h"
#include "haven/config.h"
#include "haven/regions.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "alerts.h"
#include "capacity.h"
#include "referral.h"

#include "haven/signals/v1/signals.pb-c.h"

#define SIG_CONTACT_MAX        500 /* bytes of contact text */
#define SIG_SIGNS_MAX          12
#define SIG_SOLUTION_MAX       64
#define SIG_NONCE_LEN          43   /* base64url of 32 random bytes */
#define SIG_CHALLENGES_MAX     4096 /* outstanding challenges held at once */
#define SIG_HELPLINE_MAX       32
#define SIG_LIST_MAX           500
#define SIG_DIFFICULTY_MAX     28
#define SIG_RETENTION_DAYS_MAX 3650

typedef struct sig_service sig_service;

typedef struct sig_options {
	store            *store;      /* the node's store; not owned */
	const region_map *regions;    /* not owned */
	cap_service      *capacity;   /* the directory: who is a referrer of which region */
	alerts_service   *alerts;     /* NULL: no alerts */
	ref_service      *referrals;  /* ConvertSignal's check of the referral; NULL: refused */
	const char       *key_path;   /* the sealing key; created (0600) when missing */
	const char       *helpline;   /* the national trafficking helpline; NULL/"": 112 only */
	uint32_t          difficulty; /* leading zero bits; 0: 18 */
	uint32_t          challenge_ttl_s; /* 0: 600 */
	uint32_t          submits_per_min; /* overall; 0: 30 (burst the same) */
	/* per client address (when the transport knows it); 0: 2. Challenges: 4 times both. */
	uint32_t per_address_per_min;
	audit   *audit;               /* reads of signals are audited here; NULL: not */
	uint32_t retention_days;      /* unclosed signals older are erased; 0: never */
	uint32_t retention_every_s;   /* the retention ticker; 0: 3600 */
	bool     manual;              /* no ticker: tests call sig_retention_run */
	int64_t (*now_ms)(void *arg); /* NULL: the wall clock */
	void *now_arg;
} sig_options;

/* The "signals" section of the node's configuration file (see signals_config in signals.c). */
#define SIG_CONFIG_SECTION "signals"
typedef struct sig_config {
	char    *helpline;
	uint64_t difficulty;
	uint64_t submits_per_min;
	uint64_t per_address_per_min;
	uint64_t retention_days;
} sig_config;
config_table sig_config_table(sig_config *cfg);
void         sig_config_apply(const sig_config *cfg, sig_options *so);
void         sig_config_free(sig_config *cfg);

/* Opens the tables and the key. INVALID_ARGUMENT (logged) for a bad helpline or difficulty,
 * PERMISSION_DENIED for a key file others may read. */
hv_status sig_open(sig_service **out, const sig_options *opts);
void      sig_close(sig_service *ss);
/* Registers haven.signals.v1.Signals on srv. */
hv_status sig_register(sig_service *ss, rpc_server *srv);

/* Erases every open signal that came in more than retention_days ago (with its sealed
 * contact), counting it in signals.expired first, in the same transaction. *erased (may be
 * NULL) is how many. HV_OK with nothing to do when retention_days is 0. */
hv_status sig_retention_run(sig_service *ss, size_t *erased);

/* For tests and clients: a solution of nonce at difficulty into sol (SIG_SOLUTION_MAX
 * bytes), its length returned (0: none found in 2^32 tries). */
size_t sig_solve(const char *nonce, uint32_t difficulty, uint8_t *sol);

#endif
