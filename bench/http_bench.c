/*
 * http_bench.c - the Connect API (connect.h) against the nng RPC, in the same run, on the same
 * server: Diagnostics/Echo with a session token, as JSON and as binary over HTTP/1.1 (libcurl,
 * one keep-alive connection per thread) and over the nng RPC (ipc://, one channel per thread).
 *
 *   haven-bench http [THREADS] [CALLS] [SIZE]     (defaults 4, 5000, 256)
 *       http json_qps=J proto_qps=P rpc_qps=R threads=T calls=N size=S
 *
 * CALLS is per thread and per way. The HTTP listener is plain HTTP on 127.0.0.1 (the shape
 * behind a reverse proxy); the server runs in this process with 4 workers.
 */
#include "bench.h"

#include "haven/auth.h"
#include "haven/clock.h"
#include "haven/connect.h"
#include "haven/log.h"
#include "haven/rpc.h"

#include "connect_client.h"

#include "haven/diag/v1/diag.pb-c.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum way { WAY_JSON, WAY_PROTO, WAY_RPC } way;

typedef struct hjob {
	way         w;
	const char *base; /* http://127.0.0.1:PORT */
	const char *url;  /* ipc:// */
	const char *token;
	int         calls;
	size_t      size;
	int         errors;
} hjob;

static hv_status
bench_lookup(void *arg, const char *org_id, auth_org *out)
{
	(void) arg;
	if (strcmp(org_id, "bench-org") != 0) {
		return (HV_NOT_FOUND);
	}
	memset(out, 0, sizeof(*out));
	out->role    = RPC_ROLE_REFERRER;
	out->enabled = true;
	out->version = 1;
	return (HV_OK);
}

static void *
hjob_main(void *arg)
{
	hjob                        *j   = arg;
	Haven__Diag__V1__EchoRequest req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	uint8_t                     *buf = malloc(j->size + 1);
	cc_client                   *cc  = NULL;
	rpc_channel                 *ch  = NULL;
	rpc_call_options             o   = { .timeout_ms = 10000 };

	memset(buf, 'x', j->size);
	req.payload.data = buf;
	req.payload.len  = j->size;
	if (j->w == WAY_RPC) {
		if (rpc_channel_open(&ch, j->url, NULL) != HV_OK ||
		    rpc_channel_set_token(ch, j->token) != HV_OK) {
			j->errors = j->calls;
			goto out;
		}
	} else if (cc_open(&cc, j->base, NULL) != HV_OK) {
		j->errors = j->calls;
		goto out;
	}
	for (int i = 0; i < j->calls; i++) {
		ProtobufCMessage *r = NULL;
		hv_status         st;

		if (j->w == WAY_RPC) {
			st = rpc_channel_call(ch, "haven.diag.v1.Diagnostics/Echo", &req.base,
			    &haven__diag__v1__echo_response__descriptor, &r, &o, NULL, 0);
		} else {
			st = cc_call(cc, "haven.diag.v1.Diagnostics/Echo", &req.base,
			    &haven__diag__v1__echo_response__descriptor, &r, j->token,
			    j->w == WAY_JSON, NULL, 10000, NULL, NULL, 0);
		}
		if (st != HV_OK || ((Haven__Diag__V1__EchoResponse *) r)->payload.len != j->size) {
			j->errors++;
		}
		protobuf_c_message_free_unpacked(r, NULL);
	}
out:
	cc_close(cc);
	rpc_channel_close(ch);
	free(buf);
	return (NULL);
}

