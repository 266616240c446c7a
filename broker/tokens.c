/*
 * tokens.c: see tokens.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "batch.h"
#include "db.h"
#include "dpop.h"
#include "grants.h"
#include "jose.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "tokens.h"
#include "util.h"
#include "vcache.h"
#include "verify_internal.h"

/*
 * Insert the token row and its audit event in one statement, and only if,
 * in the same snapshot, the agent is enabled and still has the secret it
 * authenticated with ($15, hex of its HMAC; '' for a key), and every grant
 * is still live (and, on the client-credentials path, every scope is still
 * a read scope). Zero rows back means something was revoked between the
 * check and now, and nothing was written.
 */
static const struct db_stmt insert_token = {
	"tokens_insert",
	"WITH ok AS (SELECT 1 FROM agents a WHERE a.id = $1 "
	"AND a.disabled_at IS NULL "
	"AND ($15 = '' OR a.secret_hash = decode($15, 'hex')) "
	"AND (SELECT count(*) FROM grants g WHERE g.agent_id = $1 "
	"AND g.audience = $4 AND g.scope = ANY($3::text[]) "
	"AND g.revoked_at IS NULL "
	"AND (g.expires_at IS NULL OR g.expires_at > now())) "
	"= cardinality($3::text[]) "
	"AND (NOT $13::bool OR (SELECT count(*) FROM scopes s "
	"WHERE s.name = ANY($3::text[]) AND s.kind = 'read') "
	"= cardinality($3::text[])) "
	"AND ($14::bool OR NOT EXISTS (SELECT 1 FROM scopes s "
	"WHERE s.name = ANY($3::text[]) "
	"AND coalesce(s.require_dpop, s.kind <> 'read')))), "
	"t AS (INSERT INTO tokens (jti, agent_id, client_id, scopes, audience, "
	"kid, issued_at, expires_at, approval_id, max_uses) "
	"SELECT $2, $1, $5, $3::text[], $4, $6, "
	"to_timestamp($7::bigint), to_timestamp($8::bigint), $11, "
	"nullif($12::int, 0) FROM ok RETURNING jti) "
	"INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.issued', 'agent:' || $9, 'agent:' || $9, t.jti, "
	"$10::jsonb FROM t RETURNING seq",
	15
};

/*
 * Record one use of a token and answer whether it is active, atomically:
 * the use counter only moves while the token is unrevoked, unexpired, under
 * its use limit and its agent enabled, so of concurrent uses of a
 * single-use token exactly one is active. The token.used event records the
 * outcome either way, in the same statement. The service is re-checked
 * too: its authentication may come from a cache (services.c).
 */
static const struct db_stmt record_use = {
	"tokens_record_use",
	"WITH t AS (SELECT tk.revoked_at, tk.expires_at, a.disabled_at, "
	"tk.use_count, tk.max_uses, (SELECT x.disabled_at FROM agents x "
	"WHERE x.id = tk.actor_agent_id) AS actor_disabled_at "
	"FROM tokens tk JOIN agents a ON a.id = tk.agent_id WHERE tk.jti = $1), "
	"s AS (SELECT 1 FROM services v WHERE v.name = $2 "
	"AND v.disabled_at IS NULL AND ($5 = '' OR "
	"v.secret_hash = decode($5, 'hex'))), "
	"u AS (UPDATE tokens tk SET use_count = use_count + 1, "
	"last_used_at = now() WHERE tk.jti = $1 AND EXISTS (SELECT 1 FROM s) "
	"AND tk.revoked_at IS NULL "
	"AND tk.expires_at > now() "
	"AND (tk.max_uses IS NULL OR tk.use_count < tk.max_uses) "
	"AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.disabled_at IS NOT NULL "
	"AND a.id IN (tk.agent_id, tk.actor_agent_id)) "
	"RETURNING tk.use_count, tk.max_uses), "
	"r AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM u) THEN 'active' "
	"WHEN NOT EXISTS (SELECT 1 FROM s) THEN 'service_refused' "
	"WHEN NOT EXISTS (SELECT 1 FROM t) THEN 'unknown_jti' "
	"WHEN (SELECT revoked_at FROM t) IS NOT NULL THEN 'revoked' "
	"WHEN (SELECT disabled_at FROM t) IS NOT NULL THEN 'agent_disabled' "
	"WHEN (SELECT actor_disabled_at FROM t) IS NOT NULL THEN "
	"'actor_disabled' "
	"WHEN (SELECT expires_at FROM t) <= now() THEN 'expired' "
	"ELSE 'used_up' END AS result) "
	"INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.used', 'service:' || $2, 'agent:' || $3, $1, "
	"jsonb_build_object('result', r.result, 'active', r.result = 'active', "
	"'audience', $4::text, 'use', (SELECT use_count FROM u), "
	"'uses_before', (SELECT use_count FROM t), "
	"'max_uses', (SELECT max_uses FROM t)) FROM r "
	"RETURNING details->>'result', coalesce(details->>'use', ''), "
	"coalesce(details->>'max_uses', '')",
	5
};

