/*
 * clientauth.c: see clientauth.h.
 *
 * The order of checks matters: nothing read from the assertion is trusted
 * before its signature verifies under the key registered for the client it
 * names, and the jti is only spent once every other check has passed, so a
 * refused assertion cannot burn an identifier for a later good one.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "clientauth.h"
#include "db.h"
#include "replay.h"
#include "util.h"

/* Largest key file the CLI reads. */
#define CLIENTAUTH_KEYFILE_MAX	16384
/* Most audiences an assertion may list. */
#define CLIENTAUTH_MAX_AUD	16

/*
 * Both realms answer the same first five columns (id, name, key, alg,
 * disabled); services add their audiences.
 */
static const struct db_stmt lookup_agent_key = {
	"clientauth_lookup",
	"SELECT id, name, public_jwk::text, key_alg, disabled_at IS NOT NULL "
	"FROM agents WHERE client_id = $1",
	1
};

static const struct db_stmt lookup_service_key = {
	"clientauth_lookup_service",
	"SELECT id, name, public_jwk::text, key_alg, disabled_at IS NOT NULL, "
	"audiences FROM services WHERE name = $1",
	1
};

/* What differs between the agent and the service realm. */
struct realm {
	const struct db_stmt *lookup;
	const char *audit_type;		/* of failures */
	const char *replay_prefix;	/* seen_jtis realm */
};

static const struct realm agents_realm = {
	&lookup_agent_key, "client.auth_failed", "client:"
};

static const struct realm services_realm = {
	&lookup_service_key, "service.auth_failed", "service:"
};

static const struct db_stmt insert_keyed_agent = {
	"clientauth_insert",
	"WITH a AS (INSERT INTO agents (name, client_id, public_jwk, key_alg, "
	"key_thumbprint, owner) VALUES ($1, $1, $2::jsonb, $3, $4, $5) "
	"RETURNING id, name) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'agent.created', $6, 'agent:' || a.name, "
	"jsonb_build_object('owner', $5::text, 'agent_id', a.id, "
	"'auth_method', 'private_key_jwt', 'key_thumbprint', $4::text) FROM a "
	"RETURNING seq",
	6
};

static const char *const header_allowed[] = { "alg", "kid", "typ", NULL };

int
clientauth_present(const struct form *body)
{
	return form_get(body, "client_assertion", NULL) != NULL ||
	    form_get(body, "client_assertion_type", NULL) != NULL;
}

/* Record a failed authentication; returns the code the caller reports. */
static enum cs_err
failed(const struct realm *realm, const char *client_id, const char *endpoint,
    const char *reason, struct cs_error *err)
{
	char clip[AUDIT_FIELD_MAX];
	json_t *d;
	enum cs_err rc;

	d = json_pack("{s:s, s:s, s:s}", "reason", reason, "method",
	    "private_key_jwt", "endpoint", endpoint);
	rc = audit_append(realm->audit_type, "anonymous",
	    client_id != NULL ? audit_clip(client_id, clip, 80) : NULL, NULL, d);
	json_decref(d);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
	return cs_error_set(err, CS_ERR_INVALID_CLIENT,
	    "client authentication failed (%s)", reason);
}

/* A JSON number that is a finite whole number of seconds, or -1. */
static int
numeric_date(const json_t *v, int64_t *out)
{
	double d;

	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_real(v))
		return -1;
	d = json_real_value(v);
	if (!isfinite(d) || d < 0 || d > 1e15)
		return -1;
	*out = (int64_t)d;
	return 0;
}

/* True if v is a string equal to the n bytes at s. */
static int
str_is(const json_t *v, const char *s)
{
	size_t n = strlen(s);

	return json_is_string(v) && json_string_length(v) == n &&
	    memcmp(json_string_value(v), s, n) == 0;
}

/* True if the audience string a is one of the URLs that name us. */
static int
aud_one_ok(const struct broker_config *cfg, const char *endpoint,
    const json_t *a)
{
	char url[700];

	if (str_is(a, cfg->issuer))
		return 1;
	snprintf(url, sizeof(url), "%s/oauth2/token", cfg->issuer);
	if (str_is(a, url))
		return 1;
	snprintf(url, sizeof(url), "%s/oauth2/%s", cfg->issuer, endpoint);
	return str_is(a, url);
}

