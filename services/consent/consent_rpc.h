/*
 * consent_rpc.h - the RPC layer of the consent library: consent_rpc.c (haven.consent.v1.Consent
 * and consent_register) and audit_rpc.c (haven.audit.v1.Audit). The top of the library but
 * consent.c; stands on every header below.
 */
#ifndef HAVEN_CONSENT_RPC_H
#define HAVEN_CONSENT_RPC_H

#include "consent_base.h"

/* haven.audit.v1.Audit's methods (audit_rpc.c), registered by consent_register. */
#define AUDIT_RPC_METHODS 2
extern const rpc_method_impl audit_rpc_methods[AUDIT_RPC_METHODS];

#endif
