/*
 * fuzz_util.c - the scratch file and copies the harnesses share (fuzz_util.h).
 */
#include "fuzz_util.h"

#include "haven/admin/v1/admin.pb-c.h"
#include "haven/auth/v1/auth.pb-c.h"
#include "haven/capacity/v1/capacity.pb-c.h"
#include "haven/consent/v1/audit.pb-c.h"
#include "haven/consent/v1/consent.pb-c.h"
#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"
#include "haven/people/v1/people.pb-c.h"
#include "haven/referral/v1/referral.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch_path[4096];
static int  scratch_fd = -1;

static void
scratch_remove(void)
{
	if (scratch_fd >= 0) {
		close(scratch_fd);
		unlink(scratch_path);
	}
}

const char *
fuzz_scratch_file(const uint8_t *data, size_t size)
{
	size_t done = 0;

	if (scratch_fd < 0) {
		const char *dir = getenv("TMPDIR");
		int         n = snprintf(scratch_path, sizeof(scratch_path), "%s/haven-fuzz-XXXXXX",
                    dir != NULL && dir[0] != '\0' ? dir : "/tmp");
		if (n < 0 || (size_t) n >= sizeof(scratch_path) ||
		    (scratch_fd = mkstemp(scratch_path)) < 0) {
			perror("fuzz: scratch file");
			abort();
		}
		atexit(scratch_remove);
	}
	if (ftruncate(scratch_fd, 0) != 0) {
		perror("fuzz: scratch file");
		abort();
	}
	while (done < size) {
		ssize_t w = pwrite(scratch_fd, data + done, size - done, (off_t) done);
		if (w <= 0) {
			perror("fuzz: scratch file");
			abort();
		}
		done += (size_t) w;
	}
	return (scratch_path);
}

char *
fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL) {
		abort();
	}
	if (size > 0) {
		memcpy(s, data, size);
	}
	s[size] = '\0';
	return (s);
}

const ProtobufCServiceDescriptor *const fuzz_services[] = {
	&haven__admin__v1__admin__descriptor,
	&haven__auth__v1__auth__descriptor,
	&haven__capacity__v1__capacity__descriptor,
	&haven__consent__v1__consent__descriptor,
	&haven__audit__v1__audit__descriptor,
	&haven__referral__v1__referrals__descriptor,
	&haven__health__v1__health__descriptor,
	&haven__diag__v1__diagnostics__descriptor,
	&haven__people__v1__people__descriptor,
};
const size_t fuzz_nservices = sizeof(fuzz_services) / sizeof(fuzz_services[0]);

const ProtobufCMessageDescriptor *
fuzz_request_type(unsigned k)
{
	unsigned total = 0;

	for (size_t i = 0; i < fuzz_nservices; i++) {
		total += fuzz_services[i]->n_methods;
	}
	k %= total;
	for (size_t i = 0; i < fuzz_nservices; i++) {
		if (k < fuzz_services[i]->n_methods) {
			return (fuzz_services[i]->methods[k].input);
		}
		k -= fuzz_services[i]->n_methods;
	}
	abort(); /* not reached */
}
