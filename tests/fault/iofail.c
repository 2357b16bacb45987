/*
 * iofail.c - an LD_PRELOAD shim that makes the N-th matching I/O call of a process fail, and
 * a recorder of unsynced writes for the power-loss test (powercut.c rolls them back).
 *
 *   LD_PRELOAD=libiofail.so IOFAIL_OPS=write,fsync IOFAIL_PATH=/data/ IOFAIL_N=7 \
 *       IOFAIL_ERRNO=ENOSPC IOFAIL_STICKY=1 IOFAIL_LOG=/tmp/faults haven-node ...
 *
 * IOFAIL_OPS    the calls that count, a comma list of: write (write, writev, pwrite, pwritev),
 *               fsync, fdatasync, ftruncate, create (open/openat with O_CREAT), rename, mmap
 *               (a shared file mapping: LMDB's map and its growth), or "all"
 * IOFAIL_PATH   only calls on a file whose path contains this text count (fd calls resolve the
 *               path through /proc/self/fd); unset: every file
 * IOFAIL_N      the matching call that fails, from 1 (unset or 0: none fails, calls are counted)
 * IOFAIL_ERRNO  EIO (default), ENOSPC or EDQUOT (mmap always fails with ENOMEM)
 * IOFAIL_STICKY 1: every matching call from the N-th on fails (a full disk), not only the N-th
 * IOFAIL_LOG    a file to which each injected fault appends "N op path errno" (O_APPEND, one
 *               write per line: the test reads which faults happened even after a SIGKILL)
 * IOFAIL_TRACE  1: log every matching call ("N op path 0") to IOFAIL_LOG, failing none unless
 *               IOFAIL_N says so (a counting run: which calls a scenario makes, in order)
 * IOFAIL_UNDO   a file: before every write to a file matching IOFAIL_PATH that was opened
 *               without O_SYNC/O_DSYNC, the bytes it overwrites (and the file's size) are
 *               appended to this undo log; fsync/fdatasync of the file marks them durable.
 *               `powercut LOG` then puts every file back as it was at its last sync: what a
 *               power cut does to data the kernel had not written yet (the worst case in
 *               order: every unsynced write lost; creations and renames are not undone).
 *
 * Matching calls are counted across threads (an atomic counter); the shim resolves the real
 * functions with dlsym(RTLD_NEXT) and keeps no state but the counter and the undo logs'
 * descriptors. glibc's stdio (fopen, fwrite) calls its internal entry points and is not seen.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
	OP_WRITE     = 1 << 0,
	OP_FSYNC     = 1 << 1,
	OP_FDATASYNC = 1 << 2,
	OP_FTRUNCATE = 1 << 3,
	OP_CREATE    = 1 << 4,
	OP_RENAME    = 1 << 5,
	OP_MMAP      = 1 << 6,
};

static const struct {
	const char *name;
	unsigned    bit;
} op_names[] = {
	{ "write", OP_WRITE },
	{ "fsync", OP_FSYNC },
	{ "fdatasync", OP_FDATASYNC },
	{ "ftruncate", OP_FTRUNCATE },
	{ "create", OP_CREATE },
	{ "rename", OP_RENAME },
	{ "mmap", OP_MMAP },
};

static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;
static unsigned       cfg_ops;
static const char    *cfg_path;
static long           cfg_n;
static int            cfg_errno = EIO;
static int            cfg_sticky;
static int            cfg_log = -1;
static int            cfg_trace;
static const char    *cfg_undo;
static atomic_long    calls;

static pthread_mutex_t undo_lock = PTHREAD_MUTEX_INITIALIZER;

#define REAL(ret, name, ...)                                                                       \
	static ret (*real_##name)(__VA_ARGS__);                                                    \
	if (real_##name == NULL) {                                                                 \
		real_##name = (ret(*)(__VA_ARGS__)) dlsym(RTLD_NEXT, #name);                       \
	}

static void
cfg_init(void)
{
	const char *v;

	if ((v = getenv("IOFAIL_OPS")) != NULL) {
		for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
			size_t l = strlen(op_names[i].name);
			for (const char *p = v; (p = strstr(p, op_names[i].name)) != NULL; p += l) {
				if ((p == v || p[-1] == ',') && (p[l] == ',' || p[l] == '\0')) {
					cfg_ops |= op_names[i].bit;
				}
			}
		}
		if (strstr(v, "all") != NULL) {
			cfg_ops = ~0u;
		}
	}
	if ((v = getenv("IOFAIL_PATH")) != NULL && v[0] != '\0') {
		cfg_path = v;
	}
	if ((v = getenv("IOFAIL_N")) != NULL) {
		cfg_n = strtol(v, NULL, 10);
	}
	if ((v = getenv("IOFAIL_ERRNO")) != NULL) {
		cfg_errno = strcmp(v, "ENOSPC") == 0 ? ENOSPC
		    : strcmp(v, "EDQUOT") == 0       ? EDQUOT
		                                     : EIO;
	}
	if ((v = getenv("IOFAIL_STICKY")) != NULL) {
		cfg_sticky = v[0] == '1';
	}
	if ((v = getenv("IOFAIL_TRACE")) != NULL) {
		cfg_trace = v[0] == '1';
	}
	if ((v = getenv("IOFAIL_LOG")) != NULL && v[0] != '\0') {
		REAL(int, open, const char *, int, ...);
		cfg_log = real_open(v, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	}
	if ((v = getenv("IOFAIL_UNDO")) != NULL && v[0] != '\0') {
		cfg_undo = v;
	}
}

static const char *
op_name(unsigned op)
{
	for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
		if (op_names[i].bit == op) {
			return (op_names[i].name);
		}
	}
	return ("?");
}

static int
fd_path(int fd, char *buf, size_t len)
{
	char    link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, buf, len - 1)) < 0) {
		return (-1);
	}
	buf[n] = '\0';
	return (0);
}

static int
path_matches(const char *path)
{
	return (cfg_path == NULL || (path != NULL && strstr(path, cfg_path) != NULL));
}

/* 1 when this call is to fail (errno set), 0 to go through. */
static int
inject(unsigned op, int fd, const char *path)
{
	char buf[PATH_MAX];
	long n;
	int  fail;

	pthread_once(&cfg_once, cfg_init);
	if ((cfg_ops & op) == 0) {
		return (0);
	}
	if (path == NULL && (cfg_path != NULL || cfg_trace)) {
		if (fd >= 0 && fd_path(fd, buf, sizeof(buf)) == 0) {
			path = buf;
		} else if (cfg_path != NULL) {
			return (0);
		}
	}
	if (!path_matches(path)) {
		return (0);
	}
	n    = atomic_fetch_add(&calls, 1) + 1;
	fail = cfg_n > 0 && (n == cfg_n || (n > cfg_n && cfg_sticky));
	if (cfg_log >= 0 && (fail || cfg_trace)) {
		char line[PATH_MAX + 64];
		int  l = snprintf(line, sizeof(line), "%ld %s %s %d\n", n, op_name(op),
                    path != NULL ? path : "-",
                    !fail               ? 0
		         : op == OP_MMAP ? ENOMEM
		                         : cfg_errno);
		REAL(ssize_t, write, int, const void *, size_t);
		if (l > 0) {
			(void) !real_write(cfg_log, line,
			    (size_t) l < sizeof(line) ? (size_t) l : sizeof(line) - 1);
		}
	}
	if (!fail) {
		return (0);
	}
	errno = op == OP_MMAP ? ENOMEM : cfg_errno;
	return (1);
}

