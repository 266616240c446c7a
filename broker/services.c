/*
 * services.c: see services.h.
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
#include "services.h"
#include "util.h"

static const struct db_stmt insert_service = {
	"services_insert",
	"WITH s AS (INSERT INTO services (name, audiences, secret_hash) "
	"VALUES ($1, $2::text[], $3::bytea) RETURNING id, name, audiences) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'service.created', $4, 'service:' || s.name, "
	"jsonb_build_object('service_id', s.id, 'audiences', s.audiences) "
	"FROM s RETURNING seq",
	4
};

static const struct db_stmt insert_keyed_service = {
	"services_insert_keyed",
	"WITH s AS (INSERT INTO services (name, audiences, public_jwk, key_alg, "
	"key_thumbprint) VALUES ($1, $2::text[], $3::jsonb, $4, $5) "
	"RETURNING id, name, audiences) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'service.created', $6, 'service:' || s.name, "
	"jsonb_build_object('service_id', s.id, 'audiences', s.audiences, "
	"'auth_method', 'private_key_jwt', 'key_thumbprint', $5::text) "
	"FROM s RETURNING seq",
	6
};

static const struct db_stmt list_services = {
	"services_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, "
	"'client_id', name, 'audiences', audiences, 'created_at', created_at, "
	"'auth_method', CASE WHEN public_jwk IS NULL THEN 'client_secret' "
	"ELSE 'private_key_jwt' END, 'key_thumbprint', key_thumbprint, "
	"'disabled', disabled_at IS NOT NULL) ORDER BY name), '[]'::jsonb)::text "
	"FROM services",
	0
};

/*
 * The kill switch for a service whose credentials may have leaked: its
 * secret or key stops authenticating at once, for introspection and
 * /v1/uses alike. Disabling twice changes nothing and audits nothing.
 */
static const struct db_stmt disable_service = {
	"services_disable",
	"WITH s AS (UPDATE services SET disabled_at = now() WHERE name = $1 "
	"AND disabled_at IS NULL RETURNING id, name) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'service.disabled', $2, 'service:' || s.name, "
	"jsonb_build_object('service_id', s.id) FROM s RETURNING seq",
	2
};

/*
 * A new secret for a secret-authenticated service; the old one stops
 * working at once. A service registered with a key has no secret.
 */
static const struct db_stmt rotate_service_secret = {
	"services_rotate_secret",
	"WITH s AS (UPDATE services SET secret_hash = $2::bytea WHERE name = $1 "
	"AND secret_hash IS NOT NULL RETURNING id, name) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'service.secret_rotated', $3, 'service:' || s.name, "
	"jsonb_build_object('service_id', s.id) FROM s RETURNING seq",
	3
};

static const struct db_stmt service_state = {
	"services_state",
	"SELECT disabled_at IS NOT NULL, secret_hash IS NOT NULL "
	"FROM services WHERE name = $1",
	1
};

static const struct db_stmt lookup_service = {
	"services_lookup",
	"SELECT id, name, secret_hash, disabled_at IS NOT NULL, audiences "
	"FROM services WHERE name = $1",
	1
};

/*
 * A recent successful secret authentication, keyed by the service's name
 * (its client_id), for introspection only: the statement that records the
 * use re-checks in the database that the service is still enabled and
 * still has this secret (decision 0005's rule: a cache may only make a
 * request fail).
 */
#define AUTH_AUDIENCES_BYTES	2048

struct auth_entry {
	unsigned char hmac[KEYS_HASH_LEN];
	int64_t id;
	size_t naudiences;
	char audiences[AUTH_AUDIENCES_BYTES];	/* NUL after each */
};

static struct cache *auth_cache;

int
services_cache_init(int ttl_ms)
{
	if (ttl_ms <= 0)
		return 0;
	auth_cache = cache_new(1024, sizeof(struct auth_entry), ttl_ms);
	return auth_cache != NULL ? 0 : -1;
}

void
services_cache_free(void)
{
	cache_free(auth_cache);
	auth_cache = NULL;
}

static int
auth_from_cache(const char *id, const char *secret, struct service *out)
{
	struct auth_entry e;
	unsigned char got[KEYS_HASH_LEN];
	const char *p;
	size_t i;
	int hit;

	if (auth_cache == NULL || !cache_get(auth_cache, id, &e))
		return 0;
	hit = keys_secret_hash(secret, strlen(secret), got) == 0 &&
	    CRYPTO_memcmp(got, e.hmac, KEYS_HASH_LEN) == 0;
	for (i = 0, p = e.audiences; hit && i < e.naudiences; i++) {
		if ((out->audiences[i] = strdup(p)) == NULL)
			hit = 0;
		p += strlen(p) + 1;
	}
	if (hit) {
		out->id = e.id;
		out->naudiences = e.naudiences;
		snprintf(out->name, sizeof(out->name), "%s", id);
		util_hex(got, KEYS_HASH_LEN, out->cred);
	} else
		services_clear(out);
	util_secure_zero(&e, sizeof(e));
	util_secure_zero(got, sizeof(got));
	return hit;
}

