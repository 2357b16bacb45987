/*
 * view.c - a subject's consents as a decision reads them (a view), and the cache of views that
 * lets Check decide without touching the subject's records in the store.
 *
 * A view holds what Check and GetSubject decide on: the organisation that created the subject
 * and, for each of its consents, the purposes, recipients, categories and times, in one
 * allocation. view_load reads it from the store; view_decide is the one decision rule.
 *
 * The cache is correct across processes because it trusts nothing it cannot check in the
 * reader's own snapshot. Every write that changes a view (Grant, a withdrawal, an erasure)
 * raises the consent generation G in consent.meta and sets the subject's own generation
 * S = G in consent.subject_gen, in the same transaction, whichever process runs it. A view
 * keeps the S it was read at and the last G at which it was found valid. A read transaction
 * that sees generation G uses a cached view when the view's G is G (nothing changed since),
 * or else when the subject's S in this snapshot is the view's S (other subjects changed, not
 * this one; the view's G is then moved on to G). Otherwise the view is read again. So a cached
 * answer is exactly what the store would have answered in that transaction, and a change to
 * one subject costs the others one extra lookup each, not a reload. Views are only put into
 * the cache from read transactions: a write transaction could roll back a change after its
 * view was cached.
 */
#include "consent_view.h"

#include "haven/bytes.h"
#include "haven/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_KEY "consent-generation"

/* ---- the consent generation ------------------------------------------------------------- */

hv_status
consent_generation(consent_service *cs, store_txn *txn, uint64_t *gen)
{
	const void *v;
	size_t      vl;
	hv_status   st;

	*gen = 0;
	st   = store_get(txn, cs->cs_meta, GEN_KEY, strlen(GEN_KEY), &v, &vl);
	if (st == HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if (vl != sizeof(*gen)) {
		return (HV_DATA_LOSS);
	}
	memcpy(gen, v, sizeof(*gen));
	return (HV_OK);
}

hv_status
consent_subject_generation(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    uint64_t *gen)
{
	const void *v;
	size_t      vl;
	hv_status   st;

	*gen = 0;
	st   = store_get(txn, cs->cs_subject_gen, sid, CONSENT_ID_LEN, &v, &vl);
	if (st == HV_NOT_FOUND) {
		return (HV_OK); /* not changed since the store had this table */
	}
	if (st != HV_OK) {
		return (st);
	}
	if (vl != sizeof(*gen)) {
		return (HV_DATA_LOSS);
	}
	memcpy(gen, v, sizeof(*gen));
	return (HV_OK);
}

static hv_status view_store(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN]);

hv_status
consent_changed(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN])
{
	uint64_t  gen;
	hv_status st;

	if ((st = consent_generation(cs, txn, &gen)) != HV_OK) {
		return (st);
	}
	gen++;
	if ((st = store_put(txn, cs->cs_meta, GEN_KEY, strlen(GEN_KEY), &gen, sizeof(gen))) !=
	        HV_OK ||
	    (st = store_put(txn, cs->cs_subject_gen, sid, CONSENT_ID_LEN, &gen, sizeof(gen))) !=
	        HV_OK) {
		return (st);
	}
	return (view_store(cs, txn, sid));
}

/* ---- views --------------------------------------------------------------------------------- */

static uint32_t
enum_bits(const int *v, size_t n)
{
	uint32_t bits = 0;

	for (size_t i = 0; i < n; i++) {
		if (v[i] > 0 && v[i] < 32) {
			bits |= 1u << v[i];
		}
	}
	return (bits);
}

/* A view for n consents with nrcp recipients of strbytes bytes (NULs included) in all, in one
 * allocation; *rp and *sp are where the recipient pointers and strings go. */
