//! Bad inputs get a clear JSON error and change nothing (no orchestrator is contacted); unknown
//! streams are JSON 404s; refusals by every candidate are named one by one.

use serde_json::json;

use super::*;

#[actix_web::test]
async fn bad_starts_are_refused_before_any_orchestrator_is_contacted() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    let start = |header: Option<String>, body: String| {
        let mut req = gw.client.post(format!("{}/process/stream/start", gw.http));
        if let Some(h) = header {
            req = req.insert_header(("Livepeer", h));
        }
        async move { read(req.send_body(body).await).await }
    };
    let ok_header = || Some(header(CAP, &all(), 10));
    start(None, "{}".into()).await.error(400, "missing-livepeer-header");
    start(Some("%%%".into()), "{}".into()).await.error(400, "invalid-livepeer-header");
    start(Some(encode_client_header(&json!({"capability": CAP}))), "{}".into()).await.error(400, "missing-timeout");
    let bad_params = encode_client_header(&json!({"capability": CAP, "timeout_seconds": 5, "parameters": "[1]"}));
    start(Some(bad_params), "{}".into()).await.error(400, "invalid-job");
    start(ok_header(), "not json".into()).await.error(400, "invalid-json");
    start(ok_header(), "[1]".into()).await.error(400, "invalid-json");
    start(ok_header(), json!({"params": "[1,2]"}).to_string()).await.error(400, "invalid-params");
    start(ok_header(), json!({"params": 5}).to_string()).await.error(400, "invalid-params");
    start(ok_header(), json!({"stream_name": "cam-out"}).to_string()).await.error(400, "invalid-stream-id");
    start(ok_header(), json!({"stream_id": "a/b"}).to_string()).await.error(400, "invalid-stream-id");
    start(ok_header(), json!({"rtmp_output": "ftp://x/y"}).to_string()).await.error(400, "invalid-rtmp-output");
    start(ok_header(), json!({"rtmp_output": vec!["rtmp://a/b"; 9]}).to_string())
        .await
        .error(400, "invalid-rtmp-output");
    // Over go-livepeer's 10 MiB.
    let big = format!("{{\"params\":\"{}\"}}", "x".repeat(11 << 20));
    start(ok_header(), big).await.error(413, "body-too-large");
    // Nothing reached the orchestrator, nothing is registered.
    assert_eq!((a.state.live_stats().starts, a.state.live_stats().refused), (0, 0));
    assert!(a.state.last().job.is_none(), "no job header was sent");
    assert_eq!(gw.admin_get("/admin/streams").await.json(), json!([]));
}

#[actix_web::test]
async fn unknown_streams_are_json_404s_and_duplicates_409s() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    for (method, leaf) in [("GET", "status"), ("POST", "stop"), ("GET", "data"), ("POST", "in/0"), ("GET", "out/-1")] {
        let url = format!("{}/process/stream/nope/{leaf}", gw.http);
        let a = read(gw.client.request(method.parse().expect("method"), url).send().await).await;
        a.error(404, "stream-not-found");
    }
    let up = gw.update_stream("nope", &json!({})).await;
    up.error(404, "stream-not-found");
    gw.admin_get("/admin/streams/nope").await.error(404, "stream-not-found");
    gw.admin_delete("/admin/streams/nope").await.error(404, "stream-not-found");
    gw.started("dup").await;
    let again = gw.start_stream(CAP, &all(), &json!({"stream_id": "dup"})).await;
    again.error(409, "stream-exists");
    assert_eq!(a.state.live_stats().starts, 1, "the duplicate never reached the orchestrator");
    // An update naming another capability is refused.
    let url = format!("{}/process/stream/dup/update", gw.http);
    let other =
        read(gw.client.post(url).insert_header(("Livepeer", header("other-cap", &all(), 5))).send_body("{}").await)
            .await;
    other.error(400, "capability-mismatch");
    // A bad segment number.
    let bad = read(gw.client.post(format!("{}/process/stream/dup/in/x", gw.http)).send_body("x").await).await;
    bad.error(400, "invalid-seq");
    // An operator stops it: the orchestrator is told, the report shows it ended, a second stop is a 409.
    let stopped = gw.admin_delete("/admin/streams/dup").await;
    assert_eq!(stopped.status, 200, "{}", String::from_utf8_lossy(&stopped.body));
    assert_eq!(stopped.json()["state"], "ended", "{}", stopped.json());
    let told = a.state.live_stats().stop_bodies.iter().any(|b| b.contains("stopped by an operator"));
    assert!(told, "{:?}", a.state.live_stats().stop_bodies);
    gw.admin_delete("/admin/streams/dup").await.error(409, "stream-ended");
}

