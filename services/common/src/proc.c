/*
 * proc.c - the process's own figures from /proc (Linux), for the metrics page (host.c).
 */
#include "proc.h"

#include <dirent.h>
#include <stdio.h>

/* Resident and virtual memory (bytes) and threads from /proc/self/status; false when it
 * cannot be read (not Linux). */
bool
proc_self_status(double *rss, double *vsize, double *threads)
{
	FILE *f = fopen("/proc/self/status", "r");
	char  line[256];
	int   found = 0;

	if (f == NULL) {
		return (false);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long v;
		if (sscanf(line, "VmRSS: %llu kB", &v) == 1) {
			*rss = (double) v * 1024;
			found++;
		} else if (sscanf(line, "VmSize: %llu kB", &v) == 1) {
			*vsize = (double) v * 1024;
			found++;
		} else if (sscanf(line, "Threads: %llu", &v) == 1) {
			*threads = (double) v;
			found++;
		}
	}
	fclose(f);
	return (found == 3);
}

/* Open file descriptors (the directory's own not counted), or -1. */
int
proc_self_fds(void)
{
	DIR           *d = opendir("/proc/self/fd");
	struct dirent *e;
	int            n = 0;

	if (d == NULL) {
		return (-1);
	}
	while ((e = readdir(d)) != NULL) {
		n += e->d_name[0] != '.';
	}
	closedir(d);
	return (n > 0 ? n - 1 : 0);
}
