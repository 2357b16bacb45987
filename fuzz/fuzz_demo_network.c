/*
 * fuzz_demo_network.c - the demo network loader: scripts/demo/network.txt is read by
 * scripts/quickstart.sh, which splits each line at '|' (`IFS='|' read -r kind id a b ...`) and
 * runs `haven org register` or `haven service register` with the fields as arguments. This
 * harness does the same in one process: the input is a network file, each `org|` and `svc|`
 * line becomes the CLI's argument vector exactly as quickstart.sh builds it, and the CLI's
 * own command functions (clients/cli: argument parsing, enum and list parsing, the request)
 * call a real haven.capacity.v1 service over inproc:// on a scratch store (no fsync), as the
 * operator. So the path is the loader's whole path: CLI parsing, the RPC client and server,
 * the capacity handlers' checks and the store.
 */
#include "fuzz_util.h"

#include "capacity.h"
#include "cli.h"
#include "haven/log.h"
#include "haven/regions.h"
#include "haven/rpc.h"
#include "haven/store.h"

#include <stdlib.h>
#include <string.h>

#define URL       "inproc://haven-fuzz-demo"
#define FIELDS    11 /* kind id a b c d e f g h i */
#define LINES_MAX 64 /* lines run per input: bounds an input's time */

static store       *st;
static region_map  *regions;
static cap_service *cs;
static rpc_server  *srv;
static cli          client = { .url = URL, .timeout_ms = 10000 };

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	store_options so  = { .no_sync = true };
	const char   *tmp = getenv("TMPDIR");
	char          dir[4096];
	cap_options   co;

	log_init("haven-fuzz", LOG_LEVEL_OFF);
	snprintf(dir, sizeof(dir), "%s/haven-fuzz-demo-XXXXXX",
	    tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL || store_open(&st, dir, &so) != HV_OK ||
	    region_map_default(&regions) != HV_OK) {
		abort();
	}
	co = (cap_options) { .store = st, .regions = regions, .manual_expiry = true };
	if (cap_open(&cs, &co) != HV_OK ||
	    rpc_server_open(&srv, &(rpc_server_options) { .workers = 1, .queue = 4 }) != HV_OK ||
	    cap_register(cs, srv) != HV_OK || rpc_server_listen(srv, URL) != HV_OK ||
	    rpc_server_start(srv) != HV_OK) {
		abort();
	}
	return (0);
}

/* Splits a line as bash's `IFS='|' read -r` does into FIELDS variables: each of the first
 * FIELDS - 1 gets one '|'-separated field, the last gets the rest of the line. */
static size_t
split(char *line, char *f[FIELDS])
{
	size_t n = 0;

	for (size_t i = 0; i < FIELDS; i++) {
		f[i] = "";
	}
	while (line != NULL && n < FIELDS) {
		char *bar = n + 1 < FIELDS ? strchr(line, '|') : NULL;
		if (bar != NULL) {
			*bar++ = '\0';
		}
		f[n++] = line;
		line   = bar;
	}
	return (n);
}

/* One line, as quickstart.sh's loop runs it (without the certificates of acting partners). */
static void
run_line(char *line)
{
	char *f[FIELDS];
	char *argv[24];
	int   argc = 0;

	split(line, f);
	if (strcmp(f[0], "org") == 0) {
		char *words[] = { "register", f[1], "--name", f[2], "--role", f[3], "--region",
			f[4] };
		memcpy(argv, words, sizeof(words));
		argc = 8;
		(void) cmd_org(&client, argc, argv);
	} else if (strcmp(f[0], "svc") == 0) {
		char *words[] = { "register", "--id", f[1], "--org", f[2], "--type", f[3],
			"--region", f[4], "--population", f[5], "--languages", f[6], "--total",
			f[7], "--available", f[8], "--contact", f[9] };
		memcpy(argv, words, sizeof(words));
		argc = 19;
		if (f[10][0] != '\0') {
			argv[argc++] = "--specialisation";
			argv[argc++] = f[10];
		}
		(void) cmd_service(&client, argc, argv);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char  *text = fuzz_strndup(data, size);
	char  *line = text;
	size_t n    = 0;

	while (line != NULL && n++ < LINES_MAX) {
		char *nl = strchr(line, '\n');
		if (nl != NULL) {
			*nl++ = '\0';
		}
		run_line(line);
		line = nl;
	}
	free(text);
	return (0);
}
