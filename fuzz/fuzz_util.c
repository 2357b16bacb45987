/*
 * fuzz_util.c - the scratch file and copies the harnesses share (fuzz_util.h).
 */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch_path[4096];
static int  scratch_fd = -1;

static void
scratch_remove(void)
{
	if (scratch_fd >= 0) {
		close(scratch_fd);
		unlink(scratch_path);
	}
}

const char *
fuzz_scratch_file(const uint8_t *data, size_t size)
{
	size_t done = 0;

	if (scratch_fd < 0) {
		const char *dir = getenv("TMPDIR");
		int         n   = snprintf(scratch_path, sizeof(scratch_path), "%s/haven-fuzz-XXXXXX",
                    dir != NULL && dir[0] != '\0' ? dir : "/tmp");
		if (n < 0 || (size_t) n >= sizeof(scratch_path) ||
		    (scratch_fd = mkstemp(scratch_path)) < 0) {
			perror("fuzz: scratch file");
			abort();
		}
		atexit(scratch_remove);
	}
	if (ftruncate(scratch_fd, 0) != 0) {
		perror("fuzz: scratch file");
		abort();
	}
	while (done < size) {
		ssize_t w = pwrite(scratch_fd, data + done, size - done, (off_t) done);
		if (w <= 0) {
			perror("fuzz: scratch file");
			abort();
		}
		done += (size_t) w;
	}
	return (scratch_path);
}

char *
fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL) {
		abort();
	}
	if (size > 0) {
		memcpy(s, data, size);
	}
	s[size] = '\0';
	return (s);
}
