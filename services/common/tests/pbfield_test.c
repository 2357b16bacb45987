/* pbfield_test.c - the layout of protobuf-c fields (pbfield.h) against what the compiler lays
 * out: every repeated field type of tests/proto's AllTypes, filled through the generated
 * struct, must be read back at the same addresses and counts through the descriptor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "haven/pbfield.h"
#include "haven/testing/v1/pbjson.pb-c.h"

typedef Haven__Testing__V1__AllTypes AllTypes;

/* Three values of type T in field of m, through the generated struct. */
#define FILL(T, field, ...)                                                                        \
	do {                                                                                       \
		static T v_##field[3] = { __VA_ARGS__ };                                           \
		m.field               = v_##field;                                                 \
		m.n_##field           = 3;                                                         \
	} while (0)

static const ProtobufCFieldDescriptor *
field(const char *name)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
	    &haven__testing__v1__all_types__descriptor, name);

	assert_non_null(f);
	return (f);
}

/* The address of element i of the generated struct's array, as pbfield_at must find it. */
#define ELEMENT(field, i) ((const void *) &m.field[i])

static void
test_repeated(void **state)
{
	AllTypes                         m = HAVEN__TESTING__V1__ALL_TYPES__INIT;
	static Haven__Testing__V1__Inner in[3];

	(void) state;
	for (size_t i = 0; i < 3; i++) {
		haven__testing__v1__inner__init(&in[i]);
	}
	FILL(double, r_double, 1.0, 2.0, 3.0);
	FILL(float, r_float, 1.0f, 2.0f, 3.0f);
	FILL(int32_t, r_int32, 1, -2, 3);
	FILL(int64_t, r_int64, 1, -2, 3);
	FILL(uint32_t, r_uint32, 1, 2, 3);
	FILL(uint64_t, r_uint64, 1, 2, 3);
	FILL(int32_t, r_sint32, 1, -2, 3);
	FILL(int64_t, r_sint64, 1, -2, 3);
	FILL(uint32_t, r_fixed32, 1, 2, 3);
	FILL(uint64_t, r_fixed64, 1, 2, 3);
	FILL(int32_t, r_sfixed32, 1, -2, 3);
	FILL(int64_t, r_sfixed64, 1, -2, 3);
	FILL(protobuf_c_boolean, r_bool, 1, 0, 1);
	FILL(char *, r_string, "a", "b", "c");
	FILL(ProtobufCBinaryData, r_bytes, { 1, (uint8_t *) "a" }, { 2, (uint8_t *) "bc" });
	FILL(Haven__Testing__V1__Colour, r_enum, HAVEN__TESTING__V1__COLOUR__COLOUR_RED,
	    HAVEN__TESTING__V1__COLOUR__COLOUR_GREEN, HAVEN__TESTING__V1__COLOUR__COLOUR_NEGATIVE);
	FILL(Haven__Testing__V1__Inner *, r_inner, &in[0], &in[1], &in[2]);

#define CHECK(name)                                                                                \
	do {                                                                                       \
		const ProtobufCFieldDescriptor *f = field(#name);                                  \
		assert_int_equal(pbfield_count(&m.base, f), 3);                                    \
		for (size_t i = 0; i < 3; i++) {                                                   \
			assert_ptr_equal(pbfield_at(&m.base, f, i), ELEMENT(name, i));             \
		}                                                                                  \
		assert_int_equal(pbfield_size(f->type), sizeof(m.name[0]));                        \
	} while (0)
	CHECK(r_double);
	CHECK(r_float);
	CHECK(r_int32);
	CHECK(r_int64);
	CHECK(r_uint32);
	CHECK(r_uint64);
	CHECK(r_sint32);
	CHECK(r_sint64);
	CHECK(r_fixed32);
	CHECK(r_fixed64);
	CHECK(r_sfixed32);
	CHECK(r_sfixed64);
	CHECK(r_bool);
	CHECK(r_string);
	CHECK(r_bytes);
	CHECK(r_enum);
	CHECK(r_inner);
#undef CHECK
	/* What the addresses lead to: the values themselves. */
	assert_string_equal(*(char *const *) pbfield_at(&m.base, field("r_string"), 2), "c");
	assert_int_equal(
	    ((const ProtobufCBinaryData *) pbfield_at(&m.base, field("r_bytes"), 1))->len, 2);
	assert_int_equal(*(const int64_t *) pbfield_at(&m.base, field("r_sint64"), 1), -2);
}

static void
test_empty(void **state)
{
	AllTypes m = HAVEN__TESTING__V1__ALL_TYPES__INIT;

	(void) state;
	assert_int_equal(pbfield_count(&m.base, field("r_string")), 0);
	assert_int_equal(pbfield_count(&m.base, field("r_inner")), 0);
}

/* The wire's varints: one byte, several, the largest, and the ones that run out or past 64 bits. */
static void
test_varint(void **state)
{
	static const uint8_t one[] = { 0x05 }, three_hundred[] = { 0xac, 0x02 },
	                     max[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 },
	                     cut[] = { 0x80, 0x80 },
	                     eleven[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
		                     0x80, 0x01 };
	const uint8_t *p;
	uint64_t       v = 0;

	(void) state;
	p = one;
	assert_true(pbfield_varint(&p, one + sizeof(one), &v));
	assert_int_equal(v, 5);
	assert_ptr_equal(p, one + 1);
	p = three_hundred;
	assert_true(pbfield_varint(&p, three_hundred + sizeof(three_hundred), &v));
	assert_int_equal(v, 300);
	p = max;
	assert_true(pbfield_varint(&p, max + sizeof(max), &v));
	assert_true(v == UINT64_MAX);
	p = cut;
	assert_false(pbfield_varint(&p, cut + sizeof(cut), &v));
	p = eleven;
	assert_false(pbfield_varint(&p, eleven + sizeof(eleven), &v));
	p = one;
	assert_false(pbfield_varint(&p, one, &v)); /* nothing to read */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repeated),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_varint),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
