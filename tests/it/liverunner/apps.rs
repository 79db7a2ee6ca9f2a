//! The client API (issue 28 items 2 and 3): single-shot calls on `ANY /apps/{app}/...` that fail
//! over while nothing has reached the client, and sessions (`POST /apps/{app}/session`) the
//! gateway owns and always releases: on the client's stop, when idle, at shutdown, when the
//! runner fails (a clear error, no silent failover), and on an operator's word.

use byoc_sim::RunnerSpec;
use futures_util::StreamExt as _;
use serde_json::json;

use super::*;

fn sha256(b: &[u8]) -> String {
    openssl::sha::sha256(b).iter().map(|x| format!("{x:02x}")).collect()
}

impl TestGateway {
    async fn routable(&self, sim: &SimHandle, route: &str) {
        let id = self.orchestrator_id(&sim.url).await;
        self.runner_until(&format!("{id}:{route}"), "routable", |p| p["routable"] == true).await;
    }

    async fn open_session(&self, app: &str) -> Answer {
        read(self.client.post(format!("{}/apps/{app}/session", self.http)).send().await).await
    }

    async fn sessions(&self) -> Vec<Value> {
        let a = self.admin_get("/admin/sessions").await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        a.json()["sessions"].as_array().cloned().unwrap_or_default()
    }
}

#[actix_web::test]
async fn single_shot_calls_fail_over_before_any_byte_and_the_client_sees_one_clean_answer() {
    let full = RunnerSpec { refuse: true, ..RunnerSpec::single_shot("full", "echo", 2) };
    let broken = RunnerSpec { status: Some(502), ..RunnerSpec::single_shot("broken", "echo", 2) };
    let good = RunnerSpec { listed: false, ..RunnerSpec::single_shot("good", "echo", 2) };
    let (a, b, c) = (live_sim("o1", &[full]), live_sim("o2", &[broken]), live_sim("o3", std::slice::from_ref(&good)));
    let gw = live_gateway(&[&a, &b, &c], |c| c.live_runner.max_attempts = 3).await;
    gw.routable(&a, "full").await;
    gw.routable(&b, "broken").await;
    // Only refusing runners: one clean 503 naming what was tried, never a runner's raw answer.
    let ans = read(gw.client.post(format!("{}/apps/echo/run", gw.http)).send_body("x").await).await;
    let err = ans.error(503, "no-runner-available");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("tried")), "{err}");

    c.add_runner(RunnerSpec { listed: true, ..good });
    gw.routable(&c, "good").await;
    let refusals = || a.state.runner_stats().refused_capacity + b.state.runner_stats().app_requests;
    let before = refusals();
    let mut extra_attempts = 0;
    for i in 0..6 {
        let body = format!("payload {i} ").repeat(2000);
        let ans = read(
            gw.client
                .post(format!("{}/apps/echo/v1/run?x={i}", gw.http))
                .insert_header(("x-client-test", "yes"))
                .insert_header(("content-type", "text/plain"))
                .send_body(body.clone())
                .await,
        )
        .await;
        assert_eq!(ans.status, 200, "{:?}", String::from_utf8_lossy(&ans.body));
        let v = ans.json();
        assert_eq!(v["sim"], "o3", "{v}");
        assert_eq!((v["path"].as_str(), v["query"].as_str()), (Some("/v1/run"), Some(format!("x={i}").as_str())));
        assert_eq!(v["body_sha256"], sha256(body.as_bytes()), "the body is replayed whole on failover");
        assert_eq!((v["client_header"].as_str(), v["content_type"].as_str()), (Some("yes"), Some("text/plain")));
        assert!(ans.header("x-gateway-runner").is_some_and(|r| r.ends_with(":good")));
        let attempts: u64 = ans.header("x-gateway-attempts").and_then(|a| a.parse().ok()).expect("attempts");
        extra_attempts += attempts - 1;
    }
    // Every refusal the runners gave is one attempt the gateway absorbed (the 6 calls all
    // answered 200 above); and the reservation each call held at o3 is released after it.
    assert_eq!(refusals() - before, extra_attempts, "each extra attempt is one refusal, none hidden");
    assert!(c.state.runner_sessions("good").is_empty(), "single-shot reservations released");
}

