/*
 * api_uses.c: POST /v1/uses, where services that verify tokens offline
 * report the uses they saw (docs/use-reports.md).
 *
 * Services authenticate as at the introspection endpoint, but the body is
 * JSON, so only client_secret_basic can carry the credentials.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "services.h"
#include "util.h"
#include "uses.h"

void
api_uses(struct http_req *req)
{
	struct service svc;
	struct cs_error err;
	json_t *body = NULL, *entries = NULL;
	const char *text;
	char count[24];
	int64_t recorded = 0;
	size_t len;

	memset(&svc, 0, sizeof(svc));
	if (!http_req_content_type_is(req, "application/json")) {
		http_reply_errorf(req, CS_ERR_UNSUPPORTED_MEDIA_TYPE,
		    "the body must be application/json");
		return;
	}
	/* No form: client_secret_post has nowhere to live in a JSON body. */
	if (services_authenticate(http_req_header(req, "Authorization", NULL),
	    NULL, "uses", 0, &svc, &err) != CS_OK) {
		if (err.code == CS_ERR_INVALID_CLIENT)
			http_add_header(req, "WWW-Authenticate",
			    "Basic realm=\"countersign-services\"");
		http_reply_error(req, &err);
		goto out;
	}
	http_log_field(req, "service", svc.name);
	text = http_req_body(req, &len);
	body = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (body == NULL) {
		http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
		    "the body is not valid JSON (or repeats a member)");
		goto out;
	}
	if (uses_parse(body, util_now(), &entries, &err) != CS_OK ||
	    uses_record(&svc, entries, &recorded, &err) != CS_OK) {
		http_reply_error(req, &err);
		goto out;
	}
	snprintf(count, sizeof(count), "%lld", (long long)recorded);
	http_log_field(req, "uses", count);
	http_reply_json(req, 200, json_pack("{s:I}", "recorded",
	    (json_int_t)recorded));
out:
	json_decref(entries);
	json_decref(body);
	services_clear(&svc);
}
