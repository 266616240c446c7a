/*
 * fuzz_form.c: libFuzzer target for the urlencoded body parser and the
 * HTTP Basic credentials parser (form.c).
 *
 * The properties checked are the ones form.h promises to its callers:
 *
 * 1. form_parse either fails with *out NULL, or gives at most
 *    FORM_MAX_FIELDS fields whose names are 1..FORM_MAX_NAME bytes and
 *    whose values are valid UTF-8 of exactly value_len bytes.
 * 2. The fields are what the body says: percent-encoding every byte of
 *    every field and parsing that again gives the same fields back.
 * 3. form_parse_basic, on the input with and without a "Basic " prefix,
 *    either fails with both outputs NULL or gives a non-empty id and
 *    secret, both valid UTF-8.
 *
 * Everything is allocated and freed within one call, so LeakSanitizer
 * sees any path that forgets a free.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Larger bodies are refused by http.c long before form_parse sees them. */
#define FUZZ_MAX	65536

/* Append s (n bytes) to out, percent-encoding every byte. */
static size_t
pct_encode(char *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		out[o++] = '%';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	return o;
}

static void
check_fields(const struct form *f)
{
	size_t i, cnt;

	if (f->n > FORM_MAX_FIELDS)
		abort();
	for (i = 0; i < f->n; i++) {
		const struct form_field *fld = &f->fields[i];
		size_t nl;

		if (fld->name == NULL || fld->value == NULL)
			abort();
		nl = strlen(fld->name);
		if (nl == 0 || nl > FORM_MAX_NAME ||
		    !util_valid_utf8(fld->name, nl))
			abort();
		if (strlen(fld->value) != fld->value_len ||
		    !util_valid_utf8(fld->value, fld->value_len))
			abort();
		if (form_get(f, fld->name, &cnt) == NULL || cnt == 0)
			abort();
	}
}

/* Property 2: re-encode every field and parse the result again. */
static void
check_reencode(const struct form *f)
{
	struct form *g = NULL;
	size_t i, cap = 1, off = 0;
	char *body;

	for (i = 0; i < f->n; i++)
		cap += 3 * strlen(f->fields[i].name) +
		    3 * f->fields[i].value_len + 2;
	if ((body = malloc(cap)) == NULL)
		abort();
	for (i = 0; i < f->n; i++) {
		if (i > 0)
			body[off++] = '&';
		off += pct_encode(body + off, f->fields[i].name,
		    strlen(f->fields[i].name));
		body[off++] = '=';
		off += pct_encode(body + off, f->fields[i].value,
		    f->fields[i].value_len);
	}
	if (form_parse(body, off, &g) != FORM_OK || g == NULL || g->n != f->n)
		abort();
	for (i = 0; i < f->n; i++)
		if (strcmp(g->fields[i].name, f->fields[i].name) != 0 ||
		    g->fields[i].value_len != f->fields[i].value_len ||
		    memcmp(g->fields[i].value, f->fields[i].value,
		    f->fields[i].value_len) != 0)
			abort();
	form_free(g);
	free(body);
}

static void
check_basic(const char *header)
{
	char *id = (char *)&id, *secret = (char *)&secret;

	if (form_parse_basic(header, &id, &secret) != 0) {
		if (id != NULL || secret != NULL)
			abort();
		return;
	}
	if (id == NULL || secret == NULL || id[0] == '\0' ||
	    secret[0] == '\0' || !util_valid_utf8(id, strlen(id)) ||
	    !util_valid_utf8(secret, strlen(secret)))
		abort();
	free(id);
	util_secure_zero(secret, strlen(secret));
	free(secret);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct form *f = (struct form *)&f;
	enum form_result rc;
	char *s;

	if (size > FUZZ_MAX)
		return 0;

	rc = form_parse((const char *)data, size, &f);
	if (rc != FORM_OK) {
		if (f != NULL || (rc != FORM_E_SYNTAX &&
		    rc != FORM_E_ENCODING && rc != FORM_E_TOO_MANY &&
		    rc != FORM_E_NOMEM))
			abort();
	} else {
		if (f == NULL)
			abort();
		check_fields(f);
		check_reencode(f);
		form_free(f);
	}

	/* The same bytes as an Authorization header, with and without scheme. */
	if ((s = malloc(size + 7)) == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	check_basic(s);
	memcpy(s, "Basic ", 6);
	memcpy(s + 6, data, size);
	s[size + 6] = '\0';
	check_basic(s);
	free(s);
	return 0;
}
