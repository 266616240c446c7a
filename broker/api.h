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

/* The route table, ending in a {NULL} entry. */
extern const struct http_route api_routes[];

void api_token(struct http_req *req);
void api_bc_authorize(struct http_req *req);
void api_approvals_list(struct http_req *req);
void api_approvals_item(struct http_req *req);
void api_introspect(struct http_req *req);
void api_revoke(struct http_req *req);
void api_uses(struct http_req *req);
void api_audit(struct http_req *req);
void api_jwks(struct http_req *req);
void api_metadata(struct http_req *req);
void api_healthz(struct http_req *req);
void api_readyz(struct http_req *req);

/* Shared by handlers: the broker configuration. */
const struct broker_config *api_config(void);

#endif
