/*
 * pbjson_test.c - the proto3 JSON converter on its own: output form, defaults, oneofs, enums,
 * bytes, floats, limits, errors that name the field and never the value, and decoding into a
 * caller's allocator that fails its N-th allocation without a leak. The agreement with a
 * second implementation is pbjson_crosscheck.py's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "haven/arena.h" /* the per-call arena, as the RPC server decodes */
#include "haven/pbjson.h"
#include "haven/testing/v1/pbjson.pb-c.h"

typedef Haven__Testing__V1__AllTypes AllTypes;
typedef Haven__Testing__V1__Inner    Inner;
#define ALL_DESC (&haven__testing__v1__all_types__descriptor)

/* Encodes m and asserts the output equals the JSON value want. */
static void
assert_encodes(const ProtobufCMessage *m, const char *want)
{
	char        *out = NULL, err[PBJSON_ERR_SIZE];
	size_t       n   = 0;
	json_error_t je;

	assert_int_equal(pbjson_encode(m, NULL, &out, &n, err, sizeof(err)), HV_OK);
	assert_int_equal(n, strlen(out));
	json_t *a = json_loads(out, 0, &je);
	json_t *b = json_loads(want, 0, &je);
	assert_non_null(a);
	assert_non_null(b);
	if (!json_equal(a, b)) {
		fail_msg("encoded %s, wanted %s", out, want);
	}
	json_decref(a);
	json_decref(b);
	free(out);
}

/* Decodes text as an AllTypes; asserts the status and, on failure, that err contains want. */
static AllTypes *
decode(const char *text, hv_status want_st, const char *want)
{
	ProtobufCMessage *m = NULL;
	char              err[PBJSON_ERR_SIZE];
	hv_status         st =
	    pbjson_decode(ALL_DESC, text, strlen(text), NULL, NULL, &m, err, sizeof(err));

	if (st != want_st) {
		fail_msg("%s: status %d, wanted %d (%s)", text, st, want_st, err);
	}
	if (st != HV_OK) {
		assert_null(m);
		if (strstr(err, want) == NULL) {
			fail_msg("%s: message \"%s\" lacks \"%s\"", text, err, want);
		}
	}
	return ((AllTypes *) m);
}

static void
test_defaults_omitted(void **state)
{
	AllTypes m = HAVEN__TESTING__V1__ALL_TYPES__INIT;

	(void) state;
	assert_encodes(&m.base, "{}");
	/* A set oneof member is written even at its default; an empty sub-message too. */
	Inner in      = HAVEN__TESTING__V1__INNER__INIT;
	m.choice_case = HAVEN__TESTING__V1__ALL_TYPES__CHOICE_O_INT64;
	m.o_int64     = 0;
	m.f_inner     = &in;
	assert_encodes(&m.base, "{\"oInt64\": \"0\", \"fInner\": {}}");
	m.choice_case = HAVEN__TESTING__V1__ALL_TYPES__CHOICE_O_STRING;
	m.o_string    = "";
	assert_encodes(&m.base, "{\"oString\": \"\", \"fInner\": {}}");
}

static void
test_scalars(void **state)
{
	AllTypes m     = HAVEN__TESTING__V1__ALL_TYPES__INIT;
	uint8_t  raw[] = { 0xfb, 0xff, 0xbf };
	double   rd[]  = { NAN, INFINITY, -INFINITY, 0.5 };
	int      re[]  = { 1, 99 };

	(void) state;
	m.f_int64            = INT64_MIN;
	m.f_uint64           = UINT64_MAX;
	m.f_fixed64          = 1;
	m.f_int32            = -3;
	m.f_uint32           = UINT32_MAX;
	m.f_float            = 0.1f;
	m.f_bool             = 1;
	m.f_string           = "Grüße";
	m.f_bytes.data       = raw;
	m.f_bytes.len        = sizeof(raw);
	m.f_enum             = HAVEN__TESTING__V1__COLOUR__COLOUR_NEGATIVE;
	m.snake_case_2_field = 2;
	m.n_r_double         = 4;
	m.r_double           = rd;
	m.n_r_enum           = 2;
	m.r_enum             = (Haven__Testing__V1__Colour *) re;
	assert_encodes(&m.base,
	    "{\"fInt64\": \"-9223372036854775808\", \"fUint64\": \"18446744073709551615\","
	    " \"fFixed64\": \"1\", \"fInt32\": -3, \"fUint32\": 4294967295, \"fFloat\": 0.1,"
	    " \"fBool\": true, \"fString\": \"Grüße\", \"fBytes\": \"+/+/\","
	    " \"fEnum\": \"COLOUR_NEGATIVE\", \"snakeCase2Field\": \"2\","
	    " \"rDouble\": [\"NaN\", \"Infinity\", \"-Infinity\", 0.5],"
	    " \"rEnum\": [\"COLOUR_RED\", 99]}");
}

