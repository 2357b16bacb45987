/*
 * testutil.c - helpers shared by the integration tests (see testutil.h).
 */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void
tu_tmpdir(char *out, size_t outsz, const char *prefix)
{
	const char *base = getenv("HAVEN_TEST_TMP");

	if (base == NULL) {
		base = "/tmp";
	}
	mkdir(base, 0700);
	snprintf(out, outsz, "%s/%s-XXXXXX", base, prefix);
	if (mkdtemp(out) == NULL) {
		perror("mkdtemp");
		abort();
	}
	chmod(out, 0700);
}

void
tu_pki(const char *dir, const char *const *orgs, size_t n)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
	    "sh '%s/deploy/pki.sh' '%s' ca && sh '%s/deploy/pki.sh' '%s' server localhost",
	    HAVEN_SOURCE_DIR, dir, HAVEN_SOURCE_DIR, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "pki.sh failed\n");
		abort();
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(cmd, sizeof(cmd), "sh '%s/deploy/pki.sh' '%s' client '%s'",
		    HAVEN_SOURCE_DIR, dir, orgs[i]);
		if (system(cmd) != 0) {
			fprintf(stderr, "pki.sh client failed\n");
			abort();
		}
	}
}

void
tu_cert(const char *dir, const char *name, const char *cn, int days, int self_signed)
{
	char cmd[2048];
	int  n;

	if (self_signed) {
		n = snprintf(cmd, sizeof(cmd),
		    "cd '%s' && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
		    "-out '%s.key' 2>/dev/null && openssl req -x509 -new -key '%s.key' -sha256 "
		    "-days 30 -subj '/O=haven/CN=%s' -out '%s.pem' 2>/dev/null",
		    dir, name, name, cn, name);
	} else {
		/* openssl x509 -days -N ends the validity N days ago: an expired certificate. */
		n = snprintf(cmd, sizeof(cmd),
		    "cd '%s' && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
		    "-out '%s.key' 2>/dev/null && openssl req -new -key '%s.key' "
		    "-subj '/O=haven/CN=%s' -out '%s.csr' && printf '%%s\n' "
		    "'extendedKeyUsage=clientAuth' 'keyUsage=critical,digitalSignature' > '%s.ext' "
		    "&& "
		    "openssl x509 -req -in '%s.csr' -CA ca.pem -CAkey ca.key -CAcreateserial "
		    "-sha256 "
		    "-days %d -extfile '%s.ext' -out '%s.pem' 2>/dev/null && rm -f '%s.csr' "
		    "'%s.ext'",
		    dir, name, name, cn, name, name, name, days, name, name, name, name);
	}
	if (n < 0 || (size_t) n >= sizeof(cmd) || system(cmd) != 0) {
		fprintf(stderr, "tu_cert %s failed\n", name);
		abort();
	}
}

char *
tu_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long  n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t) n + 1)) == NULL ||
	    fread(buf, 1, (size_t) n, f) != (size_t) n) {
		fprintf(stderr, "cannot read %s\n", path);
		abort();
	}
	fclose(f);
	buf[n] = '\0';
	if (len != NULL) {
		*len = (size_t) n;
	}
	return (buf);
}

hv_status
tu_lookup(void *arg, const char *org_id, auth_org *out)
{
	const tu_org *orgs = arg;

	for (; orgs->id != NULL; orgs++) {
		if (strcmp(orgs->id, org_id) == 0) {
			out->role         = orgs->role;
			out->enabled      = orgs->enabled != 0;
			out->cert_pem     = NULL;
			out->cert_pem_len = 0;
			if (orgs->cert_path != NULL) {
				out->cert_pem = tu_slurp(orgs->cert_path, &out->cert_pem_len);
			}
			return (HV_OK);
		}
	}
	return (HV_NOT_FOUND);
}

double
tu_metric(const char *page, const char *series)
{
	size_t      n = strlen(series);
	const char *p = page;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == page || p[-1] == '\n') && p[n] == ' ') {
			return (strtod(p + n + 1, NULL));
		}
		p += n;
	}
	return (NAN);
}

void
tu_expect_metric(const char *page, const char *series, double want)
{
	double v = tu_metric(page, series);

	if (isnan(v) || v != want) {
		fail_msg("%s is %g, expected %g", series, v, want);
	}
}