static consent_view *
view_alloc(const uint8_t sid[CONSENT_ID_LEN], uint64_t sgen, size_t n, size_t nrcp, size_t strbytes,
    const char ***rp, char **sp)
{
	consent_view *v;

	if (n > CONSENTS_PER_SUBJECT_MAX || nrcp > SIZE_MAX / 16 || strbytes > SIZE_MAX / 16 ||
	    (v = malloc(sizeof(*v) + n * sizeof(view_consent) + nrcp * sizeof(char *) +
	         strbytes)) == NULL) {
		return (NULL);
	}
	memset(v, 0, sizeof(*v));
	memcpy(v->cv_sid, sid, CONSENT_ID_LEN);
	v->cv_sgen     = sgen;
	v->cv_n        = n;
	v->cv_consents = (view_consent *) (v + 1);
	*rp            = (const char **) (v->cv_consents + n);
	*sp            = (char *) (*rp + nrcp);
	return (v);
}

/* Reads a subject's view from its records: the subject, its consent index and each consent. */
static hv_status
view_read(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    consent_view **out, char *err, size_t errsz)
{
	/* On the stack: as a 4 KiB malloc per cache miss it took malloc's slow path. */
	uint8_t                             ids[CONSENTS_PER_SUBJECT_MAX][CONSENT_ID_LEN];
	uint64_t                            sgen;
	Haven__Consent__V1__SubjectRecord  *rec  = NULL;
	Haven__Consent__V1__ConsentRecord **recs = NULL;
	consent_view                       *v    = NULL;
	size_t                              n = 0, nrcp = 0, strbytes = 0;
	const char                        **rp;
	char                               *sp;
	hv_status                           st;

	*out = NULL;
	if ((st = consent_subject_generation(cs, txn, sid, &sgen)) != HV_OK ||
	    (st = consent_subject_get(cs, txn, sid, false, &rec, err, errsz)) != HV_OK) {
		return (st);
	}
	if ((st = consent_record_ids(cs, txn, sid, ids, &n)) != HV_OK) {
		goto out;
	}
	if (n > 0 && (recs = calloc(n, sizeof(*recs))) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if ((st = consent_record_get(cs, txn, ids[i], &recs[i])) != HV_OK) {
			st = st == HV_NOT_FOUND ? HV_DATA_LOSS : st; /* the index names it */
			goto out;
		}
		nrcp += recs[i]->n_recipients;
		for (size_t r = 0; r < recs[i]->n_recipients; r++) {
			strbytes += strlen(recs[i]->recipients[r]) + 1;
		}
	}
	if ((v = view_alloc(sid, sgen, n, nrcp, strbytes, &rp, &sp)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	snprintf(v->cv_holder, sizeof(v->cv_holder), "%s", consent_holder(rec));
	for (size_t i = 0; i < n; i++) {
		const Haven__Consent__V1__ConsentRecord *c  = recs[i];
		view_consent                            *vc = &v->cv_consents[i];

		memcpy(vc->vc_id, ids[i], CONSENT_ID_LEN);
		vc->vc_purposes    = enum_bits((const int *) c->purposes, c->n_purposes);
		vc->vc_categories  = enum_bits((const int *) c->categories, c->n_categories);
		vc->vc_accepting   = c->accepting_provider;
		vc->vc_valid_from  = c->valid_from_ms;
		vc->vc_expires     = c->expires_ms;
		vc->vc_withdrawn   = c->withdrawn_at_ms;
		vc->vc_recorded    = c->recorded_at_ms;
		vc->vc_recipients  = rp;
		vc->vc_nrecipients = c->n_recipients;
		for (size_t r = 0; r < c->n_recipients; r++) {
			size_t len = strlen(c->recipients[r]) + 1;
			memcpy(sp, c->recipients[r], len);
			*rp++ = sp;
			sp += len;
		}
	}
	*out = v;
	st   = HV_OK;
out:
	for (size_t i = 0; recs != NULL && i < n; i++) {
		if (recs[i] != NULL) {
			protobuf_c_message_free_unpacked(&recs[i]->base, NULL);
		}
	}
	free(recs);
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return (st);
}

/* ---- stored views (consent.views) ----------------------------------------------------------
 *
 * subject id -> the subject's view as view_read reads it, so that a Check the cache cannot
 * answer reads one value instead of the subject, its consent index and each consent. Encoded,
 * integers little-endian:
 *
 *   u8 version (1) | u64 subject generation | u16 len, holder (consent_holder) |
 *   u16 n | n x { id[16] | u32 purposes | u32 categories | u8 accepting |
 *                 i64 valid_from | i64 expires | i64 withdrawn | i64 recorded |
 *                 u16 recipients | each: u16 len, bytes }
 *
 * consent_changed, which every write that changes a view calls after its change, rewrites it
 * in the same transaction (an erased subject's is deleted). So a stored view is always what
 * view_read would read in the same snapshot; a subject without one (no consent ever changed,
 * or a store from before this table until consent_open fills it) is read from its records. */

#define VIEW_VERSION      1
#define VIEWS_BUILD_BATCH 1000 /* subjects per transaction when filling consent.views */

static uint8_t *
le_put(uint8_t *p, uint64_t v, size_t n)
{
	hv_put_le(p, v, n);
	return (p + n);
}

static uint8_t *
str_put(uint8_t *p, const char *s, size_t len)
{
	p = le_put(p, len, 2);
	memcpy(p, s, len);
	return (p + len);
}

static hv_status
view_store(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN])
{
	consent_view *v = NULL;
	uint8_t      *buf, *p;
	size_t        len, cl;
	hv_status     st;

	if ((st = view_read(cs, txn, sid, &v, NULL, 0)) == HV_NOT_FOUND) {
		st = store_del(txn, cs->cs_views, sid, CONSENT_ID_LEN); /* erased */
		return (st == HV_NOT_FOUND ? HV_OK : st);
	}
	if (st != HV_OK) {
		return (st);
	}
	cl  = strlen(v->cv_holder);
	len = 1 + 8 + 2 + cl + 2;
	for (size_t i = 0; i < v->cv_n; i++) {
		len += CONSENT_ID_LEN + 4 + 4 + 1 + 4 * 8 + 2;
		for (size_t r = 0; r < v->cv_consents[i].vc_nrecipients; r++) {
			size_t rl = strlen(v->cv_consents[i].vc_recipients[r]);
			if (rl > UINT16_MAX) {
				view_free(v);
				return (HV_INTERNAL); /* Grant takes organisation ids only */
			}
			len += 2 + rl;
		}
	}
	if ((buf = malloc(len)) == NULL) {
		view_free(v);
		return (HV_RESOURCE_EXHAUSTED);
	}
	p    = buf;
	*p++ = VIEW_VERSION;
	p    = le_put(p, v->cv_sgen, 8);
	p    = str_put(p, v->cv_holder, cl);
	p    = le_put(p, v->cv_n, 2);
	for (size_t i = 0; i < v->cv_n; i++) {
		const view_consent *c = &v->cv_consents[i];

		memcpy(p, c->vc_id, CONSENT_ID_LEN);
		p    = le_put(p + CONSENT_ID_LEN, c->vc_purposes, 4);
		p    = le_put(p, c->vc_categories, 4);
		*p++ = c->vc_accepting ? 1 : 0;
		p    = le_put(p, (uint64_t) c->vc_valid_from, 8);
		p    = le_put(p, (uint64_t) c->vc_expires, 8);
		p    = le_put(p, (uint64_t) c->vc_withdrawn, 8);
		p    = le_put(p, (uint64_t) c->vc_recorded, 8);
		p    = le_put(p, c->vc_nrecipients, 2);
		for (size_t r = 0; r < c->vc_nrecipients; r++) {
			p = str_put(p, c->vc_recipients[r], strlen(c->vc_recipients[r]));
		}
	}
	st = store_put(txn, cs->cs_views, sid, CONSENT_ID_LEN, buf, len);
	free(buf);
	view_free(v);
	return (st);
}

/* A bounds-checked reader of an encoded view. */
typedef struct view_in {
	const uint8_t *vi_p, *vi_end;
	bool           vi_bad;
} view_in;

static uint64_t
le_get(view_in *in, size_t n)
{
	uint64_t v;

	if ((size_t) (in->vi_end - in->vi_p) < n) {
		in->vi_bad = true;
		return (0);
	}
	v = hv_get_le(in->vi_p, n);
	in->vi_p += n;
	return (v);
}

static const uint8_t *
bytes_get(view_in *in, size_t n)
{
	const uint8_t *p = in->vi_p;

	if ((size_t) (in->vi_end - in->vi_p) < n) {
		in->vi_bad = true;
		return (NULL);
	}
	in->vi_p += n;
	return (p);
}

/* Walks one consent's fields; counts its recipients and their bytes into *nrcp, *strbytes;
 * with c, also fills it (strings through *rp, *sp). */
static void
consent_in(view_in *in, view_consent *c, size_t *nrcp, size_t *strbytes, const char ***rp,
    char **sp)
{
	const uint8_t *id       = bytes_get(in, CONSENT_ID_LEN);
	uint32_t       purposes = (uint32_t) le_get(in, 4), categories = (uint32_t) le_get(in, 4);
	uint64_t       accepting = le_get(in, 1);
	int64_t        t[4];
	size_t         nr;

	for (int i = 0; i < 4; i++) {
		t[i] = (int64_t) le_get(in, 8);
	}
	nr = (size_t) le_get(in, 2);
	if (c != NULL && !in->vi_bad) {
		memcpy(c->vc_id, id, CONSENT_ID_LEN);
		c->vc_purposes    = purposes;
		c->vc_categories  = categories;
		c->vc_accepting   = accepting != 0;
		c->vc_valid_from  = t[0];
		c->vc_expires     = t[1];
		c->vc_withdrawn   = t[2];
		c->vc_recorded    = t[3];
		c->vc_recipients  = *rp;
		c->vc_nrecipients = nr;
	}
	for (size_t r = 0; r < nr && !in->vi_bad; r++) {
		size_t         len = (size_t) le_get(in, 2);
		const uint8_t *s   = bytes_get(in, len);

		if (s == NULL || memchr(s, '\0', len) != NULL) {
			in->vi_bad = true;
			break;
		}
		*nrcp += 1;
		*strbytes += len + 1;
		if (c != NULL) {
			memcpy(*sp, s, len);
			(*sp)[len] = '\0';
			*(*rp)++   = *sp;
			*sp += len + 1;
		}
	}
}

/* Decodes a stored view: DATA_LOSS when it is not one this code wrote. */
static hv_status
view_decode(const uint8_t sid[CONSENT_ID_LEN], const void *val, size_t vlen, consent_view **out)
{
	view_in        in = { val, (const uint8_t *) val + vlen, false };
	uint64_t       sgen;
	size_t         cl, n, nrcp = 0, strbytes = 0;
	const uint8_t *cb;
	const char   **rp;
	char          *sp;
	consent_view  *v;

	*out = NULL;
	if (le_get(&in, 1) != VIEW_VERSION) {
		return (HV_DATA_LOSS);
	}
	sgen = le_get(&in, 8);
	cl   = (size_t) le_get(&in, 2);
	cb   = bytes_get(&in, cl);
	n    = (size_t) le_get(&in, 2);
	if (in.vi_bad || cl >= RPC_ORG_ID_MAX || memchr(cb, '\0', cl) != NULL ||
	    n > CONSENTS_PER_SUBJECT_MAX) {
		return (HV_DATA_LOSS);
	}
	/* Once to check and size it, once to fill it. */
	{
		view_in first = in;
		for (size_t i = 0; i < n && !first.vi_bad; i++) {
			consent_in(&first, NULL, &nrcp, &strbytes, NULL, NULL);
		}
		if (first.vi_bad || first.vi_p != first.vi_end) {
			return (HV_DATA_LOSS);
		}
	}
	if ((v = view_alloc(sid, sgen, n, nrcp, strbytes, &rp, &sp)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	memcpy(v->cv_holder, cb, cl);
	v->cv_holder[cl] = '\0';
	nrcp = strbytes = 0;
	for (size_t i = 0; i < n; i++) {
		consent_in(&in, &v->cv_consents[i], &nrcp, &strbytes, &rp, &sp);
	}
	*out = v;
	return (HV_OK);
}

hv_status
view_load(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    consent_view **out, char *err, size_t errsz)
{
	const void *val;
	size_t      vlen;
	hv_status   st;

	*out = NULL;
	if ((st = store_get(txn, cs->cs_views, sid, CONSENT_ID_LEN, &val, &vlen)) == HV_NOT_FOUND) {
		return (view_read(cs, txn, sid, out, err, errsz));
	}
	if (st == HV_OK && (st = view_decode(sid, val, vlen, out)) == HV_DATA_LOSS) {
		char hex[CONSENT_ID_HEX];

		consent_id_format(sid, hex);
		return (
		    hv_fail(err, errsz, st, "the stored consents of subject %s do not read", hex));
	}
	return (st);
}

/* Fills consent.views for subjects from after (exclusive; NULL: the first) on, at most
 * VIEWS_BUILD_BATCH of them; *next is the last one done, *done whether none are left. */
typedef struct views_build_job {
	consent_service *vb_cs;
	uint8_t          vb_after[CONSENT_ID_LEN];
	bool             vb_started, vb_done;
	size_t           vb_n;
} views_build_job;

static hv_status
views_build_fn(store_txn *txn, void *arg)
{
	views_build_job *j = arg;
	uint8_t          sids[VIEWS_BUILD_BATCH][CONSENT_ID_LEN];
	size_t           n = 0;
	store_cursor    *cur;
	const void      *k;
	size_t           kl;
	hv_status        st, rc;

	/* Ids first, views after: view_store reads and writes while no cursor is open. */
	if ((st = store_cursor_open(txn, j->vb_cs->cs_subjects, &cur)) != HV_OK) {
		return (st);
	}
	rc = store_cursor_seek(cur, j->vb_after, j->vb_started ? CONSENT_ID_LEN : 0, &k, &kl, NULL,
	    NULL);
	if (rc == HV_OK && j->vb_started && kl == CONSENT_ID_LEN &&
	    memcmp(k, j->vb_after, CONSENT_ID_LEN) == 0) {
		rc = store_cursor_next(cur, &k, &kl, NULL, NULL);
	}
	for (; rc == HV_OK && n < VIEWS_BUILD_BATCH;
	     rc = store_cursor_next(cur, &k, &kl, NULL, NULL)) {
		if (kl == CONSENT_ID_LEN) {
			memcpy(sids[n++], k, CONSENT_ID_LEN);
		}
	}
	store_cursor_close(cur);
	if (rc != HV_OK && rc != HV_NOT_FOUND) {
		return (rc);
	}
	for (size_t i = 0; i < n; i++) {
		if ((st = view_store(j->vb_cs, txn, sids[i])) != HV_OK) {
			return (st);
		}
	}
	j->vb_done = rc == HV_NOT_FOUND;
	j->vb_n += n;
	if (n > 0) {
		memcpy(j->vb_after, sids[n - 1], CONSENT_ID_LEN);
		j->vb_started = true;
	}
	if (j->vb_done) {
		return (store_put(txn, j->vb_cs->cs_meta, VIEWS_BUILT_KEY, strlen(VIEWS_BUILT_KEY),
		    "1", 1));
	}
	return (HV_OK);
}

hv_status
views_prepare(consent_service *cs)
{
	views_build_job j;
	store_txn      *txn;
	hv_status       st;

	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = store_get(txn, cs->cs_meta, VIEWS_BUILT_KEY, strlen(VIEWS_BUILT_KEY), NULL, NULL);
	store_read_end(txn);
	if (st != HV_NOT_FOUND) {
		return (st);
	}
	memset(&j, 0, sizeof(j));
	j.vb_cs = cs;
	do {
		if ((st = store_write(cs->cs_store, views_build_fn, &j)) != HV_OK) {
			return (st);
		}
	} while (!j.vb_done);
	if (j.vb_n > 0) {
		log_info("consent: stored the consent views of %zu subjects", j.vb_n);
	}
	return (HV_OK);
}

void
view_free(consent_view *v)
{
	free(v);
}

static bool
has_str(const char *const *v, size_t n, const char *x)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i], x) == 0) {
			return (true);
		}
	}
	return (false);
}

