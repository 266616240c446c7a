/*
 * test_uses.c: unit tests for uses_parse, the validation of a use report
 * (POST /v1/uses). Recording needs PostgreSQL and is covered by
 * tests/e2e/uses.test.mjs.
 *
 * A batch is written whole or not at all, so a single bad entry must
 * refuse the whole body: most checks here are refusals.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "uses.h"

#define NOW	((int64_t)1795841124)
#define JTI	"kfQZRT-Ldj9Eo4cE06d7LQ"

/* Parse text as a request body and run uses_parse on it. */
static enum cs_err
parse(const char *text, json_t **out, struct cs_error *err)
{
	json_t *body = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	enum cs_err rc;

	if (body == NULL) {
		*out = NULL;
		return CS_ERR__COUNT;	/* not even JSON: the handler's 400 */
	}
	rc = uses_parse(body, NOW, out, err);
	json_decref(body);
	return rc;
}

/* 1 if the entry (a JSON object text) alone is refused as invalid_request. */
static int
entry_refused(const char *entry)
{
	char text[512];
	struct cs_error err;
	json_t *out = json_true();	/* must become NULL */
	enum cs_err rc;

	snprintf(text, sizeof(text), "{\"uses\":[%s]}", entry);
	rc = parse(text, &out, &err);
	if (rc == CS_OK) {
		json_decref(out);
		return 0;
	}
	return rc == CS_ERR_INVALID_REQUEST && out == NULL &&
	    strstr(err.desc, "uses[0]") != NULL;
}

static int
body_refused(const char *text)
{
	struct cs_error err;
	json_t *out = json_true();	/* must become NULL */
	enum cs_err rc;

	rc = parse(text, &out, &err);
	if (rc == CS_OK) {
		json_decref(out);
		return 0;
	}
	return rc == CS_ERR_INVALID_REQUEST && out == NULL;
}

static void
test_accepts(void)
{
	struct cs_error err;
	json_t *out = NULL, *e;
	char text[256];

	snprintf(text, sizeof(text), "{\"uses\":[{\"jti\":\"%s\",\"at\":%lld,"
	    "\"result\":\"ok\"},{\"result\":\"not_yet_valid\",\"at\":%lld,"
	    "\"jti\":\"x\"}]}", JTI, (long long)NOW, (long long)(NOW - 5));
	CHECK(parse(text, &out, &err) == CS_OK);
	CHECK(json_array_size(out) == 2);
	e = json_array_get(out, 0);
	CHECK_STR(json_string_value(json_object_get(e, "jti")), JTI);
	CHECK(json_integer_value(json_object_get(e, "at")) == NOW);
	CHECK_STR(json_string_value(json_object_get(e, "result")), "ok");
	e = json_array_get(out, 1);
	CHECK_STR(json_string_value(json_object_get(e, "result")),
	    "not_yet_valid");
	CHECK(json_object_size(e) == 3);
	json_decref(out);
}

static void
test_every_result_name(void)
{
	static const char *const names[] = { "ok", "malformed", "too_large",
	    "bad_header", "unknown_key", "bad_signature", "missing_claim",
	    "wrong_issuer", "wrong_audience", "expired", "not_yet_valid",
	    "internal", NULL };
	char entry[160];
	struct cs_error err;
	json_t *out;
	size_t i;

	for (i = 0; names[i] != NULL; i++) {
		snprintf(entry, sizeof(entry), "{\"uses\":[{\"jti\":\"a\",\"at\":"
		    "%lld,\"result\":\"%s\"}]}", (long long)NOW, names[i]);
		out = NULL;
		CHECK(parse(entry, &out, &err) == CS_OK);
		json_decref(out);
	}
}

static void
test_time_window(void)
{
	char entry[160];

	snprintf(entry, sizeof(entry), "{\"jti\":\"a\",\"at\":%lld,"
	    "\"result\":\"ok\"}", (long long)(NOW - USES_PAST_MAX));
	CHECK(!entry_refused(entry));
	snprintf(entry, sizeof(entry), "{\"jti\":\"a\",\"at\":%lld,"
	    "\"result\":\"ok\"}", (long long)(NOW + USES_FUTURE_MAX));
	CHECK(!entry_refused(entry));
	snprintf(entry, sizeof(entry), "{\"jti\":\"a\",\"at\":%lld,"
	    "\"result\":\"ok\"}", (long long)(NOW - USES_PAST_MAX - 1));
	CHECK(entry_refused(entry));
	snprintf(entry, sizeof(entry), "{\"jti\":\"a\",\"at\":%lld,"
	    "\"result\":\"ok\"}", (long long)(NOW + USES_FUTURE_MAX + 1));
	CHECK(entry_refused(entry));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":1795841124.0,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":\"1795841124\",\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":null,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":-1,\"result\":\"ok\"}"));
}

