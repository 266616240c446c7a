/*
 * dpop.c: see dpop.h.
 *
 * The proof carries its own key, so unlike every other JWS the broker
 * reads, the key comes from the token. That is the point of DPoP: the
 * signature proves possession of whatever key the header names, and the
 * binding (cnf.jkt, or the key an approval request was made with) is what
 * ties that key to a token. Everything else in the proof is bounded and
 * checked only after the signature verifies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "b64.h"
#include "cache.h"
#include "db.h"
#include "dpop.h"
#include "replay.h"
#include "scopes.h"
#include "util.h"

static const char *const header_allowed[] = { "typ", "alg", "jwk", NULL };

/*
 * Unknown scopes are left out: the request is refused for them anyway,
 * with invalid_scope, after this check.
 */
static const struct db_stmt scopes_require = {
	"dpop_required",
	"SELECT coalesce(bool_or(coalesce(require_dpop, kind <> 'read')), "
	"false) FROM scopes WHERE name = ANY($1::text[])",
	1
};

/*
 * The read path: only read scopes that ask for DPoP explicitly. Write and
 * unknown scopes are refused there anyway, with invalid_scope, which says
 * more than a missing proof would.
 */
static const struct db_stmt read_scopes_require = {
	"dpop_read_required",
	"SELECT coalesce(bool_or(require_dpop), false) FROM scopes "
	"WHERE name = ANY($1::text[]) AND kind = 'read'",
	1
};

static const struct db_stmt bind_request = {
	"dpop_bind_request",
	"UPDATE approval_requests SET dpop_jkt = $2 "
	"WHERE id = $1 AND dpop_jkt IS NULL",
	2
};

static const struct db_stmt request_binding = {
	"dpop_request_binding",
	"SELECT r.dpop_jkt, (SELECT coalesce(bool_or(coalesce(s.require_dpop, "
	"s.kind <> 'read')) OR count(s.name) < cardinality(r.scopes), true) "
	"FROM scopes s WHERE s.name = ANY(r.scopes)) "
	"FROM approval_requests r WHERE r.id = $1 AND r.agent_id = $2::bigint",
	2
};

static enum cs_err
bad(struct cs_error *err, const char *why)
{
	return cs_error_set(err, CS_ERR_INVALID_DPOP_PROOF,
	    "DPoP proof refused: %s", why);
}

/* True if v is a string equal to s. */
static int
str_is(const json_t *v, const char *s)
{
	size_t n = strlen(s);

	return json_is_string(v) && json_string_length(v) == n &&
	    memcmp(json_string_value(v), s, n) == 0;
}

/* htu of the proof without query and fragment (RFC 9449 §4.3 item 9). */
static int
htu_matches(const json_t *v, const char *htu)
{
	const char *s;
	size_t n, cut;

	if (!json_is_string(v))
		return 0;
	s = json_string_value(v);
	n = json_string_length(v);
	for (cut = 0; cut < n && s[cut] != '?' && s[cut] != '#'; cut++)
		;
	return cut == strlen(htu) && memcmp(s, htu, cut) == 0;
}

/* base64url(SHA-256(token)) compared in constant time with ath. */
static int
ath_matches(const json_t *ath, const char *token)
{
	unsigned char md[32];
	char want[JOSE_KID_LEN + 1];

	if (!json_is_string(ath) || json_string_length(ath) != JOSE_KID_LEN)
		return 0;
	if (EVP_Digest(token, strlen(token), md, NULL, EVP_sha256(),
	    NULL) != 1)
		return 0;
	b64_url_encode(md, sizeof(md), want);
	return CRYPTO_memcmp(want, json_string_value(ath), JOSE_KID_LEN) == 0;
}

