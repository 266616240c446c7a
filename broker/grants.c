/*
 * grants.c: see grants.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "db.h"
#include "grants.h"
#include "util.h"

static const struct db_stmt resolve = {
	"grants_resolve",
	"SELECT s.name IS NOT NULL, coalesce(s.kind, 'write'), "
	"coalesce(s.max_ttl_seconds, 0), g.id IS NOT NULL, "
	"coalesce(g.max_ttl_seconds, 0) "
	"FROM unnest($2::text[]) WITH ORDINALITY AS r(scope, ord) "
	"LEFT JOIN scopes s ON s.name = r.scope "
	"LEFT JOIN grants g ON g.scope = r.scope AND g.agent_id = $1 "
	"AND g.audience = $3 AND g.revoked_at IS NULL "
	"AND (g.expires_at IS NULL OR g.expires_at > now()) "
	"ORDER BY r.ord",
	3
};

static const struct db_stmt scope_insert = {
	"grants_scope_insert",
	"WITH s AS (INSERT INTO scopes (name, kind, max_ttl_seconds, "
	"approvals_required, approver_group, owner_may_approve, max_uses, "
	"require_dpop) "
	"VALUES ($1, $2, nullif($3::int, 0), $5::int, $6, $7::bool, "
	"nullif($8::int, 0), $9::bool) RETURNING *) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'scope.created', $4, 'scope:' || s.name, "
	"jsonb_build_object('kind', s.kind, 'max_ttl', s.max_ttl_seconds, "
	"'approvals', s.approvals_required, 'approver_group', s.approver_group, "
	"'owner_may_approve', s.owner_may_approve, 'max_uses', s.max_uses, "
	"'require_dpop', coalesce(s.require_dpop, s.kind <> 'read')) "
	"FROM s RETURNING seq",
	9
};

static const struct db_stmt scope_list = {
	"grants_scope_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, "
	"'kind', kind, 'max_ttl', max_ttl_seconds, 'approvals', "
	"CASE WHEN kind = 'write' THEN approvals_required END, "
	"'approver_group', approver_group, 'owner_may_approve', "
	"CASE WHEN kind = 'write' THEN owner_may_approve END, "
	"'max_uses', max_uses, 'require_dpop', "
	"coalesce(require_dpop, kind <> 'read')) ORDER BY name), "
	"'[]'::jsonb)::text FROM scopes",
	0
};

static const struct db_stmt write_policy = {
	"grants_write_policy",
	"SELECT coalesce(max(approvals_required), 0), "
	"coalesce(min(max_uses), 0) FROM scopes "
	"WHERE name = ANY($1::text[]) AND kind <> 'read'",
	1
};

/*
 * The grant is only inserted when the agent and scope exist, and the
 * statement reports which of them was missing.
 */
static const struct db_stmt grant_insert = {
	"grants_insert",
	"WITH a AS (SELECT id FROM agents WHERE name = $1), "
	"s AS (SELECT name FROM scopes WHERE name = $2), "
	"g AS (INSERT INTO grants (agent_id, scope, audience, max_ttl_seconds, "
	"expires_at) SELECT a.id, s.name, $3, nullif($4::int, 0), "
	"CASE WHEN $5::bigint = 0 THEN NULL ELSE to_timestamp($5::bigint) END "
	"FROM a, s RETURNING id), "
	"e AS (INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'grant.created', $6, 'agent:' || $1, jsonb_build_object("
	"'grant_id', g.id, 'scope', $2::text, 'audience', $3::text, "
	"'max_ttl', nullif($4::int, 0), 'expires_at', "
	"CASE WHEN $5::bigint = 0 THEN NULL ELSE to_timestamp($5::bigint) END) "
	"FROM g RETURNING seq) "
	"SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM s), "
	"(SELECT id FROM g), (SELECT count(*) FROM e)",
	6
};

