/*
 * rpc_close.h - closing an nng socket without waiting for ever (rpc_close.c), private to
 * libhaven: the client channels (rpc_client.c) and the listener probe (rpc_probe.c) share it.
 */
#ifndef HAVEN_RPC_CLOSE_H
#define HAVEN_RPC_CLOSE_H

#include <stdbool.h>
#include <stdint.h>

/* Runs close_fn(arg) on a thread of its own and waits at most wait_ms for it to return.
 * close_fn owns arg whatever happens: it frees what arg holds once nng_close returned, which
 * may be long after this call (or never, if libnng never lets go). what names the thing closed
 * in the log line written when the wait ends first. Returns true when close_fn returned within
 * the wait. If no thread can be made, close_fn runs here, unbounded. */
bool rpc_close_bounded(void (*close_fn)(void *arg), void *arg, unsigned wait_ms, const char *what);

/* True when a close left to finish behind has not finished for for_ms: libnng's reaper is
 * stuck, the process frees no connection any more and cannot close its sockets (rpc_close.c). */
bool rpc_close_stuck(uint32_t for_ms);

#endif
