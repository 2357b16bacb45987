/*
 * signals.c - the signals service's life cycle, its sealing key, the proof-of-work
 * challenges and the overall rate limits (signals.h). The handlers are in sig_rpc.c.
 */
#include "sig_internal.h"

#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/log.h"
#include "haven/text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIG_SEAL_VERSION 1

/* ---- configuration -------------------------------------------------------------------- */

static const config_option options[] = {
	{ "helpline", CONFIG_STRING, offsetof(sig_config, helpline), NULL, 0, 0,
	    "The national trafficking helpline (digits, spaces, '+' and '-', at most 32 bytes), "
	    "shown beside 112 to a sender who says they are in danger now. Default: 112 only." },
	{ "difficulty", CONFIG_UINT, offsetof(sig_config, difficulty), "18", 8, SIG_DIFFICULTY_MAX,
	    "Leading zero bits of the proof-of-work a signal needs (each bit doubles the sender's "
	    "work; 18 takes 1-2 s with WebCrypto in a desktop browser, several times that on a "
	    "cheap phone, done while the form is filled in)." },
	{ "submits_per_min", CONFIG_UINT, offsetof(sig_config, submits_per_min), "30", 1, 6000,
	    "Signals accepted per minute from everyone together (and as a burst); challenges: "
	    "four times as many." },
	{ "per_address_per_min", CONFIG_UINT, offsetof(sig_config, per_address_per_min), "2", 1,
	    600,
	    "Signals accepted per minute from one client address (challenges: four times as "
	    "many). Only where the node knows the address: behind http_trusted_proxy. The address "
	    "is held as a keyed hash, in memory, for a minute; never stored or logged." },
	{ "retention_days", CONFIG_UINT, offsetof(sig_config, retention_days), "90", 0,
	    SIG_RETENTION_DAYS_MAX,
	    "Days after which a signal nobody closed is erased with its sealed contact (counted "
	    "in the statistics as EXPIRED first). 0: never." },
};

config_table
sig_config_table(sig_config *cfg)
{
	config_table t = { SIG_CONFIG_SECTION, options, sizeof(options) / sizeof(options[0]), cfg };

	return (t);
}

void
sig_config_apply(const sig_config *cfg, sig_options *so)
{
	so->helpline            = cfg->helpline;
	so->difficulty          = (uint32_t) cfg->difficulty;
	so->submits_per_min     = (uint32_t) cfg->submits_per_min;
	so->per_address_per_min = (uint32_t) cfg->per_address_per_min;
	so->retention_days      = (uint32_t) cfg->retention_days;
}

void
sig_config_free(sig_config *cfg)
{
	config_free(options, sizeof(options) / sizeof(options[0]), cfg);
}

/* ---- clock, buckets ------------------------------------------------------------------- */

int64_t
sig_now(const sig_service *ss)
{
	return (ss->ss_now != NULL ? ss->ss_now(ss->ss_now_arg) : hv_clock_wall_ms());
}

hv_status
sig_limit(rpc_call *call, limit *l, const char *what)
{
	switch (limit_take(l, rpc_call_source(call))) {
	case LIMIT_OK:
		return (HV_OK);
	case LIMIT_SOURCE:
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "too many %s from this address; try again in a minute. If you are in danger "
		    "call 112",
		    what));
	default:
		return (rpc_call_error(call, HV_RESOURCE_EXHAUSTED,
		    "too many %s right now; try again in a minute. If you are in danger call 112",
		    what));
	}
}

/* ---- challenges ----------------------------------------------------------------------- */

hv_status
sig_challenge_new(sig_service *ss, char nonce[SIG_NONCE_LEN + 1], int64_t *expires)
{
	uint8_t   raw[32];
	int64_t   now = sig_now(ss);
	hv_status st  = HV_RESOURCE_EXHAUSTED;

	if (crypto_random(raw, sizeof(raw)) != HV_OK ||
	    crypto_b64url_encode(nonce, SIG_NONCE_LEN + 1, raw, sizeof(raw)) != HV_OK) {
		return (HV_INTERNAL);
	}
	*expires = now + ss->ss_ttl_ms;
	pthread_mutex_lock(&ss->ss_mu);
	for (size_t i = 0; i < SIG_CHALLENGES_MAX; i++) {
		sig_challenge *c = &ss->ss_chal[i];
		if (c->c_nonce[0] == '\0' || c->c_expires_ms <= now) {
			memcpy(c->c_nonce, nonce, SIG_NONCE_LEN + 1);
			c->c_expires_ms = *expires;
			st              = HV_OK;
			break;
		}
	}
	pthread_mutex_unlock(&ss->ss_mu);
	return (st);
}

/* Leading zero bits of h. */
static unsigned
zero_bits(const uint8_t h[CRYPTO_SHA256_LEN])
{
	unsigned n = 0;

	for (size_t i = 0; i < CRYPTO_SHA256_LEN; i++) {
		if (h[i] == 0) {
			n += 8;
			continue;
		}
		for (uint8_t m = 0x80; m != 0 && (h[i] & m) == 0; m >>= 1) {
			n++;
		}
		break;
	}
	return (n);
}

