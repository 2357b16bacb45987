/*
 * proc.h - the process's own figures from /proc (Linux): memory, threads, open descriptors.
 */
#ifndef HAVEN_PROC_H
#define HAVEN_PROC_H

#include <stdbool.h>

/* Resident and virtual memory (bytes) and threads from /proc/self/status; false when it
 * cannot be read (not Linux). */
bool proc_self_status(double *rss, double *vsize, double *threads);

/* Open file descriptors (the directory's own not counted), or -1. */
int proc_self_fds(void);

#endif
