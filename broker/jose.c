/*
 * jose.c: JWS compact serialisation on OpenSSL 3 and jansson. The broker
 * signs and accepts its own tokens with ES256 only; keys registered by
 * clients (private_key_jwt, DPoP) may also be Ed25519 (EdDSA).
 *
 * The verifier trusts nothing in a token until the signature has been
 * checked, and even the unsigned header may only name things we already
 * hold: the algorithm must be the one pinned by the key, the key is found
 * by kid among keys loaded at start-up, and no member that could point
 * elsewhere (jku, x5u, jwk, crit, ...) is tolerated. Every failure maps to
 * one enum jose_result so audit rows can say why a token was refused
 * without ever carrying the token.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "b64.h"
#include "jose.h"

/* Size of one P-256 coordinate or scalar, and of a raw R||S signature. */
#define JOSE_P256_LEN		32
#define JOSE_ES256_SIG_LEN	64
/* An Ed25519 public key and signature (RFC 8032). */
#define JOSE_ED25519_LEN	32
#define JOSE_EDDSA_SIG_LEN	64

/*
 * The order n of the P-256 group (SEC 2, FIPS 186-4 D.1.2.3), big-endian.
 * r and s are compared with it as fixed-width big-endian numbers, which
 * memcmp orders correctly.
 */
static const unsigned char jose_p256_order[JOSE_P256_LEN] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51
};

static const char jose_typ_prefix[] = "application/";

/*
 * True if v is a JSON string whose bytes are exactly s. The length is
 * compared too, so a string with an embedded NUL cannot match a prefix.
 */
static int
jose_json_str_is(const json_t *v, const char *s)
{
	size_t n = strlen(s);

	return json_is_string(v) && json_string_length(v) == n &&
	    memcmp(json_string_value(v), s, n) == 0;
}

/*
 * ASCII-only case-insensitive equality of two byte strings. strcasecmp is
 * avoided because it follows the locale, and a media type is ASCII.
 */
static int
jose_ascii_caseeq(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i;
	unsigned char ca, cb;

	if (alen != blen)
		return 0;
	for (i = 0; i < alen; i++) {
		ca = (unsigned char)a[i];
		cb = (unsigned char)b[i];
		if (ca >= 'A' && ca <= 'Z')
			ca = (unsigned char)(ca - 'A' + 'a');
		if (cb >= 'A' && cb <= 'Z')
			cb = (unsigned char)(cb - 'A' + 'a');
		if (ca != cb)
			return 0;
	}
	return 1;
}

/*
 * Skip one optional case-insensitive "application/" prefix, as RFC 7515
 * §4.1.9 lets producers omit it. Updates *len and returns the rest.
 */
static const char *
jose_typ_strip(const char *s, size_t *len)
{
	size_t plen = sizeof(jose_typ_prefix) - 1;

	if (*len >= plen && jose_ascii_caseeq(s, plen, jose_typ_prefix, plen)) {
		*len -= plen;
		return s + plen;
	}
	return s;
}

/* True if the header typ (n bytes) names the same media type as want. */
static int
jose_typ_matches(const char *got, size_t n, const char *want)
{
	size_t wn = strlen(want);

	got = jose_typ_strip(got, &n);
	want = jose_typ_strip(want, &wn);
	return jose_ascii_caseeq(got, n, want, wn);
}

/* True if a 32-byte big-endian scalar lies in [1, n-1]. */
static int
jose_scalar_ok(const unsigned char *v)
{
	size_t i;
	unsigned char any = 0;

	for (i = 0; i < JOSE_P256_LEN; i++)
		any |= v[i];
	return any != 0 && memcmp(v, jose_p256_order, JOSE_P256_LEN) < 0;
}

/*
 * True if pkey is an EC key on the named curve P-256. A key with explicit
 * curve parameters has no group name and is refused even if the numbers
 * happen to be those of P-256; other 256-bit curves (secp256k1, brainpool)
 * are refused by name.
 */
static int
jose_is_p256(const EVP_PKEY *pkey)
{
	char group[64];
	size_t glen = 0;

	if (!EVP_PKEY_is_a(pkey, "EC"))
		return 0;
	if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
	    group, sizeof(group), &glen) != 1)
		return 0;
	return glen == strlen("prime256v1") && strcmp(group, "prime256v1") == 0;
}

