/*
 * test_jose.c: unit tests for the JOSE module.
 *
 * In the spirit of signify's regress suite, most of this file is forgeries
 * that must fail, each with the specific reason jose_verify should give, so
 * that a refactoring that turns "bad_header" into "bad_signature" (still a
 * refusal, but no longer for the right reason) is noticed too. Forged
 * headers are signed with the real key: a refusal must come from the rule
 * under test, not from a signature that happens to be wrong.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "b64.h"
#include "check.h"
#include "jose.h"

#define TYP		"at+jwt"
#define PAYLOAD		"{\"sub\":\"agent-1\",\"scope\":\"read\"}"

/* Key a signs almost everything; key b is the "other" legitimate key. */
static struct jose_key ka, kb;
static const struct jose_key *keys[2];

/* Set when jose_verify leaves *claims non-NULL on an error. */
static int claims_not_cleared;

/* The P-256 order n, big-endian, for the r = n / s = n forgeries. */
static const unsigned char p256_n[32] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51
};

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

static char *
xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

/* New string: a, b and c concatenated (b and c may be ""). */
static char *
cat3(const char *a, const char *b, const char *c)
{
	size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
	char *s = xmalloc(na + nb + nc + 1);

	memcpy(s, a, na);
	memcpy(s + na, b, nb);
	memcpy(s + na + nb, c, nc + 1);
	return s;
}

/* New string: tmpl with every "KID" replaced by kid. */
static char *
subst_kid(const char *tmpl, const char *kid)
{
	size_t klen = strlen(kid), n = 0;
	const char *p;
	char *out, *o;

	for (p = tmpl; (p = strstr(p, "KID")) != NULL; p += 3)
		n++;
	out = xmalloc(strlen(tmpl) + n * klen + 1);
	o = out;
	for (p = tmpl; *p != '\0';) {
		if (strncmp(p, "KID", 3) == 0) {
			memcpy(o, kid, klen);
			o += klen;
			p += 3;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return out;
}

static char *
b64u(const void *data, size_t n)
{
	char *s = xmalloc(b64_url_encoded_len(n) + 1);

	b64_url_encode(data, n, s);
	return s;
}

/*
 * base64url through OpenSSL's EVP_EncodeBlock instead of b64.c, so that
 * the thumbprint check below does not trust the code it is checking.
 */
static char *
indep_b64u(const unsigned char *data, size_t n)
{
	char *s = xmalloc((n + 2) / 3 * 4 + 1);
	int len, i;

	len = EVP_EncodeBlock((unsigned char *)s, data, (int)n);
	while (len > 0 && s[len - 1] == '=')
		len--;
	s[len] = '\0';
	for (i = 0; i < len; i++) {
		if (s[i] == '+')
			s[i] = '-';
		else if (s[i] == '/')
			s[i] = '_';
	}
	return s;
}

/* RFC 7638 thumbprint computed without jose.c or b64.c. */
static char *
indep_thumbprint(const EVP_PKEY *pkey)
{
	unsigned char pub[65], md[32];
	size_t publen = 0;
	char *x, *y, *js, *tp;
	int n;

	if (EVP_PKEY_get_octet_string_param(pkey,
	    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, sizeof(pub), &publen) != 1 ||
	    publen != 65 || pub[0] != 0x04)
		return NULL;
	x = indep_b64u(pub + 1, 32);
	y = indep_b64u(pub + 33, 32);
	js = xmalloc(200);
	n = snprintf(js, 200,
	    "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
	EVP_Digest(js, (size_t)n, md, NULL, EVP_sha256(), NULL);
	tp = indep_b64u(md, sizeof(md));
	free(x);
	free(y);
	free(js);
	return tp;
}

/* The test's own ES256 signer: DER from OpenSSL, turned into R||S. */
static void
raw_sign(EVP_PKEY *pkey, const char *msg, size_t n, unsigned char *raw)
{
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	unsigned char der[80];
	const unsigned char *p = der;
	size_t derlen = sizeof(der);
	ECDSA_SIG *sig;
	const BIGNUM *r, *s;

	if (mctx == NULL ||
	    EVP_DigestSignInit_ex(mctx, NULL, "SHA256", NULL, NULL, pkey,
	    NULL) != 1 ||
	    EVP_DigestSign(mctx, der, &derlen, (const unsigned char *)msg,
	    n) != 1 ||
	    (sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) == NULL) {
		fprintf(stderr, "raw_sign failed\n");
		exit(2);
	}
	ECDSA_SIG_get0(sig, &r, &s);
	BN_bn2binpad(r, raw, 32);
	BN_bn2binpad(s, raw + 32, 32);
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(mctx);
}

/* Independent verification of a raw signature, for checking jose_sign. */
static int
raw_verify(EVP_PKEY *pkey, const char *msg, size_t n,
    const unsigned char *raw)
{
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	ECDSA_SIG *sig = ECDSA_SIG_new();
	unsigned char *der = NULL;
	int derlen, ok = 0;

	if (mctx == NULL || sig == NULL)
		goto out;
	ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL),
	    BN_bin2bn(raw + 32, 32, NULL));
	derlen = i2d_ECDSA_SIG(sig, &der);
	if (derlen <= 0)
		goto out;
	ok = EVP_DigestVerifyInit_ex(mctx, NULL, "SHA256", NULL, NULL, pkey,
	    NULL) == 1 && EVP_DigestVerify(mctx, der, (size_t)derlen,
	    (const unsigned char *)msg, n) == 1;
out:
	OPENSSL_free(der);
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(mctx);
	return ok;
}

/* New "b64(h).b64(p)" for header and payload texts. */
static char *
signing_input(const char *h, const char *p)
{
	char *hb = b64u(h, strlen(h)), *pb = b64u(p, strlen(p));
	char *si = cat3(hb, ".", pb);

	free(hb);
	free(pb);
	return si;
}

/* New token with header h, payload p and the given signature bytes. */
static char *
forge_sig(const char *h, const char *p, const unsigned char *sig, size_t n)
{
	char *si = signing_input(h, p), *sb = b64u(sig, n);
	char *tok = cat3(si, ".", sb);

	free(si);
	free(sb);
	return tok;
}

/* New token with header h and payload p, validly signed by pkey. */
static char *
forge(const char *h, const char *p, EVP_PKEY *pkey)
{
	char *si = signing_input(h, p), *sb, *tok;
	unsigned char raw[64];

	raw_sign(pkey, si, strlen(si), raw);
	sb = b64u(raw, sizeof(raw));
	tok = cat3(si, ".", sb);
	free(si);
	free(sb);
	return tok;
}

/* jose_verify against keys a and b, checking the claims contract. */
static enum jose_result
vfy_n(const char *tok, size_t len, const char *typ)
{
	json_t *claims = json_null();	/* non-NULL, must be reset */
	enum jose_result r;

	r = jose_verify(tok, len, typ, keys, 2, &claims);
	if (r == JOSE_OK) {
		if (!json_is_object(claims))
			claims_not_cleared = 1;
		json_decref(claims);
	} else if (claims != NULL)
		claims_not_cleared = 1;
	return r;
}

static enum jose_result
vfy(const char *tok)
{
	return vfy_n(tok, strlen(tok), TYP);
}

static void
test_result_names(void)
{
	CHECK_STR(jose_result_name(JOSE_OK), "ok");
	CHECK_STR(jose_result_name(JOSE_E_MALFORMED), "malformed");
	CHECK_STR(jose_result_name(JOSE_E_TOO_LARGE), "too_large");
	CHECK_STR(jose_result_name(JOSE_E_HEADER), "bad_header");
	CHECK_STR(jose_result_name(JOSE_E_KID), "unknown_kid");
	CHECK_STR(jose_result_name(JOSE_E_SIGNATURE), "bad_signature");
	CHECK(jose_result_name((enum jose_result)99) != NULL);
}

static void
test_key_init(void)
{
	struct jose_key k;
	EVP_PKEY *pk;
	char *tp;

	CHECK(strlen(ka.kid) == JOSE_KID_LEN);
	CHECK(strlen(kb.kid) == JOSE_KID_LEN);
	CHECK(strcmp(ka.kid, kb.kid) != 0);
	CHECK(ka.alg == JOSE_ALG_ES256);
	tp = indep_thumbprint(ka.pkey);
	CHECK_STR(ka.kid, tp);
	free(tp);
	tp = indep_thumbprint(kb.pkey);
	CHECK_STR(kb.kid, tp);
	free(tp);

	/*
	 * Other curves, including the 256-bit secp256k1 whose coordinates
	 * have the same size, and other key types but Ed25519 are refused. The key is
	 * consumed either way, which ASan's leak check confirms.
	 */
	memset(&k, 0xa5, sizeof(k));
	CHECK(jose_key_init(&k, EVP_EC_gen("P-384")) == -1);
	CHECK(k.pkey == NULL);
	CHECK(jose_key_init(&k, EVP_EC_gen("secp256k1")) == -1);
	/* Ed25519 is accepted, pinned to EdDSA (client keys only). */
	CHECK(jose_key_init(&k, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) ==
	    0);
	CHECK(k.alg == JOSE_ALG_EDDSA);
	CHECK(jose_sign(&k, TYP, PAYLOAD, strlen(PAYLOAD)) == NULL);
	jose_key_clear(&k);
	CHECK(jose_key_init(&k, EVP_PKEY_Q_keygen(NULL, NULL, "X25519")) == -1);
	CHECK(jose_key_init(&k, NULL) == -1);
	CHECK(jose_key_init(NULL, EVP_EC_gen("P-256")) == -1);

	/* A fresh key gets a fresh kid; clearing is idempotent. */
	pk = EVP_EC_gen("P-256");
	CHECK(jose_key_init(&k, pk) == 0);
	CHECK(strcmp(k.kid, ka.kid) != 0 && strlen(k.kid) == JOSE_KID_LEN);
	jose_key_clear(&k);
	CHECK(k.pkey == NULL && k.kid[0] == '\0');
	jose_key_clear(&k);
	jose_key_clear(NULL);
}

/*
 * Known answer: the thumbprint of the P-256 base point G (the public key
 * of d = 1), computed once with Python's hashlib over the RFC 7638 text.
 * RFC 7638's own example is an RSA key, so it cannot be used here.
 */
static void
test_thumbprint_kat(void)
{
	struct jose_key k;
	json_t *jwk;

	jwk = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
	    "x", "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
	    "y", "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU");
	CHECK(jose_key_from_jwk(&k, jwk) == 0);
	CHECK_STR(k.kid, "xx0BcA-wMohw8atYDJOe6peGModklG2wRHBlXHMvl0M");
	jose_key_clear(&k);
	json_decref(jwk);
}

