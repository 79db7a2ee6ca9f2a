//! The operator surface: the OpenAPI document against the real routes, drain toggle, pair
//! lookups, config reload (admin call and SIGHUP), store export/import, metrics and logs.

use std::process::Command;

use byoc_gateway::cli::RunArgs;
use serde_json::{json, Value};

use crate::support::*;
use byoc_sim::Knobs;

fn run_args(dir: &std::path::Path, config: &std::path::Path) -> RunArgs {
    RunArgs {
        config: Some(config.to_path_buf()),
        http_addr: Some("127.0.0.1:0".into()),
        admin_addr: Some("127.0.0.1:0".into()),
        rtmp_addr: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.join("data")),
        admin_token: Some(TOKEN.into()),
        ..RunArgs::default()
    }
}

#[actix_web::test]
async fn the_openapi_document_lists_every_admin_route_and_each_one_exists() {
    let gw = gateway(&[]).await;
    read(gw.client.get(format!("{}/admin/openapi.json", gw.admin)).send().await).await.error(401, "unauthorized");
    let doc = gw.admin_get("/admin/openapi.json").await.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{doc}");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["PairReport"].is_object());
    assert!(doc["components"]["schemas"]["CapabilityPolicy"].is_object());

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = [
        ("GET", "/metrics"),
        ("GET", "/admin/ui"),
        ("GET", "/admin/orchestrators"),
        ("POST", "/admin/orchestrators"),
        ("GET", "/admin/orchestrators/{id}"),
        ("PATCH", "/admin/orchestrators/{id}"),
        ("DELETE", "/admin/orchestrators/{id}"),
        ("GET", "/admin/pairs"),
        ("GET", "/admin/pairs/{orchestrator}/{capability}"),
        ("POST", "/admin/pairs/{orchestrator}/{capability}/trip"),
        ("POST", "/admin/pairs/{orchestrator}/{capability}/reset"),
        ("GET", "/admin/runners"),
        ("GET", "/admin/runners/{runner}"),
        ("POST", "/admin/runners/{runner}/trip"),
        ("POST", "/admin/runners/{runner}/reset"),
        ("GET", "/admin/sessions"),
        ("POST", "/admin/sessions/{id}/stop"),
        ("GET", "/admin/capabilities"),
        ("GET", "/admin/capabilities/{name}"),
        ("PUT", "/admin/capabilities/{name}"),
        ("DELETE", "/admin/capabilities/{name}"),
        ("POST", "/admin/capabilities/{name}/forget"),
        ("GET", "/admin/supervisor"),
        ("GET", "/admin/discovery"),
        ("GET", "/admin/history"),
        ("POST", "/admin/reload"),
        ("GET", "/admin/store/export"),
        ("GET", "/admin/streams"),
        ("GET", "/admin/streams/{id}"),
        ("DELETE", "/admin/streams/{id}"),
        ("GET", "/admin/fleet"),
        ("GET", "/admin/registry"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // Every /admin route but the page itself needs the token: 401 JSON without it, nothing done.
    for (method, path) in documented.iter().filter(|(_, p)| p.starts_with("/admin/") && p != "/admin/ui") {
        let concrete = path
            .replace("{id}", "orch-1")
            .replace("{orchestrator}", "orch-1")
            .replace("{capability}", "depth")
            .replace("{runner}", "orch-1:r")
            .replace("{name}", "depth");
        let req = gw.client.request(method.parse().expect("method"), format!("{}{concrete}", gw.admin));
        let ans = match method.as_str() {
            "POST" | "PUT" | "PATCH" => read(req.send_json(&json!({"url": "http://127.0.0.1:9"})).await).await,
            _ => read(req.send().await).await,
        };
        ans.error(401, "unauthorized");
    }
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json(), json!([]), "nothing was added without the token");
    assert!(gw.admin_get("/admin/capabilities/depth").await.status == 404, "no policy was set without the token");

    // Every documented route is served (no route-level 404 or 405), with the token.
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "orch-404")
            .replace("{orchestrator}", "orch-404")
            .replace("{capability}", "nope")
            .replace("{runner}", "orch-404:r")
            .replace("{name}", "nope");
        let url = format!("{}{concrete}", gw.admin);
        let req = gw.client.request(method.parse().expect("method"), url).bearer_auth(TOKEN);
        let ans = match method.as_str() {
            "POST" | "PUT" | "PATCH" => {
                read(req.send_json(&json!({"url": "http://127.0.0.1:9", "enabled": true})).await).await
            }
            _ => read(req.send().await).await,
        };
        assert_ne!(ans.status, 405, "{method} {path}");
        if ans.status == 404 {
            assert_ne!(ans.json()["error"]["code"], "not-found", "{method} {path} is documented but not routed");
        }
    }
}

