//! The `junction` binary's commands that talk to a running service: `junction connection …`
//! and `junction invoke --connection <id> …`, run as a user would.

#![allow(clippy::unwrap_used)]

use junction_tests::api::Api;
use junction_tests::service::{self, Service};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn junction(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_junction"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("JUNCTION_SERVER")
        .env_remove("JUNCTION_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// An address where nothing listens: a port the system just gave and took back.
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn an_unreachable_service_is_named_with_a_hint_and_status_2() {
    let server = closed_address();
    let commands: [&[&str]; 3] = [
        &["connection", "list"],
        &["connection", "show", "con_0123"],
        &["invoke", "--connection", "con_0123", "echo"],
    ];
    for args in commands {
        let out = junction(args, &[("JUNCTION_SERVER", &server)]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: cannot reach the Junction service at {server}"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("junction serve"), "{stderr}");
    }
    // --server wins over the environment.
    let out = junction(
        &["connection", "list", "--server", &server],
        &[("JUNCTION_SERVER", "http://127.0.0.1:1")],
    );
    assert!(text(&out.stderr).contains(&server), "{}", text(&out.stderr));
}

#[test]
fn the_token_from_the_environment_is_never_shown() {
    let token = "jt_NeverShowThisToken_0000000000000000000000";
    for args in [
        &["connection", "--help"][..],
        &["connection", "create", "--help"],
        &["invoke", "--help"],
    ] {
        let out = junction(args, &[("JUNCTION_TOKEN", token)]);
        let help = text(&out.stdout);
        assert!(out.status.success());
        assert!(help.contains("JUNCTION_TOKEN"), "{help}");
        assert!(!help.contains(token), "{args:?} printed the token:\n{help}");
    }
    let out = junction(
        &["connection", "list", "--server", &closed_address(), "-vvv"],
        &[("JUNCTION_TOKEN", token)],
    );
    assert!(!text(&out.stderr).contains(token));
}

#[test]
fn field_env_values_are_read_from_the_environment_and_never_echoed() {
    let secret = "ghp_FieldEnvSecret_0000";
    let out = junction(
        &[
            "connection",
            "create",
            "--connector",
            "github",
            "--name",
            "gh",
            "--field-env",
            "token=GH_TOKEN_FOR_TEST",
            "--server",
            &closed_address(),
        ],
        &[("GH_TOKEN_FOR_TEST", secret)],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));

    let out = junction(
        &[
            "connection",
            "create",
            "--connector",
            "github",
            "--name",
            "gh",
            "--field-env",
            "token=UNSET_VARIABLE_FOR_TEST",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "environment variable `UNSET_VARIABLE_FOR_TEST` (for field `token`) is not set"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn invoke_explains_which_positionals_each_form_takes() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["invoke", "--connection", "con_1", "p.wasm", "echo"],
            "with --connection, give only the action",
        ),
        (&["invoke", "echo"], "give the component and the action"),
        (
            &["invoke", "--connection", "con_1", "echo", "--timeout", "3"],
            "cannot be used with '--timeout",
        ),
        (
            &["invoke", "--connection", "con_1", "echo", "-i", "{nope"],
            "the input is not valid JSON",
        ),
    ];
    for (args, expected) in cases {
        let out = junction(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_server_address_with_a_password_is_refused_without_repeating_it() {
    let out = junction(
        &["connection", "list"],
        &[("JUNCTION_SERVER", "http://admin:hunter2@127.0.0.1:7480")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("must not contain a user name or password"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
}

// ---- against the real service -------------------------------------------------------------

/// A running `junction serve` with the test connectors, a tenant and its admin's token.
struct Running {
    service: Service,
    token: String,
}

impl Running {
    fn start(name: &str) -> Running {
        let bin = Path::new(env!("CARGO_BIN_EXE_junction"));
        let dir = service::data_dir(name);
        let tenant = service::create_tenant(bin, &dir, "acme", "ada");
        let token = tenant["token"]["token"].as_str().unwrap().to_owned();
        let service = Service::start(bin, &dir, &["--health-check-interval", "0"])
            .unwrap_or_else(|e| panic!("{e}"));
        Running { service, token }
    }

    /// Runs the binary against this service, with the admin's token and `env`. In an async
    /// test the runtime's other tasks (a local API) keep running meanwhile.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all = vec![
            ("JUNCTION_SERVER", self.service.url.as_str()),
            ("JUNCTION_TOKEN", self.token.as_str()),
        ];
        all.extend_from_slice(env);
        let run = || junction(args, &all);
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(run),
            Err(_) => run(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.service.data_dir);
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_created_listed_shown_tested_invoked_and_deleted_through_the_service() {
    let secret = "ghp_CliRemote_Secret_1234";
    let api = Api::start(secret).await;
    let junction = Running::start("cli-lifecycle");
    let base = format!("base_url={}", api.base_url);
    let env = [("GH_TOKEN_FOR_TEST", secret)];
    let mut printed = String::new();

    let out = junction.run(
        &[
            "connection",
            "create",
            "--connector",
            "github",
            "--name",
            "gh-ci",
            "--auth",
            "pat",
            "--field",
            &base,
            "--field-env",
            "token=GH_TOKEN_FOR_TEST",
            "--description",
            "CI bot",
        ],
        &env,
    );
    let created = ok(&out);
    printed.push_str(&created);
    assert!(created.starts_with("Created connection con_"), "{created}");
    assert!(created.contains("token (set)"), "{created}");
    assert!(created.contains("connector:     github@0.1.0"), "{created}");

    let listed = json(&junction.run(&["connection", "list", "--json"], &[]));
    printed.push_str(&listed.to_string());
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["next_cursor"], Value::Null);
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();

    let table = ok(&junction.run(&["connection", "list"], &[]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("HEALTH"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&id) && lines[1].contains("gh-ci"),
        "{table}"
    );
    let none = ok(&junction.run(&["connection", "list", "--connector", "http"], &[]));
    assert_eq!(none, "No connections.\n");

    let shown = ok(&junction.run(&["connection", "show", &id], &[]));
    printed.push_str(&shown);
    assert!(shown.contains("auth:          pat\n"), "{shown}");
    assert!(shown.contains("description:   CI bot\n"), "{shown}");
    assert!(shown.contains("health:        unknown"), "{shown}");
    let shown = json(&junction.run(&["connection", "show", &id, "--json"], &[]));
    assert_eq!(shown["secrets"]["token"], true);

    let tested = ok(&junction.run(&["connection", "test", &id], &[]));
    assert!(tested.starts_with(&format!("{id}: healthy")), "{tested}");

    let input = r#"{"owner":"octocat","repo":"hello-world"}"#;
    let out = junction.run(
        &[
            "invoke",
            "--connection",
            &id,
            "get-repository",
            "--input",
            input,
        ],
        &[],
    );
    let repo: Value = json(&out);
    assert_eq!(repo["full_name"], "octocat/hello-world");
    let whole = json(&junction.run(
        &[
            "invoke",
            "--connection",
            &id,
            "get-repository",
            "-i",
            input,
            "--json",
        ],
        &[],
    ));
    assert_eq!(whole["invocation"]["outcome"], "ok");
    assert_eq!(whole["output"]["full_name"], "octocat/hello-world");

    let deleted = ok(&junction.run(&["connection", "delete", &id], &[]));
    assert_eq!(deleted, format!("Deleted connection {id}.\n"));
    let out = junction.run(&["connection", "show", &id], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with(&format!("error: [not_found] no connection `{id}`")),
        "{}",
        text(&out.stderr)
    );

    assert!(!printed.contains(secret), "the secret was printed");
    assert!(
        api.seen()
            .iter()
            .any(|s| s.path == "/repos/octocat/hello-world"),
        "the invocation reached the API"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_through_the_service_exit_1_and_refusals_exit_2_with_the_api_code() {
    let api = Api::start("the-right-token").await;
    let junction = Running::start("cli-failures");
    let base = format!("base_url={}", api.base_url);
    let created = json(&junction.run(
        &[
            "connection",
            "--json",
            "create",
            "--connector",
            "github",
            "--name",
            "wrong-token",
            "--auth",
            "pat",
            "--field",
            &base,
            "--field-env",
            "token=WRONG",
        ],
        &[("WRONG", "not-the-right-token")],
    ));
    let id = created["id"].as_str().unwrap().to_owned();

    // The invocation ran and failed: status 1, the connector's code, the invocation's id.
    let out = junction.run(
        &["invoke", "--connection", &id, "get-authenticated-user"],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: [unauthorized] "), "{stderr}");
    assert!(stderr.contains("(invocation inv_"), "{stderr}");
    assert!(!stderr.contains("not-the-right-token"), "{stderr}");

    let out = junction.run(&["invoke", "--connection", &id, "get-repository"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: [invalid_input] "));

    // The test ran and the connection is not healthy: status 1, the health printed.
    let out = junction.run(&["connection", "test", &id], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("{id}: ")), "{stdout}");
    assert!(!stdout.contains("healthy\n"), "{stdout}");
    assert!(text(&out.stderr).contains("the connection test of"));

    // Refusals: status 2 with the API's code and a hint.
    // (arguments, extra environment, how stderr starts, what it says)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 5] = [
        (
            &["invoke", "--connection", &id, "no-such-action"],
            &[],
            "error: [invalid_request] ",
            "no-such-action",
        ),
        (
            &[
                "invoke",
                "--connection",
                "con_0000000000",
                "get-authenticated-user",
            ],
            &[],
            "error: [not_found] ",
            "hint: `junction connection list`",
        ),
        (
            &["connection", "list"],
            &[("JUNCTION_TOKEN", "")],
            "error: [unauthenticated] ",
            "no API token was given: set JUNCTION_TOKEN",
        ),
        (
            &["connection", "list"],
            &[("JUNCTION_TOKEN", "jt_revoked_or_never_issued")],
            "error: [unauthenticated] ",
            "refused the token",
        ),
        (
            &[
                "connection",
                "create",
                "--connector",
                "github",
                "--name",
                "no-secret",
                "--auth",
                "pat",
            ],
            &[],
            "error: [invalid_request] ",
            "token",
        ),
    ];
    for (args, env, start, contains) in cases {
        let out = junction.run(args, env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(start), "{args:?}: {stderr}");
        assert!(stderr.contains(contains), "{args:?}: {stderr}");
        assert!(!stderr.contains("jt_revoked_or_never_issued"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_follows_the_pages_and_stops_at_the_limit() {
    let junction = Running::start("cli-pages");
    let client = junction.service.client(&junction.token);
    for n in 0..203 {
        let answer = client
            .post(
                "/v1/connections",
                serde_json::json!({"connector": "probe", "name": format!("p{n:03}"), "auth": "none"}),
            )
            .await;
        assert_eq!(answer.status.as_u16(), 201, "{}", answer.text);
    }

    let all = json(&junction.run(&["connection", "list", "--json"], &[]));
    assert_eq!(all["items"].as_array().unwrap().len(), 203);
    assert_eq!(all["next_cursor"], Value::Null);
    let mut names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 203, "every connection once");

    let table = ok(&junction.run(&["connection", "list"], &[]));
    assert_eq!(table.lines().count(), 1 + 203);

    let out = junction.run(&["connection", "list", "--limit", "201"], &[]);
    assert_eq!(ok(&out).lines().count(), 1 + 201);
    assert!(text(&out.stderr).contains("more connections exist"));
    let some = json(&junction.run(&["connection", "list", "--limit", "201", "--json"], &[]));
    assert_eq!(some["items"].as_array().unwrap().len(), 201);
    assert!(some["next_cursor"].is_string());

    let healthy = ok(&junction.run(&["connection", "list", "--health", "healthy"], &[]));
    assert_eq!(healthy, "No connections.\n");
}

/// `junction connection create` with the authorization code grant prints the consent URL
/// and waits; once the user consents (here the test's browser, in the user's stead), it
/// says the connection is authorized. `reconnect` does the same and keeps the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_connection_is_created_and_reconnected_through_the_consent_from_the_command_line()
{
    use junction_tests::browser::Browser;
    use junction_tests::oauth::OAuthServer;
    use junction_tests::resource::Resource;
    use std::io::{BufRead as _, BufReader};

    let oauth = tokio::task::block_in_place(OAuthServer::start);
    let resource = Resource::start(&oauth).await;
    let junction = Running::start("cli-oauth");
    let app = oauth
        .register_client(serde_json::json!({
            "redirect_uris": [format!("{}/v1/oauth/callback", junction.service.url)],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }))
        .await;
    let issuer = format!("issuer={}", oauth.issuer());
    let base = format!("base_url={}", resource.base_url);
    let client_id = format!("client_id={}", app.client_id);

    // Runs a waiting command, consents at the URL it prints, and returns its output.
    async fn consent_through(junction: &Running, args: &[&str], secret: &str) -> (String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_junction"))
            .args(args)
            .env("JUNCTION_SERVER", &junction.service.url)
            .env("JUNCTION_TOKEN", &junction.token)
            .env("APP_SECRET", secret)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        let url = tokio::task::block_in_place(|| {
            let mut line = String::new();
            loop {
                line.clear();
                assert!(
                    stdout.read_line(&mut line).unwrap() > 0,
                    "no URL in: {printed}"
                );
                printed.push_str(&line);
                if let Some(url) = line.trim().strip_prefix("http") {
                    return format!("http{url}");
                }
            }
        });
        let page = Browser::new().consent(&url, "ann").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let out = tokio::task::block_in_place(|| {
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
            printed.push_str(&rest);
            child.wait_with_output().unwrap()
        });
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{printed}\n{stderr}");
        (printed, stderr)
    }

    let (printed, stderr) = consent_through(
        &junction,
        &[
            "connection",
            "create",
            "--connector",
            "probe",
            "--name",
            "crm",
            "--auth",
            "oauth",
            "--field",
            &issuer,
            "--field",
            &base,
            "--field",
            &client_id,
            "--field-env",
            "client_secret=APP_SECRET",
        ],
        &app.client_secret,
    )
    .await;
    assert!(printed.contains("Open this URL in a browser"), "{printed}");
    assert!(printed.contains("Authorized: con_"), "{printed}");
    assert!(stderr.contains("Waiting for the consent"), "{stderr}");
    assert!(!printed.contains(&app.client_secret) && !stderr.contains(&app.client_secret));
    let id = printed
        .split_whitespace()
        .find(|w| w.starts_with("con_"))
        .unwrap()
        .trim_end_matches(['.', ':'])
        .to_owned();

    let (printed, _) = consent_through(
        &junction,
        &["connection", "reconnect", &id],
        &app.client_secret,
    )
    .await;
    assert!(printed.contains(&format!("Authorized: {id}")), "{printed}");
    assert_eq!(oauth.grants("authorization_code", &app.client_id), 2);

    // Reconnecting a connection that is not OAuth says what to do instead.
    let out = junction.run(
        &[
            "connection",
            "create",
            "--connector",
            "probe",
            "--name",
            "plain",
            "--auth",
            "none",
            "--field",
            &base,
            "--json",
        ],
        &[],
    );
    let plain = json(&out)["id"].as_str().unwrap().to_owned();
    let out = junction.run(&["connection", "reconnect", &plain], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("PATCH"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_ref_creates_a_connection_whose_secret_comes_from_a_credential_store() {
    use junction_tests::vault::VaultServer;
    let vault = VaultServer::start().await;
    let key = "cli-vault-key-0b6f2d";
    vault
        .put_v1("team/cli", serde_json::json!({"api_key": key}))
        .await;
    let api = Api::start(key).await;
    let bin = Path::new(env!("CARGO_BIN_EXE_junction"));
    let dir = service::data_dir("cli-field-ref");
    let config = dir.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[credential_stores.corp]\naddress = \"{}\"\nauth = \"token\"\n\
             token_env = \"JUNCTION_TEST_VAULT_TOKEN\"\nmount = \"kv\"\nkv_version = 1\n\
             tenants = \"*\"\n",
            vault.address()
        ),
    )
    .unwrap();
    let tenant = service::create_tenant(bin, &dir, "acme", "ada");
    let token = tenant["token"]["token"].as_str().unwrap().to_owned();
    // Only the probe: each connector loaded is compiled at start.
    let mut command = Command::new(bin);
    command
        .arg("--log-json")
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--health-check-interval", "0"])
        .args(service::LOOPBACK_EGRESS)
        .arg("--data-dir")
        .arg(&dir)
        .arg("--connectors")
        .arg(junction_tests::components::PROBE)
        .arg("--config")
        .arg(&config)
        .env_remove("JUNCTION_KEY")
        .env_remove("JUNCTION_CONFIG")
        .env("JUNCTION_TEST_VAULT_TOKEN", vault.root_token());
    let service = tokio::task::block_in_place(|| Service::start_command(command, &dir))
        .unwrap_or_else(|e| panic!("{e}"));
    let junction = Running { service, token };
    let base = format!("base_url={}", api.base_url);
    let mut printed = String::new();

    let create = |name: &str, reference: &str| {
        junction.run(
            &[
                "connection",
                "create",
                "--connector",
                "probe",
                "--name",
                name,
                "--auth",
                "header-key",
                "--field",
                &base,
                "--field-ref",
                reference,
            ],
            &[],
        )
    };
    let created = ok(&create("from-vault", "api_key=corp:team/cli#api_key"));
    printed.push_str(&created);
    assert!(created.starts_with("Created connection con_"), "{created}");
    assert!(
        created.contains("api_key (from credential store corp:team/cli#api_key)"),
        "{created}"
    );
    let id = created
        .split_whitespace()
        .find(|w| w.starts_with("con_"))
        .unwrap()
        .trim_end_matches(['.', ':'])
        .to_owned();

    let shown = json(&junction.run(&["connection", "show", &id, "--json"], &[]));
    printed.push_str(&shown.to_string());
    assert_eq!(shown["secrets"]["api_key"], true, "{shown}");
    assert_eq!(
        shown["secret_refs"]["api_key"],
        serde_json::json!({"store": "corp", "path": "team/cli", "key": "api_key"}),
        "{shown}"
    );
    let out = junction.run(
        &[
            "invoke",
            "--connection",
            &id,
            "fetch",
            "--input",
            r#"{"url":"/key"}"#,
        ],
        &[],
    );
    let fetched = json(&out);
    printed.push_str(&fetched.to_string());
    assert_eq!(fetched["status"], 200, "{fetched}");
    assert_eq!(fetched["body"], "key accepted", "{fetched}");
    let sent: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.path == "/key")
        .filter_map(|s| s.headers.get("x-api-key")?.to_str().ok().map(str::to_owned))
        .collect();
    assert_eq!(sent, vec![key.to_owned()]);

    // A reference that is not STORE:PATH#KEY is bad usage; one that points nowhere is the
    // service's refusal, naming the field.
    let out = create("malformed", "api_key=corp/team/cli");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("STORE:PATH#KEY"), "{stderr}");
    let out = create("nowhere", "api_key=corp:team/none#api_key");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: [invalid_request] "), "{stderr}");
    assert!(stderr.contains("team/none"), "{stderr}");
    assert!(!printed.contains(key), "the vault's value was printed");
    let _ = std::fs::remove_file(&config);
}
