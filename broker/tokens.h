/*
 * tokens.h: the issuance policy and minting of access tokens (RFC 9068
 * JWTs), and their audit.
 *
 * The invariant this module keeps: no token is returned unless its tokens
 * row and its token.issued audit event have been committed, and the grants
 * it rests on were live in that same statement.
 */
#ifndef TOKENS_H
#define TOKENS_H

#include <stdint.h>
#include <jansson.h>

#include "agents.h"
#include "config.h"
#include "countersign.h"
#include "scopes.h"

/* The "typ" header of our access tokens (RFC 9068 §2.1). */
#define TOKENS_TYP	"at+jwt"

struct token_request {
	const struct client *client;
	const struct scope_list *scopes;
	const char *audience;
	int64_t requested_ttl;	/* seconds; 0 when the client asked none */
	const char *dpop_jkt;	/* cnf.jkt (RFC 9449); NULL for a bearer token */
};

struct token_issued {
	char *access_token;	/* owned; wiped by tokens_issued_clear */
	char *scope;		/* owned */
	int64_t expires_in;
	char jti[CS_JTI_LEN + 1];
};

/*
 * tokens_ttl(requested, def, global_max, limits, n): the lifetime to issue:
 * requested (or def when requested is 0), capped by global_max and by every
 * non-zero entry of limits[0..n). Pure; never returns less than 1.
 */
int64_t tokens_ttl(int64_t requested, int64_t def, int64_t global_max,
    const int64_t *limits, size_t n);

/*
 * tokens_issue_read(cfg, req, out, err): the client_credentials path. Every
 * requested scope must be a known read scope with a live grant for the
 * audience; otherwise nothing is minted, a token.denied event records why,
 * and CS_ERR_INVALID_SCOPE says which scope (write scopes: step-up needed).
 * On CS_OK out holds the token; the caller releases it with
 * tokens_issued_clear. Database trouble is CS_ERR_UNAVAILABLE.
 */
enum cs_err tokens_issue_read(const struct broker_config *cfg,
    const struct token_request *req, struct token_issued *out,
    struct cs_error *err);

/*
 * tokens_sign(claims, out, kid, kidcap, err): sign the compact JSON claims
 * with the current signing key into out->access_token (the caller frees it
 * with tokens_issued_clear) and copy that key's id into kid. The one place
 * tokens are signed: tokens_mint and the token exchange both come here.
 */
enum cs_err tokens_sign(const char *claims, struct token_issued *out,
    char *kid, size_t kidcap, struct cs_error *err);

/* What tokens_mint needs; every pointer is borrowed. */
struct token_mint {
	const struct client *client;
	const struct scope_list *scopes;
	const char *audience;
	int64_t ttl;			/* already capped by every limit */
	const char *approval_id;	/* NULL on the read path */
	json_t *extra_claims;		/* merged into the claims; may be NULL */
	int64_t max_uses;		/* 0: unlimited */
	int read_only;			/* re-check that every scope is read */
};

/*
 * tokens_mint(cfg, m, out, err): sign a token for exactly m and insert its
 * tokens row and token.issued audit event in one statement that re-checks
 * (in its own snapshot) that the agent is enabled and every grant live.
 * Runs in the caller's transaction if one is open. CS_ERR_CONFLICT when
 * that re-check fails (nothing written), CS_ERR_UNAVAILABLE on database
 * trouble. On CS_OK the caller owns out (tokens_issued_clear).
 */
enum cs_err tokens_mint(const struct broker_config *cfg,
    const struct token_mint *m, struct token_issued *out,
    struct cs_error *err);

/*
 * The DPoP proof a service forwarded with an introspection request
 * (RFC 9449 §7.1): the proof it received and the method and URL (no query)
 * of its own request. Every pointer is borrowed; proof NULL: none sent.
 */
struct tokens_proof {
	const char *proof;
	const char *htm;
	const char *htu;
};

/*
 * tokens_introspect(cfg, service, cred, audiences, n, token, proof, out,
 * err): RFC 7662 for a service whose audiences are audiences[0..n), which
 * authenticated with the secret whose HMAC is cred in hex ("" or NULL for
 * a key; struct service's cred): the use is counted only if the database
 * still has the service enabled with that secret. Verifies the
 * token (signature, typ, issuer, lifetime), checks its audience is the
 * service's, checks the forwarded DPoP proof if proof->proof is set (ath
 * and key against the token's cnf.jkt; a refusal is audited as
 * token.dpop_refused), and only then records the use (a token.used event
 * for every call, inactive ones included, with the reason), so a refused
 * proof never spends a use. Single-use and revoked tokens, and tokens of
 * disabled agents, are inactive. proof may be NULL. On CS_OK *out is the
 * response object ({"active": false} for every refusal, so the caller
 * learns nothing of why). CS_ERR_UNAVAILABLE if the use cannot be recorded.
 */
enum cs_err tokens_introspect(const struct broker_config *cfg,
    const char *service, const char *cred, const char *const *audiences,
    size_t n,
    const char *token, const struct tokens_proof *proof, json_t **out,
    struct cs_error *err);

/*
 * tokens_revoke(cfg, client, token, err): RFC 7009 revocation by the agent
 * the token was issued to. Invalid tokens are ignored (CS_OK, audited);
 * another agent's token is CS_ERR_UNAUTHORIZED_CLIENT.
 */
enum cs_err tokens_revoke(const struct broker_config *cfg,
    const struct client *client, const char *token, struct cs_error *err);

/*
 * tokens_revoke_jti(jti, agent_id, actor, via, revoked, err): revoke a
 * token by jti (of that agent, or any when agent_id is 0) with a
 * token.revoked event. *revoked is 1 if a live token was revoked now.
 */
enum cs_err tokens_revoke_jti(const char *jti, int64_t agent_id,
    const char *actor, const char *via, int *revoked, struct cs_error *err);

/* tokens_issued_clear(t): wipe and free what t holds. NULL-safe. */
void tokens_issued_clear(struct token_issued *t);

#endif
