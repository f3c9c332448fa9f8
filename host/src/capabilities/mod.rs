//! The host functions a connector can reach, one module per WIT import. Each implements its
//! host trait on a narrow view of the invocation state and has one `add_to_linker`.
//! Capability checks happen before any side effect and are unit-tested without wasm.

pub mod allowed_hosts;
pub mod connection;
pub mod http;
pub mod log;
pub mod proxy;
pub mod wasi;

use crate::runtime::state::InvocationState;
use wasmtime::component::Linker;

/// Adds every capability (and the sandboxed WASI) to `linker`.
pub fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    http::add_to_linker(linker)?;
    connection::add_to_linker(linker)?;
    log::add_to_linker(linker)?;
    wasi::add_to_linker(linker)
}
