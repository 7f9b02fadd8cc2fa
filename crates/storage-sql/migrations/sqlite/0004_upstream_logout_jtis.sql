-- Logout-token `jti`s seen per upstream provider (OpenID Connect
-- Back-Channel Logout 1.0 §2.6 item 10: a logout token whose jti was
-- already received is refused). Inserting is the compare-and-set: the
-- primary key makes a replay, or the loser of two parallel deliveries, fail.
-- Rows are kept until the token's `exp`.
CREATE TABLE upstream_logout_jtis (
    provider_id TEXT NOT NULL REFERENCES upstream_providers (id) ON DELETE CASCADE,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (provider_id, jti)
);
CREATE INDEX upstream_logout_jtis_expires_at ON upstream_logout_jtis (expires_at);
