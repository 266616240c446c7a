/*
 * test_misc.c: unit tests for the small pure functions of modules that are
 * otherwise tested end to end: the PostgreSQL text[] and bytea codecs of
 * db.c, audit_clip, tokens_ttl and the error table of http.c.
 *
 * None of these touches the database or the network; they are the places
 * where data crosses a boundary (into SQL parameters, out of result rows,
 * into the audit log, into an HTTP status), so each is checked for both
 * directions and for input it must refuse.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "approvals.h"
#include "audit.h"
#include "check.h"
#include "countersign.h"
#include "db.h"
#include "http.h"
#include "notify.h"
#include "tokens.h"
#include "util.h"

static uint64_t prng_state = 0x2545f4914f6cdd1dULL;

static unsigned char
prng_byte(void)
{
	prng_state ^= prng_state << 13;
	prng_state ^= prng_state >> 7;
	prng_state ^= prng_state << 17;
	return (unsigned char)(prng_state >> 24);
}

static void
free_items(char **items, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(items[i]);
}

/* db_text_array then db_parse_text_array; 1 if items come back equal. */
static int
array_round_trip(const char *const *items, size_t n)
{
	char *lit = db_text_array(items, n), *back[64];
	size_t got = 99, i;
	int ok;

	if (lit == NULL || n > 64)
		return 0;
	ok = db_parse_text_array(lit, back, 64, &got) == 0 && got == n;
	for (i = 0; ok && i < n; i++)
		if (strcmp(back[i], items[i]) != 0)
			ok = 0;
	if (got <= 64 && got != 99)
		free_items(back, got);
	if (!ok)
		fprintf(stderr, "array round trip failed for %s\n", lit);
	free(lit);
	return ok;
}

