//! `junction:connector/http`: the connector's only way out. The host
//! 1. checks the destination against the connection's allow-list before anything is sent,
//! 2. attaches the connection's credentials (the connector never holds them),
//! 3. follows redirects only to allowed destinations, re-checking each hop,
//! 4. enforces the connect and read timeouts, the response size cap and the request count.

use crate::credentials::Credentials;
use crate::egress::{ConnectError, EgressPolicy, TcpConnector};
use crate::runtime::bindings::v0_1_0::junction::connector::http::{
    self as wit, Method, Request, Response,
};
use crate::runtime::bindings::v0_1_0::junction::connector::types::ConnectorError;
use crate::runtime::bindings::{denied, internal, invalid_input, timeout};
use crate::runtime::connection::PreparedConnection;
use crate::runtime::cpu::{CpuClock, Timed};
use crate::runtime::limits::{LimitExceeded, Limits};
use crate::runtime::state::InvocationState;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, LOCATION, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;
use url::Url;
use wasmtime::component::{HasData, Linker};

use super::proxy::{Proxies, ProxyConnector, check_proxied};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub use super::proxy::{ProxySetting, ProxySettingError};

/// The outbound HTTP client shared by all invocations of a runtime. Its proxies, trust roots
/// and client certificate are fixed when it is built.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<ProxyConnector, Full<Bytes>>,
    proxies: Proxies,
    egress: Arc<EgressPolicy>,
}

/// Shows the proxies' origins, never their credentials.
impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

/// How an [`HttpClient`] connects: its timeout, the egress policy its destinations are
/// checked against, its proxy and the certificates it trusts and presents.
#[derive(Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub egress: Arc<EgressPolicy>,
    pub proxy: ProxySetting,
    /// The destinations reached directly (`NO_PROXY`'s syntax: host names, which also cover
    /// their subdomains, `.domain`, IP addresses, networks such as `10.0.0.0/8`, `*`).
    /// With [`ProxySetting::Environment`] it replaces `NO_PROXY` when set; with
    /// [`ProxySetting::Url`] it is the only exception list.
    pub no_proxy: Option<String>,
    /// CA certificates (PEM, one or more per entry) trusted besides the system's roots.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// A TLS client certificate: its chain (PEM, the leaf first) and its private key (PEM).
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientOptions {
    /// The defaults: proxies from the environment, the system's trust roots, no client
    /// certificate.
    pub fn new(connect_timeout: Duration, egress: Arc<EgressPolicy>) -> Self {
        Self {
            connect_timeout,
            egress,
            proxy: ProxySetting::Environment,
            no_proxy: None,
            extra_roots_pem: Vec::new(),
            client_identity_pem: None,
        }
    }
}

/// Shows the settings, never the proxy's credentials or the client key.
impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("egress", &self.egress)
            .field("proxy", &self.proxy)
            .field("no_proxy", &self.no_proxy)
            .field("extra_roots_pem", &self.extra_roots_pem.len())
            .field(
                "client_identity_pem",
                &self.client_identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why an [`HttpClient`] cannot be built from its options. Names the setting at fault, never a
/// credential or a key.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid proxy setting: {0}")]
    Proxy(#[from] ProxySettingError),
    #[error("trusted certificate #{index}: {reason}")]
    ExtraRoot { index: usize, reason: String },
    #[error("client certificate: {0}")]
    ClientCertificate(String),
    #[error("client key: not a PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    ClientKey,
    #[error("client certificate and key cannot be used: {0}")]
    ClientIdentity(String),
}

/// The process environment, as the proxy settings read it.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The system's trust roots, or the bundled Mozilla roots when the system has none.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!(
            errors = native.errors.len(),
            ignored,
            "no system trust roots; using the bundled Mozilla roots"
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// The certificates of one PEM document: at least one, all well-formed.
fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certificates)
}

impl HttpClient {
    /// A client with the system's trust roots (or the bundled Mozilla roots when the
    /// system has none), `connect_timeout`, the proxies of the process environment (a
    /// variable that is not a usable proxy URL is ignored with a warning: the destinations
    /// it covers are reached directly), and `egress` checking every destination.
    pub fn new(connect_timeout: Duration, egress: Arc<EgressPolicy>) -> Self {
        let proxies = match Proxies::from_setting(&ProxySetting::Environment, None, &process_env) {
            Ok(proxies) => proxies,
            // Not reached: the environment's problems are warnings.
            Err(e) => {
                tracing::warn!(error = %e, "unusable proxy settings; connecting directly");
                Proxies::direct()
            }
        };
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(system_roots())
            .with_no_client_auth();
        Self::build(connect_timeout, egress, proxies, tls)
    }

