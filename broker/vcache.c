/*
 * vcache.c: see vcache.h.
 */
#include <string.h>

#include <openssl/evp.h>

#include "cache.h"
#include "util.h"
#include "vcache.h"
#include "verify_internal.h"

/*
 * A payload larger than this is verified every time rather than cached:
 * the broker's own tokens are well under it, and the table's size is
 * slots times this.
 */
#define PAYLOAD_MAX	1536

struct payload {
	size_t len;
	char json[PAYLOAD_MAX];
};

/*
 * Entries live as long as the longest token could; expiry is checked on
 * the payload at every hit anyway.
 */
#define ENTRY_TTL_MS	(24 * 3600 * 1000)

static struct cache *verified;

int
vcache_init(size_t slots)
{
	if (slots == 0)
		return 0;
	verified = cache_new(slots, sizeof(struct payload), ENTRY_TTL_MS);
	return verified != NULL ? 0 : -1;
}

void
vcache_free(void)
{
	cache_free(verified);
	verified = NULL;
}

/* The cache key: hex of SHA-256(etag NUL token). 0, or -1. */
static int
key_of(const char *etag, const char *token, size_t len, char hex[65])
{
	unsigned char md[32];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, etag, strlen(etag) + 1) == 1 &&
	    EVP_DigestUpdate(ctx, token, len) == 1 &&
	    EVP_DigestFinal_ex(ctx, md, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	util_hex(md, sizeof(md), hex);
	return 0;
}

enum cs_verify_result
vcache_verify(const struct jose_key *const *keys, size_t nkeys,
    const char *etag, const char *issuer, int leeway, int64_t now,
    const char *token, size_t len, struct cs_claims *out)
{
	struct payload p;
	enum cs_verify_result r;
	char key[65];

	if (verified == NULL || etag == NULL ||
	    key_of(etag, token, len, key) != 0)
		return verify_with_keys(keys, nkeys, issuer, NULL, leeway, now,
		    token, len, out);
	if (cache_get(verified, key, &p)) {
		r = verify_payload(p.json, p.len, issuer, NULL, leeway, now,
		    out);
		util_secure_zero(&p, sizeof(p));
		return r;
	}
	r = verify_with_keys(keys, nkeys, issuer, NULL, leeway, now, token,
	    len, out);
	/*
	 * Only a token whose signature and claims both held is remembered; a
	 * token refused for its time (not yet valid) is verified again.
	 */
	if (r == CS_VERIFY_OK && (p.len = strlen(out->json)) < PAYLOAD_MAX) {
		memcpy(p.json, out->json, p.len + 1);
		cache_put(verified, key, &p);
		util_secure_zero(&p, sizeof(p));
	}
	return r;
}