/* ---- the undo log of unsynced writes (IOFAIL_UNDO) ------------------------------------------ */

/*
 * One log for the process, appended under a lock, one write per record:
 *   'W' u32 pathlen, path, u64 offset, u64 length, u64 file size before, the old bytes
 *       (length bytes; those past the end of the file are zeros, the size cuts them off)
 *   'S' u32 pathlen, path: the file was synced; the records of that path before it are durable
 * powercut.c applies, per path, the records after its last 'S' in reverse order.
 */
static int
undo_log(void)
{
	static int ufd = -2;

	if (ufd == -2) {
		REAL(int, open, const char *, int, ...);
		ufd = real_open(cfg_undo, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	}
	return (ufd);
}

/* The path of fd when it is a file the undo log follows (matching, not O_SYNC/O_DSYNC). */
static int
undo_path(int fd, char *path, size_t len, int need_async)
{
	int flags;

	if (cfg_undo == NULL || (flags = fcntl(fd, F_GETFL)) < 0 ||
	    (need_async && (flags & (O_SYNC | O_DSYNC)) != 0) || fd_path(fd, path, len) != 0 ||
	    !path_matches(path) || strcmp(path, cfg_undo) == 0) {
		return (-1);
	}
	return (0);
}

static void
undo_record(int fd, off_t off, size_t len)
{
	struct stat sb;
	char        path[PATH_MAX];
	char       *rec = NULL;
	uint32_t    pl;
	uint64_t    hdr[3];
	size_t      at;
	int         ufd;

	pthread_once(&cfg_once, cfg_init);
	if (cfg_undo == NULL || undo_path(fd, path, sizeof(path), 1) != 0 || fstat(fd, &sb) != 0) {
		return;
	}
	if (off < 0) {
		off = (fcntl(fd, F_GETFL) & O_APPEND) != 0 ? sb.st_size : lseek(fd, 0, SEEK_CUR);
	}
	pl     = (uint32_t) strlen(path);
	hdr[0] = (uint64_t) off;
	hdr[1] = len;
	hdr[2] = (uint64_t) sb.st_size;
	if ((rec = malloc(1 + sizeof(pl) + pl + sizeof(hdr) + len)) == NULL) {
		return;
	}
	rec[0] = 'W';
	memcpy(rec + 1, &pl, sizeof(pl));
	memcpy(rec + 1 + sizeof(pl), path, pl);
	at = 1 + sizeof(pl) + pl;
	memcpy(rec + at, hdr, sizeof(hdr));
	at += sizeof(hdr);
	memset(rec + at, 0, len);
	for (size_t done = 0; done < len;) {
		ssize_t r = pread(fd, rec + at + done, len - done, off + (off_t) done);
		if (r <= 0) {
			break;
		}
		done += (size_t) r;
	}
	pthread_mutex_lock(&undo_lock);
	if ((ufd = undo_log()) >= 0) {
		REAL(ssize_t, write, int, const void *, size_t);
		(void) !real_write(ufd, rec, at + len);
	}
	pthread_mutex_unlock(&undo_lock);
	free(rec);
}

/* The file is durable now: what was recorded for it can no longer be lost. */
static void
undo_synced(int fd)
{
	char     path[PATH_MAX + 8];
	uint32_t pl;
	int      ufd;

	if (cfg_undo == NULL || undo_path(fd, path + 5, sizeof(path) - 5, 0) != 0) {
		return;
	}
	pl      = (uint32_t) strlen(path + 5);
	path[0] = 'S';
	memcpy(path + 1, &pl, sizeof(pl));
	pthread_mutex_lock(&undo_lock);
	if ((ufd = undo_log()) >= 0) {
		REAL(ssize_t, write, int, const void *, size_t);
		(void) !real_write(ufd, path, 5 + pl);
	}
	pthread_mutex_unlock(&undo_lock);
}

/* ---- the interposed calls ---------------------------------------------------------------- */

ssize_t
write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, write, int, const void *, size_t);
	if (inject(OP_WRITE, fd, NULL)) {
		return (-1);
	}
	undo_record(fd, -1, n);
	return (real_write(fd, buf, n));
}

ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
	size_t n = 0;
	REAL(ssize_t, writev, int, const struct iovec *, int);
	if (inject(OP_WRITE, fd, NULL)) {
		return (-1);
	}
	for (int i = 0; i < cnt; i++) {
		n += iov[i].iov_len;
	}
	undo_record(fd, -1, n);
	return (real_writev(fd, iov, cnt));
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
	if (inject(OP_WRITE, fd, NULL)) {
		return (-1);
	}
	undo_record(fd, off, n);
	return (real_pwrite(fd, buf, n, off));
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	return (pwrite(fd, buf, n, off));
}

ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	size_t n = 0;
	REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
	if (inject(OP_WRITE, fd, NULL)) {
		return (-1);
	}
	for (int i = 0; i < cnt; i++) {
		n += iov[i].iov_len;
	}
	undo_record(fd, off, n);
	return (real_pwritev(fd, iov, cnt, off));
}