static const struct db_stmt revoke_jti = {
	"tokens_revoke_jti",
	"WITH r AS (UPDATE tokens SET revoked_at = now(), revoked_by = $2 "
	"WHERE jti = $1 AND revoked_at IS NULL AND ($3::bigint = 0 OR "
	"agent_id = $3::bigint) RETURNING jti, agent_id) "
	"INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.revoked', $2, 'agent:' || a.name, r.jti, "
	"jsonb_build_object('via', $4::text) FROM r "
	"JOIN agents a ON a.id = r.agent_id RETURNING seq",
	4
};

/*
 * One level of the revocation cascade: revoke the unrevoked tokens that
 * were exchanged from any of $1 (RFC 8693), and audit each. The caller
 * repeats it with the jtis it returns until none come back.
 */
static const struct db_stmt revoke_children = {
	"tokens_revoke_children",
	"WITH r AS (UPDATE tokens SET revoked_at = now(), revoked_by = $2 "
	"WHERE subject_jti = ANY ($1::text[]) AND revoked_at IS NULL "
	"RETURNING jti, agent_id, subject_jti) "
	"INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.revoked', $2, 'agent:' || a.name, r.jti, "
	"jsonb_build_object('via', $3::text, 'cascade_from', r.subject_jti) "
	"FROM r JOIN agents a ON a.id = r.agent_id RETURNING jti",
	3
};

/* Deeper than any delegation chain exchange.c lets grow. */
#define CASCADE_MAX_DEPTH	16

int64_t
tokens_ttl(int64_t requested, int64_t def, int64_t global_max,
    const int64_t *limits, size_t n)
{
	int64_t ttl = requested > 0 ? requested : def;
	size_t i;

	if (global_max > 0 && ttl > global_max)
		ttl = global_max;
	for (i = 0; i < n; i++)
		if (limits[i] > 0 && ttl > limits[i])
			ttl = limits[i];
	return ttl < 1 ? 1 : ttl;
}

void
tokens_issued_clear(struct token_issued *t)
{
	if (t == NULL)
		return;
	if (t->access_token != NULL) {
		util_secure_zero(t->access_token, strlen(t->access_token));
		free(t->access_token);
	}
	free(t->scope);
	memset(t, 0, sizeof(*t));
}

/* Record a refusal and build the error the client sees. */
static enum cs_err
deny(const struct token_request *req, const char *reason, const char *scope,
    enum cs_err code, struct cs_error *err, const char *msg)
{
	char actor[CS_NAME_MAX + 8], clip[AUDIT_FIELD_MAX];
	char *requested = scopes_join(req->scopes);
	json_t *d;
	enum cs_err rc;

