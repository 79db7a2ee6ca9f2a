//! Server-Sent Events through the gateway: relayed as they arrive (the first event reaches the
//! client while the orchestrator still holds the rest), never retried after the first byte,
//! and bounded by the job's timeout (plus 10 s, as go-livepeer); a held stream counts against the job limit, past which
//! jobs are shed with an immediate 503.

use byoc_actors::protocol::header::encode_client_header;
use byoc_sim::Knobs;
use futures_util::StreamExt as _;
use serde_json::json;

use crate::support::*;

fn sse(events: u32) -> Knobs {
    Knobs { sse_events: events, ..healthy() }
}

fn header_with_timeout(capability: &str, id: &str, timeout_seconds: u64) -> String {
    encode_client_header(
        &json!({"id": id, "capability": capability, "request": "{}", "timeout_seconds": timeout_seconds}),
    )
}

/// Reads the response stream until `needle` has arrived; returns everything read.
async fn read_until<S>(body: &mut S, needle: &str) -> String
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    read_until_within(body, needle, 10).await
}

/// [`read_until`], waiting at most `secs` for each chunk.
async fn read_until_within<S>(body: &mut S, needle: &str, secs: u64) -> String
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut seen = String::new();
    while !seen.contains(needle) {
        match tokio::time::timeout(std::time::Duration::from_secs(secs), body.next()).await {
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("stream ended or stalled before {needle:?} ({other:?}); got {seen:?}"),
        }
    }
    seen
}

#[actix_web::test]
async fn first_event_reaches_the_client_before_the_stream_ends() {
    let a = sim("a", &[("chat", Knobs { sse_hold: true, ..sse(3) })]);
    let gw = gateway(&[(&a, &["chat"])]).await;
    let mut resp = gw
        .client
        .post(format!("{}/process/request/chat", gw.http))
        .insert_header(("Livepeer", job_header("chat", "s1")))
        .send_body("{}")
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.contains("text/event-stream"), "{ct}");
    // go-livepeer's orchestrator names the balance header differently on streams; relayed.
    assert_eq!(resp.headers().get("livepeer-balance").and_then(|v| v.to_str().ok()), Some("1000"));
    assert!(resp.headers().get("x-orchestrator-url").is_some());

    // The orchestrator holds everything after the first event until released: the first
    // event can only be here if the gateway relayed it without waiting for the stream's end.
    let first = read_until(&mut resp, "\"n\":0").await;
    assert!(!first.contains("[DONE]"), "{first}");
    a.state.release_sse();
    let rest = read_until(&mut resp, "[DONE]").await;
    assert!(rest.contains("\"n\":2"), "{rest}");
    assert!(resp.next().await.is_none(), "the stream ends after [DONE]");
    assert_eq!(a.state.stats("chat").jobs, 1);
}

#[actix_web::test]
async fn a_stream_that_breaks_is_not_retried() {
    // The pause lets the first event leave before the break (actix drops unflushed output
    // when a stream fails).
    let a = sim("a", &[("chat", Knobs { sse_fail_after: Some(1), sse_interval_ms: 50, ..sse(3) })]);
    // Slower than a fresh pair's initial estimate, so `a` wins selection after `b` answers once.
    let b = sim("b", &[("chat", healthy_but_slower())]);
    let gw = gateway(&[(&a, &["chat"]), (&b, &["chat"])]).await;
    // Selection is randomised: send jobs until one lands on `a` (bounded).
    for i in 0..40 {
        let b_before = b.state.stats("chat").jobs;
        let mut resp = gw
            .client
            .post(format!("{}/process/request/chat", gw.http))
            .insert_header(("Livepeer", job_header("chat", &format!("j{i}"))))
            .send_body("{}")
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let url =
            resp.headers().get("x-orchestrator-url").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        if url != a.url {
            let _ = resp.body().await;
            continue;
        }
        read_until(&mut resp, "\"n\":0").await;
        // The orchestrator breaks the stream after its first event: the client's stream stops
        // there, without a completion marker and without a second orchestrator's answer.
        // (awc reports a chunked body cut short as its end, so the client sees the stream end
        // rather than an error: see README, Streaming.)
        while let Some(item) = resp.next().await {
            if let Ok(chunk) = item {
                assert!(!String::from_utf8_lossy(&chunk).contains("[DONE]"), "no false completion");
            }
        }
        assert_eq!(b.state.stats("chat").jobs, b_before, "no retry after the first byte");
        return;
    }
    panic!("no job was routed to the streaming orchestrator in 40 tries");
}

#[actix_web::test]
async fn the_job_timeout_bounds_a_stream() {
    // Held after the first event and never released: only the job's timeout (1 s, plus the
    // 10 s go-livepeer's gateway allows a stream) ends it.
    let a = sim("a", &[("chat", Knobs { sse_hold: true, ..sse(3) })]);
    let gw = gateway(&[(&a, &["chat"])]).await;
    let mut resp = gw
        .client
        .post(format!("{}/process/request/chat", gw.http))
        .insert_header(("Livepeer", header_with_timeout("chat", "t1", 1)))
        .send_body("{}")
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let all = read_until_within(&mut resp, "stream ended at the job's timeout", 20).await;
    assert!(all.contains("\"n\":0") && !all.contains("\"n\":1"), "{all}");
    assert!(resp.next().await.is_none(), "the stream ends at the deadline");
}

#[actix_web::test]
async fn past_the_job_limit_jobs_are_shed_at_once_and_admitted_again_after() {
    // Two streams held open by the orchestrator fill a limit of two jobs in flight.
    let a = sim("a", &[("chat", Knobs { sse_hold: true, ..sse(2) })]);
    let gw = gateway_with(&[(&a, &["chat"])], |c| c.limits.max_inflight_jobs = 2).await;
    let mut held = Vec::new();
    for i in 0..2 {
        let mut resp = gw
            .client
            .post(format!("{}/process/request/chat", gw.http))
            .insert_header(("Livepeer", job_header("chat", &format!("h{i}"))))
            .send_body("{}")
            .await
            .expect("send");
        read_until(&mut resp, "\"n\":0").await;
        held.push(resp);
    }
    let shed = gw.job("chat", "third").await;
    let err = shed.error(503, "overloaded");
    assert!(err["error"]["message"].as_str().unwrap_or_default().contains("max_inflight_jobs"), "{err}");
    assert_eq!(shed.header("retry-after").as_deref(), Some("1"));
    assert_eq!(a.state.stats("chat").jobs, 2, "a shed job never reaches an orchestrator");

    // The held streams end: their places free up and jobs are admitted again.
    for mut resp in held {
        a.state.release_sse();
        read_until(&mut resp, "[DONE]").await;
        assert!(resp.next().await.is_none());
    }
    a.state.patch(Some("chat"), &json!({"sse_events": 0})).expect("knob");
    let ok = eventually("a place is free again", 50, || async {
        let ans = gw.job("chat", "fourth").await;
        (ans.status == 200).then_some(ans)
    })
    .await;
    assert_eq!(ok.json()["sim"], "a");
}
