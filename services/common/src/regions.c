/*
 * regions.c - the region map and the distances between regions (see regions.h).
 * Distances are computed once, by breadth-first search from every region, when a map is made:
 * routing asks for them on every candidate.
 */
#include "haven/regions.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct region_map {
	size_t        rm_n;
	char          rm_names[REGIONS_MAX][REGION_NAME_MAX];
	bool          rm_adj[REGIONS_MAX][REGIONS_MAX];
	unsigned char rm_dist[REGIONS_MAX][REGIONS_MAX];
};

static const char default_map[] =
    "Noord-Nederland: Oost-Nederland, Midden-Nederland, Noord-Holland\n"
    "Oost-Nederland: Noord-Nederland, Midden-Nederland, Rotterdam, Oost-Brabant, Limburg\n"
    "Midden-Nederland: Noord-Nederland, Oost-Nederland, Noord-Holland, Amsterdam, Den Haag, "
    "Rotterdam\n"
    "Noord-Holland: Noord-Nederland, Midden-Nederland, Amsterdam, Den Haag\n"
    "Amsterdam: Noord-Holland, Midden-Nederland, Den Haag\n"
    "Den Haag: Noord-Holland, Amsterdam, Midden-Nederland, Rotterdam\n"
    "Rotterdam: Den Haag, Midden-Nederland, Oost-Nederland, Zeeland-West-Brabant\n"
    "Zeeland-West-Brabant: Rotterdam, Oost-Brabant\n"
    "Oost-Brabant: Zeeland-West-Brabant, Oost-Nederland, Limburg\n"
    "Limburg: Oost-Brabant, Oost-Nederland\n";

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char) *s)) {
		s++;
	}
	e = s + strlen(s);
	while (e > s && isspace((unsigned char) e[-1])) {
		*--e = '\0';
	}
	return (s);
}

static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= REGION_NAME_MAX) {
		return (false);
	}
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char) *s) && *s != '-' && *s != ' ' && *s != '.' &&
		    *s != '\'') {
			return (false);
		}
	}
	return (true);
}

static void
compute_distances(region_map *m)
{
	for (size_t src = 0; src < m->rm_n; src++) {
		int    queue[REGIONS_MAX];
		size_t head = 0, tail = 0;

		memset(m->rm_dist[src], REGION_UNREACHABLE, sizeof(m->rm_dist[src]));
		m->rm_dist[src][src] = 0;
		queue[tail++]        = (int) src;
		while (head < tail) {
			int cur = queue[head++];
			for (size_t nb = 0; nb < m->rm_n; nb++) {
				if (m->rm_adj[cur][nb] &&
				    m->rm_dist[src][nb] == REGION_UNREACHABLE) {
					m->rm_dist[src][nb] =
					    (unsigned char) (m->rm_dist[src][cur] + 1);
					queue[tail++] = (int) nb;
				}
			}
		}
	}
}

/* Two passes over the text: first the region names (the part before ':'), then the borders,
 * so that a line may name a region declared further down. */
/* region_map_parse's first pass: region name (a line's left side) joins the map. */
static bool
add_region(region_map *m, const char *name, unsigned line, char *err, size_t errsz)
{
	if (!valid_name(name)) {
		snprintf(err, errsz, "line %u: invalid region name '%.64s'", line, name);
		return (false);
	}
	if (region_map_find(m, name) >= 0) {
		snprintf(err, errsz, "line %u: region '%s' listed twice", line, name);
		return (false);
	}
	if (m->rm_n == REGIONS_MAX) {
		snprintf(err, errsz, "line %u: more than %d regions", line, REGIONS_MAX);
		return (false);
	}
	strcpy(m->rm_names[m->rm_n++], name); /* length checked by valid_name */
	return (true);
}

/* region_map_parse's second pass: the neighbours nbs ("A, B", cut in place) of region name. */
static bool
add_neighbours(region_map *m, const char *name, char *nbs, unsigned line, char *err, size_t errsz)
{
	int   self  = region_map_find(m, name);
	char *tsave = NULL;

	for (char *tok = strtok_r(nbs, ",", &tsave); tok != NULL;
	     tok       = strtok_r(NULL, ",", &tsave)) {
		char *nb = trim(tok);
		int   k;
		if (*nb == '\0') {
			continue;
		}
		if ((k = region_map_find(m, nb)) < 0) {
			snprintf(err, errsz,
			    "line %u: neighbour '%.64s' of %s is not a region of the map", line, nb,
			    name);
			return (false);
		}
		if (k == self) {
			snprintf(err, errsz, "line %u: %s cannot border itself", line, name);
			return (false);
		}
		m->rm_adj[self][k] = true;
	}
	return (true);
}

