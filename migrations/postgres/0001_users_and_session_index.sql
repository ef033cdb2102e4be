-- Users signed in through a provider: one row per (issuer, subject).
CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    issuer         TEXT      NOT NULL,
    subject        TEXT      NOT NULL,
    email          TEXT,
    email_verified BOOLEAN,
    name           TEXT,
    picture        TEXT,
    created_at     BIGINT    NOT NULL,
    last_login_at  BIGINT    NOT NULL,
    UNIQUE (issuer, subject)
);

-- Which session belongs to which provider login, so that a back-channel
-- logout can end sessions by (issuer, sid) or by (issuer, subject).
CREATE TABLE session_index (
    session_id TEXT   PRIMARY KEY NOT NULL,
    issuer     TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    sid        TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX session_index_by_sid ON session_index (issuer, sid);
CREATE INDEX session_index_by_subject ON session_index (issuer, subject);
CREATE INDEX session_index_by_expiry ON session_index (expires_at);
