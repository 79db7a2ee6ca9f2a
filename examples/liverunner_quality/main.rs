//! Live Runner routing-quality benchmark (`bench/liverunner.sh`): one pool of simulated Live
//! Runner orchestrators, each with one single-shot runner of the app `bench/echo`, of three
//! speeds and four faults on a schedule, replayed behind byoc-gateway, the Python SDK's
//! sequential strategy (reimplemented here as `livepeer-gateway`'s `selection.py` does it) and
//! HAProxy, with the same closed-loop clients. Prints, per target, calls, good calls (200 with
//! the echo of that very body), goodput and latency percentiles (failed calls ranked after
//! every good one), then how each runner was used.
//!
//! The pool, in the order discovery lists it (the order the SDK walks): `flapping` (its app
//! answers 500 to every call in alternate 3-second windows), `fast` (50 ms), `hang` (never
//! answers from 40 % to 55 % of the run), `medium` (120 ms), `full` (other clients hold all its
//! slots from 20 % to 60 %: `503 no capacity`), `slow` (700 ms), `gone` (removed at 30 %:
//! unlisted and `404 runner not found`, back at 70 %). Each runner has 4 slots; latencies carry
//! 20 % jitter.
//!
//! Not part of the gateway; it exists to be measured. Loopback only; every loop is bounded in
//! count and time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use byoc_sim::{RunnerSpec, SimHandle};
use clap::Parser;
use serde_json::Value;

/// The app every call asks for.
const APP: &str = "bench/echo";
/// The runner's route at every orchestrator (so HAProxy can send a path to any of them).
const ROUTE: &str = "r";
/// Slots of each runner.
const CAPACITY: i64 = 4;
/// The bound on one attempt at a runner, for every target: about three times the slowest
/// healthy call, so a hanging runner is left within seconds but a slow answer is not cut.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Runners one call may try (the gateway's `max_attempts`, HAProxy's `retries`).
const ATTEMPTS: usize = 3;
/// Client-side bound on one call.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A target under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    /// byoc-gateway (release build), `/apps/bench/echo/...`.
    Gateway,
    /// The Python SDK's strategy: discover, then try runners one by one in discovery order.
    Sdk,
    /// Debian's HAProxy in front of the runners: leastconn, maxconn, retry-on, checks.
    Haproxy,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Gateway => "byoc-gateway",
            Target::Sdk => "sdk-sequential",
            Target::Haproxy => "haproxy",
        }
    }
}

/// Live Runner routing quality: byoc-gateway against the SDK's sequential strategy and HAProxy.
#[derive(Debug, Parser)]
struct Args {
    /// Length of each target's run, in seconds (the fault schedule scales with it).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Closed-loop clients.
    #[arg(long, default_value_t = 12)]
    clients: usize,
    /// Targets, in the order they run.
    #[arg(long = "target", value_enum, default_values_t = [Target::Gateway, Target::Sdk, Target::Haproxy])]
    targets: Vec<Target>,
    /// The gateway binary.
    #[arg(long, default_value = "target/release/byoc-gateway")]
    bin: PathBuf,
}

/// One member of the pool.
struct Member {
    name: &'static str,
    spec: RunnerSpec,
}

fn members() -> Vec<Member> {
    let base = |latency_ms: u64| RunnerSpec {
        latency_ms,
        jitter_ms: latency_ms / 5,
        ..RunnerSpec::single_shot(ROUTE, APP, CAPACITY)
    };
    vec![
        Member { name: "flapping", spec: base(60) },
        Member { name: "fast", spec: base(50) },
        Member { name: "hang", spec: base(60) },
        Member { name: "medium", spec: base(120) },
        Member { name: "full", spec: base(80) },
        Member { name: "slow", spec: base(700) },
        Member { name: "gone", spec: base(60) },
    ]
}

