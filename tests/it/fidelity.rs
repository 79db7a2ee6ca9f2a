//! go-livepeer fidelity: behaviours of real go-livepeer orchestrators that the simulator now
//! reproduces (an SSE answer that lingers after `[DONE]`, capacity slots leaked on late
//! refusals, 400s about credentials, payment and price, a balance check on priced
//! capabilities), and what the gateway does about each, through real HTTP.

use std::time::Duration;

use byoc_actors::protocol::header::encode_client_header;
use byoc_sim::{Knobs, SimHandle};
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use crate::support::*;

/// Posts a job for `capability` whose `Livepeer` header carries `fields` (merged over a valid
/// job).
async fn job_with(gw: &TestGateway, capability: &str, fields: Value) -> Answer {
    let mut header = json!({"id": "j", "capability": capability, "request": "{}", "timeout_seconds": 10});
    if let (Some(h), Some(f)) = (header.as_object_mut(), fields.as_object()) {
        h.extend(f.clone());
    }
    let req = gw
        .client
        .post(format!("{}/process/request/{capability}", gw.http))
        .insert_header(("Livepeer", encode_client_header(&header)))
        .insert_header(("Content-Type", "application/json"));
    read(req.send_body("{}").await).await
}

/// Waits until the pair of `capability` on `sim` reports `routable` (and, when not, `reason`).
async fn pair_state(gw: &TestGateway, capability: &str, sim: &SimHandle, routable: bool, reason: &str) -> Value {
    eventually(&format!("{} {capability} routable={routable} {reason}", sim.url), 500, || async {
        let p = gw.find_pair(capability, &sim.url).await?;
        (p["routable"] == routable && (routable || p["unroutable_reason"] == reason)).then_some(p)
    })
    .await
}

async fn metrics(gw: &TestGateway) -> String {
    let m = read(gw.client.get(format!("{}/metrics", gw.admin)).bearer_auth(TOKEN).send().await).await;
    String::from_utf8_lossy(&m.body).into_owned()
}

