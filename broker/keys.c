/*
 * keys.c: see keys.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "audit.h"
#include "b64.h"
#include "db.h"
#include "keys.h"
#include "log.h"
#include "util.h"

#define KEYS_MAX		8
#define MASTER_LEN		32
#define GCM_NONCE		12
#define GCM_TAG			16
#define PRIV_MAX		512	/* PKCS#8 of a P-256 key is ~138 bytes */

struct keyset {
	int refs;
	size_t n;
	size_t signing;
	struct jose_key keys[KEYS_MAX];
	const struct jose_key *ptrs[KEYS_MAX];
	char *jwks;
	size_t jwks_len;
	char etag[48];
};

static unsigned char pepper[32];
static unsigned char wrap_key[32];
static int initialized;
static int64_t refresh_ms = 30000;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct keyset *current;
static int64_t current_loaded_ms;
static int64_t last_attempt_ms;
static int loading;

static const struct db_stmt load_keys = {
	"keys_load",
	"SELECT kid, private_enc, state FROM signing_keys "
	"WHERE state IN ('current', 'previous') "
	"ORDER BY state = 'current' DESC, created_at DESC LIMIT 8",
	0
};

static const struct db_stmt insert_first = {
	"keys_insert_first",
	"INSERT INTO signing_keys (kid, alg, public_jwk, private_enc, state) "
	"SELECT $1, 'ES256', $2::jsonb, $3::bytea, 'current' "
	"WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE state = 'current')",
	3
};

static const struct db_stmt demote_current = {
	"keys_demote",
	"UPDATE signing_keys SET state = 'previous', rotated_at = now() "
	"WHERE state = 'current' RETURNING kid",
	0
};

static const struct db_stmt insert_current = {
	"keys_insert_current",
	"INSERT INTO signing_keys (kid, alg, public_jwk, private_enc, state) "
	"VALUES ($1, 'ES256', $2::jsonb, $3::bytea, 'current')",
	3
};

static const struct db_stmt retire_keys = {
	"keys_retire",
	"WITH r AS (UPDATE signing_keys SET state = 'retired', retired_at = now() "
	"WHERE state = 'previous' AND ($1::text IS NULL OR kid = $1) "
	"AND rotated_at <= now() - make_interval(secs => $2::int) RETURNING kid) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'key.retired', $3, r.kid, '{}' FROM r RETURNING subject",
	3
};

static const struct db_stmt list_keys = {
	"keys_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('kid', kid, 'alg', alg, "
	"'state', state, 'created_at', created_at, 'rotated_at', rotated_at, "
	"'retired_at', retired_at) ORDER BY created_at), '[]'::jsonb)::text "
	"FROM signing_keys",
	0
};

static int
hkdf(const unsigned char *ikm, size_t ikmlen, const char *label,
    unsigned char *out, size_t outlen)
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *ctx = NULL;
	OSSL_PARAM params[5], *p = params;
	int rc = -1;

	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (kdf == NULL)
		goto out;
	ctx = EVP_KDF_CTX_new(kdf);
	if (ctx == NULL)
		goto out;
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
	    (void *)ikm, ikmlen);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
	    (void *)"countersign", 11);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    (void *)label, strlen(label));
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, out, outlen, params) != 1)
		goto out;
	rc = 0;
out:
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return rc;
}

int
keys_init(const struct broker_config *cfg, char *errbuf, size_t errlen)
{
	unsigned char master[MASTER_LEN + 8];
	struct stat st;
	char *text = NULL;
	size_t len = 0, mlen = 0;
	int rc = -1;

	refresh_ms = (int64_t)cfg->key_refresh * 1000;
	if (cfg->master_key_file[0] == '\0') {
		snprintf(errbuf, errlen, "no master key: set "
		    "COUNTERSIGN_MASTER_KEY_FILE (create one with: "
		    "umask 077; openssl rand -base64 32 > master.key)");
		goto out;
	}
	if (stat(cfg->master_key_file, &st) != 0) {
		snprintf(errbuf, errlen, "master key file: %s", strerror(errno));
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(errbuf, errlen, "master key file is readable by group "
		    "or others; chmod 600 it");
		goto out;
	}
	if (util_read_file(cfg->master_key_file, 256, &text, &len) != 0) {
		snprintf(errbuf, errlen, "master key file: %s", strerror(errno));
		goto out;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
	    text[len - 1] == ' '))
		len--;
	if (b64_std_decode(text, len, master, sizeof(master), &mlen) != 0 ||
	    mlen != MASTER_LEN) {
		snprintf(errbuf, errlen, "master key file must hold exactly 32 "
		    "random bytes in base64 (openssl rand -base64 32)");
		goto out;
	}
	if (hkdf(master, MASTER_LEN, "countersign/v1/client-secret-pepper",
	    pepper, sizeof(pepper)) != 0 ||
	    hkdf(master, MASTER_LEN, "countersign/v1/signing-key-wrap",
	    wrap_key, sizeof(wrap_key)) != 0) {
		snprintf(errbuf, errlen, "key derivation failed");
		goto out;
	}
	initialized = 1;
	rc = 0;