/*
 * Write the affine coordinates of the public point of pkey as 32-byte
 * big-endian numbers, left-padded with zeros as RFC 7518 §6.2.1.2 requires.
 * Returns 0 or -1.
 */
static int
jose_ec_xy(const EVP_PKEY *pkey, unsigned char *x, unsigned char *y)
{
	BIGNUM *bx = NULL, *by = NULL;
	int rc = -1;

	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1)
		goto out;
	if (BN_bn2binpad(bx, x, JOSE_P256_LEN) != JOSE_P256_LEN ||
	    BN_bn2binpad(by, y, JOSE_P256_LEN) != JOSE_P256_LEN)
		goto out;
	rc = 0;
out:
	BN_free(bx);
	BN_free(by);
	return rc;
}

/*
 * The raw 32-byte public key of an Ed25519 pkey as base64url (RFC 8037
 * §2 "x"), into xs (JOSE_KID_LEN + 1 bytes). Returns 0 or -1.
 */
static int
jose_ed25519_x(const EVP_PKEY *pkey, char *xs)
{
	unsigned char raw[JOSE_ED25519_LEN];
	size_t n = sizeof(raw);

	if (EVP_PKEY_get_raw_public_key(pkey, raw, &n) != 1 ||
	    n != JOSE_ED25519_LEN)
		return -1;
	b64_url_encode(raw, n, xs);
	return 0;
}

/* The RFC 7638 thumbprint of an Ed25519 key (RFC 8037 §2 members). */
static int
jose_ed25519_kid(const EVP_PKEY *pkey, char *kid)
{
	unsigned char md[32];
	char xs[JOSE_KID_LEN + 1], tp[96];
	int n;

	if (jose_ed25519_x(pkey, xs) != 0)
		return -1;
	n = snprintf(tp, sizeof(tp),
	    "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", xs);
	if (n < 0 || (size_t)n >= sizeof(tp))
		return -1;
	if (EVP_Digest(tp, (size_t)n, md, NULL, EVP_sha256(), NULL) != 1)
		return -1;
	b64_url_encode(md, sizeof(md), kid);
	return 0;
}

int
jose_key_init(struct jose_key *k, EVP_PKEY *pkey)
{
	unsigned char x[JOSE_P256_LEN], y[JOSE_P256_LEN], md[32];
	char xs[JOSE_KID_LEN + 1], ys[JOSE_KID_LEN + 1], tp[160];
	int n, rc = -1;

	if (k == NULL)
		goto out;
	memset(k, 0, sizeof(*k));
	if (pkey != NULL && EVP_PKEY_is_a(pkey, "ED25519")) {
		if (jose_ed25519_kid(pkey, k->kid) != 0)
			goto out;
		k->alg = JOSE_ALG_EDDSA;
		k->pkey = pkey;
		pkey = NULL;
		rc = 0;
		goto out;
	}
	if (pkey == NULL || !jose_is_p256(pkey))
		goto out;
	if (jose_ec_xy(pkey, x, y) != 0)
		goto out;
	b64_url_encode(x, sizeof(x), xs);
	b64_url_encode(y, sizeof(y), ys);

	/*
	 * RFC 7638 §3.2: the required members only, in lexicographic order,
	 * with no whitespace. The values are base64url, so no escaping is
	 * ever needed and a fixed format is exact.
	 */
	n = snprintf(tp, sizeof(tp),
	    "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
	    xs, ys);
	if (n < 0 || (size_t)n >= sizeof(tp))
		goto out;
	if (EVP_Digest(tp, (size_t)n, md, NULL, EVP_sha256(), NULL) != 1)
		goto out;
	b64_url_encode(md, sizeof(md), k->kid);
	k->alg = JOSE_ALG_ES256;
	k->pkey = pkey;
	pkey = NULL;
	rc = 0;
out:
	EVP_PKEY_free(pkey);
	if (rc != 0)
		ERR_clear_error();
	return rc;
}

void
jose_key_clear(struct jose_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	/* The pointer was the only link to private material; drop it too. */
	OPENSSL_cleanse(k, sizeof(*k));
}

