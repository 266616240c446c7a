-- 0012_token_revocation_cascade: revoking a token also revokes the tokens
-- exchanged from it (RFC 8693), and theirs in turn.
--
-- The cascade finds a token's children by subject_jti. Only exchanged
-- tokens have one, so the index is partial: issuing an ordinary token adds
-- no entry to it.
CREATE INDEX IF NOT EXISTS tokens_subject_jti ON tokens (subject_jti)
    WHERE subject_jti IS NOT NULL;
