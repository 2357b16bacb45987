/*
 * sig_internal.h - what signals.c (the service, its key, challenges and limits) and
 * sig_rpc.c (the handlers) share.
 */
#ifndef HAVEN_SIG_INTERNAL_H
#define HAVEN_SIG_INTERNAL_H

#include <pthread.h>

#include "signals.h"

#include "haven/crypto.h"
#include "haven/limit.h"
#include "haven/ticker.h"

typedef Haven__Signals__V1__Signal Signal;

#define SIG_ID_MAX  48
#define SIG_KEY_MAX 160
/* A key of signals.expired after its region: 0, be64 day it came in, sector, be64 day it was
 * erased (sig_retention.c writes it, sig_stats.c reads it). Rows from before the day of the
 * erasure was kept end after the sector. */
#define SIG_EXPIRED_TAIL     18
#define SIG_EXPIRED_TAIL_OLD 10
#define SIG_SEALED_HDR       (1 + CRYPTO_AEAD_NONCE_LEN + CRYPTO_AEAD_TAG_LEN)

typedef struct sig_challenge {
	char    c_nonce[SIG_NONCE_LEN + 1]; /* "" when the slot is free */
	int64_t c_expires_ms;
} sig_challenge;

struct sig_service {
	store            *ss_store;
	const region_map *ss_regions;
	cap_service      *ss_cap;
	alerts_service   *ss_alerts;
	ref_service      *ss_refs;
	char              ss_helpline[SIG_HELPLINE_MAX + 1];
	uint32_t          ss_difficulty;
	uint32_t          ss_ttl_ms;
	int64_t (*ss_now)(void *arg);
	void       *ss_now_arg;
	uint8_t     ss_key[CRYPTO_AEAD_KEY_LEN];
	store_table ss_items, ss_by_region, ss_contact, ss_expired;
	audit      *ss_audit;
	uint32_t    ss_retention_days;
	hv_ticker  *ss_retention;

	pthread_mutex_t ss_mu;   /* the challenges */
	sig_challenge  *ss_chal; /* SIG_CHALLENGES_MAX slots */
	limit          *ss_lim_challenge, *ss_lim_submit;
};

int64_t sig_now(const sig_service *ss);
/* A new challenge into nonce; RESOURCE_EXHAUSTED when the table is full. */
hv_status sig_challenge_new(sig_service *ss, char nonce[SIG_NONCE_LEN + 1], int64_t *expires);
/* Checks and spends a challenge: the nonce must be outstanding and unexpired and the solution
 * must meet the difficulty. Spent whatever the answer once the nonce was found, so that one
 * challenge buys one try. */
hv_status sig_challenge_spend(sig_service *ss, const char *nonce, const uint8_t *sol, size_t sollen,
    const char **why);
/* One event of a limiter for the call's source; a refusal is the call's error (the message
 * says whether this address or everyone is over, and points to 112). */
hv_status sig_limit(rpc_call *call, limit *l, const char *what);

/* Seals text (len bytes) bound to id into out (len + SIG_SEALED_HDR bytes). */
hv_status sig_seal(const sig_service *ss, const char *id, const char *text, size_t len,
    uint8_t *out);
/* Opens a sealed contact into text (len - SIG_SEALED_HDR + 1 bytes, NUL-terminated). */
hv_status sig_unseal(const sig_service *ss, const char *id, const uint8_t *in, size_t len,
    char *text);

/* The roles of the methods (docs/authority.md). */
#define SIG_R_ANYONE   RPC_ROLES_ANY
#define SIG_R_OUTREACH RPC_ROLE_REFERRER
#define SIG_R_NUMBERS                                                                              \
	(RPC_ROLE_OPERATOR | RPC_ROLE_ADMIN | RPC_ROLES_COORDINATORS | RPC_ROLE_MUNICIPALITY)

/* The handlers (sig_rpc.c, sig_follow.c); sig_stats.c registers them. */
#define SIG_HANDLER(name)                                                                          \
	hv_status name(rpc_call *call, void *svc, const ProtobufCMessage *in,                      \
	    ProtobufCMessage **out)
SIG_HANDLER(sig_h_challenge);
SIG_HANDLER(sig_h_submit);
SIG_HANDLER(sig_h_list);
SIG_HANDLER(sig_h_count);
SIG_HANDLER(sig_h_ack);
SIG_HANDLER(sig_h_close);
SIG_HANDLER(sig_h_convert);

/* The retention ticker's job (sig_retention.c). */
void sig_retention_round(void *ss);
/* An audit entry for a signal shown to the caller (sig_follow.c); HV_OK without an audit log. */
hv_status sig_audit_read(sig_service *ss, store_txn *txn, rpc_call *call, const Signal *s);

/* Key layout of signals.by_region. */
size_t sig_key_region(uint8_t key[SIG_KEY_MAX], const char *region, uint64_t created_ms,
    const char *id);

#endif
