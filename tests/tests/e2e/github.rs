//! The GitHub connector against a local API that follows GitHub's documented behaviour.

use super::{code, limits};
use junction::runtime::{ConnectorError, InvokeError};
use junction_tests::api::Api;
use junction_tests::components::GITHUB;
use junction_tests::{connection, connector, runtime_with};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_localTestToken000000000000000000000";

struct GitHub {
    api: Api,
}

impl GitHub {
    async fn start() -> Self {
        Self {
            api: Api::start(TOKEN).await,
        }
    }

    async fn call_with(
        &self,
        token: &str,
        action: &str,
        input: Value,
    ) -> Result<Value, InvokeError> {
        let github = connector(GITHUB).await;
        let conn = connection(
            &github,
            json!({"auth": "pat", "fields": {"base_url": self.api.base_url, "token": token}}),
        );
        let out = runtime_with(limits())
            .execute(&github, conn, action, &input.to_string())
            .await?;
        Ok(serde_json::from_str(&out).unwrap())
    }

    async fn call(&self, action: &str, input: Value) -> Result<Value, InvokeError> {
        self.call_with(TOKEN, action, input).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_the_authenticated_user() {
    let gh = GitHub::start().await;
    let user = gh.call("get-authenticated-user", json!({})).await.unwrap();
    assert_eq!(user["login"], "octocat");
    assert_eq!(user["name"], "The Octocat");
    let seen = gh.api.seen().pop().unwrap();
    assert_eq!(seen.path, "/user");
    assert_eq!(seen.headers["accept"], "application/vnd.github+json");
    assert_eq!(seen.headers["x-github-api-version"], "2022-11-28");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_repositories_follows_link_pagination_and_continues_from_next() {
    let gh = GitHub::start().await;
    let first = gh
        .call("list-repositories", json!({"limit": 10, "sort": "updated"}))
        .await
        .unwrap();
    let repos = first["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 10);
    assert_eq!(repos[0]["full_name"], "octocat/repo-1");
    let next = first["next"].as_str().unwrap().to_owned();
    assert!(
        next.contains("page=2") && next.contains("sort=updated"),
        "{next}"
    );

    // All of them: 23 repositories over pages of 10, found through `Link` headers.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = gh
            .call("list-repositories", json!({"limit": 10, "next": cursor}))
            .await
            .unwrap();
        all.extend(page["repositories"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(all.len(), 23);
    assert_eq!(all[22]["name"], "repo-23");

    // One call can span pages too.
    let big = gh
        .call("list-repositories", json!({"limit": 1000}))
        .await
        .unwrap();
    assert_eq!(big["repositories"].as_array().unwrap().len(), 23);
    assert!(big["next"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_host_is_refused() {
    let gh = GitHub::start().await;
    let e = gh
        .call(
            "list-repositories",
            json!({"next": "https://evil.test/user/repos?page=2"}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "invalid_input", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_a_repository_and_a_missing_one() {
    let gh = GitHub::start().await;
    let repo = gh
        .call(
            "get-repository",
            json!({"owner": "octocat", "repo": "hello-world"}),
        )
        .await
        .unwrap();
    assert_eq!(repo["full_name"], "octocat/hello-world");
    assert_eq!(repo["default_branch"], "main");
    let e = gh
        .call(
            "get-repository",
            json!({"owner": "octocat", "repo": "nope"}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "not_found", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_issues_marks_pull_requests_and_filters_by_state() {
    let gh = GitHub::start().await;
    let open = gh
        .call(
            "list-issues",
            json!({"owner": "octocat", "repo": "hello-world", "limit": 100}),
        )
        .await
        .unwrap();
    let issues = open["issues"].as_array().unwrap();
    assert_eq!(issues.len(), 9, "12 issues, every fourth closed");
    assert!(issues.iter().all(|i| i["state"] == "open"));
    let pr = issues.iter().find(|i| i["number"] == 2).unwrap();
    assert_eq!(pr["is_pull_request"], true);
    assert!(pr.get("pull_request").is_none());

    let all = gh
        .call(
            "list-issues",
            json!({"owner": "octocat", "repo": "hello-world", "state": "all", "limit": 5}),
        )
        .await
        .unwrap();
    assert_eq!(all["issues"].as_array().unwrap().len(), 5);
    assert!(all["next"].as_str().unwrap().contains("state=all"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_an_issue_then_get_it_and_comment() {
    let gh = GitHub::start().await;
    let created = gh
        .call(
            "create-issue",
            json!({"owner": "octocat", "repo": "hello-world", "title": "Found a bug", "body": "Steps…", "labels": ["bug"]}),
        )
        .await
        .unwrap();
    let number = created["number"].as_u64().unwrap();
    assert_eq!(number, 13);
    assert_eq!(created["labels"][0]["name"], "bug");
    let post = gh.api.seen().pop().unwrap();
    assert_eq!(post.method, "POST");
    assert_eq!(post.headers["content-type"], "application/json");

    let fetched = gh
        .call(
            "get-issue",
            json!({"owner": "octocat", "repo": "hello-world", "number": number}),
        )
        .await
        .unwrap();
    assert_eq!(fetched["title"], "Found a bug");

    let comment = gh
        .call(
            "add-issue-comment",
            json!({"owner": "octocat", "repo": "hello-world", "number": number, "body": "Me too"}),
        )
        .await
        .unwrap();
    assert_eq!(comment["body"], "Me too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_errors_become_typed_errors() {
    let gh = GitHub::start().await;
    let e = gh
        .call(
            "create-issue",
            json!({"owner": "octocat", "repo": "hello-world", "title": "!invalid"}),
        )
        .await
        .unwrap_err();
    match &e {
        InvokeError::Connector {
            error: ConnectorError::InvalidInput { message },
            ..
        } => assert!(message.starts_with("Validation Failed"), "{message}"),
        other => panic!("expected invalid input, got {other}"),
    }
    let e = gh
        .call(
            "get-repository",
            json!({"owner": "octocat", "repo": "rate-limited"}),
        )
        .await
        .unwrap_err();
    match &e {
        InvokeError::Connector {
            error:
                ConnectorError::RateLimited {
                    retry_after_seconds,
                    ..
                },
            ..
        } => assert_eq!(*retry_after_seconds, Some(42)),
        other => panic!("expected rate limited, got {other}"),
    }
    // Primary limit: no Retry-After, the wait is counted to X-RateLimit-Reset.
    let e = gh
        .call(
            "get-repository",
            json!({"owner": "octocat", "repo": "rate-limited-until-reset"}),
        )
        .await
        .unwrap_err();
    match &e {
        InvokeError::Connector {
            error:
                ConnectorError::RateLimited {
                    retry_after_seconds: Some(s),
                    ..
                },
            ..
        } => assert!((110..=120).contains(s), "{s}"),
        other => panic!("expected rate limited until the reset, got {other}"),
    }
    let e = gh
        .call_with("ghp_wrong", "get-authenticated-user", json!({}))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "unauthorized", "{e}");
    assert!(e.to_string().contains("Bad credentials"), "{e}");
    let e = gh
        .call("get-repository", json!({"owner": "octo/cat", "repo": "x"}))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "invalid_input", "{e}");
    let e = gh
        .call("get-issue", json!({"owner": "octocat"}))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "invalid_input", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_checks_the_token() {
    let gh = GitHub::start().await;
    let github = connector(GITHUB).await;
    let runtime = runtime_with(limits());
    let good = connection(
        &github,
        json!({"auth": "pat", "fields": {"base_url": gh.api.base_url, "token": TOKEN}}),
    );
    runtime.test_connection(&github, good).await.unwrap();
    let bad = connection(
        &github,
        json!({"auth": "pat", "fields": {"base_url": gh.api.base_url, "token": "wrong"}}),
    );
    let e = runtime.test_connection(&github, bad).await.unwrap_err();
    assert_eq!(code(&e), "unauthorized");
}
