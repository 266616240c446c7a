/*
 * audit.c: see audit.h.
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "db.h"
#include "util.h"

static const struct db_stmt insert_event = {
	"audit_insert",
	"INSERT INTO audit_events (type, actor, subject, jti, details) "
	"VALUES ($1, $2, $3, $4, $5::jsonb)",
	5
};

enum cs_err
audit_append(const char *type, const char *actor, const char *subject,
    const char *jti, const json_t *details)
{
	const char *params[5];
	char *json = NULL;
	enum cs_err rc;

	json = details != NULL ? json_dumps(details, JSON_COMPACT) : NULL;
	if (details != NULL && json == NULL)
		return CS_ERR_INTERNAL;
	params[0] = type;
	params[1] = actor;
	params[2] = subject;
	params[3] = jti;
	params[4] = json != NULL ? json : "{}";
	rc = db_exec(&insert_event, params, NULL);
	free(json);
	return rc;
}

const char *
audit_clip(const char *s, char *buf, size_t cap)
{
	size_t i = 0, o = 0;
	const unsigned char *p = (const unsigned char *)s;

	if (cap == 0)
		return buf;
	while (p != NULL && p[i] != '\0' && o + 1 < cap) {
		size_t len = 1;

		if (p[i] >= 0x80) {
			len = (p[i] & 0xe0) == 0xc0 ? 2 : (p[i] & 0xf0) == 0xe0 ? 3 :
			    (p[i] & 0xf8) == 0xf0 ? 4 : 0;
			if (len == 0 || !util_valid_utf8((const char *)p + i,
			    strnlen((const char *)p + i, len)) ||
			    strnlen((const char *)p + i, len) < len) {
				buf[o++] = '?';
				i++;
				continue;
			}
			if (o + len >= cap)
				break;
			memcpy(buf + o, p + i, len);
			o += len;
			i += len;
			continue;
		}
		buf[o++] = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
		i++;
	}
	buf[o] = '\0';
	return buf;
}