/* RFC 7523 §3 item 3: aud, a string or an array, must name us. */
static int
aud_ok(const struct broker_config *cfg, const char *endpoint,
    const json_t *aud)
{
	size_t i;
	const json_t *a;

	if (json_is_string(aud))
		return aud_one_ok(cfg, endpoint, aud);
	if (!json_is_array(aud) || json_array_size(aud) == 0 ||
	    json_array_size(aud) > CLIENTAUTH_MAX_AUD)
		return 0;
	json_array_foreach(aud, i, a) {
		if (aud_one_ok(cfg, endpoint, a))
			return 1;
	}
	return 0;
}

/*
 * The claim checks of RFC 7523 §3 on a verified payload. Returns NULL if
 * they pass, or the reason for the audit row. *exp receives exp.
 */
static const char *
check_claims(const struct broker_config *cfg, const char *endpoint,
    const char *client_id, const json_t *claims, int64_t *exp)
{
	const json_t *jti;
	int64_t now = util_now(), t;

	if (!str_is(json_object_get(claims, "iss"), client_id))
		return "bad_iss";
	if (!str_is(json_object_get(claims, "sub"), client_id))
		return "bad_sub";
	if (!aud_ok(cfg, endpoint, json_object_get(claims, "aud")))
		return "bad_aud";
	if (json_object_get(claims, "exp") == NULL)
		return "missing_exp";
	if (numeric_date(json_object_get(claims, "exp"), exp) != 0)
		return "bad_exp";
	/* Written so that no input value can overflow the arithmetic. */
	if (*exp <= now - CLIENTAUTH_LEEWAY)
		return "expired";
	/*
	 * A long-lived assertion is a bearer credential in all but name;
	 * bounding exp also bounds how long its jti must be remembered.
	 */
	if (*exp > now + CLIENTAUTH_MAX_LIFETIME + CLIENTAUTH_LEEWAY)
		return "exp_too_far";
	if (json_object_get(claims, "nbf") != NULL &&
	    (numeric_date(json_object_get(claims, "nbf"), &t) != 0 ||
	    t > now + CLIENTAUTH_LEEWAY))
		return "not_yet_valid";
	if (json_object_get(claims, "iat") != NULL &&
	    (numeric_date(json_object_get(claims, "iat"), &t) != 0 ||
	    t > now + CLIENTAUTH_LEEWAY ||
	    t < now - CLIENTAUTH_MAX_LIFETIME - CLIENTAUTH_LEEWAY))
		return "bad_iat";
	jti = json_object_get(claims, "jti");
	/* An embedded NUL would shorten the identifier we remember. */
	if (!json_is_string(jti) || json_string_length(jti) == 0 ||
	    json_string_length(jti) > REPLAY_JTI_MAX ||
	    strlen(json_string_value(jti)) != json_string_length(jti))
		return "missing_jti";
	return NULL;
}

/* typ is optional; if present it must say this is a plain JWT. */
static int
typ_ok(const json_t *typ)
{
	return typ == NULL || str_is(typ, "JWT") || str_is(typ, "jwt") ||
	    str_is(typ, "client-authentication+jwt");
}

/*
 * The checks shared by both realms. On CS_OK *row is the client's row
 * (first columns: id, name, key, alg, disabled), which the caller frees.
 */
static enum cs_err
authenticate(const struct realm *realm, const struct broker_config *cfg,
    const char *authorization, const struct form *body, const char *endpoint,
    struct db_result **row, struct cs_error *err)
{
	struct jose_key key = { 0 };
	struct db_result *res = NULL;
	json_t *peeked = NULL, *header = NULL, *claims = NULL, *jwk = NULL;
	const char *assertion, *type, *body_id, *params[1], *reason;
	char id[CS_NAME_MAX + 1], seen[CS_NAME_MAX + 16];
	const json_t *iss;
	size_t n_assert = 0, n_type = 0, n_id = 0, alen;
	int64_t exp = 0;
	enum jose_result jr;
	enum cs_err rc;

