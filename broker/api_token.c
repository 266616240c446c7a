/*
 * api_token.c: POST /oauth2/token (RFC 6749 §4.4 client_credentials, with
 * RFC 8707 resource indicators).
 */
#include <stdio.h>
#include <string.h>

#include "agents.h"
#include "api.h"
#include "approvals.h"
#include "audit.h"
#include "form.h"
#include "metrics.h"
#include "ratelimit.h"
#include "scopes.h"
#include "tokens.h"
#include "util.h"

/* Parameters that OAuth forbids repeating and we read. */
static const char *const single_params[] = {
	"grant_type", "scope", "requested_ttl", "client_id", "client_secret",
	"auth_req_id", "binding_message", "requested_expiry",
	"authorization_details", NULL
};

#define CIBA_GRANT	"urn:openid:params:grant-type:ciba"

static struct ratelimit *rl_token, *rl_bc, *rl_fail, *rl_introspect,
    *rl_approver;

int
api_limits_init(const struct broker_config *cfg)
{
	rl_token = ratelimit_new(cfg->rate_token);
	rl_bc = ratelimit_new(cfg->rate_bc_authorize);
	rl_fail = ratelimit_new(cfg->rate_auth_failures);
	rl_introspect = ratelimit_new(cfg->rate_introspect);
	rl_approver = ratelimit_new(cfg->rate_approver);
	return rl_token != NULL && rl_bc != NULL && rl_fail != NULL &&
	    rl_introspect != NULL && rl_approver != NULL ? 0 : -1;
}

void
api_limits_shutdown(void)
{
	ratelimit_free(rl_token);
	ratelimit_free(rl_bc);
	ratelimit_free(rl_fail);
	ratelimit_free(rl_introspect);
	ratelimit_free(rl_approver);
	rl_token = rl_bc = rl_fail = rl_introspect = rl_approver = NULL;
}

/* Answer 429 with Retry-After, and record it. */
static void
reply_limited(struct http_req *req, const char *who, const char *what,
    int retry_after)
{
	char ra[16], clip[AUDIT_FIELD_MAX];
	json_t *d;

	metrics_inc(METRICS_RATE_LIMITED);
	snprintf(ra, sizeof(ra), "%d", retry_after);
	d = json_pack("{s:s, s:i}", "limit", what, "retry_after", retry_after);
	/* Best effort: the refusal stands even if it cannot be recorded. */
	(void)audit_append("rate.limited", "anonymous",
	    audit_clip(who, clip, 80), NULL, d);
	json_decref(d);
	http_add_header(req, "Retry-After", ra);
	http_reply_errorf(req, CS_ERR_RATE_LIMITED, "too many %s requests; "
	    "retry after %d seconds", what, retry_after);
}

/* The client id a request claims, for limits keyed by it (caller frees). */
static char *
claimed_client(struct http_req *req, const struct form *f)
{
	char *id = NULL, *secret = NULL;
	const char *method;

	form_client_credentials(http_req_header(req, "Authorization", NULL), f,
	    &id, &secret, &method);
	if (secret != NULL) {
		util_secure_zero(secret, strlen(secret));
		free(secret);
	}
	return id;
}

int
api_locked_out(struct http_req *req, const struct form *f, const char *realm)
{
	char *id = claimed_client(req, f), key[RATELIMIT_KEY_MAX];
	int retry = 0, locked = 0;

	snprintf(key, sizeof(key), "fail:%s:%.80s", realm, id != NULL ? id : "");
	if (id != NULL && !ratelimit_peek(rl_fail, key, &retry)) {
		reply_limited(req, id, "failed authentication", retry);
		locked = 1;
	}
	free(id);
	return locked;
}

void
api_note_auth_failure(struct http_req *req, const struct form *f,
    const char *realm)
{
	char *id = claimed_client(req, f), key[RATELIMIT_KEY_MAX];
	int retry = 0;

	snprintf(key, sizeof(key), "fail:%s:%.80s", realm, id != NULL ? id : "");
	if (id != NULL)
		(void)ratelimit_take(rl_fail, key, &retry);
	free(id);
}

