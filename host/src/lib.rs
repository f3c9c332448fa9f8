//! Junction: a self-hostable integration service whose connectors are sandboxed
//! WebAssembly components. The host owns everything sensitive: connections, secrets and
//! the network; a connector asks the host to send requests and the host attaches the
//! credentials.
//!
//! - [`runtime`]: the wasmtime engine, loading components, invocations and their limits;
//! - [`capabilities`]: the host functions connectors can call;
//! - [`credentials`]: secrets and how they are attached to requests;
//! - [`auth`]: auth schemes and the credentials they produce.

pub mod auth;
pub mod capabilities;
pub mod cli;
pub mod credentials;
pub mod runtime;
