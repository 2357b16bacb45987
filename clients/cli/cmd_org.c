/*
 * cmd_org.c - the partner directory's organisations on the command line:
 *
 *   haven org register ID --name N --role R --region G [--cert FILE]
 *   haven org update ID [--name N] [--role R] [--region G] [--cert FILE] --version V
 *   haven org disable|enable|show ID
 *   haven org list [--role R] [--region G]
 *
 * Roles are written lower-case with '-' (national-coordinator); an unknown one is a usage
 * error that lists the valid ones. Only the operator and admins change organisations.
 */
#include "cli.h"

#include "haven/file.h"
#include "haven/pbenum.h"
#include "haven/capacity/v1/capacity.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M(name) "haven.capacity.v1.Capacity/" name

#define CERT_FILE_MAX (16 * 1024)

typedef Haven__Capacity__V1__Organisation org_t;

static const char *
role_name(int v, char *buf, size_t n)
{
	return (pbenum_name(&haven__capacity__v1__role__descriptor, NULL, v, buf, n));
}

static json_t *
org_json(const org_t *o)
{
	char    buf[64];
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I}", "id", o->id, "name",
	    o->name, "role", role_name(o->role, buf, sizeof(buf)), "region", o->region,
	    "cert_sha256", o->cert_sha256, "disabled", o->disabled, "version",
	    (json_int_t) o->version, "updated_at_ms", (json_int_t) o->updated_at_ms);

	json_object_set_new(j, "contact", json_string(o->contact));
	if (o->cert_pem[0] != '\0') {
		json_object_set_new(j, "cert_pem", json_string(o->cert_pem));
	}
	return (j);
}

static void
print_org(const org_t *o)
{
	char buf[64];

	printf("id           %s\n", o->id);
	printf("name         %s\n", o->name);
	printf("role         %s\n", role_name(o->role, buf, sizeof(buf)));
	printf("region       %s\n", o->region);
	printf("contact      %s\n", o->contact[0] != '\0' ? o->contact : "-");
	printf("certificate  %s\n", o->cert_sha256[0] != '\0' ? o->cert_sha256 : "(none)");
	printf("state        %s\n", o->disabled ? "disabled" : "enabled");
	printf("version      %llu\n", (unsigned long long) o->version);
}

/* ---- haven org --------------------------------------------------------------------------- */

/* Reads a certificate file into *pem (malloc'd). */
static int
read_cert(cli *c, const char *path, char **pem)
{
	size_t    len;
	hv_status st;

	if ((st = hv_file_read(path, CERT_FILE_MAX, false, pem, &len)) != HV_OK) {
		char msg[600];
		snprintf(msg, sizeof(msg), "cannot read %s%s", path,
		    st == HV_OUT_OF_RANGE ? " (over 16 KiB)" : "");
		return (cli_fail(c, "org", st, msg));
	}
	return (0);
}

static int
org_reply(cli *c, const char *what, int rc, org_t *o)
{
	if (rc != 0) {
		return (rc);
	}
	if (c->json) {
		cli_print_json(org_json(o));
	} else {
		if (what != NULL) {
			printf("%s %s (version %llu)\n", what, o->id,
			    (unsigned long long) o->version);
		} else {
			print_org(o);
		}
	}
	protobuf_c_message_free_unpacked(&o->base, NULL);
	return (0);
}

