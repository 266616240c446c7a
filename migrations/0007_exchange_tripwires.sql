-- 0007_exchange_tripwires: RFC 8693 token exchange (down-scoping and
-- delegation to a sub-agent) and tripwires that suspend an agent.

-- A token minted by exchange names the token it was exchanged from and the
-- agent that acts with it (the "act" claim). The actor is kept by id so
-- that introspection can refuse a delegated token once its actor is
-- disabled or suspended, not only once its subject agent is.
ALTER TABLE tokens
    ADD COLUMN subject_jti text REFERENCES tokens(jti),
    ADD COLUMN actor_agent_id bigint REFERENCES agents(id);
-- The new_audience tripwire asks "has this agent ever had a token for this
-- audience?"; this index answers it without scanning the agent's tokens.
CREATE INDEX tokens_agent_audience ON tokens (agent_id, audience);

-- A suspended agent is also disabled (disabled_at is set), so every
-- existing check (authentication, the token insert's re-check,
-- introspection) refuses it without change; suspended_at and
-- suspended_by tell a suspension by a tripwire apart from an operator's
-- kill switch, and only a suspension can be lifted by "agent resume".
-- resumed_at bounds the counting windows: what an agent did before an
-- operator resumed it does not trip the same rule again.
ALTER TABLE agents
    ADD COLUMN suspended_at timestamptz,
    ADD COLUMN suspended_by bigint,
    ADD COLUMN resumed_at timestamptz,
    ADD CONSTRAINT agents_suspended_is_disabled
        CHECK (suspended_at IS NULL OR disabled_at IS NOT NULL);

-- Tripwire rules. kind:
--   write_requests  more than threshold write approvals requested (rows in
--                   approval_requests) within window_seconds
--   denials         more than threshold refusals recorded in the audit log
--                   for the agent within window_seconds
--   new_audience    a token requested for an audience the agent never had
--                   a token for (threshold and window unused)
-- agent_id NULL: the rule applies to every agent.
CREATE TABLE tripwires (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL
                    CHECK (kind IN ('write_requests', 'new_audience', 'denials')),
    threshold       integer NOT NULL DEFAULT 0 CHECK (threshold >= 0),
    window_seconds  integer NOT NULL DEFAULT 0
                    CHECK (window_seconds BETWEEN 0 AND 2592000),
    agent_id        bigint REFERENCES agents(id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    removed_at      timestamptz
);
ALTER TABLE agents ADD CONSTRAINT agents_suspended_by_fk
    FOREIGN KEY (suspended_by) REFERENCES tripwires(id);


GRANT SELECT, INSERT, UPDATE ON tripwires TO countersign_broker;
GRANT USAGE, SELECT ON SEQUENCE tripwires_id_seq TO countersign_broker;
