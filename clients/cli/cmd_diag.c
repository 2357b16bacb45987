/*
 * cmd_diag.c - `haven health` and `haven echo`: is the node up, and a round trip through it.
 */
#include "cli.h"

#include "haven/clock.h"
#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"

#include <stdio.h>
#include <string.h>

int
cmd_health(cli *c, int argc, char **argv)
{
	Haven__Health__V1__HealthCheckRequest   req = HAVEN__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Haven__Health__V1__HealthCheckResponse *rep = NULL;
	const char                             *state;
	int                                     rc;

	if (argc > 1) {
		return (cli_usage("health takes at most one SERVICE"));
	}
	req.service = argc == 1 ? argv[0] : "";
	if ((rc = cli_call(c, "health", "haven.health.v1.Health/Check", &req.base,
	         &haven__health__v1__health_check_response__descriptor, (ProtobufCMessage **) &rep,
	         true)) != 0) {
		return (rc);
	}
	state = rep->status == HAVEN__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
	    ? "SERVING"
	    : "NOT_SERVING";
	if (c->json) {
		json_t *j = json_pack("{s:s, s:s}", "service",
		    req.service[0] ? req.service : "node", "status", state);
		cli_print_json(j);
	} else {
		printf("%-32s %s\n", req.service[0] ? req.service : "node", state);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

int
cmd_echo(cli *c, int argc, char **argv)
{
	Haven__Diag__V1__EchoRequest   req = HAVEN__DIAG__V1__ECHO_REQUEST__INIT;
	Haven__Diag__V1__EchoResponse *rep = NULL;
	int64_t                        t0  = hv_clock_mono_us();
	int                            rc;

	if (argc != 1) {
		return (cli_usage("echo takes one TEXT"));
	}
	req.payload.data = (uint8_t *) argv[0];
	req.payload.len  = strlen(argv[0]);
	if ((rc = cli_call(c, "echo", "haven.diag.v1.Diagnostics/Echo", &req.base,
	         &haven__diag__v1__echo_response__descriptor, (ProtobufCMessage **) &rep, true)) !=
	    0) {
		return (rc);
	}
	if (c->json) {
		json_t *j = json_pack("{s:s%, s:I}", "echo", (const char *) rep->payload.data,
		    rep->payload.len, "round_trip_us", (json_int_t) (hv_clock_mono_us() - t0));
		cli_print_json(j);
	} else {
		printf("%.*s  (%lld us)\n", (int) rep->payload.len,
		    (const char *) rep->payload.data, (long long) (hv_clock_mono_us() - t0));
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}
