//! How the outbound HTTP client reaches the network: directly, or through an HTTP forward
//! proxy named by the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, or
//! their lower-case forms) or by a client's own [`ProxySetting`].
//!
//! Per destination, the [`ProxyConnector`]
//! - connects directly when no proxy intercepts the destination (under the egress policy);
//! - for an `https` destination through a proxy, resolves and checks the destination,
//!   opens an HTTP `CONNECT` tunnel through the proxy to the address checked (to the name
//!   when the operator leaves names to the proxy), and runs TLS inside it with the
//!   destination itself (TLS is end to end and verifies the destination's name: the proxy
//!   sees an address or a name and a port, nothing else);
//! - for a plain `http` destination through a proxy, checks the destination, connects to
//!   the proxy and marks the connection proxied, so that requests are written in absolute
//!   form (`GET http://host/path`); the proxy's credentials then travel in each request's
//!   `Proxy-Authorization`, which the client adds ([`Proxies::request_auth`]), and the
//!   client checks the destination again for each request.
//!
//! The route of a destination depends only on the client's settings, fixed when the client is
//! built, so the connection pool (keyed by the destination's scheme and authority) never
//! hands a direct connection to a proxied destination or the other way round.
//!
//! Proxy credentials (a proxy URL's user information) are secrets: no message, log line or
//! `Debug` output shows them; a proxy is named by its origin, `http://host:port`.

use crate::egress::{self, EgressPolicy, TcpConnector};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tower::Service;
use url::Url;

/// How a client reaches the network.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// Through the proxies the process environment names when the client is built:
    /// `HTTPS_PROXY` for https destinations, `HTTP_PROXY` for http ones, `ALL_PROXY` for
    /// either when its own is not set, except the destinations `NO_PROXY` lists (each also in
    /// lower case; the upper-case form wins).
    #[default]
    Environment,
    /// Directly, whatever the environment says.
    Direct,
    /// Every destination through this `http://` proxy (its user information, when present,
    /// is the proxy's Basic credentials).
    Url(Url),
}

impl fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("Environment"),
            Self::Direct => f.write_str("Direct"),
            Self::Url(url) => f.debug_tuple("Url").field(&redacted(url)).finish(),
        }
    }
}

/// `env`, `none`, or the proxy URL with its password masked (for messages; it does not parse
/// back to the same setting when the URL holds a password).
impl fmt::Display for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("env"),
            Self::Direct => f.write_str("none"),
            Self::Url(url) => f.write_str(&redacted(url)),
        }
    }
}

/// `env`, `none`, or an `http://` proxy URL (`http://user:password@proxy.example:3128`).
impl FromStr for ProxySetting {
    type Err = ProxySettingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "env" => Ok(Self::Environment),
            "none" => Ok(Self::Direct),
            value if value.contains("://") => proxy_url(value).map(Self::Url),
            _ => Err(ProxySettingError::NotASetting),
        }
    }
}

/// Why a proxy setting or a proxy URL is unusable. Never shows the value itself, which may
/// hold credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxySettingError {
    #[error(
        "a proxy setting is `env`, `none` or an http:// proxy URL such as http://proxy.example:3128"
    )]
    NotASetting,
    #[error("the proxy URL is not a valid URL: {0}")]
    InvalidUrl(url::ParseError),
    #[error("the proxy URL's scheme is `{0}`, but only http:// proxies are supported")]
    UnsupportedScheme(String),
    #[error("the proxy URL names no host")]
    NoHost,
}

