/*
 * test_util.c: unit tests for the strict parsers and validators of util.c.
 *
 * These functions guard every number, duration, time and name that comes
 * from a config file, the command line or a request, so most checks here
 * are refusals: each spelling the contract does not allow must fail, and a
 * refusal must leave the output untouched.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "util.h"

/* Sentinel that no successful parse in this file produces. */
#define UNTOUCHED	((int64_t)0x5a5a5a5a5a5a5a5aLL)

/* util_parse_int64 over the whole int64 range; -1 or the value's rc. */
static int
int64_ok(const char *s, int64_t want)
{
	int64_t v = UNTOUCHED;

	return util_parse_int64(s, INT64_MIN, INT64_MAX, &v) == 0 && v == want;
}

/* 1 if s is refused within [min, max] and the output is left alone. */
static int
int64_bad(const char *s, int64_t min, int64_t max)
{
	int64_t v = UNTOUCHED;

	return util_parse_int64(s, min, max, &v) == -1 && v == UNTOUCHED;
}

static void
test_parse_int64(void)
{
	static const char *bad[] = {
		"", "-", "+1", "+0", " 1", "1 ", "\t1", "1\n", "007", "00", "-0",
		"-00", "-01", "0x10", "1e3", "1.0", "1,000", "--1", "1-", "abc",
		"12a", "9223372036854775808", "-9223372036854775809",
		"99999999999999999999", "-99999999999999999999",
		"18446744073709551616", "18446744073709551615",
	};
	int64_t v = UNTOUCHED;
	size_t i;
	int ok = 1;

	CHECK(int64_ok("0", 0));
	CHECK(int64_ok("1", 1));
	CHECK(int64_ok("-1", -1));
	CHECK(int64_ok("10", 10));
	CHECK(int64_ok("1234567890", 1234567890));
	CHECK(int64_ok("9223372036854775807", INT64_MAX));
	CHECK(int64_ok("9223372036854775806", INT64_MAX - 1));
	CHECK(int64_ok("-9223372036854775808", INT64_MIN));
	CHECK(int64_ok("-9223372036854775807", INT64_MIN + 1));

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!int64_bad(bad[i], INT64_MIN, INT64_MAX)) {
			fprintf(stderr, "accepted int64 \"%s\"\n", bad[i]);
			ok = 0;
		}
	}
	CHECK(ok);
	CHECK(util_parse_int64(NULL, 0, 10, &v) == -1 && v == UNTOUCHED);

	/* Bounds are inclusive on both sides. */
	CHECK(util_parse_int64("1", 1, 65535, &v) == 0 && v == 1);
	CHECK(util_parse_int64("65535", 1, 65535, &v) == 0 && v == 65535);
	CHECK(int64_bad("0", 1, 65535));
	CHECK(int64_bad("65536", 1, 65535));
	CHECK(int64_bad("-1", 0, 10));
	CHECK(util_parse_int64("-5", -5, 5, &v) == 0 && v == -5);
	CHECK(int64_bad("-6", -5, 5));
	CHECK(int64_bad("6", -5, 5));
	/* INT64_MIN only when the range reaches it. */
	CHECK(int64_bad("-9223372036854775808", INT64_MIN + 1, INT64_MAX));
	CHECK(int64_bad("-9223372036854775808", 0, INT64_MAX));
	CHECK(int64_bad("9223372036854775807", INT64_MIN, INT64_MAX - 1));
	/* A value in range of a small max must not be parsed into a negative. */
	CHECK(int64_bad("9223372036854775807", -10, 10));
}

static int
dur_ok(const char *s, int64_t want)
{
	int64_t v = UNTOUCHED;

	return util_parse_duration(s, &v) == 0 && v == want;
}

