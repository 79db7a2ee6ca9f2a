//! Payments (issue 28 item 4): the gateway answers a priced runner's 402 challenge with tickets
//! and segment credentials signed by its key (verified by the simulator as go-livepeer verifies
//! them), and keeps a metered session funded past the orchestrator's debit loop, in both
//! dialects (go-livepeer's protobuf payment answers, `livepeer/node`'s challenge JSON); and,
//! for operators whose key lives in a go-livepeer remote signer, through the signer
//! (`/generate-live-payment`) with its 480, 481 and 482.

use byoc_sim::{Dialect, LiveKnobs, RunnerSpec, SignerHandle};

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

/// The gateway (without a key of its own) pays through `signer`.
fn paid_by(c: &mut byoc_gateway::config::Config, signer: &SignerHandle) {
    c.live_runner.remote_signer = Some(signer_config(signer, true, false));
}

#[actix_web::test]
async fn a_metered_session_paid_through_a_remote_signer_stays_funded_through_its_482_and_480() {
    let spec = RunnerSpec { price: Some(PRICE), ..RunnerSpec::persistent("paid", "live-video-to-video/scope", 2) };
    let s = live_sim("o1", &[spec]);
    s.state.set_runner_knobs(LiveKnobs { tickets: true, debit_interval_ms: 200, ..s.state.runner_knobs() });
    let signer = remote_signer();
    let gw = live_gateway(&[&s], |c| {
        paid_by(c, &signer);
        c.live_runner.payment_interval = Duration::from_millis(100);
    })
    .await;
    let id = gw.orchestrator_id(&s.url).await;
    gw.runner_until(&format!("{id}:paid"), "routable: the signer can pay", |p| p["routable"] == true).await;
    let open = read(gw.client.post(format!("{}/apps/live-video-to-video/scope/session", gw.http)).send().await).await;
    assert_eq!(open.status, 200, "{:?}", String::from_utf8_lossy(&open.body));
    let st = signer.state.stats();
    assert_eq!((st.orchestrator_info, st.paid, st.with_state), (1, 1, 0), "the address asked once, then paid: {st:?}");
    let (kind, manifest, app) = &st.requests_seen[0];
    assert_eq!((kind.as_str(), app.as_str()), ("live", "live-video-to-video/scope"), "the unit's type");
    let stats = s.state.runner_stats();
    assert_eq!((stats.challenges, stats.payments, stats.payments_refused), (1, 1, 0), "{stats:?}");
    let listed = gw.admin_get("/admin/sessions").await.json();
    assert_eq!(listed["sessions"][0]["runner_session"], manifest.as_str(), "the challenge's manifest is the session");
    let pay = &listed["sessions"][0]["payment"];
    assert!(pay["ev_sent_wei"].as_f64().is_some_and(|ev| ev > 0.0), "{listed}");
    assert_eq!(pay["paid_by"], "remote-signer");

    // Each round asks the signer; a 482 (nothing owed) and a 480 (stale params) come next.
    signer.fail_next(byoc_sim::NO_TICKETS);
    signer.fail_next(byoc_sim::REFRESH_SESSION);
    eventually("top-ups past a 482 and a 480, and beyond the 10 s preload's first rounds", 1500, || async {
        let st = signer.state.stats();
        let after = st
            .answers
            .iter()
            .position(|a| *a == 480)
            .map(|i| st.answers[i + 1..].iter().filter(|a| **a == 200).count());
        (after.is_some_and(|n| n >= 3) && s.state.runner_stats().payments >= 4).then_some(())
    })
    .await;
    let st = signer.state.stats();
    for (i, a) in st.answers.iter().enumerate() {
        if *a == 482 || *a == 480 {
            // go-livepeer #4077: a 482 carries no state; the last one goes back unchanged
            // (and after a 480 the same state goes with the refreshed params).
            assert_eq!(st.state_seqs.get(i + 1), Some(&st.state_seqs[i]), "request {} after a {a}: {st:?}", i + 1);
        }
    }
    assert!(s.state.runner_stats().refreshes >= 1, "a 480 asked the orchestrator for fresh params");
    let stats = s.state.runner_stats();
    assert_eq!((stats.released_unpaid, stats.payments_refused), (0, 0), "{stats:?}");
    let v = open.json();
    let ans = read(gw.client.get(format!("{}/x", v["app_url"].as_str().expect("app_url"))).send().await).await;
    assert_eq!(ans.status, 200, "{:?}", String::from_utf8_lossy(&ans.body));
    let stop = read(gw.client.post(format!("{}/stop", v["control_url"].as_str().expect("control"))).send().await).await;
    assert_eq!(stop.status, 200);
    assert!(s.state.runner_sessions("paid").is_empty());
}

