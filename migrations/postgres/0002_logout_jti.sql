-- Back-channel logout token ids already used, so a replay is refused.
CREATE TABLE logout_jti (
    issuer     TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX logout_jti_by_expiry ON logout_jti (expires_at);
