/*
 * api_wellknown.c: discovery (RFC 8414), JWKS (RFC 7517) and health.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "approvals.h"
#include "metrics.h"
#include "db.h"
#include "keys.h"
#include "log.h"

static const struct broker_config *cfg_;
static char *metadata;		/* built once: it only depends on config */
static size_t metadata_len;

const struct http_route api_routes[] = {
	{ "POST", "/oauth2/token", api_token, 0 },
	{ "POST", "/oauth2/bc-authorize", api_bc_authorize, 0 },
	{ "POST", "/oauth2/introspect", api_introspect, 0 },
	{ "POST", "/oauth2/revoke", api_revoke, 0 },
	{ "POST", "/v1/uses", api_uses, 0 },
	{ "GET", "/v1/audit", api_audit, 0 },
	{ "GET", "/v1/approvals", api_approvals_list, 0 },
	{ "GET", "/v1/approvals/", api_approvals_item, 1 },
	{ "POST", "/v1/approvals/", api_approvals_item, 1 },
	{ "GET", "/ui", api_ui_redirect, 0 },
	{ "GET", "/ui/", api_ui_static, 0 },
	{ "GET", "/ui/api/session", api_ui_session, 0 },
	{ "POST", "/ui/api/session", api_ui_session, 0 },
	{ "DELETE", "/ui/api/session", api_ui_session, 0 },
	{ "GET", "/ui/api/approvals", api_ui_approvals_list, 0 },
	{ "GET", "/ui/api/approvals/", api_ui_approvals_item, 1 },
	{ "POST", "/ui/api/approvals/", api_ui_approvals_item, 1 },
	/* After the API routes, which it would otherwise shadow. */
	{ "GET", "/ui/", api_ui_static, 1 },
	{ "GET", "/.well-known/jwks.json", api_jwks, 0 },
	{ "GET", "/.well-known/oauth-authorization-server", api_metadata, 0 },
	{ "GET", "/healthz", api_healthz, 0 },
	{ "GET", "/metrics", api_metrics, 0 },
	{ "GET", "/readyz", api_readyz, 0 },
	{ NULL, NULL, NULL, 0 }
};

const struct broker_config *
api_config(void)
{
	return cfg_;
}

/* An endpoint URL under the issuer, as a new JSON string. */
static json_t *
endpoint(const struct broker_config *cfg, const char *path)
{
	char url[700];

	snprintf(url, sizeof(url), "%s%s", cfg->issuer, path);
	return json_string(url);
}

int
api_init(const struct broker_config *cfg)
{
	json_t *m, *auth;

	cfg_ = cfg;
	if (api_limits_init(cfg) != 0)
		return -1;
	m = json_object();
	/* Agents and services may use secrets or keys. */
	auth = json_pack("[s, s, s]", "client_secret_basic",
	    "client_secret_post", "private_key_jwt");
	if (m == NULL || auth == NULL)
		goto fail;
	json_object_set_new(m, "issuer", json_string(cfg->issuer));
	json_object_set_new(m, "token_endpoint", endpoint(cfg, "/oauth2/token"));
	json_object_set_new(m, "jwks_uri", endpoint(cfg, "/.well-known/jwks.json"));
	json_object_set_new(m, "introspection_endpoint",
	    endpoint(cfg, "/oauth2/introspect"));
	json_object_set_new(m, "revocation_endpoint",
	    endpoint(cfg, "/oauth2/revoke"));
	json_object_set_new(m, "backchannel_authentication_endpoint",
	    endpoint(cfg, "/oauth2/bc-authorize"));
	json_object_set_new(m, "backchannel_token_delivery_modes_supported",
	    json_pack("[s]", "poll"));
	json_object_set_new(m, "backchannel_user_code_parameter_supported",
	    json_false());
	json_object_set_new(m, "grant_types_supported", json_pack("[s, s, s]",
	    "client_credentials", "urn:openid:params:grant-type:ciba",
	    "urn:ietf:params:oauth:grant-type:token-exchange"));
	/* No authorization endpoint, so no response types. */
	json_object_set_new(m, "response_types_supported", json_array());
	json_object_set(m, "token_endpoint_auth_methods_supported", auth);
	json_object_set(m, "introspection_endpoint_auth_methods_supported",
	    auth);
	json_object_set_new(m,
	    "introspection_endpoint_auth_signing_alg_values_supported",
	    json_pack("[s, s]", "ES256", "EdDSA"));
	json_object_set(m, "revocation_endpoint_auth_methods_supported",
	    auth);
	json_object_set_new(m, "token_endpoint_auth_signing_alg_values_supported",
	    json_pack("[s, s]", "ES256", "EdDSA"));
	json_object_set_new(m, "dpop_signing_alg_values_supported",
	    json_pack("[s, s]", "ES256", "EdDSA"));
	json_object_set_new(m,
	    "revocation_endpoint_auth_signing_alg_values_supported",
	    json_pack("[s, s]", "ES256", "EdDSA"));
	json_object_set_new(m, "access_token_signing_alg_values_supported",
	    json_pack("[s]", "ES256"));
	json_object_set_new(m, "authorization_details_types_supported",
	    json_pack("[s]", "*"));
	metadata = json_dumps(m, JSON_COMPACT);
	if (metadata == NULL)
		goto fail;
	metadata_len = strlen(metadata);
	json_decref(auth);
	json_decref(m);
	return 0;
fail:
	json_decref(auth);
	json_decref(m);
	return -1;
}