#[actix_web::test]
async fn a_disabled_orchestrator_drains_and_comes_back() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;
    let id = gw.pair("depth", &a.url).await["orchestrator"].as_str().expect("id").to_string();

    let off = gw.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"enabled": false})).await;
    assert_eq!(off.status, 200);
    assert_eq!(off.json()["enabled"], false);
    assert_eq!(gw.admin_get(&format!("/admin/orchestrators/{id}")).await.json()["enabled"], false);
    let pair = gw.admin_get(&format!("/admin/pairs/{id}/depth")).await.json();
    assert_eq!(pair["unroutable_reason"], "disabled", "{pair}");
    let before = a.state.stats("depth").jobs;
    for i in 0..10 {
        assert_eq!(gw.job("depth", &format!("j{i}")).await.json()["sim"], "b");
    }
    assert_eq!(a.state.stats("depth").jobs, before, "a draining orchestrator gets no new job");

    assert_eq!(gw.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"enabled": true})).await.status, 200);
    assert_eq!(gw.admin_get(&format!("/admin/pairs/{id}/depth")).await.json()["routable"], true);

    gw.admin_patch("/admin/orchestrators/orch-999", json!({"enabled": false}))
        .await
        .error(404, "orchestrator-not-found");
    gw.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"enabled": "no"})).await.error(400, "invalid-json");
    gw.admin_get("/admin/orchestrators/orch-999").await.error(404, "orchestrator-not-found");
    gw.admin_get(&format!("/admin/pairs/{id}/nope")).await.error(404, "pair-not-found");
}

#[actix_web::test]
async fn reload_applies_the_config_files_orchestrators_and_policies_in_place() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    let write = |orch: &str, attempts: u32| {
        let text = format!(
            "[[orchestrators]]\nurl = \"{orch}\"\ncapabilities = [\"depth\"]\n[capabilities.depth]\nmax_attempts = {attempts}\n"
        );
        std::fs::write(&file, text).expect("write config");
    };
    write(&a.url, 2);
    let gw = start_from_args(run_args(dir.path(), &file), None).await;
    assert_eq!(gw.job("depth", "before").await.json()["sim"], "a");
    assert_eq!(gw.admin_get("/admin/capabilities/depth").await.json()["effective"]["max_attempts"], 2);

    // An invalid file changes nothing.
    std::fs::write(&file, "[[orchestrators]]\nurl = \"ftp://nope\"\n").expect("write");
    let bad = gw.admin_post("/admin/reload", json!({})).await;
    bad.error(400, "invalid-config");
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json().as_array().map(Vec::len), Some(1));

    // A slow job is in flight on the orchestrator the reload will remove.
    a.state.patch(Some("depth"), &json!({"latency_ms": 800})).expect("knob");
    let in_flight = gw.spawn_job("depth", "slow");
    eventually("the slow job reached a", 250, || async { (a.state.stats("depth").jobs == 2).then_some(()) }).await;
    write(&b.url, 4);
    let report = gw.admin_post("/admin/reload", json!({})).await;
    assert_eq!(report.status, 200, "{}", String::from_utf8_lossy(&report.body));
    let report = report.json();
    assert_eq!(report["orchestrators_added"], json!([b.url]));
    assert_eq!(report["orchestrators_removed"], json!([a.url]));
    assert_eq!(report["policies_changed"], json!(["depth"]));
    assert_eq!(report["restart_required"], json!([]), "{report}");
    assert_eq!(gw.admin_get("/admin/capabilities/depth").await.json()["effective"]["max_attempts"], 4);
    eventually("b routable", 250, || async { (gw.pair("depth", &b.url).await["routable"] == true).then_some(()) })
        .await;
    for i in 0..5 {
        assert_eq!(gw.job("depth", &format!("after{i}")).await.json()["sim"], "b");
    }
    assert!(gw.pairs("depth").await.iter().all(|p| p["orchestrator_url"] != a.url.as_str()));
    let slow = in_flight.await.expect("job task");
    assert_eq!(slow.status, 200, "the in-flight job survived the reload that removed its orchestrator");
    assert_eq!(slow.json()["sim"], "a");

    // Settings a reload cannot apply are named, not silently ignored.
    let text = format!(
        "[[orchestrators]]\nurl = \"{}\"\ncapabilities = [\"depth\"]\n[capabilities.depth]\nmax_attempts = 4\n[limits]\nmax_body_bytes = 1000\n[log]\nlevel = \"debug\"\n",
        b.url
    );
    std::fs::write(&file, text).expect("write");
    let report = gw.admin_post("/admin/reload", json!({})).await.json();
    assert_eq!(report["restart_required"], json!(["limits.max_body_bytes", "log.level"]), "{report}");
}

