/*
 * regions.h - the region map: the regions a node serves and which border which.
 *
 * Routing ranks providers by region distance (own region 0, a neighbour 1, further regions by
 * the number of borders crossed), and every region named anywhere (an organisation's home, a
 * service area, a referral's excluded regions) must be a region of the map. The default is the
 * ten Dutch police regions with their land borders (Belgium and Germany left out).
 *
 * A map file has one line per region, `Region: Neighbour, Neighbour, ...`, `#` comments.
 * Borders must be listed on both sides; a region named as a neighbour must have its own line.
 */
#ifndef HAVEN_REGIONS_H
#define HAVEN_REGIONS_H

#include <stddef.h>

#include "haven/status.h"

#define REGION_NAME_MAX    64 /* including the NUL */
#define REGIONS_MAX        64
#define REGION_UNREACHABLE 255

typedef struct region_map region_map;

/* The ten Dutch police regions. */
hv_status region_map_default(region_map **out);

/* Reads a map file; on failure err names the line and the problem. */
hv_status region_map_load(const char *path, region_map **out, char *err, size_t errsz);

/* Parses map text (the file format) from memory. */
hv_status region_map_parse(const char *text, region_map **out, char *err, size_t errsz);

void region_map_free(region_map *m);

size_t region_map_count(const region_map *m);
/* The name of region i (0 <= i < count). */
const char *region_map_name(const region_map *m, size_t i);
/* The index of a region by exact name, or -1. */
int region_map_find(const region_map *m, const char *name);
/* Borders crossed from a to b: 0 the same region, 1 neighbours, ...; REGION_UNREACHABLE when
 * no path exists or an index is out of range. */
unsigned region_map_distance(const region_map *m, int a, int b);
/* Neighbours of region i: their indices in out (at most REGIONS_MAX); returns the count. */
size_t region_map_neighbours(const region_map *m, size_t i, int out[REGIONS_MAX]);

#endif