static const struct db_stmt grant_revoke = {
	"grants_revoke",
	"WITH g AS (UPDATE grants SET revoked_at = now() "
	"WHERE revoked_at IS NULL AND ((id = $1::bigint AND $1::bigint > 0) OR "
	"($1::bigint = 0 AND agent_id = (SELECT id FROM agents WHERE name = $2) "
	"AND scope = $3 AND audience = $4)) RETURNING id, agent_id, scope, audience) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'grant.revoked', $5, 'agent:' || a.name, jsonb_build_object("
	"'grant_id', g.id, 'scope', g.scope, 'audience', g.audience) "
	"FROM g JOIN agents a ON a.id = g.agent_id RETURNING seq",
	5
};

static const struct db_stmt grant_list = {
	"grants_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('id', g.id, "
	"'agent', a.name, 'scope', g.scope, 'audience', g.audience, "
	"'max_ttl', g.max_ttl_seconds, 'expires_at', g.expires_at, "
	"'created_at', g.created_at, 'revoked_at', g.revoked_at, "
	"'live', g.revoked_at IS NULL AND (g.expires_at IS NULL OR "
	"g.expires_at > now())) ORDER BY g.id), '[]'::jsonb)::text "
	"FROM grants g JOIN agents a ON a.id = g.agent_id "
	"WHERE $1::text IS NULL OR a.name = $1",
	1
};

/* A resolution as cached: grant_set without the borrowed names. */
struct cached_set {
	size_t n;
	struct {
		int known, granted;
		enum scope_kind kind;
		int64_t scope_max_ttl, grant_max_ttl;
	} s[CS_SCOPES_MAX];
};

static struct cache *resolve_cache;

int
grants_cache_init(int ttl_ms)
{
	if (ttl_ms <= 0)
		return 0;
	resolve_cache = cache_new(4096, sizeof(struct cached_set), ttl_ms);
	return resolve_cache != NULL ? 0 : -1;
}

void
grants_cache_free(void)
{
	cache_free(resolve_cache);
	resolve_cache = NULL;
}

enum scope_kind
grants_kind_from_text(const char *kind)
{
	return kind != NULL && strcmp(kind, "read") == 0 ? SCOPE_READ :
	    SCOPE_WRITE;
}

enum cs_err
grants_resolve(int64_t agent_id, const char *audience,
    const struct scope_list *req, struct grant_set *out)
{
	const char *params[3];
	char idbuf[24], *arr = NULL;
	struct db_result *res = NULL;
	enum cs_err rc;
	size_t i;

	memset(out, 0, sizeof(*out));
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)agent_id);
	arr = db_text_array((const char *const *)req->items, req->n);
	if (arr == NULL)
		return CS_ERR_INTERNAL;
	params[0] = idbuf;
	params[1] = arr;
	params[2] = audience;
	rc = db_exec(&resolve, params, &res);
	if (rc != CS_OK)
		goto out;
	if ((size_t)db_nrows(res) != req->n) {
		rc = CS_ERR_INTERNAL;
		goto out;
	}
	for (i = 0; i < req->n; i++) {
		struct grant_scope *g = &out->s[i];

		g->name = req->items[i];
		g->known = strcmp(db_value(res, (int)i, 0), "t") == 0;
		/* Anything but a known read scope is handled as a write. */
		g->kind = g->known ? grants_kind_from_text(db_value(res, (int)i, 1)) :
		    SCOPE_WRITE;
		g->granted = strcmp(db_value(res, (int)i, 3), "t") == 0;
		if (util_parse_int64(db_value(res, (int)i, 2), 0, INT64_MAX,
		    &g->scope_max_ttl) != 0 ||
		    util_parse_int64(db_value(res, (int)i, 4), 0, INT64_MAX,
		    &g->grant_max_ttl) != 0) {
			rc = CS_ERR_INTERNAL;
			goto out;
		}
	}
	out->n = req->n;
out:
	free(arr);
	db_result_free(res);
	return rc;
}

