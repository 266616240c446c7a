/*
 * jose.h: the small JOSE module (JWS compact serialisation; the broker's
 * own tokens are ES256 only, client keys may also be Ed25519).
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
	JOSE_ALG_ES256 = 1,
	JOSE_ALG_EDDSA = 2	/* Ed25519 only: client keys, never our tokens */
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
 * public, or an Ed25519 key) and fill k, computing kid as the RFC 7638
 * thumbprint of the public key and pinning alg to ES256 or EdDSA. Returns 0,
 * or -1 for any other key type (pkey is then freed too).
 */
int jose_key_init(struct jose_key *k, EVP_PKEY *pkey);

/* jose_key_clear(k): free k->pkey and zero k. NULL-safe. */
void jose_key_clear(struct jose_key *k);

/*
 * jose_key_from_jwk(k, jwk): build a public verification key from a JWK
 * object (kty EC, crv P-256, x, y, alg if present ES256; or kty OKP, crv
 * Ed25519, x, alg if present EdDSA; a "d" member is refused so a private JWK
 * is never accepted by mistake). Checks the point
 * is on the curve. kid is always the computed thumbprint; if the JWK carries
 * a kid that differs, that is an error. Returns 0 or -1.
 */
int jose_key_from_jwk(struct jose_key *k, const json_t *jwk);

/*
 * jose_key_public_jwk(k): new JSON object {kty, crv, x, y, kid, alg, use}
 * (no y for Ed25519) for the public half of k. Caller owns the result (json_decref). NULL on
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

/* The JWS "alg" name of an algorithm: "ES256" or "EdDSA". */
const char *jose_alg_name(enum jose_alg alg);

/*
 * jose_key_from_pem(k, pem, len): a public verification key from a PEM
 * SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----") holding a P-256 or
 * Ed25519 key. Private keys and every other type are refused. Returns 0
 * or -1.
 */
int jose_key_from_pem(struct jose_key *k, const char *pem, size_t len);

/*
 * jose_jwk_thumbprint(jwk, out): the RFC 7638 SHA-256 thumbprint of a JWK
 * object, base64url, into out (JOSE_KID_LEN + 1 bytes). Only the required
 * members of its kty are hashed (EC: crv kty x y; OKP: crv kty x; RSA: e kty
 * n), so other members cannot change it. The key itself is not validated
 * here. Returns 0, or -1 if kty is unknown or a required member is not a
 * string.
 */
int jose_jwk_thumbprint(const json_t *jwk, char *out);

/*
 * jose_peek(token, len, header, claims): the protected header and payload
 * of a compact JWS, decoded but NOT verified, for a caller that must read
 * them to find the key (a DPoP proof carries its key in "jwk"; a client
 * assertion names its client in "iss"). Nothing read this way may be
 * trusted before jose_verify_key succeeds. Same structural checks as
 * jose_verify; duplicate members are rejected. header and claims are each
 * optional; on JOSE_OK they are new objects the caller decrefs, otherwise
 * NULL.
 */
enum jose_result jose_peek(const char *token, size_t len, json_t **header,
    json_t **claims);

/*
 * jose_verify_key(token, len, key, allowed, header, claims): verify a
 * compact JWS against one key. The header's alg must be exactly the
 * algorithm pinned by key ("none", HS256 and the other asymmetric algorithm
 * all fail with JOSE_E_HEADER), and every header member must be named in
 * allowed (a NULL-terminated list that should include "alg"). No typ or kid
 * check is made here: the caller reads them from *header. The signature is
 * 64 bytes in both algorithms (raw R||S for ES256, with 0 < r, s < n).
 * On JOSE_OK, *header and *claims (each optional) are new objects owned by
 * the caller; on error both are NULL.
 */
enum jose_result jose_verify_key(const char *token, size_t len,
    const struct jose_key *key, const char *const *allowed, json_t **header,
    json_t **claims);

#endif