void
view_decide(const consent_view *v, const char *subject_hex, int purpose, const char *recipient,
    bool accepting, int category, int64_t now, consent_decision *out)
{
	const char *pname = consent_purpose_name(purpose);
	const char *id    = out->consent_id;
	int         best  = 0; /* how close the closest consent came */
	int64_t     at    = 0; /* and when it was recorded */

	memset(out, 0, sizeof(*out));
	out->reason = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_NO_CONSENT;
	for (size_t i = 0; i < v->cv_n; i++) {
		const view_consent            *c = &v->cv_consents[i];
		Haven__Consent__V1__DenyReason reason;
		int                            rank;

		if ((c->vc_purposes & (1u << purpose)) == 0) {
			rank   = 1;
			reason = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_PURPOSE;
		} else if (recipient[0] != '\0' &&
		    !has_str(c->vc_recipients, c->vc_nrecipients, recipient) &&
		    !(accepting && c->vc_accepting)) {
			rank   = 2;
			reason = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_RECIPIENT;
		} else if (category != 0 && (c->vc_categories & (1u << category)) == 0) {
			rank   = 3;
			reason = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_CATEGORY;
		} else if (c->vc_withdrawn != 0) {
			rank   = 4;
			reason = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_WITHDRAWN;
		} else if (now >= c->vc_expires) {
			rank   = 4;
			reason = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_EXPIRED;
		} else if (now < c->vc_valid_from) {
			rank   = 4;
			reason = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_NOT_YET_VALID;
		} else {
			out->allowed = true;
			out->reason  = HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_UNSPECIFIED;
			consent_id_format(c->vc_id, out->consent_id);
			break;
		}
		/* The closest consent names the reason; of equally close ones the newest (one
		 * withdrawn today says more than one that expired last year). */
		if (rank > best || (rank == best && c->vc_recorded > at)) {
			best        = rank;
			at          = c->vc_recorded;
			out->reason = reason;
			consent_id_format(c->vc_id, out->consent_id);
		}
	}
	switch (out->reason) {
	case HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_UNSPECIFIED:
		snprintf(out->message, sizeof(out->message), "consent %s allows it", id);
		break;
	case HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_NO_CONSENT:
		snprintf(out->message, sizeof(out->message),
		    "no consent is recorded for subject %s", subject_hex);
		break;
	case HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_PURPOSE:
		snprintf(out->message, sizeof(out->message),
		    "no consent of subject %s covers purpose %s", subject_hex, pname);
		break;
	case HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_RECIPIENT:
		snprintf(out->message, sizeof(out->message),
		    "no consent of subject %s for %s covers recipient %s", subject_hex, pname,
		    recipient);
		break;
	case HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_CATEGORY:
		snprintf(out->message, sizeof(out->message),
		    "consent %s does not cover data category %s", id,
		    consent_category_name(category));
		break;
	case HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_WITHDRAWN:
		snprintf(out->message, sizeof(out->message), "consent %s was withdrawn", id);
		break;
	case HAVEN__CONSENT__V1__DENY_REASON__DENY_REASON_EXPIRED:
		snprintf(out->message, sizeof(out->message), "consent %s expired", id);
		break;
	default:
		snprintf(out->message, sizeof(out->message), "consent %s is not valid yet", id);
		break;
	}
}

