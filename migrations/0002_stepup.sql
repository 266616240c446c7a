-- 0002_stepup: human approval of write scopes (step-up).

-- Approval policy of a write scope: how many distinct approvers must
-- approve, which group they must belong to (NULL: any approver), and
-- whether the human who owns the requesting agent may be one of them.
-- max_uses: how many times a token carrying the scope may be used
-- (introspected) before it goes inactive.
ALTER TABLE scopes
    ADD COLUMN approvals_required integer NOT NULL DEFAULT 1
        CHECK (approvals_required BETWEEN 1 AND 10),
    ADD COLUMN approver_group text
        CHECK (approver_group ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    ADD COLUMN owner_may_approve boolean NOT NULL DEFAULT false,
    ADD COLUMN max_uses integer CHECK (max_uses > 0);

-- Approvers are humans. Their API key is stored as an HMAC under the
-- pepper, like agent secrets, and looked up by that HMAC.
CREATE TABLE approvers (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE
                 CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    email        text CHECK (length(email) <= 256),
    groups       text[] NOT NULL DEFAULT '{}',
    key_hash     bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);

-- One backchannel authentication request (CIBA-style) for a write scope.
-- The parameters are fixed at creation and bound by params_hash, a SHA-256
-- over their canonical encoding; approvers may narrow them (approved_*),
-- never widen. State machine:
--   pending -> approved | denied | expired;  approved -> consumed | expired
CREATE TABLE approval_requests (
    id                     text PRIMARY KEY,
    agent_id               bigint NOT NULL REFERENCES agents(id),
    scopes                 text[] NOT NULL,
    audience               text NOT NULL,
    requested_ttl          integer NOT NULL CHECK (requested_ttl > 0),
    binding_message        text NOT NULL,
    authorization_details  jsonb,
    params_hash            text NOT NULL,
    approvals_required     integer NOT NULL,
    state                  text NOT NULL DEFAULT 'pending'
                           CHECK (state IN ('pending', 'approved', 'denied',
                                            'expired', 'consumed')),
    approved_scopes        text[],
    approved_ttl           integer,
    poll_interval          integer NOT NULL,
    last_polled_at         timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    expires_at             timestamptz NOT NULL,
    decided_at             timestamptz,
    consumed_at            timestamptz,
    token_jti              text
);
CREATE INDEX approval_requests_pending ON approval_requests (expires_at)
    WHERE state IN ('pending', 'approved');
CREATE INDEX approval_requests_agent ON approval_requests (agent_id, created_at);

-- Each approver decides a request at most once.
CREATE TABLE approval_decisions (
    request_id   text NOT NULL REFERENCES approval_requests(id),
    approver_id  bigint NOT NULL REFERENCES approvers(id),
    decision     text NOT NULL CHECK (decision IN ('approve', 'deny')),
    reason       text,
    scopes       text[],
    ttl          integer,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, approver_id)
);

ALTER TABLE tokens
    ADD COLUMN approval_id text REFERENCES approval_requests(id),
    ADD COLUMN max_uses integer;
-- One token per approval, enforced by the database as well.
CREATE UNIQUE INDEX tokens_one_per_approval ON tokens (approval_id)
    WHERE approval_id IS NOT NULL;