enum cs_err
dpop_check(const char *proof, const char *htm, const char *htu,
    const char *access_token, char *jkt, struct cs_error *err)
{
	struct jose_key key = { 0 };
	json_t *peeked = NULL, *header = NULL, *claims = NULL;
	const json_t *jwk, *alg, *v, *jti;
	char realm[JOSE_KID_LEN + 8];
	size_t len;
	int64_t now = util_now(), iat = 0;
	enum cs_err rc;

	jkt[0] = '\0';
	if (proof == NULL || (len = strlen(proof)) == 0 ||
	    len > JOSE_MAX_TOKEN) {
		rc = bad(err, "missing or too large");
		goto out;
	}
	/*
	 * The header is read before verification only to find the key it
	 * claims to be signed with; the signature check below proves it.
	 */
	if (jose_peek(proof, len, &peeked, NULL) != JOSE_OK) {
		rc = bad(err, "not a compact JWS");
		goto out;
	}
	if (!str_is(json_object_get(peeked, "typ"), "dpop+jwt")) {
		rc = bad(err, "typ must be dpop+jwt");
		goto out;
	}
	alg = json_object_get(peeked, "alg");
	if (!str_is(alg, "ES256") && !str_is(alg, "EdDSA")) {
		rc = bad(err, "alg must be ES256 or EdDSA");
		goto out;
	}
	jwk = json_object_get(peeked, "jwk");
	if (!json_is_object(jwk)) {
		rc = bad(err, "jwk header missing");
		goto out;
	}
	if (json_object_get(jwk, "d") != NULL) {
		rc = bad(err, "jwk must be a public key");
		goto out;
	}
	if (jose_key_from_jwk(&key, jwk) != 0) {
		rc = bad(err, "jwk is not a usable EC P-256 or Ed25519 key");
		goto out;
	}
	if (jose_verify_key(proof, len, &key, header_allowed, &header,
	    &claims) != JOSE_OK) {
		rc = bad(err, "bad header or signature");
		goto out;
	}
	if (!str_is(json_object_get(claims, "htm"), htm)) {
		rc = bad(err, "htm does not match the request method");
		goto out;
	}
	if (!htu_matches(json_object_get(claims, "htu"), htu)) {
		rc = bad(err, "htu does not match the request URL");
		goto out;
	}
	v = json_object_get(claims, "iat");
	if (!json_is_integer(v)) {
		rc = bad(err, "iat missing");
		goto out;
	}
	iat = (int64_t)json_integer_value(v);
	if (iat < now - DPOP_IAT_WINDOW || iat > now + DPOP_IAT_WINDOW) {
		rc = bad(err, "iat outside the accepted window");
		goto out;
	}
	jti = json_object_get(claims, "jti");
	if (!json_is_string(jti) || json_string_length(jti) == 0 ||
	    json_string_length(jti) > REPLAY_JTI_MAX ||
	    strlen(json_string_value(jti)) != json_string_length(jti)) {
		rc = bad(err, "jti missing");
		goto out;
	}
	if (access_token != NULL &&
	    !ath_matches(json_object_get(claims, "ath"), access_token)) {
		rc = bad(err, "ath does not match the access token");
		goto out;
	}
	/*
	 * Last, so a refused proof spends nothing. The proof is refused
	 * after iat + window anyway, so that is how long the jti is kept.
	 */
	snprintf(realm, sizeof(realm), "dpop:%s", key.kid);
	rc = replay_remember(realm, json_string_value(jti),
	    iat + DPOP_IAT_WINDOW + 1);
	if (rc == CS_ERR_CONFLICT) {
		rc = bad(err, "jti already used");
		goto out;
	}
	if (rc != CS_OK) {
		rc = cs_error_set(err, CS_ERR_UNAVAILABLE,
		    "the broker cannot check DPoP proofs right now");
		goto out;
	}
	memcpy(jkt, key.kid, JOSE_KID_LEN + 1);
out:
	jose_key_clear(&key);
	json_decref(peeked);
	json_decref(header);
	json_decref(claims);
	return rc;
}

/*
 * The read path's answers, by scope list, for cache_ttl_ms: asked on every
 * client-credentials request, so it must not cost a database round trip
 * each time. Never trusted alone: the statement that inserts a token
 * re-checks require_dpop for every scope against whether the token is
 * bound (tokens.c, batch.c), so a stale "not required" can only make a
 * request fail there, never mint a bearer token a scope forbids.
 */
static struct cache *read_cache;

int
dpop_cache_init(int ttl_ms)
{
	read_cache = cache_new(1024, sizeof(int), ttl_ms);
	return read_cache != NULL ? 0 : -1;
}

void
dpop_cache_free(void)
{
	cache_free(read_cache);
	read_cache = NULL;
}

void
dpop_cache_forget(const struct scope_list *scopes)
{
	char *joined = scopes_join(scopes);

	if (joined != NULL && read_cache != NULL)
		cache_remove(read_cache, joined);
	free(joined);
}

enum cs_err
dpop_required(const struct scope_list *scopes, int read_path, int *required)
{
	const char *params[1];
	struct db_result *res = NULL;
	char key[CACHE_KEY_MAX], *arr, *joined = NULL;
	enum cs_err rc;

	*required = 1;
	key[0] = '\0';
	if (read_path && read_cache != NULL &&
	    (joined = scopes_join(scopes)) != NULL &&
	    strlen(joined) < sizeof(key)) {
		snprintf(key, sizeof(key), "%s", joined);
		if (cache_get(read_cache, key, required)) {
			free(joined);
			return CS_OK;
		}
	}
	free(joined);
	arr = db_text_array((const char *const *)scopes->items, scopes->n);
	if (arr == NULL)
		return CS_ERR_INTERNAL;
	params[0] = arr;
	rc = db_exec(read_path ? &read_scopes_require : &scopes_require, params,
	    &res);
	if (rc == CS_OK) {
		*required = db_nrows(res) != 1 ||
		    strcmp(db_value(res, 0, 0), "f") != 0;
		if (key[0] != '\0')
			cache_put(read_cache, key, required);
	} else
		rc = CS_ERR_UNAVAILABLE;
	db_result_free(res);
	free(arr);
	return rc;
}

enum cs_err
dpop_bind_request(const char *id, const char *jkt)
{
	const char *params[2] = { id, jkt };

	return db_exec(&bind_request, params, NULL) == CS_OK ? CS_OK :
	    CS_ERR_UNAVAILABLE;
}

enum cs_err
dpop_request_binding(const char *id, int64_t agent_id, char *jkt,
    int *required)
{
	const char *params[2];
	struct db_result *res = NULL;
	char agentbuf[24];
	enum cs_err rc;

	jkt[0] = '\0';
	*required = 1;
	snprintf(agentbuf, sizeof(agentbuf), "%lld", (long long)agent_id);
	params[0] = id;
	params[1] = agentbuf;
	if (db_exec(&request_binding, params, &res) != CS_OK) {
		rc = CS_ERR_UNAVAILABLE;
		goto out;
	}
	if (db_nrows(res) != 1) {
		rc = CS_ERR_NOT_FOUND;
		goto out;
	}
	snprintf(jkt, JOSE_KID_LEN + 1, "%s", db_value(res, 0, 0));
	*required = strcmp(db_value(res, 0, 1), "f") != 0;
	rc = CS_OK;
out:
	db_result_free(res);
	return rc;
}
