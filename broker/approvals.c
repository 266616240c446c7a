/*
 * approvals.c: see approvals.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "approvals.h"
#include "audit.h"
#include "b64.h"
#include "db.h"
#include "grants.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "util.h"

/* ---- SQL ---------------------------------------------------------------- */

/* A key's expiry from the parameter p: seconds it lasts, 0 for never. */
#define KEY_EXPIRY(p) "CASE WHEN " p "::bigint > 0 THEN now() + " \
	"make_interval(secs => " p "::bigint) END"

static const struct db_stmt approver_insert = {
	"approvals_approver_insert",
	"WITH p AS (INSERT INTO approvers (name, email, groups, key_hash, "
	"key_expires_at) VALUES ($1, $2, $3::text[], $4::bytea, "
	KEY_EXPIRY("$6") ") RETURNING id, name, groups, key_expires_at) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approver.created', $5, 'approver:' || p.name, "
	"jsonb_build_object('approver_id', p.id, 'groups', p.groups, "
	"'email', $2::text, 'key_expires_at', p.key_expires_at) FROM p "
	"RETURNING details->>'key_expires_at'",
	6
};

static const struct db_stmt approver_disable = {
	"approvals_approver_disable",
	"WITH p AS (UPDATE approvers SET disabled_at = now() "
	"WHERE name = $1 AND disabled_at IS NULL RETURNING id, name) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approver.disabled', $2, 'approver:' || p.name, "
	"jsonb_build_object('approver_id', p.id) FROM p RETURNING seq",
	2
};

/*
 * A new key for an enabled approver: the old one stops working at once,
 * and so do the web sessions signed in with it.
 */
static const struct db_stmt approver_rotate = {
	"approvals_approver_rotate",
	"WITH p AS (UPDATE approvers SET key_hash = $2::bytea, key_expires_at = "
	KEY_EXPIRY("$4") " WHERE name = $1 AND disabled_at IS NULL "
	"RETURNING id, name, key_expires_at), "
	"s AS (DELETE FROM ui_sessions WHERE approver_id IN (SELECT id FROM p) "
	"RETURNING 1) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approver.key_rotated', $3, 'approver:' || p.name, "
	"jsonb_build_object('approver_id', p.id, 'sessions_ended', "
	"(SELECT count(*) FROM s), 'key_expires_at', p.key_expires_at) FROM p "
	"RETURNING details->>'key_expires_at'",
	4
};

/* End every web session of an approver (the key keeps working). */
static const struct db_stmt approver_signout = {
	"approvals_approver_signout",
	"WITH p AS (SELECT id, name FROM approvers WHERE name = $1), "
	"s AS (DELETE FROM ui_sessions WHERE approver_id IN (SELECT id FROM p) "
	"RETURNING 1) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approver.signed_out', $2, 'approver:' || p.name, "
	"jsonb_build_object('approver_id', p.id, 'via', 'cli', 'sessions', "
	"(SELECT count(*) FROM s)) FROM p RETURNING details->>'sessions'",
	2
};

static const struct db_stmt approver_exists = {
	"approvals_approver_exists",
	"SELECT 1 FROM approvers WHERE name = $1",
	1
};

static const struct db_stmt approver_list = {
	"approvals_approver_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'email', "
	"email, 'groups', groups, 'created_at', created_at, 'disabled', "
	"disabled_at IS NOT NULL, 'key_expires_at', key_expires_at, "
	"'key_expired', coalesce(key_expires_at <= now(), false)) "
	"ORDER BY name), '[]'::jsonb)::text FROM approvers",
	0
};

static const struct db_stmt approver_by_key = {
	"approvals_approver_by_key",
	"SELECT id, name, coalesce(email, ''), groups, disabled_at IS NOT NULL, "
	"coalesce(key_expires_at <= now(), false) "
	"FROM approvers WHERE key_hash = $1::bytea",
	1
};

static const struct db_stmt request_insert = {
	"approvals_request_insert",
	"WITH r AS (INSERT INTO approval_requests (id, agent_id, scopes, "
	"audience, requested_ttl, binding_message, authorization_details, "
	"params_hash, approvals_required, poll_interval, expires_at) "
	"VALUES ($1, $2, $3::text[], $4, $5::int, $6, $7::jsonb, $8, $9::int, "
	"$10::int, now() + make_interval(secs => $11::int)) RETURNING id) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approval.requested', 'agent:' || $12, 'approval:' || r.id, "
	"$13::jsonb FROM r RETURNING seq",
	13
};

/*
 * "preview_checks": one entry per authorization_details entry, true if its
 * preview is exactly the content its action_digest binds (SHA-256 of the
 * preview's UTF-8, hex or base64url), false if it is not, null if there is
 * no preview or no digest. An approver reads the preview but the digest is
 * what a service enforces: false means the text shown is NOT what would be
 * done, and the CLI and the web page say so.
 */
#define PREVIEW_CHECKS \
	"'preview_checks', (SELECT coalesce(jsonb_agg(CASE WHEN " \
	"jsonb_typeof(y.e->'preview') = 'string' AND " \
	"jsonb_typeof(y.e->'action_digest') = 'string' THEN to_jsonb(" \
	"lower(y.e->>'action_digest') = 'sha256:' || encode(sha256(" \
	"convert_to(y.e->>'preview', 'UTF8')), 'hex') OR " \
	"y.e->>'action_digest' = 'sha256:' || translate(rtrim(encode(" \
	"sha256(convert_to(y.e->>'preview', 'UTF8')), 'base64'), '='), " \
	"'+/', '-_')) ELSE 'null'::jsonb END ORDER BY y.o), '[]'::jsonb) " \
	"FROM jsonb_array_elements(CASE WHEN jsonb_typeof(" \
	"r.authorization_details) = 'array' THEN r.authorization_details " \
	"END) WITH ORDINALITY AS y(e, o)), "

/*
 * The request as approvers see it. $1 state filter (NULL: any), $2 id
 * filter (NULL: any), $3 the approver's groups; "eligible" says whether the
 * approver's groups cover every write scope's approver group.
 */
#define REQUEST_JSON \
	"SELECT jsonb_build_object('id', r.id, 'state', r.state, " \
	"'agent', a.name, 'owner', a.owner, 'scopes', (SELECT " \
	"jsonb_agg(jsonb_build_object('name', x.s, 'kind', coalesce(sc.kind, " \
	"'write')) ORDER BY x.o) FROM unnest(r.scopes) WITH ORDINALITY " \
	"AS x(s, o) LEFT JOIN scopes sc ON sc.name = x.s), " \
	"'audience', r.audience, 'ttl', r.requested_ttl, " \
	"'binding_message', r.binding_message, " \
	"'authorization_details', r.authorization_details, " \
	PREVIEW_CHECKS \
	"'params_hash', r.params_hash, " \
	"'approvals_required', r.approvals_required, " \
	"'approvals', (SELECT count(*) FROM approval_decisions d " \
	"WHERE d.request_id = r.id AND d.decision = 'approve'), " \
	"'decisions', (SELECT coalesce(jsonb_agg(jsonb_build_object(" \
	"'approver', p.name, 'decision', d.decision, 'reason', d.reason, " \
	"'scopes', d.scopes, 'ttl', d.ttl, 'at', d.created_at) " \
	"ORDER BY d.created_at), '[]'::jsonb) FROM approval_decisions d " \
	"JOIN approvers p ON p.id = d.approver_id WHERE d.request_id = r.id), " \
	"'created_at', r.created_at, 'expires_at', r.expires_at, " \
	"'expires_in', greatest(0, ceil(extract(epoch FROM r.expires_at - " \
	"now())))::int, 'approved_scopes', r.approved_scopes, " \
	"'approved_ttl', r.approved_ttl, 'decided_at', r.decided_at, " \
	"'consumed_at', r.consumed_at, 'token_jti', r.token_jti), " \
	"NOT EXISTS (SELECT 1 FROM scopes s WHERE s.name = ANY(r.scopes) " \
	"AND s.kind <> 'read' AND s.approver_group IS NOT NULL " \
	"AND NOT (s.approver_group = ANY($3::text[]))) AS eligible, " \
	"r.created_at FROM approval_requests r JOIN agents a ON a.id = r.agent_id " \
	"WHERE ($1::text IS NULL OR r.state = $1) " \
	"AND ($2::text IS NULL OR r.id = $2) "

