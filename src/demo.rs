//! `byoc-gateway demo`: the gateway plus three simulated orchestrators in one process, one
//! of them failing, a short burst of jobs that shows routing and failover, and ready-to-paste
//! `curl` commands. Zero setup: a fresh data dir under the system temp dir unless given.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use byoc_actors::protocol::header::encode_client_header;
use serde_json::json;

use byoc_actors::supervisor::ListPairs;

use crate::app::{self, Gateway};
use crate::cli::DemoArgs;
use crate::config::{Config, StaticOrchestrator};
use byoc_sim::{self as sim, Knobs};

fn header(capability: &str) -> String {
    encode_client_header(&json!({"capability": capability, "request": "{}", "timeout_seconds": 30}))
}

/// Runs the demo until SIGINT/SIGTERM (or right after the burst with `--exit`).
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // The story prints what happens; the gateway's own warnings would interleave with it.
    crate::telemetry::init_tracing("text", "error");
    let bind = || TcpListener::bind("127.0.0.1:0");
    let fast = sim::start(
        "fast",
        bind()?,
        &[
            ("image-to-image", Knobs { latency_ms: 30, ..Knobs::default() }),
            ("depth", Knobs { latency_ms: 15, ..Knobs::default() }),
        ],
    )?;
    let slow = sim::start("slow", bind()?, &[("image-to-image", Knobs { latency_ms: 250, ..Knobs::default() })])?;
    let broken = sim::start(
        "broken",
        bind()?,
        &[
            ("image-to-image", Knobs { error_rate: 1.0, latency_ms: 5, ..Knobs::default() }),
            ("depth", Knobs { oom_rate: 1.0, ..Knobs::default() }),
        ],
    )?;
    let (temp, data_dir) = match &args.data_dir {
        Some(d) => (None, d.clone()),
        None => {
            let d = std::env::temp_dir().join(format!("byoc-gateway-demo-{}", std::process::id()));
            (Some(d.clone()), d)
        }
    };
    let cfg = Config {
        http_addr: args.http_addr.clone(),
        admin_addr: args.admin_addr.clone(),
        data_dir,
        admin_token: Some(args.admin_token.clone()),
        orchestrators: [
            (&fast, "fast", vec!["image-to-image", "depth"]),
            (&slow, "slow", vec!["image-to-image"]),
            (&broken, "broken", vec!["image-to-image", "depth"]),
        ]
        .iter()
        .map(|(s, label, caps)| StaticOrchestrator {
            url: s.url.clone(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            label: Some(label.to_string()),
        })
        .collect(),
        // The demo shows routing; RTMP ingest stays off so it never contends for port 1935.
        streams: crate::config::Streams { rtmp_addr: String::new(), ..Default::default() },
        ..Config::default()
    };
    let gw = Gateway::start(cfg.validate()?).await?;
    let names: BTreeMap<String, &str> =
        [(fast.url.clone(), "fast"), (slow.url.clone(), "slow"), (broken.url.clone(), "broken")].into_iter().collect();

    println!("byoc-gateway demo: gateway http://{} admin http://{}", gw.http_addr, gw.admin_addr);
    println!(
        "simulated orchestrators: fast={} (30 ms)  slow={} (250 ms)  broken={} (image-to-image: every job 500; depth: CUDA out of memory)",
        fast.url, slow.url, broken.url
    );
    let demo =
        Demo { gw: &gw, names: &names, client: awc::Client::builder().timeout(Duration::from_secs(30)).finish() };
    demo.story(args.jobs, &broken.url).await;
    print_curls(&gw, &args.admin_token, &fast.url, &broken.url);
    let shutdown = crate::signals::shutdown_signal()?;
    app::print_ready(&gw);

    if !args.exit {
        let _ = shutdown.await;
    }
    gw.shutdown().await?;
    for s in [&fast, &slow, &broken] {
        s.stop().await;
    }
    if let Some(d) = temp {
        let _ = std::fs::remove_dir_all(d);
    }
    Ok(())
}

/// The demo's gateway, its orchestrators' names and a client.
struct Demo<'a> {
    gw: &'a Gateway,
    names: &'a BTreeMap<String, &'a str>,
    client: awc::Client,
}

/// One job's answer: who answered (by name), how many attempts, the status.
struct Answered {
    status: u16,
    orchestrator: String,
    attempts: u32,
}

