//! Routing-quality benchmark (`bench/quality.sh`): the same pool of simulated orchestrators
//! and the same fault schedule, replayed behind byoc-gateway, HAProxy and nginx in one run,
//! driven by the same closed-loop clients. Prints, per target, jobs, good jobs (200 with the
//! right answer), goodput and the latency percentiles, then how each orchestrator was used.
//!
//! The pool (see `pool.rs`): eight orchestrators with 6 slots each (fast 50 ms, medium 120 ms,
//! slow 700 ms, one shared with other gateways, one flapping 500s, one answering CUDA OOM to
//! 30 % of jobs, one hanging for 10 s, one crashing and coming back cold). `--over-capacity`
//! sets what a full orchestrator does with one more job: `refuse` (503), `refuse429`, or
//! `slow` (every job slows down, as go-livepeer's orchestrator, which never refuses, lets an
//! over-committed GPU do).
//!
//! Not part of the gateway; it exists to be measured. Loopback only; every loop is bounded.

mod load;
mod pool;
mod targets;

use std::path::PathBuf;
use std::time::Duration;

use byoc_sim::OverCapacity;
use clap::Parser;

use load::Summary;
use targets::Target;

/// Routing-quality benchmark: byoc-gateway against HAProxy and nginx on one pool.
#[derive(Debug, Parser)]
struct Args {
    /// Length of each target's run, in seconds (the fault schedule scales with it).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Closed-loop clients.
    #[arg(long, default_value_t = 12)]
    clients: usize,
    /// What a full orchestrator does with one more job (repeat for several runs).
    #[arg(long = "over-capacity", value_enum, default_values_t = [OverCapacity::Refuse, OverCapacity::Slow])]
    modes: Vec<OverCapacity>,
    /// Targets, in the order they run.
    #[arg(long = "target", value_enum, default_values_t = [Target::Gateway, Target::Haproxy, Target::Nginx])]
    targets: Vec<Target>,
    /// The gateway binary.
    #[arg(long, default_value = "target/release/byoc-gateway")]
    bin: PathBuf,
    /// Keep configurations and logs in this directory (default: a temporary one, removed).
    #[arg(long)]
    keep: Option<PathBuf>,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let length = Duration::from_secs(args.seconds.clamp(5, 600));
    let temp = tempfile::tempdir()?;
    let work = args.keep.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let mut failed_targets = Vec::new();
    for &mode in &args.modes {
        println!(
            "\n== routing quality: {} orchestrators x {} slots, over capacity: {}, {} clients, {} s per target",
            pool::members(mode).len(),
            pool::CAPACITY,
            mode_name(mode),
            args.clients,
            length.as_secs()
        );
        let mut results: Vec<(Target, Summary, String)> = Vec::new();
        for &target in &args.targets {
            eprintln!("-- {} ({}): starting", target.name(), mode_name(mode));
            match run_one(target, mode, &args, length, &work.join(format!("{}-{:?}", target.name(), mode))).await {
                Ok((summary, usage)) => results.push((target, summary, usage)),
                Err(e) => {
                    eprintln!("-- {}: {e}", target.name());
                    let dir = work.join(format!("{}-{:?}", target.name(), mode));
                    for log in ["gateway.log", "haproxy.log", "nginx.log", "nginx-error.log"] {
                        if let Ok(text) = std::fs::read_to_string(dir.join(log)) {
                            let tail: Vec<&str> = text.lines().rev().take(10).collect();
                            eprintln!("   {log}: {}", tail.into_iter().rev().collect::<Vec<_>>().join("\n   "));
                        }
                    }
                    failed_targets.push(target.name());
                }
            }
        }
        print_table(&results);
    }
    if !failed_targets.is_empty() {
        anyhow::bail!("some targets did not run: {failed_targets:?}");
    }
    Ok(())
}

fn mode_name(mode: OverCapacity) -> &'static str {
    match mode {
        OverCapacity::Ignore => "ignored (capacity only reported)",
        OverCapacity::Refuse => "refuse with 503",
        OverCapacity::Refuse429 => "refuse with 429",
        OverCapacity::Slow => "slow every job down",
    }
}

