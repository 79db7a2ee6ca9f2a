//! `byoc-sim` / `byoc-gateway sim`: simulators on the command line.

use std::future::Future;
use std::net::TcpListener;

use crate::knobs::{Knobs, OverCapacity};
use crate::server::{start, start_tls};

/// `byoc-sim` / `byoc-gateway sim` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Listen address; several (repeat or comma separate) make one process answer as that
    /// many orchestrators, each on its own address with its own state (scale benchmarks).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8935")]
    pub addr: Vec<String>,
    /// Name echoed in answers.
    #[arg(long, default_value = "sim")]
    pub name: String,
    /// Capabilities served (repeat or comma separate).
    #[arg(long = "capability", value_delimiter = ',', default_value = "image-to-image")]
    pub capabilities: Vec<String>,
    /// Job latency in ms.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Share of jobs answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of jobs answered 500 CUDA out of memory.
    #[arg(long, default_value_t = 0.0)]
    pub oom_rate: f64,
    /// Concurrent jobs it has room for (reported in tokens).
    #[arg(long, default_value_t = 4)]
    pub capacity: i64,
    /// What a job past `--capacity` gets: run anyway (go-livepeer), refused with 503 or 429,
    /// or slowed down with the others (a time-sliced GPU).
    #[arg(long, value_enum, default_value_t = OverCapacity::Ignore)]
    pub over_capacity: OverCapacity,
    /// Extra time per job, uniform in [0, this] ms.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Price per unit in wei.
    #[arg(long, default_value_t = 0)]
    pub price: i64,
    /// The gateway's credit in wei, reported in tokens; with `--price`, a job needs 60 s of it
    /// (as go-livepeer's orchestrator), otherwise 400 Insufficient balance for request.
    #[arg(long, default_value_t = 0)]
    pub balance: i64,
    /// Cold-start jobs at start.
    #[arg(long, default_value_t = 0)]
    pub cold_start_jobs: u64,
    /// Extra time of a cold-start job in ms.
    #[arg(long, default_value_t = 0)]
    pub cold_start_ms: u64,
    /// Serve HTTPS with a self-signed certificate generated at start (as go-livepeer does).
    #[arg(long)]
    pub tls: bool,
    /// Answer jobs as Server-Sent Events: this many events, then `data: [DONE]` (0: JSON).
    #[arg(long, default_value_t = 0)]
    pub sse_events: u32,
    /// Pause between two events in ms.
    #[arg(long, default_value_t = 0)]
    pub sse_interval_ms: u64,
    /// Answer a token offering capacity for any capability name, served or not (a hostile or
    /// misconfigured orchestrator); jobs for names not served still get a 503.
    #[arg(long)]
    pub any_capability: bool,
    /// Pad JSON answers to at least this many bytes (large results).
    #[arg(long, default_value_t = 0)]
    pub answer_bytes: usize,
    /// Send answers without a `Content-Length`, in chunks (as go-livepeer does past 2 KiB).
    #[arg(long)]
    pub answer_chunked: bool,
}

/// Runs the simulators `args` asks for until `shutdown` completes (the caller's signal
/// handling), printing one ready line per simulator.
pub async fn run(args: SimArgs, shutdown: impl Future<Output = &'static str>) -> std::io::Result<()> {
    let knobs = Knobs {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        oom_rate: args.oom_rate,
        capacity: args.capacity,
        over_capacity: args.over_capacity,
        jitter_ms: args.jitter_ms,
        price_per_unit: args.price,
        balance: args.balance,
        cold_start_jobs: args.cold_start_jobs,
        cold_start_ms: args.cold_start_ms,
        sse_events: args.sse_events,
        sse_interval_ms: args.sse_interval_ms,
        answer_bytes: args.answer_bytes,
        answer_chunked: args.answer_chunked,
        ..Knobs::default()
    };
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    knobs.validate().map_err(invalid)?;
    for cap in &args.capabilities {
        byoc_actors::capability::Capability::new(cap).map_err(|e| invalid(format!("--capability {cap:?}: {e}")))?;
    }
    let caps: Vec<(&str, Knobs)> = args.capabilities.iter().map(|c| (c.as_str(), knobs.clone())).collect();
    // One server per address (not one server with many listeners) so that each answers its
    // own `service_addr` and keeps its own knobs and stats, as distinct orchestrators do.
    let mut sims = Vec::with_capacity(args.addr.len());
    for addr in &args.addr {
        let listener =
            TcpListener::bind(addr).map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
        sims.push(if args.tls { start_tls(&args.name, listener, &caps)? } else { start(&args.name, listener, &caps)? });
    }
    for sim in &sims {
        sim.state.any_capability.store(args.any_capability, std::sync::atomic::Ordering::Relaxed);
    }
    for sim in &sims {
        println!("byoc-gateway sim ready url={} capabilities={}", sim.url, args.capabilities.join(","));
    }
    if let Some(sim) = sims.first() {
        println!("  change faults at runtime: curl -X POST '{}/sim/knobs?capability={}' -d '{{\"error_rate\":1.0}}' -H 'Content-Type: application/json'", sim.url, args.capabilities[0]);
    }
    let _ = shutdown.await;
    for sim in &sims {
        sim.stop().await;
    }
    Ok(())
}