#[actix_web::test]
async fn features_not_asked_for_are_not_served() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    let urls = gw.start_stream(CAP, &json!({}), &json!({"stream_id": "bare"})).await;
    assert_eq!(urls.status, 200);
    let urls = urls.json();
    assert_eq!((urls["data_url"].as_str(), urls.get("publish_url")), (Some(""), None), "{urls}");
    // go-livepeer's 503 "Stream data not available".
    read(gw.client.get(format!("{}/process/stream/bare/data", gw.http)).send().await)
        .await
        .error(503, "data-not-enabled");
    let media = read(gw.client.post(format!("{}/process/stream/bare/in/0", gw.http)).send_body("x").await).await;
    media.error(404, "media-not-enabled");
}

#[actix_web::test]
async fn when_every_candidate_refuses_the_error_names_each_one() {
    let a = sim("a", &[(CAP, Knobs { stream_start_status: Some(400), ..live() })]);
    let b = sim("b", &[(CAP, Knobs { stream_start_status: Some(500), ..live() })]);
    let gw = gateway_with(&[(&a, &[CAP]), (&b, &[CAP])], streams_config).await;
    let answer = gw.start_stream(CAP, &all(), &json!({"stream_id": "r1"})).await;
    assert!(answer.status >= 500, "{}", String::from_utf8_lossy(&answer.body));
    let v = answer.json();
    let attempts = v["error"]["attempts"].as_array().expect("attempts").clone();
    assert_eq!(attempts.len(), 2, "{v}");
    let details: Vec<String> = attempts.iter().map(|t| t["detail"].as_str().unwrap_or_default().to_string()).collect();
    assert!(details.iter().any(|d| d.contains("No capacity available for capability")), "{details:?}");
    assert!(details.iter().any(|d| d.starts_with("500")), "{details:?}");
    // The id is free again: nothing lingers.
    gw.stream_status("r1").await.error(404, "stream-not-found");
    // Unknown capability: 404, as a batch job gets.
    let unknown = gw.start_stream("no-such-cap", &all(), &json!({})).await;
    unknown.error(404, "unknown-capability");
}

#[actix_web::test]
async fn a_start_refused_or_hanging_moves_on_to_the_next_candidate() {
    for knobs in [
        Knobs { stream_start_status: Some(400), ..live() },
        Knobs { stream_start_status: Some(402), ..live() },
        Knobs { stream_start_hang: true, ..live() },
    ] {
        let bad = sim("bad", &[(CAP, knobs.clone())]);
        let good = sim("good", &[(CAP, live())]);
        let gw = gateway_with(&[(&bad, &[CAP]), (&good, &[CAP])], streams_config).await;
        // Pin the first attempt on the bad one: exclude nothing, but run until it was tried.
        for i in 0..8 {
            let id = format!("s{i}");
            let urls = gw.started(&id).await;
            assert_eq!(urls["stream_id"], id.as_str());
            let r = gw.runs_on(&id, &good).await;
            // Stopped at once, so the good orchestrator never fills up (a full one refuses too).
            let stop = read(gw.client.post(format!("{}/process/stream/{id}/stop", gw.http)).send().await).await;
            assert_eq!(stop.status, 200);
            if r["start_refusals"] == 1 {
                break;
            }
            assert!(i < 7, "the bad candidate was never tried ({knobs:?})");
        }
        assert!(bad.state.live_stats().refused >= 1 || knobs.stream_start_hang, "{knobs:?}");
        assert_eq!(good.state.live_stats().refused, 0, "the good one never refused");
    }
}

#[actix_web::test]
async fn the_live_stream_limit_answers_503() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], |c| {
        streams_config(c);
        c.limits.max_streams = 1;
    })
    .await;
    gw.started("one").await;
    let two = gw.start_stream(CAP, &all(), &json!({"stream_id": "two"})).await;
    two.error(503, "stream-limit");
    assert_eq!(two.header("retry-after").as_deref(), Some("1"));
    // Once the first ends, there is room.
    let stop = read(gw.client.post(format!("{}/process/stream/one/stop", gw.http)).send().await).await;
    assert_eq!(stop.status, 200);
    gw.started("two").await;
}

#[actix_web::test]
async fn cors_preflight_as_an_option() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], |c| {
        streams_config(c);
        c.streams.allow_cors = true;
    })
    .await;
    let pre =
        read(gw.client.request(awc::http::Method::OPTIONS, format!("{}/process/stream/start", gw.http)).send().await)
            .await;
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin").as_deref(), Some("*"));
    assert!(pre.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    let urls = gw.start_stream(CAP, &all(), &json!({"stream_id": "c1"})).await;
    assert_eq!(urls.header("access-control-allow-origin").as_deref(), Some("*"));
}