ssize_t
pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return (pwritev(fd, iov, cnt, off));
}

int
fsync(int fd)
{
	int rc;
	REAL(int, fsync, int);
	if (inject(OP_FSYNC, fd, NULL)) {
		return (-1);
	}
	if ((rc = real_fsync(fd)) == 0) {
		undo_synced(fd);
	}
	return (rc);
}

int
fdatasync(int fd)
{
	int rc;
	REAL(int, fdatasync, int);
	if (inject(OP_FDATASYNC, fd, NULL)) {
		return (-1);
	}
	if ((rc = real_fdatasync(fd)) == 0) {
		undo_synced(fd);
	}
	return (rc);
}

int
ftruncate(int fd, off_t len)
{
	struct stat sb;
	REAL(int, ftruncate, int, off_t);
	if (inject(OP_FTRUNCATE, fd, NULL)) {
		return (-1);
	}
	/* A shrink loses bytes: record them as a write of the cut range. */
	if (fstat(fd, &sb) == 0 && sb.st_size > len) {
		undo_record(fd, len, (size_t) (sb.st_size - len));
	} else {
		undo_record(fd, len, 0);
	}
	return (real_ftruncate(fd, len));
}

int
ftruncate64(int fd, off_t len)
{
	return (ftruncate(fd, len));
}

