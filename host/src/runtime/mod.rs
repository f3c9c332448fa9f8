//! The wasmtime runtime: one engine with the pooling allocator and epoch interruption, a
//! linker with the host capabilities, loading and validating components (compiled, or mapped
//! from precompiled artifacts), and invocations in a fresh, limited store each.

mod artifacts;
pub mod bindings;
pub mod connection;
pub(crate) mod cpu;
mod error;
pub mod limits;
pub mod manifest;
pub mod slots;
pub(crate) mod state;

pub use artifacts::{ArtifactCache, LoadOrigin};
pub use connection::{ConnectionError, ConnectionSpec, PreparedConnection};
pub use error::{ConnectorError, InvokeError, LoadError};
pub use limits::{ConnectorId, LimitExceeded, Limits};
pub use manifest::Manifest;

use crate::capabilities::{self, http::HttpClient, wasi::CapturedOutput};
use crate::egress::EgressPolicy;
use bindings::v0_1_0;
use slots::{FairSlots, SlotOwner};
use state::{ConnectorInfo, Environment, InvocationState};

/// The owner of invocations whose connection names none (the command line's).
static LOCAL_OWNER: std::sync::LazyLock<SlotOwner> =
    std::sync::LazyLock::new(|| Arc::from("local"));
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Store, UpdateDeadline};

/// How often the epoch advances; the granularity of the CPU limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sizing of the engine, fixed for the life of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Invocations that may run at once; more wait for a free slot.
    pub max_instances: u32,
    /// The largest memory limit any [`Limits`] of this engine may ask for.
    pub max_memory_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_instances: 100,
            max_memory_bytes: 256 << 20,
        }
    }
}

/// A fault of the engine itself.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    #[error(
        "the memory limit ({limit} bytes) exceeds the engine's maximum ({max} bytes); raise EngineOptions::max_memory_bytes"
    )]
    MemoryAboveEngineMax { limit: usize, max: usize },
}

struct Shared {
    engine: wasmtime::Engine,
    linker: Linker<InvocationState>,
    slots: Arc<FairSlots>,
    max_memory_bytes: usize,
}

/// Runs connector components. Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
    env: Arc<Environment>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.env.limits)
            .finish()
    }
}

/// A loaded connector version, ready to instantiate.
#[derive(Clone)]
pub struct Connector {
    info: Arc<ConnectorInfo>,
    interface: &'static str,
    pre: v0_1_0::ConnectorPre<InvocationState>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("id", &self.info.id)
            .finish()
    }
}

impl Connector {
    pub fn id(&self) -> &ConnectorId {
        &self.info.id
    }
    pub fn manifest(&self) -> &Manifest {
        &self.info.manifest
    }
    /// The `junction:connector` interface version the component was built for.
    pub fn interface_version(&self) -> &'static str {
        self.interface
    }
    /// Checks a connection against this connector.
    pub fn prepare(&self, spec: &ConnectionSpec) -> Result<Arc<PreparedConnection>, InvokeError> {
        PreparedConnection::prepare(&self.info.manifest, spec)
            .map(Arc::new)
            .map_err(|error| InvokeError::Connection {
                connector: self.info.id.clone(),
                error,
            })
    }
}

fn engine_config(options: &EngineOptions) -> wasmtime::Config {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    let n = options.max_instances.max(1);
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n)
        .max_core_instances_per_component(16)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(options.max_memory_bytes)
        // Keep the low pages of a reused slot resident instead of returning them to the
        // kernel, and (on Linux 6.7+) reset only the pages the last instance dirtied, found
        // with the PAGEMAP_SCAN ioctl: reuse is neither page faults nor a blind memset.
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch until the engine is dropped.
fn start_epoch_ticker(engine: &wasmtime::Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("junction-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch thread; CPU limits will not fire");
    }
}

/// What a call into the guest is.
enum Call<'a> {
    Manifest,
    Execute { action: &'a str, input: &'a str },
    TestConnection,
}

enum Returned {
    Manifest(Box<v0_1_0::junction::connector::types::ConnectorManifest>),
    Execute(String),
    Unit,
}