async fn run_one(
    target: Target,
    mode: OverCapacity,
    args: &Args,
    length: Duration,
    dir: &std::path::Path,
) -> anyhow::Result<(Summary, String)> {
    let pool = pool::Pool::start(mode)?;
    let upstreams: Vec<(String, i64)> =
        pool.sims.iter().map(|(_, s)| (s.url.trim_start_matches("http://").to_string(), pool::CAPACITY)).collect();
    let setup =
        targets::Setup { upstreams: &upstreams, capability: pool::CAPABILITY, declare: true, gateway_config: "" };
    let running = targets::start(target, &args.bin, dir, &setup)?;
    if !load::warm_up(&running.url, 5, Duration::from_secs(20)).await {
        pool.stop().await;
        anyhow::bail!("never answered 5 good jobs in a row during warm-up (logs in {})", dir.display());
    }
    let before = pool.stats();
    let schedule = pool.run_schedule(length);
    let load = load::run(&running.url, args.clients, length, target.name());
    let ((), samples) = futures_util::future::join(schedule, load).await;
    let usage: Vec<String> = pool
        .stats()
        .iter()
        .zip(before)
        .map(|((name, after), (_, b))| {
            let refused = after.refused - b.refused;
            let extra = if refused > 0 { format!(" ({refused} refused)") } else { String::new() };
            format!("{name} {}{extra}", after.jobs - b.jobs)
        })
        .collect();
    let max_inflight = pool.stats().iter().map(|(_, s)| s.max_inflight).max().unwrap_or(0);
    drop(running);
    pool.stop().await;
    let summary = Summary::of(&samples, length);
    Ok((summary, format!("{}; most in flight on one orchestrator: {max_inflight}", usage.join(", "))))
}

fn print_table(results: &[(Target, Summary, String)]) {
    let ms = |v: Option<f64>| v.map_or_else(|| "fail".to_string(), |v| format!("{v:.0}"));
    println!(
        "{:<13} {:>6} {:>6} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7}  failures (status: jobs)",
        "target", "jobs", "good", "good %", "goodput/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (t, s, _) in results {
        let failures: Vec<String> = s.failures.iter().map(|(st, n)| format!("{st}: {n}")).collect();
        println!(
            "{:<13} {:>6} {:>6} {:>8.3} {:>9.1} {:>7} {:>7} {:>7} {:>7.0}  {}",
            t.name(),
            s.jobs,
            s.good,
            s.good_share(),
            s.goodput,
            ms(s.p50),
            ms(s.p95),
            ms(s.p99),
            s.max,
            if failures.is_empty() { "-".to_string() } else { failures.join(", ") }
        );
    }
    println!("jobs each orchestrator received:");
    for (t, _, usage) in results {
        println!("  {:<13} {usage}", t.name());
    }
    let Some((_, gw, _)) = results.iter().find(|(t, _, _)| *t == Target::Gateway) else { return };
    let peers: Vec<&Summary> = results.iter().filter(|(t, _, _)| *t != Target::Gateway).map(|(_, s, _)| s).collect();
    if peers.is_empty() {
        return;
    }
    let best_share = peers.iter().map(|s| s.good_share()).fold(0.0, f64::max);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets: good share {:.3} % >= best peer's {best_share:.3} % and >= 99.9 %: {}",
        gw.good_share(),
        verdict(gw.good_share() >= best_share && gw.good_share() >= 99.9)
    );
    for (name, get) in [
        ("p50", (|s: &Summary| s.p50) as fn(&Summary) -> Option<f64>),
        ("p95", |s: &Summary| s.p95),
        ("p99", |s: &Summary| s.p99),
    ] {
        let best = peers.iter().filter_map(|s| get(s)).fold(f64::INFINITY, f64::min);
        let ours = get(gw).unwrap_or(f64::INFINITY);
        println!(
            "         {name} {} ms <= best peer's {} ms: {}",
            ms(get(gw)),
            ms(best.is_finite().then_some(best)),
            verdict(ours <= best)
        );
    }
}
