/*
 * people_session.c - people's sessions, kept in the store (people.h): made at sign-in,
 * verified at every call (through auth's session verifier), ended by Logout, by their idle
 * and absolute limits, and at once when their person is disabled or reset. Only calls a person
 * made hold off the idle limit: a passive verification (an open page's own refresh, an event
 * stream's poll) checks the session without moving its last use.
 *
 * Only the SHA-256 of a session's secret is stored: the store alone yields no session. A
 * token is never logged.
 */
#include <stdlib.h>
#include <string.h>

#include "haven/log.h"
#include "people_internal.h"

#define TOKEN_B64_LEN  43 /* base64url of 32 bytes */
#define TOKEN_LEN      (sizeof(AUTH_SESSION_PREFIX) - 1 + TOKEN_B64_LEN)
#define TOUCH_EVERY_MS 60000 /* last use is written at most this often (or idle / 4) */

/* The stored key of a token: SHA-256 of its secret. HV_UNAUTHENTICATED when malformed. */
static hv_status
token_key(const char *token, uint8_t key[CRYPTO_SHA256_LEN])
{
	uint8_t secret[PEOPLE_SESSION_SECRET_LEN];
	size_t  n      = 0;
	size_t  prefix = sizeof(AUTH_SESSION_PREFIX) - 1;

	if (token == NULL || strnlen(token, TOKEN_LEN + 1) != TOKEN_LEN ||
	    strncmp(token, AUTH_SESSION_PREFIX, prefix) != 0 ||
	    crypto_b64url_decode(secret, sizeof(secret), &n, token + prefix, TOKEN_B64_LEN) !=
	        HV_OK ||
	    n != sizeof(secret)) {
		return (HV_UNAUTHENTICATED);
	}
	crypto_sha256(key, secret, sizeof(secret));
	crypto_wipe(secret, sizeof(secret));
	return (HV_OK);
}

hv_status
people_session_new(people_service *ps, store_txn *txn, const Haven__People__V1__PersonRecord *rec,
    uint64_t org_version, int64_t now_ms, char *out, size_t outsz, int64_t *expires)
{
	Haven__People__V1__SessionRecord s = HAVEN__PEOPLE__V1__SESSION_RECORD__INIT;
	uint8_t                          secret[PEOPLE_SESSION_SECRET_LEN];
	uint8_t                          key[CRYPTO_SHA256_LEN];
	size_t                           prefix = sizeof(AUTH_SESSION_PREFIX) - 1;
	hv_status                        st;

	if (outsz < TOKEN_LEN + 1) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = crypto_random(secret, sizeof(secret))) != HV_OK) {
		return (st);
	}
	memcpy(out, AUTH_SESSION_PREFIX, prefix);
	if ((st = crypto_b64url_encode(out + prefix, outsz - prefix, secret, sizeof(secret))) !=
	    HV_OK) {
		goto out;
	}
	crypto_sha256(key, secret, sizeof(secret));
	s.person_id      = rec->id;
	s.org_id         = rec->org_id;
	s.org_version    = org_version;
	s.person_version = rec->version;
	s.created_at_ms  = (uint64_t) now_ms;
	s.last_used_ms   = (uint64_t) now_ms;
	s.expires_at_ms  = (uint64_t) (now_ms + ps->p_max_ms);
	*expires         = now_ms + ps->p_max_ms;
	st               = store_put_msg(txn, ps->p_sessions, key, sizeof(key), &s.base);
out:
	crypto_wipe(secret, sizeof(secret));
	if (st != HV_OK) {
		crypto_wipe(out, outsz);
	}
	return (st);
}

/* Deletes, in txn, the sessions of person id (id not NULL), or those that ended by time at
 * now_ms (id NULL: the sweep at each sign-in, so that sessions nobody uses again do not stay). */
