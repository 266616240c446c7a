/*
 * verify.c: the token verification library (include/countersign/verify.h).
 *
 * Signature and header rules are jose.c's; this file adds the RFC 9068
 * claim checks. The broker's introspection uses the same code through
 * verify_with_keys (verify_internal.h), so a service verifying offline and the
 * broker answering introspection can never disagree about a token.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "b64.h"
#include "countersign/verify.h"
#include "jose.h"
#include "verify_internal.h"

#define MAX_KEYS	16
#define JWKS_MAX	(1024 * 1024)

struct cs_verifier {
	char *issuer;
	char *audience;
	int leeway;
	size_t nkeys;
	struct jose_key keys[MAX_KEYS];
	const struct jose_key *ptrs[MAX_KEYS];
};

static const char *const result_names[] = {
	"ok", "malformed", "too_large", "bad_header", "unknown_key",
	"bad_signature", "missing_claim", "wrong_issuer", "wrong_audience",
	"expired", "not_yet_valid", "internal"
};

const char *
cs_verify_result_name(enum cs_verify_result r)
{
	if ((unsigned)r >= sizeof(result_names) / sizeof(result_names[0]))
		return "unknown";
	return result_names[r];
}

struct cs_verifier *
cs_verifier_new(const char *issuer, const char *audience)
{
	struct cs_verifier *v;

	if (issuer == NULL)
		return NULL;
	v = calloc(1, sizeof(*v));
	if (v == NULL)
		return NULL;
	v->issuer = strdup(issuer);
	v->audience = audience != NULL ? strdup(audience) : NULL;
	v->leeway = 30;
	if (v->issuer == NULL || (audience != NULL && v->audience == NULL)) {
		cs_verifier_free(v);
		return NULL;
	}
	return v;
}

static void
clear_keys(struct cs_verifier *v)
{
	size_t i;

	for (i = 0; i < v->nkeys; i++)
		jose_key_clear(&v->keys[i]);
	v->nkeys = 0;
}

void
cs_verifier_free(struct cs_verifier *v)
{
	if (v == NULL)
		return;
	clear_keys(v);
	free(v->issuer);
	free(v->audience);
	free(v);
}

void
cs_verifier_set_leeway(struct cs_verifier *v, int seconds)
{
	if (seconds < 0)
		seconds = 0;
	if (seconds > 300)
		seconds = 300;
	v->leeway = seconds;
}

int
cs_verifier_load_jwks(struct cs_verifier *v, const char *json, size_t len)
{
	struct jose_key loaded[MAX_KEYS];
	json_t *doc = NULL, *keys, *k;
	size_t i, n = 0;
	int rc = -1;

	memset(loaded, 0, sizeof(loaded));
	if (len > JWKS_MAX)
		return -1;
	doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
	keys = json_object_get(doc, "keys");
	if (!json_is_array(keys))
		goto out;
	json_array_foreach(keys, i, k) {
		const char *kty = json_string_value(json_object_get(k, "kty"));
		const char *crv = json_string_value(json_object_get(k, "crv"));

		const char *use = json_string_value(json_object_get(k, "use"));

		/* A published private key is a mistake we refuse to build on. */
		if (json_object_get(k, "d") != NULL)
			goto out;
		/* Keys we cannot use are skipped; keys we misread are fatal. */
		if (kty == NULL || strcmp(kty, "EC") != 0 || crv == NULL ||
		    strcmp(crv, "P-256") != 0 || (use != NULL && strcmp(use, "sig") != 0))
			continue;
		if (n == MAX_KEYS || jose_key_from_jwk(&loaded[n], k) != 0)
			goto out;
		n++;
	}
	if (n == 0)
		goto out;
	clear_keys(v);
	for (i = 0; i < n; i++) {
		v->keys[i] = loaded[i];
		v->ptrs[i] = &v->keys[i];
	}
	memset(loaded, 0, sizeof(loaded));
	v->nkeys = n;
	rc = (int)n;
out:
	for (i = 0; i < MAX_KEYS; i++)
		jose_key_clear(&loaded[i]);
	json_decref(doc);
	return rc;
}

