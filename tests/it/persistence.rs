//! Persistence across real restarts of the gateway process on the same data dir, and
//! graceful shutdown on SIGTERM/SIGINT.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::*;
use byoc_sim::Knobs;

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(30)).finish()
}

async fn get(c: &awc::Client, url: &str) -> Answer {
    read(c.get(url).bearer_auth(TOKEN).send().await).await
}

#[actix_web::test]
async fn hot_added_orchestrator_and_learned_scores_survive_a_restart() {
    let a = sim("a", &[("depth", Knobs { latency_ms: 40, ..healthy() })]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let args = gateway_args(data, &[]);
    let c = client();

    let first = Process::spawn(&args);
    let added = read(
        c.post(format!("{}/admin/orchestrators", first.admin))
            .bearer_auth(TOKEN)
            .send_json(&json!({"url": a.url, "capabilities": ["depth"]}))
            .await,
    )
    .await;
    assert_eq!(added.status, 201);
    let id = added.json()["id"].as_str().expect("id").to_string();
    first.wait_probed().await;
    for i in 0..4 {
        let req = c
            .post(format!("{}/process/request/depth", first.http))
            .insert_header(("Livepeer", job_header("depth", &i.to_string())));
        assert_eq!(read(req.send_body("{}").await).await.status, 200);
    }
    let before = get(&c, &format!("{}/admin/pairs?capability=depth", first.admin)).await.json()[0].clone();
    assert_eq!(before["counters"]["success"], 4);
    assert_eq!(first.signal_and_wait("TERM"), Some(0), "graceful shutdown exits 0");

    let second = Process::spawn(&args);
    let orchs = get(&c, &format!("{}/admin/orchestrators", second.admin)).await.json();
    assert_eq!(orchs.as_array().map(Vec::len), Some(1), "{orchs}");
    assert_eq!(orchs[0]["id"], id.as_str());
    assert_eq!(orchs[0]["url"], a.url.as_str());
    // The learned pair state was saved at shutdown and resumed at start (no job yet).
    let after = get(&c, &format!("{}/admin/pairs?capability=depth", second.admin)).await.json()[0].clone();
    assert_eq!(after["counters"]["success"], 4, "{after}");
    assert_eq!(after["latency_ewma_ms"], before["latency_ewma_ms"], "{after}");
    assert!(after["latency_ewma_ms"].as_f64() >= Some(40.0), "learned from 40 ms jobs: {after}");
    assert_eq!(after["cold_start_ms"], before["cold_start_ms"]);
    assert_eq!(after["warming"], false, "a gateway restart does not make a warm pair cold: {after}");
    // And it routes.
    let req =
        c.post(format!("{}/process/request/depth", second.http)).insert_header(("Livepeer", job_header("depth", "x")));
    let ans = read(req.send_body("{}").await).await;
    assert_eq!(ans.status, 200);
    assert_eq!(ans.json()["sim"], "a");
    assert_eq!(second.signal_and_wait("INT"), Some(0));
}

#[actix_web::test]
async fn an_admin_change_acknowledged_before_kill_9_is_not_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let args = gateway_args(data, &[]);
    let c = client();
    let first = Process::spawn(&args);
    let added = read(
        c.post(format!("{}/admin/orchestrators", first.admin))
            .bearer_auth(TOKEN)
            .send_json(&json!({"url": "http://127.0.0.1:9", "capabilities": ["depth"]}))
            .await,
    )
    .await;
    assert_eq!(added.status, 201);
    // No graceful shutdown: the 201 promised durability.
    assert_eq!(first.signal_and_wait("KILL"), None);
    let second = Process::spawn(&args);
    let orchs = get(&c, &format!("{}/admin/orchestrators", second.admin)).await.json();
    assert_eq!(orchs[0]["url"], "http://127.0.0.1:9", "{orchs}");
    assert_eq!(orchs[0]["capabilities"], json!(["depth"]));
}

#[actix_web::test]
async fn sigterm_drains_an_in_flight_job_before_exiting() {
    let a = sim("a", &[("depth", Knobs { latency_ms: 700, ..healthy() })]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, format!("[[orchestrators]]\nurl = \"{}\"\ncapabilities = [\"depth\"]\n", a.url))
        .expect("config");
    let cfg = cfg.to_str().expect("utf-8 path");
    let gw = Process::spawn(&gateway_args(data, &["--config", cfg]));
    gw.wait_probed().await;
    let c = client();
    let url = format!("{}/process/request/depth", gw.http);
    let job = actix_web::rt::spawn(async move {
        let req = client().post(url).insert_header(("Livepeer", job_header("depth", "slow")));
        read(req.send_body("{}").await).await
    });
    // Signal once the orchestrator has the job in hand (an observable event, not a delay).
    eventually("job in flight at the orchestrator", 250, || async { (a.state.stats("depth").jobs == 1).then_some(()) })
        .await;
    let pid = gw.child.id();
    let exit = actix_web::rt::task::spawn_blocking(move || gw.signal_and_wait("TERM")).await.expect("join");
    assert_eq!(exit, Some(0));
    let ans = job.await.expect("job task");
    assert_eq!(ans.status, 200, "the in-flight job finished during the drain (pid {pid})");
    assert_eq!(ans.json()["sim"], "a");
    let _ = c;
}

