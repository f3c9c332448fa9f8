//! A small typed client of the Junction service's HTTP API (v1), for the command line.
//!
//! It speaks HTTP/1.1 or HTTP/2, over plain TCP (fine on loopback) or TLS through
//! hyper-rustls; sends the bearer token on every request, marked sensitive; and turns the
//! API's error envelope `{"error": {"code", "message", "details"}}` into
//! [`ClientError::Api`]. Every successful answer comes back typed *and* as the JSON the
//! service sent ([`Reply`]), so `--json` prints exactly what the API said.

use crate::credentials::Secret;
use crate::vault::CredentialRef;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use url::Url;

/// Where `junction serve` listens by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7480";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than any invocation's wall-clock limit, so the service answers first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_RESPONSE_BYTES: usize = 64 << 20;
const CLIENT_USER_AGENT: &str = concat!("junction-cli/", env!("CARGO_PKG_VERSION"));

/// Characters escaped in a path segment: everything but unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a call to the service did not give the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{address}` is not a usable server address: {reason}")]
    BadServer { address: String, reason: String },
    /// The address is not repeated: it holds a password.
    #[error(
        "the server address must not contain a user name or password; give the API token with --token or JUNCTION_TOKEN"
    )]
    CredentialsInServer,
    #[error(
        "the token cannot be sent in an HTTP header: it contains spaces, control or non-ASCII characters"
    )]
    BadToken,
    #[error("cannot reach the Junction service at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("the Junction service at {server} did not answer within {}s", .timeout.as_secs())]
    TimedOut { server: String, timeout: Duration },
    /// The API answered with its error envelope.
    #[error("[{}] {}", .error.code, .error.message)]
    Api {
        status: StatusCode,
        error: ApiError,
        /// The `x-request-id` of the answer, to find it in the service's logs.
        request_id: Option<String>,
    },
    /// Something answered, but not with the API's envelope (another service on that port,
    /// a proxy's error page…). The body is not repeated: it could echo the request.
    #[error(
        "{server} answered {status}{content_type}, which is not the Junction API; is --server (JUNCTION_SERVER) right?"
    )]
    NotJunction {
        server: String,
        status: StatusCode,
        content_type: String,
    },
    #[error("the answer of {server} to {what} does not match the API: {reason}")]
    Decode {
        server: String,
        what: String,
        reason: String,
    },
    #[error("the request to {server} failed: {reason}")]
    Transport { server: String, reason: String },
}

impl ClientError {
    /// The API error, when the service answered with one.
    pub fn api(&self) -> Option<(StatusCode, &ApiError)> {
        match self {
            Self::Api { status, error, .. } => Some((*status, error)),
            _ => None,
        }
    }
}

/// The API's error: `{"code", "message", "details"}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Map<String, Value>,
}

#[derive(Deserialize)]
struct Envelope {
    error: ApiError,
}

/// A successful answer: typed, and the JSON as the service sent it.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    pub value: T,
    pub json: Value,
}