out:
	util_secure_zero(master, sizeof(master));
	if (text != NULL) {
		util_secure_zero(text, len);
		free(text);
	}
	return rc;
}

static void
keyset_free(struct keyset *ks)
{
	size_t i;

	if (ks == NULL)
		return;
	for (i = 0; i < ks->n; i++)
		jose_key_clear(&ks->keys[i]);
	free(ks->jwks);
	free(ks);
}

void
keys_shutdown(void)
{
	pthread_mutex_lock(&mu);
	if (current != NULL && --current->refs == 0)
		keyset_free(current);
	current = NULL;
	pthread_mutex_unlock(&mu);
	util_secure_zero(pepper, sizeof(pepper));
	util_secure_zero(wrap_key, sizeof(wrap_key));
	initialized = 0;
}

int
keys_secret_hash(const char *secret, size_t len,
    unsigned char out[KEYS_HASH_LEN])
{
	unsigned int outlen = 0;

	if (!initialized)
		return -1;
	if (HMAC(EVP_sha256(), pepper, sizeof(pepper),
	    (const unsigned char *)secret, len, out, &outlen) == NULL ||
	    outlen != KEYS_HASH_LEN)
		return -1;
	return 0;
}

int
keys_new_secret(char secret[KEYS_SECRET_LEN + 1], char **hash_param)
{
	unsigned char hash[KEYS_HASH_LEN];
	int rc = -1;

	*hash_param = NULL;
	if (util_random_token(32, secret, KEYS_SECRET_LEN + 1) != 0 ||
	    keys_secret_hash(secret, KEYS_SECRET_LEN, hash) != 0)
		goto out;
	*hash_param = db_bytea_param(hash, sizeof(hash));
	rc = *hash_param != NULL ? 0 : -1;
out:
	if (rc != 0)
		util_secure_zero(secret, KEYS_SECRET_LEN + 1);
	util_secure_zero(hash, sizeof(hash));
	return rc;
}

int
keys_secret_matches(const char *secret, const char *stored)
{
	static const unsigned char dummy[KEYS_HASH_LEN] = { 0 };
	unsigned char want[KEYS_HASH_LEN], got[KEYS_HASH_LEN];
	size_t wantlen = 0;
	int known, match;

	known = stored != NULL &&
	    db_bytea_value(stored, want, sizeof(want), &wantlen) == 0 &&
	    wantlen == KEYS_HASH_LEN;
	if (keys_secret_hash(secret, strlen(secret), got) != 0)
		return 0;
	match = CRYPTO_memcmp(got, known ? want : dummy, KEYS_HASH_LEN) == 0;
	util_secure_zero(want, sizeof(want));
	util_secure_zero(got, sizeof(got));
	return known && match;
}

/*
 * Encrypt a private key's PKCS#8 DER under wrap_key: nonce || ct || tag,
 * with the kid as associated data. Returns a new buffer or NULL.
 */
static unsigned char *
wrap(const unsigned char *pt, size_t ptlen, const char *kid, size_t *outlen)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *out = NULL;
	int len, ok = 0;

	out = malloc(GCM_NONCE + ptlen + GCM_TAG);
	ctx = EVP_CIPHER_CTX_new();
	if (out == NULL || ctx == NULL)
		goto out;
	if (RAND_bytes(out, GCM_NONCE) != 1)
		goto out;
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, wrap_key, out) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)kid,
	    (int)strlen(kid)) != 1 ||
	    EVP_EncryptUpdate(ctx, out + GCM_NONCE, &len, pt, (int)ptlen) != 1 ||
	    EVP_EncryptFinal_ex(ctx, out + GCM_NONCE + len, &len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG,
	    out + GCM_NONCE + ptlen) != 1)
		goto out;
	*outlen = GCM_NONCE + ptlen + GCM_TAG;
	ok = 1;
