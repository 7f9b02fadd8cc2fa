//! Thin handlers: parse, call a flow, map the result to the protocol's body.

pub mod discovery;
pub mod health;
