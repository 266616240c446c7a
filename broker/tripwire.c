/*
 * tripwire.c: see tripwire.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cache.h"
#include "db.h"
#include "log.h"
#include "notify.h"
#include "tripwire.h"
#include "util.h"

enum kind { K_WRITE_REQUESTS, K_NEW_AUDIENCE, K_DENIALS, K__COUNT };

static const char *const kind_names[K__COUNT] = {
	"write_requests", "new_audience", "denials"
};

struct rule {
	int64_t id;
	enum kind kind;
	int64_t threshold;
	int64_t window;		/* seconds */
	int64_t agent_id;	/* 0: every agent */
};

static const struct db_stmt load_rules = {
	"tripwire_load",
	"SELECT id, kind, threshold, window_seconds, coalesce(agent_id, 0) "
	"FROM tripwires WHERE removed_at IS NULL ORDER BY id LIMIT 256",
	0
};

static const struct db_stmt insert_rule = {
	"tripwire_insert",
	"WITH ag AS (SELECT id FROM agents WHERE name = $4), "
	"r AS (INSERT INTO tripwires (kind, threshold, window_seconds, agent_id) "
	"SELECT $1, $2::int, $3::int, (SELECT id FROM ag) "
	"WHERE $4::text IS NULL OR EXISTS (SELECT 1 FROM ag) RETURNING id) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'tripwire.created', $5, 'tripwire:' || r.id, "
	"jsonb_build_object('kind', $1::text, 'threshold', $2::int, "
	"'window_seconds', $3::int, 'agent', $4::text) FROM r "
	"RETURNING subject",
	5
};

static const struct db_stmt remove_rule = {
	"tripwire_remove",
	"WITH r AS (UPDATE tripwires SET removed_at = now() "
	"WHERE id = $1::bigint AND removed_at IS NULL RETURNING id, kind) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'tripwire.removed', $2, 'tripwire:' || r.id, "
	"jsonb_build_object('kind', r.kind) FROM r RETURNING seq",
	2
};

static const struct db_stmt list_rules = {
	"tripwire_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('id', t.id, 'kind', "
	"t.kind, 'threshold', t.threshold, 'window_seconds', t.window_seconds, "
	"'agent', a.name, 'created_at', t.created_at) ORDER BY t.id), "
	"'[]'::jsonb)::text FROM tripwires t "
	"LEFT JOIN agents a ON a.id = t.agent_id WHERE t.removed_at IS NULL",
	0
};

/*
 * Counting windows start no earlier than the agent's last resumption, so
 * what it did before an operator looked and resumed it does not trip the
 * same rule again.
 */
#define SINCE(n) "greatest(now() - make_interval(secs => $" #n "::int), " \
	"coalesce((SELECT resumed_at FROM agents WHERE id = $1::bigint), " \
	"'-infinity'))"

static const struct db_stmt count_write_requests = {
	"tripwire_count_writes",
	"SELECT count(*) FROM approval_requests WHERE agent_id = $1::bigint "
	"AND created_at > " SINCE(2),
	2
};

/* Refusals by the broker (audit) and by approvers (approval_requests). */
static const struct db_stmt count_denials = {
	"tripwire_count_denials",
	"SELECT (SELECT count(*) FROM audit_events WHERE type IN "
	"('token.denied', 'approval.refused') AND actor = 'agent:' || $3 "
	"AND time > " SINCE(2) ") + (SELECT count(*) FROM approval_requests "
	"WHERE agent_id = $1::bigint AND state = 'denied' AND decided_at > "
	SINCE(2) ")",
	3
};

/*
 * Whether the audience is known for the agent (a token or an approval
 * request for it, or an operator resumed the agent after this audience
 * tripped it), and whether the agent has any history at all: an agent's
 * very first audience is its baseline, not a deviation from one.
 */
static const struct db_stmt audience_known = {
	"tripwire_audience",
	"SELECT EXISTS (SELECT 1 FROM tokens WHERE agent_id = $1::bigint "
	"AND audience = $2) OR EXISTS (SELECT 1 FROM approval_requests "
	"WHERE agent_id = $1::bigint AND audience = $2) OR EXISTS (SELECT 1 "
	"FROM audit_events WHERE subject = 'agent:' || $3 "
	"AND type = 'agent.resumed' AND details->>'accepted_audience' = $2), "
	"EXISTS (SELECT 1 FROM tokens WHERE agent_id = $1::bigint)",
	3
};

/*
 * Suspend: only an agent not already disabled (so of two processes, or an
 * operator's kill switch, one wins), revoking its live tokens and those
 * delegated to it, with the audit event naming the rule.
 */
