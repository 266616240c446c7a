/*
 * exchange.h: RFC 8693 token exchange, for down-scoping and delegation.
 *
 * An agent trades a live Countersign access token (the subject token) for
 * a narrower one: scopes a subset of the subject's, the same audience, an
 * expiry no later than the subject's, read scopes only. The new token
 * carries an "act" claim (RFC 8693 §4.1) naming the agent that acts with
 * it, nested when the subject was itself delegated. Who may exchange:
 *
 *   - the subject token's own agent (its client_id is the caller's), who
 *     may name another enabled agent as the actor (delegation to a
 *     sub-agent), or act itself;
 *   - the agent the subject token was delegated to (its act.sub is the
 *     caller), who may narrow it further or delegate it on.
 *
 * The token row and its token.exchanged audit event (naming both jtis) are
 * inserted by one statement that re-checks, in its own snapshot, that the
 * subject token is unrevoked, unexpired and not a step-up token, that
 * every agent involved is enabled, and that the subject agent's grants are
 * still live: nothing is released that is not committed. Every refusal is
 * recorded as a token.denied event with grant "token-exchange".
 */
#ifndef EXCHANGE_H
#define EXCHANGE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "agents.h"
#include "config.h"
#include "countersign.h"
#include "tokens.h"

#define EXCHANGE_GRANT		"urn:ietf:params:oauth:grant-type:token-exchange"
#define EXCHANGE_TYPE_AT	"urn:ietf:params:oauth:token-type:access_token"

/* Delegation chains deeper than this are refused. */
#define EXCHANGE_MAX_DEPTH	4

/*
 * The request parameters, as received (every pointer borrowed, NULL when
 * absent). n_resource and n_audience count repeated parameters.
 */
struct exchange_request {
	const struct client *client;
	const char *subject_token;
	const char *subject_token_type;
	const char *requested_token_type;
	const char *actor_token;
	const char *scope;
	const char *resource;
	size_t n_resource;
	const char *audience;
	size_t n_audience;
	const char *actor;		/* an agent name: the sub-agent */
	const char *requested_ttl;	/* text, seconds */
};

/*
 * exchange_token(cfg, req, out, err): check req and mint the exchanged
 * token. On CS_OK out holds it (release with tokens_issued_clear). Refusals
 * are CS_ERR_INVALID_REQUEST (unusable or foreign subject token, lifetime
 * beyond the subject's), CS_ERR_INVALID_SCOPE (a scope the subject lacks or
 * a write scope), CS_ERR_INVALID_TARGET (another audience), each audited;
 * CS_ERR_UNAVAILABLE on database trouble.
 */
enum cs_err exchange_token(const struct broker_config *cfg,
    const struct exchange_request *req, struct token_issued *out,
    struct cs_error *err);

#endif