static bool
pow_ok(const char *nonce, const uint8_t *sol, size_t sollen, uint32_t difficulty)
{
	uint8_t buf[SIG_NONCE_LEN + SIG_SOLUTION_MAX];
	uint8_t h[CRYPTO_SHA256_LEN];

	memcpy(buf, nonce, SIG_NONCE_LEN);
	if (sollen > 0) { /* an empty bytes field may come as NULL */
		memcpy(buf + SIG_NONCE_LEN, sol, sollen);
	}
	crypto_sha256(h, buf, SIG_NONCE_LEN + sollen);
	return (zero_bits(h) >= difficulty);
}

hv_status
sig_challenge_spend(sig_service *ss, const char *nonce, const uint8_t *sol, size_t sollen,
    const char **why)
{
	int64_t   now = sig_now(ss);
	hv_status st  = HV_FAILED_PRECONDITION;

	*why = "nonce is not an outstanding challenge (unknown, used or expired)";
	if (nonce == NULL || strlen(nonce) != SIG_NONCE_LEN) {
		*why = "nonce must be the 43 characters Challenge returned";
		return (HV_INVALID_ARGUMENT);
	}
	if (sollen > SIG_SOLUTION_MAX) {
		*why = "solution is longer than 64 bytes";
		return (HV_INVALID_ARGUMENT);
	}
	pthread_mutex_lock(&ss->ss_mu);
	for (size_t i = 0; i < SIG_CHALLENGES_MAX; i++) {
		sig_challenge *c = &ss->ss_chal[i];
		if (c->c_nonce[0] == '\0' || !crypto_equal(c->c_nonce, nonce, SIG_NONCE_LEN)) {
			continue;
		}
		if (c->c_expires_ms > now) {
			st = pow_ok(nonce, sol, sollen, ss->ss_difficulty) ? HV_OK
			                                                   : HV_FAILED_PRECONDITION;
			*why =
			    st == HV_OK ? "" : "solution does not meet the challenge's difficulty";
		}
		c->c_nonce[0] = '\0'; /* one try per challenge */
		break;
	}
	pthread_mutex_unlock(&ss->ss_mu);
	return (st);
}

size_t
sig_solve(const char *nonce, uint32_t difficulty, uint8_t *sol)
{
	for (uint32_t i = 0; i < UINT32_MAX; i++) {
		hv_put_be32(sol, i);
		if (pow_ok(nonce, sol, 4, difficulty)) {
			return (4);
		}
	}
	return (0);
}

/* ---- the key -------------------------------------------------------------------------- */

/* Reads the key file, or creates it (0600, O_EXCL) with a new random key. */
static hv_status
key_load(sig_service *ss, const char *path)
{
	struct stat sb;
	int         fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t     n;

	if (fd < 0 && errno == ENOENT) {
		if (crypto_random(ss->ss_key, sizeof(ss->ss_key)) != HV_OK) {
			return (HV_INTERNAL);
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 ||
		    write(fd, ss->ss_key, sizeof(ss->ss_key)) != (ssize_t) sizeof(ss->ss_key) ||
		    fsync(fd) != 0) {
			log_error("signals: cannot write the key file %s: %s", path,
			    strerror(errno));
			if (fd >= 0) {
				close(fd);
				/* Ours (O_EXCL) and short: left, it would stop every later start
				 * ("not a 32-byte key"); the next start makes the key again. */
				(void) unlink(path);
			}
			return (HV_INTERNAL);
		}
		close(fd);
		return (HV_OK);
	}
	if (fd < 0) {
		log_error("signals: cannot read the key file %s: %s", path, strerror(errno));
		return (HV_INTERNAL);
	}
	if (fstat(fd, &sb) != 0 || (sb.st_mode & 077) != 0) {
		close(fd);
		log_error("signals: the key file %s may be read by others (chmod 600)", path);
		return (HV_PERMISSION_DENIED);
	}
	n = read(fd, ss->ss_key, sizeof(ss->ss_key));
	close(fd);
	if (n != (ssize_t) sizeof(ss->ss_key)) {
		log_error("signals: the key file %s is not a 32-byte key", path);
		return (HV_DATA_LOSS);
	}
	return (HV_OK);
}

hv_status
sig_seal(const sig_service *ss, const char *id, const char *text, size_t len, uint8_t *out)
{
	out[0] = SIG_SEAL_VERSION;
	if (crypto_random(out + 1, CRYPTO_AEAD_NONCE_LEN) != HV_OK) {
		return (HV_INTERNAL);
	}
	return (crypto_aead_encrypt(out + SIG_SEALED_HDR, out + 1 + CRYPTO_AEAD_NONCE_LEN,
	    ss->ss_key, out + 1, id, strlen(id), text, len));
}

hv_status
sig_unseal(const sig_service *ss, const char *id, const uint8_t *in, size_t len, char *text)
{
	hv_status st;

	if (len < SIG_SEALED_HDR || in[0] != SIG_SEAL_VERSION) {
		return (HV_DATA_LOSS);
	}
	st = crypto_aead_decrypt((uint8_t *) text, ss->ss_key, in + 1,
	    in + 1 + CRYPTO_AEAD_NONCE_LEN, id, strlen(id), in + SIG_SEALED_HDR,
	    len - SIG_SEALED_HDR);
	text[st == HV_OK ? len - SIG_SEALED_HDR : 0] = '\0';
	return (st);
}