/// A proxy URL, checked: `http`, with a host.
pub(crate) fn proxy_url(value: &str) -> Result<Url, ProxySettingError> {
    let url = Url::parse(value.trim()).map_err(ProxySettingError::InvalidUrl)?;
    if url.scheme() != "http" {
        return Err(ProxySettingError::UnsupportedScheme(
            url.scheme().to_owned(),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ProxySettingError::NoHost);
    }
    Ok(url)
}

/// A proxy URL from an environment variable: like curl, a value without a scheme is an
/// `http://` proxy (`proxy.example:3128`).
fn env_proxy_url(value: &str) -> Result<Url, ProxySettingError> {
    let value = value.trim();
    if value.contains("://") {
        proxy_url(value)
    } else {
        proxy_url(&format!("http://{value}"))
    }
}

/// A URL with its password masked, for messages.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// `http://host:port` of a proxy, without credentials or path.
fn proxy_origin(uri: &http::Uri) -> String {
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    format!("http://{host}:{port}")
}

/// The proxy variables, upper case first.
const ALL_PROXY: [&str; 2] = ["ALL_PROXY", "all_proxy"];
const HTTP_PROXY: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const HTTPS_PROXY: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const NO_PROXY: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// The first of `names` set to a non-empty value, with its name.
fn first_set(
    env: &dyn Fn(&str) -> Option<String>,
    names: [&'static str; 2],
) -> Option<(&'static str, String)> {
    names.into_iter().find_map(|name| {
        env(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    })
}

/// The proxy of one environment variable, or `None` (with a warning naming the variable,
/// never its value) when it is unusable.
fn usable(variable: &str, value: &str) -> Option<Url> {
    match env_proxy_url(value) {
        Ok(url) => Some(url),
        Err(e) => {
            tracing::warn!(
                variable,
                error = %e,
                "ignoring an unusable proxy variable: the destinations it covers are reached directly"
            );
            None
        }
    }
}

/// Which destinations go through which proxy: fixed when a client is built.
#[derive(Clone)]
pub(crate) struct Proxies {
    /// `None`: every destination is reached directly.
    matcher: Option<Arc<Matcher>>,
    /// For `Debug`: the proxies' origins and the exceptions.
    http: Option<String>,
    https: Option<String>,
    no_proxy: String,
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxies")
            .field("http", &self.http)
            .field("https", &self.https)
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl Proxies {
    /// Every destination directly.
    pub(crate) fn direct() -> Self {
        Self {
            matcher: None,
            http: None,
            https: None,
            no_proxy: String::new(),
        }
    }

    /// The proxies of `setting`, with `no_proxy` as the exceptions (for
    /// [`ProxySetting::Environment`], instead of `NO_PROXY` when given). `env` reads an
    /// environment variable. Unusable environment variables are ignored with a warning (the
    /// destinations they cover go direct); an unusable explicit URL is an error.
    pub(crate) fn from_setting(
        setting: &ProxySetting,
        no_proxy: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ProxySettingError> {
        match setting {
            ProxySetting::Direct => Ok(Self::direct()),
            ProxySetting::Url(url) => {
                let url = proxy_url(url.as_str())?;
                Ok(Self::build(
                    Some(url.clone()),
                    Some(url),
                    no_proxy.unwrap_or_default(),
                ))
            }
            ProxySetting::Environment => {
                let all = first_set(env, ALL_PROXY).and_then(|(name, v)| usable(name, &v));
                // A scheme's own variable, when set, decides for it (even when unusable: then
                // its destinations go direct rather than through ALL_PROXY).
                let of = |names| match first_set(env, names) {
                    Some((name, value)) => usable(name, &value),
                    None => all.clone(),
                };
                let http = of(HTTP_PROXY);
                let https = of(HTTPS_PROXY);
                let no = match no_proxy {
                    Some(no) => no.to_owned(),
                    None => first_set(env, NO_PROXY).map(|(_, v)| v).unwrap_or_default(),
                };
                Ok(Self::build(http, https, &no))
            }
        }
    }

    fn build(http: Option<Url>, https: Option<Url>, no_proxy: &str) -> Self {
        if http.is_none() && https.is_none() {
            return Self::direct();
        }
        let value = |u: &Option<Url>| u.as_ref().map(|u| u.as_str().to_owned());
        let mut builder = Matcher::builder().no(no_proxy);
        if let Some(v) = value(&http) {
            builder = builder.http(v);
        }
        if let Some(v) = value(&https) {
            builder = builder.https(v);
        }
        let matcher = builder.build();
        let origin = |u: &Option<Url>| {
            u.as_ref().map(|u| {
                format!(
                    "http://{}:{}",
                    u.host_str().unwrap_or_default(),
                    u.port_or_known_default().unwrap_or(80)
                )
            })
        };
        Self {
            matcher: Some(Arc::new(matcher)),
            http: origin(&http),
            https: origin(&https),
            no_proxy: no_proxy.to_owned(),
        }
    }

    /// The proxy `dst` goes through, if any.
    fn intercept(&self, dst: &http::Uri) -> Option<Intercept> {
        self.matcher.as_ref()?.intercept(dst)
    }

    /// The origin (`http://host:port`, no credentials) of the proxy `dst` goes through.
    pub(crate) fn origin_for(&self, dst: &http::Uri) -> Option<String> {
        self.intercept(dst).map(|i| proxy_origin(i.uri()))
    }

    /// The `Proxy-Authorization` a request to `dst` must carry: the proxy's Basic
    /// credentials when `dst` is a plain `http` destination sent to a proxy that has them.
    /// (An `https` destination is tunnelled: its credentials go on the `CONNECT` only.)
    pub(crate) fn request_auth(&self, dst: &http::Uri) -> Option<http::HeaderValue> {
        if dst.scheme() != Some(&http::uri::Scheme::HTTP) {
            return None;
        }
        let mut value = self.intercept(dst)?.basic_auth()?.clone();
        value.set_sensitive(true);
        Some(value)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a connection could not be made. The messages name no credential, and no address the
/// egress policy refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The egress policy refused the destination, or its name could not be resolved for
    /// the check.
    #[error("{0}")]
    Egress(#[source] egress::ConnectError),
    /// A direct connection (TCP or TLS) failed.
    #[error(transparent)]
    Direct(BoxError),
    /// The proxy could not be reached.
    #[error("cannot connect to the proxy")]
    Proxy(#[source] BoxError),
    /// The proxy could not be reached, or did not open a tunnel (it refused the
    /// credentials, or could not reach the destination).
    #[error("no tunnel through the proxy")]
    Tunnel(#[source] BoxError),
    /// TLS with the destination, inside the tunnel, failed.
    #[error(transparent)]
    Tls(BoxError),
}

impl ConnectError {
    /// An error of the direct connector: the egress connector's own, or TLS's.
    fn direct(e: BoxError) -> Self {
        match e.downcast::<egress::ConnectError>() {
            Ok(e) => Self::Egress(*e),
            Err(e) => Self::Direct(e),
        }
    }

    /// An error of the tunnelling TLS connector: the egress check's, I/O errors of its
    /// own (the TLS handshake), or the tunnel's.
    fn tunnelled(e: BoxError) -> Self {
        let e = match e.downcast::<egress::ConnectError>() {
            Ok(refused) => return Self::Egress(*refused),
            Err(e) => e,
        };
        if e.is::<std::io::Error>() {
            Self::Tls(e)
        } else {
            Self::Tunnel(e)
        }
    }
}

/// The connector of [`HttpClient`](super::http::HttpClient): direct, tunnelled or proxied,
/// per destination (see the module's documentation). Destinations are checked against the
/// egress policy; the proxies, which the operator configures, are not.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    /// To destinations: under the egress policy.
    destination: TcpConnector,
    /// To the proxies: unrestricted.
    to_proxy: TcpConnector,
    tls: Arc<rustls::ClientConfig>,
    proxies: Proxies,
}

impl fmt::Debug for ProxyConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConnector")
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl ProxyConnector {
    /// `destination` connects to destinations under the egress policy, `tls` is the
    /// client's TLS configuration (with its ALPN protocols); proxies are reached within
    /// `destination`'s timeout, without the policy.
    pub(crate) fn new(
        destination: TcpConnector,
        connect_timeout: std::time::Duration,
        tls: Arc<rustls::ClientConfig>,
        proxies: Proxies,
    ) -> Self {
        let to_proxy = TcpConnector::new(Arc::new(EgressPolicy::unrestricted()), connect_timeout);
        Self {
            destination,
            to_proxy,
            tls,
            proxies,
        }
    }
}

/// Checks a destination reached through a proxy before anything is sent to the proxy:
/// resolved here and checked like a direct one, unless the operator leaves names to the
/// proxy (then only a destination given as an address is checked).
pub(crate) async fn check_proxied(
    policy: &EgressPolicy,
    dst: &http::Uri,
) -> Result<(), ConnectError> {
    if !policy.is_enforced() {
        return Ok(());
    }
    let (host, port) = egress::connect::host_and_port(dst).map_err(ConnectError::Egress)?;
    if policy.proxy_enforces() && host.parse::<std::net::IpAddr>().is_err() {
        return Ok(());
    }
    egress::resolve_checked(policy, &host, port)
        .await
        .map(|_| ())
        .map_err(ConnectError::Egress)
}

/// The tunnel to an https destination through a proxy, under the egress policy: the
/// destination's name is resolved and checked here, and the proxy is asked to `CONNECT` to
/// the address checked, so a name that answers differently to the proxy (DNS rebinding)
/// cannot lead it elsewhere. TLS, outside this, still runs with the destination's name.
/// When the operator leaves names to the proxy (`proxy_enforces`), the name is passed on
/// and only a destination given as an address is checked.
#[derive(Clone)]
struct AddressedTunnel {
    tunnel: Tunnel<TcpConnector>,
    policy: Arc<EgressPolicy>,
}

impl Service<http::Uri> for AddressedTunnel {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tunnel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let mut tunnel = self.tunnel.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            if !policy.is_enforced() || policy.proxy_enforces() {
                check_proxied(&policy, &dst).await?;
                return tunnel.call(dst).await.map_err(Into::into);
            }
            let (host, port) = egress::connect::host_and_port(&dst)?;
            // Each address the name resolves to, in order, until the proxy reaches one.
            let mut last: BoxError = egress::ConnectError::NoAddress { host: host.clone() }.into();
            for address in egress::resolve_checked(&policy, &host, port).await? {
                let target = format!("https://{address}/").parse::<http::Uri>()?;
                match tunnel.call(target).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = e.into(),
                }
            }
            Err(last)
        })
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<ProxyStream, ConnectError>> + Send>>;

impl Service<http::Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The TCP connectors are always ready; each call clones what it needs.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        let policy = self.destination.policy().clone();
        match self.proxies.intercept(&dst) {
            None => {
                let mut direct = HttpsConnector::from((self.destination.clone(), tls));
                Box::pin(async move {
                    let stream = direct.call(dst).await.map_err(ConnectError::direct)?;
                    Ok(ProxyStream::new(stream, false))
                })
            }
            Some(proxy) if dst.scheme() == Some(&http::uri::Scheme::HTTPS) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.to_proxy.clone());
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                // TLS with the destination (by its name), inside a tunnel to the address
                // checked here.
                let addressed = AddressedTunnel { tunnel, policy };
                let mut tunnelled = HttpsConnector::from((addressed, tls));
                Box::pin(async move {
                    let stream = tunnelled.call(dst).await.map_err(ConnectError::tunnelled)?;
                    Ok(ProxyStream::new(stream, false))
                })
            }
            Some(proxy) => {
                let to_proxy = self.to_proxy.clone();
                let proxy_uri = proxy.uri().clone();
                Box::pin(async move {
                    check_proxied(&policy, &dst).await?;
                    let tcp = to_proxy
                        .connect(&proxy_uri)
                        .await
                        .map_err(|e| ConnectError::Proxy(e.into()))?;
                    Ok(ProxyStream::new(
                        MaybeHttpsStream::Http(TokioIo::new(tcp)),
                        true,
                    ))
                })
            }
        }
    }
}

/// A connection made by [`ProxyConnector`]: to the destination (perhaps through a tunnel),
/// or to a proxy that forwards requests written in absolute form.
#[derive(Debug)]
pub struct ProxyStream {
    inner: MaybeHttpsStream<TokioIo<TcpStream>>,
    proxied: bool,
}

impl ProxyStream {
    fn new(inner: MaybeHttpsStream<TokioIo<TcpStream>>, proxied: bool) -> Self {
        Self { inner, proxied }
    }
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.inner.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn proxies(vars: &[(&str, &str)]) -> Proxies {
        Proxies::from_setting(&ProxySetting::Environment, None, &env(vars))
            .expect("the environment never fails")
    }

    fn via(proxies: &Proxies, url: &str) -> Option<String> {
        proxies.origin_for(&url.parse().expect("a test URI"))
    }

    #[test]
    fn settings_parse_from_their_names_and_http_urls() {
        assert_eq!("env".parse(), Ok(ProxySetting::Environment));
        assert_eq!(" none ".parse(), Ok(ProxySetting::Direct));
        let Ok(ProxySetting::Url(url)) = "http://u:p@proxy.example:3128".parse() else {
            panic!("a proxy URL is a setting");
        };
        assert_eq!(url.host_str(), Some("proxy.example"));
        assert_eq!(url.port(), Some(3128));
        assert_eq!(url.password(), Some("p"));
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason_and_without_the_value() {
        let cases = [
            ("", ProxySettingError::NotASetting),
            ("ENV", ProxySettingError::NotASetting),
            ("direct", ProxySettingError::NotASetting),
            ("proxy.example:3128", ProxySettingError::NotASetting),
            (
                "https://u:secret@proxy.example",
                ProxySettingError::UnsupportedScheme("https".into()),
            ),
            (
                "socks5://u:secret@proxy.example:1080",
                ProxySettingError::UnsupportedScheme("socks5".into()),
            ),
            (
                "http://u:secret@[::1",
                ProxySettingError::InvalidUrl(url::ParseError::InvalidIpv6Address),
            ),
        ];
        for (value, expected) in cases {
            let error = value
                .parse::<ProxySetting>()
                .expect_err("an invalid setting");
            assert_eq!(error, expected, "{value:?}");
            assert!(
                !error.to_string().contains("secret"),
                "{value:?}: {error} shows the password"
            );
        }
    }

    #[test]
    fn credentials_show_in_no_debug_or_display_form() {
        let setting: ProxySetting = "http://alice:s3cr3t@proxy.example:3128"
            .parse()
            .expect("a proxy URL");
        for shown in [format!("{setting:?}"), setting.to_string()] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("proxy.example:3128"), "{shown}");
        }
        let proxies = Proxies::from_setting(&setting, None, &env(&[])).expect("a proxy URL");
        let shown = format!("{proxies:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("alice"),
            "{shown}"
        );
        assert_eq!(
            via(&proxies, "http://api.example/x").as_deref(),
            Some("http://proxy.example:3128")
        );
    }

    #[test]
    fn each_scheme_takes_its_own_variable_then_all_proxy() {
        let p = proxies(&[
            ("HTTP_PROXY", "http://h.proxy:1"),
            ("HTTPS_PROXY", "http://s.proxy:2"),
        ]);
        assert_eq!(
            via(&p, "http://api.example/").as_deref(),
            Some("http://h.proxy:1")
        );
        assert_eq!(
            via(&p, "https://api.example/").as_deref(),
            Some("http://s.proxy:2")
        );

        let p = proxies(&[
            ("ALL_PROXY", "http://a.proxy:3"),
            ("HTTPS_PROXY", "s.proxy:2"),
        ]);
        assert_eq!(
            via(&p, "http://api.example/").as_deref(),
            Some("http://a.proxy:3")
        );
        assert_eq!(
            via(&p, "https://api.example/").as_deref(),
            Some("http://s.proxy:2"),
            "a value without a scheme is an http:// proxy"
        );

        let p = proxies(&[("https_proxy", "http://lower.proxy:4")]);
        assert_eq!(via(&p, "http://api.example/"), None);
        assert_eq!(
            via(&p, "https://api.example/").as_deref(),
            Some("http://lower.proxy:4")
        );

        let p = proxies(&[
            ("HTTP_PROXY", "http://upper.proxy:5"),
            ("http_proxy", "http://lower.proxy:6"),
        ]);
        assert_eq!(
            via(&p, "http://api.example/").as_deref(),
            Some("http://upper.proxy:5"),
            "the upper-case form wins"
        );

        let p = proxies(&[("HTTP_PROXY", ""), ("http_proxy", "http://lower.proxy:6")]);
        assert_eq!(
            via(&p, "http://api.example/").as_deref(),
            Some("http://lower.proxy:6"),
            "an empty variable counts as unset"
        );

        assert!(proxies(&[]).matcher.is_none());
    }

    #[test]
    fn an_unusable_variable_sends_its_destinations_direct() {
        let p = proxies(&[
            ("ALL_PROXY", "http://a.proxy:3"),
            ("HTTPS_PROXY", "socks5://s.proxy:1080"),
        ]);
        assert_eq!(via(&p, "https://api.example/"), None);
        assert_eq!(
            via(&p, "http://api.example/").as_deref(),
            Some("http://a.proxy:3")
        );

        let p = proxies(&[
            ("ALL_PROXY", "https://a.proxy"),
            ("HTTP_PROXY", "h.proxy:1"),
        ]);
        assert_eq!(via(&p, "https://api.example/"), None);
        assert_eq!(
            via(&p, "http://api.example/").as_deref(),
            Some("http://h.proxy:1")
        );
    }

    #[test]
    fn no_proxy_names_hosts_domains_and_networks_that_go_direct() {
        let p = proxies(&[
            ("HTTP_PROXY", "http://proxy.internal:3128"),
            ("HTTPS_PROXY", "http://proxy.internal:3128"),
            (
                "no_proxy",
                "localhost, .corp.example, example.org, 10.0.0.0/8, ::1",
            ),
        ]);
        for direct in [
            "http://localhost:8080/",
            "https://a.corp.example/",
            "https://example.org/",
            "https://api.example.org/",
            "http://10.1.2.3/",
            "http://[::1]:8080/",
        ] {
            assert_eq!(via(&p, direct), None, "{direct} goes direct");
        }
        for proxied in [
            "https://corp.example.com/",
            "https://notexample.org/",
            "http://11.0.0.1/",
            "http://127.0.0.1:8080/",
        ] {
            assert_eq!(
                via(&p, proxied).as_deref(),
                Some("http://proxy.internal:3128"),
                "{proxied} goes through the proxy"
            );
        }
        let everything = proxies(&[("HTTP_PROXY", "proxy:1"), ("NO_PROXY", "*")]);
        assert_eq!(via(&everything, "http://anything.example/"), None);
    }

    #[test]
    fn an_explicit_setting_ignores_the_environment() {
        let environment = env(&[
            ("HTTPS_PROXY", "http://env.proxy:1"),
            ("NO_PROXY", "api.example"),
        ]);
        let direct = Proxies::from_setting(&ProxySetting::Direct, None, &environment)
            .expect("direct is always usable");
        assert_eq!(via(&direct, "https://other.example/"), None);

        let url = ProxySetting::Url(Url::parse("http://own.proxy:8080").expect("a URL"));
        let own =
            Proxies::from_setting(&url, Some("internal.example"), &environment).expect("usable");
        assert_eq!(
            via(&own, "https://api.example/").as_deref(),
            Some("http://own.proxy:8080"),
            "NO_PROXY of the environment does not apply to an explicit proxy"
        );
        assert_eq!(via(&own, "http://internal.example/"), None);

        let overridden = Proxies::from_setting(
            &ProxySetting::Environment,
            Some("other.example"),
            &environment,
        )
        .expect("usable");
        assert_eq!(
            via(&overridden, "https://api.example/").as_deref(),
            Some("http://env.proxy:1"),
            "an explicit no_proxy replaces NO_PROXY"
        );
        assert_eq!(via(&overridden, "https://other.example/"), None);

        let bad = ProxySetting::Url(Url::parse("socks5://own.proxy:1080").expect("a URL"));
        assert_eq!(
            Proxies::from_setting(&bad, None, &environment).map(|_| ()),
            Err(ProxySettingError::UnsupportedScheme("socks5".into()))
        );
    }

    #[test]
    fn credentials_go_on_plain_http_requests_to_the_proxy_only() {
        let p = proxies(&[
            ("ALL_PROXY", "http://Ala%20ddin:open%3Asesame@proxy:3128"),
            ("NO_PROXY", "direct.example"),
        ]);
        let auth = p
            .request_auth(&"http://api.example/x".parse().expect("a URI"))
            .expect("credentials for a proxied http request");
        // "Ala ddin:open:sesame", decoded from the URL, in Basic form.
        assert_eq!(auth, "Basic QWxhIGRkaW46b3BlbjpzZXNhbWU=");
        assert!(auth.is_sensitive());
        assert_eq!(
            p.request_auth(&"https://api.example/x".parse().expect("a URI")),
            None,
            "an https destination is tunnelled: the credentials go on the CONNECT"
        );
        assert_eq!(
            p.request_auth(&"http://direct.example/x".parse().expect("a URI")),
            None
        );
        let anonymous = proxies(&[("HTTP_PROXY", "http://proxy:3128")]);
        assert_eq!(
            anonymous.request_auth(&"http://api.example/x".parse().expect("a URI")),
            None
        );
    }
}