	snprintf(actor, sizeof(actor), "agent:%s", req->client->name);
	d = json_pack("{s:s, s:s?, s:s?, s:s}", "reason", reason, "scope", scope,
	    "requested", requested, "audience",
	    audit_clip(req->audience, clip, sizeof(clip)));
	rc = audit_append("token.denied", actor, actor, NULL, d);
	json_decref(d);
	log_event(LOG_LEVEL_INFO, "token.denied", json_pack("{s:s, s:s, s:s?, "
	    "s:s?}", "agent", req->client->name, "reason", reason, "scope", scope,
	    "requested", requested));
	free(requested);
	metrics_denied(reason);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
	return cs_error_set(err, code, "%s", msg);
}

/* Build the RFC 9068 claims as compact JSON. Caller frees. */
static char *
build_claims(const struct broker_config *cfg, const struct token_mint *m,
    const char *scope, const char *jti, int64_t iat, int64_t exp)
{
	json_t *c;
	char *s;

	c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s}",
	    "iss", cfg->issuer, "sub", m->client->name,
	    "client_id", m->client->client_id, "aud", m->audience,
	    "scope", scope, "iat", (json_int_t)iat, "nbf", (json_int_t)iat,
	    "exp", (json_int_t)exp, "jti", jti);
	if (c == NULL)
		return NULL;
	/* Extra claims never replace the registered ones above. */
	if (m->extra_claims != NULL &&
	    json_object_update_missing(c, m->extra_claims) != 0) {
		json_decref(c);
		return NULL;
	}
	s = json_dumps(c, JSON_COMPACT);
	json_decref(c);
	return s;
}

enum cs_err
tokens_sign(const char *claims, struct token_issued *out, char *kid,
    size_t kidcap, struct cs_error *err)
{
	struct keyset *ks = NULL;
	const struct jose_key *key;

	if (keys_acquire(&ks) != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "no signing key is available right now");
	key = keys_signing(ks);
	out->access_token = jose_sign(key, TOKENS_TYP, claims, strlen(claims));
	snprintf(kid, kidcap, "%s", key->kid);
	keys_release(ks);
	if (out->access_token == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "signing failed");
	return CS_OK;
}

enum cs_err
tokens_mint(const struct broker_config *cfg, const struct token_mint *m,
    struct token_issued *out, struct cs_error *err)
{
	struct db_result *res = NULL;
	char kid[JOSE_KID_LEN + 1];
	char *claims = NULL, *arr = NULL, *details = NULL;
	char idbuf[24], iatbuf[24], expbuf[24], usesbuf[24];
	const char *params[15];
	int64_t iat;
	enum cs_err rc;
	/* A sender-constrained token (cnf); the insert re-checks require_dpop. */
	int bound = m->extra_claims != NULL &&
	    json_object_get(m->extra_claims, "cnf") != NULL;