out:
	EVP_CIPHER_CTX_free(ctx);
	if (!ok) {
		free(out);
		out = NULL;
	}
	return out;
}

/* Decrypt what wrap() made into pt (cap bytes). Returns 0 or -1. */
static int
unwrap(const unsigned char *in, size_t inlen, const char *kid,
    unsigned char *pt, size_t cap, size_t *ptlen)
{
	EVP_CIPHER_CTX *ctx = NULL;
	size_t ctlen;
	int len, len2, rc = -1;

	if (inlen < GCM_NONCE + GCM_TAG + 1)
		return -1;
	ctlen = inlen - GCM_NONCE - GCM_TAG;
	if (ctlen > cap)
		return -1;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		goto out;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, wrap_key, in) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)kid,
	    (int)strlen(kid)) != 1 ||
	    EVP_DecryptUpdate(ctx, pt, &len, in + GCM_NONCE, (int)ctlen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG,
	    (void *)(in + GCM_NONCE + ctlen)) != 1 ||
	    EVP_DecryptFinal_ex(ctx, pt + len, &len2) != 1)
		goto out;
	*ptlen = (size_t)len + (size_t)len2;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	if (rc != 0)
		util_secure_zero(pt, cap);
	return rc;
}

/*
 * Generate a P-256 key and build the three parameters of an insert: kid,
 * public JWK text and the wrapped private key as a bytea literal. The
 * caller frees params[1] and params[2].
 */
static int
generate_key(char kid[JOSE_KID_LEN + 1], char **jwk_text, char **enc_param)
{
	EVP_PKEY *pkey = NULL;
	struct jose_key k;
	unsigned char *der = NULL, *enc = NULL;
	json_t *jwk = NULL;
	size_t enclen = 0;
	int derlen = 0, rc = -1;

	memset(&k, 0, sizeof(k));
	*jwk_text = NULL;
	*enc_param = NULL;
	pkey = EVP_EC_gen("P-256");
	if (pkey == NULL)
		goto out;
	derlen = i2d_PrivateKey(pkey, &der);
	if (derlen <= 0)
		goto out;
	if (jose_key_init(&k, pkey) != 0) {
		pkey = NULL;
		goto out;
	}
	pkey = NULL;
	memcpy(kid, k.kid, sizeof(k.kid));
	jwk = jose_key_public_jwk(&k);
	if (jwk == NULL)
		goto out;
	*jwk_text = json_dumps(jwk, JSON_COMPACT);
	enc = wrap(der, (size_t)derlen, kid, &enclen);
	if (*jwk_text == NULL || enc == NULL)
		goto out;
	*enc_param = db_bytea_param(enc, enclen);
	if (*enc_param == NULL)
		goto out;
	rc = 0;
out:
	if (der != NULL) {
		util_secure_zero(der, (size_t)derlen);
		OPENSSL_free(der);
	}
	free(enc);
	json_decref(jwk);
	jose_key_clear(&k);
	EVP_PKEY_free(pkey);
	if (rc != 0) {
		free(*jwk_text);
		free(*enc_param);
		*jwk_text = NULL;
		*enc_param = NULL;
	}
	return rc;
}

static enum cs_err
insert_key(const struct db_stmt *st, char *kid_out)
{
	char kid[JOSE_KID_LEN + 1], *jwk = NULL, *enc = NULL;
	const char *params[3];
	enum cs_err rc;

	if (generate_key(kid, &jwk, &enc) != 0)
		return CS_ERR_INTERNAL;
	params[0] = kid;
	params[1] = jwk;
	params[2] = enc;
	rc = db_exec(st, params, NULL);
	free(jwk);
	free(enc);
	if (rc == CS_OK && kid_out != NULL)
		memcpy(kid_out, kid, sizeof(kid));
	return rc;
}

