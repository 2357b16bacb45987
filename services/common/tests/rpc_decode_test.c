/* rpc_decode_test.c - rpc_server_decode (rpc_internal.h): the server's decode and checks of a
 * request off the wire, run on bytes without a connection, as the fuzzing harness runs them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "haven/log.h"
#include "haven/rpc.h"
#include "rpc_internal.h"

#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"
#include "haven/rpc/v1/rpc.pb-c.h"

/* Packs an envelope for method with payload; returns its length in buf. */
static size_t
envelope(uint8_t *buf, const char *method, const uint8_t *payload, size_t n)
{
	Haven__Rpc__V1__Request env = HAVEN__RPC__V1__REQUEST__INIT;

	env.request_id   = 7;
	env.method       = (char *) method;
	env.payload.data = (uint8_t *) payload;
	env.payload.len  = n;
	assert_true(haven__rpc__v1__request__get_packed_size(&env) <= 1024);
	return (haven__rpc__v1__request__pack(&env, buf));
}

static void
test_decode(void **state)
{
	rpc_server                           *srv;
	Haven__Health__V1__HealthCheckRequest hreq = HAVEN__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	uint8_t                               payload[256], buf[1024];
	char                                  msg[RPC_ERRMSG_MAX];
	size_t                                n, len;

	assert_int_equal(rpc_server_open(&srv, NULL), HV_OK);
	hreq.service = "haven.capacity.v1.Capacity";
	n            = haven__health__v1__health_check_request__pack(&hreq, payload);

	/* A well-formed call decodes, with no message. */
	len = envelope(buf, "haven.health.v1.Health/Check", payload, n);
	assert_int_equal(rpc_server_decode(srv, buf, len, msg, sizeof(msg)), HV_OK);
	assert_string_equal(msg, "");
	/* Roles are not checked: Echo is for authenticated callers only, and decodes. */
	len = envelope(buf, "haven.diag.v1.Diagnostics/Echo", (const uint8_t *) "\x0a\x01x", 3);
	assert_int_equal(rpc_server_decode(srv, buf, len, NULL, 0), HV_OK);

	/* Not an envelope. */
	assert_int_equal(rpc_server_decode(srv, "\xff\xff\xff", 3, msg, sizeof(msg)),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "not a haven.rpc.v1.Request"));
	/* A method the server does not serve. */
	len = envelope(buf, "haven.none.v1.None/Call", payload, n);
	assert_int_equal(rpc_server_decode(srv, buf, len, msg, sizeof(msg)), HV_UNIMPLEMENTED);
	assert_non_null(strstr(msg, "unknown method"));
	/* A payload that is not the method's request type (a truncated string field). */
	len = envelope(buf, "haven.health.v1.Health/Check", payload, n - 1);
	assert_int_equal(rpc_server_decode(srv, buf, len, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "does not decode as haven.health.v1.HealthCheckRequest"));
	/* A NUL byte in a string of the payload. */
	len = envelope(buf, "haven.health.v1.Health/Check",
	    (const uint8_t *) "\x0a\x03"
	                      "a\0b",
	    5);
	assert_int_equal(rpc_server_decode(srv, buf, len, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "holds a NUL byte"));
	/* The empty request: no method. */
	assert_int_equal(rpc_server_decode(srv, NULL, 0, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "method name missing"));

	assert_int_equal(rpc_server_decode(NULL, buf, len, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	assert_int_equal(rpc_server_decode(srv, NULL, 3, msg, sizeof(msg)), HV_INVALID_ARGUMENT);
	rpc_server_close(srv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode),
	};

	log_init("rpc_decode_test", LOG_LEVEL_OFF);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
