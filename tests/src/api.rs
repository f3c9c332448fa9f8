//! A local HTTP API for the tests, started on loopback. It records every request it
//! receives (so tests can check what the host sent, and that nothing reached a host it
//! must not), and serves a GitHub-shaped REST API for the GitHub connector: the documented
//! headers, bearer auth, `Link` pagination and GitHub's error bodies. GitHub itself cannot
//! be reached from here; this follows its documented behaviour.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request the API received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
}

struct ApiState {
    base_url: String,
    /// The token (or API key) the API accepts now: [`Api::set_token`] replaces it.
    token: Mutex<String>,
    seen: Mutex<Vec<Seen>>,
    issues: Mutex<Vec<Value>>,
}

/// A running API; stops when dropped.
#[allow(missing_debug_implementations)]
pub struct Api {
    pub base_url: String,
    pub addr: SocketAddr,
    state: Arc<ApiState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Api {
    /// Starts the API; GitHub routes accept `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base_url = format!("http://{addr}");
        let state = Arc::new(ApiState {
            base_url: base_url.clone(),
            token: Mutex::new(token.to_owned()),
            seen: Mutex::new(Vec::new()),
            issues: Mutex::new(seed_issues(&base_url)),
        });
        let github = Router::new()
            .route("/user", get(user))
            .route("/user/repos", get(list_repos))
            .route("/repos/{owner}/{repo}", get(get_repo))
            .route(
                "/repos/{owner}/{repo}/issues",
                get(list_issues).post(create_issue),
            )
            .route("/repos/{owner}/{repo}/issues/{number}", get(get_issue))
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                axum::routing::post(add_comment),
            )
            .layer(middleware::from_fn_with_state(state.clone(), github_rules));
        let app = Router::new()
            .route("/ping", get(|| async { "pong" }))
            .route("/big/{n}", get(big))
            .route("/big-chunked/{n}", get(big_chunked))
            .route("/redirect", get(redirect).post(redirect))
            .route("/slow/{ms}", get(slow))
            .route("/status/{code}", get(status))
            .route("/echo-credentials", get(echo_credentials))
            .route("/key", get(key))
            .merge(github)
            .layer(middleware::from_fn_with_state(state.clone(), record))
            .with_state(state.clone());
        let stop = crate::serve_until_dropped(listener, app);
        Api {
            base_url,
            addr,
            state,
            _stop: stop,
        }
    }

    /// Makes `token` the only token (or API key) the API accepts from now on, on the GitHub
    /// routes and on `/key`: a rotated credential.
    pub fn set_token(&self, token: &str) {
        *self.state.token.lock().unwrap() = token.to_owned();
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Every header value and query string received, as one text to search.
    pub fn everything_received(&self) -> String {
        self.seen()
            .iter()
            .map(|s| format!("{} {} {:?} {:?}", s.method, s.path, s.query, s.headers))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn record(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    state.seen.lock().unwrap().push(Seen {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: request.headers().clone(),
    });
    next.run(request).await
}

async fn big(Path(n): Path<usize>) -> Vec<u8> {
    vec![b'x'; n]
}

async fn big_chunked(Path(n): Path<usize>) -> Response {
    // No Content-Length: the host must stop reading at its cap on its own.
    let chunks = (0..n.div_ceil(4096))
        .map(move |i| Ok::<_, std::io::Error>(vec![b'y'; 4096.min(n - i * 4096)]));
    Body::from_stream(futures_util::stream::iter(chunks)).into_response()
}

async fn redirect(Query(q): Query<HashMap<String, String>>) -> Response {
    let to = q.get("to").cloned().unwrap_or_default();
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

async fn slow(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "finally"
}

/// A careless API: it answers 401 and repeats the credentials it received, in the body and
/// in a header.
async fn echo_credentials(request: axum::extract::Request) -> Response {
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let mut response = (
        StatusCode::UNAUTHORIZED,
        format!("invalid credentials: authorization={authorization} query={query}"),
    )
        .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&authorization) {
        response.headers_mut().insert("x-echo", v);
    }
    response
}

/// An API that takes a key: 200 `key accepted` when the request carries the current token
/// ([`Api::set_token`]) as `X-API-Key` or as `Authorization: Bearer`, else 401.
async fn key(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let expected = state.token.lock().unwrap().clone();
    let given = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let api_key = given(header::HeaderName::from_static("x-api-key"));
    let bearer =
        given(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
    if api_key.as_deref() == Some(expected.as_str()) || bearer.as_deref() == Some(expected.as_str())
    {
        (StatusCode::OK, "key accepted").into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "invalid key").into_response()
    }
}

/// Answers `code`; with `?retry_after=<seconds>`, also a `Retry-After` header (as a rate
/// limit sends it).
async fn status(Path(code): Path<u16>, Query(q): Query<HashMap<String, String>>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (code, format!("status {code}")).into_response();
    if let Some(value) = q.get("retry_after").and_then(|v| v.parse().ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn github_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
        })),
    )
        .into_response()
}