/* The cache key of a resolution; -1 if it does not fit. */
static int
resolve_key(int64_t agent_id, const char *audience,
    const struct scope_list *req, char *key, size_t cap)
{
	char *joined = scopes_join(req);
	int n;

	if (joined == NULL)
		return -1;
	n = snprintf(key, cap, "%lld|%s|%s", (long long)agent_id, audience,
	    joined);
	free(joined);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

void
grants_cache_forget(int64_t agent_id, const char *audience,
    const struct scope_list *req)
{
	char key[CACHE_KEY_MAX];

	if (resolve_key(agent_id, audience, req, key, sizeof(key)) == 0)
		cache_remove(resolve_cache, key);
}

enum cs_err
grants_resolve_cached(int64_t agent_id, const char *audience,
    const struct scope_list *req, struct grant_set *out)
{
	struct cached_set cs;
	char key[CACHE_KEY_MAX];
	enum cs_err rc;
	size_t i;

	if (resolve_key(agent_id, audience, req, key, sizeof(key)) != 0)
		return grants_resolve(agent_id, audience, req, out);
	if (resolve_cache != NULL && cache_get(resolve_cache, key, &cs) &&
	    cs.n == req->n) {
		memset(out, 0, sizeof(*out));
		for (i = 0; i < cs.n; i++) {
			out->s[i].name = req->items[i];
			out->s[i].known = cs.s[i].known;
			out->s[i].granted = cs.s[i].granted;
			out->s[i].kind = cs.s[i].kind;
			out->s[i].scope_max_ttl = cs.s[i].scope_max_ttl;
			out->s[i].grant_max_ttl = cs.s[i].grant_max_ttl;
		}
		out->n = cs.n;
		return CS_OK;
	}
	rc = grants_resolve(agent_id, audience, req, out);
	if (rc != CS_OK || resolve_cache == NULL)
		return rc;
	memset(&cs, 0, sizeof(cs));
	for (i = 0; i < out->n; i++) {
		cs.s[i].known = out->s[i].known;
		cs.s[i].granted = out->s[i].granted;
		cs.s[i].kind = out->s[i].kind;
		cs.s[i].scope_max_ttl = out->s[i].scope_max_ttl;
		cs.s[i].grant_max_ttl = out->s[i].grant_max_ttl;
	}
	cs.n = out->n;
	cache_put(resolve_cache, key, &cs);
	return CS_OK;
}

enum cs_err
grants_scope_add(const struct scope_policy *p, const char *actor,
    struct cs_error *err)
{
	const char *params[9];
	char ttl[24], appr[24], uses[24];
	int write;
	enum cs_err rc;

	if (!scopes_valid_token(p->name))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "scope names are 1-128 characters of RFC 6749 scope-token "
		    "syntax (no spaces, quotes or backslashes)");
	if (p->kind == NULL || (strcmp(p->kind, "read") != 0 &&
	    strcmp(p->kind, "write") != 0))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "--kind must be read or write");
	write = strcmp(p->kind, "write") == 0;
	if (!write && (p->approvals_required > 1 || p->approver_group != NULL ||
	    p->owner_may_approve || p->max_uses > 0))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "approval and use limits apply to write scopes only");
	if (p->approvals_required < 1 || p->approvals_required > 10)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "--approvals must be between 1 and 10");
	if (p->approver_group != NULL && !util_valid_name(p->approver_group))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "--approver-group must be 1-64 characters of [A-Za-z0-9._-]");
	if (p->max_uses < 0 || p->max_uses > 1000000)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "--uses must be between 1 and 1000000");
	snprintf(ttl, sizeof(ttl), "%lld", (long long)p->max_ttl);
	snprintf(appr, sizeof(appr), "%d", p->approvals_required);
	snprintf(uses, sizeof(uses), "%lld",
	    (long long)(write && p->max_uses == 0 ? 1 : p->max_uses));
	params[0] = p->name;
	params[1] = p->kind;
	params[2] = ttl;
	params[3] = actor;
	params[4] = appr;
	params[5] = p->approver_group;
	params[6] = p->owner_may_approve ? "true" : "false";
	params[7] = uses;
	/* NULL keeps the default: DPoP required for write scopes. */
	params[8] = p->require_dpop < 0 ? NULL :
	    p->require_dpop ? "true" : "false";
	rc = db_exec(&scope_insert, params, NULL);
	if (rc == CS_ERR_CONFLICT)
		return cs_error_set(err, rc, "scope '%s' already exists", p->name);
	if (rc != CS_OK)
		return cs_error_set(err, rc, "database error");
	return CS_OK;
}

