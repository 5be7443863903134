-- Posthorn embedded store, schema version 8: what each node reports of
-- its own work beside its heartbeat (JSON: its delivery destinations), for
-- `posthorn queue destinations` and GET /v1/admin/destinations.
ALTER TABLE nodes ADD COLUMN report TEXT NOT NULL DEFAULT '{}';
