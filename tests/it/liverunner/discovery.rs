//! Discovery (issue 28 item 1): each registered orchestrator's `GET /discovery` feeds one pair
//! per runner, visible in `/admin/pairs` with its record; a failing fetch keeps the records
//! stale for the grace period (go-livepeer #4087 dropped them) and then expires them.

use std::time::Duration;

use byoc_sim::{DiscoveryFault, LiveKnobs, RunnerSpec};
use serde_json::json;

use super::*;

fn scope() -> RunnerSpec {
    RunnerSpec {
        gpu: "NVIDIA L40S".into(),
        version: "1.4.0".into(),
        ..RunnerSpec::persistent("scope-l40s", "live-video-to-video/scope", 2)
    }
}

#[actix_web::test]
async fn runners_appear_in_admin_pairs_with_app_gpu_version_capacity_price_and_discovery_age() {
    let s = live_sim("o1", &[scope(), RunnerSpec::single_shot("echo-1", "echo", 3)]);
    let gw = live_gateway(&[&s], |_| {}).await;
    let id = gw.orchestrator_id(&s.url).await;
    let scope = gw.runner_until(&format!("{id}:scope-l40s"), "routable", |p| p["routable"] == true).await;
    assert_eq!(scope["capability"], "live-video-to-video/scope");
    assert_eq!(scope["orchestrator_url"], s.url.as_str());
    assert_eq!(scope["service_addr"], format!("{}/apps/scope-l40s/session", s.url));
    let r = &scope["runner"];
    assert_eq!(r["app"], "live-video-to-video/scope");
    assert_eq!(r["mode"], "persistent");
    assert_eq!(r["gpu"]["name"], "NVIDIA L40S");
    assert_eq!(r["version"], "1.4.0");
    assert_eq!((r["capacity"].as_i64(), r["capacity_available"].as_i64()), (Some(2), Some(2)));
    assert_eq!(r["standing"], "fresh");
    assert_eq!(scope["capacity_ceiling"], 2, "slots come from capacity_available");
    assert_eq!(
        (scope["warming"].as_bool(), scope["slots"].as_u64()),
        (Some(true), Some(1)),
        "cold: one at a time until it answered"
    );
    assert!(scope["discovery_age_ms"].as_u64().is_some_and(|a| a < 60_000), "{scope}");
    let echo = gw.runner(&format!("{id}:echo-1")).await;
    assert_eq!(echo["runner"]["mode"], "single-shot");
    // Both in /admin/pairs, filtered by app like a capability.
    let listed = gw.runners("live-video-to-video/scope").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["orchestrator"], format!("{id}:scope-l40s"));
    // And the orchestrator's discovery standing.
    let report = gw.admin_get("/admin/runners").await.json();
    let o = &report["orchestrators"].as_array().expect("list")[0];
    assert_eq!((o["orchestrator"].as_str(), o["standing"].as_str()), (Some(id.as_str()), Some("fresh")));
    assert_eq!(o["runners"], 2);
    assert!(report["apps"].as_array().expect("apps").iter().any(|a| a["app"] == "echo" && a["single_shot"] == 1));
}

#[actix_web::test]
async fn a_priced_runner_is_unroutable_without_a_way_to_pay_and_over_the_ceiling() {
    let priced = RunnerSpec { price: Some(5_000), ..RunnerSpec::persistent("paid", "live-video-to-video/scope", 2) };
    let s = live_sim("o1", &[priced]);
    let gw = live_gateway(&[&s], |c| {
        c.live_runner.apps.insert(
            "live-video-to-video/scope".into(),
            byoc_actors::liverunner::AppPolicy { max_price_per_second: Some(4_000), ..Default::default() },
        );
    })
    .await;
    let id = gw.orchestrator_id(&s.url).await;
    let p = gw.runner_until(&format!("{id}:paid"), "checked", |p| p["unroutable_reason"] != "token-pending").await;
    assert_eq!(p["routable"], false);
    assert_eq!(p["price_per_unit"], 5_000, "wei per second");
    assert_eq!(p["runner"]["price"], json!({"price": 5000, "unit": "seconds"}));
    // The ceiling is checked first: over it, the runner is out whatever the gateway could pay.
    assert_eq!(p["unroutable_reason"], "price-over-ceiling", "{p}");
}

