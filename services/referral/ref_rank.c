/*
 * ref_rank.c - routing's order and its language rule: the comparison of two candidates' ranks
 * (docs/referral.md, Routing: smaller first, the service id breaking ties) and whether a
 * service's languages serve a need's language tag. The search that uses them is ref_route.c.
 */
#include "ref_internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

int
ref_rank_cmp(const ref_rank *a, const ref_rank *b)
{
#define CMP(f)                                                                                     \
	if (a->f != b->f) {                                                                        \
		return (a->f < b->f ? -1 : 1);                                                     \
	}
	CMP(rk_stale)
	CMP(rk_nonpref)
	CMP(rk_reach)
	CMP(rk_missing)
	CMP(rk_distance)
	CMP(rk_nonspec)
	CMP(rk_age_ms)
#undef CMP
	return (strcmp(a->rk_id, b->rk_id));
}

/* Whether a is b's primary subtag ("en" and "en-GB"). */
static bool
lang_prefix(const char *a, const char *b)
{
	size_t n = strlen(a);

	return (strncasecmp(a, b, n) == 0 && b[n] == '-');
}

bool
ref_lang_match(const char *want, char *const *langs, size_t n)
{
	int w0 = tolower((unsigned char) want[0]);

	for (size_t i = 0; i < n; i++) {
		/* Every way of matching starts with the same letter: most tags differ there. */
		if (tolower((unsigned char) langs[i][0]) != w0) {
			continue;
		}
		if (strcasecmp(want, langs[i]) == 0 || lang_prefix(want, langs[i]) ||
		    lang_prefix(langs[i], want)) {
			return (true);
		}
	}
	return (false);
}
