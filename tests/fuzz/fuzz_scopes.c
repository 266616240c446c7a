/*
 * fuzz_scopes.c: libFuzzer target for scope strings (scopes.c).
 *
 * On every input scopes_parse must either refuse with an empty list, or
 * give at most CS_SCOPES_MAX distinct, syntactically valid tokens; and
 * then scopes_join followed by scopes_parse must give the same list in the
 * same order, since the joined string is what goes into tokens and audit
 * rows and is read back from them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "countersign.h"
#include "scopes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Four times what the most scopes can spell is plenty. */
#define FUZZ_MAX	(4 * CS_SCOPES_MAX * (CS_SCOPE_MAX + 1))

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scope_list l, again;
	struct cs_error err;
	enum cs_err rc;
	char *s, *joined;
	size_t i, k;

	if (size > FUZZ_MAX)
		return 0;
	if ((s = malloc(size + 1)) == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';

	rc = scopes_parse(s, &l, &err);
	if (rc != CS_OK) {
		if (rc != CS_ERR_INVALID_SCOPE || err.code != rc || l.n != 0 ||
		    err.desc[0] == '\0')
			abort();
		free(s);
		return 0;
	}
	if (l.n == 0 || l.n > CS_SCOPES_MAX)
		abort();
	for (i = 0; i < l.n; i++) {
		if (!scopes_valid_token(l.items[i]) ||
		    !scopes_contains(&l, l.items[i]) ||
		    strstr(s, l.items[i]) == NULL)
			abort();
		for (k = 0; k < i; k++)
			if (strcmp(l.items[i], l.items[k]) == 0)
				abort();
	}

	if ((joined = scopes_join(&l)) == NULL)
		abort();
	/*
	 * The input was accepted, so it is tokens separated by single
	 * spaces; without duplicates among them the join is the input
	 * itself, and with them it is shorter.
	 */
	for (i = 0, k = 1; s[i] != '\0'; i++)
		if (s[i] == ' ')
			k++;
	if (k == l.n ? strcmp(joined, s) != 0 : strlen(joined) >= size)
		abort();
	if (scopes_parse(joined, &again, &err) != CS_OK || again.n != l.n)
		abort();
	for (i = 0; i < l.n; i++)
		if (strcmp(again.items[i], l.items[i]) != 0)
			abort();
	scopes_clear(&again);
	scopes_clear(&l);
	free(joined);
	free(s);
	return 0;
}
