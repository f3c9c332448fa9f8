//! The operator's commands, run as an operator would against a real service:
//! `junction admin create-operator`, `junction connector …` (publish, list, show, install,
//! upgrade, rollback, skip, unskip) and `junction policy …` (show, set, oauth-app).

#![allow(clippy::unwrap_used)]

use junction_tests::components::{
    FUTURE_INTERFACE, MINIMAL, VERSIONED_1, VERSIONED_2, VERSIONED_3,
};
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

/// The stderr of a command that must have exited with status 2.
fn refused(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// `junction admin create-operator` on a data directory: the operator and its token.
fn create_operator(data_dir: &Path, name: &str) -> Value {
    let out = junction(
        &[
            "admin",
            "create-operator",
            name,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[],
    );
    json(&out)
}

/// A running `junction serve` with the test connectors, a tenant (`acme`, with its
/// administrator's token) and an operator's token.
struct Running {
    service: Service,
    operator: String,
    tenant_token: String,
    tenant_id: String,
}

impl Running {
    fn start(name: &str) -> Running {
        let bin = Path::new(env!("CARGO_BIN_EXE_junction"));
        let dir = service::data_dir(name);
        let tenant = service::create_tenant(bin, &dir, "acme", "ada");
        let operator = create_operator(&dir, "ops");
        let service = Service::start(bin, &dir, &["--health-check-interval", "0"])
            .unwrap_or_else(|e| panic!("{e}"));
        Running {
            service,
            operator: operator["token"].as_str().unwrap().to_owned(),
            tenant_token: tenant["token"]["token"].as_str().unwrap().to_owned(),
            tenant_id: tenant["tenant"]["id"].as_str().unwrap().to_owned(),
        }
    }

    /// Runs the binary against this service with the operator's token.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(&self.operator, args, &[])
    }

    /// Runs the binary against this service with `token` and `env`.
    fn run_with(&self, token: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all = vec![
            ("JUNCTION_SERVER", self.service.url.as_str()),
            ("JUNCTION_TOKEN", token),
        ];
        all.extend_from_slice(env);
        junction(args, &all)
    }

    /// The words of the `connector list` row of `name`.
    fn catalog_row(&self, name: &str) -> Vec<String> {
        let table = ok(&self.run(&["connector", "list"]));
        assert!(
            table.starts_with("NAME") && table.lines().next().unwrap().contains("UPGRADE"),
            "{table}"
        );
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.service.data_dir);
    }
}

/// The line of `connector show` for `version`.
fn version_line(shown: &str, version: &str) -> String {
    shown
        .lines()
        .find(|l| l.split_whitespace().next() == Some(version))
        .unwrap_or_else(|| panic!("no line for {version}:\n{shown}"))
        .to_owned()
}

#[test]
fn create_operator_prints_the_operator_and_its_token_once() {
    let dir = service::data_dir("cli-operator");
    let created = create_operator(&dir, "ops");
    assert!(
        created["operator"]["id"]
            .as_str()
            .unwrap()
            .starts_with("opr_"),
        "{created}"
    );
    assert_eq!(created["operator"]["name"], "ops");
    assert!(
        created["token"].as_str().unwrap().starts_with("jo_"),
        "{created}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connector_help_says_versions_cannot_be_unpublished() {
    let out = junction(
        &["connector", "--help"],
        &[("JUNCTION_TOKEN", "jo_HelpMustNotShowMe")],
    );
    let help = ok(&out);
    assert!(help.contains("cannot be unpublished"), "{help}");
    assert!(help.contains("junction policy set --disable"), "{help}");
    assert!(help.contains("junction connector skip"), "{help}");
    assert!(!help.contains("jo_HelpMustNotShowMe"), "{help}");
    for args in [
        &["connector", "install", "--help"][..],
        &["policy", "set", "--help"],
        &["policy", "oauth-app", "set", "--help"],
    ] {
        let help = ok(&junction(args, &[]));
        assert!(help.contains("Example"), "{args:?}: {help}");
    }
    let help = ok(&junction(&["policy", "oauth-app", "set", "--help"], &[]));
    assert!(help.contains("never from the command line"), "{help}");
}

#[test]
fn bad_usage_is_refused_before_any_request() {
    let cases: [(&[&str], &str); 7] = [
        (&["connector", "install"], "--all"),
        (
            &["connector", "install", "--all", "github"],
            "cannot be used with",
        ),
        (&["connector", "skip", "versioned"], "give the version too"),
        (
            &["connector", "install", "versioned@"],
            "is not NAME or NAME@VERSION",
        ),
        (&["connector", "publish"], "<FILE>"),
        (&["policy", "set", "--tenant", "ten_1"], "required"),
        (
            &[
                "policy",
                "set",
                "--tenant",
                "ten_1",
                "--allow-auth",
                "github",
            ],
            "is not CONNECTOR=TYPE,TYPE",
        ),
    ];
    for (args, expected) in cases {
        let stderr = refused(&junction(
            args,
            &[("JUNCTION_SERVER", "http://127.0.0.1:1")],
        ));
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("cannot reach"),
            "{args:?} sent a request: {stderr}"
        );
    }
}