hv_status
region_map_parse(const char *text, region_map **out, char *err, size_t errsz)
{
	region_map *m;
	char       *copy = NULL;
	hv_status   st   = HV_INVALID_ARGUMENT;

	*out = NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL || (copy = strdup(text)) == NULL) {
		free(m);
		return (HV_RESOURCE_EXHAUSTED);
	}
	for (int pass = 0; pass < 2; pass++) {
		char    *save = NULL;
		unsigned line = 0;
		char    *work;

		free(copy);
		if ((copy = strdup(text)) == NULL) {
			st = HV_RESOURCE_EXHAUSTED;
			goto out;
		}
		work = copy;
		for (char *l = work; l != NULL; l = save) {
			char *colon, *name, *nbs;

			save = strchr(l, '\n');
			if (save != NULL) {
				*save++ = '\0';
			}
			line++;
			l = trim(l);
			if (*l == '\0' || *l == '#') {
				continue;
			}
			if ((colon = strchr(l, ':')) == NULL) {
				snprintf(err, errsz, "line %u: expected 'Region: Neighbour, ...'",
				    line);
				goto out;
			}
			*colon = '\0';
			name   = trim(l);
			nbs    = colon + 1;
			if (pass == 0 ? !add_region(m, name, line, err, errsz)
			              : !add_neighbours(m, name, nbs, line, err, errsz)) {
				goto out;
			}
		}
	}
	if (m->rm_n == 0) {
		snprintf(err, errsz, "the map has no regions");
		goto out;
	}
	for (size_t a = 0; a < m->rm_n; a++) {
		for (size_t b = 0; b < m->rm_n; b++) {
			if (m->rm_adj[a][b] && !m->rm_adj[b][a]) {
				snprintf(err, errsz, "%s borders %s, but %s does not list %s",
				    m->rm_names[a], m->rm_names[b], m->rm_names[b], m->rm_names[a]);
				goto out;
			}
		}
	}
	compute_distances(m);
	*out = m;
	m    = NULL;
	st   = HV_OK;
out:
	free(copy);
	free(m);
	return (st);
}

hv_status
region_map_default(region_map **out)
{
	char err[128];
	return (region_map_parse(default_map, out, err, sizeof(err)));
}

hv_status
region_map_load(const char *path, region_map **out, char *err, size_t errsz)
{
	FILE     *f;
	char     *text;
	size_t    n;
	hv_status st;
	char      inner[256];

	*out = NULL;
	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errsz, "%s: %s", path, strerror(errno));
		return (hv_status_from_errno(errno));
	}
	if ((text = malloc(256 * 1024 + 1)) == NULL) {
		fclose(f);
		return (HV_RESOURCE_EXHAUSTED);
	}
	n = fread(text, 1, 256 * 1024 + 1, f);
	fclose(f);
	if (n > 256 * 1024) {
		snprintf(err, errsz, "%s: larger than 256 KiB", path);
		free(text);
		return (HV_INVALID_ARGUMENT);
	}
	text[n] = '\0';
	st      = region_map_parse(text, out, inner, sizeof(inner));
	if (st != HV_OK) {
		snprintf(err, errsz, "%s: %s", path, inner);
	}
	free(text);
	return (st);
}

void
region_map_free(region_map *m)
{
	free(m);
}

size_t
region_map_count(const region_map *m)
{
	return (m->rm_n);
}

const char *
region_map_name(const region_map *m, size_t i)
{
	return (i < m->rm_n ? m->rm_names[i] : NULL);
}

int
region_map_find(const region_map *m, const char *name)
{
	for (size_t i = 0; name != NULL && i < m->rm_n; i++) {
		if (strcmp(m->rm_names[i], name) == 0) {
			return ((int) i);
		}
	}
	return (-1);
}

unsigned
region_map_distance(const region_map *m, int a, int b)
{
	if (a < 0 || b < 0 || (size_t) a >= m->rm_n || (size_t) b >= m->rm_n) {
		return (REGION_UNREACHABLE);
	}
	return (m->rm_dist[a][b]);
}

size_t
region_map_neighbours(const region_map *m, size_t i, int out[REGIONS_MAX])
{
	size_t n = 0;

	for (size_t k = 0; i < m->rm_n && k < m->rm_n; k++) {
		if (m->rm_adj[i][k]) {
			out[n++] = (int) k;
		}
	}
	return (n);
}