/* ---- the cache ------------------------------------------------------------------------------ */

/* Open addressing with linear probing over a power-of-two table at most half full. Views are
 * replaced, never removed one by one; a full cache is emptied and fills again. A slot is
 * written under the write lock and read under the read lock, and also read by
 * view_cache_prefetch_view without any: all of them atomically, relaxed.
 *
 * Every Check takes the read lock and counts a hit or a miss, from every receiving thread, so
 * the lock, the counters and the fields a lookup reads each have a cache line of their own:
 * on one line, each lock taken elsewhere would take the line of vh_slots from this core. */
#define VIEW_CACHE_LINE 64
struct view_cache {
	_Alignas(VIEW_CACHE_LINE) consent_view **vh_slots;
	size_t vh_mask; /* slots - 1 */
	size_t vh_max;
	_Alignas(VIEW_CACHE_LINE) pthread_rwlock_t vh_lock;
	size_t vh_count;                            /* views held; under the write lock */
	_Alignas(VIEW_CACHE_LINE) uint64_t vh_hits; /* atomic */
	uint64_t vh_misses;                         /* atomic */
};

static consent_view *
slot_get(const view_cache *c, size_t i)
{
	return (__atomic_load_n(&c->vh_slots[i], __ATOMIC_RELAXED));
}

