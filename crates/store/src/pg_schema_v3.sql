-- Posthorn on PostgreSQL, schema version 3: finished messages whose content
-- is still kept, so housekeeping finds the contents to purge without
-- visiting every finished message kept for status queries.
CREATE INDEX messages_unpurged ON messages (completed_at)
    WHERE completed_at IS NOT NULL AND NOT content_purged;
