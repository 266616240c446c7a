/*
 * api_approvals.c: the approver API (JSON), bearer-authenticated with an
 * approver key:
 *
 *   GET  /v1/approvals[?state=pending|approved|denied|expired|consumed|all]
 *   GET  /v1/approvals/{id}
 *   POST /v1/approvals/{id}/approve   {"reason"?, "params_hash"?, "scope"?, "ttl"?}
 *   POST /v1/approvals/{id}/deny      {"reason", "params_hash"?}
 *
 * The web page (api_ui.c) serves the same endpoints under /ui/api/ through
 * api_approvals_serve_*, authenticated by its session instead, so there is
 * one implementation of listing and deciding.
 *
 * Agents' credentials are never accepted here: approvers are a separate
 * realm. Keys come only in the Authorization header, so a browser cannot be
 * tricked into sending them cross-site.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "approvals.h"
#include "scopes.h"
#include "util.h"

#define PREFIX	"/v1/approvals/"

int
api_authenticate_approver(struct http_req *req, struct approver *a)
{
	struct cs_error err;

	/*
	 * An approver key names no approver, so failures are counted per
	 * client address; a locked-out address is refused before its key is
	 * even looked up. (Each refusal is still one rate.limited row.)
	 */
	memset(a, 0, sizeof(*a));
	if (api_peer_locked_out(req, "approver"))
		return -1;
	if (approvals_authenticate(http_req_header(req, "Authorization", NULL),
	    a, &err) != CS_OK) {
		if (err.code == CS_ERR_INVALID_TOKEN) {
			api_note_peer_failure(req, "approver");
			http_add_header(req, "WWW-Authenticate", "Bearer "
			    "realm=\"countersign-approvers\", error=\"invalid_token\"");
		}
		http_reply_error(req, &err);
		return -1;
	}
	http_log_field(req, "approver", a->name);
	if (api_admit(req, API_LIMIT_APPROVER, a->name) != 0) {
		approvals_approver_clear(a);
		return -1;
	}
	return 0;
}

void
api_approvals_list(struct http_req *req)
{
	api_approvals_serve_list(req, api_authenticate_approver);
}

void
api_approvals_item(struct http_req *req)
{
	api_approvals_serve_item(req, PREFIX, api_authenticate_approver);
}

void
api_approvals_serve_list(struct http_req *req, api_approver_auth auth)
{
	struct approver a;
	struct cs_error err;
	json_t *list = NULL;

	if (auth(req, &a) != 0)
		return;
	if (approvals_list(&a, http_req_query(req, "state"), &list, &err) != CS_OK)
		http_reply_error(req, &err);
	else
		http_reply_json(req, 200, json_pack("{s:o}", "approvals", list));
	approvals_approver_clear(&a);
}

/* Parse the decision body. Answers the request and returns -1 if bad. */
static int
parse_decision(struct http_req *req, int approve, struct approval_decision *d,
    struct scope_list *scopes, json_t **body)
{
	const char *text, *key;
	json_error_t jerr;
	json_t *v;
	size_t len;

	memset(d, 0, sizeof(*d));
	d->approve = approve;
	*body = NULL;
	if (!http_req_content_type_is(req, "application/json")) {
		http_reply_errorf(req, CS_ERR_UNSUPPORTED_MEDIA_TYPE,
		    "the body must be application/json");
		return -1;
	}
	text = http_req_body(req, &len);
	*body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (*body == NULL || !json_is_object(*body)) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
		    "the body must be a JSON object");
		return -1;
	}
	json_object_foreach(*body, key, v) {
		if (strcmp(key, "reason") == 0 && json_is_string(v))
			d->reason = json_string_value(v);
		else if (strcmp(key, "params_hash") == 0 && json_is_string(v))
			d->params_hash = json_string_value(v);
		else if (strcmp(key, "scope") == 0 && json_is_string(v) && approve) {
			struct cs_error err;

			if (scopes_parse(json_string_value(v), scopes, &err) != CS_OK) {
				err.code = CS_ERR_INVALID_REQUEST;
				http_reply_error(req, &err);
				return -1;
			}
			d->scopes = scopes;
		} else if (strcmp(key, "ttl") == 0 && json_is_integer(v) && approve) {
			d->ttl = json_integer_value(v);
			if (d->ttl < 1) {
				http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
				    "ttl must be a positive number of seconds");
				return -1;
			}
		} else {
			http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
			    "unexpected or mistyped member \"%.40s\"", key);
			return -1;
		}
	}
	/* The body strings must stay valid past form parsing: body owns them. */
	return 0;
}

void
api_approvals_serve_item(struct http_req *req, const char *prefix,
    api_approver_auth auth)
{
	const char *path = http_req_path(req) + strlen(prefix);
	const char *slash = strchr(path, '/');
	struct approver a;
	struct approval_decision d;
	struct scope_list scopes = { 0 };
	struct cs_error err;
	char id[65];
	size_t idlen = slash != NULL ? (size_t)(slash - path) : strlen(path);
	json_t *out = NULL, *body = NULL;
	int post = strcmp(http_req_method(req), "POST") == 0, approve;

	if (!util_valid_id(path, idlen) || (slash != NULL &&
	    strcmp(slash, "/approve") != 0 && strcmp(slash, "/deny") != 0)) {
		http_reply_errorf(req, CS_ERR_NOT_FOUND, "no such endpoint");
		return;
	}
	if (post != (slash != NULL)) {
		http_add_header(req, "Allow", post ? "GET, HEAD" : "POST");
		http_reply_errorf(req, CS_ERR_METHOD_NOT_ALLOWED,
		    "method not allowed on this endpoint");
		return;
	}
	memcpy(id, path, idlen);
	id[idlen] = '\0';
	if (auth(req, &a) != 0)
		return;
	http_log_field(req, "approval", id);
	if (!post) {
		if (approvals_get(&a, id, &out, &err) != CS_OK)
			http_reply_error(req, &err);
		else
			http_reply_json(req, 200, out);
		goto done;
	}
	approve = strcmp(slash, "/approve") == 0;
	if (parse_decision(req, approve, &d, &scopes, &body) != 0)
		goto done;
	if (approvals_decide(api_config(), &a, id, &d, &out, &err) != CS_OK)
		http_reply_error(req, &err);
	else
		http_reply_json(req, 200, out);
done:
	json_decref(body);
	scopes_clear(&scopes);
	approvals_approver_clear(&a);
}
