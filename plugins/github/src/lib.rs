//! GitHub's REST API, as documented at docs.github.com/rest: bearer tokens, the versioned
//! JSON media type, and pagination through the `Link` header.

use junction_sdk::http::{Request, Response};
use junction_sdk::prelude::*;

struct GitHub;

const DEFAULT_BASE_URL: &str = "https://api.github.com";
const API_VERSION: &str = "2022-11-28";
/// GitHub's largest page.
const MAX_PER_PAGE: u32 = 100;

fn base_url() -> Result<String> {
    Ok(connection::field_or("base_url", DEFAULT_BASE_URL)?
        .trim_end_matches('/')
        .to_owned())
}

fn api(request: Request) -> Request {
    request
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", API_VERSION)
}

/// Percent-encodes one path segment (an owner or a repository name).
fn segment(text: &str) -> Result<String> {
    if text.is_empty() || text.contains('/') {
        return Err(Error::invalid_input(format!(
            "`{text}` is not a valid owner or repository name"
        )));
    }
    Ok(junction_sdk::http::encode(text))
}

/// Sends a request and maps GitHub's error statuses to typed errors.
fn send(request: Request) -> Result<Response> {
    let response = api(request).send()?;
    if response.status == 422 {
        #[derive(Deserialize)]
        struct Validation {
            message: String,
            #[serde(default)]
            errors: Vec<Value>,
        }
        let detail = response
            .json::<Validation>()
            .map(|v| {
                if v.errors.is_empty() {
                    v.message
                } else {
                    format!("{}: {}", v.message, Value::from(v.errors))
                }
            })
            .unwrap_or_else(|_| response.text());
        return Err(Error::invalid_input(detail));
    }
    // Rate limits (403 or 429 with `Retry-After` or `X-RateLimit-Remaining: 0` and
    // `X-RateLimit-Reset`) are mapped by the SDK.
    response.error_for_status()
}

/// Follows `Link: rel="next"` from `first` until `limit` items are collected.
fn paginate<T: serde::de::DeserializeOwned>(first: String, limit: u32) -> Result<Page<T>> {
    let mut items = Vec::new();
    let mut next = Some(first);
    while let Some(url) = next.take() {
        if items.len() >= limit as usize {
            next = Some(url);
            break;
        }
        let response = send(Request::get(url))?;
        let mut page: Vec<T> = response.json()?;
        let room = limit as usize - items.len();
        if page.len() > room {
            // The rest of this page is not returned; restart from this page next time
            // would repeat items, so stop at a page boundary instead.
            page.truncate(room);
            items.extend(page);
            next = response.next_link();
            break;
        }
        items.extend(page);
        next = response.next_link();
    }
    Ok(Page { items, next })
}

struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

/// Where a paginated call starts: the `next` of an earlier call, or the first page.
fn start(next: Option<String>, first: String) -> Result<String> {
    match next {
        Some(url) => {
            let base = base_url()?;
            if !url.starts_with(&base) {
                return Err(Error::invalid_input(
                    "`next` must be a URL returned by an earlier call of this connection",
                ));
            }
            Ok(url)
        }
        None => Ok(first),
    }
}

