/*
 * cache.c: see cache.h. Open addressing over a fixed table; a full probe
 * window recycles its oldest entry, so memory never grows.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "util.h"

#define PROBE	8

struct entry {
	char key[CACHE_KEY_MAX];
	int64_t expires_ms;
	int used;
};

struct cache {
	pthread_mutex_t mu;
	size_t slots, value_size;
	int ttl_ms;
	struct entry *entries;
	unsigned char *values;
};

struct cache *
cache_new(size_t slots, size_t value_size, int ttl_ms)
{
	struct cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->slots = slots;
	c->value_size = value_size;
	c->ttl_ms = ttl_ms;
	c->entries = calloc(slots, sizeof(*c->entries));
	c->values = calloc(slots, value_size);
	if (c->entries == NULL || c->values == NULL) {
		free(c->entries);
		free(c->values);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	return c;
}

void
cache_clear(struct cache *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	util_secure_zero(c->entries, c->slots * sizeof(*c->entries));
	util_secure_zero(c->values, c->slots * c->value_size);
	pthread_mutex_unlock(&c->mu);
}

void
cache_free(struct cache *c)
{
	if (c == NULL)
		return;
	cache_clear(c);
	pthread_mutex_destroy(&c->mu);
	free(c->entries);
	free(c->values);
	free(c);
}

static uint64_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

int
cache_get(struct cache *c, const char *key, void *value)
{
	int64_t now;
	uint64_t h;
	int i, hit = 0;

	if (c == NULL || c->ttl_ms <= 0 || strlen(key) >= CACHE_KEY_MAX)
		return 0;
	now = util_monotonic_ms();
	h = hash(key);
	pthread_mutex_lock(&c->mu);
	for (i = 0; i < PROBE; i++) {
		size_t slot = (size_t)((h + (uint64_t)i) % c->slots);
		struct entry *e = &c->entries[slot];

		if (e->used && e->expires_ms > now && strcmp(e->key, key) == 0) {
			memcpy(value, c->values + slot * c->value_size, c->value_size);
			hit = 1;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return hit;
}

void
cache_put(struct cache *c, const char *key, const void *value)
{
	struct entry *victim = NULL;
	size_t vslot = 0;
	uint64_t h;
	int i;

	if (c == NULL || c->ttl_ms <= 0 || strlen(key) >= CACHE_KEY_MAX)
		return;
	h = hash(key);
	pthread_mutex_lock(&c->mu);
	for (i = 0; i < PROBE; i++) {
		size_t slot = (size_t)((h + (uint64_t)i) % c->slots);
		struct entry *e = &c->entries[slot];

		if (e->used && strcmp(e->key, key) == 0) {
			victim = e;
			vslot = slot;
			break;
		}
		if (victim == NULL || !e->used ||
		    (victim->used && e->expires_ms < victim->expires_ms)) {
			victim = e;
			vslot = slot;
		}
	}
	memset(victim->key, 0, sizeof(victim->key));
	memcpy(victim->key, key, strlen(key));
	victim->expires_ms = util_monotonic_ms() + c->ttl_ms;
	victim->used = 1;
	memcpy(c->values + vslot * c->value_size, value, c->value_size);
	pthread_mutex_unlock(&c->mu);
}

void
cache_remove(struct cache *c, const char *key)
{
	uint64_t h;
	int i;

	if (c == NULL || strlen(key) >= CACHE_KEY_MAX)
		return;
	h = hash(key);
	pthread_mutex_lock(&c->mu);
	for (i = 0; i < PROBE; i++) {
		size_t slot = (size_t)((h + (uint64_t)i) % c->slots);
		struct entry *e = &c->entries[slot];

		if (e->used && strcmp(e->key, key) == 0) {
			util_secure_zero(e, sizeof(*e));
			util_secure_zero(c->values + slot * c->value_size,
			    c->value_size);
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
}
