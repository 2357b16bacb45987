/*
 * connect_http.c - the HTTP side of the Connect API (see connect.h): answers with their
 * security headers and Connect errors, cookies and origins, request paths and content types,
 * listen addresses, and the static files served by GET. No state of its own.
 */
#include "haven/log.h"
#include "haven/file.h"
#include "haven/metrics.h"

#include "connect_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- answers ------------------------------------------------------------------------- */

/* The Connect protocol's name of a code and the HTTP status it goes with. */
static const struct {
	const char *name;
	uint16_t    http;
} connect_codes[] = {
	[HV_OK]                  = { "ok", 200 },
	[HV_CANCELLED]           = { "canceled", 499 },
	[HV_UNKNOWN]             = { "unknown", 500 },
	[HV_INVALID_ARGUMENT]    = { "invalid_argument", 400 },
	[HV_DEADLINE_EXCEEDED]   = { "deadline_exceeded", 504 },
	[HV_NOT_FOUND]           = { "not_found", 404 },
	[HV_ALREADY_EXISTS]      = { "already_exists", 409 },
	[HV_PERMISSION_DENIED]   = { "permission_denied", 403 },
	[HV_RESOURCE_EXHAUSTED]  = { "resource_exhausted", 429 },
	[HV_FAILED_PRECONDITION] = { "failed_precondition", 400 },
	[HV_ABORTED]             = { "aborted", 409 },
	[HV_OUT_OF_RANGE]        = { "out_of_range", 400 },
	[HV_UNIMPLEMENTED]       = { "unimplemented", 501 },
	[HV_INTERNAL]            = { "internal", 500 },
	[HV_UNAVAILABLE]         = { "unavailable", 503 },
	[HV_DATA_LOSS]           = { "data_loss", 500 },
	[HV_UNAUTHENTICATED]     = { "unauthenticated", 401 },
};

static hv_status
code_clamp(hv_status code)
{
	return (code < HV_OK || code > HV_STATUS_MAX ? HV_UNKNOWN : code);
}

/* Security headers of every answer. api: CSP for API answers, else the static files' one. */
int
connect_secure_headers(connect_server *cs, nng_http_res *res, bool api)
{
	int rv;

	if ((rv = nng_http_res_set_header(res, "Content-Security-Policy",
	         api ? CSP_API : CSP_WEB)) != 0 ||
	    (rv = nng_http_res_set_header(res, "X-Content-Type-Options", "nosniff")) != 0 ||
	    (rv = nng_http_res_set_header(res, "Referrer-Policy", "no-referrer")) != 0 ||
	    (rv = nng_http_res_set_header(res, "Cache-Control", "no-store")) != 0 ||
	    (rv = nng_http_res_set_header(res, "X-Frame-Options", "DENY")) != 0) {
		return (rv);
	}
	if (cs->cs_is_tls) {
		rv = nng_http_res_set_header(res, "Strict-Transport-Security", HSTS);
	}
	return (rv);
}

/* A response with the security headers, a content type and a copy of the body. NULL when
 * memory runs out. */
nng_http_res *
connect_res_make(connect_server *cs, uint16_t status, bool api, const char *type, const void *body,
    size_t len, bool close)
{
	nng_http_res *res = NULL;

	if (nng_http_res_alloc(&res) != 0) {
		return (NULL);
	}
	if (nng_http_res_set_status(res, status) != 0 ||
	    connect_secure_headers(cs, res, api) != 0 ||
	    (type != NULL && nng_http_res_set_header(res, "Content-Type", type) != 0) ||
	    (close && nng_http_res_set_header(res, "Connection", "close") != 0) ||
	    (len > 0 ? nng_http_res_copy_data(res, body, len)
	             : nng_http_res_set_data(res, NULL, 0)) != 0) { /* nng cannot copy 0 bytes */
		nng_http_res_free(res);
		return (NULL);
	}
	return (res);
}

/* A Connect error: {"code": ..., "message": ...} with the code's HTTP status (or http when
 * not 0: 404, 405, 413, 415 ...). */