/// The fault schedule: at a share of the run, a member's runner becomes this.
fn schedule(length: Duration) -> Vec<(Duration, &'static str, RunnerSpec)> {
    let at = |share: f64| length.mul_f64(share);
    let spec = |name: &str| members().into_iter().find(|m| m.name == name).map(|m| m.spec).unwrap_or_default();
    let mut out = Vec::new();
    // Flapping: 500s in alternate 3-second windows.
    let mut t = Duration::from_secs(3);
    let mut failing = true;
    while t < length {
        out.push((t, "flapping", RunnerSpec { status: failing.then_some(500), ..spec("flapping") }));
        failing = !failing;
        t += Duration::from_secs(3);
    }
    out.push((at(0.2), "full", RunnerSpec { busy: CAPACITY, ..spec("full") }));
    out.push((at(0.6), "full", spec("full")));
    out.push((at(0.3), "gone", RunnerSpec { gone: true, ..spec("gone") }));
    out.push((at(0.7), "gone", spec("gone")));
    out.push((at(0.4), "hang", RunnerSpec { hang: true, ..spec("hang") }));
    out.push((at(0.55), "hang", spec("hang")));
    out.sort_by_key(|(t, _, _)| *t);
    out
}

struct Pool {
    sims: Vec<(&'static str, SimHandle)>,
}

impl Pool {
    fn start() -> std::io::Result<Self> {
        let mut sims = Vec::new();
        for m in members() {
            let s = byoc_sim::start(m.name, TcpListener::bind("127.0.0.1:0")?, &[])?;
            s.add_runner(m.spec);
            sims.push((m.name, s));
        }
        Ok(Self { sims })
    }

    async fn run_schedule(&self, length: Duration) {
        let started = tokio::time::Instant::now();
        for (at, name, spec) in schedule(length) {
            tokio::time::sleep_until(started + at).await;
            if let Some((_, s)) = self.sims.iter().find(|(n, _)| *n == name) {
                s.add_runner(spec);
            }
        }
    }

    async fn stop(&self) {
        for (_, s) in &self.sims {
            s.stop().await;
        }
    }

