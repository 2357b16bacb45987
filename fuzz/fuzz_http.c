/*
 * fuzz_http.c - the Connect API's HTTP request handling as the node's handler sees a request
 * (connect.c): the input is one HTTP request as a client writes it (request line, header
 * lines, an empty line, the body). The harness parses it the way nng's HTTP server does before
 * it calls the handler (method, target, version, "Name: value" lines with the value trimmed,
 * repeated names joined with ", "; a request nng would refuse with 400 is skipped) into an
 * nng_http_req and gives it with the body to connect_request_direct: the handler's own steps
 * without a socket. Paths to the RPC methods go through the headers' checks (POST,
 * Content-Length, Content-Type, Connect-Protocol-Version, Content-Encoding), the envelope built
 * from the path and headers (Connect-Timeout-Ms, Idempotency-Key, the bearer token or the
 * session cookie with its CSRF check and same-origin check), the dispatch's method, identity,
 * role and payload checks (binary here, JSON on the worker) and the handler; /session its
 * token check; every other path the web files of web/ (when the tree has them).
 *
 * Every service of the node is registered: Health and Diagnostics with their handlers, the
 * others with a stand-in open to any caller that answers UNIMPLEMENTED once the request
 * decoded (the services' handlers need their stores; fuzz_demo_network runs two for real).
 * No authentication is configured, so a bearer token is refused as a client's would be by a
 * node that does not know it.
 *
 * Checked for every request: exactly one answer (or none, only for a body shorter than its
 * Content-Length: a client that never sent the rest), which is a whole HTTP/1.1 response with
 * a status, the security headers and a Content-Length equal to its body; an error of an RPC
 * path or of /session is a Connect error object whose code names a status and, for a
 * client's mistake (4xx), whose message names the problem.
 */
#include "fuzz_util.h"

#include "haven/log.h"
#include "haven/rpc.h"

#include "connect_internal.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define IMPLS_MAX 64
#define HEAD_MAX  8192 /* nng 1.5.2's request header buffer: a longer head is refused */

static rpc_server     *srv;
static connect_server *cs;

typedef struct answer {
	pthread_mutex_t a_mtx;
	pthread_cond_t  a_cv;
	int             a_calls;
	char           *a_data;
	size_t          a_len;
} answer;

static hv_status
stand_in(rpc_call *call, void *svc, const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	(void) svc;
	(void) req;
	(void) reply;
	return (rpc_call_error(call, HV_UNIMPLEMENTED, "no handler for %s in the fuzzing harness",
	    rpc_call_method(call)));
}

static void
add(const ProtobufCServiceDescriptor *d)
{
	rpc_method_impl impls[IMPLS_MAX];

	if (d->n_methods > IMPLS_MAX) {
		abort();
	}
	for (unsigned i = 0; i < d->n_methods; i++) {
		impls[i] = (rpc_method_impl) { .name = d->methods[i].name,
			.handler                     = stand_in,
			.roles                       = RPC_ROLES_ANY };
	}
	if (rpc_server_add_service(srv, d, impls, d->n_methods, NULL) != HV_OK) {
		abort();
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	connect_options o = { .listen = "127.0.0.1:0" };
	struct stat     sb;

	(void) argc;
	(void) argv;
	log_init("haven-fuzz", LOG_LEVEL_OFF);
	if (rpc_server_open(&srv, NULL) != HV_OK) {
		abort();
	}
	/* fuzz_services: Health and Diagnostics are the server's own (rpc_server_open). */
	for (size_t i = 0; i < fuzz_nservices; i++) {
		const char *n = fuzz_services[i]->name;
		if (strcmp(n, "haven.health.v1.Health") != 0 &&
		    strcmp(n, "haven.diag.v1.Diagnostics") != 0) {
			add(fuzz_services[i]);
		}
	}
	if (stat(HAVEN_SOURCE_DIR "/web/index.html", &sb) == 0) {
		o.web_dir = HAVEN_SOURCE_DIR "/web";
	}
	if (rpc_server_start(srv) != HV_OK || connect_server_start(&cs, srv, &o) != HV_OK) {
		abort();
	}
	return (0);
}

/* One line of [*p, end) ending in LF (CR LF or LF, as nng takes both), without its end, as a
 * NUL-terminated copy; NULL when no LF is left or the line holds a NUL. */
static char *
line(const char **p, const char *end)
{
	const char *lf = memchr(*p, '\n', (size_t) (end - *p));
	size_t      n;
	char       *s;

	if (lf == NULL) {
		return (NULL);
	}
	n = (size_t) (lf - *p);
	if (n > 0 && (*p)[n - 1] == '\r') {
		n--;
	}
	if (memchr(*p, '\0', n) != NULL) {
		return (NULL);
	}
	s  = fuzz_strndup((const uint8_t *) *p, n);
	*p = lf + 1;
	return (s);
}

/* "Name: value" into req, as nng's parser adds it; false for a line it refuses. */
static bool
header(nng_http_req *req, char *l)
{
	char *colon = strchr(l, ':');
	char *v, *e;

	if (colon == NULL || colon == l || strcspn(l, " \t") < (size_t) (colon - l)) {
		return (false);
	}
	*colon = '\0';
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++) {
	}
	for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t'); e--) {
	}
	*e = '\0';
	return (nng_http_req_add_header(req, l, v) == 0);
}

/* The request of [data, data + size) and where its body starts; NULL when nng would refuse
 * it before calling the handler. */
