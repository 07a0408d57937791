-- The relay's schema in PostgreSQL: the final form of the SQLite migrations in relay/src/db
-- (nothing to migrate from), with `owner` for SQLite's `user` column (reserved here).
-- JSON columns are TEXT: events and tasks are served as stored, byte for byte.
CREATE TABLE meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta (name, value) VALUES ('key_generation', 0);
INSERT INTO meta (name, value) VALUES ('instance', floor(random() * 1000000000000)::BIGINT);
CREATE TABLE users (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES users(name),
    scope TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    task_id TEXT
);
CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES keys(id),
    expires_ms BIGINT NOT NULL
);
CREATE TABLE agents (
    owner TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    online BOOLEAN NOT NULL,
    json TEXT NOT NULL,
    conn TEXT,
    PRIMARY KEY (owner, agent_id)
);
CREATE TABLE repos (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    status TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    repo TEXT NOT NULL,
    agent_id TEXT,
    executor TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    contig_seq BIGINT NOT NULL DEFAULT 0,
    json TEXT NOT NULL,
    conversation_id TEXT NOT NULL
);
CREATE INDEX tasks_by_owner ON tasks (owner, created_ms DESC, id DESC);
CREATE INDEX tasks_by_repo ON tasks (owner, repo, created_ms DESC, id DESC);
CREATE INDEX tasks_by_conversation ON tasks (owner, conversation_id, created_ms, id);
CREATE TABLE task_events (
    task_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
CREATE TABLE alerts (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    severity TEXT NOT NULL,
    acknowledged BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE INDEX alerts_by_owner ON alerts (owner, created_ms DESC);
CREATE TABLE hud_settings (
    owner TEXT NOT NULL,
    repo TEXT NOT NULL,
    public BOOLEAN NOT NULL,
    embed_allowed BOOLEAN NOT NULL,
    PRIMARY KEY (owner, repo)
);
CREATE TABLE pending_decisions (
    owner TEXT NOT NULL,
    task_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    behavior TEXT NOT NULL,
    updated_input TEXT,
    message TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (task_id, request_id)
);
CREATE TABLE runs (
    task_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    clone_url TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    container_id TEXT,
    key_id TEXT,
    seq_offset BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_state ON runs (state, created_ms);
CREATE TABLE secrets (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    value BYTEA NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, name)
);