#[actix_web::test]
async fn a_single_shot_event_stream_is_relayed_as_it_arrives_and_an_apps_own_404_is_relayed() {
    let s = live_sim("o1", &[RunnerSpec::single_shot("sse-1", "live/sse", 2)]);
    let gw = live_gateway(&[&s], |_| {}).await;
    gw.routable(&s, "sse-1").await;
    // 1000 events 300 ms apart: had the gateway buffered the answer, the first would come after
    // 5 minutes (past the client's 30 s time-out).
    let mut resp =
        gw.client.get(format!("{}/apps/live/sse/sse?n=1000&interval_ms=300", gw.http)).send().await.expect("sent");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")));
    let first = resp.next().await.expect("an event").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains(r#""n":0"#), "{first:?}");
    assert_eq!(s.state.runner_sessions("sse-1").len(), 1, "the call holds its reservation while it streams");
    let id = format!("{}:sse-1", gw.orchestrator_id(&s.url).await);
    assert_eq!(gw.runner(&id).await["inflight"], 1, "and the gateway its slot");
    drop(resp);
    // The client hung up: the gateway notices when it next writes an event (actix, like Go's
    // net/http, learns of a closed connection by writing), drops the upstream call, and frees
    // the slot and the runner's reservation.
    gw.runner_until(&id, "slot freed once the client hung up", |p| p["inflight"] == 0).await;
    eventually("the runner's reservation released", 500, || async {
        s.state.runner_sessions("sse-1").is_empty().then_some(())
    })
    .await;
    // An app's own 404 (not the orchestrator's "runner not found") is the app's answer.
    s.add_runner(RunnerSpec { status: Some(404), ..RunnerSpec::single_shot("sse-1", "live/sse", 2) });
    let ans = read(gw.client.get(format!("{}/apps/live%2Fsse/missing", gw.http)).send().await).await;
    assert_eq!(ans.status, 404, "relayed, not failed over: {:?}", String::from_utf8_lossy(&ans.body));
    assert_eq!(ans.header("x-gateway-attempts").as_deref(), Some("1"));
    // An unknown app is a clean 404.
    read(gw.client.get(format!("{}/apps/nope/x", gw.http)).send().await).await.error(404, "unknown-app");
}

#[actix_web::test]
async fn a_session_is_opened_used_streamed_and_stopped_and_its_runner_releases_it() {
    let s = live_sim("o1", &[RunnerSpec::persistent("scope-1", "live-video-to-video/scope", 1)]);
    let gw = live_gateway(&[&s], |_| {}).await;
    gw.routable(&s, "scope-1").await;
    let open = gw.open_session("live-video-to-video/scope").await;
    assert_eq!(open.status, 200, "{:?}", String::from_utf8_lossy(&open.body));
    let v = open.json();
    let id = v["session_id"].as_str().expect("id").to_string();
    assert!(id.starts_with("gws_"));
    let (app_url, control_url) = (v["app_url"].as_str().expect("app_url"), v["control_url"].as_str().expect("control"));
    assert!(
        app_url.starts_with(&gw.http) && control_url.starts_with(&gw.http),
        "the gateway's URLs, not the runner's: {v}"
    );
    let runner_sessions = s.state.runner_sessions("scope-1");
    assert_eq!(runner_sessions.len(), 1);

    let ans = read(gw.client.post(format!("{app_url}/frame?k=v")).send_body("abc").await).await;
    assert_eq!(ans.status, 200);
    let echo = ans.json();
    assert_eq!(echo["session"], runner_sessions[0].as_str(), "{echo}");
    assert_eq!(
        (echo["path"].as_str(), echo["query"].as_str(), echo["body_len"].as_u64()),
        (Some("/frame"), Some("k=v"), Some(3))
    );

    // A stream of the session arrives as it is written and counts as activity.
    let mut stream = gw.client.get(format!("{app_url}/sse?n=2&interval_ms=600000")).send().await.expect("sent");
    let first = stream.next().await.expect("event").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains(r#""n":0"#));
    let listed = gw.sessions().await;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["id"].as_str(), listed[0]["active"].as_u64()), (Some(id.as_str()), Some(1)));
    assert_eq!(listed[0]["app"], "live-video-to-video/scope");
    drop(stream);

    // The runner's one slot is this session's: a second session finds no capacity.
    gw.open_session("live-video-to-video/scope").await.error(503, "no-capacity");

    let stop = read(gw.client.post(format!("{control_url}/stop")).send().await).await;
    assert_eq!(stop.status, 200);
    assert!(s.state.runner_sessions("scope-1").is_empty(), "released at the runner");
    assert_eq!(s.state.runner_stats().stopped, 1);
    read(gw.client.get(format!("{app_url}/frame")).send().await).await.error(410, "session-ended");
    read(gw.client.post(format!("{control_url}/stop")).send().await).await.error(404, "unknown-session");
    assert!(gw.sessions().await.is_empty());
    // Its slot is free again.
    gw.routable(&s, "scope-1").await;
    let again = gw.open_session("live-video-to-video/scope").await;
    assert_eq!(again.status, 200, "{:?}", String::from_utf8_lossy(&again.body));
}

