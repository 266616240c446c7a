/*
 * tripwire.h: rules that suspend an agent whose behaviour looks like a
 * compromise, and the suspension itself.
 *
 * Rules live in the tripwires table (managed by the CLI); the request path
 * reads them through a one-second cache and counts from PostgreSQL
 * (approval_requests, audit_events, tokens), so every broker process sees
 * the same counts. Kinds:
 *
 *   write_requests  an agent asking for a write approval when it already
 *                   asked threshold times within the window
 *   denials         an agent refused when it was already refused more than
 *                   threshold times within the window
 *   new_audience    an agent that has had tokens before asking for an
 *                   audience it never had a token or approval request for
 *
 * A fired rule suspends the agent in one statement: disabled_at (so every
 * existing check refuses it: authentication, the token insert's re-check,
 * introspection) plus suspended_at and suspended_by (the rule), its live
 * tokens and the tokens delegated to it revoked, and an agent.suspended
 * audit event naming the rule. Approvers are told through the webhook.
 * Only one process wins the suspension; the others see it done.
 */
#ifndef TRIPWIRE_H
#define TRIPWIRE_H

#include <stdint.h>
#include <jansson.h>

#include "agents.h"
#include "countersign.h"

/* How long the request path trusts its copy of the rules. */
#define TRIPWIRE_RULES_TTL_MS	1000
#define TRIPWIRE_RULES_MAX	256
#define TRIPWIRE_WINDOW_MAX	(30 * 24 * 3600)

/* tripwire_init() / tripwire_shutdown(): the broker's caches. */
int tripwire_init(void);
void tripwire_shutdown(void);

/*
 * tripwire_add(kind, threshold, window, agent, actor, id, err): store a
 * rule (agent NULL: every agent) and audit tripwire.created. *id receives
 * its id. CS_ERR_INVALID_REQUEST for an unknown kind or bad numbers,
 * CS_ERR_NOT_FOUND for an unknown agent.
 */
enum cs_err tripwire_add(const char *kind, int64_t threshold, int64_t window,
    const char *agent, const char *actor, int64_t *id, struct cs_error *err);

/*
 * tripwire_remove(id, actor, err): retire a rule (kept for the record) and
 * audit tripwire.removed. CS_ERR_NOT_FOUND if no live rule has that id.
 */
enum cs_err tripwire_remove(int64_t id, const char *actor,
    struct cs_error *err);

/* tripwire_list(out): a new JSON array of the live rules. */
enum cs_err tripwire_list(json_t **out);

/*
 * tripwire_resume(agent, actor, err): lift a suspension (clearing
 * disabled_at too) and audit agent.resumed. An agent disabled by an
 * operator is not resumed: CS_ERR_CONFLICT. CS_ERR_NOT_FOUND for an
 * unknown agent.
 */
enum cs_err tripwire_resume(const char *agent, const char *actor,
    struct cs_error *err);

/*
 * The request path. Each returns 1 when a rule fired and the agent is now
 * suspended (the caller then answers as to a disabled client), else 0.
 * Database trouble is logged and counts as "did not fire": a tripwire is
 * a detector, and issuance keeps its own fail-closed checks.
 *
 * tripwire_check_audience(c, audience): before minting or asking for a
 * token for audience. Costs nothing once (agent, audience) has been seen.
 * tripwire_before_write_request(c): before a bc-authorize request is made.
 * tripwire_after_denial(c): after a request of c was refused.
 */
int tripwire_check_audience(const struct client *c, const char *audience);
int tripwire_before_write_request(const struct client *c);
int tripwire_after_denial(const struct client *c);

#endif
