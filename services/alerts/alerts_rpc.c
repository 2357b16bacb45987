/*
 * alerts_rpc.c - haven.alerts.v1.Alerts: an organisation's delivery channels (SetChannels,
 * GetChannels; TestChannels is alerts_probe.c) and the WatchEvents long-poll, with the checks of
 * what a caller may send and see. Scope (docs/authority.md): the operator and admins act on any
 * organisation, every other organisation on its own only; may_act is the one place that decides it.
 */
#include "alerts_internal.h"

#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/ids.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define R_ALERTS RPC_ROLES_AUTHENTICATED

/* ---- checks ------------------------------------------------------------------------------- */

bool
alerts_email_ok(const char *s)
{
	size_t      n  = strlen(s);
	const char *at = strchr(s, '@');

	if (n < 3 || n > ALERTS_EMAIL_MAX || at == NULL || at == s || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char) s[i];

		if (c <= ' ' || c >= 0x7f || strchr("<>,;:\"\\()[]", c) != NULL) {
			return (false);
		}
	}
	return (true);
}

static bool
loopback(const char *host)
{
	return (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
	    strncmp(host, "127.", 4) == 0);
}

bool
alerts_url_ok(const char *url, bool allow_plain_loopback, char *err, size_t errsz)
{
	CURLU *u      = curl_url();
	char  *scheme = NULL, *host = NULL, *user = NULL;
	bool   ok = false;

	if (u == NULL) {
		snprintf(err, errsz, "out of memory");
		return (false);
	}
	if (strlen(url) > ALERTS_URL_MAX) {
		snprintf(err, errsz, "webhook_url is longer than %d bytes", ALERTS_URL_MAX);
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(err, errsz, "webhook_url is not a URL");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		snprintf(err, errsz, "webhook_url must not carry a user name or password");
		goto out;
	}
	if (strcmp(scheme, "https") != 0 &&
	    !(strcmp(scheme, "http") == 0 && allow_plain_loopback && loopback(host))) {
		snprintf(err, errsz,
		    allow_plain_loopback
		        ? "webhook_url must be https:// (http:// only to a loopback host)"
		        : "webhook_url must be https://");
		goto out;
	}
	ok = true;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_url_cleanup(u);
	return (ok);
}

/* ---- scope -------------------------------------------------------------------------------- */

/* Which organisation the call acts on: the operator and admins any (the operator must name
 * one), everyone else its own. The organisation must be in the directory. The one place
 * that decides the scope of every Alerts method. */
hv_status
alerts_may_act(alerts_service *as, rpc_call *call, const char *asked, char org[CAP_ID_MAX])
{
	const rpc_caller *c   = rpc_call_caller(call);
	bool              any = c->role == RPC_ROLE_OPERATOR || c->role == RPC_ROLE_ADMIN;

	if (asked[0] == '\0') {
		if (c->org_id[0] == '\0') {
			return (rpc_call_error(call, HV_INVALID_ARGUMENT,
			    "org_id is required: the operator acts for no organisation of its "
			    "own"));
		}
		asked = c->org_id;
	}
	if (!ids_valid(asked) || strlen(asked) >= CAP_ID_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "org_id must be 1..63 bytes of [a-z0-9._-]"));
	}
	if (!any && strcmp(asked, c->org_id) != 0) {
		return (rpc_call_error(call, HV_PERMISSION_DENIED,
		    "only the operator and admins act on another organisation's alerts"));
	}
	if (cap_org_role(as->as_cap, asked) == 0) {
		return (rpc_call_error(call, HV_NOT_FOUND, "no enabled organisation %s", asked));
	}
	snprintf(org, CAP_ID_MAX, "%s", asked);
	return (HV_OK);
}

hv_status
alerts_may_configure(rpc_call *call)
{
	/* Where the organisation's alerts go is its admin's decision: a person signed in for it
	 * must be its org admin (a case worker could otherwise send them to an address of its
	 * own); its certificate's session, the operator and admins may as before. */
	if (rpc_call_caller(call)->person.id[0] != '\0' &&
	    rpc_call_caller(call)->person.role != RPC_PERSON_ORG_ADMIN) {
		return (rpc_call_error(call, HV_PERMISSION_DENIED,
		    "only the organisation's admin sets or tests its alert channels"));
	}
	return (HV_OK);
}

/* ---- SetChannels and GetChannels ------------------------------------------------------------ */

