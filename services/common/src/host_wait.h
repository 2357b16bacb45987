/*
 * host_wait.h - host_wait's loop (host_wait.c), private to libhaven: host.c hands it the
 * signals it blocked.
 */
#ifndef HAVEN_HOST_WAIT_H
#define HAVEN_HOST_WAIT_H

#include <signal.h>

/* host_wait on these blocked signals (haven/host.h). */
int host_wait_signals(const sigset_t *signals);

#endif