#[actix_web::test]
async fn sighup_reloads_the_config_file_of_a_running_gateway() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, format!("orch_addr = [\"{}\"]\n", a.url)).expect("write");
    let data = dir.path().join("data");
    let (f, d) = (file.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    let gw = Process::spawn(&gateway_args(d, &["--config", f]));
    std::fs::write(&file, format!("orch_addr = [\"{}\", \"{}\"]\n", a.url, b.url)).expect("write");
    let status = Command::new("kill").arg("-HUP").arg(gw.child.id().to_string()).status().expect("kill");
    assert!(status.success());
    let c = awc::Client::default();
    let list = eventually("two orchestrators after SIGHUP", 250, || async {
        let v = read(c.get(format!("{}/admin/orchestrators", gw.admin)).bearer_auth(TOKEN).send().await).await.json();
        (v.as_array().map(Vec::len) == Some(2)).then_some(v)
    })
    .await;
    assert!(list.as_array().expect("list").iter().any(|o| o["url"] == b.url.as_str()));
    assert_eq!(gw.signal_and_wait("TERM"), Some(0), "still serving, then a clean exit");
}

#[actix_web::test]
async fn export_then_import_into_a_fresh_data_dir_reproduces_registry_policies_and_scores() {
    let a = sim("a", &[("depth", Knobs { latency_ms: 30, ..healthy() })]);
    let gw = gateway(&[]).await;
    let added = gw.admin_post("/admin/orchestrators", json!({"url": a.url, "capabilities": ["depth"]})).await;
    assert_eq!(added.status, 201);
    assert_eq!(
        gw.admin_put("/admin/capabilities/depth", json!({"max_attempts": 1, "max_price_per_unit": 50})).await.status,
        200
    );
    for i in 0..3 {
        assert_eq!(gw.job("depth", &format!("j{i}")).await.status, 200);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.json");
    let fresh = dir.path().join("fresh");
    let bin = binary();
    // Online export through the running gateway (its data dir is locked).
    // The CLI calls this process's gateway: run it off the thread that runs the actors.
    let args: Vec<String> =
        ["store", "export", file.to_str().expect("utf-8"), "--admin-url", &gw.admin, "--admin-token", TOKEN]
            .map(String::from)
            .to_vec();
    let b = bin.clone();
    let out = actix_web::rt::task::spawn_blocking(move || Command::new(b).args(args).output().expect("export"))
        .await
        .expect("join");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("exported 1 orchestrators"));
    let export: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("file")).expect("json");
    assert_eq!(export["format"], "byoc-gateway-store");
    assert_eq!(export["pairs"][0]["counters"]["success"], 3, "scores are current: {export}");

    let out = Command::new(&bin)
        .args(["store", "import", file.to_str().expect("utf-8"), "--data-dir", fresh.to_str().expect("utf-8")])
        .output()
        .expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Importing twice clashes and changes nothing.
    let again = Command::new(&bin)
        .args(["store", "import", file.to_str().expect("utf-8"), "--data-dir", fresh.to_str().expect("utf-8")])
        .output()
        .expect("import");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("refused, nothing was changed"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let second = Process::spawn(&gateway_args(fresh.to_str().expect("utf-8"), &[]));
    let c = awc::Client::default();
    let get = |path: &str| {
        let url = format!("{}{path}", second.admin);
        let c = c.clone();
        async move { read(c.get(url).bearer_auth(TOKEN).send().await).await.json() }
    };
    let orchs = get("/admin/orchestrators").await;
    assert_eq!(orchs, gw.admin_get("/admin/orchestrators").await.json(), "same registry, same ids");
    let cap = get("/admin/capabilities/depth").await;
    assert_eq!(cap["policy"]["max_price_per_unit"], 50);
    let pairs = get("/admin/pairs?capability=depth").await;
    assert_eq!(pairs[0]["counters"]["success"], 3);

    // Offline export of a data dir in use is refused with a hint.
    let locked = Command::new(&bin)
        .args([
            "store",
            "export",
            dir.path().join("x.json").to_str().expect("utf-8"),
            "--data-dir",
            fresh.to_str().expect("utf-8"),
        ])
        .output()
        .expect("export");
    assert!(!locked.status.success());
    assert!(
        String::from_utf8_lossy(&locked.stderr).contains("--admin-url"),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );
    drop(second);
}