    /// A client of `options`: its proxy, extra trust roots and client certificate.
    pub fn with_options(options: &ClientOptions) -> Result<Self, ClientError> {
        let proxies =
            Proxies::from_setting(&options.proxy, options.no_proxy.as_deref(), &process_env)?;
        let mut roots = system_roots();
        for (i, pem) in options.extra_roots_pem.iter().enumerate() {
            let index = i + 1;
            for certificate in
                pem_certificates(pem).map_err(|reason| ClientError::ExtraRoot { index, reason })?
            {
                roots.add(certificate).map_err(|e| ClientError::ExtraRoot {
                    index,
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let tls = match &options.client_identity_pem {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = pem_certificates(chain).map_err(ClientError::ClientCertificate)?;
                // The parser's error may quote the document: it is not shown.
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| ClientError::ClientKey)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ClientError::ClientIdentity(e.to_string()))?
            }
        };
        Ok(Self::build(
            options.connect_timeout,
            options.egress.clone(),
            proxies,
            tls,
        ))
    }

    fn build(
        connect_timeout: Duration,
        egress: Arc<EgressPolicy>,
        proxies: Proxies,
        mut tls: rustls::ClientConfig,
    ) -> Self {
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // TLS is layered on the connections it makes to https destinations.
        let destination = TcpConnector::new(egress.clone(), connect_timeout);
        let connector =
            ProxyConnector::new(destination, connect_timeout, Arc::new(tls), proxies.clone());
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            proxies,
            egress,
        }
    }

    /// The origin (`http://host:port`, without credentials) of the proxy a request to `url`
    /// goes through, or `None` when it goes direct.
    pub fn proxy_for(&self, url: &Url) -> Option<String> {
        let uri: http::Uri = url.as_str().parse().ok()?;
        self.proxies.origin_for(&uri)
    }

    /// `origin` of `url`, and the proxy it goes through, for messages.
    fn describe(&self, url: &Url) -> String {
        match self.proxy_for(url) {
            Some(proxy) => format!("{} through proxy {proxy}", origin(url)),
            None => origin(url),
        }
    }

    /// Sends `request`. A plain http request through a proxy carries the proxy's
    /// credentials, and its destination is checked against the egress policy each time:
    /// such requests share a pooled connection to the proxy, which resolves their host
    /// again for every one of them.
    async fn request(
        &self,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, BoxError> {
        if request.uri().scheme() == Some(&http::uri::Scheme::HTTP)
            && self.proxies.origin_for(request.uri()).is_some()
        {
            check_proxied(&self.egress, request.uri()).await?;
        }
        if let Some(auth) = self.proxies.request_auth(request.uri()) {
            request
                .headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth);
        }
        Ok(self.client.request(request).await?)
    }

    /// Sends a request of the host's own (a token request to an OAuth provider): no
    /// redirect followed, at most `max_body` bytes read, within `limit`. Errors name the
    /// destination and the cause, never the request's content.
    pub async fn exchange(
        &self,
        request: http::Request<Vec<u8>>,
        limit: Duration,
        max_body: usize,
    ) -> Result<http::Response<Vec<u8>>, ExchangeError> {
        let origin = Url::parse(&request.uri().to_string())
            .map(|u| self.describe(&u))
            .unwrap_or_else(|_| "the endpoint".into());
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let work = async {
            let response =
                self.request(request)
                    .await
                    .map_err(|e| match ConnectError::refusal_in(&*e) {
                        Some(refusal) => ExchangeError::Denied {
                            origin: origin.clone(),
                            reason: refusal.to_string(),
                        },
                        None => ExchangeError::Unreachable {
                            origin: origin.clone(),
                            detail: chain(&*e),
                        },
                    })?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|_| ExchangeError::Body {
                    origin: origin.clone(),
                    max_body,
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, bytes.to_vec()))
        };
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeError::Timeout {
                origin: origin.clone(),
                limit,
            }),
        }
    }
}