static void
test_parse_duration(void)
{
	static const char *bad[] = {
		"", "0", "0s", "0m", "0h0m0s", "5x", "m", "s", "h30m", "1m1h",
		"1s1m", "1h1h", "1m1m", "1d1d", "1h30", "1d5", "-5", "-5s", "+5",
		" 5", "5 ", "5m ", "1h 30m", "5S", "5M", "1.5h", "5ms", "1w",
		"1y", "9999999999", "9999999999s", "1000000000s",
		"367d", "366d1s", "8785h", "527041m", "31622401",
		"99999999999999999999999999999999", "1d1d1d1d1d1d1d1d1d1d",
	};
	int64_t v = UNTOUCHED;
	size_t i;
	int ok = 1;

	CHECK(dur_ok("90", 90));
	CHECK(dur_ok("1", 1));
	CHECK(dur_ok("1s", 1));
	CHECK(dur_ok("90s", 90));
	CHECK(dur_ok("5m", 300));
	CHECK(dur_ok("1h", 3600));
	CHECK(dur_ok("1h30m", 5400));
	CHECK(dur_ok("2d", 172800));
	CHECK(dur_ok("1d2h3m4s", 86400 + 7200 + 180 + 4));
	CHECK(dur_ok("1d4s", 86404));
	CHECK(dur_ok("0h5m", 300));
	CHECK(dur_ok("90m", 5400));
	/* Exactly the one-year ceiling is allowed, one second more is not. */
	CHECK(dur_ok("366d", UTIL_DURATION_MAX));
	CHECK(dur_ok("31622400", UTIL_DURATION_MAX));
	CHECK(dur_ok("31622400s", UTIL_DURATION_MAX));
	CHECK(dur_ok("8784h", UTIL_DURATION_MAX));
	CHECK(dur_ok("365d23h59m60s", UTIL_DURATION_MAX));

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = UNTOUCHED;
		if (util_parse_duration(bad[i], &v) != -1 || v != UNTOUCHED) {
			fprintf(stderr, "accepted duration \"%s\"\n", bad[i]);
			ok = 0;
		}
	}
	CHECK(ok);
	CHECK(util_parse_duration(NULL, &v) == -1);
}

static int
ts_ok(const char *s, int64_t want)
{
	int64_t v = UNTOUCHED;

	return util_parse_rfc3339(s, &v) == 0 && v == want;
}

static void
test_parse_rfc3339(void)
{
	static const char *bad[] = {
		"", "2026", "2026-01-02", "2026-01-02T03:04:05",
		"2026-01-02T03:04Z", "2026-01-02 03:04:05Z", "2026-01-02x03:04:05Z",
		"2026/01/02T03:04:05Z", "2026-1-02T03:04:05Z", "2026-01-2T03:04:05Z",
		"2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
		"2026-01-32T00:00:00Z", "2026-01-00T00:00:00Z",
		"2026-04-31T00:00:00Z", "2026-06-31T00:00:00Z",
		"2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z",
		"2026-01-01T23:59:61Z",
		"2023-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
		"1900-02-29T00:00:00Z", "2024-02-30T00:00:00Z",
		"1969-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
		"2026-01-02T03:04:05ZZ", "2026-01-02T03:04:05Z ",
		" 2026-01-02T03:04:05Z", "2026-01-02T03:04:05Zjunk",
		"2026-01-02T03:04:05.Z", "2026-01-02T03:04:05.123",
		"2026-01-02T03:04:05,5Z", "2026-01-02T03:04:05.1x2Z",
		"2026-01-02T03:04:05+0200", "2026-01-02T03:04:05+02",
		"2026-01-02T03:04:05+02:00:00", "2026-01-02T03:04:05+2:00",
		"2026-01-02T03:04:05+24:00", "2026-01-02T03:04:05+02:60",
		"2026-01-02T03:04:05 +02:00", "2026-01-02T03:04:05+02:00Z",
		"2026-01-02T03:04:05UTC", "2026-01-02T03:04:05GMT",
		"+026-01-02T03:04:05Z", "2026-01-02T03:04:5Z",
		"2026-01-02T03:04:05.1234567890123456789012Z",
		/* A local time of 1970 whose UTC instant is before the epoch. */
		"1970-01-01T00:00:00+01:00",
		/* Year 9999 pushed into year 10000 by its offset. */
		"9999-12-31T23:59:59-00:01",
	};
	int64_t v = UNTOUCHED;
	size_t i;
	int ok = 1;

	CHECK(ts_ok("1970-01-01T00:00:00Z", 0));
	CHECK(ts_ok("2026-01-02T03:04:05Z", 1767323045));
	CHECK(ts_ok("2026-01-02t03:04:05z", 1767323045));
	CHECK(ts_ok("2026-01-02t03:04:05Z", 1767323045));
	CHECK(ts_ok("2026-01-02T03:04:05z", 1767323045));
	CHECK(ts_ok("2026-01-02T03:04:05.5Z", 1767323045));
	CHECK(ts_ok("2026-01-02T03:04:05.999999999Z", 1767323045));
	CHECK(ts_ok("2026-01-02T03:04:05.000+00:00", 1767323045));
	CHECK(ts_ok("2026-01-02T03:04:05+00:00", 1767323045));
	CHECK(ts_ok("2026-01-02T03:04:05-00:00", 1767323045));
	/* Local time is UTC plus the offset. */
	CHECK(ts_ok("2026-01-02T05:04:05+02:00", 1767323045));
	CHECK(ts_ok("2026-01-01T21:34:05-05:30", 1767323045));
	CHECK(ts_ok("2026-01-02T03:04:05+02:00", 1767323045 - 7200));
	CHECK(ts_ok("2026-01-02T03:04:05-05:30", 1767323045 + 19800));
	CHECK(ts_ok("2026-01-02T03:04:05.25-05:30", 1767323045 + 19800));
	CHECK(ts_ok("2026-01-02T03:04:05+23:59", 1767323045 - 86340));
	/* Leap years: divisible by 4, except centuries not divisible by 400. */
	CHECK(ts_ok("2024-02-29T12:00:00Z", 1709208000));
	CHECK(ts_ok("2000-02-29T00:00:00Z", 951782400));
	CHECK(ts_ok("2023-02-28T00:00:00Z", 1677542400));
	CHECK(ts_ok("2038-01-19T03:14:08Z", 2147483648LL));
	CHECK(ts_ok("9999-12-31T23:59:59Z", 253402300799LL));
	/* A leap second is folded into the second before it. */
	CHECK(ts_ok("2016-12-31T23:59:60Z", 1483228799));
	CHECK(ts_ok("1970-01-01T01:00:00+01:00", 0));

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = UNTOUCHED;
		if (util_parse_rfc3339(bad[i], &v) != -1 || v != UNTOUCHED) {
			fprintf(stderr, "accepted time \"%s\"\n", bad[i]);
			ok = 0;
		}
	}
	CHECK(ok);
	CHECK(util_parse_rfc3339(NULL, &v) == -1);
}