#[test]
fn published_versions_are_listed_and_shown_and_publishing_again_changes_nothing() {
    let junction = Running::start("cli-catalog-publish");
    let out = ok(&junction.run(&["connector", "publish", VERSIONED_1, VERSIONED_2]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("[1/2] published versioned 1.0.0 (ga, sha256:"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("[2/2] published versioned 2.0.0 (ga, sha256:"),
        "{out}"
    );
    assert!(
        lines[1].ends_with(" KiB)") || lines[1].ends_with(" MiB)"),
        "{out}"
    );
    assert_eq!(lines[2], "published 2, failed 0");

    let again = ok(&junction.run(&["connector", "publish", VERSIONED_1]));
    assert_eq!(again, "already published: versioned 1.0.0 (identical)\n");
    let again = json(&junction.run(&["connector", "publish", VERSIONED_2, "--json"]));
    assert_eq!(again["items"][0]["version"]["already_published"], true);
    assert_eq!(again["items"][0]["version"]["version"], "2.0.0");

    assert_eq!(
        junction.catalog_row("versioned"),
        ["versioned", "-", "2.0.0", "-"]
    );
    let listed = json(&junction.run(&["connector", "list", "--json"]));
    let item = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "versioned")
        .unwrap();
    assert_eq!(item["latest_version"], "2.0.0");
    assert_eq!(item["active_version"], Value::Null);

    let shown = ok(&junction.run(&["connector", "show", "versioned"]));
    assert!(shown.starts_with("versioned"), "{shown}");
    assert!(shown.contains("active:  not installed\n"), "{shown}");
    assert!(shown.contains("latest:  2.0.0\n"), "{shown}");
    let header = shown.lines().find(|l| l.starts_with("VERSION")).unwrap();
    for column in ["STATE", "RELEASE", "DIGEST", "SIZE", "PUBLISHED"] {
        assert!(header.contains(column), "{shown}");
    }
    for version in ["1.0.0", "2.0.0"] {
        let line = version_line(&shown, version);
        assert!(line.contains(" available "), "{line}");
        assert!(line.contains(" ga "), "{line}");
        assert!(line.contains(" sha256:"), "{line}");
    }
    // Newest first.
    assert!(shown.find("\n2.0.0").unwrap() < shown.find("\n1.0.0").unwrap());

    let stderr = refused(&junction.run(&["connector", "show", "nosuch"]));
    assert!(stderr.starts_with("error: [not_found] "), "{stderr}");
    assert!(stderr.contains("junction connector list"), "{stderr}");
}

#[test]
fn install_upgrade_skip_and_rollback_say_what_changed() {
    let junction = Running::start("cli-catalog-lifecycle");
    ok(&junction.run(&["connector", "publish", VERSIONED_1, VERSIONED_2]));

    let out = ok(&junction.run(&["connector", "install", "versioned@1.0.0"]));
    assert_eq!(out, "installed versioned 1.0.0\n");
    let stderr = refused(&junction.run(&["connector", "install", "versioned"]));
    assert!(
        stderr.starts_with("error: [already_installed] "),
        "{stderr}"
    );
    assert!(stderr.contains("junction connector upgrade"), "{stderr}");
    assert_eq!(
        junction.catalog_row("versioned"),
        ["versioned", "1.0.0", "2.0.0", "2.0.0"]
    );

    let out = ok(&junction.run(&["connector", "skip", "versioned@2.0.0"]));
    assert_eq!(out, "skipped versioned 2.0.0\n");
    assert_eq!(
        junction.catalog_row("versioned"),
        ["versioned", "1.0.0", "2.0.0", "-"]
    );
    let stderr = refused(&junction.run(&["connector", "upgrade", "versioned"]));
    assert!(stderr.starts_with("error: [no_upgrade] "), "{stderr}");
    let stderr = refused(&junction.run(&["connector", "upgrade", "versioned@2.0.0"]));
    assert!(stderr.starts_with("error: [version_skipped] "), "{stderr}");
    assert!(stderr.contains("junction connector unskip"), "{stderr}");
    let stderr = refused(&junction.run(&["connector", "skip", "versioned@1.0.0"]));
    assert!(stderr.starts_with("error: [version_active] "), "{stderr}");
    let shown = ok(&junction.run(&["connector", "show", "versioned"]));
    assert!(
        version_line(&shown, "2.0.0").contains(" skipped "),
        "{shown}"
    );

    let out = ok(&junction.run(&["connector", "unskip", "versioned@2.0.0"]));
    assert_eq!(
        out,
        "unskipped versioned 2.0.0 (upgrade available: 2.0.0)\n"
    );
    let out = ok(&junction.run(&["connector", "upgrade", "versioned"]));
    assert_eq!(out, "upgraded versioned 1.0.0 → 2.0.0\n");

    // A preview, named explicitly.
    ok(&junction.run(&["connector", "publish", VERSIONED_3]));
    let stderr = refused(&junction.run(&["connector", "rollback", "versioned@3.0.0-beta.1"]));
    assert!(
        stderr.starts_with("error: [not_previously_installed] "),
        "{stderr}"
    );
    let out = ok(&junction.run(&["connector", "upgrade", "versioned@3.0.0-beta.1"]));
    assert_eq!(out, "upgraded versioned 2.0.0 → 3.0.0-beta.1\n");

    let out = ok(&junction.run(&["connector", "rollback", "versioned"]));
    assert_eq!(out, "rolled back versioned 3.0.0-beta.1 → 2.0.0\n");
    let shown = ok(&junction.run(&["connector", "show", "versioned"]));
    assert!(shown.contains("active:  2.0.0\n"), "{shown}");
    assert!(shown.contains("latest:  3.0.0-beta.1\n"), "{shown}");
    assert!(
        version_line(&shown, "2.0.0").contains(" active "),
        "{shown}"
    );
    assert!(
        version_line(&shown, "1.0.0").contains(" previously installed "),
        "{shown}"
    );
    let preview = version_line(&shown, "3.0.0-beta.1");
    assert!(
        preview.contains(" previously installed ") && preview.contains(" preview "),
        "{shown}"
    );
    let out = json(&junction.run(&["connector", "rollback", "versioned@1.0.0", "--json"]));
    assert_eq!(out["active_version"], "1.0.0");
    let stderr = refused(&junction.run(&["connector", "rollback", "nosuch"]));
    assert!(stderr.starts_with("error: [not_found] "), "{stderr}");
}

#[test]
fn bulk_install_and_upgrade_report_each_connector_and_go_on_after_a_refusal() {
    let junction = Running::start("cli-catalog-bulk");
    ok(&junction.run(&["connector", "publish", VERSIONED_1, MINIMAL]));

    // The connectors given to `serve --connectors` are installed: --all takes the others.
    let out = ok(&junction.run(&["connector", "install", "--all"]));
    assert_eq!(
        out,
        "[1/2] installed minimal 0.1.0\n[2/2] installed versioned 1.0.0\ninstalled 2, failed 0\n"
    );
    let out = ok(&junction.run(&["connector", "install", "--all"]));
    assert_eq!(
        out,
        "Nothing to install: every published connector is installed.\n"
    );

    ok(&junction.run(&["connector", "publish", VERSIONED_2]));
    let out = ok(&junction.run(&["connector", "upgrade", "--all"]));
    assert_eq!(out, "upgraded versioned 1.0.0 → 2.0.0\n");

    ok(&junction.run(&["connector", "publish", VERSIONED_3]));
    let out = junction.run(&[
        "connector",
        "upgrade",
        "nosuch",
        "versioned@3.0.0-beta.1",
        "minimal",
    ]);
    let stderr = refused(&out);
    assert_eq!(
        text(&out.stdout),
        "[2/3] upgraded versioned 2.0.0 → 3.0.0-beta.1\nupgraded 1, failed 2\n"
    );
    assert!(
        stderr.contains("[1/3] error: nosuch: [not_found] "),
        "{stderr}"
    );
    assert!(
        stderr.contains("[3/3] error: minimal: [no_upgrade] "),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("error: 2 of 3 upgrades failed: nosuch, minimal\n"),
        "{stderr}"
    );
    let out = ok(&junction.run(&["connector", "upgrade", "--all"]));
    assert_eq!(
        out,
        "Nothing to upgrade: every installed connector is up to date.\n"
    );

    let out = junction.run(&["connector", "install", "--json", "minimal", "versioned"]);
    refused(&out);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "minimal");
    assert_eq!(items[0]["error"]["code"], "already_installed");
    assert_eq!(items[1]["error"]["code"], "already_installed");
}

