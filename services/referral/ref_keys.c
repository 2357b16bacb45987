/*
 * ref_keys.c - the key layouts of the referral tables (ref_internal.h lists them) and the two
 * walks over keys the background jobs and retention share: keys gathered in batches in a read
 * transaction, to be handled in write transactions, and a subject's referrals through
 * ref.by_subject.
 */
#include "ref_internal.h"

#include <string.h>

/* Appends s (at most max bytes; ids and region names are short) at key[off]. */
static size_t
put_str(uint8_t key[REF_KEY_MAX], size_t off, const char *s)
{
	size_t n = strlen(s);

	if (n > REF_KEY_MAX - 1 - off) {
		n = REF_KEY_MAX - 1 - off;
	}
	memcpy(key + off, s, n);
	return (off + n);
}

size_t
ref_key_timed(uint8_t key[REF_KEY_MAX], const char *prefix, uint64_t created_ms, const char *id)
{
	size_t off = 0;

	if (prefix != NULL) {
		off        = put_str(key, 0, prefix);
		key[off++] = 0;
	}
	hv_put_be64(key + off, UINT64_MAX - created_ms);
	return (put_str(key, off + 8, id));
}

size_t
ref_key_waiting(uint8_t key[REF_KEY_MAX], const Referral *r, uint32_t need)
{
	size_t off;

	key[0] = (uint8_t) r->urgency;
	hv_put_be64(key + 1, r->created_ms);
	off        = put_str(key, 9, r->id);
	key[off++] = 0;
	hv_put_be32(key + off, need);
	return (off + 4);
}

size_t
ref_key_deadline(uint8_t key[REF_KEY_MAX], uint64_t respond_by_ms, const char *offer_id)
{
	hv_put_be64(key, respond_by_ms);
	return (put_str(key, 8, offer_id));
}

size_t
ref_key_pair(uint8_t key[REF_KEY_MAX], const char *a, const char *b)
{
	size_t off = put_str(key, 0, a);

	key[off++] = 0;
	return (put_str(key, off, b));
}

size_t
ref_key_closed(uint8_t key[REF_KEY_MAX], uint64_t closed_ms, const char *id)
{
	hv_put_be64(key, closed_ms);
	return (put_str(key, 8, id));
}
/* ---- walks ----------------------------------------------------------------------------------- */

bool
ref_key_waiting_parse(const uint8_t *k, size_t kl, char id[IDS_MAX], uint32_t *need)
{
	size_t idlen;

	if (kl < 9 + 1 + 1 + 4 || kl - 14 >= IDS_MAX || k[kl - 5] != 0) {
		return (false);
	}
	idlen = kl - 14;
	memcpy(id, k + 9, idlen);
	id[idlen] = '\0';
	*need     = hv_get_be32(k + kl - 4);
	return (ids_valid(id));
}

hv_status
ref_gather(ref_service *rs, store_table t, const uint8_t *after, size_t alen,
    bool (*want)(const uint8_t *, size_t, void *), bool (*stop)(const uint8_t *, size_t, void *),
    void *arg, ref_key_batch *out, bool *more)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	const void   *k;
	size_t        kl;
	hv_status     st;

	out->kb_n = 0;
	*more     = false;
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		return (st);
	}
	if ((st = store_cursor_open(txn, t, &c)) != HV_OK) {
		goto out;
	}
	for (st = store_cursor_seek(c, after, alen, &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		if (alen > 0 && kl == alen && memcmp(k, after, alen) == 0) {
			continue;
		}
		if (kl > REF_KEY_MAX || (stop != NULL && stop(k, kl, arg))) {
			break;
		}
		if (want != NULL && !want(k, kl, arg)) {
			continue;
		}
		if (out->kb_n == REF_BATCH) {
			*more = true;
			break;
		}
		memcpy(out->kb_keys[out->kb_n], k, kl);
		out->kb_lens[out->kb_n++] = kl;
	}
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
out:
	store_cursor_close(c);
	store_read_end(txn);
	return (st);
}

hv_status
ref_subject_walk(ref_service *rs, store_txn *txn, const char *subject,
    hv_status (*fn)(void *, const char *, bool *), void *arg)
{
	store_cursor *c = NULL;
	uint8_t       prefix[REF_KEY_MAX];
	size_t        plen;
	const void   *k;
	size_t        kl;
	hv_status     st;
	bool          stop = false;

	plen = strlen(subject);
	if (plen == 0 || plen > 64) {
		return (HV_OK);
	}
	memcpy(prefix, subject, plen);
	prefix[plen++] = 0;
	if ((st = store_cursor_open(txn, rs->rs_by_subject, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, prefix, plen, &k, &kl, NULL, NULL); st == HV_OK && !stop;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		char id[IDS_MAX];

		if (kl <= plen || memcmp(k, prefix, plen) != 0) {
			break;
		}
		if (kl - plen >= IDS_MAX) {
			continue;
		}
		memcpy(id, (const uint8_t *) k + plen, kl - plen);
		id[kl - plen] = '\0';
		/* fn may write: the cursor is only read again after it, which LMDB allows for a
		 * table fn does not write (fn writes ref.referrals only). */
		if ((st = fn(arg, id, &stop)) != HV_OK) {
			break;
		}
	}
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
	store_cursor_close(c);
	return (st);
}
