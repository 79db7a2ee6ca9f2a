//! The client API: start answers once an orchestrator accepted, with go-livepeer's `StreamUrls`;
//! status, update, data, stop; 409 on a duplicate, JSON 404 for an unknown stream; CORS.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::json;

use super::*;

#[actix_web::test]
async fn a_stream_starts_runs_and_stops_end_to_end() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    let urls = gw.started("s1").await;
    // go-livepeer's StreamUrls, pointing at this gateway.
    for field in [
        "stream_id",
        "whip_url",
        "whep_url",
        "rtmp_url",
        "rtmp_output_url",
        "update_url",
        "status_url",
        "data_url",
        "stop_url",
    ] {
        assert!(urls.get(field).is_some(), "{field}: {urls}");
    }
    assert_eq!(urls["stream_id"], "s1");
    assert_eq!(urls["status_url"], format!("{}/process/stream/s1/status", gw.http));
    // The orchestrator got the start with the signed header (id = the stream) and the params.
    let stats = a.state.live_stats();
    assert_eq!(stats.starts, 1);
    assert_eq!(stats.last_start_body.as_deref(), Some(r#"{"params":{"prompt":"a"}}"#));
    assert_eq!(a.state.last().job.expect("header").id, "s1");

    // Status: the runner's status events, and the gateway's own view.
    let status = eventually("a status event", 250, || async {
        let s = gw.stream_status("s1").await;
        assert_eq!(s.status, 200);
        let v = s.json();
        (v["type"] == "status").then_some(v)
    })
    .await;
    assert_eq!(status["sim"], "a");
    assert_eq!(status["orchestrator"], a.url.as_str());
    assert_eq!(status["gateway"]["state"], "running");

    // Data: one SSE event per JSON line.
    let mut resp = gw.client.get(urls["data_url"].as_str().expect("data url")).send().await.expect("data");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("content-type").is_some_and(|v| v == "text/event-stream"));
    let mut got = String::new();
    while !got.contains("\"n\":") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.next())
            .await
            .expect("a line")
            .expect("open")
            .expect("bytes");
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(got.starts_with("data: {"), "{got}");

    // Update: forwarded to the orchestrator, which answers.
    let up = gw
        .client
        .post(urls["update_url"].as_str().expect("update url"))
        .insert_header(("Livepeer", header(CAP, &all(), 5)))
        .send_body(r#"{"prompt":"b"}"#)
        .await;
    let up = read(up).await;
    assert_eq!(up.status, 200, "{}", String::from_utf8_lossy(&up.body));
    assert_eq!(up.json()["updated"], true);
    assert_eq!(a.state.live_params("s1"), Some(json!({"prompt": "b"})));

    // Stop: the orchestrator is told, with the client's body; the data stream ends properly.
    let stop = read(gw.client.post(urls["stop_url"].as_str().expect("stop url")).send_body("bye").await).await;
    assert_eq!(stop.status, 200);
    assert_eq!(stop.json()["stopped"], true);
    assert_eq!(a.state.live_stats().stop_bodies.back().map(String::as_str), Some("bye"));
    assert!(a.state.live_streams().is_empty(), "the simulator's stream is gone");
    let mut rest = String::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(10), resp.next()).await {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        rest.ends_with("event: end\ndata: {\"reason\":\"stopped by the client\",\"type\":\"stream_ended\"}\n\n"),
        "{rest}"
    );
    // The stream is kept for its status, ended.
    let report = gw.stream_report("s1").await;
    assert_eq!(report["state"], "ended");
    assert_eq!(report["ended"]["reason"]["kind"], "stopped");
    // And a second stop is a conflict, not a crash.
    let again = read(gw.client.post(urls["stop_url"].as_str().expect("stop url")).send().await).await;
    again.error(409, "stream-ended");
}

#[actix_web::test]
async fn shutdown_stops_every_live_stream_upstream() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    for id in ["x1", "x2", "x3"] {
        gw.started(id).await;
    }
    assert_eq!(a.state.live_streams().len(), 3);
    let mut data = gw.client.get(format!("{}/process/stream/x1/data", gw.http)).send().await.expect("sse");
    let TestGateway { gw: inner, client, .. } = gw;
    inner.shutdown().await.expect("clean shutdown");
    // Every orchestrator was told before the gateway went.
    assert!(a.state.live_streams().is_empty(), "{:?}", a.state.live_streams());
    let stats = a.state.live_stats();
    assert_eq!(stats.stops, 3);
    assert!(stats.stop_bodies.iter().all(|b| b == "gateway shutting down"), "{:?}", stats.stop_bodies);
    // The data subscriber got its end event.
    let body =
        tokio::time::timeout(Duration::from_secs(10), data.body().limit(1 << 20)).await.expect("ended").expect("body");
    assert!(String::from_utf8_lossy(&body).contains("the gateway shut down"), "{body:?}");
    drop(client);
}

#[actix_web::test]
async fn the_control_channel_is_kept_alive() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], |c| {
        streams_config(c);
        c.streams.keepalive = Duration::from_millis(100);
    })
    .await;
    gw.started("k1").await;
    // The runner reads `{"keep":"alive"}` on its control channel, again and again, and never as params.
    eventually("keep-alives on the control channel", 250, || async {
        (a.state.live_stats().keepalives >= 3).then_some(())
    })
    .await;
    assert!(a.state.live_stats().control_params.iter().all(|p| !p.contains("keep")));
}
