/*
 * fuzz_regions.c - the region map loader (regions.c): the input is a map file, read with
 * region_map_load as the node reads its regions file; a map that loads is then walked (every
 * name, every distance, every neighbour list), as routing walks it.
 */
#include "fuzz_util.h"

#include "haven/log.h"
#include "haven/regions.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("haven-fuzz", LOG_LEVEL_OFF);
	return (0);
}

static void
walk(const region_map *m)
{
	size_t n = region_map_count(m);
	int    nb[REGIONS_MAX];

	if (n > REGIONS_MAX) {
		abort(); /* the loader's cap */
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = region_map_name(m, i);
		size_t      k;

		if (name == NULL || strlen(name) >= REGION_NAME_MAX ||
		    region_map_find(m, name) != (int) i) {
			abort(); /* names are unique, bounded and found again */
		}
		k = region_map_neighbours(m, i, nb);
		for (size_t j = 0; j < k; j++) {
			if (nb[j] < 0 || (size_t) nb[j] >= n ||
			    region_map_distance(m, (int) i, nb[j]) != 1) {
				abort(); /* a neighbour is one border away */
			}
		}
		for (size_t j = 0; j < n; j++) {
			if (region_map_distance(m, (int) i, (int) j) !=
			    region_map_distance(m, (int) j, (int) i)) {
				abort(); /* borders are listed on both sides */
			}
		}
	}
	(void) region_map_distance(m, -1, (int) n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	region_map *m        = NULL;
	char        err[256] = "";
	hv_status   st       = region_map_load(fuzz_scratch_file(data, size), &m, err, sizeof(err));

	if (st == HV_OK) {
		walk(m);
	} else if (st == HV_INVALID_ARGUMENT && err[0] == '\0') {
		abort(); /* a refusal names the problem */
	}
	region_map_free(m);
	return (0);
}