	memset(out, 0, sizeof(*out));
	if (util_token_id(out->jti, sizeof(out->jti)) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	out->scope = scopes_join(m->scopes);
	iat = util_now();
	claims = out->scope != NULL ?
	    build_claims(cfg, m, out->scope, out->jti, iat, iat + m->ttl) : NULL;
	if (claims == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	if ((rc = tokens_sign(claims, out, kid, sizeof(kid), err)) != CS_OK)
		goto out;
	{
		json_t *d = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s?}", "scope",
		    out->scope, "audience", m->audience, "ttl", (json_int_t)m->ttl,
		    "kid", kid, "auth_method", m->client->method,
		    "approval", m->approval_id);

		details = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
		json_decref(d);
	}
	arr = db_text_array((const char *const *)m->scopes->items,
	    m->scopes->n);
	if (details == NULL || arr == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)m->client->agent_id);
	snprintf(iatbuf, sizeof(iatbuf), "%lld", (long long)iat);
	snprintf(expbuf, sizeof(expbuf), "%lld", (long long)(iat + m->ttl));
	snprintf(usesbuf, sizeof(usesbuf), "%lld", (long long)m->max_uses);
	params[0] = idbuf;
	params[1] = out->jti;
	params[2] = arr;
	params[3] = m->audience;
	params[4] = m->client->client_id;
	params[5] = kid;
	params[6] = iatbuf;
	params[7] = expbuf;
	params[8] = m->client->name;
	params[9] = details;
	params[10] = m->approval_id;
	params[11] = usesbuf;
	params[12] = m->read_only ? "true" : "false";
	params[13] = bound ? "true" : "false";
	params[14] = m->client->cred;
	if (m->approval_id == NULL && batch_running()) {
		/*
		 * Outside a transaction: join the next group commit, which
		 * runs the same re-checks per token.
		 */
		struct batch_token bt;

		bt.agent_id = m->client->agent_id;
		bt.jti = out->jti;
		bt.scopes = out->scope;
		bt.audience = m->audience;
		bt.client_id = m->client->client_id;
		bt.kid = kid;
		bt.iat = iat;
		bt.exp = iat + m->ttl;
		bt.agent_name = m->client->name;
		bt.details = details;
		bt.max_uses = m->max_uses;
		bt.read_only = m->read_only;
		bt.bound = bound;
		bt.cred = m->client->cred;
		rc = batch_insert(&bt);
		if (rc == CS_ERR_CONFLICT) {
			rc = cs_error_set(err, CS_ERR_CONFLICT,
			    "a grant for the requested scopes was revoked");
			goto out;
		}
		if (rc != CS_OK) {
			rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
			    "the broker cannot record this token right now");
			goto out;
		}
		out->expires_in = m->ttl;
		metrics_inc(METRICS_TOKENS_ISSUED_READ);
		goto out;
	}
	rc = db_exec(&insert_token, params, &res);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this token right now");
		goto out;
	}
	if (db_nrows(res) != 1) {
		rc = cs_error_set(err, CS_ERR_CONFLICT,
		    "a grant for the requested scopes was revoked");
		goto out;
	}
	out->expires_in = m->ttl;
	metrics_inc(m->approval_id != NULL ? METRICS_TOKENS_ISSUED_STEPUP :
	    METRICS_TOKENS_ISSUED_READ);
	rc = CS_OK;
out:
	if (rc != CS_OK)
		tokens_issued_clear(out);
	free(claims);
	free(arr);
	free(details);
	db_result_free(res);
	return rc;
}

enum cs_err
tokens_issue_read(const struct broker_config *cfg,
    const struct token_request *req, struct token_issued *out,
    struct cs_error *err)
{
	struct grant_set gs;
	struct token_mint m;
	int64_t limits[2 * CS_SCOPES_MAX];
	enum scopes_refusal verdict;
	enum cs_err rc;
	size_t bad, nl = 0;
	char msg[sizeof(err->desc)];

