-- Attributes of a user beyond MAS's fixed set (e.g. an organisation's
-- `tenant_id`), imported from an upstream provider's claims or by
-- `manage import-users`. One value per (user, name).
CREATE TABLE user_attributes (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, name)
);

-- What an upstream login continues once it is done (a grant's consent, a
-- legacy SSO approval, the account page), opaque to storage.
ALTER TABLE upstream_sessions ADD COLUMN post_auth_action TEXT;
-- The provider's session id (`sid` claim of the ID token), matched by
-- OpenID Connect Back-Channel Logout 1.0 §2.4.
ALTER TABLE upstream_sessions ADD COLUMN sid TEXT;
CREATE INDEX upstream_sessions_sid ON upstream_sessions (provider_id, sid);

-- Which upstream login authenticated a browser session, so a back-channel
-- logout naming that provider session ends exactly those browser sessions.
ALTER TABLE browser_session_authentications ADD COLUMN upstream_session_id TEXT REFERENCES upstream_sessions (id);
CREATE INDEX browser_session_authentications_upstream_link ON browser_session_authentications (upstream_link_id);
