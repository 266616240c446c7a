/*
 * fuzz_dpop.c: libFuzzer target for the parsers behind DPoP proofs and
 * client assertions: jose_peek, jose_verify_key, jose_key_from_jwk,
 * jose_jwk_thumbprint and cs_verify_dpop_proof.
 *
 * Properties checked on every input:
 *
 * 1. The input as a DPoP proof for a token bound to a key generated here,
 *    whose private half never leaves this process: a proof that passes is
 *    a forgery. The same for the input as a client assertion under that
 *    key, ES256 and Ed25519.
 * 2. The input as a JWK: if jose_key_from_jwk accepts it, the RFC 7638
 *    thumbprint computed from its members is the key's kid, so a key's
 *    identity does not depend on which path loaded it.
 * 3. jose_peek and jose_verify_key honour their output contracts (NULL on
 *    error, objects on success).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "countersign/verify.h"
#include "jose.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct jose_key ec_key, ed_key;
static int ready;

static void
fuzz_init(void)
{
	if (ready)
		return;
	if (jose_key_init(&ec_key, EVP_EC_gen("P-256")) != 0 ||
	    jose_key_init(&ed_key, EVP_PKEY_Q_keygen(NULL, NULL,
	    "ED25519")) != 0)
		abort();
	ready = 1;
}

static void
fuzz_as_token(const char *s, size_t len)
{
	static const char *const allow[] = { "alg", "kid", "typ", NULL };
	struct cs_claims c;
	json_t *h = json_null(), *p = json_null();
	char *text;
	enum jose_result r;

	r = jose_peek(s, len, &h, &p);
	if (r == JOSE_OK ? !json_is_object(h) || !json_is_object(p) :
	    h != NULL || p != NULL)
		abort();
	json_decref(h);
	json_decref(p);

	h = p = json_null();
	r = jose_verify_key(s, len, &ec_key, allow, &h, &p);
	if (r == JOSE_OK || h != NULL || p != NULL)
		abort();
	if (jose_verify_key(s, len, &ed_key, allow, NULL, NULL) == JOSE_OK)
		abort();

	/* cs_verify_dpop_proof takes NUL-terminated text. */
	if (memchr(s, '\0', len) != NULL || (text = malloc(len + 1)) == NULL)
		return;
	memcpy(text, s, len);
	text[len] = '\0';
	memset(&c, 0, sizeof(c));
	c.cnf_jkt = ec_key.kid;
	if (cs_verify_dpop_proof(&c, "t.o.k", text, "POST", "https://x/y",
	    0, 1 << 30, NULL, 0) == CS_DPOP_OK)
		abort();
	c.cnf_jkt = ed_key.kid;
	if (cs_verify_dpop_proof(&c, "t.o.k", text, "POST", "https://x/y",
	    0, 1 << 30, NULL, 0) == CS_DPOP_OK)
		abort();
	free(text);
}

static void
fuzz_as_jwk(const char *s, size_t len)
{
	struct jose_key k;
	char tp[JOSE_KID_LEN + 1];
	json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, NULL);

	if (j == NULL)
		return;
	(void)jose_jwk_thumbprint(j, tp);
	if (jose_key_from_jwk(&k, j) == 0) {
		if (jose_jwk_thumbprint(j, tp) != 0 || strcmp(tp, k.kid) != 0)
			abort();
		jose_key_clear(&k);
	}
	json_decref(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_init();
	fuzz_as_token((const char *)data, size);
	fuzz_as_jwk((const char *)data, size);
	return 0;
}
