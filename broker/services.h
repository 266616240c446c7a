/*
 * services.h: resource servers ("services") that validate tokens through
 * introspection. A service is its own realm of client credentials and may
 * only learn about tokens issued for one of its audiences.
 */
#ifndef SERVICES_H
#define SERVICES_H

#include <stdint.h>
#include <jansson.h>

#include "countersign.h"
#include "form.h"

#define SERVICES_AUDIENCES_MAX	32

struct service {
	int64_t id;
	char name[CS_NAME_MAX + 1];
	/*
	 * Hex of the HMAC of the secret it authenticated with ("" for a key),
	 * for the database to re-check when the authentication came from a
	 * cache: a secret rotated since must not record uses.
	 */
	char cred[2 * 32 + 1];
	char *audiences[SERVICES_AUDIENCES_MAX];	/* owned */
	size_t naudiences;
};

/* services_clear(s): free what s holds. NULL-safe. */
void services_clear(struct service *s);

/* services_has_audience(s, aud): 1 if aud is one of s's audiences. */
int services_has_audience(const struct service *s, const char *aud);

/*
 * services_add(name, audiences, actor, secret, err): create a service for
 * the comma-separated audiences with a new random secret (stored as an
 * HMAC), audit service.created. secret (AGENTS_SECRET_LEN + 1 bytes) gets
 * the secret, shown once; the caller wipes it.
 */
enum cs_err services_add(const char *name, const char *audiences,
    const char *actor, char *secret, struct cs_error *err);

/*
 * services_add_keyed(name, audiences, actor, jwk, alg, thumbprint, err): as
 * services_add, for a service that authenticates with private_key_jwt:
 * jwk is the public JWK text, alg its pinned algorithm, thumbprint its
 * RFC 7638 thumbprint (clientauth_register_service prepares them). No
 * secret exists.
 */
enum cs_err services_add_keyed(const char *name, const char *audiences,
    const char *actor, const char *jwk, const char *alg,
    const char *thumbprint, struct cs_error *err);

/*
 * services_disable(name, actor, changed, err): stop the service's
 * credentials from authenticating, audited as service.disabled. *changed
 * is 0 when it was disabled already. CS_ERR_NOT_FOUND for an unknown name.
 */
enum cs_err services_disable(const char *name, const char *actor,
    int *changed, struct cs_error *err);

/*
 * services_rotate_secret(name, actor, secret, err): replace the service's
 * secret with a new random one, written to secret (AGENTS_SECRET_LEN + 1
 * bytes, shown once; the caller wipes it), audited as
 * service.secret_rotated. The old secret fails at once. A service with a
 * registered key gets CS_ERR_INVALID_REQUEST; a disabled one stays
 * disabled.
 */
enum cs_err services_rotate_secret(const char *name, const char *actor,
    char *secret, struct cs_error *err);

/* services_list(out): a new JSON array of services (no secrets). */
enum cs_err services_list(json_t **out);

/*
 * services_authenticate(authorization, body, endpoint, cached, out, err):
 * authenticate a service by client_secret_basic or client_secret_post,
 * like agents (one method, constant-time compare, audited failures as
 * service.auth_failed). cached: a success may come from, and goes to, a
 * cache of cache_ttl_ms; only for a caller whose statement re-checks in
 * the database that the service is enabled (introspection's use
 * recording). The caller clears out with services_clear.
 */
enum cs_err services_authenticate(const char *authorization,
    const struct form *body, const char *endpoint, int cached,
    struct service *out, struct cs_error *err);

/* services_cache_init(ttl_ms): the authentication cache (0: off). */
int services_cache_init(int ttl_ms);

/* services_cache_free(): wipe and free it. */
void services_cache_free(void);

#endif
