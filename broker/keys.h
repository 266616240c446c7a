/*
 * keys.h: every piece of key material the broker holds.
 *
 * keys.c is the only module that touches private-key bytes. It reads the
 * master key once, derives from it (HKDF-SHA256, distinct labels) the pepper
 * for client-secret hashes and the key that wraps signing keys at rest, and
 * wipes the master key. Signing keys live in PostgreSQL, AES-256-GCM
 * encrypted with their kid as associated data; the broker keeps a decoded,
 * reference-counted key set in memory, reloaded every key_refresh seconds so
 * a rotation done by another process is picked up.
 */
#ifndef KEYS_H
#define KEYS_H

#include <stddef.h>

#include "config.h"
#include "countersign.h"
#include "jose.h"
#include <jansson.h>

#define KEYS_HASH_LEN	32

struct keyset;

/*
 * keys_init(cfg, errbuf, errlen): read the master key from
 * cfg->master_key_file (base64 of exactly 32 bytes, file not readable by
 * group or others), derive the working keys and wipe the master key.
 * Returns 0, or -1 with a reason in errbuf (the broker must not start).
 */
int keys_init(const struct broker_config *cfg, char *errbuf, size_t errlen);

/* keys_shutdown(): drop the key set and wipe derived keys. */
void keys_shutdown(void);

/*
 * keys_secret_hash(secret, len, out): HMAC-SHA256 of a client secret under
 * the pepper. Returns 0 or -1.
 */
int keys_secret_hash(const char *secret, size_t len,
    unsigned char out[KEYS_HASH_LEN]);

/* A generated credential: 32 random bytes, base64url. */
#define KEYS_SECRET_LEN	43

/*
 * keys_new_secret(secret, hash_param): a new random credential in secret
 * (KEYS_SECRET_LEN + 1 bytes), shown once to its owner, and in *hash_param
 * the bytea parameter of its HMAC, which is all the database keeps (caller
 * frees it). Returns 0, or -1 with secret wiped.
 */
int keys_new_secret(char secret[KEYS_SECRET_LEN + 1], char **hash_param);

/*
 * keys_secret_matches(secret, stored): 1 if secret's HMAC equals stored
 * (the database's hex text of a 32-byte bytea), else 0. stored may be NULL
 * for an unknown client: the same HMAC and comparison still run, against a
 * dummy, so timing does not reveal which clients exist. Constant time in
 * the secret's content.
 */
int keys_secret_matches(const char *secret, const char *stored);

/*
 * keys_acquire(ks): a reference to the current key set, loading it from the
 * database when it is missing or older than key_refresh (and creating the
 * first signing key if the database has none). A failed reload keeps the
 * previous set. Returns CS_OK and a reference the caller must give back with
 * keys_release, or CS_ERR_UNAVAILABLE when no set could be loaded.
 */
enum cs_err keys_acquire(struct keyset **ks);

/* keys_release(ks): give back a reference. NULL-safe. */
void keys_release(struct keyset *ks);

/* keys_signing(ks): the key new tokens are signed with. Borrowed. */
const struct jose_key *keys_signing(const struct keyset *ks);

/* keys_verifying(ks, n): every key tokens may verify against. Borrowed. */
const struct jose_key *const *keys_verifying(const struct keyset *ks,
    size_t *n);

/*
 * keys_jwks(ks, len, etag): the JWKS document (RFC 7517) of the set's
 * public keys, built once per load, and its ETag. Borrowed.
 */
const char *keys_jwks(const struct keyset *ks, size_t *len,
    const char **etag);

/*
 * keys_rotate(actor, new_kid, cap): create a new current signing key and
 * demote the current one to previous, with a key.rotated audit event, in
 * one transaction. Returns CS_OK and the new kid in new_kid (cap >= 44).
 */
enum cs_err keys_rotate(const char *actor, char *new_kid, size_t cap);

/*
 * keys_retire(kid, min_age, actor, retired): retire previous keys (all, or
 * the one named kid) that stopped being current at least min_age seconds
 * ago, so they leave the JWKS; each gets a key.retired event. A key still
 * inside that window is left alone: tokens signed with it may be live.
 * *retired is a new JSON array of the retired kids.
 */
enum cs_err keys_retire(const char *kid, int64_t min_age, const char *actor,
    json_t **retired);

/* keys_list(out): a new JSON array describing every signing key. */
enum cs_err keys_list(json_t **out);

#endif
