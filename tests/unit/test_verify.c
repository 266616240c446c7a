/*
 * test_verify.c: unit tests for the verify library (countersign/verify.h).
 *
 * The core is one table: each row builds a token (most of them forgeries)
 * and names the exact result cs_verify_at must give, so that a refusal for
 * the wrong reason is noticed as well as an acceptance. Key A plays the
 * broker, whose public JWK is the only one the verifiers trust; key B plays
 * an attacker with a perfectly good P-256 key of their own. Forged headers
 * are signed with key A, so that each refusal comes from the rule under
 * test rather than from a signature that happens to be wrong. The clock is
 * fixed (NOW) so that the time rows are deterministic.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "b64.h"
#include "check.h"
#include "countersign/verify.h"
#include "jose.h"
#include "verify_internal.h"

#define ISSUER		"https://broker.example"
#define AUDIENCE	"https://forum.example"
#define NOW		INT64_C(1760000000)
#define STD_HEADER	"{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\"}"

/* Key A is the broker's, key B an attacker's. */
static struct jose_key ka, kb;
/* The JWKS text the broker would publish: {"keys":[jwk(A)]}. */
static char *jwks_a;

/* The P-256 order n, big-endian, for the r = n forgery. */
static const unsigned char p256_n[32] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51
};

static void
die(const char *what)
{
	fprintf(stderr, "test_verify: %s\n", what);
	exit(2);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		die("out of memory");
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

/* New string: tmpl with every "KID_A" and "KID_B" replaced by the kids. */
static char *
subst_kids(const char *tmpl)
{
	size_t n = strlen(tmpl) + 1;
	const char *p;
	char *out, *o;

	/* A kid (43) is longer than its placeholder (5); count generously. */
	for (p = tmpl; (p = strstr(p, "KID_")) != NULL; p += 4)
		n += JOSE_KID_LEN;
	out = xmalloc(n);
	for (p = tmpl, o = out; *p != '\0';) {
		if (strncmp(p, "KID_A", 5) == 0 || strncmp(p, "KID_B", 5) == 0) {
			const char *kid = p[4] == 'A' ? ka.kid : kb.kid;

			memcpy(o, kid, strlen(kid));
			o += strlen(kid);
			p += 5;
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

/*
 * ECDSA P-256/SHA-256 over n bytes at msg with pkey. Writes OpenSSL's DER
 * signature to der (*derlen bytes, der holds 80) and, when raw is not NULL,
 * the JWS form: r and s as 32-byte big-endian numbers, r first.
 */
static void
es256(EVP_PKEY *pkey, const char *msg, size_t n, unsigned char *der,
    size_t *derlen, unsigned char *raw)
{
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	const unsigned char *p = der;
	ECDSA_SIG *sig = NULL;
	const BIGNUM *r, *s;

	*derlen = 80;
	if (mctx == NULL ||
	    EVP_DigestSignInit_ex(mctx, NULL, "SHA256", NULL, NULL, pkey,
	    NULL) != 1 ||
	    EVP_DigestSign(mctx, der, derlen, (const unsigned char *)msg,
	    n) != 1)
		die("EVP_DigestSign failed");
	if (raw != NULL) {
		if ((sig = d2i_ECDSA_SIG(NULL, &p, (long)*derlen)) == NULL)
			die("d2i_ECDSA_SIG failed");
		ECDSA_SIG_get0(sig, &r, &s);
		if (BN_bn2binpad(r, raw, 32) != 32 ||
		    BN_bn2binpad(s, raw + 32, 32) != 32)
			die("BN_bn2binpad failed");
		ECDSA_SIG_free(sig);
	}
	EVP_MD_CTX_free(mctx);
}

/* New token: the signing input of h and p, then the given signature. */
static char *
with_sig(const char *h, const char *p, const unsigned char *sig, size_t n)
{
	char *si = signing_input(h, p), *sb = b64u(sig, n);
	char *tok = cat3(si, ".", sb);

	free(si);
	free(sb);
	return tok;
}

/*
 * sign_raw(key, header_json, payload_json): a compact JWS of exactly these
 * header and payload texts, validly signed ES256 by key. jose_sign can only
 * produce the standard header, so every header forgery comes from here.
 */
static char *
sign_raw(EVP_PKEY *key, const char *header_json, const char *payload_json)
{
	char *si = signing_input(header_json, payload_json), *tok;
	unsigned char der[80], raw[64];
	size_t derlen;

	es256(key, si, strlen(si), der, &derlen, raw);
	free(si);
	tok = with_sig(header_json, payload_json, raw, sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	return tok;
}

/* The claims of a genuine token for the forum, valid at NOW. */
static json_t *
base_claims(void)
{
	json_t *c;

	c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}",
	    "iss", ISSUER, "sub", "agent-7", "client_id", "client-42",
	    "aud", AUDIENCE, "scope", "forum:read forum:post",
	    "jti", "jti-0001", "iat", (json_int_t)(NOW - 10),
	    "nbf", (json_int_t)(NOW - 10), "exp", (json_int_t)(NOW + 290));
	if (c == NULL)
		die("json_pack failed");
	return c;
}

/* New compact JSON text of c, which is released. */
static char *
dump_claims(json_t *c)
{
	char *txt = json_dumps(c, JSON_COMPACT);

	json_decref(c);
	if (txt == NULL)
		die("json_dumps failed");
	return txt;
}

/* Which verifier a row runs against; all trust key A only. */
enum which_verifier {
	V_FORUM = 0,		/* the forum's: default leeway of 30 s */
	V_NO_KEYS,		/* nothing loaded yet */
	V_LEEWAY_0,		/* cs_verifier_set_leeway(v, 0) */
	V_LEEWAY_NEG,		/* set to -7, clamped to 0 */
	V_LEEWAY_BIG,		/* set to 1000, clamped to 300 */
	V_ANY_AUD,		/* audience NULL: the broker-side check */
	V_COUNT
};

static struct cs_verifier *verifiers[V_COUNT];

/* How a row turns its header and payload into the token under test. */
enum how {
	T_SIGN_A = 0,		/* signed by key A (jose_sign if std header) */
	T_SIGN_B,		/* signed by key B */
	T_NO_SIG,		/* "h.p." with an empty signature */
	T_ZERO_SIG,		/* r = s = 0 */
	T_R_IS_N,		/* r = n, genuine s */
	T_DER_SIG,		/* OpenSSL's DER signature instead of r||s */
	T_HS256_PEM,		/* HMAC-SHA256 keyed with A's public PEM */
	T_TAMPER_PAYLOAD,	/* payload re-encoded with more scope */
	T_TAMPER_SIG,		/* one bit of signature byte 10 flipped */
	T_TRUNCATE,		/* last five characters dropped */
	T_TWO_SEGS,		/* "h.p" */
	T_FOUR_SEGS,		/* "h.p.s.s" */
	T_OVERSIZE,		/* genuinely signed, over 8 KB */
	T_JUNK_9000,		/* 9000 bytes of base64url text */
	T_EMPTY,		/* "" */
	T_NULL			/* NULL */
};

struct row {
	const char *name;
	enum which_verifier v;
	enum how how;
	const char *header;	/* NULL: STD_HEADER; KID_A/KID_B replaced */
	const char *payload;	/* raw payload text instead of claims */
	const char *merge;	/* JSON object merged into the claims */
	const char *drop;	/* claim removed from the claims */
	int set_exp, set_nbf, set_iat;
	int64_t exp, nbf, iat;	/* relative to NOW, when set_* */
	enum cs_verify_result want;
	enum cs_verify_result alt;	/* also accepted, unless CS_VERIFY_OK */
	const char *approval;	/* expected approval_id on OK, else NULL */
	const char *cnf;	/* expected cnf_jkt on OK, else NULL */
};

static const struct row rows[] = {
	/* Genuine tokens. */
	{ .name = "valid", .want = CS_VERIFY_OK },
	{ .name = "valid, sign_raw with the standard header",
	    .header = STD_HEADER, .want = CS_VERIFY_OK },
	{ .name = "stepped-up",
	    .merge = "{\"approval\":{\"id\":\"abc\",\"approvers\":[\"x\"]}}",
	    .want = CS_VERIFY_OK, .approval = "abc" },
	{ .name = "sender-constrained", .merge = "{\"cnf\":{\"jkt\":\"thumb\"}}",
	    .want = CS_VERIFY_OK, .cnf = "thumb" },
	{ .name = "typ application/at+jwt",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"application/at+jwt\","
	    "\"kid\":\"KID_A\"}", .want = CS_VERIFY_OK },
	{ .name = "typ AT+JWT (case-insensitive)",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"AT+JWT\",\"kid\":\"KID_A\"}",
	    .want = CS_VERIFY_OK },
	{ .name = "nbf absent", .drop = "nbf", .want = CS_VERIFY_OK },
	{ .name = "exp far in the future (INT64_MAX)",
	    .merge = "{\"exp\":9223372036854775807}", .want = CS_VERIFY_OK },

	/* alg: ES256 only, and never "none" or an HMAC. */
	{ .name = "alg none, empty signature", .how = T_NO_SIG,
	    .header = "{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\"}",
	    .want = CS_VERIFY_MALFORMED, .alt = CS_VERIFY_BAD_HEADER },
	{ .name = "alg none, signed",
	    .header = "{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\"}",
	    .want = CS_VERIFY_BAD_HEADER },
	{ .name = "alg None",
	    .header = "{\"alg\":\"None\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\"}",
	    .want = CS_VERIFY_BAD_HEADER },
	{ .name = "alg HS256 keyed with A's public PEM", .how = T_HS256_PEM,
	    .header = "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\"}",
	    .want = CS_VERIFY_BAD_HEADER },

	/* Signature values. */
	{ .name = "r = s = 0", .how = T_ZERO_SIG,
	    .want = CS_VERIFY_BAD_SIGNATURE },
	{ .name = "r = n", .how = T_R_IS_N, .want = CS_VERIFY_BAD_SIGNATURE },
	{ .name = "DER signature", .how = T_DER_SIG,
	    .want = CS_VERIFY_BAD_SIGNATURE },
	{ .name = "key B signs, kid of A", .how = T_SIGN_B,
	    .header = STD_HEADER, .want = CS_VERIFY_BAD_SIGNATURE },
	{ .name = "tampered payload", .how = T_TAMPER_PAYLOAD,
	    .want = CS_VERIFY_BAD_SIGNATURE },
	{ .name = "tampered signature", .how = T_TAMPER_SIG,
	    .want = CS_VERIFY_BAD_SIGNATURE },

	/* kid: a lookup key into the JWKS and nothing more. */
	{ .name = "key B signs, kid of B", .how = T_SIGN_B,
	    .header = "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID_B\"}",
	    .want = CS_VERIFY_UNKNOWN_KEY },
	{ .name = "kid ../../etc/passwd",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"at+jwt\","
	    "\"kid\":\"../../etc/passwd\"}", .want = CS_VERIFY_UNKNOWN_KEY },

	/* Header members that would make the token choose its own key. */
	{ .name = "header jku",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\","
	    "\"jku\":\"https://evil.example/jwks\"}",
	    .want = CS_VERIFY_BAD_HEADER },
	{ .name = "header x5u",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\","
	    "\"x5u\":\"https://evil.example/cert\"}",
	    .want = CS_VERIFY_BAD_HEADER },
	{ .name = "header jwk",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\","
	    "\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\","
	    "\"y\":\"AA\"}}", .want = CS_VERIFY_BAD_HEADER },
	{ .name = "header crit",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"KID_A\","
	    "\"crit\":[\"exp\"]}", .want = CS_VERIFY_BAD_HEADER },

	/* typ: an access token, not an ID token or a DPoP proof. */
	{ .name = "typ JWT",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"KID_A\"}",
	    .want = CS_VERIFY_BAD_HEADER },
	{ .name = "typ missing",
	    .header = "{\"alg\":\"ES256\",\"kid\":\"KID_A\"}",
	    .want = CS_VERIFY_BAD_HEADER },
	{ .name = "typ dpop+jwt",
	    .header = "{\"alg\":\"ES256\",\"typ\":\"dpop+jwt\",\"kid\":\"KID_A\"}",
	    .want = CS_VERIFY_BAD_HEADER },

	/* Issuer and audience. */
	{ .name = "wrong aud", .merge = "{\"aud\":\"https://evil.example\"}",
	    .want = CS_VERIFY_WRONG_AUDIENCE },
	{ .name = "aud as an array",
	    .merge = "{\"aud\":[\"https://forum.example\"]}",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "wrong iss", .merge = "{\"iss\":\"https://evil.example\"}",
	    .want = CS_VERIFY_WRONG_ISSUER },
	{ .name = "iss with a trailing slash",
	    .merge = "{\"iss\":\"https://broker.example/\"}",
	    .want = CS_VERIFY_WRONG_ISSUER },
	{ .name = "any-audience verifier, other aud", .v = V_ANY_AUD,
	    .merge = "{\"aud\":\"https://other.example\"}",
	    .want = CS_VERIFY_OK },
	{ .name = "any-audience verifier, aud missing", .v = V_ANY_AUD,
	    .drop = "aud", .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "any-audience verifier, wrong iss", .v = V_ANY_AUD,
	    .merge = "{\"iss\":\"https://evil.example\"}",
	    .want = CS_VERIFY_WRONG_ISSUER },

	/* Time, with the default leeway of 30 seconds. */
	{ .name = "exp = now - 31", .set_exp = 1, .exp = -31,
	    .want = CS_VERIFY_EXPIRED },
	{ .name = "exp = now - 30", .set_exp = 1, .exp = -30,
	    .want = CS_VERIFY_EXPIRED },
	{ .name = "exp = now - 29", .set_exp = 1, .exp = -29,
	    .want = CS_VERIFY_OK },
	{ .name = "leeway 0, exp = now", .v = V_LEEWAY_0, .set_exp = 1,
	    .exp = 0, .want = CS_VERIFY_EXPIRED },
	{ .name = "leeway 0, exp = now + 1", .v = V_LEEWAY_0, .set_exp = 1,
	    .exp = 1, .want = CS_VERIFY_OK },
	{ .name = "leeway -7 (clamped to 0), exp = now", .v = V_LEEWAY_NEG,
	    .set_exp = 1, .exp = 0, .want = CS_VERIFY_EXPIRED },
	{ .name = "leeway 1000 (clamped to 300), exp = now - 299",
	    .v = V_LEEWAY_BIG, .set_exp = 1, .exp = -299,
	    .want = CS_VERIFY_OK },
	{ .name = "leeway 1000 (clamped to 300), exp = now - 301",
	    .v = V_LEEWAY_BIG, .set_exp = 1, .exp = -301,
	    .want = CS_VERIFY_EXPIRED },
	{ .name = "nbf = now + 31", .set_nbf = 1, .nbf = 31,
	    .want = CS_VERIFY_NOT_YET_VALID },
	{ .name = "nbf = now + 30", .set_nbf = 1, .nbf = 30,
	    .want = CS_VERIFY_OK },
	{ .name = "iat = now + 31", .set_iat = 1, .iat = 31,
	    .want = CS_VERIFY_NOT_YET_VALID },
	{ .name = "iat = now + 31, nbf absent", .drop = "nbf", .set_iat = 1,
	    .iat = 31, .want = CS_VERIFY_NOT_YET_VALID },
	{ .name = "leeway 0, nbf = now + 1", .v = V_LEEWAY_0, .set_nbf = 1,
	    .nbf = 1, .want = CS_VERIFY_NOT_YET_VALID },

	/* Every required claim, removed in turn. */
	{ .name = "no iss", .drop = "iss", .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "no sub", .drop = "sub", .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "no client_id", .drop = "client_id",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "no aud", .drop = "aud", .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "no scope", .drop = "scope", .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "no jti", .drop = "jti", .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "no exp", .drop = "exp", .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "no iat", .drop = "iat", .want = CS_VERIFY_MISSING_CLAIM },

	/* Claims of the wrong type or value. */
	{ .name = "exp as a string", .merge = "{\"exp\":\"123\"}",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "exp negative", .merge = "{\"exp\":-1}",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "exp as a real", .merge = "{\"exp\":1760000290.0}",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "nbf null", .merge = "{\"nbf\":null}",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "sub empty", .merge = "{\"sub\":\"\"}",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "scope as an array",
	    .merge = "{\"scope\":[\"forum:read\"]}",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "approval without id", .merge = "{\"approval\":{}}",
	    .want = CS_VERIFY_MISSING_CLAIM },
	{ .name = "cnf without jkt", .merge = "{\"cnf\":{}}",
	    .want = CS_VERIFY_MISSING_CLAIM },

	/* Structure and size. */
	{ .name = "truncated by 5", .how = T_TRUNCATE,
	    .want = CS_VERIFY_MALFORMED, .alt = CS_VERIFY_BAD_SIGNATURE },
	{ .name = "two segments", .how = T_TWO_SEGS,
	    .want = CS_VERIFY_MALFORMED },
	{ .name = "four segments", .how = T_FOUR_SEGS,
	    .want = CS_VERIFY_MALFORMED },
	{ .name = "oversized, genuinely signed", .how = T_OVERSIZE,
	    .want = CS_VERIFY_TOO_LARGE },
	{ .name = "9000 bytes", .how = T_JUNK_9000,
	    .want = CS_VERIFY_TOO_LARGE },
	{ .name = "duplicate scope",
	    .payload = "{\"iss\":\"https://broker.example\",\"sub\":\"agent-7\","
	    "\"client_id\":\"client-42\",\"aud\":\"https://forum.example\","
	    "\"scope\":\"forum:read\",\"scope\":\"forum:admin\","
	    "\"jti\":\"jti-0001\",\"iat\":1759999990,\"exp\":1760000290}",
	    .want = CS_VERIFY_MALFORMED },
	{ .name = "payload [1]", .payload = "[1]",
	    .want = CS_VERIFY_MALFORMED },
	{ .name = "empty string", .how = T_EMPTY,
	    .want = CS_VERIFY_MALFORMED },
	{ .name = "NULL token", .how = T_NULL, .want = CS_VERIFY_MALFORMED },
	{ .name = "no keys loaded", .v = V_NO_KEYS,
	    .want = CS_VERIFY_UNKNOWN_KEY },
};

/* New payload text for row r. */
static char *
row_payload(const struct row *r)
{
	json_t *c, *m;

	if (r->payload != NULL)
		return xstrdup(r->payload);
	c = base_claims();
	if (r->set_exp)
		json_object_set_new(c, "exp", json_integer(NOW + r->exp));
	if (r->set_nbf)
		json_object_set_new(c, "nbf", json_integer(NOW + r->nbf));
	if (r->set_iat)
		json_object_set_new(c, "iat", json_integer(NOW + r->iat));
	if (r->merge != NULL) {
		if ((m = json_loads(r->merge, 0, NULL)) == NULL ||
		    json_object_update(c, m) != 0)
			die("bad merge text in the table");
		json_decref(m);
	}
	if (r->drop != NULL)
		json_object_del(c, r->drop);
	return dump_claims(c);
}

/* New "b64(h).b64(p).b64(HMAC-SHA256(PEM of A's public key, input))". */
static char *
hs256_with_pem(const char *h, const char *p)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL, *si, *sb, *tok;
	unsigned char mac[32];
	size_t maclen = 0;
	long pemlen;

	if (bio == NULL || PEM_write_bio_PUBKEY(bio, ka.pkey) != 1 ||
	    (pemlen = BIO_get_mem_data(bio, &pem)) <= 0)
		die("PEM_write_bio_PUBKEY failed");
	si = signing_input(h, p);
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem, (size_t)pemlen,
	    (const unsigned char *)si, strlen(si), mac, sizeof(mac),
	    &maclen) == NULL || maclen != sizeof(mac))
		die("EVP_Q_mac failed");
	sb = b64u(mac, maclen);
	tok = cat3(si, ".", sb);
	free(sb);
	free(si);
	BIO_free(bio);
	return tok;
}

