-- Posthorn embedded store, schema version 14: large contents in spool
-- files beside the database (spool.rs). A row here says where a message's
-- content is (its file in spool/, its bytes there); such a message has no
-- row in message_contents. Written in the same commit as the message,
-- after the file is on stable storage.
CREATE TABLE message_spool (
    message_id  TEXT PRIMARY KEY,
    file        INTEGER NOT NULL,
    start       INTEGER NOT NULL,
    length      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX message_spool_file ON message_spool (file);