static void
auth_to_cache(const unsigned char mac[KEYS_HASH_LEN], const struct service *s)
{
	struct auth_entry e;
	size_t i, used = 0, n;

	if (auth_cache == NULL)
		return;
	memset(&e, 0, sizeof(e));
	for (i = 0; i < s->naudiences; i++) {
		n = strlen(s->audiences[i]) + 1;
		/* Too many or too long to remember: authenticate every time. */
		if (n > sizeof(e.audiences) - used)
			return;
		memcpy(e.audiences + used, s->audiences[i], n);
		used += n;
	}
	e.naudiences = s->naudiences;
	e.id = s->id;
	memcpy(e.hmac, mac, KEYS_HASH_LEN);
	cache_put(auth_cache, s->name, &e);
	util_secure_zero(&e, sizeof(e));
}

void
services_clear(struct service *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->naudiences; i++)
		free(s->audiences[i]);
	memset(s, 0, sizeof(*s));
}

int
services_has_audience(const struct service *s, const char *aud)
{
	size_t i;

	for (i = 0; aud != NULL && i < s->naudiences; i++)
		if (strcmp(s->audiences[i], aud) == 0)
			return 1;
	return 0;
}

static int
valid_audience(const char *a)
{
	size_t i, n = strlen(a);

	if (n == 0 || n > CS_AUDIENCE_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)a[i] <= 0x20 || (unsigned char)a[i] >= 0x7f)
			return 0;
	return 1;
}

/*
 * Parse a comma-separated audience list into an array literal for a
 * text[] parameter (*arr, caller frees). Returns CS_OK or the error.
 */
static enum cs_err
audience_param(const char *audiences, char **arr, struct cs_error *err)
{
	char *items[SERVICES_AUDIENCES_MAX], *copy = NULL;
	size_t n = 0, i = 0;
	int bad;
	enum cs_err rc = CS_OK;

	*arr = NULL;
	copy = strdup(audiences != NULL ? audiences : "");
	if (copy == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "out of memory");
	bad = util_split_list(copy, items, SERVICES_AUDIENCES_MAX, &n) != 0;
	for (i = 0; !bad && i < n; i++)
		bad = !valid_audience(items[i]);
	if (bad) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST, "--audience "
		    "is a comma-separated list of up to %d audiences "
		    "(printable ASCII, no spaces)", SERVICES_AUDIENCES_MAX);
		goto out;
	}
	if (n == 0) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "a service needs at least one audience");
		goto out;
	}
	if ((*arr = db_text_array((const char *const *)items, n)) == NULL)
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
out:
	free(copy);
	return rc;
}

enum cs_err
services_add(const char *name, const char *audiences, const char *actor,
    char *secret, struct cs_error *err)
{
	char *arr = NULL, *hash_param = NULL;
	const char *params[4];
	enum cs_err rc;

	if (!util_valid_name(name))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "service names "
		    "are 1-64 characters of [A-Za-z0-9._-]");
	if ((rc = audience_param(audiences, &arr, err)) != CS_OK)
		goto out;
	if (keys_new_secret(secret, &hash_param) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	params[0] = name;
	params[1] = arr;
	params[2] = hash_param;
	params[3] = actor;
	rc = db_exec(&insert_service, params, NULL);
	if (rc == CS_ERR_CONFLICT)
		cs_error_set(err, rc, "a service named '%s' already exists", name);
	else if (rc != CS_OK)
		cs_error_set(err, rc, "database error");
out:
	if (rc != CS_OK)
		util_secure_zero(secret, AGENTS_SECRET_LEN + 1);
	free(hash_param);
	free(arr);
	return rc;
}

enum cs_err
services_add_keyed(const char *name, const char *audiences, const char *actor,
    const char *jwk, const char *alg, const char *thumbprint,
    struct cs_error *err)
{
	char *arr = NULL;
	const char *params[6];
	enum cs_err rc;

	if (!util_valid_name(name))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "service names "
		    "are 1-64 characters of [A-Za-z0-9._-]");
	if ((rc = audience_param(audiences, &arr, err)) != CS_OK)
		goto out;
	params[0] = name;
	params[1] = arr;
	params[2] = jwk;
	params[3] = alg;
	params[4] = thumbprint;
	params[5] = actor;
	rc = db_exec(&insert_keyed_service, params, NULL);
	if (rc == CS_ERR_CONFLICT)
		cs_error_set(err, rc, "a service named '%s' already exists", name);
	else if (rc != CS_OK)
		cs_error_set(err, rc, "database error");
out:
	free(arr);
	return rc;
}

enum cs_err
services_list(json_t **out)
{
	return db_exec_json(&list_services, NULL, out);
}

static enum cs_err
auth_failed(const char *id, const char *method, const char *endpoint,
    const char *reason, struct cs_error *err)
{
	char clip[AUDIT_FIELD_MAX];
	json_t *d;
	enum cs_err rc;

	d = json_pack("{s:s, s:s, s:s}", "reason", reason, "method", method,
	    "endpoint", endpoint);
	rc = audit_append("service.auth_failed", "anonymous",
	    id != NULL ? audit_clip(id, clip, 80) : NULL, NULL, d);
	json_decref(d);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
	return cs_error_set(err, CS_ERR_INVALID_CLIENT,
	    "service authentication failed");
}

