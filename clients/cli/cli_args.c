/*
 * cli_args.c - a command's words: positional ones and --name VALUE (or --name=VALUE) options
 * (see cli.h). Every command file parses with these, so the CLI's usage errors read the same
 * everywhere.
 */
#include "cli.h"

#include "haven/pbenum.h"
#include "haven/referral/v1/referral.pb-c.h"
#include "haven/text.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Whether name's first n bytes are a word of the space-separated list (NULL: none). name may
 * go on after them ("key=value"). */
static bool
listed(const char *list, const char *name, size_t n)
{
	const char *p = list;

	while (p != NULL && *p != '\0') {
		size_t len = strcspn(p, " ");
		if (len == n && n > 0 && memcmp(p, name, n) == 0) {
			return (true);
		}
		p += len;
		p += strspn(p, " ");
	}
	return (false);
}

int
cli_args_parse(cli_args *a, int argc, char **argv, const char *cmd, size_t npos, const char *valued,
    const char *flags)
{
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc; i++) {
		const char *w = argv[i];
		const char *eq;
		size_t      n;

		if (strncmp(w, "--", 2) != 0 || w[2] == '\0') {
			if (a->npos == npos || a->npos == CLI_POS_MAX) {
				return (cli_usage("%s: unexpected argument '%s'", cmd, w));
			}
			a->pos[a->npos++] = w;
			continue;
		}
		w += 2;
		eq = strchr(w, '=');
		n  = eq != NULL ? (size_t) (eq - w) : strlen(w);
		if (a->nopt == CLI_OPTS_MAX) {
			return (cli_usage("%s: too many options", cmd));
		}
		a->opt[a->nopt].name = w;
		if (eq == NULL && listed(flags, w, n)) {
			a->opt[a->nopt].value = NULL;
		} else if (listed(valued, w, n)) {
			if (eq != NULL) {
				a->opt[a->nopt].value = eq + 1;
			} else if (i + 1 < argc) {
				a->opt[a->nopt].value = argv[++i];
			} else {
				return (cli_usage("%s: --%s needs a value", cmd, w));
			}
		} else {
			return (cli_usage("%s: unknown option --%.*s", cmd, (int) n, w));
		}
		a->nopt++;
	}
	return (0);
}

static bool
opt_is(const cli_args *a, size_t i, const char *name)
{
	size_t n = strlen(name);

	return (strncmp(a->opt[i].name, name, n) == 0 &&
	    (a->opt[i].name[n] == '\0' || a->opt[i].name[n] == '='));
}

const char *
cli_opt(const cli_args *a, const char *name)
{
	const char *v = NULL;

	for (size_t i = 0; i < a->nopt; i++) {
		if (opt_is(a, i, name) && a->opt[i].value != NULL) {
			v = a->opt[i].value;
		}
	}
	return (v);
}

bool
cli_flag(const cli_args *a, const char *name)
{
	for (size_t i = 0; i < a->nopt; i++) {
		if (opt_is(a, i, name) && a->opt[i].value == NULL) {
			return (true);
		}
	}
	return (false);
}

int
cli_opt_list(const cli_args *a, const char *name, char **out, size_t max, char *buf, size_t bufsz)
{
	size_t n = 0, used = 0;

	for (size_t i = 0; i < a->nopt; i++) {
		const char *v = a->opt[i].value;
		if (!opt_is(a, i, name) || v == NULL) {
			continue;
		}
		while (*v != '\0') {
			size_t len = strcspn(v, ",");
			if (len > 0) {
				if (n == max || used + len + 1 > bufsz) {
					return (-1);
				}
				memcpy(buf + used, v, len);
				buf[used + len] = '\0';
				out[n++]        = buf + used;
				used += len + 1;
			}
			v += len;
			if (*v == ',') {
				v++;
			}
		}
	}
	return ((int) n);
}

int
cli_langs_check(const char *name, char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!text_lang_ok(v[i])) {
			return (cli_usage("--%s: '%.40s' is not %s", name, v[i], TEXT_LANG_RULE));
		}
	}
	return (0);
}

/* The prefix a value's name carries in the proto and not on the command line ("OFFER_OPEN" is
 * "open"); NULL for the enums whose values carry none. */
static const char *
enum_prefix(const ProtobufCEnumDescriptor *d)
{
	if (d == &haven__referral__v1__offer_state__descriptor) {
		return ("OFFER_");
	}
	if (d == &haven__referral__v1__decline_reason__descriptor) {
		return ("DECLINE_");
	}
	if (d == &haven__referral__v1__outcome__descriptor) {
		return ("OUTCOME_");
	}
	if (d == &haven__referral__v1__hold_reason__descriptor) {
		return ("HOLD_");
	}
	return (NULL);
}

const char *
cli_enum_name(const ProtobufCEnumDescriptor *d, int v, char *buf, size_t bufsz)
{
	return (pbenum_name(d, enum_prefix(d), v, buf, bufsz));
}

int
cli_enum_parse(const ProtobufCEnumDescriptor *d, const char *what, const char *s, int *out)
{
	char names[512];

	if (pbenum_parse(d, enum_prefix(d), s, out) == 0) {
		return (0);
	}
	return (cli_usage("unknown %s '%s' (one of: %s)", what, s != NULL ? s : "",
	    pbenum_list(d, enum_prefix(d), names, sizeof(names))));
}

int
cli_parse_u64(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char              *end;
	unsigned long long v;

	errno = 0;
	if (s == NULL || !isdigit((unsigned char) s[0]) ||
	    ((v = strtoull(s, &end, 10)), errno != 0) || *end != '\0' || v < min || v > max) {
		return (cli_usage("%s must be a number from %llu to %llu, not '%s'", what,
		    (unsigned long long) min, (unsigned long long) max, s != NULL ? s : ""));
	}
	*out = v;
	return (0);
}
