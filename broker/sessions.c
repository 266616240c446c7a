/*
 * sessions.c: see sessions.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "b64.h"
#include "db.h"
#include "log.h"
#include "sessions.h"
#include "util.h"

/*
 * The insert and its audit event are one statement, so a session never
 * exists without its approver.signed_in row. The session reference in the
 * details is a prefix of the stored HMAC: enough to pair a sign-in with its
 * sign-out, useless as a cookie.
 */
static const struct db_stmt session_insert = {
	"sessions_insert",
	"WITH s AS (INSERT INTO ui_sessions (id_hash, approver_id, expires_at) "
	"VALUES ($1::bytea, $2::bigint, to_timestamp($3::bigint)) "
	"RETURNING id_hash, approver_id, expires_at) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approver.signed_in', 'approver:' || $4, 'approver:' || $4, "
	"jsonb_build_object('approver_id', s.approver_id, 'via', 'ui', "
	"'session', encode(substr(s.id_hash, 1, 8), 'hex'), "
	"'expires_at', s.expires_at) FROM s RETURNING seq",
	4
};

static const struct db_stmt session_purge = {
	"sessions_purge",
	"DELETE FROM ui_sessions WHERE expires_at <= now()",
	0
};

/*
 * A live session: unexpired, used within the idle time ($2 seconds), its
 * approver enabled and the approver's key unexpired (a session is never
 * worth more than the key that signed it in). Using it moves last_seen_at, but only once it is a
 * little old (a quarter of the idle time, at most 15 s), so a page that
 * polls every few seconds does not write a row version each time.
 */
static const struct db_stmt session_lookup = {
	"sessions_lookup",
	"WITH s AS (SELECT s.approver_id, s.expires_at, s.last_seen_at "
	"FROM ui_sessions s WHERE s.id_hash = $1::bytea "
	"AND s.expires_at > now() "
	"AND s.last_seen_at > now() - make_interval(secs => $2::bigint)), "
	"u AS (UPDATE ui_sessions SET last_seen_at = now() "
	"WHERE id_hash = $1::bytea AND EXISTS (SELECT 1 FROM s) "
	"AND last_seen_at < now() - make_interval(secs => "
	"least(15, $2::bigint / 4.0))) "
	"SELECT p.id, p.name, coalesce(p.email, ''), p.groups, "
	"extract(epoch FROM s.expires_at)::bigint "
	"FROM s JOIN approvers p ON p.id = s.approver_id "
	"WHERE p.disabled_at IS NULL "
	"AND (p.key_expires_at IS NULL OR p.key_expires_at > now())",
	2
};

static const struct db_stmt session_delete = {
	"sessions_delete",
	"WITH s AS (DELETE FROM ui_sessions WHERE id_hash = $1::bytea "
	"RETURNING id_hash, approver_id) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approver.signed_out', 'approver:' || p.name, "
	"'approver:' || p.name, jsonb_build_object('approver_id', p.id, "
	"'via', 'ui', 'session', encode(substr(s.id_hash, 1, 8), 'hex')) "
	"FROM s JOIN approvers p ON p.id = s.approver_id RETURNING seq",
	1
};

/*
 * The CSRF token is the HMAC of the session id under another label, so it
 * needs no storage, every broker derives the same one, and knowing it
 * reveals nothing about the id.
 */
static int
derive_csrf(const char *id, char *csrf)
{
	unsigned char mac[KEYS_HASH_LEN];
	char in[8 + SESSIONS_ID_LEN + 1];
	int rc = -1;

	if (snprintf(in, sizeof(in), "ui-csrf:%s", id) >= (int)sizeof(in))
		goto out;
	if (keys_secret_hash(in, strlen(in), mac) != 0)
		goto out;
	b64_url_encode(mac, sizeof(mac), csrf);
	csrf[SESSIONS_CSRF_LEN] = '\0';
	rc = 0;
out:
	util_secure_zero(in, sizeof(in));
	util_secure_zero(mac, sizeof(mac));
	return rc;
}

/* The bytea parameter of id's HMAC (caller frees), or NULL. */
static char *
id_hash_param(const char *id)
{
	unsigned char mac[KEYS_HASH_LEN];
	char *p = NULL;

	if (keys_secret_hash(id, strlen(id), mac) == 0)
		p = db_bytea_param(mac, sizeof(mac));
	util_secure_zero(mac, sizeof(mac));
	return p;
}