enum cs_err
services_authenticate(const char *authorization, const struct form *body,
    const char *endpoint, int cached, struct service *out,
    struct cs_error *err)
{
	char *id = NULL, *secret = NULL;
	const char *method = "none", *params[1];
	struct db_result *res = NULL;
	size_t n = 0;
	enum cs_err rc;

	memset(out, 0, sizeof(*out));
	switch (form_client_credentials(authorization, body, &id, &secret,
	    &method)) {
	case FORM_CRED_OK:
		break;
	case FORM_CRED_BOTH:
	case FORM_CRED_MISMATCH:
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "use exactly one client authentication method");
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
	if (cached && auth_from_cache(id, secret, out)) {
		rc = CS_OK;
		goto out;
	}
	params[0] = id;
	rc = db_exec(&lookup_service, params, &res);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check credentials right now");
		goto out;
	}
	if (!keys_secret_matches(secret, db_nrows(res) == 1 &&
	    !db_isnull(res, 0, 2) ? db_value(res, 0, 2) : NULL)) {
		/* A service registered with a key has no secret to match. */
		rc = auth_failed(id, method, endpoint, db_nrows(res) != 1 ?
		    "unknown_client" : db_isnull(res, 0, 2) ?
		    "secret_not_allowed" : "bad_secret", err);
		goto out;
	}
	if (strcmp(db_value(res, 0, 3), "t") == 0) {
		rc = auth_failed(id, method, endpoint, "disabled", err);
		goto out;
	}
	if (util_parse_int64(db_value(res, 0, 0), 1, INT64_MAX, &out->id) != 0 ||
	    db_parse_text_array(db_value(res, 0, 4), out->audiences,
	    SERVICES_AUDIENCES_MAX, &n) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	out->naudiences = n;
	snprintf(out->name, sizeof(out->name), "%s", db_value(res, 0, 1));
	{
		unsigned char mac[KEYS_HASH_LEN];

		if (keys_secret_hash(secret, strlen(secret), mac) != 0) {
			rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
			goto out;
		}
		util_hex(mac, sizeof(mac), out->cred);
		if (cached)
			auth_to_cache(mac, out);
		util_secure_zero(mac, sizeof(mac));
	}
	rc = CS_OK;
out:
	if (rc != CS_OK)
		services_clear(out);
	free(id);
	if (secret != NULL) {
		util_secure_zero(secret, strlen(secret));
		free(secret);
	}
	db_result_free(res);
	return rc;
}

/*
 * After an update that touched no row: why. CS_ERR_NOT_FOUND for an
 * unknown service, else CS_OK with *disabled and *has_secret set.
 */
static enum cs_err
state_of(const char *name, int *disabled, int *has_secret,
    struct cs_error *err)
{
	const char *params[1] = { name };
	struct db_result *res = NULL;
	enum cs_err rc;

	rc = db_exec(&service_state, params, &res);
	if (rc != CS_OK)
		cs_error_set(err, rc, "database error");
	else if (db_nrows(res) != 1)
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no service named '%s'",
		    name);
	else {
		*disabled = strcmp(db_value(res, 0, 0), "t") == 0;
		*has_secret = strcmp(db_value(res, 0, 1), "t") == 0;
	}
	db_result_free(res);
	return rc;
}

enum cs_err
services_disable(const char *name, const char *actor, int *changed,
    struct cs_error *err)
{
	const char *params[2] = { name, actor };
	struct db_result *res = NULL;
	enum cs_err rc;
	int disabled = 0, has_secret = 0;

	*changed = 0;
	rc = db_exec(&disable_service, params, &res);
	if (rc != CS_OK) {
		db_result_free(res);
		return cs_error_set(err, rc, "database error");
	}
	*changed = db_nrows(res) == 1;
	db_result_free(res);
	if (*changed)
		return CS_OK;
	return state_of(name, &disabled, &has_secret, err);
}

enum cs_err
services_rotate_secret(const char *name, const char *actor, char *secret,
    struct cs_error *err)
{
	const char *params[3];
	struct db_result *res = NULL;
	char *hash_param = NULL;
	enum cs_err rc;
	int disabled = 0, has_secret = 0;

	if (keys_new_secret(secret, &hash_param) != 0)
		return cs_error_set(err, CS_ERR_INTERNAL, "internal error");
	params[0] = name;
	params[1] = hash_param;
	params[2] = actor;
	rc = db_exec(&rotate_service_secret, params, &res);
	if (rc != CS_OK) {
		cs_error_set(err, rc, "database error");
		goto out;
	}
	if (db_nrows(res) == 1)
		goto out;
	if ((rc = state_of(name, &disabled, &has_secret, err)) == CS_OK)
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST, "service '%s' "
		    "authenticates with a registered key and has no secret",
		    name);
out:
	if (rc != CS_OK)
		util_secure_zero(secret, AGENTS_SECRET_LEN + 1);
	free(hash_param);
	db_result_free(res);
	return rc;
}
