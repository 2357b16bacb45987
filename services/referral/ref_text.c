/*
 * ref_text.c - the free text of referrals, sealed under the subject's data key: a referral's
 * note, the free part of a reason (cancel, reassign, decline, end) in its event, and an
 * offer's decline text. Codes (the coded part of a reason, enums) stay in the clear.
 *
 * Stored records hold free text only sealed, through the consent service's hooks (ref_options
 * seal and unseal, consent_text_seal_txn): Referral.sealed_note, Event.sealed_text,
 * Offer.sealed_decline_text; note, decline_text and the free part of reason are "" in the
 * store. The associated data binds each text to its place: "<referral id>/note",
 * "<referral id>/event/<index>", "<offer id>/decline" (events are never removed, so an
 * index names one event for good). A message of the work (ref_load, ref_load_offer) is
 * always the stored form; answers are made from a copy that ref_shown / ref_shown_offer
 * opens, for callers the handlers already let see the record.
 *
 * Erasure: once the subject is erased (EraseSubject or retention) its data key is gone, the
 * texts open no more and read as "" (a reason keeps its coded part), without an error. Free
 * text given later about an erased subject (a cancel reason) is not kept: the call succeeds
 * with the code alone.
 *
 * Stores written before sealing: ref_text_migrate seals the plaintext at open, a batch of
 * referrals and offers per transaction, and clears the text of subjects erased already.
 */
#include "ref_internal.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTEXT_MAX 96 /* an id (< IDS_MAX) and "/event/<index>" */

/* Reasons whose text follows "<code>: " (ref_rpc.c writes the code; older stores the whole). */
static const struct {
	const char *prefix;
	bool        coded; /* another "<code>: " follows the prefix */
} reason_forms[] = {
	{ "cancelled: ", false },
	{ "reassigned: ", false },
	{ "declined: ", true },
	{ "ended: ", true },
};

static hv_status
context(char out[CONTEXT_MAX], const char *id, const char *field, long index)
{
	int n = index < 0 ? snprintf(out, CONTEXT_MAX, "%s/%s", id, field)
	                  : snprintf(out, CONTEXT_MAX, "%s/%s/%ld", id, field, index);

	return (n > 0 && n < CONTEXT_MAX ? HV_OK : HV_INVALID_ARGUMENT);
}