#[test]
fn a_refused_component_is_reported_and_the_other_files_are_still_published() {
    let junction = Running::start("cli-catalog-refused");
    let missing = "/nonexistent/connector.wasm";
    let out = junction.run(&[
        "connector",
        "publish",
        VERSIONED_1,
        FUTURE_INTERFACE,
        missing,
        VERSIONED_2,
    ]);
    let stderr = refused(&out);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("[1/4] published versioned 1.0.0 ("),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("[4/4] published versioned 2.0.0 ("),
        "{stdout}"
    );
    assert_eq!(lines[2], "published 2, failed 2");
    let future = stderr
        .lines()
        .find(|l| l.starts_with("[2/4] error: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(future.contains(FUTURE_INTERFACE), "{stderr}");
    assert!(future.contains("[unsupported_interface] "), "{stderr}");
    // The message names the interface versions the service supports.
    assert!(future.contains("0.1.0"), "{stderr}");
    assert!(
        stderr.contains(&format!("[3/4] error: {missing}: cannot read {missing}")),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!(
            "error: 2 of 4 files failed: {FUTURE_INTERFACE}, {missing}\n"
        )),
        "{stderr}"
    );
    assert_eq!(
        junction.catalog_row("versioned"),
        ["versioned", "-", "2.0.0", "-"]
    );

    // Alone, the refusal is the command's error.
    let stderr = refused(&junction.run(&["connector", "publish", FUTURE_INTERFACE]));
    assert!(
        stderr.starts_with("error: [unsupported_interface] "),
        "{stderr}"
    );
}

