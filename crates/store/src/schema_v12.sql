-- Posthorn embedded store, schema version 12 (issue 22, open and click
-- tracking): one row per fetch of a tracked message's open pixel or click
-- link, per recipient (at most a bounded number per recipient), with when,
-- the user agent, the client address and, for a click, the URL. Kept as
-- long as statuses; gone with the account.
CREATE TABLE engagements (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    message_id  TEXT NOT NULL,
    recipient   TEXT NOT NULL COLLATE NOCASE,
    kind        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    user_agent  TEXT,
    ip          TEXT,
    url         TEXT
);
CREATE INDEX engagements_message ON engagements(message_id, recipient);
CREATE INDEX engagements_created ON engagements(created_at);

-- The clicked URL of an `opened`/`clicked` webhook event.
ALTER TABLE events ADD COLUMN url TEXT;