nng_http_res *
connect_res_error(connect_server *cs, hv_status code, uint16_t http, const char *msg, bool close)
{
	nng_http_res *res;
	json_t       *o;
	char         *text;

	code = code_clamp(code);
	if (code == HV_OK) {
		code = HV_UNKNOWN;
	}
	o = json_pack("{s:s, s:s}", "code", connect_codes[code].name, "message",
	    msg != NULL ? msg : hv_status_name(code));
	if (o == NULL) { /* a message cut inside a UTF-8 sequence: the status name instead */
		o = json_pack("{s:s, s:s}", "code", connect_codes[code].name, "message",
		    hv_status_name(code));
	}
	text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	res = connect_res_make(cs, http != 0 ? http : connect_codes[code].http, true, CT_JSON,
	    text != NULL ? text : "{\"code\":\"internal\"}",
	    strlen(text != NULL ? text : "{\"code\":\"internal\"}"), close);
	free(text);
	return (res);
}

/* Every header an answer of ours may carry (nng's API has no way to list them). */
static const char *const answer_headers[] = {
	"Content-Type",
	"Content-Security-Policy",
	"X-Content-Type-Options",
	"Referrer-Policy",
	"Cache-Control",
	"X-Frame-Options",
	"Strict-Transport-Security",
	"Allow",
	"Accept-Post",
	"Accept-Encoding",
	"Set-Cookie",
	"Connection",
};

/*
 * Why the answer is written by us in one piece: nng 1.5.2's server writes the header block and
 * the body as two writes, which under TLS become two records and two TCP sends; with Nagle on
 * (nng leaves TCP_NODELAY off on its HTTP listener and offers no option for it) the second
 * waits for the client's delayed ACK, ~40 ms per answer. One write, one record, no wait.
 */
char *
connect_res_bytes(nng_http_res *res, bool head, size_t *len, bool *close)
{
	void       *body = NULL;
	size_t      blen = 0, cap, n;
	char       *out;
	const char *reason = nng_http_res_get_reason(res);
	const char *conn   = nng_http_res_get_header(res, "Connection");

	nng_http_res_get_data(res, &body, &blen);
	cap = 512 + blen;
	for (size_t i = 0; i < sizeof(answer_headers) / sizeof(answer_headers[0]); i++) {
		const char *v = nng_http_res_get_header(res, answer_headers[i]);
		cap += v != NULL ? strlen(answer_headers[i]) + strlen(v) + 4 : 0;
	}
	if ((out = malloc(cap)) == NULL) {
		return (NULL);
	}
	n = (size_t) snprintf(out, cap, "HTTP/1.1 %u %s\r\n",
	    (unsigned) nng_http_res_get_status(res), reason != NULL ? reason : "");
	for (size_t i = 0; i < sizeof(answer_headers) / sizeof(answer_headers[0]); i++) {
		const char *v = nng_http_res_get_header(res, answer_headers[i]);
		if (v != NULL) {
			n +=
			    (size_t) snprintf(out + n, cap - n, "%s: %s\r\n", answer_headers[i], v);
		}
	}
	n += (size_t) snprintf(out + n, cap - n, "Content-Length: %zu\r\n\r\n", blen);
	if (!head && blen > 0) {
		memcpy(out + n, body, blen);
		n += blen;
	}
	*len   = n;
	*close = conn != NULL && strcasecmp(conn, "close") == 0;
	return (out);
}

/* ---- identity over HTTP ------------------------------------------------------------------- */

/* The value of cookie name in a Cookie header, copied into out (outsz bytes); false when
 * absent or too long. */
bool
connect_cookie_get(const char *header, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name);

	for (const char *p = header; p != NULL && *p != '\0';) {
		const char *end;
		size_t      vl;

		while (*p == ' ' || *p == '\t') {
			p++;
		}
		end = strchr(p, ';');
		if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
			const char *v = p + nl + 1;
			vl            = end != NULL ? (size_t) (end - v) : strlen(v);
			if (vl == 0 || vl >= outsz) {
				return (false);
			}
			memcpy(out, v, vl);
			out[vl] = '\0';
			return (true);
		}
		p = end != NULL ? end + 1 : NULL;
	}
	return (false);
}

