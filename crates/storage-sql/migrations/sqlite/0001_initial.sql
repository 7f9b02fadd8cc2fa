-- Vestibule initial schema. Timestamps are Unix milliseconds (INTEGER), ids
-- are ULID strings, so both engines hold the same values. Bearer material is
-- only ever stored as a SHA-256 hash (`*_hash` columns).

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    locked_at INTEGER,
    deactivated_at INTEGER,
    can_request_admin BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE user_emails (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX user_emails_email_lower ON user_emails (LOWER(email));
CREATE INDEX user_emails_user_id ON user_emails (user_id);

CREATE TABLE user_passwords (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hashed_password TEXT NOT NULL,
    version INTEGER NOT NULL,
    upgraded_from_id TEXT REFERENCES user_passwords (id),
    created_at INTEGER NOT NULL
);
CREATE INDEX user_passwords_user_id ON user_passwords (user_id, id);

CREATE TABLE browser_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    user_agent TEXT,
    last_active_at INTEGER
);
CREATE INDEX browser_sessions_user_id ON browser_sessions (user_id);

CREATE TABLE upstream_providers (
    id TEXT PRIMARY KEY,
    issuer TEXT,
    human_name TEXT,
    brand_name TEXT,
    created_at INTEGER NOT NULL,
    disabled_at INTEGER
);

CREATE TABLE upstream_links (
    id TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES upstream_providers (id),
    subject TEXT NOT NULL,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    human_account_name TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (provider_id, subject)
);
CREATE INDEX upstream_links_user_id ON upstream_links (user_id);

CREATE TABLE upstream_sessions (
    id TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES upstream_providers (id),
    state TEXT NOT NULL UNIQUE,
    code_verifier TEXT,
    nonce TEXT,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    consumed_at INTEGER,
    link_id TEXT REFERENCES upstream_links (id),
    claims TEXT
);

CREATE TABLE browser_session_authentications (
    id TEXT PRIMARY KEY,
    browser_session_id TEXT NOT NULL REFERENCES browser_sessions (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    user_password_id TEXT REFERENCES user_passwords (id),
    upstream_link_id TEXT REFERENCES upstream_links (id)
);
CREATE INDEX browser_session_authentications_session ON browser_session_authentications (browser_session_id, id);

CREATE TABLE oauth2_clients (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    is_static BOOLEAN NOT NULL,
    client_name TEXT,
    client_uri TEXT,
    logo_uri TEXT,
    policy_uri TEXT,
    tos_uri TEXT,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    application_type TEXT,
    token_endpoint_auth_method TEXT NOT NULL,
    encrypted_client_secret TEXT,
    jwks TEXT,
    jwks_uri TEXT,
    id_token_signed_response_alg TEXT,
    metadata_digest TEXT UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE oauth2_sessions (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth2_clients (id),
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    browser_session_id TEXT REFERENCES browser_sessions (id) ON DELETE SET NULL,
    scope TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    user_agent TEXT,
    last_active_at INTEGER
);
CREATE INDEX oauth2_sessions_user_id ON oauth2_sessions (user_id);

CREATE TABLE oauth2_authorization_grants (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth2_clients (id),
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT,
    nonce TEXT,
    response_mode TEXT NOT NULL,
    code_challenge TEXT,
    code_challenge_method TEXT,
    max_age INTEGER,
    login_hint TEXT,
    prompt TEXT,
    code_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    fulfilled_at INTEGER,
    exchanged_at INTEGER,
    cancelled_at INTEGER,
    session_id TEXT REFERENCES oauth2_sessions (id)
);

CREATE TABLE oauth2_access_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES oauth2_sessions (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    first_used_at INTEGER
);
CREATE INDEX oauth2_access_tokens_session_id ON oauth2_access_tokens (session_id);

CREATE TABLE oauth2_refresh_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES oauth2_sessions (id) ON DELETE CASCADE,
    access_token_id TEXT REFERENCES oauth2_access_tokens (id) ON DELETE SET NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    consumed_at INTEGER,
    revoked_at INTEGER,
    next_refresh_token_id TEXT REFERENCES oauth2_refresh_tokens (id)
);
CREATE INDEX oauth2_refresh_tokens_session_id ON oauth2_refresh_tokens (session_id);

CREATE TABLE compat_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    human_name TEXT,
    browser_session_id TEXT REFERENCES browser_sessions (id) ON DELETE SET NULL,
    is_synapse_admin BOOLEAN NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    last_active_at INTEGER
);
CREATE INDEX compat_sessions_user_device ON compat_sessions (user_id, device_id);

CREATE TABLE compat_access_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES compat_sessions (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);

CREATE TABLE compat_refresh_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES compat_sessions (id) ON DELETE CASCADE,
    access_token_id TEXT NOT NULL REFERENCES compat_access_tokens (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    consumed_at INTEGER
);

CREATE TABLE compat_sso_logins (
    id TEXT PRIMARY KEY,
    redirect_uri TEXT NOT NULL,
    login_token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    fulfilled_at INTEGER,
    exchanged_at INTEGER,
    browser_session_id TEXT REFERENCES browser_sessions (id) ON DELETE SET NULL,
    compat_session_id TEXT REFERENCES compat_sessions (id) ON DELETE SET NULL
);

CREATE TABLE device_code_grants (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth2_clients (id),
    scope TEXT NOT NULL,
    user_code TEXT NOT NULL UNIQUE,
    device_code_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_polled_at INTEGER,
    fulfilled_at INTEGER,
    rejected_at INTEGER,
    exchanged_at INTEGER,
    browser_session_id TEXT REFERENCES browser_sessions (id) ON DELETE SET NULL,
    session_id TEXT REFERENCES oauth2_sessions (id)
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    scheduled_at INTEGER NOT NULL,
    locked_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    completed_at INTEGER
);
CREATE INDEX jobs_due ON jobs (status, scheduled_at);
