//! Capacity-aware routing through real simulators that enforce their capacity: slots per pair,
//! the wait queue, the adaptive limit, and timeouts that respect the job.

use byoc_actors::protocol::header::encode_client_header;
use byoc_sim::{Knobs, OverCapacity};
use serde_json::{json, Value};

use crate::support::*;

/// A GPU worker with `capacity` slots that refuses one job more with 503, holding each job
/// until the test releases it.
fn held_worker(capacity: i64) -> Knobs {
    Knobs { capacity, over_capacity: OverCapacity::Refuse, hold: true, ..healthy() }
}

/// The `depth` entry of `GET /admin/capabilities`.
async fn depth(gw: &TestGateway) -> Value {
    let caps = gw.admin_get("/admin/capabilities").await.json();
    caps.as_array().and_then(|c| c.iter().find(|c| c["name"] == "depth")).cloned().expect("depth capability")
}

/// One capability's entry of `GET /admin/capabilities`.
async fn capability(gw: &TestGateway, name: &str) -> Value {
    let caps = gw.admin_get("/admin/capabilities").await.json();
    caps.as_array().and_then(|c| c.iter().find(|c| c["name"] == name)).cloned().expect("capability")
}

/// Sets the `depth` policy.
async fn policy(gw: &TestGateway, policy: Value) {
    let ans = gw.admin_put("/admin/capabilities/depth", policy).await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
}

#[actix_web::test]
async fn a_burst_three_times_the_pools_slots_waits_in_the_queue_and_is_all_answered() {
    let a = sim("a", &[("queued", held_worker(3))]);
    let b = sim("b", &[("queued", held_worker(3))]);
    let gw = gateway(&[(&a, &["queued"]), (&b, &["queued"])]).await;
    // Full concurrency from the first job (not one job until each pair's first answer).
    // A capability of its own: metrics are process-wide, and other tests' gateways also queue
    // "depth" jobs.
    let ans = gw.admin_put("/admin/capabilities/queued", json!({"cold_start_concurrency": 3})).await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));

    let jobs: Vec<_> = (0..18).map(|i| gw.spawn_job("queued", &format!("burst-{i}"))).collect();
    let d = eventually("6 jobs in flight and 12 waiting", 500, || async {
        let d = capability(&gw, "queued").await;
        (a.state.inflight("queued") == 3 && b.state.inflight("queued") == 3 && d["queue"]["depth"] == 12).then_some(d)
    })
    .await;
    assert_eq!((d["slots"].as_u64(), d["inflight"].as_u64()), (Some(6), Some(6)), "{d}");
    // Waiting jobs are visible as a metric too.
    let metrics = gw.admin_get("/metrics").await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("byoc_gateway_queue_depth{capability=\"queued\"} 12"));

    a.state.release_jobs(18);
    b.state.release_jobs(18);
    for job in jobs {
        let ans = job.await.expect("job task");
        assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    }
    for s in [&a, &b] {
        let stats = s.state.stats("queued");
        assert!(stats.max_inflight <= 3, "an orchestrator saw more than its capacity: {stats:?}");
        assert_eq!(stats.refused, 0, "the gateway never sent a job past a pair's slots: {stats:?}");
    }
    assert_eq!(a.state.stats("queued").ok + b.state.stats("queued").ok, 18);
    let q = capability(&gw, "queued").await["queue"].clone();
    assert_eq!((q["depth"].as_u64(), q["counts"]["dispatched"].as_u64()), (Some(0), Some(12)), "{q}");
    assert_eq!(q["counts"]["timed_out"], 0, "{q}");
}

