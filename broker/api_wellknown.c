/*
 * api_wellknown.c: discovery (RFC 8414), JWKS (RFC 7517) and health.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "db.h"
#include "keys.h"

static const struct broker_config *cfg_;
static char *metadata;		/* built once: it only depends on config */
static size_t metadata_len;

const struct http_route api_routes[] = {
	{ "POST", "/oauth2/token", api_token, 0 },
	{ "POST", "/oauth2/bc-authorize", api_bc_authorize, 0 },
	{ "POST", "/oauth2/introspect", api_introspect, 0 },
	{ "POST", "/oauth2/revoke", api_revoke, 0 },
	{ "GET", "/v1/approvals", api_approvals_list, 0 },
	{ "GET", "/v1/approvals/", api_approvals_item, 1 },
	{ "POST", "/v1/approvals/", api_approvals_item, 1 },
	{ "GET", "/.well-known/jwks.json", api_jwks, 0 },
	{ "GET", "/.well-known/oauth-authorization-server", api_metadata, 0 },
	{ "GET", "/healthz", api_healthz, 0 },
	{ "GET", "/readyz", api_readyz, 0 },
	{ NULL, NULL, NULL, 0 }
};

const struct broker_config *
api_config(void)
{
	return cfg_;
}

int
api_init(const struct broker_config *cfg)
{
	char token_ep[600], jwks[600], bc[600], intro[600], revoke[600];
	json_t *m;

	cfg_ = cfg;
	snprintf(token_ep, sizeof(token_ep), "%s/oauth2/token", cfg->issuer);
	snprintf(jwks, sizeof(jwks), "%s/.well-known/jwks.json", cfg->issuer);
	snprintf(bc, sizeof(bc), "%s/oauth2/bc-authorize", cfg->issuer);
	snprintf(intro, sizeof(intro), "%s/oauth2/introspect", cfg->issuer);
	snprintf(revoke, sizeof(revoke), "%s/oauth2/revoke", cfg->issuer);
	m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:[s, s], s:[s, s], "
	    "s:[s], s:b, s:[s, s], s:[], s:[s, s], s:[s]}",
	    "issuer", cfg->issuer,
	    "token_endpoint", token_ep,
	    "introspection_endpoint", intro,
	    "revocation_endpoint", revoke,
	    "introspection_endpoint_auth_methods_supported",
	    "client_secret_basic", "client_secret_post",
	    "revocation_endpoint_auth_methods_supported",
	    "client_secret_basic", "client_secret_post",
	    "jwks_uri", jwks,
	    "backchannel_authentication_endpoint", bc,
	    "backchannel_token_delivery_modes_supported", "poll",
	    "backchannel_user_code_parameter_supported", 0,
	    "grant_types_supported", "client_credentials",
	    "urn:openid:params:grant-type:ciba",
	    "response_types_supported",
	    "token_endpoint_auth_methods_supported", "client_secret_basic",
	    "client_secret_post",
	    "access_token_signing_alg_values_supported", "ES256");
	if (m == NULL)
		return -1;
	metadata = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	if (metadata == NULL)
		return -1;
	metadata_len = strlen(metadata);
	return 0;
}

void
api_shutdown(void)
{
	free(metadata);
	metadata = NULL;
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
api_readyz(struct http_req *req)
{
	struct keyset *ks = NULL;
	int db_ok, keys_ok;

	db_ok = db_ping() == CS_OK;
	keys_ok = keys_acquire(&ks) == CS_OK;
	keys_release(ks);
	http_reply_json(req, db_ok && keys_ok ? 200 : 503,
	    json_pack("{s:s, s:b, s:b}", "status", db_ok && keys_ok ? "ready" :
	    "not_ready", "database", db_ok, "keys", keys_ok));
}
