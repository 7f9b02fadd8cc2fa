//! Use cases: take repositories, the clock, the rng and settings; return
//! domain values or a domain error. Handlers map them to HTTP.

pub mod authorize;
pub mod browser_login;