/* The token for row r: a new string, or NULL for T_NULL. */
static char *
row_token(const struct row *r)
{
	unsigned char der[80], raw[64], dec[128];
	char *h, *p, *si, *tok = NULL, *t, *d1, *d2, *seg;
	size_t derlen, n, len;
	json_t *c;

	if (r->how == T_NULL)
		return NULL;
	if (r->how == T_EMPTY)
		return xstrdup("");
	if (r->how == T_JUNK_9000) {
		tok = xmalloc(9001);
		memset(tok, 'A', 9000);
		tok[9000] = '\0';
		tok[3000] = tok[6000] = '.';
		return tok;
	}
	h = subst_kids(r->header != NULL ? r->header : STD_HEADER);
	p = row_payload(r);
	si = signing_input(h, p);

	switch (r->how) {
	case T_SIGN_A:
		/*
		 * The standard header goes through the broker's own signer,
		 * so the genuine tokens here are exactly what it issues.
		 */
		if (r->header == NULL)
			tok = jose_sign(&ka, "at+jwt", p, strlen(p));
		else
			tok = sign_raw(ka.pkey, h, p);
		break;
	case T_SIGN_B:
		tok = sign_raw(kb.pkey, h, p);
		break;
	case T_NO_SIG:
		tok = cat3(si, ".", "");
		break;
	case T_ZERO_SIG:
		memset(raw, 0, sizeof(raw));
		tok = with_sig(h, p, raw, sizeof(raw));
		break;
	case T_R_IS_N:
		es256(ka.pkey, si, strlen(si), der, &derlen, raw);
		memcpy(raw, p256_n, 32);
		tok = with_sig(h, p, raw, sizeof(raw));
		break;
	case T_DER_SIG:
		es256(ka.pkey, si, strlen(si), der, &derlen, NULL);
		tok = with_sig(h, p, der, derlen);
		break;
	case T_HS256_PEM:
		tok = hs256_with_pem(h, p);
		break;
	case T_TAMPER_PAYLOAD:
		/* A genuine token whose payload now grants more. */
		t = sign_raw(ka.pkey, h, p);
		c = base_claims();
		json_object_set_new(c, "scope",
		    json_string("forum:read forum:post forum:admin"));
		seg = dump_claims(c);
		free(p);
		p = b64u(seg, strlen(seg));
		free(seg);
		d1 = strchr(t, '.');
		d2 = strrchr(t, '.');
		*d1 = '\0';
		tok = xmalloc(strlen(t) + strlen(p) + strlen(d2) + 2);
		snprintf(tok, strlen(t) + strlen(p) + strlen(d2) + 2,
		    "%s.%s%s", t, p, d2);
		free(t);
		break;
	case T_TAMPER_SIG:
		/*
		 * Flip a bit in the decoded signature and encode it again,
		 * so the text stays canonical base64url and the change
		 * reaches the ECDSA check.
		 */
		tok = sign_raw(ka.pkey, h, p);
		d2 = strrchr(tok, '.') + 1;
		if (b64_url_decode(d2, strlen(d2), dec, sizeof(dec), &n) != 0 ||
		    n != 64)
			die("cannot decode our own signature");
		dec[10] ^= 0x01;
		b64_url_encode(dec, n, d2);
		break;
	case T_TRUNCATE:
		tok = sign_raw(ka.pkey, h, p);
		tok[strlen(tok) - 5] = '\0';
		break;
	case T_TWO_SEGS:
		tok = sign_raw(ka.pkey, h, p);
		*strrchr(tok, '.') = '\0';
		break;
	case T_FOUR_SEGS:
		t = sign_raw(ka.pkey, h, p);
		tok = cat3(t, ".", strrchr(t, '.') + 1);
		free(t);
		break;
	case T_OVERSIZE:
		/* A big claim, so the token is over 8 KB and well signed. */
		c = json_loads(p, 0, NULL);
		seg = xmalloc(6801);
		memset(seg, 'x', 6800);
		seg[6800] = '\0';
		json_object_set_new(c, "pad", json_string(seg));
		free(seg);
		free(p);
		p = dump_claims(c);
		tok = sign_raw(ka.pkey, h, p);
		len = strlen(tok);
		CHECK(len > 9000 && len > JOSE_MAX_TOKEN);
		break;
	case T_JUNK_9000:
	case T_EMPTY:
	case T_NULL:
		break;
	}
	free(si);
	free(p);
	free(h);
	if (tok == NULL)
		die("could not build a token");
	return tok;
}

