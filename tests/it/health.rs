//! The health model, scenario by scenario, proven by counts and states (never by timing):
//! breakers per pair, failure classes, price ceilings, node-level connect failures, cold
//! starts, retry budgets, and runtime policy changes.

use std::time::Duration;

use byoc_sim::Knobs;
use serde_json::json;

use crate::support::*;

async fn metrics_text(gw: &TestGateway) -> String {
    String::from_utf8_lossy(&read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await.body).into_owned()
}

#[actix_web::test]
async fn an_oom_ing_pair_opens_while_the_same_orchestrators_other_capability_stays_closed() {
    let a = sim("a", &[("depth", Knobs { oom_rate: 1.0, ..healthy() }), ("upscale", healthy())]);
    let gw = gateway_with(&[(&a, &["depth", "upscale"])], |c| c.breaker.base_open = Duration::from_secs(30)).await;
    for i in 0..5 {
        gw.job("depth", &format!("d{i}")).await.error(502, "upstream-failed");
        assert_eq!(gw.job("upscale", &format!("u{i}")).await.status, 200);
    }
    let depth = gw.pair("depth", &a.url).await;
    assert_eq!(depth["breaker"]["state"], "open", "{depth}");
    assert_eq!(depth["counters"]["oom"], 5);
    assert_eq!(depth["last_error"]["class"], "oom");
    let upscale = gw.pair("upscale", &a.url).await;
    assert_eq!(upscale["breaker"]["state"], "closed", "{upscale}");
    assert_eq!(upscale["routable"], true);
    assert_eq!(upscale["counters"]["success"], 5);
    assert!(metrics_text(&gw).await.contains("reason=\"consecutive-failures\""));
}

#[actix_web::test]
async fn an_open_pair_gets_no_traffic_and_a_healthy_one_takes_it() {
    let a = sim("a", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| c.breaker.base_open = Duration::from_secs(30)).await;
    for i in 0..5 {
        gw.job("depth", &format!("d{i}")).await.error(502, "upstream-failed");
    }
    assert_eq!(gw.pair("depth", &a.url).await["breaker"]["state"], "open");
    let added = gw.admin_post("/admin/orchestrators", json!({"url": b.url, "capabilities": ["depth"]})).await;
    assert_eq!(added.status, 201);
    for i in 0..20 {
        let ans = gw.job("depth", &format!("j{i}")).await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.json()["sim"], "b");
        assert_eq!(ans.header("x-gateway-attempts").as_deref(), Some("1"));
    }
    assert_eq!(a.state.stats("depth").jobs, 5, "no job reached the open pair");
}

#[actix_web::test]
async fn a_healed_pair_recovers_through_half_open() {
    let a = sim("a", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        // Long enough that the pair still reads open right after the fifth failure on a
        // loaded machine, short enough to keep the test quick.
        c.breaker.base_open = Duration::from_secs(1);
        c.breaker.max_open = Duration::from_secs(2);
    })
    .await;
    for i in 0..5 {
        gw.job("depth", &format!("d{i}")).await.error(502, "upstream-failed");
    }
    assert_eq!(gw.pair("depth", &a.url).await["breaker"]["state"], "open");
    // Once its open time is up, the pair reads as the next job would see it: half-open and
    // routable (a trial would be admitted), never "open" beside "routable".
    let p = eventually("the breaker to read half_open", 250, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["breaker"]["state"] == "half_open").then_some(p)
    })
    .await;
    assert_eq!(p["routable"], true, "{p}");
    assert!(p["breaker"]["since_unix_ms"].as_u64().is_some(), "{p}");
    a.state.patch(Some("depth"), &json!({"error_rate": 0.0})).expect("heal");
    // While open, jobs are refused without reaching the orchestrator; once the back-off has
    // elapsed one trial goes through and closes the breaker.
    let ans = eventually("a trial job succeeds", 250, || async {
        let ans = gw.job("depth", "trial").await;
        (ans.status == 200).then_some(ans)
    })
    .await;
    assert_eq!(ans.json()["sim"], "a");
    let pair = gw.pair("depth", &a.url).await;
    assert_eq!(pair["breaker"]["state"], "closed", "{pair}");
    assert_eq!(pair["breaker"]["level"], 0);
    assert_eq!(a.state.stats("depth").jobs, 6, "5 failures and exactly one trial");
    let m = metrics_text(&gw).await;
    assert!(m.contains("from=\"open\",to=\"half_open\",reason=\"backoff-elapsed\""), "{m}");
    assert!(m.contains("from=\"half_open\",to=\"closed\",reason=\"trials-succeeded\""), "{m}");
}

