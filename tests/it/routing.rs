//! Routing and failover through real simulators.

use byoc_sim::Knobs;
use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn happy_path_relays_the_orchestrators_answer_and_headers() {
    let a = sim("a", &[("image-to-image", healthy())]);
    let gw = gateway(&[(&a, &["image-to-image"])]).await;

    let ans = gw.job("image-to-image", "job-1").await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);
    assert_eq!(ans.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(ans.header("x-orchestrator-url").as_deref(), Some(a.url.as_str()));
    assert_eq!(ans.header("livepeer-balance").as_deref(), Some("1000"));
    assert_eq!(ans.header("x-metadata").as_deref(), Some("{\"sim\":\"a\"}"));
    assert!(ans.header("x-request-id").is_some_and(|v| !v.is_empty()));
    let body = ans.json();
    // The simulator echoes what the orchestrator received: the path after
    // /process/request/, the job header fields (parameters defaulted to {}), the body size.
    assert_eq!(body["sim"], "a");
    assert_eq!(body["capability"], "image-to-image");
    assert_eq!(body["path"], "image-to-image");
    assert_eq!(body["job_id"], "job-1");
    assert_eq!(body["request"], "{\"stream_id\":\"s\"}");
    assert_eq!(body["parameters"], "{}");
    assert_eq!(body["body_bytes"], "{\"job\":\"job-1\"}".len());
    assert_eq!(body["content_type"], "application/json");
    assert_eq!(a.state.stats("image-to-image").ok, 1);
}

#[actix_web::test]
async fn the_client_path_and_request_id_reach_the_orchestrator() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    let req = gw
        .client
        .post(format!("{}/process/request/depth/v2/run?ignored=1", gw.http))
        .insert_header(("Livepeer", job_header("depth", "j")))
        .insert_header(("X-Request-Id", "req-abc"));
    let ans = read(req.send_body("x").await).await;
    assert_eq!(ans.status, 200);
    assert_eq!(ans.json()["path"], "depth/v2/run", "query string is dropped, path kept");
    assert_eq!(ans.header("x-request-id").as_deref(), Some("req-abc"));
}

#[actix_web::test]
async fn fails_over_around_an_orchestrator_that_answers_500() {
    let bad = sim("bad", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let good = sim("good", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&bad, &["depth"]), (&good, &["depth"])]).await;

    let mut failed_over = 0;
    let mut sent = 0;
    // The bad one is tried on the first or second job (see `healthy_but_slower`); every
    // job must still succeed on the good one.
    while bad.state.stats("depth").jobs == 0 && sent < 3 {
        sent += 1;
        let ans = gw.job("depth", &format!("j{sent}")).await;
        assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
        assert_eq!(ans.json()["sim"], "good");
        if ans.header("x-gateway-attempts").as_deref() == Some("2") {
            failed_over += 1;
        }
    }
    assert!(bad.state.stats("depth").jobs >= 1, "the failing orchestrator was never tried in {sent} jobs");
    assert_eq!(failed_over as u64, bad.state.stats("depth").jobs, "every job the bad one got was failed over");
    let pair = gw.pair("depth", &bad.url).await;
    assert!(pair["counters"]["http_5xx"].as_u64() >= Some(1), "{pair}");
    assert_eq!(pair["last_error"]["class"], "http-5xx");
}

#[actix_web::test]
async fn fails_over_around_a_stopped_orchestrator() {
    let gone = sim("gone", &[("depth", healthy())]);
    let good = sim("good", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&gone, &["depth"]), (&good, &["depth"])]).await;
    // Both pairs have their tokens cached; now the container dies.
    eventually("both pairs routable", 250, || async {
        gw.pairs("depth").await.iter().all(|p| p["routable"] == true).then_some(())
    })
    .await;
    gone.stop().await;

    let mut sent = 0;
    loop {
        sent += 1;
        let ans = gw.job("depth", &format!("j{sent}")).await;
        assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
        assert_eq!(ans.json()["sim"], "good");
        let pair = gw.pair("depth", &gone.url).await;
        if pair["counters"]["connect"].as_u64() >= Some(1) {
            // Out of rotation at once (a re-probe decides when it comes back).
            assert_eq!(pair["routable"], false, "{pair}");
            break;
        }
        assert!(sent < 3, "the stopped orchestrator was never tried");
    }
}

