//! Wire types only: what goes over HTTP, with the RFC sections they come from.
//! No IO, no business rules.

pub mod compat;
pub mod discovery;
pub mod errors;
pub mod registration;
