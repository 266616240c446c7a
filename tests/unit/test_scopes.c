/*
 * test_scopes.c: unit tests for scope strings (RFC 6749 §3.3).
 *
 * A scope string decides what a token may do, so the parser must accept
 * exactly the RFC's syntax, keep the caller's order, and refuse anything
 * else with CS_ERR_INVALID_SCOPE and an empty list. The read-path
 * intersection of the requested scopes with the agent's grants must grant
 * only known, granted read scopes and name the first one it refuses.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "countersign.h"
#include "scopes.h"

/* Room for CS_SCOPES_MAX + 1 scopes "sNN" written three times each. */
#define BUF_SIZE	((CS_SCOPES_MAX + 1) * 3 * 5 + 16)

/*
 * Write n distinct scopes "s0 s1 ... s<n-1>" into buf, the whole list
 * repeated reps times.
 */
static void
build(char *buf, size_t n, int reps)
{
	size_t i, off = 0;
	int r;

	buf[0] = '\0';
	for (r = 0; r < reps; r++)
		for (i = 0; i < n; i++)
			off += (size_t)snprintf(buf + off, BUF_SIZE - off, "%ss%zu",
			    off > 0 ? " " : "", i);
}

/* 1 if s is refused as invalid_scope, with out left empty. */
static int
scope_bad(const char *s)
{
	struct scope_list l;
	struct cs_error err;

	memset(&err, 0, sizeof(err));
	if (scopes_parse(s, &l, &err) != CS_ERR_INVALID_SCOPE ||
	    err.code != CS_ERR_INVALID_SCOPE || err.desc[0] == '\0' ||
	    l.n != 0) {
		fprintf(stderr, "scope \"%s\" not refused\n", s ? s : "(null)");
		scopes_clear(&l);
		return 0;
	}
	return 1;
}

static void
test_parse_good(void)
{
	struct scope_list l;
	struct cs_error err;

	CHECK(scopes_parse("read", &l, &err) == CS_OK);
	CHECK(l.n == 1);
	CHECK_STR(l.items[0], "read");
	scopes_clear(&l);
	CHECK(l.n == 0 && l.items[0] == NULL);

	CHECK(scopes_parse("calendar:read mail.send repo/x", &l, &err) ==
	    CS_OK);
	CHECK(l.n == 3);
	CHECK_STR(l.items[0], "calendar:read");
	CHECK_STR(l.items[1], "mail.send");
	CHECK_STR(l.items[2], "repo/x");
	scopes_clear(&l);

	/* Duplicates are dropped; first occurrences keep their order. */
	CHECK(scopes_parse("b a b c a b", &l, &err) == CS_OK);
	CHECK(l.n == 3);
	CHECK_STR(l.items[0], "b");
	CHECK_STR(l.items[1], "a");
	CHECK_STR(l.items[2], "c");
	scopes_clear(&l);
	CHECK(scopes_parse("x x x", &l, &err) == CS_OK && l.n == 1);
	scopes_clear(&l);
	/* Case matters: these are different scopes. */
	CHECK(scopes_parse("Read read", &l, &err) == CS_OK && l.n == 2);
	scopes_clear(&l);
	/* A prefix is not a duplicate. */
	CHECK(scopes_parse("read read:all", &l, &err) == CS_OK && l.n == 2);
	scopes_clear(&l);

	/* Every allowed character: %x21 / %x23-5B / %x5D-7E. */
	CHECK(scopes_parse("!#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQ"
	    "RSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~", &l, &err) == CS_OK);
	CHECK(l.n == 1);
	scopes_clear(&l);

	/* scopes_clear on NULL and on an empty list. */
	scopes_clear(NULL);
	scopes_clear(&l);
	CHECK(l.n == 0);
}

static void
test_parse_bad(void)
{
	static const char *bad[] = {
		"", " ", "  ", " read", "read ", "read  write", " read write",
		"read write ", "a\tb", "a\nb", "a\rb", "a\x01", "\x1f", "a\x7f",
		"\"quoted\"", "a\"b", "back\\slash", "\\", "caf\xc3\xa9",
		"\xff", "a \x80", "read\x0b", "good bad\"",
	};
	struct scope_list l;
	struct cs_error err;
	size_t i;
	int ok = 1;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (!scope_bad(bad[i]))
			ok = 0;
	CHECK(ok);
	CHECK(scope_bad(NULL));

	/* err may be NULL. */
	CHECK(scopes_parse("a  b", &l, NULL) == CS_ERR_INVALID_SCOPE && l.n == 0);

	/* Every byte outside the allowed set is refused on its own. */
	ok = 1;
	for (i = 1; i < 256; i++) {
		char s[4] = { 'a', (char)i, 'b', '\0' };
		int allowed = i == 0x21 || (i >= 0x23 && i <= 0x5b) ||
		    (i >= 0x5d && i <= 0x7e);
		enum cs_err rc = scopes_parse(s, &l, &err);

		if (i == ' ') {
			if (rc != CS_OK || l.n != 2)
				ok = 0;
		} else if (allowed != (rc == CS_OK)) {
			fprintf(stderr, "byte 0x%02zx: rc %d\n", i, (int)rc);
			ok = 0;
		}
		scopes_clear(&l);
	}
	CHECK(ok);
}

