//! The egress policy: every outbound connection made on a tenant's behalf (a connector's
//! requests and each of their redirects, OAuth token requests, and later trigger
//! subscriptions and event deliveries) reaches only what the operator allowed. By default
//! that is the globally reachable internet: loopback, private, link-local and the other
//! special-purpose ranges are refused ([`address`]), and so are cloud metadata services and
//! the service's own listeners. Operators open ranges explicitly ([`AllowRule`]).
//!
//! The check is made on the resolved address, when the connection is made ([`connect`]),
//! not on the URL's text: a name that resolves to a refused address, a redirect to one, or
//! an answer that changes between two lookups are all caught. Through a forward proxy, the
//! proxy itself is exempt and the destination is resolved and checked before `CONNECT`,
//! which asks for the address checked (unless the operator leaves names to the proxy:
//! [`EgressPolicy::with_proxy_enforcing`]).
//!
//! The clients of the operator's own configuration (credential stores) are not subject to
//! it: [`EgressPolicy::unrestricted`].

pub mod address;
pub mod connect;
mod policy;

pub use address::{AddressClass, classify};
pub use connect::{ConnectError, TcpConnector, resolve_checked};
pub use policy::{AllowRule, AllowRuleError, EgressPolicy, Refusal};
