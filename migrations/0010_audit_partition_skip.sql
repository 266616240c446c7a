-- 0010_audit_partition_skip: audit_ensure_partitions skips a month whose
-- events already sit in the default partition, instead of failing.
--
-- A month's partition cannot be created while the default partition holds
-- rows of that month (PostgreSQL would have to move them). Such rows appear
-- when no broker ran the hourly ensure before the month began: brokers
-- stopped across a month boundary while the CLI wrote events, or the
-- sealer turned off. The function made all months in one statement, so one
-- such month failed every later one too, hour after hour, and from then on
-- every event landed in the default partition. Now that month stays with
-- the default partition (where its events are as safe and as readable) and
-- the months after it are created as usual.
CREATE OR REPLACE FUNCTION audit_ensure_partitions(months integer) RETURNS integer
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
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF audit_events '
                    'FOR VALUES FROM (%L) TO (%L)', name, m, (m + interval '1 month')::date);
                -- TRUNCATE of one partition does not fire the parent's trigger.
                EXECUTE format('CREATE TRIGGER audit_partition_no_truncate '
                    'BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                    'EXECUTE FUNCTION audit_refuse_truncate()', name);
                created := created + 1;
            EXCEPTION WHEN check_violation THEN
                RAISE WARNING 'audit_events_default holds events of %: '
                    'that month stays in the default partition', to_char(m, 'YYYY-MM');
            END;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION audit_ensure_partitions(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_ensure_partitions(integer) TO countersign_broker;
