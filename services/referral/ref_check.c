/*
 * ref_check.c - the checks a referral request passes before anything is read or stored:
 * subject, urgency, form of exploitation, needs, regions and texts against the bounds in
 * ref_internal.h.
 *
 * Messages name the field and the bound, never the value of a text field (a note or a reason
 * may hold personal data by mistake); numbers, enum values and region names are named.
 */
#include "ref_internal.h"

#include "haven/pbenum.h"
#include "haven/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A refused field: the message into err, INVALID_ARGUMENT. */
#define fail(err, errsz, ...) hv_fail((err), (errsz), HV_INVALID_ARGUMENT, __VA_ARGS__)

hv_status
ref_check_text(const char *what, const char *s, bool required, char *err, size_t errsz)
{
	if (required && (s == NULL || s[0] == '\0')) {
		return (fail(err, errsz, "%s is required", what));
	}
	if (!text_free_ok(s, 0, REF_TEXT_MAX)) {
		return (fail(err, errsz, "%s must be at most %d bytes of printable UTF-8", what,
		    REF_TEXT_MAX));
	}
	return (HV_OK);
}

static bool
subject_ok(const char *s)
{
	size_t i;

	if (s == NULL) {
		return (false);
	}
	for (i = 0; s[i] != '\0'; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
			return (false);
		}
	}
	return (i == REF_SUBJECT_LEN);
}

/* Region names to a mask of map indices. */
static hv_status
region_mask(const ref_service *rs, const char *what, char *const *names, size_t n, uint64_t *mask,
    char *err, size_t errsz)
{
	*mask = 0;
	if (n > REF_REGIONS_MAX) {
		return (fail(err, errsz, "at most %d %s regions", REF_REGIONS_MAX, what));
	}
	for (size_t i = 0; i < n; i++) {
		int idx = region_map_find(rs->rs_regions, names[i]);

		if (idx < 0) {
			/* A region name is no personal data: named when it looks like one. */
			return (fail(err, errsz, "unknown region %s",
			    text_free_ok(names[i], 1, REGION_NAME_MAX - 1) ? names[i]
			                                                   : "(not a name)"));
		}
		*mask |= (uint64_t) 1 << idx;
	}
	return (HV_OK);
}

hv_status
ref_check_need(size_t i, const Haven__Referral__V1__NeedRequest *n, char *err, size_t errsz)
{
	if (!pbenum_ok(&haven__capacity__v1__service_type__descriptor, (int) n->type) ||
	    (int) n->type >= REF_SERVICE_TYPES) {
		return (fail(err, errsz, "need %zu: unknown service type %d", i, (int) n->type));
	}
	if (!pbenum_ok(&haven__capacity__v1__population__descriptor, (int) n->population)) {
		return (
		    fail(err, errsz, "need %zu: unknown population %d", i, (int) n->population));
	}
	if (n->n_languages > REF_LANGS_MAX) {
		return (fail(err, errsz, "need %zu: at most %d languages", i, REF_LANGS_MAX));
	}
	for (size_t j = 0; j < n->n_languages; j++) {
		if (!text_lang_ok(n->languages[j])) {
			return (
			    fail(err, errsz, "need %zu: a language must be " TEXT_LANG_RULE, i));
		}
	}
	if (n->n_accessibility > REF_ACCESS_MAX) {
		return (fail(err, errsz, "need %zu: at most %d accessibility entries", i,
		    REF_ACCESS_MAX));
	}
	for (size_t j = 0; j < n->n_accessibility; j++) {
		if (!text_token_ok(n->accessibility[j], REF_TOKEN_MAX)) {
			return (
			    fail(err, errsz, "need %zu: an accessibility entry is " TEXT_TOKEN_RULE,
			        i, REF_TOKEN_MAX));
		}
	}
	return (HV_OK);
}

hv_status
ref_check_regions(const ref_service *rs, char *const *excl, size_t nexcl, char *const *pref,
    size_t npref, uint64_t *excluded, uint64_t *preferred, char *err, size_t errsz)
{
	size_t    nreg = region_map_count(rs->rs_regions);
	uint64_t  all  = nreg >= 64 ? UINT64_MAX : (((uint64_t) 1 << nreg) - 1);
	hv_status st;

	if ((st = region_mask(rs, "excluded", excl, nexcl, excluded, err, errsz)) != HV_OK ||
	    (st = region_mask(rs, "preferred", pref, npref, preferred, err, errsz)) != HV_OK) {
		return (st);
	}
	if ((*excluded & all) == all) {
		return (fail(err, errsz, "every region is excluded"));
	}
	for (size_t i = 0; i < nreg && i < 64; i++) {
		if ((*excluded & *preferred & ((uint64_t) 1 << i)) != 0) {
			return (fail(err, errsz, "region %s is both excluded and preferred",
			    region_map_name(rs->rs_regions, i)));
		}
	}
	return (HV_OK);
}

