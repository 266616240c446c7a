/*
 * scoperate.h: per-agent, per-scope rate limits.
 *
 * The rate_scopes setting lists scopes with their own budget, in requests
 * per agent per minute: "forum:search=10,forum:post=2". A request naming
 * such a scope (at the token endpoint or bc-authorize) takes one from the
 * agent's bucket for that scope, on top of the per-agent endpoint limits.
 * Like those limits the buckets live in memory, per broker process
 * (ratelimit.h).
 */
#ifndef SCOPERATE_H
#define SCOPERATE_H

#include <stddef.h>

#include "countersign.h"

#define SCOPERATE_MAX	64

/*
 * scoperate_init(spec, errbuf, errlen): parse spec ("" for none) and make
 * the limiters. Returns 0, or -1 with a message naming the bad entry.
 */
int scoperate_init(const char *spec, char *errbuf, size_t errlen);

/* scoperate_shutdown(): free the limiters. */
void scoperate_shutdown(void);

/*
 * scoperate_take(agent, scope, retry_after, which): take one request from
 * agent's bucket of every limited scope named in scope (a space-separated
 * scope parameter; NULL is none). Returns 1 if allowed; 0 if a bucket is
 * empty, with *retry_after in seconds and *which the limited scope
 * (borrowed, valid until scoperate_shutdown).
 */
int scoperate_take(const char *agent, const char *scope, int *retry_after,
    const char **which);

#endif
