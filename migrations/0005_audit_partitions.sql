-- 0005_audit_partitions: audit_events becomes a table partitioned by month,
-- so old months can be archived and detached whole, and queries by time
-- touch only the months they need. Existing rows are copied over; seq
-- values, the sequence and the chain are unchanged.

ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER INDEX audit_events_pkey RENAME TO audit_events_unpartitioned_pkey;
ALTER INDEX audit_events_jti RENAME TO audit_events_unpartitioned_jti;
ALTER INDEX audit_events_type_time RENAME TO audit_events_unpartitioned_type_time;

CREATE TABLE audit_events (
    seq      bigint NOT NULL DEFAULT nextval('audit_events_seq_seq'),
    time     timestamptz NOT NULL DEFAULT clock_timestamp(),
    type     text NOT NULL,
    actor    text NOT NULL,
    subject  text,
    jti      text,
    details  jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- A partitioned table's primary key must include the partition key;
    -- seq alone stays unique because it comes from one sequence.
    PRIMARY KEY (seq, time)
) PARTITION BY RANGE (time);
ALTER SEQUENCE audit_events_seq_seq OWNED BY audit_events.seq;
CREATE INDEX audit_events_seq ON audit_events (seq);
CREATE INDEX audit_events_jti ON audit_events (jti) WHERE jti IS NOT NULL;
CREATE INDEX audit_events_type_time ON audit_events (type, time);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_subject ON audit_events (subject, seq);

-- Anything outside the monthly partitions lands here rather than failing:
-- an audit insert must never fail for want of a partition.
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- audit_ensure_partitions(months): create the monthly partitions from the
-- current month to `months` ahead. SECURITY DEFINER so the broker's role,
-- which may not create tables, can call it; it only ever creates
-- partitions of audit_events with fixed names and bounds.
CREATE FUNCTION audit_ensure_partitions(months integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    m date := date_trunc('month', now())::date;
    created integer := 0;
    name text;
BEGIN
    IF months < 0 OR months > 24 THEN
        RAISE EXCEPTION 'months must be between 0 and 24';
    END IF;
    FOR i IN 0..months LOOP
        name := 'audit_events_' || to_char(m, 'YYYY_MM');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF audit_events '
                'FOR VALUES FROM (%L) TO (%L)', name, m, (m + interval '1 month')::date);
            -- TRUNCATE of one partition does not fire the parent's trigger.
            EXECUTE format('CREATE TRIGGER audit_partition_no_truncate '
                'BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                'EXECUTE FUNCTION audit_refuse_truncate()', name);
            created := created + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION audit_ensure_partitions(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_ensure_partitions(integer) TO countersign_broker;

SELECT audit_ensure_partitions(2);
INSERT INTO audit_events SELECT * FROM audit_events_unpartitioned;
DROP TABLE audit_events_unpartitioned;

-- Triggers on a partitioned table apply to every partition.
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
-- TRUNCATE triggers are per table: the parent, the default partition, and
-- each monthly partition (created with its own by audit_ensure_partitions).
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();
CREATE TRIGGER audit_partition_no_truncate BEFORE TRUNCATE ON audit_events_default
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();

GRANT SELECT, INSERT ON audit_events TO countersign_broker;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM countersign_broker;
GRANT SELECT, UPDATE, DELETE, INSERT ON audit_events TO countersign_maintenance;
GRANT SELECT ON audit_events TO countersign_auditor;