static nng_http_req *
parse(const char *data, size_t size, const char **body)
{
	const char   *p = data, *end = data + (size < HEAD_MAX ? size : HEAD_MAX);
	nng_http_req *req = NULL;
	char         *l, *sp1, *sp2;
	bool          ok;

	if ((l = line(&p, end)) == NULL) {
		return (NULL);
	}
	sp1 = strchr(l, ' ');
	sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
	ok  = sp1 != NULL && sp2 != NULL && sp1 != l && sp2 != sp1 + 1 && sp1[1] == '/' &&
	    strchr(sp2 + 1, ' ') == NULL &&
	    (strcmp(sp2 + 1, "HTTP/1.1") == 0 || strcmp(sp2 + 1, "HTTP/1.0") == 0);
	if (ok) {
		*sp1 = *sp2 = '\0';
		ok = nng_http_req_alloc(&req, NULL) == 0 && nng_http_req_set_method(req, l) == 0 &&
		    nng_http_req_set_uri(req, sp1 + 1) == 0 &&
		    nng_http_req_set_version(req, sp2 + 1) == 0;
	}
	free(l);
	while (ok && (l = line(&p, end)) != NULL && l[0] != '\0') {
		ok = header(req, l);
		free(l);
	}
	if (!ok || l == NULL) { /* a refused line, or no end of the head within HEAD_MAX */
		if (req != NULL) {
			nng_http_req_free(req);
		}
		return (NULL);
	}
	free(l);
	*body = p;
	return (req);
}

static void
on_answer(void *arg, const char *data, size_t len)
{
	answer *a = arg;

	pthread_mutex_lock(&a->a_mtx);
	if (data != NULL && (a->a_data = malloc(len + 1)) != NULL) {
		memcpy(a->a_data, data, len);
		a->a_data[len] = '\0';
		a->a_len       = len;
	}
	a->a_calls++;
	pthread_cond_broadcast(&a->a_cv);
	pthread_mutex_unlock(&a->a_mtx);
}

/* The answer's checks (see the top); aborts on a broken one. */
static void
check(const answer *a, nng_http_req *req, size_t body_len)
{
	const char *cl   = nng_http_req_get_header(req, "Content-Length");
	const char *uri  = nng_http_req_get_uri(req);
	bool        api  = connect_rpc_path(uri) || strcmp(uri, "/session") == 0;
	bool        head = strcmp(nng_http_req_get_method(req), "HEAD") == 0;
	const char *end, *len;
	unsigned    status;
	json_t     *err;

	if (a->a_calls != 1) {
		abort();
	}
	if (a->a_data == NULL) {
		/* No answer: only for a body that never came in full. */
		if (cl == NULL || strtoull(cl, NULL, 10) <= body_len) {
			abort();
		}
		return;
	}
	if (a->a_len < 12 || memcmp(a->a_data, "HTTP/1.1 ", 9) != 0 ||
	    sscanf(a->a_data + 9, "%3u", &status) != 1 || status < 200 || status > 599 ||
	    (end = strstr(a->a_data, "\r\n\r\n")) == NULL ||
	    strstr(a->a_data, "\r\nX-Content-Type-Options: nosniff\r\n") == NULL) {
		abort();
	}
	/* The last header line, right before the empty line, is Content-Length (connect_http.c
	 * writes it last), and it counts the body (none follows a HEAD answer). */
	for (len = end; len > a->a_data && !(len[0] == '\r' && len[1] == '\n' && len < end);
	     len--) {
	}
	if (strncmp(len, "\r\nContent-Length: ", 18) != 0 ||
	    (!head && strtoull(len + 18, NULL, 10) != a->a_len - (size_t) (end + 4 - a->a_data)) ||
	    (head && a->a_len != (size_t) (end + 4 - a->a_data))) {
		abort();
	}
	if (api && status != 200 && !head) {
		const char *code = NULL, *msg = "";
		err = json_loadb(end + 4, a->a_len - (size_t) (end + 4 - a->a_data), 0, NULL);
		if (err == NULL ||
		    json_unpack(err, "{s:s, s?:s}", "code", &code, "message", &msg) != 0 ||
		    code[0] == '\0' || (status < 500 && (msg == NULL || msg[0] == '\0'))) {
			abort(); /* every refusal names its problem */
		}
		json_decref(err);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	answer        a = { .a_calls = 0 };
	const char   *body;
	nng_http_req *req = parse((const char *) data, size, &body);
	size_t        blen;

	if (req == NULL) {
		return (0);
	}
	blen = size - (size_t) (body - (const char *) data);
	pthread_mutex_init(&a.a_mtx, NULL);
	pthread_cond_init(&a.a_cv, NULL);
	if (connect_request_direct(cs, req, body, blen, on_answer, &a)) {
		pthread_mutex_lock(&a.a_mtx);
		while (a.a_calls == 0) {
			pthread_cond_wait(&a.a_cv, &a.a_mtx);
		}
		pthread_mutex_unlock(&a.a_mtx);
		if (getenv("FUZZ_HTTP_SHOW") != NULL) { /* reproducing one: the answer it got */
			fprintf(stderr, "%s\n", a.a_data != NULL ? a.a_data : "(no answer)");
		}
		check(&a, req, blen);
	} else if (!connect_events_path(nng_http_req_get_uri(req))) {
		abort(); /* one request at a time: a place is always free */
	}
	free(a.a_data);
	pthread_cond_destroy(&a.a_cv);
	pthread_mutex_destroy(&a.a_mtx);
	nng_http_req_free(req);
	return (0);
}