/* Whether a browser's request comes from a page of this same origin: Origin (when sent) names
 * this host with our scheme (or https behind a proxy), Sec-Fetch-Site (when sent) says
 * same-origin. */
bool
connect_same_origin(connect_server *cs, nng_http_req *req)
{
	const char *origin = nng_http_req_get_header(req, "Origin");
	const char *site   = nng_http_req_get_header(req, "Sec-Fetch-Site");
	const char *host   = nng_http_req_get_header(req, "Host");

	if (site != NULL && strcmp(site, "same-origin") != 0) {
		return (false);
	}
	if (origin != NULL) {
		const char *h = NULL;
		if (strncmp(origin, "https://", 8) == 0) {
			h = origin + 8;
		} else if (strncmp(origin, "http://", 7) == 0 && !cs->cs_is_tls) {
			h = origin + 7;
		}
		if (h == NULL || host == NULL || strcasecmp(h, host) != 0) {
			return (false);
		}
	}
	return (true);
}

/* ---- paths and content types ------------------------------------------------------------- */

/* Whether a path is an RPC method's: "/pkg.Service/Method", no query, one inner slash. */
bool
connect_rpc_path(const char *uri)
{
	const char *slash;
	size_t      n = strcspn(uri, "?#");

	if (uri[0] != '/' || n < 4 || n > RPC_METHOD_NAME_MAX) {
		return (false);
	}
	/* Only the characters of proto names: nothing else is ever echoed in an answer. */
	if (strspn(uri + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/") !=
	    n - 1) {
		return (false);
	}
	slash = memchr(uri + 1, '/', n - 1);
	return (slash != NULL && memchr(uri + 1, '.', (size_t) (slash - uri - 1)) != NULL &&
	    memchr(slash + 1, '/', n - (size_t) (slash - uri) - 1) == NULL && slash + 1 < uri + n);
}

/* The content type of an RPC request: application/json (optionally "; charset=utf-8") or
 * application/proto. */
bool
connect_body_kind(const char *ct, body_kind *out)
{
	size_t n;

	if (ct == NULL) {
		return (false);
	}
	n = strcspn(ct, ";");
	while (n > 0 && ct[n - 1] == ' ') {
		n--;
	}
	if (n == strlen(CT_JSON) && strncasecmp(ct, CT_JSON, n) == 0) {
		const char *param = ct + strcspn(ct, ";");
		if (*param == ';') {
			param++;
			param += strspn(param, " ");
			if (strcasecmp(param, "charset=utf-8") != 0) {
				return (false);
			}
		}
		*out = BODY_JSON;
		return (true);
	}
	if (n == strlen(CT_PROTO) && strncasecmp(ct, CT_PROTO, n) == 0 && ct[n] == '\0') {
		*out = BODY_PROTO;
		return (true);
	}
	return (false);
}

/* ---- addresses ----------------------------------------------------------------------------- */

size_t
connect_forwarded_addr(const char *xff, uint8_t out[16])
{
	const char *last;
	char        text[INET6_ADDRSTRLEN];
	size_t      n;

	if (xff == NULL) {
		return (0);
	}
	last = strrchr(xff, ',');
	last = last != NULL ? last + 1 : xff;
	last += strspn(last, " \t");
	n = strcspn(last, " \t");
	if (n == 0 || n >= sizeof(text) || last[n + strspn(last + n, " \t")] != '\0') {
		return (0);
	}
	memcpy(text, last, n);
	text[n] = '\0';
	if (inet_pton(AF_INET, text, out) == 1) {
		return (4);
	}
	if (inet_pton(AF_INET6, text, out) == 1) {
		/* An IPv4 address mapped into IPv6 is that IPv4 address. */
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(out, mapped, sizeof(mapped)) == 0) {
			memmove(out, out + 12, 4);
			return (4);
		}
		return (8);
	}
	return (0);
}