/*
 * About one key in 128 has a coordinate below 2^248. Its JWK and
 * thumbprint must still use the 32-byte zero-padded form.
 */
static void
test_short_coordinate(void)
{
	unsigned char pub[65];
	size_t publen;
	struct jose_key k;
	EVP_PKEY *pk;
	json_t *jwk;
	char *tp;
	int i, found = 0;

	for (i = 0; i < 5000 && !found; i++) {
		pk = EVP_EC_gen("P-256");
		if (pk == NULL)
			break;
		if (EVP_PKEY_get_octet_string_param(pk,
		    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, sizeof(pub),
		    &publen) == 1 && (pub[1] == 0 || pub[33] == 0))
			found = 1;
		else
			EVP_PKEY_free(pk);
	}
	CHECK(found);
	if (!found)
		return;
	tp = indep_thumbprint(pk);
	CHECK(jose_key_init(&k, pk) == 0);
	CHECK_STR(k.kid, tp);
	jwk = jose_key_public_jwk(&k);
	CHECK(strlen(json_string_value(json_object_get(jwk, "x"))) == 43);
	CHECK(strlen(json_string_value(json_object_get(jwk, "y"))) == 43);
	json_decref(jwk);
	jose_key_clear(&k);
	free(tp);
}

static void
test_sign_round_trip(void)
{
	char *tok, *d1, *d2, *hdr, *want;
	unsigned char dec[256], raw[64];
	size_t n;
	json_t *claims = NULL, *expect;
	const struct jose_key *only_a[1] = { &ka };

	tok = jose_sign(&ka, TYP, PAYLOAD, strlen(PAYLOAD));
	CHECK(tok != NULL);
	if (tok == NULL)
		return;
	CHECK(jose_verify(tok, strlen(tok), TYP, keys, 2, &claims) == JOSE_OK);
	expect = json_loads(PAYLOAD, 0, NULL);
	CHECK(claims != NULL && json_equal(claims, expect));
	json_decref(claims);
	json_decref(expect);
	CHECK(jose_verify(tok, strlen(tok), TYP, only_a, 1, NULL) == JOSE_OK);
	/* Key order and NULL slots do not matter. */
	{
		const struct jose_key *rev[3] = { NULL, &kb, &ka };

		CHECK(jose_verify(tok, strlen(tok), TYP, rev, 3, NULL) ==
		    JOSE_OK);
	}

	/* The header is exactly the documented one, byte for byte. */
	d1 = strchr(tok, '.');
	d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;
	CHECK(d1 != NULL && d2 != NULL && strchr(d2 + 1, '.') == NULL);
	if (d1 == NULL || d2 == NULL)
		goto out;
	CHECK(b64_url_decode(tok, (size_t)(d1 - tok), dec, sizeof(dec) - 1,
	    &n) == 0);
	dec[n] = '\0';
	hdr = (char *)dec;
	want = subst_kid("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    ka.kid);
	CHECK_STR(hdr, want);
	free(want);
	CHECK(b64_url_decode(d1 + 1, (size_t)(d2 - d1 - 1), dec, sizeof(dec),
	    &n) == 0);
	CHECK(n == strlen(PAYLOAD) && memcmp(dec, PAYLOAD, n) == 0);

	/* The signature is raw R||S that OpenSSL itself accepts. */
	CHECK(b64_url_decode(d2 + 1, strlen(d2 + 1), raw, sizeof(raw), &n) ==
	    0 && n == 64);
	CHECK(raw_verify(ka.pkey, tok, (size_t)(d2 - tok), raw));
	CHECK(!raw_verify(kb.pkey, tok, (size_t)(d2 - tok), raw));
out:
	free(tok);
}

static void
test_sign_args(void)
{
	char *tok, *big;
	size_t n, len;
	int hit = 0;

	CHECK(jose_sign(NULL, TYP, "{}", 2) == NULL);
	CHECK(jose_sign(&ka, NULL, "{}", 2) == NULL);
	CHECK(jose_sign(&ka, TYP, NULL, 2) == NULL);
	/* A typ that is not UTF-8 cannot be put into JSON. */
	CHECK(jose_sign(&ka, "\xff\xfe", "{}", 2) == NULL);

	/* A typ needing JSON escapes survives the round trip. */
	tok = jose_sign(&ka, "a\"b\\c", "{}", 2);
	CHECK(tok != NULL && vfy_n(tok, strlen(tok), "a\"b\\c") == JOSE_OK);
	free(tok);

	/* Signing whatever bytes: verify parses the payload afterwards. */
	tok = jose_sign(&ka, TYP, "[1]", 3);
	CHECK(tok != NULL && vfy(tok) == JOSE_E_MALFORMED);
	free(tok);
	tok = jose_sign(&ka, TYP, "", 0);
	CHECK(tok != NULL && vfy(tok) == JOSE_E_MALFORMED);
	free(tok);

	/*
	 * Size: tokens up to JOSE_MAX_TOKEN verify, and anything bigger is
	 * never minted. Find a payload length whose token is exactly at
	 * the cap, which base64 granularity allows for three in four
	 * lengths.
	 */
	big = xmalloc(JOSE_MAX_TOKEN + 16);
	for (n = 5900; n < 6100; n++) {
		memset(big, 'a', n);
		memcpy(big, "{\"x\":\"", 6);
		memcpy(big + n - 2, "\"}", 2);
		tok = jose_sign(&ka, TYP, big, n);
		if (tok == NULL) {
			/* Must be because it would be too large. */
			break;
		}
		len = strlen(tok);
		CHECK(len <= JOSE_MAX_TOKEN);
		if (len == JOSE_MAX_TOKEN) {
			hit = 1;
			CHECK(vfy(tok) == JOSE_OK);
		}
		free(tok);
	}
	CHECK(hit);
	CHECK(n < 6100);
	memset(big, 'a', JOSE_MAX_TOKEN + 1);
	CHECK(jose_sign(&ka, TYP, big, JOSE_MAX_TOKEN + 1) == NULL);
	free(big);
	/* An absurd length must not wrap any size computation. */
	CHECK(jose_sign(&ka, TYP, "{}", SIZE_MAX) == NULL);
}

struct forgery {
	const char *name;
	const char *header;	/* "KID" is replaced by key a's kid */
	const char *payload;
	enum jose_result want;
};

/* Headers and payloads validly signed by key a; only the rule can fail. */
static const struct forgery forgeries[] = {
	/* Baselines: the genuine shape and legitimate typ spellings pass. */
	{ "genuine", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_OK },
	{ "member order", "{\"kid\":\"KID\",\"typ\":\"at+jwt\",\"alg\":\"ES256\"}",
	    PAYLOAD, JOSE_OK },
	{ "JSON whitespace",
	    "{ \"alg\" : \"ES256\",\n\"typ\":\"at+jwt\" ,\"kid\":\"KID\" }",
	    PAYLOAD, JOSE_OK },
	{ "typ application/at+jwt",
	    "{\"alg\":\"ES256\",\"typ\":\"application/at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_OK },
	{ "typ AT+JWT", "{\"alg\":\"ES256\",\"typ\":\"AT+JWT\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_OK },
	{ "typ Application/At+Jwt",
	    "{\"alg\":\"ES256\",\"typ\":\"Application/At+Jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_OK },
	{ "typ escaped", "{\"alg\":\"ES256\",\"typ\":\"at\\u002bjwt\","
	    "\"kid\":\"KID\"}", PAYLOAD, JOSE_OK },
	{ "empty claims", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "{}", JOSE_OK },

	/* alg: only "ES256", byte for byte. */
	{ "alg none", "{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg None", "{\"alg\":\"None\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg NONE", "{\"alg\":\"NONE\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg HS256", "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg es256", "{\"alg\":\"es256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg ES384", "{\"alg\":\"ES384\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg RS256", "{\"alg\":\"RS256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg ES256 space",
	    "{\"alg\":\"ES256 \",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg empty", "{\"alg\":\"\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg array", "{\"alg\":[\"ES256\"],\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg null", "{\"alg\":null,\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "alg missing", "{\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "ALG member", "{\"ALG\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },

	/* Any fourth member, however harmless it looks. */
	{ "crit", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"crit\":[\"exp\"]}", PAYLOAD, JOSE_E_HEADER },
	{ "crit empty", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"crit\":[]}", PAYLOAD, JOSE_E_HEADER },
	{ "jku", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"jku\":\"https://evil.example/jwks\"}", PAYLOAD, JOSE_E_HEADER },
	{ "x5u", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"x5u\":\"https://evil.example/cert\"}", PAYLOAD, JOSE_E_HEADER },
	{ "jwk", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "x5c", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"x5c\":[\"MIIB\"]}", PAYLOAD, JOSE_E_HEADER },
	{ "x5t", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"x5t\":\"AAAA\"}", PAYLOAD, JOSE_E_HEADER },
	{ "b64", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"b64\":false}", PAYLOAD, JOSE_E_HEADER },
	{ "cty", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"cty\":\"JWT\"}", PAYLOAD, JOSE_E_HEADER },
	{ "zip", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"zip\":\"DEF\"}", PAYLOAD, JOSE_E_HEADER },
	{ "empty-named member", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"KID\",\"\":1}", PAYLOAD, JOSE_E_HEADER },

	/* typ: one media type, compared the RFC 7515 §4.1.9 way. */
	{ "typ missing", "{\"alg\":\"ES256\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "typ JWT", "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "typ dpop+jwt", "{\"alg\":\"ES256\",\"typ\":\"dpop+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "typ application/jwt",
	    "{\"alg\":\"ES256\",\"typ\":\"application/jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "typ empty", "{\"alg\":\"ES256\",\"typ\":\"\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "typ application/", "{\"alg\":\"ES256\",\"typ\":\"application/\","
	    "\"kid\":\"KID\"}", PAYLOAD, JOSE_E_HEADER },
	{ "typ double prefix", "{\"alg\":\"ES256\","
	    "\"typ\":\"application/application/at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "typ xapplication/", "{\"alg\":\"ES256\","
	    "\"typ\":\"xapplication/at+jwt\",\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "typ trailing space", "{\"alg\":\"ES256\",\"typ\":\"at+jwt \","
	    "\"kid\":\"KID\"}", PAYLOAD, JOSE_E_HEADER },
	{ "typ prefix only", "{\"alg\":\"ES256\",\"typ\":\"at+jw\","
	    "\"kid\":\"KID\"}", PAYLOAD, JOSE_E_HEADER },
	{ "typ number", "{\"alg\":\"ES256\",\"typ\":1,\"kid\":\"KID\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "typ NUL", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\\u0000\","
	    "\"kid\":\"KID\"}", PAYLOAD, JOSE_E_MALFORMED },

	/* kid: a lookup key into memory and nothing more. */
	{ "kid missing", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\"}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "kid unknown", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
	    PAYLOAD, JOSE_E_KID },
	{ "kid path", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"../../etc/passwd\"}", PAYLOAD, JOSE_E_KID },
	{ "kid SQL", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"x' OR '1'='1\"}", PAYLOAD, JOSE_E_KID },
	{ "kid empty", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"\"}",
	    PAYLOAD, JOSE_E_KID },
	{ "kid plus suffix", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"KIDx\"}", PAYLOAD, JOSE_E_KID },
	{ "kid NUL suffix", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"KID\\u0000x\"}", PAYLOAD, JOSE_E_MALFORMED },
	{ "kid number", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":1}",
	    PAYLOAD, JOSE_E_HEADER },
	{ "kid null", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":null}",
	    PAYLOAD, JOSE_E_HEADER },

	/* Duplicate members: which one would "win" is parser-dependent. */
	{ "dup alg", "{\"alg\":\"none\",\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"KID\"}", PAYLOAD, JOSE_E_MALFORMED },
	{ "dup alg same", "{\"alg\":\"ES256\",\"alg\":\"ES256\","
	    "\"typ\":\"at+jwt\",\"kid\":\"KID\"}", PAYLOAD, JOSE_E_MALFORMED },
	{ "dup kid", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\","
	    "\"kid\":\"../x\"}", PAYLOAD, JOSE_E_MALFORMED },

	/* The header is not a JSON object. */
	{ "header array", "[\"ES256\",\"at+jwt\",\"KID\"]",
	    PAYLOAD, JOSE_E_MALFORMED },
	{ "header string", "\"ES256\"", PAYLOAD, JOSE_E_MALFORMED },
	{ "header number", "1", PAYLOAD, JOSE_E_MALFORMED },
	{ "header null", "null", PAYLOAD, JOSE_E_MALFORMED },
	{ "header junk", "alg=ES256", PAYLOAD, JOSE_E_MALFORMED },
	{ "header trailing", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"KID\"}x", PAYLOAD, JOSE_E_MALFORMED },
	{ "header two objects", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"KID\"}{}", PAYLOAD, JOSE_E_MALFORMED },
	{ "header unterminated", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"KID\"", PAYLOAD, JOSE_E_MALFORMED },

	/* The payload, parsed only after the signature checked out. */
	{ "payload array", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "[{\"sub\":\"agent-1\"}]", JOSE_E_MALFORMED },
	{ "payload dup", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "{\"sub\":\"agent-1\",\"sub\":\"admin\"}", JOSE_E_MALFORMED },
	{ "payload nested dup",
	    "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "{\"cnf\":{\"jkt\":\"a\",\"jkt\":\"b\"}}", JOSE_E_MALFORMED },
	{ "payload string", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "\"hello\"", JOSE_E_MALFORMED },
	{ "payload null", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "null", JOSE_E_MALFORMED },
	{ "payload truncated",
	    "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "{\"sub\":\"agent-1\"", JOSE_E_MALFORMED },
	{ "payload trailing",
	    "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "{\"sub\":\"agent-1\"} {}", JOSE_E_MALFORMED },
	{ "payload NUL", "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    "{\"sub\":\"a\\u0000b\"}", JOSE_E_MALFORMED },
};

static void
test_forgery_table(void)
{
	size_t i;
	char *h, *tok;
	enum jose_result r;
	int ok = 1;

	for (i = 0; i < sizeof(forgeries) / sizeof(forgeries[0]); i++) {
		h = subst_kid(forgeries[i].header, ka.kid);
		tok = forge(h, forgeries[i].payload, ka.pkey);
		r = vfy(tok);
		if (r != forgeries[i].want) {
			fprintf(stderr, "FAIL forgery \"%s\": got %s, want %s\n",
			    forgeries[i].name, jose_result_name(r),
			    jose_result_name(forgeries[i].want));
			ok = 0;
		}
		free(tok);
		free(h);
	}
	CHECK(ok);
	CHECK(i > 60);
}

/* alg confusion: HMAC keyed with the public key's PEM text. */
static void
test_hs256_confusion(void)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL, *h, *si, *sb, *tok;
	long pemlen;
	unsigned char mac[32];
	size_t maclen = 0;

	CHECK(bio != NULL && PEM_write_bio_PUBKEY(bio, ka.pkey) == 1);
	pemlen = BIO_get_mem_data(bio, &pem);
	CHECK(pemlen > 0);

	h = subst_kid("{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    ka.kid);
	si = signing_input(h, PAYLOAD);
	CHECK(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem,
	    (size_t)pemlen, (const unsigned char *)si, strlen(si), mac,
	    sizeof(mac), &maclen) != NULL && maclen == 32);
	sb = b64u(mac, maclen);
	tok = cat3(si, ".", sb);
	CHECK(vfy(tok) == JOSE_E_HEADER);
	free(tok);
	free(sb);
	free(si);
	free(h);

	/* Same MAC under an honest-looking ES256 header: wrong length. */
	h = subst_kid("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    ka.kid);
	si = signing_input(h, PAYLOAD);
	EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem, (size_t)pemlen,
	    (const unsigned char *)si, strlen(si), mac, sizeof(mac), &maclen);
	sb = b64u(mac, maclen);
	tok = cat3(si, ".", sb);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);
	free(sb);
	free(si);
	free(h);
	BIO_free(bio);
}

/* alg none in its usual shapes: no signature segment at all. */
static void
test_alg_none(void)
{
	char *h, *si, *tok;

	h = subst_kid("{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    ka.kid);
	si = signing_input(h, PAYLOAD);
	tok = cat3(si, ".", "");
	CHECK(vfy(tok) == JOSE_E_MALFORMED);
	CHECK(vfy(si) == JOSE_E_MALFORMED);
	free(tok);
	/* Any non-empty junk signature is still refused for the header. */
	tok = cat3(si, ".", "AA");
	CHECK(vfy(tok) == JOSE_E_HEADER);
	free(tok);
	free(si);
	free(h);
}

static void
test_signature_values(void)
{
	unsigned char raw[64], good[64];
	unsigned char der[80], *dp;
	char *h, *si, *tok;
	ECDSA_SIG *es;
	BIGNUM *n, *s, *ns;
	int derlen;

	h = subst_kid("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    ka.kid);
	si = signing_input(h, PAYLOAD);
	raw_sign(ka.pkey, si, strlen(si), good);

	/* The genuine signature, as a baseline. */
	tok = forge_sig(h, PAYLOAD, good, 64);
	CHECK(vfy(tok) == JOSE_OK);
	free(tok);

	/* r = s = 0: the "psychic signature" (CVE-2022-21449). */
	memset(raw, 0, sizeof(raw));
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);

	/* r = n and s = n are zero mod n in disguise. */
	memcpy(raw, p256_n, 32);
	memcpy(raw + 32, good + 32, 32);
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);
	memcpy(raw, good, 32);
	memcpy(raw + 32, p256_n, 32);
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);
	memcpy(raw, p256_n, 32);
	memcpy(raw + 32, p256_n, 32);
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);

	/* All ones (above n), r = 0 with good s, and r = s = 1. */
	memset(raw, 0xff, sizeof(raw));
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);
	memset(raw, 0, 32);
	memcpy(raw + 32, good + 32, 32);
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);
	memset(raw, 0, sizeof(raw));
	raw[31] = raw[63] = 1;
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);

	/* Lengths: one byte short, one byte long, empty-ish. */
	tok = forge_sig(h, PAYLOAD, good, 63);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);
	memcpy(raw, good, 64);
	{
		unsigned char longer[65];

		memcpy(longer, good, 64);
		longer[64] = 0;
		tok = forge_sig(h, PAYLOAD, longer, 65);
		CHECK(vfy(tok) == JOSE_E_SIGNATURE);
		free(tok);
		/* Leading zero byte: same numbers, wrong form. */
		longer[0] = 0;
		memcpy(longer + 1, good, 64);
		tok = forge_sig(h, PAYLOAD, longer, 65);
		CHECK(vfy(tok) == JOSE_E_SIGNATURE);
		free(tok);
	}
	tok = forge_sig(h, PAYLOAD, good, 1);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);

	/* The DER form OpenSSL produces, instead of R||S. */
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(good, 32, NULL),
	    BN_bin2bn(good + 32, 32, NULL));
	dp = der;
	derlen = i2d_ECDSA_SIG(es, &dp);
	CHECK(derlen > 64 && derlen <= 72);
	tok = forge_sig(h, PAYLOAD, der, (size_t)derlen);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);
	ECDSA_SIG_free(es);

	/* R and S swapped. */
	memcpy(raw, good + 32, 32);
	memcpy(raw + 32, good, 32);
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);

	/*
	 * ECDSA malleability, documented rather than refused: (r, n - s)
	 * verifies as well as (r, s). RFC 7518 does not require low-S and
	 * other signers do not normalise, so refusing would break interop.
	 * The consequence for callers: the same claims can travel as two
	 * different token strings, so replay and revocation must key on
	 * jti, never on a hash of the token text.
	 */
	n = BN_bin2bn(p256_n, 32, NULL);
	s = BN_bin2bn(good + 32, 32, NULL);
	ns = BN_new();
	BN_sub(ns, n, s);
	memcpy(raw, good, 32);
	BN_bn2binpad(ns, raw + 32, 32);
	tok = forge_sig(h, PAYLOAD, raw, 64);
	CHECK(vfy(tok) == JOSE_OK);
	free(tok);
	BN_free(n);
	BN_free(s);
	BN_free(ns);

	free(si);
	free(h);
}

static void
test_key_mixups(void)
{
	char *h, *tok, *tok2, *d, *mix;
	const struct jose_key *only_a[1] = { &ka };

	/* Key b signs, header names key a. */
	h = subst_kid("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID\"}",
	    ka.kid);
	tok = forge(h, PAYLOAD, kb.pkey);
	CHECK(vfy(tok) == JOSE_E_SIGNATURE);
	free(tok);
	free(h);

	/* Genuine token of key b, but only key a is trusted. */
	tok = jose_sign(&kb, TYP, PAYLOAD, strlen(PAYLOAD));
	CHECK(tok != NULL);
	if (tok == NULL)
		return;
	CHECK(vfy(tok) == JOSE_OK);
	CHECK(jose_verify(tok, strlen(tok), TYP, only_a, 1, NULL) ==
	    JOSE_E_KID);
	CHECK(jose_verify(tok, strlen(tok), TYP, NULL, 0, NULL) == JOSE_E_KID);
	CHECK(jose_verify(tok, strlen(tok), TYP, keys, 0, NULL) == JOSE_E_KID);
	/* The wrong expected typ. */
	CHECK(vfy_n(tok, strlen(tok), "JWT") == JOSE_E_HEADER);
	CHECK(vfy_n(tok, strlen(tok), "application/at+jwt") == JOSE_OK);
	CHECK(vfy_n(tok, strlen(tok), NULL) == JOSE_E_HEADER);
	free(tok);

	/* Payload of one genuine token grafted onto another's signature. */
	tok = jose_sign(&ka, TYP, "{\"sub\":\"a\"}", 11);
	tok2 = jose_sign(&ka, TYP, "{\"sub\":\"root\"}", 14);
	CHECK(tok != NULL && tok2 != NULL);
	if (tok != NULL && tok2 != NULL) {
		d = strrchr(tok, '.');
		mix = cat3("", tok2, "");
		*strrchr(mix, '.') = '\0';
		h = cat3(mix, d, "");
		CHECK(vfy(h) == JOSE_E_SIGNATURE);
		free(h);
		free(mix);
	}
	free(tok);
	free(tok2);
}

/*
 * Change every byte of a genuine token to every other value. Some changes
 * keep valid base64url, JSON and even the same decoded bytes if the
 * decoder were lax about trailing bits; none may verify.
 */
static void
test_byte_flips(void)
{
	char *tok, *t;
	size_t len, i;
	unsigned v;
	enum jose_result r;
	long accepted = 0, tried = 0;
	int why[6] = { 0 };

	tok = jose_sign(&ka, TYP, PAYLOAD, strlen(PAYLOAD));
	CHECK(tok != NULL);
	if (tok == NULL)
		return;
	len = strlen(tok);
	t = xstrdup(tok);
	for (i = 0; i < len; i++) {
		for (v = 0; v < 256; v++) {
			if ((char)v == tok[i])
				continue;
			t[i] = (char)v;
			r = vfy_n(t, len, TYP);
			tried++;
			if (r == JOSE_OK) {
				accepted++;
				fprintf(stderr, "FAIL flip at %zu to 0x%02x ok\n",
				    i, v);
			}
			if ((unsigned)r < 6)
				why[r]++;
		}
		t[i] = tok[i];
	}
	CHECK(accepted == 0);
	CHECK(tried == (long)len * 255);
	/* Changes in the signature reach the ECDSA check. */
	CHECK(why[JOSE_E_SIGNATURE] > 0);
	CHECK(vfy_n(t, len, TYP) == JOSE_OK);
	free(t);
	free(tok);
}

static void
test_structure(void)
{
	char *tok, *t, *s;
	size_t len, i, n;
	int ok;
	static const char *ws[] = { " ", "\t", "\n", "\r", "\r\n" };
	static const char *empties[] = { "", ".", "..", "...", "a.b", "a..c",
	    ".b.c", "a.b.", "..c", ".b.", "a...d" };

	tok = jose_sign(&ka, TYP, PAYLOAD, strlen(PAYLOAD));
	CHECK(tok != NULL);
	if (tok == NULL)
		return;
	len = strlen(tok);
	CHECK(vfy(tok) == JOSE_OK);

	/* Every truncation, and len shorter than the string. */
	ok = 1;
	for (n = 0; n < len; n++)
		if (vfy_n(tok, n, TYP) == JOSE_OK)
			ok = 0;
	CHECK(ok);

	/* Extra segments. */
	s = cat3(tok, ".", "");
	CHECK(vfy(s) == JOSE_E_MALFORMED);
	free(s);
	s = cat3(tok, ".", "AAAA");
	CHECK(vfy(s) == JOSE_E_MALFORMED);
	free(s);
	s = cat3(tok, ".", "AAAA.AAAA");
	CHECK(vfy(s) == JOSE_E_MALFORMED);
	free(s);
	s = cat3("AAAA.", tok, "");
	CHECK(vfy(s) == JOSE_E_MALFORMED);
	free(s);
	s = cat3("AAAA.AAAA.", tok, "");
	CHECK(vfy(s) == JOSE_E_MALFORMED);
	free(s);

	/* '=' padding after each segment, and '=' on the whole token. */
	ok = 1;
	for (i = 0; i < len; i++) {
		if (tok[i] != '.')
			continue;
		t = xmalloc(len + 3);
		memcpy(t, tok, i);
		memcpy(t + i, "=", 1);
		memcpy(t + i + 1, tok + i, len - i + 1);
		if (vfy(t) != JOSE_E_MALFORMED)
			ok = 0;
		free(t);
	}
	CHECK(ok);
	s = cat3(tok, "=", "");
	CHECK(vfy(s) == JOSE_E_MALFORMED);
	free(s);
	s = cat3(tok, "==", "");
	CHECK(vfy(s) == JOSE_E_MALFORMED);
	free(s);

	/* Whitespace at every position, including before and after. */
	ok = 1;
	for (n = 0; n < sizeof(ws) / sizeof(ws[0]); n++) {
		size_t wl = strlen(ws[n]);

		for (i = 0; i <= len; i++) {
			t = xmalloc(len + wl + 1);
			memcpy(t, tok, i);
			memcpy(t + i, ws[n], wl);
			memcpy(t + i + wl, tok + i, len - i + 1);
			if (vfy(t) != JOSE_E_MALFORMED)
				ok = 0;
			free(t);
		}
	}
	CHECK(ok);

	/* Empty segments. */
	ok = 1;
	for (n = 0; n < sizeof(empties) / sizeof(empties[0]); n++)
		if (vfy(empties[n]) != JOSE_E_MALFORMED)
			ok = 0;
	CHECK(ok);
	{
		char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
		char *hp;

		/* header..signature and .payload.signature */
		hp = xmalloc(len + 1);
		memcpy(hp, tok, (size_t)(d1 - tok) + 1);
		memcpy(hp + (d1 - tok) + 1, d2, strlen(d2) + 1);
		CHECK(vfy(hp) == JOSE_E_MALFORMED);
		CHECK(vfy(d1) == JOSE_E_MALFORMED);
		free(hp);
		/* header.payload. */
		hp = xstrdup(tok);
		hp[d2 - tok + 1] = '\0';
		CHECK(vfy(hp) == JOSE_E_MALFORMED);
		free(hp);
	}

	/* A NUL inside the given length. */
	t = xstrdup(tok);
	t[10] = '\0';
	CHECK(vfy_n(t, len, TYP) == JOSE_E_MALFORMED);
	free(t);
	t = xstrdup(tok);
	t[len - 1] = '\0';
	CHECK(vfy_n(t, len, TYP) == JOSE_E_MALFORMED);
	free(t);
	CHECK(vfy_n(NULL, 0, TYP) == JOSE_E_MALFORMED);
	CHECK(vfy_n("", 0, TYP) == JOSE_E_MALFORMED);

	/* The standard alphabet in place of the url one. */
	t = xstrdup(tok);
	for (i = 0, n = 0; i < len; i++) {
		if (t[i] == '-') {
			t[i] = '+';
			n++;
		} else if (t[i] == '_') {
			t[i] = '/';
			n++;
		}
	}
	/* Most tokens have one of them; if not, there is nothing to test. */
	CHECK(n == 0 || vfy(t) == JOSE_E_MALFORMED);
	free(t);

	free(tok);
}

static void
test_sizes(void)
{
	char *tok, *big, *h, *kid;
	size_t len;

	/* JOSE_MAX_TOKEN + 1 bytes: refused before anything is parsed. */
	tok = jose_sign(&ka, TYP, PAYLOAD, strlen(PAYLOAD));
	CHECK(tok != NULL);
	if (tok == NULL)
		return;
	len = strlen(tok);
	big = xmalloc(JOSE_MAX_TOKEN + 2);
	memset(big, 'A', JOSE_MAX_TOKEN + 1);
	memcpy(big, tok, len);
	big[JOSE_MAX_TOKEN + 1] = '\0';
	CHECK(vfy_n(big, JOSE_MAX_TOKEN + 1, TYP) == JOSE_E_TOO_LARGE);
	/* Even with a NUL in it: size is checked first. */
	big[5] = '\0';
	CHECK(vfy_n(big, JOSE_MAX_TOKEN + 1, TYP) == JOSE_E_TOO_LARGE);
	CHECK(vfy_n(big, SIZE_MAX, TYP) == JOSE_E_TOO_LARGE);
	free(big);
	free(tok);

	/* A 10 KB kid can only make the token too large. */
	kid = xmalloc(10241);
	memset(kid, 'k', 10240);
	kid[10240] = '\0';
	h = cat3("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"", kid,
	    "\"}");
	tok = forge(h, PAYLOAD, ka.pkey);
	CHECK(vfy(tok) == JOSE_E_TOO_LARGE);
	free(tok);
	free(h);
	/* A 5 KB one fits and is simply unknown. */
	kid[5000] = '\0';
	h = cat3("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"", kid,
	    "\"}");
	tok = forge(h, PAYLOAD, ka.pkey);
	CHECK(strlen(tok) <= JOSE_MAX_TOKEN);
	CHECK(vfy(tok) == JOSE_E_KID);
	free(tok);
	free(h);
	free(kid);

	/*
	 * Deep nesting: jansson's depth limit (2048) refuses it, so parsing
	 * a signed payload cannot exhaust the stack; moderate depth is fine.
	 */
	{
		char *p = xmalloc(6000);
		size_t depth;

		h = subst_kid("{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
		    "\"kid\":\"KID\"}", ka.kid);
		for (depth = 100; depth <= 2500; depth += 2400) {
			memcpy(p, "{\"a\":", 5);
			memset(p + 5, '[', depth);
			memset(p + 5 + depth, ']', depth);
			memcpy(p + 5 + 2 * depth, "}", 2);
			tok = forge(h, p, ka.pkey);
			CHECK(strlen(tok) <= JOSE_MAX_TOKEN);
			CHECK(vfy(tok) == (depth < 2048 ? JOSE_OK :
			    JOSE_E_MALFORMED));
			free(tok);
		}
		free(h);
		free(p);
	}
}

static void
test_jwk(void)
{
	json_t *jwk, *j2;
	struct jose_key k;
	const struct jose_key *pub[1];
	char *tok, *y;
	size_t n;
	unsigned char yb[32];

	jwk = jose_key_public_jwk(&ka);
	CHECK(jwk != NULL);
	if (jwk == NULL)
		return;
	CHECK(json_object_size(jwk) == 7);
	CHECK_STR(json_string_value(json_object_get(jwk, "kty")), "EC");
	CHECK_STR(json_string_value(json_object_get(jwk, "crv")), "P-256");
	CHECK_STR(json_string_value(json_object_get(jwk, "kid")), ka.kid);
	CHECK_STR(json_string_value(json_object_get(jwk, "alg")), "ES256");
	CHECK_STR(json_string_value(json_object_get(jwk, "use")), "sig");
	CHECK(json_object_get(jwk, "d") == NULL);
	CHECK(strlen(json_string_value(json_object_get(jwk, "x"))) == 43);
	CHECK(strlen(json_string_value(json_object_get(jwk, "y"))) == 43);
	CHECK(jose_key_public_jwk(NULL) == NULL);

	/* Round trip: the imported public key verifies ka's tokens. */
	CHECK(jose_key_from_jwk(&k, jwk) == 0);
	CHECK_STR(k.kid, ka.kid);
	pub[0] = &k;
	tok = jose_sign(&ka, TYP, PAYLOAD, strlen(PAYLOAD));
	CHECK(tok != NULL &&
	    jose_verify(tok, strlen(tok), TYP, pub, 1, NULL) == JOSE_OK);
	free(tok);
	/* ...and cannot sign: it has no private half. */
	tok = jose_sign(&k, TYP, PAYLOAD, strlen(PAYLOAD));
	CHECK(tok == NULL);
	free(tok);
	/* Its own JWK is the same document. */
	j2 = jose_key_public_jwk(&k);
	CHECK(j2 != NULL && json_equal(j2, jwk));
	json_decref(j2);
	jose_key_clear(&k);

	/* Optional members may be absent. */
	j2 = json_deep_copy(jwk);
	json_object_del(j2, "kid");
	json_object_del(j2, "alg");
	json_object_del(j2, "use");
	CHECK(jose_key_from_jwk(&k, j2) == 0);
	CHECK_STR(k.kid, ka.kid);
	jose_key_clear(&k);
	json_decref(j2);

#define JWK_REFUSED(what, edit) do { \
	j2 = json_deep_copy(jwk); \
	edit; \
	memset(&k, 0x5a, sizeof(k)); \
	if (jose_key_from_jwk(&k, j2) != -1 || k.pkey != NULL) { \
		check_failed++; \
		fprintf(stderr, "FAIL jwk accepted: %s\n", what); \
	} else \
		check_passed++; \
	json_decref(j2); \
} while (0)

	JWK_REFUSED("private d", json_object_set_new(j2, "d",
	    json_string("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X5fCwMJjI8Y")));
	JWK_REFUSED("d null", json_object_set_new(j2, "d", json_null()));
	JWK_REFUSED("kid of key b", json_object_set_new(j2, "kid",
	    json_string(kb.kid)));
	JWK_REFUSED("kid empty", json_object_set_new(j2, "kid",
	    json_string("")));
	JWK_REFUSED("kid number", json_object_set_new(j2, "kid",
	    json_integer(1)));
	JWK_REFUSED("alg ES384", json_object_set_new(j2, "alg",
	    json_string("ES384")));
	JWK_REFUSED("alg es256", json_object_set_new(j2, "alg",
	    json_string("es256")));
	JWK_REFUSED("alg none", json_object_set_new(j2, "alg",
	    json_string("none")));
	JWK_REFUSED("use enc", json_object_set_new(j2, "use",
	    json_string("enc")));
	JWK_REFUSED("kty RSA", json_object_set_new(j2, "kty",
	    json_string("RSA")));
	JWK_REFUSED("kty ec", json_object_set_new(j2, "kty",
	    json_string("ec")));
	JWK_REFUSED("kty missing", json_object_del(j2, "kty"));
	JWK_REFUSED("crv P-384", json_object_set_new(j2, "crv",
	    json_string("P-384")));
	JWK_REFUSED("crv secp256k1", json_object_set_new(j2, "crv",
	    json_string("secp256k1")));
	JWK_REFUSED("crv prime256v1", json_object_set_new(j2, "crv",
	    json_string("prime256v1")));
	JWK_REFUSED("crv missing", json_object_del(j2, "crv"));
	JWK_REFUSED("x missing", json_object_del(j2, "x"));
	JWK_REFUSED("y missing", json_object_del(j2, "y"));
	JWK_REFUSED("x number", json_object_set_new(j2, "x",
	    json_integer(5)));
	JWK_REFUSED("x short", json_object_set_new(j2, "x",
	    json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")));
	JWK_REFUSED("x long", json_object_set_new(j2, "x",
	    json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")));
	JWK_REFUSED("x padded", {
		char *xp = cat3(json_string_value(json_object_get(jwk, "x")),
		    "=", "");
		json_object_set_new(j2, "x", json_string(xp));
		free(xp);
	});
	JWK_REFUSED("x = y = 0", {
		json_object_set_new(j2, "x", json_string(
		    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
		json_object_set_new(j2, "y", json_string(
		    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
	});
	/* x = p, the field prime: out of range whatever y is. */
	JWK_REFUSED("x = p", json_object_set_new(j2, "x", json_string(
	    "_____wAAAAEAAAAAAAAAAAAAAAD_______________8")));
	JWK_REFUSED("not an object", {
		json_decref(j2);
		j2 = json_string("EC");
	});
	JWK_REFUSED("NULL", {
		json_decref(j2);
		j2 = NULL;
	});

	/* A point off the curve: y with its last bit flipped. */
	y = xstrdup(json_string_value(json_object_get(jwk, "y")));
	CHECK(b64_url_decode(y, strlen(y), yb, sizeof(yb), &n) == 0 &&
	    n == 32);
	yb[31] ^= 1;
	b64_url_encode(yb, sizeof(yb), y);
	JWK_REFUSED("off curve", json_object_set_new(j2, "y", json_string(y)));
	free(y);
#undef JWK_REFUSED

	CHECK(jose_key_from_jwk(NULL, jwk) == -1);
	json_decref(jwk);
}

/*
 * RFC 7638 §3.1 (an RSA key: the thumbprint does not depend on our
 * supporting the type) and RFC 8037 appendix A.3 (Ed25519). Members other
 * than the required ones must not change the result.
 */
static void
test_jwk_thumbprint_vectors(void)
{
	static const char rsa_n[] = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
	char tp[JOSE_KID_LEN + 1];
	struct jose_key k;
	json_t *j;

	j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "n", rsa_n,
	    "e", "AQAB", "alg", "RS256", "kid", "2011-04-29");
	CHECK(jose_jwk_thumbprint(j, tp) == 0);
	CHECK_STR(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	json_decref(j);

	j = json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x",
	    "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
	CHECK(jose_jwk_thumbprint(j, tp) == 0);
	CHECK_STR(tp, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
	/* The key built from the JWK gets the same kid by the other path. */
	CHECK(jose_key_from_jwk(&k, j) == 0);
	CHECK_STR(k.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
	CHECK(k.alg == JOSE_ALG_EDDSA);
	jose_key_clear(&k);
	/* A private OKP JWK is refused. */
	json_object_set_new(j, "d", json_string(
	    "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"));
	CHECK(jose_key_from_jwk(&k, j) != 0);
	json_decref(j);

	/* EC: the thumbprint of our own public JWK is the key's kid. */
	j = jose_key_public_jwk(&ka);
	CHECK(jose_jwk_thumbprint(j, tp) == 0);
	CHECK_STR(tp, ka.kid);
	json_decref(j);

	/* Unknown kty, missing or non-string members. */
	j = json_pack("{s:s, s:s}", "kty", "oct", "k", "AAAA");
	CHECK(jose_jwk_thumbprint(j, tp) != 0);
	json_decref(j);
	j = json_pack("{s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", "AA");
	CHECK(jose_jwk_thumbprint(j, tp) != 0);
	json_decref(j);
	j = json_pack("{s:s, s:s, s:i}", "kty", "OKP", "crv", "Ed25519", "x", 1);
	CHECK(jose_jwk_thumbprint(j, tp) != 0);
	json_decref(j);
	CHECK(jose_jwk_thumbprint(NULL, tp) != 0);
}

/* A compact JWS over payload with header text hdr, signed by Ed25519 sk. */
static char *
ed25519_jws(EVP_PKEY *sk, const char *hdr, const char *payload)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned char sig[64];
	size_t siglen = sizeof(sig), o;
	char *tok = malloc(4096);

	o = b64_url_encode((const unsigned char *)hdr, strlen(hdr), tok);
	tok[o++] = '.';
	o += b64_url_encode((const unsigned char *)payload, strlen(payload),
	    tok + o);
	if (EVP_DigestSignInit_ex(m, NULL, NULL, NULL, NULL, sk, NULL) != 1 ||
	    EVP_DigestSign(m, sig, &siglen, (unsigned char *)tok, o) != 1)
		siglen = 0;
	tok[o++] = '.';
	o += b64_url_encode(sig, siglen, tok + o);
	tok[o] = '\0';
	EVP_MD_CTX_free(m);
	return tok;
}

static void
test_verify_key(void)
{
	static const char *const allow[] = { "alg", "kid", "typ", NULL };
	static const char *const only_alg[] = { "alg", NULL };
	EVP_PKEY *sk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	unsigned char raw[32];
	size_t rawlen = sizeof(raw);
	struct jose_key ek, pem_key;
	json_t *h = NULL, *c = NULL;
	char *tok;
	BIO *bio;
	char *pem;
	long pemlen;

	CHECK(sk != NULL);
	CHECK(EVP_PKEY_get_raw_public_key(sk, raw, &rawlen) == 1);
	CHECK(jose_key_init(&ek, EVP_PKEY_new_raw_public_key_ex(NULL,
	    "ED25519", NULL, raw, rawlen)) == 0);
	CHECK(ek.alg == JOSE_ALG_EDDSA);

	tok = ed25519_jws(sk, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", PAYLOAD);
	CHECK(jose_verify_key(tok, strlen(tok), &ek, allow, &h, &c) == JOSE_OK);
	CHECK(json_is_object(h) && json_is_object(c));
	CHECK_STR(json_string_value(json_object_get(c, "sub")), "agent-1");
	json_decref(h);
	json_decref(c);
	/* A member outside the caller's list. */
	CHECK(jose_verify_key(tok, strlen(tok), &ek, only_alg, &h, &c) ==
	    JOSE_E_HEADER && h == NULL && c == NULL);
	/* The EC key does not accept an EdDSA token, nor the reverse. */
	CHECK(jose_verify_key(tok, strlen(tok), &ka, allow, NULL, NULL) ==
	    JOSE_E_HEADER);
	tok[strlen(tok) - 3] ^= 1;
	CHECK(jose_verify_key(tok, strlen(tok), &ek, allow, NULL, NULL) !=
	    JOSE_OK);
	free(tok);
	tok = ed25519_jws(sk, "{\"alg\":\"EdDSA\",\"jku\":\"https://x\"}",
	    PAYLOAD);
	CHECK(jose_verify_key(tok, strlen(tok), &ek, allow, NULL, NULL) ==
	    JOSE_E_HEADER);
	free(tok);
	tok = ed25519_jws(sk, "{\"alg\":\"ES256\"}", PAYLOAD);
	CHECK(jose_verify_key(tok, strlen(tok), &ek, allow, NULL, NULL) ==
	    JOSE_E_HEADER);
	free(tok);
	tok = ed25519_jws(sk, "{\"alg\":\"EdDSA\",\"alg\":\"EdDSA\"}", PAYLOAD);
	CHECK(jose_verify_key(tok, strlen(tok), &ek, allow, NULL, NULL) ==
	    JOSE_E_MALFORMED);
	free(tok);

	/* ES256 from jose_sign verifies under jose_verify_key too. */
	tok = jose_sign(&ka, "JWT", PAYLOAD, strlen(PAYLOAD));
	CHECK(jose_verify_key(tok, strlen(tok), &ka, allow, NULL, NULL) ==
	    JOSE_OK);
	CHECK(jose_verify_key(tok, strlen(tok), &kb, allow, NULL, NULL) ==
	    JOSE_E_SIGNATURE);
	CHECK(jose_peek(tok, strlen(tok), &h, &c) == JOSE_OK);
	CHECK_STR(json_string_value(json_object_get(h, "kid")), ka.kid);
	json_decref(h);
	json_decref(c);
	free(tok);
	CHECK(jose_peek("a.b", 3, &h, NULL) == JOSE_E_MALFORMED && h == NULL);

	/* PEM: the public half loads with the same kid; private PEM does not. */
	bio = BIO_new(BIO_s_mem());
	CHECK(PEM_write_bio_PUBKEY(bio, ka.pkey) == 1);
	pemlen = BIO_get_mem_data(bio, &pem);
	CHECK(jose_key_from_pem(&pem_key, pem, (size_t)pemlen) == 0);
	CHECK_STR(pem_key.kid, ka.kid);
	jose_key_clear(&pem_key);
	BIO_free(bio);
	bio = BIO_new(BIO_s_mem());
	CHECK(PEM_write_bio_PrivateKey(bio, ka.pkey, NULL, NULL, 0, NULL,
	    NULL) == 1);
	pemlen = BIO_get_mem_data(bio, &pem);
	CHECK(jose_key_from_pem(&pem_key, pem, (size_t)pemlen) != 0);
	BIO_free(bio);
	bio = BIO_new(BIO_s_mem());
	CHECK(PEM_write_bio_PUBKEY(bio, sk) == 1);
	pemlen = BIO_get_mem_data(bio, &pem);
	CHECK(jose_key_from_pem(&pem_key, pem, (size_t)pemlen) == 0);
	CHECK_STR(pem_key.kid, ek.kid);
	CHECK(pem_key.alg == JOSE_ALG_EDDSA);
	jose_key_clear(&pem_key);
	BIO_free(bio);

	jose_key_clear(&ek);
	EVP_PKEY_free(sk);
}

int
main(int argc, char **argv)
{
	(void)argc;
	if (jose_key_init(&ka, EVP_EC_gen("P-256")) != 0 ||
	    jose_key_init(&kb, EVP_EC_gen("P-256")) != 0) {
		fprintf(stderr, "cannot create test keys\n");
		return 2;
	}
	keys[0] = &ka;
	keys[1] = &kb;

	test_result_names();
	test_key_init();
	test_thumbprint_kat();
	test_short_coordinate();
	test_sign_round_trip();
	test_sign_args();
	test_forgery_table();
	test_hs256_confusion();
	test_alg_none();
	test_signature_values();
	test_key_mixups();
	test_byte_flips();
	test_structure();
	test_sizes();
	test_jwk();
	test_jwk_thumbprint_vectors();
	test_verify_key();
	CHECK(!claims_not_cleared);

	jose_key_clear(&ka);
	jose_key_clear(&kb);
	return check_summary(argv[0]);
}