static const struct db_stmt request_list = {
	"approvals_request_list",
	"SELECT coalesce(jsonb_agg(q.j ORDER BY q.t), '[]'::jsonb)::text "
	"FROM (SELECT j, t FROM (" REQUEST_JSON ") AS z(j, eligible, t) "
	"WHERE eligible ORDER BY t DESC LIMIT 500) q",
	3
};

static const struct db_stmt request_get = {
	"approvals_request_get",
	REQUEST_JSON,
	3
};

static const struct db_stmt decide_lock = {
	"approvals_decide_lock",
	"SELECT r.state, r.expires_at <= now(), r.params_hash, "
	"r.approvals_required, r.scopes, r.requested_ttl, "
	"coalesce(a.owner, ''), a.name, "
	"(SELECT count(*) FROM scopes s WHERE s.name = ANY(r.scopes) "
	"AND s.kind <> 'read' AND s.approver_group IS NOT NULL "
	"AND NOT (s.approver_group = ANY($2::text[]))), "
	"(SELECT coalesce(bool_and(s.owner_may_approve), false) FROM scopes s "
	"WHERE s.name = ANY(r.scopes) AND s.kind <> 'read'), "
	"EXISTS (SELECT 1 FROM approval_decisions d WHERE d.request_id = r.id "
	"AND d.approver_id = $3::bigint), "
	"extract(epoch FROM now() - r.created_at)::float8 "
	"FROM approval_requests r JOIN agents a ON a.id = r.agent_id "
	"WHERE r.id = $1 FOR UPDATE OF r",
	3
};

static const struct db_stmt decision_insert = {
	"approvals_decision_insert",
	"WITH d AS (INSERT INTO approval_decisions (request_id, approver_id, "
	"decision, reason, scopes, ttl) VALUES ($1, $2::bigint, $3, $4, "
	"$5::text[], nullif($6::int, 0)) RETURNING request_id) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT $7, 'approver:' || $8, 'approval:' || d.request_id, $9::jsonb "
	"FROM d RETURNING seq",
	9
};

static const struct db_stmt approve_decisions = {
	"approvals_approve_decisions",
	"SELECT scopes, coalesce(ttl, 0) FROM approval_decisions "
	"WHERE request_id = $1 AND decision = 'approve'",
	1
};

static const struct db_stmt set_denied = {
	"approvals_set_denied",
	"UPDATE approval_requests SET state = 'denied', decided_at = now() "
	"WHERE id = $1 AND state = 'pending'",
	1
};

static const struct db_stmt set_approved = {
	"approvals_set_approved",
	"UPDATE approval_requests SET state = 'approved', decided_at = now(), "
	"approved_scopes = $2::text[], approved_ttl = $3::int "
	"WHERE id = $1 AND state = 'pending'",
	3
};

static const struct db_stmt expire_one = {
	"approvals_expire_one",
	"WITH e AS (UPDATE approval_requests SET state = 'expired' "
	"WHERE id = $1 AND state IN ('pending', 'approved') RETURNING id) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approval.expired', 'broker', 'approval:' || e.id, '{}' FROM e "
	"RETURNING seq",
	1
};

static const struct db_stmt expire_due = {
	"approvals_expire_due",
	"WITH e AS (UPDATE approval_requests SET state = 'expired' "
	"WHERE state IN ('pending', 'approved') AND expires_at <= now() "
	"RETURNING id, state) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'approval.expired', 'broker', 'approval:' || e.id, '{}' FROM e "
	"RETURNING substr(subject, 10)",
	0
};

static const struct db_stmt collect_lock = {
	"approvals_collect_lock",
	"SELECT state, expires_at <= now(), "
	"last_polled_at IS NOT NULL AND "
	"now() < last_polled_at + make_interval(secs => poll_interval), "
	"coalesce(approved_scopes, scopes), audience, "
	"coalesce(approved_ttl, requested_ttl), authorization_details::text, "
	"approvals_required "
	"FROM approval_requests WHERE id = $1 AND agent_id = $2::bigint "
	"FOR UPDATE",
	2
};

static const struct db_stmt poll_touch = {
	"approvals_poll_touch",
	"UPDATE approval_requests SET last_polled_at = now(), "
	"poll_interval = poll_interval + CASE WHEN $2::bool THEN 5 ELSE 0 END "
	"WHERE id = $1",
	2
};

/*
 * The approvers whose approvals still count at collection time: enabled,
 * and still in the group of every write scope approved.
 */
static const struct db_stmt valid_approvers = {
	"approvals_valid_approvers",
	"SELECT p.name FROM approval_decisions d "
	"JOIN approvers p ON p.id = d.approver_id "
	"WHERE d.request_id = $1 AND d.decision = 'approve' "
	"AND p.disabled_at IS NULL AND NOT EXISTS (SELECT 1 FROM scopes s "
	"WHERE s.name = ANY($2::text[]) AND s.kind <> 'read' "
	"AND s.approver_group IS NOT NULL "
	"AND NOT (s.approver_group = ANY(p.groups))) ORDER BY d.created_at",
	2
};

static const struct db_stmt set_consumed = {
	"approvals_set_consumed",
	"WITH c AS (UPDATE approval_requests SET state = 'consumed', "
	"consumed_at = now(), token_jti = $2 WHERE id = $1 "
	"AND state = 'approved' RETURNING id) "
	"INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'approval.consumed', 'agent:' || $3, 'approval:' || c.id, $2, "
	"'{}' FROM c RETURNING seq",
	3
};

/* ---- approvers ---------------------------------------------------------- */

void
approvals_approver_clear(struct approver *a)
{
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < a->ngroups; i++)
		free(a->groups[i]);
	memset(a, 0, sizeof(*a));
}

int
approvals_approver_fill(struct approver *out, const char *id,
    const char *name, const char *email, const char *groups)
{
	size_t n = 0;

	if (util_parse_int64(id, 1, INT64_MAX, &out->id) != 0 ||
	    db_parse_text_array(groups, out->groups, APPROVALS_GROUPS_MAX,
	    &n) != 0)
		return -1;
	out->ngroups = n;
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->email, sizeof(out->email), "%s", email);
	return 0;
}

/* The key's expiry from a RETURNING details->>'key_expires_at' row. */
static void
copy_expiry(const struct db_result *res, char *expires, size_t cap)
{
	if (expires == NULL || cap == 0)
		return;
	snprintf(expires, cap, "%s", res != NULL && db_nrows(res) == 1 &&
	    !db_isnull(res, 0, 0) ? db_value(res, 0, 0) : "");
}