#[actix_web::test]
async fn an_idle_session_is_released_at_its_runner() {
    let s = live_sim("o1", &[RunnerSpec::persistent("r1", "app", 2)]);
    let gw = live_gateway(&[&s], |c| c.live_runner.session_idle_timeout = Duration::from_millis(300)).await;
    gw.routable(&s, "r1").await;
    let v = gw.open_session("app").await.json();
    assert_eq!(s.state.runner_sessions("r1").len(), 1);
    // The client goes away without stopping (go-livepeer #4016): the gateway releases it.
    eventually("idle session released at the runner", 500, || async {
        s.state.runner_sessions("r1").is_empty().then_some(())
    })
    .await;
    assert_eq!(s.state.runner_stats().stopped, 1);
    let app_url = v["app_url"].as_str().expect("app_url");
    let err = read(gw.client.get(format!("{app_url}/x")).send().await).await.error(410, "session-ended");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("idle")), "{err}");
}

#[actix_web::test]
async fn a_runner_failing_mid_session_ends_the_session_with_a_clear_error_and_counts_against_it() {
    let s = live_sim("o1", &[RunnerSpec::persistent("r1", "app", 2)]);
    let gw = live_gateway(&[&s], |_| {}).await;
    gw.routable(&s, "r1").await;
    let v = gw.open_session("app").await.json();
    let app_url = v["app_url"].as_str().expect("app_url").to_string();
    assert_eq!(read(gw.client.get(format!("{app_url}/x")).send().await).await.status, 200);
    // The runner is removed at the orchestrator.
    s.add_runner(RunnerSpec { gone: true, ..RunnerSpec::persistent("r1", "app", 2) });
    let err = read(gw.client.get(format!("{app_url}/x")).send().await).await.error(502, "session-runner-failed");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("runner not found")), "{err}");
    assert!(gw.sessions().await.is_empty(), "no silent failover: the session is over");
    read(gw.client.get(format!("{app_url}/x")).send().await).await.error(410, "session-ended");
    let id = gw.orchestrator_id(&s.url).await;
    let r = gw.runner_until(&format!("{id}:r1"), "failure counted", |p| p["routable"] == false).await;
    assert_ne!(r["unroutable_reason"], json!(null), "{r}");
}

#[actix_web::test]
async fn sessions_are_released_at_shutdown_and_an_operator_can_stop_one() {
    let s = live_sim("o1", &[RunnerSpec::persistent("r1", "app", 3)]);
    let gw = live_gateway(&[&s], |_| {}).await;
    gw.routable(&s, "r1").await;
    let a = gw.open_session("app").await.json();
    let _b = gw.open_session("app").await.json();
    assert_eq!(s.state.runner_sessions("r1").len(), 2);
    let id = a["session_id"].as_str().expect("id");
    let stop = gw.admin_post(&format!("/admin/sessions/{id}/stop"), json!({})).await;
    assert_eq!(stop.status, 200, "{:?}", String::from_utf8_lossy(&stop.body));
    assert_eq!(s.state.runner_sessions("r1").len(), 1);
    assert_eq!(gw.admin_post("/admin/sessions/gws_nope/stop", json!({})).await.status, 404);
    gw.gw.shutdown().await.expect("clean shutdown");
    assert!(s.state.runner_sessions("r1").is_empty(), "the last session released at shutdown");
    assert_eq!(s.state.runner_stats().stopped, 2);
}

