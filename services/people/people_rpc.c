/*
 * people_rpc.c - haven.people.v1.People: the handlers (who may manage whom: may_manage), the
 * conversion of records to replies, and registration with the server, its metric and auth's
 * session verifier.
 *
 * Replies carry login and display names to the operator and the organisation's admins only;
 * error messages and log lines carry ids, never names, passwords, codes or secrets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "haven/ids.h"
#include "haven/log.h"
#include "haven/metrics.h"
#include "haven/text.h"
#include "people_internal.h"

/* ---- who may manage whom ----------------------------------------------------------------- */

/* The operator manages everyone's people; an org admin (a person) its own organisation's.
 * A certificate's session never: a stolen key must not make logins that outlive it. */
static hv_status
may_manage(rpc_call *call, const char *org_id)
{
	const rpc_caller *c = rpc_call_caller(call);

	if (c->role == RPC_ROLE_OPERATOR) {
		return (HV_OK);
	}
	if (c->person.id[0] == '\0') {
		return (rpc_call_error(call, HV_PERMISSION_DENIED,
		    "people are managed by the operator or an organisation's admin signed in as a "
		    "person, not with a certificate"));
	}
	if (c->person.role != RPC_PERSON_ORG_ADMIN) {
		return (rpc_call_error(call, HV_PERMISSION_DENIED,
		    "only an organisation's admin manages its people"));
	}
	if (strcmp(c->org_id, org_id) != 0) {
		return (rpc_call_error(call, HV_PERMISSION_DENIED,
		    "the people of another organisation are not yours to manage"));
	}
	return (HV_OK);
}

/* ---- replies -------------------------------------------------------------------------- */

/* An opened field as a string in the call's arena; NULL when it does not open. */
static char *
field_str(people_service *ps, rpc_call *call, const Haven__People__V1__PersonRecord *rec,
    const char *field, const ProtobufCBinaryData *sealed)
{
	char  *out;
	size_t n = 0;

	if (sealed->len < PEOPLE_SEAL_OVERHEAD ||
	    (out = rpc_call_alloc(call, sealed->len - PEOPLE_SEAL_OVERHEAD + 1)) == NULL ||
	    people_open_field(ps, rec->id.data, field, sealed, (uint8_t *) out,
	        sealed->len - PEOPLE_SEAL_OVERHEAD, &n) != HV_OK) {
		return (NULL);
	}
	out[n] = '\0';
	return (out);
}

/* A record as a Person of the reply; NULL after setting the error. */
static Haven__People__V1__Person *
person_out(people_service *ps, rpc_call *call, const Haven__People__V1__PersonRecord *rec)
{
	Haven__People__V1__Person *p = rpc_call_alloc(call, sizeof(*p));
	char                       folded[PEOPLE_LOGIN_MAX + 1];
	uint8_t                    nkey[1 + CRYPTO_HMAC_LEN];

	if (p == NULL) {
		rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory");
		return (NULL);
	}
	haven__people__v1__person__init(p);
	p->id = rpc_call_alloc(call, RPC_PERSON_ID_MAX);
	if (p->id == NULL || (p->org_id = rpc_call_strdup(call, rec->org_id)) == NULL) {
		rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory");
		return (NULL);
	}
	people_id_format(rec->id.data, p->id);
	p->login        = field_str(ps, call, rec, "login", &rec->login_sealed);
	p->display_name = field_str(ps, call, rec, "display", &rec->display_sealed);
	if (p->login == NULL || p->display_name == NULL) {
		log_error("people: person %s: a sealed field does not open", p->id);
		rpc_call_error(call, HV_DATA_LOSS, "person %s: its record is damaged", p->id);
		return (NULL);
	}
	p->role          = rec->role;
	p->enabled       = rec->enabled;
	p->created_at_ms = rec->created_at_ms;
	p->version       = rec->version;
	if (people_login_fold(p->login, folded)) {
		people_name_throttle_key(ps, folded, nkey);
		p->locked = people_name_locked(ps, nkey, ps->p_now_ms());
	}
	crypto_wipe(folded, sizeof(folded));
	return (p);
}

