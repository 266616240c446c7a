/*
 * fuzz_jose.c: libFuzzer target for jose_verify.
 *
 * Three properties are checked on every input:
 *
 * 1. The input as a token: the key is generated at start-up and never
 *    leaves this process, so any input that verifies is a forgery.
 * 2. The input as a payload (short inputs): jose_sign then jose_verify must
 *    succeed exactly when the input is a JSON object without duplicate
 *    members, and must hand back those same claims.
 * 3. The input as a header (short inputs), signed here with the real key:
 *    the header rules alone decide. A header that passes must be a JSON
 *    object of exactly alg "ES256", our kid and a string typ, and the
 *    canonical header must pass. Every "KID" in the input is replaced by
 *    the real kid, so the fuzzer can reach the code behind the kid lookup.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "b64.h"
#include "jose.h"

#define FUZZ_TYP	"at+jwt"
#define FUZZ_SHORT	2048

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct jose_key fuzz_key;
static const struct jose_key *fuzz_keys[1];

static void
fuzz_init(void)
{
	if (fuzz_keys[0] != NULL)
		return;
	if (jose_key_init(&fuzz_key, EVP_EC_gen("P-256")) != 0)
		abort();
	fuzz_keys[0] = &fuzz_key;
}

/* jose_verify, with the *claims contract checked; claims returned. */
static enum jose_result
fuzz_verify(const char *tok, size_t len, json_t **claims)
{
	enum jose_result r;

	*claims = json_null();
	r = jose_verify(tok, len, FUZZ_TYP, fuzz_keys, 1, claims);
	if (r == JOSE_OK ? !json_is_object(*claims) : *claims != NULL)
		abort();
	return r;
}

/* Property 1: arbitrary bytes never verify. */
static void
fuzz_as_token(const uint8_t *data, size_t size)
{
	json_t *claims;

	if (fuzz_verify((const char *)data, size, &claims) == JOSE_OK)
		abort();
}

/* Property 2: sign the input as a payload and verify it. */
static void
fuzz_as_payload(const uint8_t *data, size_t size)
{
	json_t *claims, *expect;
	enum jose_result r;
	char *tok;

	if ((tok = jose_sign(&fuzz_key, FUZZ_TYP, (const char *)data,
	    size)) == NULL)
		abort();
	r = fuzz_verify(tok, strlen(tok), &claims);
	expect = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
	    NULL);
	if (json_is_object(expect)) {
		if (r != JOSE_OK || !json_equal(claims, expect))
			abort();
	} else if (r != JOSE_E_MALFORMED)
		abort();
	json_decref(claims);
	json_decref(expect);
	free(tok);
}

/* The harness's own ES256 signer, raw R||S into sig. */
static void
fuzz_sign(const char *msg, size_t n, unsigned char *sig)
{
	EVP_MD_CTX *mctx;
	unsigned char der[80];
	const unsigned char *p = der;
	size_t derlen = sizeof(der);
	ECDSA_SIG *es;
	const BIGNUM *r, *s;

	if ((mctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit_ex(mctx, NULL, "SHA256", NULL, NULL,
	    fuzz_key.pkey, NULL) != 1 ||
	    EVP_DigestSign(mctx, der, &derlen, (const unsigned char *)msg,
	    n) != 1 ||
	    (es = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) == NULL)
		abort();
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) !=
	    32)
		abort();
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(mctx);
}

/* True if v is a JSON string equal to the NUL-free string s. */
static int
fuzz_str_is(const json_t *v, const char *s)
{
	return json_is_string(v) && json_string_length(v) == strlen(s) &&
	    memcmp(json_string_value(v), s, strlen(s)) == 0;
}

/* Property 3: the input as a validly signed header. */
static void
fuzz_as_header(const uint8_t *data, size_t size)
{
	static const char payload[] = "{}";
	unsigned char sig[64];
	char *hdr, *tok;
	size_t i, hlen = 0, o;
	json_t *claims, *h;
	enum jose_result r;
	int canonical;

	if ((hdr = malloc(size * JOSE_KID_LEN + 1)) == NULL)
		abort();
	for (i = 0; i < size; i++) {
		if (i + 3 <= size && memcmp(data + i, "KID", 3) == 0) {
			memcpy(hdr + hlen, fuzz_key.kid, JOSE_KID_LEN);
			hlen += JOSE_KID_LEN;
			i += 2;
		} else
			hdr[hlen++] = (char)data[i];
	}
	tok = malloc(b64_url_encoded_len(hlen) + b64_url_encoded_len(2) +
	    b64_url_encoded_len(64) + 3);
	if (tok == NULL)
		abort();
	o = b64_url_encode((const unsigned char *)hdr, hlen, tok);
	tok[o++] = '.';
	o += b64_url_encode((const unsigned char *)payload, 2, tok + o);
	fuzz_sign(tok, o, sig);
	tok[o++] = '.';
	o += b64_url_encode(sig, sizeof(sig), tok + o);

	r = fuzz_verify(tok, o, &claims);
	json_decref(claims);
	h = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, NULL);
	canonical = json_is_object(h) && json_object_size(h) == 3 &&
	    fuzz_str_is(json_object_get(h, "alg"), "ES256") &&
	    fuzz_str_is(json_object_get(h, "kid"), fuzz_key.kid) &&
	    fuzz_str_is(json_object_get(h, "typ"), FUZZ_TYP);
	if (canonical && o <= JOSE_MAX_TOKEN && r != JOSE_OK)
		abort();
	if (r == JOSE_OK && !(json_is_object(h) &&
	    json_object_size(h) == 3 &&
	    fuzz_str_is(json_object_get(h, "alg"), "ES256") &&
	    fuzz_str_is(json_object_get(h, "kid"), fuzz_key.kid) &&
	    json_is_string(json_object_get(h, "typ"))))
		abort();
	json_decref(h);
	free(tok);
	free(hdr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_init();
	fuzz_as_token(data, size);
	if (size <= FUZZ_SHORT) {
		fuzz_as_payload(data, size);
		fuzz_as_header(data, size);
	}
	return 0;
}