#[actix_web::test]
async fn a_sessions_websocket_is_relayed_both_ways_and_ends_when_the_session_is_stopped() {
    use awc::ws::{Frame, Message};
    use futures_util::SinkExt as _;
    let s = live_sim("o1", &[RunnerSpec::persistent("r1", "app", 2)]);
    let gw = live_gateway(&[&s], |_| {}).await;
    gw.routable(&s, "r1").await;
    let v = gw.open_session("app").await.json();
    let (id, app_url) = (v["session_id"].as_str().expect("id"), v["app_url"].as_str().expect("app_url"));
    let (resp, mut ws) = gw.client.ws(format!("{app_url}/ws")).connect().await.expect("upgraded");
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("hello".into())).await.expect("sent");
    match ws.next().await {
        Some(Ok(Frame::Text(t))) => assert_eq!(&t[..], b"hello"),
        other => panic!("expected the echo, got {other:?}"),
    }
    ws.send(Message::Binary(bytes::Bytes::from_static(&[0, 1, 2]))).await.expect("sent");
    match ws.next().await {
        Some(Ok(Frame::Binary(b))) => assert_eq!(&b[..], &[0, 1, 2]),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    assert_eq!(gw.sessions().await[0]["active"], 1, "an open socket keeps the session active");
    // An operator stops the session: the runner closes the socket, and the close reaches the
    // client.
    assert_eq!(gw.admin_post(&format!("/admin/sessions/{id}/stop"), json!({})).await.status, 200);
    loop {
        match ws.next().await {
            Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(s.state.runner_sessions("r1").is_empty());
    // A session that has ended refuses the upgrade with a clean error.
    let refused = gw.client.ws(format!("{app_url}/ws")).connect().await;
    assert!(
        matches!(refused, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 410),
        "{:?}",
        refused.map(|(r, _)| r.status())
    );
}

#[actix_web::test]
async fn a_call_finding_every_runner_busy_waits_for_a_slot_rather_than_failing() {
    let s = live_sim("o1", &[RunnerSpec::single_shot("one", "echo", 1)]);
    let gw = live_gateway(&[&s], |_| {}).await;
    gw.routable(&s, "one").await;
    let rid = format!("{}:one", gw.orchestrator_id(&s.url).await);
    // Its first answer sets the runner's slots to its capacity (one); the next call holds it.
    assert_eq!(read(gw.client.post(format!("{}/apps/echo/x", gw.http)).send_body("a").await).await.status, 200);
    let held = actix_web::rt::spawn({
        let (client, url) = (gw.client.clone(), format!("{}/apps/echo/hold", gw.http));
        async move { read(client.post(url).send_body("held").await).await }
    });
    gw.runner_until(&rid, "the slot taken", |p| p["inflight"] == 1).await;
    // A second call finds no free slot: it waits in the app's queue instead of a 503...
    let waiting = actix_web::rt::spawn({
        let (client, url) = (gw.client.clone(), format!("{}/apps/echo/y", gw.http));
        async move { read(client.post(url).send_body("second").await).await }
    });
    eventually("the second call queued", 500, || async {
        let m = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
        String::from_utf8_lossy(&m.body)
            .lines()
            .any(|l| l.starts_with("byoc_gateway_queue_depth{capability=\"echo\"") && l.ends_with(" 1"))
            .then_some(())
    })
    .await;
    assert_eq!(s.state.runner_stats().refused_capacity, 0, "nothing was sent to a full runner");
    // ...and is served once the slot frees.
    s.state.release_runner_requests(1);
    assert_eq!(held.await.expect("held call").status, 200);
    let second = waiting.await.expect("second call");
    assert_eq!(second.status, 200, "{:?}", String::from_utf8_lossy(&second.body));
    assert_eq!(second.json()["body_len"], 6);
}
