/*
 * test_form.c: unit tests for the urlencoded body parser and the HTTP Basic
 * credentials of RFC 6749 §2.3.1.
 *
 * Both parsers see raw request bytes before anything else does, so besides
 * the decoding rules this file checks that every malformed input is
 * refused with the right reason and leaves nothing allocated behind (run
 * it under the ASan build to see the latter).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "check.h"
#include "form.h"

/* form_parse on a NUL-terminated string. */
static enum form_result
parse(const char *s, struct form **f)
{
	return form_parse(s, strlen(s), f);
}

/* The result of parsing s, freeing whatever came back. */
static enum form_result
parse_rc(const char *s)
{
	struct form *f = (struct form *)&f;	/* must be reset to NULL */
	enum form_result rc = parse(s, &f);

	if (rc != FORM_OK && f != NULL) {
		fprintf(stderr, "form_parse left *out set on error\n");
		rc = FORM_E_NOMEM;
		f = NULL;
	}
	form_free(f);
	return rc;
}

static void
test_basic_fields(void)
{
	struct form *f = NULL;
	size_t count = 99;

	CHECK(parse("grant_type=client_credentials&scope=a%20b"
	    "&resource=https%3A%2F%2Fx", &f) == FORM_OK);
	CHECK(f != NULL && f->n == 3);
	CHECK_STR(form_get(f, "grant_type", &count), "client_credentials");
	CHECK(count == 1);
	CHECK_STR(form_get(f, "scope", NULL), "a b");
	CHECK_STR(form_get(f, "resource", NULL), "https://x");
	CHECK(f->fields[2].value_len == strlen("https://x"));
	CHECK(form_get(f, "missing", &count) == NULL && count == 0);
	/* Names are matched exactly, not by prefix or case. */
	CHECK(form_get(f, "Scope", NULL) == NULL);
	CHECK(form_get(f, "scop", NULL) == NULL);
	form_free(f);

	/* An empty body is a form with no fields. */
	CHECK(form_parse("", 0, &f) == FORM_OK);
	CHECK(f != NULL && f->n == 0);
	CHECK(form_get(f, "a", &count) == NULL && count == 0);
	form_free(f);
	CHECK(form_parse(NULL, 0, &f) == FORM_OK && f != NULL && f->n == 0);
	form_free(f);

	/* form_get and form_has_other on NULL, and form_free(NULL). */
	CHECK(form_get(NULL, "a", &count) == NULL && count == 0);
	form_free(NULL);
}

static void
test_decoding(void)
{
	struct form *f = NULL;

	/* '+' is a space in names and values, %XX a byte in either case. */
	CHECK(parse("a+b=c+d&x%41y=%7e%7E%2b%25&e=%C3%A9", &f) == FORM_OK);
	CHECK(f->n == 3);
	CHECK_STR(form_get(f, "a b", NULL), "c d");
	CHECK_STR(form_get(f, "xAy", NULL), "~~+%");
	CHECK_STR(form_get(f, "e", NULL), "\xc3\xa9");
	CHECK(f->fields[2].value_len == 2);
	form_free(f);

	/* Raw UTF-8 and '=' inside a value are kept as they are. */
	CHECK(parse("k=a=b=c&u=\xe2\x82\xac", &f) == FORM_OK);
	CHECK_STR(form_get(f, "k", NULL), "a=b=c");
	CHECK_STR(form_get(f, "u", NULL), "\xe2\x82\xac");
	form_free(f);

	/* Tab, CR and LF are text; an escaped '&' does not split. */
	CHECK(parse("t=%09%0D%0A&amp=a%26b", &f) == FORM_OK);
	CHECK_STR(form_get(f, "t", NULL), "\t\r\n");
	CHECK_STR(form_get(f, "amp", NULL), "a&b");
	form_free(f);

	/* Only len bytes are read. */
	CHECK(form_parse("a=1&b=2", 3, &f) == FORM_OK);
	CHECK(f->n == 1 && form_get(f, "b", NULL) == NULL);
	CHECK_STR(form_get(f, "a", NULL), "1");
	form_free(f);
	CHECK(form_parse("a=%41&b=%4", 5, &f) == FORM_OK);
	CHECK_STR(form_get(f, "a", NULL), "A");
	form_free(f);
}

