/*
 * jose.h: the small JOSE module (JWS compact serialisation, ES256 only).
 *
 * Why our own: Debian's libjwt cannot emit or accept "typ: at+jwt", takes the
 * algorithm from the token header and re-parses keys on every call (see
 * docs/decisions/0001-own-jose-module.md). Here the algorithm is pinned by the
 * key, the header may only carry alg, typ and kid, keys are parsed once and
 * looked up by kid in memory, and every size is capped before parsing.
 *
 * Nothing in this module checks claims (exp, aud, ...): that is policy and
 * lives in tokens.c and the verify library.
 */
#ifndef JOSE_H
#define JOSE_H

#include <stddef.h>
#include <jansson.h>
#include <openssl/evp.h>

/* Largest compact JWS accepted by jose_verify (checked before any parsing). */
#define JOSE_MAX_TOKEN		8192
/* RFC 7638 thumbprint: base64url of SHA-256, 43 characters. */
#define JOSE_KID_LEN		43

enum jose_alg {
	JOSE_ALG_ES256 = 1
};

/*
 * A key pinned to one algorithm. pkey is owned by the struct; it may hold
 * the private half (signing) or only the public half (verification).
 */
struct jose_key {
	char kid[JOSE_KID_LEN + 1];
	enum jose_alg alg;
	EVP_PKEY *pkey;
};

/*
 * jose_key_init(k, pkey): take ownership of pkey (an EC P-256 key, private or
 * public) and fill k, computing kid as the RFC 7638 thumbprint of the public
 * key. Returns 0, or -1 if pkey is not a P-256 key (pkey is then freed too).
 */
int jose_key_init(struct jose_key *k, EVP_PKEY *pkey);

/* jose_key_clear(k): free k->pkey and zero k. NULL-safe. */
void jose_key_clear(struct jose_key *k);

/*
 * jose_key_from_jwk(k, jwk): build a public verification key from a JWK
 * object (kty EC, crv P-256, x, y; alg if present must be ES256; a "d" member
 * is refused so a private JWK is never accepted by mistake). Checks the point
 * is on the curve. kid is always the computed thumbprint; if the JWK carries
 * a kid that differs, that is an error. Returns 0 or -1.
 */
int jose_key_from_jwk(struct jose_key *k, const json_t *jwk);

/*
 * jose_key_public_jwk(k): new JSON object {kty, crv, x, y, kid, alg, use}
 * for the public half of k. Caller owns the result (json_decref). NULL on
 * allocation failure.
 */
json_t *jose_key_public_jwk(const struct jose_key *k);

/*
 * jose_sign(k, typ, payload, len): the compact JWS of payload (JSON text,
 * len bytes) under header {"alg":"ES256","typ":typ,"kid":k->kid}. The
 * signature is the 64-byte raw R||S form of RFC 7518 §3.4. Returns a new
 * NUL-terminated string the caller frees, or NULL.
 */
char *jose_sign(const struct jose_key *k, const char *typ,
    const char *payload, size_t len);

enum jose_result {
	JOSE_OK = 0,
	JOSE_E_MALFORMED,	/* not three strict base64url segments, bad JSON */
	JOSE_E_TOO_LARGE,	/* over JOSE_MAX_TOKEN */
	JOSE_E_HEADER,		/* alg/typ wrong, crit or any other member */
	JOSE_E_KID,		/* no key with that kid */
	JOSE_E_SIGNATURE	/* signature does not verify */
};

/* Short stable name for a result, e.g. "bad_signature", for audit rows. */
const char *jose_result_name(enum jose_result r);

/*
 * jose_verify(token, len, typ, keys, nkeys, claims): verify a compact JWS.
 * The header must be a JSON object (duplicate members rejected) with exactly
 * alg, kid and typ (typ compared case-insensitively, with an optional
 * "application/" prefix, per RFC 7515 §4.1.9); alg must equal the algorithm
 * of the key found by kid among keys[0..nkeys). The signature must be exactly
 * 64 bytes with 0 < r, s < n. On JOSE_OK and claims != NULL, *claims is the
 * payload object (duplicates rejected), owned by the caller. On error
 * *claims is left NULL.
 */
enum jose_result jose_verify(const char *token, size_t len, const char *typ,
    const struct jose_key *const *keys, size_t nkeys, json_t **claims);

#endif
