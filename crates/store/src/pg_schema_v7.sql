-- Posthorn on PostgreSQL, schema version 7 (reserved for the console,
-- issue 21): the console's sign-in sessions, shared by every node of a
-- cluster so a browser may reach any of them. Only a SHA-256 of the session
-- token is kept.
CREATE TABLE console_sessions (
    token_hash  TEXT PRIMARY KEY,
    api_key_id  TEXT,
    account_id  BIGINT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