static void
test_format_rfc3339(void)
{
	static const int64_t ts[] = {
		0, 1, 59, 86399, 86400, 951782400, 1483228799, 1709208000,
		1767323045, 2147483647LL, 2147483648LL, 4102444800LL,
		253402300799LL,
	};
	char buf[32];
	int64_t back;
	size_t i;
	int ok = 1;

	CHECK(util_format_rfc3339(0, buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "1970-01-01T00:00:00Z");
	CHECK(util_format_rfc3339(1767323045, buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "2026-01-02T03:04:05Z");
	CHECK(util_format_rfc3339(951782400, buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "2000-02-29T00:00:00Z");

	for (i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		back = UNTOUCHED;
		if (util_format_rfc3339(ts[i], buf, sizeof(buf)) != 0 ||
		    strlen(buf) != 20 || util_parse_rfc3339(buf, &back) != 0 ||
		    back != ts[i]) {
			fprintf(stderr, "round trip of %lld failed\n",
			    (long long)ts[i]);
			ok = 0;
		}
	}
	CHECK(ok);

	/* Every day of a leap year and a non-leap year, at odd hours. */
	ok = 1;
	for (back = 1704067200; back < 1704067200 + 2 * 366 * 86400;
	    back += 86400 + 3661) {
		int64_t again = UNTOUCHED;

		if (util_format_rfc3339(back, buf, sizeof(buf)) != 0 ||
		    util_parse_rfc3339(buf, &again) != 0 || again != back)
			ok = 0;
	}
	CHECK(ok);

	/* The buffer needs room for 20 characters and the NUL. */
	CHECK(util_format_rfc3339(0, buf, 21) == 0);
	CHECK(util_format_rfc3339(0, buf, 20) == -1);
	CHECK(util_format_rfc3339(0, buf, 1) == -1);
}

static void
test_valid_name(void)
{
	static const char *good[] = {
		"a", "A", "0", "agent-1", "my.agent_2", "x-", "9lives",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	static const char *bad[] = {
		"", "-a", ".a", "_a", "a b", "a/b", "a:b", "a@b", "a\n", " a",
		"\xc3\xa9", "a\xc3\xa9", "a+b", "a*", "a%20",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	size_t i;
	int ok = 1;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (util_valid_name(good[i]) != 1) {
			fprintf(stderr, "refused name \"%s\"\n", good[i]);
			ok = 0;
		}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (util_valid_name(bad[i]) != 0) {
			fprintf(stderr, "accepted name \"%s\"\n", bad[i]);
			ok = 0;
		}
	CHECK(ok);
	CHECK(strlen(good[7]) == 64 && strlen(bad[15]) == 65);
	CHECK(util_valid_name(NULL) == 0);
}

static int
utf8(const char *s)
{
	return util_valid_utf8(s, strlen(s));
}

static void
test_valid_utf8(void)
{
	static const char *good[] = {
		"", "plain ascii", "tab\there", "cr\rlf\n", "~",
		"\xc2\x80", "\xc2\xa0", "\xc3\xa9t\xc3\xa9", "\xdf\xbf",
		"\xe0\xa0\x80", "\xe2\x82\xac", "\xed\x9f\xbf", "\xee\x80\x80",
		"\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf0\x9f\x98\x80",
		"\xf4\x8f\xbf\xbf",
	};
	static const char *bad[] = {
		/* C0 controls other than tab, CR and LF, and DEL */
		"\x01", "a\x1b[0m", "\x08", "\x0b", "\x0c", "\x1f", "\x7f",
		/* lone continuation bytes and bytes that never occur */
		"\x80", "\xbf", "a\x80", "\xc0\x80", "\xc1\xbf", "\xf5\x80\x80\x80",
		"\xf8\x88\x80\x80\x80", "\xfe", "\xff",
		/* overlong forms */
		"\xe0\x80\x80", "\xe0\x9f\xbf", "\xf0\x80\x80\x80",
		"\xf0\x8f\xbf\xbf",
		/* UTF-16 surrogates */
		"\xed\xa0\x80", "\xed\xbf\xbf", "\xed\xa0\xbd\xed\xb8\x80",
		/* past U+10FFFF */
		"\xf4\x90\x80\x80", "\xf7\xbf\xbf\xbf",
		/* truncated sequences */
		"\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xc3" "a", "\xe2\x82" "a",
		"\xf0\x9f\x98" "a", "a\xf0",
		/* a continuation byte that is not one */
		"\xc3\xc3", "\xe2\x28\xa1", "\xe2\x82\x28",
	};
	size_t i;
	int ok = 1;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (utf8(good[i]) != 1) {
			fprintf(stderr, "refused utf8 #%zu\n", i);
			ok = 0;
		}
	CHECK(ok);
	ok = 1;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (utf8(bad[i]) != 0) {
			fprintf(stderr, "accepted utf8 #%zu\n", i);
			ok = 0;
		}
	CHECK(ok);

	/* NUL is refused wherever it is, and only n bytes are read. */
	CHECK(util_valid_utf8("a\0b", 3) == 0);
	CHECK(util_valid_utf8("\0", 1) == 0);
	CHECK(util_valid_utf8("ab\x01", 2) == 1);
	CHECK(util_valid_utf8("\xe2\x82\xac", 2) == 0);
	CHECK(util_valid_utf8("\xe2\x82\xac", 0) == 1);

	/* Every single byte: exactly 0x09, 0x0a, 0x0d and 0x20..0x7e pass. */
	ok = 1;
	for (i = 0; i < 256; i++) {
		char c = (char)i;
		int want = i == 0x09 || i == 0x0a || i == 0x0d ||
		    (i >= 0x20 && i <= 0x7e);

		if (util_valid_utf8(&c, 1) != want)
			ok = 0;
	}
	CHECK(ok);
}

static void
test_random_token(void)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char a[128], b[128], small[23];
	unsigned char seen[256];
	size_t i;
	int ok = 1;

	CHECK(util_random_token(16, a, sizeof(a)) == 0);
	CHECK(strlen(a) == 22);
	CHECK(strspn(a, al) == strlen(a));
	CHECK(util_random_token(16, b, sizeof(b)) == 0);
	CHECK(strcmp(a, b) != 0);

	CHECK(util_random_token(32, a, sizeof(a)) == 0);
	CHECK(strlen(a) == 43 && strspn(a, al) == 43);
	CHECK(util_random_token(1, a, sizeof(a)) == 0);
	CHECK(strlen(a) == 2 && strspn(a, al) == 2);
	CHECK(util_random_token(64, a, sizeof(a)) == 0);
	CHECK(strlen(a) == 86 && strspn(a, al) == 86);

	/* 16 bytes need 22 characters and the NUL: 23 fits, 22 does not. */
	CHECK(util_random_token(16, small, sizeof(small)) == 0);
	CHECK(strlen(small) == 22);
	memset(b, 'x', sizeof(b));
	CHECK(util_random_token(16, b, 22) == -1);
	CHECK(b[0] == 'x');
	CHECK(util_random_token(16, b, 0) == -1);
	CHECK(util_random_token(0, b, sizeof(b)) == -1);
	CHECK(util_random_token(65, b, sizeof(b)) == -1);

	/*
	 * Many draws stay in the alphabet, and every character of it turns
	 * up (64 draws of 64 characters miss one with odds around 2^-86).
	 */
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 64; i++) {
		size_t k;

		if (util_random_token(48, a, sizeof(a)) != 0 ||
		    strlen(a) != 64 || strspn(a, al) != 64) {
			ok = 0;
			continue;
		}
		for (k = 0; k < 64; k++)
			seen[(unsigned char)a[k]] = 1;
	}
	CHECK(ok);
	for (i = 0; i < 64; i++)
		if (!seen[(unsigned char)al[i]])
			ok = 0;
	CHECK(ok);
}

/* Decode the 7 leading characters of a token id back to milliseconds. */
static int64_t
token_id_ms(const char *id)
{
	static const char al[] =
	    "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
	int64_t ms = 0;
	int i;

	for (i = 0; i < 7; i++) {
		const char *p = strchr(al, id[i]);

		if (p == NULL || id[i] == '\0')
			return -1;
		ms = (ms << 6) | (int64_t)(p - al);
	}
	return ms;
}

static void
test_token_id(void)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char a[UTIL_TOKEN_ID_LEN + 1], b[UTIL_TOKEN_ID_LEN + 1];
	char small[UTIL_TOKEN_ID_LEN];
	unsigned char seen[256];
	struct timespec ts, pause = { 0, 3 * 1000 * 1000 };
	int64_t before, after, ms;
	size_t i;
	int ok = 1, sorted = 1;

	clock_gettime(CLOCK_REALTIME, &ts);
	before = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	CHECK(util_token_id(a, sizeof(a)) == 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	after = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	CHECK(strlen(a) == UTIL_TOKEN_ID_LEN);
	/* Still a base64url string, as jti values were before. */
	CHECK(strspn(a, al) == UTIL_TOKEN_ID_LEN);
	/* The prefix is the wall clock when it was minted. */
	ms = token_id_ms(a);
	CHECK(ms >= before && ms <= after);
	/* Never a leading '-', which a command line would take for an option. */
	CHECK(a[0] != '-');

	/* Too small a buffer is refused and left alone. */
	memset(small, 'x', sizeof(small));
	CHECK(util_token_id(small, sizeof(small)) == -1);
	CHECK(small[0] == 'x');

	/*
	 * Ids minted a few milliseconds apart sort in minting order bytewise
	 * (strcmp, PostgreSQL's C collation); ids of the same millisecond
	 * differ in their random part.
	 */
	for (i = 0; i < 20; i++) {
		nanosleep(&pause, NULL);
		if (util_token_id(b, sizeof(b)) != 0 || strcmp(a, b) >= 0)
			sorted = 0;
		memcpy(a, b, sizeof(a));
	}
	CHECK(sorted);
	CHECK(util_token_id(a, sizeof(a)) == 0 &&
	    util_token_id(b, sizeof(b)) == 0);
	CHECK(strcmp(a + 7, b + 7) != 0);

	/*
	 * The random part covers the whole alphabet: 200 ids of 15 random
	 * characters miss one of 64 with odds far below 2^-60.
	 */
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 200; i++) {
		if (util_token_id(a, sizeof(a)) != 0) {
			ok = 0;
			continue;
		}
		for (size_t k = 7; k < UTIL_TOKEN_ID_LEN; k++)
			seen[(unsigned char)a[k]] = 1;
	}
	CHECK(ok);
	for (i = 0; i < 64; i++)
		if (!seen[(unsigned char)al[i]])
			ok = 0;
	CHECK(ok);
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_parse_int64();
	test_parse_duration();
	test_parse_rfc3339();
	test_format_rfc3339();
	test_valid_name();
	test_valid_utf8();
	test_random_token();
	test_token_id();
	{
		char a[] = "x,y,z", b[] = "one", c[] = "a,,b", d[] = "a,", e[] = "",
		    f[] = "1,2,3,4";
		char *items[3];
		size_t n = 0;

		CHECK(util_split_list(a, items, 3, &n) == 0 && n == 3);
		CHECK_STR(items[0], "x");
		CHECK_STR(items[2], "z");
		CHECK(util_split_list(b, items, 3, &n) == 0 && n == 1);
		CHECK(util_split_list(c, items, 3, &n) == -1);
		CHECK(util_split_list(d, items, 3, &n) == -1);
		CHECK(util_split_list(e, items, 3, &n) == 0 && n == 0);
		CHECK(util_split_list(f, items, 3, &n) == -1);
	}
	return check_summary(argv[0]);
}