/*
 * jose_key_from_jwk for kty OKP: Ed25519 only (X25519 is a key agreement
 * key and Ed448 is not offered), with the same refusals as for EC.
 */
static int
jose_okp_from_jwk(struct jose_key *k, const json_t *jwk)
{
	unsigned char raw[JOSE_ED25519_LEN];
	EVP_PKEY *pkey = NULL;
	const json_t *v, *kid;
	size_t n;
	int rc = -1;

	if (!jose_json_str_is(json_object_get(jwk, "crv"), "Ed25519"))
		goto out;
	if (json_object_get(jwk, "d") != NULL)
		goto out;
	v = json_object_get(jwk, "alg");
	if (v != NULL && !jose_json_str_is(v, "EdDSA"))
		goto out;
	v = json_object_get(jwk, "use");
	if (v != NULL && !jose_json_str_is(v, "sig"))
		goto out;
	kid = json_object_get(jwk, "kid");
	if (kid != NULL && !json_is_string(kid))
		goto out;
	v = json_object_get(jwk, "x");
	if (!json_is_string(v) || b64_url_decode(json_string_value(v),
	    json_string_length(v), raw, sizeof(raw), &n) != 0 ||
	    n != JOSE_ED25519_LEN)
		goto out;
	pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, raw, n);
	if (pkey == NULL)
		goto out;
	rc = jose_key_init(k, pkey);
	pkey = NULL;
	if (rc != 0)
		goto out;
	if (kid != NULL && !jose_json_str_is(kid, k->kid)) {
		jose_key_clear(k);
		rc = -1;
	}
out:
	EVP_PKEY_free(pkey);
	return rc;
}

int
jose_key_from_jwk(struct jose_key *k, const json_t *jwk)
{
	unsigned char pub[1 + 2 * JOSE_P256_LEN];
	char group[] = "prime256v1";
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *pctx = NULL, *cctx = NULL;
	EVP_PKEY *pkey = NULL;
	const json_t *v, *kid;
	size_t n;
	int rc = -1;

	if (k == NULL)
		goto out;
	memset(k, 0, sizeof(*k));
	if (!json_is_object(jwk))
		goto out;
	if (jose_json_str_is(json_object_get(jwk, "kty"), "OKP")) {
		rc = jose_okp_from_jwk(k, jwk);
		goto out;
	}
	if (!jose_json_str_is(json_object_get(jwk, "kty"), "EC") ||
	    !jose_json_str_is(json_object_get(jwk, "crv"), "P-256"))
		goto out;
	/*
	 * A private JWK handed in where a public one was expected is a
	 * configuration mistake that would leave a signing key in a
	 * verifier's memory; refuse it instead of silently dropping d.
	 */
	if (json_object_get(jwk, "d") != NULL)
		goto out;
	v = json_object_get(jwk, "alg");
	if (v != NULL && !jose_json_str_is(v, "ES256"))
		goto out;
	/* A key published for encryption must not verify signatures. */
	v = json_object_get(jwk, "use");
	if (v != NULL && !jose_json_str_is(v, "sig"))
		goto out;
	kid = json_object_get(jwk, "kid");
	if (kid != NULL && !json_is_string(kid))
		goto out;

	/* Exactly 32 bytes each: RFC 7518 §6.2.1.2 forbids short forms. */
	pub[0] = POINT_CONVERSION_UNCOMPRESSED;
	v = json_object_get(jwk, "x");
	if (!json_is_string(v) || b64_url_decode(json_string_value(v),
	    json_string_length(v), pub + 1, JOSE_P256_LEN, &n) != 0 ||
	    n != JOSE_P256_LEN)
		goto out;
	v = json_object_get(jwk, "y");
	if (!json_is_string(v) || b64_url_decode(json_string_value(v),
	    json_string_length(v), pub + 1 + JOSE_P256_LEN, JOSE_P256_LEN,
	    &n) != 0 || n != JOSE_P256_LEN)
		goto out;

	/*
	 * OpenSSL 3.0 imports an EC public key only as the encoded point;
	 * EC_PUB_X and EC_PUB_Y are export-only parameters.
	 */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
	    group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
	    pub, sizeof(pub));
	params[2] = OSSL_PARAM_construct_end();
	if ((pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL)
		goto out;
	if (EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	/*
	 * The import already decodes the point, but the explicit full check
	 * (on the curve, not infinity, coordinates below p, order n) does not
	 * depend on how a given OpenSSL release implements that decoding.
	 */
	if ((cctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL)
		goto out;
	if (EVP_PKEY_public_check(cctx) != 1)
		goto out;

	rc = jose_key_init(k, pkey);
	pkey = NULL;
	if (rc != 0)
		goto out;
	if (kid != NULL && !jose_json_str_is(kid, k->kid)) {
		/* The JWK names a different key than it contains. */
		jose_key_clear(k);
		rc = -1;
		goto out;
	}
out:
	EVP_PKEY_CTX_free(cctx);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pkey);
	if (rc != 0)
		ERR_clear_error();
	return rc;
}

json_t *
jose_key_public_jwk(const struct jose_key *k)
{
	unsigned char x[JOSE_P256_LEN], y[JOSE_P256_LEN];
	char xs[JOSE_KID_LEN + 1], ys[JOSE_KID_LEN + 1];

	if (k != NULL && k->pkey != NULL && k->alg == JOSE_ALG_EDDSA) {
		if (jose_ed25519_x(k->pkey, xs) != 0) {
			ERR_clear_error();
			return NULL;
		}
		return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "OKP",
		    "crv", "Ed25519", "x", xs, "kid", k->kid, "alg", "EdDSA",
		    "use", "sig");
	}
	if (k == NULL || k->pkey == NULL || k->alg != JOSE_ALG_ES256)
		return NULL;
	if (jose_ec_xy(k->pkey, x, y) != 0) {
		ERR_clear_error();
		return NULL;
	}
	b64_url_encode(x, sizeof(x), xs);
	b64_url_encode(y, sizeof(y), ys);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
	    "kty", "EC", "crv", "P-256", "x", xs, "y", ys, "kid", k->kid,
	    "alg", "ES256", "use", "sig");
}

