-- Used client-assertion `jti`s (RFC 7523 §3 item 7: a JWT may be used only
-- once). Inserting is the compare-and-set: the unique key makes a replay, or
-- the loser of two parallel uses, fail.
CREATE TABLE oauth2_client_assertion_jtis (
    client_id TEXT NOT NULL REFERENCES oauth2_clients (id) ON DELETE CASCADE,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oauth2_client_assertion_jtis_expires_at ON oauth2_client_assertion_jtis (expires_at);

-- RFC 6749 §6: a refresh may narrow the scope of the new access token.
-- NULL means the session's scope.
ALTER TABLE oauth2_access_tokens ADD COLUMN scope TEXT;
