/*
 * exchange.c: see exchange.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "db.h"
#include "exchange.h"
#include "grants.h"
#include "jose.h"
#include "keys.h"
#include "metrics.h"
#include "scopes.h"
#include "util.h"
#include "verify_internal.h"

/*
 * What the database knows of the subject token and its agents. Its claims
 * prove it was minted by us; only its row says whether it is still live.
 */
static const struct db_stmt subject_row = {
	"exchange_subject",
	"SELECT t.agent_id, a.name, t.approval_id IS NOT NULL, "
	"t.revoked_at IS NOT NULL, t.expires_at <= now(), "
	"a.disabled_at IS NOT NULL, "
	"(t.max_uses IS NOT NULL AND t.use_count >= t.max_uses), "
	"coalesce(x.disabled_at IS NOT NULL, false), "
	"(SELECT c.disabled_at IS NOT NULL FROM agents c WHERE c.id = $2) "
	"FROM tokens t JOIN agents a ON a.id = t.agent_id "
	"LEFT JOIN agents x ON x.id = t.actor_agent_id WHERE t.jti = $1",
	2
};

static const struct db_stmt actor_row = {
	"exchange_actor",
	"SELECT id, disabled_at IS NOT NULL FROM agents WHERE name = $1",
	1
};

/*
 * Insert the exchanged token and its token.exchanged event in one
 * statement, only if, in this snapshot, the subject token is still live
 * and covers the new scopes and audience, no agent involved (subject,
 * caller, actor, and the subject's own actor) is disabled or suspended,
 * the caller still has the secret it authenticated with ($15), every scope
 * is a read scope and every grant of the subject agent is live. Zero rows back: nothing written. The subject's row is held FOR
 * SHARE until the child is committed, so a revocation of the subject
 * either comes first (and this statement, re-checking the row it waited
 * for, sees it revoked) or waits and then finds the child to revoke with
 * it (tokens.c, revoke_cascade).
 */
static const struct db_stmt insert_exchanged = {
	"exchange_insert",
	"WITH ok AS (SELECT 1 FROM tokens s JOIN agents a ON a.id = s.agent_id "
	"WHERE s.jti = $9 AND s.agent_id = $1 AND s.revoked_at IS NULL "
	"AND s.expires_at > now() AND s.approval_id IS NULL "
	"AND (s.max_uses IS NULL OR s.use_count < s.max_uses) "
	"AND a.disabled_at IS NULL AND s.scopes @> $3::text[] "
	"AND s.audience = $4 "
	"AND NOT EXISTS (SELECT 1 FROM agents x WHERE x.disabled_at IS NOT NULL "
	"AND x.id IN ($10::bigint, $11::bigint, s.actor_agent_id)) "
	"AND ($15 = '' OR EXISTS (SELECT 1 FROM agents c WHERE c.id = $10::bigint "
	"AND c.secret_hash = decode($15, 'hex'))) "
	"AND (SELECT count(*) FROM grants g WHERE g.agent_id = $1 "
	"AND g.audience = $4 AND g.scope = ANY($3::text[]) "
	"AND g.revoked_at IS NULL "
	"AND (g.expires_at IS NULL OR g.expires_at > now())) "
	"= cardinality($3::text[]) "
	"AND (SELECT count(*) FROM scopes sc WHERE sc.name = ANY($3::text[]) "
	"AND sc.kind = 'read') = cardinality($3::text[]) FOR SHARE OF s), "
	"t AS (INSERT INTO tokens (jti, agent_id, client_id, scopes, audience, "
	"kid, issued_at, expires_at, subject_jti, actor_agent_id) "
	"SELECT $2, $1, $5, $3::text[], $4, $6, to_timestamp($7::bigint), "
	"to_timestamp($8::bigint), $9, $11::bigint FROM ok RETURNING jti) "
	"INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.exchanged', 'agent:' || $12, 'agent:' || $13, t.jti, "
	"$14::jsonb FROM t RETURNING seq",
	15
};

/* Everything one exchange works with; freed by state_clear. */
struct state {
	struct cs_claims c;		/* the subject token's claims */
	json_t *claims;			/* the same, parsed */
	struct scope_list scopes;	/* the new token's */
	struct scope_list subject_scopes;
	char *subject_jti;		/* for the audit, once verified */
	int64_t subject_agent_id;
	char subject_agent[CS_NAME_MAX + 1];
	int64_t actor_id;
	const char *actor;		/* the acting agent's name */
	const char *audience;
	json_t *act;			/* the new act claim */
};