/* A fresh TOTP secret: sealed into rec->totp_sealed (buf holds it) and its URI for account. */
static hv_status
new_second_factor(people_service *ps, rpc_call *call, Haven__People__V1__PersonRecord *rec,
    const char *account, uint8_t sealed[CRYPTO_TOTP_SECRET_LEN + PEOPLE_SEAL_OVERHEAD], char **uri)
{
	uint8_t   secret[CRYPTO_TOTP_SECRET_LEN];
	hv_status st;

	if ((*uri = rpc_call_alloc(call, CRYPTO_OTPAUTH_URI_MAX)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if ((st = crypto_random(secret, sizeof(secret))) == HV_OK &&
	    (st = people_seal(ps, rec->id.data, "totp", secret, sizeof(secret), sealed)) == HV_OK) {
		st = crypto_otpauth_uri(*uri, CRYPTO_OTPAUTH_URI_MAX, account, secret,
		    sizeof(secret));
	}
	crypto_wipe(secret, sizeof(secret));
	rec->totp_sealed.data = sealed;
	rec->totp_sealed.len  = CRYPTO_TOTP_SECRET_LEN + PEOPLE_SEAL_OVERHEAD;
	rec->totp_last_step   = 0;
	return (st);
}

static const char *
password_bad(const char *pw)
{
	size_t n = pw != NULL ? strlen(pw) : 0;

	if (n < PEOPLE_PASSWORD_MIN || n > CRYPTO_PASSWORD_MAX) {
		return ("password must be 12 to 1024 bytes");
	}
	return (NULL);
}

/* ---- CreatePerson ---------------------------------------------------------------------- */

typedef struct create_arg {
	people_service                  *ps;
	rpc_call                        *call;
	Haven__People__V1__PersonRecord *rec;
	uint8_t                          name_key[CRYPTO_HMAC_LEN];
	uint64_t                         in_org;
} create_arg;

static hv_status
count_org(people_service *ps, store_txn *txn, const char *org_id, uint64_t *n)
{
	store_cursor *c = NULL;
	const void   *v;
	size_t        vl;
	hv_status     st;

	*n = 0;
	if ((st = store_cursor_open(txn, ps->p_persons, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, &v, &vl)) {
		Haven__People__V1__PersonRecord *r =
		    haven__people__v1__person_record__unpack(NULL, vl, v);
		if (r != NULL && strcmp(r->org_id, org_id) == 0) {
			(*n)++;
		}
		haven__people__v1__person_record__free_unpacked(r, NULL);
	}
	store_cursor_close(c);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

static hv_status
create_fn(store_txn *txn, void *arg)
{
	create_arg *a = arg;
	hv_status   st;

	if ((st = count_org(a->ps, txn, a->rec->org_id, &a->in_org)) != HV_OK) {
		return (st);
	}
	if (a->in_org >= PEOPLE_PER_ORG_MAX) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	if ((st = store_put_new(txn, a->ps->p_logins, a->name_key, sizeof(a->name_key),
	         a->rec->id.data, PEOPLE_ID_LEN)) != HV_OK) {
		return (st);
	}
	if ((st = people_put(a->ps, txn, a->rec)) != HV_OK) {
		return (st);
	}
	return (people_audit_change(a->ps, txn, a->call, a->rec->id.data));
}

/* The request's fields: NULL when well-formed, else the problem. */
static const char *
create_bad(const Haven__People__V1__CreatePersonRequest *req, char folded[PEOPLE_LOGIN_MAX + 1])
{
	const char *bad;

	if (!ids_valid(req->org_id)) {
		return ("org_id must be 1 to 63 characters of a-z 0-9 . _ -");
	}
	if ((bad = people_login_qualify(req->login, req->org_id, folded)) != NULL) {
		return (bad);
	}
	if (!text_free_ok(req->display_name, 1, PEOPLE_DISPLAY_MAX)) {
		return ("display_name must be 1 to 128 bytes of text without control characters");
	}
	if (req->role < HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_ORG_ADMIN ||
	    req->role > HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_VIEWER) {
		return ("role must be org admin, case worker or viewer");
	}
	return (password_bad(req->password));
}

static hv_status
handle_create(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	people_service                               *ps  = svc;
	const Haven__People__V1__CreatePersonRequest *req = (const void *) msg;
	Haven__People__V1__CreatePersonResponse      *resp;
	Haven__People__V1__PersonRecord               rec = HAVEN__PEOPLE__V1__PERSON_RECORD__INIT;
	create_arg                                    a   = { .ps = ps, .call = call, .rec = &rec };
	char                                          folded[PEOPLE_LOGIN_MAX + 1];
	char                                          pwhash[CRYPTO_PWHASH_MAX];
	uint8_t                                       id[PEOPLE_ID_LEN];
	uint8_t     login_s[PEOPLE_LOGIN_MAX + PEOPLE_SEAL_OVERHEAD];
	uint8_t     display_s[PEOPLE_DISPLAY_MAX + PEOPLE_SEAL_OVERHEAD];
	uint8_t     totp_s[CRYPTO_TOTP_SECRET_LEN + PEOPLE_SEAL_OVERHEAD];
	auth_org    org;
	const char *bad;
	char        idhex[RPC_PERSON_ID_MAX];
	hv_status   st;

	if ((bad = create_bad(req, folded)) != NULL) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "%s", bad));
	}
	if ((st = may_manage(call, req->org_id)) != HV_OK) {
		return (st);
	}
	if ((st = auth_lookup_org(ps->p_auth, req->org_id, &org)) != HV_OK) {
		return (rpc_call_error(call, st == HV_NOT_FOUND ? HV_NOT_FOUND : st,
		    "organisation %s: %s", req->org_id,
		    st == HV_NOT_FOUND ? "not in the directory" : "the directory cannot be read"));
	}
	auth_org_release(&org);
	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL ||
	    (st = crypto_random(id, sizeof(id))) != HV_OK) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	haven__people__v1__create_person_response__init(resp);
	rec.id.data       = id;
	rec.id.len        = sizeof(id);
	rec.org_id        = req->org_id;
	rec.role          = req->role;
	rec.enabled       = true;
	rec.created_at_ms = (uint64_t) ps->p_now_ms();
	rec.version       = 1;
	rec.pwhash        = pwhash;
	rec.login_sealed = (ProtobufCBinaryData) { strlen(folded) + PEOPLE_SEAL_OVERHEAD, login_s };
	rec.display_sealed =
	    (ProtobufCBinaryData) { strlen(req->display_name) + PEOPLE_SEAL_OVERHEAD, display_s };
	people_login_key(ps, folded, a.name_key);
	if ((st = people_pwhash(ps, pwhash, req->password, strlen(req->password))) != HV_OK ||
	    (st = people_seal(ps, id, "login", folded, strlen(folded), login_s)) != HV_OK ||
	    (st = people_seal(ps, id, "display", req->display_name, strlen(req->display_name),
	         display_s)) != HV_OK ||
	    (st = new_second_factor(ps, call, &rec, folded, totp_s, &resp->otpauth_uri)) != HV_OK) {
		st = st == HV_RESOURCE_EXHAUSTED
		    ? rpc_call_error(call, st, "too many password hashes at once: try again")
		    : rpc_call_error(call, HV_INTERNAL, "cannot make the person's credentials");
		goto out;
	}
	if ((st = store_write(ps->p_store, create_fn, &a)) != HV_OK) {
		st = st == HV_ALREADY_EXISTS
		    ? rpc_call_error(call, st, "organisation %s has that login name already",
		          req->org_id)
		    : st == HV_RESOURCE_EXHAUSTED
		    ? rpc_call_error(call, st, "organisation %s has %d people already", req->org_id,
		          PEOPLE_PER_ORG_MAX)
		    : rpc_call_error(call, st, "cannot store the person");
		goto out;
	}
	if ((resp->person = person_out(ps, call, &rec)) == NULL) {
		st = HV_INTERNAL;
		goto out;
	}
	people_id_format(id, idhex);
	log_info("people: person %s added to %s", idhex, req->org_id);
	*reply = &resp->base;
	st     = HV_OK;
out:
	crypto_wipe(folded, sizeof(folded));
	crypto_wipe(pwhash, sizeof(pwhash));
	return (st);
}

