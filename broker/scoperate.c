/*
 * scoperate.c: see scoperate.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "scoperate.h"
#include "scopes.h"
#include "util.h"

struct limit {
	char scope[CS_SCOPE_MAX + 1];
	struct ratelimit *rl;
};

static struct limit limits[SCOPERATE_MAX];
static size_t nlimits;

int
scoperate_init(const char *spec, char *errbuf, size_t errlen)
{
	const char *p = spec, *end, *eq;
	int64_t n;
	char num[16];

	/* A second init replaces the limits of the first. */
	scoperate_shutdown();
	while (p != NULL && *p != '\0') {
		struct limit *l;
		size_t len;

		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		eq = memchr(p, '=', (size_t)(end - p));
		len = eq != NULL ? (size_t)(eq - p) : 0;
		if (nlimits == SCOPERATE_MAX || eq == NULL || len == 0 ||
		    len > CS_SCOPE_MAX || (size_t)(end - eq - 1) >= sizeof(num))
			goto bad;
		l = &limits[nlimits];
		memcpy(l->scope, p, len);
		l->scope[len] = '\0';
		memcpy(num, eq + 1, (size_t)(end - eq - 1));
		num[end - eq - 1] = '\0';
		if (!scopes_valid_token(l->scope) ||
		    util_parse_int64(num, 1, 10000000, &n) != 0)
			goto bad;
		l->rl = ratelimit_new((int)n);
		if (l->rl == NULL) {
			snprintf(errbuf, errlen, "out of memory");
			scoperate_shutdown();
			return -1;
		}
		nlimits++;
		/* A trailing comma is a typo, not an empty entry. */
		if (*end == ',' && end[1] == '\0')
			goto bad;
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
bad:
	snprintf(errbuf, errlen, "rate_scopes: expected SCOPE=PER_MINUTE[,...] "
	    "with at most %d scopes, near '%.40s'", SCOPERATE_MAX, p);
	scoperate_shutdown();
	return -1;
}

void
scoperate_shutdown(void)
{
	size_t i;

	for (i = 0; i < nlimits; i++)
		ratelimit_free(limits[i].rl);
	memset(limits, 0, sizeof(limits));
	nlimits = 0;
}

/* 1 if scope (space-separated tokens) names s exactly. */
static int
names(const char *scope, const char *s)
{
	size_t len = strlen(s);
	const char *p = scope;

	while ((p = strstr(p, s)) != NULL) {
		if ((p == scope || p[-1] == ' ') &&
		    (p[len] == '\0' || p[len] == ' '))
			return 1;
		p += len;
	}
	return 0;
}

int
scoperate_take(const char *agent, const char *scope, int *retry_after,
    const char **which)
{
	char key[RATELIMIT_KEY_MAX];
	size_t i;

	*retry_after = 0;
	*which = NULL;
	if (scope == NULL)
		return 1;
	for (i = 0; i < nlimits; i++) {
		if (!names(scope, limits[i].scope))
			continue;
		/* Each scope has its own limiter, so the agent name is the key. */
		snprintf(key, sizeof(key), "%s", agent);
		if (!ratelimit_take(limits[i].rl, key, retry_after)) {
			*which = limits[i].scope;
			return 0;
		}
	}
	return 1;
}