static void
test_pairs(void)
{
	struct form *f = NULL;
	size_t count = 0;

	/* Empty pairs are skipped wherever they are. */
	CHECK(parse("&&a=1&&b=2&", &f) == FORM_OK);
	CHECK(f->n == 2);
	CHECK_STR(form_get(f, "a", NULL), "1");
	CHECK_STR(form_get(f, "b", NULL), "2");
	form_free(f);
	CHECK(parse("&", &f) == FORM_OK && f->n == 0);
	form_free(f);
	CHECK(parse("&&&&", &f) == FORM_OK && f->n == 0);
	form_free(f);

	/* A name without '=' and a name with an empty value. */
	CHECK(parse("flag&empty=&x=1", &f) == FORM_OK);
	CHECK(f->n == 3);
	CHECK_STR(form_get(f, "flag", NULL), "");
	CHECK(f->fields[0].value_len == 0);
	CHECK_STR(form_get(f, "empty", NULL), "");
	form_free(f);

	/* Repeats are all kept; form_get gives the first and the count. */
	CHECK(parse("resource=a&scope=s&resource=b&resource=c", &f) ==
	    FORM_OK);
	CHECK(f->n == 4);
	CHECK_STR(form_get(f, "resource", &count), "a");
	CHECK(count == 3);
	CHECK_STR(form_get(f, "scope", &count), "s");
	CHECK(count == 1);
	CHECK_STR(f->fields[2].value, "b");
	CHECK_STR(f->fields[3].value, "c");
	form_free(f);

	/* A name spelled two ways is one name once decoded. */
	CHECK(parse("scope=a&sc%6Fpe=b", &f) == FORM_OK);
	CHECK(form_get(f, "scope", &count) != NULL && count == 2);
	form_free(f);
}

static void
test_limits(void)
{
	char body[FORM_MAX_FIELDS * 8 + 64], name[FORM_MAX_NAME * 3 + 8];
	struct form *f = NULL;
	size_t i, off = 0;

	/* FORM_MAX_FIELDS fields are fine, one more is too many. */
	for (i = 0; i < FORM_MAX_FIELDS; i++)
		off += (size_t)snprintf(body + off, sizeof(body) - off,
		    "%sf%zu=%zu", i > 0 ? "&" : "", i, i);
	CHECK(parse(body, &f) == FORM_OK && f->n == FORM_MAX_FIELDS);
	CHECK_STR(form_get(f, "f31", NULL), "31");
	form_free(f);
	/* Empty pairs do not count. */
	snprintf(body + off, sizeof(body) - off, "&&&");
	CHECK(parse_rc(body) == FORM_OK);
	snprintf(body + off, sizeof(body) - off, "&x=1");
	CHECK(parse_rc(body) == FORM_E_TOO_MANY);
	snprintf(body + off, sizeof(body) - off, "&x");
	CHECK(parse_rc(body) == FORM_E_TOO_MANY);
	/* Repeats of one name count, too. */
	for (i = 0, off = 0; i <= FORM_MAX_FIELDS; i++)
		off += (size_t)snprintf(body + off, sizeof(body) - off,
		    "%sa=1", i > 0 ? "&" : "");
	CHECK(parse_rc(body) == FORM_E_TOO_MANY);

	/* Names up to FORM_MAX_NAME decoded characters. */
	memset(name, 'n', FORM_MAX_NAME);
	snprintf(name + FORM_MAX_NAME, sizeof(name) - FORM_MAX_NAME, "=v");
	CHECK(parse_rc(name) == FORM_OK);
	memset(name, 'n', FORM_MAX_NAME + 1);
	snprintf(name + FORM_MAX_NAME + 1, sizeof(name) - FORM_MAX_NAME - 1,
	    "=v");
	CHECK(parse_rc(name) == FORM_E_SYNTAX);
	/* ... counted after decoding: 64 "%41" are fine, 65 are not. */
	for (i = 0; i < FORM_MAX_NAME; i++)
		memcpy(name + 3 * i, "%41", 3);
	snprintf(name + 3 * FORM_MAX_NAME, sizeof(name) - 3 * FORM_MAX_NAME,
	    "=v");
	CHECK(parse_rc(name) == FORM_OK);
	memcpy(name + 3 * FORM_MAX_NAME, "A=v", 4);
	CHECK(parse_rc(name) == FORM_E_SYNTAX);
}

