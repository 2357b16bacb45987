/*
 * fuzz_config.c - the configuration file parser (config.c) with the node's real option table:
 * the input is a configuration file given to host_config_load as `--config FILE`, as
 * haven-node reads /etc/haven/haven.conf.
 */
#include "fuzz_util.h"

#include "haven/host.h"
#include "haven/log.h"

#include <stdbool.h>

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("haven-fuzz", LOG_LEVEL_OFF);
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	host_config cfg;
	bool        done = false;
	char *argv[] = { "haven-fuzz", "--config", (char *) fuzz_scratch_file(data, size), NULL };

	(void) host_config_load(&cfg, 3, argv, "haven-fuzz", &done);
	host_config_free(&cfg);
	return (0);
}
