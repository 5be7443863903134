-- Posthorn embedded store, schema version 5: failed SMTP logins and the
-- AUTH lockouts they start, here rather than in each process's memory so
-- that the admin command line can list and clear them and a cluster can
-- share them.

-- One row per distinct wrong secret tried by a client address for a login
-- name. tag is a truncated HMAC of the secret under a key the server draws
-- at start (never the secret): the same wrong secret again is the same row
-- and counts once. Rows older than the longest window are deleted by the
-- next failure recorded.
CREATE TABLE auth_failures (
    id    INTEGER PRIMARY KEY,
    ip    TEXT NOT NULL,
    user  TEXT NOT NULL,
    tag   TEXT NOT NULL,
    at    INTEGER NOT NULL,
    UNIQUE (ip, user, tag)
);
CREATE INDEX auth_failures_at ON auth_failures(at);

-- AUTH refused from ip for user until locked_until; user '' means every
-- user. last_failure is the id of the failure that started it: counting
-- starts again after it, so a lockout that ended does not restart on the
-- next single failure.
CREATE TABLE auth_lockouts (
    ip            TEXT NOT NULL,
    user          TEXT NOT NULL,
    locked_at     INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    last_failure  INTEGER NOT NULL,
    PRIMARY KEY (ip, user)
);
