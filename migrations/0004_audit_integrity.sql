-- 0004_audit_integrity: the audit log becomes append-only by PostgreSQL's
-- own rules, and every event is hash-chained.
--
-- Roles (cluster-wide, created once):
--   countersign_broker       what the broker and the admin CLI connect as:
--                            full use of the application tables, but only
--                            INSERT and SELECT on the audit tables.
--   countersign_maintenance  the documented maintenance role: the only one
--                            the triggers below let UPDATE or DELETE audit
--                            rows (e.g. to purge per retention policy);
--                            anything it changes breaks the hash chain, and
--                            `countersign audit verify` says where.
--   countersign_auditor      read-only access to the audit tables.
-- Migrations themselves run as the database owner.
-- Roles are shared by every database of the cluster, and the migration lock
-- is per database: two databases migrated at once (two deployments on one
-- cluster, or a test suite) may both find a role missing. The loser of
-- that race gets unique_violation (or duplicate_object) and carries on.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['countersign_broker', 'countersign_maintenance',
                             'countersign_auditor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- The chain lives beside the events, keyed by seq, so that sealing never
-- needs UPDATE on an event: events and chain links are both insert-only.
-- kind 'event': hash = SHA-256 over the canonical encoding of the event
-- and prev_hash; kind 'gap': a sequence number that was drawn but never
-- committed (a rolled-back transaction), sealed as such so that a row
-- inserted there later is detected. See docs/audit.md.
CREATE TABLE audit_chain (
    seq        bigint PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('event', 'gap')),
    prev_hash  bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
    sealed_at  timestamptz NOT NULL DEFAULT now()
);

-- Signed statements of the chain head, for parties outside the database.
CREATE TABLE audit_checkpoints (
    id          bigserial PRIMARY KEY,
    head_seq    bigint NOT NULL,
    head_hash   bytea NOT NULL,
    kid         text NOT NULL,
    jws         text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only the maintenance role itself, never a superuser by accident:
    -- a superuser who means it must first SET ROLE countersign_maintenance.
    IF current_user = 'countersign_maintenance' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (% on % refused)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION audit_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (TRUNCATE on % refused)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();

-- Privileges. The broker role gets what the application needs and nothing
-- that could rewrite history.
GRANT USAGE ON SCHEMA public TO countersign_broker, countersign_maintenance,
    countersign_auditor;
GRANT SELECT, INSERT, UPDATE, DELETE ON agents, scopes, grants, tokens,
    signing_keys, approvers, approval_requests, approval_decisions, services
    TO countersign_broker;
GRANT SELECT ON schema_migrations TO countersign_broker;
GRANT SELECT, INSERT ON audit_events, audit_chain, audit_checkpoints
    TO countersign_broker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO countersign_broker;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_chain,
    audit_checkpoints FROM countersign_broker;

GRANT SELECT, UPDATE, DELETE, INSERT ON audit_events, audit_chain,
    audit_checkpoints TO countersign_maintenance;
GRANT SELECT ON audit_events, audit_chain, audit_checkpoints, tokens, agents
    TO countersign_auditor;