/// Why one of the host's own requests failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot reach {origin}: {detail}")]
    Unreachable { origin: String, detail: String },
    /// The egress policy refused the destination; `reason` names the class of address.
    #[error("cannot reach {origin}: {reason}")]
    Denied { origin: String, reason: String },
    #[error("{origin} did not answer within {limit:?}")]
    Timeout { origin: String, limit: Duration },
    #[error("the answer from {origin} could not be read, or is larger than {max_body} bytes")]
    Body { origin: String, max_body: usize },
}

/// What the http capability sees of an invocation.
#[derive(Debug)]
pub struct HttpView<'a> {
    pub client: &'a HttpClient,
    pub connection: &'a PreparedConnection,
    pub limits: &'a Limits,
    /// Requests sent so far in this invocation.
    pub sent: &'a mut u32,
    /// The invocation's CPU clock: the time this capability waits is not charged.
    pub(crate) cpu: &'a CpuClock,
}

struct HasHttp;
impl HasData for HasHttp {
    type Data<'a> = HttpView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<_, HasHttp>(linker, InvocationState::http_view)
}

/// Headers a connector may not set: the host manages the connection and the framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

const DEFAULT_USER_AGENT: &str = concat!("junction/", env!("CARGO_PKG_VERSION"));

/// Checks a destination before anything is sent. `Err` is the refusal the guest receives.
pub fn check_destination(connection: &PreparedConnection, url: &Url) -> Result<(), ConnectorError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid_input(format!(
            "only http and https URLs can be requested, not `{}`",
            url.scheme()
        )));
    }
    if connection.allow_list().allows(url) {
        Ok(())
    } else {
        Err(denied(format!(
            "{} is not among this connection's allowed hosts",
            origin(url)
        )))
    }
}

/// `scheme://host:port` of a URL, for messages (never the path or query).
fn origin(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => url.scheme().to_owned(),
    }
}

/// The connector's headers, without the reserved ones.
fn guest_headers(headers: &[(String, String)]) -> Result<HeaderMap, ConnectorError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid_input(format!("`{name}` is not a valid header name")))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            invalid_input(format!(
                "the value of header `{name}` is not a valid header value"
            ))
        })?;
        map.append(name, value);
    }
    if !map.contains_key(USER_AGENT) {
        map.insert(USER_AGENT, HeaderValue::from_static(DEFAULT_USER_AGENT));
    }
    Ok(map)
}

fn method(m: Method) -> http::Method {
    match m {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
        Method::Options => http::Method::OPTIONS,
    }
}

/// The full error chain of a client error, for messages. Client errors name the cause
/// (connection refused, TLS failure), never the request's headers or query.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

type Outcome = wasmtime::Result<Result<Response, ConnectorError>>;

