/* status_test.c - status names, parsing and conversions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <nng/nng.h>
#include <string.h>

#include "haven/status.h"

static void
test_names(void **state)
{
	(void) state;
	assert_string_equal(hv_status_name(HV_OK), "OK");
	assert_string_equal(hv_status_name(HV_INVALID_ARGUMENT), "INVALID_ARGUMENT");
	assert_string_equal(hv_status_name(HV_UNAUTHENTICATED), "UNAUTHENTICATED");
	assert_string_equal(hv_status_name(HV_DATA_LOSS), "DATA_LOSS");
	assert_string_equal(hv_status_name(-1), "UNKNOWN");
	assert_string_equal(hv_status_name(17), "UNKNOWN");
	/* gRPC's numbering. */
	assert_int_equal(HV_NOT_FOUND, 5);
	assert_int_equal(HV_RESOURCE_EXHAUSTED, 8);
	assert_int_equal(HV_UNIMPLEMENTED, 12);
	assert_int_equal(HV_UNAVAILABLE, 14);
}

static void
test_parse_round_trip(void **state)
{
	(void) state;
	for (int i = 0; i <= HV_STATUS_MAX; i++) {
		hv_status s;
		assert_int_equal(hv_status_parse(hv_status_name(i), &s), 0);
		assert_int_equal(s, i);
	}
	hv_status s;
	assert_int_equal(hv_status_parse("not_found", &s), 0);
	assert_int_equal(s, HV_NOT_FOUND);
	assert_int_equal(hv_status_parse("NOPE", &s), -1);
	assert_int_equal(hv_status_parse(NULL, &s), -1);
}

static void
test_conversions(void **state)
{
	(void) state;
	assert_int_equal(hv_status_from_nng(0), HV_OK);
	assert_int_equal(hv_status_from_nng(NNG_ETIMEDOUT), HV_DEADLINE_EXCEEDED);
	assert_int_equal(hv_status_from_nng(NNG_ECONNREFUSED), HV_UNAVAILABLE);
	assert_int_equal(hv_status_from_nng(NNG_EMSGSIZE), HV_RESOURCE_EXHAUSTED);
	assert_int_equal(hv_status_from_errno(ENOENT), HV_NOT_FOUND);
	assert_int_equal(hv_status_from_errno(EACCES), HV_PERMISSION_DENIED);
	assert_int_equal(hv_status_from_errno(EIO), HV_DATA_LOSS);
}

/* hv_fail writes the message, cut short to fit, and returns the code; a NULL or empty buffer
 * is left alone. */
static void
test_fail(void **state)
{
	char err[16];

	(void) state;
	assert_int_equal(hv_fail(err, sizeof(err), HV_INVALID_ARGUMENT, "need %d: %s", 2, "type"),
	    HV_INVALID_ARGUMENT);
	assert_string_equal(err, "need 2: type");
	assert_int_equal(hv_fail(err, sizeof(err), HV_NOT_FOUND, "no such service %s",
	                     "svc-0a1b2c"),
	    HV_NOT_FOUND);
	assert_string_equal(err, "no such service"); /* 15 bytes and the NUL */
	assert_int_equal(hv_fail(NULL, 0, HV_INTERNAL, "x"), HV_INTERNAL);
	strcpy(err, "kept");
	assert_int_equal(hv_fail(err, 0, HV_INTERNAL, "y"), HV_INTERNAL);
	assert_string_equal(err, "kept");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_parse_round_trip),
		cmocka_unit_test(test_conversions),
		cmocka_unit_test(test_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