	memset(out, 0, sizeof(*out));
	rc = grants_resolve_cached(req->client->agent_id, req->audience,
	    req->scopes, &gs);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check grants right now");
	verdict = scopes_intersect_read(&gs, &bad, limits, &nl);
	if (verdict != SCOPES_OK) {
		const char *name = verdict == SCOPES_EMPTY ? NULL :
		    gs.s[bad].name;

		switch (verdict) {
		case SCOPES_WRITE:
			snprintf(msg, sizeof(msg), "scope '%s' is a write scope: "
			    "it needs step-up approval by a human approver "
			    "(request it at /oauth2/bc-authorize)", name);
			break;
		case SCOPES_NOT_GRANTED:
			snprintf(msg, sizeof(msg), "scope '%s' is not granted to "
			    "this client for this resource", name);
			break;
		case SCOPES_UNKNOWN:
			snprintf(msg, sizeof(msg), "scope '%s' is not granted to "
			    "this client", name);
			break;
		default:
			snprintf(msg, sizeof(msg), "scope is empty");
			break;
		}
		return deny(req, scopes_refusal_reason(verdict), name,
		    CS_ERR_INVALID_SCOPE, err, msg);
	}
	memset(&m, 0, sizeof(m));
	m.client = req->client;
	m.scopes = req->scopes;
	m.audience = req->audience;
	m.ttl = tokens_ttl(req->requested_ttl, cfg->default_ttl, cfg->max_ttl,
	    limits, nl);
	m.read_only = 1;
	if (req->dpop_jkt != NULL && (m.extra_claims = json_pack("{s:{s:s}}",
	    "cnf", "jkt", req->dpop_jkt)) == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "internal error");
	rc = tokens_mint(cfg, &m, out, err);
	json_decref(m.extra_claims);
	if (rc != CS_ERR_CONFLICT)
		return rc;
	/*
	 * The database refused: the agent was disabled or a grant revoked,
	 * perhaps after our cached look-ups. Say which, and drop the cache.
	 */
	if ((rc = agents_recheck(req->client, err)) != CS_OK)
		return rc;
	grants_cache_forget(req->client->agent_id, req->audience, req->scopes);
	if (req->dpop_jkt == NULL) {
		int required = 0;

		dpop_cache_forget(req->scopes);
		if (dpop_required(req->scopes, 1, &required) == CS_OK && required)
			return deny(req, "dpop_required", NULL,
			    CS_ERR_INVALID_DPOP_PROOF, err, "a scope requested "
			    "now requires a DPoP proof (RFC 9449)");
	}
	return deny(req, "revoked_during_issuance", NULL, CS_ERR_INVALID_SCOPE,
	    err, "a grant for the requested scopes was revoked");
}

#define TEN_YEARS	(10 * 366 * 24 * 3600)

/*
 * Audit a use that failed before the database could be asked. jti, agent
 * and reason (which says more than result) may be NULL.
 */
static enum cs_err
use_refused(const char *service, const char *jti, const char *agent,
    const char *result, const char *reason, struct cs_error *err)
{
	char actor[CS_NAME_MAX + 16], subject[CS_NAME_MAX + 16];
	json_t *d = json_pack("{s:s, s:b, s:s?}", "result", result, "active", 0,
	    "reason", reason);
	enum cs_err rc;

	snprintf(actor, sizeof(actor), "service:%s", service);
	if (agent != NULL)
		snprintf(subject, sizeof(subject), "agent:%s", agent);
	rc = audit_append("token.used", actor, agent != NULL ? subject : NULL,
	    jti, d);
	json_decref(d);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this use right now");
	return CS_OK;
}

/*
 * Check the proof a service forwarded against the token's cnf.jkt. Done
 * before the use is counted: a proof that fails must not spend a use of a
 * single-use token, or anyone holding a copy of a bound token (the very
 * case DPoP guards against) could burn it by presenting it without the
 * key. Returns 0 if the proof holds; else 1 with the reason in why (cap
 * bytes), after auditing token.dpop_refused (-1 if that cannot be
 * recorded).
 */
static int
proof_refused(const char *service, const char *token,
    const struct tokens_proof *p, const struct cs_claims *c, char *why,
    size_t cap)
{
	char jkt[JOSE_KID_LEN + 1];
	char actor[CS_NAME_MAX + 16], subject[CS_NAME_MAX + 16];
	struct cs_error perr;
	const char *reason = NULL;
	json_t *d;
	int rc = 1;

	if (c->cnf_jkt == NULL)
		reason = "token is not DPoP-bound";
	else if (p->htm == NULL || p->htu == NULL)
		reason = "htm and htu are required with dpop_proof";
	else if (dpop_check(p->proof, p->htm, p->htu, token, jkt, &perr) !=
	    CS_OK)
		reason = perr.desc;
	else if (strcmp(jkt, c->cnf_jkt) != 0)
		reason = "proof key differs from cnf.jkt";
	if (reason == NULL)
		return 0;
	snprintf(why, cap, "%s", reason);
	/*
	 * The service is authenticated and the token verified by now: name
	 * them as token.used does (the agent is the token's subject).
	 */
	snprintf(actor, sizeof(actor), "service:%s", service);
	snprintf(subject, sizeof(subject), "agent:%s", c->sub);
	d = json_pack("{s:s, s:s}", "reason", reason, "service", service);
	if (audit_append("token.dpop_refused", actor, subject, c->jti, d) !=
	    CS_OK)
		rc = -1;
	json_decref(d);
	return rc;
}

