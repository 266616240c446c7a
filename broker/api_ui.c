/*
 * api_ui.c: the approver web page (docs/ui.md).
 *
 *   GET    /ui, /ui/, /ui/{asset}       the page: files embedded at build time
 *   POST   /ui/api/session {"key"}      sign in: API key -> session cookie
 *   GET    /ui/api/session              who is signed in, and the CSRF token
 *   DELETE /ui/api/session              sign out
 *   GET    /ui/api/approvals[?state=]   as GET /v1/approvals
 *   GET    /ui/api/approvals/{id}       as GET /v1/approvals/{id}
 *   POST   /ui/api/approvals/{id}/approve|deny   as under /v1/approvals
 *
 * The approval endpoints are those of api_approvals.c, authenticated by the
 * session instead of the Bearer key. A browser sends cookies with requests
 * other sites make it send, so every state-changing request must pass three
 * independent checks: the cookie is SameSite=Strict (not sent cross-site at
 * all), the Origin and Sec-Fetch-Site headers the browser sets must name
 * this origin, and the X-CSRF-Token header must repeat the session's CSRF
 * token, which only a script of this origin can have read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "approvals.h"
#include "embedded.h"
#include "sessions.h"
#include "util.h"

#define UI_PREFIX		"/ui/"
#define UI_APPROVALS_PREFIX	"/ui/api/approvals/"

/*
 * Over https the cookie takes the __Host- prefix, which browsers accept
 * only with Secure, Path=/ and no Domain, so neither a sibling subdomain
 * nor a plain-http page can plant or overwrite it.
 */
#define COOKIE_PLAIN		"cs_session"
#define COOKIE_SECURE		"__Host-cs_session"

/*
 * The page's policy: its own files only, nothing inline (so injected
 * markup cannot run script), no framing (clickjacking), no form posts
 * anywhere (the sign-in form is submitted by script, never as a GET whose
 * URL would carry the key).
 */
static const char page_csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static const char *
cookie_name(void)
{
	return api_config()->ui_cookie_secure ? COOKIE_SECURE : COOKIE_PLAIN;
}

static const char *
content_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot == NULL)
		return "application/octet-stream";
	if (strcmp(dot, ".html") == 0)
		return "text/html; charset=utf-8";
	if (strcmp(dot, ".js") == 0)
		return "text/javascript; charset=utf-8";
	if (strcmp(dot, ".css") == 0)
		return "text/css; charset=utf-8";
	if (strcmp(dot, ".svg") == 0)
		return "image/svg+xml";
	return "application/octet-stream";
}

void
api_ui_redirect(struct http_req *req)
{
	http_add_header(req, "Location", UI_PREFIX);
	http_reply_bytes(req, 308, "text/plain; charset=utf-8", "", 0);
}

void
api_ui_static(struct http_req *req)
{
	const char *name = http_req_path(req) + strlen(UI_PREFIX);
	const struct embedded_file *f;

	if (*name == '\0')
		name = "index.html";
	/* Names are compared whole, so no path can reach outside the table. */
	for (f = embedded_ui; f->name != NULL; f++)
		if (strcmp(f->name, name) == 0)
			break;
	if (f->name == NULL) {
		http_reply_errorf(req, CS_ERR_NOT_FOUND, "no such endpoint");
		return;
	}
	http_add_header(req, "Content-Security-Policy", page_csp);
	http_add_header(req, "X-Frame-Options", "DENY");
	/* Small files that change with the binary: revalidate every time. */
	http_add_header(req, "Cache-Control", "no-cache");
	http_reply_bytes(req, 200, content_type(f->name), (const char *)f->data,
	    f->len);
}

/*
 * 1 if the request may come from our own page: a Sec-Fetch-Site header,
 * when the browser sends one, says same-origin, and an Origin header, when
 * there is one, is this origin. Clients that send neither (curl, scripts)
 * are not browsers that a third-party page could steer; they still need
 * the CSRF token.
 */
