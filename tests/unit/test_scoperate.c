/*
 * test_scoperate.c: unit tests for per-scope rate limits (rate_scopes).
 *
 * The setting is operator input that sets a security limit, so anything
 * malformed must stop the broker rather than silently limit nothing; and a
 * scope must match as a whole token of the scope parameter, never as a
 * prefix ("forum:search" must not be drawn from by "forum:searchall").
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "scoperate.h"

static int
init_ok(const char *spec)
{
	char err[256] = "";

	return scoperate_init(spec, err, sizeof(err)) == 0;
}

static void
test_parse(void)
{
	char err[256] = "";
	char many[4096];
	size_t off = 0;
	int i;

	CHECK(init_ok(""));
	CHECK(init_ok("forum:search=10"));
	CHECK(init_ok("forum:search=10,forum:post=2"));
	CHECK(!init_ok("forum:search"));
	CHECK(!init_ok("forum:search="));
	CHECK(!init_ok("=5"));
	CHECK(!init_ok("forum:search=0"));
	CHECK(!init_ok("forum:search=-1"));
	CHECK(!init_ok("forum:search=lots"));
	CHECK(!init_ok("forum:search=10,"));
	CHECK(!init_ok(",forum:search=10"));
	CHECK(!init_ok("forum search=10"));
	CHECK(!init_ok("forum:\"x=10"));
	CHECK(!init_ok("a=99999999999999999999"));
	CHECK(scoperate_init("a=1,b", err, sizeof(err)) != 0);
	CHECK(strstr(err, "rate_scopes") != NULL);
	for (i = 0; i <= SCOPERATE_MAX; i++)
		off += (size_t)snprintf(many + off, sizeof(many) - off, "%ss%d=1",
		    i > 0 ? "," : "", i);
	CHECK(!init_ok(many));
	scoperate_shutdown();
}

static void
test_take(void)
{
	const char *which = NULL;
	int retry = 0, i;

	CHECK(init_ok("forum:search=2,wiki:read=100"));
	/* Unlimited scopes and an absent scope parameter never count. */
	for (i = 0; i < 10; i++)
		CHECK(scoperate_take("a", "forum:read", &retry, &which) == 1);
	CHECK(scoperate_take("a", NULL, &retry, &which) == 1);
	/* A longer scope with the same prefix is another scope. */
	for (i = 0; i < 5; i++)
		CHECK(scoperate_take("a", "forum:searchall x:forum:search",
		    &retry, &which) == 1);
	CHECK(scoperate_take("a", "forum:read forum:search", &retry,
	    &which) == 1);
	CHECK(scoperate_take("a", "forum:search", &retry, &which) == 1);
	CHECK(scoperate_take("a", "wiki:read forum:search", &retry,
	    &which) == 0);
	CHECK(which != NULL && strcmp(which, "forum:search") == 0);
	CHECK(retry >= 1 && retry <= 60);
	/* Budgets are per agent. */
	CHECK(scoperate_take("b", "forum:search", &retry, &which) == 1);
	scoperate_shutdown();
	/* After shutdown nothing is limited. */
	CHECK(scoperate_take("a", "forum:search", &retry, &which) == 1);
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_parse();
	test_take();
	return check_summary(argv[0]);
}
