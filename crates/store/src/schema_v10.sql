-- Posthorn embedded store, schema version 10 (reserved for the console,
-- issue 21): the console's sign-in sessions. Only a SHA-256 of the session
-- token is kept; the token itself lives in the browser's cookie. A row is
-- readable by every process on the database, so a session outlives a
-- restart and is the same for the CLI and the server.
CREATE TABLE console_sessions (
    token_hash  TEXT PRIMARY KEY,
    -- The API key signed in with; NULL for the configured [http] admin_key.
    api_key_id  TEXT,
    -- NULL: an admin session.
    account_id  INTEGER,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
