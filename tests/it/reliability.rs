//! Reliability: faults injected under load (chaos), kill -9 during load and admin writes,
//! hostile HTTP, and a failing disk. Every loop is bounded in count and time; every server is
//! on loopback.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use byoc_actors::store::InjectWriteFailure;
use byoc_actors::supervisor::CrashPair;
use byoc_sim::{self as sim, Knobs, SimHandle};
use serde_json::{json, Value};

use crate::support::*;

#[actix_web::test]
async fn a_failing_disk_turns_admin_mutations_into_503s_while_routing_continues() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    assert_eq!(gw.job("depth", "before").await.status, 200);
    gw.gw.store.send(InjectWriteFailure(true)).await.expect("store answers");

    let before = gw.admin_get("/admin/orchestrators").await.json();
    gw.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:9"})).await.error(503, "store-unavailable");
    gw.admin_put("/admin/capabilities/depth", json!({"max_attempts": 1})).await.error(503, "store-unavailable");
    let id = before[0]["id"].as_str().expect("id").to_string();
    gw.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"enabled": false}))
        .await
        .error(503, "store-unavailable");
    gw.admin_delete(&format!("/admin/orchestrators/{id}")).await.error(503, "store-unavailable");
    // Nothing changed in memory either, and jobs still flow.
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json(), before);
    assert_eq!(gw.admin_get("/admin/capabilities/depth").await.json()["policy"], Value::Null, "no policy was set");
    for i in 0..5 {
        assert_eq!(gw.job("depth", &format!("during{i}")).await.status, 200, "routing never waits on the disk");
    }

    gw.gw.store.send(InjectWriteFailure(false)).await.expect("store answers");
    assert_eq!(gw.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:9"})).await.status, 201);
}

fn raw(addr: &str, request: &[u8]) -> String {
    let addr: SocketAddr = addr.trim_start_matches("http://").parse().expect("addr");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[actix_web::test]
async fn hostile_http_gets_clear_errors_and_changes_nothing() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.limits.header_read_timeout = Duration::from_secs(1);
        c.limits.body_read_timeout = Duration::from_secs(1);
    })
    .await;
    let http = gw.http.clone();
    let sup_before = gw.admin_get("/admin/supervisor").await.json();
    let hdr = job_header("depth", "h");
    let answers = actix_web::rt::task::spawn_blocking(move || {
        let mut out = BTreeMap::new();
        // Oversize headers.
                let big = format!("POST /process/request/depth HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(200 * 1024));
        out.insert("oversize-header", raw(&http, big.as_bytes()));
        let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
        out.insert("too-many-headers", raw(&http, format!("POST /process/request/depth HTTP/1.1\r\nHost: x\r\n{many}Content-Length: 0\r\n\r\n").as_bytes()));
        // Invalid UTF-8 in the Livepeer header and in the path.
        let mut bad = b"POST /process/request/depth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nLivepeer: \xff\xfe\xfd\r\n\r\n".to_vec();
        out.insert("utf8-header", raw(&http, &bad));
        bad = format!("POST /process/request/%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nLivepeer: {hdr}\r\n\r\n").into_bytes();
        out.insert("utf8-path", raw(&http, &bad));
        // Slow clients: headers never finish; a body that never arrives.
        out.insert("slow-headers", raw(&http, b"POST /process/request/depth HTTP/1.1\r\nHost: x\r\n"));
        let slow_body = format!("POST /process/request/depth HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nLivepeer: {hdr}\r\n\r\n0123456789");
        out.insert("slow-body", raw(&http, slow_body.as_bytes()));
        out
    })
    .await
    .expect("join");
    let status = |k: &str| answers[k].lines().next().unwrap_or("").to_string();
    assert!(status("oversize-header").contains(" 431"), "{}", status("oversize-header"));
    assert!(status("too-many-headers").contains(" 431"), "{}", status("too-many-headers"));
    assert!(
        status("utf8-header").contains(" 400") && answers["utf8-header"].contains("invalid-livepeer-header"),
        "{}",
        answers["utf8-header"]
    );
    let p = status("utf8-path");
    assert!(p.starts_with("HTTP/1.1 ") && !p.contains(" 500"), "{p}");
    // The server closed the slow connections by itself (read_to_end returned).
    assert!(!status("slow-headers").contains(" 200"), "{}", answers["slow-headers"]);
    assert!(
        status("slow-body").contains(" 408") && answers["slow-body"].contains("body-timeout"),
        "{}",
        answers["slow-body"]
    );

    assert_eq!(
        a.state.stats("depth").jobs,
        if status("utf8-path").contains(" 200") { 1 } else { 0 },
        "only a well-formed job may reach it"
    );
    let sup_after = gw.admin_get("/admin/supervisor").await.json();
    assert_eq!(sup_after["pair_actors"], sup_before["pair_actors"], "no state from hostile input");
    assert_eq!(gw.job("depth", "still-serving").await.status, 200);
}