static void
slot_set(view_cache *c, size_t i, consent_view *v)
{
	__atomic_store_n(&c->vh_slots[i], v, __ATOMIC_RELAXED);
}

hv_status
view_cache_open(view_cache **out, size_t max)
{
	view_cache *c;
	size_t      slots = 16;

	*out = NULL;
	if (max == 0) {
		return (HV_OK); /* no cache */
	}
	while (slots < 2 * max) {
		slots *= 2;
	}
	if ((c = aligned_alloc(VIEW_CACHE_LINE, sizeof(*c))) != NULL) {
		memset(c, 0, sizeof(*c));
	}
	if (c == NULL || (c->vh_slots = calloc(slots, sizeof(*c->vh_slots))) == NULL) {
		free(c);
		return (HV_RESOURCE_EXHAUSTED);
	}
	c->vh_mask = slots - 1;
	c->vh_max  = max;
	pthread_rwlock_init(&c->vh_lock, NULL);
	*out = c;
	return (HV_OK);
}

static void
empty(view_cache *c)
{
	for (size_t i = 0; i <= c->vh_mask; i++) {
		view_free(slot_get(c, i));
		slot_set(c, i, NULL);
	}
	c->vh_count = 0;
}

void
view_cache_close(view_cache *c)
{
	if (c == NULL) {
		return;
	}
	empty(c);
	pthread_rwlock_destroy(&c->vh_lock);
	free(c->vh_slots);
	free(c);
}