impl Demo<'_> {
    /// The story, the same every run: routing by measured latency, a failing orchestrator
    /// tripped and kept out, a GPU out of memory recognised, failover.
    async fn story(&self, jobs: usize, broken_url: &str) {
        // 1. Routing: the fastest orchestrator with room takes the jobs; the others get one
        //    job every 5 s each to stay measured ('broken' fails its one and is failed over).
        let mut by_orch: BTreeMap<String, usize> = BTreeMap::new();
        let mut failovers = 0;
        for _ in 0..jobs {
            let a = self.job("image-to-image", None).await;
            if a.status == 200 {
                *by_orch.entry(a.orchestrator).or_default() += 1;
            }
            failovers += a.attempts.saturating_sub(1);
        }
        println!(
            "\n1. {jobs} image-to-image jobs, one after another: answered by {by_orch:?}; {failovers} failed over."
        );
        println!("   The gateway sends each job to the pair expected to answer first (its measured p50");
        println!("   latency, load and success rate): 'fast'. 'slow' and 'broken' get one job every 5 s to");
        println!("   stay measured; 'broken' failed its job, which was failed over to another orchestrator.");

        // 2. Jobs pinned to 'broken' (parameters.orchestrators.include): five failures in a row
        //    open its breaker, and then it gets no job at all.
        for _ in 0..5 {
            self.job("image-to-image", Some(broken_url)).await;
        }
        let pinned = self.job("image-to-image", Some(broken_url)).await;
        println!("\n2. 5 jobs pinned to 'broken' (parameters.orchestrators.include) failed: its breaker opened;");
        println!("   a 6th pinned job is refused at once with {} (no orchestrator left to try).", pinned.status);

        // 3. The GPU out of memory: recognised in the 500's body and counted as 'oom'.
        let oom = self.job("depth", Some(broken_url)).await;
        let depth = self.job("depth", None).await;
        println!("\n3. A depth job pinned to 'broken' got {} (CUDA out of memory, counted as oom);", oom.status);
        println!(
            "   an unpinned depth job was answered {} by '{}' after {} attempt(s).",
            depth.status, depth.orchestrator, depth.attempts
        );
        self.print_pairs().await;
    }

    async fn job(&self, capability: &str, only: Option<&str>) -> Answered {
        let mut header = json!({"capability": capability, "request": "{}", "timeout_seconds": 30});
        if let Some(url) = only {
            header["parameters"] = json!({"orchestrators": {"include": [url]}}).to_string().into();
        }
        let res = self
            .client
            .post(format!("http://{}/process/request/{capability}", self.gw.http_addr))
            .insert_header(("Livepeer", encode_client_header(&header)))
            .insert_header(("Content-Type", "application/json"))
            .send_body(r#"{"prompt":"a lighthouse at dusk"}"#)
            .await;
        match res {
            Ok(resp) => {
                let h = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                let url = h("X-Orchestrator-Url").unwrap_or_default();
                Answered {
                    status: resp.status().as_u16(),
                    orchestrator: self.names.get(&url).copied().unwrap_or("-").to_string(),
                    attempts: h("X-Gateway-Attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
                }
            }
            Err(_) => Answered { status: 0, orchestrator: "-".into(), attempts: 0 },
        }
    }

    async fn print_pairs(&self) {
        println!("\npair actors now (GET /admin/pairs):");
        let pairs = self.gw.supervisor.send(ListPairs::default()).await.unwrap_or_default();
        for p in pairs {
            let name = p.orchestrator_label.as_deref().unwrap_or("?");
            println!(
                "  {name:<7} {:<15} breaker={:<9} routable={:<5} p50={:>6} ms  ok={:<3} 5xx={:<2} oom={:<2} {}",
                p.capability,
                p.breaker.state,
                p.routable,
                p.latency_p50_ms.map_or_else(|| "-".to_string(), |l| format!("{l:.0}")),
                p.counters.success,
                p.counters.http_5xx,
                p.counters.oom,
                p.unroutable_reason.unwrap_or(""),
            );
        }
    }
}

fn print_curls(gw: &Gateway, token: &str, fast_url: &str, broken_url: &str) {
    let h = header("image-to-image");
    let d = header("depth");
    println!(
        r#"
Status page (open it in a browser): http://{admin}/admin/ui#token={token}

Try it (paste into another terminal while the demo runs):

  # a job, routed by capability; X-Orchestrator-Url says who answered
  curl -si http://{http}/process/request/image-to-image -H 'Livepeer: {h}' -H 'Content-Type: application/json' -d '{{"prompt":"a cat"}}'

  # a depth job: 'broken' answers CUDA out of memory, 'fast' answers
  curl -si http://{http}/process/request/depth -H 'Livepeer: {d}' -H 'Content-Type: application/json' -d '{{}}'

  # every pair actor: breaker, measured latency, counters, last error, why it is out of rotation
  curl -s 'http://{admin}/admin/pairs?capability=image-to-image' -H 'Authorization: Bearer {token}'

  # heal 'broken', send a few jobs, and watch its breaker go half_open then closed
  # (its breaker admits a trial once its open time is up, at most a minute)
  curl -s -X POST '{broken_url}/sim/knobs?capability=image-to-image' -H 'Content-Type: application/json' -d '{{"error_rate":0}}'
  for i in $(seq 20); do curl -s -o /dev/null http://{http}/process/request/image-to-image -H 'Livepeer: {h}' -d '{{}}'; sleep 3; done
  curl -s 'http://{admin}/admin/pairs?capability=image-to-image' -H 'Authorization: Bearer {token}' | grep -o '"orchestrator_label":"[^"]*","capability":"[^"]*","service_addr":"[^"]*","breaker":{{"state":"[a-z_]*"'

  # make 'fast' fail too: jobs fail over (X-Gateway-Attempts: 2) and its breaker opens
  curl -s -X POST '{fast_url}/sim/knobs?capability=image-to-image' -H 'Content-Type: application/json' -d '{{"error_rate":1.0}}'
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -D - http://{http}/process/request/image-to-image -H 'Livepeer: {h}' -d '{{}}' | grep -i -E '^x-(orchestrator-url|gateway-attempts)'; done

  # the registry (each orchestrator with its label), the supervisor, the metrics
  curl -s http://{admin}/admin/orchestrators -H 'Authorization: Bearer {token}'
  curl -s http://{admin}/admin/supervisor -H 'Authorization: Bearer {token}'
  curl -s http://{admin}/metrics | grep '^byoc_gateway_pairs'

  # an unknown capability answers 404 at once; a bad header answers 400
  curl -si http://{http}/process/request/nope -d '{{}}' -H "Livepeer: $(printf '{{"capability":"nope","timeout_seconds":5}}' | base64 -w0)"
  curl -si http://{http}/process/request/x -d '{{}}' -H 'Livepeer: not-base64!'

Ctrl-C stops the demo."#,
        http = gw.http_addr,
        admin = gw.admin_addr,
    );
}
