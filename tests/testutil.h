/*
 * testutil.h - helpers shared by the integration tests.
 */
#ifndef HAVEN_TESTUTIL_H
#define HAVEN_TESTUTIL_H

#include <stddef.h>

#include "haven/auth.h"

/* A fresh 0700 directory under $HAVEN_TEST_TMP (or /tmp); the path is static storage of the
 * caller's choosing (out, outsz). Aborts the test program on failure. */
void tu_tmpdir(char *out, size_t outsz, const char *prefix);

/* Makes a PKI in dir with deploy/pki.sh: ca, server (localhost) and a client cert per org. */
void tu_pki(const char *dir, const char *const *orgs, size_t n);

/* Makes DIR/NAME.pem and DIR/NAME.key (EC P-256) with subject CN=cn: signed by the CA of
 * tu_pki in dir and valid from now for days days (days < 0: one that expired |days| days
 * ago), or self-signed (valid now) when self_signed. */
void tu_cert(const char *dir, const char *name, const char *cn, int days, int self_signed);

/* Reads a whole file into a malloc'd NUL-terminated buffer; aborts on failure. */
char *tu_slurp(const char *path, size_t *len);

/* A tiny in-memory partner directory for auth tests. */
typedef struct tu_org {
	const char *id;
	rpc_role    role;
	int         enabled;
	const char *cert_path; /* PEM file, or NULL */
} tu_org;

/* auth_lookup_fn over a tu_org array terminated by an entry with id NULL. */
hv_status tu_lookup(void *arg, const char *org_id, auth_org *out);

/* Metrics pages (Prometheus text format): the value of the sample line that starts with
 * series followed by a space, or NAN; and a cmocka failure unless it is there with value want. */
double tu_metric(const char *page, const char *series);
void   tu_expect_metric(const char *page, const char *series, double want);

#endif
