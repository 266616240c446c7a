/*
 * dpop.h: DPoP proofs of possession (RFC 9449) at the broker: checking a
 * proof, the per-scope policy that makes one mandatory, and the key an
 * approval request is bound to.
 *
 * A token issued with a proof carries cnf.jkt, the RFC 7638 thumbprint of
 * the client's key, so a stolen copy is useless without the private key.
 */
#ifndef DPOP_H
#define DPOP_H

#include <stdint.h>

#include "countersign.h"
#include "jose.h"
#include "scopes.h"

/* A proof's iat may differ from our clock by this much (seconds). */
#define DPOP_IAT_WINDOW		60

/*
 * dpop_check(proof, htm, htu, access_token, jkt, err): check one DPoP proof
 * JWT for a request with method htm to URL htu (scheme, host, port and
 * path; no query or fragment). The header must hold exactly typ
 * "dpop+jwt", alg ES256 or EdDSA and a public jwk (no "d"), which must
 * verify the signature; the payload's htm must equal htm, its htu (with
 * any query or fragment removed) must equal htu, iat must lie within
 * DPOP_IAT_WINDOW of now, and jti (1..256 characters) must not have been
 * seen with this key before (remembered in PostgreSQL). If access_token is
 * not NULL, ath must be base64url(SHA-256(access_token)). On CS_OK jkt
 * (JOSE_KID_LEN + 1 bytes) receives the key's thumbprint. Errors:
 * CS_ERR_INVALID_DPOP_PROOF with a description naming the failed rule
 * (never the proof), CS_ERR_UNAVAILABLE if the replay memory cannot answer.
 */
enum cs_err dpop_check(const char *proof, const char *htm, const char *htu,
    const char *access_token, char *jkt, struct cs_error *err);

/*
 * dpop_required(scopes, read_path, required): *required = 1 if any of the
 * scopes demands DPoP: its require_dpop is true, or unset on a write scope
 * (the default). Unknown scopes are not counted: the caller refuses them
 * with invalid_scope right after. With read_path set
 * (client_credentials, which mints read scopes only) only read scopes are
 * considered, so a write scope there still gets invalid_scope.
 * CS_ERR_UNAVAILABLE on database trouble.
 */
enum cs_err dpop_required(const struct scope_list *scopes, int read_path,
    int *required);

/*
 * dpop_cache_init(ttl_ms) / dpop_cache_free(): the cache of dpop_required's
 * read-path answers (ttl_ms 0: none). dpop_required works without it.
 */
int dpop_cache_init(int ttl_ms);
void dpop_cache_free(void);

/* dpop_cache_forget(scopes): drop the cached answer for this scope list. */
void dpop_cache_forget(const struct scope_list *scopes);

/*
 * dpop_bind_request(id, jkt): record that approval request id was made with
 * the key jkt. Done once, right after the request is created and before
 * its id is returned, so nobody can collect it in between.
 */
enum cs_err dpop_bind_request(const char *id, const char *jkt);

/*
 * dpop_request_binding(id, agent_id, jkt, required): the key approval
 * request id (of agent_id) is bound to, into jkt ("" if none), and whether
 * its scopes demand DPoP. CS_ERR_NOT_FOUND if there is no such request of
 * that agent (the caller lets the CIBA code answer that case).
 */
enum cs_err dpop_request_binding(const char *id, int64_t agent_id,
    char *jkt, int *required);

#endif
