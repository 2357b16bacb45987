/* connect_addr_test.c - the client address of the Connect API behind a trusted proxy
 * (connect_http.c): the last X-Forwarded-For entry parsed as an address (an IPv6 one by its
 * /64, an IPv4-mapped one as IPv4), anything else no address; and the start-up check that the
 * proxy and the listener are both on this machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "connect_internal.h"

static void
test_forwarded(void **state)
{
	uint8_t a[16], b[16];

	(void) state;
	assert_int_equal(connect_forwarded_addr("192.0.2.1", a), 4);
	assert_memory_equal(a, "\xc0\x00\x02\x01", 4);
	/* the proxy's entry is the last: what the client wrote before it is not believed */
	assert_int_equal(connect_forwarded_addr("203.0.113.9, 192.0.2.1", b), 4);
	assert_memory_equal(a, b, 4);
	assert_int_equal(connect_forwarded_addr("  192.0.2.1  ", b), 4);
	assert_memory_equal(a, b, 4);
	assert_int_equal(connect_forwarded_addr("::ffff:192.0.2.1", b), 4);
	assert_memory_equal(a, b, 4);
	/* one /64 is one machine's share */
	assert_int_equal(connect_forwarded_addr("2001:db8:1:2::5", a), 8);
	assert_int_equal(connect_forwarded_addr("2001:db8:1:2:ffff::6", b), 8);
	assert_memory_equal(a, b, 8);
	assert_int_equal(connect_forwarded_addr("2001:db8:1:3::5", b), 8);
	assert_memory_not_equal(a, b, 8);
	/* no address */
	assert_int_equal(connect_forwarded_addr(NULL, a), 0);
	assert_int_equal(connect_forwarded_addr("", a), 0);
	assert_int_equal(connect_forwarded_addr("unknown", a), 0);
	assert_int_equal(connect_forwarded_addr("192.0.2.1, ", a), 0);
	assert_int_equal(connect_forwarded_addr("192.0.2.1 x", a), 0);
	assert_int_equal(connect_forwarded_addr("192.0.2.1:443", a), 0);
	assert_int_equal(connect_forwarded_addr("999.0.2.1", a), 0);
}

static void
test_proxy_check(void **state)
{
	char err[256];

	(void) state;
	assert_int_equal(connect_proxy_check(NULL, "0.0.0.0:8443", err, sizeof(err)), HV_OK);
	assert_int_equal(connect_proxy_check("", "0.0.0.0:8443", err, sizeof(err)), HV_OK);
	assert_int_equal(connect_proxy_check("127.0.0.1", "127.0.0.1:8080", err, sizeof(err)),
	    HV_OK);
	assert_int_equal(connect_proxy_check("::1", "[::1]:8080", err, sizeof(err)), HV_OK);
	assert_int_equal(connect_proxy_check("192.0.2.1", "127.0.0.1:8080", err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "loopback"));
	assert_int_equal(connect_proxy_check("localhost", "127.0.0.1:8080", err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	/* a listener others can reach could be sent any header */
	assert_int_equal(connect_proxy_check("127.0.0.1", "0.0.0.0:8443", err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "http_listen"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forwarded),
		cmocka_unit_test(test_proxy_check),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
