//! The load of `bench/streams.sh`: live streams through one target, measured from the client.
//!
//! Starts `--media` streams that publish a segment every `--segment-ms` (`--bytes-per-sec` each
//! way) on their trickle ingress and read the processed segments from their egress, and `--data`
//! streams whose data lines are read, for `--seconds`; then stops them and prints one JSON line:
//! segment latencies (from the start of a segment's POST to the first and to the last byte of the
//! processed segment read back: each segment carries its number and send time), MiB relayed, data
//! lines read, errors.
//!
//! Targets: `gateway` (`--url` is byoc-gateway: `/process/stream/start`, the stream's own
//! `publish_url`, `subscribe_url`, `data_url`), `direct` (`--url` is the simulated orchestrator:
//! `/ai/stream/start` with a job header, its trickle channels) and `nginx` (`--url` is a plain
//! proxy in front of that orchestrator: the same calls, every channel URL rewritten to the proxy).
//!
//! Not part of the gateway; it exists to be measured.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::header::HeaderMap;
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{json, Value};

#[derive(clap::Parser, Debug)]
struct Args {
    /// `gateway`, `direct` or `nginx`.
    #[arg(long)]
    target: String,
    /// The target's base URL.
    #[arg(long)]
    url: String,
    /// Media streams.
    #[arg(long, default_value_t = 20)]
    media: usize,
    /// Data-only streams.
    #[arg(long, default_value_t = 200)]
    data: usize,
    /// Media bytes per second each way, per stream.
    #[arg(long, default_value_t = 1 << 20)]
    bytes_per_sec: usize,
    /// One segment every this many ms.
    #[arg(long, default_value_t = 500)]
    segment_ms: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The capability.
    #[arg(long, default_value = "bench")]
    capability: String,
    /// Stream id prefix (unique per run).
    #[arg(long, default_value = "run")]
    tag: String,
    /// Written once every stream has started (the script samples the gateway's memory then).
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
}

/// What one stream's URLs are.
#[derive(Clone, Debug, Default)]
struct Urls {
    id: String,
    publish: String,
    subscribe: String,
    data: String,
    stop: String,
}

#[derive(Default)]
struct Results {
    first_ms: Vec<f64>,
    last_ms: Vec<f64>,
    bytes: u64,
    data_lines: u64,
    errors: u64,
    started: u64,
}

fn header(id: &str, cap: &str, parameters: &Value, client: bool) -> String {
    let v = if client {
        json!({"capability": cap, "timeout_seconds": 30, "request": "{}", "parameters": parameters.to_string()})
    } else {
        json!({"id": id, "capability": cap, "timeout_seconds": 30, "request": json!({"stream_id": id}).to_string(),
            "parameters": parameters.to_string(), "capability_url": "", "sender": "", "sig": ""})
    };
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// The channel URL an orchestrator gave, moved onto the target's origin (a proxy in front of it).
fn onto(url: &str, base: &str) -> String {
    match url.find("/ai/trickle/") {
        Some(i) => format!("{}{}", base.trim_end_matches('/'), &url[i..]),
        None => url.to_string(),
    }
}

async fn start(client: &awc::Client, a: &Args, id: &str, media: bool) -> Result<Urls, String> {
    let params = if media {
        json!({"enable_video_ingress": true, "enable_video_egress": true})
    } else {
        json!({"enable_data_output": true})
    };
    if a.target == "gateway" {
        let mut resp = client
            .post(format!("{}/process/stream/start", a.url))
            .insert_header(("Livepeer", header(id, &a.capability, &params, true)))
            .send_body(json!({"stream_id": id}).to_string())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{id}: start answered {status}: {v}"));
        }
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        return Ok(Urls {
            id: id.into(),
            publish: s("publish_url"),
            subscribe: s("subscribe_url"),
            data: s("data_url"),
            stop: s("stop_url"),
        });
    }
    let resp = client
        .post(format!("{}/ai/stream/start", a.url))
        .insert_header(("Livepeer", header(id, &a.capability, &params, false)))
        .send_body(json!({"params": {}}).to_string())
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("start answered {}", resp.status()));
    }
    let h = |k: &str| resp.headers().get(k).and_then(|v| v.to_str().ok()).map(|u| onto(u, &a.url)).unwrap_or_default();
    Ok(Urls {
        id: id.into(),
        publish: h("x-publish-url"),
        subscribe: h("x-subscribe-url"),
        data: h("x-data-url"),
        stop: String::new(),
    })
}

