/*
 * sig_stats.c - Statistics: signals counted per region, sector and outcome (OUTCOME_UNSPECIFIED
 * while open) over a calendar month that has ended, each as it was at the month's end (so an
 * answer never changes, and two answers cannot be subtracted to find one signal: a window of
 * the caller's choosing told when each signal came in and showed new ones arrive), with the
 * small-cell rule of the referral statistics
 * (ref_stat_count: 1..4 shown as "<5"); a region's total beside a "<5" cell is withheld ("x"),
 * so that the total minus the cells shown cannot work the "<5" out. Registration of the
 * service's methods is here too.
 */
#include "sig_internal.h"

#include "haven/bytes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_SECTORS  10               /* Sector values 0..9 */
#define SETTLE_MS  (10 * 60 * 1000) /* a month is answered this long after its end */
#define N_OUTCOMES 9                /* Outcome values 0..8 */
#define CELL(reg, sec, out)                                                                        \
	(((size_t) (reg) *N_SECTORS + (size_t) (sec)) * N_OUTCOMES + (size_t) (out))

typedef Haven__Signals__V1__StatisticsCell StatCell;

/* The signals retention erased unclosed (sig_retention.c), by the day they came in: EXPIRED
 * when erased before the period's end, open (as they were then) when erased after it, so that
 * a month's answer does not change when retention runs later. Rows from before the day of the
 * erasure was kept (SIG_EXPIRED_TAIL_OLD) count as EXPIRED, as they always did. */
static hv_status
count_expired(sig_service *ss, store_txn *txn, uint64_t from, uint64_t to, uint32_t *counts)
{
	store_cursor *cur = NULL;
	const void   *k, *v;
	size_t        kl, vl;
	hv_status     st;

	if ((st = store_cursor_open(txn, ss->ss_expired, &cur)) == HV_OK) {
		st = store_cursor_seek(cur, "", 0, &k, &kl, &v, &vl);
	}
	while (st == HV_OK) {
		const uint8_t *key  = k;
		const uint8_t *nul  = memchr(key, 0, kl);
		size_t         rl   = nul != NULL ? (size_t) (nul - key) : kl;
		size_t         tail = kl - rl;
		char           region[RPC_ORG_ID_MAX];
		int            reg;

		if (nul != NULL && rl < sizeof(region) &&
		    (tail == SIG_EXPIRED_TAIL_OLD || tail == SIG_EXPIRED_TAIL) && vl == 4) {
			uint64_t day = hv_get_be64(nul + 1);
			unsigned sec = nul[9];
			bool erased  = tail == SIG_EXPIRED_TAIL_OLD || hv_get_be64(nul + 10) < to;
			int  out     = erased ? HAVEN__SIGNALS__V1__OUTCOME__EXPIRED
			                      : HAVEN__SIGNALS__V1__OUTCOME__OUTCOME_UNSPECIFIED;
			memcpy(region, key, rl + 1);
			if (day >= from && day < to && sec < N_SECTORS &&
			    (reg = region_map_find(ss->ss_regions, region)) >= 0) {
				counts[CELL(reg, sec, out)] += hv_get_be32(v);
			}
		}
		st = store_cursor_next(cur, &k, &kl, &v, &vl);
	}
	store_cursor_close(cur);
	return (st);
}