    /// Per member: app requests served, reservations refused for capacity.
    fn usage(&self) -> Vec<(&'static str, u64, u64)> {
        self.sims
            .iter()
            .map(|(n, s)| {
                let st = s.state.runner_stats();
                (*n, st.app_requests, st.refused_capacity)
            })
            .collect()
    }
}

/// One call as a client saw it.
#[derive(Debug, Clone)]
struct Sample {
    latency: Duration,
    good: bool,
    status: u16,
}

fn sha256_hex(b: &[u8]) -> String {
    openssl::sha::sha256(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `body` is the simulator's echo of a call that sent `sent`.
fn good_echo(status: u16, body: &[u8], sent: &[u8]) -> bool {
    status == 200
        && serde_json::from_slice::<Value>(body).is_ok_and(|v| v["body_sha256"].as_str() == Some(&sha256_hex(sent)))
}

/// A call through a proxy (byoc-gateway, HAProxy) at `url`.
async fn proxied_call(client: &awc::Client, url: &str, body: String) -> Sample {
    let started = Instant::now();
    let (status, good) = match client.post(url).send_body(body.clone()).await {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let good = r.body().limit(1 << 20).await.is_ok_and(|b| good_echo(status, &b, body.as_bytes()));
            (status, good)
        }
        Err(_) => (0, false),
    };
    Sample { latency: started.elapsed(), good, status }
}

/// The SDK's strategy for one call (`selection.py`: `runner_selector()` then
/// `RunnerSelectionCursor.next()`): read every orchestrator's `/discovery`, flatten the runners
/// of the app in discovery order, and try them one after another; any failure (an error
/// status, a refused connection, a time-out) moves to the next; when all failed, the call
/// fails (`NoRunnerAvailableError`, counted as 503). No scoring, capacity check or memory.
async fn sdk_call(client: &awc::Client, orchestrators: &[String], body: String) -> Sample {
    let started = Instant::now();
    let lists = futures_util::future::join_all(orchestrators.iter().map(|o| async move {
        let mut r = client.get(format!("{o}/discovery")).timeout(ATTEMPT_TIMEOUT).send().await.ok()?;
        let doc: Value = serde_json::from_slice(&r.body().limit(1 << 20).await.ok()?).ok()?;
        Some(doc)
    }))
    .await;
    let urls: Vec<String> = lists
        .into_iter()
        .flatten()
        .filter_map(|doc| doc.as_array().cloned())
        .flatten()
        .flat_map(|o| o["runners"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["app"] == APP)
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect();
    for url in urls {
        let Ok(mut r) = client.post(format!("{url}/run")).timeout(ATTEMPT_TIMEOUT).send_body(body.clone()).await else {
            continue;
        };
        let status = r.status().as_u16();
        let Ok(answer) = r.body().limit(1 << 20).await else { continue };
        if (200..300).contains(&status) {
            return Sample { latency: started.elapsed(), good: good_echo(status, &answer, body.as_bytes()), status };
        }
    }
    Sample { latency: started.elapsed(), good: false, status: 503 }
}

/// Where a target's calls go.
enum Route {
    Proxy(String),
    Sdk(Vec<String>),
}

async fn call(client: &awc::Client, route: &Route, body: String) -> Sample {
    match route {
        Route::Proxy(url) => proxied_call(client, url, body).await,
        Route::Sdk(orchs) => sdk_call(client, orchs, body).await,
    }
}

/// Runs `clients` closed-loop clients for `length`.
async fn run_load(route: std::sync::Arc<Route>, clients: usize, length: Duration, tag: &str) -> Vec<Sample> {
    let deadline = Instant::now() + length;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (route, tag) = (route.clone(), tag.to_string());
            actix_web::rt::spawn(async move {
                let client = awc::Client::builder().timeout(CLIENT_TIMEOUT).finish();
                let mut samples = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline && n < 1_000_000 {
                    n += 1;
                    samples.push(call(&client, &route, format!("{tag}-c{c}-{n} a lighthouse at dusk")).await);
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            all.extend(s);
        }
    }
    all
}

/// Calls one by one until 5 good in a row (at most 20 s): the target is up and knows the pool.
async fn warm_up(route: &Route) -> bool {
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut streak, mut n) = (0, 0);
    while Instant::now() < deadline && streak < 5 {
        n += 1;
        if call(&client, route, format!("warm-{n}")).await.good {
            streak += 1;
        } else {
            streak = 0;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    streak >= 5
}

/// What one target achieved.
struct Summary {
    calls: usize,
    good: usize,
    goodput: f64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    failures: BTreeMap<u16, usize>,
}

impl Summary {
    fn of(samples: &[Sample], length: Duration) -> Self {
        let mut good: Vec<f64> = samples.iter().filter(|s| s.good).map(|s| s.latency.as_secs_f64() * 1000.0).collect();
        good.sort_by(f64::total_cmp);
        let calls = samples.len();
        let pct = |p: f64| -> Option<f64> {
            let rank = ((p / 100.0) * calls as f64).ceil().max(1.0) as usize;
            good.get(rank - 1).copied()
        };
        let mut failures = BTreeMap::new();
        for s in samples.iter().filter(|s| !s.good) {
            *failures.entry(s.status).or_default() += 1;
        }
        Self {
            calls,
            good: good.len(),
            goodput: good.len() as f64 / length.as_secs_f64(),
            p50: pct(50.0),
            p95: pct(95.0),
            p99: pct(99.0),
            failures,
        }
    }
}

/// A process under test, stopped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_gateway(bin: &Path, dir: &Path, pool: &Pool) -> anyhow::Result<(Proc, Route)> {
    let mut cfg = String::new();
    for (_, s) in &pool.sims {
        let _ = writeln!(cfg, "[[orchestrators]]\nurl = \"{}\"\n", s.url);
    }
    let _ = write!(
        cfg,
        "[log]\nlevel = \"warn\"\n[live_runner]\ndiscovery_refresh = \"1s\"\nhead_timeout = \"{}s\"\nmax_attempts = {ATTEMPTS}\n",
        ATTEMPT_TIMEOUT.as_secs()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg)?;
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        // RTMP ingest off: its default port may be another gateway's on this machine.
        .args(["--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--rtmp-addr", "", "--data-dir"])
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("gateway.log"))?)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let proc = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("byoc-gateway ready") => break line,
            Some(Ok(_)) => continue,
            _ => anyhow::bail!("the gateway exited before it was ready (see {}/gateway.log)", dir.display()),
        }
    };
    let http = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .ok_or_else(|| anyhow::anyhow!("no http= in the ready line"))?;
    Ok((proc, Route::Proxy(format!("http://{http}/apps/{APP}/run"))))
}