#[actix_web::test]
async fn past_the_queues_depth_or_wait_bound_a_job_gets_503_with_retry_after() {
    let a = sim("a", &[("depth", held_worker(1))]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    policy(&gw, json!({"queue_depth": 1})).await;

    let first = gw.spawn_job("depth", "holds-the-slot");
    eventually("the first job holds the only slot", 500, || async { (a.state.inflight("depth") == 1).then_some(()) })
        .await;
    let second = gw.spawn_job("depth", "waits");
    eventually("the second job waits", 500, || async { (depth(&gw).await["queue"]["depth"] == 1).then_some(()) }).await;

    let full = gw.job("depth", "turned-away").await;
    let v = full.error(503, "queue-full");
    assert!(full.header("retry-after").and_then(|r| r.parse::<u64>().ok()).is_some_and(|s| s >= 1), "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("1 jobs are already waiting")), "{v}");
    assert_eq!(a.state.stats("depth").jobs, 1, "nothing past the slot reached the orchestrator");

    a.state.release_jobs(2);
    assert_eq!(first.await.expect("task").status, 200);
    assert_eq!(second.await.expect("task").status, 200);

    // A short wait bound: the job waits that long for the held slot, then gets a 503.
    policy(&gw, json!({"queue_depth": 4, "queue_timeout": "300ms"})).await;
    let holder = gw.spawn_job("depth", "holds-again");
    eventually("the slot is held again", 500, || async { (a.state.inflight("depth") == 1).then_some(()) }).await;
    let timed_out = gw.job("depth", "gives-up").await;
    let v = timed_out.error(503, "queue-timeout");
    assert!(timed_out.header("retry-after").is_some(), "{v}");
    a.state.release_jobs(1);
    assert_eq!(holder.await.expect("task").status, 200);
    let counts = depth(&gw).await["queue"]["counts"].clone();
    assert_eq!((counts["rejected"].as_u64(), counts["timed_out"].as_u64()), (Some(1), Some(1)), "{counts}");
}

#[actix_web::test]
async fn a_capacity_refusal_halves_the_limit_and_answers_raise_it_back_to_the_tokens_figure() {
    // `fast` is shared with another gateway (busy slots); `spare` is slower.
    let fast = sim(
        "fast",
        &[("depth", Knobs { latency_ms: 2, capacity: 4, over_capacity: OverCapacity::Refuse, ..Knobs::default() })],
    );
    let spare = sim("spare", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&fast, &["depth"]), (&spare, &["depth"])]).await;
    policy(&gw, json!({"cold_start_concurrency": 4})).await;
    // Both measured, `fast` the better pair.
    for i in 0..10 {
        assert_eq!(gw.job("depth", &format!("warm-{i}")).await.status, 200);
        if fast.state.stats("depth").ok >= 2 && spare.state.stats("depth").ok >= 1 {
            break;
        }
    }
    assert_eq!(gw.pair("depth", &fast.url).await["slots"], 4);

    // Another gateway takes 3 of fast's 4 slots; the token the gateway holds still says 4.
    fast.state.patch(Some("depth"), &json!({"busy_slots": 3, "hold": true})).expect("knobs");
    let held = gw.spawn_job("depth", "takes-the-last-slot");
    eventually("fast runs one job", 500, || async { (fast.state.inflight("depth") == 1).then_some(()) }).await;
    let refused = gw.job("depth", "refused-then-served").await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.json()["sim"], "spare", "the refusal failed over at once");
    assert_eq!(refused.header("x-gateway-attempts").as_deref(), Some("2"));
    let pair = gw.pair("depth", &fast.url).await;
    assert_eq!(pair["counters"]["capacity"], 1, "{pair}");
    assert_eq!(pair["slots"], 1, "halved (2) and no more than the one job there: {pair}");
    assert_eq!(pair["breaker"]["consecutive_failures"], 0, "not a health failure: {pair}");
    assert_eq!(pair["success_rate"], 1.0, "{pair}");
    assert_eq!(fast.state.stats("depth").max_inflight, 1);

    // The other gateway leaves; answers raise the limit back to what the token says.
    fast.state.patch(Some("depth"), &json!({"busy_slots": 0, "hold": false})).expect("knobs");
    fast.state.release_jobs(1);
    assert_eq!(held.await.expect("task").status, 200);
    let mut n = 0;
    eventually("the limit is back to the token's 4 slots", 100, || {
        n += 1;
        let id = format!("recover-{n}");
        let gw = &gw;
        let url = fast.url.clone();
        async move {
            assert_eq!(gw.job("depth", &id).await.status, 200);
            (gw.pair("depth", &url).await["slots"] == 4).then_some(())
        }
    })
    .await;
    assert!(n >= 4, "additive: one slot per limit's worth of answers, not a jump ({n} jobs)");
    assert_eq!(fast.state.stats("depth").refused, 1, "only the one refusal");
}

#[actix_web::test]
async fn a_single_cold_orchestrator_answering_after_11_s_serves_a_job_with_a_30_s_timeout() {
    let cold = sim("cold", &[("depth", Knobs { cold_start_jobs: 1, cold_start_ms: 11_000, ..healthy() })]);
    // The default profile: low-latency, 5 s per try. It is the only candidate, and cold: the
    // attempt gets the job's own timeout (30 s + 5 s), as go-livepeer gives it.
    let gw = gateway(&[(&cold, &["depth"])]).await;
    let header = encode_client_header(&json!({"capability": "depth", "request": "{}", "timeout_seconds": 30}));
    let ans = read(
        gw.client
            .post(format!("{}/process/request/depth", gw.http))
            .timeout(std::time::Duration::from_secs(60))
            .insert_header(("Livepeer", header))
            .send_body("{}")
            .await,
    )
    .await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    assert_eq!(ans.header("x-gateway-attempts").as_deref(), Some("1"));
    assert_eq!(cold.state.stats("depth").jobs, 1, "one attempt, not abandoned and re-sent");
    let pair = gw.pair("depth", &cold.url).await;
    assert!(pair["cold_start_ms"].as_u64() >= Some(11_000), "{pair}");
    assert_eq!(pair["latency_p50_ms"], Value::Null, "a slow cold start is not the pair's latency: {pair}");
}

#[actix_web::test]
async fn a_job_stuck_on_a_hanging_orchestrator_fails_over_to_a_pair_with_room() {
    let hangs = sim("hangs", &[("depth", Knobs { latency_ms: 5, ..Knobs::default() })]);
    let spare = sim("spare", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&hangs, &["depth"]), (&spare, &["depth"])]).await;
    // `hangs` is measured (fast) first, so it is the pair jobs go to.
    for i in 0..10 {
        assert_eq!(gw.job("depth", &format!("warm-{i}")).await.status, 200);
        if gw.pair("depth", &hangs.url).await["latency_p99_ms"].is_number() {
            break;
        }
    }
    hangs.state.patch(Some("depth"), &json!({"hang": true})).expect("knobs");
    let before = hangs.state.stats("depth").jobs;
    let mut sent = 0;
    while hangs.state.stats("depth").jobs == before {
        sent += 1;
        assert!(sent <= 5, "the hanging orchestrator was never tried");
        let ans = gw.job("depth", &format!("j{sent}")).await;
        assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
        assert_eq!(ans.json()["sim"], "spare");
    }
    let pair = gw.pair("depth", &hangs.url).await;
    assert_eq!(pair["last_error"]["class"], "stuck", "cut as stuck, not by the 5 s per-try timeout: {pair}");
    assert_eq!(pair["counters"]["timeout"], 1, "{pair}");
    let metrics = gw.admin_get("/metrics").await;
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("byoc_gateway_stuck_attempts_total{capability=\"depth\"} 1")
    );
}