int
cs_verifier_load_jwks_file(struct cs_verifier *v, const char *path)
{
	FILE *f;
	char *buf;
	size_t n;
	int rc;

	f = fopen(path, "rb");
	if (f == NULL)
		return -1;
	buf = malloc(JWKS_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		return -1;
	}
	n = fread(buf, 1, JWKS_MAX + 1, f);
	fclose(f);
	rc = n > JWKS_MAX ? -1 : cs_verifier_load_jwks(v, buf, n);
	free(buf);
	return rc;
}

static enum cs_verify_result
from_jose(enum jose_result r)
{
	switch (r) {
	case JOSE_OK:
		return CS_VERIFY_OK;
	case JOSE_E_TOO_LARGE:
		return CS_VERIFY_TOO_LARGE;
	case JOSE_E_HEADER:
		return CS_VERIFY_BAD_HEADER;
	case JOSE_E_KID:
		return CS_VERIFY_UNKNOWN_KEY;
	case JOSE_E_SIGNATURE:
		return CS_VERIFY_BAD_SIGNATURE;
	case JOSE_E_MALFORMED:
	default:
		return CS_VERIFY_MALFORMED;
	}
}

static int
take_string(json_t *claims, const char *name, char **out)
{
	json_t *v = json_object_get(claims, name);

	*out = NULL;
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -1;
	*out = strdup(json_string_value(v));
	return *out != NULL ? 0 : -1;
}