int
api_peer_locked_out(struct http_req *req, const char *realm)
{
	char key[RATELIMIT_KEY_MAX];
	const char *peer = http_req_peer(req);
	int retry = 0;

	snprintf(key, sizeof(key), "fail:%s@%s", realm, peer);
	if (ratelimit_peek(rl_fail, key, &retry))
		return 0;
	reply_limited(req, peer, "failed authentication", retry);
	return 1;
}

void
api_note_peer_failure(struct http_req *req, const char *realm)
{
	char key[RATELIMIT_KEY_MAX];
	int retry = 0;

	snprintf(key, sizeof(key), "fail:%s@%s", realm, http_req_peer(req));
	(void)ratelimit_take(rl_fail, key, &retry);
}

int
api_admit(struct http_req *req, enum api_limit limit, const char *who)
{
	const char *what = limit == API_LIMIT_INTROSPECT ? "introspect" :
	    "approver";
	char key[RATELIMIT_KEY_MAX];
	int retry = 0;

	snprintf(key, sizeof(key), "%s:%.80s", what, who);
	if (ratelimit_take(limit == API_LIMIT_INTROSPECT ? rl_introspect :
	    rl_approver, key, &retry))
		return 0;
	reply_limited(req, who, what, retry);
	return -1;
}

int
api_authenticate_agent(struct http_req *req, const struct form *f,
    const char *endpoint, struct client *client)
{
	struct cs_error err;

	if (api_locked_out(req, f, "agent"))
		return -1;
	if (agents_authenticate(http_req_header(req, "Authorization", NULL), f,
	    endpoint, client, &err) != CS_OK) {
		if (err.code == CS_ERR_INVALID_CLIENT) {
			api_note_auth_failure(req, f, "agent");
			http_add_header(req, "WWW-Authenticate",
			    "Basic realm=\"countersign\"");
		}
		http_reply_error(req, &err);
		return -1;
	}
	http_log_field(req, "agent", client->name);
	return 0;
}

/* Take one request from an agent's budget for an endpoint. */
static int
admit(struct http_req *req, struct ratelimit *rl, const char *what,
    const struct client *client)
{
	char key[RATELIMIT_KEY_MAX];
	int retry = 0;

	snprintf(key, sizeof(key), "%s:%s", what, client->name);
	if (ratelimit_take(rl, key, &retry))
		return 0;
	reply_limited(req, client->name, what, retry);
	return -1;
}

/* Reply with a fresh token (RFC 6749 §5.1). */
static void
reply_token(struct http_req *req, const struct token_issued *tok)
{
	json_t *j;

	http_log_field(req, "jti", tok->jti);
	j = json_pack("{s:s, s:s, s:I, s:s}", "access_token", tok->access_token,
	    "token_type", "Bearer", "expires_in", (json_int_t)tok->expires_in,
	    "scope", tok->scope);
	http_reply_json(req, 200, j);
}

/* The CIBA poll: collect the token of an approved request. */
static void
ciba(struct http_req *req, const struct form *f, const struct client *client)
{
	struct token_issued tok = { 0 };
	struct cs_error err;
	const char *id = form_get(f, "auth_req_id", NULL);
	size_t nres = 0;

	if (id == NULL) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
		    "auth_req_id is required");
		return;
	}
	form_get(f, "resource", &nres);
	if (nres > 1) {
		http_reply_errorf(req, CS_ERR_INVALID_TARGET,
		    "one resource per token");
		return;
	}
	http_log_field(req, "auth_req_id", id);
	if (approvals_collect(api_config(), client, id, form_get(f, "scope", NULL),
	    form_get(f, "resource", NULL), &tok, &err) != CS_OK) {
		http_reply_error(req, &err);
		return;
	}
	reply_token(req, &tok);
	tokens_issued_clear(&tok);
}

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
	reply_token(req, &tok);
