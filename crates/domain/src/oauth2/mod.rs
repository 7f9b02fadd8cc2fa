//! OAuth 2.0 clients, authorization grants and sessions.

mod authorization_grant;
mod client;
mod session;

pub use authorization_grant::{AuthorizationGrant, AuthorizationGrantStage, Pkce, ResponseMode};
pub use client::{ApplicationType, Client, ClientAuthMethod};
pub use session::Session;