#[actix_web::test]
async fn a_remote_signer_refusing_a_price_refuses_that_runner_and_ends_its_session() {
    let spec = RunnerSpec { price: Some(PRICE), ..RunnerSpec::persistent("paid", "scope", 2) };
    let s = live_sim("o1", &[spec]);
    s.state.set_runner_knobs(LiveKnobs { tickets: true, ..s.state.runner_knobs() });
    let signer = remote_signer();
    let gw = live_gateway(&[&s], |c| {
        paid_by(c, &signer);
        c.live_runner.payment_interval = Duration::from_millis(100);
        c.live_runner.max_attempts = 1;
    })
    .await;
    let id = gw.orchestrator_id(&s.url).await;
    gw.runner_until(&format!("{id}:paid"), "routable", |p| p["routable"] == true).await;
    // 481 at the reservation: the runner cannot be paid; one clean error saying why.
    signer.fail_next(byoc_sim::PRICE_EXCEEDED);
    let open = read(gw.client.post(format!("{}/apps/scope/session", gw.http)).send().await).await;
    let err = open.error(503, "no-runner-available");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("481")), "{err}");
    assert!(s.state.runner_sessions("paid").is_empty(), "nothing reserved");

    // That runner sits out its payment back-off, as a BYOC pair whose payment was refused.
    let r = gw.runner(&format!("{id}:paid")).await;
    assert_eq!(
        (r["routable"].as_bool(), r["unroutable_reason"].as_str()),
        (Some(false), Some("payment-required")),
        "{r}"
    );

    // Another runner: opened, then the signer refuses the price mid-session: the session ends
    // and is released.
    s.add_runner(RunnerSpec { price: Some(PRICE), ..RunnerSpec::persistent("paid-2", "scope", 2) });
    gw.runner_until(&format!("{id}:paid-2"), "routable", |p| p["routable"] == true).await;
    let open = read(gw.client.post(format!("{}/apps/scope/session", gw.http)).send().await).await;
    assert_eq!(open.status, 200, "{:?}", String::from_utf8_lossy(&open.body));
    let app_url = open.json()["app_url"].as_str().expect("app_url").to_string();
    assert_eq!(s.state.runner_sessions("paid-2").len(), 1);
    signer.fail_next(byoc_sim::PRICE_EXCEEDED);
    eventually("the session released at its runner", 500, || async {
        s.state.runner_sessions("paid-2").is_empty().then_some(())
    })
    .await;
    assert!(gw.admin_get("/admin/sessions").await.json()["sessions"].as_array().is_some_and(Vec::is_empty));
    let err = read(gw.client.get(format!("{app_url}/x")).send().await).await.error(410, "session-ended");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("payment-refused")), "{err}");
}

#[actix_web::test]
async fn a_metered_single_shot_stream_is_kept_funded_past_its_preload() {
    let spec = RunnerSpec { price: Some(PRICE), ..RunnerSpec::single_shot("meter", "live/sse", 2) };
    let s = live_sim("o1", &[spec]);
    s.state.set_runner_knobs(LiveKnobs { tickets: true, debit_interval_ms: 200, ..s.state.runner_knobs() });
    let gw = live_gateway(&[&s], |c| {
        with_key(c);
        c.live_runner.payment_interval = Duration::from_millis(100);
    })
    .await;
    let id = gw.orchestrator_id(&s.url).await;
    gw.runner_until(&format!("{id}:meter"), "routable", |p| p["routable"] == true).await;
    // 56 events 200 ms apart: 11 s, past the 10 s the challenge's payment bought. The
    // orchestrator debits the call as it runs and cuts it once the credit is gone.
    let ans = read(gw.client.get(format!("{}/apps/live/sse/sse?n=56&interval_ms=200", gw.http)).send().await).await;
    assert_eq!(ans.status, 200);
    let text = String::from_utf8_lossy(&ans.body);
    assert!(text.contains(r#""n":55"#), "the stream ran to its end: {}", &text[text.len().saturating_sub(300)..]);
    let stats = s.state.runner_stats();
    assert_eq!((stats.released_unpaid, stats.payments_refused), (0, 0), "{stats:?}");
    assert!(stats.payments >= 2, "the reservation's payment and top-ups: {stats:?}");
    eventually("the call's reservation released", 500, || async {
        s.state.runner_sessions("meter").is_empty().then_some(())
    })
    .await;
}