hv_status
connect_proxy_check(const char *proxy, const char *hostport, char *err, size_t errsz)
{
	uint8_t a[16];
	char    why[256];

	if (proxy == NULL || proxy[0] == '\0') {
		return (HV_OK);
	}
	if (!((inet_pton(AF_INET, proxy, a) == 1 && a[0] == 127) ||
	        (inet_pton(AF_INET6, proxy, a) == 1 && memcmp(a, &in6addr_loopback, 16) == 0))) {
		snprintf(err, errsz,
		    "http_trusted_proxy '%s' must be a loopback address (127.0.0.1 "
		    "or ::1): the proxy runs on this machine",
		    proxy);
		return (HV_INVALID_ARGUMENT);
	}
	if (metrics_check_listen(hostport, why, sizeof(why)) != HV_OK) {
		snprintf(err, errsz,
		    "http_trusted_proxy needs http_listen on a loopback address, so "
		    "that only the proxy can connect");
		return (HV_INVALID_ARGUMENT);
	}
	return (HV_OK);
}

/* Splits an http_listen value into scheme (https or http) and HOST:PORT. */
hv_status
connect_listen_parse(const char *listen, bool tls, bool *https, const char **hostport, char *err,
    size_t errsz)
{
	const char *hp = listen;
	const char *colon;

	if (listen == NULL || listen[0] == '\0') {
		snprintf(err, errsz, "http_listen is empty");
		return (HV_INVALID_ARGUMENT);
	}
	*https = tls;
	if (strncmp(listen, "https://", 8) == 0) {
		*https = true;
		hp     = listen + 8;
	} else if (strncmp(listen, "http://", 7) == 0) {
		*https = false;
		hp     = listen + 7;
	} else if (strstr(listen, "://") != NULL) {
		snprintf(err, errsz, "http_listen '%s': the scheme must be http:// or https://",
		    listen);
		return (HV_INVALID_ARGUMENT);
	}
	colon = strrchr(hp, ':');
	if (colon == NULL || colon == hp || colon[1] == '\0' || strlen(colon + 1) > 5 ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535 ||
	    strchr(hp, '/') != NULL) {
		snprintf(err, errsz,
		    "http_listen '%s' must be HOST:PORT (https:// or http:// allowed)", listen);
		return (HV_INVALID_ARGUMENT);
	}
	if (*https && !tls) {
		snprintf(err, errsz,
		    "http_listen '%s': HTTPS needs the node's tls_cert and tls_key", listen);
		return (HV_INVALID_ARGUMENT);
	}
	if (!*https) {
		char why[256];
		if (metrics_check_listen(hp, why, sizeof(why)) != HV_OK) {
			snprintf(err, errsz,
			    "http_listen '%s': plain HTTP is served on a loopback address only "
			    "(for a "
			    "reverse proxy on this machine); give the node tls_cert and tls_key "
			    "for HTTPS",
			    listen);
			return (HV_INVALID_ARGUMENT);
		}
	}
	*hostport = hp;
	return (HV_OK);
}

/* ---- static files ------------------------------------------------------------------------ */

static const char *
web_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".mjs", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".json", "application/json" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".ico", "image/x-icon" },
		{ ".txt", "text/plain; charset=utf-8" },
		{ ".woff2", "font/woff2" },
		{ ".wasm", "application/wasm" },
	};
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcasecmp(dot, types[i].ext) == 0) {
			return (types[i].type);
		}
	}
	return ("application/octet-stream");
}

