-- Posthorn embedded store, schema version 9 (issue 22): message
-- templates per account. Rules (name shape, sizes, placeholder syntax)
-- are the admin service's; the store keeps what it was given.
CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    text        TEXT,
    html        TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
