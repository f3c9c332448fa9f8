//! The WASI a connector gets: enough for Rust's standard library, nothing that reaches the
//! world. No preopened directory (so no file can be named), no environment variable, no
//! argument, no socket or name lookup, an empty stdin. Stdout and stderr are captured in
//! memory and written to the log, tagged with the connector, when the invocation ends.

use crate::runtime::limits::ConnectorId;
use crate::runtime::state::InvocationState;
use wasmtime::component::Linker;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

pub fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
}

/// The guest's captured stdout and stderr.
#[derive(Debug, Clone)]
pub struct CapturedOutput {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

/// A WASI context with nothing in it, and the pipes that capture its output.
pub fn sandbox(output_bytes: usize) -> (WasiCtx, CapturedOutput) {
    let output = CapturedOutput {
        stdout: MemoryOutputPipe::new(output_bytes),
        stderr: MemoryOutputPipe::new(output_bytes),
    };
    let ctx = WasiCtxBuilder::new()
        .stdout(output.stdout.clone())
        .stderr(output.stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build();
    (ctx, output)
}

impl CapturedOutput {
    /// Writes what the guest printed to the log, one event per line.
    pub fn flush_to_log(&self, connector: &ConnectorId) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            for line in String::from_utf8_lossy(&bytes).lines() {
                if !line.trim().is_empty() {
                    tracing::info!(target: "junction::guest", connector = %connector, stream, "{line}");
                }
            }
        }
    }

    /// The message of a Rust panic, if the guest printed one to stderr.
    pub fn panic_message(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let start = text.find("panicked at ")?;
        let message: Vec<&str> = text[start..]
            .lines()
            .take_while(|l| !l.starts_with("note: "))
            .map(str::trim)
            .collect();
        Some(message.join(" "))
    }
}