/* Build the JWKS body and its ETag for a freshly loaded set. */
static int
build_jwks(struct keyset *ks)
{
	json_t *doc = NULL, *arr;
	unsigned char md[32];
	char b64[24];
	size_t i;
	int rc = -1;

	doc = json_object();
	arr = json_array();
	if (doc == NULL || arr == NULL || json_object_set_new(doc, "keys", arr) != 0)
		goto out;
	for (i = 0; i < ks->n; i++)
		if (json_array_append_new(arr, jose_key_public_jwk(&ks->keys[i])) != 0)
			goto out;
	ks->jwks = json_dumps(doc, JSON_COMPACT);
	if (ks->jwks == NULL)
		goto out;
	ks->jwks_len = strlen(ks->jwks);
	if (EVP_Digest(ks->jwks, ks->jwks_len, md, NULL, EVP_sha256(), NULL) != 1)
		goto out;
	b64_url_encode(md, 16, b64);
	snprintf(ks->etag, sizeof(ks->etag), "\"%s\"", b64);
	rc = 0;
out:
	json_decref(doc);
	return rc;
}

/* Read the key set from the database, creating the first key if needed. */
static enum cs_err
load_from_db(struct keyset **out)
{
	struct db_result *res = NULL;
	struct keyset *ks = NULL;
	unsigned char enc[PRIV_MAX + GCM_NONCE + GCM_TAG], pt[PRIV_MAX];
	char kid[JOSE_KID_LEN + 1];
	enum cs_err rc;
	int attempt, i;

	*out = NULL;
	for (attempt = 0; attempt < 2; attempt++) {
		rc = db_exec(&load_keys, NULL, &res);
		if (rc != CS_OK)
			goto out;
		if (db_nrows(res) > 0 && strcmp(db_value(res, 0, 2), "current") == 0)
			break;
		db_result_free(res);
		res = NULL;
		/* No current key yet: make one. A concurrent broker may win. */
		rc = insert_key(&insert_first, kid);
		if (rc != CS_OK && rc != CS_ERR_CONFLICT)
			goto out;
		if (rc == CS_OK) {
			json_t *d = json_pack("{s:s}", "reason", "first start");

			/* The key exists either way; a lost audit row is logged. */
			if (audit_append("key.created", "broker", kid, NULL, d) != CS_OK)
				log_error("could not audit the first signing key");
			json_decref(d);
			log_fields(LOG_LEVEL_INFO, "created the first signing key",
			    json_pack("{s:s}", "kid", kid));
		}
	}
	if (res == NULL) {
		rc = CS_ERR_INTERNAL;
		goto out;
	}
	ks = calloc(1, sizeof(*ks));
	if (ks == NULL) {
		rc = CS_ERR_INTERNAL;
		goto out;
	}
	for (i = 0; i < db_nrows(res) && i < KEYS_MAX; i++) {
		const unsigned char *p = pt;
		const char *row_kid = db_value(res, i, 0);
		EVP_PKEY *pkey;
		size_t enclen, ptlen;

		if (db_bytea_value(db_value(res, i, 1), enc, sizeof(enc), &enclen) != 0 ||
		    unwrap(enc, enclen, row_kid, pt, sizeof(pt), &ptlen) != 0) {
			log_fields(LOG_LEVEL_ERROR, "cannot decrypt signing key "
			    "(wrong master key?)", json_pack("{s:s}", "kid", row_kid));
			continue;
		}
		pkey = d2i_PrivateKey(EVP_PKEY_EC, NULL, &p, (long)ptlen);
		util_secure_zero(pt, sizeof(pt));
		if (pkey == NULL || jose_key_init(&ks->keys[ks->n], pkey) != 0) {
			log_fields(LOG_LEVEL_ERROR, "bad signing key",
			    json_pack("{s:s}", "kid", row_kid));
			continue;
		}
		if (strcmp(ks->keys[ks->n].kid, row_kid) != 0) {
			log_fields(LOG_LEVEL_ERROR, "signing key does not match "
			    "its kid", json_pack("{s:s}", "kid", row_kid));
			jose_key_clear(&ks->keys[ks->n]);
			continue;
		}
		ks->ptrs[ks->n] = &ks->keys[ks->n];
		ks->n++;
	}
	/* Row 0 is the current key; without it we must not sign at all. */
	if (ks->n == 0 || strcmp(ks->keys[0].kid, db_value(res, 0, 0)) != 0) {
		rc = CS_ERR_INTERNAL;
		goto out;
	}
	ks->signing = 0;
	if (build_jwks(ks) != 0) {
		rc = CS_ERR_INTERNAL;
		goto out;
	}
	ks->refs = 1;
	*out = ks;
	ks = NULL;
	rc = CS_OK;
out:
	util_secure_zero(pt, sizeof(pt));
	db_result_free(res);
	keyset_free(ks);
	return rc;
}