enum cs_err
approvals_approver_add(const char *name, const char *email,
    const char *groups, int64_t key_ttl, const char *actor, char *key,
    char *expires, size_t expires_cap, struct cs_error *err)
{
	char *items[APPROVALS_GROUPS_MAX], *copy = NULL, *arr = NULL;
	char *hash_param = NULL, ttlbuf[24];
	const char *params[6];
	struct db_result *res = NULL;
	size_t n = 0, i = 0;
	int bad;
	enum cs_err rc;

	if (!util_valid_name(name))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "approver names "
		    "are 1-64 characters of [A-Za-z0-9._-]");
	if (email != NULL && (strlen(email) > 256 || !approvals_check_text(email)))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "bad --email");
	copy = strdup(groups != NULL ? groups : "");
	if (copy == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "out of memory");
	bad = util_split_list(copy, items, APPROVALS_GROUPS_MAX, &n) != 0;
	for (i = 0; !bad && i < n; i++)
		bad = !util_valid_name(items[i]);
	if (bad) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST, "--groups is "
		    "a comma-separated list of up to %d names",
		    APPROVALS_GROUPS_MAX);
		goto out;
	}
	if (n == 0) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "an approver needs at least one group (--groups)");
		goto out;
	}
	arr = db_text_array((const char *const *)items, n);
	if (arr == NULL || keys_new_secret(key, &hash_param) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	params[0] = name;
	params[1] = email;
	params[2] = arr;
	params[3] = hash_param;
	params[4] = actor;
	snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)key_ttl);
	params[5] = ttlbuf;
	rc = db_exec(&approver_insert, params, &res);
	if (rc == CS_ERR_CONFLICT)
		cs_error_set(err, rc, "an approver named '%s' already exists", name);
	else if (rc != CS_OK)
		cs_error_set(err, rc, "database error");
	else
		copy_expiry(res, expires, expires_cap);
out:
	if (rc != CS_OK)
		util_secure_zero(key, APPROVALS_KEY_LEN + 1);
	free(hash_param);
	free(arr);
	free(copy);
	db_result_free(res);
	return rc;
}

enum cs_err
approvals_approver_rotate_key(const char *name, int64_t key_ttl,
    const char *actor, char *key, char *expires, size_t expires_cap,
    struct cs_error *err)
{
	const char *params[4];
	struct db_result *res = NULL;
	char *hash_param = NULL, ttlbuf[24];
	enum cs_err rc;

	if (keys_new_secret(key, &hash_param) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	params[0] = name;
	params[1] = hash_param;
	params[2] = actor;
	snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)key_ttl);
	params[3] = ttlbuf;
	rc = db_exec(&approver_rotate, params, &res);
	if (rc != CS_OK) {
		cs_error_set(err, rc, "database error");
		goto out;
	}
	if (db_nrows(res) != 1)
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no enabled approver "
		    "named '%s'", name);
	else
		copy_expiry(res, expires, expires_cap);
out:
	if (rc != CS_OK)
		util_secure_zero(key, APPROVALS_KEY_LEN + 1);
	free(hash_param);
	db_result_free(res);
	return rc;
}

enum cs_err
approvals_approver_signout(const char *name, const char *actor,
    int64_t *ended, struct cs_error *err)
{
	const char *params[2] = { name, actor };
	struct db_result *res = NULL;
	enum cs_err rc;

	*ended = 0;
	rc = db_exec(&approver_signout, params, &res);
	if (rc != CS_OK)
		cs_error_set(err, rc, "database error");
	else if (db_nrows(res) != 1 ||
	    util_parse_int64(db_value(res, 0, 0), 0, INT64_MAX, ended) != 0)
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no approver named "
		    "'%s'", name);
	db_result_free(res);
	return rc;
}

enum cs_err
approvals_approver_disable(const char *name, const char *actor,
    struct cs_error *err)
{
	const char *params[2] = { name, actor };
	struct db_result *res = NULL;
	enum cs_err rc;

	rc = db_exec(&approver_disable, params, &res);
	if (rc == CS_OK && db_nrows(res) == 0) {
		db_result_free(res);
		res = NULL;
		rc = db_exec(&approver_exists, params, &res);
		if (rc == CS_OK && db_nrows(res) == 0)
			rc = cs_error_set(err, CS_ERR_NOT_FOUND,
			    "no approver named '%s'", name);
	}
	if (rc != CS_OK && rc != CS_ERR_NOT_FOUND)
		cs_error_set(err, rc, "database error");
	db_result_free(res);
	return rc;
}

enum cs_err
approvals_approver_list(json_t **out)
{
	return db_exec_json(&approver_list, NULL, out);
}

static enum cs_err
approver_auth_failed(const char *reason, const char *who, struct cs_error *err)
{
	json_t *d = json_pack("{s:s}", "reason", reason);
	enum cs_err rc;

	rc = audit_append("approver.auth_failed", "anonymous", who, NULL, d);
	json_decref(d);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
	return cs_error_set(err, CS_ERR_INVALID_TOKEN,
	    "approver authentication failed");
}

enum cs_err
approvals_authenticate(const char *authorization, struct approver *out,
    struct cs_error *err)
{
	memset(out, 0, sizeof(*out));
	if (authorization == NULL)
		return approver_auth_failed("missing", NULL, err);
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return approver_auth_failed("malformed", NULL, err);
	return approvals_authenticate_key(authorization + 7, out, err);
}

enum cs_err
approvals_authenticate_key(const char *key, struct approver *out,
    struct cs_error *err)
{
	unsigned char hash[KEYS_HASH_LEN];
	const char *params[1];
	char *hash_param = NULL, subject[CS_NAME_MAX + 16];
	struct db_result *res = NULL;
	enum cs_err rc;

	memset(out, 0, sizeof(*out));
	if (key == NULL)
		return approver_auth_failed("missing", NULL, err);
	if (strlen(key) != APPROVALS_KEY_LEN)
		return approver_auth_failed("malformed", NULL, err);
	/*
	 * Looking the key up by its HMAC is safe: the index reveals nothing
	 * about keys that do not hash to a stored value.
	 */
	if (keys_secret_hash(key, strlen(key), hash) != 0 ||
	    (hash_param = db_bytea_param(hash, sizeof(hash))) == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	params[0] = hash_param;
	rc = db_exec(&approver_by_key, params, &res);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check credentials right now");
		goto out;
	}
	if (db_nrows(res) != 1) {
		rc = approver_auth_failed("unknown_key", NULL, err);
		goto out;
	}
	snprintf(subject, sizeof(subject), "approver:%s", db_value(res, 0, 1));
	if (strcmp(db_value(res, 0, 4), "t") == 0) {
		rc = approver_auth_failed("disabled", subject, err);
		goto out;
	}
	if (strcmp(db_value(res, 0, 5), "t") == 0) {
		/*
		 * Say so: the person holding it needs a new key, not another
		 * try. An expired key is worth nothing to anyone else.
		 */
		rc = approver_auth_failed("key_expired", subject, err);
		if (rc == CS_ERR_INVALID_TOKEN)
			cs_error_set(err, rc, "approver key expired: ask an "
			    "operator for a new one (approver rotate-key)");
		goto out;
	}
	if (approvals_approver_fill(out, db_value(res, 0, 0), db_value(res, 0, 1),
	    db_value(res, 0, 2), db_value(res, 0, 3)) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	rc = CS_OK;
out:
	if (rc != CS_OK)
		approvals_approver_clear(out);
	util_secure_zero(hash, sizeof(hash));
	free(hash_param);
	db_result_free(res);
	return rc;
}

/* ---- agent side: bc-authorize ------------------------------------------- */

/*
 * Code points that change what a human sees without being seen
 * themselves, so an approver could read something other than is there:
 * C1 controls; the soft hyphen; the Arabic letter mark; the Mongolian vowel
 * separator; zero-width spaces, joiners and direction marks; line and
 * paragraph separators; bidirectional embeddings, overrides and isolates;
 * invisible operators and deprecated format characters; the byte order
 * mark; and the tag characters, which can carry a hidden ASCII message.
 */
static int
invisible(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0xad || cp == 0x61c ||
	    cp == 0x180e || (cp >= 0x200b && cp <= 0x200f) ||
	    (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) ||
	    cp == 0xfeff || (cp >= 0xe0000 && cp <= 0xe007f);
}

int
approvals_check_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n = strlen(s);