/* Subject ids are random: their first bytes are a good hash. */
static size_t
slot_of(const view_cache *c, const uint8_t sid[CONSENT_ID_LEN])
{
	uint64_t h;

	memcpy(&h, sid, sizeof(h));
	return ((size_t) h & c->vh_mask);
}

/* Whether v, read at subject generation cv_sgen, is what txn would read: see the top. */
static hv_status
view_valid(consent_service *cs, store_txn *txn, consent_view *v, uint64_t gen, bool *valid)
{
	uint64_t  sgen;
	hv_status st;

	*valid = __atomic_load_n(&v->cv_gen, __ATOMIC_RELAXED) == gen;
	if (*valid) {
		return (HV_OK);
	}
	if ((st = consent_subject_generation(cs, txn, v->cv_sid, &sgen)) != HV_OK) {
		return (st);
	}
	if (sgen == v->cv_sgen) {
		/* Valid at gen too. Threads with other snapshots may race here; whichever gen
		 * stays, it is one the view was found valid at. */
		__atomic_store_n(&v->cv_gen, gen, __ATOMIC_RELAXED);
		*valid = true;
	}
	return (HV_OK);
}

void
view_cache_prefetch_slot(const view_cache *c, const uint8_t sid[CONSENT_ID_LEN])
{
	if (c != NULL) {
		__builtin_prefetch(&c->vh_slots[slot_of(c, sid)]);
	}
}