async fn stop(client: &awc::Client, a: &Args, u: &Urls) {
    let _ = if a.target == "gateway" {
        client.post(&u.stop).send().await.map(drop)
    } else {
        client
            .post(format!("{}/ai/stream/stop", a.url))
            .insert_header(("Livepeer", header(&u.id, &a.capability, &json!({}), false)))
            .send()
            .await
            .map(drop)
    };
}

/// Publishes a segment every `segment_ms` until `until`: 16 bytes of number and send time, then
/// filler.
async fn publish(
    client: awc::Client,
    u: Urls,
    size: usize,
    every: Duration,
    epoch: Instant,
    until: Instant,
    r: Rc<RefCell<Results>>,
) {
    let mut tick = tokio::time::interval(every);
    let filler = vec![b'x'; size.saturating_sub(16)];
    for seq in 0u64.. {
        tick.tick().await;
        if Instant::now() >= until {
            return;
        }
        let mut body = Vec::with_capacity(size.max(16));
        body.extend_from_slice(&seq.to_be_bytes());
        body.extend_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
        body.extend_from_slice(&filler);
        let n = body.len() as u64;
        match client.post(format!("{}/{seq}", u.publish)).send_body(body).await {
            Ok(mut resp) if resp.status().is_success() => {
                let _ = resp.body().await;
                r.borrow_mut().bytes += n;
            }
            Ok(mut resp) => {
                let body = resp.body().await.unwrap_or_default();
                if r.borrow().errors < 5 {
                    eprintln!("{} publish {seq}: {} {}", u.id, resp.status(), String::from_utf8_lossy(&body));
                }
                r.borrow_mut().errors += 1;
            }
            Err(e) => {
                if r.borrow().errors < 5 {
                    eprintln!("{} publish {seq}: {e}", u.id);
                }
                r.borrow_mut().errors += 1;
            }
        }
    }
}

/// Reads the processed segments from the live edge until `until`, noting each one's latency.
async fn subscribe(client: awc::Client, u: Urls, epoch: Instant, until: Instant, r: Rc<RefCell<Results>>) {
    let mut seq: i64 = -1;
    let mut warmup = 2;
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        let resp = tokio::time::timeout(left, client.get(format!("{}/{seq}", u.subscribe)).send()).await;
        let Ok(Ok(mut resp)) = resp else { break };
        let got: Option<i64> = header_i64(resp.headers(), "lp-trickle-seq");
        if resp.status().as_u16() == 470 {
            seq = header_i64(resp.headers(), "lp-trickle-latest").unwrap_or(-1);
            continue;
        }
        if !resp.status().is_success() {
            r.borrow_mut().errors += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut head = Vec::new();
        let mut first = None;
        let mut n = 0u64;
        while let Some(chunk) = resp.next().await {
            let Ok(chunk) = chunk else { break };
            n += chunk.len() as u64;
            if first.is_none() {
                head.extend_from_slice(&chunk[..chunk.len().min(256)]);
                if let Some(t0) = sent_at(&head) {
                    first = Some(epoch.elapsed().as_micros() as f64 - t0);
                }
            }
        }
        let last = epoch.elapsed().as_micros() as f64;
        let mut res = r.borrow_mut();
        res.bytes += n;
        if let (Some(f), Some(t0)) = (first, sent_at(&head)) {
            if warmup > 0 {
                warmup -= 1;
            } else {
                res.first_ms.push(f / 1000.0);
                res.last_ms.push((last - t0) / 1000.0);
            }
        }
        seq = got.map_or(-1, |s| s + 1);
    }
}

/// The send time a processed segment carries: after the runner's marker line, 8 bytes of number
/// then 8 of micros.
fn sent_at(head: &[u8]) -> Option<f64> {
    let nl = head.iter().position(|b| *b == b'\n')?;
    let rest = head.get(nl + 1..nl + 17)?;
    Some(u64::from_be_bytes(rest[8..16].try_into().ok()?) as f64)
}