#[actix_web::test]
async fn an_event_stream_ends_at_done_although_the_orchestrator_lingers() {
    // go-livepeer's orchestrator writes blank lines after [DONE] until timeout_seconds (30 s
    // here), holding its capacity slot: only the gateway hanging up ends the job there.
    let a = sim("a", &[("chat", Knobs { sse_events: 2, sse_linger: true, ..healthy() })]);
    let gw = gateway(&[(&a, &["chat"])]).await;
    let header =
        encode_client_header(&json!({"id": "s", "capability": "chat", "request": "{}", "timeout_seconds": 30}));
    let mut resp = gw
        .client
        .post(format!("{}/process/request/chat", gw.http))
        .insert_header(("Livepeer", header))
        .send_body("{}")
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    // Bounded well under the orchestrator's 30 s: the stream must end at [DONE].
    let read_all = async {
        while let Some(chunk) = resp.next().await {
            body.extend_from_slice(&chunk.expect("chunk"));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the stream ends at [DONE], not at the orchestrator's timeout");
    let text = String::from_utf8_lossy(&body);
    assert!(text.ends_with("data: [DONE]\n\n"), "ends with the [DONE] event: {text:?}");
    assert!(text.contains("\"n\":1") && text.contains("{\"balance\": 1000}"), "every line before it: {text:?}");
    assert!(!text.contains("\n\n\n"), "runs of blank lines are not relayed: {text:?}");
    // The gateway dropped the upstream connection: the orchestrator's job (and its slot) ends.
    eventually("the orchestrator's job to end", 250, || async { (a.state.inflight("chat") == 0).then_some(()) }).await;
    let pair = gw.pair("chat", &a.url).await;
    assert_eq!(pair["inflight"], 0, "{pair}");
}

#[actix_web::test]
async fn request_and_parameters_go_livepeer_would_refuse_are_answered_400_and_nothing_is_sent() {
    let a = sim("a", &[("depth", healthy())]);
    // The simulator behaves as go-livepeer's orchestrator: such a job is refused after a slot
    // was reserved, and that slot is never freed.
    let direct = read(
        awc::Client::default()
            .post(format!("{}/process/request/depth", a.url))
            .insert_header((
                "Livepeer",
                encode_client_header(&json!({"capability": "depth", "request": "[1]", "parameters": "{}",
                    "timeout_seconds": 5, "id": "", "capability_url": "", "sender": "", "sig": ""})),
            ))
            .send_body("{}")
            .await,
    )
    .await;
    assert_eq!(direct.status, 400);
    assert!(String::from_utf8_lossy(&direct.body).starts_with("Unable to unmarshal job request details"));
    assert_eq!(a.state.stats("depth").leaked_slots, 1, "go-livepeer leaks the slot");

    let gw = gateway(&[(&a, &["depth"])]).await;
    let before = a.state.stats("depth");
    for (fields, says) in [
        (json!({"request": ""}), "Unable to unmarshal job request"),
        (json!({"request": "abc"}), "Unable to unmarshal job request"),
        (json!({"request": [1]}), "Unable to unmarshal job request"),
        (json!({"request": {"stream_id": 5}}), "Unable to unmarshal job request"),
        (json!({"parameters": "[1]"}), "Unable to unmarshal job parameters"),
        (json!({"parameters": {"orchestrators": {"include": "x"}}}), "Unable to unmarshal job parameters"),
    ] {
        let answer = job_with(&gw, "depth", fields.clone()).await;
        let err = answer.error(400, "invalid-job");
        assert!(err["error"]["message"].as_str().is_some_and(|m| m.starts_with(says)), "{fields}: {err}");
    }
    assert_eq!(a.state.stats("depth"), before, "nothing reached the orchestrator");
    // A missing or empty `parameters` is still `{}` (the Python SDK omits it).
    for fields in [json!({}), json!({"parameters": ""}), json!({"request": {"stream_id": "s"}, "parameters": null})] {
        let answer = job_with(&gw, "depth", fields.clone()).await;
        assert_eq!(answer.status, 200, "{fields}: {:?}", answer.body);
    }
}

#[actix_web::test]
async fn include_and_exclude_pin_a_job_to_orchestrators() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;
    let b_id = gw.pair("depth", &b.url).await["orchestrator"].as_str().expect("id").to_string();
    for i in 0..8 {
        // By URL, exactly as go-livepeer matches (its pool entries' URL strings).
        let pinned = job_with(&gw, "depth", json!({"parameters": {"orchestrators": {"include": [a.url]}}})).await;
        assert_eq!(pinned.status, 200);
        assert_eq!(pinned.header("x-orchestrator-url").as_deref(), Some(a.url.as_str()), "include, job {i}");
        let excluded = job_with(&gw, "depth", json!({"parameters": {"orchestrators": {"exclude": [a.url]}}})).await;
        assert_eq!(excluded.header("x-orchestrator-url").as_deref(), Some(b.url.as_str()), "exclude, job {i}");
        // By the gateway's orchestrator id.
        let by_id = job_with(&gw, "depth", json!({"parameters": {"orchestrators": {"include": [b_id]}}})).await;
        assert_eq!(by_id.header("x-orchestrator-url").as_deref(), Some(b.url.as_str()), "id, job {i}");
    }
    let nowhere =
        job_with(&gw, "depth", json!({"parameters": {"orchestrators": {"include": ["https://10.9.9.9:8935"]}}})).await;
    let err = nowhere.error(503, "no-routable-orchestrator");
    let message = err["error"]["message"].as_str().expect("message");
    assert!(message.contains("2 excluded-by-job") && message.contains("include/exclude"), "{err}");
    // Excluding every orchestrator is the same answer.
    let none = job_with(&gw, "depth", json!({"parameters": {"orchestrators": {"exclude": [a.url, b_id]}}})).await;
    none.error(503, "no-routable-orchestrator");
}

#[actix_web::test]
async fn a_credentials_refusal_fails_over_and_takes_the_pair_out_until_reset() {
    // An orchestrator from a fork that expects another signature scheme: its tokens look fine,
    // every job gets 400 Could not verify job creds.
    let a = sim("a", &[("depth", Knobs { reject_creds: true, ..healthy() })]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;
    // Until selection has tried `a` (bounded): every job is served, by `b`.
    jobs_served_by(&gw, &b, || a.state.stats("depth").jobs > 0).await;
    assert_eq!(a.state.stats("depth").jobs, 1, "one job reached `a`, then none");
    let pair = pair_state(&gw, "depth", &a, false, "credentials-rejected").await;
    assert_eq!(pair["last_error"]["class"], "credentials-rejected", "{pair}");
    assert!(pair["last_error"]["message"].as_str().is_some_and(|m| m.contains("Could not verify job creds")), "{pair}");
    assert_eq!(pair["counters"]["refused"], 1, "one refusal, then out of rotation: {pair}");
    // The gauges follow on the supervisor's next tick.
    let m = eventually("the unroutable gauge", 500, || async {
        let m = metrics(&gw).await;
        m.contains("byoc_gateway_pairs_unroutable{reason=\"credentials-rejected\"} 1").then_some(m)
    })
    .await;
    assert!(m.contains("result=\"credentials-rejected\""), "the attempt's class is counted");

    // With no alternative left the client sees the orchestrator's answer, as JSON.
    let b_id = gw.pair("depth", &b.url).await["orchestrator"].as_str().expect("id").to_string();
    let drained = gw.admin_patch(&format!("/admin/orchestrators/{b_id}"), json!({"enabled": false})).await;
    assert_eq!(drained.status, 200, "{:?}", drained.body);
    let orch = pair["orchestrator"].as_str().expect("id").to_string();
    let reset = gw.admin_post(&format!("/admin/pairs/{orch}/depth/reset"), json!({})).await;
    assert_eq!(reset.status, 200);
    pair_state(&gw, "depth", &a, true, "").await;
    let answer = gw.job("depth", "last").await;
    let err = answer.error(400, "orchestrator-refused");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("Could not verify job creds")), "{err}");
    assert_eq!(err["error"]["attempts"][0]["result"], "credentials-rejected", "{err}");
    // And then a fast 503 that says why.
    let err = gw.job("depth", "after").await.error(503, "no-routable-orchestrator");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("credentials-rejected")), "{err}");
}

