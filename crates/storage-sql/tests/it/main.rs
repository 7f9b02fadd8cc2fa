//! Storage tests: the conformance suite on both engines, and the migration
//! lockstep check.

mod conformance;
mod migrations;