/* Runs threads jobs of one way at once; returns calls per second (-1 on errors). */
static double
run_way(way w, int threads, hjob *proto)
{
	pthread_t *t    = calloc((size_t) threads, sizeof(*t));
	hjob      *jobs = calloc((size_t) threads, sizeof(*jobs));
	int64_t    t0, took;
	int        errors = 0;

	for (int i = 0; i < threads; i++) {
		jobs[i]   = *proto;
		jobs[i].w = w;
	}
	t0 = hv_clock_mono_us();
	for (int i = 0; i < threads; i++) {
		pthread_create(&t[i], NULL, hjob_main, &jobs[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		errors += jobs[i].errors;
	}
	took = hv_clock_mono_us() - t0;
	free(t);
	free(jobs);
	if (errors > 0) {
		fprintf(stderr, "haven-bench http: %d calls failed\n", errors);
		return (-1);
	}
	return ((double) threads * proto->calls * 1e6 / (double) (took > 0 ? took : 1));
}

static int
usage(void)
{
	fprintf(stderr, "usage: haven-bench http [THREADS] [CALLS] [SIZE]\n");
	return (2);
}

static bool
arg_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	long  v = strtol(s, &end, 10);

	if (s[0] == '\0' || *end != '\0' || v < lo || v > hi) {
		return (false);
	}
	*out = v;
	return (true);
}

int
bench_http(int argc, char **argv)
{
	auth_options       ao  = { .lookup = bench_lookup };
	rpc_server_options so  = { .workers = 4 };
	connect_options    co  = { .listen = "127.0.0.1:0" };
	auth              *a   = NULL;
	rpc_server        *srv = NULL;
	connect_server    *cs  = NULL;
	char               dir[256], url[300], base[64], token[AUTH_TOKEN_MAX];
	const char        *tmp     = getenv("TMPDIR");
	long               threads = 4, calls = 5000, size = 256;
	double             q[3];
	hjob               proto;
	int                rc = 1;

	if (argc > 3 || (argc > 0 && !arg_int(argv[0], 1, 64, &threads)) ||
	    (argc > 1 && !arg_int(argv[1], 1, 10000000, &calls)) ||
	    (argc > 2 && !arg_int(argv[2], 0, 60000, &size))) {
		return (usage());
	}
	log_init("bench", LOG_LEVEL_WARN);
	snprintf(dir, sizeof(dir), "%s/haven-bench-http-XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	snprintf(url, sizeof(url), "ipc://%s/rpc.sock", dir);
	memset(ao.secret, 0x42, sizeof(ao.secret));
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (auth_open(&a, &ao) != HV_OK ||
	    auth_issue_token(a, "bench-org", RPC_ROLE_REFERRER, hv_clock_wall_ms(), token, NULL) !=
	        HV_OK) {
		fprintf(stderr, "haven-bench http: cannot make a session token\n");
		goto out;
	}
	so.auth = a;
	if (rpc_server_open(&srv, &so) != HV_OK || rpc_server_listen(srv, url) != HV_OK ||
	    rpc_server_start(srv) != HV_OK || connect_server_start(&cs, srv, &co) != HV_OK) {
		fprintf(stderr, "haven-bench http: cannot start the servers\n");
		goto out;
	}
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", connect_server_port(cs));
	memset(&proto, 0, sizeof(proto));
	proto.base   = base;
	proto.url    = url;
	proto.token  = token;
	proto.calls  = (int) calls;
	proto.size   = (size_t) size;
	q[WAY_JSON]  = run_way(WAY_JSON, (int) threads, &proto);
	q[WAY_PROTO] = run_way(WAY_PROTO, (int) threads, &proto);
	q[WAY_RPC]   = run_way(WAY_RPC, (int) threads, &proto);
	if (q[WAY_JSON] < 0 || q[WAY_PROTO] < 0 || q[WAY_RPC] < 0) {
		goto out;
	}
	printf("http json_qps=%.0f proto_qps=%.0f rpc_qps=%.0f threads=%ld calls=%ld size=%ld\n",
	    q[WAY_JSON], q[WAY_PROTO], q[WAY_RPC], threads, calls, size);
	rc = 0;
out:
	connect_server_stop(cs);
	rpc_server_close(srv);
	auth_close(a);
	curl_global_cleanup();
	rmdir(dir);
	memset(token, 0, sizeof(token));
	return (rc);
}