static hv_status
count_all(sig_service *ss, uint64_t from, uint64_t to, uint32_t *counts)
{
	store_txn    *txn;
	store_cursor *cur = NULL;
	const void   *v;
	size_t        vl;
	hv_status     st;

	if ((st = store_read_begin(ss->ss_store, &txn)) != HV_OK) {
		return (st);
	}
	if ((st = store_cursor_open(txn, ss->ss_items, &cur)) == HV_OK) {
		st = store_cursor_seek(cur, "", 0, NULL, NULL, &v, &vl);
	}
	while (st == HV_OK) {
		Signal *s = haven__signals__v1__signal__unpack(NULL, vl, v);
		int     reg;
		if (s != NULL && s->closed_ms >= to) {
			s->outcome =
			    HAVEN__SIGNALS__V1__OUTCOME__OUTCOME_UNSPECIFIED; /* open then */
		}
		if (s != NULL && s->created_ms >= from && s->created_ms < to &&
		    (reg = region_map_find(ss->ss_regions, s->region)) >= 0 &&
		    (unsigned) s->sector < N_SECTORS && (unsigned) s->outcome < N_OUTCOMES) {
			counts[CELL(reg, s->sector, s->outcome)]++;
		}
		if (s != NULL) {
			haven__signals__v1__signal__free_unpacked(s, NULL);
		}
		st = store_cursor_next(cur, NULL, NULL, &v, &vl);
	}
	store_cursor_close(cur);
	if (st == HV_NOT_FOUND) {
		st = count_expired(ss, txn, from, to, counts);
	}
	store_read_end(txn);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

static StatCell *
new_cell(rpc_call *call, const char *region, int sector, int outcome, const char *count)
{
	StatCell *c = rpc_call_alloc(call, sizeof(*c));

	if (c != NULL) {
		haven__signals__v1__statistics_cell__init(c);
		c->region  = (char *) region;
		c->sector  = sector;
		c->outcome = outcome;
		c->count   = rpc_call_strdup(call, count);
	}
	return (c);
}

/* A statistics query is audited as referral statistics are (ref_rpc.c): who asked, the
 * method, and the query ("statistics <month>") as the purpose; written in a transaction of its
 * own before the answer leaves, so an answer that cannot be audited is not given. */
static hv_status
stats_audit(sig_service *ss, rpc_call *call, const char *period)
{
	audit_entry e;
	char        purpose[sizeof(e.purpose)];

	if (ss->ss_audit == NULL) {
		return (HV_OK);
	}
	snprintf(purpose, sizeof(purpose), "statistics %s", period);
	audit_entry_fill(&e, rpc_call_caller(call), rpc_call_method(call), NULL, purpose,
	    sig_now(ss));
	return (audit_record(ss->ss_audit, &e));
}

static hv_status
h_statistics(rpc_call *call, void *svc, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	sig_service                                 *ss   = svc;
	const Haven__Signals__V1__StatisticsRequest *q    = (const void *) in;
	Haven__Signals__V1__StatisticsReply         *r    = rpc_call_alloc(call, sizeof(*r));
	size_t                                       nreg = region_map_count(ss->ss_regions);
	uint64_t                                     from, to;
	uint32_t                                    *counts;
	size_t                                       ncells = nreg * N_SECTORS * N_OUTCOMES;
	char                                         buf[16], err[RPC_ERRMSG_MAX];
	hv_status                                    st = HV_OK;

	if (q->from_ms != 0 || q->to_ms != 0) {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "from_ms and to_ms are refused: ask for a period (a calendar month YYYY-MM)"));
	}
	if (q->period == NULL || q->period[0] == '\0') {
		return (rpc_call_error(call, HV_INVALID_ARGUMENT,
		    "period required: a calendar month YYYY-MM that has ended"));
	}
	if ((st = ref_stat_month(q->period, &from, &to, err, sizeof(err))) != HV_OK) {
		return (rpc_call_error(call, st, "%s", err));
	}
	if ((uint64_t) sig_now(ss) < to + SETTLE_MS) {
		return (rpc_call_error(call, HV_FAILED_PRECONDITION,
		    "period %s has not ended: statistics are answered from 10 minutes after its "
		    "end",
		    q->period));
	}
	if (r == NULL || (counts = calloc(ncells + 1, sizeof(uint32_t))) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	haven__signals__v1__statistics_reply__init(r);
	r->cells         = rpc_call_alloc(call, (ncells + 1) * sizeof(StatCell *));
	r->region_totals = rpc_call_alloc(call, (nreg + 1) * sizeof(StatCell *));
	if (r->cells == NULL || r->region_totals == NULL ||
	    (st = count_all(ss, from, to, counts)) != HV_OK) {
		free(counts);
		return (r->cells == NULL || r->region_totals == NULL ? HV_RESOURCE_EXHAUSTED : st);
	}
	for (size_t reg = 0; reg < nreg; reg++) {
		const char *name  = region_map_name(ss->ss_regions, reg);
		uint32_t    total = 0;
		bool        small = false;
		for (int sec = 0; sec < N_SECTORS; sec++) {
			for (int o = 0; o < N_OUTCOMES; o++) {
				uint32_t n = counts[CELL(reg, sec, o)];
				if (n == 0) {
					continue;
				}
				total += n;
				small |= n < 5;
				if ((r->cells[r->n_cells] = new_cell(call, name, sec, o,
				         ref_stat_count(n, buf))) == NULL) {
					free(counts);
					return (HV_RESOURCE_EXHAUSTED);
				}
				r->n_cells++;
			}
		}
		if (total == 0) {
			continue;
		}
		if ((r->region_totals[r->n_region_totals] = new_cell(call, name, 0, 0,
		         small && total >= 5 ? "x" : ref_stat_count(total, buf))) == NULL) {
			free(counts);
			return (HV_RESOURCE_EXHAUSTED);
		}
		r->n_region_totals++;
	}
	free(counts);
	if ((st = stats_audit(ss, call, q->period)) != HV_OK) {
		return (rpc_call_error(call, st, "cannot audit the statistics query: %s",
		    hv_status_name(st)));
	}
	*out = &r->base;
	return (HV_OK);
}

/* ---- registration --------------------------------------------------------------------- */

static const rpc_method_impl methods[] = {
	{ "Challenge", sig_h_challenge, SIG_R_ANYONE, false },
	{ "Submit", sig_h_submit, SIG_R_ANYONE, false },
	{ "ListSignals", sig_h_list, SIG_R_OUTREACH, false },
	{ "CountSignals", sig_h_count, SIG_R_OUTREACH, false },
	{ "AcknowledgeSignal", sig_h_ack, SIG_R_OUTREACH, false },
	{ "CloseSignal", sig_h_close, SIG_R_OUTREACH, false },
	{ "ConvertSignal", sig_h_convert, SIG_R_OUTREACH, false },
	{ "Statistics", h_statistics, SIG_R_NUMBERS, false },
};

/* The public endpoint's rate limits on the node's metrics page (docs/signals.md). */
static void
sig_collect(void *arg, metrics_writer *w)
{
	sig_service *ss = arg;

	limit_collect(w, "haven_signals_limit_refusals_total",
	    (const char *const[]) { "challenge", "submit" },
	    (limit *const[]) { ss->ss_lim_challenge, ss->ss_lim_submit }, 2);
}

hv_status
sig_register(sig_service *ss, rpc_server *srv)
{
	hv_status st;

	if ((st = rpc_server_add_service(srv, &haven__signals__v1__signals__descriptor, methods,
	         sizeof(methods) / sizeof(methods[0]), ss)) != HV_OK) {
		return (st);
	}
	return (metrics_add_collector(rpc_server_metrics(srv), sig_collect, ss));
}
