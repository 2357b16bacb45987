/*
 * people_login.c - Login: a login name, a password and a one-time code for a session, with
 * one answer for every wrong part, the same cost for an unknown name, and back-off after
 * failures per name and per source (people.h).
 *
 * Log lines name the cause of a failure and, when the name is a person's, its id; never the
 * name, the password or the code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "haven/log.h"
#include "people_internal.h"

#define BACKOFF_FIRST_MS   30000
#define BACKOFF_MAX_MS     3600000
#define SOURCE_FORGET_MS   3600000 /* a source's count starts again after an hour without failure */
#define LOGIN_STORE_FAILED (-2)
#define LOGIN_BUSY         (-3)

/* ---- throttles ------------------------------------------------------------------------- */

static people_throttle *
throttle_find(people_service *ps, const uint8_t *key, size_t keylen, bool make, int64_t now_ms)
{
	people_throttle *oldest = NULL;

	for (size_t i = 0; i < PEOPLE_THROTTLES; i++) {
		people_throttle *t = &ps->p_throttles[i];
		if (t->pt_keylen == keylen && memcmp(t->pt_key, key, keylen) == 0) {
			return (t);
		}
		/* Free slots first, then the one whose last failure is oldest and not locked. */
		if (oldest == NULL || t->pt_keylen == 0 ||
		    (oldest->pt_keylen != 0 && t->pt_locked_until_ms <= now_ms &&
		        t->pt_last_ms < oldest->pt_last_ms)) {
			oldest = t;
		}
	}
	if (!make) {
		return (NULL);
	}
	memset(oldest, 0, sizeof(*oldest));
	memcpy(oldest->pt_key, key, keylen);
	oldest->pt_keylen = keylen;
	return (oldest);
}

static bool
throttle_locked(people_service *ps, const uint8_t *key, size_t keylen, int64_t now_ms)
{
	people_throttle *t;
	bool             locked;

	pthread_mutex_lock(&ps->p_mu);
	t      = throttle_find(ps, key, keylen, false, now_ms);
	locked = t != NULL && t->pt_locked_until_ms > now_ms;
	pthread_mutex_unlock(&ps->p_mu);
	return (locked);
}

/* One more failure: from the after-th in a row on, a back-off of 30 s doubling up to 1 h. */
static void
throttle_fail(people_service *ps, const uint8_t *key, size_t keylen, uint32_t after, int64_t now_ms)
{
	people_throttle *t;

	pthread_mutex_lock(&ps->p_mu);
	t = throttle_find(ps, key, keylen, true, now_ms);
	if (key[0] == 's' && now_ms - t->pt_last_ms > SOURCE_FORGET_MS) {
		t->pt_failures = 0;
	}
	t->pt_failures++;
	t->pt_last_ms = now_ms;
	if (t->pt_failures >= after) {
		uint32_t over    = t->pt_failures - after;
		int64_t  backoff = over >= 7 ? BACKOFF_MAX_MS : (int64_t) BACKOFF_FIRST_MS << over;
		t->pt_locked_until_ms =
		    now_ms + (backoff < BACKOFF_MAX_MS ? backoff : BACKOFF_MAX_MS);
	}
	pthread_mutex_unlock(&ps->p_mu);
}

static void
throttle_clear(people_service *ps, const uint8_t *key, size_t keylen)
{
	people_throttle *t;

	pthread_mutex_lock(&ps->p_mu);
	if ((t = throttle_find(ps, key, keylen, false, 0)) != NULL) {
		memset(t, 0, sizeof(*t));
	}
	pthread_mutex_unlock(&ps->p_mu);
}

void
people_name_throttle_key(const people_service *ps, const char *folded,
    uint8_t key[1 + CRYPTO_HMAC_LEN])
{
	key[0] = 'n';
	people_login_key(ps, folded, key + 1);
}

bool
people_name_locked(people_service *ps, const uint8_t key[1 + CRYPTO_HMAC_LEN], int64_t now_ms)
{
	return (throttle_locked(ps, key, 1 + CRYPTO_HMAC_LEN, now_ms));
}