static int
same_origin(struct http_req *req)
{
	const char *site = http_req_header(req, "Sec-Fetch-Site", NULL);
	const char *origin = http_req_header(req, "Origin", NULL);
	const char *host = http_req_header(req, "Host", NULL);
	char want[600];

	if (site != NULL && strcmp(site, "same-origin") != 0)
		return 0;
	if (origin == NULL)
		return 1;
	if (host == NULL)
		return 0;
	if (snprintf(want, sizeof(want), "%s://%s", api_config()->ui_cookie_secure ?
	    "https" : "http", host) >= (int)sizeof(want))
		return 0;
	return strcmp(origin, want) == 0;
}

static int
state_changing(const struct http_req *req)
{
	const char *m = http_req_method(req);

	return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0;
}

/*
 * The session authenticator of the approval endpoints (api_approver_auth).
 * The origin is judged before the session so that a cross-site attempt is
 * refused as such (403) whether or not the browser attached the cookie.
 */
static int
session_auth(struct http_req *req, struct approver *a)
{
	char csrf[SESSIONS_CSRF_LEN + 1];
	struct cs_error err;
	int64_t expires_at;
	int rc = -1;

	memset(a, 0, sizeof(*a));
	if (state_changing(req) && !same_origin(req)) {
		http_log_field(req, "refused", "cross_origin");
		http_reply_errorf(req, CS_ERR_FORBIDDEN,
		    "cross-origin request refused");
		return -1;
	}
	if (sessions_lookup(http_req_cookie(req, cookie_name()),
	    api_config()->ui_session_idle, a, csrf,
	    &expires_at, &err) != CS_OK) {
		http_reply_error(req, &err);
		return -1;
	}
	if (state_changing(req) && !sessions_csrf_matches(csrf,
	    http_req_header(req, "X-CSRF-Token", NULL))) {
		http_log_field(req, "refused", "csrf_token");
		http_reply_errorf(req, CS_ERR_FORBIDDEN,
		    "missing or wrong X-CSRF-Token header");
		approvals_approver_clear(a);
		goto out;
	}
	http_log_field(req, "approver", a->name);
	/* The same per-approver budget as the Bearer API (rate_approver). */
	if (api_admit(req, API_LIMIT_APPROVER, a->name) != 0) {
		approvals_approver_clear(a);
		goto out;
	}
	rc = 0;
out:
	util_secure_zero(csrf, sizeof(csrf));
	return rc;
}

void
api_ui_approvals_list(struct http_req *req)
{
	api_approvals_serve_list(req, session_auth);
}

void
api_ui_approvals_item(struct http_req *req)
{
	api_approvals_serve_item(req, UI_APPROVALS_PREFIX, session_auth);
}

/* The session document: who is signed in, until when, the CSRF token. */
static json_t *
session_json(const struct approver *a, const char *csrf, int64_t expires_at)
{
	char exp[40];
	json_t *groups = json_array();
	size_t i;

	if (util_format_rfc3339(expires_at, exp, sizeof(exp)) != 0)
		exp[0] = '\0';
	for (i = 0; groups != NULL && i < a->ngroups; i++)
		json_array_append_new(groups, json_string(a->groups[i]));
	return json_pack("{s:{s:s, s:s, s:o*}, s:s, s:s}", "approver", "name",
	    a->name, "email", a->email, "groups", groups, "csrf_token", csrf,
	    "expires_at", exp);
}

static void
set_cookie(struct http_req *req, const char *value, int64_t max_age)
{
	const struct broker_config *cfg = api_config();
	char cookie[256];

	snprintf(cookie, sizeof(cookie), "%s=%s; Path=%s; Max-Age=%lld; "
	    "HttpOnly; SameSite=Strict%s", cookie_name(), value,
	    cfg->ui_cookie_secure ? "/" : UI_PREFIX, (long long)max_age,
	    cfg->ui_cookie_secure ? "; Secure" : "");
	http_add_header(req, "Set-Cookie", cookie);
	util_secure_zero(cookie, sizeof(cookie));
}

