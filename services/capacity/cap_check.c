/*
 * cap_check.c - the checks every organisation and service passes before anything is stored:
 * ids, text, enum values, regions, lists and numbers against the bounds in cap_internal.h,
 * and the one mapping between directory roles and RPC roles.
 *
 * Messages name the field and the bound, never the value of a text field (a contact or a name
 * may be personal data); numbers, enum values and region names are named, as they help the
 * caller and say nothing about a person.
 */
#include "cap_internal.h"

#include "haven/ids.h"
#include "haven/crypto.h"
#include "haven/pbenum.h"
#include "haven/text.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
	Haven__Capacity__V1__Role cr_role;
	rpc_role                  cr_rpc;
} role_map[] = {
	{ HAVEN__CAPACITY__V1__ROLE__REFERRER, RPC_ROLE_REFERRER },
	{ HAVEN__CAPACITY__V1__ROLE__PROVIDER, RPC_ROLE_PROVIDER },
	/* after PROVIDER: cap_role_from_rpc(RPC_ROLE_PROVIDER) is PROVIDER */
	{ HAVEN__CAPACITY__V1__ROLE__PEER_SUPPORT_GROUP, RPC_ROLE_PROVIDER },
	{ HAVEN__CAPACITY__V1__ROLE__MUNICIPALITY, RPC_ROLE_MUNICIPALITY },
	{ HAVEN__CAPACITY__V1__ROLE__COORDINATOR, RPC_ROLE_COORDINATOR },
	{ HAVEN__CAPACITY__V1__ROLE__ADMIN, RPC_ROLE_ADMIN },
	{ HAVEN__CAPACITY__V1__ROLE__NATIONAL_COORDINATOR, RPC_ROLE_NATIONAL_COORDINATOR },
};

rpc_role
cap_role_to_rpc(Haven__Capacity__V1__Role role)
{
	for (size_t i = 0; i < sizeof(role_map) / sizeof(role_map[0]); i++) {
		if (role_map[i].cr_role == role) {
			return (role_map[i].cr_rpc);
		}
	}
	return ((rpc_role) 0);
}

Haven__Capacity__V1__Role
cap_role_from_rpc(rpc_role role)
{
	for (size_t i = 0; i < sizeof(role_map) / sizeof(role_map[0]); i++) {
		if (role_map[i].cr_rpc == role) {
			return (role_map[i].cr_role);
		}
	}
	return (HAVEN__CAPACITY__V1__ROLE__ROLE_UNSPECIFIED);
}

hv_status
cap_org_may_run(const Haven__Capacity__V1__Organisation *org, Haven__Capacity__V1__ServiceType type,
    char *err, size_t errsz)
{
	if (org->role == HAVEN__CAPACITY__V1__ROLE__PROVIDER ||
	    (org->role == HAVEN__CAPACITY__V1__ROLE__PEER_SUPPORT_GROUP &&
	        type == HAVEN__CAPACITY__V1__SERVICE_TYPE__PEER_SUPPORT)) {
		return (HV_OK);
	}
	snprintf(err, errsz,
	    org->role == HAVEN__CAPACITY__V1__ROLE__PEER_SUPPORT_GROUP
	        ? "organisation %s is a peer-support group: it runs peer-support services only"
	        : "organisation %s is not a provider",
	    org->id);
	return (HV_FAILED_PRECONDITION);
}

bool
cap_enum_ok(const ProtobufCEnumDescriptor *d, int v, int limit)
{
	return (pbenum_ok(d, v) && v > 0 && v < limit);
}

int
cap_region_index(const cap_service *cs, const char *name)
{
	if (name == NULL || name[0] == '\0') {
		return (-1);
	}
	return (region_map_find(cs->cs_regions, name));
}

/* A refused field: the message into err, INVALID_ARGUMENT. */
#define fail(err, errsz, ...) hv_fail((err), (errsz), HV_INVALID_ARGUMENT, __VA_ARGS__)

static hv_status
check_text(const char *field, const char *s, size_t min, size_t max, char *err, size_t errsz)
{
	if (text_free_ok(s, min, max)) {
		return (HV_OK);
	}
	if (min == 0) {
		return (fail(err, errsz,
		    "%s must be at most %zu bytes of text without control "
		    "characters",
		    field, max));
	}
	return (fail(err, errsz, "%s must be %zu to %zu bytes of text without control characters",
	    field, min, max));
}

