/* audit_decode_test.c - audit_entry_decode: one audit.log value in the encoding of audit.h,
 * and every way a value can be malformed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "haven/audit.h"

/* Encodes a value as audit.h describes it (with person when not NULL: version 3's layout);
 * returns its length. */
static size_t
encode_p(uint8_t *v, unsigned version, const char *org, const char *method, const char *subject,
    const char *purpose, const char *person)
{
	const char *strs[] = { org, method, subject, purpose, person };
	int         nstr   = person != NULL ? 5 : 4;
	size_t      o      = 0;

	v[o++] = (uint8_t) version;
	for (int i = 0; i < 8; i++) {
		v[o++] = (uint8_t) (i == 7 ? 42 : 0); /* seq 42 */
	}
	for (int i = 0; i < 8; i++) {
		v[o++] = (uint8_t) (i == 7 ? 0x10 : 0); /* time_ms 16 */
	}
	memcpy(v + o, "\x00\x00\x00\x10", 4); /* role: referrer */
	o += 4;
	for (int i = 0; i < nstr; i++) {
		size_t n = strlen(strs[i]);
		v[o++]   = (uint8_t) n;
		memcpy(v + o, strs[i], n);
		o += n;
	}
	memcpy(v + o, "\xff\xff\xff\xf9", 4); /* result -7 */
	o += 4;
	memset(v + o, 0xaa, 32);
	memset(v + o + 32, 0xbb, 32);
	return (o + 64);
}

static size_t
encode(uint8_t *v, unsigned version, const char *org, const char *method, const char *subject,
    const char *purpose)
{
	return (encode_p(v, version, org, method, subject, purpose, NULL));
}

static void
test_decode(void **state)
{
	uint8_t     v[1024];
	char        long_org[RPC_ORG_ID_MAX + 1];
	audit_entry e;
	size_t      n =
	    encode(v, 2, "fairwork-ngo", "haven.consent.v1.Consent/Check", "subj-1", "referral");

	assert_int_equal(audit_entry_decode(v, n, &e), HV_OK);
	assert_int_equal(e.seq, 42);
	assert_int_equal(e.time_ms, 16);
	assert_int_equal(e.role, RPC_ROLE_REFERRER);
	assert_string_equal(e.org, "fairwork-ngo");
	assert_string_equal(e.method, "haven.consent.v1.Consent/Check");
	assert_string_equal(e.subject, "subj-1");
	assert_string_equal(e.purpose, "referral");
	assert_int_equal(e.result, -7);
	assert_int_equal(e.prev_hash[0], 0xaa);
	assert_int_equal(e.hash[31], 0xbb);
	/* The legacy version reads the same. */
	n = encode(v, 1, "", "m", "", "");
	assert_int_equal(audit_entry_decode(v, n, &e), HV_OK);

	/* A byte missing, a byte over, another version. */
	assert_int_equal(audit_entry_decode(v, n - 1, &e), HV_DATA_LOSS);
	assert_int_equal(audit_entry_decode(v, n + 1, &e), HV_DATA_LOSS);
	n = encode(v, 4, "", "m", "", "");
	assert_int_equal(audit_entry_decode(v, n, &e), HV_DATA_LOSS);
	/* Version 3 names the person; version 2 has none (and reads as ""). */
	n = encode_p(v, 3, "fairwork-ngo", "m", "s", "", "0123456789abcdef0123456789abcdef");
	assert_int_equal(audit_entry_decode(v, n, &e), HV_OK);
	assert_string_equal(e.person, "0123456789abcdef0123456789abcdef");
	assert_string_equal(e.org, "fairwork-ngo");
	n = encode_p(v, 3, "o", "m", "", "", "");
	assert_int_equal(audit_entry_decode(v, n, &e), HV_OK);
	assert_string_equal(e.person, "");
	/* A version 3 value without its person string, and a person too long for its field. */
	n = encode(v, 3, "", "m", "", "");
	assert_int_equal(audit_entry_decode(v, n, &e), HV_DATA_LOSS);
	n = encode_p(v, 3, "o", "m", "", "", "0123456789abcdef0123456789abcdef0");
	assert_int_equal(audit_entry_decode(v, n, &e), HV_DATA_LOSS);
	n = encode(v, 2, "o", "m", "", "");
	assert_int_equal(audit_entry_decode(v, n, &e), HV_OK);
	assert_string_equal(e.person, "");
	/* Shorter than the fixed part; empty. */
	assert_int_equal(audit_entry_decode(v, 20, &e), HV_DATA_LOSS);
	assert_int_equal(audit_entry_decode(v, 0, &e), HV_DATA_LOSS);
	/* A string longer than its field. */
	memset(long_org, 'o', RPC_ORG_ID_MAX);
	long_org[RPC_ORG_ID_MAX] = '\0';
	n                        = encode(v, 2, long_org, "m", "", "");
	assert_int_equal(audit_entry_decode(v, n, &e), HV_DATA_LOSS);
	/* A string length running past the end. */
	n     = encode(v, 2, "", "m", "", "");
	v[21] = 200;
	assert_int_equal(audit_entry_decode(v, n, &e), HV_DATA_LOSS);

	assert_int_equal(audit_entry_decode(NULL, 0, &e), HV_INVALID_ARGUMENT);
	assert_int_equal(audit_entry_decode(v, n, NULL), HV_INVALID_ARGUMENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
