-- Approver keys expire (approver_key_ttl, 90 days by default).
--
-- An approver's key lets its holder approve writes; a key that never
-- expires is a standing credential that outlives the reason it was given
-- (a person changes team, a laptop is lost and nobody notices). A key
-- past key_expires_at authenticates nothing, and the web sessions signed
-- in with it end with it. NULL: no expiry, as for every key made before
-- this migration, until its next rotate-key.
ALTER TABLE approvers ADD COLUMN IF NOT EXISTS key_expires_at timestamptz;
