-- Idle timeout for the approver web page's sessions (ui_session_idle).
--
-- A session left open on an unattended screen is a standing credential
-- that can approve writes. Besides its absolute expiry, a session now ends
-- when it has not been used for ui_session_idle. last_seen_at moves at
-- most every few seconds (sessions_lookup), so a page polling the list
-- does not write on every request.
ALTER TABLE ui_sessions ADD COLUMN IF NOT EXISTS last_seen_at timestamptz NOT NULL DEFAULT now();

-- The broker may move last_seen_at and nothing else of a session.
GRANT UPDATE (last_seen_at) ON ui_sessions TO countersign_broker;