enum cs_err
keys_acquire(struct keyset **out)
{
	struct keyset *fresh = NULL;
	int64_t now = util_monotonic_ms();
	int do_load = 0;
	enum cs_err rc;

	*out = NULL;
	pthread_mutex_lock(&mu);
	if (!loading && (current == NULL || now - current_loaded_ms >= refresh_ms) &&
	    (current != NULL || now - last_attempt_ms >= 250 || last_attempt_ms == 0)) {
		loading = 1;
		do_load = 1;
		last_attempt_ms = now;
	}
	pthread_mutex_unlock(&mu);

	if (do_load) {
		rc = load_from_db(&fresh);
		pthread_mutex_lock(&mu);
		loading = 0;
		if (rc == CS_OK) {
			if (current != NULL && --current->refs == 0)
				keyset_free(current);
			current = fresh;
			current_loaded_ms = util_monotonic_ms();
		}
		pthread_mutex_unlock(&mu);
	}

	pthread_mutex_lock(&mu);
	if (current != NULL) {
		current->refs++;
		*out = current;
	}
	pthread_mutex_unlock(&mu);
	return *out != NULL ? CS_OK : CS_ERR_UNAVAILABLE;
}

void
keys_release(struct keyset *ks)
{
	int last;

	if (ks == NULL)
		return;
	pthread_mutex_lock(&mu);
	last = --ks->refs == 0;
	pthread_mutex_unlock(&mu);
	if (last)
		keyset_free(ks);
}

const struct jose_key *
keys_signing(const struct keyset *ks)
{
	return &ks->keys[ks->signing];
}

const struct jose_key *const *
keys_verifying(const struct keyset *ks, size_t *n)
{
	*n = ks->n;
	return ks->ptrs;
}

const char *
keys_jwks(const struct keyset *ks, size_t *len, const char **etag)
{
	*len = ks->jwks_len;
	if (etag != NULL)
		*etag = ks->etag;
	return ks->jwks;
}

enum cs_err
keys_rotate(const char *actor, char *new_kid, size_t cap)
{
	char kid[JOSE_KID_LEN + 1];
	struct db_result *res = NULL;
	json_t *d = NULL;
	enum cs_err rc;

	if (cap < sizeof(kid))
		return CS_ERR_INTERNAL;
	rc = db_begin();
	if (rc != CS_OK)
		return rc;
	rc = db_exec(&demote_current, NULL, &res);
	if (rc == CS_OK)
		rc = insert_key(&insert_current, kid);
	if (rc == CS_OK) {
		d = json_pack("{s:s?}", "previous",
		    db_nrows(res) > 0 ? db_value(res, 0, 0) : NULL);
		rc = d != NULL ? audit_append("key.rotated", actor, kid, NULL, d) :
		    CS_ERR_INTERNAL;
	}
	if (rc == CS_OK)
		rc = db_commit();
	json_decref(d);
	db_result_free(res);
	if (rc != CS_OK) {
		db_rollback();
		return rc;
	}
	memcpy(new_kid, kid, sizeof(kid));
	return CS_OK;
}

enum cs_err
keys_retire(const char *kid, int64_t min_age, const char *actor,
    json_t **retired)
{
	const char *params[3];
	struct db_result *res = NULL;
	char age[24];
	enum cs_err rc;
	int i;

	*retired = json_array();
	if (*retired == NULL)
		return CS_ERR_INTERNAL;
	snprintf(age, sizeof(age), "%lld", (long long)min_age);
	params[0] = kid;
	params[1] = age;
	params[2] = actor;
	rc = db_exec(&retire_keys, params, &res);
	for (i = 0; rc == CS_OK && i < db_nrows(res); i++)
		json_array_append_new(*retired, json_string(db_value(res, i, 0)));
	db_result_free(res);
	return rc;
}

enum cs_err
keys_list(json_t **out)
{
	return db_exec_json(&list_keys, NULL, out);
}
