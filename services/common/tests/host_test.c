/* host_test.c - node settings from file and command line, and the data directory checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "haven/host.h"
#include "haven/log.h"

#include "haven/admin/v1/admin.pb-c.h"

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
	fputs("data_dir = /srv/haven\nworkers = 8\nlisten = ipc:///a/b.sock\nlisten = ipc:///c\n",
	    f);
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
	const char *a2[] = { "x", "--workers", "2", "--config", file, "--data", "/d",
		"--insecure-tcp", "--listen=tcp://127.0.0.1:1", "--queue=9" };
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

/* A service's section, as a service library declares it (ref_config.c is the real one). */
typedef struct svc_cfg {
	uint64_t days;
	char    *mode;
} svc_cfg;

static const config_option svc_options[] = {
	{ "days", CONFIG_UINT, offsetof(svc_cfg, days), "90", 1, 3650, "Days." },
	{ "mode", CONFIG_STRING, offsetof(svc_cfg, mode), "month", 0, 0, "Mode." },
};

static svc_cfg      svc;
static config_table svc_table = { "svc", svc_options, 2, &svc };
static bool         with_svc, strict;

/* Runs host_config_load on a file holding text (with the svc section when with_svc); returns
 * its result, the message it printed on stderr in msg. */
static int
load_file(const char *text, char *file, size_t filesz, char *msg, size_t msgsz)
{
	host_config cfg;
	char        out[300];
	FILE       *f;
	int         saved, fd, rc;
	ssize_t     n;

	snprintf(file, filesz, "%s/bad.conf", tmp);
	f = fopen(file, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(out, sizeof(out), "%s/stderr.txt", tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd    = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, STDERR_FILENO);
	{
		const char *a[] = { "haven-node", "--config", file };
		bool        done;
		config_free(svc_options, 2, &svc); /* what the load before left */
		memset(&svc, 0, sizeof(svc));
		rc = with_svc ? host_config_load_with(&cfg, 3, (char **) a, "haven-node",
		                    &svc_table, 1, strict, &done)
		              : host_config_load(&cfg, 3, (char **) a, "haven-node", &done);
	}
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, msg, msgsz - 1, 0);
	close(fd);
	msg[n > 0 ? n : 0] = '\0';
	host_config_free(&cfg);
	unlink(out);
	return (rc);
}

/* A service's options in its own section: checked by the process that runs it, left to
 * others by those that do not, and a misspelt section refused where every service runs. */
static void
test_sections(void **state)
{
	char file[300], msg[1024];

	(void) state;
	/* A process without the svc section leaves its lines alone. */
	with_svc = false;
	assert_int_equal(load_file("svc.days = 0\nworkers = 2\n", file, sizeof(file), msg,
	                     sizeof(msg)),
	    0);
	/* The process that runs it checks them, by their full name. */
	with_svc = true;
	strict   = false;
	assert_int_equal(load_file("svc.days = 0\n", file, sizeof(file), msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, ":1: 'svc.days' must be a whole number from 1 to 3650"));
	assert_int_equal(load_file("svc.dayz = 3\n", file, sizeof(file), msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, ":1: unknown option 'svc.dayz'"));
	assert_int_equal(load_file("svc.days = 30\nsvc.mode = week\nother.x = 1\n", file,
	                     sizeof(file), msg, sizeof(msg)),
	    0);
	/* load_file freed the host's part; the section's values are the caller's. */
	assert_int_equal(svc.days, 30);
	assert_string_equal(svc.mode, "week");
	config_free(svc_options, 2, &svc);
	/* A section's key without it is no host option. */
	assert_int_equal(load_file("days = 3\n", file, sizeof(file), msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, "unknown option 'days'"));
	/* Strict (every service in this process): a section nobody has is a misspelling. */
	strict = true;
	assert_int_equal(load_file("sv.days = 3\n", file, sizeof(file), msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, ":1: unknown option 'sv.days'"));
	config_free(svc_options, 2, &svc);
	with_svc = strict = false;
	assert_null(svc.mode);
	unlink(file);
}

