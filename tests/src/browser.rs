//! A tiny user agent that goes through the OAuth server's consent like a user would: it
//! keeps cookies, follows redirects, presses Continue on Junction's start page (which a
//! consent link opens), signs in on the provider's login page and presses Continue on its
//! consent page, and stops at the first page that is none of those (the client's redirect
//! URI, which Junction's OAuth callback answers, or an error page).
//!
//! Forms are read by plain string searching: the provider's development interactions render
//! small, regular HTML (`<form action="…" method="post">` with `<input type="hidden"
//! name="prompt" value="login|consent">`, and an abort link ending in `/abort`).

use crate::oauth::PASSWORD;
use reqwest::redirect::Policy;
use reqwest::{StatusCode, Url};

/// How many redirects one navigation follows.
const MAX_REDIRECTS: usize = 20;
/// How many forms one consent submits (sign-in, consent, and a spare).
const MAX_FORMS: usize = 4;

/// The page a navigation ended on.
#[derive(Debug, Clone)]
pub struct Page {
    /// The final URL.
    pub url: String,
    pub status: StatusCode,
    pub body: String,
    /// Every URL requested on the way, in order, the final one last (through every form
    /// of a consent).
    pub visited: Vec<String>,
}

impl Page {
    /// A query parameter of the final URL (`code`, `state`, `error`, `iss`…).
    pub fn query(&self, name: &str) -> Option<String> {
        query_param(&self.url, name)
    }

    /// The first URL visited that starts with `prefix` (e.g. the redirect URI, to read what
    /// the provider sent to it).
    pub fn visited_url(&self, prefix: &str) -> Option<&str> {
        self.visited
            .iter()
            .map(String::as_str)
            .find(|u| u.starts_with(prefix))
    }
}

/// A query parameter of `url`, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A browser with its own cookie jar (so its own sign-in session at the provider, and its
/// own consent bindings at Junction).
#[derive(Debug, Clone)]
pub struct Browser {
    http: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            // Redirects are followed here, one by one, to record them.
            .redirect(Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        Browser { http, jar }
    }

