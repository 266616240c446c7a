/*
 * agents.c: see agents.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "agents.h"
#include "audit.h"
#include "cache.h"
#include "db.h"
#include "keys.h"
#include "util.h"

static const struct db_stmt insert_agent = {
	"agents_insert",
	"WITH a AS (INSERT INTO agents (name, client_id, secret_hash, owner) "
	"VALUES ($1, $1, $2::bytea, $3) RETURNING id, name) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'agent.created', $4, 'agent:' || a.name, "
	"jsonb_build_object('owner', $3::text, 'agent_id', a.id) FROM a "
	"RETURNING seq",
	4
};

/*
 * Disabling a suspended agent turns the tripwire's suspension into the
 * operator's kill switch, which "agent resume" does not lift.
 */
static const struct db_stmt disable_agent = {
	"agents_disable",
	"WITH a AS (UPDATE agents SET disabled_at = coalesce(disabled_at, now()), "
	"suspended_at = NULL, suspended_by = NULL WHERE name = $1 "
	"AND (disabled_at IS NULL OR suspended_at IS NOT NULL) "
	"RETURNING id, name) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'agent.disabled', $2, 'agent:' || a.name, "
	"jsonb_build_object('agent_id', a.id) FROM a RETURNING seq",
	2
};

static const struct db_stmt agent_exists = {
	"agents_exists",
	"SELECT disabled_at IS NOT NULL FROM agents WHERE name = $1",
	1
};

static const struct db_stmt list_agents = {
	"agents_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, "
	"'client_id', client_id, 'owner', owner, 'created_at', created_at, "
	"'auth_method', CASE WHEN public_jwk IS NULL THEN 'client_secret' "
	"ELSE 'private_key_jwt' END, 'key_thumbprint', key_thumbprint, "
	"'disabled', disabled_at IS NOT NULL, "
	"'suspended', suspended_at IS NOT NULL) ORDER BY name), '[]'::jsonb)::text "
	"FROM agents",
	0
};

/*
 * Whether an agent is disabled, and whether the secret whose HMAC is $2
 * (hex; '' when it authenticated with a key) is still its secret.
 */
static const struct db_stmt agent_disabled = {
	"agents_disabled",
	"SELECT disabled_at IS NOT NULL, $2 = '' OR secret_hash IS NOT DISTINCT "
	"FROM decode($2, 'hex') FROM agents WHERE id = $1::bigint",
	2
};

/*
 * A new secret for a secret-authenticated agent; the old one stops working
 * at once. An agent registered with a key has no secret. With $4, also
 * revoke the agent's live tokens and those delegated to it, as a tripwire
 * does: whatever the leaked secret minted.
 */
static const struct db_stmt rotate_agent_secret = {
	"agents_rotate_secret",
	"WITH a AS (UPDATE agents SET secret_hash = $2::bytea WHERE name = $1 "
	"AND secret_hash IS NOT NULL RETURNING id, name), "
	"r AS (UPDATE tokens t SET revoked_at = now(), revoked_by = $3 FROM a "
	"WHERE $4::bool AND (t.agent_id = a.id OR t.actor_agent_id = a.id) "
	"AND t.revoked_at IS NULL AND t.expires_at > now() RETURNING t.jti) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'agent.secret_rotated', $3, 'agent:' || a.name, "
	"jsonb_build_object('agent_id', a.id) || CASE WHEN $4::bool THEN "
	"jsonb_build_object('tokens_revoked', (SELECT count(*) FROM r)) "
	"ELSE '{}'::jsonb END FROM a "
	"RETURNING coalesce(details->>'tokens_revoked', '0')",
	4
};

static const struct db_stmt lookup_client = {
	"agents_lookup_client",
	"SELECT id, name, secret_hash, disabled_at IS NOT NULL "
	"FROM agents WHERE client_id = $1",
	1
};

/* A recent successful authentication, keyed by client_id. */
struct auth_entry {
	unsigned char hmac[KEYS_HASH_LEN];
	int64_t agent_id;
	char name[CS_NAME_MAX + 1];
};

static struct cache *auth_cache;

int
agents_cache_init(int ttl_ms)
{
	if (ttl_ms <= 0)
		return 0;
	auth_cache = cache_new(4096, sizeof(struct auth_entry), ttl_ms);
	return auth_cache != NULL ? 0 : -1;
}

void
agents_cache_free(void)
{
	cache_free(auth_cache);
	auth_cache = NULL;
}

/*
 * The cached identity of id if secret is the one it authenticated with
 * moments ago. Only the token endpoint uses this: the token's insert
 * re-checks in the database that the agent is still enabled.
 */
