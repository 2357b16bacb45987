/*
 * cmd_referral.h - what the CLI's referral commands share: cmd_referral.c (create, show,
 * list, offers, placements, statistics) and cmd_referral_edit.c (cancel, reassign, update,
 * pause, resume).
 */
#ifndef HAVEN_CLI_CMD_REFERRAL_H
#define HAVEN_CLI_CMD_REFERRAL_H

#include "cli.h"

#include "haven/referral/v1/referral.pb-c.h"

#define REF_CLI_NEEDS_MAX   8
#define REF_CLI_REGIONS_MAX 16
#define REF_CLI_LANGS_MAX   8

#define STATE_NAME(v, b)                                                                           \
	cli_enum_name(&haven__referral__v1__need_state__descriptor, (int) (v), b, sizeof(b))
#define TYPE_NAME(v, b)                                                                            \
	cli_enum_name(&haven__capacity__v1__service_type__descriptor, (int) (v), b, sizeof(b))
#define POP_NAME(v, b)                                                                             \
	cli_enum_name(&haven__capacity__v1__population__descriptor, (int) (v), b, sizeof(b))
/* Any reply as JSON, field by field (enum values named as above). */
json_t *ref_cli_msg_json(const ProtobufCMessage *m);
/* Unix ms as UTC "YYYY-MM-DD HH:MM:SSZ" ("-" for 0) into buf. */
const char *ref_cli_when(uint64_t ms, char *buf, size_t n);
/* Strings joined with "," into buf ("-" for none). */
const char *ref_cli_join(char **v, size_t n, char *buf, size_t bufsz);
/* Resets getopt_long for a new command's words. */
void ref_cli_getopt_reset(void);

/* "shelter:women:nl,en" into a NeedRequest (strings point into s, which is changed; langs
 * holds REF_CLI_LANGS_MAX). */
int ref_cli_parse_need(char *s, Haven__Referral__V1__NeedRequest *n, char **langs, size_t *nlangs);
/* Appends a region to a list of at most REF_CLI_REGIONS_MAX; a usage error naming what. */
int ref_cli_add_region(char **list, size_t *n, char *region, const char *what);
/* A referral as a table: its fields, its needs, its trail. */
void ref_cli_print_referral(const Haven__Referral__V1__Referral *r);
/* Prints a Referral reply (a table, or JSON with --json) and frees it. Returns 0. */
int ref_cli_referral_reply(cli *c, ProtobufCMessage *rep);

/* cmd_referral_edit.c */
int ref_cli_cancel(cli *c, int argc, char **argv);
int ref_cli_reassign(cli *c, int argc, char **argv);
int ref_cli_update(cli *c, int argc, char **argv);
int ref_cli_pause(cli *c, int argc, char **argv, bool pause);

#endif