/// One page of a list: the items stay JSON, so they can be printed as sent.
#[derive(Debug, Clone, Deserialize)]
pub struct Page {
    pub items: Vec<Value>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `{status, reason, checked_at}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Health {
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub checked_at: Option<String>,
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.status == "healthy"
    }
}

/// A connection as the API shows it: non-secret field values, and for secret fields only
/// whether they are set.
#[derive(Debug, Clone, Deserialize)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub connector: String,
    #[serde(default)]
    pub connector_version: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub folder_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, bool>,
    /// Secret fields whose value lives in a credential store.
    #[serde(default)]
    pub secret_refs: BTreeMap<String, CredentialRef>,
    #[serde(default)]
    pub poll_interval_seconds: Option<u64>,
    pub health: Health,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// After creating or reconnecting an OAuth connection: the consent to finish.
    #[serde(default)]
    pub authorization: Option<Authorization>,
}

/// An OAuth consent to finish in a browser.
#[derive(Debug, Clone, Deserialize)]
pub struct Authorization {
    pub url: String,
    pub redirect_uri: String,
    pub expires_at: String,
}

/// The body of `POST /v1/connections`.
#[derive(Debug, Serialize)]
pub struct NewConnection {
    pub connector: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub fields: BTreeMap<String, FieldArg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval_seconds: Option<u64>,
}

/// A field's value in a request: the value, or a credential store reference.
#[derive(Debug, Clone)]
pub enum FieldArg {
    Value(Secret),
    Reference(CredentialRef),
}

/// The one place field values leave as clear text: the request body.
impl Serialize for FieldArg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => s.serialize_str(v.expose()),
            Self::Reference(r) => r.serialize(s),
        }
    }
}

/// Filters of `GET /v1/connections`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub folder_id: Option<String>,
    pub connector: Option<String>,
    pub auth: Option<String>,
    pub health: Option<String>,
}

/// `POST /v1/connections/{id}/test`.
#[derive(Debug, Clone, Deserialize)]
pub struct TestResult {
    pub health: Health,
    #[serde(default)]
    pub connection_id: Option<String>,
}

/// The record of one invocation.
#[derive(Debug, Clone, Deserialize)]
pub struct Invocation {
    pub id: String,
    #[serde(default)]
    pub connector: Option<String>,
    #[serde(default)]
    pub connector_version: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<f64>,
    #[serde(default)]
    pub outcome: Option<String>,
}

/// `POST /v1/connections/{id}/invocations`: the record and the action's output.
#[derive(Debug, Clone, Deserialize)]
pub struct InvocationResult {
    pub invocation: Invocation,
    pub output: Value,
}

/// One published version of a connector in the service's catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub title: String,
    /// `ga` or `preview`.
    pub release: String,
    #[serde(default)]
    pub interface_version: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
    pub size_bytes: u64,
    #[serde(default)]
    pub published_at: Option<String>,
    /// `active`, `available`, `skipped` or `previously_installed`.
    #[serde(default)]
    pub state: String,
    /// Whether this is the newest published version of its connector.
    #[serde(default)]
    pub latest: bool,
    /// In the answer to a publication: the same version was already published, with the
    /// same digest.
    #[serde(default)]
    pub already_published: bool,
}

/// A connector of the catalog: its versions and which one is installed.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogConnector {
    pub name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub active_version: Option<String>,
    #[serde(default)]
    pub latest_version: Option<String>,
    /// The newest version, not skipped, newer than the active one.
    #[serde(default)]
    pub upgrade_available: Option<String>,
    /// Newest first.
    #[serde(default)]
    pub versions: Vec<CatalogVersion>,
}

/// `GET /v1/catalog`.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    pub items: Vec<CatalogConnector>,
}

/// A tenant's connector policy.
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub tenant_id: String,
    /// `None`: every installed connector.
    #[serde(default)]
    pub enabled_connectors: Option<Vec<String>>,
    /// Wins over `enabled_connectors`.
    #[serde(default)]
    pub disabled_connectors: Vec<String>,
    /// Allowed auth types by connector name (`*`: every connector without its own entry);
    /// a connector without an entry may use every type.
    #[serde(default)]
    pub allowed_auth_types: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub oauth_apps: Vec<TenantOAuthApp>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// The body of `PUT /v1/tenants/{id}/policy`: a policy without its OAuth apps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUpdate {
    /// Serialized as `null` when `None`: every installed connector.
    pub enabled_connectors: Option<Vec<String>>,
    pub disabled_connectors: Vec<String>,
    pub allowed_auth_types: BTreeMap<String, Vec<String>>,
}

impl From<&Policy> for PolicyUpdate {
    fn from(p: &Policy) -> Self {
        Self {
            enabled_connectors: p.enabled_connectors.clone(),
            disabled_connectors: p.disabled_connectors.clone(),
            allowed_auth_types: p.allowed_auth_types.clone(),
        }
    }
}

/// A tenant's own OAuth app for a connector; the client secret is never shown, only
/// whether it is set.
#[derive(Debug, Clone, Deserialize)]
pub struct TenantOAuthApp {
    pub connector: String,
    pub client_id: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Fields the connector's OAuth endpoints are built from, fixed by the app.
    #[serde(default)]
    pub endpoint_fields: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub client_secret_set: bool,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// The body of `PUT /v1/tenants/{id}/oauth-apps/{connector}`.
#[derive(Debug, Clone)]
pub struct NewOAuthApp {
    pub client_id: String,
    pub client_secret: Secret,
    /// `None`: the connector's default scopes.
    pub scopes: Option<Vec<String>>,
    /// Values of the fields the connector builds its OAuth endpoints from.
    pub endpoint_fields: std::collections::BTreeMap<String, String>,
}

/// The one place the client secret leaves as clear text: the request body.
impl Serialize for NewOAuthApp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("client_id", &self.client_id)?;
        map.serialize_entry("client_secret", self.client_secret.expose())?;
        if let Some(scopes) = &self.scopes {
            map.serialize_entry("scopes", scopes)?;
        }
        if !self.endpoint_fields.is_empty() {
            map.serialize_entry("endpoint_fields", &self.endpoint_fields)?;
        }
        map.end()
    }
}

/// A client of one service, with one token.
pub struct Client {
    /// The address without a trailing slash, e.g. `http://127.0.0.1:7480` or
    /// `https://example.com/junction`.
    base: String,
    token: Option<HeaderValue>,
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// Parses a server address: `http(s)://host[:port][/prefix]`; a bare `host:port` means http.
pub fn parse_server(address: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BadServer {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = address.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        if with_scheme.contains('@') {
            ClientError::CredentialsInServer
        } else {
            bad(&e.to_string())
        }
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::CredentialsInServer);
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// addresses are supported"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or a fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A path segment, escaped (an id typed by a person may hold anything).
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

impl Client {
    /// A client of the service at `server`, sending `token` if there is one.
    pub fn new(server: &str, token: Option<&Secret>) -> Result<Self, ClientError> {
        let base = parse_server(server)?;
        let token = match token {
            Some(t) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", t.expose().trim()))
                    .map_err(|_| ClientError::BadToken)?;
                if t.expose().trim().contains(char::is_whitespace) {
                    return Err(ClientError::BadToken);
                }
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(b) => b,
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
        };
        let https = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new()).build(https);
        Ok(Self { base, token, http })
    }

    /// The service's address, as used in messages.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Whether a token is sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `GET /v1/connections` with filters, one page.
    pub async fn list_connections(
        &self,
        filter: &ConnectionFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Reply<Page>, ClientError> {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let params = [
            ("folder_id", filter.folder_id.as_deref()),
            ("connector", filter.connector.as_deref()),
            ("auth", filter.auth.as_deref()),
            ("health", filter.health.as_deref()),
            ("cursor", cursor),
        ];
        for (name, value) in params {
            if let Some(v) = value {
                query.append_pair(name, v);
            }
        }
        if let Some(limit) = limit {
            query.append_pair("limit", &limit.to_string());
        }
        let query = query.finish();
        let path = if query.is_empty() {
            "/v1/connections".to_owned()
        } else {
            format!("/v1/connections?{query}")
        };
        self.call(Method::GET, &path, None).await
    }

    /// `POST /v1/connections`.
    pub async fn create_connection(
        &self,
        new: &NewConnection,
    ) -> Result<Reply<Connection>, ClientError> {
        let body = serde_json::to_vec(new).map_err(|e| self.decode_error("the request", &e))?;
        self.call(Method::POST, "/v1/connections", Some(body)).await
    }

    /// `POST /v1/connections/{id}/reconnect`.
    pub async fn reconnect_connection(&self, id: &str) -> Result<Reply<Connection>, ClientError> {
        let path = format!("/v1/connections/{}/reconnect", segment(id));
        self.call(Method::POST, &path, None).await
    }

    /// `GET /v1/connections/{id}`.
    pub async fn connection(&self, id: &str) -> Result<Reply<Connection>, ClientError> {
        let path = format!("/v1/connections/{}", segment(id));
        self.call(Method::GET, &path, None).await
    }

    /// `DELETE /v1/connections/{id}`.
    pub async fn delete_connection(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/connections/{}", segment(id));
        self.send(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// `POST /v1/connections/{id}/test`.
    pub async fn test_connection(&self, id: &str) -> Result<Reply<TestResult>, ClientError> {
        let path = format!("/v1/connections/{}/test", segment(id));
        self.call(Method::POST, &path, None).await
    }

    /// `POST /v1/connections/{id}/invocations`.
    pub async fn invoke(
        &self,
        id: &str,
        action: &str,
        input: Value,
    ) -> Result<Reply<InvocationResult>, ClientError> {
        let path = format!("/v1/connections/{}/invocations", segment(id));
        let body = serde_json::to_vec(&serde_json::json!({"action": action, "input": input}))
            .map_err(|e| self.decode_error("the request", &e))?;
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `POST /v1/catalog/versions`: publishes a component (its bytes).
    pub async fn publish_version(
        &self,
        component: Vec<u8>,
    ) -> Result<Reply<CatalogVersion>, ClientError> {
        let body = Payload {
            bytes: component,
            content_type: "application/wasm",
        };
        self.call_with(Method::POST, "/v1/catalog/versions", Some(body))
            .await
    }

    /// `GET /v1/catalog`.
    pub async fn catalog(&self) -> Result<Reply<Catalog>, ClientError> {
        self.call(Method::GET, "/v1/catalog", None).await
    }

    /// `GET /v1/catalog/{name}`.
    pub async fn catalog_connector(
        &self,
        name: &str,
    ) -> Result<Reply<CatalogConnector>, ClientError> {
        let path = format!("/v1/catalog/{}", segment(name));
        self.call(Method::GET, &path, None).await
    }

    /// `POST /v1/catalog/{name}/{operation}` with `{"version"?}`, where `operation` is
    /// `install`, `upgrade` or `rollback`.
    pub async fn change_installation(
        &self,
        name: &str,
        operation: Installation,
        version: Option<&str>,
    ) -> Result<Reply<CatalogConnector>, ClientError> {
        let path = format!("/v1/catalog/{}/{}", segment(name), operation.as_str());
        let body = match version {
            Some(v) => serde_json::json!({ "version": v }),
            None => serde_json::json!({}),
        };
        let body = serde_json::to_vec(&body).map_err(|e| self.decode_error("the request", &e))?;
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `POST` (skip) or `DELETE` (unskip) `/v1/catalog/{name}/versions/{version}/skip`.
    pub async fn skip_version(
        &self,
        name: &str,
        version: &str,
        skip: bool,
    ) -> Result<Reply<CatalogConnector>, ClientError> {
        let path = format!(
            "/v1/catalog/{}/versions/{}/skip",
            segment(name),
            segment(version)
        );
        let method = if skip { Method::POST } else { Method::DELETE };
        self.call(method, &path, None).await
    }

    /// `GET /v1/tenants/{id}/policy`, or with no id the caller's own tenant's
    /// (`GET /v1/tenant/policy`).
    pub async fn policy(&self, tenant: Option<&str>) -> Result<Reply<Policy>, ClientError> {
        let path = match tenant {
            Some(id) => format!("/v1/tenants/{}/policy", segment(id)),
            None => "/v1/tenant/policy".to_owned(),
        };
        self.call(Method::GET, &path, None).await
    }

    /// `PUT /v1/tenants/{id}/policy`.
    pub async fn set_policy(
        &self,
        tenant: &str,
        policy: &PolicyUpdate,
    ) -> Result<Reply<Policy>, ClientError> {
        let path = format!("/v1/tenants/{}/policy", segment(tenant));
        let body = serde_json::to_vec(policy).map_err(|e| self.decode_error("the request", &e))?;
        self.call(Method::PUT, &path, Some(body)).await
    }

    /// `PUT /v1/tenants/{id}/oauth-apps/{connector}`.
    pub async fn set_oauth_app(
        &self,
        tenant: &str,
        connector: &str,
        app: &NewOAuthApp,
    ) -> Result<Reply<TenantOAuthApp>, ClientError> {
        let path = format!(
            "/v1/tenants/{}/oauth-apps/{}",
            segment(tenant),
            segment(connector)
        );
        let body = serde_json::to_vec(app).map_err(|e| self.decode_error("the request", &e))?;
        self.call(Method::PUT, &path, Some(body)).await
    }

    /// `GET /v1/audit` with `filters` (`action`, `actor_id`, `outcome`, `since`,
    /// `tenant_id`), one page.
    pub async fn audit_events(
        &self,
        filters: &[(&str, &str)],
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Reply<Page>, ClientError> {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in filters {
            query.append_pair(name, value);
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        if let Some(limit) = limit {
            query.append_pair("limit", &limit.to_string());
        }
        let query = query.finish();
        let path = if query.is_empty() {
            "/v1/audit".to_owned()
        } else {
            format!("/v1/audit?{query}")
        };
        self.call(Method::GET, &path, None).await
    }

    /// `DELETE /v1/tenants/{id}/oauth-apps/{connector}`.
    pub async fn remove_oauth_app(&self, tenant: &str, connector: &str) -> Result<(), ClientError> {
        let path = format!(
            "/v1/tenants/{}/oauth-apps/{}",
            segment(tenant),
            segment(connector)
        );
        self.send(Method::DELETE, &path, None).await.map(|_| ())
    }

    fn decode_error(&self, what: &str, e: &dyn fmt::Display) -> ClientError {
        ClientError::Decode {
            server: self.base.clone(),
            what: what.to_owned(),
            reason: e.to_string(),
        }
    }

    /// Sends a request with a JSON body and decodes a JSON answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply<T>, ClientError> {
        self.call_with(method, path, body.map(Payload::json)).await
    }

    /// Sends a request with any body and decodes a JSON answer.
    async fn call_with<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Payload>,
    ) -> Result<Reply<T>, ClientError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let (status, headers, bytes) = self.send_with(method, path, body).await?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJunction {
            server: self.base.clone(),
            status,
            content_type: content_type(&headers),
        })?;
        let value = T::deserialize(&json).map_err(|e| self.decode_error(&what, &e))?;
        Ok(Reply { value, json })
    }

    /// Sends a request with a JSON body; a success status gives the body, an error status
    /// the API's error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        self.send_with(method, path, body.map(Payload::json)).await
    }

    /// Sends a request with any body; a success status gives the body, an error status the
    /// API's error.
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Payload>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        let uri = format!("{}{path}", self.base);
        tracing::debug!(%method, %uri, "sending a request to the service");
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, CLIENT_USER_AGENT);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.clone());
        }
        let body = match body {
            Some(b) => {
                request = request.header(CONTENT_TYPE, b.content_type);
                Full::new(Bytes::from(b.bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).map_err(|e| ClientError::BadServer {
            address: self.base.clone(),
            reason: e.to_string(),
        })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Unreachable {
                        server: self.base.clone(),
                        reason: root_cause(&e),
                    }
                } else {
                    ClientError::Transport {
                        server: self.base.clone(),
                        reason: root_cause(&e),
                    }
                }
            })?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| ClientError::Transport {
                    server: self.base.clone(),
                    reason: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            Ok::<_, ClientError>((parts.status, parts.headers, bytes))
        };
        let (status, headers, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::TimedOut {
                server: self.base.clone(),
                timeout: REQUEST_TIMEOUT,
            })??;
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        tracing::debug!(
            status = status.as_u16(),
            request_id = request_id.as_deref().unwrap_or(""),
            "the service answered"
        );
        if status.is_success() {
            return Ok((status, headers, bytes));
        }
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(envelope) => Err(ClientError::Api {
                status,
                error: envelope.error,
                request_id,
            }),
            Err(_) => Err(ClientError::NotJunction {
                server: self.base.clone(),
                status,
                content_type: content_type(&headers),
            }),
        }
    }
}

