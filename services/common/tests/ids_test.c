/* ids_test.c - the free-text check: invisible characters that make text read otherwise than
 * it is stored are refused; those scripts need pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>

#include "haven/ids.h"

/* Encodes cp as UTF-8 between "a" and "b". */
static const char *
around(uint32_t cp, char *buf, size_t bufsz)
{
	char u[5] = { 0 };

	if (cp < 0x80) {
		u[0] = (char) cp;
	} else if (cp < 0x800) {
		u[0] = (char) (0xc0 | (cp >> 6));
		u[1] = (char) (0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		u[0] = (char) (0xe0 | (cp >> 12));
		u[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char) (0x80 | (cp & 0x3f));
	} else {
		u[0] = (char) (0xf0 | (cp >> 18));
		u[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char) (0x80 | (cp & 0x3f));
	}
	snprintf(buf, bufsz, "a%sb", u);
	return (buf);
}

static void
test_hidden_characters_refused(void **state)
{
	static const uint32_t refused[] = { 0x00ad, 0x061c, 0x180e, 0x200e, 0x200f, 0x2028, 0x2029,
		0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2060, 0x2061, 0x2064, 0x2066, 0x2067,
		0x2068, 0x2069, 0x206a, 0x206f, 0xfeff, 0xfff9, 0xfffb, 0xe0001, 0xe0041, 0xe007f };
	char buf[16];

	(void) state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (ids_text_ok(around(refused[i], buf, sizeof(buf)), 1, 100)) {
			fail_msg("U+%04X passed the text check", refused[i]);
		}
	}
	/* "Opvang <RLO>maretsmA" shows as "Opvang Amsterdam". */
	assert_false(ids_text_ok("Opvang \xe2\x80\xaemaretsmA", 1, 100));
}

static void
test_scripts_pass(void **state)
{
	static const uint32_t allowed[] = { 0x200b, 0x200c, 0x200d, 0x2010, 0x2027, 0x202f,
		0x205f, 0x2065, 0x2070, 0xfe0f, 0xfffc, 0xe0080, 0xe0100, 0x00e9, 0x0627 };
	char buf[16];

	(void) state;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		if (!ids_text_ok(around(allowed[i], buf, sizeof(buf)), 1, 100)) {
			fail_msg("U+%04X was refused", allowed[i]);
		}
	}
	assert_true(ids_text_ok("\xd9\x85\xdb\x8c\xe2\x80\x8c\xd8\xae\xd9\x88\xd8\xa7\xd9\x87\xd9\x85",
	    1, 100)); /* Persian with a zero-width non-joiner */
	assert_true(ids_text_ok("Stichting \xc3\x87" "a va \xe2\x82\xac", 1, 100));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hidden_characters_refused),
		cmocka_unit_test(test_scripts_pass),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