/* True if every byte of c is zero: the contract after a refusal. */
static int
claims_zeroed(const struct cs_claims *c)
{
	static const struct cs_claims zero;

	return memcmp(c, &zero, sizeof(zero)) == 0;
}

/* True if a and b are both NULL or equal strings. */
static int
same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void
test_table(void)
{
	const struct row *r;
	struct cs_claims c;
	enum cs_verify_result got;
	size_t i;
	char *tok;
	int ok;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		r = &rows[i];
		tok = row_token(r);
		/* Garbage in, so that "zeroed on refusal" means something. */
		memset(&c, 0xa5, sizeof(c));
		got = cs_verify_at(verifiers[r->v], tok, NOW, &c);
		ok = got == r->want ||
		    (r->alt != CS_VERIFY_OK && got == r->alt);
		if (ok)
			check_passed++;
		else {
			check_failed++;
			fprintf(stderr, "FAIL row \"%s\": got %s, want %s\n",
			    r->name, cs_verify_result_name(got),
			    cs_verify_result_name(r->want));
		}
		if (got == CS_VERIFY_OK) {
			ok = c.json != NULL && c.iss != NULL &&
			    same_str(c.approval_id, r->approval) &&
			    same_str(c.cnf_jkt, r->cnf);
			cs_claims_clear(&c);
			ok = ok && claims_zeroed(&c);
		} else
			ok = claims_zeroed(&c);
		if (ok)
			check_passed++;
		else {
			check_failed++;
			fprintf(stderr, "FAIL row \"%s\": claims not as "
			    "documented after %s\n", r->name,
			    cs_verify_result_name(got));
		}
		free(tok);
	}
	CHECK(i >= 60);
}

