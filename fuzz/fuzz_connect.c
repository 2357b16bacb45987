/*
 * fuzz_connect.c - the Connect API's own parsing of what a client sends (connect_http.c): the
 * input is split at its first four newlines into a Cookie header, a request path, a
 * Content-Type and an http_listen value, and each goes through the function the server runs on
 * it; an answer built from the rest is serialised as the server writes it. The invariants the
 * server relies on are checked: a cookie value fits its buffer and holds no ';', an RPC path
 * is "/pkg.Svc/Method" of proto-name characters, an answer's bytes start with its status line
 * and end with its body.
 */
#include "fuzz_util.h"

#include "haven/log.h"

#include "connect_internal.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	log_init("haven-fuzz", LOG_LEVEL_OFF);
	return (0);
}

/* The next newline-terminated field of [*p, end) as a NUL-terminated copy (the rest when no
 * newline is left). */
static char *
field(const char **p, const char *end)
{
	const char *nl = memchr(*p, '\n', (size_t) (end - *p));
	size_t      n  = (size_t) ((nl != NULL ? nl : end) - *p);
	char       *s  = malloc(n + 1);

	if (s == NULL) {
		abort();
	}
	memcpy(s, *p, n);
	s[n] = '\0';
	*p   = nl != NULL ? nl + 1 : end;
	return (s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char   *p = (const char *) data, *end = p + size;
	char         *cookie = field(&p, end), *uri = field(&p, end), *ct = field(&p, end);
	char         *listen = field(&p, end), *rest = field(&p, end);
	char          val[64], err[256];
	body_kind     kind;
	bool          https, close;
	const char   *hp;
	nng_http_res *res = NULL;

	if (connect_cookie_get(cookie, "haven_session", val, sizeof(val)) &&
	    (strlen(val) == 0 || strlen(val) >= sizeof(val) || strchr(val, ';') != NULL)) {
		abort();
	}
	if (connect_rpc_path(uri)) {
		size_t n = strcspn(uri, "?#");
		if (uri[0] != '/' || n > RPC_METHOD_NAME_MAX ||
		    memchr(uri + 1, '/', n - 1) == NULL ||
		    strspn(uri + 1,
		        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/") !=
		        n - 1) {
			abort();
		}
	}
	(void) connect_body_kind(ct, &kind);
	if (connect_listen_parse(listen, size % 2 == 0, &https, &hp, err, sizeof(err)) == HV_OK &&
	    (hp < listen || hp > listen + strlen(listen))) {
		abort();
	}
	/* An answer with a status and a header value from the input (nng refuses bad ones). */
	if (nng_http_res_alloc(&res) == 0) {
		uint16_t status = (uint16_t) (100 + size % 500);
		size_t   len    = 0;
		char    *out;
		if (nng_http_res_set_status(res, status) == 0 &&
		    nng_http_res_set_header(res, "Content-Type", ct) == 0 &&
		    (strlen(rest) > 0 ? nng_http_res_copy_data(res, rest, strlen(rest))
		                      : nng_http_res_set_data(res, NULL, 0)) == 0 &&
		    (out = connect_res_bytes(res, size % 3 == 0, &len, &close)) != NULL) {
			if (len < 12 || memcmp(out, "HTTP/1.1 ", 9) != 0 ||
			    (size % 3 != 0 && strlen(rest) > 0 &&
			        memcmp(out + len - strlen(rest), rest, strlen(rest)) != 0)) {
				abort();
			}
			free(out);
		}
		nng_http_res_free(res);
	}
	free(cookie);
	free(uri);
	free(ct);
	free(listen);
	free(rest);
	return (0);
}