#[actix_web::test]
async fn a_failing_discovery_keeps_the_records_stale_for_the_grace_period_then_expires_them() {
    let s = live_sim("o1", &[scope()]);
    let gw = live_gateway(&[&s], |c| c.live_runner.discovery_grace = Duration::from_secs(2)).await;
    let id = gw.orchestrator_id(&s.url).await;
    let rid = format!("{id}:scope-l40s");
    gw.runner_until(&rid, "routable", |p| p["routable"] == true).await;
    // Discovery answers 500 while the orchestrator serves: the runner stays routable, stale.
    s.state.set_runner_knobs(LiveKnobs { discovery: DiscoveryFault::Status500, ..s.state.runner_knobs() });
    let stale = gw.runner_until(&rid, "stale", |p| p["runner"]["standing"] == "stale").await;
    assert_eq!(stale["routable"], true, "#4087: kept, not dropped: {stale}");
    // Past the grace period the record expires and the runner leaves rotation.
    let expired = gw.runner_until(&rid, "expired", |p| p["routable"] == false).await;
    assert_eq!(expired["unroutable_reason"], "token-unavailable");
    assert!(expired["last_error"]["message"].as_str().is_some_and(|m| m.contains("grace period")), "{expired}");
    let report = gw.admin_get("/admin/runners").await.json();
    assert_eq!(report["orchestrators"][0]["standing"], "expired");
    // Discovery answers again: fresh and routable.
    s.state.set_runner_knobs(LiveKnobs { discovery: DiscoveryFault::None, ..s.state.runner_knobs() });
    let back = gw.runner_until(&rid, "fresh again", |p| p["routable"] == true).await;
    assert_eq!(back["runner"]["standing"], "fresh");
}

#[actix_web::test]
async fn a_discovery_that_is_not_a_document_or_hangs_is_a_failure_and_an_unreachable_orchestrator_takes_its_runners_out(
) {
    let s = live_sim("o1", &[scope()]);
    let gw = live_gateway(&[&s], |c| c.live_runner.discovery_timeout = Duration::from_millis(300)).await;
    let id = gw.orchestrator_id(&s.url).await;
    let rid = format!("{id}:scope-l40s");
    gw.runner_until(&rid, "routable", |p| p["routable"] == true).await;
    for fault in [DiscoveryFault::Garbage, DiscoveryFault::Hang] {
        s.state.set_runner_knobs(LiveKnobs { discovery: fault, ..s.state.runner_knobs() });
        eventually("the failure seen", 500, || async {
            let r = gw.admin_get("/admin/runners").await.json();
            (r["orchestrators"][0]["failures"].as_u64() >= Some(1)).then_some(())
        })
        .await;
        s.state.set_runner_knobs(LiveKnobs { discovery: DiscoveryFault::None, ..s.state.runner_knobs() });
        gw.runner_until(&rid, "fresh", |p| p["runner"]["standing"] == "fresh" && p["routable"] == true).await;
    }
    // Nothing listens: out at once (a request would fail the same way), back when it answers.
    s.stop().await;
    let out = gw.runner_until(&rid, "unreachable", |p| p["routable"] == false).await;
    assert_eq!(out["unroutable_reason"], "unreachable", "{out}");
    s.restart().expect("restart");
    gw.runner_until(&rid, "back", |p| p["routable"] == true).await;
}

#[actix_web::test]
async fn a_runner_no_longer_listed_leaves_rotation_and_is_forgotten_later() {
    let s = live_sim("o1", &[scope(), RunnerSpec::persistent("other", "live-video-to-video/scope", 1)]);
    let gw = live_gateway(&[&s], |c| c.live_runner.forget_after = Duration::from_secs(1)).await;
    let id = gw.orchestrator_id(&s.url).await;
    let rid = format!("{id}:scope-l40s");
    gw.runner_until(&rid, "routable", |p| p["routable"] == true).await;
    s.add_runner(RunnerSpec { gone: true, ..scope() });
    let gone = gw.runner_until(&rid, "unlisted", |p| p["runner"]["listed"] == false).await;
    assert_eq!(gone["routable"], false);
    eventually("forgotten", 500, || async {
        (gw.admin_get(&format!("/admin/runners/{rid}")).await.status == 404).then_some(())
    })
    .await;
    // The other runner of the orchestrator is unaffected.
    let other = gw.runner(&format!("{id}:other")).await;
    assert_eq!(other["routable"], true);
}