/* ---- DisablePerson, ResetPerson, SetPersonRole -------------------------------------------- */

typedef struct change_arg {
	people_service               *ps;
	rpc_call                     *call;
	uint8_t                       id[PEOPLE_ID_LEN];
	bool                          disable;
	Haven__People__V1__PersonRole role;      /* UNSPECIFIED: keep */
	bool                          unchanged; /* the role asked for was the person's already */
	const char                   *pwhash;    /* NULL: keep */
	bool                          new_totp, enable;
	char                         *uri; /* the new second factor's, in the call */
	uint8_t                       totp_s[CRYPTO_TOTP_SECRET_LEN + PEOPLE_SEAL_OVERHEAD];
	Haven__People__V1__PersonRecord *rec; /* the record as written; freed by the caller */
} change_arg;

/* Whether organisation org has an enabled org admin other than person id: *found. Counted in
 * the change's own write transaction, so that two admins who demote or disable each other at
 * once are serialised by the store and the second sees the first's change. */
static hv_status
other_admin(people_service *ps, store_txn *txn, const char *org, const uint8_t id[PEOPLE_ID_LEN],
    bool *found)
{
	store_cursor *c = NULL;
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st;

	*found = false;
	if ((st = store_cursor_open(txn, ps->p_persons, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); st == HV_OK && !*found;
	     st = store_cursor_next(c, &k, &kl, &v, &vl)) {
		Haven__People__V1__PersonRecord *r;

		if (kl == PEOPLE_ID_LEN && memcmp(k, id, PEOPLE_ID_LEN) == 0) {
			continue;
		}
		if ((r = haven__people__v1__person_record__unpack(NULL, vl, v)) == NULL) {
			st = HV_DATA_LOSS; /* an unreadable record might be the other admin */
			break;
		}
		*found = r->enabled &&
		    r->role == HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_ORG_ADMIN &&
		    strcmp(r->org_id, org) == 0;
		haven__people__v1__person_record__free_unpacked(r, NULL);
	}
	store_cursor_close(c);
	return (st == HV_NOT_FOUND || st == HV_OK ? HV_OK : st);
}

/* The rules of a change the caller may make: a role change to the role the person has is
 * nothing to do (a->unchanged), and an organisation keeps an enabled org admin, so that
 * its people are never left without one who manages them (only the operator could then). */
static hv_status
change_allowed(change_arg *a, store_txn *txn, const Haven__People__V1__PersonRecord *rec)
{
	const Haven__People__V1__PersonRole admin =
	    HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_ORG_ADMIN;
	const Haven__People__V1__PersonRole keep =
	    HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_UNSPECIFIED;
	bool      found;
	hv_status st;

	if (a->role != keep && a->role == rec->role) {
		a->unchanged = true;
		return (HV_OK);
	}
	if (!rec->enabled || rec->role != admin ||
	    (!a->disable && (a->role == keep || a->role == admin))) {
		return (HV_OK); /* no enabled admin is taken away */
	}
	if ((st = other_admin(a->ps, txn, rec->org_id, a->id, &found)) != HV_OK) {
		return (st == HV_DATA_LOSS
		        ? rpc_call_error(a->call, st, "a person's record is damaged")
		        : st);
	}
	if (!found) {
		return (rpc_call_error(a->call, HV_FAILED_PRECONDITION,
		    "organisation %s must keep an enabled admin", rec->org_id));
	}
	return (HV_OK);
}

/* Reads the person, checks the caller may manage it and the change is allowed, changes it and
 * ends its sessions. A change of any kind adds to the version, which ends the person's
 * sessions too. */
static hv_status
change_fn(store_txn *txn, void *arg)
{
	change_arg                      *a   = arg;
	Haven__People__V1__PersonRecord *rec = NULL;
	char                            *old_hash;
	ProtobufCBinaryData              old_totp;
	hv_status                        st;

	haven__people__v1__person_record__free_unpacked(a->rec, NULL); /* from an earlier run */
	a->rec = NULL;
	if ((st = people_get(a->ps, txn, a->id, &rec)) != HV_OK) {
		/* Nobody by that id: the operator hears so; anyone else is refused in the words of
		 * another organisation's person (may_manage of no organisation), so that no answer
		 * tells whether a person id exists. */
		if (st == HV_NOT_FOUND && rpc_call_caller(a->call)->role != RPC_ROLE_OPERATOR) {
			return (may_manage(a->call, ""));
		}
		return (st == HV_NOT_FOUND ? rpc_call_error(a->call, st, "no such person") : st);
	}
	a->rec       = rec;
	a->unchanged = false;
	if ((st = may_manage(a->call, rec->org_id)) != HV_OK ||
	    (st = change_allowed(a, txn, rec)) != HV_OK || a->unchanged) {
		return (st); /* unchanged: nothing written, the sessions live on */
	}
	old_hash = rec->pwhash;
	old_totp = rec->totp_sealed;
	rec->version++;
	rec->enabled = a->disable ? false : (a->enable ? true : rec->enabled);
	if (a->role != HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_UNSPECIFIED) {
		rec->role = a->role;
	}
	if (a->pwhash != NULL) {
		rec->pwhash = (char *) a->pwhash;
	}
	if (a->new_totp) {
		char   login[PEOPLE_LOGIN_MAX + 1];
		size_t n = 0;

		/* The authenticator app shows the login name beside the codes. */
		if ((st = people_open_field(a->ps, a->id, "login", &rec->login_sealed,
		         (uint8_t *) login, PEOPLE_LOGIN_MAX, &n)) == HV_OK) {
			login[n] = '\0';
			st = new_second_factor(a->ps, a->call, rec, login, a->totp_s, &a->uri);
		}
		crypto_wipe(login, sizeof(login));
		if (st != HV_OK) {
			st = rpc_call_error(a->call, HV_DATA_LOSS == st ? st : HV_INTERNAL,
			    "cannot make a new second factor");
			goto out;
		}
	}
	st = people_put(a->ps, txn, rec);
out:
	/* The record's own strings go back before it is freed. */
	rec->pwhash      = old_hash;
	rec->totp_sealed = old_totp;
	if (st == HV_OK && (st = people_sessions_end(a->ps, txn, a->id)) == HV_OK) {
		st = people_audit_change(a->ps, txn, a->call, a->id);
	}
	return (st);
}

static hv_status
change_person(rpc_call *call, people_service *ps, const char *person_id, change_arg *a)
{
	hv_status st;

	a->ps   = ps;
	a->call = call;
	if (people_id_parse(person_id, a->id) != 0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "person_id must be 32 lower-case hex characters"));
	}
	st = store_write(ps->p_store, change_fn, a);
	/* The statuses change_fn answered with a message of its own keep it. */
	if (st != HV_OK && st != HV_PERMISSION_DENIED && st != HV_NOT_FOUND && st != HV_DATA_LOSS &&
	    st != HV_INTERNAL && st != HV_FAILED_PRECONDITION) {
		st = rpc_call_error(call, st, "cannot store the change of person %s", person_id);
	}
	return (st);
}