static void
test_text_array(void)
{
	static const char *const items[] = {
		"plain", "with \"quotes\"", "back\\slash", "a,b", "{braces}",
		"", "sp ace", "NULL", "\\\"", "\"", "\\", "}", "{", ",",
		"caf\xc3\xa9", "tab\there", "'single'", "x}\",{\\y",
	};
	const char *one[1];
	char *lit, *back[8], *junk[3];
	char word[40];
	size_t n = 99, i, k, len;
	int ok = 1;

	/* The literal form. */
	lit = db_text_array(items, 0);
	CHECK_STR(lit, "{}");
	free(lit);
	lit = db_text_array(items, 1);
	CHECK_STR(lit, "{\"plain\"}");
	free(lit);
	lit = db_text_array(items + 1, 3);
	CHECK_STR(lit, "{\"with \\\"quotes\\\"\",\"back\\\\slash\",\"a,b\"}");
	free(lit);
	one[0] = "";
	lit = db_text_array(one, 1);
	CHECK_STR(lit, "{\"\"}");
	free(lit);

	/* Round trips: all at once, one at a time, and random strings. */
	CHECK(array_round_trip(items, sizeof(items) / sizeof(items[0])));
	for (i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		one[0] = items[i];
		if (!array_round_trip(one, 1))
			ok = 0;
	}
	CHECK(ok);
	CHECK(array_round_trip(items, 0));
	ok = 1;
	for (i = 0; i < 2000; i++) {
		len = prng_byte() % (sizeof(word) - 1);
		for (k = 0; k < len; k++) {
			/* Weighted towards the characters that need care. */
			static const char special[] = "\"\\,{} \t'NUL";
			unsigned char b = prng_byte();

			word[k] = (b & 1) ? special[b % (sizeof(special) - 1)] :
			    (char)(b | 1);
		}
		word[len] = '\0';
		one[0] = word;
		if (!array_round_trip(one, 1))
			ok = 0;
	}
	CHECK(ok);

	/* The server's own output: unquoted where it can be. */
	CHECK(db_parse_text_array("{}", back, 8, &n) == 0 && n == 0);
	CHECK(db_parse_text_array("{a,b}", back, 8, &n) == 0 && n == 2);
	CHECK(n == 2 && strcmp(back[0], "a") == 0 && strcmp(back[1], "b") == 0);
	free_items(back, n);
	CHECK(db_parse_text_array("{read}", back, 8, &n) == 0 && n == 1);
	CHECK_STR(back[0], "read");
	free_items(back, n);
	CHECK(db_parse_text_array("{\"a b\",c:d,\"\"}", back, 8, &n) == 0);
	CHECK(n == 3);
	CHECK_STR(back[0], "a b");
	CHECK_STR(back[1], "c:d");
	CHECK_STR(back[2], "");
	free_items(back, n);
	CHECK(db_parse_text_array("{\"x\\\\y\",\"q\\\"\"}", back, 8, &n) == 0);
	CHECK(n == 2);
	CHECK_STR(back[0], "x\\y");
	CHECK_STR(back[1], "q\"");
	free_items(back, n);

	/* Exactly max elements are fine, one more is refused. */
	CHECK(db_parse_text_array("{a,b,c}", back, 3, &n) == 0 && n == 3);
	free_items(back, n);
	n = 99;
	CHECK(db_parse_text_array("{a,b,c}", junk, 2, &n) == -1 && n == 0);
	CHECK(db_parse_text_array("{a}", junk, 0, &n) == -1 && n == 0);
	CHECK(db_parse_text_array("{}", junk, 0, &n) == 0 && n == 0);

	/* Malformed literals; whatever was split off must be freed. */
	{
		static const char *bad[] = {
			"", "a", "{", "}", "{a", "{a,", "{a,b", "{\"a}",
			"{\"a\"b}", "{\"a\" }", "{a}x", "{}x", "{} ", " {}", "[a]",
			"{a}}", "{{a}}", "{\"a\\\"}", "{\"a\\", "{\"a\",\"b}",
			"{\"a\"\"b\"}",
		};

		ok = 1;
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			n = 99;
			if (db_parse_text_array(bad[i], junk, 3, &n) != -1 ||
			    n != 0) {
				fprintf(stderr, "array \"%s\" accepted\n", bad[i]);
				if (n <= 3)
					free_items(junk, n);
				ok = 0;
			}
		}
		CHECK(ok);
		CHECK(db_parse_text_array(NULL, junk, 3, &n) == -1 && n == 0);
	}
}

