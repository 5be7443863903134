-- Posthorn embedded store, schema version 3: the HTTP API.

-- HTTP API keys. A key reads "ph_<id>_<secret>"; only an argon2id hash of
-- the secret is kept. account_id is NULL for an admin key.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    account_id   INTEGER REFERENCES accounts(id),
    secret_hash  TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL
);

-- Status listing by recipient.
CREATE INDEX recipients_address ON recipients(address COLLATE NOCASE);

-- Where an account wants its events POSTed; events is a comma-separated
-- list with a comma at each end (",delivered,bounced,") so instr() matches
-- a whole name.
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX webhooks_account ON webhooks(account_id);

-- What happened to a recipient, kept only while some webhook wants it.
-- Written in the same commit as the status change it reports.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    reply        TEXT,
    remote_host  TEXT,
    label        TEXT,
    created_at   INTEGER NOT NULL
);

-- One row per event and webhook that subscribed to it, until it is
-- accepted (done_at) or given up.
CREATE TABLE webhook_deliveries (
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id    INTEGER NOT NULL REFERENCES events(id),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try    INTEGER NOT NULL,
    last_error  TEXT,
    done_at     INTEGER,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_try) WHERE done_at IS NULL;
CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event_id);