static void
test_parse_limits(void)
{
	char tok[CS_SCOPE_MAX + 2], *buf;
	struct scope_list l;
	struct cs_error err;
	size_t off;

	/* One token of CS_SCOPE_MAX characters is fine, one more is not. */
	memset(tok, 's', CS_SCOPE_MAX);
	tok[CS_SCOPE_MAX] = '\0';
	CHECK(scopes_parse(tok, &l, &err) == CS_OK && l.n == 1);
	CHECK(l.n == 1 && strlen(l.items[0]) == CS_SCOPE_MAX);
	scopes_clear(&l);
	CHECK(scopes_valid_token(tok) == 1);
	tok[CS_SCOPE_MAX] = 's';
	tok[CS_SCOPE_MAX + 1] = '\0';
	CHECK(scope_bad(tok));
	CHECK(scopes_valid_token(tok) == 0);

	buf = malloc(BUF_SIZE);
	CHECK(buf != NULL);
	if (buf == NULL)
		return;

	/* CS_SCOPES_MAX distinct scopes are fine, one more is not. */
	build(buf, CS_SCOPES_MAX, 1);
	CHECK(scopes_parse(buf, &l, &err) == CS_OK && l.n == CS_SCOPES_MAX);
	CHECK(l.n == CS_SCOPES_MAX && strcmp(l.items[0], "s0") == 0 &&
	    strcmp(l.items[CS_SCOPES_MAX - 1], "s31") == 0);
	scopes_clear(&l);
	build(buf, CS_SCOPES_MAX + 1, 1);
	CHECK(scope_bad(buf));
	memset(&err, 0, sizeof(err));
	CHECK(scopes_parse(buf, &l, &err) == CS_ERR_INVALID_SCOPE);
	CHECK(strstr(err.desc, "32") != NULL);

	/*
	 * Only distinct scopes count: each of the CS_SCOPES_MAX scopes
	 * written three times is still within the limit.
	 */
	build(buf, CS_SCOPES_MAX, 3);
	CHECK(strlen(buf) > 3 * CS_SCOPES_MAX * 2);
	CHECK(scopes_parse(buf, &l, &err) == CS_OK && l.n == CS_SCOPES_MAX);
	scopes_clear(&l);
	build(buf, CS_SCOPES_MAX + 1, 3);
	CHECK(scope_bad(buf));
	/* A duplicate arriving after the list is full is still fine. */
	build(buf, CS_SCOPES_MAX, 1);
	off = strlen(buf);
	snprintf(buf + off, BUF_SIZE - off, " s0 s31 s15");
	CHECK(scopes_parse(buf, &l, &err) == CS_OK && l.n == CS_SCOPES_MAX);
	scopes_clear(&l);
	snprintf(buf + off, BUF_SIZE - off, " s0 new");
	CHECK(scope_bad(buf));
	free(buf);
}

static void
test_join(void)
{
	struct scope_list l;
	struct cs_error err;
	char *s, *buf;

	memset(&l, 0, sizeof(l));
	s = scopes_join(&l);
	CHECK_STR(s, "");
	free(s);

	CHECK(scopes_parse("read", &l, &err) == CS_OK);
	s = scopes_join(&l);
	CHECK_STR(s, "read");
	free(s);
	scopes_clear(&l);

	CHECK(scopes_parse("b a b c a", &l, &err) == CS_OK);
	s = scopes_join(&l);
	CHECK_STR(s, "b a c");
	free(s);
	scopes_clear(&l);

	/* The largest list joins and parses back to itself. */
	buf = malloc(BUF_SIZE);
	CHECK(buf != NULL);
	if (buf == NULL)
		return;
	build(buf, CS_SCOPES_MAX, 2);
	CHECK(scopes_parse(buf, &l, &err) == CS_OK);
	s = scopes_join(&l);
	build(buf, CS_SCOPES_MAX, 1);
	CHECK_STR(s, buf);
	free(s);
	scopes_clear(&l);
	free(buf);
}