enum cs_err
grants_write_policy(const struct scope_list *scopes, int *required,
    int64_t *max_uses)
{
	const char *params[1];
	struct db_result *res = NULL;
	char *arr;
	int64_t req = 0;
	enum cs_err rc;

	*required = 0;
	*max_uses = 0;
	arr = db_text_array((const char *const *)scopes->items, scopes->n);
	if (arr == NULL)
		return CS_ERR_INTERNAL;
	params[0] = arr;
	rc = db_exec(&write_policy, params, &res);
	if (rc == CS_OK && (util_parse_int64(db_value(res, 0, 0), 0, 100, &req) != 0 ||
	    util_parse_int64(db_value(res, 0, 1), 0, INT64_MAX, max_uses) != 0))
		rc = CS_ERR_INTERNAL;
	*required = (int)req;
	db_result_free(res);
	free(arr);
	return rc;
}

enum cs_err
grants_scope_list(json_t **out)
{
	return db_exec_json(&scope_list, NULL, out);
}

enum cs_err
grants_add(const char *agent, const char *scope, const char *audience,
    int64_t max_ttl, int64_t expires_at, const char *actor, int64_t *id,
    struct cs_error *err)
{
	const char *params[6];
	char ttl[24], exp[24];
	struct db_result *res = NULL;
	enum cs_err rc;
	size_t i;

	if (audience == NULL || audience[0] == '\0' || strlen(audience) > 256)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "--audience must be 1-256 characters");
	for (i = 0; audience[i] != '\0'; i++)
		if ((unsigned char)audience[i] <= 0x20 ||
		    (unsigned char)audience[i] >= 0x7f)
			return cs_error_set(err, CS_ERR_INVALID_REQUEST,
			    "--audience must be printable ASCII without spaces");
	if (expires_at != 0 && expires_at <= util_now())
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "--expires-at is in the past");
	snprintf(ttl, sizeof(ttl), "%lld", (long long)max_ttl);
	snprintf(exp, sizeof(exp), "%lld", (long long)expires_at);
	params[0] = agent;
	params[1] = scope;
	params[2] = audience;
	params[3] = ttl;
	params[4] = exp;
	params[5] = actor;
	rc = db_exec(&grant_insert, params, &res);
	if (rc == CS_ERR_CONFLICT) {
		cs_error_set(err, rc, "agent '%s' already has a live grant of "
		    "'%s' for '%s'", agent, scope, audience);
		goto out;
	}
	if (rc != CS_OK) {
		cs_error_set(err, rc, "database error");
		goto out;
	}
	if (strcmp(db_value(res, 0, 0), "0") == 0) {
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no agent named '%s'",
		    agent);
		goto out;
	}
	if (strcmp(db_value(res, 0, 1), "0") == 0) {
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no scope named '%s' "
		    "(add it with: countersign scope add)", scope);
		goto out;
	}
	if (util_parse_int64(db_value(res, 0, 2), 1, INT64_MAX, id) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "grant not created");
		goto out;
	}
out:
	db_result_free(res);
	return rc;
}

enum cs_err
grants_revoke(int64_t id, const char *agent, const char *scope,
    const char *audience, const char *actor, struct cs_error *err)
{
	const char *params[5];
	char idbuf[24];
	struct db_result *res = NULL;
	enum cs_err rc;

	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	params[0] = idbuf;
	params[1] = agent;
	params[2] = scope;
	params[3] = audience;
	params[4] = actor;
	rc = db_exec(&grant_revoke, params, &res);
	if (rc != CS_OK)
		cs_error_set(err, rc, "database error");
	else if (db_nrows(res) == 0)
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no live grant matches");
	db_result_free(res);
	return rc;
}

enum cs_err
grants_list(const char *agent, json_t **out)
{
	const char *params[1] = { agent };

	return db_exec_json(&grant_list, params, out);
}