size_t
sig_key_region(uint8_t key[SIG_KEY_MAX], const char *region, uint64_t created_ms, const char *id)
{
	size_t rl = strnlen(region, 64), il = strnlen(id, SIG_ID_MAX);

	memcpy(key, region, rl);
	key[rl] = 0;
	hv_put_be64(key + rl + 1, UINT64_MAX - created_ms);
	memcpy(key + rl + 9, id, il);
	return (rl + 9 + il);
}

/* ---- life cycle ----------------------------------------------------------------------- */

/* A helpline number: digits, spaces, '+' and '-', 3..32 bytes. */
static bool
helpline_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 3 || n > SIG_HELPLINE_MAX) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == ' ' || s[i] == '+' || s[i] == '-')) {
			return (false);
		}
	}
	return (true);
}

hv_status
sig_open(sig_service **out, const sig_options *o)
{
	sig_service *ss;
	hv_status    st;

	*out = NULL;
	if (o == NULL || o->store == NULL || o->regions == NULL || o->capacity == NULL ||
	    o->key_path == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (o->helpline != NULL && o->helpline[0] != '\0' && !helpline_ok(o->helpline)) {
		log_error("signals.helpline must be 3..32 digits, spaces, '+' or '-'");
		return (HV_INVALID_ARGUMENT);
	}
	if (o->difficulty > SIG_DIFFICULTY_MAX) {
		log_error("signals.difficulty is at most %d", SIG_DIFFICULTY_MAX);
		return (HV_INVALID_ARGUMENT);
	}
	if ((ss = calloc(1, sizeof(*ss))) == NULL ||
	    (ss->ss_chal = calloc(SIG_CHALLENGES_MAX, sizeof(sig_challenge))) == NULL) {
		free(ss);
		return (HV_RESOURCE_EXHAUSTED);
	}
	ss->ss_store   = o->store;
	ss->ss_regions = o->regions;
	ss->ss_cap     = o->capacity;
	ss->ss_alerts  = o->alerts;
	ss->ss_refs    = o->referrals;
	ss->ss_now     = o->now_ms;
	ss->ss_now_arg = o->now_arg;
	snprintf(ss->ss_helpline, sizeof(ss->ss_helpline), "%s",
	    o->helpline != NULL ? o->helpline : "");
	ss->ss_difficulty     = o->difficulty != 0 ? o->difficulty : 18;
	ss->ss_ttl_ms         = (o->challenge_ttl_s != 0 ? o->challenge_ttl_s : 600) * 1000u;
	ss->ss_audit          = o->audit;
	ss->ss_retention_days = o->retention_days;
	pthread_mutex_init(&ss->ss_mu, NULL);
	{
		uint32_t      all = o->submits_per_min != 0 ? o->submits_per_min : 30;
		uint32_t      per = o->per_address_per_min != 0 ? o->per_address_per_min : 2;
		limit_options lo  = { .window_ms = 60000,
			 .per_source             = 4 * per,
			 .overall                = 4 * all,
			 .now_ms                 = o->now_ms,
			 .now_arg                = o->now_arg };
		if ((st = limit_open(&ss->ss_lim_challenge, &lo)) != HV_OK) {
			goto fail;
		}
		lo.per_source = per;
		lo.overall    = all;
		if ((st = limit_open(&ss->ss_lim_submit, &lo)) != HV_OK) {
			goto fail;
		}
	}
	if ((st = key_load(ss, o->key_path)) != HV_OK ||
	    (st = store_table_open(o->store, "signals.items", &ss->ss_items)) != HV_OK ||
	    (st = store_table_open(o->store, "signals.by_region", &ss->ss_by_region)) != HV_OK ||
	    (st = store_table_open(o->store, "signals.contact", &ss->ss_contact)) != HV_OK ||
	    (st = store_table_open(o->store, "signals.expired", &ss->ss_expired)) != HV_OK) {
		goto fail;
	}
	if (ss->ss_retention_days > 0 && !o->manual &&
	    (st = hv_ticker_start(&ss->ss_retention,
	         (uint64_t) (o->retention_every_s != 0 ? o->retention_every_s : 3600) * 1000, true,
	         sig_retention_round, ss)) != HV_OK) {
		goto fail;
	}
	*out = ss;
	return (HV_OK);
fail:
	sig_close(ss);
	return (st);
}

void
sig_close(sig_service *ss)
{
	if (ss == NULL) {
		return;
	}
	hv_ticker_stop(ss->ss_retention); /* first: its round uses everything below */
	crypto_wipe(ss->ss_key, sizeof(ss->ss_key));
	limit_close(ss->ss_lim_challenge);
	limit_close(ss->ss_lim_submit);
	pthread_mutex_destroy(&ss->ss_mu);
	free(ss->ss_chal);
	free(ss);
}
