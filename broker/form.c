/*
 * form.c: see form.h.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64.h"
#include "form.h"
#include "util.h"

#define BASIC_MAX	1024

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode n bytes of urlencoded text ('+' is a space, %XX a byte) into a new
 * NUL-terminated string. Returns FORM_OK or the reason it failed.
 */
static enum form_result
url_decode(const char *in, size_t n, char **out, size_t *outlen)
{
	char *buf;
	size_t i, o = 0;

	*out = NULL;
	buf = malloc(n + 1);
	if (buf == NULL)
		return FORM_E_NOMEM;
	for (i = 0; i < n; i++) {
		if (in[i] == '+') {
			buf[o++] = ' ';
		} else if (in[i] == '%') {
			int hi, lo;

			if (n - i < 3 || (hi = hexval(in[i + 1])) < 0 ||
			    (lo = hexval(in[i + 2])) < 0) {
				util_secure_zero(buf, n + 1);
				free(buf);
				return FORM_E_SYNTAX;
			}
			buf[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			buf[o++] = in[i];
		}
	}
	buf[o] = '\0';
	if (!util_valid_utf8(buf, o)) {
		util_secure_zero(buf, n + 1);
		free(buf);
		return FORM_E_ENCODING;
	}
	*out = buf;
	if (outlen != NULL)
		*outlen = o;
	return FORM_OK;
}

enum form_result
form_parse(const char *body, size_t len, struct form **out)
{
	struct form *f;
	size_t pos = 0;
	enum form_result rc = FORM_OK;

	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return FORM_E_NOMEM;
	while (pos < len) {
		const char *pair = body + pos, *amp, *eq;
		size_t plen, nlen;
		struct form_field *fld;

		amp = memchr(pair, '&', len - pos);
		plen = amp != NULL ? (size_t)(amp - pair) : len - pos;
		pos += plen + 1;
		if (plen == 0)
			continue;
		if (f->n == FORM_MAX_FIELDS) {
			rc = FORM_E_TOO_MANY;
			goto out;
		}
		eq = memchr(pair, '=', plen);
		nlen = eq != NULL ? (size_t)(eq - pair) : plen;
		if (nlen == 0 || nlen > FORM_MAX_NAME * 3) {
			rc = FORM_E_SYNTAX;
			goto out;
		}
		fld = &f->fields[f->n];
		if ((rc = url_decode(pair, nlen, &fld->name, NULL)) != FORM_OK)
			goto out;
		if (strlen(fld->name) > FORM_MAX_NAME || fld->name[0] == '\0') {
			free(fld->name);
			fld->name = NULL;
			rc = FORM_E_SYNTAX;
			goto out;
		}
		rc = eq != NULL ?
		    url_decode(eq + 1, plen - nlen - 1, &fld->value, &fld->value_len) :
		    url_decode("", 0, &fld->value, &fld->value_len);
		if (rc != FORM_OK) {
			free(fld->name);
			fld->name = NULL;
			goto out;
		}
		f->n++;
	}
out:
	if (rc != FORM_OK) {
		form_free(f);
		return rc;
	}
	*out = f;
	return FORM_OK;
}

void
form_free(struct form *f)
{
	size_t i;

	if (f == NULL)
		return;
	for (i = 0; i < f->n; i++) {
		free(f->fields[i].name);
		util_secure_zero(f->fields[i].value, f->fields[i].value_len);
		free(f->fields[i].value);
	}
	free(f);
}

const char *
form_get(const struct form *f, const char *name, size_t *count)
{
	const char *first = NULL;
	size_t i, c = 0;

	for (i = 0; f != NULL && i < f->n; i++) {
		if (strcmp(f->fields[i].name, name) == 0) {
			if (first == NULL)
				first = f->fields[i].value;
			c++;
		}
	}
	if (count != NULL)
		*count = c;
	return first;
}

const char *
form_has_other(const struct form *f, const char *const *allowed)
{
	size_t i, k;

	for (i = 0; f != NULL && i < f->n; i++) {
		for (k = 0; allowed[k] != NULL; k++)
			if (strcmp(f->fields[i].name, allowed[k]) == 0)
				break;
		if (allowed[k] == NULL)
			return f->fields[i].name;
	}
	return NULL;
}

int
form_parse_basic(const char *header, char **id, char **secret)
{
	unsigned char *raw = NULL;
	const char *b64, *colon;
	size_t n = 0, rawlen = 0;
	int rc = -1;

	*id = NULL;
	*secret = NULL;
	if (header == NULL || strncasecmp(header, "Basic ", 6) != 0)
		goto out;
	b64 = header + 6;
	n = strlen(b64);
	if (n == 0 || n > BASIC_MAX)
		goto out;
	raw = malloc(b64_decoded_max(n) + 1);
	if (raw == NULL)
		goto out;
	if (b64_std_decode(b64, n, raw, b64_decoded_max(n), &rawlen) != 0)
		goto out;
	colon = memchr(raw, ':', rawlen);
	if (colon == NULL)
		goto out;
	/* RFC 6749 §2.3.1: both halves are form-urlencoded before base64. */
	if (url_decode((const char *)raw, (size_t)(colon - (char *)raw), id,
	    NULL) != FORM_OK)
		goto out;
	if (url_decode(colon + 1, rawlen - (size_t)(colon + 1 - (char *)raw),
	    secret, NULL) != FORM_OK)
		goto out;
	if ((*id)[0] == '\0' || (*secret)[0] == '\0')
		goto out;
	rc = 0;
out:
	if (raw != NULL) {
		util_secure_zero(raw, b64_decoded_max(n) + 1);
		free(raw);
	}
	if (rc != 0) {
		free(*id);
		if (*secret != NULL)
			util_secure_zero(*secret, strlen(*secret));
		free(*secret);
		*id = NULL;
		*secret = NULL;
	}
	return rc;
}

enum form_cred_result
form_client_credentials(const char *authorization, const struct form *body,
    char **id, char **secret, const char **method)
{
	size_t n_id = 0, n_secret = 0;
	const char *bid;

	*id = NULL;
	*secret = NULL;
	bid = form_get(body, "client_id", &n_id);
	form_get(body, "client_secret", &n_secret);
	if (authorization != NULL) {
		*method = "client_secret_basic";
		if (n_secret > 0)
			return FORM_CRED_BOTH;
		if (form_parse_basic(authorization, id, secret) != 0)
			return FORM_CRED_MALFORMED;
		/* A body client_id, if any, must name the same client. */
		if (n_id > 1 || (n_id == 1 && strcmp(bid, *id) != 0)) {
			free(*id);
			util_secure_zero(*secret, strlen(*secret));
			free(*secret);
			*id = NULL;
			*secret = NULL;
			return FORM_CRED_MISMATCH;
		}
		return FORM_CRED_OK;
	}
	*method = "client_secret_post";
	if (n_id == 0 && n_secret == 0)
		return FORM_CRED_MISSING;
	if (n_id != 1 || n_secret != 1) {
		if (n_id == 1)
			*id = strdup(bid);
		return FORM_CRED_MALFORMED;
	}
	*id = strdup(bid);
	*secret = strdup(form_get(body, "client_secret", NULL));
	if (*id == NULL || *secret == NULL) {
		free(*id);
		if (*secret != NULL)
			util_secure_zero(*secret, strlen(*secret));
		free(*secret);
		*id = NULL;
		*secret = NULL;
		return FORM_CRED_MALFORMED;
	}
	return FORM_CRED_OK;
}