static void
test_refusals(void)
{
	char big[70];
	char entry[200];

	/* jti */
	memset(big, 'A', 65);
	big[65] = '\0';
	snprintf(entry, sizeof(entry), "{\"jti\":\"%s\",\"at\":1795841124,"
	    "\"result\":\"ok\"}", big);
	CHECK(entry_refused(entry));
	big[64] = '\0';
	snprintf(entry, sizeof(entry), "{\"jti\":\"%s\",\"at\":1795841124,"
	    "\"result\":\"ok\"}", big);
	CHECK(!entry_refused(entry));
	CHECK(entry_refused("{\"jti\":\"\",\"at\":1795841124,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":\"a=b\",\"at\":1795841124,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":\"a b\",\"at\":1795841124,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":\"a/b\",\"at\":1795841124,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":\"a\\u00e9\",\"at\":1795841124,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":7,\"at\":1795841124,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":[\"a\"],\"at\":1795841124,\"result\":\"ok\"}"));
	/* result */
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":1795841124,\"result\":\"active\"}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":1795841124,\"result\":\"unknown\"}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":1795841124,\"result\":\"OK\"}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":1795841124,\"result\":\"\"}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":1795841124,\"result\":0}"));
	/* shape of an entry */
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":1795841124}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"at\":1795841124,\"result\":\"ok\"}"));
	CHECK(entry_refused("{\"jti\":\"a\",\"at\":1795841124,\"result\":\"ok\","
	    "\"extra\":1}"));
	CHECK(entry_refused("[\"a\",1795841124,\"ok\"]"));
	CHECK(entry_refused("\"a\""));
	CHECK(entry_refused("null"));
	/* shape of the body */
	CHECK(body_refused("{}"));
	CHECK(body_refused("{\"uses\":[]}"));
	CHECK(body_refused("{\"uses\":{}}"));
	CHECK(body_refused("{\"uses\":null}"));
	CHECK(body_refused("{\"uses\":[{\"jti\":\"a\",\"at\":1795841124,"
	    "\"result\":\"ok\"}],\"more\":true}"));
	CHECK(body_refused("[{\"jti\":\"a\",\"at\":1795841124,\"result\":\"ok\"}]"));
	/* One bad entry after good ones refuses the batch, naming its index. */
	{
		struct cs_error err;
		json_t *out = json_true();	/* must become NULL */

		CHECK(parse("{\"uses\":[{\"jti\":\"a\",\"at\":1795841124,"
		    "\"result\":\"ok\"},{\"jti\":\"b\",\"at\":1795841124,"
		    "\"result\":\"bogus\"}]}", &out, &err) ==
		    CS_ERR_INVALID_REQUEST);
		CHECK(out == NULL);
		CHECK(strstr(err.desc, "uses[1]") != NULL);
		CHECK(strstr(err.desc, "bogus") == NULL);
	}
}

static void
test_batch_size(void)
{
	static char text[USES_BATCH_MAX * 64 + 64];
	struct cs_error err;
	json_t *out = NULL;
	size_t i, len;

	len = (size_t)snprintf(text, sizeof(text), "{\"uses\":[");
	for (i = 0; i < USES_BATCH_MAX; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
		    "%s{\"jti\":\"j%zu\",\"at\":1795841124,\"result\":\"ok\"}",
		    i > 0 ? "," : "", i);
	snprintf(text + len, sizeof(text) - len, "]}");
	CHECK(parse(text, &out, &err) == CS_OK);
	CHECK(json_array_size(out) == USES_BATCH_MAX);
	json_decref(out);
	snprintf(text + len, sizeof(text) - len, ",{\"jti\":\"j\",\"at\":"
	    "1795841124,\"result\":\"ok\"}]}");
	CHECK(body_refused(text));
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_accepts();
	test_every_result_name();
	test_time_window();
	test_refusals();
	test_batch_size();
	return check_summary(argv[0]);
}