fn per_page(limit: u32) -> u32 {
    limit.clamp(1, MAX_PER_PAGE)
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Account {
    login: String,
    id: u64,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct User {
    login: String,
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    company: Option<String>,
    html_url: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    public_repos: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Repository {
    id: u64,
    name: String,
    full_name: String,
    owner: Account,
    private: bool,
    #[serde(default)]
    description: Option<String>,
    html_url: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    fork: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    stargazers_count: Option<u64>,
    #[serde(default)]
    open_issues_count: Option<u64>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Label {
    name: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Issue {
    id: u64,
    number: u64,
    title: String,
    state: String,
    #[serde(default)]
    body: Option<String>,
    html_url: String,
    user: Account,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    assignees: Vec<Account>,
    #[serde(default)]
    comments: u64,
    created_at: String,
    updated_at: String,
    /// Present when the issue is a pull request (GitHub lists both as issues).
    #[serde(default, skip_serializing)]
    pull_request: Option<Value>,
    #[serde(default)]
    is_pull_request: bool,
}

impl Issue {
    fn marked(mut self) -> Self {
        self.is_pull_request = self.pull_request.is_some();
        self
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Comment {
    id: u64,
    html_url: String,
    body: String,
    user: Account,
    created_at: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoInput {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RepoRef {
    /// The account owning the repository.
    owner: String,
    /// The repository's name.
    repo: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Visibility {
    All,
    Public,
    Private,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum RepoSort {
    Created,
    Updated,
    Pushed,
    FullName,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListRepositories {
    #[serde(default)]
    visibility: Option<Visibility>,
    /// Comma-separated: `owner`, `collaborator`, `organization_member`.
    #[serde(default)]
    affiliation: Option<String>,
    #[serde(default)]
    sort: Option<RepoSort>,
    /// Most items to return (default 30, at most 1000).
    #[serde(default)]
    limit: Option<u32>,
    /// `next` from an earlier call, to continue.
    #[serde(default)]
    next: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct RepositoryList {
    repositories: Vec<Repository>,
    /// Pass back as `next` to get more; absent on the last page.
    next: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum IssueState {
    Open,
    Closed,
    All,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListIssues {
    owner: String,
    repo: String,
    #[serde(default)]
    state: Option<IssueState>,
    /// Comma-separated label names.
    #[serde(default)]
    labels: Option<String>,
    /// Login of the assignee, `none` or `*`.
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct IssueList {
    issues: Vec<Issue>,
    next: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IssueRef {
    owner: String,
    repo: String,
    number: u64,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateIssue {
    #[serde(skip_serializing)]
    owner: String,
    #[serde(skip_serializing)]
    repo: String,
    title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    assignees: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddComment {
    owner: String,
    repo: String,
    number: u64,
    body: String,
}

fn limit(requested: Option<u32>) -> Result<u32> {
    match requested.unwrap_or(30) {
        0 => Err(Error::invalid_input("`limit` must be at least 1")),
        n if n > 1000 => Err(Error::invalid_input("`limit` can be at most 1000")),
        n => Ok(n),
    }
}

fn get_authenticated_user(_: NoInput) -> Result<User> {
    send(Request::get(format!("{}/user", base_url()?)))?.json()
}

fn list_repositories(input: ListRepositories) -> Result<RepositoryList> {
    let limit = limit(input.limit)?;
    let first = Request::get(format!("{}/user/repos", base_url()?))
        .query("per_page", per_page(limit))
        .query_opt(
            "visibility",
            input.visibility.map(|v| match v {
                Visibility::All => "all",
                Visibility::Public => "public",
                Visibility::Private => "private",
            }),
        )
        .query_opt("affiliation", input.affiliation)
        .query_opt(
            "sort",
            input.sort.map(|s| match s {
                RepoSort::Created => "created",
                RepoSort::Updated => "updated",
                RepoSort::Pushed => "pushed",
                RepoSort::FullName => "full_name",
            }),
        );
    let page = paginate(start(input.next, first.url())?, limit)?;
    Ok(RepositoryList {
        repositories: page.items,
        next: page.next,
    })
}

fn get_repository(input: RepoRef) -> Result<Repository> {
    send(Request::get(format!(
        "{}/repos/{}/{}",
        base_url()?,
        segment(&input.owner)?,
        segment(&input.repo)?
    )))?
    .json()
}

fn list_issues(input: ListIssues) -> Result<IssueList> {
    let limit = limit(input.limit)?;
    let first = Request::get(format!(
        "{}/repos/{}/{}/issues",
        base_url()?,
        segment(&input.owner)?,
        segment(&input.repo)?
    ))
    .query("per_page", per_page(limit))
    .query_opt(
        "state",
        input.state.map(|s| match s {
            IssueState::Open => "open",
            IssueState::Closed => "closed",
            IssueState::All => "all",
        }),
    )
    .query_opt("labels", input.labels)
    .query_opt("assignee", input.assignee);
    let page = paginate::<Issue>(start(input.next, first.url())?, limit)?;
    Ok(IssueList {
        issues: page.items.into_iter().map(Issue::marked).collect(),
        next: page.next,
    })
}

fn get_issue(input: IssueRef) -> Result<Issue> {
    send(Request::get(format!(
        "{}/repos/{}/{}/issues/{}",
        base_url()?,
        segment(&input.owner)?,
        segment(&input.repo)?,
        input.number
    )))?
    .json::<Issue>()
    .map(Issue::marked)
}

fn create_issue(input: CreateIssue) -> Result<Issue> {
    if input.title.trim().is_empty() {
        return Err(Error::invalid_input("`title` must not be empty"));
    }
    let url = format!(
        "{}/repos/{}/{}/issues",
        base_url()?,
        segment(&input.owner)?,
        segment(&input.repo)?
    );
    send(Request::post(url).json(&input)?)?
        .json::<Issue>()
        .map(Issue::marked)
}

fn add_issue_comment(input: AddComment) -> Result<Comment> {
    let url = format!(
        "{}/repos/{}/{}/issues/{}/comments",
        base_url()?,
        segment(&input.owner)?,
        segment(&input.repo)?,
        input.number
    );
    send(Request::post(url).json(&json!({ "body": input.body }))?)?.json()
}

impl Connector for GitHub {
    fn manifest() -> Manifest {
        Manifest::new("github", env!("CARGO_PKG_VERSION"))
            .title("GitHub")
            .description("Repositories and issues on github.com or GitHub Enterprise Server.")
            .release(Release::Ga)
            .docs(include_str!("../README.md"))
            .field(
                Field::text("base_url", "API base URL")
                    .description("https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise Server.")
                    .default_value(DEFAULT_BASE_URL),
            )
            .field(
                Field::secret("token", "Personal access token")
                    .description("A classic or fine-grained token; `repo` scope for private repositories.")
                    .schemes(["pat"]),
            )
            .auth(Auth::bearer("pat", "Personal access token", "token"))
            .auth(
                Auth::oauth2_code(
                    "oauth",
                    "Sign in with GitHub",
                    "https://github.com/login/oauth/authorize",
                    "https://github.com/login/oauth/access_token",
                )
                .mandatory_scopes(["repo"])
                .scopes(["read:user"]),
            )
            .allowed_host("{base_url}")
            .action(
                "get-authenticated-user",
                "Get the authenticated user",
                "Returns the account the connection's token belongs to.",
                get_authenticated_user,
            )
            .action(
                "list-repositories",
                "List repositories",
                "Lists repositories the authenticated user can access, following pagination.",
                list_repositories,
            )
            .action(
                "get-repository",
                "Get a repository",
                "Returns one repository by owner and name.",
                get_repository,
            )
            .action(
                "list-issues",
                "List issues",
                "Lists a repository's issues (pull requests are marked), following pagination.",
                list_issues,
            )
            .action("get-issue", "Get an issue", "Returns one issue by number.", get_issue)
            .action(
                "create-issue",
                "Create an issue",
                "Opens an issue with a title, an optional body, labels and assignees.",
                create_issue,
            )
            .action(
                "add-issue-comment",
                "Comment on an issue",
                "Adds a comment to an issue or a pull request.",
                add_issue_comment,
            )
    }

    fn test_connection() -> Result<()> {
        get_authenticated_user(NoInput {}).map(|_| ())
    }
}

export_connector!(GitHub);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_a_slash_are_refused_and_others_encoded() {
        assert!(segment("a/b").is_err());
        assert!(segment("").is_err());
        assert_eq!(segment("my repo").unwrap(), "my%20repo");
        assert_eq!(segment("octo-cat.io").unwrap(), "octo-cat.io");
    }

    #[test]
    fn limits_are_checked_and_pages_sized() {
        assert_eq!(limit(None).unwrap(), 30);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(1001)).is_err());
        assert_eq!(per_page(250), 100);
        assert_eq!(per_page(5), 5);
    }

    #[test]
    fn the_issue_body_sent_to_github_has_no_routing_fields() {
        let input: CreateIssue = junction_sdk::serde_json::from_value(json!({
            "owner": "o", "repo": "r", "title": "T", "labels": ["bug"]
        }))
        .unwrap();
        assert_eq!(
            junction_sdk::serde_json::to_value(&input).unwrap(),
            json!({"title": "T", "labels": ["bug"]})
        );
    }
}
