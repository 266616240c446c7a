/*
 * audit.h: the append-only audit log (audit_events).
 *
 * Every issuance, refusal, authentication failure and administrative change
 * is written here. An event names an actor (who did it: "agent:NAME",
 * "admin:USER", "anonymous"), a subject (what it was done to), the token's
 * jti where there is one, and a JSON object of details. Details must never
 * hold a token, a secret or key material: callers pass identifiers and
 * reason codes only.
 */
#ifndef AUDIT_H
#define AUDIT_H

#include <jansson.h>

#include "countersign.h"

/* Longest string stored for any audit field taken from input. */
#define AUDIT_FIELD_MAX	256

/*
 * audit_append(type, actor, subject, jti, details): insert one event in its
 * own statement (autocommit, or the caller's open transaction). subject,
 * jti and details may be NULL; details is borrowed. Returns CS_OK or the
 * db error; a caller that cannot record must not go on with the action.
 */
enum cs_err audit_append(const char *type, const char *actor,
    const char *subject, const char *jti, const json_t *details);

/*
 * audit_clip(s, buf, cap): copy at most cap-1 bytes of an untrusted string
 * into buf for use in an audit field, cutting at a UTF-8 boundary and
 * replacing control characters and invalid bytes with '?'. Returns buf.
 */
const char *audit_clip(const char *s, char *buf, size_t cap);

#endif