static hv_status
check_region(const cap_service *cs, const char *field, const char *name, char *err, size_t errsz)
{
	if (name == NULL || name[0] == '\0') {
		return (fail(err, errsz, "%s is required", field));
	}
	if (cap_region_index(cs, name) < 0) {
		/* Region names are public; a name that is not one is cut short. */
		return (
		    fail(err, errsz, "%s '%.64s' is not a region of the region map", field, name));
	}
	return (HV_OK);
}

/* A list of enum values: at most max, each known and specified, none twice. */
static hv_status
check_enum_list(const char *field, const ProtobufCEnumDescriptor *d, const int *v, size_t n,
    size_t min, size_t max, int limit, char *err, size_t errsz)
{
	char name[PBENUM_NAME_MAX];

	if (n < min || n > max) {
		return (fail(err, errsz, "%s must have %zu to %zu entries, not %zu", field, min,
		    max, n));
	}
	for (size_t i = 0; i < n; i++) {
		if (!cap_enum_ok(d, v[i], limit)) {
			return (fail(err, errsz, "%s: %d is not a known value", field, v[i]));
		}
		for (size_t j = 0; j < i; j++) {
			if (v[j] == v[i]) {
				return (fail(err, errsz, "%s lists %s twice", field,
				    pbenum_name(d, NULL, v[i], name, sizeof(name))));
			}
		}
	}
	return (HV_OK);
}

hv_status
cap_check_org(const cap_service *cs, const Haven__Capacity__V1__Organisation *org,
    char fingerprint[65], char *err, size_t errsz)
{
	hv_status st;
	size_t    certlen;

	if (fingerprint != NULL) {
		fingerprint[0] = '\0';
	}
	if (org == NULL) {
		return (fail(err, errsz, "organisation is required"));
	}
	if (!ids_valid(org->id)) {
		return (fail(err, errsz,
		    "organisation id must be 1 to %d characters of a-z 0-9 . _ -", CAP_ID_MAX - 1));
	}
	if ((st = check_text("name", org->name, 1, CAP_NAME_MAX, err, errsz)) != HV_OK) {
		return (st);
	}
	if (!cap_enum_ok(&haven__capacity__v1__role__descriptor, (int) org->role, 1 << 30)) {
		return (fail(err, errsz,
		    "role must be referrer, provider, peer-support-group, municipality, "
		    "coordinator, "
		    "national-coordinator or admin, not %d",
		    (int) org->role));
	}
	if ((st = check_region(cs, "region", org->region, err, errsz)) != HV_OK) {
		return (st);
	}
	if ((st = check_text("contact", org->contact, 0, CAP_NAME_MAX, err, errsz)) != HV_OK) {
		return (st);
	}
	certlen = org->cert_pem != NULL ? strlen(org->cert_pem) : 0;
	if (certlen > CAP_CERT_MAX) {
		return (fail(err, errsz, "cert_pem is over %d bytes", CAP_CERT_MAX));
	}
	if (certlen > 0) {
		char fp[65];
		if (crypto_cert_fingerprint(org->cert_pem, certlen, fp) != HV_OK) {
			return (fail(err, errsz, "cert_pem is not a PEM certificate"));
		}
		if (fingerprint != NULL) {
			memcpy(fingerprint, fp, sizeof(fp));
		}
	}
	return (HV_OK);
}

hv_status
cap_check_cert(const cap_service *cs, const char *org_id, const char *cert_pem, int64_t now_s,
    char *err, size_t errsz)
{
	char      why[160];
	hv_status st;

	st = crypto_cert_check(cert_pem, cert_pem != NULL ? strlen(cert_pem) : 0, cs->cs_ca_file,
	    org_id, now_s, why, sizeof(why));
	if (st != HV_OK) {
		snprintf(err, errsz, "cert_pem: %s", why);
	}
	return (st);
}