/* 1 if id has the shape of a session id: 43 base64url characters. */
static int
well_formed(const char *id)
{
	size_t i;

	if (id == NULL || strlen(id) != SESSIONS_ID_LEN)
		return 0;
	for (i = 0; i < SESSIONS_ID_LEN; i++) {
		char c = id[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

enum cs_err
sessions_create(const struct approver *approver, int64_t ttl, char *id,
    char *csrf, int64_t *expires_at, struct cs_error *err)
{
	char *hash_param = NULL, aid[24], exp[24];
	const char *params[4];
	enum cs_err rc;

	/* Best effort: a failed purge only leaves dead rows for next time. */
	(void)db_exec(&session_purge, NULL, NULL);
	if (keys_new_secret(id, &hash_param) != 0 || derive_csrf(id, csrf) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	*expires_at = util_now() + ttl;
	snprintf(aid, sizeof(aid), "%lld", (long long)approver->id);
	snprintf(exp, sizeof(exp), "%lld", (long long)*expires_at);
	params[0] = hash_param;
	params[1] = aid;
	params[2] = exp;
	params[3] = approver->name;
	rc = db_exec(&session_insert, params, NULL);
	if (rc != CS_OK)
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot start a session right now");
out:
	if (rc != CS_OK) {
		util_secure_zero(id, SESSIONS_ID_LEN + 1);
		util_secure_zero(csrf, SESSIONS_CSRF_LEN + 1);
	}
	free(hash_param);
	return rc;
}

enum cs_err
sessions_lookup(const char *id, int64_t idle, struct approver *out,
    char *csrf, int64_t *expires_at, struct cs_error *err)
{
	struct db_result *res = NULL;
	const char *params[2];
	char idlebuf[24];
	char *hash_param = NULL;
	enum cs_err rc;

	memset(out, 0, sizeof(*out));
	if (!well_formed(id))
		return cs_error_set(err, CS_ERR_INVALID_TOKEN,
		    "not signed in (no session or session expired)");
	if ((hash_param = id_hash_param(id)) == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	snprintf(idlebuf, sizeof(idlebuf), "%lld", (long long)idle);
	params[0] = hash_param;
	params[1] = idlebuf;
	if (db_exec(&session_lookup, params, &res) != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check sessions right now");
		goto out;
	}
	if (db_nrows(res) != 1) {
		rc = cs_error_set(err, CS_ERR_INVALID_TOKEN,
		    "not signed in (no session or session expired)");
		goto out;
	}
	if (approvals_approver_fill(out, db_value(res, 0, 0), db_value(res, 0, 1),
	    db_value(res, 0, 2), db_value(res, 0, 3)) != 0 ||
	    util_parse_int64(db_value(res, 0, 4), 0, INT64_MAX, expires_at) != 0 ||
	    derive_csrf(id, csrf) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	rc = CS_OK;
out:
	if (rc != CS_OK)
		approvals_approver_clear(out);
	free(hash_param);
	db_result_free(res);
	return rc;
}

enum cs_err
sessions_end(const char *id, struct cs_error *err)
{
	struct db_result *res = NULL;
	const char *params[1];
	char *hash_param = NULL;
	enum cs_err rc;

	if (!well_formed(id))
		return cs_error_set(err, CS_ERR_INVALID_TOKEN, "not signed in");
	if ((hash_param = id_hash_param(id)) == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	params[0] = hash_param;
	if (db_exec(&session_delete, params, &res) != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot end the session right now");
		goto out;
	}
	rc = db_nrows(res) == 1 ? CS_OK :
	    cs_error_set(err, CS_ERR_INVALID_TOKEN, "not signed in");
out:
	free(hash_param);
	db_result_free(res);
	return rc;
}

int
sessions_csrf_matches(const char *expected, const char *given)
{
	if (given == NULL || strlen(given) != SESSIONS_CSRF_LEN ||
	    strlen(expected) != SESSIONS_CSRF_LEN)
		return 0;
	return CRYPTO_memcmp(expected, given, SESSIONS_CSRF_LEN) == 0;
}
