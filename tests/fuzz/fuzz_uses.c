/*
 * fuzz_uses.c: libFuzzer target for the body of POST /v1/uses: json_loadb
 * with JSON_REJECT_DUPLICATES, as api_uses.c calls it, then uses_parse.
 *
 * What uses_parse accepts goes straight into one SQL statement, so every
 * accepted entry must hold exactly what the statement reads: a jti of 1-64
 * base64url characters, an integer time within the window and a result
 * name the verify library can give. Anything refused must leave no output.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "countersign/verify.h"
#include "uses.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX	65536
#define NOW		((int64_t)1795841124)

static void
check_entry(const json_t *e)
{
	const json_t *jti = json_object_get(e, "jti");
	const json_t *at = json_object_get(e, "at");
	const json_t *result = json_object_get(e, "result");
	int r, named = 0;

	if (json_object_size(e) != 3 || !json_is_string(jti) ||
	    !json_is_integer(at) || !json_is_string(result))
		abort();
	if (!util_valid_id(json_string_value(jti), json_string_length(jti)))
		abort();
	if (json_integer_value(at) < NOW - USES_PAST_MAX ||
	    json_integer_value(at) > NOW + USES_FUTURE_MAX)
		abort();
	for (r = CS_VERIFY_OK; r <= CS_VERIFY_INTERNAL; r++)
		if (strcmp(json_string_value(result),
		    cs_verify_result_name((enum cs_verify_result)r)) == 0)
			named = 1;
	if (!named)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cs_error err;
	json_t *body, *out = NULL;
	size_t i;

	if (size > FUZZ_MAX)
		return 0;
	body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (body == NULL)
		return 0;
	if (uses_parse(body, NOW, &out, &err) == CS_OK) {
		if (json_array_size(out) == 0 ||
		    json_array_size(out) > USES_BATCH_MAX ||
		    json_array_size(out) !=
		    json_array_size(json_object_get(body, "uses")))
			abort();
		for (i = 0; i < json_array_size(out); i++)
			check_entry(json_array_get(out, i));
	} else if (out != NULL) {
		abort();
	}
	json_decref(out);
	json_decref(body);
	return 0;
}
