/*
 * scopes.c: see scopes.h.
 */
#include <stdlib.h>
#include <string.h>

#include "scopes.h"

static int
scope_char_ok(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

int
scopes_valid_token(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (i >= CS_SCOPE_MAX || !scope_char_ok((unsigned char)s[i]))
			return 0;
	return 1;
}

int
scopes_contains(const struct scope_list *l, const char *scope)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->items[i], scope) == 0)
			return 1;
	return 0;
}

enum cs_err
scopes_parse(const char *s, struct scope_list *out, struct cs_error *err)
{
	const char *p = s;

	out->n = 0;
	if (s == NULL || *s == '\0')
		return cs_error_set(err, CS_ERR_INVALID_SCOPE, "scope is empty");
	for (;;) {
		const char *sp = strchr(p, ' ');
		size_t len = sp != NULL ? (size_t)(sp - p) : strlen(p), i;
		char *tok;

		if (len == 0) {
			scopes_clear(out);
			return cs_error_set(err, CS_ERR_INVALID_SCOPE,
			    "scope has an empty entry (leading, trailing or double space)");
		}
		if (len > CS_SCOPE_MAX) {
			scopes_clear(out);
			return cs_error_set(err, CS_ERR_INVALID_SCOPE,
			    "a scope is longer than %d characters", CS_SCOPE_MAX);
		}
		for (i = 0; i < len; i++) {
			if (!scope_char_ok((unsigned char)p[i])) {
				scopes_clear(out);
				return cs_error_set(err, CS_ERR_INVALID_SCOPE,
				    "scope contains a character outside RFC 6749 scope-token syntax");
			}
		}
		tok = strndup(p, len);
		if (tok == NULL) {
			scopes_clear(out);
			return cs_error_set(err, CS_ERR_INTERNAL, "out of memory");
		}
		if (scopes_contains(out, tok)) {
			free(tok);
		} else if (out->n == CS_SCOPES_MAX) {
			free(tok);
			scopes_clear(out);
			return cs_error_set(err, CS_ERR_INVALID_SCOPE,
			    "more than %d scopes requested", CS_SCOPES_MAX);
		} else {
			out->items[out->n++] = tok;
		}
		if (sp == NULL)
			break;
		p = sp + 1;
	}
	return CS_OK;
}

void
scopes_clear(struct scope_list *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++) {
		free(l->items[i]);
		l->items[i] = NULL;
	}
	l->n = 0;
}

char *
scopes_join(const struct scope_list *l)
{
	size_t i, total = 1, off = 0;
	char *s;

	for (i = 0; i < l->n; i++)
		total += strlen(l->items[i]) + 1;
	s = malloc(total);
	if (s == NULL)
		return NULL;
	for (i = 0; i < l->n; i++) {
		size_t len = strlen(l->items[i]);

		if (i > 0)
			s[off++] = ' ';
		memcpy(s + off, l->items[i], len);
		off += len;
	}
	s[off] = '\0';
	return s;
}

enum scopes_refusal
scopes_intersect_read(const struct grant_set *gs, size_t *refused,
    int64_t *limits, size_t *nl)
{
	size_t i;

	*refused = 0;
	*nl = 0;
	/* Fail safe: nothing requested is nothing to grant. */
	if (gs->n == 0)
		return SCOPES_EMPTY;
	for (i = 0; i < gs->n; i++) {
		const struct grant_scope *g = &gs->s[i];

		*refused = i;
		/*
		 * Known before kind: an unknown scope is handled as a write
		 * (fail safe), but telling the agent to seek approval for a
		 * scope that does not exist would mislead it.
		 */
		if (!g->known)
			return SCOPES_UNKNOWN;
		/* Kind before grant: a write scope needs step-up either way. */
		if (g->kind != SCOPE_READ)
			return SCOPES_WRITE;
		if (!g->granted)
			return SCOPES_NOT_GRANTED;
		limits[(*nl)++] = g->scope_max_ttl;
		limits[(*nl)++] = g->grant_max_ttl;
	}
	*refused = 0;
	return SCOPES_OK;
}

const char *
scopes_refusal_reason(enum scopes_refusal r)
{
	switch (r) {
	case SCOPES_OK:
		return "granted";
	case SCOPES_EMPTY:
		return "no_scope";
	case SCOPES_UNKNOWN:
		return "unknown_scope";
	case SCOPES_WRITE:
		return "write_scope_needs_approval";
	case SCOPES_NOT_GRANTED:
		return "not_granted";
	}
	return "refused";
}
