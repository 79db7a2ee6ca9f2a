//! Orchestrator labels (issue 27): the operator's name for an orchestrator, given by
//! `--orch-addr label=url`, the config file, the admin API and the webhook (see
//! discovery.rs), shown beside the id in the admin API, on pairs and in log lines, changed at
//! runtime and by a SIGHUP reload, and never a label of the gateway's own metric series.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;
use byoc_sim::Knobs;

/// The registry entry whose URL is `url`.
async fn entry(gw: &TestGateway, url: &str) -> Value {
    let list = gw.admin_get("/admin/orchestrators").await.json();
    list.as_array().and_then(|l| l.iter().find(|o| o["url"] == url).cloned()).unwrap_or_else(|| panic!("{url}: {list}"))
}

#[actix_web::test]
async fn labels_come_from_the_config_and_show_on_orchestrators_and_pairs() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway_with(&[], |c| {
        c.orch_addr = vec![format!("fast={}", a.url)];
        c.orchestrators = vec![byoc_gateway::config::StaticOrchestrator {
            url: b.url.clone(),
            capabilities: vec!["depth".into()],
            label: Some("l40s Frankfurt".into()),
        }];
    })
    .await;
    assert_eq!(entry(&gw, &a.url).await["label"], "fast");
    let b_entry = entry(&gw, &b.url).await;
    assert_eq!(b_entry["label"], "l40s Frankfurt");
    let one = gw.admin_get(&format!("/admin/orchestrators/{}", b_entry["id"].as_str().expect("id"))).await.json();
    assert_eq!(one["label"], "l40s Frankfurt");
    assert_eq!(gw.pair("depth", &b.url).await["orchestrator_label"], "l40s Frankfurt");
    // a declares nothing: its depth pair comes from the survey, labelled too.
    let pair_a = eventually("a's depth pair", 250, || gw.find_pair("depth", &a.url)).await;
    assert_eq!(pair_a["orchestrator_label"], "fast");
    // Labels are for people, not for Prometheus: no series of the gateway's carries one.
    let metrics = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).into_owned();
    let labelled: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("l40s Frankfurt") && !l.starts_with("byoc_gateway_orchestrator_info{"))
        .collect();
    assert!(labelled.is_empty(), "a label leaked into series other than the info metric: {labelled:?}");
}

#[actix_web::test]
async fn the_admin_api_adds_and_changes_labels_and_refuses_bad_ones() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[]).await;
    let added =
        gw.admin_post("/admin/orchestrators", json!({"url": a.url, "capabilities": ["depth"], "label": "gpu-1"})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let id = added.json()["id"].as_str().expect("id").to_string();
    assert_eq!(added.json()["label"], "gpu-1");
    eventually("the pair shows the label", 250, || async {
        (gw.pair("depth", &a.url).await["orchestrator_label"] == "gpu-1").then_some(())
    })
    .await;

    let path = format!("/admin/orchestrators/{id}");
    let changed = gw.admin_patch(&path, json!({"label": "  A100 Paris  "})).await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.json()["label"], "A100 Paris", "trimmed");
    assert_eq!(changed.json()["enabled"], true, "only the label changed");
    eventually("the pair shows the new label", 250, || async {
        (gw.pair("depth", &a.url).await["orchestrator_label"] == "A100 Paris").then_some(())
    })
    .await;

    // Bad labels and empty patches change nothing.
    for bad in
        [json!({"label": "a\nb"}), json!({"label": "x=y"}), json!({"label": ""}), json!({"label": "é".repeat(65)})]
    {
        gw.admin_patch(&path, bad.clone()).await.error(400, "invalid-label");
    }
    gw.admin_patch(&path, json!({})).await.error(400, "invalid-patch");
    gw.admin_patch(&path, json!({"label": 5})).await.error(400, "invalid-json");
    let b = sim("b", &[("depth", healthy())]);
    gw.admin_post("/admin/orchestrators", json!({"url": b.url, "label": "a,b"})).await.error(400, "invalid-label");
    assert_eq!(entry(&gw, &a.url).await["label"], "A100 Paris");
    let list = gw.admin_get("/admin/orchestrators").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "the refused add registered nothing: {list}");
    gw.admin_patch("/admin/orchestrators/orch-404", json!({"label": "x"})).await.error(404, "orchestrator-not-found");

    // Both fields at once; null removes the label.
    let both = gw.admin_patch(&path, json!({"enabled": false, "label": null})).await;
    assert_eq!(both.status, 200);
    assert_eq!((both.json()["enabled"].clone(), both.json()["label"].clone()), (json!(false), Value::Null));
    eventually("the pair lost its label and drains", 250, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["orchestrator_label"].is_null() && p["unroutable_reason"] == "disabled").then_some(())
    })
    .await;
}

