-- Until when each node of a multi-node relay counts as alive (SPEC 11): the others mark the
-- agents of a node past its deadline offline. Each node sets its own, from its own settings.
CREATE TABLE nodes (node_id TEXT PRIMARY KEY, alive_until_ms BIGINT NOT NULL);
