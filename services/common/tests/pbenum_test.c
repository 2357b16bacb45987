/* pbenum_test.c - enum names, parsing, validation and the list of names, on the capacity and
 * consent enums (one without a repeated prefix, one with). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "haven/pbenum.h"
#include "haven/capacity/v1/capacity.pb-c.h"
#include "haven/consent/v1/consent.pb-c.h"

#define TYPE    (&haven__capacity__v1__service_type__descriptor)
#define ROLE    (&haven__capacity__v1__role__descriptor)
#define PURPOSE (&haven__consent__v1__purpose__descriptor)

static void
test_ok(void **state)
{
	(void) state;
	assert_true(pbenum_ok(TYPE, HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID));
	assert_true(pbenum_ok(ROLE, HAVEN__CAPACITY__V1__ROLE__NATIONAL_COORDINATOR));
	assert_false(pbenum_ok(TYPE, 0));  /* unspecified */
	assert_false(pbenum_ok(TYPE, 99)); /* an open enum's unknown number */
	assert_false(pbenum_ok(TYPE, -1));
	assert_false(pbenum_ok(NULL, 1));
}

static void
test_name(void **state)
{
	char buf[PBENUM_NAME_MAX];

	(void) state;
	assert_string_equal(pbenum_name(TYPE, NULL, HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID,
	                        buf, sizeof(buf)),
	    "legal-aid");
	assert_string_equal(pbenum_name(ROLE, NULL, HAVEN__CAPACITY__V1__ROLE__NATIONAL_COORDINATOR,
	                        buf, sizeof(buf)),
	    "national-coordinator");
	assert_string_equal(pbenum_name(PURPOSE, "PURPOSE_",
	                        HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER, buf,
	                        sizeof(buf)),
	    "share-with-provider");
	/* Without the prefix argument the whole proto name is written. */
	assert_string_equal(pbenum_name(PURPOSE, NULL, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_CONTACT,
	                        buf, sizeof(buf)),
	    "purpose-contact");
	/* A prefix a name does not start with leaves it whole. */
	assert_string_equal(pbenum_name(TYPE, "PURPOSE_",
	                        HAVEN__CAPACITY__V1__SERVICE_TYPE__SHELTER, buf, sizeof(buf)),
	    "shelter");
	assert_string_equal(pbenum_name(TYPE, NULL, 0, buf, sizeof(buf)),
	    "service-type-unspecified");
	assert_string_equal(pbenum_name(TYPE, NULL, 99, buf, sizeof(buf)), "99");
	assert_string_equal(pbenum_name(TYPE, NULL, -7, buf, sizeof(buf)), "-7");
	/* Cut short to the buffer, always terminated. */
	assert_string_equal(pbenum_name(TYPE, NULL, HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID,
	                        buf, 4),
	    "leg");
	assert_string_equal(pbenum_name(TYPE, NULL, 1, buf, 0), "");
}

static void
test_parse(void **state)
{
	int v = -5;

	(void) state;
	assert_int_equal(pbenum_parse(TYPE, NULL, "legal-aid", &v), 0);
	assert_int_equal(v, HAVEN__CAPACITY__V1__SERVICE_TYPE__LEGAL_AID);
	assert_int_equal(pbenum_parse(TYPE, NULL, "mental_health", &v), 0);
	assert_int_equal(v, HAVEN__CAPACITY__V1__SERVICE_TYPE__MENTAL_HEALTH);
	assert_int_equal(pbenum_parse(PURPOSE, "PURPOSE_", "share-with-provider", &v), 0);
	assert_int_equal(v, HAVEN__CONSENT__V1__PURPOSE__PURPOSE_SHARE_WITH_PROVIDER);

	v = -5;
	assert_int_equal(pbenum_parse(TYPE, NULL, "legal", &v), -1);      /* a prefix of a name */
	assert_int_equal(pbenum_parse(TYPE, NULL, "legal-aids", &v), -1); /* longer than one */
	assert_int_equal(pbenum_parse(TYPE, NULL, "LEGAL_AID", &v), -1);  /* proto spelling */
	assert_int_equal(pbenum_parse(TYPE, NULL, "service-type-unspecified", &v), -1);
	assert_int_equal(pbenum_parse(TYPE, NULL, "", &v), -1);
	assert_int_equal(pbenum_parse(TYPE, NULL, NULL, &v), -1);
	assert_int_equal(pbenum_parse(PURPOSE, "PURPOSE_", "purpose-contact", &v), -1);
	assert_int_equal(v, -5); /* untouched by a failure */
}

static void
test_round_trip(void **state)
{
	const ProtobufCEnumDescriptor *ds[]       = { TYPE, ROLE, PURPOSE,
		      &haven__capacity__v1__population__descriptor,
		      &haven__consent__v1__category__descriptor };
	const char                    *prefixes[] = { NULL, NULL, "PURPOSE_", NULL, "CATEGORY_" };
	char                           buf[PBENUM_NAME_MAX];

	(void) state;
	for (size_t k = 0; k < sizeof(ds) / sizeof(ds[0]); k++) {
		for (unsigned i = 0; i < ds[k]->n_values; i++) {
			int want = ds[k]->values[i].value, got = 0;

			if (want == 0) {
				continue;
			}
			pbenum_name(ds[k], prefixes[k], want, buf, sizeof(buf));
			assert_int_equal(pbenum_parse(ds[k], prefixes[k], buf, &got), 0);
			assert_int_equal(got, want);
			assert_true(pbenum_ok(ds[k], want));
		}
	}
}

static void
test_list(void **state)
{
	char buf[256];
	char small[20];

	(void) state;
	assert_string_equal(pbenum_list(ROLE, NULL, buf, sizeof(buf)),
	    "referrer, provider, municipality, coordinator, admin, national-coordinator, "
	    "peer-support-group");
	assert_string_equal(pbenum_list(PURPOSE, "PURPOSE_", buf, sizeof(buf)),
	    "referral, share-with-provider, contact, statistics");
	/* Cut short with "..." */
	pbenum_list(ROLE, NULL, small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_string_equal(small + sizeof(small) - 4, "...");
	assert_string_equal(pbenum_list(ROLE, NULL, buf, 0), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok),
		cmocka_unit_test(test_name),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_list),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