/* The command line: --svc.days or, for the process that runs svc, --days. */
static void
test_section_args(void **state)
{
	const char *a[] = { "haven-node", "--svc.days", "7", "--mode=week", "--workers", "3" };
	const char *b[] = { "haven-node", "--svc.nope", "7" };
	host_config cfg;
	bool        done;

	(void) state;
	memset(&svc, 0, sizeof(svc));
	assert_int_equal(host_config_load_with(&cfg, 6, (char **) a, "haven-node", &svc_table, 1,
	                     true, &done),
	    0);
	assert_int_equal(svc.days, 7);
	assert_string_equal(svc.mode, "week");
	assert_int_equal(cfg.workers, 3);
	host_config_free(&cfg);
	config_free(svc_options, 2, &svc);
	assert_int_equal(host_config_load_with(&cfg, 3, (char **) b, "haven-node", &svc_table, 1,
	                     true, &done),
	    2);
	host_config_free(&cfg);
	config_free(svc_options, 2, &svc);
	/* Without the section, its options are unknown on the command line. */
	assert_int_equal(host_config_load(&cfg, 3, (char **) a, "haven-node", &done), 2);
	host_config_free(&cfg);
}

/* A wrong option in the configuration file: exit code 2, and one message that names the
 * program, the file, the line and the option. */