	*row = NULL;
	id[0] = '\0';
	if (authorization != NULL ||
	    form_get(body, "client_secret", NULL) != NULL) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "use one client authentication method, not both");
		goto out;
	}
	assertion = form_get(body, "client_assertion", &n_assert);
	type = form_get(body, "client_assertion_type", &n_type);
	body_id = form_get(body, "client_id", &n_id);
	if (n_assert > 1 || n_type > 1 || n_id > 1) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "client assertion parameters must not repeat");
		goto out;
	}
	if (body_id != NULL)
		snprintf(id, sizeof(id), "%s", body_id);
	if (type == NULL || strcmp(type, CLIENTAUTH_ASSERTION_TYPE) != 0) {
		rc = failed(realm, body_id, endpoint, "bad_assertion_type", err);
		goto out;
	}
	if (assertion == NULL || (alen = strlen(assertion)) == 0 ||
	    alen > JOSE_MAX_TOKEN) {
		rc = failed(realm, body_id, endpoint, "malformed", err);
		goto out;
	}

	/*
	 * The client is named by client_id in the body or, as RFC 7521
	 * §4.2 allows, only by the assertion's own iss. Reading iss before
	 * verification only chooses which registered key to try.
	 */
	if (jose_peek(assertion, alen, NULL, &peeked) != JOSE_OK) {
		rc = failed(realm, body_id, endpoint, "malformed", err);
		goto out;
	}
	iss = json_object_get(peeked, "iss");
	if (body_id == NULL) {
		if (!json_is_string(iss) || json_string_length(iss) == 0 ||
		    json_string_length(iss) > CS_NAME_MAX ||
		    strlen(json_string_value(iss)) != json_string_length(iss)) {
			rc = failed(realm, NULL, endpoint, "malformed", err);
			goto out;
		}
		snprintf(id, sizeof(id), "%s", json_string_value(iss));
	} else if (strlen(body_id) > CS_NAME_MAX) {
		rc = failed(realm, body_id, endpoint, "malformed", err);
		goto out;
	}

	params[0] = id;
	if (db_exec(realm->lookup, params, &res) != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check credentials right now");
		goto out;
	}
	if (db_nrows(res) != 1) {
		rc = failed(realm, id, endpoint, "unknown_client", err);
		goto out;
	}
	if (db_isnull(res, 0, 2)) {
		/* A secret-holding client cannot switch methods on its own. */
		rc = failed(realm, id, endpoint, "no_key_registered", err);
		goto out;
	}
	jwk = json_loads(db_value(res, 0, 2), JSON_REJECT_DUPLICATES, NULL);
	if (jwk == NULL || jose_key_from_jwk(&key, jwk) != 0 ||
	    strcmp(jose_alg_name(key.alg), db_value(res, 0, 3)) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL,
		    "the registered key cannot be used");
		goto out;
	}

	jr = jose_verify_key(assertion, alen, &key, header_allowed, &header,
	    &claims);
	if (jr != JOSE_OK) {
		rc = failed(realm, id, endpoint, jose_result_name(jr), err);
		goto out;
	}
	if (!typ_ok(json_object_get(header, "typ"))) {
		rc = failed(realm, id, endpoint, "bad_typ", err);
		goto out;
	}
	if ((reason = check_claims(cfg, endpoint, id, claims, &exp)) != NULL) {
		rc = failed(realm, id, endpoint, reason, err);
		goto out;
	}
	if (strcmp(db_value(res, 0, 4), "t") == 0) {
		rc = failed(realm, id, endpoint, "disabled", err);
		goto out;
	}
	snprintf(seen, sizeof(seen), "%s%s", realm->replay_prefix,
	    db_value(res, 0, 1));
	switch (replay_remember(seen, json_string_value(json_object_get(claims,
	    "jti")), exp + CLIENTAUTH_LEEWAY)) {
	case CS_OK:
		break;
	case CS_ERR_CONFLICT:
		rc = failed(realm, id, endpoint, "replayed", err);
		goto out;
	default:
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check credentials right now");
		goto out;
	}
	*row = res;
	res = NULL;
	rc = CS_OK;
out:
	jose_key_clear(&key);
	json_decref(jwk);
	json_decref(peeked);
	json_decref(header);
	json_decref(claims);
	db_result_free(res);
	return rc;
}

enum cs_err
clientauth_authenticate(const struct broker_config *cfg,
    const char *authorization, const struct form *body, const char *endpoint,
    struct client *out, struct cs_error *err)
{
	struct db_result *row = NULL;
	enum cs_err rc;

