-- Posthorn on PostgreSQL, schema version 4: what each node reports of its
-- own work beside its heartbeat (the embedded store's schema v8).
ALTER TABLE nodes ADD COLUMN report TEXT NOT NULL DEFAULT '{}';
