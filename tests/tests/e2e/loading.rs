//! Loading validates a component and says what is wrong in terms a person can act on.

use junction::runtime::LoadError;
use junction_tests::components::*;
use junction_tests::runtime;
use std::path::Path;

async fn load_error(bytes: Vec<u8>) -> LoadError {
    runtime().load(bytes, "candidate.wasm").await.unwrap_err()
}

async fn load_file_error(path: &str) -> LoadError {
    runtime().load_file(Path::new(path)).await.unwrap_err()
}

#[tokio::test]
async fn first_party_connectors_load_with_consistent_manifests() {
    let github = junction_tests::connector(GITHUB).await;
    let m = github.manifest();
    assert_eq!(github.id().to_string(), "github@0.1.0");
    assert_eq!(github.interface_version(), "0.1.0");
    assert!(m.actions.len() >= 5, "GitHub has at least five actions");
    assert!(m.field("token").unwrap().secret);
    assert!(!m.field("base_url").unwrap().secret);
    assert_eq!(m.allowed_hosts, vec!["{base_url}"]);
    let list = m.action("list-repositories").unwrap();
    assert_eq!(list.input_schema["type"], "object");
    assert!(list.input_schema["properties"]["limit"].is_object());
    assert!(!m.docs.is_empty());

    let http = junction_tests::connector(HTTP).await;
    assert_eq!(http.manifest().name, "http");
    assert!(http.manifest().action("request").is_some());
}

#[tokio::test]
async fn a_file_that_is_not_wasm_is_refused() {
    let e = load_error(b"{\"not\": \"wasm\"}".to_vec()).await;
    assert!(matches!(e, LoadError::NotWasm { .. }), "{e}");
    assert!(e.to_string().contains("wasm32-wasip2"), "{e}");
}

#[tokio::test]
async fn a_core_module_is_refused_as_not_a_component() {
    // The smallest valid core module: magic and version 1.
    let e = load_error(b"\0asm\x01\0\0\0".to_vec()).await;
    assert!(matches!(e, LoadError::NotAComponent { .. }), "{e}");
    assert!(e.to_string().contains("not a component"), "{e}");
}

#[tokio::test]
async fn a_truncated_component_is_refused_as_corrupt() {
    let mut bytes = std::fs::read(PROBE).unwrap();
    bytes.truncate(bytes.len() / 2);
    let e = load_error(bytes).await;
    assert!(matches!(e, LoadError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("truncated or corrupt"), "{e}");
    let e = load_error(Vec::new()).await;
    assert!(matches!(e, LoadError::Corrupt { .. }), "{e}");
}

#[tokio::test]
async fn a_component_of_another_world_is_not_a_connector() {
    let e = load_file_error(WRONG_WORLD).await;
    assert!(matches!(e, LoadError::WrongWorld { .. }), "{e}");
    assert!(e.to_string().contains("export_connector!"), "{e}");
}

#[tokio::test]
async fn a_component_for_an_unsupported_interface_names_the_supported_ones() {
    let e = load_file_error(FUTURE_INTERFACE).await;
    match &e {
        LoadError::UnsupportedInterface {
            found, supported, ..
        } => {
            assert_eq!(found, "9.0.0");
            assert_eq!(supported, "0.1.0");
        }
        other => panic!("expected UnsupportedInterface, got {other}"),
    }
}

#[tokio::test]
async fn a_malformed_manifest_is_refused_with_every_problem_named() {
    let e = load_file_error(BAD_MANIFEST).await;
    let LoadError::Manifest { error, .. } = &e else {
        panic!("expected a manifest error, got {e}");
    };
    let text = e.to_string();
    assert_eq!(error.problems.len(), 5, "{text}");
    for expected in [
        "name `Bad Name` must be kebab-case",
        "version `first` is not a semantic version",
        "action `same` is declared twice",
        "field `token`, which must be secret",
        "uses field `nowhere`, which is not declared",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
}

#[tokio::test]
async fn a_missing_file_is_named() {
    let e = load_file_error("/nonexistent/connector.wasm").await;
    assert!(matches!(e, LoadError::Read { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/connector.wasm"));
}

#[tokio::test]
async fn a_component_missing_part_of_the_interface_is_told_what_is_missing() {
    let e = load_file_error(INCOMPLETE_GUEST).await;
    assert!(matches!(e, LoadError::MissingExport { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("does not implement the connector interface"),
        "{text}"
    );
    assert!(
        text.contains("execute") || text.contains("manifest"),
        "{text}"
    );
}