/* The genuine token, field by field, and the scope matcher. */
static void
test_valid_claims(void)
{
	struct cs_claims c;
	json_t *want, *got;
	char *p, *tok;

	p = dump_claims(base_claims());
	tok = jose_sign(&ka, "at+jwt", p, strlen(p));
	CHECK(tok != NULL);
	if (tok == NULL) {
		free(p);
		return;
	}
	CHECK(cs_verify_at(verifiers[V_FORUM], tok, NOW, &c) == CS_VERIFY_OK);
	CHECK_STR(c.iss, ISSUER);
	CHECK_STR(c.sub, "agent-7");
	CHECK_STR(c.client_id, "client-42");
	CHECK_STR(c.aud, AUDIENCE);
	CHECK_STR(c.scope, "forum:read forum:post");
	CHECK_STR(c.jti, "jti-0001");
	CHECK(c.iat == NOW - 10);
	CHECK(c.nbf == NOW - 10);
	CHECK(c.exp == NOW + 290);
	CHECK(c.approval_id == NULL);
	CHECK(c.cnf_jkt == NULL);
	CHECK(c.json != NULL);
	/* json is the whole payload, not a re-rendering of the fields. */
	want = json_loads(p, 0, NULL);
	got = c.json != NULL ? json_loads(c.json, 0, NULL) : NULL;
	CHECK(want != NULL && got != NULL && json_equal(want, got));
	json_decref(want);
	json_decref(got);

	CHECK(cs_claims_has_scope(&c, "forum:read") == 1);
	CHECK(cs_claims_has_scope(&c, "forum:post") == 1);
	CHECK(cs_claims_has_scope(&c, "forum") == 0);
	CHECK(cs_claims_has_scope(&c, "forum:rea") == 0);
	CHECK(cs_claims_has_scope(&c, "forum:postx") == 0);
	CHECK(cs_claims_has_scope(&c, "orum:read") == 0);
	CHECK(cs_claims_has_scope(&c, "read") == 0);
	CHECK(cs_claims_has_scope(&c, "forum:admin") == 0);
	CHECK(cs_claims_has_scope(&c, "forum:read forum:post") == 0);
	CHECK(cs_claims_has_scope(&c, "") == 0);
	CHECK(cs_claims_has_scope(&c, " ") == 0);
	CHECK(cs_claims_has_scope(&c, NULL) == 0);
	CHECK(cs_claims_has_scope(NULL, "forum:read") == 0);

	cs_claims_clear(&c);
	CHECK(claims_zeroed(&c));
	CHECK(cs_claims_has_scope(&c, "forum:read") == 0);
	cs_claims_clear(&c);
	cs_claims_clear(NULL);
	free(tok);
	free(p);

	/* nbf defaults to iat when absent. */
	{
		json_t *cl = base_claims();

		json_object_del(cl, "nbf");
		p = dump_claims(cl);
		tok = jose_sign(&ka, "at+jwt", p, strlen(p));
		CHECK(cs_verify_at(verifiers[V_FORUM], tok, NOW, &c) ==
		    CS_VERIFY_OK);
		CHECK(c.nbf == NOW - 10 && c.nbf == c.iat);
		cs_claims_clear(&c);
		free(tok);
		free(p);
	}

	/* cs_verify reads the real clock: a token valid right now. */
	{
		json_int_t now = (json_int_t)time(NULL);
		json_t *cl = base_claims();

		json_object_set_new(cl, "iat", json_integer(now));
		json_object_set_new(cl, "nbf", json_integer(now));
		json_object_set_new(cl, "exp", json_integer(now + 300));
		p = dump_claims(cl);
		tok = jose_sign(&ka, "at+jwt", p, strlen(p));
		CHECK(cs_verify(verifiers[V_FORUM], tok, &c) == CS_VERIFY_OK);
		cs_claims_clear(&c);
		/* ...and the fixed-clock token has long expired by it. */
		free(tok);
		free(p);
		p = dump_claims(base_claims());
		tok = jose_sign(&ka, "at+jwt", p, strlen(p));
		CHECK(cs_verify(verifiers[V_FORUM], tok, &c) ==
		    CS_VERIFY_EXPIRED);
		CHECK(claims_zeroed(&c));
		free(tok);
		free(p);
	}

	/* A NULL verifier refuses rather than crashing. */
	CHECK(cs_verify_at(NULL, "a.b.c", NOW, &c) == CS_VERIFY_MALFORMED);
	CHECK(claims_zeroed(&c));
}

