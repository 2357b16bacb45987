/* regions_test.c - the region map: the Dutch default, distances, and bad map files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "haven/regions.h"

static void
test_default_map(void **state)
{
	region_map *m;
	int         nb[REGIONS_MAX];

	assert_int_equal(region_map_default(&m), HV_OK);
	assert_int_equal(region_map_count(m), 10);
	int ams = region_map_find(m, "Amsterdam");
	int nh  = region_map_find(m, "Noord-Holland");
	int lim = region_map_find(m, "Limburg");
	int zwb = region_map_find(m, "Zeeland-West-Brabant");
	assert_true(ams >= 0 && nh >= 0 && lim >= 0 && zwb >= 0);
	assert_int_equal(region_map_find(m, "amsterdam"), -1);
	assert_int_equal(region_map_distance(m, ams, ams), 0);
	assert_int_equal(region_map_distance(m, ams, nh), 1);
	/* Amsterdam -> Midden-Nederland -> Oost-Nederland -> Limburg */
	assert_int_equal(region_map_distance(m, ams, lim), 3);
	assert_int_equal(region_map_distance(m, lim, ams), 3);
	/* Limburg -> Oost-Brabant -> Zeeland-West-Brabant */
	assert_int_equal(region_map_distance(m, lim, zwb), 2);
	assert_int_equal(region_map_distance(m, -1, 0), REGION_UNREACHABLE);
	assert_int_equal(region_map_distance(m, 0, 10), REGION_UNREACHABLE);
	assert_int_equal(region_map_neighbours(m, (size_t) lim, nb), 2);
	region_map_free(m);
}

static void
test_custom_and_bad_maps(void **state)
{
	region_map *m;
	char        err[256];

	assert_int_equal(region_map_parse("# islands\nA: B\nB: A\nC:\n", &m, err, sizeof(err)),
	    HV_OK);
	assert_int_equal(region_map_distance(m, 0, 2), REGION_UNREACHABLE);
	region_map_free(m);

	assert_int_equal(region_map_parse("A: B\n", &m, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "'B' of A is not a region"));
	assert_int_equal(region_map_parse("A: B\nB:\n", &m, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "B does not list A"));
	assert_int_equal(region_map_parse("A: A\n", &m, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_int_equal(region_map_parse("A\n", &m, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "line 1"));
	assert_int_equal(region_map_parse("A:\nA:\n", &m, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_int_equal(region_map_parse("A<b>:\n", &m, err, sizeof(err)), HV_INVALID_ARGUMENT);
	assert_int_equal(region_map_parse("# nothing\n", &m, err, sizeof(err)),
	    HV_INVALID_ARGUMENT);
	assert_int_equal(region_map_load("/nonexistent/map", &m, err, sizeof(err)), HV_NOT_FOUND);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_map),
		cmocka_unit_test(test_custom_and_bad_maps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
