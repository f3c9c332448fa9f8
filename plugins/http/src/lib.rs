//! The generic HTTP connector: one `request` action against the connection's base URL, with
//! the connection's credentials attached by the host. Requests leave only for the base
//! URL's origin.

use junction_sdk::http::{Method, Request};
use junction_sdk::prelude::*;
use std::collections::BTreeMap;

struct HttpConnector;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

/// A request relative to the connection's base URL.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RequestInput {
    /// HTTP method; `GET` when left out.
    #[serde(default)]
    method: Option<Verb>,
    /// Path below the base URL, such as `/v1/items`.
    path: String,
    /// Query parameters.
    #[serde(default)]
    query: BTreeMap<String, String>,
    /// Request headers. Credentials are added by Junction; do not put them here.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A JSON body, sent with `Content-Type: application/json`.
    #[serde(default)]
    json: Option<Value>,
    /// A text body, sent as is (set `Content-Type` in `headers`).
    #[serde(default)]
    text: Option<String>,
    /// Return error statuses as a response instead of failing (default: fail).
    #[serde(default)]
    allow_error_status: bool,
}

/// The upstream response.
#[derive(Serialize, JsonSchema)]
struct ResponseOutput {
    status: u16,
    headers: BTreeMap<String, String>,
    /// The body as JSON when it parses as JSON, else as text.
    body: Value,
}

/// Joins the base URL and a path with exactly one `/` between them. Absolute URLs are
/// refused: this connector talks to its base URL only.
fn join(base: &str, path: &str) -> Result<String> {
    if path.contains("://") || path.starts_with("//") {
        return Err(Error::invalid_input(
            "`path` must be a path below the connection's base URL, not a URL",
        ));
    }
    Ok(format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    ))
}

fn request(input: RequestInput) -> Result<ResponseOutput> {
    let base = connection::field_or("base_url", "")?;
    let method = match input.method.unwrap_or(Verb::Get) {
        Verb::Get => Method::Get,
        Verb::Head => Method::Head,
        Verb::Post => Method::Post,
        Verb::Put => Method::Put,
        Verb::Patch => Method::Patch,
        Verb::Delete => Method::Delete,
        Verb::Options => Method::Options,
    };
    let mut req = Request::new(method, join(&base, &input.path)?);
    for (k, v) in &input.query {
        req = req.query(k, v);
    }
    for (k, v) in &input.headers {
        req = req.header(k, v);
    }
    req = match (input.json, input.text) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_input(
                "give either `json` or `text`, not both",
            ));
        }
        (Some(json), None) => req.json(&json)?,
        (None, Some(text)) => req.body(text.into_bytes()),
        (None, None) => req,
    };
    let mut response = req.send()?;
    if !input.allow_error_status {
        response = response.error_for_status()?;
    }
    let body = junction_sdk::serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| Value::String(response.text()));
    let mut headers = BTreeMap::new();
    for (k, v) in response.headers {
        headers
            .entry(k.to_ascii_lowercase())
            .and_modify(|joined: &mut String| {
                joined.push_str(", ");
                joined.push_str(&v);
            })
            .or_insert(v);
    }
    Ok(ResponseOutput {
        status: response.status,
        headers,
        body,
    })
}

impl Connector for HttpConnector {
    fn manifest() -> Manifest {
        Manifest::new("http", env!("CARGO_PKG_VERSION"))
            .title("HTTP")
            .description("Call any REST endpoint below a base URL, with credentials attached by Junction.")
            .release(Release::Ga)
            .docs(include_str!("../README.md"))
            .field(
                Field::text("base_url", "Base URL")
                    .description("Requests go to paths below this URL, and nowhere else. Example: https://api.example.com/v1"),
            )
            .field(Field::secret("token", "Bearer token").schemes(["bearer"]))
            .field(Field::secret("api_key", "API key").schemes(["api-key-header", "api-key-query"]))
            .field(Field::text("username", "User name").schemes(["basic"]))
            .field(Field::secret("password", "Password").schemes(["basic"]))
            .auth(Auth::none("none", "No authentication"))
            .auth(Auth::bearer("bearer", "Bearer token", "token"))
            .auth(Auth::api_key("api-key-header", "API key in the X-API-Key header", "api_key", KeyLocation::Header, "X-API-Key"))
            .auth(Auth::api_key("api-key-query", "API key in the api_key query parameter", "api_key", KeyLocation::Query, "api_key"))
            .auth(Auth::basic("basic", "User name and password", "username", "password"))
            .allowed_host("{base_url}")
            .action(
                "request",
                "Send a request",
                "Sends an HTTP request to a path below the base URL and returns the response.",
                request,
            )
    }

    fn test_connection() -> Result<()> {
        let base = connection::field_or("base_url", "")?;
        let response = Request::get(base).send()?;
        match response.status {
            401 => Err(Error::Unauthorized(
                "the API refused the credentials".into(),
            )),
            403 => Err(Error::Forbidden("the API refused access".into())),
            s if s >= 500 => Err(Error::Upstream {
                status: s,
                body: response.text().chars().take(200).collect(),
            }),
            _ => Ok(()),
        }
    }
}

export_connector!(HttpConnector);

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn paths_join_the_base_url_with_one_slash() {
        assert_eq!(
            join("https://a.test/v1/", "/items").unwrap(),
            "https://a.test/v1/items"
        );
        assert_eq!(
            join("https://a.test/v1", "items").unwrap(),
            "https://a.test/v1/items"
        );
    }

    #[test]
    fn absolute_urls_are_refused() {
        assert!(join("https://a.test", "https://evil.test/").is_err());
        assert!(join("https://a.test", "//evil.test/").is_err());
    }
}