static hv_status
handle_disable(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__People__V1__DisablePersonRequest *req = (const void *) msg;
	Haven__People__V1__DisablePersonResponse      *resp;
	change_arg                                     a = { .disable = true };
	hv_status                                      st;

	if ((st = change_person(call, svc, req->person_id, &a)) == HV_OK) {
		if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL) {
			st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		haven__people__v1__disable_person_response__init(resp);
		if ((resp->person = person_out(svc, call, a.rec)) == NULL) {
			st = HV_INTERNAL;
			goto out;
		}
		log_info("people: person %s disabled, its sessions ended", req->person_id);
		*reply = &resp->base;
	}
out:
	haven__people__v1__person_record__free_unpacked(a.rec, NULL);
	return (st);
}

static hv_status
handle_reset(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	people_service                              *ps  = svc;
	const Haven__People__V1__ResetPersonRequest *req = (const void *) msg;
	Haven__People__V1__ResetPersonResponse      *resp;
	change_arg  a = { .new_totp = req->new_second_factor, .enable = req->enable };
	char        pwhash[CRYPTO_PWHASH_MAX];
	char        folded[PEOPLE_LOGIN_MAX + 1];
	uint8_t     nkey[1 + CRYPTO_HMAC_LEN];
	const char *bad;
	hv_status   st;

	if (req->password != NULL && req->password[0] != '\0') {
		if ((bad = password_bad(req->password)) != NULL) {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT, "%s", bad));
		}
		if ((st = people_pwhash(ps, pwhash, req->password, strlen(req->password))) !=
		    HV_OK) {
			return (rpc_call_error(call, st == HV_RESOURCE_EXHAUSTED ? st : HV_INTERNAL,
			    "cannot hash the password now"));
		}
		a.pwhash = pwhash;
	} else if (!req->new_second_factor && !req->enable) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "nothing to reset: give a password, new_second_factor or enable"));
	}
	if ((st = change_person(call, ps, req->person_id, &a)) != HV_OK) {
		goto out;
	}
	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL) {
		st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	haven__people__v1__reset_person_response__init(resp);
	resp->otpauth_uri = a.uri;
	if ((resp->person = person_out(ps, call, a.rec)) == NULL) {
		st = HV_INTERNAL;
		goto out;
	}
	/* A reset also lifts the back-off of the person's name. */
	if (people_login_fold(resp->person->login, folded)) {
		people_name_throttle_key(ps, folded, nkey);
		people_name_unlock(ps, nkey);
		resp->person->locked = false;
	}
	crypto_wipe(folded, sizeof(folded));
	log_info("people: person %s reset (%s%s%s), its sessions ended", req->person_id,
	    a.pwhash != NULL ? "password " : "", a.new_totp ? "second factor " : "",
	    a.enable ? "enabled" : "");
	*reply = &resp->base;
out:
	crypto_wipe(pwhash, sizeof(pwhash));
	haven__people__v1__person_record__free_unpacked(a.rec, NULL);
	return (st);
}

