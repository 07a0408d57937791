-- SPEC 13: push. The VAPID key (one row, inserted if absent by whichever node starts first),
-- where each user's notifications go, the events already enqueued (each once, whichever node
-- sees it), the outbox (claimed with a lease, FOR UPDATE SKIP LOCKED), action tokens (hashed),
-- and who decided a pending decision (`push`, or NULL: the owner).
ALTER TABLE pending_decisions ADD COLUMN decided_by TEXT;
CREATE TABLE push_vapid (id INT PRIMARY KEY CHECK (id = 1), private_key BYTEA NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE push_targets (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    p256dh TEXT,
    auth TEXT,
    secret TEXT,
    device TEXT,
    kinds TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX push_targets_by_owner ON push_targets (owner, created_ms);
CREATE TABLE push_events (event_key TEXT PRIMARY KEY, created_ms BIGINT NOT NULL);
CREATE INDEX push_events_by_age ON push_events (created_ms);
CREATE TABLE push_outbox (
    id BIGSERIAL PRIMARY KEY,
    owner TEXT NOT NULL,
    target_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    topic TEXT,
    ttl_secs INT NOT NULL,
    urgency TEXT NOT NULL,
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    give_up_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT
);
CREATE INDEX push_outbox_due ON push_outbox (next_attempt_ms);
CREATE INDEX push_outbox_by_target ON push_outbox (target_id);
CREATE TABLE push_tokens (
    hash TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    task_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX push_tokens_by_request ON push_tokens (task_id, request_id);