/*
 * Sign n bytes at msg with pkey (ECDSA with SHA-256) and write the raw
 * R||S form to raw. Returns 0 or -1.
 */
static int
jose_es256_sign(EVP_PKEY *pkey, const char *msg, size_t n,
    unsigned char *raw)
{
	EVP_MD_CTX *mctx = NULL;
	ECDSA_SIG *esig = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	const BIGNUM *r, *s;
	size_t derlen = 0;
	int rc = -1;

	if ((mctx = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (EVP_DigestSignInit_ex(mctx, NULL, "SHA256", NULL, NULL, pkey,
	    NULL) != 1)
		goto out;
	if (EVP_DigestSign(mctx, NULL, &derlen, (const unsigned char *)msg,
	    n) != 1)
		goto out;
	if ((der = OPENSSL_malloc(derlen)) == NULL)
		goto out;
	if (EVP_DigestSign(mctx, der, &derlen, (const unsigned char *)msg,
	    n) != 1)
		goto out;
	/* OpenSSL emits DER (RFC 3279); JWS wants fixed-width R||S. */
	p = der;
	if ((esig = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) == NULL)
		goto out;
	ECDSA_SIG_get0(esig, &r, &s);
	if (BN_bn2binpad(r, raw, JOSE_P256_LEN) != JOSE_P256_LEN ||
	    BN_bn2binpad(s, raw + JOSE_P256_LEN, JOSE_P256_LEN) !=
	    JOSE_P256_LEN)
		goto out;
	rc = 0;
out:
	ECDSA_SIG_free(esig);
	OPENSSL_free(der);
	EVP_MD_CTX_free(mctx);
	if (rc != 0)
		ERR_clear_error();
	return rc;
}

char *
jose_sign(const struct jose_key *k, const char *typ, const char *payload,
    size_t len)
{
	unsigned char raw[JOSE_ES256_SIG_LEN];
	json_t *hobj = NULL;
	char *htxt = NULL, *tok = NULL, *ret = NULL;
	size_t hlen, total, o;

	if (k == NULL || k->pkey == NULL || k->alg != JOSE_ALG_ES256 ||
	    typ == NULL || (payload == NULL && len != 0))
		goto out;
	/*
	 * A token our own verifier would refuse as too large is never
	 * minted; checking len first also keeps the sums below from
	 * wrapping.
	 */
	if (len > JOSE_MAX_TOKEN)
		goto out;

	/*
	 * jansson keeps insertion order and escapes typ as JSON needs, so
	 * the header is exactly {"alg":"ES256","typ":...,"kid":...}. It
	 * also refuses a typ that is not valid UTF-8.
	 */
	hobj = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", typ,
	    "kid", k->kid);
	if (hobj == NULL)
		goto out;
	if ((htxt = json_dumps(hobj, JSON_COMPACT)) == NULL)
		goto out;
	hlen = strlen(htxt);
	if (hlen > JOSE_MAX_TOKEN)
		goto out;
	total = b64_url_encoded_len(hlen) + 1 + b64_url_encoded_len(len) +
	    1 + b64_url_encoded_len(sizeof(raw));
	if (total > JOSE_MAX_TOKEN)
		goto out;
	if ((tok = malloc(total + 1)) == NULL)
		goto out;

	o = b64_url_encode((const unsigned char *)htxt, hlen, tok);
	tok[o++] = '.';
	o += b64_url_encode((const unsigned char *)payload, len, tok + o);
	if (jose_es256_sign(k->pkey, tok, o, raw) != 0)
		goto out;
	tok[o++] = '.';
	b64_url_encode(raw, sizeof(raw), tok + o);
	ret = tok;
	tok = NULL;
out:
	free(tok);
	free(htxt);
	json_decref(hobj);
	return ret;
}

const char *
jose_result_name(enum jose_result r)
{
	switch (r) {
	case JOSE_OK:
		return "ok";
	case JOSE_E_MALFORMED:
		return "malformed";
	case JOSE_E_TOO_LARGE:
		return "too_large";
	case JOSE_E_HEADER:
		return "bad_header";
	case JOSE_E_KID:
		return "unknown_kid";
	case JOSE_E_SIGNATURE:
		return "bad_signature";
	}
	return "unknown";
}

/*
 * Verify the raw R||S signature sig over msg with pkey. r and s are
 * range-checked first so that the all-zero and r = n forgeries are refused
 * here, whatever a given OpenSSL release would make of them.
 */
static int
jose_es256_verify(EVP_PKEY *pkey, const char *msg, size_t n,
    const unsigned char *sig)
{
	EVP_MD_CTX *mctx = NULL;
	ECDSA_SIG *esig = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	int derlen, ok = 0;

	if (!jose_scalar_ok(sig) || !jose_scalar_ok(sig + JOSE_P256_LEN))
		goto out;
	if ((r = BN_bin2bn(sig, JOSE_P256_LEN, NULL)) == NULL ||
	    (s = BN_bin2bn(sig + JOSE_P256_LEN, JOSE_P256_LEN, NULL)) == NULL)
		goto out;
	if ((esig = ECDSA_SIG_new()) == NULL)
		goto out;
	if (ECDSA_SIG_set0(esig, r, s) != 1)
		goto out;
	/* esig owns r and s now. */
	r = s = NULL;
	if ((derlen = i2d_ECDSA_SIG(esig, &der)) <= 0)
		goto out;
	if ((mctx = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (EVP_DigestVerifyInit_ex(mctx, NULL, "SHA256", NULL, NULL, pkey,
	    NULL) != 1)
		goto out;
	ok = EVP_DigestVerify(mctx, der, (size_t)derlen,
	    (const unsigned char *)msg, n) == 1;
out:
	EVP_MD_CTX_free(mctx);
	OPENSSL_free(der);
	ECDSA_SIG_free(esig);
	BN_free(r);
	BN_free(s);
	/* A refused signature leaves errors that are nobody else's concern. */
	if (!ok)
		ERR_clear_error();
	return ok;
}

/*
 * Split a compact JWS into its decoded segments inside buf (cap bytes,
 * at least three quarters of JOSE_MAX_TOKEN), with the same structural
 * rules for every token we read (jose_verify, jose_peek, jose_verify_key):
 * three non-empty strict base64url segments, no NUL.
 * *signing_len is the length of the signing input (header "." payload).
 */
static enum jose_result
jose_split(const char *token, size_t len, unsigned char *buf, size_t cap,
    size_t *hdrlen, size_t *paylen, size_t *siglen, size_t *signing_len)
{
	const char *d1, *d2, *seg;
	size_t hlen, plen, slen;

	if (len > JOSE_MAX_TOKEN)
		return JOSE_E_TOO_LARGE;
	if (token == NULL || memchr(token, '\0', len) != NULL)
		return JOSE_E_MALFORMED;
	if ((d1 = memchr(token, '.', len)) == NULL)
		return JOSE_E_MALFORMED;
	hlen = (size_t)(d1 - token);
	seg = d1 + 1;
	if ((d2 = memchr(seg, '.', len - hlen - 1)) == NULL)
		return JOSE_E_MALFORMED;
	plen = (size_t)(d2 - seg);
	slen = len - hlen - 1 - plen - 1;
	if (memchr(d2 + 1, '.', slen) != NULL)
		return JOSE_E_MALFORMED;
	if (hlen == 0 || plen == 0 || slen == 0)
		return JOSE_E_MALFORMED;
	if (b64_url_decode(token, hlen, buf, cap, hdrlen) != 0)
		return JOSE_E_MALFORMED;
	if (b64_url_decode(seg, plen, buf + *hdrlen, cap - *hdrlen,
	    paylen) != 0)
		return JOSE_E_MALFORMED;
	if (b64_url_decode(d2 + 1, slen, buf + *hdrlen + *paylen,
	    cap - *hdrlen - *paylen, siglen) != 0)
		return JOSE_E_MALFORMED;
	*signing_len = hlen + 1 + plen;
	return JOSE_OK;
}

enum jose_result
jose_verify(const char *token, size_t len, const char *typ,
    const struct jose_key *const *keys, size_t nkeys, json_t **claims)
{
	/*
	 * The three decoded segments together never exceed three quarters
	 * of JOSE_MAX_TOKEN, so one fixed buffer holds them all and decoding
	 * cannot fail for lack of memory.
	 */
	unsigned char buf[JOSE_MAX_TOKEN / 4 * 3];
	unsigned char *hdr, *pay, *sig;
	size_t hdrlen, paylen, siglen, signing_len, i;
	const json_t *alg, *kid, *htyp;
	const struct jose_key *key = NULL;
	json_t *header = NULL, *payload = NULL;
	enum jose_result rc = JOSE_E_MALFORMED;

	if (claims != NULL)
		*claims = NULL;
	/* Structure: exactly three non-empty strict base64url segments. */
	rc = jose_split(token, len, buf, sizeof(buf), &hdrlen, &paylen, &siglen,
	    &signing_len);
	if (rc != JOSE_OK)
		goto out;
	hdr = buf;
	pay = hdr + hdrlen;
	sig = pay + paylen;
	rc = JOSE_E_MALFORMED;

	/*
	 * Header: a JSON object without duplicate members (so a second
	 * "alg" cannot hide behind the first) holding exactly alg, kid and
	 * typ as strings. Anything else, crit included, is refused: we
	 * understand no extensions, and members such as jku, x5u or jwk
	 * would ask us to trust keys from the token itself.
	 */
	header = json_loadb((const char *)hdr, hdrlen, JSON_REJECT_DUPLICATES,
	    NULL);
	if (!json_is_object(header))
		goto out;
	rc = JOSE_E_HEADER;
	if (json_object_size(header) != 3)
		goto out;
	alg = json_object_get(header, "alg");
	kid = json_object_get(header, "kid");
	htyp = json_object_get(header, "typ");
	if (!json_is_string(alg) || !json_is_string(kid) ||
	    !json_is_string(htyp))
		goto out;
	/*
	 * Only one algorithm exists, compared byte for byte: "none", "HS256"
	 * and "es256" all end here, before any key is even looked at.
	 */
	if (!jose_json_str_is(alg, "ES256"))
		goto out;
	if (typ == NULL || !jose_typ_matches(json_string_value(htyp),
	    json_string_length(htyp), typ))
		goto out;

	/* The kid is only ever a lookup key into what we already hold. */
	rc = JOSE_E_KID;
	for (i = 0; keys != NULL && i < nkeys; i++) {
		if (keys[i] != NULL && keys[i]->pkey != NULL &&
		    jose_json_str_is(kid, keys[i]->kid)) {
			key = keys[i];
			break;
		}
	}
	if (key == NULL)
		goto out;
	/* The key, not the token, decides the algorithm. */
	rc = JOSE_E_HEADER;
	if (key->alg != JOSE_ALG_ES256)
		goto out;

	rc = JOSE_E_SIGNATURE;
	if (siglen != JOSE_ES256_SIG_LEN)
		goto out;
	if (!jose_es256_verify(key->pkey, token, signing_len, sig))
		goto out;

	/* Only now is the payload worth parsing. */
	rc = JOSE_E_MALFORMED;
	payload = json_loadb((const char *)pay, paylen, JSON_REJECT_DUPLICATES,
	    NULL);
	if (!json_is_object(payload))
		goto out;
	if (claims != NULL) {
		*claims = payload;
		payload = NULL;
	}
	rc = JOSE_OK;
out:
	json_decref(payload);
	json_decref(header);
	return rc;
}

const char *
jose_alg_name(enum jose_alg alg)
{
	return alg == JOSE_ALG_EDDSA ? "EdDSA" : "ES256";
}

int
jose_key_from_pem(struct jose_key *k, const char *pem, size_t len)
{
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *cctx = NULL;
	int rc = -1;

	if (k == NULL)
		goto out;
	memset(k, 0, sizeof(*k));
	if (pem == NULL || len == 0 || len > JOSE_MAX_TOKEN)
		goto out;
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
		goto out;
	/*
	 * PEM_read_bio_PUBKEY reads only "BEGIN PUBLIC KEY", so a private
	 * key handed over by mistake is refused rather than reduced to its
	 * public half (and kept in memory).
	 */
	if ((pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL)
		goto out;
	if (EVP_PKEY_is_a(pkey, "EC")) {
		if ((cctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) ==
		    NULL || EVP_PKEY_public_check(cctx) != 1)
			goto out;
	} else if (!EVP_PKEY_is_a(pkey, "ED25519"))
		goto out;
	rc = jose_key_init(k, pkey);
	pkey = NULL;
out:
	EVP_PKEY_CTX_free(cctx);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	if (rc != 0)
		ERR_clear_error();
	return rc;
}

int
jose_jwk_thumbprint(const json_t *jwk, char *out)
{
	static const char *const ec[] = { "crv", "kty", "x", "y", NULL };
	static const char *const okp[] = { "crv", "kty", "x", NULL };
	static const char *const rsa[] = { "e", "kty", "n", NULL };
	const char *const *members;
	unsigned char md[32];
	json_t *req = NULL;
	const json_t *v;
	char *text = NULL;
	size_t i;
	int rc = -1;

	if (!json_is_object(jwk) || out == NULL)
		goto out;
	v = json_object_get(jwk, "kty");
	if (jose_json_str_is(v, "EC"))
		members = ec;
	else if (jose_json_str_is(v, "OKP"))
		members = okp;
	else if (jose_json_str_is(v, "RSA"))
		members = rsa;
	else
		goto out;
	if ((req = json_object()) == NULL)
		goto out;
	for (i = 0; members[i] != NULL; i++) {
		v = json_object_get(jwk, members[i]);
		if (!json_is_string(v) || json_string_length(v) > JOSE_MAX_TOKEN)
			goto out;
		if (json_object_set(req, members[i], (json_t *)v) != 0)
			goto out;
	}
	/*
	 * RFC 7638 §3.2: required members only, sorted by name, no
	 * whitespace. jansson writes exactly that with these flags; the
	 * values of a valid key are base64url or fixed names and need no
	 * escaping, and any other value hashes to a thumbprint no valid key
	 * has.
	 */
	if ((text = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		goto out;
	if (EVP_Digest(text, strlen(text), md, NULL, EVP_sha256(), NULL) != 1)
		goto out;
	b64_url_encode(md, sizeof(md), out);
	rc = 0;
out:
	free(text);
	json_decref(req);
	return rc;
}

enum jose_result
jose_peek(const char *token, size_t len, json_t **header, json_t **claims)
{
	unsigned char buf[JOSE_MAX_TOKEN / 4 * 3];
	size_t hdrlen, paylen, siglen, signing;
	json_t *h = NULL, *c = NULL;
	enum jose_result rc;

	if (header != NULL)
		*header = NULL;
	if (claims != NULL)
		*claims = NULL;
	rc = jose_split(token, len, buf, sizeof(buf), &hdrlen, &paylen,
	    &siglen, &signing);
	if (rc != JOSE_OK)
		return rc;
	h = json_loadb((const char *)buf, hdrlen, JSON_REJECT_DUPLICATES, NULL);
	c = json_loadb((const char *)buf + hdrlen, paylen,
	    JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(h) || !json_is_object(c)) {
		json_decref(h);
		json_decref(c);
		return JOSE_E_MALFORMED;
	}
	if (header != NULL)
		*header = h;
	else
		json_decref(h);
	if (claims != NULL)
		*claims = c;
	else
		json_decref(c);
	return JOSE_OK;
}

/* Verify a 64-byte Ed25519 signature over msg (RFC 8032, pure EdDSA). */
static int
jose_eddsa_verify(EVP_PKEY *pkey, const char *msg, size_t n,
    const unsigned char *sig)
{
	EVP_MD_CTX *mctx = NULL;
	int ok = 0;

	if ((mctx = EVP_MD_CTX_new()) == NULL)
		goto out;
	/* Ed25519 hashes internally: no digest is named. */
	if (EVP_DigestVerifyInit_ex(mctx, NULL, NULL, NULL, NULL, pkey,
	    NULL) != 1)
		goto out;
	ok = EVP_DigestVerify(mctx, sig, JOSE_EDDSA_SIG_LEN,
	    (const unsigned char *)msg, n) == 1;
out:
	EVP_MD_CTX_free(mctx);
	if (!ok)
		ERR_clear_error();
	return ok;
}

enum jose_result
jose_verify_key(const char *token, size_t len, const struct jose_key *key,
    const char *const *allowed, json_t **header, json_t **claims)
{
	unsigned char buf[JOSE_MAX_TOKEN / 4 * 3];
	size_t hdrlen, paylen, siglen, signing, i;
	const char *name;
	json_t *hobj = NULL, *payload = NULL, *v;
	enum jose_result rc;
	int ok;

	if (header != NULL)
		*header = NULL;
	if (claims != NULL)
		*claims = NULL;
	rc = jose_split(token, len, buf, sizeof(buf), &hdrlen, &paylen,
	    &siglen, &signing);
	if (rc != JOSE_OK)
		goto out;
	rc = JOSE_E_MALFORMED;
	hobj = json_loadb((const char *)buf, hdrlen, JSON_REJECT_DUPLICATES,
	    NULL);
	if (!json_is_object(hobj))
		goto out;

	/*
	 * Every member must be one the caller understands: crit, jku, x5u
	 * and the like are refused rather than ignored.
	 */
	rc = JOSE_E_HEADER;
	json_object_foreach(hobj, name, v) {
		for (i = 0; allowed != NULL && allowed[i] != NULL; i++)
			if (strcmp(allowed[i], name) == 0)
				break;
		if (allowed == NULL || allowed[i] == NULL)
			goto out;
	}
	/* The registered key, not the token, decides the algorithm. */
	if (key == NULL || key->pkey == NULL ||
	    !jose_json_str_is(json_object_get(hobj, "alg"),
	    jose_alg_name(key->alg)))
		goto out;

	rc = JOSE_E_SIGNATURE;
	if (key->alg == JOSE_ALG_ES256) {
		if (siglen != JOSE_ES256_SIG_LEN)
			goto out;
		ok = jose_es256_verify(key->pkey, token, signing,
		    buf + hdrlen + paylen);
	} else {
		if (siglen != JOSE_EDDSA_SIG_LEN)
			goto out;
		ok = jose_eddsa_verify(key->pkey, token, signing,
		    buf + hdrlen + paylen);
	}
	if (!ok)
		goto out;

	rc = JOSE_E_MALFORMED;
	payload = json_loadb((const char *)buf + hdrlen, paylen,
	    JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(payload))
		goto out;
	if (header != NULL) {
		*header = hobj;
		hobj = NULL;
	}
	if (claims != NULL) {
		*claims = payload;
		payload = NULL;
	}
	rc = JOSE_OK;
out:
	json_decref(payload);
	json_decref(hobj);
	return rc;
}
