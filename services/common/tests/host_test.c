/* host_test.c - node settings from file and command line, and the data directory checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "haven/host.h"
#include "haven/log.h"

static char tmp[256];

static int
load(host_config *cfg, int argc, const char **argv)
{
	bool done;
	return (host_config_load(cfg, argc, (char **) argv, "host_test", &done));
}

static void
test_file_and_overrides(void **state)
{
	host_config cfg;
	char        file[300];
	FILE       *f;

	snprintf(file, sizeof(file), "%s/node.conf", tmp);
	f = fopen(file, "w");
	assert_non_null(f);
	fputs("data_dir = /srv/haven\nworkers = 8\nlisten = ipc:///a/b.sock\nlisten = ipc:///c\n", f);
	fclose(f);

	const char *a1[] = { "x", "--config", file };
	assert_int_equal(load(&cfg, 3, a1), 0);
	assert_string_equal(cfg.data_dir, "/srv/haven");
	assert_int_equal(cfg.workers, 8);
	assert_int_equal(cfg.listen.cl_n, 2);
	assert_int_equal(cfg.token_ttl_s, 3600);
	assert_false(cfg.insecure_tcp);
	host_config_free(&cfg);

	/* The command line wins, --data is --data-dir, a flag needs no value, --k=v works, and
	 * the command line's URLs replace the file's. */
	const char *a2[] = { "x", "--workers", "2", "--config", file, "--data", "/d", "--insecure-tcp",
		"--listen=tcp://127.0.0.1:1", "--queue=9" };
	assert_int_equal(load(&cfg, 10, a2), 0);
	assert_string_equal(cfg.data_dir, "/d");
	assert_int_equal(cfg.workers, 2);
	assert_int_equal(cfg.queue, 9);
	assert_true(cfg.insecure_tcp);
	assert_int_equal(cfg.listen.cl_n, 1);
	assert_string_equal(cfg.listen.cl_items[0], "tcp://127.0.0.1:1");
	host_config_free(&cfg);
	unlink(file);
}

static void
test_bad_settings(void **state)
{
	host_config cfg;
	const char *bad[][4] = {
		{ "x", "--workers", "0", NULL },
		{ "x", "--bogus", "1", NULL },
		{ "x", "stray", NULL, NULL },
		{ "x", "--workers", NULL, NULL },
		{ "x", "--config", "/nonexistent.conf", NULL },
		{ "x", "--tls-ca", "/ca.pem", NULL },
		{ "x", "--listen", "tls+tcp://0.0.0.0:7000", NULL },
		{ "x", "--log-level", "loud", NULL },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int argc = 0;
		while (argc < 4 && bad[i][argc] != NULL) {
			argc++;
		}
		assert_int_equal(load(&cfg, argc, bad[i]), 2);
		host_config_free(&cfg);
	}
}

static void
test_open_checks_data_dir(void **state)
{
	host_config cfg;
	host       *h;
	char        dir[300];

	snprintf(dir, sizeof(dir), "%s/open", tmp);
	mkdir(dir, 0755);
	chmod(dir, 0755);
	const char *a[] = { "x", "--data", dir };
	assert_int_equal(load(&cfg, 3, a), 0);
	assert_int_equal(host_open(&h, &cfg, "test"), HV_PERMISSION_DENIED);
	host_config_free(&cfg);

	snprintf(dir, sizeof(dir), "%s/node", tmp);
	const char *b[] = { "x", "--data", dir };
	assert_int_equal(load(&cfg, 3, b), 0);
	assert_int_equal(host_open(&h, &cfg, "test"), HV_OK);
	assert_non_null(host_store(h));
	assert_int_equal(region_map_count(host_regions(h)), 10);
	assert_int_equal(host_start(h, NULL, NULL), HV_OK);
	host_close(h);
	/* The node secret was created closed to others. */
	{
		struct stat sb;
		char        secret[400];
		snprintf(secret, sizeof(secret), "%s/node.secret", dir);
		assert_int_equal(stat(secret, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}
	host_config_free(&cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_and_overrides),
		cmocka_unit_test(test_bad_settings),
		cmocka_unit_test(test_open_checks_data_dir),
	};
	const char *base = getenv("HAVEN_TEST_TMP");

	snprintf(tmp, sizeof(tmp), "%s/host-XXXXXX", base != NULL ? base : "/tmp");
	if (mkdtemp(tmp) == NULL) {
		return (1);
	}
	log_init("host_test", LOG_LEVEL_OFF);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
