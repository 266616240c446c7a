/*
 * fuzz_json.c: libFuzzer target for the JSON path API bodies take:
 * json_loadb with JSON_REJECT_DUPLICATES, as the handlers and jose.c call
 * it.
 *
 * Whatever jansson accepts must survive the way the broker writes JSON
 * back out: json_dumps in the compact form http.c replies with, and in the
 * ASCII-only form log.c writes, must both succeed, and reloading either
 * (with the same flags) must give a value json_equal to the first. A body
 * that parses but cannot be echoed, or echoes as something else, would
 * let a request say one thing to a handler and another to the audit log.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* http.c's largest allowed body (max_body's upper bound is far above). */
#define FUZZ_MAX	65536

static void
check_dump(const json_t *v, size_t flags)
{
	json_error_t jerr;
	json_t *back;
	char *text;

	if ((text = json_dumps(v, flags)) == NULL)
		abort();
	back = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (back == NULL || !json_equal(v, back))
		abort();
	json_decref(back);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *v;

	if (size > FUZZ_MAX)
		return 0;
	v = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (v == NULL)
		return 0;
	/* Without JSON_DECODE_ANY only objects and arrays are accepted. */
	if (!json_is_object(v) && !json_is_array(v))
		abort();
	check_dump(v, JSON_COMPACT);
	check_dump(v, JSON_COMPACT | JSON_ENSURE_ASCII);
	check_dump(v, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(v);
	return 0;
}
