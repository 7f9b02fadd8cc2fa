//! Thin handlers: parse, call a flow, map the result to the protocol's body.

pub mod browser;
pub mod compat;
pub mod discovery;
pub mod health;
pub mod oauth2;
pub mod registration;
