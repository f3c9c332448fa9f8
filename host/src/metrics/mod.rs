//! Prometheus metrics, served at `/metrics` in the text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    connector: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabel {
    connector: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.1 ms to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    invocation_seconds: HistogramFamily<ConnectorLabel>,
    active_instances: Gauge,
    queued_invocations: Gauge,
    requests: Family<RequestLabels, Counter>,
    health_checks: Family<HealthLabels, Counter>,
    credential_store_reads: Counter,
    vault_retries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("junction");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Action invocations, by connector and outcome (ok or the error code)",
            invocations.clone(),
        );
        let invocation_seconds =
            HistogramFamily::<ConnectorLabel>::new_with_constructor(latency_histogram);
        registry.register(
            "invocation_duration_seconds",
            "Duration of action invocations, by connector",
            invocation_seconds.clone(),
        );
        let active_instances = Gauge::default();
        registry.register(
            "active_instances",
            "Connector instances running now",
            active_instances.clone(),
        );
        let queued_invocations = Gauge::default();
        registry.register(
            "queued_invocations",
            "Invocations waiting for a free connector instance now",
            queued_invocations.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route and status",
            requests.clone(),
        );
        let health_checks = Family::<HealthLabels, Counter>::default();
        registry.register(
            "health_checks",
            "Connection health checks, by outcome",
            health_checks.clone(),
        );
        let credential_store_reads = Counter::default();
        registry.register(
            "credential_store_reads",
            "Secrets read from credential stores (values served from the cache not counted)",
            credential_store_reads.clone(),
        );
        let vault_retries = Counter::default();
        registry.register(
            "vault_credential_retries",
            "Invocations run again after the API refused a credential from a credential store and the store held a new one",
            vault_retries.clone(),
        );
        Self {
            registry,
            credential_store_reads,
            vault_retries,
            invocations,
            invocation_seconds,
            active_instances,
            queued_invocations,
            requests,
            health_checks,
        }
    }

    pub fn invocation(&self, connector: &str, outcome: &str, elapsed: Duration) {
        self.invocations
            .get_or_create(&InvocationLabels {
                connector: connector.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.invocation_seconds
            .get_or_create(&ConnectorLabel {
                connector: connector.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn request(&self, method: &str, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    pub fn health_check(&self, outcome: &str) {
        self.health_checks
            .get_or_create(&HealthLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The counter of credential store reads, which the stores increment.
    pub fn credential_store_reads(&self) -> Counter {
        self.credential_store_reads.clone()
    }

    pub fn vault_retry(&self) {
        self.vault_retries.inc();
    }

    /// The text exposition, with the instance gauges set to `active_instances` and
    /// `queued_invocations`.
    pub fn render(&self, active_instances: usize, queued_invocations: usize) -> String {
        self.active_instances
            .set(i64::try_from(active_instances).unwrap_or(i64::MAX));
        self.queued_invocations
            .set(i64::try_from(queued_invocations).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}
