/*
 * powercut.c - the "cut" of the power-loss test: puts every file recorded in an undo log of
 * iofail.c (IOFAIL_UNDO) back as it was at its last fsync/fdatasync, as if the machine had lost
 * power with those writes still in the page cache. Run it after the process that wrote the log
 * was killed (SIGKILL), before the next start.
 *
 *   powercut LOG      prints "powercut: N writes of M files rolled back" and empties LOG
 *
 * Per file, the 'W' records after its last 'S' are applied newest first: the old bytes written
 * back (as far as the file was long then) and the file cut to its old size. Exit 0 on success,
 * 1 when the log is unreadable or a file cannot be restored, 64 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct rec {
	char     kind; /* 'W' or 'S' */
	char    *path;
	uint64_t off, len, size;
	char    *old;
} rec;

static int
read_log(const char *name, rec **out, size_t *n)
{
	FILE    *f   = fopen(name, "rb");
	rec     *v   = NULL, *nv;
	size_t   cap = 0, cnt = 0;
	uint32_t pl;
	uint64_t hdr[3];
	int      c;

	if (f == NULL) {
		fprintf(stderr, "powercut: %s: %s\n", name, strerror(errno));
		return (-1);
	}
	while ((c = fgetc(f)) != EOF) {
		rec r  = { 0 };
		r.kind = (char) c;
		if ((c != 'W' && c != 'S') || fread(&pl, sizeof(pl), 1, f) != 1 || pl >= PATH_MAX ||
		    (r.path = calloc(1, pl + 1)) == NULL || fread(r.path, 1, pl, f) != pl) {
			/* A record cut short by the kill: the write it announces never happened
			 * (the shim logs before it writes, and a kill between the two leaves the
			 * record whole). Stop here. */
			free(r.path);
			break;
		}
		if (c == 'W') {
			if (fread(hdr, sizeof(hdr), 1, f) != 1 || hdr[1] > ((uint64_t) 1 << 32) ||
			    (r.old = malloc(hdr[1] + 1)) == NULL ||
			    fread(r.old, 1, hdr[1], f) != hdr[1]) {
				free(r.path);
				free(r.old);
				break;
			}
			r.off  = hdr[0];
			r.len  = hdr[1];
			r.size = hdr[2];
		}
		if (cnt == cap) {
			cap = cap ? cap * 2 : 256;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				fclose(f);
				return (-1);
			}
			v = nv;
		}
		v[cnt++] = r;
	}
	fclose(f);
	*out = v;
	*n   = cnt;
	return (0);
}

static int
undo_one(const rec *r)
{
	int    fd = open(r->path, O_WRONLY | O_CLOEXEC);
	size_t keep;

	if (fd < 0) {
		/* Removed since: nothing of it to restore (the test's files are never removed). */
		return (errno == ENOENT ? 0 : -1);
	}
	keep = r->off >= r->size ? 0
	                         : (size_t) (r->size - r->off < r->len ? r->size - r->off : r->len);
	if ((keep > 0 && pwrite(fd, r->old, keep, (off_t) r->off) != (ssize_t) keep) ||
	    ftruncate(fd, (off_t) r->size) != 0 || fsync(fd) != 0) {
		fprintf(stderr, "powercut: %s: %s\n", r->path, strerror(errno));
		close(fd);
		return (-1);
	}
	close(fd);
	return (0);
}

int
main(int argc, char **argv)
{
	rec   *v = NULL;
	size_t n = 0, undone = 0, files = 0;
	int    rc   = 0;
	char **seen = NULL;

	if (argc != 2) {
		fprintf(stderr, "usage: powercut UNDO_LOG\n");
		return (64);
	}
	if (read_log(argv[1], &v, &n) != 0) {
		return (1);
	}
	seen = calloc(n + 1, sizeof(*seen));
	/* Newest first; a path's records stop at its newest 'S'. */
	for (size_t i = n; i-- > 0;) {
		size_t j;
		for (j = 0; j < files && strcmp(seen[j], v[i].path) != 0; j++) {
		}
		if (v[i].kind == 'S') {
			if (j == files) {
				seen[files++] = v[i].path;
			}
			v[i].kind = 's'; /* the path is synced from here back */
			for (size_t k = 0; k < i; k++) {
				if (strcmp(v[k].path, v[i].path) == 0) {
					v[k].kind = 's';
				}
			}
			continue;
		}
		if (v[i].kind != 'W') {
			continue;
		}
		if (j == files) {
			seen[files++] = v[i].path;
		}
		if (undo_one(&v[i]) != 0) {
			rc = 1;
		}
		undone++;
	}
	printf("powercut: %zu writes of %zu files rolled back\n", undone, files);
	if (rc == 0 && truncate(argv[1], 0) != 0) {
		rc = 1;
	}
	for (size_t i = 0; i < n; i++) {
		free(v[i].path);
		free(v[i].old);
	}
	free(v);
	free(seen);
	return (rc);
}