void
view_cache_prefetch_view(const view_cache *c, const uint8_t sid[CONSENT_ID_LEN])
{
	const consent_view *v;

	/* Without the lock: the view may be freed and replaced meanwhile, and a prefetch of
	 * memory that is gone is harmless (it never faults). The first lines: the header the
	 * lookup compares and the first consents view_decide reads. */
	if (c != NULL && (v = slot_get(c, slot_of(c, sid))) != NULL) {
		uintptr_t p = (uintptr_t) v; /* addresses only: v may be gone, or short */

		__builtin_prefetch((const void *) p);
		__builtin_prefetch((const void *) (p + VIEW_CACHE_LINE));
		__builtin_prefetch((const void *) (p + 2 * VIEW_CACHE_LINE));
	}
}

hv_status
view_cache_with(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    uint64_t gen, view_fn fn, void *arg, bool *hit)
{
	view_cache   *c = cs->cs_cache;
	consent_view *v;
	hv_status     st = HV_OK;

	*hit = false;
	if (c == NULL) {
		return (HV_OK);
	}
	pthread_rwlock_rdlock(&c->vh_lock);
	for (size_t i = slot_of(c, sid); (v = slot_get(c, i)) != NULL; i = (i + 1) & c->vh_mask) {
		if (memcmp(v->cv_sid, sid, CONSENT_ID_LEN) == 0) {
			if ((st = view_valid(cs, txn, v, gen, hit)) == HV_OK && *hit) {
				fn(v, arg);
			}
			break;
		}
	}
	pthread_rwlock_unlock(&c->vh_lock);
	__atomic_fetch_add(*hit ? &c->vh_hits : &c->vh_misses, 1, __ATOMIC_RELAXED);
	return (st);
}

