/*
 * alloc_it.c - allocation failure in the decode and handler paths (issue 17).
 *
 * Every call decodes, works and builds its reply in one arena with a byte budget (arena.h,
 * rpc_server_options.call_budget): a budget that runs out is an allocation that fails, at the
 * point where the budget ends. Sweeping the budget from 0 up in steps of the arena's alignment
 * makes each allocation of a call the one that fails in turn, as SQLite's N-th-malloc loop does.
 *
 * decode: the request of every method of the node (fuzz/corpus/rpc/seed-*, made by fuzz_seeds
 *   from the protobuf descriptors) through rpc_server_decode at every budget: the answer is the
 *   full-budget answer or RESOURCE_EXHAUSTED with a message, never a crash; ASan's leak check
 *   at exit finds what a failed decode forgot to free.
 * handlers: CreateReferral (routing, a hold, the audit) through a real
 *   server at every budget: OK, or RESOURCE_EXHAUSTED / INTERNAL with a message; a refused
 *   create stored all of it or nothing (refused after its commit, when the reply cannot be
 *   built, it is there, as after a timeout), the same key at full budget answers it exactly
 *   once, and the capacity invariant holds after each.
 */
#include "referral_node.h"

#include "haven/log.h"
#include "rpc_internal.h"

#include "haven/admin/v1/admin.pb-c.h"
#include "haven/auth/v1/auth.pb-c.h"
#include "haven/consent/v1/audit.pb-c.h"
#include "haven/consent/v1/consent.pb-c.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEP 16 /* the arena's alignment: every allocation boundary is met */

static hv_status
stand_in(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	abort(); /* rpc_server_decode runs no handler */
}

static void
add(rpc_server *srv, const ProtobufCServiceDescriptor *d)
{
	rpc_method_impl impls[64];

	assert_true(d->n_methods <= 64);
	for (unsigned i = 0; i < d->n_methods; i++) {
		impls[i] = (rpc_method_impl) { .name = d->methods[i].name,
			.handler                     = stand_in,
			.roles                       = RPC_ROLES_ANY };
	}
	assert_int_equal(rpc_server_add_service(srv, d, impls, d->n_methods, NULL), HV_OK);
}

static rpc_server *
decode_server(size_t budget)
{
	rpc_server        *srv;
	rpc_server_options o = { .call_budget = budget };

	assert_int_equal(rpc_server_open(&srv, &o), HV_OK);
	add(srv, &haven__admin__v1__admin__descriptor);
	add(srv, &haven__auth__v1__auth__descriptor);
	add(srv, &haven__capacity__v1__capacity__descriptor);
	add(srv, &haven__consent__v1__consent__descriptor);
	add(srv, &haven__audit__v1__audit__descriptor);
	add(srv, &haven__referral__v1__referrals__descriptor);
	return (srv);
}

typedef struct seed {
	char  *s_data;
	size_t s_len;
} seed;

static size_t
load_seeds(seed *out, size_t max)
{
	const char    *dir = HAVEN_SOURCE_DIR "/fuzz/corpus/rpc";
	DIR           *d   = opendir(dir);
	struct dirent *e;
	char           path[1024];
	size_t         n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL && n < max) {
		if (strncmp(e->d_name, "seed-", 5) != 0) {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		out[n].s_data = tu_slurp(path, &out[n].s_len);
		n++;
	}
	closedir(d);
	return (n);
}