	if (!util_valid_utf8(s, n))
		return 0;
	while (i < n) {
		uint32_t cp;
		size_t len;

		/* Valid UTF-8 (checked above): decode one code point. */
		if (p[i] < 0x80) {
			cp = p[i];
			len = 1;
		} else if (p[i] < 0xe0) {
			cp = (uint32_t)(p[i] & 0x1f) << 6 | (p[i + 1] & 0x3f);
			len = 2;
		} else if (p[i] < 0xf0) {
			cp = (uint32_t)(p[i] & 0x0f) << 12 |
			    (uint32_t)(p[i + 1] & 0x3f) << 6 | (p[i + 2] & 0x3f);
			len = 3;
		} else {
			cp = (uint32_t)(p[i] & 0x07) << 18 |
			    (uint32_t)(p[i + 1] & 0x3f) << 12 |
			    (uint32_t)(p[i + 2] & 0x3f) << 6 | (p[i + 3] & 0x3f);
			len = 4;
		}
		if (cp == '\r' || invisible(cp))
			return 0;
		i += len;
	}
	return 1;
}

static int
valid_digest(const char *d)
{
	size_t i, n;

	if (strncmp(d, "sha256:", 7) != 0)
		return 0;
	d += 7;
	n = strlen(d);
	if (n == 64) {
		for (i = 0; i < n; i++)
			if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f')))
				return 0;
		return 1;
	}
	if (n == 43) {
		unsigned char buf[33];
		size_t len;

		return b64_url_decode(d, n, buf, sizeof(buf), &len) == 0 && len == 32;
	}
	return 0;
}

/* Every string anywhere in v must be fit to show a human. */
static int
strings_ok(const json_t *v, int depth)
{
	const char *k;
	json_t *x;
	size_t i;

	if (depth > 8)
		return 0;
	switch (json_typeof(v)) {
	case JSON_STRING:
		return approvals_check_text(json_string_value(v));
	case JSON_OBJECT:
		json_object_foreach((json_t *)v, k, x)
			if (!approvals_check_text(k) || !strings_ok(x, depth + 1))
				return 0;
		return 1;
	case JSON_ARRAY:
		json_array_foreach(v, i, x)
			if (!strings_ok(x, depth + 1))
				return 0;
		return 1;
	default:
		return 1;
	}
}

enum cs_err
approvals_parse_details(const char *text, json_t **out, struct cs_error *err)
{
	json_error_t jerr;
	json_t *arr, *el;
	size_t i;

	*out = NULL;
	if (strlen(text) > APPROVALS_DETAILS_MAX)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "authorization_details is larger than %d bytes",
		    APPROVALS_DETAILS_MAX);
	arr = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (arr == NULL)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "authorization_details is not valid JSON");
	if (!json_is_array(arr) || json_array_size(arr) < 1 ||
	    json_array_size(arr) > 4) {
		json_decref(arr);
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "authorization_details must be an array of 1-4 objects "
		    "(RFC 9396)");
	}
	json_array_foreach(arr, i, el) {
		json_t *type = json_object_get(el, "type");
		json_t *digest = json_object_get(el, "action_digest");
		json_t *preview = json_object_get(el, "preview");

		if (!json_is_object(el) || !json_is_string(type) ||
		    json_string_length(type) < 1 || json_string_length(type) > 64) {
			json_decref(arr);
			return cs_error_set(err, CS_ERR_INVALID_REQUEST,
			    "every authorization_details entry needs a \"type\"");
		}
		if (digest != NULL && (!json_is_string(digest) ||
		    !valid_digest(json_string_value(digest)))) {
			json_decref(arr);
			return cs_error_set(err, CS_ERR_INVALID_REQUEST,
			    "action_digest must be sha256: followed by 64 hex or 43 "
			    "base64url characters");
		}
		if (preview != NULL && (!json_is_string(preview) ||
		    json_string_length(preview) > 2000)) {
			json_decref(arr);
			return cs_error_set(err, CS_ERR_INVALID_REQUEST,
			    "preview must be text of at most 2000 bytes");
		}
	}
	if (!strings_ok(arr, 0)) {
		json_decref(arr);
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "authorization_details contains control or bidirectional "
		    "characters, or is nested too deeply");
	}
	*out = arr;
	return CS_OK;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The parameter hash: SHA-256 over the canonical JSON (sorted keys, no
 * spaces) of agent, sorted scopes, audience, lifetime and
 * authorization_details, base64url. Approvers may send it back with their
 * decision to prove they decided on exactly these parameters.
 */
static int
params_hash(const char *agent, const struct scope_list *scopes,
    const char *audience, int64_t ttl, const json_t *details,
    char out[44])
{
	const char *sorted[CS_SCOPES_MAX] = { NULL };
	json_t *j = NULL, *arr;
	unsigned char md[32];
	char *text = NULL;
	size_t i;
	int rc = -1;

	for (i = 0; i < scopes->n; i++)
		sorted[i] = scopes->items[i];
	qsort(sorted, scopes->n, sizeof(sorted[0]), cmp_str);
	arr = json_array();
	for (i = 0; arr != NULL && i < scopes->n; i++)
		json_array_append_new(arr, json_string(sorted[i]));
	j = json_pack("{s:s, s:o, s:s, s:I, s:O?}", "agent", agent, "scopes",
	    arr, "audience", audience, "ttl", (json_int_t)ttl,
	    "authorization_details", details);
	if (j == NULL)
		goto out;
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL ||
	    EVP_Digest(text, strlen(text), md, NULL, EVP_sha256(), NULL) != 1)
		goto out;
	b64_url_encode(md, sizeof(md), out);
	rc = 0;
out:
	free(text);
	json_decref(j);
	return rc;
}

static enum cs_err
ask_denied(const struct approval_ask *ask, const char *reason,
    const char *scope, enum cs_err code, const char *msg, struct cs_error *err)
{
	char actor[CS_NAME_MAX + 8], clip[AUDIT_FIELD_MAX];
	json_t *d;
	enum cs_err rc;

	snprintf(actor, sizeof(actor), "agent:%s", ask->client->name);
	d = json_pack("{s:s, s:s?, s:s, s:s}", "reason", reason, "scope", scope,
	    "audience", audit_clip(ask->audience, clip, sizeof(clip)),
	    "endpoint", "bc-authorize");
	rc = audit_append("approval.refused", actor, actor, NULL, d);
	json_decref(d);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
	return cs_error_set(err, code, "%s", msg);
}

