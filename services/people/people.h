/*
 * people.h - the people of organisations: their logins (name, password, one-time code), their
 * roles within their organisation and their sessions (haven.people.v1.People,
 * proto/haven/people/v1/people.proto; docs/people.md).
 *
 * Who may do what (docs/authority.md):
 *   Login            anyone: name + password + TOTP code -> a session token ("hs1.").
 *   Logout           any caller; ends the caller's own session when it is a person's.
 *   CreatePerson, DisablePerson, ResetPerson, SetPersonRole, ListPeople
 *                    the operator for any organisation (so it makes each organisation's
 *                    first admin); a person who is an org admin for the people of its own
 *                    organisation. Nobody else: not an organisation's certificate session
 *                    (a stolen key must not mint logins that outlive its replacement), not a
 *                    case worker or viewer, never another organisation's people. Neither
 *                    DisablePerson nor SetPersonRole takes an organisation's last enabled
 *                    org admin away (FAILED_PRECONDITION, for the operator too), counted in
 *                    the change's own write transaction.
 *
 * Sign-in. One answer for every wrong part: UNAUTHENTICATED "sign-in failed" (a malformed
 * request is INVALID_ARGUMENT, whatever the person). An unknown name costs the same scrypt as
 * a wrong password (a dummy hash is verified), and no failure writes to the store, so the
 * time taken does not tell names apart either. Failed attempts are counted in memory per
 * login name (known or not: an unknown name is locked out exactly like a known one) and per
 * source (the caller's transport and signed-in organisation, such as a partner's portal that
 * relays its people's sign-ins; an anonymous caller is no source of its own, as one bucket for
 * all of them would let anyone lock everyone out) or, where the transport knows it, the
 * client's address (rpc_call_source: the Connect API behind a trusted proxy); a restart
 * forgets both. From one client address at most PEOPLE_ADDRESS_ATTEMPTS sign-ins a minute are
 * tried at all (limit.h; before any password is hashed). After
 * PEOPLE_LOCK_AFTER failures in a row of a name (PEOPLE_SOURCE_LOCK_AFTER of a source)
 * sign-in is refused for a back-off that doubles with each further failure, from 30 s up to
 * an hour; the password is still hashed then, so the answer takes as long. A
 * success clears the name's count. At most two password hashes run at once (32 MiB each)
 * and two more wait; beyond that a sign-in is refused at once with RESOURCE_EXHAUSTED (load,
 * the same for every name), so that sign-ins cannot hold every handler thread.
 * The metric haven_people_signin_failures_total{cause} counts failures by cause; log lines
 * name the cause and, when known, the person's id, never a name, a password or a code.
 *
 * Sessions live in the store: a random 32-byte secret, of which only the SHA-256 is stored,
 * with the person's id, its organisation, the organisation's record version and the person's
 * version at sign-in. A session ends after session_idle_s without a person's call (default
 * 30 min: calls marked as background, RPC_MD_ACTIVITY in rpc.h, such as an open page's own
 * refreshes and the polls of an event stream, do not count; they end with the session),
 * after session_max_s in any case (12 h), at Logout, and at once when the person is disabled
 * or reset or its role changes (its version changes; its sessions are deleted) or the
 * organisation's record changes (auth.h: the directory is asked at every call). Last use is
 * written at most once a minute per session (a quarter of session_idle_s when that is
 * shorter), so idleness is measured to within that. Every sign-in also deletes the sessions that
 * ended by time.
 *
 * Tables (the node's one LMDB environment; only this service reads them):
 *   people.persons   person id (16 bytes)                 -> PersonRecord
 *   people.logins    HMAC(login key, lower-cased name)    -> person id
 *   people.sessions  SHA-256(session secret)              -> SessionRecord
 * Login and display names and TOTP secrets are sealed (AES-256-GCM, the person's id and the
 * field's name as associated data) under keys derived from DATA/keys/people-key (32 random
 * bytes, 0600, made at the first start; back it up with the other keys: without it nobody can
 * sign in, and people must be enrolled again).
 */
#ifndef HAVEN_PEOPLE_H
#define HAVEN_PEOPLE_H

#include <stdint.h>

#include "haven/audit.h"
#include "haven/auth.h"
#include "haven/rpc.h"
#include "haven/store.h"

#define PEOPLE_KEY_FILE          "people-key" /* under DATA/keys/ */
#define PEOPLE_LOCK_AFTER        5            /* failures in a row of one person before back-off */
#define PEOPLE_SOURCE_LOCK_AFTER 20 /* failures in a row from one source before back-off */
#define PEOPLE_ADDRESS_ATTEMPTS  20 /* sign-in attempts a minute from one client address */
#define PEOPLE_PASSWORD_MIN      12
#define PEOPLE_LOGIN_MIN         3
#define PEOPLE_LOGIN_MAX         128 /* NAME@ORG: 64 + 1 + an organisation id's 63 */
#define PEOPLE_LOGIN_NAME_MAX    64
#define PEOPLE_DISPLAY_MAX       128
#define PEOPLE_PER_ORG_MAX       1000

typedef struct people_service people_service;

typedef struct people_options {
	store *store;
	auth  *auth;                /* the node's: org lookups and the session verifier */
	audit *audit;               /* people added, disabled and reset are audited (by whom,
	                               which person, in the change's transaction); NULL: not */
	const char *key_file;       /* DATA/keys/people-key, made when missing */
	uint32_t    session_idle_s; /* 0: 1800 */
	uint32_t    session_max_s;  /* 0: 43200 */
	unsigned    pwhash_ln;      /* scrypt cost 2^ln for new hashes; 0: CRYPTO_PWHASH_LN
	                               (tests make it cheaper) */
	int64_t (*now_ms)(void);    /* NULL: hv_clock_wall_ms; tests move time */
} people_options;

/* Opens the service: its tables and its key (HV_PERMISSION_DENIED for a key file open to
 * others, HV_DATA_LOSS for one of the wrong size). */
hv_status people_open(people_service **out, const people_options *opts);
void      people_close(people_service *ps);

/* Registers haven.people.v1.People on srv with its metric, and becomes auth's verifier of
 * people's sessions (ps must outlive srv). */
hv_status people_register(people_service *ps, rpc_server *srv);

/* The auth_session_fn of people's sessions (auth.h); arg is the people_service. */
hv_status people_session_verify(void *arg, const char *token, int64_t now_ms, bool use,
    auth_session *out);

/* Failed sign-ins by cause ("unknown_name", "password", "code", "locked", "disabled",
 * "organisation"), for tests; 0 for another name. */
uint64_t people_signin_failures(people_service *ps, const char *cause);

#endif
