//! Swaps: each trigger moves the stream to another orchestrator (re-ranked on the current board:
//! the second orchestrator is added after the start), the client's URLs keep working, the params
//! are replayed on the new control channel, the old orchestrator is told why, the old pair is
//! charged a failure, and the swap is counted with its reason.

use std::time::Duration;

use serde_json::json;

use super::*;

/// A stream started on `a` (the only orchestrator then), its params updated, then `b` added.
async fn running_on_a_with_b_ready(id: &str) -> (SimHandle, SimHandle, TestGateway, Value) {
    let a = sim("a", &[(CAP, live())]);
    let b = sim("b", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    let urls = gw.started(id).await;
    gw.runs_on(id, &a).await;
    let up = gw.update_stream(id, &json!({"prompt": "updated"})).await;
    assert_eq!(up.status, 200, "{}", String::from_utf8_lossy(&up.body));
    gw.add_live(&b).await;
    (a, b, gw, urls)
}

/// What every swap must leave behind: the stream on `b` with the same URLs working, the params
/// replayed there, `a` told why, the swap counted with `reason`, `a`'s pair charged.
async fn swapped(gw: &TestGateway, a: &SimHandle, b: &SimHandle, id: &str, urls: &Value, reasons: &[&str]) {
    let r = gw.runs_on(id, b).await;
    assert_eq!(r["swaps"], 1, "{r}");
    let reason = r["swap_history"][0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reasons.contains(&reason.as_str()), "{r}");
    assert_eq!(r["swap_history"][0]["from"], gw.pair(CAP, &a.url).await["orchestrator"], "{r}");
    // The media URLs did not change and work through b.
    let out = round_trip(gw, urls, 0, b"after-the-swap").await;
    assert_eq!(out.status, 200);
    assert_eq!(out.body.as_ref(), processed("b", b"after-the-swap").as_slice());
    // The latest params were replayed on b's control channel.
    let replayed = eventually("params replayed on b", 250, || async {
        b.state.live_stats().control_params.iter().any(|p| p.contains("updated")).then_some(())
    });
    replayed.await;
    // a was told to stop, with the reason.
    let told = a.state.live_stats().stop_bodies.iter().any(|body| body.starts_with(&reason));
    assert!(told, "{:?}", a.state.live_stats().stop_bodies);
    // The swap is counted with its reason.
    let m = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let series = format!("byoc_gateway_stream_swaps_total{{capability=\"{CAP}\",reason=\"{reason}\"}} ");
    assert!(text.lines().any(|l| l.starts_with(&series)), "no {series}");
}

#[actix_web::test]
async fn events_stopping_moves_the_stream() {
    let (a, b, gw, urls) = running_on_a_with_b_ready("e1").await;
    a.state.patch(Some(CAP), &json!({"stream_events_stop": true})).expect("knob");
    swapped(&gw, &a, &b, "e1", &urls, &["events-timeout"]).await;
    // A silent orchestrator is charged as a time-out.
    let pair = gw.pair(CAP, &a.url).await;
    assert!(pair["counters"]["timeout"].as_u64() >= Some(1), "{pair}");
}

#[actix_web::test]
async fn vanished_channels_move_the_stream() {
    let (a, b, gw, urls) = running_on_a_with_b_ready("v1").await;
    assert_eq!(a.state.vanish_streams(), 1);
    // Readers waiting on a channel see it closed; anything asking later sees it gone.
    swapped(&gw, &a, &b, "v1", &urls, &["channel-closed", "channel-gone"]).await;
}

#[actix_web::test]
async fn an_orchestrator_not_taking_ingress_moves_the_stream() {
    let (a, b, gw, urls) = running_on_a_with_b_ready("i1").await;
    a.state.patch(Some(CAP), &json!({"stream_ingress_stall": true})).expect("knob");
    // Segments pile up on their way to a: the fourth one moves the stream.
    for seq in 0..6 {
        let posted = gw.publish(&urls, seq, vec![b'x'; 1000]).await;
        assert_eq!(posted.status, 200);
        if gw.stream_report("i1").await["swaps"] == 1 {
            break;
        }
    }
    a.state.patch(Some(CAP), &json!({"stream_ingress_stall": false})).expect("knob");
    let r = gw.runs_on("i1", &b).await;
    assert_eq!(r["swap_history"][0]["reason"], "ingress-backed-up", "{r}");
    let out = round_trip(&gw, &urls, -1, b"on-b").await;
    assert_eq!(out.body.as_ref(), processed("b", b"on-b").as_slice());
}

#[actix_web::test]
async fn no_output_while_input_flows_moves_the_stream() {
    let (a, b, gw, urls) = running_on_a_with_b_ready("o1").await;
    a.state.patch(Some(CAP), &json!({"stream_output_stop": true})).expect("knob");
    // Input keeps flowing (a segment every 200 ms) while a writes nothing back.
    let mut seq = -1;
    eventually("the stream to leave a", 100, || {
        seq += 1;
        let (gw, urls) = (&gw, &urls);
        async move {
            gw.publish(urls, seq, b"frame".to_vec()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            (gw.stream_report("o1").await["swaps"] == 1).then_some(())
        }
    })
    .await;
    let r = gw.runs_on("o1", &b).await;
    assert_eq!(r["swap_history"][0]["reason"], "no-output", "{r}");
    let out = round_trip(&gw, &urls, -1, b"on-b").await;
    assert_eq!(out.body.as_ref(), processed("b", b"on-b").as_slice());
}

#[actix_web::test]
async fn a_crashed_orchestrator_loses_the_stream_to_another() {
    let (a, b, gw, urls) = running_on_a_with_b_ready("c1").await;
    a.stop().await;
    let r = gw.runs_on("c1", &b).await;
    let reason = r["swap_history"][0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(["channel-failing", "channel-gone", "events-timeout"].contains(&reason.as_str()), "{r}");
    let out = round_trip(&gw, &urls, 0, b"x").await;
    assert_eq!(out.body.as_ref(), processed("b", b"x").as_slice());
}

#[actix_web::test]
async fn with_no_other_orchestrator_it_restarts_there_and_ends_when_that_one_is_down() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    let urls = gw.started("n1").await;
    let up = gw.update_stream("n1", &json!({"prompt": "kept"})).await;
    assert_eq!(up.status, 200);
    // The only orchestrator loses the stream's channels: the stream starts there again (counted),
    // told to stop the old session first, with the params replayed.
    a.state.vanish_streams();
    let r = eventually("restarted on a", 500, || async {
        let r = gw.stream_report("n1").await;
        (r["state"] == "running" && r["swaps"] == 1).then_some(r)
    })
    .await;
    assert_eq!(r["orchestrator"]["url"], a.url.as_str(), "{r}");
    assert_eq!(a.state.live_stats().starts, 2);
    eventually("params replayed", 250, || async {
        a.state.live_stats().control_params.iter().any(|p| p.contains("kept")).then_some(())
    })
    .await;
    let out = round_trip(&gw, &urls, 0, b"again").await;
    assert_eq!(out.body.as_ref(), processed("a", b"again").as_slice());

    // Now it is down: nothing can take the stream, which ends with the reason in its status.
    let mut data = gw.client.get(urls["data_url"].as_str().expect("data")).send().await.expect("sse");
    a.stop().await;
    let status = eventually("the stream to end", 500, || async {
        let v = gw.stream_status("n1").await.json();
        (v["gateway"]["state"] == "ended").then_some(v)
    })
    .await;
    assert_eq!(status["gateway"]["ended"]["reason"]["kind"], "no-orchestrator", "{status}");
    let message = status["error"]["error_message"].as_str().unwrap_or_default();
    assert!(message.contains("no orchestrator could take the stream"), "{status}");
    // The data subscriber gets the end event with the reason.
    let body =
        tokio::time::timeout(Duration::from_secs(20), data.body().limit(1 << 20)).await.expect("ends").expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("event: end\ndata: {") && text.contains("no orchestrator could take the stream"), "{text}");
    // Its media URLs answer as a closed trickle channel does.
    let out = subscribe(&gw.client, &urls, -1).await;
    assert_eq!(out.header("lp-trickle-closed").as_deref(), Some("terminated"));
}

#[actix_web::test]
async fn swaps_past_the_bound_end_the_stream() {
    let a = sim("a", &[(CAP, live())]);
    let b = sim("b", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP]), (&b, &[CAP])], |c| {
        streams_config(c);
        c.streams.max_swaps = 1;
    })
    .await;
    gw.started("b1").await;
    // First swap: allowed. Second within the window: the stream ends.
    let first = eventually("running", 250, || async {
        let r = gw.stream_report("b1").await;
        r["orchestrator"]["url"].as_str().map(str::to_string)
    })
    .await;
    let (on, other) = if first == a.url { (&a, &b) } else { (&b, &a) };
    on.state.vanish_streams();
    gw.runs_on("b1", other).await;
    other.state.vanish_streams();
    let r = eventually("ended", 500, || async {
        let r = gw.stream_report("b1").await;
        (r["state"] == "ended").then_some(r)
    })
    .await;
    assert_eq!(r["ended"]["reason"]["kind"], "too-many-swaps", "{r}");
    assert_eq!(r["swaps"], 2, "{r}");
}