impl Runtime {
    /// A runtime with its own engine; its connectors' requests are checked against `egress`.
    pub fn new(
        options: EngineOptions,
        limits: Limits,
        egress: Arc<EgressPolicy>,
    ) -> Result<Self, RuntimeError> {
        if limits.memory_bytes > options.max_memory_bytes {
            return Err(RuntimeError::MemoryAboveEngineMax {
                limit: limits.memory_bytes,
                max: options.max_memory_bytes,
            });
        }
        let engine = wasmtime::Engine::new(&engine_config(&options)).map_err(|e| {
            RuntimeError::Engine(format!(
                "{e:#}. The instance pool reserves address space (not memory) for {} instances \
                 of up to 4 GiB each; lower the instance count, or allow more virtual memory \
                 (`ulimit -v`, vm.overcommit_memory)",
                options.max_instances
            ))
        })?;
        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        start_epoch_ticker(&engine);
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                linker,
                slots: FairSlots::new(options.max_instances.max(1) as usize),
                max_memory_bytes: options.max_memory_bytes,
            }),
            env: Arc::new(Environment {
                client: HttpClient::new(limits.connect_timeout, egress.clone()),
                egress,
                limits,
            }),
        })
    }

    /// The same engine with other limits, and an outbound HTTP client of its own (its
    /// connection pool lives on the async runtime that first uses it).
    pub fn with_limits(&self, limits: Limits) -> Result<Self, RuntimeError> {
        if limits.memory_bytes > self.shared.max_memory_bytes {
            return Err(RuntimeError::MemoryAboveEngineMax {
                limit: limits.memory_bytes,
                max: self.shared.max_memory_bytes,
            });
        }
        let egress = self.env.egress.clone();
        Ok(Self {
            shared: self.shared.clone(),
            env: Arc::new(Environment {
                client: HttpClient::new(limits.connect_timeout, egress.clone()),
                egress,
                limits,
            }),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.env.limits
    }

    /// The same engine and limits under another egress policy, with an outbound HTTP
    /// client of its own.
    pub fn with_egress(&self, egress: Arc<EgressPolicy>) -> Self {
        Self {
            shared: self.shared.clone(),
            env: Arc::new(Environment {
                client: HttpClient::new(self.env.limits.connect_timeout, egress.clone()),
                egress,
                limits: self.env.limits.clone(),
            }),
        }
    }

    /// The egress policy its connectors' requests are checked against.
    pub fn egress(&self) -> &Arc<EgressPolicy> {
        &self.env.egress
    }

    /// Connector instances running now (in this engine, across its runtimes).
    pub fn active_instances(&self) -> usize {
        self.shared.slots.in_use()
    }

    /// Invocations waiting for an instance slot now.
    pub fn queued_invocations(&self) -> usize {
        self.shared.slots.waiting()
    }

    /// Loads a component from a file.
    pub async fn load_file(&self, path: &Path) -> Result<Connector, LoadError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.display().to_string(),
                source,
            })?;
        self.load(bytes, &path.display().to_string()).await
    }

    /// Compiles and validates a component: it must be a component, export a supported
    /// version of `junction:connector/guest`, import nothing the sandbox lacks, and return a
    /// consistent manifest. Compilation runs on a blocking thread, off the async workers.
    pub async fn load(&self, bytes: Vec<u8>, source_name: &str) -> Result<Connector, LoadError> {
        let component = self.compile(bytes, source_name).await?;
        self.finish(component, source_name).await
    }

    /// Compiles a component's bytes on a blocking thread.
    async fn compile(&self, bytes: Vec<u8>, source_name: &str) -> Result<Component, LoadError> {
        check_header(&bytes, source_name)?;
        let engine = self.shared.engine.clone();
        let compiled = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| LoadError::Corrupt {
                source_name: source_name.to_owned(),
                detail: format!("compilation did not finish: {e}"),
            })?;
        compiled.map_err(|e| LoadError::Corrupt {
            source_name: source_name.to_owned(),
            detail: format!("{e:#}"),
        })
    }

    /// Validates a compiled (or deserialised) component and makes it a [`Connector`]: the
    /// interface version it exports, its imports against the linker, its exports, then its
    /// manifest, called in a sandbox like any invocation and checked.
    async fn finish(
        &self,
        component: Component,
        source_name: &str,
    ) -> Result<Connector, LoadError> {
        let name = source_name.to_owned();
        let interface = self.interface_version(&component, &name)?;
        let instance_pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::UnsupportedImport {
                source_name: name.clone(),
                detail: format!("{e:#}"),
            })?;
        let pre =
            v0_1_0::ConnectorPre::new(instance_pre).map_err(|e| LoadError::MissingExport {
                source_name: name.clone(),
                detail: format!("{e:#}"),
            })?;
        let provisional = Connector {
            info: Arc::new(ConnectorInfo {
                id: ConnectorId {
                    name: name.clone(),
                    version: "unknown".into(),
                },
                manifest: empty_manifest(),
            }),
            interface,
            pre,
        };
        let none = Arc::new(
            PreparedConnection::prepare(provisional.manifest(), &ConnectionSpec::default())
                .map_err(|e| LoadError::ManifestCall {
                    source_name: name.clone(),
                    detail: e.to_string(),
                })?,
        );
        let raw = match self.call(&provisional, none, Call::Manifest).await {
            Ok(Returned::Manifest(m)) => m,
            other => {
                let detail = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => mismatched_return(provisional.id()).to_string(),
                };
                return Err(LoadError::ManifestCall {
                    source_name: name,
                    detail,
                });
            }
        };
        let (manifest, problems) = bindings::manifest_from_v1(*raw);
        manifest
            .validate(problems)
            .map_err(|error| LoadError::Manifest {
                source_name: name.clone(),
                error,
            })?;
        Ok(Connector {
            info: Arc::new(ConnectorInfo {
                id: ConnectorId {
                    name: manifest.name.clone(),
                    version: manifest.version.clone(),
                },
                manifest,
            }),
            interface,
            pre: provisional.pre,
        })
    }

    fn interface_version(
        &self,
        component: &Component,
        name: &str,
    ) -> Result<&'static str, LoadError> {
        let ty = component.component_type();
        let found = ty
            .exports(&self.shared.engine)
            .find_map(|(export, _)| export.strip_prefix(bindings::GUEST_EXPORT_PREFIX))
            .map(str::to_owned);
        let Some(found) = found else {
            return Err(LoadError::WrongWorld {
                source_name: name.to_owned(),
            });
        };
        bindings::SUPPORTED_INTERFACES
            .iter()
            .find(|v| **v == found)
            .copied()
            .ok_or_else(|| LoadError::UnsupportedInterface {
                source_name: name.to_owned(),
                found,
                supported: bindings::SUPPORTED_INTERFACES.join(", "),
            })
    }

    /// Runs `action` with `input` (JSON) over `connection`; returns the output (JSON).
    pub async fn execute(
        &self,
        connector: &Connector,
        connection: Arc<PreparedConnection>,
        action: &str,
        input: &str,
    ) -> Result<String, InvokeError> {
        match self
            .call(connector, connection, Call::Execute { action, input })
            .await?
        {
            Returned::Execute(output) => Ok(output),
            _ => Err(mismatched_return(connector.id())),
        }
    }

    /// Runs the connector's `test-connection`.
    pub async fn test_connection(
        &self,
        connector: &Connector,
        connection: Arc<PreparedConnection>,
    ) -> Result<(), InvokeError> {
        match self
            .call(connector, connection, Call::TestConnection)
            .await?
        {
            Returned::Unit => Ok(()),
            _ => Err(mismatched_return(connector.id())),
        }
    }

    /// One invocation: a fresh store and instance, the call, the limits around it.
    async fn call(
        &self,
        connector: &Connector,
        connection: Arc<PreparedConnection>,
        call: Call<'_>,
    ) -> Result<Returned, InvokeError> {
        let id = connector.id();
        let owner = connection
            .owner()
            .cloned()
            .unwrap_or_else(|| LOCAL_OWNER.clone());
        let _slot = self
            .shared
            .slots
            .acquire(&owner, self.env.limits.queue_wait)
            .await
            .map_err(|error| InvokeError::Busy {
                connector: id.clone(),
                error,
            })?;
        let state =
            InvocationState::new(connector.info.clone(), self.env.clone(), connection.clone());
        let clock = state.cpu_clock();
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|s| &mut s.memory);
        let cpu = self.env.limits.cpu_time;
        let wall = self.env.limits.wall_time;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if ctx.data().guest_time() >= cpu {
                Err(limits::LimitExceeded::CpuTime(cpu).into())
            } else if ctx.data().wall_time() >= wall {
                // A busy guest meets its wall-clock limit here, at the next tick, whenever
                // the executor gets round to the timer below.
                Err(limits::LimitExceeded::WallTime(wall).into())
            } else {
                // Yield so that a busy guest shares its thread and the wall-clock timeout
                // can fire.
                Ok(UpdateDeadline::Yield(1))
            }
        });

        // Only the time this future is polled counts against the CPU limit.
        let run = cpu::Timed::guest(
            async {
                let instance = connector.pre.instantiate_async(&mut store).await?;
                let guest = instance.junction_connector_guest();
                wasmtime::Result::Ok(match call {
                    Call::Manifest => Ok(Returned::Manifest(Box::new(
                        guest.call_manifest(&mut store).await?,
                    ))),
                    Call::Execute { action, input } => guest
                        .call_execute(&mut store, action, input)
                        .await?
                        .map(Returned::Execute),
                    Call::TestConnection => guest
                        .call_test_connection(&mut store)
                        .await?
                        .map(|()| Returned::Unit),
                })
            },
            &clock,
        );
        let outcome = tokio::time::timeout(wall, run).await;
        let output = store.data_mut().take_output();
        drop(store);
        if let Some(output) = &output {
            output.flush_to_log(id, &connection);
        }
        match outcome {
            Err(_) => Err(InvokeError::LimitExceeded {
                connector: id.clone(),
                limit: limits::LimitExceeded::WallTime(wall),
            }),
            Ok(Ok(Ok(returned))) => Ok(returned),
            Ok(Ok(Err(error))) => Err(InvokeError::Connector {
                connector: id.clone(),
                error: error.into(),
            }),
            Ok(Err(trap)) => Err(classify_trap(id, &trap, output.as_ref(), &connection)),
        }
    }
}

