-- 0011_audit_drop_seq_index: drop audit_events_seq, an index on (seq) that
-- the primary key (seq, time) already serves.
--
-- Every lookup and range scan by seq (audit verify and export paging, the
-- sealer, tail) can use the primary key's leading column, and does so with
-- the same plan shape. The extra index cost one more b-tree insertion per
-- event on every partition, on the hottest write path the broker has: each
-- issued token and each recorded use writes an event. Dropping the
-- partitioned index drops its copy on every partition.
DROP INDEX IF EXISTS audit_events_seq;
