-- 0003_services: resource servers (services) that introspect tokens, and
-- what revocation and key retirement need.

-- A service authenticates at the introspection endpoint and may only learn
-- about tokens whose audience is one of its own.
CREATE TABLE services (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE
                 CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    audiences    text[] NOT NULL CHECK (cardinality(audiences) BETWEEN 1 AND 32),
    secret_hash  bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);

ALTER TABLE tokens
    ADD COLUMN revoked_by text,
    ADD COLUMN last_used_at timestamptz;

-- When a key stopped being current: it must stay published for at least
-- the longest token lifetime after that.
ALTER TABLE signing_keys ADD COLUMN rotated_at timestamptz;