static void
test_bytea(void)
{
	unsigned char all[256], out[256];
	char *s;
	size_t i, n = 99;
	int ok = 1;

	for (i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)i;
	s = db_bytea_param(all, 0);
	CHECK_STR(s, "\\x");
	CHECK(db_bytea_value(s, out, 0, &n) == 0 && n == 0);
	free(s);
	s = db_bytea_param((const unsigned char *)"\x00\x01\xab\xff", 4);
	CHECK_STR(s, "\\x0001abff");
	free(s);

	/* Every byte value, and every length up to 256. */
	s = db_bytea_param(all, sizeof(all));
	CHECK(s != NULL && strlen(s) == 2 + 2 * sizeof(all));
	CHECK(db_bytea_value(s, out, sizeof(out), &n) == 0 &&
	    n == sizeof(all) && memcmp(out, all, n) == 0);
	/* The output buffer must hold the bytes: one less is refused. */
	CHECK(db_bytea_value(s, out, sizeof(out) - 1, &n) == -1);
	free(s);
	for (i = 0; i <= sizeof(all); i++) {
		size_t k;

		for (k = 0; k < i; k++)
			all[k] = prng_byte();
		s = db_bytea_param(all, i);
		if (s == NULL || db_bytea_value(s, out, i, &n) != 0 || n != i ||
		    memcmp(out, all, i) != 0)
			ok = 0;
		free(s);
	}
	CHECK(ok);

	/* The server may answer in upper case. */
	CHECK(db_bytea_value("\\xABcdEF", out, sizeof(out), &n) == 0);
	CHECK(n == 3 && out[0] == 0xab && out[1] == 0xcd && out[2] == 0xef);

	/* Malformed values. */
	n = 99;
	CHECK(db_bytea_value(NULL, out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("x00", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\X00", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("00", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\x0", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\x000", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\xzz", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\x0g", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\x 0", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\x00 ", out, sizeof(out), &n) == -1);
	CHECK(db_bytea_value("\\x\\x00", out, sizeof(out), &n) == -1);
	/* The escape output format ("\000") is not hex and is refused. */
	CHECK(db_bytea_value("\\000", out, sizeof(out), &n) == -1);
	CHECK(n == 99);
}

/* audit_clip into a buffer of cap bytes followed by a guard. */
static const char *
clip(const char *s, size_t cap)
{
	static char buf[600];

	memset(buf, '#', sizeof(buf));
	audit_clip(s, buf, cap);
	return buf;
}

static void
test_audit_clip(void)
{
	char buf[AUDIT_FIELD_MAX], in[700];
	size_t i, k, len;
	int ok = 1;

	CHECK_STR(clip("hello", 16), "hello");
	CHECK(clip("hello", 16)[6] == '#');
	CHECK_STR(clip("", 16), "");
	CHECK_STR(clip(NULL, 16), "");
	/* cap 0 writes nothing; cap 1 leaves room only for the NUL. */
	CHECK(clip("hello", 0)[0] == '#');
	CHECK(audit_clip("hello", buf, 0) == buf);
	CHECK_STR(clip("hello", 1), "");
	CHECK(clip("hello", 1)[1] == '#');
	CHECK_STR(clip("hello", 2), "h");
	CHECK_STR(clip("hello", 5), "hell");
	CHECK_STR(clip("hello", 6), "hello");
	CHECK(audit_clip("x", buf, sizeof(buf)) == buf);

	/* Multibyte characters are kept whole or cut entirely. */
	CHECK_STR(clip("\xc3\xa9", 2), "");
	CHECK_STR(clip("\xc3\xa9", 3), "\xc3\xa9");
	CHECK_STR(clip("a\xe2\x82\xac", 4), "a");
	CHECK_STR(clip("a\xe2\x82\xac", 5), "a\xe2\x82\xac");
	CHECK_STR(clip("ab\xf0\x9f\x98\x80", 6), "ab");
	CHECK_STR(clip("ab\xf0\x9f\x98\x80", 7), "ab\xf0\x9f\x98\x80");
	CHECK_STR(clip("\xc3\xa9\xc3\xa9\xc3\xa9", 6), "\xc3\xa9\xc3\xa9");

	/* Control characters (tab and newline too) and DEL become '?'. */
	CHECK_STR(clip("a\nb\tc\x1b[0m\x7f\r", 32), "a?b?c?[0m??");
	CHECK_STR(clip("\x01", 32), "?");
	/* Invalid bytes become '?', one each, and the scan resynchronises. */
	CHECK_STR(clip("\xff", 32), "?");
	CHECK_STR(clip("a\x80z", 32), "a?z");
	CHECK_STR(clip("\xc3(", 32), "?(");
	CHECK_STR(clip("\xe2\x82", 32), "??");
	CHECK_STR(clip("\xe2\x82z\xc3\xa9", 32), "??z\xc3\xa9");
	CHECK_STR(clip("\xc0\x80", 32), "??");
	CHECK_STR(clip("\xe0\x80\x80", 32), "???");
	CHECK_STR(clip("\xed\xa0\x80", 32), "???");
	CHECK_STR(clip("\xf4\x90\x80\x80", 32), "????");
	CHECK_STR(clip("\xf8\x88\x80\x80\x80", 32), "?????");
	/* A replacement counts as one byte of the cap. */
	CHECK_STR(clip("\xff\xff\xff\xff", 3), "??");

	/*
	 * Random input: the result always fits, is valid UTF-8 without any
	 * control character, and is a prefix of the input wherever the
	 * input was already clean.
	 */
	for (i = 0; i < 5000; i++) {
		const char *out;
		size_t cap = prng_byte() % 40 + (i % 2 ? 0 : 256);

		len = prng_byte() % 300;
		for (k = 0; k < len; k++) {
			unsigned char b = prng_byte();

			in[k] = (char)(b == 0 ? 'a' : b);
		}
		in[len] = '\0';
		out = clip(in, cap);
		if (cap == 0) {
			if (out[0] != '#')
				ok = 0;
			continue;
		}
		if (strlen(out) >= cap || strlen(out) > len ||
		    !util_valid_utf8(out, strlen(out)) ||
		    strpbrk(out, "\t\r\n") != NULL || out[strlen(out) + 1] != '#')
			ok = 0;
		if (util_valid_utf8(in, len) && strpbrk(in, "\t\r\n") == NULL &&
		    strncmp(out, in, strlen(out)) != 0)
			ok = 0;
	}
	CHECK(ok);

	/* Long clean input is cut to cap - 1 bytes. */
	memset(in, 'z', 600);
	in[600] = '\0';
	audit_clip(in, buf, sizeof(buf));
	CHECK(strlen(buf) == AUDIT_FIELD_MAX - 1);
}

static void
test_tokens_ttl(void)
{
	const int64_t l1[] = { 120 }, l2[] = { 0, 120, 0 }, l3[] = { 600, 60 };
	const int64_t l4[] = { 0, 0 }, l5[] = { -5, 90 }, l6[] = { 7200 };

	/* requested, else the default. */
	CHECK(tokens_ttl(0, 300, 3600, NULL, 0) == 300);
	CHECK(tokens_ttl(600, 300, 3600, NULL, 0) == 600);
	CHECK(tokens_ttl(10, 300, 3600, NULL, 0) == 10);
	CHECK(tokens_ttl(-5, 300, 3600, NULL, 0) == 300);
	/* The global maximum caps both. */
	CHECK(tokens_ttl(7200, 300, 3600, NULL, 0) == 3600);
	CHECK(tokens_ttl(3600, 300, 3600, NULL, 0) == 3600);
	CHECK(tokens_ttl(0, 7200, 3600, NULL, 0) == 3600);
	CHECK(tokens_ttl(INT64_MAX, 300, 3600, NULL, 0) == 3600);
	/* Each limit caps; the smallest non-zero one wins. */
	CHECK(tokens_ttl(0, 300, 3600, l1, 1) == 120);
	CHECK(tokens_ttl(600, 300, 3600, l2, 3) == 120);
	CHECK(tokens_ttl(600, 300, 3600, l3, 2) == 60);
	CHECK(tokens_ttl(30, 300, 3600, l3, 2) == 30);
	CHECK(tokens_ttl(600, 300, 3600, l3, 1) == 600);
	/* A limit above the global maximum does not raise it. */
	CHECK(tokens_ttl(9000, 300, 3600, l6, 1) == 3600);
	/* Zero (and negative) limits mean no limit. */
	CHECK(tokens_ttl(600, 300, 3600, l4, 2) == 600);
	CHECK(tokens_ttl(600, 300, 3600, l5, 2) == 90);
	CHECK(tokens_ttl(100000, 300, 0, NULL, 0) == 100000);
	CHECK(tokens_ttl(100000, 300, 0, l4, 2) == 100000);
	CHECK(tokens_ttl(100000, 300, 0, l2, 3) == 120);
	/* Never less than one second. */
	CHECK(tokens_ttl(0, 0, 0, NULL, 0) == 1);
	CHECK(tokens_ttl(0, -10, 3600, NULL, 0) == 1);
	CHECK(tokens_ttl(-1, -1, -1, l4, 2) == 1);
	CHECK(tokens_ttl(INT64_MIN, INT64_MIN, 0, NULL, 0) == 1);
	CHECK(tokens_ttl(1, 300, 3600, l1, 1) == 1);
}

static void
test_http_errors(void)
{
	static const struct {
		enum cs_err code;
		unsigned status;
		const char *error;
	} want[] = {
		{ CS_ERR_INVALID_REQUEST, 400, "invalid_request" },
		{ CS_ERR_INVALID_CLIENT, 401, "invalid_client" },
		{ CS_ERR_INVALID_GRANT, 400, "invalid_grant" },
		{ CS_ERR_UNAUTHORIZED_CLIENT, 400, "unauthorized_client" },
		{ CS_ERR_UNSUPPORTED_GRANT_TYPE, 400, "unsupported_grant_type" },
		{ CS_ERR_INVALID_SCOPE, 400, "invalid_scope" },
		{ CS_ERR_INVALID_TARGET, 400, "invalid_target" },
		{ CS_ERR_ACCESS_DENIED, 403, "access_denied" },
		{ CS_ERR_NOT_FOUND, 404, "not_found" },
		{ CS_ERR_METHOD_NOT_ALLOWED, 405, "method_not_allowed" },
		{ CS_ERR_CONFLICT, 409, "conflict" },
		{ CS_ERR_TOO_LARGE, 413, "request_too_large" },
		{ CS_ERR_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type" },
		{ CS_ERR_RATE_LIMITED, 429, "rate_limited" },
		{ CS_ERR_AUTHORIZATION_PENDING, 400, "authorization_pending" },
		{ CS_ERR_SLOW_DOWN, 400, "slow_down" },
		{ CS_ERR_EXPIRED_TOKEN, 400, "expired_token" },
		{ CS_ERR_REQUEST_DENIED, 400, "access_denied" },
		{ CS_ERR_INVALID_TOKEN, 401, "invalid_token" },
		{ CS_ERR_FORBIDDEN, 403, "forbidden" },
		{ CS_ERR_INTERNAL, 500, "server_error" },
		{ CS_ERR_UNAVAILABLE, 503, "temporarily_unavailable" },
		{ CS_ERR_INVALID_DPOP_PROOF, 400, "invalid_dpop_proof" },
	};
	size_t i;
	int ok = 1;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (http_status_for(want[i].code) != want[i].status ||
		    http_oauth_error_for(want[i].code) == NULL ||
		    strcmp(http_oauth_error_for(want[i].code),
		    want[i].error) != 0) {
			fprintf(stderr, "error code %d maps wrongly\n",
			    (int)want[i].code);
			ok = 0;
		}
	}
	CHECK(ok);

	/*
	 * Every code has its own row: a code missing from http.c's table
	 * would fall back to 500 server_error, which only CS_ERR_INTERNAL
	 * may do. The want table above must list every code, too.
	 */
	ok = 1;
	for (i = 1; i < CS_ERR__COUNT; i++) {
		enum cs_err c = (enum cs_err)i;
		unsigned st = http_status_for(c);
		size_t k;
		int listed = 0;

		for (k = 0; k < sizeof(want) / sizeof(want[0]); k++)
			if (want[k].code == c)
				listed++;
		if (listed != 1) {
			fprintf(stderr, "error code %zu: %d rows in the test\n",
			    i, listed);
			ok = 0;
		}
		if (st < 400 || st > 599 || (c != CS_ERR_INTERNAL &&
		    (st == 500 || strcmp(http_oauth_error_for(c),
		    "server_error") == 0))) {
			fprintf(stderr, "error code %zu is not mapped\n", i);
			ok = 0;
		}
	}
	CHECK(ok);
	CHECK(http_status_for(CS_ERR_INVALID_CLIENT) == 401);
	CHECK_STR(http_oauth_error_for(CS_ERR_INVALID_CLIENT), "invalid_client");
	CHECK(http_status_for(CS_ERR_UNAVAILABLE) == 503);
	CHECK_STR(http_oauth_error_for(CS_ERR_UNAVAILABLE),
	    "temporarily_unavailable");
	CHECK(http_status_for(CS_OK) == 200);
	CHECK(http_oauth_error_for(CS_OK) != NULL);

	/* Codes outside the enum fail closed as a server error. */
	CHECK(http_status_for(CS_ERR__COUNT) == 500);
	CHECK_STR(http_oauth_error_for(CS_ERR__COUNT), "server_error");
	CHECK(http_status_for((enum cs_err)(CS_ERR__COUNT + 100)) == 500);
	CHECK_STR(http_oauth_error_for((enum cs_err)(CS_ERR__COUNT + 100)),
	    "server_error");
	CHECK(http_status_for((enum cs_err)-1) == 500);
	CHECK_STR(http_oauth_error_for((enum cs_err)-1), "server_error");
}

/* What an approver is shown must be what is there (threat-model row 34). */
static void
test_approver_text(void)
{
	static const char *const ok[] = {
		"post the answer", "line one\nline two\tand a tab",
		"caf\xc3\xa9 \xe2\x82\xac 10", "\xe6\x97\xa5\xe6\x9c\xac",
		"\xf0\x9f\x99\x82 smile", "<b>markup</b> & <!channel>", "",
	};
	static const char *const bad[] = {
		"carriage\rreturn",
		"C1 \xc2\x85 next line", "C1 \xc2\x9b CSI",
		"soft\xc2\xadhyphen", "arabic mark \xd8\x9c",
		"mongolian \xe1\xa0\x8e separator",
		"zero\xe2\x80\x8bwidth", "joiner\xe2\x80\x8d", "rlm \xe2\x80\x8f",
		"line\xe2\x80\xa8separator", "paragraph\xe2\x80\xa9separator",
		"override \xe2\x80\xae evil", "isolate \xe2\x81\xa6 x",
		"word\xe2\x81\xa0joiner", "invisible \xe2\x81\xa4 plus",
		"deprecated \xe2\x81\xaf format", "bom \xef\xbb\xbf",
		"tag \xf3\xa0\x80\x81 begin", "tag \xf3\xa0\x81\xbf cancel",
		"tag letter \xf3\xa0\x81\xa1", "bell \x07", "broken \xc3",
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		CHECK(approvals_check_text(ok[i]) == 1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(approvals_check_text(bad[i]) == 0);
	/* Neighbours of the refused ranges stay allowed. */
	CHECK(approvals_check_text("\xc2\xa0 no-break space") == 1);
	CHECK(approvals_check_text("\xe2\x80\x8a hair space") == 1);
	CHECK(approvals_check_text("\xe2\x80\xaf narrow nbsp") == 1);
	CHECK(approvals_check_text("\xe2\x81\xb0 superscript zero") == 1);
	CHECK(approvals_check_text("\xf3\xa0\x82\x80 after the tags") == 1);
}

static void
test_notify_escape(void)
{
	char *e;

	e = notify_escape_text("<!channel> <https://evil.example|docs> a & b");
	CHECK_STR(e, "&lt;!channel&gt; &lt;https://evil.example|docs&gt; a &amp; b");
	free(e);
	e = notify_escape_text("plain text, caf\xc3\xa9");
	CHECK_STR(e, "plain text, caf\xc3\xa9");
	free(e);
	e = notify_escape_text("");
	CHECK_STR(e, "");
	free(e);
	e = notify_escape_text("&&&<<<>>>");
	CHECK_STR(e, "&amp;&amp;&amp;&lt;&lt;&lt;&gt;&gt;&gt;");
	free(e);
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_approver_text();
	test_notify_escape();
	test_text_array();
	test_bytea();
	test_audit_clip();
	test_tokens_ttl();
	test_http_errors();
	return check_summary(argv[0]);
}