static void
test_decode_values(void **state)
{
	(void) state;
	AllTypes *m =
	    decode("{\"fInt64\": \"-5\", \"fUint32\": 4e9, \"fUint64\": 7, \"fBytes\": \"-_-_\","
	           " \"rBytes\": [\"YWI\", \"YWI=\"], \"fEnum\": 99, \"rEnum\": [\"COLOUR_RED\"],"
	           " \"fFloat\": \"-Infinity\", \"fDouble\": \"NaN\", \"f_string\": \"x\","
	           " \"oInner\": {\"child\": {\"value\": 4}}, \"fInt32\": null}",
	        HV_OK, NULL);
	assert_int_equal(m->f_int64, -5);
	assert_int_equal(m->f_uint32, 4000000000u);
	assert_int_equal(m->f_uint64, 7);
	assert_int_equal(m->f_bytes.len, 3);
	assert_memory_equal(m->f_bytes.data, "\xfb\xff\xbf", 3);
	assert_int_equal(m->n_r_bytes, 2);
	assert_memory_equal(m->r_bytes[0].data, "ab", 2);
	assert_memory_equal(m->r_bytes[1].data, "ab", 2);
	assert_int_equal(m->f_enum, 99);
	assert_int_equal(m->r_enum[0], HAVEN__TESTING__V1__COLOUR__COLOUR_RED);
	assert_true(isinf(m->f_float) && m->f_float < 0);
	assert_true(isnan(m->f_double));
	assert_string_equal(m->f_string, "x");
	assert_int_equal(m->choice_case, HAVEN__TESTING__V1__ALL_TYPES__CHOICE_O_INNER);
	assert_int_equal(m->o_inner->child->value, 4);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	/* An integral real above 2^63 for a uint64 (no signed conversion on the way). */
	m = decode("{\"fUint64\": 1.8e19, \"rInt64\": [-9.2e18]}", HV_OK, NULL);
	assert_true(m->f_uint64 == UINT64_C(18000000000000000000));
	assert_true(m->r_int64[0] == INT64_C(-9200000000000000000));
	protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void
test_errors_name_field_not_value(void **state)
{
	(void) state;
	decode("{\"fString\": 5}", HV_INVALID_ARGUMENT,
	    "haven.testing.v1.AllTypes.f_string: expected");
	decode("{\"secretName\": \"Maria\"}", HV_INVALID_ARGUMENT, "unknown field \"secretName\"");
	/* A key that is not an identifier is not repeated; nor is a value in bad JSON. */
	char              err[PBJSON_ERR_SIZE];
	ProtobufCMessage *m  = NULL;
	const char       *t1 = "{\"Maria Jansen 1990\": 1}";
	assert_int_equal(pbjson_decode(ALL_DESC, t1, strlen(t1), NULL, NULL, &m, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_null(strstr(err, "Maria"));
	const char *t2 = "{\"fString\": Maria}";
	assert_int_equal(pbjson_decode(ALL_DESC, t2, strlen(t2), NULL, NULL, &m, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "invalid JSON (syntax error) at line 1"));
	assert_null(strstr(err, "Maria"));
	decode("{\"oString\": \"a\", \"oInner\": {}}", HV_INVALID_ARGUMENT,
	    "o_inner: another member");
	decode("{\"fInt32\": 1, \"f_int32\": 1}", HV_INVALID_ARGUMENT, "f_int32: given twice");
	decode("{\"rString\": [\"a\", null]}", HV_INVALID_ARGUMENT, "r_string: null in an array");
	decode("{\"fString\": \"a\\u0000b\"}", HV_INVALID_ARGUMENT, "invalid JSON (U+0000");
	decode("{\"fInt32\": 1} x", HV_INVALID_ARGUMENT, "invalid JSON (text after the value)");
	decode("{\"fInner\": {\"child\": {\"value\": 1.5}}}", HV_INVALID_ARGUMENT,
	    "haven.testing.v1.Inner.value: integer out of range");
	decode("{\"fFloat\": 3.40282357e38}", HV_INVALID_ARGUMENT, "f_float: out of range");
	decode("{\"fUint64\": 1e20}", HV_INVALID_ARGUMENT, "f_uint64: integer out of range");
	decode("{\"fBytes\": \"YQ=\"}", HV_INVALID_ARGUMENT, "f_bytes: not valid base64");
	decode("{\"fBytes\": \"YR==\"}", HV_INVALID_ARGUMENT, "f_bytes: not valid base64");
	decode("\"x\"", HV_INVALID_ARGUMENT, "expected a JSON object");
	/* Errors free what was decoded before them (ASan's leak check). */
	decode(
	    "{\"rInner\": [{\"label\": \"a\"}, {\"child\": {\"label\": 5}}], \"fString\": \"b\"}",
	    HV_INVALID_ARGUMENT, "Inner.label: expected a string");
	decode("{\"fString\": \"b\", \"oInner\": {\"label\": \"a\", \"value\": \"x\"}}",
	    HV_INVALID_ARGUMENT, "Inner.value: not an integer");
}

static void
test_encode_refuses_bad_utf8(void **state)
{
	AllTypes m   = HAVEN__TESTING__V1__ALL_TYPES__INIT;
	char    *out = (char *) 1, err[PBJSON_ERR_SIZE];

	(void) state;
	m.f_string = "\xff\xfe";
	assert_int_equal(pbjson_encode(&m.base, NULL, &out, NULL, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_null(out);
	assert_string_equal(err, "haven.testing.v1.AllTypes.f_string: not valid UTF-8");
}

static void
test_limits(void **state)
{
	pbjson_limits     lim = { 0 };
	ProtobufCMessage *m   = NULL;
	char              err[PBJSON_ERR_SIZE], text[512];
	Inner             in[5];

	(void) state;
	/* Depth: the top-level message at 0, fInner at 1, each child one more (4 here). */
	snprintf(text, sizeof(text), "{\"fInner\": {\"child\": {\"child\": {\"child\": {}}}}}");
	lim.pl_max_depth = 4;
	assert_int_equal(pbjson_decode(ALL_DESC, text, strlen(text), NULL, &lim, &m, err,
	                     sizeof(err)),
	    HV_OK);
	protobuf_c_message_free_unpacked(m, NULL);
	lim.pl_max_depth = 3;
	assert_int_equal(pbjson_decode(ALL_DESC, text, strlen(text), NULL, &lim, &m, err,
	                     sizeof(err)),
	    HV_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(err, "nested deeper than 3"));
	for (int i = 0; i < 5; i++) {
		haven__testing__v1__inner__init(&in[i]);
		in[i].child = i < 4 ? &in[i + 1] : NULL;
	}
	char *out = NULL;
	assert_int_equal(pbjson_encode(&in[0].base, &lim, &out, NULL, err, sizeof(err)),
	    HV_RESOURCE_EXHAUSTED);
	assert_null(out);
	/* Input size and allocation. */
	lim.pl_max_depth = 0;
	lim.pl_max_input = 10;
	assert_int_equal(pbjson_decode(ALL_DESC, text, strlen(text), NULL, &lim, &m, err,
	                     sizeof(err)),
	    HV_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(err, "longer than 10 bytes"));
	lim.pl_max_input = 0;
	lim.pl_max_alloc = sizeof(AllTypes) + 100;
	const char *big  = "{\"rInt64\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14]}";
	assert_int_equal(pbjson_decode(ALL_DESC, big, strlen(big), NULL, &lim, &m, err,
	                     sizeof(err)),
	    HV_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(err, "larger than"));
	/* Not NUL-terminated: only len bytes are read. */
	assert_int_equal(pbjson_decode(ALL_DESC, "{}garbage", 2, NULL, NULL, &m, err, sizeof(err)),
	    HV_OK);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* An allocator that fails its fail_at-th allocation and counts what is live. */
typedef struct {
	int    calls, fail_at;
	size_t live;
} counting;

static void *
c_alloc(void *data, size_t n)
{
	counting *c = data;
	if (++c->calls == c->fail_at) {
		return (NULL);
	}
	size_t *p = malloc(n + sizeof(max_align_t));
	if (p == NULL) {
		return (NULL);
	}
	c->live++;
	return ((char *) p + sizeof(max_align_t));
}

static void
c_free(void *data, void *p)
{
	counting *c = data;
	if (p != NULL) {
		c->live--;
		free((char *) p - sizeof(max_align_t));
	}
}

static void
test_allocator_failures(void **state)
{
	const char *text = "{\"fString\": \"a\", \"fBytes\": \"YWI=\", \"rString\": [\"x\", \"y\"],"
	                   " \"rInner\": [{\"label\": \"z\", \"child\": {}}], \"oString\": \"o\","
	                   " \"fInner\": {\"label\": \"i\"}}";
	char        err[PBJSON_ERR_SIZE];

	(void) state;
	for (int n = 1;; n++) {
		counting           c = { 0, n, 0 };
		ProtobufCAllocator a = { c_alloc, c_free, &c };
		ProtobufCMessage  *m = NULL;
		hv_status          st =
		    pbjson_decode(ALL_DESC, text, strlen(text), &a, NULL, &m, err, sizeof(err));
		if (st == HV_OK) {
			assert_true(n > 5);
			assert_string_equal(((AllTypes *) m)->r_inner[0]->label, "z");
			protobuf_c_message_free_unpacked(m, &a);
			assert_int_equal(c.live, 0);
			break;
		}
		assert_int_equal(st, HV_RESOURCE_EXHAUSTED);
		assert_null(m);
		assert_int_equal(c.live, 0);
	}
}

/* Decoding into the RPC server's per-call arena: its budget bounds the message. */
static void
test_arena(void **state)
{
	static arena      a;
	const char       *text = "{\"rString\": [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
	                         " \"b\", \"c\"], \"fInner\": {\"label\": \"x\"}}";
	ProtobufCMessage *m    = NULL;
	char              err[PBJSON_ERR_SIZE];

	(void) state;
	arena_init(&a, sizeof(AllTypes) + 64);
	assert_int_equal(pbjson_decode(ALL_DESC, text, strlen(text), &a.a_pb, NULL, &m, err,
	                     sizeof(err)),
	    HV_RESOURCE_EXHAUSTED);
	assert_null(m);
	assert_non_null(strstr(err, "out of memory"));
	arena_reset(&a);
	arena_init(&a, 64 * 1024);
	assert_int_equal(pbjson_decode(ALL_DESC, text, strlen(text), &a.a_pb, NULL, &m, err,
	                     sizeof(err)),
	    HV_OK);
	assert_string_equal(((AllTypes *) m)->r_string[2], "c");
	assert_string_equal(((AllTypes *) m)->f_inner->label, "x");
	protobuf_c_message_free_unpacked(m, &a.a_pb); /* a no-op for the arena */
	arena_reset(&a);
}

static void
test_round_trip_binary(void **state)
{
	AllTypes m   = HAVEN__TESTING__V1__ALL_TYPES__INIT;
	Inner    in  = HAVEN__TESTING__V1__INNER__INIT;
	char    *out = NULL, err[PBJSON_ERR_SIZE];
	size_t   n;
	int64_t  r64[] = { INT64_MIN, 0, INT64_MAX };
	char    *rs[]  = { "", "ü" };

	(void) state;
	in.value      = -1;
	in.label      = "l";
	m.f_inner     = &in;
	m.f_double    = 5e-324;
	m.f_float     = FLT_MAX; /* written 3.4028235e+38, above FLT_MAX as a double */
	m.f_sint64    = -42;
	m.f_sfixed32  = INT32_MIN;
	m.n_r_sint64  = 3;
	m.r_sint64    = r64;
	m.n_r_string  = 2;
	m.r_string    = rs;
	m.choice_case = HAVEN__TESTING__V1__ALL_TYPES__CHOICE_O_ENUM;
	m.o_enum      = 0;
	assert_int_equal(pbjson_encode(&m.base, NULL, &out, &n, err, sizeof(err)), HV_OK);
	ProtobufCMessage *back = NULL;
	assert_int_equal(pbjson_decode(ALL_DESC, out, n, NULL, NULL, &back, err, sizeof(err)),
	    HV_OK);
	size_t  a = protobuf_c_message_get_packed_size(&m.base);
	size_t  b = protobuf_c_message_get_packed_size(back);
	uint8_t pa[256], pb[256];
	assert_int_equal(a, b);
	assert_true(a <= sizeof(pa));
	protobuf_c_message_pack(&m.base, pa);
	protobuf_c_message_pack(back, pb);
	assert_memory_equal(pa, pb, a);
	protobuf_c_message_free_unpacked(back, NULL);
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_omitted),
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_decode_values),
		cmocka_unit_test(test_errors_name_field_not_value),
		cmocka_unit_test(test_encode_refuses_bad_utf8),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_allocator_failures),
		cmocka_unit_test(test_arena),
		cmocka_unit_test(test_round_trip_binary),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
