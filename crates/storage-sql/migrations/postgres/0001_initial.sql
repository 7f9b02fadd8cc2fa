-- Vestibule initial schema. Timestamps are Unix milliseconds (BIGINT), ids
-- are ULID strings, so both engines hold the same values. Bearer material is
-- only ever stored as a SHA-256 hash (`*_hash` columns).

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    locked_at BIGINT,
    deactivated_at BIGINT,
    can_request_admin BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE user_emails (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX user_emails_email_lower ON user_emails (LOWER(email));
CREATE INDEX user_emails_user_id ON user_emails (user_id);

CREATE TABLE user_passwords (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hashed_password TEXT NOT NULL,
    version BIGINT NOT NULL,
    upgraded_from_id TEXT REFERENCES user_passwords (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX user_passwords_user_id ON user_passwords (user_id, id);

CREATE TABLE browser_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    user_agent TEXT,
    last_active_at BIGINT
);
CREATE INDEX browser_sessions_user_id ON browser_sessions (user_id);

CREATE TABLE upstream_providers (
    id TEXT PRIMARY KEY,
    issuer TEXT,
    human_name TEXT,
    brand_name TEXT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE upstream_links (
    id TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES upstream_providers (id),
    subject TEXT NOT NULL,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    human_account_name TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (provider_id, subject)
);
CREATE INDEX upstream_links_user_id ON upstream_links (user_id);

CREATE TABLE upstream_sessions (
    id TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES upstream_providers (id),
    state TEXT NOT NULL UNIQUE,
    code_verifier TEXT,
    nonce TEXT,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    consumed_at BIGINT,
    link_id TEXT REFERENCES upstream_links (id),
    claims TEXT
);

CREATE TABLE browser_session_authentications (
    id TEXT PRIMARY KEY,
    browser_session_id TEXT NOT NULL REFERENCES browser_sessions (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
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
    created_at BIGINT NOT NULL
);

CREATE TABLE oauth2_sessions (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth2_clients (id),
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    browser_session_id TEXT REFERENCES browser_sessions (id) ON DELETE SET NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    user_agent TEXT,
    last_active_at BIGINT
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
    max_age BIGINT,
    login_hint TEXT,
    prompt TEXT,
    code_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    fulfilled_at BIGINT,
    exchanged_at BIGINT,
    cancelled_at BIGINT,
    session_id TEXT REFERENCES oauth2_sessions (id)
);

CREATE TABLE oauth2_access_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES oauth2_sessions (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    first_used_at BIGINT
);
CREATE INDEX oauth2_access_tokens_session_id ON oauth2_access_tokens (session_id);

CREATE TABLE oauth2_refresh_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES oauth2_sessions (id) ON DELETE CASCADE,
    access_token_id TEXT REFERENCES oauth2_access_tokens (id) ON DELETE SET NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    consumed_at BIGINT,
    revoked_at BIGINT,
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
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    last_active_at BIGINT
);
CREATE INDEX compat_sessions_user_device ON compat_sessions (user_id, device_id);

CREATE TABLE compat_access_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES compat_sessions (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);

CREATE TABLE compat_refresh_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES compat_sessions (id) ON DELETE CASCADE,
    access_token_id TEXT NOT NULL REFERENCES compat_access_tokens (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    consumed_at BIGINT
);

CREATE TABLE compat_sso_logins (
    id TEXT PRIMARY KEY,
    redirect_uri TEXT NOT NULL,
    login_token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    fulfilled_at BIGINT,
    exchanged_at BIGINT,
    browser_session_id TEXT REFERENCES browser_sessions (id) ON DELETE SET NULL,
    compat_session_id TEXT REFERENCES compat_sessions (id) ON DELETE SET NULL
);

CREATE TABLE device_code_grants (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth2_clients (id),
    scope TEXT NOT NULL,
    user_code TEXT NOT NULL UNIQUE,
    device_code_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_polled_at BIGINT,
    fulfilled_at BIGINT,
    rejected_at BIGINT,
    exchanged_at BIGINT,
    browser_session_id TEXT REFERENCES browser_sessions (id) ON DELETE SET NULL,
    session_id TEXT REFERENCES oauth2_sessions (id)
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    locked_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX jobs_due ON jobs (status, scheduled_at);