    /// The `Cookie` header this browser sends to `url`, if any.
    pub fn cookies_for(&self, url: &str) -> Option<String> {
        use reqwest::cookie::CookieStore as _;
        let url = Url::parse(url).ok()?;
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    /// Opens `authorization_url`, signs in as `login` and grants consent, then follows the
    /// redirects to the end: usually the client's redirect URI with `code` and `state`.
    /// A page that is neither the sign-in nor the consent page is returned as it is.
    pub async fn consent(&self, authorization_url: &str, login: &str) -> Page {
        self.consent_stopping_at(authorization_url, login, None)
            .await
    }

    /// Like [`Browser::consent`], but does not open the first URL that starts with
    /// `stop_at` (the redirect URI, say): the page returned has that URL, the status of
    /// the redirect that led to it and an empty body, and nothing was sent to it. The test
    /// then opens it itself (asking for JSON, say).
    pub async fn consent_until(&self, authorization_url: &str, login: &str, stop_at: &str) -> Page {
        self.consent_stopping_at(authorization_url, login, Some(stop_at))
            .await
    }

    async fn consent_stopping_at(
        &self,
        authorization_url: &str,
        login: &str,
        stop_at: Option<&str>,
    ) -> Page {
        let mut page = self
            .navigate(reqwest::Method::GET, authorization_url, None, stop_at)
            .await;
        let mut visited = page.visited.clone();
        for _ in 0..MAX_FORMS {
            let Some(form) = interaction_form(&page) else {
                break;
            };
            let mut fields = form.hidden.clone();
            if form.prompt() == Some("login") {
                fields.push(("login".into(), login.into()));
                fields.push(("password".into(), PASSWORD.into()));
            }
            page = self
                .navigate(reqwest::Method::POST, &form.action, Some(fields), stop_at)
                .await;
            visited.extend(page.visited.iter().cloned());
        }
        page.visited = visited;
        page
    }

    /// Opens `authorization_url` and cancels on the first interaction page (sign-in, or
    /// consent when already signed in) through its abort link: the provider then redirects
    /// to the client with `error=access_denied`.
    pub async fn abort(&self, authorization_url: &str) -> Page {
        let mut page = self.get(authorization_url).await;
        // A consent link opens Junction's start page first: continue to the provider.
        if let Some((action, fields)) = junction_start_form(&page) {
            page = self.post_form(&action, &fields).await;
        }
        match abort_link(&page) {
            Some(link) => self.get(&link).await,
            None => page,
        }
    }

    /// GET `url`, following redirects.
    pub async fn get(&self, url: &str) -> Page {
        self.navigate(reqwest::Method::GET, url, None, None).await
    }

    /// POST a form to `url`, following redirects.
    pub async fn post_form(&self, url: &str, fields: &[(String, String)]) -> Page {
        self.navigate(reqwest::Method::POST, url, Some(fields.to_vec()), None)
            .await
    }

    async fn navigate(
        &self,
        mut method: reqwest::Method,
        url: &str,
        mut form: Option<Vec<(String, String)>>,
        stop_at: Option<&str>,
    ) -> Page {
        let mut url = Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
        let mut visited = Vec::new();
        let mut last_status = StatusCode::OK;
        loop {
            if let Some(prefix) = stop_at
                && url.as_str().starts_with(prefix)
            {
                return Page {
                    url: url.to_string(),
                    status: last_status,
                    body: String::new(),
                    visited,
                };
            }
            visited.push(url.to_string());
            let mut request = self.http.request(method.clone(), url.clone());
            if let Some(fields) = &form {
                request = request.form(fields);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url} failed: {e}; visited: {visited:?}"));
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match location {
                Some(location) if status.is_redirection() => {
                    last_status = status;
                    assert!(
                        visited.len() <= MAX_REDIRECTS,
                        "more than {MAX_REDIRECTS} redirects: {visited:?}"
                    );
                    url = url
                        .join(&location)
                        .unwrap_or_else(|e| panic!("bad Location {location}: {e}"));
                    // 307 and 308 repeat the request; the others turn it into a GET.
                    if !matches!(
                        status,
                        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
                    ) {
                        method = reqwest::Method::GET;
                        form = None;
                    }
                }
                _ => {
                    let body = response.text().await.unwrap_or_default();
                    return Page {
                        url: url.to_string(),
                        status,
                        body,
                        visited,
                    };
                }
            }
        }
    }
}

/// A form of a page: where it posts, and its hidden inputs.
#[derive(Debug, Clone)]
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
}

impl Form {
    fn prompt(&self) -> Option<&str> {
        self.hidden
            .iter()
            .find(|(k, _)| k == "prompt")
            .map(|(_, v)| v.as_str())
    }

    /// Whether it is the form of Junction's consent start page.
    fn continues_junction_consent(&self) -> bool {
        self.hidden
            .iter()
            .any(|(k, v)| k == "step" && v == "junction-consent")
    }
}

/// The form of Junction's consent start page, if `page` is that page.
pub fn junction_start_form(page: &Page) -> Option<(String, Vec<(String, String)>)> {
    page_forms(page)
        .into_iter()
        .find(Form::continues_junction_consent)
        .map(|f| (f.action, f.hidden))
}

/// The provider's sign-in or consent form on `page`, or Junction's start page's form, if it
/// is one of those pages.
fn interaction_form(page: &Page) -> Option<Form> {
    page_forms(page)
        .into_iter()
        .find(|f| matches!(f.prompt(), Some("login" | "consent")) || f.continues_junction_consent())
}

