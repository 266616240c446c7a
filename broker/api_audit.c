/*
 * api_audit.c: GET /v1/audit for auditors: approvers whose groups include
 * "auditor". Paged by seq: ?after=SEQ&limit=N (1-1000, default 100), with
 * the export filters since, until (RFC 3339), type, agent and jti.
 */
#include <string.h>

#include "api.h"
#include "approvals.h"
#include "audit.h"
#include "util.h"

#define AUDITOR_GROUP	"auditor"

static int
is_auditor(const struct approver *a)
{
	size_t i;

	for (i = 0; i < a->ngroups; i++)
		if (strcmp(a->groups[i], AUDITOR_GROUP) == 0)
			return 1;
	return 0;
}

void
api_audit(struct http_req *req)
{
	struct audit_filter f;
	struct approver a;
	const char *v;
	json_t *events = NULL;
	int64_t after = 0, limit = 100, last = 0;

	if (api_authenticate_approver(req, &a) != 0)
		return;
	if (!is_auditor(&a)) {
		http_reply_errorf(req, CS_ERR_FORBIDDEN, "the audit log is for "
		    "members of the \"" AUDITOR_GROUP "\" group");
		goto out;
	}
	memset(&f, 0, sizeof(f));
	if (((v = http_req_query(req, "after")) != NULL &&
	    util_parse_int64(v, 0, INT64_MAX, &after) != 0) ||
	    ((v = http_req_query(req, "limit")) != NULL &&
	    util_parse_int64(v, 1, 1000, &limit) != 0) ||
	    ((v = http_req_query(req, "since")) != NULL &&
	    util_parse_rfc3339(v, &f.since) != 0) ||
	    ((v = http_req_query(req, "until")) != NULL &&
	    util_parse_rfc3339(v, &f.until) != 0) ||
	    ((f.type = http_req_query(req, "type")) != NULL &&
	    (strlen(f.type) > 64 || !util_valid_utf8(f.type, strlen(f.type)))) ||
	    ((f.agent = http_req_query(req, "agent")) != NULL &&
	    !util_valid_name(f.agent)) ||
	    ((f.jti = http_req_query(req, "jti")) != NULL &&
	    !util_valid_id(f.jti, strlen(f.jti)))) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "bad query: after "
		    "and limit (1-1000) are integers, since and until RFC 3339 "
		    "times, agent a name, jti a token id");
		goto out;
	}
	if (audit_page(&f, after, (int)limit, &events, &last) != CS_OK) {
		http_reply_errorf(req, CS_ERR_UNAVAILABLE,
		    "the audit log cannot be read right now");
		goto out;
	}
	/* A full page may have more after it; a short one is the end. */
	http_reply_json(req, 200, json_pack("{s:o, s:o}", "events", events,
	    "next_after", json_array_size(events) == (size_t)limit ?
	    json_integer(last) : json_null()));
out:
	approvals_approver_clear(&a);
}
