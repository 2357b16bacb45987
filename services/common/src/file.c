/* file.c - private files: read whole and checked, created whole and synced, or not at all. */
#include "haven/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* Grows a buffer that may hold a secret without leaving a copy behind in freed memory. */
static int
grow(char **buf, size_t len, size_t newcap)
{
	char *p;

	if ((p = malloc(newcap + 1)) == NULL) {
		return (-1);
	}
	if (len > 0) {
		memcpy(p, *buf, len);
	}
	OPENSSL_cleanse(*buf, len);
	free(*buf);
	*buf = p;
	return (0);
}

hv_status
hv_file_read(const char *path, size_t maxlen, bool private, char **out, size_t *outlen)
{
	struct stat sb;
	char       *buf = NULL;
	size_t      len = 0;
	size_t      cap;
	int         fd = -1;
	hv_status   st = HV_INVALID_ARGUMENT;

	*out = NULL;
	if (outlen != NULL) {
		*outlen = 0;
	}
	if (path == NULL || maxlen >= SIZE_MAX / 4) {
		goto out;
	}
	/* Checks are made on the open descriptor, so the file cannot be swapped in between. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0 || fstat(fd, &sb) != 0) {
		st = hv_status_from_errno(errno);
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		goto out;
	}
	if (private && (sb.st_mode & 077) != 0) {
		st = HV_PERMISSION_DENIED;
		goto out;
	}
	if (sb.st_size < 0 || (uint64_t) sb.st_size > maxlen) {
		st = HV_OUT_OF_RANGE;
		goto out;
	}
	/* Sized by fstat, but read to the end: the file may change while it is read. */
	cap = (size_t) sb.st_size;
	if ((buf = malloc(cap + 1)) == NULL) {
		st = HV_RESOURCE_EXHAUSTED;
		goto out;
	}
	for (;;) {
		ssize_t r;
		if (len == cap) {
			char probe;
			if (cap == maxlen) {
				/* Full: one more byte means the file is longer than allowed. */
				while ((r = read(fd, &probe, 1)) < 0 && errno == EINTR) {
				}
				if (r < 0) {
					st = hv_status_from_errno(errno);
					goto out;
				}
				if (r > 0) {
					st = HV_OUT_OF_RANGE;
					goto out;
				}
				break;
			}
			/* cap < maxlen < SIZE_MAX / 4: cannot overflow. */
			cap = cap * 2 + 64 > maxlen ? maxlen : cap * 2 + 64;
			if (grow(&buf, len, cap) != 0) {
				st = HV_RESOURCE_EXHAUSTED;
				goto out;
			}
		}
		if ((r = read(fd, buf + len, cap - len)) < 0) {
			if (errno == EINTR) {
				continue;
			}
			st = hv_status_from_errno(errno);
			goto out;
		}
		if (r == 0) {
			break;
		}
		len += (size_t) r;
	}
	buf[len] = '\0';
	*out     = buf;
	buf      = NULL;
	if (outlen != NULL) {
		*outlen = len;
	}
	st = HV_OK;
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	if (fd >= 0) {
		close(fd);
	}
	return (st);
}

hv_status
hv_file_create_private(const char *path, const void *data, size_t len)
{
	const uint8_t *p       = data;
	size_t         done    = 0;
	int            fd      = -1;
	bool           created = false;
	hv_status      st      = HV_INVALID_ARGUMENT;

	if (path == NULL || (data == NULL && len > 0)) {
		goto out;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		st = errno == EEXIST ? HV_ALREADY_EXISTS : hv_status_from_errno(errno);
		goto out;
	}
	created = true;
	/* The umask can only take bits away; make sure the owner can read it back. */
	if (fchmod(fd, 0600) != 0) {
		st = hv_status_from_errno(errno);
		goto out;
	}
	while (done < len) {
		ssize_t w = write(fd, p + done, len - done);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			st = hv_status_from_errno(errno);
			goto out;
		}
		done += (size_t) w;
	}
	if (fsync(fd) != 0) {
		st = hv_status_from_errno(errno);
		goto out;
	}
	st = close(fd) == 0 ? HV_OK : hv_status_from_errno(errno);
	fd = -1;
out:
	if (fd >= 0) {
		close(fd);
	}
	if (st != HV_OK && created) {
		unlink(path);
	}
	return (st);
}

hv_status
hv_file_sync_dir(const char *dir)
{
	int       fd;
	hv_status st = HV_OK;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		return (hv_status_from_errno(errno));
	}
	if (fsync(fd) != 0) {
		st = hv_status_from_errno(errno);
	}
	close(fd);
	return (st);
}
