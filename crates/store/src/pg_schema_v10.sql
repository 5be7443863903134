-- Posthorn on PostgreSQL, schema version 10: a message's rows in the
-- other tables no longer carry foreign keys to `messages`. They are
-- written by one statement with the message (postgres_enqueue.rs) and
-- removed with it by the purge, so the keys guarded nothing the code does
-- not, and each checked row cost a lookup of its message at every
-- enqueue: a tenth of the database's CPU per accepted message
-- (bench/cluster.sh under `perf`). `messages.account_id` keeps its key: an
-- account removed while one of its messages is accepted still refuses it.
ALTER TABLE message_contents DROP CONSTRAINT IF EXISTS message_contents_message_id_fkey;
ALTER TABLE attachments DROP CONSTRAINT IF EXISTS attachments_message_id_fkey;
ALTER TABLE recipients DROP CONSTRAINT IF EXISTS recipients_message_id_fkey;
