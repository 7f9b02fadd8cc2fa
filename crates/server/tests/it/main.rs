//! HTTP tests through the production router (`router(state, resources)`).

mod discovery;
mod harness;
