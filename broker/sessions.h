/*
 * sessions.h: sign-in sessions of the approver web page (docs/ui.md).
 *
 * An approver exchanges the API key for a session once; the browser then
 * carries only the session id, in an HttpOnly cookie. Sessions live in
 * PostgreSQL (ui_sessions) so every broker sharing the database accepts
 * them, and only the HMAC of an id is stored. Each session also has a
 * CSRF token, derived from the id by HMAC, that state-changing requests
 * must repeat in a header: a page on another origin can make the browser
 * send the cookie but can read neither the id nor the token.
 */
#ifndef SESSIONS_H
#define SESSIONS_H

#include <stdint.h>

#include "approvals.h"
#include "countersign.h"
#include "keys.h"

#define SESSIONS_ID_LEN		KEYS_SECRET_LEN	/* 32 random bytes, base64url */
#define SESSIONS_CSRF_LEN	43		/* 32 bytes, base64url */

/*
 * sessions_create(approver, ttl, id, csrf, expires_at, err): start a
 * session of ttl seconds for an approver already authenticated with the
 * key, and audit approver.signed_in (details name a short reference to
 * the session's hash, never the id). id (SESSIONS_ID_LEN + 1 bytes)
 * receives the session id for the cookie and csrf (SESSIONS_CSRF_LEN + 1)
 * its CSRF token; the caller wipes both. Expired sessions are purged on
 * the way. Returns CS_OK, or CS_ERR_UNAVAILABLE/CS_ERR_INTERNAL with id
 * and csrf wiped.
 */
enum cs_err sessions_create(const struct approver *approver, int64_t ttl,
    char *id, char *csrf, int64_t *expires_at, struct cs_error *err);

/*
 * sessions_lookup(id, idle, out, csrf, expires_at, err): the approver of
 * the live session id (unexpired, used within the last idle seconds,
 * approver not disabled; the use counts as activity) in out (cleared with
 * approvals_approver_clear by the caller), its CSRF token in csrf
 * (SESSIONS_CSRF_LEN + 1 bytes) and its expiry. An unknown, expired or
 * malformed id is CS_ERR_INVALID_TOKEN and is not audited: a stale cookie
 * is routine, and guessing a 256-bit id is not a threat worth a row.
 */
enum cs_err sessions_lookup(const char *id, int64_t idle,
    struct approver *out, char *csrf, int64_t *expires_at,
    struct cs_error *err);

/*
 * sessions_end(id, err): delete the session and audit approver.signed_out.
 * CS_ERR_INVALID_TOKEN if there was no such session.
 */
enum cs_err sessions_end(const char *id, struct cs_error *err);

/*
 * sessions_csrf_matches(expected, given): 1 if given (may be NULL) equals
 * the CSRF token expected, compared in constant time, else 0.
 */
int sessions_csrf_matches(const char *expected, const char *given);

#endif