static void
test_errors(void)
{
	static const struct {
		const char *body;
		enum form_result want;
	} v[] = {
		{ "a=%zz", FORM_E_SYNTAX },
		{ "a=%4", FORM_E_SYNTAX },
		{ "a=%", FORM_E_SYNTAX },
		{ "a=%%41", FORM_E_SYNTAX },
		{ "a=%4g", FORM_E_SYNTAX },
		{ "a=%g4", FORM_E_SYNTAX },
		{ "a=% 4", FORM_E_SYNTAX },
		{ "a=1&b=%4&c=2", FORM_E_SYNTAX },
		{ "%zz=1", FORM_E_SYNTAX },
		{ "%4=1", FORM_E_SYNTAX },
		{ "=x", FORM_E_SYNTAX },
		{ "=", FORM_E_SYNTAX },
		{ "a=1&=2", FORM_E_SYNTAX },
		{ "a=%00", FORM_E_ENCODING },
		{ "%00=a", FORM_E_ENCODING },
		{ "a=b%00c", FORM_E_ENCODING },
		{ "a=%01", FORM_E_ENCODING },
		{ "a=%1B", FORM_E_ENCODING },
		{ "a=%7F", FORM_E_ENCODING },
		{ "a=%FF", FORM_E_ENCODING },
		{ "a=%C3", FORM_E_ENCODING },
		{ "a=%C0%80", FORM_E_ENCODING },
		{ "a=%ED%A0%80", FORM_E_ENCODING },
		{ "a=%F4%90%80%80", FORM_E_ENCODING },
		{ "a=\xff", FORM_E_ENCODING },
		{ "a=\x01", FORM_E_ENCODING },
		{ "a\x80=1", FORM_E_ENCODING },
		{ "ok=1&a=%C3%28", FORM_E_ENCODING },
	};
	struct form *f = (struct form *)&f;
	size_t i;
	int ok = 1;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		enum form_result rc = parse_rc(v[i].body);

		if (rc != v[i].want) {
			fprintf(stderr, "form \"%s\": %d, want %d\n", v[i].body,
			    (int)rc, (int)v[i].want);
			ok = 0;
		}
	}
	CHECK(ok);

	/* A NUL byte in the body itself, and *out is NULL on error. */
	CHECK(form_parse("a=b\0c", 5, &f) == FORM_E_ENCODING && f == NULL);
	f = (struct form *)&f;
	CHECK(form_parse("\0", 1, &f) == FORM_E_ENCODING && f == NULL);
}

static void
test_has_other(void)
{
	static const char *const allowed[] = { "grant_type", "scope",
	    "resource", NULL };
	static const char *const none[] = { NULL };
	struct form *f = NULL;

	CHECK(parse("grant_type=x&scope=y&resource=z&resource=w", &f) ==
	    FORM_OK);
	CHECK(form_has_other(f, allowed) == NULL);
	CHECK_STR(form_has_other(f, none), "grant_type");
	form_free(f);

	CHECK(parse("scope=y&client_secret=s&evil=1", &f) == FORM_OK);
	CHECK_STR(form_has_other(f, allowed), "client_secret");
	form_free(f);

	CHECK(parse("", &f) == FORM_OK);
	CHECK(form_has_other(f, none) == NULL);
	form_free(f);
	CHECK(form_has_other(NULL, allowed) == NULL);
}

/* "Basic " followed by the standard base64 of the n bytes at raw. */
static char *
basic_header(const char *scheme, const char *raw, size_t n)
{
	size_t sl = strlen(scheme);
	char *h = malloc(sl + b64_std_encoded_len(n) + 1);

	if (h == NULL)
		return NULL;
	memcpy(h, scheme, sl);
	b64_std_encode((const unsigned char *)raw, n, h + sl);
	return h;
}

/* form_parse_basic on "Basic base64(raw)": 1 if it gives want_id/secret. */
static int
basic_ok(const char *raw, const char *want_id, const char *want_secret)
{
	char *h = basic_header("Basic ", raw, strlen(raw));
	char *id = NULL, *secret = NULL;
	int ok;

	ok = h != NULL && form_parse_basic(h, &id, &secret) == 0 &&
	    id != NULL && secret != NULL && strcmp(id, want_id) == 0 &&
	    strcmp(secret, want_secret) == 0;
	if (!ok)
		fprintf(stderr, "basic \"%s\" refused or misread\n", raw);
	free(id);
	free(secret);
	free(h);
	return ok;
}

/* 1 if the header is refused with both outputs NULL. */
static int
basic_bad_header(const char *h)
{
	char *id = (char *)&id, *secret = (char *)&secret;

	if (form_parse_basic(h, &id, &secret) != -1 || id != NULL ||
	    secret != NULL) {
		fprintf(stderr, "basic header \"%s\" accepted\n",
		    h != NULL ? h : "(null)");
		return 0;
	}
	return 1;
}

static int
basic_bad(const char *raw, size_t n)
{
	char *h = basic_header("Basic ", raw, n);
	int ok = h != NULL && basic_bad_header(h);

	free(h);
	return ok;
}