static int
auth_from_cache(const char *id, const char *secret, struct client *out)
{
	struct auth_entry e;
	unsigned char got[KEYS_HASH_LEN];
	int hit;

	if (auth_cache == NULL || !cache_get(auth_cache, id, &e))
		return 0;
	hit = keys_secret_hash(secret, strlen(secret), got) == 0 &&
	    CRYPTO_memcmp(got, e.hmac, KEYS_HASH_LEN) == 0;
	if (hit) {
		out->agent_id = e.agent_id;
		snprintf(out->name, sizeof(out->name), "%s", e.name);
		snprintf(out->client_id, sizeof(out->client_id), "%s", id);
		util_hex(got, KEYS_HASH_LEN, out->cred);
	}
	util_secure_zero(&e, sizeof(e));
	util_secure_zero(got, sizeof(got));
	return hit;
}

static void
auth_to_cache(const unsigned char *hmac, const struct client *c)
{
	struct auth_entry e;

	if (auth_cache == NULL)
		return;
	memset(&e, 0, sizeof(e));
	memcpy(e.hmac, hmac, KEYS_HASH_LEN);
	e.agent_id = c->agent_id;
	snprintf(e.name, sizeof(e.name), "%s", c->name);
	cache_put(auth_cache, c->client_id, &e);
	util_secure_zero(&e, sizeof(e));
}

enum cs_err
agents_add(const char *name, const char *owner, const char *actor,
    char *client_id, char *secret, struct cs_error *err)
{
	const char *params[4];
	char *hash_param = NULL;
	struct db_result *res = NULL;
	enum cs_err rc;

	if (!util_valid_name(name))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "agent name must be 1-64 characters of [A-Za-z0-9._-], "
		    "starting with a letter or digit");
	if (owner != NULL && (strlen(owner) > 256 ||
	    !util_valid_utf8(owner, strlen(owner))))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "owner must be valid text of at most 256 bytes");
	if (keys_new_secret(secret, &hash_param) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "cannot make a secret");
		goto out;
	}
	params[0] = name;
	params[1] = hash_param;
	params[2] = owner;
	params[3] = actor;
	rc = db_exec(&insert_agent, params, &res);
	if (rc == CS_ERR_CONFLICT) {
		cs_error_set(err, rc, "an agent named '%s' already exists", name);
		goto out;
	}
	if (rc != CS_OK) {
		cs_error_set(err, rc, "database error");
		goto out;
	}
	snprintf(client_id, CS_NAME_MAX + 1, "%s", name);
out:
	if (rc != CS_OK)
		util_secure_zero(secret, AGENTS_SECRET_LEN + 1);
	free(hash_param);
	db_result_free(res);
	return rc;
}

/*
 * After a statement by name changed nothing: CS_OK with *exists set, or
 * the database error in err.
 */
static enum cs_err
agent_known(const char *name, int *exists, struct cs_error *err)
{
	const char *params[1] = { name };
	struct db_result *res = NULL;
	enum cs_err rc;

	*exists = 0;
	rc = db_exec(&agent_exists, params, &res);
	if (rc != CS_OK)
		cs_error_set(err, rc, "database error");
	else
		*exists = db_nrows(res) == 1;
	db_result_free(res);
	return rc;
}

enum cs_err
agents_disable(const char *name, const char *actor, struct cs_error *err)
{
	const char *params[2] = { name, actor };
	struct db_result *res = NULL;
	enum cs_err rc;
	int exists;

	rc = db_exec(&disable_agent, params, &res);
	if (rc != CS_OK) {
		cs_error_set(err, rc, "database error");
		goto out;
	}
	/* Already disabled: nothing changes, nothing to record. */
	if (db_nrows(res) == 0 &&
	    (rc = agent_known(name, &exists, err)) == CS_OK && !exists)
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no agent named '%s'",
		    name);
out:
	db_result_free(res);
	return rc;
}

enum cs_err
agents_rotate_secret(const char *name, int revoke_tokens, const char *actor,
    char *secret, int64_t *revoked, struct cs_error *err)
{
	const char *params[4];
	struct db_result *res = NULL;
	char *hash_param = NULL;
	enum cs_err rc;
	int exists;

	if (keys_new_secret(secret, &hash_param) != 0)
		return cs_error_set(err, CS_ERR_INTERNAL, "internal error");
	*revoked = 0;
	params[0] = name;
	params[1] = hash_param;
	params[2] = actor;
	params[3] = revoke_tokens ? "true" : "false";
	rc = db_exec(&rotate_agent_secret, params, &res);
	if (rc != CS_OK) {
		cs_error_set(err, rc, "database error");
		goto out;
	}
	if (db_nrows(res) == 1) {
		util_parse_int64(db_value(res, 0, 0), 0, INT64_MAX, revoked);
		goto out;
	}
	if ((rc = agent_known(name, &exists, err)) != CS_OK)
		goto out;
	rc = !exists ? cs_error_set(err, CS_ERR_NOT_FOUND,
	    "no agent named '%s'", name) : cs_error_set(err,
	    CS_ERR_INVALID_REQUEST, "agent '%s' authenticates with a "
	    "registered key and has no secret", name);
out:
	if (rc != CS_OK)
		util_secure_zero(secret, AGENTS_SECRET_LEN + 1);
	free(hash_param);
	db_result_free(res);
	return rc;
}