/* New JWKS text {"keys":[k...]} from n JWK objects (references kept). */
static char *
jwks_text(json_t *const *k, size_t n)
{
	json_t *arr = json_array(), *doc;
	size_t i;

	for (i = 0; i < n; i++)
		json_array_append(arr, k[i]);
	doc = json_pack("{s:o}", "keys", arr);
	if (doc == NULL)
		die("json_pack failed");
	return dump_claims(doc);
}

/*
 * verify_payload, introspection's claim checks for a token whose signature
 * it remembers (broker/vcache.c): the same claims as a full verification,
 * and the same refusals for time, issuer and malformed payloads.
 */
static void
test_payload_claims(void)
{
	static const char dup[] = "{\"jti\":\"a\",\"jti\":\"b\"}";
	struct cs_claims c, d;
	char *p, *tok;

	p = dump_claims(base_claims());
	tok = jose_sign(&ka, "at+jwt", p, strlen(p));
	CHECK(tok != NULL);
	if (tok == NULL || cs_verify_at(verifiers[V_ANY_AUD], tok, NOW, &c) !=
	    CS_VERIFY_OK) {
		CHECK(0);
		free(tok);
		free(p);
		return;
	}
	CHECK(verify_payload(c.json, strlen(c.json), ISSUER, NULL, 0, NOW, &d) ==
	    CS_VERIFY_OK);
	CHECK_STR(d.jti, c.jti);
	CHECK_STR(d.sub, c.sub);
	CHECK_STR(d.scope, c.scope);
	CHECK_STR(d.json, c.json);
	CHECK(d.exp == c.exp && d.iat == c.iat && d.nbf == c.nbf);
	cs_claims_clear(&d);
	/* Time is checked at every call, not remembered. */
	CHECK(verify_payload(c.json, strlen(c.json), ISSUER, NULL, 0, c.exp, &d) ==
	    CS_VERIFY_EXPIRED);
	CHECK(d.jti == NULL && d.json == NULL);
	CHECK(verify_payload(c.json, strlen(c.json), ISSUER, NULL, 0,
	    c.iat - 1, &d) == CS_VERIFY_NOT_YET_VALID);
	CHECK(verify_payload(c.json, strlen(c.json), "https://other.example",
	    NULL, 0, NOW, &d) == CS_VERIFY_WRONG_ISSUER);
	CHECK(verify_payload(c.json, strlen(c.json), ISSUER, "https://x.example",
	    0, NOW, &d) == CS_VERIFY_WRONG_AUDIENCE);
	CHECK(verify_payload("{", 1, ISSUER, NULL, 0, NOW, &d) ==
	    CS_VERIFY_MALFORMED);
	CHECK(verify_payload("[]", 2, ISSUER, NULL, 0, NOW, &d) ==
	    CS_VERIFY_MALFORMED);
	CHECK(verify_payload(dup, strlen(dup), ISSUER, NULL, 0, NOW, &d) ==
	    CS_VERIFY_MALFORMED);
	CHECK(verify_payload("{}", 2, ISSUER, NULL, 0, NOW, &d) ==
	    CS_VERIFY_MISSING_CLAIM);
	CHECK(d.iss == NULL && d.json == NULL);
	cs_claims_clear(&c);
	free(tok);
	free(p);
}

