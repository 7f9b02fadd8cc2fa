//! HTTP tests through the production router (`router(state, resources)`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account_page;
mod browser_authorize;
mod browser_helpers;
mod browser_login;
mod browser_pages;
mod compat_login;
mod compat_sso;
mod compat_support;
mod compat_tokens;
mod discovery;
mod harness;
mod homeserver_support;
mod homeserver_synapse;
mod jobs_worker;
mod oauth2_client_auth;
mod oauth2_introspect;
mod oauth2_refresh;
mod oauth2_support;
mod oauth2_token;
mod provisioning_devices;
mod provisioning_support;
mod provisioning_synapse;
mod provisioning_users;
mod registration;
mod upstream_link;
