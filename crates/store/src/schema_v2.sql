-- Posthorn embedded store, schema version 2: delivery.

-- A recipient being worked on is 'sending' and leased: lease_owner is the
-- node working on it, lease_until when the lease runs out (after which any
-- node may pick it up again).
ALTER TABLE recipients ADD COLUMN lease_owner TEXT;
ALTER TABLE recipients ADD COLUMN lease_until INTEGER;
-- The server that gave last_reply (name[address]).
ALTER TABLE recipients ADD COLUMN remote_host TEXT;

-- Queued recipients are due at once; next_try is set for them too, so one
-- index finds everything due.
UPDATE recipients SET next_try = updated_at WHERE status = 'queued' AND next_try IS NULL;
CREATE INDEX recipients_due ON recipients(next_try) WHERE status IN ('queued', 'deferred');
CREATE INDEX recipients_leased ON recipients(lease_until) WHERE status = 'sending';

-- When every recipient of a message became final (delivered, bounced,
-- expired, suppressed); the body may be purged after that, never before.
ALTER TABLE messages ADD COLUMN completed_at INTEGER;
-- 1 once the content was purged (the row and its statuses stay).
ALTER TABLE messages ADD COLUMN content_purged INTEGER NOT NULL DEFAULT 0;
-- 1 for a bounce notice Posthorn generated (never a notice about it).
ALTER TABLE messages ADD COLUMN is_dsn INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_completed ON messages(completed_at) WHERE completed_at IS NOT NULL;

-- Recipients an account no longer sends to (hard bounces, or added by an
-- operator); RCPT to one is refused with 550 5.1.1.
CREATE TABLE suppressions (
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    address     TEXT NOT NULL COLLATE NOCASE,
    reason      TEXT NOT NULL,
    message_id  TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, address)
);