#[actix_web::test]
async fn a_slow_orchestrator_gets_a_small_share_next_to_a_fast_one() {
    let fast = sim("fast", &[("depth", Knobs { latency_ms: 5, ..Knobs::default() })]);
    let slow = sim("slow", &[("depth", Knobs { latency_ms: 200, ..Knobs::default() })]);
    let gw = gateway(&[(&fast, &["depth"]), (&slow, &["depth"])]).await;
    for i in 0..40 {
        assert_eq!(gw.job("depth", &format!("j{i}")).await.status, 200);
    }
    let (f, s) = (fast.state.stats("depth").ok, slow.state.stats("depth").ok);
    assert_eq!(f + s, 40);
    assert!(s <= 4, "slow got {s} of 40 jobs");
    assert!(
        gw.pair("depth", &slow.url).await["latency_ewma_ms"].as_f64()
            > gw.pair("depth", &fast.url).await["latency_ewma_ms"].as_f64()
    );
}

#[actix_web::test]
async fn a_price_rise_above_the_ceiling_removes_the_pair_and_a_drop_brings_it_back() {
    // Credit for 60 s at any price used here, so payment never decides (see fidelity.rs).
    let cheap = Knobs { price_per_unit: 10, balance: 1_000_000, ..healthy() };
    let a = sim("a", &[("depth", cheap.clone())]);
    let b = sim("b", &[("depth", cheap)]);
    let gw = gateway_with(&[(&a, &["depth"]), (&b, &["depth"])], |c| {
        c.routing.token_refresh = Duration::from_millis(100);
        c.capabilities
            .insert("depth".into(), serde_json::from_value(json!({"max_price_per_unit": 100})).expect("policy"));
    })
    .await;
    assert_eq!(gw.job("depth", "before").await.status, 200);

    a.state.patch(Some("depth"), &json!({"price_per_unit": 500})).expect("knob");
    let pair = eventually("pair leaves rotation on the price rise", 250, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["unroutable_reason"] == "price-over-ceiling").then_some(p)
    })
    .await;
    assert_eq!(pair["price_per_unit"], 500);
    let before = a.state.stats("depth").jobs;
    for i in 0..20 {
        let ans = gw.job("depth", &format!("j{i}")).await;
        assert_eq!(ans.json()["sim"], "b");
    }
    assert_eq!(a.state.stats("depth").jobs, before, "no job to a pair over the ceiling");

    // The only pair left goes over the ceiling too: the client is told why.
    b.state.patch(Some("depth"), &json!({"price_per_unit": 101})).expect("knob");
    eventually("both over the ceiling", 250, || async {
        (gw.pair("depth", &b.url).await["unroutable_reason"] == "price-over-ceiling").then_some(())
    })
    .await;
    let v = gw.job("depth", "none").await.error(503, "no-routable-orchestrator");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("price-over-ceiling")), "{v}");

    a.state.patch(Some("depth"), &json!({"price_per_unit": 100})).expect("knob");
    eventually("back under the ceiling", 250, || async {
        (gw.pair("depth", &a.url).await["routable"] == true).then_some(())
    })
    .await;
    assert_eq!(gw.job("depth", "after").await.json()["sim"], "a");
}

