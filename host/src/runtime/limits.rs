//! Resource limits. All are on by default; an operator can tighten or loosen them.

use std::fmt;
use std::time::Duration;

/// Limits applied to every invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time the guest may spend running its own code (time in host calls excluded),
    /// enforced with epoch interruption.
    pub cpu_time: Duration,
    /// Time the whole invocation may take, host calls included.
    pub wall_time: Duration,
    /// Linear memory the guest may grow to.
    pub memory_bytes: usize,
    /// Size of one outbound response body.
    pub response_bytes: usize,
    /// Outbound requests per invocation (each redirect hop counts).
    pub requests: u32,
    /// Time to establish an outbound connection.
    pub connect_timeout: Duration,
    /// Time to wait for an outbound response, and then for its body.
    pub read_timeout: Duration,
    /// Redirect hops followed per request.
    pub redirects: u8,
    /// Bytes of guest log and stdout/stderr kept per invocation.
    pub log_bytes: usize,
    /// Time an invocation may wait for a free instance slot before it is refused as busy.
    pub queue_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_secs(5),
            wall_time: Duration::from_secs(60),
            memory_bytes: 64 << 20,
            response_bytes: 10 << 20,
            requests: 50,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            redirects: 5,
            log_bytes: 64 << 10,
            queue_wait: Duration::from_secs(30),
        }
    }
}

/// The limit an invocation hit. Raised as a trap inside the store, reported as
/// [`crate::runtime::InvokeError::LimitExceeded`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("CPU time limit of {0:?}")]
    CpuTime(Duration),
    #[error("wall-clock time limit of {0:?}")]
    WallTime(Duration),
    #[error("memory limit of {} MiB", .0 >> 20)]
    Memory(usize),
    #[error("response size limit of {0} bytes")]
    ResponseSize(usize),
    #[error("limit of {0} outbound requests per invocation")]
    Requests(u32),
}

impl LimitExceeded {
    /// A stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::CpuTime(_) => "cpu_time",
            Self::WallTime(_) => "wall_time",
            Self::Memory(_) => "memory",
            Self::ResponseSize(_) => "response_size",
            Self::Requests(_) => "requests",
        }
    }
}

/// `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorId {
    pub name: String,
    pub version: String,
}

impl fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}
