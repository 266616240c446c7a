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
#include "clientauth.h"
#include "dpop.h"
#include "exchange.h"
#include "form.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "scoperate.h"
#include "scopes.h"
#include "tokens.h"
#include "tripwire.h"
#include "util.h"

/* Parameters that OAuth forbids repeating and we read. */
static const char *const single_params[] = {
	"grant_type", "scope", "requested_ttl", "client_id", "client_secret",
	"auth_req_id", "binding_message", "requested_expiry",
	"authorization_details", "subject_token", "subject_token_type",
	"requested_token_type", "actor_token", "actor_token_type", "actor", NULL
};

#define CIBA_GRANT	"urn:openid:params:grant-type:ciba"

static struct ratelimit *rl_token, *rl_bc, *rl_fail, *rl_introspect,
    *rl_approver;

int
api_limits_init(const struct broker_config *cfg)
{
	char errbuf[256];

	rl_token = ratelimit_new(cfg->rate_token);
	rl_bc = ratelimit_new(cfg->rate_bc_authorize);
	rl_fail = ratelimit_new(cfg->rate_auth_failures);
	rl_introspect = ratelimit_new(cfg->rate_introspect);
	rl_approver = ratelimit_new(cfg->rate_approver);
	if (scoperate_init(cfg->rate_scopes, errbuf, sizeof(errbuf)) != 0) {
		log_error("%s", errbuf);
		return -1;
	}
	return rl_token != NULL && rl_bc != NULL && rl_fail != NULL &&
	    rl_introspect != NULL && rl_approver != NULL &&
	    tripwire_init() == 0 ? 0 : -1;
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
	scoperate_shutdown();
	tripwire_shutdown();
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
api_locked_out_id(struct http_req *req, const char *id, const char *realm)
{
	char key[RATELIMIT_KEY_MAX];
	int retry = 0;

	if (id == NULL)
		return 0;
	snprintf(key, sizeof(key), "fail:%s:%.80s", realm, id);
	if (!ratelimit_peek(rl_fail, key, &retry)) {
		reply_limited(req, id, "failed authentication", retry);
		return 1;
	}
	return 0;
}

void
api_note_auth_failure_id(const char *id, const char *realm)
{
	char key[RATELIMIT_KEY_MAX];
	int retry = 0;

	if (id == NULL)
		return;
	snprintf(key, sizeof(key), "fail:%s:%.80s", realm, id);
	(void)ratelimit_take(rl_fail, key, &retry);
}

int
api_locked_out(struct http_req *req, const struct form *f, const char *realm)
{
	char *id = claimed_client(req, f);
	int locked = api_locked_out_id(req, id, realm);

	free(id);
	return locked;
}

void
api_note_auth_failure(struct http_req *req, const struct form *f,
    const char *realm)
{
	char *id = claimed_client(req, f);

	api_note_auth_failure_id(id, realm);
	/* The claimed id only (clipped), never what was offered as a secret. */
	log_event(LOG_LEVEL_WARN, "client.authentication_failed", json_pack(
	    "{s:s, s:s%}", "realm", realm, "client_id", id != NULL ? id : "",
	    id != NULL ? strnlen(id, 80) : 0));
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

	enum cs_err rc;

	if (api_locked_out(req, f, "agent"))
		return -1;
	if (clientauth_present(f))
		rc = clientauth_authenticate(api_config(),
		    http_req_header(req, "Authorization", NULL), f, endpoint,
		    client, &err);
	else
		rc = agents_authenticate(http_req_header(req, "Authorization",
		    NULL), f, endpoint, client, &err);
	if (rc != CS_OK) {
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

/* Take one request from the agent's budget of each limited scope named. */
static int
admit_scopes(struct http_req *req, const struct form *f,
    const struct client *client)
{
	char what[CS_SCOPE_MAX + 16];
	const char *which;
	int retry = 0;

	if (scoperate_take(client->name, form_get(f, "scope", NULL), &retry,
	    &which))
		return 0;
	snprintf(what, sizeof(what), "scope %s", which);
	reply_limited(req, client->name, what, retry);
	return -1;
}

/*
 * A tripwire has just suspended the client: forget its cached
 * authentication and answer as authentication now would (invalid_client).
 */
static void
reply_suspended(struct http_req *req, const struct client *client)
{
	struct cs_error err;

	if (agents_recheck(client, &err) == CS_OK)
		cs_error_set(&err, CS_ERR_INVALID_CLIENT, "client suspended");
	if (err.code == CS_ERR_INVALID_CLIENT)
		http_add_header(req, "WWW-Authenticate",
		    "Basic realm=\"countersign\"");
	http_reply_error(req, &err);
}

/*
 * After a refusal: count it for the denials tripwire. The refusal itself
 * is the answer either way; a suspension shows on the next request.
 */
static void
note_refusal(const struct client *client, const struct cs_error *err)
{
	switch (err->code) {
	case CS_ERR_INVALID_REQUEST:
	case CS_ERR_INVALID_GRANT:
	case CS_ERR_UNAUTHORIZED_CLIENT:
	case CS_ERR_INVALID_SCOPE:
	case CS_ERR_INVALID_TARGET:
	case CS_ERR_ACCESS_DENIED:
	case CS_ERR_REQUEST_DENIED:
		(void)tripwire_after_denial(client);
		break;
	default:
		break;
	}
}

/*
 * The DPoP proof of a request to path (RFC 9449 §4.3), if any. Returns 0
 * with jkt "" when there is none, 0 with jkt set when it is valid, or -1
 * having answered the request (a bad proof, or more than one).
 */
static int
dpop_proof(struct http_req *req, const char *path, char *jkt)
{
	struct cs_error err;
	const char *proof;
	char htu[700];
	size_t count = 0;

	jkt[0] = '\0';
	proof = http_req_header(req, "DPoP", &count);
	if (count == 0)
		return 0;
	if (count > 1) {
		http_reply_errorf(req, CS_ERR_INVALID_DPOP_PROOF,
		    "send exactly one DPoP header");
		return -1;
	}
	snprintf(htu, sizeof(htu), "%s%s", api_config()->issuer, path);
	if (dpop_check(proof, "POST", htu, NULL, jkt, &err) != CS_OK) {
		http_reply_error(req, &err);
		return -1;
	}
	return 0;
}

/*
 * Reply with a fresh token (RFC 6749 §5.1; RFC 9449 §5 when bound). By now
 * the token's row and its audit event are committed, so the log line
 * states a fact.
 */
static void
reply_token(struct http_req *req, const struct client *client,
    const struct token_issued *tok, int dpop)
{
	json_t *j;

	http_log_field(req, "jti", tok->jti);
	log_event(LOG_LEVEL_INFO, "token.issued", json_pack("{s:s, s:s, s:s, "
	    "s:I}", "agent", client->name, "jti", tok->jti, "scope", tok->scope,
	    "expires_in", (json_int_t)tok->expires_in));
	j = json_pack("{s:s, s:s, s:I, s:s}", "access_token", tok->access_token,
	    "token_type", dpop ? "DPoP" : "Bearer", "expires_in",
	    (json_int_t)tok->expires_in, "scope", tok->scope);
	http_reply_json(req, 200, j);
}

/* The CIBA poll: collect the token of an approved request. */
static void
ciba(struct http_req *req, const struct form *f, const struct client *client)
{
	struct token_issued tok = { 0 };
	struct cs_error err;
	const char *id = form_get(f, "auth_req_id", NULL);
	char jkt[JOSE_KID_LEN + 1], bound[JOSE_KID_LEN + 1];
	size_t nres = 0;
	int required = 0;

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
	if (dpop_proof(req, "/oauth2/token", jkt) != 0)
		return;
	/*
	 * A request made with a DPoP key is collected with the same key, so
	 * whoever steals an auth_req_id (or the agent's client credentials)
	 * cannot collect the approved token without the private key.
	 */
	switch (dpop_request_binding(id, client->agent_id, bound, &required)) {
	case CS_OK:
		if (bound[0] != '\0' && jkt[0] == '\0') {
			http_reply_errorf(req, CS_ERR_INVALID_DPOP_PROOF, "this "
			    "request was made with a DPoP key: collect it with a "
			    "DPoP proof by the same key");
			return;
		}
		if (bound[0] != '\0' && strcmp(bound, jkt) != 0) {
			http_reply_errorf(req, CS_ERR_INVALID_GRANT, "the DPoP key "
			    "differs from the one the request was made with");
			return;
		}
		if (bound[0] == '\0' && required) {
			http_reply_errorf(req, CS_ERR_INVALID_GRANT, "these scopes "
			    "require DPoP, but the request was made without a proof");
			return;
		}
		break;
	case CS_ERR_NOT_FOUND:
		/* approvals_collect answers unknown ids (and audits them). */
		break;
	default:
		http_reply_errorf(req, CS_ERR_UNAVAILABLE,
		    "the broker cannot check this request right now");
		return;
	}
	if (approvals_collect(api_config(), client, id, form_get(f, "scope", NULL),
	    form_get(f, "resource", NULL), jkt[0] != '\0' ? jkt : NULL, &tok,
	    &err) != CS_OK) {
		http_reply_error(req, &err);
		return;
	}
	reply_token(req, client, &tok, jkt[0] != '\0');
	tokens_issued_clear(&tok);
}

/* RFC 8693 token exchange (exchange.h has the rules). */
static void
token_exchange(struct http_req *req, const struct form *f,
    const struct client *client)
{
	struct exchange_request x;
	struct token_issued tok = { 0 };
	struct cs_error err;
	json_t *j;

	memset(&x, 0, sizeof(x));
	x.client = client;
	x.subject_token = form_get(f, "subject_token", NULL);
	x.subject_token_type = form_get(f, "subject_token_type", NULL);
	x.requested_token_type = form_get(f, "requested_token_type", NULL);
	x.actor_token = form_get(f, "actor_token", NULL);
	x.scope = form_get(f, "scope", NULL);
	x.resource = form_get(f, "resource", &x.n_resource);
	x.audience = form_get(f, "audience", &x.n_audience);
	x.actor = form_get(f, "actor", NULL);
	x.requested_ttl = form_get(f, "requested_ttl", NULL);
	if (exchange_token(api_config(), &x, &tok, &err) != CS_OK) {
		http_reply_error(req, &err);
		note_refusal(client, &err);
		return;
	}
	http_log_field(req, "jti", tok.jti);
	log_event(LOG_LEVEL_INFO, "token.exchanged", json_pack("{s:s, s:s, s:s, "
	    "s:I}", "agent", client->name, "jti", tok.jti, "scope", tok.scope,
	    "expires_in", (json_int_t)tok.expires_in));
	j = json_pack("{s:s, s:s, s:s, s:I, s:s}", "access_token",
	    tok.access_token, "issued_token_type", EXCHANGE_TYPE_AT,
	    "token_type", "Bearer", "expires_in", (json_int_t)tok.expires_in,
	    "scope", tok.scope);
	http_reply_json(req, 200, j);
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
	char jkt[JOSE_KID_LEN + 1];
	int64_t ttl = 0;
	int required = 0;

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
	if (dpop_proof(req, "/oauth2/token", jkt) != 0)
		goto out;
	if (jkt[0] == '\0') {
		if (dpop_required(&scopes, 1, &required) != CS_OK) {
			http_reply_errorf(req, CS_ERR_UNAVAILABLE,
			    "the broker cannot check this request right now");
			goto out;
		}
		if (required) {
			http_reply_errorf(req, CS_ERR_INVALID_DPOP_PROOF, "a scope "
			    "requested requires a DPoP proof (RFC 9449)");
			goto out;
		}
	}
	treq.client = client;
	treq.scopes = &scopes;
	treq.audience = resource;
	treq.requested_ttl = ttl;
	if (tripwire_check_audience(client, resource)) {
		reply_suspended(req, client);
		goto out;
	}
	treq.dpop_jkt = jkt[0] != '\0' ? jkt : NULL;
	if (tokens_issue_read(cfg, &treq, &tok, &err) != CS_OK) {
		http_reply_error(req, &err);
		note_refusal(client, &err);
		goto out;
	}
	reply_token(req, client, &tok, jkt[0] != '\0');
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
	    admit(req, rl_token, "token", &client) != 0 ||
	    admit_scopes(req, f, &client) != 0)
		goto out;
	if (strcmp(gt, "client_credentials") == 0)
		client_credentials(req, f, &client);
	else if (strcmp(gt, CIBA_GRANT) == 0)
		ciba(req, f, &client);
	else if (strcmp(gt, EXCHANGE_GRANT) == 0)
		token_exchange(req, f, &client);
	else
		http_reply_errorf(req, CS_ERR_UNSUPPORTED_GRANT_TYPE,
		    "grant_type must be client_credentials, " CIBA_GRANT
		    " or " EXCHANGE_GRANT);
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
	char id[APPROVALS_ID_LEN + 1], jkt[JOSE_KID_LEN + 1];
	int64_t ttl = 0, expiry = 0, expires_in = 0, interval = 0;
	int required = 0;

	f = parse_form_body(req);
	if (f == NULL)
		return;
	if (api_authenticate_agent(req, f, "bc-authorize", &client) != 0 ||
	    admit(req, rl_bc, "bc-authorize", &client) != 0 ||
	    admit_scopes(req, f, &client) != 0)
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
	if (dpop_proof(req, "/oauth2/bc-authorize", jkt) != 0)
		goto out;
	if (jkt[0] == '\0') {
		if (dpop_required(&scopes, 0, &required) != CS_OK) {
			http_reply_errorf(req, CS_ERR_UNAVAILABLE,
			    "the broker cannot check this request right now");
			goto out;
		}
		if (required) {
			http_reply_errorf(req, CS_ERR_INVALID_DPOP_PROOF, "a scope "
			    "requested requires a DPoP proof (RFC 9449): send one "
			    "with htu %s/oauth2/bc-authorize", api_config()->issuer);
			goto out;
		}
	}
	memset(&ask, 0, sizeof(ask));
	ask.client = &client;
	ask.scopes = &scopes;
	ask.audience = resource;
	ask.requested_ttl = ttl;
	ask.requested_expiry = expiry;
	ask.binding_message = msg;
	ask.authorization_details = form_get(f, "authorization_details", NULL);
	if (tripwire_check_audience(&client, resource) ||
	    tripwire_before_write_request(&client)) {
		reply_suspended(req, &client);
		goto out;
	}
	if (approvals_request(api_config(), &ask, id, &expires_in, &interval,
	    &err) != CS_OK) {
		http_reply_error(req, &err);
		note_refusal(&client, &err);
		goto out;
	}
	/*
	 * Bound before the id is returned: until then nobody can collect
	 * it. If binding fails, the id is never returned, so the request
	 * can never be collected and simply expires.
	 */
	if (jkt[0] != '\0' && dpop_bind_request(id, jkt) != CS_OK) {
		http_reply_errorf(req, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
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