hv_status
alerts_check_channels(const Channels *c, bool allow_private, char *err, size_t errsz)
{
#define BAD(...) (snprintf(err, errsz, __VA_ARGS__), HV_INVALID_ARGUMENT)
	if (c == NULL) {
		return (BAD("channels is required"));
	}
	if (c->n_emails > ALERTS_EMAILS_MAX) {
		return (BAD("at most %d e-mail addresses", ALERTS_EMAILS_MAX));
	}
	for (size_t i = 0; i < c->n_emails; i++) {
		if (!alerts_email_ok(c->emails[i])) {
			return (BAD(
			    "emails[%zu] is not an e-mail address (3..%d bytes, one @, no spaces "
			    "or <>,;:\"()[])",
			    i, ALERTS_EMAIL_MAX));
		}
	}
	if (c->oncall_email[0] != '\0' && !alerts_email_ok(c->oncall_email)) {
		return (BAD("oncall_email is not an e-mail address"));
	}
	if (c->webhook_url[0] == '\0') {
		return (c->webhook_secret.len != 0 ? BAD("webhook_secret without a webhook_url")
		                                   : HV_OK);
	}
	if (!alerts_url_ok(c->webhook_url, allow_private, err, errsz)) {
		return (HV_INVALID_ARGUMENT);
	}
	if (c->webhook_secret.len < ALERTS_SECRET_MIN ||
	    c->webhook_secret.len > ALERTS_SECRET_MAX) {
		return (BAD("webhook_secret must be %d..%d bytes with a webhook_url",
		    ALERTS_SECRET_MIN, ALERTS_SECRET_MAX));
	}
	return (HV_OK);
#undef BAD
}

/* What an answer shows of stored channels: everything but the secret. */
static Channels *
channels_answer(rpc_call *call, const Channels *stored)
{
	Channels *out = rpc_call_alloc(call, sizeof(*out));

	if (out == NULL) {
		return (NULL);
	}
	*out                     = *stored;
	out->has_webhook_secret  = stored->webhook_secret.len > 0;
	out->webhook_secret.data = NULL;
	out->webhook_secret.len  = 0;
	return (out);
}

typedef struct set_job {
	alerts_service *sj_as;
	const char     *sj_org;
	const Channels *sj_in;
	int64_t         sj_now;
	uint64_t        sj_version;
} set_job;

