/*
 * cache.h: a small fixed-size cache of fixed-size values with a time to
 * live, for the issuance hot path (docs/decisions/0005-read-caches.md).
 *
 * Nothing served from a cache is ever trusted on its own: every token is
 * inserted by a statement that re-checks, in the database, that the agent
 * is enabled and every grant live. A stale entry can therefore only make
 * a request fail, never issue something that was revoked.
 */
#ifndef CACHE_H
#define CACHE_H

#include <stddef.h>

#define CACHE_KEY_MAX	512

struct cache;

/*
 * cache_new(slots, value_size, ttl_ms): a cache of slots entries holding
 * value_size bytes each, valid for ttl_ms. ttl_ms 0 gives a cache that
 * never hits. NULL on allocation failure.
 */
struct cache *cache_new(size_t slots, size_t value_size, int ttl_ms);

/* cache_free(c): wipe and free. NULL-safe. */
void cache_free(struct cache *c);

/*
 * cache_get(c, key, value): 1 and a copy of the value in value if key is
 * present and fresh, else 0. Keys longer than CACHE_KEY_MAX-1 never hit.
 * Thread-safe.
 */
int cache_get(struct cache *c, const char *key, void *value);

/* cache_put(c, key, value): store a copy (replacing any entry for key). */
void cache_put(struct cache *c, const char *key, const void *value);

/* cache_remove(c, key): forget key's entry, if any. */
void cache_remove(struct cache *c, const char *key);

/* cache_clear(c): forget everything (wiping it). */
void cache_clear(struct cache *c);

#endif
