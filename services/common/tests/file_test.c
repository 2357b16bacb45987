/* file_test.c - private files: the read checks (mode, size, kind) and the create rules
 * (0600 whatever the umask, never replacing, removed when not written whole). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "haven/file.h"
#include "testutil.h"

static char tmpdir[512];

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void
test_read_file(void **state)
{
	char   path[600], empty[600], missing[600];
	char  *buf;
	size_t n;

	(void) state;
	snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
	snprintf(empty, sizeof(empty), "%s/empty", tmpdir);
	snprintf(missing, sizeof(missing), "%s/missing", tmpdir);
	write_file(path, "0123456789", 0644);
	write_file(empty, "", 0600);

	/* Readable by others: refused as private, fine as public. */
	assert_int_equal(hv_file_read(path, 100, true, &buf, &n), HV_PERMISSION_DENIED);
	assert_null(buf);
	assert_int_equal(hv_file_read(path, 100, false, &buf, &n), HV_OK);
	assert_string_equal(buf, "0123456789");
	free(buf);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(hv_file_read(path, 100, true, &buf, &n), HV_PERMISSION_DENIED);
	assert_int_equal(chmod(path, 0602), 0);
	assert_int_equal(hv_file_read(path, 100, true, &buf, &n), HV_PERMISSION_DENIED);

	/* 0600 is private. */
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(hv_file_read(path, 100, true, &buf, &n), HV_OK);
	assert_int_equal(n, 10);
	assert_string_equal(buf, "0123456789");
	free(buf);

	/* Exactly maxlen is fine, one byte more is not. */
	assert_int_equal(hv_file_read(path, 10, true, &buf, &n), HV_OK);
	assert_int_equal(n, 10);
	free(buf);
	assert_int_equal(hv_file_read(path, 9, true, &buf, &n), HV_OUT_OF_RANGE);
	assert_null(buf);
	assert_int_equal(hv_file_read(path, 0, false, &buf, &n), HV_OUT_OF_RANGE);

	assert_int_equal(hv_file_read(empty, 10, true, &buf, &n), HV_OK);
	assert_int_equal(n, 0);
	assert_string_equal(buf, "");
	free(buf);

	assert_int_equal(hv_file_read(missing, 10, false, &buf, &n), HV_NOT_FOUND);
	assert_int_equal(hv_file_read(tmpdir, 10, false, &buf, &n), HV_INVALID_ARGUMENT);
	unlink(path);
	unlink(empty);
}

/* Created 0600 even under a umask that would leave it open, holding the bytes, readable as
 * private; an existing file (or a symlink planted at the name) is never replaced. */
static void
test_create_private(void **state)
{
	char        path[600], link_path[600], target[600];
	struct stat sb;
	char       *buf;
	size_t      n;
	mode_t      old;

	(void) state;
	snprintf(path, sizeof(path), "%s/kek", tmpdir);
	snprintf(link_path, sizeof(link_path), "%s/planted", tmpdir);
	snprintf(target, sizeof(target), "%s/target", tmpdir);

	old = umask(0);
	assert_int_equal(hv_file_create_private(path, "secret\0bytes", 12), HV_OK);
	umask(old);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(hv_file_read(path, 100, true, &buf, &n), HV_OK);
	assert_int_equal(n, 12);
	assert_memory_equal(buf, "secret\0bytes", 12);
	free(buf);

	assert_int_equal(hv_file_create_private(path, "other", 5), HV_ALREADY_EXISTS);
	assert_int_equal(hv_file_read(path, 100, true, &buf, &n), HV_OK);
	assert_int_equal(n, 12); /* untouched */
	free(buf);

	write_file(target, "mine", 0600);
	assert_int_equal(symlink(target, link_path), 0);
	assert_int_equal(hv_file_create_private(link_path, "evil", 4), HV_ALREADY_EXISTS);
	assert_int_equal(hv_file_read(target, 100, true, &buf, &n), HV_OK);
	assert_string_equal(buf, "mine");
	free(buf);

	assert_int_equal(hv_file_create_private(NULL, "x", 1), HV_INVALID_ARGUMENT);
	assert_int_equal(hv_file_create_private(path, NULL, 1), HV_INVALID_ARGUMENT);
	unlink(path);
	unlink(link_path);
	unlink(target);
}

/* A file that cannot be written whole (here: past RLIMIT_FSIZE) is removed again, not left
 * half written where the next start would take it for a key. */
static void
test_create_private_not_whole(void **state)
{
	char          path[600];
	struct rlimit old, small;
	struct stat   sb;
	hv_status     st;

	(void) state;
	snprintf(path, sizeof(path), "%s/half", tmpdir);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small          = old;
	small.rlim_cur = 4;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	st = hv_file_create_private(path, "0123456789", 10);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_not_equal(st, HV_OK);
	assert_int_equal(stat(path, &sb), -1);
	assert_int_equal(errno, ENOENT);
}

static void
test_sync_dir(void **state)
{
	char missing[600];

	(void) state;
	snprintf(missing, sizeof(missing), "%s/missing", tmpdir);
	assert_int_equal(hv_file_sync_dir(tmpdir), HV_OK);
	assert_int_equal(hv_file_sync_dir(missing), HV_NOT_FOUND);
}

static int
setup_tmp(void **state)
{
	(void) state;
	tu_tmpdir(tmpdir, sizeof(tmpdir), "file-test");
	return (0);
}

static int
teardown_tmp(void **state)
{
	(void) state;
	return (rmdir(tmpdir));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_file),
		cmocka_unit_test(test_create_private),
		cmocka_unit_test(test_create_private_not_whole),
		cmocka_unit_test(test_sync_dir),
	};
	return (cmocka_run_group_tests(tests, setup_tmp, teardown_tmp));
}