void
people_name_unlock(people_service *ps, const uint8_t key[1 + CRYPTO_HMAC_LEN])
{
	throttle_clear(ps, key, 1 + CRYPTO_HMAC_LEN);
}

/* ---- the sign-in ------------------------------------------------------------------------ */

typedef struct login_state {
	people_service                  *ps;
	Haven__People__V1__PersonRecord *rec; /* the name's person; NULL: unknown name */
	uint8_t                          id[PEOPLE_ID_LEN];
	uint64_t                         step; /* the code's step */
	uint64_t                         org_version;
	rpc_role                         org_role;
	char                             rehash[CRYPTO_PWHASH_MAX]; /* "" : keep */
	int64_t                          now_ms;
	char                             token[64];
	int64_t                          expires;
	bool                             replayed;
} login_state;

/* The person a name belongs to, or none (HV_OK with l->rec NULL). */
static hv_status
find_person(login_state *l, const char *folded)
{
	uint8_t     key[CRYPTO_HMAC_LEN];
	store_txn  *txn = NULL;
	const void *v;
	size_t      vl;
	hv_status   st;

	people_login_key(l->ps, folded, key);
	if ((st = store_read_begin(l->ps->p_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_get(txn, l->ps->p_logins, key, sizeof(key), &v, &vl);
	if (st == HV_OK && vl == PEOPLE_ID_LEN) {
		memcpy(l->id, v, PEOPLE_ID_LEN);
		st = people_get(l->ps, txn, l->id, &l->rec);
	} else if (st == HV_OK) {
		st = HV_DATA_LOSS;
	}
	store_read_end(txn);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

/* The second factor: -1 when the code is right (l->step set), else PF_CODE. */
static int
check_code(login_state *l, const char *code)
{
	uint8_t   secret[CRYPTO_OTP_SECRET_MAX];
	size_t    n = 0;
	hv_status st;

	st = people_open_field(l->ps, l->id, "totp", &l->rec->totp_sealed, secret, sizeof(secret),
	    &n);
	if (st == HV_OK) {
		st = crypto_totp_verify(&l->step, secret, n, code, strlen(code), l->now_ms / 1000,
		    l->rec->totp_last_step);
	}
	crypto_wipe(secret, sizeof(secret));
	return (st == HV_OK ? -1 : PF_CODE);
}

/* Whether the organisation may be signed in for now: -1, or PF_ORGANISATION. */
static int
check_org(login_state *l)
{
	auth_org  org;
	hv_status st    = auth_lookup_org(l->ps->p_auth, l->rec->org_id, &org);
	int       cause = PF_ORGANISATION;

	if (st == HV_OK && org.enabled && auth_role_issuable(org.role)) {
		l->org_version = org.version;
		l->org_role    = org.role;
		cause          = -1;
	}
	if (st == HV_OK) {
		auth_org_release(&org);
	}
	return (cause);
}

/* In the write: the person unchanged since it was read, the code not used meanwhile (two
 * sign-ins racing with one code: one wins), then the session. */
static hv_status
login_commit_fn(store_txn *txn, void *arg)
{
	login_state                     *l   = arg;
	Haven__People__V1__PersonRecord *cur = NULL;
	char                            *old = NULL;
	hv_status                        st;

	l->replayed = false;
	if ((st = people_get(l->ps, txn, l->id, &cur)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_ABORTED : st);
	}
	if (cur->version != l->rec->version || !cur->enabled || cur->totp_last_step >= l->step) {
		l->replayed = true;
		st          = HV_ABORTED;
		goto out;
	}
	cur->totp_last_step = l->step;
	old                 = cur->pwhash;
	if (l->rehash[0] != '\0') {
		cur->pwhash = l->rehash;
	}
	st          = people_put(l->ps, txn, cur);
	cur->pwhash = old; /* the unpacked record's own, freed with it */
	if (st != HV_OK) {
		goto out;
	}
	if ((st = people_sessions_sweep(l->ps, txn, l->now_ms)) != HV_OK) {
		goto out;
	}
	st = people_session_new(l->ps, txn, cur, l->org_version, l->now_ms, l->token,
	    sizeof(l->token), &l->expires);
out:
	haven__people__v1__person_record__free_unpacked(cur, NULL);
	return (st);
}

/* Answers a failed sign-in: counted, throttled, logged by cause; the words are always the same. */
static hv_status
login_failed(login_state *l, rpc_call *call, int cause, const uint8_t *nkey, const uint8_t *skey,
    size_t skeylen)
{
	char id[RPC_PERSON_ID_MAX] = "";

	__atomic_fetch_add(&l->ps->p_failures[cause], 1, __ATOMIC_RELAXED);
	throttle_fail(l->ps, nkey, 1 + CRYPTO_HMAC_LEN, PEOPLE_LOCK_AFTER, l->now_ms);
	if (skeylen > 0) {
		throttle_fail(l->ps, skey, skeylen, PEOPLE_SOURCE_LOCK_AFTER, l->now_ms);
	}
	if (l->rec != NULL) {
		people_id_format(l->id, id);
	}
	log_warn("people: sign-in failed: cause %s%s%s", people_cause_names[cause],
	    id[0] != '\0' ? ", person " : "", id);
	return (rpc_call_error(call, HV_UNAUTHENTICATED, "sign-in failed"));
}

/* A request's shape, the same for every person: NULL when well-formed, else the problem. */
static const char *
login_malformed(const Haven__People__V1__LoginRequest *req, char folded[PEOPLE_LOGIN_MAX + 1])
{
	size_t pwlen = req->password != NULL ? strlen(req->password) : 0;

	if (!people_login_fold(req->login, folded)) {
		return ("login must be 3 to 128 characters of a-z 0-9 . _ @ -");
	}
	if (pwlen == 0 || pwlen > CRYPTO_PASSWORD_MAX) {
		return ("password must be 1 to 1024 bytes");
	}
	if (req->code == NULL || strlen(req->code) != CRYPTO_TOTP_DIGITS ||
	    strspn(req->code, "0123456789") != CRYPTO_TOTP_DIGITS) {
		return ("code must be 6 digits");
	}
	return (NULL);
}

/* The cause a sign-in fails for (-1: none; LOGIN_BUSY when too many hash now), after one
 * password hash whatever the name. */
static int
login_check(login_state *l, const Haven__People__V1__LoginRequest *req, bool locked)
{
	const char *hash  = l->rec != NULL ? l->rec->pwhash : l->ps->p_dummy_hash;
	size_t      pwlen = strlen(req->password);
	hv_status   pw    = people_pwverify(l->ps, hash, req->password, pwlen);
	bool        pw_ok = pw == HV_OK;
	int         cause;

	if (pw == HV_RESOURCE_EXHAUSTED) {
		return (LOGIN_BUSY); /* load, not the name: the same for everyone */
	}

	if (locked) {
		return (PF_LOCKED);
	}
	if (l->rec == NULL) {
		return (PF_UNKNOWN_NAME);
	}
	if (!pw_ok) {
		return (PF_PASSWORD);
	}
	if ((cause = check_code(l, req->code)) >= 0) {
		return (cause);
	}
	if (!l->rec->enabled) {
		return (PF_DISABLED);
	}
	if ((cause = check_org(l)) >= 0) {
		return (cause);
	}
	if (crypto_pwhash_needs_rehash(l->rec->pwhash) && l->ps->p_pwhash_ln == CRYPTO_PWHASH_LN &&
	    people_pwhash(l->ps, l->rehash, req->password, pwlen) != HV_OK) {
		l->rehash[0] = '\0'; /* the old hash still verifies: try again next time */
	}
	return (-1);
}

hv_status
people_login(people_service *ps, rpc_call *call, const Haven__People__V1__LoginRequest *req,
    Haven__People__V1__LoginResponse *resp)
{
	const rpc_caller *c    = rpc_call_caller(call);
	const uint8_t    *addr = rpc_call_source(call);
	login_state       l;
	char              folded[PEOPLE_LOGIN_MAX + 1];
	uint8_t           nkey[1 + CRYPTO_HMAC_LEN];
	uint8_t           skey[PEOPLE_THROTTLE_KEY];
	size_t            skeylen;
	const char       *bad;
	int               cause;
	hv_status         st;

	memset(&l, 0, sizeof(l));
	l.ps     = ps;
	l.now_ms = ps->p_now_ms();
	if ((bad = login_malformed(req, folded)) != NULL) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "%s", bad));
	}
	/* Attempts from one client address, before any work (limit.h; unknown: no limit here,
	 * the hashing slots below bound everyone together). */
	if (limit_take(ps->p_attempts, addr) != LIMIT_OK) {
		crypto_wipe(folded, sizeof(folded));
		log_warn("people: sign-in refused: too many attempts from one address");
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "too many sign-in attempts from this address: try again in a minute"));
	}
	people_name_throttle_key(ps, folded, nkey);
	/* The source: what the server can tell of the caller. A caller with no organisation
	 * (anonymous) is its client address when the transport knows it, else no source of its
	 * own: one bucket for every anonymous caller would let anyone lock everyone out. Then
	 * only the name is throttled. */
	skeylen = 0;
	if (c->org_id[0] != '\0') {
		skeylen = (size_t) snprintf((char *) skey, sizeof(skey), "s%d:%s",
		    (int) c->transport, c->org_id);
		skeylen = skeylen < sizeof(skey) ? skeylen : sizeof(skey) - 1;
	} else if (addr != NULL && sizeof(skey) >= 2 + LIMIT_SOURCE_LEN) {
		/* 's' (forgotten after an hour without failure, as the others), 0xff (never in an
		 * organisation's text key), the address's keyed hash */
		skey[0] = 's';
		skey[1] = 0xff;
		memcpy(skey + 2, addr, LIMIT_SOURCE_LEN);
		skeylen = 2 + LIMIT_SOURCE_LEN;
	}
	if ((st = find_person(&l, folded)) != HV_OK) {
		crypto_wipe(folded, sizeof(folded));
		log_error("people: sign-in: the store failed (%s)", hv_status_name(st));
		return (rpc_call_error(call, st, "sign-in failed: the store cannot be read"));
	}
	crypto_wipe(folded, sizeof(folded));
	cause = login_check(&l, req,
	    throttle_locked(ps, nkey, sizeof(nkey), l.now_ms) ||
	        (skeylen > 0 && throttle_locked(ps, skey, skeylen, l.now_ms)));
	if (cause == -1 && (st = store_write(ps->p_store, login_commit_fn, &l)) != HV_OK) {
		cause = l.replayed ? PF_CODE : LOGIN_STORE_FAILED;
	}
	if (cause == LOGIN_BUSY) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "too many sign-ins at once: try again in a moment");
	} else if (cause == LOGIN_STORE_FAILED) {
		st = rpc_call_error(call, st, "sign-in failed: cannot store the session");
	} else if (cause >= 0) {
		st = login_failed(&l, call, cause, nkey, skey, skeylen);
	} else {
		throttle_clear(ps, nkey, sizeof(nkey));
		st = HV_OK;
	}
	if (st == HV_OK) {
		if ((resp->person_id = rpc_call_alloc(call, RPC_PERSON_ID_MAX)) != NULL) {
			people_id_format(l.id, resp->person_id);
		}
		resp->token          = rpc_call_strdup(call, l.token);
		resp->expires_at_ms  = (uint64_t) l.expires;
		resp->idle_timeout_s = (uint32_t) (ps->p_idle_ms / 1000);
		resp->org_id         = rpc_call_strdup(call, l.rec->org_id);
		resp->role           = l.rec->role;
		resp->org_role       = (char *) rpc_role_name(l.org_role);
		if (resp->token == NULL || resp->org_id == NULL || resp->person_id == NULL) {
			st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory");
		} else {
			log_info("people: person %s signed in", resp->person_id);
		}
	}
	crypto_wipe(l.token, sizeof(l.token));
	crypto_wipe(l.rehash, sizeof(l.rehash));
	if (l.rec != NULL) {
		haven__people__v1__person_record__free_unpacked(l.rec, NULL);
	}
	return (st);
}