/* cs_verify_at on v with the standard valid token signed by key. */
static enum cs_verify_result
verify_std(const struct cs_verifier *v, const struct jose_key *key)
{
	struct cs_claims c;
	enum cs_verify_result r;
	char *p, *tok;

	p = dump_claims(base_claims());
	tok = jose_sign(key, "at+jwt", p, strlen(p));
	r = cs_verify_at(v, tok, NOW, &c);
	cs_claims_clear(&c);
	free(tok);
	free(p);
	return r;
}

static void
test_jwks(void)
{
	struct cs_verifier *v;
	json_t *ja, *jb, *bad, *rsa, *set[2];
	unsigned char d[32];
	BIGNUM *bn = NULL;
	char *txt, *ds, path[] = "/tmp/test_verify.XXXXXX";
	int fd;

	v = cs_verifier_new(ISSUER, AUDIENCE);
	CHECK(v != NULL);
	if (v == NULL)
		return;
	ja = jose_key_public_jwk(&ka);
	jb = jose_key_public_jwk(&kb);
	CHECK(ja != NULL && jb != NULL);
	CHECK(cs_verifier_load_jwks(v, jwks_a, strlen(jwks_a)) == 1);
	CHECK(verify_std(v, &ka) == CS_VERIFY_OK);

	/* A's JWK with its private scalar d: refused, old keys kept. */
	if (EVP_PKEY_get_bn_param(ka.pkey, OSSL_PKEY_PARAM_PRIV_KEY,
	    &bn) != 1 || BN_bn2binpad(bn, d, sizeof(d)) != sizeof(d))
		die("cannot read A's private scalar");
	BN_clear_free(bn);
	ds = b64u(d, sizeof(d));
	OPENSSL_cleanse(d, sizeof(d));
	bad = json_deep_copy(ja);
	json_object_set_new(bad, "d", json_string(ds));
	OPENSSL_cleanse(ds, strlen(ds));
	free(ds);
	txt = jwks_text(&bad, 1);
	CHECK(cs_verifier_load_jwks(v, txt, strlen(txt)) == -1);
	OPENSSL_cleanse(txt, strlen(txt));
	free(txt);
	json_decref(bad);
	CHECK(verify_std(v, &ka) == CS_VERIFY_OK);

	/* A's key under B's kid, and under a made-up kid. */
	bad = json_deep_copy(ja);
	json_object_set_new(bad, "kid", json_string(kb.kid));
	txt = jwks_text(&bad, 1);
	CHECK(cs_verifier_load_jwks(v, txt, strlen(txt)) == -1);
	free(txt);
	json_object_set_new(bad, "kid", json_string("broker-key-1"));
	txt = jwks_text(&bad, 1);
	CHECK(cs_verifier_load_jwks(v, txt, strlen(txt)) == -1);
	free(txt);
	/* One bad key spoils the whole document, good ones included. */
	set[0] = ja;
	set[1] = bad;
	txt = jwks_text(set, 2);
	CHECK(cs_verifier_load_jwks(v, txt, strlen(txt)) == -1);
	free(txt);
	json_decref(bad);
	CHECK(verify_std(v, &ka) == CS_VERIFY_OK);

	/* An RSA key alone gives no usable key; beside A it is skipped. */
	rsa = json_pack("{s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", "rsa-1",
	    "e", "AQAB", "n", "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bO"
	    "dgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8U"
	    "DprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7s"
	    "vlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7"
	    "LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tej"
	    "vcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw");
	CHECK(rsa != NULL);
	txt = jwks_text(&rsa, 1);
	CHECK(cs_verifier_load_jwks(v, txt, strlen(txt)) == -1);
	free(txt);
	set[0] = rsa;
	set[1] = ja;
	txt = jwks_text(set, 2);
	CHECK(cs_verifier_load_jwks(v, txt, strlen(txt)) == 1);
	free(txt);
	json_decref(rsa);
	CHECK(verify_std(v, &ka) == CS_VERIFY_OK);

	/* Documents that are not a JWKS at all. */
	CHECK(cs_verifier_load_jwks(v, "{\"keys\":[", 9) == -1);
	CHECK(cs_verifier_load_jwks(v, "not json", 8) == -1);
	CHECK(cs_verifier_load_jwks(v, "", 0) == -1);
	CHECK(cs_verifier_load_jwks(v, "{}", 2) == -1);
	CHECK(cs_verifier_load_jwks(v, "{\"keys\":[]}", 11) == -1);
	CHECK(cs_verifier_load_jwks(v, "{\"keys\":{}}", 11) == -1);
	CHECK(cs_verifier_load_jwks(v, "[]", 2) == -1);
	/* The length is honoured: the valid text, cut short, is refused. */
	CHECK(cs_verifier_load_jwks(v, jwks_a, strlen(jwks_a) - 1) == -1);
	CHECK(verify_std(v, &ka) == CS_VERIFY_OK);

	/* Loading replaces the key set instead of adding to it. */
	set[0] = ja;
	set[1] = jb;
	txt = jwks_text(set, 2);
	CHECK(cs_verifier_load_jwks(v, txt, strlen(txt)) == 2);
	free(txt);
	CHECK(verify_std(v, &ka) == CS_VERIFY_OK);
	CHECK(verify_std(v, &kb) == CS_VERIFY_OK);
	CHECK(cs_verifier_load_jwks(v, jwks_a, strlen(jwks_a)) == 1);
	CHECK(verify_std(v, &ka) == CS_VERIFY_OK);
	CHECK(verify_std(v, &kb) == CS_VERIFY_UNKNOWN_KEY);

	/* From a file. */
	fd = mkstemp(path);
	CHECK(fd != -1);
	if (fd != -1) {
		CHECK(write(fd, jwks_a, strlen(jwks_a)) ==
		    (ssize_t)strlen(jwks_a));
		close(fd);
		CHECK(cs_verifier_load_jwks_file(v, path) == 1);
		CHECK(verify_std(v, &ka) == CS_VERIFY_OK);
		unlink(path);
	}
	CHECK(cs_verifier_load_jwks_file(v,
	    "/nonexistent/countersign/jwks.json") == -1);
	CHECK(verify_std(v, &ka) == CS_VERIFY_OK);

	json_decref(ja);
	json_decref(jb);
	cs_verifier_free(v);
	cs_verifier_free(NULL);
	CHECK(cs_verifier_new(NULL, AUDIENCE) == NULL);
}

