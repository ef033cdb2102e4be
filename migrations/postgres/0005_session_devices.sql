-- What the "Your sessions" page shows of each session: when it started, and
-- the browser (User-Agent) and client address it signed in from.
ALTER TABLE session_index ADD COLUMN started_at BIGINT;
ALTER TABLE session_index ADD COLUMN user_agent TEXT;
ALTER TABLE session_index ADD COLUMN client_ip TEXT;
