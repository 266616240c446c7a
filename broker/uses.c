/*
 * uses.c: see uses.h.
 */
#include <stdlib.h>
#include <string.h>

#include "countersign/verify.h"
#include "db.h"
#include "util.h"
#include "uses.h"

/*
 * Every entry of the batch becomes one token.used event, in the order the
 * service sent them, in one statement: a failure writes nothing, so a
 * client that retries after a 503 cannot leave half a batch twice. The
 * token and its agent are joined only to describe the report (whose token,
 * for which audience); nothing here updates tokens, so reports never use up
 * a single-use token.
 */
static const struct db_stmt record_reports = {
	"uses_record",
	"WITH e AS (SELECT x.v, x.n FROM jsonb_array_elements($1::jsonb) "
	"WITH ORDINALITY AS x(v, n)), "
	"i AS (INSERT INTO audit_events (type, actor, subject, jti, details) "
	"SELECT 'token.used', 'service:' || $2, 'agent:' || a.name, "
	"e.v->>'jti', jsonb_build_object('result', e.v->>'result', "
	"'source', 'report', 'reported_at', (e.v->>'at')::bigint, "
	"'audience_ok', coalesce(t.audience = ANY($3::text[]), false), "
	"'known', t.jti IS NOT NULL) "
	"FROM e LEFT JOIN tokens t ON t.jti = e.v->>'jti' "
	"LEFT JOIN agents a ON a.id = t.agent_id ORDER BY e.n RETURNING 1) "
	"SELECT count(*) FROM i",
	3
};

/* 1 if name is a result the verify library can give. */
static int
valid_result(const char *name)
{
	int r;

	for (r = CS_VERIFY_OK; r <= CS_VERIFY_INTERNAL; r++)
		if (strcmp(name, cs_verify_result_name((enum cs_verify_result)r))
		    == 0)
			return 1;
	return 0;
}

/*
 * Check one entry and append its validated copy to out. Returns CS_OK or
 * an error naming the entry by index: its content is untrusted and is not
 * echoed.
 */
static enum cs_err
parse_entry(const json_t *e, size_t i, int64_t now, json_t *out,
    struct cs_error *err)
{
	const json_t *jti, *at, *result;
	json_int_t t;

	jti = json_object_get(e, "jti");
	at = json_object_get(e, "at");
	result = json_object_get(e, "result");
	if (!json_is_object(e) || json_object_size(e) != 3 || jti == NULL ||
	    at == NULL || result == NULL)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "uses[%zu] must "
		    "be an object with exactly jti, at and result", i);
	if (!json_is_string(jti) || !util_valid_id(json_string_value(jti),
	    json_string_length(jti)))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "uses[%zu].jti "
		    "must be 1-64 base64url characters", i);
	if (!json_is_integer(at))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "uses[%zu].at "
		    "must be an integer (seconds since the epoch)", i);
	t = json_integer_value(at);
	if (t < now - USES_PAST_MAX || t > now + USES_FUTURE_MAX)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "uses[%zu].at "
		    "must lie between one day ago and %d seconds from now", i,
		    USES_FUTURE_MAX);
	/* A string with an embedded NUL cannot be one of the names. */
	if (!json_is_string(result) || strlen(json_string_value(result)) !=
	    json_string_length(result) || !valid_result(json_string_value(result)))
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "uses[%zu].result "
		    "must be \"ok\" or a verification failure such as \"expired\"",
		    i);
	if (json_array_append_new(out, json_pack("{s:s, s:I, s:s}", "jti",
	    json_string_value(jti), "at", t, "result",
	    json_string_value(result))) != 0)
		return cs_error_set(err, CS_ERR_INTERNAL, "out of memory");
	return CS_OK;
}

enum cs_err
uses_parse(const json_t *body, int64_t now, json_t **out,
    struct cs_error *err)
{
	const json_t *list;
	json_t *copy = NULL;
	size_t i, n;
	enum cs_err rc;

	*out = NULL;
	list = json_object_get(body, "uses");
	if (!json_is_object(body) || json_object_size(body) != 1 ||
	    list == NULL)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST,
		    "the body must be a JSON object with exactly the member uses");
	n = json_array_size(list);
	if (!json_is_array(list) || n == 0 || n > USES_BATCH_MAX)
		return cs_error_set(err, CS_ERR_INVALID_REQUEST, "uses must be "
		    "an array of 1 to %d entries", USES_BATCH_MAX);
	copy = json_array();
	if (copy == NULL)
		return cs_error_set(err, CS_ERR_INTERNAL, "out of memory");
	for (i = 0; i < n; i++) {
		rc = parse_entry(json_array_get(list, i), i, now, copy, err);
		if (rc != CS_OK)
			goto out;
	}
	*out = copy;
	copy = NULL;
	rc = CS_OK;
out:
	json_decref(copy);
	return rc;
}

enum cs_err
uses_record(const struct service *svc, const json_t *entries,
    int64_t *recorded, struct cs_error *err)
{
	struct db_result *res = NULL;
	char *json = NULL, *auds = NULL;
	const char *params[3];
	enum cs_err rc;

	*recorded = 0;
	json = json_dumps(entries, JSON_COMPACT);
	auds = db_text_array((const char *const *)svc->audiences,
	    svc->naudiences);
	if (json == NULL || auds == NULL) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "out of memory");
		goto out;
	}
	params[0] = json;
	params[1] = svc->name;
	params[2] = auds;
	rc = db_exec(&record_reports, params, &res);
	if (rc != CS_OK) {
		/* As for introspection: no trace, no success. */
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot record these uses right now");
		goto out;
	}
	if (db_nrows(res) != 1 || util_parse_int64(db_value(res, 0, 0), 0,
	    USES_BATCH_MAX, recorded) != 0) {
		rc = cs_error_set(err, CS_ERR_INTERNAL, "internal error");
		goto out;
	}
	rc = CS_OK;
out:
	db_result_free(res);
	free(auds);
	free(json);
	return rc;
}