fn start_haproxy(dir: &Path, pool: &Pool) -> anyhow::Result<(Proc, Route)> {
    let port = free_port()?;
    let mut servers = String::new();
    for (i, (_, s)) in pool.sims.iter().enumerate() {
        let _ = writeln!(servers, "  server o{i} {} check maxconn {CAPACITY}", s.url.trim_start_matches("http://"));
    }
    let cfg = format!(
        "global
  nbthread 2
  log stderr local0 err
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server {t}s
  timeout queue 30s
  timeout http-request 10s
  option http-buffer-request
  retries {retries}
  retry-on conn-failure empty-response response-timeout 404 500 502 503 504
  option redispatch 1
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance leastconn
  option httpchk
  http-check send meth GET uri /discovery
  http-check expect status 200
  default-server inter 1s fall 2 rise 2 observe layer7 error-limit 5 on-error mark-down
{servers}",
        t = ATTEMPT_TIMEOUT.as_secs(),
        retries = ATTEMPTS - 1,
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg)?;
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log"))?)
        .spawn()?;
    let mut proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || matches!(proc.0.try_wait(), Ok(Some(_))) {
            anyhow::bail!("haproxy did not listen (see {}/haproxy.log)", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((proc, Route::Proxy(format!("http://127.0.0.1:{port}/apps/{ROUTE}/app/run"))))
}

async fn run_one(target: Target, args: &Args, length: Duration, dir: &Path) -> anyhow::Result<(Summary, String)> {
    std::fs::create_dir_all(dir)?;
    let pool = Pool::start()?;
    let (proc, route) = match target {
        Target::Gateway => {
            let (p, r) = start_gateway(&args.bin, dir, &pool)?;
            (Some(p), r)
        }
        Target::Haproxy => {
            let (p, r) = start_haproxy(dir, &pool)?;
            (Some(p), r)
        }
        Target::Sdk => (None, Route::Sdk(pool.sims.iter().map(|(_, s)| s.url.clone()).collect())),
    };
    if !warm_up(&route).await {
        pool.stop().await;
        anyhow::bail!("never answered 5 good calls in a row during warm-up (logs in {})", dir.display());
    }
    let before = pool.usage();
    let route = std::sync::Arc::new(route);
    let (samples, ()) =
        futures_util::join!(run_load(route, args.clients, length, target.name()), pool.run_schedule(length));
    let after = pool.usage();
    drop(proc);
    pool.stop().await;
    let usage = before
        .iter()
        .zip(&after)
        .map(|((n, a0, r0), (_, a1, r1))| format!("{n} {} calls, {} refused full", a1 - a0, r1 - r0))
        .collect::<Vec<_>>()
        .join("; ");
    Ok((Summary::of(&samples, length), usage))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "failed".to_string(), |v| format!("{v:.0}"))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let length = Duration::from_secs(args.seconds.clamp(10, 600));
    let temp = tempfile::tempdir()?;
    println!(
        "\n== Live Runner routing quality: {} runners x {CAPACITY} slots of {APP}, {} clients, {} s per target",
        members().len(),
        args.clients,
        length.as_secs()
    );
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for &target in &args.targets {
        eprintln!("-- {}: starting", target.name());
        match run_one(target, &args, length, &temp.path().join(target.name())).await {
            Ok(r) => rows.push((target, r)),
            Err(e) => {
                eprintln!("-- {}: {e}", target.name());
                failed.push(target.name());
            }
        }
    }
    println!(
        "{:<16} {:>7} {:>7} {:>7} {:>9} {:>7} {:>7} {:>7}  failures by status",
        "target", "calls", "good", "good %", "goodput/s", "p50 ms", "p95 ms", "p99 ms"
    );
    for (target, (s, _)) in &rows {
        let share = if s.calls == 0 { 0.0 } else { 100.0 * s.good as f64 / s.calls as f64 };
        println!(
            "{:<16} {:>7} {:>7} {:>7.1} {:>9.1} {:>7} {:>7} {:>7}  {:?}",
            target.name(),
            s.calls,
            s.good,
            share,
            s.goodput,
            ms(s.p50),
            ms(s.p95),
            ms(s.p99),
            s.failures
        );
    }
    for (target, (_, usage)) in &rows {
        println!("  {}: {usage}", target.name());
    }
    if !failed.is_empty() {
        anyhow::bail!("some targets did not run: {failed:?}");
    }
    Ok(())
}