static void
test_result_names(void)
{
	CHECK_STR(cs_verify_result_name(CS_VERIFY_OK), "ok");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_MALFORMED), "malformed");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_TOO_LARGE), "too_large");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_BAD_HEADER), "bad_header");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_UNKNOWN_KEY), "unknown_key");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_BAD_SIGNATURE),
	    "bad_signature");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_MISSING_CLAIM),
	    "missing_claim");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_WRONG_ISSUER),
	    "wrong_issuer");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_WRONG_AUDIENCE),
	    "wrong_audience");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_EXPIRED), "expired");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_NOT_YET_VALID),
	    "not_yet_valid");
	CHECK_STR(cs_verify_result_name(CS_VERIFY_INTERNAL), "internal");
	CHECK_STR(cs_verify_result_name((enum cs_verify_result)12), "unknown");
	CHECK_STR(cs_verify_result_name((enum cs_verify_result)99), "unknown");
	CHECK_STR(cs_verify_result_name((enum cs_verify_result)-1), "unknown");
}

/* A DPoP proof with the given header members and payload, Ed25519-signed. */
static char *
dpop_jws(EVP_PKEY *sk, const json_t *hdr, const json_t *pay)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned char sig[64];
	size_t siglen = sizeof(sig), o;
	char *h = json_dumps(hdr, JSON_COMPACT), *p = json_dumps(pay,
	    JSON_COMPACT), *tok = malloc(8192);

	o = b64_url_encode((unsigned char *)h, strlen(h), tok);
	tok[o++] = '.';
	o += b64_url_encode((unsigned char *)p, strlen(p), tok + o);
	if (EVP_DigestSignInit_ex(m, NULL, NULL, NULL, NULL, sk, NULL) != 1 ||
	    EVP_DigestSign(m, sig, &siglen, (unsigned char *)tok, o) != 1)
		siglen = 0;
	tok[o++] = '.';
	o += b64_url_encode(sig, siglen, tok + o);
	tok[o] = '\0';
	EVP_MD_CTX_free(m);
	free(h);
	free(p);
	return tok;
}

/*
 * cs_verify_dpop_proof: one good proof, then each rule broken alone, so a
 * refusal is always for the reason under test.
 */
