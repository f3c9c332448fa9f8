//! Outbound TCP connections under the policy: the destination's name is resolved here, every
//! address it resolves to is checked, and the connection goes to a checked address. A
//! name is never resolved twice for one connection, so an answer that changes between a
//! check and the connect (DNS rebinding) cannot slip through; redirects reach this code
//! like any other request.

use super::policy::{EgressPolicy, Refusal};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Why an outbound connection was not made. The messages never name an address the policy
/// refused: [`ConnectError::Refused`] names only its class.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the destination has no host")]
    NoHost,
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("`{host}` resolves to no address")]
    NoAddress { host: String },
    #[error("connection timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ConnectError {
    /// The egress refusal in an error's chain (a client error wraps the connector's).
    pub fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(refusal) = e.downcast_ref::<Refusal>() {
                return Some(*refusal);
            }
            if let Some(Self::Refused(refusal)) = e.downcast_ref::<Self>() {
                return Some(*refusal);
            }
            current = e.source();
        }
        None
    }

    /// Whether an error's chain holds a connect timeout.
    pub fn is_timeout_in(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(e) = current {
            if matches!(e.downcast_ref::<Self>(), Some(Self::Timeout(_))) {
                return true;
            }
            current = e.source();
        }
        false
    }
}

/// The host and port of a destination URI (the scheme's default port when none is given).
pub fn host_and_port(dst: &http::Uri) -> Result<(String, u16), ConnectError> {
    let host = dst
        .host()
        .filter(|h| !h.is_empty())
        .ok_or(ConnectError::NoHost)?;
    let port = dst.port_u16().unwrap_or(match dst.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    // An IPv6 literal comes bracketed.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

/// The addresses of `host:port` that `policy` allows: all of them, or an error naming the
/// class of the first refused one. A name that resolves to any refused address is refused
/// as a whole (a name mixing public and internal addresses is the usual rebinding trick).
/// The refused address is logged for the operator.
pub async fn resolve_checked(
    policy: &EgressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(ConnectError::NoAddress {
            host: host.to_owned(),
        });
    }
    for address in &addresses {
        if let Err(refusal) = policy.check(*address) {
            tracing::warn!(
                target: "junction::egress",
                host,
                address = %address,
                class = refusal.class.name(),
                "outbound connection refused by the egress policy"
            );
            return Err(refusal.into());
        }
    }
    Ok(addresses)
}

/// Connects to the first of `addresses` that answers, each attempt within its share of
/// `timeout`.
async fn connect_any(
    addresses: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let per_attempt = timeout / u32::try_from(addresses.len().max(1)).unwrap_or(u32::MAX);
    let mut last = None;
    for address in addresses {
        match tokio::time::timeout(per_attempt, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Ok(Err(e)) => last = Some(ConnectError::Io(e)),
            Err(_) => last = Some(ConnectError::Timeout(per_attempt)),
        }
    }
    Err(last.unwrap_or(ConnectError::Timeout(timeout)))
}

/// A TCP connector for hyper's client: resolves, checks against the policy, connects.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    policy: Arc<EgressPolicy>,
    timeout: Duration,
}

impl TcpConnector {
    pub fn new(policy: Arc<EgressPolicy>, timeout: Duration) -> Self {
        Self { policy, timeout }
    }

    pub fn policy(&self) -> &Arc<EgressPolicy> {
        &self.policy
    }

    /// Connects to `dst`'s host and port, after checking every address it resolves to.
    pub async fn connect(&self, dst: &http::Uri) -> Result<TcpStream, ConnectError> {
        let (host, port) = host_and_port(dst)?;
        let addresses = resolve_checked(&self.policy, &host, port).await?;
        connect_any(&addresses, self.timeout).await
    }
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, ConnectError>> + Send + 'static>>;

impl tower::Service<http::Uri> for TcpConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(&dst).await.map(TokioIo::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_and_the_error_names_no_address() {
        let policy = EgressPolicy::new(Vec::new());
        let refused = resolve_checked(&policy, "localhost", 80)
            .await
            .expect_err("localhost is loopback");
        let message = refused.to_string();
        assert_eq!(
            message,
            "a loopback address is not allowed by the egress policy"
        );
        assert!(!message.contains("127.0.0.1") && !message.contains("::1"));
        let local = EgressPolicy::local(Vec::new());
        assert!(resolve_checked(&local, "localhost", 80).await.is_ok());
    }

    #[tokio::test]
    async fn the_connector_refuses_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let port = listener.local_addr().expect("its address").port();
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().expect("a URI");
        let strict = TcpConnector::new(
            Arc::new(EgressPolicy::new(Vec::new())),
            Duration::from_secs(2),
        );
        let error = strict.connect(&uri).await.expect_err("loopback refused");
        assert!(ConnectError::refusal_in(&error).is_some());
        let local = TcpConnector::new(
            Arc::new(EgressPolicy::local(Vec::new())),
            Duration::from_secs(2),
        );
        local.connect(&uri).await.expect("loopback allowed locally");
    }
}
