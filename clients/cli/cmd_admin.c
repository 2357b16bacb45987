/*
 * cmd_admin.c - `haven admin backup DIR` and `haven admin status`: node administration for
 * the local operator (or an admin organisation).
 */
#include "cli.h"

#include "haven/admin/v1/admin.pb-c.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
admin_backup(cli *c, const char *dir)
{
	Haven__Admin__V1__BackupRequest   req = HAVEN__ADMIN__V1__BACKUP_REQUEST__INIT;
	Haven__Admin__V1__BackupResponse *rep = NULL;
	char                              abs[PATH_MAX];
	int                               rc;

	/* The node resolves nothing: make the path absolute here, as the user meant it. */
	if (dir[0] != '/') {
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd)) == NULL ||
		    (size_t) snprintf(abs, sizeof(abs), "%s/%s", cwd, dir) >= sizeof(abs)) {
			return (cli_usage("backup directory path too long"));
		}
		dir = abs;
	}
	req.dir = (char *) dir;
	if ((rc = cli_call_long(c, "admin backup", "haven.admin.v1.Admin/Backup", &req.base,
	         &haven__admin__v1__backup_response__descriptor, (ProtobufCMessage **) &rep,
	         false)) != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:s, s:I, s:I}", "path", rep->path, "bytes",
		    (json_int_t) rep->bytes, "took_ms", (json_int_t) rep->took_ms));
	} else {
		printf("backup written: %s (%llu bytes, %llu ms)\n", rep->path,
		    (unsigned long long) rep->bytes, (unsigned long long) rep->took_ms);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

static int
admin_status(cli *c)
{
	Haven__Admin__V1__StatusRequest   req = HAVEN__ADMIN__V1__STATUS_REQUEST__INIT;
	Haven__Admin__V1__StatusResponse *rep = NULL;
	int                               rc;

	if ((rc = cli_call(c, "admin status", "haven.admin.v1.Admin/Status", &req.base,
	         &haven__admin__v1__status_response__descriptor, (ProtobufCMessage **) &rep,
	         true)) != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(json_pack("{s:i, s:I, s:I, s:I, s:I, s:I}", "schema_version",
		    (int) rep->schema_version, "map_size", (json_int_t) rep->map_size, "used_bytes",
		    (json_int_t) rep->used_bytes, "calls", (json_int_t) rep->calls, "rejected",
		    (json_int_t) rep->rejected, "malformed", (json_int_t) rep->malformed));
	} else {
		printf("schema version  %u\nstore           %llu of %llu bytes used\n"
		       "calls           %llu (%llu refused busy, %llu malformed)\n",
		    rep->schema_version, (unsigned long long) rep->used_bytes,
		    (unsigned long long) rep->map_size, (unsigned long long) rep->calls,
		    (unsigned long long) rep->rejected, (unsigned long long) rep->malformed);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return (0);
}

int
cmd_admin(cli *c, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[0], "backup") == 0) {
		return (admin_backup(c, argv[1]));
	}
	if (argc == 1 && strcmp(argv[0], "status") == 0) {
		return (admin_status(c));
	}
	return (cli_usage("usage: haven admin backup DIR | haven admin status"));
}
