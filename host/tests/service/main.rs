//! End-to-end tests of `junction serve`: the real binary, over HTTP, on its own data
//! directory, against local upstream APIs.

#![allow(clippy::unwrap_used)]

mod api;
mod audit;
mod catalog;
mod egress;
mod fairness;
mod lifecycle;
mod oauth;
mod proxy;
mod vault;

use std::path::Path;

/// The `junction` binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_junction"))
}