static int
take_time(json_t *claims, const char *name, int64_t *out)
{
	json_t *v = json_object_get(claims, name);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

/* The claim checks of a payload whose signature held; takes claims. */
static enum cs_verify_result
check_claims(json_t *claims, const char *issuer, const char *audience,
    int leeway, int64_t now, struct cs_claims *out)
{
	json_t *nbf, *cnf;
	enum cs_verify_result r;

	r = CS_VERIFY_MISSING_CLAIM;
	if (take_string(claims, "iss", &out->iss) != 0 ||
	    take_string(claims, "sub", &out->sub) != 0 ||
	    take_string(claims, "client_id", &out->client_id) != 0 ||
	    take_string(claims, "aud", &out->aud) != 0 ||
	    take_string(claims, "scope", &out->scope) != 0 ||
	    take_string(claims, "jti", &out->jti) != 0 ||
	    take_time(claims, "exp", &out->exp) != 0 ||
	    take_time(claims, "iat", &out->iat) != 0)
		goto out;
	nbf = json_object_get(claims, "nbf");
	out->nbf = out->iat;
	if (nbf != NULL && take_time(claims, "nbf", &out->nbf) != 0)
		goto out;
	if (strcmp(out->iss, issuer) != 0) {
		r = CS_VERIFY_WRONG_ISSUER;
		goto out;
	}
	if (audience != NULL && strcmp(out->aud, audience) != 0) {
		r = CS_VERIFY_WRONG_AUDIENCE;
		goto out;
	}
	/*
	 * exp comes from the token and may be as large as INT64_MAX, so
	 * exp + leeway could overflow; such a token simply never expires.
	 */
	if (out->exp <= INT64_MAX - leeway && now >= out->exp + leeway) {
		r = CS_VERIFY_EXPIRED;
		goto out;
	}
	if (out->nbf > now + leeway || out->iat > now + leeway) {
		r = CS_VERIFY_NOT_YET_VALID;
		goto out;
	}
	cnf = json_object_get(claims, "cnf");
	if (cnf != NULL && take_string(cnf, "jkt", &out->cnf_jkt) != 0)
		goto out;
	if (json_is_object(json_object_get(claims, "approval")) &&
	    take_string(json_object_get(claims, "approval"), "id",
	    &out->approval_id) != 0)
		goto out;
	out->json = json_dumps(claims, JSON_COMPACT);
	r = out->json != NULL ? CS_VERIFY_OK : CS_VERIFY_INTERNAL;
out:
	if (r != CS_VERIFY_OK)
		cs_claims_clear(out);
	json_decref(claims);
	return r;
}

enum cs_verify_result
verify_with_keys(const struct jose_key *const *keys, size_t nkeys,
    const char *issuer, const char *audience, int leeway, int64_t now,
    const char *token, size_t len, struct cs_claims *out)
{
	json_t *claims = NULL;
	enum cs_verify_result r;

	memset(out, 0, sizeof(*out));
	r = from_jose(jose_verify(token, len, "at+jwt", keys, nkeys, &claims));
	if (r != CS_VERIFY_OK)
		return r;
	return check_claims(claims, issuer, audience, leeway, now, out);
}

enum cs_verify_result
verify_payload(const char *payload, size_t len, const char *issuer,
    const char *audience, int leeway, int64_t now, struct cs_claims *out)
{
	json_t *claims;

	memset(out, 0, sizeof(*out));
	claims = json_loadb(payload, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(claims)) {
		json_decref(claims);
		return CS_VERIFY_MALFORMED;
	}
	return check_claims(claims, issuer, audience, leeway, now, out);
}

enum cs_verify_result
cs_verify_at(const struct cs_verifier *v, const char *token, int64_t now,
    struct cs_claims *out)
{
	size_t len;

	memset(out, 0, sizeof(*out));
	if (v == NULL || token == NULL)
		return CS_VERIFY_MALFORMED;
	/* Never scan an unbounded string: jose_verify caps it anyway. */
	len = strnlen(token, JOSE_MAX_TOKEN + 1);
	if (v->nkeys == 0)
		return CS_VERIFY_UNKNOWN_KEY;
	return verify_with_keys(v->ptrs, v->nkeys, v->issuer, v->audience,
	    v->leeway, now, token, len, out);
}

enum cs_verify_result
cs_verify(const struct cs_verifier *v, const char *token,
    struct cs_claims *out)
{
	return cs_verify_at(v, token, (int64_t)time(NULL), out);
}

void
cs_claims_clear(struct cs_claims *c)
{
	if (c == NULL)
		return;
	free(c->iss);
	free(c->sub);
	free(c->client_id);
	free(c->aud);
	free(c->scope);
	free(c->jti);
	free(c->approval_id);
	free(c->cnf_jkt);
	if (c->json != NULL)
		OPENSSL_cleanse(c->json, strlen(c->json));
	free(c->json);
	memset(c, 0, sizeof(*c));
}

int
cs_claims_has_scope(const struct cs_claims *c, const char *scope)
{
	const char *p;
	size_t n;

	if (c == NULL || c->scope == NULL || scope == NULL || *scope == '\0')
		return 0;
	n = strlen(scope);
	for (p = c->scope; *p != '\0';) {
		const char *end = strchr(p, ' ');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

		if (len == n && memcmp(p, scope, n) == 0)
			return 1;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return 0;
}

const char *
cs_dpop_result_name(enum cs_dpop_result r)
{
	switch (r) {
	case CS_DPOP_OK:
		return "ok";
	case CS_DPOP_NOT_BOUND:
		return "not_bound";
	case CS_DPOP_MALFORMED:
		return "malformed";
	case CS_DPOP_BAD_HEADER:
		return "bad_header";
	case CS_DPOP_BAD_SIGNATURE:
		return "bad_signature";
	case CS_DPOP_WRONG_KEY:
		return "wrong_key";
	case CS_DPOP_WRONG_HTM:
		return "wrong_htm";
	case CS_DPOP_WRONG_HTU:
		return "wrong_htu";
	case CS_DPOP_BAD_IAT:
		return "bad_iat";
	case CS_DPOP_BAD_ATH:
		return "bad_ath";
	case CS_DPOP_MISSING_JTI:
		return "missing_jti";
	}
	return "unknown";
}

/* True if v is a JSON string whose bytes are exactly s. */
static int
dpop_str_is(const json_t *v, const char *s)
{
	size_t n = strlen(s);

	return json_is_string(v) && json_string_length(v) == n &&
	    memcmp(json_string_value(v), s, n) == 0;
}

enum cs_dpop_result
cs_verify_dpop_proof(const struct cs_claims *c, const char *token,
    const char *proof, const char *htm, const char *htu, int64_t now,
    int window, char *jti, size_t jticap)
{
	static const char *const allowed[] = { "typ", "alg", "jwk", NULL };
	struct jose_key key = { 0 };
	json_t *peeked = NULL, *claims = NULL;
	const json_t *jwk, *v;
	unsigned char md[32];
	char want[JOSE_KID_LEN + 1];
	const char *s;
	size_t len, cut;
	int64_t iat;
	enum cs_dpop_result rc;

	if (jti != NULL && jticap > 0)
		jti[0] = '\0';
	if (c == NULL || c->cnf_jkt == NULL)
		return CS_DPOP_NOT_BOUND;
	rc = CS_DPOP_MALFORMED;
	if (token == NULL || proof == NULL || htm == NULL || htu == NULL ||
	    (len = strlen(proof)) == 0 || len > JOSE_MAX_TOKEN)
		goto out;
	if (jose_peek(proof, len, &peeked, NULL) != JOSE_OK)
		goto out;
	rc = CS_DPOP_BAD_HEADER;
	if (!dpop_str_is(json_object_get(peeked, "typ"), "dpop+jwt"))
		goto out;
	jwk = json_object_get(peeked, "jwk");
	if (!json_is_object(jwk) || json_object_get(jwk, "d") != NULL)
		goto out;
	/* The key from the header is only trusted once it is cnf.jkt's. */
	if (jose_key_from_jwk(&key, jwk) != 0)
		goto out;
	rc = CS_DPOP_WRONG_KEY;
	if (strlen(c->cnf_jkt) != JOSE_KID_LEN ||
	    CRYPTO_memcmp(key.kid, c->cnf_jkt, JOSE_KID_LEN) != 0)
		goto out;
	switch (jose_verify_key(proof, len, &key, allowed, NULL, &claims)) {
	case JOSE_OK:
		break;
	case JOSE_E_SIGNATURE:
		rc = CS_DPOP_BAD_SIGNATURE;
		goto out;
	case JOSE_E_HEADER:
		rc = CS_DPOP_BAD_HEADER;
		goto out;
	default:
		rc = CS_DPOP_MALFORMED;
		goto out;
	}
	rc = CS_DPOP_WRONG_HTM;
	if (!dpop_str_is(json_object_get(claims, "htm"), htm))
		goto out;
	rc = CS_DPOP_WRONG_HTU;
	v = json_object_get(claims, "htu");
	if (!json_is_string(v))
		goto out;
	s = json_string_value(v);
	for (cut = 0; cut < json_string_length(v) && s[cut] != '?' &&
	    s[cut] != '#'; cut++)
		;
	if (cut != strlen(htu) || memcmp(s, htu, cut) != 0)
		goto out;
	rc = CS_DPOP_BAD_IAT;
	v = json_object_get(claims, "iat");
	if (!json_is_integer(v))
		goto out;
	iat = (int64_t)json_integer_value(v);
	if (window < 0 || iat < now - window || iat > now + window)
		goto out;
	rc = CS_DPOP_BAD_ATH;
	v = json_object_get(claims, "ath");
	if (!json_is_string(v) || json_string_length(v) != JOSE_KID_LEN)
		goto out;
	if (EVP_Digest(token, strlen(token), md, NULL, EVP_sha256(),
	    NULL) != 1)
		goto out;
	b64_url_encode(md, sizeof(md), want);
	if (CRYPTO_memcmp(want, json_string_value(v), JOSE_KID_LEN) != 0)
		goto out;
	rc = CS_DPOP_MISSING_JTI;
	v = json_object_get(claims, "jti");
	if (!json_is_string(v) || json_string_length(v) == 0)
		goto out;
	if (jti != NULL && jticap > 0)
		snprintf(jti, jticap, "%s", json_string_value(v));
	rc = CS_DPOP_OK;
out:
	jose_key_clear(&key);
	json_decref(peeked);
	json_decref(claims);
	return rc;
}
