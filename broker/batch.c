/*
 * batch.c: see batch.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define MAX_COMMITTERS	8

struct item {
	const struct batch_token *t;
	enum cs_err rc;
	int done;
	struct item *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queued_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static struct item *head, *tail;
static int nqueued;
static int running;
static int stopping;
static int window_us_;
static int ncommitters;
static pthread_t committers[MAX_COMMITTERS];

/*
 * The batched form of tokens.c's insert_token: the same checks per row,
 * over arrays. Returns the jti of every row that was inserted.
 */
static const struct db_stmt insert_batch = {
	"batch_insert_tokens",
	"WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], "
	"$4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], "
	"$9::text[], $10::text[], $11::int[], $12::bool[], $13::bool[]) "
	"AS u(agent_id, jti, scopes, audience, client_id, kid, iat, exp, name, "
	"details, max_uses, read_only, bound)), "
	"ok AS (SELECT r.*, string_to_array(r.scopes, ' ') AS sc FROM r "
	"WHERE EXISTS (SELECT 1 FROM agents a WHERE a.id = r.agent_id "
	"AND a.disabled_at IS NULL) "
	"AND (SELECT count(*) FROM grants g WHERE g.agent_id = r.agent_id "
	"AND g.audience = r.audience "
	"AND g.scope = ANY(string_to_array(r.scopes, ' ')) "
	"AND g.revoked_at IS NULL "
	"AND (g.expires_at IS NULL OR g.expires_at > now())) "
	"= cardinality(string_to_array(r.scopes, ' ')) "
	"AND (NOT r.read_only OR (SELECT count(*) FROM scopes s "
	"WHERE s.name = ANY(string_to_array(r.scopes, ' ')) "
	"AND s.kind = 'read') = cardinality(string_to_array(r.scopes, ' '))) "
	"AND (r.bound OR NOT EXISTS (SELECT 1 FROM scopes s "
	"WHERE s.name = ANY(string_to_array(r.scopes, ' ')) "
	"AND coalesce(s.require_dpop, s.kind <> 'read')))), "
	"t AS (INSERT INTO tokens (jti, agent_id, client_id, scopes, audience, "
	"kid, issued_at, expires_at, max_uses) SELECT jti, agent_id, client_id, "
	"sc, audience, kid, to_timestamp(iat), to_timestamp(exp), "
	"nullif(max_uses, 0) FROM ok RETURNING jti), "
	"e AS (INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.issued', 'agent:' || ok.name, 'agent:' || ok.name, "
	"ok.jti, ok.details::jsonb FROM ok JOIN t USING (jti) RETURNING jti) "
	"SELECT jti FROM e",
	13
};

int
batch_running(void)
{
	int r;

	pthread_mutex_lock(&mu);
	r = running && !stopping;
	pthread_mutex_unlock(&mu);
	return r;
}

/* A growing array literal of numbers or booleans (no quoting needed). */
static int
num_lit(char **buf, size_t *len, size_t *cap, const char *item)
{
	size_t n = strlen(item);

	if (*len + n + 3 > *cap) {
		size_t nc = *cap == 0 ? 1024 : *cap * 2;
		char *nb;

		while (nc < *len + n + 3)
			nc *= 2;
		nb = realloc(*buf, nc);
		if (nb == NULL)
			return -1;
		*buf = nb;
		*cap = nc;
	}
	(*buf)[*len] = *len == 0 ? '{' : ',';
	(*len)++;
	memcpy(*buf + *len, item, n);
	*len += n;
	(*buf)[*len] = '}';
	(*buf)[*len + 1] = '\0';
	return 0;
}