static const struct db_stmt suspend_agent = {
	"tripwire_suspend",
	"WITH a AS (UPDATE agents SET disabled_at = now(), suspended_at = now(), "
	"suspended_by = $2::bigint WHERE id = $1::bigint "
	"AND disabled_at IS NULL RETURNING id, name), "
	"r AS (UPDATE tokens t SET revoked_at = now(), "
	"revoked_by = 'tripwire:' || $2 FROM a WHERE (t.agent_id = a.id "
	"OR t.actor_agent_id = a.id) AND t.revoked_at IS NULL "
	"AND t.expires_at > now() RETURNING t.jti) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'agent.suspended', 'tripwire:' || $2, 'agent:' || a.name, "
	"$3::jsonb || jsonb_build_object('tokens_revoked', "
	"(SELECT count(*) FROM r)) FROM a "
	"RETURNING details->>'tokens_revoked'",
	3
};

static const struct db_stmt resume_agent = {
	"tripwire_resume",
	"WITH p AS (SELECT id, name, suspended_by FROM agents WHERE name = $1 "
	"AND suspended_at IS NOT NULL FOR UPDATE), "
	"a AS (UPDATE agents g SET disabled_at = NULL, suspended_at = NULL, "
	"suspended_by = NULL, resumed_at = now() FROM p WHERE g.id = p.id "
	"RETURNING g.id), "
	"s AS (SELECT e.details FROM audit_events e, p "
	"WHERE e.subject = 'agent:' || p.name AND e.type = 'agent.suspended' "
	"ORDER BY e.seq DESC LIMIT 1) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'agent.resumed', $2, 'agent:' || p.name, "
	"jsonb_build_object('agent_id', p.id, 'rule', p.suspended_by, "
	"'accepted_audience', (SELECT details->>'audience' FROM s)) "
	"FROM p JOIN a ON a.id = p.id RETURNING seq",
	2
};

