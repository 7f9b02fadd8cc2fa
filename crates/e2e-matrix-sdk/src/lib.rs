//! End-to-end test of vestibule with matrix-rust-sdk (the engine of Element X)
//! logging in through a real Synapse that delegates authentication to a
//! running `vestibule` binary. See `tests/it/main.rs`.
//!
//! This crate exists only for its tests. It is a separate workspace member so
//! that matrix-sdk and its ~277 dependencies are compiled for this test binary
//! alone and stay out of every other crate's test build.