#[actix_web::test]
async fn a_crashed_orchestrators_sibling_pairs_leave_rotation_at_once() {
    let a = sim("a", &[("depth", healthy()), ("upscale", healthy())]);
    let b = sim("b", &[("depth", healthy_but_slower()), ("upscale", healthy_but_slower())]);
    let gw = gateway(&[(&a, &["depth", "upscale"]), (&b, &["depth", "upscale"])]).await;
    eventually("all pairs routable", 250, || async {
        let all = gw.admin_get("/admin/pairs").await.json();
        all.as_array().is_some_and(|v| v.len() == 4 && v.iter().all(|p| p["routable"] == true)).then_some(())
    })
    .await;
    a.stop().await;
    // A depth job meets the dead container (it is preferred: b is slower) and fails over.
    let mut sent = 0;
    while gw.pair("depth", &a.url).await["counters"]["connect"] == 0 {
        sent += 1;
        assert!(sent <= 3, "the dead orchestrator was never tried");
        assert_eq!(gw.job("depth", &format!("d{sent}")).await.status, 200);
    }
    // Its upscale pair learned it without a failed job of its own.
    let upscale = eventually("sibling pair out of rotation", 250, || async {
        let p = gw.pair("upscale", &a.url).await;
        (p["routable"] == false).then_some(p)
    })
    .await;
    assert_eq!(upscale["counters"]["connect"], 0, "{upscale}");
    for i in 0..5 {
        let ans = gw.job("upscale", &format!("u{i}")).await;
        assert_eq!(ans.json()["sim"], "b");
        assert_eq!(ans.header("x-gateway-attempts").as_deref(), Some("1"), "no upscale job paid a failed attempt");
    }
}

#[actix_web::test]
async fn cold_start_time_is_recorded_a_slow_one_is_deprioritised_and_concurrency_is_limited() {
    let a = sim("a", &[("depth", Knobs { latency_ms: 5, cold_start_jobs: 1, cold_start_ms: 600, ..Knobs::default() })]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.capabilities
            .insert("depth".into(), serde_json::from_value(json!({"cold_start_threshold": "200ms"})).expect("policy"));
    })
    .await;
    // Three jobs at once on a cold pair: one is admitted, the others wait in the queue rather
    // than pile onto a container that has not answered yet, and are served once it has.
    let (r1, r2, r3) = tokio::join!(gw.job("depth", "c1"), gw.job("depth", "c2"), gw.job("depth", "c3"));
    for ans in [r1, r2, r3] {
        assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    }
    // Once it has answered, the two waiting jobs may run together (its capacity allows it):
    // what is limited is the cold start.
    let stats = a.state.stats("depth");
    assert_eq!((stats.jobs, stats.max_inflight_cold), (3, 1), "one job at a time until the first answer: {stats:?}");
    let caps = gw.admin_get("/admin/capabilities").await.json();
    let depth = caps.as_array().and_then(|c| c.iter().find(|c| c["name"] == "depth")).cloned().expect("depth");
    assert!(depth["queue"]["counts"]["dispatched"].as_u64() >= Some(1), "{depth}");

    let pair = gw.pair("depth", &a.url).await;
    assert!(pair["cold_start_ms"].as_u64() >= Some(600), "{pair}");
    assert_eq!(pair["warming"], false);
    assert!(pair["deprioritized_until_unix_ms"].as_u64().is_some(), "{pair}");
    // The cost is 10x the expected latency (the median of its answers since the cold start).
    let (cost, latency) = (pair["cost"].as_f64().expect("routable"), pair["latency_p50_ms"].as_f64().expect("latency"));
    assert!(cost >= 9.0 * latency, "deprioritised cost {cost} vs latency {latency}: {pair}");
    assert!(metrics_text(&gw).await.contains("byoc_gateway_cold_starts_total{slow=\"true\"}"));

    // A warm orchestrator added now wins every job while the slow starter is deprioritised.
    let b = sim("b", &[("depth", Knobs { latency_ms: 50, ..Knobs::default() })]);
    assert_eq!(
        gw.admin_post("/admin/orchestrators", json!({"url": b.url, "capabilities": ["depth"]})).await.status,
        201
    );
    eventually("the new pair has its token", 250, || async {
        (gw.pair("depth", &b.url).await["routable"] == true).then_some(())
    })
    .await;
    for i in 0..10 {
        assert_eq!(gw.job("depth", &format!("w{i}")).await.json()["sim"], "b");
    }
}

