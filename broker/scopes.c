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
