//! End-to-end tests: real components built by the artifacts step, run by the real runtime
//! against HTTP servers started on loopback.

#![allow(clippy::unwrap_used)]

mod egress;
mod github;
mod http_capability;
mod loading;
mod sandbox;
mod secrets;

use junction::runtime::{InvokeError, Limits};
use std::time::Duration;

/// The probe answers `echo` after whatever happened before: the host goes on serving.
async fn host_still_serves() {
    let runtime = junction_tests::runtime_with(Limits::default());
    let probe = junction_tests::connector(junction_tests::components::PROBE).await;
    let conn = junction_tests::connection(&probe, serde_json::json!({"auth": "none"}));
    let out = runtime
        .execute(&probe, conn, "echo", r#"{"value": {"still": "here"}}"#)
        .await
        .unwrap();
    assert_eq!(out, r#"{"still":"here"}"#);
}

fn limits() -> Limits {
    Limits {
        wall_time: Duration::from_secs(20),
        ..Limits::default()
    }
}

fn code(e: &InvokeError) -> String {
    e.code()
}