enum cs_err
tokens_introspect(const struct broker_config *cfg, const char *service,
    const char *cred, const char *const *audiences, size_t naudiences,
    const char *token,
    const struct tokens_proof *proof, json_t **out, struct cs_error *err)
{
	struct keyset *ks = NULL;
	struct cs_claims c;
	struct db_result *res = NULL;
	struct batch_use use;
	const struct jose_key *const *keys;
	json_t *claims = NULL, *resp = NULL;
	const char *params[5], *etag = NULL;
	enum cs_verify_result vr;
	enum cs_err rc;
	size_t nkeys, i, jwks_len;
	char why[sizeof(err->desc)];
	int aud_ok = 0, refused;

	*out = NULL;
	memset(&c, 0, sizeof(c));
	if (keys_acquire(&ks) != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "signing keys are not available right now");
	keys = keys_verifying(ks, &nkeys);
	(void)keys_jwks(ks, &jwks_len, &etag);
	vr = vcache_verify(keys, nkeys, etag, cfg->issuer, 0, util_now(),
	    token, strnlen(token, JOSE_MAX_TOKEN + 1), &c);
	keys_release(ks);
	if (vr != CS_VERIFY_OK) {
		/* The reason goes to the audit log, never to the caller. */
		rc = use_refused(service, NULL, NULL, cs_verify_result_name(vr),
		    NULL, err);
		goto inactive;
	}
	for (i = 0; i < naudiences; i++)
		if (strcmp(audiences[i], c.aud) == 0)
			aud_ok = 1;
	if (!aud_ok) {
		/* One service must not learn about another's tokens. */
		rc = use_refused(service, c.jti, NULL, "audience_mismatch", NULL,
		    err);
		goto inactive;
	}
	if (proof != NULL && proof->proof != NULL &&
	    (refused = proof_refused(service, token, proof, &c, why,
	    sizeof(why))) != 0) {
		rc = refused < 0 ? cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this use right now") :
		    use_refused(service, c.jti, c.sub, "dpop_refused", why,
		    err);
		goto inactive;
	}
	memset(&use, 0, sizeof(use));
	use.jti = c.jti;
	use.service = service;
	use.agent = c.sub;
	use.audience = c.aud;
	use.cred = cred != NULL ? cred : "";
	if (batch_running()) {
		/* Outside a transaction: join the next group commit of uses. */
		rc = batch_record_use(&use);
	} else {
		params[0] = c.jti;
		params[1] = service;
		params[2] = c.sub;
		params[3] = c.aud;
		params[4] = use.cred;
		rc = db_exec(&record_use, params, &res);
		if (rc == CS_OK && db_nrows(res) == 1) {
			snprintf(use.result, sizeof(use.result), "%s",
			    db_value(res, 0, 0));
			snprintf(use.use, sizeof(use.use), "%s",
			    db_value(res, 0, 1));
			snprintf(use.max_uses, sizeof(use.max_uses), "%s",
			    db_value(res, 0, 2));
		}
	}
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this use right now");
		goto out;
	}
	if (strcmp(use.result, "active") != 0) {
		rc = CS_OK;
		goto inactive;
	}
	claims = json_loads(c.json, 0, NULL);
	resp = json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, "
	    "s:s}", "active", 1, "scope", c.scope, "client_id", c.client_id,
	    "sub", c.sub, "aud", c.aud, "iss", c.iss, "exp", (json_int_t)c.exp,
	    "iat", (json_int_t)c.iat, "nbf", (json_int_t)c.nbf, "jti", c.jti,
	    "token_type", "Bearer");
	if (claims == NULL || resp == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	if (json_object_get(claims, "approval") != NULL)
		json_object_set(resp, "approval", json_object_get(claims, "approval"));
	if (json_object_get(claims, "authorization_details") != NULL)
		json_object_set(resp, "authorization_details",
		    json_object_get(claims, "authorization_details"));
	if (json_object_get(claims, "cnf") != NULL) {
		json_object_set(resp, "cnf", json_object_get(claims, "cnf"));
		/* RFC 9449 §6.2: the service must demand a proof by cnf.jkt. */
		if (json_object_get(json_object_get(claims, "cnf"), "jkt") != NULL)
			json_object_set_new(resp, "token_type", json_string("DPoP"));
	}
	if (json_object_get(claims, "act") != NULL)
		json_object_set(resp, "act", json_object_get(claims, "act"));
	if (use.max_uses[0] != '\0') {
		int64_t used = 0, max = 0;

		if (util_parse_int64(use.use, 0, INT64_MAX, &used) == 0 &&
		    util_parse_int64(use.max_uses, 0, INT64_MAX, &max) == 0)
			json_object_set_new(resp, "uses_left",
			    json_integer(max - used));
	}
	*out = resp;
	resp = NULL;
	metrics_inc(METRICS_INTROSPECT_ACTIVE);
	rc = CS_OK;
	goto out;
inactive:
	if (rc == CS_OK) {
		*out = json_pack("{s:b}", "active", 0);
		metrics_inc(METRICS_INTROSPECT_INACTIVE);
	}
out:
	json_decref(claims);
	json_decref(resp);
	db_result_free(res);
	cs_claims_clear(&c);
	return rc;
}

