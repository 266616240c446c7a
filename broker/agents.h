/*
 * agents.h: the registry of agents (OAuth clients) and client
 * authentication against it.
 */
#ifndef AGENTS_H
#define AGENTS_H

#include <stdint.h>
#include <jansson.h>

#include "countersign.h"
#include "form.h"
#include "keys.h"

/* Client secrets: 32 random bytes, base64url (43 characters). */
#define AGENTS_SECRET_BYTES	32
#define AGENTS_SECRET_LEN	43

/* An authenticated client, filled by agents_authenticate. */
struct client {
	int64_t agent_id;
	char name[CS_NAME_MAX + 1];
	char client_id[CS_NAME_MAX + 1];
	const char *method;	/* "client_secret_basic" or "client_secret_post" */
	/*
	 * Lowercase hex of the secret's HMAC when the client authenticated
	 * with a secret, "" otherwise. Statements that mint a token re-check
	 * it against agents.secret_hash, so a rotated secret stops at once on
	 * every broker even while one still remembers the old one.
	 */
	char cred[2 * KEYS_HASH_LEN + 1];
};

/*
 * agents_add(name, owner, actor, client_id, secret): create an agent with a
 * new random secret, storing only its hash, and audit agent.created in the
 * same transaction. client_id (CS_NAME_MAX+1 bytes) and secret
 * (AGENTS_SECRET_LEN+1 bytes) receive the credentials, which are shown
 * once; the caller wipes secret. CS_ERR_CONFLICT if the name is taken.
 */
enum cs_err agents_add(const char *name, const char *owner, const char *actor,
    char *client_id, char *secret, struct cs_error *err);

/*
 * agents_disable(name, actor): mark an agent disabled (kill switch) and
 * audit agent.disabled. CS_ERR_NOT_FOUND if there is no such agent.
 */
enum cs_err agents_disable(const char *name, const char *actor,
    struct cs_error *err);

/* agents_list(out): a new JSON array of agents (no secrets). */
enum cs_err agents_list(json_t **out);

/*
 * agents_rotate_secret(name, revoke_tokens, actor, secret, revoked, err):
 * give a secret-authenticated agent a new random secret (written into
 * secret, AGENTS_SECRET_LEN+1 bytes, shown once; the caller wipes it) and
 * audit agent.secret_rotated in the same statement. The old secret stops
 * at once: every minting statement re-checks the secret (struct client's
 * cred). With revoke_tokens, the agent's live tokens and those delegated
 * to it are revoked in the same statement (*revoked says how many).
 * CS_ERR_NOT_FOUND for no such agent, CS_ERR_INVALID_REQUEST for an agent
 * that authenticates with a registered key.
 */
enum cs_err agents_rotate_secret(const char *name, int revoke_tokens,
    const char *actor, char *secret, int64_t *revoked, struct cs_error *err);

/*
 * agents_cache_init(ttl_ms): remember successful authentications for the
 * token endpoint for ttl_ms (0: never), so a busy agent costs one database
 * round trip per token instead of three (docs/decisions/0005). The broker
 * calls it at start; agents_cache_free at exit.
 */
int agents_cache_init(int ttl_ms);
void agents_cache_free(void);

/*
 * agents_authenticate(authorization, body, endpoint, out, err): authenticate
 * the client of a request by client_secret_basic (the Authorization header
 * value, may be NULL) or client_secret_post (client_id and client_secret in
 * the form body). Exactly one method must be used. The secret's HMAC is
 * compared in constant time, and an unknown client costs the same work as
 * a known one. Every failure writes a client.auth_failed audit event and
 * returns CS_ERR_INVALID_CLIENT (or CS_ERR_INVALID_REQUEST when two methods
 * are mixed, CS_ERR_UNAVAILABLE when nothing can be checked or recorded).
 * endpoint names the endpoint for the audit row.
 */
enum cs_err agents_authenticate(const char *authorization,
    const struct form *body, const char *endpoint, struct client *out,
    struct cs_error *err);

/*
 * agents_recheck(c, err): after the database refused to issue for c,
 * forget c's cached authentication and tell whether the agent has been
 * disabled, or its secret rotated, meanwhile: CS_ERR_INVALID_CLIENT
 * (audited like any failed authentication) if so, CS_OK if it still
 * authenticates.
 */
enum cs_err agents_recheck(const struct client *c, struct cs_error *err);

#endif
