/*
 * clientauth.h: private_key_jwt client authentication (RFC 7523 §2.2 with
 * RFC 7521 §4.2): the client proves possession of a registered key by
 * signing a short-lived JWT about itself, so no shared secret exists that
 * could leak from the client, the broker or a log.
 */
#ifndef CLIENTAUTH_H
#define CLIENTAUTH_H

#include <jansson.h>

#include "agents.h"
#include "config.h"
#include "countersign.h"
#include "form.h"
#include "jose.h"
#include "services.h"

#define CLIENTAUTH_ASSERTION_TYPE \
	"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

/* An assertion may expire at most this far ahead (docs/private-key-jwt.md). */
#define CLIENTAUTH_MAX_LIFETIME	300
/* Clock skew tolerated on exp, nbf and iat, in seconds. */
#define CLIENTAUTH_LEEWAY	30

/*
 * clientauth_present(body): 1 if the request uses (or tries to use)
 * assertion-based client authentication, i.e. carries client_assertion or
 * client_assertion_type.
 */
int clientauth_present(const struct form *body);

/*
 * clientauth_authenticate(cfg, authorization, body, endpoint, out, err):
 * authenticate an agent by the client assertion in body. Another method in
 * the same request (a Basic header or client_secret) is CS_ERR_INVALID_
 * REQUEST. The assertion must be signed with the agent's registered key
 * under the algorithm that key is pinned to; iss and sub must both be the
 * client_id (and equal client_id in the body if present); aud must name
 * the issuer, the token endpoint or the endpoint called; exp is required and
 * at most CLIENTAUTH_MAX_LIFETIME ahead; nbf and iat must not lie in the
 * future (CLIENTAUTH_LEEWAY allowed); jti is required and accepted once
 * (replay.h). Every failure writes client.auth_failed with a reason (never
 * the assertion) and returns CS_ERR_INVALID_CLIENT, or CS_ERR_UNAVAILABLE
 * when nothing can be checked or recorded. endpoint is the path segment
 * after /oauth2/ ("token", "bc-authorize", "revoke").
 */
enum cs_err clientauth_authenticate(const struct broker_config *cfg,
    const char *authorization, const struct form *body, const char *endpoint,
    struct client *out, struct cs_error *err);

/*
 * clientauth_authenticate_service(cfg, authorization, body, endpoint, out,
 * err): the same for a service registered with a key, at the introspection
 * endpoint; failures are audited as service.auth_failed. The caller clears
 * out with services_clear.
 */
enum cs_err clientauth_authenticate_service(const struct broker_config *cfg,
    const char *authorization, const struct form *body, const char *endpoint,
    struct service *out, struct cs_error *err);

/*
 * clientauth_register(name, owner, actor, key, client_id, err): create an
 * agent that authenticates with key (a public key, whose JWK alone is
 * stored) instead of a secret, and audit agent.created in the same
 * transaction. client_id receives CS_NAME_MAX+1 bytes. CS_ERR_CONFLICT if
 * the name is taken.
 */
enum cs_err clientauth_register(const char *name, const char *owner,
    const char *actor, const struct jose_key *key, char *client_id,
    struct cs_error *err);

/*
 * clientauth_register_service(name, audiences, actor, key, err): create a
 * service (comma-separated audiences) that authenticates at introspection
 * with key instead of a secret; see services_add_keyed.
 */
enum cs_err clientauth_register_service(const char *name,
    const char *audiences, const char *actor, const struct jose_key *key,
    struct cs_error *err);

/*
 * clientauth_load_key(path, key, err): read a public key file, either PEM
 * SubjectPublicKeyInfo or a JWK JSON object (EC P-256 or Ed25519), into
 * key (cleared by the caller with jose_key_clear). Private keys are refused.
 */
enum cs_err clientauth_load_key(const char *path, struct jose_key *key,
    struct cs_error *err);

#endif
