-- Sessions of the approver web page (/ui/, docs/ui.md).
--
-- An approver signs in once with the API key and the browser then holds
-- only a random session id in an HttpOnly cookie. The id itself is never
-- stored: like API keys, only its HMAC under the master key's pepper is,
-- so a copy of this table cannot be replayed as cookies. Keeping sessions
-- here rather than in memory lets several brokers behind one load
-- balancer accept each other's sessions, and sign-out or disabling the
-- approver ends the session everywhere at once.
CREATE TABLE ui_sessions (
    id_hash      bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    approver_id  bigint NOT NULL REFERENCES approvers(id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
-- Expired rows are purged by expiry time.
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
CREATE INDEX ui_sessions_approver ON ui_sessions (approver_id);

-- The broker creates, reads and ends sessions; nothing ever updates one.
GRANT SELECT, INSERT, DELETE ON ui_sessions TO countersign_broker;