/// A request body and its content type.
struct Payload {
    bytes: Vec<u8>,
    content_type: &'static str,
}

impl Payload {
    fn json(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            content_type: "application/json",
        }
    }
}

/// What changes which version of a connector is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installation {
    Install,
    Upgrade,
    Rollback,
}

impl Installation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Upgrade => "upgrade",
            Self::Rollback => "rollback",
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" with {v}"))
        .unwrap_or_default()
}

/// The innermost cause: "Connection refused (os error 111)" says more than "client error
/// (Connect)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn server_addresses_are_normalised() {
        assert_eq!(
            parse_server("http://127.0.0.1:7480").unwrap(),
            "http://127.0.0.1:7480"
        );
        assert_eq!(
            parse_server("http://127.0.0.1:7480/").unwrap(),
            "http://127.0.0.1:7480"
        );
        assert_eq!(
            parse_server("localhost:7480").unwrap(),
            "http://localhost:7480"
        );
        assert_eq!(
            parse_server("https://example.com/junction/").unwrap(),
            "https://example.com/junction"
        );
    }

    #[test]
    fn bad_server_addresses_are_refused_with_the_reason() {
        let e = parse_server("ftp://example.com").unwrap_err().to_string();
        assert!(e.contains("only http:// and https://"), "{e}");
        let e = parse_server("http://example.com/?a=b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("query"), "{e}");
        let e = parse_server("http://").unwrap_err().to_string();
        assert!(
            e.contains("`http://` is not a usable server address"),
            "{e}"
        );
    }

    #[test]
    fn a_password_in_the_server_address_is_never_repeated() {
        for address in [
            "http://admin:hunter2@example.com",
            "admin:hunter2@example.com:80",
        ] {
            let e = parse_server(address).unwrap_err();
            assert!(matches!(e, ClientError::CredentialsInServer), "{e:?}");
            assert!(!e.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn ids_are_escaped_in_paths() {
        assert_eq!(segment("con_0123abc"), "con_0123abc");
        assert_eq!(segment("../admin?x=1"), "..%2Fadmin%3Fx%3D1");
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_without_being_repeated() {
        let e = Client::new(DEFAULT_SERVER, Some(&Secret::new("jt_abc\ndef"))).unwrap_err();
        assert!(matches!(e, ClientError::BadToken));
        let e = Client::new(DEFAULT_SERVER, Some(&Secret::new("jt abc"))).unwrap_err();
        assert!(matches!(e, ClientError::BadToken));
        let client = Client::new(DEFAULT_SERVER, Some(&Secret::new("jt_secret_token"))).unwrap();
        assert!(!format!("{client:?}").contains("jt_secret_token"));
    }

    #[test]
    fn new_connection_bodies_carry_the_field_values() {
        let new = NewConnection {
            connector: "github".into(),
            name: "gh".into(),
            folder_id: None,
            auth: Some("pat".into()),
            description: None,
            fields: BTreeMap::from([
                ("token".to_owned(), FieldArg::Value(Secret::new("ghp_x"))),
                (
                    "client_secret".to_owned(),
                    FieldArg::Reference(CredentialRef::parse("corp:apps/gh#secret").unwrap()),
                ),
            ]),
            poll_interval_seconds: Some(300),
        };
        assert!(!format!("{new:?}").contains("ghp_x"));
        let body: Value = serde_json::to_value(&new).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"connector": "github", "name": "gh", "auth": "pat",
                "fields": {"token": "ghp_x", "client_secret":
                    {"store": "corp", "path": "apps/gh", "key": "secret"}},
                "poll_interval_seconds": 300})
        );
    }

    #[test]
    fn oauth_app_bodies_carry_the_secret_and_debug_hides_it() {
        let app = NewOAuthApp {
            client_id: "Iv1.x".into(),
            client_secret: Secret::new("app-s3cret"),
            scopes: None,
            endpoint_fields: Default::default(),
        };
        assert!(!format!("{app:?}").contains("app-s3cret"));
        assert_eq!(
            serde_json::to_value(&app).unwrap(),
            serde_json::json!({"client_id": "Iv1.x", "client_secret": "app-s3cret"})
        );
        let app = NewOAuthApp {
            scopes: Some(vec!["repo".into()]),
            endpoint_fields: [("issuer".to_owned(), "https://id.example".to_owned())].into(),
            ..app
        };
        let body = serde_json::to_value(&app).unwrap();
        assert_eq!(body["scopes"][0], "repo");
        assert_eq!(body["endpoint_fields"]["issuer"], "https://id.example");
    }

    #[test]
    fn a_policy_update_says_null_for_every_connector() {
        let body = serde_json::to_value(PolicyUpdate::default()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"enabled_connectors": null, "disabled_connectors": [],
                "allowed_auth_types": {}})
        );
    }

    #[test]
    fn connections_decode_from_the_documented_shape() {
        let json = serde_json::json!({
            "id": "con_01", "tenant_id": "ten_01", "folder_id": "fld_01", "created_by": "prn_01",
            "connector": "github", "connector_version": null, "auth": "pat", "name": "gh",
            "description": "", "fields": {"base_url": "https://api.github.com"},
            "secrets": {"token": true}, "poll_interval_seconds": null,
            "health": {"status": "unknown", "reason": null, "checked_at": null},
            "created_at": "2026-11-22T10:00:00.123Z", "updated_at": "2026-11-22T10:00:00.123Z"
        });
        let c = Connection::deserialize(&json).unwrap();
        assert!(c.secrets["token"]);
        assert!(!c.health.is_healthy());
    }
}