static const char *
role_word(Haven__People__V1__PersonRole r)
{
	switch (r) {
	case HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_ORG_ADMIN:
		return ("org admin");
	case HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_CASE_WORKER:
		return ("case worker");
	case HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_VIEWER:
		return ("viewer");
	default:
		return ("no role");
	}
}

static hv_status
handle_set_role(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	const Haven__People__V1__SetPersonRoleRequest *req = (const void *) msg;
	Haven__People__V1__SetPersonRoleResponse      *resp;
	change_arg                                     a = { .role = req->role };
	hv_status                                      st;

	if (req->role < HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_ORG_ADMIN ||
	    req->role > HAVEN__PEOPLE__V1__PERSON_ROLE__PERSON_ROLE_VIEWER) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "role must be org admin, case worker or viewer"));
	}
	if ((st = change_person(call, svc, req->person_id, &a)) == HV_OK) {
		if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL) {
			st = rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		haven__people__v1__set_person_role_response__init(resp);
		if ((resp->person = person_out(svc, call, a.rec)) == NULL) {
			st = HV_INTERNAL;
			goto out;
		}
		/* ids and the role only: never a login or display name */
		if (a.unchanged) {
			log_info("people: person %s of %s is a %s already: nothing changed",
			    req->person_id, a.rec->org_id, role_word(req->role));
		} else {
			log_info("people: person %s of %s is now a %s, its sessions ended",
			    req->person_id, a.rec->org_id, role_word(req->role));
		}
		*reply = &resp->base;
	}
