/*
 * scopes.h: parsing and handling of OAuth scope strings (RFC 6749 §3.3),
 * and the pure decision of which requested scopes a read token may carry.
 */
#ifndef SCOPES_H
#define SCOPES_H

#include <stddef.h>
#include <stdint.h>

#include "countersign.h"

struct scope_list {
	size_t n;
	char *items[CS_SCOPES_MAX];	/* owned, distinct, in request order */
};

enum scope_kind {
	SCOPE_WRITE = 0,	/* the default: unknown means write (fail safe) */
	SCOPE_READ = 1
};

/*
 * What the database says about one requested scope (grants_resolve fills
 * these; the decisions below only read them).
 */
struct grant_scope {
	const char *name;	/* borrowed from the request's scope_list */
	int known;		/* the scope exists in the catalogue */
	enum scope_kind kind;	/* SCOPE_WRITE unless the catalogue says read */
	int granted;		/* a live, unexpired grant exists */
	int64_t scope_max_ttl;	/* 0: no limit */
	int64_t grant_max_ttl;	/* 0: no limit */
};

struct grant_set {
	size_t n;
	struct grant_scope s[CS_SCOPES_MAX];
};

/* Why a request was refused by scopes_intersect_read. */
enum scopes_refusal {
	SCOPES_OK = 0,
	SCOPES_EMPTY,		/* nothing requested */
	SCOPES_UNKNOWN,		/* not in the catalogue */
	SCOPES_WRITE,		/* a write scope: only step-up mints it */
	SCOPES_NOT_GRANTED	/* no live grant for this agent and audience */
};

/*
 * scopes_intersect_read(gs, refused, limits, nl): the client_credentials
 * decision over a resolved request (gs->s[i] describes the i-th requested
 * scope): SCOPES_OK only if there is at least one scope and every one is
 * a known read scope with a live grant. Scopes are judged in request
 * order, each first for being known (an unknown scope counts as a write,
 * but is reported as unknown), then read, then granted; the first failure
 * decides, and *refused is its index. On SCOPES_OK limits (2 * gs->n
 * entries) receives each scope's max TTL then its grant's, and *nl their
 * count, for tokens_ttl. Pure.
 */
enum scopes_refusal scopes_intersect_read(const struct grant_set *gs,
    size_t *refused, int64_t *limits, size_t *nl);

/*
 * scopes_refusal_reason(r): the token.denied reason code for r
 * ("unknown_scope", "write_scope_needs_approval", ...).
 */
const char *scopes_refusal_reason(enum scopes_refusal r);

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