fn classify_trap(
    id: &ConnectorId,
    error: &wasmtime::Error,
    output: Option<&CapturedOutput>,
    connection: &PreparedConnection,
) -> InvokeError {
    if let Some(limit) = error.downcast_ref::<limits::LimitExceeded>() {
        return InvokeError::LimitExceeded {
            connector: id.clone(),
            limit: limit.clone(),
        };
    }
    if let Some(failure) = error.downcast_ref::<crate::credentials::CredentialFailure>() {
        return InvokeError::Credentials {
            connector: id.clone(),
            failure: failure.clone(),
        };
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        let message = match output.and_then(|o| o.panic_message(connection)) {
            Some(panic) => format!("{panic} ({trap})"),
            None => trap.to_string(),
        };
        return InvokeError::Trap {
            connector: id.clone(),
            message,
        };
    }
    InvokeError::Host {
        connector: id.clone(),
        message: format!("{error:#}"),
    }
}

/// `call` returns the variant matching its `Call`; anything else is a bug in this module,
/// reported as a host error rather than a panic.
fn mismatched_return(id: &ConnectorId) -> InvokeError {
    InvokeError::Host {
        connector: id.clone(),
        message: "internal error: a guest call returned the result of another call".into(),
    }
}

fn empty_manifest() -> Manifest {
    Manifest {
        name: String::new(),
        version: String::new(),
        title: String::new(),
        description: String::new(),
        release: manifest::Release::Preview,
        docs: String::new(),
        auth_schemes: vec![manifest::AuthScheme {
            id: "none".into(),
            title: String::new(),
            kind: manifest::AuthKind::None,
        }],
        fields: Vec::new(),
        allowed_hosts: Vec::new(),
        reveal_fields: Vec::new(),
        actions: Vec::new(),
        triggers: Vec::new(),
    }
}

