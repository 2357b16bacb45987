/*
 * signals.h - a signal from anyone (haven.signals.v1.Signals, docs/signals.md), as a library
 * haven-node serves: an anonymous sender says "something is wrong here" in a region; the
 * outreach organisations (referrers) of that region get an alert in the same transaction,
 * acknowledge the signal, close it with a coded outcome or link it to a referral they made.
 *
 * Abuse: Submit needs a solved proof-of-work of a single-use, expiring challenge (Challenge:
 * sha256(nonce || solution) with `difficulty` leading zero bits), both methods are rate
 * limited overall (token buckets), and every field is bounded. The transports tell handlers
 * no peer address, so the limit per sender is the challenge itself (one submit each); no
 * address is stored anywhere. Challenges live in memory only (a restart voids them).
 *
 * The contact text (how and when the sender may be reached) is sealed at rest with AES-256-GCM
 * under the service's key (DATA_DIR/keys/signals.key, 0600), bound to the signal's id, never
 * logged and never in an alert; closing or converting a signal deletes it.
 *
 * Tables (in the node's LMDB environment; be64 big-endian, ~t = UINT64_MAX - t):
 *   signals.items     signal id                    -> Signal (contact empty)
 *   signals.by_region region 0 be64 ~created id    -> ""
 *   signals.contact   signal id                    -> version(1) nonce(12) tag(16) text
 */
#ifndef HAVEN_SIGNALS_H
#define HAVEN_SIGNALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "haven/config.h"
#include "haven/regions.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include "alerts.h"
#include "capacity.h"
#include "referral.h"

#include "haven/signals/v1/signals.pb-c.h"

#define SIG_CONTACT_MAX     500  /* bytes of contact text */
#define SIG_SIGNS_MAX       12
#define SIG_SOLUTION_MAX    64
#define SIG_NONCE_LEN       43   /* base64url of 32 random bytes */
#define SIG_CHALLENGES_MAX  4096 /* outstanding challenges held at once */
#define SIG_HELPLINE_MAX    32
#define SIG_LIST_MAX        500
#define SIG_DIFFICULTY_MAX  28

typedef struct sig_service sig_service;

typedef struct sig_options {
	store            *store;     /* the node's store; not owned */
	const region_map *regions;   /* not owned */
	cap_service      *capacity;  /* the directory: who is a referrer of which region */
	alerts_service   *alerts;    /* NULL: no alerts */
	ref_service      *referrals; /* ConvertSignal's check of the referral; NULL: refused */
	const char       *key_path;  /* the sealing key; created (0600) when missing */
	const char       *helpline;  /* the national trafficking helpline; NULL/"": 112 only */
	uint32_t          difficulty;      /* leading zero bits; 0: 18 */
	uint32_t          challenge_ttl_s; /* 0: 600 */
	uint32_t          submits_per_min; /* overall; 0: 30 (burst the same) */
	int64_t (*now_ms)(void *arg);      /* NULL: the wall clock */
	void *now_arg;
} sig_options;

/* The "signals" section of the node's configuration file (see signals_config in signals.c). */
#define SIG_CONFIG_SECTION "signals"
typedef struct sig_config {
	char    *helpline;
	uint64_t difficulty;
	uint64_t submits_per_min;
} sig_config;
config_table sig_config_table(sig_config *cfg);
void sig_config_apply(const sig_config *cfg, sig_options *so);
void sig_config_free(sig_config *cfg);

/* Opens the tables and the key. INVALID_ARGUMENT (logged) for a bad helpline or difficulty,
 * PERMISSION_DENIED for a key file others may read. */
hv_status sig_open(sig_service **out, const sig_options *opts);
void sig_close(sig_service *ss);
/* Registers haven.signals.v1.Signals on srv. */
hv_status sig_register(sig_service *ss, rpc_server *srv);

/* For tests and clients: a solution of nonce at difficulty into sol (SIG_SOLUTION_MAX
 * bytes), its length returned (0: none found in 2^32 tries). */
size_t sig_solve(const char *nonce, uint32_t difficulty, uint8_t *sol);

#endif
