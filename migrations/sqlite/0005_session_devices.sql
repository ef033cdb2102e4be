-- What the "Your sessions" page shows of each session: when it started, and
-- the browser (User-Agent) and client address it signed in from.
ALTER TABLE session_index ADD COLUMN started_at INTEGER;
ALTER TABLE session_index ADD COLUMN user_agent TEXT;
ALTER TABLE session_index ADD COLUMN client_ip TEXT;

-- Bumped by `oidc-gate sessions end` (another process): the server's
-- in-memory session cache, which only sees its own deletes, reads it at most
-- every 100 ms and empties itself when it moved.
CREATE TABLE session_revocations (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO session_revocations (id, generation) VALUES (1, 0);
