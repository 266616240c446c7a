/*
 * countersign.h: types shared by every module of the broker.
 *
 * Domain modules report failures with a struct cs_error: a small code that
 * http.c alone maps to an HTTP status and an OAuth error string, plus a
 * human-readable description that is safe to show to the caller (it never
 * contains a token, a secret or key material).
 */
#ifndef COUNTERSIGN_H
#define COUNTERSIGN_H

#include <stddef.h>
#include <stdint.h>

#define CS_VERSION "0.1.0"

enum cs_err {
	CS_OK = 0,
	CS_ERR_INVALID_REQUEST,		/* 400 invalid_request */
	CS_ERR_INVALID_CLIENT,		/* 401 invalid_client */
	CS_ERR_INVALID_GRANT,		/* 400 invalid_grant */
	CS_ERR_UNAUTHORIZED_CLIENT,	/* 400 unauthorized_client */
	CS_ERR_UNSUPPORTED_GRANT_TYPE,	/* 400 unsupported_grant_type */
	CS_ERR_INVALID_SCOPE,		/* 400 invalid_scope */
	CS_ERR_INVALID_TARGET,		/* 400 invalid_target (RFC 8707) */
	CS_ERR_ACCESS_DENIED,		/* 403 access_denied */
	CS_ERR_NOT_FOUND,		/* 404 not_found */
	CS_ERR_METHOD_NOT_ALLOWED,	/* 405 method_not_allowed */
	CS_ERR_CONFLICT,		/* 409 conflict */
	CS_ERR_TOO_LARGE,		/* 413 request_too_large */
	CS_ERR_UNSUPPORTED_MEDIA_TYPE,	/* 415 unsupported_media_type */
	CS_ERR_RATE_LIMITED,		/* 429 rate_limited (with Retry-After) */
	CS_ERR_AUTHORIZATION_PENDING,	/* 400 authorization_pending (CIBA) */
	CS_ERR_SLOW_DOWN,		/* 400 slow_down (CIBA) */
	CS_ERR_EXPIRED_TOKEN,		/* 400 expired_token (CIBA) */
	CS_ERR_REQUEST_DENIED,		/* 400 access_denied (CIBA: a human said no) */
	CS_ERR_INVALID_TOKEN,		/* 401 invalid_token (bearer auth) */
	CS_ERR_FORBIDDEN,		/* 403 forbidden */
	CS_ERR_INTERNAL,		/* 500 server_error */
	CS_ERR_UNAVAILABLE,		/* 503 temporarily_unavailable */
	CS_ERR_INVALID_DPOP_PROOF,	/* 400 invalid_dpop_proof (RFC 9449) */
	CS_ERR__COUNT
};

struct cs_error {
	enum cs_err code;
	char desc[256];
};

/*
 * cs_error_set(err, code, fmt, ...): record code and a formatted description
 * in err (which may be NULL) and return code, so callers can write
 * "return cs_error_set(err, CS_ERR_INVALID_SCOPE, "...")".
 */
enum cs_err cs_error_set(struct cs_error *err, enum cs_err code,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Upper bounds every parser relies on. */
#define CS_NAME_MAX		64	/* agent, approver, service names */
#define CS_SCOPE_MAX		128	/* one scope token */
#define CS_SCOPES_MAX		32	/* scopes in one request */
#define CS_AUDIENCE_MAX		256	/* one resource / audience */
#define CS_JTI_LEN		22	/* util_token_id: time, then 90 random bits */

#endif
