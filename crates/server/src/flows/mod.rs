//! Use cases. A flow takes the repository (one transaction), the clock, the
//! rng and settings as parameters, and returns domain values or its own error
//! enum; handlers map that enum to the protocol's body.

pub mod account;
pub mod authorize;
pub mod browser_login;
pub mod compat;
pub mod compat_sso;
pub mod device_code;
pub mod introspection;
pub mod provisioning;
pub mod revocation;
pub mod session;
pub mod token;
pub mod tokens;
pub mod upstream_link;
pub mod user_import;
pub mod userinfo;
