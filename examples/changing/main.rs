//! Routing under a changing pool (`bench/changing.sh`): open-loop Poisson load at a set share of
//! the pool's capacity, replayed behind byoc-gateway, HAProxy and nginx (one or two instances
//! each, sharing the pool), while the pool changes on a schedule: an orchestrator that joins
//! late, one flapping 500s in 4-second windows, one whose latency jumps from 50 ms to 1.5 s for
//! 10 s, and orchestrators of different sizes that refuse jobs past their capacity
//! (`pool.rs`). Latency counts from each job's scheduled arrival.
//!
//! The oracle (`oracle.rs`) is what the same arrivals would see if each job went to the fastest
//! free healthy orchestrator, knowing the schedule. Every target is printed against it and
//! against the targets: good share >= 99.9 % and >= every peer's; p99 within 2x the
//! oracle's and <= 0.5x the best peer's; the late joiner serving within 3 s of coming up.
//!
//! Not part of the gateway; it exists to be measured. Loopback only; every loop is bounded.

#[path = "../quality/targets.rs"]
mod targets;

mod load;
mod oracle;
mod pool;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use load::Summary;
use targets::Target;

/// Routing under a changing pool: byoc-gateway against HAProxy and nginx, and the oracle.
#[derive(Debug, Parser)]
struct Args {
    /// Length of each run, in seconds (the schedule is written for 40 and scales).
    #[arg(long, default_value_t = 40)]
    seconds: u64,
    /// Offered load as a share of the pool's full capacity (repeat for several).
    #[arg(long = "load", default_values_t = [0.4, 0.6])]
    loads: Vec<f64>,
    /// Instances of each target sharing the pool (repeat for several).
    #[arg(long = "instances", default_values_t = [1, 2])]
    instances: Vec<usize>,
    /// Targets, in the order they run.
    #[arg(long = "target", value_enum, default_values_t = [Target::Gateway, Target::Haproxy, Target::Nginx])]
    targets: Vec<Target>,
    /// byoc-gateway: declare the capability for each orchestrator (default: bare URLs that the
    /// gateway surveys, as `--orch-addr` gives).
    #[arg(long)]
    declare: bool,
    /// byoc-gateway: TOML appended to its configuration, e.g. `[limits]\nqueue_depth = 1024`
    /// (default: its defaults); `{run}` in it becomes the run's tag (a fresh etcd prefix per
    /// run, say).
    #[arg(long, default_value = "")]
    gateway_config: String,
    /// Several instances of a target get one HAProxy in front of them (as a fleet behind a load
    /// balancer; `--front-balance`), instead of the load generator alternating between them.
    #[arg(long)]
    front: bool,
    /// The front's balance algorithm (HAProxy's): `roundrobin`, as issue 26 item 5 words its
    /// benchmark, or `leastconn` (each job to the instance with the fewest in flight).
    #[arg(long, default_value = "roundrobin", value_parser = ["roundrobin", "leastconn"])]
    front_balance: String,
    /// Print the fleet targets of issue 26: byoc-gateway with several instances within 10 % of
    /// one instance's good share and p99, and ahead of HAProxy with as many instances on both.
    #[arg(long)]
    fleet_targets: bool,
    /// Seed of the arrival schedule (the same for every target).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The gateway binary.
    #[arg(long, default_value = "target/release/byoc-gateway")]
    bin: PathBuf,
    /// Keep configurations and logs in this directory (default: a temporary one, removed).
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// What one target did in one run.
struct Outcome {
    target: Target,
    instances: usize,
    summary: Summary,
    /// From the late member coming up to its first good answer (`None`: never served).
    late_first: Option<Duration>,
    /// Jobs the evicting member received while evicted.
    evicted_jobs: u64,
    usage: String,
    /// byoc-gateway's own account of its queue, per instance.
    queues: Vec<String>,
    /// The p99 of the jobs arriving in each fifth of the run.
    over_time: String,
    /// Jobs the orchestrators refused for want of capacity.
    refused: u64,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let length = Duration::from_secs(args.seconds.clamp(10, 600));
    let temp = tempfile::tempdir()?;
    let work = args.keep.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let timeline = pool::Timeline::new(length);
    let full = pool::full_capacity();
    let mut failed = Vec::new();
    for &share in &args.loads {
        let rate = share * full;
        let arrivals = load::arrivals(rate, length, args.seed);
        let oracle = oracle_summary(&arrivals, &timeline, args.seed);
        let covered = capacity_cover(&timeline, rate, length);
        println!(
            "\n== changing pool: {} orchestrators, full capacity {full:.0} jobs/s, load {:.0} % = {rate:.0} jobs/s \
             ({} jobs over {} s); the pool's healthy capacity exceeds the load {covered:.0} % of the time",
            pool::MEMBERS.len(),
            share * 100.0,
            arrivals.len(),
            length.as_secs()
        );
        let mut results = Vec::new();
        for &n in &args.instances {
            for &target in &args.targets {
                let tag = format!("{}-x{n}-{:.0}", target.name(), share * 100.0);
                eprintln!("-- {tag}: starting");
                let dir = work.join(&tag);
                match run_one(target, n, &args, length, &arrivals, &dir, &tag).await {
                    Ok(o) => results.push(o),
                    Err(e) => {
                        eprintln!("-- {tag}: {e}");
                        failed.push(tag);
                    }
                }
            }
        }
        print_table(&results, &oracle, length, args.fleet_targets);
    }
    if !failed.is_empty() {
        anyhow::bail!("some runs did not complete: {failed:?}");
    }
    Ok(())
}

fn oracle_summary(arrivals: &[Duration], timeline: &pool::Timeline, seed: u64) -> Summary {
    let l = oracle::latencies(arrivals, timeline, seed);
    let n = l.len();
    Summary::of(l, n, Default::default())
}

/// Share of the run (in %) during which the healthy members' capacity exceeds `rate`.
fn capacity_cover(timeline: &pool::Timeline, rate: f64, length: Duration) -> f64 {
    let steps = (length.as_millis() / 100).max(1) as u32;
    let over = (0..steps).filter(|&k| timeline.capacity_at(Duration::from_millis(100 * u64::from(k))) > rate).count();
    100.0 * over as f64 / f64::from(steps)
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    target: Target,
    instances: usize,
    args: &Args,
    length: Duration,
    arrivals: &[Duration],
    dir: &std::path::Path,
    tag: &str,
) -> anyhow::Result<Outcome> {
    let pool = pool::Pool::start().await?;
    // Instances share the pool: each peer instance gets its share of every orchestrator's slots
    // (as a careful operator splitting capacity between two proxies would); byoc-gateway reads
    // capacity from the orchestrators' tokens.
    let upstreams: Vec<(String, i64)> = pool
        .sims
        .iter()
        .zip(pool::MEMBERS)
        .map(|((_, s), m)| {
            (s.url.trim_start_matches("http://").to_string(), (m.slots + instances as i64 - 1) / instances as i64)
        })
        .collect();
    let gateway_config = args.gateway_config.replace("{run}", tag);
    let setup = targets::Setup {
        upstreams: &upstreams,
        capability: pool::CAPABILITY,
        declare: args.declare,
        gateway_config: &gateway_config,
    };
    let mut running = Vec::new();
    for i in 0..instances {
        running.push(targets::start(target, &args.bin, &dir.join(format!("i{i}")), &setup)?);
    }
    let mut urls: Vec<String> = running.iter().map(|r| r.url.clone()).collect();
    if !load::warm_up(&urls, 5, Duration::from_secs(30)).await {
        pool.stop().await;
        anyhow::bail!("never answered 5 good jobs in a row during warm-up (logs in {})", dir.display());
    }
    let front = match (args.front, instances > 1) {
        (true, true) => Some(targets::front(&dir.join("front"), &urls, pool::CAPABILITY, &args.front_balance)?),
        _ => None,
    };
    if let Some(f) = &front {
        urls = vec![f.url.clone()];
    }
    if !load::warm_up(&urls, 5, Duration::from_secs(30)).await {
        pool.stop().await;
        anyhow::bail!("never answered 5 good jobs in a row during warm-up (logs in {})", dir.display());
    }
    let before = pool.stats();
    let started = Instant::now();
    let watch = watch(&pool, length);
    let load = load::run(&urls, arrivals, tag);
    let ((), (late_ok_at, evicted_jobs), samples) =
        futures_util::future::join3(pool.run_schedule(length), watch, load).await;
    let joined = pool::late_joins_at(length);
    let late_first = late_ok_at.map(|t| t.saturating_duration_since(started).saturating_sub(joined));
    let refused: u64 = pool.stats().iter().zip(&before).map(|((_, a), (_, b))| a.refused - b.refused).sum();
    let usage: Vec<String> = pool
        .stats()
        .iter()
        .zip(before)
        .map(|((name, after), (_, b))| {
            let refused = after.refused - b.refused;
            let errors = after.errors - b.errors - refused;
            let mut s = format!("{name} {}", after.jobs - b.jobs);
            if refused > 0 || errors > 0 {
                s.push_str(&format!(" ({refused} refused, {errors} failed)"));
            }
            s
        })
        .collect();
    let mut queues = Vec::new();
    for r in &running {
        if let Some(admin) = &r.admin {
            queues.push(queue_report(admin).await);
        }
    }
    drop(front);
    drop(running);
    pool.stop().await;
    Ok(Outcome {
        target,
        instances,
        summary: Summary::of_samples(&samples),
        late_first,
        evicted_jobs,
        usage: usage.join(", "),
        queues,
        over_time: over_time(arrivals, &samples, length),
        refused,
    })
}

/// The p99 (ms, `fail` when it lands on a failed job) of the jobs arriving in each eighth of
/// the run: when the tail happens.
fn over_time(arrivals: &[Duration], samples: &[load::Sample], length: Duration) -> String {
    const PARTS: u32 = 8;
    let mut parts: Vec<Vec<load::Sample>> = vec![Vec::new(); PARTS as usize];
    for (at, s) in arrivals.iter().zip(samples) {
        let k = ((at.as_secs_f64() / length.as_secs_f64()) * f64::from(PARTS)) as usize;
        parts[k.min(PARTS as usize - 1)].push(s.clone());
    }
    parts
        .iter()
        .map(|p| Summary::of_samples(p).p99.map_or_else(|| "fail".to_string(), |v| format!("{v:.0}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a gateway's admin API says of its queue for the bench's capability.
async fn queue_report(admin: &str) -> String {
    let client = awc::Client::builder().timeout(Duration::from_secs(5)).finish();
    let url = format!("{admin}/admin/capabilities/{}", pool::CAPABILITY);
    let Ok(mut res) = client.get(url).send().await else { return "admin API unreachable".into() };
    let Ok(v) = res.json::<serde_json::Value>().await else { return "no report".into() };
    let q = &v["queue"];
    // Attempts cut as stuck and selections that waited for a faster slot, from /metrics.
    let counter = |text: &str, name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let metrics = match client.get(format!("{admin}/metrics")).send().await {
        Ok(mut r) => String::from_utf8_lossy(&r.body().limit(16 << 20).await.unwrap_or_default()).into_owned(),
        Err(_) => String::new(),
    };
    format!(
        "stuck attempts {}, waited for a faster slot {}; queued {}, dispatched {}, timed out {}, rejected {}, \
         displaced {}, deepest {}, mean wait {} ms",
        counter(&metrics, "byoc_gateway_stuck_attempts_total"),
        counter(&metrics, "byoc_gateway_waited_for_faster_total"),
        q["counts"]["queued"],
        q["counts"]["dispatched"],
        q["counts"]["timed_out"],
        q["counts"]["rejected"],
        q["counts"]["displaced"],
        q["counts"]["max_depth"],
        q["mean_wait_ms"].as_f64().map_or_else(|| "-".into(), |m| format!("{m:.0}"))
    )
}

/// Watches the pool during the run: when the late member first answered a job well, and how
/// many jobs the evicting member received while evicted.
async fn watch(pool: &pool::Pool, length: Duration) -> (Option<Instant>, u64) {
    let started = Instant::now();
    let spike: Vec<Duration> =
        pool::schedule(length).into_iter().filter(|(_, name, _)| *name == "evicting").map(|(t, _, _)| t).collect();
    let (spike_from, spike_to) = (spike.first().copied().unwrap_or_default(), spike.get(1).copied().unwrap_or(length));
    let jobs = |name: &str| pool.sim(name).map_or(0, |s| s.state.stats(pool::CAPABILITY).jobs);
    let ok = |name: &str| pool.sim(name).map_or(0, |s| s.state.stats(pool::CAPABILITY).ok);
    let late_before = ok("late");
    let (mut late_at, mut evict_start, mut evict_end) = (None, None, None);
    while started.elapsed() < length {
        let t = started.elapsed();
        if late_at.is_none() && ok("late") > late_before {
            late_at = Some(Instant::now());
        }
        if evict_start.is_none() && t >= spike_from {
            evict_start = Some(jobs("evicting"));
        }
        if evict_end.is_none() && t >= spike_to {
            evict_end = Some(jobs("evicting"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let evicted = evict_end.unwrap_or_else(|| jobs("evicting")).saturating_sub(evict_start.unwrap_or(0));
    (late_at, evicted)
}

/// Issue 26's targets: byoc-gateway with several instances (a fleet) within 10 % of one
/// instance's good share and p99, and ahead of HAProxy with as many instances on both.
fn print_fleet_targets(results: &[Outcome]) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let ms = |v: Option<f64>| v.map_or_else(|| "fail".to_string(), |v| format!("{v:.0}"));
    let Some(one) = results.iter().find(|o| o.target == Target::Gateway && o.instances == 1) else { return };
    for fleet in results.iter().filter(|o| o.target == Target::Gateway && o.instances > 1) {
        let n = fleet.instances;
        let (f, s) = (&fleet.summary, &one.summary);
        println!("fleet targets, byoc-gateway x{n} against x1:");
        println!(
            "  good share {:.3} % within 10 % of x1's ({:.3} %): {}",
            f.good_share(),
            s.good_share(),
            verdict(f.good_share() >= s.good_share() * 0.9)
        );
        let (fp, sp) = (f.p99.unwrap_or(f64::INFINITY), s.p99.unwrap_or(f64::INFINITY));
        let ratio = if sp.is_finite() { format!("{:.2}x", fp / sp.max(1e-9)) } else { "x1 reached no p99".into() };
        println!(
            "  p99 {} ms within 10 % of x1's ({} ms): {} ({ratio})",
            ms(f.p99),
            ms(s.p99),
            verdict(fp <= sp * 1.1)
        );
        println!("  orchestrators' capacity refusals: x{n} {}, x1 {}", fleet.refused, one.refused);
        if let Some(h) = results.iter().find(|o| o.target == Target::Haproxy && o.instances == n) {
            let hp = h.summary.p99.unwrap_or(f64::INFINITY);
            println!(
                "  ahead of haproxy x{n}: good share {:.3} % vs {:.3} %: {}; p99 {} ms vs {} ms: {}",
                f.good_share(),
                h.summary.good_share(),
                verdict(f.good_share() >= h.summary.good_share()),
                ms(f.p99),
                ms(h.summary.p99),
                verdict(fp <= hp)
            );
        }
    }
}

fn print_table(results: &[Outcome], oracle: &Summary, length: Duration, fleet_targets: bool) {
    let ms = |v: Option<f64>| v.map_or_else(|| "fail".to_string(), |v| format!("{v:.0}"));
    println!(
        "{:<16} {:>6} {:>8} {:>9} {:>7} {:>7} {:>7} {:>9} {:>8} {:>8}  failures (status: jobs)",
        "target", "jobs", "good %", "goodput/s", "p50 ms", "p95 ms", "p99 ms", "late in s", "evicted", "refused"
    );
    println!(
        "{:<16} {:>6} {:>8} {:>9.1} {:>7} {:>7} {:>7} {:>9} {:>8} {:>8}  -",
        "oracle",
        oracle.jobs,
        "100",
        oracle.jobs as f64 / length.as_secs_f64(),
        ms(oracle.p50),
        ms(oracle.p95),
        ms(oracle.p99),
        "0.0",
        "-",
        "-"
    );
    for o in results {
        let s = &o.summary;
        let failures: Vec<String> = s.failures.iter().map(|(st, n)| format!("{st}: {n}")).collect();
        println!(
            "{:<16} {:>6} {:>8.3} {:>9.1} {:>7} {:>7} {:>7} {:>9} {:>8} {:>8}  {}",
            format!("{} x{}", o.target.name(), o.instances),
            s.jobs,
            s.good_share(),
            s.good_share() / 100.0 * s.jobs as f64 / length.as_secs_f64(),
            ms(s.p50),
            ms(s.p95),
            ms(s.p99),
            o.late_first.map_or_else(|| "never".into(), |d| format!("{:.1}", d.as_secs_f64())),
            o.evicted_jobs,
            o.refused,
            if failures.is_empty() { "-".to_string() } else { failures.join(", ") }
        );
    }
    println!("jobs each orchestrator received (run of {} s):", length.as_secs());
    for o in results {
        println!("  {:<16} {}", format!("{} x{}", o.target.name(), o.instances), o.usage);
    }
    println!("p99 (ms) of the jobs arriving in each eighth of the run:");
    for o in results {
        println!("  {:<16} {}", format!("{} x{}", o.target.name(), o.instances), o.over_time);
    }
    for o in results.iter().filter(|o| !o.queues.is_empty()) {
        for (i, q) in o.queues.iter().enumerate() {
            println!("  {:<16} queue of instance {i}: {q}", format!("{} x{}", o.target.name(), o.instances));
        }
    }
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if fleet_targets {
        print_fleet_targets(results);
    }
    let mut counts: Vec<usize> = results.iter().map(|o| o.instances).collect();
    counts.dedup();
    for n in counts {
        let Some(gw) = results.iter().find(|o| o.target == Target::Gateway && o.instances == n) else { continue };
        let peers: Vec<&Outcome> = results.iter().filter(|o| o.target != Target::Gateway && o.instances == n).collect();
        let g = &gw.summary;
        let best_share = peers.iter().map(|p| p.summary.good_share()).fold(0.0, f64::max);
        let best_p99 = peers.iter().filter_map(|p| p.summary.p99).fold(f64::INFINITY, f64::min);
        let ours = g.p99.unwrap_or(f64::INFINITY);
        let oracle_p99 = oracle.p99.unwrap_or(0.0);
        println!("targets, byoc-gateway x{n}:");
        println!(
            "  good share {:.3} % >= 99.9 % and >= every peer's ({best_share:.3} %): {}",
            g.good_share(),
            verdict(g.good_share() >= 99.9 && g.good_share() >= best_share)
        );
        println!(
            "  p99 {} ms <= 2x the oracle's ({} ms): {} ({:.2}x)",
            ms(g.p99),
            ms(oracle.p99),
            verdict(ours <= 2.0 * oracle_p99),
            ours / oracle_p99.max(1e-9)
        );
        if best_p99.is_finite() {
            println!(
                "  p99 {} ms <= 0.5x the best peer's ({best_p99:.0} ms): {} ({:.2}x)",
                ms(g.p99),
                verdict(ours <= 0.5 * best_p99),
                ours / best_p99
            );
        } else if !peers.is_empty() {
            println!("  p99 <= 0.5x the best peer's: met (no peer reached a p99)");
        }
        println!(
            "  late joiner serving within 3 s of coming up: {} ({})",
            verdict(gw.late_first.is_some_and(|d| d <= Duration::from_secs(3))),
            gw.late_first.map_or_else(|| "never".into(), |d| format!("{:.1} s", d.as_secs_f64()))
        );
    }
}
