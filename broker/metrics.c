/*
 * metrics.c: see metrics.h.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define MAX_ROUTES	24
#define NBUCKETS	12

static const double buckets[NBUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10
};
static const double decision_buckets[NBUCKETS] = {
	1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400
};
static const unsigned statuses[] = {
	200, 201, 304, 400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 503
};
#define NSTATUS	(sizeof(statuses) / sizeof(statuses[0]))

static const char *const counter_names[METRICS__COUNT][2] = {
	{ "countersign_tokens_issued_total{path=\"client_credentials\"}", "Tokens issued, by path." },
	{ "countersign_tokens_issued_total{path=\"stepup\"}", NULL },
	{ "countersign_introspections_total{result=\"active\"}", "Introspections, by answer." },
	{ "countersign_introspections_total{result=\"inactive\"}", NULL },
	{ "countersign_approvals_total{event=\"requested\"}", "Step-up approval requests and decisions." },
	{ "countersign_approvals_total{event=\"approved\"}", NULL },
	{ "countersign_approvals_total{event=\"denied\"}", NULL },
	{ "countersign_db_errors_total", "Database statements that failed." },
	{ "countersign_db_connects_total", "Database connections opened." },
	{ "countersign_db_connect_failures_total", "Database connection attempts that failed." },
	{ "countersign_db_pool_waits_total", "Statements that found every pooled database connection busy and waited." },
	{ "countersign_db_pool_timeouts_total", "Statements that gave up waiting for a pooled database connection (answered 503)." },
	{ "countersign_rate_limited_total", "Requests refused with 429." },
	{ "countersign_group_commit_batches_total", "Group-commit batches committed or failed." },
	{ "countersign_group_commit_tokens_total", "Tokens that went through group commit." },
};

static const char *const deny_reasons[] = {
	"unknown_scope", "write_scope_needs_approval", "not_granted",
	"revoked_during_issuance", "other"
};
#define NREASONS (sizeof(deny_reasons) / sizeof(deny_reasons[0]))

static atomic_long counters[METRICS__COUNT];
static atomic_long denied[NREASONS];

struct route_stats {
	char name[64];
	atomic_long by_status[NSTATUS + 1];	/* last: other */
	atomic_long hist[NBUCKETS + 1];		/* last: +Inf */
	atomic_long sum_us;
};

static struct route_stats routes[MAX_ROUTES];
static atomic_int nroutes;
static atomic_long decisions[NBUCKETS + 1];
static atomic_long decision_sum_ms;
static atomic_long pool_wait_us;

void
metrics_inc(enum metrics_counter c)
{
	if ((unsigned)c < METRICS__COUNT)
		atomic_fetch_add(&counters[c], 1);
}

void
metrics_add(enum metrics_counter c, long n)
{
	if ((unsigned)c < METRICS__COUNT)
		atomic_fetch_add(&counters[c], n);
}

void
metrics_denied(const char *reason)
{
	size_t i;

	for (i = 0; i < NREASONS - 1; i++)
		if (strcmp(reason, deny_reasons[i]) == 0)
			break;
	atomic_fetch_add(&denied[i], 1);
}

/*
 * The stats slot of a route label. Labels come from the route table (a
 * fixed, small set) or "unmatched", so the table cannot be flooded; a
 * label that does not fit goes to the last slot.
 */
static struct route_stats *
route_slot(const char *route)
{
	static atomic_flag lock = ATOMIC_FLAG_INIT;
	int i, n = atomic_load(&nroutes);
	struct route_stats *r = NULL;

	for (i = 0; i < n; i++)
		if (strcmp(routes[i].name, route) == 0)
			return &routes[i];
	while (atomic_flag_test_and_set(&lock))
		;
	n = atomic_load(&nroutes);
	for (i = 0; i < n; i++)
		if (strcmp(routes[i].name, route) == 0)
			r = &routes[i];
	if (r == NULL && n < MAX_ROUTES) {
		snprintf(routes[n].name, sizeof(routes[n].name), "%s", route);
		r = &routes[n];
		atomic_store(&nroutes, n + 1);
	}
	atomic_flag_clear(&lock);
	return r != NULL ? r : &routes[MAX_ROUTES - 1];
}

void
metrics_request(const char *route, unsigned status, double seconds)
{
	struct route_stats *r = route_slot(route);
	size_t i;

	for (i = 0; i < NSTATUS && statuses[i] != status; i++)
		;
	atomic_fetch_add(&r->by_status[i], 1);
	for (i = 0; i < NBUCKETS && seconds > buckets[i]; i++)
		;
	atomic_fetch_add(&r->hist[i], 1);
	atomic_fetch_add(&r->sum_us, (long)(seconds * 1e6));
}

void
metrics_decision(double seconds)
{
	size_t i;

	for (i = 0; i < NBUCKETS && seconds > decision_buckets[i]; i++)
		;
	atomic_fetch_add(&decisions[i], 1);
	atomic_fetch_add(&decision_sum_ms, (long)(seconds * 1e3));
}

void
metrics_pool_wait(double seconds, int ok)
{
	atomic_fetch_add(&counters[METRICS_DB_POOL_WAITS], 1);
	if (!ok)
		atomic_fetch_add(&counters[METRICS_DB_POOL_TIMEOUTS], 1);
	atomic_fetch_add(&pool_wait_us, (long)(seconds * 1e6));
}

/* A growing string; NULL after an allocation failure. */
struct out {
	char *buf;
	size_t len, cap;
};