static void
state_clear(struct state *s)
{
	cs_claims_clear(&s->c);
	json_decref(s->claims);
	json_decref(s->act);
	scopes_clear(&s->scopes);
	scopes_clear(&s->subject_scopes);
	free(s->subject_jti);
}

/*
 * Record a refusal as token.denied (grant "token-exchange") and build the
 * error the client sees. The subject token itself is never recorded, only
 * its jti once its signature has been checked.
 */
static enum cs_err
refuse(const struct exchange_request *req, const struct state *s,
    const char *reason, enum cs_err code, struct cs_error *err,
    const char *msg)
{
	char actor[CS_NAME_MAX + 8], clip[AUDIT_FIELD_MAX];
	char sclip[AUDIT_FIELD_MAX], aclip[AUDIT_FIELD_MAX];
	json_t *d;
	enum cs_err rc;

	snprintf(actor, sizeof(actor), "agent:%s", req->client->name);
	d = json_pack("{s:s, s:s, s:s?, s:s?, s:s?}", "grant", "token-exchange",
	    "reason", reason,
	    "scope", req->scope != NULL ? audit_clip(req->scope, sclip,
	    sizeof(sclip)) : NULL,
	    "audience", s->audience != NULL ? audit_clip(s->audience, clip,
	    sizeof(clip)) : NULL,
	    "actor", req->actor != NULL ? audit_clip(req->actor, aclip,
	    sizeof(aclip)) : NULL);
	if (d != NULL && s->subject_jti != NULL)
		json_object_set_new(d, "subject_jti",
		    json_string(s->subject_jti));
	rc = audit_append("token.denied", actor, actor, s->subject_jti, d);
	json_decref(d);
	metrics_denied(reason);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
	return cs_error_set(err, code, "%s", msg);
}

/* The audience asked for: resource and audience must agree if both set. */
static enum cs_err
check_target(const struct exchange_request *req, struct state *s,
    struct cs_error *err)
{
	const char *want = req->resource != NULL ? req->resource : req->audience;

	if (req->n_resource > 1 || req->n_audience > 1)
		return refuse(req, s, "several_audiences", CS_ERR_INVALID_TARGET,
		    err, "one resource per token");
	if (req->resource != NULL && req->audience != NULL &&
	    strcmp(req->resource, req->audience) != 0)
		return refuse(req, s, "resource_audience_differ",
		    CS_ERR_INVALID_TARGET, err, "resource and audience name "
		    "different targets");
	if (want != NULL && strcmp(want, s->c.aud) != 0) {
		s->audience = want;
		return refuse(req, s, "audience_widened", CS_ERR_INVALID_TARGET,
		    err, "the token can only be exchanged for its own audience"
		    "");
	}
	s->audience = s->c.aud;
	return CS_OK;
}

/*
 * Whether the caller may exchange the subject, and who acts with the new
 * token. Fills s->actor, s->actor_id and s->act.
 */
static enum cs_err
check_parties(const struct exchange_request *req, struct state *s,
    struct cs_error *err)
{
	const struct client *me = req->client;
	json_t *prev = json_object_get(s->claims, "act"), *p;
	const char *prev_actor = NULL, *params[1];
	struct db_result *res = NULL;
	int owner, delegate, depth = 0;
	enum cs_err rc;

	if (prev != NULL) {
		if (!json_is_object(prev) || !json_is_string(json_object_get(prev,
		    "sub")))
			return refuse(req, s, "subject_malformed_act",
			    CS_ERR_INVALID_REQUEST, err, "subject_token has a "
			    "malformed act claim");
		prev_actor = json_string_value(json_object_get(prev, "sub"));
		for (p = prev; json_is_object(p); p = json_object_get(p, "act"))
			depth++;
	}
	owner = strcmp(s->c.client_id, me->client_id) == 0;
	delegate = prev_actor != NULL && strcmp(prev_actor, me->name) == 0;
	if (!owner && !delegate)
		return refuse(req, s, "subject_foreign", CS_ERR_INVALID_REQUEST,
		    err, "subject_token was neither issued to nor delegated to "
		    "this client");
	s->actor = req->actor != NULL ? req->actor : me->name;
	if (!util_valid_name(s->actor))
		return refuse(req, s, "actor_invalid", CS_ERR_INVALID_REQUEST, err,
		    "actor must be the name of an agent");
	params[0] = s->actor;
	rc = db_exec(&actor_row, params, &res);
	if (rc != CS_OK) {
		db_result_free(res);
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check the actor right now");
	}
	if (db_nrows(res) != 1 || strcmp(db_value(res, 0, 1), "t") == 0 ||
	    util_parse_int64(db_value(res, 0, 0), 1, INT64_MAX,
	    &s->actor_id) != 0) {
		db_result_free(res);
		return refuse(req, s, "actor_unknown_or_disabled",
		    CS_ERR_INVALID_REQUEST, err, "actor is not an enabled agent");
	}
	db_result_free(res);
	/*
	 * The act claim names the current actor first and nests the earlier
	 * ones (RFC 8693 §4.1). An agent narrowing a token it already acts
	 * with does not add itself again.
	 */
	if (prev_actor != NULL && strcmp(prev_actor, s->actor) == 0) {
		s->act = json_deep_copy(prev);
	} else {
		if (depth >= EXCHANGE_MAX_DEPTH)
			return refuse(req, s, "delegation_too_deep",
			    CS_ERR_INVALID_REQUEST, err, "the delegation chain "
			    "is too long");
		s->act = json_pack("{s:s}", "sub", s->actor);
		if (s->act != NULL && prev != NULL)
			json_object_set(s->act, "act", prev);
	}
	if (s->act == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "internal error");
	return CS_OK;
}

