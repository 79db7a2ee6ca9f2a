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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once (the `metrics` facade is global) and
/// returns its handle for `/metrics`.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    if let Some(h) = RECORDER.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            byoc_actors::metrics::DURATION_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        // Another thread won the race; use its handle.
        return RECORDER
            .get()
            .cloned()
            .ok_or_else(|| "a different metrics recorder is installed".to_string());
    }
    byoc_actors::metrics::describe();
    let _ = RECORDER.set(handle.clone());
    Ok(RECORDER.get().cloned().unwrap_or(handle))
}