static void
put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->buf == NULL)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			free(o->buf);
			o->buf = NULL;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		{
			char *nb = realloc(o->buf, o->cap * 2 + (size_t)n);

			if (nb == NULL) {
				free(o->buf);
				o->buf = NULL;
				return;
			}
			o->buf = nb;
			o->cap = o->cap * 2 + (size_t)n;
		}
	}
}

char *
metrics_render(long pending, long keys_expiring, long keys_expired, int up)
{
	struct out o = { malloc(16384), 0, 16384 };
	size_t i, k;
	int n = atomic_load(&nroutes);

	if (o.buf == NULL)
		return NULL;
	o.buf[0] = '\0';
	put(&o, "# HELP countersign_up Whether the database answered this scrape.\n"
	    "# TYPE countersign_up gauge\ncountersign_up %d\n", up);
	if (pending >= 0)
		put(&o, "# HELP countersign_approvals_pending Step-up requests "
		    "waiting for a human.\n# TYPE countersign_approvals_pending "
		    "gauge\ncountersign_approvals_pending %ld\n", pending);
	if (keys_expiring >= 0)
		put(&o, "# HELP countersign_approver_keys_expiring Enabled "
		    "approvers whose key expires within 14 days.\n"
		    "# TYPE countersign_approver_keys_expiring gauge\n"
		    "countersign_approver_keys_expiring %ld\n", keys_expiring);
	if (keys_expired >= 0)
		put(&o, "# HELP countersign_approver_keys_expired Enabled "
		    "approvers whose key has expired.\n"
		    "# TYPE countersign_approver_keys_expired gauge\n"
		    "countersign_approver_keys_expired %ld\n", keys_expired);
	for (i = 0; i < METRICS__COUNT; i++) {
		if (counter_names[i][1] != NULL) {
			char base[96];
			const char *brace = strchr(counter_names[i][0], '{');
			size_t len = brace != NULL ? (size_t)(brace -
			    counter_names[i][0]) : strlen(counter_names[i][0]);

			snprintf(base, sizeof(base), "%.*s", (int)len,
			    counter_names[i][0]);
			put(&o, "# HELP %s %s\n# TYPE %s counter\n", base,
			    counter_names[i][1], base);
		}
		put(&o, "%s %ld\n", counter_names[i][0],
		    atomic_load(&counters[i]));
	}
	put(&o, "# HELP countersign_tokens_denied_total Token requests refused, "
	    "by reason.\n# TYPE countersign_tokens_denied_total counter\n");
	for (i = 0; i < NREASONS; i++)
		put(&o, "countersign_tokens_denied_total{reason=\"%s\"} %ld\n",
		    deny_reasons[i], atomic_load(&denied[i]));
	put(&o, "# HELP countersign_http_requests_total HTTP requests, by "
	    "endpoint and status.\n# TYPE countersign_http_requests_total "
	    "counter\n");
	for (k = 0; k < (size_t)n; k++) {
		for (i = 0; i <= NSTATUS; i++) {
			long v = atomic_load(&routes[k].by_status[i]);
			char code[8];

			if (v == 0)
				continue;
			if (i < NSTATUS)
				snprintf(code, sizeof(code), "%u", statuses[i]);
			else
				snprintf(code, sizeof(code), "other");
			put(&o, "countersign_http_requests_total{endpoint=\"%s\","
			    "status=\"%s\"} %ld\n", routes[k].name, code, v);
		}
	}
	put(&o, "# HELP countersign_http_request_duration_seconds Request "
	    "latency, by endpoint.\n# TYPE "
	    "countersign_http_request_duration_seconds histogram\n");
	for (k = 0; k < (size_t)n; k++) {
		long cum = 0;

		for (i = 0; i <= NBUCKETS; i++) {
			cum += atomic_load(&routes[k].hist[i]);
			if (i < NBUCKETS)
				put(&o, "countersign_http_request_duration_seconds_bucket"
				    "{endpoint=\"%s\",le=\"%g\"} %ld\n", routes[k].name,
				    buckets[i], cum);
			else
				put(&o, "countersign_http_request_duration_seconds_bucket"
				    "{endpoint=\"%s\",le=\"+Inf\"} %ld\n",
				    routes[k].name, cum);
		}
		put(&o, "countersign_http_request_duration_seconds_sum{endpoint="
		    "\"%s\"} %.6f\ncountersign_http_request_duration_seconds_count"
		    "{endpoint=\"%s\"} %ld\n", routes[k].name,
		    atomic_load(&routes[k].sum_us) / 1e6, routes[k].name, cum);
	}
	{
		long cum = 0;

		put(&o, "# HELP countersign_approval_decision_seconds Time from a "
		    "step-up request to the decision that settled it.\n# TYPE "
		    "countersign_approval_decision_seconds histogram\n");
		for (i = 0; i <= NBUCKETS; i++) {
			cum += atomic_load(&decisions[i]);
			if (i < NBUCKETS)
				put(&o, "countersign_approval_decision_seconds_bucket"
				    "{le=\"%g\"} %ld\n", decision_buckets[i], cum);
			else
				put(&o, "countersign_approval_decision_seconds_bucket"
				    "{le=\"+Inf\"} %ld\n", cum);
		}
		put(&o, "countersign_approval_decision_seconds_sum %.3f\n"
		    "countersign_approval_decision_seconds_count %ld\n",
		    atomic_load(&decision_sum_ms) / 1e3, cum);
	}
	put(&o, "# HELP countersign_db_pool_wait_seconds_total Time statements "
	    "spent waiting for a pooled database connection.\n# TYPE "
	    "countersign_db_pool_wait_seconds_total counter\n"
	    "countersign_db_pool_wait_seconds_total %.6f\n",
	    atomic_load(&pool_wait_us) / 1e6);
	return o.buf;
}