static void
test_contains(void)
{
	struct scope_list l;
	struct cs_error err;

	memset(&l, 0, sizeof(l));
	CHECK(scopes_contains(&l, "read") == 0);
	CHECK(scopes_parse("read write:all", &l, &err) == CS_OK);
	CHECK(scopes_contains(&l, "read") == 1);
	CHECK(scopes_contains(&l, "write:all") == 1);
	CHECK(scopes_contains(&l, "write") == 0);
	CHECK(scopes_contains(&l, "rea") == 0);
	CHECK(scopes_contains(&l, "reads") == 0);
	CHECK(scopes_contains(&l, "READ") == 0);
	CHECK(scopes_contains(&l, "") == 0);
	CHECK(scopes_contains(&l, "read write:all") == 0);
	scopes_clear(&l);
	CHECK(scopes_contains(&l, "read") == 0);
}

static void
test_valid_token(void)
{
	static const char *good[] = { "a", "read", "calendar:read", "!",
	    "#[]", "~", "a/b?c=d&e", "{}" };
	static const char *bad[] = { "", " ", "a b", "a\"", "\\", "a\\b",
	    "\x7f", "\t", "a\n", "caf\xc3\xa9", "\x80" };
	size_t i;
	int ok = 1;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (scopes_valid_token(good[i]) != 1)
			ok = 0;
	CHECK(ok);
	ok = 1;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scopes_valid_token(bad[i]) != 0) {
			fprintf(stderr, "valid token #%zu\n", i);
			ok = 0;
		}
	CHECK(ok);
	CHECK(scopes_valid_token(NULL) == 0);
}

/* One scope of a pretend catalogue and an agent's grants on it. */
struct fake_scope {
	const char *name;
	enum scope_kind kind;
	int granted;
	int64_t scope_max_ttl, grant_max_ttl;
};

static const struct fake_scope catalogue[] = {
	{ "forum:read", SCOPE_READ, 1, 0, 0 },
	{ "wiki:read", SCOPE_READ, 1, 600, 120 },
	{ "mail:read", SCOPE_READ, 0, 0, 0 },		/* no grant */
	{ "forum:post", SCOPE_WRITE, 1, 0, 0 },
	{ "forum:delete", SCOPE_WRITE, 0, 0, 0 },	/* write, no grant */
};

/*
 * What grants_resolve would answer for the scope string s: one entry per
 * distinct requested scope, in request order, looked up in catalogue.
 * Unknown scopes are marked as writes, as grants_resolve does.
 */
static void
resolve(const char *s, struct scope_list *l, struct grant_set *gs)
{
	struct cs_error err;
	size_t i, k;

	memset(gs, 0, sizeof(*gs));
	if (scopes_parse(s, l, &err) != CS_OK) {
		fprintf(stderr, "cannot parse \"%s\": %s\n", s, err.desc);
		return;
	}
	for (i = 0; i < l->n; i++) {
		struct grant_scope *g = &gs->s[i];

		g->name = l->items[i];
		g->kind = SCOPE_WRITE;
		for (k = 0; k < sizeof(catalogue) / sizeof(catalogue[0]); k++) {
			if (strcmp(catalogue[k].name, g->name) != 0)
				continue;
			g->known = 1;
			g->kind = catalogue[k].kind;
			g->granted = catalogue[k].granted;
			g->scope_max_ttl = catalogue[k].scope_max_ttl;
			g->grant_max_ttl = catalogue[k].grant_max_ttl;
		}
	}
	gs->n = l->n;
}

/*
 * 1 if the request s gets verdict want, refused naming the scope
 * want_name (NULL: granted, or nothing to name).
 */
static int
verdict_is(const char *s, enum scopes_refusal want, const char *want_name)
{
	struct scope_list l;
	struct grant_set gs;
	int64_t limits[2 * CS_SCOPES_MAX];
	size_t bad = 99, nl = 99;
	enum scopes_refusal got;
	int ok;

	memset(&l, 0, sizeof(l));
	resolve(s, &l, &gs);
	got = scopes_intersect_read(&gs, &bad, limits, &nl);
	ok = got == want;
	if (ok && want == SCOPES_OK)
		ok = nl == 2 * gs.n;
	else if (ok && want_name != NULL)
		ok = bad < gs.n && strcmp(gs.s[bad].name, want_name) == 0;
	if (!ok)
		fprintf(stderr, "\"%s\": verdict %s (scope #%zu), want %s %s\n",
		    s, scopes_refusal_reason(got), bad,
		    scopes_refusal_reason(want), want_name ? want_name : "");
	scopes_clear(&l);
	return ok;
}

