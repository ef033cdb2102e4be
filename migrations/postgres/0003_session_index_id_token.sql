-- The ID token of a session's login, sent back as id_token_hint at logout;
-- kept here rather than in the session so that sessions stay small.
ALTER TABLE session_index ADD COLUMN id_token TEXT;