enum cs_err
approvals_request(const struct broker_config *cfg,
    const struct approval_ask *ask, char *id, int64_t *expires_in,
    int64_t *interval, struct cs_error *err)
{
	struct grant_set gs;
	json_t *details = NULL, *audit = NULL;
	char *arr = NULL, *details_text = NULL, *audit_text = NULL;
	char hash[44], ttlbuf[24], reqbuf[24], ivbuf[24], expbuf[24], agentbuf[24];
	const char *params[13];
	int64_t limits[2 * CS_SCOPES_MAX], ttl, expiry, max_uses;
	int required = 0, writes = 0;
	size_t i, nl = 0;
	enum cs_err rc;
	char msg[256];

	if (ask->authorization_details != NULL) {
		rc = approvals_parse_details(ask->authorization_details, &details,
		    err);
		if (rc != CS_OK)
			return rc;
	}
	rc = grants_resolve(ask->client->agent_id, ask->audience, ask->scopes, &gs);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check grants right now");
		goto out;
	}
	for (i = 0; i < gs.n; i++) {
		const struct grant_scope *g = &gs.s[i];

		/* Never ask a human about something the agent can never get. */
		if (!g->known || !g->granted) {
			snprintf(msg, sizeof(msg), "scope '%s' is not granted to "
			    "this client for this resource", g->name);
			rc = ask_denied(ask, g->known ? "not_granted" :
			    "unknown_scope", g->name, CS_ERR_INVALID_SCOPE, msg, err);
			goto out;
		}
		if (g->kind != SCOPE_READ)
			writes++;
		limits[nl++] = g->scope_max_ttl;
		limits[nl++] = g->grant_max_ttl;
	}
	if (writes == 0) {
		rc = ask_denied(ask, "no_write_scope", NULL, CS_ERR_INVALID_SCOPE,
		    "no write scope requested: read scopes need no approval, "
		    "use the client_credentials grant", err);
		goto out;
	}
	rc = grants_write_policy(ask->scopes, &required, &max_uses);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check grants right now");
		goto out;
	}
	if (required < 1)
		required = 1;
	/* The lifetime approvers see is already capped by every limit. */
	ttl = tokens_ttl(ask->requested_ttl, cfg->default_ttl, cfg->max_ttl,
	    limits, nl);
	expiry = ask->requested_expiry > 0 &&
	    ask->requested_expiry < cfg->approval_timeout ?
	    ask->requested_expiry : cfg->approval_timeout;
	if (util_random_token(16, id, APPROVALS_ID_LEN + 1) != 0 ||
	    params_hash(ask->client->name, ask->scopes, ask->audience, ttl,
	    details, hash) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	arr = db_text_array((const char *const *)ask->scopes->items,
	    ask->scopes->n);
	details_text = details != NULL ?
	    json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	{
		char *joined = scopes_join(ask->scopes);

		audit = json_pack("{s:s?, s:s, s:I, s:i, s:s, s:O?, s:I}",
		    "scope", joined, "audience", ask->audience, "ttl",
		    (json_int_t)ttl, "approvals_required", required,
		    "binding_message", ask->binding_message,
		    "authorization_details", details, "expires_in",
		    (json_int_t)expiry);
		free(joined);
	}
	audit_text = audit != NULL ? json_dumps(audit, JSON_COMPACT) : NULL;
	if (arr == NULL || audit_text == NULL ||
	    (details != NULL && details_text == NULL)) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	snprintf(agentbuf, sizeof(agentbuf), "%lld",
	    (long long)ask->client->agent_id);
	snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)ttl);
	snprintf(reqbuf, sizeof(reqbuf), "%d", required);
	snprintf(ivbuf, sizeof(ivbuf), "%d", cfg->poll_interval);
	snprintf(expbuf, sizeof(expbuf), "%lld", (long long)expiry);
	params[0] = id;
	params[1] = agentbuf;
	params[2] = arr;
	params[3] = ask->audience;
	params[4] = ttlbuf;
	params[5] = ask->binding_message;
	params[6] = details_text;
	params[7] = hash;
	params[8] = reqbuf;
	params[9] = ivbuf;
	params[10] = expbuf;
	params[11] = ask->client->name;
	params[12] = audit_text;
	rc = db_exec(&request_insert, params, NULL);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
		goto out;
	}
	*expires_in = expiry;
	*interval = cfg->poll_interval;
	metrics_inc(METRICS_APPROVALS_REQUESTED);
	log_event(LOG_LEVEL_INFO, "approval.requested", json_pack("{s:s, s:s, "
	    "s:s, s:I}", "approval", id, "agent", ask->client->name, "audience",
	    ask->audience, "ttl", (json_int_t)ttl));
	{
		char text[1536], *joined = scopes_join(ask->scopes);

		snprintf(text, sizeof(text), "Approval needed: agent %s asks for "
		    "%s on %s for %llds. Justification: \"%s\". Request %s expires "
		    "in %llds.", ask->client->name, joined != NULL ? joined : "?",
		    ask->audience, (long long)ttl, ask->binding_message, id,
		    (long long)expiry);
		notify_event("approval.requested", text, json_pack(
		    "{s:s, s:s, s:s?, s:s, s:I, s:s, s:I, s:i}", "id", id,
		    "agent", ask->client->name, "scope", joined, "audience",
		    ask->audience, "ttl", (json_int_t)ttl, "binding_message",
		    ask->binding_message, "expires_in", (json_int_t)expiry,
		    "approvals_required", required));
		free(joined);
	}
	rc = CS_OK;
out:
	json_decref(details);
	json_decref(audit);
	free(arr);
	free(details_text);
	free(audit_text);
	return rc;
}

/* ---- approver side ------------------------------------------------------- */

static char *
groups_array(const struct approver *a)
{
	return db_text_array((const char *const *)a->groups, a->ngroups);
}

enum cs_err
approvals_list(const struct approver *approver, const char *state,
    json_t **out, struct cs_error *err)
{
	const char *params[3];
	char *groups;
	enum cs_err rc;

	*out = NULL;
	if (state == NULL)
		state = "pending";
	if (strcmp(state, "pending") != 0 && strcmp(state, "approved") != 0 &&
	    strcmp(state, "denied") != 0 && strcmp(state, "expired") != 0 &&
	    strcmp(state, "consumed") != 0 && strcmp(state, "all") != 0)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "state must be "
		    "pending, approved, denied, expired, consumed or all");
	/* Show states as they are now, not as of the last sweep. */
	(void)approvals_expire_due(NULL);
	groups = groups_array(approver);
	if (groups == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "internal error");
	params[0] = strcmp(state, "all") == 0 ? NULL : state;
	params[1] = NULL;
	params[2] = groups;
	rc = db_exec_json(&request_list, params, out);
	free(groups);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE, "database unavailable");
	return CS_OK;
}

enum cs_err
approvals_get(const struct approver *approver, const char *id, json_t **out,
    struct cs_error *err)
{
	const char *params[3];
	struct db_result *res = NULL;
	char *groups;
	enum cs_err rc;

	*out = NULL;
	(void)approvals_expire_due(NULL);
	groups = groups_array(approver);
	if (groups == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "internal error");
	params[0] = NULL;
	params[1] = id;
	params[2] = groups;
	rc = db_exec(&request_get, params, &res);
	free(groups);
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE, "database unavailable");
		goto out;
	}
	if (db_nrows(res) == 0) {
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no such request");
		goto out;
	}
	if (strcmp(db_value(res, 0, 1), "t") != 0) {
		rc = cs_error_set(err, CS_ERR_FORBIDDEN, "this request needs an "
		    "approver from another group");
		goto out;
	}
	*out = json_loads(db_value(res, 0, 0), 0, NULL);
	rc = *out != NULL ? CS_OK : cs_error_set(err, CS_ERR_INTERNAL,
	    "internal error");
out:
	db_result_free(res);
	return rc;
}

static int
owner_matches(const char *owner, const struct approver *a)
{
	if (owner == NULL || owner[0] == '\0')
		return 0;
	return strcasecmp(owner, a->name) == 0 ||
	    (a->email[0] != '\0' && strcasecmp(owner, a->email) == 0);
}

/*
 * Combine the approvals of a request that reached its quorum: the approved
 * scopes are those every approver kept, the lifetime the shortest any of
 * them allowed. Fills scopes (owned strings) and *ttl.
 */
static enum cs_err
combine_approvals(const char *id, const struct scope_list *requested,
    int64_t requested_ttl, struct scope_list *scopes, int64_t *ttl)
{
	const char *params[1] = { id };
	struct db_result *res = NULL;
	int keep[CS_SCOPES_MAX];
	size_t i, k;
	int r;
	enum cs_err rc;

	rc = db_exec(&approve_decisions, params, &res);
	if (rc != CS_OK)
		return rc;
	for (i = 0; i < requested->n; i++)
		keep[i] = 1;
	*ttl = requested_ttl;
	for (r = 0; r < db_nrows(res); r++) {
		char *items[CS_SCOPES_MAX];
		size_t n = 0;
		int64_t t = 0;

		if (!db_isnull(res, r, 0)) {
			struct scope_list narrowed = { 0 };

			if (db_parse_text_array(db_value(res, r, 0), items,
			    CS_SCOPES_MAX, &n) != 0) {
				rc = CS_ERR_INTERNAL;
				goto out;
			}
			for (k = 0; k < n; k++)
				narrowed.items[k] = items[k];
			narrowed.n = n;
			for (i = 0; i < requested->n; i++)
				if (!scopes_contains(&narrowed, requested->items[i]))
					keep[i] = 0;
			scopes_clear(&narrowed);
		}
		if (util_parse_int64(db_value(res, r, 1), 0, INT64_MAX, &t) == 0 &&
		    t > 0 && t < *ttl)
			*ttl = t;
	}
	scopes->n = 0;
	for (i = 0; i < requested->n; i++) {
		if (!keep[i])
			continue;
		scopes->items[scopes->n] = strdup(requested->items[i]);
		if (scopes->items[scopes->n] == NULL) {
			rc = CS_ERR_INTERNAL;
			goto out;
		}
		scopes->n++;
	}
	rc = CS_OK;
out:
	db_result_free(res);
	return rc;
}