#[actix_web::test]
async fn metrics_cover_the_store_and_can_require_the_token() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| c.metrics_require_token = true).await;
    assert_eq!(gw.job("depth", "m").await.status, 200);
    read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await.error(401, "unauthorized");
    let text = eventually("store metrics", 250, || async {
        let m = read(gw.client.get(format!("{}/metrics", gw.admin)).bearer_auth(TOKEN).send().await).await;
        let t = String::from_utf8_lossy(&m.body).into_owned();
        t.contains("byoc_gateway_store_size_bytes").then_some(t)
    })
    .await;
    for needle in [
        "byoc_gateway_store_flush_duration_seconds_bucket",
        "byoc_gateway_upstream_duration_seconds_bucket{capability=\"depth\"",
        "byoc_gateway_pairs_unroutable{reason=\"price-over-ceiling\"}",
        "byoc_gateway_token_probes_total{result=\"ok\"}",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    let sup = gw.admin_get("/admin/supervisor").await.json();
    assert!(sup["mailbox"]["supervisor_tick_lag_ms"].as_u64().is_some(), "{sup}");
}

#[actix_web::test]
async fn json_logs_carry_the_request_id_and_never_the_token() {
    let a = sim("a", &[("depth", healthy())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr.log");
    let data = dir.path().join("data");
    let orch = a.url.clone();
    let gw = Process::spawn_with(
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--admin-token",
            "sekret-token-value",
            "--orch-addr",
            &orch,
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "info,byoc_actors::route=debug")],
        Some(&log),
    );
    let c = awc::Client::default();
    let req = c
        .post(format!("{}/process/request/depth", gw.http))
        .insert_header(("Livepeer", job_header("depth", "j")))
        .insert_header(("X-Request-Id", "req-42"));
    assert_eq!(read(req.send_body("{}").await).await.status, 200);
    let bad = read(c.get(format!("{}/admin/pairs", gw.admin)).bearer_auth("wrong-guess").send().await).await;
    assert_eq!(bad.status, 401);
    assert_eq!(gw.signal_and_wait("TERM"), Some(0));
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().any(|l| l["span"]["request_id"] == "req-42" && l["span"]["capability"] == "depth"), "{text}");
    assert!(lines.iter().any(|l| l["fields"]["message"] == "byoc-gateway listening"));
    assert!(!text.contains("sekret-token-value") && !text.contains("wrong-guess"), "tokens must never be logged");
}

/// The scraped text of `/metrics`.
async fn scrape(gw: &TestGateway) -> String {
    String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).into_owned()
}

#[actix_web::test]
async fn per_pair_series_are_bounded_and_end_with_their_orchestrator() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"]), (&b, &["depth"])], |c| {
        c.metrics_pair_series = 1;
        c.orchestrators[0].label = Some("fast".into());
    })
    .await;
    let a_id = gw.pair("depth", &a.url).await["orchestrator"].as_str().expect("id").to_string();
    let b_id = gw.pair("depth", &b.url).await["orchestrator"].as_str().expect("id").to_string();
    assert!(a_id < b_id, "{a_id} comes first");
    // A job on a: its latency is measured.
    let header = byoc_actors::protocol::header::encode_client_header(&json!({
        "capability": "depth", "request": "{}", "timeout_seconds": 10,
        "parameters": json!({"orchestrators": {"include": [a.url]}}).to_string(),
    }));
    let req = gw.client.post(format!("{}/process/request/depth", gw.http)).insert_header(("Livepeer", header));
    assert_eq!(read(req.send_body("{}").await).await.status, 200);

    let text = scrape(&gw).await;
    let of = |id: &str| format!("orchestrator=\"{id}\"");
    for needle in [
        format!("byoc_gateway_pair_routable{{{},capability=\"depth\"}} 1", of(&a_id)),
        format!("byoc_gateway_pair_breaker_state{{{},capability=\"depth\"}} 0", of(&a_id)),
        format!("byoc_gateway_pair_calls_total{{{},capability=\"depth\",result=\"success\"}} 1", of(&a_id)),
        format!("byoc_gateway_pair_latency_seconds{{{},capability=\"depth\",quantile=\"0.5\"}}", of(&a_id)),
        format!("byoc_gateway_orchestrator_info{{{},orchestrator_label=\"fast\"}} 1", of(&a_id)),
        "byoc_gateway_pair_series_omitted 1".to_string(),
    ] {
        assert!(text.contains(&needle), "missing {needle}:\n{text}");
    }
    assert!(!text.contains(&of(&b_id)), "b's pair is over the bound of 1: no series");

    // a goes: its series end with it, and b's take its place.
    assert_eq!(gw.admin_delete(&format!("/admin/orchestrators/{a_id}")).await.status, 204);
    let text = scrape(&gw).await;
    assert!(!text.contains(&of(&a_id)), "a removed orchestrator has no series:\n{text}");
    assert!(text.contains(&format!("byoc_gateway_pair_routable{{{},capability=\"depth\"}}", of(&b_id))));
    assert!(text.contains("byoc_gateway_pair_series_omitted 0"));
}
