/*
 * form.h: application/x-www-form-urlencoded bodies and the HTTP Basic
 * credentials of RFC 6749 §2.3.1.
 *
 * OAuth forbids repeating a parameter (RFC 6749 §3.2), so the parser keeps
 * every occurrence and form_get() reports how many there were; the caller
 * decides (resource may legitimately repeat under RFC 8707).
 */
#ifndef FORM_H
#define FORM_H

#include <stddef.h>

#define FORM_MAX_FIELDS		32
#define FORM_MAX_NAME		64

struct form_field {
	char *name;		/* decoded, NUL-terminated */
	char *value;		/* decoded, NUL-terminated, valid UTF-8 */
	size_t value_len;
};

struct form {
	size_t n;
	struct form_field fields[FORM_MAX_FIELDS];
};

enum form_result {
	FORM_OK = 0,
	FORM_E_SYNTAX,		/* bad %-escape, empty name, name too long */
	FORM_E_ENCODING,	/* NUL, control character or invalid UTF-8 */
	FORM_E_TOO_MANY,	/* more than FORM_MAX_FIELDS */
	FORM_E_NOMEM
};

/*
 * form_parse(body, len, out): parse len bytes (need not be NUL-terminated)
 * into a new struct form the caller frees with form_free. Empty pairs
 * ("a=1&&b=2") are skipped; a pair without '=' has an empty value. On error
 * *out is NULL and the result says why.
 */
enum form_result form_parse(const char *body, size_t len, struct form **out);

/* form_free(f): free f and wipe its values (they may hold secrets). */
void form_free(struct form *f);

/*
 * form_get(f, name, count): the first value of name, or NULL. If count is
 * not NULL it receives how many times name occurred. The pointer is owned by
 * f.
 */
const char *form_get(const struct form *f, const char *name, size_t *count);

/*
 * form_has_other(f, allowed): the name of the first field not listed in the
 * NULL-terminated array allowed, or NULL. Borrowed from f.
 */
const char *form_has_other(const struct form *f, const char *const *allowed);

/*
 * form_parse_basic(header, id, secret): parse an Authorization header value
 * "Basic <base64(urlencoded-id ":" urlencoded-secret)>" (scheme
 * case-insensitive, exactly one space). Sets *id and *secret to new strings
 * the caller frees (wiping *secret). Returns 0, or -1 if the header is not
 * well-formed Basic (both outputs are then NULL).
 */
int form_parse_basic(const char *header, char **id, char **secret);

enum form_cred_result {
	FORM_CRED_OK = 0,
	FORM_CRED_MISSING,	/* no credentials at all */
	FORM_CRED_MALFORMED,	/* bad Basic header, or half of a post pair */
	FORM_CRED_BOTH,		/* Basic and client_secret in the body */
	FORM_CRED_MISMATCH	/* body client_id differs from the Basic one */
};

/*
 * form_client_credentials(authorization, body, id, secret, method): the
 * client credentials of a request, from client_secret_basic (the
 * Authorization header value, may be NULL) or client_secret_post (form
 * fields). Exactly one method may be used (RFC 6749 §2.3). On FORM_CRED_OK
 * *id and *secret are new strings the caller frees (wiping *secret) and
 * *method names the method; on FORM_CRED_MALFORMED *id may still be set
 * (for the audit row), otherwise both are NULL.
 */
enum form_cred_result form_client_credentials(const char *authorization,
    const struct form *body, char **id, char **secret, const char **method);

#endif