out:
	haven__people__v1__person_record__free_unpacked(a.rec, NULL);
	return (st);
}

/* ---- ListPeople ------------------------------------------------------------------------- */

static hv_status
handle_list(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	people_service                             *ps  = svc;
	const Haven__People__V1__ListPeopleRequest *req = (const void *) msg;
	Haven__People__V1__ListPeopleResponse      *resp;
	store_txn                                  *txn = NULL;
	store_cursor                               *c   = NULL;
	const void                                 *v;
	size_t                                      vl;
	hv_status                                   st;

	if (!ids_valid(req->org_id)) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "org_id must be 1 to 63 characters of a-z 0-9 . _ -"));
	}
	if ((st = may_manage(call, req->org_id)) != HV_OK) {
		return (st);
	}
	if ((resp = rpc_call_alloc(call, sizeof(*resp))) == NULL ||
	    (resp->people = rpc_call_alloc(call, PEOPLE_PER_ORG_MAX * sizeof(*resp->people))) ==
	        NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	{
		Haven__People__V1__Person **people = resp->people;
		haven__people__v1__list_people_response__init(resp);
		resp->people = people;
	}
	if ((st = store_read_begin(ps->p_store, &txn)) != HV_OK ||
	    (st = store_cursor_open(txn, ps->p_persons, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, &v, &vl); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, &v, &vl)) {
		Haven__People__V1__PersonRecord *r =
		    haven__people__v1__person_record__unpack(NULL, vl, v);
		Haven__People__V1__Person *p = NULL;

		if (r == NULL || r->id.len != PEOPLE_ID_LEN) {
			haven__people__v1__person_record__free_unpacked(r, NULL);
			st = rpc_call_error(call, HV_DATA_LOSS, "a person's record is damaged");
			break;
		}
		if (strcmp(r->org_id, req->org_id) == 0 && resp->n_people < PEOPLE_PER_ORG_MAX) {
			p = person_out(ps, call, r);
			if (p == NULL) {
				haven__people__v1__person_record__free_unpacked(r, NULL);
				st = HV_INTERNAL;
				break;
			}
			resp->people[resp->n_people++] = p;
		}
		haven__people__v1__person_record__free_unpacked(r, NULL);
	}
	if (st == HV_NOT_FOUND) {
		st     = HV_OK;
		*reply = &resp->base;
	}
out:
	store_cursor_close(c);
	store_read_end(txn);
	return (st);
}