#[actix_web::test]
async fn when_every_orchestrator_fails_the_client_gets_a_json_5xx_with_the_attempts() {
    let a = sim("a", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let b = sim("b", &[("depth", Knobs { oom_rate: 1.0, ..healthy() })]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;

    let ans = gw.job("depth", "doomed").await;
    let v = ans.error(502, "upstream-failed");
    let attempts = v["error"]["attempts"].as_array().expect("attempts listed");
    assert_eq!(attempts.len(), 2, "{v}");
    assert!(attempts.iter().all(|a| a["status"] == 500), "{v}");
    assert!(attempts.iter().any(|a| a["result"] == "http-5xx"), "{v}");
    let oom = attempts.iter().find(|a| a["result"] == "oom").expect("the OOM is recognised");
    assert!(oom["detail"].as_str().is_some_and(|d| d.contains("CUDA out of memory")), "{v}");
    assert_eq!(a.state.stats("depth").jobs + b.state.stats("depth").jobs, 2);
}

#[actix_web::test]
async fn a_4xx_from_the_orchestrator_is_relayed_unchanged_and_not_retried() {
    let knobs = Knobs { status: Some(422), status_body: "prompt is too long".into(), ..healthy() };
    let a = sim("a", &[("depth", knobs.clone())]);
    let b = sim("b", &[("depth", knobs)]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;

    let ans = gw.job("depth", "bad-input").await;
    assert_eq!(ans.status, 422);
    assert_eq!(&ans.body[..], b"prompt is too long\n");
    assert_eq!(ans.header("content-type").as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(a.state.stats("depth").jobs + b.state.stats("depth").jobs, 1, "a 4xx must not be retried");
    // Not held against the orchestrator's health.
    let answered = if a.state.stats("depth").jobs == 1 { &a } else { &b };
    let pair = gw.pair("depth", &answered.url).await;
    assert_eq!(pair["counters"]["http_4xx"], 1);
    assert_eq!(pair["success_rate"], 1.0);
    assert_eq!(pair["breaker"]["consecutive_failures"], 0);
}

#[actix_web::test]
async fn a_pair_that_keeps_failing_opens_its_breaker_and_stops_getting_jobs() {
    let bad = sim("bad", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    // Long open time so the breaker is certainly still open when the next job comes.
    let gw = gateway_with(&[(&bad, &["depth"])], |c| c.breaker.base_open = std::time::Duration::from_secs(30)).await;
    // Default breaker: 5 consecutive failures. With one orchestrator each job is one attempt.
    for i in 0..5 {
        gw.job("depth", &format!("j{i}")).await.error(502, "upstream-failed");
    }
    let pair = gw.pair("depth", &bad.url).await;
    assert_eq!(pair["breaker"]["state"], "open", "{pair}");
    assert_eq!(pair["routable"], false);
    // Now the gateway refuses without calling the orchestrator, and says when to retry.
    let ans = gw.job("depth", "after").await;
    let v = ans.error(503, "no-routable-orchestrator");
    assert!(ans.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1), "{v}");
    assert_eq!(bad.state.stats("depth").jobs, 5);
}

#[actix_web::test]
async fn hot_added_orchestrator_gets_traffic() {
    let a = sim("late", &[("depth", healthy())]);
    let gw = gateway(&[]).await;
    gw.job("depth", "before").await.error(404, "unknown-capability");

    let added = gw.admin_post("/admin/orchestrators", serde_json::json!({"url": a.url})).await;
    assert_eq!(added.status, 201, "{}", String::from_utf8_lossy(&added.body));
    let id = added.json()["id"].as_str().expect("id").to_string();

    // No capability declared: the gateway discovers it lazily on the first job.
    let ans = gw.job("depth", "after").await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    assert_eq!(ans.json()["sim"], "late");
    let pair = gw.pair("depth", &a.url).await;
    assert_eq!(pair["orchestrator"], id);
}

#[actix_web::test]
async fn lazily_discovered_capability_routes_only_to_orchestrators_offering_it() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("upscale", healthy())]);
    let gw = gateway(&[(&a, &[]), (&b, &[])]).await;
    for i in 0..6 {
        let ans = gw.job("upscale", &format!("u{i}")).await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.json()["sim"], "b");
    }
    // Only what an orchestrator offers gets a pair: a was asked and said no.
    let pairs = gw.pairs("upscale").await;
    assert!(pairs.iter().all(|p| p["orchestrator_url"] != a.url.as_str()), "{pairs:?}");
    assert_eq!(a.state.stats("upscale").jobs, 0);
}