/* The subject's row: live, not a step-up token, its agents enabled. */
static enum cs_err
check_subject_row(const struct exchange_request *req, struct state *s,
    struct cs_error *err)
{
	struct db_result *res = NULL;
	const char *params[2], *why = NULL;
	char idbuf[24];
	enum cs_err rc;

	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)req->client->agent_id);
	params[0] = s->c.jti;
	params[1] = idbuf;
	rc = db_exec(&subject_row, params, &res);
	if (rc != CS_OK) {
		db_result_free(res);
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check the subject token right now");
	}
	if (db_nrows(res) == 1 && strcmp(db_value(res, 0, 8), "t") == 0) {
		/*
		 * The caller was disabled or suspended after a cached
		 * authentication: answer as authentication would.
		 */
		db_result_free(res);
		rc = agents_recheck(req->client, err);
		return rc != CS_OK ? rc : cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check this client right now");
	}
	if (db_nrows(res) != 1)
		why = "subject_unknown";
	else if (strcmp(db_value(res, 0, 2), "t") == 0)
		why = "subject_stepped_up";
	else if (strcmp(db_value(res, 0, 3), "t") == 0)
		why = "subject_revoked";
	else if (strcmp(db_value(res, 0, 4), "t") == 0)
		why = "subject_expired";
	else if (strcmp(db_value(res, 0, 5), "t") == 0 ||
	    strcmp(db_value(res, 0, 7), "t") == 0)
		why = "subject_agent_disabled";
	else if (strcmp(db_value(res, 0, 6), "t") == 0)
		why = "subject_used_up";
	else if (util_parse_int64(db_value(res, 0, 0), 1, INT64_MAX,
	    &s->subject_agent_id) != 0)
		why = "subject_unknown";
	else
		snprintf(s->subject_agent, sizeof(s->subject_agent), "%s",
		    db_value(res, 0, 1));
	db_result_free(res);
	if (why == NULL)
		return CS_OK;
	if (strcmp(why, "subject_stepped_up") == 0)
		return refuse(req, s, why, CS_ERR_INVALID_REQUEST, err,
		    "a token minted on a human's approval cannot be exchanged: "
		    "ask for a new approval");
	return refuse(req, s, why, CS_ERR_INVALID_REQUEST, err,
	    "subject_token is not active");
}

/*
 * The new scopes: a subset of the subject's, each a read scope still
 * granted to the subject's agent for the audience. Fills the TTL limits.
 */