/*
 * Revoke the tokens exchanged from jti, level by level, inside the
 * caller's transaction. Sets *n to the number revoked.
 */
static enum cs_err
revoke_cascade(const char *jti, const char *actor, const char *via,
    int *n)
{
	const char *params[3];
	struct db_result *res = NULL;
	const char **jtis = NULL;
	char *level = NULL;
	enum cs_err rc = CS_OK;
	int depth, i, rows;

	*n = 0;
	if ((level = db_text_array(&jti, 1)) == NULL)
		return CS_ERR_INTERNAL;
	for (depth = 0; depth < CASCADE_MAX_DEPTH; depth++) {
		params[0] = level;
		params[1] = actor;
		params[2] = via;
		if ((rc = db_exec(&revoke_children, params, &res)) != CS_OK)
			goto out;
		if ((rows = db_nrows(res)) == 0)
			goto out;
		*n += rows;
		if ((jtis = calloc((size_t)rows, sizeof(*jtis))) == NULL) {
			rc = CS_ERR_INTERNAL;
			goto out;
		}
		for (i = 0; i < rows; i++)
			jtis[i] = db_value(res, i, 0);
		free(level);
		level = db_text_array(jtis, (size_t)rows);
		free(jtis);
		jtis = NULL;
		db_result_free(res);
		res = NULL;
		if (level == NULL) {
			rc = CS_ERR_INTERNAL;
			goto out;
		}
	}
out:
	free(jtis);
	free(level);
	db_result_free(res);
	return rc;
}