static hv_status
sessions_delete(people_service *ps, store_txn *txn, const uint8_t *id, int64_t now_ms)
{
	store_cursor *c = NULL;
	const void   *v;
	size_t        vl;
	hv_status     st;

	if ((st = store_cursor_open(txn, ps->p_sessions, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl); st == HV_OK;) {
		Haven__People__V1__SessionRecord *s =
		    haven__people__v1__session_record__unpack(NULL, vl, v);
		/* A record that does not decode is no session anyone can use: dropped too. */
		bool drop = s == NULL ||
		    (id != NULL && s->person_id.len == PEOPLE_ID_LEN &&
		        memcmp(s->person_id.data, id, PEOPLE_ID_LEN) == 0) ||
		    (id == NULL &&
		        ((uint64_t) now_ms >= s->expires_at_ms ||
		            (uint64_t) now_ms >= s->last_used_ms + (uint64_t) ps->p_idle_ms));

		haven__people__v1__session_record__free_unpacked(s, NULL);
		if (drop && (st = store_cursor_del(c)) != HV_OK) {
			break;
		}
		st = store_cursor_next(c, NULL, NULL, &v, &vl);
	}
	store_cursor_close(c);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

hv_status
people_sessions_end(people_service *ps, store_txn *txn, const uint8_t id[PEOPLE_ID_LEN])
{
	return (sessions_delete(ps, txn, id, 0));
}

hv_status
people_sessions_sweep(people_service *ps, store_txn *txn, int64_t now_ms)
{
	return (sessions_delete(ps, txn, NULL, now_ms));
}

typedef struct key_arg {
	people_service *ps;
	uint8_t         key[CRYPTO_SHA256_LEN];
	uint64_t        used_ms; /* touch: the new last use; 0: delete */
	bool            found;
} key_arg;

static hv_status
session_del_fn(store_txn *txn, void *arg)
{
	key_arg  *k  = arg;
	hv_status st = store_del(txn, k->ps->p_sessions, k->key, sizeof(k->key));

	k->found = st == HV_OK;
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

static hv_status
session_touch_fn(store_txn *txn, void *arg)
{
	key_arg          *k = arg;
	ProtobufCMessage *m = NULL;
	hv_status         st;

	st = store_get_msg(txn, k->ps->p_sessions, k->key, sizeof(k->key),
	    &haven__people__v1__session_record__descriptor, NULL, &m);
	if (st == HV_NOT_FOUND) {
		return (HV_OK); /* ended meanwhile */
	}
	if (st == HV_OK) {
		Haven__People__V1__SessionRecord *s = (void *) m;
		if (s->last_used_ms < k->used_ms) {
			s->last_used_ms = k->used_ms;
			st = store_put_msg(txn, k->ps->p_sessions, k->key, sizeof(k->key), m);
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return (st);
}

hv_status
people_session_end(people_service *ps, const char *token, bool *found)
{
	key_arg   k = { .ps = ps };
	hv_status st;

	*found = false;
	if (token_key(token, k.key) != HV_OK) {
		return (HV_OK);
	}
	st     = store_write(ps->p_store, session_del_fn, &k);
	*found = k.found;
	return (st);
}

/* Checks a session record against its person at now_ms; fills out. */
static hv_status
session_check(people_service *ps, store_txn *txn, const Haven__People__V1__SessionRecord *s,
    int64_t now_ms, auth_session *out, const char **why)
{
	Haven__People__V1__PersonRecord *p = NULL;
	hv_status                        st;

	if (now_ms < 0 || (uint64_t) now_ms >= s->expires_at_ms) {
		*why = "expired";
		return (HV_UNAUTHENTICATED);
	}
	if ((uint64_t) now_ms >= s->last_used_ms + (uint64_t) ps->p_idle_ms) {
		*why = "idle too long";
		return (HV_UNAUTHENTICATED);
	}
	if (s->person_id.len != PEOPLE_ID_LEN) {
		*why = "damaged";
		return (HV_UNAUTHENTICATED);
	}
	if ((st = people_get(ps, txn, s->person_id.data, &p)) != HV_OK) {
		*why = "person gone";
		return (st == HV_NOT_FOUND ? HV_UNAUTHENTICATED : st);
	}
	st = HV_UNAUTHENTICATED;
	if (!p->enabled) {
		*why = "person disabled";
	} else if (p->version != s->person_version || strcmp(p->org_id, s->org_id) != 0) {
		*why = "person changed";
	} else if (strlen(p->org_id) >= sizeof(out->org_id)) {
		*why = "damaged";
	} else {
		memcpy(out->org_id, p->org_id, strlen(p->org_id) + 1);
		out->org_version = s->org_version;
		people_id_format(p->id.data, out->person_id);
		out->person_role = (rpc_person_role) p->role;
		st               = HV_OK;
	}
	haven__people__v1__person_record__free_unpacked(p, NULL);
	return (st);
}

/* How often last use is written: once a minute, or a quarter of a shorter idle limit. */
static uint64_t
touch_every(const people_service *ps)
{
	return (
	    (uint64_t) (ps->p_idle_ms / 4 < TOUCH_EVERY_MS ? ps->p_idle_ms / 4 : TOUCH_EVERY_MS));
}

hv_status
people_session_verify(void *arg, const char *token, int64_t now_ms, bool use, auth_session *out)
{
	people_service                   *ps  = arg;
	Haven__People__V1__SessionRecord *s   = NULL;
	ProtobufCMessage                 *m   = NULL;
	store_txn                        *txn = NULL;
	key_arg                           k   = { .ps = ps };
	const char                       *why = "unknown";
	hv_status                         st;

	memset(out, 0, sizeof(*out));
	if (ps == NULL || (st = token_key(token, k.key)) != HV_OK) {
		return (HV_UNAUTHENTICATED);
	}
	if ((st = store_read_begin(ps->p_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_get_msg(txn, ps->p_sessions, k.key, sizeof(k.key),
	    &haven__people__v1__session_record__descriptor, NULL, &m);
	if (st == HV_OK) {
		s         = (void *) m;
		st        = session_check(ps, txn, s, now_ms, out, &why);
		k.used_ms = (uint64_t) now_ms;
		if (st == HV_OK &&
		    (!use || (uint64_t) now_ms < s->last_used_ms + touch_every(ps))) {
			k.used_ms = 0; /* no person's act, or recent enough: no write */
		}
	} else if (st == HV_NOT_FOUND) {
		st = HV_UNAUTHENTICATED;
	}
	store_read_end(txn);
	if (s != NULL && st == HV_UNAUTHENTICATED) {
		/* Expired, idle or revoked: it never becomes valid again. */
		(void) store_write(ps->p_store, session_del_fn, &k);
	} else if (st == HV_OK && k.used_ms != 0) {
		st = store_write(ps->p_store, session_touch_fn, &k);
	}
	if (st != HV_OK) {
		memset(out, 0, sizeof(*out));
		log_debug("people: session refused: %s", why);
	}
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return (st);
}
