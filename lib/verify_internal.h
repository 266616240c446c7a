/*
 * verify_internal.h: the verification core shared by the public library and
 * the broker's introspection endpoint.
 */
#ifndef VERIFY_INTERNAL_H
#define VERIFY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "countersign/verify.h"
#include "jose.h"

/*
 * verify_with_keys(keys, nkeys, issuer, audience, leeway, now, token, len,
 * out): verify a token of len bytes against keys[0..nkeys) and check its
 * claims (audience NULL: any). As cs_verify otherwise.
 */
enum cs_verify_result verify_with_keys(const struct jose_key *const *keys,
    size_t nkeys, const char *issuer, const char *audience, int leeway,
    int64_t now, const char *token, size_t len, struct cs_claims *out);

#endif
