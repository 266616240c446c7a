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
	const struct batch_token *t;	/* the token queue's items */
	struct batch_use *u;		/* the use queue's items */
	enum cs_err rc;
	int done;
	/*
	 * Each waiter sleeps on its own condition, so a finished batch wakes
	 * exactly its own requests: with one shared condition every waiting
	 * worker of both queues woke on every commit and fought for mu (a
	 * profile at 16 connections showed a third of the broker's time in
	 * futex waits and wake-ups).
	 */
	pthread_cond_t done_cv;
	struct item *next;
};

/*
 * One group-commit queue: its waiters, its committer threads, and the
 * function that commits a batch of its items.
 */
struct queue {
	const char *name;
	void (*commit)(struct item **items, int n);
	pthread_cond_t queued_cv;	/* something was queued, or stopping */
	struct item *head, *tail;
	int nqueued;
	int ncommitters;
	pthread_t committers[MAX_COMMITTERS];
};

static void commit_tokens(struct item **items, int n);
static void commit_uses(struct item **items, int n);

/* One mutex for both queues: they are touched for microseconds at a time. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct queue token_queue = { "tokens", commit_tokens,
    PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0, { 0 } };
static struct queue use_queue = { "uses", commit_uses,
    PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0, { 0 } };
static int running;
static int stopping;
static int window_us_;

/*
 * The batched form of tokens.c's insert_token: the same checks, over
 * arrays. Returns the jti of every row that was inserted. The checks run
 * once per distinct request shape (agent, audience, scopes, flags, secret)
 * in d, not once per token: a batch is mostly one busy agent asking for
 * the same scopes again.
 */
