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

/*
 * verify_payload(payload, len, issuer, audience, leeway, now, out): the
 * claim checks of verify_with_keys alone, on the JSON payload (out->json)
 * of a token whose signature verify_with_keys already accepted: for a
 * caller that remembers such tokens, so that time, issuer and audience
 * are still checked on every use.
 */
enum cs_verify_result verify_payload(const char *payload, size_t len,
    const char *issuer, const char *audience, int leeway, int64_t now,
    struct cs_claims *out);

#endif
