/*
 * ref_retention.c - retention: the personal data of a subject whose referrals all closed more
 * than retention_days ago is erased through the hook (the consent service), and its referrals
 * are marked and their free text dropped; and, once per store, the index of closed referrals
 * (ref.closed) filled for referrals stored before it existed.
 */
#include "ref_internal.h"

#include "haven/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A referral closes when its last need reaches a final state (ref_closed_update, from
 * ref_transition); ref.closed lists the closed referrals whose subject is not erased yet, oldest
 * closure first. A sweep walks it up to the cutoff (now - retention_days). A subject is due when
 * every one of its referrals (ref.by_subject) is closed before the cutoff; it is looked at once
 * for each of its closed referrals in the walk, and decided at the last of them in the walk's
 * order, so that it is yielded or counted as kept exactly once per walk. Erasure goes through
 * the hook with no transaction open (the consent service erases in transactions of its own and
 * then rotates its key); the subject's referrals are marked afterwards in one write transaction
 * and leave ref.closed. A crash in between leaves them in ref.closed: the next sweep asks the
 * hook again, which answers NOT_FOUND (erased), and marks them then.
 */

/* What the referrals of one subject say about the referral of an index entry. */
typedef struct due_eval {
	ref_service    *de_rs;
	store_txn      *de_txn;
	const Referral *de_ref;
	int64_t         de_cutoff;
	bool            de_later; /* another of its referrals closed later, before the cutoff */
	bool            de_keep;  /* one is open, or closed at or after the cutoff */
} due_eval;