fn header_i64(h: &HeaderMap, name: &str) -> Option<i64> {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Reads a data stream until `until`: SSE from the gateway, the `-data` trickle channel otherwise.
async fn data(client: awc::Client, a_gateway: bool, u: Urls, until: Instant, r: Rc<RefCell<Results>>) {
    if a_gateway {
        let Ok(mut resp) = client.get(&u.data).send().await else {
            r.borrow_mut().errors += 1;
            return;
        };
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, resp.next()).await {
                Ok(Some(Ok(chunk))) => {
                    let lines = chunk.windows(6).filter(|w| w == b"data: ").count() as u64;
                    let mut res = r.borrow_mut();
                    res.data_lines += lines;
                    res.bytes += chunk.len() as u64;
                }
                _ => return,
            }
        }
    }
    let mut seq: i64 = -1;
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Ok(mut resp)) = tokio::time::timeout(left, client.get(format!("{}/{seq}", u.data)).send()).await else {
            return;
        };
        let got = header_i64(resp.headers(), "lp-trickle-seq");
        if resp.status().as_u16() == 470 {
            seq = header_i64(resp.headers(), "lp-trickle-latest").unwrap_or(-1);
            continue;
        }
        let body = resp.body().await.unwrap_or_default();
        let mut res = r.borrow_mut();
        res.data_lines += body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        res.bytes += body.len() as u64;
        seq = got.map_or(-1, |s| s + 1);
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[actix_web::main]
async fn main() {
    let a = <Args as clap::Parser>::parse();
    let connector = awc::Connector::new().limit(20_000).timeout(Duration::from_secs(5));
    let client = awc::Client::builder().connector(connector).disable_timeout().finish();
    let results = Rc::new(RefCell::new(Results::default()));
    // Start every stream (a few at a time: the target sees a burst, not a stampede).
    let mut streams = Vec::new();
    let ids: Vec<(String, bool)> = (0..a.media)
        .map(|i| (format!("{}-m{i}", a.tag), true))
        .chain((0..a.data).map(|i| (format!("{}-d{i}", a.tag), false)))
        .collect();
    for batch in ids.chunks(16) {
        let started =
            futures_util::future::join_all(batch.iter().map(|(id, media)| start(&client, &a, id, *media))).await;
        for (s, (_, media)) in started.into_iter().zip(batch) {
            match s {
                Ok(u) => streams.push((u, *media)),
                Err(e) => {
                    eprintln!("start failed: {e}");
                    results.borrow_mut().errors += 1;
                }
            }
        }
    }
    results.borrow_mut().started = streams.len() as u64;
    if let Some(f) = &a.ready_file {
        let _ = std::fs::write(f, "ready\n");
    }
    let epoch = Instant::now();
    let until = epoch + Duration::from_secs(a.seconds);
    let every = Duration::from_millis(a.segment_ms);
    let size = a.bytes_per_sec * a.segment_ms as usize / 1000;
    let mut tasks = Vec::new();
    for (u, media) in &streams {
        if *media {
            tasks.push(actix_web::rt::spawn(subscribe(client.clone(), u.clone(), epoch, until, results.clone())));
            tasks.push(actix_web::rt::spawn(publish(
                client.clone(),
                u.clone(),
                size,
                every,
                epoch,
                until,
                results.clone(),
            )));
        } else {
            tasks.push(actix_web::rt::spawn(data(
                client.clone(),
                a.target == "gateway",
                u.clone(),
                until,
                results.clone(),
            )));
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(a.seconds + 15), futures_util::future::join_all(tasks)).await;
    for chunk in streams.chunks(16) {
        futures_util::future::join_all(chunk.iter().map(|(u, _)| stop(&client, &a, u))).await;
    }
    let mut r = results.borrow_mut();
    let (n, mib) = (r.last_ms.len(), r.bytes as f64 / (1 << 20) as f64);
    let out = json!({
        "target": a.target, "streams": r.started, "segments": n,
        "first_p50_ms": percentile(&mut r.first_ms, 0.5), "first_p99_ms": percentile(&mut r.first_ms, 0.99),
        "last_p50_ms": percentile(&mut r.last_ms, 0.5), "last_p99_ms": percentile(&mut r.last_ms, 0.99),
        "mib": (mib * 10.0).round() / 10.0, "data_lines": r.data_lines, "errors": r.errors,
    });
    println!("{out}");
}
