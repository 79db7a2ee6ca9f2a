//! Capability sprawl (issue 22): an orchestrator that answers a token for any name made the
//! gateway register every name a client sent, with its pair actors, board and metric series,
//! for ever and again after a restart. Lazily discovered capabilities are bounded, persisted
//! only once they served a job, and an operator can forget one.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::support::*;
use byoc_sim::SimHandle;

/// A simulator serving `real` (healthy) that answers a token offering capacity for any other
/// name too (its jobs for those get go-livepeer's 503 for an unregistered capability).
fn offers_anything(name: &str) -> SimHandle {
    let s = sim(name, &[("real", healthy())]);
    s.state.any_capability.store(true, Ordering::Relaxed);
    s
}

/// Lines of `/metrics` labelled with `capability`.
async fn series(gw: &TestGateway, capability: &str) -> usize {
    let text = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).into_owned();
    let label = format!("capability=\"{capability}\"");
    text.lines().filter(|l| l.contains(&label)).count()
}

#[actix_web::test]
async fn capabilities_registered_for_strangers_names_are_bounded() {
    let a = offers_anything("a");
    let gw = gateway(&[(&a, &["real"])]).await;
    let limit = 128; // routing.max_discovered_capabilities, default
    let mut refused = 0;
    for i in 0..limit + 12 {
        let answer = gw.job(&format!("junk-{i}"), "j").await;
        assert_ne!(answer.status, 200, "junk-{i}");
        if answer.status == 503 && answer.json()["error"]["code"] == "capability-limit" {
            refused += 1;
        }
    }
    // Before the bound, every name stayed registered with its pair actor (4,199 names in 20 s
    // on the probe of issue 22).
    let report = gw.admin_get("/admin/supervisor").await.json();
    let registered = report["capabilities"].as_array().map_or(0, Vec::len);
    assert_eq!(registered, limit + 1, "the names kept and the declared one");
    assert_eq!(report["discovered_capabilities"]["count"], limit, "{report}");
    assert_eq!(report["discovered_capabilities"]["refused"], 12, "{report}");
    assert_eq!(refused, 12);
    assert_eq!(report["pair_actors"], limit + 1, "one per name kept, and the declared one: {report}");
    assert_eq!(series(&gw, &format!("junk-{}", limit + 5)).await, 0, "a refused name has no series");
    // A declared capability is not held back by the bound.
    assert_eq!(gw.job("real", "r").await.status, 200);
    let m = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).into_owned();
    assert!(m.contains("byoc_gateway_capability_limit_total 12"), "counted");
}

#[actix_web::test]
async fn a_discovered_capability_comes_back_after_a_restart_only_once_it_served_a_job() {
    let a = offers_anything("a");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let args = gateway_args(data, &["--orch-addr", &a.url]);
    let c = awc::Client::builder().timeout(std::time::Duration::from_secs(30)).finish();
    let get = |base: String, path: &'static str| {
        let c = c.clone();
        async move { read(c.get(format!("{base}{path}")).bearer_auth(TOKEN).send().await).await.json() }
    };
    let job = |base: String, cap: &'static str| {
        let c = c.clone();
        async move {
            let req = c.post(format!("{base}/process/request/{cap}")).insert_header(("Livepeer", job_header(cap, "j")));
            read(req.send_body("{}").await).await.status
        }
    };
    let first = Process::spawn(&args);
    first.wait_probed().await;
    assert_ne!(job(first.http.clone(), "junk-1").await, 200);
    assert_ne!(job(first.http.clone(), "junk-2").await, 200);
    assert_eq!(job(first.http.clone(), "real").await, 200);
    // Once the pair's answer is accounted (fast-path answers are applied in batches).
    eventually("real to have served a job", 250, || async {
        let pairs = get(first.admin.clone(), "/admin/pairs?capability=real").await;
        (pairs[0]["counters"]["success"] == 1).then_some(())
    })
    .await;
    let before = get(first.admin.clone(), "/admin/supervisor").await;
    assert_eq!(before["capabilities"], json!(["junk-1", "junk-2", "real"]), "{before}");
    assert_eq!(first.signal_and_wait("TERM"), Some(0));

    // The names that never served a job were not written: they do not come back.
    let second = Process::spawn(&args);
    let after = get(second.admin.clone(), "/admin/supervisor").await;
    assert_eq!(after["capabilities"], json!(["real"]), "{after}");
    let junk = get(second.admin.clone(), "/admin/store/export").await;
    let stored: Vec<&Value> = junk["pairs"].as_array().map(|p| p.iter().collect()).unwrap_or_default();
    assert!(stored.iter().all(|r| r["capability"] == "real"), "{junk}");
    assert_eq!(stored.len(), 1, "{junk}");
    assert_eq!(before["discovered_capabilities"]["unproven"], 2, "the junk names: {before}");
}

#[actix_web::test]
async fn an_operator_forgets_a_capability_its_pairs_records_policy_and_series() {
    let a = offers_anything("a");
    let declared = sim("d", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &[]), (&declared, &["depth"])]).await;
    assert_eq!(gw.job("real", "r1").await.status, 200);
    assert_ne!(gw.job("junk-1", "j").await.status, 200);
    let put = gw.admin_put("/admin/capabilities/real", json!({"max_attempts": 2})).await;
    assert_eq!(put.status, 200);
    assert!(series(&gw, "real").await > 0);

    let forgot = gw.admin_post("/admin/capabilities/real/forget", json!({})).await;
    assert_eq!(forgot.status, 200, "{:?}", forgot.body);
    let f = forgot.json();
    assert_eq!(
        (f["name"].clone(), f["pairs_stopped"].clone(), f["policy_removed"].clone()),
        (json!("real"), json!(1), json!(true)),
        "{f}"
    );
    gw.admin_get("/admin/capabilities/real").await.error(404, "capability-not-found");
    assert!(gw.pairs("real").await.is_empty());
    assert_eq!(series(&gw, "real").await, 0, "its series are no longer exported");
    let export = gw.admin_get("/admin/store/export").await.json();
    assert!(export["pairs"].as_array().is_some_and(|p| p.iter().all(|r| r["capability"] != "real")), "{export}");
    assert!(export["policies"].as_array().is_some_and(|p| p.is_empty()), "{export}");
    assert!(gw.admin_get("/admin/supervisor").await.json()["capabilities"]
        .as_array()
        .is_some_and(|c| !c.contains(&json!("real"))));
    // A discovered name that never served can be forgotten too.
    assert_eq!(gw.admin_post("/admin/capabilities/junk-1/forget", json!({})).await.status, 200);

    // What would come back at once is refused; unknown and invalid names are errors.
    let e = gw.admin_post("/admin/capabilities/depth/forget", json!({})).await.error(409, "capability-declared");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("orch-")), "{e}");
    gw.admin_post("/admin/capabilities/nothing/forget", json!({})).await.error(404, "capability-not-found");
    gw.admin_post("/admin/capabilities/bad%20name/forget", json!({})).await.error(400, "invalid-capability");
    assert_eq!(gw.job("depth", "d").await.status, 200, "the declared capability is untouched");

    // A job asking for it again finds it offered: discovered anew, exported again.
    assert_eq!(gw.job("real", "r2").await.status, 200);
    assert!(series(&gw, "real").await > 0);
}