/// Tells a core module, a component and something else apart from the first bytes.
fn check_header(bytes: &[u8], name: &str) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Err(if bytes.is_empty() || MAGIC.starts_with(bytes) {
            LoadError::Corrupt {
                source_name: name.to_owned(),
                detail: format!("the file is {} bytes long", bytes.len()),
            }
        } else {
            LoadError::NotWasm {
                source_name: name.to_owned(),
            }
        });
    }
    match bytes.get(4..8) {
        Some([0x01, 0x00, 0x00, 0x00]) => Err(LoadError::NotAComponent {
            source_name: name.to_owned(),
        }),
        Some([_, _, 0x01, 0x00]) => Ok(()),
        _ => Err(LoadError::Corrupt {
            source_name: name.to_owned(),
            detail: "the header is cut short or has an unknown version".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_modules_components_and_other_files_apart() {
        let n = "x.wasm";
        assert!(matches!(
            check_header(b"", n),
            Err(LoadError::Corrupt { .. })
        ));
        assert!(matches!(
            check_header(b"\0as", n),
            Err(LoadError::Corrupt { .. })
        ));
        assert!(matches!(
            check_header(b"PK\x03\x04zip", n),
            Err(LoadError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0", n),
            Err(LoadError::NotAComponent { .. })
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0", n).is_ok());
        assert!(matches!(
            check_header(b"\0asm\x0d", n),
            Err(LoadError::Corrupt { .. })
        ));
    }
}