static const struct db_stmt agent_state = {
	"tripwire_agent_state",
	"SELECT disabled_at IS NOT NULL FROM agents WHERE name = $1",
	1
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[TRIPWIRE_RULES_MAX];
static size_t nrules;
static int64_t loaded_ms = -1;
static struct cache *seen;	/* "agent_id audience" pairs known */

int
tripwire_init(void)
{
	/* A pair once known stays known: tokens rows are never deleted. */
	seen = cache_new(8192, 1, 600000);
	return seen != NULL ? 0 : -1;
}

void
tripwire_shutdown(void)
{
	cache_free(seen);
	seen = NULL;
}

static int
kind_parse(const char *s, enum kind *out)
{
	int i;

	for (i = 0; i < K__COUNT; i++) {
		if (strcmp(s, kind_names[i]) == 0) {
			*out = (enum kind)i;
			return 0;
		}
	}
	return -1;
}

/* Refresh the rule copy when it is older than TRIPWIRE_RULES_TTL_MS. */
static void
refresh(void)
{
	struct db_result *res = NULL;
	int64_t now = util_monotonic_ms();
	int i, n;

	pthread_mutex_lock(&mu);
	if (loaded_ms >= 0 && now - loaded_ms < TRIPWIRE_RULES_TTL_MS) {
		pthread_mutex_unlock(&mu);
		return;
	}
	if (db_exec(&load_rules, NULL, &res) != CS_OK) {
		/*
		 * Keep the old copy and try again after the same interval, so
		 * a database outage costs one failed query per second, not one
		 * per request.
		 */
		loaded_ms = now;
		db_result_free(res);
		pthread_mutex_unlock(&mu);
		log_warn("tripwire rules could not be loaded");
		return;
	}
	n = db_nrows(res);
	nrules = 0;
	for (i = 0; i < n && nrules < TRIPWIRE_RULES_MAX; i++) {
		struct rule *r = &rules[nrules];

		if (kind_parse(db_value(res, i, 1), &r->kind) != 0 ||
		    util_parse_int64(db_value(res, i, 0), 1, INT64_MAX,
		    &r->id) != 0 ||
		    util_parse_int64(db_value(res, i, 2), 0, INT32_MAX,
		    &r->threshold) != 0 ||
		    util_parse_int64(db_value(res, i, 3), 0, INT32_MAX,
		    &r->window) != 0 ||
		    util_parse_int64(db_value(res, i, 4), 0, INT64_MAX,
		    &r->agent_id) != 0)
			continue;
		nrules++;
	}
	loaded_ms = now;
	pthread_mutex_unlock(&mu);
	db_result_free(res);
}

/* Copy the rules of a kind that apply to an agent into out (cap n). */
static size_t
applicable(enum kind k, int64_t agent_id, struct rule *out, size_t cap)
{
	size_t i, n = 0;

	refresh();
	pthread_mutex_lock(&mu);
	for (i = 0; i < nrules && n < cap; i++)
		if (rules[i].kind == k && (rules[i].agent_id == 0 ||
		    rules[i].agent_id == agent_id))
			out[n++] = rules[i];
	pthread_mutex_unlock(&mu);
	return n;
}

/*
 * Suspend c for rule r (observed: what was counted; audience: for
 * new_audience). Returns 1 if the agent is suspended now or already was
 * disabled by someone else meanwhile, 0 if nothing could be written.
 */
static int
fire(const struct client *c, const struct rule *r, int64_t observed,
    const char *audience)
{
	struct db_result *res = NULL;
	const char *params[3];
	char idbuf[24], rulebuf[24], clip[AUDIT_FIELD_MAX], text[512];
	char *details = NULL;
	json_t *d;
	int won;

	d = json_pack("{s:I, s:s, s:I, s:I, s:I, s:s?}", "rule", (json_int_t)r->id,
	    "kind", kind_names[r->kind], "threshold", (json_int_t)r->threshold,
	    "window_seconds", (json_int_t)r->window, "observed",
	    (json_int_t)observed, "audience", audience != NULL ?
	    audit_clip(audience, clip, sizeof(clip)) : NULL);
	details = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	if (details == NULL)
		return 0;
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)c->agent_id);
	snprintf(rulebuf, sizeof(rulebuf), "%lld", (long long)r->id);
	params[0] = idbuf;
	params[1] = rulebuf;
	params[2] = details;
	if (db_exec(&suspend_agent, params, &res) != CS_OK) {
		log_warn("tripwire %lld fired for agent %s but the suspension "
		    "could not be written", (long long)r->id, c->name);
		db_result_free(res);
		free(details);
		return 0;
	}
	won = db_nrows(res) == 1;
	if (won) {
		log_fields(LOG_LEVEL_WARN, "agent suspended by tripwire",
		    json_pack("{s:s, s:I, s:s}", "agent", c->name, "rule",
		    (json_int_t)r->id, "kind", kind_names[r->kind]));
		snprintf(text, sizeof(text), "Agent %s was suspended by tripwire "
		    "%lld (%s: %lld observed, threshold %lld). Its tokens were "
		    "revoked; resume it with: countersign agent resume %s",
		    c->name, (long long)r->id, kind_names[r->kind],
		    (long long)observed, (long long)r->threshold, c->name);
		notify_event("agent.suspended", text, json_pack(
		    "{s:s, s:I, s:s, s:I, s:I, s:I, s:s?}", "agent", c->name,
		    "rule", (json_int_t)r->id, "kind", kind_names[r->kind],
		    "threshold", (json_int_t)r->threshold, "window_seconds",
		    (json_int_t)r->window, "observed", (json_int_t)observed,
		    "audience", audience != NULL ? clip : NULL));
	}
	db_result_free(res);
	free(details);
	/* Lost the race: someone disabled or suspended it first. */
	return 1;
}

/* Count for rule r with st (params: agent id, window, agent name). */
static int
count(const struct db_stmt *st, const struct client *c,
    const struct rule *r, int64_t *out)
{
	struct db_result *res = NULL;
	const char *params[3];
	char idbuf[24], winbuf[24];
	int rc = -1;

	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)c->agent_id);
	snprintf(winbuf, sizeof(winbuf), "%lld", (long long)r->window);
	params[0] = idbuf;
	params[1] = winbuf;
	params[2] = c->name;
	if (db_exec(st, params, &res) == CS_OK && db_nrows(res) == 1 &&
	    util_parse_int64(db_value(res, 0, 0), 0, INT64_MAX, out) == 0)
		rc = 0;
	else
		log_warn("tripwire %lld could not count", (long long)r->id);
	db_result_free(res);
	return rc;
}

int
tripwire_before_write_request(const struct client *c)
{
	struct rule r[16];
	size_t n = applicable(K_WRITE_REQUESTS, c->agent_id, r, 16), i;
	int64_t got;

	/* This request would be one more: fire when it exceeds the threshold. */
	for (i = 0; i < n; i++)
		if (count(&count_write_requests, c, &r[i], &got) == 0 &&
		    got + 1 > r[i].threshold)
			return fire(c, &r[i], got + 1, NULL);
	return 0;
}

int
tripwire_after_denial(const struct client *c)
{
	struct rule r[16];
	size_t n = applicable(K_DENIALS, c->agent_id, r, 16), i;
	int64_t got;

	for (i = 0; i < n; i++)
		if (count(&count_denials, c, &r[i], &got) == 0 &&
		    got > r[i].threshold)
			return fire(c, &r[i], got, NULL);
	return 0;
}