#[actix_web::test]
async fn orchestrators_without_live_runner_are_asked_rarely_and_hot_added_ones_are_discovered() {
    let byoc = sim("byoc", &[("depth", healthy())]);
    let gw =
        gateway_with(&[(&byoc, &["depth"])], |c| c.live_runner.discovery_refresh = Duration::from_millis(100)).await;
    let report = eventually("unsupported", 500, || async {
        let r = gw.admin_get("/admin/runners").await.json();
        (r["orchestrators"][0]["standing"] == "unsupported").then_some(r)
    })
    .await;
    assert_eq!(report["orchestrators"][0]["failures"], 0, "not a failure: {report}");
    assert!(gw.pairs("depth").await.iter().all(|p| p.get("runner").is_none()));
    let asked = byoc.state.runner_stats().discovery;
    // A Live Runner orchestrator added at runtime is discovered; removed, its runners retire.
    let s = live_sim("o2", &[scope()]);
    let added = gw.admin_post("/admin/orchestrators", json!({"url": s.url})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let id = added.json()["id"].as_str().expect("id").to_string();
    gw.runner_until(&format!("{id}:scope-l40s"), "routable", |p| p["routable"] == true).await;
    assert_eq!(byoc.state.runner_stats().discovery, asked, "the BYOC orchestrator was not asked again");
    assert_eq!(gw.admin_delete(&format!("/admin/orchestrators/{id}")).await.status, 204);
    eventually("retired", 500, || async {
        (gw.admin_get(&format!("/admin/runners/{id}:scope-l40s")).await.status == 404).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn an_operator_can_trip_and_reset_a_runner() {
    let s = live_sim("o1", &[scope()]);
    let gw = live_gateway(&[&s], |_| {}).await;
    let id = gw.orchestrator_id(&s.url).await;
    let rid = format!("{id}:scope-l40s");
    gw.runner_until(&rid, "routable", |p| p["routable"] == true).await;
    let tripped = gw.admin_post(&format!("/admin/runners/{rid}/trip"), json!({})).await;
    assert_eq!(tripped.status, 200, "{:?}", tripped.body);
    assert_eq!(tripped.json()["unroutable_reason"], "forced-open");
    let reset = gw.admin_post(&format!("/admin/runners/{rid}/reset"), json!({})).await;
    assert_eq!(reset.json()["routable"], true);
    gw.admin_post("/admin/runners/nope:x/trip", json!({})).await.error(404, "runner-not-found");
}

#[actix_web::test]
async fn a_remote_signers_orchestrators_are_asked_directly_and_leave_when_it_drops_them() {
    let registered = live_sim("o1", &[RunnerSpec::single_shot("a-1", "echo", 2)]);
    let unregistered = live_sim("o2", &[RunnerSpec::single_shot("b-1", "echo", 2)]);
    let signer = remote_signer();
    // While its list is empty the signer answers 503 (go-livepeer #3974): nothing changes.
    let gw =
        live_gateway(&[&registered], |c| c.live_runner.remote_signer = Some(signer_config(&signer, false, true))).await;
    eventually("the signer asked", 500, || async { (signer.state.stats().discoveries >= 2).then_some(()) }).await;
    assert_eq!(gw.admin_get("/admin/runners").await.json()["orchestrators"].as_array().map(Vec::len), Some(1));
    assert_eq!(signer.state.stats().authorization.as_deref(), Some("Bearer signer-secret"), "its headers are sent");

    // It lists both: the registered one is not doubled, the other is added and asked directly.
    signer.list_orchestrators(&[&registered.url, &unregistered.url]);
    let found = eventually("the signer's orchestrator discovered", 500, || async {
        let r = gw.admin_get("/admin/runners").await.json();
        r["orchestrators"].as_array()?.iter().find(|o| o["source"] == "signer" && o["standing"] == "fresh").cloned()
    })
    .await;
    assert_eq!(found["url"], unregistered.url.as_str());
    assert_eq!(gw.admin_get("/admin/runners").await.json()["orchestrators"].as_array().map(Vec::len), Some(2));
    let sid = found["orchestrator"].as_str().expect("id").to_string();
    gw.runner_until(&format!("{sid}:b-1"), "routable", |p| p["routable"] == true).await;
    // The registered orchestrator's runner leaves, so the call can only go to the other.
    registered.add_runner(RunnerSpec { listed: false, ..RunnerSpec::single_shot("a-1", "echo", 2) });
    let rid = format!("{}:a-1", gw.orchestrator_id(&registered.url).await);
    gw.runner_until(&rid, "unlisted", |p| p["routable"] == false).await;
    let ans = read(gw.client.post(format!("{}/apps/echo/run", gw.http)).send_body("x").await).await;
    assert_eq!(ans.status, 200, "{:?}", String::from_utf8_lossy(&ans.body));
    assert_eq!(ans.json()["sim"], "o2", "served by the orchestrator only the signer named");
    assert!(unregistered.state.runner_stats().discovery >= 1, "its /discovery was fetched directly");

    // Dropped from the signer's list: its runners leave.
    signer.list_orchestrators(&[&registered.url]);
    eventually("the dropped orchestrator's runners retired", 500, || async {
        (gw.admin_get(&format!("/admin/runners/{sid}:b-1")).await.status == 404).then_some(())
    })
    .await;
    assert_eq!(gw.admin_get("/admin/runners").await.json()["orchestrators"].as_array().map(Vec::len), Some(1));
}