static enum cs_err
check_scopes(const struct exchange_request *req, struct state *s,
    int64_t *limits, size_t *nl, struct cs_error *err)
{
	struct grant_set gs;
	char msg[sizeof(err->desc)];
	size_t i;

	if (scopes_parse(s->c.scope, &s->subject_scopes, err) != CS_OK)
		return refuse(req, s, "subject_malformed_scope",
		    CS_ERR_INVALID_REQUEST, err, "subject_token has a malformed "
		    "scope");
	if (req->scope == NULL) {
		if (scopes_parse(s->c.scope, &s->scopes, err) != CS_OK)
			return cs_error_set(err, CS_ERR_INTERNAL, "internal error");
	} else if (scopes_parse(req->scope, &s->scopes, err) != CS_OK) {
		snprintf(msg, sizeof(msg), "%s", err->desc);
		return refuse(req, s, "malformed_scope", CS_ERR_INVALID_SCOPE, err,
		    msg);
	}
	for (i = 0; i < s->scopes.n; i++) {
		if (scopes_contains(&s->subject_scopes, s->scopes.items[i]))
			continue;
		snprintf(msg, sizeof(msg), "scope '%s' is not in the subject "
		    "token", s->scopes.items[i]);
		return refuse(req, s, "scope_widened", CS_ERR_INVALID_SCOPE, err,
		    msg);
	}
	if (grants_resolve(s->subject_agent_id, s->audience, &s->scopes,
	    &gs) != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check grants right now");
	*nl = 0;
	for (i = 0; i < gs.n; i++) {
		if (!gs.s[i].known || gs.s[i].kind != SCOPE_READ) {
			snprintf(msg, sizeof(msg), "scope '%s' is a write scope: "
			    "write scopes are never exchanged", gs.s[i].name);
			return refuse(req, s, "write_scope", CS_ERR_INVALID_SCOPE,
			    err, msg);
		}
		if (!gs.s[i].granted) {
			snprintf(msg, sizeof(msg), "scope '%s' is no longer "
			    "granted", gs.s[i].name);
			return refuse(req, s, "not_granted", CS_ERR_INVALID_SCOPE,
			    err, msg);
		}
		limits[(*nl)++] = gs.s[i].scope_max_ttl;
		limits[(*nl)++] = gs.s[i].grant_max_ttl;
	}
	return CS_OK;
}

/* Sign and insert; the caller has checked everything. */
static enum cs_err
mint(const struct broker_config *cfg, const struct exchange_request *req,
    struct state *s, int64_t ttl, struct token_issued *out,
    struct cs_error *err)
{
	struct db_result *res = NULL;
	json_t *c = NULL, *d = NULL;
	char *claims = NULL, *arr = NULL, *details = NULL;
	char kid[JOSE_KID_LEN + 1];
	char idbuf[24], iatbuf[24], expbuf[24], callerbuf[24], actorbuf[24];
	const char *params[15];
	int64_t iat = util_now();
	enum cs_err rc;

	if (util_token_id(out->jti, sizeof(out->jti)) != 0 ||
	    (out->scope = scopes_join(&s->scopes)) == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:O}",
	    "iss", cfg->issuer, "sub", s->c.sub, "client_id", s->c.client_id,
	    "aud", s->audience, "scope", out->scope, "iat", (json_int_t)iat,
	    "nbf", (json_int_t)iat, "exp", (json_int_t)(iat + ttl), "jti",
	    out->jti, "act", s->act);
	claims = c != NULL ? json_dumps(c, JSON_COMPACT) : NULL;
	if (claims == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	if ((rc = tokens_sign(claims, out, kid, sizeof(kid), err)) != CS_OK)
		goto out;
	d = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:O}", "subject_jti",
	    s->c.jti, "scope", out->scope, "audience", s->audience, "ttl",
	    (json_int_t)ttl, "kid", kid, "auth_method", req->client->method,
	    "act", s->act);
	details = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
	arr = db_text_array((const char *const *)s->scopes.items, s->scopes.n);
	if (details == NULL || arr == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)s->subject_agent_id);
	snprintf(iatbuf, sizeof(iatbuf), "%lld", (long long)iat);
	snprintf(expbuf, sizeof(expbuf), "%lld", (long long)(iat + ttl));
	snprintf(callerbuf, sizeof(callerbuf), "%lld",
	    (long long)req->client->agent_id);
	snprintf(actorbuf, sizeof(actorbuf), "%lld", (long long)s->actor_id);
	params[0] = idbuf;
	params[1] = out->jti;
	params[2] = arr;
	params[3] = s->audience;
	params[4] = s->c.client_id;
	params[5] = kid;
	params[6] = iatbuf;
	params[7] = expbuf;
	params[8] = s->c.jti;
	params[9] = callerbuf;
	params[10] = actorbuf;
	params[11] = req->client->name;
	params[12] = s->subject_agent;
	params[13] = details;
	params[14] = req->client->cred;
	rc = db_exec(&insert_exchanged, params, &res);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this token right now");
		goto out;
	}
	if (db_nrows(res) != 1) {
		/*
		 * Something was revoked or disabled since the checks above. If
		 * it is the caller (disabled, or its secret rotated after a
		 * cached authentication), answer as authentication would.
		 */
		if ((rc = agents_recheck(req->client, err)) != CS_OK)
			goto out;
		rc = refuse(req, s, "revoked_during_exchange",
		    CS_ERR_INVALID_REQUEST, err, "subject_token is not active");
		goto out;
	}
	out->expires_in = ttl;
	metrics_inc(METRICS_TOKENS_ISSUED_READ);
	rc = CS_OK;
