/*
 * scopes.h: parsing and handling of OAuth scope strings (RFC 6749 §3.3).
 */
#ifndef SCOPES_H
#define SCOPES_H

#include <stddef.h>

#include "countersign.h"

struct scope_list {
	size_t n;
	char *items[CS_SCOPES_MAX];	/* owned, distinct, in request order */
};

/*
 * scopes_parse(s, out, err): split s on single spaces into scope tokens
 * (each 1..CS_SCOPE_MAX characters from %x21 / %x23-5B / %x5D-7E), drop
 * exact duplicates, and fill out (which the caller later passes to
 * scopes_clear). Empty tokens (leading, trailing or double spaces), bad
 * characters and more than CS_SCOPES_MAX distinct scopes are refused with
 * CS_ERR_INVALID_SCOPE and a description naming the problem; out is then
 * empty.
 */
enum cs_err scopes_parse(const char *s, struct scope_list *out,
    struct cs_error *err);

/* scopes_clear(l): free the items of l and set n to 0. NULL-safe. */
void scopes_clear(struct scope_list *l);

/* scopes_contains(l, scope): 1 if scope is in l. */
int scopes_contains(const struct scope_list *l, const char *scope);

/*
 * scopes_join(l): the scopes of l joined by single spaces, as a new string
 * the caller frees. NULL on allocation failure.
 */
char *scopes_join(const struct scope_list *l);

/*
 * scopes_valid_token(s): 1 if s is one syntactically valid scope token.
 */
int scopes_valid_token(const char *s);

#endif
