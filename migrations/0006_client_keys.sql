-- 0006_client_keys: agents that authenticate with a key pair instead of a
-- shared secret (private_key_jwt, RFC 7523), and the replay memory that
-- signed client assertions and DPoP proofs (RFC 9449) need.

-- An agent has exactly one kind of credential: a secret (stored as its
-- HMAC) or a public key (stored as a public JWK, never a private one). An
-- agent with a key cannot fall back to a secret, so a leaked or guessed
-- secret is worth nothing for it.
ALTER TABLE agents ALTER COLUMN secret_hash DROP NOT NULL;
ALTER TABLE agents
    ADD COLUMN public_jwk jsonb
        CHECK (public_jwk IS NULL OR (jsonb_typeof(public_jwk) = 'object'
               AND NOT public_jwk ? 'd')),
    ADD COLUMN key_alg text CHECK (key_alg IN ('ES256', 'EdDSA')),
    ADD COLUMN key_thumbprint text CHECK (key_thumbprint ~ '^[A-Za-z0-9_-]{43}$'),
    ADD CONSTRAINT agents_one_credential CHECK (
        (secret_hash IS NOT NULL AND public_jwk IS NULL AND key_alg IS NULL
         AND key_thumbprint IS NULL) OR
        (secret_hash IS NULL AND public_jwk IS NOT NULL
         AND key_alg IS NOT NULL AND key_thumbprint IS NOT NULL));

-- Services (introspection clients) may hold a key instead of a secret too,
-- under the same rule.
ALTER TABLE services ALTER COLUMN secret_hash DROP NOT NULL;
ALTER TABLE services
    ADD COLUMN public_jwk jsonb
        CHECK (public_jwk IS NULL OR (jsonb_typeof(public_jwk) = 'object'
               AND NOT public_jwk ? 'd')),
    ADD COLUMN key_alg text CHECK (key_alg IN ('ES256', 'EdDSA')),
    ADD COLUMN key_thumbprint text CHECK (key_thumbprint ~ '^[A-Za-z0-9_-]{43}$'),
    ADD CONSTRAINT services_one_credential CHECK (
        (secret_hash IS NOT NULL AND public_jwk IS NULL AND key_alg IS NULL
         AND key_thumbprint IS NULL) OR
        (secret_hash IS NULL AND public_jwk IS NOT NULL
         AND key_alg IS NOT NULL AND key_thumbprint IS NOT NULL));

-- Identifiers (jti) of signed one-time artefacts seen recently, so that a
-- captured client assertion or DPoP proof cannot be played again. realm
-- separates the namespaces ('client:NAME' and 'service:NAME' for
-- assertions, 'dpop:JKT' for proofs) so one client cannot burn another's jti. A row is needed only
-- until the artefact would be refused as expired anyway; rows past
-- expires_at are pruned. Kept in PostgreSQL, not in memory, so that two
-- broker processes behind one load balancer share it.
CREATE TABLE seen_jtis (
    realm       text NOT NULL CHECK (length(realm) BETWEEN 1 AND 200),
    jti         text NOT NULL CHECK (length(jti) BETWEEN 1 AND 256),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (realm, jti)
);
CREATE INDEX seen_jtis_expiry ON seen_jtis (expires_at);

-- DPoP policy per scope: NULL means the default (required for write
-- scopes, optional for read scopes); true or false overrides it.
ALTER TABLE scopes ADD COLUMN require_dpop boolean;

-- The key (RFC 7638 thumbprint) an approval request was made with, which
-- its token must be collected with. (A token's own binding is its signed
-- cnf.jkt claim; nothing reads it from a table.)
ALTER TABLE approval_requests
    ADD COLUMN dpop_jkt text CHECK (dpop_jkt ~ '^[A-Za-z0-9_-]{43}$');

-- UPDATE: a remembered jti whose time has passed is taken over in place.
GRANT SELECT, INSERT, UPDATE, DELETE ON seen_jtis TO countersign_broker;