static void
sign_in(struct http_req *req)
{
	char id[SESSIONS_ID_LEN + 1] = "";
	char csrf[SESSIONS_CSRF_LEN + 1] = "";
	const char *text;
	struct approver a;
	struct cs_error err;
	json_error_t jerr;
	json_t *body = NULL, *key = NULL;
	int64_t expires_at;
	size_t len;

	memset(&a, 0, sizeof(a));
	if (!same_origin(req)) {
		http_log_field(req, "refused", "cross_origin");
		http_reply_errorf(req, CS_ERR_FORBIDDEN,
		    "cross-origin request refused");
		goto out;
	}
	/*
	 * Failed sign-ins count per client address, in the same budget as
	 * wrong keys on the Bearer API: the key names no one until it
	 * matches, so there is no claimed identity to key on.
	 */
	if (api_peer_locked_out(req, "approver"))
		goto out;
	if (!http_req_content_type_is(req, "application/json")) {
		http_reply_errorf(req, CS_ERR_UNSUPPORTED_MEDIA_TYPE,
		    "the body must be application/json");
		goto out;
	}
	text = http_req_body(req, &len);
	body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	key = body != NULL ? json_object_get(body, "key") : NULL;
	if (!json_is_object(body) || json_object_size(body) != 1 ||
	    !json_is_string(key)) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
		    "the body must be {\"key\": \"<approver key>\"}");
		goto out;
	}
	if (approvals_authenticate_key(json_string_value(key), &a,
	    &err) != CS_OK) {
		if (err.code == CS_ERR_INVALID_TOKEN)
			api_note_peer_failure(req, "approver");
		http_reply_error(req, &err);
		goto out;
	}
	if (sessions_create(&a, api_config()->ui_session_ttl, id, csrf,
	    &expires_at, &err) != CS_OK) {
		http_reply_error(req, &err);
		goto out;
	}
	http_log_field(req, "approver", a.name);
	set_cookie(req, id, api_config()->ui_session_ttl);
	http_reply_json(req, 200, session_json(&a, csrf, expires_at));
out:
	/* The key sits in jansson's copy too; the request body is wiped by http.c. */
	if (json_is_string(key))
		util_secure_zero((char *)json_string_value(key),
		    json_string_length(key));
	json_decref(body);
	util_secure_zero(id, sizeof(id));
	util_secure_zero(csrf, sizeof(csrf));
	approvals_approver_clear(&a);
}

static void
whoami(struct http_req *req)
{
	char csrf[SESSIONS_CSRF_LEN + 1] = "";
	struct approver a;
	struct cs_error err;
	int64_t expires_at;

	if (sessions_lookup(http_req_cookie(req, cookie_name()),
	    api_config()->ui_session_idle, &a, csrf,
	    &expires_at, &err) != CS_OK) {
		http_reply_error(req, &err);
		return;
	}
	http_log_field(req, "approver", a.name);
	http_reply_json(req, 200, session_json(&a, csrf, expires_at));
	util_secure_zero(csrf, sizeof(csrf));
	approvals_approver_clear(&a);
}

static void
sign_out(struct http_req *req)
{
	struct approver a;
	struct cs_error err;

	if (session_auth(req, &a) != 0)
		return;
	if (sessions_end(http_req_cookie(req, cookie_name()), &err) != CS_OK)
		http_reply_error(req, &err);
	else {
		set_cookie(req, "", 0);
		http_reply_json(req, 200, json_pack("{s:b}", "signed_out", 1));
	}
	approvals_approver_clear(&a);
}

void
api_ui_session(struct http_req *req)
{
	const char *m = http_req_method(req);

	if (strcmp(m, "POST") == 0)
		sign_in(req);
	else if (strcmp(m, "DELETE") == 0)
		sign_out(req);
	else
		whoami(req);
}
