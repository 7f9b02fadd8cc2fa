//! Storage tests: the conformance suite on both engines, concurrent job
//! reservation, and the migration lockstep check.

// A test crate: helpers panic on broken fixtures, like the tests themselves.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod conformance;
mod jobs_concurrency;
mod migrations;