#[actix_web::test]
async fn open_breakers_and_policies_set_at_runtime_survive_a_restart() {
    let a = sim("a", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("gateway.toml");
    // The capability is declared, so its pair starts (and probes) with the gateway: every job
    // below must reach the orchestrator, none may race the first token probe.
    let toml = format!(
        "[breaker]\nbase_open = \"60s\"\nmax_open = \"120s\"\n\n[[orchestrators]]\nurl = \"{}\"\ncapabilities = [\"depth\"]\n",
        a.url
    );
    std::fs::write(&cfg, toml).expect("config");
    let data = dir.path().join("data");
    let (cfg, data) = (cfg.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    let args = gateway_args(data, &["--config", cfg]);
    let c = client();

    let first = Process::spawn(&args);
    first.wait_probed().await;
    let put = read(
        c.put(format!("{}/admin/capabilities/depth", first.admin))
            .bearer_auth(TOKEN)
            .send_json(&json!({"max_attempts": 1, "profile": "per-frame"}))
            .await,
    )
    .await;
    assert_eq!(put.status, 200);
    for i in 0..5 {
        let req = c
            .post(format!("{}/process/request/depth", first.http))
            .insert_header(("Livepeer", job_header("depth", &i.to_string())));
        let ans = read(req.send_body("{}").await).await;
        assert_eq!(ans.status, 502, "job {i}: {}", String::from_utf8_lossy(&ans.body));
    }
    let before = get(&c, &format!("{}/admin/pairs?capability=depth", first.admin)).await.json()[0].clone();
    assert_eq!(before["breaker"]["state"], "open", "{before}");
    assert_eq!(first.signal_and_wait("TERM"), Some(0));

    let second = Process::spawn(&args);
    second.wait_probed().await;
    let after = get(&c, &format!("{}/admin/pairs?capability=depth", second.admin)).await.json()[0].clone();
    assert_eq!(after["breaker"]["state"], "open", "the breaker stays open across the restart: {after}");
    let (b, a_) = (
        before["breaker"]["open_until_unix_ms"].as_u64().expect("until"),
        after["breaker"]["open_until_unix_ms"].as_u64().expect("until"),
    );
    assert!(b.abs_diff(a_) < 1000, "open-until resumed: {b} vs {a_}");
    assert_eq!(after["counters"]["http_5xx"], 5);
    // Still open: refused without a call, with Retry-After.
    let jobs_before = a.state.stats("depth").jobs;
    let req =
        c.post(format!("{}/process/request/depth", second.http)).insert_header(("Livepeer", job_header("depth", "x")));
    let ans = read(req.send_body("{}").await).await;
    ans.error(503, "no-routable-orchestrator");
    assert!(ans.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s > 10));
    assert_eq!(a.state.stats("depth").jobs, jobs_before);
    let policy = get(&c, &format!("{}/admin/capabilities/depth", second.admin)).await.json();
    assert_eq!(policy["policy"]["max_attempts"], 1, "{policy}");
    assert_eq!(policy["effective"]["retry_timeout"], "30s");
}

#[actix_web::test]
async fn pair_records_that_never_offered_anything_are_forgotten_at_start() {
    // A store written before surveys: a record per orchestrator per registered capability,
    // most of them for capabilities the orchestrator never offered.
    let a = sim("a", &[("depth", healthy())]);
    // orch-2 accepts connections and never answers, so the start-up survey's question to it
    // stays in flight while the export below is taken (a survey's pair is not a record).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = dir.path().join("old.json");
    let orch = |id: &str, url: &str| json!({"id": id, "url": url, "capabilities": [], "added_at": 1, "source": "admin", "enabled": true});
    let record = |id: &str, cap: &str, offered: bool, success: u64| {
        json!({"orchestrator": id, "capability": cap, "latency_ewma_ms": 20.0, "success_rate": 1.0,
               "breaker": "closed", "breaker_level": 0, "open_until_unix_ms": null, "offered": offered,
               "cold_start_ms": null, "counters": {"success": success}, "saved_at_unix_ms": 1})
    };
    let old = json!({
        "format": "byoc-gateway-store", "schema_version": 2, "exported_at_unix_ms": 1,
        "orchestrators": [orch("orch-1", &a.url), orch("orch-2", &silent_url)],
        "pairs": [record("orch-1", "depth", true, 5), record("orch-1", "upscale", false, 0),
                  record("orch-2", "depth", false, 0)],
        "policies": [],
    });
    std::fs::write(&file, old.to_string()).expect("write");
    let data = data.to_str().expect("utf-8");
    let import = |args: &[&str]| Command::new(binary()).args(args).output().expect("run");
    let out = import(&["store", "import", file.to_str().expect("utf-8"), "--data-dir", data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let gw = Process::spawn(&gateway_args(data, &[]));
    let c = client();
    eventually("the survey asking orch-2 about depth", 500, || async {
        let s = get(&c, &format!("{}/admin/supervisor", gw.admin)).await.json();
        (s["survey"]["in_flight"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    let export = get(&c, &format!("{}/admin/store/export", gw.admin)).await.json();
    let pairs: Vec<(String, String, u64)> = export["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("orchestrator"), s("capability"), p["counters"]["success"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(pairs, vec![("orch-1".to_string(), "depth".to_string(), 5)], "{export}");
    assert_eq!(gw.signal_and_wait("TERM"), Some(0));
    // And the store itself forgot them.
    let back = dir.path().join("back.json");
    let out = import(&["store", "export", back.to_str().expect("utf-8"), "--data-dir", data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&back).expect("read")).expect("json");
    assert_eq!(back["pairs"].as_array().map(Vec::len), Some(1), "{back}");
}