static hv_status
set_fn(store_txn *txn, void *arg)
{
	set_job  *j   = arg;
	Channels *old = NULL;
	Channels  c   = *j->sj_in;
	hv_status st;

	st = store_get_msg(txn, j->sj_as->as_channels, j->sj_org, strlen(j->sj_org),
	    &haven__alerts__v1__channels__descriptor, NULL, (ProtobufCMessage **) &old);
	if (st != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	c.version               = (old != NULL ? old->version : 0) + 1;
	c.updated_ms            = (uint64_t) j->sj_now;
	c.has_webhook_secret    = false;
	c.base.unknown_fields   = NULL;
	c.base.n_unknown_fields = 0;
	if (old != NULL) {
		protobuf_c_message_free_unpacked(&old->base, NULL);
	}
	j->sj_version = c.version;
	return (store_put_msg(txn, j->sj_as->as_channels, j->sj_org, strlen(j->sj_org), &c.base));
}

hv_status
alerts_set_channels(alerts_service *as, const char *org, const Channels *c, uint64_t *version,
    char *err, size_t errsz)
{
	set_job   j = { .sj_as = as, .sj_org = org, .sj_in = c };
	hv_status st;

	Channels  keep;
	Channels *old = NULL;

	if (!ids_valid(org) || strlen(org) >= CAP_ID_MAX) {
		snprintf(err, errsz, "org_id must be 1..63 bytes of [a-z0-9._-]");
		return (HV_INVALID_ARGUMENT);
	}
	/* The same webhook URL without a secret keeps the secret stored with it (the secret is
	 * never shown, so a form cannot send it back); a new URL needs its own. */
	if (c != NULL && c->webhook_url[0] != '\0' && c->webhook_secret.len == 0) {
		store_txn *txn = NULL;

		if ((st = store_read_begin(as->as_store, &txn)) != HV_OK) {
			snprintf(err, errsz, "the channels of %s could not be read", org);
			return (st);
		}
		st = alerts_channels_get(as, txn, org, &old);
		store_read_end(txn);
		if (st != HV_OK) {
			snprintf(err, errsz, "the channels of %s could not be read", org);
			return (st);
		}
		if (old != NULL && strcmp(old->webhook_url, c->webhook_url) == 0) {
			keep                = *c;
			keep.webhook_secret = old->webhook_secret;
			c = j.sj_in = &keep;
		}
	}
	if ((st = alerts_check_channels(c, as->as_allow_private, err, errsz)) != HV_OK) {
		goto out;
	}
	j.sj_now = alerts_now_ms(as);
	if ((st = store_write(as->as_store, set_fn, &j)) != HV_OK) {
		snprintf(err, errsz, "the channels of %s were not stored", org);
		goto out;
	}
	if (version != NULL) {
		*version = j.sj_version;
	}
out:
	if (old != NULL) {
		crypto_wipe(old->webhook_secret.data, old->webhook_secret.len);
		protobuf_c_message_free_unpacked(&old->base, NULL);
	}
	return (st);
}

static hv_status
h_set_channels(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	alerts_service                              *as = svc;
	const Haven__Alerts__V1__SetChannelsRequest *in = (const void *) req;
	char                                         org[CAP_ID_MAX], err[RPC_ERRMSG_MAX];
	uint64_t                                     version = 0;
	Channels                                    *out;
	hv_status                                    st;

	if ((st = alerts_may_act(as, call, in->org_id, org)) != HV_OK) {
		return (st);
	}
	if ((st = alerts_may_configure(call)) != HV_OK) {
		return (st);
	}
	if ((st = alerts_set_channels(as, org, in->channels, &version, err, sizeof(err))) !=
	    HV_OK) {
		return (rpc_call_error(call, st, "%s", err));
	}
	if ((out = channels_answer(call, in->channels)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	out->version            = version;
	out->updated_ms         = (uint64_t) alerts_now_ms(as);
	out->has_webhook_secret = in->channels->webhook_url[0] != '\0'; /* given or kept */
	*reply                  = &out->base;
	return (HV_OK);
}

static hv_status
h_get_channels(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	alerts_service                              *as  = svc;
	const Haven__Alerts__V1__GetChannelsRequest *in  = (const void *) req;
	Channels                                    *c   = NULL, *out;
	store_txn                                   *txn = NULL;
	char                                         org[CAP_ID_MAX];
	hv_status                                    st;

	if ((st = alerts_may_act(as, call, in->org_id, org)) != HV_OK) {
		return (st);
	}
	if ((st = store_read_begin(as->as_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_get_msg(txn, as->as_channels, org, strlen(org),
	    &haven__alerts__v1__channels__descriptor, rpc_call_allocator(call),
	    (ProtobufCMessage **) &c);
	store_read_end(txn);
	if (st == HV_NOT_FOUND) {
		if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		haven__alerts__v1__channels__init(out); /* none configured: an empty answer */
	} else if (st != HV_OK) {
		return (st);
	} else if ((out = channels_answer(call, c)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*reply = &out->base;
	return (HV_OK);
}

/* ---- WatchEvents ------------------------------------------------------------------------------
 */

/* Reads the org's events after `after` into out (up to max). */
static hv_status
watch_read(alerts_service *as, rpc_call *call, const char *org, uint64_t after, size_t max,
    Haven__Alerts__V1__WatchEventsResponse *out)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	uint8_t       key[ALERTS_KEY_MAX], ek[8];
	size_t        pl = strlen(org) + 1, kl;
	const void   *k;
	hv_status     st;

	if (after == UINT64_MAX) {
		return (HV_OK); /* nothing can follow */
	}
	if ((st = store_read_begin(as->as_store, &txn)) != HV_OK) {
		return (st);
	}
	if ((st = store_cursor_open(txn, as->as_by_org, &c)) != HV_OK) {
		goto out;
	}
	kl = alerts_key_org(key, org, after + 1);
	for (st = store_cursor_seek(c, key, kl, &k, &kl, NULL, NULL);
	     st == HV_OK && out->n_events < max; st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		AlertEvent *e = NULL;

		if (kl != pl + 8 || memcmp(k, key, pl) != 0) {
			break;
		}
		st = store_get_msg(txn, as->as_events, ek,
		    alerts_key_be64(ek, hv_get_be64((const uint8_t *) k + pl)),
		    &haven__alerts__v1__alert_event__descriptor, rpc_call_allocator(call),
		    (ProtobufCMessage **) &e);
		if (st == HV_NOT_FOUND) {
			continue; /* pruned meanwhile */
		}
		if (st != HV_OK) {
			goto out;
		}
		out->events[out->n_events++] = e;
		out->cursor                  = e->seq;
	}
	st = st == HV_NOT_FOUND || st == HV_OK ? HV_OK : st;
out:
	store_cursor_close(c);
	store_read_end(txn);
	return (st);
}

/* WatchEvents from_now: no events, only the cursor of the newest one, to watch from. */
static hv_status
watch_from_now(alerts_service *as, rpc_call *call, ProtobufCMessage **reply)
{
	Haven__Alerts__V1__WatchEventsResponse *out;
	store_txn                              *txn = NULL;
	hv_status                               st;

	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__alerts__v1__watch_events_response__init(out);
	if ((st = store_read_begin(as->as_store, &txn)) != HV_OK) {
		return (st);
	}
	st = alerts_last_seq(as, txn, &out->cursor);
	store_read_end(txn);
	*reply = &out->base;
	return (st);
}

static hv_status
h_watch(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	alerts_service                              *as = svc;
	const Haven__Alerts__V1__WatchEventsRequest *in = (const void *) req;
	Haven__Alerts__V1__WatchEventsResponse      *out;
	size_t    max = in->page_size != 0 ? in->page_size : ALERTS_PAGE_DEFAULT;
	char      org[CAP_ID_MAX];
	int64_t   end;
	uint32_t  wait    = in->max_wait_ms;
	bool      counted = false;
	hv_status st;

	if ((st = alerts_may_act(as, call, in->org_id, org)) != HV_OK) {
		return (st);
	}
	if (in->from_now) {
		return (watch_from_now(as, call, reply));
	}
	if (in->page_size > ALERTS_PAGE_MAX) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT, "page_size is at most %d",
		    ALERTS_PAGE_MAX));
	}
	if ((out = rpc_call_alloc(call, sizeof(*out))) == NULL ||
	    (haven__alerts__v1__watch_events_response__init(out),
	        out->events = rpc_call_alloc(call, max * sizeof(*out->events))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	out->cursor = in->after;
	/* Answer a little before the call's deadline, so that the answer still arrives. */
	if (wait > ALERTS_WAIT_MAX_MS) {
		wait = ALERTS_WAIT_MAX_MS;
	}
	if (rpc_call_remaining_ms(call) < wait + 250) {
		wait = rpc_call_remaining_ms(call) > 250 ? rpc_call_remaining_ms(call) - 250 : 0;
	}
	end = hv_clock_mono_ms() + wait;
	if (wait > 0) {
		pthread_mutex_lock(&as->as_lock);
		if (as->as_watchers >= as->as_watchers_max) {
			pthread_mutex_unlock(&as->as_lock);
			return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
			    "%u WatchEvents calls wait already; try again later or with "
			    "max_wait_ms 0",
			    as->as_watchers_max));
		}
		as->as_watchers++;
		counted = true;
		pthread_mutex_unlock(&as->as_lock);
	}
	for (;;) {
		uint64_t wakes;
		int64_t  left;
		bool     woke;

		pthread_mutex_lock(&as->as_lock);
		wakes = as->as_wakes;
		pthread_mutex_unlock(&as->as_lock);
		if ((st = watch_read(as, call, org, in->after, max, out)) != HV_OK ||
		    out->n_events > 0 || (left = end - hv_clock_mono_ms()) <= 0) {
			break;
		}
		/* Woken by an enqueue (not committed yet then) or every 100 ms at the latest. */
		pthread_mutex_lock(&as->as_lock);
		if (as->as_wakes == wakes && !as->as_stopping) {
			struct timespec ts;

			hv_clock_deadline(&ts, (uint64_t) (left < 100 ? left : 100));
			pthread_cond_timedwait(&as->as_cond, &as->as_lock, &ts);
		}
		if (as->as_stopping) {
			end = 0;
		}
		woke = as->as_wakes != wakes;
		pthread_mutex_unlock(&as->as_lock);
		if (woke) {
			struct timespec d = { 0,
				5 * 1000 * 1000 }; /* let the enqueue's commit land */

			nanosleep(&d, NULL);
		}
	}
	if (counted) {
		pthread_mutex_lock(&as->as_lock);
		as->as_watchers--;
		pthread_mutex_unlock(&as->as_lock);
	}
	if (st != HV_OK) {
		return (st);
	}
	*reply = &out->base;
	return (HV_OK);
}

hv_status
alerts_register(alerts_service *as, rpc_server *srv)
{
	static const rpc_method_impl impls[] = {
		{ .name = "SetChannels", .handler = h_set_channels, .roles = R_ALERTS },
		{ .name = "GetChannels", .handler = h_get_channels, .roles = R_ALERTS },
		{ .name = "WatchEvents", .handler = h_watch, .roles = R_ALERTS },
		{ .name = "TestChannels", .handler = alerts_h_test_channels, .roles = R_ALERTS },
	};

	hv_status st = rpc_server_add_service(srv, &haven__alerts__v1__alerts__descriptor, impls,
	    sizeof(impls) / sizeof(impls[0]), as);

	return (st != HV_OK
	        ? st
	        : metrics_add_collector(rpc_server_metrics(srv), alerts_metrics_collect, as));
}