#[test]
fn catalog_commands_need_an_operator_token() {
    let junction = Running::start("cli-catalog-tokens");
    let stderr = refused(&junction.run_with(&junction.tenant_token, &["connector", "list"], &[]));
    assert!(stderr.starts_with("error: [operator_only] "), "{stderr}");
    assert!(
        stderr.contains("junction admin create-operator"),
        "{stderr}"
    );
    let stderr = refused(&junction.run_with("", &["connector", "list"], &[]));
    assert!(stderr.starts_with("error: [unauthenticated] "), "{stderr}");
    assert!(
        stderr.contains("junction admin create-operator"),
        "{stderr}"
    );
    // Several items, but a refused token stops at the first.
    let out = junction.run_with(
        &junction.tenant_token,
        &["connector", "publish", VERSIONED_1, VERSIONED_2],
        &[],
    );
    let stderr = refused(&out);
    assert!(stderr.starts_with("error: [operator_only] "), "{stderr}");
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn policy_set_changes_what_show_prints_to_the_operator_and_the_tenant() {
    let junction = Running::start("cli-catalog-policy");
    let tenant = junction.tenant_id.as_str();

    let shown = ok(&junction.run(&["policy", "show", "--tenant", tenant]));
    assert!(
        shown.starts_with(&format!("tenant:      {tenant}\n")),
        "{shown}"
    );
    assert!(
        shown.contains("enabled:     every installed connector\n"),
        "{shown}"
    );
    assert!(shown.contains("disabled:    -\n"), "{shown}");

    let set = ok(&junction.run(&[
        "policy",
        "set",
        "--tenant",
        tenant,
        "--disable",
        "github",
        "--allow-auth",
        "http=bearer,api_key",
    ]));
    assert!(
        set.starts_with(&format!("Updated the policy of tenant {tenant}:\n")),
        "{set}"
    );
    assert!(set.contains("disabled:    github\n"), "{set}");
    assert!(
        set.contains("auth types:  http: api_key, bearer\n"),
        "{set}"
    );

    let policy = json(&junction.run(&["policy", "show", "--tenant", tenant, "--json"]));
    assert_eq!(policy["disabled_connectors"], serde_json::json!(["github"]));
    assert_eq!(policy["enabled_connectors"], Value::Null);
    assert_eq!(
        policy["allowed_auth_types"],
        serde_json::json!({"http": ["api_key", "bearer"]})
    );
    // The tenant reads its own policy with its own token, without --tenant.
    let own = ok(&junction.run_with(&junction.tenant_token, &["policy", "show"], &[]));
    assert!(own.contains("disabled:    github\n"), "{own}");

    let policy = json(&junction.run(&[
        "policy",
        "set",
        "--tenant",
        tenant,
        "--enable",
        "github",
        "--enable-only",
        "http,github",
        "--allow-auth",
        "http=all",
        "--allow-auth",
        "*=oauth2_code",
        "--json",
    ]));
    assert_eq!(policy["disabled_connectors"], serde_json::json!([]));
    assert_eq!(
        policy["enabled_connectors"],
        serde_json::json!(["github", "http"])
    );
    assert_eq!(
        policy["allowed_auth_types"],
        serde_json::json!({"*": ["oauth2_code"]})
    );
    let set = ok(&junction.run(&["policy", "set", "--tenant", tenant, "--enable-all"]));
    assert!(
        set.contains("enabled:     every installed connector\n"),
        "{set}"
    );
    assert!(set.contains("auth types:  *: oauth2_code\n"), "{set}");

    // A file replaces the policy; then the flags apply.
    let file = junction.service.data_dir.join("policy.json");
    std::fs::write(
        &file,
        r#"{"disabled_connectors": ["probe"], "oauth_apps": [], "tenant_id": "ten_other"}"#,
    )
    .unwrap();
    let policy = json(&junction.run(&[
        "policy",
        "set",
        "--tenant",
        tenant,
        "--file",
        file.to_str().unwrap(),
        "--disable",
        "http",
        "--json",
    ]));
    assert_eq!(
        policy["disabled_connectors"],
        serde_json::json!(["http", "probe"])
    );
    assert_eq!(policy["allowed_auth_types"], serde_json::json!({}));

    let stderr = refused(&junction.run(&[
        "policy",
        "set",
        "--tenant",
        tenant,
        "--allow-auth",
        "http=telepathy",
    ]));
    assert!(stderr.starts_with("error: [invalid_policy] "), "{stderr}");
    assert!(stderr.contains("telepathy"), "{stderr}");

    std::fs::write(&file, r#"{"disabled": ["probe"]}"#).unwrap();
    let stderr = refused(&junction.run(&[
        "policy",
        "set",
        "--tenant",
        tenant,
        "--file",
        file.to_str().unwrap(),
    ]));
    assert!(stderr.contains("is not a policy"), "{stderr}");

    let stderr = refused(&junction.run_with(
        &junction.tenant_token,
        &["policy", "show", "--tenant", tenant],
        &[],
    ));
    assert!(stderr.starts_with("error: [operator_only] "), "{stderr}");
    let stderr = refused(&junction.run(&["policy", "show"]));
    assert!(
        stderr.starts_with("error: [tenant_token_required] "),
        "{stderr}"
    );
    assert!(stderr.contains("--tenant"), "{stderr}");
    let stderr = refused(&junction.run(&["policy", "show", "--tenant", "ten_nosuch"]));
    assert!(stderr.starts_with("error: [not_found] "), "{stderr}");
}

#[test]
fn oauth_app_set_takes_the_secret_from_the_environment_or_a_file_and_never_prints_it() {
    let junction = Running::start("cli-catalog-oauth-app");
    let tenant = junction.tenant_id.as_str();
    let secret = "gh-client-secret-NeverPrinted-1234";
    let env = [("GH_APP_SECRET_FOR_TEST", secret)];
    let mut printed = String::new();

    let out = junction.run_with(
        &junction.operator,
        &[
            "policy",
            "oauth-app",
            "set",
            "--tenant",
            tenant,
            "--connector",
            "github",
            "--client-id",
            "Iv1.cli-test",
            "--client-secret-env",
            "GH_APP_SECRET_FOR_TEST",
            "--scope",
            "repo",
            "--scope",
            "read:org",
        ],
        &env,
    );
    let set = ok(&out);
    printed.push_str(&set);
    printed.push_str(&text(&out.stderr));
    assert!(
        set.starts_with(&format!(
            "Set the OAuth app of tenant {tenant} for github: client id Iv1.cli-test, scopes \
             read:org repo, client secret set"
        )) || set.starts_with(&format!(
            "Set the OAuth app of tenant {tenant} for github: client id Iv1.cli-test, scopes \
             repo read:org, client secret set"
        )),
        "{set}"
    );

    let file = junction.service.data_dir.join("client-secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let out = junction.run(&[
        "policy",
        "oauth-app",
        "set",
        "--tenant",
        tenant,
        "--connector",
        "github",
        "--client-id",
        "Iv1.cli-test-2",
        "--client-secret-file",
        file.to_str().unwrap(),
        "--json",
    ]);
    let app = json(&out);
    printed.push_str(&app.to_string());
    printed.push_str(&text(&out.stderr));
    assert_eq!(app["client_id"], "Iv1.cli-test-2");
    assert_eq!(app["client_secret_set"], true);

    // A connector that builds its OAuth endpoints from a field (probe: `{issuer}/token`)
    // takes an app only with that field fixed.
    let probe_app = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "oauth-app",
            "set",
            "--tenant",
            tenant,
            "--connector",
            "probe",
            "--client-id",
            "machine",
            "--client-secret-env",
            "GH_APP_SECRET_FOR_TEST",
        ];
        args.extend_from_slice(extra);
        junction.run_with(&junction.operator, &args, &env)
    };
    let stderr = refused(&probe_app(&[]));
    assert!(
        stderr.contains("field `issuer`") && !stderr.contains(secret),
        "{stderr}"
    );
    let set = ok(&probe_app(&[
        "--endpoint-field",
        "issuer=http://127.0.0.1:9",
    ]));
    assert!(
        set.contains("endpoints from issuer=http://127.0.0.1:9"),
        "{set}"
    );
    printed.push_str(&set);
    ok(&junction.run(&[
        "policy",
        "oauth-app",
        "remove",
        "--tenant",
        tenant,
        "--connector",
        "probe",
    ]));

    for (token, args) in [
        (
            &junction.operator,
            &["policy", "show", "--tenant", tenant][..],
        ),
        (
            &junction.operator,
            &["policy", "show", "--tenant", tenant, "--json"],
        ),
        (&junction.tenant_token, &["policy", "show"]),
        (&junction.tenant_token, &["policy", "show", "--json"]),
    ] {
        let out = junction.run_with(token, args, &[]);
        let shown = ok(&out);
        printed.push_str(&shown);
        if !args.contains(&"--json") {
            assert!(
                shown.contains("oauth apps:  github: client id Iv1.cli-test-2, "),
                "{shown}"
            );
        }
    }

    // There is no flag for the secret itself, and a missing variable is named.
    let out = junction.run(&[
        "policy",
        "oauth-app",
        "set",
        "--tenant",
        tenant,
        "--connector",
        "github",
        "--client-id",
        "x",
        "--client-secret",
        secret,
    ]);
    printed.push_str(&refused(&out));
    let stderr = refused(&junction.run(&[
        "policy",
        "oauth-app",
        "set",
        "--tenant",
        tenant,
        "--connector",
        "github",
        "--client-id",
        "x",
        "--client-secret-env",
        "UNSET_SECRET_VARIABLE_FOR_TEST",
    ]));
    assert!(
        stderr.contains(
            "environment variable `UNSET_SECRET_VARIABLE_FOR_TEST` (--client-secret-env) is not set"
        ),
        "{stderr}"
    );

    let out = ok(&junction.run(&[
        "policy",
        "oauth-app",
        "remove",
        "--tenant",
        tenant,
        "--connector",
        "github",
    ]));
    assert_eq!(
        out,
        format!("Removed the OAuth app of tenant {tenant} for github.\n")
    );
    let shown = ok(&junction.run(&["policy", "show", "--tenant", tenant]));
    assert!(shown.contains("oauth apps:  -\n"), "{shown}");
    let stderr = refused(&junction.run(&[
        "policy",
        "oauth-app",
        "remove",
        "--tenant",
        tenant,
        "--connector",
        "github",
    ]));
    assert!(stderr.starts_with("error: [not_found] "), "{stderr}");

    assert!(
        !printed.contains(secret),
        "the secret was printed:\n{printed}"
    );
}
