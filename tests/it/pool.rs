//! Routing under a changing pool (issue 23), with real simulators: an orchestrator that comes up
//! late is found within seconds; a capability registered by a policy is routed as soon as an
//! orchestrator offers it. Tests wait for events (with generous bounds) and assert on where
//! jobs went, never on timings.

use serde_json::{json, Value};

use crate::support::*;

/// The survey part of `GET /admin/supervisor`.
async fn survey(gw: &TestGateway) -> Value {
    gw.admin_get("/admin/supervisor").await.json()["survey"].clone()
}

#[actix_web::test]
async fn an_orchestrator_down_at_start_is_asked_again_within_seconds_and_routed_once_it_answers() {
    let a = sim("a", &[("depth", healthy_but_slower())]);
    let late = sim("late", &[("depth", healthy())]);
    late.stop().await;
    // `late` declares nothing: only a survey can find what it offers (as with `--orch-addr`).
    let gw = gateway(&[(&a, &["depth"]), (&late, &[])]).await;
    // The survey asks it at start, cannot reach it, and keeps asking (backing off from about a
    // second): three more times well within a pass of the old 60 s survey cadence.
    let s = eventually("the unreachable orchestrator asked three more times", 1000, || async {
        let s = survey(&gw).await;
        (s["asked"].as_u64() >= Some(4)).then_some(s)
    })
    .await;
    assert!(gw.find_pair("depth", &late.url).await.is_none(), "no pair while nothing answers: {s}");
    late.restart().expect("listen again");
    eventually("late's depth pair routable", 1000, || async {
        (gw.find_pair("depth", &late.url).await?["routable"] == true).then_some(())
    })
    .await;
    // It takes jobs: it is faster than `a`, so selection prefers it once measured.
    for i in 0..20 {
        assert_eq!(gw.job("depth", &format!("j{i}")).await.status, 200);
        if late.state.stats("depth").ok > 0 {
            break;
        }
    }
    assert!(late.state.stats("depth").ok > 0, "the late orchestrator served jobs");
    let s = survey(&gw).await;
    assert_eq!(s["unreachable"], 0, "the back-off ends the moment it answers: {s}");
}

#[actix_web::test]
async fn a_capability_registered_by_a_policy_is_routed_as_soon_as_an_orchestrator_offers_it() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    // A policy registers `upscale` before anyone offers it: the survey asks `a`, which says no.
    let ans = gw.admin_put("/admin/capabilities/upscale", json!({"profile": "low-latency"})).await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    eventually("the survey of upscale", 500, || async {
        let s = survey(&gw).await;
        (s["in_flight"] == 0 && s["queued_walks"] == 0 && s["asked"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    assert!(gw.find_pair("upscale", &a.url).await.is_none());
    // Then its worker registers the capability (go-livepeer's `/capability/register`).
    a.state.set("upscale", healthy());
    // The next job asks the orchestrators (the survey's next pass is not waited for).
    let ans = gw.job("upscale", "after-register").await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    assert_eq!(a.state.stats("upscale").ok, 1);
}