static void
test_intersect_read(void)
{
	struct scope_list l;
	struct grant_set gs;
	int64_t limits[2 * CS_SCOPES_MAX];
	size_t bad, nl;

	/* Granted read scopes, alone and together. */
	CHECK(verdict_is("forum:read", SCOPES_OK, NULL));
	CHECK(verdict_is("forum:read wiki:read", SCOPES_OK, NULL));
	CHECK(verdict_is("wiki:read forum:read", SCOPES_OK, NULL));

	/* Each refusal, alone and next to granted scopes. */
	CHECK(verdict_is("forum:post", SCOPES_WRITE, "forum:post"));
	CHECK(verdict_is("forum:read forum:post", SCOPES_WRITE, "forum:post"));
	CHECK(verdict_is("mail:read", SCOPES_NOT_GRANTED, "mail:read"));
	CHECK(verdict_is("forum:read mail:read wiki:read", SCOPES_NOT_GRANTED,
	    "mail:read"));
	CHECK(verdict_is("nope:read", SCOPES_UNKNOWN, "nope:read"));
	CHECK(verdict_is("forum:read nope:read", SCOPES_UNKNOWN, "nope:read"));

	/*
	 * A write scope without a grant is refused as a write: step-up is
	 * what the agent needs to hear about first. (Unknown scopes, which
	 * grants_resolve marks as writes, are reported as unknown: above.)
	 */
	CHECK(verdict_is("forum:delete", SCOPES_WRITE, "forum:delete"));

	/* Order: the first refused scope in request order decides. */
	CHECK(verdict_is("forum:post nope:read", SCOPES_WRITE, "forum:post"));
	CHECK(verdict_is("nope:read forum:post", SCOPES_UNKNOWN, "nope:read"));
	CHECK(verdict_is("mail:read forum:post", SCOPES_NOT_GRANTED,
	    "mail:read"));
	CHECK(verdict_is("forum:post mail:read", SCOPES_WRITE, "forum:post"));

	/* Duplicates: asked twice is asked once, granted or refused. */
	CHECK(verdict_is("forum:read forum:read", SCOPES_OK, NULL));
	CHECK(verdict_is("forum:read forum:post forum:read forum:post",
	    SCOPES_WRITE, "forum:post"));
	memset(&l, 0, sizeof(l));
	resolve("wiki:read forum:read wiki:read", &l, &gs);
	CHECK(gs.n == 2);
	CHECK(scopes_intersect_read(&gs, &bad, limits, &nl) == SCOPES_OK);
	/* The TTL limits of every scope, in request order, for tokens_ttl. */
	CHECK(nl == 4);
	CHECK(nl == 4 && limits[0] == 600 && limits[1] == 120 &&
	    limits[2] == 0 && limits[3] == 0);
	scopes_clear(&l);

	/* A set holding one scope twice is judged entry by entry. */
	memset(&gs, 0, sizeof(gs));
	gs.n = 2;
	gs.s[0].name = gs.s[1].name = "forum:read";
	gs.s[0].known = gs.s[1].known = 1;
	gs.s[0].kind = gs.s[1].kind = SCOPE_READ;
	gs.s[0].granted = 1;
	CHECK(scopes_intersect_read(&gs, &bad, limits, &nl) ==
	    SCOPES_NOT_GRANTED && bad == 1);

	/* Empty: nothing requested is nothing granted. */
	memset(&gs, 0, sizeof(gs));
	bad = nl = 7;
	CHECK(scopes_intersect_read(&gs, &bad, limits, &nl) == SCOPES_EMPTY);
	CHECK(bad == 0 && nl == 0);

	/* The audit reason codes token.denied has always used. */
	CHECK_STR(scopes_refusal_reason(SCOPES_UNKNOWN), "unknown_scope");
	CHECK_STR(scopes_refusal_reason(SCOPES_WRITE),
	    "write_scope_needs_approval");
	CHECK_STR(scopes_refusal_reason(SCOPES_NOT_GRANTED), "not_granted");
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_parse_good();
	test_parse_bad();
	test_parse_limits();
	test_join();
	test_contains();
	test_valid_token();
	test_intersect_read();
	return check_summary(argv[0]);
}