impl HttpView<'_> {
    async fn send_request(&mut self, request: Request) -> Outcome {
        let mut url = match Url::parse(&request.url) {
            Ok(u) => u,
            Err(e) => {
                return Ok(Err(invalid_input(format!(
                    "the request URL is not an absolute URL: {e}"
                ))));
            }
        };
        let headers = match guest_headers(&request.headers) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let mut method = method(request.method);
        let mut body = request.body.map(Bytes::from).unwrap_or_default();
        let credentials: &Credentials = self.connection.credentials();
        // An OAuth token the host keeps renewed, fetched on the first allowed request.
        let source = self.connection.token_source().cloned();
        let mut token: Option<crate::credentials::Secret> = None;
        let mut retried_after_401 = false;
        let mut hops = 0u8;
        loop {
            if let Err(refusal) = check_destination(self.connection, &url) {
                return Ok(Err(refusal));
            }
            if *self.sent >= self.limits.requests {
                return Err(LimitExceeded::Requests(self.limits.requests).into());
            }
            *self.sent += 1;

            if let Some(source) = &source
                && token.is_none()
            {
                // A connection without a usable token fails the invocation with the
                // reason (a trap the runtime reports as such), not a guest error.
                let current = source.current().await?;
                self.connection.note_issued(&current);
                token = Some(current);
            }
            let attached;
            let credentials = match &token {
                Some(t) => {
                    attached = Credentials::Bearer(t.clone());
                    &attached
                }
                None => credentials,
            };
            let mut target = url.clone();
            let mut outbound_headers = headers.clone();
            if credentials
                .apply(&mut target, &mut outbound_headers)
                .is_err()
            {
                return Ok(Err(internal(
                    "the connection's credential contains characters that cannot be sent in HTTP; edit the connection",
                )));
            }
            let mut outbound = http::Request::new(Full::new(body.clone()));
            *outbound.method_mut() = method.clone();
            *outbound.headers_mut() = outbound_headers;
            *outbound.uri_mut() = match target.as_str().parse() {
                Ok(uri) => uri,
                Err(_) => return Ok(Err(invalid_input("the request URL cannot be sent"))),
            };
            drop(target);

            let read_timeout = self.limits.read_timeout;
            let response =
                match tokio::time::timeout(read_timeout, self.client.request(outbound)).await {
                    Err(_) => {
                        return Ok(Err(timeout(format!(
                            "{} did not answer within {read_timeout:?}",
                            self.client.describe(&url)
                        ))));
                    }
                    Ok(Err(e)) => {
                        let target = self.client.describe(&url);
                        // The address refused goes to the operator's log only (the
                        // connector logged it); the tenant learns its class.
                        if let Some(refusal) = ConnectError::refusal_in(&*e) {
                            return Ok(Err(denied(format!("cannot reach {target}: {refusal}"))));
                        }
                        let detail = chain(&*e);
                        return Ok(Err(if ConnectError::is_timeout_in(&*e) {
                            timeout(format!("cannot connect to {target}: {detail}"))
                        } else {
                            internal(format!("cannot reach {target}: {detail}"))
                        }));
                    }
                    Ok(Ok(r)) => r,
                };

            let status = response.status();
            if source.is_none()
                && matches!(status.as_u16(), 401 | 403)
                && !matches!(credentials, Credentials::None)
            {
                self.connection.note_rejection(status.as_u16());
            }
            // A rejected OAuth token: renew it (or take the one renewed meanwhile) and send
            // the same request once more.
            if status == http::StatusCode::UNAUTHORIZED
                && !retried_after_401
                && let (Some(source), Some(rejected)) = (&source, &token)
            {
                retried_after_401 = true;
                let renewed = source.rejected(rejected).await?;
                self.connection.note_issued(&renewed);
                token = Some(renewed);
                continue;
            }
            if status.is_redirection() && status != http::StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| url.join(l).ok());
                if let Some(next) = location {
                    if hops >= self.limits.redirects {
                        return Ok(Err(internal(format!(
                            "more than {} redirects starting at {}",
                            self.limits.redirects,
                            origin(&url)
                        ))));
                    }
                    hops += 1;
                    if status == http::StatusCode::SEE_OTHER
                        || (matches!(status.as_u16(), 301 | 302) && method == http::Method::POST)
                    {
                        method = http::Method::GET;
                        body = Bytes::new();
                    }
                    url = next;
                    continue;
                }
            }

            let cap = self.limits.response_bytes;
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > cap as u64) {
                return Err(LimitExceeded::ResponseSize(cap).into());
            }
            let response_headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let collected = tokio::time::timeout(
                read_timeout,
                Limited::new(response.into_body(), cap).collect(),
            )
            .await;
            let bytes = match collected {
                Err(_) => {
                    return Ok(Err(timeout(format!(
                        "the body from {} did not arrive within {read_timeout:?}",
                        origin(&url)
                    ))));
                }
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(LimitExceeded::ResponseSize(cap).into());
                }
                Ok(Err(e)) => {
                    return Ok(Err(internal(format!(
                        "reading the body from {} failed: {}",
                        origin(&url),
                        chain(e.as_ref())
                    ))));
                }
                Ok(Ok(c)) => c.to_bytes(),
            };
            // An upstream that echoes a credential must not hand it to the connector.
            let body = match self.connection.scrub(&bytes) {
                Some(scrubbed) => scrubbed,
                None => bytes.to_vec(),
            };
            let headers = response_headers
                .into_iter()
                .map(|(k, v)| (k, self.connection.scrub_str(v)))
                .collect();
            return Ok(Ok(Response {
                status: status.as_u16(),
                headers,
                body,
            }));
        }
    }
}

impl wit::Host for HttpView<'_> {
    #[instrument(level = "debug", skip_all, fields(method = ?request.method, destination))]
    async fn send(&mut self, request: Request) -> Outcome {
        if let Ok(url) = Url::parse(&request.url) {
            tracing::Span::current().record("destination", origin(&url));
        }
        let clock = self.cpu;
        let outcome = Timed::host(self.send_request(request), clock).await;
        if let Ok(Err(e)) = &outcome {
            tracing::debug!(error = ?e, "request refused or failed");
        }
        outcome
    }
}