out:
	if (rc != CS_OK)
		tokens_issued_clear(out);
	json_decref(c);
	json_decref(d);
	free(claims);
	free(arr);
	free(details);
	db_result_free(res);
	return rc;
}

enum cs_err
exchange_token(const struct broker_config *cfg,
    const struct exchange_request *req, struct token_issued *out,
    struct cs_error *err)
{
	struct state s;
	struct keyset *ks = NULL;
	const struct jose_key *const *keys;
	int64_t limits[2 * CS_SCOPES_MAX], requested = 0, remaining, ttl;
	enum cs_verify_result vr;
	enum cs_err rc;
	size_t nkeys, nl = 0;

	memset(&s, 0, sizeof(s));
	memset(out, 0, sizeof(*out));
	if (req->subject_token == NULL || req->subject_token[0] == '\0') {
		rc = refuse(req, &s, "subject_token_missing",
		    CS_ERR_INVALID_REQUEST, err, "subject_token is required");
		goto out;
	}
	if (req->subject_token_type == NULL ||
	    strcmp(req->subject_token_type, EXCHANGE_TYPE_AT) != 0) {
		rc = refuse(req, &s, "subject_token_type", CS_ERR_INVALID_REQUEST,
		    err, "subject_token_type must be " EXCHANGE_TYPE_AT);
		goto out;
	}
	if (req->requested_token_type != NULL &&
	    strcmp(req->requested_token_type, EXCHANGE_TYPE_AT) != 0) {
		rc = refuse(req, &s, "requested_token_type",
		    CS_ERR_INVALID_REQUEST, err, "requested_token_type must be "
		    EXCHANGE_TYPE_AT);
		goto out;
	}
	if (req->actor_token != NULL) {
		rc = refuse(req, &s, "actor_token", CS_ERR_INVALID_REQUEST, err,
		    "actor_token is not supported: name the sub-agent with "
		    "actor");
		goto out;
	}
	if (req->requested_ttl != NULL && util_parse_int64(req->requested_ttl,
	    1, UTIL_DURATION_MAX, &requested) != 0) {
		rc = refuse(req, &s, "malformed_ttl", CS_ERR_INVALID_REQUEST, err,
		    "requested_ttl must be a positive number of seconds");
		goto out;
	}
	/* The same verification as introspection: signature, typ, iss, exp. */
	if (keys_acquire(&ks) != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "signing keys are not available right now");
		goto out;
	}
	keys = keys_verifying(ks, &nkeys);
	vr = verify_with_keys(keys, nkeys, cfg->issuer, NULL, 0, util_now(),
	    req->subject_token, strnlen(req->subject_token, JOSE_MAX_TOKEN + 1),
	    &s.c);
	keys_release(ks);
	if (vr != CS_VERIFY_OK) {
		rc = refuse(req, &s, cs_verify_result_name(vr),
		    CS_ERR_INVALID_REQUEST, err, "subject_token is not active");
		goto out;
	}
	s.subject_jti = strdup(s.c.jti);
	s.claims = json_loads(s.c.json, 0, NULL);
	if (s.subject_jti == NULL || s.claims == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	if (s.c.cnf_jkt != NULL) {
		/* A bearer token must not launder a sender-constrained one. */
		rc = refuse(req, &s, "subject_sender_constrained",
		    CS_ERR_INVALID_REQUEST, err, "a sender-constrained token "
		    "cannot be exchanged");
		goto out;
	}
	if ((rc = check_target(req, &s, err)) != CS_OK ||
	    (rc = check_subject_row(req, &s, err)) != CS_OK ||
	    (rc = check_parties(req, &s, err)) != CS_OK ||
	    (rc = check_scopes(req, &s, limits, &nl, err)) != CS_OK)
		goto out;
	remaining = s.c.exp - util_now();
	if (requested > remaining) {
		rc = refuse(req, &s, "ttl_beyond_subject", CS_ERR_INVALID_REQUEST,
		    err, "requested_ttl reaches past the subject token's "
		    "expiry");
		goto out;
	}
	ttl = tokens_ttl(requested, cfg->default_ttl, cfg->max_ttl, limits, nl);
	if (ttl > remaining)
		ttl = remaining;
	if (ttl < 1) {
		rc = refuse(req, &s, "subject_expired", CS_ERR_INVALID_REQUEST, err,
		    "subject_token is not active");
		goto out;
	}
	rc = mint(cfg, req, &s, ttl, out, err);
out:
	state_clear(&s);
	return rc;
}