int
tripwire_check_audience(const struct client *c, const char *audience)
{
	struct rule r[16];
	struct db_result *res = NULL;
	const char *params[3];
	char key[CACHE_KEY_MAX], idbuf[24], one = 1;
	size_t n;
	int known, history, fired = 0;

	n = applicable(K_NEW_AUDIENCE, c->agent_id, r, 16);
	if (n == 0)
		return 0;
	snprintf(key, sizeof(key), "%lld %.300s", (long long)c->agent_id,
	    audience);
	if (cache_get(seen, key, &one))
		return 0;
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)c->agent_id);
	params[0] = idbuf;
	params[1] = audience;
	params[2] = c->name;
	if (db_exec(&audience_known, params, &res) != CS_OK ||
	    db_nrows(res) != 1) {
		log_warn("tripwire could not check the audience");
		db_result_free(res);
		return 0;
	}
	known = strcmp(db_value(res, 0, 0), "t") == 0;
	history = strcmp(db_value(res, 0, 1), "t") == 0;
	db_result_free(res);
	if (known)
		cache_put(seen, key, &one);
	else if (history)
		fired = fire(c, &r[0], 1, audience);
	return fired;
}

enum cs_err
tripwire_add(const char *kind, int64_t threshold, int64_t window,
    const char *agent, const char *actor, int64_t *id, struct cs_error *err)
{
	struct db_result *res = NULL;
	const char *params[5];
	char tbuf[24], wbuf[24];
	enum kind k;
	enum cs_err rc;

	*id = 0;
	if (kind == NULL || kind_parse(kind, &k) != 0)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "the kind must "
		    "be write_requests, new_audience or denials");
	if (threshold < 0 || threshold > INT32_MAX)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "the threshold must be a number of events, 0 or more");
	if (k != K_NEW_AUDIENCE && (window < 1 || window > TRIPWIRE_WINDOW_MAX))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "%s needs a "
		    "window of 1 second to 30 days", kind);
	if (k == K_NEW_AUDIENCE && (threshold != 0 || window != 0))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "new_audience "
		    "takes neither a threshold nor a window");
	snprintf(tbuf, sizeof(tbuf), "%lld", (long long)threshold);
	snprintf(wbuf, sizeof(wbuf), "%lld", (long long)window);
	params[0] = kind;
	params[1] = tbuf;
	params[2] = wbuf;
	params[3] = agent;
	params[4] = actor;
	rc = db_exec(&insert_rule, params, &res);
	if (rc != CS_OK) {
		rc = cs_error_set(err, rc, "database error");
		goto out;
	}
	if (db_nrows(res) != 1) {
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no agent named '%s'",
		    agent != NULL ? agent : "");
		goto out;
	}
	/* The subject is "tripwire:ID". */
	if (util_parse_int64(db_value(res, 0, 0) + 9, 1, INT64_MAX, id) != 0)
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
out:
	db_result_free(res);
	return rc;
}

enum cs_err
tripwire_remove(int64_t id, const char *actor, struct cs_error *err)
{
	struct db_result *res = NULL;
	const char *params[2];
	char idbuf[24];
	enum cs_err rc;

	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	params[0] = idbuf;
	params[1] = actor;
	rc = db_exec(&remove_rule, params, &res);
	if (rc != CS_OK)
		rc = cs_error_set(err, rc, "database error");
	else if (db_nrows(res) != 1)
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no tripwire %lld",
		    (long long)id);
	db_result_free(res);
	return rc;
}

enum cs_err
tripwire_list(json_t **out)
{
	return db_exec_json(&list_rules, NULL, out);
}

enum cs_err
tripwire_resume(const char *agent, const char *actor, struct cs_error *err)
{
	struct db_result *res = NULL;
	const char *params[2] = { agent, actor };
	enum cs_err rc;

	rc = db_exec(&resume_agent, params, &res);
	if (rc != CS_OK) {
		rc = cs_error_set(err, rc, "database error");
		goto out;
	}
	if (db_nrows(res) == 1)
		goto out;
	db_result_free(res);
	res = NULL;
	rc = db_exec(&agent_state, params, &res);
	if (rc != CS_OK)
		rc = cs_error_set(err, rc, "database error");
	else if (db_nrows(res) == 0)
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no agent named '%s'",
		    agent);
	else if (strcmp(db_value(res, 0, 0), "t") == 0)
		rc = cs_error_set(err, CS_ERR_CONFLICT, "agent '%s' was disabled "
		    "by an operator, not suspended by a tripwire", agent);
	else
		rc = cs_error_set(err, CS_ERR_CONFLICT, "agent '%s' is not "
		    "suspended", agent);
out:
	db_result_free(res);
	return rc;
}