/* Run one batch; set every item's outcome. */
static void
commit_batch(struct item **items, int n)
{
	const char *texts[7][BATCH_MAX];
	char *arrays[7] = { NULL };
	/* agent_id, iat, exp, max_uses, read_only, bound */
	char *nums[6] = { NULL };
	size_t nlen[6] = { 0 }, ncap[6] = { 0 };
	const char *params[13];
	struct db_result *res = NULL;
	enum cs_err rc = CS_ERR_INTERNAL;
	int i, k, r;

	for (i = 0; i < n; i++) {
		const struct batch_token *t = items[i]->t;
		char b[6][24];

		texts[0][i] = t->jti;
		texts[1][i] = t->scopes;
		texts[2][i] = t->audience;
		texts[3][i] = t->client_id;
		texts[4][i] = t->kid;
		texts[5][i] = t->agent_name;
		texts[6][i] = t->details;
		snprintf(b[0], sizeof(b[0]), "%lld", (long long)t->agent_id);
		snprintf(b[1], sizeof(b[1]), "%lld", (long long)t->iat);
		snprintf(b[2], sizeof(b[2]), "%lld", (long long)t->exp);
		snprintf(b[3], sizeof(b[3]), "%lld", (long long)t->max_uses);
		snprintf(b[4], sizeof(b[4]), "%s", t->read_only ? "t" : "f");
		snprintf(b[5], sizeof(b[5]), "%s", t->bound ? "t" : "f");
		for (k = 0; k < 6; k++)
			if (num_lit(&nums[k], &nlen[k], &ncap[k], b[k]) != 0)
				goto out;
	}
	for (k = 0; k < 7; k++) {
		arrays[k] = db_text_array(texts[k], (size_t)n);
		if (arrays[k] == NULL)
			goto out;
	}
	params[0] = nums[0];
	params[1] = arrays[0];
	params[2] = arrays[1];
	params[3] = arrays[2];
	params[4] = arrays[3];
	params[5] = arrays[4];
	params[6] = nums[1];
	params[7] = nums[2];
	params[8] = arrays[5];
	params[9] = arrays[6];
	params[10] = nums[3];
	params[11] = nums[4];
	params[12] = nums[5];
	rc = db_exec(&insert_batch, params, &res);
	if (rc != CS_OK) {
		rc = CS_ERR_UNAVAILABLE;
		goto out;
	}
	for (i = 0; i < n; i++) {
		items[i]->rc = CS_ERR_CONFLICT;
		for (r = 0; r < db_nrows(res); r++)
			if (strcmp(db_value(res, r, 0), items[i]->t->jti) == 0) {
				items[i]->rc = CS_OK;
				break;
			}
	}
	rc = CS_OK;
out:
	if (rc != CS_OK)
		for (i = 0; i < n; i++)
			items[i]->rc = rc;
	for (k = 0; k < 7; k++)
		free(arrays[k]);
	for (k = 0; k < 6; k++)
		free(nums[k]);
	db_result_free(res);
}

static void *
committer(void *arg)
{
	struct item *items[BATCH_MAX];

	(void)arg;
	db_thread_dedicated();
	/*
	 * The batch insert's plan is the same for any arrays; planning it
	 * for each batch's values took as long as running it.
	 */
	db_thread_generic_plans();
	pthread_mutex_lock(&mu);
	for (;;) {
		int n = 0, i;

		while (head == NULL && !stopping)
			pthread_cond_wait(&queued_cv, &mu);
		if (head == NULL && stopping)
			break;
		/*
		 * Give concurrent requests a moment to join, unless the batch
		 * is already full.
		 */
		if (nqueued < BATCH_MAX && window_us_ > 0 && !stopping) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (long)window_us_ * 1000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&queued_cv, &mu, &ts);
		}
		while (head != NULL && n < BATCH_MAX) {
			items[n++] = head;
			head = head->next;
			nqueued--;
		}
		if (head == NULL)
			tail = NULL;
		pthread_mutex_unlock(&mu);
		commit_batch(items, n);
		metrics_inc(METRICS_BATCHES);
		metrics_add(METRICS_BATCHED_TOKENS, n);
		pthread_mutex_lock(&mu);
		for (i = 0; i < n; i++)
			items[i]->done = 1;
		pthread_cond_broadcast(&done_cv);
	}
	pthread_mutex_unlock(&mu);
	db_shutdown();
	return NULL;
}

int
batch_start(int count, int window_us)
{
	int i;

	if (count < 1 || count > MAX_COMMITTERS)
		return -1;
	window_us_ = window_us;
	stopping = 0;
	for (i = 0; i < count; i++) {
		if (pthread_create(&committers[i], NULL, committer, NULL) != 0) {
			batch_stop();
			return -1;
		}
		ncommitters++;
	}
	running = 1;
	return 0;
}

void
batch_stop(void)
{
	int i;

	pthread_mutex_lock(&mu);
	stopping = 1;
	pthread_cond_broadcast(&queued_cv);
	pthread_mutex_unlock(&mu);
	for (i = 0; i < ncommitters; i++)
		pthread_join(committers[i], NULL);
	ncommitters = 0;
	running = 0;
}

enum cs_err
batch_insert(const struct batch_token *t)
{
	struct item it;

	memset(&it, 0, sizeof(it));
	it.t = t;
	pthread_mutex_lock(&mu);
	if (!running || stopping) {
		pthread_mutex_unlock(&mu);
		return CS_ERR_UNAVAILABLE;
	}
	if (tail != NULL)
		tail->next = &it;
	else
		head = &it;
	tail = &it;
	nqueued++;
	pthread_cond_signal(&queued_cv);
	while (!it.done)
		pthread_cond_wait(&done_cv, &mu);
	pthread_mutex_unlock(&mu);
	return it.rc;
}
