/* config_test.c - configuration files: defaults, values, and every kind of bad line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "haven/config.h"

typedef struct cfg {
	char       *data_dir;
	uint64_t    workers;
	bool        insecure;
	config_list listen;
} cfg;

static const config_option opts[] = {
	{ "data_dir", CONFIG_STRING, offsetof(cfg, data_dir), "/var/lib/haven", 0, 0, "data" },
	{ "workers", CONFIG_UINT, offsetof(cfg, workers), "4", 1, 256, "handler threads" },
	{ "insecure_tcp", CONFIG_BOOL, offsetof(cfg, insecure), "false", 0, 0, "plain tcp" },
	{ "listen", CONFIG_LIST, offsetof(cfg, listen), NULL, 0, 0, "listen URLs" },
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static char path[256];

static void
write_file(const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "%s/haven-config-test-%d.conf",
	    getenv("HAVEN_TEST_TMP") != NULL ? getenv("HAVEN_TEST_TMP") : "/tmp", (int) getpid());
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static hv_status
load(const char *text, cfg *c, char *err)
{
	memset(c, 0, sizeof(*c));
	write_file(text);
	return (config_load(path, opts, NOPTS, c, err, 256));
}

static void
test_defaults_and_values(void **state)
{
	cfg  c;
	char err[256];

	memset(&c, 0, sizeof(c));
	assert_int_equal(config_load(NULL, opts, NOPTS, &c, err, sizeof(err)), HV_OK);
	assert_string_equal(c.data_dir, "/var/lib/haven");
	assert_int_equal(c.workers, 4);
	assert_false(c.insecure);
	assert_int_equal(c.listen.cl_n, 0);
	config_free(opts, NOPTS, &c);

	assert_int_equal(
	    load("# a comment\n\n  data_dir =  /srv/haven  \nworkers=16\n"
	         "insecure_tcp = yes\nlisten = ipc:///a\nlisten = tls+tcp://0.0.0.0:7000\n",
	        &c, err),
	    HV_OK);
	assert_string_equal(c.data_dir, "/srv/haven");
	assert_int_equal(c.workers, 16);
	assert_true(c.insecure);
	assert_int_equal(c.listen.cl_n, 2);
	assert_string_equal(c.listen.cl_items[1], "tls+tcp://0.0.0.0:7000");
	assert_int_equal(config_set(opts, NOPTS, &c, "workers", "8", err, sizeof(err)), HV_OK);
	assert_int_equal(c.workers, 8);
	config_free(opts, NOPTS, &c);
}

static void
test_bad_lines(void **state)
{
	static const struct {
		const char *text;
		const char *expect;
	} cases[] = {
		{ "workers = 0\n", ":1: 'workers' must be a whole number from 1 to 256" },
		{ "workers = 257\n", "from 1 to 256" },
		{ "workers = -1\n", "must be a whole number" },
		{ "workers = 4x\n", "must be a whole number" },
		{ "workers = 99999999999999999999999\n", "must be a whole number" },
		{ "\n\nnope = 1\n", ":3: unknown option 'nope'" },
		{ "insecure_tcp = maybe\n", "must be true or false" },
		{ "just some words\n", ":1: expected 'key = value'" },
	};
	cfg  c;
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(load(cases[i].text, &c, err), HV_INVALID_ARGUMENT);
		if (strstr(err, cases[i].expect) == NULL) {
			fail_msg("case %zu: '%s' does not contain '%s'", i, err, cases[i].expect);
		}
		assert_non_null(strstr(err, path));
		config_free(opts, NOPTS, &c);
	}
	/* A line longer than the limit. */
	{
		char *big = malloc(10000);
		memset(big, 'a', 9998);
		big[9998] = '\n';
		big[9999] = '\0';
		assert_int_equal(load(big, &c, err), HV_INVALID_ARGUMENT);
		assert_non_null(strstr(err, "longer than"));
		config_free(opts, NOPTS, &c);
		free(big);
	}
	/* Too many list entries. */
	{
		char text[2000] = "";
		for (int i = 0; i < 17; i++) {
			strcat(text, "listen = ipc:///x\n");
		}
		assert_int_equal(load(text, &c, err), HV_INVALID_ARGUMENT);
		assert_non_null(strstr(err, "more than 16 times"));
		config_free(opts, NOPTS, &c);
	}
	/* A missing file. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(config_load("/nonexistent/haven.conf", opts, NOPTS, &c, err, sizeof(err)),
	    HV_NOT_FOUND);
	assert_non_null(strstr(err, "/nonexistent/haven.conf"));
	config_free(opts, NOPTS, &c);
	assert_int_equal(config_set(opts, NOPTS, &c, "nope", "1", err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	unlink(path);
}

static void
test_doc_round_trips(void **state)
{
	cfg    c;
	char   err[256];
	char  *text = NULL;
	size_t len  = 0;
	FILE  *f    = open_memstream(&text, &len);

	config_print_doc(f, opts, NOPTS);
	fclose(f);
	assert_non_null(strstr(text, "# handler threads"));
	assert_non_null(strstr(text, "# workers = 4"));
	/* The printed documentation is itself a valid (all-default) configuration file. */
	assert_int_equal(load(text, &c, err), HV_OK);
	assert_int_equal(c.workers, 4);
	config_free(opts, NOPTS, &c);
	free(text);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_values),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_doc_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
