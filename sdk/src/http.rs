//! Outbound HTTP through the host. Build a [`Request`], `send` it, and decode the
//! [`Response`]. The host adds the connection's credentials; do not add them yourself.

use crate::__bindings::junction::connector::http as host;
use crate::{Error, Result};
use serde::{Serialize, de::DeserializeOwned};

pub use host::Method;

/// An outbound request.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Adds a query parameter, percent-encoded.
    pub fn query(mut self, name: &str, value: impl ToString) -> Self {
        self.query.push((name.to_owned(), value.to_string()));
        self
    }
    /// Adds a query parameter when `value` is `Some`.
    pub fn query_opt(self, name: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.query(name, v),
            None => self,
        }
    }
    /// A JSON body, with `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::internal(format!("cannot encode the request body: {e}")))?;
        self.headers
            .push(("content-type".to_owned(), "application/json".to_owned()));
        self.body = Some(bytes);
        Ok(self)
    }
    /// A raw body.
    pub fn body(mut self, bytes: Vec<u8>) -> Self {
        self.body = Some(bytes);
        self
    }
    /// The URL with the query parameters added so far.
    pub fn url(&self) -> String {
        self.full_url()
    }

    fn full_url(&self) -> String {
        if self.query.is_empty() {
            return self.url.clone();
        }
        let mut url = self.url.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in &self.query {
            url.push(sep);
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
            sep = '&';
        }
        url
    }
    /// Sends the request. Any HTTP status is a response; use
    /// [`Response::error_for_status`] to turn error statuses into [`Error`]s.
    pub fn send(self) -> Result<Response> {
        let request = host::Request {
            method: self.method,
            url: self.full_url(),
            headers: self.headers,
            body: self.body,
        };
        let response = host::send(&request)?;
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay as they are).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A response from the upstream API.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Decodes a JSON body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::internal(format!(
                "the API answered {} with a body that is not the expected JSON: {e}",
                self.status
            ))
        })
    }
    /// Keeps a 2xx response; maps any other status to the matching [`Error`]: 401
    /// unauthorized, 403 forbidden (or rate limited when the API says so), 404 not found,
    /// 429 rate limited, anything else upstream. The wait of a rate limit is `Retry-After`,
    /// or the time left until `X-RateLimit-Reset`.
    pub fn error_for_status(self) -> Result<Self> {
        if self.is_success() {
            return Ok(self);
        }
        let body: String = self.text().chars().take(512).collect();
        let retry_after = self
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u32>().ok());
        // Many APIs send the reset time on every response: only `Retry-After` or an
        // exhausted quota makes a 403 a rate limit.
        let exhausted = self.header("x-ratelimit-remaining").map(str::trim) == Some("0");
        let throttled =
            self.status == 429 || (self.status == 403 && (exhausted || retry_after.is_some()));
        let wait = retry_after.or_else(|| self.rate_limit_reset_in());
        Err(match self.status {
            401 => Error::Unauthorized(body),
            _ if throttled => Error::RateLimited {
                message: body,
                retry_after_seconds: wait,
            },
            403 => Error::Forbidden(body),
            404 => Error::NotFound(body),
            status => Error::Upstream { status, body },
        })
    }
    /// Seconds until `X-RateLimit-Reset`. APIs send either a Unix time (GitHub) or a number
    /// of seconds; values above 10^9 are read as a Unix time.
    pub fn rate_limit_reset_in(&self) -> Option<u32> {
        let reset = self
            .header("x-ratelimit-reset")?
            .trim()
            .parse::<u64>()
            .ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(reset_wait(reset, now))
    }

    /// The URL of the next page from an RFC 8288 `Link` header (`rel="next"`), as used by
    /// GitHub and many other APIs.
    pub fn next_link(&self) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("link"))
            .find_map(|(_, v)| next_link(v))
    }
}

/// Whole seconds to wait for a rate-limit reset given as a Unix time or as a delay, at
/// least one (a reset in the past means retry now, but not in a tight loop).
fn reset_wait(reset: u64, now: u64) -> u32 {
    let wait = if reset > 1_000_000_000 {
        reset.saturating_sub(now)
    } else {
        reset
    };
    u32::try_from(wait).unwrap_or(u32::MAX).max(1)
}

/// Finds the `rel="next"` target in a `Link` header value.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let url = target.strip_prefix('<')?.strip_suffix('>')?;
        pieces
            .filter_map(|p| p.trim().strip_prefix("rel="))
            .any(|rel| {
                rel.trim_matches('"')
                    .split_whitespace()
                    .any(|r| r == "next")
            })
            .then(|| url.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found_among_other_relations() {
        let header = r#"<https://api.github.com/user/repos?page=3>; rel="next", <https://api.github.com/user/repos?page=5>; rel="last""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.github.com/user/repos?page=3")
        );
        assert_eq!(
            next_link(r#"<https://x/?page=1>; rel="prev""#),
            None,
            "no next page"
        );
    }

    #[test]
    fn a_rate_limit_reset_is_a_unix_time_or_a_delay() {
        assert_eq!(reset_wait(1_700_000_090, 1_700_000_000), 90);
        assert_eq!(reset_wait(1_700_000_000, 1_700_000_090), 1);
        assert_eq!(reset_wait(30, 1_700_000_000), 30);
    }

    #[test]
    fn query_components_are_percent_encoded() {
        let r = Request::get("https://x/search").query("q", "a b&c=d");
        assert_eq!(r.full_url(), "https://x/search?q=a%20b%26c%3Dd");
        let r = Request::get("https://x/?a=1").query("b", 2);
        assert_eq!(r.full_url(), "https://x/?a=1&b=2");
    }

    #[test]
    fn error_statuses_map_to_typed_errors() {
        let resp = |status, headers: Vec<(&str, &str)>| Response {
            status,
            headers: headers
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            body: b"nope".to_vec(),
        };
        assert!(matches!(
            resp(401, vec![]).error_for_status(),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            resp(403, vec![]).error_for_status(),
            Err(Error::Forbidden(_))
        ));
        assert_eq!(
            resp(
                403,
                vec![("X-RateLimit-Remaining", "0"), ("Retry-After", "60")]
            )
            .error_for_status()
            .err(),
            Some(Error::RateLimited {
                message: "nope".into(),
                retry_after_seconds: Some(60)
            })
        );
        assert!(
            matches!(
                resp(
                    403,
                    vec![
                        ("X-RateLimit-Remaining", "4999"),
                        ("X-RateLimit-Reset", "1700000000")
                    ]
                )
                .error_for_status(),
                Err(Error::Forbidden(_))
            ),
            "a reset time alone does not make a 403 a rate limit"
        );
        assert!(matches!(
            resp(429, vec![("X-RateLimit-Reset", "30")]).error_for_status(),
            Err(Error::RateLimited {
                retry_after_seconds: Some(30),
                ..
            })
        ));
        assert!(matches!(
            resp(500, vec![]).error_for_status(),
            Err(Error::Upstream { status: 500, .. })
        ));
        assert!(resp(204, vec![]).error_for_status().is_ok());
    }
}
