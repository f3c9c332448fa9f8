//! The data of one invocation's store. Built fresh for every invocation and dropped with
//! the store, so nothing carries over between invocations, connections or tenants.

use super::connection::PreparedConnection;
use super::cpu::CpuClock;
use super::limits::{ConnectorId, LimitExceeded, Limits};
use super::manifest::Manifest;
use crate::capabilities::connection::ConnectionView;
use crate::capabilities::http::{HttpClient, HttpView};
use crate::capabilities::log::LogView;
use crate::capabilities::wasi::{CapturedOutput, sandbox};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A loaded connector's identity and manifest, shared by all its invocations.
#[derive(Debug)]
pub(crate) struct ConnectorInfo {
    pub id: ConnectorId,
    pub manifest: Manifest,
}

/// What a runtime gives every invocation: the outbound client (under the egress policy)
/// and the limits.
#[derive(Debug)]
pub(crate) struct Environment {
    pub client: HttpClient,
    pub egress: Arc<crate::egress::EgressPolicy>,
    pub limits: Limits,
}

/// Caps linear memory growth and reports the cap as a typed limit.
#[derive(Debug)]
pub(crate) struct MemoryCap(pub usize);

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.0 {
            return Err(LimitExceeded::Memory(self.0).into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Store data of one invocation. Building it allocates little: three shared pointers and
/// an empty resource table. WASI is set up only if the guest uses it.
pub struct InvocationState {
    connector: Arc<ConnectorInfo>,
    env: Arc<Environment>,
    connection: Arc<PreparedConnection>,
    wasi: Option<WasiCtx>,
    output: Option<CapturedOutput>,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    cpu: Arc<CpuClock>,
    /// When the invocation got its slot: the wall-clock limit counts from here.
    started: Instant,
    requests_sent: u32,
    log_budget: usize,
}

impl InvocationState {
    pub(crate) fn new(
        connector: Arc<ConnectorInfo>,
        env: Arc<Environment>,
        connection: Arc<PreparedConnection>,
    ) -> Self {
        let memory = MemoryCap(env.limits.memory_bytes);
        let log_budget = env.limits.log_bytes;
        Self {
            connector,
            env,
            connection,
            wasi: None,
            output: None,
            table: ResourceTable::new(),
            memory,
            cpu: Arc::default(),
            started: Instant::now(),
            requests_sent: 0,
            log_budget,
        }
    }

    /// Time spent running guest code so far ([`CpuClock`]).
    pub(crate) fn guest_time(&self) -> Duration {
        self.cpu.guest_time()
    }

    /// Time since the invocation got its slot, host calls and waits included.
    pub(crate) fn wall_time(&self) -> Duration {
        self.started.elapsed()
    }

    /// The clock the invocation's polls are timed on.
    pub(crate) fn cpu_clock(&self) -> Arc<CpuClock> {
        self.cpu.clone()
    }

    /// What the guest printed, if it used WASI at all.
    pub(crate) fn take_output(&mut self) -> Option<CapturedOutput> {
        self.output.take()
    }

    pub(crate) fn http_view(&mut self) -> HttpView<'_> {
        HttpView {
            client: &self.env.client,
            connection: &self.connection,
            limits: &self.env.limits,
            sent: &mut self.requests_sent,
            cpu: &self.cpu,
        }
    }

    pub(crate) fn connection_view(&mut self) -> ConnectionView<'_> {
        ConnectionView {
            manifest: &self.connector.manifest,
            connection: &self.connection,
        }
    }

    pub(crate) fn log_view(&mut self) -> LogView<'_> {
        LogView {
            connector: &self.connector.id,
            connection: &self.connection,
            budget: &mut self.log_budget,
        }
    }
}

impl std::fmt::Debug for InvocationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvocationState")
            .field("connector", &self.connector.id)
            .field("requests_sent", &self.requests_sent)
            .finish_non_exhaustive()
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let output = &mut self.output;
        let budget = self.env.limits.log_bytes;
        let ctx = self.wasi.get_or_insert_with(|| {
            let (ctx, captured) = sandbox(budget);
            *output = Some(captured);
            ctx
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}