hv_status
ref_text_seal(ref_work *w, const char *subject, const char *id, const char *field, long index,
    const char *text, ProtobufCBinaryData *out)
{
	ref_service *rs = w->w_rs;
	char         ctx[CONTEXT_MAX];
	size_t       n = text != NULL ? strlen(text) : 0;
	hv_status    st;

	out->data = NULL;
	out->len  = 0;
	if (n == 0) {
		return (HV_OK);
	}
	if (rs->rs_seal == NULL) {
		return (ref_fail(w, HV_FAILED_PRECONDITION,
		    "free text is stored only sealed under the subject's key, and this service has "
		    "no consent service to seal it: leave it out"));
	}
	if ((st = context(ctx, id, field, index)) != HV_OK) {
		return (st);
	}
	if ((out->data = arena_alloc(w->w_arena, n + REF_SEAL_OVERHEAD)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	st = rs->rs_seal(rs->rs_consent_arg, w->w_txn, subject, ctx, text, n, out->data,
	    n + REF_SEAL_OVERHEAD);
	if (st == HV_NOT_FOUND) {
		out->data = NULL; /* an erased subject: nothing is kept about it any more */
		return (HV_OK);
	}
	if (st != HV_OK) {
		out->data = NULL;
		return (
		    ref_fail(w, st, "cannot seal the free text of %s: %s", id, hv_status_name(st)));
	}
	out->len = n + REF_SEAL_OVERHEAD;
	return (HV_OK);
}

hv_status
ref_event_text(ref_work *w, Referral *r, const char *text)
{
	Event *e;

	if (r->n_events == 0) {
		return (HV_INTERNAL);
	}
	e = r->events[r->n_events - 1];
	return (ref_text_seal(w, r->subject, r->id, "event", (long) (r->n_events - 1), text,
	    &e->sealed_text));
}

/* Opens a sealed text into the arena: "" when there is none or the subject was erased. */
static hv_status
text_open(ref_work *w, const char *subject, const char *id, const char *field, long index,
    const ProtobufCBinaryData *in, char **out)
{
	ref_service *rs = w->w_rs;
	char         ctx[CONTEXT_MAX];
	char        *text;
	hv_status    st;

	*out = "";
	if (in->len == 0) {
		return (HV_OK);
	}
	if (rs->rs_unseal == NULL) {
		return (HV_OK); /* no keys: nothing can be shown */
	}
	if (in->len < REF_SEAL_OVERHEAD) {
		return (ref_fail(w, HV_DATA_LOSS, "the free text of %s is damaged", id));
	}
	if ((st = context(ctx, id, field, index)) != HV_OK) {
		return (st);
	}
	if ((text = arena_alloc(w->w_arena, in->len - REF_SEAL_OVERHEAD + 1)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	st = rs->rs_unseal(rs->rs_consent_arg, w->w_txn, subject, ctx, in->data, in->len, text,
	    in->len - REF_SEAL_OVERHEAD + 1);
	if (st == HV_NOT_FOUND) {
		return (HV_OK); /* erased: the text is gone for good */
	}
	if (st != HV_OK) {
		return (ref_fail(w, st, "the free text of %s does not decrypt: %s", id,
		    hv_status_name(st)));
	}
	*out = text;
	return (HV_OK);
}

/* "<code>: <text>", or the code alone when there is no text. */
static hv_status
join(ref_work *w, const char *code, const char *text, char **out)
{
	size_t n = strlen(code) + 2 + strlen(text) + 1;

	if (text[0] == '\0') {
		*out = (char *) code;
		return (HV_OK);
	}
	if ((*out = arena_alloc(w->w_arena, n)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	snprintf(*out, n, "%s: %s", code, text);
	return (HV_OK);
}

hv_status
ref_shown(ref_work *w, const Referral *r, Referral **out)
{
	Referral *c;
	Event   **events = NULL;
	char     *text;
	hv_status st;

	if ((c = arena_alloc(w->w_arena, sizeof(*c))) == NULL ||
	    (r->n_events > 0 &&
	        (events = arena_alloc(w->w_arena, r->n_events * sizeof(*events))) == NULL)) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*c = *r;
	if ((st = text_open(w, r->subject, r->id, "note", -1, &r->sealed_note, &c->note)) !=
	    HV_OK) {
		return (st);
	}
	c->sealed_note.data = NULL;
	c->sealed_note.len  = 0;
	for (size_t i = 0; i < r->n_events; i++) {
		const Event *e = r->events[i];

		events[i] = (Event *) e;
		if (e->sealed_text.len == 0) {
			continue;
		}
		if ((events[i] = arena_alloc(w->w_arena, sizeof(Event))) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		*events[i] = *e;
		if ((st = text_open(w, r->subject, r->id, "event", (long) i, &e->sealed_text,
		         &text)) != HV_OK ||
		    (st = join(w, e->reason, text, &events[i]->reason)) != HV_OK) {
			return (st);
		}
		events[i]->sealed_text.data = NULL;
		events[i]->sealed_text.len  = 0;
	}
	c->events = events;
	*out      = c;
	return (HV_OK);
}

hv_status
ref_shown_offer(ref_work *w, const Offer *o, Offer **out)
{
	Offer    *c;
	Referral *r;
	hv_status st;

	*out = (Offer *) o;
	if (o->sealed_decline_text.len == 0) {
		return (HV_OK);
	}
	if ((st = ref_load(w, o->referral_id, &r)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
	}
	if ((c = arena_alloc(w->w_arena, sizeof(*c))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	*c = *o;
	if ((st = text_open(w, r->subject, o->id, "decline", -1, &o->sealed_decline_text,
	         &c->decline_text)) != HV_OK) {
		return (st);
	}
	c->sealed_decline_text.data = NULL;
	c->sealed_decline_text.len  = 0;
	*out                        = c;
	return (HV_OK);
}

void
ref_text_drop(Referral *r)
{
	r->note             = "";
	r->sealed_note.data = NULL;
	r->sealed_note.len  = 0;
	for (size_t i = 0; i < r->n_events; i++) {
		r->events[i]->sealed_text.data = NULL;
		r->events[i]->sealed_text.len  = 0;
	}
}

/* ---- stores written before sealing ------------------------------------------------------------
 */

/* Splits a stored reason "<code>: <text>" into its code (in place) and its text; *text NULL
 * when it has no free text. */
static void
reason_split(char *reason, char **text)
{
	*text = NULL;
	for (size_t i = 0; i < sizeof(reason_forms) / sizeof(reason_forms[0]); i++) {
		size_t pl = strlen(reason_forms[i].prefix);
		char  *p;

		if (strncmp(reason, reason_forms[i].prefix, pl) != 0) {
			continue;
		}
		p = reason + pl;
		if (reason_forms[i].coded && (p = strstr(p, ": ")) == NULL) {
			return; /* "declined: unsafe": the code alone */
		}
		if (!reason_forms[i].coded) {
			p = reason + pl - 2;
		}
		p[0]  = '\0';
		*text = p + 2;
		return;
	}
}

/* Seals the plaintext of one stored referral; that of an erased subject is dropped (the seal
 * keeps nothing then). */
static hv_status
migrate_referral(ref_work *w, Referral *r, bool *changed)
{
	hv_status st;

	*changed = false;
	if (r->note[0] != '\0') {
		if ((st = ref_text_seal(w, r->subject, r->id, "note", -1, r->note,
		         &r->sealed_note)) != HV_OK) {
			return (st);
		}
		r->note  = "";
		*changed = true;
	}
	for (size_t i = 0; i < r->n_events; i++) {
		Event *e = r->events[i];
		char  *text;

		if (e->sealed_text.len != 0) {
			continue;
		}
		reason_split(e->reason, &text);
		if (text == NULL) {
			continue;
		}
		if ((st = ref_text_seal(w, r->subject, r->id, "event", (long) i, text,
		         &e->sealed_text)) != HV_OK) {
			return (st);
		}
		*changed = true;
	}
	if (r->subject_erased_ms != 0) {
		ref_text_drop(r);
	}
	return (HV_OK);
}

/* Seals the decline text of one stored offer (dropped when its subject was erased). */
static hv_status
migrate_offer(ref_work *w, Offer *o, bool *changed)
{
	Referral *r;
	hv_status st;

	*changed = false;
	if (o->decline_text[0] == '\0') {
		return (HV_OK);
	}
	if ((st = ref_load(w, o->referral_id, &r)) != HV_OK && st != HV_NOT_FOUND) {
		return (st);
	}
	if (st == HV_OK && r->subject_erased_ms == 0) {
		if ((st = ref_text_seal(w, r->subject, o->id, "decline", -1, o->decline_text,
		         &o->sealed_decline_text)) != HV_OK) {
			return (st);
		}
	}
	o->decline_text = "";
	*changed        = true;
	return (ref_put_offer(w, o));
}

typedef struct migrate_job {
	ref_work    mj_work;
	store_table mj_table;
	bool        mj_offers;
	uint8_t     mj_after[IDS_MAX]; /* the last id done; mj_alen 0: from the start */
	size_t      mj_alen;
	uint8_t     mj_next[IDS_MAX]; /* this run's last id, taken after the commit */
	size_t      mj_nlen;
	bool        mj_more;
	unsigned    mj_n; /* records changed in this run */
} migrate_job;

/* The ids of up to REF_BATCH records after mj_after. */
static hv_status
migrate_ids(migrate_job *j, store_txn *txn, char (*ids)[IDS_MAX], size_t *n)
{
	store_cursor *c = NULL;
	const void   *k;
	size_t        kl;
	hv_status     st;

	*n         = 0;
	j->mj_more = false;
	if ((st = store_cursor_open(txn, j->mj_table, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, j->mj_after, j->mj_alen, &k, &kl, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		if ((j->mj_alen > 0 && kl == j->mj_alen && memcmp(k, j->mj_after, kl) == 0) ||
		    kl >= IDS_MAX) {
			continue;
		}
		if (*n == REF_BATCH) {
			j->mj_more = true;
			break;
		}
		memcpy(ids[*n], k, kl);
		ids[(*n)++][kl] = '\0';
	}
	store_cursor_close(c);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

static hv_status
migrate_fn(store_txn *txn, void *arg)
{
	migrate_job *j = arg;
	ref_work    *w = &j->mj_work;
	char         ids[REF_BATCH][IDS_MAX];
	size_t       n;
	bool         changed;
	hv_status    st;

	ref_work_begin(w, txn);
	j->mj_n = 0;
	if ((st = migrate_ids(j, txn, ids, &n)) != HV_OK) {
		return (st);
	}
	for (size_t i = 0; i < n; i++) {
		if (j->mj_offers) {
			Offer *o;
			if ((st = ref_load_offer(w, ids[i], &o)) == HV_OK) {
				st = migrate_offer(w, o, &changed);
			}
		} else {
			Referral *r;
			if ((st = ref_load(w, ids[i], &r)) == HV_OK &&
			    (st = migrate_referral(w, r, &changed)) == HV_OK && changed) {
				ref_mark_dirty(w, r);
			}
		}
		if (st == HV_NOT_FOUND) {
			continue;
		}
		if (st != HV_OK) {
			return (st);
		}
		j->mj_n += changed ? 1 : 0;
	}
	j->mj_nlen = n > 0 ? strlen(ids[n - 1]) : 0;
	memcpy(j->mj_next, ids[n > 0 ? n - 1 : 0], j->mj_nlen);
	if (j->mj_offers && !j->mj_more &&
	    (st = store_put(txn, w->w_rs->rs_meta, REF_META_SEALED, strlen(REF_META_SEALED), "1",
	         1)) != HV_OK) {
		return (st);
	}
	return (ref_work_flush(w));
}

hv_status
ref_text_migrate(ref_service *rs)
{
	migrate_job *j;
	store_txn   *txn;
	unsigned     total = 0;
	hv_status    st;

	if (rs->rs_seal == NULL) {
		return (HV_OK); /* sealed when opened with the consent service */
	}
	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_get(txn, rs->rs_meta, REF_META_SEALED, strlen(REF_META_SEALED), NULL, NULL);
	store_read_end(txn);
	if (st != HV_NOT_FOUND) {
		return (st);
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	ref_work_init(&j->mj_work, rs);
	for (int pass = 0; pass < 2; pass++) {
		j->mj_offers = pass == 1;
		j->mj_table  = j->mj_offers ? rs->rs_offers : rs->rs_referrals;
		j->mj_alen   = 0;
		do {
			if ((st = store_write(rs->rs_store, migrate_fn, j)) != HV_OK) {
				goto out;
			}
			total += j->mj_n;
			j->mj_alen = j->mj_nlen;
			memcpy(j->mj_after, j->mj_next, j->mj_nlen);
		} while (j->mj_more);
	}
	st = HV_OK;
	if (total > 0) {
		log_info(
		    "referral: the free text of %u stored records sealed under their subjects' "
		    "keys (the old plaintext may stay in free pages of the store until they are "
		    "reused: take a new backup with the admin backup)",
		    total);
	}
out:
	ref_work_free(&j->mj_work);
	free(j);
	return (st);
}
