//! Captures everything the host logs, at trace level for Junction's own targets, so tests
//! can search it for secrets.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static CAPTURED: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(c) = CAPTURED.get()
            && let Ok(mut c) = c.lock()
        {
            c.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test binary).
pub fn install() {
    if CAPTURED.set(Mutex::new(Vec::new())).is_err() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::new(
        "info,junction=trace,junction::guest=trace,hyper=debug,hyper_util=debug",
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| Sink)
        .try_init();
}

/// Everything logged so far by this test binary.
pub fn captured() -> String {
    CAPTURED
        .get()
        .map(|c| {
            String::from_utf8_lossy(&c.lock().map(|g| g.clone()).unwrap_or_default()).into_owned()
        })
        .unwrap_or_default()
}