static hv_status
due_one(void *arg, const char *id, bool *stop)
{
	due_eval       *e = arg;
	const Referral *x = e->de_ref;
	Referral       *r = NULL;
	hv_status       st;

	if (strcmp(id, x->id) == 0) {
		return (HV_OK);
	}
	st = store_get_msg(e->de_txn, e->de_rs->rs_referrals, id, strlen(id),
	    &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r);
	if (st == HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if (r->closed_ms == 0 || !ref_referral_closed(r) ||
	    (int64_t) r->closed_ms >= e->de_cutoff) {
		e->de_keep = true;
	} else if (r->subject_erased_ms == 0 &&
	    (r->closed_ms > x->closed_ms ||
	        (r->closed_ms == x->closed_ms && strcmp(r->id, x->id) > 0))) {
		e->de_later = true;
	}
	haven__referral__v1__referral__free_unpacked(r, NULL);
	return (HV_OK);
}

/* A walk of ref.closed up to the cutoff. */
typedef struct due_walk {
	int64_t    dw_cutoff;
	ref_due_fn dw_fn;
	void      *dw_arg;
	unsigned   dw_kept;
	uint8_t    dw_last[REF_KEY_MAX]; /* the last entry looked at */
	size_t     dw_lastlen;
	bool       dw_more; /* fn stopped the walk before its end */
} due_walk;

/* Walks ref.closed from the entry after `after` (alen 0: from the start). */
static hv_status
due_walk_run(ref_service *rs, store_txn *txn, due_walk *dw, const uint8_t *after, size_t alen)
{
	store_cursor *c = NULL;
	const void   *k;
	size_t        kl;
	bool          stop = false;
	hv_status     st;

	dw->dw_more = false;
	if ((st = store_cursor_open(txn, rs->rs_closed, &c)) != HV_OK) {
		return (st);
	}
	for (st = store_cursor_seek(c, after, alen, &k, &kl, NULL, NULL); st == HV_OK && !stop;
	     st = store_cursor_next(c, &k, &kl, NULL, NULL)) {
		char      id[IDS_MAX];
		Referral *r = NULL;
		due_eval  e;

		if (alen > 0 && kl == alen && memcmp(k, after, alen) == 0) {
			continue;
		}
		if (kl <= 8 || kl - 8 >= IDS_MAX) {
			continue; /* not an entry this service writes */
		}
		if ((int64_t) hv_get_be64(k) >= dw->dw_cutoff) {
			break; /* oldest first: the rest closed later */
		}
		memcpy(dw->dw_last, k, kl);
		dw->dw_lastlen = kl;
		memcpy(id, (const uint8_t *) k + 8, kl - 8);
		id[kl - 8] = '\0';
		st         = store_get_msg(txn, rs->rs_referrals, id, strlen(id),
		            &haven__referral__v1__referral__descriptor, NULL, (ProtobufCMessage **) &r);
		if (st == HV_NOT_FOUND) {
			continue;
		}
		if (st != HV_OK) {
			break;
		}
		memset(&e, 0, sizeof(e));
		e.de_rs     = rs;
		e.de_txn    = txn;
		e.de_ref    = r;
		e.de_cutoff = dw->dw_cutoff;
		if (r->subject_erased_ms != 0 || r->closed_ms == 0 ||
		    strlen(r->subject) != REF_SUBJECT_LEN) {
			/* An entry left behind: the marking removes it with the referral's. */
		} else if ((st = ref_subject_walk(rs, txn, r->subject, due_one, &e)) != HV_OK) {
			haven__referral__v1__referral__free_unpacked(r, NULL);
			break;
		} else if (e.de_later) {
			/* decided at the subject's last closure */
		} else if (e.de_keep) {
			dw->dw_kept++;
		} else if ((st = dw->dw_fn(dw->dw_arg, r->subject, &stop)) != HV_OK) {
			haven__referral__v1__referral__free_unpacked(r, NULL);
			break;
		}
		haven__referral__v1__referral__free_unpacked(r, NULL);
	}
	if (st == HV_NOT_FOUND) {
		st = HV_OK;
	}
	dw->dw_more = st == HV_OK && stop;
	store_cursor_close(c);
	return (st);
}

hv_status
ref_retention_due(ref_service *rs, store_txn *txn, int64_t cutoff_ms, ref_due_fn fn, void *arg)
{
	due_walk dw;

	if (rs == NULL || txn == NULL || fn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	memset(&dw, 0, sizeof(dw));
	dw.dw_cutoff = cutoff_ms;
	dw.dw_fn     = fn;
	dw.dw_arg    = arg;
	return (due_walk_run(rs, txn, &dw, NULL, 0));
}

typedef struct retention_job {
	ref_work rj_work;
	char     rj_subjects[REF_BATCH][REF_SUBJECT_LEN + 1];
	bool     rj_erased[REF_BATCH];
	size_t   rj_n;
	unsigned rj_marked;
} retention_job;

static hv_status
collect_due(void *arg, const char *subject, bool *stop)
{
	retention_job *j = arg;

	memcpy(j->rj_subjects[j->rj_n], subject, REF_SUBJECT_LEN + 1);
	j->rj_erased[j->rj_n] = false;
	if (++j->rj_n == REF_BATCH) {
		*stop = true;
	}
	return (HV_OK);
}

static hv_status
mark_one(void *arg, const char *id, bool *stop)
{
	retention_job *j = arg;
	ref_work      *w = &j->rj_work;
	Referral      *r;
	uint8_t        key[REF_KEY_MAX];
	hv_status      st;

	if ((st = ref_load(w, id, &r)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if (r->subject_erased_ms != 0) {
		return (HV_OK);
	}
	if (r->closed_ms != 0) {
		st = store_del(w->w_txn, w->w_rs->rs_closed, key,
		    ref_key_closed(key, r->closed_ms, r->id));
		if (st != HV_OK && st != HV_NOT_FOUND) {
			return (st);
		}
	} else {
		/* Referred again between the walk and the erasure: its subject is gone all the
		 * same. */
		log_warn(
		    "referral: %s is open, but retention erased its subject %s (referred again "
		    "during the sweep)",
		    r->id, r->subject);
	}
	r->subject_erased_ms = (uint64_t) w->w_now;
	ref_text_drop(r); /* the free text about the person: unreadable already, now gone too */
	if (r->n_needs > 0) {
		st = ref_note_event(w, r, r->needs[0], "", REF_ERASED_REASON);
	} else {
		ref_mark_dirty(w, r);
		st = HV_OK;
	}
	j->rj_marked += st == HV_OK ? 1 : 0;
	return (st);
}

static hv_status
mark_fn(store_txn *txn, void *arg)
{
	retention_job *j = arg;
	hv_status      st;

	ref_work_begin(&j->rj_work, txn);
	j->rj_marked = 0;
	for (size_t i = 0; i < j->rj_n; i++) {
		if (j->rj_erased[i] &&
		    (st = ref_subject_walk(j->rj_work.w_rs, txn, j->rj_subjects[i], mark_one, j)) !=
		        HV_OK) {
			return (st);
		}
	}
	return (ref_work_flush(&j->rj_work));
}

static bool
is_stopping(ref_service *rs)
{
	bool stopping;

	pthread_mutex_lock(&rs->rs_lock);
	stopping = rs->rs_stopping;
	pthread_mutex_unlock(&rs->rs_lock);
	return (stopping);
}

/* Erases the subjects of the batch through the hook (rj_erased[i]: erased now or before),
 * until the service stops (then rj_n is cut and true is returned). */
static bool
erase_batch(ref_service *rs, retention_job *j, ref_retention_stats *s, unsigned *erased_now)
{
	for (size_t i = 0; i < j->rj_n; i++) {
		hv_status est;

		if (is_stopping(rs)) {
			j->rj_n = i; /* the rest waits for the next start */
			return (true);
		}
		est             = rs->rs_erase(rs->rs_erase_arg, j->rj_subjects[i]);
		j->rj_erased[i] = est == HV_OK || est == HV_NOT_FOUND;
		*erased_now += est == HV_OK;
		if (!j->rj_erased[i]) {
			s->rr_failed++;
			log_warn("referral: retention could not erase subject %s: %s (tried again "
			         "at the "
			         "next sweep)",
			    j->rj_subjects[i], hv_status_name(est));
		}
	}
	return (false);
}

hv_status
ref_retention_run(ref_service *rs, ref_retention_stats *out)
{
	ref_retention_stats s;
	retention_job      *j = NULL;
	due_walk            dw;
	store_txn          *txn;
	uint8_t             after[REF_KEY_MAX];
	size_t              alen       = 0;
	bool                stopped    = false;
	unsigned            erased_now = 0; /* erasures made by this sweep */
	hv_status           st;
	char                when[32];

	memset(&s, 0, sizeof(s));
	if (out != NULL) {
		*out = s;
	}
	if (rs == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (rs->rs_erase == NULL || rs->rs_retention_days == 0) {
		return (HV_FAILED_PRECONDITION);
	}
	s.rr_cutoff_ms = ref_now_ms(rs) - (int64_t) rs->rs_retention_days * REF_DAY_MS;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	ref_work_init(&j->rj_work, rs);
	for (;;) {
		memset(&dw, 0, sizeof(dw));
		dw.dw_cutoff = s.rr_cutoff_ms;
		dw.dw_fn     = collect_due;
		dw.dw_arg    = j;
		j->rj_n      = 0;
		if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
			break;
		}
		st = due_walk_run(rs, txn, &dw, after, alen);
		store_read_end(txn);
		if (st != HV_OK) {
			log_warn("referral: retention cannot read the closed referrals: %s",
			    hv_status_name(st));
			break;
		}
		s.rr_kept += dw.dw_kept;
		memcpy(after, dw.dw_last, dw.dw_lastlen);
		alen = dw.dw_lastlen;
		if (j->rj_n == 0) {
			break;
		}
		stopped = erase_batch(rs, j, &s, &erased_now);
		if ((st = store_write(rs->rs_store, mark_fn, j)) != HV_OK) {
			log_warn("referral: retention erased subjects but cannot mark their "
			         "referrals: %s "
			         "(the next sweep does)",
			    hv_status_name(st));
			break;
		}
		ref_work_publish(&j->rj_work);
		for (size_t i = 0; i < j->rj_n; i++) {
			s.rr_subjects += j->rj_erased[i] ? 1 : 0;
		}
		s.rr_referrals += j->rj_marked;
		if (stopped || !dw.dw_more) {
			break;
		}
	}
	ref_work_free(&j->rj_work);
	free(j);
	if (erased_now > 0 && rs->rs_erase_done != NULL) {
		hv_status dst = rs->rs_erase_done(rs->rs_erase_arg);
		if (dst != HV_OK) {
			log_error(
			    "referral: retention erased %u subjects but could not make it final "
			    "(key rotation: %s); the daily rotation will",
			    erased_now, hv_status_name(dst));
		}
	}
	ref_iso_time(s.rr_cutoff_ms > 0 ? (uint64_t) s.rr_cutoff_ms : 0, when);
	log_info("referral: retention erased %u subjects (%u referrals) closed before %s; %u kept "
	         "for an open or recent referral; %u failed%s",
	    s.rr_subjects, s.rr_referrals, when, s.rr_kept, s.rr_failed,
	    stopped           ? "; stopped early"
	        : st != HV_OK ? "; sweep ended by an error"
	                      : "");
	if (out != NULL) {
		*out = s;
	}
	return (st);
}

/* The retention job: one sweep (it stops early once rs_stopping is set). */
void
ref_retention_round(void *arg)
{
	(void) ref_retention_run(arg, NULL);
}

/* The time a referral closed, for referrals stored before closed_ms existed: the latest event
 * that moved a need into a final state (created_ms when the trail has none). Never 0. */
static uint64_t
closed_from_events(const Referral *r)
{
	uint64_t t = 0;

	for (size_t i = 0; i < r->n_events; i++) {
		const Event *e = r->events[i];
		if ((e->to == NS(COMPLETED) || e->to == NS(CANCELLED) || e->to == NS(FAILED)) &&
		    e->time_ms > t) {
			t = e->time_ms;
		}
	}
	if (t == 0) {
		t = r->created_ms;
	}
	return (t != 0 ? t : 1);
}

typedef struct backfill_job {
	ref_service  *bj_rs;
	ref_key_batch bj_keys;
	bool          bj_last;
	unsigned      bj_n;
} backfill_job;

static hv_status
backfill_fn(store_txn *txn, void *arg)
{
	backfill_job *j  = arg;
	ref_service  *rs = j->bj_rs;
	uint8_t       key[REF_KEY_MAX];
	hv_status     st = HV_OK;

	j->bj_n = 0;
	for (size_t i = 0; i < j->bj_keys.kb_n && st == HV_OK; i++) {
		Referral *r = NULL;

		st = store_get_msg(txn, rs->rs_referrals, j->bj_keys.kb_keys[i],
		    j->bj_keys.kb_lens[i], &haven__referral__v1__referral__descriptor, NULL,
		    (ProtobufCMessage **) &r);
		if (st == HV_NOT_FOUND) {
			st = HV_OK;
			continue;
		}
		if (st != HV_OK) {
			break;
		}
		if (ref_referral_closed(r) && r->subject_erased_ms == 0) {
			if (r->closed_ms == 0) {
				r->closed_ms = closed_from_events(r);
				st = store_put_msg(txn, rs->rs_referrals, r->id, strlen(r->id),
				    &r->base);
			}
			if (st == HV_OK) {
				st = store_put(txn, rs->rs_closed, key,
				    ref_key_closed(key, r->closed_ms, r->id), "", 0);
			}
			j->bj_n++;
		}
		haven__referral__v1__referral__free_unpacked(r, NULL);
	}
	if (st == HV_OK && j->bj_last) {
		st = store_put(txn, rs->rs_meta, REF_META_CLOSED, strlen(REF_META_CLOSED), "1", 1);
	}
	return (st);
}

hv_status
ref_closed_backfill(ref_service *rs)
{
	backfill_job *j;
	store_txn    *txn;
	uint8_t       after[REF_KEY_MAX];
	size_t        alen  = 0;
	unsigned      total = 0;
	bool          more  = true;
	hv_status     st;

	if ((st = store_read_begin(rs->rs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_get(txn, rs->rs_meta, REF_META_CLOSED, strlen(REF_META_CLOSED), NULL, NULL);
	store_read_end(txn);
	if (st != HV_NOT_FOUND) {
		return (st);
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	j->bj_rs = rs;
	while (more) {
		if ((st = ref_gather(rs, rs->rs_referrals, after, alen, NULL, NULL, NULL,
		         &j->bj_keys, &more)) != HV_OK) {
			break;
		}
		j->bj_last = !more;
		if ((st = store_write(rs->rs_store, backfill_fn, j)) != HV_OK) {
			break;
		}
		total += j->bj_n;
		if (j->bj_keys.kb_n > 0) {
			alen = j->bj_keys.kb_lens[j->bj_keys.kb_n - 1];
			memcpy(after, j->bj_keys.kb_keys[j->bj_keys.kb_n - 1], alen);
		}
	}
	free(j);
	if (st == HV_OK && total > 0) {
		log_info("referral: %u closed referrals indexed for retention", total);
	}
	return (st);
}