#[actix_web::test]
async fn price_and_payment_refusals_fail_over_with_their_own_reasons() {
    let priceless = sim("priceless", &[("depth", Knobs { price_unavailable: true, ..healthy() })]);
    // Priced, with enough credit when its token was read; the credit is gone by the job.
    let spent = sim("spent", &[("depth", Knobs { price_per_unit: 10, balance: 600, ..healthy() })]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&priceless, &["depth"]), (&spent, &["depth"]), (&b, &["depth"])]).await;
    pair_state(&gw, "depth", &spent, true, "").await;
    spent.state.patch(None, &json!({"balance": 0})).expect("knobs");
    // Until selection has tried both (bounded): every job is served, by `b`.
    jobs_served_by(&gw, &b, || priceless.state.stats("depth").jobs > 0 && spent.state.stats("depth").jobs > 0).await;
    assert_eq!(spent.state.stats("depth").jobs, 1, "one job reached `spent`, then none");
    pair_state(&gw, "depth", &priceless, false, "price-unavailable").await;
    let p = pair_state(&gw, "depth", &spent, false, "payment-required").await;
    assert!(p["last_error"]["message"].as_str().is_some_and(|m| m.contains("Insufficient balance")), "{p}");
    assert_eq!(priceless.state.stats("depth").leaked_slots, 1, "one job reached it, then none");
}

#[actix_web::test]
async fn a_priced_pair_without_enough_balance_gets_no_jobs_until_its_token_shows_credit() {
    // 60 s x 10 wei = 600 wei needed; the token says 599.
    let poor = sim("poor", &[("depth", Knobs { price_per_unit: 10, balance: 599, ..healthy() })]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway_with(&[(&poor, &["depth"]), (&b, &["depth"])], |c| {
        c.routing.token_refresh = Duration::from_millis(200);
    })
    .await;
    let p = pair_state(&gw, "depth", &poor, false, "payment-required").await;
    assert_eq!(p["price_per_unit"], 10, "{p}");
    for i in 0..8 {
        assert_eq!(gw.job("depth", &format!("j{i}")).await.status, 200);
    }
    assert_eq!(poor.state.stats("depth").jobs, 0, "no job was sent to fail for want of payment");
    // Re-evaluated on each token refresh.
    poor.state.patch(None, &json!({"balance": 600})).expect("knobs");
    pair_state(&gw, "depth", &poor, true, "").await;
}
