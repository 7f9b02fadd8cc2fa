//! End-to-end tests of the `vestibule` binary: each test runs the real
//! executable (`CARGO_BIN_EXE_vestibule`) as a child process and talks to it
//! over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

mod config;
mod import;
mod listener;
mod manage;
mod postgres;
mod support;
mod zero_config;
