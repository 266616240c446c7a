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

/* Outcomes of cs_verify_dpop_proof (RFC 9449 §4.3 and §7.1). */
enum cs_dpop_result {
	CS_DPOP_OK = 0,
	CS_DPOP_NOT_BOUND,	/* the token has no cnf.jkt: not a DPoP token */
	CS_DPOP_MALFORMED,	/* missing, over 8 KB, not a compact JWS */
	CS_DPOP_BAD_HEADER,	/* typ not dpop+jwt, alg not ES256/EdDSA, jwk
				   missing or private, other members */
	CS_DPOP_BAD_SIGNATURE,	/* not signed by the jwk in its header */
	CS_DPOP_WRONG_KEY,	/* jwk thumbprint differs from cnf.jkt */
	CS_DPOP_WRONG_HTM,
	CS_DPOP_WRONG_HTU,	/* compared without query and fragment */
	CS_DPOP_BAD_IAT,	/* missing, or outside now +- window */
	CS_DPOP_BAD_ATH,	/* missing, or not base64url(SHA-256(token)) */
	CS_DPOP_MISSING_JTI
};

/*
 * cs_verify_dpop_proof(c, token, proof, htm, htu, now, window, jti, jticap):
 * check the DPoP proof a client sent (its DPoP header) with token, whose
 * claims c came from cs_verify. The proof's header must hold exactly typ
 * "dpop+jwt", alg ES256 or EdDSA and a public jwk whose RFC 7638
 * thumbprint equals c->cnf_jkt and which verifies the signature; its htm
 * must equal htm (the request method), its htu without query and fragment
 * must equal htu (scheme, host, port and path of the request), iat must
 * lie within window seconds of now, and ath must be the base64url SHA-256
 * of token. On CS_DPOP_OK, if jti is not NULL, the proof's jti is copied
 * there (NUL-terminated, truncated to jticap - 1 bytes): the library keeps
 * no state, so the caller must refuse a jti it has seen within the last
 * 2 * window seconds for this key (a replay). Nothing is allocated.
 */
enum cs_dpop_result cs_verify_dpop_proof(const struct cs_claims *c,
    const char *token, const char *proof, const char *htm, const char *htu,
    int64_t now, int window, char *jti, size_t jticap);

/* cs_dpop_result_name(r): a short stable name, e.g. "bad_ath". */
const char *cs_dpop_result_name(enum cs_dpop_result r);

#ifdef __cplusplus
}
#endif

#endif
