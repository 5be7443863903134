-- Posthorn on PostgreSQL, schema version 6 (issue 22): message templates
-- per account, as in the embedded store's schema v9.
CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    text        TEXT,
    html        TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (account_id, name)
);