#[actix_web::test]
async fn labels_are_in_log_lines_and_a_sighup_reload_changes_them() {
    let broken = sim("broken", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let fine = sim("fine", &[("depth", healthy())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    let log = dir.path().join("stderr.log");
    let write = |broken_label: &str| {
        let text = format!(
            "orch_addr = [\"{broken_label}={}\"]\n[[orchestrators]]\nurl = \"{}\"\ncapabilities = [\"depth\"]\nlabel = \"fine\"\n",
            broken.url, fine.url
        );
        std::fs::write(&file, text).expect("write config");
    };
    write("flaky");
    let data = dir.path().join("data");
    let (f, d) = (file.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    let args = gateway_args(d, &["--config", f, "--log-format", "json"]);
    let gw = Process::spawn_with(&args, &[("RUST_LOG", "info")], Some(&log));
    gw.wait_probed().await;
    let c = awc::Client::default();
    let get = |path: String| {
        let c = c.clone();
        async move { read(c.get(path).bearer_auth(TOKEN).send().await).await.json() }
    };
    // Jobs pinned to the broken orchestrator fail: its pair logs its failures and its breaker.
    let header = byoc_actors::protocol::header::encode_client_header(&json!({
        "capability": "depth", "request": "{}", "timeout_seconds": 10,
        "parameters": json!({"orchestrators": {"include": [broken.url]}}).to_string(),
    }));
    for _ in 0..5 {
        let req = c.post(format!("{}/process/request/depth", gw.http)).insert_header(("Livepeer", header.clone()));
        assert_ne!(read(req.send_body("{}").await).await.status, 200);
    }
    let pairs_url = format!("{}/admin/pairs?capability=depth", gw.admin);
    let pairs = get(pairs_url.clone()).await;
    let labels: Vec<Value> = pairs.as_array().expect("pairs").iter().map(|p| p["orchestrator_label"].clone()).collect();
    assert!(labels.contains(&json!("flaky")) && labels.contains(&json!("fine")), "{pairs}");

    // The file renames it; a SIGHUP applies that to the registry and the pairs.
    write("broken");
    let status = Command::new("kill").arg("-HUP").arg(gw.child.id().to_string()).status().expect("kill");
    assert!(status.success());
    eventually("the new label after SIGHUP", 250, || async {
        let pairs = get(pairs_url.clone()).await;
        pairs
            .as_array()?
            .iter()
            .any(|p| p["orchestrator_url"] == broken.url.as_str() && p["orchestrator_label"] == "broken")
            .then_some(())
    })
    .await;
    let orchs = get(format!("{}/admin/orchestrators", gw.admin)).await;
    assert!(orchs.as_array().expect("list").iter().any(|o| o["url"] == broken.url.as_str() && o["label"] == "broken"));
    assert_eq!(gw.signal_and_wait("TERM"), Some(0));

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let with = |message: &str, label: &str| {
        lines.iter().any(|l| l["fields"]["message"] == message && l["fields"]["orchestrator_label"] == label)
    };
    assert!(with("breaker opened", "flaky"), "the pair's breaker line names its orchestrator's label:\n{text}");
    assert!(with("attempt failed; failing over", "flaky") || with("attempt failed; failing over", "broken"), "{text}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "SIGHUP: configuration reloaded"),
        "the reload was logged:\n{text}"
    );
}
