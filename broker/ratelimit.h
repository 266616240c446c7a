/*
 * ratelimit.h: per-key token buckets in memory (per broker process).
 *
 * Used to limit each agent's token and bc-authorize requests, and failed
 * authentications per client id. The table has a fixed size: when it is
 * full the least recently used bucket is recycled, so memory is bounded
 * whatever the number of distinct keys an attacker sends. Limits are per
 * process: N broker replicas allow N times the rate (docs/operations.md).
 */
#ifndef RATELIMIT_H
#define RATELIMIT_H

#include <stdint.h>

#define RATELIMIT_SLOTS		4096
#define RATELIMIT_KEY_MAX	96

struct ratelimit;

/*
 * ratelimit_new(per_minute): a limiter allowing per_minute requests per key
 * per minute, with bursts up to per_minute. per_minute 0 disables it (every
 * take succeeds). NULL on allocation failure.
 */
struct ratelimit *ratelimit_new(int per_minute);

/* ratelimit_free(rl): NULL-safe. */
void ratelimit_free(struct ratelimit *rl);

/*
 * ratelimit_take(rl, key, retry_after): take one token from key's bucket.
 * Returns 1 if allowed; 0 if not, with *retry_after set to the whole
 * seconds until a token is available (at least 1). Thread-safe.
 */
int ratelimit_take(struct ratelimit *rl, const char *key, int *retry_after);

/*
 * ratelimit_peek(rl, key, retry_after): as ratelimit_take but without
 * taking: 1 if a token is available now.
 */
int ratelimit_peek(struct ratelimit *rl, const char *key, int *retry_after);

#endif
