-- 0001_core: agents, scopes, grants, issued tokens, signing keys and the
-- audit log for the read path. Every statement here runs inside the one
-- transaction that `countersign migrate` opens for this file.

-- Agents are OAuth clients. The client secret is stored only as
-- HMAC-SHA256 under the broker's pepper (derived from the master key); the
-- broker generates 256-bit secrets, so a slow KDF would only hand attackers
-- a CPU denial of service (docs/decisions/0002-client-secret-hashing.md).
CREATE TABLE agents (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE
                 CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    client_id    text NOT NULL UNIQUE,
    secret_hash  bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
    owner        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);

-- Scopes say whether they read or write. Anything that is not exactly
-- 'read' is treated as a write scope by the broker (fail safe).
CREATE TABLE scopes (
    name             text PRIMARY KEY
                     CHECK (name ~ '^[\x21\x23-\x5B\x5D-\x7E]{1,128}$'),
    kind             text NOT NULL CHECK (kind IN ('read', 'write')),
    max_ttl_seconds  integer CHECK (max_ttl_seconds > 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- A grant lets one agent obtain one scope for one audience. Revoked grants
-- stay for the record; at most one live grant per (agent, scope, audience).
CREATE TABLE grants (
    id               bigserial PRIMARY KEY,
    agent_id         bigint NOT NULL REFERENCES agents(id),
    scope            text NOT NULL REFERENCES scopes(name),
    audience         text NOT NULL CHECK (length(audience) BETWEEN 1 AND 256),
    max_ttl_seconds  integer CHECK (max_ttl_seconds > 0),
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
CREATE UNIQUE INDEX grants_live_unique ON grants (agent_id, scope, audience)
    WHERE revoked_at IS NULL;
CREATE INDEX grants_lookup ON grants (agent_id, audience) WHERE revoked_at IS NULL;

-- Every token the broker has minted, by jti. The token itself is never
-- stored: a database leak must not hand out live bearer tokens.
CREATE TABLE tokens (
    jti          text PRIMARY KEY,
    agent_id     bigint NOT NULL REFERENCES agents(id),
    client_id    text NOT NULL,
    scopes       text[] NOT NULL,
    audience     text NOT NULL,
    kid          text NOT NULL,
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    use_count    integer NOT NULL DEFAULT 0
);
CREATE INDEX tokens_agent ON tokens (agent_id, expires_at);

-- Signing keys. The private half is AES-256-GCM encrypted under a key
-- derived from the master key; the kid is bound in as associated data so a
-- ciphertext cannot be moved to another row.
CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    alg          text NOT NULL CHECK (alg = 'ES256'),
    public_jwk   jsonb NOT NULL,
    private_enc  bytea NOT NULL,
    state        text NOT NULL CHECK (state IN ('current', 'previous', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);
-- At most one current key, so two brokers starting at once cannot both
-- create one.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((true))
    WHERE state = 'current';

-- The audit log. Rows are only ever inserted (privileges and a trigger
-- come with the audit-integrity migration). details never holds a token,
-- a secret or key material.
CREATE TABLE audit_events (
    seq      bigserial PRIMARY KEY,
    time     timestamptz NOT NULL DEFAULT clock_timestamp(),
    type     text NOT NULL,
    actor    text NOT NULL,
    subject  text,
    jti      text,
    details  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_jti ON audit_events (jti) WHERE jti IS NOT NULL;
CREATE INDEX audit_events_type_time ON audit_events (type, time);
