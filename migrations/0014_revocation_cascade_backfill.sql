-- 0014_revocation_cascade_backfill: what 0012 began for new revocations,
-- for old ones. Before 0012, revoking a token left the tokens exchanged
-- from it (and theirs) active; those still unrevoked are revoked now, each
-- with its token.revoked event, as the broker's cascade writes them.
-- Only exchanged tokens have a subject_jti (and the partial index of
-- 0012), so this reads few rows however many tokens there are.
WITH RECURSIVE d AS (
    SELECT c.jti
    FROM tokens c JOIN tokens s ON s.jti = c.subject_jti
    WHERE c.subject_jti IS NOT NULL AND s.revoked_at IS NOT NULL
      AND c.revoked_at IS NULL
  UNION
    SELECT c.jti
    FROM tokens c JOIN d ON c.subject_jti = d.jti
    WHERE c.subject_jti IS NOT NULL AND c.revoked_at IS NULL
),
r AS (
    UPDATE tokens t SET revoked_at = now(), revoked_by = 'admin:migrate'
    FROM d WHERE t.jti = d.jti
    RETURNING t.jti, t.agent_id, t.subject_jti
)
INSERT INTO audit_events (type, actor, subject, jti, details)
SELECT 'token.revoked', 'admin:migrate', 'agent:' || a.name, r.jti,
       jsonb_build_object('via', 'migration', 'cascade_from', r.subject_jti)
FROM r JOIN agents a ON a.id = r.agent_id;
