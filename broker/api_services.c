/*
 * api_services.c: POST /oauth2/introspect (RFC 7662, for services) and
 * POST /oauth2/revoke (RFC 7009, for agents).
 */
#include <string.h>

#include "agents.h"
#include "api.h"
#include "clientauth.h"
#include "form.h"
#include "log.h"
#include "services.h"
#include "tokens.h"

/* Parse a form body, refusing repeated parameters we read. */
static struct form *
parse_body(struct http_req *req)
{
	static const char *const single[] = { "token", "token_type_hint",
	    "client_id", "client_secret", "dpop_proof", "htm", "htu", NULL };
	const char *body;
	struct form *f = NULL;
	size_t len, i, count;

	if (!http_req_content_type_is(req, "application/x-www-form-urlencoded")) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "the request body "
		    "must be application/x-www-form-urlencoded");
		return NULL;
	}
	body = http_req_body(req, &len);
	if (form_parse(body, len, &f) != FORM_OK) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
		    "the request body is not valid form encoding");
		return NULL;
	}
	for (i = 0; single[i] != NULL; i++) {
		form_get(f, single[i], &count);
		if (count > 1) {
			http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
			    "parameter '%s' is repeated", single[i]);
			form_free(f);
			return NULL;
		}
	}
	if (form_get(f, "token", NULL) == NULL) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "token is required");
		form_free(f);
		return NULL;
	}
	return f;
}

void
api_introspect(struct http_req *req)
{
	struct service svc;
	struct tokens_proof proof;
	struct cs_error err;
	struct form *f;
	json_t *out = NULL;
	enum cs_err rc;

	memset(&svc, 0, sizeof(svc));
	f = parse_body(req);
	if (f == NULL)
		return;
	if (api_locked_out(req, f, "service"))
		goto out;
	if (clientauth_present(f))
		rc = clientauth_authenticate_service(api_config(),
		    http_req_header(req, "Authorization", NULL), f, "introspect",
		    &svc, &err);
	else
		rc = services_authenticate(http_req_header(req, "Authorization",
		    NULL), f, "introspect", 1, &svc, &err);
	if (rc != CS_OK) {
		if (err.code == CS_ERR_INVALID_CLIENT) {
			api_note_auth_failure(req, f, "service");
			http_add_header(req, "WWW-Authenticate",
			    "Basic realm=\"countersign-services\"");
		}
		http_reply_error(req, &err);
		goto out;
	}
	http_log_field(req, "service", svc.name);
	if (api_admit(req, API_LIMIT_INTROSPECT, svc.name) != 0)
		goto out;
	/*
	 * A forwarded proof (dpop_proof, with the htm and htu of the
	 * service's own request) is checked inside tokens_introspect, before
	 * the use is counted.
	 */
	proof.proof = form_get(f, "dpop_proof", NULL);
	proof.htm = form_get(f, "htm", NULL);
	proof.htu = form_get(f, "htu", NULL);
	if (tokens_introspect(api_config(), svc.name, svc.cred,
	    (const char *const *)svc.audiences, svc.naudiences,
	    form_get(f, "token", NULL), &proof, &out, &err) != CS_OK) {
		http_reply_error(req, &err);
		goto out;
	}
	if (json_is_true(json_object_get(out, "active")))
		http_log_field(req, "jti", json_string_value(json_object_get(out,
		    "jti")));
	log_event(LOG_LEVEL_INFO, "token.introspected", json_pack("{s:s, s:s?, "
	    "s:b}", "service", svc.name, "jti", json_string_value(
	    json_object_get(out, "jti")), "active",
	    json_is_true(json_object_get(out, "active"))));
	http_reply_json(req, 200, out);
out:
	services_clear(&svc);
	form_free(f);
}

void
api_revoke(struct http_req *req)
{
	struct client client;
	struct cs_error err;
	struct form *f;

	f = parse_body(req);
	if (f == NULL)
		return;
	if (api_authenticate_agent(req, f, "revoke", &client) != 0)
		goto out;
	if (tokens_revoke(api_config(), &client, form_get(f, "token", NULL),
	    &err) != CS_OK) {
		http_reply_error(req, &err);
		goto out;
	}
	/* RFC 7009 §2.2: 200 whether or not the token was valid. */
	http_reply_bytes(req, 200, "application/json", "{}", 2);
out:
	form_free(f);
}