/* ---- Login, Logout ---------------------------------------------------------------------- */

static hv_status
handle_login(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	Haven__People__V1__LoginResponse *resp = rpc_call_alloc(call, sizeof(*resp));
	hv_status                         st;

	if (resp == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	haven__people__v1__login_response__init(resp);
	if ((st = people_login(svc, call, (const void *) msg, resp)) == HV_OK) {
		*reply = &resp->base;
	}
	return (st);
}

static hv_status
handle_logout(rpc_call *call, void *svc, const ProtobufCMessage *msg, ProtobufCMessage **reply)
{
	Haven__People__V1__LogoutResponse *resp  = rpc_call_alloc(call, sizeof(*resp));
	const char                        *token = rpc_call_metadata(call, "authorization");
	bool                               found = false;
	hv_status                          st    = HV_OK;

	(void) msg;
	if (resp == NULL) {
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED, "out of memory"));
	}
	haven__people__v1__logout_response__init(resp);
	if (rpc_call_caller(call)->person.id[0] != '\0' && token != NULL) {
		if (strncmp(token, "Bearer ", 7) == 0) {
			token += 7;
		}
		if ((st = people_session_end(svc, token, &found)) != HV_OK) {
			return (rpc_call_error(call, st, "cannot end the session"));
		}
	}
	resp->revoked = found;
	*reply        = &resp->base;
	return (HV_OK);
}

/* ---- registration ---------------------------------------------------------------------- */

static void
people_collect(void *arg, metrics_writer *w)
{
	people_service *ps = arg;

	metrics_family(w, "haven_people_signin_failures_total", METRICS_COUNTER,
	    "Failed sign-ins of people (Login) by cause; callers are told only 'sign-in failed'.");
	for (int i = 0; i < PF_N; i++) {
		metrics_sample(w, "haven_people_signin_failures_total",
		    (double) __atomic_load_n(&ps->p_failures[i], __ATOMIC_RELAXED), "cause",
		    people_cause_names[i], (char *) NULL);
	}
	limit_collect(w, "haven_people_limit_refusals_total", (const char *const[]) { "login" },
	    (limit *const[]) { ps->p_attempts }, 1);
}

hv_status
people_register(people_service *ps, rpc_server *srv)
{
	/* Login is how a person stops being anonymous; Logout any caller may call (it ends only
	 * the caller's own session). The management methods check may_manage in the handler. */
	static const rpc_method_impl impls[] = {
		{ .name = "Login", .handler = handle_login, .roles = RPC_ROLES_ANY },
		{ .name = "Logout", .handler = handle_logout, .roles = RPC_ROLES_AUTHENTICATED },
		{ .name      = "CreatePerson",
		    .handler = handle_create,
		    .roles   = RPC_ROLES_AUTHENTICATED },
		{ .name      = "DisablePerson",
		    .handler = handle_disable,
		    .roles   = RPC_ROLES_AUTHENTICATED },
		{ .name      = "ResetPerson",
		    .handler = handle_reset,
		    .roles   = RPC_ROLES_AUTHENTICATED },
		{ .name      = "SetPersonRole",
		    .handler = handle_set_role,
		    .roles   = RPC_ROLES_AUTHENTICATED },
		{ .name = "ListPeople", .handler = handle_list, .roles = RPC_ROLES_AUTHENTICATED },
	};
	hv_status st;

	if (ps == NULL || srv == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if ((st = rpc_server_add_service(srv, &haven__people__v1__people__descriptor, impls,
	         sizeof(impls) / sizeof(impls[0]), ps)) != HV_OK ||
	    (st = metrics_add_collector(rpc_server_metrics(srv), people_collect, ps)) != HV_OK) {
		return (st);
	}
	auth_set_session_verifier(ps->p_auth, people_session_verify, ps);
	return (HV_OK);
}
