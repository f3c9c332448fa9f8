//! Request handlers, one module per resource.

pub mod audit;
pub mod catalog;
pub mod connections;
pub mod connectors;
pub mod folders;
pub mod invocations;
pub mod oauth;
pub mod policies;
pub mod system;
pub mod tenancy;