void
view_cache_stats(view_cache *c, uint64_t *hits, uint64_t *misses)
{
	*hits   = c != NULL ? __atomic_load_n(&c->vh_hits, __ATOMIC_RELAXED) : 0;
	*misses = c != NULL ? __atomic_load_n(&c->vh_misses, __ATOMIC_RELAXED) : 0;
}

void
view_cache_put(view_cache *c, consent_view *v, uint64_t gen)
{
	consent_view *old;
	size_t        i;

	if (c == NULL) {
		view_free(v);
		return;
	}
	v->cv_gen = gen;
	pthread_rwlock_wrlock(&c->vh_lock);
	for (i = slot_of(c, v->cv_sid); (old = slot_get(c, i)) != NULL; i = (i + 1) & c->vh_mask) {
		if (memcmp(old->cv_sid, v->cv_sid, CONSENT_ID_LEN) == 0) {
			/* Another thread may have put a view of another generation meanwhile: the
			 * newer one stays. */
			if (old->cv_sgen <= v->cv_sgen) {
				slot_set(c, i, v);
				view_free(old);
				v = NULL;
			}
			goto out;
		}
	}
	if (c->vh_count == c->vh_max) {
		empty(c);
		i = slot_of(c, v->cv_sid);
	}
	slot_set(c, i, v);
	c->vh_count++;
	v = NULL;
out:
	pthread_rwlock_unlock(&c->vh_lock);
	view_free(v);
}
