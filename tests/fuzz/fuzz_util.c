/*
 * fuzz_util.c: libFuzzer target for the strict parsers of util.c.
 *
 * Each parser promises one spelling per value, so on top of memory safety
 * the target checks:
 *
 * 1. util_parse_int64: an accepted string is canonical, so printing the
 *    value gives the input back byte for byte; and the value respects the
 *    bounds it was parsed with.
 * 2. util_parse_duration: the result is within [1, UTIL_DURATION_MAX].
 * 3. util_parse_rfc3339: an accepted time formats with
 *    util_format_rfc3339 and that text parses back to the same instant.
 * 4. util_valid_utf8 agrees with itself on every split of the input at a
 *    character boundary it reports (a valid string is a concatenation of
 *    valid strings).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every parser here refuses long input; a little more reaches all paths. */
#define FUZZ_MAX	4096

static void
check_int64(const char *s)
{
	static const int64_t bounds[][2] = {
		{ INT64_MIN, INT64_MAX }, { 0, INT64_MAX }, { 1, 65535 },
		{ -5, 5 }, { INT64_MIN, -1 }, { INT64_MAX, INT64_MAX },
	};
	char buf[32];
	int64_t v;
	size_t i;

	for (i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
		v = 0;
		if (util_parse_int64(s, bounds[i][0], bounds[i][1], &v) != 0)
			continue;
		if (v < bounds[i][0] || v > bounds[i][1])
			abort();
		snprintf(buf, sizeof(buf), "%" PRId64, v);
		if (strcmp(buf, s) != 0)
			abort();
	}
}

static void
check_duration(const char *s)
{
	int64_t v = 0;

	if (util_parse_duration(s, &v) == 0 &&
	    (v < 1 || v > UTIL_DURATION_MAX))
		abort();
}

static void
check_rfc3339(const char *s)
{
	char buf[64];
	int64_t t = 0, back = 0;

	if (util_parse_rfc3339(s, &t) != 0)
		return;
	if (util_format_rfc3339(t, buf, sizeof(buf)) != 0)
		abort();
	if (util_parse_rfc3339(buf, &back) != 0 || back != t)
		abort();
}

static void
check_utf8(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	size_t i;

	if (!util_valid_utf8(s, size))
		return;
	/* Split before every byte that is not a continuation byte. */
	for (i = 1; i < size; i++) {
		if ((data[i] & 0xc0) == 0x80)
			continue;
		if (!util_valid_utf8(s, i) ||
		    !util_valid_utf8(s + i, size - i))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size > FUZZ_MAX)
		return 0;
	if ((s = malloc(size + 1)) == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	check_int64(s);
	check_duration(s);
	check_rfc3339(s);
	check_utf8(data, size);
	free(s);
	return 0;
}
