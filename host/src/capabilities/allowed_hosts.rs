//! The connection's allow-list: which destinations a connector may reach, and so which
//! destinations may ever receive the connection's credentials.
//!
//! A manifest lists patterns `[scheme://]host[:port]`:
//! - without a scheme only `https` matches; the port defaults to the scheme's;
//! - `*.example.com` matches any host below `example.com` (not `example.com` itself);
//! - `{field}` is replaced by a connection field. When the whole pattern is one placeholder
//!   and the field holds a URL (`{base_url}`), the URL's scheme, host and port are used;
//!   inside a host (`{subdomain}.zendesk.com`) the value must be plain DNS labels, so a
//!   field cannot smuggle in a path, a port or another host.

use url::Url;

/// An allow-list resolved for one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    scheme: String,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// Matches hosts ending with `.suffix`.
    Below(String),
}

/// A pattern that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    #[error("allowed host `{pattern}`: {reason}")]
    Invalid { pattern: String, reason: String },
    #[error("allowed host `{pattern}` uses field `{field}`, which is not set")]
    MissingField { pattern: String, field: String },
    #[error("allowed host `{pattern}`: field `{field}` must be {expected}")]
    BadFieldValue {
        pattern: String,
        field: String,
        expected: &'static str,
    },
}

/// Names of the `{field}` placeholders in a pattern.
pub fn placeholders(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

impl AllowList {
    /// Resolves `patterns` with the connection's non-secret fields.
    pub fn resolve<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
        field: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, AllowListError> {
        let entries = patterns
            .into_iter()
            .map(|p| Entry::resolve(p, &field))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether `url` is an allowed destination.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        self.entries.iter().any(|e| {
            e.scheme == url.scheme()
                && e.port.or_else(|| default_port(&e.scheme)) == port
                && match &e.host {
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Below(suffix) => host
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn invalid(pattern: &str, reason: impl Into<String>) -> AllowListError {
    AllowListError::Invalid {
        pattern: pattern.to_owned(),
        reason: reason.into(),
    }
}

impl Entry {
    fn resolve(
        pattern: &str,
        field: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, AllowListError> {
        let names = placeholders(pattern);
        let trimmed = pattern.trim();
        // `{base_url}`: the whole pattern is a URL-valued field.
        if names.len() == 1 && trimmed == format!("{{{}}}", names[0]) {
            let name = names[0];
            let value = field(name).ok_or_else(|| AllowListError::MissingField {
                pattern: pattern.to_owned(),
                field: name.to_owned(),
            })?;
            let bad = || AllowListError::BadFieldValue {
                pattern: pattern.to_owned(),
                field: name.to_owned(),
                expected: "an absolute http or https URL",
            };
            let url = Url::parse(value.trim()).map_err(|_| bad())?;
            let host = url.host_str().ok_or_else(bad)?;
            if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
                return Err(bad());
            }
            return Ok(Self {
                scheme: url.scheme().to_owned(),
                host: HostPattern::Exact(host.to_ascii_lowercase()),
                port: url.port_or_known_default(),
            });
        }
        let mut text = trimmed.to_owned();
        for name in names {
            let value = field(name).ok_or_else(|| AllowListError::MissingField {
                pattern: pattern.to_owned(),
                field: name.to_owned(),
            })?;
            let value = value.trim().to_ascii_lowercase();
            let labels_ok = !value.is_empty()
                && value.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !labels_ok {
                return Err(AllowListError::BadFieldValue {
                    pattern: pattern.to_owned(),
                    field: name.to_owned(),
                    expected: "DNS labels (letters, digits, `-` and `.`)",
                });
            }
            text = text.replace(&format!("{{{name}}}"), &value);
        }
        Self::parse(pattern, &text)
    }

    fn parse(pattern: &str, text: &str) -> Result<Self, AllowListError> {
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("https".to_owned(), text),
        };
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(invalid(pattern, "the scheme must be http or https"));
        }
        if rest.contains(['/', '?', '#', '@', '{', '}']) || rest.chars().any(char::is_whitespace) {
            return Err(invalid(pattern, "expected `[scheme://]host[:port]`"));
        }
        // Split the port, minding IPv6 literals such as `[::1]:8080`.
        let (host, port) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| invalid(pattern, format!("`{p}` is not a port number")))
            })
            .transpose()?;
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            return Err(invalid(
                pattern,
                "`*` would send credentials anywhere; name the hosts",
            ));
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(invalid(pattern, "a wildcard needs a domain after `*.`"));
            }
            HostPattern::Below(suffix.to_owned())
        } else if host.is_empty() || host.contains('*') {
            return Err(invalid(pattern, "`*` is only allowed as a leading `*.`"));
        } else {
            HostPattern::Exact(host)
        };
        Ok(Self { scheme, host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str], fields: &[(&str, &str)]) -> Result<AllowList, AllowListError> {
        AllowList::resolve(patterns.iter().copied(), |name| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn allows(l: &AllowList, url: &str) -> bool {
        l.allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn a_bare_host_allows_only_https_on_443() {
        let l = list(&["api.github.com"], &[]).unwrap();
        assert!(allows(&l, "https://api.github.com/user"));
        assert!(allows(&l, "https://API.GitHub.com:443/user"));
        assert!(!allows(&l, "http://api.github.com/user"));
        assert!(!allows(&l, "https://api.github.com:8443/user"));
        assert!(!allows(&l, "https://api.github.com.evil.test/"));
        assert!(!allows(&l, "https://evil.test/?api.github.com"));
    }

    #[test]
    fn a_wildcard_matches_subdomains_only() {
        let l = list(&["*.example.com"], &[]).unwrap();
        assert!(allows(&l, "https://a.example.com/"));
        assert!(allows(&l, "https://a.b.example.com/"));
        assert!(!allows(&l, "https://example.com/"));
        assert!(!allows(&l, "https://badexample.com/"));
    }

    #[test]
    fn a_url_field_contributes_scheme_host_and_port() {
        let l = list(
            &["{base_url}"],
            &[("base_url", "http://127.0.0.1:8080/api/v3")],
        )
        .unwrap();
        assert!(allows(&l, "http://127.0.0.1:8080/api/v3/user"));
        assert!(!allows(&l, "https://127.0.0.1:8080/"));
        assert!(!allows(&l, "http://127.0.0.1:8081/"));
        assert!(!allows(&l, "http://127.0.0.2:8080/"));
    }

    #[test]
    fn a_subdomain_field_cannot_smuggle_another_host() {
        let ok = list(&["{subdomain}.zendesk.com"], &[("subdomain", "acme")]).unwrap();
        assert!(allows(&ok, "https://acme.zendesk.com/api"));
        for evil in [
            "evil.test/x",
            "evil.test:80",
            "a@evil.test",
            "evil.test#",
            "",
        ] {
            assert!(
                matches!(
                    list(&["{subdomain}.zendesk.com"], &[("subdomain", evil)]),
                    Err(AllowListError::BadFieldValue { .. })
                ),
                "{evil:?} must be refused"
            );
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = list(&["{base_url}"], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "allowed host `{base_url}` uses field `base_url`, which is not set"
        );
    }

    #[test]
    fn patterns_that_would_leak_credentials_are_refused() {
        assert!(list(&["*"], &[]).is_err());
        assert!(list(&["ftp://files.test"], &[]).is_err());
        assert!(list(&["api.test/path"], &[]).is_err());
        assert!(list(&["a*.test"], &[]).is_err());
        assert!(list(&["{u}"], &[("u", "https://user:pw@h.test")]).is_err());
    }

    #[test]
    fn explicit_ports_and_ipv6_literals() {
        let l = list(&["http://localhost:3000", "http://[::1]:9000"], &[]).unwrap();
        assert!(allows(&l, "http://localhost:3000/x"));
        assert!(allows(&l, "http://[::1]:9000/x"));
        assert!(!allows(&l, "http://localhost:3001/x"));
    }

    #[test]
    fn placeholders_are_listed() {
        assert_eq!(placeholders("{a}.x.{b}:1"), vec!["a", "b"]);
        assert!(placeholders("api.test").is_empty());
    }
}
