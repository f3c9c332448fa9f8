//! The WASI a connector gets: enough for Rust's standard library, nothing that reaches the
//! world. No preopened directory (so no file can be named), no environment variable, no
//! argument, no socket or name lookup, an empty stdin. Stdout and stderr are captured in
//! memory and written to the log, tagged with the connector and with the connection's
//! secrets scrubbed, when the invocation ends.

use crate::runtime::connection::PreparedConnection;
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
    /// Each pipe's capacity: a full pipe's last line may be cut.
    capacity: usize,
}

/// A WASI context with nothing in it, and the pipes that capture its output.
pub fn sandbox(output_bytes: usize) -> (WasiCtx, CapturedOutput) {
    let output = CapturedOutput {
        stdout: MemoryOutputPipe::new(output_bytes),
        stderr: MemoryOutputPipe::new(output_bytes),
        capacity: output_bytes,
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

/// Captured bytes as text, the connection's secrets replaced. A pipe that filled up ends
/// where the guest's writes were cut, perhaps in the middle of a secret the scrubber would
/// then not recognise: its last, unfinished line is left out.
fn scrubbed(bytes: &[u8], capacity: usize, connection: &PreparedConnection) -> String {
    let kept = if bytes.len() >= capacity {
        bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(&bytes[..0], |end| &bytes[..=end])
    } else {
        bytes
    };
    connection.scrub_str(String::from_utf8_lossy(kept).into_owned())
}

impl CapturedOutput {
    /// Writes what the guest printed to the log, one event per line, without `connection`'s
    /// secrets.
    pub fn flush_to_log(&self, connector: &ConnectorId, connection: &PreparedConnection) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = scrubbed(&pipe.contents(), self.capacity, connection);
            for line in text.lines() {
                if !line.trim().is_empty() {
                    tracing::info!(target: "junction::guest", connector = %connector, stream, "{line}");
                }
            }
        }
    }

    /// The message of a Rust panic, if the guest printed one to stderr, without
    /// `connection`'s secrets.
    pub fn panic_message(&self, connection: &PreparedConnection) -> Option<String> {
        let text = scrubbed(&self.stderr.contents(), self.capacity, connection);
        let start = text.find("panicked at ")?;
        let message: Vec<&str> = text[start..]
            .lines()
            .take_while(|l| !l.starts_with("note: "))
            .map(str::trim)
            .collect();
        Some(message.join(" "))
    }
}