/// One simulator that the chaos loop may fault; `None` while it is crashed.
struct Chaotic {
    name: String,
    addr: SocketAddr,
    sim: Option<SimHandle>,
}

const CHAOS_NAMES: [&str; 4] = ["c0", "c1", "c2", "c3"];

#[actix_web::test]
async fn chaos_under_load_never_produces_a_wrong_answer() {
    // One orchestrator is never faulted, so a healthy alternative always exists: every job
    // must succeed, with the right body, whatever happens to the others.
    let anchor = sim("anchor", &[("depth", Knobs { latency_ms: 15, capacity: 1000, ..Knobs::default() })]);
    let chaos: Vec<Rc<RefCell<Chaotic>>> = CHAOS_NAMES
        .iter()
        .map(|n| {
            let s = sim(n, &[("depth", Knobs { latency_ms: 3, capacity: 1000, ..Knobs::default() })]);
            let addr = s.url.trim_start_matches("http://").parse().expect("addr");
            Rc::new(RefCell::new(Chaotic { name: n.to_string(), addr, sim: Some(s) }))
        })
        .collect();
    let urls: Vec<String> =
        chaos.iter().map(|c| c.borrow().sim.as_ref().map(|s| s.url.clone()).unwrap_or_default()).collect();
    let mut orchs: Vec<(&SimHandle, &[&str])> = vec![(&anchor, &["depth"])];
    let handles: Vec<SimHandle> = chaos.iter().filter_map(|c| c.borrow().sim.clone()).collect();
    for h in &handles {
        orchs.push((h, &["depth"]));
    }
    let gw = gateway_with(&orchs, |c| {
        c.routing.token_refresh = Duration::from_millis(200);
        c.routing.token_retry = Duration::from_millis(100);
        c.capabilities.insert(
            "depth".into(),
            serde_json::from_value(json!({
                "max_attempts": 6, "retry_timeout": "20s", "per_try_timeout": "1s",
                "response_content_type": "application/json", "max_price_per_unit": 100,
                "retry_budget_percent": 10.0, "retry_budget_min_per_sec": 1000, "cold_start_concurrency": 4
            }))
            .expect("policy"),
        );
    })
    .await;
    // Warm every pair (a cold pair admits few jobs), then start.
    eventually("all pairs routable", 250, || async {
        gw.pairs("depth").await.iter().all(|p| p["routable"] == true).then_some(())
    })
    .await;
    for i in 0..10 {
        assert_eq!(gw.job("depth", &format!("warm{i}")).await.status, 200);
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let faults: Rc<RefCell<BTreeMap<&'static str, u32>>> = Rc::default();
    let injector = {
        let (chaos, faults, sup) = (chaos.clone(), faults.clone(), gw.gw.supervisor.clone());
        let ids: Vec<String> = {
            let pairs = gw.pairs("depth").await;
            urls.iter()
                .map(|u| {
                    pairs
                        .iter()
                        .find(|p| p["orchestrator_url"] == u.as_str())
                        .map(|p| p["orchestrator"].as_str().unwrap_or("").to_string())
                        .unwrap_or_default()
                })
                .collect()
        };
        actix_web::rt::spawn(async move {
            let mut round = 0u64;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(250)).await; // pacing of the fault schedule, not synchronisation
                round += 1;
                let i = rand::random_range(0..chaos.len());
                let kind = ["crash", "hang", "oom", "cold", "wrong-type", "refuse", "price", "actor-crash", "heal"]
                    [rand::random_range(0..9)];
                // Borrows of the shared state never span an await.
                let current = chaos[i].borrow().sim.clone();
                let Some(s) = current else {
                    // A crashed simulator comes back (on the same port) before anything else.
                    let mut c = chaos[i].borrow_mut();
                    let l = TcpListener::bind(c.addr).expect("rebind");
                    let knobs = [("depth", Knobs { latency_ms: 3, capacity: 1000, ..Knobs::default() })];
                    c.sim = Some(sim::start(&c.name, l, &knobs).expect("restart"));
                    *faults.borrow_mut().entry("restart").or_default() += 1;
                    continue;
                };
                let patch = match kind {
                    "crash" => {
                        s.stop().await;
                        chaos[i].borrow_mut().sim = None;
                        None
                    }
                    "hang" => Some(json!({"hang": true})),
                    "oom" => Some(json!({"oom_rate": 1.0})),
                    "cold" => Some(json!({"cold_start_jobs": s.state.stats("depth").jobs + 3, "cold_start_ms": 700})),
                    "wrong-type" => Some(json!({"wrong_content_type": true})),
                    "refuse" => Some(json!({"refuse": true})),
                    "price" => Some(json!({"price_per_unit": 500})),
                    "actor-crash" => {
                        let _ = sup.send(CrashPair { orchestrator: ids[i].clone(), capability: "depth".into() }).await;
                        None
                    }
                    _ => Some(
                        json!({"hang": false, "oom_rate": 0.0, "cold_start_jobs": 0, "wrong_content_type": false, "refuse": false, "price_per_unit": 0}),
                    ),
                };
                if let Some(p) = patch {
                    // Each fault replaces the previous one on that simulator.
                    let mut base = json!({"hang": false, "oom_rate": 0.0, "wrong_content_type": false, "refuse": false, "price_per_unit": 0});
                    if let (Some(b), Some(o)) = (base.as_object_mut(), p.as_object()) {
                        b.extend(o.clone());
                    }
                    s.state.patch(Some("depth"), &base).expect("knobs");
                }
                *faults.borrow_mut().entry(kind).or_default() += 1;
            }
            round
        })
    };

    // Six concurrent clients, each bounded in count and time.
    let mut workers = Vec::new();
    for w in 0..6 {
        let client = gw.client.clone();
        let url = format!("{}/process/request/depth", gw.http);
        workers.push(actix_web::rt::spawn(async move {
            let mut results: Vec<(String, u16, Value, u32)> = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline && n < 400 {
                n += 1;
                let id = format!("w{w}-{n}");
                let req = client
                    .post(&url)
                    .insert_header(("Livepeer", job_header("depth", &id)))
                    .insert_header(("Content-Type", "application/json"));
                let ans = read(req.send_body(format!("{{\"job\":\"{id}\"}}")).await).await;
                let attempts = ans.header("x-gateway-attempts").and_then(|v| v.parse().ok()).unwrap_or(0);
                let body: Value = serde_json::from_slice(&ans.body).unwrap_or(Value::Null);
                results.push((id, ans.status, body, attempts));
            }
            results
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let rounds = injector.await.expect("injector");

    let mut violations = Vec::new();
    let mut by_sim: BTreeMap<String, u32> = BTreeMap::new();
    let mut failovers = 0;
    for (id, status, body, attempts) in &all {
        if *status != 200 {
            violations.push(format!("{id}: status {status}: {body}"));
            continue;
        }
        if body["job_id"] != id.as_str() || body["capability"] != "depth" || body["parameters"] != "{}" {
            violations.push(format!("{id}: wrong body {body}"));
        }
        *by_sim.entry(body["sim"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        if *attempts > 1 {
            failovers += 1;
        }
    }
    eprintln!(
        "chaos summary: {} jobs in {rounds} fault rounds, faults {:?}, answered by {by_sim:?}, {failovers} failed over, {} violations",
        all.len(),
        faults.borrow(),
        violations.len()
    );
    assert!(all.len() >= 100, "the load ran ({} jobs)", all.len());
    assert!(faults.borrow().values().sum::<u32>() >= 10, "faults were injected");
    assert!(violations.is_empty(), "{violations:#?}");
}

#[actix_web::test]
async fn kill_9_during_load_and_admin_writes_loses_no_acknowledged_change() {
    let a = sim("a", &[("depth", Knobs { latency_ms: 2, capacity: 1000, ..Knobs::default() })]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, "[routing]\nflush_every = \"200ms\"\n").expect("config");
    let data = dir.path().join("data");
    let (cfg, data) = (cfg.to_str().expect("utf-8").to_string(), data.to_str().expect("utf-8").to_string());
    let orch = a.url.clone();
    let args = gateway_args(&data, &["--config", &cfg, "--orch-addr", &orch]);
    let acked: Rc<RefCell<Vec<String>>> = Rc::default();
    let mut last_policy = None;

    for round in 0..3u32 {
        let gw = Process::spawn(&args);
        let c = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
        // What earlier rounds acknowledged is all there, and the store opened cleanly.
        let orchs =
            read(c.get(format!("{}/admin/orchestrators", gw.admin)).bearer_auth(TOKEN).send().await).await.json();
        let urls: Vec<&str> = orchs.as_array().expect("list").iter().filter_map(|o| o["url"].as_str()).collect();
        for u in acked.borrow().iter() {
            assert!(urls.contains(&u.as_str()), "round {round}: acknowledged {u} lost; have {urls:?}");
        }
        if let Some((acked_value, in_flight)) = last_policy {
            // The last acknowledged value, or a newer one whose answer the kill cut off.
            let cap = read(c.get(format!("{}/admin/capabilities/depth", gw.admin)).bearer_auth(TOKEN).send().await)
                .await
                .json();
            let stored = cap["policy"]["max_attempts"].as_u64();
            assert!(
                stored == Some(acked_value) || stored == Some(in_flight),
                "round {round}: acknowledged policy lost: {cap}"
            );
        }
        if round > 0 {
            let pair =
                read(c.get(format!("{}/admin/pairs?capability=depth", gw.admin)).bearer_auth(TOKEN).send().await)
                    .await
                    .json();
            let anchor = pair
                .as_array()
                .and_then(|v| v.iter().find(|p| p["orchestrator_url"] == orch.as_str()).cloned())
                .expect("pair");
            assert!(anchor["counters"]["success"].as_u64() >= Some(1), "round {round}: scores resumed: {anchor}");
        }

        // Load and admin writes at the same time; kill -9 while both run.
        let successes: Rc<RefCell<u32>> = Rc::default();
        let load = {
            let (c, url, successes) = (c.clone(), format!("{}/process/request/depth", gw.http), successes.clone());
            actix_web::rt::spawn(async move {
                for i in 0..500 {
                    let req = c.post(&url).insert_header(("Livepeer", job_header("depth", &format!("r{round}-{i}"))));
                    match req.send_body("{}").await {
                        Ok(r) if r.status().is_success() => *successes.borrow_mut() += 1,
                        Ok(_) => {}
                        Err(_) => break, // the gateway is gone
                    }
                }
            })
        };
        let writer = {
            let (c, admin, acked) = (c.clone(), gw.admin.clone(), acked.clone());
            actix_web::rt::spawn(async move {
                let mut policy: Option<(u64, u64)> = None;
                for i in 0..200u32 {
                    let url = format!("http://127.0.0.1:{}", 20_000 + round * 1000 + i);
                    let Ok(mut resp) = c
                        .post(format!("{admin}/admin/orchestrators"))
                        .bearer_auth(TOKEN)
                        .send_json(&json!({"url": url}))
                        .await
                    else {
                        break;
                    };
                    let _ = resp.body().await;
                    if resp.status().as_u16() == 201 {
                        acked.borrow_mut().push(url);
                    }
                    let attempts = u64::from(1 + (i % 5));
                    let previous = policy.map_or(attempts, |(a, _)| a);
                    policy = Some((previous, attempts));
                    let Ok(resp) = c
                        .put(format!("{admin}/admin/capabilities/depth"))
                        .bearer_auth(TOKEN)
                        .send_json(&json!({"max_attempts": attempts}))
                        .await
                    else {
                        break;
                    };
                    if resp.status().as_u16() == 200 {
                        policy = Some((attempts, attempts));
                    }
                }
                policy
            })
        };
        let target = acked.borrow().len() + 5;
        eventually("admin writes acknowledged", 500, || async { (acked.borrow().len() >= target).then_some(()) }).await;
        // Scores are saved in batches (best effort between saves): wait until one batch taken
        // after some successful jobs is on disk, so that there is something to resume.
        eventually("jobs answered", 500, || async { (*successes.borrow() >= 3).then_some(()) }).await;
        let after =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        eventually("scores saved", 500, || async {
            let s = read(c.get(format!("{}/admin/supervisor", gw.admin)).bearer_auth(TOKEN).send().await).await.json();
            (s["scores_saved_at_unix_ms"].as_u64() > Some(after)).then_some(())
        })
        .await;
        assert_eq!(gw.signal_and_wait("KILL"), None);
        let _ = load.await;
        last_policy = writer.await.expect("writer").or(last_policy);
    }
    let gw = Process::spawn(&args);
    let c = awc::Client::default();
    let orchs = read(c.get(format!("{}/admin/orchestrators", gw.admin)).bearer_auth(TOKEN).send().await).await.json();
    let n = orchs.as_array().map_or(0, Vec::len);
    assert!(n > acked.borrow().len(), "every acknowledged orchestrator (plus the configured one) is there: {n}");
}
