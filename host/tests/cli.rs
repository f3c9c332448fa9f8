//! The `junction` binary, run as a user would.

#![allow(clippy::unwrap_used)]

use junction_tests::api::Api;
use junction_tests::components::{BAD_MANIFEST, GITHUB, HTTP, PROBE, WASM_TARGET_DIR};
use std::process::{Command, Output};

fn junction(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_junction"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn inspect_prints_the_manifest_summary_and_json() {
    let out = junction(&["inspect", GITHUB]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("github 0.1.0 (GA)"), "{stdout}");
    assert!(stdout.contains("list-repositories"));
    assert!(stdout.contains("token") && stdout.contains("secret"));

    let out = junction(&["inspect", HTTP, "--json"]);
    assert!(out.status.success());
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["name"], "http");
    assert_eq!(manifest["actions"][0]["input_schema"]["type"], "object");
}

#[test]
fn inspect_of_a_bad_component_fails_with_the_reason_and_status_2() {
    let out = junction(&["inspect", BAD_MANIFEST]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the manifest is malformed"),
        "{}",
        text(&out.stderr)
    );
    let out = junction(&["inspect", "/nonexistent.wasm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent.wasm"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_calls_a_real_api_with_the_credentials_given() {
    let token = "ghp_cliToken_Secret_000";
    let api = Api::start(token).await;
    let base = format!("base_url={}", api.base_url);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_junction"))
            .args([
                "invoke",
                GITHUB,
                "get-repository",
                "--input",
                r#"{"owner":"octocat","repo":"hello-world"}"#,
            ])
            .args([
                "--auth",
                "pat",
                "--field",
                &base,
                "--field-env",
                "token=GH_TOKEN_FOR_TEST",
                "-vvv",
            ])
            .env("GH_TOKEN_FOR_TEST", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let repo: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(repo["full_name"], "octocat/hello-world");
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "verbose logs were on"
    );
    assert!(
        !stderr.contains(token) && !stdout.contains(token),
        "the token leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_reports_a_failed_invocation_with_its_code_and_status_1() {
    let api = Api::start("right").await;
    let dir = std::env::temp_dir().join(format!("junction-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("conn.json");
    std::fs::write(
        &file,
        serde_json::json!({"auth": "pat", "fields": {"base_url": api.base_url, "token": "wrong"}})
            .to_string(),
    )
    .unwrap();
    let path = file.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        junction(&[
            "invoke",
            GITHUB,
            "get-authenticated-user",
            "--connection-file",
            &path,
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: [unauthorized] github@0.1.0"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong\""), "{stderr}");
}

#[test]
fn invoke_explains_usage_errors_with_status_2() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["invoke", PROBE, "echo", "--input", "{nope"],
            "the input is not valid JSON",
        ),
        (
            &["invoke", PROBE, "nope", "--auth", "none"],
            "has no action `nope`; it has: echo",
        ),
        (
            &["invoke", PROBE, "echo", "--auth", "bearer"],
            "field `token` is required",
        ),
        (
            &["invoke", PROBE, "echo", "--field", "novalue"],
            "`novalue` is not NAME=VALUE",
        ),
    ];
    for (args, expected) in cases {
        let out = junction(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_limit_hit_is_reported_with_the_connector_and_the_limit() {
    let out = junction(&[
        "invoke",
        PROBE,
        "spin",
        "--auth",
        "none",
        "--cpu-time",
        "0.2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "[limit_cpu_time] probe@0.1.0 was stopped: it exceeded the CPU time limit of 200ms"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_documents_the_commands_and_the_connection_flags() {
    let out = junction(&["invoke", "--help"]);
    let help = text(&out.stdout);
    for flag in [
        "--connection-file",
        "--connection <ID>",
        "--server",
        "JUNCTION_TOKEN",
        "--field-env",
        "--auth",
        "--timeout",
        "--memory-mib",
        "Exit status",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn new_scaffolds_a_connector_that_builds_and_runs() {
    let dir = std::env::temp_dir().join(format!("junction-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let crate_dir = dir.join("weather-api");
    let out = junction(&["new", "weather-api", "--path", crate_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = junction(&["new", "weather-api", "--path", crate_dir.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("already exists"));
    let out = junction(&["new", "Weather API"]);
    assert!(text(&out.stderr).contains("not a valid connector name"));

    // One cargo command builds it (the target is set by the scaffold's .cargo/config.toml);
    // the shared target directory reuses the SDK already built for the test components.
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", WASM_TARGET_DIR)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", text(&build.stderr));
    let wasm = format!("{WASM_TARGET_DIR}/wasm32-wasip2/release/weather_api.wasm");
    let out = junction(&[
        "invoke",
        &wasm,
        "hello",
        "--input",
        r#"{"name":"Ada"}"#,
        "--field",
        "api_key=k",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Hello, Ada!"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_instead_of_panicking() {
    for args in [vec!["inspect", GITHUB, "--json"], vec!["inspect", PROBE]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_junction"))
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is written, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_reaches_loopback_but_not_a_private_network_unless_allowed() {
    let api = Api::start("t").await;
    let run = |extra: Vec<String>| {
        let mut args = vec![
            "invoke".to_owned(),
            PROBE.to_owned(),
            "fetch".to_owned(),
            "--auth".to_owned(),
            "none".to_owned(),
            "--input".to_owned(),
            r#"{"url": "/ping"}"#.to_owned(),
        ];
        args.extend(extra);
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_junction"))
                .args(&args)
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        })
    };
    // Loopback: allowed to local runs.
    let out = run(vec!["--field".into(), format!("base_url={}", api.base_url)])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pong"));
    // A private address: refused, with the class and the exit status of a failed run.
    let out = run(vec![
        "--field".into(),
        "base_url=http://10.255.0.1:9".into(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "[denied] probe@0.1.0: denied by the host: cannot reach http://10.255.0.1:9: a private network address is not allowed by the egress policy"
        ),
        "{}",
        text(&out.stderr)
    );
    // Opened with --egress-allow, it is tried (and nothing listens there: a connection
    // error, not a refusal).
    let out = run(vec![
        "--field".into(),
        "base_url=http://10.255.0.1:9".into(),
        "--egress-allow".into(),
        "10.255.0.1/32:9".into(),
        "--timeout".into(),
        "3".into(),
    ])
    .await
    .unwrap();
    assert!(
        !text(&out.stderr).contains("egress policy"),
        "{}",
        text(&out.stderr)
    );
    // A bad entry is a usage error naming it.
    let out = run(vec!["--egress-allow".into(), "10.0.0.1/8".into()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did you mean `10.0.0.0/8`"),
        "{}",
        text(&out.stderr)
    );
}