/* Whether open's third argument is there (O_TMPFILE includes O_DIRECTORY's bit). */
static int
takes_mode(int flags)
{
	return ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE);
}

static int
open_common(int dirfd, const char *path, int flags, mode_t mode)
{
	REAL(int, openat, int, const char *, int, ...);
	if ((flags & O_CREAT) != 0 && inject(OP_CREATE, -1, path)) {
		return (-1);
	}
	return (real_openat(dirfd, path, flags, mode));
}

int
open(const char *path, int flags, ...)
{
	mode_t  mode = 0;
	va_list ap;

	if (takes_mode(flags)) {
		va_start(ap, flags);
		mode = (mode_t) va_arg(ap, int);
		va_end(ap);
	}
	return (open_common(AT_FDCWD, path, flags, mode));
}

int
open64(const char *path, int flags, ...)
{
	mode_t  mode = 0;
	va_list ap;

	if (takes_mode(flags)) {
		va_start(ap, flags);
		mode = (mode_t) va_arg(ap, int);
		va_end(ap);
	}
	return (open_common(AT_FDCWD, path, flags, mode));
}

int
openat(int dirfd, const char *path, int flags, ...)
{
	mode_t  mode = 0;
	va_list ap;

	if (takes_mode(flags)) {
		va_start(ap, flags);
		mode = (mode_t) va_arg(ap, int);
		va_end(ap);
	}
	return (open_common(dirfd, path, flags, mode));
}

int
openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t  mode = 0;
	va_list ap;

	if (takes_mode(flags)) {
		va_start(ap, flags);
		mode = (mode_t) va_arg(ap, int);
		va_end(ap);
	}
	return (open_common(dirfd, path, flags, mode));
}

int
rename(const char *from, const char *to)
{
	REAL(int, rename, const char *, const char *);
	if (inject(OP_RENAME, -1, to)) {
		return (-1);
	}
	return (real_rename(from, to));
}

int
renameat(int fd1, const char *from, int fd2, const char *to)
{
	REAL(int, renameat, int, const char *, int, const char *);
	if (inject(OP_RENAME, -1, to)) {
		return (-1);
	}
	return (real_renameat(fd1, from, fd2, to));
}

void *
mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	REAL(void *, mmap, void *, size_t, int, int, int, off_t);
	if (fd >= 0 && (flags & MAP_SHARED) != 0 && inject(OP_MMAP, fd, NULL)) {
		return (MAP_FAILED);
	}
	return (real_mmap(addr, len, prot, flags, fd, off));
}

void *
mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (mmap(addr, len, prot, flags, fd, off));
}