/// What GitHub requires of every request: a User-Agent, the token, and (as its docs ask)
/// the versioned media type.
async fn github_rules(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if !headers.contains_key(header::USER_AGENT) {
        return github_error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        );
    }
    let expected = format!("Bearer {}", state.token.lock().unwrap());
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        return github_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let version = headers
        .get("x-github-api-version")
        .and_then(|v| v.to_str().ok());
    if accept != Some("application/vnd.github+json") || version != Some("2022-11-28") {
        return github_error(
            StatusCode::BAD_REQUEST,
            "Missing the documented Accept or X-GitHub-Api-Version header",
        );
    }
    next.run(request).await
}

fn account(base: &str, login: &str, id: u64) -> Value {
    json!({ "login": login, "id": id, "type": "User", "html_url": format!("{base}/{login}") })
}

async fn user(State(state): State<Arc<ApiState>>) -> Response {
    let mut u = account(&state.base_url, "octocat", 1);
    u["name"] = json!("The Octocat");
    u["email"] = Value::Null;
    u["company"] = json!("@github");
    u["public_repos"] = json!(23);
    axum::Json(u).into_response()
}

const REPO_COUNT: u64 = 23;

fn repo(base: &str, n: u64) -> Value {
    json!({
        "id": 1000 + n,
        "name": format!("repo-{n}"),
        "full_name": format!("octocat/repo-{n}"),
        "owner": account(base, "octocat", 1),
        "private": n.is_multiple_of(3),
        "description": format!("Repository number {n}"),
        "html_url": format!("{base}/octocat/repo-{n}"),
        "default_branch": "main",
        "fork": false,
        "archived": false,
        "stargazers_count": n * 10,
        "open_issues_count": 2,
        "updated_at": "2026-11-01T10:00:00Z",
        "node_id": "ignored-by-the-connector",
    })
}

/// A page of `total` items with GitHub's `Link` header.
fn paged(
    base: &str,
    path: &str,
    q: &HashMap<String, String>,
    total: u64,
    item: impl Fn(u64) -> Value,
) -> Response {
    let per_page: u64 = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: u64 = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let items: Vec<Value> = ((page - 1) * per_page + 1..=(page * per_page).min(total))
        .map(item)
        .collect();
    let last = total.div_ceil(per_page).max(1);
    let link_to = |p: u64, rel: &str| {
        let mut params: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("page".into(), p.to_string()));
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("<{base}{path}?{}>; rel=\"{rel}\"", query.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
        links.push(link_to(page - 1, "prev"));
    }
    let mut response = axum::Json(items).into_response();
    if !links.is_empty() {
        response
            .headers_mut()
            .insert(header::LINK, links.join(", ").parse().unwrap());
    }
    response
}

async fn list_repos(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let base = state.base_url.clone();
    paged(&state.base_url, "/user/repos", &q, REPO_COUNT, |n| {
        repo(&base, n)
    })
}

fn known_repo(owner: &str, repo: &str) -> bool {
    owner == "octocat" && (repo == "hello-world" || repo.starts_with("repo-"))
}

