//! The configuration sections, one module each.

pub mod account;
pub mod branding;
pub mod captcha;
pub mod clients;
pub mod database;
pub mod email;
pub mod experimental;
pub mod guest_invites;
pub mod http;
pub mod matrix;
pub mod oauth;
pub mod passwords;
pub mod policy;
pub mod rate_limiting;
pub mod secrets;
pub mod telemetry;
pub mod templates;
pub mod upstream_oauth2;
