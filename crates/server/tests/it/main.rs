//! HTTP tests through the production router (`router(state, resources)`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod discovery;
mod harness;
mod homeserver_support;
mod homeserver_synapse;
mod jobs_worker;
mod registration;
