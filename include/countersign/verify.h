/*
 * countersign/verify.h: verify Countersign access tokens in a C service.
 *
 * Tokens are RFC 9068 JWT access tokens signed ES256. A service loads the
 * broker's JWKS once (and again when it sees an unknown kid or on a
 * schedule), then verifies each token locally: signature with a key pinned
 * to ES256, header typ "at+jwt", issuer, audience, expiry and not-before
 * with a small leeway, and the presence of every required claim.
 *
 *     struct cs_verifier *v = cs_verifier_new("https://auth.example.com",
 *         "https://forum.example");
 *     if (v == NULL || cs_verifier_load_jwks_file(v, "jwks.json") != 0)
 *             errx(1, "cannot load keys");
 *     struct cs_claims c;
 *     enum cs_verify_result r = cs_verify(v, token, &c);
 *     if (r != CS_VERIFY_OK)
 *             return deny(cs_verify_result_name(r));
 *     if (!cs_claims_has_scope(&c, "forum:post"))
 *             return deny("insufficient_scope");
 *     serve(c.sub, c.jti);
 *     cs_claims_clear(&c);
 *     cs_verifier_free(v);
 *
 * Link with -lcountersign-verify -lcrypto -ljansson. Thread safety: a
 * verifier may be used by many threads at once for cs_verify; loading keys
 * must not run concurrently with anything else on the same verifier.
 */
#ifndef COUNTERSIGN_VERIFY_H
#define COUNTERSIGN_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct cs_verifier;

enum cs_verify_result {
	CS_VERIFY_OK = 0,
	CS_VERIFY_MALFORMED,		/* not a compact JWS, bad encoding or JSON */
	CS_VERIFY_TOO_LARGE,		/* over 8 KB */
	CS_VERIFY_BAD_HEADER,		/* alg other than ES256, typ not at+jwt, extra members */
	CS_VERIFY_UNKNOWN_KEY,		/* kid not in the loaded JWKS */
	CS_VERIFY_BAD_SIGNATURE,
	CS_VERIFY_MISSING_CLAIM,	/* iss, sub, client_id, aud, exp, iat, jti, scope */
	CS_VERIFY_WRONG_ISSUER,
	CS_VERIFY_WRONG_AUDIENCE,
	CS_VERIFY_EXPIRED,
	CS_VERIFY_NOT_YET_VALID,	/* nbf or iat in the future beyond the leeway */
	CS_VERIFY_INTERNAL		/* out of memory; treat as a refusal */
};

/* The claims of a verified token. Strings are owned by the struct. */
struct cs_claims {
	char *iss;
	char *sub;
	char *client_id;
	char *aud;
	char *scope;		/* space-separated */
	char *jti;
	int64_t iat;
	int64_t nbf;		/* = iat when absent */
	int64_t exp;
	char *approval_id;	/* stepped-up tokens only, else NULL */
	char *cnf_jkt;		/* sender-constrained tokens only, else NULL */
	char *json;		/* the whole payload, compact JSON */
};

/*
 * cs_verifier_new(issuer, audience): a verifier that accepts only tokens
 * from issuer (exact match) for audience (exact match; NULL accepts any
 * audience, for a broker-side check that does its own audience test).
 * Leeway starts at 30 seconds. Returns NULL on allocation failure.
 */
struct cs_verifier *cs_verifier_new(const char *issuer, const char *audience);

/* cs_verifier_free(v): free v and its keys. NULL-safe. */
void cs_verifier_free(struct cs_verifier *v);

/* cs_verifier_set_leeway(v, seconds): 0-300 seconds of clock skew. */
void cs_verifier_set_leeway(struct cs_verifier *v, int seconds);

/*
 * cs_verifier_load_jwks(v, json, len): replace the verifier's keys with the
 * EC P-256 keys of a JWKS document (other key types are skipped; a key
 * whose kid is not its RFC 7638 thumbprint, or that carries private
 * material, makes the whole load fail). Returns the number of keys loaded
 * (> 0), or -1 leaving the old keys in place.
 */
int cs_verifier_load_jwks(struct cs_verifier *v, const char *json, size_t len);

/* cs_verifier_load_jwks_file(v, path): as above, from a file (<= 1 MB). */
int cs_verifier_load_jwks_file(struct cs_verifier *v, const char *path);

/*
 * cs_verify(v, token, out): verify token (NUL-terminated) and on
 * CS_VERIFY_OK fill out, which the caller releases with cs_claims_clear.
 * On any other result out is zeroed and holds nothing.
 */
enum cs_verify_result cs_verify(const struct cs_verifier *v,
    const char *token, struct cs_claims *out);

/* cs_verify_at(v, token, now, out): as cs_verify with a given clock. */
enum cs_verify_result cs_verify_at(const struct cs_verifier *v,
    const char *token, int64_t now, struct cs_claims *out);

/* cs_claims_clear(c): free what c holds and zero it. NULL-safe. */
void cs_claims_clear(struct cs_claims *c);

/* cs_claims_has_scope(c, scope): 1 if scope is one of c's scopes. */
int cs_claims_has_scope(const struct cs_claims *c, const char *scope);

/* cs_verify_result_name(r): a short stable name, e.g. "expired". */
const char *cs_verify_result_name(enum cs_verify_result r);

#ifdef __cplusplus
}
#endif

#endif