/* Mark one request expired (inside the caller's transaction). */
static enum cs_err
expire_in_tx(const char *id)
{
	const char *params[1] = { id };

	return db_exec(&expire_one, params, NULL);
}

/*
 * Tell approvers that request id expired, once the transaction recording
 * it has committed. Whoever notices an expiry first records it (the
 * sweeper, a late collection or a late decision), so each expiry is
 * announced once.
 */
static void
notify_expired(const char *id)
{
	char text[128];

	snprintf(text, sizeof(text), "Request %s expired without being used.",
	    id);
	notify_event("approval.expired", text, json_pack("{s:s}", "id", id));
}

enum cs_err
approvals_decide(const struct broker_config *cfg,
    const struct approver *approver, const char *id,
    const struct approval_decision *d, json_t **out, struct cs_error *err)
{
	struct db_result *lock = NULL;
	struct scope_list requested = { 0 }, final = { 0 };
	char *groups = NULL, *narrow = NULL, *final_arr = NULL, *audit_text = NULL;
	char idbuf[24], ttlbuf[24], *items[CS_SCOPES_MAX];
	const char *params[9];
	int64_t requested_ttl = 0, required = 0, approvals = 0, final_ttl = 0;
	json_t *audit = NULL;
	int in_tx = 0, quorum = 0;
	size_t n = 0, i;
	enum cs_err rc;

	(void)cfg;
	*out = NULL;
	if (d->reason != NULL && (strlen(d->reason) > APPROVALS_REASON_MAX ||
	    !approvals_check_text(d->reason)))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "reason must be "
		    "text of at most %d bytes", APPROVALS_REASON_MAX);
	if (!d->approve && (d->reason == NULL || d->reason[0] == '\0'))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "a denial needs a reason");
	if (!d->approve && (d->scopes != NULL || d->ttl != 0))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "scope and ttl apply to approvals only");
	groups = groups_array(approver);
	if (groups == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "internal error");
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)approver->id);

	if ((rc = db_begin()) != CS_OK)
		goto unavailable;
	in_tx = 1;
	params[0] = id;
	params[1] = groups;
	params[2] = idbuf;
	if ((rc = db_exec(&decide_lock, params, &lock)) != CS_OK)
		goto unavailable;
	if (db_nrows(lock) == 0) {
		rc = cs_error_set(err, CS_ERR_NOT_FOUND, "no such request");
		goto out;
	}
	if (strcmp(db_value(lock, 0, 8), "0") != 0) {
		rc = cs_error_set(err, CS_ERR_FORBIDDEN, "this request needs an "
		    "approver from another group");
		goto out;
	}
	if (owner_matches(db_value(lock, 0, 6), approver) &&
	    strcmp(db_value(lock, 0, 9), "t") != 0) {
		rc = cs_error_set(err, CS_ERR_FORBIDDEN, "you own the requesting "
		    "agent, and this scope does not let owners approve");
		goto out;
	}
	if (strcmp(db_value(lock, 0, 0), "pending") != 0) {
		rc = cs_error_set(err, CS_ERR_CONFLICT, "the request is already %s",
		    db_value(lock, 0, 0));
		goto out;
	}
	if (strcmp(db_value(lock, 0, 1), "t") == 0) {
		/* Record the expiry we just noticed, then refuse. */
		if ((rc = expire_in_tx(id)) != CS_OK || (rc = db_commit()) != CS_OK)
			goto unavailable;
		in_tx = 0;
		notify_expired(id);
		rc = cs_error_set(err, CS_ERR_CONFLICT, "the request has expired");
		goto out;
	}
	if (strcmp(db_value(lock, 0, 10), "t") == 0) {
		rc = cs_error_set(err, CS_ERR_CONFLICT,
		    "you have already decided this request");
		goto out;
	}
	if (d->params_hash != NULL &&
	    strcmp(d->params_hash, db_value(lock, 0, 2)) != 0) {
		rc = cs_error_set(err, CS_ERR_CONFLICT, "params_hash does not "
		    "match the request: reload it and decide again");
		goto out;
	}
	if (util_parse_int64(db_value(lock, 0, 3), 1, 100, &required) != 0 ||
	    util_parse_int64(db_value(lock, 0, 5), 1, INT64_MAX,
	    &requested_ttl) != 0 ||
	    db_parse_text_array(db_value(lock, 0, 4), items, CS_SCOPES_MAX,
	    &n) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	for (i = 0; i < n; i++)
		requested.items[i] = items[i];
	requested.n = n;
	/* Narrowing only: a subset of the scopes, a shorter lifetime. */
	if (d->scopes != NULL) {
		if (d->scopes->n == 0) {
			rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
			    "an approval must keep at least one scope");
			goto out;
		}
		for (i = 0; i < d->scopes->n; i++) {
			if (!scopes_contains(&requested, d->scopes->items[i])) {
				rc = cs_error_set(err, CS_ERR_INVALID_REQUEST,
				    "scope '%s' was not requested: approvals may "
				    "only narrow", d->scopes->items[i]);
				goto out;
			}
		}
		narrow = db_text_array((const char *const *)d->scopes->items,
		    d->scopes->n);
		if (narrow == NULL) {
			rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
			goto out;
		}
	}
	if (d->ttl < 0 || d->ttl > requested_ttl) {
		rc = cs_error_set(err, CS_ERR_INVALID_REQUEST, "ttl must be between "
		    "1 and the requested %llds: approvals may only narrow",
		    (long long)requested_ttl);
		goto out;
	}
	{
		char *joined = d->scopes != NULL ? scopes_join(d->scopes) : NULL;

		json_t *g = json_array();
		size_t k;

		for (k = 0; g != NULL && k < approver->ngroups; k++)
			json_array_append_new(g, json_string(approver->groups[k]));
		audit = json_pack("{s:s?, s:s?, s:o, s:o}", "reason", d->reason,
		    "narrowed_scope", joined, "narrowed_ttl", d->ttl > 0 ?
		    json_integer(d->ttl) : json_null(), "approver_groups",
		    g != NULL ? g : json_array());
		free(joined);
	}
	audit_text = audit != NULL ? json_dumps(audit, JSON_COMPACT) : NULL;
	if (audit_text == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)d->ttl);
	params[0] = id;
	params[1] = idbuf;
	params[2] = d->approve ? "approve" : "deny";
	params[3] = d->reason;
	params[4] = narrow;
	params[5] = ttlbuf;
	params[6] = d->approve ? "approval.approved" : "approval.denied";
	params[7] = approver->name;
	params[8] = audit_text;
	if ((rc = db_exec(&decision_insert, params, NULL)) != CS_OK)
		goto unavailable;
	if (!d->approve) {
		if ((rc = db_exec(&set_denied, params, NULL)) != CS_OK)
			goto unavailable;
	} else {
		if ((rc = combine_approvals(id, &requested, requested_ttl, &final,
		    &final_ttl)) != CS_OK)
			goto unavailable;
		{
			struct db_result *res = NULL;
			const char *p1[1] = { id };

			if ((rc = db_exec(&approve_decisions, p1, &res)) != CS_OK)
				goto unavailable;
			approvals = db_nrows(res);
			db_result_free(res);
		}
		if (approvals >= required) {
			if (final.n == 0) {
				rc = cs_error_set(err, CS_ERR_CONFLICT, "the approvers "
				    "kept no scope in common");
				goto out;
			}
			final_arr = db_text_array((const char *const *)final.items,
			    final.n);
			snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)final_ttl);
			params[1] = final_arr;
			params[2] = ttlbuf;
			if (final_arr == NULL ||
			    (rc = db_exec(&set_approved, params, NULL)) != CS_OK)
				goto unavailable;
			quorum = 1;
		}
	}
	if ((rc = db_commit()) != CS_OK)
		goto unavailable;
	in_tx = 0;
	metrics_inc(d->approve ? METRICS_APPROVALS_APPROVED :
	    METRICS_APPROVALS_DENIED);
	log_event(LOG_LEVEL_INFO, d->approve ? "approval.approved" :
	    "approval.denied", json_pack("{s:s, s:s, s:b}", "approval", id,
	    "approver", approver->name, "decided", !d->approve || quorum));
	if (!d->approve || quorum)
		metrics_decision(strtod(db_value(lock, 0, 11), NULL));
	{
		char text[512];

		snprintf(text, sizeof(text), "Request %s was %s by %s%s.", id,
		    d->approve ? "approved" : "denied", approver->name,
		    d->approve && !quorum ? " (more approvals needed)" :
		    " and is no longer pending");
		/*
		 * A receiver that acts on "approval.approved" must not see one
		 * while the request still waits for its quorum.
		 */
		notify_event(!d->approve ? "approval.denied" : quorum ?
		    "approval.approved" : "approval.partially_approved", text, json_pack("{s:s, s:s, s:s, s:b, s:s?}", "id", id,
		    "decision", d->approve ? "approve" : "deny", "approver",
		    approver->name, "pending", d->approve && !quorum,
		    "reason", d->reason));
	}
	rc = approvals_get(approver, id, out, err);
	goto out;