static void
test_decode_budgets(void **state)
{
	seed        seeds[256];
	size_t      n = load_seeds(seeds, 256), need_max = 0, failures = 0;
	hv_status   full[256];
	rpc_server *srv = decode_server(0);
	char        msg[RPC_ERRMSG_MAX];

	assert_true(n >= 40); /* a seed per method of the node */
	for (size_t i = 0; i < n; i++) {
		msg[0]  = '\0';
		full[i] = rpc_server_decode(srv, seeds[i].s_data, seeds[i].s_len, msg, sizeof(msg));
		assert_true(full[i] == HV_OK || msg[0] != '\0');
		need_max = seeds[i].s_len * 8 > need_max ? seeds[i].s_len * 8 : need_max;
	}
	rpc_server_close(srv);
	/* A budget of 8x the message covers its decode (the default is 4x the receive limit). */
	for (size_t b = 0; b <= need_max + 4096; b += STEP) {
		srv = decode_server(b == 0 ? 1 : b);
		for (size_t i = 0; i < n; i++) {
			hv_status st;
			msg[0] = '\0';
			st     = rpc_server_decode(srv, seeds[i].s_data, seeds[i].s_len, msg,
			        sizeof(msg));
			if (st != full[i]) {
				if (st != HV_RESOURCE_EXHAUSTED) {
					fail_msg("seed %zu at budget %zu: %s (%s), full budget %s",
					    i, b, hv_status_name(st), msg, hv_status_name(full[i]));
				}
				assert_true(msg[0] != '\0');
				failures++;
			}
		}
		rpc_server_close(srv);
	}
	assert_true(failures > 0); /* the sweep did make allocations fail */
	print_message("decode: %zu requests, budgets 1..%zu step %d, %zu refused for memory\n", n,
	    need_max + 4096, STEP, failures);
	for (size_t i = 0; i < n; i++) {
		free(seeds[i].s_data);
	}
}

/* One budget: the services again with it. */
static void
reopen(node *n, size_t budget)
{
	close_services(n, false);
	n->call_budget = budget;
	open_services(n, false);
}

/* Referrals in the store. */
static size_t
count_referrals(node *n)
{
	store_txn    *txn = NULL;
	store_cursor *c   = NULL;
	store_table   t;
	size_t        k = 0;
	hv_status     st;

	assert_int_equal(store_table_open(n->st, "ref.referrals", &t), HV_OK);
	assert_int_equal(store_read_begin(n->st, &txn), HV_OK);
	assert_int_equal(store_cursor_open(txn, t, &c), HV_OK);
	for (st = store_cursor_seek(c, NULL, 0, NULL, NULL, NULL, NULL); st == HV_OK;
	     st = store_cursor_next(c, NULL, NULL, NULL, NULL)) {
		k++;
	}
	store_cursor_close(c);
	store_read_end(txn);
	return (k);
}

static bool
refused_for_memory(hv_status st)
{
	return (st == HV_RESOURCE_EXHAUSTED || st == HV_INTERNAL);
}

static void
test_handler_budgets(void **state)
{
	node     *n = *state;
	Referral *r = NULL;
	char      key[64];
	unsigned  ok = 0, refused = 0, late = 0;
	size_t    made = 0;

	add_services(n, std_services, N_STD);
	for (size_t b = STEP; b <= 12288; b += 8 * STEP) {
		hv_status st;

		reopen(n, b);
		snprintf(key, sizeof(key), "alloc-%zu", b);
		errbuf[0] = '\0';
		st        = create_as(n, C_REFERRER, &one_shelter, key, &r);
		if (st == HV_OK) {
			ok++;
			free_msg(r);
			r = NULL;
		} else {
			if (!refused_for_memory(st)) {
				fail_msg("CreateReferral at budget %zu: %s (%s)", b,
				    hv_status_name(st), errbuf);
			}
			assert_true(errbuf[0] != '\0');
			refused++;
		}
		/* Nothing half-stored: the referral with its holds, or nothing. A create refused
		 * after its commit (its reply could not be built) is there: the client cannot
		 * know, as after a timeout, and its retry with the key below answers it. */
		if (st != HV_OK && count_referrals(n) == made + 1) {
			late++;
			if (late == 1) {
				print_message("refused after the commit at budget %zu: %s (%s)\n",
				    b, hv_status_name(st), errbuf);
			}
		} else {
			assert_int_equal(count_referrals(n), made + (st == HV_OK ? 1 : 0));
		}
		check_invariant(n);
		/* The client's retry with the same key at full budget: one referral. */
		reopen(n, 0);
		assert_int_equal(create_as(n, C_REFERRER, &one_shelter, key, &r), HV_OK);
		free_msg(r);
		r = NULL;
		made++;
		assert_int_equal(count_referrals(n), made);
		check_invariant(n);
	}
	assert_true(refused > 0 && ok > 0); /* the sweep crossed the call's need */
	print_message("handlers: CreateReferral refused for memory %u times (%u after the commit), "
	              "then OK %u times; each retry by key made it exactly once\n",
	    refused, late, ok);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_budgets),
		cmocka_unit_test_setup_teardown(test_handler_budgets, setup, teardown),
	};

	log_init("alloc_it", LOG_LEVEL_OFF);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