static const struct db_stmt insert_batch = {
	"batch_insert_tokens",
	"WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], "
	"$4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], "
	"$9::text[], $10::text[], $11::int[], $12::bool[], $13::bool[], "
	"$14::text[]) "
	"AS u(agent_id, jti, scopes, audience, client_id, kid, iat, exp, name, "
	"details, max_uses, read_only, bound, cred)), "
	"d AS (SELECT DISTINCT agent_id, audience, scopes, read_only, bound, "
	"cred FROM r), "
	"g AS (SELECT d.* FROM d "
	"WHERE EXISTS (SELECT 1 FROM agents a WHERE a.id = d.agent_id "
	"AND a.disabled_at IS NULL "
	"AND (d.cred = '' OR a.secret_hash = decode(d.cred, 'hex'))) "
	"AND (SELECT count(*) FROM grants g WHERE g.agent_id = d.agent_id "
	"AND g.audience = d.audience "
	"AND g.scope = ANY(string_to_array(d.scopes, ' ')) "
	"AND g.revoked_at IS NULL "
	"AND (g.expires_at IS NULL OR g.expires_at > now())) "
	"= cardinality(string_to_array(d.scopes, ' ')) "
	"AND (NOT d.read_only OR (SELECT count(*) FROM scopes s "
	"WHERE s.name = ANY(string_to_array(d.scopes, ' ')) "
	"AND s.kind = 'read') = cardinality(string_to_array(d.scopes, ' '))) "
	"AND (d.bound OR NOT EXISTS (SELECT 1 FROM scopes s "
	"WHERE s.name = ANY(string_to_array(d.scopes, ' ')) "
	"AND coalesce(s.require_dpop, s.kind <> 'read')))), "
	"ok AS (SELECT r.*, string_to_array(r.scopes, ' ') AS sc FROM r "
	"JOIN g USING (agent_id, audience, scopes, read_only, bound, cred)), "
	"t AS (INSERT INTO tokens (jti, agent_id, client_id, scopes, audience, "
	"kid, issued_at, expires_at, max_uses) SELECT jti, agent_id, client_id, "
	"sc, audience, kid, to_timestamp(iat), to_timestamp(exp), "
	"nullif(max_uses, 0) FROM ok RETURNING jti), "
	"e AS (INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.issued', 'agent:' || ok.name, 'agent:' || ok.name, "
	"ok.jti, ok.details::jsonb FROM ok JOIN t USING (jti) RETURNING jti) "
	"SELECT jti FROM e",
	14
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

/* Insert one batch of tokens; set every item's outcome. */
static void
commit_tokens(struct item **items, int n)
{
	const char *texts[8][BATCH_MAX];
	char *arrays[8] = { NULL };
	/* agent_id, iat, exp, max_uses, read_only, bound */
	char *nums[6] = { NULL };
	size_t nlen[6] = { 0 }, ncap[6] = { 0 };
	const char *params[14];
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
		texts[7][i] = t->cred != NULL ? t->cred : "";
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
	for (k = 0; k < 8; k++) {
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
	params[13] = arrays[7];
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
	for (k = 0; k < 8; k++)
		free(arrays[k]);
	for (k = 0; k < 6; k++)
		free(nums[k]);
	db_result_free(res);
}

/*
 * The batched form of tokens.c's record_use, over arrays: per use, the
 * same atomic rules (the counter moves only while the token is unrevoked,
 * unexpired, under its limit and its agents enabled) and the same
 * token.used event.
 * One token may have several uses in a batch (a busy agent's one token,
 * introspected by many requests at once). l first locks the batch's token
 * rows in jti order, waiting for any concurrent batch that holds one, and
 * reads their latest counts: RETURNING cannot give u's starting count, and
 * two committers that lock in one order cannot deadlock, whatever order
 * the planner makes u visit its rows in (FOR NO KEY UPDATE: the lock u
 * takes anyway, so nothing waits on it that did not before). u then adds a token's uses at once, or only as many as its limit
 * leaves, and the k-th use of a token in this batch (k, in request order)
 * is active if k is at most what u added. So "exactly one active use" of
 * a single-use token holds within a batch and across concurrent ones.
 * A use by a service that is disabled, gone or has another secret since
 * it authenticated, perhaps through services.c's cache, is not counted:
 * service_refused.
 * The update names its rows by "jti = ANY ($1)", not by a join with r:
 * joined, on a table without statistics (before autovacuum's first
 * ANALYZE) the planner guessed its filter leaves one row and scanned every
 * token for each batch (tests/e2e/scale.test.mjs).
 */
static const struct db_stmt record_uses = {
	"batch_record_uses",
	"WITH r AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
	"$4::text[], $5::text[]) WITH ORDINALITY "
	"AS x(jti, service, agent, audience, cred, i)), "
	"t AS (SELECT r.i, tk.jti, tk.revoked_at, tk.expires_at, a.disabled_at, "
	"tk.use_count, tk.max_uses, (SELECT y.disabled_at FROM agents y "
	"WHERE y.id = tk.actor_agent_id) AS actor_disabled_at FROM r "
	"JOIN tokens tk ON tk.jti = r.jti JOIN agents a ON a.id = tk.agent_id), "
	"s AS (SELECT r.i FROM r WHERE NOT EXISTS (SELECT 1 FROM services v "
	"WHERE v.name = r.service AND v.disabled_at IS NULL AND (r.cred = '' "
	"OR v.secret_hash = decode(r.cred, 'hex')))), "
	"k AS (SELECT r.i, r.jti, row_number() OVER (PARTITION BY r.jti "
	"ORDER BY r.i) AS k FROM r WHERE r.i NOT IN (SELECT i FROM s)), "
	"c AS (SELECT jti, count(*) AS n FROM k GROUP BY jti), "
	"l AS (SELECT tk.jti, tk.use_count FROM tokens tk "
	"WHERE tk.jti = ANY ($1::text[]) AND tk.jti IN (SELECT jti FROM c) "
	"ORDER BY tk.jti FOR NO KEY UPDATE OF tk), "
	"u AS (UPDATE tokens tk SET use_count = l.use_count + CASE WHEN "
	"tk.max_uses IS NULL THEN c.n ELSE least(c.n, tk.max_uses - "
	"l.use_count) END, last_used_at = now() "
	"FROM c JOIN l ON l.jti = c.jti "
	"WHERE tk.jti = ANY ($1::text[]) AND tk.jti = c.jti "
	"AND tk.revoked_at IS NULL AND tk.expires_at > now() "
	"AND (tk.max_uses IS NULL OR l.use_count < tk.max_uses) "
	"AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.disabled_at IS NOT NULL "
	"AND a.id IN (tk.agent_id, tk.actor_agent_id)) "
	"RETURNING tk.jti, l.use_count AS before, tk.use_count AS after), "
	"o AS (SELECT r.i, r.jti, r.service, r.agent, r.audience, "
	"CASE WHEN k.k <= u.after - u.before THEN 'active' "
	"WHEN r.i IN (SELECT i FROM s) THEN 'service_refused' "
	"WHEN u.jti IS NOT NULL THEN 'used_up' "
	"WHEN t.jti IS NULL THEN 'unknown_jti' "
	"WHEN t.revoked_at IS NOT NULL THEN 'revoked' "
	"WHEN t.disabled_at IS NOT NULL THEN 'agent_disabled' "
	"WHEN t.actor_disabled_at IS NOT NULL THEN 'actor_disabled' "
	"WHEN t.expires_at <= now() THEN 'expired' "
	"ELSE 'used_up' END AS result, "
	"CASE WHEN k.k <= u.after - u.before THEN u.before + k.k END AS use, "
	"CASE WHEN k.k <= u.after - u.before THEN u.before + k.k - 1 "
	"WHEN u.jti IS NOT NULL THEN u.after ELSE t.use_count END AS before, "
	"t.max_uses FROM r LEFT JOIN t ON t.i = r.i LEFT JOIN k ON k.i = r.i "
	"LEFT JOIN u ON u.jti = r.jti), "
	"e AS (INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.used', 'service:' || o.service, 'agent:' || o.agent, "
	"o.jti, jsonb_build_object('result', o.result, 'active', "
	"o.result = 'active', 'audience', o.audience, 'use', o.use, "
	"'uses_before', o.before, 'max_uses', o.max_uses) FROM o ORDER BY o.i "
	"RETURNING jti) "
	"SELECT o.i, o.result, coalesce(o.use::text, ''), "
	"coalesce(o.max_uses::text, ''), (SELECT count(*) FROM e) FROM o "
	"ORDER BY o.i",
	5
};

/* Record one batch of uses; set every item's outcome. */
static void
commit_uses(struct item **items, int n)
{
	const char *cols[5][BATCH_MAX];
	char *arrays[5] = { NULL };
	const char *params[5];
	struct db_result *res = NULL;
	enum cs_err rc = CS_ERR_INTERNAL;
	int i, k;

	for (i = 0; i < n; i++) {
		cols[0][i] = items[i]->u->jti;
		cols[1][i] = items[i]->u->service;
		cols[2][i] = items[i]->u->agent;
		cols[3][i] = items[i]->u->audience;
		cols[4][i] = items[i]->u->cred != NULL ? items[i]->u->cred : "";
	}
	for (k = 0; k < 5; k++) {
		arrays[k] = db_text_array(cols[k], (size_t)n);
		if (arrays[k] == NULL)
			goto out;
		params[k] = arrays[k];
	}
	if (db_exec(&record_uses, params, &res) != CS_OK) {
		rc = CS_ERR_UNAVAILABLE;
		goto out;
	}
	/* One row per use, in order, and every event written. */
	if (db_nrows(res) != n || strtol(db_value(res, 0, 4), NULL, 10) != n) {
		log_error("batched use recording returned an unexpected result");
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct batch_use *u = items[i]->u;

		snprintf(u->result, sizeof(u->result), "%s", db_value(res, i, 1));
		snprintf(u->use, sizeof(u->use), "%s", db_value(res, i, 2));
		snprintf(u->max_uses, sizeof(u->max_uses), "%s",
		    db_value(res, i, 3));
		items[i]->rc = CS_OK;
	}
	rc = CS_OK;
out:
	if (rc != CS_OK)
		for (i = 0; i < n; i++)
			items[i]->rc = rc;
	for (k = 0; k < 5; k++)
		free(arrays[k]);
	db_result_free(res);
}

/*
 * Take up to BATCH_MAX items off q (mu held), in order. Several uses of
 * one token may share a batch: record_uses counts them in request order.
 */
static int
take_batch(struct queue *q, struct item **items)
{
	struct item *it;
	int n = 0;

	while ((it = q->head) != NULL && n < BATCH_MAX) {
		q->head = it->next;
		it->next = NULL;
		items[n++] = it;
		q->nqueued--;
	}
	if (q->head == NULL)
		q->tail = NULL;
	return n;
}

static void *
committer(void *arg)
{
	struct queue *q = arg;
	struct item *items[BATCH_MAX];

	db_thread_dedicated();
	/*
	 * A batch statement's plan is the same for any arrays; planning it
	 * for each batch's values took as long as running it.
	 */
	db_thread_generic_plans();
	pthread_mutex_lock(&mu);
	for (;;) {
		int n, i;

		while (q->head == NULL && !stopping)
			pthread_cond_wait(&q->queued_cv, &mu);
		if (q->head == NULL && stopping)
			break;
		/*
		 * Give concurrent requests a moment to join, unless the batch
		 * is already full.
		 */
		if (q->nqueued < BATCH_MAX && window_us_ > 0 && !stopping) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (long)window_us_ * 1000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&q->queued_cv, &mu, &ts);
		}
		n = take_batch(q, items);
		if (n == 0)
			continue;
		/* Others may be left for another committer of this queue. */
		if (q->head != NULL)
			pthread_cond_signal(&q->queued_cv);
		pthread_mutex_unlock(&mu);
		q->commit(items, n);
		if (q == &token_queue) {
			metrics_inc(METRICS_BATCHES);
			metrics_add(METRICS_BATCHED_TOKENS, n);
		}
		pthread_mutex_lock(&mu);
		for (i = 0; i < n; i++) {
			items[i]->done = 1;
			pthread_cond_signal(&items[i]->done_cv);
		}
	}
	pthread_mutex_unlock(&mu);
	db_shutdown();
	return NULL;
}