unavailable:
	/*
	 * Whatever the database refused (a lost connection, a full disk, a
	 * privilege taken away from the audit log), nothing was decided:
	 * 503, as every path that mints or records answers.
	 */
	rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
	    "the broker cannot record this decision right now");
out:
	if (in_tx)
		db_rollback();
	scopes_clear(&requested);
	scopes_clear(&final);
	json_decref(audit);
	free(audit_text);
	free(groups);
	free(narrow);
	free(final_arr);
	db_result_free(lock);
	return rc;
}

/* ---- collection ---------------------------------------------------------- */

static enum cs_err
collect_denied(const struct client *client, const char *id, const char *reason,
    enum cs_err code, const char *msg, struct cs_error *err)
{
	char actor[CS_NAME_MAX + 8], clip[64];
	json_t *d;
	enum cs_err rc;

	snprintf(actor, sizeof(actor), "agent:%s", client->name);
	d = json_pack("{s:s, s:s, s:s}", "reason", reason, "auth_req_id",
	    audit_clip(id, clip, sizeof(clip)), "grant_type", "ciba");
	rc = audit_append("token.denied", actor, actor, NULL, d);
	json_decref(d);
	if (rc != CS_OK)
		return cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record this request right now");
	return cs_error_set(err, code, "%s", msg);
}

/* 1 if the space-separated scope text names exactly the set in l. */
static int
same_scopes(const char *text, const struct scope_list *l)
{
	struct scope_list parsed = { 0 };
	size_t i;
	int same;

	if (scopes_parse(text, &parsed, NULL) != CS_OK)
		return 0;
	same = parsed.n == l->n;
	for (i = 0; same && i < parsed.n; i++)
		same = scopes_contains(l, parsed.items[i]);
	scopes_clear(&parsed);
	return same;
}

enum cs_err
approvals_collect(const struct broker_config *cfg,
    const struct client *client, const char *id, const char *scope,
    const char *resource, const char *dpop_jkt, struct token_issued *out,
    struct cs_error *err)
{
	struct db_result *lock = NULL, *appr = NULL;
	struct scope_list approved = { 0 };
	struct grant_set gs;
	struct token_mint m;
	json_t *claims = NULL, *names = NULL, *details = NULL;
	char agentbuf[24], *arr = NULL, *items[CS_SCOPES_MAX];
	const char *params[3], *state, *reason = NULL;
	int64_t limits[2 * CS_SCOPES_MAX], ttl = 0, required = 0, max_uses = 0;
	int in_tx = 0, dummy_required;
	size_t n = 0, i, nl = 0;
	enum cs_err rc;
	char msg[256];

