/*
 * metrics.h: counters and histograms for GET /metrics (Prometheus text
 * format 0.0.4). Updates are lock-free atomics, cheap enough for the hot
 * path; the text is rendered only when scraped.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>

enum metrics_counter {
	METRICS_TOKENS_ISSUED_READ = 0,
	METRICS_TOKENS_ISSUED_STEPUP,
	METRICS_INTROSPECT_ACTIVE,
	METRICS_INTROSPECT_INACTIVE,
	METRICS_APPROVALS_REQUESTED,
	METRICS_APPROVALS_APPROVED,
	METRICS_APPROVALS_DENIED,
	METRICS_DB_ERRORS,
	METRICS_DB_CONNECTS,
	METRICS_DB_CONNECT_FAILURES,
	METRICS_DB_POOL_WAITS,
	METRICS_DB_POOL_TIMEOUTS,
	METRICS_RATE_LIMITED,
	METRICS_BATCHES,
	METRICS_BATCHED_TOKENS,
	METRICS__COUNT
};

/* metrics_inc(c): add one to a counter. */
void metrics_inc(enum metrics_counter c);

/* metrics_add(c, n): add n to a counter. */
void metrics_add(enum metrics_counter c, long n);

/*
 * metrics_denied(reason): count a refused token request by reason (a short
 * fixed string such as "not_granted"; unknown reasons count as "other").
 */
void metrics_denied(const char *reason);

/*
 * metrics_request(route, status, seconds): count one HTTP request to the
 * route with that label (the route table's path, or "unmatched") and
 * observe its duration.
 */
void metrics_request(const char *route, unsigned status, double seconds);

/*
 * metrics_pool_wait(seconds, ok): a statement waited that long for a pooled
 * database connection; ok is 0 if it gave up.
 */
void metrics_pool_wait(double seconds, int ok);

/* metrics_decision(seconds): observe how long a request waited for a human. */
void metrics_decision(double seconds);

/*
 * metrics_render(pending, keys_expiring, keys_expired, up): the whole
 * exposition as a new string the caller frees. pending is the number of
 * pending approval requests, keys_expiring and keys_expired the enabled
 * approvers whose key expires soon or has expired; each -1 when it could
 * not be read (then left out). up is 1 if the database answered.
 */
char *metrics_render(long pending, long keys_expiring, long keys_expired,
    int up);

#endif