enum cs_err
tokens_revoke_jti(const char *jti, int64_t agent_id, const char *actor,
    const char *via, int *revoked, struct cs_error *err)
{
	const char *params[4];
	struct db_result *res = NULL;
	char idbuf[24];
	enum cs_err rc;
	int cascaded = 0;

	*revoked = 0;
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)agent_id);
	params[0] = jti;
	params[1] = actor;
	params[2] = idbuf;
	params[3] = via;
	/*
	 * The token, then what was exchanged from it, in one transaction: a
	 * revoked token leaves no live delegate behind. Each level is a
	 * statement of its own, so it sees what committed while the first
	 * statement waited: an exchange holds its subject's row (FOR SHARE)
	 * until its child is committed, and an exchange that comes second
	 * sees the subject revoked and mints nothing.
	 */
	if ((rc = db_begin()) != CS_OK)
		goto unavailable;
	if ((rc = db_exec(&revoke_jti, params, &res)) != CS_OK)
		goto rollback;
	*revoked = db_nrows(res) == 1;
	if (*revoked && (rc = revoke_cascade(jti, actor, via, &cascaded)) !=
	    CS_OK)
		goto rollback;
	if ((rc = db_commit()) != CS_OK)
		goto unavailable;
	if (cascaded > 0)
		log_event(LOG_LEVEL_INFO, "token.revoked_cascade", json_pack(
		    "{s:s, s:i}", "jti", jti, "exchanged_tokens", cascaded));
	db_result_free(res);
	return CS_OK;
rollback:
	db_rollback();
	*revoked = 0;
unavailable:
	db_result_free(res);
	return cs_error_set(err, CS_ERR_UNAVAILABLE,
	    "the broker cannot revoke right now");
}

enum cs_err
tokens_revoke(const struct broker_config *cfg, const struct client *client,
    const char *token, struct cs_error *err)
{
	struct keyset *ks = NULL;
	struct cs_claims c;
	const struct jose_key *const *keys;
	char actor[CS_NAME_MAX + 8];
	enum cs_verify_result vr;
	enum cs_err rc;
	size_t nkeys;
	int revoked = 0;

	memset(&c, 0, sizeof(c));
	snprintf(actor, sizeof(actor), "agent:%s", client->name);
	if (keys_acquire(&ks) != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "signing keys are not available right now");
	keys = keys_verifying(ks, &nkeys);
	/*
	 * Any lifetime is fine here: revoking an expired token is harmless,
	 * so verify with a leeway wider than any token lives.
	 */
	vr = verify_with_keys(keys, nkeys, cfg->issuer, NULL, TEN_YEARS,
	    util_now(), token, strnlen(token, JOSE_MAX_TOKEN + 1), &c);
	keys_release(ks);
	if (vr != CS_VERIFY_OK) {
		/* RFC 7009 §2.2: an invalid token is not an error. */
		json_t *d = json_pack("{s:s}", "reason", cs_verify_result_name(vr));

		rc = audit_append("token.revocation_ignored", actor, actor, NULL, d);
		json_decref(d);
		log_event(LOG_LEVEL_INFO, "token.revocation_ignored", json_pack(
		    "{s:s, s:s}", "agent", client->name, "reason",
		    cs_verify_result_name(vr)));
		rc = rc == CS_OK ? CS_OK : cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
		goto out;
	}
	if (strcmp(c.client_id, client->client_id) != 0) {
		json_t *d = json_pack("{s:s}", "reason", "not_owner");

		rc = audit_append("token.revocation_ignored", actor, actor, c.jti, d);
		json_decref(d);
		log_event(LOG_LEVEL_WARN, "token.revocation_ignored", json_pack(
		    "{s:s, s:s, s:s}", "agent", client->name, "jti", c.jti,
		    "reason", "not_owner"));
		rc = rc != CS_OK ? cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now") :
		    cs_error_set(err, CS_ERR_UNAUTHORIZED_CLIENT,
		    "the token was not issued to this client");
		goto out;
	}
	rc = tokens_revoke_jti(c.jti, client->agent_id, actor, "rfc7009",
	    &revoked, err);
	if (rc == CS_OK)
		log_event(LOG_LEVEL_INFO, revoked ? "token.revoked" :
		    "token.revocation_ignored", json_pack("{s:s, s:s, s:s?}",
		    "agent", client->name, "jti", c.jti, "reason",
		    revoked ? NULL : "already_revoked"));
out:
	cs_claims_clear(&c);
	return rc;
}