async fn get_repo(
    State(state): State<Arc<ApiState>>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    if name == "rate-limited" {
        let mut r = github_error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 1.",
        );
        r.headers_mut()
            .insert("x-ratelimit-remaining", "0".parse().unwrap());
        r.headers_mut().insert("retry-after", "42".parse().unwrap());
        return r;
    }
    if name == "rate-limited-until-reset" {
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 120;
        let mut r = github_error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 1.",
        );
        r.headers_mut()
            .insert("x-ratelimit-remaining", "0".parse().unwrap());
        r.headers_mut()
            .insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        return r;
    }
    if !known_repo(&owner, &name) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let mut r = repo(&state.base_url, 1);
    r["name"] = json!(name);
    r["full_name"] = json!(format!("{owner}/{name}"));
    axum::Json(r).into_response()
}

fn seed_issues(base: &str) -> Vec<Value> {
    (1..=12u64)
        .map(|n| {
            let mut issue = json!({
                "id": 5000 + n,
                "number": n,
                "title": format!("Issue {n}"),
                "state": if n % 4 == 0 { "closed" } else { "open" },
                "body": format!("Body of issue {n}"),
                "html_url": format!("{base}/octocat/hello-world/issues/{n}"),
                "user": account(base, "hubot", 2),
                "labels": [{"name": "bug", "color": "d73a4a"}],
                "assignees": [],
                "comments": n % 3,
                "created_at": "2026-10-01T10:00:00Z",
                "updated_at": "2026-10-02T10:00:00Z",
            });
            if n == 2 {
                issue["pull_request"] =
                    json!({"url": format!("{base}/repos/octocat/hello-world/pulls/2")});
            }
            issue
        })
        .collect()
}

async fn list_issues(
    State(state): State<Arc<ApiState>>,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !known_repo(&owner, &name) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let wanted = q
        .get("state")
        .map(String::as_str)
        .unwrap_or("open")
        .to_owned();
    let issues: Vec<Value> = state
        .issues
        .lock()
        .unwrap()
        .iter()
        .filter(|i| wanted == "all" || i["state"] == wanted.as_str())
        .cloned()
        .collect();
    let path = format!("/repos/{owner}/{name}/issues");
    paged(&state.base_url, &path, &q, issues.len() as u64, |n| {
        issues[(n - 1) as usize].clone()
    })
}

async fn get_issue(
    State(state): State<Arc<ApiState>>,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Response {
    let issues = state.issues.lock().unwrap();
    match issues.iter().find(|i| i["number"] == number) {
        Some(i) if known_repo(&owner, &name) => axum::Json(i.clone()).into_response(),
        _ => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn create_issue(
    State(state): State<Arc<ApiState>>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !known_repo(&owner, &name) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/json")
    {
        return github_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
    }
    let Ok(input) = serde_json::from_str::<Value>(&body) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    if input.get("owner").is_some() || input.get("repo").is_some() {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request: owner and repo are not body fields",
        );
    }
    let title = input["title"].as_str().unwrap_or_default();
    if title.starts_with("!invalid") {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "message": "Validation Failed",
                "errors": [{"resource": "Issue", "code": "invalid", "field": "title"}],
            })),
        )
            .into_response();
    }
    let mut issues = state.issues.lock().unwrap();
    let number = issues.len() as u64 + 1;
    let base = &state.base_url;
    let labels: Vec<Value> = input["labels"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|l| json!({"name": l}))
        .collect();
    let issue = json!({
        "id": 5000 + number,
        "number": number,
        "title": title,
        "state": "open",
        "body": input.get("body").cloned().unwrap_or(Value::Null),
        "html_url": format!("{base}/{owner}/{name}/issues/{number}"),
        "user": account(base, "octocat", 1),
        "labels": labels,
        "assignees": [],
        "comments": 0,
        "created_at": "2026-11-21T10:00:00Z",
        "updated_at": "2026-11-21T10:00:00Z",
    });
    issues.push(issue.clone());
    (StatusCode::CREATED, axum::Json(issue)).into_response()
}

async fn add_comment(
    State(state): State<Arc<ApiState>>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    body: String,
) -> Response {
    if !known_repo(&owner, &name) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let input: Value = serde_json::from_str(&body).unwrap_or_default();
    let base = &state.base_url;
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "id": 9000 + number,
            "html_url": format!("{base}/{owner}/{name}/issues/{number}#issuecomment-1"),
            "body": input["body"],
            "user": account(base, "octocat", 1),
            "created_at": "2026-11-21T10:00:00Z",
        })),
    )
        .into_response()
}
