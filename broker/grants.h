/*
 * grants.h: the scope catalogue and the grants that say which agent may
 * obtain which scope for which audience, and for how long.
 */
#ifndef GRANTS_H
#define GRANTS_H

#include <stdint.h>
#include <jansson.h>

#include "countersign.h"
#include "scopes.h"

/*
 * struct grant_set, what grants_resolve answers, is declared in scopes.h
 * next to the pure decisions made over it, so they can be unit tested
 * without a database.
 */

/*
 * grants_resolve(agent_id, audience, req, out): look up every scope of req
 * for this agent and audience in one query. out->s[i] describes
 * req->items[i]. Returns CS_OK or a database error.
 */
enum cs_err grants_resolve(int64_t agent_id, const char *audience,
    const struct scope_list *req, struct grant_set *out);

/*
 * grants_resolve_cached(agent_id, audience, req, out): grants_resolve
 * through a short-lived cache (grants_cache_init). Only for the read path,
 * whose token insert re-checks every grant in the database: a stale entry
 * can refuse a just-added grant for a moment, never honour a revoked one.
 */
enum cs_err grants_resolve_cached(int64_t agent_id, const char *audience,
    const struct scope_list *req, struct grant_set *out);

/* grants_cache_forget(agent_id, audience, req): drop one cached entry. */
void grants_cache_forget(int64_t agent_id, const char *audience,
    const struct scope_list *req);

/* grants_cache_init(ttl_ms) / grants_cache_free(): 0 disables the cache. */
int grants_cache_init(int ttl_ms);
void grants_cache_free(void);

/* grants_kind_from_text(kind): SCOPE_READ only for exactly "read". */
enum scope_kind grants_kind_from_text(const char *kind);

/* A scope's definition and, for write scopes, its approval policy. */
struct scope_policy {
	const char *name;
	const char *kind;		/* "read" or "write" */
	int64_t max_ttl;		/* 0: none */
	int approvals_required;		/* distinct approvers, >= 1 */
	const char *approver_group;	/* NULL: any approver */
	int owner_may_approve;
	int64_t max_uses;		/* 0: unlimited (read) / 1 (write default) */
	int require_dpop;		/* -1: default (write scopes), 0: off, 1: on */
};

/*
 * grants_scope_add(p, actor, err): add a scope to the catalogue and audit
 * scope.created. Approval settings are refused on read scopes. A write
 * scope without max_uses gets 1 (single-use tokens). CS_ERR_CONFLICT if
 * the scope exists.
 */
enum cs_err grants_scope_add(const struct scope_policy *p, const char *actor,
    struct cs_error *err);

/*
 * grants_write_policy(scopes, required, max_uses): over the write scopes
 * among scopes, the largest approvals_required (0 if there is no write
 * scope) and the smallest max_uses (0: unlimited). One query.
 */
enum cs_err grants_write_policy(const struct scope_list *scopes,
    int *required, int64_t *max_uses);

/* grants_scope_list(out): a new JSON array of the catalogue. */
enum cs_err grants_scope_list(json_t **out);

/*
 * grants_add(agent, scope, audience, max_ttl, expires_at, actor, id, err):
 * grant a known scope to a known agent for one audience (max_ttl 0: none;
 * expires_at 0: never, else must be in the future) and audit grant.created.
 * *id receives the grant id. CS_ERR_CONFLICT if a live grant exists.
 */
enum cs_err grants_add(const char *agent, const char *scope,
    const char *audience, int64_t max_ttl, int64_t expires_at,
    const char *actor, int64_t *id, struct cs_error *err);

/*
 * grants_revoke(id, agent, scope, audience, actor, err): revoke the live
 * grant with that id (id > 0), or the live grant for (agent, scope,
 * audience), and audit grant.revoked. CS_ERR_NOT_FOUND if none matches.
 */
enum cs_err grants_revoke(int64_t id, const char *agent, const char *scope,
    const char *audience, const char *actor, struct cs_error *err);

/* grants_list(agent, out): a new JSON array of grants (agent may be NULL). */
enum cs_err grants_list(const char *agent, json_t **out);

#endif
