-- Posthorn embedded store, schema version 1.
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE domains (
    id                INTEGER PRIMARY KEY,
    account_id        INTEGER NOT NULL REFERENCES accounts(id),
    name              TEXT NOT NULL UNIQUE COLLATE NOCASE,
    dkim_selector     TEXT NOT NULL,
    dkim_private_key  TEXT NOT NULL,
    dkim_public_key   TEXT NOT NULL,
    created_at        INTEGER NOT NULL
);

CREATE TABLE senders (
    address        TEXT PRIMARY KEY COLLATE NOCASE,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE api_users (
    name        TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    key_hash    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Per-account overrides of configured defaults (limits, policy).
CREATE TABLE account_settings (
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE labels (
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, label)
);

-- Message ids are time-ordered, so inserts append to the primary key.
CREATE TABLE messages (
    id           TEXT PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    mail_from    TEXT NOT NULL,
    auth_user    TEXT NOT NULL,
    label        TEXT,
    size         INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    subject      TEXT NOT NULL DEFAULT '',
    header_from  TEXT NOT NULL DEFAULT '',
    content      BLOB NOT NULL
);
CREATE INDEX messages_account ON messages(account_id, id);

-- What the policy found: one row per attachment.
CREATE TABLE attachments (
    message_id    TEXT NOT NULL REFERENCES messages(id),
    idx           INTEGER NOT NULL,
    filename      TEXT,
    content_type  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    PRIMARY KEY (message_id, idx)
);

CREATE TABLE recipients (
    message_id  TEXT NOT NULL REFERENCES messages(id),
    idx         INTEGER NOT NULL,
    address     TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_reply  TEXT,
    next_try    INTEGER,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX recipients_status ON recipients(status, next_try);
