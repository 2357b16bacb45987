/* ids_test.c - record ids: the id rule (1..63 bytes of [a-z0-9._-]) and generated ids that
 * keep to it, with their prefix and random hex digits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "haven/ids.h"

static void
test_valid(void **state)
{
	char long_id[IDS_MAX + 1];

	(void) state;
	assert_true(ids_valid("svc-0a1b"));
	assert_true(ids_valid("org.blijf_groep-1"));
	assert_false(ids_valid(NULL));
	assert_false(ids_valid(""));
	assert_false(ids_valid("Upper"));
	assert_false(ids_valid("with space"));
	assert_false(ids_valid("slash/dot"));
	assert_false(ids_valid("caf\xc3\xa9"));
	memset(long_id, 'a', IDS_MAX - 1);
	long_id[IDS_MAX - 1] = '\0';
	assert_true(ids_valid(long_id)); /* 63 bytes */
	long_id[IDS_MAX - 1] = 'a';
	long_id[IDS_MAX]     = '\0';
	assert_false(ids_valid(long_id)); /* 64 bytes */
}

static void
test_generate(void **state)
{
	char a[IDS_MAX], b[IDS_MAX], small[8];

	(void) state;
	assert_int_equal(ids_generate(a, sizeof(a), "hold-", 16), HV_OK);
	assert_int_equal(strlen(a), 5 + 16);
	assert_int_equal(strncmp(a, "hold-", 5), 0);
	assert_int_equal(strspn(a + 5, "0123456789abcdef"), 16);
	assert_true(ids_valid(a));
	assert_int_equal(ids_generate(b, sizeof(b), "hold-", 16), HV_OK);
	assert_string_not_equal(a, b);
	/* Refused: no digits, too long for the buffer, too long for an id, a bad prefix. */
	assert_int_equal(ids_generate(a, sizeof(a), "x-", 0), HV_INVALID_ARGUMENT);
	assert_string_equal(a, "");
	assert_int_equal(ids_generate(small, sizeof(small), "svc-", 8), HV_INVALID_ARGUMENT);
	assert_string_equal(small, "");
	assert_int_equal(ids_generate(a, sizeof(a), "svc-", 60), HV_INVALID_ARGUMENT);
	assert_int_equal(ids_generate(a, sizeof(a), "Svc ", 8), HV_INVALID_ARGUMENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_generate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
