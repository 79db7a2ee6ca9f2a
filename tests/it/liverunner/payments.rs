//! Payments (issue 28 item 4): the gateway answers a priced runner's 402 challenge with tickets
//! and segment credentials signed by its key (verified by the simulator as go-livepeer verifies
//! them), and keeps a metered session funded past the orchestrator's debit loop, in both
//! dialects (go-livepeer's protobuf payment answers, `livepeer/node`'s challenge JSON).

use byoc_sim::{Dialect, LiveKnobs, RunnerSpec};

use super::*;

/// Wei per second: a ticket (EV 1e10 at the simulator) buys half a second.
const PRICE: u64 = 20_000_000_000;

async fn a_metered_session_stays_funded(dialect: Dialect) {
    let spec = RunnerSpec { price: Some(PRICE), ..RunnerSpec::persistent("paid", "live-video-to-video/scope", 2) };
    let s = live_sim("o1", &[spec]);
    s.state.set_runner_knobs(LiveKnobs { tickets: true, debit_interval_ms: 200, dialect, ..s.state.runner_knobs() });
    let gw = live_gateway(&[&s], |c| {
        with_key(c);
        c.live_runner.payment_interval = Duration::from_millis(100);
    })
    .await;
    let id = gw.orchestrator_id(&s.url).await;
    gw.runner_until(&format!("{id}:paid"), "routable", |p| p["routable"] == true).await;
    let open = read(gw.client.post(format!("{}/apps/live-video-to-video/scope/session", gw.http)).send().await).await;
    assert_eq!(open.status, 200, "{:?}", String::from_utf8_lossy(&open.body));
    let stats = s.state.runner_stats();
    assert_eq!((stats.challenges, stats.payments, stats.payments_refused), (1, 1, 0), "{stats:?}");
    let v = open.json();
    // The reservation paid 10 s; the simulator debits every 200 ms and releases an unpaid
    // session. Two top-ups later (past the preload) the session still serves.
    eventually("two top-ups accepted", 1500, || async { (s.state.runner_stats().payments >= 3).then_some(()) }).await;
    let stats = s.state.runner_stats();
    assert_eq!((stats.released_unpaid, stats.payments_refused), (0, 0), "{stats:?}");
    let app_url = v["app_url"].as_str().expect("app_url");
    let ans = read(gw.client.get(format!("{app_url}/x")).send().await).await;
    assert_eq!(ans.status, 200, "{:?}", String::from_utf8_lossy(&ans.body));
    let listed = gw.admin_get("/admin/sessions").await.json();
    let pay = &listed["sessions"][0]["payment"];
    assert!(pay["ev_sent_wei"].as_f64().is_some_and(|ev| ev >= 2e11), "{listed}");
    let stop = read(gw.client.post(format!("{}/stop", v["control_url"].as_str().expect("control"))).send().await).await;
    assert_eq!(stop.status, 200);
    assert!(s.state.runner_sessions("paid").is_empty());
}

#[actix_web::test]
async fn a_metered_session_at_go_livepeer_answers_the_challenge_and_stays_funded() {
    a_metered_session_stays_funded(Dialect::GoLivepeer).await;
}

#[actix_web::test]
async fn a_metered_session_at_livepeer_node_answers_the_challenge_and_stays_funded() {
    a_metered_session_stays_funded(Dialect::Node).await;
}

#[actix_web::test]
async fn a_fixed_price_single_shot_call_is_paid_once_and_replayed() {
    let spec = RunnerSpec { price: Some(PRICE), unit: "fixed".into(), ..RunnerSpec::single_shot("fx", "echo", 2) };
    let s = live_sim("o1", &[spec]);
    s.state.set_runner_knobs(LiveKnobs { tickets: true, ..s.state.runner_knobs() });
    let gw = live_gateway(&[&s], with_key).await;
    let id = gw.orchestrator_id(&s.url).await;
    gw.runner_until(&format!("{id}:fx"), "routable", |p| p["routable"] == true).await;
    let ans = read(gw.client.post(format!("{}/apps/echo/run", gw.http)).send_body("the body").await).await;
    assert_eq!(ans.status, 200, "{:?}", String::from_utf8_lossy(&ans.body));
    assert_eq!(ans.json()["body_len"], 8, "the challenged request is replayed whole");
    let stats = s.state.runner_stats();
    assert_eq!((stats.challenges, stats.payments, stats.payments_refused), (1, 1, 0), "{stats:?}");
}