hv_status
ref_check_create(const ref_service *rs, const Haven__Referral__V1__CreateReferralRequest *req,
    uint64_t *excluded, uint64_t *preferred, char *err, size_t errsz)
{
	hv_status st;

	if (!subject_ok(req->subject)) {
		return (
		    fail(err, errsz, "subject must be %d lower-case hex digits", REF_SUBJECT_LEN));
	}
	if (!pbenum_ok(&haven__referral__v1__urgency__descriptor, (int) req->urgency)) {
		return (fail(err, errsz, "urgency must be immediate, urgent or planned, not %d",
		    (int) req->urgency));
	}
	if (!pbenum_ok(&haven__referral__v1__exploitation__descriptor, (int) req->exploitation)) {
		return (fail(err, errsz,
		    "exploitation must be labour, sexual, criminal, other or unknown, not %d",
		    (int) req->exploitation));
	}
	if (req->n_needs < 1 || req->n_needs > REF_NEEDS_MAX) {
		return (fail(err, errsz, "a referral has 1 to %d needs, not %zu", REF_NEEDS_MAX,
		    req->n_needs));
	}
	for (size_t i = 0; i < req->n_needs; i++) {
		if ((st = ref_check_need(i, req->needs[i], err, errsz)) != HV_OK) {
			return (st);
		}
	}
	if ((st = ref_check_regions(rs, req->excluded_regions, req->n_excluded_regions,
	         req->preferred_regions, req->n_preferred_regions, excluded, preferred, err,
	         errsz)) != HV_OK) {
		return (st);
	}
	if (!text_free_ok(req->note, 0, REF_TEXT_MAX)) {
		return (fail(err, errsz, "note must be at most %d bytes of printable UTF-8",
		    REF_TEXT_MAX));
	}
	return (HV_OK);
}

hv_status
ref_check_update(const Haven__Referral__V1__UpdateReferralRequest *req, char *err, size_t errsz)
{
	hv_status st;

	if ((st = ref_check_text("reason", req->reason, true, err, errsz)) != HV_OK) {
		return (st);
	}
	if (req->urgency != 0 &&
	    !pbenum_ok(&haven__referral__v1__urgency__descriptor, (int) req->urgency)) {
		return (fail(err, errsz, "urgency must be immediate, urgent or planned, not %d",
		    (int) req->urgency));
	}
	if ((!req->set_excluded_regions && req->n_excluded_regions > 0) ||
	    (!req->set_preferred_regions && req->n_preferred_regions > 0)) {
		return (fail(err, errsz,
		    "regions are replaced only with set_excluded_regions or "
		    "set_preferred_regions"));
	}
	if (!req->set_note && req->note[0] != '\0') {
		return (fail(err, errsz, "the note is replaced only with set_note"));
	}
	if (req->set_note && !text_free_ok(req->note, 0, REF_TEXT_MAX)) {
		return (fail(err, errsz, "note must be at most %d bytes of printable UTF-8",
		    REF_TEXT_MAX));
	}
	if (req->n_add_needs > REF_NEEDS_MAX || req->n_cancel_needs > REF_NEEDS_MAX) {
		return (fail(err, errsz, "at most %d needs added and %d cancelled", REF_NEEDS_MAX,
		    REF_NEEDS_MAX));
	}
	for (size_t i = 0; i < req->n_add_needs; i++) {
		if ((st = ref_check_need(i, req->add_needs[i], err, errsz)) != HV_OK) {
			return (st);
		}
	}
	if (req->urgency == 0 && !req->set_excluded_regions && !req->set_preferred_regions &&
	    !req->set_note && req->n_add_needs == 0 && req->n_cancel_needs == 0) {
		return (fail(err, errsz,
		    "nothing to change: give urgency, regions, a note, needs to "
		    "add or needs to cancel"));
	}
	return (HV_OK);
}
