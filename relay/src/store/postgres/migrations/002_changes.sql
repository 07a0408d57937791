-- Per user, how many changes of latest state (agents, repos, tasks, alerts, HUDs) were
-- published: the order of those events, by data (see relay/src/hub.rs).
CREATE TABLE changes (owner TEXT PRIMARY KEY, n BIGINT NOT NULL);
