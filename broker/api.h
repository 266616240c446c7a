/*
 * api.h: the HTTP endpoint handlers (api_*.c) and the route table.
 * Handlers only translate between HTTP and module calls.
 */
#ifndef API_H
#define API_H

#include "config.h"
#include "http.h"

/* api_init(cfg): remember the configuration and precompute documents. */
int api_init(const struct broker_config *cfg);

/* api_shutdown(): free what api_init built. */
void api_shutdown(void);

/* api_limits_init(cfg) / api_limits_shutdown(): the per-agent limiters. */
int api_limits_init(const struct broker_config *cfg);
void api_limits_shutdown(void);

/*
 * api_authenticate_agent(req, f, endpoint, client): authenticate the agent
 * of a request, refusing (429) a client id that has failed too often
 * lately without even checking its secret. Answers the request and
 * returns -1 on any failure.
 */
struct client;
struct form;
int api_authenticate_agent(struct http_req *req, const struct form *f,
    const char *endpoint, struct client *client);

/*
 * api_locked_out(req, f, realm): 1 (having answered 429) if the client id
 * the request claims has failed authentication too often lately in realm
 * ("agent", "service"). api_note_auth_failure counts one more failure.
 */
int api_locked_out(struct http_req *req, const struct form *f,
    const char *realm);
void api_note_auth_failure(struct http_req *req, const struct form *f,
    const char *realm);
/*
 * api_locked_out_id / api_note_auth_failure_id: the same for a key the
 * caller names (id, e.g. a client address; NULL never locks out).
 */
int api_locked_out_id(struct http_req *req, const char *id,
    const char *realm);
void api_note_auth_failure_id(const char *id, const char *realm);

/*
 * An approver authenticator: fills a (cleared by the caller with
 * approvals_approver_clear) and returns 0, or answers the request and
 * returns -1. The approver API uses the Bearer key, the web page its
 * session cookie; both then share one implementation of the endpoints.
 */
struct approver;
typedef int (*api_approver_auth)(struct http_req *req, struct approver *a);

/*
 * api_approvals_serve_list(req, auth) / api_approvals_serve_item(req,
 * prefix, auth): GET a list, GET one request at prefix{id}, POST
 * prefix{id}/approve|deny; the approver is whoever auth says.
 */
void api_approvals_serve_list(struct http_req *req, api_approver_auth auth);
void api_approvals_serve_item(struct http_req *req, const char *prefix,
    api_approver_auth auth);

/*
 * api_peer_locked_out(req, realm) / api_note_peer_failure(req, realm): the
 * same lockout keyed by the client's address, for credentials that name
 * no client id (approver keys). The budget is rate_auth_failures.
 */
int api_peer_locked_out(struct http_req *req, const char *realm);
void api_note_peer_failure(struct http_req *req, const char *realm);

/*
 * api_admit(req, limit, who): take one request from who's budget for
 * limit. Returns 0 if allowed; else answers 429 with Retry-After (audited
 * as rate.limited) and returns -1.
 */
enum api_limit { API_LIMIT_INTROSPECT, API_LIMIT_APPROVER };
int api_admit(struct http_req *req, enum api_limit limit, const char *who);

/*
 * api_authenticate_approver(req, a): authenticate the approver key of a
 * request into *a (cleared by approvals_approver_clear), behind the
 * per-address failed-authentication lockout and the per-approver rate
 * limit. Answers the request and returns -1 on any failure.
 */
struct approver;
int api_authenticate_approver(struct http_req *req, struct approver *a);

/* The route table, ending in a {NULL} entry. */
extern const struct http_route api_routes[];

void api_token(struct http_req *req);
void api_bc_authorize(struct http_req *req);
void api_approvals_list(struct http_req *req);
void api_approvals_item(struct http_req *req);
void api_ui_redirect(struct http_req *req);
void api_ui_static(struct http_req *req);
void api_ui_session(struct http_req *req);
void api_ui_approvals_list(struct http_req *req);
void api_ui_approvals_item(struct http_req *req);
void api_introspect(struct http_req *req);
void api_revoke(struct http_req *req);
void api_uses(struct http_req *req);
void api_audit(struct http_req *req);
void api_jwks(struct http_req *req);
void api_metadata(struct http_req *req);
void api_healthz(struct http_req *req);
void api_readyz(struct http_req *req);
void api_metrics(struct http_req *req);

/* Shared by handlers: the broker configuration. */
const struct broker_config *api_config(void);

#endif