static void stop_queue(struct queue *q);

static int
start_queue(struct queue *q, int count)
{
	int i;

	for (i = 0; i < count; i++) {
		if (pthread_create(&q->committers[i], NULL, committer, q) != 0)
			return -1;
		q->ncommitters++;
	}
	return 0;
}

static void
stop_queue(struct queue *q)
{
	int i;

	for (i = 0; i < q->ncommitters; i++)
		pthread_join(q->committers[i], NULL);
	q->ncommitters = 0;
}

int
batch_start(int count, int window_us)
{
	if (count < 1 || count > MAX_COMMITTERS)
		return -1;
	window_us_ = window_us;
	stopping = 0;
	if (start_queue(&token_queue, count) != 0 ||
	    start_queue(&use_queue, count) != 0) {
		batch_stop();
		return -1;
	}
	running = 1;
	return 0;
}

void
batch_stop(void)
{
	pthread_mutex_lock(&mu);
	stopping = 1;
	pthread_cond_broadcast(&token_queue.queued_cv);
	pthread_cond_broadcast(&use_queue.queued_cv);
	pthread_mutex_unlock(&mu);
	stop_queue(&token_queue);
	stop_queue(&use_queue);
	running = 0;
}

/* Queue it on q and wait until a committer has settled it. */
static enum cs_err
enqueue_and_wait(struct queue *q, struct item *it)
{
	pthread_mutex_lock(&mu);
	if (!running || stopping) {
		pthread_mutex_unlock(&mu);
		return CS_ERR_UNAVAILABLE;
	}
	pthread_cond_init(&it->done_cv, NULL);
	if (q->tail != NULL)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->nqueued++;
	/*
	 * One idle committer of this queue is enough: a busy one looks at the
	 * queue again before it sleeps.
	 */
	pthread_cond_signal(&q->queued_cv);
	while (!it->done)
		pthread_cond_wait(&it->done_cv, &mu);
	pthread_mutex_unlock(&mu);
	pthread_cond_destroy(&it->done_cv);
	return it->rc;
}

enum cs_err
batch_insert(const struct batch_token *t)
{
	struct item it;

	memset(&it, 0, sizeof(it));
	it.t = t;
	return enqueue_and_wait(&token_queue, &it);
}

enum cs_err
batch_record_use(struct batch_use *u)
{
	struct item it;

	memset(&it, 0, sizeof(it));
	it.u = u;
	return enqueue_and_wait(&use_queue, &it);
}