/// The POST forms of a successful page.
fn page_forms(page: &Page) -> Vec<Form> {
    if !page.status.is_success() {
        return Vec::new();
    }
    forms(&page.body)
        .into_iter()
        .filter_map(|(attrs, inner)| {
            let method = attr(&attrs, "method").unwrap_or_default();
            if !method.eq_ignore_ascii_case("post") {
                return None;
            }
            let action = attr(&attrs, "action").unwrap_or_default();
            let action = Url::parse(&page.url).ok()?.join(&action).ok()?.to_string();
            let hidden = tags(&inner, "input")
                .into_iter()
                .filter(|t| attr(t, "type").is_some_and(|ty| ty.eq_ignore_ascii_case("hidden")))
                .filter_map(|t| Some((attr(&t, "name")?, attr(&t, "value").unwrap_or_default())))
                .collect();
            Some(Form { action, hidden })
        })
        .collect()
}

/// The abort link of an interaction page.
fn abort_link(page: &Page) -> Option<String> {
    let href = tags(&page.body, "a")
        .into_iter()
        .filter_map(|t| attr(&t, "href"))
        .find(|h| h.trim_end_matches('/').ends_with("/abort"))?;
    Some(Url::parse(&page.url).ok()?.join(&href).ok()?.to_string())
}

/// Every `<form …>…</form>` of `html`: its opening tag's attributes and its content.
fn forms(html: &str) -> Vec<(String, String)> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = lower[from..].find("<form").map(|i| i + from) {
        let Some(open_end) = lower[start..].find('>').map(|i| i + start) else {
            break;
        };
        let close = lower[open_end..]
            .find("</form")
            .map_or(html.len(), |i| i + open_end);
        out.push((
            html[start + 5..open_end].to_owned(),
            html[open_end + 1..close].to_owned(),
        ));
        from = close;
    }
    out
}

/// The attribute text of every `<name …>` tag of `html`.
fn tags(html: &str, name: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = lower[from..].find(&open).map(|i| i + from) {
        let after = start + open.len();
        let Some(end) = lower[after..].find('>').map(|i| i + after) else {
            break;
        };
        // `<a` must not match `<abbr`: the name ends at white space, `>` or `/`.
        if lower[after..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_whitespace() || c == '>' || c == '/')
        {
            out.push(html[after..end].to_owned());
        }
        from = end;
    }
    out
}

/// The value of attribute `name` in a tag's attribute text, entities decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name).map(|i| i + from) {
        from = at + name.len();
        let starts_word = at == 0 || bytes[at - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !starts_word || !rest.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - rest.len() + 1;
        let value = tag[value_start..].trim_start();
        let raw = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or_default(),
            _ => value
                .split(|c: char| c.is_ascii_whitespace() || c == '>')
                .next()
                .unwrap_or_default()
                .trim_end_matches('/'),
        };
        return Some(decode_entities(raw));
    }
    None
}

fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attributes() {
        let tag = r#" autocomplete="off" action="http://h/i?a=1&amp;b=2" method=post data-name="x" name='n'"#;
        assert_eq!(attr(tag, "action").unwrap(), "http://h/i?a=1&b=2");
        assert_eq!(attr(tag, "method").unwrap(), "post");
        assert_eq!(attr(tag, "name").unwrap(), "n");
        assert_eq!(attr(tag, "value"), None);
        assert_eq!(attr(r#"<input value=v/>"#, "value").unwrap(), "v");
    }

    #[test]
    fn finds_the_consent_form_and_the_abort_link() {
        let body = r#"<html><body><FORM autocomplete="off" action="/interaction/u1" method="post">
  <input type="hidden" name="prompt" value="consent"/>
  <button autofocus type="submit">Continue</button>
</form><abbr>x</abbr><a href="http://127.0.0.1:1/interaction/u1/abort">[ Cancel ]</a></body></html>"#;
        let page = Page {
            url: "http://127.0.0.1:1/interaction/u1".into(),
            status: StatusCode::OK,
            body: body.into(),
            visited: vec![],
        };
        let form = interaction_form(&page).unwrap();
        assert_eq!(form.action, "http://127.0.0.1:1/interaction/u1");
        assert_eq!(form.prompt(), Some("consent"));
        assert_eq!(
            abort_link(&page).unwrap(),
            "http://127.0.0.1:1/interaction/u1/abort"
        );
    }
}