static void
test_dpop_proof(void)
{
	static const char tok[] = "header.payload.signature";
	static const char htu[] = "https://forum.example/api/posts";
	const int64_t now = 1800000000;
	EVP_PKEY *sk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *sk2 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	unsigned char raw[32], md[32];
	size_t rawlen = sizeof(raw);
	char ath[JOSE_KID_LEN + 1], jti[64], *p;
	struct jose_key k;
	struct cs_claims c;
	json_t *jwk, *hdr, *pay, *bad;

	CHECK(EVP_PKEY_get_raw_public_key(sk, raw, &rawlen) == 1);
	CHECK(jose_key_init(&k, EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519",
	    NULL, raw, rawlen)) == 0);
	jwk = jose_key_public_jwk(&k);
	EVP_Digest(tok, strlen(tok), md, NULL, EVP_sha256(), NULL);
	b64_url_encode(md, sizeof(md), ath);
	memset(&c, 0, sizeof(c));
	c.cnf_jkt = k.kid;
	hdr = json_pack("{s:s, s:s, s:O}", "typ", "dpop+jwt", "alg", "EdDSA",
	    "jwk", jwk);
	pay = json_pack("{s:s, s:s, s:I, s:s, s:s}", "htm", "POST", "htu",
	    "https://forum.example/api/posts?page=2", "iat", (json_int_t)now,
	    "jti", "proof-1", "ath", ath);

	p = dpop_jws(sk, hdr, pay);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, jti,
	    sizeof(jti)) == CS_DPOP_OK);
	CHECK_STR(jti, "proof-1");
	CHECK(cs_verify_dpop_proof(&c, tok, p, "GET", htu, now, 60, NULL,
	    0) == CS_DPOP_WRONG_HTM);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST",
	    "https://forum.example/api", now, 60, NULL, 0) == CS_DPOP_WRONG_HTU);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now + 61, 60, NULL,
	    0) == CS_DPOP_BAD_IAT);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now - 61, 60, NULL,
	    0) == CS_DPOP_BAD_IAT);
	CHECK(cs_verify_dpop_proof(&c, "another.token.x", p, "POST", htu, now,
	    60, NULL, 0) == CS_DPOP_BAD_ATH);
	p[strlen(p) - 20] = p[strlen(p) - 20] == 'A' ? 'B' : 'A';
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_BAD_SIGNATURE);
	free(p);

	/* Signed by another key than the header's: bad signature. */
	p = dpop_jws(sk2, hdr, pay);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_BAD_SIGNATURE);
	free(p);
	/* A token bound to another key. */
	c.cnf_jkt = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
	p = dpop_jws(sk, hdr, pay);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_WRONG_KEY);
	c.cnf_jkt = NULL;
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_NOT_BOUND);
	c.cnf_jkt = k.kid;
	free(p);

	/* Header forgeries. */
	bad = json_deep_copy(hdr);
	json_object_set_new(bad, "typ", json_string("JWT"));
	p = dpop_jws(sk, bad, pay);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_BAD_HEADER);
	free(p);
	json_object_set_new(bad, "typ", json_string("dpop+jwt"));
	json_object_set_new(bad, "kid", json_string("x"));
	p = dpop_jws(sk, bad, pay);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_BAD_HEADER);
	free(p);
	json_object_del(bad, "kid");
	json_object_set_new(json_object_get(bad, "jwk"), "d",
	    json_string("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"));
	p = dpop_jws(sk, bad, pay);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_BAD_HEADER);
	free(p);
	json_decref(bad);
	bad = json_deep_copy(hdr);
	json_object_set_new(bad, "alg", json_string("ES256"));
	p = dpop_jws(sk, bad, pay);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_BAD_HEADER);
	free(p);
	json_decref(bad);

	/* Payload without ath, without jti. */
	bad = json_deep_copy(pay);
	json_object_del(bad, "ath");
	p = dpop_jws(sk, hdr, bad);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_BAD_ATH);
	free(p);
	json_object_set_new(bad, "ath", json_string(ath));
	json_object_del(bad, "jti");
	p = dpop_jws(sk, hdr, bad);
	CHECK(cs_verify_dpop_proof(&c, tok, p, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_MISSING_JTI);
	free(p);
	json_decref(bad);
	CHECK(cs_verify_dpop_proof(&c, tok, "a.b", "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_MALFORMED);
	CHECK(cs_verify_dpop_proof(&c, tok, NULL, "POST", htu, now, 60, NULL,
	    0) == CS_DPOP_MALFORMED);
	CHECK_STR(cs_dpop_result_name(CS_DPOP_BAD_ATH), "bad_ath");

	json_decref(hdr);
	json_decref(pay);
	json_decref(jwk);
	jose_key_clear(&k);
	EVP_PKEY_free(sk);
	EVP_PKEY_free(sk2);
}

int
main(int argc, char **argv)
{
	json_t *jwk;
	size_t i;

	(void)argc;
	if (jose_key_init(&ka, EVP_EC_gen("P-256")) != 0 ||
	    jose_key_init(&kb, EVP_EC_gen("P-256")) != 0)
		die("cannot create test keys");
	if ((jwk = jose_key_public_jwk(&ka)) == NULL)
		die("jose_key_public_jwk failed");
	jwks_a = jwks_text(&jwk, 1);
	json_decref(jwk);

	for (i = 0; i < V_COUNT; i++) {
		verifiers[i] = cs_verifier_new(ISSUER,
		    i == V_ANY_AUD ? NULL : AUDIENCE);
		if (verifiers[i] == NULL)
			die("cs_verifier_new failed");
		if (i != V_NO_KEYS)
			CHECK(cs_verifier_load_jwks(verifiers[i], jwks_a,
			    strlen(jwks_a)) == 1);
	}
	cs_verifier_set_leeway(verifiers[V_LEEWAY_0], 0);
	cs_verifier_set_leeway(verifiers[V_LEEWAY_NEG], -7);
	cs_verifier_set_leeway(verifiers[V_LEEWAY_BIG], 1000);

	test_result_names();
	test_valid_claims();
	test_payload_claims();
	test_table();
	test_jwks();
	test_dpop_proof();

	for (i = 0; i < V_COUNT; i++)
		cs_verifier_free(verifiers[i]);
	free(jwks_a);
	jose_key_clear(&ka);
	jose_key_clear(&kb);
	return check_summary(argv[0]);
}
