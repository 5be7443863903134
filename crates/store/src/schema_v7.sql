-- Posthorn embedded store, schema version 7: the nodes that serve from
-- this store, by their heartbeats (one on the embedded store; the same
-- table on PostgreSQL lists a cluster), and an index to count the leases
-- each holds.
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    address     TEXT NOT NULL,
    version     TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
);
CREATE INDEX recipients_owner ON recipients(lease_owner) WHERE status = 'sending';
