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
#include "consent_internal.h"

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
consent_subject_generation(consent_service *cs, store_txn *txn,
    const uint8_t sid[CONSENT_ID_LEN], uint64_t *gen)
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
	    HV_OK) {
		return (st);
	}
	return (store_put(txn, cs->cs_subject_gen, sid, CONSENT_ID_LEN, &gen, sizeof(gen)));
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

hv_status
view_load(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
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
	/* One allocation: the view, its consents, the recipient pointers, their strings. */
	if ((v = malloc(sizeof(*v) + n * sizeof(view_consent) + nrcp * sizeof(char *) +
	         strbytes)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	memset(v, 0, sizeof(*v));
	memcpy(v->cv_sid, sid, CONSENT_ID_LEN);
	v->cv_sgen = sgen;
	snprintf(v->cv_created_by, sizeof(v->cv_created_by), "%s", rec->created_by);
	v->cv_n        = n;
	v->cv_consents = (view_consent *) (v + 1);
	rp             = (const char **) (v->cv_consents + n);
	sp             = (char *) (rp + nrcp);
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
		snprintf(out->message, sizeof(out->message), "no consent is recorded for subject %s",
		    subject_hex);
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
 * replaced, never removed one by one; a full cache is emptied and fills again. */
struct view_cache {
	pthread_rwlock_t vh_lock;
	consent_view   **vh_slots;
	size_t           vh_mask;  /* slots - 1 */
	size_t           vh_count; /* views held */
	size_t           vh_max;
	uint64_t         vh_hits;   /* atomic */
	uint64_t         vh_misses; /* atomic */
};

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
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->vh_slots = calloc(slots, sizeof(*c->vh_slots))) == NULL) {
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
		view_free(c->vh_slots[i]);
		c->vh_slots[i] = NULL;
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

hv_status
view_cache_with(consent_service *cs, store_txn *txn, const uint8_t sid[CONSENT_ID_LEN],
    uint64_t gen, view_fn fn, void *arg, bool *hit)
{
	view_cache *c  = cs->cs_cache;
	hv_status   st = HV_OK;

	*hit = false;
	if (c == NULL) {
		return (HV_OK);
	}
	pthread_rwlock_rdlock(&c->vh_lock);
	for (size_t i = slot_of(c, sid); c->vh_slots[i] != NULL; i = (i + 1) & c->vh_mask) {
		if (memcmp(c->vh_slots[i]->cv_sid, sid, CONSENT_ID_LEN) == 0) {
			if ((st = view_valid(cs, txn, c->vh_slots[i], gen, hit)) == HV_OK && *hit) {
				fn(c->vh_slots[i], arg);
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
	size_t i;

	if (c == NULL) {
		view_free(v);
		return;
	}
	v->cv_gen = gen;
	pthread_rwlock_wrlock(&c->vh_lock);
	for (i = slot_of(c, v->cv_sid); c->vh_slots[i] != NULL; i = (i + 1) & c->vh_mask) {
		if (memcmp(c->vh_slots[i]->cv_sid, v->cv_sid, CONSENT_ID_LEN) == 0) {
			/* Another thread may have put a view of another generation meanwhile: the
			 * newer one stays. */
			if (c->vh_slots[i]->cv_sgen <= v->cv_sgen) {
				view_free(c->vh_slots[i]);
				c->vh_slots[i] = v;
				v              = NULL;
			}
			goto out;
		}
	}
	if (c->vh_count == c->vh_max) {
		empty(c);
		i = slot_of(c, v->cv_sid);
	}
	c->vh_slots[i] = v;
	c->vh_count++;
	v = NULL;
out:
	pthread_rwlock_unlock(&c->vh_lock);
	view_free(v);
}
