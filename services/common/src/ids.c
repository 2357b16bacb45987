/*
 * ids.c - record ids: validation and random generation (see ids.h).
 */
#include "haven/ids.h"
#include "haven/crypto.h"

#include <stdint.h>
#include <string.h>

static bool
id_char(char c)
{
	return (
	    (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-');
}

bool
ids_valid(const char *s)
{
	size_t n;

	if (s == NULL) {
		return (false);
	}
	for (n = 0; s[n] != '\0'; n++) {
		if (n == IDS_MAX - 1 || !id_char(s[n])) {
			return (false);
		}
	}
	return (n > 0);
}

hv_status
ids_generate(char *out, size_t outsz, const char *prefix, size_t nhex)
{
	static const char hex[] = "0123456789abcdef";
	hv_status         st    = HV_INVALID_ARGUMENT;
	uint8_t           rnd[IDS_MAX / 2];
	size_t            plen;

	if (out == NULL || outsz == 0) {
		return (HV_INVALID_ARGUMENT);
	}
	out[0] = '\0';
	if (prefix == NULL) {
		prefix = "";
	}
	plen = strlen(prefix);
	if (nhex == 0 || plen + nhex > IDS_MAX - 1 || plen + nhex >= outsz) {
		goto out;
	}
	for (size_t i = 0; i < plen; i++) {
		if (!id_char(prefix[i])) {
			goto out;
		}
	}
	if ((st = crypto_random(rnd, (nhex + 1) / 2)) != HV_OK) {
		goto out;
	}
	memcpy(out, prefix, plen);
	for (size_t i = 0; i < nhex; i++) {
		out[plen + i] = hex[(rnd[i / 2] >> (i % 2 == 0 ? 4 : 0)) & 0xf];
	}
	out[plen + nhex] = '\0';
	st               = HV_OK;
out:
	crypto_wipe(rnd, sizeof(rnd));
	return (st);
}