#[actix_web::test]
async fn removed_orchestrator_gets_no_more_jobs() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&b, &["depth"])]).await;
    let added =
        gw.admin_post("/admin/orchestrators", serde_json::json!({"url": a.url, "capabilities": ["depth"]})).await;
    assert_eq!(added.status, 201);
    let id = added.json()["id"].as_str().expect("id").to_string();
    assert_eq!(gw.admin_delete(&format!("/admin/orchestrators/{id}")).await.status, 204);
    let before = a.state.stats("depth").jobs;
    for i in 0..10 {
        let ans = gw.job("depth", &format!("j{i}")).await;
        assert_eq!(ans.json()["sim"], "b");
    }
    assert_eq!(a.state.stats("depth").jobs, before);
    assert!(gw.pairs("depth").await.iter().all(|p| p["orchestrator_url"] != a.url.as_str()));
}

#[actix_web::test]
async fn https_orchestrators_with_self_signed_certificates_work() {
    let tls =
        byoc_sim::start_tls("tls", std::net::TcpListener::bind("127.0.0.1:0").expect("bind"), &[("depth", healthy())])
            .expect("tls sim");
    assert!(tls.url.starts_with("https://"));
    let gw = gateway(&[(&tls, &["depth"])]).await;
    let ans = gw.job("depth", "secure").await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    assert_eq!(ans.json()["sim"], "tls");
    assert_eq!(ans.header("x-orchestrator-url").as_deref(), Some(tls.url.as_str()));
}

#[actix_web::test]
async fn with_tls_verification_required_a_self_signed_orchestrator_is_refused() {
    let tls =
        byoc_sim::start_tls("tls", std::net::TcpListener::bind("127.0.0.1:0").expect("bind"), &[("depth", healthy())])
            .expect("tls sim");
    let gw = gateway_with(&[(&tls, &["depth"])], |c| c.routing.tls_verify = true).await;
    gw.job("depth", "secure").await.error(503, "no-routable-orchestrator");
    assert_eq!(tls.state.stats("depth").jobs, 0);
    let pair = gw.pair("depth", &tls.url).await;
    // The connection cannot be completed (the certificate is refused): unreachable, and the
    // error says why.
    assert_eq!(pair["unroutable_reason"], "unreachable", "{pair}");
    assert_eq!(pair["last_error"]["class"], "token");
    let message = pair["last_error"]["message"].as_str().unwrap_or_default().to_ascii_lowercase();
    assert!(message.contains("certificate") || message.contains("ssl") || message.contains("tls"), "{pair}");
}

#[actix_web::test]
async fn capabilities_named_in_the_config_get_pairs_at_start() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &[])], |c| {
        c.capabilities.insert("depth".into(), Default::default());
    })
    .await;
    // Before any job: the pair exists and has probed.
    let pair = eventually("eager pair probed", 250, || async {
        gw.pairs("depth").await.into_iter().find(|p| p["token_ok"] == true)
    })
    .await;
    assert_eq!(pair["orchestrator_url"], a.url.as_str());
    assert_eq!(pair["routable"], true);
    assert_eq!(a.state.stats("depth").jobs, 0);
}

#[actix_web::test]
async fn a_service_addr_leading_back_to_the_gateway_is_stopped_at_the_first_hop() {
    let good = sim("good", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&good, &["depth"])]).await;
    // An orchestrator whose token names the gateway itself as its service address.
    let looper = sim("looper", &[("depth", healthy())]);
    *looper.state.service_addr.lock() = gw.http.clone();
    let added = gw.admin_post("/admin/orchestrators", json!({"url": looper.url, "capabilities": ["depth"]})).await;
    assert_eq!(added.status, 201);
    eventually("the looping pair is routable", 250, || async {
        (gw.pair("depth", &looper.url).await["routable"] == true).then_some(())
    })
    .await;
    let mut sent = 0;
    loop {
        sent += 1;
        assert!(sent <= 10, "the looping pair was never tried");
        let ans = gw.job("depth", &format!("j{sent}")).await;
        assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
        assert_eq!(ans.json()["sim"], "good");
        if ans.header("x-gateway-attempts").as_deref() == Some("2") {
            break;
        }
    }
    let pair = gw.pair("depth", &looper.url).await;
    assert_eq!(pair["unroutable_reason"], "routing-loop", "{pair}");
    assert_eq!(pair["last_error"]["class"], "routing-loop", "{pair}");
    let metrics = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).to_string();
    assert!(metrics.contains("byoc_gateway_routing_loops_total 1\n"), "one refusal, at the first hop back");
    assert_eq!(looper.state.stats("depth").jobs, 0, "its service address is the gateway, not itself");
}
