/* text_test.c - the language-tag rule (well-formed BCP 47, both ways) and the token rule; the
 * free-text check has its own cases in ids_test.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "haven/text.h"

static void
test_lang_valid(void **state)
{
	static const char *const valid[] = {
		"nl", "ro", "pt-BR", "zh-Hant-TW", "sr-Latn", "es-419", "de-1996", "sl-rozaj",
		"sl-rozaj-biske", "en-US-x-twain", "x-klingon", "X-Whatever", "PT-br", "zh-yue",
		"zh-cmn-Hans-CN", "ar-aao-abc-def", "en-a-bbb-x-a-ccc", "de-CH-u-co-phonebk",
		"en-u-ca-gregory-t-nl", "qaa", "abcde", "yue-HK", "nl-NL-x-a",
		"abcdefgh-Latn-NL-1996",           /* 21 bytes */
		"en-aaa-bbb-ccc-Latn-NL-12345678", /* 31 bytes */
	};

	(void) state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		if (!text_lang_ok(valid[i])) {
			fail_msg("'%s' was refused", valid[i]);
		}
	}
}

static void
test_lang_invalid(void **state)
{
	char                     longest[TEXT_LANG_MAX + 2];
	static const char *const invalid[] = {
		"12--",
		"",
		"x",
		"n",
		"nl_NL",
		"nl-",
		"-nl",
		"nl--NL",
		"12",
		"n1",
		"nl NL",
		"abcdefghi",          /* a subtag of 9 */
		"en-US-Latn",         /* script after region */
		"en-aaa-bbb-ccc-ddd", /* a fourth extlang */
		"abcd-aaa",           /* extlang after a 4-letter language */
		"en-a",
		"en-a-b",
		"en-x",
		"en-x-",
		"en-x-abcdefghi",    /* singletons without a subtag */
		"en-US-1",           /* neither region nor variant */
		"en-abcd-1996-Latn", /* script after a variant */
		"nl\xc3\xa9",
		"nl\n",
		"i-klingon",
		"de-419-DE",
	};

	(void) state;
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		if (text_lang_ok(invalid[i])) {
			fail_msg("'%s' was taken", invalid[i]);
		}
	}
	assert_false(text_lang_ok(NULL));
	/* Too long, though well-formed: 36 bytes. */
	memset(longest, 'a', sizeof(longest));
	memcpy(longest, "en-x", 4);
	for (size_t i = 4; i + 2 < sizeof(longest); i += 3) {
		memcpy(longest + i, "-ab", 3);
	}
	longest[TEXT_LANG_MAX + 1] = '\0';
	longest[TEXT_LANG_MAX]     = 'c';
	assert_int_equal(strlen(longest), TEXT_LANG_MAX + 1);
	assert_false(text_lang_ok(longest));
	longest[TEXT_LANG_MAX] = '\0';
	longest[TEXT_LANG_MAX - 1] =
	    longest[TEXT_LANG_MAX - 1] == '-' ? 'z' : longest[TEXT_LANG_MAX - 1];
	assert_true(text_lang_ok(longest));
}

static void
test_token(void **state)
{
	(void) state;
	assert_true(text_token_ok("wheelchair", 64));
	assert_true(text_token_ok("step-free", 64));
	assert_true(text_token_ok("a", 1));
	assert_true(text_token_ok("24h", 3));
	assert_false(text_token_ok("24h", 2)); /* longer than max */
	assert_false(text_token_ok("", 64));
	assert_false(text_token_ok(NULL, 64));
	assert_false(text_token_ok("Wheelchair", 64));
	assert_false(text_token_ok("step free", 64));
	assert_false(text_token_ok("step_free", 64));
	assert_false(text_token_ok("caf\xc3\xa9", 64));
}

static void
test_free_text(void **state)
{
	(void) state;
	assert_true(text_free_ok("Blijf Groep", 1, 200));
	assert_true(text_free_ok(NULL, 0, 10));
	assert_false(text_free_ok(NULL, 1, 10));
	assert_false(text_free_ok("abc", 4, 10));
	assert_false(text_free_ok("a\tb", 0, 10));
	assert_false(text_free_ok("Opvang \xe2\x80\xae"
	                          "maretsmA",
	    0, 100)); /* U+202E */
}

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
	char                  buf[16];

	(void) state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (text_free_ok(around(refused[i], buf, sizeof(buf)), 1, 100)) {
			fail_msg("U+%04X passed the text check", refused[i]);
		}
	}
	/* "Opvang <RLO>maretsmA" shows as "Opvang Amsterdam". */
	assert_false(text_free_ok("Opvang \xe2\x80\xaemaretsmA", 1, 100));
}

static void
test_scripts_pass(void **state)
{
	static const uint32_t allowed[] = { 0x200b, 0x200c, 0x200d, 0x2010, 0x2027, 0x202f, 0x205f,
		0x2065, 0x2070, 0xfe0f, 0xfffc, 0xe0080, 0xe0100, 0x00e9, 0x0627 };
	char                  buf[16];

	(void) state;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		if (!text_free_ok(around(allowed[i], buf, sizeof(buf)), 1, 100)) {
			fail_msg("U+%04X was refused", allowed[i]);
		}
	}
	assert_true(
	    text_free_ok("\xd9\x85\xdb\x8c\xe2\x80\x8c\xd8\xae\xd9\x88\xd8\xa7\xd9\x87\xd9\x85", 1,
	        100)); /* Persian with a zero-width non-joiner */
	assert_true(text_free_ok("Stichting \xc3\x87"
	                         "a va \xe2\x82\xac",
	    1, 100));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lang_valid),
		cmocka_unit_test(test_lang_invalid),
		cmocka_unit_test(test_token),
		cmocka_unit_test(test_free_text),
		cmocka_unit_test(test_hidden_characters_refused),
		cmocka_unit_test(test_scripts_pass),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