out:
	tokens_issued_clear(&tok);
	scopes_clear(&scopes);
}

void
api_token(struct http_req *req)
{
	struct form *f = NULL;
	struct client client;
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
	if (api_authenticate_agent(req, f, "token", &client) != 0 ||
	    admit(req, rl_token, "token", &client) != 0)
		goto out;
	if (strcmp(gt, "client_credentials") == 0)
		client_credentials(req, f, &client);
	else if (strcmp(gt, CIBA_GRANT) == 0)
		ciba(req, f, &client);
	else
		http_reply_errorf(req, CS_ERR_UNSUPPORTED_GRANT_TYPE,
		    "grant_type must be client_credentials or " CIBA_GRANT);
out:
	form_free(f);
}

/*
 * POST /oauth2/bc-authorize: an agent asks a human to approve a write
 * scope (CIBA-style backchannel authentication request, poll mode).
 */
void
api_bc_authorize(struct http_req *req)
{
	struct form *f = NULL;
	struct client client;
	struct scope_list scopes = { 0 };
	struct approval_ask ask;
	struct cs_error err;
	const char *scope, *resource = NULL, *text, *msg;
	char id[APPROVALS_ID_LEN + 1];
	int64_t ttl = 0, expiry = 0, expires_in = 0, interval = 0;

	f = parse_form_body(req);
	if (f == NULL)
		return;
	if (api_authenticate_agent(req, f, "bc-authorize", &client) != 0 ||
	    admit(req, rl_bc, "bc-authorize", &client) != 0)
		goto out;
	scope = form_get(f, "scope", NULL);
	if (scope == NULL) {
		http_reply_errorf(req, CS_ERR_INVALID_SCOPE, "scope is required");
		goto out;
	}
	if (scopes_parse(scope, &scopes, &err) != CS_OK) {
		http_reply_error(req, &err);
		goto out;
	}
	if (check_resource(req, f, &resource) != 0)
		goto out;
	text = form_get(f, "requested_ttl", NULL);
	if (text != NULL && util_parse_int64(text, 1, UTIL_DURATION_MAX,
	    &ttl) != 0) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "requested_ttl "
		    "must be a positive number of seconds");
		goto out;
	}
	text = form_get(f, "requested_expiry", NULL);
	if (text != NULL && util_parse_int64(text, 1, UTIL_DURATION_MAX,
	    &expiry) != 0) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "requested_expiry "
		    "must be a positive number of seconds");
		goto out;
	}
	msg = form_get(f, "binding_message", NULL);
	if (msg == NULL || msg[0] == '\0') {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "binding_message is "
		    "required: tell the approver why the agent needs this");
		goto out;
	}
	if (strlen(msg) > APPROVALS_MESSAGE_MAX || !approvals_check_text(msg)) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "binding_message "
		    "must be text of at most %d bytes without control or "
		    "bidirectional characters", APPROVALS_MESSAGE_MAX);
		goto out;
	}
	memset(&ask, 0, sizeof(ask));
	ask.client = &client;
	ask.scopes = &scopes;
	ask.audience = resource;
	ask.requested_ttl = ttl;
	ask.requested_expiry = expiry;
	ask.binding_message = msg;
	ask.authorization_details = form_get(f, "authorization_details", NULL);
	if (approvals_request(api_config(), &ask, id, &expires_in, &interval,
	    &err) != CS_OK) {
		http_reply_error(req, &err);
		goto out;
	}
	http_log_field(req, "auth_req_id", id);
	http_reply_json(req, 200, json_pack("{s:s, s:I, s:I}", "auth_req_id", id,
	    "expires_in", (json_int_t)expires_in, "interval",
	    (json_int_t)interval));
out:
	scopes_clear(&scopes);
	form_free(f);
}
