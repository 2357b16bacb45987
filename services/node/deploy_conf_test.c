/*
 * deploy_conf_test.c - deploy/haven.conf, the node's configuration file as shipped: it loads
 * through host_config_load as every haven binary loads it, and it lists every option the
 * programs know (`--print-config`), so that the file cannot go stale when an option is added,
 * and no option they do not know.
 *
 *   deploy_conf_test PATH/TO/deploy/haven.conf
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "haven/host.h"
#include "haven/log.h"

#include "alerts.h"
#include "referral.h"
#include "signals.h"

#define NAMES_MAX 128
#define NAME_LEN  64

static const char *conf_path;

typedef struct names {
	char   n[NAMES_MAX][NAME_LEN];
	size_t count;
} names;

static bool
names_has(const names *ns, const char *name)
{
	for (size_t i = 0; i < ns->count; i++) {
		if (strcmp(ns->n[i], name) == 0) {
			return (true);
		}
	}
	return (false);
}

/* If line is `key = ...` or `# key = ...` (key of [a-z0-9_]), copies key into out. */
static bool
option_line(const char *line, char out[NAME_LEN])
{
	const char *p = line;
	size_t      n = 0;

	if (*p == '#') {
		p++;
		while (*p == ' ') {
			p++;
		}
	}
	/* "name" or "section.name" */
	while ((islower((unsigned char) p[n]) || isdigit((unsigned char) p[n]) || p[n] == '_' ||
	           (p[n] == '.' && n > 0)) &&
	    n < NAME_LEN - 1) {
		n++;
	}
	if (n == 0 || strncmp(p + n, " =", 2) != 0) {
		return (false);
	}
	memcpy(out, p, n);
	out[n] = '\0';
	return (true);
}

/* The names of the options in a file, active or commented out. */
static void
file_names(const char *path, names *ns)
{
	FILE *f = fopen(path, "r");
	char  line[4096];

	assert_non_null(f);
	memset(ns, 0, sizeof(*ns));
	while (fgets(line, sizeof(line), f) != NULL) {
		char name[NAME_LEN];
		if (option_line(line, name) && !names_has(ns, name)) {
			assert_true(ns->count < NAMES_MAX);
			snprintf(ns->n[ns->count++], NAME_LEN, "%s", name);
		}
	}
	fclose(f);
}

/* The referral, alerts and signals services' sections, read beside the host's options as
 * haven-node reads them. */
static ref_config    rcfg;
static alerts_config acfg;
static sig_config    scfg;

static int
load(host_config *cfg, int argc, const char **argv, bool *done)
{
	config_table t[3];

	memset(&rcfg, 0, sizeof(rcfg));
	memset(&acfg, 0, sizeof(acfg));
	memset(&scfg, 0, sizeof(scfg));
	t[0] = ref_config_table(&rcfg);
	t[1] = alerts_config_table(&acfg);
	t[2] = sig_config_table(&scfg);
	return (host_config_load_with(cfg, argc, (char **) argv, "haven-node", t, 3, true, done));
}

/* The options the programs know: what `--print-config` prints, through host_config_load. */
static void
known_names(names *ns)
{
	const char *base = getenv("HAVEN_TEST_TMP");
	char        out[512];
	const char *argv[] = { "haven-node", "--print-config" };
	host_config cfg;
	bool        done = false;
	int         saved, fd;

	snprintf(out, sizeof(out), "%s/deploy-conf-%d.txt", base != NULL ? base : "/tmp",
	    (int) getpid());
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	fd    = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	assert_int_equal(load(&cfg, 2, argv, &done), 0);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	assert_true(done);
	host_config_free(&cfg);
	ref_config_free(&rcfg);
	alerts_config_free(&acfg);
	sig_config_free(&scfg);
	file_names(out, ns);
	unlink(out);
}

static void
test_loads(void **state)
{
	const char *argv[] = { "haven-node", "--config", conf_path };
	host_config cfg;
	bool        done = true;

	assert_int_equal(load(&cfg, 3, argv, &done), 0);
	assert_false(done);
	/* What the file sets, and what the systemd units rely on. */
	assert_string_equal(cfg.data_dir, "/var/lib/haven");
	assert_int_equal(cfg.listen.cl_n, 0);
	assert_null(cfg.pub_url);
	assert_int_equal(rcfg.retention_days, 90);
	assert_int_equal(rcfg.language_hops, 1);
	assert_false(cfg.insecure_tcp);
	assert_false(acfg.webhook_allow_private); /* partners' webhooks stay off the node's net */
	assert_null(acfg.smtp_url);
	host_config_free(&cfg);
	ref_config_free(&rcfg);
	alerts_config_free(&acfg);
	sig_config_free(&scfg);
}

static void
test_every_option_listed(void **state)
{
	names known, listed;

	known_names(&known);
	file_names(conf_path, &listed);
	assert_true(known.count >= 16); /* the parse of --print-config found them */
	for (size_t i = 0; i < known.count; i++) {
		if (!names_has(&listed, known.n[i])) {
			fail_msg("option '%s' (haven-node --print-config) is missing from %s: add "
			         "it with "
			         "its default and documentation",
			    known.n[i], conf_path);
		}
	}
	for (size_t i = 0; i < listed.count; i++) {
		if (!names_has(&known, listed.n[i])) {
			fail_msg("%s lists '%s', which no haven program knows", conf_path,
			    listed.n[i]);
		}
	}
}

/* Each option has its documentation: a comment block right above its first line. */
static void
test_every_option_documented(void **state)
{
	FILE *f = fopen(conf_path, "r");
	char  line[4096], prev[4096] = "";
	names seen;

	assert_non_null(f);
	memset(&seen, 0, sizeof(seen));
	while (fgets(line, sizeof(line), f) != NULL) {
		char name[NAME_LEN];
		if (option_line(line, name) && !names_has(&seen, name)) {
			snprintf(seen.n[seen.count++], NAME_LEN, "%s", name);
			if (strncmp(prev, "# (", 3) != 0) {
				fail_msg(
				    "%s: '%s' has no '# (type)' line and documentation above it",
				    conf_path, name);
			}
		}
		snprintf(prev, sizeof(prev), "%s", line);
	}
	fclose(f);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loads),
		cmocka_unit_test(test_every_option_listed),
		cmocka_unit_test(test_every_option_documented),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: deploy_conf_test PATH/TO/haven.conf\n");
		return (2);
	}
	conf_path = argv[1];
	log_init("deploy_conf_test", LOG_LEVEL_OFF);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
