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
    crate::telemetry::init_tracing("text", "warn");
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
            (&fast, vec!["image-to-image", "depth"]),
            (&slow, vec!["image-to-image"]),
            (&broken, vec!["image-to-image", "depth"]),
        ]
        .iter()
        .map(|(s, caps)| StaticOrchestrator {
            url: s.url.clone(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
        })
        .collect(),
        ..Config::default()
    };
    let gw = Gateway::start(cfg.validate()?).await?;
    let names: BTreeMap<String, &str> =
        [(fast.url.clone(), "fast"), (slow.url.clone(), "slow"), (broken.url.clone(), "broken")].into_iter().collect();

    println!("byoc-gateway demo: gateway http://{} admin http://{}", gw.http_addr, gw.admin_addr);
    println!(
        "simulated orchestrators: fast={} (30 ms)  slow={} (250 ms)  broken={} (500s; depth: CUDA OOM)",
        fast.url, slow.url, broken.url
    );
    burst(&gw, &names, args.jobs).await;
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

async fn burst(gw: &Gateway, names: &BTreeMap<String, &str>, jobs: usize) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let url = format!("http://{}/process/request/image-to-image", gw.http_addr);
    let mut by_orch: BTreeMap<String, usize> = BTreeMap::new();
    let mut failovers = 0;
    let mut errors = 0;
    for _ in 0..jobs {
        let res = client
            .post(&url)
            .insert_header(("Livepeer", header("image-to-image")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(r#"{"prompt":"a lighthouse at dusk"}"#)
            .await;
        match res {
            Ok(resp) if resp.status().is_success() => {
                let orch = resp.headers().get("X-Orchestrator-Url").and_then(|v| v.to_str().ok()).unwrap_or("?");
                *by_orch.entry(names.get(orch).copied().unwrap_or(orch).to_string()).or_default() += 1;
                let attempts: u32 =
                    resp.headers().get("X-Gateway-Attempts").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
                failovers += attempts.saturating_sub(1);
            }
            _ => errors += 1,
        }
    }
    println!("\nsent {jobs} image-to-image jobs: answered by {by_orch:?}, {failovers} failed over, {errors} errors");
    println!("pair actors now (from /admin/pairs):");
    let pairs = gw.supervisor.send(ListPairs::default()).await.unwrap_or_default();
    for p in pairs {
        let name = names.get(&p.orchestrator_url).copied().unwrap_or("?");
        println!(
            "  {name:<7} {:<15} breaker={:<9} routable={:<5} latency_p50={:>7} ms  success_rate={:.2}  ok={} 5xx={}",
            p.capability,
            p.breaker.state,
            p.routable,
            p.latency_p50_ms.map_or_else(|| "-".to_string(), |l| format!("{l:.1}")),
            p.success_rate,
            p.counters.success,
            p.counters.http_5xx
        );
    }
}

fn print_curls(gw: &Gateway, token: &str, fast_url: &str, broken_url: &str) {
    let h = header("image-to-image");
    let d = header("depth");
    println!(
        r#"
Try it (paste into another terminal):

  # a job, routed by capability; see X-Orchestrator-Url in the answer
  curl -si http://{http}/process/request/image-to-image -H 'Livepeer: {h}' -H 'Content-Type: application/json' -d '{{"prompt":"a cat"}}'

  # depth: 'broken' answers CUDA out-of-memory; a job that lands there fails over to 'fast',
  # and the scorer then steers depth jobs away from 'broken' (see its counters in /admin/pairs)
  curl -si http://{http}/process/request/depth -H 'Livepeer: {d}' -d '{{}}'

  # make 'fast' fail too: the next jobs fail over to 'slow' (X-Gateway-Attempts: 2) until the
  # scorer steers away from 'fast'; its breaker opens after 5 failures in a row
  curl -s -X POST '{fast_url}/sim/knobs?capability=image-to-image' -H 'Content-Type: application/json' -d '{{"error_rate":1.0}}'
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -D - http://{http}/process/request/image-to-image -H 'Livepeer: {h}' -d '{{}}' | grep -i -E '^x-(orchestrator-url|gateway-attempts)'; done

  # every pair actor with its breaker, latency, success rate, in-flight count, capacity, last error
  curl -s http://{admin}/admin/pairs -H 'Authorization: Bearer {token}'

  # heal 'broken' and watch its breaker go half-open then closed within a minute
  curl -s -X POST '{broken_url}/sim/knobs?capability=image-to-image' -H 'Content-Type: application/json' -d '{{"error_rate":0}}'

  # hot-add an orchestrator, list the registry, look at the supervisor and the metrics
  curl -si http://{admin}/admin/orchestrators -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{{"url":"http://127.0.0.1:8935"}}'
  curl -s http://{admin}/admin/orchestrators -H 'Authorization: Bearer {token}'
  curl -s http://{admin}/admin/supervisor -H 'Authorization: Bearer {token}'
  curl -s http://{admin}/metrics | grep byoc_gateway_

  # an unknown capability answers 404 at once; a bad header answers 400
  curl -si http://{http}/process/request/nope -d '{{}}' -H "Livepeer: $(printf '{{"capability":"nope","timeout_seconds":5}}' | base64 -w0)"
  curl -si http://{http}/process/request/x -d '{{}}' -H 'Livepeer: not-base64!'

Ctrl-C stops the demo."#,
        http = gw.http_addr,
        admin = gw.admin_addr,
    );
}