/* Loads the regular files below dir (rel: their path under the web root) into cs_web. */
hv_status
connect_web_load(connect_server *cs, const char *dir, const char *rel, unsigned depth,
    size_t *total)
{
	DIR           *d;
	struct dirent *e;
	hv_status      st = HV_OK;

	if (depth > WEB_DEPTH_MAX || (d = opendir(dir)) == NULL) {
		return (depth == 0 ? HV_NOT_FOUND : HV_OK);
	}
	while (st == HV_OK && (e = readdir(d)) != NULL) {
		char        path[4096], name[1024];
		struct stat sb;
		web_file   *wf;

		if (e->d_name[0] == '.') {
			continue; /* ., .., and hidden files */
		}
		if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
		        sizeof(path) ||
		    (size_t) snprintf(name, sizeof(name), "%s/%s", rel, e->d_name) >=
		        sizeof(name) ||
		    lstat(path, &sb) != 0) {
			continue;
		}
		if (S_ISDIR(sb.st_mode)) {
			st = connect_web_load(cs, path, name, depth + 1, total);
			continue;
		}
		if (!S_ISREG(sb.st_mode) || cs->cs_nweb == WEB_FILES_MAX ||
		    *total + (size_t) sb.st_size > CONNECT_WEB_MAX) {
			continue;
		}
		if (cs->cs_web == NULL &&
		    (cs->cs_web = calloc(WEB_FILES_MAX, sizeof(web_file))) == NULL) {
			st = HV_RESOURCE_EXHAUSTED;
			break;
		}
		wf = &cs->cs_web[cs->cs_nweb];
		if (hv_file_read(path, CONNECT_WEB_MAX, false, &wf->wf_data, &wf->wf_len) !=
		    HV_OK) {
			continue;
		}
		if ((wf->wf_path = strdup(name)) == NULL) {
			free(wf->wf_data);
			st = HV_RESOURCE_EXHAUSTED;
			break;
		}
		wf->wf_type = web_type(name);
		*total += wf->wf_len;
		cs->cs_nweb++;
	}
	closedir(d);
	return (st);
}

/* GET or HEAD of a path that is not an RPC method. */
nng_http_res *
connect_web_answer(connect_server *cs, nng_http_req *req)
{
	const char *verb = nng_http_req_get_method(req);
	const char *uri  = nng_http_req_get_uri(req);
	char        path[1024];
	size_t      n = strcspn(uri, "?#");

	if (strcmp(verb, "GET") != 0 && strcmp(verb, "HEAD") != 0) {
		nng_http_res *res = connect_res_make(cs, 405, false, "text/plain; charset=utf-8",
		    "method not allowed\n", 19, false);
		if (res != NULL && nng_http_res_set_header(res, "Allow", "GET, HEAD") != 0) {
			nng_http_res_free(res);
			res = NULL;
		}
		return (res);
	}
	if (n == 0 || n >= sizeof(path) - 16 || uri[0] != '/') {
		n   = 1;
		uri = "/";
	}
	memcpy(path, uri, n);
	path[n] = '\0';
	if (strcmp(path, "/") == 0) {
		strcpy(path, "/index.html");
	}
	for (size_t i = 0; i < cs->cs_nweb; i++) {
		if (strcmp(cs->cs_web[i].wf_path, path) == 0) {
			return (connect_res_make(cs, 200, false, cs->cs_web[i].wf_type,
			    cs->cs_web[i].wf_data, cs->cs_web[i].wf_len, false));
		}
	}
	return (connect_res_make(cs, 404, false, "text/plain; charset=utf-8", "not found\n", 10,
	    false));
}

/* Connect-Timeout-Ms: 1 to 10 digits (the protocol's form); 0 when absent. */
hv_status
connect_parse_timeout(const char *v, uint32_t *out)
{
	unsigned long long ms;

	*out = 0;
	if (v == NULL) {
		return (HV_OK);
	}
	if (v[0] == '\0' || strlen(v) > 10 || strspn(v, "0123456789") != strlen(v)) {
		return (HV_INVALID_ARGUMENT);
	}
	ms   = strtoull(v, NULL, 10);
	*out = ms == 0 ? 1 : ms > UINT32_MAX ? UINT32_MAX : (uint32_t) ms;
	return (HV_OK);
}
