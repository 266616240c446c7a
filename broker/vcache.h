/*
 * vcache.h: introspection's memory of the tokens whose signature it has
 * already checked.
 *
 * A service introspects the same token on every request its agent makes
 * with it, and the ES256 verification was the largest single cost of an
 * introspection. The cache is keyed by SHA-256 of the key set's ETag and
 * the exact token bytes, so it can only answer for a byte-identical token
 * already verified against the same public keys: a rotation or retirement
 * changes the ETag and every earlier entry misses. It remembers the
 * signature only; the payload's claims (issuer, expiry, not-before) are
 * checked again on every hit, and revocation, use limits and agents are
 * the database's, as before.
 */
#ifndef VCACHE_H
#define VCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "countersign/verify.h"
#include "jose.h"

/*
 * vcache_init(slots): remember up to slots tokens (0: off). Returns 0, or
 * -1 on allocation failure.
 */
int vcache_init(size_t slots);

/* vcache_free(): forget everything, wiping it. */
void vcache_free(void);

/*
 * vcache_verify(keys, nkeys, etag, issuer, leeway, now, token, len, out):
 * as verify_with_keys with any audience, but the signature check is
 * skipped for a token this process verified before against the key set
 * whose ETag is etag.
 */
enum cs_verify_result vcache_verify(const struct jose_key *const *keys,
    size_t nkeys, const char *etag, const char *issuer, int leeway,
    int64_t now, const char *token, size_t len, struct cs_claims *out);

#endif
