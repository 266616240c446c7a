/*
 * http.h: the HTTP front end. http.c is the only file that includes
 * libmicrohttpd; api_*.c handlers see only this interface.
 *
 * A handler runs once per request, after the whole body has arrived (or
 * never, when limits already answered the request), in one of the worker
 * threads. It must set exactly one reply; http.c sends it, adds the common
 * headers and writes one log line per request.
 */
#ifndef HTTP_H
#define HTTP_H

#include <stddef.h>
#include <jansson.h>

#include "config.h"
#include "countersign.h"

struct http_req;

typedef void (*http_handler)(struct http_req *req);

struct http_route {
	const char *method;	/* "GET", "POST", "DELETE"; GET also answers HEAD */
	const char *path;	/* exact match, or a prefix when prefix is set */
	http_handler handler;
	int prefix;		/* match every path that starts with path */
};

/*
 * http_start(cfg, routes): listen on cfg->listen_host:listen_port with the
 * configured limits and serve routes (a table ending in a {NULL} entry,
 * which must outlive the server). Returns 0 or -1 (logged).
 */
int http_start(const struct broker_config *cfg, const struct http_route *routes);

/* http_stop(): stop accepting, finish and free everything. */
void http_stop(void);

/* Request accessors. Every returned pointer is owned by req. */
const char *http_req_method(const struct http_req *req);
const char *http_req_path(const struct http_req *req);
/* Header value by case-insensitive name, or NULL; count gets occurrences. */
const char *http_req_header(const struct http_req *req, const char *name,
    size_t *count);
const char *http_req_body(const struct http_req *req, size_t *len);
/* Cookie value by name, or NULL. */
const char *http_req_cookie(const struct http_req *req, const char *name);
/* Query-string argument, or NULL. */
const char *http_req_query(const struct http_req *req, const char *name);
const char *http_req_id(const struct http_req *req);
/*
 * http_req_peer(req): the client's address as numeric text, for limits
 * keyed by address. IPv6 addresses are cut to their /64, the block one
 * host usually holds. "" if unknown.
 */
const char *http_req_peer(struct http_req *req);

/*
 * http_req_content_type_is(req, type): 1 if the Content-Type's media type
 * (before any ';' parameters, case-insensitive) equals type.
 */
int http_req_content_type_is(const struct http_req *req, const char *type);

/*
 * Replies. json is consumed. http_reply_error maps err->code to a status
 * and OAuth error string (the one table for that); extra_header may add one
 * header (e.g. WWW-Authenticate) and may be NULL.
 */
void http_reply_json(struct http_req *req, unsigned status, json_t *json);
void http_reply_error(struct http_req *req, const struct cs_error *err);
void http_reply_errorf(struct http_req *req, enum cs_err code,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* body is copied. */
void http_reply_bytes(struct http_req *req, unsigned status,
    const char *content_type, const char *body, size_t len);
/* Add a response header (copied); call before or after choosing a reply. */
void http_add_header(struct http_req *req, const char *name,
    const char *value);

/* Fields for this request's log line (copied): e.g. "agent", "jti". */
void http_log_field(struct http_req *req, const char *key, const char *value);

/* http_status_for(code), http_oauth_error_for(code): the mapping table. */
unsigned http_status_for(enum cs_err code);
const char *http_oauth_error_for(enum cs_err code);

#endif
