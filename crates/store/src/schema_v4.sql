-- Posthorn embedded store, schema version 4: message content in a table of
-- its own.
--
-- SQLite rewrites a whole row when one of its columns changes. With the
-- content in the messages row, marking a message complete (completed_at)
-- or its content purged copied the whole content again, into the WAL and
-- then the database: a 100 KB message cost about 400 KB of writes. Apart,
-- those updates touch a few bytes, and a purge deletes the content's row.
CREATE TABLE message_contents (
    message_id  TEXT PRIMARY KEY,
    content     BLOB NOT NULL
);
INSERT INTO message_contents (message_id, content)
    SELECT id, content FROM messages WHERE content_purged = 0;
ALTER TABLE messages DROP COLUMN content;
