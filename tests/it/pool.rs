//! Routing under a changing pool (issue 23), with real simulators: an orchestrator that comes up
//! late is found within seconds; one that fails in windows regains its share in its good windows
//! while the pool is short; a pair whose jobs stop coming back gets no new ones while they run;
//! a capability registered by a policy is routed as soon as an orchestrator offers it. Tests wait
//! for events (with generous bounds) and assert on where jobs went, never on timings.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use byoc_actors::protocol::header::encode_client_header;
use byoc_sim::{Knobs, OverCapacity, SimHandle};
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
    let a = sim("a", &[("depth", healthy()), ("other", healthy())]);
    // Lazy discovery has room for one name, and a job takes it: a capability a policy names
    // needs none.
    let gw = gateway_with(&[(&a, &["depth"])], |c| c.routing.max_discovered_capabilities = 1).await;
    assert_eq!(gw.job("other", "discovered").await.status, 200);
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

/// Keeps `clients` jobs of `capability` in flight until `stop` is set, counting answers.
fn keep_busy(gw: &TestGateway, capability: &str, clients: usize, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let done = Arc::new(AtomicU64::new(0));
    for c in 0..clients {
        let (client, url) = (gw.client.clone(), format!("{}/process/request/{capability}", gw.http));
        let (stop, done) = (stop.clone(), done.clone());
        actix_web::rt::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                n += 1;
                let header = job_header("flap", &format!("c{c}-{n}"));
                let _ = client.post(&url).insert_header(("Livepeer", header)).send_body("{}").await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    done
}

async fn breaker(gw: &TestGateway, capability: &str, sim: &SimHandle) -> Value {
    gw.pair(capability, &sim.url).await["breaker"].clone()
}

#[actix_web::test]
async fn an_orchestrator_failing_in_windows_serves_jobs_in_its_good_windows_while_the_pool_is_short() {
    // The pool is short: `steady` has one slot and four clients keep jobs coming, so jobs wait
    // in the queue whenever `flappy` is out.
    let steady = sim(
        "steady",
        &[("flap", Knobs { latency_ms: 100, capacity: 1, over_capacity: OverCapacity::Refuse, ..Knobs::default() })],
    );
    let flappy = sim(
        "flappy",
        &[("flap", Knobs { latency_ms: 10, capacity: 2, over_capacity: OverCapacity::Refuse, ..Knobs::default() })],
    );
    let gw = gateway(&[(&steady, &["flap"]), (&flappy, &["flap"])]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = keep_busy(&gw, "flap", 4, stop.clone());
    // A bad window: every job fails there. Its breaker opens, and its trials fail, until it has
    // opened three levels up (the old breaker then stayed out 8 s, into the next windows).
    flappy.state.patch(Some("flap"), &json!({"error_rate": 1.0})).expect("knobs");
    eventually("flappy's breaker three levels up", 2000, || async {
        (breaker(&gw, "flap", &flappy).await["level"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    // Its good window: it must take a share of the next 40 jobs, not sit out the window.
    flappy.state.patch(Some("flap"), &json!({"error_rate": 0.0})).expect("knobs");
    let (ok_before, done_before) = (flappy.state.stats("flap").ok, done.load(Ordering::Relaxed));
    eventually("40 more jobs answered", 3000, || async {
        (done.load(Ordering::Relaxed) >= done_before + 40).then_some(())
    })
    .await;
    let served = flappy.state.stats("flap").ok - ok_before;
    stop.store(true, Ordering::Relaxed);
    assert!(served >= 8, "flappy served {served} of the 40 jobs of its good window");
}

#[actix_web::test]
async fn a_pair_whose_jobs_stop_coming_back_gets_no_new_job_while_they_run() {
    let spiky = sim("spiky", &[("depth", Knobs { latency_ms: 5, capacity: 4, ..Knobs::default() })]);
    let other = sim("other", &[("depth", Knobs { latency_ms: 60, capacity: 4, ..Knobs::default() })]);
    let gw = gateway(&[(&spiky, &["depth"]), (&other, &["depth"])]).await;
    // One attempt per job: nothing is cut short or retried, so where a job goes is where it
    // stays.
    let ans = gw.admin_put("/admin/capabilities/depth", json!({"max_attempts": 1})).await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    // Both measured: spiky is the fast one.
    for i in 0..40 {
        assert_eq!(gw.job("depth", &format!("warm-{i}")).await.status, 200);
        let measured = |p: Value| p["latency_p50_ms"].is_number();
        if measured(gw.pair("depth", &spiky.url).await) && measured(gw.pair("depth", &other.url).await) {
            break;
        }
    }
    // Its latency jumps: a job sent there now does not come back.
    spiky.state.patch(Some("depth"), &json!({"hold": true})).expect("knobs");
    let spiky_jobs = spiky.state.stats("depth").jobs;
    let held = gw.spawn_job("depth", "held");
    eventually("the job held on spiky", 500, || async { (spiky.state.inflight("depth") == 1).then_some(()) }).await;
    // Two jobs pinned to `other` (60 ms each) end: by then the held job is far older than
    // spiky's usual few milliseconds, and nothing has come back from spiky.
    for i in 0..2 {
        let pinned = encode_client_header(&json!({
            "id": format!("pinned-{i}"), "capability": "depth", "request": "{}", "timeout_seconds": 10,
            "parameters": json!({"orchestrators": {"include": [other.url]}}).to_string(),
        }));
        let url = format!("{}/process/request/depth", gw.http);
        let ans = read(gw.client.post(url).insert_header(("Livepeer", pinned)).send_body("{}").await).await;
        assert_eq!(ans.header("x-orchestrator-url").as_deref(), Some(other.url.as_str()));
    }
    // Spiky is still the fastest pair on its record, with free slots: the next jobs go to the
    // other pair all the same, while the held job runs.
    for i in 0..5 {
        let ans = gw.job("depth", &format!("after-{i}")).await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.header("x-orchestrator-url").as_deref(), Some(other.url.as_str()), "job {i}");
    }
    assert_eq!(spiky.state.stats("depth").jobs - spiky_jobs, 1, "spiky got nothing but the held job");
    let p = gw.pair("depth", &spiky.url).await;
    assert!(p["unanswered_ms"].as_f64() > p["latency_p99_ms"].as_f64(), "the gateway shows the held job overdue: {p}");
    spiky.state.release_jobs(1);
    assert_eq!(held.await.expect("job").status, 200);
}
