/* bytes_test.c - big- and little-endian integers in byte strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "haven/bytes.h"

static void
test_big_endian(void **state)
{
	uint8_t b[9];

	(void) state;
	memset(b, 0xee, sizeof(b));
	hv_put_be64(b, 0x0102030405060708ULL);
	assert_memory_equal(b, "\x01\x02\x03\x04\x05\x06\x07\x08\xee", 9);
	assert_true(hv_get_be64(b) == 0x0102030405060708ULL);
	hv_put_be32(b, 0xa1b2c3d4u);
	assert_memory_equal(b, "\xa1\xb2\xc3\xd4\x05", 5);
	assert_true(hv_get_be32(b) == 0xa1b2c3d4u);
	hv_put_be(b, 0xbeef, 2);
	assert_memory_equal(b, "\xbe\xef\xc3", 3);
	assert_true(hv_get_be(b, 2) == 0xbeef);
	hv_put_be64(b, UINT64_MAX);
	assert_true(hv_get_be64(b) == UINT64_MAX);
}

/* Big-endian keys sort as their numbers, which is why LMDB keys use them. */
static void
test_big_endian_sorts(void **state)
{
	uint8_t a[8], b[8];

	(void) state;
	hv_put_be64(a, 255);
	hv_put_be64(b, 256);
	assert_true(memcmp(a, b, 8) < 0);
	hv_put_be64(a, 1ULL << 56);
	hv_put_be64(b, (1ULL << 56) + 1);
	assert_true(memcmp(a, b, 8) < 0);
}

static void
test_little_endian(void **state)
{
	uint8_t b[9];

	(void) state;
	memset(b, 0xee, sizeof(b));
	hv_put_le(b, 0x0102030405060708ULL, 8);
	assert_memory_equal(b, "\x08\x07\x06\x05\x04\x03\x02\x01\xee", 9);
	assert_true(hv_get_le(b, 8) == 0x0102030405060708ULL);
	hv_put_le(b, 0x1234, 2);
	assert_memory_equal(b, "\x34\x12\x06", 3);
	assert_true(hv_get_le(b, 2) == 0x1234);
	assert_true(hv_get_le(b, 1) == 0x34);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_big_endian),
		cmocka_unit_test(test_big_endian_sorts),
		cmocka_unit_test(test_little_endian),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