	memset(out, 0, sizeof(*out));
	if (strlen(id) > 64 || id[0] == '\0')
		return collect_denied(client, id, "unknown_auth_req_id",
		    CS_ERR_INVALID_GRANT, "unknown auth_req_id", err);
	snprintf(agentbuf, sizeof(agentbuf), "%lld", (long long)client->agent_id);
	if ((rc = db_begin()) != CS_OK)
		goto unavailable;
	in_tx = 1;
	params[0] = id;
	params[1] = agentbuf;
	if ((rc = db_exec(&collect_lock, params, &lock)) != CS_OK)
		goto unavailable;
	if (db_nrows(lock) == 0) {
		/* Unknown, or another agent's: the same answer for both. */
		db_rollback();
		in_tx = 0;
		rc = collect_denied(client, id, "unknown_auth_req_id",
		    CS_ERR_INVALID_GRANT, "unknown auth_req_id", err);
		goto out;
	}
	state = db_value(lock, 0, 0);
	if ((strcmp(state, "pending") == 0 || strcmp(state, "approved") == 0) &&
	    strcmp(db_value(lock, 0, 1), "t") == 0) {
		if ((rc = expire_in_tx(id)) != CS_OK || (rc = db_commit()) != CS_OK)
			goto unavailable;
		in_tx = 0;
		notify_expired(id);
		rc = cs_error_set(err, CS_ERR_EXPIRED_TOKEN,
		    "the approval request has expired");
		goto out;
	}
	if (strcmp(state, "pending") == 0) {
		int too_fast = strcmp(db_value(lock, 0, 2), "t") == 0;

		params[1] = too_fast ? "true" : "false";
		if ((rc = db_exec(&poll_touch, params, NULL)) != CS_OK ||
		    (rc = db_commit()) != CS_OK)
			goto unavailable;
		in_tx = 0;
		rc = too_fast ? cs_error_set(err, CS_ERR_SLOW_DOWN, "polling "
		    "faster than the interval; wait 5 seconds longer") :
		    cs_error_set(err, CS_ERR_AUTHORIZATION_PENDING,
		    "waiting for a human approver");
		goto out;
	}
	db_rollback();
	in_tx = 0;
	if (strcmp(state, "denied") == 0) {
		rc = cs_error_set(err, CS_ERR_REQUEST_DENIED,
		    "an approver denied the request");
		goto out;
	}
	if (strcmp(state, "expired") == 0) {
		rc = cs_error_set(err, CS_ERR_EXPIRED_TOKEN,
		    "the approval request has expired");
		goto out;
	}
	if (strcmp(state, "consumed") == 0) {
		rc = collect_denied(client, id, "approval_already_used",
		    CS_ERR_INVALID_GRANT, "this approval has already been used",
		    err);
		goto out;
	}
	/* Approved. Take the lock again for the minting transaction. */
	if ((rc = db_begin()) != CS_OK)
		goto unavailable;
	in_tx = 1;
	params[1] = agentbuf;
	db_result_free(lock);
	lock = NULL;
	if ((rc = db_exec(&collect_lock, params, &lock)) != CS_OK)
		goto unavailable;
	if (db_nrows(lock) == 0 || strcmp(db_value(lock, 0, 0), "approved") != 0) {
		/* A concurrent collection won the race. */
		db_rollback();
		in_tx = 0;
		rc = collect_denied(client, id, "approval_already_used",
		    CS_ERR_INVALID_GRANT, "this approval has already been used",
		    err);
		goto out;
	}
	if (db_parse_text_array(db_value(lock, 0, 3), items, CS_SCOPES_MAX,
	    &n) != 0 ||
	    util_parse_int64(db_value(lock, 0, 5), 1, INT64_MAX, &ttl) != 0 ||
	    util_parse_int64(db_value(lock, 0, 7), 1, 100, &required) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	for (i = 0; i < n; i++)
		approved.items[i] = items[i];
	approved.n = n;
	/* A collection must not ask for anything but what was approved. */
	if ((scope != NULL && !same_scopes(scope, &approved)) ||
	    (resource != NULL && strcmp(resource, db_value(lock, 0, 4)) != 0)) {
		reason = "parameters_differ";
		snprintf(msg, sizeof(msg), "scope or resource differ from the "
		    "approved request");
		goto refuse;
	}
	rc = grants_resolve(client->agent_id, db_value(lock, 0, 4), &approved, &gs);
	if (rc != CS_OK)
		goto unavailable;
	for (i = 0; i < gs.n; i++) {
		if (!gs.s[i].known || !gs.s[i].granted) {
			reason = "grant_revoked";
			snprintf(msg, sizeof(msg), "scope '%s' is no longer granted",
			    gs.s[i].name);
			goto refuse;
		}
		limits[nl++] = gs.s[i].scope_max_ttl;
		limits[nl++] = gs.s[i].grant_max_ttl;
	}
	arr = db_text_array((const char *const *)approved.items, approved.n);
	if (arr == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	params[0] = id;
	params[1] = arr;
	if ((rc = db_exec(&valid_approvers, params, &appr)) != CS_OK)
		goto unavailable;
	if (db_nrows(appr) < required) {
		reason = "approver_revoked";
		snprintf(msg, sizeof(msg), "an approver of this request is no "
		    "longer allowed to approve it");
		goto refuse;
	}
	if ((rc = grants_write_policy(&approved, &dummy_required, &max_uses)) !=
	    CS_OK)
		goto unavailable;

	names = json_array();
	for (i = 0; names != NULL && i < (size_t)db_nrows(appr); i++)
		json_array_append_new(names, json_string(db_value(appr, (int)i, 0)));
	if (!db_isnull(lock, 0, 6))
		details = json_loads(db_value(lock, 0, 6), 0, NULL);
	claims = json_pack("{s:{s:s, s:O}}", "approval", "id", id,
	    "approvers", names);
	if (claims == NULL || (details != NULL &&
	    json_object_set(claims, "authorization_details", details) != 0) ||
	    (dpop_jkt != NULL && json_object_set_new(claims, "cnf",
	    json_pack("{s:s}", "jkt", dpop_jkt)) != 0)) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	memset(&m, 0, sizeof(m));
	m.client = client;
	m.scopes = &approved;
	m.audience = db_value(lock, 0, 4);
	/* The lifetime starts now, at collection, not when the agent asked. */
	m.ttl = tokens_ttl(ttl, cfg->default_ttl, cfg->max_ttl, limits, nl);
	m.approval_id = id;
	m.extra_claims = claims;
	m.max_uses = max_uses;
	rc = tokens_mint(cfg, &m, out, err);
	if (rc == CS_ERR_CONFLICT) {
		/*
		 * The insert refused. If the agent was disabled, or its secret
		 * rotated, after a cached authentication, answer as
		 * authentication would, out of the transaction so that the
		 * failure's audit event is kept; the request stays approved for
		 * the agent's new secret.
		 */
		db_rollback();
		in_tx = 0;
		if ((rc = agents_recheck(client, err)) != CS_OK)
			goto out;
		reason = "grant_revoked";
		snprintf(msg, sizeof(msg), "a grant was revoked");
		goto refused;
	}
	if (rc != CS_OK)
		goto out;
	params[0] = id;
	params[1] = out->jti;
	params[2] = client->name;
	{
		struct db_result *res = NULL;

		rc = db_exec(&set_consumed, params, &res);
		if (rc == CS_OK && db_nrows(res) != 1)
			rc = CS_ERR_CONFLICT;
		db_result_free(res);
	}
	if (rc != CS_OK || (rc = db_commit()) != CS_OK) {
		tokens_issued_clear(out);
		goto unavailable;
	}
	in_tx = 0;
	rc = CS_OK;
	goto out;
refuse:
	db_rollback();
	in_tx = 0;
refused:
	tokens_issued_clear(out);
	rc = collect_denied(client, id, reason, CS_ERR_INVALID_GRANT, msg, err);
	goto out;
unavailable:
	tokens_issued_clear(out);
	if (rc != CS_ERR_INTERNAL)
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot complete this request right now");
	else
		cs_error_set(err, rc, "internal error");
out:
	if (in_tx)
		db_rollback();
	scopes_clear(&approved);
	json_decref(claims);
	json_decref(names);
	json_decref(details);
	free(arr);
	db_result_free(lock);
	db_result_free(appr);
	return rc;
}

/* ---- expiry ---------------------------------------------------------------- */

enum cs_err
approvals_expire_due(int *n)
{
	struct db_result *res = NULL;
	enum cs_err rc;
	int i;

	if (n != NULL)
		*n = 0;
	rc = db_exec(&expire_due, NULL, &res);
	if (rc != CS_OK)
		return rc;
	for (i = 0; i < db_nrows(res); i++)
		notify_expired(db_value(res, i, 0));
	if (n != NULL)
		*n = db_nrows(res);
	db_result_free(res);
	return CS_OK;
}

static const struct db_stmt gauges = {
	"approvals_gauges",
	"SELECT (SELECT count(*) FROM approval_requests WHERE state = 'pending' "
	"AND expires_at > now()), "
	"(SELECT count(*) FROM approvers WHERE disabled_at IS NULL "
	"AND key_expires_at > now() AND key_expires_at <= now() + "
	"make_interval(days => " APPROVALS_KEY_WARN_DAYS_SQL ")), "
	"(SELECT count(*) FROM approvers WHERE disabled_at IS NULL "
	"AND key_expires_at <= now())",
	0
};

int
approvals_gauges(struct approvals_gauges *g)
{
	struct db_result *res = NULL;
	int64_t v[3];
	int i, rc = -1;

	g->pending = g->keys_expiring = g->keys_expired = -1;
	if (db_exec(&gauges, NULL, &res) != CS_OK || db_nrows(res) != 1)
		goto out;
	for (i = 0; i < 3; i++)
		if (util_parse_int64(db_value(res, 0, i), 0, INT64_MAX,
		    &v[i]) != 0)
			goto out;
	g->pending = (long)v[0];
	g->keys_expiring = (long)v[1];
	g->keys_expired = (long)v[2];
	rc = 0;
out:
	db_result_free(res);
	return rc;
}

static pthread_t sweeper;
static int sweeper_running;
static int sweeper_stop;
static pthread_mutex_t sweeper_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweeper_cv = PTHREAD_COND_INITIALIZER;

static void *
sweep_loop(void *arg)
{
	(void)arg;
	db_thread_dedicated();
	pthread_mutex_lock(&sweeper_mu);
	while (!sweeper_stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 2;
		pthread_cond_timedwait(&sweeper_cv, &sweeper_mu, &ts);
		if (sweeper_stop)
			break;
		pthread_mutex_unlock(&sweeper_mu);
		(void)approvals_expire_due(NULL);
		pthread_mutex_lock(&sweeper_mu);
	}
	pthread_mutex_unlock(&sweeper_mu);
	db_shutdown();
	return NULL;
}

int
approvals_start_sweeper(void)
{
	if (pthread_create(&sweeper, NULL, sweep_loop, NULL) != 0)
		return -1;
	sweeper_running = 1;
	return 0;
}

void
approvals_stop_sweeper(void)
{
	if (!sweeper_running)
		return;
	pthread_mutex_lock(&sweeper_mu);
	sweeper_stop = 1;
	pthread_cond_signal(&sweeper_cv);
	pthread_mutex_unlock(&sweeper_mu);
	pthread_join(sweeper, NULL);
	sweeper_running = 0;
}
