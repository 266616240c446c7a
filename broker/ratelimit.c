/*
 * ratelimit.c: see ratelimit.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "util.h"

struct bucket {
	char key[RATELIMIT_KEY_MAX];
	double tokens;
	int64_t last_ms;	/* last refill, monotonic */
	int used;
};

struct ratelimit {
	pthread_mutex_t mu;
	double per_ms;
	double burst;
	int disabled;
	struct bucket slots[RATELIMIT_SLOTS];
};

struct ratelimit *
ratelimit_new(int per_minute)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return NULL;
	pthread_mutex_init(&rl->mu, NULL);
	rl->disabled = per_minute <= 0;
	rl->burst = per_minute;
	rl->per_ms = per_minute / 60000.0;
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	pthread_mutex_destroy(&rl->mu);
	free(rl);
}

/* FNV-1a: the slot to start probing at. Not a security boundary. */
static uint32_t
hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static int
take(struct ratelimit *rl, const char *key, int *retry_after, int consume)
{
	struct bucket *b = NULL, *oldest = NULL;
	int64_t now = util_monotonic_ms();
	uint32_t h;
	int i, allowed;

	*retry_after = 0;
	if (rl == NULL || rl->disabled)
		return 1;
	h = hash(key);
	pthread_mutex_lock(&rl->mu);
	/* Probe a short window; recycle the stalest bucket in it if needed. */
	for (i = 0; i < 16; i++) {
		struct bucket *s = &rl->slots[(h + (uint32_t)i) % RATELIMIT_SLOTS];

		if (s->used && strncmp(s->key, key, RATELIMIT_KEY_MAX - 1) == 0) {
			b = s;
			break;
		}
		if (oldest == NULL || !s->used ||
		    (oldest->used && s->last_ms < oldest->last_ms))
			oldest = s;
	}
	if (b == NULL) {
		b = oldest;
		memset(b, 0, sizeof(*b));
		strncpy(b->key, key, RATELIMIT_KEY_MAX - 1);
		b->used = 1;
		b->tokens = rl->burst;
		b->last_ms = now;
	}
	b->tokens += (double)(now - b->last_ms) * rl->per_ms;
	if (b->tokens > rl->burst)
		b->tokens = rl->burst;
	b->last_ms = now;
	allowed = b->tokens >= 1.0;
	if (allowed && consume)
		b->tokens -= 1.0;
	else
		*retry_after = (int)((1.0 - b->tokens) / rl->per_ms / 1000.0) + 1;
	pthread_mutex_unlock(&rl->mu);
	return allowed;
}

int
ratelimit_take(struct ratelimit *rl, const char *key, int *retry_after)
{
	return take(rl, key, retry_after, 1);
}

int
ratelimit_peek(struct ratelimit *rl, const char *key, int *retry_after)
{
	return take(rl, key, retry_after, 0);
}
