/*
 * api_token.c: POST /oauth2/token (RFC 6749 §4.4 client_credentials, with
 * RFC 8707 resource indicators).
 */
#include <stdio.h>
#include <string.h>

#include "agents.h"
#include "api.h"
#include "form.h"
#include "scopes.h"
#include "tokens.h"
#include "util.h"

/* Parameters that OAuth forbids repeating and we read. */
static const char *const single_params[] = {
	"grant_type", "scope", "requested_ttl", "client_id", "client_secret",
	NULL
};

/*
 * Parse the body shared by every client-authenticated POST endpoint.
 * Answers the request itself and returns NULL when the body is unusable.
 */
static struct form *
parse_form_body(struct http_req *req)
{
	const char *body;
	struct form *f = NULL;
	size_t len, i, count;
	enum form_result fr;

	if (!http_req_content_type_is(req, "application/x-www-form-urlencoded")) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "the request body "
		    "must be application/x-www-form-urlencoded");
		return NULL;
	}
	body = http_req_body(req, &len);
	fr = form_parse(body, len, &f);
	if (fr != FORM_OK) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "%s",
		    fr == FORM_E_ENCODING ? "the request body is not valid UTF-8 "
		    "text (or contains control characters)" :
		    fr == FORM_E_TOO_MANY ? "too many parameters" :
		    "the request body is not valid form encoding");
		return NULL;
	}
	for (i = 0; single_params[i] != NULL; i++) {
		form_get(f, single_params[i], &count);
		if (count > 1) {
			http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
			    "parameter '%s' is repeated", single_params[i]);
			form_free(f);
			return NULL;
		}
	}
	return f;
}

/* RFC 8707 resource: exactly one, printable ASCII without spaces. */
static int
check_resource(struct http_req *req, const struct form *f,
    const char **resource)
{
	size_t count, i;
	const char *r = form_get(f, "resource", &count);

	if (count == 0) {
		http_reply_errorf(req, CS_ERR_INVALID_TARGET, "resource is "
		    "required: name the service the token is for");
		return -1;
	}
	if (count > 1) {
		http_reply_errorf(req, CS_ERR_INVALID_TARGET, "one resource per "
		    "token: a token carries exactly one audience");
		return -1;
	}
	if (r[0] == '\0' || strlen(r) > CS_AUDIENCE_MAX) {
		http_reply_errorf(req, CS_ERR_INVALID_TARGET, "resource must be "
		    "1-%d characters", CS_AUDIENCE_MAX);
		return -1;
	}
	for (i = 0; r[i] != '\0'; i++) {
		if ((unsigned char)r[i] <= 0x20 || (unsigned char)r[i] >= 0x7f) {
			http_reply_errorf(req, CS_ERR_INVALID_TARGET, "resource "
			    "must be printable ASCII without spaces");
			return -1;
		}
	}
	*resource = r;
	return 0;
}

static void
client_credentials(struct http_req *req, const struct form *f,
    const struct client *client)
{
	const struct broker_config *cfg = api_config();
	struct scope_list scopes = { 0 };
	struct token_request treq;
	struct token_issued tok = { 0 };
	struct cs_error err;
	const char *scope, *resource = NULL, *ttl_text;
	int64_t ttl = 0;
	json_t *j;

	scope = form_get(f, "scope", NULL);
	if (scope == NULL) {
		http_reply_errorf(req, CS_ERR_INVALID_SCOPE, "scope is required: "
		    "ask for exactly the scopes the task needs");
		goto out;
	}
	if (scopes_parse(scope, &scopes, &err) != CS_OK) {
		http_reply_error(req, &err);
		goto out;
	}
	if (check_resource(req, f, &resource) != 0)
		goto out;
	ttl_text = form_get(f, "requested_ttl", NULL);
	if (ttl_text != NULL && util_parse_int64(ttl_text, 1, UTIL_DURATION_MAX,
	    &ttl) != 0) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "requested_ttl "
		    "must be a positive number of seconds");
		goto out;
	}
	treq.client = client;
	treq.scopes = &scopes;
	treq.audience = resource;
	treq.requested_ttl = ttl;
	if (tokens_issue_read(cfg, &treq, &tok, &err) != CS_OK) {
		http_reply_error(req, &err);
		goto out;
	}
	http_log_field(req, "jti", tok.jti);
	j = json_pack("{s:s, s:s, s:I, s:s}", "access_token", tok.access_token,
	    "token_type", "Bearer", "expires_in", (json_int_t)tok.expires_in,
	    "scope", tok.scope);
	http_reply_json(req, 200, j);
out:
	tokens_issued_clear(&tok);
	scopes_clear(&scopes);
}

void
api_token(struct http_req *req)
{
	struct form *f = NULL;
	struct client client;
	struct cs_error err;
	const char *gt;

	f = parse_form_body(req);
	if (f == NULL)
		return;
	gt = form_get(f, "grant_type", NULL);
	if (gt == NULL) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
		    "grant_type is required");
		goto out;
	}
	if (agents_authenticate(http_req_header(req, "Authorization", NULL), f,
	    "token", &client, &err) != CS_OK) {
		if (err.code == CS_ERR_INVALID_CLIENT)
			http_add_header(req, "WWW-Authenticate",
			    "Basic realm=\"countersign\"");
		http_reply_error(req, &err);
		goto out;
	}
	http_log_field(req, "agent", client.name);
	if (strcmp(gt, "client_credentials") == 0)
		client_credentials(req, f, &client);
	else
		http_reply_errorf(req, CS_ERR_UNSUPPORTED_GRANT_TYPE,
		    "grant_type must be client_credentials");
out:
	form_free(f);
}
