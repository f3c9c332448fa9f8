//! Junction: a self-hostable integration service whose connectors are sandboxed
//! WebAssembly components. The host owns everything sensitive: connections, secrets and
//! the network; a connector asks the host to send requests and the host attaches the
//! credentials.
//!
//! - [`runtime`]: the wasmtime engine, loading components, invocations and their limits;
//! - [`capabilities`]: the host functions connectors can call;
//! - [`credentials`]: secrets and how they are attached to requests;
//! - [`egress`]: which addresses outbound connections made for tenants may reach;
//! - [`auth`]: auth schemes and the credentials they produce;
//! - [`store`]: persistence (SQLite), with secrets sealed under the master key;
//! - [`access`]: tenants, principals and folder permissions;
//! - [`catalog`]: the connectors a service has loaded;
//! - [`connections`]: checking, testing and invoking connections;
//! - [`metrics`]: the service's Prometheus metrics;
//! - [`api`]: the HTTP server (`junction serve`);
//! - [`config`]: the service's configuration;
//! - [`vault`]: credential assets, secret fields resolved from external vaults.

pub mod access;
pub mod api;
pub mod auth;
pub mod capabilities;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod connections;
pub mod credentials;
pub mod egress;
pub mod metrics;
pub mod runtime;
pub mod store;
pub mod vault;