static void
test_bad_file(void **state)
{
	static const struct {
		const char *text;
		const char *expect; /* after "haven-node: FILE" */
	} cases[] = {
		{ "workers = 4\nretention_dayz = 30\n", ":2: unknown option 'retention_dayz'" },
		{ "# tokens\n\ntoken_ttl_s = 0\n",
		    ":3: 'token_ttl_s' must be a whole number from 60 to 86400, not '0'" },
		{ "workers = many threads\n",
		    ":1: 'workers' must be a whole number from 1 to 256" },
		{ "insecure_tcp = perhaps\n", ":1: 'insecure_tcp' must be true or false" },
		{ "data_dir /srv/haven\n", ":1: expected 'key = value'" },
	};
	char file[300], msg[1024], want[1400];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(load_file(cases[i].text, file, sizeof(file), msg, sizeof(msg)), 2);
		snprintf(want, sizeof(want), "haven-node: %s%s", file, cases[i].expect);
		if (strstr(msg, want) == NULL) {
			fail_msg("case %zu: '%s' does not contain '%s'", i, msg, want);
		}
		assert_non_null(strchr(msg, '\n'));
		assert_ptr_equal(strchr(msg, '\n'), msg + strlen(msg) - 1); /* one line */
	}
	/* Checks across options name the options. */
	assert_int_equal(load_file("log_level = loud\n", file, sizeof(file), msg, sizeof(msg)), 2);
	assert_non_null(
	    strstr(msg, "log_level must be debug, info, warn, error or off, not 'loud'"));
	assert_int_equal(load_file("tls_ca = /ca.pem\n", file, sizeof(file), msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, "tls_ca, tls_cert and tls_key go together"));
	/* And a good file loads. */
	assert_int_equal(load_file("token_ttl_s = 600\n", file, sizeof(file), msg, sizeof(msg)), 0);
	assert_string_equal(msg, "");
	unlink(file);
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
	/* The token keys were created closed to others, in keys/ (0700). */
	{
		struct stat sb;
		char        keys[400];
		snprintf(keys, sizeof(keys), "%s/keys/token-keys", dir);
		assert_int_equal(stat(keys, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
		snprintf(keys, sizeof(keys), "%s/keys", dir);
		assert_int_equal(stat(keys, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0700);
	}
	/* The node secret of earlier versions is retired: removed at start. */
	{
		struct stat sb;
		char        secret[400];
		FILE       *f;
		snprintf(secret, sizeof(secret), "%s/node.secret", dir);
		assert_non_null(f = fopen(secret, "w"));
		fputs("0123456789abcdef0123456789abcdef", f);
		fclose(f);
		assert_int_equal(host_open(&h, &cfg, "test"), HV_OK);
		host_close(h);
		assert_int_equal(stat(secret, &sb), -1);
	}
	host_config_free(&cfg);
}

static hv_status
backup(rpc_channel *ch, const char *dir, char *msg)
{
	Haven__Admin__V1__BackupRequest req = HAVEN__ADMIN__V1__BACKUP_REQUEST__INIT;
	ProtobufCMessage               *r   = NULL;
	rpc_call_options                o   = { .timeout_ms = 20000 };
	hv_status                       st;

	msg[0]  = '\0';
	req.dir = (char *) dir;
	st      = rpc_channel_call(ch, "haven.admin.v1.Admin/Backup", &req.base,
	         &haven__admin__v1__backup_response__descriptor, &r, &o, msg, RPC_ERRMSG_MAX);
	protobuf_c_message_free_unpacked(r, NULL);
	return (st);
}

static void
expect_msg(const char *msg, const char *fragment)
{
	if (strstr(msg, fragment) == NULL) {
		fail_msg("message '%s' does not say '%s'", msg, fragment);
	}
}

static bool
exists(const char *dir, const char *name)
{
	char        path[700];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return (lstat(path, &sb) == 0);
}

/* Admin/Backup writes with the node's rights: only into an absolute path without "..", inside
 * backup_dir, never into a directory others may write or through a symbolic link. */
static void
test_backup_dir_checks(void **state)
{
	host_config  cfg;
	host        *h;
	rpc_channel *ch;
	char         data[300], root[300], dir[400], target[400], url[400], msg[RPC_ERRMSG_MAX];
	struct stat  sb;

	snprintf(data, sizeof(data), "%s/bk-node", tmp);
	snprintf(root, sizeof(root), "%s/bk-root", tmp);
	assert_int_equal(mkdir(root, 0700), 0);
	const char *a[] = { "x", "--data", data, "--backup-dir", root };
	assert_int_equal(load(&cfg, 5, a), 0);
	assert_int_equal(host_open(&h, &cfg, "test"), HV_OK);
	assert_int_equal(host_start(h, NULL, NULL), HV_OK);
	snprintf(url, sizeof(url), "ipc://%s/run/haven.sock", data);
	assert_int_equal(rpc_channel_open(&ch, url, NULL), HV_OK);

	/* Relative, with "..", with ".": refused before anything is touched. */
	assert_int_equal(backup(ch, "relative/bk", msg), HV_INVALID_ARGUMENT);
	expect_msg(msg, "absolute path");
	snprintf(dir, sizeof(dir), "%s/../bk-escape", root);
	assert_int_equal(backup(ch, dir, msg), HV_INVALID_ARGUMENT);
	expect_msg(msg, "without . or ..");
	assert_false(exists(tmp, "bk-escape"));
	snprintf(dir, sizeof(dir), "%s/./bk", root);
	assert_int_equal(backup(ch, dir, msg), HV_INVALID_ARGUMENT);

	/* Outside backup_dir. */
	snprintf(dir, sizeof(dir), "%s/bk-outside", tmp);
	assert_int_equal(backup(ch, dir, msg), HV_PERMISSION_DENIED);
	expect_msg(msg, "outside backup_dir");
	assert_false(exists(tmp, "bk-outside"));

	/* An existing directory others may write: refused and left as it is. */
	snprintf(dir, sizeof(dir), "%s/world", root);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	assert_int_equal(backup(ch, dir, msg), HV_FAILED_PRECONDITION);
	expect_msg(msg, "writable by no one else");
	assert_false(exists(dir, "data.mdb"));
	assert_int_equal(chmod(dir, 0770), 0);
	assert_int_equal(backup(ch, dir, msg), HV_FAILED_PRECONDITION);

	/* A symbolic link to a good directory, and one out of backup_dir. */
	snprintf(target, sizeof(target), "%s/target", root);
	assert_int_equal(mkdir(target, 0700), 0);
	snprintf(dir, sizeof(dir), "%s/link", root);
	assert_int_equal(symlink(target, dir), 0);
	assert_int_equal(backup(ch, dir, msg), HV_FAILED_PRECONDITION);
	expect_msg(msg, "symbolic link");
	assert_false(exists(target, "data.mdb"));
	snprintf(dir, sizeof(dir), "%s/up", root);
	assert_int_equal(symlink(tmp, dir), 0);
	snprintf(dir, sizeof(dir), "%s/up/bk-via-link", root);
	assert_int_equal(backup(ch, dir, msg), HV_PERMISSION_DENIED);
	assert_false(exists(tmp, "bk-via-link"));

	/* Good: an existing 0750 directory of the node's user is made 0700; a new one is 0700. */
	snprintf(dir, sizeof(dir), "%s/g750", root);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0750), 0);
	assert_int_equal(backup(ch, dir, msg), HV_OK);
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_true(exists(dir, "data.mdb"));
	snprintf(dir, sizeof(dir), "%s/new", root);
	assert_int_equal(backup(ch, dir, msg), HV_OK);
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);

	rpc_channel_close(ch);
	host_close(h);
	host_config_free(&cfg);

	/* backup_dir must be absolute. */
	const char *b[] = { "x", "--data", data, "--backup-dir", "backups" };
	assert_int_not_equal(load(&cfg, 5, b), 0);
	host_config_free(&cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_and_overrides),
		cmocka_unit_test(test_bad_settings),
		cmocka_unit_test(test_bad_file),
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_section_args),
		cmocka_unit_test(test_open_checks_data_dir),
		cmocka_unit_test(test_backup_dir_checks),
	};
	const char *base = getenv("HAVEN_TEST_TMP");

	snprintf(tmp, sizeof(tmp), "%s/host-XXXXXX", base != NULL ? base : "/tmp");
	if (mkdtemp(tmp) == NULL) {
		return (1);
	}
	log_init("host_test", LOG_LEVEL_OFF);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
