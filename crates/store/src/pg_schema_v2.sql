-- Posthorn on PostgreSQL, schema version 2: the nodes of the cluster, by
-- their heartbeats (the embedded store's schema v7).
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    address     TEXT NOT NULL,
    version     TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