void
api_shutdown(void)
{
	free(metadata);
	metadata = NULL;
	api_limits_shutdown();
}

void
api_metadata(struct http_req *req)
{
	http_add_header(req, "Cache-Control", "public, max-age=3600");
	http_reply_bytes(req, 200, "application/json", metadata, metadata_len);
}

void
api_jwks(struct http_req *req)
{
	struct keyset *ks = NULL;
	const char *body, *etag, *inm;
	size_t len;

	if (keys_acquire(&ks) != CS_OK) {
		http_reply_errorf(req, CS_ERR_UNAVAILABLE,
		    "signing keys are not loaded yet");
		return;
	}
	body = keys_jwks(ks, &len, &etag);
	/*
	 * Short caching: a rotated key must reach verifiers well within the
	 * time the previous key stays published.
	 */
	http_add_header(req, "Cache-Control", "public, max-age=300");
	http_add_header(req, "ETag", etag);
	inm = http_req_header(req, "If-None-Match", NULL);
	if (inm != NULL && strcmp(inm, etag) == 0)
		http_reply_bytes(req, 304, "application/jwk-set+json", "", 0);
	else
		http_reply_bytes(req, 200, "application/jwk-set+json", body, len);
	keys_release(ks);
}

void
api_healthz(struct http_req *req)
{
	http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

void
api_metrics(struct http_req *req)
{
	struct approvals_gauges g;
	int up = approvals_gauges(&g) == 0;
	char *text = metrics_render(g.pending, g.keys_expiring, g.keys_expired,
	    up);

	if (text == NULL) {
		http_reply_errorf(req, CS_ERR_INTERNAL, "out of memory");
		return;
	}
	http_reply_bytes(req, 200, "text/plain; version=0.0.4", text,
	    strlen(text));
	free(text);
}

/*
 * Beyond this, the tokens of a broker ahead of PostgreSQL (and, with NTP on
 * both, of the verifiers) fail the verify library's default leeway.
 */
#define CLOCK_SKEW_WARN_MS	30000

void
api_readyz(struct http_req *req)
{
	static int warned;	/* racy on purpose: at worst a second warning */
	struct keyset *ks = NULL;
	int db_ok, keys_ok, off;
	int64_t skew = 0;
	json_t *j;

	db_ok = db_clock_skew(&skew) == CS_OK;
	keys_ok = keys_acquire(&ks) == CS_OK;
	keys_release(ks);
	j = json_pack("{s:s, s:b, s:b}", "status", db_ok && keys_ok ? "ready" :
	    "not_ready", "database", db_ok, "keys", keys_ok);
	/*
	 * Clock skew is reported, not a reason to leave the pool: if the
	 * database's clock is the wrong one, every broker would leave it.
	 */
	off = db_ok && (skew > CLOCK_SKEW_WARN_MS || skew < -CLOCK_SKEW_WARN_MS);
	if (db_ok)
		json_object_set_new(j, "clock_skew_ms", json_integer(skew));
	if (off && !warned)
		log_msg(LOG_LEVEL_WARN, "this host's clock is %lld ms %s PostgreSQL's: "
		    "tokens carry this clock and verifiers allow 30 s by default",
		    (long long)(skew < 0 ? -skew : skew), skew < 0 ? "behind" :
		    "ahead of");
	warned = off;
	http_reply_json(req, db_ok && keys_ok ? 200 : 503, j);
}