enum cs_err
agents_list(json_t **out)
{
	return db_exec_json(&list_agents, NULL, out);
}

/* Record a failed authentication; returns the code the caller reports. */
static enum cs_err
auth_failed(const char *client_id, const char *method, const char *endpoint,
    const char *reason, struct cs_error *err)
{
	char clip[AUDIT_FIELD_MAX];
	json_t *d;
	enum cs_err rc;

	d = json_pack("{s:s, s:s, s:s}", "reason", reason, "method", method,
	    "endpoint", endpoint);
	rc = audit_append("client.auth_failed", "anonymous",
	    client_id != NULL ? audit_clip(client_id, clip, 80) : NULL, NULL, d);
	json_decref(d);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
	return cs_error_set(err, CS_ERR_INVALID_CLIENT,
	    strcmp(reason, "disabled") == 0 ? "client is disabled" :
	    strcmp(reason, "malformed") == 0 ? "malformed client credentials" :
	    strcmp(reason, "missing") == 0 ? "client authentication required" :
	    "client authentication failed");
}

enum cs_err
agents_authenticate(const char *authorization, const struct form *body,
    const char *endpoint, struct client *out, struct cs_error *err)
{
	char *id = NULL, *secret = NULL;
	const char *method = "none", *params[1];
	unsigned char mac[KEYS_HASH_LEN];
	struct db_result *res = NULL;
	int known;
	enum cs_err rc;

	memset(out, 0, sizeof(*out));
	memset(mac, 0, sizeof(mac));
	switch (form_client_credentials(authorization, body, &id, &secret,
	    &method)) {
	case FORM_CRED_OK:
		break;
	case FORM_CRED_BOTH:
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "use one client authentication method, not both");
		goto out;
	case FORM_CRED_MISMATCH:
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "client_id in the body differs from the Authorization header");
		goto out;
	case FORM_CRED_MISSING:
		rc = auth_failed(NULL, method, endpoint, "missing", err);
		goto out;
	case FORM_CRED_MALFORMED:
	default:
		rc = auth_failed(id, method, endpoint, "malformed", err);
		goto out;
	}
	if (strlen(id) > CS_NAME_MAX || strlen(secret) > 256) {
		rc = auth_failed(id, method, endpoint, "malformed", err);
		goto out;
	}
	if (strcmp(endpoint, "token") == 0 && auth_from_cache(id, secret, out)) {
		out->method = method;
		rc = CS_OK;
		goto out;
	}
	params[0] = id;
	rc = db_exec(&lookup_client, params, &res);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check credentials right now");
		goto out;
	}
	known = db_nrows(res) == 1;
	if (!keys_secret_matches(secret, known && !db_isnull(res, 0, 2) ?
	    db_value(res, 0, 2) : NULL)) {
		/* An agent registered with a key has no secret to match. */
		rc = auth_failed(id, method, endpoint, !known ? "unknown_client" :
		    db_isnull(res, 0, 2) ? "secret_not_allowed" : "bad_secret",
		    err);
		goto out;
	}
	if (strcmp(db_value(res, 0, 3), "t") == 0) {
		rc = auth_failed(id, method, endpoint, "disabled", err);
		goto out;
	}
	if (util_parse_int64(db_value(res, 0, 0), 1, INT64_MAX,
	    &out->agent_id) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	if (keys_secret_hash(secret, strlen(secret), mac) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	snprintf(out->name, sizeof(out->name), "%s", db_value(res, 0, 1));
	snprintf(out->client_id, sizeof(out->client_id), "%s", id);
	util_hex(mac, KEYS_HASH_LEN, out->cred);
	out->method = method;
	auth_to_cache(mac, out);
	rc = CS_OK;
out:
	util_secure_zero(mac, sizeof(mac));
	free(id);
	if (secret != NULL) {
		util_secure_zero(secret, strlen(secret));
		free(secret);
	}
	db_result_free(res);
	return rc;
}

enum cs_err
agents_recheck(const struct client *c, struct cs_error *err)
{
	const char *params[2];
	struct db_result *res = NULL;
	char idbuf[24];
	enum cs_err rc;
	int disabled, same_secret;

	cache_remove(auth_cache, c->client_id);
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)c->agent_id);
	params[0] = idbuf;
	params[1] = c->cred;
	rc = db_exec(&agent_disabled, params, &res);
	if (rc != CS_OK) {
		db_result_free(res);
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check credentials right now");
	}
	disabled = db_nrows(res) != 1 || strcmp(db_value(res, 0, 0), "t") == 0;
	same_secret = db_nrows(res) == 1 && strcmp(db_value(res, 0, 1), "t") == 0;
	db_result_free(res);
	if (disabled)
		return auth_failed(c->client_id, c->method, "token", "disabled",
		    err);
	/* Rotated after a cached authentication: the old secret is wrong now. */
	if (!same_secret)
		return auth_failed(c->client_id, c->method, "token",
		    "bad_secret", err);
	return CS_OK;
}
