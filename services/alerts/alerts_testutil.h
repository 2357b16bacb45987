/*
 * alerts_testutil.h - the alerts tests' receivers and fixture (alerts_testutil.c).
 */
#ifndef HAVEN_ALERTS_TESTUTIL_H
#define HAVEN_ALERTS_TESTUTIL_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "alerts_internal.h"
#include "haven/regions.h"

#define SECRET    "0123456789abcdef-test-secret"
#define R_ROLE(x) HAVEN__CAPACITY__V1__ROLE__##x

/* The receivers and the temporary directory, for the whole group. */
typedef struct at_global {
	char  dir[512];
	char  pki[600];
	pid_t rcv;
	int   smtp_port, hook_port;
	int   stores;
} at_global;
extern at_global g;

/* Added to the wall clock by test_now (the services' clock). */
extern _Atomic int64_t clock_offset;
int64_t                test_now(void *arg);

/* cmocka group setup: a temporary directory, a PKI and the receivers (group_teardown stops
 * them). */
int group_setup(void **state);
int group_teardown(void **state);
/* The messages received whose idempotency key names org (and via, when not NULL), as a JSON
 * array (the caller's); field reads a string of its i-th. */
json_t     *received(const char *org, const char *via);
const char *field(json_t *a, size_t i, const char *name);

typedef struct fixture {
	char            dir[700];
	store          *st;
	region_map     *map;
	cap_service    *cs;
	alerts_service *as;
} fixture;

/* A store in f->dir (a new one when fresh), the directory, a manual alerts service that mails
 * the receiver (smtp NULL) or smtp, and allows webhooks to loopback. */
void fixture_open(fixture *f, bool fresh);
void fixture_close(fixture *f);
void open_alerts(fixture *f, const char *smtp);
void add_org(fixture *f, const char *id, int role, const char *region);
/* Channels for org: e-mail to two desks and on-call (email), a webhook on path (NULL: none). */
void set_channels(fixture *f, const char *org, const char *path, bool email);

typedef struct enq_job {
	alerts_service     *as;
	const alerts_event *ev;
	const char         *timer; /* set a timer instead, due at due */
	uint64_t            due;
	bool                cancel;
	bool                fail; /* the event's transaction fails after the enqueue */
} enq_job;

hv_status enq_fn(store_txn *txn, void *arg);
void      enqueue(fixture *f, const alerts_event *ev);
/* Sets (or with cancel, cancels) a timer. */
void timer(fixture *f, const char *key, uint64_t due, const alerts_event *ev, bool cancel);
/* One round of the sender, which must send and fail exactly so many. */
void     run_expect(fixture *f, unsigned sent, unsigned failed);
uint64_t table_count(fixture *f, store_table t);

#endif