hv_status
cap_check_service_fields(const cap_service *cs, const Haven__Capacity__V1__Service *svc, char *err,
    size_t errsz)
{
	hv_status st;

	if (svc == NULL) {
		return (fail(err, errsz, "service is required"));
	}
	if ((st = check_text("name", svc->name, 0, CAP_NAME_MAX, err, errsz)) != HV_OK) {
		return (st);
	}
	if (!cap_enum_ok(&haven__capacity__v1__service_type__descriptor, (int) svc->type,
	        CAP_TYPES)) {
		return (fail(err, errsz, "type %d is not a known service type", (int) svc->type));
	}
	if ((st = check_region(cs, "service_area", svc->service_area, err, errsz)) != HV_OK) {
		return (st);
	}
	_Static_assert(sizeof(Haven__Capacity__V1__Population) == sizeof(int), "enums are ints");
	if ((st = check_enum_list("populations", &haven__capacity__v1__population__descriptor,
	         (const int *) svc->populations, svc->n_populations, 1, CAP_POPULATIONS_MAX,
	         CAP_POPULATIONS, err, errsz)) != HV_OK) {
		return (st);
	}
	if (svc->n_languages > CAP_LIST_MAX) {
		return (fail(err, errsz, "languages has %zu entries, at most %d allowed",
		    svc->n_languages, CAP_LIST_MAX));
	}
	for (size_t i = 0; i < svc->n_languages; i++) {
		if (!text_lang_ok(svc->languages[i])) {
			return (fail(err, errsz, "languages: entry %zu must be " TEXT_LANG_RULE,
			    i + 1));
		}
		for (size_t j = 0; j < i; j++) {
			if (strcasecmp(svc->languages[i], svc->languages[j]) == 0) {
				return (fail(err, errsz, "languages lists %s twice",
				    svc->languages[i]));
			}
		}
	}
	if (svc->n_accessibility > CAP_LIST_MAX) {
		return (fail(err, errsz, "accessibility has %zu entries, at most %d allowed",
		    svc->n_accessibility, CAP_LIST_MAX));
	}
	for (size_t i = 0; i < svc->n_accessibility; i++) {
		if (!text_token_ok(svc->accessibility[i], CAP_TOKEN_MAX)) {
			return (
			    fail(err, errsz, "accessibility: entry %zu must be " TEXT_TOKEN_RULE,
			        i + 1, CAP_TOKEN_MAX));
		}
	}
	if ((st = check_enum_list("specialisations", &haven__capacity__v1__exploitation__descriptor,
	         (const int *) svc->specialisations, svc->n_specialisations, 0, CAP_LIST_MAX,
	         1 << 30, err, errsz)) != HV_OK) {
		return (st);
	}
	if (svc->maximum < 1 || svc->maximum > CAP_PLACES_MAX) {
		return (fail(err, errsz, "maximum must be 1 to %d places, not %u", CAP_PLACES_MAX,
		    svc->maximum));
	}
	if ((st = check_text("unit", svc->unit, 0, CAP_UNIT_MAX, err, errsz)) != HV_OK) {
		return (st);
	}
	if (svc->report_interval_s != 0 &&
	    (svc->report_interval_s < CAP_INTERVAL_MIN_S ||
	        svc->report_interval_s > CAP_INTERVAL_MAX_S)) {
		return (
		    fail(err, errsz, "report_interval_s must be %d to %d seconds (0: %d), not %u",
		        CAP_INTERVAL_MIN_S, CAP_INTERVAL_MAX_S, CAP_INTERVAL_DEFAULT_S,
		        svc->report_interval_s));
	}
	if ((st = check_text("front_door_contact", svc->front_door_contact, 1, CAP_CONTACT_MAX, err,
	         errsz)) != HV_OK) {
		return (st);
	}
	return (HV_OK);
}

hv_status
cap_check_new_service(const cap_service *cs, const Haven__Capacity__V1__Service *svc, char *err,
    size_t errsz)
{
	hv_status st;

	if (svc == NULL) {
		return (fail(err, errsz, "service is required"));
	}
	if (svc->id != NULL && svc->id[0] != '\0' && !ids_valid(svc->id)) {
		return (fail(err, errsz,
		    "service id must be empty or 1 to %d characters of a-z 0-9 . _ -",
		    CAP_ID_MAX - 1));
	}
	if (!ids_valid(svc->org_id)) {
		return (fail(err, errsz, "org_id must be 1 to %d characters of a-z 0-9 . _ -",
		    CAP_ID_MAX - 1));
	}
	if ((st = cap_check_service_fields(cs, svc, err, errsz)) != HV_OK) {
		return (st);
	}
	if (svc->available > svc->maximum) {
		return (fail(err, errsz, "available %u is over the maximum of %u places",
		    svc->available, svc->maximum));
	}
	return (HV_OK);
}