static int
org_register(cli *c, int argc, char **argv, bool update)
{
	Haven__Capacity__V1__RegisterOrganisationRequest rreq =
	    HAVEN__CAPACITY__V1__REGISTER_ORGANISATION_REQUEST__INIT;
	Haven__Capacity__V1__UpdateOrganisationRequest ureq =
	    HAVEN__CAPACITY__V1__UPDATE_ORGANISATION_REQUEST__INIT;
	const char *cmd = update ? "org update" : "org register";
	org_t       o   = HAVEN__CAPACITY__V1__ORGANISATION__INIT;
	org_t      *rep = NULL;
	char       *pem = NULL;
	cli_args    a;
	int         role = 0;
	int         rc;

	if ((rc = cli_args_parse(&a, argc, argv, cmd, 1, "name role region cert contact version",
	         NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("%s needs the organisation ID", cmd));
	}
	o.id      = (char *) a.pos[0];
	o.name    = (char *) (cli_opt(&a, "name") != NULL ? cli_opt(&a, "name") : "");
	o.region  = (char *) (cli_opt(&a, "region") != NULL ? cli_opt(&a, "region") : "");
	o.contact = (char *) (cli_opt(&a, "contact") != NULL ? cli_opt(&a, "contact") : "");
	if (!update && (o.name[0] == '\0' || cli_opt(&a, "role") == NULL || o.region[0] == '\0')) {
		return (cli_usage("org register needs --name, --role and --region"));
	}
	if (cli_opt(&a, "role") != NULL &&
	    (rc = cli_enum_parse(&haven__capacity__v1__role__descriptor, "role",
	         cli_opt(&a, "role"), &role)) != 0) {
		return (rc);
	}
	o.role = (Haven__Capacity__V1__Role) role;
	if (cli_opt(&a, "cert") != NULL && (rc = read_cert(c, cli_opt(&a, "cert"), &pem)) != 0) {
		return (rc);
	}
	o.cert_pem = pem != NULL ? pem : "";
	if (update) {
		if (cli_opt(&a, "version") == NULL) {
			free(pem);
			return (cli_usage("org update needs --version V (see haven org show)"));
		}
		if ((rc = cli_parse_u64("--version", cli_opt(&a, "version"), 1, UINT64_MAX,
		         &ureq.based_on_version)) != 0) {
			free(pem);
			return (rc);
		}
		ureq.organisation = &o;
		rc                = cli_call(c, cmd, M("UpdateOrganisation"), &ureq.base,
		                   &haven__capacity__v1__organisation__descriptor, (ProtobufCMessage **) &rep,
		                   false);
	} else {
		rreq.organisation = &o;
		rc                = cli_call(c, cmd, M("RegisterOrganisation"), &rreq.base,
		                   &haven__capacity__v1__organisation__descriptor, (ProtobufCMessage **) &rep,
		                   false);
	}
	free(pem);
	return (org_reply(c, update ? "updated" : "registered", rc, rep));
}

static int
org_disable(cli *c, int argc, char **argv, bool disable)
{
	Haven__Capacity__V1__DisableOrganisationRequest req =
	    HAVEN__CAPACITY__V1__DISABLE_ORGANISATION_REQUEST__INIT;
	const char *cmd = disable ? "org disable" : "org enable";
	org_t      *rep = NULL;
	cli_args    a;
	int         rc;

	if ((rc = cli_args_parse(&a, argc, argv, cmd, 1, NULL, NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("%s needs the organisation ID", cmd));
	}
	req.id       = (char *) a.pos[0];
	req.disabled = disable;
	rc           = cli_call(c, cmd, M("DisableOrganisation"), &req.base,
	              &haven__capacity__v1__organisation__descriptor, (ProtobufCMessage **) &rep, true);
	return (org_reply(c, disable ? "disabled" : "enabled", rc, rep));
}

static int
org_show(cli *c, int argc, char **argv)
{
	Haven__Capacity__V1__GetOrganisationRequest req =
	    HAVEN__CAPACITY__V1__GET_ORGANISATION_REQUEST__INIT;
	org_t   *rep = NULL;
	cli_args a;
	int      rc;

	if ((rc = cli_args_parse(&a, argc, argv, "org show", 1, NULL, NULL)) != 0) {
		return (rc);
	}
	if (a.npos != 1) {
		return (cli_usage("org show needs the organisation ID"));
	}
	req.id = (char *) a.pos[0];
	rc     = cli_call(c, "org show", M("GetOrganisation"), &req.base,
	        &haven__capacity__v1__organisation__descriptor, (ProtobufCMessage **) &rep, true);
	return (org_reply(c, NULL, rc, rep));
}

static int
org_list(cli *c, int argc, char **argv)
{
	Haven__Capacity__V1__ListOrganisationsRequest req =
	    HAVEN__CAPACITY__V1__LIST_ORGANISATIONS_REQUEST__INIT;
	char     token[128] = "";
	json_t  *all        = json_array();
	cli_args a;
	int      role = 0;
	int      rc;

	if ((rc = cli_args_parse(&a, argc, argv, "org list", 0, "role region", NULL)) != 0) {
		goto out;
	}
	if (cli_opt(&a, "role") != NULL &&
	    (rc = cli_enum_parse(&haven__capacity__v1__role__descriptor, "role",
	         cli_opt(&a, "role"), &role)) != 0) {
		goto out;
	}
	req.role      = (Haven__Capacity__V1__Role) role;
	req.region    = (char *) (cli_opt(&a, "region") != NULL ? cli_opt(&a, "region") : "");
	req.page_size = 500;
	do {
		Haven__Capacity__V1__ListOrganisationsResponse *rep = NULL;
		char                                            buf[64];

		req.page_token = token;
		if ((rc = cli_call(c, "org list", M("ListOrganisations"), &req.base,
		         &haven__capacity__v1__list_organisations_response__descriptor,
		         (ProtobufCMessage **) &rep, true)) != 0) {
			goto out;
		}
		/* The header once the first page is in: a failed call prints only its error. */
		if (!c->json && token[0] == '\0') {
			printf("%-24s %-13s %-22s %-9s %s\n", "ID", "ROLE", "REGION", "STATE",
			    "NAME");
		}
		for (size_t i = 0; i < rep->n_organisations; i++) {
			const org_t *o = rep->organisations[i];
			if (c->json) {
				json_array_append_new(all, org_json(o));
			} else {
				printf("%-24s %-13s %-22s %-9s %s\n", o->id,
				    role_name(o->role, buf, sizeof(buf)), o->region,
				    o->disabled ? "disabled" : "enabled", o->name);
			}
		}
		snprintf(token, sizeof(token), "%s", rep->next_page_token);
		protobuf_c_message_free_unpacked(&rep->base, NULL);
	} while (token[0] != '\0');
	if (c->json) {
		cli_print_json(all);
		all = NULL;
	}
	rc = 0;
out:
	json_decref(all);
	return (rc);
}

int
cmd_org(cli *c, int argc, char **argv)
{
	if (argc < 1) {
		return (cli_usage("org needs register, update, disable, enable, show or list"));
	}
	if (strcmp(argv[0], "register") == 0) {
		return (org_register(c, argc - 1, argv + 1, false));
	}
	if (strcmp(argv[0], "update") == 0) {
		return (org_register(c, argc - 1, argv + 1, true));
	}
	if (strcmp(argv[0], "disable") == 0 || strcmp(argv[0], "enable") == 0) {
		return (org_disable(c, argc - 1, argv + 1, argv[0][0] == 'd'));
	}
	if (strcmp(argv[0], "show") == 0) {
		return (org_show(c, argc - 1, argv + 1));
	}
	if (strcmp(argv[0], "list") == 0) {
		return (org_list(c, argc - 1, argv + 1));
	}
	return (
	    cli_usage("unknown org command '%s' (register, update, disable, enable, show, list)",
	        argv[0]));
}