#[actix_web::test]
async fn a_wrong_content_type_is_a_contract_mismatch_that_fails_over() {
    let a = sim("a", &[("depth", Knobs { wrong_content_type: true, ..healthy() })]);
    let b = sim("b", &[("depth", healthy_but_slower())]);
    let gw = gateway_with(&[(&a, &["depth"]), (&b, &["depth"])], |c| {
        c.capabilities.insert(
            "depth".into(),
            serde_json::from_value(json!({"response_content_type": "application/json"})).expect("policy"),
        );
    })
    .await;
    let mut sent = 0;
    while a.state.stats("depth").jobs == 0 {
        sent += 1;
        assert!(sent <= 3, "a was never tried");
        let ans = gw.job("depth", &format!("j{sent}")).await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.json()["sim"], "b", "a text/plain answer must never reach the client");
    }
    let pair = gw.pair("depth", &a.url).await;
    assert_eq!(pair["counters"]["contract"], 1, "{pair}");
    assert_eq!(pair["last_error"]["class"], "contract-mismatch");
    assert!(pair["success_rate"].as_f64() < Some(1.0), "accuracy penalty: {pair}");
}

#[actix_web::test]
async fn a_capacity_refusal_lowers_the_limit_without_counting_against_health() {
    let a = sim("a", &[("depth", Knobs { refuse: true, ..healthy() })]);
    let b = sim("b", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;
    let mut sent = 0;
    while a.state.stats("depth").jobs == 0 {
        sent += 1;
        assert!(sent <= 3, "a was never tried");
        let ans = gw.job("depth", &format!("j{sent}")).await;
        assert_eq!(ans.json()["sim"], "b", "{}", ans.json());
    }
    let pair = gw.pair("depth", &a.url).await;
    assert_eq!(pair["counters"]["capacity"], 1, "{pair}");
    assert_eq!(pair["breaker"]["consecutive_failures"], 0, "not a health failure: {pair}");
    assert_eq!(pair["success_rate"], 1.0);
    assert_eq!(pair["last_error"]["class"], "capacity", "{pair}");
    assert_eq!(
        pair["slots"], 1,
        "the limit dropped from the token's 4 to what was in flight (none), floored at 1: {pair}"
    );
    // Refused with none of the gateway's jobs there: out of rotation for about one job's time
    // (its latency, unmeasured here: the neutral 100 ms), never longer than a second.
    let refused_at = pair["last_error"]["at_unix_ms"].as_u64().expect("error time");
    let until = pair["capacity_backoff_until_unix_ms"].as_u64().unwrap_or(refused_at);
    assert!(until.saturating_sub(refused_at) <= 1_000, "held out for {} ms: {pair}", until - refused_at);
    eventually("a back in rotation", 500, || async {
        (gw.pair("depth", &a.url).await["routable"] == true).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn retries_stop_when_the_retry_budget_is_spent() {
    let a = sim("a", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let b = sim("b", &[("depth", healthy_but_slower())]);
    let gw = gateway_with(&[(&a, &["depth"]), (&b, &["depth"])], |c| {
        c.capabilities.insert(
            "depth".into(),
            serde_json::from_value(json!({"retry_budget_percent": 0.0, "retry_budget_min_per_sec": 0}))
                .expect("policy"),
        );
    })
    .await;
    let mut sent = 0;
    loop {
        sent += 1;
        assert!(sent <= 3, "a was never tried");
        let ans = gw.job("depth", &format!("j{sent}")).await;
        if ans.status != 200 {
            let v = ans.error(503, "retry-budget-exhausted");
            assert_eq!(v["error"]["attempts"].as_array().map(Vec::len), Some(1), "{v}");
            assert!(ans.header("retry-after").is_some());
            break;
        }
    }
    assert!(metrics_text(&gw).await.contains("byoc_gateway_retry_budget_exhausted_total{capability=\"depth\"}"));
}

#[actix_web::test]
async fn capability_policy_can_be_changed_at_runtime_and_bad_policies_change_nothing() {
    let a = sim("a", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let b = sim("b", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;
    let v = gw.job("depth", "two-attempts").await.error(502, "upstream-failed");
    assert_eq!(v["error"]["attempts"].as_array().map(Vec::len), Some(2));

    let put = gw.admin_put("/admin/capabilities/depth", json!({"profile": "chained", "max_attempts": 1})).await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let report = put.json();
    assert_eq!(report["effective"]["max_attempts"], 1);
    assert_eq!(report["effective"]["retry_timeout"], "2m");
    let v = gw.job("depth", "one-attempt").await.error(502, "upstream-failed");
    assert_eq!(v["error"]["attempts"].as_array().map(Vec::len), Some(1), "the new policy applies at once");

    for bad in [
        json!({"max_attempts": 0}),
        json!({"profile": "turbo"}),
        json!({"bogus": 1}),
        json!({"max_price_per_unit": -1}),
    ] {
        let ans = gw.admin_put("/admin/capabilities/depth", bad.clone()).await;
        assert_eq!(ans.status, 400, "{bad}: {}", String::from_utf8_lossy(&ans.body));
    }
    gw.admin_put("/admin/capabilities/bad%20name", json!({})).await.error(400, "invalid-capability");
    gw.admin_get("/admin/capabilities/never-heard-of").await.error(404, "capability-not-found");
    let got = gw.admin_get("/admin/capabilities/depth").await.json();
    assert_eq!(got["policy"]["max_attempts"], 1, "rejected updates changed nothing: {got}");
    let all = gw.admin_get("/admin/capabilities").await.json();
    assert!(all.as_array().is_some_and(|v| v.iter().any(|c| c["name"] == "depth" && c["pairs"] == 2)), "{all}");
}

#[actix_web::test]
async fn a_warm_up_job_gates_client_traffic_to_a_new_pair() {
    let a = sim("a", &[("depth", Knobs { status: Some(500), status_body: "model loading".into(), ..healthy() })]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.routing.token_refresh = Duration::from_millis(100);
        c.capabilities.insert(
            "depth".into(),
            serde_json::from_value(json!({"warmup": {"path": "depth", "body": "{\"warm\":true}"}})).expect("policy"),
        );
    })
    .await;
    // The warm-up keeps failing: the pair stays out of rotation and clients are told why.
    let pair = eventually("warm-up attempted", 250, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["last_error"]["class"] == "warmup").then_some(p)
    })
    .await;
    assert_eq!(pair["unroutable_reason"], "warming-up", "{pair}");
    let v = gw.job("depth", "early").await.error(503, "no-routable-orchestrator");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("warming-up")), "{v}");
    let warmups = a.state.stats("depth").jobs;
    assert!(warmups >= 1);

    // The model is loaded: the next warm-up (on the next token refresh) passes, then clients get it.
    a.state.patch(Some("depth"), &json!({"status": null})).expect("knob");
    let pair = eventually("warm-up passed", 250, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["routable"] == true).then_some(p)
    })
    .await;
    assert!(pair["cold_start_ms"].as_u64().is_some(), "the warm-up's answer is the cold start: {pair}");
    assert_eq!(pair["counters"]["success"], 0, "warm-ups are not client jobs");
    let ans = gw.job("depth", "after").await;
    assert_eq!(ans.status, 200);
    assert_eq!(ans.json()["job_id"], "after");
}