static void
test_basic_auth(void)
{
	char *big, *h;
	char *id = NULL, *secret = NULL;

	CHECK(basic_ok("agent-1:s3cret", "agent-1", "s3cret"));
	CHECK(basic_ok("a:b", "a", "b"));
	/* Each half is urlencoded; only the first raw ':' splits. */
	CHECK(basic_ok("a%3Ab:c%25d", "a:b", "c%d"));
	CHECK(basic_ok("a:b:c", "a", "b:c"));
	CHECK(basic_ok("a:%3A", "a", ":"));
	CHECK(basic_ok("client:s3cr%C3%A9t+x", "client", "s3cr\xc3\xa9t x"));
	CHECK(basic_ok("a+b:c", "a b", "c"));

	/* The exact vectors, so the base64 side is pinned down too. */
	CHECK(form_parse_basic("Basic YSUzQWI6YyUyNWQ=", &id, &secret) == 0);
	CHECK_STR(id, "a:b");
	CHECK_STR(secret, "c%d");
	free(id);
	free(secret);
	/* The scheme is case-insensitive. */
	CHECK(form_parse_basic("basic YTpi", &id, &secret) == 0);
	CHECK_STR(id, "a");
	CHECK_STR(secret, "b");
	free(id);
	free(secret);
	CHECK(form_parse_basic("BASIC YTpi", &id, &secret) == 0);
	free(id);
	free(secret);
	CHECK(form_parse_basic("bAsIc YTpi", &id, &secret) == 0);
	free(id);
	free(secret);

	/* Malformed headers. */
	CHECK(basic_bad_header(NULL));
	CHECK(basic_bad_header(""));
	CHECK(basic_bad_header("Basic"));
	CHECK(basic_bad_header("Basic "));
	CHECK(basic_bad_header("BasicYTpi"));
	CHECK(basic_bad_header("Basic  YTpi"));
	CHECK(basic_bad_header("Basic\tYTpi"));
	CHECK(basic_bad_header(" Basic YTpi"));
	CHECK(basic_bad_header("Basic YTpi "));
	CHECK(basic_bad_header("Basic YTpi\r\n"));
	CHECK(basic_bad_header("Bearer YTpi"));
	CHECK(basic_bad_header("Basi YTpi"));
	CHECK(basic_bad_header("Digest YTpi"));
	CHECK(basic_bad_header("Basic !!!!"));
	CHECK(basic_bad_header("Basic YT pi"));
	/* The url alphabet and missing, partial or stray padding. */
	CHECK(basic_bad_header("Basic YWI"));
	CHECK(basic_bad_header("Basic YWI=="));
	CHECK(basic_bad_header("Basic YTpiYw"));
	CHECK(basic_bad_header("Basic YTpiYw="));
	CHECK(basic_bad_header("Basic YTpi="));
	CHECK(basic_bad_header("Basic YTpi===="));
	CHECK(basic_bad_header("Basic =YTpi"));
	/* Non-canonical: nonzero bits after the last byte ("a:bc" is Yw==). */
	CHECK(basic_bad_header("Basic YTpiYx=="));

	/* The decoded credentials. */
	CHECK(basic_bad("ab", 2));		/* no colon */
	CHECK(basic_bad("a%3Ab", 5));		/* only an encoded colon */
	CHECK(basic_bad(":secret", 7));		/* empty id */
	CHECK(basic_bad("id:", 3));		/* empty secret */
	CHECK(basic_bad(":", 1));
	CHECK(basic_bad("", 0));
	CHECK(basic_bad("a%00:b", 6));		/* NUL, escaped */
	CHECK(basic_bad("a:b%00", 6));
	CHECK(basic_bad("a\0:b", 4));		/* NUL, raw */
	CHECK(basic_bad("a:b\0", 4));
	CHECK(basic_bad("a\x01:b", 4));		/* control characters */
	CHECK(basic_bad("a:b\x1b", 4));
	CHECK(basic_bad("a:b\xff", 4));		/* invalid UTF-8 */
	CHECK(basic_bad("a%C3:b", 6));
	CHECK(basic_bad("a:b%zz", 6));		/* bad escapes */
	CHECK(basic_bad("a%4:b", 5));
	CHECK(basic_bad("a:b%", 4));

	/*
	 * Length cap: 1024 base64 characters (768 bytes) are the most a
	 * header may carry.
	 */
	big = malloc(800);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	memcpy(big, "id:", 3);
	memset(big + 3, 'x', 765);
	h = basic_header("Basic ", big, 768);
	CHECK(h != NULL && strlen(h) == 6 + 1024);
	CHECK(h != NULL && form_parse_basic(h, &id, &secret) == 0);
	CHECK(id != NULL && secret != NULL && strlen(secret) == 765);
	free(id);
	free(secret);
	free(h);
	memset(big + 3, 'x', 768);
	h = basic_header("Basic ", big, 771);
	CHECK(h != NULL && strlen(h) == 6 + 1028);
	CHECK(h != NULL && basic_bad_header(h));
	free(h);
	free(big);
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_basic_fields();
	test_decoding();
	test_pairs();
	test_limits();
	test_errors();
	test_has_other();
	test_basic_auth();
	return check_summary(argv[0]);
}
