//! Telemetry setup: the tracing subscriber (text or JSON, to stderr so stdout stays free for
//! the ready line and the demo) and the Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber. `level` is the default filter when `RUST_LOG` is
/// unset. A second call (tests starting several gateways) is a no-op.
pub fn init_tracing(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}

/// How often queued histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once (the `metrics` facade is global) and
/// returns its handle for `/metrics`. Concurrent callers (tests starting several gateways)
/// wait for the first one's installation.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    byoc_actors::metrics::DURATION_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                // A full name wins over the suffix: stream lifetimes run to hours.
                .set_buckets_for_metric(
                    Matcher::Full(byoc_actors::metrics::STREAM_DURATION_SECONDS.into()),
                    byoc_actors::metrics::STREAM_DURATION_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                // A histogram too (it was a summary, whose quantiles cannot be aggregated over
                // capabilities or replicas, and which the dashboard's p99 could not use).
                .set_buckets_for_metric(
                    Matcher::Full(byoc_actors::metrics::QUEUE_WAIT_SECONDS.into()),
                    byoc_actors::metrics::DURATION_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            // Histogram samples queue in the recorder until drained; without a scrape they
            // would grow with every request. Drain them on a timer (what the crate's own
            // `install` does with its upkeep task), on a plain thread because the recorder is
            // process-wide and outlives any one actix system.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .map_err(|e| format!("cannot start the metrics upkeep thread: {e}"))?;
            metrics::set_global_recorder(recorder)
                .map_err(|e| format!("a metrics recorder is already installed: {e}"))?;
            byoc_actors::metrics::describe();
            byoc_actors::metrics::register_at_zero();
            Ok(handle)
        })
        .clone()
}
