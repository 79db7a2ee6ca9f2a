//! Per-pair series, rendered at scrape time: the one place `/metrics` carries an
//! `orchestrator` label (dashboards plot per-pair latency, alerts spot a flapping pair).
//!
//! They are not recorded through the `metrics` facade, whose recorder keeps every series it
//! has ever seen: they are written from the pairs as they are at the scrape, so a removed
//! orchestrator's series end with it. Their number is bounded by `metrics_pair_series` (500
//! pairs by default, about 12 series each; the first pairs in (orchestrator id, capability)
//! order), and `byoc_gateway_pair_series_omitted` says how many pairs were left out.
//!
//! The operator's labels appear only in `byoc_gateway_orchestrator_info`, one series per
//! orchestrator that has pairs rendered (so at most as many as the pairs above): a label
//! change replaces that one series, and never multiplies the gateway's other series.

use std::fmt::Write as _;

/// One pair at the scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PairSample<'a> {
    /// Orchestrator id.
    pub(crate) orchestrator: &'a str,
    /// Capability.
    pub(crate) capability: &'a str,
    /// Its orchestrator's label.
    pub(crate) label: Option<&'a str>,
    /// Can take a job now.
    pub(crate) routable: bool,
    /// 0 closed, 1 half-open, 2 open.
    pub(crate) breaker: u8,
    /// Times its breaker opened since the pair started.
    pub(crate) breaker_opens: u64,
    /// Median and 99th percentile of its recent successful calls, in seconds.
    pub(crate) latency: Option<(f64, f64)>,
    /// Decaying success rate.
    pub(crate) success_ratio: f64,
    /// Jobs in flight.
    pub(crate) inflight: u32,
    /// Its concurrency limit.
    pub(crate) slots: u32,
    /// Calls by result: successes, failures, the client's 4xx answers.
    pub(crate) calls: (u64, u64, u64),
}

/// A label value in the text format: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Appends the series of `pairs` (already cut to the bound) and the count of `omitted` pairs
/// to `out`, in the Prometheus text format.
pub(crate) fn render(out: &mut String, pairs: &[PairSample<'_>], omitted: usize) {
    type Value<'a> = &'a dyn Fn(&PairSample<'_>) -> Vec<(&'static str, f64)>;
    let families: [(&str, &str, &str, Value<'_>); 8] = [
        ("byoc_gateway_pair_routable", "gauge", "1 when the pair can take a job now", &|p| {
            vec![("", f64::from(u8::from(p.routable)))]
        }),
        (
            "byoc_gateway_pair_breaker_state",
            "gauge",
            "Breaker state of the pair: 0 closed, 1 half-open, 2 open",
            &|p| vec![("", f64::from(p.breaker))],
        ),
        (
            "byoc_gateway_pair_breaker_opens_total",
            "counter",
            "Times the pair's breaker opened since the pair started",
            &|p| vec![("", p.breaker_opens as f64)],
        ),
        (
            "byoc_gateway_pair_latency_seconds",
            "gauge",
            "Median (quantile 0.5) and 99th percentile of the pair's recent successful calls",
            &|p| {
                p.latency
                    .map_or_else(Vec::new, |(p50, p99)| vec![("quantile=\"0.5\"", p50), ("quantile=\"0.99\"", p99)])
            },
        ),
        ("byoc_gateway_pair_success_ratio", "gauge", "Decaying success rate of the pair's calls", &|p| {
            vec![("", p.success_ratio)]
        }),
        ("byoc_gateway_pair_inflight", "gauge", "Jobs in flight on the pair", &|p| vec![("", f64::from(p.inflight))]),
        ("byoc_gateway_pair_slots", "gauge", "Concurrency limit of the pair", &|p| vec![("", f64::from(p.slots))]),
        (
            "byoc_gateway_pair_calls_total",
            "counter",
            "Calls to the pair by result (success, failure, client-error)",
            &|p| {
                vec![
                    ("result=\"success\"", p.calls.0 as f64),
                    ("result=\"failure\"", p.calls.1 as f64),
                    ("result=\"client-error\"", p.calls.2 as f64),
                ]
            },
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in pairs {
            for (extra, v) in value(p) {
                let sep = if extra.is_empty() { "" } else { "," };
                let _ = writeln!(
                    out,
                    "{name}{{orchestrator=\"{}\",capability=\"{}\"{sep}{extra}}} {v}",
                    escape(p.orchestrator),
                    escape(p.capability)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP byoc_gateway_orchestrator_info The operator's label of each orchestrator with pair series (value 1)\n\
         # TYPE byoc_gateway_orchestrator_info gauge"
    );
    let mut seen: Vec<&str> = Vec::new();
    for p in pairs {
        if seen.last() == Some(&p.orchestrator) || seen.contains(&p.orchestrator) {
            continue;
        }
        seen.push(p.orchestrator);
        let label = p.label.map(|l| format!(",orchestrator_label=\"{}\"", escape(l))).unwrap_or_default();
        let _ = writeln!(out, "byoc_gateway_orchestrator_info{{orchestrator=\"{}\"{label}}} 1", escape(p.orchestrator));
    }
    let _ = writeln!(
        out,
        "# HELP byoc_gateway_pair_series_omitted Pairs without per-pair series (over metrics_pair_series)\n\
         # TYPE byoc_gateway_pair_series_omitted gauge\nbyoc_gateway_pair_series_omitted {omitted}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_orchestrator_and_capability_and_labels_only_the_info_metric() {
        let a = PairSample {
            orchestrator: "orch-1",
            capability: "depth",
            label: Some("box \"7\""),
            routable: true,
            breaker: 0,
            breaker_opens: 2,
            latency: Some((0.031, 0.12)),
            success_ratio: 0.98,
            inflight: 1,
            slots: 4,
            calls: (10, 1, 3),
        };
        let b = PairSample { orchestrator: "orch-1", capability: "upscale", latency: None, ..a.clone() };
        let mut out = String::new();
        render(&mut out, &[a, b], 7);
        assert!(out.contains("byoc_gateway_pair_routable{orchestrator=\"orch-1\",capability=\"depth\"} 1\n"), "{out}");
        assert!(out.contains(
            "byoc_gateway_pair_latency_seconds{orchestrator=\"orch-1\",capability=\"depth\",quantile=\"0.99\"} 0.12\n"
        ));
        assert!(!out.contains("capability=\"upscale\",quantile"), "no latency before a measurement: {out}");
        assert!(out.contains(
            "byoc_gateway_pair_calls_total{orchestrator=\"orch-1\",capability=\"upscale\",result=\"client-error\"} 3\n"
        ));
        assert!(out.contains(
            "byoc_gateway_orchestrator_info{orchestrator=\"orch-1\",orchestrator_label=\"box \\\"7\\\"\"} 1\n"
        ));
        assert_eq!(out.matches("byoc_gateway_orchestrator_info{").count(), 1, "one info series per orchestrator");
        assert_eq!(out.matches("box").count(), 1, "the label is on the info series only");
        assert!(out.ends_with("byoc_gateway_pair_series_omitted 7\n"));
        // Every series line is `name{labels} value` and every family is typed.
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().expect("name");
            assert!(out.contains(&format!("# TYPE {name} ")), "{name} untyped");
        }
    }
}
