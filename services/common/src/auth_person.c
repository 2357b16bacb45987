/*
 * auth_person.c - the identity of people (services/people) as the RPC server sees it: a
 * person's session token verified through the people service's verifier and then held
 * against the partner directory like an organisation's token, and the per-person rule the
 * server applies before a handler runs (a viewer reads only).
 *
 * Nothing here logs a token, a login name or any other personal data; refusals name causes.
 */
#include "haven/auth.h"

#include <string.h>

#include "auth_internal.h"
#include "haven/log.h"

hv_status
auth__session_verify(auth_session_fn fn, void *arg, auth_lookup_fn lookup, void *lookup_arg,
    const char *token, int64_t now_ms, bool use, rpc_caller *caller)
{
	auth_session s;
	auth_org     org;
	const char  *why = "no session verifier";
	hv_status    st  = HV_UNAUTHENTICATED;

	memset(&s, 0, sizeof(s));
	memset(&org, 0, sizeof(org));
	if (fn == NULL) {
		goto out;
	}
	if ((st = fn(arg, token, now_ms, use, &s)) != HV_OK) {
		why = "session unknown, expired or revoked";
		goto out;
	}
	if ((st = lookup(lookup_arg, s.org_id, &org)) != HV_OK) {
		memset(&org, 0, sizeof(org)); /* not ours to free after a failure (auth.h) */
		why = "directory lookup failed";
		if (st == HV_NOT_FOUND || st == HV_INVALID_ARGUMENT) {
			why = "organisation unknown";
			st  = HV_UNAUTHENTICATED;
		}
		goto out;
	}
	st = HV_UNAUTHENTICATED;
	if (!org.enabled) {
		why = "organisation disabled";
	} else if (!auth__role_issuable((unsigned) org.role)) {
		why = "organisation's role may not sign in";
	} else if (org.version != s.org_version) {
		why = "organisation's record changed since the person signed in";
	} else if (s.person_id[0] == '\0' || s.person_role == RPC_PERSON_NONE) {
		why = "session names no person";
	} else {
		st = HV_OK;
	}
	if (st == HV_OK && caller != NULL) {
		caller->role = org.role;
		memcpy(caller->org_id, s.org_id, sizeof(caller->org_id));
		caller->org_id[sizeof(caller->org_id) - 1] = '\0';
		memcpy(caller->person.id, s.person_id, sizeof(caller->person.id));
		caller->person.id[sizeof(caller->person.id) - 1] = '\0';
		caller->person.role                              = s.person_role;
	}
out:
	if (st != HV_OK && log_enabled(LOG_LEVEL_DEBUG)) {
		log_debug("person's session refused: %s", why);
	}
	auth__org_release(&org);
	return (st);
}

/* Whether the method part of a full name ("pkg.Svc/Method") only reads. */
static bool
method_reads(const char *method)
{
	static const char *const prefixes[] = { "Get", "List", "Find", "Watch", "Count" };
	static const char *const names[] = { "Check", "Verify", "Status", "Summary", "Statistics",
		"Echo", "Logout" };
	const char              *m       = strrchr(method, '/');

	if (m == NULL) {
		return (false);
	}
	m++;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t n = strlen(prefixes[i]);
		/* "Get" followed by an upper-case letter or the end: GetSubject, not Getaway. */
		if (strncmp(m, prefixes[i], n) == 0 &&
		    (m[n] == '\0' || (m[n] >= 'A' && m[n] <= 'Z'))) {
			return (true);
		}
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(m, names[i]) == 0) {
			return (true);
		}
	}
	return (false);
}

bool
auth_person_allows(const rpc_caller *caller, const char *method)
{
	if (caller == NULL || caller->person.id[0] == '\0') {
		return (true);
	}
	switch (caller->person.role) {
	case RPC_PERSON_ORG_ADMIN:
	case RPC_PERSON_CASE_WORKER:
		return (true);
	case RPC_PERSON_VIEWER:
		return (method != NULL && method_reads(method));
	default:
		return (false);
	}
}
