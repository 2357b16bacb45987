/*
 * alerts_config.c - the alerts service's own options: the "alerts" section of the node's
 * configuration file ("alerts.smtp_url = smtp://mail.example.org:587"), read by the processes
 * that run it (haven-node, haven-referral, haven-consent) through host_config_load_with, and
 * turned into alerts_options (see alerts.h).
 */
#include "alerts.h"

#include <stddef.h>

static const config_option options[] = {
	{ "node_url", CONFIG_STRING, offsetof(alerts_config, node_url), "https://localhost", 0, 0,
	    "The node's address as people reach it (https://haven.example.org): alerts link to "
	    "NODE_URL/#/offers/ID and similar, and carry nothing else about a case." },
	{ "smtp_url", CONFIG_STRING, offsetof(alerts_config, smtp_url), NULL, 0, 0,
	    "Mail server for alert e-mails: smtp://HOST:PORT (STARTTLS is required) or "
	    "smtps://HOST:PORT. Default: none (e-mail alerts are retried and then dropped; "
	    "webhooks "
	    "and WatchEvents still work)." },
	{ "smtp_from", CONFIG_STRING, offsetof(alerts_config, smtp_from), "haven@localhost", 0, 0,
	    "The sender address of alert e-mails." },
	{ "smtp_ca", CONFIG_STRING, offsetof(alerts_config, smtp_ca), NULL, 0, 0,
	    "PEM file of the CA that signed the mail server's certificate. Default: the system's "
	    "CA certificates." },
	{ "escalate_after_s", CONFIG_UINT, offsetof(alerts_config, escalate_after_s), "600", 30,
	    86400,
	    "An offer for an immediate need not acknowledged this many seconds after it was made "
	    "alerts the provider again (its on-call address too) and the coordinators of the "
	    "referral's region." },
	{ "unmet_after_s", CONFIG_UINT, offsetof(alerts_config, unmet_after_s), "3600", 60, 604800,
	    "A need waiting this long for a provider with room alerts the referrer again and the "
	    "coordinators of its region." },
	{ "webhook_allow_private", CONFIG_BOOL, offsetof(alerts_config, webhook_allow_private),
	    "false", 0, 0,
	    "Let organisations' alert webhooks reach loopback, private and link-local addresses "
	    "(and http:// to a loopback host). Off by default: a partner's webhook must not make "
	    "the node POST into its own host or network. For tests and a local relay only." },
};

config_table
alerts_config_table(alerts_config *cfg)
{
	config_table t = { ALERTS_CONFIG_SECTION, options, sizeof(options) / sizeof(options[0]),
		cfg };

	return (t);
}

void
alerts_config_apply(const alerts_config *cfg, alerts_options *ao)
{
	ao->node_url              = cfg->node_url;
	ao->smtp_url              = cfg->smtp_url;
	ao->smtp_from             = cfg->smtp_from;
	ao->smtp_ca_file          = cfg->smtp_ca;
	ao->escalate_after_s      = (uint32_t) cfg->escalate_after_s;
	ao->unmet_after_s         = (uint32_t) cfg->unmet_after_s;
	ao->webhook_allow_private = cfg->webhook_allow_private;
}

void
alerts_config_free(alerts_config *cfg)
{
	config_free(options, sizeof(options) / sizeof(options[0]), cfg);
}