#[actix_web::test]
async fn a_runtime_policy_can_be_deleted_and_falls_back_to_the_config_files() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.capabilities.insert("depth".into(), serde_json::from_value(json!({"max_attempts": 2})).expect("policy"));
    })
    .await;
    gw.admin_delete("/admin/capabilities/depth").await.error(404, "capability-not-found");
    assert_eq!(
        gw.admin_put("/admin/capabilities/depth", json!({"max_attempts": 5})).await.json()["effective"]["max_attempts"],
        5
    );
    let back = gw.admin_delete("/admin/capabilities/depth").await;
    assert_eq!(back.status, 200);
    assert_eq!(back.json()["effective"]["max_attempts"], 2, "the config file's policy is back");
    gw.admin_delete("/admin/capabilities/depth").await.error(404, "capability-not-found");
}

#[actix_web::test]
async fn a_pool_that_is_full_answers_503_with_retry_after_not_502() {
    let a = sim("a", &[("depth", Knobs { refuse: true, ..healthy() })]);
    let b = sim("b", &[("depth", Knobs { refuse: true, ..healthy() })]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;
    // Both pairs probed first: this test is about a full pool, not about start-up.
    eventually("both pairs routable", 250, || async {
        let pairs = gw.pairs("depth").await;
        (pairs.len() == 2 && pairs.iter().all(|p| p["routable"] == true)).then_some(())
    })
    .await;
    let ans = gw.job("depth", "full").await;
    let v = ans.error(503, "no-routable-orchestrator");
    assert!(ans.header("retry-after").is_some(), "{v}");
    assert_eq!(v["error"]["attempts"].as_array().map(Vec::len), Some(2), "{v}");
}