	memset(out, 0, sizeof(*out));
	rc = authenticate(&agents_realm, cfg, authorization, body, endpoint,
	    &row, err);
	if (rc != CS_OK)
		goto out;
	if (util_parse_int64(db_value(row, 0, 0), 1, INT64_MAX,
	    &out->agent_id) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	/* Agents' client_id is their name (agents_add). */
	snprintf(out->name, sizeof(out->name), "%s", db_value(row, 0, 1));
	snprintf(out->client_id, sizeof(out->client_id), "%s",
	    db_value(row, 0, 1));
	out->method = "private_key_jwt";
out:
	db_result_free(row);
	return rc;
}

enum cs_err
clientauth_authenticate_service(const struct broker_config *cfg,
    const char *authorization, const struct form *body, const char *endpoint,
    struct service *out, struct cs_error *err)
{
	struct db_result *row = NULL;
	size_t n = 0;
	enum cs_err rc;

	memset(out, 0, sizeof(*out));
	rc = authenticate(&services_realm, cfg, authorization, body, endpoint,
	    &row, err);
	if (rc != CS_OK)
		goto out;
	if (util_parse_int64(db_value(row, 0, 0), 1, INT64_MAX, &out->id) != 0 ||
	    db_parse_text_array(db_value(row, 0, 5), out->audiences,
	    SERVICES_AUDIENCES_MAX, &n) != 0) {
		services_clear(out);
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	out->naudiences = n;
	snprintf(out->name, sizeof(out->name), "%s", db_value(row, 0, 1));
out:
	db_result_free(row);
	return rc;
}

enum cs_err
clientauth_register(const char *name, const char *owner, const char *actor,
    const struct jose_key *key, char *client_id, struct cs_error *err)
{
	const char *params[6];
	struct db_result *res = NULL;
	json_t *jwk = NULL;
	char *text = NULL;
	enum cs_err rc;

	if (!util_valid_name(name))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "agent name must be 1-64 characters of [A-Za-z0-9._-], "
		    "starting with a letter or digit");
	if (owner != NULL && (strlen(owner) > 256 ||
	    !util_valid_utf8(owner, strlen(owner))))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "owner must be valid text of at most 256 bytes");
	if ((jwk = jose_key_public_jwk(key)) == NULL ||
	    (text = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "cannot encode the key");
		goto out;
	}
	params[0] = name;
	params[1] = text;
	params[2] = jose_alg_name(key->alg);
	params[3] = key->kid;
	params[4] = owner;
	params[5] = actor;
	rc = db_exec(&insert_keyed_agent, params, &res);
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
	free(text);
	json_decref(jwk);
	db_result_free(res);
	return rc;
}

enum cs_err
clientauth_register_service(const char *name, const char *audiences,
    const char *actor, const struct jose_key *key, struct cs_error *err)
{
	json_t *jwk = NULL;
	char *text = NULL;
	enum cs_err rc;

	if ((jwk = jose_key_public_jwk(key)) == NULL ||
	    (text = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "cannot encode the key");
		goto out;
	}
	rc = services_add_keyed(name, audiences, actor, text,
	    jose_alg_name(key->alg), key->kid, err);
out:
	free(text);
	json_decref(jwk);
	return rc;
}

enum cs_err
clientauth_load_key(const char *path, struct jose_key *key,
    struct cs_error *err)
{
	char *text = NULL;
	size_t len = 0;
	json_t *jwk = NULL;
	enum cs_err rc = CS_OK;

	memset(key, 0, sizeof(*key));
	if (util_read_file(path, CLIENTAUTH_KEYFILE_MAX, &text, &len) != 0) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	jwk = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (jwk != NULL) {
		if (json_object_get(jwk, "d") != NULL)
			rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
			    "%s holds a private key; register the public key "
			    "only", path);
		else if (jose_key_from_jwk(key, jwk) != 0)
			rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
			    "%s is not a usable public JWK (EC P-256 with ES256 "
			    "or OKP Ed25519 with EdDSA)", path);
		goto out;
	}
	if (strstr(text, "PRIVATE KEY") != NULL) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "%s holds a private key; register the public key only", path);
		goto out;
	}
	if (jose_key_from_pem(key, text, len) != 0)
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "%s is neither a JWK nor a PEM public key of type EC P-256 "
		    "or Ed25519", path);
out:
	json_decref(jwk);
	if (text != NULL) {
		/* A mistaken private key file must not linger in memory. */
		util_secure_zero(text, len);
		free(text);
	}
	return rc;
}
